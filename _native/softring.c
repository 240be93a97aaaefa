/*
 * The soft ring: ring.h's io_uring ring emulated in user space, for where
 * the kernel refuses io_uring (Docker's and containerd's default seccomp
 * profiles, kernel.io_uring_disabled, gVisor, old kernels).
 *
 * It keeps the ring's boundary exactly: SQEs go in through the rt_prep*
 * functions of ring.c (the same code that fills the kernel's SQ fills ours),
 * CQEs come out through rt_reap / rt_pass, with the same user_data, the same
 * flags (IORING_CQE_F_MORE, IORING_CQE_F_BUFFER with the buffer id in the
 * upper 16 bits, IORING_CQE_F_BUF_MORE) and the same negative errnos.
 * Everything above _native/ runs unchanged on either backend.
 *
 * How the kernel's work is done here ("the kernel" below is io_uring):
 *
 * - SQEs are consumed in order when the ring is entered (rt_pass /
 *   rt_enter, or rt_prep when the SQ is full), as io_uring_enter does.
 *   Each op is first tried at once, without blocking -- as the kernel
 *   issues it inline -- and completes there if it can.
 * - Socket and pipe ops that would block wait for readiness in epoll:
 *   one registration per fd, EPOLLONESHOT, re-armed (EPOLL_CTL_MOD) with
 *   the union of what the fd's waiting ops need.  When it fires, each
 *   interested waiter retries its syscall (MSG_DONTWAIT / RWF_NOWAIT);
 *   multishot accept and receive post CQEs with F_MORE and wait again.
 * - File ops that can block (OPENAT that misses the dentry cache, STATX,
 *   FSYNC, the *AT ops, READ/WRITE of uncached file data) run on a bounded
 *   pool of worker threads, as io-wq does; workers post completions on a
 *   list and wake the loop through an eventfd that epoll watches.
 * - TIMEOUT and LINK_TIMEOUT wait on a binary heap of deadlines
 *   (CLOCK_MONOTONIC), which bounds the epoll wait.
 * - ASYNC_CANCEL searches the ops this ring has issued: an op waiting for
 *   readiness or a timer, or queued for a worker, completes with -ECANCELED
 *   (answer 0); one a worker is running answers -EALREADY, and the worker
 *   is interrupted (a blocking syscall then fails: the op ends with
 *   -EINTR) or completes with its result; nothing found answers -ENOENT.  Members of a chain not
 *   yet issued are in no list the cancel searches, as in the kernel.
 * - Links: IOSQE_IO_LINK / IOSQE_IO_HARDLINK chains run one member after
 *   the other; a member that fails (a negative result, or a short READ /
 *   WRITE) fails the rest of a soft link with -ECANCELED.
 * - Direct descriptors (IOSQE_FIXED_FILE, OPENAT into a slot, CLOSE of a
 *   slot) use a table of real fds in user space.
 * - Provided-buffer rings are the same memory the caller manages
 *   (rt_buf_ring): buffers are taken from its head exactly as the kernel
 *   takes them, incremental consumption (IOU_PBUF_RING_INC) included, and
 *   an empty ring answers -ENOBUFS.
 *
 * Documented differences from the kernel are in docs/design.md ("The soft
 * ring"); each is tested in tests/test_softring.py.
 *
 * Threads: everything here runs on the thread that drives the ring, except
 * job_run() and the worker loop, which touch only the op they run and the
 * pool (under its mutex).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ring_impl.h"

/* Syscall numbers and flags newer than some C libraries' headers (the
 * numbers are the same on every architecture since 5.1's unified table). */
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef __NR_epoll_pwait2
#define __NR_epoll_pwait2 441
#endif
#ifndef __NR_renameat2
#define __NR_renameat2 316
#endif
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif
#ifndef __O_TMPFILE
#define __O_TMPFILE 020000000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define SR_RESOLVE_CACHED 0x20
struct sr_open_how {
    uint64_t flags, mode, resolve;
};

#define IORING_OP_FTRUNCATE_ RT_IORING_OP_FTRUNCATE
#define IORING_OP_WAITID_ RT_IORING_OP_WAITID
#define SR_LAST_OP (IORING_OP_FTRUNCATE_ + 1)

/* op_run()'s answers besides a result: wait for readiness on op->rfd
 * (op->events), or the op went somewhere it will complete from (a worker,
 * a timer). */
#define SR_WAIT (INT32_MIN + 1)
#define SR_PENDING (INT32_MIN + 2)

/* Where an op is. */
enum {
    SR_LINKWAIT = 1, /* in a chain, behind a member not yet complete */
    SR_ISSUED,       /* being run */
    SR_POLL,         /* waiting for readiness on an fd */
    SR_TIMER,        /* a TIMEOUT or armed LINK_TIMEOUT, in the heap */
    SR_WORKER,       /* handed to the worker pool */
};

/* How a READ / WRITE reaches its file (decided at issue). */
enum {
    RW_UNKNOWN,
    RW_FILE,        /* regular file or block device: RWF_NOWAIT, then a worker */
    RW_NOWAIT,      /* pipe, socket, tty... with RWF_NOWAIT support */
    RW_PLAIN,       /* O_NONBLOCK set, no RWF_NOWAIT: plain read/write */
    RW_READY_FIRST, /* blocking fd without RWF_NOWAIT: readiness, then read */
};

/* Multishot ops post at most this many CQEs per readiness event before
 * letting others run (the kernel's MULTISHOT_MAX_RETRY is 32 too). */
#define SR_MULTISHOT_BURST 32
#define SR_MAX_EVENTS 256
#define SR_FREE_OPS_MAX 4096
#define SR_EVFD_KEY UINT64_MAX

typedef struct sr_op sr_op;
struct sr_op {
    /* The SQE, as consumed. */
    uint64_t user_data;
    uint64_t addr, off;
    uint32_t len, op_flags, file_index;
    int32_t fd;          /* as given: a slot with IOSQE_FIXED_FILE */
    uint16_t ioprio, buf_group;
    uint8_t opcode, flags;

    uint8_t state;
    uint8_t rw_kind;
    uint8_t lt_armed;    /* LINK_TIMEOUT: in the heap */
    uint8_t lt_abs;      /* LINK_TIMEOUT: rel_ns is absolute */
    uint8_t connecting;  /* CONNECT: in progress, ask SO_ERROR */
    uint8_t ready_first; /* ACCEPT on a blocking socket */
    uint8_t running;     /* 1: a worker runs it, 2: it has run (pool mutex) */
    uint8_t interrupt;   /* cancelled while running: signal the worker */
    uint8_t lt_fired;    /* its LINK_TIMEOUT fired while a worker ran it */
    uint8_t slot_kind;   /* READ/WRITE on a direct slot: cache its kind */
    uint8_t tracked;     /* in the hash and the list of pending ops */
    int32_t rfd;         /* the real fd, once resolved */
    int32_t prep_err;    /* the SQE was bad: complete with this */
    int32_t res;         /* a worker job's result */
    pthread_t worker;    /* the thread running it (pool mutex) */
    uint32_t events;     /* epoll events waited for */
    uint32_t cflags;     /* CQE flags of the final result */
    uint64_t done;       /* bytes transferred so far */
    uint64_t expect;     /* READ/WRITE(V): bytes asked for */
    struct iovec *iov;   /* READ/WRITE(V): what is left */
    struct iovec *iov_mem; /* READV/WRITEV: the copied array (to free) */
    struct iovec iov1;
    int iovcnt;
    int64_t rel_ns;      /* TIMEOUT / LINK_TIMEOUT: the timespec */
    int64_t expires;     /* absolute CLOCK_MONOTONIC ns, once armed */
    uint64_t seq_target; /* TIMEOUT with a count */
    uint32_t heap_idx;
    char *path, *path2;  /* copied at submission, as the kernel does */

    sr_op *link;         /* the next member of its chain */
    sr_op *ltimeout;     /* the LINK_TIMEOUT guarding this op */
    sr_op *target;       /* LINK_TIMEOUT: the op it guards */
    sr_op *hnext;        /* hash chain (by user_data) */
    sr_op *anext, *aprev;/* every issued op */
    sr_op *wnext, *wprev;/* an fd's waiters, a pool list, the free list */
};

typedef struct sr_fdent {
    sr_op *head, *tail;  /* ops waiting for readiness, in arrival order */
    uint32_t armed;      /* events registered and enabled (0: none) */
    uint8_t added;       /* EPOLL_CTL_ADD was done (it may since be stale) */
    uint8_t dirty;       /* in the list of fds to re-arm */
} sr_fdent;

typedef struct sr_group {
    rt_buf_ring *br;     /* NULL: no group with this id */
    uint16_t head;       /* the next buffer to take (the kernel's bl->head) */
    uint8_t inc;         /* IOU_PBUF_RING_INC */
} sr_group;

typedef struct sr_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sr_op *qhead, *qtail;   /* jobs not started */
    sr_op *dhead, *dtail;   /* jobs done, not yet collected */
    uint32_t queued, idle, nthreads, max_threads;
    sr_op **kick;           /* running jobs to interrupt (see pool_cancel) */
    uint32_t nkick, kick_cap;
    int has_done;           /* atomic: dhead != NULL */
    int closed;             /* the ring is gone: workers free what they finish */
    int refs;               /* the ring + one per thread */
    int evfd;
} sr_pool;

struct rt_soft {
    rt_ring *r;
    uint32_t khead, ktail, kflags;   /* what ring.c's SQ pointers point at */
    int epfd, evfd;

    /* The CQ: a power-of-two array of free-running indices; it grows
     * instead of overflowing. */
    rt_cqe *cq;
    uint32_t cq_cap, cq_head, cq_tail;
    uint64_t seq;        /* CQEs posted, timeouts' own excluded */

    sr_op *free_ops;
    uint32_t nfree;

    /* Issued ops: by user_data, and all of them (for ANY / FD cancels). */
    sr_op **hash;
    uint32_t hash_mask, hash_count;
    sr_op *all;

