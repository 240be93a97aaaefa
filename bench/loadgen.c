/*
 * TCP load generator for bench/ (built by bench/_net.py into bench/.build/).
 *
 * One process, one thread, epoll, level-triggered, non-blocking sockets.
 *
 *   loadgen pingpong --port P [--host 127.0.0.1] [--conns 100] [--size 1024]
 *                    [--warmup 0.5] [--duration 3] [--cpu K] [--server-pid PID]
 *       Every connection sends a SIZE-byte message, waits until the whole
 *       echo is back (checking every byte), and sends the next one.  After
 *       WARMUP seconds, completions are counted and their round-trip times
 *       recorded for DURATION seconds.  Prints one JSON line:
 *         {"mode":"pingpong", "requests":..., "rps":..., "p50_us":...,
 *          "p99_us":..., "cpu":...}
 *       where "cpu" is this process's own CPU time (user+system) divided by
 *       wall time over the measured window: close to 1.0 means the load
 *       generator itself saturated its core.  With --server-pid PID it also
 *       reports "server_cpu_s": that process's CPU time (all its threads,
 *       user+system, read through its CPU-time clock, nanosecond precision)
 *       over the same window, so CPU per request is server_cpu_s / requests.
 *
 *   loadgen idle --port P [--host 127.0.0.1] [--conns 10000] [--steps 2] [--cpu K]
 *       Opens CONNS connections in STEPS equal steps.  Every connection sends
 *       one byte and waits for its echo (so the server has accepted it and its
 *       handler is back to waiting for data), then stays idle.  After each
 *       step prints {"mode":"idle","connected":N,...} and waits for a line on
 *       stdin before going on; after the last step and the following line
 *       (or EOF), closes everything and prints {"mode":"idle","done":true}.
 *
 * On failure prints {"error": "..."} and exits with status 1.
 * RLIMIT_NOFILE is raised to its hard limit.  --cpu K pins the process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '\'';
    printf("{\"error\": \"%s\"}\n", msg);
    fflush(stdout);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of process `pid` (all threads), or -1 if it cannot be read. */
static double process_cpu_seconds(pid_t pid)
{
    clockid_t cid;
    struct timespec ts;
    if (pid <= 0 || clock_getcpuclockid(pid, &cid) != 0 || clock_gettime(cid, &ts) != 0)
        return -1;
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------ histogram
 * Log-linear: values below 2^(SUB_BITS+1) ns are exact; above, every power of
 * two is split into 2^SUB_BITS buckets (relative error < 0.2%). */
#define SUB_BITS 9
#define NBUCKETS (64 << SUB_BITS)
static uint64_t hist[NBUCKETS];
static uint64_t hist_total, hist_max, hist_sum;

static inline unsigned bucket_of(uint64_t v)
{
    if (v < (1u << (SUB_BITS + 1)))
        return (unsigned)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - SUB_BITS;
    return ((unsigned)shift << SUB_BITS) + (unsigned)(v >> shift);
}

static double bucket_mid(unsigned b)
{
    if (b < (1u << (SUB_BITS + 1)))
        return b;
    unsigned shift = (b >> SUB_BITS) - 1;
    uint64_t low = (uint64_t)(b - (shift << SUB_BITS)) << shift;
    return low + ((1ull << shift) - 1) / 2.0;
}

static void hist_add(uint64_t v)
{
    hist[bucket_of(v)]++;
    hist_total++;
    hist_sum += v;
    if (v > hist_max)
        hist_max = v;
}

static double percentile_us(double q)
{
    if (!hist_total)
        return 0;
    uint64_t target = (uint64_t)(q * hist_total);
    if (target < 1)
        target = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen >= target)
            return bucket_mid(b) / 1000.0;
    }
    return hist_max / 1000.0;
}

/* ------------------------------------------------------------ common */

static void raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (long)rl.rlim_cur < need)
        die("RLIMIT_NOFILE is %ld (hard limit %ld), need %ld: raise ulimit -Hn",
            (long)rl.rlim_cur, (long)rl.rlim_max, need);
}

