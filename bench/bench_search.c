/*
 * bench_search.c - search and ingest benchmark of the Datasphere store
 * against SQLite FTS5 on one identical synthetic corpus.
 *
 * The corpus is generated in memory from a fixed seed (own PRNG, no libc
 * rand): a vocabulary of distinct pronounceable words that end in a
 * consonant-vowel syllable (a, o or u) so that neither Snowball English
 * (ds) nor Porter (FTS5) changes them, drawn with Zipf frequencies into
 * documents of about 300 bytes of sentences.  The same documents are
 * loaded, in the same transaction batches, into a ds store (public API)
 * and into an FTS5 table with the porter+unicode61 tokenizer (folding and
 * stemming, the same analysis work ds does), both on disk.  Query classes
 * are chosen from the corpus's actual document frequencies (rare, mid,
 * two common terms OR-ed, very common); each engine returns the top 10
 * with content, in-process, timed by the same code, interleaved.
 *
 * Output is one machine-readable line per fact (corpus, ingest, search
 * per class, verdict), compared to FTS5 measured in the same run.  This is
 * a benchmark program, not a test: it exits 0 whether or not the targets
 * (search ratio <= 0.5, ingest speedup >= 3) are met, non-zero on errors.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ds/error.h"
#include "ds/node.h"
#include "ds/search.h"
#include "ds/store.h"

#define VOCAB_SIZE 50000
#define ZIPF_S 1.07
#define DOC_MIN_BYTES 250
#define DOC_MAX_BYTES 350
#define TOP_K 10
#define TS_BASE INT64_C(1700000000000)  /* node i has timestamp TS_BASE + i */

enum { CLASS_RARE, CLASS_MID, CLASS_COMMON2, CLASS_VCOMMON, CLASS_COUNT };
static const char *const class_names[CLASS_COUNT] = {"rare", "mid", "common2", "very_common"};

typedef struct opts {
    uint64_t nodes;
    uint64_t seed;
    const char *dir;      /* work directory chosen by the user, or NULL */
    unsigned queries;     /* distinct queries per class */
    unsigned reps;        /* timed runs per query and engine */
    unsigned batch;       /* nodes per write transaction */
    int keep;             /* keep the work directory */
    int no_optimize;      /* skip FTS5 'optimize' after the load */
} opts;

/* ---- PRNG: splitmix64 seeds xoshiro256** -------------------------------- */

typedef struct rng { uint64_t s[4]; } rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}

/* Uniform in [0, n), n > 0 (Lemire's multiply-shift; bias negligible here). */
static inline uint32_t rng_below(rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* ---- small helpers ------------------------------------------------------- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_search: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) die("out of memory");
    return p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts |v| in place and returns the q-quantile (0..1), nearest rank. */
static double quantile(double *v, size_t n, double q)
{
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    if (q == 0.5 && n % 2 == 0) return (v[n / 2 - 1] + v[n / 2]) / 2;
    size_t i = (size_t)ceil(q * (double)n);
    return v[i ? i - 1 : 0];
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    if (remove(path) != 0) fprintf(stderr, "bench_search: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t du_sum;
static int du_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path; (void)ftw;
    if (flag == FTW_F) du_sum += (uint64_t)sb->st_blocks * 512u;
    return 0;
}

/* Bytes allocated on disk under |path| (file or directory). */
static uint64_t disk_usage(const char *path)
{
    du_sum = 0;
    nftw(path, du_entry, 16, FTW_PHYS);
    return du_sum;
}

/* ---- vocabulary ---------------------------------------------------------- */

static const char consonants[] = "bdfgklmnprstvz";
static const char vowels_any[] = "aeiou";
static const char vowels_end[] = "aou";   /* no stemmer rule ends in these */

typedef struct vocab {
    char **words;        /* VOCAB_SIZE words, rank order (0 = most frequent) */
    size_t *lens;
} vocab;

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= UINT64_C(1099511628211); }
    return h;
}

/* Syllable count for the word of |rank|: frequent words are short. */
static int syllables_for(rng *r, size_t rank)
{
    if (rank < 60) return 2;
    if (rank < 2000) return 2 + (int)rng_below(r, 2);
    uint32_t x = rng_below(r, 10);
    return x < 3 ? 2 : x < 8 ? 3 : 4;
}

