/*
 * test_tokenize.c - unit tests of the text analyzer: word splitting,
 * ASCII and Unicode case folding, English stemming, digits, invalid
 * UTF-8, over-long words, the callback's stop value, that the stem
 * cache never changes the output (checked against libstemmer directly
 * and against a cache-free reference analyzer on a large random input
 * set), and the tags of ds_tokenize_tagged.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <libstemmer.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "core/tokenize.h"
#include "ds/error.h"

/* Terms joined by single spaces, for easy comparison. */
struct collect {
    char *buf;
    size_t len, cap;
    size_t count;
};

static int collect_cb(const char *term, size_t len, void *ud)
{
    struct collect *c = ud;
    assert_int_equal(strlen(term), len);        /* NUL-terminated, exact */
    assert_true(len > 0 && len <= DS_TERM_MAX);
    if (c->len + len + 2 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        while (cap < c->len + len + 2)
            cap *= 2;
        c->buf = realloc(c->buf, cap);
        assert_non_null(c->buf);
        c->cap = cap;
    }
    if (c->len)
        c->buf[c->len++] = ' ';
    memcpy(c->buf + c->len, term, len);
    c->len += len;
    c->buf[c->len] = '\0';
    c->count++;
    return 0;
}

/* Tokenizes |len| bytes with |t| (a fresh tokenizer if NULL); returns the
 * joined terms (malloc'd, "" when none). */
static char *terms_of(ds_tokenizer *t, const char *text, size_t len)
{
    ds_tokenizer *own = NULL;
    if (!t) {
        assert_int_equal(ds_tokenizer_new(&own), 0);
        t = own;
    }
    struct collect c = {0};
    assert_int_equal(ds_tokenize(t, text, len, collect_cb, &c), 0);
    ds_tokenizer_free(own);
    return c.buf ? c.buf : strdup("");
}

static void expect_terms(const char *text, const char *want)
{
    char *got = terms_of(NULL, text, strlen(text));
    assert_string_equal(got, want);
    free(got);
}

static void test_ascii_words(void **state)
{
    (void)state;
    expect_terms("hello world", "hello world");
    expect_terms("  The  QUICK brown\tfox\n", "the quick brown fox");
    expect_terms("", "");
    expect_terms("   \n\t ", "");
    expect_terms("MiXeD CaSe", "mix case");
}

static void test_separators(void **state)
{
    (void)state;
    expect_terms("thiserror::Error", "thiserror error");
    expect_terms("snake_case", "snake case");
    expect_terms("a.b,c;d(e)f[g]h{i}j/k\\l-m+n=o'p\"q",
                 "a b c d e f g h i j k l m n o p q");
    expect_terms("foo--bar...baz!!", "foo bar baz");
    /* NUL separates and does not end the text */
    static const char nul[] = "alpha\0beta";
    char *got = terms_of(NULL, nul, sizeof nul - 1);
    assert_string_equal(got, "alpha beta");
    free(got);
    /* Unicode punctuation and spaces separate too */
    expect_terms("left\xE2\x80\x94right\xC2\xA0" "done\xE3\x80\x82" "end",
                 "left right done end");
}

static void test_stemming(void **state)
{
    (void)state;
    expect_terms("running", "run");
    expect_terms("connections", "connect");
    expect_terms("errors", "error");
    expect_terms("connected connecting connection", "connect connect connect");
    expect_terms("Errors ERROR error", "error error error");
}

static void test_unicode_folding(void **state)
{
    (void)state;
    char *a = terms_of(NULL, "\xC3\x89" "COLE", 6);         /* ÉCOLE */
    char *b = terms_of(NULL, "\xC3\xA9" "cole", 6);         /* école */
    assert_string_equal(a, b);
    assert_true(strlen(a) > 0);
    free(a);
    free(b);

    /* decomposed e + U+0301 normalizes to the same term */
    char *c = terms_of(NULL, "e\xCC\x81" "cole", 7);
    char *d = terms_of(NULL, "\xC3\xA9" "cole", 6);
    assert_string_equal(c, d);
    free(c);
    free(d);

    /* full folding: ß -> ss */
    char *e = terms_of(NULL, "STRASSE", 7);
    char *f = terms_of(NULL, "Stra\xC3\x9F" "e", 7);
    assert_string_equal(e, f);
    free(e);
    free(f);

    /* Greek, Cyrillic: folded, kept whole */
    expect_terms("\xCE\x9A\xCE\x91\xCE\x9B\xCE\x97\xCE\x9C\xCE\x95\xCE\xA1\xCE\x91",
                 "\xCE\xBA\xCE\xB1\xCE\xBB\xCE\xB7\xCE\xBC\xCE\xB5\xCF\x81\xCE\xB1");
    expect_terms("\xD0\x9F\xD0\xA0\xD0\x98\xD0\x92\xD0\x95\xD0\xA2",
                 "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82");
    /* CJK ideographs are letters; emoji separate */
    expect_terms("\xE6\x97\xA5\xE6\x9C\xAC\xF0\x9F\x98\x80x",
                 "\xE6\x97\xA5\xE6\x9C\xAC x");
}

