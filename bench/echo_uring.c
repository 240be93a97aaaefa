/*
 * TCP echo server on raw io_uring (no liburing): the ceiling for bench/.
 *
 *   echo_uring [--cpu K] [--port P] [--bufs 4096] [--buf-size 4096]
 *
 * Listens on 127.0.0.1 (port 0 = any), prints {"port": P, "version": "..."}
 * on stdout and serves until killed.
 *
 * Design: one ring (SINGLE_ISSUER | DEFER_TASKRUN), one multishot accept on
 * the listener, one multishot receive per connection selecting from a single
 * provided-buffer ring shared by all connections, and IORING_OP_SEND to echo.
 * A received buffer is queued on its connection and goes back to the buffer
 * ring when its send has completed; each connection has at most one send in
 * flight, so bytes go out in the order they came in (short sends resume).
 * A multishot receive that ends with -ENOBUFS is re-armed when a buffer comes
 * back; one that ends otherwise (EOF, error) closes the connection once its
 * queued sends are done.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define die(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "echo_uring: " __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };
#define UD(op, fd) (((uint64_t)(op) << 32) | (uint32_t)(fd))
#define BGID 7

/* ------------------------------------------------------------ ring */
static int ring_fd;
static unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, sq_entries, sq_local_tail, sq_pending;
static unsigned *cq_head, *cq_tail, *cq_mask;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;

static int sys_enter(unsigned submit, unsigned wait, unsigned flags)
{
    return (int)syscall(__NR_io_uring_enter, ring_fd, submit, wait, flags, NULL, 0);
}

static void ring_setup(unsigned entries)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = entries * 4;
    ring_fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (ring_fd < 0) {
        /* older kernels: no DEFER_TASKRUN / SINGLE_ISSUER */
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        ring_fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    }
    if (ring_fd < 0)
        die("io_uring_setup: %s", strerror(errno));
    size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP)
        sq_sz = cq_sz = sq_sz > cq_sz ? sq_sz : cq_sz;
    char *sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd,
                    IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED)
        die("mmap sq: %s", strerror(errno));
    char *cq = sq;
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
        cq = mmap(NULL, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd,
                  IORING_OFF_CQ_RING);
        if (cq == MAP_FAILED)
            die("mmap cq: %s", strerror(errno));
    }
    sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED)
        die("mmap sqes: %s", strerror(errno));
    sq_head = (unsigned *)(sq + p.sq_off.head);
    sq_tail = (unsigned *)(sq + p.sq_off.tail);
    sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    sq_array = (unsigned *)(sq + p.sq_off.array);
    sq_entries = p.sq_entries;
    cq_head = (unsigned *)(cq + p.cq_off.head);
    cq_tail = (unsigned *)(cq + p.cq_off.tail);
    cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    for (unsigned i = 0; i < sq_entries; i++)
        sq_array[i] = i; /* identity: SQE index == ring slot */
    sq_local_tail = *sq_tail;
}

static void flush_sq(unsigned wait)
{
    __atomic_store_n(sq_tail, sq_local_tail, __ATOMIC_RELEASE);
    unsigned flags = wait ? IORING_ENTER_GETEVENTS : 0;
    for (;;) {
        int r = sys_enter(sq_pending, wait, flags);
        if (r >= 0) {
            sq_pending -= (unsigned)r < sq_pending ? (unsigned)r : sq_pending;
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EBUSY || errno == EAGAIN) { /* CQ overflow: reap first */
            if (!wait)
                return;
            flags = IORING_ENTER_GETEVENTS;
            sq_pending = 0;
            continue;
        }
        die("io_uring_enter: %s", strerror(errno));
    }
}

static struct io_uring_sqe *get_sqe(void)
{
    if (sq_local_tail - __atomic_load_n(sq_head, __ATOMIC_ACQUIRE) >= sq_entries)
        flush_sq(0);
    if (sq_local_tail - __atomic_load_n(sq_head, __ATOMIC_ACQUIRE) >= sq_entries)
        die("submission queue full");
    struct io_uring_sqe *sqe = &sqes[sq_local_tail & *sq_mask];
    memset(sqe, 0, sizeof *sqe);
    sq_local_tail++;
    sq_pending++;
    return sqe;
}

/* ------------------------------------------------------------ buffer ring */
static struct io_uring_buf_ring *br;
static unsigned br_mask, br_local_tail, nbufs, buf_size;
static char *buf_base;

