/*
 * test_syncproto.c - the sync session machines connected buffer to buffer
 * over real LMDB stores with a fake clock: full sync in pages delivered
 * in 1-byte, 7-byte and whole-buffer pieces, resume after a cut, the
 * incremental, shared-later, --full and reset-publisher cases, the ERROR
 * replies (NotAuthorized, RateLimited, UnsupportedVersion, BadRequest),
 * oversized and malformed frames, unexpected input on both sides, frame
 * size bounds and timeouts.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/frame.h"
#include "core/syncproto.h"

#define PEER "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const size_t ONE[] = { 1 };
static const size_t SEVEN[] = { 7 };
static const size_t WHOLE[] = { SIZE_MAX };
static const size_t MIXED[] = { 1, 7, 4096, 3, SIZE_MAX, 13 };

/* ---- stores -------------------------------------------------------------- */

static ds_store *open_store(const char *epoch16)
{
    ds_store *st;
    ds_store_opts o = { .epoch_seed = (const uint8_t *)epoch16 };
    assert_int_equal(ds_store_open(&st, ds_test_tmpdir(), &o), 0);
    return st;
}

static void add(ds_store *st, const char *content, const char *project)
{
    ds_node n;
    ds_test_make_node(&n, content, project);
    assert_int_equal(ds_store_put(st, &n), 0);
    ds_node_free(&n);
}

static void add_many(ds_store *st, int n, const char *prefix, const char *project)
{
    for (int i = 0; i < n; i++) {
        char t[96];
        snprintf(t, sizeof t, "%s %d", prefix, i);
        add(st, t, project);
    }
}

static uint64_t count_nodes(ds_store *st)
{
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    return info.node_count;
}

static int has_content(ds_store *st, const char *needle)
{
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    for (uint64_t s = 1; s <= info.last_seq; s++) {
        ds_node got;
        if (ds_store_get_seq(st, s, &got)) continue;
        int hit = strstr(got.content, needle) != NULL;
        ds_node_free(&got);
        if (hit) return 1;
    }
    return 0;
}

/* Counts |pub|'s shared nodes that are missing from |rep|. */
typedef struct missing { const ds_share_set *share; ds_store *rep; int shared, missing; } missing;

static int count_missing(const ds_node *n, void *ud)
{
    missing *m = ud;
    if (!ds_share_set_contains(m->share, n->project)) return 0;
    m->shared++;
    ds_node got;
    if (ds_store_get(m->rep, n->id, &got) == 0) ds_node_free(&got);
    else m->missing++;
    return 0;
}

/* The replica holds exactly the publisher's shared nodes. */
static void assert_exact_set(ds_store *pub, const ds_share_set *share, ds_store *rep)
{
    missing m = { share, rep, 0, 0 };
    assert_int_equal(ds_store_iter(pub, 0, 0, count_missing, &m), 0);
    assert_int_equal(m.missing, 0);
    assert_int_equal(count_nodes(rep), (uint64_t)m.shared);
}

static void make_share(ds_share_set *s, const char *a, const char *b)
{
    const char *roots[] = { a, b };
    assert_int_equal(ds_share_set_init(s, roots, b ? 2 : 1), 0);
}

/* ---- the pump ------------------------------------------------------------ */

typedef struct pipe {
    ds_buf buf;
    size_t off;
    int fin, fin_delivered;
} pipe;

typedef struct pump_opts {
    const size_t *chunks;
    size_t nchunks;
    uint64_t stop_after_pages;       /* 0: run to the end */
    size_t window;                   /* publisher bytes in flight at most (flow control) */
} pump_opts;

static size_t pending(const pipe *p) { return p->buf.len - p->off; }

/* Moves up to |chunk| bytes (and the FIN once all bytes are through). */
static void deliver(pipe *p, size_t chunk, ds_sync_client *c, ds_sync_server *s, int64_t now)
{
    size_t n = pending(p) < chunk ? pending(p) : chunk;
    int fin = p->fin && !p->fin_delivered && n == pending(p);
    if (!n && !fin) return;
    if (c) assert_int_equal(ds_sync_client_recv(c, p->buf.data + p->off, n, fin, now), 0);
    else assert_int_equal(ds_sync_server_recv(s, p->buf.data + p->off, n, fin, now), 0);
    p->off += n;
    if (fin) p->fin_delivered = 1;
    if (p->off == p->buf.len) p->off = p->buf.len = 0;
}

/* Runs both machines until both are DONE/FAILED (or the client applied
 * stop_after_pages pages: the rest is dropped).  Bounded. */
static void pump(ds_sync_client *c, ds_sync_server *s, const pump_opts *o, int64_t *now)
{
    pipe c2s = { 0 }, s2c = { 0 };
    size_t window = o->window ? o->window : 65536;
    size_t k = 0;
    long it;
    for (it = 0; it < 4000000; it++) {
        ds_sync_progress pr;
        ds_sync_client_progress(c, &pr);
        if (o->stop_after_pages && pr.pages >= o->stop_after_pages) break;
        if (ds_sync_client_state(c) != DS_SYNCS_RUNNING && ds_sync_server_state(s) != DS_SYNCS_RUNNING &&
            !pending(&c2s) && !pending(&s2c))
            break;
        (*now)++;
        int fin = 0;
        if (!c2s.fin) {
            assert_int_equal(ds_sync_client_send(c, &c2s.buf, 65536, &fin, *now), 0);
            c2s.fin = fin;
        }
        if (!s2c.fin && pending(&s2c) < window) {
            assert_int_equal(ds_sync_server_send(s, &s2c.buf, 16384, &fin, *now), 0);
            s2c.fin = fin;
        }
        size_t chunk = o->chunks[k++ % o->nchunks];
        deliver(&c2s, chunk, NULL, s, *now);
        deliver(&s2c, chunk, c, NULL, *now);
        if (*now >= ds_sync_client_expiry(c)) ds_sync_client_handle_expiry(c, *now);
        if (*now >= ds_sync_server_expiry(s)) ds_sync_server_handle_expiry(s, *now);
    }
    assert_true(it < 4000000);
    ds_buf_free(&c2s.buf);
    ds_buf_free(&s2c.buf);
}

typedef struct session {
    ds_sync_server_cfg scfg;
    ds_sync_client_cfg ccfg;
    ds_sync_server *s;
    ds_sync_client *c;
    int64_t now;
} session;

static void session_init(session *x, ds_store *pub, const ds_share_set *share, ds_store *rep)
{
    memset(x, 0, sizeof *x);
    x->scfg.store = pub;
    x->scfg.share = share;
    x->scfg.seal = ds_test_seal();
    x->scfg.authorized = 1;
    x->scfg.peer_id = PEER;
    x->scfg.page_nodes = 100;
    x->ccfg.replica = rep;
    x->now = 1000;
}

static void session_start(session *x)
{
    assert_int_equal(ds_sync_server_new(&x->s, &x->scfg, x->now), 0);
    assert_int_equal(ds_sync_client_new(&x->c, &x->ccfg, x->now), 0);
}

static void session_free(session *x)
{
    ds_sync_server_free(x->s);
    ds_sync_client_free(x->c);
    x->s = NULL;
    x->c = NULL;
}

