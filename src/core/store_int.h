/*
 * store_int.h - internals shared by store.c, index.c and search.c: the
 * LMDB environment and its tables, the per-transaction posting buffer,
 * and LMDB error translation.  Not part of the public API.
 */
#ifndef DS_STORE_INT_H
#define DS_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>

#include "ds/store.h"
#include "core/runs.h"
#include "core/tokenize.h"

/* The index is a log-structured set of immutable segments (see
 * docs/search.md).  Each segment has a docs table: for document ordinal
 * i = 0..ndocs-1 (ordinals in increasing seq order), the document's seq
 * (32-bit offset from the segment's first_seq) and its length in tokens
 * (16 bits, capped).  A posting is 4 bytes: ordinal (24 bits) | term
 * frequency (8 bits, capped); a term's list in a segment is its postings
 * sorted by ordinal (so by seq), stored contiguously so that search
 * reads them zero-copy from the memory map and seeks by binary search.
 * A segment therefore holds at most DS_SEG_MAX_DOCS documents and spans
 * at most 2^32 seqs; a merge whose result could exceed either is
 * skipped.
 *
 * A write transaction buffers its postings in memory and, at commit,
 * writes them as one new segment: a dictionary (sorted terms, each with
 * its posting count and where its list lives), postings parts of about
 * DS_SEG_PART_BYTES and the docs table.  Segments cover disjoint,
 * increasing ranges of sequence numbers, so a term's full list is the
 * concatenation of its lists in segment order.  A tiered policy merges
 * runs of adjacent segments of similar size (at most one merge per
 * commit, reading only committed segments, renumbering ordinals),
 * keeping the segment count logarithmic.
 *
 * Deleting a document whose postings are already in a segment marks its
 * seq dead (dead table: seq -> the document's distinct terms) and counts
 * it against each of its terms (dterm table: term -> dead count), so
 * document frequencies stay exact; the next merge over that range drops
 * the postings, the docs-table entry and both records.  Once the dead
 * reach 1/DS_SEG_DEAD_SHARE of the documents, a commit whose tiered rule
 * merges nothing compacts the adjacent segments holding the most dead
 * whose live documents fit one segment. */
#define DS_POSTING_LEN 4
#define DS_SEG_MAX_DOCS ((1u << 24) - 1)
#define DS_SEQ_MAX ((1ull << 40) - 1)
#define DS_SEG_PART_BYTES (1u << 20)
#define DS_SEG_FANOUT 8          /* merge this many segments of one size class */
/* Compact once 1/DS_SEG_DEAD_SHARE of the committed segments' documents
 * are dead (index.c, compact_pick): tiered merges reach the largest
 * segments only when the store grows about DS_SEG_FANOUT times, so a
 * store that stops growing would keep its dead for good.  The same 8 as
 * the fan-out: dead documents cost at most about 1/8 more space and
 * candidates skipped, and each deletion pays for at most 8 document
 * rewrites, like one extra merge level (the rule for id/source runs,
 * DS_RUN_DEAD_SHARE, is the same). */
#define DS_SEG_DEAD_SHARE 8

/* The id filter is sized for at least this many ids (idfilter.c). */
#define DS_IDF_MIN_CAP 65536

enum { DBI_META, DBI_NODES, DBI_RUNS, DBI_RUNDATA, DBI_PROJECT, DBI_SEGS, DBI_SEGDATA,
       DBI_DEAD, DBI_DTERM, DBI_RUNDEAD, DBI_IDFILTER,
       DBI_AUX0, DBI_COUNT = DBI_AUX0 + DS_TABLE_COUNT };

/* A segment as a reader sees it: its header, its dictionary and its docs
 * table (pointers into the transaction's view of the database). */
typedef struct ds_segview {
    uint64_t id;
    uint64_t first_seq, last_seq;  /* last_seq - first_seq <= UINT32_MAX */
    uint32_t ndocs, nterms, nparts;
    const uint8_t *ents;           /* nterms dictionary entries */
    const uint8_t *terms;          /* term bytes */
    size_t terms_len;
    const uint8_t *docs;           /* ndocs docs-table entries of DS_DOC_ENT_LEN */
} ds_segview;

/* Byte layout, big-endian so that these read the same on any host:
 * posting = ordinal (3 bytes) | tf (1 byte); docs-table entry = seq -
 * first_seq (4 bytes, increasing with the ordinal) | length in tokens (2
 * bytes), side by side so that scoring a posting touches one cache line
 * of the table.  Callers check ord < ndocs: a corrupt posting may hold
 * any ordinal. */
