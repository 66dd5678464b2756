/*
 * ops_add.c - the "add" request: text files become chunked knowledge
 * nodes.  Each file is identified by its canonical path, which is both the
 * nodes' source and their project.  A record per path in the store's
 * DS_TABLE_FILES table (content hash, size, namespace, node count) lets an
 * unchanged file be skipped; a changed one has its old nodes deleted, its
 * new nodes written and its record updated in one write transaction, so a
 * crash leaves either the old or the new version, never both.
 */
#include "daemon/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/chunk.h"
#include "core/msgread.h"
#include "core/util.h"
#include "daemon/home.h"

typedef struct file_record {
    uint8_t hash[DS_HASH_LEN];
    uint64_t size;
    uint64_t nodes;
    char ns[DS_OPS_MAX_NAME + 1];
} file_record;

typedef struct file_result {
    const char *path;       /* as given */
    char *source;           /* canonical path, or NULL */
    const char *status;
    uint64_t nodes, replaced;
    ds_op_error error;      /* when status is "error" */
} file_result;

static int record_encode(const file_record *r, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 4);
    rc |= msgpack_pack_str_with_body(&pk, "hash", 4);
    rc |= msgpack_pack_bin_with_body(&pk, r->hash, DS_HASH_LEN);
    rc |= msgpack_pack_str_with_body(&pk, "size", 4);
    rc |= msgpack_pack_uint64(&pk, r->size);
    rc |= msgpack_pack_str_with_body(&pk, "nodes", 5);
    rc |= msgpack_pack_uint64(&pk, r->nodes);
    rc |= msgpack_pack_str_with_body(&pk, "ns", 2);
    rc |= msgpack_pack_str_with_body(&pk, r->ns, strlen(r->ns));
    return rc ? DS_ERR_NOMEM : 0;
}

/* Decodes a record with the bounded reader; unknown keys are skipped.
 * A malformed record is reported so the file is simply re-added. */
static int record_decode(const void *buf, size_t len, file_record *r)
{
    memset(r, 0, sizeof *r);
    ds_mr mr;
    ds_mr_init(&mr, buf, len);
    uint32_t n;
    int rc = ds_mr_map(&mr, &n), have_hash = 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        const char *k;
        uint32_t kl;
        rc = ds_mr_str(&mr, &k, &kl);
        if (rc)
            break;
        if (ds_mr_key_eq(k, kl, "hash")) {
            const uint8_t *b;
            uint32_t bl;
            rc = ds_mr_bin(&mr, &b, &bl);
            if (!rc && bl != DS_HASH_LEN)
                rc = DS_ERR_MALFORMED;
            if (!rc) {
                memcpy(r->hash, b, DS_HASH_LEN);
                have_hash = 1;
            }
        } else if (ds_mr_key_eq(k, kl, "size")) {
            rc = ds_mr_uint(&mr, &r->size);
        } else if (ds_mr_key_eq(k, kl, "nodes")) {
            rc = ds_mr_uint(&mr, &r->nodes);
        } else if (ds_mr_key_eq(k, kl, "ns")) {
            const char *s;
            uint32_t sl;
            rc = ds_mr_str(&mr, &s, &sl);
            if (!rc && sl > DS_OPS_MAX_NAME)
                rc = DS_ERR_MALFORMED;
            if (!rc) {
                memcpy(r->ns, s, sl);
                r->ns[sl] = '\0';
            }
        } else {
            rc = ds_mr_skip(&mr);
        }
    }
    if (!rc && (!have_hash || ds_mr_left(&mr) != 0))
        rc = DS_ERR_MALFORMED;
    return rc;
}

static void file_fail(file_result *fr, int err, const char *code, const char *msg)
{
    fr->status = "error";
    fr->error.err = err;
    snprintf(fr->error.code, sizeof fr->error.code, "%s", code);
    /* Long paths may truncate the message; it stays a C string. */
    if (snprintf(fr->error.message, sizeof fr->error.message, "%s: %s", fr->path, msg) < 0)
        fr->error.message[0] = '\0';
}

