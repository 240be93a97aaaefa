"""The scheduler: tasks, cancel scopes, nurseries, ring operations, the run loop.

Read docs/design.md first; this module implements the rules stated there.

The shape, in one paragraph: every task is a coroutine driven by
``Runner._run_loop``.  A task that must wait yields a *trap* to the loop: a
plain schedule point (``_CHECKPOINT``), or ``_Park(abort_fn)`` meaning "do
not run me until somebody calls :func:`reschedule`".  A task waiting for the
kernel parks on the *token* of its ring operation; the CQE carrying that
token reschedules it.  Cancellation is delivered to a parked task by calling
its abort function, which decides what cancelling that particular wait means
(for a ring op: submit ``IORING_OP_ASYNC_CANCEL`` and keep waiting for the
op's own CQE, so that nothing the kernel did is lost).
"""

from __future__ import annotations

import enum
import errno
import functools
import heapq
import itertools
import math
import os
import signal
import struct
import threading
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from contextvars import Context, copy_context
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import outcome
import sniffio

from . import _ring
from ._asyncgens import AsyncGenerators
from ._exceptions import Cancelled, RingtrioInternalError, RunFinishedError
from ._ring import (
    IORING_CQE_F_MORE,
    IORING_OP_ASYNC_CANCEL,
    IORING_OP_READ,
    IOSQE_CQE_SKIP_SUCCESS,
    Ring,
    RingFeatures,
)

T = TypeVar("T")
RetT = TypeVar("RetT")

inf = math.inf

# Where "the current runner / task" lives.  A thread-local so that separate
# threads can each run their own ringtrio.run().
class _RunLocal(threading.local):
    runner: Runner | None = None
    task: Task | None = None


_local = _RunLocal()


def _outside_run() -> NoReturn:
    raise RuntimeError(
        "this must be called from inside ringtrio.run() (in a ringtrio task), "
        "not from plain synchronous code or another event loop"
    )

# ---------------------------------------------------------------------------
# Traps: what a task yields to the run loop
# ---------------------------------------------------------------------------

# A schedule point that also checks for cancellation when the task resumes.
_CHECKPOINT = object()
# A schedule point that never raises Cancelled.
_YIELD = object()
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
    task._cancel_checks += 1
    if task._cancel_scope._eff or (task._runner.ki_pending and task is task._runner.main_task):
        await _yield_trap(_CHECKPOINT)


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


def _raise_cancelled() -> NoReturn:
    raise Cancelled._create()


def _cancelled_for(task: Task) -> Cancelled:
    """The Cancelled to raise in ``task``: it carries the source and reason
    of the cancelled scope (the innermost one with cancel() called that
    reaches the task)."""
    scope: CancelScope | None = task._cancel_scope
    while scope is not None:
        if scope._cancel_called:
            why = scope._cancel_reason
            if why is not None:
                return Cancelled._create(*why)
            return Cancelled._create()
        scope = scope._parent
    return Cancelled._create()


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
    runner = task._runner
    runner._runq.append(task)
    if runner._instruments:
        runner._instrument("task_scheduled", task)


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------


class Task:
    """A running coroutine.  Created by ``nursery.start_soon`` / ``start``."""

    __slots__ = (
        "_runner",
        "coro",
        "_send",
        "_name",
        "context",
        "_parent_nursery",
        "_eventual_parent_nursery",
        "_child_nurseries",
        "_cancel_scope",
        "_next_send",
        "_abort_func",
        "_deadline_seq",
        "_system",
        "_lot_breakers",
        "_finalizer",
        "_stashed",
        "_cancel_checks",
        "custom_sleep_data",
        "__weakref__",
    )

    def __init__(
        self,
        runner: Runner,
        coro: Coroutine[Any, Any, Any],
        name: object,
        context: Context,
        nursery: Nursery | None,
        system: bool,
    ) -> None:
        self._runner = runner
        self.coro = coro
        # The bound send method, made once: resuming a task is the hottest
        # operation in the runtime.
        self._send = coro.send
        self._name = name
        self.context = context
        self._parent_nursery = nursery
        self._eventual_parent_nursery: Nursery | None = None
        self._child_nurseries: list[Nursery] = []
        self._cancel_scope: CancelScope = None  # type: ignore[assignment]
        self._next_send: Any = None
        self._abort_func: Callable[[Callable[[], NoReturn]], Abort] | None = None
        self._deadline_seq = 0
        self._system = system
        # Parking lots to break if this task exits while registered (a lock
        # it holds): see add_parking_lot_breaker.
        self._lot_breakers: list[Any] | None = None
        # Internal: an async function run in this task once its coroutine
        # has finished, like a `finally:` block but not a frame under the
        # coroutine on every resume (serve_listeners closes each connection
        # this way); `_stashed` holds the coroutine's outcome meanwhile.
        self._finalizer: Callable[[], Awaitable[Any]] | None = None
        self._stashed: outcome.Outcome[Any] | None = None
        # Cancellation checks that did not yield (checkpoint_if_cancelled
        # finding nothing to raise): testing.assert_checkpoints counts them
        # as trio does, since their schedule point comes separately.
        self._cancel_checks = 0
        self.custom_sleep_data: Any = None

    def __repr__(self) -> str:
        return f"<Task {self.name!r} at {id(self):#x}>"

    @property
    def name(self) -> str:
        """The task's name: given to start_soon(name=...), else the function's
        qualified name."""
        name = self._name
        if not isinstance(name, str):
            if isinstance(name, functools.partial):
                name = name.func
            qual = getattr(name, "__qualname__", None) or repr(name)
            module = getattr(name, "__module__", None)
            if module and not qual.startswith(module):
                qual = f"{module}.{qual}"
            self._name = name = qual
        return name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    @property
    def parent_nursery(self) -> Nursery | None:
        """The nursery this task runs in (None for the root task)."""
        return self._parent_nursery

    @property
    def eventual_parent_nursery(self) -> Nursery | None:
        """For a task in ``nursery.start()`` that has not called ``started()``
        yet: the nursery it will move to.  Otherwise None."""
        return self._eventual_parent_nursery

    @property
    def child_nurseries(self) -> list[Nursery]:
        """The nurseries this task has open, outermost first."""
        return list(self._child_nurseries)

    def iter_await_frames(self) -> Iterator[tuple[types.FrameType, int]]:
        """(frame, lineno) pairs down the task's await chain."""
        coro: Any = self.coro
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                return
            yield frame, frame.f_lineno
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)

    # Called with the runner's deadline heap entry when a sleep expires.
    def _deadline_expired(self) -> None:
        if self._abort_func is not None:
            reschedule(self)

    def _abort_parking(self, raise_cancel: Callable[[], NoReturn]) -> Abort:
        # Cancelled while parked in a ParkingLot: leave the lot.
        lot = self.custom_sleep_data
        del lot._parked[self]
        self.custom_sleep_data = None
        return Abort.SUCCEEDED

    def _abort_timed_sleep(self, raise_cancel: Callable[[], NoReturn]) -> Abort:
        # The sleep is over early: its heap entry must not wake a later wait.
        if self._deadline_seq:
            self._runner._unregister_deadline(self)
        return Abort.SUCCEEDED

    def _attempt_abort(self, raise_cancel: Callable[[], NoReturn]) -> None:
        abort_func = self._abort_func
        if abort_func is None:
            return
        success = abort_func(raise_cancel)
        if type(success) is not Abort:
            raise RingtrioInternalError(
                f"abort function {abort_func!r} must return Abort.SUCCEEDED or "
                f"Abort.FAILED, not {success!r}"
            )
        if success is Abort.SUCCEEDED:
            reschedule(self, outcome.capture(raise_cancel))

    def _attempt_delivery_of_any_pending_cancel(self) -> None:
        if self._abort_func is None:
            return
        if self._cancel_scope._eff:
            self._attempt_abort(functools.partial(_raise_cancelled_for, self))
        elif self._runner.ki_pending and self is self._runner.main_task:
            self._attempt_abort(self._runner._raise_ki)


# ---------------------------------------------------------------------------
# Cancel scopes
# ---------------------------------------------------------------------------


