/*
 * test_ops_read.c - the reading requests over more than one store, in a
 * real temporary home: a local store and a peer's replica (both real
 * LMDB stores) holding nodes whose ids are chosen, so that id prefixes
 * can be made to meet across stores.  "related" resolves an id in any
 * store (a peer's hit's id too), says when a prefix is ambiguous across
 * stores, takes one id in two stores as one node, and leaves out a
 * damaged replica with a warning; "show" lists a replica with {peer}.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/ops.h"
#include "daemon/peers.h"
#include "testutil.h"

/* A NodeId-shaped peer id (64 hex digits): peers.json only checks the shape. */
#define ALICE "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define CAROL "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"

#define LOCAL_LMDB "ab12cd00-0000-4000-8000-000000000001"  /* local */
#define ALICE_LMDB "ab12ef00-0000-4000-8000-000000000002"  /* alice: same 4-digit prefix */
#define ALICE_ONLY "cd000000-0000-4000-8000-000000000003"  /* alice only */
#define BOTH       "ee000000-0000-4000-8000-000000000004"  /* in both stores */

static int64_t fake_now(void)
{
    return 1700000000000;
}

static void fake_random(void *buf, size_t len)
{
    ds_test_random(buf, len);
}

static void put(ds_store *st, const char *uuid, const char *text)
{
    ds_node n;
    ds_test_make_node(&n, text, "/work/app");
    assert_int_equal(ds_uuid_parse(uuid, n.id), 0);
    assert_int_equal(ds_store_put(st, &n), 0);
    ds_node_free(&n);
}

/* A home with peers alice (and carol, whose replica is damaged when
 * |damaged_carol|): alice's replica holds ALICE_LMDB, ALICE_ONLY and
 * BOTH; the local store, unless |no_local|, LOCAL_LMDB and BOTH. */
static const char *make_home(int no_local, int damaged_carol)
{
    const char *home = ds_test_tmpdir();
    char err[256] = "";
    ds_peers_cfg pc = { 0 };
    assert_int_equal(ds_peers_cfg_load(home, &pc, err, sizeof err), 0);
    assert_int_equal(ds_peers_upsert(&pc, ALICE, "alice", 1, 0, NULL), 0);
    if (damaged_carol)
        assert_int_equal(ds_peers_upsert(&pc, CAROL, "carol", 1, 0, NULL), 0);
    assert_int_equal(ds_peers_cfg_save(home, &pc, err, sizeof err), 0);
    ds_peers_cfg_free(&pc);

    uint8_t seed[DS_EPOCH_LEN];
    ds_test_random(seed, sizeof seed);
    ds_store *rep = NULL;
    assert_int_equal(ds_replica_open(home, ALICE, 1, seed, &rep), 0);
    put(rep, ALICE_LMDB, "lmdb readers table holds one slot per reader thread");
    put(rep, ALICE_ONLY, "lmdb readers table slots are released when a reader ends");
    put(rep, BOTH, "wombat burrow notes shared by both stores");
    ds_store_close(rep);
    if (damaged_carol) {   /* a db that is a file, not a directory */
        char *db = ds_replica_path(home, CAROL, "db");
        char *dir = ds_replica_path(home, CAROL, NULL);
        assert_non_null(db);
        assert_non_null(dir);
        assert_int_equal(mkdir(dir, 0700), 0);
        FILE *f = fopen(db, "w");
        assert_non_null(f);
        fclose(f);
        free(db);
        free(dir);
    }
    if (!no_local) {
        ds_ctx ctx;
        ds_store *st = NULL;
        assert_int_equal(ds_ctx_init(&ctx, home, fake_now, fake_random), 0);
        assert_int_equal(ds_ctx_store(&ctx, 1, &st), 0);
        put(st, LOCAL_LMDB, "lmdb readers table and the reader lock file");
        put(st, BOTH, "wombat burrow notes shared by both stores");
        ds_ctx_free(&ctx);
    }
    return home;
}

typedef struct reply {
    int rc;
    char message[1024], hint[512];
    msgpack_sbuffer buf;
    msgpack_unpacked up;
} reply;

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

static int str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* Calls |op| with string parameters given as key, value pairs (NULL
 * ends them) on a fresh context over |home|. */
