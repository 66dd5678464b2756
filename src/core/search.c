/*
 * search.c - the read side of the search index: query parsing, combined
 * statistics over several stores, and BM25 top-k with MaxScore early
 * termination (see docs/search.md).
 *
 * Posting lists are read zero-copy: a term's list in each index segment
 * is one contiguous run in the memory map and becomes a piece of an
 * in-memory iterator (segments cover increasing sequence ranges, so the
 * pieces concatenate in order).  A posting holds a document ordinal and
 * the term frequency; the segment's docs table maps the ordinal to the
 * document's seq and length, so iterators still move in seq order and
 * seek by galloping over the fixed-stride postings.  MaxScore orders the
 * query terms by their best possible contribution; once the k-th best
 * score exceeds the sum of the weakest terms' bounds, documents holding
 * only those terms cannot enter the top k, so candidates come from the
 * strong terms only and the weak lists are merely probed.
 */
#include "ds/search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/store_int.h"
#include "core/util.h"

#define BM25_K1 1.2
#define BM25_B 0.75
#define QUERY_MAX_TERMS 1024
#define RELATED_TERMS 24

struct ds_query {
    size_t n;
    char **terms;
    uint32_t *qtf;
};

/* ---- queries ----------------------------------------------------------- */

static _Thread_local ds_tokenizer *query_tok;

typedef struct qb { ds_query *q; size_t cap; } qb;

static int add_qterm(const char *term, size_t len, void *ud)
{
    qb *b = ud;
    ds_query *q = b->q;
    for (size_t i = 0; i < q->n; i++)
        if (strlen(q->terms[i]) == len && memcmp(q->terms[i], term, len) == 0) {
            q->qtf[i]++;
            return 0;
        }
    if (q->n == QUERY_MAX_TERMS) return 0;
    if (q->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 8;
        char **t = realloc(q->terms, nc * sizeof *t);
        if (!t) return DS_ERR_NOMEM;
        q->terms = t;
        uint32_t *f = realloc(q->qtf, nc * sizeof *f);
        if (!f) return DS_ERR_NOMEM;
        q->qtf = f;
        b->cap = nc;
    }
    if (!(q->terms[q->n] = strndup(term, len))) return DS_ERR_NOMEM;
    q->qtf[q->n++] = 1;
    return 0;
}

int ds_query_parse(const char *text, size_t len, ds_query **out)
{
    *out = NULL;
    if (!query_tok) {
        int rc = ds_tokenizer_new(&query_tok);
        if (rc) return rc;
    }
    ds_query *q = calloc(1, sizeof *q);
    if (!q) return DS_ERR_NOMEM;
    qb b = { q, 0 };
    int rc = ds_tokenize(query_tok, text, len, add_qterm, &b);
    if (!rc && q->n == 0) rc = DS_ERR_EMPTY;
    if (rc) { ds_query_free(q); return rc; }
    *out = q;
    return 0;
}

void ds_query_free(ds_query *q)
{
    if (!q) return;
    for (size_t i = 0; i < q->n; i++) free(q->terms[i]);
    free(q->terms);
    free(q->qtf);
    free(q);
}

size_t ds_query_nterms(const ds_query *q) { return q->n; }
const char *ds_query_term(const ds_query *q, size_t i) { return i < q->n ? q->terms[i] : NULL; }

/* ---- statistics -------------------------------------------------------- */

int ds_search_stats_init(ds_search_stats *s, const ds_query *q)
{
    memset(s, 0, sizeof *s);
    s->nterms = q->n;
    s->df = calloc(q->n ? q->n : 1, sizeof *s->df);
    return s->df ? 0 : DS_ERR_NOMEM;
}

void ds_search_stats_free(ds_search_stats *s)
{
    free(s->df);
    memset(s, 0, sizeof *s);
}

