/*
 * sync.c - the sync engine: share sets, cursors, message codec, the
 * publisher's page builder and the subscriber's page applier (see
 * sync.h and docs/protocol.md).  Messages are maps keyed by short
 * strings with a "type" and a protocol version "v"; nodes travel in the
 * store's own node encoding.  Decoding uses the bounded reader.
 */
#include "core/sync.h"

#include <stdlib.h>
#include <string.h>
#include <msgpack.h>
#include <sodium.h>

#include "core/msgread.h"
#include "core/node_int.h"
#include "core/store_int.h"

static const char *type_names[] = {
    [DS_MSG_SYNC_REQUEST] = "sync_request",
    [DS_MSG_SYNC_RESPONSE] = "sync_response",
    [DS_MSG_ERROR] = "error",
    [DS_MSG_EXPORT_HEADER] = "export_header",
    [DS_MSG_SIGNATURE] = "signature",
};
#define NTYPES (sizeof type_names / sizeof *type_names)

/* ---- share set ----------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ds_share_set_init(ds_share_set *s, const char *const *roots, size_t n)
{
    memset(s, 0, sizeof *s);
    if (n && !(s->roots = calloc(n, sizeof *s->roots))) return DS_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (roots[i][0] != '/') { ds_share_set_free(s); return DS_ERR_INVALID; }
        if (!(s->roots[s->n] = strdup(roots[i]))) { ds_share_set_free(s); return DS_ERR_NOMEM; }
        s->n++;
    }
    if (s->n) qsort(s->roots, s->n, sizeof *s->roots, cmp_str);
    size_t w = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (w && strcmp(s->roots[w - 1], s->roots[i]) == 0) { free(s->roots[i]); continue; }
        s->roots[w++] = s->roots[i];
    }
    s->n = w;
    crypto_generichash_state st;
    crypto_generichash_init(&st, (const unsigned char *)"ds-share-v1", 11, DS_SHARE_DIGEST_LEN);
    for (size_t i = 0; i < s->n; i++)
        crypto_generichash_update(&st, (const unsigned char *)s->roots[i], strlen(s->roots[i]) + 1);
    crypto_generichash_final(&st, s->digest, DS_SHARE_DIGEST_LEN);
    return 0;
}

void ds_share_set_free(ds_share_set *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->roots[i]);
    free(s->roots);
    memset(s, 0, sizeof *s);
}

int ds_share_set_contains(const ds_share_set *s, const char *project)
{
    if (!project || !project[0]) return 0;
    for (size_t i = 0; i < s->n; i++)
        if (ds_path_within(project, s->roots[i])) return 1;
    return 0;
}

/* ---- cursor -------------------------------------------------------------- */

/* Layout 2: version (2) | nonce (12) | ChaCha20-Poly1305 (IETF) of the
 * sequence (8, big-endian) and 4 zero bytes, with its 16-byte tag.  The
 * epoch and share digest are not carried: they are the associated data,
 * so a cursor opens only for the epoch and share set it was made for. */
#define CURSOR_LAYOUT 2
#define CURSOR_PLAIN 12
_Static_assert(1 + DS_CURSOR_NONCE_LEN + CURSOR_PLAIN + crypto_aead_chacha20poly1305_IETF_ABYTES ==
               DS_CURSOR_LEN, "a sealed cursor fills DS_CURSOR_LEN");
_Static_assert(DS_CURSOR_NONCE_LEN == crypto_aead_chacha20poly1305_IETF_NPUBBYTES &&
               DS_CURSOR_KEY_LEN == crypto_aead_chacha20poly1305_IETF_KEYBYTES &&
               DS_CURSOR_KEY_LEN == crypto_kdf_KEYBYTES, "cursor key and nonce sizes");

void ds_cursor_seal_init(ds_cursor_seal *s, const uint8_t sk[64],
                         const uint8_t nonce[DS_CURSOR_NONCE_LEN])
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    crypto_sign_ed25519_sk_to_seed(seed, sk);
    crypto_kdf_derive_from_key(s->key, sizeof s->key, 2, "dscursor", seed);
    sodium_memzero(seed, sizeof seed);
    memcpy(s->nonce, nonce, sizeof s->nonce);
}