static void call(reply *r, const char *home, const char *op, ...)
{
    const char *kv[8];
    size_t n = 0;
    va_list ap;
    va_start(ap, op);
    for (const char *k; (k = va_arg(ap, const char *)) != NULL && n < 8;) {
        kv[n++] = k;
        kv[n++] = va_arg(ap, const char *);
    }
    va_end(ap);
    msgpack_sbuffer pb;
    msgpack_sbuffer_init(&pb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &pb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, n / 2);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_str(&pk, strlen(kv[i]));
        msgpack_pack_str_body(&pk, kv[i], strlen(kv[i]));
    }
    msgpack_unpacked params;
    msgpack_unpacked_init(&params);
    assert_int_equal(msgpack_unpack_next(&params, pb.data, pb.size, NULL), MSGPACK_UNPACK_SUCCESS);

    ds_ctx ctx;
    assert_int_equal(ds_ctx_init(&ctx, home, fake_now, fake_random), 0);
    memset(r, 0, sizeof *r);
    msgpack_sbuffer_init(&r->buf);
    r->rc = ds_ops_call(&ctx, op, &params.data, &r->buf);
    snprintf(r->message, sizeof r->message, "%s", r->rc ? ctx.error.message : "");
    snprintf(r->hint, sizeof r->hint, "%s", r->rc ? ctx.error.hint : "");
    ds_ctx_free(&ctx);
    msgpack_unpacked_destroy(&params);
    msgpack_sbuffer_destroy(&pb);
    msgpack_unpacked_init(&r->up);
    assert_int_equal(msgpack_unpack_next(&r->up, r->buf.data, r->buf.size, NULL),
                     MSGPACK_UNPACK_SUCCESS);
}

static void reply_free(reply *r)
{
    msgpack_unpacked_destroy(&r->up);
    msgpack_sbuffer_destroy(&r->buf);
}

static const msgpack_object *results(const reply *r)
{
    const msgpack_object *a = get(&r->up.data, "results");
    assert_non_null(a);
    assert_int_equal(a->type, MSGPACK_OBJECT_ARRAY);
    return a;
}

/* Whether a result has id |uuid| and store |store|. */
static int has(const msgpack_object *arr, const char *uuid, const char *store)
{
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
        const msgpack_object *h = &arr->via.array.ptr[i];
        if (str_is(get(h, "id"), uuid) && str_is(get(h, "store"), store))
            return 1;
    }
    return 0;
}

static void test_related_origin_in_replica(void **state)
{
    (void)state;
    const char *home = make_home(0, 0);
    reply r;
    call(&r, home, "related", "id", "cd00", NULL);   /* alice's node only */
    assert_int_equal(r.rc, 0);
    const msgpack_object *origin = get(&r.up.data, "origin");
    assert_true(str_is(get(origin, "id"), ALICE_ONLY));
    assert_true(str_is(get(origin, "store"), "alice"));
    const msgpack_object *res = results(&r);
    assert_true(has(res, ALICE_LMDB, "alice"));    /* related in alice's replica ... */
    assert_true(has(res, LOCAL_LMDB, "local"));    /* ... and in the local store */
    assert_false(has(res, ALICE_ONLY, "alice"));   /* never the node itself */
    reply_free(&r);
}

static void test_related_ambiguous_across_stores(void **state)
{
    (void)state;
    const char *home = make_home(0, 0);
    reply r;
    call(&r, home, "related", "id", "ab12", NULL);   /* local ab12cd.., alice ab12ef.. */
    assert_int_equal(r.rc, DS_ERR_AMBIGUOUS);
    assert_non_null(strstr(r.message, "matches more than one node"));
    reply_free(&r);
    call(&r, home, "related", "id", "AB12CD", NULL);
    assert_int_equal(r.rc, 0);
    assert_true(str_is(get(get(&r.up.data, "origin"), "store"), "local"));
    reply_free(&r);
    call(&r, home, "related", "id", "ab12ef", NULL);
    assert_int_equal(r.rc, 0);
    assert_true(str_is(get(get(&r.up.data, "origin"), "store"), "alice"));
    assert_true(has(results(&r), LOCAL_LMDB, "local"));
    reply_free(&r);
}

