"""Guest mode (lowlevel.start_guest_run) with asyncio as the host loop.

Scenario first, then what trio does, then what we do: each scenario runs
under trio's start_guest_run and ringtrio's, hosted by asyncio, and the
results must be the same; the Ctrl-C scenarios run in a child process under
both with a real SIGINT.  Then what only ringtrio has to show: the helper
thread and the ring it polls, the soft ring, and that nothing is left over.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from math import inf
from types import ModuleType
from typing import Any

import outcome
import pytest
import sniffio
import trio

import ringtrio
from ringtrio._core import _ring

from _differential import LIBS, ctrl_c_child, lib  # noqa: F401  (lib: a fixture)


def aio_host(
    lib: ModuleType,
    guest_fn: Callable[..., Awaitable[Any]],
    *args: Any,
    in_host: Callable[[asyncio.AbstractEventLoop], Awaitable[Any]] | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``guest_fn(*args)`` as ``lib``'s guest inside a fresh asyncio
    loop; return what ``lib.run`` would have returned (or raise it).
    ``in_host(loop)``, if given, runs as an asyncio task beside the guest."""
    loop = asyncio.new_event_loop()

    async def main() -> Any:
        done: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        lib.lowlevel.start_guest_run(
            guest_fn,
            *args,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
            **kwargs,
        )
        host_task = asyncio.ensure_future(in_host(loop)) if in_host is not None else None
        result = await asyncio.wait_for(done, 60)
        if host_task is not None:
            await host_task
        return result.unwrap()

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def trivial_host(guest_fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    """The simplest host loop (trio's tests have the same): a queue of
    callbacks run in this thread until the guest is done."""
    todo: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
    results: list[outcome.Outcome[Any]] = []
    ringtrio.lowlevel.start_guest_run(
        guest_fn, run_sync_soon_threadsafe=todo.put, done_callback=results.append, **kwargs
    )
    while not results:
        todo.get(timeout=60)()
    return results[0].unwrap()


def same_under_both(guest_fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    results = [aio_host(lib_, guest_fn, lib_, **kwargs) for lib_ in (trio, ringtrio)]
    assert results[1] == results[0], f"trio: {results[0]!r}\nringtrio: {results[1]!r}"
    return results[0]


# -- the semantics, compared with trio ---------------------------------------


async def _returns_and_checkpoints(lib: ModuleType) -> str:
    await lib.lowlevel.checkpoint()
    await lib.sleep(0.01)
    return "ok"


def test_guest_returns_its_result() -> None:
    assert same_under_both(_returns_and_checkpoints) == "ok"


async def _raises(lib: ModuleType) -> None:
    await lib.lowlevel.checkpoint()
    raise KeyError("from the guest")


@pytest.mark.parametrize("lib", LIBS)
def test_guest_error_reaches_done_callback(lib: ModuleType) -> None:
    with pytest.raises(KeyError, match="from the guest"):
        aio_host(lib, _raises, lib)


async def _pingpong_with_asyncio(lib: ModuleType) -> list[int]:
    # The host's tasks and the guest's take turns: asyncio.Queue one way, a
    # memory channel the other.
    to_guest, from_host = lib.open_memory_channel(inf)
    to_host: asyncio.Queue[int] = asyncio.Queue()
    seen = []

    async def host_side() -> None:
        while True:
            n = await to_host.get()
            to_guest.send_nowait(n + 1)

    host_task = asyncio.ensure_future(host_side())
    await lib.lowlevel.checkpoint()
    to_host.put_nowait(0)
    async for n in from_host:
        seen.append(n)
        if n >= 10:
            host_task.cancel()
            return seen
        to_host.put_nowait(n + 1)
    raise AssertionError("unreachable")  # pragma: no cover


def test_host_and_guest_both_run() -> None:
    assert same_under_both(_pingpong_with_asyncio) == [1, 3, 5, 7, 9, 11]


async def _io_and_host_wakeups(lib: ModuleType) -> list[Any]:
    loop = asyncio.get_running_loop()
    record: list[Any] = []
    a, b = lib.socket.socketpair()
    with a, b:
        async with lib.open_nursery() as nursery:

            async def receive() -> None:
                record.append(await a.recv(10))

            nursery.start_soon(receive)
            await lib.testing.wait_all_tasks_blocked()
            await b.send(b"x")
    # The host wakes a parked task directly.
    event = lib.Event()
    loop.call_later(0.01, event.set)
    await event.wait()
    record.append("woken by the host")
    # The host moves a deadline: to the past, and (in a scope whose wait is
    # a ring op with no deadline) from none to the past.
    with lib.CancelScope() as scope:
        loop.call_soon(setattr, scope, "deadline", -inf)
        await lib.sleep_forever()
    record.append(scope.cancelled_caught)
    c, d = lib.socket.socketpair()
    with c, d, lib.CancelScope() as scope:
        loop.call_later(0.01, setattr, scope, "deadline", 1e6)
        loop.call_later(0.02, setattr, scope, "deadline", -inf)
        await c.recv(1)
    record.append(scope.cancelled_caught)
    # The host cancels a scope around a ring op.
    e, f = lib.socket.socketpair()
    with e, f, lib.CancelScope() as scope:
        loop.call_later(0.01, scope.cancel)
        await e.recv(1)
    record.append(scope.cancelled_caught)
    # A callback queued by the host with the run's token.
    token = lib.lowlevel.current_trio_token()
    done = lib.Event()
    loop.call_later(0.01, token.run_sync_soon, done.set)
    await done.wait()
    record.append("run_sync_soon from the host")
    return record


def test_guest_does_io_and_the_host_can_wake_cancel_and_reschedule_it() -> None:
    assert same_under_both(_io_and_host_wakeups) == [
        b"x", "woken by the host", True, True, True, "run_sync_soon from the host",
    ]


def _initialized_when_start_returns(lib: ModuleType) -> set[str]:
    record: list[str] = []
    loop = asyncio.new_event_loop()

    async def guest() -> None:
        record.append("main task ran")
        await lib.lowlevel.checkpoint()

    async def main() -> None:
        done: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        lib.lowlevel.start_guest_run(
            guest,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        # Back in the host before the main task ran a line.
        assert record == []
        assert lib.lowlevel.in_trio_run() and not lib.lowlevel.in_trio_task()
        lib.lowlevel.current_trio_token().run_sync_soon(record.append, "run_sync_soon callback")

        async def system_task() -> None:
            record.append("system task")

        lib.lowlevel.spawn_system_task(system_task)
        assert isinstance(lib.current_time(), float)
        (await done).unwrap()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert not lib.lowlevel.in_trio_run()
    return set(record)


def test_guest_is_initialized_when_start_returns() -> None:
    ours = _initialized_when_start_returns(ringtrio)
    assert ours == _initialized_when_start_returns(trio)
    assert ours == {"main task ran", "run_sync_soon callback", "system task"}


async def _host_shutdown_cancels_the_guest(lib: ModuleType) -> list[str]:
    # The usual shape: the guest's main task runs inside a scope the host
    # can cancel through the run's token when it shuts down.
    record = []
    scope = lib.CancelScope()
    token = lib.lowlevel.current_trio_token()

    async def host_shuts_down() -> None:
        await asyncio.sleep(0.02)
        token.run_sync_soon(scope.cancel)

    host_task = asyncio.ensure_future(host_shuts_down())
    with scope:
        try:
            await lib.sleep_forever()
        finally:
            record.append("guest cleaned up")
    await host_task
    record.append(f"cancelled_caught={scope.cancelled_caught}")
    return record


def test_host_shutting_down_cancels_the_guest() -> None:
    assert same_under_both(_host_shutdown_cancels_the_guest) == [
        "guest cleaned up", "cancelled_caught=True",
    ]


async def _sniffio_and_contexts(lib: ModuleType) -> list[Any]:
    loop = asyncio.get_running_loop()
    seen: list[Any] = [sniffio.current_async_library() == lib.__name__]
    in_host: list[Any] = []
    done = lib.Event()

    async def host() -> None:  # an asyncio task
        in_host.append(sniffio.current_async_library())
        in_host.append(lib.lowlevel.in_trio_run())
        in_host.append(lib.lowlevel.in_trio_task())
        done.set()

    host_task = loop.create_task(host())
    await done.wait()
    await lib.lowlevel.checkpoint()
    assert host_task.done()
    return seen + in_host


def test_sniffio_and_the_run_context_in_host_and_guest() -> None:
    assert same_under_both(_sniffio_and_contexts) == [True, "asyncio", True, False]


async def _sniffio_while_a_coroutine_is_made(lib: ModuleType) -> list[Any]:
    # The function given to start_soon / spawn_system_task is called to make
    # the task's coroutine where start_soon is called: in the host's code
    # (an asyncio task, a plain callback), maybe inside a sniffio
    # thread-local override the host set around the call, or in a guest task
    # that set one.  trio says "trio" there all the same (its
    # coroutine_or_error), and in the task itself, before and after its
    # first await.
    loop = asyncio.get_running_loop()
    seen: list[Any] = []

    def library() -> str:
        try:
            name = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            return "none"
        return "the run" if name == lib.__name__ else name

    async def body(tag: str) -> None:
        seen.append((tag, "before its first await", library()))
        await lib.lowlevel.checkpoint()
        seen.append((tag, "after", library()))

    def make(tag: str) -> Any:  # a function that makes the coroutine
        seen.append((tag, "making the coroutine", library()))
        return body(tag)

    async with lib.open_nursery() as nursery:
        done = lib.Event()

        def callback() -> None:
            nursery.start_soon(make, "host callback")

        async def host() -> None:  # an asyncio task
            sniffio.thread_local.name = "the host's override"
            try:
                nursery.start_soon(make, "host, overridden")
                nursery.start_soon(body, "host, overridden, async fn")
                lib.lowlevel.spawn_system_task(make, "host, overridden, system task")
            finally:
                sniffio.thread_local.name = None
            nursery.start_soon(make, "host asyncio task")
            done.set()

        loop.call_soon(callback)
        host_task = loop.create_task(host())
        await done.wait()
        previous, sniffio.thread_local.name = sniffio.thread_local.name, "a guest task's override"
        try:
            nursery.start_soon(make, "guest, overridden")
        finally:
            sniffio.thread_local.name = previous
    await host_task
    return sorted(seen)


def test_sniffio_says_the_run_while_a_coroutine_is_made_from_the_host() -> None:
    seen = same_under_both(_sniffio_while_a_coroutine_is_made)
    assert len(seen) == 17 and {library for _, _, library in seen} == {"the run"}


async def _autojump_threshold_from_the_host(lib: ModuleType, clock: Any) -> float:
    loop = asyncio.get_running_loop()
    loop.call_soon(setattr, clock, "autojump_threshold", 0)
    start = lib.current_time()
    await lib.sleep(120)  # virtual: the host's change makes the clock jump
    return lib.current_time() - start


@pytest.mark.parametrize("lib", LIBS)
def test_autojump_threshold_changed_by_the_host_wakes_the_guest(lib: ModuleType) -> None:
    clock = lib.testing.MockClock()
    t0 = time.monotonic()
    assert aio_host(lib, _autojump_threshold_from_the_host, lib, clock, clock=clock) == 120
    assert time.monotonic() - t0 < 100  # not the 120 s


@pytest.mark.parametrize("lib", LIBS)
def test_async_generators_of_host_and_guest_are_finalized_by_their_own_loop(lib: ModuleType) -> None:
    """trio's test_guest_mode_asyncgens, with each library's own name."""
    record = set()

    async def agen(label: str) -> AsyncGenerator[int, None]:
        class A:
            pass

        a = A()
        a_ref = weakref.ref(a)
        assert sniffio.current_async_library() == label
        try:
            yield 1
        finally:
            library = sniffio.current_async_library()
            with contextlib.suppress(lib.Cancelled):
                await sys.modules[library].sleep(0)
            del a
            record.add((label, library, a_ref() is None))

    async def iterate_in_asyncio() -> None:
        await agen("asyncio").asend(None)

    async def guest() -> None:
        task = asyncio.ensure_future(iterate_in_asyncio())
        done = lib.Event()
        task.add_done_callback(lambda _: done.set())
        with lib.fail_after(5):
            await done.wait()
        await agen(lib.__name__).asend(None)
        gc.collect()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # ringtrio's "not exhausted" warning
        aio_host(lib, guest)
    assert record == {("asyncio", "asyncio", True), (lib.__name__, lib.__name__, True)}


# -- Ctrl-C, in a child process under both -----------------------------------

_CHILD = r"""
import asyncio, json, os, signal, sys
lib = __import__(sys.argv[1])
scenario = sys.argv[2]


async def busy():
    ready()
    while True:
        pass


def ready():
    print("ready", flush=True)


async def sleeping():
    asyncio.get_running_loop().call_soon(ready)
    await lib.sleep(30)


async def raises_after_host_ctrl_c():
    # The host gets the SIGINT (raise_signal in a host callback) and the
    # main task finishes with its own error first.
    asyncio.get_running_loop().call_soon(signal.raise_signal, signal.SIGINT)
    await lib.lowlevel.cancel_shielded_checkpoint()
    ready()
    raise KeyError("main")


def shape(exc):
    if isinstance(exc, BaseExceptionGroup):
        return [shape(e) for e in exc.exceptions]
    return type(exc).__name__ + ("<-" + shape(exc.__context__) if exc.__context__ else "")


fds = set(os.listdir("/proc/self/fd"))
loop = asyncio.new_event_loop()


async def main():
    done = loop.create_future()
    lib.lowlevel.start_guest_run(
        globals()[scenario],
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon,
        done_callback=done.set_result,
    )
    return (await done).unwrap()


try:
    loop.run_until_complete(main())
    result = "returned"
except BaseException as exc:
    result = shape(exc)
loop.close()
print(json.dumps({
    "outcome": result,
    "fds_left": sorted(set(os.listdir("/proc/self/fd")) - fds),
    "sigint_handler_restored": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    "wakeup_fd_restored": signal.set_wakeup_fd(-1) == -1,
}), flush=True)
"""


@pytest.mark.parametrize(
    ("scenario", "send"),
    [("busy", True), ("sleeping", True), ("raises_after_host_ctrl_c", False)],
)
def test_ctrl_c_reaches_the_guest_as_in_trio(scenario: str, send: bool) -> None:
    ours = ctrl_c_child(_CHILD, "ringtrio", scenario, send=send)
    assert ours == ctrl_c_child(_CHILD, "trio", scenario, send=send)
    assert "KeyboardInterrupt" in json.dumps(ours["outcome"])
    assert ours["fds_left"] == [] and ours["sigint_handler_restored"] and ours["wakeup_fd_restored"]


# -- ringtrio's own: the helper thread, the ring, the soft ring ----------------


def _guest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ringtrio guest run")]


def test_guest_ring_is_polled_not_deferred_and_nothing_is_left() -> None:
    """The guest's ring has no DEFER_TASKRUN (a deferred completion wakes no
    poller); after the run, no fd of it is open and its helper thread is
    gone."""
    gc.collect()
    fds = set(os.listdir("/proc/self/fd"))

    async def guest() -> tuple[int, int]:
        features = ringtrio.lowlevel.current_ring_features()
        a, b = ringtrio.socket.socketpair()
        with a, b:
            await b.send(b"y")
            with ringtrio.move_on_after(0.01):
                await a.recv(1)
                await a.recv(1)  # times out: a linked timeout wakes the helper
        return features.setup_flags, ringtrio.lowlevel.current_statistics().ops_in_flight

    flags, in_flight = aio_host(ringtrio, guest)
    assert not flags & _ring.IORING_SETUP_DEFER_TASKRUN
    assert in_flight == 0
    for _ in range(100):
        if not _guest_threads():
            break
        time.sleep(0.01)
    assert _guest_threads() == []
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) == fds


def test_guest_on_the_epoll_backend() -> None:
    """The soft ring's fd is its epoll instance; its own timers are not used
    in guest mode (deadlines stay in the run's heap, which bounds the
    helper's wait)."""

    async def guest() -> list[Any]:
        record: list[Any] = [ringtrio.lowlevel.current_backend().name]
        a, b = ringtrio.socket.socketpair()
        with a, b:
            with ringtrio.move_on_after(0.02) as scope:
                await a.recv(1)
            record.append(scope.cancelled_caught)
            async with ringtrio.open_nursery() as nursery:

                async def later() -> None:
                    await ringtrio.sleep(0.01)
                    await b.send(b"z")

                nursery.start_soon(later)
                record.append(await a.recv(1))
            await ringtrio.to_thread.run_sync(time.sleep, 0.01)
        return record

    assert aio_host(ringtrio, guest, backend="epoll") == ["epoll", True, b"z"]


# The abandoned run's tasks are collected suspended: closing the init
# task's coroutine inside its nursery's wait is "coroutine ignored
# GeneratorExit", which Python reports as unraisable (trio's test of this
# tolerates it too).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_abandoned_guest_run_warns_and_closes_the_run() -> None:
    gc.collect()
    fds = set(os.listdir("/proc/self/fd"))
    pending: list[Callable[[], object]] = []

    async def guest() -> None:  # pragma: no cover - never finishes
        while True:
            await ringtrio.lowlevel.checkpoint()

    def start() -> None:
        ringtrio.lowlevel.start_guest_run(
            guest,
            run_sync_soon_threadsafe=pending.append,
            done_callback=lambda _: None,
            host_uses_signal_set_wakeup_fd=True,
        )

    start()
    assert ringtrio.lowlevel.in_trio_run()
    pending[0]()  # one pass, then the host "stops" and drops its callbacks
    with pytest.warns(RuntimeWarning, match="guest run got abandoned"):
        pending.clear()
        gc.collect()
    assert not ringtrio.lowlevel.in_trio_run()
    with pytest.raises(RuntimeError):
        ringtrio.current_time()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) == fds


def test_start_guest_run_refuses_nesting_and_bad_arguments() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="from inside a run"):
            ringtrio.lowlevel.start_guest_run(
                main, run_sync_soon_threadsafe=print, done_callback=print
            )

    ringtrio.run(main)
    coro = main()
    with pytest.raises(TypeError, match="was expecting an async function"):
        ringtrio.lowlevel.start_guest_run(
            coro, run_sync_soon_threadsafe=print, done_callback=print  # type: ignore[arg-type]
        )
    coro.close()

    class BadClock:
        def start_clock(self) -> None:
            raise ValueError("whoops")

        def current_time(self) -> float:  # pragma: no cover
            return 0.0

        def deadline_to_sleep_time(self, deadline: float) -> float:  # pragma: no cover
            return 0.0

    with pytest.raises(ringtrio.RingtrioInternalError):
        ringtrio.lowlevel.start_guest_run(
            main, run_sync_soon_threadsafe=print, done_callback=print, clock=BadClock()
        )
    assert not ringtrio.lowlevel.in_trio_run()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_set_wakeup_fd_collision_warns() -> None:
    a, b = os.pipe()
    os.set_blocking(b, False)
    try:
        signal.set_wakeup_fd(b)

        async def guest() -> str:
            return "ok"

        with pytest.warns(RuntimeWarning, match="collided"):
            assert trivial_host(guest) == "ok"
        assert signal.set_wakeup_fd(-1) == b  # put back
    finally:
        signal.set_wakeup_fd(-1)
        os.close(a)
        os.close(b)



