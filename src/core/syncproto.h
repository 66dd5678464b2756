/*
 * syncproto.h - the sync protocol's session state machines, sans-IO.
 *
 * One sync is one bidirectional QUIC stream (or any ordered byte stream):
 * the subscriber (client) sends one SYNC_REQUEST frame carrying its
 * cursor; the publisher (server) answers with SYNC_RESPONSE frames, one
 * page each, until a page says has_more = false, then finishes the stream;
 * or it answers with one ERROR frame and finishes.  The subscriber applies
 * each page (nodes + new cursor) in one store transaction as it arrives,
 * so an interrupted sync resumes from the last applied page and never
 * duplicates.  Frames are core/frame.h frames; messages are core/sync.h
 * messages.  See docs/protocol.md.
 *
 * Both machines are driven the ngtcp2 way, so tests connect them buffer to
 * buffer with a fake clock:  feed received bytes with *_recv(bytes, now);
 * pull bytes to send with *_send(out, now); arm a timer for *_expiry();
 * call *_handle_expiry(now) when it fires.  They never touch sockets,
 * clocks or randomness.  The publisher reads its store and the subscriber
 * writes its replica (LMDB is the one I/O they do, as the store's job).
 */
#ifndef DS_SYNCPROTO_H
#define DS_SYNCPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "core/sync.h"
#include "core/util.h"

#define DS_SYNC_ALPN "ds-sync/1"
#define DS_SYNC_MAX_FRAME (16u << 20)          /* hard limit, both directions */
#define DS_SYNC_MAX_REQUEST (64u << 10)        /* publisher: largest request frame accepted */
#define DS_SYNC_DEFAULT_TIMEOUT_MS 15000       /* no progress for this long: fail */
#define DS_SYNC_APPLY_BATCH_NODES 2000         /* subscriber: nodes per replica transaction, at most */

typedef enum {
    DS_SYNCS_RUNNING = 0,
    DS_SYNCS_DONE,          /* completed (subscriber: all pages applied) */
    DS_SYNCS_FAILED,        /* see err / code / message */
} ds_sync_state;

/* ---- publisher ----------------------------------------------------------- */

typedef struct ds_sync_server ds_sync_server;

typedef struct ds_sync_server_cfg {
    ds_store *store;                 /* the publisher's local store */
    const ds_share_set *share;       /* what may leave the machine */
    ds_cursor_seal *seal;            /* seals the cursors (its nonce advances) */
    /* The caller's decision about the authenticated peer: */
    int authorized;                  /* peer is known with publish = true */
    int rate_limited;                /* too many concurrent syncs */
    /* Why the publisher cannot serve (its share set or store could not be
     * loaded; store, share and seal may then be NULL), or NULL: answered with
     * ERROR Internal "Publisher cannot serve now: <why>". */
    const char *unavailable;
    const char *peer_id;             /* 64 hex, for the NotAuthorized message */
    uint32_t page_nodes;             /* 0: DS_SYNC_PAGE_NODES */
    uint32_t page_bytes;             /* 0: DS_SYNC_PAGE_BYTES */
    uint32_t timeout_ms;             /* 0: DS_SYNC_DEFAULT_TIMEOUT_MS */
} ds_sync_server_cfg;

/* Returns 0 or DS_ERR_NOMEM / DS_ERR_INVALID.  |cfg|'s pointers must
 * outlive the machine. */
int ds_sync_server_new(ds_sync_server **out, const ds_sync_server_cfg *cfg, int64_t now_ms);
void ds_sync_server_free(ds_sync_server *s);
/* Feeds stream bytes (|fin|: the peer finished its side).  The first
 * frame (or framing error, or end of stream) is answered with ERROR
 * NotAuthorized when !cfg->authorized, Internal when cfg->unavailable,
 * RateLimited when cfg->rate_limited; then a malformed, oversized (above
 * DS_SYNC_MAX_REQUEST) or unexpected frame, or any byte after the
 * request, queues an ERROR reply (BadRequest / UnsupportedVersion) and
 * the machine is FAILED once it is sent.  Input after that is ignored.
 * Returns 0, or DS_ERR_NOMEM (the machine is then FAILED). */
int ds_sync_server_recv(ds_sync_server *s, const uint8_t *data, size_t len, int fin, int64_t now_ms);
/* Appends bytes to send to |out| (at most about |budget| bytes, at least
 * one whole frame when one is ready) and sets *fin (once) when the
 * stream should be finished after them.  Pages are built lazily here, so
 * the caller's flow control (calling send only when the stream can take
 * more) bounds memory.  Returns 0 or DS_ERR_NOMEM (nothing lost: call
 * again later).  A store read error becomes an ERROR Internal reply. */
int ds_sync_server_send(ds_sync_server *s, ds_buf *out, size_t budget, int *fin, int64_t now_ms);
/* Ends a sync being served (its request accepted) with ERROR Internal
 * |message| instead of further pages, sent by the next send(): what the
 * publisher shares shrank since the stream began, and no page may be
 * built from the old share set.  Returns 1 when it did, 0 when the
 * machine was not serving (an ERROR or the last page is already due). */
