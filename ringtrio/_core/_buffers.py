"""Provided-buffer rings (``IORING_REGISTER_PBUF_RING``) and buffer group ids.

A :class:`BufferRing` is ``count`` buffers of ``size`` bytes in one memory
region, registered with the ring under a buffer group id (``bgid``).  An op
submitted with ``IOSQE_BUFFER_SELECT`` and ``buf_index=bgid`` lets the kernel
pick a buffer *when data arrives*, so a receive that is merely pending pins no
memory at all.  The CQE says which buffer was used (``flags >> 16``); the
owner copies the bytes out and gives the buffer back with :meth:`recycle`
(memory writes only, no syscall).

Group ids are a per-run resource: :func:`alloc_bgid` / :func:`release_bgid`
hand them out for the run that is current, so the runtime's own receive group
(:func:`runtime_recv_ring`) and nursery-owned groups (issue 5) never collide.

The runtime receive group is created lazily on first use and freed when the
system nursery closes -- after every task of the run has finished, so no op
that could select from it is still in flight.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from ._local import _current_runner
from ._ring import _load_native
from ._run_var import RunVar

__all__ = [
    "BufferRing",
    "BufferRingStatistics",
    "alloc_bgid",
    "release_bgid",
    "runtime_recv_ring",
]

# The kernel's limit for one provided-buffer ring.
MAX_COUNT = 32768
# bgid is a 16-bit field in the SQE.
_MAX_BGID = 0xFFFF

# The runtime receive group: what receive_some / recv select from.  Pages of
# the region only become resident once the kernel writes into them, so an
# idle run costs nothing; under load, at most count * size bytes
# (256 * 64 KiB = 16 MiB) become resident.  64 KiB matches the default
# receive_some size, so a bulk reader gets full-size chunks.
RUNTIME_RECV_COUNT = 256
RUNTIME_RECV_SIZE = 64 * 1024


class BufferRingStatistics:
    """Counters of one :class:`BufferRing` (a snapshot)."""

    __slots__ = ("bgid", "count", "size", "selected", "recycled")

    def __init__(self, bgid: int, count: int, size: int, selected: int, recycled: int) -> None:
        self.bgid = bgid
        self.count = count
        self.size = size
        self.selected = selected  # buffers the kernel handed out (CQEs with F_BUFFER)
        self.recycled = recycled  # buffers given back

    def __repr__(self) -> str:
        return (
            f"BufferRingStatistics(bgid={self.bgid}, count={self.count}, size={self.size}, "
            f"selected={self.selected}, recycled={self.recycled})"
        )


class BufferRing:
    """``count`` buffers of ``size`` bytes registered as buffer group ``bgid``.

    Not thread-safe; belongs to one run.  Create it from inside the run it
    is for (it registers with that run's ring).
    """

    __slots__ = (
        "bgid",
        "count",
        "size",
        "base",
        "_ptr",
        "_addr",
        "_ring_ptr",
        "_ffi",
        "_lib",
        "_selected",
        "_recycled",
        "_region",
        "__weakref__",
    )

    def __init__(self, count: int, size: int, *, bgid: int | None = None, flags: int = 0) -> None:
        if not isinstance(count, int) or not isinstance(size, int):
            raise TypeError(f"count and size must be ints, got {count!r} and {size!r}")
        if count <= 0 or count > MAX_COUNT or count & (count - 1):
            raise ValueError(
                f"count must be a power of two between 1 and {MAX_COUNT}, got {count}"
            )
        if size <= 0 or size > 0xFFFFFFFF:
            raise ValueError(f"size must be between 1 and 2**32-1 bytes, got {size}")
        runner = _current_runner()
        ffi, lib = _load_native()
        own_bgid = bgid is None
        if bgid is None:
            bgid = alloc_bgid()
        err = ffi.new("int *")
        ptr = lib.rt_buf_ring_new(runner.ring.ptr, bgid, count, size, flags, err)
        if ptr == ffi.NULL:
            if own_bgid:
                release_bgid(bgid)
            code = err[0]
            hint = ""
            if code == errno.EINVAL:
                hint = " (this kernel may not support provided-buffer rings: Linux >= 5.19 is needed)"
            elif code == errno.EEXIST:
                hint = f" (buffer group {bgid} is already registered on this ring)"
            raise OSError(code, f"could not register a provided-buffer ring: {os.strerror(code)}{hint}")
        self.bgid = bgid
        self.count = count
        self.size = size
        self._ptr: Any = ptr
        # The rt_buf_ring's address (0 once closed): the accelerator's copy
        # out of a receive (_speedups.complete_stream_rx) recycles through it.
        self._addr = int(ffi.cast("uintptr_t", ptr))
        self._ring_ptr: Any = runner.ring.ptr
        self._ffi = ffi
        self._lib = lib
        # Integer address of buffer 0; buffer `bid` is at base + bid * size.
        self.base: int = int(ffi.cast("uintptr_t", lib.rt_buf_ring_base(ptr)))
        # The whole region as one memoryview: take() slices it (cheaper than
        # building a cffi buffer per completion).
        self._region = memoryview(ffi.buffer(ffi.cast("char *", self.base), count * size))
        self._selected = 0
        self._recycled = 0

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"count={self.count} size={self.size}"
        return f"<BufferRing bgid={self.bgid} {state}>"

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def take(self, bid: int, nbytes: int) -> bytes:
        """Copy the first ``nbytes`` of buffer ``bid`` out and give the
        buffer back to the kernel at once."""
        if self._ptr is None:
            raise RuntimeError("this BufferRing is closed")
        if not 0 <= bid < self.count or not 0 <= nbytes <= self.size:
            raise ValueError(f"buffer {bid} / length {nbytes} is not in this ring")
        self._selected += 1
        start = bid * self.size
        data = self._region[start : start + nbytes].tobytes()
        self._recycled += 1
        self._lib.rt_buf_ring_recycle(self._ptr, bid)
        return data

    def view(self, bid: int, nbytes: int) -> memoryview:
        """A memoryview of buffer ``bid`` (valid until :meth:`recycle`)."""
        if self._ptr is None:
            raise RuntimeError("this BufferRing is closed")
        if not 0 <= bid < self.count or not 0 <= nbytes <= self.size:
            raise ValueError(f"buffer {bid} / length {nbytes} is not in this ring")
        self._selected += 1
        return memoryview(
            self._ffi.buffer(self._ffi.cast("char *", self.base + bid * self.size), nbytes)
        )

    def recycle(self, bid: int) -> None:
        """Give buffer ``bid`` back to the kernel (memory writes only)."""
        if self._ptr is None:
            return
        self._recycled += 1
        self._lib.rt_buf_ring_recycle(self._ptr, bid)

    def close(self) -> None:
        """Unregister the group and free its memory.  Only call this when no
        op that could select from the group is in flight.  Idempotent."""
        ptr = self._ptr
        if ptr is None:
            return
        self._ptr = None
        self._addr = 0
        self._region.release()
        self._lib.rt_buf_ring_free(self._ring_ptr, ptr)
        self._release_id()

    def _release_id(self) -> None:
        try:
            release_bgid(self.bgid)
        except RuntimeError:
            pass  # the run is over: its allocator went with it

    def statistics(self) -> BufferRingStatistics:
        return BufferRingStatistics(self.bgid, self.count, self.size, self._selected, self._recycled)


# ---------------------------------------------------------------------------
# Per-run state: bgid allocation and the runtime receive group
# ---------------------------------------------------------------------------


class _RunBuffers:
    __slots__ = ("next_bgid", "free_bgids", "recv_ring", "recv_ring_failed")

    def __init__(self) -> None:
        self.next_bgid = 0
        self.free_bgids: list[int] = []
        self.recv_ring: BufferRing | None = None
        # Set when the kernel refused the runtime group: receives then use
        # private buffers and we do not retry on every call.
        self.recv_ring_failed: BaseException | None = None


_state: RunVar[_RunBuffers] = RunVar("ringtrio.buffers")


def _get_state() -> _RunBuffers:
    state = _state.get(None)
    if state is None:
        state = _RunBuffers()
        _state.set(state)
    return state


def alloc_bgid() -> int:
    """A buffer group id not in use in the current run."""
    state = _get_state()
    if state.free_bgids:
        return state.free_bgids.pop()
    if state.next_bgid > _MAX_BGID:
        raise RuntimeError(
            f"all {_MAX_BGID + 1} buffer group ids of this run are in use; "
            "close buffer groups you no longer need"
        )
    bgid = state.next_bgid
    state.next_bgid += 1
    return bgid


def release_bgid(bgid: int) -> None:
    """Return ``bgid`` (from :func:`alloc_bgid`) once its group is freed."""
    state = _get_state()
    if 0 <= bgid < state.next_bgid and bgid not in state.free_bgids:
        state.free_bgids.append(bgid)


def runtime_recv_ring() -> BufferRing | None:
    """The current run's receive group, created on first use; None when the
    kernel refused to register it (callers then use private buffers)."""
    state = _get_state()
    ring = state.recv_ring
    if ring is not None:
        return ring
    if state.recv_ring_failed is not None:
        return None
    runner = _current_runner()
    nursery = runner.system_nursery
    try:
        ring = BufferRing(RUNTIME_RECV_COUNT, RUNTIME_RECV_SIZE)
    except OSError as exc:
        state.recv_ring_failed = exc
        return None
    state.recv_ring = ring

    def free_runtime_ring() -> None:
        # Runs when the system nursery closes: every task of the run has
        # finished.  Receives that could still select from the group (the
        # multishot receive of a stream nobody closed) are cancelled when
        # the ring is drained, so then the group is freed (or, if ops could
        # not be drained, deliberately leaked rather than freed under the
        # kernel).
        state.recv_ring = None
        if runner._ops_in_flight == 0:
            ring.close()
        else:
            runner._close_after_drain.append(ring.close)

    if nursery is not None and not nursery._closed:
        nursery._add_exit_callback(free_runtime_ring)
    return ring
