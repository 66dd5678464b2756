/*
 * queue.c - the ingestion job queue in DS_TABLE_QUEUE: job records, state
 * transitions, backoff, the one-job-per-path index, listing, id prefixes
 * and pruning.  See queue.h for the contract; docs/ingest.md for why.
 */
#include "core/queue.h"

#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "core/msgread.h"
#include "core/util.h"

#define KEY_JOB 'j'
#define KEY_PATH 'p'

static const char *const STATE_NAMES[DS_JOB_NSTATES] = { "pending", "processing", "done",
                                                         "failed" };

const char *ds_job_state_name(ds_job_state s)
{
    return (unsigned)s < DS_JOB_NSTATES ? STATE_NAMES[s] : "unknown";
}

void ds_job_init(ds_job *j)
{
    memset(j, 0, sizeof *j);
}

void ds_job_free(ds_job *j)
{
    free(j->path);
    free(j->error);
    ds_job_init(j);
}

void ds_job_id_hex(const uint8_t id[DS_JOB_ID_LEN], char out[DS_JOB_HEXLEN + 1])
{
    ds_hex_encode(id, DS_JOB_ID_LEN, out);
}

int64_t ds_queue_backoff_ms(const ds_queue_policy *p, uint32_t attempts)
{
    int64_t base = p && p->backoff_base_ms ? p->backoff_base_ms : 5000;
    int64_t cap = p && p->backoff_max_ms ? p->backoff_max_ms : 3600000;
    if (attempts < 1)
        attempts = 1;
    int64_t d = base;
    for (uint32_t i = 1; i < attempts && d < cap; i++)
        d *= 2;
    return d < cap ? d : cap;
}

static uint32_t max_attempts(const ds_queue_policy *p)
{
    return p && p->max_attempts ? p->max_attempts : 5;
}

/* ---- codec ---------------------------------------------------------------- */

static int pack_str(msgpack_packer *pk, const char *k, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    return msgpack_pack_str_with_body(pk, k, strlen(k)) |
           msgpack_pack_str_with_body(pk, v ? v : "", n);
}

static int pack_i64(msgpack_packer *pk, const char *k, int64_t v)
{
    return msgpack_pack_str_with_body(pk, k, strlen(k)) | msgpack_pack_int64(pk, v);
}

int ds_job_encode(const ds_job *j, uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!j->path)
        return DS_ERR_INVALID;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 8);
    rc |= pack_str(&pk, "path", j->path);
    rc |= pack_i64(&pk, "state", j->state);
    rc |= pack_i64(&pk, "attempts", j->attempts);
    rc |= pack_i64(&pk, "created", j->created_ms);
    rc |= pack_i64(&pk, "updated", j->updated_ms);
    rc |= pack_i64(&pk, "next", j->next_ms);
    rc |= pack_i64(&pk, "nodes", (int64_t)j->nodes);
    rc |= pack_str(&pk, "error", j->error);
    if (rc) {
        msgpack_sbuffer_destroy(&sb);
        return DS_ERR_NOMEM;
    }
    *out = (uint8_t *)sb.data;
    *outlen = sb.size;
    return 0;
}

static int read_cstr(ds_mr *mr, char **out, size_t max)
{
    return ds_mr_strdup(mr, max, out);
}

