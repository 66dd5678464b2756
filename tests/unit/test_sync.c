/*
 * test_sync.c - the sync engine buffer to buffer: share matching on path
 * boundaries, cursor and message codecs (including hostile input and an
 * unknown version), and publisher -> subscriber paging over real stores:
 * exact shared set, no canary, incremental, a project shared later, a
 * reset publisher, equal timestamps at page edges, resume after a crash.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sync.h"
#include "core/store_int.h"
#include "core/util.h"
#include "ds/search.h"

#include <msgpack.h>

static ds_store *open_store(const char *epoch)
{
    ds_store *st;
    ds_store_opts o = { .epoch_seed = (const uint8_t *)epoch };
    assert_int_equal(ds_store_open(&st, ds_test_tmpdir(), &o), 0);
    return st;
}

static void share_matching(void **state)
{
    (void)state;
    const char *roots[] = { "/a/proj", "/b", "/a/proj" };
    ds_share_set s, t;
    assert_int_equal(ds_share_set_init(&s, roots, 3), 0);
    assert_int_equal(s.n, 2);
    assert_true(ds_share_set_contains(&s, "/a/proj"));
    assert_true(ds_share_set_contains(&s, "/a/proj/sub/dir"));
    assert_false(ds_share_set_contains(&s, "/a/proj-x"));
    assert_false(ds_share_set_contains(&s, "/a/pro"));
    assert_false(ds_share_set_contains(&s, ""));
    assert_true(ds_share_set_contains(&s, "/b/c"));
    assert_int_equal(ds_share_set_init(&t, roots, 1), 0);
    assert_memory_not_equal(s.digest, t.digest, DS_SHARE_DIGEST_LEN);
    const char *rev[] = { "/b", "/a/proj" };
    ds_share_set u;
    assert_int_equal(ds_share_set_init(&u, rev, 2), 0);
    assert_memory_equal(s.digest, u.digest, DS_SHARE_DIGEST_LEN);   /* order-free */
    const char *rel[] = { "relative/path" };
    ds_share_set v;
    assert_int_equal(ds_share_set_init(&v, rel, 1), DS_ERR_INVALID);
    ds_share_set_free(&s);
    ds_share_set_free(&t);
    ds_share_set_free(&u);
}

