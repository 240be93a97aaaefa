"""ringtrio.testing: MockClock, wait_all_tasks_blocked, checkpoint asserts,
Sequencer.  These tests run through the project's own pytest plugin
(``@pytest.mark.ringtrio`` and its ``autojump_clock``/``mock_clock`` fixtures)."""

from __future__ import annotations

import time

import pytest

import ringtrio
from ringtrio import lowlevel
from ringtrio.testing import (
    MockClock,
    Sequencer,
    assert_checkpoints,
    assert_no_checkpoints,
    wait_all_tasks_blocked,
)

pytestmark = pytest.mark.ringtrio


async def test_autojump_makes_an_hour_long_sleep_instant(autojump_clock: MockClock) -> None:
    t0 = time.monotonic()
    start = ringtrio.current_time()
    await ringtrio.sleep(3600)
    with ringtrio.move_on_after(7200) as scope:
        await ringtrio.sleep_forever()
    assert scope.cancelled_caught
    assert ringtrio.current_time() - start == pytest.approx(3600 + 7200)
    assert time.monotonic() - t0 < 600  # not the 3 h of real time


async def test_mock_clock_rate_zero_only_moves_by_jump(mock_clock: MockClock) -> None:
    log: list[str] = []

    async def sleeper() -> None:
        await ringtrio.sleep(10)
        log.append("woke")

    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await wait_all_tasks_blocked()
        assert mock_clock.current_time() == 0
        mock_clock.jump(5)
        await wait_all_tasks_blocked()
        assert log == []
        mock_clock.jump(5)
    assert log == ["woke"]


@pytest.mark.parametrize("kwargs", [{"rate": -1}, {"autojump_threshold": -1}])
async def test_mock_clock_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MockClock(**kwargs)
    with pytest.raises(ValueError, match="backwards"):
        MockClock().jump(-1)


async def test_mock_clock_rate_scales_real_time(mock_clock: MockClock) -> None:
    mock_clock.rate = 1000
    t0 = time.monotonic()
    start = ringtrio.current_time()
    await ringtrio.sleep(20)  # 20 virtual seconds = 20 ms of real time
    assert ringtrio.current_time() - start >= 20
    assert time.monotonic() - t0 < 15  # not the 20 s of real time


async def test_wait_all_tasks_blocked_waits_for_everyone() -> None:
    log: list[str] = []

    async def busy(name: str, steps: int) -> None:
        for _ in range(steps):
            await lowlevel.checkpoint()
        log.append(name)
        await ringtrio.sleep_forever()

    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(busy, "a", 5)
        nursery.start_soon(busy, "b", 50)
        await wait_all_tasks_blocked()
        log.append("all blocked")
        nursery.cancel_scope.cancel()
    assert log == ["a", "b", "all blocked"]


async def test_wait_all_tasks_blocked_cushion_order_and_cancel() -> None:
    log: list[str] = []

    async def waiter(name: str, cushion: float) -> None:
        await wait_all_tasks_blocked(cushion)
        log.append(name)

    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(waiter, "long", 0.05)
        nursery.start_soon(waiter, "short1", 0)
        nursery.start_soon(waiter, "short2", 0)
    assert log == ["short1", "short2", "long"]
    with ringtrio.move_on_after(0.01) as scope:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(ringtrio.sleep_forever)
            await wait_all_tasks_blocked(10)
    assert scope.cancelled_caught
    with pytest.raises(ValueError):
        await wait_all_tasks_blocked(-1)


async def test_assert_checkpoints_accepts_checkpoints_and_blocking_calls() -> None:
    with assert_checkpoints():
        await lowlevel.checkpoint()
    with assert_checkpoints():
        await ringtrio.sleep(0.001)
    with assert_no_checkpoints():
        pass
    with pytest.raises(AssertionError, match="did not yield"):
        with assert_checkpoints():
            pass
    with pytest.raises(AssertionError, match="did not yield"):
        with assert_checkpoints():
            # yields, but never checks for cancellation
            await lowlevel.cancel_shielded_checkpoint()
    with pytest.raises(AssertionError, match="yielded"):
        with assert_no_checkpoints():
            await lowlevel.checkpoint()


async def test_assert_checkpoints_counts_checkpoint_if_cancelled_then_shielded_yield() -> None:
    # trio's shape for an operation that completes at once: check for
    # cancellation without yielding, do it, then a cancel-shielded yield.
    # trio's assert_checkpoints counts it; a check alone (no yield) or a
    # yield alone (no check) is not a checkpoint.
    with assert_checkpoints():
        await lowlevel.checkpoint_if_cancelled()
        await lowlevel.cancel_shielded_checkpoint()
    with pytest.raises(AssertionError, match="did not yield"):
        with assert_checkpoints():
            await lowlevel.checkpoint_if_cancelled()


async def test_sequencer_orders_blocks() -> None:
    log: list[int] = []
    seq = Sequencer()

    async def worker(i: int) -> None:
        async with seq(i):
            log.append(i)
            await lowlevel.checkpoint()

    async with ringtrio.open_nursery() as nursery:
        for i in (3, 1, 0, 2):
            nursery.start_soon(worker, i)
    assert log == [0, 1, 2, 3]


async def test_sequencer_position_used_twice_is_an_error() -> None:
    seq = Sequencer()
    async with seq(0):
        pass
    with pytest.raises(RuntimeError, match="already used"):
        async with seq(0):
            pass  # pragma: no cover


async def test_sequencer_breaks_when_an_earlier_position_is_cancelled(
    nursery: ringtrio.Nursery,
) -> None:
    log: list[str] = []
    seq = Sequencer()

    async def first() -> None:
        with ringtrio.CancelScope() as scope:
            scope.cancel()
            try:
                async with seq(1):
                    pass  # pragma: no cover
            except RuntimeError:
                log.append("cancelled: broken")  # not Cancelled, as in trio

    async def second() -> None:
        try:
            async with seq(2):
                pass  # pragma: no cover
        except RuntimeError:
            log.append("broken")

    nursery.start_soon(first)
    nursery.start_soon(second)
    await wait_all_tasks_blocked()
    assert log == ["cancelled: broken", "broken"]
    # Once broken, every later block is refused too (as in trio).
    with pytest.raises(RuntimeError, match="broken"):
        async with seq(0):
            pass  # pragma: no cover
