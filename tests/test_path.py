"""ringtrio.Path: the ring-backed file-system calls against os/pathlib."""

from __future__ import annotations

import os
import pathlib

import pytest

import ringtrio
from ringtrio._path import Path as _Path

Path = ringtrio.Path


def run(fn, *args):
    return ringtrio.run(fn, *args)


def test_pure_methods_are_sync_and_keep_the_type():
    p = Path("/a/b") / "c.txt"
    assert isinstance(p, Path) and isinstance(p.parent, Path)
    assert p.name == "c.txt" and p.suffix == ".txt" and str(p.with_suffix(".md")) == "/a/b/c.md"
    # trio's spelling for code written against trio.PosixPath
    assert isinstance(ringtrio.PosixPath("/x") / "y", ringtrio.PosixPath)
    assert os.fspath(Path("/a/b")) == "/a/b" and os.fspath(Path("a//b/")) == "a/b"


def test_stat_matches_os_stat(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1234)
    os.symlink(f, tmp_path / "l")

    async def main():
        assert await Path(f).stat() == os.stat(f)
        assert await Path(tmp_path).stat() == os.stat(tmp_path)
        assert await Path(tmp_path / "l").lstat() == os.lstat(tmp_path / "l")
        assert await Path(tmp_path / "l").stat(follow_symlinks=False) == os.lstat(tmp_path / "l")
        with pytest.raises(FileNotFoundError) as info:
            await Path(tmp_path / "missing").stat()
        assert str(tmp_path / "missing") in str(info.value)

    run(main)


def test_read_write_roundtrip(tmp_path):
    async def main():
        p = Path(tmp_path) / "t.txt"
        assert await p.write_text("héllo\nwörld\n", encoding="utf-8") == 12
        assert await p.read_text(encoding="utf-8") == "héllo\nwörld\n"
        assert await p.read_bytes() == "héllo\nwörld\n".encode()
        big = os.urandom(300_000)
        assert await p.write_bytes(big) == len(big)
        assert await p.read_bytes() == big
        assert await (Path(tmp_path) / "empty").write_bytes(b"") == 0
        assert await (Path(tmp_path) / "empty").read_bytes() == b""
        async with await p.open("rb") as f:
            assert await f.read(3) == big[:3]
        with pytest.raises(IsADirectoryError):
            await Path(tmp_path).read_bytes()
        with pytest.raises(FileNotFoundError):
            await Path(tmp_path / "nope").read_bytes()
        # a pipe-like file: read_bytes reads to EOF, not to st_size
        assert len(await Path("/proc/self/status").read_bytes()) > 0

    run(main)


def test_predicates(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "f", tmp_path / "l")
    os.symlink(tmp_path / "gone", tmp_path / "dangling")

    async def main():
        P = Path(tmp_path)
        for name in ("f", "d", "l", "dangling", "missing", "f/under-a-file"):
            sync = pathlib.Path(tmp_path / name)
            p = P / name
            assert await p.exists() == sync.exists(), name
            assert await p.is_file() == sync.is_file(), name
            assert await p.is_dir() == sync.is_dir(), name
            assert await p.is_symlink() == sync.is_symlink(), name

    run(main)


def test_directory_and_link_operations(tmp_path):
    async def main():
        base = Path(tmp_path)
        deep = base / "a" / "b" / "c"
        with pytest.raises(FileNotFoundError):
            await deep.mkdir()
        await deep.mkdir(parents=True)
        await deep.mkdir(parents=True, exist_ok=True)
        with pytest.raises(FileExistsError):
            await deep.mkdir()
        f = deep / "f"
        await f.write_bytes(b"data")
        await (base / "hard").hardlink_to(f)
        assert (await f.stat()).st_nlink == 2
        await (base / "sym").symlink_to(f)
        assert os.readlink(tmp_path / "sym") == str(f)
        assert await (base / "sym").readlink() == f
        g = await f.rename(base / "g")
        assert isinstance(g, Path) and not await f.exists() and await g.read_bytes() == b"data"
        await (base / "h").write_bytes(b"other")
        await g.replace(base / "h")
        assert await (base / "h").read_bytes() == b"data"
        with pytest.raises(OSError):
            await (base / "a").rmdir()  # not empty
        await deep.rmdir()
        await (base / "h").unlink()
        with pytest.raises(FileNotFoundError):
            await (base / "h").unlink()
        await (base / "h").unlink(missing_ok=True)
        names = sorted(p.name for p in await base.iterdir())
        assert names == sorted(os.listdir(tmp_path))
        assert [p.name for p in await base.glob("a*")] == ["a"]
        assert await (base / "a" / ".." / "hard").resolve() == Path(os.path.realpath(tmp_path / "hard"))
        await (base / "t").touch()
        with pytest.raises(FileExistsError):
            await (base / "t").touch(exist_ok=False)
        assert await (base / "hard").samefile(base / "hard")

    run(main)
