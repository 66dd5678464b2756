/*
 * ops_peer.c - the peer requests: identity (peer_init, peer_id), share
 * control (peer_share, peer_unshare, peer_shared), peer management
 * (peer_add, peer_remove, peer_list) and offline exchange (peer_export,
 * peer_import), plus the replica side of the fan-out search
 * (ds_ops_peer_stores, ds_ops_stores_select) and per-peer statistics.
 *
 * Every change to peers.json, share.json, identity.key or peers/ happens
 * under peers/.lock, taken with a bounded wait and held only for local
 * file and LMDB work (never across anything that waits on the network or
 * the user).  Slow, side-effect-free work - reading and verifying an
 * import file - is done before the lock is taken.
 */
#include "daemon/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/exchange.h"
#include "core/util.h"
#include "daemon/home.h"
#include "daemon/log.h"
#include "daemon/netsync.h"
#include "daemon/peers.h"
#include "io/quic.h"

#define ERRLEN 1024
static const char EXPORT_CURSOR_KEY[] = "export_cursor";

/* ---- replica cache ------------------------------------------------------ */

typedef struct replica_ent {
    char id[DS_NODE_ID_HEX + 1];
    char label[DS_PEER_NAME_MAX + 1];
    ds_store *st;
} replica_ent;

struct ds_replica_cache {
    replica_ent e[DS_OPS_MAX_STORES];   /* st NULL: to be opened again */
    size_t n;
};

void ds_ops_replicas_free(ds_ctx *ctx)
{
    struct ds_replica_cache *c = ctx->replicas;
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        ds_store_close(c->e[i].st);
    free(c);
    ctx->replicas = NULL;
}

static void cache_close(ds_ctx *ctx, const char *id, const char *why)
{
    struct ds_replica_cache *c = ctx->replicas;
    if (ctx->netsync)
        ds_netsync_cancel_peer(ctx->netsync, id, why);   /* a sync may be writing it */
    for (size_t i = 0; c && i < c->n; i++)
        if (strcmp(c->e[i].id, id) == 0) {
            ds_store_close(c->e[i].st);
            c->e[i] = c->e[--c->n];
            return;
        }
}

/* The cached replica of |id|, opened (or, with |create|, created) on first
 * use.  DS_ERR_NOTFOUND when it does not exist and !create.  A replica
 * whose data file was moved away or replaced since it was opened (the
 * repair of a damaged one) is closed and what is there now opened, in the
 * same entry, whose address callers may hold; a sync writing the old one
 * is cancelled first, unless |by_sync|: the caller is the sync about to
 * write it, and no other holds it (one sync per peer at a time). */
static int cache_open(ds_ctx *ctx, const char *id, int create, int by_sync, replica_ent **out)
{
    *out = NULL;
    if (!ctx->replicas && !(ctx->replicas = calloc(1, sizeof *ctx->replicas)))
        return DS_ERR_NOMEM;
    struct ds_replica_cache *c = ctx->replicas;
    replica_ent *e = NULL;
    for (size_t i = 0; i < c->n && !e; i++)
        if (strcmp(c->e[i].id, id) == 0)
            e = &c->e[i];
    if (e && e->st && ds_store_replaced(e->st) == 1) {
        if (ctx->netsync && !by_sync)
            ds_netsync_cancel_peer(ctx->netsync, id,
                                   "its replica was replaced (sync again to fill the new one)");
        ds_store_close(e->st);
        e->st = NULL;
    }
    if (e && e->st) {
        *out = e;
        return 0;
    }
    if (!e && c->n >= DS_OPS_MAX_STORES - 1)
        return DS_ERR_TOOLARGE;
    uint8_t seed[DS_EPOCH_LEN];
    ctx->random_buf(seed, sizeof seed);
    ds_store *st;
    int rc = ds_replica_open(ctx->home, id, create, seed, &st);
    if (rc)
        return rc;   /* an entry left without a store is opened again next time */
    if (!e) {
        e = &c->e[c->n++];
        memset(e, 0, sizeof *e);
        snprintf(e->id, sizeof e->id, "%s", id);
    }
    e->st = st;
    *out = e;
    return 0;
}

static int replica_unusable(ds_ctx *ctx, int err, const char *label, const char *id,
                            const char *what);

int ds_ops_replica(ds_ctx *ctx, const char *id, const char *label, int create, ds_store **out)
{
    replica_ent *e;
    *out = NULL;
    int rc = cache_open(ctx, id, create, 1, &e);
    if (rc == DS_ERR_NOTFOUND && !create)
        return rc;
    if (rc)
        return replica_unusable(ctx, rc, label, id, "opened");
    *out = e->st;
    return 0;
}

/* ---- damaged replicas ---------------------------------------------------- */

/* Opens the cached replica of |id| for reading: 0 with *out set,
 * DS_ERR_NOTFOUND when the peer has no replica (yet), else the error
 * with the reason in |why|.  A db that exists but is not a directory,
 * or whose data file cannot be looked at, is damage, not absence. */
static int replica_open_read(ds_ctx *ctx, const char *id, replica_ent **out, char *why,
                             size_t whylen)
{
    int rc = cache_open(ctx, id, 0, 0, out);
    if (rc && rc != DS_ERR_NOTFOUND) {
        snprintf(why, whylen, "%s", ds_strerror(rc));
        return rc;
    }
    if (!rc)
        return 0;
    char *db = ds_replica_path(ctx->home, id, "db");
    char *data = db ? ds_path_join(db, "data.mdb") : NULL;
    struct stat sb;
    if (!data) {
        rc = DS_ERR_NOMEM;
        snprintf(why, whylen, "%s", ds_strerror(rc));
    } else if (stat(db, &sb) != 0) {
        /* no db at all: nothing synced yet */
    } else if (!S_ISDIR(sb.st_mode)) {
        rc = DS_ERR_STORE;
        snprintf(why, whylen, "it is not a directory");
    } else if (stat(data, &sb) != 0 && errno != ENOENT) {
        rc = DS_ERR_IO;
        snprintf(why, whylen, "data.mdb: %s", strerror(errno));
    }
    free(data);
    free(db);
    return rc;
}

/* What repairs a replica that cannot be opened or read: neither sync nor
 * import can (both open it first), and ds never touches it itself. */
static void replica_hint(char *hint, size_t len, const char *label, const char *db)
{
    snprintf(hint, len,
             "Nothing was changed, and ds peer sync --full cannot repair it. Move %s away "
             "(or delete it), then rebuild it: ds peer sync %s, or import a file %s "
             "exported; or ds peer remove %s and add the peer again.",
             db ? db : "the replica", label, label, label);
}

/* Fails when |cfg| subscribes to more peers than ds keeps replicas of
 * (DS_OPS_MAX_SUBSCRIBED), saying |hint|; else 0. */
static int subscribed_limit(ds_ctx *ctx, const ds_peers_cfg *cfg, const char *hint)
{
    size_t nsub = 0;
    for (size_t i = 0; i < cfg->n; i++)
        nsub += cfg->peers[i].subscribe != 0;
    if (nsub <= DS_OPS_MAX_SUBSCRIBED)
        return 0;
    return ds_ops_fail(ctx, DS_ERR_TOOLARGE, DS_OPS_E_TOO_LARGE, hint,
                       "%d peers are subscribed already, the most ds keeps replicas of",
                       DS_OPS_MAX_SUBSCRIBED);
}

