/*
 * ringtrio native core: see ring.h for the contract.
 *
 * Everything here talks to the kernel through the three io_uring syscalls
 * and the rings it maps into our address space.  Ring indices are free
 * running 32-bit counters; `& mask` turns one into a slot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ring_impl.h"

/* Flags that would break the assumptions below (64-byte SQEs, 16-byte CQEs,
 * the kernel only consuming SQEs inside io_uring_enter). */
#define RT_UNSUPPORTED_SETUP \
    (IORING_SETUP_SQPOLL | IORING_SETUP_IOPOLL | IORING_SETUP_SQE128 | \
     IORING_SETUP_CQE32)

/* ------------------------------------------------------------------ */
/* syscalls                                                            */

static int sys_setup(uint32_t entries, struct io_uring_params *p)
{
    long rc = syscall(__NR_io_uring_setup, entries, p);
    return rc < 0 ? -errno : (int)rc;
}

static int sys_enter(int fd, uint32_t to_submit, uint32_t min_complete,
                     uint32_t flags, void *arg, size_t argsz)
{
    long rc = syscall(__NR_io_uring_enter, fd, to_submit, min_complete,
                      flags, arg, argsz);
    return rc < 0 ? -errno : (int)rc;
}

static int sys_register(int fd, unsigned opcode, void *arg, unsigned nr)
{
    long rc = syscall(__NR_io_uring_register, fd, opcode, arg, nr);
    return rc < 0 ? -errno : (int)rc;
}

static inline uint32_t load_acquire(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void store_release(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------ */
/* setup and teardown                                                  */

static void unmap_rings(rt_ring *r)
{
    if (r->sqes)
        munmap(r->sqes, r->sqes_map_sz);
    if (r->cq_map && r->cq_map != r->sq_map)
        munmap(r->cq_map, r->cq_map_sz);
    if (r->sq_map)
        munmap(r->sq_map, r->sq_map_sz);
}

static void *map_ring(int fd, size_t sz, uint64_t off)
{
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, fd, (off_t)off);
    return p == MAP_FAILED ? NULL : p;
}

/* Map the SQ ring, CQ ring and SQE array.  Kernels with SINGLE_MMAP put
 * both rings in one mapping; older ones need two. */
static int map_rings(rt_ring *r, const struct io_uring_params *p)
{
    int no_array = (p->flags & IORING_SETUP_NO_SQARRAY) != 0;
    size_t sq_sz = no_array ? 0 : p->sq_off.array + p->sq_entries * sizeof(uint32_t);
    size_t cq_sz = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);

    if (p->features & IORING_FEAT_SINGLE_MMAP) {
        size_t sz = sq_sz > cq_sz ? sq_sz : cq_sz;
        r->sq_map = r->cq_map = map_ring(r->fd, sz, IORING_OFF_SQ_RING);
        r->sq_map_sz = r->cq_map_sz = sz;
        if (!r->sq_map)
            return -errno;
    } else {
        r->sq_map = map_ring(r->fd, sq_sz, IORING_OFF_SQ_RING);
        r->sq_map_sz = sq_sz;
        if (!r->sq_map)
            return -errno;
        r->cq_map = map_ring(r->fd, cq_sz, IORING_OFF_CQ_RING);
        r->cq_map_sz = cq_sz;
        if (!r->cq_map)
            return -errno;
    }
    r->sqes_map_sz = p->sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = map_ring(r->fd, r->sqes_map_sz, IORING_OFF_SQES);
    if (!r->sqes)
        return -errno;

    char *sq = r->sq_map, *cq = r->cq_map;
    r->sq_khead = (uint32_t *)(sq + p->sq_off.head);
    r->sq_ktail = (uint32_t *)(sq + p->sq_off.tail);
    r->sq_kflags = (uint32_t *)(sq + p->sq_off.flags);
    r->sq_mask = *(uint32_t *)(sq + p->sq_off.ring_mask);
    r->cq_khead = (uint32_t *)(cq + p->cq_off.head);
    r->cq_ktail = (uint32_t *)(cq + p->cq_off.tail);
    r->cq_mask = *(uint32_t *)(cq + p->cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);

    /* SQEs are always used in ring order, so the indirection array is the
     * identity, written once here and never touched again. */
    if (!no_array) {
        uint32_t *array = (uint32_t *)(sq + p->sq_off.array);
        for (uint32_t i = 0; i < p->sq_entries; i++)
            array[i] = i;
    }
    r->sq_local_tail = *r->sq_ktail;
    return 0;
}

