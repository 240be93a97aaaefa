"""Tests for the native ring layer (_native/ring.c) through cffi."""

from __future__ import annotations

import errno
import os
import socket
import time

import pytest

from ringtrio._native import ffi, lib

# The kernel's ring itself, through cffi: no ringtrio.run, so nothing here
# depends on the backend a run picks (make test's epoll pass leaves it out).
pytestmark = pytest.mark.backend_independent

WANT = (
    lib.IORING_SETUP_SINGLE_ISSUER
    | lib.IORING_SETUP_DEFER_TASKRUN
    | lib.IORING_SETUP_SUBMIT_ALL
    | lib.IORING_SETUP_TASKRUN_FLAG
)
NO_DEADLINE = -1
NO_OFFSET = 2**64 - 1  # "current file position" for READ on a pipe


def open_ring(sq=64, cq=256, flags=WANT):
    err = ffi.new("int *")
    r = lib.rt_ring_open(sq, cq, flags, 0, err)
    assert r != ffi.NULL, os.strerror(err[0])
    return r


@pytest.fixture
def ring():
    r = open_ring()
    yield r
    lib.rt_ring_close(r)


def stats(r):
    s = ffi.new("rt_ring_stats *")
    lib.rt_ring_get_stats(r, s)
    return s


def info(r):
    i = ffi.new("rt_ring_info *")
    lib.rt_ring_get_info(r, i)
    return i


def prep(r, opcode, *, fd=-1, addr=0, length=0, off=0, op_flags=0,
         user_data=0, sqe_flags=0, buf_group=0, deadline=NO_DEADLINE,
         link_user_data=0):
    rc = lib.rt_prep(r, opcode, sqe_flags, 0, fd, addr, length, off, op_flags,
                     user_data, buf_group, deadline, link_user_data)
    assert rc == 0, os.strerror(-rc)


def collect(r, n, *, timeout=60.0):
    """Run passes until `n` CQEs arrived; return {user_data: (res, flags)}.
    (`timeout` only ends a hang: a loaded 2-core machine can stall a test
    for seconds.)"""
    out = ffi.new("rt_cqe[64]")
    got = {}
    limit = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < limit, f"only {len(got)} of {n} CQEs: {got}"
        k = lib.rt_pass(r, 1, 20_000_000, out, 64)
        assert k >= 0, os.strerror(-k)
        for c in out[0:k]:
            assert c.user_data not in got, "duplicate CQE"
            got[c.user_data] = (c.res, c.flags)
    return got


def addr_of(cbuf):
    return int(ffi.cast("uintptr_t", cbuf))


@pytest.fixture
def pipe():
    rfd, wfd = os.pipe()
    yield rfd, wfd
    os.close(rfd)
    os.close(wfd)


def test_open_info_close(ring):
    i = info(ring)
    assert i.sq_entries == 64 and i.cq_entries == 256
    assert i.setup_flags & lib.IORING_SETUP_DEFER_TASKRUN
    assert i.setup_flags & lib.IORING_SETUP_CQSIZE
    assert i.features & lib.IORING_FEAT_NODROP
    assert i.features & lib.IORING_FEAT_EXT_ARG
    assert i.ring_fd >= 0
    assert lib.rt_sq_space(ring) == 64 and lib.rt_sq_pending(ring) == 0


def test_setup_falls_back_on_einval():
    # TASKRUN_FLAG alone is invalid: the kernel says EINVAL and we fall back
    # to COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL.
    r = open_ring(flags=lib.IORING_SETUP_TASKRUN_FLAG)
    try:
        flags = info(r).setup_flags
        assert flags & lib.IORING_SETUP_COOP_TASKRUN
        assert not flags & lib.IORING_SETUP_DEFER_TASKRUN
    finally:
        lib.rt_ring_close(r)


def test_probe(ring):
    ops = ffi.new("uint8_t[256]")
    last = lib.rt_probe(ring, ops)
    assert last >= lib.IORING_OP_LAST - 1
    for op in (lib.IORING_OP_NOP, lib.IORING_OP_READ,
               lib.IORING_OP_LINK_TIMEOUT, lib.IORING_OP_ASYNC_CANCEL):
        assert ops[op] == 1
    assert ops[255] == 0


def test_nop_round_trip(ring):
    prep(ring, lib.IORING_OP_NOP, user_data=0xDEADBEEF12345678)
    assert lib.rt_sq_pending(ring) == 1
    assert collect(ring, 1) == {0xDEADBEEF12345678: (0, 0)}
    s = stats(ring)
    assert s.sqes_submitted == 1 and s.cqes_reaped == 1
    assert lib.rt_inflight_hint(ring) == 0


