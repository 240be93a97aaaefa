"""Conformance checkers for stream implementations (``trio.testing``'s
``check_*_stream`` family), plus :func:`open_stream_to_socket_listener`.

Each checker takes async *makers* that build a fresh connected pair, runs a
battery of scenarios against fresh pairs, and raises :exc:`AssertionError`
on the first contract violation.  They do not depend on pytest.
"""

from __future__ import annotations

import random
import socket as _stdlib_socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

from .._abc import (
    AsyncResource,
    HalfCloseableStream,
    ReceiveStream,
    SendStream,
    Stream,
)
from .._core import (
    BrokenResourceError,
    BusyResourceError,
    Cancelled,
    CancelScope,
    ClosedResourceError,
    open_nursery,
    wait_all_tasks_blocked,
)
from .._highlevel_generic import aclose_forcefully
from ._checkpoints import assert_checkpoints

# Ctrl-C raises KeyboardInterrupt in these helpers at once, as in the user's
# own code that they run (they are not the runtime: see _core/_ki.py).
_KI_PROTECTION = False

if TYPE_CHECKING:
    from types import TracebackType

    from .._highlevel_socket import SocketListener, SocketStream

__all__ = [
    "check_half_closeable_stream",
    "check_one_way_stream",
    "check_two_way_stream",
    "open_stream_to_socket_listener",
]

StreamMaker: TypeAlias = Callable[[], Awaitable[tuple[Any, Any]]]


class _Pair:
    """``async with _Pair(await maker()) as (a, b):`` closes both ends
    forcefully on the way out, whatever happened inside."""

    def __init__(self, pair: tuple[Any, Any]) -> None:
        self._a, self._b = pair

    async def __aenter__(self) -> tuple[Any, Any]:
        return self._a, self._b

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await aclose_forcefully(self._a)
        finally:
            await aclose_forcefully(self._b)


@contextmanager
def _expect(exc_type: type[BaseException], *, grouped: bool = False) -> Iterator[None]:
    """The block must raise ``exc_type`` -- bare, or (``grouped=True``) as
    the single member of an exception group leaving a nursery."""
    __tracebackhide__ = True
    try:
        yield
    except BaseExceptionGroup as group:
        if not grouped:
            raise AssertionError(
                f"expected a bare {exc_type.__name__}, got an exception group: {group!r}"
            ) from group
        leaves = group.exceptions
        if len(leaves) != 1 or not isinstance(leaves[0], exc_type):
            raise AssertionError(
                f"expected a group holding one {exc_type.__name__}, got {group!r}"
            ) from group
    except exc_type:
        if grouped:
            raise AssertionError(
                f"expected {exc_type.__name__} inside an exception group, got it bare"
            ) from None
    else:
        raise AssertionError(f"expected {exc_type.__name__} to be raised")