/* One io_uring_setup attempt; on success fills r->fd and the params. */
static int try_setup(uint32_t sq_entries, uint32_t cq_entries, uint32_t flags,
                     struct io_uring_params *p)
{
    memset(p, 0, sizeof(*p));
    p->flags = flags;
    if (cq_entries) {
        p->flags |= IORING_SETUP_CQSIZE;
        p->cq_entries = cq_entries;
    }
    return sys_setup(sq_entries, p);
}

rt_ring *rt_ring_open(uint32_t sq_entries, uint32_t cq_entries,
                      uint32_t want_flags, int force_errno, int *err)
{
    /* Kernels reject flags they do not know with EINVAL: retry with
     * progressively older flag sets. */
    const uint32_t attempts[] = {
        want_flags,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
            IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_SUBMIT_ALL,
        0,
    };
    struct io_uring_params p;
    int fd = -EINVAL;

    if (force_errno) {
        *err = force_errno < 0 ? -force_errno : force_errno;
        return NULL;
    }
    if (want_flags & RT_UNSUPPORTED_SETUP) {
        *err = EINVAL;
        return NULL;
    }
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
        fd = try_setup(sq_entries, cq_entries, attempts[i], &p);
        if (fd != -EINVAL)
            break;
    }
    if (fd < 0) {
        *err = -fd;
        return NULL;
    }

    rt_ring *r = calloc(1, sizeof(*r));
    if (r) {
        r->fd = fd;
        r->setup_flags = p.flags;
        r->features = p.features;
        r->sq_entries = p.sq_entries;
        r->cq_entries = p.cq_entries;
        r->ts = calloc(p.sq_entries, sizeof(*r->ts));
    }
    int rc = !r || !r->ts ? -ENOMEM : map_rings(r, &p);
    if (rc < 0) {
        if (r) {
            unmap_rings(r);
            free(r->ts);
            free(r);
        }
        close(fd);
        *err = -rc;
        return NULL;
    }
    *err = 0;
    return r;
}

void rt_ring_get_info(rt_ring *r, rt_ring_info *out)
{
    out->sq_entries = r->sq_entries;
    out->cq_entries = r->cq_entries;
    out->setup_flags = r->setup_flags;
    out->features = r->features;
    out->ring_fd = r->fd;
}

void rt_ring_get_stats(rt_ring *r, rt_ring_stats *out)
{
    *out = r->stats;
}

void rt_ring_close(rt_ring *r)
{
    if (!r)
        return;
    if (r->soft) {
        rt_soft_close(r);
        return;
    }
    unmap_rings(r);
    close(r->fd);
    free(r->ts);
    free(r);
}

int rt_probe(rt_ring *r, uint8_t *ops)
{
    if (r->soft)
        return rt_soft_probe(r, ops);
    size_t sz = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *probe = calloc(1, sz);
    if (!probe)
        return -ENOMEM;
    int rc = sys_register(r->fd, IORING_REGISTER_PROBE, probe, 256);
    if (rc >= 0) {
        memset(ops, 0, 256);
        for (unsigned i = 0; i < probe->ops_len && i < 256; i++)
            ops[probe->ops[i].op] = (probe->ops[i].flags & IO_URING_OP_SUPPORTED) != 0;
        rc = probe->last_op;
    }
    free(probe);
    return rc;
}

/* ------------------------------------------------------------------ */
/* submission                                                          */

uint32_t rt_sq_pending(rt_ring *r)
{
    return r->sq_local_tail - load_acquire(r->sq_khead);
}

uint32_t rt_sq_space(rt_ring *r)
{
    return r->sq_entries - rt_sq_pending(r);
}

