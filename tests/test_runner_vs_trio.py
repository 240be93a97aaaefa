"""The run loop at its edges, run under trio and under ringtrio and compared.

Each test builds one scenario as a plain function of the library under test
(``lib`` is ``trio`` or ``ringtrio``) that calls ``lib.run`` itself -- so a
scenario may pick its clock, its instruments, or make several runs -- and
returns what it observed.  ``same_under_both`` runs it under each library and
asserts the observations are equal: trio is the oracle.

Observations never depend on the order in which sibling tasks run (trio
shuffles each batch), and nothing is timed beyond generous bounds.  A hang
(the faults some of these pinned) is turned into a failure by an alarm.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import inspect
import logging
import math
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.abc
import trio.testing

import ringtrio
import ringtrio.abc
import ringtrio.testing

LIBS = (trio, ringtrio)
HANG_SECONDS = 20


class _Hung(BaseException):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Hung(f"the scenario did not finish within {HANG_SECONDS} s")


def observe(scenario: Callable[[ModuleType], Any], lib: ModuleType) -> Any:
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        return scenario(lib)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def same_under_both(scenario: Callable[[ModuleType], Any]) -> Any:
    seen = [observe(scenario, lib) for lib in LIBS]
    assert seen[0] == seen[1], f"trio: {seen[0]!r}\nringtrio: {seen[1]!r}"
    return seen[1]


def _testing_of(lib: ModuleType) -> Any:
    return trio.testing if lib is trio else ringtrio.testing


def outcome_name(exc: BaseException | None) -> Any:
    """"ok", an exception's type name, or (group type, sorted children)."""
    if exc is None:
        return "ok"
    if isinstance(exc, BaseExceptionGroup):
        return (type(exc).__name__, tuple(sorted((outcome_name(e) for e in exc.exceptions), key=repr)))
    return type(exc).__name__


# --------------------------------------------------------------------------
# Deadlines beyond what int64 nanoseconds can hold (issue 11, item 4)
# --------------------------------------------------------------------------

# 1e10 s is past the ~292 years int64 ns can count; 1e300 and inf are far
# past it; -1e300 is a deadline long gone.
FAR_DEADLINES = [1e10, 1e300, math.inf, -1e300]


async def _ring_op_wait(lib: ModuleType) -> None:
    # A receive that has to wait (a ring op under ringtrio), fed by a sibling.
    a, b = lib.socket.socketpair()
    with a, b:

        async def feed() -> None:
            await lib.sleep(0.02)
            await b.send(b"x")

        async with lib.open_nursery() as nursery:
            nursery.start_soon(feed)
            assert await a.recv(1) == b"x"


async def _thread_wait(lib: ModuleType) -> None:
    await lib.to_thread.run_sync(time.sleep, 0.02)


async def _event_wait(lib: ModuleType) -> None:
    event = lib.Event()

    async def setter() -> None:
        await lib.sleep(0.02)
        event.set()

    async with lib.open_nursery() as nursery:
        nursery.start_soon(setter)
        await event.wait()


async def _sleep_wait(lib: ModuleType) -> None:
    await lib.sleep(0.02)


WAITS = {
    "ring op": _ring_op_wait,
    "thread": _thread_wait,
    "event": _event_wait,
    "sleep": _sleep_wait,
}


def _absolute(lib: ModuleType, offset: float) -> float:
    # A deadline `offset` seconds from now, or -1e300 itself.
    return lib.current_time() + offset if offset > 0 else offset


@pytest.mark.parametrize("wait", list(WAITS))
def test_far_deadlines_around_every_kind_of_wait(wait: str) -> None:
    """A scope whose deadline is beyond int64 nanoseconds (or long past)
    around a wait that ends by itself: the run neither crashes nor hangs;
    the far ones never fire, the past one cancels at once."""

    def scenario(lib: ModuleType) -> list[Any]:
        log: list[Any] = []

        async def main() -> None:
            for offset in FAR_DEADLINES:
                # The deadline given at construction, set on an entered
                # scope, and through fail_at.
                with lib.CancelScope(deadline=_absolute(lib, offset)) as cs:
                    await WAITS[wait](lib)
                log.append(("CancelScope", offset, cs.cancelled_caught))
                with lib.CancelScope() as cs:
                    cs.deadline = _absolute(lib, offset)
                    await WAITS[wait](lib)
                log.append(("deadline set inside", offset, cs.cancelled_caught))
                try:
                    with lib.fail_at(_absolute(lib, offset)):
                        await WAITS[wait](lib)
                except lib.TooSlowError:
                    log.append(("fail_at", offset, "TooSlowError"))
                else:
                    log.append(("fail_at", offset, "ok"))
                if offset > 0:
                    with lib.move_on_after(offset) as cs:
                        await WAITS[wait](lib)
                    log.append(("move_on_after", offset, cs.cancelled_caught))

        lib.run(main)
        return log

    same_under_both(scenario)


