/*
 * test_watch.c - recursive watching on a real libuv loop over a temp
 * tree: the catch-up scan, a file created in an existing directory, a
 * subdirectory created after start with a file inside, and a root that
 * appears only later.  Every wait is bounded by a 5 s uv timer; the file
 * system changes are made from uv timers, never with sleeps.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/watch.h"

typedef struct seen {
    char paths[64][512];
    int catchup[64];
    size_t n;
    const char *want;        /* stop the loop when this path is reported */
    uv_loop_t *loop;
    int timed_out;
} seen;

static void on_file(void *ud, const char *path, const struct stat *st, int catchup)
{
    seen *s = ud;
    if (!st)
        return;
    if (s->n < 64) {
        snprintf(s->paths[s->n], sizeof s->paths[0], "%s", path);
        s->catchup[s->n] = catchup;
        s->n++;
    }
    if (s->want && strcmp(path, s->want) == 0)
        uv_stop(s->loop);
}

static int has(const seen *s, const char *path, int catchup)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->paths[i], path) == 0 && (catchup < 0 || s->catchup[i] == catchup))
            return 1;
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void on_timeout(uv_timer_t *t)
{
    seen *s = t->data;
    s->timed_out = 1;
    uv_stop(t->loop);
}

/* Runs |loop| until |s->want| is reported or 5 s have passed. */
static void wait_for(uv_loop_t *loop, seen *s, const char *want)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = s;
    s->want = want;
    s->timed_out = 0;
    uv_timer_start(&t, on_timeout, 5000, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_false(s->timed_out);
    assert_true(has(s, want, 0));
}

typedef struct action {
    uv_timer_t t;
    char path[1024];
    int mkdir_;
    char file[1024];
} action;

static void do_action(uv_timer_t *t)
{
    action *a = t->data;
    if (a->mkdir_)
        assert_int_equal(mkdir(a->path, 0700), 0);
    if (a->file[0])
        write_file(a->file, "{}\n");
}

static void schedule(uv_loop_t *loop, action *a, const char *dir, const char *file)
{
    memset(a, 0, sizeof *a);
    uv_timer_init(loop, &a->t);
    a->t.data = a;
    if (dir) {
        snprintf(a->path, sizeof a->path, "%s", dir);
        a->mkdir_ = 1;
    }
    if (file)
        snprintf(a->file, sizeof a->file, "%s", file);
    uv_timer_start(&a->t, do_action, 20, 0);
}

static int stopped;
static void on_stopped(void *ud)
{
    (void)ud;
    stopped = 1;
}

static void test_recursive(void **state)
{
    (void)state;
    const char *root = ds_test_tmpdir();
    char proj[600], old[700], fresh[700], sub[600], inner[700], deep[700], deepf[800];
    snprintf(proj, sizeof proj, "%s/-home-ana-proj", root);
    snprintf(old, sizeof old, "%s/old.jsonl", proj);
    snprintf(fresh, sizeof fresh, "%s/new.jsonl", proj);
    snprintf(sub, sizeof sub, "%s/-home-ana-other.x", root);
    snprintf(inner, sizeof inner, "%s/s1.jsonl", sub);
    snprintf(deep, sizeof deep, "%s/subagents", sub);
    snprintf(deepf, sizeof deepf, "%s/a.jsonl", deep);
    assert_int_equal(mkdir(proj, 0700), 0);
    write_file(old, "{}\n");

    uv_loop_t loop;
    uv_loop_init(&loop);
    seen s;
    memset(&s, 0, sizeof s);
    s.loop = &loop;
    ds_watch *w = NULL;
    const char *roots[] = { root };
    assert_int_equal(ds_watch_start(&w, &loop, roots, 1, on_file, &s), 0);
    assert_true(has(&s, old, 1));             /* catch-up report */
    assert_int_equal(ds_watch_dirs(w), 2);

    action a[3];
    schedule(&loop, &a[0], NULL, fresh);      /* file in an existing dir */
    wait_for(&loop, &s, fresh);
    uv_close((uv_handle_t *)&a[0].t, NULL);

    schedule(&loop, &a[1], sub, inner);       /* new dir, then a file in it */
    wait_for(&loop, &s, inner);
    uv_close((uv_handle_t *)&a[1].t, NULL);
    assert_true(ds_watch_dirs(w) >= 3);

    schedule(&loop, &a[2], deep, deepf);      /* and one level deeper */
    wait_for(&loop, &s, deepf);
    uv_close((uv_handle_t *)&a[2].t, NULL);

    stopped = 0;
    ds_watch_stop(w, on_stopped, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(stopped);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_missing_root_appears(void **state)
{
    (void)state;
    const char *base = ds_test_tmpdir();
    char root[600], proj[700], file[800];
    snprintf(root, sizeof root, "%s/projects", base);
    snprintf(proj, sizeof proj, "%s/-p", root);
    snprintf(file, sizeof file, "%s/s.jsonl", proj);

    uv_loop_t loop;
    uv_loop_init(&loop);
    seen s;
    memset(&s, 0, sizeof s);
    s.loop = &loop;
    ds_watch *w = NULL;
    const char *roots[] = { root };
    assert_int_equal(ds_watch_start(&w, &loop, roots, 1, on_file, &s), 0);
    assert_int_equal(ds_watch_dirs(w), 0);

    action a;
    schedule(&loop, &a, root, NULL);          /* the root appears */
    /* Then, once it is watched, a project folder with a session. */
    action b;
    memset(&b, 0, sizeof b);
    uv_timer_init(&loop, &b.t);
    b.t.data = &b;
    snprintf(b.path, sizeof b.path, "%s", proj);
    b.mkdir_ = 1;
    snprintf(b.file, sizeof b.file, "%s", file);
    uv_timer_start(&b.t, do_action, 300, 0);
    wait_for(&loop, &s, file);
    uv_close((uv_handle_t *)&a.t, NULL);
    uv_close((uv_handle_t *)&b.t, NULL);

    stopped = 0;
    ds_watch_stop(w, on_stopped, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(stopped);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recursive),
        cmocka_unit_test(test_missing_root_appears),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
