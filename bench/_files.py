"""File-I/O benchmark bodies: ringtrio vs trio vs synchronous Python.

The async bodies have the registry's trio-like shape ``async def body(lib, n)``
and only use names ringtrio mirrors from trio (``open_file``, ``Path``,
``open_nursery``), so the same function runs under both.  Each one returns
its own elapsed seconds (the test files are created before timing starts) and
removes its files afterwards.  ``sync_*`` are the plain-Python baselines.

Rows (``n`` = ops at scale 1):

* ``files_read_4k``: read 10k files of 4 KiB with 64 concurrent tasks
  (``Path.read_bytes``); ops = files.
* ``file_read_64k``: read a 256 MiB file in 64 KiB chunks (``read(65536)``);
  ops = chunks (4096).
* ``file_read_64k_raw``: the same, unbuffered (``buffering=0``: one kernel
  read per call, no read-ahead; sync is ``FileIO.read``); ops = chunks.
* ``file_read_at_8``: the same file, 8 tasks each reading its own 32 MiB
  slice with ``read_at`` (ringtrio only; trio has no positioned read, so its
  body uses 8 separately opened files with seek + read).
* ``file_write_64k``: write 256 MiB in 64 KiB chunks, then fsync; ops = chunks.

Run standalone for the three-way comparison::

    RINGTRIO_BENCH_DIR=/dev/shm .venv/bin/python bench/_files.py [--scale F]

``--repeat N --stat median`` reports the median of N runs per cell instead of
the best (the libraries take turns within each repeat); ``--cpu K`` pins the
process (and so every run) to CPU K first; ``--clock cpu`` times the process's
CPU time instead of wall time (for a shared machine).
"""

import os
import shutil
import sys
import tempfile
import time

CHUNK = 64 * 1024
SMALL = 4096
CONCURRENCY = 64
STREAMS = 8
# Where the rows' files live: RINGTRIO_BENCH_DIR (bench/run.py --file-dir
# sets it), else the system's temporary directory.  The file system matters:
# on tmpfs (/dev/shm), NFS and FUSE io_uring has no non-blocking buffered
# reads and runs every READ/WRITE in an io-wq worker; on ext4/xfs page-cache
# reads complete inline.  See docs/files.md.
BENCH_DIR = os.environ.get("RINGTRIO_BENCH_DIR") or tempfile.gettempdir()
# What the bodies time with: wall time, or with --clock cpu the process's CPU
# time (all its threads, io-wq workers included), which a shared machine's
# other load does not inflate.
_clock = time.perf_counter


def describe_dir(path=None):
    """``path (fstype)`` for the report, from /proc/mounts.  (Reads the
    environment now: the harness sets RINGTRIO_BENCH_DIR after this module
    may have been imported.)"""
    path = os.path.realpath(path or os.environ.get("RINGTRIO_BENCH_DIR") or BENCH_DIR)
    best, fstype = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        pass
    return f"{path} ({fstype})"


def _mkdir():
    return tempfile.mkdtemp(prefix="ringtrio-bench-", dir=BENCH_DIR)


def _make_small_files(n):
    d = _mkdir()
    payload = os.urandom(SMALL)
    paths = []
    for i in range(n):
        p = os.path.join(d, f"f{i}")
        with open(p, "wb") as f:
            f.write(payload)
        paths.append(p)
    return d, paths


def _make_big_file(n_chunks):
    d = _mkdir()
    p = os.path.join(d, "big")
    block = os.urandom(CHUNK)
    with open(p, "wb") as f:
        for _ in range(n_chunks):
            f.write(block)
    return d, p


# -- (a) many small files ------------------------------------------------------


async def files_read_4k(lib, n):
    d, paths = _make_small_files(n)
    try:
        Path = lib.Path
        per_task = [paths[i::CONCURRENCY] for i in range(CONCURRENCY)]

        async def worker(mine):
            for p in mine:
                data = await Path(p).read_bytes()
                assert len(data) == SMALL

        t0 = _clock()
        async with lib.open_nursery() as nursery:
            for mine in per_task:
                nursery.start_soon(worker, mine)
        return _clock() - t0
    finally:
        shutil.rmtree(d)


def sync_files_read_4k(n):
    d, paths = _make_small_files(n)
    try:
        t0 = _clock()
        for p in paths:
            with open(p, "rb") as f:
                assert len(f.read()) == SMALL
        return _clock() - t0
    finally:
        shutil.rmtree(d)


# -- (b) one big file, sequential 64 KiB reads ------------------------------------------


async def file_read_64k(lib, n, buffering=-1):
    d, p = _make_big_file(n)
    try:
        t0 = _clock()
        async with await lib.open_file(p, "rb", buffering=buffering) as f:
            total = 0
            while True:
                data = await f.read(CHUNK)
                if not data:
                    break
                total += len(data)
        elapsed = _clock() - t0
        assert total == n * CHUNK
        return elapsed
    finally:
        shutil.rmtree(d)


def sync_file_read_64k(n, buffering=-1):
    d, p = _make_big_file(n)
    try:
        t0 = _clock()
        with open(p, "rb", buffering=buffering) as f:
            total = 0
            while True:
                data = f.read(CHUNK)
                if not data:
                    break
                total += len(data)
        elapsed = _clock() - t0
        assert total == n * CHUNK
        return elapsed
    finally:
        shutil.rmtree(d)


async def file_read_64k_raw(lib, n):
    # (one kernel read per call: what a read served from the page cache
    # without a ring op is for; docs/design.md, "One op")
    return await file_read_64k(lib, n, buffering=0)


def sync_file_read_64k_raw(n):
    return sync_file_read_64k(n, buffering=0)


