"""What one 64 KiB read of a cached file costs, part by part (issue 16).

    python bench/measure_file_reads.py [--what calls|streams] [--cpu K] [--rounds 7]

``calls`` (default; pin it with ``--cpu``): CPU time per 64 KiB read of a
cached 256 MiB file, medians over the rounds -- sync ``os.pread`` and
``FileIO.read``, the accelerator's ``pread_nowait`` alone and followed by a
schedule point (the cheapest read that is a checkpoint), a bare schedule
point and ``checkpoint()``, ringtrio's unbuffered ``read``, ``read_at`` and
8 concurrent ``read_at`` streams.

``streams``: 8 concurrent ``read_at`` streams (32 MiB each) against sync
``os.pread`` of the same slices one after another, as ``read_at`` does it
(the page cache first), with a ring READ per read, and with a ring READ
flagged ``IOSQE_ASYNC`` (io-wq workers, which can run on another CPU): wall
time, the process's CPU time and the loop thread's, per read.  Leave it
unpinned to let io-wq use the other CPUs.

It measures the ringtrio it imports, so running it with another tree's
interpreter measures that tree (rows that tree lacks are left out).  The
file lives in ``$RINGTRIO_BENCH_DIR`` (else the temp dir) and is removed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import ringtrio
from ringtrio._core import RingOp, _accel, submit_and_wait
from ringtrio._core._ring import IORING_OP_READ, IOSQE_ASYNC
from ringtrio.lowlevel import cancel_shielded_checkpoint, checkpoint

CHUNK = 64 * 1024
N = 4096  # reads of 64 KiB: 256 MiB
STREAMS = 8
PER = N // STREAMS


def _sync_calls(path: str) -> dict[str, float]:
    out = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        t = time.process_time()
        for i in range(N):
            os.pread(fd, CHUNK, i * CHUNK)
        out["sync os.pread"] = time.process_time() - t
    finally:
        os.close(fd)
    with open(path, "rb", buffering=0) as f:
        t = time.process_time()
        while f.read(CHUNK):
            pass
        out["sync FileIO.read"] = time.process_time() - t
    return out


async def _ringtrio_calls(path: str) -> dict[str, float]:
    out = {}
    nowait = getattr(_accel, "_sp_pread_nowait", None)
    fd = os.open(path, os.O_RDONLY)
    try:
        if nowait is not None:
            t = time.process_time()
            for i in range(N):
                nowait(fd, CHUNK, i * CHUNK)
            out["pread_nowait alone"] = time.process_time() - t
            t = time.process_time()
            for i in range(N):
                nowait(fd, CHUNK, i * CHUNK)
                await cancel_shielded_checkpoint()
            out["pread_nowait + schedule point"] = time.process_time() - t
    finally:
        os.close(fd)
    t = time.process_time()
    for _ in range(N):
        await cancel_shielded_checkpoint()
    out["bare schedule point"] = time.process_time() - t
    t = time.process_time()
    for _ in range(N):
        await checkpoint()
    out["bare checkpoint()"] = time.process_time() - t
    async with await ringtrio.open_file(path, "rb", buffering=0) as f:
        t = time.process_time()
        while await f.read(CHUNK):
            pass
        out["ringtrio read()"] = time.process_time() - t
        t = time.process_time()
        for i in range(N):
            await f.read_at(i * CHUNK, CHUNK)
        out["ringtrio read_at()"] = time.process_time() - t

        async def stream(k: int) -> None:
            off = k * PER * CHUNK
            for _ in range(PER):
                off += len(await f.read_at(off, CHUNK))

        t = time.process_time()
        async with ringtrio.open_nursery() as nursery:
            for k in range(STREAMS):
                nursery.start_soon(stream, k)
        out["ringtrio 8 x read_at"] = time.process_time() - t
    return out


def _calls(path: str, rounds: int) -> None:
    runs = []
    for _ in range(rounds):
        run = _sync_calls(path)
        run.update(ringtrio.run(_ringtrio_calls, path))
        runs.append(run)
    print(f"{'µs per 64 KiB read (CPU), median of ' + str(rounds):40} ratio to sync")
    sync = statistics.median(r["sync FileIO.read"] for r in runs)
    for name in runs[0]:
        us = statistics.median(r[name] for r in runs)
        ratio = "" if "bare" in name else f"{sync / us:.2f}x"
        print(f"{name:40} {us / N * 1e6:6.2f}   {ratio}")


def _sync_streams(path: str) -> tuple[float, float, float]:
    fd = os.open(path, os.O_RDONLY)
    try:
        t, c = time.perf_counter(), time.process_time()
        for k in range(STREAMS):
            off = k * PER * CHUNK
            for _ in range(PER):
                off += len(os.pread(fd, CHUNK, off))
        cpu = time.process_time() - c
        return time.perf_counter() - t, cpu, cpu
    finally:
        os.close(fd)


async def _ringtrio_streams(path: str, kind: str) -> tuple[float, float, float]:
    async with await ringtrio.open_file(path, "rb", buffering=0) as f:
        fd = f.fileno()
        flags = IOSQE_ASYNC if kind == "ring READ + IOSQE_ASYNC" else 0
        new_bytes = _accel._sp_new_bytes

        async def ring_read(off: int) -> bytes:
            data = new_bytes(CHUNK) if new_bytes is not None else bytes(CHUNK)
            res, _ = await submit_and_wait(RingOp(IORING_OP_READ, fd, data, CHUNK, off, sqe_flags=flags, keepalive=data))
            if res != CHUNK:
                raise OSError(-res if res < 0 else 0, "short ring READ")
            return data

        async def stream(k: int) -> None:
            off = k * PER * CHUNK
            for _ in range(PER):
                data = await (f.read_at(off, CHUNK) if kind == "read_at" else ring_read(off))
                off += len(data)

        t, c, th = time.perf_counter(), time.process_time(), time.thread_time()
        async with ringtrio.open_nursery() as nursery:
            for k in range(STREAMS):
                nursery.start_soon(stream, k)
        return time.perf_counter() - t, time.process_time() - c, time.thread_time() - th


def _streams(path: str, rounds: int) -> None:
    kinds = ["sync os.pread", "read_at", "ring READ", "ring READ + IOSQE_ASYNC"]
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind in kinds:
            runs[kind].append(_sync_streams(path) if kind.startswith("sync") else ringtrio.run(_ringtrio_streams, path, kind))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"CPUs {sorted(os.sched_getaffinity(0))}, load {load}; µs per read, median of {rounds}")
    sync_wall = statistics.median(r[0] for r in runs["sync os.pread"])
    for kind in kinds:
        wall, cpu, loop = (statistics.median(r[i] for r in runs[kind]) for i in range(3))
        print(
            f"{kind:24} wall {wall / N * 1e6:6.2f}  process CPU {cpu / N * 1e6:6.2f}"
            f"  loop thread CPU {loop / N * 1e6:6.2f}  wall against sync {sync_wall / wall:.2f}x"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--what", choices=("calls", "streams"), default="calls")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU first")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    d = tempfile.mkdtemp(prefix="ringtrio-reads-", dir=os.environ.get("RINGTRIO_BENCH_DIR") or None)
    path = os.path.join(d, "big")
    try:
        block = os.urandom(CHUNK)
        with open(path, "wb") as f:
            for _ in range(N):
                f.write(block)
        print(f"ringtrio from {os.path.dirname(ringtrio.__file__)}")
        (_calls if args.what == "calls" else _streams)(path, args.rounds)
    finally:
        os.unlink(path)
        os.rmdir(d)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