/* Fails a request that needs peer |id|'s replica, which could not be
 * |what| (opened, written) because of |err|.  A damaged replica (a data
 * file cut short, ...) gets the repair hint; |label| names the peer (NULL:
 * the caller's message does). */
static int replica_unusable(ds_ctx *ctx, int err, const char *label, const char *id,
                            const char *what)
{
    if (err == DS_ERR_NOMEM || err == DS_ERR_FULL || err == DS_ERR_IO || err == DS_ERR_BUSY ||
        err == DS_ERR_TOOLARGE) {   /* not damage: the replica itself is fine */
        char w[64];
        snprintf(w, sizeof w, "%s a peer's replica",
                 strcmp(what, "opened") == 0 ? "opening" : "writing");
        return ds_ops_fail_store(ctx, err, w);
    }
    char *db = ds_replica_path(ctx->home, id, "db");
    char hint[512], sid[DS_PEER_SHORT_ID + 1];
    snprintf(sid, sizeof sid, "%s", id);
    replica_hint(hint, sizeof hint, label ? label : sid, db);
    int rc = label ? ds_ops_fail(ctx, err, DS_OPS_E_STORE, hint,
                                 "the replica %s of peer '%s' cannot be %s: %s", db ? db : id,
                                 label, what, ds_strerror(err))
                   : ds_ops_fail(ctx, err, DS_OPS_E_STORE, hint, "%s cannot be %s: %s",
                                 db ? db : id, what, ds_strerror(err));
    free(db);
    return rc;
}

/* Records that |label|'s replica was left out: it could not be |what|
 * (opened, read) because of |why|.  With |fail|, that is the request's
 * error instead of a warning (the replica was the only store asked for). */
static int replica_damage(ds_ctx *ctx, int fail, const char *label, const char *id,
                          const char *what, const char *why)
{
    char *db = ds_replica_path(ctx->home, id, "db");
    char hint[512];
    replica_hint(hint, sizeof hint, label, db);
    const char *fmt = "peer '%s' was not searched: its replica %s cannot be %s: %s";
    int rc = 0;
    if (fail)
        rc = ds_ops_fail(ctx, DS_ERR_STORE, DS_OPS_E_STORE, hint, fmt, label, db ? db : id, what,
                         why);
    else
        ds_ops_warn(ctx, DS_OPS_E_STORE, label, id, db, hint, fmt, label, db ? db : id, what,
                    why);
    free(db);
    return rc;
}

/* Why reading |st| failed with |err|, in |why|: a data file cut short
 * while open says so, with both sizes. */
static void read_why(ds_store *st, int err, char *why, size_t whylen)
{
    uint64_t have, need;
    if (err == DS_ERR_SHORT && ds_store_check(st, &have, &need) == DS_ERR_SHORT)
        snprintf(why, whylen,
                 "its data file is %llu bytes, shorter than the %llu bytes of its database "
                 "(cut short while open?)",
                 (unsigned long long)have, (unsigned long long)need);
    else
        snprintf(why, whylen, "%s", ds_strerror(err));
}

void ds_ops_replica_read_failed(ds_ctx *ctx, ds_store *st, const char *label, int err)
{
    struct ds_replica_cache *c = ctx->replicas;
    const char *id = "";
    for (size_t i = 0; c && i < c->n; i++)
        if (c->e[i].st == st)
            id = c->e[i].id;
    char why[256];
    read_why(st, err, why, sizeof why);
    replica_damage(ctx, 0, label, id, "read", why);
}

/* ---- helpers ------------------------------------------------------------ */

/* An optional boolean parameter (true/false or 0/1): -1 when absent. */
static int get_flag(ds_ctx *ctx, const msgpack_object *params, const char *key, int *out)
{
    *out = -1;
    const msgpack_object *v = ds_ops_get(params, key);
    if (!v)
        return 0;
    if (v->type == MSGPACK_OBJECT_BOOLEAN)
        *out = v->via.boolean ? 1 : 0;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= 1)
        *out = (int)v->via.u64;
    else
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                           "parameter '%s' must be true or false", key);
    return 0;
}

/* Turns an error of peers.c (message in |err|) into the request's error. */
static int cfg_fail(ds_ctx *ctx, int rc, const char *err)
{
    switch (rc) {
    case DS_ERR_NOMEM:
        return ds_ops_fail(ctx, rc, DS_OPS_E_NOMEM, NULL, "out of memory");
    case DS_ERR_MALFORMED:
    case DS_ERR_VERSION:
        return ds_ops_fail(ctx, rc, DS_OPS_E_BAD_CONFIG,
                           "Fix the file by hand, or move it away to start over.", "%s", err);
    case DS_ERR_TIMEOUT:
        return ds_ops_fail(ctx, rc, DS_OPS_E_BUSY,
                           "Another ds process is changing peer data; try again when it is done.",
                           "%s", err);
    default:
        return ds_ops_fail(ctx, rc, DS_OPS_E_IO, NULL, "%s",
                           err[0] ? err : ds_strerror(rc));
    }
}

static int take_lock(ds_ctx *ctx, int *fd)
{
    char err[ERRLEN] = "";
    int timeout = DS_PEERS_LOCK_TIMEOUT_MS;
    const char *env = getenv("DS_LOCK_TIMEOUT_MS"); /* tests shorten the wait */
    if (env && env[0]) {
        long v = strtol(env, NULL, 10);
        if (v >= 0 && v <= DS_PEERS_LOCK_TIMEOUT_MS)
            timeout = (int)v;
    }
    int rc = ds_peers_lock(ctx->home, timeout, fd, err, sizeof err);
    return rc ? cfg_fail(ctx, rc, err) : 0;
}

/* This node's identity; "no_identity" when there is none. */
static int load_identity(ds_ctx *ctx, ds_identity *id)
{
    char err[ERRLEN] = "";
    int rc = ds_peers_identity_load(ctx->home, id, err, sizeof err);
    if (rc == DS_ERR_NOTFOUND)
        return ds_ops_fail(ctx, rc, DS_OPS_E_NO_IDENTITY, "Run: ds peer init",
                           "this node has no identity yet");
    return rc ? cfg_fail(ctx, rc, err) : 0;
}

static int load_peers(ds_ctx *ctx, ds_peers_cfg *cfg)
{
    char err[ERRLEN] = "";
    int rc = ds_peers_cfg_load(ctx->home, cfg, err, sizeof err);
    return rc ? cfg_fail(ctx, rc, err) : 0;
}

static int save_peers(ds_ctx *ctx, ds_peers_cfg *cfg)
{
    char err[ERRLEN] = "";
    int rc = ds_peers_cfg_save(ctx->home, cfg, err, sizeof err);
    return rc ? cfg_fail(ctx, rc, err) : 0;
}

static int load_share(ds_ctx *ctx, ds_share_cfg *cfg)
{
    char err[ERRLEN] = "";
    int rc = ds_share_cfg_load(ctx->home, cfg, err, sizeof err);
    return rc ? cfg_fail(ctx, rc, err) : 0;
}

/* A NodeId parameter, lowercased and validated into |out|. */
static int norm_id(const char *raw, char out[DS_NODE_ID_HEX + 1])
{
    size_t n = strlen(raw);
    if (n != DS_NODE_ID_HEX)
        return DS_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(raw[i] >= 'A' && raw[i] <= 'F' ? raw[i] - 'A' + 'a' : raw[i]);
    out[n] = '\0';
    return ds_node_id_valid(out) ? 0 : DS_ERR_INVALID;
}

