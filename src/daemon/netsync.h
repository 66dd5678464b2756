/*
 * netsync.h - live network sync (P2P spec, "Sync Protocol" and
 * "Integration with Daemon"): the daemon's sync service on its libuv loop.
 *
 * Publisher side: a QUIC endpoint (ALPN ds-sync/1) bound to the listen
 * addresses.  Any NodeId may complete the TLS handshake, so that an
 * unknown or unauthorized dialer receives the spec's NotAuthorized ERROR
 * text instead of a bare TLS failure; authorization (peers.json, publish
 * = true) and the per-peer limit of concurrent syncs (RateLimited) are
 * decided per stream and handed to the ds_sync_server machine
 * (core/syncproto.h), one per incoming stream.
 *
 * Subscriber side: a sync "job" syncs one or more peers in turn.  For
 * each peer it dials the peer's addresses (peers.json "addrs") one after
 * another within a bounded total time, opens one stream and runs a
 * ds_sync_client that writes each page (nodes + cursor, one LMDB
 * transaction) into the peer's replica, then records the outcome in
 * peers/<id>/meta.json and peers.json (last_sync, last_result, last_addr,
 * last_path).  Periodic syncs and retries with exponential backoff are
 * jobs started by timers.
 *
 * The same code runs in the daemon (ds_netsync_new on the daemon loop)
 * and in process for `ds peer sync` without a daemon (ds_netsync_run:
 * a private loop until the job is done).  Everything runs on the loop
 * thread.  Functions return 0 or a negative DS_ERR_*.
 */
#ifndef DS_NETSYNC_H
#define DS_NETSYNC_H

#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include <uv.h>

#include "core/identity.h"
#include "daemon/ops.h"
#include "daemon/peers.h"

#define DS_NETSYNC_MAX_LISTEN 4
#define DS_NETSYNC_DIAL_TIMEOUT_MS 10000      /* all of a peer's addresses */
#define DS_NETSYNC_KEEP_ALIVE_MS 1000         /* a subscriber pings a silent publisher */
#define DS_NETSYNC_RETRY_BASE_MS 30000        /* first retry of a failed periodic sync */
#define DS_NETSYNC_RETRY_MAX_MS 3600000
#define DS_NETSYNC_MAX_PEERS 64               /* peers in one job (>= DS_OPS_MAX_SUBSCRIBED) */

typedef struct ds_netsync ds_netsync;

typedef struct ds_netsync_opts {
    /* Addresses to accept syncs on ("HOST:PORT", "[v6]:PORT"); none: do
     * not listen (the in-process client). */
    const char *listen[DS_NETSYNC_MAX_LISTEN];
    size_t nlisten;
    /* Listen even when no peer has publish = true (--listen was given). */
    int listen_always;
    int sync_at_start;              /* a job for every subscribed peer at start */
    uint32_t interval_s;            /* periodic sync; 0 = none */
    uint32_t max_concurrent;        /* incoming syncs per peer; 0 = 4 */
    uint32_t connect_timeout_ms;    /* 0 = DS_NETSYNC_DIAL_TIMEOUT_MS */
} ds_netsync_opts;

/* One peer of a job, as reported to progress callbacks and packed by
 * ds_netsync_job_pack.  SKIPPED: a job of every subscribed peer (flag
 * |skip_addrless|) passed over a peer that has no address; nothing is
 * recorded for it (its last_result stays as it was). */
typedef enum {
    DS_NETSYNC_PENDING = 0, DS_NETSYNC_DIALING, DS_NETSYNC_SYNCING, DS_NETSYNC_DONE,
    DS_NETSYNC_FAILED, DS_NETSYNC_SKIPPED
} ds_netsync_state;

typedef struct ds_netsync_peer {
    char id[DS_NODE_ID_HEX + 1];
    char label[DS_PEER_NAME_MAX + 1];
    ds_netsync_state state;
    int full;
    uint64_t pages, nodes_received, nodes_new, bytes, replica_nodes;
    int64_t started_ms, finished_ms;  /* monotonic */
    char addr[DS_ADDR_MAX];           /* the address that answered */
    const char *path;                 /* "direct" / "relay" / NULL */
    char tried[1024];                 /* addresses tried, ", "-separated */
    int err;                          /* DS_ERR_* when FAILED */
    char code[32];                    /* the publisher's ERROR code, "" if none */
    char message[1024];               /* why it failed or was skipped, for the user */
} ds_netsync_peer;

/* Called on the loop thread whenever a peer of a job makes progress
 * (page applied, state change).  Set by the CLI for in-process runs. */
typedef void (*ds_netsync_progress_fn)(const ds_netsync_peer *p, void *ud);

/* Creates the service on |loop| for the home of |ctx| (which must outlive
 * it; the daemon's context).  Listening starts once the identity exists
 * and either |o|->listen_always or some peer has publish = true; call
 * ds_netsync_refresh after peers.json or identity.key change.  Returns 0,
 * DS_ERR_IO (a listen address cannot be bound: |err| says which),
 * DS_ERR_INVALID (bad listen address), DS_ERR_NOMEM. */
int ds_netsync_new(ds_netsync **out, uv_loop_t *loop, ds_ctx *ctx, const ds_netsync_opts *o,
                   char *err, size_t errlen);
