"""Streams over sockets: :class:`SocketStream` and :class:`SocketListener`."""

from __future__ import annotations

import errno
import operator
import os
import socket as _stdlib_socket
import sys
import threading
import types
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._abc import HalfCloseableStream, Listener
from ._final import final
from ._core import BrokenResourceError, BusyResourceError, ClosedResourceError
from ._core import _ring
from ._core._buffers import runtime_recv_ring
from ._core import (
    Abort,
    OwnedRingOp,
    RingOp,
    cancel_shielded_checkpoint,
    checkpoint,
    reschedule,
    submit_and_wait,
)
from ._core._internal_api import (
    _CHECKPOINT,
    _LINK_EXPIRED,
    _Park,
    _accel,
    _cancel_pending,
    _current_runner,
    _link_expired,
    _local,
    _outside_run,
)
from ._buffer_group import Buffer as _Lease
from ._socket import _MSG_NOSIGNAL, SocketType

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from typing_extensions import Buffer

    from ._buffer_group import BufferGroup, BufferReceiver

__all__ = ["SocketListener", "SocketStream"]

# receive_some() without max_bytes.  Also the runtime buffer ring's buffer
# size, so a default receive can be served by one buffer.
DEFAULT_RECEIVE_SIZE = 65536

# Errnos that mean "this socket was closed (by us)", not "the peer broke it".
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})

# accept() errors that concern only the connection being accepted (it went
# away or was refused by a filter): skip it and accept the next one.  The
# same list as trio, from the Linux accept(2) man page.
_IGNORABLE_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)

# With TCP_NOTSENT_LOWAT the kernel reports "writable" (and lets a send go
# on) only while little unsent data is queued, so wait_send_all_might_not_block
# means something and a slow peer does not make us buffer megabytes.  Same
# value as trio.
_NOTSENT_LOWAT = 2**14


# The largest max_bytes: a C ssize_t, as for the stdlib's recv() (trio
# raises OverflowError beyond it too).  ringtrio never allocates max_bytes
# (it hands out what arrived), so any size up to this one is honoured.
_MAX_RECEIVE = sys.maxsize


@types.coroutine
def _check_max_bytes(max_bytes: object) -> Generator[Any, Any, int]:
    """receive_some's max_bytes, other than None or a plain int in range:
    trio's rules (any integer, bool included -- ``True`` is 1 -- must be
    >= 1; a ValueError or OverflowError comes after a checkpoint)."""
    try:
        value = operator.index(max_bytes)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"max_bytes must be an int or None, not {type(max_bytes).__name__}"
        ) from None
    if value < 1:
        yield from checkpoint()
        raise ValueError(f"max_bytes must be >= 1, got {value}")
    if value > _MAX_RECEIVE:
        yield from checkpoint()
        raise OverflowError(f"max_bytes must fit a C ssize_t (at most {_MAX_RECEIVE}), got {value}")
    return value


def _stream_error(exc: OSError, what: str) -> Exception:
    """What a stream raises for an OSError from its socket: the stream was
    closed (by us), or the connection broke."""
    error: Exception
    if exc.errno in _CLOSED_ERRNOS:
        error = ClosedResourceError(f"can't {what}: this stream was already closed")
        error.__suppress_context__ = True  # as `raise ... from None`
    else:
        error = BrokenResourceError(f"socket connection broken during {what}: {exc}")
        error.__cause__ = exc  # as `raise ... from exc`
    return error


# receive_some's multishot receive is paused (cancelled, re-armed when the
# reader has caught up) once this many bytes wait undelivered.
_RX_PAUSE_BYTES = 256 * 1024
_RECV_MULTISHOT = 1 << 1  # IORING_RECV_MULTISHOT (sqe->ioprio of a RECV)
_F_MORE = _ring.IORING_CQE_F_MORE
_F_BUFFER = _ring.IORING_CQE_F_BUFFER
_BUFFER_SHIFT = _ring.IORING_CQE_BUFFER_SHIFT
_ENOBUFS = -errno.ENOBUFS


