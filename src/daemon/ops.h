/*
 * ops.h - the request dispatch table shared by the CLI and the daemon.
 *
 * Every user-visible operation (add, note, query, show, related, stats,
 * reset) is one handler that takes a MessagePack map of parameters and
 * packs a MessagePack map reply.  The CLI calls ds_ops_call() in process;
 * the daemon will frame the same requests and replies over its Unix
 * socket, so handlers never print, never read the CLI's state and take
 * paths either absolute or relative to a "cwd" parameter.
 *
 * A failed request still produces a reply: {error: {code, message, hint}}
 * where code is a stable machine-readable word (see DS_OPS_E_*), message
 * a sentence naming the problem and hint (string or nil) what to do.
 * Handlers record the failure with ds_ops_fail(); ds_ops_call() discards
 * whatever the handler had packed and packs the error map instead, so a
 * reply is never half a success.
 *
 * The context carries the home directory, the lazily opened local store
 * and the injected sources of time and randomness: handlers never read
 * the clock or draw random bytes themselves, which keeps them testable.
 */
#ifndef DS_OPS_H
#define DS_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#include "ds/error.h"
#include "ds/node.h"
#include "ds/store.h"

/* Milliseconds since the Unix epoch (UTC). */
typedef int64_t (*ds_clock_fn)(void);
/* Fills |buf| with |len| random bytes; cannot fail (randombytes_buf). */
typedef void (*ds_random_fn)(void *buf, size_t len);

/* Stable error codes of the reply's error.code. */
#define DS_OPS_E_INVALID "invalid_argument"  /* bad parameter (user input) */
#define DS_OPS_E_EMPTY_QUERY "empty_query"   /* nothing searchable in a query */
#define DS_OPS_E_UNKNOWN_OP "unknown_request"
#define DS_OPS_E_NO_STORE "no_store"         /* nothing stored yet */
#define DS_OPS_E_NOT_FOUND "not_found"
#define DS_OPS_E_AMBIGUOUS "ambiguous"
#define DS_OPS_E_IO "io_error"
#define DS_OPS_E_BINARY "not_text"
#define DS_OPS_E_TOO_LARGE "too_large"
#define DS_OPS_E_STORE "store_error"
#define DS_OPS_E_NOMEM "out_of_memory"
#define DS_OPS_E_INTERNAL "internal"
/* Peer requests (ops_peer.c). */
#define DS_OPS_E_EXISTS "already_exists"     /* identity exists, name taken */
#define DS_OPS_E_NO_IDENTITY "no_identity"   /* ds peer init first */
#define DS_OPS_E_UNKNOWN_PEER "unknown_peer" /* not in peers.json */
#define DS_OPS_E_BAD_CONFIG "bad_config"     /* malformed share.json / peers.json / identity.key */
#define DS_OPS_E_BAD_FILE "bad_file"         /* damaged or not an export file */
#define DS_OPS_E_BAD_SIGNATURE "bad_signature"
#define DS_OPS_E_BUSY "busy"                 /* peers/.lock held too long */

#define DS_OPS_MAX_LIMIT 1000                 /* largest accepted "limit" */
#define DS_OPS_MAX_FILE (64u * 1024 * 1024)   /* largest file "add" reads */
#define DS_OPS_MAX_NAME 256                   /* namespace and tag length */

typedef struct ds_op_error {
    int err;             /* DS_ERR_* of the failure, 0 if none */
    char code[32];       /* DS_OPS_E_* */
    char message[1024];
    char hint[512];      /* "" when there is none */
} ds_op_error;

/* A store a fan-out read left out: a peer replica that could not be
 * opened or read.  The request still succeeds; handlers that read over
 * replicas add the warnings to their reply (ds_ops_pack_warnings). */
typedef struct ds_op_warning {
    char code[32];       /* DS_OPS_E_* */
    char peer[72];       /* the peer's label (name or short id) */
    char node_id[72];
    char path[1024];     /* the replica's directory (peers/<id>/db) */
    char message[1024];
    char hint[512];
} ds_op_warning;

struct ds_ingestd;
struct ds_daemon;