int ds_job_decode(const void *buf, size_t len, const uint8_t id[DS_JOB_ID_LEN], ds_job *out)
{
    ds_job_init(out);
    memcpy(out->id, id, DS_JOB_ID_LEN);
    ds_mr mr;
    ds_mr_init(&mr, buf, len);
    uint32_t n;
    int rc = ds_mr_map(&mr, &n);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        const char *k;
        uint32_t kl;
        int64_t v = 0;
        rc = ds_mr_str(&mr, &k, &kl);
        if (rc)
            break;
        if (ds_mr_key_eq(k, kl, "path")) {
            rc = read_cstr(&mr, &out->path, DS_NODE_MAX_FIELD);
        } else if (ds_mr_key_eq(k, kl, "error")) {
            rc = read_cstr(&mr, &out->error, DS_NODE_MAX_FIELD);
        } else if (ds_mr_key_eq(k, kl, "state")) {
            rc = ds_mr_int(&mr, &v);
            if (!rc && (v < 0 || v >= DS_JOB_NSTATES))
                rc = DS_ERR_MALFORMED;
            out->state = (ds_job_state)v;
        } else if (ds_mr_key_eq(k, kl, "attempts")) {
            rc = ds_mr_int(&mr, &v);
            if (!rc && (v < 0 || v > UINT32_MAX))
                rc = DS_ERR_MALFORMED;
            out->attempts = (uint32_t)v;
        } else if (ds_mr_key_eq(k, kl, "created")) {
            rc = ds_mr_int(&mr, &out->created_ms);
        } else if (ds_mr_key_eq(k, kl, "updated")) {
            rc = ds_mr_int(&mr, &out->updated_ms);
        } else if (ds_mr_key_eq(k, kl, "next")) {
            rc = ds_mr_int(&mr, &out->next_ms);
        } else if (ds_mr_key_eq(k, kl, "nodes")) {
            rc = ds_mr_int(&mr, &v);
            if (!rc && v < 0)
                rc = DS_ERR_MALFORMED;
            out->nodes = (uint64_t)v;
        } else {
            rc = ds_mr_skip(&mr);
        }
    }
    if (!rc && (!out->path || !out->path[0] || ds_mr_left(&mr) != 0))
        rc = DS_ERR_MALFORMED;
    if (!rc && !out->error && !(out->error = strdup("")))
        rc = DS_ERR_NOMEM;
    if (rc)
        ds_job_free(out);
    return rc;
}

/* ---- records inside a write transaction ----------------------------------- */

static void job_key(const uint8_t id[DS_JOB_ID_LEN], uint8_t key[1 + DS_JOB_ID_LEN])
{
    key[0] = KEY_JOB;
    memcpy(key + 1, id, DS_JOB_ID_LEN);
}

/* "p" + path, or "P" + hex BLAKE2b of the path when it is too long for
 * an LMDB key. */
static char *path_key(const char *path, size_t *klen)
{
    size_t n = strlen(path);
    if (n > 500) {
        uint8_t h[32];
        ds_hash(path, n, h, sizeof h);
        char *k = malloc(2 + 2 * sizeof h);
        if (!k)
            return NULL;
        k[0] = 'P';
        ds_hex_encode(h, sizeof h, k + 1);
        *klen = 1 + 2 * sizeof h;
        return k;
    }
    char *k = malloc(n + 1);
    if (!k)
        return NULL;
    k[0] = KEY_PATH;
    memcpy(k + 1, path, n);
    *klen = n + 1;
    return k;
}

/* Reads job |id| inside |tx| when given, else in a read transaction of |st|. */
static int job_get(ds_wtxn *tx, ds_store *st, const uint8_t id[DS_JOB_ID_LEN], ds_job *out)
{
    ds_job_init(out);
    uint8_t key[1 + DS_JOB_ID_LEN];
    job_key(id, key);
    void *v = NULL;
    size_t vl = 0;
    int rc = tx ? ds_wtxn_aux_get(tx, DS_TABLE_QUEUE, key, sizeof key, &v, &vl)
                : ds_store_aux_get(st, DS_TABLE_QUEUE, key, sizeof key, &v, &vl);
    if (!rc)
        rc = ds_job_decode(v, vl, id, out);
    free(v);
    return rc;
}

int ds_queue_get_tx(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], ds_job *out)
{
    return job_get(tx, NULL, id, out);
}

int ds_queue_get(ds_store *st, const uint8_t id[DS_JOB_ID_LEN], ds_job *out)
{
    return job_get(NULL, st, id, out);
}

static int job_put(ds_wtxn *tx, const ds_job *j)
{
    uint8_t key[1 + DS_JOB_ID_LEN];
    job_key(j->id, key);
    uint8_t *buf;
    size_t len;
    int rc = ds_job_encode(j, &buf, &len);
    if (rc)
        return rc;
    rc = ds_wtxn_aux_put(tx, DS_TABLE_QUEUE, key, sizeof key, buf, len);
    free(buf);
    return rc;
}