/* One whole sync that must succeed; returns the client's progress. */
static ds_sync_progress sync_ok(ds_store *pub, const ds_share_set *share, ds_store *rep, int full,
                                const size_t *chunks, size_t nchunks, uint64_t *server_pages)
{
    session x;
    session_init(&x, pub, share, rep);
    x.ccfg.full = full;
    session_start(&x);
    pump_opts o = { .chunks = chunks, .nchunks = nchunks };
    pump(x.c, x.s, &o, &x.now);
    const char *code, *msg;
    int err = ds_sync_client_error(x.c, &code, &msg);
    if (ds_sync_client_state(x.c) != DS_SYNCS_DONE) fail_msg("client: %d %s %s", err, code, msg);
    assert_int_equal(ds_sync_server_state(x.s), DS_SYNCS_DONE);
    ds_sync_progress p;
    ds_sync_client_progress(x.c, &p);
    uint64_t nodes, pages;
    ds_sync_server_counts(x.s, &nodes, &pages, NULL);
    assert_int_equal(nodes, p.nodes_received);
    assert_int_equal(pages, p.pages);
    if (server_pages) *server_pages = pages;
    session_free(&x);
    return p;
}

/* ---- raw frames ---------------------------------------------------------- */

static void frame(ds_buf *out, const void *payload, size_t len)
{
    assert_int_equal(ds_frame_encode(out, payload, len, DS_SYNC_MAX_FRAME), 0);
}

static void request_frame(ds_buf *out, const uint8_t *cursor, uint32_t max_nodes)
{
    ds_buf p = { 0 };
    assert_int_equal(ds_msg_encode_request(&p, cursor, max_nodes, 0), 0);
    frame(out, p.data, p.len);
    ds_buf_free(&p);
}

/* Drains the server's output; it must be exactly one ERROR frame + FIN. */
static void expect_server_error(ds_sync_server *s, const char *code, int err, char *msg_out, size_t cap)
{
    ds_buf out = { 0 };
    int fin = 0;
    assert_int_equal(ds_sync_server_send(s, &out, 65536, &fin, 5000), 0);
    assert_true(fin);
    assert_int_equal(ds_sync_server_state(s), DS_SYNCS_FAILED);
    ds_frame_dec d;
    ds_frame_dec_init(&d, DS_SYNC_MAX_FRAME);
    size_t used;
    const uint8_t *f;
    size_t fl;
    assert_int_equal(ds_frame_dec_feed(&d, out.data, out.len, &used, &f, &fl), 0);
    assert_non_null(f);
    assert_int_equal(used, out.len);
    ds_msg m;
    assert_int_equal(ds_msg_decode(f, fl, &m), 0);
    assert_int_equal(m.type, DS_MSG_ERROR);
    assert_string_equal(m.code, code);
    if (msg_out) snprintf(msg_out, cap, "%s", m.message);
    const char *c2, *m2;
    assert_int_equal(ds_sync_server_error(s, &c2, &m2), err);
    assert_string_equal(c2, code);
    assert_string_equal(m2, m.message);
    ds_msg_free(&m);
    ds_frame_dec_free(&d);
    ds_buf_free(&out);
    /* Nothing more, ever. */
    out = (ds_buf){ 0 };
    assert_int_equal(ds_sync_server_send(s, &out, 65536, &fin, 5001), 0);
    assert_int_equal(out.len, 0);
    assert_false(fin);
}

static ds_sync_server *new_server(ds_store *pub, const ds_share_set *share, int authorized)
{
    ds_sync_server_cfg cfg = { .store = pub, .share = share, .seal = ds_test_seal(),
                               .authorized = authorized, .peer_id = PEER };
    ds_sync_server *s;
    assert_int_equal(ds_sync_server_new(&s, &cfg, 0), 0);
    return s;
}

/* ---- tests --------------------------------------------------------------- */

static void full_sync_in_pages(void **state)
{
    (void)state;
    struct { const size_t *c; size_t n; } modes[] = { { WHOLE, 1 }, { SEVEN, 1 }, { ONE, 1 }, { MIXED, 6 } };
    ds_store *pub = open_store("pub-epoch-full01");
    add(pub, "CANARY unshared first", "/home/secret");
    add_many(pub, 120, "shared node", "/a/proj");
    add(pub, "CANARY sibling path", "/a/proj-x");
    add_many(pub, 130, "shared deeper", "/a/proj/sub");
    add(pub, "CANARY unshared last", "/home/secret");
    add(pub, "CANARY sibling last", "/a/proj-x");
    ds_share_set share;
    make_share(&share, "/a/proj", NULL);
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        ds_store *rep = open_store("rep-epoch-full01");
        uint64_t pages;
        ds_sync_progress p = sync_ok(pub, &share, rep, 0, modes[i].c, modes[i].n, &pages);
        assert_int_equal(pages, 3);
        assert_int_equal(p.pages, 3);
        assert_int_equal(p.nodes_received, 250);
        assert_int_equal(p.nodes_new, 250);
        assert_exact_set(pub, &share, rep);
        assert_int_equal(count_nodes(rep), 250);
        assert_false(has_content(rep, "CANARY"));
        ds_store_close(rep);
    }
    ds_share_set_free(&share);
    ds_store_close(pub);
}

static void partial_frames(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-part01");
    ds_store *rep = open_store("rep-epoch-part01");
    add_many(pub, 5, "partial", "/p");
    ds_share_set share;
    make_share(&share, "/p", NULL);
    ds_sync_server *s = new_server(pub, &share, 1);
    ds_sync_client *c;
    ds_sync_client_cfg cc = { .replica = rep };
    assert_int_equal(ds_sync_client_new(&c, &cc, 0), 0);
    ds_buf req = { 0 }, resp = { 0 };
    int fin;
    assert_int_equal(ds_sync_client_send(c, &req, 100, &fin, 1), 0);
    assert_false(fin);
    assert_true(req.len > DS_FRAME_HDR_LEN);
    /* The request trickles in: nothing to send until it is complete. */
    for (size_t i = 0; i + 1 < req.len; i++) {
        assert_int_equal(ds_sync_server_recv(s, req.data + i, 1, 0, 2), 0);
        assert_int_equal(ds_sync_server_send(s, &resp, 65536, &fin, 2), 0);
        assert_int_equal(resp.len, 0);
        assert_false(fin);
    }
    assert_int_equal(ds_sync_server_recv(s, req.data + req.len - 1, 1, 0, 3), 0);
    assert_int_equal(ds_sync_server_send(s, &resp, 65536, &fin, 3), 0);
    assert_true(fin);
    assert_int_equal(ds_sync_server_state(s), DS_SYNCS_DONE);
    /* The page minus its last byte writes nothing. */
    assert_int_equal(ds_sync_client_recv(c, resp.data, resp.len - 1, 0, 4), 0);
    ds_sync_progress p;
    ds_sync_client_progress(c, &p);
    assert_int_equal(p.pages, 0);
    assert_int_equal(count_nodes(rep), 0);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_RUNNING);
    assert_int_equal(ds_sync_client_recv(c, resp.data + resp.len - 1, 1, 0, 5), 0);
    ds_sync_client_progress(c, &p);
    assert_int_equal(p.pages, 1);
    assert_int_equal(count_nodes(rep), 5);
    /* Last page applied: the subscriber finishes its side; DONE on the peer's FIN. */
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_RUNNING);
    ds_buf tail = { 0 };
    assert_int_equal(ds_sync_client_send(c, &tail, 100, &fin, 6), 0);
    assert_true(fin);
    assert_int_equal(tail.len, 0);
    assert_int_equal(ds_sync_client_recv(c, NULL, 0, 1, 6), 0);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_DONE);
    /* Bytes after the end change nothing. */
    assert_int_equal(ds_sync_client_recv(c, resp.data, resp.len, 0, 7), 0);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_DONE);
    ds_buf_free(&req);
    ds_buf_free(&resp);
    ds_sync_client_free(c);
    ds_sync_server_free(s);
    ds_share_set_free(&share);
    ds_store_close(pub);
    ds_store_close(rep);
}

