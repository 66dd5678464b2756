/*
 * ops_ingest.c - the "scan" and "queue" requests.  scan finds a project's
 * Claude Code sessions in the watched roots and ingests them at once,
 * with the same code the daemon's service uses (in process when no daemon
 * runs, on the daemon's loop thread otherwise); queue shows and changes
 * the job queue.  Both read HOME/config.json for the roots, the
 * distiller and the retry policy.
 */
#include "daemon/ops.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ingest.h"
#include "core/queue.h"
#include "core/transcript.h"
#include "core/util.h"
#include "daemon/config.h"
#include "daemon/home.h"
#include "daemon/ingestd.h"


#define MAX_SESSIONS 100000
#define CWD_PROBE (256u << 10)   /* bytes read to learn a transcript's cwd */

static int load_config(ds_ctx *ctx, ds_config *cfg)
{
    char *path = ds_path_join(ctx->home, DS_CONFIG_FILE);
    if (!path)
        return ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    char err[512];
    int rc = ds_config_load(cfg, path, ds_user_home(), err, sizeof err);
    free(path);
    if (rc) {
        ds_config_free(cfg);
        return ds_ops_fail(ctx, rc, DS_OPS_E_INVALID, "Fix the file and try again.", "%s", err);
    }
    return 0;
}

static int flag(const msgpack_object *params, const char *key)
{
    const msgpack_object *v = ds_ops_get(params, key);
    if (!v)
        return 0;
    if (v->type == MSGPACK_OBJECT_BOOLEAN)
        return v->via.boolean;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return v->via.u64 != 0;
    return 0;
}

/* ---- finding a project's sessions ----------------------------------------- */

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static int sv_push(strvec *sv, char *s)
{
    if (!s)
        return DS_ERR_NOMEM;
    if (sv->n >= MAX_SESSIONS) {
        free(s);
        return 0;
    }
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 16;
        char **nv = realloc(sv->v, cap * sizeof *nv);
        if (!nv) {
            free(s);
            return DS_ERR_NOMEM;
        }
        sv->v = nv;
        sv->cap = cap;
    }
    sv->v[sv->n++] = s;
    return 0;
}

static void sv_free(strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    memset(sv, 0, sizeof *sv);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_jsonl(const char *name)
{
    size_t n = strlen(name);
    return n > 6 && strcmp(name + n - 6, ".jsonl") == 0;
}

/* 1 when the first cwd of transcript |path| is |project| or beneath it. */
static int cwd_within(const char *path, const char *project)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return 0;
    char *buf = malloc(CWD_PROBE);
    ssize_t n = buf ? read(fd, buf, CWD_PROBE) : -1;
    close(fd);
    int in = 0;
    if (n > 0) {
        ds_transcript_batch b;
        if (ds_transcript_parse(buf, (size_t)n, 0, &b) == 0) {
            for (size_t i = 0; i < b.count; i++) {
                if (!b.turns[i].cwd[0])
                    continue;
                char *canon = realpath(b.turns[i].cwd, NULL);
                in = ds_path_within(canon ? canon : b.turns[i].cwd, project);
                free(canon);
                break;
            }
            ds_transcript_batch_free(&b);
        }
    }
    free(buf);
    return in;
}

static int add_dir_sessions(strvec *out, const char *dir, const char *project, int check_cwd)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)) != NULL) {
        if (!is_jsonl(e->d_name))
            continue;
        char *p = ds_path_join(dir, e->d_name);
        if (!p) {
            rc = DS_ERR_NOMEM;
            break;
        }
        struct stat sb;
        if (lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode) ||
            (check_cwd && !cwd_within(p, project))) {
            free(p);
            continue;
        }
        rc = sv_push(out, p);
    }
    closedir(d);
    return rc;
}

/* Sessions of |project| (canonical) or |given| (as typed, absolute) in
 * the roots: folders named with Claude's encoding of either path hold
 * them; folders whose name extends that encoding are checked by cwd. */
static int find_sessions(const ds_config *cfg, const char *project, const char *given,
                         strvec *out)
{
    char *enc[2] = { ds_ingest_encode_project(project), ds_ingest_encode_project(given) };
    int rc = enc[0] && enc[1] ? 0 : DS_ERR_NOMEM;
    for (size_t r = 0; !rc && r < cfg->nwatch; r++) {
        DIR *d = opendir(cfg->watch[r]);
        if (!d)
            continue;
        struct dirent *e;
        while (!rc && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            int exact = 0, prefix = 0;
            for (int k = 0; k < 2; k++) {
                size_t n = strlen(enc[k]);
                if (strcmp(e->d_name, enc[k]) == 0)
                    exact = 1;
                else if (strncmp(e->d_name, enc[k], n) == 0 && e->d_name[n] == '-')
                    prefix = 1;
            }
            if (!exact && !prefix)
                continue;
            char *dir = ds_path_join(cfg->watch[r], e->d_name);
            if (!dir) {
                rc = DS_ERR_NOMEM;
                break;
            }
            rc = add_dir_sessions(out, dir, project, !exact);
            free(dir);
        }
        closedir(d);
    }
    free(enc[0]);
    free(enc[1]);
    if (!rc && out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, str_cmp);
    return rc;
}

