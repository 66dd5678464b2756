/*
 * node.c - the knowledge node: lifecycle, MessagePack codec and UUID
 * helpers.  Encoding uses msgpack-c's packer; decoding uses the bounded
 * reader in msgread.c because records and frames come from disk and from
 * untrusted peers.  Unknown map keys are skipped so newer writers can add
 * fields; required fields missing, wrong types, embedded NULs, invalid
 * UTF-8, oversized fields and trailing bytes are rejected.
 */
#include "ds/node.h"

#include <stdlib.h>
#include <string.h>
#include <msgpack.h>

#include "core/msgread.h"
#include "core/node_int.h"
#include "core/util.h"

static const char *type_names[DS_SOURCE_TYPE_COUNT] = { "session", "file", "note" };

void ds_node_init(ds_node *n)
{
    memset(n, 0, sizeof *n);
}

void ds_node_free(ds_node *n)
{
    free(n->content);
    free(n->source);
    free(n->project);
    free(n->ns);
    free(n->metadata);
    ds_node_init(n);
}

int ds_node_set_str(char **field, const char *s)
{
    char *c = NULL;
    if (s) {
        c = strdup(s);
        if (!c) return DS_ERR_NOMEM;
    }
    free(*field);
    *field = c;
    return 0;
}

void ds_node_hash(ds_node *n)
{
    ds_hash(n->content ? n->content : "", n->content_len, n->hash, DS_HASH_LEN);
    n->hashed_content = n->content;
    n->hashed_len = n->content_len;
}

int ds_node_set_content(ds_node *n, const char *text, size_t len)
{
    if (len > DS_NODE_MAX_CONTENT) return DS_ERR_TOOLARGE;
    char *c = malloc(len + 1);
    if (!c) return DS_ERR_NOMEM;
    memcpy(c, text, len);
    c[len] = 0;
    free(n->content);
    n->content = c;
    n->content_len = len;
    n->checked_content = NULL;     /* not checked: the put validates it */
    ds_node_hash(n);
    return 0;
}

int ds_node_copy(ds_node *dst, const ds_node *src)
{
    ds_node tmp = *src;
    tmp.content = tmp.source = tmp.project = tmp.ns = tmp.metadata = NULL;
    if ((src->content && !(tmp.content = malloc(src->content_len + 1))) ||
        (src->source && !(tmp.source = strdup(src->source))) ||
        (src->project && !(tmp.project = strdup(src->project))) ||
        (src->ns && !(tmp.ns = strdup(src->ns))) ||
        (src->metadata && !(tmp.metadata = strdup(src->metadata)))) {
        ds_node_free(&tmp);
        return DS_ERR_NOMEM;
    }
    if (src->content) memcpy(tmp.content, src->content, src->content_len + 1);
    int hashed = src->content && src->hashed_content == src->content && src->hashed_len == src->content_len;
    tmp.hashed_content = hashed ? tmp.content : NULL;
    tmp.hashed_len = hashed ? tmp.content_len : 0;
    int checked = src->content && src->checked_content == src->content &&
                  src->checked_len == src->content_len;
    tmp.checked_content = checked ? tmp.content : NULL;
    tmp.checked_len = checked ? tmp.content_len : 0;
    ds_node_free(dst);
    *dst = tmp;
    return 0;
}

const char *ds_source_type_name(ds_source_type t)
{
    return (unsigned)t < DS_SOURCE_TYPE_COUNT ? type_names[t] : "unknown";
}

/* The type named by the |len| bytes at |s| (not NUL-terminated). */
static int type_from(const char *s, size_t len, ds_source_type *out)
{
    for (int i = 0; i < DS_SOURCE_TYPE_COUNT; i++)
        if (strlen(type_names[i]) == len && memcmp(s, type_names[i], len) == 0) {
            *out = (ds_source_type)i;
            return 0;
        }
    return DS_ERR_INVALID;
}

int ds_source_type_parse(const char *s, ds_source_type *out)
{
    return type_from(s, strlen(s), out);
}

/* ---- encoding ---------------------------------------------------------- */