async def file_read_at_8(lib, n):
    d, p = _make_big_file(n)
    try:
        per = n // STREAMS
        totals = []

        async def stream_read_at(f, k):
            off = k * per * CHUNK
            end = off + per * CHUNK
            got = 0
            while off < end:
                data = await f.read_at(off, CHUNK)
                off += len(data)
                got += len(data)
            totals.append(got)

        async def stream_seek(k):
            async with await lib.open_file(p, "rb") as f:
                await f.seek(k * per * CHUNK)
                got = 0
                for _ in range(per):
                    got += len(await f.read(CHUNK))
                totals.append(got)

        t0 = _clock()
        if hasattr(lib, "wrap_file") and lib.__name__ == "ringtrio":
            async with await lib.open_file(p, "rb") as f:
                async with lib.open_nursery() as nursery:
                    for k in range(STREAMS):
                        nursery.start_soon(stream_read_at, f, k)
        else:
            async with lib.open_nursery() as nursery:
                for k in range(STREAMS):
                    nursery.start_soon(stream_seek, k)
        elapsed = _clock() - t0
        assert sum(totals) == per * STREAMS * CHUNK
        return elapsed
    finally:
        shutil.rmtree(d)


def sync_file_read_at_8(n):
    # sync Python has no concurrency: the 8 slices one after another (pread)
    d, p = _make_big_file(n)
    try:
        per = n // STREAMS
        fd = os.open(p, os.O_RDONLY)
        try:
            t0 = _clock()
            total = 0
            for k in range(STREAMS):
                off = k * per * CHUNK
                for _ in range(per):
                    data = os.pread(fd, CHUNK, off)
                    off += len(data)
                    total += len(data)
            elapsed = _clock() - t0
        finally:
            os.close(fd)
        assert total == per * STREAMS * CHUNK
        return elapsed
    finally:
        shutil.rmtree(d)


# -- (c) sequential writes + fsync -----------------------------------------------------


async def file_write_64k(lib, n):
    d = _mkdir()
    try:
        block = os.urandom(CHUNK)
        t0 = _clock()
        async with await lib.open_file(os.path.join(d, "out"), "wb") as f:
            for _ in range(n):
                await f.write(block)
            await f.flush()
            if hasattr(f, "fsync"):
                await f.fsync()
            else:  # trio: the fd-level fsync in a thread
                await lib.to_thread.run_sync(os.fsync, f.fileno())
        return _clock() - t0
    finally:
        shutil.rmtree(d)


def sync_file_write_64k(n):
    d = _mkdir()
    try:
        block = os.urandom(CHUNK)
        t0 = _clock()
        with open(os.path.join(d, "out"), "wb") as f:
            for _ in range(n):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        return _clock() - t0
    finally:
        shutil.rmtree(d)


ROWS = {
    # name: (count at scale 1, unit, async body, sync body, bytes per op or None)
    "files_read_4k": (10_000, "files", files_read_4k, sync_files_read_4k, None),
    "file_read_64k": (4096, "64 KiB chunks", file_read_64k, sync_file_read_64k, CHUNK),
    "file_read_64k_raw": (4096, "64 KiB chunks", file_read_64k_raw, sync_file_read_64k_raw, CHUNK),
    "file_read_at_8": (4096, "64 KiB chunks", file_read_at_8, sync_file_read_at_8, CHUNK),
    "file_write_64k": (4096, "64 KiB chunks", file_write_64k, sync_file_write_64k, CHUNK),
}


def _run_async(libname, body, n):
    import importlib

    lib = importlib.import_module(libname)
    if libname == "ringtrio" and not hasattr(lib, "open_file"):
        # until ringtrio/__init__ re-exports the file API
        from ringtrio._file_io import open_file, wrap_file
        from ringtrio._path import Path

        lib.open_file, lib.wrap_file, lib.Path = open_file, wrap_file, Path

    async def main():
        return await body(lib, n)

    return lib.run(main)


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--libs", default="ringtrio,trio,sync")
    ap.add_argument("--stat", choices=("best", "median"), default="best", help="of the repeats, per cell")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU first")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what the bodies time")
    args = ap.parse_args(argv)
    global _clock
    _clock = time.perf_counter if args.clock == "wall" else time.process_time
    libs = args.libs.split(",")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    import statistics

    pick = min if args.stat == "best" else statistics.median
    print(f"files in {describe_dir()}; {args.clock} time, {args.stat} of {args.repeat}, cpu {args.cpu}")
    print(f"{'row':16} " + " ".join(f"{lib:>16}" for lib in libs) + "   ringtrio/sync  ringtrio/trio")
    for row in args.rows.split(","):
        count, unit, abody, sbody, nbytes = ROWS[row]
        n = max(STREAMS, int(count * args.scale))
        rates = {}
        # The libraries take turns within each repeat, so a change in the
        # machine's load (shared, noisy VMs) hits them alike.
        times = {lib: [] for lib in libs}
        for _ in range(args.repeat):
            for lib in libs:
                times[lib].append(sbody(n) if lib == "sync" else _run_async(lib, abody, n))
        for lib in libs:
            rates[lib] = n / pick(times[lib])
        def fmt(r):
            if nbytes:
                return f"{r * nbytes / 2**20:10.0f} MiB/s"
            return f"{r:10.0f} {unit}/s"[:16].rjust(16)
        ratio_s = rates.get("ringtrio", 0) / rates["sync"] if "sync" in rates else float("nan")
        ratio_t = rates.get("ringtrio", 0) / rates["trio"] if "trio" in rates else float("nan")
        print(f"{row:16} " + " ".join(f"{fmt(rates[lib]):>16}" for lib in libs) + f"   {ratio_s:13.2f}  {ratio_t:13.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
