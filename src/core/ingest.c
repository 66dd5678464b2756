/*
 * ingest.c - incremental, idempotent ingestion of one transcript: the
 * transcript state codec, planning (watermark and rewrite check, parsing
 * line by line, redaction, bounded chunks), distillation of a plan, and
 * the single-transaction commit.  See ingest.h and docs/ingest.md.
 */
#include "core/ingest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "core/msgread.h"
#include "core/redact.h"
#include "core/util.h"

#define MAX_KEY 500   /* longer paths are keyed by their hash (LMDB key limit) */

/* ---- small helpers -------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

/* Key of |path| in DS_TABLE_TRANSCRIPTS: the path itself, or "#" + hex
 * BLAKE2b for paths too long for an LMDB key (a path starts with '/'). */
static void tkey(const char *path, char *buf, size_t bufsz, const char **key, size_t *klen)
{
    size_t n = strlen(path);
    if (n <= MAX_KEY) {
        *key = path;
        *klen = n;
        return;
    }
    uint8_t h[32];
    ds_hash(path, n, h, sizeof h);
    buf[0] = '#';
    ds_hex_encode(h, sizeof h, buf + 1);
    (void)bufsz;
    *key = buf;
    *klen = 1 + 2 * sizeof h;
}

void ds_ingest_node_id(const char *path, uint64_t start, uint32_t i, uint8_t id[DS_ID_LEN])
{
    size_t n = strlen(path);
    uint8_t *buf = malloc(n + 1 + 12);
    uint8_t h[DS_ID_LEN];
    if (buf) {
        memcpy(buf, path, n);
        buf[n] = 0;
        ds_put_be64(buf + n + 1, start);
        ds_put_be32(buf + n + 9, i);
        ds_hash(buf, n + 13, h, sizeof h);
        free(buf);
    } else {
        /* Still deterministic without the copy: hash the parts chained. */
        uint8_t tail[DS_ID_LEN + 12], ph[DS_ID_LEN];
        ds_hash(path, n, ph, sizeof ph);
        memcpy(tail, ph, DS_ID_LEN);
        ds_put_be64(tail + DS_ID_LEN, start);
        ds_put_be32(tail + DS_ID_LEN + 8, i);
        ds_hash(tail, sizeof tail, h, sizeof h);
    }
    ds_uuid_from_random(id, h);
}

char *ds_ingest_encode_project(const char *path)
{
    size_t n = strlen(path);
    char *out = malloc(2 * n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x80) {
            int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
            out[o++] = alnum ? (char)c : '-';
            i++;
            continue;
        }
        size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (i + len > n)
            len = n - i;
        /* A code point above U+FFFF is two UTF-16 units, hence two dashes. */
        out[o++] = '-';
        if (len == 4)
            out[o++] = '-';
        i += len;
    }
    out[o] = '\0';
    return out;
}

/* ---- transcript state ----------------------------------------------------- */

void ds_tstate_init(ds_tstate *s)
{
    memset(s, 0, sizeof *s);
}

void ds_tstate_free(ds_tstate *s)
{
    free(s->session_id);
    free(s->cwd);
    free(s->project);
    for (size_t i = 0; i < s->nregions; i++)
        free(s->regions[i].ids);
    free(s->regions);
    ds_tstate_init(s);
}

static int pk_key(msgpack_packer *pk, const char *k)
{
    return msgpack_pack_str_with_body(pk, k, strlen(k));
}

static int pk_str(msgpack_packer *pk, const char *k, const char *v)
{
    const char *s = v ? v : "";
    return pk_key(pk, k) | msgpack_pack_str_with_body(pk, s, strlen(s));
}

