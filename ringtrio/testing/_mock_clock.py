"""MockClock: virtual time for tests."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .._core import Clock, current_statistics, wait_all_tasks_blocked
from .._core._internal_api import _run_state_changed
from .._final import final


@final
class MockClock(Clock):
    """A clock whose time you control.

    ``rate`` is how fast virtual time runs against real time (0: it only moves
    by :meth:`jump`; 1: real speed). With ``autojump_threshold`` set, whenever
    every task has been blocked for that many real seconds, the clock jumps
    straight to the next deadline: ``run(main, clock=MockClock(autojump_threshold=0))``
    makes ``await sleep(3600)`` return at once.

    Under a custom clock deadlines are handled in Python only: kernel timeouts
    cannot follow virtual time.
    """

    def __init__(self, rate: float = 0.0, autojump_threshold: float = math.inf) -> None:
        # Where real time comes from; a test may replace it to make real
        # time stand still or step (trio's name for the same hook).
        self._real_clock: Callable[[], float] = time.perf_counter
        self._real_base = 0.0
        self._virtual_base = 0.0
        self._rate = 0.0
        self._autojump_threshold = math.inf
        self.rate = rate
        self.autojump_threshold = autojump_threshold

    def __repr__(self) -> str:
        return (
            f"<MockClock, time={self.current_time():.7f}, rate={self._rate} @ {id(self):#x}>"
        )

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, new_rate: float) -> None:
        if new_rate < 0 or math.isnan(new_rate):
            raise ValueError("rate must be >= 0")  # trio's words: code matches on them
        # Re-anchor so that changing the rate does not make time jump.
        real = self._real_clock()
        self._virtual_base = self._real_to_virtual(real)
        self._real_base = real
        self._rate = float(new_rate)

    @property
    def autojump_threshold(self) -> float:
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, new_threshold: float) -> None:
        if new_threshold < 0 or math.isnan(new_threshold):
            raise ValueError(f"autojump_threshold must be >= 0, not {new_threshold!r}")
        self._autojump_threshold = float(new_threshold)
        # The run's wait is bounded by the threshold: a guest run's host may
        # change it while the run waits (set inside the run, it takes
        # effect at the next wait anyway).
        _run_state_changed()

    def _real_to_virtual(self, real: float) -> float:
        return self._virtual_base + self._rate * (real - self._real_base)

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self._real_to_virtual(self._real_clock())

    def deadline_to_sleep_time(self, deadline: float) -> float:
        virtual_timeout = deadline - self.current_time()
        if virtual_timeout <= 0:
            return 0.0
        if self._rate > 0:
            return virtual_timeout / self._rate
        # Time never moves by itself: only a jump (or autojump) can get there.
        return 999_999_999.0

    def jump(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds``."""
        if seconds < 0 or math.isnan(seconds):
            raise ValueError("time can't go backwards")
        self._virtual_base += seconds

    # Called by the run loop when every task has been blocked for
    # autojump_threshold seconds.
    def _autojump(self) -> None:
        jump = current_statistics().seconds_to_next_deadline
        if 0 < jump < math.inf:
            self.jump(jump)


__all__ = ["MockClock", "wait_all_tasks_blocked"]
