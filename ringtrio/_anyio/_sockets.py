"""AnyIO's socket streams, listeners and datagram sockets on ringtrio sockets.

Every blocking operation is a ringtrio socket method, so one ring op
(``RECV``, ``SEND``, ``ACCEPT``, ``RECVMSG``, ``SENDMSG``...).  What this
module adds is AnyIO's contract around them:

* one task at a time per direction (``anyio.ResourceGuard``: a second
  concurrent receiver gets ``BusyResourceError``);
* AnyIO's exceptions: ``EndOfStream`` at EOF, ``ClosedResourceError`` once
  *we* closed the socket (also for a task blocked on it when another task
  closes it), ``BrokenResourceError`` (from the ``OSError``) when the
  connection broke;
* ``_raw_socket``, the stdlib socket AnyIO's typed attributes read from.

TLS is AnyIO's own ``TLSStream`` over these streams; nothing here knows
about it.
"""

from __future__ import annotations

import array
import socket
from collections.abc import Collection
from io import IOBase
from typing import Any, Generic, NoReturn, TypeVar

import anyio
from anyio import ResourceGuard, abc
from anyio._core._sockets import convert_ipv6_sockaddr
from anyio.abc import IPSockAddrType

import ringtrio
from ringtrio import lowlevel
from ringtrio.socket import SocketType

T_Address = TypeVar("T_Address")

# The largest datagram a receive returns (the IPv4/IPv6 UDP maximum fits).
_DATAGRAM_MAX = 65536


def stdlib_socket(rsock: SocketType) -> socket.socket:
    """The stdlib socket inside a ringtrio socket (AnyIO's ``raw_socket``).

    ringtrio, like trio, has no public accessor for it; every ringtrio
    socket wraps exactly one stdlib socket object for its whole life."""
    return rsock._sock


class _SocketWrapper(Generic[T_Address]):
    """What all AnyIO socket classes here share: the ringtrio socket, the
    "closed by us" flag, and the translation of errors."""

    def __init__(self, rsock: SocketType) -> None:
        self._rsock = rsock
        self._closed = False
        self._receive_guard = ResourceGuard("reading from")
        self._send_guard = ResourceGuard("writing to")

    @property
    def _raw_socket(self) -> socket.socket:
        return stdlib_socket(self._rsock)

    async def aclose(self) -> None:
        self._closed = True
        self._rsock.close()
        await lowlevel.checkpoint()

    def _raise_translated(self, exc: BaseException) -> NoReturn:
        """Re-raise an error from a socket operation as AnyIO's."""
        if isinstance(exc, ringtrio.ClosedResourceError):
            # Another task closed the socket while this one was blocked on it.
            raise anyio.ClosedResourceError from exc
        if isinstance(exc, OSError):
            if self._closed:
                # EBADF and friends after our own aclose().
                raise anyio.ClosedResourceError from None
            raise anyio.BrokenResourceError from exc
        raise exc


class SocketStream(_SocketWrapper[IPSockAddrType], abc.SocketStream):
    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        with self._receive_guard:
            try:
                data = await self._rsock.recv(max_bytes)
            except BaseException as exc:
                self._raise_translated(exc)
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        with self._send_guard:
            view = memoryview(item)
            while view:
                try:
                    sent = await self._rsock.send(view)
                except BaseException as exc:
                    self._raise_translated(exc)
                view = view[sent:]

    async def send_eof(self) -> None:
        self._rsock.shutdown(socket.SHUT_WR)


class UNIXSocketStream(SocketStream, abc.UNIXSocketStream):
    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        if not message:
            raise ValueError("message must not be empty")
        if not fds:
            raise ValueError("fds must not be empty")
        numbers = [fd if isinstance(fd, int) else fd.fileno() for fd in fds]
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", numbers))]
        view = memoryview(message)
        await lowlevel.checkpoint()
        with self._send_guard:
            while view:
                try:
                    sent = await self._rsock.sendmsg([view], ancillary)
                except BaseException as exc:
                    self._raise_translated(exc)
                view = view[sent:]
                # The descriptors went with the first bytes; a partial send's
                # rest must not send them again.
                ancillary = []

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        if not isinstance(msglen, int) or msglen < 0:
            raise ValueError("msglen must be a non-negative integer")
        if not isinstance(maxfds, int) or maxfds < 1:
            raise ValueError("maxfds must be a positive integer")
        fds = array.array("i")
        await lowlevel.checkpoint()
        with self._receive_guard:
            try:
                message, ancillary, _flags, _addr = await self._rsock.recvmsg(
                    msglen, socket.CMSG_SPACE(maxfds * fds.itemsize)
                )
            except BaseException as exc:
                self._raise_translated(exc)
        if not message and not ancillary:
            raise anyio.EndOfStream
        for level, kind, data in ancillary:
            if level != socket.SOL_SOCKET or kind != socket.SCM_RIGHTS:
                raise RuntimeError(
                    f"Received unexpected ancillary data; message = {message!r}, "
                    f"cmsg_level = {level}, cmsg_type = {kind}"
                )
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        return message, list(fds)