uint32_t rt_inflight_hint(rt_ring *r)
{
    uint64_t s = r->stats.sqes_submitted, c = r->stats.cqes_reaped;
    return s > c ? (uint32_t)(s - c) : 0;
}

/* Does a GETEVENTS enter have work to do even though we will not wait?
 * Completions of a DEFER_TASKRUN ring (and task work of a COOP_TASKRUN one)
 * are only posted when we enter the kernel.  With TASKRUN_FLAG the kernel
 * tells us in sq_flags; without it we must assume work whenever ops are
 * in flight. */
static int needs_getevents(rt_ring *r, uint32_t sq_flags)
{
    if (sq_flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW))
        return 1;
    if (r->setup_flags & IORING_SETUP_TASKRUN_FLAG)
        return 0;
    if (r->setup_flags & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN))
        return rt_inflight_hint(r) > 0;
    return 0;   /* plain rings post completions from task work on their own */
}

/* Publish the local SQ tail and make the io_uring_enter call, if one is
 * needed.  Returns SQEs the kernel consumed, or -errno. */
static int enter(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns)
{
    if (r->soft)
        return rt_soft_enter(r, wait_nr, timeout_ns);
    uint32_t head = load_acquire(r->sq_khead);
    uint32_t to_submit = r->sq_local_tail - head;
    uint32_t sq_flags = __atomic_load_n(r->sq_kflags, __ATOMIC_ACQUIRE);
    uint32_t flags = 0;
    struct __kernel_timespec ts;
    struct io_uring_getevents_arg arg;
    void *argp = NULL;
    size_t argsz = 0;

    if (sq_flags & IORING_SQ_CQ_OVERFLOW)
        r->stats.overflows++;
    /* A zero timeout is a non-blocking peek. */
    if (timeout_ns == 0)
        wait_nr = 0;
    /* Waiting for CQEs that are already there needs no syscall either. */
    if (wait_nr && load_acquire(r->cq_ktail) - *r->cq_khead >= wait_nr)
        wait_nr = 0;
    if (wait_nr || needs_getevents(r, sq_flags))
        flags |= IORING_ENTER_GETEVENTS;
    if (!to_submit && !flags)
        return 0;

    store_release(r->sq_ktail, r->sq_local_tail);
    if (wait_nr && timeout_ns > 0) {
        if (!(r->features & IORING_FEAT_EXT_ARG))
            return -EOPNOTSUPP;
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        memset(&arg, 0, sizeof(arg));
        arg.ts = (uint64_t)(uintptr_t)&ts;
        argp = &arg;
        argsz = sizeof(arg);
        flags |= IORING_ENTER_EXT_ARG;
    }
    int rc = sys_enter(r->fd, to_submit, wait_nr, flags, argp, argsz);
    r->stats.enters++;
    /* Count what the kernel consumed from the head, not from rc: when a
     * wait times out the return value is -ETIME even if SQEs went in. */
    uint32_t consumed = load_acquire(r->sq_khead) - head;
    r->stats.sqes_submitted += consumed;
    if (rc < 0 && rc != -ETIME && rc != -EINTR)
        return rc;
    return (int)consumed;
}

int rt_enter(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns)
{
    return enter(r, wait_nr, timeout_ns);
}

/* Reserve `n` consecutive SQEs, submitting what is queued if the SQ is too
 * full.  Returns the first (zeroed) SQE, or NULL with *err set. */