int ds_search_stats_add(ds_store *st, const ds_query *q, ds_search_stats *acc)
{
    if (acc->nterms != q->n) return DS_ERR_INVALID;
    MDB_txn *txn;
    int rc = ds__store_begin(st, MDB_RDONLY, &txn);
    if (rc) return rc;
    ds_counters c;
    ds_segview *segs = NULL;
    size_t nseg = 0;
    rc = ds__counters_read(st, txn, &c);
    if (!rc) rc = ds__segs_load(st, txn, &segs, &nseg);
    for (size_t i = 0; i < q->n && !rc; i++) {
        size_t tl = strlen(q->terms[i]);
        uint64_t df = 0;
        for (size_t j = 0; j < nseg && !rc; j++) {
            uint32_t cnt;
            rc = ds__seg_find(st, txn, &segs[j], q->terms[i], tl, NULL, &cnt);
            df += cnt;
        }
        uint32_t dead = 0;
        if (!rc && df) rc = ds__dterm_get(st, txn, q->terms[i], tl, &dead);
        if (!rc) acc->df[i] += df > dead ? df - dead : 0;
    }
    free(segs);
    mdb_txn_abort(txn);
    if (rc) return rc;
    acc->doc_count += c.docs;
    acc->total_len += c.total_len;
    return 0;
}

static double idf(const ds_search_stats *s, size_t i)
{
    double N = (double)s->doc_count, df = (double)s->df[i];
    return log(1.0 + (N - df + 0.5) / (df + 0.5));
}

void ds_query_prune(ds_query *q, ds_search_stats *stats, size_t max_terms)
{
    /* Selection sort by weight, unseen terms last; small n. */
    size_t keep = 0;
    for (size_t i = 0; i < q->n && keep < max_terms; i++) {
        size_t best = SIZE_MAX;
        double bw = -1;
        for (size_t j = keep; j < q->n; j++) {
            double w = stats->df[j] ? idf(stats, j) * q->qtf[j] : -0.5;
            if (w > bw) { bw = w; best = j; }
        }
        if (best == SIZE_MAX || bw < 0) break;
        char *t = q->terms[keep]; q->terms[keep] = q->terms[best]; q->terms[best] = t;
        uint32_t f = q->qtf[keep]; q->qtf[keep] = q->qtf[best]; q->qtf[best] = f;
        uint64_t d = stats->df[keep]; stats->df[keep] = stats->df[best]; stats->df[best] = d;
        keep++;
    }
    for (size_t i = keep; i < q->n; i++) free(q->terms[i]);
    q->n = keep;
    stats->nterms = keep;
}

/* ---- posting iterators ------------------------------------------------- */

/* A term's postings in one segment, and that segment (its docs table). */
typedef struct seg { const uint8_t *p; size_t n; const ds_segview *s; } seg;

typedef struct piter {
    seg *segs;
    size_t nseg, si, pi;
    uint64_t cur;          /* current document seq, UINT64_MAX at the end */
    const uint8_t *doc;    /* current document's docs-table entry */
    double w;              /* idf * query term frequency */
    double ub;             /* upper bound of the contribution */
    int bad;               /* met an ordinal outside its docs table */
} piter;

/* Seq of posting |i| of |s|; UINT64_MAX (never a seq) for an ordinal
 * outside the docs table, which only a corrupt segment holds. */
static inline uint64_t seq_at(const seg *s, size_t i)
{
    uint32_t ord = DS_POST_ORD(s->p + i * DS_POSTING_LEN);
    return ord < s->s->ndocs ? DS_SEG_DOC_SEQ(s->s, ord) : UINT64_MAX;
}

static const uint8_t *pi_post(const piter *it)
{
    return it->segs[it->si].p + it->pi * DS_POSTING_LEN;
}

/* The current posting's BM25 term: tf from the posting, dl from the docs
 * table (the same integers as the version-1 postings held). */
static double pi_score(const piter *it, double K0, double Kb)
{
    double tf = DS_POST_TF(pi_post(it)), dl = (double)((it->doc[4] << 8) | it->doc[5]);
    return it->w * tf * (BM25_K1 + 1) / (tf + K0 + Kb * dl);
}

static void pi_set(piter *it)
{
    if (it->si >= it->nseg) { it->cur = UINT64_MAX; return; }
    const seg *s = &it->segs[it->si];
    uint32_t ord = DS_POST_ORD(pi_post(it));
    if (ord >= s->s->ndocs) { it->bad = 1; it->cur = UINT64_MAX; return; }   /* ends the list */
    it->doc = DS_SEG_DOC(s->s, ord);
    it->cur = s->s->first_seq + DS_POST_WORD(it->doc);
}

