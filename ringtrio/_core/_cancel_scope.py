"""CancelScope: cancellation and deadlines for a region of code.

A scope's deadline is registered with the runner (``Runner._register_scope_
deadline``), which expires it; while a task inside a scope with a finite
deadline is parked on a ring op, the deadline also rides with the op as a
linked timeout (``Runner._submit_op``).
"""

from __future__ import annotations

import functools
import math
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._exceptions import Cancelled
from ._final import final
from ._local import _local, _outside_run
from ._traps import _raise_cancelled_for

if TYPE_CHECKING:
    from ._runner import Runner
    from ._task import Task

inf = math.inf

# Why a scope was cancelled: (source, reason, source_task), as on Cancelled.
CancelReason = tuple[str, "str | None", "str | None"]
_BY_DEADLINE: CancelReason = ("deadline", None, None)

# A scope's _state: not entered yet; entered; exited; still entered, but a
# scope around it was exited first (misnesting; see CancelScope._abandon).
_NEW, _ACTIVE, _DONE, _ABANDONED = 0, 1, 2, 3

# The note on the group a loose nursery (strict_exception_groups=False)
# raises with several errors: a scope that takes the Cancelled out of such a
# group and leaves one error unwraps it (_collapse_loose), as in trio.
LOOSE_GROUP_NOTE = (
    "ringtrio: a loose exception group (open_nursery(strict_exception_groups=False)): "
    "if a cancel scope takes the Cancelled out of it and one exception is left, that "
    "exception is raised alone. strict_exception_groups=True (the default) never unwraps."
)


