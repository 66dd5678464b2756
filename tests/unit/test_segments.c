/*
 * test_segments.c - the log-structured index: segments written per
 * commit, tiered merges keeping their number logarithmic, deletions
 * (dead records counted against document frequencies, then purged by a
 * merge), the index worker giving exactly the single-threaded result,
 * migration of a schema-1 store (old term-clustered index), and the
 * delta tables of ids and sources folding into their base tables.
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

static ds_store *open_at(const char *dir, int no_thread)
{
    ds_store *st;
    ds_store_opts o = { .epoch_seed = EPOCH, .no_index_thread = no_thread };
    assert_int_equal(ds_store_open(&st, dir, &o), 0);
    return st;
}

typedef struct segstat { size_t nseg; uint64_t postings_of_term; size_t dead; uint64_t oldest_id; } segstat;

/* Reads the index layout directly: segment count, |term|'s physical
 * postings over all segments, dead records. */
static segstat layout(ds_store *st, const char *term)
{
    segstat r = { 0, 0, 0, 0 };
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    ds_segview *segs;
    assert_int_equal(ds__segs_load(st, txn, &segs, &r.nseg), 0);
    if (r.nseg) r.oldest_id = segs[0].id;
    for (size_t i = 0; i < r.nseg; i++) {
        if (i) assert_true(segs[i].first_seq > segs[i - 1].last_seq);   /* disjoint, ordered */
        const uint8_t *p;
        uint32_t n;
        assert_int_equal(ds__seg_find(st, txn, &segs[i], term, strlen(term), &p, &n), 0);
        r.postings_of_term += n;
    }
    free(segs);
    MDB_stat ms;
    assert_int_equal(mdb_stat(txn, st->dbi[DBI_DEAD], &ms), 0);
    r.dead = ms.ms_entries;
    mdb_txn_abort(txn);
    return r;
}

static void put_text(ds_store *st, ds_node *n, const char *text)
{
    ds_test_make_node(n, text, "/p");
    assert_int_equal(ds_store_put(st, n), 0);
}

static void merges_keep_segments_few(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { N = 300 };
    char text[96];
    for (int i = 0; i < N; i++) {       /* one transaction per note */
        ds_node n;
        snprintf(text, sizeof text, "shared note number uniq%d %s", i, i % 3 ? "odd" : "third");
        put_text(st, &n, text);
        ds_node_free(&n);
        segstat s = layout(st, "share");
        /* Size-tiered with fan-out F: fewer than F segments per size class
         * (plus the one a commit may add before the next merge). */
        assert_true(s.nseg <= (size_t)DS_SEG_FANOUT * 3 + 1);
        assert_int_equal(s.postings_of_term, i + 1);
    }
    assert_int_equal(ds_test_df(st, "shared"), N);
    assert_int_equal(ds_test_df(st, "third"), N / 3);
    for (int i = 0; i < N; i += 37) {
        snprintf(text, sizeof text, "uniq%d", i);
        assert_int_equal(ds_test_count_hits(st, text), 1);
    }
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    /* share, note, number, odd, third, and N unique words */
    assert_int_equal(info.term_count, N + 5);
    ds_store_close(st);
}

/* Write amplification stays logarithmic: the oldest (largest) segment is
 * rewritten only when a whole tier of its class is full, not every time
 * a few small segments follow it.  Transactions of 8 documents make
 * class-1 segments; over 200 commits the tiers complete at about commit
 * 9 (8 x 8 docs) and every 64 commits after (8 x 64 docs), so the oldest
 * segment changes a handful of times, where a policy that merged "one
 * big segment plus seven small ones" would change it every 7 commits. */
static void merges_do_not_rewrite_big_segments_often(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { COMMITS = 200, PER = 8 };
    char text[96];
    uint64_t oldest = 0;
    int changes = 0;
    for (int c = 0; c < COMMITS; c++) {
        ds_wtxn *tx;
        assert_int_equal(ds_store_begin(st, &tx), 0);
        for (int i = 0; i < PER; i++) {
            ds_node n;
            snprintf(text, sizeof text, "tiered note uniq%d", c * PER + i);
            ds_test_make_node(&n, text, "/p");
            assert_int_equal(ds_wtxn_put(tx, &n), 0);
            ds_node_free(&n);
        }
        assert_int_equal(ds_wtxn_commit(tx), 0);
        segstat s = layout(st, "tier");
        assert_int_equal(s.postings_of_term, (uint64_t)(c + 1) * PER);
        if (s.oldest_id != oldest) changes++;
        oldest = s.oldest_id;
        assert_true(s.nseg <= (size_t)DS_SEG_FANOUT * 3 + 1);
    }
    assert_true(changes >= 2);      /* merges did happen */
    assert_true(changes <= 6);
    assert_int_equal(ds_test_df(st, "tiered"), COMMITS * PER);
    ds_store_close(st);
}