/* ---- scan ----------------------------------------------------------------- */

static int scan_project(ds_ctx *ctx, const msgpack_object *params, const ds_config *cfg,
                        strvec *files, char **project_out)
{
    char *cwd = NULL, *given = NULL, *canon = NULL;
    int rc = ds_ops_get_str(ctx, params, "cwd", 0, &cwd);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "project", 0, &given);
    if (rc)
        goto out;
    const char *p = given ? given : cwd;
    if (!p || !p[0]) {
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, "Give --project DIR.",
                         "no project directory given");
        goto out;
    }
    char *abs = (p[0] == '/' || !cwd) ? strdup(p) : ds_path_join(cwd, p);
    if (!abs) {
        rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
        goto out;
    }
    size_t n = strlen(abs);
    while (n > 1 && abs[n - 1] == '/')
        abs[--n] = '\0';
    if (ds_path_canonical(NULL, abs, &canon) != 0) {
        canon = strdup(abs);
        if (!canon) {
            free(abs);
            rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
            goto out;
        }
    }
    rc = find_sessions(cfg, canon, abs, files);
    free(abs);
    if (rc)
        rc = ds_ops_fail(ctx, rc, DS_OPS_E_NOMEM, NULL, "out of memory");
out:
    free(cwd);
    free(given);
    if (rc)
        free(canon);
    else
        *project_out = canon;
    return rc;
}

static int scan_files_param(ds_ctx *ctx, const msgpack_object *v, strvec *files)
{
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                           "files must be a list of absolute paths");
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        const msgpack_object *f = &v->via.array.ptr[i];
        if (f->type != MSGPACK_OBJECT_STR || f->via.str.size == 0 || f->via.str.ptr[0] != '/' ||
            memchr(f->via.str.ptr, '\0', f->via.str.size))
            return ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                               "files must be a list of absolute paths");
        if (sv_push(files, strndup(f->via.str.ptr, f->via.str.size)))
            return ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
    }
    return 0;
}

