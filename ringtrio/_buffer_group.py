"""Buffer groups owned by nurseries, multishot receives, and buffer leases.

``group = nursery.buffer_group(count=N, size=S)`` registers a provided-buffer
ring (``IORING_REGISTER_PBUF_RING``) of N buffers of S bytes in one memory
region; ``async for buf in stream.receive_buffers(group)`` runs one
**multishot** ``IORING_OP_RECV`` (``IORING_RECV_MULTISHOT`` +
``IOSQE_BUFFER_SELECT``) on the stream and yields every completion as a
:class:`Buffer` lease.  docs/buffers.md is the user's guide; this docstring
is the engineer's.

Ownership
---------
* The **group** belongs to the nursery that created it.  Its exit callback
  runs after every child has finished: it refuses new arms, cancels every
  multishot still armed on the group (whoever armed it), parks until each
  one's final CQE has arrived, releases every lease still outstanding (which
  invalidates their views) and then unregisters and frees the ring.
* The **multishot request** belongs to the ``async for`` (the iterator
  object).  It is cancelled, and its final CQE awaited, when ``__anext__``
  leaves with an exception (cancellation included), when the iterator is
  closed (``aclose``/``async with``), when the stream is closed (the op is
  tracked on the socket, and the fd number is released only after the final
  CQE), and when the group's nursery exits.  An ``async for`` left with
  ``break`` drops the iterator: CPython finalises it at once and its
  ``__del__`` asks the kernel to cancel; the final CQE is then awaited by
  whoever owns the rest (stream close, group exit).  No CQE ever arrives for
  an owner that is gone: the op object itself stays in the runner's slot
  table until its final CQE.
* **Undelivered leases** (received while the consumer was not looking) stay
  queued on the stream, in order, for the next ``receive_buffers`` on it;
  they are released when the stream's op object is dropped or the group
  closes.

Accounting (per buffer id)
--------------------------
``_refs[bid]``: outstanding references — one per lease and one per live
``view`` export (the view is built on a small exporter object --
``_speedups.lease_view``, or an ``ffi.gc`` cdata without the accelerator --
whose end is reported, so a slice of a view keeps the buffer out of the ring
until the slice is gone too).  ``_done[bid]``: the kernel has finished with the buffer
(plain mode: at once; incremental mode: on the CQE without
``IORING_CQE_F_BUF_MORE``).  ``_off[bid]``: bytes the kernel already consumed
(incremental mode).  A buffer goes back to the ring (``rt_buf_ring_recycle``:
memory writes only) when ``_done`` and ``_refs == 0``.

Back-pressure
-------------
An empty ring ends a multishot with ``-ENOBUFS`` (the bytes stay in the
socket).  The consumer then parks FIFO on the group until a buffer comes back
(each recycle wakes one waiter; a woken waiter that gives up passes the wake
on), re-arms, and carries on.  Nothing is lost and nothing spins.

Final CQE
---------
The CQE without ``IORING_CQE_F_MORE`` ends the request whatever its code: 0
(EOF — or, after we asked to cancel, a cancel on some kernels), ``-ECANCELED``,
``-ENOENT``, ``-ENOBUFS``, an error, or even data (a kernel may stop a
multishot after a CQ overflow).  Data is always kept; after our own cancel,
0 and negative codes mean "stopped"; otherwise 0 is EOF, ``-ENOBUFS`` is
back-pressure and anything else is an error.
"""

from __future__ import annotations