#define DS_DOC_ENT_LEN 6
#define DS_SEG_DOCS_PART UINT32_MAX   /* segdata part number of the docs table */
#define DS_POST_WORD(p) (((uint32_t)(p)[0] << 24) | ((uint32_t)(p)[1] << 16) | \
                         ((uint32_t)(p)[2] << 8) | (uint32_t)(p)[3])
#define DS_POST_ORD(p) (DS_POST_WORD(p) >> 8)
#define DS_POST_TF(p) ((uint32_t)(p)[3])
#define DS_SEG_DOC(s, ord) ((s)->docs + (size_t)(ord) * DS_DOC_ENT_LEN)
#define DS_SEG_DOC_SEQ(s, ord) ((s)->first_seq + DS_POST_WORD(DS_SEG_DOC(s, ord)))
#define DS_SEG_DOC_LEN(s, ord) ((uint32_t)((DS_SEG_DOC(s, ord)[4] << 8) | DS_SEG_DOC(s, ord)[5]))

/* Loads every segment of the index, sorted by first_seq; *segs is
 * malloc'd (free it), its pointers valid for the transaction.  A header
 * of another format version, or a dictionary or docs table of the wrong
 * size, is DS_ERR_STORE. */
int ds__segs_load(ds_store *st, MDB_txn *txn, ds_segview **segs, size_t *n);
/* Finds |term| in segment |s|: *count receives its posting count (0 when
 * absent) and, when |post| is non-NULL, *post its postings (DS_POSTING_LEN
 * bytes each, ordinals into |s|'s docs table). */
int ds__seg_find(ds_store *st, MDB_txn *txn, const ds_segview *s, const char *term,
                 size_t tlen, const uint8_t **post, uint32_t *count);
/* Number of dead documents counted against |term|. */
int ds__dterm_get(ds_store *st, MDB_txn *txn, const char *term, size_t tlen, uint32_t *dead);
/* Whether the dead table is empty, and whether |seq| is dead in it. */
int ds__dead_any(ds_store *st, MDB_txn *txn, int *any);
int ds__dead_has(ds_store *st, MDB_txn *txn, uint64_t seq, int *dead);
/* Distinct terms with at least one live posting. */
int ds__index_term_count(ds_store *st, MDB_txn *txn, uint64_t *n);

/* Counters kept in the meta table and updated in each write transaction. */
typedef struct ds_counters {
    uint64_t last_seq;
    uint64_t docs;
    uint64_t total_len;
    uint64_t next_seg;             /* id of the next segment written */
    uint64_t index_gen;            /* changes whenever the index does */
    uint64_t by_type[DS_SOURCE_TYPE_COUNT];
} ds_counters;

/* Buffered postings of the open write transaction.  Each term occurrence
 * appends to one flat array of tuples (entry index | document number |
 * term frequency), so adding a document writes memory sequentially; at
 * commit a counting sort by term turns the tuples into each term's
 * contiguous, seq-ordered list.  Entries are dense (stable indexes, which
 * the tokenizer's cache tags point at) with an open-addressing table of
 * indexes for lookups by term.  The buffer lives in the store and keeps
 * its memory from one transaction to the next. */
typedef struct pb_entry {
    uint64_t hash;
    uint32_t term_off, term_len;   /* into pb.terms */
    uint32_t count;                /* postings (documents) */
    uint32_t last_doc;             /* document number + 1 of the last posting */
    uint32_t last_pos;             /* its tuple */
    uint32_t fill;                 /* write: postings placed so far */
    uint64_t out;                  /* write: first posting's index in pb.out */
} pb_entry;

#define DS_PB_DOC_DEAD 0x80000000u /* docinfo flag: removed again in this transaction */

typedef struct ds_postbuf {
    pb_entry *ents;
    uint32_t nents, ents_cap;
    uint32_t *table;               /* entry index + 1; 0 = empty */
    size_t tslots;
    char *terms;
    size_t terms_len, terms_cap;
    uint64_t *tuples;              /* entry << 32 | document << 8 | tf */
    size_t ntuples, tuples_cap;
    uint64_t min_seq;              /* document 0's seq, 0 = none buffered */
    uint32_t *docinfo;             /* per document: length in tokens | DS_PB_DOC_DEAD */
    size_t ndocs, docinfo_cap;
    int any_dead;
    uint8_t *out;                  /* write: the postings, term by term */
    size_t out_cap;
    uint32_t gen;                  /* tag generation (see tokenize.h), 0 = not started */
} ds_postbuf;

