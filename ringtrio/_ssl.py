"""TLS over any ringtrio stream: :class:`SSLStream`, :class:`SSLListener`
and the TCP conveniences built on them.

All cryptography is the standard library's: an :class:`ssl.SSLObject`
reads ciphertext from one :class:`ssl.MemoryBIO` and writes ciphertext to
another, and this module only shuttles bytes between those BIOs and the
transport stream.  The behaviour (errors, closing, ``https_compatible``)
follows ``trio.SSLStream``.

How the shuttling works
-----------------------

Every public operation is a call on the SSLObject (``do_handshake``,
``read``, ``write``, ``unwrap``) driven by :meth:`SSLStream._drive` until it
stops asking for more input:

1. call the SSLObject method;
2. whatever ciphertext it produced is sent on the transport, under a
   :class:`StrictFIFOLock` so that records from concurrent senders (a
   ``send_all`` and a ``receive_some`` answering a renegotiation, say) reach
   the wire in the order OpenSSL produced them;
3. if it raised ``SSLWantReadError``, receive ciphertext from the
   transport into the incoming BIO and go round again.

Receiving is serialised by a lock and a counter: a task that queued for
the receive lock while another task was already receiving may find that
the other task's bytes are all it needs, so it only reads from the transport
if nobody did while it waited.  Without this, a ``send_all`` that needs a
handshake message could sit in ``transport.receive_some`` for data that the
concurrent ``receive_some`` already delivered.
"""

from __future__ import annotations

import operator
import ssl as _stdlib_ssl
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

from ._abc import Listener, Stream
from ._final import final
from ._core import (
    TASK_STATUS_IGNORED,
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    WouldBlock,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
)
from ._highlevel_generic import OneUser as _OneUser, aclose_forcefully
from ._socket import encode_hostname
from ._sync import Event, Lock, StrictFIFOLock

__all__ = [
    "NeedHandshakeError",
    "SSLListener",
    "SSLStream",
    "open_ssl_over_tcp_listeners",
    "open_ssl_over_tcp_stream",
    "serve_ssl_over_tcp",
]

T = TypeVar("T")
T_Stream = TypeVar("T_Stream", bound=Stream)

# First guess for how much to ask of the transport and to decrypt at once
# when the caller gives no max_bytes; grows to the largest chunk seen.
_INITIAL_RECEIVE_SIZE = 16384

# open_tcp_stream's default; repeated so open_ssl_over_tcp_stream's
# signature does not import the TCP layer.
_DEFAULT_HAPPY_EYEBALLS_DELAY = 0.250


class NeedHandshakeError(Exception):
    """An :class:`SSLStream` attribute that only means something once the
    handshake is done (the peer's certificate, the negotiated protocol...)
    was read before the handshake completed.  Call
    :meth:`SSLStream.do_handshake` first."""


class _State(Enum):
    OK = "ok"
    BROKEN = "broken"
    CLOSED = "closed"


def _is_truncation(exc: BaseException | None) -> bool:
    """Did the TLS layer fail because the transport ended without a
    close_notify?  (The error class depends on the OpenSSL version.)"""
    if isinstance(exc, _stdlib_ssl.SSLEOFError):
        return True
    return "UNEXPECTED_EOF_WHILE_READING" in str(getattr(exc, "strerror", "") or "")


class _RunOnce:
    """Run an async function once, however many tasks ask for it; the
    others wait for that single run.  If the run fails, the waiting tasks
    get :exc:`BrokenResourceError` instead of waiting forever."""

    __slots__ = ("_afn", "_finished", "done", "started")

    def __init__(self, afn: Callable[[], Awaitable[object]]) -> None:
        self._afn = afn
        self._finished = Event()
        self.started = False
        self.done = False  # finished successfully

    async def ensure(self, *, checkpoint: bool) -> None:
        if not self.started:
            self.started = True
            try:
                await self._afn()
                self.done = True
            finally:
                self._finished.set()
        elif self.done and not checkpoint:
            return
        else:
            await self._finished.wait()
            if not self.done:
                raise BrokenResourceError("the TLS handshake failed in another task")


