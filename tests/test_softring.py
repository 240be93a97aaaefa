"""The soft ring (_native/softring.c) at the SQE/CQE boundary, through cffi.

Most tests here run twice: on a kernel io_uring ring and on a soft ring,
with the same SQEs and the same expected CQEs -- the kernel is the oracle
for what the emulation must do.  The tests at the end are about the soft
ring alone (its worker pool, its epoll registrations, its growing CQ) and
say so in their names.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import threading
import time

import pytest

from ringtrio._core import _ring as R
from ringtrio._native import ffi, lib

# Both rings directly, through cffi: no ringtrio.run, so nothing here depends
# on the backend a run picks (make test's epoll pass leaves it out).
pytestmark = pytest.mark.backend_independent

NO_DEADLINE = -1
CUR = 2**64 - 1  # "the current file position"
AT_FDCWD = -100
WANT = (
    lib.IORING_SETUP_SINGLE_ISSUER
    | lib.IORING_SETUP_DEFER_TASKRUN
    | lib.IORING_SETUP_SUBMIT_ALL
    | lib.IORING_SETUP_TASKRUN_FLAG
)
F_MORE = lib.IORING_CQE_F_MORE
F_BUFFER = lib.IORING_CQE_F_BUFFER
IORING_RECV_MULTISHOT = 1 << 1
IORING_ACCEPT_MULTISHOT = 1 << 0
IORING_OP_FTRUNCATE = 55
ERESTARTSYS = 512  # the kernel's own, never meant for userspace


def open_ring(kind: str, sq: int = 64, cq: int = 256):
    err = ffi.new("int *")
    if kind == "soft":
        r = lib.rt_soft_ring_open(sq, cq, err)
    else:
        r = lib.rt_ring_open(sq, cq, WANT, 0, err)
    assert r != ffi.NULL, os.strerror(err[0])
    return r


@pytest.fixture(params=["io_uring", "soft"])
def ring(request):
    r = open_ring(request.param)
    yield r
    lib.rt_ring_close(r)


@pytest.fixture
def soft():
    r = open_ring("soft")
    yield r
    lib.rt_ring_close(r)


def prep(r, opcode, *, fd=-1, addr=0, length=0, off=0, op_flags=0, ioprio=0,
         user_data=0, sqe_flags=0, buf_group=0, deadline=NO_DEADLINE, link_user_data=0):
    rc = lib.rt_prep(r, opcode, sqe_flags, ioprio, fd, addr, length, off, op_flags,
                     user_data, buf_group, deadline, link_user_data)
    assert rc == 0, os.strerror(-rc)


def pass_(r, wait_nr=0, timeout_ns=0):
    out = ffi.new("rt_cqe[256]")
    n = lib.rt_pass(r, wait_nr, timeout_ns, out, 256)
    assert n >= 0, os.strerror(-n)
    return [(c.user_data, c.res, c.flags) for c in out[0:n]]


def collect(r, n, *, timeout=60.0):
    """CQEs until `n` final ones (no F_MORE) arrived, in arrival order."""
    got = []
    limit = time.monotonic() + timeout
    while sum(1 for _, _, f in got if not f & F_MORE) < n:
        assert time.monotonic() < limit, f"only {got}"
        got.extend(pass_(r, 1, 20_000_000))
    return got


def next_cqe(r, *, timeout=60.0):
    """The next CQE, F_MORE or not."""
    limit = time.monotonic() + timeout
    while True:
        got = pass_(r, 1, 20_000_000)
        if got:
            assert len(got) == 1, got
            return got[0]
        assert time.monotonic() < limit


def finals(cqes):
    """{user_data: res} of the final CQEs."""
    out = {}
    for ud, res, flags in cqes:
        if not flags & F_MORE:
            assert ud not in out, f"two final CQEs for {ud}: {cqes}"
            out[ud] = res
    return out


def addr_of(cdata):
    return int(ffi.cast("uintptr_t", cdata))


def iovecs(*parts):
    """A struct iovec array over (cdata buffer, length) pairs."""
    flat = []
    for buf, n in parts:
        flat += [addr_of(buf), n]
    return ffi.new("uint64_t[]", flat)


def cpath(path):
    return ffi.new("char[]", os.fsencode(path))


def read_waits_then_gets(ring, rfd, wfd, data, *, off=CUR, user_data=1):
    """A READ on an empty pipe waits; written to, it gets the bytes."""
    buf = ffi.new("char[64]")
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=64, off=off, user_data=user_data)
    assert pass_(ring) == []
    os.write(wfd, data)
    assert finals(collect(ring, 1)) == {user_data: len(data)}
    assert ffi.buffer(buf, len(data))[:] == data


@pytest.fixture
def pipe():
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    yield rfd, wfd
    for fd in (rfd, wfd):
        try:
            os.close(fd)
        except OSError:
            pass


# ---------------------------------------------------------------------------
# Both backends: the kernel says what the soft ring must do
# ---------------------------------------------------------------------------


def test_nop_keeps_user_data(ring):
    prep(ring, lib.IORING_OP_NOP, user_data=0xFEDCBA9876543210)
    assert collect(ring, 1) == [(0xFEDCBA9876543210, 0, 0)]


def test_unknown_opcode_fails_with_einval(ring):
    prep(ring, 200, user_data=5)
    assert finals(collect(ring, 1)) == {5: -errno.EINVAL}


def test_relative_timeout_expires_with_etime(ring):
    t0 = time.monotonic()
    assert lib.rt_prep_timeout(ring, 3_000_000, 0, 0, 42, 0) == 0
    assert finals(collect(ring, 1)) == {42: -errno.ETIME}
    assert time.monotonic() - t0 >= 0.0025


def test_absolute_timeout(ring):
    deadline = time.monotonic_ns() + 2_000_000
    assert lib.rt_prep_timeout(ring, deadline, 0, lib.IORING_TIMEOUT_ABS, 7, 0) == 0
    assert finals(collect(ring, 1)) == {7: -errno.ETIME}
    assert time.monotonic_ns() >= deadline


def test_timeout_with_count_completes_after_that_many_cqes(ring):
    assert lib.rt_prep_timeout(ring, 10 * 10**9, 2, 0, 9, 0) == 0
    pass_(ring)
    prep(ring, lib.IORING_OP_NOP, user_data=1)
    prep(ring, lib.IORING_OP_NOP, user_data=2)
    assert finals(collect(ring, 3)) == {1: 0, 2: 0, 9: 0}


def test_cancel_timeout_by_user_data(ring):
    assert lib.rt_prep_timeout(ring, 10 * 10**9, 0, 0, 3, 0) == 0
    pass_(ring)
    prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=3, user_data=4)
    assert finals(collect(ring, 2)) == {3: -errno.ECANCELED, 4: 0}


def test_link_deadline_fires(ring, pipe):
    rfd, _ = pipe
    buf = ffi.new("char[16]")
    deadline = time.monotonic_ns() + 2_000_000
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=16, off=CUR,
         user_data=1, deadline=deadline, link_user_data=2)
    assert finals(collect(ring, 2)) == {1: -errno.ECANCELED, 2: -errno.ETIME}
    assert time.monotonic_ns() >= deadline


def test_link_deadline_not_reached(ring, pipe):
    rfd, wfd = pipe
    buf = ffi.new("char[16]")
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=16, off=CUR,
         user_data=1, deadline=time.monotonic_ns() + 60 * 10**9, link_user_data=2)
    assert pass_(ring) == []
    os.write(wfd, b"hello")
    assert finals(collect(ring, 2)) == {1: 5, 2: -errno.ECANCELED}
    assert ffi.buffer(buf, 5)[:] == b"hello"


def test_link_deadline_of_op_that_completes_at_once(ring, pipe):
    rfd, wfd = pipe
    os.write(wfd, b"ready")
    buf = ffi.new("char[16]")
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=16, off=CUR,
         user_data=1, deadline=time.monotonic_ns() + 60 * 10**9, link_user_data=2)
    assert finals(collect(ring, 2)) == {1: 5, 2: -errno.ECANCELED}


def test_async_cancel_of_a_waiting_read(ring, pipe):
    rfd, wfd = pipe
    buf = ffi.new("char[16]")
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=16, off=CUR, user_data=10)
    assert pass_(ring) == []
    prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=10, user_data=11)
    assert finals(collect(ring, 2)) == {10: -errno.ECANCELED, 11: 0}
    # The cancelled read took nothing: the bytes are still in the pipe.
    os.write(wfd, b"kept")
    assert os.read(rfd, 16) == b"kept"


def test_async_cancel_of_nothing_is_enoent(ring):
    prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=12345, user_data=11)
    assert finals(collect(ring, 1)) == {11: -errno.ENOENT}


def test_async_cancel_of_a_completed_op_is_enoent(ring):
    prep(ring, lib.IORING_OP_NOP, user_data=10)
    collect(ring, 1)
    prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=10, user_data=11)
    assert finals(collect(ring, 1)) == {11: -errno.ENOENT}


def test_async_cancel_any_all(ring):
    pipes = [os.pipe2(os.O_NONBLOCK) for _ in range(3)]
    try:
        bufs = [ffi.new("char[8]") for _ in pipes]
        for i, ((rfd, _), buf) in enumerate(zip(pipes, bufs)):
            prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=8, off=CUR, user_data=100 + i)
        assert pass_(ring) == []
        prep(ring, lib.IORING_OP_ASYNC_CANCEL, user_data=9,
             op_flags=lib.IORING_ASYNC_CANCEL_ANY | lib.IORING_ASYNC_CANCEL_ALL)
        assert finals(collect(ring, 4)) == {100: -errno.ECANCELED, 101: -errno.ECANCELED,
                                            102: -errno.ECANCELED, 9: 3}
    finally:
        for a, b in pipes:
            os.close(a)
            os.close(b)


def test_async_cancel_by_fd(ring, pipe):
    rfd, _ = pipe
    buf = ffi.new("char[8]")
    prep(ring, lib.IORING_OP_POLL_ADD, fd=rfd, op_flags=select.POLLIN, user_data=1)
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=8, off=CUR, user_data=2)
    assert pass_(ring) == []
    prep(ring, lib.IORING_OP_ASYNC_CANCEL, fd=rfd, user_data=9,
         op_flags=lib.IORING_ASYNC_CANCEL_FD | lib.IORING_ASYNC_CANCEL_ALL)
    assert finals(collect(ring, 3)) == {1: -errno.ECANCELED, 2: -errno.ECANCELED, 9: 2}


def test_cqe_skip_success(ring):
    prep(ring, lib.IORING_OP_NOP, user_data=1, sqe_flags=lib.IOSQE_CQE_SKIP_SUCCESS)
    prep(ring, lib.IORING_OP_CLOSE, fd=-1, user_data=2, sqe_flags=lib.IOSQE_CQE_SKIP_SUCCESS)
    prep(ring, lib.IORING_OP_NOP, user_data=3)
    # The skipped success leaves no trace; the failure is reported.
    assert finals(collect(ring, 2)) == {2: -errno.EBADF, 3: 0}


def test_poll_add(ring, pipe):
    rfd, wfd = pipe
    prep(ring, lib.IORING_OP_POLL_ADD, fd=wfd, op_flags=select.POLLOUT, user_data=1)
    prep(ring, lib.IORING_OP_POLL_ADD, fd=rfd, op_flags=select.POLLIN, user_data=2)
    got = finals(collect(ring, 1))
    assert got == {1: select.POLLOUT}
    os.write(wfd, b"x")
    assert finals(collect(ring, 1)) == {2: select.POLLIN}


def test_poll_add_reports_hangup(ring, pipe):
    rfd, wfd = pipe
    prep(ring, lib.IORING_OP_POLL_ADD, fd=rfd, op_flags=select.POLLIN, user_data=1)
    assert pass_(ring) == []
    os.close(wfd)
    (res,) = finals(collect(ring, 1)).values()
    assert res & select.POLLHUP


def test_read_and_write_on_a_pipe(ring, pipe):
    rfd, wfd = pipe
    data = ffi.new("char[]", b"through the pipe")
    buf = ffi.new("char[64]")
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=64, off=CUR, user_data=1)
    prep(ring, lib.IORING_OP_WRITE, fd=wfd, addr=addr_of(data), length=16, off=CUR, user_data=2)
    assert finals(collect(ring, 2)) == {1: 16, 2: 16}
    assert ffi.buffer(buf, 16)[:] == b"through the pipe"


def test_read_at_offset_zero_on_a_pipe(ring, pipe):
    # The runtime's wake-up read uses offset 0 on a pipe: the kernel takes
    # it as "where the pipe is".
    rfd, wfd = pipe
    read_waits_then_gets(ring, rfd, wfd, b"\0", off=0)


def test_read_from_a_blocking_pipe_waits_without_blocking(ring):
    rfd, wfd = os.pipe()   # blocking mode
    try:
        read_waits_then_gets(ring, rfd, wfd, b"abc")
    finally:
        os.close(rfd)
        os.close(wfd)


def test_bad_fd(ring):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    buf = ffi.new("char[8]")
    prep(ring, lib.IORING_OP_READ, fd=r, addr=addr_of(buf), length=8, off=CUR, user_data=1)
    prep(ring, lib.IORING_OP_RECV, fd=r, addr=addr_of(buf), length=8, user_data=2)
    assert finals(collect(ring, 2)) == {1: -errno.EBADF, 2: -errno.EBADF}


def test_file_read_write_readv_writev(ring, tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        data = ffi.new("char[]", b"0123456789")
        prep(ring, lib.IORING_OP_WRITE, fd=fd, addr=addr_of(data), length=10, off=0, user_data=1)
        assert finals(collect(ring, 1)) == {1: 10}
        a, b = ffi.new("char[4]"), ffi.new("char[8]")
        iov = iovecs((a, 4), (b, 8))
        prep(ring, lib.IORING_OP_READV, fd=fd, addr=addr_of(iov), length=2, off=2, user_data=2)
        assert finals(collect(ring, 1)) == {2: 8}
        assert ffi.buffer(a)[:] + ffi.buffer(b, 4)[:] == b"23456789"
        w1, w2 = ffi.new("char[]", b"AB"), ffi.new("char[]", b"CD")
        wiov = iovecs((w1, 2), (w2, 2))
        prep(ring, lib.IORING_OP_WRITEV, fd=fd, addr=addr_of(wiov), length=2, off=8, user_data=3)
        assert finals(collect(ring, 1)) == {3: 4}
        assert path.read_bytes() == b"01234567ABCD"
        # The current position: READ with offset -1 moves it.
        os.lseek(fd, 4, os.SEEK_SET)
        c = ffi.new("char[3]")
        prep(ring, lib.IORING_OP_READ, fd=fd, addr=addr_of(c), length=3, off=CUR, user_data=4)
        assert finals(collect(ring, 1)) == {4: 3}
        assert ffi.buffer(c)[:] == b"456" and os.lseek(fd, 0, os.SEEK_CUR) == 7
        # Forced into io-wq (a worker thread on the soft ring): the same.
        d = ffi.new("char[12]")
        prep(ring, lib.IORING_OP_READ, fd=fd, addr=addr_of(d), length=12, off=0, user_data=5,
             sqe_flags=lib.IOSQE_ASYNC)
        assert finals(collect(ring, 1)) == {5: 12}
        assert ffi.buffer(d)[:] == b"01234567ABCD"
    finally:
        os.close(fd)


def test_read_past_end_of_file(ring, tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"abc")
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = ffi.new("char[100]")
        prep(ring, lib.IORING_OP_READ, fd=fd, addr=addr_of(buf), length=100, off=0, user_data=1)
        prep(ring, lib.IORING_OP_READ, fd=fd, addr=addr_of(buf), length=100, off=3, user_data=2)
        assert finals(collect(ring, 2)) == {1: 3, 2: 0}
    finally:
        os.close(fd)


def test_path_ops(ring, tmp_path):
    d = cpath(tmp_path / "dir")
    f = cpath(tmp_path / "dir" / "file")
    g = cpath(tmp_path / "dir" / "renamed")
    ln = cpath(tmp_path / "dir" / "symlink")
    hard = cpath(tmp_path / "dir" / "hard")
    prep(ring, R.IORING_OP_MKDIRAT, fd=AT_FDCWD, addr=addr_of(d), length=0o755, user_data=1)
    assert finals(collect(ring, 1)) == {1: 0}
    assert (tmp_path / "dir").is_dir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    prep(ring, lib.IORING_OP_OPENAT, fd=AT_FDCWD, addr=addr_of(f), length=0o644, op_flags=flags, user_data=2)
    (fd,) = finals(collect(ring, 1)).values()
    assert fd >= 0
    try:
        assert not os.get_blocking(fd) is False  # the caller's flags: blocking
        prep(ring, IORING_OP_FTRUNCATE, fd=fd, off=1234, user_data=3)
        prep(ring, lib.IORING_OP_FSYNC, fd=fd, user_data=4)
        assert finals(collect(ring, 2)) == {3: 0, 4: 0}
    finally:
        prep(ring, lib.IORING_OP_CLOSE, fd=fd, user_data=5)
        assert finals(collect(ring, 1)) == {5: 0}
    statx = ffi.new("char[256]")
    prep(ring, lib.IORING_OP_STATX, fd=AT_FDCWD, addr=addr_of(f), length=0x7FF, off=addr_of(statx),
         user_data=6)
    assert finals(collect(ring, 1)) == {6: 0}
    (size,) = struct.unpack_from("=Q", ffi.buffer(statx), 40)
    assert size == 1234
    prep(ring, R.IORING_OP_RENAMEAT, fd=AT_FDCWD, addr=addr_of(f), length=AT_FDCWD & 0xFFFFFFFF,
         off=addr_of(g), user_data=7)
    assert finals(collect(ring, 1)) == {7: 0}
    prep(ring, R.IORING_OP_SYMLINKAT, fd=AT_FDCWD, addr=addr_of(g), off=addr_of(ln), user_data=8)
    prep(ring, R.IORING_OP_LINKAT, fd=AT_FDCWD, addr=addr_of(g), length=AT_FDCWD & 0xFFFFFFFF,
         off=addr_of(hard), user_data=9)
    assert finals(collect(ring, 2)) == {8: 0, 9: 0}
    assert os.readlink(tmp_path / "dir" / "symlink") == str(tmp_path / "dir" / "renamed")
    assert os.stat(tmp_path / "dir" / "hard").st_nlink == 2
    for i, p in enumerate((g, ln, hard)):
        prep(ring, R.IORING_OP_UNLINKAT, fd=AT_FDCWD, addr=addr_of(p), user_data=10 + i)
    assert finals(collect(ring, 3)) == {10: 0, 11: 0, 12: 0}
    prep(ring, R.IORING_OP_UNLINKAT, fd=AT_FDCWD, addr=addr_of(d), op_flags=0x200, user_data=20)
    assert finals(collect(ring, 1)) == {20: 0}
    assert not (tmp_path / "dir").exists()


def test_path_op_errors(ring, tmp_path):
    missing = cpath(tmp_path / "missing")
    prep(ring, lib.IORING_OP_OPENAT, fd=AT_FDCWD, addr=addr_of(missing), op_flags=os.O_RDONLY, user_data=1)
    statx = ffi.new("char[256]")
    prep(ring, lib.IORING_OP_STATX, fd=AT_FDCWD, addr=addr_of(missing), length=0x7FF,
         off=addr_of(statx), user_data=2)
    prep(ring, R.IORING_OP_UNLINKAT, fd=AT_FDCWD, addr=addr_of(missing), user_data=3)
    assert finals(collect(ring, 3)) == {1: -errno.ENOENT, 2: -errno.ENOENT, 3: -errno.ENOENT}


def test_soft_link_breaks_on_a_short_read(ring, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = ffi.new("char[100]")
        prep(ring, lib.IORING_OP_READ, fd=fd, addr=addr_of(buf), length=100, off=0, user_data=1,
             sqe_flags=lib.IOSQE_IO_LINK)
        prep(ring, lib.IORING_OP_NOP, user_data=2)
        assert finals(collect(ring, 2)) == {1: 3, 2: -errno.ECANCELED}
        # A hard link does not break.
        prep(ring, lib.IORING_OP_READ, fd=fd, addr=addr_of(buf), length=100, off=0, user_data=3,
             sqe_flags=lib.IOSQE_IO_HARDLINK)
        prep(ring, lib.IORING_OP_NOP, user_data=4)
        assert finals(collect(ring, 2)) == {3: 3, 4: 0}
        # A full read keeps the soft link.
        prep(ring, lib.IORING_OP_READ, fd=fd, addr=addr_of(buf), length=3, off=0, user_data=5,
             sqe_flags=lib.IOSQE_IO_LINK)
        prep(ring, lib.IORING_OP_NOP, user_data=6)
        assert finals(collect(ring, 2)) == {5: 3, 6: 0}
    finally:
        os.close(fd)


def test_failed_member_cancels_the_rest_of_a_chain(ring):
    prep(ring, lib.IORING_OP_CLOSE, fd=-1, user_data=1, sqe_flags=lib.IOSQE_IO_LINK)
    prep(ring, lib.IORING_OP_NOP, user_data=2, sqe_flags=lib.IOSQE_IO_LINK)
    prep(ring, lib.IORING_OP_NOP, user_data=3)
    prep(ring, lib.IORING_OP_NOP, user_data=4)
    got = collect(ring, 4)
    assert finals(got) == {1: -errno.EBADF, 2: -errno.ECANCELED, 3: -errno.ECANCELED, 4: 0}
    # In chain order.
    assert [ud for ud, _, _ in got if ud != 4] == [1, 2, 3]


def test_chain_members_wait_for_their_predecessor(ring, pipe):
    rfd, wfd = pipe
    buf = ffi.new("char[8]")
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=1, off=CUR, user_data=1,
         sqe_flags=lib.IOSQE_IO_LINK)
    prep(ring, lib.IORING_OP_NOP, user_data=2)
    assert pass_(ring) == []
    # The second member is in no list a cancel searches.
    prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=2, user_data=3)
    assert finals(collect(ring, 1)) == {3: -errno.ENOENT}
    os.write(wfd, b"x")
    assert finals(collect(ring, 2)) == {1: 1, 2: 0}


def test_direct_descriptor_chain(ring, tmp_path):
    path = tmp_path / "small"
    path.write_bytes(b"x" * 5000)
    assert lib.rt_files_register_sparse(ring, 4) == 0
    bpath = os.fsencode(path)
    buf = ffi.new("char[8192]")
    rc = lib.rt_prep_open_chain(ring, AT_FDCWD, bpath, os.O_RDONLY, 0, 2, lib.IORING_OP_READ,
                                addr_of(buf), 4096, addr_of(buf) + 4096, 4096, 1, 2, 3)
    assert rc == 0
    assert finals(collect(ring, 3)) == {1: 0, 2: 4096, 3: 904}
    assert ffi.buffer(buf, 5000)[:] == b"x" * 5000
    # Closing the slot: skipped on success, an error when the slot is empty.
    assert lib.rt_prep_close_direct(ring, 2, 4, lib.IOSQE_CQE_SKIP_SUCCESS) == 0
    assert lib.rt_prep_close_direct(ring, 2, 5, lib.IOSQE_CQE_SKIP_SUCCESS) == 0
    assert finals(collect(ring, 1)) == {5: -errno.EBADF}
    # A failed open cancels the chain's reads.
    missing = os.fsencode(tmp_path / "missing")
    rc = lib.rt_prep_open_chain(ring, AT_FDCWD, missing, os.O_RDONLY, 0, 1, lib.IORING_OP_READ,
                                addr_of(buf), 4096, addr_of(buf) + 4096, 4096, 6, 7, 8)
    assert rc == 0
    assert finals(collect(ring, 3)) == {6: -errno.ENOENT, 7: -errno.ECANCELED, 8: -errno.ECANCELED}
    assert lib.rt_files_unregister(ring) == 0


def test_fixed_file_on_an_empty_slot(ring):
    assert lib.rt_files_register_sparse(ring, 2) == 0
    buf = ffi.new("char[8]")
    prep(ring, lib.IORING_OP_READ, fd=1, addr=addr_of(buf), length=8, off=CUR, user_data=1,
         sqe_flags=lib.IOSQE_FIXED_FILE)
    assert finals(collect(ring, 1)) == {1: -errno.EBADF}


@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_send_recv(ring, sockpair):
    a, b = sockpair
    buf = ffi.new("char[64]")
    prep(ring, lib.IORING_OP_RECV, fd=b.fileno(), addr=addr_of(buf), length=64, user_data=1)
    assert pass_(ring) == []
    data = ffi.new("char[]", b"ping")
    prep(ring, lib.IORING_OP_SEND, fd=a.fileno(), addr=addr_of(data), length=4,
         op_flags=socket.MSG_NOSIGNAL, user_data=2)
    assert finals(collect(ring, 2)) == {1: 4, 2: 4}
    assert ffi.buffer(buf, 4)[:] == b"ping"
    a.shutdown(socket.SHUT_WR)
    prep(ring, lib.IORING_OP_RECV, fd=b.fileno(), addr=addr_of(buf), length=64, user_data=3)
    assert finals(collect(ring, 1)) == {3: 0}


def test_recv_waitall_waits_for_everything(ring, sockpair):
    a, b = sockpair
    buf = ffi.new("char[8]")
    prep(ring, lib.IORING_OP_RECV, fd=b.fileno(), addr=addr_of(buf), length=8,
         op_flags=socket.MSG_WAITALL, user_data=1)
    a.send(b"1234")
    assert [c for c in pass_(ring) if c[0] == 1] == []
    a.send(b"5678")
    assert finals(collect(ring, 1)) == {1: 8}
    assert ffi.buffer(buf)[:] == b"12345678"


def test_send_to_a_closed_peer(ring, sockpair):
    a, b = sockpair
    b.close()
    data = ffi.new("char[]", b"x")
    prep(ring, lib.IORING_OP_SEND, fd=a.fileno(), addr=addr_of(data), length=1,
         op_flags=socket.MSG_NOSIGNAL, user_data=1)
    assert finals(collect(ring, 1)) == {1: -errno.EPIPE}


def test_sendmsg_recvmsg(ring):
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        b.bind(("127.0.0.1", 0))
        a.connect(b.getsockname())
        data = ffi.new("char[]", b"datagram")
        siov = iovecs((data, 8))
        smsg = ffi.new("char[56]")
        struct.pack_into("=QI4xQQQQi4x", ffi.buffer(smsg), 0, 0, 0, addr_of(siov), 1, 0, 0, 0)
        rbuf = ffi.new("char[32]")
        riov = iovecs((rbuf, 32))
        name = ffi.new("char[128]")
        rmsg = ffi.new("char[56]")
        struct.pack_into("=QI4xQQQQi4x", ffi.buffer(rmsg), 0, addr_of(name), 128, addr_of(riov), 1, 0, 0, 0)
        prep(ring, lib.IORING_OP_RECVMSG, fd=b.fileno(), addr=addr_of(rmsg), length=1, user_data=1)
        assert pass_(ring) == []
        prep(ring, lib.IORING_OP_SENDMSG, fd=a.fileno(), addr=addr_of(smsg), length=1, user_data=2)
        assert finals(collect(ring, 2)) == {1: 8, 2: 8}
        assert ffi.buffer(rbuf, 8)[:] == b"datagram"
    finally:
        a.close()
        b.close()


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    s.setblocking(False)
    yield s
    s.close()


def test_accept_connect(ring, listener):
    addrbuf = ffi.new("char[128]")
    lenbuf = ffi.new("uint32_t *", 128)
    prep(ring, lib.IORING_OP_ACCEPT, fd=listener.fileno(), addr=addr_of(addrbuf), off=addr_of(lenbuf),
         op_flags=socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, user_data=1)
    assert pass_(ring) == []
    c = socket.socket()
    c.setblocking(False)
    try:
        sa = ffi.new("char[]", struct.pack("=HH4s8x", socket.AF_INET, socket.htons(listener.getsockname()[1]),
                                           socket.inet_aton("127.0.0.1")))
        prep(ring, lib.IORING_OP_CONNECT, fd=c.fileno(), addr=addr_of(sa), off=16, user_data=2)
        got = finals(collect(ring, 2))
        assert got[2] == 0 and got[1] >= 0
        assert not os.get_blocking(got[1])   # SOCK_NONBLOCK was asked for
        accepted = socket.socket(fileno=got[1])
        try:
            assert accepted.getpeername() == c.getsockname()
            assert lenbuf[0] == 16
            port = struct.unpack_from("!H", ffi.buffer(addrbuf), 2)[0]
            assert port == c.getsockname()[1]
        finally:
            accepted.close()
    finally:
        c.close()


def test_connect_refused(ring):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = socket.socket()
    c.setblocking(False)
    try:
        sa = ffi.new("char[]", struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port),
                                           socket.inet_aton("127.0.0.1")))
        prep(ring, lib.IORING_OP_CONNECT, fd=c.fileno(), addr=addr_of(sa), off=16, user_data=1)
        assert finals(collect(ring, 1)) == {1: -errno.ECONNREFUSED}
    finally:
        c.close()


def test_multishot_accept(ring, listener):
    prep(ring, lib.IORING_OP_ACCEPT, fd=listener.fileno(), ioprio=IORING_ACCEPT_MULTISHOT,
         op_flags=socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, user_data=1)
    assert pass_(ring) == []
    clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
    fds = []
    try:
        limit = time.monotonic() + 60  # ends a hang only
        while len(fds) < 3:
            assert time.monotonic() < limit
            for ud, res, flags in pass_(ring, 1, 20_000_000):
                assert ud == 1 and flags & F_MORE and res >= 0
                fds.append(res)
        prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=1, user_data=2)
        assert finals(collect(ring, 2)) == {1: -errno.ECANCELED, 2: 0}
    finally:
        for fd in fds:
            os.close(fd)
        for c in clients:
            c.close()


def make_group(ring, bgid, count, size, flags=0):
    err = ffi.new("int *")
    br = lib.rt_buf_ring_new(ring, bgid, count, size, flags, err)
    assert br != ffi.NULL, os.strerror(err[0])
    return br


@contextlib.contextmanager
def group(ring, bgid, count, size, flags=0):
    """A provided-buffer ring for the test: (its handle, buffer 0's address)."""
    br = make_group(ring, bgid, count, size, flags)
    try:
        yield br, ffi.cast("char *", lib.rt_buf_ring_base(br))
    finally:
        assert lib.rt_buf_ring_free(ring, br) == 0


def multishot_recv(ring, sock, bgid, user_data=1):
    prep(ring, lib.IORING_OP_RECV, fd=sock.fileno(), ioprio=IORING_RECV_MULTISHOT, user_data=user_data,
         sqe_flags=lib.IOSQE_BUFFER_SELECT, buf_group=bgid)


def select_recv(ring, sock, bgid, user_data, length=0):
    prep(ring, lib.IORING_OP_RECV, fd=sock.fileno(), length=length, user_data=user_data,
         sqe_flags=lib.IOSQE_BUFFER_SELECT, buf_group=bgid)


def test_recv_with_buffer_select(ring, sockpair):
    a, b = sockpair
    with group(ring, 7, 4, 4096) as (br, base):
        seen = []
        for i in range(6):    # more receives than buffers: recycling
            a.send(b"ping%d" % i)
            select_recv(ring, b, 7, 100 + i)
            ((ud, res, flags),) = collect(ring, 1)
            assert res == 5 and flags & F_BUFFER
            bid = flags >> 16
            assert ffi.buffer(base + bid * 4096, res)[:] == b"ping%d" % i
            seen.append(bid)
            lib.rt_buf_ring_recycle(br, bid)
        assert seen == [0, 1, 2, 3, 0, 1]


def test_recv_with_buffer_select_limited_by_len(ring, sockpair):
    a, b = sockpair
    with group(ring, 3, 2, 4096):
        a.send(b"0123456789")
        select_recv(ring, b, 3, 1, length=4)
        ((_, res, flags),) = collect(ring, 1)
        assert res == 4 and flags >> 16 == 0


def test_recv_with_an_empty_group_is_enobufs(ring, sockpair):
    a, b = sockpair
    with group(ring, 4, 1, 64):
        a.send(b"one")
        select_recv(ring, b, 4, 1)
        assert finals(collect(ring, 1)) == {1: 3}
        a.send(b"two")
        select_recv(ring, b, 4, 2)
        assert finals(collect(ring, 1)) == {2: -errno.ENOBUFS}
        assert b.recv(16) == b"two"     # nothing lost


def test_multishot_recv(ring, sockpair):
    a, b = sockpair
    with group(ring, 5, 8, 4096) as (br, base):
        multishot_recv(ring, b, 5)
        assert pass_(ring) == []
        received = b""
        for i in range(3):
            a.send(b"chunk%d;" % i)
            while len(received) < 7 * (i + 1):
                ud, res, flags = next_cqe(ring)
                assert ud == 1 and flags & F_MORE and flags & F_BUFFER
                bid = flags >> 16
                received += ffi.buffer(base + bid * 4096, res)[:]
                lib.rt_buf_ring_recycle(br, bid)
        assert received == b"chunk0;chunk1;chunk2;"
        a.shutdown(socket.SHUT_WR)
        ((ud, res, flags),) = collect(ring, 1)
        assert (ud, res) == (1, 0) and not flags & F_MORE


def test_multishot_recv_ends_with_enobufs_and_loses_nothing(ring, sockpair):
    a, b = sockpair
    with group(ring, 6, 2, 4):
        a.send(b"aaaabbbbcccc")
        multishot_recv(ring, b, 6)
        got = collect(ring, 1)
        assert [(res, bool(f & F_MORE)) for _, res, f in got] == [(4, True), (4, True), (-errno.ENOBUFS, False)]
        assert b.recv(16) == b"cccc"


def test_multishot_recv_incremental_buffers(ring, sockpair):
    a, b = sockpair
    with group(ring, 8, 2, 1024, lib.IOU_PBUF_RING_INC) as (br, base):
        multishot_recv(ring, b, 8)
        assert pass_(ring) == []
        offsets = {}
        for word in (b"one", b"two", b"three"):
            a.send(word)
            ud, res, flags = next_cqe(ring)
            bid = flags >> 16
            assert flags & lib.IORING_CQE_F_BUF_MORE and flags & F_MORE
            off = offsets.get(bid, 0)
            assert ffi.buffer(base + bid * 1024 + off, res)[:] == word
            offsets[bid] = off + res
        assert offsets == {0: 11}
        prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=1, user_data=2)
        assert finals(collect(ring, 2)) == {1: -errno.ECANCELED, 2: 0}


