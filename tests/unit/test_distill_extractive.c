/*
 * test_distill_extractive.c - the built-in extractive distiller on a
 * hand-written, realistic session chunk: the insights a reader needs
 * (root cause, fix, decision, question/answer pairs) are produced, each
 * naming its subject; chatter and tool noise are not; empty input gives
 * nothing; the output is deterministic.  Also covers ds_distill_format
 * and the shared output parser ds_distill_parse_output.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/distill.h"
#include "io/distill_io.h"

#define PROJ "/home/ana/ds"

static ds_turn mk(ds_turn_kind kind, const char *tool, const char *text)
{
    ds_turn t;
    memset(&t, 0, sizeof t);
    t.kind = kind;
    t.text = (char *)text;
    t.cwd = (char *)PROJ;
    t.session_id = (char *)"s-1";
    t.uuid = (char *)"";
    t.tool_name = (char *)(tool ? tool : "");
    return t;
}

/* A realistic chunk: a flaky-test investigation, then a storage decision. */
static size_t build_chunk(ds_turn *t)
{
    size_t n = 0;
    t[n++] = mk(DS_TURN_USER, NULL,
                "Why is test_store_concurrent flaky? It fails maybe one run in five on CI.");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL, "Let me read the test file first.");
    t[n++] = mk(DS_TURN_TOOL_USE, "Read", "Read: " PROJ "/tests/unit/test_store.c");
    t[n++] = mk(DS_TURN_TOOL_RESULT, "Read",
                "static void test_store_concurrent(void **state)\n{\n    mkdir(\"/tmp/ds-test\", 0700);\n");
    t[n++] = mk(DS_TURN_TOOL_USE, "Bash", "Bash: ctest -R test_store --repeat until-fail:20");
    t[n++] = mk(DS_TURN_TOOL_RESULT, "Bash",
                "Test project /home/ana/ds/build\n    Start 3: unit.test_store\n"
                "FAILED: test_store_concurrent: mdb_env_open: Device or resource busy\n");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL,
                "Now I'll run the tests again with verbose output.\n\n"
                "I found it. The flaky test was caused by a shared temp dir: every test "
                "process used `/tmp/ds-test`, so two concurrent ctest jobs opened the same "
                "LMDB environment (see v0.9.1 notes, e.g. the lock file). "
                "The fix is to give each test its own directory from `ds_test_tmpdir()`.");
    t[n++] = mk(DS_TURN_TOOL_USE, "Edit", "Edit: " PROJ "/tests/unit/test_store.c");
    t[n++] = mk(DS_TURN_TOOL_RESULT, "Edit", "The file has been updated.");
    t[n++] = mk(DS_TURN_TOOL_USE, "Bash", "Bash: ctest -R test_store --repeat until-fail:20");
    t[n++] = mk(DS_TURN_TOOL_RESULT, "Bash", "100% tests passed, 0 tests failed out of 1");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL, "Done. The test now passes 20 times in a row.");
    t[n++] = mk(DS_TURN_USER, NULL, "great, thanks");
    t[n++] = mk(DS_TURN_USER, NULL, "Should we keep SQLite for the search index or switch?");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL,
                "Great question! We'll go with LMDB instead of SQLite because readers never "
                "block. It also keeps the index in one memory-mapped file.");
    return n;
}

/* The insight of |kind| (any kind if NULL) containing |needle|. */
static const ds_insight *find_kind(const ds_insight *v, size_t n, const char *kind, const char *needle)
{
    for (size_t i = 0; i < n; i++)
        if ((!kind || !strcmp(v[i].kind, kind)) && strstr(v[i].content, needle)) return &v[i];
    return NULL;
}

static const ds_insight *find(const ds_insight *v, size_t n, const char *needle)
{
    return find_kind(v, n, NULL, needle);
}

static void distill(const ds_turn *t, size_t n, const char *project, ds_insight **out, size_t *cnt)
{
    ds_distiller *d = NULL;
    assert_int_equal(ds_distiller_extractive_new(&d), 0);
    assert_string_equal(d->name, "extractive");
    ds_distill_input in = { t, n, project, "s-1" };
    assert_int_equal(d->distill(d, &in, out, cnt), 0);
    d->destroy(d);
}

