"""Abstract base classes (mirrors ``trio.abc``)."""

from ._abc import (
    AsyncResource,
    Channel,
    HalfCloseableStream,
    Listener,
    ReceiveChannel,
    ReceiveStream,
    SendChannel,
    SendStream,
    Stream,
)
from ._core import Clock, Instrument

__all__ = [
    "AsyncResource",
    "Channel",
    "Clock",
    "HalfCloseableStream",
    "Instrument",
    "Listener",
    "ReceiveChannel",
    "ReceiveStream",
    "SendChannel",
    "SendStream",
    "Stream",
]
