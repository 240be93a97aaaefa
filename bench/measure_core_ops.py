"""CPU time per core operation, for comparing two trees of ringtrio.

    python bench/measure_core_ops.py --trees OLD NEW [--rounds 4]

Each round runs every row once per tree, alternating, in a fresh process
pinned to one CPU (``taskset``), and measures ``time.process_time`` of the
row's body (wall time mostly measures the neighbours on a shared machine).
Prints ns per op, best and median over the rounds, per tree.

Rows: ``checkpoint`` (one task, ``lowlevel.checkpoint()``), ``nop`` (10
tasks each awaiting a NOP ring op through ``submit_and_wait``), ``nop100``
(the same with 100 tasks: issue 16's shape),
``spawn`` (spawn and join trivial tasks), ``event`` (two tasks ping-ponging
through ``Event``s: two reschedules per trip), ``scope`` (``move_on_after``
entered and left around a checkpoint); the bodies other than ``nop``
are ``bench/_trio_like.py``'s.  Each tree's ringtrio must be importable from
the tree (the native modules built in place), and its ``bench`` package.
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
from bench import _trio_like

N = int(sys.argv[2])


async def nops(lib, n, tasks):
    per = n // tasks

    async def worker():
        op = lowlevel.RingOp(IORING_OP_NOP)
        for _ in range(per):
            await lowlevel.submit_and_wait(op)

    async with lib.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(worker)


async def nop(lib, n):
    await nops(lib, n, 10)


async def nop100(lib, n):
    await nops(lib, n, 100)


# row: (body, operations per unit of N)
ROWS = {
    "checkpoint": (_trio_like.checkpoints, 1),
    "nop": (nop, 1),
    "nop100": (nop100, 1),
    "spawn": (_trio_like.spawn_join, 4),
    "event": (_trio_like.event_pingpong, 8),
    "scope": (_trio_like.timeout_scopes, 2),
}
body, per = ROWS[sys.argv[1]]
count = N // per


async def main():
    t = time.process_time()
    await body(ringtrio, count)
    return (time.process_time() - t) / count


print(json.dumps(ringtrio.run(main) * 1e9))
"""

ROWS = ["checkpoint", "nop", "nop100", "spawn", "event", "scope"]


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
                # Run from inside the tree: `python -c` puts the working
                # directory first on sys.path, ahead of PYTHONPATH, so a
                # child started from another tree would import that one.
                root = os.path.abspath(tree)
                env = dict(os.environ, PYTHONPATH=root)
                out = subprocess.run(
                    ["taskset", "-c", args.cpu, sys.executable, "-c", _CHILD, row, str(args.n)],
                    env=env, cwd=root, check=True, capture_output=True, text=True,
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
