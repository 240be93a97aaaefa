"""Clock: the interface of a custom clock for ``ringtrio.run(clock=...)``."""

from __future__ import annotations


class Clock:
    """Interface for a custom clock (see ``ringtrio.testing.MockClock``)."""

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def deadline_to_sleep_time(self, deadline: float) -> float:  # pragma: no cover
        raise NotImplementedError