def test_far_sleeps_end_by_cancellation() -> None:
    """sleep() and sleep_until() for 1e10 s, 1e300 s and inf wait until
    cancelled; sleep_until(-1e300) returns at once; sleep(-1e300) is a
    ValueError."""

    def scenario(lib: ModuleType) -> list[Any]:
        log: list[Any] = []

        async def main() -> None:
            for offset in FAR_DEADLINES:
                if offset > 0:
                    with lib.move_on_after(0.02) as cs:
                        await lib.sleep(offset)
                    log.append(("sleep", offset, cs.cancelled_caught))
                else:
                    try:
                        await lib.sleep(offset)
                    except ValueError:
                        log.append(("sleep", offset, "ValueError"))
                with lib.move_on_after(0.02) as cs:
                    await lib.sleep_until(_absolute(lib, offset))
                log.append(("sleep_until", offset, cs.cancelled_caught))

        lib.run(main)
        return log

    same_under_both(scenario)


def test_far_deadlines_under_mock_clock() -> None:
    """Under MockClock the wait timeout comes from the clock
    (deadline_to_sleep_time): far deadlines with a clock at real speed, and
    autojumps across them."""

    def scenario(lib: ModuleType) -> list[Any]:
        log: list[Any] = []
        MockClock = _testing_of(lib).MockClock

        async def at_real_speed() -> None:
            for offset in FAR_DEADLINES:
                with lib.CancelScope(deadline=_absolute(lib, offset)) as cs:
                    for wait in WAITS.values():
                        await wait(lib)
                log.append(("rate 1", offset, cs.cancelled_caught))

        lib.run(at_real_speed, clock=MockClock(rate=1.0))

        async def autojumping() -> None:
            for offset in (1e10, 1e300):
                before = lib.current_time()
                await lib.sleep(offset)
                log.append(("autojump sleep", offset, lib.current_time() - before >= offset))
                with lib.move_on_after(offset) as cs:
                    await lib.sleep_forever()
                log.append(("autojump scope", offset, cs.cancelled_caught))

        lib.run(autojumping, clock=MockClock(autojump_threshold=0))
        return log

    same_under_both(scenario)


# --------------------------------------------------------------------------
# Idle detection and MockClock's autojump
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cushion", [0.0, 0.05])
def test_wait_all_tasks_blocked_takes_priority_over_autojump(cushion: float) -> None:
    """MockClock(autojump_threshold=0) with a task in
    wait_all_tasks_blocked(cushion): the waiter wakes first, without the
    clock jumping; only then does the clock jump to the sleeper's deadline.
    (With cushion > 0 ringtrio used to jump forever at 100% CPU.)"""

    def scenario(lib: ModuleType) -> list[Any]:
        record: list[Any] = []
        testing = _testing_of(lib)

        async def sleeper() -> None:
            await lib.sleep(100)
            record.append(("yawn", lib.current_time()))

        async def waiter() -> None:
            await testing.wait_all_tasks_blocked(cushion)
            record.append(("waiter woke", lib.current_time()))
            await lib.sleep(1000)
            record.append(("waiter done", lib.current_time()))

        async def main() -> None:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(sleeper)
                nursery.start_soon(waiter)

        lib.run(main, clock=testing.MockClock(autojump_threshold=0))
        return record

    assert same_under_both(scenario) == [
        ("waiter woke", 0.0),
        ("yawn", 100.0),
        ("waiter done", 1000.0),
    ]


# --------------------------------------------------------------------------
# run_sync_soon and system tasks: when callbacks run, how errors leave run()
# --------------------------------------------------------------------------


def _run_error(lib: ModuleType, main: Callable[[], Any]) -> tuple[str, Any]:
    """(what run() raised, the structure of its __cause__)."""
    try:
        lib.run(main)
    except BaseException as exc:  # noqa: BLE001 - the observation
        internal = lib.TrioInternalError
        name = "InternalError" if isinstance(exc, internal) else type(exc).__name__
        return name, outcome_name(exc.__cause__)
    return "returned", ""


def test_run_sync_soon_callback_requeuing_itself_lets_the_run_end() -> None:
    """A callback that queues itself again runs once per pass: the tasks
    still run, the run ends, and the callback's last attempt to queue itself
    gets RunFinishedError.  (ringtrio ran it in a loop forever.)"""

    def scenario(lib: ModuleType) -> list[Any]:
        record: list[Any] = []
        token: Any = None

        def naughty(i: int) -> None:
            try:
                token.run_sync_soon(naughty, i + 1)
            except lib.RunFinishedError:
                record.append(("run finished", "after the main task's 20 checkpoints", i >= 19))

        async def main() -> None:
            nonlocal token
            token = lib.lowlevel.current_trio_token()
            token.run_sync_soon(naughty, 0)
            record.append("main started")
            for _ in range(20):
                await lib.lowlevel.checkpoint()

        lib.run(main)
        return record

    same_under_both(scenario)


