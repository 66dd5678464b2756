/*
 * transcript.c - parser for Claude Code session transcripts (JSON Lines).
 * Each complete line is sanitized (invalid UTF-8 and lone UTF-16
 * surrogate escapes become U+FFFD, since jansson rejects both), parsed on
 * its own with jansson, and turned into turns: user and assistant prose,
 * the gist of each tool call and of each tool result.  Entries that are
 * not the conversation (sidechains, meta, compaction summaries, other
 * types) and unparsable or over-long lines are skipped and counted, never
 * fatal.  System reminders and Claude Code's slash-command wrappers are
 * stripped from user text.  Self-contained (jansson only) so the fuzz
 * target links it alone.  See transcript.h for the contract.
 */
#include "core/transcript.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ds/error.h"
#include "core/redact.h"

#define GIST_USE 300           /* bytes of a tool call's key input */
#define GIST_DUMP 16384        /* bytes of a JSON input dumped before redaction */
#define GIST_RESULT 500        /* bytes of a tool result */
#define GIST_LINES 8           /* lines of a tool result */
#define RECENT_TOOLS 64        /* tool_use ids remembered to name results */
#define ELLIPSIS "\xE2\x80\xA6"

/* ---- a growable string ---------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_put(sbuf *b, const void *d, size_t n)
{
    if (b->cap - b->len <= n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= n) {
            if (cap > SIZE_MAX / 2) return DS_ERR_NOMEM;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return DS_ERR_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int sb_str(sbuf *b, const char *s) { return sb_put(b, s, strlen(s)); }

/* Redacts secrets in |b| in place.  Runs before any text is cut: a cut
 * could leave a prefix of a secret that no matcher recognises. */
