/*
 * test_store.c - the LMDB store on a real environment in a temporary
 * directory: sequences, lookups, replacement, deletion, atomicity under
 * injected failures, schema checks, id prefixes, aux tables and reset.
 */
#include "testutil.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds/search.h"
#include "core/store_int.h"
#include "core/util.h"

static const uint8_t EPOCH[DS_EPOCH_LEN] = "0123456789abcdef";

static ds_store *open_new(void)
{
    ds_store *st;
    ds_store_opts o = { .epoch_seed = EPOCH };
    assert_int_equal(ds_store_open(&st, ds_test_tmpdir(), &o), 0);
    return st;
}

typedef struct seqs { uint64_t v[64]; size_t n; } seqs;

static int collect(const ds_node *n, void *ud)
{
    seqs *s = ud;
    if (s->n < 64) s->v[s->n++] = n->seq;
    return 0;
}

static void sequence_strictly_increases(void **state)
{
    (void)state;
    ds_store *st = open_new();
    ds_node n[5];
    uint64_t last = 0;
    for (int i = 0; i < 5; i++) {
        char text[64];
        snprintf(text, sizeof text, "node number %d about lmdb", i);
        ds_test_make_node(&n[i], text, "/p");
        assert_int_equal(ds_store_put(st, &n[i]), 0);
        assert_true(n[i].seq > last);
        last = n[i].seq;
    }
    /* Replacing and deleting never reuse or lower a sequence. */
    assert_int_equal(ds_store_put(st, &n[1]), 0);
    assert_true(n[1].seq > last);
    last = n[1].seq;
    assert_int_equal(ds_store_delete(st, n[4].id), 0);
    ds_node extra;
    ds_test_make_node(&extra, "one more", "/p");
    assert_int_equal(ds_store_put(st, &extra), 0);
    assert_true(extra.seq > last);
    seqs s = { .n = 0 };
    assert_int_equal(ds_store_iter(st, 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 5);
    for (size_t i = 1; i < s.n; i++) assert_true(s.v[i] > s.v[i - 1]);
    /* after_seq skips what the caller has; reverse is newest first. */
    seqs t = { .n = 0 };
    assert_int_equal(ds_store_iter(st, s.v[2], 0, collect, &t), 0);
    assert_int_equal(t.n, 2);
    assert_true(t.v[0] == s.v[3]);
    seqs r = { .n = 0 };
    assert_int_equal(ds_store_iter(st, 0, 1, collect, &r), 0);
    assert_true(r.v[0] == extra.seq);
    for (int i = 0; i < 5; i++) ds_node_free(&n[i]);
    ds_node_free(&extra);
    ds_store_close(st);
}

static void get_replace_no_duplicates(void **state)
{
    (void)state;
    ds_store *st = open_new();
    ds_node a, got;
    ds_test_make_node(&a, "the flaky test was caused by a shared temp dir", "/a/proj");
    assert_int_equal(ds_store_put(st, &a), 0);
    assert_int_equal(ds_store_put(st, &a), 0);             /* same id again */
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.node_count, 1);
    assert_int_equal(info.count_by_type[DS_SOURCE_NOTE], 1);
    assert_int_equal(ds_test_count_hits(st, "flaky"), 1);
    /* Replace the content: old terms vanish from the index. */
    assert_int_equal(ds_node_set_content(&a, "readers never block", 19), 0);
    assert_int_equal(ds_store_put(st, &a), 0);
    assert_int_equal(ds_test_count_hits(st, "flaky"), 0);
    assert_int_equal(ds_test_count_hits(st, "readers"), 1);
    assert_int_equal(ds_store_get(st, a.id, &got), 0);
    assert_string_equal(got.content, "readers never block");
    assert_int_equal(got.seq, a.seq);
    ds_node_free(&got);
    /* put_new keeps the first copy. */
    ds_node b;
    ds_node_init(&b);
    assert_int_equal(ds_node_copy(&b, &a), 0);
    assert_int_equal(ds_node_set_content(&b, "a different text", 16), 0);
    ds_wtxn *tx;
    int inserted = -1;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_put_new(tx, &b, &inserted), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(inserted, 0);
    assert_int_equal(ds_store_get(st, a.id, &got), 0);
    assert_string_equal(got.content, "readers never block");
    ds_node_free(&got);
    ds_node_free(&a);
    ds_node_free(&b);
    ds_store_close(st);
}

