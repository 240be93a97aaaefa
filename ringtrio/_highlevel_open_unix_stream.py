"""Connecting to a Unix-domain socket: :func:`open_unix_socket`."""

from __future__ import annotations

import os
import socket as _stdlib_socket

from . import _socket as rsocket
from ._highlevel_socket import SocketStream

__all__ = ["open_unix_socket"]


async def open_unix_socket(filename: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> SocketStream:
    """Connect to the Unix-domain stream socket at ``filename`` and return a
    :class:`SocketStream`.  Raises :exc:`FileNotFoundError` if there is no such
    socket and :exc:`ConnectionRefusedError` if nobody listens on it."""
    if not isinstance(filename, (str, bytes, os.PathLike)):
        raise TypeError(f"filename must be a str, bytes or path-like, not {type(filename).__name__}")
    path = os.fspath(filename)
    if not path:
        raise ValueError("filename must not be empty")
    sock = rsocket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    try:
        await sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return SocketStream(sock)