/* 1 if |s| reads as a NodeId or a NodeId prefix (DS_PEER_SHORT_ID or more
 * hex digits), typed wrong, rather than as a peer name. */
static int looks_like_id(const char *s)
{
    size_t n = strlen(s);
    if (n < DS_PEER_SHORT_ID)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return 0;
    return 1;
}

static int bad_id(ds_ctx *ctx, const char *raw)
{
    return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                       "A NodeId is 64 hexadecimal digits, as printed by ds peer id.",
                       "'%.100s' is not a NodeId", raw);
}

/* The known peer given by name, NodeId or NodeId prefix (at least 8 hex
 * digits, as labels show) in |raw|, or an error. */
int ds_ops_find_peer(ds_ctx *ctx, const ds_peers_cfg *cfg, const char *raw, const ds_peer **out)
{
    char matches[512];
    int rc = ds_peers_resolve(cfg, raw, out, matches, sizeof matches);
    if (rc == DS_ERR_AMBIGUOUS)
        return ds_ops_fail(ctx, rc, DS_OPS_E_AMBIGUOUS,
                           "Give more digits of the NodeId, or the peer's name.",
                           "'%.100s' starts the NodeId of more than one peer: %s", raw, matches);
    if (rc)
        return ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_UNKNOWN_PEER,
                           "ds peer list shows the known peers.", "no peer '%.100s'", raw);
    return 0;
}

/* |file| made absolute against "cwd". */
static int param_path(ds_ctx *ctx, const msgpack_object *params, const char *key, char **out)
{
    char *p = NULL, *cwd = NULL;
    *out = NULL;
    int rc = ds_ops_get_str(ctx, params, key, 1, &p);
    if (!rc && !p[0])
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, "Give the path of a file.",
                         "the %s name is empty", key);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "cwd", 0, &cwd);
    if (!rc) {
        if (p[0] == '/' || !cwd) {
            *out = p;
            p = NULL;
        } else if (!(*out = ds_path_join(cwd, p))) {
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
        }
    }
    free(p);
    free(cwd);
    return rc;
}

/* The number of nodes in |id|'s replica; *exists tells whether it has
 * one; |why| is "" or why it cannot be opened or read. */
static uint64_t replica_nodes(ds_ctx *ctx, const char *id, int *exists, char *why,
                              size_t whylen)
{
    replica_ent *e;
    uint64_t n = 0;
    *exists = 0;
    why[0] = '\0';
    if (!ds_replica_exists(ctx->home, id))
        return 0;
    int rc = replica_open_read(ctx, id, &e, why, whylen);
    if (rc == DS_ERR_NOTFOUND)
        return 0;
    *exists = 1;
    if (!rc && (rc = ds_store_node_count(e->st, &n)) != 0)
        read_why(e->st, rc, why, whylen);
    return rc ? 0 : n;
}

/* ---- identity ----------------------------------------------------------- */

/* After a change that may make the daemon accept syncs (a new identity, a
 * peer with publish on): the daemon's sync service starts listening now
 * if it should.  The change is saved whatever happens here; when the
 * daemon still cannot accept syncs, |warn| says why (else it is ""), for
 * the reply's "warning" (the CLI prints it; the exit status stays 0). */
static void listen_now(ds_ctx *ctx, const ds_peers_cfg *cfg, char *warn, size_t warnlen)
{
    warn[0] = '\0';
    if (!ctx->netsync)
        return;
    char nerr[512] = "";
    if (ds_netsync_refresh(ctx->netsync, nerr, sizeof nerr) != 0) {
        DS_LOGE("%s", nerr);
        snprintf(warn, warnlen,
                 "saved, but the daemon cannot accept syncs: %s (free that address, or set "
                 "another with sync.listen in config.json or ds start --listen and restart the "
                 "daemon)",
                 nerr);
        return;
    }
    /* A daemon whose default address could not be bound at start runs
     * with no listen address at all: publish cannot take effect. */
    char la[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX];
    size_t nl = 0;
    ds_netsync_listen_addrs(ctx->netsync, la, &nl, NULL);
    int publish = 0;
    for (size_t i = 0; i < cfg->n; i++)
        publish |= cfg->peers[i].publish;
    if (!nl && publish)
        snprintf(warn, warnlen,
                 "saved, but the daemon cannot accept syncs: its network sync is off, since it "
                 "could not listen on its default address 0.0.0.0:%u when it started (see "
                 "%s/daemon.log); restart it (ds stop, then ds start), with another address if "
                 "needed (sync.listen in config.json, or ds start --listen)",
                 (unsigned)DS_QUIC_DEFAULT_PORT, ctx->home);
}

int op_peer_init(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    int force, fd = -1;
    int rc = get_flag(ctx, params, "force", &force);
    if (!rc)
        rc = take_lock(ctx, &fd);
    if (rc)
        return rc;
    ds_identity old, id;
    char err[ERRLEN] = "";
    int had = ds_peers_identity_load(ctx->home, &old, err, sizeof err);
    ds_peers_cfg cfg = { 0 };
    if (had == 0 && force != 1) {
        rc = ds_ops_fail(ctx, DS_ERR_EXISTS, DS_OPS_E_EXISTS,
                         "Keep it, or replace it with ds peer init --force (peers that know the "
                         "old NodeId will no longer recognize this node).",
                         "this node already has an identity: %s", old.node_id);
    } else if (had != 0 && had != DS_ERR_NOTFOUND && force != 1) {
        rc = cfg_fail(ctx, had, err);   /* damaged: do not silently replace */
    }
    if (!rc)
        rc = load_peers(ctx, &cfg);
    if (!rc) {
        uint8_t seed[DS_IDENTITY_SEED_LEN];
        ctx->random_buf(seed, sizeof seed);
        rc = ds_identity_from_seed(&id, seed);
        sodium_memzero(seed, sizeof seed);
        if (rc)
            rc = ds_ops_fail(ctx, rc, DS_OPS_E_INTERNAL, NULL, "cannot derive a key pair");
    }
    if (!rc) {
        rc = ds_peers_identity_save(ctx->home, &id, 1, err, sizeof err);
        if (rc)
            rc = cfg_fail(ctx, rc, err);
    }
    if (!rc && ds_peers_cfg_set_self(&cfg, id.node_id) != 0)
        rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    if (!rc)
        rc = save_peers(ctx, &cfg);
    ds_peers_unlock(fd);
    char warn[1024] = "";
    if (!rc)
        listen_now(ctx, &cfg, warn, sizeof warn);
    if (!rc) {
        char *path = ds_path_join(ctx->home, "identity.key");
        msgpack_pack_map(reply, 4);
        ds_pack_cstr(reply, "node_id");
        ds_pack_cstr(reply, id.node_id);
        ds_pack_cstr(reply, "path");
        ds_pack_cstr(reply, path);
        ds_pack_cstr(reply, "replaced");
        ds_pack_bool(reply, had == 0);
        /* The identity is saved; the daemon could not listen with it. */
        ds_pack_cstr(reply, "warning");
        ds_pack_cstr(reply, warn[0] ? warn : NULL);
        free(path);
    }
    ds_peers_cfg_free(&cfg);
    ds_identity_wipe(&old);
    ds_identity_wipe(&id);
    return rc;
}

int op_peer_id(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    (void)params;
    ds_identity id;
    int rc = load_identity(ctx, &id);
    if (rc)
        return rc;
    msgpack_pack_map(reply, 1);
    ds_pack_cstr(reply, "node_id");
    ds_pack_cstr(reply, id.node_id);
    ds_identity_wipe(&id);
    return 0;
}

