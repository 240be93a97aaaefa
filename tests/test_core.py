"""Scheduler and ring-level behaviour of the core: tokens, the cancel
protocol for ring ops, linked deadlines, hygiene, setup failures."""

from __future__ import annotations

import errno
import gc
import os
import signal
import threading
import time
from typing import Any

import pytest
import sniffio

import ringtrio
from ringtrio import lowlevel
from ringtrio._core import _ring
from ringtrio._core._local import _current_runner
from ringtrio._native import ffi


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class PipeRead(lowlevel.RingOp):
    """A READ of up to `size` bytes from `fd` into a buffer the op owns."""

    __slots__ = ("buf",)

    def __init__(self, fd: int, size: int = 64) -> None:
        buf = ffi.new("char[]", size)
        super().__init__(
            lowlevel.IORING_OP_READ,
            fd,
            int(ffi.cast("uintptr_t", buf)),
            size,
            0,
            keepalive=buf,
        )
        self.buf = buf

    def data(self, n: int) -> bytes:
        return bytes(ffi.buffer(self.buf, n))


async def read_pipe(fd: int, size: int = 64) -> bytes:
    op = PipeRead(fd, size)
    res, _ = await lowlevel.submit_and_wait(op)
    if res < 0:
        raise OSError(-res, os.strerror(-res))
    return op.data(res)


@pytest.fixture
def pipe() -> Any:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


# -- basic run() behaviour ------------------------------------------------


def test_run_returns_value_and_raises_exception() -> None:
    async def value(x: int) -> int:
        await ringtrio.sleep(0)
        return x * 2

    async def boom() -> None:
        await lowlevel.checkpoint()
        raise KeyError("boom")

    assert ringtrio.run(value, 21) == 42
    with pytest.raises(KeyError, match="boom"):
        ringtrio.run(boom)


def test_sniffio_reports_ringtrio_inside_run_only() -> None:
    seen: list[str] = []

    async def main() -> None:
        seen.append(sniffio.current_async_library())

        def in_thread() -> None:
            try:
                seen.append(sniffio.current_async_library())
            except sniffio.AsyncLibraryNotFoundError:
                seen.append("none")

        t = threading.Thread(target=in_thread)
        t.start()
        t.join()

    ringtrio.run(main)
    assert seen == ["ringtrio", "none"]
    with pytest.raises(sniffio.AsyncLibraryNotFoundError):
        sniffio.current_async_library()


def test_run_inside_run_is_an_error() -> None:
    async def inner() -> None:
        pass

    async def main() -> None:
        ringtrio.run(inner)

    with pytest.raises(RuntimeError, match="inside a run"):
        ringtrio.run(main)


async def _child(task_status: ringtrio.TaskStatus[None] = ringtrio.TASK_STATUS_IGNORED) -> None:
    pass  # pragma: no cover - only ever called, never awaited


def _called_instead_of_passed(api: str) -> str:
    """The TypeError for ``api(_child())``: what was wrong, and the fix."""
    return (
        f"{api}() was expecting an async function, but instead it got a coroutine object "
        "<coroutine object _child at 0x[0-9a-f]+>: the result of calling one. "
        f"You probably wrote '{api}(_child(...))'; pass the function and its "
        f"arguments separately: '{api}(_child, ...)'"
    ).replace("(", "\\(").replace(")", "\\)")


def test_run_with_a_coroutine_object_says_how_to_call_it() -> None:
    coro = _child()
    try:
        with pytest.raises(TypeError, match=_called_instead_of_passed("ringtrio.run")):
            ringtrio.run(coro)  # type: ignore[arg-type]
    finally:
        coro.close()
    with pytest.raises(TypeError, match="ringtrio.run\\(\\) expected an async function, but got 42, which cannot be called"):
        ringtrio.run(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["nursery.start_soon", "nursery.start", "spawn_system_task"])
def test_spawning_a_coroutine_object_says_how_to_call_it(api: str) -> None:
    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            coro: Any = _child()
            try:
                with pytest.raises(TypeError, match=_called_instead_of_passed(api)):
                    if api == "nursery.start_soon":
                        nursery.start_soon(coro)
                    elif api == "nursery.start":
                        await nursery.start(coro)
                    else:
                        ringtrio.lowlevel.spawn_system_task(coro)
            finally:
                coro.close()

    ringtrio.run(main)