/* Re-reads identity and peers: starts listening when now needed. */
int ds_netsync_refresh(ds_netsync *ns, char *err, size_t errlen);
/* Stops: closes connections, endpoints and timers, then calls |done|
 * (may be NULL) and frees |ns|. */
void ds_netsync_close(ds_netsync *ns, void (*done)(void *ud), void *ud);

/* The addresses actually bound (for tickets); *n receives the count. */
void ds_netsync_bound(ds_netsync *ns, char out[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX], size_t *n);
/* The configured listen addresses (canonical "HOST:PORT"): what the
 * service binds once listening is wanted, bound or not; *n receives the
 * count (0: it never listens, e.g. the in-process client, or a daemon
 * whose default address could not be bound at start).  *always (may be
 * NULL) receives whether it listens even when no peer has publish on
 * (--listen or sync.listen was given). */
void ds_netsync_listen_addrs(const ds_netsync *ns, char out[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX],
                             size_t *n, int *always);

/* What the service is doing, for "status". */
typedef struct ds_netsync_info {
    uint32_t interval_s;        /* periodic sync of every subscribed peer; 0 = none */
    int64_t next_periodic_ms;   /* ms until the next periodic sync; -1 = none */
    size_t retries;             /* peers whose failed sync waits for a retry */
    int64_t next_retry_ms;      /* ms until the first of those retries; -1 = none */
    size_t jobs_active;         /* sync jobs started and not finished */
} ds_netsync_info;

void ds_netsync_info_get(ds_netsync *ns, ds_netsync_info *out);

/* Starts a job syncing the peers |ids| (NodeIds, |n| <= DS_NETSYNC_MAX_PEERS)
 * in turn; *job receives its number.  With |skip_addrless| (a sync of every
 * subscribed peer) a peer without an address is SKIPPED; without it (one
 * peer asked for by name) that peer FAILED, saying how to add an address.
 * DS_ERR_INVALID / DS_ERR_NOMEM. */
int ds_netsync_sync(ds_netsync *ns, const char (*ids)[DS_NODE_ID_HEX + 1], size_t n, int full,
                    int skip_addrless, uint64_t *job);
/* Packs the job's status {job, instance, done, stopped_by, peers: [peer]}
 * (see docs/peers.md);
 * DS_ERR_NOTFOUND when the job is unknown (finished jobs are kept for a
 * while: the last 16). */
int ds_netsync_job_pack(ds_netsync *ns, uint64_t job, msgpack_packer *pk);
/* Stops job |job| now (a user's Ctrl-C, peer_sync_cancel): the peer being
 * synced or dialed and those not started yet end "failed", code
 * "interrupted", message |why| (for the one syncing, with the nodes kept
 * so far); results are recorded as any failed attempt, and what was
 * written stays, with its cursor.  The job's "stopped_by" becomes |cause|
 * (at most 15 characters).  A finished job is left as it is.
 * DS_ERR_NOTFOUND when the job is unknown. */
int ds_netsync_job_stop(ds_netsync *ns, uint64_t job, const char *cause, const char *why);
/* Aborts any sync running against peer |id| (its replica is about to be
 * closed or deleted); the peer's result says "the sync with LABEL
 * stopped: |why|". */
void ds_netsync_cancel_peer(ds_netsync *ns, const char *id, const char *why);
/* This service's instance number (random, never 0), packed with every job
 * as "instance": job numbers restart with each daemon, so a client polling
 * a job passes it back to tell a restarted daemon's job from its own. */
uint32_t ds_netsync_instance(const ds_netsync *ns);

/* The signals that stop a sync cleanly (SIGINT, SIGTERM, SIGHUP): in
 * process (ds_netsync_run), and in the CLI waiting for a daemon's job. */
#define DS_NETSYNC_NSTOP_SIGNALS 3
extern const int ds_netsync_stop_signals[DS_NETSYNC_NSTOP_SIGNALS];
/* "SIGINT", "SIGTERM" or "SIGHUP" for those; "a signal" otherwise. */
const char *ds_netsync_signal_name(int signo);

/* In process (no daemon): runs one job (as ds_netsync_sync) on a private
 * loop until it is done and packs its status like ds_netsync_job_pack.
 * SIGINT, SIGTERM or SIGHUP meanwhile stops the job (ds_netsync_job_stop,
 * "stopped_by" the signal's name); a second one has its default action.
 * |progress| may be NULL. */
int ds_netsync_run(ds_ctx *ctx, const char (*ids)[DS_NODE_ID_HEX + 1], size_t n, int full,
                   int skip_addrless, const ds_netsync_opts *o, ds_netsync_progress_fn progress,
                   void *ud, msgpack_packer *pk);

/* The progress callback used by in-process runs started through the
 * dispatch table (op_peer_sync): the CLI sets it before calling. */
void ds_netsync_set_progress(ds_netsync_progress_fn fn, void *ud);

/* The options from the configuration (ds_config) and `ds start` flags:
 * the daemon fills them (daemon.c). */
typedef struct ds_netsync_start_flags {
    const char *listen[DS_NETSYNC_MAX_LISTEN];
    size_t nlisten;
    int sync_at_start;
    uint32_t interval_s;
} ds_netsync_start_flags;

#endif
