/*
 * bench_quic.c - raw QUIC throughput of our stack (ngtcp2 + wolfSSL over
 * the direct UDP path, GSO/GRO where the kernel has them): two endpoints
 * in one process on loopback (or, with --procs 2, the listener in a
 * child process, as in a sync between two daemons), one stream, N MB
 * from the dialer to the listener.  The sync benchmark runs it beside a
 * sync transfer so that sync's overhead is reported as a ratio against
 * this figure.
 *
 *   bench_quic [--mb N] [--procs 1|2]      (defaults 200, 1)
 *   quic-raw bytes=209715200 seconds=0.52 mb_per_s=402.1 gso=1 procs=1
 *
 * With --rtt-ms R the two ends (one process) are joined instead by an
 * emulated wide-area link: a bottleneck of --mbit M (default 100) with a
 * drop-tail queue of --queue-ms Q of that rate (default R, one
 * bandwidth-delay product), and R/2 ms of delay each way.  This machine
 * has no netem, and how often a receiver acknowledges (ACK_THRESH in
 * quic_conn.c) only shows at a real round-trip time:
 *
 *   quic-wan bytes=... seconds=... mb_per_s=... rtt_ms=R mbit=M queue_ms=Q dropped=N
 *
 * With --procs 2, --listen-ns NS --listen-addr IP put the listener
 * process in network namespace NS (/run/netns/NS, made with ip netns)
 * bound to IP, so that bench-sync.sh --link can measure the stack across
 * a rate-limited veth pair between two namespaces, as it measures a sync.
 *
 * Timing starts when the dialer's handshake is confirmed and stops when
 * the listener has received the FIN; mb_per_s is 10^6 bytes per second.
 */
#include <sodium.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ds/error.h"
#include "io/quic.h"

#define CHUNK (256u * 1024)
#define QUEUE_MAX (16u * 1024 * 1024)

typedef struct bench {
    uv_loop_t *loop;
    ds_quic_endpoint *srv, *cli;
    ds_quic_conn *conn;
    int64_t sid;
    uint64_t total, sent, received;
    uint64_t t_start, t_end;
    int fin, failed;
    uint8_t buf[CHUNK];
} bench;

static bench B;

static void pump(void)
{
    while (B.conn && B.sent < B.total && ds_quic_stream_queued(B.conn, B.sid) < QUEUE_MAX) {
        uint64_t n = B.total - B.sent < CHUNK ? B.total - B.sent : CHUNK;
        if (ds_quic_stream_write(B.conn, B.sid, B.buf, (size_t)n, B.sent + n == B.total) != 0) {
            B.failed = 1;
            return;
        }
        B.sent += n;
    }
}

static void on_connected(ds_quic_conn *c, void *ud)
{
    (void)ud;
    B.conn = c;
    if (ds_quic_stream_open(c, &B.sid) != 0) {
        B.failed = 1;
        uv_stop(B.loop);
        return;
    }
    B.t_start = uv_hrtime();
    pump();
}

static void on_writable(ds_quic_conn *c, int64_t sid, void *ud)
{
    (void)c;
    (void)sid;
    (void)ud;
    pump();
}

static void on_data(ds_quic_conn *c, int64_t sid, const uint8_t *d, size_t len, int fin, void *ud)
{
    (void)c;
    (void)sid;
    (void)d;
    (void)ud;
    B.received += len;
    if (fin && !B.fin) {
        B.fin = 1;
        B.t_end = uv_hrtime();
        uv_stop(B.loop);
    }
}

static void on_closed(ds_quic_conn *c, int err, const char *reason, void *ud)
{
    (void)ud;
    if (c == B.conn)
        B.conn = NULL;
    if (!B.fin && err) {
        fprintf(stderr, "bench_quic: connection closed: %s (%s)\n", reason, ds_strerror(err));
        B.failed = 1;
        uv_stop(B.loop);
    }
}

static void on_log(int is_error, const char *msg, void *ud)
{
    (void)is_error;
    (void)ud;
    fprintf(stderr, "bench_quic: %s\n", msg);
}

static void closed_cb(void *ud)
{
    (*(int *)ud)++;
}

/* ---- the emulated wide-area link (--rtt-ms) ------------------------------ */

typedef struct wdgram {
    struct wdgram *next;
    uint64_t due_ns;             /* when it reaches the far end */
    size_t len;
    uint8_t data[];
} wdgram;

typedef struct wan_path {
    ds_quic_path path;
    struct wan_path *peer;       /* the far end */
    uv_timer_t t;                /* delivers what is due to this end */
    wdgram *q, *qtail;           /* on the way to this end, in order */
    uint64_t link_free_ns;       /* when this end's outgoing link is idle */
    void (*done)(ds_quic_path *p);
} wan_path;

