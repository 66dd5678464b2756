/*
 * index.c - the write side of the search index (see docs/search.md).
 *
 * A term's postings are sealed blocks of up to DS_BLOCK_MAX fixed 8-byte
 * postings (postings table, key = term | 0x00 | first sequence) followed
 * by an open tail of at most DS_TAIL_MAX postings kept in the term's
 * record in the terms table, next to its document frequency.  Because
 * sequences only grow, a new document's postings always go at the end of
 * their term's list: a write transaction buffers postings per term in a
 * hash table and, at commit, appends each term's batch to its tail,
 * sealing the overflow into blocks.  The common case rewrites one small
 * record in the densely packed terms table, so small transactions (a
 * note, a sync page) do not copy one postings page per term.  Removing a
 * document re-tokenizes its content and deletes its posting from the
 * tail or the sealed block holding it.
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

size_t ds__block_key(uint8_t *key, const char *term, size_t tlen, uint64_t seq)
{
    memcpy(key, term, tlen);
    key[tlen] = 0;
    put_seq40(key + tlen + 1, seq);
    return tlen + 6;
}

int ds__termrec_get(ds_store *st, MDB_txn *txn, const char *term, size_t tlen, ds_termrec *r)
{
    MDB_val k = { tlen, (void *)term }, d;
    int rc = mdb_get(txn, st->dbi[DBI_TERMS], &k, &d);
    if (rc) return ds__lmdb_err(rc);
    const uint8_t *p = d.mv_data;
    if (d.mv_size < DS_TERMREC_HDR) return DS_ERR_STORE;
    r->df = ds_get_be32(p);
    r->tail_count = (uint16_t)((p[4] << 8) | p[5]);
    r->tail = p + DS_TERMREC_HDR;
    if (r->tail_count > DS_TAIL_MAX || d.mv_size != DS_TERMREC_HDR + (size_t)r->tail_count * DS_POSTING_LEN)
        return DS_ERR_STORE;
    return 0;
}

/* Writes the term record (df, tail); |tail| may alias the database. */
static int termrec_put(ds_wtxn *tx, const char *term, size_t tlen, uint32_t df,
                       const uint8_t *tail, size_t tail_count)
{
    uint8_t v[DS_TERMREC_HDR + DS_TAIL_MAX * DS_POSTING_LEN];
    ds_put_be32(v, df);
    v[4] = (uint8_t)(tail_count >> 8);
    v[5] = (uint8_t)tail_count;
    v[6] = v[7] = 0;
    memmove(v + DS_TERMREC_HDR, tail, tail_count * DS_POSTING_LEN);
    MDB_val k = { tlen, (void *)term }, d = { DS_TERMREC_HDR + tail_count * DS_POSTING_LEN, v };
    int rc = ds__store_write_check(tx->st);
    return rc ? rc : ds__lmdb_err(mdb_put(tx->txn, tx->st->dbi[DBI_TERMS], &k, &d, 0));
}

static int termrec_del(ds_wtxn *tx, const char *term, size_t tlen)
{
    MDB_val k = { tlen, (void *)term };
    int rc = ds__store_write_check(tx->st);
    return rc ? rc : ds__lmdb_err(mdb_del(tx->txn, tx->st->dbi[DBI_TERMS], &k, NULL));
}

static int block_put(ds_wtxn *tx, const char *term, size_t tlen, const uint8_t *post, size_t count)
{
    uint8_t key[DS_TERM_MAX + 6];
    MDB_val k = { ds__block_key(key, term, tlen, get_seq40(post)), key };
    MDB_val d = { count * DS_POSTING_LEN, (void *)post };
    int rc = ds__store_write_check(tx->st);
    return rc ? rc : ds__lmdb_err(mdb_put(tx->txn, tx->st->dbi[DBI_POSTINGS], &k, &d, 0));
}

/* Appends the buffered postings |e| of one term to its tail; while the
 * tail would overflow, its oldest postings are sealed into blocks. */
