"""File objects against trio's: the same scenario under trio and ringtrio.

trio wraps a stdlib file (``trio._file_io.AsyncIOWrapper``): it forwards a
fixed list of attributes as they are and a fixed list of methods as async
methods run in a thread, has an async ``detach()`` that wraps what the
stdlib's returns, and raises ``AttributeError`` for anything else.
ringtrio's file objects are its own, but they answer the same questions the
same way; the few deliberate differences are listed here and in
docs/reference.md ("Differences from trio").
"""

from __future__ import annotations

import inspect
import io
import os
import pathlib
from types import ModuleType
from typing import Any

import pytest
import trio

import ringtrio

LIBS = (trio, ringtrio)

# trio's lists (trio/_file_io.py): what its wrapper forwards when the
# wrapped file has it.
SYNC_ATTRS = (
    "closed encoding errors fileno isatty newlines readable seekable writable "
    "buffer raw line_buffering closefd name mode getvalue getbuffer"
).split()
ASYNC_METHODS = (
    "flush read read1 readall readinto readinto1 readline readlines seek tell truncate write writelines peek"
).split()

# Deliberate differences (docs/reference.md):
# * there is no stdlib object under a file ringtrio opened: `wrapped` is
#   None, a text file's `buffer` is ringtrio's async binary file, and a
#   buffered binary file has no `raw`;
# * ringtrio's files have a few methods more than the stdlib type trio
#   wraps (positioned I/O, fsync, stat; readall/closefd on every binary
#   file, read1/peek/readinto1 on unbuffered ones).
DIFFERENT = {"wrapped", "buffer", "raw"}
EXTRAS = {"read_at", "write_at", "fsync", "fdatasync", "stat", "readall", "closefd", "read1", "peek", "readinto1"}

MODES = [
    ("r", {}),
    ("r", {"newline": ""}),
    ("w", {}),
    ("a+", {}),
    ("rb", {}),
    ("rb", {"buffering": 0}),
    ("r+b", {}),
    ("wb", {}),
    ("ab", {"buffering": 0}),
]


def _kind(f: Any, name: str) -> object:
    """What ``f.name`` is: absent, an async method, a sync method (and what
    it returns), or a value."""
    try:
        attr = getattr(f, name)
    except AttributeError:
        return "absent"
    except ValueError as exc:
        return ("ValueError", str(exc))
    if inspect.iscoroutinefunction(attr):
        return "async method"
    if callable(attr):
        try:
            result = attr()
            return ("sync method", type(result).__name__ if name == "fileno" else result)
        except Exception as exc:  # noqa: BLE001 - an observation
            return ("sync method raising", type(exc).__name__)
    return ("value", attr)


@pytest.mark.parametrize(("mode", "kwargs"), MODES, ids=[f"{m}{k}" for m, k in MODES])
def test_attributes_and_methods_are_trios(tmp_path: Any, mode: str, kwargs: dict[str, Any]) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc\r\ndef\n")

    async def scenario(lib: ModuleType) -> dict[str, object]:
        async with await lib.open_file(str(path), mode, **kwargs) as f:
            if "r" in mode:
                await f.readline()  # (so that newlines has something to say)
            seen = {name: _kind(f, name) for name in SYNC_ATTRS + ASYNC_METHODS + ["detach", "aclose"]}
            seen["__aiter__"] = f.__aiter__() is f
        seen["closed after"] = f.closed
        return seen

    want, got = trio.run(scenario, trio), ringtrio.run(scenario, ringtrio)
    for name in want:
        if name in DIFFERENT:
            continue
        if want[name] == "absent" and name in EXTRAS:
            continue  # (a ringtrio extra)
        assert got[name] == want[name], (name, got[name], want[name])


@pytest.mark.parametrize("how", ["str", "bytes", "pathlib.Path", "lib.Path", "Path.open", "fd"])
def test_name_is_what_open_gives(tmp_path: Any, how: str) -> None:
    """trio's .name is the stdlib file's: the str (or bytes) path, also for a
    Path argument; ringtrio gave the Path back."""
    path = tmp_path / "f"
    path.write_bytes(b"x")

    async def scenario(lib: ModuleType) -> object:
        if how == "Path.open":
            f = await lib.Path(str(path)).open("rb")
        elif how == "fd":
            f = await lib.open_file(os.open(path, os.O_RDONLY), "rb")
        else:
            arg = {"str": str(path), "bytes": os.fsencode(path), "pathlib.Path": pathlib.Path(path)}.get(how)
            f = await lib.open_file(arg if arg is not None else lib.Path(str(path)), "r")
        async with f:
            name = f.name
        return (type(name).__name__, name if how != "fd" else "an fd")

    assert ringtrio.run(scenario, ringtrio) == trio.run(scenario, trio)


# ---------------------------------------------------------------------------
# detach()
# ---------------------------------------------------------------------------