async def check_one_way_stream(
    stream_maker: StreamMaker,
    clogged_stream_maker: StreamMaker | None,
) -> None:
    """Check a one-way stream implementation against the
    :class:`~ringtrio.abc.SendStream` / :class:`~ringtrio.abc.ReceiveStream`
    contract.

    Args:
      stream_maker: async function returning a fresh connected
          ``(send_stream, receive_stream)`` pair.
      clogged_stream_maker: None, or an async function like
          ``stream_maker`` whose pair starts out clogged: ``send_all`` and
          ``wait_send_all_might_not_block`` block until the other end calls
          ``receive_some``.  Enables the flow-control checks.

    Raises:
      AssertionError: the implementation broke the contract.
    """
    async with _Pair(await stream_maker()) as (s, r):
        assert isinstance(s, SendStream), f"{s!r} is not a SendStream"
        assert isinstance(r, ReceiveStream), f"{r!r} is not a ReceiveStream"

        async def send(data: bytes | bytearray | memoryview) -> None:
            with assert_checkpoints():
                result = await s.send_all(data)
            assert result is None, "send_all must return None"

        async def receive(max_bytes: int | None = None) -> bytes | bytearray:
            with assert_checkpoints():
                return await r.receive_some(max_bytes)

        async def receive_exactly_1(expected: bytes) -> None:
            got = await receive(1)
            assert got == expected, f"received {got!r}, expected {expected!r}"

        async def close(resource: AsyncResource) -> None:
            with assert_checkpoints():
                await resource.aclose()

        async def send_and_receive_1(payload: Any, expected: bytes) -> None:
            async with open_nursery() as nursery:
                nursery.start_soon(send, payload)
                nursery.start_soon(receive_exactly_1, expected)

        # Basic transfer; an empty send is legal and means nothing.
        await send_and_receive_1(b"x", b"x")

        async def empty_then_y() -> None:
            await send(b"")
            await send(b"y")

        async with open_nursery() as nursery:
            nursery.start_soon(empty_then_y)
            nursery.start_soon(receive_exactly_1, b"y")

        # send_all takes any bytes-like object.
        await send_and_receive_1(bytearray(b"1"), b"1")
        await send_and_receive_1(memoryview(b"2"), b"2")

        # max_bytes: a positive int, or omitted/None.
        with _expect(ValueError):
            await r.receive_some(-1)
        with _expect(ValueError):
            await r.receive_some(0)
        with _expect(TypeError):
            await r.receive_some(1.5)  # type: ignore[arg-type]
        for args in ((), (None,)):
            async with open_nursery() as nursery:
                nursery.start_soon(send, b"x")
                got = await receive(*args)
                assert got == b"x", f"receive_some{args!r} returned {got!r}"

        # Two concurrent receivers: the second one must fail loudly.
        with _expect(BusyResourceError, grouped=True):
            async with open_nursery() as nursery:
                nursery.start_soon(receive, 1)
                nursery.start_soon(receive, 1)

        # wait_send_all_might_not_block exists and returns while a receiver
        # is waiting on an empty stream (a stream without buffering may need
        # that receiver, hence the concurrent receive that we then cancel).
        async def wait_then_cancel(scope: CancelScope) -> None:
            with assert_checkpoints():
                await s.wait_send_all_might_not_block()
            scope.cancel()

        async with open_nursery() as nursery:
            nursery.start_soon(wait_then_cancel, nursery.cancel_scope)
            nursery.start_soon(receive, 1)

        # Closing the receiver breaks the sender (possibly after a while).
        async def send_until_broken() -> None:
            with _expect(BrokenResourceError):
                while True:
                    await send(b"x" * 100)

        async with open_nursery() as nursery:
            nursery.start_soon(send_until_broken)
            nursery.start_soon(close, r)

        # ... and it stays broken.
        with _expect(BrokenResourceError):
            await send(b"x" * 100)

        # A closed receiver refuses to receive; closing again is fine.
        with _expect(ClosedResourceError):
            await receive(4096)
        await close(r)
        await close(r)

        # A closed sender refuses every send-side call, even empty ones.
        await close(s)
        with _expect(ClosedResourceError):
            await send(b"x" * 100)
        with _expect(ClosedResourceError):
            await send(b"")
        with _expect(ClosedResourceError):
            with assert_checkpoints():
                await s.wait_send_all_might_not_block()
        await close(s)
        await close(s)

    # Graceful close after sending: the receiver gets the data, then b"".
    async with _Pair(await stream_maker()) as (s, r):

        async def send_y_then_close() -> None:
            await send(b"y")
            await close(s)

        async def receive_y_then_eof() -> None:
            # Let the sender get as far as it can (it may finish closing
            # before we read anything): no data may be lost either way.
            await wait_all_tasks_blocked()
            await receive_exactly_1(b"y")
            await receive_exactly_1(b"")
            await close(r)

        async with open_nursery() as nursery:
            nursery.start_soon(send_y_then_close)
            nursery.start_soon(receive_y_then_eof)

    # Forceful close of the receiver.
    async with _Pair(await stream_maker()) as (s, r):
        await aclose_forcefully(r)
        with _expect(BrokenResourceError):
            while True:
                await send(b"x" * 100)
        with _expect(ClosedResourceError):
            await receive(4096)

    # Forceful close of the sender: the receiver sees b"" or
    # BrokenResourceError -- never data, never a hang.
    async with _Pair(await stream_maker()) as (s, r):
        await aclose_forcefully(s)
        with _expect(ClosedResourceError):
            await send(b"123")
        try:
            await receive_exactly_1(b"")
        except BrokenResourceError:
            pass

    # aclose inside a cancelled scope still closes.
    async with _Pair(await stream_maker()) as (s, r):
        with CancelScope() as scope:
            scope.cancel()
            await r.aclose()
        with CancelScope() as scope:
            scope.cancel()
            await s.aclose()
        with _expect(ClosedResourceError):
            await send(b"123")
        with _expect(ClosedResourceError):
            await receive(4096)

    # A cancelled operation must not stop a later graceful close.
    async with _Pair(await stream_maker()) as (s, r):

        async def expect_cancelled(afn: Callable[..., Awaitable[object]], *args: Any) -> None:
            with _expect(Cancelled):
                await afn(*args)

        with CancelScope() as scope:
            scope.cancel()
            async with open_nursery() as nursery:
                nursery.start_soon(expect_cancelled, send, b"x")
                nursery.start_soon(expect_cancelled, receive, 1)

        async with open_nursery() as nursery:
            nursery.start_soon(close, s)
            nursery.start_soon(close, r)

    # Closing the receive stream wakes a task blocked in receive_some.
    async with _Pair(await stream_maker()) as (s, r):

        async def receive_until_closed() -> None:
            with _expect(ClosedResourceError):
                await r.receive_some(10)

        async with open_nursery() as nursery:
            nursery.start_soon(receive_until_closed)
            await wait_all_tasks_blocked()
            await aclose_forcefully(r)

    if clogged_stream_maker is not None:
        await _check_clogged_one_way(clogged_stream_maker)