import errno
import os
import threading
import types
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from ._final import final
from ._core import BrokenResourceError, BusyResourceError, ClosedResourceError, RunFinishedError, sleep
from ._core import Nursery, Task, _ring, current_task
from ._core._buffers import MAX_COUNT, BufferRing
from ._core._ring import _load_native
from ._core import (
    Abort,
    OwnedRingOp,
    cancel_shielded_checkpoint,
    checkpoint,
    reschedule,
    wait_task_rescheduled,
)
from ._core._internal_api import (
    _Park,
    _abandoned_ops,
    _abort_failed,
    _accel,
    _cancel_pending,
    _current_runner,
    _local,
    _outside_run,
    set_buffer_group_opener,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from ._highlevel_socket import SocketStream

__all__ = ["Buffer", "BufferGroup", "BufferGroupStatistics", "BufferReceiver"]

_ffi, _lib = _load_native()

IORING_RECV_MULTISHOT = 1 << 1
IOU_PBUF_RING_INC = 2
_F_MORE = _ring.IORING_CQE_F_MORE
_F_BUFFER = _ring.IORING_CQE_F_BUFFER
_F_BUF_MORE = _ring.IORING_CQE_F_BUF_MORE
_BUFFER_SHIFT = _ring.IORING_CQE_BUFFER_SHIFT
_ENOBUFS = -errno.ENOBUFS
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})
# A buffer must fit a recv result (int32) and the ring entry's len (u32).
MAX_SIZE = 2**31 - 1
# Undelivered leases one stream may queue before its multishot is paused
# (cancelled, re-armed when the consumer has drained the queue): one slow
# consumer must not take a shared group's every buffer.
DEFAULT_MAX_PENDING = 16
# ENOBUFS endings in a row (no data in between) after which a consumer waits
# for a buffer to come back even if the group's count says one is free: a
# guard against spinning, should the count ever disagree with the kernel.
_ENOBUFS_RETRIES = 2


# ---------------------------------------------------------------------------
# Leases
# ---------------------------------------------------------------------------


# What Buffer is built on: with the accelerator, _speedups' LeaseBase holds
# the six fields below (same names) and has __enter__/__exit__ in C, which
# replace Buffer's (deleted after the class body): `with buf:` then costs
# no Python frame.  Without it, object: Buffer below is all there is.
if TYPE_CHECKING:
    _LeaseBase = object
else:
    _LeaseBase = _accel.speedups_class("LeaseBase")
_LEASE_FIELDS = ("_group", "_bid", "_start", "_len", "_view", "_released")