class _Listener(_SocketWrapper[Any]):
    def __init__(self, raw_socket: socket.socket) -> None:
        super().__init__(ringtrio.socket.from_stdlib_socket(raw_socket))
        self._accept_guard = ResourceGuard("accepting connections from")

    async def _accept(self) -> SocketType:
        with self._accept_guard:
            try:
                rsock, _address = await self._rsock.accept()
            except BaseException as exc:
                self._raise_translated(exc)
        return rsock


class TCPSocketListener(_Listener, abc.SocketListener):
    async def accept(self) -> SocketStream:
        rsock = await self._accept()
        rsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SocketStream(rsock)


class UNIXSocketListener(_Listener, abc.SocketListener):
    async def accept(self) -> UNIXSocketStream:
        return UNIXSocketStream(await self._accept())


class _UnconnectedDatagrams(_SocketWrapper[T_Address]):
    """Receives and sends ``(data, address)`` pairs."""

    def _address(self, address: Any) -> T_Address:
        return address  # type: ignore[no-any-return]

    async def receive(self) -> tuple[bytes, T_Address]:
        with self._receive_guard:
            try:
                data, address = await self._rsock.recvfrom(_DATAGRAM_MAX)
            except BaseException as exc:
                self._raise_translated(exc)
        return data, self._address(address)

    async def send(self, item: tuple[bytes, T_Address]) -> None:
        data, address = item
        with self._send_guard:
            try:
                await self._rsock.sendto(data, address)
            except BaseException as exc:
                self._raise_translated(exc)


class _ConnectedDatagrams(_SocketWrapper[T_Address]):
    """Receives and sends datagrams from and to the one connected peer."""

    async def receive(self) -> bytes:
        with self._receive_guard:
            try:
                return await self._rsock.recv(_DATAGRAM_MAX)
            except BaseException as exc:
                self._raise_translated(exc)

    async def send(self, item: bytes) -> None:
        with self._send_guard:
            try:
                await self._rsock.send(item)
            except BaseException as exc:
                self._raise_translated(exc)


class UDPSocket(_UnconnectedDatagrams[IPSockAddrType], abc.UDPSocket):
    def _address(self, address: Any) -> IPSockAddrType:
        return convert_ipv6_sockaddr(address)


class ConnectedUDPSocket(_ConnectedDatagrams[IPSockAddrType], abc.ConnectedUDPSocket):
    pass


class UNIXDatagramSocket(_UnconnectedDatagrams[str], abc.UNIXDatagramSocket):
    pass


class ConnectedUNIXDatagramSocket(_ConnectedDatagrams[str], abc.ConnectedUNIXDatagramSocket):
    pass


async def connect_tcp(
    host: str, port: int, local_address: IPSockAddrType | None = None
) -> SocketStream:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rsock = ringtrio.socket.socket(family)
    try:
        rsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if local_address:
            rsock.bind(local_address)
        await rsock.connect((host, port))
    except BaseException:
        rsock.close()
        raise
    return SocketStream(rsock)


async def connect_unix(path: str | bytes, kind: socket.SocketKind) -> UNIXSocketStream:
    rsock = ringtrio.socket.socket(socket.AF_UNIX, kind)
    try:
        await rsock.connect(path)
    except BaseException:
        rsock.close()
        raise
    return UNIXSocketStream(rsock)


async def create_udp_socket(
    family: socket.AddressFamily,
    local_address: IPSockAddrType | None,
    remote_address: IPSockAddrType | None,
    reuse_port: bool,
) -> UDPSocket | ConnectedUDPSocket:
    rsock = ringtrio.socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            rsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if local_address:
            rsock.bind(local_address)
        if remote_address:
            await rsock.connect(remote_address)
            return ConnectedUDPSocket(rsock)
        # An unconnected socket's only checkpoint: connect() is one above.
        await lowlevel.checkpoint()
        return UDPSocket(rsock)
    except BaseException:
        rsock.close()
        raise


async def create_unix_datagram_socket(
    raw_socket: socket.socket, remote_path: str | bytes | None
) -> UNIXDatagramSocket | ConnectedUNIXDatagramSocket:
    rsock = ringtrio.socket.from_stdlib_socket(raw_socket)
    if remote_path:
        try:
            await rsock.connect(remote_path)
        except BaseException:
            rsock.close()
            raise
        return ConnectedUNIXDatagramSocket(rsock)
    await lowlevel.checkpoint()
    return UNIXDatagramSocket(rsock)
