/*
 * idfilter.c - a Bloom filter over the ids of the stored nodes.
 *
 * Every put must learn whether its id is already stored (a put replaces
 * the node with the same id).  Almost every put brings a new id: a fresh
 * UUID, or a node a peer has not sent before.  For those, the id lookup
 * (the transaction's entries, then every run, runs.c) always misses,
 * and in a large store it is a cold-cache search of each run.  The
 * filter answers "certainly absent" for ~98% of new ids with one 64-byte
 * block, so those lookups are skipped.
 *
 * It lives in the table "id_filter" and changes in the same transaction
 * as the ids, so it is never behind them: a filter can only say "maybe"
 * wrongly, never "absent" wrongly.  Records: key ffffffff holds the
 * header {version u32, nblocks u32, capacity u64, count u64} (big-endian);
 * key c (BE32) holds chunk c, 31 blocks of 512 bits (1,984 bytes, so two
 * records share an LMDB page and a transaction rewrites only the chunks
 * it touched).  An absent chunk is all zeros.  Deleted ids keep their
 * bits; once |count| (ids added since the last build) passes |capacity|
 * the next writer rebuilds the filter from the id runs at twice the
 * current size.  A store without a header (new, or just migrated) is
 * built the same way on its first put.
 */
#include <stdlib.h>
#include <string.h>

#include "core/store_int.h"
#include "core/util.h"

#define IDF_VERSION 1u
#define IDF_BLOCK 64u                         /* bytes: one cache line */
#define IDF_CHUNK_BLOCKS 31u
#define IDF_CHUNK (IDF_BLOCK * IDF_CHUNK_BLOCKS)
#define IDF_BITS_PER_ID 8u
#define IDF_K 6                               /* bits set per id, 9-bit positions */
#define IDF_HDR_LEN 24

static const uint8_t HDR_KEY[4] = { 0xff, 0xff, 0xff, 0xff };

/* Ids come from peers too, so they are mixed rather than used raw; the
 * worst a chosen id can do is a false "maybe" (a lookup). */
static uint64_t idf_hash(const uint8_t id[DS_ID_LEN]) { return ds__id_mix(id); }

static void locate(const ds_idf *f, uint64_t h, uint32_t *chunk, uint32_t *off)
{
    uint32_t block = (uint32_t)(((h >> 32) * (uint64_t)f->nblocks) >> 32);
    *chunk = block / IDF_CHUNK_BLOCKS;
    *off = (block % IDF_CHUNK_BLOCKS) * IDF_BLOCK;
}

static int block_has(const uint8_t *b, uint64_t h)
{
    uint64_t y = h * UINT64_C(0xff51afd7ed558ccd);
    for (int i = 0; i < IDF_K; i++) {
        unsigned bit = (unsigned)(y >> (9 * i)) & 511u;
        if (!(b[bit >> 3] & (1u << (bit & 7)))) return 0;
    }
    return 1;
}