class _StreamReceiver(OwnedRingOp):
    """The multishot receive behind :meth:`SocketStream.receive_some`.

    Armed by the first ``receive_some`` and kept armed: each completion
    takes a buffer of the run's receive group, whose bytes are copied out
    and queued here in the CQE dispatch (the buffer goes straight back), and
    a waiting reader is woken.  So a receive costs no submission, an idle
    connection pins no buffer, and a reader that gives up (cancellation)
    loses nothing: what arrives meanwhile waits in the queue.  The request
    ends at EOF, on an error, when the socket is closed or the stream
    dropped, and is paused (cancelled, then re-armed by the next read) when
    the reader falls ``_RX_PAUSE_BYTES`` behind, or the group ran out of
    buffers (-ENOBUFS).  Its final CQE is what ends it, whatever its code.
    """

    __slots__ = ("sock", "bufring", "chunks", "queued", "eof", "error", "waiter", "park")

    def __init__(self, sock: SocketType, bufring: Any) -> None:
        super().__init__(
            _current_runner(),
            _ring.IORING_OP_RECV,
            ioprio=_RECV_MULTISHOT,
            sqe_flags=_ring.IOSQE_BUFFER_SELECT,
            buf_index=bufring.bgid,
        )
        self.sock = sock
        self.bufring = bufring
        self.chunks: list[bytes] = []
        self.queued = 0  # bytes in chunks
        self.eof = False
        self.error = 0
        self.waiter: Any = None  # the reader parked in receive_some
        self.park = _Park(self.abort_wait)  # what a waiting reader yields

    def arm(self, fd: int) -> None:
        self.fd = fd
        self._arm()
        self.sock._track(self)

    def _on_cqe(self, res: int, flags: int) -> None:
        if flags & _F_BUFFER:
            data = self.bufring.take(flags >> _BUFFER_SHIFT, res if res > 0 else 0)
            if data:
                self.chunks.append(data)
                self.queued += len(data)
                if self.queued >= _RX_PAUSE_BYTES:
                    self.request_cancel()
        if not flags & _F_MORE:
            # The final CQE: the request is over, whatever its code (a
            # cancelled multishot may end with 0, -ECANCELED, -ENOENT or
            # -ENOBUFS depending on the kernel).
            self.armed = False
            self.sock._untrack(self)
            if res == 0 and not self.cancel_requested:
                # (With or without a buffer: some kernels select one before
                # they find the end of the stream.)
                self.eof = True
            elif res < 0 and res not in (_ENOBUFS, -errno.ECANCELED) and not self.cancel_requested:
                self.error = res
        waiter = self.waiter
        if waiter is not None and (self.chunks or not self.armed):
            self.waiter = None
            reschedule(waiter)
        if not self.armed:
            self._ended()

    def abort_wait(self, raise_cancel: Any) -> Abort:
        # The reader gives up; the request stays armed and what it receives
        # waits in the queue for the next read.
        self.waiter = None
        return Abort.SUCCEEDED

    def take(self, max_bytes: int) -> bytes:
        chunks = self.chunks
        data = chunks[0]
        if len(data) <= max_bytes:
            del chunks[0]
        else:
            chunks[0] = data[max_bytes:]
            data = data[:max_bytes]
        self.queued -= len(data)
        return data


# The dispatch completes a chunk that arrives while more are to come in C
# (_speedups.complete_stream_rx), doing what _on_cqe does.
_accel.register_receiver("setup_receive", _StreamReceiver, _RX_PAUSE_BYTES)


