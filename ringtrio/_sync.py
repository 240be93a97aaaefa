"""Task synchronisation primitives: events, locks, semaphores, conditions and
capacity limiters.

All of these are built on ``ParkingLot`` from the scheduler core and share two
rules that make them behave exactly like their trio counterparts:

* **Every blocking method is a checkpoint**, whether or not it actually has to
  wait.  The pattern is always the same: raise ``Cancelled`` first if a cancel
  is already pending, then try the non-blocking variant; if that succeeded,
  yield to the scheduler once *without* letting a cancellation undo the
  success; otherwise park in the primitive's lot.

* **Ownership is handed over, never grabbed.**  Releasing a lock, semaphore or
  token with tasks queued gives it directly to the longest-waiting task before
  that task even runs.  So a task that releases and immediately re-acquires
  goes to the back of the queue instead of barging in front of waiters, and
  the non-blocking ``*_nowait`` methods refuse to succeed while anyone is
  queued.
"""

from __future__ import annotations

import math
import types
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from ._final import final
from ._core import (
    BrokenResourceError,
    CancelScope,
    add_parking_lot_breaker,
    remove_parking_lot_breaker,
    ParkingLot,
    WouldBlock,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
)
from ._core._internal_api import _CHECKPOINT, _local, _outside_run, _Park

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from ._core import Task

__all__ = [
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "Condition",
    "ConditionStatistics",
    "Event",
    "EventStatistics",
    "Lock",
    "LockStatistics",
    "Semaphore",
    "SemaphoreStatistics",
    "StrictFIFOLock",
]


async def _acquire_or_park(
    try_acquire_nowait: Callable[[], None], lot: ParkingLot
) -> None:
    """The blocking-acquire pattern shared by Lock and Semaphore.

    When ``lot.park()`` returns normally the releasing task has already
    transferred ownership to us, so there is nothing left to do afterwards.
    """
    await checkpoint_if_cancelled()
    try:
        try_acquire_nowait()
    except WouldBlock:
        await lot.park()
    else:
        # We already own the resource; a cancellation arriving now must not
        # make acquire() raise while we hold it, hence the shielded yield.
        await cancel_shielded_checkpoint()


class _HoldsAndReleases(Protocol):
    async def acquire(self) -> None: ...

    def release(self) -> None: ...


