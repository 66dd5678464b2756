/*
 * test_quic.c - the QUIC endpoint over real loopback UDP (127.0.0.1 and
 * ::1, port 0): handshake with NodeId pinning both ways, pinning
 * failure, rejection by the listener, ALPN mismatch, a 5 MB transfer in
 * both directions on one stream, idle timeout, clean close, dialing a
 * port where nobody listens, and constructor errors.  One uv loop per
 * test; every run is bounded by a guard timer; no sleeps.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ngtcp2/ngtcp2.h>

#include "testutil.h"
#include "ds/error.h"
#include "io/quic.h"

#define XFER (5u * 1024 * 1024)
#define WRITE_CHUNK 65536
#define QUEUE_MAX (1024u * 1024)

typedef struct world world;

typedef struct peer {
    world *w;
    ds_quic_endpoint *ep;
    uint8_t pk[32], sk[64];
    const char *alpn;
    uint32_t idle_ms, hs_ms, keep_alive_ms;
    int retry_always;
    int reject;                 /* on_accept says no */
    int accepted, connected, closed, close_err, stream_opens;
    char reason[256];
    uint8_t accepted_pk[32];
    ds_quic_conn *conn;
    /* transfer */
    int64_t sid;
    int have_sid;
    uint8_t salt;               /* pattern of what this side sends */
    size_t to_send, sent;
    size_t received;
    int fin_seen, bad_data;
    /* many_streams: the dialer opens |streams_left| streams one after the
     * other; the listener answers each FIN with its own FIN. */
    int echo_fin, streams_left, streams_done;
} peer;

struct world {
    uv_loop_t loop;
    uv_timer_t guard;
    int timed_out;
    int (*goal)(world *w);
    peer a, b;                  /* a: listener, b: dialer */
    int ep_done;
};

static double t0; /* for DS_TEST_VERBOSE=1 traces */
static uint8_t pattern(uint8_t salt, size_t i)
{
    return (uint8_t)((i * 31u) ^ (i >> 9) ^ salt);
}

static void check_goal(world *w)
{
    if (w->goal && w->goal(w))
        uv_stop(&w->loop);
}

static void pump(peer *p)
{
    static uint8_t buf[WRITE_CHUNK];
    while (p->conn && p->have_sid && p->sent < p->to_send &&
           ds_quic_stream_queued(p->conn, p->sid) < QUEUE_MAX) {
        size_t n = p->to_send - p->sent < WRITE_CHUNK ? p->to_send - p->sent : WRITE_CHUNK;
        int fin = p->sent + n == p->to_send;
        int rc;
        if ((p->sent / WRITE_CHUNK) % 2) {   /* every other chunk without the copy */
            uint8_t *t = malloc(n);
            assert_non_null(t);
            for (size_t i = 0; i < n; i++)
                t[i] = pattern(p->salt, p->sent + i);
            rc = ds_quic_stream_write_take(p->conn, p->sid, t, n, fin);
            if (rc)
                free(t);
        } else {
            for (size_t i = 0; i < n; i++)
                buf[i] = pattern(p->salt, p->sent + i);
            rc = ds_quic_stream_write(p->conn, p->sid, buf, n, fin);
        }
        assert_int_equal(rc, 0);
        p->sent += n;
    }
}

static int on_accept(ds_quic_conn *c, const uint8_t pk[32], void *ud)
{
    peer *p = ud;
    p->accepted++;
    memcpy(p->accepted_pk, pk, 32);
    if (p->reject)
        return 1;
    p->conn = c;
    check_goal(p->w);
    return 0;
}

static void on_connected(ds_quic_conn *c, void *ud)
{
    peer *p = ud;
    p->connected++;
    p->conn = c;
    if (p->to_send) {
        assert_int_equal(ds_quic_stream_open(c, &p->sid), 0);
        p->have_sid = 1;
        pump(p);
    }
    check_goal(p->w);
}

static void on_stream_open(ds_quic_conn *c, int64_t sid, void *ud)
{
    peer *p = ud;
    (void)c;
    p->stream_opens++;
    if (!p->have_sid) {
        p->sid = sid;
        p->have_sid = 1;
        pump(p);
    }
}

static void on_stream_data(ds_quic_conn *c, int64_t sid, const uint8_t *data, size_t len, int fin,
                           void *ud)
{
    peer *p = ud;
    if (p->echo_fin) { /* listener: answer FIN with FIN */
        if (fin) {
            /* A taken buffer: kept on failure, freed at once when empty. */
            uint8_t *t = malloc(16);
            assert_non_null(t);
            assert_int_equal(ds_quic_stream_write_take(c, sid + 1000, t, 16, 0), DS_ERR_INVALID);
            assert_int_equal(ds_quic_stream_write_take(c, sid, t, 0, 1), 0);
        }
        return;
    }
    if (p->streams_left || p->streams_done) { /* dialer: next stream */
        if (fin) {
            p->streams_done++;
            if (p->streams_left > 0) {
                p->streams_left--;
                int64_t s2;
                assert_int_equal(ds_quic_stream_open(c, &s2), 0);
                assert_int_equal(ds_quic_stream_write(c, s2, (const uint8_t *)"x", 1, 1), 0);
            }
            check_goal(p->w);
        }
        return;
    }
    /* the other side's salt is ours ^ 0xff */
    for (size_t i = 0; i < len; i++)
        if (data[i] != pattern((uint8_t)(p->salt ^ 0xff), p->received + i))
            p->bad_data = 1;
    p->received += len;
    if (fin)
        p->fin_seen = 1;
    check_goal(p->w);
}

static void on_stream_writable(ds_quic_conn *c, int64_t sid, void *ud)
{
    peer *p = ud;
    (void)c;
    (void)sid;
    pump(p);
}

static void on_closed(ds_quic_conn *c, int err, const char *reason, void *ud)
{
    peer *p = ud;
    p->closed++;
    p->close_err = err;
    snprintf(p->reason, sizeof p->reason, "%s", reason);
    if (getenv("DS_TEST_VERBOSE"))
        fprintf(stderr, "  [%s] on_closed err=%d reason=%s t=%.1fms\n",
                p == &p->w->a ? "listener" : "dialer", err, reason, uv_hrtime() / 1e6 - t0);
    if (c == p->conn)
        p->conn = NULL;
    check_goal(p->w);
}

