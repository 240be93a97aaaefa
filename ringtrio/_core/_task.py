"""Task: one coroutine driven by the run loop, and what it does when
cancelled while parked."""

from __future__ import annotations

import functools
import gc
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextvars import Context
from typing import TYPE_CHECKING, Any, NoReturn

import outcome

from ._exceptions import RingtrioInternalError
from ._final import final
from ._traps import Abort, _raise_cancelled_for, reschedule

if TYPE_CHECKING:
    from ._cancel_scope import CancelScope
    from ._nursery import Nursery
    from ._runner import Runner


def _require_function(async_fn: object, api: str) -> None:
    """Raise a TypeError that teaches if ``async_fn``, given to ``api``
    (``"ringtrio.run"``, ``"nursery.start_soon"`` ...), cannot be called.

    The usual mistake is ``api(fn(x))``: the function was called already and
    its coroutine object is passed instead of the function."""
    if callable(async_fn):
        return
    if isinstance(async_fn, (types.CoroutineType, types.GeneratorType)) or hasattr(async_fn, "__await__"):
        name = getattr(async_fn, "__name__", None) or "fn"
        kind = "a coroutine object" if isinstance(async_fn, types.CoroutineType) else "an awaitable"
        if isinstance(async_fn, types.CoroutineType):
            async_fn.close()  # (it will never run: no "never awaited" warning on top)
        # (trio's words after the call's name: "was expecting an async
        # function, but instead it got a coroutine object <...>".)
        raise TypeError(
            f"{api}() was expecting an async function, but instead it got {kind} {async_fn!r}: the "
            f"result of calling one. You probably wrote '{api}({name}(...))'; pass the "
            f"function and its arguments separately: '{api}({name}, ...)' "
            "(functools.partial for keyword arguments)."
        )
    raise TypeError(f"{api}() expected an async function, but got {async_fn!r}, which cannot be called")


@final
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

    _runner: Runner
    coro: Coroutine[Any, Any, Any]
    _send: Callable[[Any], Any]
    _name: object
    context: Context
    _parent_nursery: Nursery | None
    _eventual_parent_nursery: Nursery | None
    _child_nurseries: list[Nursery]
    _cancel_scope: CancelScope
    _next_send: Any
    _abort_func: Callable[[Callable[[], NoReturn]], Abort] | None
    _deadline_seq: int
    _system: bool
    _lot_breakers: list[Any] | None
    _finalizer: Callable[[], Awaitable[Any]] | None
    _stashed: outcome.Outcome[Any] | None
    _cancel_checks: int
    custom_sleep_data: Any

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "ringtrio.lowlevel.Task has no public constructor: tasks are started with "
            "nursery.start_soon(), nursery.start() or ringtrio.lowlevel.spawn_system_task()"
        )

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
        """(frame, lineno) pairs down the task's await chain, from
        ``Task.coro`` to the innermost await: coroutines, generator-based
        coroutines, and async generators being iterated (``async for``).
        Empty once the task has exited."""
        for frame in await_chain_frames(self.coro):
            yield frame, frame.f_lineno

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
        # KeyboardInterrupt is outside every cancel scope: offered first, as
        # in trio.
        if self._runner.ki_pending and self is self._runner.main_task:
            self._attempt_abort(self._runner._raise_ki)
            if self._abort_func is None:
                return
        if self._cancel_scope._eff:
            self._attempt_abort(functools.partial(_raise_cancelled_for, self))


_object_new = object.__new__


def new_task(
    runner: Runner,
    coro: Coroutine[Any, Any, Any],
    name: object,
    context: Context,
    nursery: Nursery | None,
    system: bool,
) -> Task:
    """A new Task (Task() refuses: no public constructor, as trio's).  A
    plain function and object.__new__: as fast as a class call with an
    __init__, and tasks are made often."""
    self: Task = _object_new(Task)
    self._runner = runner
    self.coro = coro
    # The bound send method, made once: resuming a task is the hottest
    # operation in the runtime.
    self._send = coro.send
    self._name = name
    self.context = context
    self._parent_nursery = nursery
    self._eventual_parent_nursery = None
    self._child_nurseries = []
    self._cancel_scope = None  # type: ignore[assignment]
    self._next_send = None
    self._abort_func = None
    self._deadline_seq = 0
    self._system = system
    # Parking lots to break if this task exits while registered (a lock
    # it holds): see add_parking_lot_breaker.
    self._lot_breakers = None
    # Internal: an async function run in this task once its coroutine
    # has finished, like a `finally:` block but not a frame under the
    # coroutine on every resume (serve_listeners closes each connection
    # this way); `_stashed` holds the coroutine's outcome meanwhile.
    self._finalizer = None
    self._stashed = None
    # Cancellation checks that did not yield (checkpoint_if_cancelled
    # finding nothing to raise): testing.assert_checkpoints counts them
    # as trio does, since their schedule point comes separately.
    self._cancel_checks = 0
    self.custom_sleep_data = None
    return self


def await_chain_frames(awaitable: Any) -> Iterator[types.FrameType]:
    """The frames down an await chain from ``awaitable`` (a task's coroutine)
    to the innermost await: coroutines, generator-based coroutines, and
    async generators being iterated (``async for``).  Task.iter_await_frames
    and the task tree (which needs no line numbers: decoding them is most of
    the cost of a walk) both walk it here."""
    while awaitable is not None:
        if hasattr(awaitable, "cr_frame"):
            frame = awaitable.cr_frame  # None once finished
            if frame is not None:
                yield frame
            awaitable = awaitable.cr_await
        elif hasattr(awaitable, "gi_frame"):
            frame = awaitable.gi_frame
            if frame is not None:
                yield frame
            awaitable = awaitable.gi_yieldfrom
        elif type(awaitable).__name__ in ("async_generator_asend", "async_generator_athrow"):
            # What `async for` awaits: a wrapper around the generator
            # that does not expose it (CPython issue 76991), but the
            # garbage collector can see what it refers to.
            agen = next((ref for ref in gc.get_referents(awaitable) if hasattr(ref, "ag_frame")), None)
            if agen is None or agen.ag_frame is None:
                return
            yield agen.ag_frame
            awaitable = agen.ag_await
        else:
            return
