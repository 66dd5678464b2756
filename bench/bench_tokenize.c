/*
 * bench_tokenize.c - throughput benchmark of the text analyzer
 * (src/core/tokenize.c), the first step of indexing every document.
 *
 * The corpus is generated in memory from a fixed seed (own PRNG): a
 * vocabulary of 50k distinct pronounceable words, some with English
 * endings the stemmer removes ("-ing", "-s", "-ed", ...), drawn with Zipf
 * frequencies into sentences of about 300-byte documents; one document in
 * 20 also carries Unicode words (accented Latin, Greek, Cyrillic, CJK).
 * Both entry points are timed over the whole corpus, after one warm-up
 * pass, several times; the best pass is reported: ds_tokenize with a
 * callback that only counts, and ds_tokenize_tagged with a callback that
 * does what the indexer does with a tag (read it, set it when 0).
 *
 * Usage: bench_tokenize [docs] [passes]   (defaults 20000 and 7)
 * Output: one line per entry point with ns/token and us/doc.  Not a test:
 * exits 0 whatever the numbers, non-zero on errors.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include "core/tokenize.h"

#define VOCAB_SIZE 50000
#define ZIPF_S 1.07
#define DOC_MIN_BYTES 250
#define DOC_MAX_BYTES 350

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));   /* splitmix64 */
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(((rng_next() >> 32) * (uint64_t)n) >> 32);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fputs("bench_tokenize: out of memory\n", stderr);
        exit(1);
    }
    return p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- vocabulary and Zipf ranks ------------------------------------------ */

static char *words[VOCAB_SIZE];
static size_t wlens[VOCAB_SIZE];
static double *zipf_cdf;

static void vocab_build(void)
{
    static const char cons[] = "bdfgklmnprstvz", vow[] = "aeiou";
    static const char *const endings[] = {"", "", "", "", "s", "ing", "ed", "er", "ly",
                                          "ation", "ness", "ies", "ful", "ment"};
    size_t cap = 1u << 17;
    uint64_t *set = calloc(cap, sizeof *set);
    if (!set) {
        fputs("bench_tokenize: out of memory\n", stderr);
        exit(1);
    }
    for (size_t rank = 0; rank < VOCAB_SIZE; rank++) {
        for (;;) {
            char w[32];
            size_t n = 0;
            int syl = rank < 60 ? 1 : rank < 2000 ? 2 + (int)rng_below(2) : 2 + (int)rng_below(3);
            for (int i = 0; i < syl; i++) {
                w[n++] = cons[rng_below(sizeof cons - 1)];
                w[n++] = vow[rng_below(sizeof vow - 1)];
            }
            w[n++] = cons[rng_below(sizeof cons - 1)];
            const char *e = endings[rank < 60 ? 0 : rng_below(sizeof endings / sizeof *endings)];
            memcpy(w + n, e, strlen(e));
            n += strlen(e);
            uint64_t h = UINT64_C(1469598103934665603);
            for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char)w[i]) * UINT64_C(1099511628211);
            h |= 1;
            size_t i = (size_t)h & (cap - 1);
            while (set[i] && set[i] != h)
                i = (i + 1) & (cap - 1);
            if (set[i] == h)
                continue;
            set[i] = h;
            words[rank] = xmalloc(n);
            memcpy(words[rank], w, n);
            wlens[rank] = n;
            break;
        }
    }
    free(set);
    zipf_cdf = xmalloc(VOCAB_SIZE * sizeof *zipf_cdf);
    double sum = 0;
    for (size_t i = 0; i < VOCAB_SIZE; i++)
        zipf_cdf[i] = sum += pow((double)(i + 1), -ZIPF_S);
    for (size_t i = 0; i < VOCAB_SIZE; i++)
        zipf_cdf[i] /= sum;
}