static struct io_uring_sqe *reserve(rt_ring *r, uint32_t n, int *err)
{
    if (rt_sq_space(r) < n) {
        int rc = enter(r, 0, 0);
        if (rc < 0) {
            *err = rc;
            return NULL;
        }
        if (rt_sq_space(r) < n) {
            *err = -EBUSY;
            return NULL;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        memset(&r->sqes[(r->sq_local_tail + i) & r->sq_mask], 0,
               sizeof(struct io_uring_sqe));
    return &r->sqes[r->sq_local_tail & r->sq_mask];
}

/* The kernel copies a timeout's timespec when it consumes the SQE, so it
 * must live until the enter that submits it.  Give every SQE slot its own:
 * a slot is only reused after the kernel has consumed its previous SQE. */
static uint64_t timespec_for(rt_ring *r, struct io_uring_sqe *sqe, int64_t ns)
{
    struct __kernel_timespec *ts = &r->ts[sqe - r->sqes];
    if (ns < 0)
        ns = 0;
    ts->tv_sec = ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
    return (uint64_t)(uintptr_t)ts;
}

static struct io_uring_sqe *sqe_at(rt_ring *r, uint32_t i)
{
    return &r->sqes[(r->sq_local_tail + i) & r->sq_mask];
}

/* IORING_OP_WAITID keeps its options where other ops keep a file index,
 * and rejects a nonzero op-flags word (waitid_flags, reserved).  The generic
 * prep took them in `op_flags`: move them.  (fd = id, len = idtype, off =
 * addr2 = the siginfo_t pointer are where the generic prep put them.) */
static void prep_waitid_fields(struct io_uring_sqe *sqe)
{
    sqe->file_index = sqe->rw_flags;
    sqe->rw_flags = 0;
}

int rt_prep(rt_ring *r, uint8_t opcode, uint8_t sqe_flags, uint16_t ioprio,
            int32_t fd, uint64_t addr, uint32_t len, uint64_t off,
            uint32_t op_flags, uint64_t user_data, uint16_t buf_index,
            int64_t link_deadline_ns, uint64_t link_user_data)
{
    int linked = link_deadline_ns >= 0;
    int err = 0;
    struct io_uring_sqe *sqe = reserve(r, linked ? 2 : 1, &err);
    if (!sqe)
        return err;

    sqe->opcode = opcode;
    sqe->flags = sqe_flags | (linked ? IOSQE_IO_LINK : 0);
    sqe->ioprio = ioprio;
    sqe->fd = fd;
    sqe->addr = addr;
    sqe->len = len;
    sqe->off = off;
    sqe->rw_flags = op_flags;
    sqe->user_data = user_data;
    sqe->buf_index = buf_index;
    if (opcode == RT_IORING_OP_WAITID)
        prep_waitid_fields(sqe);

    if (linked) {
        /* The pair was reserved together, so the second slot is ours. */
        struct io_uring_sqe *lt = sqe_at(r, 1);
        lt->opcode = IORING_OP_LINK_TIMEOUT;
        lt->fd = -1;
        lt->addr = timespec_for(r, lt, link_deadline_ns);
        lt->len = 1;
        lt->timeout_flags = IORING_TIMEOUT_ABS;
        lt->user_data = link_user_data;
    }
    r->sq_local_tail += linked ? 2 : 1;
    return 0;
}

int rt_prep_ptr(rt_ring *r, uint8_t opcode, uint8_t sqe_flags, uint16_t ioprio,
                int32_t fd, const char *buf, uint32_t len, uint64_t off,
                uint32_t op_flags, uint64_t user_data, uint16_t buf_index,
                int64_t link_deadline_ns, uint64_t link_user_data)
{
    return rt_prep(r, opcode, sqe_flags, ioprio, fd, (uint64_t)(uintptr_t)buf,
                   len, off, op_flags, user_data, buf_index, link_deadline_ns,
                   link_user_data);
}

int rt_prep_timeout(rt_ring *r, int64_t ns, uint32_t count,
                    uint32_t timeout_flags, uint64_t user_data,
                    uint8_t sqe_flags)
{
    int err = 0;
    struct io_uring_sqe *sqe = reserve(r, 1, &err);
    if (!sqe)
        return err;
    sqe->opcode = IORING_OP_TIMEOUT;
    sqe->flags = sqe_flags;
    sqe->fd = -1;
    sqe->addr = timespec_for(r, sqe, ns);
    sqe->len = 1;
    sqe->off = count;
    sqe->timeout_flags = timeout_flags;
    sqe->user_data = user_data;
    r->sq_local_tail++;
    return 0;
}

/* ------------------------------------------------------------------ */
/* direct descriptors (the registered file table) and open chains       */

int rt_files_register_sparse(rt_ring *r, uint32_t nr)
{
    if (r->soft)
        return rt_soft_files_register(r, nr);
    struct io_uring_rsrc_register reg;
    memset(&reg, 0, sizeof(reg));
    reg.nr = nr;
    reg.flags = IORING_RSRC_REGISTER_SPARSE;
    return sys_register(r->fd, IORING_REGISTER_FILES2, &reg, sizeof(reg));
}

int rt_files_unregister(rt_ring *r)
{
    if (r->soft)
        return rt_soft_files_unregister(r);
    return sys_register(r->fd, IORING_UNREGISTER_FILES, NULL, 0);
}

int rt_prep_close_direct(rt_ring *r, uint32_t slot, uint64_t user_data,
                         uint8_t sqe_flags)
{
    int err = 0;
    struct io_uring_sqe *sqe = reserve(r, 1, &err);
    if (!sqe)
        return err;
    sqe->opcode = IORING_OP_CLOSE;
    sqe->flags = sqe_flags;
    sqe->file_index = slot + 1;       /* fd stays 0: a slot, not an fd */
    sqe->user_data = user_data;
    r->sq_local_tail++;
    return 0;
}

/* A READ or WRITE on direct slot `slot` at the file position (off = -1),
 * so that a second one continues where the first stopped, whatever the
 * kind of file. */
static void prep_rw_direct(struct io_uring_sqe *sqe, uint8_t opcode,
                           uint32_t slot, uint64_t buf, uint32_t len,
                           uint64_t user_data)
{
    sqe->opcode = opcode;
    sqe->flags = IOSQE_FIXED_FILE;
    sqe->fd = (int32_t)slot;
    sqe->addr = buf;
    sqe->len = len;
    sqe->off = (uint64_t)-1;
    sqe->user_data = user_data;
}

int rt_prep_open_chain(rt_ring *r, int32_t dirfd, const char *path,
                       uint32_t open_flags, uint32_t mode, uint32_t slot,
                       uint8_t rw_opcode, uint64_t buf1, uint32_t len1,
                       uint64_t buf2, uint32_t len2, uint64_t ud_open,
                       uint64_t ud_rw1, uint64_t ud_rw2)
{
    uint32_t n = ud_rw2 ? 3 : 2;
    int err = 0;
    /* Reserved together: one enter submits the whole chain, so the kernel
     * never sees a link flag pointing past the SQEs it was given. */
    struct io_uring_sqe *open = reserve(r, n, &err);
    if (!open)
        return err;
    open->opcode = IORING_OP_OPENAT;
    /* A soft link: if the open fails, the reads are cancelled. */
    open->flags = IOSQE_IO_LINK;
    open->fd = dirfd;
    open->addr = (uint64_t)(uintptr_t)path;
    open->len = mode;
    open->open_flags = open_flags;
    open->file_index = slot + 1;
    open->user_data = ud_open;

    struct io_uring_sqe *rw1 = sqe_at(r, 1);
    prep_rw_direct(rw1, rw_opcode, slot, buf1, len1, ud_rw1);
    if (ud_rw2) {
        /* A hard link: a short first read (the usual case: the file is
         * smaller than the buffer) must not cancel the second, which is
         * what proves end of file for every kind of file. */
        rw1->flags |= IOSQE_IO_HARDLINK;
        prep_rw_direct(sqe_at(r, 2), rw_opcode, slot, buf2, len2, ud_rw2);
    }
    r->sq_local_tail += n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* completion                                                          */

uint32_t rt_reap(rt_ring *r, rt_cqe *out, uint32_t max)
{
    if (r->soft)
        return rt_soft_reap(r, out, max);
    uint32_t head = *r->cq_khead;            /* only we write it */
    uint32_t tail = load_acquire(r->cq_ktail);
    uint32_t n = tail - head;
    if (n > max)
        n = max;
    for (uint32_t i = 0; i < n; i++) {
        const struct io_uring_cqe *c = &r->cqes[(head + i) & r->cq_mask];
        out[i].user_data = c->user_data;
        out[i].res = c->res;
        out[i].flags = c->flags;
    }
    /* Release: our reads of the CQEs happen before the kernel may reuse
     * the slots. */
    if (n)
        store_release(r->cq_khead, head + n);
    r->stats.cqes_reaped += n;
    return n;
}

/* ------------------------------------------------------------------ */
/* polling before a wait                                               */

/* The first window, and the smallest worth polling for (below it a poll
 * would mostly cost the extra submit enter and find nothing). */
#define RT_POLL_START_NS 4000

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

int64_t rt_ring_set_poll(rt_ring *r, int64_t max_ns, int64_t window_ns)
{
    if (r->soft || max_ns < 0)
        max_ns = 0;
    /* Deferred or cooperative task work that the kernel does not flag
     * cannot be seen from user space. */
    if ((r->setup_flags & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN)) &&
        !(r->setup_flags & IORING_SETUP_TASKRUN_FLAG))
        max_ns = 0;
    r->poll_max_ns = max_ns;
    r->poll_ns = window_ns < 0 ? 0 : window_ns > max_ns ? max_ns : window_ns;
    return max_ns;
}

int64_t rt_poll_window(int64_t window_ns, int64_t waited_ns, int64_t max_ns)
{
    if (waited_ns > max_ns) {
        window_ns /= 2;
        return window_ns < RT_POLL_START_NS ? 0 : window_ns;
    }
    if (waited_ns > window_ns) {
        window_ns = window_ns < RT_POLL_START_NS ? RT_POLL_START_NS : window_ns * 2;
        return window_ns > max_ns ? max_ns : window_ns;
    }
    return window_ns;
}

/* Is there something for a GETEVENTS enter (or a reap) to collect? */
static inline int completion_pending(rt_ring *r)
{
    return load_acquire(r->cq_ktail) != *r->cq_khead ||
           (__atomic_load_n(r->sq_kflags, __ATOMIC_ACQUIRE) &
            (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW));
}

/* Poll until something is pending (1) or `limit_ns` after `start` (0);
 * *now is the time it stopped. */
static int poll_until(rt_ring *r, int64_t start, int64_t limit_ns, int64_t *now)
{
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (completion_pending(r)) {
                *now = mono_ns();
                return 1;
            }
            cpu_relax();
        }
        *now = mono_ns();
        if (*now - start >= limit_ns)
            return 0;
        sched_yield();
    }
}

