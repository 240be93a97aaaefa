/*
 * ringtrio native core: one io_uring ring, its SQEs and CQEs, and provided
 * buffer rings.  This layer knows nothing about Python tasks; it is driven by
 * ringtrio/_core/_ring.py through cffi.
 *
 * Two backends sit behind these functions: the kernel's io_uring (ring.c)
 * and, where io_uring is refused, the soft ring (softring.c).
 *
 * Conventions: functions that can fail return 0 (or a count) on success and a
 * negative errno on failure.  The kernel backend allocates nothing per
 * operation.
 */
#ifndef RINGTRIO_RING_H
#define RINGTRIO_RING_H

#include <stdint.h>

typedef struct rt_ring rt_ring;
typedef struct rt_buf_ring rt_buf_ring;

/* One completion, as handed to Python: 16 bytes, struct format "QiI". */
typedef struct rt_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} rt_cqe;

typedef struct rt_ring_info {
    uint32_t sq_entries;
    uint32_t cq_entries;
    uint32_t setup_flags;   /* the flags the ring was really created with */
    uint32_t features;      /* io_uring_params.features */
    int32_t ring_fd;
} rt_ring_info;

typedef struct rt_ring_stats {
    uint64_t sqes_submitted;  /* SQEs the kernel consumed */
    uint64_t cqes_reaped;     /* CQEs copied out by rt_reap / rt_pass */
    uint64_t enters;          /* io_uring_enter syscalls made */
    uint64_t overflows;       /* times IORING_SQ_CQ_OVERFLOW was seen set */
    uint64_t polled_waits;    /* waits of rt_pass that polled before sleeping */
    uint64_t poll_hits;       /* of those, ended by a completion while polling */
    uint64_t poll_ns;         /* time spent polling, in total */
} rt_ring_stats;

/* Setup.  `want_flags` is the preferred IORING_SETUP_* set; on EINVAL the
 * flags are dropped one group at a time (DEFER_TASKRUN|SINGLE_ISSUER ->
 * COOP_TASKRUN -> none).  CQSIZE is always requested with cq_entries.
 * `force_errno` != 0 is a test hook: fail exactly as if io_uring_setup had
 * returned -force_errno.  On failure: NULL and *err = the errno. */
rt_ring *rt_ring_open(uint32_t sq_entries, uint32_t cq_entries,
                      uint32_t want_flags, int force_errno, int *err);
/* The soft ring: the same ring emulated in user space (epoll, non-blocking
 * syscalls, worker threads for file operations), for where io_uring is
 * refused.  Every other function of this header works on it unchanged:
 * SQEs in, CQEs out, the same user_data, flags and negative errnos (see
 * softring.c for how each opcode is emulated).  On failure: NULL and *err
 * = the errno. */
rt_ring *rt_soft_ring_open(uint32_t sq_entries, uint32_t cq_entries, int *err);
void rt_ring_get_info(rt_ring *r, rt_ring_info *out);
void rt_ring_get_stats(rt_ring *r, rt_ring_stats *out);
/* munmap everything and close the ring fd.  Frees r. */
void rt_ring_close(rt_ring *r);

/* IORING_REGISTER_PROBE: ops[i] = 1 when opcode i is supported (ops has 256
 * entries).  Returns the kernel's last_op, or -errno. */
int rt_probe(rt_ring *r, uint8_t *ops);

/* SQ state. */
uint32_t rt_sq_pending(rt_ring *r);   /* prepared, not yet submitted */
uint32_t rt_sq_space(rt_ring *r);     /* free SQ slots */
uint32_t rt_inflight_hint(rt_ring *r);/* sqes submitted - cqes reaped (approximate: multishot) */

/* Prepare one SQE.  `off` doubles as addr2, `buf_index` as buf_group.
 * IORING_OP_WAITID (6.7): fd = the id (a pidfd for P_PIDFD), len = the
 * idtype, off = the siginfo_t pointer (0: none), op_flags = the waitid
 * options (the SQE carries them in file_index).
 * When `link_deadline_ns` >= 0 the SQE is marked IOSQE_IO_LINK and followed
 * by an IORING_OP_LINK_TIMEOUT at that absolute CLOCK_MONOTONIC time, with
 * user_data `link_user_data`; both SQEs are reserved together so a submit can
 * never split the pair.  If the SQ is full, queued SQEs are submitted first.
 * Returns 0 or -errno (-EBUSY if space could not be made). */
int rt_prep(rt_ring *r, uint8_t opcode, uint8_t sqe_flags, uint16_t ioprio,
            int32_t fd, uint64_t addr, uint32_t len, uint64_t off,
            uint32_t op_flags, uint64_t user_data, uint16_t buf_index,
            int64_t link_deadline_ns, uint64_t link_user_data);

/* rt_prep with the buffer given as a pointer rather than an address: Python
 * passes a bytes object or a cffi buffer straight through (no cast to an
 * integer on the hot path).  The caller keeps the object alive until the
 * op's final CQE. */
int rt_prep_ptr(rt_ring *r, uint8_t opcode, uint8_t sqe_flags, uint16_t ioprio,
                int32_t fd, const char *buf, uint32_t len, uint64_t off,
                uint32_t op_flags, uint64_t user_data, uint16_t buf_index,
                int64_t link_deadline_ns, uint64_t link_user_data);