static void resume_after_cut(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-resum1");
    ds_store *rep = open_store("rep-epoch-resum1");
    add_many(pub, 250, "resumable", "/a/proj");
    add(pub, "CANARY", "/a/proj-x");
    ds_share_set share;
    make_share(&share, "/a/proj", NULL);
    session x;
    session_init(&x, pub, &share, rep);
    session_start(&x);
    pump_opts o = { .chunks = MIXED, .nchunks = 6, .stop_after_pages = 2 };
    pump(x.c, x.s, &o, &x.now);             /* the connection dies: the rest is dropped */
    ds_sync_progress p;
    ds_sync_client_progress(x.c, &p);
    assert_int_equal(p.pages, 2);
    assert_int_equal(count_nodes(rep), 200);
    session_free(&x);
    /* A new session resumes from the stored cursor. */
    uint64_t pages;
    p = sync_ok(pub, &share, rep, 0, SEVEN, 1, &pages);
    assert_int_equal(pages, 1);
    assert_int_equal(p.nodes_received, 50);
    assert_int_equal(p.nodes_new, 50);
    assert_exact_set(pub, &share, rep);
    assert_false(has_content(rep, "CANARY"));
    ds_share_set_free(&share);
    ds_store_close(pub);
    ds_store_close(rep);
}

/* A full page followed only by unshared nodes is the last page: no empty
 * extra round trip, and the canaries never travel. */
static void trailing_unshared_nodes(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-trail1");
    ds_store *rep = open_store("rep-epoch-trail1");
    add_many(pub, 4, "shared", "/a/proj");
    add(pub, "CANARY trailing", "/a/proj-x");
    add(pub, "CANARY trailing 2", "/home/secret");
    ds_share_set share;
    make_share(&share, "/a/proj", NULL);
    session x;
    session_init(&x, pub, &share, rep);
    x.scfg.page_nodes = 2;
    session_start(&x);
    pump_opts o = { .chunks = WHOLE, .nchunks = 1 };
    pump(x.c, x.s, &o, &x.now);
    assert_int_equal(ds_sync_client_state(x.c), DS_SYNCS_DONE);
    ds_sync_progress p;
    ds_sync_client_progress(x.c, &p);
    assert_int_equal(p.pages, 2);
    assert_int_equal(p.nodes_new, 4);
    assert_false(has_content(rep, "CANARY"));
    session_free(&x);
    ds_share_set_free(&share);
    ds_store_close(pub);
    ds_store_close(rep);
}

static void incremental_later_full_reset(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-incr01");
    ds_store *rep = open_store("rep-epoch-incr01");
    add_many(pub, 30, "first batch", "/a/proj");
    add_many(pub, 7, "later project old", "/c/later");
    ds_share_set share, share2;
    make_share(&share, "/a/proj", NULL);
    ds_sync_progress p = sync_ok(pub, &share, rep, 0, WHOLE, 1, NULL);
    assert_int_equal(p.nodes_new, 30);
    /* Incremental: only the new nodes travel. */
    add_many(pub, 4, "second batch", "/a/proj");
    p = sync_ok(pub, &share, rep, 0, SEVEN, 1, NULL);
    assert_int_equal(p.nodes_received, 4);
    assert_int_equal(p.nodes_new, 4);
    p = sync_ok(pub, &share, rep, 0, WHOLE, 1, NULL);
    assert_int_equal(p.nodes_received, 0);
    assert_int_equal(p.pages, 1);
    /* A project shared later arrives with its old nodes. */
    make_share(&share2, "/a/proj", "/c/later");
    p = sync_ok(pub, &share2, rep, 0, MIXED, 6, NULL);
    assert_int_equal(p.nodes_new, 7);
    assert_true(has_content(rep, "later project old 6"));
    assert_exact_set(pub, &share2, rep);
    /* --full re-fetches everything and inserts nothing new. */
    p = sync_ok(pub, &share2, rep, 1, WHOLE, 1, NULL);
    assert_int_equal(p.nodes_received, 41);
    assert_int_equal(p.nodes_new, 0);
    assert_int_equal(count_nodes(rep), 41);
    /* The publisher's store is reset (new epoch): the next sync starts over. */
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(pub, &tx), 0);
    assert_int_equal(ds_wtxn_clear(tx, (const uint8_t *)"pub-epoch-incr02"), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    add_many(pub, 3, "after reset", "/a/proj");
    p = sync_ok(pub, &share2, rep, 0, SEVEN, 1, NULL);
    assert_int_equal(p.nodes_new, 3);
    assert_true(has_content(rep, "after reset 2"));
    assert_int_equal(count_nodes(rep), 44);
    ds_share_set_free(&share);
    ds_share_set_free(&share2);
    ds_store_close(pub);
    ds_store_close(rep);
}

/* An ERROR reply through the pump: the client fails with |err|. */
static void refused(ds_store *pub, const ds_share_set *share, int authorized, int rate_limited, int err,
                    const char *code, const char *message)
{
    ds_store *rep = open_store("rep-epoch-refuse");
    session x;
    session_init(&x, pub, share, rep);
    x.scfg.authorized = authorized;
    x.scfg.rate_limited = rate_limited;
    session_start(&x);
    pump_opts o = { .chunks = SEVEN, .nchunks = 1 };
    pump(x.c, x.s, &o, &x.now);
    const char *c, *m;
    assert_int_equal(ds_sync_client_state(x.c), DS_SYNCS_FAILED);
    assert_int_equal(ds_sync_client_error(x.c, &c, &m), err);
    assert_string_equal(c, code);
    assert_string_equal(m, message);
    assert_int_equal(ds_sync_server_state(x.s), DS_SYNCS_FAILED);
    assert_int_equal(ds_sync_server_error(x.s, &c, NULL), err);
    assert_string_equal(c, code);
    uint64_t nodes;
    ds_sync_server_counts(x.s, &nodes, NULL, NULL);
    assert_int_equal(nodes, 0);
    assert_int_equal(count_nodes(rep), 0);
    int has;
    uint8_t cur[DS_CURSOR_LEN];
    assert_int_equal(ds_sync_cursor_get(rep, cur, &has), 0);
    assert_false(has);
    session_free(&x);
    ds_store_close(rep);
}

static void not_authorized_and_rate_limited(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-auth01");
    add_many(pub, 3, "secret", "/a/proj");
    ds_share_set share;
    make_share(&share, "/a/proj", NULL);
    refused(pub, &share, 0, 0, DS_ERR_UNAUTHORIZED, "NotAuthorized",
            "Peer " PEER " not authorized. Use: ds peer add " PEER " --publish");
    refused(pub, &share, 0, 1, DS_ERR_UNAUTHORIZED, "NotAuthorized",
            "Peer " PEER " not authorized. Use: ds peer add " PEER " --publish");
    refused(pub, &share, 1, 1, DS_ERR_BUSY, "RateLimited", "Too many concurrent syncs; try again later");
    ds_share_set_free(&share);
    ds_store_close(pub);
}

/* A publisher that cannot load its share set or store still answers:
 * ERROR Internal with the reason, after authorization, and no node. */
