/*
 * test_queue.c - the ingestion job queue on a real LMDB store: state
 * transitions, backoff from a fake clock, max attempts, recovery of
 * processing jobs, one job per path, id prefixes and pruning.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds/store.h"
#include "core/queue.h"

static ds_store *open_store(void)
{
    uint8_t seed[DS_EPOCH_LEN] = { 1 };
    ds_store_opts o = { .epoch_seed = seed };
    ds_store *st = NULL;
    assert_int_equal(ds_store_open(&st, ds_test_tmpdir(), &o), 0);
    return st;
}

static void rnd(uint8_t id[DS_JOB_ID_LEN], uint8_t first)
{
    ds_test_random(id, DS_JOB_ID_LEN);
    id[0] = first;
}

static void enqueue(ds_store *st, const char *path, uint8_t first, int64_t now, ds_job *out,
                    int *created)
{
    ds_wtxn *tx;
    uint8_t id[DS_JOB_ID_LEN];
    rnd(id, first);
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_queue_enqueue(tx, path, id, now, now, out, created), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
}

static void claim(ds_store *st, const uint8_t *id, int64_t now, int expect)
{
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    ds_job j;
    assert_int_equal(ds_queue_claim(tx, id, now, &j), expect);
    ds_job_free(&j);
    assert_int_equal(ds_wtxn_commit(tx), 0);
}

static ds_job_state fail_job(ds_store *st, const uint8_t *id, int64_t now, const ds_queue_policy *p)
{
    ds_wtxn *tx;
    ds_job_state s = DS_JOB_NSTATES;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_queue_fail(tx, id, now, "distiller exited with status 3", p, &s), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    return s;
}

static void test_lifecycle(void **state)
{
    (void)state;
    ds_store *st = open_store();
    ds_job j;
    int created = 0;
    enqueue(st, "/t/a.jsonl", 0x10, 1000, &j, &created);
    assert_int_equal(created, 1);
    assert_int_equal(j.state, DS_JOB_PENDING);
    uint8_t id[DS_JOB_ID_LEN];
    memcpy(id, j.id, sizeof id);
    ds_job_free(&j);

    claim(st, id, 2000, 0);
    claim(st, id, 2000, DS_ERR_BUSY); /* not pending any more */
    assert_int_equal(ds_queue_get(st, id, &j), 0);
    assert_int_equal(j.state, DS_JOB_PROCESSING);
    assert_int_equal(j.attempts, 1);
    ds_job_free(&j);

    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_queue_finish(tx, id, 3000, 7), 0);
    assert_int_equal(ds_queue_finish(tx, id, 3000, 7), DS_ERR_BUSY);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(ds_queue_get(st, id, &j), 0);
    assert_int_equal(j.state, DS_JOB_DONE);
    assert_int_equal(j.nodes, 7);
    ds_job_free(&j);

    /* The path is free again: a new change makes a new job. */
    enqueue(st, "/t/a.jsonl", 0x20, 4000, &j, &created);
    assert_int_equal(created, 1);
    assert_memory_not_equal(j.id, id, DS_JOB_ID_LEN);
    ds_job_free(&j);
    ds_queue_counts c;
    assert_int_equal(ds_queue_count(st, &c), 0);
    assert_int_equal(c.n[DS_JOB_PENDING], 1);
    assert_int_equal(c.n[DS_JOB_DONE], 1);
    ds_store_close(st);
}

