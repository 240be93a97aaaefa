/*
 * The insides of rt_ring and rt_buf_ring, shared by the two backends:
 * ring.c (the kernel's io_uring) and softring.c (the same ring emulated in
 * user space on epoll and worker threads, for where io_uring is refused).
 *
 * Both backends share the submission side: the rt_prep* functions of ring.c
 * write io_uring SQEs into r->sqes and advance r->sq_local_tail, whoever
 * consumes them.  For the kernel ring the SQ is the kernel's mapping and
 * the kernel advances *sq_khead; for a soft ring the SQ is plain memory and
 * softring.c advances *sq_khead as it consumes each SQE.  Only the calls
 * that make the kernel do work (enter, reap, register, close) branch on
 * `soft`.
 */
#ifndef RINGTRIO_RING_IMPL_H
#define RINGTRIO_RING_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "uring_compat.h"

typedef struct rt_soft rt_soft;

struct rt_ring {
    int fd;
    uint32_t setup_flags;
    uint32_t features;
    uint32_t sq_entries, cq_entries;

    /* SQ ring: the kernel (or the soft ring) owns khead, we own ktail. */
    uint32_t *sq_khead, *sq_ktail, *sq_kflags;
    uint32_t sq_mask;
    uint32_t sq_local_tail;           /* prepared SQEs end here */
    struct io_uring_sqe *sqes;

    /* CQ ring: the kernel owns ktail, we own khead.  (Unused by a soft
     * ring, which keeps its own CQ.) */
    uint32_t *cq_khead, *cq_ktail;
    uint32_t cq_mask;
    struct io_uring_cqe *cqes;

    /* One timespec per SQE slot for TIMEOUT / LINK_TIMEOUT (see timespec_for). */
    struct __kernel_timespec *ts;

    void *sq_map, *cq_map;
    size_t sq_map_sz, cq_map_sz, sqes_map_sz;

    rt_ring_stats stats;

    /* Polling before a wait (rt_ring_set_poll): the bound and the window. */
    int64_t poll_max_ns, poll_ns;

    /* NULL for a kernel ring; the emulation's state for a soft ring. */
    struct rt_soft *soft;
};

struct rt_buf_ring {
    struct io_uring_buf_ring *ring;
    size_t ring_sz;
    char *base;
    size_t data_sz;
    uint32_t size;
    uint16_t mask;
    uint16_t local_tail;
    uint16_t bgid;
};

/* softring.c: the soft ring's side of the calls ring.c dispatches. */
int rt_soft_enter(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns);
int rt_soft_pass(rt_ring *r, uint32_t wait_nr, int64_t timeout_ns,
                 rt_cqe *out, uint32_t max);
uint32_t rt_soft_reap(rt_ring *r, rt_cqe *out, uint32_t max);
void rt_soft_close(rt_ring *r);
int rt_soft_probe(rt_ring *r, uint8_t *ops);
int rt_soft_files_register(rt_ring *r, uint32_t nr);
int rt_soft_files_unregister(rt_ring *r);
int rt_soft_buf_register(rt_ring *r, rt_buf_ring *br, uint32_t flags);
int rt_soft_buf_unregister(rt_ring *r, rt_buf_ring *br);

#endif
