"""Clock: the interface of a custom clock for ``ringtrio.run(clock=...)``."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Clock(ABC):
    """The interface of a custom clock (see ``ringtrio.testing.MockClock``):
    an abstract base class, as trio's, so a subclass that forgets a method
    fails when it is instantiated, not in the middle of a run."""

    __slots__ = ()

    @abstractmethod
    def start_clock(self) -> None:
        """Called once, when the run starts (before any task runs)."""

    @abstractmethod
    def current_time(self) -> float:
        """The time now on this clock: what ``current_time()`` returns, and
        the scale of every deadline in a run that uses the clock."""

    @abstractmethod
    def deadline_to_sleep_time(self, deadline: float) -> float:
        """How many real seconds the loop may wait in the kernel for
        ``deadline`` (a time on this clock) to arrive; 0 or less means it
        has."""
