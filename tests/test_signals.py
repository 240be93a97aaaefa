"""open_signal_receiver: signals as an async iterator.

Every scenario runs under trio and under ringtrio (``same_under_both``) and
must observe the same thing: trio's own test_signals.py scenarios restated,
signals sent by os.kill and by another process, the handlers put back,
bursts, and what a worker thread or a child process sees.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from types import FrameType, ModuleType
from typing import Any, NoReturn

import pytest
import trio

import ringtrio

from _differential import same_under_both


def pending(lib: ModuleType, receiver: Any) -> int:
    return lib._signals.get_pending_signal_count(receiver)  # type: ignore[no-any-return]


async def barrier(lib: ModuleType) -> None:
    """Return once every run_sync_soon(idempotent=True) queued before has
    run (signal handlers queue their signal that way)."""
    done = lib.Event()
    lib.lowlevel.current_trio_token().run_sync_soon(done.set, idempotent=True)
    await done.wait()


def test_signals_are_kept_and_coalesced() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []
        orig = signal.getsignal(signal.SIGILL)
        with lib.open_signal_receiver(signal.SIGILL) as receiver:
            # Nobody iterates yet: three arrivals, kept as one.
            signal.raise_signal(signal.SIGILL)
            signal.raise_signal(signal.SIGILL)
            await lib.testing.wait_all_tasks_blocked()
            signal.raise_signal(signal.SIGILL)
            await lib.testing.wait_all_tasks_blocked()
            seen.append(pending(lib, receiver))
            async for signum in receiver:
                seen.append(signum)
                break
            seen.append(pending(lib, receiver))
            signal.raise_signal(signal.SIGILL)
            async for signum in receiver:
                seen.append(signum)
                break
        try:
            await receiver.__anext__()
        except RuntimeError:
            seen.append("RuntimeError after the block")
        seen.append(signal.getsignal(signal.SIGILL) is orig)
        return seen

    assert same_under_both(scenario) == [1, signal.SIGILL, 0, signal.SIGILL, "RuntimeError after the block", True]


def test_bad_arguments_leave_the_handlers_alone() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []
        orig = signal.getsignal(signal.SIGILL)
        try:
            with lib.open_signal_receiver(signal.SIGILL, 1234567):
                seen.append("unreachable")
        except ValueError:
            seen.append("ValueError")
        seen.append(signal.getsignal(signal.SIGILL) is orig)
        try:
            with lib.open_signal_receiver():
                seen.append("unreachable")
        except TypeError as exc:
            seen.append(str(exc))
        with lib.open_signal_receiver(signal.SIGILL, signal.SIGILL):
            pass
        seen.append(signal.getsignal(signal.SIGILL) is orig)
        return seen

    assert same_under_both(scenario) == ["ValueError", True, "No signals were provided", True]


def test_only_in_the_main_thread() -> None:
    async def scenario(lib: ModuleType) -> str:
        async def naughty() -> None:
            with lib.open_signal_receiver(signal.SIGINT):
                pass

        try:
            await lib.to_thread.run_sync(lib.run, naughty)
        except RuntimeError:
            return "RuntimeError"
        return "no error"

    assert same_under_both(scenario) == "RuntimeError"


def test_one_iterating_task_at_a_time() -> None:
    async def scenario(lib: ModuleType) -> list[str]:
        try:
            with lib.open_signal_receiver(signal.SIGILL) as receiver:
                async with lib.open_nursery() as nursery:
                    nursery.start_soon(receiver.__anext__)
                    nursery.start_soon(receiver.__anext__)
        except BaseExceptionGroup as group:
            return [type(e).__name__ for e in group.exceptions]
        return []

    assert same_under_both(scenario) == ["BusyResourceError"]


def test_two_pending_signals_alternate() -> None:
    # Both always pending: the receiver reports them in turn, never the same
    # one twice in a row.
    async def scenario(lib: ModuleType) -> list[int]:
        got: list[int] = []
        with lib.open_signal_receiver(signal.SIGILL, signal.SIGFPE) as receiver:
            for _ in range(10):
                signal.raise_signal(signal.SIGILL)
                signal.raise_signal(signal.SIGFPE)
                await barrier(lib)
                got.append(await receiver.__anext__())
            while pending(lib, receiver):
                await receiver.__anext__()
        return [a != b for a, b in zip(got, got[1:])]

    assert same_under_both(scenario) == [True] * 9


@pytest.mark.parametrize("drained", [False, True], ids=["still-queued", "pending"])
def test_signals_left_at_exit_go_to_the_old_handlers(drained: bool) -> None:
    # Raised inside the block but never taken: after the block they reach the
    # handlers that were there before, whether they were still on their way
    # (drained=False) or already pending in the receiver.
    async def scenario(lib: ModuleType) -> list[Any]:
        direct: list[int] = []
        seen: list[Any] = []

        def direct_handler(signum: int, frame: FrameType | None) -> None:
            direct.append(signum)

        old = {s: signal.signal(s, direct_handler) for s in (signal.SIGILL, signal.SIGFPE)}
        try:
            with lib.open_signal_receiver(signal.SIGILL, signal.SIGFPE) as receiver:
                signal.raise_signal(signal.SIGILL)
                signal.raise_signal(signal.SIGFPE)
                if drained:
                    await barrier(lib)
                    seen.append(pending(lib, receiver))
            await barrier(lib)
            seen.append(sorted(direct))
            # A previous handler that ignores: nothing dies.
            signal.signal(signal.SIGILL, signal.SIG_IGN)
            with lib.open_signal_receiver(signal.SIGILL):
                signal.raise_signal(signal.SIGILL)
                if drained:
                    await barrier(lib)
            await barrier(lib)
            seen.append("survived SIG_IGN")
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return seen

    expected = ([2] if drained else []) + [sorted([signal.SIGILL, signal.SIGFPE]), "survived SIG_IGN"]
    assert same_under_both(scenario) == expected


def test_old_handlers_that_raise_all_run() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        def raiser(signum: int, frame: FrameType | None) -> NoReturn:
            raise RuntimeError(signum)

        old = {s: signal.signal(s, raiser) for s in (signal.SIGILL, signal.SIGFPE)}
        try:
            with lib.open_signal_receiver(signal.SIGILL, signal.SIGFPE):
                signal.raise_signal(signal.SIGILL)
                signal.raise_signal(signal.SIGFPE)
                await barrier(lib)
        except RuntimeError as exc:
            context = exc.__context__
            return sorted([exc.args[0], context.args[0] if isinstance(context, RuntimeError) else None])
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return []

    assert same_under_both(scenario) == sorted([signal.SIGILL, signal.SIGFPE])


SIGNALS = [signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM]


@pytest.mark.parametrize("sender", ["os.kill", "another process"])
def test_sighup_sigusr1_sigterm_arrive(sender: str) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        got = []
        with lib.open_signal_receiver(*SIGNALS) as receiver:
            for signum in SIGNALS:
                if sender == "os.kill":
                    os.kill(os.getpid(), signum)
                else:
                    subprocess.run(["kill", f"-{signum.name[3:]}", str(os.getpid())], check=True)
                got.append(await receiver.__anext__())
        return got + [signal.getsignal(s) is signal.SIG_DFL for s in SIGNALS]

    assert same_under_both(scenario) == SIGNALS + [True, True, True]


def test_old_disposition_is_restored() -> None:
    async def scenario(lib: ModuleType) -> list[bool]:
        def mine(signum: int, frame: FrameType | None) -> None:
            pass

        before = {signal.SIGHUP: mine, signal.SIGUSR1: signal.SIG_IGN, signal.SIGTERM: signal.SIG_DFL}
        old = {s: signal.signal(s, h) for s, h in before.items()}
        try:
            with lib.open_signal_receiver(*before):
                inside = [signal.getsignal(s) is not h for s, h in before.items()]
            after = [signal.getsignal(s) is h for s, h in before.items()]
            # The SIGINT handler run() installed is back too.
            sigint = signal.getsignal(signal.SIGINT)
            with lib.open_signal_receiver(signal.SIGINT):
                pass
            return inside + after + [signal.getsignal(signal.SIGINT) is sigint]
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    assert same_under_both(scenario) == [True] * 7


BURSTER = r"""
import os, signal, sys
pid, rounds, w, r = map(int, sys.argv[1:])
for _ in range(rounds):
    for i in range(200):
        os.kill(pid, signal.SIGUSR1 if i % 2 else signal.SIGHUP)
    os.write(w, b"r")          # this round is sent
    os.read(r, 1)              # the parent has seen both kinds