/* Terms sharing their first 8 bytes sort by the rest (the segment
 * writer sorts by an 8-byte prefix first); every one must be found. */
static void long_shared_prefixes(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    static const char *const w[] = { "qwertyui9", "qwertyui", "qwertyui10", "qwertyui0",
                                     "qwertyui1", "qwertyuj", "qwertyu", "qwertyui99z" };
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    ds_node n[8];
    for (int i = 0; i < 8; i++) {
        ds_test_make_node(&n[i], w[i], "/p");
        assert_int_equal(ds_wtxn_put(tx, &n[i]), 0);
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(ds_test_count_hits(st, w[i]), 1);
        ds_node_free(&n[i]);
    }
    ds_store_close(st);
}

static void deletes_are_exact_then_purged(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    enum { N = 64 };
    ds_node nodes[N];
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    char text[64];
    for (int i = 0; i < N; i++) {
        snprintf(text, sizeof text, "zebra stripes item%d", i);
        ds_test_make_node(&nodes[i], text, "/p");
        assert_int_equal(ds_wtxn_put(tx, &nodes[i]), 0);
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    /* Delete a quarter of one committed segment: dead records, exact df. */
    int removed = 0;
    for (int i = 0; i < N; i += 4) {
        assert_int_equal(ds_store_delete(st, nodes[i].id), 0);
        removed++;
    }
    assert_int_equal(ds_test_df(st, "zebra"), N - removed);
    assert_int_equal(ds_test_count_hits(st, "zebra"), N - removed);
    assert_int_equal(ds_test_count_hits(st, "item0"), 0);
    assert_int_equal(ds_test_count_hits(st, "item1"), 1);
    segstat s = layout(st, "zebra");
    assert_int_equal(s.dead, removed);
    assert_int_equal(s.postings_of_term, N);          /* still physically there */
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.term_count, 2 + (N - removed));   /* zebra, stripe, live items */
    /* One more makes it more than 1/4 dead: that commit rewrites it. */
    assert_int_equal(ds_store_delete(st, nodes[1].id), 0);
    removed++;
    s = layout(st, "zebra");
    assert_int_equal(s.dead, 0);
    assert_int_equal(s.postings_of_term, N - removed);
    assert_int_equal(ds_test_df(st, "zebra"), N - removed);
    assert_int_equal(ds_test_count_hits(st, "zebra"), N - removed);
    assert_int_equal(ds_test_count_hits(st, "item1"), 0);
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.term_count, 2 + (N - removed));
    ds_node extra;
    put_text(st, &extra, "unrelated words");
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.term_count, 2 + (N - removed) + 2);
    for (int i = 0; i < N; i++) ds_node_free(&nodes[i]);
    ds_node_free(&extra);
    ds_store_close(st);
}

static void replace_within_transaction(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir(), 0);
    ds_node a;
    ds_test_make_node(&a, "first version apples", "/p");
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_put(tx, &a), 0);
    assert_int_equal(ds_node_set_content(&a, "second version pears", 20), 0);
    assert_int_equal(ds_wtxn_put(tx, &a), 0);          /* replaces the buffered one */
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(ds_test_count_hits(st, "apples"), 0);
    assert_int_equal(ds_test_count_hits(st, "pears"), 1);
    assert_int_equal(ds_test_df(st, "version"), 1);
    segstat s = layout(st, "version");
    assert_int_equal(s.dead, 0);
    assert_int_equal(s.postings_of_term, 1);
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.node_count, 1);
    assert_int_equal(info.term_count, 3);              /* second, version, pear */
    ds_node_free(&a);
    ds_store_close(st);
}

typedef struct ranked { size_t n; uint64_t seq[10]; double score[10]; } ranked;

static ranked top10(ds_store *st, const char *text)
{
    ranked r = { 0 };
    ds_query *q;
    assert_int_equal(ds_query_parse(text, strlen(text), &q), 0);
    ds_hit hits[10];
    assert_int_equal(ds_search_multi(&st, 1, q, NULL, 10, hits, &r.n), 0);
    for (size_t i = 0; i < r.n; i++) { r.seq[i] = hits[i].node.seq; r.score[i] = hits[i].score; }
    ds_hits_free(hits, r.n);
    ds_query_free(q);
    return r;
}

