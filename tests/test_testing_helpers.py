"""testing.trio_test, testing.active_thread_count and
testing.wait_all_threads_completed, and RunVarToken's trio names.

Scenarios run under trio and ringtrio (``same_under_both``, or the ``lib``
fixture) and must observe the same thing.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

import pytest
import trio

import ringtrio

from _differential import lib, same_under_both  # noqa: F401  (lib: a fixture)


# --------------------------------------------------------------------------
# active_thread_count / wait_all_threads_completed
# --------------------------------------------------------------------------


def test_active_thread_count_follows_the_waiting_calls() -> None:
    # trio's test_wait_all_threads_completed, observed step by step.
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = [("before any thread", lib.testing.active_thread_count())]
        release = [lib.Event(), lib.Event()]
        returned = [lib.Event(), lib.Event()]
        waiter_done = False

        async def call_in_thread(i: int) -> None:
            await lib.to_thread.run_sync(lib.from_thread.run, release[i].wait)
            returned[i].set()

        async def wait_for_threads() -> None:
            nonlocal waiter_done
            await lib.testing.wait_all_threads_completed()
            waiter_done = True

        async with lib.open_nursery() as nursery:
            nursery.start_soon(call_in_thread, 0)
            nursery.start_soon(call_in_thread, 1)
            await lib.testing.wait_all_tasks_blocked()
            nursery.start_soon(wait_for_threads)
            await lib.testing.wait_all_tasks_blocked()
            seen.append(("two running", lib.testing.active_thread_count(), waiter_done))
            for i in (0, 1):
                release[i].set()
                await returned[i].wait()
                await lib.testing.wait_all_tasks_blocked()
                seen.append((f"after {i + 1} returned", lib.testing.active_thread_count(), waiter_done))
        return seen

    assert same_under_both(scenario) == [
        ("before any thread", 0),
        ("two running", 2, False),
        ("after 1 returned", 1, False),
        ("after 2 returned", 0, True),
    ]


def test_wait_all_threads_completed_without_threads_is_a_checkpoint() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen = []
        with lib.testing.assert_checkpoints():
            await lib.testing.wait_all_threads_completed()
        seen.append(lib.testing.active_thread_count())
        with lib.CancelScope() as scope:
            scope.cancel()
            await lib.testing.wait_all_threads_completed()
        seen.append(scope.cancelled_caught)
        return seen

    assert same_under_both(scenario) == [0, True]


def test_an_abandoned_thread_no_longer_counts() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        unblock = threading.Event()
        seen = []
        with lib.move_on_after(0.05) as scope:
            await lib.to_thread.run_sync(unblock.wait, abandon_on_cancel=True)
        seen.append(scope.cancelled_caught)
        # The thread still runs, but nobody waits for it.
        seen.append(lib.testing.active_thread_count())
        with lib.fail_after(5):
            await lib.testing.wait_all_threads_completed()
        unblock.set()
        return seen

    assert same_under_both(scenario) == [True, 0]


def test_a_thread_that_raises_stops_counting() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        def fail() -> None:
            raise ValueError("in the thread")

        seen: list[Any] = []
        try:
            await lib.to_thread.run_sync(fail)
        except ValueError as exc:
            seen.append(str(exc))
        seen.append(lib.testing.active_thread_count())
        return seen

    assert same_under_both(scenario) == ["in the thread", 0]


def test_active_thread_count_outside_a_run_is_runtime_error(lib: ModuleType) -> None:
    with pytest.raises(RuntimeError):
        lib.testing.active_thread_count()


def test_each_run_counts_its_own_threads() -> None:
    # A call in one run's thread must not show up in another run's count.
    other_run_inside = threading.Event()
    finish_other_run = threading.Event()

    async def other() -> None:
        await ringtrio.to_thread.run_sync(lambda: (other_run_inside.set(), finish_other_run.wait()))

    thread = threading.Thread(target=ringtrio.run, args=(other,))
    thread.start()
    try:
        assert other_run_inside.wait(10)

        async def main() -> int:
            return ringtrio.testing.active_thread_count()

        assert ringtrio.run(main) == 0
    finally:
        finish_other_run.set()
        thread.join(10)
    assert not thread.is_alive()


# --------------------------------------------------------------------------
# trio_test
# --------------------------------------------------------------------------


class RecordingInstrument:
    def __init__(self, lib: ModuleType) -> None:
        self.lib = lib
        self.events: list[str] = []

    def before_run(self) -> None:
        self.events.append("before_run")

    def after_run(self) -> None:
        self.events.append("after_run")


def make_instrument(lib: ModuleType) -> Any:
    # An Instrument subclass of the library under test (trio_test picks its
    # instruments out of the keyword arguments by type).
    return type("Recording", (RecordingInstrument, lib.abc.Instrument), {})(lib)


def test_trio_test_runs_the_function_with_clock_and_instruments(lib: ModuleType) -> None:
    clock = lib.testing.MockClock()
    instrument = make_instrument(lib)
    seen: list[Any] = []

    @lib.testing.trio_test
    async def a_test(position: int, *, clock: Any, instrument: Any, other: str) -> str:
        seen.append(position)
        seen.append(lib.lowlevel.current_clock() is clock)
        seen.append(lib.current_time())
        await lib.sleep(5)  # the mock clock: no real time passes
        seen.append(lib.current_time() >= 5)
        seen.append(list(instrument.events))
        seen.append(lib.lowlevel.current_task().name.endswith("a_test"))
        return other

    clock.autojump_threshold = 0
    assert a_test(1, clock=clock, instrument=instrument, other="x") == "x"
    assert a_test.__name__ == "a_test"
    assert seen == [1, True, 0.0, True, ["before_run"], True]
    assert instrument.events == ["before_run", "after_run"]


def test_trio_test_without_fixtures_uses_the_default_clock(lib: ModuleType) -> None:
    @lib.testing.trio_test
    async def a_test() -> bool:
        return lib.current_time() > 0

    assert a_test() is True


def test_trio_test_refuses_two_clocks(lib: ModuleType) -> None:
    @lib.testing.trio_test
    async def a_test(a: Any, b: Any) -> None:  # pragma: no cover - never runs
        raise AssertionError("must not run")

    with pytest.raises(ValueError):
        a_test(a=lib.testing.MockClock(), b=lib.testing.MockClock())


def test_trio_test_propagates_the_test_failure(lib: ModuleType) -> None:
    @lib.testing.trio_test
    async def a_test() -> None:
        await lib.lowlevel.checkpoint()
        raise KeyError("failed")

    with pytest.raises(KeyError, match="failed"):
        a_test()


# --------------------------------------------------------------------------
# RunVarToken.previous_value / .redeemed
# --------------------------------------------------------------------------


def test_run_var_token_previous_value_and_redeemed() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []
        plain = lib.lowlevel.RunVar("plain")
        defaulted = lib.lowlevel.RunVar("defaulted", default="D")

        first = plain.set(1)
        seen.append(("first token's previous is the no-value marker", first.previous_value is not None))
        second = plain.set(2)
        seen.append(("second token", second.previous_value, second.redeemed))
        plain.reset(second)
        seen.append(("after reset", plain.get(), second.redeemed))
        try:
            plain.reset(second)
        except ValueError:
            seen.append("reset twice: ValueError")

        # A RunVar with a default that was never set: the token records the
        # default, and reset() sets it explicitly.
        token = defaulted.set("x")
        seen.append(("defaulted token", token.previous_value))
        defaulted.reset(token)
        seen.append(("defaulted after reset", defaulted.get(), token.redeemed))
        seen.append(("isinstance", isinstance(token, lib.lowlevel.RunVarToken)))
        return seen

    assert same_under_both(scenario) == [
        ("first token's previous is the no-value marker", True),
        ("second token", 1, False),
        ("after reset", 1, True),
        "reset twice: ValueError",
        ("defaulted token", "D"),
        ("defaulted after reset", "D", True),
        ("isinstance", True),
    ]


def test_run_var_token_missing_marker() -> None:
    async def main() -> tuple[Any, Any]:
        var: ringtrio.lowlevel.RunVar[int] = ringtrio.lowlevel.RunVar("v")
        token = var.set(1)
        var.reset(token)
        try:
            var.get()
        except LookupError:
            return token.previous_value, repr(token)
        return None, None  # pragma: no cover

    previous, text = ringtrio.run(main)
    assert previous is ringtrio.lowlevel.RunVarToken.MISSING
    assert "previous_value=MISSING" in text and "redeemed=True" in text



def test_run_var_reset_with_another_vars_token_says_so() -> None:
    async def scenario(lib: ModuleType) -> str:
        one, other = lib.lowlevel.RunVar("one"), lib.lowlevel.RunVar("other")
        try:
            one.reset(other.set(1))
        except ValueError as exc:
            # trio's words (its tests match on them).
            return "token is not for us" if "token is not for us" in str(exc) else str(exc)
        return "nothing raised"  # pragma: no cover

    assert same_under_both(scenario) == "token is not for us"


# --------------------------------------------------------------------------
# MockClock against real time
# --------------------------------------------------------------------------


def _mock_clock_under_stepped_real_time(lib: ModuleType) -> list[float]:
    """A MockClock whose real time only moves when the test says so
    (``_real_clock``, the hook trio's MockClock has and trio's test uses)."""
    real = [123.0]
    clock = lib.testing.MockClock()
    clock._real_clock = lambda: real[0]
    seen = [clock.current_time()]
    clock.jump(1.2)
    seen += [clock.current_time(), clock.deadline_to_sleep_time(1.1), clock.deadline_to_sleep_time(1.3) > 999999]
    clock.rate = 2  # a rate change never makes virtual time jump
    seen.append(clock.current_time())
    real[0] += 1
    seen += [clock.current_time(), clock.deadline_to_sleep_time(3.2), clock.deadline_to_sleep_time(4.2)]
    clock.rate = 0.5
    seen += [clock.current_time(), clock.deadline_to_sleep_time(4.2)]
    clock.jump(0.8)
    real[0] += 1
    seen.append(clock.current_time())
    return seen


def test_mock_clock_rate_follows_real_time() -> None:
    expected = _mock_clock_under_stepped_real_time(trio)
    assert expected == [0, 1.2, 0, True, 1.2, 3.2, 0, 0.5, 3.2, 2.0, 4.5]
    assert _mock_clock_under_stepped_real_time(ringtrio) == expected


# --------------------------------------------------------------------------
# Sequencer
# --------------------------------------------------------------------------


def test_sequencer_cancelled_waiter_raises_runtime_error() -> None:
    """A block cancelled while it waits for its turn breaks the sequence:
    it raises RuntimeError itself (not Cancelled), and so does every block
    waiting or entered after it."""

    async def scenario(lib: ModuleType) -> list[str]:
        record: list[str] = []
        seq = lib.testing.Sequencer()

        async def child(i: int) -> None:
            with lib.CancelScope() as scope:
                if i == 1:
                    scope.cancel()
                try:
                    async with seq(i):
                        record.append(f"seq({i}) entered")  # pragma: no cover
                except RuntimeError:
                    record.append(f"seq({i}) RuntimeError")
            record.append(f"seq({i}) scope caught a cancel: {scope.cancelled_caught}")

        async with lib.open_nursery() as nursery:
            nursery.start_soon(child, 1)
            nursery.start_soon(child, 2)
            async with seq(0):
                record.append("seq(0) entered")
        try:
            async with seq(3):
                record.append("seq(3) entered")  # pragma: no cover
        except RuntimeError:
            record.append("seq(3) RuntimeError")
        return record

    record = same_under_both(scenario)
    assert record[:2] == ["seq(0) entered", "seq(1) RuntimeError"]