@final
class Buffer(_LeaseBase):
    """A lease on ``len(buf)`` received bytes inside a :class:`BufferGroup`.

    The bytes stay in the group's memory (no copy) until the lease is
    released: by leaving ``with buf:``, by :meth:`release`, or by the
    owning nursery exiting.  Then the buffer goes back to the kernel and
    :attr:`view` is released: using it (or ``bytes(buf)``, ``len(buf)``)
    raises :exc:`ValueError`.  A slice taken from ``view`` keeps the buffer
    out of the ring until the slice itself is gone, so no code can ever see
    bytes that a later receive put there.
    """

    __slots__ = _LEASE_FIELDS if _LeaseBase is object else ()
    if TYPE_CHECKING:
        _group: BufferGroup
        _bid: int
        _start: int
        _len: int
        _view: memoryview | None
        _released: bool

    def __init__(self, group: BufferGroup, bid: int, start: int, length: int) -> None:
        # (_speedups.complete_lease_rx makes leases without calling this:
        # it sets the same six fields.)
        self._group = group
        self._bid = bid
        self._start = start  # offset in the group's region
        self._len = length
        self._view: memoryview | None = None
        self._released = False

    def __repr__(self) -> str:
        state = "released" if self._released else f"{self._len} bytes"
        return f"<ringtrio.Buffer bid={self._bid} {state}>"

    def _check(self) -> None:
        if self._released:
            raise ValueError(
                "this ringtrio.Buffer lease was released: its memory belongs to the "
                "buffer group again (copy the bytes out with bytes(buf) before releasing)"
            )

    @property
    def view(self) -> memoryview:
        """A (writable) memoryview of the received bytes, valid until release."""
        v = self._view
        if v is None:
            self._check()
            group = self._group
            group._refs[self._bid] += 1
            group._total_refs += 1
            lease_view = _accel._sp_lease_view
            if lease_view is not None:
                # One C object exports the bytes and, once no view (or
                # slice) uses it any more, calls _unref_any_thread(bid).
                v = lease_view(group._ring.base + self._start, self._len, group._unref_any_thread, self._bid)
            else:
                cd = _ffi.gc(group._cbase + self._start, self._view_gone)
                v = memoryview(_ffi.buffer(cd, self._len))
            self._view = v
        return v

    def _view_gone(self, _cd: Any) -> None:
        # ffi.gc destructor: the last memoryview built on the view's cdata
        # (the view itself or a slice of it) is gone.
        self._group._unref_any_thread(self._bid)

    def __len__(self) -> int:
        self._check()
        return self._len

    def __bool__(self) -> bool:
        return not self._released and self._len > 0

    def __bytes__(self) -> bytes:
        self._check()
        return _ffi.unpack(self._group._cbase + self._start, self._len)  # type: ignore[no-any-return]

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Give the buffer back to the group (memory writes only, no
        syscall) and invalidate :attr:`view`.  Idempotent."""
        release_lease = _accel._sp_release_lease
        if release_lease is not None and release_lease(self):
            # Done in C: a lease without a view in an open group, nobody
            # waiting for a buffer (what the lines below do then).
            return
        if self._released:
            return
        self._released = True
        group = self._group
        group._leases.discard(self)
        v = self._view
        if v is not None:
            self._view = None
            try:
                v.release()
            except BufferError:
                # Something holds a raw export of the view itself (e.g. a
                # cffi from_buffer): the buffer comes back when that ends.
                pass
        group._unref(self._bid)

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # (release()'s C path tried here first: one Python frame per `with`.)
        release_lease = _accel._sp_release_lease
        if release_lease is None or not release_lease(self):
            self.release()


if _LeaseBase is not object:
    # LeaseBase's __enter__ and __exit__ do what the two above do, in C.
    del Buffer.__enter__, Buffer.__exit__


# ---------------------------------------------------------------------------
# The group
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BufferGroupStatistics:
    """A snapshot of a :class:`BufferGroup` (``group.statistics()``)."""

    count: int  # buffers in the group
    size: int  # bytes per buffer
    free: int  # buffers in the ring (the kernel may pick them)
    leased: int  # outstanding Buffer leases (queued or in user code)
    held: int  # buffers out of the ring (leased, or a view slice still alive)
    enobufs: int  # times a multishot receive ended because the ring was empty
    armed: int  # multishot receives currently armed on the group
    waiting: int  # receivers parked until a buffer comes back
    incremental: bool  # IOU_PBUF_RING_INC consumption is in use
    closed: bool


@final
class BufferGroup:
    """``count`` buffers of ``size`` bytes that any number of streams
    receive into (``stream.receive_buffers(group)``).  Create with
    ``nursery.buffer_group(count=..., size=...)``; the nursery owns it."""

    __slots__ = (
        "count",
        "size",
        "incremental",
        "_ring",
        "_cbase",
        "_runner",
        "_thread",
        "_refs",
        "_done",
        "_off",
        "_total_refs",
        "_free",
        "_leases",
        "_armed",
        "_waiters",
        "_closing",
        "_closed",
        "_closer",
        "_freed",
        "_enobufs",
        "__weakref__",
    )

    def __init__(self, count: int, size: int, incremental: bool | None = None) -> None:
        _check_args(count, size, incremental)
        runner = _current_runner()
        ring = None
        if incremental is not False:
            try:
                ring = BufferRing(count, size, flags=IOU_PBUF_RING_INC)
            except OSError as exc:
                if incremental or exc.errno != errno.EINVAL:
                    raise
        self.incremental = ring is not None
        if ring is None:
            ring = BufferRing(count, size)
        self.count = count
        self.size = size
        self._ring = ring
        self._cbase = _ffi.cast("char *", ring.base)
        self._runner = runner
        self._thread = threading.get_ident()
        self._refs = [0] * count
        self._done = [False] * count
        self._off = [0] * count
        self._total_refs = 0
        self._free = count
        self._leases: set[Buffer] = set()
        self._armed: set[_MultishotRecv] = set()
        self._waiters: deque[Task] = deque()
        self._closing = False
        self._closed = False
        self._closer: Task | None = None
        self._freed = False
        self._enobufs = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"free={self._free}"
        return f"<ringtrio.BufferGroup count={self.count} size={self.size} {state}>"

    @property
    def closed(self) -> bool:
        return self._closing

    def statistics(self) -> BufferGroupStatistics:
        return BufferGroupStatistics(
            count=self.count,
            size=self.size,
            free=self._free,
            leased=len(self._leases),
            held=self.count - self._free,
            enobufs=self._enobufs,
            armed=len(self._armed),
            waiting=len(self._waiters),
            incremental=self.incremental,
            closed=self._closed,
        )

    # -- completions -------------------------------------------------------

    def _take(self, res: int, flags: int) -> Buffer | None:
        """Account for a CQE that selected a buffer; the lease for its bytes."""
        bid = flags >> _BUFFER_SHIFT
        off = self._off[bid]
        if flags & _F_BUF_MORE:
            # Incremental mode: the kernel keeps the rest of this buffer.
            self._off[bid] = off + (res if res > 0 else 0)
        else:
            self._done[bid] = True
            self._free -= 1
        if res <= 0:
            if self._done[bid] and self._refs[bid] == 0:
                self._recycle(bid)
            return None
        self._refs[bid] += 1
        self._total_refs += 1
        lease = Buffer(self, bid, bid * self.size + off, res)
        self._leases.add(lease)
        return lease

    # -- returning buffers ---------------------------------------------------

    def _unref(self, bid: int) -> None:
        refs = self._refs[bid] - 1
        self._refs[bid] = refs
        self._total_refs -= 1
        if refs == 0 and self._done[bid]:
            self._recycle(bid)
        if self._closed and self._total_refs == 0:
            self._free_ring()

    def _unref_any_thread(self, bid: int) -> None:
        if threading.get_ident() == self._thread:
            self._unref(bid)
            return
        # A view (slice) dropped in a worker thread: the ring's tail is only
        # ever written by the run's thread.
        try:
            self._runner._run_sync_soon(self._unref, (bid,), False)
        except (RunFinishedError, RuntimeError):
            pass  # the run is over: its ring (and this memory) is abandoned

    def _recycle(self, bid: int) -> None:
        self._done[bid] = False
        self._off[bid] = 0
        if self._freed:
            return
        self._ring.recycle(bid)
        self._free += 1
        waiters = self._waiters
        if waiters:
            reschedule(waiters.popleft())

    def _pass_wake(self) -> None:
        """A woken receiver did not use the wake: hand it on."""
        if self._free > 0 and self._waiters:
            reschedule(self._waiters.popleft())

    async def _wait_for_buffers(self) -> None:
        task = current_task()
        waiters = self._waiters
        waiters.append(task)

        def abort(raise_cancel: Callable[[], NoReturn]) -> Abort:
            try:
                waiters.remove(task)
            except ValueError:
                pass
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    # -- closing -------------------------------------------------------------

    def _op_ended(self, op: _MultishotRecv) -> None:
        self._armed.discard(op)
        closer = self._closer
        if closer is not None and not self._armed:
            self._closer = None
            reschedule(closer)

    async def _close_owned(self) -> None:
        """The owning nursery's exit callback (after all its children)."""
        if self._closing:
            return
        self._closing = True
        while self._waiters:
            reschedule(self._waiters.popleft())  # they see the group closed
        for op in list(self._armed):
            op.request_cancel()
        while self._armed:
            self._closer = current_task()
            await wait_task_rescheduled(_abort_failed)
        for lease in list(self._leases):
            lease.release()
        self._closed = True
        if self._total_refs == 0:
            self._free_ring()
        # else: a slice of some view is still alive somewhere; the memory is
        # freed when the last one goes (see _unref).

    def _free_ring(self) -> None:
        if self._freed:
            return
        self._freed = True
        self._free = self.count
        ring = self._ring
        if self._runner.ring.closed:
            # The run is over and its ring gone: keep the memory forever
            # rather than unmap it under some view that is still alive.
            _abandoned_ops.append(ring)  # type: ignore[arg-type]
        else:
            ring.close()


