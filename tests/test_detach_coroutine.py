"""lowlevel.temporarily_detach_coroutine_object,
reattach_detached_coroutine_object and permanently_detach_coroutine_object:
a task's coroutine driven by another coroutine runner, and back.

Every scenario runs under trio and under ringtrio (``same_under_both``) and
must observe the same thing: trio's test_run.py scenarios restated, plus
cancellation while detached, a detached main task, a small greenback-style
runner that drives the coroutine through ringtrio calls, and the run loop's
instrumented path (an instrument installed).
"""

from __future__ import annotations

import types
from collections.abc import Generator
from types import ModuleType
from typing import Any

import outcome
import pytest
import trio

import ringtrio

from _differential import same_under_both


@types.coroutine
def yield_to_runner(value: Any) -> Generator[Any, Any, Any]:
    """Yield ``value`` to whoever drives the coroutine (the other runner)."""
    return (yield value)


class StepCounter:
    """An instrument, so that the run loop takes its instrumented path."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: Any) -> None:
        self.steps += 1


def under_both(scenario: Any, instrumented: bool) -> Any:
    """same_under_both, optionally with an instrument installed."""
    if not instrumented:
        return same_under_both(scenario)
    results = []
    for lib in (trio, ringtrio):
        instrument = type("Counter", (StepCounter, lib.abc.Instrument), {})()
        results.append(lib.run(scenario, lib, instruments=[instrument]))
        assert instrument.steps > 0
    assert results[1] == results[0], f"trio: {results[0]!r}\nringtrio: {results[1]!r}"
    return results[0]


@pytest.mark.parametrize("instrumented", [False, True], ids=["plain", "instrumented"])
def test_detach_then_reattach(instrumented: bool) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        L = lib.lowlevel
        seen: list[Any] = []
        holder: dict[str, Any] = {}

        async def unrelated() -> None:
            holder["unrelated"] = L.current_task()

        async def detachable() -> None:
            await lib.sleep(0)
            task = holder["task"] = L.current_task()

            def abort(raise_cancel: Any) -> Any:  # pragma: no cover - not cancelled
                return L.Abort.FAILED

            got = await L.temporarily_detach_coroutine_object(abort)
            seen.append(("detach returned", got))
            await yield_to_runner(1)
            await yield_to_runner(2)
            try:
                await L.reattach_detached_coroutine_object(holder["unrelated"], None)
            except RuntimeError as exc:
                seen.append(("wrong task", "does not match" in str(exc)))
            await L.reattach_detached_coroutine_object(task, "byebye")
            seen.append("back under the run")
            await lib.sleep(0)
            seen.append("slept after reattaching")

        async with lib.open_nursery() as nursery:
            nursery.start_soon(unrelated)
            nursery.start_soon(detachable)
            await lib.testing.wait_all_tasks_blocked()
            coro = holder["task"].coro
            # Here is the other coroutine runner.
            seen.append(("runner got", coro.send("not the run's")))
            seen.append(("runner got", coro.send(None)))
            seen.append(("runner got", coro.send(None)))
        return seen

    assert under_both(scenario, instrumented) == [
        ("detach returned", "not the run's"),
        ("runner got", 1),
        ("runner got", 2),
        ("wrong task", True),
        ("runner got", "byebye"),
        "back under the run",
        "slept after reattaching",
    ]


@pytest.mark.parametrize("instrumented", [False, True], ids=["plain", "instrumented"])
def test_cancelled_while_detached(instrumented: bool) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        L = lib.lowlevel
        seen: list[Any] = []
        holder: dict[str, Any] = {}

        async def detachable() -> None:
            await lib.sleep(0)
            task = holder["task"] = L.current_task()

            def abort(raise_cancel: Any) -> Any:
                seen.append("abort function called")
                holder["raise_cancel"] = raise_cancel
                return L.Abort.FAILED

            await L.temporarily_detach_coroutine_object(abort)
            await L.reattach_detached_coroutine_object(task, None)
            try:
                await lib.sleep(0)
            except lib.Cancelled:
                seen.append("Cancelled at the next checkpoint")
                raise

        async with lib.open_nursery() as nursery:
            nursery.start_soon(detachable)
            await lib.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
            seen.append(("runner got", holder["task"].coro.send(None)))
        seen.append(("raise_cancel given", callable(holder["raise_cancel"])))
        return seen

    assert under_both(scenario, instrumented) == [
        "abort function called",
        ("runner got", None),
        "Cancelled at the next checkpoint",
        ("raise_cancel given", True),
    ]


@pytest.mark.parametrize("instrumented", [False, True], ids=["plain", "instrumented"])
def test_permanently_detach(instrumented: bool) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        L = lib.lowlevel
        seen: list[Any] = []
        holder: dict[str, Any] = {}

        async def detachable(final: outcome.Outcome[Any], yield_value: Any) -> None:
            await lib.sleep(0)
            holder["task"] = L.current_task()
            holder["got"] = await outcome.acapture(L.permanently_detach_coroutine_object, final)
            await yield_to_runner(yield_value)

        async with lib.open_nursery() as nursery:
            nursery.start_soon(detachable, outcome.Value(None), "I'm free!")
        # The run thinks the task exited; its coroutine is still alive.
        seen.append(("nothing sent yet", "got" not in holder))
        coro = holder["task"].coro
        seen.append(("runner got", coro.send("be free!")))
        seen.append(("detach returned", holder["got"]))
        try:
            coro.send(None)
        except StopIteration:
            seen.append("coroutine finished")

        holder.clear()
        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(detachable, outcome.Error(KeyError("gone")), "uh oh")
        except BaseExceptionGroup as group:
            seen.append(("nursery raised", [repr(e) for e in group.exceptions]))
        thrown = ValueError("thrown in")
        seen.append(("runner got", holder["task"].coro.throw(thrown)))
        seen.append(("detach raised", holder["got"] == outcome.Error(thrown)))

        async def with_open_nursery() -> None:
            async with lib.open_nursery():
                try:
                    await L.permanently_detach_coroutine_object(outcome.Value(None))
                except RuntimeError as exc:
                    seen.append(("open nursery", "open nurser" in str(exc)))

        async with lib.open_nursery() as nursery:
            nursery.start_soon(with_open_nursery)
        return seen

    assert under_both(scenario, instrumented) == [
        ("nothing sent yet", True),
        ("runner got", "I'm free!"),
        ("detach returned", outcome.Value("be free!")),
        "coroutine finished",
        ("nursery raised", ["KeyError('gone')"]),
        ("runner got", "uh oh"),
        ("detach raised", True),
        ("open nursery", True),
    ]


@pytest.mark.parametrize("lib", [trio, ringtrio], ids=["trio", "ringtrio"])
def test_main_task_permanently_detached_ends_the_run_with_its_outcome(lib: ModuleType) -> None:
    holder: dict[str, Any] = {}

    async def main() -> str:
        holder["coro"] = lib.lowlevel.current_task().coro
        got = await lib.lowlevel.permanently_detach_coroutine_object(outcome.Value("final"))
        return f"finished elsewhere with {got}"

    assert lib.run(main) == "final"
    with pytest.raises(StopIteration) as stop:
        holder["coro"].send("x")
    assert stop.value.value == "finished elsewhere with x"


def test_a_greenback_style_runner_drives_ringtrio_calls() -> None:
    # The pattern greenback uses: a task detaches its coroutine, and a
    # runner living in another task forwards every trap the coroutine
    # yields to the run (by awaiting it there), sending the results back.
    async def scenario(lib: ModuleType) -> list[Any]:
        L = lib.lowlevel
        seen: list[Any] = []
        handed_over = lib.Event()
        holder: dict[str, Any] = {}

        async def worker() -> None:
            task = L.current_task()
            holder["task"] = task

            def abort(raise_cancel: Any) -> Any:  # pragma: no cover - not cancelled
                return L.Abort.FAILED

            handed_over.set()
            await L.temporarily_detach_coroutine_object(abort)
            # Now driven by the runner below, from another task.
            for i in range(3):
                await lib.sleep(0)
                seen.append(("worker step", i))
            await L.reattach_detached_coroutine_object(task, "done")
            seen.append("worker reattached")

        async def runner() -> None:
            await handed_over.wait()
            await lib.testing.wait_all_tasks_blocked()
            coro = holder["task"].coro
            trap = coro.send(None)
            while trap != "done":
                # Forward the trap to the run, in this task, and hand the
                # coroutine what the run sent back.
                result = await yield_to_runner(trap)
                trap = coro.send(result)
            seen.append("runner let go")

        async with lib.open_nursery() as nursery:
            nursery.start_soon(worker)
            nursery.start_soon(runner)
        return seen

    assert same_under_both(scenario) == [
        ("worker step", 0),
        ("worker step", 1),
        ("worker step", 2),
        "runner let go",
        "worker reattached",
    ]


def test_abort_function_must_fail_ringtrio_says_why() -> None:
    # ringtrio checks what trio only documents: a detached coroutine belongs
    # to the other runner, so its abort function cannot undo the wait.  (The
    # abort function is called here as the scheduler would on cancel.)
    async def main() -> list[Any]:
        L = ringtrio.lowlevel
        holder: dict[str, Any] = {}

        async def detachable() -> None:
            task = holder["task"] = L.current_task()
            await L.temporarily_detach_coroutine_object(lambda raise_cancel: L.Abort.SUCCEEDED)
            await L.reattach_detached_coroutine_object(task, "bye")

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(detachable)
            await ringtrio.testing.wait_all_tasks_blocked()
            task = holder["task"]
            with pytest.raises(ringtrio.RingtrioInternalError, match="must return Abort.FAILED") as info:
                task._abort_func(lambda: None)
            return [task.coro.send(None), "reattach_detached_coroutine_object" in str(info.value)]

    assert ringtrio.run(main) == ["bye", True]
