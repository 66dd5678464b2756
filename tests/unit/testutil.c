/*
 * testutil.c - see testutil.h.
 */
#include "testutil.h"
#include "ds/search.h"
#include "core/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>
#include <lmdb.h>

static char **dirs;
static size_t ndirs;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    for (size_t i = 0; i < ndirs; i++) {
        if (!getenv("DS_TEST_KEEP"))
            nftw(dirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(dirs[i]);
    }
    free(dirs);
}

const char *ds_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/ds-test.XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    if (ndirs == 0) atexit(cleanup);
    dirs = realloc(dirs, (ndirs + 1) * sizeof *dirs);
    assert_non_null(dirs);
    dirs[ndirs] = strdup(d);
    assert_non_null(dirs[ndirs]);
    return dirs[ndirs++];
}

void ds_test_seed(uint64_t seed) { rng_state = seed ? seed : 1; }

void ds_test_random(uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        out[i] = (uint8_t)(rng_state >> 24);
    }
}

void ds_test_make_node(ds_node *n, const char *content, const char *project)
{
    uint8_t r[DS_ID_LEN];
    ds_node_init(n);
    ds_test_random(r, sizeof r);
    ds_uuid_from_random(n->id, r);
    assert_int_equal(ds_node_set_content(n, content, strlen(content)), 0);
    assert_int_equal(ds_node_set_str(&n->source, "test:note"), 0);
    assert_int_equal(ds_node_set_str(&n->project, project ? project : ""), 0);
    assert_int_equal(ds_node_set_str(&n->ns, "personal"), 0);
    n->source_type = DS_SOURCE_NOTE;
    n->timestamp = 1700000000000;
    n->confidence = 1.0;
}

char *ds_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[sz] = 0; if (len) *len = (size_t)sz; }
    return buf;
}

size_t ds_test_count_hits(ds_store *st, const char *text)
{
    ds_query *q;
    if (ds_query_parse(text, strlen(text), &q)) return 0;
    ds_hit hits[64];
    size_t n = 0;
    assert_int_equal(ds_search_multi(&st, 1, q, NULL, 64, hits, &n), 0);
    ds_hits_free(hits, n);
    ds_query_free(q);
    return n;
}

uint64_t ds_test_df(ds_store *st, const char *word)
{
    ds_query *q;
    assert_int_equal(ds_query_parse(word, strlen(word), &q), 0);
    ds_search_stats s;
    assert_int_equal(ds_search_stats_init(&s, q), 0);
    assert_int_equal(ds_search_stats_add(st, q, &s), 0);
    uint64_t df = s.df[0];
    ds_search_stats_free(&s);
    ds_query_free(q);
    return df;
}

void ds_test_old_layout(const char *dir, uint32_t schema, const char *const *drop, size_t ndrop,
                        const char *const *add, size_t nadd, const char *meta_del)
{
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    for (size_t i = 0; i < ndrop; i++) {
        MDB_dbi d;
        assert_int_equal(mdb_dbi_open(txn, drop[i], 0, &d), 0);
        assert_int_equal(mdb_drop(txn, d, 1), 0);
    }
    for (size_t i = 0; i < nadd; i++) {
        MDB_dbi d;
        assert_int_equal(mdb_dbi_open(txn, add[i], MDB_CREATE, &d), 0);
        MDB_val k = { 4, "junk" }, v = { 8, "junkjunk" };
        assert_int_equal(mdb_put(txn, d, &k, &v, 0), 0);
    }
    MDB_dbi meta;
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    if (meta_del) {
        MDB_val k = { strlen(meta_del), (void *)meta_del };
        assert_int_equal(mdb_del(txn, meta, &k, NULL), 0);
    }
    uint8_t sv[4] = { (uint8_t)(schema >> 24), (uint8_t)(schema >> 16), (uint8_t)(schema >> 8),
                      (uint8_t)schema };
    MDB_val sk = { 6, "schema" }, v = { 4, sv };
    assert_int_equal(mdb_put(txn, meta, &sk, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

size_t ds_test_tables_present(const char *dir, const char *const *names, size_t n)
{
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        MDB_dbi d;
        int rc = mdb_dbi_open(txn, names[i], 0, &d);
        assert_true(rc == 0 || rc == MDB_NOTFOUND);
        found += rc == 0;
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return found;
}

void ds_test_seal_make(struct ds_cursor_seal *s, uint8_t seed_byte)
{
    uint8_t sk[64] = { 0 }, nonce[DS_CURSOR_NONCE_LEN] = { 0 };
    memset(sk, seed_byte, 32);                        /* the seed half */
    ds_cursor_seal_init(s, sk, nonce);
}

struct ds_cursor_seal *ds_test_seal(void)
{
    static ds_cursor_seal seal;
    static int made;
    if (!made) {
        ds_test_seal_make(&seal, 0x5a);
        made = 1;
    }
    return &seal;
}
