/*
 * ingest.h - incremental ingestion of one Claude Code transcript, sans-IO.
 *
 * Three steps, so that the slow one can run on a worker thread that never
 * touches the store:
 *   1. plan (any thread): the caller reads the transcript bytes from
 *      ds_ingest_read_from() on; the new complete lines past the stored
 *      watermark are parsed, every turn text is redacted, and the turns
 *      are split into bounded chunks (distill inputs) at line boundaries;
 *   2. distill (worker thread): each chunk goes through a distiller;
 *   3. commit (the store's thread): in ONE write transaction, the nodes of
 *      any chunk being re-processed are deleted, the new insights are
 *      redacted again and written under deterministic ids, the transcript
 *      state (watermark) is updated and the job (optional) becomes done.
 *
 * Node ids are BLAKE2b(path, chunk start offset, insight index) shaped as
 * a UUID v4, so a crash between plan and commit re-processes the same
 * chunk into the same ids.  A rewritten or truncated transcript (its
 * bytes before the watermark no longer hash the same) is re-processed
 * from 0 after the nodes it produced are deleted.  No clock, no
 * randomness: the time is passed in.  See docs/ingest.md.
 */
#ifndef DS_INGEST_H
#define DS_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "ds/store.h"
#include "core/distill.h"
#include "core/queue.h"

#define DS_INGEST_TAIL 4096u                    /* bytes hashed before the watermark */
#define DS_INGEST_CHUNK_TARGET (24u << 10)      /* formatted text per chunk */
#define DS_INGEST_MAX_TURN (16u << 10)          /* one turn's text is cut to this */
#define DS_INGEST_MAX_BYTES (16u << 20)         /* new file bytes per plan (> a max line) */
#define DS_INGEST_MAX_REGIONS 100000u

/* The nodes one chunk produced (recorded so re-processing replaces them). */
typedef struct ds_ingest_region {
    uint64_t start;             /* file offset of the chunk's first line */
    uint32_t chunk;             /* chunk index */
    uint32_t nids;
    uint8_t *ids;               /* nids * DS_ID_LEN bytes, owned */
} ds_ingest_region;

/* The per-transcript state in DS_TABLE_TRANSCRIPTS (key: absolute path). */
typedef struct ds_tstate {
    uint64_t offset;            /* bytes consumed (whole lines) */
    uint8_t tail_hash[DS_HASH_LEN]; /* BLAKE2b of the <= 4 KiB before offset */
    uint64_t size;              /* file size seen at the last commit */
    int64_t mtime_ms;           /* file mtime seen at the last commit */
    uint32_t next_chunk;
    char *session_id;           /* "" until known */
    char *cwd;                  /* last cwd seen (as written), "" until known */
    char *project;              /* canonical project of that cwd, "" until known */
    ds_ingest_region *regions;
    size_t nregions;
} ds_tstate;

void ds_tstate_init(ds_tstate *s);
void ds_tstate_free(ds_tstate *s);
int ds_tstate_encode(const ds_tstate *s, uint8_t **out, size_t *outlen);
/* |out| initialized by the call.  0, DS_ERR_MALFORMED, DS_ERR_TRUNCATED, DS_ERR_NOMEM. */
int ds_tstate_decode(const void *buf, size_t len, ds_tstate *out);
/* Loads the state of |path|.  DS_ERR_NOTFOUND when the path is new. */
int ds_tstate_load(ds_store *st, const char *path, ds_tstate *out);

/* Canonicalizes a cwd (realpath when it exists, else as given); returns a
 * malloc'd string or NULL to keep |cwd|.  Supplied by the io caller. */
typedef char *(*ds_canon_fn)(void *ud, const char *cwd);

typedef struct ds_ingest_src {
    const char *path;           /* absolute transcript path */
    const char *buf;            /* bytes of the file from |buf_off| on */
    size_t len;
    uint64_t buf_off;
    uint64_t file_size;
    int64_t mtime_ms;
    int rewritten;              /* the caller already knows: start from 0 */
    size_t max_bytes;           /* new bytes per plan; 0: DS_INGEST_MAX_BYTES */
    ds_canon_fn canon;          /* optional */
    void *canon_ud;
} ds_ingest_src;

