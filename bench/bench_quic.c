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
 * Timing starts when the dialer's handshake is confirmed and stops when
 * the listener has received the FIN; mb_per_s is 10^6 bytes per second.
 */
#include <sodium.h>
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

/* --procs 2: what the listener child reports on its pipe at the end. */
typedef struct report {
    uint64_t received, t_end;
    int fin;
} report;

static void on_report(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    report r;
    if (read(h->io_watcher.fd, &r, sizeof r) == (ssize_t)sizeof r) {
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
static int listener_child(const uint8_t ssk[64], int fd)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    B.loop = &loop;
    ds_quic_callbacks scb = listener_callbacks();
    ds_quic_config sc = {ssk, "ds-bench/1", 0, 0};
    struct sockaddr_storage ss;
    int rc = ds_quic_endpoint_new(&B.srv, &loop, &sc, &scb, NULL);
    if (!rc)
        rc = ds_quic_endpoint_bind(B.srv, "127.0.0.1", 0);
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
    for (int i = 1; i < argc; i++) {
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
        } else {
            fprintf(stderr, "usage: bench_quic [--mb N] [--procs 1|2]\n");
            return 2;
        }
    }
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
            _exit(listener_child(ssk, fds[1]));
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
    ds_quic_config sc = {ssk, "ds-bench/1", 0, 0}, cc = {csk, "ds-bench/1", 0, 0};
    int rc = ds_quic_endpoint_new(&B.cli, &loop, &cc, &ccb, NULL);
    if (!rc && procs == 1)
        rc = ds_quic_endpoint_new(&B.srv, &loop, &sc, &scb, NULL);
    if (!rc && procs == 1)
        rc = ds_quic_endpoint_bind(B.srv, "127.0.0.1", 0);
    if (!rc && procs == 1)
        rc = ds_quic_endpoint_addr(B.srv, &ss);
    if (!rc)
        rc = ds_quic_connect(B.cli, (struct sockaddr *)&ss, spk, NULL);
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
    printf("quic-raw bytes=%llu seconds=%.2f mb_per_s=%.1f gso=%d procs=%d\n",
           (unsigned long long)B.total, secs, (double)B.total / 1e6 / secs, gso, procs);
    return 0;
}