void ds_cursor_seal_wipe(ds_cursor_seal *s)
{
    sodium_memzero(s, sizeof *s);
}

static void cursor_ad(uint8_t ad[1 + DS_EPOCH_LEN + DS_SHARE_DIGEST_LEN], const ds_cursor *c)
{
    ad[0] = CURSOR_LAYOUT;
    memcpy(ad + 1, c->epoch, DS_EPOCH_LEN);
    memcpy(ad + 1 + DS_EPOCH_LEN, c->digest, DS_SHARE_DIGEST_LEN);
}

void ds_cursor_encode(const ds_cursor *c, ds_cursor_seal *s, uint8_t out[DS_CURSOR_LEN])
{
    uint8_t ad[1 + DS_EPOCH_LEN + DS_SHARE_DIGEST_LEN], plain[CURSOR_PLAIN] = { 0 };
    cursor_ad(ad, c);
    ds_put_be64(plain, c->seq);
    out[0] = CURSOR_LAYOUT;
    memcpy(out + 1, s->nonce, DS_CURSOR_NONCE_LEN);
    crypto_aead_chacha20poly1305_ietf_encrypt(out + 1 + DS_CURSOR_NONCE_LEN, NULL, plain,
                                              sizeof plain, ad, sizeof ad, NULL, s->nonce, s->key);
    sodium_increment(s->nonce, sizeof s->nonce);
}

int ds_cursor_decode(const uint8_t *in, size_t len, const ds_cursor_seal *s, ds_cursor *c)
{
    static const uint8_t zero[4];
    uint8_t ad[1 + DS_EPOCH_LEN + DS_SHARE_DIGEST_LEN], plain[CURSOR_PLAIN];
    if (len != DS_CURSOR_LEN || in[0] != CURSOR_LAYOUT) return DS_ERR_MALFORMED;
    cursor_ad(ad, c);
    const uint8_t *sealed = in + 1 + DS_CURSOR_NONCE_LEN;
    if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, NULL, NULL, sealed,
                                                  DS_CURSOR_LEN - 1 - DS_CURSOR_NONCE_LEN, ad,
                                                  sizeof ad, in + 1, s->key) != 0 ||
        memcmp(plain + 8, zero, sizeof zero) != 0)
        return DS_ERR_MALFORMED;
    c->seq = ds_get_be64(plain);
    return 0;
}

/* ---- encoding ------------------------------------------------------------ */

typedef struct enc { ds_buf *b; int failed; } enc;

static int enc_write(void *data, const char *buf, size_t len)
{
    enc *e = data;
    if (!e->failed && ds_buf_append(e->b, buf, len)) e->failed = 1;
    return e->failed ? -1 : 0;
}

static void key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

static void head(msgpack_packer *pk, size_t nfields, ds_msg_type t)
{
    msgpack_pack_map(pk, nfields + 2);
    key(pk, "type");
    key(pk, type_names[t]);
    key(pk, "v");
    msgpack_pack_uint32(pk, DS_SYNC_VERSION);
}

#define ENC_BEGIN(out) enc e_ = { (out), 0 }; size_t start_ = (out)->len; \
    msgpack_packer pk_; msgpack_packer_init(&pk_, &e_, enc_write); msgpack_packer *pk = &pk_
#define ENC_END(out) do { if (e_.failed) { (out)->len = start_; return DS_ERR_NOMEM; } return 0; } while (0)

int ds_msg_encode_request(ds_buf *out, const uint8_t *cursor, uint32_t max_nodes, uint32_t max_bytes)
{
    ENC_BEGIN(out);
    head(pk, 3, DS_MSG_SYNC_REQUEST);
    key(pk, "cursor");
    if (cursor) { msgpack_pack_bin(pk, DS_CURSOR_LEN); msgpack_pack_bin_body(pk, cursor, DS_CURSOR_LEN); }
    else msgpack_pack_nil(pk);
    key(pk, "max_nodes");
    msgpack_pack_uint32(pk, max_nodes);
    key(pk, "max_bytes");
    msgpack_pack_uint32(pk, max_bytes);
    ENC_END(out);
}

int ds_msg_encode_error(ds_buf *out, const char *code, const char *message)
{
    ENC_BEGIN(out);
    head(pk, 2, DS_MSG_ERROR);
    key(pk, "code");
    key(pk, code);
    key(pk, "message");
    key(pk, message);
    ENC_END(out);
}