def test_run_sync_soon_callback_that_raises_cancels_the_run() -> None:
    """A callback that raises is a crash of the run (InternalError, its error
    under the init task's two nurseries) that first cancels the main task;
    the callbacks queued after it still run."""

    def scenario(lib: ModuleType) -> tuple[Any, ...]:
        record: set[str] = set()

        async def main() -> None:
            token = lib.lowlevel.current_trio_token()
            token.run_sync_soon(lambda: {}["nope"])
            token.run_sync_soon(lambda: record.add("2nd callback ran"))
            try:
                await lib.sleep_forever()
            except lib.Cancelled:
                record.add("main cancelled")
                raise

        return _run_error(lib, main), sorted(record)

    assert same_under_both(scenario) == (
        ("InternalError", ("ExceptionGroup", (("ExceptionGroup", ("KeyError",)),))),
        ["2nd callback ran", "main cancelled"],
    )


def test_run_sync_soon_callback_raising_during_shutdown() -> None:
    """Callbacks queued by an async generator's cleanup at the end of the
    run (the system nursery already closed) still run; one that raises
    crashes the run with its error under one nursery."""

    def scenario(lib: ModuleType) -> tuple[Any, ...]:
        record: list[str] = []
        saved: list[Any] = []

        async def agen() -> Any:
            token = lib.lowlevel.current_trio_token()
            try:
                yield 1
            finally:
                token.run_sync_soon(lambda: {}["nope"])
                token.run_sync_soon(lambda: record.append("2nd callback ran"))

        async def main() -> None:
            saved.append(agen())
            await saved[-1].asend(None)
            record.append("main exiting")

        return _run_error(lib, main), record

    assert same_under_both(scenario) == (
        ("InternalError", ("ExceptionGroup", ("KeyError",))),
        ["main exiting", "2nd callback ran"],
    )


def test_run_sync_soon_callbacks_after_the_main_task_crashed() -> None:
    def scenario(lib: ModuleType) -> tuple[Any, ...]:
        record: list[str] = []

        async def main() -> None:
            lib.lowlevel.current_trio_token().run_sync_soon(lambda: record.append("ran"))
            raise ValueError("main failed")

        return _run_error(lib, main), record

    assert same_under_both(scenario) == (("ValueError", "ok"), ["ran"])


async def _crasher_key() -> None:
    raise KeyError


async def _crasher_value() -> None:
    raise ValueError


SYSTEM_TASK_CRASHES = ["single", "group", "plus Cancelled", "KeyboardInterrupt"]


@pytest.mark.parametrize("kind", SYSTEM_TASK_CRASHES)
def test_system_task_crash(kind: str) -> None:
    """A system task that raises cancels the run (the main task too) and
    run() raises InternalError from the exception group of the init task's
    nurseries; errors are not reported twice or in another order."""

    def scenario(lib: ModuleType) -> tuple[Any, ...]:
        record: list[str] = []

        async def in_nursery(*fns: Any) -> None:
            async with lib.open_nursery() as nursery:
                for fn in fns:
                    nursery.start_soon(fn)

        async def raise_after_cancel() -> None:
            try:
                await lib.sleep_forever()
            except lib.Cancelled:
                raise ValueError from None

        async def raise_ki() -> None:
            raise KeyboardInterrupt

        system = {
            "single": (_crasher_key,),
            "group": (in_nursery, _crasher_key, _crasher_value),
            "plus Cancelled": (in_nursery, raise_after_cancel, lib.sleep_forever),
            "KeyboardInterrupt": (raise_ki,),
        }[kind]

        async def main() -> None:
            lib.lowlevel.spawn_system_task(*system)
            if kind == "plus Cancelled":
                return  # the shutdown's cancel makes it raise
            try:
                await lib.sleep_forever()
            except lib.Cancelled:
                record.append("main cancelled")
                raise

        return _run_error(lib, main), record

    same_under_both(scenario)


# --------------------------------------------------------------------------
# Async generators abandoned or left alive (issue 11: asyncgen finalization)
# --------------------------------------------------------------------------


def _collect() -> None:
    for _ in range(4):
        gc.collect()


