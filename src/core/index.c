/*
 * index.c - the write side of the search index (see docs/search.md).
 *
 * Postings live in one LMDB duplicate-sorted table: key = term, values =
 * fixed 8-byte postings sorted by document sequence.  Because sequences
 * only grow, a new document's postings are always the last of their
 * term, so a write transaction buffers postings per term in a hash table
 * and, at commit, appends each term's batch with one MDB_APPENDDUP |
 * MDB_MULTIPLE call.  Removing a document re-tokenizes its content and
 * deletes its posting under every term it had.
 */
#include "core/store_int.h"

#include <stdlib.h>
#include <string.h>

#include "ds/error.h"
#include "core/util.h"

#define PB_FLUSH_BYTES (64u << 20)   /* flush within a transaction past this */

static uint64_t hash_term(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a, fine for a private table */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h | 1;                           /* 0 marks an empty slot */
}

void ds__postbuf_reset(ds_postbuf *pb)
{
    for (size_t i = 0; i < pb->nslots; i++) free(pb->slots[i].post);
    if (pb->slots) memset(pb->slots, 0, pb->nslots * sizeof *pb->slots);
    pb->used = 0;
    pb->terms_len = 0;
    pb->bytes = 0;
    pb->ntouched = 0;
}

void ds__postbuf_free(ds_postbuf *pb)
{
    ds__postbuf_reset(pb);
    free(pb->slots);
    free(pb->terms);
    free(pb->touched);
    memset(pb, 0, sizeof *pb);
}

static int pb_grow(ds_postbuf *pb)
{
    size_t n = pb->nslots ? pb->nslots * 2 : 4096;
    pb_entry *s = calloc(n, sizeof *s);
    if (!s) return DS_ERR_NOMEM;
    for (size_t i = 0; i < pb->nslots; i++) {
        pb_entry *e = &pb->slots[i];
        if (!e->hash) continue;
        size_t j = e->hash & (n - 1);
        while (s[j].hash) j = (j + 1) & (n - 1);
        s[j] = *e;
    }
    free(pb->slots);
    pb->slots = s;
    pb->nslots = n;
    return 0;
}

/* Finds or creates the buffer entry for |term|; returns its slot index. */
static int pb_lookup(ds_postbuf *pb, const char *term, size_t len, size_t *slot)
{
    if ((pb->used + 1) * 10 >= pb->nslots * 7) {
        int rc = pb_grow(pb);
        if (rc) return rc;
    }
    uint64_t h = hash_term(term, len);
    size_t j = h & (pb->nslots - 1);
    while (pb->slots[j].hash) {
        pb_entry *e = &pb->slots[j];
        if (e->hash == h && e->term_len == len && memcmp(pb->terms + e->term_off, term, len) == 0) {
            *slot = j;
            return 0;
        }
        j = (j + 1) & (pb->nslots - 1);
    }
    if (pb->terms_cap - pb->terms_len < len) {
        size_t nc = pb->terms_cap ? pb->terms_cap * 2 : 65536;
        while (nc - pb->terms_len < len) nc *= 2;
        char *t = realloc(pb->terms, nc);
        if (!t) return DS_ERR_NOMEM;
        pb->terms = t;
        pb->terms_cap = nc;
    }
    memcpy(pb->terms + pb->terms_len, term, len);
    pb_entry *e = &pb->slots[j];
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->term_off = (uint32_t)pb->terms_len;
    e->term_len = (uint32_t)len;
    pb->terms_len += len;
    pb->used++;
    *slot = j;
    return 0;
}

static void put_seq40(uint8_t *p, uint64_t seq)
{
    for (int i = 4; i >= 0; i--) { p[i] = (uint8_t)seq; seq >>= 8; }
}

static uint64_t get_seq40(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 5; i++) v = (v << 8) | p[i];
    return v;
}

typedef struct add_ctx {
    ds_postbuf *pb;
    uint64_t seq;
    uint32_t ntok;
    int rc;
} add_ctx;