/* The store keeps the hash ds_node_set_content computed and recomputes
 * any other: one decoded with a wrong hash (as a peer could send), or one
 * whose content buffer was swapped without ds_node_hash. */
static void stored_hash_always_matches_content(void **state)
{
    (void)state;
    ds_store *st = open_new();
    uint8_t want[DS_HASH_LEN];
    ds_node a, dec, got;
    ds_test_make_node(&a, "hash me exactly", "/p");
    memcpy(want, a.hash, DS_HASH_LEN);
    a.hash[0] ^= 0xff;                       /* a lying encoder */
    uint8_t *enc;
    size_t el;
    assert_int_equal(ds_node_encode(&a, &enc, &el), 0);
    assert_int_equal(ds_node_decode(enc, el, &dec), 0);
    free(enc);
    assert_memory_not_equal(dec.hash, want, DS_HASH_LEN);
    assert_int_equal(ds_store_put(st, &dec), 0);
    assert_int_equal(ds_store_get(st, a.id, &got), 0);
    assert_memory_equal(got.hash, want, DS_HASH_LEN);
    ds_node_free(&got);
    /* Content swapped by hand: the old hash must not survive. */
    char *text = strdup("swapped by hand");
    assert_non_null(text);
    free(dec.content);
    dec.content = text;
    dec.content_len = strlen(text);
    assert_int_equal(ds_store_put(st, &dec), 0);
    ds_node fresh;
    ds_test_make_node(&fresh, "swapped by hand", "/p");
    assert_int_equal(ds_store_get(st, a.id, &got), 0);
    assert_memory_equal(got.hash, fresh.hash, DS_HASH_LEN);
    ds_node_free(&got);
    /* A copy keeps the trusted hash of its own buffer. */
    ds_node cp;
    ds_node_init(&cp);
    assert_int_equal(ds_node_copy(&cp, &fresh), 0);
    assert_ptr_equal(cp.hashed_content, cp.content);
    ds_node_free(&cp);
    ds_node_free(&fresh);
    ds_node_free(&dec);
    ds_node_free(&a);
    ds_store_close(st);
}

static void delete_removes_postings(void **state)
{
    (void)state;
    ds_store *st = open_new();
    ds_node a, b;
    ds_test_make_node(&a, "unique zebra content", "/p");
    ds_test_make_node(&b, "other zebra words", "/p");
    assert_int_equal(ds_store_put(st, &a), 0);
    assert_int_equal(ds_store_put(st, &b), 0);
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    uint64_t terms_before = info.term_count;
    assert_int_equal(ds_test_count_hits(st, "zebra"), 2);
    assert_int_equal(ds_store_delete(st, a.id), 0);
    assert_int_equal(ds_test_count_hits(st, "zebra"), 1);
    assert_int_equal(ds_test_count_hits(st, "unique"), 0);
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.term_count, terms_before - 2);   /* "uniqu", "content" */
    assert_int_equal(info.node_count, 1);
    assert_int_equal(ds_store_delete(st, a.id), DS_ERR_NOTFOUND);
    ds_node got;
    assert_int_equal(ds_store_get(st, a.id, &got), DS_ERR_NOTFOUND);
    ds_node_free(&a);
    ds_node_free(&b);
    ds_store_close(st);
}