static int path_index_get(ds_wtxn *tx, const char *path, uint8_t id[DS_JOB_ID_LEN])
{
    size_t kl;
    char *k = path_key(path, &kl);
    if (!k)
        return DS_ERR_NOMEM;
    void *v = NULL;
    size_t vl = 0;
    int rc = ds_wtxn_aux_get(tx, DS_TABLE_QUEUE, k, kl, &v, &vl);
    free(k);
    if (rc)
        return rc;
    if (vl != DS_JOB_ID_LEN)
        rc = DS_ERR_NOTFOUND; /* damaged index entry: treat as absent */
    else
        memcpy(id, v, DS_JOB_ID_LEN);
    free(v);
    return rc;
}

static int path_index_set(ds_wtxn *tx, const char *path, const uint8_t *id)
{
    size_t kl;
    char *k = path_key(path, &kl);
    if (!k)
        return DS_ERR_NOMEM;
    int rc;
    if (id) {
        rc = ds_wtxn_aux_put(tx, DS_TABLE_QUEUE, k, kl, id, DS_JOB_ID_LEN);
    } else {
        rc = ds_wtxn_aux_del(tx, DS_TABLE_QUEUE, k, kl);
        if (rc == DS_ERR_NOTFOUND)
            rc = 0;
    }
    free(k);
    return rc;
}

/* Drops the path index entry of |j| if it points to |j|. */
static int path_index_release(ds_wtxn *tx, const ds_job *j)
{
    uint8_t cur[DS_JOB_ID_LEN];
    int rc = path_index_get(tx, j->path, cur);
    if (rc == DS_ERR_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (memcmp(cur, j->id, DS_JOB_ID_LEN) != 0)
        return 0;
    return path_index_set(tx, j->path, NULL);
}

static int set_error(ds_job *j, const char *error)
{
    size_t n = error ? strlen(error) : 0;
    if (n > DS_QUEUE_MAX_ERROR)
        n = DS_QUEUE_MAX_ERROR;
    /* Do not cut inside a UTF-8 sequence. */
    while (n > 0 && error && n < strlen(error) && ((unsigned char)error[n] & 0xC0) == 0x80)
        n--;
    char *e = malloc(n + 1);
    if (!e)
        return DS_ERR_NOMEM;
    if (n)
        memcpy(e, error, n);
    e[n] = '\0';
    free(j->error);
    j->error = e;
    return 0;
}

int ds_queue_enqueue(ds_wtxn *tx, const char *path, const uint8_t rnd[DS_JOB_ID_LEN],
                     int64_t now, int64_t not_before, ds_job *out, int *created)
{
    if (out)
        ds_job_init(out);
    if (created)
        *created = 0;
    if (!tx || !path || !path[0] || !rnd || strlen(path) >= DS_NODE_MAX_FIELD)
        return DS_ERR_INVALID;
    ds_job j;
    uint8_t id[DS_JOB_ID_LEN];
    int rc = path_index_get(tx, path, id);
    if (rc == 0) {
        rc = ds_queue_get_tx(tx, id, &j);
        if (rc == 0 && strcmp(j.path, path) != 0)
            rc = DS_ERR_NOTFOUND; /* inconsistent index: start afresh */
        if (rc == 0) {
            int dirty = 0;
            if (j.state == DS_JOB_PENDING && j.next_ms > not_before) {
                j.next_ms = not_before;
                dirty = 1;
            } else if (j.state == DS_JOB_FAILED) {
                j.state = DS_JOB_PENDING;
                j.attempts = 0;
                j.next_ms = not_before;
                dirty = 1;
            } else if (j.state == DS_JOB_DONE) {
                rc = DS_ERR_NOTFOUND; /* stale index entry */
            }
            if (rc == 0 && dirty) {
                j.updated_ms = now;
                rc = job_put(tx, &j);
            }
            if (rc == 0) {
                if (out)
                    *out = j;
                else
                    ds_job_free(&j);
                return 0;
            }
            ds_job_free(&j);
        }
        if (rc != DS_ERR_NOTFOUND && rc != DS_ERR_MALFORMED && rc != DS_ERR_TRUNCATED)
            return rc;
    } else if (rc != DS_ERR_NOTFOUND) {
        return rc;
    }
    ds_job_init(&j);
    memcpy(j.id, rnd, DS_JOB_ID_LEN);
    j.path = strdup(path);
    j.error = strdup("");
    if (!j.path || !j.error) {
        ds_job_free(&j);
        return DS_ERR_NOMEM;
    }
    j.state = DS_JOB_PENDING;
    j.created_ms = j.updated_ms = now;
    j.next_ms = not_before;
    rc = job_put(tx, &j);
    if (!rc)
        rc = path_index_set(tx, path, j.id);
    if (rc) {
        ds_job_free(&j);
        return rc;
    }
    if (created)
        *created = 1;
    if (out)
        *out = j;
    else
        ds_job_free(&j);
    return 0;
}

int ds_queue_claim(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], int64_t now, ds_job *out)
{
    if (out)
        ds_job_init(out);
    ds_job j;
    int rc = ds_queue_get_tx(tx, id, &j);
    if (rc)
        return rc;
    if (j.state != DS_JOB_PENDING) {
        ds_job_free(&j);
        return DS_ERR_BUSY;
    }
    j.state = DS_JOB_PROCESSING;
    j.attempts++;
    j.updated_ms = now;
    rc = job_put(tx, &j);
    if (!rc && out)
        *out = j;
    else
        ds_job_free(&j);
    return rc;
}