static void buf_return(unsigned bid)
{
    struct io_uring_buf *b = &br->bufs[br_local_tail & br_mask];
    b->addr = (uint64_t)(uintptr_t)(buf_base + (size_t)bid * buf_size);
    b->len = buf_size;
    b->bid = (uint16_t)bid;
    br_local_tail++;
}

static void buf_publish(void)
{
    __atomic_store_n(&br->tail, (uint16_t)br_local_tail, __ATOMIC_RELEASE);
}

static void bufs_setup(void)
{
    size_t ring_sz = nbufs * sizeof(struct io_uring_buf);
    br = mmap(NULL, ring_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* populated up front, so RSS before any connection includes the group */
    buf_base = mmap(NULL, (size_t)nbufs * buf_size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (br == MAP_FAILED || buf_base == MAP_FAILED)
        die("mmap buffers: %s", strerror(errno));
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = nbufs;
    reg.bgid = BGID;
    if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0)
        die("IORING_REGISTER_PBUF_RING: %s", strerror(errno));
    br_mask = nbufs - 1;
    br_local_tail = 0;
    for (unsigned i = 0; i < nbufs; i++)
        buf_return(i);
    buf_publish();
}

/* ------------------------------------------------------------ connections */
struct conn {
    int recv_armed;     /* a multishot receive is outstanding */
    int send_inflight;  /* the head of the queue is being sent */
    int eof;            /* receive side finished: close when the queue drains */
    int waiting_bufs;   /* on the ENOBUFS list */
    int q_head, q_tail; /* queue of buffer ids to send, linked by next_bid */
};
static struct conn *conns;
static int max_fd;
static int *next_bid;
static uint32_t *q_off, *q_len;
static int *nobufs_list, nobufs_count;

static void arm_accept(int lfd)
{
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = lfd;
    sqe->ioprio = IORING_ACCEPT_MULTISHOT;
    sqe->accept_flags = SOCK_CLOEXEC;
    sqe->user_data = UD(OP_ACCEPT, lfd);
}

static void arm_recv(int fd)
{
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = fd;
    sqe->ioprio = IORING_RECV_MULTISHOT;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    sqe->user_data = UD(OP_RECV, fd);
    conns[fd].recv_armed = 1;
}

static void send_head(int fd)
{
    struct conn *c = &conns[fd];
    int bid = c->q_head;
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)(buf_base + (size_t)bid * buf_size + q_off[bid]);
    sqe->len = q_len[bid];
    sqe->msg_flags = MSG_NOSIGNAL;
    sqe->user_data = UD(OP_SEND, fd);
    c->send_inflight = 1;
}

static void maybe_close(int fd)
{
    struct conn *c = &conns[fd];
    if (c->eof && !c->recv_armed && !c->send_inflight && c->q_head < 0 && !c->waiting_bufs) {
        close(fd);
        memset(c, 0, sizeof *c);
        c->q_head = c->q_tail = -1;
    }
}

static void drop_queue(int fd)
{
    struct conn *c = &conns[fd];
    while (c->q_head >= 0) {
        int bid = c->q_head;
        c->q_head = next_bid[bid];
        buf_return((unsigned)bid);
    }
    c->q_tail = -1;
}

static void on_recv(int fd, int res, unsigned flags)
{
    struct conn *c = &conns[fd];
    if (!(flags & IORING_CQE_F_MORE))
        c->recv_armed = 0;
    if (res > 0) {
        if (!(flags & IORING_CQE_F_BUFFER))
            die("receive completion without a buffer");
        int bid = (int)(flags >> IORING_CQE_BUFFER_SHIFT);
        q_off[bid] = 0;
        q_len[bid] = (uint32_t)res;
        next_bid[bid] = -1;
        if (c->q_tail >= 0)
            next_bid[c->q_tail] = bid;
        else
            c->q_head = bid;
        c->q_tail = bid;
        if (!c->send_inflight)
            send_head(fd);
        if (!c->recv_armed && !c->eof)
            arm_recv(fd);
        return;
    }
    if (res == -ENOBUFS && !c->eof) {
        if (c->recv_armed)
            return; /* not final: keep waiting */
        c->waiting_bufs = 1;
        nobufs_list[nobufs_count++] = fd;
        return;
    }
    /* EOF or error: stop receiving; close once the queue has drained */
    c->eof = 1;
    if (res < 0 && res != -ECANCELED) {
        drop_queue(fd);
        if (c->send_inflight)
            shutdown(fd, SHUT_RDWR);
    }
    maybe_close(fd);
}

