/*
 * distill.c - the parts of the distiller interface shared by every
 * implementation: freeing insight arrays, formatting a chunk of turns as
 * plain text for an external distiller (a command or an LLM API), and
 * parsing what such a distiller answers (a JSON array of insight objects,
 * {"insights": [...]}, or plain text paragraphs / bullets) into insights.
 * Pure functions, no I/O.
 */
#include "core/distill.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ds/error.h"
#include "core/util.h"

/* Hard limits on what an external distiller may hand us. */
#define MAX_INSIGHTS 256
#define MAX_INSIGHT_BYTES (16u << 10)
#define DEFAULT_JSON_CONFIDENCE 0.7
#define DEFAULT_TEXT_CONFIDENCE 0.6

void ds_insights_free(ds_insight *v, size_t count)
{
    if (!v) return;
    for (size_t i = 0; i < count; i++) {
        free(v[i].content);
        free(v[i].kind);
    }
    free(v);
}

static int buf_puts(ds_buf *b, const char *s)
{
    return ds_buf_append(b, s, strlen(s));
}

static const char *turn_label(const ds_turn *t, int *with_tool)
{
    *with_tool = 0;
    switch (t->kind) {
    case DS_TURN_USER: return "User";
    case DS_TURN_ASSISTANT: return "Assistant";
    case DS_TURN_TOOL_USE: *with_tool = 1; return "Tool";
    case DS_TURN_TOOL_RESULT: *with_tool = 1; return "Tool result";
    }
    return "Other";
}