static int add_term(const char *term, size_t len, void *ud)
{
    add_ctx *a = ud;
    ds_postbuf *pb = a->pb;
    a->ntok++;
    size_t slot;
    int rc = pb_lookup(pb, term, len, &slot);
    if (rc) return rc;
    pb_entry *e = &pb->slots[slot];
    if (e->npost && get_seq40(e->post + (size_t)(e->npost - 1) * DS_POSTING_LEN) == a->seq) {
        uint8_t *tf = e->post + (size_t)(e->npost - 1) * DS_POSTING_LEN + 5;
        if (*tf < 255) (*tf)++;
        return 0;
    }
    if (e->npost == e->cap) {
        uint32_t nc = e->cap ? e->cap * 2 : 4;
        uint8_t *p = realloc(e->post, (size_t)nc * DS_POSTING_LEN);
        if (!p) return DS_ERR_NOMEM;
        e->post = p;
        e->cap = nc;
    }
    uint8_t *p = e->post + (size_t)e->npost * DS_POSTING_LEN;
    put_seq40(p, a->seq);
    p[5] = 1;
    p[6] = p[7] = 0;
    e->npost++;
    pb->bytes += DS_POSTING_LEN;
    if (pb->ntouched == pb->touched_cap) {
        size_t nc = pb->touched_cap ? pb->touched_cap * 2 : 256;
        uint32_t *t = realloc(pb->touched, nc * sizeof *t);
        if (!t) return DS_ERR_NOMEM;
        pb->touched = t;
        pb->touched_cap = nc;
    }
    pb->touched[pb->ntouched++] = (uint32_t)slot;
    return 0;
}

int ds__index_add(ds_wtxn *tx, uint64_t seq, const char *content, size_t len, uint32_t *doclen)
{
    ds_postbuf *pb = &tx->pb;
    /* The touched list holds slot indexes: no table growth may happen
     * while a document is being added, so make room first. */
    while ((pb->used + len / 2 + 64) * 10 >= pb->nslots * 7) {
        int rc = pb_grow(pb);
        if (rc) return rc;
    }
    add_ctx a = { pb, seq, 0, 0 };
    pb->ntouched = 0;
    int rc = ds_tokenize(tx->st->tok, content, len, add_term, &a);
    if (rc) return rc;
    uint16_t dl = a.ntok > 65535 ? 65535 : (uint16_t)a.ntok;
    for (size_t i = 0; i < pb->ntouched; i++) {
        pb_entry *e = &pb->slots[pb->touched[i]];
        uint8_t *p = e->post + (size_t)(e->npost - 1) * DS_POSTING_LEN;
        p[6] = (uint8_t)(dl >> 8);
        p[7] = (uint8_t)dl;
    }
    pb->ntouched = 0;
    *doclen = dl;
    if (pb->bytes >= PB_FLUSH_BYTES) return ds__index_flush(tx);
    return 0;
}

static int cmp_entry(const void *a, const void *b, void *terms)
{
    const pb_entry *x = a, *y = b;
    const char *t = terms;
    size_t n = x->term_len < y->term_len ? x->term_len : y->term_len;
    int c = memcmp(t + x->term_off, t + y->term_off, n);
    if (c) return c;
    return x->term_len < y->term_len ? -1 : x->term_len > y->term_len;
}

