"""The Python face of the native ring: constants, setup, the features probe.

The scheduler (``_runner.py``) drives the ring through :class:`Ring`; nothing
else in ringtrio talks to ``ringtrio._native`` directly.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any

from ._exceptions import RingUnavailableError
from ._final import final

# Opcodes (linux/io_uring.h, enum io_uring_op).  The values are part of the
# kernel ABI; defined here so the Python side does not depend on the header
# the extension was built against.
IORING_OP_NOP = 0
IORING_OP_READV = 1
IORING_OP_WRITEV = 2
IORING_OP_FSYNC = 3
IORING_OP_POLL_ADD = 6
IORING_OP_POLL_REMOVE = 7
IORING_OP_SENDMSG = 9
IORING_OP_RECVMSG = 10
IORING_OP_TIMEOUT = 11
IORING_OP_TIMEOUT_REMOVE = 12
IORING_OP_ACCEPT = 13
IORING_OP_ASYNC_CANCEL = 14
IORING_OP_LINK_TIMEOUT = 15
IORING_OP_CONNECT = 16
IORING_OP_FALLOCATE = 17
IORING_OP_OPENAT = 18
IORING_OP_CLOSE = 19
IORING_OP_STATX = 21
IORING_OP_READ = 22
IORING_OP_WRITE = 23
IORING_OP_SEND = 26
IORING_OP_RECV = 27
IORING_OP_SHUTDOWN = 34
IORING_OP_RENAMEAT = 35
IORING_OP_UNLINKAT = 36
IORING_OP_MKDIRAT = 37
IORING_OP_SYMLINKAT = 38
IORING_OP_LINKAT = 39
IORING_OP_FADVISE = 24
IORING_OP_MADVISE = 25
IORING_OP_OPENAT2 = 28
IORING_OP_SPLICE = 30
IORING_OP_FTRUNCATE = 55
# waitid(2) as a ring op (6.7): fd = id, length = idtype, off = siginfo_t
# pointer, op_flags = options (ring.c moves them where the kernel reads them).
IORING_OP_WAITID = 50

OPCODE_NAMES: dict[int, str] = {
    value: name[len("IORING_OP_") :]
    for name, value in dict(globals()).items()
    if name.startswith("IORING_OP_")
}

# SQE flags
IOSQE_FIXED_FILE = 1 << 0
IOSQE_IO_DRAIN = 1 << 1
IOSQE_IO_LINK = 1 << 2
IOSQE_IO_HARDLINK = 1 << 3
IOSQE_ASYNC = 1 << 4
IOSQE_BUFFER_SELECT = 1 << 5
IOSQE_CQE_SKIP_SUCCESS = 1 << 6

# CQE flags
IORING_CQE_F_BUFFER = 1 << 0
IORING_CQE_F_MORE = 1 << 1
IORING_CQE_F_SOCK_NONEMPTY = 1 << 2
IORING_CQE_F_NOTIF = 1 << 3
IORING_CQE_F_BUF_MORE = 1 << 4
IORING_CQE_BUFFER_SHIFT = 16

# Setup flags
IORING_SETUP_CQSIZE = 1 << 3
IORING_SETUP_SUBMIT_ALL = 1 << 7
IORING_SETUP_COOP_TASKRUN = 1 << 8
IORING_SETUP_TASKRUN_FLAG = 1 << 9
IORING_SETUP_SINGLE_ISSUER = 1 << 12
IORING_SETUP_DEFER_TASKRUN = 1 << 13

# Timeout flags
IORING_TIMEOUT_ABS = 1 << 0

# FSYNC flags
IORING_FSYNC_DATASYNC = 1 << 0

# ASYNC_CANCEL flags
IORING_ASYNC_CANCEL_ALL = 1 << 0
IORING_ASYNC_CANCEL_FD = 1 << 1
IORING_ASYNC_CANCEL_ANY = 1 << 2

# Feature bits (io_uring_params.features)
IORING_FEAT_NODROP = 1 << 1
IORING_FEAT_EXT_ARG = 1 << 8
IORING_FEAT_CQE_SKIP = 1 << 11

# Written out, not computed from globals(): ringtrio.lowlevel re-exports these
# with `from ._core._ring import *`, and a type checker resolves a star import
# by a literal __all__ alone (a computed one hid every constant from mypy).
# tests/test_typing.py checks that it names every IORING_/IOSQE_ constant here.
__all__ = [
    "IORING_ASYNC_CANCEL_ALL",
    "IORING_ASYNC_CANCEL_ANY",
    "IORING_ASYNC_CANCEL_FD",
    "IORING_CQE_BUFFER_SHIFT",
    "IORING_CQE_F_BUFFER",
    "IORING_CQE_F_BUF_MORE",
    "IORING_CQE_F_MORE",
    "IORING_CQE_F_NOTIF",
    "IORING_CQE_F_SOCK_NONEMPTY",
    "IORING_FEAT_CQE_SKIP",
    "IORING_FEAT_EXT_ARG",
    "IORING_FEAT_NODROP",
    "IORING_FSYNC_DATASYNC",
    "IORING_OP_ACCEPT",
    "IORING_OP_ASYNC_CANCEL",
    "IORING_OP_CLOSE",
    "IORING_OP_CONNECT",
    "IORING_OP_FADVISE",
    "IORING_OP_FALLOCATE",
    "IORING_OP_FSYNC",
    "IORING_OP_FTRUNCATE",
    "IORING_OP_LINKAT",
    "IORING_OP_LINK_TIMEOUT",
    "IORING_OP_MADVISE",
    "IORING_OP_MKDIRAT",
    "IORING_OP_NOP",
    "IORING_OP_OPENAT",
    "IORING_OP_OPENAT2",
    "IORING_OP_POLL_ADD",
    "IORING_OP_POLL_REMOVE",
    "IORING_OP_READ",
    "IORING_OP_READV",
    "IORING_OP_RECV",
    "IORING_OP_RECVMSG",
    "IORING_OP_RENAMEAT",
    "IORING_OP_SEND",
    "IORING_OP_SENDMSG",
    "IORING_OP_SHUTDOWN",
    "IORING_OP_SPLICE",
    "IORING_OP_STATX",
    "IORING_OP_SYMLINKAT",
    "IORING_OP_TIMEOUT",
    "IORING_OP_TIMEOUT_REMOVE",
    "IORING_OP_UNLINKAT",
    "IORING_OP_WAITID",
    "IORING_OP_WRITE",
    "IORING_OP_WRITEV",
    "IORING_SETUP_COOP_TASKRUN",
    "IORING_SETUP_CQSIZE",
    "IORING_SETUP_DEFER_TASKRUN",
    "IORING_SETUP_SINGLE_ISSUER",
    "IORING_SETUP_SUBMIT_ALL",
    "IORING_SETUP_TASKRUN_FLAG",
    "IORING_TIMEOUT_ABS",
    "IOSQE_ASYNC",
    "IOSQE_BUFFER_SELECT",
    "IOSQE_CQE_SKIP_SUCCESS",
    "IOSQE_FIXED_FILE",
    "IOSQE_IO_DRAIN",
    "IOSQE_IO_HARDLINK",
    "IOSQE_IO_LINK",
    "OPCODE_NAMES",
    "RingFeatures",
]

PREFERRED_SETUP_FLAGS = (
    IORING_SETUP_SINGLE_ISSUER
    | IORING_SETUP_DEFER_TASKRUN
    | IORING_SETUP_SUBMIT_ALL
    | IORING_SETUP_TASKRUN_FLAG
)
# A guest run's ring (lowlevel.start_guest_run): a helper thread waits for
# completions by polling the ring's fd while the host loop runs.  With
# DEFER_TASKRUN a completion is deferred work that nothing posts until the
# owning thread enters with GETEVENTS, and adding it wakes no poller
# (measured on 6.18: the poll sleeps to its timeout), so it is left out;
# COOP_TASKRUN still spares us the IPI.  SINGLE_ISSUER is left out too: the
# ring is only ever entered from the host loop's thread, but nothing makes
# the host call us back from the thread that started the run.
GUEST_SETUP_FLAGS = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL

SQ_ENTRIES = 1024
CQ_ENTRIES = 8192
# How many CQEs one scheduler pass copies out at most.  More simply wait for
# the next pass; the CQ itself is much larger.
CQE_BATCH = 1024
# How long a wait may poll the rings before it sleeps in io_uring_enter, at
# most, in microseconds: RINGTRIO_POLL_US, else this (rt_ring_set_poll in
# _native/ring.h; docs/design.md, "Polling before a wait").
POLL_ENV_VAR = "RINGTRIO_POLL_US"
POLL_MAX_US = 50


def poll_bound_ns() -> int:
    """The poll bound for a new ring, from RINGTRIO_POLL_US (0 turns polling
    off) or the default."""
    text = os.environ.get(POLL_ENV_VAR)
    if text is None or not text.strip():
        return POLL_MAX_US * 1000
    try:
        us = float(text)
    except ValueError:
        us = -1.0
    if not 0 <= us <= 1_000_000:
        raise ValueError(
            f"{POLL_ENV_VAR}={text!r}: expected how many microseconds a wait may poll "
            "the ring before it sleeps, a number from 0 (never poll) to 1000000"
        )
    return int(us * 1000)

# Test hook: when set (to an errno), Ring() fails as if io_uring_setup had
# returned that error.  Used by the tests for the "io_uring unavailable" path.
_force_setup_errno: int = 0

# What a kernel (or seccomp filter) answers when it will not let us use an
# io_uring call at all, as opposed to an error of the call itself.
REFUSALS = frozenset({errno.EPERM, errno.EACCES, errno.ENOSYS})


def _load_native() -> tuple[Any, Any]:
    try:
        from .. import _native  # type: ignore[attr-defined]
    except ImportError as exc:  # pragma: no cover - packaging problem
        raise ImportError(
            "ringtrio's native extension (ringtrio._native) is not built. Install "
            "the package with `pip install .` (or `pip install -e .`) so that cffi "
            "compiles _native/ring.c; this needs gcc and the Python headers."
        ) from exc
    return _native.ffi, _native.lib


@final
@dataclass(frozen=True, slots=True)
class RingFeatures:
    """What this kernel's io_uring can do, as probed when the ring was set up."""

    opcodes: frozenset[int]
    setup_flags: int
    kernel_features: int
    sq_entries: int
    cq_entries: int

    def supports(self, opcode: int) -> bool:
        return opcode in self.opcodes

    @property
    def defer_taskrun(self) -> bool:
        return bool(self.setup_flags & IORING_SETUP_DEFER_TASKRUN)

    @property
    def ext_arg(self) -> bool:
        return bool(self.kernel_features & IORING_FEAT_EXT_ARG)

    @property
    def nodrop(self) -> bool:
        return bool(self.kernel_features & IORING_FEAT_NODROP)

    @property
    def cqe_skip(self) -> bool:
        return bool(self.kernel_features & IORING_FEAT_CQE_SKIP)

    def opcode_names(self) -> list[str]:
        return sorted(OPCODE_NAMES.get(op, str(op)) for op in self.opcodes)