/* ---- share control ------------------------------------------------------ */

int op_peer_share(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *path = NULL, *cwd = NULL, *canon = NULL;
    int rc = ds_ops_get_str(ctx, params, "path", 1, &path);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "cwd", 0, &cwd);
    if (!rc && !path[0])
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                         "Give the project directory to share, e.g. ds peer share .",
                         "the path is empty");
    if (!rc) {
        rc = ds_path_canonical(cwd, path, &canon);
        if (rc == DS_ERR_IO) {
            int e = errno;
            int gone = e == ENOENT || e == ENOTDIR;
            rc = ds_ops_fail(ctx, rc, gone ? DS_OPS_E_NOT_FOUND : DS_OPS_E_IO,
                             gone ? "Give the directory of an existing project."
                                  : "Check that you may read that directory.",
                             "cannot share %s: %s", path, strerror(e));
        } else if (rc) {
            rc = ds_ops_fail(ctx, rc, DS_OPS_E_NOMEM, NULL, "out of memory");
        }
    }
    int fd = -1, added = 0;
    ds_share_cfg cfg = { 0 };
    if (!rc)
        rc = take_lock(ctx, &fd);
    if (!rc)
        rc = load_share(ctx, &cfg);
    if (!rc) {
        rc = ds_share_cfg_add(&cfg, canon);
        added = rc == 0;
        if (rc == DS_ERR_EXISTS)
            rc = 0;
        else if (rc)
            rc = ds_ops_fail(ctx, rc, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    if (!rc && added) {
        char err[ERRLEN] = "";
        rc = ds_share_cfg_save(ctx->home, &cfg, err, sizeof err);
        if (rc)
            rc = cfg_fail(ctx, rc, err);
    }
    ds_peers_unlock(fd);
    if (!rc) {
        msgpack_pack_map(reply, 3);
        ds_pack_cstr(reply, "path");
        ds_pack_cstr(reply, canon);
        ds_pack_cstr(reply, "added");
        ds_pack_bool(reply, added);
        /* Everything lies beneath /: easy to type by mistake (an unset
         * variable before a slash), and it makes no project private. */
        ds_pack_cstr(reply, "warning");
        ds_pack_cstr(reply, strcmp(canon, "/") == 0
                                ? "/ covers every project on this machine: peers you publish "
                                  "to get all of their nodes. Undo with: ds peer unshare /"
                                : NULL);
    }
    ds_share_cfg_free(&cfg);
    free(path);
    free(cwd);
    free(canon);
    return rc;
}

int op_peer_unshare(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *path = NULL, *cwd = NULL, *canon = NULL, *abs = NULL;
    int rc = ds_ops_get_str(ctx, params, "path", 1, &path);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "cwd", 0, &cwd);
    if (!rc && !path[0])
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                         "Give a shared project directory; ds peer shared lists them.",
                         "the path is empty");
    if (!rc) {
        /* The project may be gone by now: fall back to the path as given. */
        if (ds_path_canonical(cwd, path, &canon) != 0)
            canon = NULL;
        abs = path[0] == '/' || !cwd ? strdup(path) : ds_path_join(cwd, path);
        if (!abs)
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
        size_t n = abs ? strlen(abs) : 0;
        while (n > 1 && abs[n - 1] == '/')
            abs[--n] = '\0';
    }
    int fd = -1;
    ds_share_cfg cfg = { 0 };
    const char *removed = NULL, *parent = NULL;
    if (!rc)
        rc = take_lock(ctx, &fd);
    if (!rc)
        rc = load_share(ctx, &cfg);
    if (!rc) {
        if (canon && ds_share_cfg_remove(&cfg, canon) == 0)
            removed = canon;
        else if (ds_share_cfg_remove(&cfg, abs) == 0)
            removed = abs;
        /* Still shared through a listed directory above it? */
        const char *p = removed ? removed : canon ? canon : abs;
        parent = ds_share_cfg_covering(&cfg, p);
        if (!parent && !removed && canon)
            parent = ds_share_cfg_covering(&cfg, abs);
        char hint[PATH_MAX + 128] = "";
        if (parent)
            snprintf(hint, sizeof hint, "To stop sharing it, unshare %s (and share the parts "
                                        "you want).", parent);
        if (!removed && parent)
            rc = ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_NOT_FOUND, hint,
                             "%s is not shared by itself, but it is inside the shared project "
                             "%s: its nodes are shared",
                             p, parent);
        else if (!removed)
            rc = ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_NOT_FOUND,
                             "ds peer shared lists the shared projects.", "%s is not shared",
                             p);
    }
    if (!rc) {
        char err[ERRLEN] = "";
        rc = ds_share_cfg_save(ctx->home, &cfg, err, sizeof err);
        if (rc)
            rc = cfg_fail(ctx, rc, err);
    }
    ds_peers_unlock(fd);
    if (!rc) {
        char warn[2 * PATH_MAX + 160] = "";
        if (parent)
            snprintf(warn, sizeof warn,
                     "%s is still shared: it is inside the shared project %s. To stop sharing "
                     "it, unshare %s (and share the parts you want)",
                     removed, parent, parent);
        msgpack_pack_map(reply, 2);
        ds_pack_cstr(reply, "path");
        ds_pack_cstr(reply, removed);
        ds_pack_cstr(reply, "warning");
        ds_pack_cstr(reply, warn[0] ? warn : NULL);
    }
    ds_share_cfg_free(&cfg);
    free(path);
    free(cwd);
    free(canon);
    free(abs);
    return rc;
}

int op_peer_shared(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    (void)params;
    ds_share_cfg cfg;
    int rc = load_share(ctx, &cfg);
    if (rc)
        return rc;
    msgpack_pack_map(reply, 1);
    ds_pack_cstr(reply, "projects");
    msgpack_pack_array(reply, cfg.n);
    for (size_t i = 0; i < cfg.n; i++)
        ds_pack_cstr(reply, cfg.paths[i]);
    ds_share_cfg_free(&cfg);
    return 0;
}

/* ---- peer management ---------------------------------------------------- */

static void pack_peer(ds_ctx *ctx, msgpack_packer *pk, const ds_peer *p)
{
    char sid[DS_PEER_SHORT_ID + 1], why[256];
    int exists;
    uint64_t nodes = replica_nodes(ctx, p->node_id, &exists, why, sizeof why);
    msgpack_pack_map(pk, 14);
    ds_pack_cstr(pk, "node_id");
    ds_pack_cstr(pk, p->node_id);
    ds_pack_cstr(pk, "addrs");
    msgpack_pack_array(pk, p->naddrs);
    for (size_t i = 0; i < p->naddrs; i++)
        ds_pack_cstr(pk, p->addrs[i]);
    ds_pack_cstr(pk, "last_attempt");
    ds_pack_cstr(pk, p->last_attempt);
    ds_pack_cstr(pk, "last_result");
    ds_pack_cstr(pk, p->last_result);
    ds_pack_cstr(pk, "last_addr");
    ds_pack_cstr(pk, p->last_addr);
    ds_pack_cstr(pk, "last_path");
    ds_pack_cstr(pk, p->last_path);
    ds_pack_cstr(pk, "name");
    ds_pack_cstr(pk, p->name);
    ds_pack_cstr(pk, "label");
    ds_pack_cstr(pk, ds_peer_label(p, sid));
    ds_pack_cstr(pk, "subscribe");
    ds_pack_bool(pk, p->subscribe);
    ds_pack_cstr(pk, "publish");
    ds_pack_bool(pk, p->publish);
    ds_pack_cstr(pk, "last_sync");
    ds_pack_cstr(pk, p->last_sync);
    ds_pack_cstr(pk, "nodes");
    if (why[0])
        msgpack_pack_nil(pk);   /* unknown: the replica cannot be read */
    else
        msgpack_pack_uint64(pk, nodes);
    ds_pack_cstr(pk, "replica");
    ds_pack_bool(pk, exists);
    ds_pack_cstr(pk, "replica_error");
    ds_pack_cstr(pk, why[0] ? why : NULL);
}