int ds_queue_finish(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], int64_t now, uint64_t nodes)
{
    ds_job j;
    int rc = ds_queue_get_tx(tx, id, &j);
    if (rc)
        return rc;
    if (j.state != DS_JOB_PROCESSING) {
        ds_job_free(&j);
        return DS_ERR_BUSY;
    }
    j.state = DS_JOB_DONE;
    j.updated_ms = now;
    j.nodes = nodes;
    rc = set_error(&j, "");
    if (!rc)
        rc = job_put(tx, &j);
    if (!rc)
        rc = path_index_release(tx, &j);
    ds_job_free(&j);
    return rc;
}

int ds_queue_fail(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], int64_t now, const char *error,
                  const ds_queue_policy *p, ds_job_state *out_state)
{
    ds_job j;
    int rc = ds_queue_get_tx(tx, id, &j);
    if (rc)
        return rc;
    if (j.state != DS_JOB_PROCESSING) {
        ds_job_free(&j);
        return DS_ERR_BUSY;
    }
    if (j.attempts >= max_attempts(p)) {
        j.state = DS_JOB_FAILED;
        j.next_ms = 0;
    } else {
        j.state = DS_JOB_PENDING;
        j.next_ms = now + ds_queue_backoff_ms(p, j.attempts);
    }
    j.updated_ms = now;
    rc = set_error(&j, error ? error : "failed");
    if (!rc)
        rc = job_put(tx, &j);
    if (!rc && out_state)
        *out_state = j.state;
    ds_job_free(&j);
    return rc;
}

int ds_queue_retry(ds_wtxn *tx, const uint8_t id[DS_JOB_ID_LEN], int64_t now)
{
    ds_job j;
    int rc = ds_queue_get_tx(tx, id, &j);
    if (rc)
        return rc;
    if (j.state != DS_JOB_FAILED) {
        ds_job_free(&j);
        return DS_ERR_BUSY;
    }
    j.state = DS_JOB_PENDING;
    j.attempts = 0;
    j.next_ms = now;
    j.updated_ms = now;
    rc = job_put(tx, &j);
    /* The path may have got a newer job meanwhile (after an index repair);
     * this one takes the index back only if the path has none. */
    uint8_t cur[DS_JOB_ID_LEN];
    if (!rc) {
        int g = path_index_get(tx, j.path, cur);
        if (g == DS_ERR_NOTFOUND)
            rc = path_index_set(tx, j.path, j.id);
        else if (g)
            rc = g;
    }
    ds_job_free(&j);
    return rc;
}