async def _after_detach(lib: ModuleType, f: Any) -> list[object]:
    """What every use of a detached file gives (the stdlib's ValueErrors)."""
    seen: list[object] = []
    for what in ("closed", "name", "mode", "encoding"):
        seen.append((what, _kind(f, what)))
    for call in (f.read, f.readline, f.tell, f.aclose):
        try:
            seen.append(await call())
        except Exception as exc:  # noqa: BLE001 - an observation
            seen.append((type(exc).__name__, str(exc)))
    return seen


@pytest.mark.parametrize(("mode", "kwargs"), [("r", {}), ("rb", {}), ("r+b", {}), ("rb", {"buffering": 0})])
def test_detach_gives_the_file_underneath(tmp_path: Any, mode: str, kwargs: dict[str, Any]) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"h\xc3\xa9llo\nworld\n")

    async def scenario(lib: ModuleType) -> list[object]:
        log: list[object] = []
        f = await lib.open_file(path, mode, **kwargs)
        try:
            under = await f.detach()
        except AttributeError:
            # (FileIO has no detach: trio's wrapper raises AttributeError)
            log.append("no detach")
            await f.aclose()
            return log
        file_class = ringtrio.AsyncFile if lib is ringtrio else trio._file_io.AsyncIOWrapper
        log.append(("is a file object", isinstance(under, file_class)))
        log.append(("closed", under.closed, "mode", under.mode, "name", under.name))
        log.append(("reads", await under.read()))
        log.append(("text has buffer", getattr(f, "buffer", "absent")))
        log += await _after_detach(lib, f)
        await under.aclose()
        return log

    want = trio.run(scenario, trio)
    got = ringtrio.run(scenario, ringtrio)
    assert got == want


def test_detach_keeps_what_was_read_ahead(tmp_path: Any) -> None:
    """ringtrio's detach loses nothing (a deliberate difference: the stdlib
    -- and so trio -- leaves the file underneath past its read-ahead): the
    binary file under a text file continues after the last character read,
    the raw file under a buffered one after the last byte read, and on a
    pipe the read-ahead goes along with it."""
    path = tmp_path / "f"
    content = "h\xe9llo\n" + "x" * 50_000 + "\nend\n"
    path.write_bytes(content.encode("utf-8"))

    async def main() -> None:
        f = await ringtrio.open_file(path, encoding="utf-8")
        assert await f.readline() == "h\xe9llo\n"
        assert await f.read(3) == "xxx"
        binary = await f.detach()
        assert f.buffer is None
        raw = await binary.detach()
        assert await raw.read() == content[9:].encode("utf-8")
        await raw.aclose()

        r, w = os.pipe()
        os.write(w, b"line 1\nline 2\nline 3\n")
        os.close(w)
        piped = await ringtrio.open_file(r, "rb")
        assert await piped.readline() == b"line 1\n"
        raw = await piped.detach()
        assert await raw.read() == b"line 2\nline 3\n"
        await raw.aclose()

    ringtrio.run(main)


# ---------------------------------------------------------------------------
# wrap_file of objects run in worker threads: exactly trio's forwarding
# ---------------------------------------------------------------------------


def _wrapped_objects(tmp_path: Any) -> list[Any]:
    path = tmp_path / "f"
    path.write_bytes(b"abc\ndef\n")
    return [
        lambda: io.BytesIO(b"abc\ndef\n"),
        lambda: io.StringIO("abc\ndef\n"),
        lambda: open(path, encoding="utf-8"),
    ]


def test_wrapped_objects_forward_what_trio_forwards(tmp_path: Any) -> None:
    class WithExtra(io.RawIOBase):
        def readinto(self, b: Any) -> int:
            return 0

        def unsupported_attr(self) -> None:  # pragma: no cover - never called
            pass

    makers = _wrapped_objects(tmp_path) + [WithExtra]

    async def scenario(lib: ModuleType) -> list[object]:
        log: list[object] = []
        for make in makers:
            f = lib.wrap_file(make())
            listed = sorted(a for a in SYNC_ATTRS + ASYNC_METHODS if a in dir(f))
            log.append(("dir", listed))
            log.append(("unsupported", hasattr(f, "unsupported_attr"), hasattr(f, "close")))
            log.append(("methods made once", all(getattr(f, m) is getattr(f, m) for m in ASYNC_METHODS if m in listed)))
            read = f.read
            log.append(("read", read.__name__, f"{type(f.wrapped).__qualname__}.read" in (read.__doc__ or "")))
            log.append(("wrapper", type(f).__name__, read.__qualname__))
            log.append(("first line", await f.readline()))
            await f.aclose()
        return log

    assert ringtrio.run(scenario, ringtrio) == trio.run(scenario, trio)


def test_wrapped_method_docs_name_what_the_object_says_it_is() -> None:
    """A mock made with spec_set=io.StringIO says it is a StringIO
    (``__class__``) though its type is Mock: the generated method's doc
    names io.StringIO.read, as trio's (trio's test_async_methods_signature)."""
    from unittest import mock

    for lib in (trio, ringtrio):
        f = lib.wrap_file(mock.Mock(spec_set=io.StringIO))
        assert "io.StringIO.read" in (f.read.__doc__ or ""), lib.__name__


