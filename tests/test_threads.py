"""Tests for ringtrio.to_thread, ringtrio.from_thread and the worker pool.

Plain synchronous pytest functions that call ``ringtrio.run``.  Timing is only
ever bounded from above, generously (a noisy 2-core VM must pass), and every
wait loop has a bound.  Threads that a test blocks are released through
``threading.Event``s with timeouts, so a failing test cannot leave a worker
blocked forever.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import outcome
import pytest
import sniffio
import trio
from _differential import same_under_both

import ringtrio
from ringtrio import from_thread, to_thread
from ringtrio._sync import CapacityLimiter
from ringtrio._thread_cache import _ThreadPool, start_thread_soon
from ringtrio.lowlevel import current_trio_token

# Upper bound for anything that should happen "soon".  Never a tight margin:
# only a hang should exceed it.
SOON = 10.0
# How long a deliberately blocked worker may stay blocked before giving up.
BLOCK_LIMIT = 30.0


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Sleep in small steps until ``predicate()`` holds; fail after SOON s."""
    deadline = time.monotonic() + SOON
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await ringtrio.sleep(0.005)


# ---------------------------------------------------------------------------
# to_thread.run_sync basics
# ---------------------------------------------------------------------------


def test_result_and_exception_cross_back() -> None:
    loop_thread = threading.get_ident()

    def add(a: int, b: int) -> tuple[int, int]:
        return a + b, threading.get_ident()

    def fail() -> None:
        raise ValueError("from the worker")

    async def main() -> None:
        total, ident = await to_thread.run_sync(add, 2, 3)
        assert total == 5
        assert ident != loop_thread
        with pytest.raises(ValueError, match="from the worker"):
            await to_thread.run_sync(fail)
        # BaseExceptions cross too (they must not kill the pooled worker).
        with pytest.raises(KeyboardInterrupt):
            await to_thread.run_sync(_raise_keyboard_interrupt)
        assert await to_thread.run_sync(lambda: "still works") == "still works"

    ringtrio.run(main)


def _raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def test_async_function_is_rejected() -> None:
    """An async function given where a sync one belongs is a TypeError whose
    message has the words trio's says (code and trio's tests match on
    them), and the coroutine it returned is closed, not leaked."""

    async def not_sync() -> None:  # pragma: no cover - never awaited
        pass

    async def scenario(lib: ModuleType) -> list[bool]:
        found = []
        with pytest.raises(TypeError) as to_thread_error:
            await lib.to_thread.run_sync(not_sync)
        found.append("expected a sync function" in str(to_thread_error.value))

        def from_a_worker() -> str:
            try:
                lib.from_thread.run_sync(not_sync)
            except TypeError as exc:
                return str(exc)
            return "no error"

        message = await lib.to_thread.run_sync(from_a_worker)
        found.append("expected a synchronous function" in message)
        found.append("appears to be asynchronous" in message)
        return found

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine must be closed, not leaked
        assert same_under_both(scenario) == [True, True, True]


def test_run_sync_is_a_checkpoint() -> None:
    ran: list[int] = []

    async def main() -> None:
        with ringtrio.CancelScope() as scope:
            scope.cancel()
            await to_thread.run_sync(ran.append, 1)
        assert scope.cancelled_caught
        assert ran == []  # cancelled before the thread started

    ringtrio.run(main)


def test_run_sync_outside_a_run_raises() -> None:
    coro = to_thread.run_sync(lambda: None)
    with pytest.raises(RuntimeError, match="inside ringtrio.run"):
        coro.send(None)
    coro.close()
    with pytest.raises(RuntimeError, match="inside ringtrio.run"):
        to_thread.current_default_thread_limiter()


def test_thread_name() -> None:
    async def main() -> None:
        name = await to_thread.run_sync(lambda: threading.current_thread().name, thread_name="my-worker")
        assert name == "my-worker"
        default = await to_thread.run_sync(lambda: threading.current_thread().name)
        assert default.startswith("<lambda> from ")

    ringtrio.run(main)


def test_contextvars_flow_into_the_thread() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    def read_and_write() -> str:
        value = var.get()
        var.set("changed in thread")
        return value

    async def main() -> None:
        var.set("from the task")
        assert await to_thread.run_sync(read_and_write) == "from the task"
        # The thread worked on a copy.
        assert var.get() == "from the task"

    ringtrio.run(main)