int ds_msg_encode_header(ds_buf *out, const char *node_id, int64_t created_ms, int full)
{
    ENC_BEGIN(out);
    head(pk, 3, DS_MSG_EXPORT_HEADER);
    key(pk, "node_id");
    key(pk, node_id);
    key(pk, "created");
    msgpack_pack_int64(pk, created_ms);
    key(pk, "full");
    if (full) msgpack_pack_true(pk); else msgpack_pack_false(pk);
    ENC_END(out);
}

int ds_msg_encode_signature(ds_buf *out, const uint8_t sig[64])
{
    ENC_BEGIN(out);
    head(pk, 1, DS_MSG_SIGNATURE);
    key(pk, "sig");
    msgpack_pack_bin(pk, 64);
    msgpack_pack_bin_body(pk, sig, 64);
    ENC_END(out);
}

/* ---- decoding ------------------------------------------------------------ */

void ds_msg_free(ds_msg *m)
{
    if (!m->strs)                     /* else the nodes own no memory */
        for (size_t i = 0; i < m->nnodes; i++) ds_node_free(&m->nodes[i]);
    free(m->nodes);
    free(m->strs);
    free(m->raw);
    free(m->spans);
    free(m->message);
    memset(m, 0, sizeof *m);
}

static int copy_str(ds_mr *r, char *dst, size_t cap)
{
    const char *s;
    uint32_t l;
    int rc = ds_mr_str(r, &s, &l);
    if (rc) return rc;
    if (l >= cap || memchr(s, 0, l)) return DS_ERR_MALFORMED;
    memcpy(dst, s, l);
    dst[l] = 0;
    return 0;
}

static int read_nodes(ds_mr *r, ds_msg *m)
{
    uint32_t n;
    int rc = ds_mr_array(r, &n);
    if (rc) return rc;
    if (n > DS_SYNC_MAX_PAGE_NODES) return DS_ERR_TOOLARGE;
    if (!n) return 0;
    if (!(m->nodes = calloc(n, sizeof *m->nodes)) || !(m->spans = calloc(n, sizeof *m->spans)))
        return DS_ERR_NOMEM;
    /* All their strings go to one block (node_int.h): the nodes are in
     * the rest of the message, so that bounds what they take. */
    size_t cap = ds_mr_left(r) + (size_t)n * DS_NODE_ARENA_EXTRA;
    if (!(m->strs = malloc(cap))) return DS_ERR_NOMEM;
    ds_strarena arena = { m->strs, cap };
    const uint8_t *first = r->p;
    int any = 0;                      /* some node is stored as received */
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *start = r->p;
        ds_node *nd = &m->nodes[i];
        size_t used;
        if ((rc = ds__node_decode_arena(start, ds_mr_left(r), nd, &used, &arena))) return rc;
        r->p += used;
        m->nnodes++;
        /* A peer's hash is never trusted: it is recomputed here, on the
         * receiving thread, rather than by the put on the applying one.
         * A node whose bytes carry the right hash and a namespace is
         * stored as received: re-encoding it would give the same node. */
        if (nd->hashed_content == nd->content && nd->hashed_len == nd->content_len)
            continue;                 /* no hash given: the decoder computed it */
        uint8_t given[DS_HASH_LEN];
        memcpy(given, nd->hash, DS_HASH_LEN);
        ds_node_hash(nd);
        if (nd->ns[0] && memcmp(given, nd->hash, DS_HASH_LEN) == 0) {
            m->spans[i].off = (uint32_t)(start - first);
            m->spans[i].len = (uint32_t)(r->p - start);
            any = 1;
        }
    }
    if (!any) return 0;
    size_t total = (size_t)(r->p - first);
    if (!(m->raw = malloc(total))) return DS_ERR_NOMEM;
    memcpy(m->raw, first, total);
    return 0;
}