static void pack_key(msgpack_packer *pk, const char *k)
{
    size_t l = strlen(k);
    msgpack_pack_str(pk, l);
    msgpack_pack_str_body(pk, k, l);
}

static void pack_str(msgpack_packer *pk, const char *k, const char *v, size_t l)
{
    pack_key(pk, k);
    msgpack_pack_str(pk, l);
    msgpack_pack_str_body(pk, v, l);
}

/* sbuffer writer that remembers a failed allocation, so one failure
 * cannot leave a silently shortened encoding behind. */
typedef struct { msgpack_sbuffer sb; int failed; } enc_buf;

static int enc_write(void *data, const char *buf, size_t len)
{
    enc_buf *e = data;
    if (e->failed || msgpack_sbuffer_write(&e->sb, buf, len) != 0) e->failed = 1;
    return e->failed ? -1 : 0;
}

int ds_node_encode(const ds_node *n, uint8_t **out, size_t *outlen)
{
    if (!n->content || !n->source || (unsigned)n->source_type >= DS_SOURCE_TYPE_COUNT)
        return DS_ERR_INVALID;
    const char *project = n->project ? n->project : "";
    const char *ns = n->ns && n->ns[0] ? n->ns : "personal";
    enc_buf eb = { .failed = 0 };
    msgpack_sbuffer_init(&eb.sb);
    /* One allocation of about the final size (the sbuffer would start at
     * 8 KiB, a size malloc serves slowly, and most records are < 1 KiB). */
    size_t est = n->content_len + strlen(n->source) + strlen(project) + strlen(ns) +
                 (n->metadata ? strlen(n->metadata) : 0) + 192;
    if (!(eb.sb.data = malloc(est))) return DS_ERR_NOMEM;
    eb.sb.alloc = est;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &eb, enc_write);
    msgpack_pack_map(&pk, n->metadata ? 11 : 10);
    pack_key(&pk, "id");
    msgpack_pack_bin(&pk, DS_ID_LEN);
    msgpack_pack_bin_body(&pk, n->id, DS_ID_LEN);
    pack_str(&pk, "content", n->content, n->content_len);
    pack_str(&pk, "source", n->source, strlen(n->source));
    pack_str(&pk, "source_type", type_names[n->source_type], strlen(type_names[n->source_type]));
    pack_str(&pk, "project", project, strlen(project));
    pack_str(&pk, "namespace", ns, strlen(ns));
    pack_key(&pk, "timestamp");
    msgpack_pack_int64(&pk, n->timestamp);
    pack_key(&pk, "confidence");
    msgpack_pack_double(&pk, n->confidence);
    pack_key(&pk, "chunk_index");
    msgpack_pack_uint32(&pk, n->chunk_index);
    pack_key(&pk, "hash");
    msgpack_pack_bin(&pk, DS_HASH_LEN);
    msgpack_pack_bin_body(&pk, n->hash, DS_HASH_LEN);
    if (n->metadata) pack_str(&pk, "metadata", n->metadata, strlen(n->metadata));
    if (eb.failed) {
        msgpack_sbuffer_destroy(&eb.sb);
        return DS_ERR_NOMEM;
    }
    *out = (uint8_t *)eb.sb.data;
    *outlen = eb.sb.size;
    return 0;
}

/* ---- decoding ---------------------------------------------------------- */

enum {
    F_ID = 1 << 0, F_CONTENT = 1 << 1, F_SOURCE = 1 << 2, F_TYPE = 1 << 3,
    F_TIMESTAMP = 1 << 4, F_HASH = 1 << 5,
};
#define F_REQUIRED (F_ID | F_CONTENT | F_SOURCE | F_TYPE | F_TIMESTAMP)

/* A copy of |s| (|l| bytes) with a NUL after it: from |a| when given
 * (replacing *dst without freeing it), else malloc'd (freeing *dst). */
static int set_text(char **dst, const char *s, size_t l, ds_strarena *a)
{
    char *c;
    if (a) {
        if (a->left <= l) return DS_ERR_NOMEM;
        c = a->p;
        a->p += l + 1;
        a->left -= l + 1;
    } else if (!(c = malloc(l + 1))) {
        return DS_ERR_NOMEM;
    }
    memcpy(c, s, l);
    c[l] = 0;
    if (!a) free(*dst);
    *dst = c;
    return 0;
}

