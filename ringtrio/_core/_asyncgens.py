"""Finalizing async generators that are abandoned before they finish.

An ``async for`` loop that breaks out early leaves its async generator
suspended.  When the generator is garbage collected, Python calls the
"finalizer" hook that was installed when it was first iterated; with no hook
it would close the generator synchronously, so any ``await`` in its
``finally`` block (closing a socket, say) would fail.  So ``run()`` installs
hooks (``sys.set_asyncgen_hooks``; they are per thread, as runs are), with
trio's rules:

* ``firstiter``: a generator first iterated in a task of this run is *ours*
  and is remembered (weakly: remembering must not keep it alive).  One
  first iterated anywhere else in this thread -- an abort function run by a
  deadline, a run_sync_soon callback, an instrument -- is *foreign*: its id
  is remembered, and it is handed to the hooks installed before ours.
* ``finalizer`` (called by the garbage collector, perhaps in another thread):
  ours are closed in the run, in a system task, with a ``ResourceWarning``
  saying the generator was not exhausted; foreign ones go to the previous
  finalizer, or are closed synchronously as Python would.
* Closing is ``aclose()`` inside a scope that is shielded *and* cancelled: it
  never ends in ``Cancelled`` from outside, and an ``await`` in the
  generator's cleanup raises ``Cancelled`` at once instead of holding up the
  run.  Whatever it raises (any ``BaseException``) is logged, never raised.
* When the main task and the system tasks are done, the generators still
  alive are closed one at a time, newest first (a generator usually depends
  on ones created before it), repeatedly until none is left: cleanup code may
  iterate new ones.  From then on they are held strongly, so that the garbage
  collector does not finalize one at an awkward moment of the shutdown.
"""

from __future__ import annotations

import logging
import sys
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ._cancel_scope import CancelScope
from ._exceptions import RunFinishedError
from ._local import _local
from ._traps import Abort, reschedule, wait_task_rescheduled

if TYPE_CHECKING:
    from ._runner import Runner

_log = logging.getLogger("ringtrio.async_generator_errors")


def _describe(agen: Any) -> str:
    """``module.qualname`` of the async generator function behind ``agen``."""
    code = getattr(agen, "ag_code", None)
    if code is None:
        return repr(agen)
    frame = getattr(agen, "ag_frame", None)
    module = frame.f_globals.get("__name__") if frame is not None else None
    if module is None:
        module = f"<{code.co_filename}>"
    return f"{module}.{getattr(agen, '__qualname__', code.co_name)}"


class AsyncGenerators:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        # Ours, with the order they were first iterated in.  Weak keys while
        # the run goes on; a plain dict from finalize_remaining() on.
        self.alive: weakref.WeakKeyDictionary[Any, int] | dict[Any, int] = (
            weakref.WeakKeyDictionary()
        )
        self._counter = 0
        # ids of foreign generators not yet finalized.  (Safe: an id leaves
        # the set when its generator is finalized, before it can be reused.)
        self._foreign: set[int] = set()
        # Ours, collected after the system nursery closed but before
        # finalize_remaining() took over: it closes them.
        self._trailing: list[Any] = []
        self._previous: Any = None

    def install(self) -> None:
        self._previous = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._firstiter, finalizer=self._finalizer)

    def uninstall(self) -> None:
        # (self._previous stays: a foreign generator collected after the run
        # still goes to its own finalizer.)
        if self._previous is not None:
            sys.set_asyncgen_hooks(*self._previous)

    def _firstiter(self, agen: Any) -> None:
        if _local.task is not None:
            self._counter += 1
            self.alive[agen] = self._counter
            return
        self._foreign.add(id(agen))
        previous = self._previous.firstiter
        if previous is not None:
            previous(agen)

    def _finalizer(self, agen: Any) -> None:
        try:
            self._foreign.remove(id(agen))
        except KeyError:
            pass
        else:
            previous = self._previous.finalizer
            if previous is not None:
                previous(agen)
            else:
                _close_synchronously(agen)
            return
        name = _describe(agen)
        try:
            self._runner._run_sync_soon(self._finalize_in_run, (agen, name), False)
        except RunFinishedError:
            # The run ended without closing it (it crashed): as Python would.
            _close_synchronously(agen)
            return
        # Last: with an "error" warnings filter this raises, which the
        # garbage collector prints and ignores.
        warnings.warn(
            f"Async generator {name!r} was garbage collected before it was exhausted; "
            "its cleanup now runs in a system task, cancelled. Use "
            "'async with contextlib.aclosing(agen):' to close it where it is used.",
            ResourceWarning,
            stacklevel=2,
            source=agen,
        )

    def _finalize_in_run(self, agen: Any, name: str) -> None:
        # In the loop's thread (a run_sync_soon callback).
        runner = self._runner
        nursery = runner.system_nursery
        if nursery is None or nursery._closed:
            self._trailing.append(agen)
            return
        runner._spawn(
            self._finalize_one, (agen, name), nursery,
            f"<close abandoned async generator {name}>", system=True,
        )

    async def _finalize_one(self, agen: Any, name: str) -> None:
        try:
            with CancelScope(shield=True) as scope:
                scope.cancel()
                await agen.aclose()
        except BaseException:  # noqa: BLE001 - report, never crash the run
            _log.exception(
                "error ignored during finalization of async generator %s: close it with "
                "'async with contextlib.aclosing(...)' to see its errors where it is used",
                name,
            )

    async def finalize_remaining(self) -> None:
        """Close every generator of this run that is still alive (in the
        init task, once the system nursery is closed)."""
        self.alive = dict(self.alive)
        # Let the callbacks already queued run first: a finalizer that raced
        # the closing of the system nursery put its generator in _trailing.
        task = _local.task
        self._runner._run_sync_soon(reschedule, (task,), False)
        await wait_task_rescheduled(_abort_failed)
        for agen in self._trailing:
            self._counter += 1
            self.alive[agen] = self._counter
        self._trailing.clear()
        while self.alive:
            batch = sorted(self.alive.items(), key=lambda item: -item[1])
            self.alive = {}
            for agen, _ in batch:
                await self._finalize_one(agen, _describe(agen))


def _abort_failed(raise_cancel: Callable[[], NoReturn]) -> Abort:
    return Abort.FAILED


def _close_synchronously(agen: Any) -> None:
    # What Python does with no finalizer hook: throw GeneratorExit in and
    # step once.  A cleanup that yields raises RuntimeError (from aclose());
    # one that awaits cannot run here.
    closer = agen.aclose()
    try:
        closer.send(None)
    except StopIteration:
        return
    closer.close()
    raise RuntimeError(
        f"async generator {_describe(agen)!r} awaited something during finalization "
        "outside a ringtrio run that could run it; close it with "
        "'async with contextlib.aclosing(...)' where it is used"
    )