def _check_args(count: Any, size: Any, incremental: Any) -> None:
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"buffer_group(): count must be an int, not {type(count).__name__}")
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"buffer_group(): size must be an int, not {type(size).__name__}")
    if count <= 0 or count > MAX_COUNT or count & (count - 1):
        raise ValueError(
            f"buffer_group(): count must be a power of two between 1 and {MAX_COUNT} "
            f"(a kernel limit of provided-buffer rings), got {count}"
        )
    if size <= 0 or size > MAX_SIZE:
        raise ValueError(f"buffer_group(): size must be between 1 and {MAX_SIZE} bytes, got {size}")
    if incremental is not None and not isinstance(incremental, bool):
        raise TypeError(
            f"buffer_group(): incremental must be True, False or None, not {incremental!r}"
        )


@set_buffer_group_opener
def _open_group(nursery: Nursery, count: int, size: int, incremental: bool | None) -> BufferGroup:
    """``Nursery.buffer_group``: create a group owned by ``nursery``."""
    _check_args(count, size, incremental)
    if nursery._closed:
        raise RuntimeError("this nursery is closed: it cannot own a new buffer group")
    group = BufferGroup(count, size, incremental)
    nursery._add_exit_callback(group._close_owned)
    return group


# ---------------------------------------------------------------------------
# The multishot receive of one stream
# ---------------------------------------------------------------------------