def test_awaiting_a_trio_operation_names_trio() -> None:
    import trio

    async def main() -> None:
        with pytest.raises(TypeError) as info:
            await trio.lowlevel.checkpoint()
        message = str(info.value)
        assert "that is trio's, so the task awaited a trio operation" in message
        assert "trio and ringtrio cannot be mixed in one run" in message
        assert "'import ringtrio as trio'" in message

    ringtrio.run(main)


# The awaitables that do not check for a run first (they are the hottest
# paths): what they hand to another event loop explains the mistake.
UNCHECKED_AWAITABLES = {
    "checkpoint": lambda: ringtrio.lowlevel.checkpoint(),
    "cancel_shielded_checkpoint": lambda: ringtrio.lowlevel.cancel_shielded_checkpoint(),
    "sleep_forever": lambda: ringtrio.sleep_forever(),
    "wait_task_rescheduled": lambda: ringtrio.lowlevel.wait_task_rescheduled(
        lambda _: ringtrio.lowlevel.Abort.SUCCEEDED
    ),
}
OUTSIDE_RINGTRIO = (
    "a ringtrio operation was awaited outside ringtrio.run(). ringtrio's functions only "
    "work in tasks run by ringtrio.run(); they cannot be awaited under asyncio, trio or "
    "another event loop>"
)


@pytest.mark.parametrize("name", list(UNCHECKED_AWAITABLES))
def test_ringtrio_awaited_under_asyncio_says_why_in_asyncios_error(name: str) -> None:
    import asyncio

    async def main() -> None:
        await UNCHECKED_AWAITABLES[name]()

    with pytest.raises(RuntimeError) as info:
        asyncio.run(main())
    assert str(info.value).startswith("Task got bad yield: <ringtrio "), info.value
    assert str(info.value).endswith(OUTSIDE_RINGTRIO), info.value


def test_ringtrio_awaited_under_trio_says_why_in_trios_error() -> None:
    import trio

    async def main() -> None:
        await ringtrio.lowlevel.checkpoint()

    with pytest.raises(TypeError) as info:
        trio.run(main)
    assert "trio.run received unrecognized yield message <ringtrio checkpoint: " in str(info.value)
    assert OUTSIDE_RINGTRIO in str(info.value)


def test_awaiting_asyncio_future_raises_clear_type_error() -> None:
    import asyncio

    async def main() -> None:
        loop = asyncio.new_event_loop()
        try:
            fut = loop.create_future()
            with pytest.raises(TypeError, match="not a ringtrio operation"):
                await fut
        finally:
            loop.close()

    ringtrio.run(main)


# -- setup failures ---------------------------------------------------------


@pytest.mark.parametrize(
    "err, words",
    [
        (errno.ENOSYS, "no io_uring support"),
        (errno.EPERM, "seccomp"),
        (errno.EACCES, "io_uring_disabled"),
        (errno.ENOMEM, "ulimit -l"),
    ],
)
def test_setup_failure_names_cause_and_remedy(monkeypatch: Any, err: int, words: str) -> None:
    # (With backend="ring": the default falls back to the epoll backend
    # instead, see test_backend.py.)
    monkeypatch.setattr(_ring, "_force_setup_errno", err)
    before = open_fds()

    async def main() -> None:  # pragma: no cover - never runs
        raise AssertionError("main ran without a ring")

    with pytest.raises(ringtrio.RingUnavailableError) as info:
        ringtrio.run(main, backend="ring")
    assert info.value.errno == err
    assert words in str(info.value)
    assert isinstance(info.value, OSError)
    gc.collect()
    assert open_fds() == before


# -- ring ops: completion, cancellation, tokens ---------------------------


def test_pipe_read_completes_with_the_bytes(pipe: Any) -> None:
    r, w = pipe

    async def writer() -> None:
        await ringtrio.sleep(0.01)
        os.write(w, b"hello")

    async def main() -> bytes:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(writer)
            return await read_pipe(r)

    assert ringtrio.run(main) == b"hello"


