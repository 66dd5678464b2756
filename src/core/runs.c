/*
 * runs.c - the store's id and source lookups as sorted, immutable runs
 * (see runs.h and docs/storage.md).
 *
 * Ids are random UUIDs and sources are strings in no useful order, so
 * keeping them in B-trees costs a random insert per put: a dirtied page
 * per key, and in a large store a transaction of 10k nodes rewrites most
 * of the table.  Here a transaction's entries are sorted once at commit
 * and written sequentially as a run; runs are merged size-tiered
 * (DS_RUN_FANOUT of a size class at a time), so each entry is rewritten
 * a logarithmic number of times, in large sequential blocks; and all
 * runs are compacted into one once 1/DS_RUN_DEAD_SHARE of their entries
 * are dead (maybe_merge), which tiered merging alone would never do in a
 * store that stops growing.
 *
 * Layout (big-endian):
 *   runs     first seq (8) | last seq (8) -> header: version u32, 0 u32,
 *            first u64, last u64, id entries u64, source entries u64,
 *            id parts u32, source parts u32, then the first id of each id
 *            part (16 bytes each) and the first key of each source part
 *            (8 bytes each)
 *   rundata  run key | kind (1: 0 ids, 1 sources) | part (4) -> entries
 *            of that part, sorted: id (16) | seq (8), or source key (8) |
 *            seq (8), where the source key is SipHash-2-4 of the source
 *            under the store's key (meta "srckey")
 *   rundead  seq (8) -> empty: deleted nodes whose entries are still in
 *            a run; a merge over the seq drops both
 * Runs cover disjoint seq ranges, and a node's entries live in the run
 * covering its seq.  The newest entry of an id (the highest seq) is the
 * only one that can be live: a put of an existing id deletes the old node.
 */
#include "core/runs.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ds/error.h"
#include "core/store_int.h"
#include "core/util.h"

#define RUN_VERSION 1u
#define RUN_HDR_LEN 48
#define RUN_KEY_LEN 16
#define DATA_KEY_LEN (RUN_KEY_LEN + 5)
#define SRC_KEY_LEN 8
#define RB_KEEP 65536              /* entries kept allocated between transactions */
#define SMALL_PART 4096            /* parts below this may sit in a leaf page: copied */

enum { K_ID = 0, K_SRC = 1 };
static const size_t KLEN[2] = { DS_ID_LEN, SRC_KEY_LEN };
static const size_t ESZ[2] = { DS_ID_LEN + 8, SRC_KEY_LEN + 8 };

struct ds_runview {
    uint64_t first, last;
    uint64_t n[2];
    uint32_t nparts[2];
    uint8_t *hdr;                  /* malloc'd copy of the header */
    const uint8_t *fence[2];       /* into hdr: the first key of each part */
};

uint64_t ds__id_mix(const uint8_t id[DS_ID_LEN])
{
    uint64_t x = ds_get_be64(id) ^ (ds_get_be64(id + 8) * UINT64_C(0x9e3779b97f4a7c15));
    x ^= x >> 31;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 29;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 32;
    return x;
}

static void src_key(const ds_store *st, const char *s, uint8_t out[SRC_KEY_LEN])
{
    crypto_shorthash(out, (const unsigned char *)s, strlen(s), st->srckey);
}

static size_t part_cap(const ds_store *st, int kind)
{
    return st->run_part_ents ? st->run_part_ents : DS_RUN_PART_BYTES / ESZ[kind];
}

static void run_key(uint8_t k[RUN_KEY_LEN], uint64_t first, uint64_t last)
{
    ds_put_be64(k, first);
    ds_put_be64(k + 8, last);
}

static void data_key(uint8_t k[DATA_KEY_LEN], uint64_t first, uint64_t last, int kind, uint32_t part)
{
    run_key(k, first, last);
    k[RUN_KEY_LEN] = (uint8_t)kind;
    ds_put_be32(k + RUN_KEY_LEN + 1, part);
}

/* ---- the source key ---------------------------------------------------- */