"""


def test_no_signal_lost_beyond_coalescing_in_a_burst() -> None:
    # Each round another process sends 200 signals of two kinds as fast as
    # it can.  However many arrive as one, each kind sent in a round must be
    # reported at least once after that round began: only repeats coalesce.
    rounds = 20

    async def scenario(lib: ModuleType) -> list[bool]:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        ok = []
        with lib.open_signal_receiver(signal.SIGUSR1, signal.SIGHUP) as receiver:
            child = subprocess.Popen(
                [sys.executable, "-c", BURSTER, str(os.getpid()), str(rounds), str(from_child_w), str(to_child_r)],
                pass_fds=[from_child_w, to_child_r],
            )
            os.close(from_child_w)
            os.close(to_child_r)
            try:
                for _ in range(rounds):
                    seen: set[int] = set()
                    # The round is over once the child says so; then both
                    # kinds must come out (they may well have already).
                    await lib.to_thread.run_sync(os.read, from_child_r, 1)
                    while seen != {signal.SIGUSR1, signal.SIGHUP}:
                        seen.add(await receiver.__anext__())
                    while pending(lib, receiver):
                        await receiver.__anext__()
                    ok.append(True)
                    os.write(to_child_w, b"a")
            finally:
                child.wait()
                os.close(from_child_r)
                os.close(to_child_w)
        return ok

    assert same_under_both(scenario) == [True] * rounds


def test_a_worker_thread_that_exists_first_does_not_take_the_signal() -> None:
    # A thread started before the receiver (the thread cache keeps it) must
    # not end the process when the kernel hands it a process-directed
    # SIGTERM: the disposition is the receiver's handler for every thread.
    async def scenario(lib: ModuleType) -> int:
        await lib.to_thread.run_sync(lambda: None)
        with lib.open_signal_receiver(signal.SIGTERM) as receiver:
            subprocess.run(["kill", "-TERM", str(os.getpid())], check=True)
            return await receiver.__anext__()

    assert same_under_both(scenario) == signal.SIGTERM


def test_a_signal_taken_by_another_thread_wakes_the_loop() -> None:
    # The signal is aimed at a worker thread while the loop waits with
    # nothing else to wake it.  Python's C handler runs in that thread and
    # can only wake the loop through the wake-up fd.  The program installed
    # its own SIGINT handler, so ringtrio's run() left the wake-up fd alone:
    # the receiver must set it, and put back what was there afterwards.
    # (trio sets it for its whole run.)
    def mine(signum: int, frame: FrameType | None) -> None:
        pass

    async def scenario(lib: ModuleType) -> int:
        release = threading.Event()

        def aim_at_myself() -> None:
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            release.wait(60)

        with lib.open_signal_receiver(signal.SIGUSR1) as receiver:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(lib.to_thread.run_sync, aim_at_myself)
                try:
                    with lib.fail_after(20):
                        got: int = await receiver.__anext__()
                        # (A late wake-up at the deadline would still hand
                        # over the signal: this checkpoint makes it fail.)
                        await lib.lowlevel.checkpoint()
                finally:
                    release.set()
        return got

    old_sigint = signal.signal(signal.SIGINT, mine)
    old_fd = signal.set_wakeup_fd(-1)
    try:
        assert same_under_both(scenario, hang=30) == signal.SIGUSR1
        assert signal.set_wakeup_fd(-1) == -1  # nothing left behind
    finally:
        signal.signal(signal.SIGINT, old_sigint)
        signal.set_wakeup_fd(old_fd)


CHILD_REPORT = (
    "import signal; "
    "print(sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])), "
    "[signal.getsignal(s) is signal.SIG_DFL for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP)])"
)


def test_children_get_a_normal_signal_mask_and_dispositions() -> None:
    # Whatever the receiver does, a child starts with nothing blocked and
    # default dispositions, while the receiver is open and after; and
    # terminate() still ends it.
    async def scenario(lib: ModuleType) -> list[Any]:
        cmd = [sys.executable, "-c", CHILD_REPORT]
        with lib.open_signal_receiver(signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
            inside = await lib.run_process(cmd, capture_stdout=True)
            await lib.to_thread.run_sync(lambda: None)  # a thread started meanwhile
        after = await lib.run_process(cmd, capture_stdout=True)
        proc = await lib.lowlevel.open_process(["sleep", "3600"])
        proc.terminate()
        return [inside.stdout, after.stdout, await proc.wait()]

    report = b"[] [True, True, True]\n"
    assert same_under_both(scenario) == [report, report, -signal.SIGTERM]


def test_a_task_iterating_when_the_block_ends_is_told() -> None:
    # ringtrio only (trio leaves such a task parked forever): the block is
    # left while another task waits in the iterator.
    async def main() -> str:
        async with ringtrio.open_nursery() as nursery:
            with ringtrio.open_signal_receiver(signal.SIGUSR1) as receiver:
                outcome: list[str] = []

                async def iterate() -> None:
                    try:
                        await receiver.__anext__()
                    except RuntimeError as exc:
                        outcome.append(str(exc))

                nursery.start_soon(iterate)
                await ringtrio.testing.wait_all_tasks_blocked()
        return outcome[0]

    assert ringtrio.run(main) == "open_signal_receiver block exited while a task was iterating"