class CancelScope:
    """A region of code that can be cancelled, by ``cancel()`` or a deadline.

    Cancellation is level-triggered: once cancelled, every checkpoint inside
    the scope raises :exc:`Cancelled` until the scope is left, and the scope
    catches the :exc:`Cancelled` that belong to it (``cancelled_caught``).
    """

    __slots__ = (
        "_deadline",
        "_relative_deadline",
        "_shield",
        "_cancel_called",
        "cancelled_caught",
        "_parent",
        "_children",
        "_nursery_tasks",
        "_eff",
        "_state",
        "_owner",
        "_deadline_seq",
        "_cancel_reason",
    )

    # _state values
    _NEW, _ACTIVE, _DONE = 0, 1, 2

    def __init__(
        self,
        *,
        deadline: float = inf,
        relative_deadline: float = inf,
        shield: bool = False,
    ) -> None:
        if math.isnan(deadline):
            raise ValueError("deadline must not be NaN")
        if math.isnan(relative_deadline):
            raise ValueError("relative_deadline must not be NaN")
        if relative_deadline < 0:
            raise ValueError(f"relative_deadline must be >= 0, not {relative_deadline!r}")
        if deadline != inf and relative_deadline != inf:
            raise ValueError("Cannot specify both a deadline and a relative deadline")
        self._deadline = deadline
        self._relative_deadline = relative_deadline
        self._shield = bool(shield)
        self._cancel_called = False
        self.cancelled_caught = False
        self._parent: CancelScope | None = None
        self._children: set[CancelScope] | None = None
        # Tasks whose innermost scope this is, other than the owner: only
        # nursery scopes have them (the nursery's children).
        self._nursery_tasks: set[Task] | None = None
        # "effectively cancelled": cancel() was called here, or an enclosing
        # scope is cancelled and no shield in between.  Cached, and kept
        # current by _update_eff when anything it depends on changes.
        self._eff = False
        self._state = CancelScope._NEW
        self._owner: Task | None = None
        self._deadline_seq = 0
        self._cancel_reason: tuple[str, str | None, str | None] | None = None

    def __repr__(self) -> str:
        state = ("unbound", "active", "exited")[self._state]
        extra = ", cancelled" if self._cancel_called else ""
        return f"<ringtrio.CancelScope {state}{extra} at {id(self):#x}>"

    # -- entering and leaving ------------------------------------------------

    def __enter__(self) -> CancelScope:
        task = _local.task
        if task is None:
            _outside_run()
        self._enter_in(task)
        return self

    def _enter_in(self, task: Task) -> None:
        if self._state != CancelScope._NEW:
            raise RuntimeError(
                "Each CancelScope may only be used for a single 'with' block; "
                "create a new CancelScope for each block"
            )
        self._state = CancelScope._ACTIVE
        runner = task._runner
        if self._relative_deadline != inf:
            self._deadline = runner.current_time() + self._relative_deadline
            self._relative_deadline = inf
        parent = task._cancel_scope
        self._parent = parent
        self._owner = task
        children = parent._children
        if children is None:
            parent._children = {self}
        else:
            children.add(self)
        task._cancel_scope = self
        self._eff = self._cancel_called or (not self._shield and parent._eff)
        if self._deadline != inf:
            if runner.current_time() >= self._deadline:
                self.cancel()
            else:
                runner._register_scope_deadline(self, self._deadline)

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        remaining = self._close(exc)
        if remaining is None:
            return True
        if remaining is exc:
            return False
        # A new exception (a narrowed group, or a misnesting error): raise it
        # with the context the original had, so tracebacks stay readable.
        old_context = remaining.__context__
        try:
            raise remaining
        finally:
            remaining.__context__ = old_context
            del remaining

    def _close(self, exc: BaseException | None) -> BaseException | None:
        if self._state != CancelScope._ACTIVE:
            err = RuntimeError(
                f"Cancel scope stack corrupted: attempted to exit {self!r}, which "
                "is not active (never entered, or already exited)"
            )
            err.__context__ = exc
            return err
        task = _local.task
        if task is None or task is not self._owner:
            err = RuntimeError(
                f"Cancel scope stack corrupted: attempted to exit {self!r} from "
                f"{task!r}, but it was entered in {self._owner!r}. Cancel scopes "
                "(and nurseries) must be exited in the task that entered them."
            )
            err.__context__ = exc
            return err
        if task._cancel_scope is not self:
            # Misnesting: an inner scope of this task is still open.  Close
            # the inner ones as abandoned and report the mistake.
            inner = task._cancel_scope
            err = RuntimeError(
                f"Cancel scope stack corrupted: attempted to exit {self!r} while "
                f"{inner!r} inside it is still open. Scopes must be exited in "
                "the reverse order they were entered (use 'with' blocks)."
            )
            err.__context__ = exc
            exc = err
            while inner is not self and inner is not None and inner._owner is task:
                inner._detach(task)
                inner = inner._parent  # type: ignore[assignment]
        parent = self._parent
        assert parent is not None
        if (
            exc is not None
            and self._eff
            and not (not self._shield and parent._eff)
        ):
            # This scope's own cancellation: absorb the Cancelled it caused.
            if isinstance(exc, Cancelled):
                self.cancelled_caught = True
                exc = None
            elif isinstance(exc, BaseExceptionGroup):
                matched, rest = exc.split(Cancelled)
                if matched is not None:
                    self.cancelled_caught = True
                exc = rest
        self._detach(task)
        return exc

    def _detach(self, task: Task) -> None:
        parent = self._parent
        assert parent is not None
        self._state = CancelScope._DONE
        if task._cancel_scope is self:
            task._cancel_scope = parent
        if parent._children is not None:
            parent._children.discard(self)
        if self._deadline_seq:
            task._runner._unregister_scope_deadline(self)

    # -- cancellation ----------------------------------------------------

    def cancel(self, reason: str | None = None) -> None:
        """Cancel this scope: every checkpoint inside it raises Cancelled.
        Idempotent; may be called before the scope is entered.  ``reason``
        ends up on the :exc:`Cancelled` exceptions (``.reason``)."""
        task = _local.task
        self._cancel("explicit", reason, repr(task) if task is not None else None)

    def _cancel(self, source: str, reason: str | None = None, source_task: str | None = None) -> None:
        if self._cancel_called:
            return
        self._cancel_reason = (source, reason, source_task)
        self._cancel_called = True
        if self._deadline_seq and self._owner is not None:
            self._owner._runner._unregister_scope_deadline(self)
        if self._state == CancelScope._ACTIVE:
            self._update_eff()

    def _deadline_expired(self) -> None:
        self._owner._runner._scope_deadlines -= 1  # type: ignore[union-attr]
        self._cancel("deadline")

    def _update_eff(self) -> None:
        # Recompute "effectively cancelled" for this scope and, where it
        # changed, for its subtree; deliver to parked tasks that just became
        # cancelled.  An explicit stack: subtrees can be deep.
        stack = [self]
        newly_cancelled: list[Task] = []
        while stack:
            scope = stack.pop()
            parent = scope._parent
            new = scope._cancel_called or (
                not scope._shield and parent is not None and parent._eff
            )
            if new == scope._eff:
                continue
            scope._eff = new
            if new:
                owner = scope._owner
                if owner is not None and owner._cancel_scope is scope:
                    newly_cancelled.append(owner)
                if scope._nursery_tasks:
                    newly_cancelled.extend(scope._nursery_tasks)
            if scope._children:
                stack.extend(scope._children)
        # Abort functions run last, with the tree consistent: they may do
        # arbitrary things, including cancelling other scopes.
        for task in dict.fromkeys(newly_cancelled):
            if task._abort_func is not None and task._cancel_scope._eff:
                task._attempt_abort(functools.partial(_raise_cancelled_for, task))

    # -- properties ------------------------------------------------------

    @property
    def cancel_called(self) -> bool:
        """True once ``cancel()`` was called or the deadline has passed."""
        if not self._cancel_called and self._state != CancelScope._DONE and self._deadline != inf:
            # As trio: a passed deadline reads as cancelled even before the
            # scheduler got round to expiring it.
            runner = getattr(_local, "runner", None)
            if runner is not None and runner.current_time() >= self._deadline:
                self._cancel("deadline")
        return self._cancel_called

    @property
    def deadline(self) -> float:
        """Absolute deadline on the ``current_time()`` clock; ``inf`` if none.
        An unentered scope made with a relative deadline has none yet
        (RuntimeError, as in trio)."""
        if self._relative_deadline != inf:
            raise RuntimeError(
                "Unentered relative cancel scope does not have an absolute deadline "
                "yet; read relative_deadline, or enter the scope first"
            )
        return self._deadline

    @deadline.setter
    def deadline(self, new_deadline: float) -> None:
        if math.isnan(new_deadline):
            raise ValueError("deadline must not be NaN")
        if self._relative_deadline != inf:
            raise RuntimeError(
                "Unentered relative cancel scope does not have an absolute deadline; "
                "set relative_deadline instead, or enter the scope first"
            )
        self._deadline = float(new_deadline)
        if self._state == CancelScope._ACTIVE and not self._cancel_called:
            runner: Runner = self._owner._runner  # type: ignore[union-attr]
            if self._deadline_seq:
                runner._unregister_scope_deadline(self)
            if self._deadline != inf:
                runner._register_scope_deadline(self, self._deadline)

    @property
    def relative_deadline(self) -> float:
        """Seconds from now to the deadline (after entry), or from entry
        (before).  An unentered scope with an absolute deadline has none."""
        if self._state != CancelScope._NEW:
            return self._deadline - self._owner._runner.current_time()  # type: ignore[union-attr]
        if self._deadline != inf:
            raise RuntimeError(
                "Unentered non-relative cancel scope does not have a relative deadline"
            )
        return self._relative_deadline

    @relative_deadline.setter
    def relative_deadline(self, new_relative_deadline: float) -> None:
        if math.isnan(new_relative_deadline):
            raise ValueError("relative_deadline must not be NaN")
        if new_relative_deadline < 0:
            raise ValueError(f"relative_deadline must be >= 0, not {new_relative_deadline!r}")
        if self._state != CancelScope._NEW:
            runner: Runner = self._owner._runner  # type: ignore[union-attr]
            self.deadline = runner.current_time() + float(new_relative_deadline)
        elif self._deadline != inf:
            raise RuntimeError(
                "Unentered non-relative cancel scope does not have a relative deadline"
            )
        else:
            self._relative_deadline = float(new_relative_deadline)

    @property
    def is_relative(self) -> bool | None:
        """None once entered; before that, whether the deadline is relative."""
        if self._state != CancelScope._NEW:
            return None
        return self._relative_deadline != inf

    @property
    def shield(self) -> bool:
        """While True, cancellation of enclosing scopes does not reach inside."""
        return self._shield

    @shield.setter
    def shield(self, new_value: bool) -> None:
        if not isinstance(new_value, bool):
            raise TypeError("shield must be a bool")
        self._shield = new_value
        if self._state == CancelScope._ACTIVE:
            self._update_eff()

    def _effective_deadline(self) -> float:
        """The earliest deadline that can cancel code inside this scope."""
        scope: CancelScope | None = self
        best = inf
        while scope is not None:
            if scope._cancel_called:
                return -inf
            if scope._deadline < best:
                best = scope._deadline
            if scope._shield:
                break
            scope = scope._parent
        return best


# ---------------------------------------------------------------------------
# Nurseries
# ---------------------------------------------------------------------------


StatusT_contra = TypeVar("StatusT_contra", contravariant=True)


class TaskStatus(Protocol[StatusT_contra]):
    """The type of the ``task_status`` argument a function started with
    :meth:`Nursery.start` receives (as ``trio.TaskStatus``), for annotations:
    ``task_status: ringtrio.TaskStatus[int] = ringtrio.TASK_STATUS_IGNORED``.
    ``started(value)`` hands ``value`` to ``start()``'s caller."""

    def started(self, value: StatusT_contra = ...) -> None: ...


class _TaskStatusIgnored:
    def __repr__(self) -> str:
        return "TASK_STATUS_IGNORED"

    def started(self, value: object = None) -> None:
        pass


TASK_STATUS_IGNORED: Any = _TaskStatusIgnored()

_NO_STATUS = object()


class _TaskStatus:
    __slots__ = ("_old_nursery", "_new_nursery", "_value")

    def __init__(self, old_nursery: Nursery, new_nursery: Nursery) -> None:
        self._old_nursery = old_nursery
        self._new_nursery = new_nursery
        self._value: object = _NO_STATUS

    def __repr__(self) -> str:
        return f"<task status object at {id(self):#x}>"

    def started(self, value: object = None) -> None:
        if self._value is not _NO_STATUS:
            raise RuntimeError("called 'started' twice on the same task status")
        self._value = value
        old = self._old_nursery
        # If start() itself was cancelled, leave the child where it is: it
        # will unwind under the cancelled scope that can catch its Cancelled.
        if old._scope._eff:
            return
        new = self._new_nursery
        assert not new._closed
        tasks = old._children
        old._children = set()
        old_scope = old._scope
        new_scope = new._scope
        # Detach everything from the old nursery's scope first, then attach
        # to the new one: attaching may run abort functions (if the new
        # nursery is cancelled) and those must see a consistent tree.
        moved_scopes = [s for s in (old_scope._children or ()) if s._owner is not old._parent_task]
        moved_tasks = [t for t in (old_scope._nursery_tasks or ())]
        for s in moved_scopes:
            old_scope._children.discard(s)  # type: ignore[union-attr]
        if old_scope._nursery_tasks is not None:
            old_scope._nursery_tasks.clear()
        for task in tasks:
            task._parent_nursery = new
            task._eventual_parent_nursery = None
            new._children.add(task)
        if new_scope._children is None:
            new_scope._children = set()
        for s in moved_scopes:
            s._parent = new_scope
            new_scope._children.add(s)
        if new_scope._nursery_tasks is None:
            new_scope._nursery_tasks = set()
        for task in moved_tasks:
            # The task's base scope moves; a scope it entered itself (already
            # moved above) stays its innermost one.
            if task._cancel_scope is old_scope:
                task._cancel_scope = new_scope
            new_scope._nursery_tasks.add(task)
        for s in moved_scopes:
            s._update_eff()
        for task in moved_tasks:
            task._attempt_delivery_of_any_pending_cancel()
        old._check_nursery_closed()