static int flush_term(ds_wtxn *tx, const char *term, size_t tlen, const pb_entry *e, uint8_t *tmp)
{
    ds_termrec r;
    int rc = ds__termrec_get(tx->st, tx->txn, term, tlen, &r);
    if (rc == DS_ERR_NOTFOUND) {
        r.df = 0;
        r.tail_count = 0;
        r.tail = NULL;
        rc = 0;
        tx->c.terms++;
    }
    if (rc) return rc;
    size_t total = r.tail_count + (size_t)e->npost;
    const uint8_t *all;
    if (r.tail_count == 0) {
        all = e->post;
    } else {
        /* old tail then new postings, contiguous (tmp holds room for both
         * when the batch is small; large batches are sealed in pieces) */
        if (total <= DS_BLOCK_MAX) {
            memcpy(tmp, r.tail, (size_t)r.tail_count * DS_POSTING_LEN);
            memcpy(tmp + (size_t)r.tail_count * DS_POSTING_LEN, e->post, (size_t)e->npost * DS_POSTING_LEN);
            all = tmp;
        } else {
            /* seal the old tail on its own, then continue with the batch */
            if ((rc = block_put(tx, term, tlen, r.tail, r.tail_count))) return rc;
            total = e->npost;
            all = e->post;
        }
    }
    size_t done = 0;
    while (total - done > DS_TAIL_MAX) {
        size_t take = total - done;
        if (take > DS_BLOCK_MAX) take = DS_BLOCK_MAX;
        if ((rc = block_put(tx, term, tlen, all + done * DS_POSTING_LEN, take))) return rc;
        done += take;
    }
    return termrec_put(tx, term, tlen, r.df + e->npost, all + done * DS_POSTING_LEN, total - done);
}

int ds__index_flush(ds_wtxn *tx)
{
    ds_postbuf *pb = &tx->pb;
    if (!pb->used) return 0;
    /* Compact and sort entries in key order so LMDB walks forward. */
    size_t n = 0;
    for (size_t i = 0; i < pb->nslots; i++)
        if (pb->slots[i].hash) pb->slots[n++] = pb->slots[i];
    qsort_r(pb->slots, n, sizeof *pb->slots, cmp_entry, pb->terms);
    int rc = 0;
    uint8_t *tmp = malloc((size_t)(DS_BLOCK_MAX + DS_TAIL_MAX) * DS_POSTING_LEN);
    if (!tmp) rc = DS_ERR_NOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        pb_entry *e = &pb->slots[i];
        rc = flush_term(tx, pb->terms + e->term_off, e->term_len, e, tmp);
    }
    free(tmp);
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

/* Index of the first posting >= |seq| among |count| at |p|. */
static size_t find_posting(const uint8_t *p, size_t count, uint64_t seq)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (get_seq40(p + mid * DS_POSTING_LEN) < seq) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Removes |seq|'s posting from |term|'s tail or from the sealed block
 * that holds it. */
