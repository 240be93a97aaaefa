"""Abstract base classes (mirrors ``trio.abc``)."""

from ._abc import AsyncResource, Channel, ReceiveChannel, SendChannel
from ._core import Clock, Instrument

__all__ = ["AsyncResource", "Channel", "Clock", "Instrument", "ReceiveChannel", "SendChannel"]