static int decode_body(ds_mr *r, ds_msg *m)
{
    uint32_t count;
    int rc = ds_mr_map(r, &count);
    if (rc) return rc;
    int have_type = 0, have_v = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *k;
        uint32_t kl;
        if ((rc = ds_mr_str(r, &k, &kl))) return rc;
        if (ds_mr_key_eq(k, kl, "type")) {
            char t[32];
            if ((rc = copy_str(r, t, sizeof t))) return rc;
            m->type = 0;
            for (size_t j = 1; j < NTYPES; j++)
                if (type_names[j] && strcmp(t, type_names[j]) == 0) m->type = (ds_msg_type)j;
            if (!m->type) return DS_ERR_MALFORMED;
            have_type = 1;
        } else if (ds_mr_key_eq(k, kl, "v")) {
            uint64_t v;
            if ((rc = ds_mr_uint(r, &v))) return rc;
            m->version = v;
            have_v = 1;
        } else if (ds_mr_key_eq(k, kl, "cursor") || ds_mr_key_eq(k, kl, "new_cursor")) {
            if (ds_mr_peek(r) == DS_MR_NIL) { rc = ds_mr_nil(r); m->has_cursor = 0; }
            else {
                const uint8_t *b;
                uint32_t l;
                if ((rc = ds_mr_bin(r, &b, &l))) return rc;
                if (l != DS_CURSOR_LEN) return DS_ERR_MALFORMED;
                memcpy(m->cursor, b, DS_CURSOR_LEN);
                m->has_cursor = 1;
            }
        } else if (ds_mr_key_eq(k, kl, "max_nodes") || ds_mr_key_eq(k, kl, "max_bytes")) {
            uint64_t v;
            if ((rc = ds_mr_uint(r, &v))) return rc;
            uint32_t c = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
            if (ds_mr_key_eq(k, kl, "max_nodes")) m->max_nodes = c; else m->max_bytes = c;
        } else if (ds_mr_key_eq(k, kl, "nodes")) {
            if (m->nodes) return DS_ERR_MALFORMED;
            rc = read_nodes(r, m);
        } else if (ds_mr_key_eq(k, kl, "has_more") || ds_mr_key_eq(k, kl, "full")) {
            int b;
            if ((rc = ds_mr_bool(r, &b))) return rc;
            if (ds_mr_key_eq(k, kl, "has_more")) m->has_more = b; else m->full = b;
        } else if (ds_mr_key_eq(k, kl, "code")) {
            rc = copy_str(r, m->code, sizeof m->code);
        } else if (ds_mr_key_eq(k, kl, "message")) {
            const char *s;
            uint32_t l;
            if ((rc = ds_mr_str(r, &s, &l))) return rc;
            if (l > 4096 || !ds_utf8_valid(s, l)) return DS_ERR_MALFORMED;
            free(m->message);
            if (!(m->message = strndup(s, l))) return DS_ERR_NOMEM;
        } else if (ds_mr_key_eq(k, kl, "node_id")) {
            if ((rc = copy_str(r, m->node_id, sizeof m->node_id))) return rc;
        } else if (ds_mr_key_eq(k, kl, "created")) {
            rc = ds_mr_int(r, &m->created_ms);
        } else if (ds_mr_key_eq(k, kl, "sig")) {
            const uint8_t *b;
            uint32_t l;
            if ((rc = ds_mr_bin(r, &b, &l))) return rc;
            if (l != 64) return DS_ERR_MALFORMED;
            memcpy(m->sig, b, 64);
        } else {
            rc = ds_mr_skip(r);            /* a field of a newer version */
        }
        if (rc) return rc;
    }
    if (!have_type || !have_v) return DS_ERR_MALFORMED;
    return 0;
}

int ds_msg_decode(const uint8_t *buf, size_t len, ds_msg *out)
{
    memset(out, 0, sizeof *out);
    ds_mr r;
    ds_mr_init(&r, buf, len);
    int rc = decode_body(&r, out);
    if (!rc && ds_mr_left(&r)) rc = DS_ERR_MALFORMED;
    if (!rc && out->version != DS_SYNC_VERSION) {
        ds_msg_type t = out->type;
        uint64_t v = out->version;
        ds_msg_free(out);
        out->type = t;
        out->version = v;
        return DS_ERR_VERSION;
    }
    if (!rc && out->type == DS_MSG_ERROR && !out->code[0]) rc = DS_ERR_MALFORMED;
    if (!rc && out->type == DS_MSG_SYNC_RESPONSE && !out->has_cursor) rc = DS_ERR_MALFORMED;
    if (rc) ds_msg_free(out);
    return rc;
}

