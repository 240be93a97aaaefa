"""lowlevel.UnboundedQueue: trio's deprecated queue whose consumer takes
everything queued at once.

Kept because trio still has it (deprecated since trio 0.9, it warns when
made) and code ported from trio may use it; new code wants
``open_memory_channel(math.inf)``.  The semantics are trio's, which its
tests pin down:

* ``put_nowait`` never blocks and never fails.
* A consumer gets a *batch*: every item queued, in order, never an empty
  list.
* Fairness: when the queue goes from empty to non-empty while consumers
  wait, the batch is handed to the longest-waiting one (it is woken, and
  takes whatever is queued when it runs).  Until it has, the queue is
  reserved for it: ``get_batch_nowait`` raises ``WouldBlock`` even though
  items are there, and further ``put_nowait`` calls wake nobody else (no
  spurious wake-ups: two waiters, ten puts, one wakes).
* ``get_batch`` is a checkpoint of the usual shape: raise ``Cancelled``
  first if a cancel is pending; if a batch is ready take it, then yield
  without letting a cancel undo the taking; else park.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Self, TypeVar

from ._core import ParkingLot, WouldBlock, cancel_shielded_checkpoint, checkpoint_if_cancelled
from ._core._internal_api import warn_deprecated
from ._final import final

__all__ = ["UnboundedQueue", "UnboundedQueueStatistics"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, weakref_slot=True)
class UnboundedQueueStatistics:
    """What :meth:`UnboundedQueue.statistics` returns."""

    # Items in the queue now.
    qsize: int
    # Tasks parked in get_batch (or async iteration).
    tasks_waiting: int


@final
class UnboundedQueue(Generic[T]):
    """An unbounded queue whose consumers take every queued item at once, in
    batches.  Deprecated, as in trio: use ``open_memory_channel(math.inf)``.

    ``async for batch in queue:`` is ``while True: batch = await
    queue.get_batch()``.
    """

    __slots__ = ("_lot", "_data", "_can_get", "__weakref__")

    def __init__(self) -> None:
        warn_deprecated(
            "ringtrio.lowlevel.UnboundedQueue",
            since_trio="0.9.0",
            instead="ringtrio.open_memory_channel(math.inf)",
            stacklevel=2,
        )
        self._lot = ParkingLot()
        self._data: list[T] = []
        # Whether a caller may take the batch now.  False while the queue
        # is empty, and also while a woken consumer has yet to take it (the
        # hand-off: see put_nowait).
        self._can_get = False

    def __repr__(self) -> str:
        return f"<UnboundedQueue holding {len(self._data)} items>"

    def qsize(self) -> int:
        """The number of items in the queue."""
        return len(self._data)

    def empty(self) -> bool:
        """Whether the queue holds no items.  (Items reserved for a woken
        consumer count: then it is not empty, but ``get_batch_nowait`` still
        raises ``WouldBlock``.)"""
        return not self._data

    def put_nowait(self, obj: T) -> None:
        """Add ``obj`` to the queue.  Never blocks: the queue has no bound."""
        if not self._data:
            # Empty to non-empty: the batch goes to the longest-waiting
            # consumer if there is one (it takes it when it runs, with what
            # was added meanwhile), else to whoever asks first.
            if self._lot:
                self._lot.unpark(count=1)
            else:
                self._can_get = True
        self._data.append(obj)

    def _take_batch(self) -> list[T]:
        batch = self._data
        self._data = []
        self._can_get = False
        return batch

    def get_batch_nowait(self) -> list[T]:
        """Every queued item, in order (never an empty list).

        Raises:
          WouldBlock: the queue is empty, or its items are promised to a
            consumer that was woken for them.
        """
        if not self._can_get:
            raise WouldBlock
        return self._take_batch()

    async def get_batch(self) -> list[T]:
        """Every queued item, in order (never an empty list), waiting for
        one to be put if there is none."""
        await checkpoint_if_cancelled()
        if not self._can_get:
            # Woken only by put_nowait, which leaves the items for us.
            await self._lot.park()
            return self._take_batch()
        batch = self._take_batch()
        await cancel_shielded_checkpoint()
        return batch

    def statistics(self) -> UnboundedQueueStatistics:
        """The number of items queued and of tasks waiting in ``get_batch``."""
        return UnboundedQueueStatistics(qsize=len(self._data), tasks_waiting=len(self._lot))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> list[T]:
        return await self.get_batch()