    sr_fdent *fds;
    int nfds;
    int *dirty;
    int ndirty, dirty_cap;
    uint32_t nwaiting;   /* ops in SR_POLL */

    sr_op **heap;
    uint32_t heap_len, heap_cap;
    sr_op *counted;      /* TIMEOUTs with a count (linked by wnext/wprev) */

    sr_pool *pool;

    sr_group *groups;
    uint32_t ngroups;

    int *files;          /* direct descriptors: slot -> fd (-1: empty) */
    uint8_t *file_kinds; /* RW_* of each slot's file, once known */
    uint32_t nfiles;

    int no_openat2, no_pwait2;
    struct epoll_event events[SR_MAX_EVENTS];
};

static void complete(rt_soft *s, sr_op *op, int32_t res, uint32_t cflags);
static void issue(rt_soft *s, sr_op *op);
static void op_step(rt_soft *s, sr_op *op, uint32_t revents);

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int is_rw(uint8_t opcode)
{
    return opcode == IORING_OP_READ || opcode == IORING_OP_WRITE ||
           opcode == IORING_OP_READV || opcode == IORING_OP_WRITEV;
}

static int is_write(uint8_t opcode)
{
    return opcode == IORING_OP_WRITE || opcode == IORING_OP_WRITEV;
}

/* ------------------------------------------------------------------ */
/* the completion queue                                                */

static int cq_grow(rt_soft *s)
{
    uint32_t cap = s->cq_cap * 2;
    rt_cqe *cq = malloc((size_t)cap * sizeof(*cq));
    if (!cq)
        return -ENOMEM;
    uint32_t n = s->cq_tail - s->cq_head;
    for (uint32_t i = 0; i < n; i++)
        cq[i] = s->cq[(s->cq_head + i) & (s->cq_cap - 1)];
    free(s->cq);
    s->cq = cq;
    s->cq_cap = cap;
    s->cq_head = 0;
    s->cq_tail = n;
    return 0;
}

static void post(rt_soft *s, uint64_t user_data, int32_t res, uint32_t flags,
                 int is_timeout)
{
    if (s->cq_tail - s->cq_head == s->cq_cap && cq_grow(s) < 0) {
        /* Out of memory: as a kernel ring without IORING_FEAT_NODROP. */
        s->r->stats.overflows++;
        return;
    }
    rt_cqe *c = &s->cq[s->cq_tail & (s->cq_cap - 1)];
    c->user_data = user_data;
    c->res = res;
    c->flags = flags;
    s->cq_tail++;
    if (!is_timeout)
        s->seq++;
}

/* ------------------------------------------------------------------ */
/* ops: allocation, the user_data hash, the list of issued ops          */

static sr_op *op_new(rt_soft *s)
{
    sr_op *op = s->free_ops;
    if (op) {
        s->free_ops = op->wnext;
        s->nfree--;
    } else {
        op = malloc(sizeof(*op));
        if (!op)
            return NULL;
    }
    memset(op, 0, sizeof(*op));
    op->rfd = -1;
    return op;
}

/* What an op owns besides itself. */
static void op_release_mem(sr_op *op)
{
    free(op->path);
    free(op->path2);
    free(op->iov_mem);
    op->path = op->path2 = NULL;
    op->iov = op->iov_mem = NULL;
}

static void op_free(rt_soft *s, sr_op *op)
{
    op_release_mem(op);
    if (s->nfree >= SR_FREE_OPS_MAX) {
        free(op);
        return;
    }
    op->wnext = s->free_ops;
    s->free_ops = op;
    s->nfree++;
}

static uint32_t hash_of(uint64_t ud, uint32_t mask)
{
    return (uint32_t)((ud * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static void hash_grow(rt_soft *s)
{
    uint32_t n = (s->hash_mask + 1) * 2;
    sr_op **h = calloc(n, sizeof(*h));
    if (!h)
        return;     /* longer chains, still correct */
    for (uint32_t i = 0; i <= s->hash_mask; i++) {
        sr_op *op = s->hash[i];
        while (op) {
            sr_op *next = op->hnext;
            uint32_t b = hash_of(op->user_data, n - 1);
            op->hnext = h[b];
            h[b] = op;
            op = next;
        }
    }
    free(s->hash);
    s->hash = h;
    s->hash_mask = n - 1;
}

/* Make a pending op findable by ASYNC_CANCEL.  (An op that completes
 * where it is issued is never tracked: no cancel could see it.) */
static void track(rt_soft *s, sr_op *op)
{
    if (op->tracked)
        return;
    op->tracked = 1;
    if (s->hash_count > s->hash_mask)
        hash_grow(s);
    uint32_t b = hash_of(op->user_data, s->hash_mask);
    op->hnext = s->hash[b];
    s->hash[b] = op;
    s->hash_count++;
    op->aprev = NULL;
    op->anext = s->all;
    if (s->all)
        s->all->aprev = op;
    s->all = op;
}

static void untrack(rt_soft *s, sr_op *op)
{
    if (!op->tracked)
        return;
    op->tracked = 0;
    sr_op **pp = &s->hash[hash_of(op->user_data, s->hash_mask)];
    while (*pp && *pp != op)
        pp = &(*pp)->hnext;
    if (!*pp)
        return;
    *pp = op->hnext;
    s->hash_count--;
    if (op->aprev)
        op->aprev->anext = op->anext;
    else
        s->all = op->anext;
    if (op->anext)
        op->anext->aprev = op->aprev;
    op->anext = op->aprev = NULL;
}

/* ------------------------------------------------------------------ */
/* the timer heap                                                      */

static void heap_set(rt_soft *s, uint32_t i, sr_op *op)
{
    s->heap[i] = op;
    op->heap_idx = i;
}

static void heap_up(rt_soft *s, uint32_t i)
{
    sr_op *op = s->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (s->heap[parent]->expires <= op->expires)
            break;
        heap_set(s, i, s->heap[parent]);
        i = parent;
    }
    heap_set(s, i, op);
}

static void heap_down(rt_soft *s, uint32_t i)
{
    sr_op *op = s->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= s->heap_len)
            break;
        if (c + 1 < s->heap_len && s->heap[c + 1]->expires < s->heap[c]->expires)
            c++;
        if (op->expires <= s->heap[c]->expires)
            break;
        heap_set(s, i, s->heap[c]);
        i = c;
    }
    heap_set(s, i, op);
}

static int heap_push(rt_soft *s, sr_op *op)
{
    if (s->heap_len == s->heap_cap) {
        uint32_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        sr_op **h = realloc(s->heap, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        s->heap = h;
        s->heap_cap = cap;
    }
    heap_set(s, s->heap_len++, op);
    heap_up(s, s->heap_len - 1);
    return 0;
}

static void heap_remove(rt_soft *s, sr_op *op)
{
    uint32_t i = op->heap_idx;
    sr_op *last = s->heap[--s->heap_len];
    if (i == s->heap_len)
        return;
    heap_set(s, i, last);
    if (i > 0 && s->heap[(i - 1) / 2]->expires > last->expires)
        heap_up(s, i);
    else
        heap_down(s, i);
}

/* Take a TIMEOUT (or a WAITID's next look) off the heap and, if it
 * counts completions, off the counted list. */
static void timer_disarm(rt_soft *s, sr_op *op)
{
    heap_remove(s, op);
    if (op->seq_target) {
        if (op->wprev)
            op->wprev->wnext = op->wnext;
        else
            s->counted = op->wnext;
        if (op->wnext)
            op->wnext->wprev = op->wprev;
        op->seq_target = 0;
    }
    op->state = SR_ISSUED;
}

/* Arm `op`'s LINK_TIMEOUT, if it has one: when the op goes pending, as
 * the kernel arms it when the op is issued. */
static void arm_link_timeout(rt_soft *s, sr_op *op)
{
    sr_op *lt = op->ltimeout;
    if (!lt || lt->lt_armed)
        return;
    lt->expires = lt->lt_abs ? lt->rel_ns : now_ns() + lt->rel_ns;
    if (heap_push(s, lt) == 0) {
        lt->lt_armed = 1;
        lt->state = SR_TIMER;
    }
}

/* ------------------------------------------------------------------ */
/* readiness: epoll, one ONESHOT registration per fd                    */

static sr_fdent *fd_ent(rt_soft *s, int fd)
{
    if (fd >= s->nfds) {
        int n = s->nfds ? s->nfds : 64;
        while (n <= fd)
            n *= 2;
        sr_fdent *f = realloc(s->fds, (size_t)n * sizeof(*f));
        if (!f)
            return NULL;
        memset(f + s->nfds, 0, (size_t)(n - s->nfds) * sizeof(*f));
        s->fds = f;
        s->nfds = n;
    }
    return &s->fds[fd];
}

static void mark_dirty(rt_soft *s, int fd, sr_fdent *e)
{
    if (e->dirty)
        return;
    if (s->ndirty == s->dirty_cap) {
        int cap = s->dirty_cap ? s->dirty_cap * 2 : 64;
        int *d = realloc(s->dirty, (size_t)cap * sizeof(*d));
        if (!d)
            return;     /* flushed when the next fd is marked */
        s->dirty = d;
        s->dirty_cap = cap;
    }
    e->dirty = 1;
    s->dirty[s->ndirty++] = fd;
}

/* Queue `op` behind the other waiters of its fd; the registration is
 * brought up to date in flush_fds, once per pass.  0 or -errno. */
static int fd_wait(rt_soft *s, sr_op *op)
{
    sr_fdent *e = op->rfd >= 0 ? fd_ent(s, op->rfd) : NULL;
    if (!e)
        return op->rfd < 0 ? -EBADF : -ENOMEM;
    op->state = SR_POLL;
    op->wnext = NULL;
    op->wprev = e->tail;
    if (e->tail)
        e->tail->wnext = op;
    else
        e->head = op;
    e->tail = op;
    s->nwaiting++;
    if ((e->armed & op->events) != op->events)
        mark_dirty(s, op->rfd, e);
    return 0;
}

static void fd_unwait(rt_soft *s, sr_op *op)
{
    sr_fdent *e = &s->fds[op->rfd];
    if (op->wprev)
        op->wprev->wnext = op->wnext;
    else
        e->head = op->wnext;
    if (op->wnext)
        op->wnext->wprev = op->wprev;
    else
        e->tail = op->wprev;
    op->wnext = op->wprev = NULL;
    s->nwaiting--;
    op->state = SR_ISSUED;
    /* Forget the registration rather than trust it: with nobody waiting,
     * the fd may be closed and its number reused before the next wait,
     * which must then register the new file. */
    if (!e->head)
        e->armed = 0;
}

/* An fd that epoll refuses (a regular file, a directory: EPERM) or that
 * is gone.  Its waiters get what the kernel would give them. */
static void fd_refused(rt_soft *s, int fd, int err)
{
    sr_fdent *e = &s->fds[fd];
    sr_op *op = e->head;
    e->head = e->tail = NULL;
    e->armed = 0;
    while (op) {
        sr_op *next = op->wnext;
        op->wnext = op->wprev = NULL;
        s->nwaiting--;
        op->state = SR_ISSUED;
        if (err == -EPERM && op->opcode == IORING_OP_POLL_ADD) {
            /* Files without a poll method are always ready (the kernel's
             * DEFAULT_POLLMASK). */
            complete(s, op, (int32_t)(op->events & (EPOLLIN | EPOLLOUT |
                                                    EPOLLRDNORM | EPOLLWRNORM)), 0);
        } else if (err == -EPERM && is_rw(op->opcode)) {
            /* Cannot wait for readiness: a worker does it blocking. */
            op->rw_kind = RW_FILE;
            op->flags |= IOSQE_ASYNC;
            op_step(s, op, 0);
        } else {
            complete(s, op, err, 0);
        }
        op = next;
    }
}

static void flush_fds(rt_soft *s)
{
    for (int i = 0; i < s->ndirty; i++) {
        int fd = s->dirty[i];
        sr_fdent *e = &s->fds[fd];
        e->dirty = 0;
        uint32_t want = 0;
        for (sr_op *op = e->head; op; op = op->wnext)
            want |= op->events;
        if (!want || (e->armed & want) == want)
            continue;
        struct epoll_event ev;
        ev.events = want | EPOLLONESHOT;
        ev.data.u64 = (uint64_t)fd;
        int rc = epoll_ctl(s->epfd, e->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
        if (rc < 0 && errno == ENOENT && e->added)
            rc = epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);   /* a new file */
        else if (rc < 0 && errno == EEXIST)
            rc = epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev);
        if (rc == 0) {
            e->added = 1;
            e->armed = want;
        } else {
            fd_refused(s, fd, -errno);
        }
    }
    s->ndirty = 0;
}