def test_sniffio_sees_no_async_library_in_the_worker() -> None:
    def probe() -> tuple[str, Any]:
        try:
            lib = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            lib = "none"
        return lib, sniffio.thread_local.name

    async def main() -> None:
        assert sniffio.current_async_library() == "ringtrio"
        assert await to_thread.run_sync(probe) == ("none", None)

        # A job that sets the thread-local override must not leak it into
        # the next job on the same (reused) worker.
        def set_override() -> int:
            sniffio.thread_local.name = "leaky"
            return threading.get_ident()

        await to_thread.run_sync(set_override)
        assert await to_thread.run_sync(probe) == ("none", None)

    ringtrio.run(main)


def test_cancellable_is_a_deprecated_alias() -> None:
    async def main() -> None:
        with pytest.warns(ringtrio.TrioDeprecationWarning, match="abandon_on_cancel"):
            assert await to_thread.run_sync(lambda: 7, cancellable=True) == 7
        with pytest.raises(ValueError, match="both cancellable= and abandon_on_cancel="):
            await to_thread.run_sync(lambda: 7, cancellable=True, abandon_on_cancel=True)

    ringtrio.run(main)


# ---------------------------------------------------------------------------
# Cancellation
# ---------------------------------------------------------------------------


def test_abandon_on_cancel_returns_at_once() -> None:
    release = threading.Event()
    started = threading.Event()
    finished = threading.Event()
    limiter = CapacityLimiter(1)

    def blocker() -> str:
        started.set()
        release.wait(BLOCK_LIMIT)
        finished.set()
        return "discarded"

    async def main() -> None:
        t0 = time.monotonic()
        with ringtrio.move_on_after(0.2) as scope:
            await to_thread.run_sync(blocker, abandon_on_cancel=True, limiter=limiter)
        elapsed = time.monotonic() - t0
        try:
            assert scope.cancelled_caught
            assert elapsed < SOON, f"cancel took {elapsed:.1f}s: the thread was not abandoned"
            assert started.is_set() and not finished.is_set()
            # The token stays borrowed until the thread really finishes.
            assert limiter.borrowed_tokens == 1
        finally:
            release.set()
        await wait_until(lambda: limiter.borrowed_tokens == 0, "the abandoned thread's limiter token")
        assert finished.is_set()

    ringtrio.run(main)


def test_no_abandon_waits_for_the_thread_and_delivers_the_result() -> None:
    release = threading.Event()
    started = threading.Event()

    def blocker() -> str:
        started.set()
        if not release.wait(BLOCK_LIMIT):
            return "timed out"
        return "the result"

    async def main() -> None:
        got: list[str] = []
        async with ringtrio.open_nursery() as nursery:
            with ringtrio.CancelScope() as scope:

                async def cancel_then_release() -> None:
                    await wait_until(started.is_set, "worker started")
                    scope.cancel()
                    # Give the cancellation every chance to (wrongly) land.
                    await ringtrio.sleep(0.1)
                    assert got == []
                    release.set()

                nursery.start_soon(cancel_then_release)
                got.append(await to_thread.run_sync(blocker))
                # The cancellation is level-triggered: it lands here.
                await ringtrio.lowlevel.checkpoint()
                raise AssertionError("the checkpoint after the call should have raised Cancelled")
            assert scope.cancelled_caught
        assert got == ["the result"]

    ringtrio.run(main)


def test_check_cancelled_in_the_worker() -> None:
    started = threading.Event()
    polls: list[int] = []

    def poller() -> str:
        started.set()
        for i in range(int(BLOCK_LIMIT / 0.01)):
            polls.append(i)
            from_thread.check_cancelled()
            time.sleep(0.01)
        return "never cancelled"

    async def main() -> None:
        with ringtrio.CancelScope() as scope:
            async with ringtrio.open_nursery() as nursery:

                async def canceller() -> None:
                    await wait_until(started.is_set, "worker started")
                    scope.cancel()

                nursery.start_soon(canceller)
                # Not abandoned: the worker's Cancelled comes back as the result.
                await to_thread.run_sync(poller)
        assert scope.cancelled_caught
        assert polls  # it ran, then noticed

        # Not cancelled: check_cancelled just returns.
        def check_once() -> str:
            from_thread.check_cancelled()
            return "fine"

        assert await to_thread.run_sync(check_once) == "fine"

    ringtrio.run(main)