static int connect_to(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    for (int attempt = 0;; attempt++) {
        if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
            break;
        if (errno == EINTR)
            continue;
        /* EAGAIN: out of ephemeral ports for a moment; retry briefly */
        if ((errno == EAGAIN || errno == EADDRNOTAVAIL) && attempt < 100) {
            usleep(10000);
            continue;
        }
        die("connect: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* ------------------------------------------------------------ ping-pong */

struct conn {
    int fd;
    uint32_t sent, got;
    int want_out;
    uint64_t seq, t_start;
    unsigned char *tx;
};

static size_t msg_size;
static int epfd;

static void set_events(struct conn *c, uint32_t idx, int want_out)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = idx};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->want_out = want_out;
}

static void send_more(struct conn *c, uint32_t idx)
{
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, c->tx + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->want_out)
                    set_events(c, idx, 1);
                return;
            }
            die("send: %s", strerror(errno));
        }
        c->sent += (uint32_t)n;
    }
    if (c->want_out)
        set_events(c, idx, 0);
}

static void start_request(struct conn *c, uint32_t idx, uint64_t t)
{
    c->seq++;
    if (msg_size >= sizeof c->seq)
        memcpy(c->tx, &c->seq, sizeof c->seq); /* every message differs */
    c->sent = c->got = 0;
    c->t_start = t;
    send_more(c, idx);
}

