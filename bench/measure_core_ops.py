"""CPU time per core operation, for comparing two trees of ringtrio.

    python bench/measure_core_ops.py --trees OLD NEW [--rounds 4]

Each round runs every row once per tree, alternating, in a fresh process
pinned to one CPU (``taskset``), and measures ``time.process_time`` of the
row's body (wall time mostly measures the neighbours on a shared machine).
Prints ns per op, best and median over the rounds, per tree.

Rows: ``checkpoint`` (one task, ``lowlevel.checkpoint()``), ``nop`` (10
tasks each awaiting a NOP ring op through ``submit_and_wait``),
``spawn`` (spawn and join trivial tasks), ``event`` (two tasks ping-ponging
through ``Event``s: two reschedules per trip).  Each tree's ringtrio must be
importable from the tree (the native modules built in place).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import json, sys, time
import ringtrio
from ringtrio import lowlevel
from ringtrio._core._ring import IORING_OP_NOP

N = int(sys.argv[2])

async def checkpoint():
    t = time.process_time()
    for _ in range(N):
        await lowlevel.checkpoint()
    return (time.process_time() - t) / N

async def nop():
    per = N // 10
    async def worker():
        op = lowlevel.RingOp(IORING_OP_NOP)
        for _ in range(per):
            await lowlevel.submit_and_wait(op)
    t = time.process_time()
    async with ringtrio.open_nursery() as n:
        for _ in range(10):
            n.start_soon(worker)
    return (time.process_time() - t) / (per * 10)

async def spawn():
    async def child():
        pass
    count = N // 4
    t = time.process_time()
    async with ringtrio.open_nursery() as n:
        for _ in range(count):
            n.start_soon(child)
    return (time.process_time() - t) / count

async def event():
    trips = N // 8
    box = [ringtrio.Event(), ringtrio.Event()]
    async def pong():
        for _ in range(trips):
            await box[0].wait()
            box[0] = ringtrio.Event()
            box[1].set()
    t = time.process_time()
    async with ringtrio.open_nursery() as n:
        n.start_soon(pong)
        for _ in range(trips):
            box[0].set()
            await box[1].wait()
            box[1] = ringtrio.Event()
    return (time.process_time() - t) / trips

row = sys.argv[1]
print(json.dumps(ringtrio.run(globals()[row]) * 1e9))
"""

ROWS = ["checkpoint", "nop", "spawn", "event"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trees", nargs="+", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--cpu", default="1")
    parser.add_argument("--rows", default=",".join(ROWS))
    args = parser.parse_args()
    rows = args.rows.split(",")
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for row in rows:
            for tree in args.trees:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                out = subprocess.run(
                    ["taskset", "-c", args.cpu, sys.executable, "-c", _CHILD, row, str(args.n)],
                    env=env, check=True, capture_output=True, text=True,
                ).stdout
                results.setdefault((row, tree), []).append(json.loads(out))
    for row in rows:
        cells = []
        for tree in args.trees:
            xs = results[(row, tree)]
            cells.append(f"{os.path.basename(os.path.abspath(tree))}: best {min(xs):.0f} median {statistics.median(xs):.0f}")
        print(f"{row:11s} ns/op  " + "   ".join(cells))


if __name__ == "__main__":
    main()
