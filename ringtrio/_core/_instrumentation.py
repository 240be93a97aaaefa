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


_HOOK_NAMES = tuple(name for name in vars(Instrument) if not name.startswith("_"))


def _hooks_of(instrument: object) -> list[str]:
    """The hooks ``instrument`` implements: the hook names it has a
    method for that is not Instrument's own no-op.  Looked up once, when the
    instrument is added (trio's rule): replacing a method later changes
    nothing until the instrument is removed and added again."""
    hooks = []
    for name in _HOOK_NAMES:
        method = getattr(instrument, name, None)
        if method is None or getattr(method, "__func__", None) is vars(Instrument)[name]:
            continue
        hooks.append(name)
    return hooks


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
    # "io_uring" or "epoll" (the soft ring), and why (see current_backend()).
    # (With the epoll backend, sqes_submitted, cqes_reaped and enters count
    # the soft ring's SQEs, CQEs and epoll waits.)
    backend: str
    backend_reason: str