int ds_tstate_encode(const ds_tstate *s, uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 10);
    rc |= pk_key(&pk, "v") | msgpack_pack_uint32(&pk, 1);
    rc |= pk_key(&pk, "offset") | msgpack_pack_uint64(&pk, s->offset);
    rc |= pk_key(&pk, "tail") | msgpack_pack_bin_with_body(&pk, s->tail_hash, DS_HASH_LEN);
    rc |= pk_key(&pk, "size") | msgpack_pack_uint64(&pk, s->size);
    rc |= pk_key(&pk, "mtime") | msgpack_pack_int64(&pk, s->mtime_ms);
    rc |= pk_key(&pk, "next_chunk") | msgpack_pack_uint32(&pk, s->next_chunk);
    rc |= pk_str(&pk, "session", s->session_id);
    rc |= pk_str(&pk, "cwd", s->cwd);
    rc |= pk_str(&pk, "project", s->project);
    rc |= pk_key(&pk, "regions") | msgpack_pack_array(&pk, (uint32_t)s->nregions);
    for (size_t i = 0; i < s->nregions; i++) {
        const ds_ingest_region *r = &s->regions[i];
        rc |= msgpack_pack_array(&pk, 3);
        rc |= msgpack_pack_uint64(&pk, r->start);
        rc |= msgpack_pack_uint32(&pk, r->chunk);
        rc |= msgpack_pack_bin_with_body(&pk, r->ids, (size_t)r->nids * DS_ID_LEN);
    }
    if (rc) {
        msgpack_sbuffer_destroy(&sb);
        return DS_ERR_NOMEM;
    }
    *out = (uint8_t *)sb.data;
    *outlen = sb.size;
    return 0;
}

static int mr_cstr(ds_mr *mr, char **out)
{
    return ds_mr_strdup(mr, DS_NODE_MAX_FIELD - 1, out);
}

static int decode_regions(ds_mr *mr, ds_tstate *s)
{
    uint32_t n;
    int rc = ds_mr_array(mr, &n);
    if (rc)
        return rc;
    if (n > DS_INGEST_MAX_REGIONS || n > ds_mr_left(mr))
        return DS_ERR_MALFORMED;
    if (n == 0)
        return 0;
    s->regions = calloc(n, sizeof *s->regions);
    if (!s->regions)
        return DS_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) {
        ds_ingest_region *r = &s->regions[i];
        uint32_t m, bl;
        uint64_t chunk;
        const uint8_t *b;
        if ((rc = ds_mr_array(mr, &m)))
            return rc;
        if (m != 3)
            return DS_ERR_MALFORMED;
        if ((rc = ds_mr_uint(mr, &r->start)) || (rc = ds_mr_uint(mr, &chunk)) ||
            (rc = ds_mr_bin(mr, &b, &bl)))
            return rc;
        if (chunk > UINT32_MAX || bl % DS_ID_LEN)
            return DS_ERR_MALFORMED;
        r->chunk = (uint32_t)chunk;
        r->nids = bl / DS_ID_LEN;
        r->ids = malloc(bl ? bl : 1);
        if (!r->ids)
            return DS_ERR_NOMEM;
        if (bl)
            memcpy(r->ids, b, bl);
        s->nregions = i + 1;
    }
    return 0;
}

int ds_tstate_decode(const void *buf, size_t len, ds_tstate *out)
{
    ds_tstate_init(out);
    ds_mr mr;
    ds_mr_init(&mr, buf, len);
    uint32_t n;
    int rc = ds_mr_map(&mr, &n), have_off = 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        const char *k;
        uint32_t kl;
        if ((rc = ds_mr_str(&mr, &k, &kl)))
            break;
        uint64_t u;
        if (ds_mr_key_eq(k, kl, "offset")) {
            rc = ds_mr_uint(&mr, &out->offset);
            have_off = 1;
        } else if (ds_mr_key_eq(k, kl, "tail")) {
            const uint8_t *b;
            uint32_t bl;
            rc = ds_mr_bin(&mr, &b, &bl);
            if (!rc && bl != DS_HASH_LEN)
                rc = DS_ERR_MALFORMED;
            if (!rc)
                memcpy(out->tail_hash, b, DS_HASH_LEN);
        } else if (ds_mr_key_eq(k, kl, "size")) {
            rc = ds_mr_uint(&mr, &out->size);
        } else if (ds_mr_key_eq(k, kl, "mtime")) {
            rc = ds_mr_int(&mr, &out->mtime_ms);
        } else if (ds_mr_key_eq(k, kl, "next_chunk")) {
            rc = ds_mr_uint(&mr, &u);
            if (!rc && u > UINT32_MAX)
                rc = DS_ERR_MALFORMED;
            out->next_chunk = (uint32_t)u;
        } else if (ds_mr_key_eq(k, kl, "session")) {
            rc = mr_cstr(&mr, &out->session_id);
        } else if (ds_mr_key_eq(k, kl, "cwd")) {
            rc = mr_cstr(&mr, &out->cwd);
        } else if (ds_mr_key_eq(k, kl, "project")) {
            rc = mr_cstr(&mr, &out->project);
        } else if (ds_mr_key_eq(k, kl, "regions")) {
            rc = out->regions ? DS_ERR_MALFORMED : decode_regions(&mr, out);
        } else {
            rc = ds_mr_skip(&mr);
        }
    }
    if (!rc && (!have_off || ds_mr_left(&mr) != 0))
        rc = DS_ERR_MALFORMED;
    if (!rc && ((!out->session_id && !(out->session_id = xstrdup(NULL))) ||
                (!out->cwd && !(out->cwd = xstrdup(NULL))) ||
                (!out->project && !(out->project = xstrdup(NULL)))))
        rc = DS_ERR_NOMEM;
    if (rc)
        ds_tstate_free(out);
    return rc;
}