int ds__index_flush(ds_wtxn *tx)
{
    ds_postbuf *pb = &tx->pb;
    if (!pb->used) return 0;
    /* Compact and sort entries in key order so the cursor walks forward. */
    size_t n = 0;
    for (size_t i = 0; i < pb->nslots; i++)
        if (pb->slots[i].hash) pb->slots[n++] = pb->slots[i];
    qsort_r(pb->slots, n, sizeof *pb->slots, cmp_entry, pb->terms);
    MDB_cursor *cur = NULL;
    int rc = ds__lmdb_err(mdb_cursor_open(tx->txn, tx->st->dbi[DBI_POSTINGS], &cur));
    for (size_t i = 0; i < n && !rc; i++) {
        pb_entry *e = &pb->slots[i];
        MDB_val k = { e->term_len, pb->terms + e->term_off }, d;
        if ((rc = ds__store_write_check(tx->st))) break;
        int exists = mdb_cursor_get(cur, &k, &d, MDB_SET) == 0;
        MDB_val mv[2] = { { DS_POSTING_LEN, e->post }, { e->npost, NULL } };
        int mrc = mdb_cursor_put(cur, &k, mv, MDB_MULTIPLE | MDB_APPENDDUP);
        if (mrc == MDB_KEYEXIST) {
            /* Not strictly after the existing postings (cannot happen with
             * increasing sequences, but never lose a posting over it). */
            for (uint32_t j = 0; j < e->npost && !mrc; j++) {
                MDB_val one = { DS_POSTING_LEN, e->post + (size_t)j * DS_POSTING_LEN };
                mrc = mdb_cursor_put(cur, &k, &one, MDB_NODUPDATA);
                if (mrc == MDB_KEYEXIST) mrc = 0;
            }
        }
        rc = ds__lmdb_err(mrc);
        if (!rc && !exists) tx->c.terms++;
    }
    if (cur) mdb_cursor_close(cur);
    /* Entries were compacted: the table must be rebuilt from scratch. */
    for (size_t i = 0; i < n; i++) free(pb->slots[i].post);
    memset(pb->slots, 0, pb->nslots * sizeof *pb->slots);
    pb->used = 0;
    pb->terms_len = 0;
    pb->bytes = 0;
    return rc;
}

/* ---- removal ----------------------------------------------------------- */

typedef struct rm_ctx {
    char **terms;
    size_t n, cap;
    uint32_t ntok;
} rm_ctx;

static int collect_term(const char *term, size_t len, void *ud)
{
    rm_ctx *r = ud;
    r->ntok++;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 64;
        char **t = realloc(r->terms, nc * sizeof *t);
        if (!t) return DS_ERR_NOMEM;
        r->terms = t;
        r->cap = nc;
    }
    if (!(r->terms[r->n] = strndup(term, len))) return DS_ERR_NOMEM;
    r->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ds__index_remove(ds_wtxn *tx, uint64_t seq, const char *content, size_t len, uint32_t *doclen)
{
    /* The document's postings may still be buffered: write them first. */
    int rc = ds__index_flush(tx);
    if (rc) return rc;
    rm_ctx r = { 0 };
    rc = ds_tokenize(tx->st->tok, content, len, collect_term, &r);
    if (!rc) {
        qsort(r.terms, r.n, sizeof *r.terms, cmp_str);
        MDB_cursor *cur = NULL;
        rc = ds__lmdb_err(mdb_cursor_open(tx->txn, tx->st->dbi[DBI_POSTINGS], &cur));
        for (size_t i = 0; i < r.n && !rc; i++) {
            if (i && strcmp(r.terms[i], r.terms[i - 1]) == 0) continue;
            uint8_t probe[DS_POSTING_LEN] = { 0 };
            put_seq40(probe, seq);
            MDB_val k = { strlen(r.terms[i]), r.terms[i] }, d = { DS_POSTING_LEN, probe };
            int mrc = mdb_cursor_get(cur, &k, &d, MDB_GET_BOTH_RANGE);
            if (mrc == MDB_NOTFOUND) continue;        /* already gone */
            if (mrc) { rc = ds__lmdb_err(mrc); break; }
            if (d.mv_size != DS_POSTING_LEN || get_seq40(d.mv_data) != seq) continue;
            size_t count = 0;
            mdb_cursor_count(cur, &count);
            if ((rc = ds__store_write_check(tx->st))) break;
            rc = ds__lmdb_err(mdb_cursor_del(cur, 0));
            if (!rc && count == 1 && tx->c.terms) tx->c.terms--;
        }
        if (cur) mdb_cursor_close(cur);
    }
    for (size_t i = 0; i < r.n; i++) free(r.terms[i]);
    free(r.terms);
    *doclen = r.ntok > 65535 ? 65535 : r.ntok;
    return rc;
}
