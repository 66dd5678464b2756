/*
 * tokenize.c - the text analyzer: turns UTF-8 text into index terms.
 * A term is a maximal run of Unicode letters (L), decimal digits (Nd) and
 * combining marks (M); everything else, including invalid UTF-8 and NUL,
 * separates terms.  Words are case-folded (ASCII by a table, anything else
 * by libunistring's full case folding followed by NFC, so "STRASSE" and
 * "Straße" agree) and stemmed with the English Snowball stemmer.  Indexing
 * runs this on every document, so the hot path never allocates and pure
 * ASCII words (the common case) take a fast path: the text is classified
 * 64 bytes at a time into bit masks, a word's extent comes from bit scans,
 * and the word is lowered and turned into a zero-padded cache key with
 * fixed-size loads, no copy.  The terms of short words are
 * remembered in a 2-way set-associative cache (LRU within a set) keyed by
 * the raw word, so a frequent word is folded and stemmed once; the sets
 * of up to PEND_DEPTH words are prefetched before the oldest is delivered.  The
 * cache only saves work; the output depends on the text alone, which the
 * index relies on when it deletes postings by re-tokenizing.
 */
#include "core/tokenize.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <libstemmer.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "ds/error.h"

#if defined(__SSE2__) && !defined(DS_TOKENIZE_SCALAR)
#include <emmintrin.h>
#endif

/* Raw (unfolded) words longer than this are skipped without folding or
 * stemming: folding shrinks a word at most 3:1 (KELVIN SIGN -> "k") and
 * stemming removes only a short suffix, so no such word can come out at
 * DS_TERM_MAX bytes or less. */
#define RAW_MAX (4 * DS_TERM_MAX)
/* Full folding grows a word at most 3x (e.g. U+0390 -> 3 code points). */
#define FOLD_MAX (3 * RAW_MAX + 16)

/* 64K slots, 4 MB (mapped lazily by the system, so only the sets in
 * use cost memory, unless ds_tokenizer_prefault maps them all): it holds
 * the working vocabulary of a large corpus, and a miss (folding +
 * stemming) costs ~20x a hit. */
#define CACHE_SETS 32768u           /* power of two; 2 slots per set */
#define SET_BITS 15                 /* log2(CACHE_SETS) */
#define KEY_WORDS 3
#define KEY_MAX (8 * KEY_WORDS)     /* longest cached raw word in bytes */
#define STEM_MAX 30                 /* longest cached stem in bytes */

/* One cache entry, 64 bytes: a cache line.  |key| is the raw word (ASCII
 * lowered) padded with zero bytes; words never contain a zero byte, so
 * the padded key also encodes the length, and an all-zero key marks an
 * empty slot.  |stem| is NUL-terminated.  |tag| belongs to the
 * ds_tokenize_tagged caller and travels with its raw word. */
struct slot {
    uint64_t tag;
    uint64_t key[KEY_WORDS];
    uint8_t slen;
    char stem[STEM_MAX + 1];
};

_Static_assert(sizeof(struct slot) == 64, "a cache slot is one cache line");
_Static_assert((1u << SET_BITS) == CACHE_SETS, "SET_BITS matches CACHE_SETS");

enum { SEP = 0, ALNUM = 1, HIGH = 2 };  /* byte classes */

struct ds_tokenizer {
    struct slot *cache;             /* CACHE_SETS sets of 2 slots, MRU first */
    struct sb_stemmer *stemmer;
    uc_general_category_t wordcat;  /* L | M | Nd */
    uint8_t cls[256];               /* SEP, ALNUM (ASCII letter/digit), HIGH */
    uint64_t mask[KEY_MAX + 1][KEY_WORDS];  /* first n bytes of a key */
    uint64_t lower;                 /* 0x20 in every byte */
    uint8_t raw[RAW_MAX];
    uint8_t fold[FOLD_MAX];
    char term[DS_TERM_MAX + 1];
    uint64_t scratch_tag;           /* the tag of an uncacheable word */
};

