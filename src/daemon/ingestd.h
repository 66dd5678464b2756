/*
 * ingestd.h - the session-ingestion service that runs inside the daemon's
 * libuv loop: watches the configured roots (Claude Code's
 * ~/.claude/projects by default), waits until a session has been idle,
 * queues a job, distills the new part of the transcript in a worker
 * thread, and commits nodes + watermark + job state in one transaction on
 * the loop thread (all store writes happen on the loop thread).
 *
 * The same ingest code runs in process for `ds scan` when no daemon runs.
 */
#ifndef DS_INGESTD_H
#define DS_INGESTD_H

#include <uv.h>
#include <msgpack.h>

#include "core/distill.h"
#include "core/queue.h"
#include "daemon/config.h"
#include "daemon/ops.h"

typedef struct ds_ingestd ds_ingestd;

/* Starts watching and catches up with everything changed while the
 * daemon was down (sessions past their watermark are queued).  |ctx|
 * must outlive the service.  Returns 0 or a negative DS_ERR_*. */
int ds_ingestd_start(ds_ingestd **out, uv_loop_t *loop, ds_ctx *ctx, const ds_config *cfg);
/* Applies a reloaded configuration (roots, idle time, distiller). */
int ds_ingestd_reload(ds_ingestd *d, const ds_config *cfg);
/* Stops watching and timers.  A distillation in flight is abandoned
 * (its job goes back to pending at the next start); a commit is never cut
 * in half because commits run on the loop thread.  |done| is called once
 * every handle is closed. */
void ds_ingestd_stop(ds_ingestd *d, void (*done)(void *ud), void *ud);
/* Outcome of ingesting one transcript synchronously. */
typedef struct ds_ingestd_file_result {
    uint64_t nodes, removed;
    int unchanged;              /* nothing new in the file */
    char error[512];
} ds_ingestd_file_result;

/* Builds the distiller |cfg| selects.  On failure returns a DS_ERR_* and
 * writes a message into |err|. */
int ds_ingestd_distiller_new(const ds_config *cfg, ds_distiller **out, char *err, size_t errlen);
/* The queue's retry policy from |cfg|. */
void ds_ingestd_policy(const ds_config *cfg, ds_queue_policy *p);
/* Ingests the new part of transcript |path| now, in the calling thread
 * (`ds scan` without a daemon, and per-file scan requests in it). */
int ds_ingestd_process_file(ds_ctx *ctx, ds_distiller *dist, const ds_queue_policy *pol,
                            const char *path, ds_ingestd_file_result *res);
/* Wakes the job runner (after a retry or a scan queued work). */
void ds_ingestd_kick(ds_ingestd *d);

/* Packs {watched: [root], sessions_tracked, queue: {pending, processing,
 * done, failed}, last_ingest: {path, at, nodes} | nil} for `ds status`. */
void ds_ingestd_status(ds_ingestd *d, msgpack_packer *pk);

#endif
