/*
 * store.h - the LMDB knowledge store: nodes, their sequence numbers,
 * source/project lookups, the search index and small auxiliary tables,
 * all in one LMDB environment so that every multi-record change is one
 * transaction.
 *
 * The store is sans-IO in the architecture's sense: it never reads the
 * clock or draws random bytes; ids, timestamps and the store epoch come
 * from the caller.  It does touch the file system (LMDB), which is its job.
 *
 * Lifetimes: nodes returned through callbacks are valid only during the
 * callback; nodes returned through out-parameters are owned by the caller
 * (free with ds_node_free).
 */
#ifndef DS_STORE_H
#define DS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "ds/node.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_STORE_SCHEMA 4
#define DS_EPOCH_LEN 16

typedef struct ds_store ds_store;
typedef struct ds_wtxn ds_wtxn;

typedef struct ds_store_opts {
    /* 16 random bytes used as the store epoch when the store is created
     * (ignored when it exists).  Required when creating. */
    const uint8_t *epoch_seed;
    /* LMDB map size in bytes; 0 = default (64 GiB of address space). */
    size_t map_size;
    /* Do not create the store if it does not exist (DS_ERR_NOTFOUND). */
    int no_create;
    /* Tokenize new documents on the writing thread instead of a second
     * thread the store starts at its first write (same results). */
    int no_index_thread;
} ds_store_opts;

/* Auxiliary tables: opaque key -> value maps sharing the store's
 * transactions (for example "this file was added with this hash"). */
typedef enum {
    DS_TABLE_FILES = 0,       /* canonical path -> added-file record */
    DS_TABLE_TRANSCRIPTS,     /* transcript path -> watermark */
    DS_TABLE_QUEUE,           /* job id -> job record */
    DS_TABLE_CURSORS,         /* peer/sync cursors */
    DS_TABLE_COUNT
} ds_table;

typedef struct ds_store_info {
    uint8_t epoch[DS_EPOCH_LEN];
    uint32_t schema;
    uint64_t last_seq;                         /* highest sequence assigned */
    uint64_t node_count;
    uint64_t count_by_type[DS_SOURCE_TYPE_COUNT];
    uint64_t term_count;                       /* distinct index terms */
    uint64_t total_len;                        /* sum of document lengths (tokens) */
    uint64_t file_bytes;                       /* size of the data file */
} ds_store_info;

/* Opens (creating if needed) the store in directory |dir|, which is
 * created if missing.  Errors: DS_ERR_INVALID (no epoch_seed when
 * creating), DS_ERR_SCHEMA (written by a newer version), DS_ERR_NOTFOUND
 * (no_create and no store), DS_ERR_IO, DS_ERR_STORE (damaged), DS_ERR_SHORT (a data
 * file shorter than its database, or empty with no_create), DS_ERR_NOMEM. */
DS_API int ds_store_open(ds_store **out, const char *dir, const ds_store_opts *opts);
DS_API void ds_store_close(ds_store *st);
DS_API const char *ds_store_path(const ds_store *st);
DS_API int ds_store_info_get(ds_store *st, ds_store_info *out);
/* Parts of the info without its distinct-term count, which walks every
 * index segment's dictionary: for callers that need only these (a sync
 * publisher's cursor epoch, a replica's size).  ds_store_epoch fails with
 * DS_ERR_STORE when the store has no valid epoch record. */
DS_API int ds_store_epoch(ds_store *st, uint8_t epoch[DS_EPOCH_LEN]);
DS_API int ds_store_node_count(ds_store *st, uint64_t *n);

/* Whether the data file still holds every page of the database.  LMDB
 * reads through a memory map, and a read past the end of a file cut short
 * while open (truncated, copied over in place, damaged) would crash the
 * process with SIGBUS.  Every transaction the store and search functions
 * begin (ds_store_open's too) checks this first, one fstat, and fails
 * with DS_ERR_SHORT instead.
 * Returns 0, DS_ERR_SHORT when the file is shorter, DS_ERR_IO when it
 * cannot be looked at.  *file_bytes and *used_bytes (either may be NULL)
 * receive the file's size and the bytes the database spans. */
DS_API int ds_store_check(ds_store *st, uint64_t *file_bytes, uint64_t *used_bytes);
/* 1 when the store's directory no longer holds the data file the store
 * has open: data.mdb was moved away, deleted or replaced by another file
 * (the store still reads the one it opened); 0 when it does; a negative
 * DS_ERR_* when the open file cannot be looked at. */
DS_API int ds_store_replaced(ds_store *st);

/* Write transactions.  Only one may be open per process at a time (LMDB
 * serializes writers across processes too).  commit and abort consume
 * the transaction, even when commit fails. */