static void test_realistic_chunk(void **state)
{
    (void)state;
    ds_turn t[32];
    size_t n = build_chunk(t);
    ds_insight *v = NULL;
    size_t cnt = 0;
    distill(t, n, PROJ, &v, &cnt);

    if (getenv("DS_TEST_VERBOSE"))
        for (size_t i = 0; i < cnt; i++)
            printf("[%s %.2f] %s\n", v[i].kind, v[i].confidence, v[i].content);

    assert_true(cnt >= 4 && cnt <= 12);

    /* Root cause, named by the file that was edited, with the error seen. */
    const ds_insight *cause = find_kind(v, cnt, "fix", "caused by a shared temp dir");
    assert_non_null(cause);
    assert_non_null(strstr(cause->content, "In ds: Fix (tests/unit/test_store.c): "));
    assert_non_null(strstr(cause->content, "mdb_env_open: Device or resource busy"));
    /* The splitter kept the version number and "e.g." inside the sentence. */
    assert_non_null(strstr(cause->content, "v0.9.1 notes, e.g. the lock file"));
    assert_true(cause->confidence >= 0.75 && cause->confidence <= 0.9);

    const ds_insight *fix = find_kind(v, cnt, "fix", "own directory from `ds_test_tmpdir()`");
    assert_non_null(fix);
    assert_non_null(strstr(fix->content, "In ds: Fix (tests/unit/test_store.c): "));

    /* The decision with its reason. */
    const ds_insight *dec = find(v, cnt, "Decision: We'll go with LMDB instead of SQLite because readers never block.");
    assert_non_null(dec);
    assert_string_equal(dec->kind, "decision");
    assert_non_null(strstr(dec->content, "In ds: "));
    assert_null(strstr(dec->content, "Great question"));

    /* Questions paired with their answers. */
    const ds_insight *qa1 = find(v, cnt, "Q: Why is test_store_concurrent flaky?");
    assert_non_null(qa1);
    assert_string_equal(qa1->kind, "qa");
    assert_non_null(strstr(qa1->content, " A: "));
    assert_non_null(strstr(qa1->content, "shared temp dir"));
    const ds_insight *qa2 = find(v, cnt, "Q: Should we keep SQLite for the search index or switch? A: ");
    assert_non_null(qa2);
    assert_non_null(strstr(qa2->content, "readers never block"));

    /* Chatter and tool noise are absent. */
    const char *noise[] = { "Let me read", "Now I'll run", "Great", "great, thanks", "Done.",
                            "I found it", "100% tests passed", "The file has been updated",
                            "static void", "Read:" };
    for (size_t k = 0; k < sizeof noise / sizeof *noise; k++)
        for (size_t i = 0; i < cnt; i++)
            if (strstr(v[i].content, noise[k])) fail_msg("noise '%s' in: %s", noise[k], v[i].content);

    /* Every insight names its subject, fits the cap, has a sane confidence. */
    for (size_t i = 0; i < cnt; i++) {
        assert_true(strncmp(v[i].content, "In ds: ", 7) == 0);
        assert_true(strlen(v[i].content) <= 600);
        assert_true(v[i].confidence >= 0.5 && v[i].confidence <= 0.9);
        for (size_t j = 0; j < i; j++) assert_string_not_equal(v[i].content, v[j].content);
    }
    ds_insights_free(v, cnt);
}

static void test_empty_and_chatter_only(void **state)
{
    (void)state;
    ds_insight *v = (ds_insight *)1;
    size_t cnt = 99;
    distill(NULL, 0, "", &v, &cnt);
    assert_null(v);
    assert_int_equal(cnt, 0);

    ds_turn t[6];
    size_t n = 0;
    t[n++] = mk(DS_TURN_USER, NULL, "run the tests please");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL, "Let me run the tests. Now I'll check the output.");
    t[n++] = mk(DS_TURN_TOOL_USE, "Bash", "Bash: make test");
    t[n++] = mk(DS_TURN_TOOL_RESULT, "Bash", "ok 1 - all good");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL, "Great! Done.");
    t[n++] = mk(DS_TURN_USER, NULL, "thanks");
    distill(t, n, PROJ, &v, &cnt);
    assert_int_equal(cnt, 0);
    ds_insights_free(v, cnt);
}

