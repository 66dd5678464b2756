/*
 * ops.c - the dispatch table, the request context and the parameter and
 * packing helpers shared by the handlers in ops_*.c.  This file turns a
 * handler's outcome into exactly one reply map, so that a caller (CLI in
 * process, daemon over a socket) never sees a half-written reply.
 */
#include "daemon/ops.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/util.h"
#include "daemon/home.h"

static const ds_op ops_table[] = {
    { "add", op_add },
    { "note", op_note },
    { "query", op_query },
    { "show", op_show },
    { "related", op_related },
    { "stats", op_stats },
    { "reset", op_reset },
    { "status", op_status },
    { "scan", op_scan },
    { "queue", op_queue },
    { "peer_init", op_peer_init },
    { "peer_id", op_peer_id },
    { "peer_share", op_peer_share },
    { "peer_unshare", op_peer_unshare },
    { "peer_shared", op_peer_shared },
    { "peer_add", op_peer_add },
    { "peer_remove", op_peer_remove },
    { "peer_list", op_peer_list },
    { "peer_export", op_peer_export },
    { "peer_import", op_peer_import },
    { "peer_sync", op_peer_sync },
    { "peer_sync_status", op_peer_sync_status },
    { "peer_sync_cancel", op_peer_sync_cancel },
    { "peer_ticket", op_peer_ticket },
};

const ds_op *ds_ops_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof ops_table / sizeof ops_table[0]; i++)
        if (strcmp(ops_table[i].name, name) == 0)
            return &ops_table[i];
    return NULL;
}

/* ---- Context ------------------------------------------------------------ */

int ds_ctx_init(ds_ctx *ctx, const char *home, ds_clock_fn now_ms, ds_random_fn random_buf)
{
    memset(ctx, 0, sizeof *ctx);
    if (!home || !now_ms || !random_buf)
        return DS_ERR_INVALID;
    ctx->home = strdup(home);
    if (!ctx->home)
        return DS_ERR_NOMEM;
    ctx->now_ms = now_ms;
    ctx->random_buf = random_buf;
    return 0;
}

void ds_ctx_free(ds_ctx *ctx)
{
    ds_ops_replicas_free(ctx);
    if (ctx->store)
        ds_store_close(ctx->store);
    free(ctx->warnings);
    free(ctx->home);
    memset(ctx, 0, sizeof *ctx);
}

static int no_store(ds_ctx *ctx)
{
    return ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_NO_STORE,
                       "Add something first: ds note \"...\" or ds add FILE",
                       "No knowledge store at %s yet.", ctx->home);
}

int ds_ctx_store(ds_ctx *ctx, int create, ds_store **out)
{
    *out = NULL;
    if (ctx->store) {
        *out = ctx->store;
        return 0;
    }
    char *db = ds_path_join(ctx->home, "db");
    if (!db)
        return ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    int rc;
    ds_store_opts opts = { 0 };
    uint8_t seed[DS_EPOCH_LEN];
    struct stat sb;
    if (!create) {
        /* Check first so that nothing below can create a directory. */
        if (stat(db, &sb) != 0 && errno == ENOENT) {
            free(db);
            return no_store(ctx);
        }
        opts.no_create = 1;
    } else {
        rc = ds_home_ensure(ctx->home);
        if (rc) {
            int e = errno;
            free(db);
            return ds_ops_fail(ctx, rc, DS_OPS_E_IO,
                               "Check the path, or choose another with --home DIR or DS_HOME.",
                               "cannot create the home directory %s: %s", ctx->home,
                               rc == DS_ERR_IO ? strerror(e) : ds_strerror(rc));
        }
        ctx->random_buf(seed, sizeof seed);
        opts.epoch_seed = seed;
    }
    rc = ds_store_open(&ctx->store, db, &opts);
    free(db);
    if (rc == DS_ERR_NOTFOUND && !create) {
        ctx->store = NULL;
        return no_store(ctx);
    }
    if (rc) {
        ctx->store = NULL;
        return ds_ops_fail_store(ctx, rc, "opening the knowledge store");
    }
    *out = ctx->store;
    return 0;
}

/* ---- Errors ------------------------------------------------------------- */