def test_duplicate_buffer_group(ring):
    br = make_group(ring, 2, 8, 512)
    try:
        err = ffi.new("int *")
        assert lib.rt_buf_ring_new(ring, 2, 8, 512, 0, err) == ffi.NULL
        assert err[0] == errno.EEXIST
    finally:
        lib.rt_buf_ring_free(ring, br)


def test_full_sq_submits_first_and_keeps_pairs():
    for kind in ("io_uring", "soft"):
        r = open_ring(kind, sq=4, cq=64)
        try:
            for i in range(3):
                prep(r, lib.IORING_OP_NOP, user_data=i)
            assert lib.rt_sq_space(r) == 1
            prep(r, lib.IORING_OP_NOP, user_data=3, deadline=time.monotonic_ns() + 10**9, link_user_data=4)
            assert lib.rt_sq_pending(r) == 2
            assert finals(collect(r, 5)) == {0: 0, 1: 0, 2: 0, 3: 0, 4: -errno.ECANCELED}
        finally:
            lib.rt_ring_close(r)


def test_wait_with_timeout_sleeps(ring):
    # (A wait may end early with EINTR -- task work of a ring that was
    # just closed interrupts it, on either backend -- but it never spins.)
    t0 = time.monotonic()
    passes = 0
    while time.monotonic() - t0 < 0.02:
        assert pass_(ring, 1, 5_000_000) == []
        passes += 1
    assert passes < 20


