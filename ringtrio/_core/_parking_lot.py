"""ParkingLot: the fair FIFO queue of parked tasks that every sync primitive
is built from."""

from __future__ import annotations

import math
import types
from collections.abc import Generator
from typing import Any
from dataclasses import dataclass

from . import _run
from ._run import Task


@dataclass(frozen=True, slots=True)
class ParkingLotStatistics:
    tasks_waiting: int


class ParkingLot:
    """A FIFO of parked tasks.  ``await lot.park()`` parks the current task
    until another task calls ``unpark()``/``unpark_all()``/``repark()``.
    Parking is cancellable; unparking is synchronous."""

    __slots__ = ("_parked",)

    def __init__(self) -> None:
        # A dict keeps insertion order: FIFO, with O(1) removal when a
        # parked task is cancelled (and cheaper to create than OrderedDict:
        # every Event has a lot).
        self._parked: dict[Task, None] = {}

    def __len__(self) -> int:
        return len(self._parked)

    def __bool__(self) -> bool:
        return bool(self._parked)

    def __repr__(self) -> str:
        return f"<ParkingLot with {len(self._parked)} parked task(s)>"

    # A generator-based coroutine: one frame per park (Event.wait, Lock...).
    @types.coroutine
    def park(self) -> Generator[Any, Any, None]:
        """Park until unparked.  Cancellable: a cancelled task leaves the lot."""
        task = _run._local.task
        if task is None:
            _run._outside_run()
        self._parked[task] = None
        task.custom_sleep_data = self
        yield _run._Park(task._abort_parking)

    def _pop_several(self, count: int | float) -> list[Task]:
        if type(count) is not int:
            if isinstance(count, float):
                if not math.isinf(count):
                    raise ValueError("count must be an int or math.inf")
            elif not isinstance(count, int):
                raise TypeError("count must be an int or math.inf")
        if count < 0:
            raise ValueError("count must be >= 0")
        parked = self._parked
        if count >= len(parked):
            tasks = list(parked)
            parked.clear()
        else:
            tasks = []
            for _ in range(int(count)):
                task = next(iter(parked))
                del parked[task]
                tasks.append(task)
        for task in tasks:
            task.custom_sleep_data = None
        return tasks

    def unpark(self, *, count: int | float = 1) -> list[Task]:
        """Wake up to ``count`` tasks, oldest first.  Returns them."""
        tasks = self._pop_several(count)
        reschedule = _run.reschedule
        for task in tasks:
            reschedule(task)
        return tasks

    def unpark_all(self) -> list[Task]:
        """Wake every parked task, oldest first.  Returns them."""
        parked = self._parked
        tasks = list(parked)
        parked.clear()
        reschedule = _run.reschedule
        for task in tasks:
            task.custom_sleep_data = None
            reschedule(task)
        return tasks

    def repark(self, new_lot: ParkingLot, *, count: int | float = 1) -> None:
        """Move up to ``count`` parked tasks to ``new_lot`` without waking them."""
        if not isinstance(new_lot, ParkingLot):
            raise TypeError("new_lot must be a ParkingLot")
        for task in self._pop_several(count):
            new_lot._parked[task] = None
            task.custom_sleep_data = new_lot

    def repark_all(self, new_lot: ParkingLot) -> None:
        self.repark(new_lot, count=len(self._parked))

    def statistics(self) -> ParkingLotStatistics:
        return ParkingLotStatistics(tasks_waiting=len(self._parked))