class _MultishotRecv(OwnedRingOp):
    """One stream's multishot receive and the leases it has not delivered yet.

    Kept on the stream (``SocketStream._buffer_receiver``) so that leases
    received but not yet consumed survive from one ``receive_buffers`` loop
    to the next.  Its CQEs are handled here, in the run loop's dispatch.
    """

    __slots__ = (
        "group",
        "sock",
        "queue",
        "eof",
        "error",
        "enobufs",
        "enobufs_streak",
        "waiter",
        "owner",
        "max_pending",
        "park",
    )

    def __init__(self, group: BufferGroup, sock: Any) -> None:
        super().__init__(
            group._runner,
            _ring.IORING_OP_RECV,
            ioprio=IORING_RECV_MULTISHOT,
            sqe_flags=_ring.IOSQE_BUFFER_SELECT,
            buf_index=group._ring.bgid,
        )
        self.group = group
        self.sock = sock
        self.queue: deque[Buffer] = deque()
        self.eof = False
        self.error = 0
        self.enobufs = False
        self.enobufs_streak = 0
        self.waiter: Task | None = None
        self.owner = 0  # id() of the iterator using it, 0 if none
        self.max_pending = DEFAULT_MAX_PENDING
        self.park = _Park(self.abort_wait)  # what a waiting consumer yields

    def arm(self) -> None:
        try:
            self.fd = self.sock._fd()
        except OSError:
            raise ClosedResourceError("can't receive: this stream was already closed") from None
        self.enobufs = False
        self._arm()
        self.group._armed.add(self)
        self.sock._track(self)

    def _on_cqe(self, res: int, flags: int) -> None:
        group = self.group
        if flags & _F_BUFFER:
            lease = group._take(res, flags)
            if lease is not None:
                self.queue.append(lease)
                self.enobufs_streak = 0
                if len(self.queue) >= self.max_pending:
                    self.request_cancel()  # pause: re-armed once drained
        if not flags & _F_MORE:
            self.armed = False
            if res == 0:
                # End of stream (with or without a buffer: some kernels
                # select one before they find the end).
                if not self.cancel_requested:
                    self.eof = True
            elif res < 0:
                if res == _ENOBUFS:
                    self.enobufs = True
                    self.enobufs_streak += 1
                    group._enobufs += 1
                elif not self.cancel_requested and res != -errno.ECANCELED:
                    self.error = res
            group._op_ended(self)
            self.sock._untrack(self)
            if not self.enobufs:
                group._pass_wake()
            self._ended()
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            reschedule(waiter)

    def abort_wait(self, raise_cancel: Callable[[], NoReturn]) -> Abort:
        # Stop waiting at once; __anext__'s exception path stops the request
        # and waits for its final CQE.
        self.waiter = None
        return Abort.SUCCEEDED

    def release_queue(self) -> None:
        queue = self.queue
        while queue:
            queue.popleft().release()

    def __del__(self) -> None:
        # Not in flight (the slot table would keep us alive) and nobody can
        # consume the queue any more: give its buffers back.
        try:
            self.release_queue()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


