/*
 * exchange.h - offline exchange files (`ds peer export` / `ds peer
 * import`): the sync engine (core/sync.h) running over a file instead of
 * a QUIC stream.  Sans-IO: the writer hands bytes to a callback, the
 * reader works on a buffer the caller has read.
 *
 * A file is a sequence of length-prefixed MessagePack frames (the sync
 * wire format, core/frame.h):
 *
 *   EXPORT_HEADER {node_id, created, full, since}
 *   SYNC_RESPONSE page, as built by ds_sync_publish     (one or more)
 *   SIGNATURE {sig}
 *
 * sig is Ed25519ph (identity.h) by node_id's key over every byte that
 * precedes the signature frame, length prefixes included.  "since" is
 * the cursor the export continued from (nil for a full export): an
 * importer advances its replica's cursor only when that cursor is the
 * one it holds, so an incremental file applied out of order never makes
 * a later sync skip nodes.  The reader checks the whole file - structure,
 * every node, the signature, nothing after it - before anything is
 * applied; then the pages go in through ds_sync_apply_pages, up to 64
 * pages or DS_SYNC_APPLY_BATCH_NODES nodes per transaction (first copy
 * kept).
 */
#ifndef DS_EXCHANGE_H
#define DS_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "ds/store.h"
#include "core/identity.h"
#include "core/sync.h"

#define DS_EXCHANGE_FRAME_MAX (DS_SYNC_MAX_PAGE_BYTES + DS_NODE_MAX_ENCODED + 4096)
#define DS_EXCHANGE_MAX_FILE ((size_t)1 << 30)   /* 1 GiB */

/* Receives |len| bytes of the file; returns 0, or a negative DS_ERR_*
 * that stops the export (and is returned by ds_export_write). */
typedef int (*ds_exchange_write_fn)(void *ud, const uint8_t *data, size_t len);

typedef struct ds_export_opts {
    const ds_identity *id;          /* signer */
    const ds_share_set *share;      /* what is shared */
    ds_cursor_seal *seal;           /* seals the cursors (the signer's key) */
    int64_t created_ms;             /* time of the export */
    const uint8_t *since;           /* continue from this cursor, NULL = full */
    uint32_t page_nodes, page_bytes;/* 0 = the sync defaults */
} ds_export_opts;

typedef struct ds_export_result {
    int full;                       /* 1 when the file holds everything shared */
    size_t pages, nodes, scanned;
    uint64_t bytes;                 /* file size */
    uint8_t cursor[DS_CURSOR_LEN];  /* cursor after the last page */
} ds_export_result;

/* Writes an export of |st| (nodes of shared projects only) to |w|.  A
 * |since| cursor that does not open with |seal| for the store's epoch
 * and the share set is ignored (the export is then full).  Returns 0 or
 * a DS_ERR_* (DS_ERR_INVALID without a seal, store errors, the writer's
 * error, DS_ERR_NOMEM, DS_ERR_PROTO if paging made no progress). */
int ds_export_write(ds_store *st, const ds_export_opts *o, ds_exchange_write_fn w, void *ud,
                    ds_export_result *res);

typedef struct ds_import_info {
    char node_id[DS_NODE_ID_HEX + 1];   /* signer */
    uint8_t pk[DS_NODE_ID_LEN];
    int64_t created_ms;
    int full;
    int has_since;
    uint8_t since[DS_CURSOR_LEN];
    size_t pages, nodes;
    uint8_t cursor[DS_CURSOR_LEN];      /* the last page's cursor */
    /* On failure: where and what (a static string). */
    size_t err_offset;
    const char *err_what;
} ds_import_info;

/* Checks that the |len| bytes at |buf| are a complete, well-formed export
 * signed by the node named in its header.  Applies nothing.  Returns 0,
 * DS_ERR_MALFORMED / DS_ERR_TRUNCATED / DS_ERR_TOOLARGE (damaged or not an
 * export file), DS_ERR_VERSION, DS_ERR_CRYPTO (signature does not verify:
 * tampered, or not signed by that node) or DS_ERR_NOMEM; err_offset and
 * err_what say where and what.  Never crashes on any input. */
int ds_import_verify(const uint8_t *buf, size_t len, ds_import_info *info);

typedef struct ds_import_result {
    size_t pages, nodes, inserted;      /* inserted: new ids */
    int cursor_advanced;                /* 0: file did not continue our cursor */
} ds_import_result;

/* Verifies |buf| (as ds_import_verify, filling |info|), requires its
 * signer to be |expect_node_id| (DS_ERR_UNAUTHORIZED otherwise), then
 * applies its pages to replica |rep| in batches (see above).  The
 * replica's cursor advances only when the file is full or continues from
 * the cursor the replica holds.  On a verification error nothing is
 * written; on a store error whole batches stay applied, with the cursor
 * of the last one. */
int ds_import_apply(const uint8_t *buf, size_t len, const char *expect_node_id, ds_store *rep,
                    ds_import_info *info, ds_import_result *res);
/* ds_import_apply for bytes already verified: |info| is what
 * ds_import_verify returned 0 with for these same |len| bytes at |buf|,
 * unchanged since (the caller's own memory; a file must not be mapped,
 * or it could change between the two).  Saves a second verification:
 * the signature hash over the whole file and a decode of every page. */
int ds_import_apply_verified(const uint8_t *buf, size_t len, const char *expect_node_id,
                             ds_store *rep, ds_import_info *info, ds_import_result *res);

#endif
