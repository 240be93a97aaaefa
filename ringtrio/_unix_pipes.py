"""``lowlevel.FdStream``: a pipe, a tty or any other pollable fd as a Stream.

trio's semantics (``trio.lowlevel.FdStream``), on the ring:

* The stream owns the fd.  It puts the open file description in
  non-blocking mode, as trio does (so a stray synchronous call never hangs
  the run), and puts the original mode back when it closes the fd.
* ``receive_some`` has trio's shape for data that is already there:
  ``checkpoint_if_cancelled``, take it with one non-blocking ``read(2)``,
  ``cancel_shielded_checkpoint``.  A reader that finds nothing waits with
  one ``IORING_OP_READ``: the kernel arms its own poll and the bytes come
  back with the completion.  ``send_all`` writes what the pipe takes at
  once and waits for the rest with ``IORING_OP_WRITE``.  Both ops go
  through ``RingOp`` + ``submit_and_wait``, so a cancelled wait loses
  nothing: a READ the kernel completed in the race is returned, and the
  cancellation lands at the next checkpoint.
* ``close()`` wakes tasks blocked on the stream with
  :exc:`ClosedResourceError` (their ops are cancelled by token, not by fd)
  and releases the fd number only once the kernel has let go of every op
  on it: an SQE still waiting for the pass's enter refers to the fd by
  number, and a new file could take the number meanwhile.
"""

from __future__ import annotations

import errno
import os
import select
from typing import TYPE_CHECKING, Any, Final, NoReturn

from ._abc import Stream
from ._final import final
from ._core import (
    BrokenResourceError,
    ClosedResourceError,
    RingOp,
    cancel_ring_op,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    submit_and_wait,
)
from ._core._internal_api import _accel
from ._core._ring import IORING_OP_POLL_ADD, IORING_OP_READ, IORING_OP_WRITE
from ._highlevel_generic import OneUser

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["FdStream"]

# trio's default: the default capacity of a Linux pipe.
DEFAULT_RECEIVE_SIZE: Final = 65536
# A READ that has to wait gets a buffer of at most this size (a pipe holds
# 64 KiB unless resized; receive_some may always return less than asked).
# The synchronous read takes max_bytes as it is, as os.read does.
_MAX_WAITING_READ: Final = 1 << 20
# "At the file position": what a pipe ignores and a regular file needs.
_OFF_CUR: Final = (1 << 64) - 1
# READ flags.  Zero in production; a test sets RWF_NOWAIT to make the kernel
# answer -EAGAIN the way older kernels do for ttys in non-blocking mode,
# which takes the poll-then-read path below.
_READ_FLAGS = 0


class _FdHolder:
    """The fd of one FdStream, its original blocking mode, and the ring ops
    in flight on it.

    ``fd`` is -1 once closed (the number is thrown away at once: a number
    that is reused can never be acted on by mistake).  While ops are in
    flight at close, the number lives on in ``_deferred`` until the last
    one's completion.
    """

    __slots__ = ("fd", "_was_blocking", "_ops", "_deferred")

    def __init__(self, fd: int) -> None:
        self.fd = -1
        self._ops: list[RingOp] = []
        self._deferred = -1
        if not isinstance(fd, int):
            raise TypeError("file descriptor must be an int")
        # Raises OSError(EBADF) for a number that is not an open fd.
        self._was_blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)
        self.fd = fd

    @property
    def closed(self) -> bool:
        return self.fd == -1

    async def run_op(self, op: RingOp) -> int:
        """Submit ``op`` on this fd and wait for its result (``-errno`` is
        returned, not raised)."""
        self._ops.append(op)
        try:
            res, _flags = await submit_and_wait(op)
        finally:
            self._ops.remove(op)
            if not self._ops and self._deferred >= 0:
                self._release_deferred()
        return res

    def _release_deferred(self) -> None:
        fd, self._deferred = self._deferred, -1
        os.close(fd)

    def close(self) -> None:
        fd = self.fd
        if fd < 0:
            return
        self.fd = -1
        try:
            os.set_blocking(fd, self._was_blocking)
        finally:
            if not self._ops:
                os.close(fd)
            else:
                self._deferred = fd
                for op in self._ops:
                    # A resubmission (a deadline moved while the op was in
                    # flight) must find no fd rather than a reused number.
                    op.fd = -1
                    cancel_ring_op(op, ClosedResourceError("another task closed this stream"))

    def __del__(self) -> None:
        # Nothing can be in flight here (a waiting task keeps its stream
        # alive), unless a run was abandoned mid-op: then the number is
        # released and the op's memory is the runner's business.
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.set_blocking(fd, self._was_blocking)
            finally:
                os.close(fd)
        elif self._deferred >= 0 and not self._ops:
            self._release_deferred()


def _closed() -> ClosedResourceError:
    return ClosedResourceError("file was already closed")


def _raise_os_error(exc: OSError) -> NoReturn:
    # EBADF: the fd was closed under the operation (trio's reading of it).
    if exc.errno == errno.EBADF:
        raise _closed() from None
    raise BrokenResourceError(f"the fd failed: {exc}") from exc


def _raise_errno(res: int) -> NoReturn:
    _raise_os_error(OSError(-res, os.strerror(-res)))


def _new_read_buffer(size: int) -> Any:
    # Memory nobody else sees until the READ's completion: uninitialized
    # bytes from the accelerator when it is there (one copy, as os.read).
    new_bytes = _accel._sp_new_bytes
    if new_bytes is not None and size >= 2:
        return new_bytes(size)
    return memoryview(bytearray(size))


