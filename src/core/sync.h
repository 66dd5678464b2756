/*
 * sync.h - the publisher/subscriber sync engine (P2P spec, "Sync
 * Protocol"), sans-IO: it turns a store, a share set and a request into
 * response pages, and applies response pages to a peer replica.  The same
 * engine runs over a file (`ds peer export/import`) and over a QUIC
 * stream (`ds peer sync`); only the carrier differs.
 *
 * Messages are MessagePack maps carried in length-prefixed frames
 * (core/frame.h).  The cursor is opaque to the subscriber (sealed by the
 * publisher): it stands for the publisher's store epoch, the last
 * sequence it has scanned and a digest of its share set, so a publisher
 * store that was reset, or a change of what is shared, makes the
 * publisher start over from sequence 0 instead of silently skipping
 * nodes (the subscriber keeps the first copy of every id, so starting
 * over never duplicates).  See docs/protocol.md.
 */
#ifndef DS_SYNC_H
#define DS_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "ds/store.h"
#include "core/util.h"

#define DS_SYNC_VERSION 1
#define DS_CURSOR_LEN 41                    /* 1 + 12 + 12 + 16 */
#define DS_SHARE_DIGEST_LEN 16
#define DS_SYNC_PAGE_NODES 100              /* default page size */
#define DS_SYNC_PAGE_BYTES (1u << 20)       /* default page byte budget */
#define DS_SYNC_SCAN_BUDGET 20000           /* nodes examined per page at most */
#define DS_SYNC_MAX_PAGE_NODES 1000
#define DS_SYNC_MAX_PAGE_BYTES (8u << 20)

/* ---- share set ----------------------------------------------------------- */

typedef struct ds_share_set {
    char **roots;                           /* sorted, deduplicated */
    size_t n;
    uint8_t digest[DS_SHARE_DIGEST_LEN];    /* over the sorted roots */
} ds_share_set;

/* Copies |roots| (canonical absolute paths).  0, DS_ERR_INVALID (a root
 * not absolute) or DS_ERR_NOMEM. */
int ds_share_set_init(ds_share_set *s, const char *const *roots, size_t n);
void ds_share_set_free(ds_share_set *s);
/* 1 if |project| is a shared root or beneath one (path boundaries); an
 * empty project is never shared. */
int ds_share_set_contains(const ds_share_set *s, const char *project);

/* ---- cursor -------------------------------------------------------------- */

/* What a cursor stands for.  On the wire it is sealed (ds_cursor_seal):
 * the subscriber only stores it and sends it back, and learns nothing
 * from it, not even how many nodes the publisher wrote since (its
 * sequence numbers count unshared nodes too). */
typedef struct ds_cursor {
    uint8_t epoch[DS_EPOCH_LEN];
    uint64_t seq;                           /* last sequence scanned */
    uint8_t digest[DS_SHARE_DIGEST_LEN];
} ds_cursor;

#define DS_CURSOR_KEY_LEN 32
#define DS_CURSOR_NONCE_LEN 12

/* The publisher's sealing key and the nonce of the next cursor it seals.
 * The nonce starts random (given by the caller: the core draws no random
 * bytes) and is incremented after each cursor, so no two cursors of one
 * process share one. */
typedef struct ds_cursor_seal {
    uint8_t key[DS_CURSOR_KEY_LEN];
    uint8_t nonce[DS_CURSOR_NONCE_LEN];
} ds_cursor_seal;

/* The key derived from the publisher's identity (|sk|: its libsodium
 * Ed25519 secret key; crypto_kdf from its seed, subkey 2, context
 * "dscursor"), so every process of the node opens the cursors of the
 * others; |nonce| is the first nonce. */
void ds_cursor_seal_init(ds_cursor_seal *s, const uint8_t sk[64],
                         const uint8_t nonce[DS_CURSOR_NONCE_LEN]);
void ds_cursor_seal_wipe(ds_cursor_seal *s);
/* Seals |c| into |out| and advances the nonce. */
void ds_cursor_encode(const ds_cursor *c, ds_cursor_seal *s, uint8_t out[DS_CURSOR_LEN]);
/* Opens a cursor sealed with |s|'s key for the store epoch and share
 * digest given in |c|, setting c->seq.  DS_ERR_MALFORMED for any other
 * cursor: another length or layout version, another key, epoch or share
 * set, or altered bytes (all alike mean: start over). */
int ds_cursor_decode(const uint8_t *in, size_t len, const ds_cursor_seal *s, ds_cursor *c);

/* ---- messages ------------------------------------------------------------ */

typedef enum {
    DS_MSG_SYNC_REQUEST = 1,
    DS_MSG_SYNC_RESPONSE,
    DS_MSG_ERROR,
    DS_MSG_EXPORT_HEADER,
    DS_MSG_SIGNATURE,
} ds_msg_type;

/* Stable error codes of an ERROR message (P2P spec ErrorCode). */
#define DS_SYNC_E_NOT_AUTHORIZED "NotAuthorized"
#define DS_SYNC_E_RATE_LIMITED "RateLimited"
#define DS_SYNC_E_BAD_REQUEST "BadRequest"
#define DS_SYNC_E_VERSION "UnsupportedVersion"
#define DS_SYNC_E_INTERNAL "Internal"