static void vocab_build(vocab *v, rng *r)
{
    size_t cap = 1u << 17;   /* open-addressing set of word hashes */
    uint64_t *set = xcalloc(cap, sizeof *set);
    v->words = xmalloc(VOCAB_SIZE * sizeof *v->words);
    v->lens = xmalloc(VOCAB_SIZE * sizeof *v->lens);
    for (size_t rank = 0; rank < VOCAB_SIZE; rank++) {
        char w[16];
        int extra = 0;
        for (unsigned attempt = 0;; attempt++) {
            if (attempt > 0 && attempt % 64 == 0 && extra < 2) extra++;  /* short pool exhausted */
            int syl = syllables_for(r, rank) + extra;
            size_t n = 0;
            for (int i = 0; i < syl - 1; i++) {
                w[n++] = consonants[rng_below(r, sizeof consonants - 1)];
                w[n++] = vowels_any[rng_below(r, sizeof vowels_any - 1)];
            }
            w[n++] = consonants[rng_below(r, sizeof consonants - 1)];
            w[n++] = vowels_end[rng_below(r, sizeof vowels_end - 1)];
            w[n] = 0;
            uint64_t h = fnv1a(w, n) | 1;   /* 0 marks an empty slot */
            size_t i = (size_t)h & (cap - 1);
            while (set[i] && set[i] != h) i = (i + 1) & (cap - 1);
            if (set[i] == h) continue;       /* duplicate (or 64-bit collision) */
            set[i] = h;
            v->words[rank] = xmalloc(n + 1);
            memcpy(v->words[rank], w, n + 1);
            v->lens[rank] = n;
            break;
        }
    }
    free(set);
}

static void vocab_free(vocab *v)
{
    for (size_t i = 0; i < VOCAB_SIZE; i++) free(v->words[i]);
    free(v->words);
    free(v->lens);
}

/* ---- Zipf sampling (Vose's alias method) -------------------------------- */

typedef struct alias_table {
    double *prob;
    uint32_t *alias;
    uint32_t n;
} alias_table;

static void alias_build(alias_table *t, uint32_t n, double s)
{
    double *p = xmalloc(n * sizeof *p), sum = 0;
    for (uint32_t i = 0; i < n; i++) sum += p[i] = pow((double)(i + 1), -s);
    uint32_t *small = xmalloc(n * sizeof *small), *large = xmalloc(n * sizeof *large);
    uint32_t ns = 0, nl = 0;
    t->prob = xmalloc(n * sizeof *t->prob);
    t->alias = xmalloc(n * sizeof *t->alias);
    t->n = n;
    for (uint32_t i = 0; i < n; i++) {
        p[i] = p[i] * n / sum;
        if (p[i] < 1.0) small[ns++] = i; else large[nl++] = i;
    }
    while (ns && nl) {
        uint32_t a = small[--ns], b = large[--nl];
        t->prob[a] = p[a];
        t->alias[a] = b;
        p[b] = (p[b] + p[a]) - 1.0;
        if (p[b] < 1.0) small[ns++] = b; else large[nl++] = b;
    }
    while (nl) { uint32_t b = large[--nl]; t->prob[b] = 1.0; t->alias[b] = b; }
    while (ns) { uint32_t a = small[--ns]; t->prob[a] = 1.0; t->alias[a] = a; }
    free(p); free(small); free(large);
}

static inline uint32_t alias_draw(const alias_table *t, rng *r)
{
    uint64_t x = rng_next(r);
    uint32_t i = (uint32_t)(((x >> 32) * (uint64_t)t->n) >> 32);
    double u = (double)(x & 0xffffffffu) * 0x1.0p-32;
    return u < t->prob[i] ? i : t->alias[i];
}

static void alias_free(alias_table *t) { free(t->prob); free(t->alias); }

/* ---- corpus -------------------------------------------------------------- */

typedef struct corpus {
    char *text;          /* documents, each NUL-terminated, back to back */
    size_t *off;         /* nodes + 1 offsets; doc i = text[off[i] .. off[i+1]-1) */
    uint64_t n;
    uint64_t bytes;      /* sum of document lengths (without NULs) */
    uint64_t tokens;
    uint32_t *df;        /* per vocabulary rank */
} corpus;

static inline size_t doc_len(const corpus *c, uint64_t i) { return c->off[i + 1] - c->off[i] - 1; }
static inline const char *doc_text(const corpus *c, uint64_t i) { return c->text + c->off[i]; }