def test_idle_pass_makes_no_syscall(ring):
    s = ffi.new("rt_ring_stats *")
    lib.rt_ring_get_stats(ring, s)
    before = s.enters
    for _ in range(10):
        assert pass_(ring) == []
    lib.rt_ring_get_stats(ring, s)
    assert s.enters == before


# ---------------------------------------------------------------------------
# The soft ring alone
# ---------------------------------------------------------------------------

PROJECT_OPCODES = [
    "NOP", "READV", "WRITEV", "FSYNC", "POLL_ADD", "SENDMSG", "RECVMSG", "TIMEOUT", "ACCEPT",
    "ASYNC_CANCEL", "LINK_TIMEOUT", "CONNECT", "OPENAT", "CLOSE", "STATX", "READ", "WRITE",
    "SEND", "RECV", "RENAMEAT", "UNLINKAT", "MKDIRAT", "SYMLINKAT", "LINKAT", "WAITID",
]


def test_soft_probe_reports_every_opcode_the_project_submits(soft):
    ops = ffi.new("uint8_t[256]")
    last = lib.rt_probe(soft, ops)
    assert last > IORING_OP_FTRUNCATE
    for name in PROJECT_OPCODES:
        assert ops[getattr(R, "IORING_OP_" + name)] == 1, name
    assert ops[IORING_OP_FTRUNCATE] == 1
    assert ops[lib.IORING_OP_SPLICE] == 0


