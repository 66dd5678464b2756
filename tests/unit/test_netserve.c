/*
 * test_netserve.c - the daemon's sync service (daemon/netsync.c, the
 * publisher side) over real loopback QUIC, driven by a subscriber written
 * here frame by frame, so that it can do what `ds peer sync` never does:
 * hold a sync open half-way through its request, open more syncs than
 * the publisher allows, speak another protocol version, announce an
 * oversized frame.  Each case must end with the spec's ERROR frame and
 * the end of the stream, never a hang, and must not disturb a sync that
 * is in order.  One uv loop per test, bounded by a guard timer.
 */
#include <msgpack.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "ds/error.h"
#include "core/frame.h"
#include "core/identity.h"
#include "core/sync.h"
#include "core/syncproto.h"
#include "daemon/netsync.h"
#include "daemon/ops.h"
#include "daemon/peers.h"
#include "io/quic.h"

#define MAX_STREAMS 4
#define SHARED_NODES 250     /* three pages of 100 */
#define GUARD_MS 20000

typedef struct strm {
    int64_t sid;
    int open;
    ds_frame_dec dec;
    int fin;                 /* the publisher ended the stream */
    int frame_error;         /* its frames did not decode */
    int pages;
    size_t nodes;
    int last_page;           /* a page with has_more false arrived */
    char code[32];           /* of an ERROR frame */
    char message[256];
} strm;

typedef struct world {
    uv_loop_t loop;
    uv_timer_t guard;
    uv_check_t check;        /* the goal is looked at after every loop turn */
    int timed_out;
    ds_ctx ctx;
    ds_netsync *ns;
    ds_quic_endpoint *ep;    /* the subscriber's */
    ds_quic_conn *conn;
    int connected, closed, close_err;
    strm s[MAX_STREAMS];
    int wait_a, wait_b;      /* streams wait_ended waits for (-1: none) */
    int (*goal)(struct world *w);
} world;

static ds_identity alice, bob;

static int64_t fake_now(void)
{
    return 1700000000000;
}

static void fake_random(void *buf, size_t len)
{
    ds_test_random(buf, len);
}

static void identity(ds_identity *id, uint8_t seed_byte)
{
    uint8_t seed[DS_IDENTITY_SEED_LEN];
    memset(seed, seed_byte, sizeof seed);
    assert_int_equal(ds_identity_from_seed(id, seed), 0);
}

/* Alice's home: her identity, bob as a peer (publish as given), the
 * shared project /work/shared with SHARED_NODES nodes and one private
 * node elsewhere. */
static void alice_home(world *w, const char *home, int bob_publish)
{
    char err[256] = "";
    assert_int_equal(ds_peers_identity_save(home, &alice, 0, err, sizeof err), 0);
    ds_peers_cfg pc = {0};
    assert_int_equal(ds_peers_cfg_load(home, &pc, err, sizeof err), 0);
    assert_int_equal(ds_peers_cfg_set_self(&pc, alice.node_id), 0);
    assert_int_equal(ds_peers_upsert(&pc, bob.node_id, "bob", 1, bob_publish, NULL), 0);
    assert_int_equal(ds_peers_cfg_save(home, &pc, err, sizeof err), 0);
    ds_peers_cfg_free(&pc);
    ds_share_cfg sc = {0};
    assert_int_equal(ds_share_cfg_load(home, &sc, err, sizeof err), 0);
    assert_int_equal(ds_share_cfg_add(&sc, "/work/shared"), 0);
    assert_int_equal(ds_share_cfg_save(home, &sc, err, sizeof err), 0);
    ds_share_cfg_free(&sc);

    assert_int_equal(ds_ctx_init(&w->ctx, home, fake_now, fake_random), 0);
    ds_store *st = NULL;
    assert_int_equal(ds_ctx_store(&w->ctx, 1, &st), 0);
    for (int i = 0; i <= SHARED_NODES; i++) {
        char text[64];
        ds_node n;
        snprintf(text, sizeof text, "%s note %d", i < SHARED_NODES ? "shared" : "private", i);
        ds_test_make_node(&n, text, i < SHARED_NODES ? "/work/shared/app" : "/work/private");
        assert_int_equal(ds_store_put(st, &n), 0);
        ds_node_free(&n);
    }
}

