"""In-memory byte streams for tests (the ``memory_stream_*`` and
``lockstep_stream_*`` families of ``trio.testing``).

Two flavours:

* **memory streams** buffer without limit: ``send_all`` never waits for the
  receiver.  Each end carries hooks so a test can decide when (and how much)
  data moves -- :func:`memory_stream_pump` is the piece that moves it.
* **lockstep streams** have no buffer at all: ``send_all`` returns only once
  the receiver has taken every byte.  They make "clogged" streams for the
  conformance checkers and exercise flow control in the extreme.

Everything here is built from ringtrio's own primitives (``ParkingLot`` and
the checkpoints of ``ringtrio.lowlevel``).
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._abc import ReceiveStream, SendStream
from .._final import final
from .._core import (
    BrokenResourceError,
    ClosedResourceError,
    ParkingLot,
    WouldBlock,
    checkpoint,
)
from .._highlevel_generic import OneUser as _OneUser, StapledStream

__all__ = [
    "MemoryReceiveStream",
    "MemorySendStream",
    "lockstep_stream_one_way_pair",
    "lockstep_stream_pair",
    "memory_stream_one_way_pair",
    "memory_stream_pair",
    "memory_stream_pump",
]

AsyncHook = Callable[[], Awaitable[object]]
SyncHook = Callable[[], object]
SendStreamT = TypeVar("SendStreamT", bound=SendStream)
ReceiveStreamT = TypeVar("ReceiveStreamT", bound=ReceiveStream)


def _validate_max_bytes(max_bytes: int | None) -> int | None:
    if max_bytes is None:
        return None
    max_bytes = operator.index(max_bytes)
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    return max_bytes


# --------------------------------------------------------- unbounded buffer


class _ByteBuffer:
    """An unbounded FIFO of bytes with one consumer.

    ``finish()`` is the writer hanging up: further ``append`` raises
    :exc:`ClosedResourceError`, and readers drain what is left, then get an
    empty bytearray.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._finished = False
        self._readers = ParkingLot()
        self._reading = _OneUser("another task is already fetching data")

    def finish(self, *, discard: bool = False) -> None:
        if discard:
            self._buf = bytearray()
        self._finished = True
        self._readers.unpark_all()

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished:
            raise ClosedResourceError("the virtual connection is closed")
        if data:
            self._buf += data
            self._readers.unpark_all()

    def _ready(self) -> bool:
        return self._finished or bool(self._buf)

    def _take(self, max_bytes: int | None) -> bytearray:
        n = len(self._buf) if max_bytes is None else max_bytes
        chunk = self._buf[:n]
        del self._buf[:n]
        return chunk

    def take_nowait(self, max_bytes: int | None = None) -> bytearray:
        with self._reading:
            max_bytes = _validate_max_bytes(max_bytes)
            if not self._ready():
                raise WouldBlock
            return self._take(max_bytes)

    async def take(self, max_bytes: int | None = None) -> bytearray:
        with self._reading:
            max_bytes = _validate_max_bytes(max_bytes)
            if self._ready():
                await checkpoint()
            else:
                while not self._ready():
                    await self._readers.park()
            return self._take(max_bytes)