static void atomic_on_injected_failure(void **state)
{
    (void)state;
    ds_store *st = open_new();
    ds_node base;
    ds_test_make_node(&base, "existing knowledge about queues", "/p");
    assert_int_equal(ds_store_put(st, &base), 0);
    ds_store_info before;
    assert_int_equal(ds_store_info_get(st, &before), 0);
    /* Fail at every possible write position of a 4-node batch. */
    for (int failat = 1; failat < 40; failat++) {
        ds_node batch[4];
        for (int i = 0; i < 4; i++) ds_test_make_node(&batch[i], "batch node mentions queues and zebras", "/p");
        ds_store_fail_after(st, failat);
        int rc = ds_store_put_many(st, batch, 4);
        ds_store_fail_after(st, 0);
        for (int i = 0; i < 4; i++) ds_node_free(&batch[i]);
        if (rc == 0) {
            /* Past the last write: the batch landed whole; stop here. */
            ds_store_info after;
            assert_int_equal(ds_store_info_get(st, &after), 0);
            assert_int_equal(after.node_count, before.node_count + 4);
            assert_true(failat > 4);
            break;
        }
        assert_int_equal(rc, DS_ERR_INJECTED);
        ds_store_info after;
        assert_int_equal(ds_store_info_get(st, &after), 0);
        assert_int_equal(after.node_count, before.node_count);
        assert_int_equal(after.last_seq, before.last_seq);
        assert_int_equal(after.term_count, before.term_count);
        assert_int_equal(ds_test_count_hits(st, "zebras"), 0);
        assert_int_equal(ds_test_count_hits(st, "queues"), 1);
    }
    ds_node_free(&base);
    ds_store_close(st);
}

static int count_cb(const ds_node *n, void *ud)
{
    (void)n;
    (*(int *)ud)++;
    return 0;
}

static void lookups_by_source_and_project(void **state)
{
    (void)state;
    ds_store *st = open_new();
    ds_node n[3];
    ds_test_make_node(&n[0], "chunk one", "/a/proj");
    ds_test_make_node(&n[1], "chunk two", "/a/proj");
    ds_test_make_node(&n[2], "elsewhere", "/a/proj-x");
    ds_node_set_str(&n[0].source, "/a/proj/README.md");
    ds_node_set_str(&n[1].source, "/a/proj/README.md");
    assert_int_equal(ds_store_put_many(st, n, 3), 0);
    int c = 0;
    assert_int_equal(ds_store_by_source(st, "/a/proj/README.md", count_cb, &c), 0);
    assert_int_equal(c, 2);
    c = 0;
    assert_int_equal(ds_store_by_project(st, "/a/proj", count_cb, &c), 0);
    assert_int_equal(c, 2);
    c = 0;
    assert_int_equal(ds_store_by_project(st, "/a/proj-x", count_cb, &c), 0);
    assert_int_equal(c, 1);
    ds_wtxn *tx;
    size_t removed = 0;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_delete_source(tx, "/a/proj/README.md", &removed), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(removed, 2);
    c = 0;
    assert_int_equal(ds_store_by_project(st, "/a/proj", count_cb, &c), 0);
    assert_int_equal(c, 0);
    for (int i = 0; i < 3; i++) ds_node_free(&n[i]);
    ds_store_close(st);
}

static void prefixes(void **state)
{
    (void)state;
    ds_store *st = open_new();
    ds_node a, b;
    ds_test_make_node(&a, "x", "");
    ds_test_make_node(&b, "y", "");
    memcpy(a.id, "\xab\xcd\x11\x11\x11\x11\x41\x11\x81\x11\x11\x11\x11\x11\x11\x11", 16);
    memcpy(b.id, "\xab\xcd\x22\x22\x22\x22\x42\x22\x82\x22\x22\x22\x22\x22\x22\x22", 16);
    assert_int_equal(ds_store_put(st, &a), 0);
    assert_int_equal(ds_store_put(st, &b), 0);
    uint8_t id[16];
    assert_int_equal(ds_store_resolve_prefix(st, "abcd", id), DS_ERR_AMBIGUOUS);
    assert_int_equal(ds_store_resolve_prefix(st, "abcd1", id), 0);
    assert_memory_equal(id, a.id, 16);
    assert_int_equal(ds_store_resolve_prefix(st, "ABCD2222-2", id), 0);
    assert_memory_equal(id, b.id, 16);
    assert_int_equal(ds_store_resolve_prefix(st, "abce", id), DS_ERR_NOTFOUND);
    assert_int_equal(ds_store_resolve_prefix(st, "ab", id), DS_ERR_INVALID);
    assert_int_equal(ds_store_resolve_prefix(st, "zzzz", id), DS_ERR_INVALID);
    ds_node_free(&a);
    ds_node_free(&b);
    ds_store_close(st);
}

