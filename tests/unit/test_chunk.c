/*
 * test_chunk.c - unit tests of the chunker: short and blank texts,
 * headings, paragraph packing, cuts of over-long paragraphs (line end,
 * whitespace, UTF-8 boundary), coverage of all content in order, and
 * argument checking.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/chunk.h"
#include "ds/error.h"

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Checks the invariants every chunking must hold: non-empty chunks within
 * max, in order, not overlapping, no whitespace at their edges, and their
 * non-whitespace bytes, concatenated, equal those of the input. */
static void check_chunks(const char *text, size_t len, size_t max,
                         const ds_chunk *c, size_t n)
{
    char *a = malloc(len + 1), *b = malloc(len + 1);
    assert_non_null(a);
    assert_non_null(b);
    size_t an = 0, bn = 0, prev_end = 0;
    for (size_t i = 0; i < len; i++)
        if (!is_ws(text[i]))
            a[an++] = text[i];
    for (size_t k = 0; k < n; k++) {
        assert_true(c[k].len > 0);
        assert_true(c[k].len <= max);
        assert_true(c[k].off >= prev_end);
        assert_true(c[k].off + c[k].len <= len);
        assert_false(is_ws(text[c[k].off]));
        assert_false(is_ws(text[c[k].off + c[k].len - 1]));
        for (size_t i = c[k].off; i < c[k].off + c[k].len; i++)
            if (!is_ws(text[i]))
                b[bn++] = text[i];
        prev_end = c[k].off + c[k].len;
    }
    assert_int_equal(an, bn);
    assert_memory_equal(a, b, an);
    free(a);
    free(b);
}

static void test_short_text(void **state)
{
    (void)state;
    const char *text = "\n\n  Hello world.\n\nSecond paragraph.\n\n";
    ds_chunk *c = NULL;
    size_t n = 99;
    assert_int_equal(ds_chunk_text(text, strlen(text), DS_CHUNK_TARGET, DS_CHUNK_MAX, &c, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].off, 4);
    assert_int_equal(c[0].len, strlen("Hello world.\n\nSecond paragraph."));
    free(c);

    /* headings do not split a text shorter than the target */
    text = "# Title\nintro\n## Part\nbody";
    assert_int_equal(ds_chunk_text(text, strlen(text), DS_CHUNK_TARGET, DS_CHUNK_MAX, &c, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].off, 0);
    assert_int_equal(c[0].len, strlen(text));
    free(c);
}

