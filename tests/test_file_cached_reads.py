"""Reads served from the page cache without a ring op (issue 16).

An unbuffered ``read()`` and ``read_at()`` of a regular file first try one
``preadv2(RWF_NOWAIT)`` (``_speedups.pread_nowait``, or its Python
definition ``_file_io._pread_nowait``), in trio's shape for an operation
that completes at once, and fall back to the ring READ when the cache does
not hold the bytes.  These tests pin what that must not change: the bytes,
the position, every read a checkpoint, cancellation that loses nothing --
on the path the cache serves, on the forced fallbacks (EAGAIN, a partial
hit, EOPNOTSUPP), and on files the path is not for.

Scenario first, then what the stdlib (the oracle for bytes and positions)
or trio's rules (checkpoints, cancellation) say, then what ringtrio does.
"""

from __future__ import annotations

import errno
import os

import pytest

import ringtrio
from ringtrio import _file_io
from ringtrio._core import _accel
from ringtrio.testing import assert_checkpoints

open_file = ringtrio.open_file


def _make(path, size: int) -> bytes:
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    return data


def _use_reader(monkeypatch, reader) -> None:
    """Make ``reader`` the page-cache read every file uses.  Called inside a
    run: the accelerator's entry points are published when a run starts."""
    monkeypatch.setattr(_accel, "_sp_pread_nowait", None)
    monkeypatch.setattr(_file_io, "_pread_nowait", reader)


def _counting(monkeypatch):
    """The real page-cache read (the accelerator's or the Python one),
    recording each call's result (bytes, or the errno)."""
    real = _accel._sp_pread_nowait or _file_io._pread_nowait
    results: list[bytes | int] = []

    def reader(fd: int, size: int, offset: int) -> bytes | int:
        got = real(fd, size, offset)
        results.append(got)
        return got

    _use_reader(monkeypatch, reader)
    return results


def _partial(after=lambda: None):
    """A page-cache read that serves only the first 1000 bytes of a longer
    read (a partial hit), then calls ``after``."""
    real = _file_io._pread_nowait

    def reader(fd: int, size: int, offset: int) -> bytes | tuple[bytes] | int:
        got = real(fd, size, offset)
        after()
        return (got[:1000],) if isinstance(got, bytes) and len(got) > 1000 else got

    return reader


def test_pread_nowait_definition_and_accelerator_agree(tmp_path):
    # The Python definition and the C accelerator, on the same reads: the
    # bytes at an explicit offset (the file position does not move), short
    # at end of file, b"" past it, the errno for a bad fd.
    p = tmp_path / "f"
    data = _make(p, 10000)

    async def main():
        fd = os.open(p, os.O_RDONLY)
        try:
            readers = [_file_io._pread_nowait]
            if _accel._sp_pread_nowait is not None:
                readers.append(_accel._sp_pread_nowait)
            for read in readers:
                assert read(fd, 4096, 0) == data[:4096]
                assert read(fd, 4096, 9000) == data[9000:]
                assert read(fd, 1, 9999) == data[9999:]
                assert read(fd, 10, 10000) == b""
                assert os.lseek(fd, 0, os.SEEK_CUR) == 0
            # Pages from 8192 on dropped (if the kernel does): the first
            # part, marked as such, or all of it.
            os.fsync(fd)
            os.posix_fadvise(fd, 8192, 0, os.POSIX_FADV_DONTNEED)
            for read in readers:
                got = read(fd, 10000, 0)
                if isinstance(got, tuple):
                    (head,) = got
                    assert 0 < len(head) < 10000 and head == data[: len(head)]
                else:
                    assert got == data or got == errno.EAGAIN
            bad = os.open(os.devnull, os.O_RDONLY)
            os.close(bad)
            for read in readers:
                assert read(bad, 10, 0) == errno.EBADF
        finally:
            os.close(fd)

    ringtrio.run(main)


def test_unbuffered_read_of_cached_file_takes_no_ring_op(tmp_path, monkeypatch):
    # A file just written is in the page cache: every unbuffered read (and
    # read_at) is one page-cache read, no SQE, and the bytes and the
    # position are FileIO's.
    p = tmp_path / "f"
    data = _make(p, 5 * 4096 + 123)

    async def main():
        results = _counting(monkeypatch)
        async with await open_file(p, "rb", buffering=0) as f:
            before = ringtrio.lowlevel.current_statistics().io_statistics.sqes_submitted
            chunks = []
            while chunk := await f.read(4096):
                chunks.append(chunk)
            assert await f.read_at(4096, 4096) == data[4096:8192]
            after = ringtrio.lowlevel.current_statistics().io_statistics.sqes_submitted
            assert b"".join(chunks) == data
            assert [len(c) for c in chunks] == [4096] * 5 + [123]
            assert await f.tell() == len(data)
        assert results and all(isinstance(r, bytes) for r in results)
        assert len(results) == 8  # six chunks, the b"" at EOF, read_at
        assert after == before

    ringtrio.run(main)