static int read_text(ds_mr *r, char **dst, size_t *dlen, size_t max, ds_strarena *a)
{
    const char *s;
    uint32_t l;
    int rc = ds_mr_str(r, &s, &l);
    if (rc) return rc;
    if (l > max) return DS_ERR_TOOLARGE;
    if (!ds_utf8_valid(s, l)) return DS_ERR_MALFORMED;
    if ((rc = set_text(dst, s, l, a))) return rc;
    if (dlen) *dlen = l;
    return 0;
}

static int read_fixed_bin(ds_mr *r, uint8_t *dst, uint32_t want)
{
    const uint8_t *b;
    uint32_t l;
    int rc = ds_mr_bin(r, &b, &l);
    if (rc) return rc;
    if (l != want) return DS_ERR_MALFORMED;
    memcpy(dst, b, want);
    return 0;
}

static int decode_fields(ds_mr *r, ds_node *n, ds_strarena *a)
{
    uint32_t count;
    int rc = ds_mr_map(r, &count);
    if (rc) return rc;
    unsigned seen = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *k;
        uint32_t kl;
        if ((rc = ds_mr_str(r, &k, &kl))) return rc;
        unsigned bit = 0;
        if (ds_mr_key_eq(k, kl, "id")) {
            bit = F_ID;
            rc = read_fixed_bin(r, n->id, DS_ID_LEN);
        } else if (ds_mr_key_eq(k, kl, "content")) {
            bit = F_CONTENT;
            rc = read_text(r, &n->content, &n->content_len, DS_NODE_MAX_CONTENT, a);
            if (!rc) {
                n->checked_content = n->content;
                n->checked_len = n->content_len;
            }
        } else if (ds_mr_key_eq(k, kl, "source")) {
            bit = F_SOURCE;
            rc = read_text(r, &n->source, NULL, DS_NODE_MAX_FIELD, a);
        } else if (ds_mr_key_eq(k, kl, "source_type")) {
            const char *t;
            uint32_t tl;
            bit = F_TYPE;
            rc = ds_mr_str(r, &t, &tl);
            if (!rc && tl > 16) rc = DS_ERR_TOOLARGE;
            if (!rc && type_from(t, tl, &n->source_type)) rc = DS_ERR_MALFORMED;
        } else if (ds_mr_key_eq(k, kl, "project")) {
            rc = read_text(r, &n->project, NULL, DS_NODE_MAX_FIELD, a);
        } else if (ds_mr_key_eq(k, kl, "namespace")) {
            rc = read_text(r, &n->ns, NULL, DS_NODE_MAX_FIELD, a);
        } else if (ds_mr_key_eq(k, kl, "timestamp")) {
            bit = F_TIMESTAMP;
            rc = ds_mr_int(r, &n->timestamp);
        } else if (ds_mr_key_eq(k, kl, "confidence")) {
            rc = ds_mr_double(r, &n->confidence);
            if (!rc && !(n->confidence >= 0.0 && n->confidence <= 1.0)) rc = DS_ERR_MALFORMED;
        } else if (ds_mr_key_eq(k, kl, "chunk_index")) {
            uint64_t v;
            rc = ds_mr_uint(r, &v);
            if (!rc && v > UINT32_MAX) rc = DS_ERR_MALFORMED;
            n->chunk_index = (uint32_t)v;
        } else if (ds_mr_key_eq(k, kl, "hash")) {
            bit = F_HASH;
            rc = read_fixed_bin(r, n->hash, DS_HASH_LEN);
        } else if (ds_mr_key_eq(k, kl, "metadata")) {
            if (ds_mr_peek(r) == DS_MR_NIL) rc = ds_mr_nil(r);
            else rc = read_text(r, &n->metadata, NULL, DS_NODE_MAX_FIELD, a);
        } else {
            rc = ds_mr_skip(r);      /* a field from a newer writer */
        }
        if (rc) return rc;
        if (seen & bit) return DS_ERR_MALFORMED;   /* duplicate key */
        seen |= bit;
    }
    if ((seen & F_REQUIRED) != F_REQUIRED) return DS_ERR_MALFORMED;
    if (!n->project && (rc = set_text(&n->project, "", 0, a))) return rc;
    if (!n->ns && (rc = set_text(&n->ns, "personal", 8, a))) return rc;
    if (!(seen & F_HASH)) ds_node_hash(n);
    return 0;
}

