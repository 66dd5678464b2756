/*
 * test_ingest.c - incremental transcript ingestion on a real LMDB store
 * with the built-in extractive distiller: node fields, redaction before
 * the store, appends, idempotent re-processing, rewritten transcripts,
 * truncated last lines and a simulated crash between plan and commit.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "ds/store.h"
#include "core/ingest.h"
#include "core/queue.h"

#define AWS_KEY "AKIAIOSFODNN7EXAMPLE"
#define GH_TOKEN "ghp_16C7e42F292c6912E7710c838347Ae178B4a"

static const char *g_dir;
static ds_distiller *g_dist;

static ds_store *open_store(void)
{
    uint8_t seed[DS_EPOCH_LEN] = { 2 };
    ds_store_opts o = { .epoch_seed = seed };
    ds_store *st = NULL;
    char db[4096];
    snprintf(db, sizeof db, "%s/db", ds_test_tmpdir());
    assert_int_equal(ds_store_open(&st, db, &o), 0);
    return st;
}

/* One transcript line (with newline) of |type| with text |text|. */
static char *line(const char *type, const char *text, const char *cwd, int sidechain)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:s, s:{s:s, s:s}}", "type", type, "cwd", cwd,
                          "sessionId", "sess-1", "isSidechain", sidechain, "timestamp",
                          "2025-01-02T03:04:05.000Z", "message", "role", type, "content", text);
    assert_non_null(o);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    assert_non_null(s);
    size_t n = strlen(s);
    char *r = malloc(n + 2);
    memcpy(r, s, n);
    r[n] = '\n';
    r[n + 1] = '\0';
    free(s);
    return r;
}

static void append(const char *path, const char *data, size_t n, const char *mode)
{
    FILE *f = fopen(path, mode);
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void append_line(const char *path, const char *type, const char *text, const char *cwd)
{
    char *l = line(type, text, cwd, 0);
    append(path, l, strlen(l), "ab");
    free(l);
}

/* Reads |path| from |from| (len bytes) into a malloc'd buffer. */
static char *read_range(const char *path, uint64_t from, size_t len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    assert_int_equal(fseek(f, (long)from, SEEK_SET), 0);
    assert_int_equal(fread(buf, 1, len, f), len);
    fclose(f);
    return buf;
}

/* Plans |path| against its stored state; the buffer is kept in *bufp. */
static void plan(ds_store *st, const char *path, ds_ingest_plan *p, char **bufp)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    ds_tstate ts;
    int have = ds_tstate_load(st, path, &ts) == 0;
    ds_ingest_src src = { .path = path, .file_size = (uint64_t)sb.st_size,
                          .mtime_ms = (int64_t)sb.st_mtime * 1000 };
    for (int round = 0; round < 2; round++) {
        src.buf_off = round ? 0 : ds_ingest_read_from(have ? &ts : NULL, src.file_size);
        src.len = ds_ingest_read_len(have ? &ts : NULL, src.buf_off, src.file_size, 0);
        src.rewritten = round;
        src.buf = *bufp = read_range(path, src.buf_off, src.len);
        assert_int_equal(ds_ingest_plan_make(&src, have ? &ts : NULL, p), 0);
        if (!p->reread)
            break;
        ds_ingest_plan_free(p);
        free(*bufp);
        *bufp = NULL;
    }
    assert_false(p->reread);
    if (have)
        ds_tstate_free(&ts);
}

static ds_ingest_result ingest(ds_store *st, const char *path)
{
    ds_ingest_plan p;
    char *buf = NULL;
    plan(st, path, &p, &buf);
    assert_int_equal(ds_ingest_distill(&p, g_dist), 0);
    ds_ingest_result r;
    assert_int_equal(ds_ingest_commit(st, &p, NULL, 1700000000000, &r), 0);
    ds_ingest_plan_free(&p);
    free(buf);
    return r;
}

typedef struct scan {
    size_t n;
    int secret;
    int bad_field;
    char contents[64][700];
} scan;

static int scan_cb(const ds_node *n, void *ud)
{
    scan *s = ud;
    if (strstr(n->content, AWS_KEY) || strstr(n->content, GH_TOKEN) ||
        strstr(n->content, "hunter2hunter2"))
        s->secret = 1;
    if (n->source_type != DS_SOURCE_SESSION || strcmp(n->ns, "personal") != 0 ||
        strcmp(n->source, "sess-1") != 0 || !n->metadata ||
        !strstr(n->metadata, "\"transcript\""))
        s->bad_field = 1;
    if (s->n < 64)
        snprintf(s->contents[s->n], sizeof s->contents[0], "%s", n->content);
    s->n++;
    return 0;
}