def test_buffered_and_text_reads_of_cached_file_take_no_ring_op(tmp_path, monkeypatch):
    # The buffered paths' kernel reads (read-ahead refills for small reads
    # and lines, read1, readall, a large read) and text reads are served
    # from the page cache too: the stdlib's bytes and lines, no SQE.
    p = tmp_path / "f"
    lines = [b"line %d %s\n" % (i, b"x" * (i % 50)) for i in range(3000)]
    data = b"".join(lines)
    p.write_bytes(data)

    async def main():
        results = _counting(monkeypatch)
        async with await open_file(p, "rb") as f, await open_file(p, "r") as t:
            before = ringtrio.lowlevel.current_statistics().io_statistics.sqes_submitted
            got = [await f.read(100), await f.readline(), await f.read1(5000), await f.read(40000)]
            got.append(await f.readall())
            text = [line async for line in t]
            after = ringtrio.lowlevel.current_statistics().io_statistics.sqes_submitted
        assert b"".join(got) == data
        assert got[1] == data[100 : data.index(b"\n", 100) + 1]
        assert text == [line.decode() for line in lines]
        assert results and all(isinstance(r, bytes) for r in results)
        assert after == before

    ringtrio.run(main)


def test_buffered_reads_fall_back_to_the_ring(tmp_path, monkeypatch):
    # The same reads when the cache serves nothing (EAGAIN) or only part
    # of each read: the same bytes, through ring READs.
    p = tmp_path / "f"
    data = os.urandom(100000)
    p.write_bytes(data)

    async def main():
        for reader in (lambda fd, size, offset: errno.EAGAIN, _partial()):
            _use_reader(monkeypatch, reader)
            async with await open_file(p, "rb") as f:
                got = [await f.read(100), await f.read1(5000), await f.read(40000), await f.peek(1)]
                got[-1] = b""  # (peek takes nothing)
                got.append(await f.readall())
                assert b"".join(got) == data
            async with await open_file(p, "rb", buffering=0) as f:
                assert await f.readall() == data

    ringtrio.run(main)


def test_cached_read_is_a_checkpoint(tmp_path, monkeypatch):
    # trio: every read is a schedule point and a cancellation point, even
    # when its data is ready.  A cancelled scope gets Cancelled before the
    # read happens: the position does not move, the next read gets the bytes.
    p = tmp_path / "f"
    data = _make(p, 3 * 4096)

    async def main():
        results = _counting(monkeypatch)
        async with await open_file(p, "rb", buffering=0) as f:
            with assert_checkpoints():
                assert await f.read(4096) == data[:4096]
            with assert_checkpoints():
                assert await f.read_at(0, 10) == data[:10]
            calls = len(results)
            with ringtrio.CancelScope() as scope:
                scope.cancel()
                await f.read(4096)
            assert scope.cancelled_caught
            with ringtrio.CancelScope() as scope:
                scope.cancel()
                await f.read_at(0, 4096)
            assert scope.cancelled_caught
            assert len(results) == calls  # (cancelled before reading)
            assert await f.tell() == 4096
            assert await f.read(4096) == data[4096:8192]

            # Another task runs during a cached read (a schedule point).
            ran = []

            async def other():
                ran.append(True)

            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(other)
                assert await f.read(4096) == data[8192:]
                assert ran == [True]

    ringtrio.run(main)


def test_cancel_after_a_cached_read_keeps_the_bytes(tmp_path, monkeypatch):
    # Cancelled once the copy is done (the reader cancels the scope right
    # after it, as another task could during the read's schedule point):
    # the read happened, so it returns its bytes and the cancellation lands
    # at the next checkpoint.
    p = tmp_path / "f"
    data = _make(p, 3 * 4096)
    real = _file_io._pread_nowait

    async def main():
        scope = ringtrio.CancelScope()

        def read_then_cancel(fd, size, offset):
            got = real(fd, size, offset)
            scope.cancel()
            return got

        async with await open_file(p, "rb", buffering=0) as f:
            _use_reader(monkeypatch, read_then_cancel)
            got = []
            with scope:
                got.append(await f.read(4096))
                await ringtrio.lowlevel.checkpoint()
                got.append("not reached")
            assert scope.cancelled_caught
            scope = ringtrio.CancelScope()
            with scope:
                got.append(await f.read_at(8192, 4096))
                await ringtrio.lowlevel.checkpoint()
                got.append("not reached")
            assert scope.cancelled_caught
            assert got == [data[:4096], data[8192:]]
            assert await f.tell() == 4096
            monkeypatch.undo()
            assert await f.read(8192) == data[4096:]

    ringtrio.run(main)