@final
class SSLStream(Stream, Generic[T_Stream]):
    """Encrypted communication over any :class:`~ringtrio.abc.Stream`.

    Plaintext given to :meth:`send_all` is encrypted and sent on
    ``transport_stream``; :meth:`receive_some` decrypts what arrives on it.
    The TLS engine is the standard library's :class:`ssl.SSLObject`.

    Args:
      transport_stream: the stream carrying the ciphertext.
      ssl_context: the :class:`ssl.SSLContext` (for a client, usually
          :func:`ssl.create_default_context`).
      server_hostname: the server's name, for SNI and certificate checking;
          required on a client whose context has ``check_hostname`` set.
      server_side: True for the server end of the connection.
      https_compatible: False (the default) follows the TLS standard: a
          ``close_notify`` is sent on :meth:`aclose`, and a transport that
          ends without one is reported as :exc:`BrokenResourceError` (it may
          be a truncation attack).  True behaves like HTTPS implementations
          in the wild: no ``close_notify`` is sent, and a missing one reads
          as an ordinary end of stream.

    Attributes:
      transport_stream: the stream passed in (None after :meth:`unwrap`).

    The :class:`ssl.SSLObject`'s informational attributes are forwarded:
    ``context``, ``server_side``, ``server_hostname``, ``session``,
    ``session_reused``, ``getpeercert``, ``selected_npn_protocol``,
    ``cipher``, ``shared_ciphers``, ``compression``, ``pending``,
    ``get_channel_binding``, ``selected_alpn_protocol`` and ``version``.
    Those that only mean something after the handshake raise
    :exc:`NeedHandshakeError` before it.

    Errors: a TLS-level failure (bad certificate, corrupt record, ...) or a
    failing transport makes the stream *broken*: that operation and every
    later one raise :exc:`BrokenResourceError` (the ``ssl`` exception is its
    ``__cause__``).  Using the stream after :meth:`aclose` or :meth:`unwrap`
    raises :exc:`ClosedResourceError`; two tasks sending (or receiving) at
    once raise :exc:`BusyResourceError`.  A cancelled ``send_all``, or a
    handshake cancelled half way, may leave the stream broken: TLS records
    cannot be taken back.
    """

    _forwarded: ClassVar[frozenset[str]] = frozenset(
        {
            "context",
            "server_side",
            "server_hostname",
            "session",
            "session_reused",
            "getpeercert",
            "selected_npn_protocol",
            "cipher",
            "shared_ciphers",
            "compression",
            "pending",
            "get_channel_binding",
            "selected_alpn_protocol",
            "version",
        }
    )
    _needs_handshake: ClassVar[frozenset[str]] = frozenset(
        {
            "session_reused",
            "getpeercert",
            "selected_npn_protocol",
            "cipher",
            "shared_ciphers",
            "compression",
            "get_channel_binding",
            "selected_alpn_protocol",
            "version",
        }
    )

    def __init__(
        self,
        transport_stream: T_Stream,
        ssl_context: _stdlib_ssl.SSLContext,
        *,
        server_hostname: str | bytes | None = None,
        server_side: bool = False,
        https_compatible: bool = False,
    ) -> None:
        self.transport_stream: T_Stream = transport_stream
        self._state = _State.OK
        self._https_compatible = https_compatible
        self._incoming = _stdlib_ssl.MemoryBIO()
        self._outgoing = _stdlib_ssl.MemoryBIO()
        if isinstance(server_hostname, str):
            # IDNA 2008, as getaddrinfo does (the stdlib would use IDNA 2003,
            # which names another host for some names): trio's rule.
            server_hostname = encode_hostname(server_hostname)
        self._ssl_object = ssl_context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        # Ciphertext held back until the next transport send: see _drive.
        self._held_back = b""
        self._handshake = _RunOnce(self._handshake_once)
        self._transport_send_lock = StrictFIFOLock()
        self._transport_receive_lock = Lock()
        self._transport_receives = 0
        self._send_guard = _OneUser("another task is currently sending data on this SSLStream")
        self._receive_guard = _OneUser(
            "another task is currently receiving data on this SSLStream"
        )
        self._receive_size = _INITIAL_RECEIVE_SIZE

    # ------------------------------------------------ attribute forwarding

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found normally.
        if name in SSLStream._forwarded:
            if name in SSLStream._needs_handshake and not self._handshake.done:
                raise NeedHandshakeError(
                    f"SSLStream.{name} is only available after the handshake; "
                    "call (and await) do_handshake() first"
                )
            return getattr(self._ssl_object, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: object) -> None:
        if name in SSLStream._forwarded:
            setattr(self._ssl_object, name, value)
        else:
            super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *SSLStream._forwarded]

    def __repr__(self) -> str:
        side = "server" if self._ssl_object.server_side else "client"
        return f"<ringtrio.SSLStream {side} {self._state.value} over {self.transport_stream!r}>"

    # ------------------------------------------------------------ engine

    def _check_usable(self) -> None:
        if self._state is _State.BROKEN:
            raise BrokenResourceError(
                "this SSLStream is broken (an earlier TLS or transport error); close it"
            )
        if self._state is _State.CLOSED:
            raise ClosedResourceError("this SSLStream was already closed")

    def _break(self, exc: BaseException) -> NoReturn:
        self._state = _State.BROKEN
        raise BrokenResourceError(f"TLS error: {exc}") from exc

    async def _drive(
        self,
        method: Callable[..., T],
        *args: Any,
        ignore_want_read: bool = False,
        handshake: bool = False,
    ) -> T | None:
        """Call ``method(*args)`` on the SSLObject until it completes,
        moving ciphertext to and from the transport as it asks.  A
        checkpoint, whether or not it had to wait."""
        await checkpoint_if_cancelled()
        yielded = False
        while True:
            want_read = False
            result: T | None = None
            try:
                result = method(*args)
            except _stdlib_ssl.SSLWantReadError:
                want_read = not ignore_want_read
            except (_stdlib_ssl.SSLError, _stdlib_ssl.CertificateError) as exc:
                self._break(exc)
            finished = not want_read

            to_send = self._outgoing.read()
            if (
                handshake
                and finished
                and to_send
                and self._ssl_object.server_side
                and self._ssl_object.version() == "TLSv1.3"
            ):
                # A TLS 1.3 server finishes its handshake by emitting session
                # tickets the client is not waiting for.  Sending them now
                # can deadlock a transport without buffering (the client is
                # done and not reading), so they ride along with the next
                # thing we send instead.
                self._held_back += to_send
                to_send = b""

            if to_send:
                async with self._transport_send_lock:
                    yielded = True
                    if self._held_back:
                        to_send = self._held_back + to_send
                        self._held_back = b""
                    try:
                        await self.transport_stream.send_all(to_send)
                    except BaseException:
                        # Part of a record may be on the wire: the TLS
                        # session cannot continue.
                        self._state = _State.BROKEN
                        raise
            elif want_read:
                seen = self._transport_receives
                lock = self._transport_receive_lock
                try:
                    # A free lock is taken without a schedule point of its
                    # own: this call already checked for cancellation, and
                    # the transport receive below is a checkpoint.  A yield
                    # here would be one more chance for a deadline shorter
                    # than a scheduler pass to expire before that receive
                    # checks, cancelling a read whose ciphertext is already
                    # waiting (issue 11).
                    lock.acquire_nowait()
                except WouldBlock:
                    await lock.acquire()
                try:
                    yielded = True
                    if seen == self._transport_receives:
                        # Nobody received while we queued: our turn.
                        data = await self.transport_stream.receive_some()
                        if data:
                            self._receive_size = max(self._receive_size, len(data))
                            self._incoming.write(data)
                        else:
                            self._incoming.write_eof()
                        self._transport_receives += 1
                finally:
                    lock.release()
            if finished:
                break
        if not yielded:
            await cancel_shielded_checkpoint()
        return result

    async def _handshake_once(self) -> None:
        try:
            await self._drive(self._ssl_object.do_handshake, handshake=True)
        except BaseException:
            self._state = _State.BROKEN
            raise

    # --------------------------------------------------------- public API

    async def do_handshake(self) -> None:
        """Perform the TLS handshake now, if it has not happened yet.

        Optional: the first :meth:`send_all` or :meth:`receive_some` does it
        anyway.  Call it to inspect the peer (``getpeercert()``,
        ``selected_alpn_protocol()`` ...) before exchanging data.  If another
        task is already handshaking, waits for it.  Always a checkpoint.
        Cancelling it may leave the stream broken.
        """
        self._check_usable()
        await self._handshake.ensure(checkpoint=True)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive and decrypt some data: between 1 and ``max_bytes`` bytes,
        or ``b""`` once the peer has closed the TLS session (see
        ``https_compatible`` for a transport that ends without saying so)."""
        with self._receive_guard:
            self._check_usable()
            try:
                await self._handshake.ensure(checkpoint=False)
            except BrokenResourceError as exc:
                cause = exc.__cause__
                if self._https_compatible and (
                    isinstance(cause, _stdlib_ssl.SSLSyscallError) or _is_truncation(cause)
                ):
                    await checkpoint()
                    return b""
                raise
            if max_bytes is None:
                max_bytes = max(self._receive_size, self._incoming.pending)
            else:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
            try:
                data = await self._drive(self._ssl_object.read, max_bytes)
            except BrokenResourceError as exc:
                if self._https_compatible and _is_truncation(exc.__cause__):
                    await checkpoint()
                    return b""
                raise
            assert data is not None
            return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it on the transport.  Cancelling it may
        leave the stream broken."""
        with self._send_guard:
            self._check_usable()
            await self._handshake.ensure(checkpoint=False)
            if not data:
                await checkpoint()
                return
            await self._drive(self._ssl_object.write, data)

    async def unwrap(self) -> tuple[T_Stream, bytes | bytearray]:
        """End the TLS session cleanly (exchange ``close_notify`` with the
        peer) and hand back the transport for plaintext use.

        Returns ``(transport_stream, trailing_bytes)``: ``trailing_bytes``
        arrived on the transport after the peer's ``close_notify``; treat
        them as if ``transport_stream.receive_some()`` had returned them.
        The SSLStream is closed afterwards.
        """
        with self._receive_guard, self._send_guard:
            self._check_usable()
            await self._handshake.ensure(checkpoint=False)
            await self._drive(self._ssl_object.unwrap)
            transport = self.transport_stream
            self._state = _State.CLOSED
            self.transport_stream = None  # type: ignore[assignment]
            return transport, self._incoming.read()

    async def aclose(self) -> None:
        """Close the stream and its transport.

        With ``https_compatible=False`` a ``close_notify`` is sent first (if
        the handshake is done -- otherwise it is completed first), without
        waiting for the peer's reply; a peer that already went away is not
        an error.  With ``https_compatible=True``, or on a broken stream,
        the transport is simply closed.  If cancelled, the transport is
        still closed (forcefully).
        """
        if self._state is _State.CLOSED:
            await checkpoint()
            return
        if self._state is _State.BROKEN or self._https_compatible:
            self._state = _State.CLOSED
            await self.transport_stream.aclose()
            return
        try:
            await self._handshake.ensure(checkpoint=False)
            # One SSL_shutdown call: it queues our close_notify; the reply
            # would need a read, which we skip (ignore_want_read) -- the peer
            # may never read again, and TLS allows closing right after
            # sending close_notify.  If the peer already closed, sending
            # fails with BrokenResourceError, which is fine; if a task is
            # blocked in send_all/receive_some, the clean shutdown is
            # abandoned (BusyResourceError) and we just close.
            try:
                await self._drive(self._ssl_object.unwrap, ignore_want_read=True)
            except (BrokenResourceError, BusyResourceError):
                pass
        except BaseException:
            await aclose_forcefully(self.transport_stream)
            raise
        else:
            await self.transport_stream.aclose()
        finally:
            self._state = _State.CLOSED

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport says a send might not block.  A hint."""
        with self._send_guard:
            self._check_usable()
            async with self._transport_send_lock:
                await self.transport_stream.wait_send_all_might_not_block()


@final
class SSLListener(Listener[SSLStream[T_Stream]]):
    """A :class:`~ringtrio.abc.Listener` whose connections are
    :class:`SSLStream` s (server side) over ``transport_listener``'s.

    The handshake is not done by :meth:`accept`; it happens on first use
    (or an explicit :meth:`SSLStream.do_handshake`), in the handler's task,
    so one slow client cannot stall the accept loop.

    Args:
      transport_listener: the listener producing the transport streams.
      ssl_context: the server's :class:`ssl.SSLContext`.
      https_compatible: passed to every :class:`SSLStream`.

    Attributes:
      transport_listener: the listener passed in.
    """

    def __init__(
        self,
        transport_listener: Listener[T_Stream],
        ssl_context: _stdlib_ssl.SSLContext,
        *,
        https_compatible: bool = False,
    ) -> None:
        self.transport_listener = transport_listener
        self._ssl_context = ssl_context
        self._https_compatible = https_compatible

    def __repr__(self) -> str:
        return f"<ringtrio.SSLListener over {self.transport_listener!r}>"

    async def accept(self) -> SSLStream[T_Stream]:
        """Accept a transport connection and wrap it in an :class:`SSLStream`."""
        transport = await self.transport_listener.accept()
        return SSLStream(
            transport,
            self._ssl_context,
            server_side=True,
            https_compatible=self._https_compatible,
        )

    async def aclose(self) -> None:
        """Close the transport listener."""
        await self.transport_listener.aclose()


# ------------------------------------------------------------ TCP helpers


async def open_ssl_over_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    https_compatible: bool = False,
    ssl_context: _stdlib_ssl.SSLContext | None = None,
    happy_eyeballs_delay: float | None = _DEFAULT_HAPPY_EYEBALLS_DELAY,
) -> SSLStream[Any]:
    """Connect to ``host``:``port`` with :func:`ringtrio.open_tcp_stream`
    and wrap the connection in a client :class:`SSLStream` (``host`` is the
    ``server_hostname``).  The handshake happens on first use.

    ``ssl_context`` defaults to :func:`ssl.create_default_context` (with
    truncation detection kept on: ``OP_IGNORE_UNEXPECTED_EOF`` cleared).
    """
    from ._highlevel_open_tcp_stream import open_tcp_stream

    tcp_stream = await open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
    try:
        if ssl_context is None:
            ssl_context = _stdlib_ssl.create_default_context()
            ignore_eof = getattr(_stdlib_ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
            if ignore_eof:
                ssl_context.options &= ~ignore_eof
        return SSLStream(
            tcp_stream,
            ssl_context,
            server_hostname=host,
            https_compatible=https_compatible,
        )
    except BaseException:
        await aclose_forcefully(tcp_stream)
        raise


async def open_ssl_over_tcp_listeners(
    port: int,
    ssl_context: _stdlib_ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
) -> list[SSLListener[Any]]:
    """:func:`ringtrio.open_tcp_listeners`, each listener wrapped in an
    :class:`SSLListener`."""
    from ._highlevel_open_tcp_listeners import open_tcp_listeners

    tcp_listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    return [
        SSLListener(listener, ssl_context, https_compatible=https_compatible)
        for listener in tcp_listeners
    ]


async def serve_ssl_over_tcp(
    handler: Callable[[SSLStream[Any]], Awaitable[object]],
    port: int,
    ssl_context: _stdlib_ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
    handler_nursery: Any = None,
    task_status: Any = TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve TLS over TCP: :func:`open_ssl_over_tcp_listeners` plus
    :func:`ringtrio.serve_listeners`.  ``handler(ssl_stream)`` runs for each
    connection (the handshake happens when it first uses the stream).
    ``await nursery.start(serve_ssl_over_tcp, ...)`` returns the
    :class:`SSLListener` s (read a port 0 choice back with
    ``listener.transport_listener.socket.getsockname()``).
    """
    from ._highlevel_serve_listeners import serve_listeners

    listeners = await open_ssl_over_tcp_listeners(
        port,
        ssl_context,
        host=host,
        https_compatible=https_compatible,
        backlog=backlog,
    )
    await serve_listeners(
        handler,
        listeners,
        handler_nursery=handler_nursery,
        task_status=task_status,
    )
    raise AssertionError("unreachable: serve_listeners never returns")  # pragma: no cover