static scan scan_all(ds_store *st)
{
    scan s;
    memset(&s, 0, sizeof s);
    assert_int_equal(ds_store_iter(st, 0, 0, scan_cb, &s), 0);
    return s;
}

static void assert_no_duplicate_content(const scan *s)
{
    for (size_t i = 0; i < s->n && i < 64; i++)
        for (size_t j = i + 1; j < s->n && j < 64; j++)
            assert_string_not_equal(s->contents[i], s->contents[j]);
}

static char *new_transcript(const char *name)
{
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/%s", g_dir, name);
    append(path, "", 0, "wb");
    return path;
}

static void first_exchange(const char *path, const char *cwd)
{
    append_line(path, "user", "Why does the build fail on the CI box with two cores?", cwd);
    append_line(path, "assistant",
                "The root cause was the parallel link step running out of memory, fixed by "
                "limiting make to -j2 in scripts/ci.sh. "
                "The credentials were AWS_ACCESS_KEY_ID=" AWS_KEY " and the token " GH_TOKEN
                " which the fix also moved out of ci.sh.",
                cwd);
}

static void test_fields_and_redaction(void **state)
{
    (void)state;
    ds_store *st = open_store();
    char *path = new_transcript("fields.jsonl");
    const char *proj = g_dir; /* exists: canonical */
    append_line(path, "user", "<system-reminder>ignore " AWS_KEY "</system-reminder>Decide "
                "on the store: we decided to use LMDB instead of SQLite because of the "
                "single-writer model. password=hunter2hunter2", proj);
    first_exchange(path, proj);
    char *side = line("assistant", "Sidechain: the root cause was cosmic rays in store.c.", proj, 1);
    append(path, side, strlen(side), "ab");
    free(side);

    ds_ingest_result r = ingest(st, path);
    assert_true(r.nodes > 0);
    scan s = scan_all(st);
    assert_int_equal(s.n, r.nodes);
    assert_false(s.secret);
    assert_false(s.bad_field);
    int saw_fix = 0, saw_marker = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (strstr(s.contents[i], "-j2"))
            saw_fix = 1;
        if (strstr(s.contents[i], "[REDACTED:"))
            saw_marker = 1;
        assert_null(strstr(s.contents[i], "cosmic rays")); /* sidechain skipped */
    }
    assert_true(saw_fix);
    assert_true(saw_marker); /* the secret sentence was distilled, redacted */

    /* Nothing new: the second run writes nothing. */
    ds_ingest_result r2 = ingest(st, path);
    assert_int_equal(r2.nodes, 0);
    assert_int_equal(r2.removed, 0);
    assert_int_equal(scan_all(st).n, s.n);
    free(path);
    ds_store_close(st);
}

static int count_cb(const ds_node *n, void *ud)
{
    (void)n;
    (*(size_t *)ud)++;
    return 0;
}

static void test_project_lookup(void **state)
{
    (void)state;
    ds_store *st = open_store();
    char *path = new_transcript("proj.jsonl");
    first_exchange(path, g_dir);
    ds_ingest_result r = ingest(st, path);
    assert_true(r.nodes > 0);
    char canon[4096];
    assert_non_null(realpath(g_dir, canon));
    size_t n = 0;
    assert_int_equal(ds_store_by_project(st, canon, count_cb, &n), 0);
    assert_int_equal(n, r.nodes);
    /* A cwd that does not exist is kept as given. */
    char *p2 = new_transcript("gone.jsonl");
    first_exchange(p2, "/nonexistent/proj.x_y z");
    ds_ingest_result r2 = ingest(st, p2);
    assert_true(r2.nodes > 0);
    n = 0;
    assert_int_equal(ds_store_by_project(st, "/nonexistent/proj.x_y z", count_cb, &n), 0);
    assert_int_equal(n, r2.nodes);
    free(path);
    free(p2);
    ds_store_close(st);
}