def test_cache_miss_falls_back_to_the_ring(tmp_path, monkeypatch):
    # EAGAIN (the first page is not cached): the ring READ does the read,
    # with the same bytes and position.  Forced here; a real cold read
    # follows below.
    p = tmp_path / "f"
    data = _make(p, 3 * 4096 + 5)

    async def main():
        calls = []

        def miss(fd, size, offset):
            calls.append(offset)
            return errno.EAGAIN

        _use_reader(monkeypatch, miss)
        async with await open_file(p, "rb", buffering=0) as f:
            before = ringtrio.lowlevel.current_statistics().io_statistics.sqes_submitted
            assert await f.read(4096) == data[:4096]
            assert await f.read_at(8192, 100) == data[8192:8292]
            assert await f.read(10000) == data[4096:]
            assert await f.read(1) == b""
            after = ringtrio.lowlevel.current_statistics().io_statistics.sqes_submitted
            assert f._nowait  # EAGAIN says nothing about the next read
        # (a read that missed may ask again on its way to the ring)
        assert sorted(set(calls)) == [0, 4096, 8192, len(data)]
        assert after - before >= 4

    ringtrio.run(main)


def test_partial_hit_reads_the_rest_through_the_ring(tmp_path, monkeypatch):
    # The cache holds only the start of the range: that part is kept and
    # the rest comes from a ring READ -- one read of the full size, in
    # order, the position moved by all of it.
    p = tmp_path / "f"
    data = _make(p, 20000)

    async def main():
        _use_reader(monkeypatch, _partial())
        async with await open_file(p, "rb", buffering=0) as f:
            assert await f.read(8192) == data[:8192]
            assert await f.tell() == 8192
            assert await f.read_at(100, 5000) == data[100:5100]
            assert await f.read(100000) == data[8192:]  # (short only at EOF)
            assert await f.read(10) == b""

    ringtrio.run(main)


def test_cancelled_rest_of_a_partial_hit_loses_nothing(tmp_path, monkeypatch):
    # The cache held the start, and the ring READ for the rest is
    # cancelled before it happens: the read raises Cancelled and did
    # nothing -- the position is where it was, the next read returns the
    # same bytes, whole.
    p = tmp_path / "f"
    data = _make(p, 20000)

    async def main():
        scope = ringtrio.CancelScope()
        # (the ring READ for the rest meets the cancellation)
        partial_then_cancel = _partial(after=lambda: scope.cancel())

        async with await open_file(p, "rb", buffering=0) as f:
            assert await f.read(500) == data[:500]
            _use_reader(monkeypatch, partial_then_cancel)
            with scope:
                await f.read(8192)
            assert scope.cancelled_caught
            assert await f.tell() == 500
            scope = ringtrio.CancelScope()
            with scope:
                await f.read_at(0, 8192)
            assert scope.cancelled_caught
            monkeypatch.undo()
            assert await f.read(8192) == data[500:8692]
            assert await f.tell() == 8692

    ringtrio.run(main)


def test_real_cold_read(tmp_path):
    # Pages dropped from the cache (fsync, then POSIX_FADV_DONTNEED): the
    # first page-cache read finds nothing (or part) and the ring reads the
    # rest; the bytes are the file's either way.  (Whether the kernel
    # dropped the pages is its choice: only the bytes are asserted.)
    p = tmp_path / "f"
    data = _make(p, 1 << 20)

    async def main():
        async with await open_file(p, "rb", buffering=0) as f:
            fd = f.fileno()
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            chunks = []
            while chunk := await f.read(65536):
                chunks.append(chunk)
            assert b"".join(chunks) == data
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert await f.read_at(100000, 300000) == data[100000:400000]

    ringtrio.run(main)


def test_read_at_at_and_past_eof(tmp_path):
    # os.pread's answers: the last bytes (short) at the end, b"" at and
    # past it, the position never used or moved.
    p = tmp_path / "f"
    data = _make(p, 10000)

    async def main():
        async with await open_file(p, "rb", buffering=0) as f:
            assert await f.read_at(9990, 100) == data[9990:]
            assert await f.read_at(10000, 100) == b""
            assert await f.read_at(1 << 40, 100) == b""
            assert await f.read_at(0, 0) == b""
            assert await f.read_at(0, 2**32) == data  # (one kernel read's worth)
            assert await f.tell() == 0
            assert await f.read() == data

    ringtrio.run(main)


