"""Nurseries: where child tasks run, and ``nursery.start()``'s hand-over
(TaskStatus)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar, TypeVarTuple, Unpack

import outcome

from ._cancel_scope import _ACTIVE, _DONE, _MISNESTING_HELP, LOOSE_GROUP_NOTE, CancelScope
from ._deprecate import warn_loose_exception_groups
from ._exceptions import Cancelled, RingtrioInternalError
from ._final import final
from ._local import _local, _outside_run
from ._task import _require_function
from ._traps import Abort, cancel_shielded_checkpoint, reschedule, wait_task_rescheduled

if TYPE_CHECKING:
    from ._task import Task

F = TypeVar("F", bound=Callable[..., Any])

StatusT_contra = TypeVar("StatusT_contra", contravariant=True)


class TaskStatus(Protocol[StatusT_contra]):
    """The type of the ``task_status`` argument a function started with
    :meth:`Nursery.start` receives (as ``trio.TaskStatus``), for annotations:
    ``task_status: ringtrio.TaskStatus[int] = ringtrio.TASK_STATUS_IGNORED``.
    ``started(value)`` hands ``value`` to ``start()``'s caller."""

    def started(self, value: StatusT_contra = ...) -> None: ...


# The positional arguments passed through to the function a task runs: a
# type checker matches them against its signature, as in a direct call.
PosArgT = TypeVarTuple("PosArgT")


class _StartableFunction(Protocol[Unpack[PosArgT]]):
    """What :meth:`Nursery.start` can run: an async function taking these
    positional arguments and a ``task_status`` keyword argument."""

    def __call__(self, *args: Unpack[PosArgT], task_status: TaskStatus[Any]) -> Awaitable[object]: ...


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


@final
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

    _parent_task: Task
    _scope: CancelScope
    _children: set[Task]
    _pending_excs: list[BaseException]
    _nested_child_running: bool
    # The task parked at the end of the nursery block, waiting for the
    # children: the parent task, unless misnesting had another task exit
    # the nursery.
    _parent_waiting_in_aexit: Task | None
    _pending_starts: int
    _closed: bool
    _strict: bool
    # Cleanups run when the nursery closes, after its children (resources
    # owned by the nursery: multishot requests, buffer groups).
    _exit_callbacks: list[Callable[[], Any]] | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "ringtrio.Nursery has no public constructor: open a nursery with "
            "'async with ringtrio.open_nursery() as nursery:'"
        )

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
        self,
        async_fn: Callable[[Unpack[PosArgT]], Awaitable[object]],
        *args: Unpack[PosArgT],
        name: object = None,
    ) -> None:
        """Start ``async_fn(*args)`` as a child task of this nursery."""
        self._parent_task._runner._spawn(async_fn, args, self, name)

    async def start(
        self,
        async_fn: _StartableFunction[Unpack[PosArgT]],
        *args: Unpack[PosArgT],
        name: object = None,
    ) -> Any:
        """Start ``async_fn(*args, task_status=...)`` and wait until it calls
        ``task_status.started(value)``; return that value.  Until then the
        child runs "inside" this call: its errors are raised here and
        cancelling this call cancels it."""
        if self._closed:
            raise RuntimeError("Nursery is closed to new arrivals")
        _require_function(async_fn, "nursery.start")
        runner = self._parent_task._runner
        try:
            self._pending_starts += 1
            try:
                async with open_nursery(strict_exception_groups=True) as old_nursery:
                    task_status = _TaskStatus(old_nursery, self)

                    def thunk(*a: Any) -> Any:
                        return async_fn(*a, task_status=task_status)

                    task = runner._spawn(thunk, args, old_nursery, async_fn if name is None else name)
                    task._eventual_parent_nursery = self
            except BaseExceptionGroup as group:
                # The private nursery has one child, so one error: start()
                # raises it as the child raised it.  Raised from here, it
                # would get the group as its __context__; keep its own.
                if len(group.exceptions) == 1:
                    exc = group.exceptions[0]
                    context = exc.__context__
                    try:
                        raise exc
                    finally:
                        exc.__context__ = context
                        del exc, context, group
                raise RingtrioInternalError(
                    "nursery.start()'s private nursery had several tasks: the child was "
                    "given it (task_status is private to start(), and so is the nursery "
                    "its task runs in until started()) and spawned more tasks in it. "
                    "Spawn them in a nursery of your own."
                ) from group
            if task_status._value is _NO_STATUS:
                raise RuntimeError("child exited without calling task_status.started()")
            return task_status._value
        finally:
            self._pending_starts -= 1
            self._check_nursery_closed()

    def _add_exc(self, exc: BaseException, source: str, reason: str | None, source_task: Task) -> None:
        # The error is kept for the group, and cancels the other children;
        # their Cancelled says why (trio's words), and names the task whose
        # error it was.
        self._pending_excs.append(exc)
        self._scope._cancel(source, reason, repr(source_task))

    def _check_nursery_closed(self) -> None:
        if not (self._nested_child_running or self._children or self._pending_starts):
            self._closed = True
            waiter = self._parent_waiting_in_aexit
            if waiter is not None:
                self._parent_waiting_in_aexit = None
                reschedule(waiter)

    def _child_finished(self, task: Task, result: outcome.Outcome[Any]) -> None:
        self._children.remove(task)
        if type(result) is outcome.Error:
            error = result.error
            self._add_exc(error, "nursery", f"child task raised exception {error!r}", task)
        if not (self._children or self._nested_child_running or self._pending_starts):
            self._check_nursery_closed()

    async def _nested_child_finished(
        self, nested_child_exc: BaseException | None
    ) -> BaseException | None:
        if nested_child_exc is not None:
            self._add_exc(
                nested_child_exc,
                "nursery",
                f"Code block inside nursery contextmanager raised exception {nested_child_exc!r}",
                self._parent_task,
            )
        self._nested_child_running = False
        self._check_nursery_closed()
        # Wait for the children.  (Also in a nursery that misnesting closed
        # early, whose task exited without leaving it: whoever exits it
        # later waits for its remaining, cancelled, children and gets their
        # errors, where trio drops them.)
        if self._children or self._pending_starts:

            def aborted(raise_cancel: Callable[[], NoReturn]) -> Abort:
                # Cancelled needs no action: the enclosing cancellation
                # already reaches the children.  KeyboardInterrupt is kept.
                exn = outcome.capture(raise_cancel).error  # type: ignore[union-attr]
                if not isinstance(exn, Cancelled):
                    self._add_exc(exn, "KeyboardInterrupt", None, self._parent_task)
                del exn
                return Abort.FAILED

            self._parent_waiting_in_aexit = _local.task
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
        nurseries = self._parent_task._child_nurseries
        popped = nurseries.pop() if nurseries else None
        if popped is not self:
            # A nursery opened inside this one is still open.  (trio's
            # words; the task's exit then reports the open nursery.)
            raise AssertionError("Nursery misnesting detected!")
        if self._pending_excs:
            excs = self._pending_excs
            self._pending_excs = []
            if self._strict:
                return BaseExceptionGroup("Exceptions from ringtrio nursery", excs)
            if len(excs) == 1:
                return excs[0]
            group = BaseExceptionGroup("Exceptions from ringtrio nursery", excs)
            group.add_note(LOOSE_GROUP_NOTE)
            return group
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
        opener = _buffer_group_opener
        if opener is None:  # pragma: no cover - `import ringtrio` registers it
            raise RuntimeError(
                "nursery.buffer_group() is provided by ringtrio's buffer groups "
                "(ringtrio/_buffer_group.py), which are not loaded: import ringtrio"
            )
        return opener(self, count, size, incremental)