char *ds_distill_format(const ds_distill_input *in)
{
    ds_buf b = {0};
    int rc = 0;

    if (!in) return NULL;
    if (in->project && *in->project) {
        rc |= buf_puts(&b, "Project: ");
        rc |= buf_puts(&b, in->project);
        rc |= buf_puts(&b, "\n");
    }
    for (size_t i = 0; i < in->count && rc == 0; i++) {
        const ds_turn *t = &in->turns[i];
        int with_tool;
        const char *label = turn_label(t, &with_tool);
        const char *text = t->text ? t->text : "";
        /* Tool gists are "name: input"; the name is already in the label. */
        if (with_tool && t->tool_name && *t->tool_name) {
            size_t n = strlen(t->tool_name);
            if (strncmp(text, t->tool_name, n) == 0 && text[n] == ':')
                text += n + 1 + (text[n + 1] == ' ');
        }
        if (b.len) rc |= buf_puts(&b, "\n");
        rc |= buf_puts(&b, label);
        if (with_tool && t->tool_name && *t->tool_name) {
            rc |= buf_puts(&b, " (");
            rc |= buf_puts(&b, t->tool_name);
            rc |= buf_puts(&b, ")");
        }
        rc |= buf_puts(&b, ": ");
        rc |= buf_puts(&b, text);
        rc |= buf_puts(&b, "\n");
    }
    if (rc == 0) rc = ds_buf_append(&b, "", 1);
    if (rc != 0) {
        ds_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

/* ---- output parsing ---------------------------------------------------- */

typedef struct ivec {
    ds_insight *v;
    size_t n, cap;
} ivec;

/* Copies |len| bytes of |s| trimmed of surrounding whitespace, cut to
 * MAX_INSIGHT_BYTES at a UTF-8 character boundary.  NULL if nothing is left
 * (*oom set when allocation failed). */
static char *dup_trimmed(const char *s, size_t len, int *oom)
{
    while (len && isspace((unsigned char)*s)) { s++; len--; }
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len == 0) return NULL;
    if (len > MAX_INSIGHT_BYTES) {
        len = MAX_INSIGHT_BYTES;
        while (len && ((unsigned char)s[len] & 0xC0) == 0x80) len--;
    }
    char *p = malloc(len + 1);
    if (!p) { *oom = 1; return NULL; }
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* Takes ownership of |content| (even on failure). */
static int ivec_push(ivec *iv, char *content, const char *kind, double conf)
{
    if (iv->n >= MAX_INSIGHTS) { free(content); return 0; } /* silently capped */
    if (iv->n == iv->cap) {
        size_t cap = iv->cap ? iv->cap * 2 : 8;
        ds_insight *nv = realloc(iv->v, cap * sizeof *nv);
        if (!nv) { free(content); return DS_ERR_NOMEM; }
        iv->v = nv;
        iv->cap = cap;
    }
    char *k = strdup(kind && *kind ? kind : "insight");
    if (!k) { free(content); return DS_ERR_NOMEM; }
    if (!(conf >= 0.0)) conf = 0.0;   /* also catches NaN */
    if (conf > 1.0) conf = 1.0;
    iv->v[iv->n].content = content;
    iv->v[iv->n].kind = k;
    iv->v[iv->n].confidence = conf;
    iv->n++;
    return 0;
}

static int parse_json_items(json_t *arr, ivec *iv)
{
    size_t i, usable = 0;
    json_t *it;

    json_array_foreach(arr, i, it) {
        const char *content = NULL, *kind = NULL;
        size_t clen = 0;
        double conf = DEFAULT_JSON_CONFIDENCE;

        if (json_is_string(it)) {
            content = json_string_value(it);
            clen = json_string_length(it);
        } else if (json_is_object(it)) {
            json_t *c = json_object_get(it, "content");
            if (!c) c = json_object_get(it, "text");
            if (!c) c = json_object_get(it, "insight");
            json_t *k = json_object_get(it, "kind");
            if (!k) k = json_object_get(it, "type");
            json_t *cf = json_object_get(it, "confidence");
            if (json_is_string(c)) {
                content = json_string_value(c);
                clen = json_string_length(c);
            }
            if (json_is_string(k)) kind = json_string_value(k);
            if (json_is_number(cf)) conf = json_number_value(cf);
        } else {
            continue;
        }
        if (!content) continue;
        /* jansson strings may hold NUL bytes: keep the text before one. */
        size_t nul = strnlen(content, clen);
        int oom = 0;
        char *dup = dup_trimmed(content, nul, &oom);
        if (oom) return DS_ERR_NOMEM;
        if (!dup) { usable++; continue; }   /* empty content: valid, skipped */
        if (kind && (strlen(kind) > 32 || !*kind)) kind = NULL;
        int rc = ivec_push(iv, dup, kind, conf);
        if (rc) return rc;
        usable++;
    }
    /* A non-empty array in which nothing looks like an insight is not
     * something we can use. */
    if (json_array_size(arr) > 0 && usable == 0) return DS_ERR_PROTO;
    return 0;
}

static int parse_json(const char *s, size_t len, ivec *iv)
{
    json_error_t jerr;
    json_t *root = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return DS_ERR_PROTO;
    int rc;
    if (json_is_array(root)) {
        rc = parse_json_items(root, iv);
    } else if (json_is_object(root) && json_is_array(json_object_get(root, "insights"))) {
        rc = parse_json_items(json_object_get(root, "insights"), iv);
    } else {
        rc = DS_ERR_PROTO;
    }
    json_decref(root);
    return rc;
}

static int is_bullet(const char *line, size_t len, size_t *skip)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i + 1 < len && (line[i] == '-' || line[i] == '*') && line[i + 1] == ' ') {
        *skip = i + 2;
        return 1;
    }
    if (i + 3 < len && (unsigned char)line[i] == 0xE2 && (unsigned char)line[i + 1] == 0x80 &&
        (unsigned char)line[i + 2] == 0xA2 && line[i + 3] == ' ') { /* "• " */
        *skip = i + 4;
        return 1;
    }
    size_t d = i;
    while (d < len && d - i < 3 && isdigit((unsigned char)line[d])) d++;
    if (d > i && d + 1 < len && (line[d] == '.' || line[d] == ')') && line[d + 1] == ' ') {
        *skip = d + 2;
        return 1;
    }
    return 0;
}

static int blank_line(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)line[i])) return 0;
    return 1;
}

/* Flushes the pending paragraph/bullet held in |cur| into |iv|.  A lone
 * introductory line ending in ':' ("Here are the insights:") is dropped. */