static const ds_quic_callbacks CBS = {on_accept,          on_connected, on_stream_open,
                                      on_stream_data,     on_stream_writable, on_closed,
                                      NULL};

static void guard_cb(uv_timer_t *t)
{
    world *w = t->data;
    w->timed_out = 1;
    uv_stop(&w->loop);
}

static void make_key(peer *p, uint8_t seed_byte)
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof seed);
    crypto_sign_seed_keypair(p->pk, p->sk, seed);
}

static void world_init(world *w)
{
    memset(w, 0, sizeof *w);
    t0 = uv_hrtime() / 1e6;
    assert_int_equal(uv_loop_init(&w->loop), 0);
    uv_timer_init(&w->loop, &w->guard);
    w->guard.data = w;
    w->a.w = w->b.w = w;
    make_key(&w->a, 1);
    make_key(&w->b, 2);
    w->a.alpn = w->b.alpn = "ds-test/1";
    w->a.salt = 0x11;
    w->b.salt = 0x11 ^ 0xff;
}

static void peer_start(world *w, peer *p)
{
    ds_quic_config cfg = {.identity_sk = p->sk, .alpn = p->alpn, .idle_timeout_ms = p->idle_ms,
                          .handshake_timeout_ms = p->hs_ms, .keep_alive_ms = p->keep_alive_ms,
                          .retry_always = p->retry_always};
    assert_int_equal(ds_quic_endpoint_new(&p->ep, &w->loop, &cfg, &CBS, p), 0);
}

/* Runs the loop until the goal holds or |ms| pass; returns 1 on goal. */
static int run(world *w, int (*goal)(world *), uint64_t ms)
{
    w->goal = goal;
    w->timed_out = 0;
    if (goal(w))
        return 1;
    uv_timer_start(&w->guard, guard_cb, ms, 0);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&w->guard);
    w->goal = NULL;
    return !w->timed_out && goal(w);
}

static void ep_done(void *ud)
{
    world *w = ud;
    w->ep_done++;
}

static int both_ep_done(world *w)
{
    return w->ep_done == (w->a.ep ? 1 : 0) + (w->b.ep ? 1 : 0);
}

static void world_free(world *w)
{
    if (w->a.ep)
        ds_quic_endpoint_close(w->a.ep, ep_done, w);
    if (w->b.ep)
        ds_quic_endpoint_close(w->b.ep, ep_done, w);
    w->goal = both_ep_done;
    w->timed_out = 0;
    uv_timer_start(&w->guard, guard_cb, 3000, 0);
    while (!both_ep_done(w) && !w->timed_out)
        uv_run(&w->loop, UV_RUN_ONCE);
    assert_true(both_ep_done(w));
    ds_quic_endpoint_free(w->a.ep);
    ds_quic_endpoint_free(w->b.ep);
    uv_close((uv_handle_t *)&w->guard, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&w->loop), 0);
}

/* Listener a on |host|, dialer b dialing it expecting |expect|. */
static int start_pair(world *w, const char *host, const uint8_t *expect)
{
    peer_start(w, &w->a);
    peer_start(w, &w->b);
    int rc = ds_quic_endpoint_bind(w->a.ep, host, 0);
    if (rc)
        return rc;
    struct sockaddr_storage ss;
    assert_int_equal(ds_quic_endpoint_addr(w->a.ep, &ss), 0);
    assert_int_equal(ds_quic_connect(w->b.ep, (struct sockaddr *)&ss, expect ? expect : w->a.pk,
                                     &w->b.conn),
                     0);
    return 0;
}

static int g_established(world *w) { return w->a.accepted && w->b.connected; }
static int g_transfer(world *w)
{
    return (w->a.fin_seen && w->b.fin_seen) || w->a.bad_data || w->b.bad_data ||
           w->a.closed || w->b.closed;
}
static int g_b_closed(world *w) { return w->b.closed > 0; }
static int g_both_closed(world *w) { return w->a.closed > 0 && w->b.closed > 0; }


/* ---- An in-memory "relay" path: exercises the path interface ------------- */

typedef struct dgram {
    struct dgram *next;
    size_t len;
    uint8_t data[];
} dgram;

typedef struct mem_path {
    ds_quic_path path;
    struct mem_path *peer;      /* where datagrams go */
    uv_timer_t t;               /* delivers asynchronously (never inside send) */
    dgram *q, *qtail;
    int drop_next, dropped, sent, delivered;
    size_t last_len;            /* of the last datagram sent */
    uint8_t last[64];           /* its first bytes */
    int capture_token;          /* take (not deliver) the first Initial with a token */
    uint8_t cap[1500];
    size_t cap_len;
    world *w;
    int budget_max, budget, refusals; /* budget_max > 0: datagrams per tick */
    uv_timer_t refill;
    int open_handles;
    void (*done)(ds_quic_path *p);
} mem_path;

static void mem_refill(uv_timer_t *t)
{
    mem_path *m = t->data;
    m->budget = m->budget_max;
    ds_quic_path_writable(&m->path);
}

static void mem_deliver(uv_timer_t *t)
{
    mem_path *m = t->data; /* the receiving side */
    while (m->q && !m->path.closing) {
        dgram *d = m->q;
        m->q = d->next;
        if (!m->q)
            m->qtail = NULL;
        ds_quic_endpoint_recv(m->path.ep, &m->path, (struct sockaddr *)&m->peer->path.local,
                              d->data, d->len, d->len);
        free(d);
        m->delivered++;
        if (m->w)
            check_goal(m->w);
    }
}