# -- debugging a guest run: dump_tasks_on=, HangDetector ------------------------


class _Seen(io.StringIO):
    """A stream whose first write of ``marker`` calls ``then()``."""

    def __init__(self, marker: str, then: Callable[[], object]) -> None:
        super().__init__()
        self._marker, self._then = marker, then

    def write(self, text: str) -> int:
        n = super().write(text)
        if self._marker in self.getvalue() and self._then is not None:
            then, self._then = self._then, None  # type: ignore[assignment]
            then()
        return n


def test_dump_tasks_on_in_a_guest_run_prints_the_tree_on_the_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    """start_guest_run(dump_tasks_on=SIGUSR1), as run()'s: the signal, sent
    while the guest is idle (its helper thread waiting, asyncio asleep),
    prints the tree to stderr in a pass and the run goes on; the host's
    wake-up fd is left alone (host_uses_signal_set_wakeup_fd=True), and the
    handler is put back when the run ends."""
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    wakeup_fds: list[int] = []

    async def stuck(event: ringtrio.Event) -> None:
        await event.wait()

    async def guest(ready: asyncio.Future[ringtrio.Event]) -> str:
        old = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(old)
        wakeup_fds.append(old)
        event = ringtrio.Event()
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(stuck, event)
            await ringtrio.testing.wait_all_tasks_blocked()
            ready.set_result(event)
            await event.wait()
        return "ok"

    def run_guest() -> tuple[str, str]:
        loop = asyncio.new_event_loop()

        async def main() -> tuple[str, str]:
            done: asyncio.Future[outcome.Outcome[str]] = loop.create_future()
            ready: asyncio.Future[ringtrio.Event] = loop.create_future()
            printed: asyncio.Future[None] = loop.create_future()
            err = _Seen("waiting for: Event.wait", lambda: printed.set_result(None))
            monkeypatch.setattr(sys, "stderr", err)
            ringtrio.lowlevel.start_guest_run(
                guest,
                ready,
                run_sync_soon_threadsafe=loop.call_soon_threadsafe,
                run_sync_soon_not_threadsafe=loop.call_soon,
                done_callback=done.set_result,
                host_uses_signal_set_wakeup_fd=True,
                dump_tasks_on=signal.SIGUSR1,
            )
            event = await asyncio.wait_for(ready, 60)
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(printed, 60)
            token = ringtrio.lowlevel.current_trio_token()
            token.run_sync_soon(event.set)
            result = (await asyncio.wait_for(done, 60)).unwrap()
            monkeypatch.undo()
            return result, err.getvalue()

        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    result, text = run_guest()
    assert result == "ok"
    assert "ringtrio task tree at t=" in text
    assert "test_guest.test_dump_tasks_on_in_a_guest_run_prints_the_tree_on_the_signal.<locals>.stuck [parked]" in text
    assert wakeup_fds == [-1]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1


