"""``ringtrio.open_signal_receiver``: signals as an async iterator, as in trio.

How a signal reaches the receiver: a Python-level handler, installed for the
receiver's lifetime, hands the signal number to the run with
``run_sync_soon(..., idempotent=True)``; the run's wake-up pipe, which always
has a READ pending on the ring, is the signal module's wake-up fd, so a
signal that arrives while the loop waits in ``io_uring_enter`` (or that the
kernel gave to another thread) completes that READ and wakes the loop.  Why
this and not a ``signalfd`` read: see docs/design.md ("Signals"); in short,
a signalfd only receives signals that are blocked in every thread, which a
library cannot arrange for threads that already exist, and a blocked mask is
inherited by threads started later and by child processes.

Signals that arrive while nobody iterates are kept, each number at most once
(trio's coalescing), in the order they first arrived.  Leaving the ``with``
block puts the old handlers back and re-raises the signals still pending, so
that they reach those handlers instead of being lost.
"""

from __future__ import annotations

import signal
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from contextlib import contextmanager
from types import FrameType
from typing import Any

from ._core import (
    ParkingLot,
    RunVar,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_trio_token,
)
from ._core._internal_api import _signal_wakeup_fd
from ._highlevel_generic import OneUser

__all__ = ["open_signal_receiver"]

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@contextmanager
def _signal_handler(signals: Iterable[int], handler: _Handler) -> Generator[None, None, None]:
    """Install ``handler`` for each signal; put the old ones back on exit,
    also when installing one of them failed (a bad signal number)."""
    old: dict[int, Any] = {}
    try:
        for signum in dict.fromkeys(signals):
            old[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, previous in old.items():
            signal.signal(signum, previous)


# Per run: [receivers open, the wake-up fd before the first one].  The fd
# is process-wide state; receivers may close in any order.
_wakeup_users: RunVar[list[int]] = RunVar("ringtrio.signal_wakeup_users")


@contextmanager
def _wakeup_fd_is_the_runs() -> Generator[None, None, None]:
    """Make the run's wake-up pipe the signal module's wake-up fd while any
    receiver is open.

    run() already points it there when it installs its SIGINT handler; when
    it did not (a program with its own SIGINT handler), a signal would be
    noticed only at the loop's next wake-up: Python runs signal handlers
    between bytecodes, so one that runs just before the loop enters the
    kernel to wait leaves nothing there to interrupt the wait.  With the
    fd set, the C-level handler writes to the pipe, whose pending READ
    completes.
    """
    fd = _signal_wakeup_fd()
    users = _wakeup_users.get(None)
    if users is None or users[0] == 0:
        old = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
        users = [0, old]
        _wakeup_users.set(users)
    users[0] += 1
    try:
        yield
    finally:
        users[0] -= 1
        if users[0] == 0 and users[1] != fd:
            signal.set_wakeup_fd(users[1])


class SignalReceiver:
    """The async iterator :func:`open_signal_receiver` yields."""

    def __init__(self) -> None:
        # {signum: None}: each number once, in the order of first arrival.
        self._pending: OrderedDict[int, None] = OrderedDict()
        self._lot = ParkingLot()
        self._guard = OneUser("only one task can iterate on a signal receiver at a time")
        self._closed = False

    def _add(self, signum: int) -> None:
        if self._closed:
            # Arrived as the block was ending: the old handler's business.
            signal.raise_signal(signum)
        else:
            self._pending[signum] = None
            self._lot.unpark()

    def _close(self) -> None:
        self._closed = True
        # A task still iterating would never hear of another signal.
        self._lot.unpark_all()
        # Re-raise what nobody took, to the handlers now in place.  One at a
        # time, each in a finally, so that every one is raised even if a
        # handler raises (the exceptions chain as context).
        def next_one() -> None:
            if self._pending:
                signum, _ = self._pending.popitem(last=False)
                try:
                    signal.raise_signal(signum)
                finally:
                    next_one()

        next_one()

    def __aiter__(self) -> SignalReceiver:
        return self

    async def __anext__(self) -> int:
        if self._closed:
            raise RuntimeError("open_signal_receiver block already exited")
        with self._guard:
            if self._pending:
                # Already here: take it with trio's shape for a receive that
                # need not wait (a cancel arriving during the yield after
                # taking does not put the signal back, it lands later).
                await checkpoint_if_cancelled()
                signum, _ = self._pending.popitem(last=False)
                await cancel_shielded_checkpoint()
                return signum
            await self._lot.park()
            if self._closed and not self._pending:
                raise RuntimeError("open_signal_receiver block exited while a task was iterating")
            signum, _ = self._pending.popitem(last=False)
            return signum


def get_pending_signal_count(receiver: AsyncIterator[int]) -> int:
    """How many signals wait in ``receiver`` (a test helper, as trio's)."""
    assert isinstance(receiver, SignalReceiver)
    return len(receiver._pending)


@contextmanager
def open_signal_receiver(*signals: signal.Signals | int) -> Generator[AsyncIterator[int], None, None]:
    """Catch ``signals`` for the ``with`` block: yields an async iterator of
    the signal numbers that arrive (as ``trio.open_signal_receiver``)::

        with ringtrio.open_signal_receiver(signal.SIGHUP) as signals:
            async for signum in signals:
                reload_configuration()

    Signals that arrive while nobody iterates are kept, each number once
    (several SIGHUPs in a row are one), in the order they first came.  On
    leaving the block the previous handlers are back, and signals still
    pending are raised again so that those handlers get them.

    Raises:
      TypeError: no signals were given.
      ValueError: one of them is not a valid signal number (no handler is
        left changed).
      RuntimeError: not called from the main thread, inside a run.
    """
    if not signals:
        raise TypeError("No signals were provided")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "Sorry, open_signal_receiver is only possible when running in Python "
            "interpreter's main thread"
        )
    token = current_trio_token()
    receiver = SignalReceiver()

    def handler(signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of whatever was
        # running, maybe the run loop itself: only queue the signal.
        token.run_sync_soon(receiver._add, signum, idempotent=True)

    try:
        with _wakeup_fd_is_the_runs(), _signal_handler(signals, handler):
            yield receiver
    finally:
        receiver._close()