def test_idle_enter_makes_no_syscall(ring):
    before = stats(ring).enters
    out = ffi.new("rt_cqe[8]")
    for _ in range(10):
        assert lib.rt_enter(ring, 0, 0) == 0
        assert lib.rt_pass(ring, 0, 0, out, 8) == 0
    assert stats(ring).enters == before


def test_wait_with_timeout_returns(ring):
    out = ffi.new("rt_cqe[8]")
    t0 = time.monotonic()
    assert lib.rt_pass(ring, 1, 5_000_000, out, 8) == 0
    # It waited (the lower bound is the kernel's promise); the upper bound
    # only says it did not wait forever.
    assert 0.004 < time.monotonic() - t0 < 60


def test_relative_timeout(ring):
    t0 = time.monotonic()
    assert lib.rt_prep_timeout(ring, 2_000_000, 0, 0, 42, 0) == 0
    assert collect(ring, 1) == {42: (-errno.ETIME, 0)}
    assert time.monotonic() - t0 >= 0.0015


def test_link_deadline_fires(ring, pipe):
    rfd, _ = pipe
    buf = ffi.new("char[16]")
    deadline = time.monotonic_ns() + 1_000_000
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=16,
         off=NO_OFFSET, user_data=1, deadline=deadline, link_user_data=2)
    assert lib.rt_sq_pending(ring) == 2
    got = collect(ring, 2)
    assert got[1][0] == -errno.ECANCELED
    assert got[2][0] == -errno.ETIME
    assert time.monotonic_ns() >= deadline


def test_link_deadline_not_reached(ring, pipe):
    rfd, wfd = pipe
    buf = ffi.new("char[16]")
    deadline = time.monotonic_ns() + 60 * 10**9
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=16,
         off=NO_OFFSET, user_data=1, deadline=deadline, link_user_data=2)
    out = ffi.new("rt_cqe[8]")
    assert lib.rt_pass(ring, 0, 0, out, 8) == 0
    os.write(wfd, b"hello")
    got = collect(ring, 2)
    assert got[1][0] == 5
    assert ffi.buffer(buf, 5)[:] == b"hello"
    assert got[2][0] == -errno.ECANCELED


def test_async_cancel(ring, pipe):
    rfd, _ = pipe
    buf = ffi.new("char[16]")
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=16,
         off=NO_OFFSET, user_data=10)
    out = ffi.new("rt_cqe[8]")
    assert lib.rt_pass(ring, 0, 0, out, 8) == 0
    prep(ring, lib.IORING_OP_ASYNC_CANCEL, addr=10, user_data=11)
    assert collect(ring, 2) == {10: (-errno.ECANCELED, 0), 11: (0, 0)}


def test_completion_without_taskrun_flag(pipe):
    # Without TASKRUN_FLAG the kernel does not say when deferred work is
    # pending: rt_enter must enter with GETEVENTS while ops are in flight.
    rfd, wfd = pipe
    r = open_ring(flags=WANT & ~lib.IORING_SETUP_TASKRUN_FLAG)
    try:
        assert not info(r).setup_flags & lib.IORING_SETUP_TASKRUN_FLAG
        buf = ffi.new("char[16]")
        prep(r, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=16,
             off=NO_OFFSET, user_data=5)
        out = ffi.new("rt_cqe[8]")
        assert lib.rt_pass(r, 0, 0, out, 8) == 0
        os.write(wfd, b"x")
        limit = time.monotonic() + 60  # ends a hang only
        n = 0
        while n == 0 and time.monotonic() < limit:
            n = lib.rt_pass(r, 0, 0, out, 8)   # never waits
            time.sleep(0.001)
        assert n == 1 and out[0].user_data == 5 and out[0].res == 1
    finally:
        lib.rt_ring_close(r)


def test_full_sq_submits_first_and_keeps_pairs():
    r = open_ring(sq=4, cq=64)
    try:
        for i in range(3):
            prep(r, lib.IORING_OP_NOP, user_data=i)
        assert lib.rt_sq_space(r) == 1
        # Needs two slots: the three queued NOPs go in first.
        prep(r, lib.IORING_OP_NOP, user_data=3,
             deadline=time.monotonic_ns() + 10**9, link_user_data=4)
        assert lib.rt_sq_pending(r) == 2
        got = collect(r, 5)
        assert {k: v[0] for k, v in got.items()} == {
            0: 0, 1: 0, 2: 0, 3: 0, 4: -errno.ECANCELED}
    finally:
        lib.rt_ring_close(r)