@final
class MemorySendStream(SendStream):
    """An in-memory :class:`~ringtrio.abc.SendStream`.

    Data given to :meth:`send_all` lands in an internal buffer, from which
    :meth:`get_data` / :meth:`get_data_nowait` take it out.

    Args:
      send_all_hook: async function or None, awaited at the end of every
          :meth:`send_all`.
      wait_send_all_might_not_block_hook: async function or None, awaited at
          the end of :meth:`wait_send_all_might_not_block`.
      close_hook: sync function or None, called by :meth:`close` and
          :meth:`aclose`.

    The hooks are plain attributes of the same names and may be swapped at
    any time.
    """

    def __init__(
        self,
        send_all_hook: AsyncHook | None = None,
        wait_send_all_might_not_block_hook: AsyncHook | None = None,
        close_hook: SyncHook | None = None,
    ) -> None:
        self._guard = _OneUser("another task is using this stream")
        self._outgoing = _ByteBuffer()
        self.send_all_hook = send_all_hook
        self.wait_send_all_might_not_block_hook = wait_send_all_might_not_block_hook
        self.close_hook = close_hook

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the internal buffer, then await
        :attr:`send_all_hook` (if set)."""
        with self._guard:
            # Two schedule points widen the window in which a second,
            # concurrent caller trips the guard.
            await checkpoint()
            await checkpoint()
            self._outgoing.append(data)
            if self.send_all_hook is not None:
                await self.send_all_hook()

    async def wait_send_all_might_not_block(self) -> None:
        """Await :attr:`wait_send_all_might_not_block_hook` (if set) and
        return: the buffer is unbounded, so sending never blocks."""
        with self._guard:
            await checkpoint()
            await checkpoint()
            # Appending nothing raises ClosedResourceError if we are closed.
            self._outgoing.append(b"")
            if self.wait_send_all_might_not_block_hook is not None:
                await self.wait_send_all_might_not_block_hook()

    def close(self) -> None:
        """Mark the stream closed (no more sends), then call
        :attr:`close_hook` (if set).  Data already buffered stays available
        to :meth:`get_data`, followed by an empty bytearray."""
        self._outgoing.finish()
        if self.close_hook is not None:
            self.close_hook()

    async def aclose(self) -> None:
        """:meth:`close`, followed by a checkpoint."""
        self.close()
        await checkpoint()

    async def get_data(self, max_bytes: int | None = None) -> bytearray:
        """Take up to ``max_bytes`` (all if None) from the internal buffer,
        waiting until at least one byte is there.  Returns an empty
        bytearray once the stream is closed and drained."""
        return await self._outgoing.take(max_bytes)

    def get_data_nowait(self, max_bytes: int | None = None) -> bytearray:
        """Like :meth:`get_data` but raise :exc:`~ringtrio.WouldBlock`
        instead of waiting."""
        return self._outgoing.take_nowait(max_bytes)


@final
class MemoryReceiveStream(ReceiveStream):
    """An in-memory :class:`~ringtrio.abc.ReceiveStream`.

    Tests feed it with :meth:`put_data` and :meth:`put_eof`.

    Args:
      receive_some_hook: async function or None, awaited at the start of
          every :meth:`receive_some` (before waiting for data).
      close_hook: sync function or None, called by :meth:`close` and
          :meth:`aclose`.
    """

    def __init__(
        self,
        receive_some_hook: AsyncHook | None = None,
        close_hook: SyncHook | None = None,
    ) -> None:
        self._guard = _OneUser("another task is using this stream")
        self._incoming = _ByteBuffer()
        self._closed = False
        self.receive_some_hook = receive_some_hook
        self.close_hook = close_hook

    async def receive_some(self, max_bytes: int | None = None) -> bytearray:
        """Await :attr:`receive_some_hook` (if set), then return data from
        the internal buffer, waiting for some if it is empty.  Returns an
        empty bytearray after :meth:`put_eof` once everything was read."""
        with self._guard:
            await checkpoint()
            await checkpoint()
            if self._closed:
                raise ClosedResourceError("this MemoryReceiveStream was closed")
            if self.receive_some_hook is not None:
                await self.receive_some_hook()
            data = await self._incoming.take(max_bytes)
            # close() wakes a blocked reader by finishing the buffer; tell
            # that apart from a genuine EOF.
            if self._closed:
                raise ClosedResourceError("this MemoryReceiveStream was closed")
            return data

    def close(self) -> None:
        """Drop any buffered data and mark the stream closed, then call
        :attr:`close_hook` (if set)."""
        self._closed = True
        self._incoming.finish(discard=True)
        if self.close_hook is not None:
            self.close_hook()

    async def aclose(self) -> None:
        """:meth:`close`, followed by a checkpoint."""
        self.close()
        await checkpoint()

    def put_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the internal buffer."""
        self._incoming.append(data)

    def put_eof(self) -> None:
        """Mark end of stream: readers get ``b""`` after the buffered data."""
        self._incoming.finish()