static void test_qa_pairing_and_pronouns(void **state)
{
    (void)state;
    ds_turn t[8];
    size_t n = 0;
    t[n++] = mk(DS_TURN_USER, NULL, "how does the chunker pick its boundaries");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL,
                "Let me check src/core/chunk.c. It splits before Markdown headings and at "
                "blank lines, packing paragraphs up to DS_CHUNK_TARGET bytes.");
    t[n++] = mk(DS_TURN_USER, NULL, "Ok.");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL,
                "The writer thread holds the LMDB write lock for the whole batch. "
                "This works because readers use MVCC snapshots and never wait for it.");
    ds_insight *v = NULL;
    size_t cnt = 0;
    distill(t, n, "", &v, &cnt);   /* project taken from the turns' cwd */

    const ds_insight *qa = find(v, cnt, "Q: how does the chunker pick its boundaries A: ");
    assert_non_null(qa);
    assert_non_null(strstr(qa->content, "packing paragraphs up to DS_CHUNK_TARGET bytes"));
    assert_null(strstr(qa->content, "Let me check"));

    /* "This works because ..." carries the sentence it refers to. */
    const ds_insight *w = find(v, cnt, "This works because readers use MVCC snapshots");
    assert_non_null(w);
    assert_non_null(strstr(w->content, "In ds: Note: The writer thread holds the LMDB write lock"));
    assert_string_equal(w->kind, "conclusion");
    ds_insights_free(v, cnt);
}

static void test_caps_and_dedup(void **state)
{
    (void)state;
    enum { N = 40 };
    static const char *opt[] = { "map_size", "max_readers", "max_dbs", "sync_mode", "page_hint",
                                 "no_tls", "read_ahead", "meta_sync", "lock_wait", "grow_step",
                                 "cursor_cap", "txn_limit", "key_width", "val_limit", "dup_sort",
                                 "fsync_lag", "mmap_flags", "spill_pages", "dirty_room", "seq_base" };
    static const char *why[] = { "the file is mapped once", "readers reserve slots early",
                                 "the catalog is fixed at open", "pages are flushed in order",
                                 "the allocator plans ahead", "threads own their slots",
                                 "the kernel prefetches pages", "the header is rewritten",
                                 "locks are taken eagerly", "growth doubles the file",
                                 "cursors are pooled per thread", "transactions are counted",
                                 "keys are compared bytewise", "values inline below a limit",
                                 "duplicates need sorted pages", "journal writes lag behind",
                                 "mappings are shared", "spilled pages stay cached",
                                 "dirty lists are bounded", "sequences start at the base" };
    ds_turn t[N];
    static char texts[N][400];
    for (int i = 0; i < N; i++) {
        /* Pairs of near-identical conclusions, twenty distinct ones. */
        snprintf(texts[i], sizeof texts[i],
                 "Note that `%s` must be set before ds_store_open() runs, because %s%s.",
                 opt[i / 2], why[i / 2], (i % 2) ? " anyway" : "");
        t[i] = mk(DS_TURN_ASSISTANT, NULL, texts[i]);
    }
    ds_insight *v = NULL;
    size_t cnt = 0;
    distill(t, N, PROJ, &v, &cnt);
    assert_int_equal(cnt, 12);
    /* No option is told twice. */
    for (size_t k = 0; k < N / 2; k++) {
        char key[64];
        snprintf(key, sizeof key, "`%s`", opt[k]);
        int seen = 0;
        for (size_t i = 0; i < cnt; i++) seen += strstr(v[i].content, key) != NULL;
        assert_true(seen <= 1);
    }
    ds_insights_free(v, cnt);

    /* One overlong sentence: cut on a word boundary within the cap. */
    static char big[4000];
    strcpy(big, "The root cause was the retry loop in src/io/sync.c");
    while (strlen(big) < 900) strcat(big, " and another subordinate clause about retries");
    strcat(big, ".");
    ds_turn one = mk(DS_TURN_ASSISTANT, NULL, big);
    distill(&one, 1, PROJ, &v, &cnt);
    assert_int_equal(cnt, 1);
    assert_true(strlen(v[0].content) <= 600);
    assert_non_null(strstr(v[0].content, "Fix (src/io/sync.c): The root cause"));
    assert_non_null(strstr(v[0].content, "..."));
    ds_insights_free(v, cnt);
}

