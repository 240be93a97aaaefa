"""Copy a directory tree concurrently with ringtrio's file API.

    python examples/copy_tree.py SRC DST [--jobs N]

Directories are listed in a worker thread (io_uring has no getdents);
everything else — mkdir, open, read, write, symlink, stat — runs on the ring.
At most N files are copied at once (a CapacityLimiter).
"""

from __future__ import annotations

import os
import sys

import ringtrio

try:
    from ringtrio import Path, open_file
except ImportError:  # until ringtrio/__init__ re-exports the file API
    from ringtrio._file_io import open_file
    from ringtrio._path import Path

CHUNK = 1 << 20


async def copy_file(src: Path, dst: Path, limiter: ringtrio.CapacityLimiter) -> int:
    async with limiter:
        async with await open_file(src, "rb") as fin, await open_file(dst, "wb") as fout:
            copied = 0
            while data := await fin.read(CHUNK):
                await fout.write(data)
                copied += len(data)
        mode = (await src.stat()).st_mode & 0o7777
        os.chmod(dst, mode)
        return copied


async def copy_tree(src: Path, dst: Path, jobs: int = 32) -> tuple[int, int]:
    """Copy ``src`` into a new directory ``dst``; returns (files, bytes)."""
    limiter = ringtrio.CapacityLimiter(jobs)
    totals = [0, 0]

    async def one(s: Path, d: Path) -> None:
        totals[1] += await copy_file(s, d, limiter)
        totals[0] += 1

    async def walk(s: Path, d: Path, nursery: ringtrio.Nursery) -> None:
        await d.mkdir()
        for entry in await s.iterdir():
            target = d / entry.name
            if await entry.is_symlink():
                await target.symlink_to(await entry.readlink())
            elif await entry.is_dir():
                nursery.start_soon(walk, entry, target, nursery)
            else:
                nursery.start_soon(one, entry, target)

    async with ringtrio.open_nursery() as nursery:
        await walk(Path(src), Path(dst), nursery)
    return totals[0], totals[1]


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--jobs")]
    jobs = 32
    for a in argv:
        if a.startswith("--jobs="):
            jobs = int(a.split("=", 1)[1])
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    files, nbytes = ringtrio.run(copy_tree, Path(args[0]), Path(args[1]), jobs)
    print(f"copied {files} files, {nbytes} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