def memory_stream_pump(
    memory_send_stream: MemorySendStream,
    memory_receive_stream: MemoryReceiveStream,
    *,
    max_bytes: int | None = None,
) -> bool:
    """Move up to ``max_bytes`` (all if None) from ``memory_send_stream``'s
    buffer into ``memory_receive_stream``'s.  A closed and drained sender
    turns into an EOF on the receiver.

    Returns True if something (data or the EOF) moved, False if there was
    nothing to move.  Raises :exc:`~ringtrio.BrokenResourceError` if the
    receiver was closed.
    """
    try:
        data = memory_send_stream.get_data_nowait(max_bytes)
    except WouldBlock:
        return False
    try:
        if data:
            memory_receive_stream.put_data(data)
        else:
            memory_receive_stream.put_eof()
    except ClosedResourceError:
        raise BrokenResourceError("the MemoryReceiveStream was closed") from None
    return True


def memory_stream_one_way_pair() -> tuple[MemorySendStream, MemoryReceiveStream]:
    """A connected (:class:`MemorySendStream`, :class:`MemoryReceiveStream`)
    pair with unlimited buffering -- an in-process ``os.pipe()`` with the
    ends in reading order (data flows left to right).

    The send stream's :attr:`~MemorySendStream.send_all_hook` and
    :attr:`~MemorySendStream.close_hook` call :func:`memory_stream_pump`, so
    data flows on its own.  Replace the hooks to stall or trickle it.
    """
    send_stream = MemorySendStream()
    receive_stream = MemoryReceiveStream()

    def pump() -> None:
        memory_stream_pump(send_stream, receive_stream)

    async def pump_async() -> None:
        pump()

    send_stream.send_all_hook = pump_async
    send_stream.close_hook = pump
    return send_stream, receive_stream


# ----------------------------------------------------------------- lockstep


