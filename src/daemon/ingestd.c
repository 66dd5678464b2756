/*
 * ingestd.c - the session-ingestion service in the daemon's libuv loop.
 * The watcher reports changed transcripts; each session has a one-shot
 * idle timer re-armed on every change (no polling); when it fires, a job
 * is queued in the store.  One job runs at a time: it is claimed on the
 * loop thread, the transcript is read, planned and distilled in
 * uv_queue_work (the worker never touches the store), and the commit
 * (nodes + watermark + job done, one transaction) runs on the loop thread
 * in the after-work callback.  Failures go back to the queue with
 * backoff; a one-shot timer wakes the runner when the next retry is due.
 *
 * The synchronous variant used by `ds scan` (ds_ingestd_process_file)
 * runs the same steps in the caller's thread.  See docs/ingest.md.
 */
#include "daemon/ingestd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ingest.h"
#include "core/queue.h"
#include "daemon/log.h"
#include "io/distill_io.h"
#include "io/mem.h"
#include "io/watch.h"

#define ERRLEN 512
#define PRUNE_EVERY 16

/* ---- shared with ops_ingest.c (declared there too) ------------------------ */


/* ---- types ---------------------------------------------------------------- */

typedef struct session {
    uv_timer_t timer;           /* idle timer, one-shot */
    struct ds_ingestd *d;
    char *path;
    struct session *next;
} session;

typedef struct work {
    uv_work_t req;
    struct ds_ingestd *d;       /* NULL once orphaned by stop */
    ds_distiller *dist;
    int own_dist;               /* orphaned: the work frees the distiller */
    char *path;
    uint8_t job[DS_JOB_ID_LEN];
    ds_tstate st;
    int have_state;
    ds_ingest_plan plan;
    int planned;
    int gone;                   /* the transcript no longer exists */
    int rc;
    char err[ERRLEN];
} work;

struct ds_ingestd {
    uv_loop_t *loop;
    ds_ctx *ctx;
    char **roots;
    size_t nroots;
    uint32_t idle_s;
    ds_queue_policy policy;
    ds_distiller *dist;
    ds_watch *watch;
    session *sessions;
    size_t nsessions;
    uv_timer_t retry;
    work *busy;
    unsigned done_since_prune;
    int worked;           /* a job ran since memory was last handed back */
    int stopping;
    size_t open_handles;        /* timers and the watch, while stopping */
    void (*done)(void *ud);
    void *done_ud;
    char *last_path;
    int64_t last_at;
    uint64_t last_nodes;
};

/* ---- configuration -------------------------------------------------------- */

static void distill_log(void *ud, const char *line)
{
    (void)ud;
    DS_LOGI("distill: %s", line);
}

int ds_ingestd_distiller_new(const ds_config *cfg, ds_distiller **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc;
    switch (cfg->distiller.kind) {
    case DS_DISTILL_COMMAND: {
        ds_distill_command_config cc = {
            .argv = (const char *const *)cfg->distiller.argv,
            .timeout_ms = (int)cfg->distiller.timeout_ms,
            .log = distill_log,
        };
        rc = ds_distiller_command_new(&cc, out);
        break;
    }
    case DS_DISTILL_HTTP: {
        ds_distill_http_config hc = {
            .provider = cfg->distiller.provider,
            .url = cfg->distiller.url,
            .model = cfg->distiller.model,
            .api_key_env = cfg->distiller.api_key_env,
            .connect_timeout_ms = cfg->distiller.connect_timeout_ms,
            .timeout_ms = cfg->distiller.timeout_ms,
            .max_retries = (int)cfg->distiller.max_retries,
            .log = distill_log,
        };
        rc = ds_distiller_http_new(&hc, out);
        break;
    }
    default:
        rc = ds_distiller_extractive_new(out);
        break;
    }
    if (rc && err && errlen)
        snprintf(err, errlen, "cannot create the %s distiller: %s",
                 cfg->distiller.kind == DS_DISTILL_COMMAND ? "command"
                 : cfg->distiller.kind == DS_DISTILL_HTTP  ? "http"
                                                           : "extractive",
                 ds_strerror(rc));
    return rc;
}