static void pi_next(piter *it)
{
    if (++it->pi == it->segs[it->si].n) { it->si++; it->pi = 0; }
    pi_set(it);
}

/* First posting at index >= |from| of |s| whose seq >= |target| (s->n if
 * none): galloping, since successive targets are usually close. */
static size_t seg_seek(const seg *s, size_t from, uint64_t target)
{
    size_t lo = from, hi, step = 1;
    for (;;) {                    /* postings before lo are < target */
        size_t probe = lo + step - 1;
        if (probe >= s->n) { hi = s->n; break; }
        if (seq_at(s, probe) >= target) { hi = probe; break; }
        lo = probe + 1;
        step *= 2;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seq_at(s, mid) < target) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static void pi_seek(piter *it, uint64_t target)
{
    if (it->cur >= target) return;
    size_t old_si = it->si;
    size_t lo = it->si, hi = it->nseg;    /* first segment whose last >= target */
    if (seq_at(&it->segs[lo], it->segs[lo].n - 1) < target) {
        lo++;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            const seg *s = &it->segs[mid];
            if (seq_at(s, s->n - 1) < target) lo = mid + 1; else hi = mid;
        }
    }
    it->si = lo;
    if (lo == it->nseg) { it->cur = UINT64_MAX; return; }
    it->pi = seg_seek(&it->segs[lo], lo == old_si ? it->pi : 0, target);
    if (it->pi == it->segs[lo].n) { it->bad = 1; it->cur = UINT64_MAX; return; }   /* corrupt */
    pi_set(it);
}

static int pi_add_seg(piter *it, size_t *cap, const uint8_t *p, size_t n, const ds_segview *sv)
{
    if (!n) return 0;
    if (it->nseg == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        seg *s = realloc(it->segs, *cap * sizeof *s);
        if (!s) return DS_ERR_NOMEM;
        it->segs = s;
    }
    it->segs[it->nseg++] = (seg){ p, n, sv };
    return 0;
}

/* Loads |term|'s posting list (zero-copy): its run in each index
 * segment, in sequence order. */
static int pi_load(ds_store *st, MDB_txn *txn, const ds_segview *segs, size_t nseg,
                   const char *term, piter *it)
{
    memset(it, 0, sizeof *it);
    size_t tlen = strlen(term), cap = 0;
    for (size_t j = 0; j < nseg; j++) {
        const uint8_t *p;
        uint32_t n;
        int rc = ds__seg_find(st, txn, &segs[j], term, tlen, &p, &n);
        if (!rc) rc = pi_add_seg(it, &cap, p, n, &segs[j]);
        if (rc) return rc;
    }
    pi_set(it);
    return 0;
}

/* ---- top-k heap -------------------------------------------------------- */

typedef struct cand { double score; uint64_t seq; } cand;

/* a ranks below b: lower score, or equal score and older. */
static int below(const cand *a, const cand *b)
{
    return a->score < b->score || (a->score == b->score && a->seq < b->seq);
}

static void heap_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && below(&h[l], &h[m])) m = l;
        if (r < n && below(&h[r], &h[m])) m = r;
        if (m == i) return;
        cand t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

static void heap_push(cand *h, size_t *n, size_t k, cand c)
{
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = c;
        while (i && below(&h[i], &h[(i - 1) / 2])) {
            cand t = h[i]; h[i] = h[(i - 1) / 2]; h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (below(&h[0], &c)) {
        h[0] = c;
        heap_down(h, *n, 0);
    }
}

static int cmp_cand_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return below(x, y) ? 1 : below(y, x) ? -1 : 0;
}

static int cmp_ub(const void *a, const void *b)
{
    const piter *x = a, *y = b;
    return x->ub < y->ub ? -1 : x->ub > y->ub;
}

/* ---- search ------------------------------------------------------------ */

static int read_node(ds_store *st, MDB_txn *txn, uint64_t seq, ds_node *out)
{
    uint8_t kb[8];
    ds_put_be64(kb, seq);
    MDB_val k = { 8, kb }, d;
    ds_node_init(out);
    int rc = mdb_get(txn, st->dbi[DBI_NODES], &k, &d);
    if (rc) return ds__lmdb_err(rc);
    rc = ds_node_decode(d.mv_data, d.mv_size, out);
    if (rc) return rc == DS_ERR_NOMEM ? rc : DS_ERR_STORE;
    out->seq = seq;
    return 0;
}