typedef struct ds_ctx {
    char *home;              /* home directory (absolute), owned */
    ds_store *store;         /* local store, opened on first use, owned */
    ds_clock_fn now_ms;
    ds_random_fn random_buf;
    ds_op_error error;       /* details of the last failed request */
    /* Set only inside the daemon: the running services.  Handlers that
     * need them (status, scan, queue) fall back to in-process work or say
     * that the daemon is not running when they are NULL. */
    struct ds_daemon *daemon;
    struct ds_ingestd *ingestd;
    /* Peer replicas opened so far (ops_peer.c): each LMDB environment is
     * opened once per process and closed before its replica is deleted. */
    struct ds_replica_cache *replicas;
    /* Set only inside the daemon: the network sync service (netsync.h). */
    struct ds_netsync *netsync;
    /* Warnings of the current request (cleared by ds_ops_call). */
    ds_op_warning *warnings;
    size_t nwarnings;
} ds_ctx;

/* Initializes |ctx| for home directory |home| (copied; nothing is created
 * or opened yet).  Returns 0, DS_ERR_INVALID (NULL argument) or
 * DS_ERR_NOMEM. */
int ds_ctx_init(ds_ctx *ctx, const char *home, ds_clock_fn now_ms, ds_random_fn random_buf);
/* Closes the store and frees what |ctx| owns; safe after a failed init. */
void ds_ctx_free(ds_ctx *ctx);

/* The local store, opened on first use.  With |create| the home and the
 * store are created when missing; without it a missing store fails with
 * DS_ERR_NOTFOUND and the "no_store" error, creating nothing.  Errors are
 * recorded in ctx->error. */
int ds_ctx_store(ds_ctx *ctx, int create, ds_store **out);

typedef int (*ds_op_fn)(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);

typedef struct ds_op {
    const char *name;
    ds_op_fn fn;
} ds_op;

/* The handler called |name|, or NULL. */
const ds_op *ds_ops_find(const char *name);

/* Runs request |name| with |params| (a map, or NULL / nil for none) and
 * appends exactly one MessagePack map to |reply| (initialized by the
 * caller): the handler's reply on success, {error: {...}} on failure.
 * Returns 0 on success, else the negative DS_ERR_* of the failure (the
 * error reply is still written, and ctx->error holds its parts), or
 * DS_ERR_NOMEM when not even the error reply could be written. */
int ds_ops_call(ds_ctx *ctx, const char *name, const msgpack_object *params,
                msgpack_sbuffer *reply);

/* ---- Handlers (one per request) ---------------------------------------
 * add     {files: [path], cwd?, namespace?}
 *         -> {files: [{path, source, status, nodes, replaced, error?}], failed}
 *            status: added | updated | unchanged | empty | error
 * note    {text, tags?: [str], namespace?, project?, cwd?}
 *         -> {id, source, project, namespace, timestamp}
 * query   {text, limit?, namespace?, project?, cwd?, local?, peer?}
 *         -> {results: [hit], warnings: [warning]}
 * show    {limit?, namespace?, project?, cwd?, local?, peer?} -> {results: [node]}
 *         (the local store, or with peer that peer's replica)
 * related {id (prefix), limit?}  -> {origin: node, results: [hit], warnings: [warning]}
 *         (id: of a node in any store, local first; origin.store says which)
 * stats   {}  -> {home, file_bytes, nodes, by_type: {session, file, note},
 *                 term_count, total_len, last_seq, epoch, schema, files, stores,
 *                 peers: [peer (see peer_list)]}
 * reset   {}  -> {existed, removed, epoch?}
 * A node is {id, content, source, source_type, project, namespace,
 * timestamp (ms), chunk_index, metadata, store}; a hit adds score (0..1).
 * A warning is {code, peer, node_id, path, message, hint}: a peer replica
 * that could not be opened or read and was left out of the search. */