static void test_digits(void **state)
{
    (void)state;
    expect_terms("v2", "v2");
    expect_terms("HTTP 404 not found", "http 404 not found");
    expect_terms("ipv6 2024-01-31", "ipv6 2024 01 31");
    /* Arabic-Indic digits are decimal digits too */
    expect_terms("\xD9\xA4\xD9\xA0\xD9\xA4", "\xD9\xA4\xD9\xA0\xD9\xA4");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    expect_terms("abc\xFF" "def", "abc def");
    expect_terms("abc\xC3" "def", "abc def");              /* truncated sequence */
    expect_terms("abc\xC0\xAF" "def", "abc def");          /* overlong '/' */
    expect_terms("abc\xED\xA0\x80" "def", "abc def");      /* surrogate */
    expect_terms("tail\xE2\x82", "tail");                  /* cut at the end */
    expect_terms("\x80\x80\x80", "");

    /* random bytes: no crash, every term well-formed (checked in the cb) */
    ds_tokenizer *t;
    assert_int_equal(ds_tokenizer_new(&t), 0);
    uint32_t x = 12345;
    char buf[4096];
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof buf; i++) {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            buf[i] = (char)(x >> 24);
        }
        struct collect c = {0};
        assert_int_equal(ds_tokenize(t, buf, sizeof buf, collect_cb, &c), 0);
        free(c.buf);
    }
    ds_tokenizer_free(t);
}

static void test_overlong(void **state)
{
    (void)state;
    char text[1200];
    /* exactly DS_TERM_MAX digits: kept (digits do not stem) */
    memset(text, '7', DS_TERM_MAX);
    strcpy(text + DS_TERM_MAX, " ok");
    char *got = terms_of(NULL, text, strlen(text));
    assert_int_equal(strlen(got), DS_TERM_MAX + 3);
    free(got);
    /* one more: skipped, neighbours kept */
    strcpy(text, "before ");
    memset(text + 7, '7', DS_TERM_MAX + 1);
    strcpy(text + 7 + DS_TERM_MAX + 1, " after");
    expect_terms(text, "befor after");
    /* a very long word (beyond the raw buffer): skipped */
    memset(text, 'x', 1000);
    strcpy(text + 1000, " end");
    expect_terms(text, "end");
    /* long non-ASCII word: skipped */
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        memcpy(text + n, "\xC3\xA9", 2);
        n += 2;
    }
    strcpy(text + n, " fin");
    expect_terms(text, "fin");
}

static int stop_cb(const char *term, size_t len, void *ud)
{
    (void)len;
    int *calls = ud;
    (*calls)++;
    return strcmp(term, "stop") == 0 ? -42 : 0;
}

static int stop_pos_cb(const char *term, size_t len, void *ud)
{
    (void)term;
    (void)len;
    int *calls = ud;
    (*calls)++;
    return 1;
}

static void test_callback_stop(void **state)
{
    (void)state;
    ds_tokenizer *t;
    assert_int_equal(ds_tokenizer_new(&t), 0);
    const char *text = "one two stop three four";
    int calls = 0;
    assert_int_equal(ds_tokenize(t, text, strlen(text), stop_cb, &calls), -42);
    assert_int_equal(calls, 3);
    /* stop on the very last word */
    calls = 0;
    assert_int_equal(ds_tokenize(t, "a stop", 6, stop_cb, &calls), -42);
    assert_int_equal(calls, 2);
    /* positive: stops, returns 0 */
    calls = 0;
    assert_int_equal(ds_tokenize(t, text, strlen(text), stop_pos_cb, &calls), 0);
    assert_int_equal(calls, 1);
    /* the tokenizer is still usable */
    struct collect c = {0};
    assert_int_equal(ds_tokenize(t, "still works", 11, collect_cb, &c), 0);
    assert_string_equal(c.buf, "still work");
    free(c.buf);
    ds_tokenizer_free(t);
}