class _Records(logging.Handler):
    """The messages of one logger, while installed."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self.messages.append(f"{type(exc).__name__}: {record.getMessage()}")


@contextlib.contextmanager
def _logged(lib: ModuleType) -> Iterator[_Records]:
    logger = logging.getLogger(
        "trio.async_generator_errors" if lib is trio else "ringtrio.async_generator_errors"
    )
    handler = _Records()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_abandoned_and_outliving_async_generators_are_closed_cancelled() -> None:
    """An abandoned generator is closed in a system task (with a
    ResourceWarning), one alive at the end of the run in the init task; both
    cleanups run in a cancelled scope (deadline -inf, an await raises
    Cancelled).  Exhausted or aclose()d generators are untouched."""

    def scenario(lib: ModuleType) -> list[Any]:
        collected: list[Any] = []
        saved: list[Any] = []

        async def example(cause: str) -> Any:
            try:
                with contextlib.suppress(GeneratorExit):
                    yield 42
                await lib.lowlevel.checkpoint()
            except lib.Cancelled:
                name = lib.lowlevel.current_task().name
                collected.append((
                    cause,
                    "cancelled",
                    "abandoned" in name or name == "<init>",
                    lib.current_effective_deadline(),
                ))
                with contextlib.suppress(lib.Cancelled):
                    await lib.lowlevel.checkpoint()
                    collected.append("a second await was not cancelled")
            else:
                collected.append((cause, "not cancelled", lib.current_effective_deadline()))

        async def main() -> None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert await example("abandoned").asend(None) == 42
                _collect()
            collected.append(("warned", [
                (w.category.__name__, "collected before" in str(w.message)) for w in caught
            ]))
            await _testing_of(lib).wait_all_tasks_blocked()
            aiter_ = example("exhausted by aclose")
            assert await aiter_.asend(None) == 42
            await aiter_.aclose()
            async for _ in example("exhausted by async for"):
                pass
            saved.append(example("outlived the run"))
            await saved[-1].asend(None)

        lib.run(main)
        collected.append([agen.ag_frame is None for agen in saved])
        return collected

    same_under_both(scenario)


@pytest.mark.parametrize("error", ["ValueError", "KeyboardInterrupt", "BaseException"])
@pytest.mark.parametrize("when", ["abandoned", "at the end of the run"])
def test_async_generator_cleanup_that_raises_is_logged(error: str, when: str) -> None:
    """Whatever an async generator's cleanup raises, even a BaseException,
    is logged and the run goes on (ringtrio crashed with "system task ...
    raised" for a BaseException)."""

    def scenario(lib: ModuleType) -> tuple[Any, ...]:
        record: list[str] = []
        saved: list[Any] = []

        async def agen() -> Any:
            try:
                yield 1
            finally:
                await lib.lowlevel.cancel_shielded_checkpoint()
                record.append("crashing")
                raise {"ValueError": ValueError, "KeyboardInterrupt": KeyboardInterrupt,
                       "BaseException": BaseException}[error]("oops")

        async def main() -> str:
            if when == "abandoned":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ResourceWarning)
                    await agen().asend(None)
                    _collect()
                await _testing_of(lib).wait_all_tasks_blocked()
            else:
                saved.append(agen())
                await saved[-1].asend(None)
            record.append("main done")
            return "returned"

        with _logged(lib) as logged:
            result = lib.run(main)
        return result, record, [
            (m.split(":")[0], "during finalization of async generator" in m)
            for m in logged.messages
        ]

    assert same_under_both(scenario)[0] == "returned"


def test_async_generators_iterated_during_shutdown_are_closed() -> None:
    """A generator whose cleanup iterates a new generator: the new one is
    closed too (ringtrio closed only those alive when shutdown began)."""

    def scenario(lib: ModuleType) -> list[str]:
        saved: list[Any] = []
        record: list[str] = []

        async def funky() -> Any:
            try:
                yield 1
            except GeneratorExit:
                record.append("cleanup 1")
                raise
            try:
                yield 2
            finally:
                record.append("cleanup 2")
                await funky().asend(None)

        async def main() -> None:
            agen = funky()
            saved.append(agen)
            assert await agen.asend(None) == 1
            assert await agen.asend(None) == 2

        lib.run(main)
        return record

    assert same_under_both(scenario) == ["cleanup 2", "cleanup 1"]


def test_interdependent_async_generators_are_closed_innermost_first() -> None:
    def scenario(lib: ModuleType) -> list[Any]:
        saved: list[Any] = []
        record: list[Any] = []

        async def innermost() -> Any:
            try:
                yield 1
            finally:
                await lib.lowlevel.cancel_shielded_checkpoint()
                record.append("innermost")

        async def outer(label: int, inner: Any) -> Any:
            try:
                yield await inner.asend(None)
            finally:
                try:
                    await inner.asend(None)
                except StopAsyncIteration:
                    record.append(label)

        async def main() -> None:
            chain = innermost()
            for label in range(20):
                chain = outer(label, chain)
            saved.append(chain)
            assert await chain.asend(None) == 1

        lib.run(main)
        return record

    assert same_under_both(scenario) == ["innermost", *range(20)]


