/*
 * test_runs.c - ids and sources as sorted runs (runs.c): every lookup (by
 * id, id prefix, source) stays exact across many commits, tiered merges,
 * compactions, parts of a few entries, replacements and deletions; merges
 * keep the run count small and drop the entries and dead records of
 * deleted nodes; once 1/DS_RUN_DEAD_SHARE of the entries are dead (and not
 * before), all runs are compacted into one even when the store stops
 * growing, but never a single run by itself, and never counting nodes the
 * committing transaction put and deleted itself; a corrupt run is an
 * error, not a crash; a schema-3 store (B-tree id and source tables) is
 * migrated.
 */
#include "testutil.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/store_int.h"
#include "core/util.h"

static const uint8_t EPOCH[DS_EPOCH_LEN] = "0123456789abcdef";

static ds_store *open_at(const char *dir)
{
    ds_store *st;
    ds_store_opts o = { .epoch_seed = EPOCH };
    assert_int_equal(ds_store_open(&st, dir, &o), 0);
    return st;
}

static size_t entries(ds_store *st, int dbi)
{
    MDB_txn *txn;
    MDB_stat ms;
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_stat(txn, st->dbi[dbi], &ms), 0);
    mdb_txn_abort(txn);
    return ms.ms_entries;
}

static int count_cb(const ds_node *n, void *ud)
{
    (void)n;
    (*(int *)ud)++;
    return 0;
}

static int by_source_count(ds_store *st, const char *src)
{
    int c = 0;
    assert_int_equal(ds_store_by_source(st, src, count_cb, &c), 0);
    return c;
}

/* Every node by id and by id prefix (the whole id, and its first 12
 * digits: 48 random bits, unique among a test's ids): the live ones give
 * their newest version, the gone ones nothing. */
static void check_all(ds_store *st, ds_node *n, int count, const int *gone)
{
    for (int i = 0; i < count; i++) {
        ds_node got;
        char hex[33], part[13];
        uint8_t id[DS_ID_LEN];
        ds_hex_encode(n[i].id, DS_ID_LEN, hex);
        memcpy(part, hex, 12);
        part[12] = 0;
        int rc = ds_store_get(st, n[i].id, &got);
        if (gone && gone[i]) {
            assert_int_equal(rc, DS_ERR_NOTFOUND);
            assert_int_equal(ds_store_resolve_prefix(st, hex, id), DS_ERR_NOTFOUND);
            assert_int_equal(ds_store_resolve_prefix(st, part, id), DS_ERR_NOTFOUND);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(got.seq, n[i].seq);
        assert_string_equal(got.content, n[i].content);
        ds_node_free(&got);
        assert_int_equal(ds_store_resolve_prefix(st, hex, id), 0);
        assert_memory_equal(id, n[i].id, DS_ID_LEN);
        memset(id, 0, sizeof id);
        assert_int_equal(ds_store_resolve_prefix(st, part, id), 0);
        assert_memory_equal(id, n[i].id, DS_ID_LEN);
    }
}

/* Node i has source "src-<i % nsrc>": each source gives its live nodes. */
static void check_sources(ds_store *st, const int *gone, int count, int nsrc)
{
    char text[32];
    for (int s = 0; s < nsrc; s++) {
        int live = 0;
        for (int i = s; i < count; i += nsrc) live += !gone[i];
        snprintf(text, sizeof text, "src-%d", s);
        assert_int_equal(by_source_count(st, text), live);
    }
}

/* The id (|kind| 0) or source (1) entries of all runs, from their headers
 * (id and source counts at bytes 24 and 32, big-endian). */
static uint64_t run_entries(ds_store *st, int kind)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, d;
    uint64_t sum = 0;
    assert_int_equal(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_cursor_open(txn, st->dbi[DBI_RUNS], &cur), 0);
    for (int rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        assert_true(d.mv_size >= 40);
        sum += ds_get_be64((const uint8_t *)d.mv_data + (kind ? 32 : 24));
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return sum;
}

static void empty_commit(ds_store *st)
{
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
}

/* 50 transactions of 8 nodes over 7 shared sources, parts of 3 entries:
 * merges happen, and every lookup stays exact throughout. */
static void lookups_survive_merges(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir());
    st->run_part_ents = 3;
    enum { N = 400 };
    ds_node *n = calloc(N, sizeof *n);
    assert_non_null(n);
    char text[64];
    size_t most_runs = 0;
    for (int t = 0; t < N; t += 8) {
        ds_wtxn *tx;
        assert_int_equal(ds_store_begin(st, &tx), 0);
        for (int i = t; i < t + 8; i++) {
            snprintf(text, sizeof text, "run node %d", i);
            ds_test_make_node(&n[i], text, "/p");
            snprintf(text, sizeof text, "src-%d", i % 7);
            assert_int_equal(ds_node_set_str(&n[i].source, text), 0);
            assert_int_equal(ds_wtxn_put(tx, &n[i]), 0);
        }
        assert_int_equal(ds_wtxn_commit(tx), 0);
        size_t runs = entries(st, DBI_RUNS);
        if (runs > most_runs) most_runs = runs;
        if (t % 80 == 0) check_all(st, n, t + 8, NULL);
    }
    /* 50 commits, fan-out 8: a handful of runs, not 50. */
    assert_true(most_runs <= 2 * DS_RUN_FANOUT);
    assert_true(entries(st, DBI_RUNS) < 50);
    check_all(st, n, N, NULL);
    for (int s = 0; s < 7; s++) {
        snprintf(text, sizeof text, "src-%d", s);
        assert_int_equal(by_source_count(st, text), (N - s + 6) / 7);
    }
    assert_int_equal(by_source_count(st, "src-9"), 0);
    for (int i = 0; i < N; i++) ds_node_free(&n[i]);
    free(n);
    ds_store_close(st);
}