def test_cancel_racing_completion_delivers_the_result(pipe: Any) -> None:
    # The reader's SQE is queued; before the pass's enter, the data arrives
    # and the reader is cancelled.  The kernel completes the read (the data
    # is there) and the ASYNC_CANCEL finds nothing: the bytes must reach the
    # reader, and the cancellation must land at its next checkpoint.
    r, w = pipe
    log: list[Any] = []

    async def reader(scope: ringtrio.CancelScope) -> None:
        with scope:
            data = await read_pipe(r)
            log.append(("got", data))
            await lowlevel.checkpoint()
            log.append("not reached")
        log.append(("cancelled_caught", scope.cancelled_caught))

    async def racer(scope: ringtrio.CancelScope) -> None:
        os.write(w, b"raced")
        scope.cancel()

    async def main() -> None:
        scope = ringtrio.CancelScope()
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(reader, scope)
            nursery.start_soon(racer, scope)

    ringtrio.run(main)
    assert log == [("got", b"raced"), ("cancelled_caught", True)]


def test_cancel_of_pending_op_raises_cancelled_and_loses_nothing(pipe: Any) -> None:
    r, w = pipe
    log: list[Any] = []

    async def main() -> None:
        with ringtrio.move_on_after(0.05) as scope:
            await read_pipe(r)
        log.append(scope.cancelled_caught)
        os.write(w, b"after")
        log.append(await read_pipe(r))
        stats = lowlevel.current_statistics()
        log.append(stats.ops_in_flight)

    ringtrio.run(main)
    assert log == [True, b"after", 0]


def test_explicit_cancel_of_ring_op_uses_async_cancel(pipe: Any) -> None:
    r, w = pipe

    async def main() -> bool:
        async with ringtrio.open_nursery() as nursery:
            scope = ringtrio.CancelScope()

            async def blocked() -> None:
                with scope:
                    await read_pipe(r)

            nursery.start_soon(blocked)
            await ringtrio.sleep(0.02)
            scope.cancel()
        return scope.cancelled_caught

    assert ringtrio.run(main) is True


def test_ring_op_is_a_checkpoint_when_already_cancelled(pipe: Any) -> None:
    r, w = pipe
    os.write(w, b"x")

    async def main() -> int:
        with ringtrio.CancelScope() as scope:
            scope.cancel()
            await read_pipe(r)
        # The op never started: the byte is still in the pipe.
        assert scope.cancelled_caught
        return lowlevel.current_statistics().sqes_submitted

    ringtrio.run(main)
    assert os.read(r, 10) == b"x"


def test_stale_cqe_for_reused_slot_wakes_nobody(pipe: Any) -> None:
    r, w = pipe
    log: list[Any] = []

    async def main() -> None:
        runner = _current_runner()
        # Op 1: a NOP; its slot is released and then reused by op 2.
        nop = lowlevel.RingOp(lowlevel.IORING_OP_NOP)
        await lowlevel.submit_and_wait(nop)
        old_token = nop.token
        async with ringtrio.open_nursery() as nursery:
            reader = PipeRead(r)

            async def blocked() -> None:
                res, _ = await lowlevel.submit_and_wait(reader)
                log.append(("reader woke", reader.data(res)))

            nursery.start_soon(blocked)
            await ringtrio.sleep(0.01)
            assert reader.token & 0xFFFFFFFF == old_token & 0xFFFFFFFF
            assert reader.token != old_token
            # Forge a late CQE carrying the old token: a NOP with that user_data.
            stale_before = lowlevel.current_statistics().stale_cqes
            rc = runner._lib.rt_prep(
                runner._ring_ptr, lowlevel.IORING_OP_NOP, 0, 0, -1, 0, 0, 0, 0, old_token, 0, -1, 0
            )
            assert rc == 0
            await ringtrio.sleep(0.02)
            log.append(("stale", lowlevel.current_statistics().stale_cqes - stale_before))
            os.write(w, b"real")

    ringtrio.run(main)
    assert log == [("stale", 1), ("reader woke", b"real")]


def test_linked_deadline_cancels_op_in_kernel(pipe: Any) -> None:
    r, w = pipe

    async def main() -> tuple[bool, float]:
        start = ringtrio.current_time()
        with ringtrio.move_on_after(0.05) as scope:
            await read_pipe(r)
        return scope.cancelled_caught, ringtrio.current_time() - start

    caught, elapsed = ringtrio.run(main)
    assert caught
    assert elapsed >= 0.04  # (not early; how late is the machine's load)


