"""Cancel scopes, nurseries, start() and the public core objects: each
scenario runs under trio and under ringtrio, and what was observed must be
the same (issue 11, "What trio's own test suite finds").

A scenario is ``async def scenario(lib, log)``; ``log`` collects
observations.  Task reprs (which carry addresses) are replaced by names the
scenario gives the tasks (``Names``), so messages can be compared whole.
"""

from __future__ import annotations

import gc
import math
import re
import signal
import types
import weakref
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


# ---------------------------------------------------------------- public objects


async def _weak_references(lib: ModuleType, log: list[Any], names: Names) -> None:
    send, receive = lib.open_memory_channel(0)
    objects: dict[str, Any] = {
        "Event": lib.Event(),
        "Lock": lib.Lock(),
        "StrictFIFOLock": lib.StrictFIFOLock(),
        "Semaphore": lib.Semaphore(1),
        "Condition": lib.Condition(),
        "CapacityLimiter": lib.CapacityLimiter(1),
        "ParkingLot": lib.lowlevel.ParkingLot(),
        "TrioToken": lib.lowlevel.current_trio_token(),
        "CancelScope": lib.CancelScope(),
        "Task": lib.lowlevel.current_task(),
        "RunVar": lib.lowlevel.RunVar("x"),
        "RunVarToken": lib.lowlevel.RunVar("y").set(1),
        "MemorySendChannel": send,
    }
    async with lib.open_nursery() as nursery:
        objects["Nursery"] = nursery
    for name, obj in list(objects.items()):
        if hasattr(obj, "statistics"):
            objects[f"{name}.statistics()"] = obj.statistics()
    for name, obj in sorted(objects.items()):
        try:
            alive = weakref.ref(obj)() is obj
        except TypeError as exc:
            alive = names(str(exc))
        log.append((name, alive))


def test_weak_references_match_trio() -> None:
    log = run_both(_weak_references)
    assert all(alive is True for _, alive in log), log


def _classes(lib: ModuleType) -> dict[str, type]:
    return {
        "Cancelled": lib.Cancelled,
        "CancelScope": lib.CancelScope,
        "Nursery": lib.Nursery,
        "Event": lib.Event,
        "Lock": lib.Lock,
        "StrictFIFOLock": lib.StrictFIFOLock,
        "Semaphore": lib.Semaphore,
        "Condition": lib.Condition,
        "CapacityLimiter": lib.CapacityLimiter,
        "StapledStream": lib.StapledStream,
        "ParkingLot": lib.lowlevel.ParkingLot,
        "TrioToken": lib.lowlevel.TrioToken,
        "RunVar": lib.lowlevel.RunVar,
        "RunVarToken": lib.lowlevel.RunVarToken,
        "Task": lib.lowlevel.Task,
    }


async def _final_classes(lib: ModuleType, log: list[Any], names: Names) -> None:
    for name, cls in _classes(lib).items():
        try:
            types.new_class("Mine", (cls,))
        except TypeError:
            log.append((name, "cannot be subclassed"))
        else:
            log.append((name, "subclassed"))
    # No public constructor: the runtime makes these.
    for make in (lambda: lib.Cancelled(), lambda: lib.Cancelled(source="explicit")):
        try:
            raise make()
        except TypeError:
            log.append(("Cancelled()", "TypeError"))
    async with lib.open_nursery() as nursery:
        try:
            type(nursery)(lib.lowlevel.current_task(), nursery.cancel_scope, True)
        except TypeError:
            log.append(("Nursery(...)", "TypeError"))


def test_final_classes_and_private_constructors_match_trio() -> None:
    log = run_both(_final_classes)
    assert ("CancelScope", "cannot be subclassed") in log
    assert ("Nursery(...)", "TypeError") in log


def test_final_class_error_names_the_class() -> None:
    with pytest.raises(TypeError, match=r"^ringtrio\.CancelScope does not support subclassing$"):
        types.new_class("Mine", (ringtrio.CancelScope,))
    with pytest.raises(TypeError, match="has no public constructor.*open_nursery"):
        ringtrio.Nursery()


async def _no_reference_cycles_when_a_scope_filters_cancelled(
    lib: ModuleType, log: list[Any], names: Names
) -> None:
    # trio's test_cancel_scope_exit_doesnt_create_cyclic_garbage: a child
    # cancelled by an outer scope, another that crashes; the outer scope
    # takes the Cancelled out of the nursery's group.  Nothing of it may be
    # left in reference cycles (they keep tracebacks, frames and tasks alive
    # until the cyclic collector runs).
    async def crasher() -> None:
        raise ValueError("this is a crash")

    gc.collect()
    try:
        try:
            with lib.CancelScope() as outer:
                async with lib.open_nursery() as nursery:
                    gc.collect()
                    gc.set_debug(gc.DEBUG_SAVEALL)
                    nursery.start_soon(lib.sleep_forever)
                    outer.cancel()
                    nursery.start_soon(crasher)
        except ExceptionGroup as group:
            log.append(describe(group, names))
        gc.collect()
        log.append(("objects in cycles", len(gc.garbage)))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_no_reference_cycles_when_a_scope_filters_cancelled_like_trio() -> None:
    log = run_both(_no_reference_cycles_when_a_scope_filters_cancelled)
    assert log[-1] == ("objects in cycles", 0)