/* epoll says `fd` is ready: every waiter that cares tries again. */
static void fd_ready(rt_soft *s, int fd, uint32_t revents)
{
    if (fd < 0 || fd >= s->nfds)
        return;
    sr_fdent *e = &s->fds[fd];
    e->armed = 0;   /* EPOLLONESHOT: the registration is now disabled */
    sr_op *op = e->head;
    e->head = e->tail = NULL;
    while (op) {
        sr_op *next = op->wnext;
        op->wnext = op->wprev = NULL;
        s->nwaiting--;
        op->state = SR_ISSUED;
        if (revents & (op->events | EPOLLERR | EPOLLHUP))
            op_step(s, op, revents);
        else
            fd_wait(s, op);     /* (cannot fail: the fd has its entry) */
        op = next;
    }
}

/* ------------------------------------------------------------------ */
/* provided-buffer rings                                               */

static sr_group *group_of(rt_soft *s, uint16_t bgid)
{
    return bgid < s->ngroups && s->groups[bgid].br ? &s->groups[bgid] : NULL;
}

/* The buffer at the group's head, as the kernel would select it. */
static int buf_peek(sr_group *g, char **addr, uint32_t *len, uint16_t *bid)
{
    rt_buf_ring *br = g->br;
    uint16_t tail = __atomic_load_n(&br->ring->tail, __ATOMIC_ACQUIRE);
    if (g->head == tail)
        return -ENOBUFS;
    struct io_uring_buf *b = &br->ring->bufs[g->head & br->mask];
    *addr = (char *)(uintptr_t)b->addr;
    *len = b->len;
    *bid = b->bid;
    return 0;
}

/* `n` bytes went into the head buffer: consume it (or, incrementally, its
 * first n bytes) and return the CQE flags that say so. */
static uint32_t buf_commit(sr_group *g, uint32_t n)
{
    rt_buf_ring *br = g->br;
    struct io_uring_buf *b = &br->ring->bufs[g->head & br->mask];
    uint32_t flags = IORING_CQE_F_BUFFER | ((uint32_t)b->bid << IORING_CQE_BUFFER_SHIFT);
    if (g->inc && n < b->len) {
        b->addr += n;
        b->len -= n;
        return flags | IORING_CQE_F_BUF_MORE;
    }
    g->head++;
    return flags;
}

/* ------------------------------------------------------------------ */
/* the worker pool (io-wq)                                              */

/* Stopping a job a worker is running: io-wq sends its worker a signal-like
 * notification, so that a blocking syscall (opening a FIFO, a blocking
 * connect) fails with EINTR and the request completes with -EINTR.  We do
 * the same with a real-time signal whose handler does nothing, installed
 * without SA_RESTART and unblocked only in the workers.  It is taken only
 * if nobody else uses it; without it a running job just runs to its end. */
#define SR_SIGNAL_WANTED (SIGRTMAX - 4)
static int sr_signal;   /* 0: none */
static pthread_once_t sr_signal_once = PTHREAD_ONCE_INIT;

static void sr_signal_handler(int sig)
{
    (void)sig;      /* the point is the EINTR */
}

/* Send our signal to a worker -- if it is still ours: a program may take
 * the signal over later (with Python's signal module, say), and must not
 * see its handler run for our interrupts. */
static void sr_interrupt(pthread_t worker)
{
    struct sigaction cur;
    if (sigaction(sr_signal, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
        cur.sa_handler == sr_signal_handler)
        pthread_kill(worker, sr_signal);
}

static void sr_signal_init(void)
{
    struct sigaction old, sa;
    int sig = SR_SIGNAL_WANTED;
    if (sigaction(sig, NULL, &old) < 0 || (old.sa_flags & SA_SIGINFO) ||
        old.sa_handler != SIG_DFL)
        return;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sr_signal_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) == 0)
        sr_signal = sig;
}

/* The blocking syscall of an op, on a worker thread.  Touches only `op`. */
static int32_t rw_call(sr_op *op, int flags);

static int32_t job_run(sr_op *op)
{
    long rc;
    switch (op->opcode) {
    case IORING_OP_OPENAT:
        rc = openat(op->fd, op->path, (int)op->op_flags | (op->file_index ? O_CLOEXEC : 0),
                    (mode_t)op->len);
        break;
    case IORING_OP_STATX:
        rc = syscall(__NR_statx, op->fd, op->path, (int)op->op_flags,
                     (unsigned)op->len, (void *)(uintptr_t)op->off);
        break;
    case IORING_OP_FSYNC:
        rc = (op->op_flags & IORING_FSYNC_DATASYNC) ? fdatasync(op->rfd) : fsync(op->rfd);
        break;
    case IORING_OP_FTRUNCATE_:
        rc = ftruncate(op->rfd, (off_t)op->off);
        break;
    case IORING_OP_FALLOCATE:
        rc = fallocate(op->rfd, (int)op->len, (off_t)op->off, (off_t)op->addr);
        break;
    case IORING_OP_MKDIRAT:
        rc = mkdirat(op->fd, op->path, (mode_t)op->len);
        break;
    case IORING_OP_UNLINKAT:
        rc = unlinkat(op->fd, op->path, (int)op->op_flags);
        break;
    case IORING_OP_RENAMEAT:
        rc = syscall(__NR_renameat2, op->fd, op->path, (int)op->len, op->path2,
                     (unsigned)op->op_flags);
        break;
    case IORING_OP_SYMLINKAT:
        rc = symlinkat(op->path, op->fd, op->path2);
        break;
    case IORING_OP_LINKAT:
        rc = linkat(op->fd, op->path, (int)op->len, op->path2, (int)op->op_flags);
        break;
    case IORING_OP_CONNECT:
        rc = connect(op->rfd, (const struct sockaddr *)(uintptr_t)op->addr, (socklen_t)op->off);
        break;
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_READV:
    case IORING_OP_WRITEV: {
        /* One blocking call for what the non-blocking attempts left, as
         * io-wq does. */
        int32_t n = rw_call(op, (int)(op->op_flags & ~RWF_NOWAIT));
        if (n < 0)
            return op->done ? (int32_t)op->done : n;
        return (int32_t)(op->done + (uint64_t)n);
    }
    default:
        return -EINVAL;
    }
    return rc < 0 ? -errno : (int32_t)rc;
}

/* A finished job nobody will collect (the ring was closed). */
static void job_abandon(sr_op *op)
{
    if (op->opcode == IORING_OP_OPENAT && op->res >= 0)
        close(op->res);
    op_release_mem(op);
    free(op);
}

