"""ringtrio: trio's structured concurrency on Linux io_uring.

``import ringtrio as trio`` runs the common subset of a trio program.
"""

from . import lowlevel
from ._channel import (
    MemoryChannelStatistics,
    MemoryReceiveChannel,
    MemorySendChannel,
    open_memory_channel,
)
from ._core import (
    TASK_STATUS_IGNORED,
    TaskStatus,
    BrokenResourceError,
    BusyResourceError,
    Cancelled,
    CancelScope,
    ClosedResourceError,
    EndOfChannel,
    Nursery,
    RingFallbackWarning,
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
from ._file_io import AsyncBinaryFile, AsyncFile, AsyncTextFile, open_file, wrap_file
from ._path import Path
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
from ._core import TrioDeprecationWarning

# Submodules that import the names above come last.
from . import abc, from_thread, socket, testing, to_thread  # noqa: E402  isort: skip
from ._highlevel_generic import StapledStream, aclose_forcefully  # noqa: E402
from ._highlevel_open_tcp_listeners import open_tcp_listeners, serve_tcp  # noqa: E402
from ._highlevel_open_tcp_stream import open_tcp_stream  # noqa: E402
from ._highlevel_open_unix_stream import open_unix_socket  # noqa: E402
from ._highlevel_serve_listeners import serve_listeners  # noqa: E402
from ._highlevel_socket import SocketListener, SocketStream  # noqa: E402
from ._buffer_group import Buffer, BufferGroup  # noqa: E402
from ._subprocess import Process, run_process  # noqa: E402
from ._signals import open_signal_receiver  # noqa: E402
from ._safe_channel import as_safe_channel  # noqa: E402
from ._ssl import (  # noqa: E402
    NeedHandshakeError,
    SSLListener,
    SSLStream,
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
    serve_ssl_over_tcp,
)

TrioInternalError = RingtrioInternalError
# trio.Path makes trio.PosixPath objects on POSIX; ringtrio.Path is POSIX-only.
PosixPath = Path

# anyio finds ringtrio's backend through this finder (nothing is imported
# until anyio asks for "anyio._backends._ringtrio"; see _anyio_hook.py).
from ._anyio_hook import install as _install_anyio_hook  # noqa: E402

_install_anyio_hook()

__version__ = "0.1.0"

__all__ = [
    "TASK_STATUS_IGNORED",
    "TaskStatus",
    "AsyncBinaryFile",
    "AsyncFile",
    "AsyncTextFile",
    "BrokenResourceError",
    "Buffer",
    "BufferGroup",
    "BusyResourceError",
    "CancelScope",
    "Cancelled",
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "ClosedResourceError",
    "Condition",
    "ConditionStatistics",
    "EndOfChannel",
    "Event",
    "EventStatistics",
    "Lock",
    "LockStatistics",
    "MemoryChannelStatistics",
    "MemoryReceiveChannel",
    "MemorySendChannel",
    "NeedHandshakeError",
    "Nursery",
    "Path",
    "PosixPath",
    "Process",
    "RingFallbackWarning",
    "RingUnavailableError",
    "RingtrioInternalError",
    "RunFinishedError",
    "SSLListener",
    "SSLStream",
    "Semaphore",
    "SemaphoreStatistics",
    "SocketListener",
    "SocketStream",
    "StapledStream",
    "StrictFIFOLock",
    "TooSlowError",
    "TrioDeprecationWarning",
    "TrioInternalError",
    "WouldBlock",
    "abc",
    "aclose_forcefully",
    "as_safe_channel",
    "current_effective_deadline",
    "current_time",
    "fail_after",
    "fail_at",
    "from_thread",
    "lowlevel",
    "move_on_after",
    "move_on_at",
    "open_file",
    "open_memory_channel",
    "open_nursery",
    "open_signal_receiver",
    "open_ssl_over_tcp_listeners",
    "open_ssl_over_tcp_stream",
    "open_tcp_listeners",
    "open_tcp_stream",
    "open_unix_socket",
    "run",
    "run_process",
    "serve_listeners",
    "serve_ssl_over_tcp",
    "serve_tcp",
    "sleep",
    "sleep_forever",
    "sleep_until",
    "socket",
    "testing",
    "to_thread",
    "wrap_file",
]

# Last, once __all__ is complete: tracebacks, reprs and pickles name objects
# by their public modules (ringtrio.TooSlowError, ringtrio.to_thread.run_sync),
# not by the private modules that define them.
from ._public_names import claim_public_names  # noqa: E402

claim_public_names()
del claim_public_names