def test_deadline_moved_later_while_op_in_flight_does_not_cancel() -> None:
    # The read goes in with its link timeout at the first deadline; the
    # deadline moves later before that; the link then fires in the kernel
    # (-ECANCELED) and the op must be re-submitted, not cancelled.  The move
    # has to come before the first deadline, which a loaded machine may
    # stall the test past: that attempt did not test the case and is made
    # again with a later first deadline (the outcome is never timed).
    async def attempt(first: float, r: int, w: int, log: list[Any]) -> bool:
        async with ringtrio.open_nursery() as nursery:
            original = ringtrio.current_time() + first
            scope = ringtrio.CancelScope(deadline=original)

            async def blocked() -> None:
                with scope:
                    log.append(await read_pipe(r))
                log.append(scope.cancelled_caught)

            nursery.start_soon(blocked)
            await ringtrio.testing.wait_all_tasks_blocked()
            # (No CQE is handled between this check and the move: a link
            # timeout that fired meanwhile is seen after the move.)
            in_time = ringtrio.current_time() < original
            scope.deadline = ringtrio.current_time() + 60
            if in_time:
                # Past the original deadline: the kernel's link timeout has
                # fired by now, and the op must have been re-submitted.
                await ringtrio.sleep_until(original + 0.1)
            os.write(w, b"late")
        return in_time

    for first in (0.05, 0.5, 5.0):
        r, w = os.pipe()
        try:
            log: list[Any] = []
            if ringtrio.run(attempt, first, r, w, log):
                assert log == [b"late", False]
                return
        finally:
            os.close(r)
            os.close(w)
    raise AssertionError("the deadline could never be moved before it passed")


def test_deadline_moved_earlier_while_op_in_flight_cancels(pipe: Any) -> None:
    r, w = pipe

    async def main() -> bool:
        async with ringtrio.open_nursery() as nursery:
            scope = ringtrio.CancelScope(deadline=ringtrio.current_time() + 60)

            async def blocked() -> None:
                with scope:
                    await read_pipe(r)

            nursery.start_soon(blocked)
            await ringtrio.sleep(0.01)
            scope.deadline = ringtrio.current_time() + 0.02
        return scope.cancelled_caught

    assert ringtrio.run(main) is True


def test_shielded_op_survives_outer_cancel(pipe: Any) -> None:
    r, w = pipe

    async def main() -> bytes:
        with ringtrio.move_on_after(0.02):
            with ringtrio.CancelScope(shield=True):
                async with ringtrio.open_nursery() as nursery:

                    async def write_later() -> None:
                        await ringtrio.sleep(0.1)
                        os.write(w, b"shielded")

                    nursery.start_soon(write_later)
                    data = await read_pipe(r)
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    assert ringtrio.run(main) == b"shielded"


def test_cq_overflow_loses_no_completion(monkeypatch: Any) -> None:
    # A tiny ring: 2000 concurrent NOPs overflow a 16-entry CQ many times.
    monkeypatch.setattr(_ring, "SQ_ENTRIES", 8)
    monkeypatch.setattr(_ring, "CQ_ENTRIES", 16)
    done: list[int] = []

    async def one(i: int) -> None:
        res, _ = await lowlevel.submit_and_wait(lowlevel.RingOp(lowlevel.IORING_OP_NOP))
        assert res == 0
        done.append(i)

    async def main() -> Any:
        async with ringtrio.open_nursery() as nursery:
            for i in range(2000):
                nursery.start_soon(one, i)
        return lowlevel.current_statistics()

    stats = ringtrio.run(main)
    assert sorted(done) == list(range(2000))
    if stats.backend == "io_uring":
        assert stats.cq_overflows >= 1
    else:
        assert stats.cq_overflows == 0  # the soft ring's CQ grows instead
    assert stats.ops_in_flight == 0


def test_hundred_thousand_concurrent_sleepers() -> None:
    woke = 0

    async def sleeper(i: int) -> None:
        nonlocal woke
        await ringtrio.sleep(0.001 * (i % 10))
        woke += 1

    async def main() -> Any:
        async with ringtrio.open_nursery() as nursery:
            for i in range(100_000):
                nursery.start_soon(sleeper, i)
            await ringtrio.sleep(0)
            assert lowlevel.current_statistics().tasks_living > 100_000
        return lowlevel.current_statistics()

    stats = ringtrio.run(main)
    assert woke == 100_000
    assert stats.tasks_living == 2  # the init task and main


