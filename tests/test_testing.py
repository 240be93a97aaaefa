"""ringtrio.testing: MockClock, wait_all_tasks_blocked, checkpoint asserts,
Sequencer."""

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


def test_autojump_makes_an_hour_long_sleep_instant() -> None:
    async def main() -> float:
        start = ringtrio.current_time()
        await ringtrio.sleep(3600)
        with ringtrio.move_on_after(7200) as scope:
            await ringtrio.sleep_forever()
        assert scope.cancelled_caught
        return ringtrio.current_time() - start

    t0 = time.monotonic()
    virtual = ringtrio.run(main, clock=MockClock(autojump_threshold=0))
    assert virtual == pytest.approx(3600 + 7200)
    assert time.monotonic() - t0 < 5


def test_mock_clock_rate_zero_only_moves_by_jump() -> None:
    clock = MockClock()
    log: list[str] = []

    async def sleeper() -> None:
        await ringtrio.sleep(10)
        log.append("woke")

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            await wait_all_tasks_blocked()
            assert clock.current_time() == 0
            clock.jump(5)
            await wait_all_tasks_blocked()
            assert log == []
            clock.jump(5)
        assert log == ["woke"]

    ringtrio.run(main, clock=clock)


def test_mock_clock_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        MockClock(rate=-1)
    with pytest.raises(ValueError):
        MockClock(autojump_threshold=-1)
    with pytest.raises(ValueError):
        MockClock().jump(-1)


def test_mock_clock_rate_scales_real_time() -> None:
    clock = MockClock(rate=1000)

    async def main() -> float:
        start = ringtrio.current_time()
        await ringtrio.sleep(20)  # 20 virtual seconds = 20 ms of real time
        return ringtrio.current_time() - start

    t0 = time.monotonic()
    assert ringtrio.run(main, clock=clock) >= 20
    assert time.monotonic() - t0 < 5


def test_wait_all_tasks_blocked_waits_for_everyone() -> None:
    log: list[str] = []

    async def busy(name: str, steps: int) -> None:
        for _ in range(steps):
            await lowlevel.checkpoint()
        log.append(name)
        await ringtrio.sleep_forever()

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(busy, "a", 5)
            nursery.start_soon(busy, "b", 50)
            await wait_all_tasks_blocked()
            log.append("all blocked")
            nursery.cancel_scope.cancel()

    ringtrio.run(main)
    assert log == ["a", "b", "all blocked"]


def test_wait_all_tasks_blocked_cushion_order_and_cancel() -> None:
    log: list[str] = []

    async def waiter(name: str, cushion: float) -> None:
        await wait_all_tasks_blocked(cushion)
        log.append(name)

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(waiter, "long", 0.05)
            nursery.start_soon(waiter, "short1", 0)
            nursery.start_soon(waiter, "short2", 0)
        with ringtrio.move_on_after(0.01) as scope:
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(ringtrio.sleep_forever)
                await wait_all_tasks_blocked(10)
        assert scope.cancelled_caught

    ringtrio.run(main)
    assert log == ["short1", "short2", "long"]
    with pytest.raises(ValueError):
        ringtrio.run(wait_all_tasks_blocked, -1)


def test_assert_checkpoints_accepts_checkpoints_and_blocking_calls() -> None:
    async def main() -> None:
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

    ringtrio.run(main)


def test_sequencer_orders_blocks() -> None:
    log: list[int] = []
    seq = Sequencer()

    async def worker(i: int) -> None:
        async with seq(i):
            log.append(i)
            await lowlevel.checkpoint()

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            for i in (3, 1, 0, 2):
                nursery.start_soon(worker, i)

    ringtrio.run(main)
    assert log == [0, 1, 2, 3]


def test_sequencer_position_used_twice_is_an_error() -> None:
    async def main() -> None:
        seq = Sequencer()
        async with seq(0):
            pass
        with pytest.raises(RuntimeError, match="already used"):
            async with seq(0):
                pass  # pragma: no cover

    ringtrio.run(main)


def test_sequencer_breaks_when_an_earlier_position_is_cancelled() -> None:
    log: list[str] = []
    seq = Sequencer()

    async def first() -> None:
        with ringtrio.CancelScope() as scope:
            scope.cancel()
            async with seq(1):
                pass  # pragma: no cover

    async def second() -> None:
        try:
            async with seq(2):
                pass  # pragma: no cover
        except ringtrio.BrokenResourceError:
            log.append("broken")

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(first)
            nursery.start_soon(second)
            await wait_all_tasks_blocked()
            async with seq(0):
                pass

    ringtrio.run(main)
    assert log == ["broken"]