static void worker_matches_inline(void **state)
{
    (void)state;
    ds_store *a = open_at(ds_test_tmpdir(), 0), *b = open_at(ds_test_tmpdir(), 1);
    static const char *words[] = { "alpha", "beta", "gamma", "delta", "epsilon", "zeta",
                                   "eta", "theta", "iota", "kappa", "lambda", "mu" };
    ds_test_seed(42);
    for (int t = 0; t < 12; t++) {               /* transactions of varied sizes */
        ds_wtxn *ta, *tb;
        assert_int_equal(ds_store_begin(a, &ta), 0);
        assert_int_equal(ds_store_begin(b, &tb), 0);
        for (int i = 0; i < 1 + t * 37; i++) {
            char text[256] = "";
            uint8_t r[12];
            ds_test_random(r, sizeof r);
            for (int w = 0; w < 12; w++) {
                strcat(text, words[r[w] % 12]);
                strcat(text, r[w] & 0x80 ? " " : ", ");
            }
            ds_node na, nb;
            ds_test_make_node(&na, text, "/p");
            ds_node_init(&nb);
            assert_int_equal(ds_node_copy(&nb, &na), 0);
            assert_int_equal(ds_wtxn_put(ta, &na), 0);
            assert_int_equal(ds_wtxn_put(tb, &nb), 0);
            ds_node_free(&na);
            ds_node_free(&nb);
        }
        assert_int_equal(ds_wtxn_commit(ta), 0);
        assert_int_equal(ds_wtxn_commit(tb), 0);
    }
    ds_store_info ia, ib;
    assert_int_equal(ds_store_info_get(a, &ia), 0);
    assert_int_equal(ds_store_info_get(b, &ib), 0);
    assert_int_equal(ia.total_len, ib.total_len);
    assert_int_equal(ia.term_count, ib.term_count);
    assert_int_equal(ia.node_count, ib.node_count);
    for (int w = 0; w < 12; w++) {
        assert_int_equal(ds_test_df(a, words[w]), ds_test_df(b, words[w]));
        ranked ra = top10(a, words[w]), rb = top10(b, words[w]);
        assert_int_equal(ra.n, rb.n);
        for (size_t i = 0; i < ra.n; i++) {
            assert_int_equal(ra.seq[i], rb.seq[i]);
            assert_true(ra.score[i] == rb.score[i]);
        }
    }
    ds_store_close(a);
    ds_store_close(b);
}

/* Turns a fresh store into what schema 1 left on disk: the same nodes,
 * the old index tables instead of segments, schema 1. */
static void make_schema1(const char *dir)
{
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    static const char *const gone[] = { "segs", "segdata", "dead", "dterm" };
    for (int i = 0; i < 4; i++) {
        MDB_dbi d;
        assert_int_equal(mdb_dbi_open(txn, gone[i], 0, &d), 0);
        assert_int_equal(mdb_drop(txn, d, 1), 0);
    }
    MDB_dbi pd, td, meta;
    assert_int_equal(mdb_dbi_open(txn, "postings", MDB_CREATE, &pd), 0);
    assert_int_equal(mdb_dbi_open(txn, "terms", MDB_CREATE, &td), 0);
    MDB_val k = { 4, "junk" }, v = { 4, "junk" };
    assert_int_equal(mdb_put(txn, pd, &k, &v, 0), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    uint8_t s1[4];
    ds_put_be32(s1, 1);
    MDB_val sk = { 6, "schema" }, sv = { 4, s1 };
    assert_int_equal(mdb_put(txn, meta, &sk, &sv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void migrates_schema1(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_at(dir, 0);
    ds_node a, b;
    put_text(st, &a, "migration keeps nodes searchable");
    put_text(st, &b, "second node about migration");
    ds_store_close(st);
    make_schema1(dir);
    st = open_at(dir, 0);
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.schema, DS_STORE_SCHEMA);
    assert_int_equal(info.node_count, 2);
    assert_int_equal(ds_test_count_hits(st, "migration"), 2);
    assert_int_equal(ds_test_count_hits(st, "searchable"), 1);
    assert_int_equal(ds_test_df(st, "node"), 2);
    ds_node c;
    put_text(st, &c, "written after migration");
    assert_int_equal(ds_test_count_hits(st, "migration"), 3);
    ds_store_close(st);
    /* The old tables are gone. */
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    MDB_dbi d;
    assert_int_equal(mdb_dbi_open(txn, "postings", 0, &d), MDB_NOTFOUND);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    ds_node_free(&a);
    ds_node_free(&b);
    ds_node_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merges_keep_segments_few),
        cmocka_unit_test(merges_do_not_rewrite_big_segments_often),
        cmocka_unit_test(long_shared_prefixes),
        cmocka_unit_test(deletes_are_exact_then_purged),
        cmocka_unit_test(replace_within_transaction),
        cmocka_unit_test(worker_matches_inline),
        cmocka_unit_test(migrates_schema1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