def test_sleep_wakes_in_deadline_order() -> None:
    order: list[int] = []

    async def sleeper(i: int) -> None:
        await ringtrio.sleep(0.02 * i)
        order.append(i)

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            for i in (3, 1, 2, 0):
                nursery.start_soon(sleeper, i)

    ringtrio.run(main)
    assert order == [0, 1, 2, 3]


# -- hygiene: nothing left behind ------------------------------------------


class _AfterRunCheck(lowlevel.Instrument):
    def __init__(self) -> None:
        self.in_flight: int | None = None

    def after_run(self) -> None:
        self.in_flight = lowlevel.current_statistics().ops_in_flight


def test_no_fd_left_after_normal_run(pipe: Any) -> None:
    gc.collect()
    before = open_fds()
    check = _AfterRunCheck()

    async def main() -> None:
        await ringtrio.sleep(0.001)

    ringtrio.run(main, instruments=[check])
    gc.collect()
    assert open_fds() == before
    assert check.in_flight == 0


def test_no_fd_left_after_exception_with_ops_in_flight(pipe: Any) -> None:
    r, w = pipe
    gc.collect()
    before = open_fds()

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(read_pipe, r)
            await ringtrio.sleep(0.01)
            assert lowlevel.current_statistics().ops_in_flight == 10
            raise ValueError("main failed")

    with pytest.raises(BaseExceptionGroup) as info:
        ringtrio.run(main)
    assert info.group_contains(ValueError)  # type: ignore[attr-defined]
    gc.collect()
    assert open_fds() == before


def test_keyboard_interrupt_cancels_main_and_leaves_run(pipe: Any) -> None:
    r, w = pipe
    gc.collect()
    before = open_fds()
    check = _AfterRunCheck()
    cancelled_children: list[str] = []

    async def child() -> None:
        try:
            await read_pipe(r)
        except ringtrio.Cancelled:
            cancelled_children.append("read")
            raise

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(child)
            # Blocked in io_uring_enter when the signal arrives from
            # another thread: the wake-up path must get us out.
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            try:
                await ringtrio.sleep(30)
            finally:
                timer.cancel()
            # (No interrupt came: fail, and cancel the child blocked in its
            # read, instead of waiting for it forever.)
            raise AssertionError("the SIGINT did not interrupt the run")

    # pytest runs tests in the main thread, where ringtrio installs its
    # SIGINT handler; that is the situation under test.
    assert threading.current_thread() is threading.main_thread()
    t0 = time.monotonic()
    with pytest.raises(BaseException) as info:
        ringtrio.run(main, instruments=[check])
    assert time.monotonic() - t0 < 25  # woken by the signal, not the sleep(30)
    exc = info.value
    if isinstance(exc, BaseExceptionGroup):
        assert exc.subgroup(KeyboardInterrupt) is not None
    else:
        assert isinstance(exc, KeyboardInterrupt)
    assert cancelled_children == ["read"]
    assert check.in_flight == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    gc.collect()
    assert open_fds() == before


def test_keyboard_interrupt_at_checkpoint_of_busy_main_task() -> None:
    async def main() -> None:
        signal.raise_signal(signal.SIGINT)
        for _ in range(100):
            await lowlevel.checkpoint()
        raise AssertionError("KeyboardInterrupt was not delivered")  # pragma: no cover

    with pytest.raises(KeyboardInterrupt):
        ringtrio.run(main)


# -- run_sync_soon, system tasks, instruments, statistics ------------------


def test_run_sync_soon_from_thread_wakes_the_loop() -> None:
    async def main() -> str:
        token = lowlevel.current_trio_token()
        event_result: list[str] = []
        task = lowlevel.current_task()

        def in_loop(value: str) -> None:
            event_result.append(value)
            lowlevel.reschedule(task)

        threading.Timer(0.02, token.run_sync_soon, (in_loop, "from thread")).start()
        await lowlevel.wait_task_rescheduled(lambda _: lowlevel.Abort.SUCCEEDED)
        return event_result[0]

    assert ringtrio.run(main) == "from thread"


def test_run_sync_soon_after_run_raises_run_finished() -> None:
    async def main() -> Any:
        return lowlevel.current_trio_token()

    token = ringtrio.run(main)
    with pytest.raises(ringtrio.RunFinishedError):
        token.run_sync_soon(print)