def _collapse_loose(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """``group`` with every loose group inside it (and itself) that holds a
    single exception replaced by that exception."""
    excs = list(group.exceptions)
    changed = False
    for i, exc in enumerate(excs):
        if isinstance(exc, BaseExceptionGroup):
            new = _collapse_loose(exc)
            if new is not exc:
                excs[i] = new
                changed = True
    if len(excs) == 1 and LOOSE_GROUP_NOTE in getattr(group, "__notes__", ()):
        only = excs[0]
        # Its traceback goes on from where the group was raised.
        only.__traceback__ = _chain_tracebacks(group.__traceback__, only.__traceback__)
        return only
    return group.derive(excs) if changed else group


def _chain_tracebacks(first: TracebackType | None, then: TracebackType | None) -> TracebackType | None:
    """A traceback that runs through ``first``'s frames, then ``then``'s
    (for an exception taken out of the group that carried it: the frames
    the group went through come first)."""
    entries = []
    while first is not None:
        entries.append(first)
        first = first.tb_next
    for tb in reversed(entries):
        then = TracebackType(then, tb.tb_frame, tb.tb_lasti, tb.tb_lineno)
    return then


# What the misnesting errors add: how such a mess usually comes about.
_MISNESTING_HELP = """

This is a bug in the program, and ringtrio's cancel scope tree is no longer
what the code says; ringtrio recovers as far as it can (what was left open
stays cancelled). The usual causes:
  - a generator or async generator that yields inside a cancel scope or a
    nursery (unless it is a @contextmanager or @asynccontextmanager);
  - __enter__/__exit__ of a CancelScope, or __aenter__/__aexit__ of
    open_nursery(), called by hand, or by an [Async]ExitStack that exits
    them in another order, or in another task, than they were entered
    (AsyncExitStack.enter_async_context run as a task of its own is one);
  - driving a coroutine by hand (send/throw) so that parts of it run in
    different tasks."""


@final
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
        "__weakref__",
    )

    # _state values (the module's _NEW ... _ABANDONED)
    _NEW, _ACTIVE, _DONE, _ABANDONED = 0, 1, 2, 3

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
            raise ValueError("relative deadline must not be NaN")
        if relative_deadline < 0:
            raise ValueError("timeout must be non-negative")
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
        self._state = _NEW
        self._owner: Task | None = None
        self._deadline_seq = 0
        # Why it was cancelled; set by _cancel(), or inherited when an
        # enclosing scope's cancellation reaches it.  What the Cancelled
        # raised inside it says (_traps._cancelled_for).
        self._cancel_reason: CancelReason | None = None

    def __repr__(self) -> str:
        state = ("unbound", "active", "exited", "active, abandoned by misnesting")[self._state]
        if self._cancel_called:
            extra = ", cancelled"
        elif self._deadline == inf or self._relative_deadline != inf:
            extra = ""
        else:
            runner = getattr(_local, "runner", None)
            if runner is None:
                extra = ""
            else:
                delta = self._deadline - runner.current_time()
                extra = f", deadline is {abs(delta):.2f} seconds " + ("from now" if delta >= 0 else "ago")
        return f"<ringtrio.CancelScope at {id(self):#x}, {state}{extra}>"

    # -- entering and leaving ------------------------------------------------

    def __enter__(self) -> CancelScope:
        task = _local.task
        if task is None:
            _outside_run()
        self._enter_in(task)
        return self

    def _enter_in(self, task: Task) -> None:
        if self._state != _NEW:
            raise RuntimeError(
                "Each CancelScope may only be used for a single 'with' block; "
                "create a new CancelScope for each block"
            )
        self._state = _ACTIVE
        runner = task._runner
        if self._relative_deadline != inf:
            self._deadline = runner.current_time() + self._relative_deadline
            self._relative_deadline = inf
        if self._deadline != inf and not self._cancel_called:
            if runner.current_time() >= self._deadline:
                # Entered past its deadline: cancelled by the deadline (its
                # source says so), before it joins the tree.
                self._cancel_called = True
                if self._cancel_reason is None:
                    self._cancel_reason = _BY_DEADLINE
            else:
                runner._register_scope_deadline(self, self._deadline)
        parent = task._cancel_scope
        self._parent = parent
        self._owner = task
        children = parent._children
        if children is None:
            parent._children = {self}
        else:
            children.add(self)
        task._cancel_scope = self
        if self._cancel_called:
            self._eff = True
        elif not self._shield and parent._eff:
            self._eff = True
            # Cancelled from outside: say why the outer scope was.
            if self._cancel_reason is None:
                self._cancel_reason = parent._cancel_reason

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
        state = self._state
        if state == _NEW or state == _DONE:
            err = RuntimeError(
                f"Cancel scope stack corrupted: attempted to exit {self!r} which "
                + ("had already been exited" if state == _DONE else "was never entered")
            )
            err.__context__ = exc
            return err
        task = _local.task
        if task is None or task._cancel_scope is not self or task is not self._owner:
            # Misnesting: scopes (and nurseries) are not being left in the
            # reverse order they were entered, in the task that entered them.
            if state == _ABANDONED:
                # An enclosing scope was left first, and that raised the
                # error; a second one would only confuse the traceback.
                pass
            elif task is None or task is not self._owner or not self._encloses(task._cancel_scope):
                # Left from a task that is not inside it: report, change nothing.
                where = "outside any task" if task is None else f"from unrelated {task!r}"
                err = RuntimeError(
                    f"Cancel scope stack corrupted: attempted to exit {self!r} {where}: "
                    f"it was entered in {self._owner!r}, and a scope (or nursery) must be "
                    f"exited in the task that entered it, from inside it.{_MISNESTING_HELP}"
                )
                err.__context__ = exc
                return err
            else:
                # Left while scopes entered inside it are still open.  The
                # task steps out of all of them; they stay open, cancelled
                # and marked abandoned (see _leave), so that leaving them
                # later raises nothing more.
                err = RuntimeError(
                    f"Cancel scope stack corrupted: attempted to exit {self!r} in "
                    f"{task!r} that's still within its child {task._cancel_scope!r}. "
                    "Scopes must be exited in the reverse order they were entered."
                    f"{_MISNESTING_HELP}"
                )
                err.__context__ = exc
                exc = err
                task._cancel_scope = self._parent  # type: ignore[assignment]
        parent = self._parent
        assert parent is not None
        if exc is not None and (
            (self._eff and not (not self._shield and parent._eff)) or state == _ABANDONED
        ):
            # This scope's own cancellation (or, in a scope misnesting
            # abandoned, the one it left on it): absorb the Cancelled.
            if isinstance(exc, Cancelled):
                self.cancelled_caught = True
                exc = None
            elif isinstance(exc, BaseExceptionGroup):
                matched, rest = exc.split(Cancelled)
                if matched is not None:
                    self.cancelled_caught = True
                exc = None if rest is None else _collapse_loose(rest)
        self._leave(task)
        return exc

    def _encloses(self, scope: CancelScope | None) -> bool:
        while scope is not None:
            if scope is self:
                return True
            if scope._state == _DONE:
                return False
            scope = scope._parent
        return False

    def _leave(self, task: Task | None) -> None:
        parent = self._parent
        assert parent is not None
        self._state = _DONE
        if task is not None and task._cancel_scope is self:
            task._cancel_scope = parent
        if parent._children is not None:
            parent._children.discard(self)
        if self._deadline_seq:
            self._owner._runner._unregister_scope_deadline(self)  # type: ignore[union-attr]
        if self._children or self._nursery_tasks:
            self._abandon()

    def _abandon(self) -> None:
        """This scope was left while scopes or tasks inside it live on
        (misnesting).  As in trio: they stay cancelled for good (this scope
        reads as cancelled from now on, whatever happens outside it), and
        the scopes among them are marked abandoned, so that leaving them
        later raises no second error and swallows the Cancelled."""
        stack = list(self._children or ())
        while stack:
            scope = stack.pop()
            if scope._state == _ACTIVE:
                scope._state = _ABANDONED
            if scope._children:
                stack.extend(scope._children)
        self._eff = True
        for task in list(self._nursery_tasks or ()):
            if task._cancel_scope is self:
                task._attempt_delivery_of_any_pending_cancel()
        for child in list(self._children or ()):
            child._update_eff()

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
        # The first reason sticks, as in trio: one inherited from an
        # enclosing scope's cancellation (see _update_eff) is not replaced.
        if self._cancel_reason is None:
            self._cancel_reason = (source, reason, source_task)
        self._cancel_called = True
        if self._deadline_seq and self._owner is not None:
            self._owner._runner._unregister_scope_deadline(self)
        if self._state == _ACTIVE or self._state == _ABANDONED:
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
                if scope._cancel_reason is None:
                    # Cancelled through the parent: the Cancelled raised in
                    # here carries the parent's reason (trio's rule).
                    scope._cancel_reason = parent._cancel_reason  # type: ignore[union-attr]
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
        if not self._cancel_called and self._state != _DONE and self._deadline != inf:
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
        if (self._state == _ACTIVE or self._state == _ABANDONED) and not self._cancel_called:
            runner: Runner = self._owner._runner  # type: ignore[union-attr]
            if self._deadline_seq:
                runner._unregister_scope_deadline(self)
            if self._deadline != inf:
                runner._register_scope_deadline(self, self._deadline)

    @property
    def relative_deadline(self) -> float:
        """Seconds from now to the deadline (after entry), or from entry
        (before).  An unentered scope with an absolute deadline has none."""
        if self._state != _NEW:
            return self._deadline - self._owner._runner.current_time()  # type: ignore[union-attr]
        if self._deadline != inf:
            raise RuntimeError("Unentered non-relative cancel scope does not have a relative deadline")
        return self._relative_deadline

    @relative_deadline.setter
    def relative_deadline(self, new_relative_deadline: float) -> None:
        if math.isnan(new_relative_deadline):
            raise ValueError("relative deadline must not be NaN")
        if new_relative_deadline < 0:
            raise ValueError("relative deadline must be non-negative")
        if self._state != _NEW:
            runner: Runner = self._owner._runner  # type: ignore[union-attr]
            self.deadline = runner.current_time() + float(new_relative_deadline)
        elif self._deadline != inf:
            raise RuntimeError("Unentered non-relative cancel scope does not have a relative deadline")
        else:
            self._relative_deadline = float(new_relative_deadline)

    @property
    def is_relative(self) -> bool | None:
        """None once entered; before that, whether the deadline is relative."""
        if self._state != _NEW:
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
        if self._state == _ACTIVE or self._state == _ABANDONED:
            self._update_eff()

    def _effective_deadline(self) -> float:
        """The earliest deadline that can cancel code inside this scope."""
        if self._eff:
            return -inf
        scope: CancelScope | None = self
        best = inf
        while scope is not None:
            if scope._deadline < best:
                best = scope._deadline
            # Outer deadlines do not reach through a shield, nor into what
            # misnesting left of an exited scope.
            if scope._shield or scope._state == _DONE:
                break
            scope = scope._parent
        return best
