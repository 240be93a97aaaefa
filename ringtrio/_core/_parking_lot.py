"""ParkingLot: the fair FIFO queue of parked tasks that every sync primitive
is built from."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn, Callable

from . import _run
from ._run import Abort, Task


@dataclass(frozen=True, slots=True)
class ParkingLotStatistics:
    tasks_waiting: int


class ParkingLot:
    """A FIFO of parked tasks.  ``await lot.park()`` parks the current task
    until another task calls ``unpark()``/``unpark_all()``/``repark()``.
    Parking is cancellable; unparking is synchronous."""

    __slots__ = ("_parked",)

    def __init__(self) -> None:
        # An ordered dict: FIFO order, O(1) removal when a parked task is
        # cancelled.
        self._parked: OrderedDict[Task, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._parked)

    def __bool__(self) -> bool:
        return bool(self._parked)

    def __repr__(self) -> str:
        return f"<ParkingLot with {len(self._parked)} parked task(s)>"

    async def park(self) -> None:
        """Park until unparked.  Not a checkpoint by itself beyond the park."""
        task = _run.current_task()
        self._parked[task] = None
        task.custom_sleep_data = self

        def abort(raise_cancel: Callable[[], NoReturn]) -> Abort:
            lot: ParkingLot = task.custom_sleep_data
            del lot._parked[task]
            task.custom_sleep_data = None
            return Abort.SUCCEEDED

        await _run.wait_task_rescheduled(abort)

    def _pop_several(self, count: int | float) -> Iterator[Task]:
        if isinstance(count, float):
            if not math.isinf(count):
                raise ValueError("count must be an int or math.inf")
        elif not isinstance(count, int):
            raise TypeError("count must be an int or math.inf")
        if count < 0:
            raise ValueError("count must be >= 0")
        while self._parked and count > 0:
            task, _ = self._parked.popitem(last=False)
            task.custom_sleep_data = None
            count -= 1
            yield task

    def unpark(self, *, count: int | float = 1) -> list[Task]:
        """Wake up to ``count`` tasks, oldest first.  Returns them."""
        tasks = list(self._pop_several(count))
        for task in tasks:
            _run.reschedule(task)
        return tasks

    def unpark_all(self) -> list[Task]:
        return self.unpark(count=len(self._parked))

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