static void check_goal(world *w)
{
    if (w->goal && w->goal(w))
        uv_stop(&w->loop);
}

static strm *find(world *w, int64_t sid)
{
    for (int i = 0; i < MAX_STREAMS; i++)
        if (w->s[i].open && w->s[i].sid == sid)
            return &w->s[i];
    return NULL;
}

static void on_frame(strm *s, const uint8_t *f, size_t fl)
{
    ds_msg m;
    if (ds_msg_decode(f, fl, &m) != 0) {
        s->frame_error = 1;
        return;
    }
    if (m.type == DS_MSG_ERROR) {
        snprintf(s->code, sizeof s->code, "%s", m.code);
        snprintf(s->message, sizeof s->message, "%s", m.message ? m.message : "");
    } else if (m.type == DS_MSG_SYNC_RESPONSE) {
        s->pages++;
        s->nodes += m.nnodes;
        if (!m.has_more)
            s->last_page = 1;
    } else {
        s->frame_error = 1;
    }
    ds_msg_free(&m);
}

static void on_stream_data(ds_quic_conn *c, int64_t sid, const uint8_t *data, size_t len, int fin,
                           void *ud)
{
    world *w = ud;
    (void)c;
    strm *s = find(w, sid);
    assert_non_null(s);
    size_t off = 0;
    while (off < len && !s->frame_error) {
        size_t used;
        const uint8_t *f;
        size_t fl;
        if (ds_frame_dec_feed(&s->dec, data + off, len - off, &used, &f, &fl) != 0) {
            s->frame_error = 1;
            break;
        }
        off += used;
        if (f)
            on_frame(s, f, fl);
    }
    if (fin)
        s->fin = 1;
    check_goal(w);
}

static void on_connected(ds_quic_conn *c, void *ud)
{
    world *w = ud;
    w->conn = c;
    w->connected = 1;
    check_goal(w);
}

static void on_closed(ds_quic_conn *c, int err, const char *reason, void *ud)
{
    world *w = ud;
    (void)reason;
    if (c == w->conn)
        w->conn = NULL;
    w->closed = 1;
    w->close_err = err;
    check_goal(w);
}

static void on_guard(uv_timer_t *t)
{
    world *w = t->data;
    w->timed_out = 1;
    uv_stop(&w->loop);
}

static void on_check(uv_check_t *h)
{
    check_goal(h->data);
}

/* Runs the loop until |goal| holds (or the guard fires: a failure). */
static void run_until(world *w, int (*goal)(world *w))
{
    w->goal = goal;
    w->timed_out = 0;
    if (goal(w))
        return;
    uv_timer_start(&w->guard, on_guard, GUARD_MS, 0);
    uv_check_start(&w->check, on_check);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_check_stop(&w->check);
    uv_timer_stop(&w->guard);
    w->goal = NULL;
    assert_false(w->timed_out);
}

static int is_connected(world *w)
{
    return w->connected || w->closed;
}

/* A UDP socket bound to 127.0.0.1 on a port the system picks; *port
 * receives it.  |keep|: the socket stays open (the port is busy). */
static int udp_port(uint16_t *port, int keep)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sin;
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    *port = ntohs(sin.sin_port);
    if (!keep) {
        close(fd);
        return -1;
    }
    return fd;
}

static int port_free(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(port);
    int ok = bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
    close(fd);
    return ok;
}

/* Starts alice's sync service (listening on 127.0.0.1, port chosen by
 * the system) and connects to it as bob. */