int ds_tstate_load(ds_store *st, const char *path, ds_tstate *out)
{
    ds_tstate_init(out);
    char kb[80];
    const char *k;
    size_t kl;
    tkey(path, kb, sizeof kb, &k, &kl);
    void *v = NULL;
    size_t vl = 0;
    int rc = ds_store_aux_get(st, DS_TABLE_TRANSCRIPTS, k, kl, &v, &vl);
    if (rc)
        return rc;
    rc = ds_tstate_decode(v, vl, out);
    free(v);
    return rc;
}

/* ---- planning ------------------------------------------------------------- */

uint64_t ds_ingest_read_from(const ds_tstate *st, uint64_t file_size)
{
    if (!st || st->offset == 0 || file_size < st->offset)
        return 0;
    return st->offset > DS_INGEST_TAIL ? st->offset - DS_INGEST_TAIL : 0;
}

size_t ds_ingest_read_len(const ds_tstate *st, uint64_t from, uint64_t file_size, size_t max_bytes)
{
    if (!max_bytes)
        max_bytes = DS_INGEST_MAX_BYTES;
    if (from >= file_size)
        return 0;
    uint64_t want = max_bytes;
    if (st && st->offset > from && st->offset <= file_size)
        want += st->offset - from;
    uint64_t avail = file_size - from;
    return (size_t)(want < avail ? want : avail);
}

void ds_ingest_plan_free(ds_ingest_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nchunks; i++) {
        ds_ingest_chunk *c = &p->chunks[i];
        ds_transcript_batch b = { .turns = c->turns, .count = c->nturns };
        ds_transcript_batch_free(&b);
        free(c->project);
        free(c->cwd);
        ds_insights_free(c->insights, c->ninsights);
    }
    free(p->chunks);
    free(p->path);
    free(p->session_id);
    free(p->cwd);
    free(p->project);
    memset(p, 0, sizeof *p);
}

typedef struct planner {
    const ds_ingest_src *src;
    ds_ingest_plan *p;
    ds_ingest_chunk *open;      /* the chunk being filled, or NULL */
    size_t open_size;           /* its formatted size estimate */
    size_t cap;                 /* of p->chunks */
    size_t turn_cap;            /* of open->turns */
    char *last_cwd, *last_project;  /* canonicalization cache */
} planner;

/* Canonical project of |cwd| (cached for runs of the same cwd). */
static int project_of(planner *pl, const char *cwd, char **out)
{
    *out = NULL;
    if (!cwd[0])
        return (*out = xstrdup(NULL)) ? 0 : DS_ERR_NOMEM;
    if (!pl->last_cwd || strcmp(pl->last_cwd, cwd) != 0) {
        char *canon = pl->src->canon ? pl->src->canon(pl->src->canon_ud, cwd) : NULL;
        char *c = canon ? canon : strdup(cwd);
        char *w = strdup(cwd);
        if (!c || !w) {
            free(c);
            free(w);
            return DS_ERR_NOMEM;
        }
        size_t n = strlen(c);
        while (n > 1 && c[n - 1] == '/')
            c[--n] = '\0';
        free(pl->last_cwd);
        free(pl->last_project);
        pl->last_cwd = w;
        pl->last_project = c;
    }
    return (*out = strdup(pl->last_project)) ? 0 : DS_ERR_NOMEM;
}