int op_scan(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    ds_config cfg;
    int rc = load_config(ctx, &cfg);
    if (rc)
        return rc;
    strvec files = { 0 };
    char *project = NULL;
    const msgpack_object *fv = ds_ops_get(params, "files");
    if (fv)
        rc = scan_files_param(ctx, fv, &files);
    else
        rc = scan_project(ctx, params, &cfg, &files, &project);
    if (rc)
        goto out;

    if (flag(params, "list")) {
        msgpack_pack_map(reply, 4);
        ds_pack_cstr(reply, "project");
        ds_pack_cstr(reply, project);
        ds_pack_cstr(reply, "roots");
        msgpack_pack_array(reply, (uint32_t)cfg.nwatch);
        for (size_t i = 0; i < cfg.nwatch; i++)
            ds_pack_cstr(reply, cfg.watch[i]);
        ds_pack_cstr(reply, "sessions");
        msgpack_pack_uint64(reply, files.n);
        ds_pack_cstr(reply, "files");
        msgpack_pack_array(reply, (uint32_t)files.n);
        for (size_t i = 0; i < files.n; i++)
            ds_pack_cstr(reply, files.v[i]);
        goto out;
    }

    ds_distiller *dist = NULL;
    char err[256];
    rc = ds_ingestd_distiller_new(&cfg, &dist, err, sizeof err);
    if (rc) {
        rc = ds_ops_fail(ctx, rc, DS_OPS_E_INVALID, "Check \"distiller\" in config.json.", "%s",
                         err);
        goto out;
    }
    ds_queue_policy pol;
    ds_ingestd_policy(&cfg, &pol);
    ds_ingestd_file_result *res = calloc(files.n ? files.n : 1, sizeof *res);
    if (!res) {
        dist->destroy(dist);
        rc = ds_ops_fail(ctx, DS_ERR_NOMEM, DS_OPS_E_NOMEM, NULL, "out of memory");
        goto out;
    }
    uint64_t nodes = 0, skipped = 0, failed = 0;
    int fatal = 0;
    for (size_t i = 0; i < files.n; i++) {
        int r = ds_ingestd_process_file(ctx, dist, &pol, files.v[i], &res[i]);
        if (r) {
            failed++;
            /* The store itself is unusable: every other file would fail too. */
            if (!ctx->store) {
                fatal = r;
                break;
            }
        } else if (res[i].unchanged) {
            skipped++;
        }
        nodes += res[i].nodes;
    }
    dist->destroy(dist);
    if (ctx->store)
        ds_queue_prune(ctx->store, DS_QUEUE_KEEP_DONE, NULL);
    if (fatal) {
        rc = ds_ops_fail(ctx, fatal, ctx->error.code[0] ? ctx->error.code : DS_OPS_E_STORE, NULL,
                         "%s", res[0].error[0] ? res[0].error : ds_strerror(fatal));
        free(res);
        goto out;
    }
    if (ctx->ingestd)
        ds_ingestd_kick(ctx->ingestd);
    msgpack_pack_map(reply, 6);
    ds_pack_cstr(reply, "project");
    ds_pack_cstr(reply, project);
    ds_pack_cstr(reply, "sessions");
    msgpack_pack_uint64(reply, files.n);
    ds_pack_cstr(reply, "nodes");
    msgpack_pack_uint64(reply, nodes);
    ds_pack_cstr(reply, "skipped");
    msgpack_pack_uint64(reply, skipped);
    ds_pack_cstr(reply, "failed");
    msgpack_pack_uint64(reply, failed);
    ds_pack_cstr(reply, "files");
    msgpack_pack_array(reply, (uint32_t)files.n);
    for (size_t i = 0; i < files.n; i++) {
        int bad = res[i].error[0] != '\0';
        msgpack_pack_map(reply, bad ? 5 : 4);
        ds_pack_cstr(reply, "path");
        ds_pack_cstr(reply, files.v[i]);
        ds_pack_cstr(reply, "status");
        ds_pack_cstr(reply, bad ? "error" : res[i].unchanged ? "unchanged" : "ingested");
        ds_pack_cstr(reply, "nodes");
        msgpack_pack_uint64(reply, res[i].nodes);
        ds_pack_cstr(reply, "replaced");
        msgpack_pack_uint64(reply, res[i].removed);
        if (bad) {
            ds_pack_cstr(reply, "error");
            ds_pack_cstr(reply, res[i].error);
        }
    }
    free(res);
out:
    sv_free(&files);
    free(project);
    ds_config_free(&cfg);
    return rc;
}

/* ---- queue ---------------------------------------------------------------- */

static void pack_job(msgpack_packer *pk, const ds_job *j)
{
    char hex[DS_JOB_HEXLEN + 1];
    ds_job_id_hex(j->id, hex);
    msgpack_pack_map(pk, 9);
    ds_pack_cstr(pk, "id");
    ds_pack_cstr(pk, hex);
    ds_pack_cstr(pk, "path");
    ds_pack_cstr(pk, j->path);
    ds_pack_cstr(pk, "state");
    ds_pack_cstr(pk, ds_job_state_name(j->state));
    ds_pack_cstr(pk, "attempts");
    msgpack_pack_uint32(pk, j->attempts);
    ds_pack_cstr(pk, "created");
    msgpack_pack_int64(pk, j->created_ms);
    ds_pack_cstr(pk, "updated");
    msgpack_pack_int64(pk, j->updated_ms);
    ds_pack_cstr(pk, "next");
    msgpack_pack_int64(pk, j->next_ms);
    ds_pack_cstr(pk, "nodes");
    msgpack_pack_uint64(pk, j->nodes);
    ds_pack_cstr(pk, "error");
    ds_pack_cstr(pk, j->error);
}

static int retry_one(ds_ctx *ctx, ds_store *st, const char *prefix, size_t *changed)
{
    uint8_t id[DS_JOB_ID_LEN];
    int rc = st ? ds_queue_resolve(st, prefix, id) : DS_ERR_NOTFOUND;
    if (rc == DS_ERR_INVALID)
        return ds_ops_fail(ctx, rc, DS_OPS_E_INVALID, "Job ids are hexadecimal.",
                           "'%s' is not a job id", prefix);
    if (rc == DS_ERR_NOTFOUND)
        return ds_ops_fail(ctx, rc, DS_OPS_E_NOT_FOUND, "See ds queue failed.",
                           "no job matches '%s'", prefix);
    if (rc == DS_ERR_AMBIGUOUS)
        return ds_ops_fail(ctx, rc, DS_OPS_E_AMBIGUOUS, "Give more digits of the id.",
                           "'%s' matches more than one job", prefix);
    if (rc)
        return ds_ops_fail_store(ctx, rc, "reading the queue");
    ds_wtxn *tx = NULL;
    rc = ds_store_begin(st, &tx);
    if (rc)
        return ds_ops_fail_store(ctx, rc, "retrying the job");
    rc = ds_queue_retry(tx, id, ctx->now_ms());
    if (rc == DS_ERR_BUSY) {
        ds_wtxn_abort(tx);
        ds_job j;
        const char *state = "not failed";
        int have = ds_queue_get(st, id, &j) == 0;
        if (have)
            state = ds_job_state_name(j.state);
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, "See ds queue failed.",
                         "job %s is %s: only failed jobs are retried", prefix, state);
        if (have)
            ds_job_free(&j);
        return rc;
    }
    if (rc) {
        ds_wtxn_abort(tx);
        return ds_ops_fail_store(ctx, rc, "retrying the job");
    }
    rc = ds_wtxn_commit(tx);
    if (rc)
        return ds_ops_fail_store(ctx, rc, "retrying the job");
    *changed = 1;
    return 0;
}