static void unavailable_publisher_answers_internal(void **state)
{
    (void)state;
    for (int authorized = 0; authorized <= 1; authorized++) {
        ds_store *rep = open_store("rep-epoch-unavail");
        session x;
        session_init(&x, NULL, NULL, rep);
        x.scfg.authorized = authorized;
        x.scfg.rate_limited = 1;
        x.scfg.unavailable = "its store cannot be opened";
        session_start(&x);
        pump_opts o = { .chunks = SEVEN, .nchunks = 1 };
        pump(x.c, x.s, &o, &x.now);
        const char *c, *m;
        assert_int_equal(ds_sync_client_state(x.c), DS_SYNCS_FAILED);
        if (!authorized) {
            assert_int_equal(ds_sync_client_error(x.c, &c, &m), DS_ERR_UNAUTHORIZED);
            assert_string_equal(c, "NotAuthorized");
        } else {
            assert_int_equal(ds_sync_client_error(x.c, &c, &m), DS_ERR_PROTO);
            assert_string_equal(c, "Internal");
            assert_string_equal(m, "Publisher cannot serve now: its store cannot be opened");
            assert_int_equal(ds_sync_server_error(x.s, &c, NULL), DS_ERR_STORE);
        }
        assert_int_equal(count_nodes(rep), 0);
        session_free(&x);
        ds_store_close(rep);
    }
    /* Without a store, share set or cursor seal, a machine must say why. */
    ds_sync_server_cfg bad = { .authorized = 1 };
    ds_sync_server *s = NULL;
    assert_int_equal(ds_sync_server_new(&s, &bad, 0), DS_ERR_INVALID);
    assert_null(s);
    ds_store *pub = open_store("pub-epoch-noseal");
    ds_share_set none = { 0 };
    ds_sync_server_cfg noseal = { .store = pub, .share = &none, .authorized = 1 };
    assert_int_equal(ds_sync_server_new(&s, &noseal, 0), DS_ERR_INVALID);
    assert_null(s);
    noseal.seal = ds_test_seal();
    assert_int_equal(ds_sync_server_new(&s, &noseal, 0), 0);
    ds_sync_server_free(s);
    ds_store_close(pub);
}

static void unknown_version(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-vers01");
    ds_store *rep = open_store("rep-epoch-vers01");
    add(pub, "x", "/p");
    ds_share_set share;
    make_share(&share, "/p", NULL);
    /* A version-2 request, and one whose other fields changed shape too. */
    const uint8_t v2[] = { 0x82, 0xa4, 't', 'y', 'p', 'e', 0xac, 's', 'y', 'n', 'c', '_', 'r', 'e', 'q', 'u', 'e', 's', 't',
                           0xa1, 'v', 0x02 };
    const uint8_t v7[] = { 0x83, 0xa4, 't', 'y', 'p', 'e', 0xac, 's', 'y', 'n', 'c', '_', 'r', 'e', 'q', 'u', 'e', 's', 't',
                           0xa6, 'c', 'u', 'r', 's', 'o', 'r', 0xa3, 'a', 'b', 'c', 0xa1, 'v', 0x07 };
    /* v = 2^40, in a request that parses and in one that does not: the
     * same number either way, never cut to 32 bits. */
    const uint8_t vbig[] = { 0x82, 0xa4, 't', 'y', 'p', 'e', 0xac, 's', 'y', 'n', 'c', '_', 'r', 'e', 'q', 'u', 'e', 's',
                             't', 0xa1, 'v', 0xcf, 0, 0, 0x01, 0, 0, 0, 0, 0 };
    const uint8_t vbigbad[] = { 0x82, 0xa1, 'v', 0xcf, 0, 0, 0x01, 0, 0, 0, 0, 0, 0xa6, 'c', 'u', 'r', 's', 'o', 'r', 0x05 };
    struct { const uint8_t *p; size_t n; const char *text; } cases[] = {
        { v2, sizeof v2, "Unsupported sync protocol version 2; this publisher speaks version 1" },
        { v7, sizeof v7, "Unsupported sync protocol version 7; this publisher speaks version 1" },
        { vbig, sizeof vbig, "Unsupported sync protocol version 1099511627776; this publisher speaks version 1" },
        { vbigbad, sizeof vbigbad, "Unsupported sync protocol version 1099511627776; this publisher speaks version 1" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ds_sync_server *s = new_server(pub, &share, 1);
        ds_buf in = { 0 };
        frame(&in, cases[i].p, cases[i].n);
        assert_int_equal(ds_sync_server_recv(s, in.data, in.len, 0, 1), 0);
        char msg[256];
        expect_server_error(s, "UnsupportedVersion", DS_ERR_VERSION, msg, sizeof msg);
        assert_string_equal(msg, cases[i].text);
        ds_buf_free(&in);
        ds_sync_server_free(s);
    }
    /* The subscriber: an ERROR UnsupportedVersion, then a v2 response. */
    for (int round = 0; round < 2; round++) {
        ds_sync_client *c;
        ds_sync_client_cfg cc = { .replica = rep };
        assert_int_equal(ds_sync_client_new(&c, &cc, 0), 0);
        ds_buf out = { 0 }, in = { 0 }, p = { 0 };
        int fin;
        assert_int_equal(ds_sync_client_send(c, &out, 100, &fin, 1), 0);
        if (round == 0) {
            assert_int_equal(ds_msg_encode_error(&p, "UnsupportedVersion", "Unsupported sync protocol version 1; "
                                                 "this publisher speaks version 2"), 0);
            frame(&in, p.data, p.len);
        } else {
            const uint8_t r2[] = { 0x82, 0xa4, 't', 'y', 'p', 'e', 0xad, 's', 'y', 'n', 'c', '_', 'r', 'e', 's', 'p',
                                   'o', 'n', 's', 'e', 0xa1, 'v', 0x02 };
            frame(&in, r2, sizeof r2);
        }
        assert_int_equal(ds_sync_client_recv(c, in.data, in.len, 1, 2), 0);
        const char *code, *msg;
        assert_int_equal(ds_sync_client_state(c), DS_SYNCS_FAILED);
        assert_int_equal(ds_sync_client_error(c, &code, &msg), DS_ERR_VERSION);
        if (round == 0)
            assert_string_equal(msg, "Unsupported sync protocol version 1; this publisher speaks version 2");
        else
            assert_string_equal(msg, "publisher answered with sync protocol version 2; this build speaks version 1");
        ds_buf_free(&out);
        ds_buf_free(&in);
        ds_buf_free(&p);
        ds_sync_client_free(c);
    }
    ds_share_set_free(&share);
    ds_store_close(pub);
    ds_store_close(rep);
}

static void bad_frames_to_publisher(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-badf01");
    add(pub, "x", "/p");
    ds_share_set share;
    make_share(&share, "/p", NULL);
    char msg[256];

    /* Oversized length prefix: refused before anything is buffered. */
    ds_sync_server *s = new_server(pub, &share, 1);
    const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 'x' };
    assert_int_equal(ds_sync_server_recv(s, huge, sizeof huge, 0, 1), 0);
    expect_server_error(s, "BadRequest", DS_ERR_PROTO, msg, sizeof msg);
    assert_string_equal(msg, "Subscriber sent a frame of 4294967295 bytes, above the limit of 65536 bytes");
    ds_sync_server_free(s);
    /* Just above the request limit. */
    s = new_server(pub, &share, 1);
    uint8_t big[4];
    ds_put_be32(big, DS_SYNC_MAX_REQUEST + 1);
    assert_int_equal(ds_sync_server_recv(s, big, 4, 0, 1), 0);
    expect_server_error(s, "BadRequest", DS_ERR_PROTO, NULL, 0);
    ds_sync_server_free(s);
    /* Unauthorized peers hear only that they are not authorized. */
    s = new_server(pub, &share, 0);
    assert_int_equal(ds_sync_server_recv(s, huge, sizeof huge, 0, 1), 0);
    expect_server_error(s, "NotAuthorized", DS_ERR_UNAUTHORIZED, NULL, 0);
    ds_sync_server_free(s);
    /* Zero-length frame. */
    s = new_server(pub, &share, 1);
    const uint8_t zero[] = { 0, 0, 0, 0 };
    assert_int_equal(ds_sync_server_recv(s, zero, sizeof zero, 0, 1), 0);
    expect_server_error(s, "BadRequest", DS_ERR_PROTO, msg, sizeof msg);
    assert_string_equal(msg, "Subscriber sent a malformed frame (zero length)");
    ds_sync_server_free(s);
    /* Not MessagePack / not a map. */
    s = new_server(pub, &share, 1);
    ds_buf in = { 0 };
    frame(&in, "\xc1garbage", 8);
    assert_int_equal(ds_sync_server_recv(s, in.data, in.len, 0, 1), 0);
    expect_server_error(s, "BadRequest", DS_ERR_PROTO, msg, sizeof msg);
    assert_true(strncmp(msg, "Malformed sync request (", 24) == 0);
    ds_sync_server_free(s);
    /* A well-formed message of the wrong type. */
    s = new_server(pub, &share, 1);
    ds_buf p = { 0 };
    in.len = 0;
    assert_int_equal(ds_msg_encode_error(&p, "Internal", "x"), 0);
    frame(&in, p.data, p.len);
    assert_int_equal(ds_sync_server_recv(s, in.data, in.len, 0, 1), 0);
    expect_server_error(s, "BadRequest", DS_ERR_PROTO, msg, sizeof msg);
    assert_string_equal(msg, "Expected sync_request, got error");
    ds_sync_server_free(s);
    /* A cursor that does not open (here an unknown layout version) means a
     * full sync, not an error. */
    s = new_server(pub, &share, 1);
    uint8_t cur[DS_CURSOR_LEN];
    memset(cur, 0xee, sizeof cur);
    in.len = 0;
    request_frame(&in, cur, 0);
    assert_int_equal(ds_sync_server_recv(s, in.data, in.len, 0, 1), 0);
    ds_buf pg = { 0 };
    int pfin;
    assert_int_equal(ds_sync_server_send(s, &pg, 65536, &pfin, 2), 0);
    assert_true(pfin);
    assert_int_equal(ds_sync_server_state(s), DS_SYNCS_DONE);
    uint64_t sent;
    ds_sync_server_counts(s, &sent, NULL, NULL);
    assert_int_equal(sent, 1);
    ds_buf_free(&pg);
    ds_sync_server_free(s);
    /* A second request (in the same piece, and in a later one). */
    for (int later = 0; later < 2; later++) {
        s = new_server(pub, &share, 1);
        in.len = 0;
        request_frame(&in, NULL, 0);
        size_t one = in.len;
        request_frame(&in, NULL, 0);
        if (later) {
            assert_int_equal(ds_sync_server_recv(s, in.data, one, 0, 1), 0);
            assert_int_equal(ds_sync_server_recv(s, in.data + one, in.len - one, 0, 2), 0);
        } else {
            assert_int_equal(ds_sync_server_recv(s, in.data, in.len, 0, 1), 0);
        }
        expect_server_error(s, "BadRequest", DS_ERR_PROTO, msg, sizeof msg);
        assert_string_equal(msg, "Unexpected data after the request");
        ds_sync_server_free(s);
    }
    /* The stream ends before a request, or inside one. */
    s = new_server(pub, &share, 1);
    assert_int_equal(ds_sync_server_recv(s, NULL, 0, 1, 1), 0);
    expect_server_error(s, "BadRequest", DS_ERR_PROTO, msg, sizeof msg);
    assert_string_equal(msg, "Stream ended before a request");
    ds_sync_server_free(s);
    s = new_server(pub, &share, 1);
    in.len = 0;
    request_frame(&in, NULL, 0);
    assert_int_equal(ds_sync_server_recv(s, in.data, in.len - 1, 1, 1), 0);
    expect_server_error(s, "BadRequest", DS_ERR_PROTO, msg, sizeof msg);
    assert_string_equal(msg, "Stream ended inside a frame");
    /* Bytes after the end of the stream change nothing. */
    assert_int_equal(ds_sync_server_recv(s, in.data, in.len, 0, 2), 0);
    assert_int_equal(ds_sync_server_state(s), DS_SYNCS_FAILED);
    ds_sync_server_free(s);
    /* A subscriber that finishes right after its request is still served. */
    s = new_server(pub, &share, 1);
    in.len = 0;
    request_frame(&in, NULL, 0);
    assert_int_equal(ds_sync_server_recv(s, in.data, in.len, 1, 1), 0);
    ds_buf out = { 0 };
    int fin;
    assert_int_equal(ds_sync_server_send(s, &out, 65536, &fin, 2), 0);
    assert_true(fin);
    assert_int_equal(ds_sync_server_state(s), DS_SYNCS_DONE);
    ds_sync_server_free(s);
    ds_buf_free(&out);
    ds_buf_free(&in);
    ds_buf_free(&p);
    ds_share_set_free(&share);
    ds_store_close(pub);
}

