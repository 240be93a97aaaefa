"""TrioToken: the handle that reaches a running loop from other threads."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._final import final

if TYPE_CHECKING:
    from ._runner import Runner


@final
class TrioToken:
    """A handle to a running ringtrio loop, usable from any thread.

    (Named like trio's for portability; ``RingtrioToken`` is the same class.)
    """

    __slots__ = ("_runner", "__weakref__")

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