static void test_resolved_error_and_merge(void **state)
{
    (void)state;
    ds_turn t[12];
    size_t n = 0;
    t[n++] = mk(DS_TURN_USER, NULL, "The build fails on CI with a linker error, can you look?");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL, "I'll check the build.");
    t[n++] = mk(DS_TURN_TOOL_USE, "Bash", "Bash: make");
    t[n++] = mk(DS_TURN_TOOL_RESULT, "Bash",
                "cc -o app main.o util.o\n/usr/bin/ld: util.o: undefined reference to `sqrt'\n"
                "collect2: error: ld returned 1 exit status");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL, "The math library isn't linked. I added `-lm` to LDLIBS in the Makefile.");
    t[n++] = mk(DS_TURN_TOOL_USE, "Bash", "Bash: make");
    t[n++] = mk(DS_TURN_TOOL_RESULT, "Bash", "cc -o app main.o util.o -lm");
    t[n++] = mk(DS_TURN_ASSISTANT, NULL,
                "It turns out the session cookie was never refreshed because the middleware ran "
                "after the router. Moving `refreshSession()` before `app.use(router)` fixed it.");
    ds_insight *v = NULL;
    size_t cnt = 0;
    distill(t, n, PROJ, &v, &cnt);

    /* The tool error that a later run no longer shows, with its explanation. */
    const ds_insight *f = find(v, cnt, "Fix (make): ");
    assert_non_null(f);
    assert_non_null(strstr(f->content, "undefined reference to 'sqrt'"));
    assert_non_null(strstr(f->content, "I added `-lm` to LDLIBS"));
    assert_null(find(v, cnt, "collect2"));
    assert_null(find(v, cnt, "cc -o app"));

    /* "... fixed it." carries its cause; the cause is not told twice. */
    const ds_insight *m = find(v, cnt, "Moving `refreshSession()` before `app.use(router)` fixed it.");
    assert_non_null(m);
    assert_non_null(strstr(m->content, "It turns out the session cookie was never refreshed"));
    int told = 0;
    for (size_t i = 0; i < cnt; i++) told += strstr(v[i].content, "session cookie") != NULL;
    assert_int_equal(told, 1);
    ds_insights_free(v, cnt);
}

static void test_deterministic(void **state)
{
    (void)state;
    ds_turn t[32];
    size_t n = build_chunk(t);
    ds_insight *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    distill(t, n, PROJ, &a, &na);
    distill(t, n, PROJ, &b, &nb);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(a[i].content, b[i].content);
        assert_string_equal(a[i].kind, b[i].kind);
        assert_true(a[i].confidence == b[i].confidence);
    }
    ds_insights_free(a, na);
    ds_insights_free(b, nb);
}

static void test_hostile_text(void **state)
{
    (void)state;
    /* Unbalanced code spans and fences, no spaces, lone punctuation. */
    const char *texts[] = {
        "`unclosed code span because the root cause was x.y.z. Then more.",
        "```\nfenced without end. the root cause was hidden\n",
        "....?\?\?!!! ... . ? !", "", "\n\n\n", "-", "# ", "1. ", "e.g.", "a.b.c.d.e.f",
        "\xe2\x80\x99\xe2\x80\x99 it\xe2\x80\x99s because of \xc3\xa9t\xc3\xa9.",
    };
    ds_turn t[16];
    size_t n = 0;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        t[n++] = mk(i % 2 ? DS_TURN_USER : DS_TURN_ASSISTANT, NULL, texts[i]);
    t[n++] = mk(DS_TURN_TOOL_RESULT, "", "error");
    t[n++] = mk(DS_TURN_TOOL_USE, "", "");
    ds_insight *v = NULL;
    size_t cnt = 0;
    distill(t, n, "/", &v, &cnt);
    for (size_t i = 0; i < cnt; i++) assert_true(strlen(v[i].content) <= 600);
    ds_insights_free(v, cnt);
}