int ds_node_decode(const uint8_t *buf, size_t len, ds_node *out)
{
    ds_node_init(out);
    if (len > DS_NODE_MAX_ENCODED) return DS_ERR_TOOLARGE;
    ds_mr r;
    ds_mr_init(&r, buf, len);
    int rc = decode_fields(&r, out, NULL);
    if (!rc && ds_mr_left(&r) != 0) rc = DS_ERR_MALFORMED;   /* trailing bytes */
    if (rc) ds_node_free(out);
    return rc;
}

static int decode_prefix(const uint8_t *buf, size_t len, ds_node *out, size_t *used,
                         ds_strarena *a)
{
    ds_node_init(out);
    *used = 0;
    ds_mr r;
    ds_mr_init(&r, buf, len > DS_NODE_MAX_ENCODED ? DS_NODE_MAX_ENCODED : len);
    int rc = decode_fields(&r, out, a);
    /* cut off by the size limit rather than by the end of the input */
    if (rc == DS_ERR_TRUNCATED && len > DS_NODE_MAX_ENCODED) rc = DS_ERR_TOOLARGE;
    if (rc) {
        if (a) ds_node_init(out);
        else ds_node_free(out);
        return rc;
    }
    *used = (size_t)(r.p - buf);
    return 0;
}

int ds_node_decode_prefix(const uint8_t *buf, size_t len, ds_node *out, size_t *used)
{
    return decode_prefix(buf, len, out, used, NULL);
}

int ds__node_decode_arena(const uint8_t *buf, size_t len, ds_node *out, size_t *used,
                          ds_strarena *a)
{
    return decode_prefix(buf, len, out, used, a);
}

int ds_node_peek_project(const uint8_t *buf, size_t len, const char **project, size_t *plen)
{
    *project = "";
    *plen = 0;
    if (len > DS_NODE_MAX_ENCODED) return DS_ERR_TOOLARGE;
    ds_mr r;
    ds_mr_init(&r, buf, len);
    uint32_t count;
    int rc = ds_mr_map(&r, &count);
    for (uint32_t i = 0; i < count && !rc; i++) {
        const char *k;
        uint32_t kl;
        if ((rc = ds_mr_str(&r, &k, &kl))) break;
        if (ds_mr_key_eq(k, kl, "project")) {
            const char *s;
            uint32_t l;
            if ((rc = ds_mr_str(&r, &s, &l))) break;
            if (l > DS_NODE_MAX_FIELD || memchr(s, 0, l)) return DS_ERR_MALFORMED;
            *project = s;
            *plen = l;
        } else {
            rc = ds_mr_skip(&r);
        }
    }
    if (!rc && ds_mr_left(&r)) rc = DS_ERR_MALFORMED;
    if (rc) { *project = ""; *plen = 0; }
    return rc;
}

/* ---- UUIDs ------------------------------------------------------------- */

void ds_uuid_from_random(uint8_t id[DS_ID_LEN], const uint8_t random[DS_ID_LEN])
{
    memcpy(id, random, DS_ID_LEN);
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40);   /* version 4 */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
}

void ds_uuid_format(const uint8_t id[DS_ID_LEN], char out[DS_UUID_STRLEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < DS_ID_LEN; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = digits[id[i] >> 4];
        *o++ = digits[id[i] & 15];
    }
    *o = 0;
}

int ds_uuid_parse(const char *s, uint8_t id[DS_ID_LEN])
{
    if (strlen(s) != DS_UUID_STRLEN) return DS_ERR_INVALID;
    char hex[33];
    int j = 0;
    for (int i = 0; i < DS_UUID_STRLEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return DS_ERR_INVALID;
            continue;
        }
        hex[j++] = s[i];
    }
    hex[32] = 0;
    return ds_hex_decode(hex, id, DS_ID_LEN);
}