#define CACHE_BYTES ((size_t)CACHE_SETS * 2 * sizeof(struct slot))
#define HUGE_PAGE ((size_t)2 << 20)

/* The cache: zero pages mapped on demand, placed on a 2 MiB boundary so
 * that ds_tokenizer_prefault can ask for huge pages. */
static struct slot *cache_map(void)
{
    size_t len = CACHE_BYTES + HUGE_PAGE;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    uintptr_t a = (uintptr_t)m, b = (a + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    if (b > a)
        munmap(m, b - a);
    if (b + CACHE_BYTES < a + len)
        munmap((void *)(b + CACHE_BYTES), a + len - (b + CACHE_BYTES));
    return (struct slot *)b;
}

int ds_tokenizer_new(ds_tokenizer **out)
{
    ds_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        goto fail_alloc;
    t->cache = cache_map();
    if (!t->cache)
        goto fail_cache;
    t->stemmer = sb_stemmer_new("english", "UTF_8");
    if (!t->stemmer)
        goto fail_stemmer;
    t->wordcat = uc_general_category_or(
        uc_general_category_or(UC_CATEGORY_L, UC_CATEGORY_M), UC_CATEGORY_Nd);
    for (int c = 0; c < 256; c++) {
        if (c >= 0x80)
            t->cls[c] = HIGH;
        else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            t->cls[c] = ALNUM;
    }
    /* built from bytes, so independent of the byte order */
    for (size_t n = 0; n <= KEY_MAX; n++) {
        uint8_t b[KEY_MAX] = {0};
        memset(b, 0xff, n);
        memcpy(t->mask[n], b, sizeof b);
    }
    memset(&t->lower, 0x20, sizeof t->lower);
    *out = t;
    return 0;

fail_stemmer:
    munmap(t->cache, CACHE_BYTES);
fail_cache:
    free(t);
fail_alloc:
    *out = NULL;
    return DS_ERR_NOMEM;
}

void ds_tokenizer_free(ds_tokenizer *t)
{
    if (!t)
        return;
    sb_stemmer_delete(t->stemmer);
    munmap(t->cache, CACHE_BYTES);
    free(t);
}

void ds_tokenizer_prefault(ds_tokenizer *t)
{
    /* Both are advice: on a kernel without them the cache stays lazy. */
#ifdef MADV_HUGEPAGE
    (void)madvise(t->cache, CACHE_BYTES, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_WRITE
    (void)madvise(t->cache, CACHE_BYTES, MADV_POPULATE_WRITE);
#endif
}

void ds_tokenizer_clear_tags(ds_tokenizer *t)
{
    for (size_t i = 0; i < 2 * (size_t)CACHE_SETS; i++)
        t->cache[i].tag = 0;
}

/* The set of a key: a multiplicative hash of the padded words. */
static inline struct slot *set_of(ds_tokenizer *t, const uint64_t *k)
{
    uint64_t h = k[0] * UINT64_C(0x9E3779B97F4A7C15) ^ k[1] * UINT64_C(0xC2B2AE3D27D4EB4F) ^
                 k[2] * UINT64_C(0x165667B19E3779F9);
    h ^= h >> 32;
    h *= UINT64_C(0xD6E8FEB86659FD93);
    return &t->cache[(size_t)(h >> (64 - SET_BITS)) * 2];
}

static inline int key_eq(const struct slot *s, const uint64_t *k)
{
    return ((s->key[0] ^ k[0]) | (s->key[1] ^ k[1]) | (s->key[2] ^ k[2])) == 0;
}

/* A term ready for the callback: |term| NUL-terminated when |nul|. */
struct result {
    const char *term;
    size_t len;
    uint64_t *tag;
};

/* Folds (if |nonascii|) and stems the |n| bytes at |w| (ASCII already
 * lowered); when |set| is given (|w| is the padded key |k|) the result is
 * cached in its first slot, the old first slot moving to the second.
 * Returns 0 or DS_ERR_NOMEM; r->len is 0 for a word without a term. */
static int stem_word(ds_tokenizer *t, struct slot *set, const uint64_t *k, const uint8_t *w,
                     size_t n, int nonascii, struct result *r)
{
    uint8_t *folded = NULL;
    size_t wn = n;
    r->len = 0;
    r->tag = &t->scratch_tag;
    t->scratch_tag = 0;
    if (nonascii) {
        size_t flen = sizeof t->fold;
        folded = u8_casefold(w, n, NULL, UNINORM_NFC, t->fold, &flen);
        if (!folded)    /* EILSEQ cannot happen (|w| is valid UTF-8): skip the word */
            return errno == ENOMEM ? DS_ERR_NOMEM : 0;
        w = folded;
        wn = flen;
    }
    const sb_symbol *st = wn > 0 ? sb_stemmer_stem(t->stemmer, w, (int)wn) : w;
    int sl = st && wn > 0 ? sb_stemmer_length(t->stemmer) : 0;
    if (folded && folded != t->fold)
        free(folded);
    if (!st)
        return DS_ERR_NOMEM;
    size_t slen = sl > 0 ? (size_t)sl : 0;
    if (slen == 0 || slen > DS_TERM_MAX)
        return 0;
    if (set && slen <= STEM_MAX) {
        set[1] = set[0];
        struct slot *s = &set[0];
        s->tag = 0;
        memcpy(s->key, k, sizeof s->key);
        s->slen = (uint8_t)slen;
        memcpy(s->stem, st, slen);
        s->stem[slen] = '\0';
        r->term = s->stem;
        r->tag = &s->tag;
    } else {
        memcpy(t->term, st, slen);
        t->term[slen] = '\0';
        r->term = t->term;
    }
    r->len = slen;
    return 0;
}

/* Looks the padded key |k| (a word of |n| <= KEY_MAX bytes, also at |w|)
 * up in the cache, stemming it on a miss. */
static inline int lookup(ds_tokenizer *t, const uint64_t *k, const uint8_t *w, size_t n,
                         int nonascii, struct result *r)
{
    struct slot *set = set_of(t, k);
    if (key_eq(&set[0], k)) {
        r->term = set[0].stem;
        r->len = set[0].slen;
        r->tag = &set[0].tag;
        return 0;
    }
    if (key_eq(&set[1], k)) {           /* make it the most recent */
        struct slot tmp = set[1];
        set[1] = set[0];
        set[0] = tmp;
        r->term = set[0].stem;
        r->len = set[0].slen;
        r->tag = &set[0].tag;
        return 0;
    }
    return stem_word(t, set, k, w, n, nonascii, r);
}

/* Hands a term to the callback.  Returns 0 or the value the tokenizer
 * must return; sets *stop when the callback asked to stop (its positive
 * values make the tokenizer return 0). */
static inline int deliver(const struct result *r, ds_term_cb cb, ds_term_tag_cb tcb, void *ud,
                          int *stop)
{
    if (r->len == 0)
        return 0;
    int v = tcb ? tcb(r->term, r->len, r->tag, ud) : cb(r->term, r->len, ud);
    if (v != 0) {
        *stop = 1;
        return v < 0 ? v : 0;
    }
    return 0;
}

#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

/* A short ASCII word whose set is being prefetched while the next word
 * is scanned: a set load is often a miss to main memory. */
struct pending {
    uint64_t k[KEY_WORDS];
    struct slot *set;
    size_t n;
};

/* Makes the padded key of the |n| <= KEY_MAX ASCII letters and digits at
 * |w| (|avail| bytes readable there) and starts loading its set. */
static inline void pend_word(ds_tokenizer *t, struct pending *pw, const uint8_t *w, size_t n,
                             size_t avail)
{
    uint64_t *k = pw->k;
    k[0] = k[1] = k[2] = 0;
    if (avail >= KEY_MAX)
        memcpy(k, w, KEY_MAX);          /* fixed-size loads, masked below */
    else
        memcpy(k, w, n);
    /* letters and digits all lower with | 0x20 */
    const uint64_t *m = t->mask[n];
    k[0] = (k[0] | t->lower) & m[0];
    k[1] = (k[1] | t->lower) & m[1];
    k[2] = (k[2] | t->lower) & m[2];
    pw->set = set_of(t, k);
    pw->n = n;
    PREFETCH(pw->set);
    PREFETCH(pw->set + 1);
}

/* Looks up and delivers a pending word. */
static inline int emit_pending(ds_tokenizer *t, struct pending *pw, ds_term_cb cb,
                               ds_term_tag_cb tcb, void *ud, int *stop)
{
    struct result r;
    struct slot *set = pw->set;
    const uint64_t *k = pw->k;
    if (key_eq(&set[0], k)) {
        r.term = set[0].stem;
        r.len = set[0].slen;
        r.tag = &set[0].tag;
    } else if (key_eq(&set[1], k)) {    /* make it the most recent */
        struct slot tmp = set[1];
        set[1] = set[0];
        set[0] = tmp;
        r.term = set[0].stem;
        r.len = set[0].slen;
        r.tag = &set[0].tag;
    } else {
        int rc = stem_word(t, set, k, (const uint8_t *)k, pw->n, 0, &r);
        if (rc)
            return rc;
    }
    return deliver(&r, cb, tcb, ud, stop);
}

/* The word of |n| > KEY_MAX ASCII letters and digits at |w|. */
static int emit_long_ascii(ds_tokenizer *t, const uint8_t *w, size_t n, ds_term_cb cb,
                           ds_term_tag_cb tcb, void *ud, int *stop)
{
    if (n > RAW_MAX)
        return 0;
    struct result r;
    for (size_t i = 0; i < n; i++)
        t->raw[i] = w[i] | 0x20;
    int rc = stem_word(t, NULL, NULL, t->raw, n, 0, &r);
    if (rc)
        return rc;
    return deliver(&r, cb, tcb, ud, stop);
}

/* The word of |n| bytes in t->raw (ASCII lowered, |nonascii| when it
 * holds other characters). */
static int emit_raw(ds_tokenizer *t, size_t n, int nonascii, ds_term_cb cb, ds_term_tag_cb tcb,
                    void *ud, int *stop)
{
    struct result r;
    int rc;
    if (n <= KEY_MAX) {
        uint64_t k[KEY_WORDS] = {0, 0, 0};
        memcpy(k, t->raw, n);
        rc = lookup(t, k, t->raw, n, nonascii, &r);
    } else {
        rc = stem_word(t, NULL, NULL, t->raw, n, nonascii, &r);
    }
    if (rc)
        return rc;
    return deliver(&r, cb, tcb, ud, stop);
}

/* Reads one word that has non-ASCII bytes in it (or a separator that is
 * not ASCII) from |s| into t->raw: *n bytes, *nonascii, *overlong.
 * Consumes the separator that ends it; returns where to go on. */
static const uint8_t *read_word(ds_tokenizer *t, const uint8_t *s, const uint8_t *end,
                                size_t *np, int *nonascii, int *overlong)
{
    size_t n = 0;
    *nonascii = *overlong = 0;
    while (s < end) {
        uint8_t c = *s;
        if (c < 0x80) {
            s++;
            if (t->cls[c] == ALNUM) {
                if (n < RAW_MAX)
                    t->raw[n++] = c | 0x20;
                else
                    *overlong = 1;
                continue;
            }
        } else {
            ucs4_t uc;
            int k = u8_mbtoucr(&uc, s, (size_t)(end - s));
            if (k > 0 && uc_is_general_category(uc, t->wordcat)) {
                if (n + (size_t)k <= RAW_MAX) {
                    memcpy(t->raw + n, s, (size_t)k);
                    n += (size_t)k;
                } else {
                    *overlong = 1;
                }
                *nonascii = 1;
                s += k;
                continue;
            }
            s += k > 0 ? k : 1;     /* separator, or invalid byte */
        }
        break;                      /* a separator: the word ends here */
    }
    *np = n;
    return s;
}

/* Words whose sets are being loaded ahead of their delivery.  One word
 * ahead hid too little of a miss to main memory (the first load of a
 * set that is not cached showed as ~15% of the tokenizer's time); a word
 * takes ~20 ns, a miss ~100 ns.  bench_tokenize 100000 (50k-word Zipf
 * vocabulary), tagged ns/token: 21.7-22.5 one ahead, 20.2-21.2 at 4,
 * 19.6-20.2 at 8, 19.8-20.0 at 16. */
#define PEND_DEPTH 8

/* The scan of one text: the pending-word pipeline and the callback. */
struct scan {
    ds_tokenizer *t;
    ds_term_cb cb;
    ds_term_tag_cb tcb;
    void *ud;
    struct pending pw[PEND_DEPTH];  /* a ring: |have| words from pw[cur] on */
    unsigned cur, have;
    int stop;
};

/* Delivers the oldest pending word. */
static inline int emit_oldest(struct scan *sc)
{
    struct pending *pw = &sc->pw[sc->cur];
    sc->cur = (sc->cur + 1) % PEND_DEPTH;
    sc->have--;
    return emit_pending(sc->t, pw, sc->cb, sc->tcb, sc->ud, &sc->stop);
}

/* Delivers the pending words, in order. */
static inline int flush_pending(struct scan *sc)
{
    while (sc->have) {
        int rc = emit_oldest(sc);
        if (rc || sc->stop)
            return rc;
    }
    return 0;
}

/* The ASCII word of |n| > 0 letters and digits at |w| (|avail| bytes
 * readable there): a short one is scanned and its set loaded while
 * earlier ones are delivered; a long one is delivered at once. */
static inline int ascii_word(struct scan *sc, const uint8_t *w, size_t n, size_t avail)
{
    if (n > KEY_MAX) {
        int rc = flush_pending(sc);
        if (rc || sc->stop)
            return rc;
        return emit_long_ascii(sc->t, w, n, sc->cb, sc->tcb, sc->ud, &sc->stop);
    }
    if (sc->have == PEND_DEPTH) {
        int rc = emit_oldest(sc);
        if (rc || sc->stop)
            return rc;
    }
    pend_word(sc->t, &sc->pw[(sc->cur + sc->have) % PEND_DEPTH], w, n, avail);
    sc->have++;
    return 0;
}

/* The word starting at |w| (not a separator), byte by byte: an ASCII
 * word, or from its start by the general path when a byte >= 0x80 is in
 * or right after it.  Consumes the separator that ends it; returns where
 * to go on. */
static const uint8_t *slow_word(struct scan *sc, const uint8_t *w, const uint8_t *end, int *rc)
{
    ds_tokenizer *t = sc->t;
    const uint8_t *p = w;
    unsigned c = t->cls[*p];
    *rc = 0;
    if (c == ALNUM) {
        do
            p++;
        while (p < end && (c = t->cls[*p]) == ALNUM);
        if (p == end || c == SEP) {
            *rc = ascii_word(sc, w, (size_t)(p - w), (size_t)(end - w));
            return p + (p < end);
        }
    }
    if ((*rc = flush_pending(sc)) || sc->stop)
        return end;
    size_t n;
    int nonascii, overlong;
    p = read_word(t, w, end, &n, &nonascii, &overlong);
    if (n > 0 && !overlong)
        *rc = emit_raw(t, n, nonascii, sc->cb, sc->tcb, sc->ud, &sc->stop);
    return p;
}

/* Classifies the 64 bytes at |b|: bit i of *alnum is set when byte i is an
 * ASCII letter or digit (t->cls ALNUM), bit i of *high when it is >= 0x80
 * (HIGH); every other byte is a separator. */
static inline void classify64(const ds_tokenizer *t, const uint8_t *b, uint64_t *alnum,
                              uint64_t *high)
{
#if defined(__SSE2__) && !defined(DS_TOKENIZE_SCALAR)
    /* letters: (b | 0x20) + 31 lands in [-128, -103] (signed) exactly for
     * 'a'..'z'; digits: b + 80 lands in [-128, -119] exactly for '0'..'9' */
    const __m128i k20 = _mm_set1_epi8(0x20), kl = _mm_set1_epi8(31), kd = _mm_set1_epi8(80);
    const __m128i ll = _mm_set1_epi8(-102), dl = _mm_set1_epi8(-118);
    uint64_t a = 0, h = 0;
    (void)t;
    for (int i = 0; i < 4; i++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + 16 * i));
        __m128i l = _mm_add_epi8(_mm_or_si128(v, k20), kl);
        __m128i d = _mm_add_epi8(v, kd);
        __m128i m = _mm_or_si128(_mm_cmpgt_epi8(ll, l), _mm_cmpgt_epi8(dl, d));
        a |= (uint64_t)(uint16_t)_mm_movemask_epi8(m) << (16 * i);
        h |= (uint64_t)(uint16_t)_mm_movemask_epi8(v) << (16 * i);
    }
    *alnum = a;
    *high = h;
#else
    uint64_t a = 0, h = 0;
    for (unsigned i = 0; i < 64; i++) {
        a |= (uint64_t)(t->cls[b[i]] == ALNUM) << i;
        h |= (uint64_t)(b[i] >> 7) << i;
    }
    *alnum = a;
    *high = h;
#endif
}