def _address_free(text: str) -> str:
    return re.sub(r"0x[0-9a-f]+", "0x?", text)


def test_check_cancelled_says_why_the_call_was_cancelled() -> None:
    """The Cancelled a worker gets from check_cancelled says what cancelled
    the to_thread call (source, reason, task), as trio's: with the call
    kept waiting (it comes back as the call's result) and abandoned."""

    async def scenario(lib: ModuleType) -> list[str]:
        seen: list[str] = []
        for abandon in (False, True):
            go = threading.Event()
            checked = threading.Event()
            in_worker: list[str] = []  # the worker's own record: no race with the task's

            def worker() -> None:
                go.wait(BLOCK_LIMIT)
                try:
                    lib.from_thread.check_cancelled()
                except lib.Cancelled as exc:
                    in_worker.append(f"worker: {exc}")
                    if not abandon:
                        raise
                finally:
                    checked.set()

            with lib.CancelScope() as scope:
                async with lib.open_nursery() as nursery:

                    async def canceller() -> None:
                        await lib.testing.wait_all_tasks_blocked()
                        scope.cancel("enough")
                        go.set()

                    nursery.start_soon(canceller)
                    try:
                        await lib.to_thread.run_sync(worker, abandon_on_cancel=abandon)
                    except lib.Cancelled as exc:
                        seen.append(f"task: {exc}")
                        raise
            assert checked.wait(BLOCK_LIMIT)
            seen += in_worker
            seen.append(f"caught: {scope.cancelled_caught}")
        return [_address_free(line) for line in seen]

    seen = same_under_both(scenario)
    assert seen[1].startswith("worker: cancelled due to explicit with reason 'enough' from task <Task ")


def test_check_cancelled_outside_a_worker_raises() -> None:
    with pytest.raises(RuntimeError, match="only works in a thread started by"):
        from_thread.check_cancelled()


# ---------------------------------------------------------------------------
# from_thread
# ---------------------------------------------------------------------------


def test_from_thread_run_from_a_worker_reaches_the_loop() -> None:
    loop_thread = threading.get_ident()

    async def in_loop(x: int) -> tuple[int, int, str]:
        await ringtrio.sleep(0.001)
        return x * 2, threading.get_ident(), sniffio.current_async_library()

    async def failing() -> None:
        await ringtrio.lowlevel.checkpoint()
        raise KeyError("from the loop")

    def worker() -> tuple[int, int, str]:
        with pytest.raises(KeyError, match="from the loop"):
            from_thread.run(failing)
        with pytest.raises(TypeError):
            from_thread.run(lambda: None)  # type: ignore[arg-type, return-value]
        return from_thread.run(in_loop, 21)

    async def main() -> None:
        for abandon in (False, True):
            value, ident, lib = await to_thread.run_sync(worker, abandon_on_cancel=abandon)
            assert (value, ident, lib) == (42, loop_thread, "ringtrio")

    ringtrio.run(main)


def test_from_thread_run_of_a_coroutine_object_says_how_to_call_it() -> None:
    async def fetch(x: int) -> int:  # pragma: no cover - never awaited
        return x

    def worker() -> str:
        coro = fetch(1)
        try:
            with pytest.raises(TypeError) as info:
                from_thread.run(coro)  # type: ignore[arg-type]
        finally:
            coro.close()
        return str(info.value)

    async def main() -> str:
        return await to_thread.run_sync(worker)

    message = ringtrio.run(main)
    assert "from_thread.run() was expecting an async function, but instead it got a coroutine object <coroutine object" in message
    assert "You probably wrote 'from_thread.run(fetch(...))'" in message
    assert "'from_thread.run(fetch, ...)'" in message