# What BufferReceiver is built on: with the accelerator, _speedups'
# ReceiverBase, whose __anext__ (in C) does the common case -- park until a
# lease is queued, return it -- and hands everything else to _anext and
# _receive below (the definition), where that case would have left them.
if TYPE_CHECKING:
    _ReceiverBase = object
else:
    _ReceiverBase = _accel.speedups_class("ReceiverBase")


class BufferReceiver(_ReceiverBase):
    """``stream.receive_buffers(group)``: an async iterator of :class:`Buffer`
    leases, ending at EOF.  Owns the stream's multishot receive while it is
    iterated; ``aclose()`` (or ``async with``) stops it and waits for its
    final CQE, and so does leaving ``__anext__`` with an exception.  A loop
    left with ``break`` drops the iterator, which asks the kernel to cancel
    (the stream's close or the group's nursery then awaits the end)."""

    __slots__ = ("_stream", "_group", "_op", "_closed", "_max_pending", "__weakref__")

    def __init__(self, stream: SocketStream, group: BufferGroup, max_pending: int) -> None:
        if not isinstance(group, BufferGroup):
            raise TypeError(
                f"receive_buffers() needs a ringtrio.BufferGroup (from "
                f"nursery.buffer_group()), not {type(group).__name__}"
            )
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"receive_buffers(): max_pending must be an int >= 1, got {max_pending!r}")
        if group._runner is not _current_runner():
            raise RuntimeError("this BufferGroup belongs to another ringtrio.run()")
        self._stream = stream
        self._group = group
        self._op: _MultishotRecv | None = None
        self._closed = False
        self._max_pending = max_pending

    def __repr__(self) -> str:
        return f"<ringtrio.BufferReceiver on {self._stream!r}>"

    def __aiter__(self) -> BufferReceiver:
        return self

    async def __aenter__(self) -> BufferReceiver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _attach(self) -> _MultishotRecv:
        stream = self._stream
        op: _MultishotRecv | None = stream._buffer_receiver
        me = id(self)
        if op is not None and op.owner and op.owner != me:
            raise BusyResourceError("another receive_buffers() loop is using this stream")
        if op is not None and op.group is not self._group:
            # The stream's previous group: deliver what it already received
            # first (order!), then switch.
            await op.stop()
            if op.queue:
                return op
            stream._buffer_receiver = op = None
        if op is None:
            op = _MultishotRecv(self._group, stream.socket)
            stream._buffer_receiver = op
        op.owner = me
        op.max_pending = self._max_pending
        self._op = op
        return op

    @types.coroutine
    def _anext(self) -> Generator[Any, Any, Buffer]:
        # __anext__: a generator-based coroutine that yields the
        # scheduler's traps itself (as SocketStream.receive_some): no
        # coroutine object per lease.
        if self._closed:
            raise StopAsyncIteration
        stream = self._stream
        if stream._receiving:
            raise BusyResourceError("another task is already receiving on this stream")
        op = self._op
        if op is None or stream._buffer_receiver is not op or op.owner != id(self):
            op = yield from self._attach().__await__()
        task = _local.task  # (current_task(), inlined: the hot path)
        if task is None:
            _outside_run()
        stream._receiving = True
        return (yield from self._receive(op, task, False, None))

    __anext__ = _anext

    @types.coroutine
    def _receive(
        self, op: _MultishotRecv, task: Task, parked: bool, thrown: BaseException | None
    ) -> Generator[Any, Any, Buffer]:
        """The rest of ``__anext__`` once the stream is ours: wait for a
        lease, or the end, and deliver it.  ``parked``: a cancellable wait
        (a checkpoint) was passed already.  The accelerator's ``__anext__``
        continues here after its own park, with ``thrown`` the exception
        thrown into that park (raised at once, inside the try)."""
        stream = self._stream
        try:
            if thrown is not None:
                raise thrown
            while not op.queue:
                if op.group is not self._group:
                    op = yield from self._attach().__await__()
                    continue
                group = op.group
                if op.eof or op.error or op.closed_by_user or group._closing:
                    break
                if not op.armed:
                    if op.enobufs:
                        # Back-pressure: the ring was empty.  Wait for a
                        # buffer to come back (the bytes wait in the socket).
                        op.enobufs = False
                        if group._free == 0:
                            yield from group._wait_for_buffers().__await__()
                            parked = True
                        elif op.enobufs_streak > _ENOBUFS_RETRIES:
                            # The count says a buffer is free but the kernel
                            # keeps finding none: back off, never spin.
                            yield from sleep(min(0.001 * op.enobufs_streak, 0.1)).__await__()
                            parked = True
                        continue
                    op.arm()
                # (wait_task_rescheduled, inlined.)  The park is a schedule
                # point; cancellation reaches it through abort_wait.
                op.waiter = task
                yield op.park
                parked = True
            if not parked and _cancel_pending(task):
                # Nothing taken yet: a cancellation is raised here.
                yield from checkpoint()
            # What to deliver, taken synchronously: a lease, the end, or an
            # error.
            lease: Buffer | None = None
            error: BaseException | None = None
            if op.queue:
                lease = op.queue.popleft()
            elif op.eof:
                pass
            elif op.error:
                code = -op.error
                op.error = 0
                if code in _CLOSED_ERRNOS:
                    error = ClosedResourceError("can't receive: this stream was already closed")
                else:
                    exc = OSError(code, os.strerror(code))
                    error = BrokenResourceError(f"socket connection broken during receive: {exc}")
                    error.__cause__ = exc
            elif op.closed_by_user:
                error = ClosedResourceError("another task closed this stream")
            else:
                error = ClosedResourceError("the buffer group's nursery has exited")
            if not parked:
                # Ready at once: trio's shape, as SocketStream.receive_some
                # (a deadline shorter than a scheduler pass must not cancel
                # every attempt while leases wait in the queue).
                yield from cancel_shielded_checkpoint()
            if error is not None:
                raise error
            if lease is not None:
                return lease
        except BaseException:
            op.waiter = None
            if op.armed:
                yield from op.stop().__await__()
            op.group._pass_wake()
            # An exception out of __anext__ ends the `async for`: the stream
            # is free for the next loop now, not when this iterator is
            # garbage (the exception's traceback keeps it alive).
            if op.owner == id(self):
                op.owner = 0
            raise
        finally:
            stream._receiving = False
        # EOF.
        self._closed = True
        if op.owner == id(self):
            op.owner = 0
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop the multishot receive and wait for its final CQE.  Leases
        already received stay queued on the stream for a later loop."""
        self._closed = True
        op = self._op
        if op is not None:
            await op.stop()
            if op.owner == id(self):
                op.owner = 0
        else:
            await checkpoint()

    def __del__(self) -> None:
        op = getattr(self, "_op", None)
        if op is not None and op.owner == id(self):
            op.owner = 0
            try:
                if threading.get_ident() == op.group._thread:
                    op.request_cancel()
                else:
                    # Dropped in another thread: only the run's thread may
                    # touch the submission queue.
                    op.runner._run_sync_soon(op.request_cancel, (), False)
            except Exception:  # pragma: no cover - run already over
                pass


# The dispatch completes a chunk that arrives while more are to come in C
# (_speedups.complete_lease_rx), doing what _on_cqe and BufferGroup._take do
# and setting a Buffer's fields as Buffer.__init__ does.
_accel.register_receiver("setup_lease_receive", _MultishotRecv, BufferGroup, Buffer)
if _ReceiverBase is not object:
    # ReceiverBase's __anext__ (in C) calls _anext and _receive for all but
    # the common case.
    del BufferReceiver.__anext__
    _accel.register_receiver("setup_lease_anext", BufferReceiver, _local)


def receive_buffers(stream: SocketStream, group: BufferGroup, max_pending: int) -> BufferReceiver:
    return BufferReceiver(stream, group, max_pending)