async def _stapled_stream_send_eof(lib: ModuleType, log: list[Any], names: Names) -> None:
    # send_eof is looked up when called: given to the send stream after the
    # StapledStream was made, it is used.
    class Sender(lib.abc.SendStream):  # type: ignore[name-defined,misc]
        async def send_all(self, data: object) -> None:
            log.append("send_all")

        async def wait_send_all_might_not_block(self) -> None:
            pass

        async def aclose(self) -> None:
            log.append("aclose")

    class Receiver(lib.abc.ReceiveStream):  # type: ignore[name-defined,misc]
        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            return b""

        async def aclose(self) -> None:
            pass

    sender = Sender()
    stapled = lib.StapledStream(sender, Receiver())
    await stapled.send_eof()

    async def send_eof() -> None:
        log.append("send_eof")

    sender.send_eof = send_eof
    await stapled.send_eof()


def test_stapled_stream_looks_up_send_eof_when_called_like_trio() -> None:
    assert run_both(_stapled_stream_send_eof) == ["aclose", "send_eof"]


async def _loose_group_collapses_after_cancelled_is_taken_out(
    lib: ModuleType, log: list[Any], names: Names
) -> None:
    # trio's test_nursery_collapse: a loose nursery's group that is left with
    # one error once its Cancelled is split out becomes that error.
    async def raise_error() -> None:
        raise RuntimeError("test error")

    for strict in (True, False):
        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(lib.sleep_forever)
                nursery.start_soon(raise_error)
                async with lib.open_nursery(strict_exception_groups=strict) as inner:
                    inner.start_soon(lib.sleep_forever)
                    inner.start_soon(raise_error)
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            log.append((strict, describe(group, names)))
        try:
            with lib.CancelScope() as scope:
                async with lib.open_nursery(strict_exception_groups=strict) as nursery:
                    nursery.start_soon(lib.sleep_forever)
                    nursery.start_soon(raise_error)
                    scope.cancel()
        except BaseException as exc:  # noqa: BLE001 - an observation
            log.append((strict, "in a scope", describe(exc, names)))


@pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")
@pytest.mark.filterwarnings("ignore::ringtrio.TrioDeprecationWarning")
def test_loose_group_collapses_after_cancelled_is_taken_out_like_trio() -> None:
    log = run_both(_loose_group_collapses_after_cancelled_is_taken_out)
    assert log[-1] == (False, "in a scope", ("RuntimeError", "test error", None, None))


# ---------------------------------------------------------------- parking lots and sync errors


async def _child_task(lib: ModuleType, task_status: Any) -> None:
    task_status.started(lib.lowlevel.current_task())
    await lib.sleep_forever()


async def _parking_lot_breakers(lib: ModuleType, log: list[Any], names: Names) -> None:
    # trio's test_parking_lot.py: breaking, registering and removing breakers.
    ParkingLot = lib.lowlevel.ParkingLot
    add, remove = lib.lowlevel.add_parking_lot_breaker, lib.lowlevel.remove_parking_lot_breaker
    me = lib.lowlevel.current_task()
    lot = ParkingLot()
    lot.break_lot()
    lot.break_lot()
    log.append(("broken by", names(repr(lot.broken_by))))
    try:
        await lot.park()
    except lib.BrokenResourceError as exc:
        log.append(describe(exc, names))
    try:
        remove(me, ParkingLot())
    except RuntimeError as exc:
        log.append(("remove unregistered", type(exc).__name__, names(str(exc).split(": ")[0])))
    lot = ParkingLot()
    add(me, lot)
    add(me, lot)
    remove(me, lot)
    remove(me, lot)
    try:
        lot.unpark(count=1.5)
    except ValueError as exc:
        log.append(describe(exc, names))
    # A breaker that exits breaks the lot for the task parked in it.
    async def parker() -> None:
        try:
            await lot.park()
        except lib.BrokenResourceError as exc:
            log.append(("parked", describe(exc, names)))

    async with lib.open_nursery() as nursery:
        nursery.start_soon(parker)
        with lib.CancelScope() as child_scope:
            async with lib.open_nursery() as inner:
                child = await inner.start(_child_task, lib)
                names.add("CHILD", child)
                add(child, lot)
                await lib.testing.wait_all_tasks_blocked()
                child_scope.cancel()
    log.append(("broken by", names(repr(lot.broken_by))))
    try:
        add(child, ParkingLot())
    except lib.BrokenResourceError as exc:
        log.append(describe(exc, names))


def test_parking_lot_breakers_match_trio() -> None:
    log = run_both(_parking_lot_breakers)
    assert ("parked", ("BrokenResourceError", "Parking lot broken by CHILD", None, None)) in log