typedef struct ds_msg {
    ds_msg_type type;
    uint64_t version;                       /* the "v" received, in full */
    /* SYNC_REQUEST */
    int has_cursor;
    uint8_t cursor[DS_CURSOR_LEN];          /* also SYNC_RESPONSE new_cursor */
    uint32_t max_nodes, max_bytes;          /* 0 = publisher's default */
    /* SYNC_RESPONSE */
    ds_node *nodes;
    size_t nnodes;
    int has_more;
    /* The nodes' bytes as received (one copy of the array's contents)
     * and, per node, its span there, or len 0 when the node must be
     * encoded afresh to be stored (see ds__wtxn_put_new_encoded). */
    uint8_t *raw;
    struct ds_msg_span { uint32_t off, len; } *spans;
    /* The nodes' strings, all in one block (core/node_int.h): the nodes
     * own no memory then, and only ds_msg_free may release them. */
    char *strs;
    /* ERROR */
    char code[32];
    char *message;
    /* EXPORT_HEADER */
    char node_id[65];                       /* signer, 64 hex */
    int64_t created_ms;
    int full;
    /* SIGNATURE */
    uint8_t sig[64];
} ds_msg;

void ds_msg_free(ds_msg *m);
/* Decodes one message payload (a frame's content).  Returns 0,
 * DS_ERR_MALFORMED / DS_ERR_TRUNCATED / DS_ERR_TOOLARGE (never crashes on
 * hostile input), DS_ERR_VERSION (a version this build cannot speak; the
 * type is still set), or DS_ERR_NOMEM. */
int ds_msg_decode(const uint8_t *buf, size_t len, ds_msg *out);

int ds_msg_encode_request(ds_buf *out, const uint8_t *cursor, uint32_t max_nodes, uint32_t max_bytes);
int ds_msg_encode_error(ds_buf *out, const char *code, const char *message);
int ds_msg_encode_header(ds_buf *out, const char *node_id, int64_t created_ms, int full);
int ds_msg_encode_signature(ds_buf *out, const uint8_t sig[64]);

/* ---- publisher ----------------------------------------------------------- */

typedef struct ds_publish_stats {
    size_t sent;         /* nodes put in the page */
    uint64_t seq;        /* the last sequence the page covers */
    size_t scanned;      /* nodes examined */
    int has_more;        /* the page's has_more */
    uint8_t cursor[DS_CURSOR_LEN];   /* the page's new_cursor */
} ds_publish_stats;

/* Builds the SYNC_RESPONSE for request |req| (its cursor may be absent:
 * full sync) from |st| restricted to |share| into |out| (appended), its
 * new cursor sealed with |seal|.  Starts over from sequence 0 when the
 * cursor does not open with |seal| for the store's epoch and the share
 * digest (another epoch or share set, another layout, or altered).
 * Stops at max_nodes nodes, max_bytes bytes (at least one node is always
 * sent) or the scan budget; has_more tells whether the subscriber should
 * ask again.  Unshared nodes that follow a full page are skipped over in
 * the same page (so has_more is false when only unshared nodes remain).
 * |stats| (optional) also receives the page's has_more, new_cursor and
 * last sequence.  Returns 0 or a DS_ERR_* (DS_ERR_INVALID without a
 * seal). */
int ds_sync_publish(ds_store *st, ds_cursor_seal *seal, const ds_share_set *share,
                    const ds_msg *req, ds_buf *out, ds_publish_stats *stats);
/* The same with the store's epoch given (read once per sync stream with
 * ds_store_epoch). */
int ds_sync_publish_epoch(ds_store *st, const uint8_t epoch[DS_EPOCH_LEN], ds_cursor_seal *seal,
                          const ds_share_set *share, const ds_msg *req, ds_buf *out,
                          ds_publish_stats *stats);

/* ---- subscriber ---------------------------------------------------------- */

/* Applies a SYNC_RESPONSE to replica |rep| in ONE transaction: each node
 * inserted unless its id exists (first copy kept), and the new cursor
 * stored.  *inserted (optional) receives the count of new nodes. */
int ds_sync_apply(ds_store *rep, const ds_msg *resp, size_t *inserted);
/* The same for |n| (>= 1) consecutive SYNC_RESPONSE pages, in stream
 * order, in ONE transaction: all their nodes, then the last page's
 * cursor (it covers the pages before it), so a crash leaves either all
 * of them or none applied.  Saves a commit (and its fsync) per page when
 * pages arrive faster than they are applied.  DS_ERR_INVALID for n == 0
 * or a page that is not a SYNC_RESPONSE with a cursor (nothing written). */
int ds_sync_apply_pages(ds_store *rep, const ds_msg *pages, size_t n, size_t *inserted);
/* ds_sync_apply_pages for a stream of batches applied back to back, with
 * the next batch's tokenizing overlapped with this one's commit (see
 * ds__wtxn_commit_ahead).  Before committing, |next| (optional) is asked
 * for the batch to be applied after this one: pages that must stay valid
 * and unchanged until that call.  *ticket then receives the number to
 * pass as |claim| when applying them (0: pass 0).  The results are those
 * of ds_sync_apply_pages whatever |next| returns or claim says. */
typedef const ds_msg *(*ds_sync_next_fn)(void *ud, size_t *n);
int ds_sync_apply_pages_ahead(ds_store *rep, const ds_msg *pages, size_t n, uint64_t claim,
                              ds_sync_next_fn next, void *ud, uint64_t *ticket, size_t *inserted);
/* The cursor stored in |rep| by ds_sync_apply: 0 and *has = 1/0. */
int ds_sync_cursor_get(ds_store *rep, uint8_t cursor[DS_CURSOR_LEN], int *has);
/* Forgets the stored cursor (next sync is full). */
int ds_sync_cursor_reset(ds_store *rep);

#endif