int ds__runs_open(ds_store *st, MDB_txn *txn, int create)
{
    MDB_val k = { 6, "srckey" }, d;
    int rc = mdb_get(txn, st->dbi[DBI_META], &k, &d);
    if (rc == 0) {
        if (d.mv_size != DS_RUN_SRCKEY_LEN) return DS_ERR_STORE;
        memcpy(st->srckey, d.mv_data, DS_RUN_SRCKEY_LEN);
        return 0;
    }
    if (rc != MDB_NOTFOUND) return ds__lmdb_err(rc);
    if (!create) return DS_ERR_NOTFOUND;
    /* Derived from the epoch (random at creation).  Peers' nodes live in
     * stores of their own, so no peer chooses the sources of a store
     * whose key it could learn. */
    MDB_val ek = { 5, "epoch" }, ed;
    if ((rc = mdb_get(txn, st->dbi[DBI_META], &ek, &ed))) return rc == MDB_NOTFOUND ? DS_ERR_STORE : ds__lmdb_err(rc);
    uint8_t in[64];
    static const char label[] = "datasphere source key";
    if (ed.mv_size + sizeof label > sizeof in) return DS_ERR_STORE;
    memcpy(in, label, sizeof label);
    memcpy(in + sizeof label, ed.mv_data, ed.mv_size);
    ds_hash(in, sizeof label + ed.mv_size, st->srckey, DS_RUN_SRCKEY_LEN);
    MDB_val v = { DS_RUN_SRCKEY_LEN, st->srckey };
    return ds__lmdb_err(mdb_put(txn, st->dbi[DBI_META], &k, &v, 0));
}

/* ---- the transaction's entries ----------------------------------------- */

static void tab_insert(ds_runbuf *rb, size_t idx)
{
    const uint8_t *id = rb->ids + idx * ESZ[K_ID];
    size_t mask = rb->tslots - 1, s = (size_t)ds__id_mix(id) & mask;
    while (rb->tab[s]) {
        if (memcmp(rb->ids + (size_t)(rb->tab[s] - 1) * ESZ[K_ID], id, DS_ID_LEN) == 0) break;
        s = (s + 1) & mask;
    }
    rb->tab[s] = (uint32_t)idx + 1;
}

static int rb_grow(ds_runbuf *rb)
{
    if (rb->n == rb->cap) {
        size_t nc = rb->cap ? rb->cap * 2 : 1024;
        if (nc > UINT32_MAX - 1) return DS_ERR_FULL;
        uint8_t *a = realloc(rb->ids, nc * ESZ[K_ID]);
        if (!a) return DS_ERR_NOMEM;
        rb->ids = a;
        uint8_t *b = realloc(rb->srcs, nc * ESZ[K_SRC]);
        if (!b) return DS_ERR_NOMEM;
        rb->srcs = b;
        rb->cap = nc;
    }
    if ((rb->n + 1) * 2 > rb->tslots) {
        size_t ns = rb->tslots ? rb->tslots * 2 : 2048;
        uint32_t *t = calloc(ns, sizeof *t);
        if (!t) return DS_ERR_NOMEM;
        free(rb->tab);
        rb->tab = t;
        rb->tslots = ns;
        for (size_t i = 0; i < rb->n; i++) tab_insert(rb, i);
    }
    return 0;
}

int ds__runs_add(ds_wtxn *tx, const uint8_t id[DS_ID_LEN], const char *source, uint64_t seq)
{
    ds_runbuf *rb = &tx->rb;
    int rc = rb_grow(rb);
    if (rc) return rc;
    uint8_t *e = rb->ids + rb->n * ESZ[K_ID];
    memcpy(e, id, DS_ID_LEN);
    ds_put_be64(e + DS_ID_LEN, seq);
    e = rb->srcs + rb->n * ESZ[K_SRC];
    src_key(tx->st, source, e);
    ds_put_be64(e + SRC_KEY_LEN, seq);
    tab_insert(rb, rb->n);
    rb->n++;
    return 0;
}

int ds__runs_kill(ds_wtxn *tx, uint64_t seq)
{
    uint8_t k[8];
    ds_put_be64(k, seq);
    return ds__put_raw(tx, DBI_RUNDEAD, k, 8, "", 0);
}

static void views_free(ds_runview *v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i].hdr);
    free(v);
}

void ds__runbuf_reset(ds_runbuf *rb)
{
    views_free(rb->views, rb->nviews);
    rb->views = NULL;
    rb->nviews = 0;
    rb->views_loaded = 0;
    if (rb->cap > RB_KEEP) {
        ds__runbuf_free(rb);
        return;
    }
    if (rb->n) memset(rb->tab, 0, rb->tslots * sizeof *rb->tab);
    rb->n = 0;
}

void ds__runbuf_free(ds_runbuf *rb)
{
    views_free(rb->views, rb->nviews);
    free(rb->ids);
    free(rb->srcs);
    free(rb->tab);
    memset(rb, 0, sizeof *rb);
}

/* ---- reading runs ------------------------------------------------------ */

