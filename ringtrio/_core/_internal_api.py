"""What the layers above the core use of it that is not public.

The public names (RingOp, OwnedRingOp, submit_and_wait, cancel_ring_op,
LinkedChain, submit_chain_and_wait, direct_files, Task, Nursery, reschedule,
wait_task_rescheduled, checkpoint, ...) are imported from ``ringtrio._core``.
The I/O layers, sync primitives, channels, threads and testing helpers need
a few more things, all listed here, so that the boundary between the core and
the rest of ringtrio is one short file:

- the current run: ``_local`` (``.task``/``.runner``: one attribute read on
  hot paths), ``_outside_run()`` (the error for calls from outside a run),
  ``_current_runner()``;
- the traps, for waits that park without an extra coroutine frame:
  ``_Park(abort_fn)``, ``_yield_trap``, ``_CHECKPOINT``,
  ``_cancel_pending(task)`` (checkpoint_if_cancelled's test without the
  coroutine, for generator-based coroutines that yield themselves), and
  ``_RESUME_PLAIN`` (the mark of a cancel-shielded schedule point, for
  ``ringtrio.testing.assert_checkpoints``);
- ring ops: ``_abort_failed`` (the abort function of a wait only its CQE may
  end), ``_abandoned_ops`` (memory kept alive forever when a run could not
  drain its ring), ``_NOT_HAPPENED`` (the results that mean a cancelled op
  did not happen), ``StandInPollOp`` (a POLL_ADD on another fd than the one
  its task waits on, counted in the statistics by what the task waits for);
- ``_coroutine_or_error`` and ``_require_function`` (the checks that turn
  ``start_soon(f())`` and the like into a helpful TypeError);
- ``set_buffer_group_opener``: how ringtrio/_buffer_group.py provides
  ``Nursery.buffer_group`` without the core importing it;
- ``_signal_wakeup_fd()``: the fd the signal module's wake-up fd must be
  for signals to wake the run (ringtrio/_signals.py sets it while a signal
  receiver is open);
- ``sniffio_name()``: the name runs report to sniffio (``"ringtrio"``, or
  ``"trio"`` in trio mode), for contexts the layers above set up themselves
  (``from_thread`` callbacks), and ``set_sniffio_name``, trio mode's switch;
- ``_ki_pending_for(task)``: whether an abort function of ``task`` is being
  offered the main task's Ctrl-C (its ``raise_cancel`` would take it:
  to_thread's abort leaves it pending instead);
- ``final``: ``typing.final`` that also refuses subclasses at run time, for
  the public classes trio makes final;
- ``_chain_tracebacks(outer, inner)``: one traceback through both (for an
  exception unwrapped from a group);
- ``_introspect``: the read-only views of tasks, scopes, nurseries and
  ops in flight that ``lowlevel.task_tree()`` (ringtrio/_task_tree.py) is
  built from, the ops' submission timestamps, and
  ``set_task_tree_printer`` (what ``run(dump_tasks_on=...)`` calls);
- ``_run_state_changed()``: tell the current run that something its next
  wait depends on changed outside its loop (MockClock's autojump threshold
  set from a guest run's host);
- ``warn_deprecated``: a ``TrioDeprecationWarning`` worded as every other
  (``_deprecate.py``);
- ``pin_view`` and ``address_of``: how an op points at a caller's buffer
  without holding a buffer export while it waits (``_op_memory.py``);
- ``_LINK_EXPIRED`` and ``_link_expired``: a hot path that does
  ``submit_and_wait``'s steps itself (``SocketStream.send_all``) reads the
  op's result as it does;
- ``_accel``, the C accelerator's entry points.  Read them as attributes of
  the module at call time (``_accel._sp_new_bytes``): they are set when the
  first run starts.
"""

from . import _accel, _introspect
from ._cancel_scope import _chain_tracebacks
from ._final import final
from ._local import _current_runner, _local, _outside_run
from ._nursery import set_buffer_group_opener
from ._op_memory import address_of, pin_view
from ._ring_ops import (
    _LINK_EXPIRED,
    _NOT_HAPPENED,
    _abandoned_ops,
    _abort_failed,
    _link_expired,
    StandInPollOp,
)
from ._runner import _coroutine_or_error
from ._deprecate import warn_deprecated
from ._sniffio_name import set_sniffio_name, sniffio_name
from ._task import Task, _require_function
from ._traps import _CHECKPOINT, _RESUME_PLAIN, _cancel_pending, _Park, _yield_trap


def _signal_wakeup_fd() -> int:
    """The write end of the current run's wake-up pipe, whose read end
    always has a READ pending on the ring: a byte written to it wakes the
    loop from io_uring_enter.  (run() points signal.set_wakeup_fd at it when
    it installs its SIGINT handler.)"""
    return _current_runner()._wake_w


def _run_state_changed() -> None:
    """See Runner._state_changed (a no-op outside a run)."""
    runner = getattr(_local, "runner", None)
    if runner is not None:
        runner._state_changed()


def _ki_pending_for(task: Task) -> bool:
    """Whether a Ctrl-C is pending for ``task`` (the main task): its abort
    function is then called with the raise_cancel that raises it, which goes
    before any Cancelled (see Task._attempt_delivery_of_any_pending_cancel)."""
    runner = task._runner
    return runner.ki_pending and task is runner.main_task


__all__ = [
    "StandInPollOp",
    "_CHECKPOINT",
    "_LINK_EXPIRED",
    "_NOT_HAPPENED",
    "_RESUME_PLAIN",
    "_Park",
    "_abandoned_ops",
    "_abort_failed",
    "_accel",
    "_introspect",
    "_cancel_pending",
    "_coroutine_or_error",
    "_chain_tracebacks",
    "_current_runner",
    "_ki_pending_for",
    "final",
    "_link_expired",
    "_local",
    "_outside_run",
    "_require_function",
    "_run_state_changed",
    "_signal_wakeup_fd",
    "_yield_trap",
    "address_of",
    "pin_view",
    "set_buffer_group_opener",
    "set_sniffio_name",
    "sniffio_name",
    "warn_deprecated",
]