static void test_backoff_and_failure(void **state)
{
    (void)state;
    ds_queue_policy pol = { .max_attempts = 3, .backoff_base_ms = 1000, .backoff_max_ms = 3000 };
    assert_int_equal(ds_queue_backoff_ms(&pol, 1), 1000);
    assert_int_equal(ds_queue_backoff_ms(&pol, 2), 2000);
    assert_int_equal(ds_queue_backoff_ms(&pol, 3), 3000); /* capped */
    assert_int_equal(ds_queue_backoff_ms(&pol, 40), 3000);

    ds_store *st = open_store();
    ds_job j;
    enqueue(st, "/t/b.jsonl", 0x11, 0, &j, NULL);
    uint8_t id[DS_JOB_ID_LEN];
    memcpy(id, j.id, sizeof id);
    ds_job_free(&j);

    int64_t now = 10000;
    claim(st, id, now, 0);
    assert_int_equal(fail_job(st, id, now, &pol), DS_JOB_PENDING);
    assert_int_equal(ds_queue_get(st, id, &j), 0);
    assert_int_equal(j.next_ms, now + 1000);
    assert_string_equal(j.error, "distiller exited with status 3");
    ds_job_free(&j);

    now += 1000;
    claim(st, id, now, 0);
    assert_int_equal(fail_job(st, id, now, &pol), DS_JOB_PENDING);
    assert_int_equal(ds_queue_get(st, id, &j), 0);
    assert_int_equal(j.next_ms, now + 2000);
    assert_int_equal(j.attempts, 2);
    ds_job_free(&j);

    now += 2000;
    claim(st, id, now, 0);
    assert_int_equal(fail_job(st, id, now, &pol), DS_JOB_FAILED); /* third attempt */
    assert_int_equal(ds_queue_get(st, id, &j), 0);
    assert_int_equal(j.state, DS_JOB_FAILED);
    assert_int_equal(j.attempts, 3);
    ds_job_free(&j);

    /* Explicit retry: pending again, attempts reset, due now. */
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_queue_retry(tx, id, now + 5), 0);
    assert_int_equal(ds_queue_retry(tx, id, now + 5), DS_ERR_BUSY);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    assert_int_equal(ds_queue_get(st, id, &j), 0);
    assert_int_equal(j.state, DS_JOB_PENDING);
    assert_int_equal(j.attempts, 0);
    assert_int_equal(j.next_ms, now + 5);
    ds_job_free(&j);

    /* retry --all and a failed job revived by a new change of its path. */
    claim(st, id, now, 0);
    pol.max_attempts = 1;
    assert_int_equal(fail_job(st, id, now, &pol), DS_JOB_FAILED);
    int created = 1;
    enqueue(st, "/t/b.jsonl", 0x12, now + 9, &j, &created);
    assert_int_equal(created, 0);
    assert_memory_equal(j.id, id, DS_JOB_ID_LEN);
    assert_int_equal(j.state, DS_JOB_PENDING);
    ds_job_free(&j);
    claim(st, id, now, 0);
    assert_int_equal(fail_job(st, id, now, &pol), DS_JOB_FAILED);
    size_t n = 0;
    assert_int_equal(ds_queue_retry_all(st, now, &n), 0);
    assert_int_equal(n, 1);
    ds_store_close(st);
}

static void test_recover_and_one_per_path(void **state)
{
    (void)state;
    ds_store *st = open_store();
    ds_job a, b;
    int created;
    enqueue(st, "/t/c.jsonl", 0x30, 100, &a, &created);
    assert_int_equal(created, 1);
    enqueue(st, "/t/c.jsonl", 0x31, 200, &b, &created);
    assert_int_equal(created, 0); /* joins the pending job */
    assert_memory_equal(a.id, b.id, DS_JOB_ID_LEN);
    ds_job_free(&b);
    claim(st, a.id, 300, 0);
    enqueue(st, "/t/c.jsonl", 0x32, 400, &b, &created);
    assert_int_equal(created, 0); /* joins the processing job */
    assert_int_equal(b.state, DS_JOB_PROCESSING);
    ds_job_free(&b);
    enqueue(st, "/t/d.jsonl", 0x33, 500, &b, &created);
    assert_int_equal(created, 1);
    claim(st, b.id, 500, 0);

    /* "Crash": both processing jobs go back to pending at start-up. */
    size_t n = 0;
    assert_int_equal(ds_queue_recover(st, 9000, &n), 0);
    assert_int_equal(n, 2);
    ds_job j;
    assert_int_equal(ds_queue_get(st, a.id, &j), 0);
    assert_int_equal(j.state, DS_JOB_PENDING);
    assert_int_equal(j.next_ms, 9000);
    ds_job_free(&j);
    ds_queue_counts c;
    assert_int_equal(ds_queue_count(st, &c), 0);
    assert_int_equal(c.n[DS_JOB_PENDING], 2);
    assert_int_equal(c.n[DS_JOB_PROCESSING], 0);
    ds_job_free(&a);
    ds_job_free(&b);
    ds_store_close(st);
}