static void corpus_build(corpus *c, const vocab *v, const alias_table *z, rng *r, uint64_t n)
{
    size_t cap = (size_t)n * (DOC_MAX_BYTES + 24) + 1;
    uint32_t *last = xmalloc(VOCAB_SIZE * sizeof *last);
    memset(last, 0xff, VOCAB_SIZE * sizeof *last);
    c->text = xmalloc(cap);
    c->off = xmalloc(((size_t)n + 1) * sizeof *c->off);
    c->df = xcalloc(VOCAB_SIZE, sizeof *c->df);
    c->n = n;
    c->bytes = c->tokens = 0;
    size_t pos = 0;
    for (uint64_t d = 0; d < n; d++) {
        size_t start = pos;
        size_t target = DOC_MIN_BYTES + rng_below(r, DOC_MAX_BYTES - DOC_MIN_BYTES + 1);
        int in_sentence = 0, words_in_sentence = 0, sentence_len = 0;
        for (;;) {
            uint32_t w = alias_draw(z, r);
            size_t wl = v->lens[w], len = pos - start;
            /* Close the document once the next word would overshoot. */
            if (len + 1 + wl + 1 > target && len > 0) break;
            if (in_sentence) c->text[pos++] = ' ';
            memcpy(c->text + pos, v->words[w], wl);
            if (!in_sentence) {
                c->text[pos] = (char)(c->text[pos] - 'a' + 'A');
                in_sentence = 1;
                words_in_sentence = 0;
                sentence_len = 6 + (int)rng_below(r, 10);
            }
            pos += wl;
            c->tokens++;
            if (last[w] != (uint32_t)d) { last[w] = (uint32_t)d; c->df[w]++; }
            if (++words_in_sentence >= sentence_len) {
                uint32_t p = rng_below(r, 20);
                c->text[pos++] = p == 0 ? '?' : p == 1 ? '!' : '.';
                c->text[pos++] = ' ';
                in_sentence = 0;
            } else if (rng_below(r, 14) == 0) {
                c->text[pos++] = rng_below(r, 6) == 0 ? ';' : ',';
            }
        }
        while (pos > start && c->text[pos - 1] == ' ') pos--;
        if (pos > start && c->text[pos - 1] != '.' && c->text[pos - 1] != '?' && c->text[pos - 1] != '!') {
            if (c->text[pos - 1] == ',' || c->text[pos - 1] == ';') pos--;
            c->text[pos++] = '.';
        }
        c->off[d] = start;
        c->bytes += pos - start;
        c->text[pos++] = 0;
    }
    c->off[n] = pos;
    free(last);
}

static void corpus_free(corpus *c)
{
    free(c->text); free(c->off); free(c->df);
}

/* ---- query selection ----------------------------------------------------- */

typedef struct qclass {
    char **text_ds;      /* query text for ds ("w1" or "w1 w2") */
    char **text_fts;     /* FTS5 MATCH expression ("w1" or "w1 OR w2") */
    unsigned count;
    uint32_t df_min, df_max;
} qclass;

static const corpus *sort_corpus;
static int cmp_rank_by_df(const void *a, const void *b)
{
    uint32_t x = sort_corpus->df[*(const uint32_t *)a], y = sort_corpus->df[*(const uint32_t *)b];
    if (x != y) return (x > y) - (x < y);
    return (*(const uint32_t *)a > *(const uint32_t *)b) - (*(const uint32_t *)a < *(const uint32_t *)b);
}

typedef struct dist_item { double d; uint32_t w; } dist_item;
static int cmp_dist(const void *a, const void *b)
{
    const dist_item *x = a, *y = b;
    if (x->d != y->d) return (x->d > y->d) - (x->d < y->d);
    return (x->w > y->w) - (x->w < y->w);
}

/* Picks up to |want| words whose df lies in [lo, hi], nearest (in log
 * ratio) to |target| first; when none lies in the band, the nearest words
 * overall.  Returns the count written to |out|. */
static unsigned pick_near(const corpus *c, double target, double lo, double hi,
                          unsigned want, uint32_t *out)
{
    dist_item *items = xmalloc(VOCAB_SIZE * sizeof *items);
    size_t n = 0, nin = 0;
    for (uint32_t w = 0; w < VOCAB_SIZE; w++) {
        if (c->df[w] == 0) continue;
        double d = fabs(log((double)c->df[w] / target));
        int in_band = c->df[w] >= lo && c->df[w] <= hi;
        items[n].d = in_band ? d : 1e6 + d;  /* in-band words first */
        items[n++].w = w;
        nin += (size_t)in_band;
    }
    qsort(items, n, sizeof *items, cmp_dist);
    unsigned k = 0;
    size_t lim = nin ? nin : n;
    for (size_t i = 0; i < lim && k < want; i++) out[k++] = items[i].w;
    free(items);
    return k;
}

