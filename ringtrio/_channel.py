"""In-memory channels: pass Python objects between tasks of one ``run()``.

A channel is one shared :class:`_ChannelState` plus any number of send and
receive *endpoints* (the originals and their clones).  Items flow strictly
first-in first-out, and blocked tasks are served in the order they blocked:

* a blocked receiver exists only while the buffer is empty, so a send hands
  its item straight to the oldest blocked receiver;
* a blocked sender exists only while the buffer is full, so a receive takes
  the buffer's head and refills the tail from the oldest blocked sender.

Blocked tasks are woken with a plain ``reschedule(task)``.  What they were
woken *for* (an item, or an error to raise) is left in a small
:class:`_Waiter` record that the task reads once it runs again.  Each waiter
is registered twice: in the channel-wide FIFO (for hand-off order) and in
its own endpoint (so closing one clone can fail just that clone's waiters).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from ._abc import ReceiveChannel, SendChannel
from ._final import final
from ._core._internal_api import _cancel_pending, _local, _outside_run, _Park, _yield_trap
from ._core import (
    Abort,
    BrokenResourceError,
    ClosedResourceError,
    EndOfChannel,
    WouldBlock,
    cancel_shielded_checkpoint,
    checkpoint,
    reschedule,
)

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from ._core import Task

__all__ = [
    "MemoryChannelStatistics",
    "MemoryReceiveChannel",
    "MemorySendChannel",
    "open_memory_channel",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, weakref_slot=True)
class MemoryChannelStatistics:
    """Snapshot returned by ``statistics()`` on either endpoint.

    The numbers describe the whole channel, summed over all clones.

    Attributes:
      current_buffer_used: items sitting in the buffer right now.
      max_buffer_size: the buffer capacity given to open_memory_channel.
      open_send_channels: send endpoints (original and clones) not yet closed.
      open_receive_channels: likewise for receive endpoints.
      tasks_waiting_send: tasks blocked in ``send``.
      tasks_waiting_receive: tasks blocked in ``receive``.
      peak_buffer_used: the most items the buffer has held at once.
    """

    current_buffer_used: int
    max_buffer_size: int | float
    open_send_channels: int
    open_receive_channels: int
    tasks_waiting_send: int
    tasks_waiting_receive: int
    peak_buffer_used: int


@dataclass(eq=False, slots=True)
class _Waiter(Generic[T]):
    """One task blocked in ``send`` or ``receive``.

    For a sender, ``item`` is the value it wants to deliver (taken by the
    receiver that frees it).  For a receiver, ``item`` is filled in by the
    sender that wakes it.  ``error`` is set instead when the task must fail.
    ``eq=False`` keeps identity hashing, so waiters can key dicts.
    """

    task: Task
    endpoint: MemorySendChannel[T] | MemoryReceiveChannel[T]
    item: T | None = None
    error: BaseException | None = None

    def wake_with_error(self, error: BaseException) -> None:
        self.error = error
        reschedule(self.task)

    def result(self) -> T:
        # Unhook the item and error from the record before returning or
        # raising, so the raised exception's traceback (which references
        # this frame) does not keep a reference cycle through the waiter.
        item, self.item = self.item, None
        error, self.error = self.error, None
        if error is None:
            return item  # type: ignore[return-value]  # set by the waker
        try:
            raise error
        finally:
            del error


class _ChannelState(Generic[T]):
    """Everything the endpoints of one channel share."""

    __slots__ = (
        "buffer",
        "max_buffer_size",
        "open_receive_channels",
        "open_send_channels",
        "peak_buffer_used",
        "receive_waiters",
        "send_waiters",
    )

    def __init__(self, max_buffer_size: int | float) -> None:
        self.max_buffer_size = max_buffer_size
        self.buffer: deque[T] = deque()
        # open_memory_channel makes one endpoint of each kind with the
        # state; clone() counts the others.
        self.open_send_channels = 1
        self.open_receive_channels = 1
        # Channel-wide queues of blocked tasks, oldest first.  OrderedDict
        # gives O(1) removal of an arbitrary waiter (on cancellation) and O(1)
        # popping of the oldest one (on hand-off).
        self.send_waiters: OrderedDict[_Waiter[T], None] = OrderedDict()
        self.receive_waiters: OrderedDict[_Waiter[T], None] = OrderedDict()
        self.peak_buffer_used = 0

    def statistics(self) -> MemoryChannelStatistics:
        return MemoryChannelStatistics(
            current_buffer_used=len(self.buffer),
            max_buffer_size=self.max_buffer_size,
            open_send_channels=self.open_send_channels,
            open_receive_channels=self.open_receive_channels,
            tasks_waiting_send=len(self.send_waiters),
            tasks_waiting_receive=len(self.receive_waiters),
            peak_buffer_used=self.peak_buffer_used,
        )

    def pop_oldest(self, queue: OrderedDict[_Waiter[T], None]) -> _Waiter[T]:
        """Remove the oldest waiter from ``queue`` and from its endpoint."""
        waiter, _ = queue.popitem(last=False)
        del waiter.endpoint._waiters[waiter]
        return waiter


_EMPTY = object()


_object_new = object.__new__


class _MemoryChannelEnd(Generic[T]):
    """What the two endpoint classes share: the channel state, the closed
    flag, the tasks waiting through this endpoint, and the trivial methods."""

    __slots__ = ("__weakref__", "_closed", "_state", "_waiters")

    _state: _ChannelState[T]
    _closed: bool
    # Tasks blocked in send()/receive() through this particular endpoint.
    _waiters: dict[_Waiter[T], None]

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            f"ringtrio.{type(self).__name__} has no public constructor: "
            "ringtrio.open_memory_channel(max_buffer_size) returns a "
            "(send_channel, receive_channel) pair, and clone() more endpoints"
        )

    @classmethod
    def _create(cls, state: _ChannelState[T]) -> Self:
        """A new endpoint on ``state`` (the class call refuses, as trio's:
        no public constructor).  The caller counts it as open."""
        self = _object_new(cls)
        self._state = state
        self._closed = False
        self._waiters = {}
        return self

    def __repr__(self) -> str:
        closed = " (closed)" if self._closed else ""
        return (
            f"<ringtrio.{type(self).__name__}{closed} at {id(self):#x}, "
            f"channel state {id(self._state):#x}>"
        )

    def statistics(self) -> MemoryChannelStatistics:
        """Return a :class:`MemoryChannelStatistics` for the whole channel."""
        return self._state.statistics()

    if TYPE_CHECKING:

        def close(self) -> None: ...  # each endpoint class has its own

    async def aclose(self) -> None:
        """Close this endpoint (see :meth:`close`), then checkpoint."""
        self.close()
        await checkpoint()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@final
class MemorySendChannel(_MemoryChannelEnd[T], SendChannel[T]):
    """The sending endpoint of a memory channel.

    Get one from :func:`open_memory_channel` or :meth:`clone`; it cannot be
    constructed directly.  Several tasks may send at the same time.
    """

    __slots__ = ()

    def send_nowait(self, value: T) -> None:
        """Send ``value`` if that is possible without waiting.

        Raises:
          WouldBlock: the buffer is full and no receiver is waiting.
          BrokenResourceError: every receive endpoint is closed.
          ClosedResourceError: this endpoint is closed.
        """
        if not self._try_send(value):
            raise WouldBlock

    def _try_send(self, value: T) -> bool:
        # send_nowait without the WouldBlock exception: False means "would
        # block".  send() uses this so the common path raises nothing.
        if self._closed:
            raise ClosedResourceError(
                "this MemorySendChannel was closed; it cannot send any more "
                "(keep an open clone if other code still needs to send)"
            )
        state = self._state
        if state.open_receive_channels == 0:
            raise BrokenResourceError(
                "every receive endpoint of this memory channel is closed, so "
                "nothing could ever receive the value"
            )
        if state.receive_waiters:
            receiver = state.pop_oldest(state.receive_waiters)
            receiver.item = value
            reschedule(receiver.task)
        elif len(state.buffer) < state.max_buffer_size:
            state.buffer.append(value)
            if len(state.buffer) > state.peak_buffer_used:
                state.peak_buffer_used = len(state.buffer)
        else:
            return False
        return True

    async def send(self, value: T) -> None:
        """Send ``value``, waiting (in FIFO order with other senders) while the
        buffer is full.

        If cancelled while waiting, the value was *not* sent.

        Raises:
          BrokenResourceError: every receive endpoint is closed, possibly
              while we were waiting.
          ClosedResourceError: this endpoint was closed, possibly while we
              were waiting.
        """
        task = _local.task
        if task is None:
            _outside_run()
        if _cancel_pending(task):
            await checkpoint()
        if self._try_send(value):
            # Delivered; a cancel arriving now must not pretend otherwise.
            await cancel_shielded_checkpoint()
            return

        waiter: _Waiter[T] = _Waiter(task, self, value)
        self._state.send_waiters[waiter] = None
        self._waiters[waiter] = None

        def abort(_raise_cancel: object) -> Abort:
            # Still queued, so no receiver has taken the item: withdrawing
            # it means the cancelled send delivers nothing.
            del self._state.send_waiters[waiter]
            del self._waiters[waiter]
            return Abort.SUCCEEDED

        await _yield_trap(_Park(abort))
        waiter.result()

    def clone(self) -> MemorySendChannel[T]:
        """Return another send endpoint for the same channel.

        Receivers see :exc:`EndOfChannel` only after *every* send endpoint
        (original and clones) has been closed, so giving each producer its
        own clone and closing it when done signals completion cleanly.

        Raises:
          ClosedResourceError: this endpoint is closed.
        """
        if self._closed:
            raise ClosedResourceError(
                "cannot clone a closed MemorySendChannel; clone an endpoint "
                "that is still open"
            )
        self._state.open_send_channels += 1
        return MemorySendChannel._create(self._state)

    def close(self) -> None:
        """Close this endpoint.  Not a checkpoint; closing twice is harmless.

        Tasks blocked in ``send`` on this endpoint get
        :exc:`ClosedResourceError`.  If this was the last open send endpoint,
        tasks blocked in ``receive`` get :exc:`EndOfChannel`.
        """
        if self._closed:
            return
        self._closed = True
        state = self._state
        for waiter in self._waiters:
            del state.send_waiters[waiter]
            waiter.wake_with_error(
                ClosedResourceError(
                    "the MemorySendChannel this task was sending on was "
                    "closed while it waited; the value was not sent"
                )
            )
        self._waiters.clear()
        state.open_send_channels -= 1
        if state.open_send_channels == 0:
            # Every sender endpoint failed its own waiters on closing.
            assert not state.send_waiters
            while state.receive_waiters:
                state.pop_oldest(state.receive_waiters).wake_with_error(
                    EndOfChannel()
                )


@final
class MemoryReceiveChannel(_MemoryChannelEnd[T], ReceiveChannel[T]):
    """The receiving endpoint of a memory channel.

    Get one from :func:`open_memory_channel` or :meth:`clone`; it cannot be
    constructed directly.  Several tasks may receive at the same time; each
    item goes to exactly one of them.  ``async for item in channel`` runs
    until every send endpoint is closed and the buffer is drained.
    """

    __slots__ = ()

    def receive_nowait(self) -> T:
        """Return the next item if one is available without waiting.

        Raises:
          WouldBlock: nothing is buffered and no sender is waiting.
          EndOfChannel: every send endpoint is closed and nothing is left.
          ClosedResourceError: this endpoint is closed.
        """
        value = self._try_receive()
        if value is _EMPTY:
            raise WouldBlock
        return value  # type: ignore[return-value]

    def _try_receive(self) -> T | object:
        # receive_nowait without the WouldBlock exception: _EMPTY means
        # "would block".
        if self._closed:
            raise ClosedResourceError(
                "this MemoryReceiveChannel was closed; it cannot receive any "
                "more (keep an open clone if other code still needs to receive)"
            )
        state = self._state
        if state.send_waiters:
            # Senders only wait when the buffer is full (always, for size 0),
            # so the oldest sender's item belongs right behind what is already
            # buffered.  Append it first, then serve from the head: the order
            # of items stays exactly the order in which they were sent.
            sender = state.pop_oldest(state.send_waiters)
            state.buffer.append(sender.item)  # type: ignore[arg-type]
            sender.item = None
            reschedule(sender.task)
        if state.buffer:
            return state.buffer.popleft()
        if state.open_send_channels == 0:
            raise EndOfChannel
        return _EMPTY

    async def receive(self) -> T:
        """Return the next item, waiting (in FIFO order with other receivers)
        until one is sent.

        Either an item is returned or, on cancellation, ``Cancelled`` is
        raised and the channel is left untouched: no item is ever lost.

        Raises:
          EndOfChannel: every send endpoint is closed and nothing is left.
          ClosedResourceError: this endpoint was closed, possibly while we
              were waiting.
        """
        task = _local.task
        if task is None:
            _outside_run()
        if _cancel_pending(task):
            await checkpoint()
        value = self._try_receive()
        if value is not _EMPTY:
            # We hold the item; a cancel arriving now would lose it.
            await cancel_shielded_checkpoint()
            return value  # type: ignore[return-value]

        waiter: _Waiter[T] = _Waiter(task, self)
        self._state.receive_waiters[waiter] = None
        self._waiters[waiter] = None

        def abort(_raise_cancel: object) -> Abort:
            # Still queued means no sender has handed us anything yet.
            del self._state.receive_waiters[waiter]
            del self._waiters[waiter]
            return Abort.SUCCEEDED

        await _yield_trap(_Park(abort))
        return waiter.result()

    def clone(self) -> MemoryReceiveChannel[T]:
        """Return another receive endpoint for the same channel.

        Clones compete for items: each item goes to exactly one receiver.
        The channel counts as closed for senders (who then get
        :exc:`BrokenResourceError`) only once every receive endpoint is
        closed.

        Raises:
          ClosedResourceError: this endpoint is closed.
        """
        if self._closed:
            raise ClosedResourceError(
                "cannot clone a closed MemoryReceiveChannel; clone an "
                "endpoint that is still open"
            )
        self._state.open_receive_channels += 1
        return MemoryReceiveChannel._create(self._state)

    def close(self) -> None:
        """Close this endpoint.  Not a checkpoint; closing twice is harmless.

        Tasks blocked in ``receive`` on this endpoint get
        :exc:`ClosedResourceError`.  If this was the last open receive
        endpoint, buffered items are discarded and tasks blocked in ``send``
        get :exc:`BrokenResourceError`.
        """
        if self._closed:
            return
        self._closed = True
        state = self._state
        for waiter in self._waiters:
            del state.receive_waiters[waiter]
            waiter.wake_with_error(
                ClosedResourceError(
                    "the MemoryReceiveChannel this task was receiving on was "
                    "closed while it waited"
                )
            )
        self._waiters.clear()
        state.open_receive_channels -= 1
        if state.open_receive_channels == 0:
            assert not state.receive_waiters
            while state.send_waiters:
                sender = state.pop_oldest(state.send_waiters)
                sender.item = None
                sender.wake_with_error(
                    BrokenResourceError(
                        "every receive endpoint of this memory channel was "
                        "closed while this task waited to send; the value "
                        "was not delivered"
                    )
                )
            state.buffer.clear()


# Written as a class (not a function) so that ``open_memory_channel[int](5)``
# works at runtime and type-checks: subscripting a tuple subclass is allowed,
# and a type checker infers T from the subscript.  __new__ returns a plain
# tuple, so no instance of this class is ever created.
@final
class open_memory_channel(tuple["MemorySendChannel[T]", "MemoryReceiveChannel[T]"]):
    """Create an in-memory channel and return ``(send_channel, receive_channel)``.

    Data flows left to right: send on the first, receive on the second.

    Args:
      max_buffer_size: how many items may wait in the channel before
        ``send`` blocks.  ``0`` means every ``send`` waits for a matching
        ``receive`` (the usual choice, since it gives prompt backpressure);
        ``math.inf`` means ``send`` never blocks.

    Raises:
      TypeError: ``max_buffer_size`` is neither an int nor ``math.inf``.
      ValueError: ``max_buffer_size`` is negative.

    Endpoints are not closed by garbage collection.  Close them (``close``,
    ``aclose`` or ``with``/``async with``) so that the other side learns it
    should stop waiting.
    """

    def __new__(  # type: ignore[misc]  # deliberately returns a plain tuple
        cls, max_buffer_size: int | float
    ) -> tuple[MemorySendChannel[T], MemoryReceiveChannel[T]]:
        if max_buffer_size != math.inf and not isinstance(max_buffer_size, int):
            raise TypeError(
                f"max_buffer_size must be an int or math.inf, got "
                f"{type(max_buffer_size).__name__} {max_buffer_size!r}"
            )
        if max_buffer_size < 0:
            raise ValueError("max_buffer_size must be >= 0")  # trio's words: code matches on them
        state: _ChannelState[T] = _ChannelState(max_buffer_size)
        return MemorySendChannel._create(state), MemoryReceiveChannel._create(state)

    # Only here so that signature introspection and type checkers see the
    # real parameters; never called, since __new__ returns a plain tuple.
    def __init__(self, max_buffer_size: int | float) -> None: ...
