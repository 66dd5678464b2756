/*
 * store_int.h - internals shared by store.c, index.c and search.c: the
 * LMDB environment and its tables, the per-transaction posting buffer,
 * and LMDB error translation.  Not part of the public API.
 */
#ifndef DS_STORE_INT_H
#define DS_STORE_INT_H

#include <lmdb.h>
#include <stdint.h>

#include "ds/store.h"
#include "core/tokenize.h"

/* A posting: seq (5 bytes BE) | term frequency (1 byte, capped) |
 * document length in tokens (2 bytes BE, capped).  Sorted by seq.
 * A term's list is its sealed blocks in the postings table (key = term |
 * 0x00 | first seq (5 bytes BE, a lower bound of the block's sequences),
 * value = up to DS_BLOCK_MAX packed postings), followed by its open tail
 * of at most DS_TAIL_MAX postings kept inside its record in the terms
 * table: df u32 | tail count u16 | 2 bytes zero | tail postings.  New
 * postings go to the tail; a tail that overflows is sealed into blocks.
 * A write transaction thus rewrites small, densely packed term records,
 * not one postings page per term. */
#define DS_POSTING_LEN 8
#define DS_SEQ_MAX ((1ull << 40) - 1)
#define DS_BLOCK_MAX 256
#define DS_TAIL_MAX 32
#define DS_TERMREC_HDR 8

enum { DBI_META, DBI_NODES, DBI_IDS, DBI_SOURCE, DBI_PROJECT, DBI_POSTINGS, DBI_TERMS,
       DBI_AUX0, DBI_COUNT = DBI_AUX0 + DS_TABLE_COUNT };

/* Builds the postings key of |term| for sequence |seq| into |key|
 * (room for DS_TERM_MAX + 6); returns its length. */
size_t ds__block_key(uint8_t *key, const char *term, size_t tlen, uint64_t seq);

/* Counters kept in the meta table and updated in each write transaction. */
typedef struct ds_counters {
    uint64_t last_seq;
    uint64_t docs;
    uint64_t total_len;
    uint64_t terms;
    uint64_t by_type[DS_SOURCE_TYPE_COUNT];
} ds_counters;

/* Buffered postings of one write transaction, flushed term by term at
 * commit so that every term's new postings are appended in one call. */
typedef struct pb_entry {
    uint64_t hash;
    uint32_t term_off, term_len;   /* into pb.terms */
    uint8_t *post;                 /* DS_POSTING_LEN bytes each */
    uint32_t npost, cap;
} pb_entry;

typedef struct ds_postbuf {
    pb_entry *slots;
    size_t nslots, used;
    char *terms;
    size_t terms_len, terms_cap;
    size_t bytes;                  /* posting bytes buffered */
    uint32_t *touched;             /* entries touched by the current document */
    size_t ntouched, touched_cap;
} ds_postbuf;

struct ds_store {
    MDB_env *env;
    MDB_dbi dbi[DBI_COUNT];
    char *path;
    ds_tokenizer *tok;             /* for indexing (write side) */
    int fail_after;
    ds_wtxn *active;
};

struct ds_wtxn {
    ds_store *st;
    MDB_txn *txn;
    ds_counters c;
    ds_postbuf pb;
    int failed;                    /* first error; commit then aborts */
};

int ds__lmdb_err(int rc);
/* Counts a record write for failure injection; DS_ERR_INJECTED when due. */
int ds__store_write_check(ds_store *st);

/* index.c */
void ds__postbuf_free(ds_postbuf *pb);
void ds__postbuf_reset(ds_postbuf *pb);
/* Tokenizes |content| and buffers its postings under |seq|; *doclen
 * receives its length in tokens. */
int ds__index_add(ds_wtxn *tx, uint64_t seq, const char *content, size_t len, uint32_t *doclen);
/* Removes the postings of document |seq| (its content given again). */
int ds__index_remove(ds_wtxn *tx, uint64_t seq, const char *content, size_t len, uint32_t *doclen);
/* Writes buffered postings to LMDB. */
int ds__index_flush(ds_wtxn *tx);

/* Term record of the terms table; |tail| points into the transaction's
 * view of the database (valid until the next write or its end). */
typedef struct ds_termrec {
    uint32_t df;
    uint16_t tail_count;
    const uint8_t *tail;
} ds_termrec;
int ds__termrec_get(ds_store *st, MDB_txn *txn, const char *term, size_t tlen, ds_termrec *r);

/* Reads the counters from the meta table. */
int ds__counters_read(ds_store *st, MDB_txn *txn, ds_counters *c);

#endif
