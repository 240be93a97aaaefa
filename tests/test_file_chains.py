"""Whole-file reads as one linked chain (OPENAT into a direct slot -> READ ->
READ): results against the stdlib, end of file on every kind of file, errors,
the fallback path, and cancellation that leaks neither an fd nor a slot."""

from __future__ import annotations

import errno
import os
import pathlib
import random
import threading
import time

import pytest

import ringtrio
from ringtrio import _file_io
from ringtrio._core import _accel, _chains
from ringtrio._core import direct_files

Path = ringtrio.Path
CHUNK1 = _file_io._CHAIN_READ1
CHUNK2 = _file_io._CHAIN_READ2


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(params=["chain", "plain"])
def path_mode(request, monkeypatch):
    """Run a test through the chain and through the plain path (forced)."""
    if request.param == "plain":
        monkeypatch.setattr(_file_io, "_USE_CHAINS", False)
    return request.param


def _slots_state():
    files = direct_files()
    return None if files is None else (len(files.free), files.size)


async def _assert_all_slots_free():
    files = direct_files()
    if files is not None:
        assert sorted(files.free) == list(range(files.size))


SIZES = [0, 1, 4096, CHUNK1 - 1, CHUNK1, CHUNK1 + 1, CHUNK1 + CHUNK2 - 1, CHUNK1 + CHUNK2,
         CHUNK1 + CHUNK2 + 1, 3 * CHUNK1 + 17, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
def test_read_bytes_matches_file_at_chunk_boundaries(tmp_path, path_mode, size):
    data = os.urandom(size)
    p = tmp_path / "f"
    p.write_bytes(data)

    async def main():
        assert await Path(p).read_bytes() == data
        await _assert_all_slots_free()

    ringtrio.run(main)


def test_chain_path_is_taken_and_uses_one_wakeup(tmp_path):
    """The chain really runs (a direct slot is used) and a small file costs
    one park: the task is rescheduled once."""
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    seen = []

    class Counter(ringtrio.abc.Instrument if hasattr(ringtrio, "abc") else object):
        def task_scheduled(self, task):
            seen.append(task)

    async def main():
        await Path(p).read_bytes()  # registers the table
        assert direct_files() is not None
        task = ringtrio.lowlevel.current_task()
        seen.clear()
        ringtrio.lowlevel.add_instrument(Counter())
        assert await Path(p).read_bytes() == b"abc"
        assert seen.count(task) == 1

    ringtrio.run(main)


def test_read_text_matches_pathlib(tmp_path, path_mode):
    p = tmp_path / "t"
    cases = [
        ("héllo\r\nwörld\rend\n".encode(), "utf-8", "strict"),
        ("\ufeffbom and text\r\n".encode("utf-8"), "utf-8-sig", "strict"),
        ("utf16 ünïcode\n".encode("utf-16"), "utf-16", "strict"),
        (b"bad \xff byte\r\n", "utf-8", "replace"),
        (b"x" * (CHUNK1 + 5) + "é".encode() + b"\r\n", "utf-8", "strict"),
    ]

    async def main():
        for raw, enc, errs in cases:
            p.write_bytes(raw)
            assert await Path(p).read_text(enc, errs) == pathlib.Path(p).read_text(enc, errs)
        p.write_bytes(b"bad \xff")
        with pytest.raises(UnicodeDecodeError):
            await Path(p).read_text("utf-8")

    ringtrio.run(main)


def test_proc_files_short_reads_are_not_eof(path_mode):
    """/proc files are S_ISREG but hand out ~4 KiB per read: only a read of
    0 bytes ends the file."""
    p = "/proc/kallsyms"
    expected = open(p, "rb").read()
    assert len(expected) > CHUNK1 + CHUNK2  # several short reads deep

    async def main():
        assert await Path(p).read_bytes() == expected
        assert await Path("/proc/cpuinfo").read_bytes() == open("/proc/cpuinfo", "rb").read()

    ringtrio.run(main)


def test_fifo_is_read_to_eof(tmp_path, path_mode):
    """A FIFO gives short reads long before its end; the writer trickles
    data in with pauses and then closes."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pieces = [os.urandom(n) for n in (10, 5000, CHUNK1, 3, CHUNK2 + 1)]

    def writer():
        with open(fifo, "wb", buffering=0) as w:
            for piece in pieces:
                w.write(piece)
                time.sleep(0.01)

    async def main():
        t = threading.Thread(target=writer)
        t.start()
        try:
            assert await Path(fifo).read_bytes() == b"".join(pieces)
        finally:
            t.join()
        await _assert_all_slots_free()

    ringtrio.run(main)


def _stdlib_error(path):
    try:
        open(path, "rb").read()
    except OSError as exc:
        return exc
    raise AssertionError(f"{path} was readable")


@pytest.mark.parametrize("kind", ["ENOENT", "EISDIR", "EACCES", "ENOTDIR"])
def test_errors_map_to_stdlib_exceptions_with_the_path(tmp_path, path_mode, kind):
    if kind == "ENOENT":
        path = str(tmp_path / "missing")
    elif kind == "EISDIR":
        path = str(tmp_path)
    elif kind == "ENOTDIR":
        (tmp_path / "file").write_bytes(b"")
        path = str(tmp_path / "file" / "below")
    elif os.geteuid() == 0:
        path = "/proc/sys/vm/drop_caches"  # mode 0200: root gets EACCES too
    else:
        path = str(tmp_path / "secret")
        pathlib.Path(path).write_bytes(b"")
        os.chmod(path, 0)
    expected = _stdlib_error(path)
    before = count_fds()

    async def main():
        with pytest.raises(OSError) as info:
            await Path(path).read_bytes()
        assert type(info.value) is type(expected)
        assert info.value.errno == expected.errno == getattr(errno, kind)
        assert info.value.filename == path
        await _assert_all_slots_free()

    ringtrio.run(main)
    assert count_fds() == before


def test_embedded_nul_is_valueerror(path_mode):
    async def main():
        with pytest.raises(ValueError):
            await Path("/tmp/a\0b").read_bytes()
        await _assert_all_slots_free()

    ringtrio.run(main)


def test_undecodable_and_non_ascii_names(tmp_path, path_mode):
    """Names are encoded as os.fsencode does: a byte that is not UTF-8
    (a lone surrogate in the str) and non-ASCII text both reach the file."""
    raw = os.path.join(os.fsencode(tmp_path), b"bad-\xff-name")
    with open(raw, "wb") as f:
        f.write(b"one")
    with open(os.path.join(tmp_path, "caf\u00e9"), "wb") as f:
        f.write(b"two")

    async def main():
        assert await Path(os.fsdecode(raw)).read_bytes() == b"one"
        assert await Path(raw.decode("utf-8", "surrogateescape")).read_bytes() == b"one"
        assert await Path(tmp_path / "caf\u00e9").read_bytes() == b"two"
        async with await ringtrio.open_file(os.fsdecode(raw), "rb") as f:
            assert await f.read() == b"one"
        await _assert_all_slots_free()

    ringtrio.run(main)


def test_exhausted_table_falls_back_to_plain_path(tmp_path, monkeypatch):
    """More concurrent reads than slots: the rest take the plain path."""
    monkeypatch.setattr(_chains, "_DIRECT_FILES_SIZE", 2)
    paths = []
    for i in range(20):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(i * 1000))
        paths.append(p)
    got = {}

    async def one(p):
        got[p] = await Path(p).read_bytes()

    async def main():
        async with ringtrio.open_nursery() as nursery:
            for p in paths:
                nursery.start_soon(one, p)
        assert _slots_state() == (2, 2)

    ringtrio.run(main)
    assert all(got[p] == p.read_bytes() for p in paths)


def test_unsupported_kernel_falls_back(tmp_path, monkeypatch):
    """No sparse table (registration fails): direct_files() is None and the
    plain path runs."""
    p = tmp_path / "f"
    p.write_bytes(b"data")
    monkeypatch.setattr(_chains, "_DIRECT_FILES_SIZE", 0)

    async def main():
        assert direct_files() is None
        assert await Path(p).read_bytes() == b"data"

    ringtrio.run(main)


def test_cancelled_chains_leak_no_fd_and_no_slot(tmp_path):
    """Thousands of read_bytes cancelled at random points (before submission,
    with the OPENAT or a READ in flight, after completion; deadlines and
    explicit cancels): every slot is free again, no fd is left, and every
    read that returned returned the whole file."""
    paths = []
    for i in range(8):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(i * 9000))
        paths.append(str(p))
    contents = [open(p, "rb").read() for p in paths]
    rng = random.Random(4321)
    before = count_fds()
    outcomes = {"read": 0, "cancelled": 0}

    async def one(i):
        with ringtrio.move_on_after(rng.choice([0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 1])) as scope:
            data = await Path(paths[i % 8]).read_bytes()
            assert data == contents[i % 8]
            await ringtrio.lowlevel.checkpoint()
        outcomes["cancelled" if scope.cancelled_caught else "read"] += 1

    async def canceller(scope, n):
        for _ in range(n):
            await ringtrio.lowlevel.checkpoint()
        scope.cancel()

    async def main():
        for batch in range(60):
            async with ringtrio.open_nursery() as nursery:
                for i in range(batch * 50, batch * 50 + 50):
                    nursery.start_soon(one, i)
            with ringtrio.CancelScope() as outer:
                async with ringtrio.open_nursery() as nursery:
                    for i in range(20):
                        nursery.start_soon(one, i)
                    nursery.start_soon(canceller, outer, batch % 4)
        await _assert_all_slots_free()

    ringtrio.run(main)
    assert count_fds() == before
    assert outcomes["cancelled"] > 100 and outcomes["read"] > 100


def test_cancel_chain_blocked_opening_a_fifo(tmp_path):
    """OPENAT of a FIFO with no writer blocks in an io-wq worker: cancelling
    it frees the slot and raises Cancelled."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    before = count_fds()

    async def main():
        with ringtrio.move_on_after(0.05) as scope:
            await Path(fifo).read_bytes()
        assert scope.cancelled_caught
        await _assert_all_slots_free()

    ringtrio.run(main)
    assert count_fds() == before


def test_cancel_chain_blocked_reading_a_fifo(tmp_path):
    """The OPENAT succeeded (a writer is there) and the first READ waits for
    data: the cancel reaches the READ, the slot is still closed."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd_w = []

    def opener():
        fd_w.append(os.open(fifo, os.O_WRONLY))

    async def main():
        t = threading.Thread(target=opener)
        t.start()
        try:
            with ringtrio.move_on_after(0.1) as scope:
                await Path(fifo).read_bytes()
            assert scope.cancelled_caught
        finally:
            t.join()
            os.close(fd_w[0])
        await _assert_all_slots_free()

    before = count_fds()
    ringtrio.run(main)
    assert count_fds() == before


def test_run_ends_with_the_table_gone(tmp_path):
    """The table is registered with the ring and goes with it: a second run
    gets a fresh one, and no fd of either run is left."""
    p = tmp_path / "f"
    p.write_bytes(b"x")
    before = count_fds()

    async def main():
        assert await Path(p).read_bytes() == b"x"
        return direct_files()

    first = ringtrio.run(main)
    second = ringtrio.run(main)
    assert first is not None and second is not None and first is not second
    assert count_fds() == before


# ---------------------------------------------------------------------------
# Sequential large reads: the read-ahead window (AsyncBinaryFile._stream_read)
# ---------------------------------------------------------------------------


def test_streaming_reads_match_stdlib_with_seeks_lines_and_writes(tmp_path):
    """Large sequential reads are served from a growing read-ahead window;
    whatever is mixed in (small reads, readline, peek, seeks inside and
    outside the window, writes) gives the stdlib's results."""
    data = bytearray(os.urandom(5 * (1 << 20)))
    for i in range(0, len(data), 1000):
        data[i] = 10  # some lines
    p = tmp_path / "big"
    p.write_bytes(data)
    rng = random.Random(99)
    ops = []
    for _ in range(300):
        kind = rng.choice(["big", "big", "big", "small", "line", "peek", "seek", "tell", "write"])
        ops.append((kind, rng.choice([65536, 70000, 200000, 1 << 20]), rng.randrange(len(data))))

    def sync_side():
        out = []
        with open(p, "r+b") as f:
            for kind, n, where in ops:
                out.append(_apply_sync(f, kind, n, where))
        return out, p.read_bytes()

    async def async_side():
        out = []
        async with await ringtrio.open_file(p, "r+b") as f:
            for kind, n, where in ops:
                out.append(await _apply_async(f, kind, n, where))
        return out, p.read_bytes()

    expected = sync_side()
    p.write_bytes(data)
    assert ringtrio.run(async_side) == expected


def _apply_sync(f, kind, n, where):
    if kind == "big":
        return f.read(n)
    if kind == "small":
        return f.read(100)
    if kind == "line":
        return f.readline()
    if kind == "peek":
        f.peek(1)
        return None
    if kind == "seek":
        return f.seek(where)
    if kind == "tell":
        return f.tell()
    f.seek(f.tell())
    return f.write(b"W" * 10)


async def _apply_async(f, kind, n, where):
    if kind == "big":
        return await f.read(n)
    if kind == "small":
        return await f.read(100)
    if kind == "line":
        return await f.readline()
    if kind == "peek":
        await f.peek(1)
        return None
    if kind == "seek":
        return await f.seek(where)
    if kind == "tell":
        return await f.tell()
    return await f.write(b"W" * 10)


def test_cancelled_streaming_read_keeps_position(tmp_path):
    """A streaming read cancelled in flight either happened (bytes returned,
    position moved) or did not (Cancelled, position unchanged): reading on
    gives exactly the file."""
    data = os.urandom(8 << 20)
    p = tmp_path / "big"
    p.write_bytes(data)
    rng = random.Random(7)

    async def main():
        got = []
        async with await ringtrio.open_file(p, "rb") as f:
            while True:
                with ringtrio.move_on_after(rng.choice([0, 1e-6, 1e-5, 1])):
                    chunk = await f.read(65536)
                    got.append(chunk)
                    if not chunk:
                        break
                assert await f.tell() == sum(map(len, got))
        return b"".join(got)

    assert ringtrio.run(main) == data


def test_whole_chunk_reads_match_stdlib_and_use_one_op_per_window(tmp_path):
    """With the accelerator, sequential read(n) of one size is served by a
    READV per window into n-byte objects handed out as they are; runs of it
    mixed with other reads, lines, seeks and writes give the stdlib's
    results, and a plain run of reads costs about one ring op per window."""
    data = bytearray(os.urandom(6 * (1 << 20)))
    for i in range(0, len(data), 5000):
        data[i] = 10
    p = tmp_path / "big"
    p.write_bytes(data)
    rng = random.Random(5)
    ops = []
    for _ in range(120):
        kind = rng.choice(["big"] * 12 + ["small", "line", "peek", "seek", "tell", "write"])
        ops.append((kind, 65536, rng.randrange(len(data))))

    def sync_side():
        with open(p, "r+b") as f:
            out = [_apply_sync(f, kind, n, where) for kind, n, where in ops]
        return out, p.read_bytes()

    async def async_side():
        async with await ringtrio.open_file(p, "r+b") as f:
            out = [await _apply_async(f, kind, n, where) for kind, n, where in ops]
        return out, p.read_bytes()

    expected = sync_side()
    p.write_bytes(data)
    assert ringtrio.run(async_side) == expected

    async def plain_run():
        stats = ringtrio.lowlevel.current_statistics
        async with await ringtrio.open_file(p, "rb") as f:
            before = stats().sqes_submitted
            got = [await f.read(65536) for _ in range(64)]  # 4 MiB
            used = stats().sqes_submitted - before
        return b"".join(got), used

    p.write_bytes(data)  # (async_side wrote into it)
    got, used = ringtrio.run(plain_run)
    assert got == bytes(data[: 64 * 65536])
    if _accel._sp_iovecs is not None:
        # 64 KiB, then windows of 256 KiB, 512 KiB, 1 MiB, 1 MiB...: about 7.
        assert used <= 10, used


def test_write_at_is_seen_by_reads_that_follow(tmp_path):
    """write_at drops the read-ahead (plain or whole-chunk), so a read that
    follows returns the new bytes, not the ones read ahead before."""
    data = os.urandom(2 << 20)
    p = tmp_path / "big"
    p.write_bytes(data)

    async def main():
        async with await ringtrio.open_file(p, "r+b") as f:
            first = [await f.read(65536) for _ in range(3)]  # read-ahead now holds more
            assert b"".join(first) == data[: 3 * 65536]
            await f.write_at(3 * 65536 + 10, b"XYZ")
            nxt = await f.read(65536)
            assert nxt[10:13] == b"XYZ"
            assert nxt[:10] == data[3 * 65536 : 3 * 65536 + 10]
            await f.write_at(5 * 65536, b"Q")
            await f.seek(5 * 65536)
            assert (await f.read(100))[:1] == b"Q"

    ringtrio.run(main)