static int passes(ds_store *st, MDB_txn *txn, const ds_search_filter *f, uint64_t seq, int *ok)
{
    ds_node n;
    int rc = read_node(st, txn, seq, &n);
    if (rc) return rc;
    *ok = (!f->ns || strcmp(n.ns, f->ns) == 0) &&
          (!f->project || ds_path_within(n.project, f->project)) &&
          (!f->exclude_id || memcmp(n.id, f->exclude_id, DS_ID_LEN) != 0);
    ds_node_free(&n);
    return 0;
}

int ds_search_store(ds_store *st, const ds_query *q, const ds_search_stats *stats,
                    const ds_search_filter *filter, size_t k, ds_hit *hits, size_t *nhits)
{
    *nhits = 0;
    if (k == 0) return 0;
    if (stats->nterms != q->n) return DS_ERR_INVALID;
    int filtered = filter && (filter->ns || filter->project || filter->exclude_id);
    double avgdl = stats->doc_count ? (double)stats->total_len / (double)stats->doc_count : 1.0;
    if (avgdl <= 0) avgdl = 1.0;
    const double K0 = BM25_K1 * (1 - BM25_B), Kb = BM25_K1 * BM25_B / avgdl;
    double max_total = 0;
    for (size_t i = 0; i < q->n; i++)
        if (stats->df[i]) max_total += idf(stats, i) * q->qtf[i] * (BM25_K1 + 1);
    if (max_total <= 0) return 0;

    MDB_txn *txn;
    int rc = ds__store_begin(st, MDB_RDONLY, &txn);
    if (rc) return rc;
    ds_segview *segs = NULL;
    size_t nseg = 0;
    int anydead = 0;
    piter *its = calloc(q->n, sizeof *its);
    cand *heap = calloc(k, sizeof *heap);
    double *cum = calloc(q->n, sizeof *cum);
    size_t m = 0, hn = 0;
    if (!its || !heap || !cum) { rc = DS_ERR_NOMEM; goto out; }
    if ((rc = ds__segs_load(st, txn, &segs, &nseg)) || (rc = ds__dead_any(st, txn, &anydead))) goto out;
    for (size_t i = 0; i < q->n; i++) {
        if (!stats->df[i]) continue;
        if ((rc = pi_load(st, txn, segs, nseg, q->terms[i], &its[m]))) { m++; goto out; }
        if (its[m].bad) { rc = DS_ERR_STORE; m++; goto out; }
        if (its[m].cur == UINT64_MAX) { free(its[m].segs); continue; }
        its[m].w = idf(stats, i) * q->qtf[i];
        its[m].ub = its[m].w * (BM25_K1 + 1);
        m++;
    }
    qsort(its, m, sizeof *its, cmp_ub);
    for (size_t i = 0; i < m; i++) cum[i] = its[i].ub + (i ? cum[i - 1] : 0);

    size_t e = 0;                 /* its[e..m) are essential */
    double theta = 0;
    while (e < m) {
        uint64_t d = UINT64_MAX;
        for (size_t i = e; i < m; i++) if (its[i].cur < d) d = its[i].cur;
        if (d == UINT64_MAX) break;
        double s = 0;
        for (size_t i = e; i < m; i++) {
            if (its[i].cur != d) continue;
            s += pi_score(&its[i], K0, Kb);
            pi_next(&its[i]);
        }
        for (size_t i = e; i-- > 0;) {
            if (hn == k && s + cum[i] < theta) break;
            pi_seek(&its[i], d);
            if (its[i].cur != d) continue;
            s += pi_score(&its[i], K0, Kb);
        }
        if (hn == k && s < theta) continue;   /* ties go to the newer */
        if (anydead) {                        /* deleted, postings not yet merged away */
            int dead;
            if ((rc = ds__dead_has(st, txn, d, &dead))) goto out;
            if (dead) continue;
        }
        if (filtered) {
            int ok;
            if ((rc = passes(st, txn, filter, d, &ok))) goto out;
            if (!ok) continue;
        }
        heap_push(heap, &hn, k, (cand){ s, d });
        if (hn == k) {
            theta = heap[0].score;
            while (e < m && cum[e] < theta) e++;
        }
    }
    for (size_t i = 0; i < m; i++)
        if (its[i].bad) { rc = DS_ERR_STORE; goto out; }
    qsort(heap, hn, sizeof *heap, cmp_cand_desc);
    for (size_t i = 0; i < hn; i++) {
        if ((rc = read_node(st, txn, heap[i].seq, &hits[i].node))) {
            ds_hits_free(hits, i);
            goto out;
        }
        hits[i].score = heap[i].score / max_total;
        if (hits[i].score > 1.0) hits[i].score = 1.0;
        hits[i].store_index = 0;
    }
    *nhits = hn;
out:
    for (size_t i = 0; i < m && its; i++) free(its[i].segs);
    free(its);
    free(heap);
    free(cum);
    free(segs);
    mdb_txn_abort(txn);
    return rc;
}