static struct {
    uint64_t delay_ns;           /* one way */
    double ns_per_byte;          /* the bottleneck's rate */
    uint64_t queue_ns;           /* the most time a datagram may wait to be sent */
    uint64_t dropped;
} W;

static void wan_deliver(uv_timer_t *t);

/* (Re)starts the delivery timer for the first datagram on its way. */
static void wan_arm(wan_path *m)
{
    if (!m->q || m->path.closing)
        return;
    uint64_t now = uv_hrtime();
    uint64_t ms = m->q->due_ns > now ? (m->q->due_ns - now + 999999) / 1000000 : 0;
    uv_timer_start(&m->t, wan_deliver, ms, 0);
}

static void wan_deliver(uv_timer_t *t)
{
    wan_path *m = t->data;
    uint64_t now = uv_hrtime();
    while (m->q && m->q->due_ns <= now && !m->path.closing) {
        wdgram *d = m->q;
        m->q = d->next;
        if (!m->q)
            m->qtail = NULL;
        ds_quic_endpoint_recv(m->path.ep, &m->path, (struct sockaddr *)&m->peer->path.local,
                              d->data, d->len, d->len);
        free(d);
    }
    wan_arm(m);
}

static int wan_send(ds_quic_path *p, const struct sockaddr *to, const uint8_t *buf, size_t len,
                    size_t seg)
{
    wan_path *m = p->impl, *dst = m->peer;
    (void)to;
    uint64_t now = uv_hrtime();
    for (size_t off = 0; off < len; off += seg) {
        size_t n = len - off < seg ? len - off : seg;
        uint64_t start = m->link_free_ns > now ? m->link_free_ns : now;
        if (start - now > W.queue_ns || dst->path.closing) {
            W.dropped++;            /* drop-tail: the queue is full */
            continue;
        }
        m->link_free_ns = start + (uint64_t)((double)n * W.ns_per_byte);
        wdgram *d = malloc(sizeof *d + n);
        if (!d)
            return DS_ERR_NOMEM;
        d->next = NULL;
        d->len = n;
        d->due_ns = m->link_free_ns + W.delay_ns;
        memcpy(d->data, buf + off, n);
        int was_empty = dst->q == NULL;
        if (dst->qtail)
            dst->qtail->next = d;
        else
            dst->q = d;
        dst->qtail = d;
        if (was_empty)
            wan_arm(dst);
    }
    return (int)len;
}

static void wan_closed(uv_handle_t *h)
{
    wan_path *m = h->data;
    while (m->q) {
        wdgram *d = m->q;
        m->q = d->next;
        free(d);
    }
    m->qtail = NULL;
    m->done(&m->path);
}

static void wan_close(ds_quic_path *p, void (*done)(ds_quic_path *p))
{
    wan_path *m = p->impl;
    m->done = done;
    uv_close((uv_handle_t *)&m->t, wan_closed);
}

static const ds_quic_path_ops WAN_OPS = {"relay", wan_send, wan_close};

static void wan_init(uv_loop_t *loop, wan_path *m, wan_path *to, uint8_t host, int listening)
{
    memset(m, 0, sizeof *m);
    m->peer = to;
    m->path.ops = &WAN_OPS;
    m->path.impl = m;
    m->path.listening = listening;
    struct sockaddr_in *a = (struct sockaddr_in *)&m->path.local;
    a->sin_family = AF_INET;        /* a virtual address of this path */
    a->sin_addr.s_addr = htonl(0x0aff0000u | host);
    a->sin_port = htons(1000);
    uv_timer_init(loop, &m->t);
    m->t.data = m;
}

/* --procs 2: what the listener child reports on its pipe at the end. */
typedef struct report {
    uint64_t received, t_end;
    int fin;
} report;

static int reported;             /* the child's report arrived (or its pipe closed) */

static void on_report(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    report r;
    uv_os_fd_t fd = -1;
    reported = 1;
    if (uv_fileno((uv_handle_t *)h, &fd) == 0 && read(fd, &r, sizeof r) == (ssize_t)sizeof r) {
        B.received = r.received;
        B.t_end = r.t_end;
        B.fin = r.fin;
    } else {
        B.failed = 1;
    }
    uv_poll_stop(h);
    uv_stop(B.loop);
}

static ds_quic_callbacks listener_callbacks(void)
{
    ds_quic_callbacks scb = {0};
    scb.on_stream_data = on_data;
    scb.on_closed = on_closed;
    scb.on_log = on_log;
    return scb;
}

