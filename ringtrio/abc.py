"""Abstract base classes (mirrors ``trio.abc``)."""

from ._abc import (
    AsyncResource,
    Channel,
    HalfCloseableStream,
    HostnameResolver,
    Listener,
    ReceiveChannel,
    ReceiveStream,
    SendChannel,
    SendStream,
    SocketFactory,
    Stream,
)
from ._core import Clock, Instrument

__all__ = [
    "AsyncResource",
    "Channel",
    "Clock",
    "HalfCloseableStream",
    "HostnameResolver",
    "Instrument",
    "Listener",
    "ReceiveChannel",
    "ReceiveStream",
    "SendChannel",
    "SendStream",
    "SocketFactory",
    "Stream",
]