/* rt_pass's enter for a wait, when polling is on: submit (and collect what
 * is already there) without waiting; if nothing came, poll for the window,
 * then sleep for what is left of the timeout.  Adapts the window to how
 * long the wait took. */
static int enter_polling(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns)
{
    int64_t start = mono_ns(), now;
    int64_t window = r->poll_ns;
    int rc;
    if (window > 0) {
        rc = enter(r, 0, 0);
        if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
            return rc;
        if (completion_pending(r))
            return rc;          /* no wait after all: the window stays */
        r->stats.polled_waits++;
        int64_t limit = timeout_ns < 0 || window < timeout_ns ? window : timeout_ns;
        int hit = poll_until(r, start, limit, &now);
        r->stats.poll_ns += (uint64_t)(now - start);
        if (hit) {
            r->stats.poll_hits++;
            rc = enter(r, 0, 0);        /* runs the flagged task work */
        } else {
            int64_t left = timeout_ns < 0 ? -1 : timeout_ns - (now - start);
            rc = timeout_ns >= 0 && left <= 0 ? enter(r, 0, 0) : enter(r, wait_nr, left);
            now = mono_ns();
        }
    } else {
        rc = enter(r, wait_nr, timeout_ns);
        now = mono_ns();
    }
    r->poll_ns = rt_poll_window(window, now - start, r->poll_max_ns);
    return rc;
}

