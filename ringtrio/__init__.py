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
from ._file_io import AsyncBinaryFile, AsyncFile, AsyncTextFile, open_file, wrap_file
from ._path import Path
from . import abc, from_thread, testing, to_thread

# --- sockets and streams (issue 4) -----------------------------------------
from . import socket
from ._highlevel_generic import StapledStream, aclose_forcefully
from ._highlevel_open_tcp_listeners import open_tcp_listeners, serve_tcp
from ._highlevel_open_tcp_stream import open_tcp_stream
from ._highlevel_open_unix_stream import open_unix_socket
from ._highlevel_serve_listeners import serve_listeners
from ._highlevel_socket import SocketListener, SocketStream

_SOCKET_NAMES = [
    "SocketListener",
    "SocketStream",
    "StapledStream",
    "aclose_forcefully",
    "open_tcp_listeners",
    "open_tcp_stream",
    "open_unix_socket",
    "serve_listeners",
    "serve_tcp",
    "socket",
]
# --- end sockets and streams -------------------------------------------------

TrioInternalError = RingtrioInternalError

__version__ = "0.1.0"

__all__ = [
    "AsyncBinaryFile",
    "AsyncFile",
    "AsyncTextFile",
    "Path",
    "open_file",
    "wrap_file",
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
    "from_thread",
    "to_thread",
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
__all__ += _SOCKET_NAMES