def test_soft_info(soft):
    info = ffi.new("rt_ring_info *")
    lib.rt_ring_get_info(soft, info)
    assert info.sq_entries == 64 and info.cq_entries == 256 and info.setup_flags == 0
    assert info.features & lib.IORING_FEAT_NODROP


def test_soft_cq_grows_instead_of_overflowing():
    r = open_ring("soft", sq=8, cq=16)
    try:
        for i in range(200):
            prep(r, lib.IORING_OP_NOP, user_data=i)   # a full SQ is consumed on the way
        lib.rt_enter(r, 0, 0)
        got = []
        out = ffi.new("rt_cqe[64]")
        while True:
            n = lib.rt_pass(r, 0, 0, out, 64)
            if not n:
                break
            got.extend(c.user_data for c in out[0:n])
        assert got == list(range(200))
    finally:
        lib.rt_ring_close(r)


def _mkfifo(tmp_path, name="fifo"):
    path = tmp_path / name
    os.mkfifo(path)
    return path


def fifo_open(r, fifo, user_data, **kw):
    """An OPENAT that a worker runs (O_CREAT sends it there) and that
    blocks until a writer opens the FIFO."""
    prep(r, lib.IORING_OP_OPENAT, fd=AT_FDCWD, addr=addr_of(fifo), op_flags=os.O_RDONLY | os.O_CREAT,
         length=0o600, user_data=user_data, **kw)


