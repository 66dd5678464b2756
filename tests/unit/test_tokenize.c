/*
 * test_tokenize.c - unit tests of the text analyzer: word splitting,
 * ASCII and Unicode case folding, English stemming, digits, invalid
 * UTF-8, over-long words, the callback's stop value, and that the stem
 * cache never changes the output (checked against libstemmer directly).
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
#include <uninorm.h>

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
