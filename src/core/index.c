/*
 * index.c - the write side of the search index and its segment format
 * (see store_int.h and docs/search.md).
 *
 * A write transaction tokenizes each new document into an in-memory
 * posting buffer (one growing list per term; the tokenizer's cache tags
 * remember each raw word's list, so a frequent word costs one cache probe)
 * and, at commit, writes the buffer as one immutable segment: its terms
 * sorted, each term's postings contiguous.  Nothing already on disk is
 * rewritten, so a commit costs about the size of what it adds, however
 * large the store.  Merging runs of adjacent segments of similar size
 * (size-tiered, fan-out DS_SEG_FANOUT) keeps the segment count
 * logarithmic, and a compaction drops the dead once they are
 * 1/DS_SEG_DEAD_SHARE of the documents (compact_pick), which tiered
 * merging alone would never do in a store that stops growing; a merge
 * only reads segments committed earlier, whose pages this transaction
 * never modifies, so its zero-copy reads stay valid while it writes.
 *
 * Segment layout, format version 2 (header and dictionary in host byte
 * order, LMDB files are not portable across architectures anyway;
 * postings and docs table big-endian, see store_int.h):
 *   segs    id (8 BE)            -> header (SEGHDR_LEN bytes) {version u32,
 *                                   nparts u32, first_seq u64, last_seq
 *                                   u64, ndocs u32, nterms u32, nposts u64}
 *   segdata id (8 BE) | 0 (4 BE) -> dictionary: nterms entries of ENT_LEN
 *                                   bytes {term_off u32, term_len u8, 0,
 *                                   part u16, off u32, count u32} sorted
 *                                   by term, then the term bytes
 *   segdata id | part (4 BE)     -> postings part (1 <= part <= nparts):
 *                                   whole term lists of 4-byte postings
 *                                   {ordinal 24 | tf 8}
 *   segdata id | 0xffffffff      -> docs table (DS_SEG_DOCS_PART): ndocs
 *                                   entries {seq - first_seq u32 BE,
 *                                   increasing; length in tokens u16 BE}
 * Ordinals index the docs table, so a posting costs 4 bytes instead of
 * carrying its seq and document length; merges renumber them.
 */
#include "core/store_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ds/error.h"
#include "core/util.h"

#define PB_FLUSH_BYTES (64u << 20)   /* write a segment within a transaction past this */
#define SEG_VERSION 2
#define SEGHDR_LEN 48
#define ENT_LEN 16
#define PART_KEY_LEN 12


/* ---- byte helpers ------------------------------------------------------ */

static uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static void st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void st64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void st16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

static void part_key(uint8_t k[PART_KEY_LEN], uint64_t id, uint32_t part)
{
    ds_put_be64(k, id);
    ds_put_be32(k + 8, part);
}