static int pingpong(const struct sockaddr_in *sa, int nconns, double warmup, double duration,
                    int spin, pid_t server_pid)
{
    raise_nofile(nconns + 16);
    struct conn *conns = calloc(nconns, sizeof *conns);
    unsigned char *rx = malloc(msg_size);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || !rx || epfd < 0)
        die("out of memory / epoll_create1");
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->fd = connect_to(sa);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        c->tx = malloc(msg_size);
        if (!c->tx)
            die("out of memory");
        for (size_t j = 0; j < msg_size; j++)
            c->tx[j] = (unsigned char)(j * 7 + i);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
    }

    uint64_t t0 = now_ns();
    uint64_t t_meas = t0 + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_meas + (uint64_t)(duration * 1e9);
    for (int i = 0; i < nconns; i++)
        start_request(&conns[i], (uint32_t)i, t0);

    enum { MAXEV = 1024 };
    struct epoll_event evs[MAXEV];
    int measuring = 0;
    double cpu0 = 0, cpu1 = 0, srv0 = -1, srv1 = -1;
    uint64_t wall0 = 0, wall1 = 0, requests = 0, loops = 0, events = 0;
    for (;;) {
        int n = epoll_wait(epfd, evs, MAXEV, spin ? 0 : 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        loops++;
        events += (uint64_t)n;
        for (int e = 0; e < n; e++) {
            uint32_t idx = evs[e].data.u32;
            struct conn *c = &conns[idx];
            if (evs[e].events & EPOLLOUT)
                send_more(c, idx);
            if (!(evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            for (;;) {
                ssize_t r = recv(c->fd, rx, msg_size - c->got, 0);
                if (r < 0) {
                    if (errno == EINTR)
                        continue;
                    if (errno == EAGAIN)
                        break;
                    die("recv on connection %u: %s", idx, strerror(errno));
                }
                if (r == 0)
                    die("server closed connection %u after %llu requests", idx,
                        (unsigned long long)c->seq - 1);
                if (memcmp(rx, c->tx + c->got, (size_t)r) != 0)
                    die("echo mismatch on connection %u", idx);
                c->got += (uint32_t)r;
                if (c->got == msg_size) {
                    uint64_t t = now_ns();
                    if (t >= t_meas && t < t_end) {
                        hist_add(t - c->t_start);
                        requests++;
                    }
                    start_request(c, idx, t);
                    break; /* the reply cannot be here yet */
                }
            }
        }
        uint64_t t = now_ns();
        if (!measuring && t >= t_meas) {
            measuring = 1;
            cpu0 = cpu_seconds();
            srv0 = process_cpu_seconds(server_pid);
            wall0 = t;
        }
        if (t >= t_end) {
            cpu1 = cpu_seconds();
            srv1 = process_cpu_seconds(server_pid);
            wall1 = t;
            break;
        }
    }
    double wall = (wall1 - wall0) / 1e9;
    printf("{\"mode\": \"pingpong\", \"conns\": %d, \"size\": %zu, \"warmup\": %g, "
           "\"duration\": %g, \"requests\": %llu, \"rps\": %.1f, \"mean_us\": %.2f, "
           "\"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f, "
           "\"max_us\": %.2f, \"cpu\": %.3f, \"events_per_wait\": %.2f, "
           "\"server_cpu_s\": %.6f}\n",
           nconns, msg_size, warmup, duration, (unsigned long long)requests,
           requests / duration, hist_total ? hist_sum / 1000.0 / hist_total : 0.0,
           percentile_us(0.50), percentile_us(0.90), percentile_us(0.99),
           percentile_us(0.999), hist_max / 1000.0, wall > 0 ? (cpu1 - cpu0) / wall : 0.0,
           loops ? (double)events / loops : 0.0,
           srv0 >= 0 && srv1 >= 0 ? srv1 - srv0 : -1.0);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------ idle */

static int idle(const struct sockaddr_in *sa, int nconns, int steps)
{
    raise_nofile(nconns + 16);
    int *fds = malloc(sizeof(int) * (size_t)nconns);
    if (!fds)
        die("out of memory");
    if (steps < 1)
        steps = 1;
    struct timeval tmo = {.tv_sec = 20};
    enum { WINDOW = 250 }; /* stay well below the listen backlog */
    int done = 0;
    uint64_t t0 = now_ns();
    char line[256];
    for (int s = 1; s <= steps; s++) {
        int goal = (int)((long)nconns * s / steps);
        while (done < goal) {
            int w = goal - done < WINDOW ? goal - done : WINDOW;
            for (int i = done; i < done + w; i++) {
                fds[i] = connect_to(sa);
                setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
                if (send(fds[i], "x", 1, MSG_NOSIGNAL) != 1)
                    die("send on connection %d: %s", i, strerror(errno));
            }
            for (int i = done; i < done + w; i++) {
                char b;
                ssize_t r;
                do
                    r = recv(fds[i], &b, 1, 0);
                while (r < 0 && errno == EINTR);
                if (r != 1)
                    die("no echo on idle connection %d: %s", i,
                        r == 0 ? "closed by server" : strerror(errno));
            }
            done += w;
        }
        printf("{\"mode\": \"idle\", \"connected\": %d, \"seconds\": %.3f}\n", done,
               (now_ns() - t0) / 1e9);
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin))
            break;
    }
    for (int i = 0; i < done; i++)
        close(fds[i]);
    printf("{\"mode\": \"idle\", \"done\": true}\n");
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen pingpong|idle --port P [--host H] [--conns N] [--size B]\n"
            "               [--warmup S] [--duration S] [--steps K] [--cpu K]\n"
            "               [--server-pid PID]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    const char *host = "127.0.0.1";
    int port = -1, conns = -1, steps = 2, cpu = -1, spin = 0;
    long server_pid = 0;
    double warmup = 0.5, duration = 3.0;
    msg_size = 1024;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--port"))
            port = atoi(v);
        else if (!strcmp(k, "--host"))
            host = v;
        else if (!strcmp(k, "--conns"))
            conns = atoi(v);
        else if (!strcmp(k, "--size"))
            msg_size = (size_t)atol(v);
        else if (!strcmp(k, "--warmup"))
            warmup = atof(v);
        else if (!strcmp(k, "--duration"))
            duration = atof(v);
        else if (!strcmp(k, "--steps"))
            steps = atoi(v);
        else if (!strcmp(k, "--cpu"))
            cpu = atoi(v);
        else if (!strcmp(k, "--spin"))
            spin = atoi(v);
        else if (!strcmp(k, "--server-pid"))
            server_pid = atol(v);
        else
            usage();
    }
    if (port <= 0 || port > 65535 || msg_size < 1 || msg_size > (64u << 20) || duration <= 0 ||
        warmup < 0)
        usage();
    signal(SIGPIPE, SIG_IGN);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0)
            die("sched_setaffinity(%d): %s", cpu, strerror(errno));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        die("bad IPv4 address %s", host);
    if (!strcmp(mode, "pingpong"))
        return pingpong(&sa, conns > 0 ? conns : 100, warmup, duration, spin,
                        (pid_t)server_pid);
    if (!strcmp(mode, "idle"))
        return idle(&sa, conns > 0 ? conns : 10000, steps);
    usage();
}