/* A raw LMDB write txn on the store's "meta" table (closed store). */
static void raw_meta_begin(const char *dir, MDB_env **env, MDB_txn **txn, MDB_dbi *dbi)
{
    assert_int_equal(mdb_env_create(env), 0);
    mdb_env_set_maxdbs(*env, 32);
    mdb_env_set_mapsize(*env, 1ull << 30);
    assert_int_equal(mdb_env_open(*env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(*env, NULL, 0, txn), 0);
    assert_int_equal(mdb_dbi_open(*txn, "meta", 0, dbi), 0);
}

static void newer_schema_refused(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st;
    ds_store_opts o = { .epoch_seed = EPOCH };
    assert_int_equal(ds_store_open(&st, dir, &o), 0);
    ds_store_close(st);
    /* Bump the schema behind the store's back with raw LMDB. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    raw_meta_begin(dir, &env, &txn, &dbi);
    uint8_t v[4];
    ds_put_be32(v, DS_STORE_SCHEMA + 1);
    MDB_val k = { 6, "schema" }, d = { 4, v };
    assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(ds_store_open(&st, dir, &o), DS_ERR_SCHEMA);
    /* Missing store with no_create. */
    ds_store_opts nc = { .no_create = 1 };
    char path[4200];
    snprintf(path, sizeof path, "%s/none", dir);
    assert_int_equal(ds_store_open(&st, path, &nc), DS_ERR_NOTFOUND);
    /* Creating without an epoch is a programmer error, reported. */
    assert_int_equal(ds_store_open(&st, ds_test_tmpdir(), NULL), DS_ERR_INVALID);
}

static void aux_and_clear(void **state)
{
    (void)state;
    ds_store *st = open_new();
    ds_node a;
    ds_test_make_node(&a, "to be cleared", "/p");
    assert_int_equal(ds_store_put(st, &a), 0);
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_aux_put(tx, DS_TABLE_FILES, "k", 1, "value", 5), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    void *v;
    size_t vl;
    assert_int_equal(ds_store_aux_get(st, DS_TABLE_FILES, "k", 1, &v, &vl), 0);
    assert_int_equal(vl, 5);
    assert_memory_equal(v, "value", 5);
    free(v);
    ds_store_info before, after;
    assert_int_equal(ds_store_info_get(st, &before), 0);
    uint8_t epoch2[DS_EPOCH_LEN] = "fedcba9876543210";
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_clear(tx, epoch2), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(ds_store_info_get(st, &after), 0);
    assert_int_equal(after.node_count, 0);
    assert_int_equal(after.term_count, 0);
    assert_memory_equal(after.epoch, epoch2, DS_EPOCH_LEN);
    assert_true(after.last_seq >= before.last_seq);
    assert_int_equal(ds_store_aux_get(st, DS_TABLE_FILES, "k", 1, &v, &vl), DS_ERR_NOTFOUND);
    assert_int_equal(ds_test_count_hits(st, "cleared"), 0);
    ds_node_free(&a);
    ds_store_close(st);
}

/* The light readers agree with ds_store_info_get, follow a clear, and
 * report a store whose epoch record is gone instead of inventing one. */
static void epoch_and_count(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st;
    ds_store_opts o = { .epoch_seed = EPOCH };
    assert_int_equal(ds_store_open(&st, dir, &o), 0);
    uint8_t ep[DS_EPOCH_LEN];
    uint64_t n = 99;
    assert_int_equal(ds_store_epoch(st, ep), 0);
    assert_memory_equal(ep, EPOCH, DS_EPOCH_LEN);
    assert_int_equal(ds_store_node_count(st, &n), 0);
    assert_int_equal(n, 0);
    ds_node a, b;
    ds_test_make_node(&a, "first counted node", "/p");
    ds_test_make_node(&b, "second counted node", "/p");
    assert_int_equal(ds_store_put(st, &a), 0);
    assert_int_equal(ds_store_put(st, &b), 0);
    assert_int_equal(ds_store_put(st, &b), 0);          /* a replace, not a new node */
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(ds_store_node_count(st, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(n, info.node_count);
    assert_int_equal(ds_store_delete(st, a.id), 0);
    assert_int_equal(ds_store_node_count(st, &n), 0);
    assert_int_equal(n, 1);
    uint8_t epoch2[DS_EPOCH_LEN] = "fedcba9876543210";
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_clear(tx, epoch2), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(ds_store_epoch(st, ep), 0);
    assert_memory_equal(ep, epoch2, DS_EPOCH_LEN);
    assert_int_equal(ds_store_node_count(st, &n), 0);
    assert_int_equal(n, 0);
    ds_store_close(st);
    /* Remove the epoch record behind the store's back. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    raw_meta_begin(dir, &env, &txn, &dbi);
    MDB_val k = { 5, "epoch" };
    assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(ds_store_open(&st, dir, &o), 0);
    assert_int_equal(ds_store_epoch(st, ep), DS_ERR_STORE);
    ds_store_close(st);
    ds_node_free(&a);
    ds_node_free(&b);
}

static void rejects_invalid_nodes(void **state)
{
    (void)state;
    ds_store *st = open_new();
    ds_node a;
    ds_test_make_node(&a, "ok", "/p");
    a.content[0] = (char)0xff;                 /* invalid UTF-8 */
    assert_int_equal(ds_store_put(st, &a), DS_ERR_INVALID);
    ds_node_free(&a);
    ds_node_init(&a);
    assert_int_equal(ds_store_put(st, &a), DS_ERR_INVALID);   /* no fields at all */
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.node_count, 0);
    ds_store_close(st);
}

/* Posting lists longer than one block, in several transactions, with
 * removals at block starts, middles, ends and of whole blocks. */
static void posting_blocks(void **state)
{
    (void)state;
    ds_store *st = open_new();
    enum { N = 1300 };
    ds_node *n = calloc(N, sizeof *n);
    for (int i = 0; i < N; i++) {
        char t[64];
        snprintf(t, sizeof t, "common word%d %s", i, i % 2 ? "odd" : "even");
        ds_test_make_node(&n[i], t, "/p");
    }
    /* Uneven batches so blocks get topped up across transactions. */
    int sizes[] = { 1, 255, 2, 300, 500, 242 };
    int at = 0;
    for (size_t b = 0; b < sizeof sizes / sizeof *sizes; b++) {
        assert_int_equal(ds_store_put_many(st, n + at, (size_t)sizes[b]), 0);
        at += sizes[b];
    }
    assert_int_equal(at, N);
    assert_int_equal(ds_test_df(st, "common"), N);
    assert_int_equal(ds_test_count_hits(st, "common"), 64);   /* capped by k */
    /* Remove a run that covers whole blocks, plus scattered ones. */
    int removed = 0;
    char *gone = calloc(N, 1);
    for (int i = 200; i < 800; i++) { assert_int_equal(ds_store_delete(st, n[i].id), 0); gone[i] = 1; removed++; }
    for (int i = 0; i < N; i += 7) if (!gone[i]) { assert_int_equal(ds_store_delete(st, n[i].id), 0); gone[i] = 1; removed++; }
    assert_int_equal(ds_test_df(st, "common"), N - removed);
    int odd_left = 0;
    for (int i = 0; i < N; i++) if (!gone[i] && i % 2) odd_left++;
    assert_int_equal(ds_test_df(st, "odd"), odd_left);
    /* Every surviving node is still found by its unique word; removed ones are not. */
    for (int i = 0; i < N; i += 13) {
        char w[32];
        snprintf(w, sizeof w, "word%d", i);
        assert_int_equal(ds_test_count_hits(st, w), gone[i] ? 0 : 1);
        assert_int_equal(ds_test_df(st, w), gone[i] ? 0 : 1);
    }
    /* Remove the rest: the term disappears entirely. */
    for (int i = 0; i < N; i++) if (!gone[i]) assert_int_equal(ds_store_delete(st, n[i].id), 0);
    assert_int_equal(ds_test_df(st, "common"), 0);
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.term_count, 0);
    assert_int_equal(info.node_count, 0);
    /* And the list grows again from nothing. */
    assert_int_equal(ds_store_put_many(st, n, 300), 0);
    assert_int_equal(ds_test_df(st, "common"), 300);
    for (int i = 0; i < N; i++) ds_node_free(&n[i]);
    free(n);
    free(gone);
    ds_store_close(st);
}


/* ---- index work ahead of time (ds__wtxn_commit_ahead) -------------------- */

#define AH_N 60

typedef struct ahead_fx {
    ds_node nodes[AH_N];
    ds_ahead_doc docs[AH_N];
} ahead_fx;

static void ahead_fx_init(ahead_fx *f)
{
    ds_test_seed(77);
    for (int i = 0; i < AH_N; i++) {
        char text[256];
        int len = snprintf(text, sizeof text, "uniq%02d alpha shared%d", i, i % 3);
        for (int r = 0; r < i % 5; r++) len += snprintf(text + len, sizeof text - (size_t)len, " delta");
        ds_test_make_node(&f->nodes[i], text, "/p");
        f->docs[i] = (ds_ahead_doc){ f->nodes[i].content, f->nodes[i].content_len };
    }
}

static void ahead_fx_free(ahead_fx *f)
{
    for (int i = 0; i < AH_N; i++) ds_node_free(&f->nodes[i]);
}

static void put_range(ds_wtxn *tx, ahead_fx *f, int from, int to)
{
    for (int i = from; i < to; i++) {
        int ins;
        assert_int_equal(ds_wtxn_put_new(tx, &f->nodes[i], &ins), 0);
        assert_int_equal(ins, 1);
    }
}

/* Same documents, same seqs, same postings and lengths: every unique word
 * finds its own node in both stores, shared words score alike, and the
 * statistics agree. */
static void assert_same_index(ds_store *a, ds_store *b, const ahead_fx *f, const int *present)
{
    ds_store_info ia, ib;
    assert_int_equal(ds_store_info_get(a, &ia), 0);
    assert_int_equal(ds_store_info_get(b, &ib), 0);
    assert_int_equal(ia.node_count, ib.node_count);
    assert_int_equal(ia.last_seq, ib.last_seq);
    assert_int_equal(ia.total_len, ib.total_len);
    assert_int_equal(ia.term_count, ib.term_count);
    for (int i = 0; i < AH_N; i++) {
        char w[16];
        snprintf(w, sizeof w, "uniq%02d", i);
        ds_store *both[2] = { a, b };
        for (int s = 0; s < 2; s++) {
            ds_query *q;
            assert_int_equal(ds_query_parse(w, strlen(w), &q), 0);
            ds_hit hits[4];
            size_t n = 0;
            assert_int_equal(ds_search_multi(&both[s], 1, q, NULL, 4, hits, &n), 0);
            assert_int_equal(n, present[i] ? 1 : 0);
            if (n) assert_memory_equal(hits[0].node.id, f->nodes[i].id, DS_ID_LEN);
            ds_hits_free(hits, n);
            ds_query_free(q);
        }
    }
    const char *words[] = { "alpha", "shared0", "shared1", "delta" };
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
        ds_query *q;
        assert_int_equal(ds_query_parse(words[w], strlen(words[w]), &q), 0);
        ds_hit ha[64], hb[64];
        size_t na = 0, nb = 0;
        assert_int_equal(ds_search_multi(&a, 1, q, NULL, 64, ha, &na), 0);
        assert_int_equal(ds_search_multi(&b, 1, q, NULL, 64, hb, &nb), 0);
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++) {
            assert_int_equal(ha[i].node.seq, hb[i].node.seq);
            assert_true(ha[i].score == hb[i].score);
        }
        ds_hits_free(ha, na);
        ds_hits_free(hb, nb);
        ds_query_free(q);
    }
}