static void world_start(world *w, int bob_publish, uint32_t max_concurrent)
{
    memset(w, 0, sizeof *w);
    identity(&alice, 0xa1);
    identity(&bob, 0xb0);
    alice_home(w, ds_test_tmpdir(), bob_publish);
    assert_int_equal(uv_loop_init(&w->loop), 0);
    assert_int_equal(uv_timer_init(&w->loop, &w->guard), 0);
    w->guard.data = w;
    assert_int_equal(uv_check_init(&w->loop, &w->check), 0);
    w->check.data = w;

    /* A port the system just handed out (listen addresses need one). */
    uint16_t port;
    udp_port(&port, 0);
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(port);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)port);

    ds_netsync_opts o = {0};
    o.listen[0] = listen;
    o.nlisten = 1;
    o.listen_always = 1;
    o.max_concurrent = max_concurrent;
    char err[256] = "";
    int rc = ds_netsync_new(&w->ns, &w->loop, &w->ctx, &o, err, sizeof err);
    if (rc)
        fail_msg("ds_netsync_new: %s (%s)", ds_strerror(rc), err);
    char bound[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX];
    size_t nb = 0;
    ds_netsync_bound(w->ns, bound, &nb);
    assert_int_equal(nb, 1);
    assert_string_equal(bound[0], listen);

    ds_quic_callbacks cb = {0};
    cb.on_connected = on_connected;
    cb.on_stream_data = on_stream_data;
    cb.on_closed = on_closed;
    ds_quic_config qc = {.identity_sk = bob.sk, .alpn = DS_SYNC_ALPN};
    assert_int_equal(ds_quic_endpoint_new(&w->ep, &w->loop, &qc, &cb, w), 0);
    assert_int_equal(ds_quic_endpoint_bind(w->ep, "127.0.0.1", 0), 0);
    assert_int_equal(ds_quic_connect(w->ep, (struct sockaddr *)&sin, alice.pk, NULL), 0);
    run_until(w, is_connected);
    assert_true(w->connected);
    assert_non_null(w->conn);
}

static void closed_cb(void *ud)
{
    (*(int *)ud)++;
}

static void world_stop(world *w)
{
    int done = 0;
    ds_quic_endpoint_close(w->ep, closed_cb, &done);
    ds_netsync_close(w->ns, closed_cb, &done);
    for (int i = 0; i < 1000 && done < 2; i++)
        uv_run(&w->loop, UV_RUN_ONCE);
    assert_int_equal(done, 2);
    ds_quic_endpoint_free(w->ep);
    uv_close((uv_handle_t *)&w->guard, NULL);
    uv_close((uv_handle_t *)&w->check, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&w->loop), 0);
    for (int i = 0; i < MAX_STREAMS; i++)
        ds_frame_dec_free(&w->s[i].dec);
    ds_ctx_free(&w->ctx);
}

/* Opens stream |i| and sends |len| bytes of |data| on it (FIN with |fin|). */
static void stream_send(world *w, int i, const uint8_t *data, size_t len, int fin)
{
    strm *s = &w->s[i];
    if (!s->open) {
        assert_int_equal(ds_quic_stream_open(w->conn, &s->sid), 0);
        s->open = 1;
        ds_frame_dec_init(&s->dec, DS_SYNC_MAX_FRAME);
    }
    assert_int_equal(ds_quic_stream_write(w->conn, s->sid, data, len, fin), 0);
}

/* A framed SYNC_REQUEST without a cursor. */
static void request_frame(ds_buf *out)
{
    ds_buf p = {0};
    assert_int_equal(ds_msg_encode_request(&p, NULL, 0, 0), 0);
    assert_int_equal(ds_frame_encode(out, p.data, p.len, DS_SYNC_MAX_FRAME), 0);
    ds_buf_free(&p);
}

static int stream_over(const strm *s)
{
    return s->fin || s->frame_error;
}

static int streams_ended(world *w)
{
    if (w->closed)
        return 1;
    return (w->wait_a < 0 || stream_over(&w->s[w->wait_a])) &&
           (w->wait_b < 0 || stream_over(&w->s[w->wait_b]));
}

/* Runs until streams |a| and |b| (-1: none) have ended. */
static void wait_ended(world *w, int a, int b)
{
    w->wait_a = a;
    w->wait_b = b;
    run_until(w, streams_ended);
    assert_false(w->closed);
}

