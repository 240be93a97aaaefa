"""Abstract interfaces shared by ringtrio's resources.

This module only describes *shapes*: what methods a closable resource or a
channel endpoint must provide.  Concrete implementations live elsewhere
(for example ``ringtrio._channel`` for in-memory channels).
"""

from __future__ import annotations

import socket as _stdlib_socket
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._core import EndOfChannel

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from ._socket import SocketType

__all__ = [
    "AsyncResource",
    "Channel",
    "HalfCloseableStream",
    "HostnameResolver",
    "Listener",
    "ReceiveChannel",
    "ReceiveStream",
    "SendChannel",
    "SendStream",
    "SocketFactory",
    "Stream",
]

T = TypeVar("T")
# A send endpoint only consumes values, a receive endpoint only produces them,
# so their variance differs; a full duplex Channel has to be invariant.
SendType = TypeVar("SendType", contravariant=True)
ReceiveType = TypeVar("ReceiveType", covariant=True)


class AsyncResource(ABC):
    """Something that holds resources and must be closed when you are done.

    Closing is asynchronous because a graceful shutdown may have to wait (for
    example to flush buffered data).  Even if that wait is cut short -- by an
    error or by cancellation -- :meth:`aclose` must still release everything
    it holds before it returns or raises.

    Every ``AsyncResource`` works as an async context manager: entering does
    nothing and is not a checkpoint, leaving calls :meth:`aclose`::

        async with resource:
            ...
    """

    __slots__ = ()

    @abstractmethod
    async def aclose(self) -> None:
        """Close the resource, gracefully if possible.

        Calling it on an already closed resource must succeed silently.  After
        it returns (or raises), other operations on the resource are expected
        to fail with :exc:`ClosedResourceError`.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class SendChannel(AsyncResource, Generic[SendType]):
    """The sending end of a channel that carries Python objects."""

    __slots__ = ()

    @abstractmethod
    async def send(self, value: SendType) -> None:
        """Deliver ``value`` into the channel, waiting for room if needed.

        Raises:
          BrokenResourceError: nobody can ever receive from the channel again
              (every receive endpoint was closed).
          ClosedResourceError: this endpoint was closed, possibly while
              ``send`` was waiting.
          BusyResourceError: the implementation does not allow concurrent
              sends and another task is already sending.
        """


class ReceiveChannel(AsyncResource, Generic[ReceiveType]):
    """The receiving end of a channel that carries Python objects.

    Besides :meth:`receive`, a receive endpoint is an async iterator which
    stops cleanly once the channel signals :exc:`EndOfChannel`::

        async for value in receive_channel:
            ...
    """

    __slots__ = ()

    @abstractmethod
    async def receive(self) -> ReceiveType:
        """Wait for the next value from the channel and return it.

        Raises:
          EndOfChannel: every send endpoint was closed and nothing is left
              to receive.
          ClosedResourceError: this endpoint was closed, possibly while
              ``receive`` was waiting.
          BrokenResourceError: the channel failed and cannot deliver more.
          BusyResourceError: the implementation does not allow concurrent
              receives and another task is already receiving.
        """

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ReceiveType:
        # Translate the channel's own end-of-data signal into the one the
        # async-iteration protocol understands.  ``from None`` keeps the
        # traceback of a normal loop exit free of noise.
        try:
            return await self.receive()
        except EndOfChannel:
            raise StopAsyncIteration from None


class Channel(SendChannel[T], ReceiveChannel[T]):
    """A single object that can both send and receive values of type ``T``."""

    __slots__ = ()



# ------------------------------------------------------------------ streams


class SendStream(AsyncResource):
    """A stream you can send bytes into."""

    __slots__ = ()

    @abstractmethod
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting as needed.  If cancelled, some of the
        data may have been sent: the stream is then in an unknown state and
        the only safe thing to do is to close it.  Raises
        :exc:`BusyResourceError` if another task is already sending,
        :exc:`BrokenResourceError` if the peer went away, and
        :exc:`ClosedResourceError` if the stream was closed."""

    @abstractmethod
    async def wait_send_all_might_not_block(self) -> None:
        """Block until a ``send_all`` would probably not block (a hint only)."""


class ReceiveStream(AsyncResource):
    """A stream you can receive bytes from.  ``async for chunk in stream``
    yields chunks until end of stream."""

    __slots__ = ()

    @abstractmethod
    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Wait for some data and return between 1 and ``max_bytes`` bytes
        (a size chosen by the stream if None); ``b""`` means end of stream.
        Raises :exc:`BusyResourceError` if another task is already receiving."""

    def __aiter__(self) -> ReceiveStream:
        return self

    async def __anext__(self) -> bytes | bytearray:
        data = await self.receive_some()
        if not data:
            raise StopAsyncIteration
        return data


class Stream(SendStream, ReceiveStream):
    """A bidirectional byte stream."""

    __slots__ = ()


class HalfCloseableStream(Stream):
    """A stream whose sending side can be closed on its own."""

    __slots__ = ()

    @abstractmethod
    async def send_eof(self) -> None:
        """Close the sending side: the peer's receive_some returns b"" once it
        has read everything sent before.  Receiving still works."""


ListenerT = TypeVar("ListenerT", bound=AsyncResource, covariant=True)


class Listener(AsyncResource, Generic[ListenerT]):
    """Something that accepts incoming connections."""

    __slots__ = ()

    @abstractmethod
    async def accept(self) -> ListenerT:
        """Wait for and return the next incoming connection.  Raises
        :exc:`BusyResourceError` if another task is already accepting and
        :exc:`ClosedResourceError` if the listener was closed."""


class HostnameResolver(ABC):
    """A replacement for the system's name resolution, installed for one run
    with :func:`ringtrio.socket.set_custom_hostname_resolver` (a fake network
    in tests, another resolver library).  As ``trio.abc.HostnameResolver``.
    """

    __slots__ = ()

    @abstractmethod
    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[Any, Any, int, str, Any]]:
        """What :func:`ringtrio.socket.getaddrinfo` returns, for a host that
        is a name.  Numeric hosts and ports are resolved without asking the
        resolver.  ``host`` arrives encoded (IDNA 2008, as
        :func:`ringtrio.lowlevel.encode_hostname` does): ``b"xn--caf-dma.com"``,
        never ``"café.com"``."""

    @abstractmethod
    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
        """What :func:`ringtrio.socket.getnameinfo` returns."""


class SocketFactory(ABC):
    """Makes the socket objects :func:`ringtrio.socket.socket` returns in one
    run, once installed with :func:`ringtrio.socket.set_custom_socket_factory`
    (fake sockets in tests).  As ``trio.abc.SocketFactory``."""

    __slots__ = ()

    @abstractmethod
    def socket(
        self,
        family: int = _stdlib_socket.AF_INET,
        type: int = _stdlib_socket.SOCK_STREAM,
        proto: int = 0,
    ) -> SocketType:
        """Return a new socket: an instance of a subclass of
        :class:`ringtrio.socket.SocketType` that implements the methods its
        users call.  ``ringtrio.socket.socket(..., fileno=fd)`` never asks
        the factory: a socket wrapping an existing fd is a real one."""