static int remove_posting(ds_wtxn *tx, MDB_cursor *cur, const char *term, uint64_t seq, uint8_t *tmp)
{
    size_t tlen = strlen(term);
    ds_termrec r;
    int rc = ds__termrec_get(tx->st, tx->txn, term, tlen, &r);
    if (rc == DS_ERR_NOTFOUND) return 0;            /* already gone */
    if (rc) return rc;
    size_t i = find_posting(r.tail, r.tail_count, seq);
    if (i < r.tail_count && get_seq40(r.tail + i * DS_POSTING_LEN) == seq) {
        memcpy(tmp, r.tail, i * DS_POSTING_LEN);
        memcpy(tmp + i * DS_POSTING_LEN, r.tail + (i + 1) * DS_POSTING_LEN,
               (r.tail_count - i - 1) * DS_POSTING_LEN);
    } else {
        /* The sealed block with the greatest first seq <= seq. */
        uint8_t key[DS_TERM_MAX + 6];
        size_t kl = ds__block_key(key, term, tlen, seq);
        MDB_val k = { kl, key }, d;
        int mrc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
        if (mrc == 0 && !(k.mv_size == kl && memcmp(k.mv_data, key, kl) == 0))
            mrc = mdb_cursor_get(cur, &k, &d, MDB_PREV);
        else if (mrc == MDB_NOTFOUND)
            mrc = mdb_cursor_get(cur, &k, &d, MDB_LAST);
        if (mrc == MDB_NOTFOUND) return 0;
        if (mrc) return ds__lmdb_err(mrc);
        if (k.mv_size != tlen + 6 || memcmp(k.mv_data, term, tlen) != 0 ||
            ((const uint8_t *)k.mv_data)[tlen] != 0)
            return 0;                               /* no block of this term at or before seq */
        size_t cnt = d.mv_size / DS_POSTING_LEN;
        const uint8_t *p = d.mv_data;
        size_t j = find_posting(p, cnt, seq);
        if (j == cnt || get_seq40(p + j * DS_POSTING_LEN) != seq) return 0;
        if ((rc = ds__store_write_check(tx->st))) return rc;
        if (cnt == 1) {
            if ((rc = ds__lmdb_err(mdb_cursor_del(cur, 0)))) return rc;
        } else {
            uint8_t own[DS_TERM_MAX + 6];            /* k points into the map: copy */
            memcpy(own, k.mv_data, k.mv_size);
            memcpy(tmp, p, j * DS_POSTING_LEN);
            memcpy(tmp + j * DS_POSTING_LEN, p + (j + 1) * DS_POSTING_LEN, (cnt - j - 1) * DS_POSTING_LEN);
            MDB_val ok = { k.mv_size, own }, nd = { (cnt - 1) * DS_POSTING_LEN, tmp };
            if ((rc = ds__lmdb_err(mdb_put(tx->txn, tx->st->dbi[DBI_POSTINGS], &ok, &nd, 0)))) return rc;
        }
        /* The term record may have moved: read it again for its tail. */
        if ((rc = ds__termrec_get(tx->st, tx->txn, term, tlen, &r))) return rc;
        memcpy(tmp, r.tail, (size_t)r.tail_count * DS_POSTING_LEN);
        i = SIZE_MAX;
    }
    size_t tail = i == SIZE_MAX ? r.tail_count : (size_t)r.tail_count - 1;
    if (r.df <= 1) {
        if (tx->c.terms) tx->c.terms--;
        return termrec_del(tx, term, tlen);
    }
    return termrec_put(tx, term, tlen, r.df - 1, tmp, tail);
}

int ds__index_remove(ds_wtxn *tx, uint64_t seq, const char *content, size_t len, uint32_t *doclen)
{
    /* The document's postings may still be buffered: write them first. */
    int rc = ds__index_flush(tx);
    if (rc) return rc;
    rm_ctx r = { 0 };
    rc = ds_tokenize(tx->st->tok, content, len, collect_term, &r);
    uint8_t *tmp = NULL;
    MDB_cursor *cur = NULL;
    if (!rc && !(tmp = malloc((size_t)(DS_BLOCK_MAX + DS_TAIL_MAX) * DS_POSTING_LEN))) rc = DS_ERR_NOMEM;
    if (!rc) rc = ds__lmdb_err(mdb_cursor_open(tx->txn, tx->st->dbi[DBI_POSTINGS], &cur));
    if (!rc) {
        qsort(r.terms, r.n, sizeof *r.terms, cmp_str);
        for (size_t i = 0; i < r.n && !rc; i++) {
            if (i && strcmp(r.terms[i], r.terms[i - 1]) == 0) continue;
            rc = remove_posting(tx, cur, r.terms[i], seq, tmp);
        }
    }
    if (cur) mdb_cursor_close(cur);
    free(tmp);
    for (size_t i = 0; i < r.n; i++) free(r.terms[i]);
    free(r.terms);
    *doclen = r.ntok > 65535 ? 65535 : r.ntok;
    return rc;
}
