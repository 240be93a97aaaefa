"""Watching a run: the Instrument hooks and the run's statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._task import Task


class Instrument:
    """Base class for instruments; override the hooks you need.  Hook names
    and arguments are trio's."""

    def before_run(self) -> None: ...
    def after_run(self) -> None: ...
    def task_spawned(self, task: Task) -> None: ...
    def task_scheduled(self, task: Task) -> None: ...
    def before_task_step(self, task: Task) -> None: ...
    def after_task_step(self, task: Task) -> None: ...
    def task_exited(self, task: Task) -> None: ...
    def before_io_wait(self, timeout: float) -> None: ...
    def after_io_wait(self, timeout: float) -> None: ...


@dataclass(frozen=True, slots=True)
class RunStatistics:
    """What :func:`current_statistics` returns."""

    tasks_living: int
    tasks_runnable: int
    seconds_to_next_deadline: float
    run_sync_soon_queue_size: int
    sqes_submitted: int
    cqes_reaped: int
    enters: int
    cq_overflows: int
    ops_in_flight: int
    stale_cqes: int
