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
class IOStatistics:
    """The run's I/O backend and its numbers: ``RunStatistics.io_statistics``.

    trio's name, for what trio's I/O manager reports; ringtrio's I/O is the
    ring, so these are the ring's counters.  ``tasks_waiting_read`` /
    ``tasks_waiting_write`` are trio's fields (of its epoll and IOCP
    backends): here, tasks parked in a readiness wait (``wait_readable``,
    ``wait_writable``: a POLL_ADD for POLLIN / POLLOUT).  Reads and writes
    on the ring wait without one; they are among ``ops_in_flight``."""

    # "io_uring" or "epoll" (the soft ring), and why (see current_backend()).
    # (With the epoll backend, sqes_submitted, cqes_reaped and enters count
    # the soft ring's SQEs, CQEs and epoll waits.)
    backend: str
    backend_reason: str
    sqes_submitted: int
    cqes_reaped: int
    enters: int
    cq_overflows: int
    ops_in_flight: int
    stale_cqes: int
    tasks_waiting_read: int
    tasks_waiting_write: int
    # Polling before a wait (io_uring only; RINGTRIO_POLL_US): the waits
    # that polled the ring before sleeping, those a completion ended while
    # polling, and the time spent polling.
    polled_waits: int
    poll_hits: int
    poll_seconds: float


@dataclass(frozen=True, slots=True)
class RunStatistics:
    """What :func:`current_statistics` returns: trio's fields."""

    tasks_living: int
    tasks_runnable: int
    seconds_to_next_deadline: float
    run_sync_soon_queue_size: int
    io_statistics: IOStatistics

    # The ring's counters under the names RunStatistics had before it had
    # io_statistics (read from there).

    @property
    def sqes_submitted(self) -> int:
        return self.io_statistics.sqes_submitted

    @property
    def cqes_reaped(self) -> int:
        return self.io_statistics.cqes_reaped

    @property
    def enters(self) -> int:
        return self.io_statistics.enters

    @property
    def cq_overflows(self) -> int:
        return self.io_statistics.cq_overflows

    @property
    def ops_in_flight(self) -> int:
        return self.io_statistics.ops_in_flight

    @property
    def stale_cqes(self) -> int:
        return self.io_statistics.stale_cqes

    @property
    def backend(self) -> str:
        return self.io_statistics.backend

    @property
    def backend_reason(self) -> str:
        return self.io_statistics.backend_reason