def wait_blocked_in_fifo_open(n, timeout=60.0):
    """Until `n` threads of this process are blocked opening a FIFO."""
    limit = time.monotonic() + timeout
    while True:
        blocked = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/wchan") as f:
                    blocked += f.read() == "wait_for_partner"
            except OSError:
                pass
        if blocked >= n:
            return
        assert time.monotonic() < limit, f"{blocked} of {n} workers blocked"
        time.sleep(0.005)


def test_cancel_of_an_op_a_worker_runs(ring, tmp_path):
    # A worker (io-wq's on the kernel) is blocked in the open: the cancel
    # answers -EALREADY and interrupts it, and the open ends with -EINTR.
    fifo = cpath(_mkfifo(tmp_path))
    fifo_open(ring, fifo, 1)
    assert pass_(ring) == []
    wait_blocked_in_fifo_open(1)
    prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=1, user_data=2)
    got = finals(collect(ring, 2))
    # (The kernel lets the interrupted open's ERESTARTSYS, 512, out; the soft
    # ring says -EINTR.  ringtrio takes either as "it did not happen".)
    assert got[2] == -errno.EALREADY and got[1] in (-errno.EINTR, -ERESTARTSYS)


def test_soft_link_timeout_of_an_op_a_worker_runs(soft, tmp_path):
    # The deadline fires while a worker runs the op: the timeout answers
    # -EALREADY and the op, interrupted, ends with -ECANCELED, as an op its
    # linked timeout stopped does.  (The kernel does not fire a linked
    # timeout while io-wq runs the op: the open goes on until a writer
    # comes, and the timeout then answers -ENOENT.  A documented
    # difference: the soft ring keeps the deadline.)
    fifo = cpath(_mkfifo(tmp_path))
    fifo_open(soft, fifo, 1, deadline=time.monotonic_ns() + 50_000_000, link_user_data=2)
    assert finals(collect(soft, 2)) == {1: -errno.ECANCELED, 2: -errno.EALREADY}


