"""AnyIO cancel scopes and task groups on ringtrio's scopes and nurseries.

Both are thin: a ringtrio ``CancelScope`` already has AnyIO's semantics
(level-triggered, shields, ``cancelled_caught``), and a strict ringtrio
nursery is an AnyIO task group.  What is added here is what AnyIO promises
on top: task handles (``create_task``), ``start()`` with AnyIO's task status,
and a task group that
leaves with a plain ``Cancelled`` (not a group of them) when cancellation is
all that happened inside it, so that the enclosing scope that cancelled it
sees what it expects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from contextvars import Context
from functools import partial
from types import TracebackType
from typing import Any, Literal, TypeVar

from anyio import TaskHandle
from anyio import CancelScope as AnyioCancelScope
from anyio.abc import TaskGroup as AnyioTaskGroup
from anyio.abc._tasks import call_for_coroutine, get_callable_name, get_coro_name

import ringtrio

T = TypeVar("T")


class CancelScope(AnyioCancelScope):
    """An AnyIO cancel scope that is a ringtrio ``CancelScope`` underneath."""

    __slots__ = ("_scope",)

    def __new__(cls, *, deadline: float = math.inf, shield: bool = False) -> CancelScope:
        # anyio.CancelScope.__new__ dispatches to the running backend; this
        # class is what that dispatch creates, so it must not dispatch again.
        return object.__new__(cls)

    def __init__(self, *, deadline: float = math.inf, shield: bool = False) -> None:
        self._scope = ringtrio.CancelScope(deadline=deadline, shield=shield)

    @classmethod
    def _of(cls, scope: ringtrio.CancelScope) -> CancelScope:
        """The AnyIO face of an existing ringtrio scope (a nursery's)."""
        self = object.__new__(cls)
        self._scope = scope
        return self

    def __enter__(self) -> CancelScope:
        self._scope.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        return self._scope.__exit__(exc_type, exc_val, exc_tb)

    def cancel(self, reason: str | None = None) -> None:
        self._scope.cancel(reason)

    @property
    def deadline(self) -> float:
        return self._scope.deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._scope.deadline = value

    @property
    def cancel_called(self) -> bool:
        return self._scope.cancel_called

    @property
    def cancelled_caught(self) -> bool:
        return self._scope.cancelled_caught

    @property
    def shield(self) -> bool:
        return self._scope.shield

    @shield.setter
    def shield(self, value: bool) -> None:
        self._scope.shield = value


def _only_cancelled(group: BaseExceptionGroup[BaseException]) -> bool:
    # Walked by hand: BaseExceptionGroup.split() would build new groups
    # that share the leaves (and keep them referenced for as long as the
    # traceback of this frame lives).
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            if not _only_cancelled(exc):
                return False
        elif not isinstance(exc, ringtrio.Cancelled):
            return False
    return True


class TaskGroup(AnyioTaskGroup):
    """An AnyIO task group over a strict ringtrio nursery."""

    def __init__(self) -> None:
        self._manager = ringtrio.open_nursery(strict_exception_groups=True)
        self._nursery: ringtrio.Nursery | None = None
        self._entered = False
        self._active = False
        self.cancel_scope = None  # type: ignore[assignment]  # set on entry

    async def __aenter__(self) -> TaskGroup:
        if self._entered:
            raise RuntimeError("TaskGroup cannot be entered more than once")
        self._entered = True
        self._nursery = await self._manager.__aenter__()
        self.cancel_scope = CancelScope._of(self._nursery.cancel_scope)
        self._active = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        try:
            return await self._manager.__aexit__(exc_type, exc_val, exc_tb)
        except BaseExceptionGroup as group:
            # Only cancellations (of an enclosing scope) left the nursery:
            # AnyIO reports that as one Cancelled, which the scope that
            # cancelled us catches like any other.
            if _only_cancelled(group):
                raise ringtrio.Cancelled._create(source="nursery") from group
            raise
        finally:
            self._active = False
            del exc_val, exc_tb

    def _check_active(self, coro: Coroutine[Any, Any, Any] | None = None) -> ringtrio.Nursery:
        if not self._active or self._nursery is None:
            if coro is not None:
                coro.close()  # no "never awaited" warning on top of the error
            raise RuntimeError("This task group is not active; no new tasks can be started.")
        return self._nursery

    def create_task(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: object = None,
        context: Context | None = None,
    ) -> TaskHandle[T]:
        if not isinstance(coro, Coroutine):
            raise TypeError(f"expected a coroutine, got {type(coro).__qualname__}")
        nursery = self._check_active(coro)
        handle: TaskHandle[T] = TaskHandle(coro, get_coro_name(coro, name))
        # start_soon copies the context it is called in (also from a
        # run_sync_soon callback, where no task is running: AnyIO's
        # BlockingPortal starts calls from other threads that way).
        if context is None:
            nursery.start_soon(handle._run_coro, name=handle.name)
        else:
            context.run(partial(nursery.start_soon, handle._run_coro, name=handle.name))
        return handle

    async def start(
        self,
        func: Callable[..., Coroutine[Any, Any, T]],
        *args: object,
        name: object = None,
        return_handle: Literal[False, True] = False,
    ) -> Any:
        nursery = self._check_active()
        final_name = get_callable_name(func, name)
        handles: list[TaskHandle[T]] = []

        # The function is called inside the new task, so that an error from
        # calling it is the task's error, raised here by start().  Until it
        # has returned its coroutine, started() is only recorded (so that a
        # synchronous wrapper calling it twice, or returning no coroutine
        # after calling it, fails here and not in the group); then it is
        # passed on to ringtrio's task status, which moves the task into
        # this group's nursery.
        async def starter(*, task_status: ringtrio.TaskStatus[Any]) -> None:
            status = _EarlyTaskStatus()
            coro = call_for_coroutine(func, args, task_status=status)
            status.hand_over(task_status)
            handle: TaskHandle[T] = TaskHandle(coro, final_name)
            handles.append(handle)
            await handle._run_coro()

        value = await nursery.start(starter, name=final_name)
        if return_handle:
            handle = handles[0]
            handle._start_value = value
            return handle
        return value


_NOT_STARTED = object()


class _EarlyTaskStatus:
    """The ``task_status`` AnyIO's ``start()`` hands the function: records a
    ``started()`` made while the function is still being called, forwards
    the ones made later to ringtrio's own task status."""

    __slots__ = ("_early", "_target")

    def __init__(self) -> None:
        self._early: object = _NOT_STARTED
        self._target: ringtrio.TaskStatus[Any] | None = None

    def started(self, value: object = None) -> None:
        if self._target is not None:
            self._target.started(value)
        elif self._early is not _NOT_STARTED:
            raise RuntimeError("called 'started' twice on the same task status")
        else:
            self._early = value

    def hand_over(self, target: ringtrio.TaskStatus[Any]) -> None:
        self._target = target
        if self._early is not _NOT_STARTED:
            target.started(self._early)
