"""The scheduler core.  Everything above it imports from here (or, for what
is not public, from ``_internal_api``); nothing here imports from above.

The shape, in one paragraph: every task is a coroutine driven by
``Runner._run_loop`` (``_runner.py``).  A task that must wait yields a
*trap* to the loop (``_traps.py``): a plain schedule point, or ``_Park(abort_fn)``
meaning "do not run me until somebody calls :func:`reschedule`".  A task
waiting for the kernel parks on the *token* of its ring operation
(``_ring_ops.py``); the CQE carrying that token reschedules it.
Cancellation (``_cancel_scope.py``) is delivered to a parked task by calling
its abort function, which decides what cancelling that particular wait means
(for a ring op: submit ``IORING_OP_ASYNC_CANCEL`` and keep waiting for the
op's own CQE, so that nothing the kernel did is lost).  docs/design.md opens
with the map of these files.
"""

from ._backend import Backend
from ._cancel_scope import CancelScope
from ._chains import DirectFiles, LinkedChain, direct_files, submit_chain_and_wait
from ._clock import Clock
from ._detach import (
    permanently_detach_coroutine_object,
    reattach_detached_coroutine_object,
    temporarily_detach_coroutine_object,
)
from ._exceptions import (
    BrokenResourceError,
    BusyResourceError,
    Cancelled,
    ClosedResourceError,
    EndOfChannel,
    RingFallbackWarning,
    RingtrioInternalError,
    RingUnavailableError,
    RunFinishedError,
    TooSlowError,
    WouldBlock,
)
from ._deprecate import TrioDeprecationWarning
from ._guest import start_guest_run
from ._instrumentation import Instrument, IOStatistics, RunStatistics
from ._ki import currently_ki_protected, disable_ki_protection, enable_ki_protection
from ._local import current_task
from ._nursery import TASK_STATUS_IGNORED, Nursery, TaskStatus, open_nursery
from ._parking_lot import (
    ParkingLot,
    ParkingLotStatistics,
    add_parking_lot_breaker,
    remove_parking_lot_breaker,
)
from ._ring import RingFeatures
from ._ring_ops import OwnedRingOp, RingOp, cancel_ring_op, submit_and_wait
from ._run import (
    add_instrument,
    current_backend,
    current_clock,
    current_effective_deadline,
    current_ring_features,
    current_root_task,
    current_statistics,
    current_time,
    current_trio_token,
    remove_instrument,
    run,
    sleep,
    sleep_forever,
    sleep_until,
    spawn_system_task,
    wait_all_tasks_blocked,
)
from ._run_var import RunVar, RunVarToken
from ._task import Task
from ._traps import (
    Abort,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    reschedule,
    wait_task_rescheduled,
)
from ._trio_token import RingtrioToken, TrioToken

__all__ = [name for name in dir() if not name.startswith("_")]