int op_add(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_note(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_query(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_show(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_related(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_stats(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_reset(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
/* status  {} -> {running, version, protocol, home, store: bool,
 *                 ingest: {see ds_ingestd_status} | nil, nodes?, by_type?,
 *                 and in the daemon: pid, started_at, uptime_s, requests,
 *                 config (path | nil), log (path | nil), socket}  (ops_daemon.c)
 *         In process (ctx->daemon NULL) running is false; nodes/by_type
 *         are present when a store exists.
 * scan    {project?, cwd?} -> {sessions, nodes, skipped, failed}  (ops_ingest.c)
 * queue   {action: status|pending|failed|retry|clear, id?, all?}
 *         -> {counts: {pending, processing, done, failed}, jobs: [job], changed} */
int op_status(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_scan(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_queue(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
/* Peer requests (ops_peer.c; see docs/peers.md).  Every id parameter
 * takes a NodeId or a peer name where a known peer is meant.
 * peer_init     {force?}            -> {node_id, path, replaced}
 * peer_id       {}                  -> {node_id}
 * peer_share    {path, cwd?}        -> {path, added}
 * peer_unshare  {path, cwd?}        -> {path}
 * peer_shared   {}                  -> {projects: [path]}
 * peer_add      {id, name?, subscribe?, publish?}   (0/1; absent = keep)
 *               -> {node_id, name, label, created, subscribe, publish, changed: [str]}
 * peer_remove   {id}                -> {node_id, name, label, replica_deleted}
 * peer_list     {}                  -> {node_id, peers: [peer]}
 * peer_export   {file, full?, cwd?} -> {file, node_id, full, nodes, pages, bytes, shared}
 * peer_import   {file, add?, name?, cwd?}
 *               -> {node_id, label, added_peer, pages, nodes, inserted,
 *                   cursor_advanced, replica_nodes, full}
 * A peer is {node_id, name, label, subscribe, publish, last_sync, nodes, replica,
 * replica_error}: nodes is nil and replica_error a sentence (else nil)
 * when the replica exists but cannot be opened or read. */
int op_peer_init(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_id(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_share(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_unshare(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_shared(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_add(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_remove(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_list(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_export(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_import(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
/* Network sync (ops_netsync.c; see docs/peers.md).
 * peer_sync        {id?, full?}  -> in the daemon: {job, instance, done: false,
 *                                   peers: [run]} (poll peer_sync_status); in
 *                                   process the sync runs to the end: {job,
 *                                   instance, done: true, peers: [run]}
 * peer_sync_status {job, instance?} -> {job, instance, done, stopped_by,
 *                                   peers: [run]}; NotFound "was interrupted"
 *                                   when |instance| is not the running
 *                                   daemon's (it stopped)
 * peer_sync_cancel {job, instance?, cause?} -> as peer_sync_status, once the
 *                                   job is stopped (ds_netsync_job_stop; a
 *                                   finished job is left as it is); cause:
 *                                   what stopped it, such as SIGINT
 * peer_ticket      {}            -> {node_id, ticket, addrs: [str], listening}
 * A run is {node_id, label, state, full, pages, nodes_received, nodes_new,
 * bytes, replica_nodes, elapsed_ms, addr, path, tried, code, error, reason};
 * state "skipped" (reason set) is a peer without an address passed over by
 * a sync of every peer. */
int op_peer_sync(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_sync_status(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_sync_cancel(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
int op_peer_ticket(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply);
/* The "sync" part of "status" inside the daemon (ctx->netsync set):
 * {listening, addrs: [str], why, interval_s, next_sync_in_s, retries,
 * next_retry_in_s, jobs_active}; why (null while listening) says why no
 * sync is accepted, next_*_in_s are null when nothing is scheduled.
 * Never fails the status: a problem reading peers.json becomes |why|. */
void ds_ops_pack_sync_status(ds_ctx *ctx, msgpack_packer *pk);

/* ---- Helpers for handlers (ops.c) ------------------------------------- */

/* Records a failure in ctx->error and returns |err| (negative).  |hint|
 * may be NULL. */
int ds_ops_fail(ds_ctx *ctx, int err, const char *code, const char *hint,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Records a store-layer error |err| met while doing |what|. */
int ds_ops_fail_store(ds_ctx *ctx, int err, const char *what);

/* The value under |key| in map |params|, or NULL (also for nil values
 * and when |params| is not a map). */
const msgpack_object *ds_ops_get(const msgpack_object *params, const char *key);
/* String parameter |key| as a malloc'd NUL-terminated copy in *out (NULL
 * when absent and not |required|).  Fails with "invalid_argument" when it
 * is not a string, holds a NUL byte or invalid UTF-8. */
int ds_ops_get_str(ds_ctx *ctx, const msgpack_object *params, const char *key,
                   int required, char **out);
/* A name-like parameter (namespace, tag): like ds_ops_get_str, also
 * rejecting "", control characters and more than DS_OPS_MAX_NAME bytes;
 * |def| (may be NULL) is copied when absent. */
int ds_ops_get_name(ds_ctx *ctx, const msgpack_object *params, const char *key,
                    const char *def, char **out);
/* "limit": integer 1..DS_OPS_MAX_LIMIT, |def| when absent. */
int ds_ops_get_limit(ds_ctx *ctx, const msgpack_object *params, size_t def, size_t *out);
/* A project filter: canonical when the path exists, else made absolute
 * against "cwd" as given (a peer's project need not exist here).  *out is
 * NULL when no "project" parameter was given. */
int ds_ops_get_project_filter(ds_ctx *ctx, const msgpack_object *params, char **out);

/* The stores a search runs over, in order, with their labels ("local"
 * first; peer replicas later).  Fails with "no_store" when there is none.
 * A replica that cannot be opened is left out with a warning
 * (ctx->warnings); the local store's failure is an error. */
#define DS_OPS_MAX_STORES 64
/* Peers that may be subscribed (each has a replica, kept open in the
 * replica cache and searched beside the local store). */
#define DS_OPS_MAX_SUBSCRIBED (DS_OPS_MAX_STORES - 1)
int ds_ops_stores(ds_ctx *ctx, ds_store **stores, const char **labels, size_t *n);
/* Like ds_ops_stores, narrowed by the request's "local" (true: the local
 * store only) or "peer" (a peer's name or NodeId: that replica only; one
 * that cannot be opened is then an error naming it). */
int ds_ops_stores_select(ds_ctx *ctx, const msgpack_object *params, ds_store **stores,
                         const char **labels, size_t *n);
/* Appends the replica of every subscribed peer that has one, labelled by
 * the peer's name or short id (ops_peer.c); *n counts what was added. */
int ds_ops_peer_stores(ds_ctx *ctx, ds_store **stores, const char **labels, size_t max,
                       size_t *n);
/* The number of known peers (peers.json; 0 without the file). */
int ds_ops_peer_count(ds_ctx *ctx, size_t *n);
/* Packs the per-peer statistics of "stats": [{node_id, label, nodes,
 * last_sync, subscribe, publish}] (ops_peer.c). */
int ds_ops_pack_peer_stats(ds_ctx *ctx, msgpack_packer *pk);
/* The replica of peer |id| from the context's cache (opened once per
 * process, and again once its data file was moved away or replaced on
 * disk), created with |create|, for the sync of that peer (the one
 * caller: no other sync of it may be running); |label| names the peer in
 * errors.  DS_ERR_NOTFOUND when missing and not |create|; other errors
 * are recorded in ctx->error, a damaged replica's with the repair as hint
 * (ops_peer.c). */
int ds_ops_replica(ds_ctx *ctx, const char *id, const char *label, int create, ds_store **out);
/* Closes the replicas the context opened (ds_ctx_free calls it). */
void ds_ops_replicas_free(ds_ctx *ctx);
/* The known peer given by name, NodeId or NodeId prefix (at least 8 hex
 * digits, as labels show) in |raw| (ds_peers_resolve), or the request's
 * error: unknown, or ambiguous (naming the matches). */
struct ds_peers_cfg;
struct ds_peer;
int ds_ops_find_peer(ds_ctx *ctx, const struct ds_peers_cfg *cfg, const char *raw,
                     const struct ds_peer **out);
/* Records that reading store |st| (a replica from ds_ops_stores, labelled
 * |label|) failed with |err| and that it was left out: a warning naming
 * the peer and its path (ops_peer.c). */
void ds_ops_replica_read_failed(ds_ctx *ctx, ds_store *st, const char *label, int err);
/* Appends a warning to ctx->warnings (at most DS_OPS_MAX_STORES are
 * kept; none on allocation failure).  |hint| may be NULL. */
void ds_ops_warn(ds_ctx *ctx, const char *code, const char *peer, const char *node_id,
                 const char *path, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* Packs ctx->warnings as an array of {code, peer, node_id, path, message,
 * hint}. */
void ds_ops_pack_warnings(ds_ctx *ctx, msgpack_packer *pk);

/* Packing helpers (the packer's buffer records allocation failure). */
void ds_pack_cstr(msgpack_packer *pk, const char *s);      /* nil for NULL */
void ds_pack_bool(msgpack_packer *pk, int b);
void ds_pack_strn(msgpack_packer *pk, const char *s, size_t n);
void ds_pack_node(msgpack_packer *pk, const ds_node *n, const double *score,
                  const char *store_label);
/* Formats |ms| as ISO 8601 UTC: "2024-05-01T10:00:00Z", or with
 * milliseconds ("...00.123Z") when |with_ms|. */
void ds_ops_iso8601(int64_t ms, int with_ms, char out[32]);

#endif
