"""Low-level API: the parking protocol, ring operations, run introspection.

Mirrors ``trio.lowlevel`` where trio has the same concept; the ring-specific
entries (:class:`RingOp`, :func:`submit_and_wait`, :func:`current_ring_features`)
are the documented path every I/O layer uses to talk to the kernel.
"""

import collections.abc as _abc
import typing as _typing

from ._core import (
    Abort,
    Backend,
    Clock,
    Instrument,
    ParkingLot,
    ParkingLotStatistics,
    RingFeatures,
    OwnedRingOp,
    RingOp,
    RingtrioToken,
    RunStatistics,
    RunVar,
    RunVarToken,
    Task,
    TrioToken,
    add_instrument,
    add_parking_lot_breaker,
    remove_parking_lot_breaker,
    cancel_ring_op,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_backend,
    current_clock,
    current_ring_features,
    current_root_task,
    current_statistics,
    current_task,
    current_trio_token,
    currently_ki_protected,
    disable_ki_protection,
    enable_ki_protection,
    permanently_detach_coroutine_object,
    reattach_detached_coroutine_object,
    remove_instrument,
    reschedule,
    spawn_system_task,
    start_guest_run,
    submit_and_wait,
    temporarily_detach_coroutine_object,
    wait_task_rescheduled,
)
from ._core import _ring
from ._core._internal_api import _local
from ._thread_cache import start_thread_soon

# Readiness waits on raw fds (IORING_OP_POLL_ADD), as trio.lowlevel has them.
from ._socket import notify_closing, wait_readable, wait_writable  # noqa: E402
from ._socket import encode_hostname  # noqa: E402
from ._unix_pipes import FdStream  # noqa: E402
from ._unbounded_queue import UnboundedQueue, UnboundedQueueStatistics  # noqa: E402
from ._subprocess import open_process  # noqa: E402
from ._task_tree import (  # noqa: E402
    BufferGroupInfo,
    FdInfo,
    Location,
    NurseryInfo,
    RingOpInfo,
    ScopeInfo,
    TaskInfo,
    TaskTree,
    enable_op_timestamps,
    print_task_tree,
    task_tree,
)

# The type of the raise_cancel callback an abort function receives (trio's name).
RaiseCancelT: _typing.TypeAlias = _abc.Callable[[], _typing.NoReturn]


def in_ringtrio_run() -> bool:
    """Whether this thread is running a :func:`ringtrio.run` (in a task, or
    in the run's own code: an instrument, an abort function).  False in
    worker threads, even those started by ``to_thread``."""
    return getattr(_local, "runner", None) is not None


def in_ringtrio_task() -> bool:
    """Whether the calling code runs in a ringtrio task (so that
    :func:`current_task` and the async API can be used)."""
    return getattr(_local, "task", None) is not None


# trio's names, for `import ringtrio as trio`.
in_trio_run = in_ringtrio_run
in_trio_task = in_ringtrio_task


from ._core._ring import *  # noqa: F401,F403 - opcode and flag constants

__all__ = [
    "Abort",
    "Backend",
    "BufferGroupInfo",
    "FdInfo",
    "Location",
    "NurseryInfo",
    "RingOpInfo",
    "ScopeInfo",
    "TaskInfo",
    "TaskTree",
    "enable_op_timestamps",
    "print_task_tree",
    "task_tree",
    "Clock",
    "FdStream",
    "Instrument",
    "ParkingLot",
    "ParkingLotStatistics",
    "OwnedRingOp",
    "RingOp",
    "RingtrioToken",
    "RunStatistics",
    "RunVar",
    "RunVarToken",
    "Task",
    "TrioToken",
    "UnboundedQueue",
    "UnboundedQueueStatistics",
    "add_instrument",
    "add_parking_lot_breaker",
    "remove_parking_lot_breaker",
    "cancel_ring_op",
    "currently_ki_protected",
    "in_ringtrio_run",
    "in_ringtrio_task",
    "in_trio_run",
    "in_trio_task",
    "disable_ki_protection",
    "enable_ki_protection",
    "encode_hostname",
    "notify_closing",
    "open_process",
    "permanently_detach_coroutine_object",
    "reattach_detached_coroutine_object",
    "temporarily_detach_coroutine_object",
    "RaiseCancelT",
    "wait_readable",
    "wait_writable",
    "cancel_shielded_checkpoint",
    "checkpoint",
    "checkpoint_if_cancelled",
    "current_clock",
    "current_backend",
    "current_ring_features",
    "current_root_task",
    "current_statistics",
    "current_task",
    "current_trio_token",
    "remove_instrument",
    "reschedule",
    "spawn_system_task",
    "start_guest_run",
    "start_thread_soon",
    "submit_and_wait",
    "wait_task_rescheduled",
    *_ring.__all__,
]