/* IORING_OP_TIMEOUT.  `ns` is relative unless `timeout_flags` has
 * IORING_TIMEOUT_ABS (then absolute CLOCK_MONOTONIC).  `count` as in the
 * kernel (0 = pure timer). */
int rt_prep_timeout(rt_ring *r, int64_t ns, uint32_t count,
                    uint32_t timeout_flags, uint64_t user_data,
                    uint8_t sqe_flags);

/* Submit everything queued and, if wait_nr > 0, wait for that many CQEs or
 * until timeout_ns (relative; < 0 = no limit).  Runs deferred task work.
 * Skips the syscall entirely when there is nothing to submit, no task work
 * flagged, no CQ overflow, and wait_nr == 0.  Returns SQEs submitted (>= 0)
 * or -errno; a timeout or EINTR while waiting is not an error. */
int rt_enter(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns);

/* Copy up to `max` CQEs into `out` and advance the CQ head.  Returns count. */
uint32_t rt_reap(rt_ring *r, rt_cqe *out, uint32_t max);

/* The scheduler's one call per pass: rt_enter(wait_nr, timeout_ns), then
 * rt_reap(out, max).  Returns the number of CQEs copied, or -errno if the
 * enter failed with something other than a timeout/EINTR/EBUSY/EAGAIN (in
 * which case nothing is reaped). */
int rt_pass(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns,
            rt_cqe *out, uint32_t max);

/* Polling before sleeping.  A waiting rt_pass first submits, then polls
 * the rings (the CQ tail, the SQ flags' TASKRUN bit) for up to the ring's
 * poll window before it sleeps in io_uring_enter: a completion that comes
 * within the window costs no sleep and no wake-up.  The window adapts after
 * every wait (rt_poll_window); `max_ns` bounds it, 0 (the default) turns
 * polling off.  Kernel rings only (a soft ring ignores it), and only where
 * the kernel flags deferred task work (IORING_SETUP_TASKRUN_FLAG) or posts
 * completions by itself (no COOP/DEFER_TASKRUN): otherwise a poll could not
 * see a completion.  `window_ns` is the window to start from (clamped to the
 * bound; 0 normally: polling starts once waits have been short).  Returns
 * the bound in effect. */
int64_t rt_ring_set_poll(rt_ring *r, int64_t max_ns, int64_t window_ns);
/* The next poll window after a wait that took `waited_ns` (from the start of
 * the poll to the first completion or the timeout) under window `window_ns`,
 * as the guest's haltpoll does: a wait longer than the window but within
 * `max_ns` doubles it (from RT_POLL_START_NS, capped at max_ns); a wait
 * longer than max_ns halves it (0 once below RT_POLL_START_NS), so an idle
 * program stops polling after a few waits. */
int64_t rt_poll_window(int64_t window_ns, int64_t waited_ns, int64_t max_ns);

/* The registered file table ("direct descriptors"): a sparse table of `nr`
 * empty slots (IORING_REGISTER_FILES2 + IORING_RSRC_REGISTER_SPARSE).  It
 * is freed with the ring; rt_files_unregister frees it earlier.  Slots are
 * chosen by the caller.  Return 0 or -errno. */
int rt_files_register_sparse(rt_ring *r, uint32_t nr);
int rt_files_unregister(rt_ring *r);
/* IORING_OP_CLOSE of direct slot `slot`.  (It never waits: the kernel
 * empties the slot while the SQE is submitted, before the SQEs after it.) */
int rt_prep_close_direct(rt_ring *r, uint32_t slot, uint64_t user_data,
                         uint8_t sqe_flags);
/* One linked chain, reserved and queued as a unit: OPENAT of `path` (which
 * must stay valid until the enter that submits it) into direct slot
 * `slot`, soft-linked to a `rw_opcode` (READ or WRITE) of `len1` bytes at
 * `buf1` on that slot at the file position; if `ud_rw2` != 0, hard-linked
 * to a second one of `len2` bytes at `buf2`.  The slot is not closed: the
 * caller closes it (rt_prep_close_direct) once the chain's CQEs are in. */
int rt_prep_open_chain(rt_ring *r, int32_t dirfd, const char *path,
                       uint32_t open_flags, uint32_t mode, uint32_t slot,
                       uint8_t rw_opcode, uint64_t buf1, uint32_t len1,
                       uint64_t buf2, uint32_t len2, uint64_t ud_open,
                       uint64_t ud_rw1, uint64_t ud_rw2);

/* Provided-buffer rings (IORING_REGISTER_PBUF_RING).  `count` must be a power
 * of two <= 32768.  All buffers live in one region of count*size bytes and
 * are all added to the ring at creation.  `flags` may hold IOU_PBUF_RING_INC.
 * On failure: NULL and *err = errno. */
rt_buf_ring *rt_buf_ring_new(rt_ring *r, uint16_t bgid, uint32_t count,
                             uint32_t size, uint32_t flags, int *err);
void *rt_buf_ring_base(rt_buf_ring *br);      /* buffer bid is at base + bid*size */
/* Give buffer `bid` back to the kernel (full size).  Memory writes only. */
void rt_buf_ring_recycle(rt_buf_ring *br, uint16_t bid);
/* Unregister the group and free its memory.  Returns 0 or -errno (the
 * memory is freed either way). */
int rt_buf_ring_free(rt_ring *r, rt_buf_ring *br);

#endif