# Nursery.buffer_group is implemented above the core, by the layer that owns
# buffer groups: ringtrio/_buffer_group.py registers its opener here when it
# is imported (`import ringtrio` always imports it).  So the core never
# imports upward.
_buffer_group_opener: Callable[[Nursery, int, int, bool | None], Any] | None = None


def set_buffer_group_opener(opener: F) -> F:
    """Register ``opener(nursery, count, size, incremental)`` as what
    :meth:`Nursery.buffer_group` calls.  Usable as a decorator."""
    global _buffer_group_opener
    _buffer_group_opener = opener
    return opener


def _misnesting_at_exit(task: Task, result: outcome.Outcome[Any]) -> outcome.Outcome[Any]:
    """``task`` is exiting, but not from the scope it was spawned in: it
    left a nursery or a cancel scope open, or a scope around it was exited
    before it.  The task fails with an error saying so (its own error, if
    it had one, as the context)."""
    scope = task._cancel_scope
    nurseries = task._child_nurseries
    if nurseries:
        # Nurseries left open (e.g. __aenter__ without __aexit__, or an
        # AsyncExitStack that outlives the task).  As in trio, they stay,
        # cancelled and closed to new tasks: their children finish, and
        # whoever exits them later may still do so.
        for nursery in nurseries:
            nursery._scope._cancel(
                "nursery",
                "Parent Task exited prematurely, abandoning this nursery without exiting it properly.",
                repr(task),
            )
            nursery._closed = True
        message = (
            f"Nursery stack corrupted: Nursery surrounding {task!r} was closed before "
            "the task exited"
        )
    elif scope._state == _DONE:
        # A scope around the task was exited while the task ran in it.
        message = (
            f"Cancel scope stack corrupted: Cancel scope surrounding {task!r} was "
            "closed before the task exited"
        )
    else:
        # The task left plain cancel scopes open (entered by hand, never
        # exited).  trio says nothing; an error here points at the bug.
        message = (
            f"Cancel scope stack corrupted: {task!r} exited with {scope!r} still open. "
            "Use 'with' blocks for cancel scopes."
        )
        while scope._owner is task and scope._state == _ACTIVE:
            scope._leave(task)
            scope = task._cancel_scope
    try:
        # Raised, so that the error has a traceback (this frame).
        raise RuntimeError(message + _MISNESTING_HELP)
    except RuntimeError as err:
        # (Set, not left to Python: the caller may be handling the task's
        # StopIteration.)
        err.__context__ = result.error if type(result) is outcome.Error else None
        return outcome.Error(err)


_object_new = object.__new__


def _new_nursery(parent_task: Task, scope: CancelScope, strict: bool) -> Nursery:
    # Nursery() refuses (no public constructor, as trio's); the runtime
    # makes them here.  (A plain function and object.__new__: the fastest
    # way to a new object, and nurseries are made often.)
    self = _object_new(Nursery)
    self._parent_task = parent_task
    self._scope = scope
    self._children = set()
    self._pending_excs = []
    self._nested_child_running = True
    self._parent_waiting_in_aexit = None
    self._pending_starts = 0
    self._closed = False
    self._strict = strict
    self._exit_callbacks = None
    if scope._nursery_tasks is None:
        scope._nursery_tasks = set()
    return self


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
        nursery = _new_nursery(task, scope, strict)
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
    if strict_exception_groups is not None and not strict_exception_groups:
        # (Only when given: a nursery loose because its run is warned
        # about once, by run().)
        warn_loose_exception_groups("open_nursery", stacklevel=2)
    return _NurseryManager(strict_exception_groups)
