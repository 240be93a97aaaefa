"""Handing a task's coroutine object to another coroutine runner and back
(trio's ``lowlevel.temporarily_detach_coroutine_object``,
``reattach_detached_coroutine_object`` and
``permanently_detach_coroutine_object``; greenback is built on them).

A coroutine object can be driven by whoever calls its ``send``.  Detaching
means: the task stops driving it, but the coroutine is suspended in the
middle of a ringtrio call, and someone else -- another event loop, or a
greenlet-style runner running inside some task -- resumes it from there.

* Temporarily: the task parks (an ordinary ``_Park`` trap, so cancellation
  reaches it through the abort function), and the next ``send`` comes from
  the other runner.  To come back, the coroutine itself calls
  :func:`reattach_detached_coroutine_object`: it makes the parked task
  runnable, then yields one value to the other runner (so that runner lets
  go of it); the ringtrio loop then resumes it with a marker value.
* Permanently: the coroutine yields a ``_PermanentDetach`` trap; the run
  loop reports the task as exited with the given outcome (its nursery goes
  on without it) and never touches the coroutine again.  The only help the
  run loop gives: ``Runner._bad_yield`` recognises that trap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import outcome

from ._exceptions import RingtrioInternalError
from ._local import current_task
from ._traps import Abort, _yield_trap, reschedule, wait_task_rescheduled

if TYPE_CHECKING:
    from ._task import Task

# What the run loop sends into a reattached coroutine (checked on arrival).
_REATTACHING = "reattaching"


class _PermanentDetach:
    """The trap of :func:`permanently_detach_coroutine_object`: "act as if my
    task exited with ``final_outcome``"."""

    __slots__ = ("final_outcome",)

    def __init__(self, final_outcome: outcome.Outcome[Any]) -> None:
        self.final_outcome = final_outcome

    def __repr__(self) -> str:
        return (
            "<ringtrio permanent detach: a ringtrio task's coroutine handed itself to "
            "another coroutine runner; only ringtrio.run() understands this>"
        )


async def permanently_detach_coroutine_object(final_outcome: outcome.Outcome[Any]) -> Any:
    """Detach the current task's coroutine object for good: the task ends
    now, as if its coroutine had returned or raised ``final_outcome``, and
    whoever sends into the coroutine next (another coroutine runner) drives
    it from here.  Returns (or raises) what that runner sends (or throws) in.
    As in trio.

    Release what belongs to the run first: a task with open nurseries cannot
    detach.

    Raises:
      RuntimeError: the task has open nurseries.
    """
    if current_task()._child_nurseries:
        raise RuntimeError(
            "can't permanently detach a coroutine object with open nurseries: the "
            "task would leave their children behind; leave the 'async with "
            "open_nursery()' blocks first"
        )
    return await _yield_trap(_PermanentDetach(final_outcome))


async def temporarily_detach_coroutine_object(abort_func: Callable[[Callable[[], NoReturn]], Abort]) -> Any:
    """Detach the current task's coroutine object until it calls
    :func:`reattach_detached_coroutine_object`.  The task stays, parked;
    meanwhile another coroutine runner must drive the coroutine (this call
    returns, or raises, what that runner first sends, or throws, in).  As in
    trio.  Keep :func:`current_task` to reattach (and ``Task.coro`` is the
    coroutine object).

    ``abort_func`` is called if the task is cancelled while detached, as in
    :func:`wait_task_rescheduled`, but must return ``Abort.FAILED``: it should
    have the other runner stop what the coroutine is doing, and the
    coroutine, once reattached, raise the cancellation (``raise_cancel``).

    Raises:
      RingtrioInternalError: ``abort_func`` returned ``Abort.SUCCEEDED``
        (the loop would resume a coroutine another runner owns).
    """

    def abort(raise_cancel: Callable[[], NoReturn]) -> Abort:
        result = abort_func(raise_cancel)
        if result is Abort.SUCCEEDED:
            raise RingtrioInternalError(
                f"the abort function {abort_func!r} of a detached coroutine returned "
                "Abort.SUCCEEDED; it must return Abort.FAILED, since the coroutine "
                "belongs to another runner until it calls "
                "reattach_detached_coroutine_object()"
            )
        return result

    return await wait_task_rescheduled(abort)


def _is_running(coro: Any) -> bool:
    # A coroutine (cr_running), or a generator-based one (gi_running).
    running = getattr(coro, "cr_running", None)
    if running is None:
        running = getattr(coro, "gi_running", False)
    return bool(running)


async def reattach_detached_coroutine_object(task: Task, yield_value: object) -> None:
    """Called by a coroutine detached with
    :func:`temporarily_detach_coroutine_object` (running under the other
    runner): yield ``yield_value`` to that runner, then come back to
    ``task``, the task it was detached from, which resumes it at its next
    turn.  As in trio.

    Raises:
      RuntimeError: ``task``'s coroutine is not the one calling (a cheap
        check: its coroutine must be running).
    """
    if not _is_running(task.coro):
        raise RuntimeError(
            f"given task does not match calling coroutine: {task!r}'s coroutine is "
            "not the one running; pass the task this coroutine was detached from "
            "(current_task() before detaching)"
        )
    reschedule(task, outcome.Value(_REATTACHING))
    sent = await _yield_trap(yield_value)
    if sent != _REATTACHING:
        raise RuntimeError(
            f"a reattached coroutine was resumed with {sent!r} by the other runner "
            f"after it yielded {yield_value!r}; that runner must let go of it then"
        )