static int parse_view(const MDB_val *k, const MDB_val *d, ds_runview *v)
{
    memset(v, 0, sizeof *v);
    const uint8_t *h = d->mv_data;
    if (k->mv_size != RUN_KEY_LEN || d->mv_size < RUN_HDR_LEN || ds_get_be32(h) != RUN_VERSION)
        return DS_ERR_STORE;
    v->first = ds_get_be64(h + 8);
    v->last = ds_get_be64(h + 16);
    v->n[K_ID] = ds_get_be64(h + 24);
    v->n[K_SRC] = ds_get_be64(h + 32);
    v->nparts[K_ID] = ds_get_be32(h + 40);
    v->nparts[K_SRC] = ds_get_be32(h + 44);
    if (v->first != ds_get_be64(k->mv_data) || v->last != ds_get_be64((const uint8_t *)k->mv_data + 8) ||
        v->first > v->last)
        return DS_ERR_STORE;
    for (int t = 0; t < 2; t++)
        if ((v->n[t] == 0) != (v->nparts[t] == 0) || v->nparts[t] > v->n[t]) return DS_ERR_STORE;
    size_t want = RUN_HDR_LEN + (size_t)v->nparts[K_ID] * KLEN[K_ID] + (size_t)v->nparts[K_SRC] * KLEN[K_SRC];
    if (d->mv_size != want) return DS_ERR_STORE;
    if (!(v->hdr = malloc(want))) return DS_ERR_NOMEM;
    memcpy(v->hdr, h, want);
    v->fence[K_ID] = v->hdr + RUN_HDR_LEN;
    v->fence[K_SRC] = v->fence[K_ID] + (size_t)v->nparts[K_ID] * KLEN[K_ID];
    return 0;
}