static void assert_served_all(const strm *s)
{
    assert_false(s->frame_error);
    assert_true(s->fin);
    assert_string_equal(s->code, "");
    assert_true(s->last_page);
    assert_int_equal(s->nodes, SHARED_NODES);     /* never the private node */
    assert_true(s->pages >= 3);
}

static void assert_error(const strm *s, const char *code)
{
    assert_false(s->frame_error);
    assert_true(s->fin);
    assert_string_equal(s->code, code);
    assert_int_equal(s->nodes, 0);
}

static int first_acked(world *w)
{
    return w->closed || ds_quic_stream_queued(w->conn, w->s[0].sid) == 0;
}

/* With sync.max_concurrent 1, a second sync from the same peer while the
 * first is open (its request only half sent) gets RateLimited at once;
 * the first then completes, and once it has ended a new sync is served. */
static void rate_limited_until_the_first_ends(void **state)
{
    (void)state;
    world w;
    world_start(&w, 1, 1);
    ds_buf req = {0};
    request_frame(&req);
    assert_true(req.len > 3);

    stream_send(&w, 0, req.data, 3, 0);               /* half a request: open, waiting */
    /* Acknowledged means the publisher has processed the packet, so its
     * stream exists there before the second one arrives. */
    run_until(&w, first_acked);
    stream_send(&w, 1, req.data, req.len, 1);
    wait_ended(&w, 1, -1);
    assert_error(&w.s[1], DS_SYNC_E_RATE_LIMITED);
    assert_non_null(strstr(w.s[1].message, "Too many concurrent syncs"));
    assert_false(w.s[0].fin);                         /* the first is untouched */

    stream_send(&w, 0, req.data + 3, req.len - 3, 1);
    wait_ended(&w, 0, -1);
    assert_served_all(&w.s[0]);

    stream_send(&w, 2, req.data, req.len, 1);        /* the slot is free again */
    wait_ended(&w, 2, -1);
    assert_served_all(&w.s[2]);
    ds_buf_free(&req);
    world_stop(&w);
}

/* The default limit (4) lets four syncs from one peer run side by side. */
static void default_limit_allows_parallel_syncs(void **state)
{
    (void)state;
    world w;
    world_start(&w, 1, 0);
    ds_buf req = {0};
    request_frame(&req);
    for (int i = 0; i < MAX_STREAMS; i++)
        stream_send(&w, i, req.data, 3, 0);
    for (int i = 0; i < MAX_STREAMS; i++)
        stream_send(&w, i, req.data + 3, req.len - 3, 1);
    wait_ended(&w, 0, 1);
    wait_ended(&w, 2, 3);
    for (int i = 0; i < MAX_STREAMS; i++)
        assert_served_all(&w.s[i]);
    ds_buf_free(&req);
    world_stop(&w);
}

/* A request of protocol version 99 is answered with UnsupportedVersion
 * (naming both versions) and the end of the stream; the connection stays
 * usable for a version-1 sync. */
static void unknown_version_gets_an_error(void **state)
{
    (void)state;
    world w;
    world_start(&w, 1, 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "type", 4);
    msgpack_pack_str(&pk, 12);
    msgpack_pack_str_body(&pk, "sync_request", 12);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "v", 1);
    msgpack_pack_uint32(&pk, 99);
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "future", 6);
    msgpack_pack_true(&pk);
    ds_buf f = {0};
    assert_int_equal(ds_frame_encode(&f, sb.data, sb.size, DS_SYNC_MAX_FRAME), 0);
    msgpack_sbuffer_destroy(&sb);
    stream_send(&w, 0, f.data, f.len, 1);
    wait_ended(&w, 0, -1);
    assert_error(&w.s[0], DS_SYNC_E_VERSION);
    assert_non_null(strstr(w.s[0].message, "99"));

    ds_buf req = {0};
    request_frame(&req);
    stream_send(&w, 1, req.data, req.len, 1);
    wait_ended(&w, 1, -1);
    assert_served_all(&w.s[1]);
    ds_buf_free(&req);
    ds_buf_free(&f);
    world_stop(&w);
}