def test_system_task_is_cancelled_when_main_finishes() -> None:
    log: list[str] = []

    async def system() -> None:
        try:
            await ringtrio.sleep_forever()
        except ringtrio.Cancelled:
            log.append("system cancelled")
            raise

    async def main() -> None:
        lowlevel.spawn_system_task(system)
        await ringtrio.sleep(0.01)

    ringtrio.run(main)
    assert log == ["system cancelled"]


def test_instrument_hooks_are_called() -> None:
    calls: list[str] = []

    class Recorder(lowlevel.Instrument):
        def before_run(self) -> None:
            calls.append("before_run")

        def after_run(self) -> None:
            calls.append("after_run")

        def task_spawned(self, task: Any) -> None:
            calls.append("spawned")

        def task_exited(self, task: Any) -> None:
            calls.append("exited")

        def before_io_wait(self, timeout: float) -> None:
            calls.append("io_wait")

    async def child() -> None:
        await ringtrio.sleep(0.01)

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(child)

    ringtrio.run(main, instruments=[Recorder()])
    assert calls[0] == "before_run" and calls[-1] == "after_run"
    assert calls.count("spawned") == calls.count("exited") >= 2
    assert "io_wait" in calls


def test_statistics_count_ring_activity(pipe: Any) -> None:
    r, w = pipe

    async def main() -> Any:
        s0 = lowlevel.current_statistics()
        os.write(w, b"abc")
        await read_pipe(r)
        s1 = lowlevel.current_statistics()
        return s0, s1

    s0, s1 = ringtrio.run(main)
    assert s1.sqes_submitted > s0.sqes_submitted
    assert s1.cqes_reaped > s0.cqes_reaped
    assert s1.enters > s0.enters
    assert s1.ops_in_flight == 0


def test_ring_features_probe() -> None:
    async def main() -> Any:
        return lowlevel.current_ring_features()

    features = ringtrio.run(main)
    for op in (
        lowlevel.IORING_OP_NOP,
        lowlevel.IORING_OP_READ,
        lowlevel.IORING_OP_LINK_TIMEOUT,
        lowlevel.IORING_OP_ASYNC_CANCEL,
    ):
        assert features.supports(op)
    assert features.ext_arg
    assert "READ" in features.opcode_names()


def test_checkpoints_interleave_tasks_fairly() -> None:
    log: list[str] = []

    async def worker(name: str) -> None:
        for _ in range(3):
            log.append(name)
            await lowlevel.checkpoint()

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(worker, "a")
            nursery.start_soon(worker, "b")

    ringtrio.run(main)
    assert log == ["a", "b", "a", "b", "a", "b"]


def test_cancelled_sleep_does_not_wake_a_later_wait() -> None:
    # A sleep cut short by cancellation must not leave its timer behind to
    # wake whatever the task waits on next.
    log: list[str] = []

    async def main() -> None:
        with ringtrio.move_on_after(0.01):
            await ringtrio.sleep(0.05)
        task = lowlevel.current_task()

        def wake_later() -> None:
            log.append("woken by the right party")
            lowlevel.reschedule(task, __import__("outcome").Value("ok"))

        threading.Timer(0.2, lowlevel.current_trio_token().run_sync_soon, (wake_later,)).start()
        result = await lowlevel.wait_task_rescheduled(lambda _: lowlevel.Abort.SUCCEEDED)
        log.append(result)

    ringtrio.run(main)
    assert log == ["woken by the right party", "ok"]


def test_cancel_ring_op_for_a_closing_resource_raises_the_given_error(pipe: Any) -> None:
    r, w = pipe
    log: list[Any] = []

    async def main() -> None:
        op = PipeRead(r)

        async def reader() -> None:
            try:
                await lowlevel.submit_and_wait(op)
            except ringtrio.ClosedResourceError as exc:
                log.append(str(exc))

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await ringtrio.sleep(0.01)
            lowlevel.cancel_ring_op(op, ringtrio.ClosedResourceError("closed under it"))
        log.append(lowlevel.current_statistics().ops_in_flight)

    ringtrio.run(main)
    assert log == ["closed under it", 0]


def test_abandoned_async_generator_is_finalized_inside_the_run() -> None:
    log: list[str] = []

    async def numbers() -> Any:
        try:
            for i in range(10):
                yield i
        finally:
            # The cleanup runs in the loop, cancelled (as in trio): an await
            # raises Cancelled at once.
            try:
                await lowlevel.checkpoint()
            except ringtrio.Cancelled:
                log.append("cleaned up, cancelled")

    async def main() -> None:
        async for i in numbers():
            if i == 2:
                break
        gc.collect()
        for _ in range(5):
            await lowlevel.checkpoint()
        log.append("main done")

    ringtrio.run(main)
    assert log == ["cleaned up, cancelled", "main done"]