static inline unsigned ctz64(uint64_t x)      /* x != 0 */
{
#if defined(__GNUC__)
    return (unsigned)__builtin_ctzll(x);
#else
    unsigned n = 0;
    while (!(x & 1)) {
        x >>= 1;
        n++;
    }
    return n;
#endif
}

/* The text is read in windows of 64 bytes classified at once into bit
 * masks, so a word's extent comes from two bit scans instead of a branch
 * per byte.  A word that reaches the end of its window starts the next
 * window; one with a byte >= 0x80 in it, or 64 bytes long or more, goes
 * byte by byte (slow_word), and the scan goes on after it: in the same
 * window when it ended there, else in a new one. */
static int run(ds_tokenizer *t, const char *text, size_t len, ds_term_cb cb,
               ds_term_tag_cb tcb, void *ud)
{
    struct scan sc = {.t = t, .cb = cb, .tcb = tcb, .ud = ud};
    const uint8_t *p = (const uint8_t *)text;
    const uint8_t *end = p + len;
    uint8_t pad[64];
    int rc = 0;

    while (p < end) {
        size_t avail = (size_t)(end - p);
        uint64_t alnum, high;
        const uint8_t *wend, *next;
        if (avail >= 64) {
            classify64(t, p, &alnum, &high);
            wend = p + 64;
        } else {                        /* the tail, padded with separators */
            memset(pad, 0, sizeof pad);
            memcpy(pad, p, avail);
            classify64(t, pad, &alnum, &high);
            wend = end;
        }
        next = wend;
        uint64_t word = alnum | high;
        while (word) {
            unsigned s = ctz64(word);
            uint64_t rest = ~(word >> s);
            unsigned n = rest ? ctz64(rest) : 64;   /* the run of word bytes at s */
            const uint8_t *w = p + s;
            uint64_t in = (n == 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1) << s;
            if (s + n == 64 || (high & in)) {
                if (s > 0 && !(high & in)) {
                    next = w;           /* may go on: the next window starts here */
                    break;
                }
                next = slow_word(&sc, w, end, &rc);
                if (rc || sc.stop)
                    return rc;
                if (next >= wend)
                    break;
                word &= ~(uint64_t)0 << (next - p);   /* 0 < next - p < 64 */
                next = wend;
                continue;
            }
            word &= ~(uint64_t)0 << (s + n);
            rc = ascii_word(&sc, w, n, (size_t)(end - w));
            if (rc || sc.stop)
                return rc;
        }
        p = next;
    }
    rc = flush_pending(&sc);
    return rc;
}

int ds_tokenize(ds_tokenizer *t, const char *text, size_t len, ds_term_cb cb, void *ud)
{
    assert(t && cb && (text || len == 0));
    return run(t, text, len, cb, NULL, ud);
}

int ds_tokenize_tagged(ds_tokenizer *t, const char *text, size_t len, ds_term_tag_cb cb, void *ud)
{
    assert(t && cb && (text || len == 0));
    return run(t, text, len, NULL, cb, ud);
}