/* Appends a pseudo-random English-looking word to |out|. */
static size_t make_word(uint32_t *x, char *out)
{
    static const char *suffix[] = {"", "s", "ing", "ed", "ation", "ness",
                                   "ly", "er", "ies", "ational", "ful", "ize"};
    static const char *alpha = "abcdefghilmnoprstuy";
    size_t n = 0;
    *x ^= *x << 13; *x ^= *x >> 17; *x ^= *x << 5;
    size_t len = 3 + (*x % 8);
    for (size_t i = 0; i < len; i++) {
        *x ^= *x << 13; *x ^= *x >> 17; *x ^= *x << 5;
        out[n++] = alpha[*x % 19];
    }
    const char *s = suffix[(*x >> 8) % 12];
    size_t sl = strlen(s);
    memcpy(out + n, s, sl);
    return n + sl;
}

static void test_cache_correctness(void **state)
{
    (void)state;
    enum { WORDS = 120000 };
    char *text = malloc((size_t)WORDS * 24);
    char *want = malloc((size_t)WORDS * 24);
    assert_non_null(text);
    assert_non_null(want);
    struct sb_stemmer *ref = sb_stemmer_new("english", "UTF_8");
    assert_non_null(ref);

    /* >100K distinct-ish words, each mixed with common words that stay
     * hot in the cache; the expected output comes from libstemmer alone */
    static const char *common[] = {"the", "running", "connections", "errors", "of"};
    uint32_t x = 2463534242u;
    size_t tl = 0, wl = 0;
    for (int i = 0; i < WORDS; i++) {
        char w[32];
        size_t n;
        if (i % 3 == 0) {
            n = strlen(common[i % 5]);
            memcpy(w, common[i % 5], n);
        } else {
            n = make_word(&x, w);
        }
        if (i % 7 == 1) {               /* non-ASCII: "Ü" + word + "ß" */
            memmove(w + 2, w, n);
            memcpy(w, "\xC3\x9C", 2);
            memcpy(w + n + 2, "\xC3\x9F", 2);
            n += 4;
        }
        memcpy(text + tl, w, n);
        tl += n;
        text[tl++] = ' ';
        uint8_t fold[64];
        size_t fl = sizeof fold;
        uint8_t *f = u8_casefold((const uint8_t *)w, n, NULL, UNINORM_NFC, fold, &fl);
        assert_ptr_equal(f, fold);
        const sb_symbol *s = sb_stemmer_stem(ref, f, (int)fl);
        int sl = sb_stemmer_length(ref);
        if (wl)
            want[wl++] = ' ';
        memcpy(want + wl, s, (size_t)sl);
        wl += (size_t)sl;
    }
    want[wl] = '\0';

    ds_tokenizer *t;
    assert_int_equal(ds_tokenizer_new(&t), 0);
    char *first = terms_of(t, text, tl);
    assert_string_equal(first, want);
    /* second pass over a warm (and churned) cache, and a fresh tokenizer */
    char *again = terms_of(t, text, tl);
    assert_string_equal(again, want);
    char *fresh = terms_of(NULL, text, tl);
    assert_string_equal(fresh, want);
    /* a short text after the churn equals a fresh tokenizer's output */
    const char *probe = "Running connections: errors, errors and more Errors \xC3\x9C";
    char *p1 = terms_of(t, probe, strlen(probe));
    char *p2 = terms_of(NULL, probe, strlen(probe));
    assert_string_equal(p1, p2);
    assert_string_equal(p1, "run connect error error and more error \xC3\xBC");

    free(first);
    free(again);
    free(fresh);
    free(p1);
    free(p2);
    ds_tokenizer_free(t);
    sb_stemmer_delete(ref);
    free(text);
    free(want);
}

static void test_deterministic(void **state)
{
    (void)state;
    const char *text = "Datasphere indexes knowledge nodes; \xC3\x89" "COLE Stra\xC3\x9F" "e v2 404";
    char *a = terms_of(NULL, text, strlen(text));
    ds_tokenizer *t;
    assert_int_equal(ds_tokenizer_new(&t), 0);
    for (int i = 0; i < 5; i++) {
        char *b = terms_of(t, text, strlen(text));
        assert_string_equal(a, b);
        free(b);
    }
    ds_tokenizer_free(t);
    free(a);
}