static void test_prefix(void **state)
{
    (void)state;
    ds_store *st = open_store();
    ds_wtxn *tx;
    uint8_t i1[DS_JOB_ID_LEN] = { 0xab, 0xcd, 0x01 }, i2[DS_JOB_ID_LEN] = { 0xab, 0xce, 0x02 };
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_queue_enqueue(tx, "/t/1.jsonl", i1, 1, 1, NULL, NULL), 0);
    assert_int_equal(ds_queue_enqueue(tx, "/t/2.jsonl", i2, 1, 1, NULL, NULL), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    uint8_t got[DS_JOB_ID_LEN];
    assert_int_equal(ds_queue_resolve(st, "abc", got), DS_ERR_AMBIGUOUS);
    assert_int_equal(ds_queue_resolve(st, "abcd", got), 0);
    assert_memory_equal(got, i1, DS_JOB_ID_LEN);
    assert_int_equal(ds_queue_resolve(st, "ABCE", got), 0);
    assert_memory_equal(got, i2, DS_JOB_ID_LEN);
    assert_int_equal(ds_queue_resolve(st, "ff", got), DS_ERR_NOTFOUND);
    assert_int_equal(ds_queue_resolve(st, "xyz", got), DS_ERR_INVALID);
    assert_int_equal(ds_queue_resolve(st, "", got), DS_ERR_INVALID);
    ds_store_close(st);
}

static void test_prune_and_clear(void **state)
{
    (void)state;
    ds_store *st = open_store();
    char path[64];
    for (int i = 0; i < 12; i++) {
        ds_job j;
        snprintf(path, sizeof path, "/t/p%02d.jsonl", i);
        enqueue(st, path, (uint8_t)i, 100 + i, &j, NULL);
        claim(st, j.id, 200 + i, 0);
        ds_wtxn *tx;
        assert_int_equal(ds_store_begin(st, &tx), 0);
        assert_int_equal(ds_queue_finish(tx, j.id, 300 + i, 1), 0);
        assert_int_equal(ds_wtxn_commit(tx), 0);
        ds_job_free(&j);
    }
    ds_job f;
    enqueue(st, "/t/failed.jsonl", 0x99, 500, &f, NULL);
    claim(st, f.id, 500, 0);
    ds_queue_policy one = { .max_attempts = 1 };
    assert_int_equal(fail_job(st, f.id, 500, &one), DS_JOB_FAILED);
    ds_job_free(&f);

    size_t n = 0;
    assert_int_equal(ds_queue_prune(st, 5, &n), 0);
    assert_int_equal(n, 7);
    ds_job *jobs;
    size_t count;
    assert_int_equal(ds_queue_list(st, 1u << DS_JOB_DONE, &jobs, &count), 0);
    assert_int_equal(count, 5);
    /* The newest five survive. */
    assert_string_equal(jobs[0].path, "/t/p07.jsonl");
    assert_string_equal(jobs[4].path, "/t/p11.jsonl");
    ds_queue_jobs_free(jobs, count);

    assert_int_equal(ds_queue_clear(st, &n), 0);
    assert_int_equal(n, 6); /* 5 done + 1 failed */
    ds_queue_counts c;
    assert_int_equal(ds_queue_count(st, &c), 0);
    for (int s = 0; s < DS_JOB_NSTATES; s++)
        assert_int_equal(c.n[s], 0);
    /* The failed job's path is free after clear. */
    int created = 0;
    enqueue(st, "/t/failed.jsonl", 0x77, 600, &f, &created);
    assert_int_equal(created, 1);
    ds_job_free(&f);
    ds_store_close(st);
}

static void test_codec_rejects_garbage(void **state)
{
    (void)state;
    uint8_t id[DS_JOB_ID_LEN] = { 0 };
    ds_job j, k;
    ds_job_init(&j);
    j.path = strdup("/x.jsonl");
    j.error = strdup("e");
    j.state = DS_JOB_FAILED;
    j.attempts = 3;
    uint8_t *buf;
    size_t len;
    assert_int_equal(ds_job_encode(&j, &buf, &len), 0);
    assert_int_equal(ds_job_decode(buf, len, id, &k), 0);
    assert_string_equal(k.path, "/x.jsonl");
    assert_int_equal(k.state, DS_JOB_FAILED);
    ds_job_free(&k);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_not_equal(ds_job_decode(buf, cut, id, &k), 0);
    free(buf);
    ds_job_free(&j);
    const uint8_t bad[] = { 0x81, 0xa5, 's', 't', 'a', 't', 'e', 0x09 };
    assert_int_not_equal(ds_job_decode(bad, sizeof bad, id, &k), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_backoff_and_failure),
        cmocka_unit_test(test_recover_and_one_per_path),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_prune_and_clear),
        cmocka_unit_test(test_codec_rejects_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