def test_async_generators_not_first_iterated_in_a_task_are_not_ours() -> None:
    """A generator first iterated outside any task (here in an abort
    function that a deadline runs) belongs to the hooks installed before the
    run; with none, it is closed as Python would: fine if its cleanup needs
    nothing, an error printed by the garbage collector if it yields or
    awaits.  With hooks of its own installed, the program's hooks see it and
    they are back in place after the run."""

    def scenario(lib: ModuleType) -> list[Any]:
        record: list[Any] = []

        async def well_behaved() -> Any:
            yield 42

        async def yields_after_yield() -> Any:
            with contextlib.suppress(GeneratorExit):
                yield 42
            yield 100

        async def awaits_after_yield() -> Any:
            with contextlib.suppress(GeneratorExit):
                yield 42
            await lib.lowlevel.cancel_shielded_checkpoint()

        async def first_iterated_outside_a_task(agen: Any) -> None:
            def abort(raise_cancel: Any) -> Any:
                with contextlib.suppress(StopIteration):
                    abort.agen.asend(None).send(None)  # type: ignore[attr-defined]
                del abort.agen  # type: ignore[attr-defined]
                return lib.lowlevel.Abort.SUCCEEDED

            abort.agen = agen  # type: ignore[attr-defined]
            async with lib.open_nursery() as nursery:
                nursery.start_soon(lib.lowlevel.wait_task_rescheduled, abort)
                await _testing_of(lib).wait_all_tasks_blocked()
                nursery.cancel_scope.deadline = lib.current_time()

        unraisable: list[str] = []
        old_hook = sys.unraisablehook
        sys.unraisablehook = lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value}")

        async def main() -> None:
            for make in (well_behaved, yields_after_yield, awaits_after_yield):
                await first_iterated_outside_a_task(make())
                _collect()
                record.append((make.__name__, [
                    ("ignored GeneratorExit" in u, "during finalization" in u) for u in unraisable
                ]))
                unraisable.clear()

        try:
            lib.run(main)
        finally:
            sys.unraisablehook = old_hook

        def my_firstiter(agen: Any) -> None:
            record.append(("program's firstiter", agen.ag_frame.f_locals["arg"]))

        def my_finalizer(agen: Any) -> None:
            record.append(("program's finalizer", agen.ag_frame.f_locals["arg"]))

        async def example(arg: str) -> Any:
            try:
                yield 42
            finally:
                with contextlib.suppress(lib.Cancelled):
                    await lib.lowlevel.checkpoint()
                record.append(("closed in the run", arg))

        async def main2() -> None:
            await first_iterated_outside_a_task(example("theirs"))
            assert await example("ours").asend(None) == 42
            _collect()
            await _testing_of(lib).wait_all_tasks_blocked()

        old_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(my_firstiter, my_finalizer)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                lib.run(main2)
            record.append(("hooks restored", sys.get_asyncgen_hooks() == (my_firstiter, my_finalizer)))
        finally:
            sys.set_asyncgen_hooks(*old_hooks)
        return record

    same_under_both(scenario)


# --------------------------------------------------------------------------
# Which task is current in hooks, abort functions and spawned contexts
# --------------------------------------------------------------------------


INSTRUMENT_HOOKS = [
    "before_run", "after_run", "task_spawned", "task_scheduled",
    "before_task_step", "after_task_step", "task_exited",
    "before_io_wait", "after_io_wait",
]


def test_instrument_hooks_run_in_the_task_they_are_about() -> None:
    """The step hooks and task_exited run with the task current (so
    current_task() works and is that task); the run-wide and io-wait hooks
    run inside the run but in no task.  (ringtrio's before_task_step saw no
    current task.)"""

    def scenario(lib: ModuleType) -> dict[str, Any]:
        seen: dict[str, set[Any]] = {}
        L = lib.lowlevel

        class Recorder(lib.abc.Instrument):  # type: ignore[name-defined,misc]
            pass

        for hook in INSTRUMENT_HOOKS:

            def record(self: Any, *args: Any, hook: str = hook) -> None:
                task_arg = args[0] if args and isinstance(args[0], L.Task) else None
                in_task = L.in_trio_task()
                seen.setdefault(hook, set()).add((
                    L.in_trio_run(),
                    in_task if hook not in ("task_spawned", "task_scheduled") else None,
                    None if task_arg is None or not in_task or hook in ("task_spawned", "task_scheduled")
                    else L.current_task() is task_arg,
                ))

            setattr(Recorder, hook, record)

        async def main() -> None:
            await L.checkpoint()
            async with lib.open_nursery() as nursery:
                nursery.start_soon(L.checkpoint)
            await lib.sleep(0.01)

        lib.run(main, instruments=[Recorder()])
        return {hook: sorted(values, key=repr) for hook, values in seen.items()}

    assert same_under_both(scenario)["before_task_step"] == [(True, True, True)]