void ds_ingestd_policy(const ds_config *cfg, ds_queue_policy *p)
{
    memset(p, 0, sizeof *p);
    p->max_attempts = cfg->queue_max_attempts;
    p->backoff_base_ms = cfg->queue_backoff_base_ms;
}

/* ---- reading and planning (any thread, no store) --------------------------- */

static char *canon_cwd(void *ud, const char *cwd)
{
    (void)ud;
    return cwd[0] == '/' ? realpath(cwd, NULL) : NULL;
}

static int read_at(int fd, uint64_t off, size_t len, char **out, size_t *got)
{
    char *buf = malloc(len + 1);
    if (!buf)
        return DS_ERR_NOMEM;
    size_t n = 0;
    while (n < len) {
        ssize_t r = pread(fd, buf + n, len - n, (off_t)(off + n));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return DS_ERR_IO;
        }
        if (r == 0)
            break; /* shrank meanwhile: plan on what is there */
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    *got = n;
    return 0;
}

/* Reads and plans |w->path| against w->st; sets w->gone when missing. */
static int prepare(work *w)
{
    int fd = open(w->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            w->gone = 1;
            return 0;
        }
        snprintf(w->err, sizeof w->err, "cannot open %s: %s", w->path, strerror(errno));
        return DS_ERR_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(w->err, sizeof w->err, "%s is not a regular file", w->path);
        close(fd);
        return DS_ERR_IO;
    }
    ds_tstate *st = w->have_state ? &w->st : NULL;
    ds_ingest_src src = {
        .path = w->path,
        .file_size = (uint64_t)sb.st_size,
        .mtime_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000,
        .canon = canon_cwd,
    };
    int rc = 0;
    for (int round = 0; round < 2; round++) {
        src.rewritten = round;
        src.buf_off = round ? 0 : ds_ingest_read_from(st, src.file_size);
        size_t want = ds_ingest_read_len(st, src.buf_off, src.file_size, 0);
        char *buf = NULL;
        rc = read_at(fd, src.buf_off, want, &buf, &src.len);
        if (rc) {
            snprintf(w->err, sizeof w->err, "cannot read %s: %s", w->path, strerror(errno));
            break;
        }
        src.buf = buf;
        if (src.buf_off + src.len < src.file_size)
            src.file_size = src.buf_off + src.len;
        rc = ds_ingest_plan_make(&src, st, &w->plan);
        free(buf);
        if (rc) {
            snprintf(w->err, sizeof w->err, "planning %s: %s", w->path, ds_strerror(rc));
            break;
        }
        if (!w->plan.reread) {
            w->planned = 1;
            break;
        }
        ds_ingest_plan_free(&w->plan);
    }
    close(fd);
    if (!rc && !w->planned) {
        snprintf(w->err, sizeof w->err, "%s keeps changing while being read", w->path);
        rc = DS_ERR_BUSY;
    }
    return rc;
}

/* Plans and distills (the worker's whole job). */
static int plan_and_distill(work *w)
{
    int rc = prepare(w);
    if (rc || w->gone || w->plan.nchunks == 0)
        return rc;
    rc = ds_ingest_distill(&w->plan, w->dist);
    if (rc) {
        const char *detail = ds_distiller_last_error(w->dist);
        snprintf(w->err, sizeof w->err, "%s distiller: %s", w->dist->name,
                 detail && detail[0] ? detail : ds_strerror(rc));
    }
    return rc;
}

static void work_free(work *w)
{
    if (!w)
        return;
    if (w->own_dist && w->dist)
        w->dist->destroy(w->dist);
    ds_ingest_plan_free(&w->plan);
    if (w->have_state)
        ds_tstate_free(&w->st);
    free(w->path);
    free(w);
}

static work *work_new(const char *path, ds_distiller *dist)
{
    work *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->path = strdup(path);
    if (!w->path) {
        free(w);
        return NULL;
    }
    w->dist = dist;
    return w;
}

/* ---- queue helpers (loop thread) ------------------------------------------ */