static void pool_destroy(sr_pool *p)
{
    free(p->kick);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

static void kick_remove(sr_pool *p, sr_op *op)
{
    for (uint32_t i = 0; i < p->nkick; i++) {
        if (p->kick[i] == op) {
            p->kick[i] = p->kick[--p->nkick];
            return;
        }
    }
}

static void *worker_main(void *arg)
{
    sr_pool *p = arg;
    if (sr_signal) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sr_signal);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->qhead && !p->closed) {
            /* An idle worker leaves after a while, as io-wq's do. */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 30;
            p->idle++;
            int rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
            p->idle--;
            if (rc == ETIMEDOUT && !p->qhead)
                goto out;
        }
        if (p->closed)
            break;
        sr_op *op = p->qhead;
        p->qhead = op->wnext;
        if (!p->qhead)
            p->qtail = NULL;
        p->queued--;
        op->running = 1;
        op->worker = pthread_self();
        pthread_mutex_unlock(&p->mu);

        op->res = job_run(op);

        pthread_mutex_lock(&p->mu);
        op->running = 2;
        if (op->interrupt)
            kick_remove(p, op);
        if (p->closed) {
            job_abandon(op);
            continue;
        }
        op->wnext = NULL;
        int first = p->dhead == NULL;
        if (p->dtail)
            p->dtail->wnext = op;
        else
            p->dhead = op;
        p->dtail = op;
        __atomic_store_n(&p->has_done, 1, __ATOMIC_RELEASE);
        if (first) {
            /* (Written under the mutex: the ring closes evfd only after
             * setting `closed` under it.) */
            uint64_t one = 1;
            ssize_t w = write(p->evfd, &one, sizeof(one));
            (void)w;    /* a full counter is still readable */
        }
    }
out:
    p->nthreads--;
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (last)
        pool_destroy(p);
    return NULL;
}

/* Start one more worker (pool mutex held).  Signals stay with the thread
 * that runs the loop: workers block them all. */
static int pool_spawn(sr_pool *p)
{
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t tid;
    if (pthread_attr_init(&attr) != 0)
        return -ENOMEM;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&tid, &attr, worker_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -rc;
    p->nthreads++;
    p->refs++;
    return 0;
}

/* The pool, made on first use with the eventfd its workers wake the loop
 * through (a ring that never needs a worker costs one fd, as a kernel
 * ring).  NULL with *err set if it cannot be had. */
static sr_pool *pool_get(rt_soft *s, int *err)
{
    if (s->pool)
        return s->pool;
    if (s->evfd < 0) {
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.u64 = SR_EVFD_KEY;
        if (fd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            *err = -errno;
            if (fd >= 0)
                close(fd);
            return NULL;
        }
        s->evfd = fd;
    }
    sr_pool *p = calloc(1, sizeof(*p));
    *err = -ENOMEM;
    if (!p)
        return NULL;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    /* io-wq's bound for blocking work is 4 per CPU (and RLIMIT_NPROC). */
    p->max_threads = (uint32_t)(ncpu * 4 < 4 ? 4 : ncpu * 4 > 64 ? 64 : ncpu * 4);
    p->refs = 1;
    p->evfd = s->evfd;
    pthread_once(&sr_signal_once, sr_signal_init);
    s->pool = p;
    return p;
}

/* Hand `op` to a worker.  Returns SR_PENDING, or -ECANCELED if not one
 * worker can be had (what io-wq answers when it cannot create a worker;
 * running the job here instead could block the loop forever, e.g. on a
 * FIFO), or why the pool could not be made. */
static int32_t to_worker(rt_soft *s, sr_op *op)
{
    int err;
    sr_pool *p = pool_get(s, &err);
    if (!p)
        return err;
    pthread_mutex_lock(&p->mu);
    op->state = SR_WORKER;
    op->running = 0;
    op->interrupt = 0;
    op->wnext = NULL;
    if (p->qtail)
        p->qtail->wnext = op;
    else
        p->qhead = op;
    p->qtail = op;
    p->queued++;
    if (p->queued > p->idle && p->nthreads < p->max_threads &&
        pool_spawn(p) < 0 && p->nthreads == 0) {
        p->qhead = p->qtail = NULL;
        p->queued = 0;
        pthread_mutex_unlock(&p->mu);
        op->state = SR_ISSUED;
        return -ECANCELED;
    }
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return SR_PENDING;
}

/* Cancel a job: take it back if no worker has started it (0), else
 * interrupt the worker running it (-EALREADY: it completes, with -EINTR if
 * the signal stopped a blocking syscall). */