static void close_endpoints(uv_loop_t *loop)
{
    int closed = 0, want = 0;
    if (B.cli) {
        ds_quic_endpoint_close(B.cli, closed_cb, &closed);
        want++;
    }
    if (B.srv) {
        ds_quic_endpoint_close(B.srv, closed_cb, &closed);
        want++;
    }
    while (closed < want)
        uv_run(loop, UV_RUN_ONCE);
    ds_quic_endpoint_free(B.cli);
    ds_quic_endpoint_free(B.srv);
    B.cli = B.srv = NULL;
}

/* The listener child of --procs 2: binds, tells the parent its address,
 * receives, and reports the end of the transfer. */
static int listener_child(const uint8_t ssk[64], int fd, const char *ns, const char *ip)
{
    if (ns) {
        char path[256];
        snprintf(path, sizeof path, "/run/netns/%s", ns);
        int nfd = open(path, O_RDONLY | O_CLOEXEC);
        if (nfd < 0 || setns(nfd, CLONE_NEWNET) != 0) {
            perror("bench_quic: --listen-ns");
            return 1;
        }
        close(nfd);
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    B.loop = &loop;
    ds_quic_callbacks scb = listener_callbacks();
    ds_quic_config sc = {.identity_sk = ssk, .alpn = "ds-bench/1"};
    struct sockaddr_storage ss;
    int rc = ds_quic_endpoint_new(&B.srv, &loop, &sc, &scb, NULL);
    if (!rc)
        rc = ds_quic_endpoint_bind(B.srv, ip, 0);
    if (!rc)
        rc = ds_quic_endpoint_addr(B.srv, &ss);
    if (rc) {
        fprintf(stderr, "bench_quic: listener setup failed: %s\n", ds_strerror(rc));
        return 1;
    }
    if (write(fd, &ss, sizeof ss) != (ssize_t)sizeof ss)
        return 1;
    uv_run(&loop, UV_RUN_DEFAULT);
    report r = {B.received, B.t_end, B.fin && !B.failed};
    close_endpoints(&loop);
    uv_loop_close(&loop);
    return write(fd, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1;
}

int main(int argc, char **argv)
{
    uint64_t mb = 200;
    int procs = 1;
    long rtt_ms = 0, mbit = 100, queue_ms = -1;
    const char *listen_ns = NULL, *listen_ip = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        long *num = strcmp(argv[i], "--rtt-ms") == 0   ? &rtt_ms
                    : strcmp(argv[i], "--mbit") == 0     ? &mbit
                    : strcmp(argv[i], "--queue-ms") == 0 ? &queue_ms
                                                         : NULL;
        if (num && i + 1 < argc) {
            char *end;
            *num = strtol(argv[++i], &end, 10);
            if (*end || *num < 0 || *num > 100000 || (num == &mbit && *num == 0)) {
                fprintf(stderr, "bench_quic: %s takes a number from %d to 100000\n", argv[i - 1],
                        num == &mbit ? 1 : 0);
                return 2;
            }
            continue;
        }
        if (strcmp(argv[i], "--mb") == 0 && i + 1 < argc) {
            char *end;
            mb = strtoull(argv[++i], &end, 10);
            if (*end || mb == 0 || mb > 100000) {
                fprintf(stderr, "bench_quic: --mb takes a number from 1 to 100000\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--procs") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "1") != 0 && strcmp(v, "2") != 0) {
                fprintf(stderr, "bench_quic: --procs takes 1 (both ends in one process) or 2\n");
                return 2;
            }
            procs = v[0] - '0';
        } else if (strcmp(argv[i], "--listen-ns") == 0 && i + 1 < argc) {
            listen_ns = argv[++i];
        } else if (strcmp(argv[i], "--listen-addr") == 0 && i + 1 < argc) {
            listen_ip = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_quic [--mb N] [--procs 1|2] "
                            "[--rtt-ms R [--mbit M] [--queue-ms Q]] "
                            "[--procs 2 --listen-ns NS --listen-addr IP]\n");
            return 2;
        }
    }
    int wan = rtt_ms > 0;
    if (wan && procs != 1) {
        fprintf(stderr, "bench_quic: --rtt-ms joins two ends in one process: no --procs 2\n");
        return 2;
    }
    if ((listen_ns || strcmp(listen_ip, "127.0.0.1") != 0) && procs != 2) {
        fprintf(stderr, "bench_quic: --listen-ns and --listen-addr place the listener process: "
                        "use them with --procs 2\n");
        return 2;
    }
    if (queue_ms < 0)
        queue_ms = rtt_ms;
    W.delay_ns = (uint64_t)rtt_ms * 500000u;
    W.ns_per_byte = 8e3 / (double)mbit;            /* 8 bits at mbit * 10^6 bit/s, in ns */
    W.queue_ns = (uint64_t)queue_ms * 1000000u;
    if (sodium_init() < 0)
        return 1;
    B.total = mb * 1024 * 1024;
    randombytes_buf(B.buf, sizeof B.buf);

    uint8_t spk[32], ssk[64], cpk[32], csk[64];
    crypto_sign_keypair(spk, ssk);
    crypto_sign_keypair(cpk, csk);

    int fds[2] = {-1, -1};
    pid_t child = -1;
    struct sockaddr_storage ss;
    if (procs == 2) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
            perror("bench_quic: socketpair");
            return 1;
        }
        fflush(NULL);
        child = fork();
        if (child < 0) {
            perror("bench_quic: fork");
            return 1;
        }
        if (child == 0) {
            close(fds[0]);
            _exit(listener_child(ssk, fds[1], listen_ns, listen_ip));
        }
        close(fds[1]);
        if (read(fds[0], &ss, sizeof ss) != (ssize_t)sizeof ss) {
            fprintf(stderr, "bench_quic: the listener process did not start\n");
            waitpid(child, NULL, 0);
            return 1;
        }
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    B.loop = &loop;
    ds_quic_callbacks scb = listener_callbacks(), ccb = {0};
    ccb.on_connected = on_connected;
    ccb.on_stream_writable = on_writable;
    ccb.on_closed = on_closed;
    ccb.on_log = on_log;
    ds_quic_config sc = {.identity_sk = ssk, .alpn = "ds-bench/1"};
    ds_quic_config cc = {.identity_sk = csk, .alpn = "ds-bench/1"};
    int rc = ds_quic_endpoint_new(&B.cli, &loop, &cc, &ccb, NULL);
    if (!rc && procs == 1)
        rc = ds_quic_endpoint_new(&B.srv, &loop, &sc, &scb, NULL);
    static wan_path wa, wb;           /* listener's end, dialer's end */
    if (!rc && wan) {
        wan_init(&loop, &wa, &wb, 1, 1);
        wan_init(&loop, &wb, &wa, 2, 0);
        rc = ds_quic_endpoint_add_path(B.srv, &wa.path);
        if (!rc)
            rc = ds_quic_endpoint_add_path(B.cli, &wb.path);
        if (!rc)
            rc = ds_quic_connect_via(B.cli, &wb.path, (struct sockaddr *)&wa.path.local, spk, NULL);
    } else {
        if (!rc && procs == 1)
            rc = ds_quic_endpoint_bind(B.srv, "127.0.0.1", 0);
        if (!rc && procs == 1)
            rc = ds_quic_endpoint_addr(B.srv, &ss);
        if (!rc)
            rc = ds_quic_connect(B.cli, (struct sockaddr *)&ss, spk, NULL);
    }
    uv_poll_t rep;
    if (!rc && procs == 2 && (uv_poll_init(&loop, &rep, fds[0]) != 0 ||
                              uv_poll_start(&rep, UV_READABLE, on_report) != 0))
        rc = DS_ERR_IO;
    if (rc) {
        fprintf(stderr, "bench_quic: setup failed: %s\n", ds_strerror(rc));
        if (child > 0) {
            kill(child, SIGTERM);
            waitpid(child, NULL, 0);
        }
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    int gso = ds_quic_endpoint_gso(B.cli); /* the sender's path */
    if (procs == 2)
        uv_close((uv_handle_t *)&rep, NULL);
    close_endpoints(&loop);
    uv_loop_close(&loop);
    if (child > 0) {
        int status = 0;
        if (!reported)                /* the transfer failed here: the child still waits */
            kill(child, SIGTERM);
        waitpid(child, &status, 0);
        close(fds[0]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            B.failed = 1;
    }
    if (B.failed || !B.fin || B.received != B.total) {
        fprintf(stderr, "bench_quic: transfer failed (%llu of %llu bytes)\n",
                (unsigned long long)B.received, (unsigned long long)B.total);
        return 1;
    }
    double secs = (double)(B.t_end - B.t_start) / 1e9;
    if (wan) {
        printf("quic-wan bytes=%llu seconds=%.2f mb_per_s=%.1f rtt_ms=%ld mbit=%ld queue_ms=%ld "
               "dropped=%llu\n",
               (unsigned long long)B.total, secs, (double)B.total / 1e6 / secs, rtt_ms, mbit,
               queue_ms, (unsigned long long)W.dropped);
        return 0;
    }
    printf("quic-raw bytes=%llu seconds=%.2f mb_per_s=%.1f gso=%d procs=%d\n",
           (unsigned long long)B.total, secs, (double)B.total / 1e6 / secs, gso, procs);
    return 0;
}
