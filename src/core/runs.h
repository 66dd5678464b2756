/*
 * runs.h - the id and source lookups of the store as sorted runs
 * (runs.c, docs/storage.md).
 *
 * Each write transaction collects, for every node it puts, an id entry
 * (id -> seq) and a source entry (keyed hash of the source -> seq) in
 * memory; at commit it sorts them and writes them as one immutable run
 * covering the transaction's range of seqs.  Adjacent runs of similar
 * size are merged (size-tiered, like index segments), so a put costs a
 * few sequential bytes instead of a random B-tree insert.  A deleted seq
 * is recorded in a small table and its entries are dropped by the next
 * merge over it; when the dead reach a share of all entries, all runs
 * are merged (compacted) into one.  Lookups search the transaction's own
 * entries, then the runs from newest to oldest.
 */
#ifndef DS_CORE_RUNS_H
#define DS_CORE_RUNS_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "ds/node.h"
#include "ds/store.h"

#define DS_RUN_FANOUT 8            /* merge this many runs of one size class */
/* Compact all runs into one once 1/DS_RUN_DEAD_SHARE of their id entries
 * are dead (runs.c): the same 8 as the fan-out, so dead entries cost at
 * most about 1/8 more space and lookup steps, and each deletion pays for
 * at most 8 entry rewrites, like one extra merge level. */
#define DS_RUN_DEAD_SHARE 8
#define DS_RUN_PART_BYTES (1u << 20)
#define DS_RUN_SRCKEY_LEN 16       /* SipHash key for source entries */

typedef struct ds_runview ds_runview;

/* The write transaction's state: its new entries (not yet in a run) and
 * the committed runs, loaded at the first lookup. */
typedef struct ds_runbuf {
    uint8_t *ids;                  /* n entries: id (16) | seq (8 BE) */
    uint8_t *srcs;                 /* n entries: source key (8) | seq (8 BE) */
    size_t n, cap;
    uint32_t *tab;                 /* entry index + 1 of the newest entry per id, 0 = empty */
    size_t tslots;
    ds_runview *views;             /* committed runs, oldest first */
    size_t nviews;
    int views_loaded;
} ds_runbuf;

/* Mixes an id into 64 bits (ids come from peers too: never used raw). */
uint64_t ds__id_mix(const uint8_t id[DS_ID_LEN]);

/* Reads the store's source key from the meta table into st->srckey; when
 * it is missing, DS_ERR_NOTFOUND, or with |create| (a write transaction)
 * derives it from the epoch and stores it. */
int ds__runs_open(ds_store *st, MDB_txn *txn, int create);
/* Records that node |seq| has id |id| and source |source|. */
int ds__runs_add(ds_wtxn *tx, const uint8_t id[DS_ID_LEN], const char *source, uint64_t seq);
/* Records that node |seq| is deleted. */
int ds__runs_kill(ds_wtxn *tx, uint64_t seq);
/* The live seq stored for |id|: DS_ERR_NOTFOUND when none.  |rb| is the
 * writer's state (NULL in a read transaction). */
int ds__runs_find_id(ds_store *st, MDB_txn *txn, ds_runbuf *rb, const uint8_t id[DS_ID_LEN],
                     uint64_t *seq);
/* The live seqs whose source key matches |source|, increasing; callers
 * compare the decoded source (two sources may share a key).  *seqs is
 * malloc'd (free it). */
int ds__runs_source_seqs(ds_store *st, MDB_txn *txn, ds_runbuf *rb, const char *source,
                         uint64_t **seqs, size_t *n);
/* Calls |cb| for each id entry >= |from| of every committed run, in key
 * order within a run, until it returns nonzero (a negative value is
 * returned, a positive one ends the walk of that run). */
int ds__runs_ids_from(ds_store *st, MDB_txn *txn, const uint8_t from[DS_ID_LEN],
                      int (*cb)(const uint8_t *id, uint64_t seq, void *ud), void *ud);
/* Calls |cb| (unless NULL: then only counts) for every id entry,
 * committed or not; *count receives their number (the id filter is
 * rebuilt from them). */
int ds__runs_each_id(ds_wtxn *tx, int (*cb)(ds_wtxn *tx, const uint8_t *id), uint64_t *count);
/* At commit: at most one merge of committed runs (size-tiered, else a
 * compaction of all runs when enough entries are dead), then the
 * transaction's entries as a new run. */
int ds__runs_commit(ds_wtxn *tx);
/* Forgets the transaction's entries and cached runs (end of a
 * transaction, a reset); large buffers are freed. */
void ds__runbuf_reset(ds_runbuf *rb);
void ds__runbuf_free(ds_runbuf *rb);

#endif