int ds_ops_fail(ds_ctx *ctx, int err, const char *code, const char *hint, const char *fmt, ...)
{
    ds_op_error *e = &ctx->error;
    e->err = err < 0 ? err : DS_ERR_INVALID;
    snprintf(e->code, sizeof e->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    snprintf(e->hint, sizeof e->hint, "%s", hint ? hint : "");
    return e->err;
}

int ds_ops_fail_store(ds_ctx *ctx, int err, const char *what)
{
    int e = errno;
    switch (err) {
    case DS_ERR_NOMEM:
        return ds_ops_fail(ctx, err, DS_OPS_E_NOMEM, NULL, "out of memory while %s", what);
    case DS_ERR_SCHEMA:
        return ds_ops_fail(ctx, err, DS_OPS_E_STORE, "Upgrade ds to read this store.",
                           "the knowledge store in %s was written by a newer version of ds",
                           ctx->home);
    case DS_ERR_FULL:
        return ds_ops_fail(ctx, err, DS_OPS_E_STORE, "Free some space, or run ds reset.",
                           "the knowledge store is full while %s", what);
    case DS_ERR_BUSY:
        return ds_ops_fail(ctx, err, DS_OPS_E_STORE, "Try again in a moment.",
                           "the knowledge store is busy (locked by another process) while %s",
                           what);
    case DS_ERR_IO:
        return ds_ops_fail(ctx, err, DS_OPS_E_IO, NULL, "file system error while %s in %s: %s",
                           what, ctx->home, strerror(e));
    case DS_ERR_TOOLARGE:
        return ds_ops_fail(ctx, err, DS_OPS_E_TOO_LARGE, NULL, "input too large while %s", what);
    default:
        return ds_ops_fail(ctx, err, DS_OPS_E_STORE, NULL, "error while %s: %s", what,
                           ds_strerror(err));
    }
}

/* ---- Warnings ----------------------------------------------------------- */

void ds_ops_warn(ds_ctx *ctx, const char *code, const char *peer, const char *node_id,
                 const char *path, const char *hint, const char *fmt, ...)
{
    if (ctx->nwarnings >= DS_OPS_MAX_STORES)
        return;
    ds_op_warning *w = realloc(ctx->warnings, (ctx->nwarnings + 1) * sizeof *w);
    if (!w)
        return;
    ctx->warnings = w;
    w = &w[ctx->nwarnings++];
    memset(w, 0, sizeof *w);
    snprintf(w->code, sizeof w->code, "%s", code ? code : "");
    snprintf(w->peer, sizeof w->peer, "%s", peer ? peer : "");
    snprintf(w->node_id, sizeof w->node_id, "%s", node_id ? node_id : "");
    snprintf(w->path, sizeof w->path, "%s", path ? path : "");
    snprintf(w->hint, sizeof w->hint, "%s", hint ? hint : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->message, sizeof w->message, fmt, ap);
    va_end(ap);
}

void ds_ops_pack_warnings(ds_ctx *ctx, msgpack_packer *pk)
{
    msgpack_pack_array(pk, ctx->nwarnings);
    for (size_t i = 0; i < ctx->nwarnings; i++) {
        const ds_op_warning *w = &ctx->warnings[i];
        msgpack_pack_map(pk, 6);
        ds_pack_cstr(pk, "code");
        ds_pack_cstr(pk, w->code);
        ds_pack_cstr(pk, "peer");
        ds_pack_cstr(pk, w->peer);
        ds_pack_cstr(pk, "node_id");
        ds_pack_cstr(pk, w->node_id);
        ds_pack_cstr(pk, "path");
        ds_pack_cstr(pk, w->path);
        ds_pack_cstr(pk, "message");
        ds_pack_cstr(pk, w->message);
        ds_pack_cstr(pk, "hint");
        ds_pack_cstr(pk, w->hint[0] ? w->hint : NULL);
    }
}

/* ---- Dispatch ----------------------------------------------------------- */

/* A packer target that remembers allocation failure, so that handlers
 * can pack without checking every call. */
typedef struct tracked_buf {
    msgpack_sbuffer sb;
    int failed;
} tracked_buf;

static int tracked_write(void *data, const char *buf, size_t len)
{
    tracked_buf *t = data;
    if (t->failed)
        return -1;
    if (msgpack_sbuffer_write(&t->sb, buf, len) != 0) {
        t->failed = 1;
        return -1;
    }
    return 0;
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    ds_pack_cstr(pk, k);
}

static int pack_error(const ds_op_error *e, msgpack_sbuffer *reply)
{
    tracked_buf t = { .failed = 0 };
    msgpack_sbuffer_init(&t.sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &t, tracked_write);
    msgpack_pack_map(&pk, 1);
    pack_key(&pk, "error");
    msgpack_pack_map(&pk, 3);
    pack_key(&pk, "code");
    ds_pack_cstr(&pk, e->code);
    pack_key(&pk, "message");
    ds_pack_cstr(&pk, e->message);
    pack_key(&pk, "hint");
    ds_pack_cstr(&pk, e->hint[0] ? e->hint : NULL);
    int rc = t.failed ? DS_ERR_NOMEM : 0;
    if (!rc && msgpack_sbuffer_write(reply, t.sb.data, t.sb.size) != 0)
        rc = DS_ERR_NOMEM;
    msgpack_sbuffer_destroy(&t.sb);
    return rc;
}

int ds_ops_call(ds_ctx *ctx, const char *name, const msgpack_object *params,
                msgpack_sbuffer *reply)
{
    memset(&ctx->error, 0, sizeof ctx->error);
    ctx->nwarnings = 0;
    const ds_op *op = ds_ops_find(name);
    tracked_buf t = { .failed = 0 };
    msgpack_sbuffer_init(&t.sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &t, tracked_write);

    int rc;
    if (!op)
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_UNKNOWN_OP, NULL, "unknown request '%s'",
                         name ? name : "(none)");
    else if (params && params->type != MSGPACK_OBJECT_MAP && params->type != MSGPACK_OBJECT_NIL)
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                         "the parameters of '%s' must be a map", name);
    else
        rc = op->fn(ctx, params, &pk);
    if (rc > 0)
        rc = DS_ERR_INVALID; /* handlers return 0 or negative; be safe */
    if (rc == 0 && t.failed)
        rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory building the reply");
    if (rc == 0) {
        if (msgpack_sbuffer_write(reply, t.sb.data, t.sb.size) != 0)
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL,
                             "out of memory building the reply");
    }
    msgpack_sbuffer_destroy(&t.sb);
    if (rc == 0)
        return 0;
    if (!ctx->error.code[0])
        ds_ops_fail(ctx, rc, DS_OPS_E_INTERNAL, NULL, "%s failed: %s", name ? name : "request",
                    ds_strerror(rc));
    int prc = pack_error(&ctx->error, reply);
    return prc ? prc : rc;
}