async def _lock_owner_exits(lib: ModuleType, log: list[Any], names: Names) -> None:
    lock = lib.Lock()

    async def takes_the_lock_and_exits() -> None:
        names.add("OWNER", lib.lowlevel.current_task())
        await lock.acquire()

    async def waits_for_the_lock() -> None:
        try:
            await lock.acquire()
        except lib.BrokenResourceError as exc:
            log.append(("waiting", describe(exc, names)))

    async with lib.open_nursery() as nursery:
        nursery.start_soon(takes_the_lock_and_exits)
        await lib.testing.wait_all_tasks_blocked()
    async with lib.open_nursery() as nursery:
        nursery.start_soon(waits_for_the_lock)
    log.append(lock.statistics().locked)


def test_lock_whose_owner_exited_matches_trio() -> None:
    log = run_both(_lock_owner_exits)
    assert log[0][1][:3] == ("BrokenResourceError", "Owner of this lock exited without releasing: OWNER", None)


async def _bad_arguments(lib: ModuleType, log: list[Any], names: Names) -> None:
    # (exception type, message) for each mistake; compared below.
    nan = math.nan
    calls: list[tuple[str, Callable[[], object]]] = [
        ("CancelScope(deadline=nan)", lambda: lib.CancelScope(deadline=nan)),
        ("CancelScope(relative_deadline=nan)", lambda: lib.CancelScope(relative_deadline=nan)),
        ("CancelScope(relative_deadline=-3)", lambda: lib.CancelScope(relative_deadline=-3)),
        ("CancelScope(both)", lambda: lib.CancelScope(deadline=7, relative_deadline=3)),
        ("relative_deadline = nan", lambda: setattr(lib.CancelScope(), "relative_deadline", nan)),
        ("relative_deadline = -3", lambda: setattr(lib.CancelScope(), "relative_deadline", -3)),
        ("deadline = nan", lambda: setattr(lib.CancelScope(), "deadline", nan)),
        ("unentered relative: deadline", lambda: lib.move_on_after(5).deadline),
        ("unentered absolute: relative_deadline", lambda: lib.move_on_at(5).relative_deadline),
        ("shield = 1", lambda: setattr(lib.CancelScope(), "shield", 1)),
        ("move_on_after(-1)", lambda: lib.move_on_after(-1)),
        ("move_on_after(nan)", lambda: lib.move_on_after(nan)),
        ("move_on_at(nan)", lambda: lib.move_on_at(nan)),
        ("Semaphore(-1)", lambda: lib.Semaphore(-1)),
        ("Semaphore(1.5)", lambda: lib.Semaphore(1.5)),
        ("Semaphore(2, max_value=1)", lambda: lib.Semaphore(2, max_value=1)),
        ("Semaphore(1, max_value='x')", lambda: lib.Semaphore(1, max_value="x")),
        ("CapacityLimiter(-1)", lambda: lib.CapacityLimiter(-1)),
        ("CapacityLimiter(1.5)", lambda: lib.CapacityLimiter(1.5)),
        ("Condition(StrictFIFOLock())", lambda: lib.Condition(lib.StrictFIFOLock())),
        ("bool(Event())", lambda: bool(lib.Event())),
        ("ParkingLot().repark(1)", lambda: lib.lowlevel.ParkingLot().repark(1)),
    ]
    semaphore = lib.Semaphore(1, max_value=1)
    calls.append(("bounded Semaphore released too often", semaphore.release))
    lock = lib.Lock()
    calls.append(("release an unlocked Lock", lock.release))
    limiter = lib.CapacityLimiter(1)
    calls.append(("release a token never borrowed", limiter.release))
    condition = lib.Condition()
    calls.append(("notify without the lock", condition.notify))
    calls.append(("notify_all without the lock", condition.notify_all))
    for what, call in calls:
        try:
            call()
        except (ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
            log.append((what, type(exc).__name__, names(str(exc))))
        else:
            log.append((what, "no error"))
    await lock.acquire()
    for what, call in [("acquire a held Lock", lock.acquire_nowait), ("borrow twice", limiter.acquire_nowait)]:
        limiter.acquire_nowait() if what == "borrow twice" else None
        try:
            call()
        except RuntimeError as exc:
            log.append((what, type(exc).__name__, names(str(exc))))
    try:
        await condition.wait()
    except RuntimeError as exc:
        log.append(("wait without the lock", type(exc).__name__, names(str(exc))))
    try:
        await lib.sleep(-1)
    except ValueError as exc:
        log.append(("sleep(-1)", type(exc).__name__, names(str(exc))))


def test_bad_arguments_say_what_trio_says() -> None:
    # The same exception, and ringtrio's message starts with trio's words
    # (it may go on to explain).  (sleep()'s own: test_messages_vs_trio.py.)
    trio_log, ringtrio_log = (observe(lib, _bad_arguments) for lib in LIBS)
    assert [entry[:2] for entry in ringtrio_log] == [entry[:2] for entry in trio_log]
    for (what, _, trio_says), (_, _, ringtrio_says) in zip(trio_log, ringtrio_log, strict=True):
        assert ringtrio_says.startswith(trio_says.rstrip(".")), (what, trio_says, ringtrio_says)
    assert ("Semaphore(2, max_value=1)", "ValueError", "max_values must be >= initial_value") in ringtrio_log
