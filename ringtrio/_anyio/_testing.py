"""The test runner AnyIO's pytest plugin drives (``anyio_backend = "ringtrio"``).

The plugin calls the runner once per async fixture and test, from plain
synchronous pytest code, and every call must run in the *same* event loop:
a fixture may start a server in a task group and yield it to the test,
whose tasks must still be there.  trio lends itself to this through its
guest mode; ringtrio has none: ``ringtrio.run`` keeps the thread until the
run is over.

So the run lives in a greenlet.  The runner's main task waits for work by
switching back to pytest's greenlet, which is a synchronous call in the
middle of a task step: the whole loop is paused there, with everything in
it (tasks, sockets, pending ops in the kernel), until the next fixture or
test switches back in with the next job.  Everything stays in the main
thread, so signal handlers, ``threading.main_thread()`` checks and Ctrl-C
behave as in any ringtrio program.  While the loop is paused nothing runs
in it, the same as between the ticks of trio's guest mode; kernel
completions that arrive meanwhile wait in the ring.

Jobs run one after another in that one task (as AnyIO's other runners do),
so context variables a fixture sets are seen by the test.
"""

from __future__ import annotations

import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import outcome
from anyio.abc import TestRunner as AnyioTestRunner

import ringtrio

T = TypeVar("T")

_Job = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], dict[str, Any]]


class _RunEnded:
    """What the run's greenlet returns when ``ringtrio.run`` is over."""


def _import_greenlet() -> Any:
    try:
        import greenlet  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RuntimeError(
            "running AnyIO tests on the ringtrio backend needs the 'greenlet' "
            "package (ringtrio's test runner keeps the run paused in a greenlet "
            "between fixtures and tests): pip install greenlet, or "
            "pip install 'ringtrio[anyio]'"
        ) from exc
    return greenlet


class TestRunner(AnyioTestRunner):
    def __init__(self, **options: Any) -> None:
        self._greenlet_module = _import_greenlet()
        self._options = options
        self._run_greenlet: Any = None
        self._host: Any = None

    # -- inside the run ---------------------------------------------------

    async def _serve(self) -> None:
        # The run's main task: hand back the previous job's outcome (None
        # the first time), take the next job; None means "finish the run".
        result: outcome.Outcome[Any] | None = None
        while True:
            job: _Job | None = self._host.switch(result)
            if job is None:
                return
            func, args, kwargs = job
            del job
            result = await outcome.acapture(func, *args, **kwargs)

    def _run(self) -> _RunEnded:
        ringtrio.run(self._serve, **self._options)
        return _RunEnded()

    # -- in pytest's greenlet -----------------------------------------------

    def _call(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        greenlet = self._greenlet_module
        if self._run_greenlet is None:
            self._host = greenlet.getcurrent()
            self._run_greenlet = greenlet.greenlet(self._run)
            # Runs until the main task first asks for a job.
            self._run_greenlet.switch()
        result = self._switch_in((func, args, kwargs))
        return result.unwrap()  # type: ignore[no-any-return]

    def _switch_in(self, job: _Job | None) -> Any:
        reply = self._run_greenlet.switch(job)
        if isinstance(reply, _RunEnded) and job is not None:
            raise RuntimeError("the ringtrio run behind AnyIO's test runner ended unexpectedly")
        return reply

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: types.TracebackType | None,
    ) -> None:
        if self._run_greenlet is not None and not self._run_greenlet.dead:
            # The main task returns, the run shuts down (cancelling what the
            # fixtures left running) and the greenlet ends.
            self._run_greenlet.switch(None)
        self._run_greenlet = None

    def is_running(self) -> bool:
        # True only while a job runs, i.e. in the run's greenlet: pytest's
        # code between jobs runs in its own greenlet.
        return (
            self._run_greenlet is not None
            and self._greenlet_module.getcurrent() is self._run_greenlet
        )

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