static void message_codec(void **state)
{
    (void)state;
    ds_cursor c = { .seq = 77 };
    memset(c.epoch, 5, sizeof c.epoch);
    memset(c.digest, 9, sizeof c.digest);
    ds_cursor d = c;
    d.seq = 0;
    uint8_t cb[DS_CURSOR_LEN], cb2[DS_CURSOR_LEN];
    ds_cursor_encode(&c, ds_test_seal(), cb);
    assert_int_equal(cb[0], 2);                            /* layout version */
    assert_int_equal(ds_cursor_decode(cb, sizeof cb, ds_test_seal(), &d), 0);
    assert_int_equal(d.seq, 77);
    assert_int_equal(ds_cursor_decode(cb, sizeof cb - 1, ds_test_seal(), &d), DS_ERR_MALFORMED);
    /* Sealed: the same cursor twice gives other bytes (a fresh nonce), and
     * the sequence is nowhere in them in the clear. */
    ds_cursor_encode(&c, ds_test_seal(), cb2);
    assert_memory_not_equal(cb, cb2, DS_CURSOR_LEN);
    d.seq = 0;
    assert_int_equal(ds_cursor_decode(cb2, sizeof cb2, ds_test_seal(), &d), 0);
    assert_int_equal(d.seq, 77);
    uint8_t be[8];
    ds_put_be64(be, 77);
    for (size_t i = 0; i + 8 <= DS_CURSOR_LEN; i++)
        assert_memory_not_equal(cb + i, be, 8);
    /* It opens only for its epoch and share set, under its key, unaltered. */
    ds_cursor e = d;
    e.epoch[3] ^= 1;
    assert_int_equal(ds_cursor_decode(cb, sizeof cb, ds_test_seal(), &e), DS_ERR_MALFORMED);
    e = d;
    e.digest[15] ^= 1;
    assert_int_equal(ds_cursor_decode(cb, sizeof cb, ds_test_seal(), &e), DS_ERR_MALFORMED);
    ds_cursor_seal other;
    ds_test_seal_make(&other, 0x5b);
    assert_int_equal(ds_cursor_decode(cb, sizeof cb, &other, &d), DS_ERR_MALFORMED);
    for (size_t i = 0; i < DS_CURSOR_LEN; i++) {
        uint8_t x[DS_CURSOR_LEN];
        memcpy(x, cb, sizeof x);
        x[i] ^= 0x40;
        assert_int_equal(ds_cursor_decode(x, sizeof x, ds_test_seal(), &d), DS_ERR_MALFORMED);
    }
    ds_cursor_seal_wipe(&other);

    ds_buf b = { 0 };
    ds_msg m;
    assert_int_equal(ds_msg_encode_request(&b, cb, 10, 5000), 0);
    assert_int_equal(ds_msg_decode(b.data, b.len, &m), 0);
    assert_int_equal(m.type, DS_MSG_SYNC_REQUEST);
    assert_true(m.has_cursor);
    assert_memory_equal(m.cursor, cb, DS_CURSOR_LEN);
    assert_int_equal(m.max_nodes, 10);
    assert_int_equal(m.max_bytes, 5000);
    ds_msg_free(&m);
    /* every truncation is rejected without a crash */
    for (size_t cut = 0; cut < b.len; cut++)
        assert_true(ds_msg_decode(b.data, cut, &m) < 0);
    b.len = 0;
    assert_int_equal(ds_msg_encode_error(&b, DS_SYNC_E_NOT_AUTHORIZED, "Peer x not authorized"), 0);
    assert_int_equal(ds_msg_decode(b.data, b.len, &m), 0);
    assert_int_equal(m.type, DS_MSG_ERROR);
    assert_string_equal(m.code, "NotAuthorized");
    assert_string_equal(m.message, "Peer x not authorized");
    ds_msg_free(&m);
    /* A future protocol version is recognised as such. */
    const uint8_t v2[] = { 0x82, 0xa4, 't', 'y', 'p', 'e', 0xac, 's', 'y', 'n', 'c', '_', 'r', 'e', 'q', 'u', 'e', 's', 't',
                           0xa1, 'v', 0x02 };
    assert_int_equal(ds_msg_decode(v2, sizeof v2, &m), DS_ERR_VERSION);
    assert_int_equal(m.type, DS_MSG_SYNC_REQUEST);
    assert_int_equal(m.version, 2);
    const uint8_t bogus[] = { 0x81, 0xa4, 't', 'y', 'p', 'e', 0xa3, 'x', 'y', 'z' };
    assert_int_equal(ds_msg_decode(bogus, sizeof bogus, &m), DS_ERR_MALFORMED);
    ds_buf_free(&b);
}

/* Runs a full publisher -> subscriber exchange; returns nodes inserted. */
static size_t sync_all(ds_store *pubst, const ds_share_set *share, ds_store *rep,
                       uint32_t page, int max_rounds)
{
    size_t total = 0;
    for (int round = 0; round < max_rounds; round++) {
        uint8_t cur[DS_CURSOR_LEN];
        int has;
        assert_int_equal(ds_sync_cursor_get(rep, cur, &has), 0);
        ds_buf req = { 0 }, resp = { 0 };
        assert_int_equal(ds_msg_encode_request(&req, has ? cur : NULL, page, 0), 0);
        ds_msg rq, rs;
        assert_int_equal(ds_msg_decode(req.data, req.len, &rq), 0);
        assert_int_equal(ds_sync_publish(pubst, ds_test_seal(), share, &rq, &resp, NULL), 0);
        assert_int_equal(ds_msg_decode(resp.data, resp.len, &rs), 0);
        assert_true(rs.nnodes <= page);
        size_t ins = 0;
        assert_int_equal(ds_sync_apply(rep, &rs, &ins), 0);
        total += ins;
        int more = rs.has_more;
        ds_msg_free(&rq);
        ds_msg_free(&rs);
        ds_buf_free(&req);
        ds_buf_free(&resp);
        if (!more) return total;
    }
    fail_msg("sync did not finish in %d rounds", max_rounds);
    return total;
}