/* Rare: spread evenly over the words with df in [5, 50] (or the words
 * nearest to that band when fewer exist). */
static unsigned pick_rare(const corpus *c, unsigned want, uint32_t *out)
{
    uint32_t *band = xmalloc(VOCAB_SIZE * sizeof *band);
    size_t nb = 0;
    for (uint32_t w = 0; w < VOCAB_SIZE; w++)
        if (c->df[w] >= 5 && c->df[w] <= 50) band[nb++] = w;
    unsigned k = 0;
    if (nb >= want) {
        sort_corpus = c;
        qsort(band, nb, sizeof *band, cmp_rank_by_df);
        for (unsigned i = 0; i < want; i++) out[k++] = band[(size_t)i * nb / want];
    } else {
        /* Too few in the band: the nearest to df 15 (log scale), band first. */
        k = pick_near(c, 15.0, 5.0, 50.0, want, out);
    }
    free(band);
    return k;
}

static char *join_words(const vocab *v, const uint32_t *w, unsigned n, const char *sep)
{
    size_t len = 1;
    for (unsigned i = 0; i < n; i++) len += v->lens[w[i]] + strlen(sep);
    char *s = xmalloc(len), *p = s;
    for (unsigned i = 0; i < n; i++) {
        if (i) p += sprintf(p, "%s", sep);
        p += sprintf(p, "%s", v->words[w[i]]);
    }
    *p = 0;
    return s;
}

static void qclass_fill(qclass *qc, const corpus *c, const vocab *v, const uint32_t *w,
                        unsigned nwords, unsigned per_query)
{
    qc->count = nwords / per_query;
    qc->text_ds = xmalloc((qc->count + 1) * sizeof *qc->text_ds);
    qc->text_fts = xmalloc((qc->count + 1) * sizeof *qc->text_fts);
    qc->df_min = UINT32_MAX;
    qc->df_max = 0;
    for (unsigned i = 0; i < qc->count; i++) {
        const uint32_t *qw = w + (size_t)i * per_query;
        qc->text_ds[i] = join_words(v, qw, per_query, " ");
        qc->text_fts[i] = join_words(v, qw, per_query, " OR ");
        for (unsigned j = 0; j < per_query; j++) {
            if (c->df[qw[j]] < qc->df_min) qc->df_min = c->df[qw[j]];
            if (c->df[qw[j]] > qc->df_max) qc->df_max = c->df[qw[j]];
        }
    }
    if (qc->count == 0) qc->df_min = 0;
}

static void qclass_free(qclass *qc)
{
    for (unsigned i = 0; i < qc->count; i++) { free(qc->text_ds[i]); free(qc->text_fts[i]); }
    free(qc->text_ds);
    free(qc->text_fts);
}

static void pick_queries(qclass qc[CLASS_COUNT], const corpus *c, const vocab *v, unsigned q)
{
    uint32_t *w = xmalloc(2 * (size_t)q * sizeof *w);
    double n = (double)c->n;
    unsigned k;

    k = pick_rare(c, q, w);
    qclass_fill(&qc[CLASS_RARE], c, v, w, k, 1);
    k = pick_near(c, n * 0.01, n * 0.005, n * 0.02, q, w);
    qclass_fill(&qc[CLASS_MID], c, v, w, k, 1);
    k = pick_near(c, n * 0.10, n * 0.05, n * 0.20, 2 * q, w);
    qclass_fill(&qc[CLASS_COMMON2], c, v, w, k, 2);
    k = pick_near(c, n * 0.50, n * 0.30, n, q, w);
    qclass_fill(&qc[CLASS_VCOMMON], c, v, w, k, 1);
    free(w);
}

/* ---- ds side ------------------------------------------------------------- */

static void ds_check(int rc, const char *what)
{
    if (rc < 0) die("%s: %s (%d)", what, ds_strerror(rc), rc);
}

static ds_store *ds_open(const char *dir, uint64_t seed)
{
    uint8_t epoch[DS_EPOCH_LEN];
    uint64_t x = seed ^ UINT64_C(0x45504f4348);   /* fixed epoch per seed */
    for (int i = 0; i < DS_EPOCH_LEN; i += 8) {
        uint64_t v = splitmix64(&x);
        memcpy(epoch + i, &v, 8);
    }
    ds_store_opts o = {0};
    o.epoch_seed = epoch;
    ds_store *st = NULL;
    ds_check(ds_store_open(&st, dir, &o), "ds_store_open");
    return st;
}