static int mem_send(ds_quic_path *p, const struct sockaddr *to, const uint8_t *buf, size_t len,
                    size_t seg)
{
    mem_path *m = p->impl, *dst = m->peer;
    (void)to;
    for (size_t off = 0; off < len; off += seg) {
        size_t n = len - off < seg ? len - off : seg;
        if (m->budget_max) {
            if (m->budget == 0) { /* full: take nothing more until refilled */
                m->refusals++;
                uv_timer_start(&m->refill, mem_refill, 0, 0);
                return (int)off;
            }
            m->budget--;
        }
        m->sent++;
        m->last_len = n;
        memcpy(m->last, buf + off, n < sizeof m->last ? n : sizeof m->last);
        ngtcp2_pkt_hd hd;
        if (m->capture_token && !m->cap_len && n <= sizeof m->cap &&
            ngtcp2_accept(&hd, buf + off, n) == 0 && hd.token.len > 0) {
            memcpy(m->cap, buf + off, n);
            m->cap_len = n;
            if (m->w)
                check_goal(m->w);
            continue;
        }
        if (m->drop_next > 0) {
            m->drop_next--;
            m->dropped++;
            continue;
        }
        if (dst->path.closing)
            continue;
        dgram *d = malloc(sizeof *d + n);
        assert_non_null(d);
        d->next = NULL;
        d->len = n;
        memcpy(d->data, buf + off, n);
        if (dst->qtail)
            dst->qtail->next = d;
        else
            dst->q = d;
        dst->qtail = d;
        uv_timer_start(&dst->t, mem_deliver, 0, 0);
    }
    return (int)len;
}

static void mem_closed(uv_handle_t *h)
{
    mem_path *m = h->data;
    if (--m->open_handles > 0)
        return;
    while (m->q) {
        dgram *d = m->q;
        m->q = d->next;
        free(d);
    }
    m->qtail = NULL;
    m->done(&m->path);
}

static void mem_close(ds_quic_path *p, void (*done)(ds_quic_path *p))
{
    mem_path *m = p->impl;
    m->done = done;
    uv_close((uv_handle_t *)&m->t, mem_closed);
    uv_close((uv_handle_t *)&m->refill, mem_closed);
}

static const ds_quic_path_ops MEM_OPS = {"relay", mem_send, mem_close};

static void mem_init(world *w, mem_path *m, mem_path *to, uint8_t host, int listening)
{
    memset(m, 0, sizeof *m);
    m->w = w;
    m->peer = to;
    m->path.ops = &MEM_OPS;
    m->path.impl = m;
    m->path.listening = listening;
    struct sockaddr_in *a = (struct sockaddr_in *)&m->path.local;
    a->sin_family = AF_INET; /* a virtual address of this path */
    a->sin_addr.s_addr = htonl(0x0aff0000u | host);
    a->sin_port = htons(1000);
    uv_timer_init(&w->loop, &m->t);
    uv_timer_init(&w->loop, &m->refill);
    m->t.data = m->refill.data = m;
    m->open_handles = 2;
}

/* Listener a and dialer b joined by the relay paths |pa| and |pb| (|budget|
 * datagrams per tick each when > 0); b dials a. */
static void relay_dial(world *w, mem_path *pa, mem_path *pb, int budget)
{
    peer_start(w, &w->a);
    peer_start(w, &w->b);
    mem_init(w, pa, pb, 1, 1);
    mem_init(w, pb, pa, 2, 0);
    pa->budget_max = pa->budget = pb->budget_max = pb->budget = budget;
    assert_int_equal(ds_quic_endpoint_add_path(w->a.ep, &pa->path), 0);
    assert_int_equal(ds_quic_endpoint_add_path(w->b.ep, &pb->path), 0);
    assert_int_equal(ds_quic_connect_via(w->b.ep, &pb->path, (struct sockaddr *)&pa->path.local,
                                         w->a.pk, &w->b.conn),
                     0);
}

static int g_a_closed(world *w) { return w->a.closed > 0; }

static void relay_path_and_closing_period(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.idle_ms = w.b.idle_ms = 10000;
    static mem_path pa, pb;
    relay_dial(&w, &pa, &pb, 0);
    assert_true(run(&w, g_established, 5000));
    assert_string_equal(ds_quic_conn_path_kind(w.b.conn), "relay");
    assert_string_equal(ds_quic_conn_path_kind(w.a.conn), "relay");
    assert_memory_equal(w.a.accepted_pk, w.b.pk, 32);

    /* b closes, and its CONNECTION_CLOSE is lost. */
    pb.drop_next = 1;
    ds_quic_conn_close(w.b.conn, DS_QUIC_APP_OK, "bye");
    assert_true(run(&w, g_b_closed, 2000));
    assert_int_equal(w.b.close_err, 0);
    assert_int_equal(pb.dropped, 1);
    /* a keeps sending; b, in its closing period, sends CONNECTION_CLOSE
     * again, so a learns of the close long before its idle timeout.  (A
     * packet a sent on its own, an ACK, may already have drawn that
     * second CONNECTION_CLOSE while b's close was reported, on a loaded
     * machine: then a is closed already, for the same reason.) */
    if (!w.a.closed) {
        int64_t sid;
        assert_int_equal(ds_quic_stream_open(w.a.conn, &sid), 0);
        assert_int_equal(ds_quic_stream_write(w.a.conn, sid, (const uint8_t *)"ping", 4, 0), 0);
    }
    assert_true(run(&w, g_a_closed, 2000));
    assert_int_equal(w.a.close_err, 0);
    assert_non_null(strstr(w.a.reason, "bye"));
    world_free(&w);
}

/* A path that is often full: sends resume from ds_quic_path_writable. */
static void relay_path_backpressure(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.to_send = w.b.to_send = 1024 * 1024;
    static mem_path pa, pb;
    relay_dial(&w, &pa, &pb, 8);
    assert_true(run(&w, g_transfer, 20000));
    assert_false(w.a.bad_data);
    assert_false(w.b.bad_data);
    assert_int_equal(w.a.received, 1024 * 1024);
    assert_int_equal(w.b.received, 1024 * 1024);
    assert_true(pa.refusals > 0 && pb.refusals > 0);
    assert_int_equal(pa.dropped + pb.dropped, 0);
    world_free(&w);
}

/* ---- Stateless reset ----------------------------------------------------- */

static mem_path *g_watch;      /* g_delivered: this path received a datagram more */
static int g_watch_from;
static int g_delivered(world *w) { (void)w; return g_watch->delivered > g_watch_from; }