int op_peer_add(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *raw = NULL, *name = NULL;
    int subscribe, publish, fd = -1, created = 0;
    char id[DS_NODE_ID_HEX + 1];
    ds_peers_cfg cfg = { 0 };
    ds_peer before = { .subscribe = -1 };
    char before_name[DS_PEER_NAME_MAX + 1] = "";
    int rc = ds_ops_get_str(ctx, params, "id", 1, &raw);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "name", 0, &name);
    if (!rc)
        rc = get_flag(ctx, params, "subscribe", &subscribe);
    if (!rc)
        rc = get_flag(ctx, params, "publish", &publish);
    const char *why;
    if (!rc && name && ds_peer_name_check(name, &why) != 0)
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                         "Choose a short name such as alice or build-box.",
                         "the peer name '%.80s' %s", name, why);
    /* addrs: ["host:port", ...] added to the peer's addresses. */
    const char *addrs[DS_PEER_MAX_ADDRS];
    size_t naddrs = 0, added_addrs = 0;
    const msgpack_object *av = rc ? NULL : ds_ops_get(params, "addrs");
    if (av && (av->type != MSGPACK_OBJECT_ARRAY || av->via.array.size > DS_PEER_MAX_ADDRS))
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                         "'addrs' must be a list of at most %d addresses", DS_PEER_MAX_ADDRS);
    char abuf[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    for (uint32_t i = 0; !rc && av && i < av->via.array.size; i++) {
        const msgpack_object *e = &av->via.array.ptr[i];
        char host[DS_ADDR_MAX];
        uint16_t port;
        if (e->type != MSGPACK_OBJECT_STR || e->via.str.size >= DS_ADDR_MAX) {
            rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                             "an address must be a string HOST:PORT");
            break;
        }
        snprintf(abuf[i], DS_ADDR_MAX, "%.*s", (int)e->via.str.size, e->via.str.ptr);
        if (ds_addr_parse(abuf[i], 0, host, &port, &why) != 0)
            rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                             "Give HOST:PORT, or [IPv6]:PORT, as printed by ds peer ticket.",
                             "the address '%.100s' %s", abuf[i], why);
        else
            addrs[naddrs++] = abuf[i];
    }
    if (!rc)
        rc = take_lock(ctx, &fd);
    if (!rc)
        rc = load_peers(ctx, &cfg);
    const char *arg = rc ? NULL : ds_str_trim(raw);    /* pasted: may end in '\n' */
    if (!rc && norm_id(arg, id) != 0) {
        /* An existing peer may be named (or its label given) instead. */
        const ds_peer *p;
        int r = ds_peers_resolve(&cfg, arg, &p, NULL, 0);
        if (r == 0)
            memcpy(id, p->node_id, sizeof id);
        else if (r == DS_ERR_AMBIGUOUS)
            rc = ds_ops_find_peer(ctx, &cfg, arg, &p);     /* says which peers */
        else if (looks_like_id(arg) || ds_peer_name_check(arg, &why) != 0)
            rc = bad_id(ctx, arg);
        else   /* a name no peer has: as ds peer remove says, plus what to give */
            rc = ds_ops_fail(ctx, DS_ERR_NOTFOUND, DS_OPS_E_UNKNOWN_PEER,
                             "To add a new peer, give its NodeId (ds peer id on its machine) "
                             "or its ticket (ds peer ticket), with --name NAME; ds peer list "
                             "shows the known peers.",
                             "no peer named '%.100s'; give its NodeId", arg);
    } else if (!rc && !ds_peers_find(&cfg, id) && !ds_node_id_is_key(id)) {
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                         "A NodeId is the public key printed by ds peer id on the peer's machine.",
                         "'%.100s' is not a NodeId: not a valid Ed25519 public key", arg);
    }
    if (!rc) {
        ds_identity self;
        char err[ERRLEN];
        if (ds_peers_identity_load(ctx->home, &self, err, sizeof err) == 0 &&
            strcmp(self.node_id, id) == 0)
            rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                             "Add the NodeId printed by ds peer id on the other machine.",
                             "%s is this node's own NodeId", id);
        ds_identity_wipe(&self);
    }
    if (!rc) {
        const ds_peer *p = ds_peers_find(&cfg, id);
        if (p) {
            before = *p;
            snprintf(before_name, sizeof before_name, "%s", p->name ? p->name : "");
        }
        rc = ds_peers_upsert(&cfg, id, name, subscribe, publish, &created);
        if (rc == DS_ERR_EXISTS) {
            const ds_peer *o = ds_peers_find_name(&cfg, name);
            rc = ds_ops_fail(ctx, rc, DS_OPS_E_EXISTS, "Peer names must be unique; choose another.",
                             "the name '%s' is already used by peer %s", name,
                             o ? o->node_id : "?");
        } else if (rc) {
            rc = ds_ops_fail(ctx, rc, DS_OPS_E_NOMEM, NULL, "out of memory");
        }
    }
    if (!rc && (created || !before.subscribe) && ds_peers_find(&cfg, id)->subscribe)
        rc = subscribed_limit(ctx, &cfg, "Add it with --no-subscribe, or unsubscribe another: "
                                         "ds peer add NAME --no-subscribe");
    char dropped[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    size_t ndropped = 0;
    if (!rc && naddrs &&
        ds_peers_add_addrs(&cfg, id, addrs, naddrs, &added_addrs, dropped, &ndropped) != 0)
        rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    if (!rc)
        rc = save_peers(ctx, &cfg);
    ds_peers_unlock(fd);
    /* publish may now be on: the daemon starts accepting syncs. */
    char warn[1024] = "";
    if (!rc)
        listen_now(ctx, &cfg, warn, sizeof warn);
    if (!rc) {
        const ds_peer *p = ds_peers_find(&cfg, id);
        char sid[DS_PEER_SHORT_ID + 1];
        const char *changed[4];
        size_t nc = 0;
        if (!created) {
            if (strcmp(before_name, p->name ? p->name : "") != 0)
                changed[nc++] = "name";
            if (before.subscribe != p->subscribe)
                changed[nc++] = "subscribe";
            if (before.publish != p->publish)
                changed[nc++] = "publish";
            if (added_addrs)
                changed[nc++] = "addrs";
        }
        msgpack_pack_map(reply, 11);
        ds_pack_cstr(reply, "node_id");
        ds_pack_cstr(reply, p->node_id);
        /* The change is saved; the daemon cannot accept syncs (null: fine). */
        ds_pack_cstr(reply, "warning");
        ds_pack_cstr(reply, warn[0] ? warn : NULL);
        /* Older addresses dropped to keep DS_PEER_MAX_ADDRS. */
        ds_pack_cstr(reply, "dropped_addrs");
        msgpack_pack_array(reply, ndropped);
        for (size_t i = 0; i < ndropped; i++)
            ds_pack_cstr(reply, dropped[i]);
        ds_pack_cstr(reply, "name");
        ds_pack_cstr(reply, p->name);
        ds_pack_cstr(reply, "label");
        ds_pack_cstr(reply, ds_peer_label(p, sid));
        ds_pack_cstr(reply, "addrs");
        msgpack_pack_array(reply, p->naddrs);
        for (size_t i = 0; i < p->naddrs; i++)
            ds_pack_cstr(reply, p->addrs[i]);
        ds_pack_cstr(reply, "created");
        ds_pack_bool(reply, created);
        ds_pack_cstr(reply, "subscribe");
        ds_pack_bool(reply, p->subscribe);
        ds_pack_cstr(reply, "publish");
        ds_pack_bool(reply, p->publish);
        ds_pack_cstr(reply, "old_name");
        ds_pack_cstr(reply, before_name[0] ? before_name : NULL);
        ds_pack_cstr(reply, "changed");
        msgpack_pack_array(reply, nc);
        for (size_t i = 0; i < nc; i++)
            ds_pack_cstr(reply, changed[i]);
    }
    ds_peers_cfg_free(&cfg);
    free(raw);
    free(name);
    return rc;
}

