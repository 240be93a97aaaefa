"""AnyIO's synchronisation primitives on ringtrio's.

Each AnyIO class here holds the ringtrio primitive that does the work and
translates what differs: AnyIO's exception classes (``anyio.WouldBlock``),
AnyIO's statistics objects, and the ``fast_acquire`` option of locks and
semaphores (an uncontended acquire that does not yield to other tasks; it
still raises a pending cancellation first).
"""

from __future__ import annotations

from types import TracebackType

import anyio
from anyio import (
    CapacityLimiterStatistics,
    EventStatistics,
    LockStatistics,
    SemaphoreStatistics,
)

import ringtrio
from ringtrio import lowlevel

from ._tasks_info import task_info


async def _acquire(primitive: ringtrio.Lock | ringtrio.Semaphore, fast: bool) -> None:
    """``fast_acquire``: an uncontended acquire takes the primitive without
    letting other tasks run (a pending cancellation is still raised)."""
    if fast:
        await lowlevel.checkpoint_if_cancelled()
        try:
            primitive.acquire_nowait()
            return
        except ringtrio.WouldBlock:
            pass
    await primitive.acquire()


class Event(anyio.Event):
    __slots__ = ("_event",)

    def __new__(cls) -> Event:
        return object.__new__(cls)

    def __init__(self) -> None:
        self._event = ringtrio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def statistics(self) -> EventStatistics:
        return EventStatistics(tasks_waiting=self._event.statistics().tasks_waiting)


class Lock(anyio.Lock):
    __slots__ = ("_lock", "_fast_acquire")

    def __new__(cls, *, fast_acquire: bool = False) -> Lock:
        return object.__new__(cls)

    def __init__(self, *, fast_acquire: bool = False) -> None:
        self._lock = ringtrio.Lock()
        self._fast_acquire = fast_acquire

    async def acquire(self) -> None:
        try:
            await _acquire(self._lock, self._fast_acquire)
        except RuntimeError:
            self._raise_if_held()
            raise

    def acquire_nowait(self) -> None:
        try:
            self._lock.acquire_nowait()
        except ringtrio.WouldBlock:
            raise anyio.WouldBlock from None
        except RuntimeError:
            self._raise_if_held()
            raise

    def _raise_if_held(self) -> None:
        # ringtrio's RuntimeError for a second acquire by the holder, in
        # AnyIO's words (checked, not assumed: "outside a run" is one too).
        if self._lock.statistics().owner is lowlevel.current_task():
            raise RuntimeError("Attempted to acquire an already held Lock") from None

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def statistics(self) -> LockStatistics:
        stats = self._lock.statistics()
        owner = task_info(stats.owner) if stats.owner is not None else None
        return LockStatistics(stats.locked, owner, stats.tasks_waiting)


class Semaphore(anyio.Semaphore):
    __slots__ = ("_semaphore",)

    def __new__(
        cls, initial_value: int, *, max_value: int | None = None, fast_acquire: bool = False
    ) -> Semaphore:
        return object.__new__(cls)

    def __init__(
        self, initial_value: int, *, max_value: int | None = None, fast_acquire: bool = False
    ) -> None:
        # anyio's base class validates the arguments (with anyio's messages).
        super().__init__(initial_value, max_value=max_value, fast_acquire=fast_acquire)
        self._semaphore = ringtrio.Semaphore(initial_value, max_value=max_value)

    async def acquire(self) -> None:
        await _acquire(self._semaphore, self._fast_acquire)

    def acquire_nowait(self) -> None:
        try:
            self._semaphore.acquire_nowait()
        except ringtrio.WouldBlock:
            raise anyio.WouldBlock from None

    def release(self) -> None:
        self._semaphore.release()

    @property
    def value(self) -> int:
        return self._semaphore.value

    @property
    def max_value(self) -> int | None:
        return self._semaphore.max_value

    def statistics(self) -> SemaphoreStatistics:
        return SemaphoreStatistics(self._semaphore.statistics().tasks_waiting)


class CapacityLimiter(anyio.CapacityLimiter):
    __slots__ = ("_limiter",)

    def __new__(cls, total_tokens: float) -> CapacityLimiter:
        return object.__new__(cls)

    def __init__(self, total_tokens: float) -> None:
        self._limiter = ringtrio.CapacityLimiter(self._checked_total(total_tokens))

    @classmethod
    def _of(cls, limiter: ringtrio.CapacityLimiter) -> CapacityLimiter:
        """The AnyIO face of an existing ringtrio limiter (to_thread's default)."""
        self = object.__new__(cls)
        self._limiter = limiter
        return self

    @staticmethod
    def _checked_total(value: float) -> float:
        # ringtrio's rule, with AnyIO's words.
        if not isinstance(value, int) and value != float("inf"):
            raise TypeError("total_tokens must be an int or math.inf")
        if value < 0:
            raise ValueError("total_tokens must be >= 0")
        return value

    def _borrow_error(self, borrower: object) -> None:
        # ringtrio's RuntimeError for a borrower holding a token, in AnyIO's
        # words (checked, not assumed).
        if borrower in self._limiter.statistics().borrowers:
            raise RuntimeError(
                "this borrower is already holding one of this CapacityLimiter's tokens"
            ) from None

    def _release_error(self, borrower: object) -> None:
        if borrower not in self._limiter.statistics().borrowers:
            raise RuntimeError(
                "this borrower isn't holding any of this CapacityLimiter's tokens"
            ) from None

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.release()

    @property
    def total_tokens(self) -> float:
        return self._limiter.total_tokens

    @total_tokens.setter
    def total_tokens(self, value: float) -> None:
        self._limiter.total_tokens = self._checked_total(value)

    @property
    def borrowed_tokens(self) -> int:
        return self._limiter.borrowed_tokens

    @property
    def available_tokens(self) -> float:
        return self._limiter.available_tokens

    def acquire_nowait(self) -> None:
        self.acquire_on_behalf_of_nowait(lowlevel.current_task())

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        try:
            self._limiter.acquire_on_behalf_of_nowait(borrower)
        except ringtrio.WouldBlock:
            raise anyio.WouldBlock from None
        except RuntimeError:
            self._borrow_error(borrower)
            raise

    async def acquire(self) -> None:
        await self.acquire_on_behalf_of(lowlevel.current_task())

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        try:
            await self._limiter.acquire_on_behalf_of(borrower)
        except RuntimeError:
            self._borrow_error(borrower)
            raise

    def release(self) -> None:
        self.release_on_behalf_of(lowlevel.current_task())

    def release_on_behalf_of(self, borrower: object) -> None:
        try:
            self._limiter.release_on_behalf_of(borrower)
        except RuntimeError:
            self._release_error(borrower)
            raise

    def statistics(self) -> CapacityLimiterStatistics:
        stats = self._limiter.statistics()
        return CapacityLimiterStatistics(
            borrowed_tokens=stats.borrowed_tokens,
            total_tokens=stats.total_tokens,
            borrowers=tuple(stats.borrowers),
            tasks_waiting=stats.tasks_waiting,
        )


def native_limiter(limiter: anyio.CapacityLimiter | None) -> object:
    """What to hand ``ringtrio.to_thread.run_sync(limiter=)`` for an AnyIO
    limiter: the ringtrio limiter behind ours, or any other AnyIO limiter as
    it is (ringtrio needs only its ``*_on_behalf_of`` methods)."""
    if limiter is None:
        return None
    if isinstance(limiter, CapacityLimiter):
        return limiter._limiter
    return limiter
