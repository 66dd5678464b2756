/*
 * test_idfilter.c - the Bloom filter over stored ids: it never says
 * "absent" for a stored id (across transactions, aborts, rebuilds at a
 * larger size, a reset, and a store from schema 2 that has no filter
 * yet), and it does say "absent" for almost every new id.
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
    st->idf_min_cap = 16;            /* rebuild often */
    return st;
}

static uint64_t node_count(ds_store *st)
{
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    return info.node_count;
}

/* Puts |n| nodes in transactions of |per|, keeping their ids in |ids|. */
static void put_many(ds_store *st, uint8_t (*ids)[DS_ID_LEN], int n, int per)
{
    char text[64];
    ds_wtxn *tx = NULL;
    for (int i = 0; i < n; i++) {
        if (!tx) assert_int_equal(ds_store_begin(st, &tx), 0);
        ds_node nd;
        snprintf(text, sizeof text, "filtered node %d", i);
        ds_test_make_node(&nd, text, "/p");
        memcpy(ids[i], nd.id, DS_ID_LEN);
        assert_int_equal(ds_wtxn_put(tx, &nd), 0);
        ds_node_free(&nd);
        if ((i + 1) % per == 0 || i + 1 == n) { assert_int_equal(ds_wtxn_commit(tx), 0); tx = NULL; }
    }
}

/* Every stored id must be found again: re-putting replaces, put_new
 * keeps the first copy. */
static void assert_all_known(ds_store *st, uint8_t (*ids)[DS_ID_LEN], int n)
{
    uint64_t before = node_count(st);
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    for (int i = 0; i < n; i++) {
        int maybe = 0;
        assert_int_equal(ds__idf_maybe(tx, ids[i], &maybe), 0);
        assert_true(maybe);
        ds_node nd;
        ds_test_make_node(&nd, "a second copy", "/p");
        memcpy(nd.id, ids[i], DS_ID_LEN);
        int inserted = -1;
        assert_int_equal(ds_wtxn_put_new(tx, &nd, &inserted), 0);
        assert_int_equal(inserted, 0);
        if (i % 7 == 0) assert_int_equal(ds_wtxn_put(tx, &nd), 0);   /* replace */
        ds_node_free(&nd);
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(node_count(st), before);
}

static void never_misses_a_stored_id(void **state)
{
    (void)state;
    enum { N = 600 };
    static uint8_t ids[N][DS_ID_LEN];
    ds_store *st = open_at(ds_test_tmpdir());
    put_many(st, ids, N, 25);        /* capacity 16: several rebuilds */
    assert_int_equal(node_count(st), N);
    assert_all_known(st, ids, N);

    /* An aborted transaction's additions vanish from the filter with it. */
    ds_wtxn *tx;
    ds_node nd;
    ds_test_make_node(&nd, "never committed", "/p");
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_put(tx, &nd), 0);
    ds_wtxn_abort(tx);
    assert_int_equal(ds_store_begin(st, &tx), 0);
    int inserted = 0;
    assert_int_equal(ds_wtxn_put_new(tx, &nd, &inserted), 0);
    assert_int_equal(inserted, 1);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    ds_node_free(&nd);
    assert_int_equal(node_count(st), N + 1);

    /* After a reset the filter starts again from nothing. */
    uint8_t ep[DS_EPOCH_LEN] = "fedcba9876543210";
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_wtxn_clear(tx, ep), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    put_many(st, ids, 50, 10);
    assert_all_known(st, ids, 50);
    assert_int_equal(node_count(st), 50);
    ds_store_close(st);
}

static void filters_new_ids(void **state)
{
    (void)state;
    enum { N = 2000, PROBES = 4000 };
    static uint8_t ids[N][DS_ID_LEN];
    ds_store *st = open_at(ds_test_tmpdir());
    put_many(st, ids, N, 500);
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    int maybes = 0;
    for (int i = 0; i < PROBES; i++) {
        uint8_t r[DS_ID_LEN], id[DS_ID_LEN];
        ds_test_random(r, sizeof r);
        ds_uuid_from_random(id, r);
        int maybe = 1;
        assert_int_equal(ds__idf_maybe(tx, id, &maybe), 0);
        maybes += maybe;
    }
    ds_wtxn_abort(tx);
    /* 8 bits per id at most half full: well under 5% false "maybe". */
    assert_true(maybes < PROBES / 20);
    ds_store_close(st);
}

/* A schema-2 store has no id_filter table: opening migrates it to the
 * current schema and the first put builds the filter from the ids. */
static void schema2_store_gets_a_filter(void **state)
{
    (void)state;
    enum { N = 120 };
    static uint8_t ids[N][DS_ID_LEN];
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_at(dir);
    put_many(st, ids, N, 40);
    ds_store_close(st);

    static const char *const gone[] = { "id_filter" };
    ds_test_old_layout(dir, 2, gone, 1, NULL, 0, NULL);

    st = open_at(dir);
    ds_store_info info;
    assert_int_equal(ds_store_info_get(st, &info), 0);
    assert_int_equal(info.schema, DS_STORE_SCHEMA);
    assert_int_equal(info.node_count, N);
    assert_all_known(st, ids, N);
    ds_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(never_misses_a_stored_id),
        cmocka_unit_test(filters_new_ids),
        cmocka_unit_test(schema2_store_gets_a_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