/* ---- whole-queue operations ----------------------------------------------- */

typedef struct job_vec {
    ds_job *v;
    size_t n, cap;
    unsigned mask;
    int err;
} job_vec;

static int collect_cb(const void *k, size_t kl, const void *v, size_t vl, void *ud)
{
    job_vec *jv = ud;
    const uint8_t *key = k;
    if (kl != 1 + DS_JOB_ID_LEN || key[0] != KEY_JOB)
        return 0;
    ds_job j;
    int rc = ds_job_decode(v, vl, key + 1, &j);
    if (rc == DS_ERR_NOMEM) {
        jv->err = rc;
        return 1;
    }
    if (rc)
        return 0; /* an unreadable record is skipped (cleared by "clear") */
    if (jv->mask && !(jv->mask & (1u << j.state))) {
        ds_job_free(&j);
        return 0;
    }
    if (jv->n == jv->cap) {
        size_t cap = jv->cap ? jv->cap * 2 : 16;
        ds_job *nv = realloc(jv->v, cap * sizeof *nv);
        if (!nv) {
            ds_job_free(&j);
            jv->err = DS_ERR_NOMEM;
            return 1;
        }
        jv->v = nv;
        jv->cap = cap;
    }
    jv->v[jv->n++] = j;
    return 0;
}

static int job_cmp(const void *a, const void *b)
{
    const ds_job *x = a, *y = b;
    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? -1 : 1;
    return memcmp(x->id, y->id, DS_JOB_ID_LEN);
}

int ds_queue_list(ds_store *st, unsigned state_mask, ds_job **jobs, size_t *count)
{
    *jobs = NULL;
    *count = 0;
    job_vec jv = { .mask = state_mask };
    int rc = ds_store_aux_iter(st, DS_TABLE_QUEUE, collect_cb, &jv);
    if (!rc)
        rc = jv.err;
    if (rc) {
        ds_queue_jobs_free(jv.v, jv.n);
        return rc;
    }
    if (jv.n > 1)
        qsort(jv.v, jv.n, sizeof *jv.v, job_cmp);
    *jobs = jv.v;
    *count = jv.n;
    return 0;
}

void ds_queue_jobs_free(ds_job *jobs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        ds_job_free(&jobs[i]);
    free(jobs);
}

int ds_queue_count(ds_store *st, ds_queue_counts *out)
{
    memset(out, 0, sizeof *out);
    ds_job *jobs;
    size_t n;
    int rc = ds_queue_list(st, 0, &jobs, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        out->n[jobs[i].state]++;
    ds_queue_jobs_free(jobs, n);
    return 0;
}

int ds_queue_resolve(ds_store *st, const char *prefix, uint8_t id[DS_JOB_ID_LEN])
{
    char want[DS_JOB_HEXLEN + 1];
    size_t n = 0;
    for (const char *p = prefix; p && *p; p++) {
        if (*p == '-')
            continue;
        char c = *p;
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n == DS_JOB_HEXLEN)
            return DS_ERR_INVALID;
        want[n++] = c;
    }
    if (n == 0)
        return DS_ERR_INVALID;
    want[n] = '\0';
    ds_job *jobs;
    size_t count;
    int rc = ds_queue_list(st, 0, &jobs, &count);
    if (rc)
        return rc;
    size_t found = 0;
    for (size_t i = 0; i < count; i++) {
        char hex[DS_JOB_HEXLEN + 1];
        ds_job_id_hex(jobs[i].id, hex);
        if (memcmp(hex, want, n) == 0) {
            if (found++ == 0)
                memcpy(id, jobs[i].id, DS_JOB_ID_LEN);
        }
    }
    ds_queue_jobs_free(jobs, count);
    return found == 0 ? DS_ERR_NOTFOUND : found > 1 ? DS_ERR_AMBIGUOUS : 0;
}