def test_dump_tasks_on_in_a_guest_run_that_owns_the_wakeup_fd() -> None:
    """Without host_uses_signal_set_wakeup_fd, the guest points the wake-up
    fd at its own pipe for the run (as it does without dump_tasks_on) and
    puts it back after; the dump does not take it a second time."""

    async def guest() -> str:
        os.kill(os.getpid(), signal.SIGUSR2)
        await ringtrio.sleep(0.01)
        return "ok"

    err = io.StringIO()
    real = sys.stderr
    sys.stderr = err
    try:
        assert trivial_host(guest, dump_tasks_on=signal.SIGUSR2) == "ok"
    finally:
        sys.stderr = real
    assert "ringtrio task tree at t=" in err.getvalue()
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1


def test_start_guest_run_refuses_what_dump_tasks_on_cannot_do() -> None:
    async def main() -> None:  # pragma: no cover - never started
        pass

    gc.collect()
    fds = set(os.listdir("/proc/self/fd"))
    for signum, error, match in (
        (signal.SIGINT, ValueError, r"start_guest_run\(dump_tasks_on=SIGINT\).*Ctrl-C"),
        (signal.SIGKILL, ValueError, "cannot be caught"),
        ("SIGUSR1", ValueError, "signal number"),
    ):
        with pytest.raises(error, match=match):
            ringtrio.lowlevel.start_guest_run(
                main, run_sync_soon_threadsafe=print, done_callback=print, dump_tasks_on=signum  # type: ignore[arg-type]
            )
    assert not ringtrio.lowlevel.in_trio_run()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) == fds