/* The client after it sent its request, plus the serialized pages of a
 * 3-page sync of pub (page size 2). */
static void bad_input_to_subscriber(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-badc01");
    add_many(pub, 6, "node", "/p");
    ds_share_set share;
    make_share(&share, "/p", NULL);
    /* Pages as the publisher sends them. */
    ds_sync_server_cfg scfg = { .store = pub, .share = &share, .seal = ds_test_seal(),
                                .authorized = 1, .page_nodes = 2 };
    ds_sync_server *s;
    assert_int_equal(ds_sync_server_new(&s, &scfg, 0), 0);
    ds_buf rq = { 0 }, pages = { 0 };
    request_frame(&rq, NULL, 0);
    assert_int_equal(ds_sync_server_recv(s, rq.data, rq.len, 0, 0), 0);
    size_t ends[3];
    int fin = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ds_sync_server_send(s, &pages, 1, &fin, 0), 0);
        ends[i] = pages.len;
        assert_int_equal(fin, i == 2);
    }
    ds_sync_server_free(s);

    struct {
        size_t upto;            /* page bytes delivered */
        const char *extra;      /* then these bytes (NULL: none) */
        size_t extra_len;
        int fin, before_send;
        uint64_t nodes_kept;
        const char *msg;
    } cases[] = {
        { 0, NULL, 0, 0, 1, 0, "publisher sent data before the request" },
        { 0, NULL, 0, 1, 0, 0, "stream ended before the last page" },
        { 1, NULL, 0, 1, 0, 2, "stream ended before the last page" },     /* one page applied */
        { 2, NULL, 0, 1, 0, 4, "stream ended before the last page" },
        { 3, "\0\0\0\1\xc0", 5, 0, 0, 6, "publisher sent data after the last page" },
        { 1, "\0\0\0\0", 4, 0, 0, 2, "publisher sent a malformed frame (zero length)" },
        { 1, "\x01\0\0\1", 4, 0, 0, 2, "publisher sent a frame of 16777217 bytes, above the limit of 16777216 bytes" },
        { 1, "\0\0\0\1\xc1", 5, 0, 0, 2, NULL },                          /* malformed message */
        { 1, NULL, 0, 0, 0, 2, "unexpected sync_request message from the publisher" },
        { 1, "\0\0\0\x10partial", 11, 1, 0, 2, "stream ended inside a frame" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ds_store *rep = open_store("rep-epoch-badc01");
        ds_sync_client *c;
        ds_sync_client_cfg cc = { .replica = rep };
        assert_int_equal(ds_sync_client_new(&c, &cc, 0), 0);
        ds_buf out = { 0 };
        if (cases[i].before_send) {
            assert_int_equal(ds_sync_client_recv(c, pages.data, pages.len, 0, 1), 0);
        } else {
            assert_int_equal(ds_sync_client_send(c, &out, 100, &fin, 1), 0);
            size_t upto = cases[i].upto ? ends[cases[i].upto - 1] : 0;
            if (upto) assert_int_equal(ds_sync_client_recv(c, pages.data, upto, 0, 2), 0);
            if (i == 8) assert_int_equal(ds_sync_client_recv(c, rq.data, rq.len, 0, 2), 0);
            if (cases[i].extra)
                assert_int_equal(ds_sync_client_recv(c, (const uint8_t *)cases[i].extra, cases[i].extra_len, 0, 3), 0);
            if (cases[i].fin) assert_int_equal(ds_sync_client_recv(c, NULL, 0, 1, 4), 0);
        }
        const char *code, *msg;
        assert_int_equal(ds_sync_client_state(c), DS_SYNCS_FAILED);
        assert_int_equal(ds_sync_client_error(c, &code, &msg), DS_ERR_PROTO);
        assert_string_equal(code, "");
        if (cases[i].msg) assert_string_equal(msg, cases[i].msg);
        else assert_true(strncmp(msg, "malformed message from the publisher", 36) == 0);
        /* Pages already applied stay applied. */
        assert_int_equal(count_nodes(rep), cases[i].nodes_kept);
        /* A failed subscriber finishes its side once and ignores input. */
        out.len = 0;
        assert_int_equal(ds_sync_client_send(c, &out, 100, &fin, 5), 0);
        assert_true(fin);
        assert_int_equal(ds_sync_client_send(c, &out, 100, &fin, 5), 0);
        assert_false(fin);
        assert_int_equal(ds_sync_client_recv(c, pages.data, pages.len, 1, 6), 0);
        assert_int_equal(ds_sync_client_state(c), DS_SYNCS_FAILED);
        assert_int_equal(ds_sync_client_expiry(c), INT64_MAX);
        ds_buf_free(&out);
        ds_sync_client_free(c);
        ds_store_close(rep);
    }
    ds_buf_free(&rq);
    ds_buf_free(&pages);
    ds_share_set_free(&share);
    ds_store_close(pub);
}