def test_from_thread_run_runs_in_the_waiting_task() -> None:
    # With abandon_on_cancel=False the callback runs inside the task that
    # waits in to_thread.run_sync, so it is cancelled together with it.
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await ringtrio.sleep_forever()

    def worker() -> str:
        with pytest.raises(ringtrio.Cancelled):
            from_thread.run(forever)
        return "callback was cancelled"

    async def main() -> None:
        caller: list[ringtrio.lowlevel.Task] = []

        async def who_am_i() -> ringtrio.lowlevel.Task:
            return ringtrio.lowlevel.current_task()

        caller.append(await to_thread.run_sync(from_thread.run, who_am_i))
        assert caller[0] is ringtrio.lowlevel.current_task()

        with ringtrio.CancelScope() as scope:
            async with ringtrio.open_nursery() as nursery:

                async def canceller() -> None:
                    await wait_until(started.is_set, "callback started")
                    scope.cancel()

                nursery.start_soon(canceller)
                result = await to_thread.run_sync(worker)
                assert result == "callback was cancelled"
                await ringtrio.lowlevel.checkpoint()
        assert scope.cancelled_caught

    ringtrio.run(main)


def test_from_thread_run_sync() -> None:
    loop_thread = threading.get_ident()

    def in_loop(x: int) -> tuple[int, int, str]:
        return x + 1, threading.get_ident(), sniffio.current_async_library()

    def worker() -> tuple[int, int, str]:
        with pytest.raises(ZeroDivisionError):
            from_thread.run_sync(lambda: 1 / 0)
        return from_thread.run_sync(in_loop, 1)

    async def main() -> None:
        for abandon in (False, True):
            assert await to_thread.run_sync(worker, abandon_on_cancel=abandon) == (2, loop_thread, "ringtrio")

    ringtrio.run(main)


def test_from_thread_contextvars_flow_into_the_callback() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def read_async() -> str:
        await ringtrio.lowlevel.checkpoint()
        return var.get()

    def worker() -> tuple[str, str]:
        var.set("set in thread")
        return from_thread.run(read_async), from_thread.run_sync(var.get)

    async def main() -> None:
        var.set("task value")
        assert await to_thread.run_sync(worker) == ("set in thread", "set in thread")
        # The waiting task's own context is back in place afterwards.
        assert var.get() == "task value"

    ringtrio.run(main)


def test_from_thread_with_token_from_a_foreign_thread() -> None:
    loop_thread = threading.get_ident()
    results: list[object] = []

    async def in_loop() -> int:
        await ringtrio.sleep(0.001)
        return threading.get_ident()

    def foreign(token: ringtrio.lowlevel.TrioToken) -> None:
        try:
            results.append(from_thread.run(in_loop, trio_token=token))
            results.append(from_thread.run_sync(threading.get_ident, trio_token=token))
            # Without a token a foreign thread cannot know which run to enter.
            with pytest.raises(RuntimeError, match="trio_token"):
                from_thread.run_sync(threading.get_ident)
            with pytest.raises(RuntimeError, match="trio_token"):
                from_thread.run_sync(threading.get_ident, trio_token="nope")  # type: ignore[arg-type]
            results.append("ok")
        except BaseException as exc:  # pragma: no cover - reported below
            results.append(exc)

    async def main() -> None:
        thread = threading.Thread(target=foreign, args=(current_trio_token(),), daemon=True)
        thread.start()
        await wait_until(lambda: not thread.is_alive(), "foreign thread done")

    ringtrio.run(main)
    assert results == [loop_thread, loop_thread, "ok"]


def test_from_thread_in_the_loop_thread_raises() -> None:
    async def afn() -> None:  # pragma: no cover - never run
        pass

    async def main() -> None:
        token = current_trio_token()
        with pytest.raises(RuntimeError, match="this is a blocking function; call it from a thread"):
            from_thread.run(afn, trio_token=token)
        with pytest.raises(RuntimeError, match="this is a blocking function; call it from a thread"):
            from_thread.run_sync(print, trio_token=token)
        with pytest.raises(RuntimeError, match="this is a blocking function; call it from a thread"):
            from_thread.run_sync(print)

    ringtrio.run(main)


def test_from_thread_into_another_run_works_from_inside_a_run() -> None:
    # A second run in its own thread (what AnyIO's start_blocking_portal
    # does); the first run calls into it with its token.  Only a call into
    # the caller's own run could deadlock, so only that one is refused.
    other_token: list[ringtrio.lowlevel.TrioToken] = []
    stop = threading.Event()
    ready = threading.Event()

    async def other_main() -> None:
        other_token.append(current_trio_token())
        ready.set()
        while not stop.is_set():
            await ringtrio.sleep(0.01)

    other = threading.Thread(target=ringtrio.run, args=(other_main,))
    other.start()
    try:
        assert ready.wait(SOON)

        async def add(a: int, b: int) -> int:
            await ringtrio.sleep(0)
            return a + b

        async def main() -> tuple[int, str]:
            token = other_token[0]
            return (
                from_thread.run(add, 1, 2, trio_token=token),
                from_thread.run_sync(lambda: threading.current_thread().name, trio_token=token),
            )

        value, thread_name = ringtrio.run(main)
        assert value == 3
        assert thread_name == other.name
    finally:
        stop.set()
        other.join(SOON)
    assert not other.is_alive()