def test_hang_detector_in_a_guest_run_reports_the_hang() -> None:
    """HangDetector as an instrument of a guest run hosted by asyncio: the
    guest hung (every task on an Event, no timer armed) while the host's
    loop goes on; the watchdog's request wakes the guest's helper thread,
    and the tree is taken in a pass, once."""
    trees: list[Any] = []

    async def stuck(event: ringtrio.Event) -> None:
        await event.wait()

    async def guest() -> int:
        event = ringtrio.Event()

        def on_hang(tree: Any) -> None:
            trees.append(tree)
            event.set()

        detector.on_hang = on_hang
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(stuck, event, name="stuck")
            await event.wait()
        return detector.reports

    async def host_keeps_running(loop: asyncio.AbstractEventLoop) -> int:
        # The host is busy with its own work meanwhile (a timer of the
        # host's is no timer of the guest's).
        ticks = 0
        while not trees and ticks < 6000:
            await asyncio.sleep(0.01)
            ticks += 1
        return ticks

    detector = ringtrio.testing.HangDetector(timeout=0.2)
    assert aio_host(ringtrio, guest, in_host=host_keeps_running, instruments=[detector]) == 1
    (tree,) = trees
    assert [t.waiting_for for t in tree.tasks() if t.name == "stuck"] == ["Event.wait"]