/* Reads the whole regular file |path| into a malloc'd buffer. */
static int read_file(const char *path, file_result *fr, char **out, size_t *outlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        file_fail(fr, DS_ERR_IO, DS_OPS_E_IO, strerror(errno));
        return DS_ERR_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        file_fail(fr, DS_ERR_IO, DS_OPS_E_IO, strerror(errno));
        close(fd);
        return DS_ERR_IO;
    }
    if (S_ISDIR(sb.st_mode)) {
        file_fail(fr, DS_ERR_IO, DS_OPS_E_IO, strerror(EISDIR));
        close(fd);
        return DS_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode)) {
        file_fail(fr, DS_ERR_INVALID, DS_OPS_E_INVALID, "not a regular file");
        close(fd);
        return DS_ERR_INVALID;
    }
    if ((uint64_t)sb.st_size > DS_OPS_MAX_FILE) {
        file_fail(fr, DS_ERR_TOOLARGE, DS_OPS_E_TOO_LARGE, "file too large (the limit is 64 MiB)");
        close(fd);
        return DS_ERR_TOOLARGE;
    }
    size_t cap = (size_t)sb.st_size + 1, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        file_fail(fr, DS_ERR_NOMEM, DS_OPS_E_NOMEM, "out of memory");
        close(fd);
        return DS_ERR_NOMEM;
    }
    for (;;) {
        if (len == cap) {
            /* The file grew while we read it; keep going up to the limit. */
            if (cap > DS_OPS_MAX_FILE) {
                file_fail(fr, DS_ERR_TOOLARGE, DS_OPS_E_TOO_LARGE,
                          "file too large (the limit is 64 MiB)");
                free(buf);
                close(fd);
                return DS_ERR_TOOLARGE;
            }
            size_t ncap = cap * 2 > DS_OPS_MAX_FILE + 1 ? DS_OPS_MAX_FILE + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                file_fail(fr, DS_ERR_NOMEM, DS_OPS_E_NOMEM, "out of memory");
                free(buf);
                close(fd);
                return DS_ERR_NOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            file_fail(fr, DS_ERR_IO, DS_OPS_E_IO, strerror(errno));
            free(buf);
            close(fd);
            return DS_ERR_IO;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
}

/* Writes the nodes of |text| for |fr->source| in one transaction. */
static int store_file(ds_ctx *ctx, ds_store *st, file_result *fr, const char *ns,
                      const char *text, size_t len, const file_record *rec_new)
{
    ds_chunk *chunks = NULL;
    size_t nchunks = 0;
    int rc = ds_chunk_text(text, len, DS_CHUNK_TARGET, DS_CHUNK_MAX, &chunks, &nchunks);
    if (rc) {
        file_fail(fr, rc, DS_OPS_E_INTERNAL, ds_strerror(rc));
        return rc;
    }
    ds_wtxn *tx = NULL;
    rc = ds_store_begin(st, &tx);
    if (rc)
        goto fail_store;

    file_record old;
    void *val = NULL;
    size_t vlen = 0;
    int have_old = 0;
    rc = ds_wtxn_aux_get(tx, DS_TABLE_FILES, fr->source, strlen(fr->source), &val, &vlen);
    if (rc == 0) {
        have_old = record_decode(val, vlen, &old) == 0;
        free(val);
    } else if (rc != DS_ERR_NOTFOUND) {
        goto fail_txn;
    }
    if (have_old && memcmp(old.hash, rec_new->hash, DS_HASH_LEN) == 0 &&
        old.size == rec_new->size && strcmp(old.ns, rec_new->ns) == 0) {
        ds_wtxn_abort(tx);
        free(chunks);
        fr->status = "unchanged";
        fr->nodes = old.nodes;
        return 0;
    }
    if (nchunks == 0 && !have_old) {
        ds_wtxn_abort(tx);
        free(chunks);
        fr->status = "empty";
        return 0;
    }

    size_t removed = 0;
    rc = ds_wtxn_delete_source(tx, fr->source, &removed);
    if (rc && rc != DS_ERR_NOTFOUND)
        goto fail_txn;
    int64_t now = ctx->now_ms();
    for (size_t i = 0; i < nchunks; i++) {
        ds_node n;
        ds_node_init(&n);
        uint8_t rnd[DS_ID_LEN];
        ctx->random_buf(rnd, sizeof rnd);
        ds_uuid_from_random(n.id, rnd);
        rc = ds_node_set_content(&n, text + chunks[i].off, chunks[i].len);
        if (!rc)
            rc = ds_node_set_str(&n.source, fr->source);
        if (!rc)
            rc = ds_node_set_str(&n.project, fr->source);
        if (!rc)
            rc = ds_node_set_str(&n.ns, ns);
        n.source_type = DS_SOURCE_FILE;
        n.timestamp = now;
        n.confidence = 1.0;
        n.chunk_index = (uint32_t)i;
        if (!rc)
            rc = ds_wtxn_put(tx, &n);
        ds_node_free(&n);
        if (rc)
            goto fail_txn;
    }
    file_record rec = *rec_new;
    rec.nodes = nchunks;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    rc = record_encode(&rec, &sb);
    if (!rc)
        rc = ds_wtxn_aux_put(tx, DS_TABLE_FILES, fr->source, strlen(fr->source), sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        goto fail_txn;
    rc = ds_wtxn_commit(tx);
    tx = NULL;
    if (rc)
        goto fail_store;
    free(chunks);
    fr->status = (have_old || removed > 0) ? "updated" : "added";
    fr->nodes = nchunks;
    fr->replaced = removed;
    return 0;

fail_txn:
    ds_wtxn_abort(tx);
fail_store:
    free(chunks);
    ds_ops_fail_store(ctx, rc, "adding the file");
    file_fail(fr, rc, ctx->error.code, ctx->error.message);
    memset(&ctx->error, 0, sizeof ctx->error);
    return rc;
}

/* Adds one file; the outcome (including failure) lands in |fr|.  Returns
 * a negative code only for failures that concern the whole request (the
 * store cannot be opened), after recording them in ctx->error. */
static int add_one(ds_ctx *ctx, const char *cwd, const char *ns, file_result *fr)
{
    int rc = ds_path_canonical(cwd, fr->path, &fr->source);
    if (rc) {
        file_fail(fr, rc, rc == DS_ERR_NOMEM ? DS_OPS_E_NOMEM : DS_OPS_E_IO,
                  rc == DS_ERR_NOMEM ? "out of memory" : strerror(errno));
        return 0;
    }
    if (strlen(fr->source) > DS_NODE_MAX_FIELD - 1) {
        file_fail(fr, DS_ERR_TOOLARGE, DS_OPS_E_TOO_LARGE, "path too long");
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    if (read_file(fr->source, fr, &text, &len) != 0)
        return 0;
    if (!ds_utf8_valid(text, len)) {
        free(text);
        file_fail(fr, DS_ERR_BINARY, DS_OPS_E_BINARY,
                  "not a text file (binary content); ds add takes text files");
        return 0;
    }
    file_record rec = { .size = len };
    ds_hash(text, len, rec.hash, DS_HASH_LEN);
    snprintf(rec.ns, sizeof rec.ns, "%s", ns);

    /* Skip a UTF-8 byte order mark: it is not content. */
    size_t skip = (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    ds_store *st;
    rc = ds_ctx_store(ctx, 1, &st);
    if (rc) {
        free(text);
        return rc;
    }
    store_file(ctx, st, fr, ns, text + skip, len - skip, &rec);
    free(text);
    return 0;
}

static void pack_result(msgpack_packer *pk, const file_result *fr)
{
    int is_err = strcmp(fr->status, "error") == 0;
    msgpack_pack_map(pk, is_err ? 6 : 5);
    ds_pack_cstr(pk, "path");
    ds_pack_cstr(pk, fr->path);
    ds_pack_cstr(pk, "source");
    ds_pack_cstr(pk, fr->source);
    ds_pack_cstr(pk, "status");
    ds_pack_cstr(pk, fr->status);
    ds_pack_cstr(pk, "nodes");
    msgpack_pack_uint64(pk, fr->nodes);
    ds_pack_cstr(pk, "replaced");
    msgpack_pack_uint64(pk, fr->replaced);
    if (is_err) {
        ds_pack_cstr(pk, "error");
        msgpack_pack_map(pk, 3);
        ds_pack_cstr(pk, "code");
        ds_pack_cstr(pk, fr->error.code);
        ds_pack_cstr(pk, "message");
        ds_pack_cstr(pk, fr->error.message);
        ds_pack_cstr(pk, "hint");
        ds_pack_cstr(pk, fr->error.hint[0] ? fr->error.hint : NULL);
    }
}

int op_add(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    const msgpack_object *files = ds_ops_get(params, "files");
    if (!files || files->type != MSGPACK_OBJECT_ARRAY || files->via.array.size == 0)
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, "Usage: ds add FILE...",
                           "no files to add");
    uint32_t nf = files->via.array.size;
    for (uint32_t i = 0; i < nf; i++) {
        const msgpack_object *f = &files->via.array.ptr[i];
        if (f->type != MSGPACK_OBJECT_STR || f->via.str.size == 0 ||
            memchr(f->via.str.ptr, '\0', f->via.str.size))
            return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                               "files must be non-empty path strings");
    }
    char *cwd = NULL, *ns = NULL;
    int rc = ds_ops_get_str(ctx, params, "cwd", 0, &cwd);
    if (!rc)
        rc = ds_ops_get_name(ctx, params, "namespace", "personal", &ns);
    file_result *res = rc ? NULL : calloc(nf, sizeof *res);
    if (!rc && !res)
        rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    uint32_t done = 0, failed = 0;
    for (; !rc && done < nf; done++) {
        const msgpack_object *f = &files->via.array.ptr[done];
        char *path = malloc(f->via.str.size + 1);
        if (!path) {
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
            break;
        }
        memcpy(path, f->via.str.ptr, f->via.str.size);
        path[f->via.str.size] = '\0';
        res[done].path = path;
        rc = add_one(ctx, cwd, ns, &res[done]);
        if (!rc && strcmp(res[done].status, "error") == 0)
            failed++;
    }
    if (!rc) {
        msgpack_pack_map(reply, 2);
        ds_pack_cstr(reply, "files");
        msgpack_pack_array(reply, nf);
        for (uint32_t i = 0; i < nf; i++)
            pack_result(reply, &res[i]);
        ds_pack_cstr(reply, "failed");
        msgpack_pack_uint32(reply, failed);
    }
    for (uint32_t i = 0; res && i < nf; i++) {
        free((char *)res[i].path);
        free(res[i].source);
    }
    free(res);
    free(cwd);
    free(ns);
    return rc;
}