void ds_hits_free(ds_hit *hits, size_t n)
{
    for (size_t i = 0; i < n; i++) ds_node_free(&hits[i].node);
}

static int cmp_hit(const void *a, const void *b)
{
    const ds_hit *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    if (x->store_index != y->store_index) return x->store_index - y->store_index;
    return x->node.seq < y->node.seq ? 1 : x->node.seq > y->node.seq ? -1 : 0;
}

static int search_with_stats(ds_store **stores, size_t nstores, const ds_query *q,
                             const ds_search_stats *stats, const ds_search_filter *filter,
                             size_t k, ds_hit *hits, size_t *nhits)
{
    *nhits = 0;
    if (nstores == 1) return ds_search_store(stores[0], q, stats, filter, k, hits, nhits);
    ds_hit *all = calloc(k * nstores, sizeof *all);
    if (!all) return DS_ERR_NOMEM;
    size_t total = 0;
    int rc = 0;
    for (size_t s = 0; s < nstores && !rc; s++) {
        size_t n = 0;
        rc = ds_search_store(stores[s], q, stats, filter, k, all + total, &n);
        for (size_t i = 0; i < n; i++) all[total + i].store_index = (int)s;
        total += n;
    }
    if (rc) { ds_hits_free(all, total); free(all); return rc; }
    qsort(all, total, sizeof *all, cmp_hit);
    size_t keep = total < k ? total : k;
    memcpy(hits, all, keep * sizeof *all);
    ds_hits_free(all + keep, total - keep);
    free(all);
    *nhits = keep;
    return 0;
}

int ds_search_multi(ds_store **stores, size_t nstores, const ds_query *q,
                    const ds_search_filter *filter, size_t k, ds_hit *hits, size_t *nhits)
{
    *nhits = 0;
    ds_search_stats stats;
    int rc = ds_search_stats_init(&stats, q);
    for (size_t s = 0; s < nstores && !rc; s++) rc = ds_search_stats_add(stores[s], q, &stats);
    if (!rc) rc = search_with_stats(stores, nstores, q, &stats, filter, k, hits, nhits);
    ds_search_stats_free(&stats);
    return rc;
}

int ds_search_related(ds_store **stores, size_t nstores, size_t origin,
                      const uint8_t id[DS_ID_LEN], size_t k, ds_hit *hits, size_t *nhits)
{
    *nhits = 0;
    if (origin >= nstores) return DS_ERR_INVALID;
    ds_node n;
    int rc = ds_store_get(stores[origin], id, &n);
    if (rc) return rc;
    ds_query *q;
    rc = ds_query_parse(n.content, n.content_len, &q);
    ds_node_free(&n);
    if (rc) return rc == DS_ERR_EMPTY ? 0 : rc;
    ds_search_stats stats;
    rc = ds_search_stats_init(&stats, q);
    for (size_t s = 0; s < nstores && !rc; s++) rc = ds_search_stats_add(stores[s], q, &stats);
    if (!rc) {
        ds_query_prune(q, &stats, RELATED_TERMS);
        ds_search_filter f = { .exclude_id = id };
        if (q->n) rc = search_with_stats(stores, nstores, q, &stats, &f, k, hits, nhits);
    }
    ds_search_stats_free(&stats);
    ds_query_free(q);
    return rc;
}