static void test_format(void **state)
{
    (void)state;
    ds_turn t[4];
    t[0] = mk(DS_TURN_USER, NULL, "why?");
    t[1] = mk(DS_TURN_ASSISTANT, NULL, "Because.");
    t[2] = mk(DS_TURN_TOOL_USE, "Bash", "Bash: make test");
    t[3] = mk(DS_TURN_TOOL_RESULT, "Bash", "ok");
    ds_distill_input in = { t, 4, PROJ, "s-1" };
    char *s = ds_distill_format(&in);
    assert_non_null(s);
    assert_string_equal(s, "Project: " PROJ "\n\nUser: why?\n\nAssistant: Because.\n\n"
                           "Tool (Bash): make test\n\nTool result (Bash): ok\n");
    free(s);
    ds_distill_input empty = { NULL, 0, "", "" };
    s = ds_distill_format(&empty);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

static void test_parse_output(void **state)
{
    (void)state;
    ds_insight *v = NULL;
    size_t n = 0;
    const char *j = "[{\"content\":\"In ds: use LMDB\",\"kind\":\"decision\",\"confidence\":0.8},"
                    "{\"content\":\"  second  \"}, \"plain string\", {\"content\":\"\"}, 42]";
    assert_int_equal(ds_distill_parse_output(j, strlen(j), &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].content, "In ds: use LMDB");
    assert_string_equal(v[0].kind, "decision");
    assert_true(v[0].confidence > 0.79 && v[0].confidence < 0.81);
    assert_string_equal(v[1].content, "second");
    assert_string_equal(v[1].kind, "insight");
    assert_string_equal(v[2].content, "plain string");
    ds_insights_free(v, n);

    const char *o = "```json\n{\"insights\":[{\"content\":\"x\",\"confidence\":7}]}\n```\n";
    assert_int_equal(ds_distill_parse_output(o, strlen(o), &v, &n), 0);
    assert_int_equal(n, 1);
    assert_true(v[0].confidence == 1.0);
    ds_insights_free(v, n);

    const char *t = "Here are the insights:\n\n- first bullet\n  continued\n* second\n\n"
                    "A paragraph\nover two lines.\n\n# Heading\n1. numbered\n";
    assert_int_equal(ds_distill_parse_output(t, strlen(t), &v, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(v[0].content, "first bullet continued");
    assert_string_equal(v[1].content, "second");
    assert_string_equal(v[2].content, "A paragraph over two lines.");
    assert_string_equal(v[3].content, "numbered");
    ds_insights_free(v, n);

    assert_int_equal(ds_distill_parse_output("  \n ", 4, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ds_distill_parse_output("", 0, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ds_distill_parse_output("[]", 2, &v, &n), 0);
    assert_int_equal(n, 0);
    /* Malformed: truncated JSON, wrong shape, junk elements, bad UTF-8. */
    assert_int_equal(ds_distill_parse_output("[{\"content\":\"x\"", 15, &v, &n), DS_ERR_PROTO);
    assert_int_equal(ds_distill_parse_output("{\"a\":1}", 7, &v, &n), DS_ERR_PROTO);
    assert_int_equal(ds_distill_parse_output("[[1],{\"b\":2}]", 15, &v, &n), DS_ERR_PROTO);
    assert_int_equal(ds_distill_parse_output("ab\xff", 3, &v, &n), DS_ERR_PROTO);
    assert_null(v);
    assert_int_equal(n, 0);
    /* "[decision] ..." is plain text, not broken JSON. */
    assert_int_equal(ds_distill_parse_output("[decision] use LMDB", 19, &v, &n), 0);
    assert_int_equal(n, 1);
    ds_insights_free(v, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_realistic_chunk),
        cmocka_unit_test(test_empty_and_chatter_only),
        cmocka_unit_test(test_qa_pairing_and_pronouns),
        cmocka_unit_test(test_caps_and_dedup),
        cmocka_unit_test(test_resolved_error_and_merge),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_hostile_text),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