/* Replacing and deleting: the old entries stop counting at once, and
 * the tiered merges over them drop them and their dead records.  The
 * dead stay below 1/DS_RUN_DEAD_SHARE of the entries, so no compaction
 * (compacts_when_enough_dead) does it instead. */
static void deletes_then_purged(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir());
    st->run_part_ents = 4;
    enum { N = 64, SRCS = 16 };
    ds_node n[N];
    int gone[N] = { 0 };
    char text[64];
    for (int t = 0; t < N; t += 8) {
        ds_wtxn *tx;
        assert_int_equal(ds_store_begin(st, &tx), 0);
        for (int i = t; i < t + 8; i++) {
            snprintf(text, sizeof text, "purge node %d", i);
            ds_test_make_node(&n[i], text, "/p");
            snprintf(text, sizeof text, "src-%d", i % SRCS);
            assert_int_equal(ds_node_set_str(&n[i].source, text), 0);
            assert_int_equal(ds_wtxn_put(tx, &n[i]), 0);
        }
        assert_int_equal(ds_wtxn_commit(tx), 0);
    }
    /* Replace one, delete two, delete a whole source. */
    assert_int_equal(ds_node_set_content(&n[0], "replaced text", 13), 0);
    assert_int_equal(ds_store_put(st, &n[0]), 0);
    assert_int_equal(ds_store_delete(st, n[1].id), 0);
    assert_int_equal(ds_store_delete(st, n[N - 1].id), 0);
    gone[1] = gone[N - 1] = 1;
    ds_wtxn *tx;
    size_t removed = 0;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_delete_source(tx, "src-3", &removed), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    int expect = 0;
    for (int i = 0; i < N; i++)
        if (i % SRCS == 3 && !gone[i]) { gone[i] = 1; expect++; }
    assert_int_equal((int)removed, expect);
    check_all(st, n, N, gone);
    assert_int_equal(by_source_count(st, "src-3"), 0);
    assert_int_equal(by_source_count(st, "src-0"), N / SRCS);   /* the replaced node kept its source */
    assert_true(entries(st, DBI_RUNDEAD) > 0);
    assert_true(entries(st, DBI_RUNDEAD) * DS_RUN_DEAD_SHARE < (size_t)N);
    /* Enough small commits to merge everything: the dead are purged. */
    for (int r = 0; r < 80 && entries(st, DBI_RUNDEAD) > 0; r++) {
        ds_node x;
        snprintf(text, sizeof text, "filler %d", r);
        ds_test_make_node(&x, text, "/p");
        assert_int_equal(ds_store_put(st, &x), 0);
        ds_node_free(&x);
    }
    assert_int_equal(entries(st, DBI_RUNDEAD), 0);
    check_all(st, n, N, gone);
    assert_int_equal(by_source_count(st, "src-3"), 0);
    assert_int_equal(by_source_count(st, "src-1"), N / SRCS - 1);   /* n[1] was deleted */
    for (int i = 0; i < N; i++) ds_node_free(&n[i]);
    ds_store_close(st);
}

/* Puts nodes [from, to) in commits of |per|, node i with source
 * "src-<i % nsrc>". */