int op_peer_remove(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *raw = NULL;
    int fd = -1, had = 0;
    ds_peers_cfg cfg = { 0 };
    const ds_peer *p = NULL;
    ds_peer gone;
    char name[DS_PEER_NAME_MAX + 1] = "", label[DS_PEER_NAME_MAX + 1] = "";
    int rc = ds_ops_get_str(ctx, params, "id", 1, &raw);
    if (!rc)
        rc = take_lock(ctx, &fd);
    if (!rc)
        rc = load_peers(ctx, &cfg);
    if (!rc)
        rc = ds_ops_find_peer(ctx, &cfg, raw, &p);
    if (!rc) {
        char sid[DS_PEER_SHORT_ID + 1];
        gone = *p;
        snprintf(name, sizeof name, "%s", p->name ? p->name : "");
        snprintf(label, sizeof label, "%s", ds_peer_label(p, sid));
        had = ds_replica_exists(ctx->home, gone.node_id);
        cache_close(ctx, gone.node_id, "the peer was removed");
        rc = ds_replica_delete(ctx->home, gone.node_id);
        if (rc)
            rc = ds_ops_fail(ctx, rc, DS_OPS_E_IO, NULL, "cannot delete %s/peers/%s: %s",
                             ctx->home, gone.node_id, strerror(errno));
    }
    if (!rc && ds_peers_remove(&cfg, gone.node_id) != 0)
        rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    if (!rc)
        rc = save_peers(ctx, &cfg);
    ds_peers_unlock(fd);
    if (!rc) {
        msgpack_pack_map(reply, 4);
        ds_pack_cstr(reply, "node_id");
        ds_pack_cstr(reply, gone.node_id);
        ds_pack_cstr(reply, "name");
        ds_pack_cstr(reply, name[0] ? name : NULL);
        ds_pack_cstr(reply, "label");
        ds_pack_cstr(reply, label);
        ds_pack_cstr(reply, "replica_deleted");
        ds_pack_bool(reply, had);
    }
    ds_peers_cfg_free(&cfg);
    free(raw);
    return rc;
}

int op_peer_list(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    (void)params;
    ds_peers_cfg cfg;
    int rc = load_peers(ctx, &cfg);
    if (rc)
        return rc;
    ds_identity self;
    char err[ERRLEN];
    int have_self = ds_peers_identity_load(ctx->home, &self, err, sizeof err) == 0;
    msgpack_pack_map(reply, 2);
    ds_pack_cstr(reply, "node_id");
    ds_pack_cstr(reply, have_self ? self.node_id : NULL);
    ds_pack_cstr(reply, "peers");
    msgpack_pack_array(reply, cfg.n);
    for (size_t i = 0; i < cfg.n; i++)
        pack_peer(ctx, reply, &cfg.peers[i]);
    ds_identity_wipe(&self);
    ds_peers_cfg_free(&cfg);
    return 0;
}

/* ---- fan-out and statistics -------------------------------------------- */

int ds_ops_peer_stores(ds_ctx *ctx, ds_store **stores, const char **labels, size_t max,
                       size_t *n)
{
    *n = 0;
    ds_peers_cfg cfg;
    int rc = load_peers(ctx, &cfg);
    if (rc)
        return rc;
    /* Forget replicas of peers that are gone or unsubscribed. */
    struct ds_replica_cache *c = ctx->replicas;
    for (size_t i = 0; c && i < c->n;) {
        const ds_peer *p = ds_peers_find(&cfg, c->e[i].id);
        if (!p || !p->subscribe)
            cache_close(ctx, c->e[i].id, "the peer was removed or unsubscribed");
        else
            i++;
    }
    for (size_t i = 0; !rc && i < cfg.n && *n < max; i++) {
        const ds_peer *p = &cfg.peers[i];
        replica_ent *e;
        if (!p->subscribe || !ds_replica_exists(ctx->home, p->node_id))
            continue;
        char sid[DS_PEER_SHORT_ID + 1], why[256];
        rc = replica_open_read(ctx, p->node_id, &e, why, sizeof why);
        if (rc == DS_ERR_NOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc == DS_ERR_NOMEM) {
            rc = ds_ops_fail_store(ctx, rc, "opening a peer replica");
            break;
        }
        if (rc) {
            /* Search the stores that open; say which one was left out. */
            replica_damage(ctx, 0, ds_peer_label(p, sid), p->node_id, "opened", why);
            rc = 0;
            continue;
        }
        snprintf(e->label, sizeof e->label, "%s", ds_peer_label(p, sid));
        stores[*n] = e->st;
        labels[*n] = e->label;
        (*n)++;
    }
    ds_peers_cfg_free(&cfg);
    return rc;
}

int ds_ops_stores_select(ds_ctx *ctx, const msgpack_object *params, ds_store **stores,
                         const char **labels, size_t *n)
{
    *n = 0;
    int local;
    char *peer = NULL;
    int rc = get_flag(ctx, params, "local", &local);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "peer", 0, &peer);
    if (rc)
        return rc;
    if (local == 1 && peer) {
        free(peer);
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                           "--local and --peer exclude each other");
    }
    if (local == 1) {
        rc = ds_ctx_store(ctx, 0, &stores[0]);
        if (!rc) {
            labels[0] = "local";
            *n = 1;
        }
        return rc;
    }
    if (!peer)
        return ds_ops_stores(ctx, stores, labels, n);
    ds_peers_cfg cfg = { 0 };
    const ds_peer *p = NULL;
    replica_ent *e = NULL;
    rc = load_peers(ctx, &cfg);
    if (!rc)
        rc = ds_ops_find_peer(ctx, &cfg, peer, &p);
    if (!rc) {
        char why[256];
        rc = replica_open_read(ctx, p->node_id, &e, why, sizeof why);
        if (rc == DS_ERR_NOTFOUND) {
            char sid[DS_PEER_SHORT_ID + 1], hint[160];
            snprintf(hint, sizeof hint, "Sync it: ds peer sync %s (or import a file it "
                     "exported: ds peer import FILE)", ds_peer_label(p, sid));
            rc = ds_ops_fail(ctx, rc, DS_OPS_E_NOT_FOUND, hint, "no data from peer '%s' yet",
                             peer);
        } else if (rc == DS_ERR_NOMEM)
            rc = ds_ops_fail_store(ctx, rc, "opening a peer replica");
        else if (rc) {
            char sid[DS_PEER_SHORT_ID + 1];
            rc = replica_damage(ctx, 1, ds_peer_label(p, sid), p->node_id, "opened", why);
        }
    }
    if (!rc) {
        char sid[DS_PEER_SHORT_ID + 1];
        snprintf(e->label, sizeof e->label, "%s", ds_peer_label(p, sid));
        stores[0] = e->st;
        labels[0] = e->label;
        *n = 1;
    }
    ds_peers_cfg_free(&cfg);
    free(peer);
    return rc;
}