/* ---- Parameters --------------------------------------------------------- */

static int key_is(const msgpack_object *k, const char *key)
{
    size_t n = strlen(key);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, key, n) == 0;
}

const msgpack_object *ds_ops_get(const msgpack_object *params, const char *key)
{
    if (!params || params->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < params->via.map.size; i++) {
        const msgpack_object_kv *kv = &params->via.map.ptr[i];
        if (key_is(&kv->key, key))
            return kv->val.type == MSGPACK_OBJECT_NIL ? NULL : &kv->val;
    }
    return NULL;
}

int ds_ops_get_str(ds_ctx *ctx, const msgpack_object *params, const char *key, int required,
                   char **out)
{
    *out = NULL;
    const msgpack_object *v = ds_ops_get(params, key);
    if (!v) {
        if (required)
            return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                               "missing parameter '%s'", key);
        return 0;
    }
    if (v->type != MSGPACK_OBJECT_STR)
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                           "parameter '%s' must be a string", key);
    if (!ds_utf8_valid(v->via.str.ptr, v->via.str.size))
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                           "Text must be UTF-8 without NUL bytes.",
                           "the %s is not valid UTF-8 text", key);
    char *s = malloc(v->via.str.size + 1);
    if (!s)
        return ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    memcpy(s, v->via.str.ptr, v->via.str.size);
    s[v->via.str.size] = '\0';
    *out = s;
    return 0;
}

int ds_ops_get_name(ds_ctx *ctx, const msgpack_object *params, const char *key, const char *def,
                    char **out)
{
    int rc = ds_ops_get_str(ctx, params, key, 0, out);
    if (rc)
        return rc;
    if (!*out) {
        if (!def)
            return 0;
        *out = strdup(def);
        return *out ? 0 : ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    const char *why = NULL;
    size_t n = strlen(*out);
    if (n == 0)
        why = "is empty";
    else if (n > DS_OPS_MAX_NAME)
        why = "is too long (more than 256 bytes)";
    for (size_t i = 0; !why && i < n; i++)
        if ((unsigned char)(*out)[i] < 0x20 || (*out)[i] == 0x7f)
            why = "contains a control character";
    if (why) {
        free(*out);
        *out = NULL;
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL, "the %s %s", key, why);
    }
    return 0;
}

int ds_ops_get_limit(ds_ctx *ctx, const msgpack_object *params, size_t def, size_t *out)
{
    *out = def;
    const msgpack_object *v = ds_ops_get(params, "limit");
    if (!v)
        return 0;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 >= 1 &&
        v->via.u64 <= DS_OPS_MAX_LIMIT) {
        *out = (size_t)v->via.u64;
        return 0;
    }
    return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                       "limit must be a whole number from 1 to %d", DS_OPS_MAX_LIMIT);
}