static void put_batches(ds_store *st, ds_node *n, int from, int to, int per, int nsrc)
{
    char text[64];
    for (int t = from; t < to; t += per) {
        ds_wtxn *tx;
        assert_int_equal(ds_store_begin(st, &tx), 0);
        for (int i = t; i < t + per && i < to; i++) {
            snprintf(text, sizeof text, "compact node %d", i);
            ds_test_make_node(&n[i], text, "/p");
            snprintf(text, sizeof text, "src-%d", i % nsrc);
            assert_int_equal(ds_node_set_str(&n[i].source, text), 0);
            assert_int_equal(ds_wtxn_put(tx, &n[i]), 0);
        }
        assert_int_equal(ds_wtxn_commit(tx), 0);
    }
}

/* In one transaction, kills the nodes (k * 7) % count for k in [from,
 * to): even k replaced (new content, same id and source), odd k
 * deleted.  Returns how many were replaced. */
static int kill_some(ds_store *st, ds_node *n, int count, int *gone, int from, int to)
{
    ds_wtxn *tx;
    int replaced = 0;
    char text[64];
    assert_int_equal(ds_store_begin(st, &tx), 0);
    for (int k = from; k < to; k++) {
        int i = (k * 7) % count;
        assert_false(gone[i]);
        if (k % 2) {
            assert_int_equal(ds_wtxn_delete(tx, n[i].id), 0);
            gone[i] = 1;
            continue;
        }
        snprintf(text, sizeof text, "replaced node %d", i);
        assert_int_equal(ds_node_set_content(&n[i], text, strlen(text)), 0);
        assert_int_equal(ds_wtxn_put(tx, &n[i]), 0);
        replaced++;
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    return replaced;
}

/* A store that stops growing but keeps replacing and deleting: one big
 * run and a few small ones, which tiered merging leaves alone.  While
 * the dead are fewer than 1/DS_RUN_DEAD_SHARE of the id entries they
 * stay (commit after commit); the commit that reaches that share merges
 * all runs into one, dropping every dead entry and record, and every
 * lookup stays exact. */
static void compacts_when_enough_dead(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir());
    st->run_part_ents = 5;
    enum { BIG = 520, N = BIG + 24, NSRC = 7 };
    ds_node *n = calloc(N, sizeof *n);
    int *gone = calloc(N, sizeof *gone);
    assert_non_null(n);
    assert_non_null(gone);
    /* 65 commits of 8 end in one run of 520 after a commit, then three
     * runs of 8 (fewer than DS_RUN_FANOUT: no tiered merge). */
    put_batches(st, n, 0, BIG, 8, NSRC);
    empty_commit(st);
    assert_int_equal(entries(st, DBI_RUNS), 1);
    put_batches(st, n, BIG, N, 8, NSRC);
    assert_int_equal(entries(st, DBI_RUNS), 4);
    uint64_t total = run_entries(st, 0);
    assert_int_equal(total, N);

    /* Just below the share: nothing is compacted, now or later. */
    int below = (int)((total - 1) / DS_RUN_DEAD_SHARE);
    int replaced = kill_some(st, n, N, gone, 0, below);
    assert_int_equal(entries(st, DBI_RUNDEAD), (size_t)below);
    assert_int_equal(entries(st, DBI_RUNS), 5);                  /* + the replacements' run */
    total += (uint64_t)replaced;
    assert_int_equal(run_entries(st, 0), total);
    assert_int_equal(run_entries(st, 1), total);
    empty_commit(st);
    assert_int_equal(entries(st, DBI_RUNDEAD), (size_t)below);
    assert_int_equal(run_entries(st, 0), total);
    check_all(st, n, N, gone);
    check_sources(st, gone, N, NSRC);

    /* Reaching the share: one commit compacts all runs. */
    int reach = (int)((total + DS_RUN_DEAD_SHARE - 1) / DS_RUN_DEAD_SHARE);
    replaced = kill_some(st, n, N, gone, below, reach);
    assert_int_equal(entries(st, DBI_RUNDEAD), 0);
    assert_int_equal(entries(st, DBI_RUNS), 2);                  /* compacted + the new run */
    int live = 0;
    for (int i = 0; i < N; i++) live += !gone[i];
    assert_int_equal(run_entries(st, 0), (uint64_t)live);
    assert_int_equal(run_entries(st, 1), (uint64_t)live);
    check_all(st, n, N, gone);
    check_sources(st, gone, N, NSRC);
    assert_true(replaced > 0);
    for (int i = 0; i < N; i++) ds_node_free(&n[i]);
    free(n);
    free(gone);
    ds_store_close(st);
}