static int flush_item(ds_buf *cur, int cur_lines, ivec *iv)
{
    int rc = 0, oom = 0;
    if (cur->len) {
        char *dup = dup_trimmed((const char *)cur->data, cur->len, &oom);
        if (oom) rc = DS_ERR_NOMEM;
        else if (dup) {
            size_t n = strlen(dup);
            if (cur_lines == 1 && dup[n - 1] == ':') free(dup);
            else rc = ivec_push(iv, dup, "insight", DEFAULT_TEXT_CONFIDENCE);
        }
    }
    cur->len = 0;
    return rc;
}

static int parse_text(const char *s, size_t len, ivec *iv)
{
    ds_buf cur = {0};
    int rc = 0, lines = 0;
    size_t pos = 0;

    while (pos < len && rc == 0) {
        const char *line = s + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        if (ll && line[ll - 1] == '\r') ll--;

        size_t skip = 0;
        size_t lead = 0;
        while (lead < ll && (line[lead] == ' ' || line[lead] == '\t')) lead++;
        if (blank_line(line, ll)) {
            rc = flush_item(&cur, lines, iv);
            lines = 0;
        } else if (line[lead] == '#' || (ll - lead >= 3 && !strncmp(line + lead, "```", 3))) {
            /* Markdown headings and code fences are structure, not content. */
            rc = flush_item(&cur, lines, iv);
            lines = 0;
        } else if (is_bullet(line, ll, &skip)) {
            rc = flush_item(&cur, lines, iv);
            lines = 1;
            if (rc == 0) rc = ds_buf_append(&cur, line + skip, ll - skip);
        } else {
            if (cur.len) rc = ds_buf_append(&cur, " ", 1);
            if (rc == 0) rc = ds_buf_append(&cur, line + lead, ll - lead);
            lines++;
        }
    }
    if (rc == 0) rc = flush_item(&cur, lines, iv);
    ds_buf_free(&cur);
    return rc;
}

/* If |s| holds a fenced code block (```json ... ```), narrows to its body. */
static void strip_fence(const char **s, size_t *len)
{
    const char *p = *s;
    size_t n = *len;
    const char *open = NULL;
    for (size_t i = 0; i + 3 <= n; i++) {
        if (p[i] == '`' && p[i + 1] == '`' && p[i + 2] == '`' && (i == 0 || p[i - 1] == '\n')) {
            open = p + i;
            break;
        }
    }
    if (!open) return;
    const char *body = memchr(open, '\n', (size_t)(p + n - open));
    if (!body) return;
    body++;
    const char *end = p + n;
    for (const char *q = body; q + 3 <= end; q++) {
        if (q[0] == '`' && q[1] == '`' && q[2] == '`' && q[-1] == '\n') {
            /* Only adopt the fence if its body looks like JSON. */
            const char *b = body;
            while (b < q && isspace((unsigned char)*b)) b++;
            if (b < q && (*b == '[' || *b == '{')) {
                *s = body;
                *len = (size_t)(q - body);
            }
            return;
        }
    }
}

/* '{', or '[' followed by what a JSON array can start with ("[- note]"
 * or "[decision] ..." stay plain text). */
static int looks_like_json(const char *s, size_t n)
{
    if (n == 0) return 0;
    if (*s == '{') return 1;
    if (*s != '[') return 0;
    size_t i = 1;
    while (i < n && isspace((unsigned char)s[i])) i++;
    return i == n || strchr("{[\"]", s[i]) != NULL;
}

int ds_distill_parse_output(const char *text, size_t len, ds_insight **out, size_t *count)
{
    ivec iv = {0};
    int rc;

    if (!out || !count || (!text && len)) return DS_ERR_INVALID;
    *out = NULL;
    *count = 0;
    if (len == 0) return 0;
    if (memchr(text, '\0', len) || !ds_utf8_valid(text, len)) return DS_ERR_PROTO;

    const char *s = text;
    size_t n = len;
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n == 0) return 0;
    strip_fence(&s, &n);
    while (n && isspace((unsigned char)*s)) { s++; n--; }

    /* Output that looks like JSON must be valid JSON of a known shape: a
     * truncated or mangled reply is reported, not stored as text. */
    if (looks_like_json(s, n)) rc = parse_json(s, n, &iv);
    else rc = parse_text(s, n, &iv);
    if (rc) {
        ds_insights_free(iv.v, iv.n);
        return rc;
    }
    *out = iv.v;
    *count = iv.n;
    return 0;
}