/* A frame prefix announcing more than the maximum frame size is refused
 * from the prefix alone (nothing buffered, no waiting for the body). */
static void oversized_frame_is_refused(void **state)
{
    (void)state;
    world w;
    world_start(&w, 1, 0);
    uint8_t hdr[DS_FRAME_HDR_LEN];
    uint64_t big = (uint64_t)DS_SYNC_MAX_FRAME + 1;
    for (size_t i = 0; i < DS_FRAME_HDR_LEN; i++)
        hdr[i] = (uint8_t)(big >> (8 * (DS_FRAME_HDR_LEN - 1 - i)));
    stream_send(&w, 0, hdr, sizeof hdr, 0);           /* no FIN: the error must not wait for one */
    wait_ended(&w, 0, -1);
    assert_error(&w.s[0], DS_SYNC_E_BAD_REQUEST);
    world_stop(&w);
}

/* A peer without publish gets the spec's NotAuthorized text (with the
 * command to fix it) and no node, whatever it sends. */
static void unauthorized_peer_gets_no_node(void **state)
{
    (void)state;
    world w;
    world_start(&w, 0, 0);
    ds_buf req = {0};
    request_frame(&req);
    stream_send(&w, 0, req.data, req.len, 1);
    wait_ended(&w, 0, -1);
    assert_error(&w.s[0], DS_SYNC_E_NOT_AUTHORIZED);
    char want[256];
    snprintf(want, sizeof want, "Peer %s not authorized. Use: ds peer add %s --publish", bob.node_id,
             bob.node_id);
    assert_string_equal(w.s[0].message, want);
    ds_buf_free(&req);
    world_stop(&w);
}

/* A publisher whose share.json cannot be read answers ERROR Internal on
 * the stream (no node, the connection stays up), and serves again once
 * the file is readable. */
