/*
 * exchange.c - export files: the writer drives ds_sync_publish page by
 * page and signs the byte stream; the reader walks the frames twice over
 * one buffer - first to verify everything, then to apply the pages in
 * batches with ds_sync_apply_pages_ahead (see exchange.h for the format).
 */
#include "core/exchange.h"

#include <stdlib.h>
#include <string.h>
#include <msgpack.h>

#include "core/frame.h"
#include "core/msgread.h"
#include "core/syncproto.h"

/* ---- small MessagePack helpers ----------------------------------------- */

typedef struct enc { ds_buf *b; int failed; } enc;

static int enc_write(void *data, const char *buf, size_t len)
{
    enc *e = data;
    if (!e->failed && ds_buf_append(e->b, buf, len))
        e->failed = 1;
    return e->failed ? -1 : 0;
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* The header: the fields ds_msg_decode knows plus "since", which it skips
 * and header_since() reads. */
static int encode_header(ds_buf *out, const char *node_id, int64_t created, const uint8_t *since)
{
    enc e = { out, 0 };
    msgpack_packer pk;
    msgpack_packer_init(&pk, &e, enc_write);
    msgpack_pack_map(&pk, 6);
    pk_str(&pk, "type");
    pk_str(&pk, "export_header");
    pk_str(&pk, "v");
    msgpack_pack_uint32(&pk, DS_SYNC_VERSION);
    pk_str(&pk, "node_id");
    pk_str(&pk, node_id);
    pk_str(&pk, "created");
    msgpack_pack_int64(&pk, created);
    pk_str(&pk, "full");
    if (since) msgpack_pack_false(&pk); else msgpack_pack_true(&pk);
    pk_str(&pk, "since");
    if (since) {
        msgpack_pack_bin(&pk, DS_CURSOR_LEN);
        msgpack_pack_bin_body(&pk, since, DS_CURSOR_LEN);
    } else {
        msgpack_pack_nil(&pk);
    }
    return e.failed ? DS_ERR_NOMEM : 0;
}

/* Reads "since" from a header payload already accepted by ds_msg_decode. */
static int header_since(const uint8_t *p, size_t len, ds_import_info *info)
{
    ds_mr r;
    uint32_t n;
    ds_mr_init(&r, p, len);
    int rc = ds_mr_map(&r, &n);
    for (uint32_t i = 0; !rc && i < n; i++) {
        const char *k;
        uint32_t kl;
        if ((rc = ds_mr_str(&r, &k, &kl)))
            break;
        if (!ds_mr_key_eq(k, kl, "since")) {
            rc = ds_mr_skip(&r);
            continue;
        }
        if (ds_mr_peek(&r) == DS_MR_NIL) {
            rc = ds_mr_nil(&r);
            info->has_since = 0;
            continue;
        }
        const uint8_t *b;
        uint32_t bl;
        if ((rc = ds_mr_bin(&r, &b, &bl)))
            break;
        if (bl != DS_CURSOR_LEN)
            return DS_ERR_MALFORMED;
        memcpy(info->since, b, DS_CURSOR_LEN);
        info->has_since = 1;
    }
    return rc;
}

/* new_cursor and has_more of an encoded SYNC_RESPONSE, without decoding
 * its nodes. */
static int page_peek(const uint8_t *p, size_t len, uint8_t cursor[DS_CURSOR_LEN], int *has_more)
{
    ds_mr r;
    uint32_t n;
    int have = 0;
    *has_more = 0;
    ds_mr_init(&r, p, len);
    int rc = ds_mr_map(&r, &n);
    for (uint32_t i = 0; !rc && i < n; i++) {
        const char *k;
        uint32_t kl;
        if ((rc = ds_mr_str(&r, &k, &kl)))
            break;
        if (ds_mr_key_eq(k, kl, "new_cursor")) {
            const uint8_t *b;
            uint32_t bl;
            if ((rc = ds_mr_bin(&r, &b, &bl)))
                break;
            if (bl != DS_CURSOR_LEN)
                return DS_ERR_MALFORMED;
            memcpy(cursor, b, DS_CURSOR_LEN);
            have = 1;
        } else if (ds_mr_key_eq(k, kl, "has_more")) {
            rc = ds_mr_bool(&r, has_more);
        } else {
            rc = ds_mr_skip(&r);
        }
    }
    return rc ? rc : have ? 0 : DS_ERR_MALFORMED;
}

/* ---- writer ------------------------------------------------------------- */

typedef struct out {
    ds_exchange_write_fn w;
    void *ud;
    ds_signer signer;
    uint64_t bytes;
    ds_buf frame;
} out;

/* Frames |payload|, signs the frame bytes (when |sign|) and writes them. */
static int emit(out *o, const ds_buf *payload, int sign)
{
    o->frame.len = 0;
    int rc = ds_frame_encode(&o->frame, payload->data, payload->len, DS_EXCHANGE_FRAME_MAX);
    if (rc)
        return rc;
    if (sign)
        ds_signer_update(&o->signer, o->frame.data, o->frame.len);
    rc = o->w(o->ud, o->frame.data, o->frame.len);
    if (rc)
        return rc < 0 ? rc : DS_ERR_IO;
    o->bytes += o->frame.len;
    return 0;
}

int ds_export_write(ds_store *st, const ds_export_opts *o, ds_exchange_write_fn w, void *ud,
                    ds_export_result *res)
{
    memset(res, 0, sizeof *res);
    if (!o->seal)
        return DS_ERR_INVALID;
    uint8_t epoch[DS_EPOCH_LEN];
    int rc = ds_store_epoch(st, epoch);
    if (rc)
        return rc;
    /* A cursor that does not open for this store epoch and share set (or
     * under this key) means starting over: say so in the header (full),
     * so the importer may take the cursor. */
    const uint8_t *since = o->since;
    if (since) {
        ds_cursor c;
        memcpy(c.epoch, epoch, DS_EPOCH_LEN);
        memcpy(c.digest, o->share->digest, DS_SHARE_DIGEST_LEN);
        if (ds_cursor_decode(since, DS_CURSOR_LEN, o->seal, &c) != 0)
            since = NULL;
    }
    res->full = since == NULL;

    out ou = { .w = w, .ud = ud };
    ds_signer_init(&ou.signer);
    ds_buf payload = { 0 };
    rc = encode_header(&payload, o->id->node_id, o->created_ms, since);
    if (!rc)
        rc = emit(&ou, &payload, 1);

    ds_msg req;
    memset(&req, 0, sizeof req);
    req.type = DS_MSG_SYNC_REQUEST;
    req.version = DS_SYNC_VERSION;
    req.max_nodes = o->page_nodes;
    req.max_bytes = o->page_bytes;
    if (since) {
        req.has_cursor = 1;
        memcpy(req.cursor, since, DS_CURSOR_LEN);
    }
    uint64_t prev_seq = 0;
    int first = 1, more = 1;
    while (!rc && more) {
        ds_publish_stats ps;
        payload.len = 0;
        rc = ds_sync_publish_epoch(st, epoch, o->seal, o->share, &req, &payload, &ps);
        if (!rc)
            rc = page_peek(payload.data, payload.len, req.cursor, &more);
        if (rc)
            break;
        if (!first && more && ps.seq <= prev_seq) {
            rc = DS_ERR_PROTO;     /* cannot happen: the publisher always advances */
            break;
        }
        first = 0;
        prev_seq = ps.seq;
        req.has_cursor = 1;
        if ((rc = emit(&ou, &payload, 1)))
            break;
        res->pages++;
        res->nodes += ps.sent;
        res->scanned += ps.scanned;
    }
    if (!rc) {
        uint8_t sig[DS_SIG_LEN];
        rc = ds_signer_final(&ou.signer, o->id, sig);
        payload.len = 0;
        if (!rc)
            rc = ds_msg_encode_signature(&payload, sig);
        if (!rc)
            rc = emit(&ou, &payload, 0);
    }
    if (!rc) {
        memcpy(res->cursor, req.cursor, DS_CURSOR_LEN);
        res->bytes = ou.bytes;
    }
    ds_buf_free(&payload);
    ds_buf_free(&ou.frame);
    return rc;
}

/* ---- reader ------------------------------------------------------------- */

#define BATCH_PAGES 64             /* pages per replica transaction, at most */

/* Pages decoded and not applied yet, written together in one transaction
 * (as a network sync does) instead of one per page. */
typedef struct batch {
    ds_msg pages[BATCH_PAGES];
    size_t n, nodes;
} batch;

typedef struct walk {
    ds_import_info *info;
    ds_store *rep;                 /* NULL: verify only */
    int keep_cursor;               /* apply with the replica's own cursor */
    uint8_t held[DS_CURSOR_LEN];   /* that cursor */
    ds_import_result *res;
    /* Apply mode: a complete batch is applied only once the next one is
     * complete too, so that the next one's texts are tokenized while the
     * first commits (ds_sync_apply_pages_ahead). */
    batch b[2];
    int fill;                      /* b[fill] takes the pages decoded now */
    int ready;                     /* b[!fill] is complete and not applied */
    uint64_t claim;                /* the ticket for b[fill]'s work ahead */
} walk;

static void drop_batch(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        ds_msg_free(&b->pages[i]);
    b->n = b->nodes = 0;
}

static void drop_batches(walk *w)
{
    drop_batch(&w->b[0]);
    drop_batch(&w->b[1]);
    w->ready = 0;
}

static const ds_msg *next_batch(void *ud, size_t *n)
{
    walk *w = ud;
    *n = w->b[w->fill].n;
    return *n ? w->b[w->fill].pages : NULL;
}

/* Applies batch |b|: its nodes and its last page's cursor in one
 * transaction, so an interrupted import keeps whole batches only.  The
 * batch being filled, when not empty, is tokenized ahead meanwhile. */
static int apply_batch(walk *w, batch *b)
{
    if (!b->n)
        return 0;
    size_t ins = 0;
    uint64_t ticket = 0;
    int rc = ds_sync_apply_pages_ahead(w->rep, b->pages, b->n, w->claim,
                                       b == &w->b[w->fill] ? NULL : next_batch, w, &ticket, &ins);
    w->claim = ticket;
    if (!rc) {
        w->res->pages += b->n;
        w->res->nodes += b->nodes;
        w->res->inserted += ins;
    }
    drop_batch(b);
    return rc;
}

/* b[fill] is complete: applies the batch before it, if any, and holds
 * this one until the next is complete or the file ends. */
static int batch_complete(walk *w)
{
    int rc = w->ready ? apply_batch(w, &w->b[!w->fill]) : 0;
    w->ready = 1;
    w->fill = !w->fill;
    return rc;
}

/* The signature: applies what is held, in order. */
static int apply_rest(walk *w)
{
    int rc = w->ready ? apply_batch(w, &w->b[!w->fill]) : 0;
    w->ready = 0;
    if (!rc)
        rc = apply_batch(w, &w->b[w->fill]);
    return rc;
}

static int fail(ds_import_info *info, int rc, size_t off, const char *what)
{
    info->err_offset = off;
    info->err_what = what;
    return rc;
}

/* One pass over the frames of |buf|.  Verify mode checks structure and
 * signature; apply mode (w->rep set, file already verified) applies. */
static int walk_file(const uint8_t *buf, size_t len, walk *w)
{
    ds_import_info *info = w->info;
    if (len > DS_EXCHANGE_MAX_FILE)
        return fail(info, DS_ERR_TOOLARGE, 0, "file larger than 1 GiB");
    ds_frame_dec d;
    ds_frame_dec_init(&d, DS_EXCHANGE_FRAME_MAX);
    ds_signer signer;
    ds_signer_init(&signer);
    enum { HEADER, PAGES, DONE } state = HEADER;
    size_t off = 0;
    int rc = 0;
    while (!rc && off < len) {
        size_t used, flen;
        const uint8_t *frame;
        size_t start = off;
        rc = ds_frame_dec_feed(&d, buf + off, len - off, &used, &frame, &flen);
        if (rc) {
            rc = fail(info, rc, start, rc == DS_ERR_TOOLARGE ? "frame larger than allowed"
                                                             : "invalid frame length");
            break;
        }
        off += used;
        if (!frame)
            break;                 /* incomplete last frame */
        if (state == DONE) {
            rc = fail(info, DS_ERR_MALFORMED, start, "data after the signature");
            break;
        }
        ds_msg m;
        rc = ds_msg_decode(frame, flen, &m);
        if (rc == DS_ERR_VERSION) {
            rc = fail(info, rc, start, "written by an incompatible version of ds");
            break;
        }
        if (rc) {
            rc = fail(info, rc == DS_ERR_NOMEM ? rc : DS_ERR_MALFORMED, start,
                      state == HEADER ? "not a Datasphere export file (bad header)"
                                      : "damaged message");
            break;
        }
        if (state == HEADER) {
            if (m.type != DS_MSG_EXPORT_HEADER)
                rc = fail(info, DS_ERR_MALFORMED, start,
                          "not a Datasphere export file (no export header)");
            else if (ds_node_id_parse(m.node_id, info->pk) != 0)
                rc = fail(info, DS_ERR_MALFORMED, start, "the header's node id is invalid");
            else if (header_since(frame, flen, info) != 0)
                rc = fail(info, DS_ERR_MALFORMED, start, "the header's cursor is invalid");
            else {
                memcpy(info->node_id, m.node_id, sizeof info->node_id);
                info->created_ms = m.created_ms;
                info->full = m.full;
                if (info->full == info->has_since)
                    rc = fail(info, DS_ERR_MALFORMED, start,
                              "the header's full flag contradicts its cursor");
                state = PAGES;
            }
            if (!w->rep && !rc)
                ds_signer_update(&signer, buf + start, off - start);
        } else if (m.type == DS_MSG_SYNC_RESPONSE) {
            info->pages++;
            info->nodes += m.nnodes;
            memcpy(info->cursor, m.cursor, DS_CURSOR_LEN);
            if (!w->rep) {
                ds_signer_update(&signer, buf + start, off - start);
            } else {
                if (w->keep_cursor)
                    memcpy(m.cursor, w->held, DS_CURSOR_LEN);
                batch *b = &w->b[w->fill];
                b->nodes += m.nnodes;
                b->pages[b->n++] = m;
                memset(&m, 0, sizeof m);       /* the batch owns it now */
                if (b->n == BATCH_PAGES || b->nodes >= DS_SYNC_APPLY_BATCH_NODES)
                    rc = batch_complete(w);
            }
        } else if (m.type == DS_MSG_SIGNATURE) {
            if (!info->pages)
                rc = fail(info, DS_ERR_MALFORMED, start, "no pages before the signature");
            else if (!w->rep && ds_signer_verify(&signer, info->pk, m.sig) != 0)
                rc = fail(info, DS_ERR_CRYPTO, start,
                          "the signature does not match the contents (file modified or "
                          "not signed by the node it names)");
            else if (w->rep)
                rc = apply_rest(w);
            state = DONE;
        } else {
            rc = fail(info, DS_ERR_MALFORMED, start, "unexpected message type");
        }
        ds_msg_free(&m);
    }
    if (!rc && !ds_frame_dec_idle(&d))
        rc = fail(info, state == DONE ? DS_ERR_MALFORMED : DS_ERR_TRUNCATED, len,
                  state == DONE ? "data after the signature"
                                : "the file ends early (in the middle of a frame)");
    if (!rc && state != DONE)
        rc = fail(info, DS_ERR_TRUNCATED, len,
                  len == 0 ? "the file is empty" : "the file ends early (no signature)");
    if (w->rep)
        drop_batches(w);           /* only after an error: the signature applies the rest */
    ds_frame_dec_free(&d);
    return rc;
}

int ds_import_verify(const uint8_t *buf, size_t len, ds_import_info *info)
{
    memset(info, 0, sizeof *info);
    walk w = { .info = info };
    return walk_file(buf, len, &w);
}

int ds_import_apply(const uint8_t *buf, size_t len, const char *expect_node_id, ds_store *rep,
                    ds_import_info *info, ds_import_result *res)
{
    memset(res, 0, sizeof *res);
    int rc = ds_import_verify(buf, len, info);
    if (rc)
        return rc;
    return ds_import_apply_verified(buf, len, expect_node_id, rep, info, res);
}

int ds_import_apply_verified(const uint8_t *buf, size_t len, const char *expect_node_id,
                             ds_store *rep, ds_import_info *info, ds_import_result *res)
{
    memset(res, 0, sizeof *res);
    int rc;
    if (!expect_node_id || strcmp(expect_node_id, info->node_id) != 0)
        return fail(info, DS_ERR_UNAUTHORIZED, 0, "signed by another node");
    walk w = { .info = info, .rep = rep, .res = res };
    uint8_t held[DS_CURSOR_LEN];
    int has = 0;
    if ((rc = ds_sync_cursor_get(rep, held, &has)))
        return rc;
    if (!info->full && !(has && memcmp(held, info->since, DS_CURSOR_LEN) == 0)) {
        /* Not a continuation of what this replica holds: take the nodes,
         * keep the cursor (an all-zero cursor makes the next sync full). */
        w.keep_cursor = 1;
        if (has)
            memcpy(w.held, held, DS_CURSOR_LEN);
        else
            memset(w.held, 0, DS_CURSOR_LEN);
    }
    ds_import_info scratch = *info;
    w.info = &scratch;
    rc = walk_file(buf, len, &w);
    if (rc)
        return fail(info, rc, scratch.err_offset, scratch.err_what ? scratch.err_what
                                                                    : "writing the replica");
    res->cursor_advanced = !w.keep_cursor;
    return 0;
}
