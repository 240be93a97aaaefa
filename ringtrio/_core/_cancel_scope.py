"""CancelScope: cancellation and deadlines for a region of code.

A scope's deadline is registered with the runner (``Runner._register_scope_
deadline``), which expires it; while a task inside a scope with a finite
deadline is parked on a ring op, the deadline also rides with the op as a
linked timeout (``Runner._submit_op``).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from ._exceptions import Cancelled
from ._local import _local, _outside_run
from ._traps import _raise_cancelled_for

if TYPE_CHECKING:
    from ._runner import Runner
    from ._task import Task

inf = math.inf

# Why a scope was cancelled: (source, reason, source_task), as on Cancelled.
CancelReason = tuple[str, "str | None", "str | None"]
_BY_DEADLINE: CancelReason = ("deadline", None, None)


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
        # Why it was cancelled; set by _cancel(), or inherited when an
        # enclosing scope's cancellation reaches it.  What the Cancelled
        # raised inside it says (_traps._cancelled_for).
        self._cancel_reason: CancelReason | None = None

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
        # The first reason sticks, as in trio: one inherited from an
        # enclosing scope's cancellation (see _update_eff) is not replaced.
        if self._cancel_reason is None:
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