def test_hang_detector_in_a_guest_run_is_quiet_while_a_timer_is_armed() -> None:
    detector = ringtrio.testing.HangDetector(timeout=0.1)

    async def guest() -> int:
        await ringtrio.sleep(0.5)
        with ringtrio.move_on_after(0.5):
            await ringtrio.Event().wait()
        return detector.reports

    assert aio_host(ringtrio, guest, instruments=[detector]) == 0


_ANYIO_TESTS = '''
import sys

import anyio
import pytest
import sniffio


@pytest.fixture
def anyio_backend():
    return "trio"


@pytest.fixture
async def echo_port():
    async def handle(stream):
        async with stream:
            await stream.send((await stream.receive()).upper())

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        group.cancel_scope.cancel()


@pytest.mark.anyio
async def test_on_ringtrio(echo_port):
    import ringtrio
    import trio

    assert trio is ringtrio and sniffio.current_async_library() == "trio"
    assert not [name for name in sys.modules if name.split(".")[0] == "trio" and sys.modules[name] is not trio
                and not getattr(sys.modules[name], "__name__", "").startswith("ringtrio")]
    async with await anyio.connect_tcp("127.0.0.1", echo_port) as stream:
        await stream.send(b"hi")
        assert await stream.receive() == b"HI"
    with anyio.move_on_after(0.05) as scope:
        await anyio.sleep(10)
    assert scope.cancelled_caught
    assert await anyio.to_thread.run_sync(lambda: 42) == 42
    assert ringtrio.lowlevel.current_statistics().cqes_reaped > 0
'''


def test_anyio_pytest_plugin_runs_its_trio_backend_on_ringtrio_in_trio_mode(tmp_path: Any) -> None:
    """AnyIO's pytest plugin keeps one run alive across a test's fixtures
    with start_guest_run (its own host loop); in trio mode that is
    ringtrio's."""
    (tmp_path / "test_anyio_app.py").write_text(_ANYIO_TESTS)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "ringtrio", "--trio-mode", "-m", "pytest", "-q",
            "-p", "no:cacheprovider", "-p", "no:trio", "-p", "no:asyncio", "test_anyio_app.py",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
