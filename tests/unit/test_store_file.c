/*
 * test_store_file.c - the store's data file, as LMDB maps it: a file cut
 * short while the store has it open fails every read and write with
 * DS_ERR_SHORT (LMDB would otherwise read past its end and crash the
 * process with SIGBUS), ds_store_check says by how much, opening such a
 * file fails cleanly; pages LMDB itself leaves unwritten past the end of
 * the file are covered at commit, never reported as damage; and
 * ds_store_replaced notices a data file moved away or replaced.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t EPOCH[DS_EPOCH_LEN] = "0123456789abcdef";

/* LMDB's page size: the system's for a store created here. */
static uint64_t psize(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

static ds_store *open_in(const char *dir)
{
    ds_store *st;
    ds_store_opts o = { .epoch_seed = EPOCH };
    assert_int_equal(ds_store_open(&st, dir, &o), 0);
    return st;
}

static char *data_path(const char *dir)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    return p;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

/* |count| nodes of a few KiB each, committed in one transaction: a store
 * of many pages.  The first node's id goes to |id|. */
static void fill(ds_store *st, int count, uint8_t id[DS_ID_LEN])
{
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    for (int i = 0; i < count; i++) {
        char text[4096];
        int len = snprintf(text, sizeof text, "zebrafish node %d", i);
        while (len < 3000) len += snprintf(text + len, sizeof text - (size_t)len, " word%d", len);
        ds_node n;
        ds_test_make_node(&n, text, "/p");
        assert_int_equal(ds_wtxn_put(tx, &n), 0);
        if (i == 0) memcpy(id, n.id, DS_ID_LEN);
        ds_node_free(&n);
    }
    assert_int_equal(ds_wtxn_commit(tx), 0);
}

static int count_cb(const ds_node *n, void *ud)
{
    (void)n;
    (*(int *)ud)++;
    return 0;
}

/* Every way in reports the damage, none reads past the end. */
static void all_fail(ds_store *st, const uint8_t id[DS_ID_LEN])
{
    ds_node n;
    int seen = 0;
    uint64_t count;
    uint8_t epoch[DS_EPOCH_LEN], got[DS_ID_LEN];
    ds_store_info info;
    ds_wtxn *tx = NULL;
    void *val;
    size_t vlen;
    assert_int_equal(ds_store_get(st, id, &n), DS_ERR_SHORT);
    assert_int_equal(ds_store_iter(st, 0, 0, count_cb, &seen), DS_ERR_SHORT);
    assert_int_equal(seen, 0);
    assert_int_equal(ds_store_node_count(st, &count), DS_ERR_SHORT);
    assert_int_equal(ds_store_epoch(st, epoch), DS_ERR_SHORT);
    assert_int_equal(ds_store_info_get(st, &info), DS_ERR_SHORT);
    assert_int_equal(ds_store_resolve_prefix(st, "4abc", got), DS_ERR_SHORT);
    assert_int_equal(ds_store_aux_get(st, DS_TABLE_FILES, "k", 1, &val, &vlen), DS_ERR_SHORT);
    assert_int_equal(ds_store_begin(st, &tx), DS_ERR_SHORT);
    assert_null(tx);
}

static void cut_short_while_open(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_in(dir);
    uint8_t id[DS_ID_LEN];
    fill(st, 60, id);
    const char *path = data_path(dir);
    uint64_t whole = file_size(path), have = 1, need = 0, span;
    assert_int_equal(ds_store_check(st, &have, &need), 0);
    assert_true(have == whole && need <= whole && need > 4 * psize());
    span = need;
    ds_node n;
    assert_int_equal(ds_store_get(st, id, &n), 0);
    ds_node_free(&n);

    /* Half, then only the meta pages, one page, nothing. */
    const uint64_t cuts[] = { whole / 2, 2 * psize(), psize(), 0 };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        assert_int_equal(truncate(path, (off_t)cuts[i]), 0);
        assert_int_equal(ds_store_check(st, &have, &need), DS_ERR_SHORT);
        assert_true(have == cuts[i]);
        assert_true(need == span);       /* the span last seen, also without meta pages */
        all_fail(st, id);
        assert_true(file_size(path) == cuts[i]);   /* never written to */
    }
    ds_store_close(st);
}