/* Closes and frees one endpoint of the world (as world_free does). */
static void close_one(world *w, ds_quic_endpoint *ep)
{
    w->ep_done = 0;
    w->timed_out = 0;
    ds_quic_endpoint_close(ep, ep_done, w);
    uv_timer_start(&w->guard, guard_cb, 3000, 0);
    while (w->ep_done == 0 && !w->timed_out)
        uv_run(&w->loop, UV_RUN_ONCE);
    uv_timer_stop(&w->guard);
    assert_int_equal(w->ep_done, 1);
    ds_quic_endpoint_free(ep);
    w->ep_done = 0;
}

/* Listener a "crashes": its endpoint goes away and every packet it sends
 * while closing is lost, so b still holds the connection.  A new process
 * of a (key seed |seed2|: 1 is the same identity) then listens at the
 * same address, and b sends a packet there (if |write|, stream data;
 * else only what its keep-alive sends). */
static void restart_listener(world *w, mem_path *pa, mem_path *pa2, mem_path *pb, uint8_t seed2,
                             int write)
{
    pa->drop_next = 1 << 30;
    close_one(w, w->a.ep);
    assert_int_equal(w->b.closed, 0); /* b heard nothing */

    memset(&w->a, 0, sizeof w->a);
    w->a.w = w;
    w->a.alpn = "ds-test/1";
    make_key(&w->a, seed2);
    peer_start(w, &w->a);
    mem_init(w, pa2, pb, 1, 1);       /* the same virtual address as pa */
    pb->peer = pa2;
    assert_int_equal(ds_quic_endpoint_add_path(w->a.ep, &pa2->path), 0);

    g_watch = pb;
    g_watch_from = pb->delivered;
    if (!write)
        return;
    int64_t sid;
    assert_int_equal(ds_quic_stream_open(w->b.conn, &sid), 0);
    assert_int_equal(ds_quic_stream_write(w->b.conn, sid, (const uint8_t *)"ping", 4, 0), 0);
}

static int g_b_quiet(world *w) { return w->b.conn && ds_quic_conn_in_flight(w->b.conn) == 0; }

/* The listener restarts (same identity) and b, which sends stream data
 * if |write| or else only what its keep-alive of |keep_alive_ms| sends,
 * must end the connection on the new process's reset, saying why. */
static void expect_reset(int write, uint32_t keep_alive_ms)
{
    world w;
    world_init(&w);
    w.a.idle_ms = w.b.idle_ms = 30000;
    w.b.keep_alive_ms = keep_alive_ms;
    static mem_path pa, pa2, pb;
    relay_dial(&w, &pa, &pb, 0);
    assert_true(run(&w, g_established, 5000));
    if (!write) /* b has nothing left to retransmit: only the keep-alive can send */
        assert_true(run(&w, g_b_quiet, 5000));
    restart_listener(&w, &pa, &pa2, &pb, 1, write);
    assert_true(run(&w, g_b_closed, 10000));
    assert_int_equal(w.b.close_err, DS_ERR_IO);
    assert_non_null(strstr(w.b.reason, "stateless reset"));
    assert_true(ds_quic_endpoint_resets_sent(w.a.ep) >= 1);
    assert_int_equal(w.a.accepted, 0);
    world_free(&w);
}

/* The restarted listener answers b's packet with a stateless reset, and
 * b ends the connection at once (not at its 30 s idle timeout).  The
 * reset key comes from the identity, so the new process's reset is one
 * b accepts. */
static void stateless_reset_after_restart(void **state)
{
    (void)state;
    expect_reset(1, 0);
}

/* A dialer with a keep-alive that has nothing to send still learns of
 * the restart: its PING draws the reset.  Without the keep-alive it
 * would wait for its idle timeout (30 s here). */
static void keep_alive_draws_the_reset(void **state)
{
    (void)state;
    expect_reset(0, 100);
}

/* A different node at that address (another identity) also answers with
 * a reset, but its token is not the one b holds: b ignores it and keeps
 * the connection. */
static void stateless_reset_from_another_node_ignored(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.idle_ms = w.b.idle_ms = 30000;
    static mem_path pa, pa2, pb;
    relay_dial(&w, &pa, &pb, 0);
    assert_true(run(&w, g_established, 5000));
    restart_listener(&w, &pa, &pa2, &pb, 3, 1);
    assert_true(run(&w, g_delivered, 5000)); /* b received a reset */
    assert_true(ds_quic_endpoint_resets_sent(w.a.ep) >= 1);
    /* A connection b gave up on would report it from a timer due at once. */
    assert_false(run(&w, g_b_closed, 300));
    assert_int_equal(w.b.closed, 0);
    world_free(&w);
}

/* An endpoint with identity seed |seed| on a listening in-memory path
 * whose datagrams go nowhere (recorded only). */
static ds_quic_endpoint *lone_endpoint(world *w, mem_path *m, mem_path *sink, uint8_t seed)
{
    uint8_t pk[32], sk[64], s32[32];
    memset(s32, seed, sizeof s32);
    crypto_sign_seed_keypair(pk, sk, s32);
    ds_quic_config cfg = {.identity_sk = sk, .alpn = "ds-test/1"};
    ds_quic_endpoint *ep;
    assert_int_equal(ds_quic_endpoint_new(&ep, &w->loop, &cfg, &CBS, &w->a), 0);
    mem_init(w, m, sink, 1, 1);
    memset(sink, 0, sizeof *sink);
    sink->path.closing = 1;
    assert_int_equal(ds_quic_endpoint_add_path(ep, &m->path), 0);
    return ep;
}

/* Sends |ep| a short-header packet of |len| bytes for CID |cid_byte|*18;
 * returns 1 if a reset went out, its token in |token|. */