def test_cq_overflow_loses_nothing():
    r = open_ring(sq=8, cq=16)
    try:
        assert info(r).features & lib.IORING_FEAT_NODROP
        out = ffi.new("rt_cqe[128]")
        got = []
        next_ud = 0
        for _ in range(200):
            if next_ud == 64:
                break
            while next_ud < 64 and lib.rt_sq_space(r) > 0:
                prep(r, lib.IORING_OP_NOP, user_data=next_ud)
                next_ud += 1
            rc = lib.rt_enter(r, 0, 0)
            if rc == -errno.EBUSY:   # the kernel may refuse while overflowing
                k = lib.rt_pass(r, 0, 0, out, 128)
                got.extend(c.user_data for c in out[0:k])
            else:
                assert rc >= 0, os.strerror(-rc)
        assert next_ud == 64
        for _ in range(100):
            if len(got) >= 64:
                break
            k = lib.rt_pass(r, 0, 0, out, 128)
            assert k >= 0
            got.extend(c.user_data for c in out[0:k])
        assert sorted(got) == list(range(64))
        assert stats(r).overflows >= 1
    finally:
        lib.rt_ring_close(r)


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EPERM, errno.ENOMEM])
def test_force_errno(code):
    err = ffi.new("int *")
    assert lib.rt_ring_open(8, 16, WANT, code, err) == ffi.NULL
    assert err[0] == code


def test_unsupported_setup_flags():
    err = ffi.new("int *")
    assert lib.rt_ring_open(8, 16, lib.IORING_SETUP_SQPOLL, 0, err) == ffi.NULL
    assert err[0] == errno.EINVAL


def recv_with_buffer_ring(ring, flags, payload):
    count, size, bgid = 4, 4096, 7
    err = ffi.new("int *")
    br = lib.rt_buf_ring_new(ring, bgid, count, size, flags, err)
    assert br != ffi.NULL, os.strerror(err[0])
    a, b = socket.socketpair()
    try:
        base = ffi.cast("char *", lib.rt_buf_ring_base(br))
        seen = []
        for i in range(count + 2):   # more receives than buffers: recycling
            a.send(payload)
            prep(ring, lib.IORING_OP_RECV, fd=b.fileno(), length=0,
                 user_data=100 + i, sqe_flags=lib.IOSQE_BUFFER_SELECT,
                 buf_group=bgid)
            res, cflags = collect(ring, 1)[100 + i]
            assert res == len(payload)
            assert cflags & lib.IORING_CQE_F_BUFFER
            bid = cflags >> 16
            assert 0 <= bid < count
            assert ffi.buffer(base + bid * size, res)[:] == payload
            seen.append((bid, cflags))
            if not cflags & lib.IORING_CQE_F_BUF_MORE:
                lib.rt_buf_ring_recycle(br, bid)
        return seen
    finally:
        a.close()
        b.close()
        assert lib.rt_buf_ring_free(ring, br) == 0


def test_buffer_ring_recv(ring):
    seen = recv_with_buffer_ring(ring, 0, b"ping")
    assert {bid for bid, _ in seen} == {0, 1, 2, 3}


def test_buffer_ring_incremental(ring):
    # With IOU_PBUF_RING_INC a small receive consumes only part of a buffer,
    # which stays with the kernel (IORING_CQE_F_BUF_MORE).
    seen = recv_with_buffer_ring(ring, lib.IOU_PBUF_RING_INC, b"pong")
    assert any(f & lib.IORING_CQE_F_BUF_MORE for _, f in seen)


def test_buffer_ring_group_reusable_after_free(ring):
    err = ffi.new("int *")
    for _ in range(3):
        br = lib.rt_buf_ring_new(ring, 1, 8, 512, 0, err)
        assert br != ffi.NULL
        assert lib.rt_buf_ring_free(ring, br) == 0


def test_buffer_ring_duplicate_group_fails(ring):
    err = ffi.new("int *")
    br = lib.rt_buf_ring_new(ring, 2, 8, 512, 0, err)
    assert br != ffi.NULL
    try:
        assert lib.rt_buf_ring_new(ring, 2, 8, 512, 0, err) == ffi.NULL
        assert err[0] == errno.EEXIST
    finally:
        lib.rt_buf_ring_free(ring, br)


@pytest.mark.parametrize("count,size", [(3, 4096), (0, 4096), (65536, 16),
                                        (4, 0)])
def test_buffer_ring_bad_args(ring, count, size):
    err = ffi.new("int *")
    assert lib.rt_buf_ring_new(ring, 3, count, size, 0, err) == ffi.NULL
    assert err[0] == errno.EINVAL


# -- polling before a wait (rt_ring_set_poll, rt_poll_window) ---------------