static void test_blank_text(void **state)
{
    (void)state;
    ds_chunk *c = (ds_chunk *)1;
    size_t n = 99;
    assert_int_equal(ds_chunk_text(" \n\t\r\n  \n", 8, 100, 200, &c, &n), 0);
    assert_int_equal(n, 0);
    assert_null(c);
    n = 99;
    assert_int_equal(ds_chunk_text("", 0, 100, 200, &c, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ds_chunk_text(NULL, 0, 100, 200, &c, &n), 0);
    assert_int_equal(n, 0);
}

static void test_invalid_args(void **state)
{
    (void)state;
    ds_chunk *c;
    size_t n;
    assert_int_equal(ds_chunk_text("abc", 3, 0, 100, &c, &n), DS_ERR_INVALID);
    assert_int_equal(ds_chunk_text("abc", 3, 100, 99, &c, &n), DS_ERR_INVALID);
    assert_int_equal(ds_chunk_text("abc", 3, 100, 100, NULL, &n), DS_ERR_INVALID);
    assert_int_equal(ds_chunk_text("abc", 3, 100, 100, &c, NULL), DS_ERR_INVALID);
    assert_int_equal(ds_chunk_text(NULL, 3, 100, 100, &c, &n), DS_ERR_INVALID);
    /* target == max is fine */
    assert_int_equal(ds_chunk_text("abc", 3, 100, 100, &c, &n), 0);
    assert_int_equal(n, 1);
    free(c);
}

/* Appends |s| to the buffer. */
static void cat(char *buf, size_t *len, const char *s)
{
    size_t n = strlen(s);
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

static void test_headings(void **state)
{
    (void)state;
    char text[4096];
    size_t len = 0;
    const char *para = "Some text that fills the section with words.\n";
    cat(text, &len, "# Title\n## First\n");
    cat(text, &len, para);
    cat(text, &len, "\n## Second\n");
    cat(text, &len, para);
    cat(text, &len, "#include <stdio.h> is not a heading\n");
    cat(text, &len, "#hashtag neither\n");
    cat(text, &len, "```sh\n# a shell comment inside a fence\n```\n");
    cat(text, &len, "### Third\n");
    cat(text, &len, para);

    ds_chunk *c;
    size_t n;
    assert_int_equal(ds_chunk_text(text, len, 100, 400, &c, &n), 0);
    check_chunks(text, len, 400, c, n);
    assert_int_equal(n, 3);
    /* consecutive headings stay together */
    assert_true(strncmp(text + c[0].off, "# Title\n## First\nSome", 21) == 0);
    assert_true(strncmp(text + c[1].off, "## Second\n", 10) == 0);
    assert_true(strncmp(text + c[2].off, "### Third\n", 10) == 0);
    /* the fenced comment and #include stayed inside the second chunk */
    const char *fence = strstr(text, "# a shell");
    assert_true((size_t)(fence - text) > c[1].off && (size_t)(fence - text) < c[1].off + c[1].len);
    free(c);
}

static void test_packing(void **state)
{
    (void)state;
    /* 100 paragraphs of 50 bytes, target 500: packed, never above target */
    char *text = malloc(100 * 52 + 1);
    size_t len = 0;
    for (int i = 0; i < 100; i++) {
        char p[64];
        snprintf(p, sizeof p, "Paragraph %03d holds a sentence of fifty bytes..\n\n", i);
        assert_int_equal(strlen(p), 49);
        cat(text, &len, p);
    }
    ds_chunk *c;
    size_t n;
    assert_int_equal(ds_chunk_text(text, len, 500, 1000, &c, &n), 0);
    check_chunks(text, len, 1000, c, n);
    assert_true(n >= 10 && n <= 12);
    for (size_t k = 0; k < n; k++) {
        assert_true(c[k].len <= 500);
        if (k + 1 < n)
            assert_true(c[k].len >= 400);   /* packed, not one per paragraph */
        /* boundaries fall between paragraphs */
        assert_true(strncmp(text + c[k].off, "Paragraph", 9) == 0);
    }
    free(c);
    free(text);
}

/* A deterministic mix of headings, paragraphs, code, blank runs, CRLF,
 * long lines with and without spaces. */
static char *make_document(size_t *len_out, uint32_t seed)
{
    size_t cap = 400000, len = 0;
    char *t = malloc(cap + 1);
    assert_non_null(t);
    uint32_t x = seed;
#define RND() (x ^= x << 13, x ^= x >> 17, x ^= x << 5, x)
    static const char *words[] = {"alpha", "beta", "gamma", "naïve", "日本語",
                                  "error::Kind", "x", "connection", "🙂", "\t"};
    while (len < cap - 60000) {     /* one element adds < 50 KB */
        uint32_t kind = RND() % 10;
        if (kind == 0) {
            cat(t, &len, (RND() & 1) ? "# Heading\n" : "## Sub heading\r\n");
        } else if (kind == 1) {
            cat(t, &len, "\n\n   \n");
        } else if (kind == 2) {             /* a long line without spaces */
            size_t n = RND() % 9000;
            for (size_t i = 0; i < n; i++)
                cat(t, &len, (i % 3) ? "é" : "z");
            cat(t, &len, "\n");
        } else {                            /* a paragraph of lines */
            size_t lines = 1 + RND() % ((kind == 3) ? 3 : 40);
            for (size_t l = 0; l < lines; l++) {
                size_t nw = RND() % ((kind == 3) ? 1500 : 15);
                for (size_t w = 0; w < nw; w++) {
                    cat(t, &len, words[RND() % 10]);
                    cat(t, &len, " ");
                }
                cat(t, &len, "\n");
            }
            cat(t, &len, "\n");
        }
    }
#undef RND
    *len_out = len;
    return t;
}

static void test_long_document(void **state)
{
    (void)state;
    for (uint32_t seed = 1; seed <= 4; seed++) {
        size_t len;
        char *text = make_document(&len, seed * 2654435761u);
        ds_chunk *c;
        size_t n;
        assert_int_equal(ds_chunk_text(text, len, DS_CHUNK_TARGET, DS_CHUNK_MAX, &c, &n), 0);
        assert_true(n > len / DS_CHUNK_MAX);
        check_chunks(text, len, DS_CHUNK_MAX, c, n);
        for (size_t k = 0; k < n; k++) {    /* never inside a character */
            assert_true(((unsigned char)text[c[k].off] & 0xC0) != 0x80);
            size_t e = c[k].off + c[k].len;
            assert_true(e == len || ((unsigned char)text[e] & 0xC0) != 0x80);
        }
        free(c);
        /* other sizes, including target == max */
        assert_int_equal(ds_chunk_text(text, len, 200, 200, &c, &n), 0);
        check_chunks(text, len, 200, c, n);
        free(c);
        assert_int_equal(ds_chunk_text(text, len, 10, 64, &c, &n), 0);
        check_chunks(text, len, 64, c, n);
        free(c);
        free(text);
    }
}

static void test_multibyte_line(void **state)
{
    (void)state;
    /* 10 KB on one line, no spaces: 2-, 3- and 4-byte characters */
    static const char *chars[] = {"é", "語", "🙂", "a", "ß", "€"};
    char *text = malloc(10300);
    size_t len = 0;
    for (int i = 0; len < 10240; i++)
        cat(text, &len, chars[(i * 7 + i / 3) % 6]);
    ds_chunk *c;
    size_t n;
    for (size_t max = 4; max <= DS_CHUNK_MAX; max = max * 3 + 1) {
        size_t target = max / 2 ? max / 2 : 1;
        assert_int_equal(ds_chunk_text(text, len, target, max, &c, &n), 0);
        check_chunks(text, len, max, c, n);
        size_t pos = 0;
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(c[k].off, pos);         /* no gap: nothing trimmed */
            assert_true(((unsigned char)text[c[k].off] & 0xC0) != 0x80);
            pos = c[k].off + c[k].len;
        }
        assert_int_equal(pos, len);
        free(c);
    }
    free(text);
}

static void test_cut_preferences(void **state)
{
    (void)state;
    /* one paragraph of 51 lines of 99 bytes (a space near each line
     * start): cut only at line ends, no small last piece */
    char *text = malloc(8000);
    size_t len = 0;
    for (int i = 0; i < 51; i++) {
        char line[128];
        memset(line, 'a' + i % 26, 98);
        line[5] = ' ';
        line[98] = '\n';
        line[99] = '\0';
        cat(text, &len, line);
    }
    ds_chunk *c;
    size_t n;
    assert_int_equal(ds_chunk_text(text, len, 500, 1000, &c, &n), 0);
    check_chunks(text, len, 1000, c, n);
    assert_true(n >= 6);
    for (size_t k = 0; k < n; k++) {
        size_t e = c[k].off + c[k].len;
        assert_true(e == len - 1 || text[e] == '\n');
        assert_true(c[k].len >= 250);                  /* no crumbs */
    }
    free(c);

    /* one 6000-byte line of words: cut only at whitespace */
    len = 0;
    while (len < 6000)
        cat(text, &len, "word12 ");
    assert_int_equal(ds_chunk_text(text, len, 500, 1000, &c, &n), 0);
    check_chunks(text, len, 1000, c, n);
    for (size_t k = 0; k < n; k++) {
        assert_true(strncmp(text + c[k].off, "word12", 6) == 0);
        size_t e = c[k].off + c[k].len;
        assert_true(e == len - 1 || text[e] == ' ');
    }
    free(c);
    free(text);
}

static void test_garbage(void **state)
{
    (void)state;
    /* invalid UTF-8 (runs of continuation bytes), NULs, '#' and '\n' */
    char *text = malloc(50000);
    uint32_t x = 99;
    for (size_t i = 0; i < 50000; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        static const char pick[] = {'\x80', '\xBF', '#', '\n', ' ', 'a', '\0', '`', '\xF0', '~'};
        text[i] = pick[x % 10];
    }
    ds_chunk *c;
    size_t n;
    assert_int_equal(ds_chunk_text(text, 50000, 100, 300, &c, &n), 0);
    check_chunks(text, 50000, 300, c, n);
    free(c);
    memset(text, '\x80', 50000);
    assert_int_equal(ds_chunk_text(text, 50000, 1, 1, &c, &n), 0);
    check_chunks(text, 50000, 1, c, n);
    assert_int_equal(n, 50000);
    free(c);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_text),
        cmocka_unit_test(test_blank_text),
        cmocka_unit_test(test_invalid_args),
        cmocka_unit_test(test_headings),
        cmocka_unit_test(test_packing),
        cmocka_unit_test(test_long_document),
        cmocka_unit_test(test_multibyte_line),
        cmocka_unit_test(test_cut_preferences),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