/* Loads the corpus in batches of |batch| nodes; returns elapsed ns,
 * node construction (id, content hash, fields) included. */
static uint64_t ds_load(ds_store *st, const corpus *c, unsigned batch, uint64_t seed)
{
    rng idr;
    rng_seed(&idr, seed ^ UINT64_C(0x1d5));
    uint64_t t0 = now_ns();
    ds_wtxn *tx = NULL;
    for (uint64_t i = 0; i < c->n; i++) {
        if (!tx) ds_check(ds_store_begin(st, &tx), "ds_store_begin");
        ds_node n;
        uint8_t rnd[DS_ID_LEN];
        char src[48];
        uint64_t a = rng_next(&idr), b = rng_next(&idr);
        memcpy(rnd, &a, 8);
        memcpy(rnd + 8, &b, 8);
        ds_node_init(&n);
        ds_uuid_from_random(n.id, rnd);
        snprintf(src, sizeof src, "note:bench:%" PRIu64, i);
        ds_check(ds_node_set_content(&n, doc_text(c, i), doc_len(c, i)), "ds_node_set_content");
        ds_check(ds_node_set_str(&n.source, src), "ds_node_set_str");
        ds_check(ds_node_set_str(&n.project, "/bench/corpus"), "ds_node_set_str");
        ds_check(ds_node_set_str(&n.ns, "personal"), "ds_node_set_str");
        n.source_type = DS_SOURCE_NOTE;
        n.timestamp = TS_BASE + (int64_t)i;
        n.confidence = 1.0;
        ds_check(ds_wtxn_put(tx, &n), "ds_wtxn_put");
        ds_node_free(&n);
        if ((i + 1) % batch == 0 || i + 1 == c->n) {
            ds_check(ds_wtxn_commit(tx), "ds_wtxn_commit");
            tx = NULL;
        }
    }
    return now_ns() - t0;
}

/* One ds query: parse + search + free.  Writes hit doc indexes to |docs|
 * (when non-NULL) and returns the hit count. */
static size_t ds_query_once(ds_store *st, const char *text, int64_t *docs)
{
    ds_query *q = NULL;
    ds_hit hits[TOP_K];
    size_t nh = 0;
    int rc = ds_query_parse(text, strlen(text), &q);
    if (rc == DS_ERR_EMPTY) return 0;
    ds_check(rc, "ds_query_parse");
    rc = ds_search_multi(&st, 1, q, NULL, TOP_K, hits, &nh);
    ds_query_free(q);
    ds_check(rc, "ds_search_multi");
    if (docs)
        for (size_t i = 0; i < nh; i++) docs[i] = hits[i].node.timestamp - TS_BASE;
    ds_hits_free(hits, nh);
    return nh;
}

/* ---- FTS5 side ----------------------------------------------------------- */

static void sql_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) die("sqlite: %s: %s", sql, err ? err : "?");
}

static sqlite3_stmt *sql_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
        die("sqlite prepare: %s: %s", sql, sqlite3_errmsg(db));
    return s;
}

static sqlite3 *fts_open(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        die("sqlite open %s: %s", path, db ? sqlite3_errmsg(db) : "?");
    /* Best ordinary settings: WAL, no fsync per commit, a 64 MiB page
     * cache, and reads through mmap like LMDB. */
    sql_exec(db, "PRAGMA journal_mode=WAL");
    sql_exec(db, "PRAGMA synchronous=NORMAL");
    sql_exec(db, "PRAGMA cache_size=-65536");
    sql_exec(db, "PRAGMA mmap_size=17179869184");
    sql_exec(db, "PRAGMA temp_store=MEMORY");
    sql_exec(db, "CREATE VIRTUAL TABLE docs USING fts5(content, tokenize='porter unicode61')");
    return db;
}

static uint64_t fts_load(sqlite3 *db, const corpus *c, unsigned batch)
{
    sqlite3_stmt *ins = sql_prepare(db, "INSERT INTO docs(rowid, content) VALUES(?1, ?2)");
    uint64_t t0 = now_ns();
    int open = 0;
    for (uint64_t i = 0; i < c->n; i++) {
        if (!open) { sql_exec(db, "BEGIN"); open = 1; }
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)i + 1);
        sqlite3_bind_text(ins, 2, doc_text(c, i), (int)doc_len(c, i), SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) die("sqlite insert: %s", sqlite3_errmsg(db));
        sqlite3_reset(ins);
        if ((i + 1) % batch == 0 || i + 1 == c->n) { sql_exec(db, "COMMIT"); open = 0; }
    }
    uint64_t dt = now_ns() - t0;
    sqlite3_finalize(ins);
    return dt;
}