def test_from_thread_after_the_run_raises_run_finished() -> None:
    async def grab_token() -> ringtrio.lowlevel.TrioToken:
        return current_trio_token()

    token = ringtrio.run(grab_token)

    async def afn() -> None:  # pragma: no cover - never run
        pass

    # From this (formerly the loop's) thread ...
    with pytest.raises(ringtrio.RunFinishedError):
        from_thread.run_sync(print, trio_token=token)
    with pytest.raises(ringtrio.RunFinishedError):
        from_thread.run(afn, trio_token=token)

    # ... and from another thread.
    errors: list[BaseException] = []

    def foreign() -> None:
        for call in (lambda: from_thread.run_sync(print, trio_token=token), lambda: from_thread.run(afn, trio_token=token)):
            try:
                call()
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=foreign, daemon=True)
    thread.start()
    thread.join(SOON)
    assert not thread.is_alive()
    assert [type(e) for e in errors] == [ringtrio.RunFinishedError] * 2


def test_abandoned_worker_after_the_run_gets_run_finished() -> None:
    release = threading.Event()
    outcome_box: list[object] = []
    done = threading.Event()

    def abandoned() -> None:
        release.wait(BLOCK_LIMIT)
        try:
            outcome_box.append(from_thread.run_sync(lambda: "ran"))
        except BaseException as exc:
            outcome_box.append(type(exc))
        done.set()

    async def main() -> None:
        with ringtrio.move_on_after(0.05):
            await to_thread.run_sync(abandoned, abandon_on_cancel=True)

    ringtrio.run(main)
    release.set()
    assert done.wait(SOON)
    assert outcome_box == [ringtrio.RunFinishedError]


# ---------------------------------------------------------------------------
# Limiters
# ---------------------------------------------------------------------------


def test_limiter_bounds_concurrency() -> None:
    limit = 10
    calls = 1000
    lock = threading.Lock()
    state = {"running": 0, "peak": 0, "done": 0}

    def work() -> None:
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        time.sleep(0.0005)
        with lock:
            state["running"] -= 1
            state["done"] += 1

    async def main() -> None:
        limiter = CapacityLimiter(limit)
        async with ringtrio.open_nursery() as nursery:
            for _ in range(calls):
                nursery.start_soon(lambda: to_thread.run_sync(work, limiter=limiter))
        assert limiter.borrowed_tokens == 0

    ringtrio.run(main)
    assert state["done"] == calls
    assert state["running"] == 0
    assert 1 <= state["peak"] <= limit


def test_default_limiter() -> None:
    async def main() -> CapacityLimiter:
        limiter = to_thread.current_default_thread_limiter()
        assert limiter.total_tokens == 40
        assert to_thread.current_default_thread_limiter() is limiter

        # run_sync uses it: the worker's token shows up while it runs.
        def borrowed_from_thread() -> int:
            return from_thread.run_sync(lambda: limiter.borrowed_tokens)

        assert await to_thread.run_sync(borrowed_from_thread) == 1
        assert limiter.borrowed_tokens == 0
        return limiter

    first = ringtrio.run(main)
    second = ringtrio.run(main)
    assert first is not second  # one per run


def test_custom_limiter_with_only_the_on_behalf_of_methods() -> None:
    log: list[tuple[str, str]] = []

    class Minimal:
        async def acquire_on_behalf_of(self, borrower: object) -> None:
            log.append(("acquire", repr(borrower)))
            await ringtrio.lowlevel.checkpoint()

        def release_on_behalf_of(self, borrower: object) -> None:
            log.append(("release", repr(borrower)))

    async def main() -> None:
        assert await to_thread.run_sync(lambda: 5, limiter=Minimal()) == 5

    ringtrio.run(main)
    assert [what for what, _ in log] == ["acquire", "release"]
    assert log[0][1] == log[1][1]  # the same borrower both times


