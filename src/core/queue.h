/*
 * queue.h - the ingestion job queue, kept in the store's DS_TABLE_QUEUE
 * table so that a job's state changes share transactions with the nodes
 * they produce (a job becomes "done" in the same commit as its nodes).
 *
 * A job names one transcript path and moves through
 *   pending -> processing -> done
 *                        \-> pending (retry after backoff) -> ... -> failed
 * and failed -> pending again on an explicit retry.  At start-up every
 * "processing" job goes back to "pending" (its worker died with the
 * process).  At most one job per path is not done ("live" or failed): a
 * new change of a path with a pending or processing job joins that job,
 * a change of a path whose job failed revives it.  Done jobs are pruned
 * to the newest DS_QUEUE_KEEP_DONE, so the table never grows without
 * bound.
 *
 * Records are MessagePack maps read back with the bounded reader.  Keys:
 * "j" + 16-byte job id -> job record; "p" + path -> id of the path's job
 * that is not done.  Sans-IO: the time and the random id bytes are passed
 * in.  Functions taking a ds_wtxn work inside the caller's transaction;
 * functions taking a ds_store run their own.
 */
#ifndef DS_QUEUE_H
#define DS_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "ds/store.h"

#define DS_JOB_ID_LEN 16
#define DS_JOB_HEXLEN (2 * DS_JOB_ID_LEN)
#define DS_JOB_SHORTLEN 8              /* hex digits shown in listings */
#define DS_QUEUE_KEEP_DONE 200
#define DS_QUEUE_MAX_ERROR 512         /* last error text is cut to this */

typedef enum {
    DS_JOB_PENDING = 0,
    DS_JOB_PROCESSING,
    DS_JOB_DONE,
    DS_JOB_FAILED,
    DS_JOB_NSTATES
} ds_job_state;

typedef struct ds_job {
    uint8_t id[DS_JOB_ID_LEN];
    char *path;                 /* transcript path, owned */
    ds_job_state state;
    uint32_t attempts;          /* attempts started (claims) */
    int64_t created_ms;
    int64_t updated_ms;
    int64_t next_ms;            /* pending: not to be run before this */
    uint64_t nodes;             /* done: nodes written by the last run */
    char *error;                /* last error, "" if none; owned */
} ds_job;

typedef struct ds_queue_policy {
    uint32_t max_attempts;      /* failed for good after this many; 0: 5 */
    uint32_t backoff_base_ms;   /* delay after attempt n: base * 2^(n-1); 0: 5000 */
    uint32_t backoff_max_ms;    /* cap of a delay; 0: 3600000 */
} ds_queue_policy;

typedef struct ds_queue_counts {
    uint64_t n[DS_JOB_NSTATES];
} ds_queue_counts;

const char *ds_job_state_name(ds_job_state s);
void ds_job_init(ds_job *j);
void ds_job_free(ds_job *j);
/* Lowercase hex of the id: 32 characters plus NUL. */
void ds_job_id_hex(const uint8_t id[DS_JOB_ID_LEN], char out[DS_JOB_HEXLEN + 1]);

/* Delay before the next attempt after |attempts| failed ones (>= 1). */
int64_t ds_queue_backoff_ms(const ds_queue_policy *p, uint32_t attempts);

/* Encoding (exposed for tests and fuzzing).  encode: *out malloc'd.
 * decode: |out| initialized by the call; 0, DS_ERR_MALFORMED,
 * DS_ERR_TRUNCATED or DS_ERR_NOMEM. */
int ds_job_encode(const ds_job *j, uint8_t **out, size_t *outlen);
int ds_job_decode(const void *buf, size_t len, const uint8_t id[DS_JOB_ID_LEN], ds_job *out);

/* Queues |path| to run not before |not_before|.  If the path has a
 * pending job, that job is kept (its next_ms moved earlier to
 * |not_before| if later); a processing job is kept as is; a failed job is
 * revived (pending, attempts 0).  Otherwise a new job is created with id
 * bytes |rnd|.  |out| (optional) receives the job; *created (optional) 1
 * for a new job.  Errors: DS_ERR_INVALID, DS_ERR_NOMEM, store errors. */
int ds_queue_enqueue(ds_wtxn *tx, const char *path, const uint8_t rnd[DS_JOB_ID_LEN],
                     int64_t now, int64_t not_before, ds_job *out, int *created);
/* Reads job |id| into |out| (initialized by the call).  DS_ERR_NOTFOUND. */
int ds_queue_get_tx(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], ds_job *out);
int ds_queue_get(ds_store *st, const uint8_t id[DS_JOB_ID_LEN], ds_job *out);
/* pending -> processing, attempts + 1.  DS_ERR_NOTFOUND; DS_ERR_BUSY when
 * the job is not pending. */
int ds_queue_claim(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], int64_t now, ds_job *out);
/* processing -> done with |nodes|; the path is free for a new job.
 * DS_ERR_NOTFOUND; DS_ERR_BUSY when the job is not processing. */
int ds_queue_finish(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], int64_t now, uint64_t nodes);
/* processing -> pending at now + backoff, or -> failed once attempts
 * reach the policy's maximum; |error| (may be NULL) is recorded.
 * *out_state (optional) receives the new state.  DS_ERR_NOTFOUND,
 * DS_ERR_BUSY (not processing). */
int ds_queue_fail(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], int64_t now, const char *error,
                  const ds_queue_policy *p, ds_job_state *out_state);
/* failed -> pending now, attempts 0.  DS_ERR_NOTFOUND, DS_ERR_BUSY (not failed). */
int ds_queue_retry(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], int64_t now);

/* Loads every job, oldest created first (ties by id) into a malloc'd
 * array (*jobs, *count; free with ds_queue_jobs_free).  |state_mask|
 * selects states (bit 1 << state); 0 means all. */
int ds_queue_list(ds_store *st, unsigned state_mask, ds_job **jobs, size_t *count);
void ds_queue_jobs_free(ds_job *jobs, size_t count);
int ds_queue_count(ds_store *st, ds_queue_counts *out);
/* Resolves a hex id prefix (at least 1 digit, at most 32) to a job id.
 * DS_ERR_INVALID (not hex), DS_ERR_NOTFOUND, DS_ERR_AMBIGUOUS. */
int ds_queue_resolve(ds_store *st, const char *prefix, uint8_t id[DS_JOB_ID_LEN]);

/* Start-up recovery: every processing job back to pending (due now).
 * *count (optional) receives how many. */
int ds_queue_recover(ds_store *st, int64_t now, size_t *count);
/* Every failed job back to pending; *count optional. */
int ds_queue_retry_all(ds_store *st, int64_t now, size_t *count);
/* Removes done and failed jobs; *count optional. */
int ds_queue_clear(ds_store *st, size_t *count);
/* Removes the oldest done jobs beyond |keep|; *count optional. */
int ds_queue_prune(ds_store *st, size_t keep, size_t *count);

#endif