static int poke(ds_quic_endpoint *ep, mem_path *m, size_t len, uint8_t cid_byte,
                uint8_t token[16])
{
    uint8_t pkt[256];
    memset(pkt, 0x5a, len);
    pkt[0] = 0x40;                    /* short header, fixed bit */
    memset(pkt + 1, cid_byte, 18);    /* a connection ID of our length */
    struct sockaddr_in from = {0};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(0x0aff0002u);
    from.sin_port = htons(1000);
    int before = m->sent;
    ds_quic_endpoint_recv(ep, &m->path, (const struct sockaddr *)&from, pkt, len, len);
    if (m->sent == before)
        return 0;
    assert_int_equal(m->sent, before + 1);
    assert_true(m->last_len >= 21 && m->last_len < len);
    assert_int_equal(m->last[0] & 0xc0, 0x40); /* looks like a short-header packet */
    if (token)
        memcpy(token, m->last + m->last_len - 16, 16);
    return 1;
}

/* Which packets get a reset, how long it is, what its token depends on,
 * and how many go out per second. */
static void stateless_reset_rules(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    static mem_path m1, s1, m2, s2, m3, s3;
    ds_quic_endpoint *e1 = lone_endpoint(&w, &m1, &s1, 1);
    uint8_t t1[16], t2[16], t3[16], t4[16];

    assert_false(poke(e1, &m1, 35, 7, NULL)); /* too short for our CID and a tag */
    assert_true(poke(e1, &m1, 36, 7, t1));    /* the smallest that gets one */
    assert_int_equal(m1.last_len, 35);        /* one byte shorter: no reset loops */
    assert_true(poke(e1, &m1, 200, 7, t2));   /* a big one: the reset stays small */
    assert_int_equal(m1.last_len, 40);
    assert_memory_equal(t1, t2, 16);          /* same CID, same token */
    assert_true(poke(e1, &m1, 60, 8, t3));
    assert_memory_not_equal(t1, t3, 16);      /* another CID, another token */
    /* A long header for no connection (an Initial's first byte) is no
     * reset case: this path would accept it, but it is too short. */
    uint8_t lh[60];
    memset(lh, 0, sizeof lh);
    lh[0] = 0xc0;
    struct sockaddr_in from = {0};
    from.sin_family = AF_INET;
    ds_quic_endpoint_recv(e1, &m1.path, (const struct sockaddr *)&from, lh, sizeof lh,
                          sizeof lh);
    assert_int_equal(m1.sent, 3);
    assert_int_equal(ds_quic_endpoint_resets_sent(e1), 3);

    /* Another process of the same identity makes the same token; another
     * identity does not. */
    ds_quic_endpoint *e2 = lone_endpoint(&w, &m2, &s2, 1);
    assert_true(poke(e2, &m2, 60, 7, t4));
    assert_memory_equal(t1, t4, 16);
    ds_quic_endpoint *e3 = lone_endpoint(&w, &m3, &s3, 3);
    assert_true(poke(e3, &m3, 60, 7, t4));
    assert_memory_not_equal(t1, t4, 16);

    /* At most 100 a second: of 250 packets in a row, far fewer than 250
     * are answered (100, or 200 if a second ended in between). */
    int n = 0;
    for (int i = 0; i < 250; i++)
        n += poke(e2, &m2, 60, (uint8_t)i, NULL);
    assert_true(n >= 99 && n < 250);

    close_one(&w, e1);
    close_one(&w, e2);
    close_one(&w, e3);
    world_free(&w);
}

/* ---- Retry (address validation) ----------------------------------------------- */

/* A listener that always asks for a Retry: the dialer answers it, and the
 * connection works as any other (RFC 9000's original/retry CID checks
 * in the transport parameters pass). */
static void retry_then_transfer(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.retry_always = 1;
    w.a.to_send = w.b.to_send = 256 * 1024;
    assert_int_equal(start_pair(&w, "127.0.0.1", NULL), 0);
    assert_true(run(&w, g_transfer, 20000));
    assert_false(w.a.bad_data || w.b.bad_data);
    assert_int_equal(w.a.received, 256 * 1024);
    assert_int_equal(w.b.received, 256 * 1024);
    assert_int_equal(ds_quic_endpoint_retries_sent(w.a.ep), 1);
    assert_int_equal(w.a.accepted, 1);
    assert_memory_equal(w.a.accepted_pk, w.b.pk, 32);
    world_free(&w);
}

static int g_captured(world *w) { (void)w; return g_watch->cap_len > 0; }

/* A Retry token is sealed to the dialer's address: b's Initial carrying
 * its token is taken off the wire and sent to the listener from another
 * address: no connection, a small CONNECTION_CLOSE (INVALID_TOKEN).  The
 * same datagram from b's own address makes the connection. */
static void retry_token_bound_to_address(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.retry_always = 1;
    static mem_path pa, pb;
    relay_dial(&w, &pa, &pb, 0);
    pb.capture_token = 1;            /* before the loop runs: nothing sent yet */
    g_watch = &pb;
    assert_true(run(&w, g_captured, 5000));
    assert_int_equal(ds_quic_endpoint_retries_sent(w.a.ep), 1);
    assert_true(pb.cap_len >= 1200);
    assert_int_equal(ds_quic_endpoint_conn_count(w.a.ep), 0);
    int sent = pa.sent;

    struct sockaddr_in other = {0};
    other.sin_family = AF_INET;
    other.sin_addr.s_addr = htonl(0x0aff0009u);
    other.sin_port = htons(1000);
    pa.drop_next = 1;                /* the answer goes nowhere */
    ds_quic_endpoint_recv(w.a.ep, &pa.path, (const struct sockaddr *)&other, pb.cap, pb.cap_len,
                          pb.cap_len);
    assert_int_equal(ds_quic_endpoint_conn_count(w.a.ep), 0);
    assert_int_equal(pa.sent, sent + 1);        /* the CONNECTION_CLOSE */
    assert_true(pa.last_len < 200);             /* small: no amplification */
    assert_int_equal(ds_quic_endpoint_retries_sent(w.a.ep), 1);

    ds_quic_endpoint_recv(w.a.ep, &pa.path, (const struct sockaddr *)&pb.path.local, pb.cap,
                          pb.cap_len, pb.cap_len);
    assert_int_equal(ds_quic_endpoint_conn_count(w.a.ep), 1);
    assert_true(run(&w, g_established, 5000));
    assert_int_equal(ds_quic_endpoint_retries_sent(w.a.ep), 1);
    world_free(&w);
}