async def _check_clogged_one_way(clogged_stream_maker: StreamMaker) -> None:
    # wait_send_all_might_not_block waits until the receiver drains.
    async with _Pair(await clogged_stream_maker()) as (s, r):
        log: list[str] = []

        async def waiter(scope: CancelScope) -> None:
            log.append("waiter sleeping")
            with assert_checkpoints():
                await s.wait_send_all_might_not_block()
            log.append("waiter woke")
            scope.cancel()

        async def drain() -> None:
            await wait_all_tasks_blocked()
            log.append("receiver starting")
            while True:
                await r.receive_some(16834)

        async with open_nursery() as nursery:
            nursery.start_soon(waiter, nursery.cancel_scope)
            await wait_all_tasks_blocked()
            nursery.start_soon(drain)

        assert log == ["waiter sleeping", "receiver starting", "waiter woke"], log

    # Concurrent send-side calls fail with BusyResourceError.  (The loser's
    # cancellation may leave the stream unusable, hence fresh pairs.)
    async with _Pair(await clogged_stream_maker()) as (s, r):
        with _expect(BusyResourceError, grouped=True):
            async with open_nursery() as nursery:
                nursery.start_soon(s.wait_send_all_might_not_block)
                nursery.start_soon(s.wait_send_all_might_not_block)
        with _expect(BusyResourceError, grouped=True):
            async with open_nursery() as nursery:
                nursery.start_soon(s.wait_send_all_might_not_block)
                nursery.start_soon(s.send_all, b"123")

    async with _Pair(await clogged_stream_maker()) as (s, r):
        with _expect(BusyResourceError, grouped=True):
            async with open_nursery() as nursery:
                nursery.start_soon(s.send_all, b"123")
                nursery.start_soon(s.send_all, b"123")

    # Closing the receiver releases wait_send_all_might_not_block (it may
    # return or raise BrokenResourceError), whether it was already waiting...
    async with _Pair(await clogged_stream_maker()) as (s, r):

        async def wait_sender() -> None:
            try:
                with assert_checkpoints():
                    await s.wait_send_all_might_not_block()
            except BrokenResourceError:
                pass

        async def close_receiver() -> None:
            await wait_all_tasks_blocked()
            await aclose_forcefully(r)

        async with open_nursery() as nursery:
            nursery.start_soon(wait_sender)
            nursery.start_soon(close_receiver)

    # ... or starts waiting after the close.
    async with _Pair(await clogged_stream_maker()) as (s, r):
        await aclose_forcefully(r)
        try:
            with assert_checkpoints():
                await s.wait_send_all_might_not_block()
        except BrokenResourceError:
            pass

    # Closing the send stream wakes a task blocked in a send-side call.
    async def close_when_blocked(stream: SendStream) -> None:
        await wait_all_tasks_blocked()
        await aclose_forcefully(stream)

    async with _Pair(await clogged_stream_maker()) as (s, r):
        async with open_nursery() as nursery:
            nursery.start_soon(close_when_blocked, s)
            with _expect(ClosedResourceError):
                await s.send_all(b"xyzzy")

    async with _Pair(await clogged_stream_maker()) as (s, r):
        async with open_nursery() as nursery:
            nursery.start_soon(close_when_blocked, s)
            with _expect(ClosedResourceError):
                await s.wait_send_all_might_not_block()


def _reversed_maker(maker: StreamMaker) -> StreamMaker:
    async def reversed_maker() -> tuple[Any, Any]:
        a, b = await maker()
        return b, a

    return reversed_maker