static void commit_plain(ds_store *st, ahead_fx *f, int from, int to)
{
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    put_range(tx, f, from, to);
    assert_int_equal(ds_wtxn_commit(tx), 0);
}

/* Whatever the next transaction does with a guess, the index is the one
 * plain transactions build: matched in full, left for another
 * transaction, claimed with a wrong ticket, abandoned at a skipped node,
 * a delete or an abort, and extended past its end. */
static void ahead_matches_plain(void **state)
{
    (void)state;
    ahead_fx f;
    ahead_fx_init(&f);
    ds_store *a = open_new(), *b = open_new();
    int present[AH_N] = { 0 };
    uint64_t t, t2;
    ds_wtxn *tx;

    /* 0-9, then 10-19 tokenized ahead and claimed: used in full. */
    commit_plain(a, &f, 0, 20);
    assert_int_equal(ds_store_begin(b, &tx), 0);
    put_range(tx, &f, 0, 10);
    assert_int_equal(ds__wtxn_commit_ahead(tx, f.docs + 10, 10, &t), 0);
    assert_true(t != 0);
    assert_int_equal(ds__store_begin_ahead(b, t, &tx), 0);
    put_range(tx, &f, 10, 20);
    assert_int_equal(b->ahead.state, DS_AHEAD_ACTIVE);
    assert_int_equal(b->ahead.k, 10);
    /* A guess for 20-29 that the next transaction leaves (a plain begin). */
    assert_int_equal(ds__wtxn_commit_ahead(tx, f.docs + 20, 10, &t2), 0);
    assert_true(t2 > t);
    for (int i = 0; i < 20; i++) present[i] = 1;
    assert_same_index(a, b, &f, present);      /* reads leave the guess alone */
    assert_int_equal(b->ahead.state, DS_AHEAD_PENDING);

    /* A stale ticket is not a claim. */
    assert_int_equal(ds_store_begin(b, &tx), 0);
    assert_int_equal(b->ahead.state, DS_AHEAD_NONE);
    assert_int_equal(ds__wtxn_commit_ahead(tx, f.docs + 20, 10, &t), 0);
    assert_int_equal(ds__store_begin_ahead(b, t + 1, &tx), 0);
    assert_int_equal(b->ahead.state, DS_AHEAD_NONE);
    put_range(tx, &f, 20, 25);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    commit_plain(a, &f, 20, 25);

    /* Claimed, then a node skipped: 25-27 match, 29 does not. */
    assert_int_equal(ds_store_begin(b, &tx), 0);
    assert_int_equal(ds__wtxn_commit_ahead(tx, f.docs + 25, 10, &t), 0);
    assert_int_equal(ds__store_begin_ahead(b, t, &tx), 0);
    put_range(tx, &f, 25, 28);
    assert_int_equal(b->ahead.k, 3);
    put_range(tx, &f, 29, 30);
    assert_int_equal(b->ahead.state, DS_AHEAD_NONE);
    put_range(tx, &f, 28, 29);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(ds_store_begin(a, &tx), 0);
    put_range(tx, &f, 25, 28);
    put_range(tx, &f, 29, 30);
    put_range(tx, &f, 28, 29);
    assert_int_equal(ds_wtxn_commit(tx), 0);

    /* Claimed, then a delete of an older node abandons it (the lengths
     * of the guessed documents are then counted once, as inserted). */
    ds_store *both[2] = { b, a };
    for (int s = 0; s < 2; s++) {
        if (s == 0) {
            assert_int_equal(ds_store_begin(b, &tx), 0);
            assert_int_equal(ds__wtxn_commit_ahead(tx, f.docs + 30, 10, &t), 0);
            assert_int_equal(ds__store_begin_ahead(b, t, &tx), 0);
        } else {
            assert_int_equal(ds_store_begin(a, &tx), 0);
        }
        put_range(tx, &f, 30, 34);
        assert_int_equal(ds_wtxn_delete(tx, f.nodes[3].id), 0);
        assert_int_equal(both[s]->ahead.state, DS_AHEAD_NONE);
        put_range(tx, &f, 35, 36);
        put_range(tx, &f, 34, 35);
        put_range(tx, &f, 36, 40);
        assert_int_equal(ds_wtxn_commit(tx), 0);
    }

    /* Claimed and aborted: nothing of it stays buffered. */
    assert_int_equal(ds_store_begin(b, &tx), 0);
    assert_int_equal(ds__wtxn_commit_ahead(tx, f.docs + 40, 10, &t), 0);
    assert_int_equal(ds__store_begin_ahead(b, t, &tx), 0);
    put_range(tx, &f, 40, 45);
    ds_wtxn_abort(tx);
    /* Fully matched, then more nodes than guessed. */
    assert_int_equal(ds_store_begin(b, &tx), 0);
    assert_int_equal(ds__wtxn_commit_ahead(tx, f.docs + 40, 5, &t), 0);
    assert_int_equal(ds__store_begin_ahead(b, t, &tx), 0);
    put_range(tx, &f, 40, 50);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    commit_plain(a, &f, 40, 50);

    for (int i = 0; i < 50; i++) present[i] = i != 3;
    assert_same_index(a, b, &f, present);
    ds_store_close(a);
    ds_store_close(b);
    ahead_fx_free(&f);
}