static int g_load(world *w)
{
    return ds_quic_endpoint_conn_count(w->a.ep) >= 32 && ds_quic_endpoint_retries_sent(w->a.ep) > 0;
}

/* Without retry_always, Retry starts once 32 handshakes are under way:
 * here the listener's answers are all lost, so the first 32 dials stay
 * half-open and the 33rd is asked to prove its address. */
static void retry_under_load(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    static mem_path pa, pb;
    relay_dial(&w, &pa, &pb, 0);
    pa.drop_next = 1 << 30;
    for (int i = 1; i < 33; i++) {
        ds_quic_conn *c;
        assert_int_equal(ds_quic_connect_via(w.b.ep, &pb.path, (struct sockaddr *)&pa.path.local,
                                             w.a.pk, &c), 0);
    }
    assert_true(run(&w, g_load, 5000));
    assert_int_equal(ds_quic_endpoint_conn_count(w.a.ep), 32);
    assert_int_equal(w.a.accepted, 0);
    world_free(&w);
}

static int g_streams(world *w) { return w->b.streams_left == 0 && w->b.streams_done > 0 && w->b.streams_done == 150; }

/* More streams than the initial limit (100), one after the other: the
 * limit is extended as the peer's streams close. */
static void many_streams(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.echo_fin = 1;
    assert_int_equal(start_pair(&w, "127.0.0.1", NULL), 0);
    assert_true(run(&w, g_established, 5000));
    w.b.streams_left = 149;
    int64_t sid;
    assert_int_equal(ds_quic_stream_open(w.b.conn, &sid), 0);
    assert_int_equal(ds_quic_stream_write(w.b.conn, sid, (const uint8_t *)"x", 1, 1), 0);
    assert_true(run(&w, g_streams, 10000));
    assert_int_equal(w.a.stream_opens, 150);
    assert_int_equal(w.a.closed + w.b.closed, 0);
    world_free(&w);
}

/* ---- Tests ---------------------------------------------------------------- */

static void handshake_and_pinning(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    assert_int_equal(start_pair(&w, "127.0.0.1", NULL), 0);
    assert_true(run(&w, g_established, 5000));
    /* The listener learned the dialer's key; the dialer has the pinned one. */
    assert_memory_equal(w.a.accepted_pk, w.b.pk, 32);
    assert_non_null(ds_quic_conn_peer_pk(w.b.conn));
    assert_memory_equal(ds_quic_conn_peer_pk(w.b.conn), w.a.pk, 32);
    assert_memory_equal(ds_quic_conn_peer_pk(w.a.conn), w.b.pk, 32);
    assert_string_equal(ds_quic_conn_path_kind(w.b.conn), "direct");
    assert_true(ds_quic_conn_is_dialer(w.b.conn));
    assert_false(ds_quic_conn_is_dialer(w.a.conn));
    assert_true(ds_quic_conn_established(w.a.conn));
    struct sockaddr_storage rem, loc;
    assert_int_equal(ds_quic_conn_remote(w.b.conn, &rem), 0);
    assert_int_equal(ds_quic_endpoint_addr(w.a.ep, &loc), 0);
    assert_int_equal(((struct sockaddr_in *)&rem)->sin_port, ((struct sockaddr_in *)&loc)->sin_port);
    assert_int_equal(w.a.closed + w.b.closed, 0);
    world_free(&w);
    /* Closing the endpoints reported both connections closed. */
    assert_int_equal(w.a.closed, 1);
    assert_int_equal(w.b.closed, 1);
}

static void pinning_failure(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    uint8_t other[32];
    memset(other, 0x5a, sizeof other);
    assert_int_equal(start_pair(&w, "127.0.0.1", other), 0);
    assert_true(run(&w, g_both_closed, 5000));
    assert_int_equal(w.b.close_err, DS_ERR_CRYPTO);
    assert_int_equal(w.b.connected, 0);
    assert_int_equal(w.a.accepted, 0);
    assert_int_equal(w.a.received + w.b.received, 0);
    assert_int_equal(w.a.stream_opens, 0);
    world_free(&w);
    assert_int_equal(w.b.closed, 1);
}

static void listener_rejects(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.reject = 1;
    assert_int_equal(start_pair(&w, "127.0.0.1", NULL), 0);
    assert_true(run(&w, g_both_closed, 5000));
    assert_int_equal(w.a.accepted, 1);
    assert_int_equal(w.b.connected, 0);
    assert_int_equal(w.b.close_err, DS_ERR_UNAUTHORIZED);
    assert_int_equal(w.a.close_err, DS_ERR_UNAUTHORIZED);
    world_free(&w);
}

static void alpn_mismatch(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.b.alpn = "ds-other/1";
    assert_int_equal(start_pair(&w, "127.0.0.1", NULL), 0);
    assert_true(run(&w, g_both_closed, 5000));
    assert_int_equal(w.b.close_err, DS_ERR_PROTO);
    assert_int_equal(w.a.close_err, DS_ERR_PROTO);
    assert_int_equal(w.a.accepted, 0);
    assert_int_equal(w.b.connected, 0);
    world_free(&w);
}


static void transfer_both_ways(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.to_send = XFER;
    w.b.to_send = XFER;
    assert_int_equal(start_pair(&w, "127.0.0.1", NULL), 0);
    assert_true(run(&w, g_transfer, 20000));
    assert_false(w.a.bad_data);
    assert_false(w.b.bad_data);
    assert_int_equal(w.a.received, XFER);
    assert_int_equal(w.b.received, XFER);
    assert_true(w.a.fin_seen);
    assert_true(w.b.fin_seen);
    assert_int_equal(w.a.stream_opens, 1);
    assert_int_equal(w.a.closed + w.b.closed, 0);
    world_free(&w);
}

static void idle_timeout(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.idle_ms = w.b.idle_ms = 300;
    assert_int_equal(start_pair(&w, "127.0.0.1", NULL), 0);
    assert_true(run(&w, g_established, 5000));
    assert_true(run(&w, g_both_closed, 5000));
    assert_int_equal(w.a.close_err, DS_ERR_TIMEOUT);
    assert_int_equal(w.b.close_err, DS_ERR_TIMEOUT);
    world_free(&w);
}