static int pool_cancel(rt_soft *s, sr_op *op)
{
    sr_pool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    if (op->running) {
        if (op->running == 1 && sr_signal && !op->interrupt) {
            sr_op **k = p->kick;
            if (p->nkick == p->kick_cap) {
                uint32_t cap = p->kick_cap ? p->kick_cap * 2 : 8;
                k = realloc(p->kick, cap * sizeof(*k));
                if (k) {
                    p->kick = k;
                    p->kick_cap = cap;
                }
            }
            if (k) {
                op->interrupt = 1;
                p->kick[p->nkick++] = op;
                /* (The worker is alive: it cannot finish the job without
                 * this mutex.) */
                sr_interrupt(op->worker);
            }
        }
        pthread_mutex_unlock(&p->mu);
        return -EALREADY;
    }
    sr_op **pp = &p->qhead, *prev = NULL;
    while (*pp && *pp != op) {
        prev = *pp;
        pp = &(*pp)->wnext;
    }
    if (*pp) {
        *pp = op->wnext;
        if (p->qtail == op)
            p->qtail = prev;
        p->queued--;
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void install_direct(rt_soft *s, sr_op *op, int fd, uint8_t kind, int32_t *res);

static void collect_done(rt_soft *s)
{
    sr_pool *p = s->pool;
    if (!p || !__atomic_load_n(&p->has_done, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&p->mu);
    sr_op *op = p->dhead;
    p->dhead = p->dtail = NULL;
    __atomic_store_n(&p->has_done, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&p->mu);
    while (op) {
        sr_op *next = op->wnext;
        op->wnext = NULL;
        op->state = SR_ISSUED;
        int32_t res = op->res;
        if (op->opcode == IORING_OP_OPENAT && res >= 0)
            install_direct(s, op, res, RW_UNKNOWN, &res);
        if (op->lt_fired && res == -EINTR)
            res = -ECANCELED;   /* what an op its linked timeout stopped gets */
        complete(s, op, res, 0);
        op = next;
    }
}

/* The signal may reach a worker just before it enters the blocking
 * syscall, where it changes nothing: send it again, every few ms, until
 * the job is over. */
#define SR_KICK_NS 5000000
static void pool_kick(rt_soft *s)
{
    sr_pool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < p->nkick; i++)
        sr_interrupt(p->kick[i]->worker);
    pthread_mutex_unlock(&p->mu);
}

static int pool_kicking(rt_soft *s)
{
    return s->pool && __atomic_load_n(&s->pool->nkick, __ATOMIC_RELAXED) > 0;
}

static void pool_close(rt_soft *s)
{
    sr_pool *p = s->pool;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->closed = 1;
    for (sr_op *op = p->qhead, *next; op; op = next) {
        next = op->wnext;
        op->res = -ECANCELED;
        job_abandon(op);
    }
    for (sr_op *op = p->dhead, *next; op; op = next) {
        next = op->wnext;
        job_abandon(op);
    }
    p->qhead = p->qtail = p->dhead = p->dtail = NULL;
    pthread_cond_broadcast(&p->cv);
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (last)
        pool_destroy(p);
    s->pool = NULL;
}

/* ------------------------------------------------------------------ */
/* direct descriptors                                                  */

/* The fd an op works on: its own, or the one in its direct slot. */
static int resolve_fd(rt_soft *s, sr_op *op)
{
    if (!(op->flags & IOSQE_FIXED_FILE)) {
        op->rfd = op->fd;
        return 0;
    }
    uint32_t slot = (uint32_t)op->fd;
    if (!s->files || slot >= s->nfiles || s->files[slot] < 0)
        return -EBADF;
    op->rfd = s->files[slot];
    op->slot_kind = 1;
    return 0;
}

/* An OPENAT's fd: returned as it is, or put in the op's direct slot (with
 * how READ/WRITE reach it, if known already). */
static void install_direct(rt_soft *s, sr_op *op, int fd, uint8_t kind, int32_t *res)
{
    *res = fd;
    if (!op->file_index)
        return;
    uint32_t slot = op->file_index - 1;
    if (!s->files) {
        close(fd);
        *res = -ENXIO;
        return;
    }
    if (op->file_index == IORING_FILE_INDEX_ALLOC) {
        slot = s->nfiles;
        for (uint32_t i = 0; i < s->nfiles; i++) {
            if (s->files[i] < 0) {
                slot = i;
                break;
            }
        }
        if (slot == s->nfiles) {
            close(fd);
            *res = -ENFILE;
            return;
        }
        *res = (int32_t)slot;
    } else {
        *res = 0;
    }
    if (slot >= s->nfiles) {
        close(fd);
        *res = -EINVAL;
        return;
    }
    if (s->files[slot] >= 0)
        close(s->files[slot]);      /* the kernel replaces what was there */
    s->files[slot] = fd;
    s->file_kinds[slot] = kind;
}

/* ------------------------------------------------------------------ */
/* each opcode                                                         */

/* READ/WRITE(V): one preadv2/pwritev2 of what is left.  -errno or bytes. */
static int32_t rw_call(sr_op *op, int flags)
{
    off_t off = op->off == (uint64_t)-1 ? -1 : (off_t)(op->off + op->done);
    ssize_t n = is_write(op->opcode)
                    ? pwritev2(op->rfd, op->iov, op->iovcnt, off, flags)
                    : preadv2(op->rfd, op->iov, op->iovcnt, off, flags);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return (int32_t)n;
}

static void iov_advance(sr_op *op, uint64_t n)
{
    op->done += n;
    while (n && op->iovcnt) {
        if (n < op->iov->iov_len) {
            op->iov->iov_base = (char *)op->iov->iov_base + n;
            op->iov->iov_len -= n;
            return;
        }
        n -= op->iov->iov_len;
        op->iov++;
        op->iovcnt--;
    }
}

static int rw_kind_of(rt_soft *s, sr_op *op)
{
    uint8_t *cache = NULL;
    if (op->slot_kind && s->files && (uint32_t)op->fd < s->nfiles) {
        cache = &s->file_kinds[op->fd];
        if (*cache != RW_UNKNOWN)
            return *cache;
    }
    struct stat st;
    if (fstat(op->rfd, &st) < 0)
        return -errno;
    int kind = (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) ? RW_FILE : RW_NOWAIT;
    if (cache)
        *cache = (uint8_t)kind;
    return kind;
}

/* The kernel's rules: a regular file is read without blocking as far as
 * the page cache allows (a short read of one goes on for the rest, as
 * io_read does), the remainder by a worker; anything else completes with
 * what one non-blocking call gets, or waits for readiness. */
static int32_t run_rw(rt_soft *s, sr_op *op, uint32_t revents)
{
    int user = (int)op->op_flags;
    if (op->rw_kind == RW_UNKNOWN) {
        int kind = rw_kind_of(s, op);
        if (kind < 0)
            return kind;
        op->rw_kind = (uint8_t)kind;
    }
    op->events = is_write(op->opcode) ? EPOLLOUT : EPOLLIN;
    for (;;) {
        int32_t n;
        switch (op->rw_kind) {
        case RW_FILE:
            if (op->flags & IOSQE_ASYNC)
                return to_worker(s, op);
            n = rw_call(op, user | RWF_NOWAIT);
            if (n > 0) {
                iov_advance(op, (uint64_t)n);
                if (op->done < op->expect)
                    continue;
                return (int32_t)op->done;
            }
            if (n == 0)
                return (int32_t)op->done;
            if (n == -EAGAIN || n == -EOPNOTSUPP) {
                if (user & RWF_NOWAIT)
                    return op->done ? (int32_t)op->done : -EAGAIN;
                return to_worker(s, op);
            }
            return op->done ? (int32_t)op->done : n;
        case RW_NOWAIT:
            n = rw_call(op, user | RWF_NOWAIT);
            if (n == -ESPIPE && op->off != (uint64_t)-1) {
                /* A pipe or socket: its "position" is where it is. */
                op->off = (uint64_t)-1;
                continue;
            }
            if (n == -EOPNOTSUPP) {
                int fl = fcntl(op->rfd, F_GETFL);
                if (fl < 0)
                    return -errno;
                op->rw_kind = (fl & O_NONBLOCK) ? RW_PLAIN : RW_READY_FIRST;
                continue;
            }
            break;
        case RW_PLAIN:
            n = rw_call(op, user);
            break;
        default: /* RW_READY_FIRST */
            if (!revents)
                return SR_WAIT;
            n = rw_call(op, user);
            break;
        }
        if (n == -EAGAIN && !(user & RWF_NOWAIT))
            return SR_WAIT;
        return n;
    }
}

/* SEND, or RECV into the caller's buffer: one non-blocking call for what
 * is left.  With MSG_WAITALL a stream socket waits for the rest (the
 * kernel's io_net_retry); otherwise a short transfer is the result. */
static int32_t run_transfer(sr_op *op, uint32_t revents)
{
    int recv_ = op->opcode == IORING_OP_RECV;
    op->events = recv_ ? EPOLLIN : EPOLLOUT;
    if (!revents && (op->ioprio & IORING_RECVSEND_POLL_FIRST))
        return SR_WAIT;
    char *buf = (char *)(uintptr_t)op->addr + op->done;
    size_t left = op->len - op->done;
    int flags = (int)op->op_flags | MSG_DONTWAIT;
    ssize_t n = recv_ ? recv(op->rfd, buf, left, flags) : send(op->rfd, buf, left, flags);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return SR_WAIT;
        return op->done ? (int32_t)op->done : -errno;
    }
    op->done += (uint64_t)n;
    if ((op->op_flags & MSG_WAITALL) && n > 0 && op->done < op->len) {
        int type = 0;
        socklen_t tl = sizeof(type);
        if (getsockopt(op->rfd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
            (type == SOCK_STREAM || type == SOCK_SEQPACKET))
            return SR_WAIT;
    }
    return (int32_t)op->done;
}

/* RECV with IOSQE_BUFFER_SELECT, once or multishot: each receive takes
 * the group's head buffer, as the kernel does when data is there. */
static int32_t run_recv_select(rt_soft *s, sr_op *op, uint32_t revents)
{
    op->events = EPOLLIN;
    if (!revents && (op->ioprio & IORING_RECVSEND_POLL_FIRST))
        return SR_WAIT;
    sr_group *g = group_of(s, op->buf_group);
    if (!g)
        return -ENOBUFS;
    int multishot = (op->ioprio & IORING_RECV_MULTISHOT) != 0;
    for (int i = 0; i < SR_MULTISHOT_BURST; i++) {
        char *addr;
        uint32_t blen;
        uint16_t bid;
        if (buf_peek(g, &addr, &blen, &bid) < 0)
            return -ENOBUFS;
        uint32_t len = op->len && op->len < blen ? op->len : blen;
        ssize_t n = recv(op->rfd, addr, len, (int)op->op_flags | MSG_DONTWAIT);
        if (n < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? SR_WAIT : -errno;
        if (n == 0)
            return 0;   /* end of stream: no buffer taken */
        uint32_t cflags = buf_commit(g, (uint32_t)n);
        if (!multishot) {
            op->cflags = cflags;
            return (int32_t)n;
        }
        post(s, op->user_data, (int32_t)n, cflags | IORING_CQE_F_MORE, 0);
        if ((uint32_t)n < len)
            return SR_WAIT;   /* most likely drained; epoll re-checks */
    }
    return SR_WAIT;
}

static int32_t run_msg(rt_soft *s, sr_op *op)
{
    (void)s;
    if (op->flags & IOSQE_BUFFER_SELECT)
        return -EINVAL;
    int recv_ = op->opcode == IORING_OP_RECVMSG;
    op->events = recv_ ? EPOLLIN : EPOLLOUT;
    struct msghdr *msg = (struct msghdr *)(uintptr_t)op->addr;
    int flags = (int)op->op_flags | MSG_DONTWAIT;
    ssize_t n = recv_ ? recvmsg(op->rfd, msg, flags) : sendmsg(op->rfd, msg, flags);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? SR_WAIT : -errno;
    return (int32_t)n;
}

static int32_t run_accept(rt_soft *s, sr_op *op, uint32_t revents)
{
    op->events = EPOLLIN;
    if (op->file_index)
        return -EINVAL;     /* accept into a direct slot: not emulated */
    if (!revents) {
        /* accept4 has no per-call non-blocking flag: on a listener in
         * blocking mode, wait for readiness first. */
        int fl = fcntl(op->rfd, F_GETFL);
        if (fl < 0)
            return -errno;
        op->ready_first = !(fl & O_NONBLOCK);
        if (op->ready_first)
            return SR_WAIT;
    }
    int multishot = (op->ioprio & IORING_ACCEPT_MULTISHOT) != 0;
    int burst = op->ready_first ? 1 : SR_MULTISHOT_BURST;
    for (int i = 0; i < burst; i++) {
        int fd = accept4(op->rfd, multishot ? NULL : (struct sockaddr *)(uintptr_t)op->addr,
                         multishot ? NULL : (socklen_t *)(uintptr_t)op->off,
                         (int)op->op_flags);
        if (fd < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? SR_WAIT : -errno;
        if (!multishot)
            return fd;
        post(s, op->user_data, fd, IORING_CQE_F_MORE, 0);
    }
    return SR_WAIT;
}

static int32_t run_connect(rt_soft *s, sr_op *op)
{
    op->events = EPOLLOUT;
    if (op->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(op->rfd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            return -errno;
        return -err;
    }
    int fl = fcntl(op->rfd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK))
        return to_worker(s, op);   /* a blocking connect cannot be split */
    if (connect(op->rfd, (const struct sockaddr *)(uintptr_t)op->addr, (socklen_t)op->off) == 0)
        return 0;
    if (errno == EINPROGRESS) {
        op->connecting = 1;
        return SR_WAIT;
    }
    if (errno == EAGAIN)
        return SR_WAIT;    /* a Unix socket's full backlog: try again */
    return -errno;
}

static int32_t run_poll(rt_soft *s, sr_op *op, uint32_t revents)
{
    uint32_t want = op->op_flags & 0xFFFF;
    /* (ERR and HUP are always reported; ask for them so that a poll for
     * nothing else still has a registration.) */
    op->events = want ? want : (EPOLLERR | EPOLLHUP);
    if (!revents)
        return SR_WAIT;
    uint32_t mask = revents & (want | EPOLLERR | EPOLLHUP);
    if (op->len & IORING_POLL_ADD_MULTI) {
        post(s, op->user_data, (int32_t)mask, IORING_CQE_F_MORE, 0);
        return SR_WAIT;
    }
    return (int32_t)mask;
}

/* OPENAT: inline if the path is in the dentry cache (openat2 with
 * RESOLVE_CACHED, O_NONBLOCK added as the kernel's inline attempt does),
 * else a worker.  O_CREAT / O_TRUNC / O_TMPFILE always go to a worker. */
static int32_t run_openat(rt_soft *s, sr_op *op)
{
    uint32_t flags = op->op_flags;
    if (op->file_index && op->file_index != IORING_FILE_INDEX_ALLOC) {
        if (!s->files)
            return -ENXIO;
        if (op->file_index - 1 >= s->nfiles)
            return -EINVAL;
    }
    if (!(flags & (O_TRUNC | O_CREAT | __O_TMPFILE)) && !s->no_openat2 &&
        !(op->flags & IOSQE_ASYNC)) {
        struct sr_open_how how;
        memset(&how, 0, sizeof(how));
        how.flags = (uint64_t)flags | O_NONBLOCK | (op->file_index ? O_CLOEXEC : 0);
        how.resolve = SR_RESOLVE_CACHED;
        long fd = syscall(__NR_openat2, op->fd, op->path, &how, sizeof(how));
        if (fd >= 0) {
            /* Take O_NONBLOCK off again, as the kernel does: a FIFO or a
             * tty is then read the blocking way (readiness first).  A
             * regular file does not care, so a direct slot's (which only
             * the ring uses) is only looked at: its kind is kept for its
             * READs. */
            uint8_t kind = RW_UNKNOWN;
            if (op->file_index) {
                struct stat st;
                if (fstat((int)fd, &st) == 0)
                    kind = (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) ? RW_FILE : RW_NOWAIT;
            }
            if (!(flags & O_NONBLOCK) && kind != RW_FILE)
                fcntl((int)fd, F_SETFL, (int)(flags & (O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME)));
            int32_t res;
            install_direct(s, op, (int)fd, kind, &res);
            return res;
        }
        int err = errno;
        if (err == ENOSYS)
            s->no_openat2 = 1;
        /* EAGAIN: not cached.  EINVAL / E2BIG: openat2 is stricter about
         * flags than openat.  EPERM: maybe a seccomp filter.  Let openat
         * in a worker give the answer. */
        if (err != EAGAIN && err != ENOSYS && err != EINVAL && err != E2BIG && err != EPERM)
            return -err;
    }
    return to_worker(s, op);
}

static int32_t run_close(rt_soft *s, sr_op *op)
{
    if (op->file_index) {
        if (op->fd)
            return -EINVAL;
        uint32_t slot = op->file_index - 1;
        if (!s->files)
            return -ENXIO;
        if (slot >= s->nfiles)
            return -EINVAL;
        int fd = s->files[slot];
        if (fd < 0)
            return -EBADF;
        s->files[slot] = -1;
        close(fd);
        return 0;
    }
    if (op->flags & IOSQE_FIXED_FILE)
        return -EINVAL;
    return close(op->fd) < 0 ? -errno : 0;
}

/* ASYNC_CANCEL of one op: -ECANCELED for it if it was waiting; -EALREADY
 * if a worker is running it (it completes with its own result). */
static int cancel_one(rt_soft *s, sr_op *op)
{
    switch (op->state) {
    case SR_POLL:
        fd_unwait(s, op);
        break;
    case SR_TIMER:
        timer_disarm(s, op);
        break;
    case SR_WORKER:
        if (pool_cancel(s, op) < 0)
            return -EALREADY;
        break;
    default:
        return -ENOENT;
    }
    op->state = SR_ISSUED;
    uint8_t opcode = op->opcode;
    complete(s, op, -ECANCELED, 0);
    /* The kernel answers for a cancelled WAITID with how many it
     * cancelled (1) where every other op gets 0. */
    return opcode == IORING_OP_WAITID_ ? 1 : 0;
}

static int cancel_matches(const sr_op *c, const sr_op *op)
{
    uint32_t cf = c->op_flags;
    if (cf & IORING_ASYNC_CANCEL_ANY)
        return 1;
    if (cf & IORING_ASYNC_CANCEL_FD) {
        int fixed = (cf & IORING_ASYNC_CANCEL_FD_FIXED) != 0;
        if (op->fd != c->fd || fixed != ((op->flags & IOSQE_FIXED_FILE) != 0))
            return 0;
    }
    if ((cf & IORING_ASYNC_CANCEL_OP) && op->opcode != c->len)
        return 0;
    if ((cf & IORING_ASYNC_CANCEL_USERDATA) ||
        !(cf & (IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_OP)))
        return op->user_data == c->addr;
    return 1;
}

static int32_t run_cancel(rt_soft *s, sr_op *c)
{
    uint32_t cf = c->op_flags;
    int all = (cf & IORING_ASYNC_CANCEL_ALL) != 0;
    if (!(cf & (IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_OP)) && !all) {
        /* The common case: by user_data, one op. */
        for (sr_op *op = s->hash[hash_of(c->addr, s->hash_mask)]; op; op = op->hnext)
            if (op != c && op->user_data == c->addr)
                return cancel_one(s, op);
        return -ENOENT;
    }
    /* Several: take the list of matches first (cancelling completes ops,
     * which may issue the next members of their chains). */
    uint32_t n = 0, cap = 0;
    sr_op **m = NULL;
    for (sr_op *op = s->all; op; op = op->anext) {
        if (op == c || !cancel_matches(c, op))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            sr_op **nm = realloc(m, cap * sizeof(*nm));
            if (!nm)
                break;
            m = nm;
        }
        m[n++] = op;
        if (!all)
            break;
    }
    int32_t res = all ? 0 : -ENOENT;
    for (uint32_t i = 0; i < n; i++) {
        int r = cancel_one(s, m[i]);
        if (!all) {
            res = r;
            break;
        }
        if (r != -ENOENT)
            res++;
    }
    free(m);
    return res;
}

static int32_t run_timeout(rt_soft *s, sr_op *op)
{
    uint32_t tf = op->op_flags;
    if (tf & ~(IORING_TIMEOUT_ABS | IORING_TIMEOUT_ETIME_SUCCESS | IORING_TIMEOUT_CLOCK_MASK))
        return -EINVAL;   /* TIMEOUT_UPDATE and friends: not emulated */
    op->expires = (tf & IORING_TIMEOUT_ABS) ? op->rel_ns : now_ns() + op->rel_ns;
    if (op->off) {
        op->seq_target = s->seq + op->off;
        op->wprev = NULL;
        op->wnext = s->counted;
        if (s->counted)
            s->counted->wprev = op;
        s->counted = op;
    }
    if (heap_push(s, op) < 0)
        return -ENOMEM;
    op->state = SR_TIMER;
    return SR_PENDING;
}

/* WAITID (fd = the id, len = the idtype, off = the siginfo_t pointer,
 * file_index = the options): a child that has changed state is reported
 * at once; else a pidfd is waited on for readiness (it is readable once
 * the process has exited), and any other id is looked at again after a
 * while (1 ms, doubling up to 100 ms: nothing to wait on, and a worker
 * blocked in waitid could not be cancelled). */
static int32_t run_waitid(rt_soft *s, sr_op *op)
{
    int options = (int)op->file_index;
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid((idtype_t)op->len, (id_t)op->fd, &si, options | WNOHANG) < 0)
        return -errno;
    if (si.si_pid != 0 || (options & WNOHANG)) {
        if (op->off)
            memcpy((void *)(uintptr_t)op->off, &si, sizeof(si));
        return 0;
    }
    if (op->len == P_PIDFD) {
        op->rfd = op->fd;
        op->events = EPOLLIN;
        return SR_WAIT;
    }
    op->rel_ns = op->rel_ns ? op->rel_ns * 2 : 1000000;
    if (op->rel_ns > 100000000)
        op->rel_ns = 100000000;
    op->expires = now_ns() + op->rel_ns;
    if (heap_push(s, op) < 0)
        return -ENOMEM;
    op->state = SR_TIMER;
    return SR_PENDING;
}

/* Run (or retry, with the readiness epoll reported) one op.  Returns its
 * result, SR_WAIT or SR_PENDING. */
static int32_t op_run(rt_soft *s, sr_op *op, uint32_t revents)
{
    switch (op->opcode) {
    case IORING_OP_NOP:
        return 0;
    case IORING_OP_RECV:
        if (op->flags & IOSQE_BUFFER_SELECT)
            return run_recv_select(s, op, revents);
        if (op->ioprio & IORING_RECV_MULTISHOT)
            return -EINVAL;     /* multishot needs buffer select */
        return run_transfer(op, revents);
    case IORING_OP_SEND:
        return run_transfer(op, revents);
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG:
        return run_msg(s, op);
    case IORING_OP_ACCEPT:
        return run_accept(s, op, revents);
    case IORING_OP_CONNECT:
        return run_connect(s, op);
    case IORING_OP_POLL_ADD:
        return run_poll(s, op, revents);
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_READV:
    case IORING_OP_WRITEV:
        return run_rw(s, op, revents);
    case IORING_OP_OPENAT:
        return run_openat(s, op);
    case IORING_OP_CLOSE:
        return run_close(s, op);
    case IORING_OP_SHUTDOWN:
        return shutdown(op->rfd, (int)op->len) < 0 ? -errno : 0;
    case IORING_OP_ASYNC_CANCEL:
        return run_cancel(s, op);
    case IORING_OP_TIMEOUT:
        return run_timeout(s, op);
    case IORING_OP_WAITID_:
        return run_waitid(s, op);
    case IORING_OP_STATX:
    case IORING_OP_FSYNC:
    case IORING_OP_FTRUNCATE_:
    case IORING_OP_FALLOCATE:
    case IORING_OP_MKDIRAT:
    case IORING_OP_UNLINKAT:
    case IORING_OP_RENAMEAT:
    case IORING_OP_SYMLINKAT:
    case IORING_OP_LINKAT:
        /* The kernel always punts these to io-wq. */
        return to_worker(s, op);
    default:
        return -EINVAL;
    }
}

static void op_step(rt_soft *s, sr_op *op, uint32_t revents)
{
    op->cflags = 0;
    int32_t res = op_run(s, op, revents);
    if (res == SR_WAIT) {
        res = fd_wait(s, op);
        if (res < 0) {
            complete(s, op, res, 0);
            return;
        }
    } else if (res != SR_PENDING) {
        complete(s, op, res, op->cflags);
        return;
    }
    track(s, op);
    arm_link_timeout(s, op);
}

/* Does this op work on a file (its fd, or a direct slot)? */
static int uses_file(uint8_t opcode)
{
    switch (opcode) {
    case IORING_OP_RECV: case IORING_OP_SEND: case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG: case IORING_OP_ACCEPT: case IORING_OP_CONNECT:
    case IORING_OP_POLL_ADD: case IORING_OP_READ: case IORING_OP_WRITE:
    case IORING_OP_READV: case IORING_OP_WRITEV: case IORING_OP_SHUTDOWN:
    case IORING_OP_FSYNC: case IORING_OP_FTRUNCATE_: case IORING_OP_FALLOCATE:
        return 1;
    default:
        return 0;
    }
}

static void issue(rt_soft *s, sr_op *op)
{
    op->state = SR_ISSUED;
    if (op->prep_err) {
        complete(s, op, op->prep_err, 0);
        return;
    }
    if (op->flags & IOSQE_IO_DRAIN) {
        complete(s, op, -EINVAL, 0);    /* not emulated */
        return;
    }
    if (uses_file(op->opcode)) {
        int rc = resolve_fd(s, op);
        if (rc < 0) {
            complete(s, op, rc, 0);
            return;
        }
    }
    op_step(s, op, 0);
}

/* The rest of a chain whose member failed: -ECANCELED each. */
static void fail_chain(rt_soft *s, sr_op *op)
{
    while (op) {
        sr_op *next = op->link;
        sr_op *lt = op->ltimeout;
        if (lt) {
            post(s, lt->user_data, -ECANCELED, 0, 0);
            op_free(s, lt);
        }
        post(s, op->user_data, -ECANCELED, 0, 0);
        op_free(s, op);
        op = next;
    }
}

/* An op is done: its CQE (unless skipped), its linked timeout's, and the
 * next member of its chain. */
static void complete(rt_soft *s, sr_op *op, int32_t res, uint32_t cflags)
{
    sr_op *lt = op->ltimeout;
    int failed = res < 0;
    if (is_rw(op->opcode) && res >= 0 && (uint64_t)res != op->expect)
        failed = 1;     /* a short read or write breaks a soft link */
    if (op->opcode == IORING_OP_TIMEOUT && res == -ETIME &&
        (op->op_flags & IORING_TIMEOUT_ETIME_SUCCESS))
        failed = 0;
    untrack(s, op);
    if (!(op->flags & IOSQE_CQE_SKIP_SUCCESS) || failed)
        post(s, op->user_data, res, cflags, op->opcode == IORING_OP_TIMEOUT);
    if (lt) {
        /* The op finished first: its linked timeout is cancelled. */
        op->ltimeout = NULL;
        if (lt->lt_armed)
            heap_remove(s, lt);
        post(s, lt->user_data, -ECANCELED, 0, 0);
        op_free(s, lt);
    }
    sr_op *next = op->link;
    int hard = (op->flags & IOSQE_IO_HARDLINK) != 0;
    op_free(s, op);
    if (next) {
        if (failed && !hard)
            fail_chain(s, next);
        else
            issue(s, next);
    }
}

/* ------------------------------------------------------------------ */
/* timers                                                              */

static void run_timers(rt_soft *s)
{
    /* TIMEOUTs whose count of completions has been reached. */
    for (sr_op *op = s->counted, *next; op; op = next) {
        next = op->wnext;
        if (s->seq < op->seq_target)
            continue;
        timer_disarm(s, op);
        complete(s, op, 0, 0);
        next = s->counted;   /* completing may have changed the list */
    }
    if (!s->heap_len)
        return;
    int64_t now = now_ns();
    while (s->heap_len && s->heap[0]->expires <= now) {
        sr_op *op = s->heap[0];
        if (op->opcode == IORING_OP_LINK_TIMEOUT) {
            /* Cancel the op it guards; the kernel's answer for the timeout
             * is -ETIME if that worked, else why not (-EALREADY). */
            heap_remove(s, op);
            sr_op *target = op->target;
            op->lt_armed = 0;
            target->ltimeout = NULL;
            target->lt_fired = 1;
            int rc = cancel_one(s, target);
            post(s, op->user_data, rc == 0 ? -ETIME : rc, 0, 0);
            op_free(s, op);
        } else if (op->opcode == IORING_OP_WAITID_) {
            /* Time to look at the child again. */
            timer_disarm(s, op);
            op_step(s, op, 0);
        } else {
            timer_disarm(s, op);
            complete(s, op, -ETIME, 0);
        }
    }
}

/* ------------------------------------------------------------------ */
/* submission                                                          */

static char *copy_path(uint64_t addr, int32_t *err)
{
    if (!addr) {
        *err = -EFAULT;
        return NULL;
    }
    const char *p = (const char *)(uintptr_t)addr;
    size_t n = strnlen(p, PATH_MAX);
    if (n == PATH_MAX) {
        *err = -ENAMETOOLONG;
        return NULL;
    }
    char *c = malloc(n + 1);
    if (!c) {
        *err = -ENOMEM;
        return NULL;
    }
    memcpy(c, p, n + 1);
    return c;
}

/* One SQE, copied into an op with what the kernel reads at submission
 * (paths, iovecs, timespecs). */
static sr_op *op_from_sqe(rt_soft *s, const struct io_uring_sqe *sqe)
{
    sr_op *op = op_new(s);
    if (!op)
        return NULL;
    op->opcode = sqe->opcode;
    op->flags = sqe->flags;
    op->ioprio = sqe->ioprio;
    op->fd = sqe->fd;
    op->off = sqe->off;
    op->addr = sqe->addr;
    op->len = sqe->len;
    op->op_flags = sqe->rw_flags;
    op->user_data = sqe->user_data;
    op->buf_group = sqe->buf_group;
    op->file_index = sqe->file_index;
    int32_t err = 0;
    switch (op->opcode) {
    case IORING_OP_TIMEOUT:
    case IORING_OP_LINK_TIMEOUT: {
        const struct __kernel_timespec *ts = (const void *)(uintptr_t)sqe->addr;
        if (op->len != 1 || !ts || ts->tv_sec < 0 || ts->tv_nsec < 0 ||
            ts->tv_nsec >= 1000000000) {
            err = -EINVAL;
            break;
        }
        op->rel_ns = ts->tv_sec > INT64_MAX / 1000000000 - 1
                         ? INT64_MAX
                         : ts->tv_sec * 1000000000 + ts->tv_nsec;
        op->lt_abs = (op->op_flags & IORING_TIMEOUT_ABS) != 0;
        break;
    }
    case IORING_OP_OPENAT:
    case IORING_OP_STATX:
    case IORING_OP_MKDIRAT:
    case IORING_OP_UNLINKAT:
        op->path = copy_path(op->addr, &err);
        break;
    case IORING_OP_RENAMEAT:
    case IORING_OP_LINKAT:
    case IORING_OP_SYMLINKAT:
        op->path = copy_path(op->addr, &err);
        if (!err)
            op->path2 = copy_path(op->off, &err);
        break;
    case IORING_OP_READ:
    case IORING_OP_WRITE:
        if (op->flags & IOSQE_BUFFER_SELECT) {
            err = -EINVAL;    /* not emulated (the project does not use it) */
            break;
        }
        op->iov1.iov_base = (void *)(uintptr_t)op->addr;
        op->iov1.iov_len = op->len;
        op->iov = &op->iov1;
        op->iovcnt = 1;
        op->expect = op->len;
        break;
    case IORING_OP_READV:
    case IORING_OP_WRITEV: {
        if (op->len > IOV_MAX || (op->flags & IOSQE_BUFFER_SELECT)) {
            err = -EINVAL;
            break;
        }
        size_t sz = (op->len ? op->len : 1) * sizeof(struct iovec);
        op->iov = op->iov_mem = malloc(sz);
        if (!op->iov) {
            err = -ENOMEM;
            break;
        }
        if (op->len)
            memcpy(op->iov, (const void *)(uintptr_t)op->addr, op->len * sizeof(struct iovec));
        op->iovcnt = (int)op->len;
        for (uint32_t i = 0; i < op->len; i++)
            op->expect += op->iov[i].iov_len;
        break;
    }
    default:
        break;
    }
    op->prep_err = err;
    return op;
}

/* Consume every queued SQE, as io_uring_enter does.  Returns how many. */
static uint32_t submit(rt_soft *s)
{
    rt_ring *r = s->r;
    uint32_t head = s->khead, tail = r->sq_local_tail;
    uint32_t consumed = tail - head;
    sr_op *chain = NULL, *last = NULL;
    while (head != tail) {
        const struct io_uring_sqe *sqe = &r->sqes[head & r->sq_mask];
        head++;
        __atomic_store_n(&s->khead, head, __ATOMIC_RELEASE);
        sr_op *op = op_from_sqe(s, sqe);
        if (!op) {
            post(s, sqe->user_data, -ENOMEM, 0, 0);
            continue;
        }
        uint8_t linkf = op->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK);
        if (op->opcode == IORING_OP_LINK_TIMEOUT) {
            /* It guards the SQE before it, which must link to it. */
            if (!last || last->ltimeout || op->prep_err) {
                post(s, op->user_data, op->prep_err ? op->prep_err : -EINVAL, 0, 0);
                op_free(s, op);
            } else {
                op->target = last;
                op->state = SR_LINKWAIT;
                last->ltimeout = op;
            }
        } else if (last) {
            op->state = SR_LINKWAIT;
            last->link = op;
            last = op;
        } else {
            chain = last = op;
        }
        if (!linkf && chain) {
            sr_op *h = chain;
            chain = last = NULL;
            issue(s, h);
        }
    }
    if (chain)
        issue(s, chain);    /* a link flag on the last SQE: the chain ends here */
    r->stats.sqes_submitted += consumed;
    return consumed;
}

/* ------------------------------------------------------------------ */
/* waiting                                                             */

static int epoll_wait_ns(rt_soft *s, int64_t wait_ns)
{
    if (!s->no_pwait2) {
        struct timespec ts, *tsp = NULL;
        if (wait_ns >= 0) {
            ts.tv_sec = wait_ns / 1000000000;
            ts.tv_nsec = wait_ns % 1000000000;
            tsp = &ts;
        }
        long n = syscall(__NR_epoll_pwait2, s->epfd, s->events, SR_MAX_EVENTS, tsp, NULL, 0);
        if (n >= 0 || (errno != ENOSYS && errno != EPERM))
            return (int)n;
        s->no_pwait2 = 1;   /* before 5.11, or a seccomp filter refuses it */
    }
    int ms = -1;
    if (wait_ns >= 0) {
        /* Rounded up: waking early would only spin. */
        int64_t m = (wait_ns + 999999) / 1000000;
        ms = m > INT_MAX ? INT_MAX : (int)m;
    }
    return epoll_wait(s->epfd, s->events, SR_MAX_EVENTS, ms);
}

/* Submit, then wait until `wait_nr` CQEs are in the CQ or `timeout_ns`
 * (relative, < 0: none) has passed.  Returns SQEs consumed or -errno. */
static int soft_run(rt_soft *s, uint32_t wait_nr, int64_t timeout_ns)
{
    uint32_t consumed = submit(s);
    if (timeout_ns == 0)
        wait_nr = 0;
    int64_t end = -1;
    int polled = 0;
    for (;;) {
        collect_done(s);
        run_timers(s);
        flush_fds(s);
        int kicking = pool_kicking(s);
        if (kicking)
            pool_kick(s);
        int64_t wait;
        if (s->cq_tail - s->cq_head >= wait_nr) {
            /* Enough already: one look at readiness (if anything waits
             * for it), without sleeping. */
            if (polled || !s->nwaiting)
                break;
            wait = 0;
        } else {
            int64_t now = now_ns();
            if (timeout_ns < 0) {
                wait = -1;
            } else {
                if (end < 0)
                    end = now + timeout_ns;
                wait = end - now;
                if (wait <= 0) {
                    if (polled)
                        break;
                    wait = 0;
                }
            }
            if (s->heap_len) {
                int64_t t = s->heap[0]->expires - now;
                if (t < 0)
                    t = 0;
                if (wait < 0 || t < wait)
                    wait = t;
            }
            if (kicking && (wait < 0 || wait > SR_KICK_NS))
                wait = SR_KICK_NS;
        }
        int n = epoll_wait_ns(s, wait);
        s->r->stats.enters++;
        polled = 1;
        if (n < 0) {
            if (errno == EINTR)
                break;      /* a signal: let the caller run its handlers */
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            uint64_t key = s->events[i].data.u64;
            if (key == SR_EVFD_KEY) {
                uint64_t v;
                ssize_t rd = read(s->evfd, &v, sizeof(v));
                (void)rd;
            } else {
                fd_ready(s, (int)key, s->events[i].events);
            }
        }
    }
    collect_done(s);
    return (int)consumed;
}

/* ------------------------------------------------------------------ */
/* ring.h's entry points for a soft ring                                */

rt_ring *rt_soft_ring_open(uint32_t sq_entries, uint32_t cq_entries, int *err)
{
    if (sq_entries == 0 || sq_entries > 32768) {
        *err = EINVAL;
        return NULL;
    }
    uint32_t sq = 1, cq = 1;
    while (sq < sq_entries)
        sq *= 2;
    if (cq_entries < sq * 2)
        cq_entries = sq * 2;
    while (cq < cq_entries)
        cq *= 2;
    rt_ring *r = calloc(1, sizeof(*r));
    rt_soft *s = calloc(1, sizeof(*s));
    if (r) {
        r->sqes = calloc(sq, sizeof(*r->sqes));
        r->ts = calloc(sq, sizeof(*r->ts));
    }
    if (s) {
        s->cq = malloc((size_t)cq * sizeof(*s->cq));
        s->hash = calloc(256, sizeof(*s->hash));
        s->epfd = s->evfd = -1;
    }
    int rc = 0;
    if (!r || !s || !r->sqes || !r->ts || !s->cq || !s->hash) {
        rc = ENOMEM;
    } else {
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
            rc = errno;
    }
    if (rc) {
        if (s) {
            if (s->epfd >= 0)
                close(s->epfd);
            free(s->cq);
            free(s->hash);
        }
        if (r) {
            free(r->sqes);
            free(r->ts);
        }
        free(s);
        free(r);
        *err = rc;
        return NULL;
    }
    s->r = r;
    s->cq_cap = cq;
    s->hash_mask = 255;
    r->soft = s;
    r->fd = s->epfd;
    r->sq_entries = sq;
    r->cq_entries = cq;
    r->sq_mask = sq - 1;
    r->sq_khead = &s->khead;
    r->sq_ktail = &s->ktail;
    r->sq_kflags = &s->kflags;
    /* What a kernel ring would say of the same behaviour. */
    r->features = IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG | IORING_FEAT_CQE_SKIP |
                  IORING_FEAT_LINKED_FILE | IORING_FEAT_NATIVE_WORKERS |
                  IORING_FEAT_SUBMIT_STABLE | IORING_FEAT_FAST_POLL;
    *err = 0;
    return r;
}

int rt_soft_enter(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns)
{
    return soft_run(r->soft, wait_nr, timeout_ns);
}

uint32_t rt_soft_reap(rt_ring *r, rt_cqe *out, uint32_t max)
{
    rt_soft *s = r->soft;
    uint32_t n = s->cq_tail - s->cq_head;
    if (n > max)
        n = max;
    for (uint32_t i = 0; i < n; i++)
        out[i] = s->cq[(s->cq_head + i) & (s->cq_cap - 1)];
    s->cq_head += n;
    r->stats.cqes_reaped += n;
    return n;
}

int rt_soft_pass(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns,
                 rt_cqe *out, uint32_t max)
{
    int rc = soft_run(r->soft, wait_nr, timeout_ns);
    if (rc < 0)
        return rc;
    return (int)rt_soft_reap(r, out, max);
}

int rt_soft_probe(rt_ring *r, uint8_t *ops)
{
    (void)r;
    static const uint8_t supported[] = {
        IORING_OP_NOP, IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
        IORING_OP_POLL_ADD, IORING_OP_SENDMSG, IORING_OP_RECVMSG,
        IORING_OP_TIMEOUT, IORING_OP_ACCEPT, IORING_OP_ASYNC_CANCEL,
        IORING_OP_LINK_TIMEOUT, IORING_OP_CONNECT, IORING_OP_FALLOCATE,
        IORING_OP_OPENAT, IORING_OP_CLOSE, IORING_OP_STATX, IORING_OP_READ,
        IORING_OP_WRITE, IORING_OP_SEND, IORING_OP_RECV, IORING_OP_SHUTDOWN,
        IORING_OP_RENAMEAT, IORING_OP_UNLINKAT, IORING_OP_MKDIRAT,
        IORING_OP_SYMLINKAT, IORING_OP_LINKAT, IORING_OP_WAITID_,
        IORING_OP_FTRUNCATE_,
    };
    memset(ops, 0, 256);
    for (size_t i = 0; i < sizeof(supported); i++)
        ops[supported[i]] = 1;
    return SR_LAST_OP;
}

int rt_soft_files_register(rt_ring *r, uint32_t nr)
{
    rt_soft *s = r->soft;
    if (s->files)
        return -EBUSY;
    if (nr == 0 || nr > (1u << 20))
        return -EINVAL;
    s->files = malloc(nr * sizeof(*s->files));
    s->file_kinds = calloc(nr, 1);
    if (!s->files || !s->file_kinds) {
        free(s->files);
        free(s->file_kinds);
        s->files = NULL;
        s->file_kinds = NULL;
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < nr; i++)
        s->files[i] = -1;
    s->nfiles = nr;
    return 0;
}

int rt_soft_files_unregister(rt_ring *r)
{
    rt_soft *s = r->soft;
    if (!s->files)
        return -ENXIO;
    for (uint32_t i = 0; i < s->nfiles; i++)
        if (s->files[i] >= 0)
            close(s->files[i]);
    free(s->files);
    free(s->file_kinds);
    s->files = NULL;
    s->file_kinds = NULL;
    s->nfiles = 0;
    return 0;
}

int rt_soft_buf_register(rt_ring *r, rt_buf_ring *br, uint32_t flags)
{
    rt_soft *s = r->soft;
    if (flags & ~(uint32_t)IOU_PBUF_RING_INC)
        return -EINVAL;
    if (br->bgid >= s->ngroups) {
        uint32_t n = s->ngroups ? s->ngroups : 16;
        while (n <= br->bgid)
            n *= 2;
        sr_group *g = realloc(s->groups, n * sizeof(*g));
        if (!g)
            return -ENOMEM;
        memset(g + s->ngroups, 0, (n - s->ngroups) * sizeof(*g));
        s->groups = g;
        s->ngroups = n;
    }
    sr_group *g = &s->groups[br->bgid];
    if (g->br)
        return -EEXIST;
    g->br = br;
    g->head = br->local_tail;     /* the ring starts empty */
    g->inc = (flags & IOU_PBUF_RING_INC) != 0;
    return 0;
}

int rt_soft_buf_unregister(rt_ring *r, rt_buf_ring *br)
{
    sr_group *g = group_of(r->soft, br->bgid);
    if (!g || g->br != br)
        return -EINVAL;
    g->br = NULL;
    return 0;
}

/* Free an op and everything that hangs off it (its chain, its linked
 * timeout), at close. */
static void free_chain(rt_soft *s, sr_op *op)
{
    while (op) {
        sr_op *next = op->link;
        if (op->ltimeout)
            op_free(s, op->ltimeout);
        op_free(s, op);
        op = next;
    }
}

void rt_soft_close(rt_ring *r)
{
    rt_soft *s = r->soft;
    if (s->pool && sr_signal) {
        /* Jobs still running are interrupted, as closing a kernel ring
         * cancels its io-wq work. */
        pthread_mutex_lock(&s->pool->mu);
        for (sr_op *op = s->all; op; op = op->anext)
            if (op->state == SR_WORKER && op->running == 1)
                sr_interrupt(op->worker);
        pthread_mutex_unlock(&s->pool->mu);
    }
    /* Ops a worker is running stay the pool's: it frees them when done.
     * Everything else in flight is simply dropped (the caller drained the
     * ring first, or abandoned what it could not drain). */
    sr_op *op = s->all;
    while (op) {
        sr_op *next = op->anext;
        if (op->link)
            free_chain(s, op->link);
        if (op->ltimeout)
            op_free(s, op->ltimeout);
        op->link = op->ltimeout = NULL;
        if (op->state != SR_WORKER)
            op_free(s, op);
        op = next;
    }
    pool_close(s);
    if (s->files)
        rt_soft_files_unregister(r);
    close(s->epfd);
    if (s->evfd >= 0)
        close(s->evfd);
    while (s->free_ops) {
        op = s->free_ops;
        s->free_ops = op->wnext;
        free(op);
    }
    free(s->cq);
    free(s->hash);
    free(s->fds);
    free(s->dirty);
    free(s->heap);
    free(s->groups);
    free(s);
    free(r->sqes);
    free(r->ts);
    free(r);
}