/* ---- publisher ----------------------------------------------------------- */

typedef struct pub {
    const ds_share_set *share;
    ds_buf *out;              /* encoded nodes, concatenated from |base| */
    size_t base;
    size_t count, max_nodes, max_bytes, scanned;
    uint64_t last_seq;        /* last sequence fully dealt with */
    int stopped;              /* the scan stopped before a node: has_more */
    int rc;
    ds_buf proj;              /* the last record's project, NUL-terminated */
    int proj_valid, proj_shared;
} pub;

/* Whether a record's project is shared.  Runs of records share their
 * project, so the last answer is kept. */
static int pub_shared(pub *p, const char *proj, size_t len, int *shared)
{
    if (p->proj_valid && p->proj.len == len + 1 && memcmp(p->proj.data, proj, len) == 0) {
        *shared = p->proj_shared;
        return 0;
    }
    p->proj.len = 0;
    p->proj_valid = 0;
    static const char nul = 0;
    if (ds_buf_append(&p->proj, proj, len) || ds_buf_append(&p->proj, &nul, 1)) return DS_ERR_NOMEM;
    p->proj_shared = ds_share_set_contains(p->share, (const char *)p->proj.data);
    p->proj_valid = 1;
    *shared = p->proj_shared;
    return 0;
}

/* Stored records are sent as they are: the store keeps each node in the
 * wire encoding, so the publisher only reads the project to filter.  The
 * record is copied first and read in the copy: the copy streams through
 * the record in order, where reading the project first would jump past
 * the content into lines not yet loaded (about a third of the
 * publisher's time went to those misses).  A record that is not sent is
 * cut off again. */
static int pub_record(uint64_t seq, const uint8_t *rec, size_t len, void *ud)
{
    pub *p = ud;
    if (p->scanned >= DS_SYNC_SCAN_BUDGET) { p->stopped = 1; return 1; }
    size_t end = p->out->len, at = end - p->base;   /* |at|: node bytes so far */
    int rc = ds_buf_append(p->out, rec, len);
    if (rc) { p->rc = rc; return rc; }
    const char *proj;
    size_t plen;
    int shared;
    rc = ds_node_peek_project(p->out->data + end, len, &proj, &plen);
    if (!rc) rc = pub_shared(p, proj, plen, &shared);
    if (rc || !shared) p->out->len = end;
    if (rc) { p->rc = rc == DS_ERR_NOMEM ? rc : DS_ERR_STORE; return p->rc; }
    /* A full page ends before the next shared node; unshared ones are
     * skipped now so that has_more is false when only they remain. */
    if (shared && (p->count >= p->max_nodes || at >= p->max_bytes ||
                   (p->count && at + len > p->max_bytes))) {
        p->out->len = end;
        p->stopped = 1;
        return 1;
    }
    p->scanned++;
    p->count += (size_t)shared;
    p->last_seq = seq;
    return 0;
}

/* A SYNC_RESPONSE's head is about 100 bytes. */
#define PUB_HEAD_MAX 160

typedef struct fixw { uint8_t *p; size_t len; } fixw;

static int fixw_write(void *data, const char *buf, size_t len)
{
    fixw *w = data;
    if (len > PUB_HEAD_MAX - w->len) return -1;    /* cannot happen: see pub_head */
    memcpy(w->p + w->len, buf, len);
    w->len += len;
    return 0;
}

/* Writes a SYNC_RESPONSE's head (everything before its nodes) for
 * |count| nodes into |hd|; returns its length.  |cursor| may be NULL to
 * measure it.  Its parts are bounded: the longest head is the fixed keys
 * and cursor plus a 5-byte uint and a 5-byte array header. */
static size_t pub_head(uint8_t hd[PUB_HEAD_MAX], const uint8_t *cursor, int has_more, size_t count)
{
    static const uint8_t zero[DS_CURSOR_LEN];
    fixw b = { hd, 0 };
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, fixw_write);
    head(&pk, 3, DS_MSG_SYNC_RESPONSE);
    key(&pk, "new_cursor");
    msgpack_pack_bin(&pk, DS_CURSOR_LEN);
    msgpack_pack_bin_body(&pk, cursor ? cursor : zero, DS_CURSOR_LEN);
    key(&pk, "has_more");
    if (has_more) msgpack_pack_true(&pk); else msgpack_pack_false(&pk);
    key(&pk, "nodes");
    msgpack_pack_array(&pk, (uint32_t)count);
    return b.len;
}
_Static_assert(1 + 5 + 14 + 2 + 5 + 11 + 2 + DS_CURSOR_LEN + 9 + 1 + 6 + 5 <= PUB_HEAD_MAX,
               "PUB_HEAD_MAX holds the longest head");

