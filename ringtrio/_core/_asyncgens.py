"""Finalizing async generators that are abandoned before they finish.

An ``async for`` loop that breaks out early leaves its async generator
suspended. When the generator is garbage collected, Python calls the
"finalizer" hook registered when it first iterated; without one it would
close the generator synchronously, so any ``await`` in its ``finally`` block
(closing a socket, say) would fail. So ``run()`` installs hooks
(``sys.set_asyncgen_hooks``):

* ``firstiter`` remembers every generator first iterated inside this run
  (weakly: remembering must not keep it alive);
* ``finalizer`` — called by the garbage collector, possibly in another
  thread — asks the loop to run ``agen.aclose()`` in a system task;
* when the main task has finished, generators still alive are closed in the
  order they were created, newest first, before the run ends.

Generators first iterated outside the run (another loop, another thread)
are passed on to the hooks that were installed before.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._runner import Runner

_log = logging.getLogger("ringtrio.asyncgens")


class AsyncGenerators:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        # agen -> creation sequence number (weak keys: remembering a
        # generator must not keep it alive).
        self.alive: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._counter = 0
        self._previous: Any = None

    def install(self) -> None:
        self._previous = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._firstiter, finalizer=self._finalizer)

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.set_asyncgen_hooks(*self._previous)
            self._previous = None

    def _firstiter(self, agen: Any) -> None:
        from ._local import _local

        if _local.runner is self._runner:
            self._counter += 1
            self.alive[agen] = self._counter
            return
        previous = self._previous.firstiter if self._previous is not None else None
        if previous is not None:
            previous(agen)

    def _finalizer(self, agen: Any) -> None:
        runner = self._runner
        try:
            runner._run_sync_soon(self._spawn_aclose, (agen,), False)
        except Exception:  # noqa: BLE001 - RunFinishedError: the run is over
            # Too late for a task: close it synchronously, as Python would.
            self._close_now(agen)

    def _spawn_aclose(self, agen: Any) -> None:
        from ._run import spawn_system_task

        spawn_system_task(self._aclose, agen, name=f"<finalizer of {agen.__qualname__}>")

    async def _aclose(self, agen: Any) -> None:
        from ._cancel_scope import CancelScope

        with CancelScope(shield=True):
            try:
                await agen.aclose()
            except Exception:  # noqa: BLE001 - report, do not crash the run
                _log.exception("error closing abandoned async generator %r", agen)

    @staticmethod
    def _close_now(agen: Any) -> None:
        closer = agen.aclose()
        try:
            closer.send(None)
        except StopIteration:
            pass
        except Exception:  # noqa: BLE001
            _log.exception("error closing async generator %r after its run ended", agen)
        else:
            closer.close()
            _log.error(
                "async generator %r awaited in its finally block after its ringtrio "
                "run ended; that cleanup could not run",
                agen,
            )

    async def finalize_remaining(self) -> None:
        """Close every generator of this run that is still alive."""
        from ._cancel_scope import CancelScope

        # Newest first: a generator usually depends on the ones created
        # before it (an outer async for wraps an inner one).
        remaining = sorted(self.alive.items(), key=lambda item: item[1])
        self.alive.clear()
        with CancelScope(shield=True):
            for agen, _ in reversed(remaining):
                try:
                    await agen.aclose()
                except Exception:  # noqa: BLE001
                    _log.exception("error closing async generator %r at end of run", agen)