@final
class FdStream(Stream):
    """A stream over a file descriptor for a pipe, a tty or anything else
    that can be polled (``trio.lowlevel.FdStream``).

    The stream takes ownership of ``fd``: closing the stream closes it.  The
    open file description is put in non-blocking mode for the stream's
    lifetime and restored when the stream closes; since the mode belongs to
    the description, it also affects every fd that shares it (a ``dup`` of
    it, the same terminal seen through stdin and stdout, another process
    that inherited it).  ``FdStream(os.dup(0))`` reads standard input, with
    that caveat.  There is no ``send_eof``: close the stream instead.

    Raises :exc:`TypeError` if ``fd`` is not an int and :exc:`OSError` if it
    is not an open file descriptor.
    """

    __slots__ = ("_fd_holder", "_send_guard", "_receive_guard")

    def __init__(self, fd: int) -> None:
        self._fd_holder = _FdHolder(fd)
        self._send_guard = OneUser("another task is using this stream for send")
        self._receive_guard = OneUser("another task is using this stream for receive")

    def __repr__(self) -> str:
        return f"<ringtrio.lowlevel.FdStream fd={self._fd_holder.fd}>"

    async def send_all(self, data: bytes | bytearray | memoryview | Buffer) -> None:
        """Write all of ``data``: what the fd takes at once with one
        ``write(2)``, the rest with ``IORING_OP_WRITE`` ops as it drains.
        :exc:`BrokenResourceError` if the reading end is gone."""
        with self._send_guard:
            holder = self._fd_holder
            # Checked before the checkpoint: send_all(b"") on a closed
            # stream must raise too.
            if holder.closed:
                raise _closed()
            await checkpoint()
            # Bytes, whatever the item format: a slice counts bytes.
            payload = memoryview(data).cast("B")
            total = payload.nbytes
            sent = 0
            while sent < total:
                fd = holder.fd
                if fd < 0:
                    raise _closed()
                # Not released explicitly: an error traceback may hold it.
                # (A WRITE in flight pins the memory with a view of its own.)
                rest = payload[sent:] if sent else payload
                try:
                    sent += os.write(fd, rest)
                    continue
                except BlockingIOError:
                    pass
                except OSError as exc:
                    _raise_os_error(exc)
                res = await holder.run_op(
                    RingOp(IORING_OP_WRITE, fd, rest, total - sent, _OFF_CUR, keepalive=rest)
                )
                if res < 0:
                    if holder.closed:
                        raise _closed()
                    if res != -errno.EAGAIN:
                        _raise_errno(res)
                    await self._poll(fd, select.POLLOUT)
                else:
                    sent += res

    async def wait_send_all_might_not_block(self) -> None:
        """Block until the fd is writable (one ``IORING_OP_POLL_ADD``)."""
        with self._send_guard:
            holder = self._fd_holder
            if holder.closed:
                raise _closed()
            await self._poll(holder.fd, select.POLLOUT)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` bytes (default 65536); ``b""`` at end of file."""
        with self._receive_guard:
            if max_bytes is None:
                max_bytes = DEFAULT_RECEIVE_SIZE
            else:
                if not isinstance(max_bytes, int):
                    raise TypeError("max_bytes must be integer >= 1")
                if max_bytes < 1:
                    raise ValueError("max_bytes must be integer >= 1")
            holder = self._fd_holder
            await checkpoint_if_cancelled()
            while True:
                fd = holder.fd
                try:
                    if fd < 0:
                        raise _closed()
                    data = os.read(fd, max_bytes)
                except BlockingIOError:
                    pass
                except BaseException as exc:
                    # A take that failed still ends in a schedule point, as
                    # one that succeeded: the call is a checkpoint either way.
                    await cancel_shielded_checkpoint()
                    if isinstance(exc, OSError):
                        _raise_os_error(exc)
                    raise
                else:
                    await cancel_shielded_checkpoint()
                    return data
                # Nothing there: wait for it on the ring.
                got = await self._read_waiting(fd, min(max_bytes, _MAX_WAITING_READ))
                if got is not None:
                    return got

    async def _read_waiting(self, fd: int, size: int) -> bytes | None:
        """One READ that waits for data; None if the fd said -EAGAIN (it
        does not wait itself) and is now readable: read it again."""
        holder = self._fd_holder
        buf = _new_read_buffer(size)
        res = await holder.run_op(RingOp(IORING_OP_READ, fd, buf, size, _OFF_CUR, _READ_FLAGS, keepalive=buf))
        if res >= 0:
            if type(buf) is bytes:
                return buf if res == size else buf[:res]
            return bytes(buf[:res])
        if holder.closed:
            raise _closed()
        if res == -errno.EAGAIN:
            await self._poll(fd, select.POLLIN)
            return None
        _raise_errno(res)

    async def _poll(self, fd: int, events: int) -> None:
        holder = self._fd_holder
        res = await holder.run_op(RingOp(IORING_OP_POLL_ADD, fd, 0, 0, 0, events))
        if res < 0:
            if holder.closed:
                raise _closed()
            _raise_errno(res)

    def close(self) -> None:
        """Close the fd now (restoring its blocking mode); tasks blocked on
        the stream get :exc:`ClosedResourceError`.  Closing twice is a no-op."""
        self._fd_holder.close()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()

    def fileno(self) -> int:
        """The fd, or -1 once the stream is closed."""
        return self._fd_holder.fd