int op_queue(ds_ctx *ctx, const msgpack_object *params, msgpack_packer *reply)
{
    char *action = NULL, *id = NULL;
    int rc = ds_ops_get_str(ctx, params, "action", 0, &action);
    if (!rc)
        rc = ds_ops_get_str(ctx, params, "id", 0, &id);
    if (rc)
        goto out;
    const char *a = action ? action : "status";
    unsigned mask = 0;
    int list = 0;
    if (strcmp(a, "pending") == 0) {
        mask = (1u << DS_JOB_PENDING) | (1u << DS_JOB_PROCESSING);
        list = 1;
    } else if (strcmp(a, "failed") == 0) {
        mask = 1u << DS_JOB_FAILED;
        list = 1;
    } else if (strcmp(a, "status") != 0 && strcmp(a, "retry") != 0 && strcmp(a, "clear") != 0) {
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID,
                         "Actions: status, pending, failed, retry ID|--all, clear.",
                         "unknown queue action '%s'", a);
        goto out;
    }
    int all = flag(params, "all");
    if (strcmp(a, "retry") == 0 && !id && !all) {
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, "Give a job id, or --all.",
                         "retry needs a job id or all");
        goto out;
    }
    if (strcmp(a, "retry") == 0 && id && all) {
        rc = ds_ops_fail(ctx, DS_ERR_INVALID, DS_OPS_E_INVALID, NULL,
                         "give either a job id or all, not both");
        goto out;
    }
    ds_store *st = NULL;
    rc = ds_ctx_store(ctx, 0, &st);
    if (rc == DS_ERR_NOTFOUND) {
        st = NULL; /* no store yet: an empty queue */
        memset(&ctx->error, 0, sizeof ctx->error);
        rc = 0;
    }
    if (rc)
        goto out;
    size_t changed = 0;
    if (strcmp(a, "retry") == 0) {
        if (all)
            rc = st ? ds_queue_retry_all(st, ctx->now_ms(), &changed) : 0;
        else
            rc = retry_one(ctx, st, id, &changed);
        if (rc && !ctx->error.code[0])
            rc = ds_ops_fail_store(ctx, rc, "retrying jobs");
        if (rc)
            goto out;
        if (ctx->ingestd && changed)
            ds_ingestd_kick(ctx->ingestd);
    } else if (strcmp(a, "clear") == 0) {
        rc = st ? ds_queue_clear(st, &changed) : 0;
        if (rc) {
            rc = ds_ops_fail_store(ctx, rc, "clearing the queue");
            goto out;
        }
    }
    ds_queue_counts c;
    memset(&c, 0, sizeof c);
    ds_job *jobs = NULL;
    size_t n = 0;
    if (st) {
        rc = ds_queue_count(st, &c);
        if (!rc && list)
            rc = ds_queue_list(st, mask, &jobs, &n);
        if (rc) {
            rc = ds_ops_fail_store(ctx, rc, "reading the queue");
            goto out;
        }
    }
    msgpack_pack_map(reply, 3);
    ds_pack_cstr(reply, "counts");
    msgpack_pack_map(reply, DS_JOB_NSTATES);
    for (int s = 0; s < DS_JOB_NSTATES; s++) {
        ds_pack_cstr(reply, ds_job_state_name((ds_job_state)s));
        msgpack_pack_uint64(reply, c.n[s]);
    }
    ds_pack_cstr(reply, "jobs");
    msgpack_pack_array(reply, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        pack_job(reply, &jobs[i]);
    ds_pack_cstr(reply, "changed");
    msgpack_pack_uint64(reply, changed);
    ds_queue_jobs_free(jobs, n);
out:
    free(action);
    free(id);
    return rc;
}