static int open_chunk(planner *pl, uint64_t start, const char *cwd)
{
    ds_ingest_plan *p = pl->p;
    if (p->nchunks == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 8;
        ds_ingest_chunk *nc = realloc(p->chunks, cap * sizeof *nc);
        if (!nc)
            return DS_ERR_NOMEM;
        p->chunks = nc;
        pl->cap = cap;
    }
    ds_ingest_chunk *c = &p->chunks[p->nchunks];
    memset(c, 0, sizeof *c);
    p->nchunks++;
    c->start = c->end = start;
    c->index = p->next_chunk++;
    pl->open = c;
    pl->open_size = 0;
    pl->turn_cap = 0;
    if (!(c->cwd = strdup(cwd)))
        return DS_ERR_NOMEM;
    return project_of(pl, cwd, &c->project);
}

/* Cuts |s| (length n) to at most |max| bytes at a UTF-8 boundary. */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

/* Moves |t| (redacted, bounded) into the open chunk. */
static int add_turn(planner *pl, ds_turn *t)
{
    ds_ingest_chunk *c = pl->open;
    char *red = NULL;
    size_t rl = 0;
    ds_redact_stats rs;
    int rc = ds_redact(t->text, strlen(t->text), &red, &rl, &rs);
    if (rc)
        return rc;
    pl->p->redactions += rs.total;
    size_t keep = utf8_cut(red, rl, DS_INGEST_MAX_TURN);
    red[keep] = '\0';
    free(t->text);
    t->text = red;
    if (c->nturns == pl->turn_cap) {
        size_t cap = pl->turn_cap ? pl->turn_cap * 2 : 16;
        ds_turn *nt = realloc(c->turns, cap * sizeof *nt);
        if (!nt)
            return DS_ERR_NOMEM;
        c->turns = nt;
        pl->turn_cap = cap;
    }
    c->turns[c->nturns++] = *t;
    memset(t, 0, sizeof *t);
    pl->open_size += keep + 32 + strlen(c->turns[c->nturns - 1].tool_name);
    if (c->turns[c->nturns - 1].timestamp_ms)
        c->timestamp_ms = c->turns[c->nturns - 1].timestamp_ms;
    return 0;
}

static int set_str(char **dst, const char *s)
{
    char *c = xstrdup(s);
    if (!c)
        return DS_ERR_NOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

/* Session id from the file name: "<dir>/<id>.jsonl" -> "<id>". */
static char *session_from_path(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 6 && strcmp(b + n - 6, ".jsonl") == 0)
        n -= 6;
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, b, n);
        s[n] = '\0';
    }
    return s;
}

/* Parses the complete lines of data[0..len) (file offset |off|). */
static int plan_lines(planner *pl, const char *data, size_t len, uint64_t off, size_t *consumed)
{
    ds_ingest_plan *p = pl->p;
    size_t pos = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        if (!nl)
            break;
        size_t n = (size_t)(nl - (data + pos)) + 1;
        ds_transcript_batch b;
        rc = ds_transcript_parse(data + pos, n, 0, &b);
        if (rc)
            break;
        p->skipped_lines += b.skipped;
        uint64_t line_start = off + pos, line_end = off + pos + n;
        if (b.count > 0) {
            const char *cwd = NULL;
            for (size_t k = 0; k < b.count && !cwd; k++)
                if (b.turns[k].cwd[0])
                    cwd = b.turns[k].cwd;
            if (!cwd)
                cwd = p->cwd;
            for (size_t k = 0; k < b.count && !p->session_id[0]; k++)
                if (b.turns[k].session_id[0])
                    rc = set_str(&p->session_id, b.turns[k].session_id);
            if (!rc && strcmp(cwd, p->cwd) != 0)
                rc = set_str(&p->cwd, cwd);
            size_t line_size = 0;
            for (size_t k = 0; k < b.count; k++)
                line_size += strlen(b.turns[k].text) + 32;
            if (!rc && pl->open &&
                (strcmp(pl->open->cwd, p->cwd) != 0 ||
                 (pl->open->nturns > 0 && pl->open_size + line_size > DS_INGEST_CHUNK_TARGET)))
                pl->open = NULL;
            if (!rc && !pl->open)
                rc = open_chunk(pl, line_start, p->cwd);
            for (size_t k = 0; k < b.count && !rc; k++)
                rc = add_turn(pl, &b.turns[k]);
        }
        if (pl->open)
            pl->open->end = line_end;
        ds_transcript_batch_free(&b);
        pos += n;
    }
    *consumed = pos;
    return rc;
}