class _AcquireOnEnter:
    """``async with x:`` acquires on entry and releases on exit.

    Entering blocks (and is a checkpoint); leaving never blocks.
    """

    __slots__ = ()

    async def __aenter__(self: _HoldsAndReleases) -> None:
        await self.acquire()

    async def __aexit__(
        self: _HoldsAndReleases,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


# --------------------------------------------------------------------- Event


@dataclass(frozen=True, slots=True, weakref_slot=True)
class EventStatistics:
    """Snapshot returned by :meth:`Event.statistics`.

    Attributes:
      tasks_waiting: how many tasks are blocked in :meth:`Event.wait`.
    """

    tasks_waiting: int


@final
class Event:
    """A one-shot flag that tasks can wait for.

    The flag starts unset.  :meth:`set` raises it and wakes every waiter; from
    then on :meth:`wait` returns straight away (after a checkpoint).  Because
    the flag is sticky, it does not matter whether ``set`` happens before or
    after ``wait``: no wake-up can be lost.

    There is deliberately no ``clear()``.  An event that has happened stays
    happened; create a fresh ``Event`` for the next occurrence (they are
    cheap), or use a channel or a ``ParkingLot`` for repeated signals.
    """

    # __weakref__ in every primitive's slots: they can be weakly referenced,
    # as in trio (code keeps per-lock state in a WeakKeyDictionary).
    __slots__ = ("_flag", "_parked", "__weakref__")

    def __init__(self) -> None:
        self._flag = False
        # The waiting tasks, oldest first (a dict: O(1) removal when one is
        # cancelled).  The Event is its own parking lot -- the name
        # ``_parked`` is what a parked task's abort function looks for -- and
        # the dict is only made on the first wait: ping-pong code makes a
        # fresh Event per message, and many are set before anyone waits.
        self._parked: dict[Task, None] | None = None

    def __repr__(self) -> str:
        waiting = len(self._parked) if self._parked else 0
        state = "set" if self._flag else f"unset, {waiting} waiting"
        return f"<ringtrio.Event ({state}) at {id(self):#x}>"

    def is_set(self) -> bool:
        """Return True once :meth:`set` has been called."""
        return self._flag

    def set(self) -> None:
        """Raise the flag and wake all tasks blocked in :meth:`wait`.

        Setting an event that is already set does nothing.
        """
        if self._flag:
            return
        self._flag = True
        parked = self._parked
        if parked:
            self._parked = None
            for task in parked:
                task.custom_sleep_data = None
                reschedule(task)

    # A generator-based coroutine, parking inline: one frame per wait.
    @types.coroutine
    def wait(self) -> Generator[Any, Any, None]:
        """Block until the flag is set.

        This is always a checkpoint: even when the event is already set it
        honours a pending cancellation and lets other tasks run.
        """
        if self._flag:
            yield _CHECKPOINT
            return
        task = _local.task
        if task is None:
            _outside_run()
        parked = self._parked
        if parked is None:
            parked = self._parked = {}
        parked[task] = None
        task.custom_sleep_data = self
        yield _Park(task._abort_parking)

    def statistics(self) -> EventStatistics:
        """Return an :class:`EventStatistics` snapshot."""
        return EventStatistics(tasks_waiting=len(self._parked) if self._parked else 0)

    def __bool__(self) -> NoReturn:
        raise NotImplementedError(
                "ringtrio events cannot be treated as bools; consider using `event.is_set()` "
                "instead: `if event:` is too easy to mistake for a wait"
            )


# ------------------------------------------------------------ Lock variants


@dataclass(frozen=True, slots=True, weakref_slot=True)
class LockStatistics:
    """Snapshot returned by :meth:`Lock.statistics`.

    Attributes:
      locked: whether some task holds the lock.
      owner: the task holding the lock, or None.
      tasks_waiting: how many tasks are blocked in :meth:`Lock.acquire`.
    """

    locked: bool
    owner: Task | None
    tasks_waiting: int


class _LockBase(_AcquireOnEnter):
    """Shared implementation of :class:`Lock` and :class:`StrictFIFOLock`."""

    __slots__ = ("_lot", "_owner", "__weakref__")

    def __init__(self) -> None:
        self._owner: Task | None = None
        self._lot = ParkingLot()

    def __repr__(self) -> str:
        name = type(self).__name__
        if self._owner is None:
            return f"<unlocked ringtrio.{name} at {id(self):#x}>"
        return (
            f"<locked ringtrio.{name} at {id(self):#x}, "
            f"{len(self._lot)} waiting>"
        )

    def locked(self) -> bool:
        """Return True if some task currently holds the lock."""
        return self._owner is not None

    def acquire_nowait(self) -> None:
        """Take the lock if that is possible without waiting.

        Raises:
          WouldBlock: another task holds the lock, or tasks are queued for it.
          RuntimeError: the calling task already holds the lock (locks are
              not re-entrant).
        """
        me = current_task()
        if self._owner is me:
            raise RuntimeError(
                f"attempt to re-acquire an already held Lock: {self!r} is held by the "
                "calling task, and locks are not re-entrant; release it first"
            )
        # Checking the lot as well as the owner is what stops barging: queued
        # tasks are always served first.
        if self._owner is None and not self._lot:
            self._owner = me
            # As trio: if the holder exits without releasing, the waiters
            # (and later acquirers) get BrokenResourceError, not a hang.
            add_parking_lot_breaker(me, self._lot)
        else:
            raise WouldBlock

    async def acquire(self) -> None:
        """Take the lock, waiting in FIFO order if it is held.

        Raises:
          RuntimeError: the calling task already holds the lock.
        """
        # Condition.wait depends on this: a task parked in self._lot owns the
        # lock as soon as release() unparks it.  Keep the contended path a
        # bare park() so Condition can move tasks into this lot directly.
        try:
            await _acquire_or_park(self.acquire_nowait, self._lot)
        except BrokenResourceError:
            # The lot broke: the task holding the lock exited without
            # releasing it (add_parking_lot_breaker), so nobody ever will.
            raise BrokenResourceError(
                f"Owner of this lock exited without releasing: {self._owner}"
            ) from None

    def release(self) -> None:
        """Give up the lock, handing it to the longest-waiting task (if any).

        Raises:
          RuntimeError: the calling task does not hold the lock.
        """
        me = current_task()
        if self._owner is not me:
            if self._owner is None:
                problem = "is not locked"
            else:
                problem = "is held by another task"
            raise RuntimeError(
                f"can't release a Lock you don't own: {self!r} {problem}; only the "
                "task that acquired a lock may release it"
            )
        remove_parking_lot_breaker(me, self._lot)
        woken = self._lot.unpark(count=1)
        self._owner = woken[0] if woken else None
        if woken:
            add_parking_lot_breaker(woken[0], self._lot)

    def statistics(self) -> LockStatistics:
        """Return a :class:`LockStatistics` snapshot."""
        return LockStatistics(
            locked=self._owner is not None,
            owner=self._owner,
            tasks_waiting=len(self._lot),
        )


@final
class Lock(_LockBase):
    """A mutual-exclusion lock held by at most one task at a time.

    It is not re-entrant, and only the task that acquired it may release it.
    Use it as ``async with lock:``; entering may block, leaving never does.
    Waiters are served in the order they started waiting.
    """

    __slots__ = ()


@final
class StrictFIFOLock(_LockBase):
    """A lock that guarantees first-come, first-served acquisition.

    Today :class:`Lock` gives the same guarantee, but code that *relies* on
    strict ordering (for example, several tasks taking turns to write chunks
    in the order a protocol state machine produced them) should say so by
    using this class: ``Lock`` may become less strict in the future, this
    class will not.
    """

    __slots__ = ()


# ----------------------------------------------------------------- Semaphore


@dataclass(frozen=True, slots=True, weakref_slot=True)
class SemaphoreStatistics:
    """Snapshot returned by :meth:`Semaphore.statistics`.

    Attributes:
      tasks_waiting: how many tasks are blocked in :meth:`Semaphore.acquire`.
    """

    tasks_waiting: int


@final
class Semaphore(_AcquireOnEnter):
    """A counter that :meth:`acquire` decrements and :meth:`release`
    increments, never allowed to go below zero.

    ``acquire`` waits while the value is zero.  If ``max_value`` is given the
    semaphore is *bounded*: releasing it beyond that value is an error, which
    catches unbalanced acquire/release pairs.

    To cap how many tasks use something at once, :class:`CapacityLimiter` is
    usually a better fit, because it also tracks who holds each slot.

    Args:
      initial_value: the starting value, a non-negative int.
      max_value: None for an unbounded semaphore, or an int no smaller than
        ``initial_value``.
    """

    __slots__ = ("_lot", "_max_value", "_value", "__weakref__")

    def __init__(self, initial_value: int, *, max_value: int | None = None) -> None:
        if not isinstance(initial_value, int):
            raise TypeError(
                f"initial_value must be an int: Semaphore got "
                f"{type(initial_value).__name__} {initial_value!r}"
            )
        # The ValueErrors say trio's words, word for word: code matches on them.
        if initial_value < 0:
            raise ValueError("initial value must be >= 0")
        if max_value is not None:
            if not isinstance(max_value, int):
                raise TypeError(
                    f"max_value must be None or an int: Semaphore got "
                    f"{type(max_value).__name__} {max_value!r}"
                )
            if max_value < initial_value:
                raise ValueError("max_values must be >= initial_value")
        # Invariant: tasks only wait while the value is zero.  release() keeps
        # it by handing its unit straight to a waiter instead of incrementing.
        self._value = initial_value
        self._max_value = max_value
        self._lot = ParkingLot()

    def __repr__(self) -> str:
        bound = "" if self._max_value is None else f", max_value={self._max_value}"
        return f"<ringtrio.Semaphore({self._value}{bound}) at {id(self):#x}>"

    @property
    def value(self) -> int:
        """The current value."""
        return self._value

    @property
    def max_value(self) -> int | None:
        """The upper bound, or None if the semaphore is unbounded."""
        return self._max_value

    def acquire_nowait(self) -> None:
        """Decrement the value if that is possible without waiting.

        Raises:
          WouldBlock: the value is zero.
        """
        if self._value == 0:
            raise WouldBlock
        self._value -= 1

    async def acquire(self) -> None:
        """Decrement the value, waiting in FIFO order while it is zero."""
        await _acquire_or_park(self.acquire_nowait, self._lot)

    def release(self) -> None:
        """Increment the value, or wake the longest-waiting task instead.

        Raises:
          ValueError: the semaphore is bounded and already at ``max_value``.
        """
        if self._lot:
            # The woken task's acquire() is already satisfied; the value stays
            # at zero, so nobody else can sneak in before it runs.
            self._lot.unpark(count=1)
            return
        if self._max_value is not None and self._value >= self._max_value:
            raise ValueError("semaphore released too many times")  # trio's words
        self._value += 1

    def statistics(self) -> SemaphoreStatistics:
        """Return a :class:`SemaphoreStatistics` snapshot."""
        return SemaphoreStatistics(tasks_waiting=len(self._lot))


# ----------------------------------------------------------------- Condition


@dataclass(frozen=True, slots=True, weakref_slot=True)
class ConditionStatistics:
    """Snapshot returned by :meth:`Condition.statistics`.

    Attributes:
      tasks_waiting: how many tasks are blocked in :meth:`Condition.wait`
        (not counting tasks that were notified and now queue for the lock).
      lock_statistics: the underlying lock's :class:`LockStatistics`.
    """

    tasks_waiting: int
    lock_statistics: LockStatistics


@final
class Condition(_AcquireOnEnter):
    """A condition variable: wait, with a lock held, until notified.

    ``async with cond:`` takes the underlying lock.  Inside, :meth:`wait`
    releases the lock, sleeps until :meth:`notify` or :meth:`notify_all`, and
    holds the lock again by the time it returns.  Notified tasks take the lock
    in the order they started waiting.

    Args:
      lock: the :class:`Lock` to use; a new one is created if omitted.
        Other lock types (including :class:`StrictFIFOLock`) are rejected.
    """

    __slots__ = ("_lock", "_lot", "__weakref__")

    def __init__(self, lock: Lock | None = None) -> None:
        if lock is None:
            lock = Lock()
        elif type(lock) is not Lock:
            raise TypeError(
                f"lock must be a ringtrio.Lock: Condition got {type(lock).__name__}; "
                "pass a Lock() (not a StrictFIFOLock) or omit the argument"
            )
        self._lock = lock
        self._lot = ParkingLot()

    def __repr__(self) -> str:
        return (
            f"<ringtrio.Condition at {id(self):#x}, {len(self._lot)} waiting, "
            f"lock={self._lock!r}>"
        )

    def locked(self) -> bool:
        """Return True if the underlying lock is held."""
        return self._lock.locked()

    def acquire_nowait(self) -> None:
        """Take the underlying lock without waiting; see :meth:`Lock.acquire_nowait`."""
        self._lock.acquire_nowait()

    async def acquire(self) -> None:
        """Take the underlying lock; see :meth:`Lock.acquire`."""
        await self._lock.acquire()

    def release(self) -> None:
        """Release the underlying lock; see :meth:`Lock.release`."""
        self._lock.release()

    def _require_lock(self, action: str) -> None:
        if self._lock._owner is not current_task():
            raise RuntimeError(
                f"must hold the lock to {'wait' if action == 'wait' else 'notify'}: "
                f"Condition.{action}() needs the calling task to hold the condition's "
                "lock; call it inside `async with condition:`"
            )

    async def wait(self) -> None:
        """Release the lock, sleep until notified, then re-take the lock.

        If cancelled, the lock is still re-taken before ``Cancelled``
        propagates, so ``async with cond: await cond.wait()`` never leaves
        the ``async with`` without owning the lock it is about to release.
        This can make the cancellation take effect a bit later.

        Raises:
          RuntimeError: the calling task does not hold the lock.
        """
        self._require_lock("wait")
        self._lock.release()
        # notify() moves us from self._lot into the lock's own lot, where a
        # later Lock.release() makes us owner before waking us.  So a normal
        # return from park() means we already hold the lock again.
        try:
            await self._lot.park()
        except BaseException:
            # We were pulled out of whichever lot we were in (cancelled, or
            # interrupted).  Get the lock back before letting the error out,
            # and don't let the pending cancellation interrupt that.
            with CancelScope(shield=True):
                await self._lock.acquire()
            raise

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` tasks blocked in :meth:`wait`, oldest first.

        They resume one at a time as the lock becomes free.

        Raises:
          RuntimeError: the calling task does not hold the lock.
        """
        self._require_lock("notify")
        self._lot.repark(self._lock._lot, count=n)

    def notify_all(self) -> None:
        """Wake every task blocked in :meth:`wait`.

        Raises:
          RuntimeError: the calling task does not hold the lock.
        """
        self._require_lock("notify_all")
        self._lot.repark_all(self._lock._lot)

    def statistics(self) -> ConditionStatistics:
        """Return a :class:`ConditionStatistics` snapshot."""
        return ConditionStatistics(
            tasks_waiting=len(self._lot),
            lock_statistics=self._lock.statistics(),
        )


# ---------------------------------------------------------- CapacityLimiter


@dataclass(frozen=True, slots=True, weakref_slot=True)
class CapacityLimiterStatistics:
    """Snapshot returned by :meth:`CapacityLimiter.statistics`.

    Attributes:
      borrowed_tokens: how many tokens are lent out.
      total_tokens: the limiter's capacity; can be below ``borrowed_tokens``
        right after :attr:`CapacityLimiter.total_tokens` was lowered.
      borrowers: who holds the tokens, oldest borrower first.  A list (as in
        trio) so one borrower could hold several tokens in the future.
      tasks_waiting: how many tasks are blocked acquiring a token.
    """

    borrowed_tokens: int
    total_tokens: int | float
    borrowers: list[object]
    tasks_waiting: int


@final
class CapacityLimiter(_AcquireOnEnter):
    """Limit how many tasks (or other borrowers) use something at once.

    Think of a sack of ``total_tokens`` tokens.  A borrower takes a token
    with :meth:`acquire` (waiting in FIFO order if the sack is empty) and
    returns it with :meth:`release`; ``async with limiter:`` does both.

    Unlike :class:`Semaphore`, the limiter remembers *who* holds each token:
    a borrower can hold at most one, and only the holder can return it.  The
    borrower is normally the current task; the ``*_on_behalf_of`` variants
    take any hashable object instead (e.g. to let a worker thread hold a
    token).

    Args:
      total_tokens: the capacity: an int >= 0, or ``math.inf``.  It can be
        changed later through the :attr:`total_tokens` attribute.
    """

    __slots__ = ("_borrowers", "_lot", "_total_tokens", "_waiting_borrowers", "__weakref__")

    def __init__(self, total_tokens: int | float) -> None:
        self._lot = ParkingLot()
        # dicts used as ordered sets, so statistics() lists borrowers in the
        # order they got their tokens.
        self._borrowers: dict[object, None] = {}
        # For each parked task: the borrower it is acquiring for.  The task
        # that frees a token records the new borrower before waking the task.
        self._waiting_borrowers: dict[Task, object] = {}
        self._total_tokens: int | float = 0
        self.total_tokens = total_tokens  # validated by the property setter

    def __repr__(self) -> str:
        return (
            f"<ringtrio.CapacityLimiter at {id(self):#x}, "
            f"{len(self._borrowers)}/{self._total_tokens} borrowed, "
            f"{len(self._lot)} waiting>"
        )

    @property
    def total_tokens(self) -> int | float:
        """The capacity.

        Assigning a larger value immediately hands the new tokens to waiting
        tasks.  Assigning a value below :attr:`borrowed_tokens` takes nothing
        away from current holders; new borrowers just wait until enough
        tokens come back.
        """
        return self._total_tokens

    @total_tokens.setter
    def total_tokens(self, new_total_tokens: int | float) -> None:
        if not isinstance(new_total_tokens, int) and new_total_tokens != math.inf:
            raise TypeError(
                f"total_tokens must be an int or math.inf: CapacityLimiter got "
                f"{type(new_total_tokens).__name__} {new_total_tokens!r}"
            )
        if new_total_tokens < 0:
            raise ValueError("total_tokens must be >= 0")  # trio's words: code matches on them
        self._total_tokens = new_total_tokens
        self._hand_out_free_tokens()

    @property
    def borrowed_tokens(self) -> int:
        """How many tokens are currently lent out."""
        return len(self._borrowers)

    @property
    def available_tokens(self) -> int | float:
        """How many tokens are free (negative right after shrinking)."""
        return self._total_tokens - len(self._borrowers)

    def _hand_out_free_tokens(self) -> None:
        free = self._total_tokens - len(self._borrowers)
        if free <= 0 or not self._lot:
            return
        for task in self._lot.unpark(count=free):
            self._borrowers[self._waiting_borrowers.pop(task)] = None

    def acquire_nowait(self) -> None:
        """Take a token for the current task without waiting.

        Raises:
          WouldBlock: no token is free, or tasks are queued for one.
          RuntimeError: the current task already holds a token.
        """
        self.acquire_on_behalf_of_nowait(current_task())

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        """Take a token for ``borrower`` without waiting.

        Args:
          borrower: any hashable object identifying the holder.

        Raises:
          WouldBlock: no token is free, or tasks are queued for one.
          RuntimeError: ``borrower`` already holds a token.
        """
        if borrower in self._borrowers:
            raise RuntimeError(
                "this borrower is already holding one of this CapacityLimiter's tokens: "
                f"{borrower!r} holds one from {self!r}, and a borrower may hold only "
                "one; release it first, or use a distinct borrower object per token"
            )
        # Refusing while tasks are queued keeps the queue fair even if a
        # token is momentarily free.
        if self._lot or len(self._borrowers) >= self._total_tokens:
            raise WouldBlock
        self._borrowers[borrower] = None

    async def acquire(self) -> None:
        """Take a token for the current task, waiting in FIFO order if none is
        free.

        Raises:
          RuntimeError: the current task already holds a token.
        """
        await self.acquire_on_behalf_of(current_task())

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        """Take a token for ``borrower``, waiting in FIFO order if none is free.

        Args:
          borrower: any hashable object identifying the holder.

        Raises:
          RuntimeError: ``borrower`` already holds a token.
        """
        await checkpoint_if_cancelled()
        try:
            self.acquire_on_behalf_of_nowait(borrower)
        except WouldBlock:
            task = current_task()
            self._waiting_borrowers[task] = borrower
            try:
                await self._lot.park()
            except BaseException:
                # If a token had been handed to us, our entry would already
                # have moved to _borrowers and park() would have returned.
                self._waiting_borrowers.pop(task, None)
                raise
        else:
            await cancel_shielded_checkpoint()

    def release(self) -> None:
        """Return the current task's token.

        Raises:
          RuntimeError: the current task holds no token.
        """
        self.release_on_behalf_of(current_task())

    def release_on_behalf_of(self, borrower: object) -> None:
        """Return the token held by ``borrower``.

        Raises:
          RuntimeError: ``borrower`` holds no token.
        """
        if borrower not in self._borrowers:
            raise RuntimeError(
                "this borrower isn't holding any of this CapacityLimiter's tokens: "
                f"{borrower!r} holds none from {self!r}; release with the same "
                "borrower that acquired"
            )
        del self._borrowers[borrower]
        self._hand_out_free_tokens()

    def statistics(self) -> CapacityLimiterStatistics:
        """Return a :class:`CapacityLimiterStatistics` snapshot."""
        return CapacityLimiterStatistics(
            borrowed_tokens=len(self._borrowers),
            total_tokens=self._total_tokens,
            borrowers=list(self._borrowers),
            tasks_waiting=len(self._lot),
        )

