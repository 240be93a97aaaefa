"""Traps: what a task yields to the run loop, and the parking protocol.

A task that must wait yields a *trap* to ``Runner._run_loop``: a plain
schedule point (``_CHECKPOINT``, or ``_YIELD`` which never raises
Cancelled), or ``_Park(abort_fn)`` meaning "do not run me until somebody
calls :func:`reschedule`".  Cancellation reaches a parked task through its
abort function, which decides what cancelling that particular wait means
(see :class:`Abort`).  Everything that blocks -- sleeps, parking lots, ring
operations -- is built from these few objects, and _speedups.c's step loop
recognises the same sentinels (they are handed to it by
``_speedups.setup_steps``).
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import outcome

from ._exceptions import Cancelled
from ._local import _local, _outside_run

if TYPE_CHECKING:
    from ._task import Task

# What a ringtrio trap says when another event loop gets it instead of
# ringtrio's.  asyncio reports "Task got bad yield: <repr>", trio "trio.run
# received unrecognized yield message <repr>": the repr is our one chance to
# explain.  (Only the repr: the run loop tells traps apart by identity and
# type, so this costs the hot paths nothing.)
_OUTSIDE_RINGTRIO = (
    "<ringtrio {what}: a ringtrio operation was awaited outside ringtrio.run(). "
    "ringtrio's functions only work in tasks run by ringtrio.run(); they cannot "
    "be awaited under asyncio, trio or another event loop>"
)


class _Trap:
    """A schedule point's trap (``_CHECKPOINT``, ``_YIELD``): a sentinel with
    a repr that explains itself."""

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def __repr__(self) -> str:
        return _OUTSIDE_RINGTRIO.format(what=self._what)


# A schedule point that also checks for cancellation when the task resumes.
_CHECKPOINT = _Trap("checkpoint")
# A schedule point that never raises Cancelled.
_YIELD = _Trap("cancel-shielded checkpoint")
# Markers stored in Task._next_send: "resume with None, unless cancelled",
# and "resume with None" after a cancel-shielded schedule point.  (None means
# a plain reschedule() after a park.)  ringtrio.testing.assert_checkpoints
# tells the three apart.
_RESUME_CHECKING_CANCEL = object()
_RESUME_PLAIN = object()


class _Park:
    __slots__ = ("abort_func",)

    def __init__(self, abort_func: Callable[[Callable[[], NoReturn]], Abort]) -> None:
        self.abort_func = abort_func

    def __repr__(self) -> str:
        return _OUTSIDE_RINGTRIO.format(what="wait")


class Abort(enum.Enum):
    """What an abort function reports back to the scheduler.

    ``SUCCEEDED``: the wait is undone; the scheduler resumes the task with the
    cancellation.  ``FAILED``: the wait cannot be undone yet; somebody must
    call :func:`reschedule` later (with a result, or with the cancellation).
    """

    SUCCEEDED = 1
    FAILED = 2


@types.coroutine
def _yield_trap(trap: object) -> Any:
    return (yield trap)


# These two are generator-based coroutines (one frame per await instead of
# two): they are the hottest awaits in the runtime.
@types.coroutine
def checkpoint() -> Any:
    """A pure checkpoint: let other tasks run, then raise :exc:`Cancelled`
    if this task's cancel scope has been cancelled."""
    yield _CHECKPOINT


@types.coroutine
def cancel_shielded_checkpoint() -> Any:
    """A schedule point that never raises :exc:`Cancelled`."""
    yield _YIELD


async def checkpoint_if_cancelled() -> None:
    """Raise :exc:`Cancelled` (after a schedule point) if this task is in a
    cancelled scope; otherwise return at once without yielding."""
    task = _local.task
    if task is None:
        _outside_run()
    if _cancel_pending(task):
        await _yield_trap(_CHECKPOINT)


def _cancel_pending(task: Task) -> bool:
    """checkpoint_if_cancelled's test, for generator-based coroutines on hot
    paths (they yield ``checkpoint()`` themselves when it is true): whether
    a checkpoint now would raise (Cancelled, or KeyboardInterrupt in the
    main task).  Counted as a cancellation check for assert_checkpoints."""
    task._cancel_checks += 1
    return task._cancel_scope._eff or (task._runner.ki_pending and task is task._runner.main_task)


@types.coroutine
def wait_task_rescheduled(abort_func: Callable[[Callable[[], NoReturn]], Abort]) -> Any:
    """Park the current task until :func:`reschedule` is called for it.

    ``abort_func(raise_cancel)`` is called if the task is cancelled while
    parked.  Return ``Abort.SUCCEEDED`` if the wait was undone (the task then
    raises whatever ``raise_cancel`` raises), or ``Abort.FAILED`` if it could
    not be, in which case the code that will eventually call ``reschedule``
    decides the outcome (it may pass ``outcome.capture(raise_cancel)``).
    """
    return (yield _Park(abort_func))


def _cancelled_for(task: Task) -> Cancelled:
    """The Cancelled to raise in ``task``: it says why the task's innermost
    scope is cancelled (its own cancel() or deadline, or the reason it
    inherited from the enclosing scope whose cancellation reached it)."""
    why = task._cancel_scope._cancel_reason
    if why is None:
        # Only a scope left cancelled by misnesting has no reason (trio's
        # words for it).
        return Cancelled._create("unknown", "misnesting")
    return Cancelled._create(*why)


def _raise_cancelled_for(task: Task) -> NoReturn:
    raise _cancelled_for(task)


def reschedule(task: Task, next_send: outcome.Outcome[Any] | None = None) -> None:
    """Make a task parked in :func:`wait_task_rescheduled` runnable again;
    it resumes with ``next_send`` (an :class:`outcome.Outcome`; None means
    ``Value(None)``)."""
    if task._abort_func is None:
        raise RuntimeError(
            f"reschedule({task!r}): that task is not parked in wait_task_rescheduled "
            "(it is running, runnable, or was already rescheduled)"
        )
    task._abort_func = None
    task._next_send = next_send
    # (trio's rule: whatever the wait kept there is over with it.)
    task.custom_sleep_data = None
    runner = task._runner
    runner._runq.append(task)
    if runner._guest_waiting:
        runner._state_changed()  # (a guest run's host woke a task)
    if runner._instruments:
        runner._instrument("task_scheduled", task)