int ds_ingest_plan_make(const ds_ingest_src *src, const ds_tstate *st, ds_ingest_plan *out)
{
    memset(out, 0, sizeof *out);
    if (!src || !src->path || src->path[0] != '/' || (!src->buf && src->len) ||
        src->buf_off > src->file_size || src->len > src->file_size - src->buf_off)
        return DS_ERR_INVALID;
    ds_ingest_plan *p = out;
    p->file_size = src->file_size;
    p->mtime_ms = src->mtime_ms;
    if (!(p->path = strdup(src->path)))
        return DS_ERR_NOMEM;

    /* Is the file still the one whose first |offset| bytes we consumed? */
    uint64_t base = 0;
    if (st && st->offset > 0) {
        int rewritten = src->rewritten || src->file_size < st->offset;
        if (!rewritten) {
            uint64_t tl = st->offset < DS_INGEST_TAIL ? st->offset : DS_INGEST_TAIL;
            if (src->buf_off > st->offset - tl || src->buf_off + src->len < st->offset) {
                p->reread = 1; /* the caller did not give us the tail */
                return 0;
            }
            uint8_t h[DS_HASH_LEN];
            ds_hash(src->buf + (st->offset - tl - src->buf_off), (size_t)tl, h, sizeof h);
            rewritten = memcmp(h, st->tail_hash, DS_HASH_LEN) != 0;
        }
        if (rewritten && src->buf_off != 0) {
            p->reread = 1;
            return 0;
        }
        if (rewritten)
            p->reset = 1;
        else
            base = st->offset;
    }
    p->base = p->end = base;
    int keep = st && !p->reset;
    p->next_chunk = keep ? st->next_chunk : 0;
    if (!(p->session_id = xstrdup(keep ? st->session_id : NULL)) ||
        !(p->cwd = xstrdup(keep ? st->cwd : NULL)) ||
        !(p->project = xstrdup(keep ? st->project : NULL))) {
        ds_ingest_plan_free(p);
        return DS_ERR_NOMEM;
    }

    size_t max = src->max_bytes ? src->max_bytes : DS_INGEST_MAX_BYTES;
    size_t skip = (size_t)(base - src->buf_off);
    size_t avail = src->len > skip ? src->len - skip : 0;
    size_t dlen = avail < max ? avail : max;
    planner pl = { .src = src, .p = p };
    size_t consumed = 0;
    int rc = plan_lines(&pl, src->buf + skip, dlen, base, &consumed);
    if (!rc && consumed == 0 && dlen >= max) {
        /* No line end in a full window: an over-long line, skipped. */
        consumed = dlen;
        p->skipped_lines++;
    }
    if (!rc && !p->session_id[0]) {
        char *s = session_from_path(src->path);
        if (!s)
            rc = DS_ERR_NOMEM;
        else {
            free(p->session_id);
            p->session_id = s;
        }
    }
    if (!rc && p->cwd[0]) {
        free(p->project);
        p->project = NULL;
        rc = project_of(&pl, p->cwd, &p->project);
    }
    free(pl.last_cwd);
    free(pl.last_project);
    if (rc) {
        ds_ingest_plan_free(p);
        return rc;
    }
    p->end = base + consumed;
    p->more = dlen >= max && p->end < src->file_size;
    uint64_t tl = p->end < DS_INGEST_TAIL ? p->end : DS_INGEST_TAIL;
    if (tl)
        ds_hash(src->buf + (p->end - tl - src->buf_off), (size_t)tl, p->tail_hash, DS_HASH_LEN);
    else
        ds_hash("", 0, p->tail_hash, DS_HASH_LEN);
    p->unchanged = !p->reset && st && p->nchunks == 0 && p->end == st->offset &&
                   st->size == src->file_size && st->mtime_ms == src->mtime_ms;
    return 0;
}