static void unreadable_share_set_gets_internal(void **state)
{
    (void)state;
    world w;
    world_start(&w, 1, 0);
    char path[4096], keep[4096];
    snprintf(path, sizeof path, "%s/share.json", w.ctx.home);
    snprintf(keep, sizeof keep, "%s/share.json.keep", w.ctx.home);
    assert_int_equal(rename(path, keep), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{ not json", f);
    fclose(f);
    ds_buf req = {0};
    request_frame(&req);
    stream_send(&w, 0, req.data, req.len, 1);
    wait_ended(&w, 0, -1);
    assert_error(&w.s[0], DS_SYNC_E_INTERNAL);
    assert_string_equal(w.s[0].message, "Publisher cannot serve now: its share.json cannot be read");
    assert_int_equal(w.s[0].nodes, 0);
    assert_false(w.closed);
    assert_int_equal(rename(keep, path), 0);
    stream_send(&w, 1, req.data, req.len, 1);
    wait_ended(&w, 1, -1);
    assert_served_all(&w.s[1]);
    ds_buf_free(&req);
    world_stop(&w);
}

static int second_acked(world *w)
{
    return w->closed || ds_quic_stream_queued(w->conn, w->s[1].sid) == 0;
}

/* share.json changed while a sync's stream is open (its request half
 * sent, so the publisher holds the share set of the stream's start). */
static void change_shares(world *w, const char *add, const char *remove)
{
    char err[256] = "";
    ds_share_cfg sc = {0};
    assert_int_equal(ds_share_cfg_load(w->ctx.home, &sc, err, sizeof err), 0);
    if (add)
        assert_int_equal(ds_share_cfg_add(&sc, add), 0);
    if (remove)
        assert_int_equal(ds_share_cfg_remove(&sc, remove), 0);
    assert_int_equal(ds_share_cfg_save(w->ctx.home, &sc, err, sizeof err), 0);
    ds_share_cfg_free(&sc);
}

/* A project shared while a sync is open changes nothing for it; a project
 * unshared ends it with ERROR Internal before any page: a node written
 * after the unshare must never leave, even through a sync begun before. */
static void unshare_during_a_sync_ends_it(void **state)
{
    (void)state;
    world w;
    world_start(&w, 1, 0);
    ds_buf req = {0};
    request_frame(&req);

    stream_send(&w, 0, req.data, 3, 0);
    run_until(&w, first_acked);
    change_shares(&w, "/work/other", NULL);
    stream_send(&w, 0, req.data + 3, req.len - 3, 1);
    wait_ended(&w, 0, -1);
    assert_served_all(&w.s[0]);

    stream_send(&w, 1, req.data, 3, 0);
    run_until(&w, second_acked);
    change_shares(&w, NULL, "/work/shared");
    ds_store *st = NULL;
    assert_int_equal(ds_ctx_store(&w.ctx, 1, &st), 0);
    ds_node n;
    ds_test_make_node(&n, "written after the unshare", "/work/shared/app");
    assert_int_equal(ds_store_put(st, &n), 0);
    ds_node_free(&n);
    stream_send(&w, 1, req.data + 3, req.len - 3, 1);
    wait_ended(&w, 1, -1);
    assert_error(&w.s[1], DS_SYNC_E_INTERNAL);
    assert_non_null(strstr(w.s[1].message, "stopped sharing a project during the sync"));
    assert_false(w.closed);
    ds_buf_free(&req);
    world_stop(&w);
}

/* Two listen addresses, the second busy: the service does not start, the
 * first address is let go again (nothing half-listening), and nothing
 * leaks (ASan). */
static void failed_listen_releases_every_address(void **state)
{
    (void)state;
    world w;
    memset(&w, 0, sizeof w);
    identity(&alice, 0xa1);
    identity(&bob, 0xb0);
    alice_home(&w, ds_test_tmpdir(), 1);
    assert_int_equal(uv_loop_init(&w.loop), 0);
    uint16_t free_port, busy_port;
    udp_port(&free_port, 0);
    int busy = udp_port(&busy_port, 1);
    char a1[32], a2[32];
    snprintf(a1, sizeof a1, "127.0.0.1:%u", (unsigned)free_port);
    snprintf(a2, sizeof a2, "127.0.0.1:%u", (unsigned)busy_port);
    ds_netsync_opts o = {0};
    o.listen[0] = a1;
    o.listen[1] = a2;
    o.nlisten = 2;
    o.listen_always = 1;
    char err[256] = "";
    ds_netsync *ns = NULL;
    assert_int_equal(ds_netsync_new(&ns, &w.loop, &w.ctx, &o, err, sizeof err), DS_ERR_IO);
    assert_null(ns);
    assert_non_null(strstr(err, a2));
    assert_non_null(strstr(err, "in use"));
    for (int i = 0; i < 100 && uv_run(&w.loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    assert_true(port_free(free_port));
    assert_false(port_free(busy_port));
    close(busy);
    assert_int_equal(uv_loop_close(&w.loop), 0);
    ds_ctx_free(&w.ctx);
}

/* What a job reply says (job_call). */
typedef struct job_reply {
    uint64_t instance;
    int done;
    char stopped_by[32];     /* "" for nil */
    char state0[16], code0[32], error0[512];   /* of its first peer */
} job_reply;

static void copy_str(char *dst, size_t cap, const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_STR)
        snprintf(dst, cap, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    else
        dst[0] = 0;
}

static int key_is(const msgpack_object *k, const char *s)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(s) &&
           memcmp(k->via.str.ptr, s, k->via.str.size) == 0;
}

/* Calls |op| (peer_sync_status or peer_sync_cancel) with {job, instance?,
 * cause?}; returns ds_ops_call's result, copies the error message (if
 * any) into |msg| and what the reply says into |out|. */
static int job_call(world *w, const char *op, uint64_t job, uint64_t instance, const char *cause,
                    char *msg, size_t cap, job_reply *out)
{
    msgpack_sbuffer pb;
    msgpack_sbuffer_init(&pb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &pb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1 + (instance != 0) + (cause != NULL));
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "job", 3);
    msgpack_pack_uint64(&pk, job);
    if (instance) {
        msgpack_pack_str(&pk, 8);
        msgpack_pack_str_body(&pk, "instance", 8);
        msgpack_pack_uint64(&pk, instance);
    }
    if (cause) {
        msgpack_pack_str(&pk, 5);
        msgpack_pack_str_body(&pk, "cause", 5);
        msgpack_pack_str(&pk, strlen(cause));
        msgpack_pack_str_body(&pk, cause, strlen(cause));
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(msgpack_unpack_next(&up, pb.data, pb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer reply;
    msgpack_sbuffer_init(&reply);
    int rc = ds_ops_call(&w->ctx, op, &up.data, &reply);
    snprintf(msg, cap, "%s", rc ? w->ctx.error.message : "");
    memset(out, 0, sizeof *out);
    msgpack_unpacked r;
    msgpack_unpacked_init(&r);
    assert_int_equal(msgpack_unpack_next(&r, reply.data, reply.size, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(r.data.type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < r.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &r.data.via.map.ptr[i];
        if (key_is(&kv->key, "instance"))
            out->instance = kv->val.via.u64;
        else if (key_is(&kv->key, "done"))
            out->done = kv->val.type == MSGPACK_OBJECT_BOOLEAN && kv->val.via.boolean;
        else if (key_is(&kv->key, "stopped_by"))
            copy_str(out->stopped_by, sizeof out->stopped_by, &kv->val);
        else if (key_is(&kv->key, "peers") && kv->val.type == MSGPACK_OBJECT_ARRAY &&
                 kv->val.via.array.size > 0) {
            const msgpack_object *p0 = &kv->val.via.array.ptr[0];
            for (uint32_t k = 0; p0->type == MSGPACK_OBJECT_MAP && k < p0->via.map.size; k++) {
                const msgpack_object_kv *f = &p0->via.map.ptr[k];
                if (key_is(&f->key, "state"))
                    copy_str(out->state0, sizeof out->state0, &f->val);
                else if (key_is(&f->key, "code"))
                    copy_str(out->code0, sizeof out->code0, &f->val);
                else if (key_is(&f->key, "error"))
                    copy_str(out->error0, sizeof out->error0, &f->val);
            }
        }
    }
    msgpack_unpacked_destroy(&r);
    msgpack_sbuffer_destroy(&reply);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&pb);
    return rc;
}

static int job_status(world *w, uint64_t job, uint64_t instance, char *msg, size_t cap,
                      uint64_t *got_instance)
{
    job_reply jr;
    int rc = job_call(w, "peer_sync_status", job, instance, NULL, msg, cap, &jr);
    *got_instance = jr.instance;
    return rc;
}

/* Starts the world as a daemon with a job syncing bob; returns the job
 * and sets *inst to the daemon's instance. */
static uint64_t start_bob_job(world *w, uint32_t *inst)
{
    world_start(w, 1, 0);
    w->ctx.netsync = w->ns;
    *inst = ds_netsync_instance(w->ns);
    assert_true(*inst != 0);
    char ids[1][DS_NODE_ID_HEX + 1];
    snprintf(ids[0], sizeof ids[0], "%s", bob.node_id);
    uint64_t job = 0;
    assert_int_equal(ds_netsync_sync(w->ns, (const char (*)[DS_NODE_ID_HEX + 1])ids, 1, 0, 0,
                                     &job), 0);
    return job;
}

/* Job numbers restart with each daemon: a poll that names the instance of
 * the daemon that started its job is told when that daemon is gone,
 * instead of being shown the job of the same number in a new one. */
static void job_status_checks_the_daemon_instance(void **state)
{
    (void)state;
    world w;
    uint32_t inst;
    uint64_t job = start_bob_job(&w, &inst);
    char msg[sizeof w.ctx.error.message];
    uint64_t got;
    /* the daemon's own job: found, with its instance */
    assert_int_equal(job_status(&w, job, inst, msg, sizeof msg, &got), 0);
    assert_int_equal(got, inst);
    /* without an instance (older clients): still found */
    assert_int_equal(job_status(&w, job, 0, msg, sizeof msg, &got), 0);
    /* the same number from another daemon: interrupted, not this job */
    assert_int_equal(job_status(&w, job, inst == 1 ? 2 : inst - 1, msg, sizeof msg, &got),
                     DS_ERR_NOTFOUND);
    assert_non_null(strstr(msg, "was interrupted: the daemon that ran it has stopped"));
    /* no daemon at all (the CLI fell back to running the request itself) */
    w.ctx.netsync = NULL;
    assert_int_equal(job_status(&w, job, inst, msg, sizeof msg, &got), DS_ERR_NOTFOUND);
    assert_non_null(strstr(msg, "was interrupted"));
    world_stop(&w);
}

/* peer_sync_cancel (the CLI's Ctrl-C): the job is stopped and done at
 * once, its peer failed with code "interrupted" and the cause in its
 * message and in stopped_by; a finished job is left as it is; a bad
 * cause or an unknown job is refused. */
static void cancel_stops_the_job(void **state)
{
    (void)state;
    world w;
    uint32_t inst;
    uint64_t job = start_bob_job(&w, &inst);
    char msg[sizeof w.ctx.error.message];
    job_reply jr;
    assert_int_equal(job_call(&w, "peer_sync_status", job, inst, NULL, msg, sizeof msg, &jr), 0);
    assert_false(jr.done);
    assert_string_equal(jr.stopped_by, "");
    /* a cause that is not a plain word: refused, the job goes on */
    assert_int_equal(job_call(&w, "peer_sync_cancel", job, inst, "SIG INT", msg, sizeof msg, &jr),
                     DS_ERR_INVALID);
    assert_non_null(strstr(msg, "parameter 'cause'"));
    assert_int_equal(job_call(&w, "peer_sync_cancel", job, inst, "SIGINTERRUPTEDXX", msg,
                              sizeof msg, &jr), DS_ERR_INVALID);
    assert_int_equal(job_call(&w, "peer_sync_status", job, inst, NULL, msg, sizeof msg, &jr), 0);
    assert_false(jr.done);
    /* cancelled: done at once */
    assert_int_equal(job_call(&w, "peer_sync_cancel", job, inst, "SIGINT", msg, sizeof msg, &jr), 0);
    assert_true(jr.done);
    assert_string_equal(jr.stopped_by, "SIGINT");
    assert_string_equal(jr.state0, "failed");
    assert_string_equal(jr.code0, "interrupted");
    assert_non_null(strstr(jr.error0, "interrupted by SIGINT"));
    /* again, with another cause: the finished job is left as it is */
    assert_int_equal(job_call(&w, "peer_sync_cancel", job, inst, NULL, msg, sizeof msg, &jr), 0);
    assert_true(jr.done);
    assert_string_equal(jr.stopped_by, "SIGINT");
    assert_non_null(strstr(jr.error0, "interrupted by SIGINT"));
    /* unknown job, another daemon's job */
    assert_int_equal(job_call(&w, "peer_sync_cancel", job + 100, inst, NULL, msg, sizeof msg, &jr),
                     DS_ERR_NOTFOUND);
    assert_int_equal(job_call(&w, "peer_sync_cancel", job, inst == 1 ? 2 : inst - 1, NULL, msg,
                              sizeof msg, &jr), DS_ERR_NOTFOUND);
    assert_non_null(strstr(msg, "was interrupted: the daemon that ran it has stopped"));
    world_stop(&w);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rate_limited_until_the_first_ends),
        cmocka_unit_test(default_limit_allows_parallel_syncs),
        cmocka_unit_test(unknown_version_gets_an_error),
        cmocka_unit_test(oversized_frame_is_refused),
        cmocka_unit_test(unauthorized_peer_gets_no_node),
        cmocka_unit_test(unreadable_share_set_gets_internal),
        cmocka_unit_test(unshare_during_a_sync_ends_it),
        cmocka_unit_test(failed_listen_releases_every_address),
        cmocka_unit_test(job_status_checks_the_daemon_instance),
        cmocka_unit_test(cancel_stops_the_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