int rt_pass(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns,
            rt_cqe *out, uint32_t max)
{
    if (r->soft)
        return rt_soft_pass(r, wait_nr, timeout_ns, out, max);
    int rc = wait_nr && timeout_ns != 0 && r->poll_max_ns > 0
                 ? enter_polling(r, wait_nr, timeout_ns)
                 : enter(r, wait_nr, timeout_ns);
    if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
        return rc;
    uint32_t n = rt_reap(r, out, max);
    /* Completions parked in the kernel's overflow list only move to the CQ
     * on the next enter: if there is room for more, fetch them now rather
     * than a whole pass later. */
    while (n < max && (__atomic_load_n(r->sq_kflags, __ATOMIC_ACQUIRE) &
                       IORING_SQ_CQ_OVERFLOW)) {
        rc = enter(r, 0, 0);
        if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
            break;
        uint32_t more = rt_reap(r, out + n, max - n);
        if (!more)
            break;
        n += more;
    }
    return (int)n;
}

/* ------------------------------------------------------------------ */
/* provided-buffer rings                                               */

static void *map_anon(size_t sz)
{
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static size_t page_round(size_t sz)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (sz + page - 1) & ~(page - 1);
}

/* Write buffer `bid` into the next free ring entry (not yet visible). */
static void buf_ring_add(rt_buf_ring *br, uint16_t bid)
{
    struct io_uring_buf *b = &br->ring->bufs[br->local_tail & br->mask];
    b->addr = (uint64_t)(uintptr_t)(br->base + (size_t)bid * br->size);
    b->len = br->size;
    b->bid = bid;
    br->local_tail++;
}

