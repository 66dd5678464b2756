/*
 * tokenize.c - the text analyzer: turns UTF-8 text into index terms.
 * A term is a maximal run of Unicode letters (L), decimal digits (Nd) and
 * combining marks (M); everything else, including invalid UTF-8 and NUL,
 * separates terms.  Words are case-folded (ASCII by a table, anything else
 * by libunistring's full case folding followed by NFC, so "STRASSE" and
 * "Straße" agree) and stemmed with the English Snowball stemmer.  Indexing
 * runs this on every document, so the hot path never allocates: the word
 * is built in fixed buffers and the terms of short words are remembered in
 * a direct-mapped cache keyed by the raw word (replace on collision), so
 * a frequent word is folded and stemmed once.  The cache only saves work;
 * the output depends on the text alone, which the index relies on when it
 * deletes postings by re-tokenizing.
 */
#include "core/tokenize.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libstemmer.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "ds/error.h"

/* Raw (unfolded) words longer than this are skipped without folding or
 * stemming: folding shrinks a word at most 3:1 (KELVIN SIGN -> "k") and
 * stemming removes only a short suffix, so no such word can come out at
 * DS_TERM_MAX bytes or less. */
#define RAW_MAX (4 * DS_TERM_MAX)
/* Full folding grows a word at most 3x (e.g. U+0390 -> 3 code points). */
#define FOLD_MAX (3 * RAW_MAX + 16)

#define CACHE_SLOTS 16384u          /* power of two */
#define KEY_MAX 30
#define STEM_MAX 28

/* One cache entry: 64 bytes, a cache line.  klen == 0 means empty. */
struct slot {
    uint32_t hash;
    uint8_t klen, slen;
    uint8_t key[KEY_MAX];
    uint8_t stem[STEM_MAX];
};

struct ds_tokenizer {
    struct sb_stemmer *stemmer;
    struct slot *cache;
    uc_general_category_t wordcat;  /* L | M | Nd */
    uint8_t ascii[128];             /* folded byte, or 0 for a separator */
    uint8_t raw[RAW_MAX];
    uint8_t fold[FOLD_MAX];
    char term[DS_TERM_MAX + 1];
};

int ds_tokenizer_new(ds_tokenizer **out)
{
    ds_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        goto fail_alloc;
    t->cache = calloc(CACHE_SLOTS, sizeof *t->cache);
    if (!t->cache)
        goto fail_cache;
    t->stemmer = sb_stemmer_new("english", "UTF_8");
    if (!t->stemmer)
        goto fail_stemmer;
    t->wordcat = uc_general_category_or(
        uc_general_category_or(UC_CATEGORY_L, UC_CATEGORY_M), UC_CATEGORY_Nd);
    for (int c = 0; c < 128; c++) {
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            t->ascii[c] = (uint8_t)c;
        else if (c >= 'A' && c <= 'Z')
            t->ascii[c] = (uint8_t)(c - 'A' + 'a');
    }
    *out = t;
    return 0;

fail_stemmer:
    free(t->cache);
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
    free(t->cache);
    free(t);
}

static uint32_t hash_word(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;           /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* Folds (if |nonascii|) and stems the |n| bytes of t->raw, setting *stem
 * and *slen; the result lives in the cache or the stemmer until the next
 * call.  The cache is keyed by the raw word (ASCII already lowered), so a
 * hit skips Unicode folding too.  Returns 0 or DS_ERR_NOMEM. */
static int stem_word(ds_tokenizer *t, size_t n, int nonascii,
                     const uint8_t **stem, size_t *slen)
{
    struct slot *s = NULL;
    uint32_t h = 0;
    if (n <= KEY_MAX) {
        h = hash_word(t->raw, n);
        s = &t->cache[h & (CACHE_SLOTS - 1)];
        if (s->klen == n && s->hash == h && memcmp(s->key, t->raw, n) == 0) {
            *stem = s->stem;
            *slen = s->slen;
            return 0;
        }
    }

    const uint8_t *w = t->raw;
    uint8_t *folded = NULL;
    size_t wn = n;
    if (nonascii) {
        size_t flen = sizeof t->fold;
        folded = u8_casefold(t->raw, n, NULL, UNINORM_NFC, t->fold, &flen);
        if (!folded) {
            /* EILSEQ cannot happen (t->raw is valid UTF-8): skip the word */
            *slen = 0;
            return errno == ENOMEM ? DS_ERR_NOMEM : 0;
        }
        w = folded;
        wn = flen;
    }
    const sb_symbol *r = wn > 0 ? sb_stemmer_stem(t->stemmer, w, (int)wn) : w;
    if (folded && folded != t->fold)
        free(folded);
    if (!r)
        return DS_ERR_NOMEM;
    int rl = wn > 0 ? sb_stemmer_length(t->stemmer) : 0;
    *stem = r;
    *slen = rl > 0 ? (size_t)rl : 0;
    if (s && *slen <= STEM_MAX) {
        s->hash = h;
        s->klen = (uint8_t)n;
        s->slen = (uint8_t)*slen;
        memcpy(s->key, t->raw, n);
        memcpy(s->stem, r, *slen);
    }
    return 0;
}

/* Turns the word in t->raw into a term and hands it to |cb|.  Returns 0
 * or the value ds_tokenize must return; sets *stop when the callback
 * asked to stop (its positive values make ds_tokenize return 0). */
static int emit(ds_tokenizer *t, size_t n, int nonascii, ds_term_cb cb,
                void *ud, int *stop)
{
    const uint8_t *stem = NULL;
    size_t slen = 0;
    int rc = stem_word(t, n, nonascii, &stem, &slen);
    if (rc)
        return rc;
    if (slen == 0 || slen > DS_TERM_MAX)
        return 0;
    memcpy(t->term, stem, slen);
    t->term[slen] = '\0';
    int r = cb(t->term, slen, ud);
    if (r != 0) {
        *stop = 1;
        return r < 0 ? r : 0;
    }
    return 0;
}

int ds_tokenize(ds_tokenizer *t, const char *text, size_t len, ds_term_cb cb, void *ud)
{
    assert(t && cb && (text || len == 0));
    if (len == 0)
        return 0;
    const uint8_t *s = (const uint8_t *)text;
    const uint8_t *end = s + len;
    const uint8_t *ascii = t->ascii;
    size_t n = 0;           /* bytes of the current word in t->raw */
    int nonascii = 0;       /* the current word has non-ASCII letters */
    int overlong = 0;       /* the current word exceeds RAW_MAX */
    int stop = 0;

    while (s < end) {
        uint8_t c = *s;
        if (c < 0x80) {
            uint8_t f = ascii[c];
            s++;
            if (f) {
                if (n < RAW_MAX)
                    t->raw[n++] = f;
                else
                    overlong = 1;
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
                    overlong = 1;
                }
                nonascii = 1;
                s += k;
                continue;
            }
            s += k > 0 ? k : 1;     /* separator, or invalid byte */
        }
        /* a separator: the word (if any) ends here */
        if (n > 0 && !overlong) {
            int rc = emit(t, n, nonascii, cb, ud, &stop);
            if (rc || stop)
                return rc;
        }
        n = 0;
        nonascii = overlong = 0;
    }
    if (n > 0 && !overlong)
        return emit(t, n, nonascii, cb, ud, &stop);
    return 0;
}