/* A single run is not merged by itself, however dead: the compaction
 * waits for a second run, then drops the dead. */
static void one_run_waits_for_another(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir());
    enum { N = 17, NSRC = 3 };
    ds_node n[N];
    int gone[N] = { 0 };
    put_batches(st, n, 0, N - 1, N - 1, NSRC);
    kill_some(st, n, N - 1, gone, 1, 9);                       /* 8 of 16: 4 deleted, 4 replaced */
    assert_int_equal(entries(st, DBI_RUNDEAD), 8);
    /* The replacements' run came after the check: two runs now. */
    assert_int_equal(entries(st, DBI_RUNS), 2);
    empty_commit(st);
    assert_int_equal(entries(st, DBI_RUNDEAD), 0);
    assert_int_equal(entries(st, DBI_RUNS), 1);
    assert_int_equal(run_entries(st, 0), 12);
    put_batches(st, n, N - 1, N, 1, NSRC);
    check_all(st, n, N, gone);
    check_sources(st, gone, N, NSRC);
    for (int i = 0; i < N; i++) ds_node_free(&n[i]);
    ds_store_close(st);
}

/* Nodes a transaction puts and deletes itself are not in a run yet when
 * its commit checks for compaction: they do not count, and their dead
 * records wait for a later commit. */
static void own_deaths_wait_for_their_run(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir());
    enum { N = 20, NSRC = 4 };
    ds_node n[N];
    int gone[N] = { 0 };
    put_batches(st, n, 0, 16, 8, NSRC);
    assert_int_equal(entries(st, DBI_RUNS), 2);
    char text[64];
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    for (int i = 16; i < N; i++) {
        snprintf(text, sizeof text, "short-lived node %d", i);
        ds_test_make_node(&n[i], text, "/p");
        snprintf(text, sizeof text, "src-%d", i % NSRC);
        assert_int_equal(ds_node_set_str(&n[i].source, text), 0);
        assert_int_equal(ds_wtxn_put(tx, &n[i]), 0);
        assert_int_equal(ds_wtxn_delete(tx, n[i].id), 0);
        gone[i] = 1;
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    /* 4 dead of 20 would reach the share, but none of 16 in the runs. */
    assert_int_equal(entries(st, DBI_RUNDEAD), 4);
    assert_int_equal(entries(st, DBI_RUNS), 3);
    check_all(st, n, N, gone);
    empty_commit(st);
    assert_int_equal(entries(st, DBI_RUNDEAD), 0);
    assert_int_equal(entries(st, DBI_RUNS), 1);
    assert_int_equal(run_entries(st, 0), 16);
    check_all(st, n, N, gone);
    check_sources(st, gone, N, NSRC);
    for (int i = 0; i < N; i++) ds_node_free(&n[i]);
    ds_store_close(st);
}

/* Within one transaction: a node put twice, deleted, put again; and a
 * source deleted after its nodes were put in the same transaction. */
static void same_transaction(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir());
    ds_node a, b;
    ds_test_make_node(&a, "first version", "/p");
    ds_test_make_node(&b, "other node", "/p");
    assert_int_equal(ds_node_set_str(&b.source, "shared"), 0);
    assert_int_equal(ds_node_set_str(&a.source, "shared"), 0);
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_put(tx, &a), 0);
    assert_int_equal(ds_node_set_content(&a, "second version", 14), 0);
    assert_int_equal(ds_wtxn_put(tx, &a), 0);
    assert_int_equal(ds_wtxn_put(tx, &b), 0);
    assert_int_equal(ds_wtxn_delete(tx, b.id), 0);
    assert_int_equal(ds_wtxn_delete(tx, b.id), DS_ERR_NOTFOUND);
    assert_int_equal(ds_wtxn_put(tx, &b), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    ds_node got;
    assert_int_equal(ds_store_get(st, a.id, &got), 0);
    assert_string_equal(got.content, "second version");
    ds_node_free(&got);
    assert_int_equal(ds_store_get(st, b.id, &got), 0);
    assert_int_equal(got.seq, b.seq);
    ds_node_free(&got);
    assert_int_equal(by_source_count(st, "shared"), 2);
    size_t removed = 0;
    ds_node c;
    ds_test_make_node(&c, "third", "/p");
    assert_int_equal(ds_node_set_str(&c.source, "shared"), 0);
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_put(tx, &c), 0);
    assert_int_equal(ds_wtxn_delete_source(tx, "shared", &removed), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(removed, 3);
    assert_int_equal(by_source_count(st, "shared"), 0);
    assert_int_equal(ds_store_get(st, c.id, &got), DS_ERR_NOTFOUND);
    ds_node_free(&a);
    ds_node_free(&b);
    ds_node_free(&c);
    ds_store_close(st);
}