/* ---- distillation --------------------------------------------------------- */

int ds_ingest_distill(ds_ingest_plan *p, ds_distiller *d)
{
    for (size_t i = 0; i < p->nchunks; i++) {
        ds_ingest_chunk *c = &p->chunks[i];
        ds_insights_free(c->insights, c->ninsights);
        c->insights = NULL;
        c->ninsights = 0;
        if (c->nturns == 0)
            continue;
        ds_distill_input in = { c->turns, c->nturns, c->project, p->session_id };
        int rc = d->distill(d, &in, &c->insights, &c->ninsights);
        if (rc) {
            c->insights = NULL;
            c->ninsights = 0;
            return rc;
        }
    }
    return 0;
}

/* ---- commit --------------------------------------------------------------- */

static int only_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 0;
    return 1;
}

static char *metadata_json(const char *kind, const char *session, const char *path)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "kind", json_string(kind && kind[0] ? kind : "insight"));
    json_object_set_new(o, "session", json_string(session));
    json_object_set_new(o, "transcript", json_string(path));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* Writes the insights of chunk |c| and records their ids in |r|. */
static int put_chunk(ds_wtxn *tx, const ds_ingest_plan *p, const ds_ingest_chunk *c,
                     int64_t now, ds_ingest_region *r, uint64_t *written)
{
    r->start = c->start;
    r->chunk = c->index;
    r->nids = 0;
    r->ids = malloc(c->ninsights ? c->ninsights * DS_ID_LEN : 1);
    if (!r->ids)
        return DS_ERR_NOMEM;
    int rc = 0;
    for (size_t i = 0; i < c->ninsights && !rc; i++) {
        const ds_insight *in = &c->insights[i];
        if (!in->content)
            continue;
        char *red = NULL;
        size_t rl = 0;
        rc = ds_redact(in->content, strlen(in->content), &red, &rl, NULL);
        if (rc)
            break;
        if (rl == 0 || only_blank(red, rl) || !ds_utf8_valid(red, rl)) {
            free(red);
            continue;
        }
        rl = utf8_cut(red, rl, DS_NODE_MAX_CONTENT);
        ds_node n;
        ds_node_init(&n);
        ds_ingest_node_id(p->path, c->start, (uint32_t)i, n.id);
        char *meta = metadata_json(in->kind, p->session_id, p->path);
        rc = meta ? ds_node_set_content(&n, red, rl) : DS_ERR_NOMEM;
        free(red);
        if (!rc)
            rc = ds_node_set_str(&n.source, p->session_id);
        if (!rc)
            rc = ds_node_set_str(&n.project, c->project ? c->project : "");
        if (!rc)
            rc = ds_node_set_str(&n.ns, "personal");
        if (!rc)
            rc = ds_node_set_str(&n.metadata, meta);
        free(meta);
        n.source_type = DS_SOURCE_SESSION;
        n.timestamp = c->timestamp_ms ? c->timestamp_ms : now;
        double conf = in->confidence;
        n.confidence = isnan(conf) ? 0.5 : conf < 0 ? 0 : conf > 1 ? 1 : conf;
        n.chunk_index = c->index;
        if (!rc)
            rc = ds_wtxn_put(tx, &n);
        if (!rc) {
            memcpy(r->ids + (size_t)r->nids * DS_ID_LEN, n.id, DS_ID_LEN);
            r->nids++;
            (*written)++;
        }
        ds_node_free(&n);
    }
    return rc;
}

static int delete_region(ds_wtxn *tx, const ds_ingest_region *r, uint64_t *removed)
{
    for (uint32_t k = 0; k < r->nids; k++) {
        int rc = ds_wtxn_delete(tx, r->ids + (size_t)k * DS_ID_LEN);
        if (rc == 0)
            (*removed)++;
        else if (rc != DS_ERR_NOTFOUND)
            return rc;
    }
    return 0;
}