int ds_sync_publish(ds_store *st, ds_cursor_seal *seal, const ds_share_set *share,
                    const ds_msg *req, ds_buf *out, ds_publish_stats *stats)
{
    if (stats) memset(stats, 0, sizeof *stats);
    uint8_t epoch[DS_EPOCH_LEN];
    int rc = ds_store_epoch(st, epoch);
    if (rc) return rc;
    return ds_sync_publish_epoch(st, epoch, seal, share, req, out, stats);
}

int ds_sync_publish_epoch(ds_store *st, const uint8_t epoch[DS_EPOCH_LEN], ds_cursor_seal *seal,
                          const ds_share_set *share, const ds_msg *req, ds_buf *out,
                          ds_publish_stats *stats)
{
    if (stats) memset(stats, 0, sizeof *stats);
    if (!seal) return DS_ERR_INVALID;
    int rc;
    uint64_t from = 0;
    ds_cursor nc;
    memcpy(nc.epoch, epoch, DS_EPOCH_LEN);
    memcpy(nc.digest, share->digest, DS_SHARE_DIGEST_LEN);
    /* A cursor that does not open for this epoch and share set (a reset
     * store, a new share set, another layout, altered) means starting
     * over from 0: never stuck, never a skipped node. */
    if (req->has_cursor && ds_cursor_decode(req->cursor, DS_CURSOR_LEN, seal, &nc) == 0)
        from = nc.seq;
    pub p = { .share = share, .last_seq = from, .out = out };
    p.max_nodes = req->max_nodes ? req->max_nodes : DS_SYNC_PAGE_NODES;
    if (p.max_nodes > DS_SYNC_MAX_PAGE_NODES) p.max_nodes = DS_SYNC_MAX_PAGE_NODES;
    p.max_bytes = req->max_bytes ? req->max_bytes : DS_SYNC_PAGE_BYTES;
    if (p.max_bytes > DS_SYNC_MAX_PAGE_BYTES) p.max_bytes = DS_SYNC_MAX_PAGE_BYTES;

    /* The records go straight after room for the message's head, which
     * is written once the page is known; its length depends only on the
     * array header, so the room is that of a page of max_nodes.  A
     * shorter head (a smaller last page) moves the records down. */
    size_t start = out->len;
    uint8_t hd[PUB_HEAD_MAX];
    size_t room = pub_head(hd, NULL, 0, p.max_nodes);
    if ((rc = ds_buf_reserve(out, room))) return rc;
    out->len += room;
    p.base = out->len;
    rc = ds_store_iter_records(st, from, pub_record, &p);
    if (!rc) rc = p.rc;
    ds_buf_free(&p.proj);
    /* One pass, one read snapshot: the scan stopped before some node
     * exactly when a node follows last_seq.  (Nodes written after the
     * snapshot are found by the next sync.) */
    int has_more = p.stopped;
    if (rc) { out->len = start; return rc; }

    nc.seq = p.last_seq;
    uint8_t cb[DS_CURSOR_LEN];
    ds_cursor_encode(&nc, seal, cb);
    size_t hl = pub_head(hd, cb, has_more, p.count);
    if (hl != room) {
        size_t nbytes = out->len - p.base;
        memmove(out->data + start + hl, out->data + p.base, nbytes);
        out->len = start + hl + nbytes;
    }
    memcpy(out->data + start, hd, hl);
    if (stats) {
        stats->sent = p.count;
        stats->seq = p.last_seq;
        stats->scanned = p.scanned;
        stats->has_more = has_more;
        memcpy(stats->cursor, cb, DS_CURSOR_LEN);
    }
    return 0;
}

/* ---- subscriber ---------------------------------------------------------- */

static const char CURSOR_KEY[] = "sync_cursor";