static uint64_t fts_count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = sql_prepare(db, sql);
    uint64_t v = 0;
    if (sqlite3_step(s) == SQLITE_ROW) v = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static size_t fts_query_once(sqlite3_stmt *q, const char *match, int64_t *docs, size_t *content_bytes)
{
    size_t n = 0;
    sqlite3_bind_text(q, 1, match, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        sqlite3_int64 rowid = sqlite3_column_int64(q, 0);
        const unsigned char *txt = sqlite3_column_text(q, 1);
        int len = sqlite3_column_bytes(q, 1);
        double rank = sqlite3_column_double(q, 2);
        (void)rank;
        if (content_bytes && txt) *content_bytes += (size_t)len;
        if (docs && n < TOP_K) docs[n] = rowid - 1;
        n++;
    }
    if (rc != SQLITE_DONE) die("sqlite query '%s': %s", match, sqlite3_errmsg(sqlite3_db_handle(q)));
    sqlite3_reset(q);
    return n;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_search [--nodes N] [--seed S] [--dir D] [--queries Q]\n"
        "                    [--reps R] [--batch B] [--keep] [--no-optimize]\n"
        "  --nodes N      corpus size in nodes (default 100000)\n"
        "  --seed S       corpus seed (default 1)\n"
        "  --dir D        work directory, created, must not hold a previous run\n"
        "                 (default: a fresh mkdtemp under $TMPDIR or /tmp, removed at the end)\n"
        "  --queries Q    distinct queries per class (default 20)\n"
        "  --reps R       timed runs per query and engine (default 5)\n"
        "  --batch B      nodes per write transaction, both engines (default 10000)\n"
        "  --keep         keep the work directory\n"
        "  --no-optimize  query FTS5 without running its 'optimize' merge first\n");
}

static void parse_args(int argc, char **argv, opts *o)
{
    o->nodes = 100000; o->seed = 1; o->dir = NULL; o->queries = 20; o->reps = 5;
    o->batch = 10000; o->keep = 0; o->no_optimize = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "--keep")) { o->keep = 1; continue; }
        else if (!strcmp(a, "--no-optimize")) { o->no_optimize = 1; continue; }
        else if (!val) { usage(stderr); die("missing value or unknown option: %s", a); }
        else if (!strcmp(a, "--nodes")) {
            if (parse_u64(val, 1, 20000000, &v)) die("--nodes: expected 1..20000000, got '%s'", val);
            o->nodes = v;
        } else if (!strcmp(a, "--seed")) {
            if (parse_u64(val, 0, UINT64_MAX, &v)) die("--seed: expected an unsigned integer, got '%s'", val);
            o->seed = v;
        } else if (!strcmp(a, "--dir")) {
            if (!*val) die("--dir: empty path");
            o->dir = val;
        } else if (!strcmp(a, "--queries")) {
            if (parse_u64(val, 1, 1000, &v)) die("--queries: expected 1..1000, got '%s'", val);
            o->queries = (unsigned)v;
        } else if (!strcmp(a, "--reps")) {
            if (parse_u64(val, 1, 1000, &v)) die("--reps: expected 1..1000, got '%s'", val);
            o->reps = (unsigned)v;
        } else if (!strcmp(a, "--batch")) {
            if (parse_u64(val, 1, 10000000, &v)) die("--batch: expected 1..10000000, got '%s'", val);
            o->batch = (unsigned)v;
        } else { usage(stderr); die("unknown option: %s", a); }
        i++;
    }
}

static double overlap(const int64_t *a, size_t na, const int64_t *b, size_t nb)
{
    size_t common = 0, denom = na > nb ? na : nb;
    if (denom == 0) return 1.0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (a[i] == b[j]) { common++; break; }
    return (double)common / (double)denom;
}