/* The committed runs, oldest first (key order is seq order). */
static int views_load(ds_store *st, MDB_txn *txn, ds_runview **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    MDB_cursor *cur;
    int rc = ds__lmdb_err(mdb_cursor_open(txn, st->dbi[DBI_RUNS], &cur));
    if (rc) return rc;
    ds_runview *v = NULL;
    size_t nv = 0, cap = 0;
    MDB_val k, d;
    int mrc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    while (mrc == 0 && !rc) {
        if (nv == cap) {
            size_t nc = cap ? cap * 2 : 16;
            ds_runview *p = realloc(v, nc * sizeof *p);
            if (!p) { rc = DS_ERR_NOMEM; break; }
            v = p;
            cap = nc;
        }
        if ((rc = parse_view(&k, &d, &v[nv]))) break;
        if (nv && v[nv].first <= v[nv - 1].last) { free(v[nv].hdr); rc = DS_ERR_STORE; break; }
        nv++;
        mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (!rc && mrc != MDB_NOTFOUND) rc = ds__lmdb_err(mrc);
    if (rc) { views_free(v, nv); return rc; }
    *out = v;
    *n = nv;
    return 0;
}

static int rb_views(ds_store *st, MDB_txn *txn, ds_runbuf *rb)
{
    if (rb->views_loaded) return 0;
    int rc = views_load(st, txn, &rb->views, &rb->nviews);
    if (!rc) rb->views_loaded = 1;
    return rc;
}

/* Part |part| of |kind| of run |v|: its entries and their count. */
static int part_get(ds_store *st, MDB_txn *txn, const ds_runview *v, int kind, uint32_t part,
                    const uint8_t **p, size_t *cnt)
{
    uint8_t k[DATA_KEY_LEN];
    data_key(k, v->first, v->last, kind, part);
    MDB_val key = { sizeof k, k }, d;
    int rc = mdb_get(txn, st->dbi[DBI_RUNDATA], &key, &d);
    if (rc) return rc == MDB_NOTFOUND ? DS_ERR_STORE : ds__lmdb_err(rc);
    if (d.mv_size == 0 || d.mv_size % ESZ[kind]) return DS_ERR_STORE;
    *p = d.mv_data;
    *cnt = d.mv_size / ESZ[kind];
    return 0;
}

/* The number of parts whose first key is <= |key| (< when |strict|). */
static uint32_t fence_count(const ds_runview *v, int kind, const uint8_t *key, int strict)
{
    uint32_t lo = 0, hi = v->nparts[kind];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = memcmp(v->fence[kind] + (size_t)mid * KLEN[kind], key, KLEN[kind]);
        if (c < 0 || (c == 0 && !strict)) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* The first entry of |p| (|cnt| entries) whose key is >= |key| (> when
 * |after|). */
static size_t lower(const uint8_t *p, size_t cnt, int kind, const uint8_t *key, int after)
{
    size_t lo = 0, hi = cnt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(p + mid * ESZ[kind], key, KLEN[kind]);
        if (c < 0 || (c == 0 && after)) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* The highest seq of |id| in run |v|: 0 and *seq, or DS_ERR_NOTFOUND. */
static int run_find_id(ds_store *st, MDB_txn *txn, const ds_runview *v, const uint8_t *id, uint64_t *seq)
{
    uint32_t np = fence_count(v, K_ID, id, 0);
    if (np == 0) return DS_ERR_NOTFOUND;
    const uint8_t *p;
    size_t cnt;
    int rc = part_get(st, txn, v, K_ID, np - 1, &p, &cnt);
    if (rc) return rc;
    size_t i = lower(p, cnt, K_ID, id, 1);
    if (i == 0 || memcmp(p + (i - 1) * ESZ[K_ID], id, DS_ID_LEN) != 0) return DS_ERR_NOTFOUND;
    *seq = ds_get_be64(p + (i - 1) * ESZ[K_ID] + DS_ID_LEN);
    return 0;
}

static int is_dead(ds_store *st, MDB_txn *txn, uint64_t seq, int *dead)
{
    uint8_t k[8];
    ds_put_be64(k, seq);
    MDB_val key = { 8, k }, d;
    int rc = mdb_get(txn, st->dbi[DBI_RUNDEAD], &key, &d);
    if (rc && rc != MDB_NOTFOUND) return ds__lmdb_err(rc);
    *dead = rc == 0;
    return 0;
}

int ds__runs_find_id(ds_store *st, MDB_txn *txn, ds_runbuf *rb, const uint8_t id[DS_ID_LEN],
                     uint64_t *seq)
{
    uint64_t s = 0;
    int found = 0, rc = 0;
    if (rb && rb->n) {
        size_t mask = rb->tslots - 1, i = (size_t)ds__id_mix(id) & mask;
        for (; rb->tab[i]; i = (i + 1) & mask) {
            const uint8_t *e = rb->ids + (size_t)(rb->tab[i] - 1) * ESZ[K_ID];
            if (memcmp(e, id, DS_ID_LEN) == 0) { s = ds_get_be64(e + DS_ID_LEN); found = 1; break; }
        }
    }
    if (!found) {
        ds_runview *views = NULL;
        size_t nv = 0;
        if (rb) {
            if ((rc = rb_views(st, txn, rb))) return rc;
            views = rb->views;
            nv = rb->nviews;
        } else if ((rc = views_load(st, txn, &views, &nv))) {
            return rc;
        }
        for (size_t i = nv; i-- > 0 && !found && !rc;) {
            rc = run_find_id(st, txn, &views[i], id, &s);
            if (rc == 0) found = 1;
            else if (rc == DS_ERR_NOTFOUND) rc = 0;
        }
        if (!rb) views_free(views, nv);
        if (rc) return rc;
    }
    if (!found) return DS_ERR_NOTFOUND;
    int dead = 0;
    if ((rc = is_dead(st, txn, s, &dead))) return rc;
    if (dead) return DS_ERR_NOTFOUND;
    *seq = s;
    return 0;
}

static int push_seq(uint64_t **v, size_t *n, size_t *cap, uint64_t s)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        uint64_t *p = realloc(*v, nc * sizeof *p);
        if (!p) return DS_ERR_NOMEM;
        *v = p;
        *cap = nc;
    }
    (*v)[(*n)++] = s;
    return 0;
}

/* Appends the seqs of source key |key| in run |v| (increasing). */
static int run_source(ds_store *st, MDB_txn *txn, const ds_runview *v, const uint8_t *key,
                      uint64_t **out, size_t *n, size_t *cap)
{
    uint32_t part = fence_count(v, K_SRC, key, 1);
    if (part) part--;                        /* the last part starting below the key */
    int rc = 0;
    for (int first = 1; part < v->nparts[K_SRC]; part++, first = 0) {
        const uint8_t *p;
        size_t cnt;
        if ((rc = part_get(st, txn, v, K_SRC, part, &p, &cnt))) return rc;
        size_t i = first ? lower(p, cnt, K_SRC, key, 0) : 0;
        for (; i < cnt; i++) {
            const uint8_t *e = p + i * ESZ[K_SRC];
            if (memcmp(e, key, SRC_KEY_LEN) != 0) return 0;
            if ((rc = push_seq(out, n, cap, ds_get_be64(e + SRC_KEY_LEN)))) return rc;
        }
    }
    return 0;
}

int ds__runs_source_seqs(ds_store *st, MDB_txn *txn, ds_runbuf *rb, const char *source,
                         uint64_t **seqs, size_t *n)
{
    *seqs = NULL;
    *n = 0;
    uint8_t key[SRC_KEY_LEN];
    src_key(st, source, key);
    ds_runview *views = NULL;
    size_t nv = 0, cap = 0, got = 0;
    uint64_t *v = NULL;
    int rc;
    if (rb) {
        rc = rb_views(st, txn, rb);
        views = rb->views;
        nv = rb->nviews;
    } else {
        rc = views_load(st, txn, &views, &nv);
    }
    /* Oldest run first, then this transaction's entries: increasing. */
    for (size_t i = 0; i < nv && !rc; i++) rc = run_source(st, txn, &views[i], key, &v, &got, &cap);
    if (!rb) views_free(views, nv);
    for (size_t i = 0; rb && i < rb->n && !rc; i++) {
        const uint8_t *e = rb->srcs + i * ESZ[K_SRC];
        if (memcmp(e, key, SRC_KEY_LEN) == 0) rc = push_seq(&v, &got, &cap, ds_get_be64(e + SRC_KEY_LEN));
    }
    size_t live = 0;
    for (size_t i = 0; i < got && !rc; i++) {
        int dead = 0;
        if (!(rc = is_dead(st, txn, v[i], &dead)) && !dead) v[live++] = v[i];
    }
    if (rc) { free(v); return rc; }
    *seqs = v;
    *n = live;
    return 0;
}

int ds__runs_ids_from(ds_store *st, MDB_txn *txn, const uint8_t from[DS_ID_LEN],
                      int (*cb)(const uint8_t *id, uint64_t seq, void *ud), void *ud)
{
    ds_runview *views;
    size_t nv;
    int rc = views_load(st, txn, &views, &nv);
    for (size_t r = 0; r < nv && !rc; r++) {
        const ds_runview *v = &views[r];
        uint32_t part = fence_count(v, K_ID, from, 1);
        if (part) part--;
        int stop = 0;
        for (int first = 1; part < v->nparts[K_ID] && !stop && !rc; part++, first = 0) {
            const uint8_t *p;
            size_t cnt;
            if ((rc = part_get(st, txn, v, K_ID, part, &p, &cnt))) break;
            for (size_t i = first ? lower(p, cnt, K_ID, from, 0) : 0; i < cnt; i++) {
                const uint8_t *e = p + i * ESZ[K_ID];
                int r2 = cb(e, ds_get_be64(e + DS_ID_LEN), ud);
                if (r2 < 0) { rc = r2; break; }
                if (r2 > 0) { stop = 1; break; }
            }
        }
    }
    views_free(views, nv);
    return rc;
}

int ds__runs_each_id(ds_wtxn *tx, int (*cb)(ds_wtxn *tx, const uint8_t *id), uint64_t *count)
{
    ds_runbuf *rb = &tx->rb;
    *count = 0;
    int rc = rb_views(tx->st, tx->txn, rb);
    for (size_t r = 0; r < rb->nviews && !rc; r++) {
        const ds_runview *v = &rb->views[r];
        if (!cb) { *count += v->n[K_ID]; continue; }
        for (uint32_t part = 0; part < v->nparts[K_ID] && !rc; part++) {
            const uint8_t *p;
            size_t cnt;
            if ((rc = part_get(tx->st, tx->txn, v, K_ID, part, &p, &cnt))) break;
            for (size_t i = 0; i < cnt && !rc; i++) rc = cb(tx, p + i * ESZ[K_ID]);
            *count += cnt;
        }
    }
    for (size_t i = 0; cb && i < rb->n && !rc; i++) rc = cb(tx, rb->ids + i * ESZ[K_ID]);
    *count += rb->n;
    return rc;
}

/* ---- writing runs ------------------------------------------------------ */

/* Writes one run, kind by kind, entries in order, in parts. */
typedef struct runw {
    ds_wtxn *tx;
    uint64_t first, last;
    int kind;
    uint32_t nparts[2];
    uint64_t n[2];
    ds_buf fences;                 /* id fences, then source fences */
    size_t nidfence;
    uint8_t *buf;                  /* the part being filled */
    size_t fill, cap;              /* entries */
} runw;

static int runw_init(runw *w, ds_wtxn *tx, uint64_t first, uint64_t last)
{
    memset(w, 0, sizeof *w);
    w->tx = tx;
    w->first = first;
    w->last = last;
    size_t c = part_cap(tx->st, K_ID), c2 = part_cap(tx->st, K_SRC);
    w->cap = c > c2 ? c : c2;
    if (!(w->buf = malloc(w->cap * ESZ[K_ID]))) return DS_ERR_NOMEM;
    return 0;
}

static void runw_free(runw *w)
{
    free(w->buf);
    ds_buf_free(&w->fences);
}

static int runw_part(runw *w, const uint8_t *ents, size_t cnt)
{
    uint8_t k[DATA_KEY_LEN];
    data_key(k, w->first, w->last, w->kind, w->nparts[w->kind]);
    int rc = ds__put_raw(w->tx, DBI_RUNDATA, k, sizeof k, ents, cnt * ESZ[w->kind]);
    if (!rc) rc = ds_buf_append(&w->fences, ents, KLEN[w->kind]);
    if (rc) return rc;
    w->nparts[w->kind]++;
    w->n[w->kind] += cnt;
    return 0;
}

static int runw_flush(runw *w)
{
    int rc = w->fill ? runw_part(w, w->buf, w->fill) : 0;
    w->fill = 0;
    return rc;
}

/* Starts writing entries of |kind| (ids first, then sources). */
static int runw_kind(runw *w, int kind)
{
    int rc = runw_flush(w);
    if (!rc && kind == K_SRC) w->nidfence = w->fences.len;
    w->kind = kind;
    return rc;
}

static int runw_add(runw *w, const uint8_t *ents, size_t cnt)
{
    size_t es = ESZ[w->kind], cap = part_cap(w->tx->st, w->kind);
    int rc = 0;
    while (cnt && !rc) {
        if (w->fill == 0 && cnt >= cap) {          /* a whole part: no copy */
            rc = runw_part(w, ents, cap);
            ents += cap * es;
            cnt -= cap;
            continue;
        }
        size_t take = cap - w->fill < cnt ? cap - w->fill : cnt;
        memcpy(w->buf + w->fill * es, ents, take * es);
        w->fill += take;
        ents += take * es;
        cnt -= take;
        if (w->fill == cap) rc = runw_flush(w);
    }
    return rc;
}

static int runw_finish(runw *w)
{
    int rc = runw_flush(w);
    if (rc || (!w->n[K_ID] && !w->n[K_SRC])) return rc;
    if (w->kind == K_ID) w->nidfence = w->fences.len;
    size_t len = RUN_HDR_LEN + w->fences.len;
    uint8_t *h = malloc(len);
    if (!h) return DS_ERR_NOMEM;
    ds_put_be32(h, RUN_VERSION);
    ds_put_be32(h + 4, 0);
    ds_put_be64(h + 8, w->first);
    ds_put_be64(h + 16, w->last);
    ds_put_be64(h + 24, w->n[K_ID]);
    ds_put_be64(h + 32, w->n[K_SRC]);
    ds_put_be32(h + 40, w->nparts[K_ID]);
    ds_put_be32(h + 44, w->nparts[K_SRC]);
    memcpy(h + RUN_HDR_LEN, w->fences.data, w->fences.len);
    uint8_t k[RUN_KEY_LEN];
    run_key(k, w->first, w->last);
    rc = ds__put_raw(w->tx, DBI_RUNS, k, sizeof k, h, len);
    free(h);
    return rc;
}

/* Sorts |n| entries of |kind| by key, then seq (which is byte order of
 * the whole entry): an LSD radix sort of (8-byte prefix, index) pairs,
 * then the rare runs of equal prefixes by the whole entry. */
static int sort_entries(uint8_t *ents, size_t n, int kind)
{
    if (n < 2) return 0;
    size_t es = ESZ[kind];
    ds_prefix_ent *v = malloc(n * 2 * sizeof *v);
    uint8_t *out = malloc(n * es);
    if (!v || !out) { free(v); free(out); return DS_ERR_NOMEM; }
    ds_prefix_ent *tmp = v + n;
    for (size_t i = 0; i < n; i++) v[i] = (ds_prefix_ent){ ds_get_be64(ents + i * es), (uint32_t)i };
    ds_sort_by_prefix(v, tmp, n);
    for (size_t i = 1; i < n; i++) {
        ds_prefix_ent x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1].prefix == x.prefix &&
               memcmp(ents + (size_t)v[j - 1].idx * es, ents + (size_t)x.idx * es, es) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    for (size_t i = 0; i < n; i++) memcpy(out + i * es, ents + (size_t)v[i].idx * es, es);
    memcpy(ents, out, n * es);
    free(out);
    free(v);
    return 0;
}

static int write_pending(ds_wtxn *tx)
{
    ds_runbuf *rb = &tx->rb;
    uint64_t first = UINT64_MAX, last = 0;
    for (size_t i = 0; i < rb->n; i++) {
        uint64_t s = ds_get_be64(rb->srcs + i * ESZ[K_SRC] + SRC_KEY_LEN);
        if (s < first) first = s;
        if (s > last) last = s;
    }
    int rc = sort_entries(rb->ids, rb->n, K_ID);
    if (!rc) rc = sort_entries(rb->srcs, rb->n, K_SRC);
    if (rc) return rc;
    memset(rb->tab, 0, rb->tslots * sizeof *rb->tab);   /* indexes are stale now */
    runw w;
    if ((rc = runw_init(&w, tx, first, last))) return rc;
    rc = runw_kind(&w, K_ID);
    if (!rc) rc = runw_add(&w, rb->ids, rb->n);
    if (!rc) rc = runw_kind(&w, K_SRC);
    if (!rc) rc = runw_add(&w, rb->srcs, rb->n);
    if (!rc) rc = runw_finish(&w);
    runw_free(&w);
    rb->n = 0;
    return rc;
}

/* ---- merging ----------------------------------------------------------- */

static unsigned size_class(uint64_t n)
{
    unsigned c = 0;
    while (n >= DS_RUN_FANOUT) { n /= DS_RUN_FANOUT; c++; }
    return c;
}

/* A read position in one input run: its current part, copied when it
 * is small enough to sit in a leaf page this transaction may change. */
typedef struct rin {
    const ds_runview *v;
    uint32_t part;
    const uint8_t *p;
    size_t i, cnt;
    uint8_t *copy;
} rin;

static int rin_load(ds_wtxn *tx, rin *r, int kind)
{
    while (r->i == r->cnt && r->part < r->v->nparts[kind]) {
        int rc = part_get(tx->st, tx->txn, r->v, kind, r->part++, &r->p, &r->cnt);
        if (rc) return rc;
        r->i = 0;
        if (r->cnt * ESZ[kind] < SMALL_PART) {
            free(r->copy);
            if (!(r->copy = malloc(r->cnt * ESZ[kind]))) return DS_ERR_NOMEM;
            memcpy(r->copy, r->p, r->cnt * ESZ[kind]);
            r->p = r->copy;
        }
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Merges runs |in[0..m)| (adjacent) into one, dropping dead entries. */
static int merge_runs(ds_wtxn *tx, const ds_runview *in, size_t m)
{
    uint64_t lo = in[0].first, hi = in[m - 1].last;
    /* The dead seqs in range, copied (their records are deleted below). */
    uint64_t *dead = NULL;
    size_t nd = 0, dcap = 0;
    MDB_cursor *cur;
    int rc = ds__lmdb_err(mdb_cursor_open(tx->txn, tx->st->dbi[DBI_RUNDEAD], &cur));
    if (rc) return rc;
    uint8_t kb[8];
    ds_put_be64(kb, lo);
    MDB_val k = { 8, kb }, d;
    int mrc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    while (mrc == 0 && !rc) {
        if (k.mv_size != 8) { rc = DS_ERR_STORE; break; }
        uint64_t s = ds_get_be64(k.mv_data);
        if (s > hi) break;
        rc = push_seq(&dead, &nd, &dcap, s);
        if (!rc) mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (!rc && mrc != 0 && mrc != MDB_NOTFOUND) rc = ds__lmdb_err(mrc);
    rin *r = rc ? NULL : calloc(m, sizeof *r);
    if (!rc && !r) rc = DS_ERR_NOMEM;
    runw w;
    int winit = 0;
    if (!rc && !(rc = runw_init(&w, tx, lo, hi))) winit = 1;
    for (int kind = 0; kind < 2 && !rc; kind++) {
        if ((rc = runw_kind(&w, kind))) break;
        for (size_t j = 0; j < m; j++) {
            free(r[j].copy);
            r[j] = (rin){ .v = &in[j] };
        }
        size_t es = ESZ[kind];
        for (;;) {
            /* The smallest head: by its first 8 bytes (keys are random
             * ids and hashes), the whole entry only on a tie. */
            size_t best = m;
            uint64_t bp = 0;
            for (size_t j = 0; j < m && !rc; j++) {
                if ((rc = rin_load(tx, &r[j], kind))) break;
                if (r[j].i == r[j].cnt) continue;
                const uint8_t *e = r[j].p + r[j].i * es;
                uint64_t pj = ds_get_be64(e);
                if (best == m || pj < bp ||
                    (pj == bp && memcmp(e, r[best].p + r[best].i * es, es) < 0)) {
                    best = j;
                    bp = pj;
                }
            }
            if (rc || best == m) break;
            const uint8_t *e = r[best].p + r[best].i * es;
            r[best].i++;
            uint64_t s = ds_get_be64(e + KLEN[kind]);
            if (nd && bsearch(&s, dead, nd, sizeof *dead, cmp_u64)) continue;
            if ((rc = runw_add(&w, e, 1))) break;
        }
    }
    if (!rc) rc = runw_finish(&w);
    if (winit) runw_free(&w);
    for (size_t j = 0; r && j < m; j++) free(r[j].copy);
    free(r);
    /* Drop the inputs and the dead records they no longer need. */
    for (size_t j = 0; j < m && !rc; j++) {
        uint8_t rk[RUN_KEY_LEN];
        for (int kind = 0; kind < 2 && !rc; kind++)
            for (uint32_t p = 0; p < in[j].nparts[kind] && !rc; p++) {
                uint8_t dk[DATA_KEY_LEN];
                data_key(dk, in[j].first, in[j].last, kind, p);
                rc = ds__del_raw(tx, DBI_RUNDATA, dk, sizeof dk);
            }
        run_key(rk, in[j].first, in[j].last);
        if (!rc) rc = ds__del_raw(tx, DBI_RUNS, rk, sizeof rk);
    }
    for (size_t i = 0; i < nd && !rc; i++) {
        ds_put_be64(kb, dead[i]);
        rc = ds__del_raw(tx, DBI_RUNDEAD, kb, 8);
    }
    free(dead);
    return rc;
}

/* Size-tiered, as for index segments: for the smallest class c such
 * that the newest runs of class <= c include DS_RUN_FANOUT of class
 * exactly c, those newest runs; *count 0 when there is no such c. */
static void tiered_pick(const ds_runview *v, size_t n, size_t *from, size_t *count)
{
    unsigned c = 0;
    *from = *count = 0;
    for (size_t i = n; i > 0;) {
        while (i > 0 && size_class(v[i - 1].n[K_ID]) <= c) i--;
        size_t same = 0;
        for (size_t j = i; j < n; j++) same += size_class(v[j].n[K_ID]) == c;
        if (same >= DS_RUN_FANOUT) { *from = i; *count = n - i; return; }
        if (i == 0) return;
        c = size_class(v[i - 1].n[K_ID]);
    }
}

/* Whether to merge all |n| runs into one to drop their dead entries.
 * Tiered merges reach the largest runs only when the store grows by
 * about DS_RUN_FANOUT times, so a store that stops growing but keeps
 * replacing or deleting nodes would keep their dead entries and records
 * forever.  Compacting once 1/DS_RUN_DEAD_SHARE of the id entries are
 * dead bounds that waste, and amortizes: a rewrite of all entries comes
 * after at least total / DS_RUN_DEAD_SHARE deletions.  One run is left
 * alone: merged by itself it would be rewritten under its own key (the
 * next commit adds a run). */
static int compact_due(ds_wtxn *tx, const ds_runview *v, size_t n, int *due)
{
    *due = 0;
    if (n < 2) return 0;
    uint64_t total = 0, dead;
    for (size_t i = 0; i < n; i++) total += v[i].n[K_ID];
    /* Not those of nodes this transaction put and deleted itself: their
     * entries are in no run yet, so a merge now could not drop them. */
    int rc = ds__dead_in_range(tx->txn, tx->st->dbi[DBI_RUNDEAD], v[0].first, v[n - 1].last,
                               &dead);
    /* Records of distinct seqs <= DS_SEQ_MAX < 2^40: no overflow. */
    if (!rc) *due = dead > 0 && dead * DS_RUN_DEAD_SHARE >= total;
    return rc;
}

/* At most one merge per commit: the size-tiered one, else a compaction
 * when enough entries are dead. */
static int maybe_merge(ds_wtxn *tx)
{
    ds_runbuf *rb = &tx->rb;
    int rc = rb_views(tx->st, tx->txn, rb);
    if (rc) return rc;
    ds_runview *v = rb->views;
    size_t n = rb->nviews, from, count;
    tiered_pick(v, n, &from, &count);
    if (count < 2) {
        int due;
        if ((rc = compact_due(tx, v, n, &due))) return rc;
        from = 0;
        count = due ? n : 0;
    }
    if (count < 2) return 0;
    rc = merge_runs(tx, v + from, count);
    views_free(rb->views, rb->nviews);      /* the runs changed */
    rb->views = NULL;
    rb->nviews = 0;
    rb->views_loaded = 0;
    return rc;
}

int ds__runs_commit(ds_wtxn *tx)
{
    int rc = maybe_merge(tx);
    if (!rc && tx->rb.n) rc = write_pending(tx);
    return rc;
}