static void open_refuses_short_file(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_in(dir);
    uint8_t id[DS_ID_LEN];
    fill(st, 60, id);
    ds_store_close(st);
    const char *path = data_path(dir);
    uint64_t whole = file_size(path);
    ds_store_opts o = { .epoch_seed = EPOCH };
    /* Both meta pages kept: LMDB opens it, the store must not read on;
     * one page: LMDB refuses it, which says it was cut short too. */
    const uint64_t cuts[] = { whole - psize(), whole / 2, 2 * psize(), psize() };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        assert_int_equal(truncate(path, (off_t)cuts[i]), 0);
        st = NULL;
        assert_int_equal(ds_store_open(&st, dir, &o), DS_ERR_SHORT);
        assert_null(st);
        assert_true(file_size(path) == cuts[i]);
    }
    /* Cut to nothing: LMDB would make it a new, empty store.  Opening an
     * existing store must not; creating one may. */
    assert_int_equal(truncate(path, 0), 0);
    ds_store_opts ro = { .epoch_seed = EPOCH, .no_create = 1 };
    assert_int_equal(ds_store_open(&st, dir, &ro), DS_ERR_SHORT);
    assert_true(file_size(path) == 0);
    st = open_in(dir);
    uint64_t count = 1;
    assert_int_equal(ds_store_node_count(st, &count), 0);
    assert_int_equal(count, 0);
    ds_store_close(st);
}

/* A large node put and deleted again in one transaction: LMDB takes
 * pages from the end of the file for it, frees them before the commit
 * and never writes them, so without the extension at commit the file
 * ends before the database's last page (and this store would be
 * reported as damaged after a few rounds). */
static void unwritten_pages_are_covered(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_in(dir);
    const char *path = data_path(dir);
    size_t len = 200000;
    char *text = malloc(len + 1);
    assert_non_null(text);
    for (int round = 0; round < 40; round++) {
        for (size_t i = 0; i < len; i++)
            text[i] = i % 7 == 6 ? ' ' : (char)('a' + (round + i) % 20);
        text[len] = '\0';
        ds_wtxn *tx;
        assert_int_equal(ds_store_begin(st, &tx), 0);
        ds_node n;
        ds_test_make_node(&n, text, "/p");
        assert_int_equal(ds_wtxn_put(tx, &n), 0);
        if (round % 2) assert_int_equal(ds_wtxn_delete(tx, n.id), 0);
        ds_node_free(&n);
        assert_int_equal(ds_wtxn_commit(tx), 0);
        uint64_t have, need;
        assert_int_equal(ds_store_check(st, &have, &need), 0);
        assert_true(have >= need && have == file_size(path));
    }
    free(text);
    uint64_t count;
    assert_int_equal(ds_store_node_count(st, &count), 0);
    assert_int_equal(count, 20);
    ds_store_close(st);
    /* And opened again, as another process would. */
    st = open_in(dir);
    assert_int_equal(ds_store_node_count(st, &count), 0);
    assert_int_equal(count, 20);
    ds_store_close(st);
}

static void replaced_on_disk(void **state)
{
    (void)state;
    const char *dir = ds_test_tmpdir();
    ds_store *st = open_in(dir);
    uint8_t id[DS_ID_LEN];
    fill(st, 3, id);
    char path[4096], away[4200];
    snprintf(path, sizeof path, "%s", data_path(dir));
    snprintf(away, sizeof away, "%s.away", path);
    assert_int_equal(ds_store_replaced(st), 0);
    assert_int_equal(rename(path, away), 0);
    assert_int_equal(ds_store_replaced(st), 1);      /* moved away */
    /* The open file is still read: nothing was cut. */
    ds_node n;
    assert_int_equal(ds_store_get(st, id, &n), 0);
    ds_node_free(&n);
    assert_int_equal(rename(away, path), 0);
    assert_int_equal(ds_store_replaced(st), 0);      /* back */
    size_t len;
    char *copy = ds_test_read_file(path, &len);
    assert_non_null(copy);
    assert_int_equal(unlink(path), 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(copy, 1, len, f), len);
    fclose(f);
    free(copy);
    assert_int_equal(ds_store_replaced(st), 1);      /* another file, same bytes */
    ds_store_close(st);
}

int main(void)
{
    ds_test_seed(11);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cut_short_while_open),
        cmocka_unit_test(open_refuses_short_file),
        cmocka_unit_test(unwritten_pages_are_covered),
        cmocka_unit_test(replaced_on_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