int ds_ops_get_project_filter(ds_ctx *ctx, const msgpack_object *params, char **out)
{
    *out = NULL;
    char *p = NULL, *cwd = NULL;
    int rc = ds_ops_get_str(ctx, params, "project", 0, &p);
    if (rc || !p)
        return rc;
    if (!p[0]) {
        free(p);
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL, "the project is empty");
    }
    rc = ds_ops_get_str(ctx, params, "cwd", 0, &cwd);
    if (rc) {
        free(p);
        return rc;
    }
    char *canon = NULL;
    if (ds_path_canonical(cwd, p, &canon) == 0) {
        free(p);
    } else if (p[0] == '/' || !cwd) {
        canon = p;
    } else {
        canon = ds_path_join(cwd, p);
        free(p);
        if (!canon) {
            free(cwd);
            return ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
        }
    }
    free(cwd);
    size_t n = strlen(canon);
    while (n > 1 && canon[n - 1] == '/')
        canon[--n] = '\0';
    *out = canon;
    return 0;
}

int ds_ops_stores(ds_ctx *ctx, ds_store **stores, const char **labels, size_t *n)
{
    *n = 0;
    ds_store *local;
    int rc = ds_ctx_store(ctx, 0, &local);
    /* No local store yet is fine when peers' replicas can be searched. */
    int no_local = rc == DS_ERR_NOTFOUND && strcmp(ctx->error.code, DS_OPS_E_NO_STORE) == 0;
    if (rc && !no_local)
        return rc;
    ds_op_error saved = ctx->error;
    if (!rc) {
        stores[0] = local;
        labels[0] = "local";
        *n = 1;
    }
    size_t k = 0;
    int prc = ds_ops_peer_stores(ctx, stores + *n, labels + *n, DS_OPS_MAX_STORES - *n, &k);
    if (prc)
        return prc;
    *n += k;
    if (*n == 0 && ctx->nwarnings) {
        /* No local store, and the only replicas cannot be opened. */
        const ds_op_warning *w = &ctx->warnings[0];
        return ds_ops_fail(ctx, DS_ERR_STORE, w->code, w->hint[0] ? w->hint : NULL, "%s",
                           w->message);
    }
    if (*n == 0) {
        ctx->error = saved;
        return rc;
    }
    memset(&ctx->error, 0, sizeof ctx->error);
    return 0;
}

/* ---- Packing ------------------------------------------------------------ */

void ds_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void ds_pack_bool(msgpack_packer *pk, int b)
{
    if (b)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void ds_pack_cstr(msgpack_packer *pk, const char *s)
{
    if (!s)
        msgpack_pack_nil(pk);
    else
        ds_pack_strn(pk, s, strlen(s));
}

void ds_pack_node(msgpack_packer *pk, const ds_node *n, const double *score,
                  const char *store_label)
{
    char id[DS_UUID_STRLEN + 1];
    ds_uuid_format(n->id, id);
    msgpack_pack_map(pk, 10 + (score ? 1 : 0));
    pack_key(pk, "id");
    ds_pack_cstr(pk, id);
    pack_key(pk, "content");
    ds_pack_strn(pk, n->content ? n->content : "", n->content ? n->content_len : 0);
    pack_key(pk, "source");
    ds_pack_cstr(pk, n->source ? n->source : "");
    pack_key(pk, "source_type");
    ds_pack_cstr(pk, ds_source_type_name(n->source_type));
    pack_key(pk, "project");
    ds_pack_cstr(pk, n->project ? n->project : "");
    pack_key(pk, "namespace");
    ds_pack_cstr(pk, n->ns ? n->ns : "");
    pack_key(pk, "timestamp");
    msgpack_pack_int64(pk, n->timestamp);
    pack_key(pk, "chunk_index");
    msgpack_pack_uint32(pk, n->chunk_index);
    pack_key(pk, "metadata");
    ds_pack_cstr(pk, n->metadata);
    pack_key(pk, "store");
    ds_pack_cstr(pk, store_label ? store_label : "local");
    if (score) {
        pack_key(pk, "score");
        msgpack_pack_double(pk, *score);
    }
}

void ds_ops_iso8601(int64_t ms, int with_ms, char out[32])
{
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00Z");
        return;
    }
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (with_ms)
        snprintf(out + n, 32 - n, ".%03dZ", (int)rem);
    else
        snprintf(out + n, 32 - n, "Z");
}