class Nursery:
    """A place where child tasks run; the ``async with`` block that opened it
    does not finish until all of them have.  Get one from :func:`open_nursery`."""

    __slots__ = (
        "_parent_task",
        "_scope",
        "_children",
        "_pending_excs",
        "_nested_child_running",
        "_parent_waiting_in_aexit",
        "_pending_starts",
        "_closed",
        "_strict",
        "_exit_callbacks",
        "__weakref__",
    )

    def __init__(self, parent_task: Task, scope: CancelScope, strict: bool) -> None:
        self._parent_task = parent_task
        self._scope = scope
        self._children: set[Task] = set()
        self._pending_excs: list[BaseException] = []
        self._nested_child_running = True
        self._parent_waiting_in_aexit = False
        self._pending_starts = 0
        self._closed = False
        self._strict = strict
        # Cleanups run when the nursery closes, after its children
        # (resources owned by the nursery: multishot requests, buffer groups).
        self._exit_callbacks: list[Callable[[], Any]] | None = None
        if scope._nursery_tasks is None:
            scope._nursery_tasks = set()

    def __repr__(self) -> str:
        return f"<ringtrio.Nursery at {id(self):#x}>"

    @property
    def cancel_scope(self) -> CancelScope:
        """The scope around the nursery: cancelling it cancels every child."""
        return self._scope

    @property
    def child_tasks(self) -> frozenset[Task]:
        return frozenset(self._children)

    @property
    def parent_task(self) -> Task:
        return self._parent_task

    def start_soon(
        self, async_fn: Callable[..., Awaitable[Any]], *args: Any, name: object = None
    ) -> None:
        """Start ``async_fn(*args)`` as a child task of this nursery."""
        self._parent_task._runner._spawn(async_fn, args, self, name)

    async def start(
        self, async_fn: Callable[..., Awaitable[Any]], *args: Any, name: object = None
    ) -> Any:
        """Start ``async_fn(*args, task_status=...)`` and wait until it calls
        ``task_status.started(value)``; return that value.  Until then the
        child runs "inside" this call: its errors are raised here and
        cancelling this call cancels it."""
        if self._closed:
            raise RuntimeError("Nursery is closed to new arrivals")
        runner = self._parent_task._runner
        try:
            self._pending_starts += 1
            try:
                async with open_nursery(strict_exception_groups=True) as old_nursery:
                    task_status = _TaskStatus(old_nursery, self)

                    def thunk(*a: Any) -> Any:
                        return async_fn(*a, task_status=task_status)

                    task = runner._spawn(thunk, args, old_nursery, name or async_fn)
                    task._eventual_parent_nursery = self
            except BaseExceptionGroup as group:
                if len(group.exceptions) == 1:
                    exc = group.exceptions[0]
                    try:
                        raise exc
                    finally:
                        del exc, group
                raise
            if task_status._value is _NO_STATUS:
                raise RuntimeError("child exited without calling task_status.started()")
            return task_status._value
        finally:
            self._pending_starts -= 1
            self._check_nursery_closed()

    def _add_exc(self, exc: BaseException) -> None:
        self._pending_excs.append(exc)
        source = "KeyboardInterrupt" if isinstance(exc, KeyboardInterrupt) else "nursery"
        self._scope._cancel(
            source, f"child task raised exception {exc!r}", repr(self._parent_task)
        )

    def _check_nursery_closed(self) -> None:
        if not (self._nested_child_running or self._children or self._pending_starts):
            self._closed = True
            if self._parent_waiting_in_aexit:
                self._parent_waiting_in_aexit = False
                reschedule(self._parent_task)

    def _child_finished(self, task: Task, result: outcome.Outcome[Any]) -> None:
        self._children.remove(task)
        if type(result) is outcome.Error:
            self._add_exc(result.error)
        if not (self._children or self._nested_child_running or self._pending_starts):
            self._check_nursery_closed()

    async def _nested_child_finished(
        self, nested_child_exc: BaseException | None
    ) -> BaseException | None:
        if nested_child_exc is not None:
            self._add_exc(nested_child_exc)
        self._nested_child_running = False
        self._check_nursery_closed()
        if not self._closed:

            def aborted(raise_cancel: Callable[[], NoReturn]) -> Abort:
                # Cancelled needs no action: the enclosing cancellation
                # already reaches the children.  KeyboardInterrupt is kept.
                exn = outcome.capture(raise_cancel).error  # type: ignore[union-attr]
                if not isinstance(exn, Cancelled):
                    self._add_exc(exn)
                del exn
                return Abort.FAILED

            self._parent_waiting_in_aexit = True
            await wait_task_rescheduled(aborted)
        else:
            await cancel_shielded_checkpoint()
        if self._exit_callbacks:
            callbacks, self._exit_callbacks = self._exit_callbacks, None
            for cb in reversed(callbacks):
                try:
                    result = cb()
                    if result is not None and hasattr(result, "__await__"):
                        with CancelScope(shield=True):
                            await result
                except BaseException as exc:  # noqa: BLE001 - reported via the group
                    self._pending_excs.append(exc)
        popped = self._parent_task._child_nurseries.pop()
        assert popped is self
        if self._pending_excs:
            excs = self._pending_excs
            self._pending_excs = []
            if not self._strict and len(excs) == 1:
                return excs[0]
            return BaseExceptionGroup("Exceptions from ringtrio nursery", excs)
        return None

    def _add_exit_callback(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` (sync, or returning an awaitable) when the nursery
        closes, after all children have finished.  Used for resources owned by
        the nursery."""
        if self._exit_callbacks is None:
            self._exit_callbacks = []
        self._exit_callbacks.append(callback)

    def buffer_group(self, count: int, size: int, *, incremental: bool | None = None) -> Any:
        """A provided-buffer group of ``count`` buffers of ``size`` bytes,
        owned by this nursery (issue 5; see ``ringtrio/_buffer_group.py``)."""
        from .._buffer_group import _open_group

        return _open_group(self, count, size, incremental)


class _NurseryManager:
    __slots__ = ("_strict", "_scope", "_nursery")

    def __init__(self, strict: bool | None) -> None:
        self._strict = strict

    async def __aenter__(self) -> Nursery:
        task = _local.task
        if task is None:
            _outside_run()
        strict = self._strict if self._strict is not None else task._runner.strict_exception_groups
        scope = CancelScope()
        scope._enter_in(task)
        self._scope = scope
        nursery = Nursery(task, scope, strict)
        self._nursery = nursery
        task._child_nurseries.append(nursery)
        return nursery

    async def __aexit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        new_exc = await self._nursery._nested_child_finished(exc)
        combined = self._scope._close(new_exc)
        if combined is None:
            return True
        if combined is exc:
            return False
        old_context = combined.__context__
        try:
            raise combined
        finally:
            combined.__context__ = old_context
            del combined, exc, new_exc

    def __enter__(self) -> NoReturn:
        raise RuntimeError("use 'async with open_nursery(...)', not 'with open_nursery(...)'")

    def __exit__(self, *args: Any) -> None:  # pragma: no cover
        pass


def open_nursery(strict_exception_groups: bool | None = None) -> _NurseryManager:
    """Open a nursery: ``async with ringtrio.open_nursery() as nursery:``.

    Errors from children (and the body) leave as a :exc:`BaseExceptionGroup`.
    """
    return _NurseryManager(strict_exception_groups)


# ---------------------------------------------------------------------------
# Ring operations: the one path every I/O layer uses
# ---------------------------------------------------------------------------


class RingOp:
    """One io_uring operation: the fields of its SQE, the memory it owns
    until its final CQE, and what a completion means.

    The default meaning (used by :func:`submit_and_wait`) is "wake the task
    parked on me with ``(res, flags)``".  Subclasses override
    :meth:`_on_cqe` (e.g. multishot requests that produce many CQEs).
    """

    __slots__ = (
        "opcode",
        "fd",
        "addr",
        "length",
        "off",
        "op_flags",
        "ioprio",
        "sqe_flags",
        "buf_index",
        "keepalive",
        "token",
        "task",
        "cancel_raise",
        "linked",
        "done",
        "result",
    )

    def __init__(
        self,
        opcode: int,
        fd: int = -1,
        addr: Any = 0,
        length: int = 0,
        off: int = 0,
        op_flags: int = 0,
        *,
        ioprio: int = 0,
        sqe_flags: int = 0,
        buf_index: int = 0,
        keepalive: object = None,
    ) -> None:
        self.opcode = opcode
        self.fd = fd
        self.addr = addr
        self.length = length
        self.off = off
        self.op_flags = op_flags
        self.ioprio = ioprio
        self.sqe_flags = sqe_flags
        self.buf_index = buf_index
        # `addr` is an integer address, or a bytes object or cffi buffer
        # whose memory the SQE points at (it must then also be kept alive,
        # normally by being the keepalive).
        # Whatever `addr`/`off` point into: kept alive until the final CQE,
        # whatever happens to the task that submitted the op.
        self.keepalive = keepalive
        self.token = 0
        self.task: Task | None = None
        self.cancel_raise: Callable[[], NoReturn] | None = None
        self.linked = False
        self.done = False
        # Set by the default _on_cqe for submit_and_wait to pick up.
        self.result: Any = None

    def __repr__(self) -> str:
        name = _ring.OPCODE_NAMES.get(self.opcode, str(self.opcode))
        return f"<RingOp {name} fd={self.fd} token={self.token:#x}>"

    def _cancel_wanted(self) -> bool:
        """Whether a cancel of this op (in flight) still stands; a cancel the
        kernel could not match is retried while it does.  Ops owned by a
        nursery rather than a waiting task override this."""
        return self.cancel_raise is not None and self.task is not None

    def _on_cqe(self, res: int, flags: int) -> None:
        task = self.task
        if task is None:
            return
        self.task = None
        if self.cancel_raise is not None and res in _NOT_HAPPENED:
            # We asked the kernel to cancel and it did: the op did not happen.
            # (-EINTR: an op interrupted in an io-wq worker before it
            # transferred anything; a partial transfer is a result.)
            reschedule(task, outcome.capture(self.cancel_raise))
        else:
            if self.linked and res == -errno.ECANCELED:
                # The linked deadline fired in the kernel: it did not happen.
                self.result = _LINK_EXPIRED
            else:
                self.result = (res, flags)
            # reschedule(task), inlined: this runs once per completed op.
            task._abort_func = None
            task._next_send = None
            runner = task._runner
            runner._runq.append(task)
            if runner._instruments:
                runner._instrument("task_scheduled", task)


_LINK_EXPIRED = object()
# What a task that returned normally reports to its nursery: only the main
# task's return value is ever used, so the others share one (never
# unwrapped) outcome instead of allocating one each.
_EXITED_OK: outcome.Value[None] = outcome.Value(None)
_MAX_KERNEL_DEADLINE = 2.0**62 / 1e9  # seconds; beyond this int64 ns overflows
_NOT_HAPPENED = frozenset({-errno.ECANCELED, -errno.EINTR})
# Ops still in flight when a run could not drain its ring: their memory is
# kept alive forever rather than freed under the kernel's feet.
_abandoned_ops: list[RingOp] = []
_IGNORED_OP = RingOp(_ring.IORING_OP_NOP)

# ringtrio/_core/_speedups.c: Runner._submit_op's and
# Runner._dispatch_cqes's work in C, on the same objects (an accelerator of
# this module, not a layer of its own).  Optional: without it (or with
# RINGTRIO_NO_SPEEDUPS=1 in the environment) the Python code below does the
# same.
_sp_submit: Callable[..., Any] | None = None
_sp_dispatch: Callable[..., Any] | None = None
_sp_take_tokens: Callable[..., Any] | None = None
_sp_prep_open_chain: Callable[..., int] | None = None
_sp_prep_close_direct: Callable[..., int] | None = None
_sp_lease_view: Callable[..., memoryview] | None = None
_sp_run_batch: Callable[..., tuple[int, Any, int, Any]] | None = None
# new_bytes(n): a private, uninitialized bytes object for a READ to fill
# (file reads then copy once, as os.read; see _file_io._pread).
_sp_new_bytes: Callable[[int], bytes] | None = None
_sp_iovecs: Callable[[list[bytes]], bytes] | None = None


def _setup_speedups(ffi: Any, lib: Any) -> None:
    global _sp_submit, _sp_dispatch, _sp_new_bytes, _sp_iovecs, _sp_take_tokens
    global _sp_prep_open_chain, _sp_prep_close_direct, _sp_lease_view, _sp_run_batch
    if _sp_submit is not None or os.environ.get("RINGTRIO_NO_SPEEDUPS"):
        return
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return
    prep = int(ffi.cast("uintptr_t", ffi.addressof(lib, "rt_prep")))
    _speedups.setup(RingOp, Task, _LINK_EXPIRED, prep)
    _speedups.setup_chains(
        LinkedOp, LinkedChain,
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "rt_prep_open_chain"))),
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "rt_prep_close_direct"))),
    )
    _speedups.setup_steps(
        Task, CancelScope, _Park, _CHECKPOINT, _YIELD, _RESUME_PLAIN, _RESUME_CHECKING_CANCEL
    )
    _sp_submit, _sp_dispatch, _sp_run_batch = _speedups.submit, _speedups.dispatch, _speedups.run_batch
    _sp_new_bytes, _sp_iovecs = _speedups.new_bytes, _speedups.iovecs
    _sp_take_tokens, _sp_lease_view = _speedups.take_tokens, _speedups.lease_view
    _sp_prep_open_chain, _sp_prep_close_direct = _speedups.prep_open_chain, _speedups.prep_close_direct


# Reserved tokens: the low slots never hold user ops.
_TOKEN_IGNORE = 0  # CQEs we do not care about (cancel results, link timeouts)
_TOKEN_WAKEUP = 1  # the read kept pending on the wake-up pipe
_RESERVED_SLOTS = 8
_SLOT_MASK = 0xFFFFFFFF


@types.coroutine
def submit_and_wait(op: RingOp) -> Generator[Any, Any, tuple[int, int]]:
    """Submit a ring op and park the current task until its CQE arrives.

    This is a checkpoint: it raises :exc:`Cancelled` before submitting if the
    task is already cancelled.  If the task is cancelled while the op is in
    flight, ``IORING_OP_ASYNC_CANCEL`` is submitted and the task keeps
    waiting for the op's own CQE: ``-ECANCELED`` raises :exc:`Cancelled`, any
    other result is returned (the cancellation then lands at the next
    checkpoint).  When the task has a finite deadline, it rides along as a
    linked ``IORING_OP_LINK_TIMEOUT``.  Returns ``(res, cqe_flags)``; a
    negative ``res`` is ``-errno`` and is not raised here.

    (A generator-based coroutine: one frame per op; this is the hot path of
    all I/O.)
    """
    task = _local.task
    if task is None:
        _outside_run()
    runner = task._runner
    if task._cancel_scope._eff or (runner.ki_pending and task is runner.main_task):
        yield _CHECKPOINT
    while True:
        runner._submit_op(op, task)
        # The plain completion path resumes us with None and leaves the
        # result on the op (no outcome object per op); cancellation and
        # errors arrive as outcomes and raise here.
        yield _Park(op._abort)  # type: ignore[attr-defined]
        result = op.result
        op.result = None
        if result is not _LINK_EXPIRED:
            return result  # type: ignore[no-any-return]
        # The kernel deadline fired.  The runner has already expired Python
        # deadlines up to now, so if that deadline still stands we are
        # cancelled; if it was moved later meanwhile, just submit again.
        if task._cancel_scope._eff:
            _release_memory(op)
            raise _cancelled_for(task)


def _release_memory(op: RingOp) -> None:
    op.keepalive = None
    if type(op.addr) is not int:
        op.addr = 0


def _op_abort(self: RingOp, raise_cancel: Callable[[], NoReturn]) -> Abort:
    # Keep the task parked: only the op's own CQE says whether it happened.
    if self.cancel_raise is None:
        self.cancel_raise = raise_cancel
        task = self.task
        if task is not None:
            task._runner._cancel_op(self)
    return Abort.FAILED


class _CancelOp(RingOp):
    """The IORING_OP_ASYNC_CANCEL for one op, with a CQE we look at.

    Why not fire-and-forget: the kernel can answer -ENOENT while the target
    is between attempts (a socket op woken by poll and being re-issued is
    briefly in no list the cancel searches), and the op then carries on as if
    nothing had been asked.  So a -ENOENT for an op that is still in flight
    and still meant to be cancelled is retried.  (-EALREADY means the op is
    running in a worker and has been told to stop: it will complete.)
    """

    __slots__ = ("runner", "target", "target_token", "retries")
    MAX_RETRIES = 1000

    def __init__(self, runner: Runner, target: RingOp, retries: int) -> None:
        super().__init__(IORING_OP_ASYNC_CANCEL, -1, target.token)
        self.runner = runner
        self.target = target
        # Op objects are reused (sockets keep one per direction): a late
        # answer about an earlier submission must not touch the next one.
        self.target_token = target.token
        self.retries = retries

    def _on_cqe(self, res: int, flags: int) -> None:
        target = self.target
        if (
            res == -errno.ENOENT
            and target.token == self.target_token
            and not target.done
            and target._cancel_wanted()
            and self.retries < self.MAX_RETRIES
        ):
            self.runner._cancel_op(target, self.retries + 1)


RingOp._abort = _op_abort  # type: ignore[attr-defined]


class OwnedRingOp(RingOp):
    """A ring op owned by a resource or nursery instead of a waiting task:
    the multishot accept of a listener, the multishot receive of a stream.

    It is submitted with no task and no linked deadline (it lives until it is
    cancelled or fails), its CQEs are handled in ``_on_cqe`` by the subclass,
    and it is cancelled through the same retried cancel as every other op.
    Subclasses set ``armed = False`` when their final CQE arrives and then
    call :meth:`_ended`, which wakes a task waiting in :meth:`stop`.
    """

    __slots__ = ("runner", "armed", "cancel_requested", "closed_by_user", "stopper")

    def __init__(self, runner: Runner, opcode: int, **fields: Any) -> None:
        super().__init__(opcode, **fields)
        self.runner = runner
        self.armed = False
        self.cancel_requested = False
        # Set when the resource was closed under the request (not by its
        # owner): the owner then reports ClosedResourceError.
        self.closed_by_user = False
        self.stopper: Task | None = None  # a task waiting in stop()

    def _arm(self) -> None:
        self.cancel_requested = False
        self.runner._submit_op(self, None, inf)
        self.armed = True

    def _cancel_wanted(self) -> bool:
        return self.armed

    def request_cancel(self) -> None:
        """Cancel the request (once); its final CQE still has to arrive."""
        if self.armed and not self.cancel_requested:
            self.cancel_requested = True
            self.runner._cancel_op(self)

    def _on_socket_close(self) -> None:
        self.closed_by_user = True
        self.request_cancel()

    async def stop(self) -> None:
        """Cancel the request (if armed) and wait, shielded, for its final
        CQE.  One task at a time."""
        if not self.armed:
            return
        self.request_cancel()
        with CancelScope(shield=True):
            while self.armed:
                self.stopper = _local.task
                await wait_task_rescheduled(_abort_failed)

    def _ended(self) -> None:
        """For subclasses, once ``armed`` is False: wake stop()'s waiter."""
        stopper = self.stopper
        if stopper is not None:
            self.stopper = None
            reschedule(stopper)


def _abort_failed(raise_cancel: Callable[[], NoReturn]) -> Abort:
    # A wait that only the awaited CQE may end.
    return Abort.FAILED


def cancel_ring_op(op: RingOp, error: BaseException) -> None:
    """Cancel an op that is in flight because its resource is going away
    (e.g. the socket it reads from is being closed).

    If the kernel confirms the op did not happen, the task waiting on it gets
    ``error`` raised (typically :exc:`ClosedResourceError`); if the op
    completed in the race, the task gets its result as usual.  Does nothing
    for an op that is not in flight.
    """
    task = op.task
    if op.done or task is None:
        return

    def raise_error() -> NoReturn:
        raise error

    already_requested = op.cancel_raise is not None
    op.cancel_raise = raise_error
    if not already_requested:
        task._runner._cancel_op(op)


# ---------------------------------------------------------------------------
# Linked chains: several SQEs queued as one unit, one wake-up
# ---------------------------------------------------------------------------


class LinkedOp(RingOp):
    """One member of a :class:`LinkedChain`.  It has a token of its own, so
    its CQE is routed (and its token released) like any op's; the result
    goes to the chain."""

    __slots__ = ("chain", "index")

    def __init__(self, chain: LinkedChain, index: int, opcode: int) -> None:
        super().__init__(opcode)
        self.chain = chain
        self.index = index

    def _cancel_wanted(self) -> bool:
        return self.cancel_raise is not None and not self.done

    def _on_cqe(self, res: int, flags: int) -> None:
        self.task = None
        chain = self.chain
        chain.results[self.index] = res
        chain.pending -= 1
        if chain.cancel_raise is not None:
            chain._cancel_next(self.index + 1)
        if chain.pending == 0:
            chain._completed()


class LinkedChain:
    """Ring ops the kernel runs one after the other (``IOSQE_IO_LINK`` /
    ``IOSQE_IO_HARDLINK``), queued by one native call and waited for as one:
    the task parked on the chain is woken once, when every member's CQE is
    in, with every member's result.

    A subclass says how its SQEs are prepared (:meth:`_prep`: one call into
    the native layer, which reserves all the SQEs together so that no enter
    can split the chain) and what counts as "the chain happened" for a task
    cancelled while it ran (:meth:`_happened`).

    Cancelling a chain cancels the member the kernel is working on; when its
    CQE comes back, the next member still to come is cancelled too (a member
    behind an unfinished one is in no list ASYNC_CANCEL searches, so it is
    only asked once its predecessor is done).  Soft-linked members after a
    cancelled one are failed by the kernel itself.  Either way the task is
    only woken when all CQEs are in, so memory the chain points into is never
    released early, and whatever a member did (an opened file in a direct
    slot) is visible in ``results`` for the caller to clean up.

    Chains carry no linked timeout: a deadline reaches them the Python way
    (the scope's deadline expires, the task's abort cancels the chain).
    """

    __slots__ = ("members", "results", "pending", "task", "cancel_raise")

    def __init__(self, opcodes: tuple[int, ...]) -> None:
        # (A chain and its members refer to each other: keep chains for
        # reuse rather than leaving each one to the cycle collector.)
        self.members = tuple([LinkedOp(self, i, opcode) for i, opcode in enumerate(opcodes)])
        self.results = [0] * len(opcodes)
        self.pending = 0
        self.task: Task | None = None
        self.cancel_raise: Callable[[], NoReturn] | None = None

    def _prep(self, runner: Runner, tokens: list[int]) -> int:
        """Queue the members' SQEs on ``runner``'s ring, member i with
        ``tokens[i]`` as user_data; 0 or -errno."""
        raise NotImplementedError

    def _happened(self) -> bool:
        """Whether a cancelled task gets the results (True) or Cancelled."""
        return self.results[-1] not in _NOT_HAPPENED

    def _completed(self) -> None:
        task = self.task
        if task is not None:
            self.task = None
            reschedule(task)

    def _abort(self, raise_cancel: Callable[[], NoReturn]) -> Abort:
        if self.cancel_raise is None:
            self.cancel_raise = raise_cancel
            self._cancel_next(0)
        return Abort.FAILED

    def _cancel_next(self, start: int) -> None:
        for op in self.members[start:]:
            if not op.done:
                if op.cancel_raise is None and self.task is not None:
                    op.cancel_raise = self.cancel_raise
                    self.task._runner._cancel_op(op)
                return


def submit_chain(runner: Runner, chain: LinkedChain, task: Task | None) -> None:
    """Give every member of ``chain`` a token and queue its SQEs (sent with
    this pass's enter).  Parks nothing; see :func:`submit_chain_and_wait`."""
    if runner._ops_closed:
        raise RuntimeError("the ringtrio run this op belongs to has finished")
    chain.task = task
    chain.cancel_raise = None
    members = chain.members
    chain.pending = len(members)
    if _sp_take_tokens is not None:
        tokens = _sp_take_tokens(runner._op_slots, runner._op_gens, runner._free_slots, members, task)
        runner._ops_in_flight += len(members)
    else:
        tokens = [runner._take_token(op, task) for op in members]
    runner._sq_dirty = True
    rc = chain._prep(runner, tokens)
    if rc < 0:
        for token in tokens:
            runner._release_token(token & _SLOT_MASK)
        chain.task = None
        chain.pending = 0
        raise OSError(-rc, f"could not queue {type(chain).__name__}: {os.strerror(-rc)}")


@types.coroutine
def submit_chain_and_wait(chain: LinkedChain) -> Generator[Any, Any, list[int]]:
    """Submit a :class:`LinkedChain` and park until all its CQEs are in.

    A checkpoint, like :func:`submit_and_wait`.  Returns the members'
    results (``-errno`` for failures, ``-ECANCELED`` for members the kernel
    skipped).  If the task was cancelled while the chain ran, it gets the
    results when ``chain._happened()``, and :exc:`Cancelled` otherwise.
    """
    task = _local.task
    if task is None:
        _outside_run()
    # (checkpoint_if_cancelled, inlined: no coroutine object per chain.)
    if task._cancel_scope._eff or (task._runner.ki_pending and task is task._runner.main_task):
        yield _CHECKPOINT
    submit_chain(task._runner, chain, task)
    yield _Park(chain._abort)
    if chain.cancel_raise is not None and not chain._happened():
        chain.cancel_raise()
    return chain.results


class DirectFiles:
    """The ring's registered file table: ``size`` direct-descriptor slots
    (sparse, registered on first use), which let a chain open a file and
    use it in the same submission (``OPENAT`` with ``file_index``, then ops
    with ``IOSQE_FIXED_FILE``).

    Slots are handed out from a free list.  The table dies with the ring, so
    files left in it when a run ends are closed by the kernel.
    """

    __slots__ = ("runner", "size", "free", "pool")

    def __init__(self, runner: Runner, size: int) -> None:
        self.runner = runner
        self.size = size
        self.free = list(range(size - 1, -1, -1))
        # Reusable objects (chains with their buffers) for the layer above.
        self.pool: list[Any] = []

    def take(self) -> int | None:
        """A free slot, or None when all are in use."""
        free = self.free
        return free.pop() if free else None

    def give_back(self, slot: int) -> None:
        """Return a slot that holds no file (its OPENAT failed or never ran)."""
        self.free.append(slot)

    def close(self, slot: int) -> None:
        """Close the file in ``slot`` (no op of its own may be in flight)
        and free the slot.

        Why the slot can be reused at once, and why nobody waits for this
        CLOSE: closing a direct descriptor only removes it from the table,
        which the kernel does while it submits the SQE, never later (no
        io-wq punt, no -EAGAIN).  So every SQE queued after this one -- the
        next OPENAT into the slot included -- finds it empty.  Its CQE is
        skipped on success; a failure (the slot was already empty) is
        harmless and lands on the ignore token.  After the run's last pass
        there is nothing to do: the table goes with the ring.
        """
        runner = self.runner
        if not runner._ops_closed:
            runner._sq_dirty = True
            if _sp_prep_close_direct is not None:
                rc = _sp_prep_close_direct(runner._ring_addr, slot, _TOKEN_IGNORE, IOSQE_CQE_SKIP_SUCCESS)
            else:
                rc = runner._lib.rt_prep_close_direct(
                    runner._ring_ptr, slot, _TOKEN_IGNORE, IOSQE_CQE_SKIP_SUCCESS
                )
            if rc < 0:  # pragma: no cover - SQ could not be drained
                raise RingtrioInternalError(f"could not queue CLOSE: {os.strerror(-rc)}")
        self.free.append(slot)


_DIRECT_FILES_SIZE = 1024
_NOT_PROBED = object()


def direct_files() -> DirectFiles | None:
    """This run's :class:`DirectFiles`, registering the table on first use;
    None when the kernel cannot do what it is for (no sparse registration,
    or no OPENAT/CLOSE/READ/WRITE)."""
    task = _local.task
    if task is None:
        _outside_run()
    runner = task._runner
    # Kept on the runner (set here, not in Runner.__init__): it is probed on
    # first use and dies with the run.
    files: Any = getattr(runner, "_direct_files", _NOT_PROBED)
    if files is not _NOT_PROBED:
        return files  # type: ignore[no-any-return]
    files = None
    ops = runner.features.opcodes
    needed = (_ring.IORING_OP_OPENAT, _ring.IORING_OP_CLOSE, IORING_OP_READ, _ring.IORING_OP_WRITE)
    if all(op in ops for op in needed):
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        size = _DIRECT_FILES_SIZE if soft == resource.RLIM_INFINITY else min(_DIRECT_FILES_SIZE, soft)
        if size > 0 and runner._lib.rt_files_register_sparse(runner._ring_ptr, size) >= 0:
            files = DirectFiles(runner, size)
    runner._direct_files = files  # type: ignore[attr-defined]
    return files


# ---------------------------------------------------------------------------
# Clocks, instruments, tokens, run-local variables
# ---------------------------------------------------------------------------


class Clock:
    """Interface for a custom clock (see ``ringtrio.testing.MockClock``)."""

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def deadline_to_sleep_time(self, deadline: float) -> float:  # pragma: no cover
        raise NotImplementedError


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


_INSTRUMENT_HOOKS = (
    "before_run",
    "after_run",
    "task_spawned",
    "task_scheduled",
    "before_task_step",
    "after_task_step",
    "task_exited",
    "before_io_wait",
    "after_io_wait",
)


class TrioToken:
    """A handle to a running ringtrio loop, usable from any thread.

    (Named like trio's for portability; ``RingtrioToken`` is the same class.)
    """

    __slots__ = ("_runner",)

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def run_sync_soon(
        self, sync_fn: Callable[..., Any], *args: Any, idempotent: bool = False
    ) -> None:
        """Schedule ``sync_fn(*args)`` to run in the loop's thread soon.
        Thread-safe and signal-safe.  Raises :exc:`RunFinishedError` if the
        run is over.  An exception from ``sync_fn`` crashes the run."""
        self._runner._run_sync_soon(sync_fn, args, idempotent)


RingtrioToken = TrioToken


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


class RunVar(Generic[T]):
    """A variable whose value is local to one call of :func:`ringtrio.run`."""

    __slots__ = ("_name", "_default")
    _NO_DEFAULT = object()

    def __init__(self, name: str, default: Any = _NO_DEFAULT) -> None:
        self._name = name
        self._default = default

    def get(self, default: Any = _NO_DEFAULT) -> T:
        runner = _current_runner()
        try:
            return runner._runvars[self]  # type: ignore[no-any-return]
        except KeyError:
            if default is not RunVar._NO_DEFAULT:
                return default  # type: ignore[no-any-return]
            if self._default is not RunVar._NO_DEFAULT:
                return self._default  # type: ignore[no-any-return]
            raise LookupError(self) from None

    def set(self, value: T) -> RunVarToken[T]:
        runner = _current_runner()
        old = runner._runvars.get(self, RunVarToken.MISSING)
        runner._runvars[self] = value
        return RunVarToken(self, old)

    def reset(self, token: RunVarToken[T]) -> None:
        if token is None:  # pragma: no cover
            raise TypeError("token must not be None")
        if token._redeemed:
            raise ValueError("token has already been used")
        if token._var is not self:
            raise ValueError("token is not for this RunVar")
        runner = _current_runner()
        if token.old_value is RunVarToken.MISSING:
            runner._runvars.pop(self, None)
        else:
            runner._runvars[self] = token.old_value
        token._redeemed = True

    def __repr__(self) -> str:
        return f"<RunVar name={self._name!r}>"


class RunVarToken(Generic[T]):
    MISSING = object()
    __slots__ = ("_var", "old_value", "_redeemed")

    def __init__(self, var: RunVar[T], old_value: Any) -> None:
        self._var = var
        self.old_value = old_value
        self._redeemed = False


# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------

_CQE_STRUCT = struct.Struct("QiI")
_iter_cqes = _CQE_STRUCT.iter_unpack


class Runner:
    """The state of one call to :func:`run`."""

    def __init__(
        self,
        clock: Clock | None,
        instruments: tuple[Instrument, ...],
        strict_exception_groups: bool,
    ) -> None:
        self.ring = Ring(_ring.SQ_ENTRIES, _ring.CQ_ENTRIES)
        self.features: RingFeatures = self.ring.features
        self._lib = self.ring.lib
        self._ring_ptr = self.ring.ptr
        self._ring_addr = int(self.ring.ffi.cast("uintptr_t", self._ring_ptr))
        _setup_speedups(self.ring.ffi, self._lib)
        self.clock = clock
        # With the default clock, deadlines are CLOCK_MONOTONIC seconds and can
        # ride with ring ops as kernel link timeouts.  A custom clock's time is
        # not the kernel's: then deadlines are handled in Python only.
        self._kernel_deadlines = clock is None
        if clock is None:
            self.current_time: Callable[[], float] = time.monotonic
        else:
            self.current_time = clock.current_time
        self.strict_exception_groups = strict_exception_groups
        self._instruments: list[Instrument] = []
        for inst in instruments:
            self.add_instrument(inst)
        self._runq: deque[Task] = deque()
        self._ntasks = 0
        # Deadlines live in two structures: a deque of entries that arrived
        # in nondecreasing deadline order (the common case: every sleep(d) or
        # move_on_after(d) with the same d) -- O(1) in and out -- and a heap
        # for the rest.  The earliest deadline is at the head of one of them.
        self._deadlines: list[tuple[float, int, Any]] = []
        self._sorted_deadlines: deque[tuple[float, int, Any]] = deque()
        self._deadline_counter = itertools.count(1)
        self._stale_deadlines = 0
        # Active cancel scopes with a registered deadline.  While zero, no
        # ring op can need a linked timeout: skip the scope-chain walk.
        self._scope_deadlines = 0
        self._runvars: dict[RunVar[Any], Any] = {}
        self.ki_pending = False
        # A KeyboardInterrupt that has not yet been offered to a parked main
        # task.  Offered once: if the main task's wait cannot be aborted right
        # away (Abort.FAILED), it gets it at its next checkpoint or park.
        self._ki_fresh = False
        self.main_task: Task | None = None
        self.main_outcome: outcome.Outcome[Any] | None = None
        self.init_task: Task | None = None
        self.system_nursery: Nursery | None = None
        self.system_context: Context = copy_context()
        self.system_context.run(sniffio.current_async_library_cvar.set, "ringtrio")
        self.trio_token = TrioToken(self)
        self.asyncgens = AsyncGenerators(self)
        self._idle_waiters: list[tuple[float, int, Task]] = []
        self._idle_counter = itertools.count()
        # Tokens: slot index in the low 32 bits, the slot's generation in the
        # high 32.  A CQE whose generation does not match the slot's current
        # one is stale (its op is long gone) and wakes nobody.
        self._op_slots: list[RingOp | None] = [_IGNORED_OP] * _RESERVED_SLOTS
        self._op_gens: list[int] = [0] * _RESERVED_SLOTS
        self._free_slots: list[int] = []
        self._ops_in_flight = 0
        self._stale_cqes = 0
        self._more_cqes = False
        # SQEs queued since the last enter: if none and no op is in flight,
        # a non-blocking pass needs no native call at all.
        self._sq_dirty = False
        self._idle_primed = 0
        # Set once the loop is over: no new ops may be submitted.
        self._ops_closed = False
        # Cross-thread wake-ups: a pipe whose read end always has a READ
        # pending on the ring.  run_sync_soon from another thread and signal
        # delivery (via signal.set_wakeup_fd) write a byte to it.
        self._entry_queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        # Re-entrant: run_sync_soon may be called from a signal handler that
        # interrupted the loop while it held the lock.
        self._entry_lock = threading.RLock()
        self._idempotent: dict[tuple[Callable[..., Any], tuple[Any, ...]], None] = {}
        self._closed_for_entries = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_buf = self.ring.ffi.new("char[]", 256)
        self._wakeup_armed = False
        self._thread = threading.get_ident()
        # Resources whose memory in-flight ops may still use at the end of
        # the run: closed once the ring has been drained.
        self._close_after_drain: list[Callable[[], None]] = []
        self._done = False

    # -- instruments -----------------------------------------------------

    def add_instrument(self, instrument: Instrument) -> None:
        if instrument not in self._instruments:
            self._instruments.append(instrument)

    def remove_instrument(self, instrument: Instrument) -> None:
        try:
            self._instruments.remove(instrument)
        except ValueError:
            raise KeyError(f"instrument {instrument!r} is not installed") from None

    def _instrument(self, hook: str, *args: Any) -> None:
        for inst in list(self._instruments):
            method = getattr(inst, hook, None)
            if method is None:
                continue
            try:
                method(*args)
            except BaseException:
                # A broken instrument is removed, loudly, rather than taking
                # the run down.
                self._instruments.remove(inst)
                import logging

                logging.getLogger("ringtrio.abc.Instrument").exception(
                    "Exception raised when calling %r on instrument %r. "
                    "Instrument has been disabled.",
                    hook,
                    inst,
                )

    # -- deadlines -------------------------------------------------------

    def _register_deadline(self, obj: Any, deadline: float) -> None:
        """Heap entry for a sleeping task or (via _register_scope_deadline)
        a cancel scope: at ``deadline``, ``obj._deadline_expired()``."""
        seq = next(self._deadline_counter)
        obj._deadline_seq = seq
        in_order = self._sorted_deadlines
        if not in_order or deadline >= in_order[-1][0]:
            in_order.append((deadline, seq, obj))
        else:
            heapq.heappush(self._deadlines, (deadline, seq, obj))

    def _register_scope_deadline(self, scope: CancelScope, deadline: float) -> None:
        self._scope_deadlines += 1
        self._register_deadline(scope, deadline)

    def _unregister_scope_deadline(self, scope: CancelScope) -> None:
        self._scope_deadlines -= 1
        self._unregister_deadline(scope)

    def _unregister_deadline(self, obj: Any) -> None:
        # Lazy deletion: the heap entry stays, marked stale by the sequence
        # number no longer matching.  Compact when stale entries dominate.
        obj._deadline_seq = 0
        self._stale_deadlines += 1
        if self._stale_deadlines > 1024 and self._stale_deadlines * 2 > len(self._deadlines) + len(
            self._sorted_deadlines
        ):
            self._deadlines = [e for e in self._deadlines if e[2]._deadline_seq == e[1]]
            heapq.heapify(self._deadlines)
            self._sorted_deadlines = deque(
                e for e in self._sorted_deadlines if e[2]._deadline_seq == e[1]
            )
            self._stale_deadlines = 0

    def _expire_deadlines(self, now: float) -> None:
        heap = self._deadlines
        in_order = self._sorted_deadlines
        while True:
            # Earliest first, from whichever structure holds it.
            if in_order and in_order[0][0] <= now and (not heap or in_order[0][0] <= heap[0][0]):
                _, seq, obj = in_order.popleft()
            elif heap and heap[0][0] <= now:
                _, seq, obj = heapq.heappop(heap)
            else:
                return
            if obj._deadline_seq == seq:
                obj._deadline_seq = 0
                obj._deadline_expired()
            else:
                self._stale_deadlines -= 1

    def _next_deadline(self) -> float:
        heap = self._deadlines
        while heap and heap[0][2]._deadline_seq != heap[0][1]:
            heapq.heappop(heap)
            self._stale_deadlines -= 1
        in_order = self._sorted_deadlines
        while in_order and in_order[0][2]._deadline_seq != in_order[0][1]:
            in_order.popleft()
            self._stale_deadlines -= 1
        best = heap[0][0] if heap else inf
        if in_order and in_order[0][0] < best:
            best = in_order[0][0]
        return best

    # -- tasks -----------------------------------------------------------

    def _spawn(
        self,
        async_fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        nursery: Nursery | None,
        name: object,
        *,
        system: bool = False,
        context: Context | None = None,
    ) -> Task:
        if nursery is not None and nursery._closed:
            raise RuntimeError("Nursery is closed to new arrivals")
        if type(async_fn) is types.FunctionType:
            coro = async_fn(*args)
            if type(coro) is not types.CoroutineType:
                coro = _coroutine_or_error(async_fn, args, coro)
        else:
            coro = _coroutine_or_error(async_fn, args)
        if context is None:
            if system:
                context = self.system_context.copy()
            else:
                context = _local.task.context.copy()  # type: ignore[union-attr]
        # The name is worked out lazily (Task.name): most tasks never need it.
        task = Task(self, coro, async_fn if name is None else name, context, nursery, system)
        self._ntasks += 1
        if nursery is not None:
            nursery._children.add(task)
            scope = nursery._scope
            task._cancel_scope = scope
            scope._nursery_tasks.add(task)  # type: ignore[union-attr]
        self._runq.append(task)
        if self._instruments:
            self._instrument("task_spawned", task)
            self._instrument("task_scheduled", task)
        return task

    def _task_exited(self, task: Task, result: outcome.Outcome[Any]) -> None:
        if task._finalizer is not None:
            # Run the finalizer in this task before it really exits.
            finalizer, task._finalizer = task._finalizer, None
            task._stashed = result
            coro = _coroutine_or_error(finalizer, ())
            task.coro = coro
            task._send = coro.send
            task._next_send = None
            self._runq.append(task)
            return
        if task._stashed is not None:
            # The finalizer is done: the task reports what its coroutine
            # did, unless the finalizer raised (then that, as a `finally:`
            # block would, with the coroutine's error as its context).
            stashed, task._stashed = task._stashed, None
            if type(result) is outcome.Error:
                if type(stashed) is outcome.Error and result.error.__context__ is None:
                    result.error.__context__ = stashed.error
            else:
                result = stashed
        scope = task._cancel_scope
        nursery = task._parent_nursery
        if nursery is not None and scope is not nursery._scope:
            # The task left with cancel scopes still open (e.g. a scope
            # entered by hand and never exited).
            result = outcome.Error(
                RuntimeError(
                    f"Cancel scope stack corrupted: {task!r} exited with "
                    f"{scope!r} still open. Use 'with' blocks for cancel scopes."
                )
            )
            while scope is not None and scope._owner is task:
                scope._detach(task)
                scope = scope._parent  # type: ignore[assignment]
            scope = task._cancel_scope
        if scope is not None and scope._nursery_tasks is not None:
            scope._nursery_tasks.discard(task)
        if task._lot_breakers:
            breakers, task._lot_breakers = task._lot_breakers, None
            for lot in breakers:
                lot.break_lot(task)
        self._ntasks -= 1
        if task is self.main_task:
            self.main_outcome = result
            result = outcome.Value(None)
        elif task._system and type(result) is outcome.Error:
            error = result.error
            if not isinstance(error, Cancelled):
                self._crash(RingtrioInternalError(f"system task {task!r} raised {error!r}"), error)
        if self._instruments:
            self._instrument("task_exited", task)
        if nursery is not None:
            nursery._child_finished(task, result)
        else:
            # The init task: the run is over.
            if type(result) is outcome.Error:
                self._crash(
                    RingtrioInternalError("the runtime's init task raised"), result.error
                )
            self._done = True
        task.coro = None  # type: ignore[assignment]
        task._send = None  # type: ignore[assignment]

    def _crash(self, exc: RingtrioInternalError, cause: BaseException) -> NoReturn:
        exc.__cause__ = cause
        raise exc

    # -- ring ops --------------------------------------------------------

    def _release_token(self, slot: int) -> None:
        self._op_slots[slot] = None
        self._op_gens[slot] = (self._op_gens[slot] + 1) & _SLOT_MASK
        self._free_slots.append(slot)
        self._ops_in_flight -= 1

    def _take_token(self, op: RingOp, task: Task | None) -> int:
        """Give ``op`` a token (the free slot list, LIFO; the slot's current
        generation in the high 32 bits) and mark it in flight for ``task``.
        (_speedups.submit does the same in C.)"""
        op.task = task
        op.cancel_raise = None
        op.done = False
        free = self._free_slots
        if free:
            slot = free.pop()
            self._op_slots[slot] = op
        else:
            slot = len(self._op_slots)
            self._op_slots.append(op)
            self._op_gens.append(0)
        token = (self._op_gens[slot] << 32) | slot
        op.token = token
        self._ops_in_flight += 1
        return token

    def _submit_op(self, op: RingOp, task: Task | None, deadline: float | None = None) -> None:
        """Queue ``op``'s SQE (sent with this pass's single enter) and park
        nothing: callers park on ``op._abort`` themselves."""
        if self._ops_closed:
            raise RuntimeError("the ringtrio run this op belongs to has finished")
        link_ns = -1
        if self._kernel_deadlines and self._scope_deadlines:
            if deadline is None and task is not None:
                deadline = task._cancel_scope._effective_deadline()
            if deadline is not None and deadline < _MAX_KERNEL_DEADLINE:
                # The kernel compares against CLOCK_MONOTONIC ns: round up so
                # that when it fires, time.monotonic() >= our float deadline.
                # (Deadlines centuries away are left to the Python heap.)
                link_ns = max(0, math.ceil(deadline * 1e9))
        if _sp_submit is not None:
            # The rest of this method, in C (None: an addr it does not take).
            if (
                _sp_submit(
                    self._ring_addr, self._op_slots, self._op_gens, self._free_slots,
                    op, task, link_ns, _TOKEN_IGNORE,
                )
                is not None
            ):
                self._ops_in_flight += 1
                self._sq_dirty = True
                return
        token = self._take_token(op, task)
        op.linked = link_ns >= 0
        self._sq_dirty = True
        addr = op.addr
        if type(addr) is memoryview:
            # (The accelerator takes the view's pointer itself.)  A cffi
            # buffer over it, held by the op until its final CQE.
            try:
                addr = self.ring.ffi.from_buffer(addr)
            except (TypeError, ValueError) as exc:  # e.g. a released view
                self._release_token(token & _SLOT_MASK)
                op.task = None
                raise ValueError(f"{op!r}: its addr cannot be used: {exc}") from None
            op.keepalive = (op.keepalive, addr)
        try:
            # `addr` is an address (int) or, on hot paths, the buffer object
            # itself (bytes or a cffi buffer): passed as a pointer, no cast.
            rc = (self._lib.rt_prep if type(addr) is int else self._lib.rt_prep_ptr)(
                self._ring_ptr,
                op.opcode,
                op.sqe_flags,
                op.ioprio,
                op.fd,
                addr,
                op.length,
                op.off,
                op.op_flags,
                token,
                op.buf_index,
                link_ns,
                _TOKEN_IGNORE,
            )
        except (OverflowError, TypeError) as exc:
            self._release_token(token & _SLOT_MASK)
            op.task = None
            raise ValueError(
                f"{op!r} has a field out of range for an SQE (fd/len/op_flags are "
                f"32-bit, addr/off 64-bit unsigned, buf_index 16-bit): {exc}"
            ) from None
        if rc < 0:
            self._release_token(token & _SLOT_MASK)
            op.task = None
            raise OSError(-rc, f"could not queue {op!r}: {os.strerror(-rc)}")

    def _submit_cancel(self, token: int, flags: int = 0, fd: int = -1) -> None:
        # Success needs no handling: skip its CQE.  Failures (-ENOENT: the op
        # already completed; -EALREADY: it is completing) arrive on the ignore
        # token: the op's own CQE is what decides.
        if self.ring.closed:
            # The run is over (e.g. a resource closed from __del__ after
            # run() returned): the ring was drained, nothing is in flight.
            return
        self._sq_dirty = True
        rc = self._lib.rt_prep(
            self._ring_ptr,
            IORING_OP_ASYNC_CANCEL,
            IOSQE_CQE_SKIP_SUCCESS,
            0,
            fd,
            token,
            0,
            0,
            flags,
            _TOKEN_IGNORE,
            0,
            -1,
            0,
        )
        if rc < 0:  # pragma: no cover - SQ could not be drained
            raise RingtrioInternalError(f"could not queue ASYNC_CANCEL: {os.strerror(-rc)}")

    def _cancel_op(self, op: RingOp, retries: int = 0) -> None:
        """Ask the kernel to cancel ``op`` (in flight); see _CancelOp."""
        if self._ops_closed:
            return
        self._submit_op(_CancelOp(self, op, retries), None, inf)

    def _arm_wakeup(self) -> None:
        self._sq_dirty = True
        rc = self._lib.rt_prep(
            self._ring_ptr,
            IORING_OP_READ,
            0,
            0,
            self._wake_r,
            int(self.ring.ffi.cast("uintptr_t", self._wake_buf)),
            256,
            0,
            0,
            _TOKEN_WAKEUP,
            0,
            -1,
            0,
        )
        if rc < 0:  # pragma: no cover
            raise RingtrioInternalError(f"could not arm the wake-up read: {os.strerror(-rc)}")
        self._wakeup_armed = True

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            # Full pipe: a wake-up is already pending.  Closed: run is over.
            pass

    def _dispatch_cqes(self, n: int) -> None:
        slots = self._op_slots
        gens = self._op_gens
        free = self._free_slots
        if _sp_dispatch is not None:
            # This method, in C (plain RingOps completed inline unless
            # instruments want to see task_scheduled).
            _sp_dispatch(self, self.ring.cqe_bytes, n, slots, gens, free, self._runq, not self._instruments)
            return
        for ud, res, flags in _iter_cqes(self.ring.cqe_bytes[: n * 16]):
            slot = ud & _SLOT_MASK
            if slot < _RESERVED_SLOTS:
                if slot == _TOKEN_WAKEUP:
                    self._wakeup_armed = False
                continue
            op = slots[slot] if slot < len(slots) else None
            if op is None or gens[slot] != ud >> 32:
                self._stale_cqes += 1
                continue
            if not (flags & IORING_CQE_F_MORE):
                # The op's final CQE: release its token (as _release_token).
                op.done = True
                slots[slot] = None
                gens[slot] = (gens[slot] + 1) & _SLOT_MASK
                free.append(slot)
                self._ops_in_flight -= 1
                op._on_cqe(res, flags)
                if op.result is not _LINK_EXPIRED:
                    # The kernel is done with the op's memory: drop it now,
                    # not whenever the op object goes (a caller's buffer
                    # export, such as send_all's memoryview, must be
                    # releasable at once).  (An op whose linked deadline
                    # fired may be submitted again: submit_and_wait drops
                    # them if it is not.)
                    _release_memory(op)
            else:
                op._on_cqe(res, flags)

    # -- cross-thread entry ----------------------------------------------

    def _run_sync_soon(
        self, fn: Callable[..., Any], args: tuple[Any, ...], idempotent: bool
    ) -> None:
        with self._entry_lock:
            if self._closed_for_entries:
                raise RunFinishedError("the ringtrio run this token belongs to has finished")
            if idempotent:
                key = (fn, args)
                if key in self._idempotent:
                    return
                self._idempotent[key] = None
            self._entry_queue.append((fn, args))
        if threading.get_ident() != self._thread:
            self._wake()

    def _run_entry_queue(self) -> None:
        while True:
            with self._entry_lock:
                if not self._entry_queue:
                    return
                fn, args = self._entry_queue.popleft()
                self._idempotent.pop((fn, args), None)
            try:
                self.system_context.run(fn, *args)
            except BaseException as exc:
                self._crash(
                    RingtrioInternalError(f"run_sync_soon callback {fn!r} raised"), exc
                )

    # -- KeyboardInterrupt -----------------------------------------------

    def _raise_ki(self) -> NoReturn:
        self.ki_pending = False
        raise KeyboardInterrupt

    def _deliver_ki(self) -> None:
        main = self.main_task
        if main is not None and main._abort_func is not None:
            main._attempt_abort(self._raise_ki)

    # -- idle detection (wait_all_tasks_blocked) --------------------------

    def _wake_idle_waiters(self) -> None:
        # Everybody has been blocked for the smallest cushion: wake the tasks
        # waiting with exactly that cushion, in the order they started waiting.
        waiters = self._idle_waiters
        cushion = waiters[0][0]
        while waiters and waiters[0][0] == cushion:
            _, _, task = heapq.heappop(waiters)
            reschedule(task)

    def _remove_idle_waiter(self, task: Task) -> None:
        self._idle_waiters = [e for e in self._idle_waiters if e[2] is not task]
        heapq.heapify(self._idle_waiters)

    # -- the loop ----------------------------------------------------------

    def _compute_timeout(self) -> float:
        deadline = self._next_deadline()
        if deadline == inf:
            timeout = inf
        elif self.clock is None:
            timeout = deadline - time.monotonic()
        else:
            timeout = self.clock.deadline_to_sleep_time(deadline)
        return max(timeout, 0.0)

    def _run_loop(self) -> None:
        runq = self._runq
        local = _local
        current_time = self.current_time
        CKPT = _CHECKPOINT
        YIELD = _YIELD
        RESUME_CHECK = _RESUME_CHECKING_CANCEL
        RESUME_PLAIN = _RESUME_PLAIN
        Park = _Park
        Value = outcome.Value
        Error = outcome.Error
        entry_queue = self._entry_queue
        while not self._done:
            idle_primed = 0
            if runq and not (
                self._sq_dirty
                or self._ops_in_flight
                or self._more_cqes
                or entry_queue
                or self._ki_fresh
                or self._instruments
            ):
                # The common pass of a busy program: tasks to run, nothing
                # for the kernel.  No native call; straight to deadlines.
                pass
            else:
                n = self._io_pass()
                if n:
                    self._dispatch_cqes(n)
                if entry_queue:
                    self._run_entry_queue()
                if self._ki_fresh:
                    self._ki_fresh = False
                    if self.ki_pending:
                        self._deliver_ki()
                if not n and not runq:
                    idle_primed = self._idle_primed
            # --- deadlines: expire what is due, with a fresh clock reading ---
            heap = self._deadlines
            in_order = self._sorted_deadlines
            if heap or in_order:
                now = current_time()
                if (heap and heap[0][0] <= now) or (in_order and in_order[0][0] <= now):
                    self._expire_deadlines(now)
            if idle_primed and not runq:
                if idle_primed == 1:
                    self._wake_idle_waiters()
                else:
                    self.clock._autojump()  # type: ignore[union-attr]
            # --- run every task that is runnable now, once ---
            batch = len(runq)
            if self._instruments:
                self._run_batch_instrumented(batch)
                continue
            if _sp_run_batch is not None:
                # The loop below, in C, for tasks resumed with None; the
                # others (and a task's end) come back here one at a time.
                while batch > 0:
                    n, task, kind, payload = _sp_run_batch(self, runq, batch, local, self.main_task)
                    batch -= n
                    if task is None:
                        break
                    if kind == 0:
                        self._step(task)
                    elif kind == 3:
                        self._bad_yield(task, payload)
                    else:
                        local.task = None
                        if kind == 1:
                            self._task_exited(task, Value(payload) if task is self.main_task else _EXITED_OK)
                        else:
                            self._task_exited(task, Error(payload))
                local.task = None
                continue
            popleft = runq.popleft
            append = runq.append
            for _ in range(batch):
                task = popleft()
                local.task = task
                next_send = task._next_send
                task._next_send = None
                try:
                    if next_send is None or next_send is RESUME_PLAIN:
                        msg = task.context.run(task._send, None)
                    elif next_send is RESUME_CHECK:
                        if task._cancel_scope._eff:
                            msg = task.context.run(task.coro.throw, _cancelled_for(task))
                        elif self.ki_pending and task is self.main_task:
                            self.ki_pending = False
                            msg = task.context.run(task.coro.throw, KeyboardInterrupt())
                        else:
                            msg = task.context.run(task._send, None)
                    else:
                        msg = task.context.run(next_send.send, task.coro)
                except StopIteration as stop:
                    local.task = None
                    self._task_exited(
                        task, Value(stop.value) if task is self.main_task else _EXITED_OK
                    )
                    continue
                except BaseException as exc:
                    local.task = None
                    self._task_exited(task, Error(exc.with_traceback(exc.__traceback__.tb_next)))  # type: ignore[union-attr]
                    continue
                if msg is CKPT:
                    task._next_send = RESUME_CHECK
                    append(task)
                elif msg is YIELD:
                    task._next_send = RESUME_PLAIN
                    append(task)
                elif type(msg) is Park:
                    task._abort_func = msg.abort_func
                    if task._cancel_scope._eff or (
                        self.ki_pending and task is self.main_task
                    ):
                        task._attempt_delivery_of_any_pending_cancel()
                else:
                    self._bad_yield(task, msg)
            local.task = None

    def _io_pass(self) -> int:
        """Submit this pass's SQEs with one enter, waiting if nothing is
        runnable, and copy out CQEs.  Returns how many CQEs were copied."""
        runq = self._runq
        self._idle_primed = 0
        if not self._wakeup_armed:
            self._arm_wakeup()
        if runq or self._entry_queue or self._more_cqes or self._ki_fresh:
            # A pass that must not wait (as trio, instruments see it as an
            # I/O wait with timeout 0).
            if self._instruments:
                self._instrument("before_io_wait", 0.0)
            if self._sq_dirty or self._ops_in_flight or self._more_cqes:
                self._sq_dirty = False
                n = self._lib.rt_pass(self._ring_ptr, 0, 0, self.ring.cqes, _ring.CQE_BATCH)
            else:
                n = 0
            if self._instruments:
                self._instrument("after_io_wait", 0.0)
        else:
            timeout = self._compute_timeout()
            # Idle detection (wait_all_tasks_blocked, MockClock autojump):
            # if the wait below times out with nothing runnable, every task
            # has been blocked for that long.
            idle_primed = 0
            if self._idle_waiters and self._idle_waiters[0][0] < timeout:
                timeout = self._idle_waiters[0][0]
                idle_primed = 1
            if self.clock is not None:
                threshold = getattr(self.clock, "_autojump_threshold", inf)
                if threshold < timeout:
                    timeout = threshold
                    idle_primed = 2
            self._idle_primed = idle_primed
            if self._instruments:
                self._instrument("before_io_wait", timeout)
            timeout_ns = -1 if timeout == inf else int(timeout * 1e9)
            self._sq_dirty = False
            n = self._lib.rt_pass(self._ring_ptr, 1, timeout_ns, self.ring.cqes, _ring.CQE_BATCH)
            if self._instruments:
                self._instrument("after_io_wait", timeout)
        if n < 0:
            raise RingtrioInternalError(f"io_uring_enter failed: {os.strerror(-n)}")
        self._more_cqes = n == _ring.CQE_BATCH
        return n  # type: ignore[no-any-return]

    def _run_batch_instrumented(self, batch: int) -> None:
        # The same as the fast loop above, with instrument hooks; kept
        # separate so the common case pays nothing for instruments.
        runq = self._runq
        for _ in range(batch):
            task = runq.popleft()
            self._instrument("before_task_step", task)
            self._step(task)
            self._instrument("after_task_step", task)

    def _step(self, task: Task) -> None:
        _local.task = task
        next_send = task._next_send
        task._next_send = None
        try:
            if next_send is None or next_send is _RESUME_PLAIN:
                msg = task.context.run(task._send, None)
            elif next_send is _RESUME_CHECKING_CANCEL:
                if task._cancel_scope._eff:
                    msg = task.context.run(task.coro.throw, _cancelled_for(task))
                elif self.ki_pending and task is self.main_task:
                    self.ki_pending = False
                    msg = task.context.run(task.coro.throw, KeyboardInterrupt())
                else:
                    msg = task.context.run(task.coro.send, None)
            else:
                msg = task.context.run(next_send.send, task.coro)
        except StopIteration as stop:
            _local.task = None
            self._task_exited(
                task, outcome.Value(stop.value) if task is self.main_task else _EXITED_OK
            )
            return
        except BaseException as exc:
            _local.task = None
            self._task_exited(task, outcome.Error(exc.with_traceback(exc.__traceback__.tb_next)))  # type: ignore[union-attr]
            return
        finally:
            _local.task = None
        if msg is _CHECKPOINT:
            task._next_send = _RESUME_CHECKING_CANCEL
            self._runq.append(task)
            self._instrument("task_scheduled", task)
        elif msg is _YIELD:
            task._next_send = _RESUME_PLAIN
            self._runq.append(task)
            self._instrument("task_scheduled", task)
        elif type(msg) is _Park:
            task._abort_func = msg.abort_func
            if task._cancel_scope._eff or (self.ki_pending and task is self.main_task):
                task._attempt_delivery_of_any_pending_cancel()
        else:
            self._bad_yield(task, msg)

    def _bad_yield(self, task: Task, msg: object) -> None:
        # Something awaited an object from another async library (an asyncio
        # future, a bare `yield`).  Throw a clear error into the task.
        err = TypeError(
            f"ringtrio got {msg!r} from {task!r}: the task awaited something that is "
            "not a ringtrio operation. Are you using a library written for asyncio "
            "(or another event loop) inside ringtrio.run()?"
        )
        task._next_send = outcome.Error(err)
        self._runq.append(task)

    # -- shutdown ----------------------------------------------------------

    def _drain_ring(self) -> None:
        # Memory that in-flight ops point into must outlive them, so before
        # the ring is closed every op is cancelled and its final CQE awaited.
        if self.ring.closed:
            return
        lib = self._lib
        self._submit_cancel(0, _ring.IORING_ASYNC_CANCEL_ANY | _ring.IORING_ASYNC_CANCEL_ALL)
        deadline = time.monotonic() + 5.0
        while (self._ops_in_flight > 0 or self._wakeup_armed) and time.monotonic() < deadline:
            n = lib.rt_pass(self._ring_ptr, 1, 50_000_000, self.ring.cqes, _ring.CQE_BATCH)
            if n < 0:
                break
            for ud, res, flags in _iter_cqes(self.ring.cqe_bytes[: n * 16]):
                slot = ud & _SLOT_MASK
                if slot == _TOKEN_WAKEUP:
                    self._wakeup_armed = False
                elif slot >= _RESERVED_SLOTS and slot < len(self._op_slots):
                    op = self._op_slots[slot]
                    if op is not None and self._op_gens[slot] == ud >> 32 and not (
                        flags & IORING_CQE_F_MORE
                    ):
                        op.done = True
                        self._release_token(slot)

    def close(self) -> None:
        with self._entry_lock:
            self._closed_for_entries = True
        self._ops_closed = True
        # Callbacks queued after the loop's last pass (a thread racing the end
        # of the run) still run, so whoever queued them is not left waiting.
        while self._entry_queue:
            fn, args = self._entry_queue.popleft()
            try:
                self.system_context.run(fn, *args)
            except BaseException:  # noqa: BLE001 - the run is over; report only
                import logging

                logging.getLogger("ringtrio").exception(
                    "run_sync_soon callback %r raised after the run finished", fn
                )
        try:
            self._drain_ring()
            if self._ops_in_flight:
                _abandoned_ops.extend(op for op in self._op_slots[_RESERVED_SLOTS:] if op is not None)
                _abandoned_ops.extend(self._close_after_drain)  # type: ignore[arg-type]
            else:
                for close in self._close_after_drain:
                    close()
        finally:
            self.ring.close()
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:  # pragma: no cover
                    pass


_NOT_CALLED = object()


def _coroutine_or_error(
    async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], coro: Any = _NOT_CALLED
) -> Coroutine[Any, Any, Any]:
    if isinstance(async_fn, types.CoroutineType) or (
        hasattr(async_fn, "send") and hasattr(async_fn, "throw")
    ):
        raise TypeError(
            f"ringtrio was expecting an async function, but got a coroutine object "
            f"{async_fn!r}. You probably wrote 'nursery.start_soon(fn())' instead of "
            "'nursery.start_soon(fn)' (pass the function and its arguments separately)."
        )
    if coro is _NOT_CALLED:
        coro = async_fn(*args)
    if isinstance(coro, types.CoroutineType):
        return coro
    if isinstance(coro, types.GeneratorType) and coro.gi_code.co_flags & 0x100:
        return coro  # type: ignore[return-value]
    if hasattr(coro, "send") and hasattr(coro, "throw") and hasattr(coro, "close"):
        return coro  # type: ignore[return-value]
    if hasattr(coro, "__await__"):
        try:
            import asyncio

            if isinstance(coro, asyncio.Future):
                raise TypeError(
                    f"ringtrio got an asyncio Future from {async_fn!r}: asyncio objects "
                    "cannot be awaited inside ringtrio.run()."
                )
        except ImportError:  # pragma: no cover
            pass
        awaitable = coro

        async def _wrap() -> Any:
            return await awaitable

        return _wrap()
    raise TypeError(
        f"ringtrio expected an async function, but {async_fn!r} returned {coro!r}. "
        "Use 'async def' (and pass the function itself, not its result)."
    )


def _current_runner() -> Runner:
    runner = getattr(_local, "runner", None)
    if runner is None:
        raise RuntimeError("must be called from inside ringtrio.run()")
    return runner  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# run()
# ---------------------------------------------------------------------------


async def _init(runner: Runner, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    async with open_nursery() as system_nursery:
        runner.system_nursery = system_nursery
        async with open_nursery() as main_nursery:
            try:
                runner.main_task = runner._spawn(async_fn, args, main_nursery, None)
            except BaseException as exc:
                runner.main_outcome = outcome.Error(exc)
                return
        # Main task done: system tasks are cancelled.
        system_nursery.cancel_scope._cancel("shutdown")
    # No user code is left but abandoned async generators' cleanup.
    await runner.asyncgens.finalize_remaining()


def run(
    async_fn: Callable[..., Awaitable[RetT]],
    *args: Any,
    clock: Clock | None = None,
    instruments: tuple[Instrument, ...] | list[Instrument] = (),
    strict_exception_groups: bool = True,
) -> RetT:
    """Run ``async_fn(*args)`` under ringtrio and return its result (or raise
    its exception).  The trio-shaped entry point of the library."""
    if getattr(_local, "runner", None) is not None:
        raise RuntimeError("Attempted to call ringtrio.run() from inside a run()")
    if not callable(async_fn):
        raise TypeError(f"run() needs an async function, got {async_fn!r}")
    if clock is not None and not (
        hasattr(clock, "current_time") and hasattr(clock, "deadline_to_sleep_time")
    ):
        raise TypeError(f"clock must provide current_time() and deadline_to_sleep_time(), got {clock!r}")
    runner = Runner(clock, tuple(instruments), strict_exception_groups)
    _local.runner = runner
    restore_signals: Callable[[], None] = lambda: None
    try:
        restore_signals = _install_sigint(runner)
        runner.asyncgens.install()
        if clock is not None:
            clock.start_clock()
        if runner._instruments:
            runner._instrument("before_run")
        # The root scope: never cancelled, the parent of everything.
        root_scope = CancelScope()
        init_task = Task(runner, _init(runner, async_fn, args), "<init>", runner.system_context.copy(), None, True)
        init_task._cancel_scope = root_scope
        root_scope._state = CancelScope._ACTIVE
        root_scope._owner = init_task
        runner.init_task = init_task
        runner._ntasks += 1
        runner._runq.append(init_task)
        if runner._instruments:
            runner._instrument("task_spawned", init_task)
            runner._instrument("task_scheduled", init_task)
        runner._run_loop()
        if runner._instruments:
            runner._instrument("after_run")
    except RingtrioInternalError:
        raise
    except BaseException as exc:
        raise RingtrioInternalError("internal error in ringtrio - please report it") from exc
    finally:
        try:
            runner.close()
        finally:
            runner.asyncgens.uninstall()
            restore_signals()
            _local.runner = None
            _local.task = None
    result = runner.main_outcome
    if runner.ki_pending:
        ki = KeyboardInterrupt()
        if type(result) is outcome.Error:
            ki.__context__ = result.error
        result = outcome.Error(ki)
    assert result is not None
    return result.unwrap()  # type: ignore[no-any-return]


def _install_sigint(runner: Runner) -> Callable[[], None]:
    """Turn SIGINT into "KeyboardInterrupt at the main task's next checkpoint".

    Only when run() is in the main thread and nobody installed their own
    handler.  The signal module's wake-up fd points at our wake-up pipe, so a
    signal arriving while we sleep in io_uring_enter wakes the loop.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        runner.ki_pending = True
        runner._ki_fresh = True

    old_handler = signal.signal(signal.SIGINT, handler)
    try:
        old_wakeup = signal.set_wakeup_fd(runner._wake_w, warn_on_full_buffer=False)
    except ValueError:  # pragma: no cover
        old_wakeup = -1

    def restore() -> None:
        signal.signal(signal.SIGINT, old_handler)
        try:
            signal.set_wakeup_fd(old_wakeup)
        except ValueError:  # pragma: no cover
            pass

    return restore


# ---------------------------------------------------------------------------
# Public helpers that need the runner
# ---------------------------------------------------------------------------


def current_task() -> Task:
    """The task this code is running in."""
    task = getattr(_local, "task", None)
    if task is None:
        raise RuntimeError("must be called from inside a ringtrio task (inside ringtrio.run())")
    return task  # type: ignore[no-any-return]


def current_root_task() -> Task | None:
    """The runtime's root task (the parent of the main task's nursery)."""
    return _current_runner().init_task


def current_time() -> float:
    """The current time on the run's clock (CLOCK_MONOTONIC seconds by default)."""
    return _current_runner().current_time()


def current_clock() -> Clock | None:
    return _current_runner().clock


def current_effective_deadline() -> float:
    """The deadline that applies to the current code: ``-inf`` if already
    cancelled, ``inf`` if there is none."""
    task = current_task()
    return task._cancel_scope._effective_deadline()


def current_trio_token() -> TrioToken:
    """A token for reaching this run from other threads."""
    return _current_runner().trio_token


def current_statistics() -> RunStatistics:
    runner = _current_runner()
    submitted, reaped, enters, overflows = runner.ring.stats()
    deadline = runner._next_deadline()
    return RunStatistics(
        tasks_living=runner._ntasks,
        tasks_runnable=len(runner._runq),
        seconds_to_next_deadline=deadline - runner.current_time() if deadline != inf else inf,
        run_sync_soon_queue_size=len(runner._entry_queue),
        sqes_submitted=submitted,
        cqes_reaped=reaped,
        enters=enters,
        cq_overflows=overflows,
        ops_in_flight=runner._ops_in_flight,
        stale_cqes=runner._stale_cqes,
    )


def current_ring_features() -> RingFeatures:
    """What the kernel's io_uring supports (probed once at setup)."""
    return _current_runner().features


def add_instrument(instrument: Instrument) -> None:
    _current_runner().add_instrument(instrument)


def remove_instrument(instrument: Instrument) -> None:
    _current_runner().remove_instrument(instrument)


def spawn_system_task(
    async_fn: Callable[..., Awaitable[Any]],
    *args: Any,
    name: object = None,
    context: Context | None = None,
) -> Task:
    """Start a task in the system nursery: it is cancelled when the main task
    finishes, and if it raises, the whole run fails with an internal error."""
    runner = _current_runner()
    assert runner.system_nursery is not None
    return runner._spawn(async_fn, args, runner.system_nursery, name, system=True, context=context)


async def wait_all_tasks_blocked(cushion: float = 0.0) -> None:
    """Block until every other task has been blocked for ``cushion`` seconds
    of real time.  Tasks waiting with the same cushion wake together, in the
    order they started waiting."""
    if cushion < 0 or math.isnan(cushion):
        raise ValueError(f"cushion must be a non-negative number, not {cushion!r}")
    task = current_task()
    runner = task._runner
    heapq.heappush(runner._idle_waiters, (float(cushion), next(runner._idle_counter), task))

    def abort(raise_cancel: Callable[[], NoReturn]) -> Abort:
        runner._remove_idle_waiter(task)
        return Abort.SUCCEEDED

    await wait_task_rescheduled(abort)


async def sleep_until(deadline: float) -> None:
    """Sleep until ``current_time() >= deadline``.  A checkpoint."""
    if math.isnan(deadline):
        raise ValueError("deadline must not be NaN")
    task = _local.task
    if task is None:
        _outside_run()
    runner = task._runner
    if deadline <= runner.current_time():
        await _yield_trap(_CHECKPOINT)
        return
    if task._cancel_scope._eff or (runner.ki_pending and task is runner.main_task):
        await _yield_trap(_CHECKPOINT)
    if deadline == inf:
        await _yield_trap(_Park(_abort_sleep))
        return
    # A sleeping task is its own heap entry: no cancel scope, no exception on
    # the normal path.  Cancellation invalidates the entry.
    runner._register_deadline(task, deadline)
    await _yield_trap(_Park(task._abort_timed_sleep))


def _abort_sleep(raise_cancel: Callable[[], NoReturn]) -> Abort:
    return Abort.SUCCEEDED


async def sleep(seconds: float) -> None:
    """Sleep for ``seconds`` (0 is a pure checkpoint)."""
    if seconds < 0:
        raise ValueError(f"sleep length must be non-negative, not {seconds!r}")
    if math.isnan(seconds):
        raise ValueError("sleep length must not be NaN")
    task = _local.task
    if task is None:
        _outside_run()
    if seconds == 0:
        await _yield_trap(_CHECKPOINT)
        return
    runner = task._runner
    if task._cancel_scope._eff or (runner.ki_pending and task is runner.main_task):
        await _yield_trap(_CHECKPOINT)
    if seconds == inf:
        await _yield_trap(_Park(_abort_sleep))
        return
    # (sleep_until inlined: this is the hot path of timer-heavy programs.)
    runner._register_deadline(task, runner.current_time() + seconds)
    await _yield_trap(_Park(task._abort_timed_sleep))


async def sleep_forever() -> NoReturn:
    """Sleep until cancelled."""
    await wait_task_rescheduled(lambda _: Abort.SUCCEEDED)
    raise RuntimeError("sleep_forever() should only end by cancellation, but it was rescheduled")