static int enqueue(ds_ctx *ctx, ds_store *st, const char *path, int64_t not_before, ds_job *out)
{
    uint8_t rnd[DS_JOB_ID_LEN];
    ctx->random_buf(rnd, sizeof rnd);
    ds_wtxn *tx = NULL;
    int rc = ds_store_begin(st, &tx);
    if (rc)
        return rc;
    rc = ds_queue_enqueue(tx, path, rnd, ctx->now_ms(), not_before, out, NULL);
    if (rc) {
        ds_wtxn_abort(tx);
        return rc;
    }
    return ds_wtxn_commit(tx);
}

static int claim(ds_store *st, const uint8_t *id, int64_t now)
{
    ds_wtxn *tx = NULL;
    int rc = ds_store_begin(st, &tx);
    if (rc)
        return rc;
    rc = ds_queue_claim(tx, id, now, NULL);
    if (rc) {
        ds_wtxn_abort(tx);
        return rc;
    }
    return ds_wtxn_commit(tx);
}

static int record_failure(ds_store *st, const uint8_t *id, int64_t now, const char *err,
                          const ds_queue_policy *pol, ds_job_state *state)
{
    ds_wtxn *tx = NULL;
    int rc = ds_store_begin(st, &tx);
    if (rc)
        return rc;
    rc = ds_queue_fail(tx, id, now, err, pol, state);
    if (rc) {
        ds_wtxn_abort(tx);
        return rc;
    }
    return ds_wtxn_commit(tx);
}

static int finish_only(ds_store *st, const uint8_t *id, int64_t now)
{
    ds_wtxn *tx = NULL;
    int rc = ds_store_begin(st, &tx);
    if (rc)
        return rc;
    rc = ds_queue_finish(tx, id, now, 0);
    if (rc) {
        ds_wtxn_abort(tx);
        return rc == DS_ERR_BUSY || rc == DS_ERR_NOTFOUND ? 0 : rc;
    }
    return ds_wtxn_commit(tx);
}

/* ---- synchronous processing (ds scan) ------------------------------------- */

int ds_ingestd_process_file(ds_ctx *ctx, ds_distiller *dist, const ds_queue_policy *pol,
                            const char *path, ds_ingestd_file_result *res)
{
    memset(res, 0, sizeof *res);
    ds_store *st;
    int rc = ds_ctx_store(ctx, 1, &st);
    if (rc) {
        snprintf(res->error, sizeof res->error, "%.500s", ctx->error.message);
        return rc;
    }
    res->unchanged = 1;
    /* Nothing changed since the last commit: no job, no read. */
    struct stat sb;
    ds_tstate ts;
    if (stat(path, &sb) == 0 && ds_tstate_load(st, path, &ts) == 0) {
        int64_t mtime = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
        int same = ts.size == (uint64_t)sb.st_size && ts.mtime_ms == mtime;
        ds_tstate_free(&ts);
        if (same)
            return 0;
    }
    /* Bounded: each round consumes up to DS_INGEST_MAX_BYTES of the file. */
    for (int round = 0; round < 4096; round++) {
        ds_job job;
        int have_job = enqueue(ctx, st, path, ctx->now_ms(), &job) == 0;
        if (have_job && claim(st, job.id, ctx->now_ms()) != 0)
            have_job = 0; /* the daemon is on it: work without a job */
        work *w = work_new(path, dist);
        if (!w) {
            if (have_job)
                ds_job_free(&job);
            snprintf(res->error, sizeof res->error, "out of memory");
            return DS_ERR_NOMEM;
        }
        if (have_job)
            memcpy(w->job, job.id, DS_JOB_ID_LEN);
        w->have_state = ds_tstate_load(st, path, &w->st) == 0;
        rc = plan_and_distill(w);
        int more = 0;
        int64_t now = ctx->now_ms();
        if (!rc && w->gone) {
            if (have_job)
                finish_only(st, w->job, now);
        } else if (!rc) {
            ds_ingest_result r;
            rc = ds_ingest_commit(st, &w->plan, have_job ? w->job : NULL, now, &r);
            if (rc) {
                snprintf(w->err, sizeof w->err, "storing the insights of %s: %s", path,
                         ds_strerror(rc));
            } else {
                res->nodes += r.nodes;
                res->removed += r.removed;
                if (!w->plan.unchanged)
                    res->unchanged = 0;
                more = w->plan.more;
            }
        }
        if (rc) {
            snprintf(res->error, sizeof res->error, "%s", w->err[0] ? w->err : ds_strerror(rc));
            if (have_job)
                record_failure(st, w->job, now, res->error, pol, NULL);
        }
        if (have_job)
            ds_job_free(&job);
        work_free(w);
        if (rc || !more)
            break;
    }
    return rc;
}