@pytest.mark.parametrize("instrumented", [False, True])
def test_abort_functions_run_in_the_context_that_cancels(instrumented: bool) -> None:
    """An abort function called as the task parks in an already cancelled
    scope runs in that task; one called by cancel() from another task runs
    in that other task; one called because a deadline passed runs in the
    loop, in no task.  (With an instrument installed every step takes the
    loop's instrumented path.)"""

    def scenario(lib: ModuleType) -> list[Any]:
        L = lib.lowlevel
        log: list[Any] = []

        def abort_recording(label: str, me: Any) -> Callable[[Any], Any]:
            def abort(raise_cancel: Any) -> Any:
                in_task = L.in_trio_task()
                log.append((label, L.in_trio_run(), in_task, in_task and L.current_task() is me))
                return L.Abort.SUCCEEDED

            return abort

        async def parks(label: str, scope_holder: list[Any]) -> None:
            with lib.CancelScope() as scope:
                scope_holder.append(scope)
                await L.wait_task_rescheduled(abort_recording(label, L.current_task()))

        async def main() -> None:
            me = L.current_task()
            # Parking in a scope whose deadline has passed.
            with lib.CancelScope(deadline=lib.current_time() - 1):
                await L.wait_task_rescheduled(abort_recording("parked cancelled", me))
            # After a resume with a value (the step that is not the plain one).
            await lib.to_thread.run_sync(lambda: None)
            with lib.CancelScope(deadline=lib.current_time() - 1):
                await L.wait_task_rescheduled(abort_recording("parked cancelled after a thread", me))
            async with lib.open_nursery() as nursery:
                holder: list[Any] = []
                nursery.start_soon(parks, "cancelled by another task", holder)
                await _testing_of(lib).wait_all_tasks_blocked()
                holder[0].cancel()
            async with lib.open_nursery() as nursery:
                holder = []
                nursery.start_soon(parks, "deadline passed", holder)
                await _testing_of(lib).wait_all_tasks_blocked()
                holder[0].deadline = lib.current_time()

        lib.run(main, instruments=[lib.abc.Instrument()] if instrumented else [])
        return log

    assert same_under_both(scenario) == [
        ("parked cancelled", True, True, True),
        ("parked cancelled after a thread", True, True, True),
        ("cancelled by another task", True, True, False),
        ("deadline passed", True, False, False),
    ]


def test_start_soon_copies_the_context_it_is_called_in() -> None:
    """start_soon inside Context.run gives the child a copy of that context
    (ringtrio copied the calling task's own context)."""

    def scenario(lib: ModuleType) -> list[Any]:
        var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
        seen: list[Any] = []

        async def child(label: str) -> None:
            seen.append((label, var.get()))

        async def main() -> None:
            var.set("task's")
            other = contextvars.copy_context()
            other.run(var.set, "other context's")
            async with lib.open_nursery() as nursery:
                other.run(nursery.start_soon, child, "inside Context.run")
                await _testing_of(lib).wait_all_tasks_blocked()
                nursery.start_soon(child, "plain")

        lib.run(main)
        return sorted(seen)

    assert same_under_both(scenario) == [
        ("inside Context.run", "other context's"),
        ("plain", "task's"),
    ]


# --------------------------------------------------------------------------
# SIGINT
# --------------------------------------------------------------------------