async def check_two_way_stream(
    stream_maker: StreamMaker,
    clogged_stream_maker: StreamMaker | None,
) -> None:
    """Check a bidirectional :class:`~ringtrio.abc.Stream` implementation.

    The makers return connected ``(stream, stream)`` pairs.  Runs
    :func:`check_one_way_stream` in both directions, then a full-duplex
    transfer of 1 MiB each way in random-sized chunks.
    """
    await check_one_way_stream(stream_maker, clogged_stream_maker)
    await check_one_way_stream(
        _reversed_maker(stream_maker),
        None if clogged_stream_maker is None else _reversed_maker(clogged_stream_maker),
    )

    async with _Pair(await stream_maker()) as (s1, s2):
        assert isinstance(s1, Stream), f"{s1!r} is not a Stream"
        assert isinstance(s2, Stream), f"{s2!r} is not a Stream"

        total = 1 << 20
        max_chunk = 1 << 14
        payload = random.Random(0).randbytes(total)

        async def pour(stream: Stream, data: bytes, seed: int) -> None:
            rng = random.Random(seed)
            view = memoryview(data)
            while view:
                n = rng.randint(1, max_chunk)
                await stream.send_all(view[:n])
                view = view[n:]

        async def collect(stream: Stream, expected: bytes, seed: int) -> None:
            rng = random.Random(seed)
            got = bytearray()
            while len(got) < len(expected):
                chunk = await stream.receive_some(rng.randint(1, max_chunk))
                assert chunk, f"premature end of stream after {len(got)} bytes"
                got += chunk
            assert got == expected, "full-duplex transfer corrupted the data"

        async with open_nursery() as nursery:
            nursery.start_soon(pour, s1, payload, 0)
            nursery.start_soon(pour, s2, payload[::-1], 1)
            nursery.start_soon(collect, s1, payload[::-1], 2)
            nursery.start_soon(collect, s2, payload, 3)

        # Closing one end is an end-of-stream for the other.
        async def eof_then_close() -> None:
            got = await s2.receive_some(10)
            assert got == b"", f"expected end of stream, got {got!r}"
            await s2.aclose()

        async with open_nursery() as nursery:
            nursery.start_soon(eof_then_close)
            nursery.start_soon(s1.aclose)


async def check_half_closeable_stream(
    stream_maker: StreamMaker,
    clogged_stream_maker: StreamMaker | None,
) -> None:
    """Check a :class:`~ringtrio.abc.HalfCloseableStream` implementation:
    everything :func:`check_two_way_stream` checks, plus ``send_eof``."""
    await check_two_way_stream(stream_maker, clogged_stream_maker)

    async with _Pair(await stream_maker()) as (s1, s2):
        assert isinstance(s1, HalfCloseableStream), f"{s1!r} is not half-closeable"
        assert isinstance(s2, HalfCloseableStream), f"{s2!r} is not half-closeable"

        async def send_x_then_eof(stream: HalfCloseableStream) -> None:
            await stream.send_all(b"x")
            with assert_checkpoints():
                await stream.send_eof()

        async def expect_x_then_eof(stream: HalfCloseableStream) -> None:
            await wait_all_tasks_blocked()
            got = await stream.receive_some(10)
            assert got == b"x", f"received {got!r}, expected b'x'"
            got = await stream.receive_some(10)
            assert got == b"", f"expected end of stream, got {got!r}"

        async with open_nursery() as nursery:
            nursery.start_soon(send_x_then_eof, s1)
            nursery.start_soon(expect_x_then_eof, s2)

        # After send_eof: no more sending, send_eof again is fine, and the
        # other direction still works.
        with _expect(ClosedResourceError):
            await s1.send_all(b"y")
        with assert_checkpoints():
            await s1.send_eof()

        async with open_nursery() as nursery:
            nursery.start_soon(send_x_then_eof, s2)
            nursery.start_soon(expect_x_then_eof, s1)

    if clogged_stream_maker is not None:
        # send_eof while send_all or wait_send_all_might_not_block is
        # running is a conflict.
        for blocker in ("send_all", "wait_send_all_might_not_block"):
            async with _Pair(await clogged_stream_maker()) as (s1, s2):
                with _expect(BusyResourceError, grouped=True):
                    async with open_nursery() as nursery:
                        if blocker == "send_all":
                            nursery.start_soon(s1.send_all, b"x")
                        else:
                            nursery.start_soon(s1.wait_send_all_might_not_block)
                        await wait_all_tasks_blocked()
                        nursery.start_soon(s1.send_eof)


async def open_stream_to_socket_listener(socket_listener: SocketListener) -> SocketStream:
    """Connect to ``socket_listener`` (a ``ringtrio.SocketListener``) and
    return the client end as a ``ringtrio.SocketStream``.

    A listener bound to a wildcard address (``0.0.0.0`` / ``::``) is reached
    through the matching loopback address.
    """
    # Imported here: the testing kit must not need the socket layer just to
    # be importable.
    from .. import socket as rsocket
    from .._highlevel_socket import SocketStream  # noqa: F811

    listen_sock = socket_listener.socket
    family = listen_sock.family
    address = listen_sock.getsockname()
    if family in (_stdlib_socket.AF_INET, _stdlib_socket.AF_INET6):
        host, *rest = address
        if host == "0.0.0.0":
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        address = (host, *rest)
    sock = rsocket.socket(family=family, type=listen_sock.type)
    try:
        await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return SocketStream(sock)