@contextmanager
def _translate_errors(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _stream_error(exc, what)


@final
class SocketStream(HalfCloseableStream):
    """A :class:`~ringtrio.abc.HalfCloseableStream` over a connected
    ``SOCK_STREAM`` socket (TCP or Unix).

    ``TCP_NODELAY`` is turned on (small writes are sent at once: a
    ``send_all`` is a message, not something to coalesce).  On a socket
    ringtrio created, ``receive_some`` is served by one multishot receive
    kept armed on the stream, copying out of the run's buffer group:
    waiting pins no buffer, and bytes that arrive while no reader waits (a
    cancelled one, say) are queued for the next call.  The stream then owns
    the socket's receive side.  On an adopted stdlib socket
    (``from_stdlib_socket``) it is one receive per call, so that the
    owner's ``close()`` closes the connection (see docs/design.md,
    "Sockets").

    Attributes:
      socket: the underlying :class:`ringtrio.socket.SocketType`.
    """

    __slots__ = ("socket", "_sending", "_receiving", "_buffer_receiver", "_rx")

    def __init__(self, socket: SocketType) -> None:
        if not isinstance(socket, SocketType):
            raise TypeError(
                f"SocketStream needs a ringtrio socket (ringtrio.socket.socket()), not "
                f"{type(socket).__name__}; wrap stdlib sockets with "
                "ringtrio.socket.from_stdlib_socket()"
            )
        if socket.type != _stdlib_socket.SOCK_STREAM:
            raise ValueError("SocketStream requires a SOCK_STREAM socket")  # trio's words
        self.socket = socket
        self._sending = False
        self._receiving = False
        self._buffer_receiver: Any = None  # receive_buffers state (issue 5)
        self._rx: _StreamReceiver | None = None  # receive_some's multishot
        # TCP options, tried whatever the family (a Unix socket refuses them
        # with EOPNOTSUPP): as trio, which also lets a custom socket
        # factory's fake socket, whose family is unknown, take them.
        try:
            socket.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, True)
        except OSError:
            pass
        try:
            socket.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NOTSENT_LOWAT, _NOTSENT_LOWAT)
        except (OSError, AttributeError):
            pass

    def __repr__(self) -> str:
        return f"<ringtrio.SocketStream {self.socket!r}>"

    @types.coroutine
    def send_all(self, data: bytes | bytearray | memoryview | Buffer | _Lease) -> Generator[Any, Any, None]:  # type: ignore[override]
        # SENDs until everything is sent; a short send (the socket buffer
        # filled up) goes round again.  Not MSG_WAITALL (which would make one
        # op send everything): an ASYNC_CANCEL that races with the kernel's
        # internal retry of a send fails with -ENOENT and the op re-arms, so
        # a WAITALL send to a peer that does not read would outlive its
        # cancellation.  A plain send completes at its next partial transfer.
        # (This is the hot path of every server, so: the loop is here
        # rather than in the socket; errors are translated with try/except
        # rather than _translate_errors; and it is a generator-based
        # coroutine that does submit_and_wait's steps itself -- the
        # cancellation check, Runner._submit_park, the park, the result --
        # so that a resume runs one frame, not three.)
        if self._sending:
            raise BusyResourceError("another task is already sending on this stream")
        sock = self.socket
        if sock._did_shutdown_SHUT_WR:
            raise ClosedResourceError("can't send data after sending EOF (send_eof)")
        self._sending = True
        op = None
        lease: _Lease | None = None
        try:
            payload: bytes | memoryview | int
            if type(data) is bytes:
                payload = data
                total = len(data)
            elif type(data) is _Lease:
                # A lease (receive_buffers): sent from the group's memory
                # as it is, with no view.  The buffer is held for the send
                # -- one reference, as a view holds it -- so that a
                # release() meanwhile (by another task) cannot give it back
                # to the kernel while the SEND reads it; let go in the
                # finally below, after the op's final CQE.  (`lease` is set
                # once the hold is taken: a released lease raises with
                # nothing held, and nothing is let go for it.)
                hold = _accel._sp_lease_hold
                held = hold(data) if hold is not None else None
                if held is not None:
                    payload = held  # (what the lines below do, in C)
                else:
                    if data._released:
                        data._check()  # raises
                    group = data._group
                    group._refs[data._bid] += 1
                    group._total_refs += 1
                    payload = group._ring.base + data._start
                lease = data
                total = lease._len
            else:
                # Not released explicitly (no `with`): an error traceback
                # may hold it.  (The op pins the memory with a view of its
                # own, not with an export of this one.)
                payload = memoryview(data)
                if payload.ndim != 1 or payload.format not in ("B", "b", "c"):
                    payload = payload.cast("B")
                total = payload.nbytes
            if not total:
                if sock.fileno() < 0:
                    raise ClosedResourceError("can't send data: this stream was already closed")
                yield from checkpoint()
                return
            task = _local.task
            if task is None:
                _outside_run()
            runner = task._runner
            op = sock._send_op
            park = sock._send_park
            if op is None or not op.done:
                op = RingOp(_ring.IORING_OP_SEND, -1, 0, 0, 0, _MSG_NOSIGNAL)
                park = None
                if sock._send_op is None:
                    # The socket's send op, reused by every send, and what
                    # a sender waiting for it yields, made once (kept on
                    # the socket, not the op: no reference cycle).
                    sock._send_op = op
                    sock._send_park = park = _Park(op._abort)  # type: ignore[attr-defined]
            sock._track(op)
            sent = 0
            while True:
                fd = sock._sock.fileno()
                if fd < 0:
                    raise ClosedResourceError("can't send data: this stream was already closed")
                op.fd = fd
                # The payload goes to the SQE as it is: a bytes object, the
                # address of a lease's bytes in its group (held above), or a
                # memoryview of the caller's buffer, which the op replaces
                # with a view of its own and holds until its final CQE (the
                # core's pin_view).
                if isinstance(payload, int):
                    op.addr = payload + sent
                    op.keepalive = lease
                else:
                    op.addr = op.keepalive = memoryview(payload)[sent:] if sent else payload
                op.length = total - sent
                # submit_and_wait's steps (see there).
                if task._cancel_scope._eff or (runner.ki_pending and task is runner.main_task):
                    yield _CHECKPOINT
                sp = _accel._sp_submit_park
                parked = sp(runner, op, task, park) if sp is not None else None
                yield parked or runner._submit_park(op, task, park)
                result = op.result
                op.result = None
                if result is _LINK_EXPIRED:
                    _link_expired(op, task)
                    continue
                res = result[0]
                if res < 0:
                    raise sock._error(res, "send")
                sent += res
                if sent >= total:
                    return
        except OSError as exc:
            raise _stream_error(exc, "send data")
        finally:
            self._sending = False
            if op is not None:
                sock._op_finished(op)
            if lease is not None:
                unref = _accel._sp_lease_unref
                if unref is None or not unref(lease):
                    lease._group._unref(lease._bid)

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            if self.socket.fileno() < 0:
                raise ClosedResourceError("this stream was already closed")
            with _translate_errors("wait for writability"):
                await self.socket.wait_writable()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._sending:
            raise BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await checkpoint()
            if self.socket.did_shutdown_SHUT_WR:
                return
            with _translate_errors("send EOF"):
                self.socket.shutdown(_stdlib_socket.SHUT_WR)
        finally:
            self._sending = False

    @types.coroutine
    def receive_some(self, max_bytes: int | None = None) -> Generator[Any, Any, bytes]:  # type: ignore[override]
        # A generator-based coroutine that yields the scheduler's traps
        # itself: one frame fewer on every resume of every reader.
        if self._receiving:
            raise BusyResourceError("another task is already receiving on this stream")
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        elif type(max_bytes) is not int or not 0 < max_bytes <= _MAX_RECEIVE:
            max_bytes = yield from _check_max_bytes(max_bytes)
        self._receiving = True
        try:
            rx = self._rx
            if rx is None:
                old = self._buffer_receiver
                if old is not None and old.armed:
                    # A receive_buffers loop left its multishot armed: one
                    # multishot per socket, so it is stopped first.
                    yield from old.stop().__await__()
                rx = self._new_receiver()
                if rx is None:
                    # One RECV per call: an adopted stdlib socket (nothing
                    # may stay in flight between calls, docs/design.md,
                    # "Sockets"), or no receive group could be registered.
                    return (yield from self.socket.recv(max_bytes).__await__())
            task = _local.task  # (current_task(), inlined: the hot path)
            if task is None:
                _outside_run()
            parked = False
            closed: ClosedResourceError | None = None
            while not (rx.chunks or rx.eof or rx.error):
                if not rx.armed:
                    closed = self._receiver_closed(rx)
                    if closed is not None:
                        break
                    rx.arm(self.socket.fileno())
                # (wait_task_rescheduled, inlined: the park is the
                # checkpoint; a cancel reaches it through rx.abort_wait.)
                rx.waiter = task
                yield rx.park
                parked = True
            if not parked and _cancel_pending(task):
                # Nothing taken yet: a cancellation is raised here.
                yield from checkpoint()
            error: BaseException | None = None
            data = b""
            if rx.chunks:
                data = rx.take(max_bytes)
            elif rx.eof:
                pass
            elif rx.error:
                code, rx.error = -rx.error, 0
                error = _stream_error(OSError(code, os.strerror(code)), "receive")
            else:
                error = closed or ClosedResourceError("can't receive: this stream was already closed")
            if not parked:
                # The result was ready at once.  trio's shape for that: the
                # cancellation check above (without yielding), the result
                # taken synchronously, then a schedule point that cannot
                # raise Cancelled.  A full checkpoint here instead would let
                # a deadline shorter than one scheduler pass cancel every
                # attempt, though the data was there each time (issue 11).
                yield from cancel_shielded_checkpoint()
            if error is not None:
                raise error
            return data
        except OSError as exc:
            raise _stream_error(exc, "receive")
        finally:
            self._receiving = False

    def _receiver_closed(self, rx: _StreamReceiver) -> ClosedResourceError | None:
        """Why ``rx`` cannot be armed (again), if it cannot."""
        if rx.closed_by_user:
            return ClosedResourceError("another task closed this stream")
        if self.socket.fileno() < 0:
            return ClosedResourceError("can't receive: this stream was already closed")
        if rx.bufring.closed:
            return ClosedResourceError("can't receive: the run is shutting down")
        return None

    def _new_receiver(self) -> _StreamReceiver | None:
        """receive_some's multishot receive, kept on the stream, if this
        stream may have one: only on a socket that ringtrio created (a
        multishot stays armed between calls, holding the kernel's reference
        to the socket, so only ringtrio's close() -- which cancels it -- may
        close such a socket).  None means one RECV per call."""
        if not getattr(self.socket, "_owned", False):
            # (A fake socket of a custom socket factory, a SocketType
            # subclass, has no _owned: it gets its own recv() called.)
            return None
        bufring = runtime_recv_ring()
        if bufring is None:
            return None
        self._rx = _StreamReceiver(self.socket, bufring)
        return self._rx

    def __del__(self) -> None:
        # Dropped without aclose(): end the multishot receive, which would
        # otherwise keep the connection open in the kernel until the run ends.
        rx = getattr(self, "_rx", None)
        if rx is not None and rx.armed:
            try:
                if rx.runner._thread == threading.get_ident():
                    rx.request_cancel()
                else:
                    rx.runner._run_sync_soon(rx.request_cancel, (), False)
            except Exception:  # pragma: no cover - run already over
                pass

    # -- receive_buffers (issue 5; the machinery is in _buffer_group.py) ----

    def receive_buffers(self, group: BufferGroup, *, max_pending: int = 16) -> BufferReceiver:
        """``async for buf in stream.receive_buffers(group):`` -- one multishot
        receive into the shared ``group``, yielding a :class:`ringtrio.Buffer`
        lease per completion until EOF (see docs/buffers.md).  At most
        ``max_pending`` undelivered leases are queued before the receive is
        paused."""
        from ._buffer_group import BufferReceiver

        return BufferReceiver(self, group, max_pending)

    # -- end of receive_buffers ---------------------------------------------

    async def aclose(self) -> None:
        self.socket.close()
        rx = self._rx
        if rx is not None and rx.armed and rx.stopper is None:
            # The close cancelled receive_some's multishot receive: its
            # final CQE is awaited here (shielded), so nothing is in flight
            # for this stream once aclose() returns.
            await rx.stop()
        await checkpoint()

    def setsockopt(self, level: int, option: int, value: int | Buffer | None, length: int | None = None) -> None:
        """Set an option on the underlying socket (see :meth:`socket.socket.setsockopt`)."""
        self.socket.setsockopt(level, option, value, length)

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> Any:
        """Read an option of the underlying socket (see :meth:`socket.socket.getsockopt`)."""
        if buffersize == 0:
            return self.socket.getsockopt(level, option)
        return self.socket.getsockopt(level, option, buffersize)