def test_sigint_handler_installed_during_the_run_is_kept() -> None:
    """run() puts back the SIGINT handler it found only if its own is still
    installed: a handler the program installed during the run stays
    (ringtrio used to clobber it)."""

    def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []

        def mine(signum: int, frame: Any) -> None:
            pass  # pragma: no cover

        async def installs() -> None:
            seen.append(("replaced the default during the run",
                         signal.getsignal(signal.SIGINT) is not signal.default_int_handler))
            signal.signal(signal.SIGINT, mine)

        async def leaves_it() -> None:
            pass

        original = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            lib.run(installs)
            seen.append(("program's handler kept", signal.getsignal(signal.SIGINT) is mine))
            signal.signal(signal.SIGINT, signal.default_int_handler)
            lib.run(leaves_it)
            seen.append(("default restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler))
        finally:
            signal.signal(signal.SIGINT, original)
        return seen

    assert same_under_both(scenario) == [
        ("replaced the default during the run", True),
        ("program's handler kept", True),
        ("default restored", True),
    ]


# --------------------------------------------------------------------------
# Instruments' hooks, Task.custom_sleep_data, Task.coro, iter_await_frames
# --------------------------------------------------------------------------


def test_instrument_hooks_are_looked_up_when_it_is_added() -> None:
    """Which hooks an instrument has is decided when it is added: a method
    assigned later is not called until the instrument is removed and added
    again; a hook that raises on lookup makes add_instrument raise and
    leaves nothing installed; one that raises when called disables that
    instrument only."""

    def scenario(lib: ModuleType) -> list[Any]:
        log: list[Any] = []
        L = lib.lowlevel

        class Null(lib.abc.Instrument):  # type: ignore[name-defined,misc]
            pass

        class EvilLookup(lib.abc.Instrument):  # type: ignore[name-defined,misc]
            @property
            def after_run(self) -> Any:
                raise ValueError("oops")

        class Broken(lib.abc.Instrument):  # type: ignore[name-defined,misc]
            def task_scheduled(self, task: Any) -> None:
                log.append("broken hook called")
                raise ValueError("broken")

        null = Null()

        async def main() -> None:
            me = L.current_task()
            steps: list[Any] = []
            null.before_task_step = steps.append  # type: ignore[method-assign]
            await L.checkpoint()
            await L.checkpoint()
            log.append(("monkeypatched, not re-added", steps.count(me)))
            L.remove_instrument(null)
            L.add_instrument(null)
            await L.checkpoint()
            await L.checkpoint()
            log.append(("re-added", steps.count(me)))
            L.remove_instrument(null)
            await L.checkpoint()
            log.append(("removed", steps.count(me)))
            evil = EvilLookup()
            try:
                L.add_instrument(evil)
            except ValueError:
                log.append("add_instrument raised")
            try:
                L.remove_instrument(evil)
            except KeyError:
                log.append("and it is not installed")
            L.add_instrument(Broken())
            await L.checkpoint()
            await L.checkpoint()

        lib.run(main, instruments=[null])
        return log

    assert same_under_both(scenario) == [
        ("monkeypatched, not re-added", 0),
        ("re-added", 2),
        ("removed", 2),
        "add_instrument raised",
        "and it is not installed",
        "broken hook called",
    ]


def test_custom_sleep_data_is_cleared_when_the_task_is_rescheduled() -> None:
    """Every way of being woken clears Task.custom_sleep_data: a checkpoint,
    a sleep, an Event, a wait on the kernel (a ring op under ringtrio)."""

    def scenario(lib: ModuleType) -> list[Any]:
        log: list[Any] = []
        L = lib.lowlevel

        async def main() -> None:
            task = L.current_task()
            log.append(("initially", task.custom_sleep_data))
            a, b = lib.socket.socketpair()
            with a, b:
                await b.send(b"x")
                event = lib.Event()
                event.set()
                waits = {
                    "checkpoint": L.checkpoint,
                    "sleep": lambda: lib.sleep(0.001),
                    "set Event": event.wait,
                    "socket receive": lambda: a.recv(1),
                }
                for label, wait in waits.items():
                    task.custom_sleep_data = label
                    await wait()
                    log.append((label, task.custom_sleep_data))

        lib.run(main)
        return log

    assert same_under_both(scenario) == [
        ("initially", None),
        ("checkpoint", None),
        ("sleep", None),
        ("set Event", None),
        ("socket receive", None),
    ]


async def _innermost(lib: ModuleType, event: Any) -> None:
    event.set()
    await lib.sleep_forever()


async def _middle(lib: ModuleType, event: Any) -> None:
    await _innermost(lib, event)


async def _outer(lib: ModuleType, event: Any) -> None:
    await _middle(lib, event)


async def _middle_generator(lib: ModuleType, event: Any) -> Any:
    await lib.lowlevel.checkpoint()
    yield
    await _innermost(lib, event)
    yield  # pragma: no cover


async def _outer_iterating(lib: ModuleType, event: Any) -> None:
    async for _ in _middle_generator(lib, event):
        pass


def test_iter_await_frames_walks_coroutines_and_async_generators() -> None:
    """From Task.coro down: coroutines, and async generators being iterated
    (ringtrio stopped at the generator); nothing once the task is over,
    while Task.coro still holds the finished coroutine (ringtrio set it to
    None)."""

    def scenario(lib: ModuleType) -> list[Any]:
        log: list[Any] = []

        async def main() -> None:
            for outer in (_outer, _outer_iterating):
                async with lib.open_nursery() as nursery:
                    event = lib.Event()
                    nursery.start_soon(outer, lib, event)
                    await event.wait()
                    (task,) = nursery.child_tasks
                    names = [frame.f_code.co_name for frame, _ in task.iter_await_frames()]
                    log.append(names[:3])
                    nursery.cancel_scope.cancel()
                log.append((
                    "after exit",
                    type(task.coro).__name__,
                    task.coro.cr_frame is None,
                    list(task.iter_await_frames()),
                ))

        lib.run(main)
        return log

    assert same_under_both(scenario) == [
        ["_outer", "_middle", "_innermost"],
        ("after exit", "coroutine", True, []),
        ["_outer_iterating", "_middle_generator", "_innermost"],
        ("after exit", "coroutine", True, []),
    ]


# --------------------------------------------------------------------------
# What a task ended with is not kept by the run loop


def test_a_finished_tasks_exception_is_not_held_by_the_run_loop() -> None:
    # A child ends with a group (its own nursery's); the parent catches it
    # and looks at who refers to the innermost exception.  In trio nobody
    # does.  The C step loop kept the group it handed back until its next
    # call returned, i.e. while it ran the parent (AnyIO's
    # TestRefcycles::test_exception_refcycles_parent_task).
    def scenario(lib: ModuleType) -> Any:
        class Done(Exception):
            pass

        async def child() -> None:
            async with lib.open_nursery():
                raise Done

        async def main() -> list[str]:
            try:
                async with lib.open_nursery() as nursery:
                    nursery.start_soon(child)
            except BaseExceptionGroup as group:
                exc = group.exceptions[0].exceptions[0]
                del group
            return [type(r).__name__ for r in gc.get_referrers(exc)]

        return lib.run(main)

    assert same_under_both(scenario) == []


# --------------------------------------------------------------------------
# strict_exception_groups=False is deprecated (trio 0.25)


def test_loose_exception_groups_are_deprecated_as_in_trio() -> None:
    # Given explicitly to run() or open_nursery(): one TrioDeprecationWarning
    # each (naming the argument); a nursery loose because its run is, or a
    # strict one, warns nothing.
    def scenario(lib: ModuleType) -> Any:
        async def loose_nursery() -> None:
            async with lib.open_nursery(strict_exception_groups=False):
                pass

        async def quiet_nurseries() -> None:
            async with lib.open_nursery():
                pass
            async with lib.open_nursery(strict_exception_groups=True):
                pass

        seen = []
        for fn, strict in ((quiet_nurseries, False), (loose_nursery, False), (loose_nursery, True), (quiet_nurseries, True)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                lib.run(fn, strict_exception_groups=strict)
            seen.append(
                [
                    (w.category.__name__, "strict_exception_groups=False" in str(w.message), w.filename == __file__)
                    for w in caught
                ]
            )
        return seen

    assert same_under_both(scenario) == [
        [("TrioDeprecationWarning", True, True)],
        [("TrioDeprecationWarning", True, True)] * 2,
        [("TrioDeprecationWarning", True, True)],
        [],
    ]


# --------------------------------------------------------------------------
# Objects only the run makes; the clock interface is abstract


def test_task_and_token_classes_have_no_public_constructor_as_in_trio() -> None:
    # Task, TrioToken, RunVarToken: TypeError, with or without arguments,
    # saying there is no public constructor; the run's own still work.
    def scenario(lib: ModuleType) -> Any:
        seen: list[Any] = []

        async def main() -> None:
            for name in ("Task", "TrioToken", "RunVarToken"):
                cls = getattr(lib.lowlevel, name)
                for args in ((), (object(),), (object(), object())):
                    try:
                        cls(*args)
                    except TypeError as exc:
                        seen.append((name, len(args), "has no public constructor" in str(exc)))
                    else:
                        seen.append((name, len(args), "constructed"))
            var = lib.lowlevel.RunVar("v")
            token = var.set(1)
            var.reset(token)
            seen.append(
                (
                    type(lib.lowlevel.current_task()).__name__,
                    type(lib.lowlevel.current_trio_token()).__name__,
                    type(token).__name__,
                    token.redeemed,
                )
            )

        lib.run(main)
        return seen

    assert same_under_both(scenario) == [
        (name, n, True) for name in ("Task", "TrioToken", "RunVarToken") for n in (0, 1, 2)
    ] + [("Task", "TrioToken", "RunVarToken", True)]


def test_clock_is_an_abstract_base_class_as_in_trio() -> None:
    # abc.Clock's three methods are abstract: the class itself and a
    # subclass missing one cannot be instantiated; a full one runs.
    def scenario(lib: ModuleType) -> Any:
        seen: list[Any] = [sorted(lib.abc.Clock.__abstractmethods__), inspect.isabstract(lib.abc.Clock)]

        class NoStart(lib.abc.Clock):  # type: ignore[misc,name-defined]
            def current_time(self) -> float:
                return 0.0

            def deadline_to_sleep_time(self, deadline: float) -> float:
                return 0.0

        class Full(NoStart):
            def start_clock(self) -> None:
                seen.append("started")

        for cls in (lib.abc.Clock, NoStart):
            try:
                cls()
            except TypeError as exc:
                seen.append((cls.__name__, "abstract" in str(exc)))

        async def main() -> float:
            return float(lib.current_time())

        seen.append(lib.run(main, clock=Full()))
        return seen

    assert same_under_both(scenario) == [
        ["current_time", "deadline_to_sleep_time", "start_clock"],
        True,
        ("Clock", True),
        ("NoStart", True),
        "started",
        0.0,
    ]


def test_an_instrument_that_fails_to_install_is_not_half_installed_as_in_trio() -> None:
    # A hook that is a property raising: add_instrument raises that error,
    # and none of the instrument's hooks is called afterwards (it is in no
    # hook's list), so removing it is a KeyError.
    def scenario(lib: ModuleType) -> Any:
        seen: list[Any] = []

        class Evil(lib.abc.Instrument):  # type: ignore[misc,name-defined]
            def task_exited(self, task: Any) -> None:
                seen.append("task_exited called")

            @property
            def after_run(self) -> Any:
                raise ValueError("oops")

        async def child() -> None:
            pass

        async def main() -> None:
            evil = Evil()
            try:
                lib.lowlevel.add_instrument(evil)
            except ValueError as exc:
                seen.append(("add", str(exc)))
            async with lib.open_nursery() as nursery:
                nursery.start_soon(child)
            try:
                lib.lowlevel.remove_instrument(evil)
            except KeyError:
                seen.append("remove: KeyError")

        lib.run(main)
        return seen

    assert same_under_both(scenario) == [("add", "oops"), "remove: KeyError"]