/* Applies |fn| to each job of the states in |mask| in one transaction. */
static int for_each(ds_store *st, unsigned mask, int64_t now,
                    int (*fn)(ds_wtxn *tx, ds_job *j, int64_t now), size_t *count)
{
    if (count)
        *count = 0;
    ds_job *jobs;
    size_t n;
    int rc = ds_queue_list(st, mask, &jobs, &n);
    if (rc || n == 0) {
        ds_queue_jobs_free(jobs, n);
        return rc;
    }
    ds_wtxn *tx = NULL;
    rc = ds_store_begin(st, &tx);
    size_t done = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        /* Re-read inside the transaction: another writer may have moved it. */
        ds_job cur;
        int g = ds_queue_get_tx(tx, jobs[i].id, &cur);
        if (g == DS_ERR_NOTFOUND || g == DS_ERR_MALFORMED || g == DS_ERR_TRUNCATED)
            continue;
        if (g) {
            rc = g;
            break;
        }
        if (mask & (1u << cur.state)) {
            rc = fn(tx, &cur, now);
            if (!rc)
                done++;
        }
        ds_job_free(&cur);
    }
    if (tx) {
        if (rc)
            ds_wtxn_abort(tx);
        else
            rc = ds_wtxn_commit(tx);
    }
    ds_queue_jobs_free(jobs, n);
    if (!rc && count)
        *count = done;
    return rc;
}

static int to_pending(ds_wtxn *tx, ds_job *j, int64_t now)
{
    int was_failed = j->state == DS_JOB_FAILED;
    j->state = DS_JOB_PENDING;
    j->next_ms = now;
    j->updated_ms = now;
    if (was_failed)
        j->attempts = 0;
    return job_put(tx, j);
}

static int remove_job(ds_wtxn *tx, ds_job *j, int64_t now)
{
    (void)now;
    uint8_t key[1 + DS_JOB_ID_LEN];
    job_key(j->id, key);
    int rc = ds_wtxn_aux_del(tx, DS_TABLE_QUEUE, key, sizeof key);
    if (rc == DS_ERR_NOTFOUND)
        rc = 0;
    if (!rc)
        rc = path_index_release(tx, j);
    return rc;
}

int ds_queue_recover(ds_store *st, int64_t now, size_t *count)
{
    return for_each(st, 1u << DS_JOB_PROCESSING, now, to_pending, count);
}

int ds_queue_retry_all(ds_store *st, int64_t now, size_t *count)
{
    return for_each(st, 1u << DS_JOB_FAILED, now, to_pending, count);
}

int ds_queue_clear(ds_store *st, size_t *count)
{
    return for_each(st, (1u << DS_JOB_DONE) | (1u << DS_JOB_FAILED), 0, remove_job, count);
}

static int upd_cmp(const void *a, const void *b)
{
    const ds_job *x = a, *y = b;
    if (x->updated_ms != y->updated_ms)
        return x->updated_ms > y->updated_ms ? -1 : 1; /* newest first */
    return job_cmp(b, a);
}

int ds_queue_prune(ds_store *st, size_t keep, size_t *count)
{
    if (count)
        *count = 0;
    ds_job *jobs;
    size_t n;
    int rc = ds_queue_list(st, 1u << DS_JOB_DONE, &jobs, &n);
    if (rc || n <= keep) {
        ds_queue_jobs_free(jobs, n);
        return rc;
    }
    qsort(jobs, n, sizeof *jobs, upd_cmp);
    ds_wtxn *tx = NULL;
    rc = ds_store_begin(st, &tx);
    size_t removed = 0;
    for (size_t i = keep; !rc && i < n; i++) {
        ds_job cur;
        int g = ds_queue_get_tx(tx, jobs[i].id, &cur);
        if (g) {
            if (g != DS_ERR_NOTFOUND && g != DS_ERR_MALFORMED && g != DS_ERR_TRUNCATED)
                rc = g;
            continue;
        }
        if (cur.state == DS_JOB_DONE) {
            rc = remove_job(tx, &cur, 0);
            if (!rc)
                removed++;
        }
        ds_job_free(&cur);
    }
    if (tx) {
        if (rc)
            ds_wtxn_abort(tx);
        else
            rc = ds_wtxn_commit(tx);
    }
    ds_queue_jobs_free(jobs, n);
    if (!rc && count)
        *count = removed;
    return rc;
}