int ds_ops_peer_count(ds_ctx *ctx, size_t *n)
{
    ds_peers_cfg cfg;
    *n = 0;
    int rc = load_peers(ctx, &cfg);
    if (rc)
        return rc;
    *n = cfg.n;
    ds_peers_cfg_free(&cfg);
    return 0;
}

int ds_ops_pack_peer_stats(ds_ctx *ctx, msgpack_packer *pk)
{
    ds_peers_cfg cfg;
    int rc = load_peers(ctx, &cfg);
    if (rc)
        return rc;
    msgpack_pack_array(pk, cfg.n);
    for (size_t i = 0; i < cfg.n; i++)
        pack_peer(ctx, pk, &cfg.peers[i]);
    ds_peers_cfg_free(&cfg);
    return 0;
}

/* ---- export / import ---------------------------------------------------- */

typedef struct fdw { int fd; } fdw;

static int write_fd(void *ud, const uint8_t *d, size_t n)
{
    fdw *w = ud;
    while (n) {
        ssize_t r = write(w->fd, d, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return DS_ERR_IO;
        d += r;
        n -= (size_t)r;
    }
    return 0;
}

int op_peer_export(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *file = NULL, *tmp = NULL;
    int full, fd = -1;
    ds_identity id;
    ds_share_cfg share = { 0 };
    ds_share_set set = { 0 };
    ds_store *st = NULL;
    ds_export_result res;
    uint8_t since[DS_CURSOR_LEN];
    int has_since = 0;
    memset(&id, 0, sizeof id);
    int rc = param_path(ctx, params, "file", &file);
    if (!rc)
        rc = get_flag(ctx, params, "full", &full);
    if (!rc)
        rc = load_identity(ctx, &id);
    if (!rc)
        rc = load_share(ctx, &share);
    if (!rc && ds_share_cfg_set(&share, &set) != 0)
        rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    if (!rc)
        rc = ds_ctx_store(ctx, 0, &st);
    if (!rc && full != 1) {
        void *v;
        size_t vl;
        int r = ds_store_aux_get(st, DS_TABLE_CURSORS, EXPORT_CURSOR_KEY,
                                 sizeof EXPORT_CURSOR_KEY - 1, &v, &vl);
        if (r == 0) {
            if (vl == DS_CURSOR_LEN) {
                memcpy(since, v, DS_CURSOR_LEN);
                has_since = 1;
            }
            free(v);
        } else if (r != DS_ERR_NOTFOUND) {
            rc = ds_ops_fail_store(ctx, r, "reading the export cursor");
        }
    }
    if (!rc) {
        size_t n = strlen(file) + 32;
        if (!(tmp = malloc(n)))
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
        else
            snprintf(tmp, n, "%s.tmp.%ld", file, (long)getpid());
    }
    if (!rc) {
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            rc = ds_ops_fail(ctx, DS_ERR_IO, DS_OPS_E_IO,
                             "Give a FILE in a directory that exists and that you may write to.",
                             "cannot write %s: %s", file, strerror(errno));
    }
    if (!rc) {
        fdw w = { fd };
        uint8_t nonce[DS_CURSOR_NONCE_LEN];
        ds_cursor_seal seal;
        ctx->random_buf(nonce, sizeof nonce);
        ds_cursor_seal_init(&seal, id.sk, nonce);
        ds_export_opts o = { .id = &id, .share = &set, .seal = &seal,
                             .created_ms = ctx->now_ms(), .since = has_since ? since : NULL };
        rc = ds_export_write(st, &o, write_fd, &w, &res);
        ds_cursor_seal_wipe(&seal);
        int e = errno;
        if (!rc && fsync(fd) != 0) {
            e = errno;
            rc = DS_ERR_IO;
        }
        if (close(fd) != 0 && !rc) {
            e = errno;
            rc = DS_ERR_IO;
        }
        fd = -1;
        if (!rc && rename(tmp, file) != 0) {
            e = errno;
            rc = DS_ERR_IO;
        }
        if (rc == DS_ERR_IO)
            rc = ds_ops_fail(ctx, rc, DS_OPS_E_IO,
                             "Check the free space of that disk and that you may write there.",
                             "cannot write %s: %s", file, strerror(e));
        else if (rc)
            rc = ds_ops_fail_store(ctx, rc, "exporting");
        if (rc)
            unlink(tmp);
    }
    if (!rc) {
        /* The next export without --full continues from here. */
        ds_wtxn *tx;
        int r = ds_store_begin(st, &tx);
        if (!r) {
            r = ds_wtxn_aux_put(tx, DS_TABLE_CURSORS, EXPORT_CURSOR_KEY,
                                sizeof EXPORT_CURSOR_KEY - 1, res.cursor, DS_CURSOR_LEN);
            if (r)
                ds_wtxn_abort(tx);
            else
                r = ds_wtxn_commit(tx);
        }
        if (r)
            rc = ds_ops_fail_store(ctx, r, "saving the export cursor");
    }
    if (!rc) {
        msgpack_pack_map(reply, 8);
        ds_pack_cstr(reply, "file");
        ds_pack_cstr(reply, file);
        ds_pack_cstr(reply, "node_id");
        ds_pack_cstr(reply, id.node_id);
        ds_pack_cstr(reply, "full");
        ds_pack_bool(reply, res.full);
        ds_pack_cstr(reply, "nodes");
        msgpack_pack_uint64(reply, res.nodes);
        ds_pack_cstr(reply, "pages");
        msgpack_pack_uint64(reply, res.pages);
        ds_pack_cstr(reply, "bytes");
        msgpack_pack_uint64(reply, res.bytes);
        ds_pack_cstr(reply, "scanned");
        msgpack_pack_uint64(reply, res.scanned);
        ds_pack_cstr(reply, "shared");
        msgpack_pack_array(reply, share.n);
        for (size_t i = 0; i < share.n; i++)
            ds_pack_cstr(reply, share.paths[i]);
    }
    ds_identity_wipe(&id);
    ds_share_set_free(&set);
    ds_share_cfg_free(&share);
    free(file);
    free(tmp);
    return rc;
}

/* Reads all of |path| (at most DS_EXCHANGE_MAX_FILE bytes). */
static int read_all(ds_ctx *ctx, const char *path, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        int gone = e == ENOENT || e == ENOTDIR;
        return ds_ops_fail(ctx, DS_ERR_IO, gone ? DS_OPS_E_NOT_FOUND : DS_OPS_E_IO,
                           gone ? "Give the path of a file written by ds peer export."
                                : "Check that you may read that file.",
                           "cannot read %s: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ds_ops_fail(ctx, DS_ERR_IO, DS_OPS_E_BAD_FILE,
                           "Give the path of a file written by ds peer export.",
                           "%s is not a regular file", path);
    }
    if ((uint64_t)sb.st_size > DS_EXCHANGE_MAX_FILE) {
        close(fd);
        return ds_ops_fail(ctx, DS_ERR_TOOLARGE, DS_OPS_E_TOO_LARGE, NULL,
                           "%s is larger than an export file may be (1 GiB)", path);
    }
    size_t cap = (size_t)sb.st_size + 1, got = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    for (;;) {
        if (got == cap) {
            /* The file grew while we read it: refuse rather than guess. */
            close(fd);
            free(buf);
            return ds_ops_fail(ctx, DS_ERR_IO, DS_OPS_E_IO, NULL,
                               "%s changed while it was read", path);
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return ds_ops_fail(ctx, DS_ERR_IO, DS_OPS_E_IO, NULL, "cannot read %s: %s", path,
                               strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
}

static int import_fail(ds_ctx *ctx, int rc, const char *file, const ds_import_info *info)
{
    const char *what = info->err_what ? info->err_what : ds_strerror(rc);
    if (rc == DS_ERR_CRYPTO)
        return ds_ops_fail(ctx, rc, DS_OPS_E_BAD_SIGNATURE,
                           "The file was changed after it was exported; nothing was imported. "
                           "Ask the peer for a new export.",
                           "%s: %s", file, what);
    if (rc == DS_ERR_NOMEM)
        return ds_ops_fail(ctx, rc, DS_OPS_E_NOMEM, NULL, "out of memory");
    return ds_ops_fail(ctx, rc, DS_OPS_E_BAD_FILE,
                       "Nothing was imported.  The file must be written by ds peer export.",
                       "%s: %s (at byte %zu)", file, what, info->err_offset);
}

int op_peer_import(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *file = NULL, *name = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int add, fd = -1, added_peer = 0;
    ds_import_info info;
    ds_import_result res;
    ds_peers_cfg cfg = { 0 };
    replica_ent *e = NULL;
    memset(&res, 0, sizeof res);
    int rc = param_path(ctx, params, "file", &file);
    if (!rc)
        rc = get_flag(ctx, params, "add", &add);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "name", 0, &name);
    const char *why;
    if (!rc && name && ds_peer_name_check(name, &why) != 0)
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                         "the peer name '%.80s' %s", name, why);
    /* Read and verify everything before taking the lock or writing. */
    if (!rc)
        rc = read_all(ctx, file, &buf, &len);
    if (!rc) {
        rc = ds_import_verify(buf, len, &info);
        if (rc)
            rc = import_fail(ctx, rc, file, &info);
    }
    if (!rc) {
        ds_identity self;
        char err[ERRLEN];
        if (ds_peers_identity_load(ctx->home, &self, err, sizeof err) == 0 &&
            strcmp(self.node_id, info.node_id) == 0)
            rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                             "Import files exported by your peers.",
                             "%s was exported by this node itself", file);
        ds_identity_wipe(&self);
    }
    if (!rc)
        rc = take_lock(ctx, &fd);
    if (!rc)
        rc = load_peers(ctx, &cfg);
    if (!rc && !ds_peers_find(&cfg, info.node_id)) {
        if (add != 1)
            rc = ds_ops_fail(ctx, DS_ERR_UNAUTHORIZED, DS_OPS_E_UNKNOWN_PEER,
                             "If you trust it: ds peer add ID --name NAME, then import again "
                             "(or import with --add --name NAME).",
                             "%s is signed by an unknown node %s; nothing was imported", file,
                             info.node_id);
        else {
            rc = ds_peers_upsert(&cfg, info.node_id, name, -1, -1, &added_peer);
            if (rc == DS_ERR_EXISTS)
                rc = ds_ops_fail(ctx, rc, DS_OPS_E_EXISTS, "Choose another name with --name.",
                                 "the name '%s' is already used by another peer", name);
            else if (rc)
                rc = ds_ops_fail(ctx, rc, DS_OPS_E_NOMEM, NULL, "out of memory");
            else   /* added subscribed, as ds peer add does */
                rc = subscribed_limit(ctx, &cfg, "Unsubscribe a peer first: "
                                                 "ds peer add NAME --no-subscribe");
        }
    }
    char isid[DS_PEER_SHORT_ID + 1];
    const ds_peer *signer = rc ? NULL : ds_peers_find(&cfg, info.node_id);
    const char *ilabel = signer ? ds_peer_label(signer, isid) : info.node_id;
    if (!rc) {
        rc = cache_open(ctx, info.node_id, 1, 0, &e);
        if (rc)
            rc = replica_unusable(ctx, rc, ilabel, info.node_id, "opened");
    }
    if (!rc) {
        rc = ds_import_apply_verified(buf, len, info.node_id, e->st, &info, &res);
        if (rc == DS_ERR_CRYPTO || rc == DS_ERR_MALFORMED || rc == DS_ERR_TRUNCATED ||
            rc == DS_ERR_VERSION || rc == DS_ERR_TOOLARGE || rc == DS_ERR_UNAUTHORIZED)
            rc = import_fail(ctx, rc, file, &info);
        else if (rc)
            rc = replica_unusable(ctx, rc, ilabel, info.node_id, "written");
    }
    char when[32];
    uint64_t replica_n = 0;
    const ds_peer *p = NULL;
    if (!rc) {
        ds_ops_iso8601(ctx->now_ms(), 0, when);
        if (ds_peers_set_last_sync(&cfg, info.node_id, when) != 0)
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    if (!rc)
        rc = save_peers(ctx, &cfg);
    if (!rc) {
        p = ds_peers_find(&cfg, info.node_id);
        uint8_t cur[DS_CURSOR_LEN];
        int has = 0;
        char err[ERRLEN] = "";
        if (ds_store_node_count(e->st, &replica_n) != 0 || ds_sync_cursor_get(e->st, cur, &has) != 0)
            rc = ds_ops_fail_store(ctx, DS_ERR_STORE, "reading the peer's replica");
        else if ((rc = ds_replica_meta_write(ctx->home, info.node_id, p->name, when,
                                             replica_n, has ? cur : NULL, err,
                                             sizeof err)))
            rc = cfg_fail(ctx, rc, err);
    }
    ds_peers_unlock(fd);
    if (!rc) {
        char sid[DS_PEER_SHORT_ID + 1];
        msgpack_pack_map(reply, 10);
        ds_pack_cstr(reply, "node_id");
        ds_pack_cstr(reply, info.node_id);
        ds_pack_cstr(reply, "label");
        ds_pack_cstr(reply, ds_peer_label(p, sid));
        ds_pack_cstr(reply, "added_peer");
        ds_pack_bool(reply, added_peer);
        ds_pack_cstr(reply, "full");
        ds_pack_bool(reply, info.full);
        ds_pack_cstr(reply, "pages");
        msgpack_pack_uint64(reply, res.pages);
        ds_pack_cstr(reply, "nodes");
        msgpack_pack_uint64(reply, res.nodes);
        ds_pack_cstr(reply, "inserted");
        msgpack_pack_uint64(reply, res.inserted);
        ds_pack_cstr(reply, "cursor_advanced");
        ds_pack_bool(reply, res.cursor_advanced);
        ds_pack_cstr(reply, "replica_nodes");
        msgpack_pack_uint64(reply, replica_n);
        ds_pack_cstr(reply, "last_sync");
        ds_pack_cstr(reply, when);
    }
    ds_peers_cfg_free(&cfg);
    free(buf);
    free(file);
    free(name);
    return rc;
}