/* Make the added entries visible: the kernel reads the tail with acquire
 * semantics, so the entry writes above happen before it sees the tail. */
static void buf_ring_publish(rt_buf_ring *br)
{
    __atomic_store_n(&br->ring->tail, br->local_tail, __ATOMIC_RELEASE);
}

static void buf_ring_unmap(rt_buf_ring *br)
{
    if (br->ring)
        munmap(br->ring, br->ring_sz);
    if (br->base)
        munmap(br->base, br->data_sz);
    free(br);
}

rt_buf_ring *rt_buf_ring_new(rt_ring *r, uint16_t bgid, uint32_t count,
                             uint32_t size, uint32_t flags, int *err)
{
    if (count == 0 || count > 32768 || (count & (count - 1)) || size == 0) {
        *err = EINVAL;
        return NULL;
    }
    rt_buf_ring *br = calloc(1, sizeof(*br));
    if (!br) {
        *err = ENOMEM;
        return NULL;
    }
    br->ring_sz = page_round(count * sizeof(struct io_uring_buf));
    br->data_sz = page_round((size_t)count * size);
    br->ring = map_anon(br->ring_sz);
    br->base = map_anon(br->data_sz);
    if (!br->ring || !br->base) {
        buf_ring_unmap(br);
        *err = ENOMEM;
        return NULL;
    }
    br->size = size;
    br->mask = (uint16_t)(count - 1);
    br->bgid = bgid;

    struct rt_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br->ring;
    reg.ring_entries = count;
    reg.bgid = bgid;
    reg.flags = (uint16_t)flags;
    int rc = r->soft ? rt_soft_buf_register(r, br, flags)
                     : sys_register(r->fd, RT_IORING_REGISTER_PBUF_RING, &reg, 1);
    if (rc < 0) {
        buf_ring_unmap(br);
        *err = -rc;
        return NULL;
    }
    for (uint32_t bid = 0; bid < count; bid++)
        buf_ring_add(br, (uint16_t)bid);
    buf_ring_publish(br);
    *err = 0;
    return br;
}

void *rt_buf_ring_base(rt_buf_ring *br)
{
    return br->base;
}

void rt_buf_ring_recycle(rt_buf_ring *br, uint16_t bid)
{
    if (bid > br->mask)
        return;     /* not one of ours: never hand the kernel a wild pointer */
    buf_ring_add(br, bid);
    buf_ring_publish(br);
}

int rt_buf_ring_free(rt_ring *r, rt_buf_ring *br)
{
    struct rt_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.bgid = br->bgid;
    int rc = r->soft ? rt_soft_buf_unregister(r, br)
                     : sys_register(r->fd, RT_IORING_UNREGISTER_PBUF_RING, &reg, 1);
    buf_ring_unmap(br);
    return rc < 0 ? rc : 0;
}