class _Rendezvous:
    """State shared by the two ends of a lockstep one-way stream.

    At most one chunk is in flight: ``send_all`` puts it here and waits until
    receivers have taken all of it.
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._send_closed = False
        self._receive_closed = False
        self._receiver_waiting = False
        self._lot = ParkingLot()
        self._sending = _OneUser("another task is already sending")
        self._receiving = _OneUser("another task is already receiving")

    def _changed(self) -> None:
        self._lot.unpark_all()

    def _either_closed(self) -> bool:
        return self._send_closed or self._receive_closed

    async def _until(self, condition: Callable[[], bool]) -> None:
        # Closing either end always ends the wait: both sides react to it.
        while not condition() and not self._either_closed():
            await self._lot.park()
        await checkpoint()

    def close_send(self) -> None:
        self._send_closed = True
        self._changed()

    def close_receive(self) -> None:
        self._receive_closed = True
        self._changed()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._sending:
            if self._send_closed:
                raise ClosedResourceError("this lockstep stream was closed")
            if self._receive_closed:
                raise BrokenResourceError("the receiving end was closed")
            self._pending += data
            self._changed()
            await self._until(lambda: not self._pending)
            if self._send_closed:
                raise ClosedResourceError("this lockstep stream was closed")
            if self._pending and self._receive_closed:
                raise BrokenResourceError("the receiving end was closed")

    async def wait_send_all_might_not_block(self) -> None:
        with self._sending:
            if self._send_closed:
                raise ClosedResourceError("this lockstep stream was closed")
            if self._receive_closed:
                await checkpoint()
                return
            await self._until(lambda: self._receiver_waiting)
            if self._send_closed:
                raise ClosedResourceError("this lockstep stream was closed")

    async def receive_some(self, max_bytes: int | None = None) -> bytearray:
        with self._receiving:
            max_bytes = _validate_max_bytes(max_bytes)
            if self._receive_closed:
                raise ClosedResourceError("this lockstep stream was closed")
            # Announce ourselves: this is what unblocks
            # wait_send_all_might_not_block on the other end.
            self._receiver_waiting = True
            self._changed()
            try:
                await self._until(lambda: bool(self._pending))
            finally:
                self._receiver_waiting = False
            if self._receive_closed:
                raise ClosedResourceError("this lockstep stream was closed")
            if not self._pending:
                # Woken by the sender closing: end of stream.
                return bytearray()
            n = len(self._pending) if max_bytes is None else max_bytes
            chunk = self._pending[:n]
            del self._pending[:n]
            self._changed()
            return chunk


class _LockstepSendStream(SendStream):
    def __init__(self, rendezvous: _Rendezvous) -> None:
        self._rv = rendezvous

    def close(self) -> None:
        self._rv.close_send()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._rv.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._rv.wait_send_all_might_not_block()


class _LockstepReceiveStream(ReceiveStream):
    def __init__(self, rendezvous: _Rendezvous) -> None:
        self._rv = rendezvous

    def close(self) -> None:
        self._rv.close_receive()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytearray:
        return await self._rv.receive_some(max_bytes)


def lockstep_stream_one_way_pair() -> tuple[SendStream, ReceiveStream]:
    """A connected (:class:`~ringtrio.abc.SendStream`,
    :class:`~ringtrio.abc.ReceiveStream`) pair with *no* buffering: each
    ``send_all`` blocks until ``receive_some`` calls have taken all of its
    data.  Handy for testing flow control, and for the "clogged" streams of
    :func:`check_one_way_stream`.  Both ends also have a synchronous
    ``close()``.
    """
    rendezvous = _Rendezvous()
    return _LockstepSendStream(rendezvous), _LockstepReceiveStream(rendezvous)


# ------------------------------------------------------------------ two-way


def _two_way(
    one_way: Callable[[], tuple[SendStreamT, ReceiveStreamT]],
) -> tuple[
    StapledStream[SendStreamT, ReceiveStreamT],
    StapledStream[SendStreamT, ReceiveStreamT],
]:
    left_to_right_send, left_to_right_receive = one_way()
    right_to_left_send, right_to_left_receive = one_way()
    left = StapledStream(left_to_right_send, right_to_left_receive)
    right = StapledStream(right_to_left_send, left_to_right_receive)
    return left, right


def memory_stream_pair() -> tuple[
    StapledStream[MemorySendStream, MemoryReceiveStream],
    StapledStream[MemorySendStream, MemoryReceiveStream],
]:
    """A connected pair of bidirectional in-memory streams with unlimited
    buffering -- an in-process ``socket.socketpair()``.

    Each is a ``StapledStream`` whose ``send_stream`` is a
    :class:`MemorySendStream` and whose ``receive_stream`` is a
    :class:`MemoryReceiveStream` (two :func:`memory_stream_one_way_pair`
    pipes, crossed).  All the parts are public, so a test can rewire them,
    for instance to trickle one direction a byte at a time::

        left, right = memory_stream_pair()

        async def trickle():
            while memory_stream_pump(left.send_stream, right.receive_stream,
                                     max_bytes=1):
                await ringtrio.sleep(0.1)

        left.send_stream.send_all_hook = trickle
    """
    return _two_way(memory_stream_one_way_pair)


def lockstep_stream_pair() -> tuple[
    StapledStream[SendStream, ReceiveStream],
    StapledStream[SendStream, ReceiveStream],
]:
    """A connected pair of bidirectional lockstep streams: two
    :func:`lockstep_stream_one_way_pair` pipes, crossed and stapled."""
    return _two_way(lockstep_stream_one_way_pair)
