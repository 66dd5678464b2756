/*
 * test_exchange.c - export files over real LMDB stores: the exported set
 * is exactly the shared set (no canary from an unshared project or the
 * sibling "/a/proj-x"), export -> import reproduces it in a replica with
 * the cursor recorded, any changed byte or truncation is refused before
 * anything is written, another signer is refused, multi-page files,
 * imports applied in whole batches (also when cut by a store error),
 * incremental exports and their cursor rule, and trailing data.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds/error.h"
#include "ds/search.h"
#include "core/exchange.h"

static ds_store *open_store(void)
{
    ds_store *st;
    uint8_t epoch[DS_EPOCH_LEN];
    ds_test_random(epoch, sizeof epoch);
    ds_store_opts o = { .epoch_seed = epoch };
    assert_int_equal(ds_store_open(&st, ds_test_tmpdir(), &o), 0);
    return st;
}

static void put(ds_store *st, const char *content, const char *project)
{
    ds_node n;
    ds_test_make_node(&n, content, project);
    assert_int_equal(ds_store_put(st, &n), 0);
    ds_node_free(&n);
}

static int to_buf(void *ud, const uint8_t *d, size_t n)
{
    return ds_buf_append(ud, d, n);
}

static void make_id(ds_identity *id, uint8_t b)
{
    uint8_t seed[32];
    memset(seed, b, sizeof seed);
    assert_int_equal(ds_identity_from_seed(id, seed), 0);
}

static int count_cb(const ds_node *n, void *ud)
{
    (void)n;
    (*(size_t *)ud)++;
    return 0;
}

static size_t count(ds_store *st)
{
    size_t c = 0;
    assert_int_equal(ds_store_iter(st, 0, 0, count_cb, &c), 0);
    return c;
}

typedef struct seen { int canary, shared; } seen;

static int seen_cb(const ds_node *n, void *ud)
{
    seen *s = ud;
    if (strstr(n->content, "CANARY")) s->canary++;
    if (strstr(n->content, "SHARED")) s->shared++;
    return 0;
}

static void fill_alice(ds_store *st)
{
    put(st, "SHARED root note about lmdb", "/a/proj");
    put(st, "SHARED sub note about frames", "/a/proj/sub/dir");
    put(st, "CANARY sibling secret", "/a/proj-x");
    put(st, "CANARY private project secret", "/b/private");
    put(st, "CANARY no project", "");
    put(st, "SHARED third note", "/a/proj");
}

static void export_import_exact(void **state)
{
    (void)state;
    ds_store *alice = open_store(), *rep = open_store();
    fill_alice(alice);
    ds_identity id;
    make_id(&id, 1);
    const char *roots[] = { "/a/proj" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    ds_export_opts o = { .id = &id, .share = &share, .seal = ds_test_seal(),
                         .created_ms = 1700000000000 };
    ds_buf file = { 0 };
    ds_export_result er;
    assert_int_equal(ds_export_write(alice, &o, to_buf, &file, &er), 0);
    assert_int_equal(er.nodes, 3);
    assert_true(er.full);
    assert_int_equal(er.bytes, file.len);
    assert_null(memmem(file.data, file.len, "CANARY", 6));
    assert_non_null(memmem(file.data, file.len, "SHARED", 6));

    ds_import_info info;
    assert_int_equal(ds_import_verify(file.data, file.len, &info), 0);
    assert_string_equal(info.node_id, id.node_id);
    assert_int_equal(info.nodes, 3);
    assert_true(info.full);
    assert_int_equal(info.created_ms, 1700000000000);

    ds_import_result res;
    assert_int_equal(ds_import_apply(file.data, file.len, id.node_id, rep, &info, &res), 0);
    assert_int_equal(res.inserted, 3);
    assert_true(res.cursor_advanced);
    seen s = { 0 };
    assert_int_equal(ds_store_iter(rep, 0, 0, seen_cb, &s), 0);
    assert_int_equal(s.shared, 3);
    assert_int_equal(s.canary, 0);
    uint8_t cur[DS_CURSOR_LEN];
    int has;
    assert_int_equal(ds_sync_cursor_get(rep, cur, &has), 0);
    assert_true(has);
    assert_memory_equal(cur, er.cursor, DS_CURSOR_LEN);
    /* importing again inserts nothing (first copy kept) */
    assert_int_equal(ds_import_apply(file.data, file.len, id.node_id, rep, &info, &res), 0);
    assert_int_equal(res.inserted, 0);
    assert_int_equal(count(rep), 3);

    ds_buf_free(&file);
    ds_share_set_free(&share);
    ds_store_close(alice);
    ds_store_close(rep);
}

