/*
 * chunk.c - splits long text (transcript turns, notes, added files) into
 * chunks that are each a readable, searchable unit.  The text is read as
 * lines: blank lines end a paragraph, a Markdown ATX heading ("#" to
 * "######" then a space or the line end, outside ``` / ~~~ code fences)
 * is a paragraph of its own that starts a new chunk.  Paragraphs are
 * packed into a chunk while it stays within the target size; a paragraph
 * longer than the maximum is cut at a line end, else at whitespace, else
 * at a UTF-8 character boundary, preferring cuts in the second half of
 * the allowed window so that no piece is tiny.  Chunks are byte ranges of
 * the input, in order, never overlapping, and together hold every
 * non-whitespace byte; blank lines and whitespace at their edges are
 * trimmed.
 */
#include "core/chunk.h"

#include <stdlib.h>

#include "ds/error.h"

struct chunker {
    const char *text;
    size_t target, max;
    ds_chunk *out;
    size_t count, cap;
    int has;            /* a chunk is being packed: [cs, ce) */
    int only_headings;  /* ... and holds nothing but headings */
    size_t cs, ce;
};

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Appends [a, b) trimmed of whitespace at both ends, if anything is left. */
static int push(struct chunker *k, size_t a, size_t b)
{
    while (a < b && is_space((unsigned char)k->text[a]))
        a++;
    while (b > a && is_space((unsigned char)k->text[b - 1]))
        b--;
    if (a == b)
        return 0;
    if (k->count == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 16;
        ds_chunk *p = realloc(k->out, cap * sizeof *p);
        if (!p)
            return DS_ERR_NOMEM;
        k->out = p;
        k->cap = cap;
    }
    k->out[k->count].off = a;
    k->out[k->count].len = b - a;
    k->count++;
    return 0;
}

static int flush(struct chunker *k)
{
    if (!k->has)
        return 0;
    k->has = 0;
    return push(k, k->cs, k->ce);
}

/* Where to end the next piece of [pos, end) (end - pos > max): the piece
 * is [pos, *cut) and the rest starts at *next. */
static void find_cut(const struct chunker *k, size_t pos, size_t end,
                     size_t *cut, size_t *next)
{
    const unsigned char *s = (const unsigned char *)k->text;
    size_t hi = pos + k->max;           /* the piece is at most [pos, hi) */
    if (end - pos < 2 * k->max)         /* two balanced pieces rather than max + crumb */
        hi = pos + (end - pos + 1) / 2;
    size_t lo = pos + (hi - pos) / 2;   /* prefer cuts in [lo, hi] */
    if (lo == pos)
        lo = pos + 1;

    for (size_t i = hi; i >= lo; i--) { /* a line end: s[i] == '\n' */
        if (s[i] == '\n') {
            *cut = i;
            *next = i + 1;
            return;
        }
    }
    for (size_t i = hi; i >= lo; i--) { /* whitespace */
        if (is_space(s[i])) {
            size_t j = i + 1;
            while (j < end && is_space(s[j]))
                j++;
            *cut = i;
            *next = j;
            return;
        }
    }
    /* a character boundary: the nearest start of a character at or
     * before hi (a 4-byte character has 3 continuation bytes 10xxxxxx),
     * else after hi within max; on invalid UTF-8 any byte will do */
    size_t i = hi;
    while (i > pos && hi - i < 3 && (s[i] & 0xC0) == 0x80)
        i--;
    if (i == pos || (s[i] & 0xC0) == 0x80) {
        i = hi;
        while (i < pos + k->max && i - hi < 3 && (s[i] & 0xC0) == 0x80)
            i++;
        if ((s[i] & 0xC0) == 0x80)
            i = hi;
    }
    *cut = i;
    *next = i;
}

/* Adds the paragraph [bs, be) (no blank lines inside). */
static int add_block(struct chunker *k, size_t bs, size_t be, int heading)
{
    int rc;
    if (k->has && heading && !k->only_headings && (rc = flush(k)))
        return rc;
    /* full; but headings keep their first paragraph when it fits in max */
    if (k->has && be - k->cs > k->target &&
        !(k->only_headings && !heading && be - k->cs <= k->max) && (rc = flush(k)))
        return rc;
    if (!k->has) {
        size_t pos = bs;
        while (be - pos > k->max) {
            size_t cut, next;
            find_cut(k, pos, be, &cut, &next);
            if ((rc = push(k, pos, cut)))
                return rc;
            pos = next;
        }
        k->has = 1;
        k->cs = pos;
        k->only_headings = heading;
    } else {
        k->only_headings &= heading;
    }
    k->ce = be;
    return 0;
}

static int is_blank_line(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_space((unsigned char)s[i]))
            return 0;
    return 1;
}

static int is_heading(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && i < 7 && s[i] == '#')
        i++;
    return i >= 1 && i <= 6 && (i == n || s[i] == ' ' || s[i] == '\t' || s[i] == '\r');
}

static int is_fence(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && i < 3 && s[i] == ' ')
        i++;
    return n - i >= 3 && (s[i] == '`' || s[i] == '~') && s[i + 1] == s[i] && s[i + 2] == s[i];
}

int ds_chunk_text(const char *text, size_t len, size_t target, size_t max,
                  ds_chunk **out, size_t *count)
{
    if (!out || !count || (!text && len) || target == 0 || max < target)
        return DS_ERR_INVALID;
    *out = NULL;
    *count = 0;

    struct chunker k = {.text = text, .target = target, .max = max};
    size_t first = len, last = 0;   /* the non-blank span [first, last) */
    for (size_t i = 0; i < len; i++) {
        if (!is_space((unsigned char)text[i])) {
            if (first == len)
                first = i;
            last = i + 1;
        }
    }
    if (first == len)
        return 0;
    int rc = 0;
    if (last - first <= target) {
        rc = push(&k, first, last);
        goto done;
    }

    int in_fence = 0;
    size_t bs = 0, be = 0;
    int in_block = 0;
    for (size_t ls = 0; ls < len && rc == 0;) {
        size_t le = ls;
        while (le < len && text[le] != '\n')
            le++;
        const char *line = text + ls;
        size_t n = le - ls;
        if (is_blank_line(line, n)) {
            if (in_block)
                rc = add_block(&k, bs, be, 0);
            in_block = 0;
        } else if (!in_fence && is_heading(line, n)) {
            if (in_block)
                rc = add_block(&k, bs, be, 0);
            in_block = 0;
            if (rc == 0)
                rc = add_block(&k, ls, le, 1);
        } else {
            if (is_fence(line, n))
                in_fence = !in_fence;
            if (!in_block) {
                in_block = 1;
                bs = ls;
            }
            be = le;
        }
        ls = le + 1;
    }
    if (rc == 0 && in_block)
        rc = add_block(&k, bs, be, 0);
    if (rc == 0)
        rc = flush(&k);
done:
    if (rc) {
        free(k.out);
        return rc;
    }
    *out = k.out;
    *count = k.count;
    return 0;
}