def test_detach_of_wrapped_files_rewraps(tmp_path: Any) -> None:
    """trio's test_detach_rewraps_asynciobase, and the text case."""
    path = tmp_path / "f"
    path.write_bytes(b"abc\ndef\n")

    async def scenario(lib: ModuleType) -> list[object]:
        log: list[object] = []
        with open(path, "rb", buffering=0) as raw:
            buffered = io.BufferedReader(raw)
            detached = await lib.wrap_file(buffered).detach()
            log.append(("raw rewrapped", detached.wrapped is raw, await detached.read()))
        text = open(path, encoding="utf-8")
        binary = text.buffer
        detached = await lib.wrap_file(text).detach()
        log.append(("buffer rewrapped", detached.wrapped is binary, await detached.read()))
        await detached.aclose()
        return log

    assert ringtrio.run(scenario, ringtrio) == trio.run(scenario, trio)


# ---------------------------------------------------------------------------
# Path
# ---------------------------------------------------------------------------


def test_path_methods_say_what_they_wrap() -> None:
    """trio's async Path methods carry a docstring naming the pathlib method
    they stand for; ringtrio's did not."""
    for name, method in inspect.getmembers(ringtrio.Path):
        if inspect.iscoroutinefunction(method) and not name.startswith("_"):
            assert method.__doc__ and f"pathlib.Path.{name}" in method.__doc__, name
            assert method.__qualname__ == f"Path.{name}"


@pytest.mark.parametrize("mode", [2**31, 2**64, -(2**31) - 1, "x", 1.5])
@pytest.mark.parametrize("method", ["mkdir", "touch"])
def test_path_mode_out_of_range_is_the_stdlib_error(tmp_path: Any, method: str, mode: object) -> None:
    """mkdir(mode=2**40) gave "<RingOp MKDIRAT ...> has a field out of range"."""

    async def scenario(lib: ModuleType) -> object:
        try:
            await getattr(lib.Path(str(tmp_path / "new")), method)(mode=mode)
        except Exception as exc:  # noqa: BLE001 - an observation
            assert "RingOp" not in str(exc)
            return type(exc).__name__
        return "ok"

    assert ringtrio.run(scenario, ringtrio) == trio.run(scenario, trio)


def test_path_negative_mode_wraps_as_in_the_stdlib(tmp_path: Any) -> None:
    async def scenario(lib: ModuleType) -> object:
        p = lib.Path(str(tmp_path / lib.__name__))
        await p.mkdir(mode=-1)
        return await p.is_dir()

    assert ringtrio.run(scenario, ringtrio) == trio.run(scenario, trio) is True


# ---------------------------------------------------------------------------
# Reads of a cached file (ringtrio serves them from the page cache without a
# ring op): what trio's thread-per-call reads give, checkpoints included
# ---------------------------------------------------------------------------


async def _cached_read_log(lib: ModuleType, path: Any, mode: str, buffering: int) -> list[object]:
    """Reads, seeks and cancelled reads of one cached file, and whether each
    read let another task run (a schedule point)."""
    log: list[object] = []
    ticks = [0]

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await lib.lowlevel.checkpoint()

    async with await lib.open_file(path, mode, buffering=buffering) as f:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await lib.lowlevel.checkpoint()  # (the ticker is running)
            calls: list[tuple[str, tuple[Any, ...]]] = [
                ("read", (5,)),
                ("read", (70_000,)),
                ("seek", (3,)),
                ("read", (2,)),
                ("readline", ()),
                ("seek", (199_996,)),  # (4 bytes before the end)
                ("read", (100,)),
                ("read", (100,)),
                ("seek", (10,)),
                ("read", ()),
            ]
            if mode == "rb" and buffering != 0:  # (FileIO has no read1)
                calls.insert(4, ("read1", (7,)))
            for name, args in calls:
                before = ticks[0]
                got = await getattr(f, name)(*args)
                yielded = ticks[0] > before
                log.append((name, args, got if name == "seek" else (len(got), got[:8], got[-8:]), yielded))
                # A read in a cancelled scope raises Cancelled and reads
                # nothing: the position stays.
                with lib.CancelScope() as scope:
                    scope.cancel()
                    await f.read(3)
                log.append(("cancelled read", scope.cancelled_caught, await f.tell()))
            nursery.cancel_scope.cancel()
    return log


@pytest.mark.parametrize(("mode", "buffering"), [("rb", 0), ("rb", -1), ("r", -1)])
def test_cached_reads_are_trios(tmp_path: Any, mode: str, buffering: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"".join(b"line %05d\n" % i for i in range(20_000)))
    path.read_bytes()  # (in the page cache)
    logs = [lib.run(_cached_read_log, lib, path, mode, buffering) for lib in LIBS]
    assert logs[0] == logs[1]
    assert all(entry[-1] is True for entry in logs[1] if entry[0] not in ("seek", "cancelled read"))