/* ---- equivalence with a reference analyzer ------------------------------
 * A large pseudo-random input set (ASCII words in mixed case, digits,
 * accented Latin, Greek, Cyrillic, CJK, combining marks, characters whose
 * folding grows or shrinks, invalid UTF-8, NULs, words around the cache
 * key/stem and term/raw length limits) is run through the tokenizer and
 * compared with a straightforward analyzer written here: no cache, every
 * word folded (table-lower for ASCII words, u8_casefold + NFC otherwise)
 * and stemmed on its own.  The tagged path must yield the same terms, a
 * non-zero tag must always be the one stored for the same raw word, tags
 * of immediately repeated short words must persist, and clearing resets. */

#define REF_RAW_MAX (4 * DS_TERM_MAX)

typedef struct ref_out {
    char *buf;          /* terms back to back */
    size_t blen, bcap;
    size_t *off, *len;  /* per term */
    uint64_t *key;      /* per term: id of its raw word (ASCII lowered) */
    int *cacheable;     /* per term: short ASCII word, stem short too */
    size_t n, cap;
} ref_out;

static void ref_push(ref_out *r, const uint8_t *term, size_t len, uint64_t key, int cacheable)
{
    if (r->blen + len > r->bcap) {
        r->bcap = (r->blen + len) * 2 + 256;
        r->buf = realloc(r->buf, r->bcap);
        assert_non_null(r->buf);
    }
    if (r->n == r->cap) {
        r->cap = r->cap * 2 + 64;
        r->off = realloc(r->off, r->cap * sizeof *r->off);
        r->len = realloc(r->len, r->cap * sizeof *r->len);
        r->key = realloc(r->key, r->cap * sizeof *r->key);
        r->cacheable = realloc(r->cacheable, r->cap * sizeof *r->cacheable);
        assert_true(r->off && r->len && r->key && r->cacheable);
    }
    memcpy(r->buf + r->blen, term, len);
    r->off[r->n] = r->blen;
    r->len[r->n] = len;
    r->key[r->n] = key;
    r->cacheable[r->n] = cacheable;
    r->blen += len;
    r->n++;
}

static void ref_reset(ref_out *r)
{
    r->blen = 0;
    r->n = 0;
}

static void ref_free(ref_out *r)
{
    free(r->buf);
    free(r->off);
    free(r->len);
    free(r->key);
    free(r->cacheable);
}

static int ref_is_word_char(const uint8_t *s, size_t left, int *k)
{
    if (s[0] < 0x80) {
        *k = 1;
        uint8_t c = s[0];
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    }
    ucs4_t uc;
    int n = u8_mbtoucr(&uc, s, left);
    if (n <= 0) {
        *k = 1;
        return 0;
    }
    *k = n;
    return uc_is_general_category(uc, UC_CATEGORY_L) || uc_is_general_category(uc, UC_CATEGORY_M) ||
           uc_is_general_category(uc, UC_CATEGORY_Nd);
}

static void ref_word(struct sb_stemmer *st, const uint8_t *w, size_t n, ref_out *out)
{
    if (n > REF_RAW_MAX)
        return;
    uint8_t low[REF_RAW_MAX];
    int ascii = 1;
    uint64_t key = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = w[i];
        if (c >= 0x80)
            ascii = 0;
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        low[i] = c;
        key = (key ^ c) * UINT64_C(1099511628211);
    }
    key |= 1;
    const uint8_t *f = low;
    size_t fl = n;
    uint8_t *folded = NULL;
    if (!ascii) {
        folded = u8_casefold(w, n, NULL, UNINORM_NFC, NULL, &fl);
        assert_non_null(folded);
        f = folded;
    }
    const sb_symbol *s = sb_stemmer_stem(st, f, (int)fl);
    assert_non_null(s);
    int sl = sb_stemmer_length(st);
    if (sl > 0 && sl <= DS_TERM_MAX)
        ref_push(out, s, (size_t)sl, key, ascii && n <= 20 && sl <= 20);
    free(folded);
}

static void ref_tokenize(struct sb_stemmer *st, const uint8_t *text, size_t len, ref_out *out)
{
    size_t i = 0, start = 0, wlen = 0;
    while (i < len) {
        int k;
        if (ref_is_word_char(text + i, len - i, &k)) {
            if (wlen == 0)
                start = i;
            wlen += (size_t)k;
        } else {
            if (wlen)
                ref_word(st, text + start, wlen, out);
            wlen = 0;
        }
        i += (size_t)k;
    }
    if (wlen)
        ref_word(st, text + start, wlen, out);
}

