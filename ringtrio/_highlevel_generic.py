"""Generic stream helpers: :func:`aclose_forcefully`, :class:`StapledStream`,
and :class:`OneUser` (the guard streams use to report concurrent misuse)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from ._abc import AsyncResource, HalfCloseableStream, ReceiveStream, SendStream
from ._final import final
from ._core import BusyResourceError, CancelScope

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Buffer

__all__ = ["StapledStream", "aclose_forcefully"]

SendStreamT = TypeVar("SendStreamT", bound=SendStream)
ReceiveStreamT = TypeVar("ReceiveStreamT", bound=ReceiveStream)


async def aclose_forcefully(resource: AsyncResource) -> None:
    """Close ``resource`` without waiting for anything graceful: its
    ``aclose()`` runs inside an already-cancelled scope, so a graceful close
    (a TLS goodbye, a flush) is cut short while the resources are still
    released.  Use it when the resource may be broken, e.g. in an error path.
    """
    with CancelScope() as scope:
        scope.cancel()
        await resource.aclose()


@final
class StapledStream(HalfCloseableStream, Generic[SendStreamT, ReceiveStreamT]):
    """A bidirectional stream made of one send stream and one receive stream.

    ``send_all`` and ``wait_send_all_might_not_block`` go to ``send_stream``,
    ``receive_some`` to ``receive_stream``.  ``send_eof`` calls the send
    stream's ``send_eof`` if it has one when called, and otherwise closes it.  ``aclose``
    closes both.
    """

    def __init__(self, send_stream: SendStreamT, receive_stream: ReceiveStreamT) -> None:
        self.send_stream = send_stream
        self.receive_stream = receive_stream

    def __repr__(self) -> str:
        return f"StapledStream(send_stream={self.send_stream!r}, receive_stream={self.receive_stream!r})"

    async def send_all(self, data: bytes | bytearray | memoryview | Buffer) -> None:
        return await self.send_stream.send_all(data)  # type: ignore[arg-type]

    async def wait_send_all_might_not_block(self) -> None:
        return await self.send_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        stream = self.send_stream
        # Asked at each call, by attribute (as trio): a stream that is not a
        # HalfCloseableStream may still have one, set on it later even.
        send_eof = getattr(stream, "send_eof", None)
        if send_eof is not None:
            await send_eof()
        else:
            await self.send_stream.aclose()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.receive_stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        try:
            await self.send_stream.aclose()
        finally:
            await self.receive_stream.aclose()


class OneUser:
    """``with guard:`` raises :exc:`BusyResourceError` if another task is
    already inside.  Not a lock: the second task fails instead of waiting,
    which is how streams report concurrent misuse."""

    __slots__ = ("_busy", "_message")

    def __init__(self, message: str) -> None:
        self._busy = False
        self._message = message

    def __enter__(self) -> None:
        if self._busy:
            raise BusyResourceError(self._message)
        self._busy = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._busy = False
