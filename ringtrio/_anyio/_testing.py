"""The test runner AnyIO's pytest plugin drives (``anyio_backend = "ringtrio"``).

The plugin calls the runner once per async fixture and test, from plain
synchronous pytest code, and every call must run in the *same* event loop:
a fixture may start a server in a task group and yield it to the test,
whose tasks must still be there.

So the run is a guest run (``lowlevel.start_guest_run``) and this runner is
its host loop, the simplest there is: a queue of the callbacks the run asks
for, which a call drains until its job's outcome is in.  The run's main
task takes one job at a time from a memory channel and runs it, so context
variables a fixture sets are seen by the test (as AnyIO's other runners do).
Between two calls nothing drains the queue: the run is paused between two
passes, with everything in it (tasks, sockets, ops in the kernel);
completions that arrive meanwhile wait in the ring.  Everything runs in the
calling thread (the main thread under pytest), so signal handlers,
``threading.main_thread()`` checks and Ctrl-C behave as in any ringtrio
program: a Ctrl-C while a call waits here (ringtrio's own, protected code)
goes to the main task, i.e. to the job, and comes out of the call.
"""

from __future__ import annotations

import queue
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import outcome
from anyio.abc import TestRunner as AnyioTestRunner

import ringtrio
from ringtrio.lowlevel import in_ringtrio_task, start_guest_run

T = TypeVar("T")

# A job: the function, its arguments, and the list its outcome goes into.
_Job = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], dict[str, Any], list[outcome.Outcome[Any]]]


class TestRunner(AnyioTestRunner):
    def __init__(self, **options: Any) -> None:
        # ringtrio.run's keyword arguments (clock=, instruments=, ...), for
        # the guest run.
        self._options = options
        # The host loop: what the run asks to have called, from any thread.
        self._callbacks: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        # Where jobs go; set by the main task once it is ready for them.
        self._jobs: ringtrio.MemorySendChannel[_Job] | None = None
        # What the run ended with (set by its done_callback).
        self._ended: outcome.Outcome[Any] | None = None

    # -- inside the run ---------------------------------------------------

    async def _serve(self) -> None:
        send, receive = ringtrio.open_memory_channel[_Job](1)
        self._jobs = send
        with receive:
            async for func, args, kwargs, result in receive:
                result.append(await outcome.acapture(func, *args, **kwargs))

    def _run_ended(self, run_outcome: outcome.Outcome[Any]) -> None:
        self._ended = run_outcome
        self._jobs = None

    # -- the host loop, in pytest's code ------------------------------------

    def _pump(self, done: Callable[[], bool]) -> None:
        """Call what the run asks for until ``done()`` or the run is over."""
        get = self._callbacks.get
        while not done() and self._ended is None:
            get()()

    def _ended_unexpectedly(self) -> RuntimeError:
        error = RuntimeError("the ringtrio run behind AnyIO's test runner ended unexpectedly")
        if isinstance(self._ended, outcome.Error):
            error.__cause__ = self._ended.error
        return error

    def _call(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        if self._jobs is None:
            if self._ended is not None:
                raise self._ended_unexpectedly()
            start_guest_run(
                self._serve,
                run_sync_soon_threadsafe=self._callbacks.put,
                done_callback=self._run_ended,
                **self._options,
            )
            self._pump(lambda: self._jobs is not None)
            if self._jobs is None:
                raise self._ended_unexpectedly()
        result: list[outcome.Outcome[Any]] = []
        # (The buffer is empty: the main task took the last job before
        # running it.)
        self._jobs.send_nowait((func, args, kwargs, result))
        self._pump(lambda: bool(result))
        if not result:
            raise self._ended_unexpectedly()
        return result[0].unwrap()  # type: ignore[no-any-return]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: types.TracebackType | None,
    ) -> None:
        if self._jobs is None:
            return  # never started, or already over (and said so)
        # The main task returns, the run shuts down (cancelling what the
        # fixtures left running) and reports its end; an error there is
        # raised here, as ringtrio.run would raise it.
        self._jobs.close()
        self._pump(lambda: False)
        ended, self._ended = self._ended, None
        assert ended is not None
        ended.unwrap()

    def is_running(self) -> bool:
        # True only while a job runs: between two passes, and so between
        # jobs, no ringtrio task is current.
        return in_ringtrio_task()

    def run_asyncgen_fixture(
        self,
        fixture_func: Callable[..., AsyncGenerator[T, Any]],
        kwargs: dict[str, Any],
    ) -> Iterable[T]:
        agen = fixture_func(**kwargs)
        value = self._call(agen.asend, None)
        yield value
        try:
            self._call(agen.asend, None)
        except StopAsyncIteration:
            pass
        else:
            self._call(agen.aclose)
            raise RuntimeError("Async generator fixture did not stop")

    def run_fixture(
        self,
        fixture_func: Callable[..., Coroutine[Any, Any, T]],
        kwargs: dict[str, Any],
    ) -> T:
        return self._call(fixture_func, **kwargs)

    def run_test(
        self, test_func: Callable[..., Coroutine[Any, Any, Any]], kwargs: dict[str, Any]
    ) -> None:
        self._call(test_func, **kwargs)