static void tamper_and_wrong_signer(void **state)
{
    (void)state;
    ds_store *alice = open_store(), *rep = open_store();
    fill_alice(alice);
    ds_identity id, mallory;
    make_id(&id, 1);
    make_id(&mallory, 2);
    const char *roots[] = { "/a/proj" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    ds_export_opts o = { .id = &id, .share = &share, .seal = ds_test_seal(), .created_ms = 5 };
    ds_buf file = { 0 };
    ds_export_result er;
    assert_int_equal(ds_export_write(alice, &o, to_buf, &file, &er), 0);
    ds_import_info info;
    ds_import_result res;

    /* every single-byte change is refused, and nothing is applied */
    for (size_t i = 0; i < file.len; i++) {
        file.data[i] ^= 0x20;
        int rc = ds_import_apply(file.data, file.len, id.node_id, rep, &info, &res);
        assert_true(rc < 0);
        assert_non_null(info.err_what);
        file.data[i] ^= 0x20;
    }
    assert_int_equal(count(rep), 0);
    /* a flip inside a node's content is a signature failure */
    uint8_t *p = memmem(file.data, file.len, "SHARED sub", 10);
    assert_non_null(p);
    p[0] = 'X';
    assert_int_equal(ds_import_verify(file.data, file.len, &info), DS_ERR_CRYPTO);
    p[0] = 'S';
    /* every truncation */
    for (size_t cut = 0; cut < file.len; cut++)
        assert_true(ds_import_verify(file.data, cut, &info) < 0);
    /* trailing bytes after the signature */
    ds_buf longer = { 0 };
    assert_int_equal(ds_buf_append(&longer, file.data, file.len), 0);
    assert_int_equal(ds_buf_append(&longer, "\0\0\0\1\xc0", 5), 0);
    assert_int_equal(ds_import_verify(longer.data, longer.len, &info), DS_ERR_MALFORMED);
    assert_string_equal(info.err_what, "data after the signature");
    /* one stray byte after the signature (found by the fuzzer) */
    assert_int_equal(ds_import_verify(longer.data, file.len + 1, &info), DS_ERR_MALFORMED);
    assert_string_equal(info.err_what, "data after the signature");
    /* a valid file from another signer than expected */
    assert_int_equal(ds_import_apply(file.data, file.len, mallory.node_id, rep, &info, &res),
                     DS_ERR_UNAUTHORIZED);
    assert_int_equal(count(rep), 0);
    /* mallory re-signs alice's pages claiming to be alice: bad signature */
    ds_export_opts om = { .id = &mallory, .share = &share, .seal = ds_test_seal(),
                          .created_ms = 5 };
    ds_buf forged = { 0 };
    assert_int_equal(ds_export_write(alice, &om, to_buf, &forged, &er), 0);
    uint8_t *hid = memmem(forged.data, forged.len, mallory.node_id, 64);
    assert_non_null(hid);
    memcpy(hid, id.node_id, 64);
    assert_int_equal(ds_import_verify(forged.data, forged.len, &info), DS_ERR_CRYPTO);
    /* the untouched file still imports */
    assert_int_equal(ds_import_apply(file.data, file.len, id.node_id, rep, &info, &res), 0);
    assert_int_equal(count(rep), 3);
    assert_int_equal(ds_import_verify((const uint8_t *)"", 0, &info), DS_ERR_TRUNCATED);

    ds_buf_free(&forged);
    ds_buf_free(&longer);
    ds_buf_free(&file);
    ds_share_set_free(&share);
    ds_store_close(alice);
    ds_store_close(rep);
}

static void pages_and_incremental(void **state)
{
    (void)state;
    ds_store *alice = open_store(), *rep = open_store(), *fresh = open_store();
    char text[64];
    for (int i = 0; i < 25; i++) {
        snprintf(text, sizeof text, "SHARED note number %d", i);
        put(alice, text, i % 5 == 0 ? "/a/proj-x" : "/a/proj");
    }
    ds_identity id;
    make_id(&id, 3);
    const char *roots[] = { "/a/proj" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    ds_export_opts o = { .id = &id, .share = &share, .seal = ds_test_seal(), .created_ms = 1,
                         .page_nodes = 4 };
    ds_buf f1 = { 0 }, f2 = { 0 };
    ds_export_result r1, r2;
    assert_int_equal(ds_export_write(alice, &o, to_buf, &f1, &r1), 0);
    assert_int_equal(r1.nodes, 20);
    assert_true(r1.pages >= 5);
    ds_import_info info;
    ds_import_result res;
    assert_int_equal(ds_import_apply(f1.data, f1.len, id.node_id, rep, &info, &res), 0);
    assert_int_equal(res.inserted, 20);
    assert_int_equal(info.pages, r1.pages);

    /* new nodes; incremental export continues from r1's cursor */
    put(alice, "SHARED late one", "/a/proj");
    put(alice, "CANARY late", "/elsewhere");
    o.since = r1.cursor;
    assert_int_equal(ds_export_write(alice, &o, to_buf, &f2, &r2), 0);
    assert_false(r2.full);
    assert_int_equal(r2.nodes, 1);
    assert_int_equal(ds_import_verify(f2.data, f2.len, &info), 0);
    assert_false(info.full);
    assert_true(info.has_since);
    assert_int_equal(ds_import_apply(f2.data, f2.len, id.node_id, rep, &info, &res), 0);
    assert_int_equal(res.inserted, 1);
    assert_true(res.cursor_advanced);
    uint8_t cur[DS_CURSOR_LEN];
    int has;
    assert_int_equal(ds_sync_cursor_get(rep, cur, &has), 0);
    assert_memory_equal(cur, r2.cursor, DS_CURSOR_LEN);

    /* the incremental file alone, into a fresh replica: nodes taken, but
     * the cursor does not claim the earlier nodes */
    assert_int_equal(ds_import_apply(f2.data, f2.len, id.node_id, fresh, &info, &res), 0);
    assert_int_equal(res.inserted, 1);
    assert_false(res.cursor_advanced);
    assert_int_equal(ds_sync_cursor_get(fresh, cur, &has), 0);
    assert_memory_not_equal(cur, r2.cursor, DS_CURSOR_LEN);

    /* a since cursor from another share set is ignored: a full export */
    const char *roots2[] = { "/a" };
    ds_share_set share2;
    assert_int_equal(ds_share_set_init(&share2, roots2, 1), 0);
    o.share = &share2;
    f2.len = 0;
    assert_int_equal(ds_export_write(alice, &o, to_buf, &f2, &r2), 0);
    assert_true(r2.full);
    assert_int_equal(r2.nodes, 26);

    /* so is one that does not open with this node's key */
    o.share = &share;
    o.since = r1.cursor;
    f2.len = 0;
    assert_int_equal(ds_export_write(alice, &o, to_buf, &f2, &r2), 0);
    assert_false(r2.full);                          /* (with the right key it continues) */
    ds_cursor_seal other;
    ds_test_seal_make(&other, 0x77);
    o.seal = &other;
    f2.len = 0;
    assert_int_equal(ds_export_write(alice, &o, to_buf, &f2, &r2), 0);
    assert_true(r2.full);
    ds_cursor_seal_wipe(&other);

    ds_buf_free(&f1);
    ds_buf_free(&f2);
    ds_share_set_free(&share);
    ds_share_set_free(&share2);
    ds_store_close(alice);
    ds_store_close(rep);
    ds_store_close(fresh);
}

/* Import writes pages in batches of 64 (one transaction each): all of a
 * multi-batch file arrives with the file's cursor, and an import cut by a
 * store failure keeps whole batches only, with the cursor of the last
 * one, so importing again completes it. */
static void import_batches(void **state)
{
    (void)state;
    enum { NODES = 700, PAGE = 4, BATCH = 64 * PAGE };  /* batches of 256, 256, 188 */
    ds_store *alice = open_store();
    char text[64];
    for (int i = 0; i < NODES; i++) {
        snprintf(text, sizeof text, "SHARED batch note %d tag%d", i, i);
        put(alice, text, "/a/proj");
    }
    ds_identity id;
    make_id(&id, 4);
    const char *roots[] = { "/a/proj" };
    ds_share_set share;
    assert_int_equal(ds_share_set_init(&share, roots, 1), 0);
    ds_export_opts o = { .id = &id, .share = &share, .seal = ds_test_seal(), .created_ms = 1,
                         .page_nodes = PAGE };
    ds_buf f = { 0 };
    ds_export_result er;
    assert_int_equal(ds_export_write(alice, &o, to_buf, &f, &er), 0);
    assert_int_equal(er.nodes, NODES);
    assert_int_equal(er.pages, NODES / PAGE);

    ds_store *rep = open_store();
    ds_import_info info;
    ds_import_result res;
    assert_int_equal(ds_import_apply(f.data, f.len, id.node_id, rep, &info, &res), 0);
    assert_int_equal(res.pages, NODES / PAGE);
    assert_int_equal(res.nodes, NODES);
    assert_int_equal(res.inserted, NODES);
    assert_int_equal(count(rep), NODES);
    uint8_t cur[DS_CURSOR_LEN];
    int has;
    assert_int_equal(ds_sync_cursor_get(rep, cur, &has), 0);
    assert_true(has);
    assert_memory_equal(cur, er.cursor, DS_CURSOR_LEN);
    /* Every batch's texts are indexed, the later ones tokenized ahead
     * while the batch before them committed. */
    for (int i = 0; i < NODES; i += 37) {
        char term[16], want[64];
        snprintf(term, sizeof term, "tag%d", i);
        snprintf(want, sizeof want, "SHARED batch note %d tag%d", i, i);
        ds_query *q;
        assert_int_equal(ds_query_parse(term, strlen(term), &q), 0);
        ds_hit hits[2];
        size_t nh = 0;
        assert_int_equal(ds_search_multi(&rep, 1, q, NULL, 2, hits, &nh), 0);
        assert_int_equal(nh, 1);
        assert_string_equal(hits[0].node.content, want);
        ds_hits_free(hits, nh);
        ds_query_free(q);
    }
    ds_store_close(rep);

    int cut_between = 0;
    for (int after = 1; after <= 3400; after += after < 100 ? 33 : 60) {
        ds_store *r = open_store();
        ds_store_fail_after(r, after);
        int rc = ds_import_apply(f.data, f.len, id.node_id, r, &info, &res);
        ds_store_fail_after(r, 0);
        size_t kept = count(r);
        if (rc == 0) {
            assert_int_equal(kept, NODES);
        } else {
            assert_int_equal(rc, DS_ERR_INJECTED);
            assert_true(kept % BATCH == 0 && kept < NODES);
            assert_int_equal(res.inserted, kept);
            if (kept > 0) {
                cut_between |= kept == BATCH ? 1 : 2;
                assert_int_equal(ds_sync_cursor_get(r, cur, &has), 0);
                assert_true(has);
                assert_memory_not_equal(cur, er.cursor, DS_CURSOR_LEN);
            }
            assert_int_equal(ds_import_apply(f.data, f.len, id.node_id, r, &info, &res), 0);
            assert_int_equal(res.inserted, NODES - kept);
            assert_int_equal(count(r), NODES);
        }
        ds_store_close(r);
    }
    assert_int_equal(cut_between, 3); /* cuts fell in the second and the third batch */
    ds_buf_free(&f);
    ds_share_set_free(&share);
    ds_store_close(alice);
}

static int fail_writer(void *ud, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    return --*(int *)ud <= 0 ? DS_ERR_IO : 0;
}

static void empty_share_and_writer_error(void **state)
{
    (void)state;
    ds_store *alice = open_store();
    fill_alice(alice);
    ds_identity id;
    make_id(&id, 4);
    ds_share_set none;
    assert_int_equal(ds_share_set_init(&none, NULL, 0), 0);
    ds_export_opts o = { .id = &id, .share = &none, .seal = ds_test_seal(), .created_ms = 1 };
    ds_buf f = { 0 };
    ds_export_result r;
    assert_int_equal(ds_export_write(alice, &o, to_buf, &f, &r), 0);
    assert_int_equal(r.nodes, 0);
    assert_null(memmem(f.data, f.len, "CANARY", 6));
    ds_import_info info;
    assert_int_equal(ds_import_verify(f.data, f.len, &info), 0);
    assert_int_equal(info.nodes, 0);
    int left = 2;
    assert_int_equal(ds_export_write(alice, &o, fail_writer, &left, &r), DS_ERR_IO);
    ds_buf_free(&f);
    ds_share_set_free(&none);
    ds_store_close(alice);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(export_import_exact),
        cmocka_unit_test(tamper_and_wrong_signer),
        cmocka_unit_test(pages_and_incremental),
        cmocka_unit_test(import_batches),
        cmocka_unit_test(empty_share_and_writer_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