static void on_send(int fd, int res)
{
    struct conn *c = &conns[fd];
    c->send_inflight = 0;
    int bid = c->q_head;
    if (bid < 0) { /* the queue was dropped after an error */
        maybe_close(fd);
        return;
    }
    if (res <= 0) { /* peer gone: give everything back, stop */
        drop_queue(fd);
        c->eof = 1;
        if (c->recv_armed)
            shutdown(fd, SHUT_RDWR);
        maybe_close(fd);
        return;
    }
    q_off[bid] += (uint32_t)res;
    q_len[bid] -= (uint32_t)res;
    if (q_len[bid] == 0) {
        c->q_head = next_bid[bid];
        if (c->q_head < 0)
            c->q_tail = -1;
        buf_return((unsigned)bid);
    }
    if (c->q_head >= 0)
        send_head(fd);
    else
        maybe_close(fd);
}

static void on_accept(int lfd, int res, unsigned flags)
{
    if (res >= 0) {
        if (res >= max_fd) {
            close(res);
        } else {
            int one = 1;
            setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct conn *c = &conns[res];
            memset(c, 0, sizeof *c);
            c->q_head = c->q_tail = -1;
            arm_recv(res);
        }
    } else if (res != -EMFILE && res != -ENFILE && res != -ECONNABORTED && res != -EINTR) {
        die("accept: %s", strerror(-res));
    }
    if (!(flags & IORING_CQE_F_MORE))
        arm_accept(lfd);
}

int main(int argc, char **argv)
{
    int cpu = -1, port = 0;
    nbufs = 4096;
    buf_size = 4096;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--cpu"))
            cpu = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--bufs"))
            nbufs = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--buf-size"))
            buf_size = (unsigned)atoi(argv[i + 1]);
        else
            die("unknown option %s", argv[i]);
    }
    if (!nbufs || (nbufs & (nbufs - 1)) || nbufs > 32768 || !buf_size)
        die("--bufs must be a power of two <= 32768, --buf-size positive");
    signal(SIGPIPE, SIG_IGN);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0)
            die("sched_setaffinity: %s", strerror(errno));
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    max_fd = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1 << 20) ? (1 << 20) : (int)rl.rlim_cur;
    conns = calloc((size_t)max_fd, sizeof *conns);
    nobufs_list = calloc((size_t)max_fd, sizeof *nobufs_list);
    next_bid = calloc(nbufs, sizeof *next_bid);
    q_off = calloc(nbufs, sizeof *q_off);
    q_len = calloc(nbufs, sizeof *q_len);
    if (!conns || !nobufs_list || !next_bid || !q_off || !q_len)
        die("out of memory");

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0)
        die("bind/listen: %s", strerror(errno));
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &len);

    ring_setup(4096);
    bufs_setup();
    arm_accept(lfd);
    printf("{\"port\": %d, \"version\": \"io_uring multishot accept+recv, %u x %u B "
           "provided buffers\"}\n",
           ntohs(sa.sin_port), nbufs, buf_size);
    fflush(stdout);

    for (;;) {
        flush_sq(1);
        unsigned head = *cq_head, tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
        unsigned returned_before = br_local_tail;
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &cqes[head & *cq_mask];
            int fd = (int)(uint32_t)cqe->user_data;
            switch ((int)(cqe->user_data >> 32)) {
            case OP_ACCEPT:
                on_accept(fd, cqe->res, cqe->flags);
                break;
            case OP_RECV:
                on_recv(fd, cqe->res, cqe->flags);
                break;
            case OP_SEND:
                on_send(fd, cqe->res);
                break;
            }
        }
        __atomic_store_n(cq_head, head, __ATOMIC_RELEASE);
        if (br_local_tail != returned_before) {
            buf_publish();
            /* buffers came back: re-arm receives that ran out of them */
            int n = nobufs_count;
            nobufs_count = 0;
            for (int i = 0; i < n; i++) {
                int fd = nobufs_list[i];
                conns[fd].waiting_bufs = 0;
                if (!conns[fd].eof)
                    arm_recv(fd);
                else
                    maybe_close(fd);
            }
        }
    }
}