/* ---- the service ---------------------------------------------------------- */

static void run_next(ds_ingestd *d);

static void handle_closed(uv_handle_t *h)
{
    ds_ingestd *d = h->data;
    if (h != (uv_handle_t *)&d->retry) {
        session *s = (session *)h;
        free(s->path);
        free(s);
    }
    if (--d->open_handles == 0 && d->stopping) {
        void (*done)(void *) = d->done;
        void *ud = d->done_ud;
        for (size_t i = 0; i < d->nroots; i++)
            free(d->roots[i]);
        free(d->roots);
        if (d->dist)
            d->dist->destroy(d->dist);
        free(d->last_path);
        free(d);
        if (done)
            done(ud);
    }
}

static ds_store *store_of(ds_ingestd *d)
{
    ds_store *st = NULL;
    if (ds_ctx_store(d->ctx, 1, &st) != 0) {
        DS_LOGE("ingest: %s", d->ctx->error.message);
        return NULL;
    }
    return st;
}

static void on_retry(uv_timer_t *t)
{
    run_next(t->data);
}

static void after_work(uv_work_t *req, int status)
{
    work *w = (work *)req;
    ds_ingestd *d = w->d;
    if (!d) {
        work_free(w); /* orphaned by stop: the job is recovered at next start */
        return;
    }
    d->busy = NULL;
    d->worked = 1;
    ds_store *st = store_of(d);
    if (status == UV_ECANCELED || !st) {
        work_free(w);
        return;
    }
    int64_t now = d->ctx->now_ms();
    int rc = w->rc;
    int more = 0;
    if (!rc && w->gone) {
        DS_LOGI("ingest: %s is gone; job done", w->path);
        rc = finish_only(st, w->job, now);
    } else if (!rc) {
        ds_ingest_result r;
        rc = ds_ingest_commit(st, &w->plan, w->job, now, &r);
        if (rc) {
            snprintf(w->err, sizeof w->err, "storing the insights of %s: %s", w->path,
                     ds_strerror(rc));
        } else {
            more = w->plan.more;
            if (!w->plan.unchanged) {
                DS_LOGI("ingest: %s: %llu node%s from %zu chunk%s (replaced %llu)%s", w->path,
                        (unsigned long long)r.nodes, r.nodes == 1 ? "" : "s", w->plan.nchunks,
                        w->plan.nchunks == 1 ? "" : "s", (unsigned long long)r.removed,
                        w->plan.reset ? ", transcript was rewritten" : "");
                char *p = strdup(w->path);
                if (p) {
                    free(d->last_path);
                    d->last_path = p;
                    d->last_at = now;
                    d->last_nodes = r.nodes;
                }
            }
            if (++d->done_since_prune >= PRUNE_EVERY) {
                d->done_since_prune = 0;
                ds_queue_prune(st, DS_QUEUE_KEEP_DONE, NULL);
            }
        }
    }
    if (rc) {
        ds_job_state s = DS_JOB_PENDING;
        const char *msg = w->err[0] ? w->err : ds_strerror(rc);
        int frc = record_failure(st, w->job, now, msg, &d->policy, &s);
        if (frc)
            DS_LOGE("ingest: cannot record the failure of %s: %s", w->path, ds_strerror(frc));
        else if (s == DS_JOB_FAILED)
            DS_LOGE("ingest: %s failed for good: %s (ds queue retry to try again)", w->path, msg);
        else
            DS_LOGW("ingest: %s: %s; will retry", w->path, msg);
    }
    if (more) {
        ds_job j;
        if (enqueue(d->ctx, st, w->path, now, &j) == 0)
            ds_job_free(&j);
    }
    work_free(w);
    run_next(d);
}

static void do_work(uv_work_t *req)
{
    work *w = (work *)req;
    w->rc = plan_and_distill(w);
}

