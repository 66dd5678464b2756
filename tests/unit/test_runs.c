/*
 * test_runs.c - ids and sources as sorted runs (runs.c): every lookup (by
 * id, id prefix, source) stays exact across many commits, tiered merges,
 * parts of a few entries, replacements and deletions; merges keep the run
 * count small and drop the entries and dead records of deleted nodes; a
 * corrupt run is an error, not a crash; a schema-3 store (B-tree id and
 * source tables) is migrated.
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

static void check_all(ds_store *st, ds_node *n, int count, const int *gone)
{
    for (int i = 0; i < count; i++) {
        ds_node got;
        int rc = ds_store_get(st, n[i].id, &got);
        if (gone && gone[i]) {
            assert_int_equal(rc, DS_ERR_NOTFOUND);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(got.seq, n[i].seq);
        assert_string_equal(got.content, n[i].content);
        ds_node_free(&got);
        char hex[33];
        ds_hex_encode(n[i].id, DS_ID_LEN, hex);
        uint8_t id[DS_ID_LEN];
        assert_int_equal(ds_store_resolve_prefix(st, hex, id), 0);
        assert_memory_equal(id, n[i].id, DS_ID_LEN);
    }
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
 * the merges over them drop them and their dead records. */
static void deletes_then_purged(void **state)
{
    (void)state;
    ds_store *st = open_at(ds_test_tmpdir());
    st->run_part_ents = 4;
    enum { N = 64 };
    ds_node n[N];
    int gone[N] = { 0 };
    char text[64];
    for (int t = 0; t < N; t += 8) {
        ds_wtxn *tx;
        assert_int_equal(ds_store_begin(st, &tx), 0);
        for (int i = t; i < t + 8; i++) {
            snprintf(text, sizeof text, "purge node %d", i);
            ds_test_make_node(&n[i], text, "/p");
            snprintf(text, sizeof text, "src-%d", i % 5);
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
        if (i % 5 == 3 && !gone[i]) { gone[i] = 1; expect++; }
    assert_int_equal((int)removed, expect);
    check_all(st, n, N, gone);
    assert_int_equal(by_source_count(st, "src-3"), 0);
    assert_int_equal(by_source_count(st, "src-0"), (N + 4) / 5);   /* the replaced node kept its source */
    assert_true(entries(st, DBI_RUNDEAD) > 0);
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
    assert_int_equal(by_source_count(st, "src-1"), (N - 1 + 4) / 5 - 1);   /* n[1] was deleted */
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
        cmocka_unit_test(same_transaction),
        cmocka_unit_test(corrupt_run_is_an_error),
        cmocka_unit_test(migrates_schema3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