int ds_sync_server_abort(ds_sync_server *s, const char *message);
/* Absolute time (ms) of the next timeout, or INT64_MAX. */
int64_t ds_sync_server_expiry(const ds_sync_server *s);
void ds_sync_server_handle_expiry(ds_sync_server *s, int64_t now_ms);
ds_sync_state ds_sync_server_state(const ds_sync_server *s);
/* Nodes, pages and bytes sent so far (any pointer may be NULL). */
void ds_sync_server_counts(const ds_sync_server *s, uint64_t *nodes, uint64_t *pages, uint64_t *bytes);
/* After FAILED: the DS_ERR_* (DS_ERR_PROTO for BadRequest,
 * DS_ERR_VERSION, DS_ERR_UNAUTHORIZED, DS_ERR_BUSY, DS_ERR_TIMEOUT, a
 * store error), the ERROR code sent ("" if none) and a message for the
 * log.  0 with "" / "" while not failed.  The strings live as long as |s|. */
int ds_sync_server_error(const ds_sync_server *s, const char **code, const char **message);

/* ---- subscriber ---------------------------------------------------------- */

typedef struct ds_sync_client ds_sync_client;

typedef struct ds_sync_client_cfg {
    ds_store *replica;               /* the peer's replica (written page by page) */
    int full;                        /* ignore the stored cursor (ds peer sync --full) */
    uint32_t page_nodes, page_bytes; /* asked of the publisher; 0 = its default */
    uint32_t timeout_ms;             /* 0: DS_SYNC_DEFAULT_TIMEOUT_MS */
    /* Replica transactions: pages are decoded and validated on arrival
     * and applied in batches of whole pages (ds_sync_apply_pages: their
     * nodes plus the last page's cursor), of at most batch_nodes nodes
     * (0: DS_SYNC_APPLY_BATCH_NODES; also 64 pages, 16 MiB of frames).
     * hold_ms 0: the pages completed by one recv() are applied before it
     * returns.  hold_ms > 0: pages may wait up to hold_ms (expiry()
     * includes it) for more to fill the batch: one commit per batch
     * instead of one per page.  The last page, an error or the end of
     * the stream applies what is pending at once. */
    uint32_t batch_nodes;
    uint32_t hold_ms;
    /* 1: a second thread applies each batch while this one receives and
     * decodes the next (at most three batches in flight: one commits,
     * the next is tokenized meanwhile, a third waits decoded; the replica
     * is written only by that thread meanwhile).  Results are the same as
     * with 0: batches go in in order, progress counts a batch once it is
     * applied, and recv() returns only after the last batch is applied
     * once the stream is over (DONE or FAILED).  If the thread cannot be
     * started, batches are applied on the caller's thread. */
    int apply_thread;
} ds_sync_client_cfg;

typedef struct ds_sync_progress {
    uint64_t pages, nodes_received, nodes_new, bytes;
} ds_sync_progress;

/* Reads the replica's stored cursor (unless cfg->full).  Returns 0,
 * DS_ERR_INVALID (no replica), DS_ERR_NOMEM or a store error.
 * |cfg->replica| must outlive the machine. */
int ds_sync_client_new(ds_sync_client **out, const ds_sync_client_cfg *cfg, int64_t now_ms);
void ds_sync_client_free(ds_sync_client *c);
/* Feeds stream bytes from the publisher (|fin|: it finished its side).
 * Every complete page is fully decoded and validated on arrival, and
 * applied to the replica as cfg->batch_nodes / hold_ms say (at once when
 * hold_ms is 0).  Progress counts applied pages only.  DONE once the last page (has_more = false) is applied
 * and |fin| follows; FAILED on an ERROR frame, a protocol violation
 * (bytes before the request was sent or after the last page, FIN before
 * the last page, a bad or oversized frame), another version or a store
 * error; pages already applied stay applied.  Input after DONE/FAILED is
 * ignored.  Returns 0, or DS_ERR_NOMEM (the machine is then FAILED). */
int ds_sync_client_recv(ds_sync_client *c, const uint8_t *data, size_t len, int fin, int64_t now_ms);
/* First call: appends the SYNC_REQUEST frame.  Later: nothing, and *fin
 * set once after the last page was applied or the machine ended.
 * Returns 0 or DS_ERR_NOMEM. */
int ds_sync_client_send(ds_sync_client *c, ds_buf *out, size_t budget, int *fin, int64_t now_ms);
int64_t ds_sync_client_expiry(const ds_sync_client *c);
/* Applies held pages whose hold_ms ran out (a store error FAILs the
 * machine), or fails the machine with DS_ERR_TIMEOUT after timeout_ms
 * without progress. */
void ds_sync_client_handle_expiry(ds_sync_client *c, int64_t now_ms);
/* Stops the machine where it is (a user's Ctrl-C): pages held for a
 * batch are dropped, the batches already handed to the apply thread are
 * written and counted in the progress, so that it says exactly what the
 * replica got; a running machine becomes FAILED with DS_ERR_CANCELLED.
 * Any later input is ignored. */
void ds_sync_client_stop(ds_sync_client *c);
ds_sync_state ds_sync_client_state(const ds_sync_client *c);
void ds_sync_client_progress(const ds_sync_client *c, ds_sync_progress *p);
/* After FAILED: the DS_ERR_* (DS_ERR_UNAUTHORIZED, DS_ERR_BUSY for
 * RateLimited, DS_ERR_VERSION, DS_ERR_PROTO, DS_ERR_TIMEOUT, store errors),
 * the peer's ERROR code ("" if none) and a message for the user. */
int ds_sync_client_error(const ds_sync_client *c, const char **code, const char **message);

#endif
