/*
 * bench_quic.c - raw QUIC throughput of our stack (ngtcp2 + wolfSSL over
 * the direct UDP path, GSO/GRO where the kernel has them): two endpoints
 * in one process on loopback, one stream, N MB from the dialer to the
 * listener.  The sync benchmark runs it beside a sync transfer so that
 * sync's overhead is reported as a ratio against this figure.
 *
 *   bench_quic [--mb N]        (default 200)
 *   quic-raw bytes=209715200 seconds=0.52 mb_per_s=402.1 gso=1
 *
 * Timing starts when the dialer's handshake is confirmed and stops when
 * the listener has received the FIN; mb_per_s is 10^6 bytes per second.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(int argc, char **argv)
{
    uint64_t mb = 200;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mb") == 0 && i + 1 < argc) {
            char *end;
            mb = strtoull(argv[++i], &end, 10);
            if (*end || mb == 0 || mb > 100000) {
                fprintf(stderr, "bench_quic: --mb takes a number from 1 to 100000\n");
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_quic [--mb N]\n");
            return 2;
        }
    }
    if (sodium_init() < 0)
        return 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    B.loop = &loop;
    B.total = mb * 1024 * 1024;
    randombytes_buf(B.buf, sizeof B.buf);

    uint8_t spk[32], ssk[64], cpk[32], csk[64];
    crypto_sign_keypair(spk, ssk);
    crypto_sign_keypair(cpk, csk);
    ds_quic_callbacks scb = {0}, ccb = {0};
    scb.on_stream_data = on_data;
    scb.on_closed = on_closed;
    scb.on_log = on_log;
    ccb.on_connected = on_connected;
    ccb.on_stream_writable = on_writable;
    ccb.on_closed = on_closed;
    ccb.on_log = on_log;
    ds_quic_config sc = {ssk, "ds-bench/1", 0, 0}, cc = {csk, "ds-bench/1", 0, 0};
    int rc = ds_quic_endpoint_new(&B.srv, &loop, &sc, &scb, NULL);
    if (!rc)
        rc = ds_quic_endpoint_new(&B.cli, &loop, &cc, &ccb, NULL);
    if (!rc)
        rc = ds_quic_endpoint_bind(B.srv, "127.0.0.1", 0);
    struct sockaddr_storage ss;
    if (!rc)
        rc = ds_quic_endpoint_addr(B.srv, &ss);
    if (!rc)
        rc = ds_quic_connect(B.cli, (struct sockaddr *)&ss, spk, NULL);
    if (rc) {
        fprintf(stderr, "bench_quic: setup failed: %s\n", ds_strerror(rc));
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    int gso = ds_quic_endpoint_gso(B.cli); /* the sender's path */
    int closed = 0;
    ds_quic_endpoint_close(B.cli, closed_cb, &closed);
    ds_quic_endpoint_close(B.srv, closed_cb, &closed);
    while (closed < 2)
        uv_run(&loop, UV_RUN_ONCE);
    ds_quic_endpoint_free(B.cli);
    ds_quic_endpoint_free(B.srv);
    uv_loop_close(&loop);
    if (B.failed || !B.fin || B.received != B.total) {
        fprintf(stderr, "bench_quic: transfer failed (%llu of %llu bytes)\n",
                (unsigned long long)B.received, (unsigned long long)B.total);
        return 1;
    }
    double secs = (double)(B.t_end - B.t_start) / 1e9;
    printf("quic-raw bytes=%llu seconds=%.2f mb_per_s=%.1f gso=%d\n",
           (unsigned long long)B.total, secs, (double)B.total / 1e6 / secs, gso);
    return 0;
}