static int has_content(ds_store *st, const char *needle)
{
    ds_node got;
    ds_store_info info;
    ds_store_info_get(st, &info);
    for (uint64_t s = 1; s <= info.last_seq; s++) {
        if (ds_store_get_seq(st, s, &got)) continue;
        int hit = strstr(got.content, needle) != NULL;
        ds_node_free(&got);
        if (hit) return 1;
    }
    return 0;
}

static void add(ds_store *st, const char *content, const char *project, int64_t ts)
{
    ds_node n;
    ds_test_make_node(&n, content, project);
    n.timestamp = ts;
    assert_int_equal(ds_store_put(st, &n), 0);
    ds_node_free(&n);
}

static void publish_and_apply(void **state)
{
    (void)state;
    ds_store *alice = open_store("alice-epoch-0001");
    ds_store *bob = open_store("bob-replica-0001");
    for (int i = 0; i < 10; i++) {
        char t[64];
        snprintf(t, sizeof t, "shared node %d", i);
        add(alice, t, i % 2 ? "/a/proj" : "/a/proj/sub", 1000);   /* equal timestamps */
    }
    add(alice, "CANARY sibling private", "/a/proj-x", 1000);
    add(alice, "CANARY unshared private", "/home/secret", 1000);
    add(alice, "later project old node", "/c/later", 1000);
    const char *roots[] = { "/a/proj" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);

    /* Full sync in pages of 3: exactly the ten shared nodes. */
    assert_int_equal(sync_all(alice, &share, bob, 3, 50), 10);
    ds_store_info bi;
    assert_int_equal(ds_store_info_get(bob, &bi), 0);
    assert_int_equal(bi.node_count, 10);
    assert_false(has_content(bob, "CANARY"));
    /* Incremental: only the new node travels. */
    add(alice, "shared node new", "/a/proj", 1000);
    assert_int_equal(sync_all(alice, &share, bob, 3, 50), 1);
    assert_int_equal(sync_all(alice, &share, bob, 3, 50), 0);
    /* A project shared later reaches bob with its old nodes. */
    const char *roots2[] = { "/a/proj", "/c/later" };
    ds_share_set share2;
    assert_int_equal(ds_share_set_init(&share2, roots2, 2), 0);
    assert_int_equal(sync_all(alice, &share2, bob, 4, 50), 1);
    assert_true(has_content(bob, "later project old node"));
    assert_false(has_content(bob, "CANARY"));
    /* Full re-sync (cursor reset) re-fetches without duplicates. */
    assert_int_equal(ds_sync_cursor_reset(bob), 0);
    assert_int_equal(sync_all(alice, &share2, bob, 5, 50), 0);
    assert_int_equal(ds_store_info_get(bob, &bi), 0);
    assert_int_equal(bi.node_count, 12);
    /* A reset publisher (new epoch) makes the next sync start over. */
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(alice, &tx), 0);
    assert_int_equal(ds_wtxn_clear(tx, (const uint8_t *)"alice-epoch-0002"), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    add(alice, "after reset", "/a/proj", 5);
    assert_int_equal(sync_all(alice, &share2, bob, 5, 50), 1);
    assert_true(has_content(bob, "after reset"));
    ds_share_set_free(&share);
    ds_share_set_free(&share2);
    ds_store_close(alice);
    ds_store_close(bob);
}

/* The publisher writes a page's records after room for its head: a full
 * page (array16 header) and a short last one (fixarray, records moved
 * down) both come out as exact messages after what |out| held before. */