static void block_set(uint8_t *b, uint64_t h)
{
    uint64_t y = h * UINT64_C(0xff51afd7ed558ccd);
    for (int i = 0; i < IDF_K; i++) {
        unsigned bit = (unsigned)(y >> (9 * i)) & 511u;
        b[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    }
}

void ds__idf_reset(ds_idf *f)
{
    if (f->dirty)
        for (uint32_t i = 0; i < f->nchunks; i++) free(f->dirty[i]);
    free(f->dirty);
    memset(f, 0, sizeof *f);
}

static int put_chk(ds_wtxn *tx, const void *k, size_t kl, const void *v, size_t vl)
{
    int rc = ds__store_write_check(tx->st);
    if (rc) return rc;
    MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
    return ds__lmdb_err(mdb_put(tx->txn, tx->st->dbi[DBI_IDFILTER], &key, &val, 0));
}

static int size_for(ds_idf *f, uint64_t capacity)
{
    uint64_t nb = (capacity * IDF_BITS_PER_ID + IDF_BLOCK * 8 - 1) / (IDF_BLOCK * 8);
    if (nb == 0 || nb > UINT32_MAX / 2) return DS_ERR_TOOLARGE;
    f->capacity = capacity;
    f->nblocks = (uint32_t)nb;
    f->nchunks = (f->nblocks + IDF_CHUNK_BLOCKS - 1) / IDF_CHUNK_BLOCKS;
    f->dirty = calloc(f->nchunks, sizeof *f->dirty);
    return f->dirty ? 0 : DS_ERR_NOMEM;
}

/* Chunk |c| for writing: a private copy, made on first use. */
static int chunk_w(ds_wtxn *tx, uint32_t c, uint8_t **out)
{
    ds_idf *f = &tx->idf;
    if (!f->dirty[c]) {
        uint8_t *p = calloc(1, IDF_CHUNK);
        if (!p) return DS_ERR_NOMEM;
        uint8_t k[4];
        ds_put_be32(k, c);
        MDB_val key = { 4, k }, d;
        int rc = f->fresh ? MDB_NOTFOUND : mdb_get(tx->txn, tx->st->dbi[DBI_IDFILTER], &key, &d);
        if (rc == 0 && d.mv_size != IDF_CHUNK) rc = DS_ERR_STORE;
        else if (rc == 0) memcpy(p, d.mv_data, IDF_CHUNK);
        else if (rc == MDB_NOTFOUND) rc = 0;
        else rc = ds__lmdb_err(rc);
        if (rc) { free(p); return rc; }
        f->dirty[c] = p;
    }
    *out = f->dirty[c];
    return 0;
}

static int set_id(ds_wtxn *tx, const uint8_t id[DS_ID_LEN])
{
    uint64_t h = idf_hash(id);
    uint32_t c, off;
    locate(&tx->idf, h, &c, &off);
    uint8_t *p = NULL;
    int rc = chunk_w(tx, c, &p);
    if (!rc) block_set(p + off, h);
    return rc;
}

/* Builds the filter from the id runs, sized for twice their entries. */
static int rebuild(ds_wtxn *tx)
{
    ds_idf *f = &tx->idf;
    ds__idf_reset(f);
    uint64_t n = 0;
    int rc = ds__runs_each_id(tx, NULL, &n);
    if (rc) return rc;
    uint64_t cap = 2 * n;
    if (cap < tx->st->idf_min_cap) cap = tx->st->idf_min_cap;
    if (!(rc = ds__store_write_check(tx->st)))
        rc = ds__lmdb_err(mdb_drop(tx->txn, tx->st->dbi[DBI_IDFILTER], 0));
    if (!rc) rc = size_for(f, cap);
    if (rc) return rc;
    f->fresh = 1;                   /* the table is empty: no chunk to read */
    f->loaded = 1;
    f->hdr_dirty = 1;
    uint64_t seen;
    rc = ds__runs_each_id(tx, set_id, &seen);
    f->count = n;
    if (rc) ds__idf_reset(f);
    return rc;
}

static int load(ds_wtxn *tx)
{
    ds_idf *f = &tx->idf;
    MDB_val key = { 4, (void *)HDR_KEY }, d;
    int rc = mdb_get(tx->txn, tx->st->dbi[DBI_IDFILTER], &key, &d);
    if (rc && rc != MDB_NOTFOUND) return ds__lmdb_err(rc);
    if (rc == 0 && d.mv_size == IDF_HDR_LEN && ds_get_be32(d.mv_data) == IDF_VERSION) {
        const uint8_t *h = d.mv_data;
        uint32_t nb = ds_get_be32(h + 4);
        uint64_t cap = ds_get_be64(h + 8), count = ds_get_be64(h + 16);
        if (count <= cap && (rc = size_for(f, cap)) == 0 && f->nblocks == nb) {
            f->count = count;
            f->loaded = 1;
            return 0;
        }
        if (rc) return rc;
        ds__idf_reset(f);             /* inconsistent header: start over */
    }
    return rebuild(tx);
}

int ds__idf_maybe(ds_wtxn *tx, const uint8_t id[DS_ID_LEN], int *maybe)
{
    ds_idf *f = &tx->idf;
    *maybe = 1;
    int rc;
    if (!f->loaded && (rc = load(tx))) return rc;
    uint64_t h = idf_hash(id);
    uint32_t c, off;
    locate(f, h, &c, &off);
    const uint8_t *p = f->dirty[c];
    if (!p && !f->fresh) {
        uint8_t k[4];
        ds_put_be32(k, c);
        MDB_val key = { 4, k }, d;
        rc = mdb_get(tx->txn, tx->st->dbi[DBI_IDFILTER], &key, &d);
        if (rc && rc != MDB_NOTFOUND) return ds__lmdb_err(rc);
        if (rc == 0 && d.mv_size != IDF_CHUNK) return DS_ERR_STORE;
        if (rc == 0) p = d.mv_data;
    }
    *maybe = p ? block_has(p + off, h) : 0;
    return 0;
}

int ds__idf_add(ds_wtxn *tx, const uint8_t id[DS_ID_LEN])
{
    ds_idf *f = &tx->idf;
    int rc;
    if (!f->loaded && (rc = load(tx))) return rc;
    if ((rc = set_id(tx, id))) return rc;
    f->count++;
    f->hdr_dirty = 1;
    return 0;
}

int ds__idf_flush(ds_wtxn *tx)
{
    ds_idf *f = &tx->idf;
    if (!f->loaded || !f->hdr_dirty) return 0;
    int rc = 0;
    for (uint32_t c = 0; c < f->nchunks && !rc; c++) {
        if (!f->dirty[c]) continue;
        uint8_t k[4];
        ds_put_be32(k, c);
        rc = put_chk(tx, k, 4, f->dirty[c], IDF_CHUNK);
    }
    if (rc) return rc;
    uint8_t h[IDF_HDR_LEN];
    ds_put_be32(h, IDF_VERSION);
    ds_put_be32(h + 4, f->nblocks);
    ds_put_be64(h + 8, f->capacity);
    ds_put_be64(h + 16, f->count);
    return put_chk(tx, HDR_KEY, 4, h, sizeof h);
}