/* Damaged run records are reported as a store error. */
static void corrupt_run_is_an_error(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_at(dir);
    ds_node a;
    ds_test_make_node(&a, "soon corrupt", "/p");
    assert_int_equal(ds_store_put(st, &a), 0);
    /* Truncate the run's id part to a non-multiple of the entry size. */
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(st->env, NULL, 0, &txn), 0);
    MDB_cursor *cur;
    assert_int_equal(mdb_cursor_open(txn, st->dbi[DBI_RUNDATA], &cur), 0);
    MDB_val k, d;
    assert_int_equal(mdb_cursor_get(cur, &k, &d, MDB_FIRST), 0);
    uint8_t key[64];
    memcpy(key, k.mv_data, k.mv_size);
    MDB_val nk = { k.mv_size, key }, nv = { 7, "garbage" };
    mdb_cursor_close(cur);
    assert_int_equal(mdb_put(txn, st->dbi[DBI_RUNDATA], &nk, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    ds_node got;
    assert_int_equal(ds_store_get(st, a.id, &got), DS_ERR_STORE);
    /* And a header of the wrong length. */
    assert_int_equal(mdb_txn_begin(st->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_cursor_open(txn, st->dbi[DBI_RUNS], &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &d, MDB_FIRST), 0);
    memcpy(key, k.mv_data, k.mv_size);
    nk.mv_size = k.mv_size;
    mdb_cursor_close(cur);
    assert_int_equal(mdb_put(txn, st->dbi[DBI_RUNS], &nk, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_int_equal(ds_store_get(st, a.id, &got), DS_ERR_STORE);
    assert_int_equal(ds_store_by_source(st, a.source, count_cb, &(int){ 0 }), DS_ERR_STORE);
    ds_node_free(&a);
    ds_store_close(st);
}

/* Turns a fresh store into what schema 3 left on disk: the same nodes,
 * B-tree id and source tables instead of runs, no source key. */
static void make_schema3(const char *dir)
{
    static const char *const gone[] = { "runs", "rundata", "rundead" };
    static const char *const old[] = { "ids", "ids_delta", "by_source", "by_source_delta" };
    ds_test_old_layout(dir, 3, gone, 3, old, 4, "srckey");
}

static void migrates_schema3(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_at(dir);
    ds_node n[5];
    for (int i = 0; i < 5; i++) {
        char text[32];
        snprintf(text, sizeof text, "migrated node %d", i);
        ds_test_make_node(&n[i], text, "/p");
        assert_int_equal(ds_node_set_str(&n[i].source, i < 3 ? "file-a" : "file-b"), 0);
        assert_int_equal(ds_store_put(st, &n[i]), 0);
    }
    assert_int_equal(ds_store_delete(st, n[4].id), 0);
    ds_store_close(st);
    make_schema3(dir);
    st = open_at(dir);
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.schema, DS_STORE_SCHEMA);
    assert_int_equal(info.node_count, 4);
    int gone[5] = { 0, 0, 0, 0, 1 };
    check_all(st, n, 5, gone);
    assert_int_equal(by_source_count(st, "file-a"), 3);
    assert_int_equal(by_source_count(st, "file-b"), 1);
    assert_int_equal(ds_test_count_hits(st, "migrated"), 4);
    ds_store_close(st);
    /* The old tables are gone. */
    static const char *const old_tables[] = { "ids", "ids_delta", "by_source", "by_source_delta" };
    assert_int_equal(ds_test_tables_present(dir, old_tables, 4), 0);
    for (int i = 0; i < 5; i++) ds_node_free(&n[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lookups_survive_merges),
        cmocka_unit_test(deletes_then_purged),
        cmocka_unit_test(compacts_when_enough_dead),
        cmocka_unit_test(one_run_waits_for_another),
        cmocka_unit_test(own_deaths_wait_for_their_run),
        cmocka_unit_test(same_transaction),
        cmocka_unit_test(corrupt_run_is_an_error),
        cmocka_unit_test(migrates_schema3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