def test_failing_limiter_release_replaces_the_result() -> None:
    class BadRelease:
        def __init__(self) -> None:
            self.inner = CapacityLimiter(1)

        async def acquire_on_behalf_of(self, borrower: object) -> None:
            await self.inner.acquire_on_behalf_of(borrower)

        def release_on_behalf_of(self, borrower: object) -> None:
            self.inner.release_on_behalf_of(borrower)
            raise OSError("release failed")

    def fail() -> None:
        raise ValueError("thread error")

    async def main() -> None:
        limiter = BadRelease()
        with pytest.raises(OSError, match="release failed"):
            await to_thread.run_sync(lambda: 1, limiter=limiter)
        with pytest.raises(OSError, match="release failed") as info:
            await to_thread.run_sync(fail, limiter=limiter)
        assert isinstance(info.value.__context__, ValueError)

    ringtrio.run(main)


# ---------------------------------------------------------------------------
# The worker pool
# ---------------------------------------------------------------------------


def test_threads_are_reused() -> None:
    async def main() -> list[int]:
        return [await to_thread.run_sync(threading.get_ident) for _ in range(20)]

    idents = ringtrio.run(main)
    # Sequential calls find the previous worker idle again (it re-joins the
    # pool before delivering its result): far fewer threads than calls.
    assert len(set(idents)) < 5, idents


def test_workers_are_daemon_threads() -> None:
    async def main() -> bool:
        return await to_thread.run_sync(lambda: threading.current_thread().daemon)

    assert ringtrio.run(main) is True


def test_start_thread_soon_delivers_in_the_worker() -> None:
    box: list[tuple[outcome.Outcome[Any], int]] = []
    delivered = threading.Event()

    def deliver(result: outcome.Outcome[Any]) -> None:
        box.append((result, threading.get_ident()))
        delivered.set()

    start_thread_soon(threading.get_ident, deliver)
    assert delivered.wait(SOON)
    (result, deliver_ident), = box
    assert result.unwrap() == deliver_ident != threading.get_ident()

    delivered.clear()
    box.clear()
    start_thread_soon(lambda: 1 / 0, deliver, name="failing job")
    assert delivered.wait(SOON)
    with pytest.raises(ZeroDivisionError):
        box[0][0].unwrap()


def test_idle_workers_exit_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import ringtrio._thread_cache as cache

    monkeypatch.setattr(cache, "IDLE_TIMEOUT", 0.05)
    pool = _ThreadPool()  # private pool: the shared one has long-waiting workers
    delivered = threading.Event()
    idents: list[int] = []

    def deliver(result: outcome.Outcome[int]) -> None:
        idents.append(result.unwrap())
        delivered.set()

    pool.start_thread_soon(threading.get_ident, deliver)
    assert delivered.wait(SOON)
    deadline = time.monotonic() + SOON
    while pool.idle_count() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.idle_count() == 0
    worker_threads = [t for t in threading.enumerate() if t.ident == idents[0]]
    for t in worker_threads:
        t.join(SOON)
        assert not t.is_alive()


@pytest.mark.parametrize("lib", [trio, ringtrio], ids=["trio", "ringtrio"])
def test_deliver_exception_is_reported_and_the_worker_survives(
    lib: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deliver callback that raises: the error and "delivering result"
    (trio's words, which trio's tests look for) go to stderr, and the same
    worker takes the next job."""
    delivered = threading.Event()
    idents: list[int] = []

    def bad_deliver(result: outcome.Outcome[int]) -> None:
        idents.append(result.unwrap())
        delivered.set()
        raise RuntimeError("deliver blew up")

    lib.lowlevel.start_thread_soon(threading.get_ident, bad_deliver)
    assert delivered.wait(SOON)
    err = ""
    deadline = time.monotonic() + SOON
    while "deliver blew up" not in err and time.monotonic() < deadline:
        time.sleep(0.01)
        err += capsys.readouterr().err
    assert "delivering result" in err and "deliver blew up" in err

    delivered.clear()

    def good_deliver(result: outcome.Outcome[int]) -> None:
        idents.append(result.unwrap())
        delivered.set()

    lib.lowlevel.start_thread_soon(threading.get_ident, good_deliver)
    assert delivered.wait(SOON)
    assert idents[0] == idents[1]  # the same worker took the second job
