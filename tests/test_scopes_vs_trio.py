"""Cancel scopes, nurseries, start() and the public core objects: each
scenario runs under trio and under ringtrio, and what was observed must be
the same (issue 11, "What trio's own test suite finds").

A scenario is ``async def scenario(lib, log)``; ``log`` collects
observations.  Task reprs (which carry addresses) are replaced by names the
scenario gives the tasks (``Names``), so messages can be compared whole.
"""

from __future__ import annotations

import math
import re
import signal
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing

import ringtrio
import ringtrio.testing

LIBS = (trio, ringtrio)
HANG_SECONDS = 20


class Names:
    """Task reprs -> the names a scenario gave them."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def add(self, name: str, task: Any) -> None:
        self._names[repr(task)] = name

    def __call__(self, text: object) -> object:
        if not isinstance(text, str):
            return text
        for rep, name in self._names.items():
            text = text.replace(rep, name)
        text = re.sub(r"0x[0-9a-f]+", "0x…", text)
        return text.replace("ringtrio", "LIB").replace("Trio", "LIB").replace("trio", "LIB")

    def message(self, exc: BaseException) -> object:
        """What an error says, as far as both libraries say the same: its
        first line, up to the end of the object it names ("... within its
        child <CancelScope ...>"); ringtrio goes on to explain."""
        text = str(exc).split("\n", 1)[0]
        for cut in (">. ", ">: "):
            if cut in text:
                text = text[: text.index(cut) + 1]
        return self(text)


Scenario = Callable[[ModuleType, list[Any], Names], Awaitable[None]]


def observe(lib: ModuleType, scenario: Scenario) -> list[Any]:
    log: list[Any] = []
    names = Names()

    async def main() -> None:
        names.add("MAIN", lib.lowlevel.current_task())
        names.add("INIT", lib.lowlevel.current_root_task())
        await scenario(lib, log, names)

    # A hang (these scenarios once hung ringtrio) fails the test instead of
    # the session.
    def hung(signum: int, frame: object) -> None:
        raise TimeoutError(f"{lib.__name__}.run did not finish in {HANG_SECONDS} s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        lib.run(main)
    except TimeoutError:
        raise
    except BaseException as exc:  # noqa: BLE001 - an observation
        log.append(("run raised", describe(exc, names)))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return log


def run_both(scenario: Scenario) -> list[Any]:
    logs = [observe(lib, scenario) for lib in LIBS]
    assert logs[1] == logs[0], f"\ntrio:     {logs[0]}\nringtrio: {logs[1]}"
    return logs[0]


def describe(exc: BaseException | None, names: Names, depth: int = 3) -> object:
    """An exception as comparable data: type, message, cause and context
    (to ``depth``), the members of a group."""
    if exc is None:
        return None
    if isinstance(exc, BaseExceptionGroup):
        body: object = sorted((repr(describe(e, names, depth)) for e in exc.exceptions))
    else:
        body = names.message(exc)
    if depth == 0:
        return (type(exc).__name__, body)
    return (
        type(exc).__name__,
        body,
        describe(exc.__cause__, names, depth - 1),
        describe(exc.__context__, names, depth - 1),
    )


def cancelled(exc: Any, names: Names) -> tuple[object, ...]:
    return (exc.source, names(exc.reason), names(exc.source_task), names(str(exc)))


# ---------------------------------------------------------------- cancel reasons


async def checkpoint_logging_cancel(
    lib: ModuleType, log: list[Any], names: Names, label: str, wait: str = "checkpoint"
) -> None:
    """A checkpoint (or ``sleep_forever``); the Cancelled it raises is
    logged (as ``label``) and re-raised."""
    try:
        await (lib.sleep_forever() if wait == "sleep_forever" else lib.lowlevel.checkpoint())
    except lib.Cancelled as exc:
        log.append((label, cancelled(exc, names)))
        raise


async def _reasons_deadlines(lib: ModuleType, log: list[Any], names: Names) -> None:
    for deadline in (-math.inf, lib.current_time() - 1):
        with lib.CancelScope(deadline=deadline) as cs:
            await checkpoint_logging_cancel(lib, log, names, "entered past deadline")
        log.append(cs.cancelled_caught)
    with lib.CancelScope() as cs:
        cs.deadline = -math.inf
        await checkpoint_logging_cancel(lib, log, names, "deadline set in the past")
    with lib.move_on_after(0.01):
        try:
            await lib.sleep(5)
        except lib.Cancelled as exc:
            log.append(("deadline expired", cancelled(exc, names)))
            raise
    # The first reason sticks.
    with lib.CancelScope() as cs:
        cs.cancel()
        cs.deadline = -math.inf
        await checkpoint_logging_cancel(lib, log, names, "explicit, then deadline")
    with lib.CancelScope() as cs:
        cs.deadline = -math.inf
        await lib.lowlevel.cancel_shielded_checkpoint()
        cs.cancel("late")
        await checkpoint_logging_cancel(lib, log, names, "deadline, then explicit")


def test_cancel_reason_of_deadlines_matches_trio() -> None:
    log = run_both(_reasons_deadlines)
    assert log[0] == ("entered past deadline", ("deadline", None, None, "cancelled due to deadline"))


async def _reasons_nested(lib: ModuleType, log: list[Any], names: Names) -> None:
    # An inner scope reached by an outer cancellation says why the outer
    # scope was cancelled, even after its own cancel() (trio's rule).
    with lib.CancelScope() as outer:
        with lib.CancelScope() as inner:
            outer.cancel("outer reason")
            inner.cancel("inner reason")
            await checkpoint_logging_cancel(lib, log, names, "outer first")
    with lib.CancelScope() as outer:
        outer.cancel("outer reason")
        with lib.CancelScope() as inner:
            inner.cancel("inner reason")
            await checkpoint_logging_cancel(lib, log, names, "entered inside a cancelled scope")
    with lib.CancelScope() as outer:
        with lib.CancelScope() as inner:
            inner.cancel("inner reason")
            outer.cancel("outer reason")
            await checkpoint_logging_cancel(lib, log, names, "inner first")
    with lib.CancelScope() as outer:
        with lib.CancelScope(shield=True) as inner:
            outer.cancel("outer reason")
            await lib.lowlevel.checkpoint()
            inner.shield = False
            await checkpoint_logging_cancel(lib, log, names, "shield dropped")


def test_cancel_reason_of_nested_scopes_matches_trio() -> None:
    run_both(_reasons_nested)


async def _reasons_nursery(lib: ModuleType, log: list[Any], names: Names) -> None:
    async def sleeper(label: str) -> None:
        await checkpoint_logging_cancel(lib, log, names, label, "sleep_forever")

    # The nursery's body raises: the children hear it from the owner.
    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(sleeper, "body raised")
            await lib.testing.wait_all_tasks_blocked()
            raise ValueError("in the body")
    except BaseExceptionGroup as group:
        log.append(describe(group, names))

    # A child raises: its siblings and the waiting body hear it from the child.
    async def fails(exc: BaseException) -> None:
        names.add("FAILING_CHILD", lib.lowlevel.current_task())
        await lib.testing.wait_all_tasks_blocked()
        raise exc

    for exc in (KeyError("in a child"), KeyboardInterrupt()):
        mark = len(log)
        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(fails, exc)
                nursery.start_soon(sleeper, "sibling of the failing child")
                try:
                    await lib.sleep_forever()
                except lib.Cancelled as exc:
                    log.append(("body, child raised", cancelled(exc, names)))
                    raise
        except BaseExceptionGroup as group:
            log.append(describe(group, names))
        # The body and the sibling hear of it in either order (trio
        # shuffles runnable tasks).
        log[mark:] = sorted(log[mark:], key=repr)

    # start(): the child fails before started(); start() raises it, and
    # the nursery's body (where start() was awaited) is what failed.
    async def fails_to_start(task_status: Any) -> None:
        raise ValueError("before started()")

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(sleeper, "start() failed")
            await lib.testing.wait_all_tasks_blocked()
            await nursery.start(fails_to_start)
    except BaseExceptionGroup as group:
        log.append(describe(group, names))

    # Shutdown: system tasks hear it from the run's init task.
    lib.lowlevel.spawn_system_task(sleeper, "system task at shutdown")


def test_cancel_reason_of_nurseries_matches_trio() -> None:
    log = run_both(_reasons_nursery)
    assert log[0] == (
        "body raised",
        (
            "nursery",
            "Code block inside nursery contextmanager raised exception ValueError('in the body')",
            "MAIN",
            "cancelled due to nursery with reason \"Code block inside nursery contextmanager "
            "raised exception ValueError('in the body')\" from task MAIN",
        ),
    )
    assert log[-1][0] == "system task at shutdown"
    assert log[-1][1][:3] == ("shutdown", "main task done, shutting down system tasks", "INIT")


async def _reason_keyboard_interrupt(lib: ModuleType, log: list[Any], names: Names) -> None:
    # Ctrl-C while the main task waits for its nursery: the children are
    # cancelled "due to KeyboardInterrupt" from the main task.
    async def sleeper() -> None:
        try:
            await lib.sleep_forever()
        except lib.Cancelled as exc:
            log.append(cancelled(exc, names))
            raise

    @lib.lowlevel.enable_ki_protection
    async def interrupt() -> None:
        await lib.testing.wait_all_tasks_blocked()
        signal.raise_signal(signal.SIGINT)

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            nursery.start_soon(interrupt)
    except BaseExceptionGroup as group:
        log.append(describe(group, names))


def test_cancel_reason_of_keyboard_interrupt_matches_trio() -> None:
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.fail("this test needs Python's own SIGINT handler installed")
    log = run_both(_reason_keyboard_interrupt)
    assert log[0][:3] == ("KeyboardInterrupt", None, "MAIN")


# ---------------------------------------------------------------- start()


async def _start_errors(lib: ModuleType, log: list[Any], names: Names) -> None:
    async def raises_key_error(task_status: Any) -> None:
        raise KeyError("oops")

    async def raises_with_cause_and_context(task_status: Any) -> None:
        exc = ValueError("foo")
        exc.__cause__ = SyntaxError("bar")
        exc.__context__ = TypeError("baz")
        raise exc

    async def raises_while_handling(task_status: Any) -> None:
        try:
            raise OSError("first")
        except OSError:
            raise KeyError("second")  # noqa: B904 - the context is the point

    async def raises_a_group(task_status: Any) -> None:
        raise ExceptionGroup("my group", [ValueError()])

    async def raises_keyboard_interrupt(task_status: Any) -> None:
        raise KeyboardInterrupt

    async def returns(task_status: Any) -> None:
        return

    async def started_twice(task_status: Any) -> None:
        task_status.started()
        task_status.started()

    for child in (
        raises_key_error,
        raises_with_cause_and_context,
        raises_while_handling,
        raises_a_group,
        raises_keyboard_interrupt,
        returns,
        started_twice,
    ):
        # What start() raises, seen inside the nursery and out of it.
        try:
            async with lib.open_nursery() as nursery:
                try:
                    await nursery.start(child)
                except BaseException as exc:
                    log.append((child.__name__, "start() raised", describe(exc, names)))
                    raise
        except BaseException as exc:  # noqa: BLE001 - an observation
            log.append((child.__name__, "nursery raised", describe(exc, names)))

    async with lib.open_nursery() as closed:
        pass
    for call in ("start", "start_soon"):
        try:
            if call == "start":
                await closed.start(returns)
            else:
                closed.start_soon(returns)
        except RuntimeError as exc:
            log.append(("closed nursery", call, describe(exc, names)))


def test_start_errors_match_trio() -> None:
    log = run_both(_start_errors)
    assert ("raises_with_cause_and_context", "start() raised",
            ("ValueError", "foo", ("SyntaxError", "bar", None, None), ("TypeError", "baz", None, None))) in log


async def _start_child_spawns_in_the_private_nursery(lib: ModuleType, log: list[Any], names: Names) -> None:
    async def error() -> None:
        raise ValueError

    async def spawns_in_old_nursery(task_status: Any) -> None:
        old_nursery = lib.lowlevel.current_task().parent_nursery
        old_nursery.start_soon(error)
        old_nursery.start_soon(error)

    async with lib.open_nursery() as nursery:
        try:
            await nursery.start(spawns_in_old_nursery)
        except Exception as exc:  # noqa: BLE001 - an observation
            # The message is each library's own; the type and the cause agree.
            log.append((type(exc).__name__.replace("Ringtrio", "Trio"), describe(exc.__cause__, names)))


def test_start_child_spawning_in_the_private_nursery_is_an_internal_error_like_trio() -> None:
    log = run_both(_start_child_spawns_in_the_private_nursery)
    assert log[0][0] == "TrioInternalError"


# ---------------------------------------------------------------- misnesting
# trio's test_run.py scenarios: scopes and nurseries exited out of order, or
# from the wrong task.  The error names the mistake; what was left open stays
# cancelled, its tasks finish, and nothing hangs.


async def _scope_exited_before_its_child(lib: ModuleType, log: list[Any], names: Names) -> None:
    outer = lib.CancelScope()
    inner = lib.CancelScope()
    with ExitStack() as stack:
        stack.enter_context(outer)
        with inner:
            try:
                stack.close()
            except RuntimeError as exc:
                log.append(describe(exc, names))
            # Leaving the abandoned inner scope raises nothing more.
        log.append(("inner left", inner.cancelled_caught))
    log.append(await checkpoint_result(lib))


async def checkpoint_result(lib: ModuleType) -> str:
    try:
        await lib.lowlevel.checkpoint()
    except lib.Cancelled:
        return "still cancelled"
    return "no longer cancelled"


def test_scope_exited_before_its_child_matches_trio() -> None:
    log = run_both(_scope_exited_before_its_child)
    assert log[0][1].startswith("Cancel scope stack corrupted: attempted to exit")
    assert log[-1] == "no longer cancelled"


async def _scope_exited_over_a_nursery(lib: ModuleType, log: list[Any], names: Names) -> None:
    async def sleeper(label: str) -> None:
        await checkpoint_logging_cancel(lib, log, names, label, "sleep_forever")

    async def sleeper_in_scope(label: str) -> None:
        with lib.CancelScope():
            await sleeper(label)

    # The scope around a nursery is exited from inside the nursery: its
    # tasks are cancelled "due to unknown with reason 'misnesting'".
    mark = len(log)
    with ExitStack() as stack:
        stack.enter_context(lib.CancelScope())
        async with lib.open_nursery() as nursery:
            nursery.start_soon(sleeper, "child")
            nursery.start_soon(sleeper_in_scope, "child in its own scope")
            await lib.testing.wait_all_tasks_blocked()
            try:
                stack.close()
            except RuntimeError as exc:
                log.append(describe(exc, names))
    log[mark:] = sorted(log[mark:], key=repr)

    # A nursery's own scope exited under it: each child fails with "closed
    # before the task exited", and the nursery's exit says its scope was
    # exited already.
    mark = len(log)
    manager = lib.open_nursery()
    nursery = await manager.__aenter__()
    nursery.start_soon(sleeper, "child")
    nursery.start_soon(sleeper_in_scope, "child in its own scope")
    nursery.start_soon(lib.sleep_forever)
    await lib.testing.wait_all_tasks_blocked()
    nursery.cancel_scope.__exit__(None, None, None)
    try:
        await manager.__aexit__(None, None, None)
    except RuntimeError as exc:
        log.append(describe(exc, names))
    log[mark:] = sorted(log[mark:], key=repr)


def test_scope_exited_over_a_nursery_matches_trio() -> None:
    log = run_both(_scope_exited_over_a_nursery)
    assert ("child", ("unknown", "misnesting", None, "cancelled due to unknown with reason 'misnesting'")) in log


async def _scope_exited_from_another_task(lib: ModuleType, log: list[Any], names: Names) -> None:
    async def enters(task_status: Any) -> None:
        names.add("CHILD", lib.lowlevel.current_task())
        with lib.CancelScope() as scope:
            task_status.started(scope)
            await lib.sleep_forever()

    async with lib.open_nursery() as nursery:
        scope = await nursery.start(enters)
        try:
            scope.__exit__(None, None, None)
        except RuntimeError as exc:
            log.append(describe(exc, names))
        log.append(repr(scope).split(", ", 1)[1])
        scope.cancel()


def test_scope_exited_from_another_task_matches_trio() -> None:
    log = run_both(_scope_exited_from_another_task)
    assert log[-1] == "active>"


async def _task_exits_with_its_nursery_open(lib: ModuleType, log: list[Any], names: Names) -> None:
    async def opens_and_leaves() -> None:
        names.add("CHILD", lib.lowlevel.current_task())
        inner = await lib.open_nursery().__aenter__()
        inner.start_soon(lib.sleep, 1)

    try:
        async with lib.open_nursery() as outer:
            outer.start_soon(opens_and_leaves)
    except BaseExceptionGroup as group:
        log.append(describe(group, names))


def test_task_exiting_with_its_nursery_open_matches_trio() -> None:
    log = run_both(_task_exits_with_its_nursery_open)
    assert "Nursery stack corrupted: Nursery surrounding CHILD was closed before the task exited" in log[0][1][0]


async def _main_exits_with_an_inner_nursery_open(lib: ModuleType, log: list[Any], names: Names) -> None:
    async with lib.open_nursery():
        await lib.open_nursery().__aenter__()


def test_nursery_exited_with_an_inner_one_open_matches_trio() -> None:
    log = run_both(_main_exits_with_an_inner_nursery_open)
    assert log == [
        (
            "run raised",
            (
                "RuntimeError",
                "Nursery stack corrupted: Nursery surrounding MAIN was closed before the task exited",
                None,
                ("AssertionError", "Nursery misnesting detected!", None, None),
            ),
        )
    ]


async def _exit_stack_outlives_the_task(lib: ModuleType, log: list[Any], names: Names) -> None:
    # AsyncExitStack.enter_async_context run as a task: the task enters a
    # nursery and exits; the main task exits that nursery later.
    async def started_sleeper(task_status: Any) -> None:
        task_status.started()
        await lib.sleep_forever()

    async def unstarted_task() -> None:
        await lib.lowlevel.checkpoint()

    @asynccontextmanager
    async def makes_a_nursery() -> AsyncIterator[None]:
        async with lib.open_nursery() as nursery:
            await nursery.start(started_sleeper)
            nursery.start_soon(unstarted_task)
            yield

    try:
        async with AsyncExitStack() as stack, lib.open_nursery() as nursery:
            nursery.start_soon(stack.enter_async_context, makes_a_nursery())
    except BaseExceptionGroup as group:
        log.append(describe(group, names))


def test_exit_stack_outliving_its_task_matches_trio() -> None:
    log = run_both(_exit_stack_outlives_the_task)
    assert "Nursery stack corrupted" in repr(log)


def test_children_of_an_abandoned_nursery_clean_up_and_report() -> None:
    # ringtrio's side of trio's test_asyncexitstack_nursery_misnest_cleanup:
    # the abandoned child is cancelled, runs its cleanup inside the run, and
    # its error joins the group of the task that exits its nursery (trio
    # drops it when it comes late; see "Differences from trio").
    finally_ran: list[str] = []

    async def main() -> None:
        async def cleans_up() -> None:
            try:
                await ringtrio.lowlevel.checkpoint()
            finally:
                finally_ran.append(ringtrio.lowlevel.current_task().name)
                raise ValueError("from the abandoned child's cleanup")

        @asynccontextmanager
        async def makes_a_nursery() -> AsyncIterator[None]:
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(cleans_up)
                yield

        async with AsyncExitStack() as stack, ringtrio.open_nursery() as nursery:
            nursery.start_soon(stack.enter_async_context, makes_a_nursery())

    with pytest.raises(BaseExceptionGroup) as info:
        ringtrio.run(main)
    assert len(finally_ran) == 1
    corrupted, lost = info.value.exceptions
    assert isinstance(corrupted, ExceptionGroup)
    assert "Nursery stack corrupted" in str(corrupted.exceptions[0])
    assert isinstance(lost, ValueError)
    assert isinstance(lost.__context__, ringtrio.Cancelled)
    assert lost.__context__.reason == (
        "Parent Task exited prematurely, abandoning this nursery without exiting it properly."
    )