/* A guess at the next write transaction's first insertions, tokenized by
 * the index worker while the current one commits (ds__wtxn_commit_ahead).
 * PENDING: started by the last commit; ACTIVE: claimed by the open
 * transaction, whose insertions match docs[0..k) so far. */
typedef struct ds_ahead_doc { const char *content; size_t len; } ds_ahead_doc;
enum { DS_AHEAD_NONE, DS_AHEAD_PENDING, DS_AHEAD_ACTIVE };
typedef struct ds_ahead {
    int state;
    uint64_t ticket, last_ticket;
    uint64_t base;                 /* the seq docs[0] was given */
    ds_ahead_doc *docs;
    size_t n, k, cap;
} ds_ahead;

struct ds_store {
    MDB_env *env;
    MDB_dbi dbi[DBI_COUNT];
    char *path;
    ds_tokenizer *tok;             /* for indexing (write side) */
    ds_postbuf pb;                 /* the open write transaction's postings */
    int fail_after;
    ds_wtxn *active;
    uint32_t tag_gen;              /* last posting-buffer generation used */
    uint8_t srckey[DS_RUN_SRCKEY_LEN]; /* keys source entries (runs.c) */
    size_t run_part_ents;          /* entries per run part; 0 = about 1 MiB (tests lower it) */
    uint32_t seg_max_docs;         /* most documents a merge makes; 0 = DS_SEG_MAX_DOCS (tests lower it) */
    uint64_t idf_min_cap;          /* smallest id filter capacity (ids) */
    struct ds_iworker *iw;         /* index worker thread, NULL until first needed */
    int no_iworker;                /* index on the writer's thread */
    ds_ahead ahead;                /* the next transaction's guessed insertions */
    int tc_valid;                  /* cached term count, for index_gen tc_gen */
    uint64_t tc_gen, tc_value;
    /* The data file, checked before every transaction (ds_store_check). */
    int fd;                        /* LMDB's descriptor of data.mdb */
    uint64_t psize;                /* LMDB's page size */
    uint64_t span;                 /* bytes the database spanned when last seen (atomic) */
    pthread_mutex_t grow_lock;     /* held across a commit and the file extension after it */
};

/* The id filter's state within one write transaction (idfilter.c). */
typedef struct ds_idf {
    int loaded;                    /* header read (or filter rebuilt) */
    int fresh;                     /* rebuilt in this txn: no chunk on disk */
    int hdr_dirty;                 /* something to write at commit */
    uint32_t nblocks, nchunks;
    uint64_t capacity, count;
    uint8_t **dirty;               /* nchunks slots: private copies of changed chunks */
} ds_idf;

struct ds_wtxn {
    ds_store *st;
    MDB_txn *txn;
    ds_counters c;
    ds_idf idf;
    ds_runbuf rb;                  /* new id and source entries (runs.c) */
    uint64_t first_new_seg;        /* segments from here on were written by this txn */
    size_t pending_bytes;          /* text submitted since the buffer was last written */
    int failed;                    /* first error; commit then aborts */
};

int ds__lmdb_err(int rc);
/* The records of |dbi| (keys: seq, 8 bytes big-endian; the dead tables of
 * runs and segments) whose seq is in [first, last], the range of the
 * committed runs or segments: the table's count (O(1)) less the records
 * outside, which are stepped over from each end (those of nodes the
 * transaction wrote and deleted itself lie above |last|; none are
 * expected below |first|, but a stray one must not be counted).  A
 * compaction could drop only the ones inside. */
int ds__dead_in_range(MDB_txn *txn, MDB_dbi dbi, uint64_t first, uint64_t last, uint64_t *dead);
/* Begins a transaction (|flags|: 0 or MDB_RDONLY) once the data file holds
 * every page of the database (ds_store_check), else DS_ERR_SHORT. */
int ds__store_begin(ds_store *st, unsigned flags, MDB_txn **txn);
/* Counts a record write for failure injection; DS_ERR_INJECTED when due. */
int ds__store_write_check(ds_store *st);
/* ds_wtxn_put_new storing |enc| as the node's record instead of encoding
 * |n|.  |enc| must be bytes ds_node_decode turned into exactly |n| (its
 * hash checked, a namespace present), so that reading the record back
 * gives the node that was indexed: sync stores peers' nodes as received. */