/* A commit that fails at any write, before or after the guess was
 * started, returns no ticket and leaves nothing behind: the transaction
 * done again plainly gives the index plain transactions give. */
static void ahead_failed_commit(void **state)
{
    (void)state;
    ahead_fx f;
    ahead_fx_init(&f);
    ds_store *a = open_new(), *b = open_new();
    int present[AH_N] = { 0 };
    commit_plain(a, &f, 0, 10);
    commit_plain(a, &f, 10, 20);
    int failed = 0, done = 0;
    for (int failat = 1; failat < 200 && !done; failat++) {
        ds_wtxn *tx;
        uint64_t t = 77;
        int committing = 0;
        ds_store_fail_after(b, failat);
        int rc = ds_store_begin(b, &tx);
        if (!rc) {
            for (int i = 0; i < 10 && !rc; i++) {
                int ins;
                rc = ds_wtxn_put_new(tx, &f.nodes[i], &ins);
            }
            if (rc) ds_wtxn_abort(tx);
            else committing = 1, rc = ds__wtxn_commit_ahead(tx, f.docs + 10, 10, &t);
        }
        ds_store_fail_after(b, 0);
        if (rc) {
            assert_int_equal(rc, DS_ERR_INJECTED);
            if (committing) {
                assert_int_equal(t, 0);
                assert_int_equal(b->ahead.state, DS_AHEAD_NONE);
                failed++;
            }
            continue;
        }
        assert_true(t != 0);
        done = 1;
        assert_int_equal(ds__store_begin_ahead(b, t, &tx), 0);
        put_range(tx, &f, 10, 20);
        assert_int_equal(b->ahead.k, 10);
        assert_int_equal(ds_wtxn_commit(tx), 0);
    }
    assert_true(done);
    assert_true(failed > 10);
    for (int i = 0; i < 20; i++) present[i] = 1;
    assert_same_index(a, b, &f, present);
    ds_store_close(a);
    ds_store_close(b);
    ahead_fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sequence_strictly_increases),
        cmocka_unit_test(get_replace_no_duplicates),
        cmocka_unit_test(stored_hash_always_matches_content),
        cmocka_unit_test(delete_removes_postings),
        cmocka_unit_test(atomic_on_injected_failure),
        cmocka_unit_test(lookups_by_source_and_project),
        cmocka_unit_test(prefixes),
        cmocka_unit_test(newer_schema_refused),
        cmocka_unit_test(aux_and_clear),
        cmocka_unit_test(epoch_and_count),
        cmocka_unit_test(rejects_invalid_nodes),
        cmocka_unit_test(posting_blocks),
        cmocka_unit_test(ahead_matches_plain),
        cmocka_unit_test(ahead_failed_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