def test_async_generator_still_alive_at_end_of_run_is_closed() -> None:
    log: list[str] = []
    keep: list[Any] = []

    async def forever() -> Any:
        try:
            while True:
                yield 1
        finally:
            try:
                await lowlevel.checkpoint()
            except ringtrio.Cancelled:
                log.append("closed at end of run, cancelled")

    async def main() -> None:
        agen = forever()
        keep.append(agen)
        await agen.__anext__()

    ringtrio.run(main)
    assert log == ["closed at end of run, cancelled"]


def test_cancel_that_finds_nothing_is_retried_while_the_op_is_in_flight() -> None:
    # The kernel answers -ENOENT when the target is between attempts (e.g. a
    # socket op being re-issued after a poll wake-up).  Simulate an op the
    # cancel cannot find: the cancel must be retried while the op is still
    # "in flight" and meant to be cancelled, and stop once it is done.
    async def main() -> tuple[int, int]:
        runner = _current_runner()
        ghost = lowlevel.RingOp(lowlevel.IORING_OP_NOP)
        ghost.token = (7 << 32) | 0xFFFFF  # a slot nobody uses
        ghost.task = lowlevel.current_task()
        ghost.cancel_raise = lambda: None  # type: ignore[assignment,return-value]
        before = lowlevel.current_statistics().cqes_reaped
        runner._cancel_op(ghost)
        for _ in range(20):
            await lowlevel.checkpoint()
        retried = lowlevel.current_statistics().cqes_reaped - before
        ghost.done = True  # its "final CQE" arrived: no more retries
        for _ in range(5):
            await lowlevel.checkpoint()
        return retried, lowlevel.current_statistics().ops_in_flight

    retried, in_flight = ringtrio.run(main)
    assert retried >= 5
    assert in_flight == 0


@pytest.mark.parametrize("lib_name", ["trio", "ringtrio"])
def test_cancelled_carries_source_and_reason_like_trio(lib_name: str) -> None:
    import importlib

    lib = importlib.import_module(lib_name)
    seen: list[tuple[str, Any]] = []

    async def main() -> None:
        with lib.CancelScope() as scope:
            scope.cancel(reason="enough")
            try:
                await lib.sleep(1)
            except lib.Cancelled as exc:
                seen.append((exc.source, exc.reason))
                raise
        with lib.move_on_after(0.01):
            try:
                await lib.sleep(10)
            except lib.Cancelled as exc:
                seen.append((exc.source, exc.reason))
                raise

        async def fails() -> None:
            raise ValueError("boom")

        async def sleeper() -> None:
            try:
                await lib.sleep(10)
            except lib.Cancelled as exc:
                seen.append((exc.source, "ValueError" in (exc.reason or "")))
                raise

        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(sleeper)
                await lib.lowlevel.checkpoint()
                nursery.start_soon(fails)
        except BaseExceptionGroup:
            pass

    lib.run(main)
    assert seen == [("explicit", "enough"), ("deadline", None), ("nursery", True)]


def test_in_run_and_in_task() -> None:
    """lowlevel.in_ringtrio_run / in_ringtrio_task (trio's in_trio_run /
    in_trio_task): true in a task, only the first in the run's own callbacks,
    neither outside a run or in a worker thread."""
    from ringtrio import lowlevel

    assert not lowlevel.in_trio_run() and not lowlevel.in_trio_task()
    seen: dict[str, tuple[bool, bool]] = {}

    def probe() -> tuple[bool, bool]:
        return lowlevel.in_ringtrio_run(), lowlevel.in_ringtrio_task()

    async def main() -> None:
        seen["task"] = probe()
        seen["thread"] = await ringtrio.to_thread.run_sync(probe)
        done = ringtrio.Event()

        def callback() -> None:
            seen["callback"] = probe()
            done.set()

        lowlevel.current_trio_token().run_sync_soon(callback)
        await done.wait()

    ringtrio.run(main)
    assert seen == {"task": (True, True), "thread": (False, False), "callback": (True, False)}
    assert lowlevel.in_trio_run is lowlevel.in_ringtrio_run
    assert not lowlevel.in_ringtrio_run()