int ds_sync_apply(ds_store *rep, const ds_msg *resp, size_t *inserted)
{
    return ds_sync_apply_pages(rep, resp, 1, inserted);
}

int ds_sync_apply_pages(ds_store *rep, const ds_msg *pages, size_t n, size_t *inserted)
{
    return ds_sync_apply_pages_ahead(rep, pages, n, 0, NULL, NULL, NULL, inserted);
}

/* The node texts of |pages| in order, for ds__wtxn_commit_ahead (NULL
 * with *count 0 when there are none or no memory: no work ahead). */
static ds_ahead_doc *ahead_docs(const ds_msg *pages, size_t n, size_t *count)
{
    size_t total = 0, k = 0;
    for (size_t p = 0; p < n; p++) total += pages[p].nnodes;
    ds_ahead_doc *d = total ? malloc(total * sizeof *d) : NULL;
    *count = d ? total : 0;
    if (!d) return NULL;
    for (size_t p = 0; p < n; p++)
        for (size_t i = 0; i < pages[p].nnodes; i++)
            d[k++] = (ds_ahead_doc){ pages[p].nodes[i].content, pages[p].nodes[i].content_len };
    return d;
}

int ds_sync_apply_pages_ahead(ds_store *rep, const ds_msg *pages, size_t n, uint64_t claim,
                              ds_sync_next_fn next, void *ud, uint64_t *ticket, size_t *inserted)
{
    if (inserted) *inserted = 0;
    if (ticket) *ticket = 0;
    if (!n) return DS_ERR_INVALID;
    for (size_t p = 0; p < n; p++)
        if (pages[p].type != DS_MSG_SYNC_RESPONSE || !pages[p].has_cursor) return DS_ERR_INVALID;
    ds_wtxn *tx;
    int rc = ds__store_begin_ahead(rep, claim, &tx);
    if (rc) return rc;
    size_t added = 0;
    for (size_t p = 0; p < n && !rc; p++)
        for (size_t i = 0; i < pages[p].nnodes && !rc; i++) {
            int ins = 0;
            const ds_msg *pg = &pages[p];
            if (pg->spans && pg->spans[i].len)
                rc = ds__wtxn_put_new_encoded(tx, &pg->nodes[i], pg->raw + pg->spans[i].off,
                                              pg->spans[i].len, &ins);
            else
                rc = ds_wtxn_put_new(tx, &pg->nodes[i], &ins);
            added += (size_t)ins;
        }
    /* The last page's cursor covers every page before it. */
    if (!rc) rc = ds_wtxn_aux_put(tx, DS_TABLE_CURSORS, CURSOR_KEY, sizeof CURSOR_KEY - 1,
                                  pages[n - 1].cursor, DS_CURSOR_LEN);
    if (rc) { ds_wtxn_abort(tx); return rc; }
    size_t nn = 0, nd = 0;
    const ds_msg *np = next ? next(ud, &nn) : NULL;
    ds_ahead_doc *docs = np && nn ? ahead_docs(np, nn, &nd) : NULL;
    rc = ds__wtxn_commit_ahead(tx, docs, nd, ticket);
    free(docs);
    if (!rc && inserted) *inserted = added;
    return rc;
}

int ds_sync_cursor_get(ds_store *rep, uint8_t cursor[DS_CURSOR_LEN], int *has)
{
    *has = 0;
    void *v;
    size_t vl;
    int rc = ds_store_aux_get(rep, DS_TABLE_CURSORS, CURSOR_KEY, sizeof CURSOR_KEY - 1, &v, &vl);
    if (rc == DS_ERR_NOTFOUND) return 0;
    if (rc) return rc;
    if (vl == DS_CURSOR_LEN) { memcpy(cursor, v, DS_CURSOR_LEN); *has = 1; }
    free(v);
    return 0;
}

int ds_sync_cursor_reset(ds_store *rep)
{
    ds_wtxn *tx;
    int rc = ds_store_begin(rep, &tx);
    if (rc) return rc;
    rc = ds_wtxn_aux_del(tx, DS_TABLE_CURSORS, CURSOR_KEY, sizeof CURSOR_KEY - 1);
    if (rc && rc != DS_ERR_NOTFOUND) { ds_wtxn_abort(tx); return rc; }
    return ds_wtxn_commit(tx);
}