static void clean_close(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    assert_int_equal(start_pair(&w, "127.0.0.1", NULL), 0);
    assert_true(run(&w, g_established, 5000));
    ds_quic_conn_close(w.b.conn, DS_QUIC_APP_OK, "bye");
    assert_true(run(&w, g_both_closed, 5000));
    assert_int_equal(w.b.close_err, 0);
    assert_int_equal(w.a.close_err, 0);
    assert_non_null(strstr(w.a.reason, "bye"));
    world_free(&w);
    assert_int_equal(w.a.closed, 1);
    assert_int_equal(w.b.closed, 1);
}

/* The application close codes reach the other side as their errors:
 * a timeout or an internal failure is never taken for a refusal. */
static void close_codes(void **state)
{
    (void)state;
    static const struct { uint64_t code; int err; } cases[] = {
        { DS_QUIC_APP_TIMEOUT, DS_ERR_TIMEOUT },
        { DS_QUIC_APP_INTERNAL, DS_ERR_IO },
        { DS_QUIC_APP_UNAUTHORIZED, DS_ERR_UNAUTHORIZED },
        { DS_QUIC_APP_PROTO, DS_ERR_PROTO },
        { 0x1234, DS_ERR_PROTO },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        world w;
        world_init(&w);
        assert_int_equal(start_pair(&w, "127.0.0.1", NULL), 0);
        assert_true(run(&w, g_established, 5000));
        ds_quic_conn_close(w.b.conn, cases[i].code, "why");
        assert_true(run(&w, g_both_closed, 5000));
        assert_int_equal(w.b.close_err, cases[i].err);   /* the closer's on_closed says it too */
        assert_int_equal(w.a.close_err, cases[i].err);
        assert_non_null(strstr(w.a.reason, "why"));
        world_free(&w);
    }
}

static void ipv6_loopback(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    if (start_pair(&w, "::1", NULL) != 0) {
        printf("skipped: ::1 is not available here\n");
        world_free(&w);
        skip();
    }
    assert_true(run(&w, g_established, 5000));
    struct sockaddr_storage rem;
    assert_int_equal(ds_quic_conn_remote(w.b.conn, &rem), 0);
    assert_int_equal(rem.ss_family, AF_INET6);
    assert_memory_equal(w.a.accepted_pk, w.b.pk, 32);
    world_free(&w);
}

/* A loopback port of |family| that was just free: bind, read it, close
 * (or keep it bound when |keep|, returning the open socket in *fd). */
static int free_port(int family, struct sockaddr_storage *ss, int keep, int *fd)
{
    memset(ss, 0, sizeof *ss);
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        sl = sizeof *sin6;
    }
    int s = socket(family, SOCK_DGRAM, 0);
    if (s < 0)
        return -1;
    if (bind(s, (struct sockaddr *)ss, sl) != 0 || getsockname(s, (struct sockaddr *)ss, &sl) != 0) {
        close(s);
        return -1;
    }
    if (keep)
        *fd = s;
    else
        close(s);
    return 0;
}

/* A bound socket that never answers: the dial ends at its handshake
 * timeout (no ICMP comes back from an open port). */
static void nobody_answering(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.b.hs_ms = 400;
    peer_start(&w, &w.b);
    struct sockaddr_storage ss;
    int fd = -1;
    assert_int_equal(free_port(AF_INET, &ss, 1, &fd), 0);
    assert_int_equal(ds_quic_connect(w.b.ep, (struct sockaddr *)&ss, w.a.pk, &w.b.conn), 0);
    assert_true(run(&w, g_b_closed, 5000));
    assert_int_equal(w.b.close_err, DS_ERR_TIMEOUT);
    assert_int_equal(w.b.connected, 0);
    close(fd);
    world_free(&w);
}

/* A closed port answers with ICMP port unreachable: the dial ends with
 * DS_ERR_UNREACHABLE long before its (30 s) handshake timeout, and the
 * dialing endpoint keeps working afterwards (libuv stops a poll handle
 * on POLLERR; the path must start it again). */
static void nobody_listening_family(int family)
{
    world w;
    world_init(&w);
    w.b.hs_ms = 30000;
    peer_start(&w, &w.a);
    peer_start(&w, &w.b);
    struct sockaddr_storage ss;
    if (free_port(family, &ss, 0, NULL) != 0) {
        printf("skipped: no loopback for address family %d here\n", family);
        world_free(&w);
        skip();
    }
    assert_int_equal(ds_quic_connect(w.b.ep, (struct sockaddr *)&ss, w.a.pk, &w.b.conn), 0);
    assert_true(run(&w, g_b_closed, 10000));
    assert_int_equal(w.b.close_err, DS_ERR_UNREACHABLE);
    assert_string_equal(w.b.reason, "nothing listens on that port");
    assert_int_equal(w.b.connected, 0);
    /* The same endpoint now dials a real listener. */
    assert_int_equal(ds_quic_endpoint_bind(w.a.ep, family == AF_INET ? "127.0.0.1" : "::1", 0), 0);
    assert_int_equal(ds_quic_endpoint_addr(w.a.ep, &ss), 0);
    assert_int_equal(ds_quic_connect(w.b.ep, (struct sockaddr *)&ss, w.a.pk, &w.b.conn), 0);
    assert_true(run(&w, g_established, 5000));
    world_free(&w);
}

static void nobody_listening(void **state)
{
    (void)state;
    nobody_listening_family(AF_INET);
}

static void nobody_listening_v6(void **state)
{
    (void)state;
    nobody_listening_family(AF_INET6);
}

static int g_b_delivered(world *w) { return w->a.fin_seen || w->a.bad_data || w->b.closed; }
static void ep2_done(void *ud) { *(int *)ud = 1; }

/* An "unreachable" report ends only a dial that has heard nothing: a
 * connection that got packets from its peer ignores it (ICMP can be
 * forged), and so does a dial to another address. */