@final
class SocketListener(Listener[SocketStream]):
    """A :class:`~ringtrio.abc.Listener` over a listening ``SOCK_STREAM`` socket.

    :func:`ringtrio.serve_listeners` recognises it and accepts with one
    multishot ``IORING_OP_ACCEPT`` instead of calling :meth:`accept` in a loop.
    """

    __slots__ = ("socket",)

    def __init__(self, socket: SocketType) -> None:
        if not isinstance(socket, SocketType):
            raise TypeError(
                f"SocketListener needs a ringtrio socket, not {type(socket).__name__}"
            )
        if socket.type != _stdlib_socket.SOCK_STREAM:
            raise ValueError("SocketListener requires a SOCK_STREAM socket")  # trio's words
        try:
            listening = socket.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ACCEPTCONN)
        except OSError:
            listening = True  # cannot tell: trust the caller
        if not listening:
            raise ValueError("SocketListener requires a listening socket")  # trio's words
        self.socket = socket

    def __repr__(self) -> str:
        return f"<ringtrio.SocketListener {self.socket!r}>"

    async def accept(self) -> SocketStream:
        """Accept the next connection.  Errors that concern only that
        connection (it was reset while queued ...) are skipped, as in trio;
        EMFILE/ENFILE are raised (``serve_listeners`` backs off on them)."""
        while True:
            try:
                sock, _ = await self.socket.accept()
            except OSError as exc:
                if exc.errno in _CLOSED_ERRNOS:
                    raise ClosedResourceError("this listener was already closed") from None
                if exc.errno not in _IGNORABLE_ACCEPT_ERRNOS:
                    raise
            else:
                return SocketStream(sock)

    async def aclose(self) -> None:
        self.socket.close()
        await checkpoint()