static uint64_t xs64(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static const char *const eq_words[] = {
    "the", "The", "THE", "of", "running", "Running", "connections", "errors", "Errors",
    "ERROR", "error", "a", "I", "v2", "404", "ipv6", "x86", "utf8", "generalization",
    "\xC3\xA9" "cole", "\xC3\x89" "COLE", "e\xCC\x81" "cole", "Stra\xC3\x9F" "e", "STRASSE",
    "\xCE\x9A\xCE\x91\xCE\x9B\xCE\x97\xCE\x9C\xCE\x95\xCE\xA1\xCE\x91",  /* ΚΑΛΗΜΕΡΑ */
    "\xCE\xA3\xCE\x9F\xCE\xA6\xCE\x9F\xCE\xA3",                          /* ΣΟΦΟΣ */
    "\xCF\x83\xCE\xBF\xCF\x86\xCE\xBF\xCF\x82",                          /* σοφος final */
    "\xCE\x90",                                 /* U+0390, folds to 3 code points */
    "\xE2\x84\xAA" "elvin",                     /* KELVIN SIGN */
    "\xC4\xB0" "stanbul",                       /* I WITH DOT ABOVE: grows */
    "\xEF\xAC\x81" "nance",                     /* fi ligature */
    "\xC5\x89",                                 /* n preceded by apostrophe: grows */
    "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",     /* 日本語 */
    "\xD0\x9F\xD0\xA0\xD0\x98\xD0\x92\xD0\x95\xD0\xA2",  /* ПРИВЕТ */
    "\xD9\xA4\xD9\xA0\xD9\xA4",                 /* Arabic-Indic digits */
    "nai\xCC\x88ve", "na\xC3\xAFve", "NA\xC3\x8FVE",
    "\xCC\x81",                                 /* a lone combining mark */
    "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",     /* 한국어 */
    "\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\xA8\xE0\xA5\x8D\xE0\xA4\xA6\xE0\xA5\x80",  /* हिन्दी */
    "\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3",     /* fullwidth ABC */
    "\xC7\x85" "ungla",                         /* titlecase DZ caron */
    "caf\xC3\xA9s", "CAF\xC3\x89S", "M\xC3\xBC" "ller", "\xC3\x9C" "BER",
};

static const char *const eq_seps[] = {
    " ", " ", " ", " ", "  ", ", ", ". ", "\t", "\n", "_", "-", "'", "::",
    "\0", "\xFF", "\x80", "\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xE2\x80\x94", "\xC2\xA0",
    "\xF0\x9F\x98\x80", "\xE3\x80\x82", "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80",
    "\xE2\x85\xAB",     /* ROMAN NUMERAL TWELVE (Nl): a separator */
    "\xC2\xB2",         /* SUPERSCRIPT TWO (No): a separator */
    "\xE2\x82",         /* truncated 3-byte sequence */
};

/* Code points (UTF-8) for random non-ASCII words. */
static const char *const eq_chars[] = {
    "a", "b", "e", "s", "T", "\xC3\xA9", "\xC3\x89", "\xC3\x9F", "\xCE\x90", "\xE2\x84\xAA",
    "\xE6\x97\xA5", "\xCC\x81", "\xEF\xAC\x81", "\xC5\x89", "\xC4\xB0", "\xCE\xA3", "\xD0\x96",
    "\xF0\x9D\x90\x80",     /* MATHEMATICAL BOLD CAPITAL A (4 bytes, L) */
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static size_t sep_len(const char *s)
{
    return s[0] ? strlen(s) : 1;        /* "\0" stands for one NUL byte */
}

/* Appends one random piece (a word, possibly glued to the next one, and a
 * separator) to |buf|; returns the new length (at most |cap|). */
static size_t eq_piece(uint64_t *x, char *buf, size_t len, size_t cap)
{
    char w[700];
    size_t n = 0;
    uint64_t r = xs64(x);
    switch (r % 10) {
    case 0: case 1: case 2: case 3: {         /* a common word */
        const char *s = eq_words[(r >> 8) % NELEM(eq_words)];
        n = strlen(s);
        memcpy(w, s, n);
        break;
    }
    case 4: case 5: {                         /* random ASCII, mixed case */
        static const char al[] = "abcdefghijklmnopqrstuvwxyzAEIOUST0123456789";
        size_t wl = 1 + (r >> 8) % 14;
        for (size_t i = 0; i < wl; i++)
            w[n++] = al[xs64(x) % (sizeof al - 1)];
        static const char *const suf[] = {"", "s", "ing", "ed", "ation", "ness", "ly", "ies"};
        const char *s = suf[(r >> 16) % NELEM(suf)];
        memcpy(w + n, s, strlen(s));
        n += strlen(s);
        break;
    }
    case 6: {                                 /* ASCII at a length boundary */
        static const size_t lens[] = {20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
                                      63, 64, 65, 66, 255, 256, 257, 300, 600};
        size_t wl = lens[(r >> 8) % NELEM(lens)];
        int digits = (r >> 20) % 4 == 0;
        for (size_t i = 0; i < wl; i++)
            w[n++] = digits ? (char)('0' + xs64(x) % 10) : (char)("abcdefgilmnoprstuyS"[xs64(x) % 19]);
        if (!digits && (r >> 24) % 2 && n >= 3) {       /* a stemmable ending */
            static const char *const suf[] = {"ing", "ies", "ess"};
            memcpy(w + n - 3, suf[(r >> 28) % 3], 3);
        }
        break;
    }
    case 7: case 8: {                         /* random non-ASCII word */
        static const size_t targets[] = {3, 8, 20, 24, 25, 26, 27, 28, 40, 64, 250, 254, 256, 258};
        size_t target = targets[(r >> 8) % NELEM(targets)];
        while (n < target) {
            const char *c = eq_chars[xs64(x) % NELEM(eq_chars)];
            size_t cl = strlen(c);
            if (n + cl > sizeof w)
                break;
            memcpy(w + n, c, cl);
            n += cl;
        }
        break;
    }
    default: {                                /* the same word twice */
        const char *s = eq_words[(r >> 8) % NELEM(eq_words)];
        n = strlen(s);
        memcpy(w, s, n);
        w[n++] = ' ';
        memcpy(w + n, s, n - 1);
        n += n - 1;
        break;
    }
    }
    if (len + n + 8 > cap)
        return len;
    memcpy(buf + len, w, n);
    len += n;
    if ((r >> 40) % 9 != 0) {                 /* else glued to the next word */
        const char *s = eq_seps[(r >> 44) % NELEM(eq_seps)];
        size_t sl = sep_len(s);
        memcpy(buf + len, s, sl);
        len += sl;
    }
    return len;
}

struct eq_ctx {
    const ref_out *want;
    size_t i;
    int check_repeat;   /* require a persisted tag for a repeated short word */
    int expect_zero;    /* tags were just cleared: first uses must be 0 */
};

static int eq_cb(const char *term, size_t len, void *ud)
{
    struct eq_ctx *c = ud;
    const ref_out *w = c->want;
    assert_true(c->i < w->n);
    assert_int_equal(strlen(term), len);
    assert_int_equal(len, w->len[c->i]);
    assert_memory_equal(term, w->buf + w->off[c->i], len);
    c->i++;
    return 0;
}

static int eq_tag_cb(const char *term, size_t len, uint64_t *tag, void *ud)
{
    struct eq_ctx *c = ud;
    const ref_out *w = c->want;
    size_t i = c->i;
    assert_true(i < w->n);
    assert_non_null(tag);
    assert_int_equal(len, w->len[i]);
    assert_memory_equal(term, w->buf + w->off[i], len);
    if (*tag != 0)          /* never the tag of another raw word */
        assert_true(*tag == w->key[i]);
    if (c->check_repeat && i > 0 && w->key[i - 1] == w->key[i] && w->cacheable[i])
        assert_true(*tag == w->key[i]);
    if (c->expect_zero) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = w->key[j] == w->key[i];
        if (!seen)
            assert_true(*tag == 0);
    }
    *tag = w->key[i];
    c->i++;
    return 0;
}

static void test_equivalence(void **state)
{
    (void)state;
    enum { DOCS = 8000, DOC_CAP = 4096 };
    struct sb_stemmer *st = sb_stemmer_new("english", "UTF_8");
    assert_non_null(st);
    ds_tokenizer *t, *fresh;
    assert_int_equal(ds_tokenizer_new(&t), 0);
    char *doc = malloc(DOC_CAP);
    assert_non_null(doc);
    ref_out want = {0};
    uint64_t x = UINT64_C(0x9E3779B97F4A7C15);
    size_t total_terms = 0;
    for (int d = 0; d < DOCS; d++) {
        size_t target = (size_t)(xs64(&x) % 1200), len = 0;
        while (len < target) {
            size_t nl = eq_piece(&x, doc, len, DOC_CAP);
            if (nl == len)
                break;
            len = nl;
        }
        if (d % 5 == 0 && len > 0)
            len -= xs64(&x) % len;    /* cut anywhere, even inside a character */
        ref_reset(&want);
        ref_tokenize(st, (const uint8_t *)doc, len, &want);
        total_terms += want.n;

        struct eq_ctx c = {&want, 0, 1, 0};
        if (d % 500 == 250) {
            ds_tokenizer_clear_tags(t);
            c.expect_zero = 1;
        }
        assert_int_equal(ds_tokenize_tagged(t, doc, len, eq_tag_cb, &c), 0);
        assert_int_equal(c.i, want.n);
        c = (struct eq_ctx){&want, 0, 0, 0};
        assert_int_equal(ds_tokenize(t, doc, len, eq_cb, &c), 0);
        assert_int_equal(c.i, want.n);
        if (d % 50 == 0) {            /* a cold cache agrees too */
            assert_int_equal(ds_tokenizer_new(&fresh), 0);
            c = (struct eq_ctx){&want, 0, 0, 0};
            assert_int_equal(ds_tokenize(fresh, doc, len, eq_cb, &c), 0);
            assert_int_equal(c.i, want.n);
            c = (struct eq_ctx){&want, 0, 1, 1};
            assert_int_equal(ds_tokenize_tagged(fresh, doc, len, eq_tag_cb, &c), 0);
            assert_int_equal(c.i, want.n);
            ds_tokenizer_free(fresh);
        }
    }
    assert_true(total_terms > 100000);      /* the set is really large */
    ref_free(&want);
    free(doc);
    ds_tokenizer_free(t);
    sb_stemmer_delete(st);
}

/* Every byte value, at every offset from the start and the end of the
 * text, in words that end exactly at, just before or just after a multiple
 * of 64 bytes (the tokenizer classifies 64-byte windows at a time), and in
 * runs longer than a window: the same terms as the reference. */
static void test_equivalence_bytes(void **state)
{
    (void)state;
    enum { DOCS = 6000, DOC_CAP = 1024 };
    struct sb_stemmer *st = sb_stemmer_new("english", "UTF_8");
    assert_non_null(st);
    ds_tokenizer *t;
    assert_int_equal(ds_tokenizer_new(&t), 0);
    uint8_t *doc = malloc(DOC_CAP);
    assert_non_null(doc);
    ref_out want = {0};
    uint64_t x = UINT64_C(0xD1B54A32D192ED03);
    size_t total_terms = 0;
    static const char common[] = "abcxyzABCXYZ0189 ";
    for (int d = 0; d < DOCS; d++) {
        size_t len = (size_t)(xs64(&x) % DOC_CAP);
        int kind = d % 4;
        for (size_t i = 0; i < len; i++) {
            uint64_t r = xs64(&x);
            if (kind == 0)                          /* any byte at all */
                doc[i] = (uint8_t)(r >> 8);
            else if (kind == 1 && r % 4 == 0)       /* mostly ASCII */
                doc[i] = (uint8_t)(r >> 8);
            else
                doc[i] = (uint8_t)common[(r >> 8) % (sizeof common - 1)];
        }
        if (kind == 2 && len > 0) {                 /* word edges near multiples of 64 */
            for (size_t e = 64; e + 2 < len; e += 64) {
                size_t at = e - 2 + (size_t)(xs64(&x) % 5);
                doc[at] = ' ';
            }
        }
        if (kind == 3 && len > 0) {                 /* one long run, then one high byte */
            size_t a = (size_t)(xs64(&x) % len), n = (size_t)(xs64(&x) % 300);
            for (size_t i = a; i < len && i < a + n; i++)
                doc[i] = (uint8_t)"abcdefgh0123"[xs64(&x) % 12];
            if (a + n < len)
                doc[a + n] = (uint8_t)(0x80 + xs64(&x) % 0x80);
        }
        ref_reset(&want);
        ref_tokenize(st, doc, len, &want);
        total_terms += want.n;
        struct eq_ctx c = {&want, 0, 0, 0};
        assert_int_equal(ds_tokenize(t, (const char *)doc, len, eq_cb, &c), 0);
        assert_int_equal(c.i, want.n);
        c = (struct eq_ctx){&want, 0, 1, 0};
        assert_int_equal(ds_tokenize_tagged(t, (const char *)doc, len, eq_tag_cb, &c), 0);
        assert_int_equal(c.i, want.n);
    }
    assert_true(total_terms > 50000);
    ref_free(&want);
    free(doc);
    ds_tokenizer_free(t);
    sb_stemmer_delete(st);
}

struct tag_probe {
    uint64_t seen[8];
    size_t n;
    uint64_t set;
};

static int tag_probe_cb(const char *term, size_t len, uint64_t *tag, void *ud)
{
    (void)term;
    (void)len;
    struct tag_probe *p = ud;
    if (p->n < 8)
        p->seen[p->n++] = *tag;
    *tag = p->set;
    return 0;
}

static void test_tags(void **state)
{
    (void)state;
    ds_tokenizer *t;
    assert_int_equal(ds_tokenizer_new(&t), 0);
    /* a new word reads 0, then keeps its tag, also across calls */
    struct tag_probe p = {.set = 7};
    assert_int_equal(ds_tokenize_tagged(t, "kettle kettle", 13, tag_probe_cb, &p), 0);
    assert_int_equal(p.n, 2);
    assert_true(p.seen[0] == 0 && p.seen[1] == 7);
    p = (struct tag_probe){.set = 7};
    assert_int_equal(ds_tokenize_tagged(t, "KETTLE", 6, tag_probe_cb, &p), 0);
    assert_true(p.n == 1 && (p.seen[0] == 0 || p.seen[0] == 7));
    /* plain tokenizing of cached words leaves tags alone */
    struct collect c = {0};
    assert_int_equal(ds_tokenize(t, "kettle", 6, collect_cb, &c), 0);
    free(c.buf);
    p = (struct tag_probe){.set = 9};
    assert_int_equal(ds_tokenize_tagged(t, "kettle", 6, tag_probe_cb, &p), 0);
    assert_true(p.n == 1 && p.seen[0] == 7);
    /* clearing resets */
    ds_tokenizer_clear_tags(t);
    p = (struct tag_probe){.set = 3};
    assert_int_equal(ds_tokenize_tagged(t, "kettle", 6, tag_probe_cb, &p), 0);
    assert_true(p.n == 1 && p.seen[0] == 0);
    /* a word too long to cache always reads 0 */
    char lw[2 * 200 + 1];
    memset(lw, '5', 200);
    lw[200] = ' ';
    memset(lw + 201, '5', 200);
    p = (struct tag_probe){.set = 11};
    assert_int_equal(ds_tokenize_tagged(t, lw, 401, tag_probe_cb, &p), 0);
    assert_int_equal(p.n, 0);       /* > DS_TERM_MAX: no term at all */
    memset(lw, '5', 60);
    lw[60] = ' ';
    memset(lw + 61, '5', 60);
    p = (struct tag_probe){.set = 11};
    assert_int_equal(ds_tokenize_tagged(t, lw, 121, tag_probe_cb, &p), 0);
    assert_true(p.n == 2 && p.seen[0] == 0 && p.seen[1] == 0);
    ds_tokenizer_free(t);
}

/* Prefaulting the cache keeps what it holds: a cached word keeps its tag
 * and its term, and a new word still starts at 0. */
static void test_prefault_keeps_cache(void **state)
{
    (void)state;
    ds_tokenizer *t;
    assert_int_equal(ds_tokenizer_new(&t), 0);
    struct tag_probe p = {.set = 5};
    assert_int_equal(ds_tokenize_tagged(t, "kettles boiling", 15, tag_probe_cb, &p), 0);
    assert_true(p.n == 2 && p.seen[0] == 0 && p.seen[1] == 0);
    ds_tokenizer_prefault(t);
    ds_tokenizer_prefault(t);                       /* twice is harmless */
    p = (struct tag_probe){.set = 6};
    assert_int_equal(ds_tokenize_tagged(t, "boiling kettles teapot", 22, tag_probe_cb, &p), 0);
    assert_true(p.n == 3 && p.seen[0] == 5 && p.seen[1] == 5 && p.seen[2] == 0);
    struct collect c = {0};
    assert_int_equal(ds_tokenize(t, "kettles boiling teapot", 22, collect_cb, &c), 0);
    assert_string_equal(c.buf, "kettl boil teapot");
    free(c.buf);
    ds_tokenizer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ascii_words),
        cmocka_unit_test(test_separators),
        cmocka_unit_test(test_stemming),
        cmocka_unit_test(test_unicode_folding),
        cmocka_unit_test(test_digits),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_overlong),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_cache_correctness),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_prefault_keeps_cache),
        cmocka_unit_test(test_equivalence),
        cmocka_unit_test(test_equivalence_bytes),
        cmocka_unit_test(test_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