def test_soft_cancel_of_a_queued_job_is_ecanceled(soft, tmp_path):
    # Every worker blocked on a FIFO: one more job stays queued, and a
    # cancel takes it back (-ECANCELED for it, 0 for the cancel).
    fifo_path = _mkfifo(tmp_path)
    fifo = cpath(fifo_path)
    nworkers = min(64, max(4, 4 * (os.cpu_count() or 1)))
    for i in range(nworkers):
        fifo_open(soft, fifo, 100 + i)
    d = cpath(tmp_path / "d")
    prep(soft, R.IORING_OP_MKDIRAT, fd=AT_FDCWD, addr=addr_of(d), length=0o700, user_data=1)
    assert pass_(soft) == []
    wait_blocked_in_fifo_open(nworkers)
    prep(soft, lib.IORING_OP_ASYNC_CANCEL, addr=1, user_data=2)
    assert finals(collect(soft, 2)) == {1: -errno.ECANCELED, 2: 0}
    assert not (tmp_path / "d").exists()
    w = os.open(fifo_path, os.O_WRONLY)
    try:
        got = finals(collect(soft, nworkers))
        assert sorted(got) == list(range(100, 100 + nworkers))
        for fd in got.values():
            assert fd >= 0
            os.close(fd)
    finally:
        os.close(w)


