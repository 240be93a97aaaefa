"""ParkingLot: the fair FIFO queue of parked tasks that every sync primitive
is built from."""

from __future__ import annotations

import math
import types
from collections.abc import Generator
from typing import Any
from dataclasses import dataclass

import outcome

from . import _traps
from ._exceptions import BrokenResourceError
from ._final import final
from ._local import _local, _outside_run, current_task
from ._task import Task
from ._traps import _Park


@dataclass(frozen=True, slots=True, weakref_slot=True)
class ParkingLotStatistics:
    tasks_waiting: int


@final
class ParkingLot:
    """A FIFO of parked tasks.  ``await lot.park()`` parks the current task
    until another task calls ``unpark()``/``unpark_all()``/``repark()``.
    Parking is cancellable; unparking is synchronous."""

    __slots__ = ("_parked", "_broken_by", "__weakref__")

    def __init__(self) -> None:
        # A dict keeps insertion order: FIFO, with O(1) removal when a
        # parked task is cancelled (and cheaper to create than OrderedDict:
        # every Event has a lot).
        self._parked: dict[Task, None] = {}
        # The tasks that broke the lot (break_lot); None while it is whole.
        self._broken_by: list[Task] | None = None

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
        task = _local.task
        if task is None:
            _outside_run()
        if self._broken_by:
            raise BrokenResourceError(f"Attempted to park in parking lot broken by {self._broken_by}")
        self._parked[task] = None
        task.custom_sleep_data = self
        yield _Park(task._abort_parking)

    def _pop_several(self, count: int | float) -> list[Task]:
        if type(count) is not int:
            if isinstance(count, float):
                if not math.isinf(count):
                    raise ValueError("Cannot pop a non-integer number of tasks.")
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
        reschedule = _traps.reschedule
        for task in tasks:
            reschedule(task)
        return tasks

    def unpark_all(self) -> list[Task]:
        """Wake every parked task, oldest first.  Returns them."""
        parked = self._parked
        tasks = list(parked)
        parked.clear()
        reschedule = _traps.reschedule
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

    @property
    def broken_by(self) -> list[Task]:
        """The tasks that broke this lot (empty while it is whole)."""
        return list(self._broken_by or ())

    def break_lot(self, task: Task | None = None) -> None:
        """Break the lot: every parked task, and every later attempt to park,
        raises :exc:`BrokenResourceError` naming ``task`` (default: the
        current task).  Used when the holder of a lock exits without
        releasing it (see :func:`add_parking_lot_breaker`)."""
        if task is None:
            task = current_task()
        if self._broken_by is None:
            self._broken_by = []
        self._broken_by.append(task)
        parked = list(self._parked)
        self._parked.clear()
        for waiter in parked:
            waiter.custom_sleep_data = None
            _traps.reschedule(
                waiter,
                outcome.Error(BrokenResourceError(f"Parking lot broken by {task!r}")),
            )

    def statistics(self) -> ParkingLotStatistics:
        return ParkingLotStatistics(tasks_waiting=len(self._parked))


def add_parking_lot_breaker(task: Task, lot: ParkingLot) -> None:
    """Break ``lot`` if ``task`` exits while registered (a lock holder that
    exits without releasing).  As in trio: a task may be registered for a
    lot several times; an exited task raises BrokenResourceError."""
    if task._send is None:
        # (A task's bound send method goes when it exits: Runner._task_exited.)
        raise BrokenResourceError("Attempted to add already exited task as lot breaker.")
    if task._lot_breakers is None:
        task._lot_breakers = []
    task._lot_breakers.append(lot)


def remove_parking_lot_breaker(task: Task, lot: ParkingLot) -> None:
    """Undo :func:`add_parking_lot_breaker`."""
    breakers = task._lot_breakers
    try:
        breakers.remove(lot)  # type: ignore[union-attr]
    except (ValueError, AttributeError):
        raise RuntimeError(
            "Attempted to remove task as breaker for a lot it is not registered for: "
            f"{task!r} is not a breaker of {lot!r} (add_parking_lot_breaker), or was "
            "removed as often as it was added"
        ) from None