int ds_ingest_commit(ds_store *st, const ds_ingest_plan *p, const uint8_t *job_id, int64_t now,
                     ds_ingest_result *res)
{
    ds_ingest_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (!st || !p || !p->path || p->reread)
        return DS_ERR_INVALID;
    char kb[80];
    const char *key;
    size_t klen;
    tkey(p->path, kb, sizeof kb, &key, &klen);

    ds_wtxn *tx = NULL;
    int rc = ds_store_begin(st, &tx);
    if (rc)
        return rc;
    ds_tstate cur, next;
    ds_tstate_init(&cur);
    ds_tstate_init(&next);
    int have = 0;
    void *v = NULL;
    size_t vl = 0;
    rc = ds_wtxn_aux_get(tx, DS_TABLE_TRANSCRIPTS, key, klen, &v, &vl);
    if (rc == 0) {
        have = ds_tstate_decode(v, vl, &cur) == 0;
        free(v);
    } else if (rc == DS_ERR_NOTFOUND) {
        rc = 0;
    }
    /* A plan made from an older watermark than the stored one replaces
     * what was committed since; one made from a newer one is stale (the
     * transcript was reset meanwhile): re-plan. */
    if (!rc && !p->reset && (have ? cur.offset : 0) < p->base)
        rc = DS_ERR_BUSY;

    size_t cap = (have ? cur.nregions : 0) + p->nchunks;
    if (!rc && cap > 0 && !(next.regions = calloc(cap, sizeof *next.regions)))
        rc = DS_ERR_NOMEM;
    for (size_t i = 0; !rc && have && i < cur.nregions; i++) {
        ds_ingest_region *r = &cur.regions[i];
        if (p->reset || r->start >= p->base) {
            rc = delete_region(tx, r, &res->removed);
        } else {
            next.regions[next.nregions++] = *r;  /* moved */
            r->ids = NULL;
            r->nids = 0;
        }
    }
    for (size_t i = 0; !rc && i < p->nchunks; i++) {
        ds_ingest_region *r = &next.regions[next.nregions];
        rc = put_chunk(tx, p, &p->chunks[i], now, r, &res->nodes);
        if (r->ids)
            next.nregions++;
        if (!rc && r->nids == 0) {
            free(r->ids);
            r->ids = NULL;
            next.nregions--;
        }
        res->chunks++;
    }
    if (!rc) {
        next.offset = p->end;
        memcpy(next.tail_hash, p->tail_hash, DS_HASH_LEN);
        next.size = p->file_size;
        next.mtime_ms = p->mtime_ms;
        next.next_chunk = p->next_chunk;
        next.session_id = xstrdup(p->session_id);
        next.cwd = xstrdup(p->cwd);
        next.project = xstrdup(p->project);
        if (!next.session_id || !next.cwd || !next.project)
            rc = DS_ERR_NOMEM;
    }
    if (!rc && next.nregions > DS_INGEST_MAX_REGIONS)
        rc = DS_ERR_TOOLARGE;
    uint8_t *enc = NULL;
    size_t enclen = 0;
    if (!rc)
        rc = ds_tstate_encode(&next, &enc, &enclen);
    if (!rc)
        rc = ds_wtxn_aux_put(tx, DS_TABLE_TRANSCRIPTS, key, klen, enc, enclen);
    free(enc);
    if (!rc && job_id) {
        int q = ds_queue_finish(tx, job_id, now, res->nodes);
        /* The job may have been moved by someone else (cleared, recovered):
         * the nodes are still right, so they are committed regardless. */
        if (q != DS_ERR_NOTFOUND && q != DS_ERR_BUSY && q != DS_ERR_MALFORMED &&
            q != DS_ERR_TRUNCATED)
            rc = q;
    }
    ds_tstate_free(&cur);
    ds_tstate_free(&next);
    if (rc) {
        ds_wtxn_abort(tx);
        memset(res, 0, sizeof *res);
        return rc;
    }
    rc = ds_wtxn_commit(tx);
    if (rc)
        memset(res, 0, sizeof *res);
    return rc;
}