POLL_START_NS = 4000  # RT_POLL_START_NS in ring.c


def test_poll_window_rule():
    # As the guest's haltpoll: a wait longer than the window but within the
    # bound doubles it (from the start value, capped at the bound) ...
    assert lib.rt_poll_window(0, 10_000, 50_000) == POLL_START_NS
    assert lib.rt_poll_window(POLL_START_NS, 10_000, 50_000) == 2 * POLL_START_NS
    assert lib.rt_poll_window(32_000, 40_000, 50_000) == 50_000
    # ... a wait within the window leaves it ...
    assert lib.rt_poll_window(16_000, 3_000, 50_000) == 16_000
    assert lib.rt_poll_window(0, 0, 50_000) == 0
    # ... and a wait longer than the bound halves it, to 0 below the start.
    assert lib.rt_poll_window(50_000, 80_000, 50_000) == 25_000
    assert lib.rt_poll_window(7_000, 10**9, 50_000) == 0
    assert lib.rt_poll_window(0, 10**9, 50_000) == 0
    # A bound of 0 never polls.
    assert lib.rt_poll_window(0, 10, 0) == 0


def test_poll_is_off_unless_set(ring):
    out = ffi.new("rt_cqe[8]")
    assert lib.rt_pass(ring, 1, 2_000_000, out, 8) == 0
    assert stats(ring).polled_waits == 0


def test_poll_needs_the_taskrun_flag():
    # Deferred task work the kernel does not flag cannot be seen by a poll:
    # polling stays off on such a ring.
    r = open_ring(flags=WANT & ~lib.IORING_SETUP_TASKRUN_FLAG)
    try:
        assert lib.rt_ring_set_poll(r, 50_000, 0) == 0
    finally:
        lib.rt_ring_close(r)
    r = open_ring(flags=lib.IORING_SETUP_TASKRUN_FLAG)  # COOP_TASKRUN | TASKRUN_FLAG
    try:
        assert lib.rt_ring_set_poll(r, 50_000, 0) == 50_000
    finally:
        lib.rt_ring_close(r)


def test_polling_wait_collects_a_completion_made_meanwhile(ring, pipe):
    # A window of a second: the wait polls, and the completion another
    # thread causes (a pipe write) ends the poll, with no sleep.
    import threading

    rfd, wfd = pipe
    assert lib.rt_ring_set_poll(ring, 10**9, 10**9) == 10**9
    buf = ffi.new("char[16]")
    prep(ring, lib.IORING_OP_READ, fd=rfd, addr=addr_of(buf), length=16,
         off=NO_OFFSET, user_data=7)
    writer = threading.Timer(0.01, os.write, (wfd, b"hi"))
    writer.start()
    out = ffi.new("rt_cqe[8]")
    try:
        n = lib.rt_pass(ring, 1, 5_000_000_000, out, 8)
    finally:
        writer.join()
    assert n == 1 and out[0].user_data == 7 and out[0].res == 2
    assert ffi.buffer(buf, 2)[:] == b"hi"
    s = stats(ring)
    assert s.polled_waits == 1 and s.poll_hits == 1 and s.poll_ns > 0
    # A kernel timer's completion (deferred task work) is seen the same way.
    assert lib.rt_prep_timeout(ring, 2_000_000, 0, 0, 8, 0) == 0
    assert lib.rt_pass(ring, 1, 5_000_000_000, out, 8) == 1
    assert out[0].user_data == 8 and out[0].res == -errno.ETIME
    s = stats(ring)
    assert s.polled_waits == 2 and s.poll_hits == 2


def test_polling_wait_keeps_its_timeout(ring):
    # Polling never outlasts the wait's timeout, and a wait that found
    # nothing returns nothing.
    assert lib.rt_ring_set_poll(ring, 10**9, 10**9) == 10**9
    out = ffi.new("rt_cqe[8]")
    t0 = time.monotonic()
    assert lib.rt_pass(ring, 1, 5_000_000, out, 8) == 0
    assert 0.004 < time.monotonic() - t0 < 1.0
    s = stats(ring)
    assert s.polled_waits == 1 and s.poll_hits == 0


def test_idle_waits_stop_polling(ring):
    # Waits longer than the bound halve the window: from 50 us, four 5 ms
    # waits poll (50, 25, 12.5, 6.25 us) and the ones after sleep at once.
    assert lib.rt_ring_set_poll(ring, 50_000, 50_000) == 50_000
    out = ffi.new("rt_cqe[8]")
    for _ in range(8):
        assert lib.rt_pass(ring, 1, 5_000_000, out, 8) == 0
    assert stats(ring).polled_waits == 4
