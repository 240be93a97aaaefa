"""The runner at its edges, where trio has nothing to compare with: a run
that cannot get the file descriptors it needs, one RingOp submitted twice.
(Scenarios trio can run too are in test_runner_vs_trio.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import ringtrio
from ringtrio import lowlevel

# Run in a child process: it lowers its own RLIMIT_NOFILE, fills every
# descriptor below the limit, frees `free` of them, then calls run() three
# times and reports what each call did and how many descriptors are open
# afterwards compared with before.
_OUT_OF_FDS = textwrap.dedent(
    """
    import json, os, resource, sys
    import ringtrio

    LIMIT = 64

    def open_fds():
        count = 0
        for fd in range(LIMIT):
            try:
                os.fstat(fd)
            except OSError:
                continue
            count += 1
        return count

    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    filler = []
    while True:
        try:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            break
    free = int(sys.argv[1])
    for fd in filler[len(filler) - free:]:
        os.close(fd)

    async def main():
        return "ran"

    before = open_fds()
    runs = []
    for _ in range(3):
        try:
            runs.append(["returned", ringtrio.run(main)])
        except BaseException as exc:
            cause = exc.__cause__
            runs.append([
                type(exc).__name__,
                getattr(exc, "errno", None),
                str(exc),
                None if cause is None else [type(cause).__name__, getattr(cause, "errno", None)],
            ])
    print(json.dumps({"runs": runs, "leaked": open_fds() - before}))
    """
)


@pytest.mark.parametrize("free", [0, 1, 2, 3])
def test_run_out_of_fds_fails_cleanly_and_leaks_nothing(free: int, backend_name: str) -> None:
    """With 0 descriptors free io_uring_setup (or the epoll backend's
    epoll_create) fails; with 1 or 2 the ring opens but the wake-up pipe
    does not (the ring used to stay open, one more per run, and a bare
    OSError came out of Runner.__init__); with 3 the run starts.  Every
    failure is a RingUnavailableError with errno EMFILE that says what to
    do; nothing is left open."""
    proc = subprocess.run(
        [sys.executable, "-c", _OUT_OF_FDS, str(free)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["leaked"] == 0, report
    for run in report["runs"]:
        if free >= 3:
            assert run == ["returned", "ran"]
            continue
        name, err, message, cause = run
        assert (name, err) == ("RingUnavailableError", 24), run
        assert "ulimit -n" in message
        if free == 0:
            # the ring itself
            assert ("io_uring_setup" if backend_name == "io_uring" else "epoll backend") in message
        else:
            assert "wake-up pipe" in message
            assert cause == ["OSError", 24]


def test_ring_op_submitted_while_in_flight_is_busy() -> None:
    """One RingOp awaited by two tasks at once: the second submit raises
    BusyResourceError naming the op and its task (it used to take a second
    token, hand the one completion to the second task and leave the first
    parked forever with nothing in flight).  The first wait is untouched,
    and once it has completed the op may be submitted again."""

    async def main() -> None:
        r, w = os.pipe()
        try:
            buf = bytearray(16)
            op = lowlevel.RingOp(
                lowlevel.IORING_OP_READ, fd=r, addr=memoryview(buf), length=16,
                off=2**64 - 1, keepalive=buf,
            )
            in_flight = lowlevel.current_statistics().ops_in_flight
            results = []

            async def first() -> None:
                results.append(await lowlevel.submit_and_wait(op))

            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(first)
                await ringtrio.testing.wait_all_tasks_blocked()
                with pytest.raises(ringtrio.BusyResourceError, match="already in flight.*first"):
                    await lowlevel.submit_and_wait(op)
                assert lowlevel.current_statistics().ops_in_flight == in_flight + 1
                os.write(w, b"hi")
            assert results == [(2, 0)]
            assert bytes(buf[:2]) == b"hi"
            os.write(w, b"again")
            # (A completed op has let go of its memory: give it the buffer again.)
            op.addr, op.keepalive = memoryview(buf), buf
            assert await lowlevel.submit_and_wait(op) == (5, 0)
            assert lowlevel.current_statistics().ops_in_flight == in_flight
        finally:
            os.close(r)
            os.close(w)

    ringtrio.run(main)


def test_a_wait_with_nothing_but_the_ring_skips_the_wait_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that waits while no deadline, idle waiter or clock could end
    the wait early waits the longest (_MAX_WAIT) without computing a plan
    (the cost of every one-op-at-a-time wait); with any of them, the plan
    is computed and honoured."""
    from ringtrio._core import _runner

    plans: list[tuple[float, int]] = []
    original = _runner.Runner._wait_plan

    def counting(self: _runner.Runner) -> tuple[float, int]:
        plans.append(original(self))
        return plans[-1]

    monkeypatch.setattr(_runner.Runner, "_wait_plan", counting)

    async def main() -> tuple[int, int, bool]:
        op = lowlevel.RingOp(0)  # a NOP
        for _ in range(100):
            await lowlevel.submit_and_wait(op)
        bare = len(plans)
        with ringtrio.move_on_after(0.01) as scope:
            await ringtrio.sleep_forever()
        return bare, len(plans), scope.cancelled_caught

    bare, total, timed_out = ringtrio.run(main)
    assert bare == 0
    assert total > 0 and timed_out
    # (the deadline's wait was planned for that deadline, not the longest)
    assert any(timeout < 1 for timeout, _ in plans)