static void test_related_same_id_in_two_stores(void **state)
{
    (void)state;
    const char *home = make_home(0, 0);
    reply r;
    call(&r, home, "related", "id", "ee00", NULL);
    assert_int_equal(r.rc, 0);   /* one node, not ambiguous: the local copy */
    assert_true(str_is(get(get(&r.up.data, "origin"), "store"), "local"));
    assert_false(has(results(&r), BOTH, "alice"));   /* excluded in every store */
    reply_free(&r);
    call(&r, home, "related", "id", "ffff", NULL);
    assert_int_equal(r.rc, DS_ERR_NOTFOUND);
    assert_non_null(strstr(r.message, "no node with an id starting with 'ffff'"));
    assert_non_null(strstr(r.hint, "peer's replica"));
    reply_free(&r);
    call(&r, home, "related", "id", "ab1", NULL);
    assert_int_equal(r.rc, DS_ERR_INVALID);
    reply_free(&r);
}

static void test_related_without_local_store(void **state)
{
    (void)state;
    const char *home = make_home(1, 0);
    reply r;
    call(&r, home, "related", "id", "ab12", NULL);   /* alice alone has ab12.. */
    assert_int_equal(r.rc, 0);
    assert_true(str_is(get(get(&r.up.data, "origin"), "id"), ALICE_LMDB));
    assert_true(has(results(&r), ALICE_ONLY, "alice"));
    reply_free(&r);
    char db[4096];
    snprintf(db, sizeof db, "%s/db", home);
    struct stat sb;
    assert_int_not_equal(stat(db, &sb), 0);   /* no local store was created */
}

static void test_related_damaged_replica_left_out(void **state)
{
    (void)state;
    const char *home = make_home(0, 1);
    reply r;
    call(&r, home, "related", "id", "cd00", NULL);
    assert_int_equal(r.rc, 0);
    assert_true(str_is(get(get(&r.up.data, "origin"), "store"), "alice"));
    const msgpack_object *w = get(&r.up.data, "warnings");
    assert_non_null(w);
    assert_int_equal(w->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(w->via.array.size, 1);
    const msgpack_object *m = get(&w->via.array.ptr[0], "message");
    assert_non_null(m);
    assert_non_null(memmem(m->via.str.ptr, m->via.str.size, "carol", 5));
    reply_free(&r);
}

static void test_show_peer(void **state)
{
    (void)state;
    const char *home = make_home(0, 0);
    reply r;
    call(&r, home, "show", "peer", "alice", NULL);
    assert_int_equal(r.rc, 0);
    const msgpack_object *res = results(&r);
    assert_int_equal(res->via.array.size, 3);
    assert_true(has(res, ALICE_LMDB, "alice") && has(res, ALICE_ONLY, "alice") &&
                has(res, BOTH, "alice"));
    /* newest first: the last put comes first */
    assert_true(str_is(get(&res->via.array.ptr[0], "id"), BOTH));
    reply_free(&r);
    call(&r, home, "show", NULL);
    assert_int_equal(r.rc, 0);
    res = results(&r);
    assert_int_equal(res->via.array.size, 2);
    assert_true(has(res, LOCAL_LMDB, "local") && has(res, BOTH, "local"));
    reply_free(&r);
    call(&r, home, "show", "peer", "nobody", NULL);
    assert_int_equal(r.rc, DS_ERR_NOTFOUND);
    assert_non_null(strstr(r.message, "no peer 'nobody'"));
    reply_free(&r);
}

static void test_show_without_local_store(void **state)
{
    (void)state;
    const char *home = make_home(1, 0);
    reply r;
    call(&r, home, "show", NULL);
    assert_int_equal(r.rc, DS_ERR_NOTFOUND);
    assert_non_null(strstr(r.message, "No knowledge store"));
    assert_non_null(strstr(r.hint, "ds show --peer NAME"));
    reply_free(&r);
    call(&r, home, "show", "peer", "alice", NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(results(&r)->via.array.size, 3);
    reply_free(&r);
    const char *empty = ds_test_tmpdir();   /* no peers either: the usual hint */
    call(&r, empty, "show", NULL);
    assert_int_equal(r.rc, DS_ERR_NOTFOUND);
    assert_null(strstr(r.hint, "--peer"));
    reply_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_related_origin_in_replica),
        cmocka_unit_test(test_related_ambiguous_across_stores),
        cmocka_unit_test(test_related_same_id_in_two_stores),
        cmocka_unit_test(test_related_without_local_store),
        cmocka_unit_test(test_related_damaged_replica_left_out),
        cmocka_unit_test(test_show_peer),
        cmocka_unit_test(test_show_without_local_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