DS_API int ds_store_begin(ds_store *st, ds_wtxn **out);
DS_API int ds_wtxn_commit(ds_wtxn *tx);
DS_API void ds_wtxn_abort(ds_wtxn *tx);

/* Inserts |n| or replaces the node with the same id (its postings and
 * lookups go with it).  Assigns n->seq.  n->hash must match the content
 * (ds_node_set_content keeps it so).  Errors: DS_ERR_INVALID (missing
 * field), DS_ERR_TOOLARGE, DS_ERR_FULL, DS_ERR_STORE, DS_ERR_INJECTED. */
DS_API int ds_wtxn_put(ds_wtxn *tx, ds_node *n);
/* Inserts |n| only if its id is unknown ("first copy kept").  Sets
 * *inserted to 1 when written, 0 when the id existed. */
DS_API int ds_wtxn_put_new(ds_wtxn *tx, ds_node *n, int *inserted);
/* Deletes the node |id|.  DS_ERR_NOTFOUND if absent. */
DS_API int ds_wtxn_delete(ds_wtxn *tx, const uint8_t id[DS_ID_LEN]);
/* Deletes every node whose source equals |source|; *count (optional)
 * receives the number removed. */
DS_API int ds_wtxn_delete_source(ds_wtxn *tx, const char *source, size_t *count);
/* Removes every node, posting and auxiliary record and sets a new epoch. */
DS_API int ds_wtxn_clear(ds_wtxn *tx, const uint8_t new_epoch[DS_EPOCH_LEN]);
DS_API int ds_wtxn_aux_put(ds_wtxn *tx, ds_table t, const void *key, size_t klen,
                           const void *val, size_t vlen);
DS_API int ds_wtxn_aux_del(ds_wtxn *tx, ds_table t, const void *key, size_t klen);
/* Reads an aux record inside the write transaction; *val is malloc'd. */
DS_API int ds_wtxn_aux_get(ds_wtxn *tx, ds_table t, const void *key, size_t klen,
                           void **val, size_t *vlen);

/* One-call conveniences: each runs in its own transaction. */
DS_API int ds_store_put(ds_store *st, ds_node *n);
DS_API int ds_store_put_many(ds_store *st, ds_node *nodes, size_t count);
DS_API int ds_store_delete(ds_store *st, const uint8_t id[DS_ID_LEN]);

/* Reads.  ds_store_get fills |out| (caller frees).  DS_ERR_NOTFOUND. */
DS_API int ds_store_get(ds_store *st, const uint8_t id[DS_ID_LEN], ds_node *out);
DS_API int ds_store_get_seq(ds_store *st, uint64_t seq, ds_node *out);
/* Resolves a lowercase hex id prefix (dashes allowed, at least 4 hex
 * digits) to a full id.  DS_ERR_NOTFOUND, DS_ERR_AMBIGUOUS, DS_ERR_INVALID. */
DS_API int ds_store_resolve_prefix(ds_store *st, const char *prefix, uint8_t id[DS_ID_LEN]);
DS_API int ds_store_aux_get(ds_store *st, ds_table t, const void *key, size_t klen,
                            void **val, size_t *vlen);
/* Calls |cb| for each aux record; stop early by returning non-zero. */
DS_API int ds_store_aux_iter(ds_store *st, ds_table t,
                             int (*cb)(const void *k, size_t kl, const void *v, size_t vl, void *ud),
                             void *ud);

/* Node callbacks: return 0 to continue, non-zero to stop (that value is
 * then returned by the iterating function if it is negative, else 0). */
typedef int (*ds_node_cb)(const ds_node *n, void *ud);
/* Visits nodes with seq > |after_seq| in increasing seq order, or (when
 * |reverse|) all nodes in decreasing seq order (after_seq ignored). */
DS_API int ds_store_iter(ds_store *st, uint64_t after_seq, int reverse, ds_node_cb cb, void *ud);
/* The node records after |after_seq| in sequence order, as stored: each
 * is one node's MessagePack map, the same encoding sync frames carry
 * (docs/protocol.md).  |rec| is valid only during the call.  A nonzero
 * return from |cb| stops the walk; a negative one is returned. */
typedef int (*ds_record_cb)(uint64_t seq, const uint8_t *rec, size_t len, void *ud);
DS_API int ds_store_iter_records(ds_store *st, uint64_t after_seq, ds_record_cb cb, void *ud);
DS_API int ds_store_by_source(ds_store *st, const char *source, ds_node_cb cb, void *ud);
DS_API int ds_store_by_project(ds_store *st, const char *project, ds_node_cb cb, void *ud);

/* Test hook: make the |n|-th following record write fail with
 * DS_ERR_INJECTED (n >= 1); 0 disables. */
DS_API void ds_store_fail_after(ds_store *st, int n);

#ifdef __cplusplus
}
#endif
#endif
