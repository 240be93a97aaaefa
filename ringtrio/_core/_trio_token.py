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
    _runner: Runner

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "ringtrio.lowlevel.TrioToken has no public constructor: get the run's token "
            "with ringtrio.lowlevel.current_trio_token() (inside the run)"
        )

    @classmethod
    def _create(cls, runner: Runner) -> TrioToken:
        self = object.__new__(cls)
        self._runner = runner
        return self

    def run_sync_soon(
        self, sync_fn: Callable[..., Any], *args: Any, idempotent: bool = False
    ) -> None:
        """Schedule ``sync_fn(*args)`` to run in the loop's thread soon.
        Thread-safe and signal-safe.  Raises :exc:`RunFinishedError` if the
        run is over.  An exception from ``sync_fn`` crashes the run."""
        self._runner._run_sync_soon(sync_fn, args, idempotent)


RingtrioToken = TrioToken