def test_soft_close_with_a_blocked_worker_does_not_wait(tmp_path):
    fifo_path = _mkfifo(tmp_path)
    fifo = cpath(fifo_path)
    r = open_ring("soft")
    fifo_open(r, fifo, 1)
    assert pass_(r) == []
    wait_blocked_in_fifo_open(1)
    # The close runs in a thread: one that waited for the blocked open would
    # wait until a writer comes, and the test says so instead of hanging
    # (no timing: a close that does not wait ends at once, a loaded machine
    # or not).
    closer = threading.Thread(target=lib.rt_ring_close, args=(r,), daemon=True)
    closer.start()
    closer.join(60)
    closed = not closer.is_alive()
    # The worker was interrupted, or finishes when a writer comes and then
    # cleans up after itself (closes the fd nobody will get a CQE for).
    try:
        os.close(os.open(fifo_path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:
        assert exc.errno == errno.ENXIO    # no reader left: it was interrupted
    assert closed, "rt_ring_close waited for a worker blocked in open()"


def test_soft_fd_number_reused_after_close(soft):
    # A read waits on a pipe and is cancelled; the pipe is closed and a new
    # one gets the same fd number: a read on it must still be woken.
    r1, w1 = os.pipe2(os.O_NONBLOCK)
    buf = ffi.new("char[8]")
    prep(soft, lib.IORING_OP_READ, fd=r1, addr=addr_of(buf), length=8, off=CUR, user_data=1)
    assert pass_(soft) == []
    prep(soft, lib.IORING_OP_ASYNC_CANCEL, addr=1, user_data=2)
    collect(soft, 2)
    os.close(r1)
    os.close(w1)
    r2, w2 = os.pipe2(os.O_NONBLOCK)
    try:
        assert r2 == r1
        read_waits_then_gets(soft, r2, w2, b"new", user_data=3)
    finally:
        os.close(r2)
        os.close(w2)


def test_soft_two_ops_on_one_fd(soft, sockpair):
    a, b = sockpair
    buf = ffi.new("char[8]")
    prep(soft, lib.IORING_OP_RECV, fd=b.fileno(), addr=addr_of(buf), length=8, user_data=1)
    prep(soft, lib.IORING_OP_POLL_ADD, fd=b.fileno(), op_flags=select.POLLOUT, user_data=2)
    assert finals(collect(soft, 1)) == {2: select.POLLOUT}
    a.send(b"hi")
    assert finals(collect(soft, 1)) == {1: 2}


def test_soft_poll_on_a_regular_file_is_ready(soft, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        prep(soft, lib.IORING_OP_POLL_ADD, fd=fd, op_flags=select.POLLIN | select.POLLOUT, user_data=1)
        assert finals(collect(soft, 1)) == {1: select.POLLIN | select.POLLOUT}
    finally:
        os.close(fd)


def test_soft_open_of_a_fifo_has_the_kernels_nonblocking_rules(soft, tmp_path):
    # The kernel's inline open adds O_NONBLOCK and takes it off again: a
    # FIFO opened for reading without a writer opens at once (and is
    # blocking afterwards), one opened for writing without a reader fails
    # with ENXIO.  (Verified against io_uring in the next test.)
    fifo = cpath(_mkfifo(tmp_path))
    prep(soft, lib.IORING_OP_OPENAT, fd=AT_FDCWD, addr=addr_of(fifo), op_flags=os.O_RDONLY, user_data=1)
    (fd,) = finals(collect(soft, 1)).values()
    assert fd >= 0
    try:
        assert os.get_blocking(fd)
    finally:
        os.close(fd)
    prep(soft, lib.IORING_OP_OPENAT, fd=AT_FDCWD, addr=addr_of(fifo), op_flags=os.O_WRONLY, user_data=2)
    assert finals(collect(soft, 1)) == {2: -errno.ENXIO}


def test_io_uring_open_of_a_fifo(tmp_path):
    r = open_ring("io_uring")
    try:
        fifo = cpath(_mkfifo(tmp_path))
        prep(r, lib.IORING_OP_OPENAT, fd=AT_FDCWD, addr=addr_of(fifo), op_flags=os.O_RDONLY, user_data=1)
        (fd,) = finals(collect(r, 1)).values()
        assert fd >= 0
        assert os.get_blocking(fd)
        os.close(fd)
        prep(r, lib.IORING_OP_OPENAT, fd=AT_FDCWD, addr=addr_of(fifo), op_flags=os.O_WRONLY, user_data=2)
        assert finals(collect(r, 1)) == {2: -errno.ENXIO}
    finally:
        lib.rt_ring_close(r)


def test_soft_many_waiters_and_timers(soft):
    # 200 pipes, reads with link deadlines, half of them fed after they
    # wait: the fed ones complete with data, the others time out.  The
    # deadlines of the unfed reads are spread over 20 ms; those of the fed
    # ones are a minute out (in the same timer heap), so that a machine slow
    # to write (a loaded one) never lets them fire first.
    pipes = [os.pipe2(os.O_NONBLOCK) for _ in range(200)]
    try:
        bufs = [ffi.new("char[4]") for _ in pipes]
        now = time.monotonic_ns()
        for i, ((rfd, _), buf) in enumerate(zip(pipes, bufs)):
            far = 60 * 10**9 if i % 2 else 0
            prep(soft, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=4, off=CUR, user_data=1000 + i,
                 deadline=now + far + 5_000_000 + i * 100_000, link_user_data=0)
        pass_(soft)
        for i, (_, wfd) in enumerate(pipes):
            if i % 2:
                os.write(wfd, b"data")
        got = finals(c for c in collect(soft, 400) if c[0] >= 1000)
        assert all(got[1000 + i] == (4 if i % 2 else -errno.ECANCELED) for i in range(200))
    finally:
        for a, b in pipes:
            os.close(a)
            os.close(b)


# ---------------------------------------------------------------------------
# WAITID (both backends again: the kernel has it since 6.7)
# ---------------------------------------------------------------------------

P_PIDFD = 3


def _child(seconds):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


@pytest.mark.parametrize("by", ["pidfd", "pid"])
def test_waitid(ring, by):
    proc = _child(0.05)
    pidfd = os.pidfd_open(proc.pid)
    try:
        info = ffi.new("char[128]")
        if by == "pidfd":
            prep(ring, R.IORING_OP_WAITID, fd=pidfd, length=P_PIDFD, off=addr_of(info),
                 op_flags=os.WEXITED | os.WNOWAIT, user_data=1)
        else:
            prep(ring, R.IORING_OP_WAITID, fd=proc.pid, length=os.P_PID, off=addr_of(info),
                 op_flags=os.WEXITED | os.WNOWAIT, user_data=1)
        assert pass_(ring) == []
        assert finals(collect(ring, 1)) == {1: 0}
        # siginfo_t: si_signo, si_errno, si_code, then (8-aligned) si_pid,
        # si_uid, si_status.
        signo, _, code, pid, _, status = struct.unpack_from("=iii4xiIi", ffi.buffer(info))
        assert (pid, code, status) == (proc.pid, 1, 0)   # CLD_EXITED, exit status 0
        # WNOWAIT: the child is still there for Popen to reap.
        assert proc.wait() == 0
    finally:
        os.close(pidfd)
        proc.kill()
        proc.wait()


def test_waitid_cancelled(ring):
    proc = _child(30)
    pidfd = os.pidfd_open(proc.pid)
    try:
        prep(ring, R.IORING_OP_WAITID, fd=pidfd, length=P_PIDFD, op_flags=os.WEXITED | os.WNOWAIT, user_data=1)
        prep(ring, R.IORING_OP_WAITID, fd=proc.pid, length=os.P_PID, op_flags=os.WEXITED | os.WNOWAIT,
             user_data=2)
        assert pass_(ring) == []
        prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=1, user_data=3)
        prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=2, user_data=4)
        # (The kernel answers a cancelled WAITID with 1, how many it
        # cancelled, where other ops answer 0.)
        assert finals(collect(ring, 4)) == {1: -errno.ECANCELED, 2: -errno.ECANCELED, 3: 1, 4: 1}
    finally:
        os.close(pidfd)
        proc.kill()
        proc.wait()


def test_waitid_of_no_child(ring):
    prep(ring, R.IORING_OP_WAITID, fd=os.getpid(), length=os.P_PID, op_flags=os.WEXITED, user_data=1)
    assert finals(collect(ring, 1)) == {1: -errno.ECHILD}


_TAKEN_OVER = """
import errno, os, signal, sys, tempfile, time
from ringtrio._native import ffi, lib

d = tempfile.mkdtemp()
fifo_path = os.path.join(d, "fifo")
os.mkfifo(fifo_path)
err = ffi.new("int *")
r = lib.rt_soft_ring_open(64, 256, err)
out = ffi.new("rt_cqe[8]")
path = ffi.new("char[]", fifo_path.encode())

def prep(opcode, addr, op_flags, ud):
    assert lib.rt_prep(r, opcode, 0, 0, -100, addr, 0o600, 0, op_flags, ud, 0, -1, 0) == 0

def cqes():
    n = lib.rt_pass(r, 1, 5 * 10**9, out, 8)
    return {c.user_data: c.res for c in out[0:n]}

# O_CREAT: a worker runs the open, blocked until a writer comes.
prep(lib.IORING_OP_OPENAT, int(ffi.cast("uintptr_t", path)), os.O_RDONLY | os.O_CREAT, 1)
assert lib.rt_pass(r, 0, 0, out, 8) == 0
while not any(open(f"/proc/self/task/{t}/wchan").read() == "wait_for_partner"
              for t in os.listdir("/proc/self/task")):
    time.sleep(0.005)
# The program takes the soft ring's signal over.
seen = []
signal.signal(signal.SIGRTMAX - 4, lambda *args: seen.append(args))
prep(lib.IORING_OP_ASYNC_CANCEL, 1, 0, 2)
assert cqes() == {2: -errno.EALREADY}
time.sleep(0.05)  # (a kick would come within 5 ms)
w = os.open(fifo_path, os.O_WRONLY | os.O_NONBLOCK)  # the worker's open is still there
res = cqes()[1]
assert res >= 0, res
assert seen == [], seen
print("ok")
"""


def test_soft_leaves_its_signal_to_a_program_that_took_it_over() -> None:
    # The worker is not interrupted (the cancel answers -EALREADY and the
    # open completes), and the program's handler never runs for it.  (In a
    # child: the handler cannot be given back from Python.)
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _TAKEN_OVER], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.stdout.strip() == "ok", proc.stderr