static void publish_page_heads(void **state)
{
    (void)state;
    ds_store *alice = open_store("alice-epoch-head");
    for (int i = 0; i < 25; i++) {
        char t[64];
        snprintf(t, sizeof t, "head test node %d", i);
        add(alice, t, "/a/proj", 1000 + i);
    }
    add(alice, "CANARY not shared", "/b", 2000);
    const char *roots[] = { "/a/proj" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    static const uint8_t prefix[5] = { 9, 8, 7, 6, 5 };
    uint8_t cur[DS_CURSOR_LEN];
    size_t want[3] = { 20, 5, 0 }, seen = 0;
    for (int i = 0; i < 3; i++) {
        ds_buf req = { 0 }, resp = { 0 };
        assert_int_equal(ds_msg_encode_request(&req, i ? cur : NULL, 20, 0), 0);
        ds_msg rq, rs;
        assert_int_equal(ds_msg_decode(req.data, req.len, &rq), 0);
        assert_int_equal(ds_buf_append(&resp, prefix, sizeof prefix), 0);
        ds_publish_stats ps;
        assert_int_equal(ds_sync_publish(alice, ds_test_seal(), &share, &rq, &resp, &ps), 0);
        assert_memory_equal(resp.data, prefix, sizeof prefix);
        assert_int_equal(ds_msg_decode(resp.data + sizeof prefix, resp.len - sizeof prefix, &rs),
                         0);
        assert_int_equal(rs.nnodes, want[i]);
        assert_int_equal(ps.sent, want[i]);
        assert_int_equal(rs.has_more, i == 0);
        /* the array header is the shortest one: 0xdc + 2 bytes for 20,
         * one byte for 5 and 0 */
        size_t recs = 0;
        for (size_t k = 0; k < rs.nnodes; k++) {
            char t[64];
            snprintf(t, sizeof t, "head test node %zu", seen + k);
            assert_string_equal(rs.nodes[k].content, t);
            recs += rs.spans[k].len;
        }
        size_t tail = resp.len - recs;
        if (want[i] >= 16) assert_int_equal(resp.data[tail - 3], 0xdc);
        else assert_int_equal(resp.data[tail - 1], 0x90 | want[i]);
        seen += rs.nnodes;
        memcpy(cur, rs.cursor, DS_CURSOR_LEN);
        ds_msg_free(&rq);
        ds_msg_free(&rs);
        ds_buf_free(&req);
        ds_buf_free(&resp);
    }
    assert_int_equal(seen, 25);
    ds_share_set_free(&share);
    ds_store_close(alice);
}

/* Publishes |alice|'s shared nodes as |n| consecutive pages of 3 nodes,
 * decoded as a subscriber receives them; the last has has_more false. */
static void fetch_pages(ds_store *alice, const ds_share_set *share, ds_msg *pages, int n)
{
    uint8_t cur[DS_CURSOR_LEN];
    for (int i = 0; i < n; i++) {
        ds_buf req = { 0 }, resp = { 0 };
        assert_int_equal(ds_msg_encode_request(&req, i ? cur : NULL, 3, 0), 0);
        ds_msg rq;
        assert_int_equal(ds_msg_decode(req.data, req.len, &rq), 0);
        assert_int_equal(ds_sync_publish(alice, ds_test_seal(), share, &rq, &resp, NULL), 0);
        assert_int_equal(ds_msg_decode(resp.data, resp.len, &pages[i]), 0);
        assert_int_equal(pages[i].nnodes, 3);
        assert_int_equal(pages[i].has_more, i < n - 1);
        memcpy(cur, pages[i].cursor, DS_CURSOR_LEN);
        ds_msg_free(&rq);
        ds_buf_free(&req);
        ds_buf_free(&resp);
    }
}

/* Several pages in one transaction: all their nodes, the last cursor;
 * bad arguments write nothing. */
static void apply_pages_together(void **state)
{
    (void)state;
    ds_store *alice = open_store("alice-epoch-0009");
    ds_store *bob = open_store("bob-replica-0009");
    for (int i = 0; i < 9; i++) {
        char t[64];
        snprintf(t, sizeof t, "paged node %d", i);
        add(alice, t, "/p", 1000 + i);
    }
    const char *roots[] = { "/p" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    ds_msg pages[3];
    uint8_t cur[DS_CURSOR_LEN];
    int has = 0;
    fetch_pages(alice, &share, pages, 3);
    size_t ins = 99;
    assert_int_equal(ds_sync_apply_pages(bob, pages, 0, &ins), DS_ERR_INVALID);
    assert_int_equal(ins, 0);
    ds_msg bad = pages[1];
    bad.has_cursor = 0;
    ds_msg mixed[2] = { pages[0], bad };
    assert_int_equal(ds_sync_apply_pages(bob, mixed, 2, &ins), DS_ERR_INVALID);
    ds_store_info bi;
    assert_int_equal(ds_store_info_get(bob, &bi), 0);
    assert_int_equal(bi.node_count, 0);
    assert_int_equal(ds_sync_cursor_get(bob, cur, &has), 0);
    assert_false(has);

    assert_int_equal(ds_sync_apply_pages(bob, pages, 3, &ins), 0);
    assert_int_equal(ins, 9);
    assert_int_equal(ds_store_info_get(bob, &bi), 0);
    assert_int_equal(bi.node_count, 9);
    assert_int_equal(ds_sync_cursor_get(bob, cur, &has), 0);
    assert_true(has);
    assert_memory_equal(cur, pages[2].cursor, DS_CURSOR_LEN);
    /* Again: nothing new, first copies kept. */
    assert_int_equal(ds_sync_apply_pages(bob, pages + 1, 2, &ins), 0);
    assert_int_equal(ins, 0);
    for (int i = 0; i < 3; i++) ds_msg_free(&pages[i]);
    ds_share_set_free(&share);
    ds_store_close(alice);
    ds_store_close(bob);
}


/* The applier's view while it commits a batch, from the next-batch
 * callback: the guess state of the replica and the pages to hand over. */
typedef struct next_probe {
    ds_store *rep;
    const ds_msg *pages;
    size_t n;
    int calls, state;
    size_t k, guessed;
} next_probe;

static const ds_msg *probe_next(void *ud, size_t *n)
{
    next_probe *p = ud;
    p->calls++;
    p->state = p->rep->ahead.state;
    p->k = p->rep->ahead.k;
    p->guessed = p->rep->ahead.n;
    *n = p->n;
    return p->pages;
}

/* Batches applied back to back, the next one tokenized while the first
 * commits: the claiming batch uses the work (every node as guessed), and
 * replicas come out the same as with ds_sync_apply_pages, also when some
 * guessed nodes are already there or the claim is stale. */
static void apply_pages_ahead(void **state)
{
    (void)state;
    ds_store *alice = open_store("alice-epoch-0010");
    for (int i = 0; i < 12; i++) {
        char t[64];
        snprintf(t, sizeof t, "ahead%02d node text%s", i, i % 2 ? " with more words" : "");
        add(alice, t, "/p", 1000 + i);
    }
    const char *roots[] = { "/p" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    ds_msg pages[4];
    uint8_t cur[DS_CURSOR_LEN];
    fetch_pages(alice, &share, pages, 4);
    ds_store_info ai, ri;
    assert_int_equal(ds_store_info_get(alice, &ai), 0);

    /* bob: pages 0-1, with 2-3 guessed; then 2-3 claiming it. */
    ds_store *bob = open_store("bob-replica-0010");
    next_probe p1 = { .rep = bob, .pages = pages + 2, .n = 2 }, p2 = { .rep = bob };
    uint64_t ticket = 0;
    size_t ins = 0;
    assert_int_equal(ds_sync_apply_pages_ahead(bob, pages, 2, 0, probe_next, &p1, &ticket, &ins), 0);
    assert_int_equal(ins, 6);
    assert_int_equal(p1.calls, 1);
    assert_int_equal(p1.state, DS_AHEAD_NONE);
    assert_true(ticket != 0);
    assert_int_equal(ds_sync_apply_pages_ahead(bob, pages + 2, 2, ticket, probe_next, &p2, &ticket, &ins), 0);
    assert_int_equal(ins, 6);
    assert_int_equal(p2.state, DS_AHEAD_ACTIVE);
    assert_int_equal(p2.guessed, 6);
    assert_int_equal(p2.k, 6);
    assert_int_equal(ticket, 0);                 /* nothing was offered next */

    /* carol already has page 3's nodes: the guess is matched only in part. */
    ds_store *carol = open_store("carol-replica-10");
    assert_int_equal(ds_sync_apply_pages(carol, pages + 3, 1, &ins), 0);
    next_probe p3 = { .rep = carol, .pages = pages + 2, .n = 2 }, p4 = { .rep = carol };
    assert_int_equal(ds_sync_apply_pages_ahead(carol, pages, 2, 0, probe_next, &p3, &ticket, &ins), 0);
    assert_int_equal(ds_sync_apply_pages_ahead(carol, pages + 2, 2, ticket, probe_next, &p4, NULL, &ins), 0);
    assert_int_equal(ins, 3);
    assert_int_equal(p4.state, DS_AHEAD_ACTIVE);
    assert_int_equal(p4.k, 3);

    /* dave claims with a ticket that is not his store's guess. */
    ds_store *dave = open_store("dave-replica-010");
    next_probe p5 = { .rep = dave, .pages = pages + 2, .n = 2 }, p6 = { .rep = dave };
    assert_int_equal(ds_sync_apply_pages_ahead(dave, pages, 2, 0, probe_next, &p5, &ticket, &ins), 0);
    assert_int_equal(ds_sync_apply_pages_ahead(dave, pages + 2, 2, ticket + 5, probe_next, &p6, NULL, &ins), 0);
    assert_int_equal(p6.state, DS_AHEAD_NONE);

    ds_store *reps[3] = { bob, carol, dave };
    for (int r = 0; r < 3; r++) {
        assert_int_equal(ds_store_info_get(reps[r], &ri), 0);
        assert_int_equal(ri.node_count, 12);
        assert_int_equal(ri.total_len, ai.total_len);
        assert_int_equal(ri.term_count, ai.term_count);
        for (int i = 0; i < 12; i++) {
            char w[16];
            snprintf(w, sizeof w, "ahead%02d", i);
            assert_int_equal(ds_test_count_hits(reps[r], w), 1);
        }
        assert_int_equal(ds_test_df(reps[r], "words"), 6);
        assert_int_equal(ds_sync_cursor_get(reps[r], cur, &(int){ 0 }), 0);
        assert_memory_equal(cur, pages[3].cursor, DS_CURSOR_LEN);
        ds_store_close(reps[r]);
    }
    for (int i = 0; i < 4; i++) ds_msg_free(&pages[i]);
    ds_share_set_free(&share);
    ds_store_close(alice);
}

static void resume_after_interruption(void **state)
{
    (void)state;
    ds_store *alice = open_store("alice-epoch-0003");
    ds_store *bob = open_store("bob-replica-0003");
    for (int i = 0; i < 25; i++) {
        char t[64];
        snprintf(t, sizeof t, "resumable node %d", i);
        add(alice, t, "/p", 42);
    }
    const char *roots[] = { "/p" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    /* Two pages land, then the "connection dies": a page built but never applied. */
    size_t got = 0;
    for (int i = 0; i < 3; i++) {
        uint8_t cur[DS_CURSOR_LEN];
        int has;
        assert_int_equal(ds_sync_cursor_get(bob, cur, &has), 0);
        ds_buf req = { 0 }, resp = { 0 };
        ds_msg rq, rs;
        assert_int_equal(ds_msg_encode_request(&req, has ? cur : NULL, 4, 0), 0);
        assert_int_equal(ds_msg_decode(req.data, req.len, &rq), 0);
        assert_int_equal(ds_sync_publish(alice, ds_test_seal(), &share, &rq, &resp, NULL), 0);
        assert_int_equal(ds_msg_decode(resp.data, resp.len, &rs), 0);
        if (i < 2) {
            size_t ins;
            assert_int_equal(ds_sync_apply(bob, &rs, &ins), 0);
            got += ins;
        }
        ds_msg_free(&rq);
        ds_msg_free(&rs);
        ds_buf_free(&req);
        ds_buf_free(&resp);
    }
    assert_int_equal(got, 8);
    got += sync_all(alice, &share, bob, 4, 50);
    assert_int_equal(got, 25);
    ds_store_info bi;
    assert_int_equal(ds_store_info_get(bob, &bi), 0);
    assert_int_equal(bi.node_count, 25);
    ds_share_set_free(&share);
    ds_store_close(alice);
    ds_store_close(bob);
}

static void byte_budget_and_bad_cursor(void **state)
{
    (void)state;
    ds_store *alice = open_store("alice-epoch-0004");
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    for (int i = 0; i < 3; i++) add(alice, big, "/p", 1);
    const char *roots[] = { "/p" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    ds_msg rq = { .type = DS_MSG_SYNC_REQUEST, .version = 1, .max_nodes = 100, .max_bytes = 100 };
    ds_buf resp = { 0 };
    ds_msg rs;
    /* A budget below one node still sends one node: progress is guaranteed. */
    assert_int_equal(ds_sync_publish(alice, ds_test_seal(), &share, &rq, &resp, NULL), 0);
    assert_int_equal(ds_msg_decode(resp.data, resp.len, &rs), 0);
    assert_int_equal(rs.nnodes, 1);
    assert_true(rs.has_more);
    ds_msg_free(&rs);
    /* A cursor that does not open (here: a wrong version byte) means
     * starting over: the first node again. */
    ds_msg first;
    assert_int_equal(ds_msg_decode(resp.data, resp.len, &first), 0);
    rq.has_cursor = 1;
    memset(rq.cursor, 0xee, DS_CURSOR_LEN);
    ds_buf again = { 0 };
    assert_int_equal(ds_sync_publish(alice, ds_test_seal(), &share, &rq, &again, NULL), 0);
    assert_int_equal(ds_msg_decode(again.data, again.len, &rs), 0);
    assert_int_equal(rs.nnodes, 1);
    assert_memory_equal(rs.nodes[0].id, first.nodes[0].id, DS_ID_LEN);
    ds_msg_free(&rs);
    ds_msg_free(&first);
    ds_buf_free(&again);
    ds_buf_free(&resp);
    ds_share_set_free(&share);
    ds_store_close(alice);
}

/* ---- nodes stored as received --------------------------------------------- */

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

typedef enum { HASH_RIGHT, HASH_WRONG, HASH_NONE } hash_mode;

/* A node map as a peer might send it: a newer writer's extra field, and
 * the content hash right, wrong or missing. */
static void pack_peer_node(msgpack_packer *pk, uint8_t idbyte, const char *content, hash_mode h)
{
    uint8_t id[DS_ID_LEN], hash[DS_HASH_LEN];
    memset(id, idbyte, sizeof id);
    ds_hash(content, strlen(content), hash, DS_HASH_LEN);
    if (h == HASH_WRONG) hash[0] ^= 1;
    msgpack_pack_map(pk, h == HASH_NONE ? 8 : 9);
    pk_str(pk, "id");
    msgpack_pack_bin_with_body(pk, id, DS_ID_LEN);
    pk_str(pk, "content");
    pk_str(pk, content);
    pk_str(pk, "source");
    pk_str(pk, "peer-session");
    pk_str(pk, "source_type");
    pk_str(pk, "note");
    pk_str(pk, "project");
    pk_str(pk, "/p");
    pk_str(pk, "namespace");
    pk_str(pk, "team");
    pk_str(pk, "timestamp");
    msgpack_pack_int64(pk, 1700000000000);
    pk_str(pk, "x_future_field");
    msgpack_pack_uint8(pk, 7);
    if (h != HASH_NONE) {
        pk_str(pk, "hash");
        msgpack_pack_bin_with_body(pk, hash, DS_HASH_LEN);
    }
}

typedef struct { ds_buf recs[4]; size_t n; } rec_list;

static int collect_rec(uint64_t seq, const uint8_t *rec, size_t len, void *ud)
{
    (void)seq;
    rec_list *l = ud;
    assert_true(l->n < 4);
    assert_int_equal(ds_buf_append(&l->recs[l->n++], rec, len), 0);
    return 0;
}

/* A peer's node whose hash checks out is stored byte for byte as it came
 * (a newer writer's fields kept); one with a wrong or missing hash is
 * stored re-encoded with the right hash. */
static void stored_as_received(void **state)
{
    (void)state;
    static const char *texts[3] = { "kept as sent", "wrong hash fixed", "missing hash added" };
    ds_buf nodes[3] = { { 0 } }, page = { 0 };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pk_str(&pk, "type");
    pk_str(&pk, "sync_response");
    pk_str(&pk, "v");
    msgpack_pack_uint32(&pk, DS_SYNC_VERSION);
    ds_cursor c = { .seq = 3 };
    uint8_t cb[DS_CURSOR_LEN];
    ds_cursor_encode(&c, ds_test_seal(), cb);
    pk_str(&pk, "new_cursor");
    msgpack_pack_bin_with_body(&pk, cb, DS_CURSOR_LEN);
    pk_str(&pk, "has_more");
    msgpack_pack_false(&pk);
    pk_str(&pk, "nodes");
    msgpack_pack_array(&pk, 3);
    for (int i = 0; i < 3; i++) {
        size_t at = sb.size;
        pack_peer_node(&pk, (uint8_t)(i + 1), texts[i], (hash_mode)i);
        assert_int_equal(ds_buf_append(&nodes[i], sb.data + at, sb.size - at), 0);
    }
    assert_int_equal(ds_buf_append(&page, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);

    ds_msg m;
    assert_int_equal(ds_msg_decode(page.data, page.len, &m), 0);
    ds_store *rep = open_store("rep-epoch-raw001");
    size_t ins = 0;
    assert_int_equal(ds_sync_apply(rep, &m, &ins), 0);
    assert_int_equal(ins, 3);
    ds_msg_free(&m);

    rec_list l = { 0 };
    assert_int_equal(ds_store_iter_records(rep, 0, collect_rec, &l), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.recs[0].len, nodes[0].len);
    assert_memory_equal(l.recs[0].data, nodes[0].data, nodes[0].len);
    for (int i = 0; i < 3; i++) {
        ds_node n;
        assert_int_equal(ds_node_decode(l.recs[i].data, l.recs[i].len, &n), 0);
        assert_string_equal(n.content, texts[i]);
        assert_string_equal(n.ns, "team");
        assert_string_equal(n.project, "/p");
        uint8_t h[DS_HASH_LEN];
        ds_hash(texts[i], strlen(texts[i]), h, DS_HASH_LEN);
        assert_memory_equal(n.hash, h, DS_HASH_LEN);
        if (i) assert_true(l.recs[i].len != nodes[i].len ||
                           memcmp(l.recs[i].data, nodes[i].data, nodes[i].len) != 0);
        ds_node_free(&n);
        ds_buf_free(&l.recs[i]);
        ds_buf_free(&nodes[i]);
    }
    /* The stored-as-sent node is found and indexed like any other. */
    assert_true(has_content(rep, "kept as sent"));
    ds_query *q;
    assert_int_equal(ds_query_parse("kept", 4, &q), 0);
    ds_hit hits[4];
    size_t nh = 0;
    assert_int_equal(ds_search_multi(&rep, 1, q, NULL, 4, hits, &nh), 0);
    assert_int_equal(nh, 1);
    assert_string_equal(hits[0].node.content, "kept as sent");
    ds_hits_free(hits, nh);
    ds_query_free(q);
    ds_buf_free(&page);
    ds_store_close(rep);
}


/* A record the publisher cannot read is a store error, never a page. */
static void corrupt_record_publish(void **state)
{
    (void)state;
    ds_store *alice = open_store("pub-epoch-corr01");
    add(alice, "first", "/p", 1);
    add(alice, "second", "/p", 2);
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(alice, &tx), 0);
    uint8_t k[8];
    ds_put_be64(k, 2);
    static const uint8_t bad[] = { 0x82, 0xa7, 'p', 'r', 'o', 'j', 'e', 'c', 't', 0xa2, '/', 'p', 0xc1 };
    assert_int_equal(ds__put_raw(tx, DBI_NODES, k, 8, bad, sizeof bad), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    ds_share_set share;
    const char *roots[] = { "/p" };
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    ds_buf req = { 0 }, resp = { 0 };
    assert_int_equal(ds_msg_encode_request(&req, NULL, 10, 0), 0);
    ds_msg rq;
    assert_int_equal(ds_msg_decode(req.data, req.len, &rq), 0);
    assert_int_equal(ds_sync_publish(alice, ds_test_seal(), &share, &rq, &resp, NULL), DS_ERR_STORE);
    assert_int_equal(resp.len, 0);
    ds_msg_free(&rq);
    ds_buf_free(&req);
    ds_buf_free(&resp);
    ds_share_set_free(&share);
    ds_store_close(alice);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(share_matching),
        cmocka_unit_test(message_codec),
        cmocka_unit_test(publish_and_apply),
        cmocka_unit_test(publish_page_heads),
        cmocka_unit_test(apply_pages_together),
        cmocka_unit_test(apply_pages_ahead),
        cmocka_unit_test(resume_after_interruption),
        cmocka_unit_test(byte_budget_and_bad_cursor),
        cmocka_unit_test(stored_as_received),
        cmocka_unit_test(corrupt_record_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
