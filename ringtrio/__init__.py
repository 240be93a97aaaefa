"""ringtrio: trio's structured concurrency on Linux io_uring.

``import ringtrio as trio`` runs the common subset of a trio program.
"""

from __future__ import annotations

from . import lowlevel
from ._core import (
    TASK_STATUS_IGNORED,
    BrokenResourceError,
    BusyResourceError,
    Cancelled,
    CancelScope,
    ClosedResourceError,
    EndOfChannel,
    Nursery,
    RingtrioInternalError,
    RingUnavailableError,
    RunFinishedError,
    TooSlowError,
    WouldBlock,
    current_effective_deadline,
    current_time,
    open_nursery,
    run,
    sleep,
    sleep_forever,
    sleep_until,
)
from ._channel import (
    MemoryChannelStatistics,
    MemoryReceiveChannel,
    MemorySendChannel,
    open_memory_channel,
)
from ._sync import (
    CapacityLimiter,
    CapacityLimiterStatistics,
    Condition,
    ConditionStatistics,
    Event,
    EventStatistics,
    Lock,
    LockStatistics,
    Semaphore,
    SemaphoreStatistics,
    StrictFIFOLock,
)
from ._timeouts import fail_after, fail_at, move_on_after, move_on_at
from . import abc, testing

TrioInternalError = RingtrioInternalError

__version__ = "0.1.0"

__all__ = [
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "Condition",
    "ConditionStatistics",
    "Event",
    "EventStatistics",
    "Lock",
    "LockStatistics",
    "MemoryChannelStatistics",
    "MemoryReceiveChannel",
    "MemorySendChannel",
    "Semaphore",
    "SemaphoreStatistics",
    "StrictFIFOLock",
    "abc",
    "open_memory_channel",
    "testing",
    "TASK_STATUS_IGNORED",
    "BrokenResourceError",
    "BusyResourceError",
    "CancelScope",
    "Cancelled",
    "ClosedResourceError",
    "EndOfChannel",
    "Nursery",
    "RingUnavailableError",
    "RingtrioInternalError",
    "RunFinishedError",
    "TooSlowError",
    "TrioInternalError",
    "WouldBlock",
    "current_effective_deadline",
    "current_time",
    "fail_after",
    "fail_at",
    "lowlevel",
    "move_on_after",
    "move_on_at",
    "open_nursery",
    "run",
    "sleep",
    "sleep_forever",
    "sleep_until",
]
