"""How open_signal_receiver should get its signals: the measurement behind
docs/design.md ("Signals: a handler and the wake-up pipe, not a signalfd").

Compares ringtrio.open_signal_receiver (a Python handler per signal plus the
run's wake-up pipe) with a prototype of the alternative (the signals blocked
with pthread_sigmask, a signalfd read with IORING_OP_READ), in one process:

* latency of os.kill() to ourselves until the receiver has the signal;
* round trip with another process that signals us and waits for our ack;
* a burst of 20 000 signals from another process (how many are reported);

then shows, each in a fresh process, what blocking does to the rest of the
process: a worker thread that existed first, and child processes.

    .venv/bin/python bench/measure_signals.py [--runs 5]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import ringtrio
from ringtrio import lowlevel

N = 3000
_libc = ctypes.CDLL(None, use_errno=True)


class _SigSet(ctypes.Structure):
    _fields_ = [("val", ctypes.c_ulong * 16)]


class SignalfdReceiver:
    """The alternative design, enough of it to measure: block the signals in
    this thread, read a signalfd on the ring (128-byte records)."""

    def __init__(self, signals: tuple[int, ...]) -> None:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        mask = _SigSet()
        _libc.sigemptyset(ctypes.byref(mask))
        for signum in signals:
            _libc.sigaddset(ctypes.byref(mask), int(signum))
        self.fd = _libc.signalfd(-1, ctypes.byref(mask), os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "signalfd")
        self._buf = bytearray(128 * 16)
        self._pending: list[int] = []

    async def __anext__(self) -> int:
        while not self._pending:
            view = memoryview(self._buf)
            op = lowlevel.RingOp(lowlevel.IORING_OP_READ, self.fd, view, len(self._buf), (1 << 64) - 1, keepalive=view)
            res, _ = await lowlevel.submit_and_wait(op)
            if res < 0:
                raise OSError(-res, "signalfd read")
            self._pending += [struct.unpack_from("I", self._buf, i)[0] for i in range(0, res, 128)]
        return self._pending.pop(0)

    def close(self) -> None:
        os.close(self.fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


@contextmanager
def open_signalfd_receiver(*signals: int) -> Generator[SignalfdReceiver, None, None]:
    receiver = SignalfdReceiver(signals)
    try:
        yield receiver
    finally:
        receiver.close()


_PINGER = """
import os, sys
pid, n, sig, r = map(int, sys.argv[1:])
for _ in range(n):
    os.kill(pid, sig)
    os.read(r, 1)
"""
_BURST = """
import os, signal, sys
pid, n = map(int, sys.argv[1:])
for i in range(n):
    os.kill(pid, signal.SIGUSR1 if i % 2 else signal.SIGHUP)
"""


async def _self_kill(receiver: Any) -> float:
    start = time.perf_counter()
    for _ in range(N):
        os.kill(os.getpid(), signal.SIGUSR1)
        await receiver.__anext__()
    return (time.perf_counter() - start) / N * 1e6


async def _ping_pong(receiver: Any) -> float:
    r, w = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", _PINGER, str(os.getpid()), str(N), str(int(signal.SIGUSR1)), str(r)], pass_fds=[r]
    )
    start = 0.0
    for i in range(N):
        await receiver.__anext__()
        if i == 0:
            start = time.perf_counter()  # the child has started
        os.write(w, b"a")
    elapsed = time.perf_counter() - start
    child.wait()
    os.close(r)
    os.close(w)
    return elapsed / (N - 1) * 1e6


async def _burst(receiver: Any, n: int = 20_000) -> int:
    child = subprocess.Popen([sys.executable, "-c", _BURST, str(os.getpid()), str(n)])
    reported = 0
    while child.poll() is None:
        with ringtrio.move_on_after(0.05):
            await receiver.__anext__()
            reported += 1
    with ringtrio.move_on_after(0.2):
        while True:
            await receiver.__anext__()
            reported += 1
    return reported


async def _measure(design: str) -> tuple[float, float, int]:
    opener = ringtrio.open_signal_receiver if design == "handler" else open_signalfd_receiver
    with opener(signal.SIGUSR1, signal.SIGHUP) as receiver:
        return await _self_kill(receiver), await _ping_pong(receiver), await _burst(receiver)


async def _hazard_thread_first() -> None:
    await ringtrio.to_thread.run_sync(lambda: None)  # an idle worker thread now exists
    with open_signalfd_receiver(signal.SIGTERM) as receiver:
        subprocess.run(["kill", "-TERM", str(os.getpid())], check=True)
        with ringtrio.move_on_after(2):
            print("  received", await receiver.__anext__())


_MASK = [sys.executable, "-c", "import signal; print(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))"]


async def _hazard_children() -> None:
    with open_signalfd_receiver(signal.SIGTERM):
        inside = await ringtrio.run_process(_MASK, capture_stdout=True)
    after = await ringtrio.run_process(_MASK, capture_stdout=True)
    print("  a child's blocked signals while the receiver is open:", inside.stdout.decode().strip())
    print("  ... and after it closed:", after.stdout.decode().strip())
    proc = await ringtrio.lowlevel.open_process(["sleep", "30"])
    proc.terminate()
    with ringtrio.move_on_after(1) as scope:
        await proc.wait()
    print("  terminate() ended a child started afterwards:", not scope.cancelled_caught)
    proc.kill()
    await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hazard", choices=["thread", "children"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hazard:
        ringtrio.run(_hazard_thread_first if args.hazard == "thread" else _hazard_children)
        return
    rows: dict[str, list[tuple[float, float, int]]] = {"handler": [], "signalfd": []}
    for _ in range(args.runs):
        for design in rows:
            rows[design].append(ringtrio.run(_measure, design))
    print(f"{'design':9} {'self-kill us':>14} {'ping-pong us':>14} {'burst reported':>16}")
    for design, results in rows.items():
        kill, pong, burst = zip(*results)
        print(
            f"{design:9} {statistics.median(kill):8.1f} ({min(kill):.1f}-{max(kill):.1f})"
            f" {statistics.median(pong):6.1f} ({min(pong):.1f}-{max(pong):.1f})"
            f"   {min(burst)}-{max(burst)}"
        )
    for hazard, what in (("thread", "SIGTERM from another process, an idle worker thread existing"),
                         ("children", "child processes")):
        print(f"signalfd design, {what}:")
        done = subprocess.run([sys.executable, __file__, "--hazard", hazard])
        print(f"  exit status {done.returncode}")


if __name__ == "__main__":
    main()