typedef struct ds_ingest_chunk {
    uint64_t start, end;        /* file byte range of its lines */
    uint32_t index;             /* chunk number within the session */
    ds_turn *turns;             /* redacted copies, owned */
    size_t nturns;
    char *project;              /* canonical project, owned */
    char *cwd;
    int64_t timestamp_ms;       /* last turn's time (0 if none) */
    ds_insight *insights;       /* filled by ds_ingest_distill */
    size_t ninsights;
} ds_ingest_chunk;

typedef struct ds_ingest_plan {
    char *path;
    int reset;                  /* discard previous nodes, start from 0 */
    int reread;                 /* caller must read again from 0 with rewritten=1 */
    int unchanged;              /* nothing new and size/mtime as recorded */
    int more;                   /* complete lines remain past |end| */
    uint64_t base;              /* watermark the plan starts from */
    uint64_t end;               /* new watermark */
    uint64_t file_size;
    int64_t mtime_ms;
    uint8_t tail_hash[DS_HASH_LEN];
    uint32_t next_chunk;        /* after the plan's chunks */
    char *session_id;
    char *cwd, *project;
    ds_ingest_chunk *chunks;
    size_t nchunks;
    size_t skipped_lines;
    size_t redactions;          /* secrets replaced in turn texts */
} ds_ingest_plan;

/* Where the caller should start reading |path| given its state |st|
 * (NULL for a new transcript) and its current size: the watermark minus
 * up to DS_INGEST_TAIL bytes (for the rewrite check), or 0.  Read up to
 * the end of the file (at most ds_ingest_read_len() bytes). */
uint64_t ds_ingest_read_from(const ds_tstate *st, uint64_t file_size);
size_t ds_ingest_read_len(const ds_tstate *st, uint64_t from, uint64_t file_size, size_t max_bytes);

/* Plans the ingestion of the new complete lines of |src| past the
 * watermark of |st| (NULL: none yet).  |out| is initialized by the call
 * (free with ds_ingest_plan_free).  When out->reread is set nothing was
 * planned: read again from 0 and call with src->rewritten = 1.  Returns
 * 0, DS_ERR_INVALID or DS_ERR_NOMEM. */
int ds_ingest_plan_make(const ds_ingest_src *src, const ds_tstate *st, ds_ingest_plan *out);
void ds_ingest_plan_free(ds_ingest_plan *p);

/* Distills every chunk of |p| with |d| (no store access: safe on a worker
 * thread).  Returns 0 or the first distiller error (insights of earlier
 * chunks are kept but a failed plan must not be committed). */
int ds_ingest_distill(ds_ingest_plan *p, ds_distiller *d);

typedef struct ds_ingest_result {
    uint64_t nodes;             /* nodes written */
    uint64_t removed;           /* old nodes deleted (re-processed chunks, reset) */
    uint64_t chunks;
} ds_ingest_result;

/* Commits |p| in one transaction: deletes the nodes of the regions being
 * replaced (all of them on reset, else those starting at or after the
 * plan's base), writes the insights as nodes (contents redacted again,
 * empty ones dropped), stores the new state and, when |job_id| is given,
 * marks that job done.  |now| stamps nodes without a turn time.
 * Returns 0 or a store error (nothing written then). */
int ds_ingest_commit(ds_store *st, const ds_ingest_plan *p, const uint8_t *job_id, int64_t now,
                     ds_ingest_result *res);

/* The deterministic node id of insight |i| of the chunk starting at |start|. */
void ds_ingest_node_id(const char *path, uint64_t start, uint32_t i, uint8_t id[DS_ID_LEN]);

/* Claude Code's project folder name for |path|: every character that is
 * not an ASCII letter or digit becomes '-' (one per UTF-16 unit, as
 * Claude does).  Returns a malloc'd string or NULL. */
char *ds_ingest_encode_project(const char *path);

#endif