static void page_frames_bounded(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-bigp01");
    ds_store *rep = open_store("rep-epoch-bigp01");
    size_t big = 200 * 1024;
    char *content = malloc(big + 1);
    assert_non_null(content);
    for (int i = 0; i < 12; i++) {
        memset(content, 'a' + i, big);
        content[big] = 0;
        add(pub, content, "/p");
    }
    free(content);
    ds_share_set share;
    make_share(&share, "/p", NULL);
    ds_sync_server_cfg scfg = { .store = pub, .share = &share, .seal = ds_test_seal(),
                                .authorized = 1, .page_bytes = 500 * 1024 };
    ds_sync_server *s;
    assert_int_equal(ds_sync_server_new(&s, &scfg, 0), 0);
    ds_sync_client *c;
    ds_sync_client_cfg cc = { .replica = rep, .page_bytes = 8u << 20 };     /* capped by the publisher */
    assert_int_equal(ds_sync_client_new(&c, &cc, 0), 0);
    ds_buf rq = { 0 }, out = { 0 };
    int fin = 0, cfin;
    assert_int_equal(ds_sync_client_send(c, &rq, 100, &cfin, 0), 0);
    assert_int_equal(ds_sync_server_recv(s, rq.data, rq.len, 0, 0), 0);
    int frames = 0;
    for (int i = 0; i < 50 && !fin; i++) {
        out.len = 0;
        assert_int_equal(ds_sync_server_send(s, &out, 1, &fin, i), 0);
        /* One frame per call with a tiny budget, and never above the page budget + one node. */
        assert_true(out.len > DS_FRAME_HDR_LEN);
        uint32_t fl = ds_get_be32(out.data);
        assert_int_equal(fl + DS_FRAME_HDR_LEN, out.len);
        assert_true(fl <= 500 * 1024 + big + 1024);
        assert_true(fl <= DS_SYNC_MAX_FRAME);
        frames++;
        assert_int_equal(ds_sync_client_recv(c, out.data, out.len, fin, i), 0);
    }
    assert_true(fin);
    assert_true(frames >= 4);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_DONE);
    assert_int_equal(count_nodes(rep), 12);
    ds_buf_free(&rq);
    ds_buf_free(&out);
    ds_sync_client_free(c);
    ds_sync_server_free(s);
    ds_share_set_free(&share);
    ds_store_close(pub);
    ds_store_close(rep);
}

static void timeouts(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-time01");
    ds_store *rep = open_store("rep-epoch-time01");
    add(pub, "x", "/p");
    ds_share_set share;
    make_share(&share, "/p", NULL);
    /* Publisher: a silent subscriber. */
    ds_sync_server_cfg scfg = { .store = pub, .share = &share, .seal = ds_test_seal(),
                                .authorized = 1, .timeout_ms = 5000 };
    ds_sync_server *s;
    assert_int_equal(ds_sync_server_new(&s, &scfg, 1000), 0);
    assert_int_equal(ds_sync_server_expiry(s), 6000);
    ds_sync_server_handle_expiry(s, 5999);
    assert_int_equal(ds_sync_server_state(s), DS_SYNCS_RUNNING);
    const uint8_t one = 0;
    assert_int_equal(ds_sync_server_recv(s, &one, 1, 0, 3000), 0);   /* progress */
    assert_int_equal(ds_sync_server_expiry(s), 8000);
    ds_sync_server_handle_expiry(s, 6000);
    assert_int_equal(ds_sync_server_state(s), DS_SYNCS_RUNNING);
    ds_sync_server_handle_expiry(s, 8000);
    assert_int_equal(ds_sync_server_state(s), DS_SYNCS_FAILED);
    const char *code, *msg;
    assert_int_equal(ds_sync_server_error(s, &code, &msg), DS_ERR_TIMEOUT);
    assert_string_equal(code, "");
    assert_string_equal(msg, "No progress for 5000 ms");
    assert_int_equal(ds_sync_server_expiry(s), INT64_MAX);
    ds_sync_server_free(s);
    /* Publisher: a subscriber that stops reading (send() never called again). */
    ds_sync_server_cfg scfg2 = { .store = pub, .share = &share, .seal = ds_test_seal(),
                                 .authorized = 1 };
    assert_int_equal(ds_sync_server_new(&s, &scfg2, 0), 0);
    ds_buf rq = { 0 };
    request_frame(&rq, NULL, 0);
    assert_int_equal(ds_sync_server_recv(s, rq.data, rq.len, 0, 10), 0);
    assert_int_equal(ds_sync_server_expiry(s), 10 + DS_SYNC_DEFAULT_TIMEOUT_MS);
    ds_sync_server_handle_expiry(s, 10 + DS_SYNC_DEFAULT_TIMEOUT_MS);
    assert_int_equal(ds_sync_server_error(s, NULL, NULL), DS_ERR_TIMEOUT);
    ds_sync_server_free(s);
    /* Subscriber: a silent publisher, after one partial frame of progress. */
    ds_sync_client *c;
    ds_sync_client_cfg cc = { .replica = rep, .timeout_ms = 2000 };
    assert_int_equal(ds_sync_client_new(&c, &cc, 100), 0);
    ds_buf out = { 0 };
    int fin;
    assert_int_equal(ds_sync_client_send(c, &out, 100, &fin, 500), 0);
    assert_int_equal(ds_sync_client_expiry(c), 2500);
    const uint8_t hdr[] = { 0, 0 };
    assert_int_equal(ds_sync_client_recv(c, hdr, 2, 0, 1500), 0);
    assert_int_equal(ds_sync_client_expiry(c), 3500);
    ds_sync_client_handle_expiry(c, 3499);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_RUNNING);
    ds_sync_client_handle_expiry(c, 3500);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_FAILED);
    assert_int_equal(ds_sync_client_error(c, &code, &msg), DS_ERR_TIMEOUT);
    assert_string_equal(msg, "no progress from the publisher for 2000 ms");
    assert_int_equal(count_nodes(rep), 0);
    ds_sync_client_free(c);
    ds_buf_free(&rq);
    ds_buf_free(&out);
    ds_share_set_free(&share);
    ds_store_close(pub);
    ds_store_close(rep);
}