int main(int argc, char **argv)
{
    opts o;
    parse_args(argc, argv, &o);

    /* Work directory. */
    char workbuf[PATH_MAX];
    int remove_work = 0;
    if (o.dir) {
        if (mkdir(o.dir, 0700) != 0 && errno != EEXIST) die("mkdir %s: %s", o.dir, strerror(errno));
        snprintf(workbuf, sizeof workbuf, "%s", o.dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(workbuf, sizeof workbuf, "%s/bench_search.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(workbuf)) die("mkdtemp %s: %s", workbuf, strerror(errno));
        remove_work = !o.keep;
    }
    char ds_dir[PATH_MAX + 8], fts_path[PATH_MAX + 16];
    snprintf(ds_dir, sizeof ds_dir, "%s/ds", workbuf);
    snprintf(fts_path, sizeof fts_path, "%s/fts5.db", workbuf);
    struct stat sb;
    if (stat(ds_dir, &sb) == 0 || stat(fts_path, &sb) == 0)
        die("%s already holds a previous run (ds/ or fts5.db): choose an empty --dir", workbuf);

    /* Corpus. */
    rng r;
    rng_seed(&r, o.seed);
    vocab v;
    alias_table z;
    corpus c;
    uint64_t t0 = now_ns();
    vocab_build(&v, &r);
    alias_build(&z, VOCAB_SIZE, ZIPF_S);
    corpus_build(&c, &v, &z, &r, o.nodes);
    double gen_s = (double)(now_ns() - t0) / 1e9;
    uint64_t vocab_used = 0;
    for (uint32_t w = 0; w < VOCAB_SIZE; w++) vocab_used += c.df[w] > 0;

    qclass qc[CLASS_COUNT];
    pick_queries(qc, &c, &v, o.queries);
    printf("corpus n=%" PRIu64 " seed=%" PRIu64 " bytes=%" PRIu64 " avg_bytes=%.1f tokens=%" PRIu64
           " vocab=%d vocab_used=%" PRIu64 " zipf_s=%.2f top_df=%u gen_s=%.2f",
           c.n, o.seed, c.bytes, (double)c.bytes / (double)c.n, c.tokens, VOCAB_SIZE, vocab_used,
           ZIPF_S, c.df[0], gen_s);
    for (int k = 0; k < CLASS_COUNT; k++)
        printf(" %s_queries=%u %s_df=%u-%u", class_names[k], qc[k].count, class_names[k],
               qc[k].df_min, qc[k].df_max);
    printf("\n");
    fflush(stdout);

    /* Ingest: ds, then FTS5, same documents and batches. */
    ds_store *st = ds_open(ds_dir, o.seed);
    uint64_t ds_ns = ds_load(st, &c, o.batch, o.seed);
    sqlite3 *db = fts_open(fts_path);
    uint64_t fts_ns = fts_load(db, &c, o.batch);
    /* Untimed: FTS5's own merge into one segment (its best query shape),
     * then a WAL checkpoint so that the disk sizes compare final indexes. */
    double opt_s = 0;
    if (!o.no_optimize) {
        uint64_t t1 = now_ns();
        sql_exec(db, "INSERT INTO docs(docs) VALUES('optimize')");
        opt_s = (double)(now_ns() - t1) / 1e9;
    }
    sql_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    uint64_t ds_disk = disk_usage(ds_dir);
    uint64_t fts_disk = disk_usage(fts_path);
    {
        char wal[PATH_MAX + 32];
        snprintf(wal, sizeof wal, "%s-wal", fts_path);
        if (stat(wal, &sb) == 0) fts_disk += disk_usage(wal);
    }
    ds_store_info info;
    memset(&info, 0, sizeof info);
    ds_check(ds_store_info_get(st, &info), "ds_store_info_get");
    sql_exec(db, "CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, docs, 'row')");
    uint64_t fts_terms = fts_count(db, "SELECT count(*) FROM temp.vocab");
    uint64_t fts_rows = fts_count(db, "SELECT count(*) FROM docs");

    double ds_s = (double)ds_ns / 1e9, fts_s = (double)fts_ns / 1e9, mb = (double)c.bytes / 1e6;
    double speedup = fts_s / ds_s;
    printf("ingest n=%" PRIu64 " batch=%u ds_s=%.3f fts5_s=%.3f ds_nodes_per_s=%.0f fts5_nodes_per_s=%.0f"
           " ds_mb_per_s=%.2f fts5_mb_per_s=%.2f speedup=%.2f ds_disk_mb=%.1f fts5_disk_mb=%.1f"
           " fts5_optimize_s=%.3f ds_nodes=%" PRIu64 " fts5_rows=%" PRIu64
           " ds_terms=%" PRIu64 " fts5_terms=%" PRIu64 "\n",
           c.n, o.batch, ds_s, fts_s, (double)c.n / ds_s, (double)c.n / fts_s, mb / ds_s, mb / fts_s,
           speedup, (double)ds_disk / 1e6, (double)fts_disk / 1e6, opt_s,
           info.node_count, fts_rows, info.term_count, fts_terms);
    if (info.node_count != c.n || fts_rows != c.n)
        printf("WARNING n=%" PRIu64 " node count mismatch: ds=%" PRIu64 " fts5=%" PRIu64 "\n",
               c.n, info.node_count, fts_rows);
    if (info.term_count != fts_terms || fts_terms != vocab_used)
        printf("WARNING n=%" PRIu64 " term count mismatch (analysis differs): ds=%" PRIu64
               " fts5=%" PRIu64 " corpus=%" PRIu64 "\n", c.n, info.term_count, fts_terms, vocab_used);
    fflush(stdout);

    /* Queries: per query one untimed warm-up of each engine (used for the
     * sanity checks), then |reps| timed runs alternating ds and FTS5. */
    sqlite3_stmt *fq = sql_prepare(db,
        "SELECT rowid, content, rank FROM docs WHERE docs MATCH ?1 ORDER BY rank LIMIT 10");
    double worst_ratio = 0;
    const char *worst_class = "none";
    for (int k = 0; k < CLASS_COUNT; k++) {
        size_t nt = (size_t)qc[k].count * o.reps;
        double *tds = xmalloc((nt + 1) * sizeof *tds), *tfts = xmalloc((nt + 1) * sizeof *tfts);
        size_t ti = 0, min_ds = SIZE_MAX, min_fts = SIZE_MAX;
        double ov_sum = 0;
        for (unsigned qi = 0; qi < qc[k].count; qi++) {
            int64_t dd[TOP_K], fd[TOP_K];
            size_t cb = 0;
            size_t nd = ds_query_once(st, qc[k].text_ds[qi], dd);
            size_t nf = fts_query_once(fq, qc[k].text_fts[qi], fd, &cb);
            if (nd == 0 || nf == 0)
                printf("WARNING n=%" PRIu64 " class=%s query='%s' ds_hits=%zu fts5_hits=%zu\n",
                       c.n, class_names[k], qc[k].text_ds[qi], nd, nf);
            if (nd < min_ds) min_ds = nd;
            if (nf < min_fts) min_fts = nf;
            ov_sum += overlap(dd, nd, fd, nf > TOP_K ? TOP_K : nf);
            for (unsigned rep = 0; rep < o.reps; rep++) {
                uint64_t a = now_ns();
                ds_query_once(st, qc[k].text_ds[qi], NULL);
                uint64_t b = now_ns();
                fts_query_once(fq, qc[k].text_fts[qi], NULL, &cb);
                uint64_t e = now_ns();
                tds[ti] = (double)(b - a) / 1e3;
                tfts[ti++] = (double)(e - b) / 1e3;
            }
        }
        if (qc[k].count == 0) {
            printf("WARNING n=%" PRIu64 " class=%s no query terms found in the corpus\n",
                   c.n, class_names[k]);
            free(tds); free(tfts);
            continue;
        }
        double ds_med = quantile(tds, ti, 0.5), fts_med = quantile(tfts, ti, 0.5);
        double ds_p90 = quantile(tds, ti, 0.9), fts_p90 = quantile(tfts, ti, 0.9);
        double ratio = ds_med / fts_med;
        if (ratio > worst_ratio) { worst_ratio = ratio; worst_class = class_names[k]; }
        printf("search n=%" PRIu64 " class=%s ds_median_us=%.1f fts5_median_us=%.1f ratio=%.2f"
               " ds_hits=%zu fts5_hits=%zu ds_p90_us=%.1f fts5_p90_us=%.1f queries=%u reps=%u"
               " top10_overlap=%.2f\n",
               c.n, class_names[k], ds_med, fts_med, ratio, min_ds, min_fts, ds_p90, fts_p90,
               qc[k].count, o.reps, ov_sum / qc[k].count);
        fflush(stdout);
        free(tds); free(tfts);
    }
    int met = worst_ratio <= 0.5 && speedup >= 3.0;
    printf("verdict n=%" PRIu64 " worst_ratio=%.2f worst_class=%s ingest_speedup=%.2f"
           " target_ratio_max=0.50 target_speedup_min=3.00 targets_met=%s\n",
           c.n, worst_ratio, worst_class, speedup, met ? "yes" : "no");

    sqlite3_finalize(fq);
    sqlite3_close(db);
    ds_store_close(st);
    for (int k = 0; k < CLASS_COUNT; k++) qclass_free(&qc[k]);
    corpus_free(&c);
    alias_free(&z);
    vocab_free(&v);
    if (remove_work) rm_tree(workbuf);
    else fprintf(stderr, "bench_search: work directory kept: %s\n", workbuf);
    return 0;
}