static void unreachable_spares_live_connections(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    w.a.idle_ms = w.b.idle_ms = 10000;
    static mem_path pa, pb, pc;
    relay_dial(&w, &pa, &pb, 0);
    assert_true(run(&w, g_established, 5000));
    ds_quic_endpoint_unreachable(w.b.ep, &pb.path, (struct sockaddr *)&pa.path.local, "forged");
    /* Still open: a transfer after the report goes through. */
    w.b.to_send = 65536;
    assert_int_equal(ds_quic_stream_open(w.b.conn, &w.b.sid), 0);
    w.b.have_sid = 1;
    pump(&w.b);
    assert_true(run(&w, g_b_delivered, 5000));
    assert_int_equal(w.b.closed, 0);
    assert_false(w.a.bad_data);
    assert_int_equal(w.a.received, 65536);

    /* A second dialer whose datagrams come back to itself (nobody
     * answers): a report for another address leaves its dial alone, one
     * for the address it dials ends it. */
    peer p2;
    memset(&p2, 0, sizeof p2);
    p2.w = &w;
    ds_quic_endpoint *e2;
    ds_quic_config cfg = {.identity_sk = w.b.sk, .alpn = w.b.alpn, .handshake_timeout_ms = 30000};
    assert_int_equal(ds_quic_endpoint_new(&e2, &w.loop, &cfg, &CBS, &p2), 0);
    mem_init(&w, &pc, &pc, 3, 0);
    assert_int_equal(ds_quic_endpoint_add_path(e2, &pc.path), 0);
    struct sockaddr_in nowhere = {0};
    nowhere.sin_family = AF_INET;
    nowhere.sin_addr.s_addr = htonl(0x0aff0004u);
    nowhere.sin_port = htons(1000);
    assert_int_equal(ds_quic_connect_via(e2, &pc.path, (struct sockaddr *)&nowhere, w.a.pk, &p2.conn),
                     0);
    ds_quic_endpoint_unreachable(e2, &pc.path, (struct sockaddr *)&pa.path.local, "other");
    for (int i = 0; i < 20; i++)
        uv_run(&w.loop, UV_RUN_NOWAIT);
    assert_int_equal(p2.closed, 0);
    ds_quic_endpoint_unreachable(e2, &pc.path, (struct sockaddr *)&nowhere,
                                 "nothing listens on that port");
    for (int i = 0; i < 1000 && !p2.closed; i++)
        uv_run(&w.loop, UV_RUN_ONCE);
    assert_int_equal(p2.closed, 1);
    assert_int_equal(p2.close_err, DS_ERR_UNREACHABLE);
    assert_string_equal(p2.reason, "nothing listens on that port");
    assert_int_equal(w.b.closed, 0);
    int done = 0;
    ds_quic_endpoint_close(e2, ep2_done, &done);
    for (int i = 0; i < 1000 && !done; i++)
        uv_run(&w.loop, UV_RUN_ONCE);
    assert_true(done);
    ds_quic_endpoint_free(e2);
    world_free(&w);
}

static void constructor_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    uint8_t pk[32], sk[64], seed[32];
    memset(seed, 7, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    ds_quic_endpoint *ep = (ds_quic_endpoint *)&loop; /* must be reset to NULL */
    ds_quic_config cfg = {.identity_sk = sk, .alpn = "ds-test/1"};
    /* A secret key whose public half does not belong to its seed. */
    sk[40] ^= 1;
    assert_int_equal(ds_quic_endpoint_new(&ep, &loop, &cfg, &CBS, NULL), DS_ERR_CRYPTO);
    assert_null(ep);
    sk[40] ^= 1;
    cfg.alpn = NULL;
    assert_int_equal(ds_quic_endpoint_new(&ep, &loop, &cfg, &CBS, NULL), DS_ERR_INVALID);
    char longalpn[300];
    memset(longalpn, 'a', sizeof longalpn - 1);
    longalpn[sizeof longalpn - 1] = 0;
    cfg.alpn = longalpn;
    assert_int_equal(ds_quic_endpoint_new(&ep, &loop, &cfg, &CBS, NULL), DS_ERR_INVALID);
    cfg.alpn = "";
    assert_int_equal(ds_quic_endpoint_new(&ep, &loop, &cfg, &CBS, NULL), DS_ERR_INVALID);
    cfg.identity_sk = NULL;
    cfg.alpn = "ds-test/1";
    assert_int_equal(ds_quic_endpoint_new(&ep, &loop, &cfg, &CBS, NULL), DS_ERR_INVALID);
    /* A good one, never bound: freed without a close. */
    cfg.identity_sk = sk;
    assert_int_equal(ds_quic_endpoint_new(&ep, &loop, &cfg, &CBS, NULL), 0);
    assert_int_equal(ds_quic_endpoint_bind(ep, "not-an-address", 0), DS_ERR_INVALID);
    ds_quic_endpoint_free(ep);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handshake_and_pinning), cmocka_unit_test(pinning_failure),
        cmocka_unit_test(listener_rejects),      cmocka_unit_test(alpn_mismatch),
        cmocka_unit_test(transfer_both_ways),    cmocka_unit_test(idle_timeout),
        cmocka_unit_test(clean_close), cmocka_unit_test(close_codes),           cmocka_unit_test(ipv6_loopback),
        cmocka_unit_test(nobody_answering),      cmocka_unit_test(nobody_listening),
        cmocka_unit_test(nobody_listening_v6),   cmocka_unit_test(unreachable_spares_live_connections),
        cmocka_unit_test(constructor_errors),
        cmocka_unit_test(relay_path_and_closing_period),
        cmocka_unit_test(relay_path_backpressure),
        cmocka_unit_test(many_streams),
        cmocka_unit_test(stateless_reset_after_restart),
        cmocka_unit_test(stateless_reset_from_another_node_ignored),
        cmocka_unit_test(keep_alive_draws_the_reset),
        cmocka_unit_test(stateless_reset_rules),
        cmocka_unit_test(retry_then_transfer),
        cmocka_unit_test(retry_token_bound_to_address),
        cmocka_unit_test(retry_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