static void bad_config(void **state)
{
    (void)state;
    ds_sync_server *s = (ds_sync_server *)1;
    ds_sync_client *c = (ds_sync_client *)1;
    ds_sync_server_cfg scfg = { 0 };
    ds_sync_client_cfg ccfg = { 0 };
    assert_int_equal(ds_sync_server_new(&s, &scfg, 0), DS_ERR_INVALID);
    assert_null(s);
    assert_int_equal(ds_sync_client_new(&c, &ccfg, 0), DS_ERR_INVALID);
    assert_null(c);
    ds_sync_server_free(NULL);
    ds_sync_client_free(NULL);
}

/* Splits the publisher's whole answer into frames: offsets and lengths. */
static size_t split_frames(const ds_buf *b, size_t *off, size_t *len, size_t cap)
{
    size_t n = 0, at = 0;
    while (at < b->len) {
        assert_true(n < cap);
        assert_true(b->len - at >= DS_FRAME_HDR_LEN);
        uint32_t l = ds_get_be32(b->data + at);
        off[n] = at;
        len[n] = DS_FRAME_HDR_LEN + l;
        at += len[n++];
    }
    assert_int_equal(at, b->len);
    return n;
}

static void assert_cursor_of(ds_store *rep, const uint8_t *frame_at, size_t frame_len)
{
    ds_msg m;
    assert_int_equal(ds_msg_decode(frame_at + DS_FRAME_HDR_LEN, frame_len - DS_FRAME_HDR_LEN, &m), 0);
    uint8_t cur[DS_CURSOR_LEN];
    int has = 0;
    assert_int_equal(ds_sync_cursor_get(rep, cur, &has), 0);
    assert_true(has);
    assert_memory_equal(cur, m.cursor, DS_CURSOR_LEN);
    ds_msg_free(&m);
}

/* hold_ms / batch_nodes: pages wait (decoded) until the batch is full or
 * held long enough, then go in with ONE cursor; the last page, an error
 * and the end of the stream apply what is held at once. */
static void batched_apply(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-batch1");
    add_many(pub, 250, "batched", "/b");
    ds_share_set share;
    make_share(&share, "/b", NULL);
    ds_sync_server_cfg scfg = { .store = pub, .share = &share, .seal = ds_test_seal(),
                                .authorized = 1, .page_nodes = 10 };
    ds_sync_server *s;
    assert_int_equal(ds_sync_server_new(&s, &scfg, 0), 0);
    ds_store *rep = open_store("rep-epoch-batch1");
    ds_sync_client_cfg cc = { .replica = rep, .batch_nodes = 50, .hold_ms = 1000 };
    ds_sync_client *c;
    assert_int_equal(ds_sync_client_new(&c, &cc, 0), 0);
    ds_buf req = { 0 }, resp = { 0 };
    int fin = 0;
    assert_int_equal(ds_sync_client_send(c, &req, 65536, &fin, 1), 0);
    assert_int_equal(ds_sync_server_recv(s, req.data, req.len, 0, 1), 0);
    for (int i = 0; i < 100 && !fin; i++)
        assert_int_equal(ds_sync_server_send(s, &resp, 1u << 20, &fin, 2), 0);
    assert_true(fin);
    size_t off[64], len[64];
    assert_int_equal(split_frames(&resp, off, len, 64), 25);
    const uint8_t *r = resp.data;
    ds_sync_progress pr;

    /* 30 nodes: held, nothing written, the hold shows in expiry(). */
    for (int i = 0; i < 3; i++)
        assert_int_equal(ds_sync_client_recv(c, r + off[i], len[i], 0, 10), 0);
    ds_sync_client_progress(c, &pr);
    assert_int_equal(pr.pages, 0);
    assert_int_equal(count_nodes(rep), 0);
    assert_int_equal(ds_sync_client_expiry(c), 10 + 1000);
    ds_sync_client_handle_expiry(c, 500);
    assert_int_equal(count_nodes(rep), 0);
    /* 50 nodes: the batch is full and goes in with page 5's cursor. */
    assert_int_equal(ds_sync_client_recv(c, r + off[3], len[3] + len[4], 0, 20), 0);
    ds_sync_client_progress(c, &pr);
    assert_int_equal(pr.pages, 5);
    assert_int_equal(pr.nodes_received, 50);
    assert_int_equal(pr.nodes_new, 50);
    assert_int_equal(count_nodes(rep), 50);
    assert_cursor_of(rep, r + off[4], len[4]);
    /* One page held past hold_ms. */
    assert_int_equal(ds_sync_client_recv(c, r + off[5], len[5], 0, 30), 0);
    assert_int_equal(count_nodes(rep), 50);
    assert_int_equal(ds_sync_client_expiry(c), 30 + 1000);
    ds_sync_client_handle_expiry(c, 1029);
    assert_int_equal(count_nodes(rep), 50);
    ds_sync_client_handle_expiry(c, 1030);
    assert_int_equal(count_nodes(rep), 60);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_RUNNING);
    assert_cursor_of(rep, r + off[5], len[5]);
    /* The rest in one piece: the last page is applied before recv returns. */
    assert_int_equal(ds_sync_client_recv(c, r + off[6], resp.len - off[6], 1, 40), 0);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_DONE);
    ds_sync_client_progress(c, &pr);
    assert_int_equal(pr.pages, 25);
    assert_int_equal(pr.nodes_new, 250);
    assert_exact_set(pub, &share, rep);
    assert_cursor_of(rep, r + off[24], len[24]);
    ds_sync_client_free(c);
    ds_store_close(rep);

    /* Held pages are applied when a protocol error ends the machine. */
    rep = open_store("rep-epoch-batch2");
    cc.replica = rep;
    assert_int_equal(ds_sync_client_new(&c, &cc, 0), 0);
    ds_buf req2 = { 0 };
    assert_int_equal(ds_sync_client_send(c, &req2, 65536, &fin, 1), 0);
    assert_int_equal(ds_sync_client_recv(c, r + off[0], len[0] + len[1], 0, 10), 0);
    assert_int_equal(count_nodes(rep), 0);
    const uint8_t junk[] = { 0, 0, 0, 2, 0xc1, 0xc1 };
    assert_int_equal(ds_sync_client_recv(c, junk, sizeof junk, 0, 11), 0);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_FAILED);
    assert_int_equal(ds_sync_client_error(c, NULL, NULL), DS_ERR_PROTO);
    assert_int_equal(count_nodes(rep), 20);
    assert_cursor_of(rep, r + off[1], len[1]);
    ds_sync_client_free(c);
    ds_store_close(rep);

    /* ... and when the stream ends early (FIN before the last page). */
    rep = open_store("rep-epoch-batch3");
    cc.replica = rep;
    assert_int_equal(ds_sync_client_new(&c, &cc, 0), 0);
    req2.len = 0;
    assert_int_equal(ds_sync_client_send(c, &req2, 65536, &fin, 1), 0);
    assert_int_equal(ds_sync_client_recv(c, r + off[0], len[0] + len[1] + len[2], 1, 10), 0);
    assert_int_equal(ds_sync_client_state(c), DS_SYNCS_FAILED);
    assert_int_equal(count_nodes(rep), 30);
    ds_sync_client_free(c);
    ds_store_close(rep);

    ds_buf_free(&req);
    ds_buf_free(&req2);
    ds_buf_free(&resp);
    ds_sync_server_free(s);
    ds_share_set_free(&share);
    ds_store_close(pub);
}

