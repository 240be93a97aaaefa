"""What lowlevel.task_tree() costs, and what having it costs everything else:
the measurements behind docs/debugging.md ("What it costs").

Two parts:

* the snapshot: CPU time of one ``task_tree()`` of N parked tasks (Event
  waiters; and tasks each parked on a ring op on its own socket, where every
  op's file descriptor is described with a few system calls);
* the scheduler's rows, CPU per op, for two source trees side by side (this
  one and, with ``--base DIR``, another checkout, e.g. main before the
  feature), alternated in fresh processes pinned to one CPU: checkpoint,
  spawn (start_soon + exit), NOP ring op (submit_and_wait), a 1 KiB echo
  round trip over a socketpair (send_all + receive_some on both ends), each
  with op timestamps off (the default) and, in this tree, on.

    .venv/bin/python bench/measure_task_tree.py [--base DIR] [--rounds 4]

CPU time (``time.process_time``), not wall time: the development machine is
shared, and wall time mostly measures the neighbours.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

# The worker: run in a fresh interpreter with the tree to measure first on
# sys.path.  Prints one JSON object.
WORKER = r"""
import json, sys, time, gc
sys.path.insert(0, sys.argv[1])
import ringtrio
from ringtrio import lowlevel
what = sys.argv[2]
stamps = sys.argv[3] == "on"
N = int(sys.argv[4])

def best(f, reps=3):
    b = float("inf")
    for _ in range(reps):
        b = min(b, f())
    return b

async def checkpoints():
    cp = lowlevel.checkpoint
    t = time.process_time()
    for _ in range(N):
        await cp()
    return (time.process_time() - t) / N

async def _noop():
    pass

async def spawn():
    t = time.process_time()
    async with ringtrio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(_noop)
    return (time.process_time() - t) / N

async def nop_ops():
    op = lowlevel.RingOp(lowlevel.IORING_OP_NOP)
    submit = lowlevel.submit_and_wait
    t = time.process_time()
    for _ in range(N):
        await submit(op)
    return (time.process_time() - t) / N

async def echo():
    a, b = ringtrio.socket.socketpair()
    sa, sb = ringtrio.SocketStream(a), ringtrio.SocketStream(b)
    payload = b"x" * 1024
    n = N // 10

    async def echoer():
        for _ in range(n):
            data = await sb.receive_some(4096)
            await sb.send_all(data)

    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(echoer)
        t = time.process_time()
        for _ in range(n):
            await sa.send_all(payload)
            got = 0
            while got < len(payload):
                got += len(await sa.receive_some(4096))
        elapsed = time.process_time() - t
    await sa.aclose(); await sb.aclose()
    return elapsed / n

async def snapshot_events():
    ev = ringtrio.Event()
    async with ringtrio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(ev.wait)
        await ringtrio.testing.wait_all_tasks_blocked()
        def once():
            t = time.process_time(); lowlevel.task_tree(); return time.process_time() - t
        result = best(once, 5)
        ev.set()
    return result

async def snapshot_sockets():
    pairs = [ringtrio.socket.socketpair() for _ in range(N // 2)]
    async with ringtrio.open_nursery() as nursery:
        for a, b in pairs:
            nursery.start_soon(a.recv, 100)
            nursery.start_soon(b.recv, 100)
        await ringtrio.testing.wait_all_tasks_blocked()
        def once():
            t = time.process_time(); lowlevel.task_tree(); return time.process_time() - t
        result = best(once, 5)
        nursery.cancel_scope.cancel()
    for a, b in pairs:
        a.close(); b.close()
    return result

async def main():
    if stamps:
        lowlevel.enable_op_timestamps()
    fn = globals()[what]
    if what.startswith("snapshot"):
        return await fn()
    await fn()  # warm-up
    b = float("inf")
    for _ in range(3):
        b = min(b, await fn())
    return b

print(json.dumps({"value": ringtrio.run(main)}))
"""

ROWS = {"checkpoints": 300_000, "spawn": 100_000, "nop_ops": 200_000, "echo": 200_000}


def worker(tree: Path, what: str, stamps: str, n: int, cpu: int | None) -> float:
    cmd = [sys.executable, "-c", WORKER, str(tree), what, stamps, str(n)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": ""})
    if out.returncode:
        raise RuntimeError(f"{what} in {tree} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["value"]  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, help="another checkout (built) to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rows", default=",".join(ROWS), help="scheduler rows to run (comma-separated)")
    parser.add_argument("--no-snapshots", action="store_true", help="skip the snapshot part")
    parser.add_argument("--cpu", type=int, default=os.cpu_count() - 1 if os.cpu_count() else None)  # type: ignore[operator]
    args = parser.parse_args()

    if not args.no_snapshots:
        print(f"task_tree() of {args.tasks} parked tasks, CPU ms (best of 5 snapshots, per process):")
    for what in () if args.no_snapshots else ("snapshot_events", "snapshot_sockets"):
        values = [worker(HERE, what, "on", args.tasks, args.cpu) * 1000 for _ in range(args.rounds)]
        print(f"  {what:18} best {min(values):6.1f}  all {' '.join(f'{v:.1f}' for v in values)}")

    trees = [("this", HERE, "off"), ("this+stamps", HERE, "on")]
    if args.base is not None:
        trees.insert(0, ("base", args.base.resolve(), "off"))
    print("\nCPU ns per op (best of 3 in each process; best and median over the rounds, alternated):")
    print(f"  {'row':12}" + "".join(f"{name:>22}" for name, _, _ in trees))
    for row in args.rows.split(","):
        n = ROWS[row]
        samples: dict[str, list[float]] = {name: [] for name, _, _ in trees}
        for _ in range(args.rounds):
            for name, tree, stamps in trees:
                samples[name].append(worker(tree, row, stamps, n, args.cpu) * 1e9)
        cells = []
        for name, _, _ in trees:
            values = sorted(samples[name])
            cells.append(f"{values[0]:8.0f} (med {values[len(values) // 2]:6.0f})")
        print(f"  {row:12}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