int ds__wtxn_put_new_encoded(ds_wtxn *tx, ds_node *n, const uint8_t *enc, size_t len, int *inserted);
/* One record put (flags 0) or delete (absent is success) in table |dbi|
 * of the transaction, counted for failure injection (index.c). */
int ds__put_raw(ds_wtxn *tx, int dbi, const void *k, size_t kl, const void *v, size_t vl);
int ds__del_raw(ds_wtxn *tx, int dbi, const void *k, size_t kl);

/* idfilter.c: a Bloom filter over stored ids, changed in the same
 * transactions.  *maybe = 0 means |id| is certainly not stored. */
int ds__idf_maybe(ds_wtxn *tx, const uint8_t id[DS_ID_LEN], int *maybe);
/* Records |id| as stored. */
int ds__idf_add(ds_wtxn *tx, const uint8_t id[DS_ID_LEN]);
/* Writes the changed chunks and header (at commit). */
int ds__idf_flush(ds_wtxn *tx);
/* Forgets the transaction's filter state (end of txn, table dropped). */
void ds__idf_reset(ds_idf *f);

/* index.c */
/* Tokenizes one document into st->pb (the index worker, or the writer
 * itself when there is no worker); no LMDB access. */
int ds__pb_add_doc(ds_store *st, uint64_t seq, const char *content, size_t len, uint32_t *doclen);
void ds__postbuf_free(ds_postbuf *pb);
/* Forgets the buffered postings (end of a transaction, ds_wtxn_clear). */
void ds__postbuf_reset(ds_postbuf *pb);
/* Buffers |content|'s postings under |seq|, now or on the index worker;
 * *doclen receives its length in tokens when known now, else 0 and the
 * length reaches tx->c.total_len when the worker is drained. */
int ds__index_add(ds_wtxn *tx, uint64_t seq, const char *content, size_t len, uint32_t *doclen);
/* Index work ahead of time.  ds__wtxn_commit_ahead commits |tx| and,
 * while LMDB writes it, has the index worker tokenize |docs|: the texts
 * the next transaction is expected to insert first, in this order, as new
 * nodes (with the seqs that follow this transaction's).  *ticket receives
 * a number to claim the work with ds__store_begin_ahead, or 0 when none
 * was started (no worker, too much text; the commit is unaffected).  The
 * claiming transaction's insertions use the work as long as they match
 * the guess (same seq, same content pointer and length); at the first
 * one that does not, or any other index change, the work is dropped and
 * the matched documents are tokenized again, so results never depend on
 * the guess.  The texts must stay valid and unchanged until the claiming
 * transaction ends; any other transaction begun first drops the work. */
int ds__wtxn_commit_ahead(ds_wtxn *tx, const ds_ahead_doc *docs, size_t n, uint64_t *ticket);
int ds__store_begin_ahead(ds_store *st, uint64_t ticket, ds_wtxn **out);
/* index.c side: starts the work (after the transaction's index commit),
 * and drops whatever is buffered or being tokenized (worker drained
 * without counting, buffer reset, state NONE). */
void ds__ahead_start(ds_wtxn *tx, const ds_ahead_doc *docs, size_t n, uint64_t *ticket);
void ds__ahead_forget(ds_store *st);

/* Removes document |seq| (its content given again) from the index. */
int ds__index_remove(ds_wtxn *tx, uint64_t seq, const char *content, size_t len, uint32_t *doclen);
/* At commit: at most one merge of committed segments, then the buffered
 * postings as a new segment. */
int ds__index_commit(ds_wtxn *tx);

/* index_worker.c: tokenizing new documents on a second thread while the
 * writer does the B-tree work.  Only the worker touches st->pb and
 * st->tok between a submit and the next drain. */
/* Queues a document (its text is copied); without a worker (disabled, or
 * the thread could not start) indexes it at once and sets *doclen. */
int ds__iw_submit(ds_store *st, uint64_t seq, const char *content, size_t len, uint32_t *doclen);
/* Waits until the worker is idle.  Returns its first error since the
 * last drain; *total_len receives the summed lengths of the documents it
 * indexed since then. */
int ds__iw_drain(ds_store *st, uint64_t *total_len);
/* Starts the worker if needed; 1 when documents are tokenized on it. */
int ds__iw_ready(ds_store *st);
/* Hands the batch being filled to the worker now. */
void ds__iw_kick(ds_store *st);
/* Stops and joins the worker (store close). */
void ds__iw_stop(ds_store *st);

/* Reads the counters from the meta table. */
int ds__counters_read(ds_store *st, MDB_txn *txn, ds_counters *c);

#endif
