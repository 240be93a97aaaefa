"""Listening on TCP: :func:`open_tcp_listeners` and :func:`serve_tcp`."""

from __future__ import annotations

import errno
import socket as _stdlib_socket
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from . import _socket as rsocket
from ._core import TASK_STATUS_IGNORED
from ._highlevel_serve_listeners import serve_listeners
from ._highlevel_socket import SocketListener

__all__ = ["open_tcp_listeners", "serve_tcp"]

# listen()'s backlog when none is given: the largest the kernel takes; it is
# capped by net.core.somaxconn anyway.
_MAX_BACKLOG = 0xFFFF


def _compute_backlog(backlog: int | None) -> int:
    if backlog is None:
        return _MAX_BACKLOG
    if not isinstance(backlog, int) or isinstance(backlog, bool):
        raise TypeError(f"backlog must be an int or None, not {backlog!r}")
    if backlog < 0:
        raise ValueError(f"backlog must be >= 0, got {backlog}")
    return min(backlog, _MAX_BACKLOG)


async def open_tcp_listeners(
    port: int, *, host: str | bytes | None = None, backlog: int | None = None
) -> list[SocketListener]:
    """Listen on ``port`` of ``host`` (every local address if None: one
    listener per address family) and return the :class:`SocketListener` s.

    Port 0 picks a free port (separately for each listener: read it back
    with ``listener.socket.getsockname()``).  ``SO_REUSEADDR`` is set; IPv6
    listeners are IPv6-only (the IPv4 listener covers IPv4).
    """
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"port must be an int, not {port!r}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be 0-65535, got {port}")
    if host is not None and not isinstance(host, (str, bytes)):
        raise TypeError(f"host must be a str, bytes or None, not {type(host).__name__}")
    backlog = _compute_backlog(backlog)
    addresses = await rsocket.getaddrinfo(
        host, port, type=_stdlib_socket.SOCK_STREAM, flags=_stdlib_socket.AI_PASSIVE
    )
    listeners: list[SocketListener] = []
    unsupported: list[OSError] = []
    try:
        for family, type_, proto, _, sockaddr in addresses:
            try:
                sock = rsocket.socket(family, type_, proto)
            except OSError as exc:
                if exc.errno == errno.EAFNOSUPPORT:
                    unsupported.append(exc)
                    continue
                raise
            try:
                sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEADDR, 1)
                if family == _stdlib_socket.AF_INET6:
                    sock.setsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY, 1)
                try:
                    # Awaited: a custom factory's socket may have trio's
                    # async bind (ours returns an awaitable no-op).
                    await sock.bind(sockaddr)
                except OSError as exc:
                    raise OSError(exc.errno, f"{exc.strerror}: while binding to {sockaddr!r}") from None
                sock.listen(backlog)
                listeners.append(SocketListener(sock))
            except BaseException:
                sock.close()
                raise
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    if unsupported and not listeners:
        # trio's message (code matches on it); the errors, one per address,
        # are the cause.
        families = sorted({_stdlib_socket.AddressFamily(family).name for family, *_ in addresses})
        msg = (
            "This system doesn't support any of the kinds of socket that that address could use "
            f"({host!r} resolved to {', '.join(families)} addresses only)"
        )
        raise OSError(errno.EAFNOSUPPORT, msg) from ExceptionGroup(msg, unsupported)
    return listeners


async def serve_tcp(
    handler: Callable[[Any], Awaitable[Any]],
    port: int,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
    handler_nursery: Any = None,
    task_status: Any = TASK_STATUS_IGNORED,
) -> NoReturn:
    """Listen on ``port`` (see :func:`open_tcp_listeners`) and run
    ``handler(stream)`` for every connection (see :func:`serve_listeners`).
    ``await nursery.start(serve_tcp, handler, 0)`` returns the listeners, so
    you can read the port that was picked."""
    listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    await serve_listeners(handler, listeners, handler_nursery=handler_nursery, task_status=task_status)