static size_t zipf_draw(void)
{
    double u = (double)(rng_next() >> 11) * 0x1.0p-53;
    size_t lo = 0, hi = VOCAB_SIZE - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- corpus -------------------------------------------------------------- */

static const char *const unicode_words[] = {
    "\xC3\xA9" "cole", "Stra\xC3\x9F" "e", "caf\xC3\xA9s", "M\xC3\xBC" "ller", "na\xC3\xAFve",
    "\xCE\xBA\xCE\xB1\xCE\xBB\xCE\xB7\xCE\xBC\xCE\xAD\xCF\x81\xCE\xB1",
    "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
    "\xC3\x89" "T\xC3\x89", "\xE2\x80\x94",
};

static char *text;
static size_t *doc_off;     /* ndocs + 1 */
static size_t ndocs;

static void corpus_build(size_t n)
{
    text = xmalloc(n * (DOC_MAX_BYTES + 40));
    doc_off = xmalloc((n + 1) * sizeof *doc_off);
    ndocs = n;
    size_t pos = 0;
    for (size_t d = 0; d < n; d++) {
        size_t start = pos, target = DOC_MIN_BYTES + rng_below(DOC_MAX_BYTES - DOC_MIN_BYTES + 1);
        int unicode = rng_below(20) == 0, in_sentence = 0, left = 0;
        for (;;) {
            const char *w;
            size_t wl;
            if (unicode && rng_below(4) == 0) {
                w = unicode_words[rng_below(sizeof unicode_words / sizeof *unicode_words)];
                wl = strlen(w);
            } else {
                size_t r = zipf_draw();
                w = words[r];
                wl = wlens[r];
            }
            if (pos - start + wl + 2 > target && pos > start)
                break;
            if (in_sentence)
                text[pos++] = ' ';
            memcpy(text + pos, w, wl);
            if (!in_sentence) {
                if (text[pos] >= 'a' && text[pos] <= 'z')
                    text[pos] = (char)(text[pos] - 'a' + 'A');
                in_sentence = 1;
                left = 6 + (int)rng_below(10);
            }
            pos += wl;
            if (--left == 0) {
                text[pos++] = '.';
                text[pos++] = ' ';
                in_sentence = 0;
            } else if (rng_below(14) == 0) {
                text[pos++] = ',';
            }
        }
        while (pos > start && text[pos - 1] == ' ')
            pos--;
        text[pos++] = '.';
        doc_off[d] = start;
    }
    doc_off[n] = pos;
}

/* ---- timing -------------------------------------------------------------- */

static int count_cb(const char *term, size_t len, void *ud)
{
    (void)term;
    (void)len;
    (*(uint64_t *)ud)++;
    return 0;
}

struct tag_ctx {
    uint64_t tokens, next_tag;
};

static int tag_cb(const char *term, size_t len, uint64_t *tag, void *ud)
{
    (void)term;
    (void)len;
    struct tag_ctx *c = ud;
    c->tokens++;
    if (*tag == 0)
        *tag = ++c->next_tag;
    return 0;
}

static uint64_t pass(ds_tokenizer *t, int tagged, uint64_t *tokens)
{
    uint64_t n = 0;
    struct tag_ctx tc = {0, 0};
    uint64_t t0 = now_ns();
    for (size_t d = 0; d < ndocs; d++) {
        const char *p = text + doc_off[d];
        size_t len = doc_off[d + 1] - doc_off[d];
        int rc = tagged ? ds_tokenize_tagged(t, p, len, tag_cb, &tc) : ds_tokenize(t, p, len, count_cb, &n);
        if (rc) {
            fprintf(stderr, "bench_tokenize: tokenizer error %d\n", rc);
            exit(1);
        }
    }
    uint64_t dt = now_ns() - t0;
    *tokens = tagged ? tc.tokens : n;
    return dt;
}

int main(int argc, char **argv)
{
    size_t docs = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    int passes = argc > 2 ? atoi(argv[2]) : 7;
    if (docs == 0 || docs > 10000000 || passes <= 0 || passes > 1000) {
        fputs("usage: bench_tokenize [docs 1..10000000] [passes 1..1000]\n", stderr);
        return 2;
    }
    rng_state = 20240131;
    vocab_build();
    corpus_build(docs);
    printf("corpus docs=%zu bytes=%zu avg_doc_bytes=%.1f\n", ndocs, doc_off[ndocs],
           (double)doc_off[ndocs] / (double)ndocs);
    for (int tagged = 0; tagged < 2; tagged++) {
        ds_tokenizer *t;
        if (ds_tokenizer_new(&t) != 0) {
            fputs("bench_tokenize: out of memory\n", stderr);
            return 1;
        }
        uint64_t tokens = 0, best = UINT64_MAX;
        pass(t, tagged, &tokens);                       /* warm-up */
        for (int i = 0; i < passes; i++) {
            uint64_t dt = pass(t, tagged, &tokens);
            if (dt < best)
                best = dt;
        }
        printf("%-18s tokens=%llu ns/token=%.2f us/doc=%.3f\n",
               tagged ? "ds_tokenize_tagged" : "ds_tokenize", (unsigned long long)tokens,
               (double)best / (double)tokens, (double)best / 1000.0 / (double)ndocs);
        ds_tokenizer_free(t);
    }
    for (size_t i = 0; i < VOCAB_SIZE; i++)
        free(words[i]);
    free(zipf_cdf);
    free(text);
    free(doc_off);
    return 0;
}