static void arm_retry(ds_ingestd *d, int64_t delay_ms)
{
    if (d->stopping)
        return;
    if (delay_ms < 0)
        delay_ms = 0;
    uv_timer_start(&d->retry, on_retry, (uint64_t)delay_ms, 0);
}

static void run_next(ds_ingestd *d)
{
    if (d->busy || d->stopping)
        return;
    ds_store *st = store_of(d);
    if (!st)
        return;
    ds_job *jobs = NULL;
    size_t n = 0;
    int rc = ds_queue_list(st, 1u << DS_JOB_PENDING, &jobs, &n);
    if (rc) {
        DS_LOGE("ingest: cannot read the queue: %s", ds_strerror(rc));
        arm_retry(d, 5000);
        return;
    }
    int64_t now = d->ctx->now_ms(), next = INT64_MAX;
    size_t pick = n;
    for (size_t i = 0; i < n; i++) {
        if (jobs[i].next_ms <= now) {
            pick = i;
            break; /* oldest first */
        }
        if (jobs[i].next_ms < next)
            next = jobs[i].next_ms;
    }
    if (pick == n) {
        if (next != INT64_MAX)
            arm_retry(d, next - now);
        ds_queue_jobs_free(jobs, n);
        if (d->worked) {      /* the queue ran dry: give back what ingest freed */
            d->worked = 0;
            ds_mem_release();
        }
        return;
    }
    work *w = work_new(jobs[pick].path, d->dist);
    if (w) {
        memcpy(w->job, jobs[pick].id, DS_JOB_ID_LEN);
        w->d = d;
    }
    ds_queue_jobs_free(jobs, n);
    if (!w) {
        arm_retry(d, 1000);
        return;
    }
    rc = claim(st, w->job, now);
    if (rc) {
        work_free(w);
        if (rc == DS_ERR_BUSY || rc == DS_ERR_NOTFOUND)
            arm_retry(d, 0); /* moved meanwhile: look again */
        else
            arm_retry(d, 5000);
        return;
    }
    w->have_state = ds_tstate_load(st, w->path, &w->st) == 0;
    d->busy = w;
    rc = uv_queue_work(d->loop, &w->req, do_work, after_work);
    if (rc) {
        d->busy = NULL;
        record_failure(st, w->job, now, uv_strerror(rc), &d->policy, NULL);
        work_free(w);
        arm_retry(d, 1000);
    }
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static void on_idle(uv_timer_t *t)
{
    session *s = (session *)t;
    ds_ingestd *d = s->d;
    ds_store *st = store_of(d);
    if (!st)
        return;
    ds_job j;
    int rc = enqueue(d->ctx, st, s->path, d->ctx->now_ms(), &j);
    if (rc) {
        DS_LOGE("ingest: cannot queue %s: %s", s->path, ds_strerror(rc));
        return;
    }
    DS_LOGD("ingest: %s idle, queued", s->path);
    ds_job_free(&j);
    run_next(d);
}

static session *session_get(ds_ingestd *d, const char *path, int create)
{
    for (session *s = d->sessions; s; s = s->next)
        if (strcmp(s->path, path) == 0)
            return s;
    if (!create)
        return NULL;
    session *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return NULL;
    }
    uv_timer_init(d->loop, &s->timer);
    s->timer.data = d;
    s->d = d;
    s->next = d->sessions;
    d->sessions = s;
    d->nsessions++;
    return s;
}

static void on_file(void *ud, const char *path, const struct stat *sb, int catchup)
{
    ds_ingestd *d = ud;
    if (d->stopping || !has_suffix(path, ".jsonl"))
        return;
    session *s = session_get(d, path, sb != NULL);
    if (!s)
        return;
    if (!sb) {
        uv_timer_stop(&s->timer);
        return;
    }
    uint64_t idle_ms = (uint64_t)d->idle_s * 1000;
    if (catchup) {
        ds_store *st = store_of(d);
        if (!st)
            return;
        ds_tstate ts;
        int64_t mtime = (int64_t)sb->st_mtim.tv_sec * 1000 + sb->st_mtim.tv_nsec / 1000000;
        if (ds_tstate_load(st, path, &ts) == 0) {
            int same = ts.size == (uint64_t)sb->st_size && ts.mtime_ms == mtime;
            ds_tstate_free(&ts);
            if (same)
                return; /* nothing happened while we were away */
        }
        int64_t age = d->ctx->now_ms() - mtime;
        if (age >= (int64_t)idle_ms) {
            ds_job j;
            if (enqueue(d->ctx, st, path, d->ctx->now_ms(), &j) == 0)
                ds_job_free(&j);
            return;
        }
        idle_ms -= (uint64_t)(age > 0 ? age : 0);
    }
    uv_timer_start(&s->timer, on_idle, idle_ms, 0);
}