class Ring:
    """One ring plus the CQE batch buffer the scheduler reads: the kernel's
    io_uring, or with ``soft=True`` the soft ring (_native/softring.c: the
    same SQEs and CQEs, emulated on epoll and worker threads).

    ``ptr`` and ``lib`` are used directly by the run loop (one native call per
    pass: ``lib.rt_pass``); everything else goes through methods.
    """

    def __init__(
        self,
        sq_entries: int = SQ_ENTRIES,
        cq_entries: int = CQ_ENTRIES,
        *,
        force_errno: int | None = None,
        soft: bool = False,
        setup_flags: int = PREFERRED_SETUP_FLAGS,
    ) -> None:
        ffi, lib = _load_native()
        self.ffi = ffi
        self.lib = lib
        self.soft = soft
        err = ffi.new("int *")
        poll_ns = poll_bound_ns()
        if soft:
            ptr = lib.rt_soft_ring_open(sq_entries, cq_entries, err)
            if ptr == ffi.NULL:
                code = err[0]
                cause = OSError(code, os.strerror(code))
                raise RingUnavailableError.cannot_start(
                    "its epoll backend could not be set up", cause
                ) from cause
        else:
            if force_errno is None:
                force_errno = _force_setup_errno
            ptr = lib.rt_ring_open(sq_entries, cq_entries, setup_flags, force_errno, err)
            if ptr == ffi.NULL:
                raise RingUnavailableError.from_errno(err[0])
            lib.rt_ring_set_poll(ptr, poll_ns, 0)
        self.ptr: Any = ptr
        try:
            self._describe()
        except BaseException:
            # (A MemoryError, say.)  The ring's fd must not outlive a
            # failed setup.
            self.close()
            raise

    def _describe(self) -> None:
        # The batch buffer and what the kernel says about the ring.
        ffi, lib, ptr = self.ffi, self.lib, self.ptr
        self.cqes = ffi.new("rt_cqe[]", CQE_BATCH)
        # A memoryview over the batch: struct.iter_unpack("QiI", ...) over a
        # slice of it is the cheapest way for Python to walk n CQEs.
        self.cqe_bytes = memoryview(ffi.buffer(self.cqes))
        self._stats = ffi.new("rt_ring_stats *")
        info = ffi.new("rt_ring_info *")
        lib.rt_ring_get_info(ptr, info)
        ops = ffi.new("uint8_t[256]")
        last = lib.rt_probe(ptr, ops)
        if not self.soft:
            self._check_usable(last)
        opcodes = (
            frozenset(i for i in range(min(last, 256)) if ops[i]) if last > 0 else frozenset()
        )
        self.fd: int = info.ring_fd
        self.features = RingFeatures(
            opcodes=opcodes,
            setup_flags=info.setup_flags,
            kernel_features=info.features,
            sq_entries=info.sq_entries,
            cq_entries=info.cq_entries,
        )

    def _check_usable(self, probe_result: int) -> None:
        """A kernel ring can be set up and still be unusable: a seccomp
        filter may allow io_uring_setup and refuse io_uring_enter or
        io_uring_register.  Find out now -- the probe was a register, and a
        NOP goes through an enter -- rather than at the run's first pass."""
        lib = self.lib
        call, rc = "io_uring_register", probe_result
        if rc >= 0 or -rc not in REFUSALS:
            call = "io_uring_enter"
            rc = lib.rt_prep(self.ptr, IORING_OP_NOP, 0, 0, -1, 0, 0, 0, 0, 0, 0, -1, 0)
            if rc >= 0:
                rc = lib.rt_pass(self.ptr, 1, 1_000_000_000, self.cqes, CQE_BATCH)
        if rc < 0:
            self.close()
            raise RingUnavailableError.from_errno(-rc, call)

    @property
    def backend(self) -> str:
        """``"io_uring"`` or ``"epoll"`` (the soft ring)."""
        return "epoll" if self.soft else "io_uring"

    def stats(self) -> tuple[int, int, int, int, int, int, int]:
        """(sqes_submitted, cqes_reaped, enters, overflows, polled_waits,
        poll_hits, poll_ns)."""
        s = self._stats
        self.lib.rt_ring_get_stats(self.ptr, s)
        return (
            s.sqes_submitted,
            s.cqes_reaped,
            s.enters,
            s.overflows,
            s.polled_waits,
            s.poll_hits,
            s.poll_ns,
        )

    def set_poll(self, max_ns: int, window_ns: int = 0) -> int:
        """Bound (0: off) and starting window of the polling before a wait
        (rt_ring_set_poll); returns the bound in effect, 0 where polling
        cannot work (the soft ring, kernels without the TASKRUN flag)."""
        return int(self.lib.rt_ring_set_poll(self.ptr, max_ns, window_ns))

    def close(self) -> None:
        if self.ptr is not None:
            self.lib.rt_ring_close(self.ptr)
            self.ptr = None

    @property
    def closed(self) -> bool:
        return self.ptr is None


def kernel_release() -> str:
    return os.uname().release