/* A batched full sync through the pump (pages of 7, batches of 40, held
 * 5 ms) of |pub|'s 230 shared nodes into a new replica: the exact set,
 * no canary, progress counting every page. */
static void pump_batched(ds_store *pub, const ds_share_set *share, const char *rep_epoch,
                         int apply_thread)
{
    ds_store *rep = open_store(rep_epoch);
    session x;
    session_init(&x, pub, share, rep);
    x.scfg.page_nodes = 7;
    x.ccfg.batch_nodes = 40;
    x.ccfg.hold_ms = 5;
    x.ccfg.apply_thread = apply_thread;
    session_start(&x);
    pump_opts o = { .chunks = MIXED, .nchunks = 6 };
    pump(x.c, x.s, &o, &x.now);
    assert_int_equal(ds_sync_client_state(x.c), DS_SYNCS_DONE);
    ds_sync_progress p;
    ds_sync_client_progress(x.c, &p);
    assert_int_equal(p.nodes_new, 230);
    assert_int_equal(p.pages, 33);
    assert_exact_set(pub, share, rep);      /* no wait: DONE means applied */
    assert_false(has_content(rep, "CANARY"));
    session_free(&x);
    ds_store_close(rep);
}

static void batched_pump(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-batch4");
    add_many(pub, 230, "pumped", "/q");
    add(pub, "CANARY unshared", "/nope");
    ds_share_set share;
    make_share(&share, "/q", NULL);
    pump_batched(pub, &share, "rep-epoch-batch4", 0);
    ds_share_set_free(&share);
    ds_store_close(pub);
}

/* apply_thread: batches are applied on a second thread while the next
 * arrives.  The result is the same as on one thread: whole sync, a cut
 * (every batch handed over is in when the machine is freed, and the
 * cursor matches), a stop (ds_sync_client_stop: counted exactly), and a
 * store failure that fails the machine with the
 * store's error and lets a later sync finish exactly. */
static void threaded_apply(void **state)
{
    (void)state;
    ds_store *pub = open_store("pub-epoch-thrd01");
    add_many(pub, 230, "threaded", "/t");
    add(pub, "CANARY unshared", "/nope");
    ds_share_set share;
    make_share(&share, "/t", NULL);
    pump_batched(pub, &share, "rep-epoch-thrd01", 1);

    ds_store *rep;
    session x;
    pump_opts o = { .chunks = MIXED, .nchunks = 6 };
    ds_sync_progress p;

    /* Cut after some batches: what went in matches the cursor, so the
     * next sync fetches exactly the rest. */
    rep = open_store("rep-epoch-thrd02");
    session_init(&x, pub, &share, rep);
    x.scfg.page_nodes = 7;
    x.ccfg.batch_nodes = 40;
    x.ccfg.apply_thread = 1;
    session_start(&x);
    o.stop_after_pages = 10;
    pump(x.c, x.s, &o, &x.now);
    session_free(&x);
    uint64_t before = count_nodes(rep);
    assert_true(before >= 70 && before < 230);
    p = sync_ok(pub, &share, rep, 0, SEVEN, 1, NULL);
    assert_int_equal(p.nodes_new, 230 - before);
    assert_int_equal(p.nodes_received, 230 - before);
    assert_exact_set(pub, &share, rep);
    ds_store_close(rep);

    /* Stopped mid-way (a user's Ctrl-C): the batches handed over go in
     * and are counted, held pages are dropped, so the progress says
     * exactly what the replica got; the machine is FAILED, CANCELLED,
     * ignores later input, and the next sync fetches exactly the rest. */
    for (int thread = 0; thread < 2; thread++) {
        rep = open_store(thread ? "rep-epoch-stop01" : "rep-epoch-stop00");
        session_init(&x, pub, &share, rep);
        x.scfg.page_nodes = 7;
        x.ccfg.batch_nodes = 40;
        x.ccfg.hold_ms = 1000000;        /* pages wait for a full batch */
        x.ccfg.apply_thread = thread;
        session_start(&x);
        pump_opts so = { .chunks = SEVEN, .nchunks = 1, .stop_after_pages = 10 };
        pump(x.c, x.s, &so, &x.now);
        ds_sync_client_stop(x.c);
        assert_int_equal(ds_sync_client_state(x.c), DS_SYNCS_FAILED);
        const char *scode, *smsg;
        assert_int_equal(ds_sync_client_error(x.c, &scode, &smsg), DS_ERR_CANCELLED);
        assert_string_equal(scode, "");
        ds_sync_client_progress(x.c, &p);
        assert_true(p.nodes_received >= 70 && p.nodes_received < 230);
        assert_int_equal(p.nodes_received % 42, 0);   /* whole batches of 6 pages of 7 */
        assert_int_equal(count_nodes(rep), p.nodes_new);
        uint8_t junk[8] = { 0, 0, 0, 4, 1, 2, 3, 4 };
        assert_int_equal(ds_sync_client_recv(x.c, junk, sizeof junk, 1, x.now), 0);
        assert_int_equal(ds_sync_client_error(x.c, &scode, &smsg), DS_ERR_CANCELLED);
        session_free(&x);
        assert_int_equal(count_nodes(rep), p.nodes_new);
        ds_sync_progress q = sync_ok(pub, &share, rep, 0, SEVEN, 1, NULL);
        assert_int_equal(q.nodes_new, 230 - p.nodes_new);
        assert_exact_set(pub, &share, rep);
        ds_store_close(rep);
    }

    /* A batch that cannot be written fails the machine with the store's
     * error, however the stream goes on. */
    rep = open_store("rep-epoch-thrd03");
    ds_store_fail_after(rep, 300);
    session_init(&x, pub, &share, rep);
    x.scfg.page_nodes = 7;
    x.ccfg.batch_nodes = 40;
    x.ccfg.apply_thread = 1;
    session_start(&x);
    o.stop_after_pages = 0;
    pump(x.c, x.s, &o, &x.now);
    assert_int_equal(ds_sync_client_state(x.c), DS_SYNCS_FAILED);
    const char *code, *msg;
    assert_int_equal(ds_sync_client_error(x.c, &code, &msg), DS_ERR_INJECTED);
    assert_string_equal(code, "");
    assert_non_null(strstr(msg, "could not write the replica"));
    ds_sync_client_progress(x.c, &p);
    assert_true(p.nodes_new < 230);
    assert_int_equal(count_nodes(rep), p.nodes_new);
    session_free(&x);
    assert_int_equal(count_nodes(rep), p.nodes_new);   /* nothing after the failure */
    ds_store_fail_after(rep, 0);
    ds_sync_progress q = sync_ok(pub, &share, rep, 0, SEVEN, 1, NULL);
    assert_int_equal(q.nodes_new, 230 - p.nodes_new);
    assert_exact_set(pub, &share, rep);
    ds_store_close(rep);

    ds_share_set_free(&share);
    ds_store_close(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_sync_in_pages),
        cmocka_unit_test(partial_frames),
        cmocka_unit_test(resume_after_cut),
        cmocka_unit_test(trailing_unshared_nodes),
        cmocka_unit_test(incremental_later_full_reset),
        cmocka_unit_test(not_authorized_and_rate_limited),
        cmocka_unit_test(unavailable_publisher_answers_internal),
        cmocka_unit_test(unknown_version),
        cmocka_unit_test(bad_frames_to_publisher),
        cmocka_unit_test(bad_input_to_subscriber),
        cmocka_unit_test(page_frames_bounded),
        cmocka_unit_test(timeouts),
        cmocka_unit_test(bad_config),
        cmocka_unit_test(batched_apply),
        cmocka_unit_test(batched_pump),
        cmocka_unit_test(threaded_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