static int set_roots(ds_ingestd *d, const ds_config *cfg)
{
    char **roots = calloc(cfg->nwatch ? cfg->nwatch : 1, sizeof *roots);
    if (!roots)
        return DS_ERR_NOMEM;
    for (size_t i = 0; i < cfg->nwatch; i++) {
        if (!(roots[i] = strdup(cfg->watch[i]))) {
            for (size_t k = 0; k < i; k++)
                free(roots[k]);
            free(roots);
            return DS_ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < d->nroots; i++)
        free(d->roots[i]);
    free(d->roots);
    d->roots = roots;
    d->nroots = cfg->nwatch;
    return 0;
}

static int start_watch(ds_ingestd *d)
{
    int rc = ds_watch_start(&d->watch, d->loop, (const char *const *)d->roots, d->nroots, on_file,
                            d);
    if (rc)
        return rc;
    DS_LOGI("ingest: watching %zu root%s (%zu director%s), idle %u s, %s distiller", d->nroots,
            d->nroots == 1 ? "" : "s", ds_watch_dirs(d->watch),
            ds_watch_dirs(d->watch) == 1 ? "y" : "ies", d->idle_s, d->dist->name);
    return 0;
}

int ds_ingestd_start(ds_ingestd **out, uv_loop_t *loop, ds_ctx *ctx, const ds_config *cfg)
{
    *out = NULL;
    if (!loop || !ctx || !cfg)
        return DS_ERR_INVALID;
    ds_ingestd *d = calloc(1, sizeof *d);
    if (!d)
        return DS_ERR_NOMEM;
    d->loop = loop;
    d->ctx = ctx;
    d->idle_s = cfg->idle_seconds;
    ds_ingestd_policy(cfg, &d->policy);
    char err[256];
    int rc = set_roots(d, cfg);
    if (!rc)
        rc = ds_ingestd_distiller_new(cfg, &d->dist, err, sizeof err);
    if (rc) {
        if (d->dist)
            DS_LOGE("ingest: %s", err);
        goto fail;
    }
    ds_store *st = store_of(d);
    if (!st) {
        rc = ctx->error.err ? ctx->error.err : DS_ERR_STORE;
        goto fail;
    }
    size_t recovered = 0;
    rc = ds_queue_recover(st, ctx->now_ms(), &recovered);
    if (rc)
        goto fail;
    if (recovered)
        DS_LOGI("ingest: %zu interrupted job%s back to pending", recovered,
                recovered == 1 ? "" : "s");
    /* The catch-up reports arrive during start_watch; it fails only
     * before making any (bad roots, out of memory). */
    rc = start_watch(d);
    if (rc)
        goto fail;
    uv_timer_init(loop, &d->retry);
    d->retry.data = d;
    *out = d;
    run_next(d);
    return 0;

fail:
    for (size_t i = 0; i < d->nroots; i++)
        free(d->roots[i]);
    free(d->roots);
    if (d->dist)
        d->dist->destroy(d->dist);
    free(d);
    return rc;
}

static void rewatch_done(void *ud)
{
    ds_ingestd *d = ud;
    if (d->stopping)
        return;
    if (start_watch(d) != 0)
        DS_LOGE("ingest: cannot watch the new roots");
}

int ds_ingestd_reload(ds_ingestd *d, const ds_config *cfg)
{
    if (!d || !cfg || d->stopping)
        return DS_ERR_INVALID;
    ds_distiller *nd = NULL;
    char err[256];
    int rc = ds_ingestd_distiller_new(cfg, &nd, err, sizeof err);
    if (rc) {
        DS_LOGE("ingest: %s; keeping the previous one", err);
        return rc;
    }
    if (d->busy && d->busy->dist == d->dist) {
        /* The worker uses the old one: it now belongs to that work. */
        d->busy->own_dist = 1;
    } else if (d->dist) {
        d->dist->destroy(d->dist);
    }
    d->dist = nd;
    d->idle_s = cfg->idle_seconds;
    ds_ingestd_policy(cfg, &d->policy);
    int same = cfg->nwatch == d->nroots;
    for (size_t i = 0; same && i < d->nroots; i++)
        same = strcmp(cfg->watch[i], d->roots[i]) == 0;
    if (!same) {
        rc = set_roots(d, cfg);
        if (rc)
            return rc;
        ds_watch *old = d->watch;
        d->watch = NULL;
        ds_watch_stop(old, rewatch_done, d);
    }
    DS_LOGI("ingest: configuration reloaded (%s distiller, idle %u s)", d->dist->name, d->idle_s);
    return 0;
}

static void final_watch_stopped(void *ud)
{
    ds_ingestd *d = ud;
    handle_closed((uv_handle_t *)&d->retry);
}

void ds_ingestd_stop(ds_ingestd *d, void (*done)(void *ud), void *ud)
{
    if (!d) {
        if (done)
            done(ud);
        return;
    }
    d->stopping = 1;
    d->done = done;
    d->done_ud = ud;
    if (d->busy) {
        /* Abandon the distillation: the work frees itself (and the
         * distiller it uses) when it ends; its job stays "processing"
         * and returns to pending at the next start. */
        work *w = d->busy;
        d->busy = NULL;
        w->d = NULL;
        w->own_dist = 1;
        d->dist = NULL;
        uv_cancel((uv_req_t *)&w->req); /* fails harmlessly once running */
    }
    /* Handles: every session timer, the retry timer, and the watch (one
     * count, released when it reports closed). */
    d->open_handles = 1 + 1;
    for (session *s = d->sessions; s; s = s->next)
        d->open_handles++;
    for (session *s = d->sessions, *nx; s; s = nx) {
        nx = s->next;
        uv_close((uv_handle_t *)&s->timer, handle_closed);
    }
    d->sessions = NULL;
    uv_close((uv_handle_t *)&d->retry, handle_closed);
    ds_watch *w = d->watch;
    d->watch = NULL;
    ds_watch_stop(w, final_watch_stopped, d);
}

void ds_ingestd_status(ds_ingestd *d, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    msgpack_pack_str_with_body(pk, "watched", 7);
    msgpack_pack_array(pk, (uint32_t)d->nroots);
    for (size_t i = 0; i < d->nroots; i++)
        msgpack_pack_str_with_body(pk, d->roots[i], strlen(d->roots[i]));
    msgpack_pack_str_with_body(pk, "sessions_tracked", 16);
    msgpack_pack_uint64(pk, d->nsessions);
    ds_queue_counts c;
    memset(&c, 0, sizeof c);
    ds_store *st = NULL;
    if (ds_ctx_store(d->ctx, 0, &st) == 0)
        ds_queue_count(st, &c);
    msgpack_pack_str_with_body(pk, "queue", 5);
    msgpack_pack_map(pk, DS_JOB_NSTATES);
    for (int s = 0; s < DS_JOB_NSTATES; s++) {
        const char *name = ds_job_state_name((ds_job_state)s);
        msgpack_pack_str_with_body(pk, name, strlen(name));
        msgpack_pack_uint64(pk, c.n[s]);
    }
    msgpack_pack_str_with_body(pk, "last_ingest", 11);
    if (!d->last_path) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_map(pk, 3);
    msgpack_pack_str_with_body(pk, "path", 4);
    msgpack_pack_str_with_body(pk, d->last_path, strlen(d->last_path));
    msgpack_pack_str_with_body(pk, "at", 2);
    msgpack_pack_int64(pk, d->last_at);
    msgpack_pack_str_with_body(pk, "nodes", 5);
    msgpack_pack_uint64(pk, d->last_nodes);
}

void ds_ingestd_kick(ds_ingestd *d)
{
    if (d && !d->stopping)
        run_next(d);
}