static void test_append_and_truncated_line(void **state)
{
    (void)state;
    ds_store *st = open_store();
    char *path = new_transcript("append.jsonl");
    first_exchange(path, g_dir);
    ds_ingest_result r1 = ingest(st, path);
    size_t total1 = scan_all(st).n;
    assert_int_equal(total1, r1.nodes);

    /* A half-written last line is left for later. */
    char *l = line("assistant",
                   "The problem was a stale lock file in /var/run/app.pid, resolved by deleting "
                   "it at start-up when no process holds it.",
                   g_dir, 0);
    size_t half = strlen(l) / 2;
    append(path, l, half, "ab");
    ds_ingest_result r2 = ingest(st, path);
    assert_int_equal(r2.nodes, 0);
    ds_tstate ts;
    assert_int_equal(ds_tstate_load(st, path, &ts), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(ts.offset, (uint64_t)sb.st_size - half);
    ds_tstate_free(&ts);

    /* The rest arrives: only the new content becomes nodes. */
    append(path, l + half, strlen(l) - half, "ab");
    free(l);
    ds_ingest_result r3 = ingest(st, path);
    assert_true(r3.nodes > 0);
    assert_int_equal(r3.removed, 0);
    scan s = scan_all(st);
    assert_int_equal(s.n, total1 + r3.nodes);
    int stale = 0;
    for (size_t i = 0; i < s.n; i++)
        if (strstr(s.contents[i], "stale lock"))
            stale++;
    assert_int_equal(stale, 1);
    assert_no_duplicate_content(&s);
    free(path);
    ds_store_close(st);
}

static void test_reprocess_same_chunk(void **state)
{
    (void)state;
    ds_store *st = open_store();
    char *path = new_transcript("again.jsonl");
    first_exchange(path, g_dir);
    ds_ingest_plan p1, p2;
    char *b1 = NULL, *b2 = NULL;
    plan(st, path, &p1, &b1);
    plan(st, path, &p2, &b2);
    assert_int_equal(ds_ingest_distill(&p1, g_dist), 0);
    assert_int_equal(ds_ingest_distill(&p2, g_dist), 0);
    ds_ingest_result r1, r2;
    assert_int_equal(ds_ingest_commit(st, &p1, NULL, 1, &r1), 0);
    assert_int_equal(ds_ingest_commit(st, &p2, NULL, 2, &r2), 0); /* same chunk again */
    assert_int_equal(r2.removed, r1.nodes);
    assert_int_equal(r2.nodes, r1.nodes);
    scan s = scan_all(st);
    assert_int_equal(s.n, r1.nodes);
    assert_no_duplicate_content(&s);
    ds_ingest_plan_free(&p1);
    ds_ingest_plan_free(&p2);
    free(b1);
    free(b2);
    free(path);
    ds_store_close(st);
}

static void test_rewritten_transcript(void **state)
{
    (void)state;
    ds_store *st = open_store();
    char *path = new_transcript("rewrite.jsonl");
    first_exchange(path, g_dir);
    append_line(path, "assistant",
                "We decided to keep the queue in LMDB so a crash never loses a job.", g_dir);
    ds_ingest_result r1 = ingest(st, path);
    assert_true(r1.nodes > 0);

    /* Truncated and rewritten with different content (shorter). */
    append(path, "", 0, "wb");
    append_line(path, "assistant",
                "The culprit was an off-by-one in the ring buffer, fixed by masking the index.",
                g_dir);
    ds_ingest_result r2 = ingest(st, path);
    assert_int_equal(r2.removed, r1.nodes);
    assert_true(r2.nodes > 0);
    scan s = scan_all(st);
    assert_int_equal(s.n, r2.nodes);
    for (size_t i = 0; i < s.n; i++)
        assert_null(strstr(s.contents[i], "-j2"));

    /* Same size but different bytes before the watermark: also a rewrite. */
    char *buf = ds_test_read_file(path, NULL);
    char *x = strstr(buf, "off-by-one");
    assert_non_null(x);
    memcpy(x, "off-by-two", 10);
    append(path, buf, strlen(buf), "wb");
    free(buf);
    ds_ingest_result r3 = ingest(st, path);
    assert_int_equal(r3.removed, r2.nodes);
    s = scan_all(st);
    assert_int_equal(s.n, r3.nodes);
    free(path);
    ds_store_close(st);
}

static void test_crash_between_plan_and_commit(void **state)
{
    (void)state;
    ds_store *st = open_store();
    char *path = new_transcript("crash.jsonl");
    first_exchange(path, g_dir);

    /* A job is claimed, the plan distilled, and the process "dies". */
    uint8_t jid[DS_JOB_ID_LEN] = { 0x42 };
    ds_wtxn *tx;
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_queue_enqueue(tx, path, jid, 1, 1, NULL, NULL), 0);
    assert_int_equal(ds_queue_claim(tx, jid, 1, NULL), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    ds_ingest_plan p;
    char *b = NULL;
    plan(st, path, &p, &b);
    assert_int_equal(ds_ingest_distill(&p, g_dist), 0);
    ds_ingest_plan_free(&p); /* never committed */
    free(b);
    assert_int_equal(scan_all(st).n, 0);

    /* Restart: recovery, then the same work again, now committed. */
    size_t rec = 0;
    assert_int_equal(ds_queue_recover(st, 5, &rec), 0);
    assert_int_equal(rec, 1);
    assert_int_equal(ds_store_begin(st, &tx), 0);
    assert_int_equal(ds_queue_claim(tx, jid, 6, NULL), 0);
    assert_int_equal(ds_wtxn_commit(tx), 0);
    plan(st, path, &p, &b);
    assert_int_equal(ds_ingest_distill(&p, g_dist), 0);
    ds_ingest_result r;
    assert_int_equal(ds_ingest_commit(st, &p, jid, 7, &r), 0);
    ds_ingest_plan_free(&p);
    free(b);
    assert_true(r.nodes > 0);
    ds_job j;
    assert_int_equal(ds_queue_get(st, jid, &j), 0);
    assert_int_equal(j.state, DS_JOB_DONE);
    assert_int_equal(j.nodes, r.nodes);
    ds_job_free(&j);

    /* Deterministic ids: one more identical plan committed changes nothing. */
    scan before = scan_all(st);
    append(path, "", 0, "ab");
    ds_tstate ts;
    assert_int_equal(ds_tstate_load(st, path, &ts), 0);
    uint8_t id0[DS_ID_LEN];
    ds_ingest_node_id(path, ts.regions[0].start, 0, id0);
    ds_tstate_free(&ts);
    ds_node n;
    assert_int_equal(ds_store_get(st, id0, &n), 0);
    ds_node_free(&n);
    assert_int_equal(scan_all(st).n, before.n);
    free(path);
    ds_store_close(st);
}

static void test_chunks_bounded(void **state)
{
    (void)state;
    ds_store *st = open_store();
    char *path = new_transcript("long.jsonl");
    char text[2048];
    for (int i = 0; i < 60; i++) {
        snprintf(text, sizeof text,
                 "Step %d: the root cause was an unchecked return value in module_%d.c, fixed "
                 "by propagating the error code to the caller. %0*d",
                 i, i, 900, 0);
        append_line(path, i % 2 ? "assistant" : "user", text, g_dir);
    }
    ds_ingest_plan p;
    char *b = NULL;
    plan(st, path, &p, &b);
    assert_true(p.nchunks >= 2);
    for (size_t i = 0; i < p.nchunks; i++) {
        ds_distill_input in = { p.chunks[i].turns, p.chunks[i].nturns, "", "s" };
        char *f = ds_distill_format(&in);
        assert_non_null(f);
        assert_true(strlen(f) <= DS_INGEST_CHUNK_TARGET + 4096);
        free(f);
        assert_int_equal(p.chunks[i].index, i);
        if (i)
            assert_int_equal(p.chunks[i].start, p.chunks[i - 1].end);
    }
    ds_ingest_plan_free(&p);
    free(b);
    free(path);
    ds_store_close(st);
}

static void test_encode_project(void **state)
{
    (void)state;
    char *e = ds_ingest_encode_project("/home/ana/my.proj_x y");
    assert_string_equal(e, "-home-ana-my-proj-x-y");
    free(e);
    e = ds_ingest_encode_project("/tmp/caf\xc3\xa9");
    assert_string_equal(e, "-tmp-caf-");
    free(e);
}

static int setup(void **state)
{
    (void)state;
    g_dir = ds_test_tmpdir();
    return ds_distiller_extractive_new(&g_dist);
}

static int teardown(void **state)
{
    (void)state;
    g_dist->destroy(g_dist);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_and_redaction),
        cmocka_unit_test(test_project_lookup),
        cmocka_unit_test(test_append_and_truncated_line),
        cmocka_unit_test(test_reprocess_same_chunk),
        cmocka_unit_test(test_rewritten_transcript),
        cmocka_unit_test(test_crash_between_plan_and_commit),
        cmocka_unit_test(test_chunks_bounded),
        cmocka_unit_test(test_encode_project),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