static int cmp_term(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

static uint64_t hash_term(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a, fine for a private table */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* ---- posting buffer ---------------------------------------------------- */

#define PB_KEEP_BYTES (8u << 20)     /* larger buffers are freed at the end of a transaction */

static void pb_clear(ds_postbuf *pb)
{
    pb->nents = 0;
    if (pb->table) memset(pb->table, 0, pb->tslots * sizeof *pb->table);
    pb->terms_len = 0;
    pb->ntuples = 0;
    pb->min_seq = 0;
    pb->ndocs = 0;
    pb->any_dead = 0;
    pb->gen = 0;                              /* a new generation on next use */
}

void ds__postbuf_free(ds_postbuf *pb)
{
    free(pb->ents);
    free(pb->table);
    free(pb->terms);
    free(pb->tuples);
    free(pb->docinfo);
    free(pb->out);
    memset(pb, 0, sizeof *pb);
}

void ds__postbuf_reset(ds_postbuf *pb)
{
    if (pb->tuples_cap * sizeof *pb->tuples > PB_KEEP_BYTES || pb->out_cap > PB_KEEP_BYTES ||
        (size_t)pb->ents_cap * sizeof *pb->ents > PB_KEEP_BYTES)
        ds__postbuf_free(pb);
    else
        pb_clear(pb);
}

/* A fresh tag generation, so cache tags of earlier buffers read as stale. */
static void pb_new_gen(ds_store *st, ds_postbuf *pb)
{
    if (++st->tag_gen == 0) {
        ds_tokenizer_clear_tags(st->tok);
        st->tag_gen = 1;
    }
    pb->gen = st->tag_gen;
}

static int pb_grow_table(ds_postbuf *pb)
{
    size_t n = pb->tslots ? pb->tslots * 2 : 8192;
    uint32_t *t = calloc(n, sizeof *t);
    if (!t) return DS_ERR_NOMEM;
    for (uint32_t i = 0; i < pb->nents; i++) {
        size_t j = pb->ents[i].hash & (n - 1);
        while (t[j]) j = (j + 1) & (n - 1);
        t[j] = i + 1;
    }
    free(pb->table);
    pb->table = t;
    pb->tslots = n;
    return 0;
}

/* Finds |term|'s entry; creates it when |create|.  *idx = UINT32_MAX when
 * absent and not created. */
static int pb_find(ds_postbuf *pb, const char *term, size_t len, int create, uint32_t *idx)
{
    *idx = UINT32_MAX;
    if (create && ((size_t)pb->nents + 1) * 10 >= pb->tslots * 7) {
        int rc = pb_grow_table(pb);
        if (rc) return rc;
    }
    if (!pb->tslots) return 0;
    uint64_t h = hash_term(term, len);
    size_t j = h & (pb->tslots - 1);
    while (pb->table[j]) {
        pb_entry *e = &pb->ents[pb->table[j] - 1];
        if (e->hash == h && e->term_len == len && memcmp(pb->terms + e->term_off, term, len) == 0) {
            *idx = pb->table[j] - 1;
            return 0;
        }
        j = (j + 1) & (pb->tslots - 1);
    }
    if (!create) return 0;
    if (pb->nents == UINT32_MAX - 1) return DS_ERR_FULL;
    if (pb->nents == pb->ents_cap) {
        uint32_t nc = pb->ents_cap ? pb->ents_cap * 2 : 4096;
        pb_entry *ne = realloc(pb->ents, (size_t)nc * sizeof *ne);
        if (!ne) return DS_ERR_NOMEM;
        pb->ents = ne;
        pb->ents_cap = nc;
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
    pb_entry *e = &pb->ents[pb->nents];
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->term_off = (uint32_t)pb->terms_len;
    e->term_len = (uint32_t)len;
    pb->terms_len += len;
    pb->table[j] = pb->nents + 1;
    *idx = pb->nents++;
    return 0;
}

typedef struct add_ctx {
    ds_postbuf *pb;
    uint32_t doc;                  /* document number in the buffer */
    uint32_t ntok;
} add_ctx;

static int add_term(const char *term, size_t len, uint64_t *tag, void *ud)
{
    add_ctx *a = ud;
    ds_postbuf *pb = a->pb;
    a->ntok++;
    uint32_t idx;
    if (*tag && (uint32_t)(*tag >> 32) == pb->gen) {
        idx = (uint32_t)*tag;
    } else {
        int rc = pb_find(pb, term, len, 1, &idx);
        if (rc) return rc;
        *tag = ((uint64_t)pb->gen << 32) | idx;
    }
    pb_entry *e = &pb->ents[idx];
    if (e->last_doc == a->doc + 1) {
        uint64_t *t = &pb->tuples[e->last_pos];
        if ((*t & 0xff) != 0xff) (*t)++;
        return 0;
    }
    if (pb->ntuples == pb->tuples_cap) {
        size_t nc = pb->tuples_cap ? pb->tuples_cap * 2 : 65536;
        uint64_t *t = realloc(pb->tuples, nc * sizeof *t);
        if (!t) return DS_ERR_NOMEM;
        pb->tuples = t;
        pb->tuples_cap = nc;
    }
    e->last_doc = a->doc + 1;
    e->last_pos = (uint32_t)pb->ntuples;
    e->count++;
    pb->tuples[pb->ntuples++] = ((uint64_t)idx << 32) | ((uint64_t)a->doc << 8) | 1;
    return 0;
}

static int write_buffer(ds_wtxn *tx);

/* Buffers at most this many documents (a document number has 24 bits;
 * PB_FLUSH_BYTES keeps tuple indexes far below 2^32). */
#define PB_MAX_DOCS ((1u << 24) - 1)

int ds__pb_add_doc(ds_store *st, uint64_t seq, const char *content, size_t len, uint32_t *doclen)
{
    ds_postbuf *pb = &st->pb;
    *doclen = 0;
    if (!pb->gen) pb_new_gen(st, pb);
    if (!pb->min_seq) pb->min_seq = seq;
    if (seq < pb->min_seq || seq - pb->min_seq >= PB_MAX_DOCS) return DS_ERR_INVALID;
    size_t doc = (size_t)(seq - pb->min_seq);
    if (doc >= pb->docinfo_cap) {
        size_t nc = pb->docinfo_cap ? pb->docinfo_cap * 2 : 1024;
        while (nc <= doc) nc *= 2;
        uint32_t *d = realloc(pb->docinfo, nc * sizeof *d);
        if (!d) return DS_ERR_NOMEM;
        pb->docinfo = d;
        pb->docinfo_cap = nc;
    }
    if (doc >= pb->ndocs) {
        memset(pb->docinfo + pb->ndocs, 0, (doc + 1 - pb->ndocs) * sizeof *pb->docinfo);
        pb->ndocs = doc + 1;
    }
    add_ctx a = { pb, (uint32_t)doc, 0 };
    int rc = ds_tokenize_tagged(st->tok, content, len, add_term, &a);
    if (rc) {                     /* its tuples so far must not be written */
        pb->docinfo[doc] = DS_PB_DOC_DEAD;
        pb->any_dead = 1;
        return rc;
    }
    uint16_t dl = a.ntok > 65535 ? 65535 : (uint16_t)a.ntok;
    pb->docinfo[doc] = dl;
    *doclen = dl;
    return 0;
}

/* Waits for the index worker and takes the lengths of the documents it
 * indexed into the transaction's counters. */
static int drain(ds_wtxn *tx)
{
    uint64_t len = 0;
    int rc = ds__iw_drain(tx->st, &len);
    tx->c.total_len += len;
    return rc;
}

/* ---- index work ahead of time (see ds__wtxn_commit_ahead) ----------- */

void ds__ahead_forget(ds_store *st)
{
    uint64_t len;
    ds__iw_drain(st, &len);            /* its lengths and errors are the guess's */
    ds__postbuf_reset(&st->pb);
    st->ahead.state = DS_AHEAD_NONE;
}

void ds__ahead_start(ds_wtxn *tx, const ds_ahead_doc *docs, size_t n, uint64_t *ticket)
{
    ds_store *st = tx->st;
    ds_ahead *a = &st->ahead;
    *ticket = 0;
    a->state = DS_AHEAD_NONE;
    if (!n || n >= PB_MAX_DOCS || tx->c.last_seq + n > DS_SEQ_MAX || !ds__iw_ready(st)) return;
    /* The whole guess must fit one buffer: the next transaction then
     * writes no segment before it has matched or dropped the guess. */
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += docs[i].len + 64;
    if (bytes > PB_FLUSH_BYTES / 2) return;
    if (n > a->cap) {
        ds_ahead_doc *d = realloc(a->docs, n * sizeof *d);
        if (!d) return;
        a->docs = d;
        a->cap = n;
    }
    memcpy(a->docs, docs, n * sizeof *docs);
    a->n = n;
    a->k = 0;
    a->base = tx->c.last_seq + 1;
    ds__postbuf_reset(&st->pb);        /* empty after the index commit; documents without terms may remain */
    a->state = DS_AHEAD_PENDING;
    for (size_t i = 0; i < n; i++) {
        uint32_t dl;
        if (ds__iw_submit(st, a->base + i, docs[i].content, docs[i].len, &dl)) {
            ds__ahead_forget(st);      /* only a guess: the commit goes on without it */
            return;
        }
    }
    ds__iw_kick(st);
    *ticket = a->ticket = ++a->last_ticket;
}

/* Before any index change other than a guessed insertion: a guess fully
 * matched simply ends; otherwise its buffer is dropped and the documents
 * inserted as guessed are tokenized again, as if there had been none. */
static int ahead_settle(ds_wtxn *tx)
{
    ds_store *st = tx->st;
    ds_ahead *a = &st->ahead;
    if (a->state != DS_AHEAD_ACTIVE) return 0;
    if (a->k == a->n) {
        a->state = DS_AHEAD_NONE;
        return 0;
    }
    ds__ahead_forget(st);
    for (size_t i = 0; i < a->k; i++) {
        uint32_t dl;
        int rc = ds__iw_submit(st, a->base + i, a->docs[i].content, a->docs[i].len, &dl);
        if (rc) return rc;
        tx->c.total_len += dl;         /* nonzero only without a worker */
    }
    return 0;
}

int ds__index_add(ds_wtxn *tx, uint64_t seq, const char *content, size_t len, uint32_t *doclen)
{
    *doclen = 0;
    ds_ahead *a = &tx->st->ahead;
    int rc;
    if (a->state == DS_AHEAD_ACTIVE) {
        if (a->k < a->n && seq == a->base + a->k && content == a->docs[a->k].content &&
            len == a->docs[a->k].len) {
            a->k++;                    /* tokenized already; its length comes with the drain */
            tx->pending_bytes += len + 64;
            return 0;
        }
        if ((rc = ahead_settle(tx))) return rc;
    }
    rc = ds__iw_submit(tx->st, seq, content, len, doclen);
    if (rc) return rc;
    /* Bound the buffer: past PB_FLUSH_BYTES of text (about as many
     * posting bytes), write what is buffered as a segment.  Counting 64
     * bytes per document also keeps the documents far below PB_MAX_DOCS. */
    tx->pending_bytes += len + 64;
    if (tx->pending_bytes >= PB_FLUSH_BYTES) {
        tx->pending_bytes = 0;
        if ((rc = drain(tx))) return rc;
        if (tx->st->pb.ntuples) return write_buffer(tx);
    }
    return 0;
}

/* ---- segment writer ---------------------------------------------------- */

typedef struct segw {
    ds_wtxn *tx;
    uint64_t id;
    ds_buf ents, terms, part;
    uint32_t part_no;            /* the part being filled (>= 1) */
    uint32_t nterms;
    uint64_t nposts;
    uint8_t *docs;               /* docs table, room for docs_cap entries */
    uint32_t ndocs, docs_cap;
} segw;

static void segw_init(segw *w, ds_wtxn *tx)
{
    memset(w, 0, sizeof *w);
    w->tx = tx;
    w->id = tx->c.next_seg++;
    w->part_no = 1;
}

static void segw_free(segw *w)
{
    ds_buf_free(&w->ents);
    ds_buf_free(&w->terms);
    ds_buf_free(&w->part);
    free(w->docs);
}

/* Makes room for |cap| docs-table entries (once, before segw_doc). */
static int segw_docs_reserve(segw *w, uint64_t cap)
{
    if (cap > DS_SEG_MAX_DOCS) return DS_ERR_TOOLARGE;
    if (!(w->docs = malloc(cap ? (size_t)cap * DS_DOC_ENT_LEN : 1))) return DS_ERR_NOMEM;
    w->docs_cap = (uint32_t)cap;
    return 0;
}

/* Appends the next document (ordinal w->ndocs): seq - first_seq, length. */
static void segw_doc(segw *w, uint32_t off, uint32_t dl)
{
    assert(w->ndocs < w->docs_cap);
    uint8_t *e = w->docs + (size_t)w->ndocs++ * DS_DOC_ENT_LEN;
    ds_put_be32(e, off);
    e[4] = (uint8_t)(dl >> 8);
    e[5] = (uint8_t)dl;
}

int ds__put_raw(ds_wtxn *tx, int dbi, const void *k, size_t kl, const void *v, size_t vl)
{
    int rc = ds__store_write_check(tx->st);
    if (rc) return rc;
    MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
    return ds__lmdb_err(mdb_put(tx->txn, tx->st->dbi[dbi], &key, &val, 0));
}

int ds__del_raw(ds_wtxn *tx, int dbi, const void *k, size_t kl)
{
    int rc = ds__store_write_check(tx->st);
    if (rc) return rc;
    MDB_val key = { kl, (void *)k };
    rc = mdb_del(tx->txn, tx->st->dbi[dbi], &key, NULL);
    return rc == MDB_NOTFOUND ? 0 : ds__lmdb_err(rc);
}

static int segw_put_part(segw *w, const uint8_t *data, size_t len);

static int segw_flush_part(segw *w)
{
    if (!w->part.len) return 0;
    int rc = segw_put_part(w, w->part.data, w->part.len);
    if (!rc) w->part.len = 0;
    return rc;
}

/* Writes |len| bytes as the segment's next postings part. */
static int segw_put_part(segw *w, const uint8_t *data, size_t len)
{
    uint8_t k[PART_KEY_LEN];
    part_key(k, w->id, w->part_no);
    int rc = ds__put_raw(w->tx, DBI_SEGDATA, k, sizeof k, data, len);
    if (!rc) w->part_no++;
    return rc;
}

/* Adds the dictionary entry of |term|: |count| postings at |off| in the
 * part being filled. */
static int segw_entry(segw *w, const char *term, size_t tlen, size_t off, uint32_t count)
{
    if (w->part_no > UINT16_MAX || w->terms.len + tlen > UINT32_MAX || tlen > 255 || off > UINT32_MAX)
        return DS_ERR_TOOLARGE;
    uint8_t e[ENT_LEN];
    st32(e, (uint32_t)w->terms.len);
    e[4] = (uint8_t)tlen;
    e[5] = 0;
    st16(e + 6, (uint16_t)w->part_no);
    st32(e + 8, (uint32_t)off);
    st32(e + 12, count);
    int rc;
    if ((rc = ds_buf_append(&w->ents, e, ENT_LEN)) || (rc = ds_buf_append(&w->terms, term, tlen)))
        return rc;
    w->nterms++;
    w->nposts += count;
    return 0;
}

/* Adds |term| with |count| postings to the part buffer; *dst receives
 * room for them (valid until the next call). */
static int segw_term(segw *w, const char *term, size_t tlen, uint32_t count, uint8_t **dst)
{
    size_t need = (size_t)count * DS_POSTING_LEN;
    int rc;
    if (w->part.len && w->part.len + need > DS_SEG_PART_BYTES && (rc = segw_flush_part(w)))
        return rc;
    if ((rc = segw_entry(w, term, tlen, w->part.len, count)) || (rc = ds_buf_reserve(&w->part, need)))
        return rc;
    *dst = w->part.data + w->part.len;
    w->part.len += need;
    return 0;
}

/* Writes the dictionary, docs table and header; a segment without terms
 * is not written at all. */
static int segw_finish(segw *w, uint64_t first_seq, uint64_t last_seq)
{
    if (!w->nterms) return 0;
    int rc = segw_flush_part(w);
    if (rc) return rc;
    if ((rc = ds_buf_append(&w->ents, w->terms.data, w->terms.len))) return rc;
    uint8_t k[PART_KEY_LEN];
    part_key(k, w->id, 0);
    if ((rc = ds__put_raw(w->tx, DBI_SEGDATA, k, sizeof k, w->ents.data, w->ents.len))) return rc;
    part_key(k, w->id, DS_SEG_DOCS_PART);
    if ((rc = ds__put_raw(w->tx, DBI_SEGDATA, k, sizeof k, w->docs, (size_t)w->ndocs * DS_DOC_ENT_LEN)))
        return rc;
    uint8_t h[SEGHDR_LEN] = { 0 };
    st32(h, SEG_VERSION);
    st32(h + 4, w->part_no - 1);
    st64(h + 8, first_seq);
    st64(h + 16, last_seq);
    st32(h + 24, w->ndocs);
    st32(h + 28, w->nterms);
    st64(h + 32, w->nposts);
    uint8_t sk[8];
    ds_put_be64(sk, w->id);
    if ((rc = ds__put_raw(w->tx, DBI_SEGS, sk, 8, h, sizeof h))) return rc;
    w->tx->c.index_gen++;
    return 0;
}

/* ---- buffer -> segment ------------------------------------------------- */

/* Sorts |v| by term: a radix sort on the 8-byte prefixes, then the rare
 * runs of equal prefixes by the whole term.  |tmp| has room for |n|
 * entries. */
static void sort_terms_by_prefix(ds_prefix_ent *v, ds_prefix_ent *tmp, size_t n,
                                 const pb_entry *ents, const char *terms)
{
    ds_sort_by_prefix(v, tmp, n);
    for (size_t i = 1; i < n; i++) {        /* insertion sort inside equal-prefix runs */
        ds_prefix_ent x = v[i];
        const pb_entry *ex = &ents[x.idx];
        size_t j = i;
        while (j > 0 && v[j - 1].prefix == x.prefix) {
            const pb_entry *ey = &ents[v[j - 1].idx];
            if (cmp_term(terms + ey->term_off, ey->term_len, terms + ex->term_off, ex->term_len) <= 0) break;
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

/* Terms contain no NUL byte, so the zero-padded big-endian 8-byte prefix
 * orders like the bytes themselves (shorter first on a tie). */
static uint64_t term_prefix(const char *t, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++) v = (v << 8) | (i < n ? (uint8_t)t[i] : 0);
    return v;
}

static int write_buffer(ds_wtxn *tx)
{
    ds_postbuf *pb = &tx->st->pb;
    int rc = 0;
    uint32_t live = 0;
    for (size_t i = 0; i < pb->ndocs; i++)
        live += (pb->docinfo[i] & 0xffff) != 0 && !(pb->docinfo[i] & DS_PB_DOC_DEAD);
    if (pb->any_dead) {                 /* documents removed again: count without them */
        for (uint32_t i = 0; i < pb->nents; i++) pb->ents[i].count = 0;
        for (size_t i = 0; i < pb->ntuples; i++) {
            uint64_t t = pb->tuples[i];
            if (!(pb->docinfo[(t >> 8) & 0xffffff] & DS_PB_DOC_DEAD)) pb->ents[t >> 32].count++;
        }
    }
    /* The docs table; docinfo becomes each document's ordinal, or dead. */
    segw w;
    segw_init(&w, tx);
    if ((rc = segw_docs_reserve(&w, live))) { segw_free(&w); pb_clear(pb); return rc; }
    for (size_t i = 0; i < pb->ndocs; i++) {
        uint32_t info = pb->docinfo[i];
        if ((info & 0xffff) == 0 || (info & DS_PB_DOC_DEAD)) {
            pb->docinfo[i] = DS_PB_DOC_DEAD;
            continue;
        }
        pb->docinfo[i] = w.ndocs;
        segw_doc(&w, (uint32_t)i, info & 0xffff);
    }
    ds_prefix_ent *order = NULL;
    if (pb->nents && !(order = malloc((size_t)pb->nents * 2 * sizeof *order))) {
        segw_free(&w);
        pb_clear(pb);
        return DS_ERR_NOMEM;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < pb->nents; i++) {
        const pb_entry *e = &pb->ents[i];
        if (e->count) order[n++] = (ds_prefix_ent){ term_prefix(pb->terms + e->term_off, e->term_len), i };
    }
    sort_terms_by_prefix(order, order + n, n, pb->ents, pb->terms);
    /* Counting sort: each term's run in pb->out, in dictionary order. */
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        pb_entry *e = &pb->ents[order[i].idx];
        e->out = total;
        e->fill = 0;
        total += e->count;
    }
    size_t need = (size_t)total * DS_POSTING_LEN;
    if (need > pb->out_cap) {
        free(pb->out);
        pb->out_cap = 0;
        if (!(pb->out = malloc(need))) { free(order); segw_free(&w); pb_clear(pb); return DS_ERR_NOMEM; }
        pb->out_cap = need;
    }
    for (size_t i = 0; i < pb->ntuples; i++) {
        uint64_t t = pb->tuples[i];
        uint32_t ord = pb->docinfo[(t >> 8) & 0xffffff];
        if (ord & DS_PB_DOC_DEAD) continue;
        pb_entry *e = &pb->ents[t >> 32];
        ds_put_be32(pb->out + (e->out + e->fill++) * DS_POSTING_LEN, ord << 8 | (uint8_t)t);
    }
    /* The dictionary, and parts that are slices of pb->out. */
    size_t part_start = 0, part_len = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const pb_entry *e = &pb->ents[order[i].idx];
        size_t bytes = (size_t)e->count * DS_POSTING_LEN;
        if (part_len && part_len + bytes > DS_SEG_PART_BYTES) {
            rc = segw_put_part(&w, pb->out + part_start, part_len);
            part_start += part_len;
            part_len = 0;
        }
        if (!rc) rc = segw_entry(&w, pb->terms + e->term_off, e->term_len, part_len, e->count);
        part_len += bytes;
    }
    if (!rc && part_len) rc = segw_put_part(&w, pb->out + part_start, part_len);
    if (!rc && n) rc = segw_finish(&w, pb->min_seq, pb->min_seq + pb->ndocs - 1);
    segw_free(&w);
    free(order);
    pb_clear(pb);
    return rc;
}

/* ---- reading segments -------------------------------------------------- */

static int cmp_view(const void *a, const void *b)
{
    const ds_segview *x = a, *y = b;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

int ds__segs_load(ds_store *st, MDB_txn *txn, ds_segview **segs, size_t *n)
{
    *segs = NULL;
    *n = 0;
    MDB_cursor *cur;
    int rc = ds__lmdb_err(mdb_cursor_open(txn, st->dbi[DBI_SEGS], &cur));
    if (rc) return rc;
    size_t cap = 0;
    MDB_val k, d;
    int mrc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    while (mrc == 0) {
        const uint8_t *h = d.mv_data;
        if (k.mv_size != 8 || d.mv_size != SEGHDR_LEN || ld32(h) != SEG_VERSION) { rc = DS_ERR_STORE; break; }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            ds_segview *ns = realloc(*segs, cap * sizeof *ns);
            if (!ns) { rc = DS_ERR_NOMEM; break; }
            *segs = ns;
        }
        ds_segview *v = &(*segs)[*n];
        v->id = ds_get_be64(k.mv_data);
        v->nparts = ld32(h + 4);
        v->first_seq = ld64(h + 8);
        v->last_seq = ld64(h + 16);
        v->ndocs = ld32(h + 24);
        v->nterms = ld32(h + 28);
        uint8_t pk[PART_KEY_LEN];
        part_key(pk, v->id, 0);
        MDB_val dk = { sizeof pk, pk }, dd;
        if ((rc = ds__lmdb_err(mdb_get(txn, st->dbi[DBI_SEGDATA], &dk, &dd)))) {
            if (rc == DS_ERR_NOTFOUND) rc = DS_ERR_STORE;
            break;
        }
        if (dd.mv_size < (size_t)v->nterms * ENT_LEN || v->first_seq > v->last_seq ||
            v->last_seq > DS_SEQ_MAX || v->last_seq - v->first_seq > UINT32_MAX || v->ndocs > DS_SEG_MAX_DOCS) {
            rc = DS_ERR_STORE;
            break;
        }
        v->ents = dd.mv_data;
        v->terms = (const uint8_t *)dd.mv_data + (size_t)v->nterms * ENT_LEN;
        v->terms_len = dd.mv_size - (size_t)v->nterms * ENT_LEN;
        part_key(pk, v->id, DS_SEG_DOCS_PART);
        dk = (MDB_val){ sizeof pk, pk };
        if ((rc = ds__lmdb_err(mdb_get(txn, st->dbi[DBI_SEGDATA], &dk, &dd)))) {
            if (rc == DS_ERR_NOTFOUND) rc = DS_ERR_STORE;
            break;
        }
        if (dd.mv_size != (size_t)v->ndocs * DS_DOC_ENT_LEN) { rc = DS_ERR_STORE; break; }
        v->docs = dd.mv_data;
        (*n)++;
        mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (!rc && mrc != MDB_NOTFOUND) rc = ds__lmdb_err(mrc);
    if (rc) { free(*segs); *segs = NULL; *n = 0; return rc; }
    if (*n > 1) qsort(*segs, *n, sizeof **segs, cmp_view);
    return 0;
}

/* Term of dictionary entry |i| (bounds-checked). */
static int ent_term(const ds_segview *s, uint32_t i, const char **t, size_t *tl)
{
    const uint8_t *e = s->ents + (size_t)i * ENT_LEN;
    uint32_t off = ld32(e);
    size_t len = e[4];
    if (off > s->terms_len || len > s->terms_len - off) return DS_ERR_STORE;
    *t = (const char *)s->terms + off;
    *tl = len;
    return 0;
}

/* The postings part last read from a segment (merges read a segment's
 * terms in order, so its parts in order). */
typedef struct partcache { uint32_t part; const uint8_t *p; size_t len; } partcache;

/* Postings of dictionary entry |i| of |s| (|pc| may be NULL). */
static int ent_postings(ds_store *st, MDB_txn *txn, const ds_segview *s, uint32_t i,
                        partcache *pc, const uint8_t **post, uint32_t *count)
{
    const uint8_t *e = s->ents + (size_t)i * ENT_LEN;
    uint32_t part = ld16(e + 6), off = ld32(e + 8), cnt = ld32(e + 12);
    if (part == 0 || part > s->nparts) return DS_ERR_STORE;
    const uint8_t *data;
    size_t len;
    if (pc && pc->part == part) {
        data = pc->p;
        len = pc->len;
    } else {
        uint8_t pk[PART_KEY_LEN];
        part_key(pk, s->id, part);
        MDB_val k = { sizeof pk, pk }, d;
        int rc = ds__lmdb_err(mdb_get(txn, st->dbi[DBI_SEGDATA], &k, &d));
        if (rc) return rc == DS_ERR_NOTFOUND ? DS_ERR_STORE : rc;
        data = d.mv_data;
        len = d.mv_size;
        if (pc) *pc = (partcache){ part, data, len };
    }
    if (off > len || (size_t)cnt * DS_POSTING_LEN > len - off) return DS_ERR_STORE;
    *post = data + off;
    *count = cnt;
    return 0;
}

int ds__seg_find(ds_store *st, MDB_txn *txn, const ds_segview *s, const char *term,
                 size_t tlen, const uint8_t **post, uint32_t *count)
{
    *count = 0;
    if (post) *post = NULL;
    uint32_t lo = 0, hi = s->nterms;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const char *t;
        size_t tl;
        int rc = ent_term(s, mid, &t, &tl);
        if (rc) return rc;
        int c = cmp_term(t, tl, term, tlen);
        if (c == 0) {
            if (!post) { *count = ld32(s->ents + (size_t)mid * ENT_LEN + 12); return 0; }
            return ent_postings(st, txn, s, mid, NULL, post, count);
        }
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return 0;
}

int ds__dterm_get(ds_store *st, MDB_txn *txn, const char *term, size_t tlen, uint32_t *dead)
{
    *dead = 0;
    MDB_val k = { tlen, (void *)term }, d;
    int rc = mdb_get(txn, st->dbi[DBI_DTERM], &k, &d);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return ds__lmdb_err(rc);
    if (d.mv_size != 4) return DS_ERR_STORE;
    *dead = ds_get_be32(d.mv_data);
    return 0;
}

int ds__dead_any(ds_store *st, MDB_txn *txn, int *any)
{
    MDB_stat s;
    int rc = ds__lmdb_err(mdb_stat(txn, st->dbi[DBI_DEAD], &s));
    *any = !rc && s.ms_entries > 0;
    return rc;
}

int ds__dead_has(ds_store *st, MDB_txn *txn, uint64_t seq, int *dead)
{
    uint8_t kb[8];
    ds_put_be64(kb, seq);
    MDB_val k = { 8, kb }, d;
    int rc = mdb_get(txn, st->dbi[DBI_DEAD], &k, &d);
    *dead = rc == 0;
    return rc == MDB_NOTFOUND ? 0 : ds__lmdb_err(rc);
}

/* Walks the union of the segments' dictionaries in term order. */
typedef struct dictwalk {
    const ds_segview *segs;
    size_t n;
    uint32_t *pos;
} dictwalk;

/* Next term of the union: *t, *tl and, for each segment holding it,
 * has[j] = 1 (others 0).  Returns 1 while there is a term, 0 at the end,
 * negative on a corrupt dictionary. */
static int dictwalk_next(dictwalk *w, const char **t, size_t *tl, uint8_t *has)
{
    const char *best = NULL;
    size_t bl = 0;
    for (size_t j = 0; j < w->n; j++) {
        has[j] = 0;
        if (w->pos[j] >= w->segs[j].nterms) continue;
        const char *x;
        size_t xl;
        int rc = ent_term(&w->segs[j], w->pos[j], &x, &xl);
        if (rc) return rc;
        int c = best ? cmp_term(x, xl, best, bl) : -1;
        if (c < 0) {
            for (size_t i = 0; i < j; i++) has[i] = 0;
            best = x;
            bl = xl;
            has[j] = 1;
        } else if (c == 0) {
            has[j] = 1;
        }
    }
    if (!best) return 0;
    for (size_t j = 0; j < w->n; j++) if (has[j]) w->pos[j]++;
    *t = best;
    *tl = bl;
    return 1;
}

int ds__index_term_count(ds_store *st, MDB_txn *txn, uint64_t *out)
{
    *out = 0;
    ds_segview *segs;
    size_t n;
    int rc = ds__segs_load(st, txn, &segs, &n);
    if (rc) return rc;
    int anydead = 0;
    uint32_t *pos = calloc(n ? n : 1, sizeof *pos);
    uint8_t *has = calloc(n ? n : 1, 1);
    if (!pos || !has) rc = DS_ERR_NOMEM;
    if (!rc) rc = ds__dead_any(st, txn, &anydead);
    dictwalk w = { segs, n, pos };
    uint64_t count = 0;
    while (!rc) {
        const char *t;
        size_t tl;
        int r = dictwalk_next(&w, &t, &tl, has);
        if (r <= 0) { rc = r; break; }
        if (!anydead) { count++; continue; }
        uint64_t total = 0;
        for (size_t j = 0; j < n; j++)
            if (has[j]) total += ld32(segs[j].ents + (size_t)(pos[j] - 1) * ENT_LEN + 12);
        uint32_t dead;
        if ((rc = ds__dterm_get(st, txn, t, tl, &dead))) break;
        if (total > dead) count++;
    }
    free(pos);
    free(has);
    free(segs);
    if (!rc) *out = count;
    return rc;
}

/* ---- merging ----------------------------------------------------------- */

static unsigned size_class(uint32_t ndocs)
{
    unsigned c = 0;
    while (ndocs >= DS_SEG_FANOUT) { ndocs /= DS_SEG_FANOUT; c++; }
    return c;
}

/* Dead documents within [lo, hi], copied out of the database: their seqs
 * (sorted) and their term lists. */
typedef struct deadset {
    uint64_t *seq;
    ds_buf *terms;
    size_t n, cap;
} deadset;

static void deadset_free(deadset *d)
{
    for (size_t i = 0; i < d->n; i++) ds_buf_free(&d->terms[i]);
    free(d->seq);
    free(d->terms);
    memset(d, 0, sizeof *d);
}

static int deadset_load(ds_wtxn *tx, uint64_t lo, uint64_t hi, int with_terms, deadset *out)
{
    memset(out, 0, sizeof *out);
    MDB_cursor *cur;
    int rc = ds__lmdb_err(mdb_cursor_open(tx->txn, tx->st->dbi[DBI_DEAD], &cur));
    if (rc) return rc;
    uint8_t kb[8];
    ds_put_be64(kb, lo);
    MDB_val k = { 8, kb }, d;
    int mrc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    while (mrc == 0) {
        if (k.mv_size != 8) { rc = DS_ERR_STORE; break; }
        uint64_t s = ds_get_be64(k.mv_data);
        if (s > hi) break;
        if (out->n == out->cap) {
            size_t nc = out->cap ? out->cap * 2 : 64;
            uint64_t *ns = realloc(out->seq, nc * sizeof *ns);
            if (!ns) { rc = DS_ERR_NOMEM; break; }
            out->seq = ns;
            ds_buf *nt = realloc(out->terms, nc * sizeof *nt);
            if (!nt) { rc = DS_ERR_NOMEM; break; }
            out->terms = nt;
            out->cap = nc;
        }
        memset(&out->terms[out->n], 0, sizeof *out->terms);
        out->seq[out->n] = s;
        if (with_terms && (rc = ds_buf_append(&out->terms[out->n], d.mv_data, d.mv_size))) break;
        out->n++;
        mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (!rc && mrc && mrc != MDB_NOTFOUND) rc = ds__lmdb_err(mrc);
    if (rc) deadset_free(out);
    return rc;
}

static int is_dead(const deadset *d, uint64_t seq)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (d->seq[mid] < seq) lo = mid + 1; else hi = mid;
    }
    return lo < d->n && d->seq[lo] == seq;
}

static int dterm_add(ds_wtxn *tx, const char *term, size_t tlen, int delta)
{
    uint32_t v;
    int rc = ds__dterm_get(tx->st, tx->txn, term, tlen, &v);
    if (rc) return rc;
    if (delta < 0 && v == 0) return 0;
    v = delta < 0 ? v - 1 : v + 1;
    if (v == 0) return ds__del_raw(tx, DBI_DTERM, term, tlen);
    uint8_t b[4];
    ds_put_be32(b, v);
    return ds__put_raw(tx, DBI_DTERM, term, tlen, b, 4);
}

static int drop_segment(ds_wtxn *tx, const ds_segview *s)
{
    uint8_t pk[PART_KEY_LEN], sk[8];
    int rc = 0;
    for (uint32_t p = 0; p <= s->nparts && !rc; p++) {
        part_key(pk, s->id, p);
        rc = ds__del_raw(tx, DBI_SEGDATA, pk, sizeof pk);
    }
    part_key(pk, s->id, DS_SEG_DOCS_PART);
    if (!rc) rc = ds__del_raw(tx, DBI_SEGDATA, pk, sizeof pk);
    ds_put_be64(sk, s->id);
    return rc ? rc : ds__del_raw(tx, DBI_SEGS, sk, 8);
}

/* The merged docs table: the live documents of |segs[0..n)| in order.
 * When some are dropped, *map (malloc'd) receives each input document's
 * new ordinal (UINT32_MAX = dropped), indexed by base[j] + ordinal in
 * segment j; else *map = NULL and the ordinals just shift by base[j].
 * More live documents than the docs table has room for (at most
 * DS_SEG_MAX_DOCS) is DS_ERR_TOOLARGE: the inputs may hold more, dead
 * ones included (a compaction). */
static int merge_docs(segw *w, const ds_segview *segs, size_t n, const deadset *dead,
                      const uint32_t *base, uint32_t **map)
{
    *map = NULL;
    uint64_t lo = segs[0].first_seq, prev = 0;
    uint32_t *m = NULL;
    if (dead->n && !(m = malloc(((size_t)base[n] ? base[n] : 1) * sizeof *m))) return DS_ERR_NOMEM;
    int dropped = 0;
    for (size_t j = 0; j < n; j++) {
        const ds_segview *s = &segs[j];
        for (uint32_t i = 0; i < s->ndocs; i++) {
            uint64_t seq = DS_SEG_DOC_SEQ(s, i);
            /* increasing, within its segment and the merged span */
            if (seq > s->last_seq || seq < lo || seq - lo > UINT32_MAX || (w->ndocs + dropped && seq <= prev)) {
                free(m);
                return DS_ERR_STORE;
            }
            prev = seq;
            if (m && is_dead(dead, seq)) {
                m[base[j] + i] = UINT32_MAX;
                dropped++;
                continue;
            }
            if (w->ndocs == w->docs_cap) {
                free(m);
                return DS_ERR_TOOLARGE;
            }
            if (m) m[base[j] + i] = w->ndocs;
            segw_doc(w, (uint32_t)(seq - lo), DS_SEG_DOC_LEN(s, i));
        }
    }
    if (dropped) *map = m; else free(m);
    return 0;
}

/* Merges the adjacent segments |segs[0..n)| into one, dropping the
 * postings and docs-table entries of dead documents and their dead
 * records.  The caller checked the result fits (merge_fits, compact_pick):
 * its live documents within DS_SEG_MAX_DOCS, all of them within
 * UINT32_MAX (ordinal map indexes). */
static int merge_segments(ds_wtxn *tx, const ds_segview *segs, size_t n)
{
    uint64_t lo = segs[0].first_seq, hi = segs[n - 1].last_seq;
    deadset dead;
    int rc = deadset_load(tx, lo, hi, 1, &dead);
    if (rc) return rc;
    uint32_t *pos = calloc(n, sizeof *pos);
    uint8_t *has = calloc(n, 1);
    const uint8_t **post = calloc(n, sizeof *post);
    uint32_t *cnt = calloc(n, sizeof *cnt);
    partcache *pcs = calloc(n, sizeof *pcs);
    uint32_t *base = calloc(n + 1, sizeof *base), *map = NULL;
    segw w;
    segw_init(&w, tx);
    if (!pos || !has || !post || !cnt || !pcs || !base) rc = DS_ERR_NOMEM;
    uint64_t ndocs = 0;
    for (size_t j = 0; j < n && !rc; j++) {
        base[j] = (uint32_t)ndocs;
        ndocs += segs[j].ndocs;
        if (ndocs > UINT32_MAX) rc = DS_ERR_TOOLARGE;
    }
    if (!rc) base[n] = (uint32_t)ndocs;
    /* Dead documents are dropped: the result may have room for fewer. */
    if (!rc) rc = segw_docs_reserve(&w, ndocs < DS_SEG_MAX_DOCS ? ndocs : DS_SEG_MAX_DOCS);
    if (!rc) rc = merge_docs(&w, segs, n, &dead, base, &map);
    dictwalk dw = { segs, n, pos };
    while (!rc) {
        const char *t;
        size_t tl;
        int r = dictwalk_next(&dw, &t, &tl, has);
        if (r <= 0) { rc = r; break; }
        uint64_t total = 0;
        for (size_t j = 0; j < n && !rc; j++) {
            cnt[j] = 0;
            if (!has[j]) continue;
            rc = ent_postings(tx->st, tx->txn, &segs[j], pos[j] - 1, &pcs[j], &post[j], &cnt[j]);
            if (rc || !map) { total += cnt[j]; continue; }
            for (uint32_t i = 0; i < cnt[j] && !rc; i++) {
                uint32_t ord = DS_POST_ORD(post[j] + (size_t)i * DS_POSTING_LEN);
                if (ord >= segs[j].ndocs) rc = DS_ERR_STORE;
                else total += map[base[j] + ord] != UINT32_MAX;
            }
        }
        if (rc) break;
        if (total == 0) continue;                   /* every holder is dead */
        if (total > UINT32_MAX) { rc = DS_ERR_TOOLARGE; break; }
        uint8_t *dst;
        if ((rc = segw_term(&w, t, tl, (uint32_t)total, &dst))) break;
        for (size_t j = 0; j < n && !rc; j++) {
            if (!cnt[j]) continue;                  /* post[j] may be NULL */
            const uint8_t *p = post[j], *end = p + (size_t)cnt[j] * DS_POSTING_LEN;
            uint32_t nd = segs[j].ndocs;
            if (!map) {                             /* renumber: shift by base[j] */
                uint32_t add = base[j] << 8;
                for (; p < end; p += DS_POSTING_LEN, dst += DS_POSTING_LEN) {
                    uint32_t v = DS_POST_WORD(p);
                    if ((v >> 8) >= nd) { rc = DS_ERR_STORE; break; }
                    ds_put_be32(dst, v + add);
                }
                continue;
            }
            for (; p < end; p += DS_POSTING_LEN) {  /* ordinals checked above */
                uint32_t ord = map[base[j] + DS_POST_ORD(p)];
                if (ord == UINT32_MAX) continue;
                ds_put_be32(dst, ord << 8 | DS_POST_TF(p));
                dst += DS_POSTING_LEN;
            }
        }
    }
    /* Writing is done; only now may the sources' pages change. */
    if (!rc) rc = segw_finish(&w, lo, hi);
    for (size_t j = 0; j < n && !rc; j++) rc = drop_segment(tx, &segs[j]);
    for (size_t i = 0; i < dead.n && !rc; i++) {
        const char *p = (const char *)dead.terms[i].data, *end = p + dead.terms[i].len;
        while (p < end && !rc) {
            const char *z = memchr(p, 0, (size_t)(end - p));
            size_t l = z ? (size_t)(z - p) : (size_t)(end - p);
            if (l) rc = dterm_add(tx, p, l, -1);
            p += l + 1;
        }
        uint8_t kb[8];
        ds_put_be64(kb, dead.seq[i]);
        if (!rc) rc = ds__del_raw(tx, DBI_DEAD, kb, 8);
    }
    if (!rc) tx->c.index_gen++;
    segw_free(&w);
    free(pos);
    free(has);
    free(post);
    free(cnt);
    free(pcs);
    free(base);
    free(map);
    deadset_free(&dead);
    return rc;
}

/* Whether merging |segs[0..n)| makes a valid segment: at most
 * DS_SEG_MAX_DOCS (or st->seg_max_docs) documents (counting dead ones,
 * which the merge will drop: a bound known without reading the dead
 * table) and a seq span that 32-bit docs-table offsets cover. */
static int merge_fits(const ds_store *st, const ds_segview *segs, size_t n)
{
    uint64_t docs = 0, max = st->seg_max_docs ? st->seg_max_docs : DS_SEG_MAX_DOCS;
    for (size_t j = 0; j < n; j++) docs += segs[j].ndocs;
    return docs <= max && docs <= DS_SEG_MAX_DOCS &&
           segs[n - 1].last_seq - segs[0].first_seq <= UINT32_MAX;
}

/* dead[j] = the dead records within segs[j]'s seq range (one walk over
 * the records of the committed range, capped at the segment's documents:
 * more would be damage, which the merge reports). */
static int dead_per_segment(ds_wtxn *tx, const ds_segview *segs, size_t n, uint64_t *dead)
{
    MDB_cursor *cur;
    int rc = ds__lmdb_err(mdb_cursor_open(tx->txn, tx->st->dbi[DBI_DEAD], &cur));
    if (rc) return rc;
    uint8_t kb[8];
    ds_put_be64(kb, segs[0].first_seq);
    MDB_val k = { 8, kb }, d;
    size_t j = 0;
    int mrc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        if (k.mv_size != 8) { rc = DS_ERR_STORE; break; }
        uint64_t s = ds_get_be64(k.mv_data);
        while (j < n && segs[j].last_seq < s) j++;
        if (j == n) break;
        if (s >= segs[j].first_seq && dead[j] < segs[j].ndocs) dead[j]++;
    }
    mdb_cursor_close(cur);
    if (!rc && mrc && mrc != MDB_NOTFOUND) rc = ds__lmdb_err(mrc);
    return rc;
}

/* The compaction, for a commit whose tiered rule merges nothing: once the
 * dead of the committed segments |segs[0..n)| are at least
 * 1/DS_SEG_DEAD_SHARE of their documents, merges the adjacent segments
 * holding the most dead (fewest documents on a tie) among those that
 * (a) pay: at least 1/DS_SEG_DEAD_SHARE of their documents are dead;
 * (b) fit: their live documents make one segment (DS_SEG_MAX_DOCS, or
 *     st->seg_max_docs), their seq span 32-bit offsets, and all their
 *     documents at most twice that limit (the ordinal map of the merge,
 *     4 bytes per input document, stays within twice a tiered merge's).
 * In a store whose live documents fit one segment that is every segment
 * holding dead, as for id/source runs; in a larger one, the adjacent
 * segments around the densest dead that fit.
 *
 * The trigger costs one mdb_stat (returning at once when nothing is
 * dead) and a step over each of this transaction's own flushed and
 * deleted documents, if any.  The walk counting each segment's dead
 * comes only once it fires, and a merge then follows (below).
 *
 * It cannot loop, and never rewrites for nothing.  When it fires (dead D
 * > 0, D * DS_SEG_DEAD_SHARE >= documents T), some segment holding dead
 * pays alone (if every segment with d_j > 0 had d_j * 8 < n_j, summing
 * would give D * 8 < T), and a segment alone always fits (it holds at
 * most DS_SEG_MAX_DOCS documents and a valid span), so a range is
 * chosen and its merge drops all its dead records: D falls by at least
 * one each time, and only deletions raise it.  Each compaction rewrites
 * at most DS_SEG_DEAD_SHARE documents per dead one it drops, each dead
 * one from one deletion: all compactions together rewrite at most 8
 * documents per deletion, however often they run.  (Two cases would
 * cost the walk without a merge, never a rewrite for nothing: a segment
 * larger than a test's lowered st->seg_max_docs, and stray records
 * between segments, which no code writes.) */
static int compact_pick(ds_wtxn *tx, const ds_segview *segs, size_t n, size_t *from, size_t *count)
{
    *from = *count = 0;
    if (!n) return 0;
    uint64_t total = 0, dead;
    /* Not those of documents this transaction wrote as a segment of its
     * own (past PB_FLUSH_BYTES) and deleted again: a merge now could not
     * drop them.  Documents put and deleted while still buffered leave no
     * record at all. */
    int rc = ds__dead_in_range(tx->txn, tx->st->dbi[DBI_DEAD], segs[0].first_seq,
                               segs[n - 1].last_seq, &dead);
    if (rc || !dead) return rc;
    for (size_t j = 0; j < n; j++) total += segs[j].ndocs;
    /* Dead records are of distinct seqs <= DS_SEQ_MAX < 2^40: no overflow. */
    if (dead * DS_SEG_DEAD_SHARE < total) return 0;
    uint64_t *d = calloc(n, sizeof *d);
    if (!d) return DS_ERR_NOMEM;
    rc = dead_per_segment(tx, segs, n, d);
    uint64_t max = tx->st->seg_max_docs ? tx->st->seg_max_docs : DS_SEG_MAX_DOCS;
    if (max > DS_SEG_MAX_DOCS) max = DS_SEG_MAX_DOCS;
    uint64_t best_dead = 0, best_docs = 0;
    for (size_t a = 0; a < n && !rc; a++) {
        uint64_t docs = 0, dd = 0;
        for (size_t b = a; b < n; b++) {
            docs += segs[b].ndocs;
            dd += d[b];
            /* Documents, live documents and span only grow with b. */
            if (docs - dd > max || docs > 2 * max || segs[b].last_seq - segs[a].first_seq > UINT32_MAX)
                break;
            if (!dd || dd * DS_SEG_DEAD_SHARE < docs) continue;
            if (dd > best_dead || (dd == best_dead && docs < best_docs)) {
                best_dead = dd;
                best_docs = docs;
                *from = a;
                *count = b - a + 1;
            }
        }
    }
    free(d);
    return rc;
}

/* Chooses at most one merge among the segments committed before this
 * transaction: for the smallest size class c such that the newest run of
 * segments of class <= c holds DS_SEG_FANOUT segments of class exactly c,
 * that run (each commit adds a small segment at the end, so the run must
 * be allowed to include smaller ones); else a compaction when enough
 * documents are dead (compact_pick).  Counting only class c matters: one
 * large segment followed by a few small ones is not a full tier, and
 * merging it would rewrite the large segment every few commits. */
static int maybe_merge(ds_wtxn *tx)
{
    ds_segview *segs;
    size_t n;
    int rc = ds__segs_load(tx->st, tx->txn, &segs, &n);
    if (rc) return rc;
    size_t clean = 0;
    while (clean < n && segs[clean].id < tx->first_new_seg) clean++;
    size_t from = 0, count = 0;
    unsigned c = 0;
    for (size_t i = clean; i > 0 && !count; ) {
        /* extend the run back over segments of class <= c */
        while (i > 0 && size_class(segs[i - 1].ndocs) <= c) i--;
        size_t same = 0;
        for (size_t j = i; j < clean; j++) same += size_class(segs[j].ndocs) == c;
        if (same >= DS_SEG_FANOUT) {
            /* Too large a result (documents, seq span): leave out the
             * oldest while a full tier remains, else merge nothing (a
             * larger class's run would hold this one). */
            from = i;
            while (!merge_fits(tx->st, segs + from, clean - from)) {
                int is_c = size_class(segs[from].ndocs) == c;
                if (is_c && same == DS_SEG_FANOUT) break;
                same -= (size_t)is_c;
                from++;
            }
            if (merge_fits(tx->st, segs + from, clean - from)) count = clean - from;
            break;
        }
        if (i == 0) break;
        c = size_class(segs[i - 1].ndocs);       /* the next larger class met */
    }
    if (!count) rc = compact_pick(tx, segs, clean, &from, &count);
    if (!rc && count) rc = merge_segments(tx, segs + from, count);
    free(segs);
    return rc;
}

int ds__index_commit(ds_wtxn *tx)
{
    int rc = ahead_settle(tx);
    if (!rc) rc = drain(tx);
    if (!rc) rc = maybe_merge(tx);
    if (!rc && tx->st->pb.ntuples) rc = write_buffer(tx);
    return rc;
}

/* ---- removal ----------------------------------------------------------- */

typedef struct rm_ctx {
    ds_buf terms;                  /* the document's terms, NUL-terminated */
    uint32_t ntok;
} rm_ctx;

static int rm_collect(const char *term, size_t len, void *ud)
{
    rm_ctx *r = ud;
    r->ntok++;
    int rc = ds_buf_append(&r->terms, term, len + 1);      /* with its NUL */
    return rc;
}

/* Sorts the NUL-separated terms of |b| and drops duplicates, in place. */
static int unique_terms(ds_buf *b, size_t *count)
{
    size_t n = 0;
    for (size_t i = 0; i < b->len; i++) n += b->data[i] == 0;
    *count = 0;
    if (!n) return 0;
    char **v = malloc(n * sizeof *v);
    char *copy = malloc(b->len);
    if (!v || !copy) { free(v); free(copy); return DS_ERR_NOMEM; }
    memcpy(copy, b->data, b->len);
    size_t k = 0;
    for (char *p = copy; p < copy + b->len; p += strlen(p) + 1) v[k++] = p;
    for (size_t i = 1; i < k; i++) {          /* insertion sort: documents are short */
        char *x = v[i];
        size_t j = i;
        while (j > 0 && strcmp(v[j - 1], x) > 0) { v[j] = v[j - 1]; j--; }
        v[j] = x;
    }
    b->len = 0;
    for (size_t i = 0; i < k; i++) {
        if (i && strcmp(v[i], v[i - 1]) == 0) continue;
        size_t l = strlen(v[i]) + 1;
        memcpy(b->data + b->len, v[i], l);
        b->len += l;
        (*count)++;
    }
    free(v);
    free(copy);
    return 0;
}

int ds__index_remove(ds_wtxn *tx, uint64_t seq, const char *content, size_t len, uint32_t *doclen)
{
    ds_postbuf *pb = &tx->st->pb;
    *doclen = 0;
    int rc = ahead_settle(tx);
    if (!rc) rc = drain(tx);            /* the buffer and the tokenizer are ours again */
    if (rc) return rc;
    if (pb->min_seq && seq >= pb->min_seq && seq - pb->min_seq < pb->ndocs) {
        /* Still buffered: its tuples are skipped when the buffer is written. */
        uint32_t *info = &pb->docinfo[seq - pb->min_seq];
        if (*info & DS_PB_DOC_DEAD) return 0;
        *doclen = *info & 0xffff;
        *info |= DS_PB_DOC_DEAD;
        pb->any_dead = 1;
        return 0;
    }
    /* In a segment: mark it dead and count it against its terms. */
    rm_ctx r = { { 0 }, 0 };
    rc = ds_tokenize(tx->st->tok, content, len, rm_collect, &r);
    size_t nterms = 0;
    if (!rc) rc = unique_terms(&r.terms, &nterms);
    if (!rc && nterms) {
        uint8_t kb[8];
        ds_put_be64(kb, seq);
        rc = ds__put_raw(tx, DBI_DEAD, kb, 8, r.terms.data, r.terms.len);
        for (const char *p = (const char *)r.terms.data; !rc && p < (const char *)r.terms.data + r.terms.len;
             p += strlen(p) + 1)
            rc = dterm_add(tx, p, strlen(p), +1);
        if (!rc) tx->c.index_gen++;
    }
    ds_buf_free(&r.terms);
    *doclen = r.ntok > 65535 ? 65535 : r.ntok;
    return rc;
}