def test_position_after_mixed_reads_and_seeks(tmp_path):
    # Unbuffered reads, read_at, seeks (every whence) and reads past EOF,
    # against FileIO step by step: the same bytes and positions.
    p = tmp_path / "f"
    data = _make(p, 50000)
    steps = [
        ("read", 1000),
        ("read_at", (40000, 3000)),
        ("read", 5000),
        ("seek", (100, os.SEEK_CUR)),
        ("read", 70000),
        ("read", 10),
        ("seek", (-2000, os.SEEK_END)),
        ("read", 4096),
        ("seek", (3, os.SEEK_SET)),
        ("read_at", (49999, 10)),
        ("read", 1),
        ("seek", (60000, os.SEEK_SET)),
        ("read", 100),
        ("seek", (0, os.SEEK_SET)),
        ("read", None),
    ]

    def sync_steps():
        out = []
        with open(p, "rb", buffering=0) as f:
            for what, arg in steps:
                if what == "read":
                    out.append(f.read(arg))
                elif what == "read_at":
                    out.append(os.pread(f.fileno(), arg[1], arg[0]))
                else:
                    out.append(f.seek(*arg))
                out.append(f.tell())
        return out

    async def main():
        out = []
        async with await open_file(p, "rb", buffering=0) as f:
            for what, arg in steps:
                if what == "read":
                    out.append(await f.read(arg))
                elif what == "read_at":
                    out.append(await f.read_at(*arg))
                else:
                    out.append(await f.seek(*arg))
                out.append(await f.tell())
        return out

    assert ringtrio.run(main) == sync_steps()


def test_concurrent_unbuffered_readers_share_the_position(tmp_path):
    # Several tasks reading one unbuffered file: every byte goes to exactly
    # one of them, in file order per task.
    p = tmp_path / "f"
    data = _make(p, 64 * 1000)

    async def main():
        got: dict[int, list[tuple[int, bytes]]] = {}
        async with await open_file(p, "rb", buffering=0) as f:

            async def reader(k):
                mine = got.setdefault(k, [])
                while True:
                    pos = await f.tell()
                    chunk = await f.read(1000)
                    if not chunk:
                        return
                    mine.append((pos, chunk))

            async with ringtrio.open_nursery() as nursery:
                for k in range(4):
                    nursery.start_soon(reader, k)
        pieces = sorted(piece for mine in got.values() for piece in mine)
        assert b"".join(chunk for _, chunk in pieces) == data
        assert all(data[pos : pos + len(chunk)] == chunk for pos, chunk in pieces)

    ringtrio.run(main)


def test_no_page_cache_reads_where_they_do_not_apply(tmp_path):
    # A pipe, a /proc file (S_ISREG, size 0, hands out a page per read) and
    # an O_DIRECT file never try; their reads work as before.
    async def main():
        r, w = os.pipe()
        os.write(w, b"hello")
        os.close(w)
        async with ringtrio.wrap_file(os.fdopen(r, "rb", buffering=0)) as f:
            assert not f._nowait
            assert await f.read(100) == b"hello"
            assert await f.read(100) == b""
        async with await open_file("/proc/self/status", "rb", buffering=0) as f:
            assert not f._nowait
            assert b"Name:" in await f.read(4096)
        p = tmp_path / "d"
        _make(p, 8192)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
        except OSError:
            fd = -1  # (a file system without O_DIRECT: nothing to check there)
        if fd >= 0:
            async with ringtrio.wrap_file(os.fdopen(fd, "rb", buffering=0)) as f:
                assert not f._nowait
        async with await open_file(p, "rb", buffering=0) as f:
            assert f._nowait

    ringtrio.run(main)


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.EINVAL])
def test_no_nonblocking_reads_stops_the_attempts(tmp_path, monkeypatch, err):
    # A file system without non-blocking reads (tmpfs answers EOPNOTSUPP):
    # the file stops trying after the first answer; the ring reads it.
    p = tmp_path / "f"
    data = _make(p, 10000)

    async def main():
        calls = []

        def unsupported(fd, size, offset):
            calls.append(offset)
            return err

        _use_reader(monkeypatch, unsupported)
        async with await open_file(p, "rb", buffering=0) as f:
            assert await f.read(4096) == data[:4096]
            assert not f._nowait
            assert await f.read(4096) == data[4096:8192]
            assert await f.read_at(0, 10) == data[:10]
            assert await f.read() == data[8192:]
        assert calls == [0]

    ringtrio.run(main)


def test_tmpfs_file_reads(tmp_path):
    # /dev/shm (tmpfs) where it is mounted: whatever its kernel answers,
    # the bytes are the file's.
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else str(tmp_path)
    p = os.path.join(base, f"ringtrio-test-{os.getpid()}")
    try:
        data = _make(p, 3 * 4096 + 1)

        async def main():
            async with await open_file(p, "rb", buffering=0) as f:
                assert await f.read(4096) == data[:4096]
                assert await f.read_at(4096, 8192) == data[4096:12288]
                assert await f.read(100000) == data[4096:]

        ringtrio.run(main)
    finally:
        os.unlink(p)