static int sb_redact(sbuf *b)
{
    if (!b->len) return 0;
    char *out;
    size_t n;
    int rc = ds_redact(b->p, b->len, &out, &n, NULL);
    if (rc) return rc;
    b->len = 0;
    rc = sb_put(b, out, n);
    free(out);
    return rc;
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at |s| (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;            /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;            /* <= U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return len;
}

/* Largest cut <= |n| of the valid UTF-8 text |s| that ends on a character
 * boundary. */
static size_t utf8_cut(const char *s, size_t n)
{
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    return n;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The code unit of a "\uXXXX" escape at |s| (n bytes left), or -1. */
static long unit_at(const unsigned char *s, size_t n)
{
    if (n < 6 || s[0] != '\\' || s[1] != 'u') return -1;
    long v = 0;
    for (int k = 2; k < 6; k++) {
        int h = hexval(s[k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Makes |in|/|n| acceptable to jansson: invalid UTF-8 bytes become U+FFFD
 * and, inside strings, lone surrogate escapes (JavaScript may write half
 * of an emoji) become "\ufffd".  Copies only when something changes. */
static int sanitize(sbuf *scratch, const char *in, size_t n, const char **out, size_t *outn)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, copied = 0;
    int in_str = 0, changed = 0, rc = 0;
    scratch->len = 0;
    while (i < n && !rc) {
        unsigned c = s[i];
        const char *rep = NULL;
        size_t skip = 1;
        if (c >= 0x80) {
            size_t l = utf8_seq(s + i, n - i);
            if (l) skip = l;
            else rep = "\xEF\xBF\xBD";
        } else if (c == '"') {
            in_str = !in_str;
        } else if (c == '\\' && in_str) {
            long u = unit_at(s + i, n - i);
            if (u >= 0xD800 && u <= 0xDBFF) {
                long v = unit_at(s + i + 6, n - i - 6);
                if (v >= 0xDC00 && v <= 0xDFFF) skip = 12;
                else { rep = "\\ufffd"; skip = 6; }
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                rep = "\\ufffd";
                skip = 6;
            } else {
                skip = i + 1 < n ? 2 : 1;
            }
        }
        if (rep) {
            changed = 1;
            rc = sb_put(scratch, in + copied, i - copied);
            if (!rc) rc = sb_str(scratch, rep);
            copied = i + skip;
        }
        i += skip;
    }
    if (rc) return rc;
    if (!changed) {
        *out = in;
        *outn = n;
        return 0;
    }
    rc = sb_put(scratch, in + copied, n - copied);
    *out = scratch->p;
    *outn = scratch->len;
    return rc;
}

/* ---- ISO 8601 ------------------------------------------------------------- */

static int digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9') return 0;
        *v = *v * 10 + (s[k] - '0');
    }
    return 1;
}

/* Days from 1970-01-01 to |y|-|m|-|d| in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DDTHH:MM:SS[.fff...][Z|+hh:mm|+hhmm|+hh]" (no zone means UTC)
 * to milliseconds since the epoch; 0 when malformed. */
static int64_t parse_time(const char *s)
{
    int y, mo, d, h, mi, sec;
    size_t n = strlen(s);
    if (n < 19 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return 0;
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || sec > 60)
        return 0;
    const char *p = s + 19;
    int ms = 0;
    if (*p == '.' || *p == ',') {
        p++;
        int k = 0;
        if (*p < '0' || *p > '9') return 0;
        for (; *p >= '0' && *p <= '9'; p++, k++)
            if (k < 3) ms = ms * 10 + (*p - '0');
        for (; k < 3; k++) ms *= 10;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om = 0;
        p++;
        if (!digits(p, 2, &oh)) return 0;
        p += 2;
        if (*p == ':') p++;
        if (*p) {
            if (!digits(p, 2, &om)) return 0;
            p += 2;
        }
        if (oh > 23 || om > 59) return 0;
        off = sign * (oh * 60 + om);
    }
    if (*p) return 0;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off * 60;
    return t * 1000 + ms;
}

/* ---- text helpers --------------------------------------------------------- */

static int is_blank(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static const char *find(const char *s, size_t n, const char *pat)
{
    size_t m = strlen(pat);
    for (const char *p = s; (size_t)(s + n - p) >= m; p++) {
        p = memchr(p, pat[0], (size_t)(s + n - p));
        if (!p || (size_t)(s + n - p) < m) return NULL;
        if (memcmp(p, pat, m) == 0) return p;
    }
    return NULL;
}

/* Trims ASCII blanks at both ends of |b| in place. */
static void trim(sbuf *b)
{
    if (!b->p) return;              /* nothing was ever put: empty, no storage */
    size_t a = 0, e = b->len;
    while (a < e && is_blank((unsigned char)b->p[a])) a++;
    while (e > a && is_blank((unsigned char)b->p[e - 1])) e--;
    memmove(b->p, b->p + a, e - a);
    b->len = e - a;
    b->p[b->len] = '\0';
}

/* Appends |s|/|n| to |b| without any <tag>...</tag> element (an
 * unterminated one runs to the end). */
static int put_without(sbuf *b, const char *s, size_t n, const char *open, const char *close)
{
    size_t lo = strlen(open), lc = strlen(close);
    while (n) {
        const char *o = find(s, n, open);
        if (!o) return sb_put(b, s, n);
        int rc = sb_put(b, s, (size_t)(o - s));
        if (rc) return rc;
        const char *c = find(o + lo, n - (size_t)(o - s) - lo, close);
        if (!c) return 0;
        n -= (size_t)(c + lc - s);
        s = c + lc;
    }
    return 0;
}

/* Content of the first <tag>...</tag> in |s|, or NULL. */
static const char *element(const char *s, size_t n, const char *tag, size_t *len)
{
    char open[48], close[48];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *o = find(s, n, open);
    if (!o) return NULL;
    o += strlen(open);
    const char *c = find(o, n - (size_t)(o - s), close);
    if (!c) return NULL;
    *len = (size_t)(c - o);
    return o;
}

static int starts(const sbuf *b, const char *p)
{
    return strncmp(b->p, p, strlen(p)) == 0;
}

/* ---- the parser ----------------------------------------------------------- */

typedef struct meta {
    const char *cwd, *session_id, *uuid;
    int64_t ts;
} meta;

typedef struct parser {
    ds_transcript_batch *out;
    size_t cap;
    sbuf line;                 /* sanitized line */
    sbuf raw;                  /* text as extracted */
    sbuf text;                 /* text as emitted */
    sbuf gist;                 /* tool result without reminders */
    struct { char id[64]; char name[64]; } recent[RECENT_TOOLS];
    size_t nrecent;
} parser;

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static void turn_free(ds_turn *t)
{
    free(t->text);
    free(t->cwd);
    free(t->session_id);
    free(t->uuid);
    free(t->tool_name);
}

/* Emits |text| (valid UTF-8; trimmed, capped at DS_TRANSCRIPT_MAX_TEXT)
 * as a turn unless it is blank. */
static int emit(parser *p, ds_turn_kind kind, sbuf *text, const char *tool, const meta *m)
{
    trim(text);
    if (text->len == 0) return 0;
    int rrc = sb_redact(text);
    if (rrc) return rrc;
    if (text->len > DS_TRANSCRIPT_MAX_TEXT) {
        text->len = utf8_cut(text->p, DS_TRANSCRIPT_MAX_TEXT);
        text->p[text->len] = '\0';
    }
    ds_transcript_batch *b = p->out;
    if (b->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        ds_turn *v = realloc(b->turns, cap * sizeof *v);
        if (!v) return DS_ERR_NOMEM;
        b->turns = v;
        p->cap = cap;
    }
    ds_turn t = { kind, NULL, NULL, NULL, NULL, NULL, m->ts };
    t.text = malloc(text->len + 1);
    if (t.text) memcpy(t.text, text->p, text->len + 1);
    t.cwd = dup_str(m->cwd);
    t.session_id = dup_str(m->session_id);
    t.uuid = dup_str(m->uuid);
    t.tool_name = dup_str(tool ? tool : "");
    if (!t.text || !t.cwd || !t.session_id || !t.uuid || !t.tool_name) {
        turn_free(&t);
        return DS_ERR_NOMEM;
    }
    b->turns[b->count++] = t;
    return 0;
}

/* Appends a JSON string's bytes, embedded NULs as U+FFFD. */
static int put_json_string(sbuf *b, const json_t *s)
{
    const char *v = json_string_value(s);
    size_t n = json_string_length(s);
    while (n) {
        const char *z = memchr(v, '\0', n);
        size_t k = z ? (size_t)(z - v) : n;
        int rc = sb_put(b, v, k);
        if (!rc && z) rc = sb_str(b, "\xEF\xBF\xBD");
        if (rc) return rc;
        if (z) k++;
        v += k;
        n -= k;
    }
    return 0;
}

static const char *str_field(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* User prose: without system reminders; Claude Code's slash-command
 * wrappers become "/name args" (dropped when there are no args, as a bare
 * "/clear" carries nothing), local command output and interruption
 * notices are dropped. */
static int emit_user_text(parser *p, const json_t *str, const meta *m)
{
    sbuf *t = &p->text;
    t->len = 0;
    p->raw.len = 0;
    int rc = put_json_string(&p->raw, str);
    if (!rc && p->raw.len)
        rc = put_without(t, p->raw.p, p->raw.len, "<system-reminder>", "</system-reminder>");
    if (rc || t->len == 0) return rc;
    trim(t);
    if (starts(t, "<local-command-stdout>") || starts(t, "<local-command-stderr>") ||
        starts(t, "<bash-stdout>") || starts(t, "<bash-stderr>") ||
        starts(t, "[Request interrupted by user"))
        return 0;
    if (starts(t, "<command-name>") || starts(t, "<command-message>") || starts(t, "<command-args>")) {
        size_t nl = 0, al = 0;
        const char *name = element(t->p, t->len, "command-name", &nl);
        const char *args = element(t->p, t->len, "command-args", &al);
        while (al && is_blank((unsigned char)*args)) { args++; al--; }
        if (!args || !al) return 0;
        sbuf *r = &p->gist;
        r->len = 0;
        if (name && nl) rc = sb_put(r, name, nl);
        if (!rc && name && nl) rc = sb_str(r, " ");
        if (!rc) rc = sb_put(r, args, al);
        if (rc) return rc;
        t->len = 0;
        rc = sb_put(t, r->p, r->len);
        if (rc) return rc;
    }
    return emit(p, DS_TURN_USER, t, NULL, m);
}

/* Collects at most GIST_DUMP + 1 bytes of a JSON dump, then aborts it. */
static int dump_cb(const char *buf, size_t size, void *data)
{
    sbuf *b = data;
    size_t room = GIST_DUMP + 1 > b->len ? GIST_DUMP + 1 - b->len : 0;
    if (sb_put(b, buf, size < room ? size : room)) return -1;
    return b->len > GIST_DUMP ? -1 : 0;
}

/* Appends |s|/|n| with blank runs collapsed to single spaces, stopping
 * once |b| holds more than |limit| bytes. */
static int put_collapsed(sbuf *b, const char *s, size_t n, size_t limit)
{
    int rc = 0;
    for (size_t i = 0; i < n && b->len <= limit && !rc; i++) {
        if (is_blank((unsigned char)s[i])) {
            while (i + 1 < n && is_blank((unsigned char)s[i + 1])) i++;
            rc = sb_put(b, " ", 1);
        } else {
            rc = sb_put(b, s + i, 1);
        }
    }
    return rc;
}

/* Cuts |b| to |limit| bytes on a character boundary, marking the cut. */
static int cap_gist(sbuf *b, size_t limit)
{
    if (b->len <= limit) return 0;
    b->len = utf8_cut(b->p, limit);
    while (b->len && is_blank((unsigned char)b->p[b->len - 1])) b->len--;
    return sb_str(b, ELLIPSIS);
}

static void remember_tool(parser *p, const char *id, const char *name)
{
    if (!*id || strlen(id) >= sizeof p->recent[0].id || strlen(name) >= sizeof p->recent[0].name)
        return;
    size_t k = p->nrecent++ % RECENT_TOOLS;
    strcpy(p->recent[k].id, id);
    strcpy(p->recent[k].name, name);
}

static const char *recall_tool(const parser *p, const char *id)
{
    size_t n = p->nrecent < RECENT_TOOLS ? p->nrecent : RECENT_TOOLS;
    for (size_t k = 0; *id && k < n; k++) {
        size_t j = (p->nrecent - 1 - k) % RECENT_TOOLS;
        if (strcmp(p->recent[j].id, id) == 0) return p->recent[j].name;
    }
    return "";
}

/* "name: <salient input>" for a tool call. */
static int emit_tool_use(parser *p, const json_t *blk, const meta *m)
{
    static const char *const keys[] = {
        "command", "file_path", "notebook_path", "pattern", "url", "query",
        "description", "prompt", "path", "skill", "plan", NULL,
    };
    const char *name = str_field(blk, "name");
    if (!*name) name = "tool";
    remember_tool(p, str_field(blk, "id"), name);
    const json_t *in = json_object_get(blk, "input");
    sbuf *t = &p->text;
    t->len = 0;
    int rc = sb_str(t, name);
    size_t base = t->len;
    const json_t *v = NULL;
    for (int k = 0; keys[k] && !v; k++) {
        v = json_object_get(in, keys[k]);
        if (!json_is_string(v) || json_string_length(v) == 0) v = NULL;
    }
    if (!rc && v) {
        rc = sb_str(t, ": ");
        p->raw.len = 0;
        if (!rc) rc = put_json_string(&p->raw, v);
        if (!rc) rc = sb_redact(&p->raw);
        if (!rc) rc = put_collapsed(t, p->raw.p, p->raw.len, base + 2 + GIST_USE);
    } else if (!rc && json_is_object(in) && json_object_size(in) > 0) {
        p->raw.len = 0;
        json_dump_callback(in, dump_cb, &p->raw, JSON_COMPACT);
        if (p->raw.len) rc = sb_redact(&p->raw);
        if (!rc && p->raw.len) {
            rc = sb_str(t, ": ");
            if (!rc) rc = sb_put(t, p->raw.p, utf8_cut(p->raw.p, p->raw.len));
        }
    }
    if (!rc) rc = cap_gist(t, base + 2 + GIST_USE);
    if (rc) return rc;
    return emit(p, DS_TURN_TOOL_USE, t, name, m);
}

/* The first GIST_LINES lines / GIST_RESULT bytes of a tool result,
 * "error: ..." when it failed. */
static int emit_tool_result(parser *p, const json_t *blk, const meta *m)
{
    const json_t *c = json_object_get(blk, "content");
    sbuf *r = &p->raw;
    r->len = 0;
    int rc = 0;
    if (json_is_string(c)) {
        rc = put_json_string(r, c);
    } else if (json_is_array(c)) {
        size_t k;
        const json_t *e;
        json_array_foreach(c, k, e) {
            const char *ty = str_field(e, "type");
            const json_t *tx = json_object_get(e, "text");
            if (r->len && !rc) rc = sb_str(r, "\n");
            if (!rc && strcmp(ty, "text") == 0 && json_is_string(tx)) rc = put_json_string(r, tx);
            else if (!rc && strcmp(ty, "image") == 0) rc = sb_str(r, "[image]");
            if (rc || r->len > GIST_RESULT * 4) break;
        }
    }
    if (!rc) rc = sb_redact(r);
    if (rc) return rc;
    sbuf *t = &p->text;
    t->len = 0;
    int err = json_is_true(json_object_get(blk, "is_error"));
    if (err) rc = sb_str(t, "error: ");
    size_t base = t->len;
    p->gist.len = 0;
    if (!rc) rc = put_without(&p->gist, r->p ? r->p : "", r->len, "<system-reminder>", "</system-reminder>");
    if (rc) return rc;
    const char *s = p->gist.p ? p->gist.p : "";
    size_t n = p->gist.len, a = 0;
    while (a < n && is_blank((unsigned char)s[a])) a++;
    size_t e = a, lines = 0;
    while (e < n && e - a <= GIST_RESULT && lines < GIST_LINES) {
        const char *nl = memchr(s + e, '\n', n - e);
        e = nl ? (size_t)(nl - s) + 1 : n;
        lines++;
    }
    rc = sb_put(t, s + a, e - a);
    if (!rc && (e < n || t->len - base > GIST_RESULT)) {
        if (t->len - base > GIST_RESULT) t->len = base + utf8_cut(t->p + base, GIST_RESULT);
        while (t->len > base && is_blank((unsigned char)t->p[t->len - 1])) t->len--;
        rc = sb_str(t, " " ELLIPSIS);
    }
    if (rc) return rc;
    if (t->len == base) {
        if (!err) return 0;
        t->len = 0;
        if ((rc = sb_str(t, "error"))) return rc;
    }
    return emit(p, DS_TURN_TOOL_RESULT, t, recall_tool(p, str_field(blk, "tool_use_id")), m);
}

static int emit_block(parser *p, int user, const json_t *blk, const meta *m)
{
    const char *ty = str_field(blk, "type");
    if (strcmp(ty, "text") == 0) {
        const json_t *tx = json_object_get(blk, "text");
        if (!json_is_string(tx)) return 0;
        if (user) return emit_user_text(p, tx, m);
        p->text.len = 0;
        int rc = put_json_string(&p->text, tx);
        return rc ? rc : emit(p, DS_TURN_ASSISTANT, &p->text, NULL, m);
    }
    if (strcmp(ty, "tool_use") == 0) return emit_tool_use(p, blk, m);
    if (strcmp(ty, "tool_result") == 0) return emit_tool_result(p, blk, m);
    return 0;                  /* thinking, redacted_thinking, image, ... */
}

/* Parses one line; returns 1 when it was skipped, 0 when used, or a
 * negative DS_ERR_*. */
static int parse_line(parser *p, const char *line, size_t n)
{
    const char *clean;
    size_t cn;
    int rc = sanitize(&p->line, line, n, &clean, &cn);
    if (rc) return rc;
    json_error_t jerr;
    json_t *root = json_loadb(clean, cn, JSON_ALLOW_NUL, &jerr);
    if (!root) return json_error_code(&jerr) == json_error_out_of_memory ? DS_ERR_NOMEM : 1;
    int skip = 1;
    const char *type = str_field(root, "type");
    int user = strcmp(type, "user") == 0;
    const json_t *msg = json_object_get(root, "message");
    const json_t *content = json_object_get(msg, "content");
    if ((user || strcmp(type, "assistant") == 0) &&
        !json_is_true(json_object_get(root, "isSidechain")) &&
        !json_is_true(json_object_get(root, "isMeta")) &&
        !json_is_true(json_object_get(root, "isCompactSummary")) &&
        (json_is_string(content) || json_is_array(content))) {
        skip = 0;
        const json_t *ts = json_object_get(root, "timestamp");
        meta m = { str_field(root, "cwd"), str_field(root, "sessionId"), str_field(root, "uuid"),
                   json_is_string(ts) ? parse_time(json_string_value(ts))
                   : json_is_integer(ts) ? (int64_t)json_integer_value(ts) : 0 };
        if (json_is_string(content)) {
            if (user) {
                rc = emit_user_text(p, content, &m);
            } else {
                p->text.len = 0;
                rc = put_json_string(&p->text, content);
                if (!rc) rc = emit(p, DS_TURN_ASSISTANT, &p->text, NULL, &m);
            }
        } else {
            size_t k;
            const json_t *blk;
            json_array_foreach(content, k, blk) {
                if ((rc = emit_block(p, user, blk, &m))) break;
            }
        }
    }
    json_decref(root);
    return rc ? rc : skip;
}

static int only_blanks(const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!is_blank((unsigned char)s[k])) return 0;
    return 1;
}

int ds_transcript_parse(const char *buf, size_t len, int final, ds_transcript_batch *out)
{
    assert(out && (buf || !len));
    memset(out, 0, sizeof *out);
    parser p;
    memset(&p, 0, sizeof p);
    p.out = out;
    size_t pos = 0;
    int rc = 0;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl && !final) break;
        size_t end = nl ? (size_t)(nl - buf) : len;
        size_t n = end - pos;
        if (n && buf[pos + n - 1] == '\r') n--;
        if (n > DS_TRANSCRIPT_MAX_LINE) {
            out->skipped++;
        } else if (!only_blanks(buf + pos, n)) {
            rc = parse_line(&p, buf + pos, n);
            if (rc < 0) break;
            out->skipped += (size_t)rc;
            rc = 0;
        }
        pos = nl ? end + 1 : len;
    }
    free(p.line.p);
    free(p.raw.p);
    free(p.text.p);
    free(p.gist.p);
    if (rc) {
        ds_transcript_batch_free(out);
        return rc;
    }
    out->consumed = pos;
    return 0;
}

void ds_transcript_batch_free(ds_transcript_batch *b)
{
    if (!b) return;
    for (size_t k = 0; k < b->count; k++) turn_free(&b->turns[k]);
    free(b->turns);
    memset(b, 0, sizeof *b);
}
