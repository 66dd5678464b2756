/*
 * test_distill_command.c - the command distiller against fake programs:
 * small shell scripts written by the test into a temporary directory and
 * executed directly (no shell in the distiller).  Covers JSON and bullet
 * output, empty output, the chunk reaching stdin, arguments passed
 * verbatim, a program that ignores its stdin, timeouts (killed, reaped,
 * prompt), non-zero exits with stderr's first line, missing programs and
 * oversized output.
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/distill.h"
#include "io/distill_io.h"

static const char *dir;

static char *script(const char *name, const char *body)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0755), 0);
    char *p = strdup(path);
    assert_non_null(p);
    return p;
}

static ds_turn turns[3];

static ds_distill_input sample_input(void)
{
    memset(turns, 0, sizeof turns);
    const char *texts[] = { "Why is the build slow?", "Because ccache was disabled.", "Bash: make -j2" };
    ds_turn_kind kinds[] = { DS_TURN_USER, DS_TURN_ASSISTANT, DS_TURN_TOOL_USE };
    for (int i = 0; i < 3; i++) {
        turns[i].kind = kinds[i];
        turns[i].text = (char *)texts[i];
        turns[i].cwd = (char *)"/p/ds";
        turns[i].session_id = turns[i].uuid = (char *)"";
        turns[i].tool_name = (char *)(i == 2 ? "Bash" : "");
    }
    ds_distill_input in = { turns, 3, "/p/ds", "s-1" };
    return in;
}

static char logged[1024];
static void log_cb(void *ud, const char *line)
{
    (*(int *)ud)++;
    snprintf(logged, sizeof logged, "%s", line);
}

static int run_cmd(const char *const *argv, int timeout_ms, size_t max_output,
                   const ds_distill_input *in, ds_insight **v, size_t *n, char *err, size_t errlen)
{
    int nlog = 0;
    ds_distill_command_config cfg = { argv, timeout_ms, max_output, log_cb, &nlog };
    ds_distiller *d = NULL;
    assert_int_equal(ds_distiller_command_new(&cfg, &d), 0);
    assert_string_equal(d->name, "command");
    int rc = d->distill(d, in, v, n);
    assert_int_equal(nlog, 1);
    if (err) snprintf(err, errlen, "%s", ds_distiller_last_error(d));
    if (rc == 0) assert_string_equal(ds_distiller_last_error(d), "");
    d->destroy(d);
    return rc;
}

static void test_json_output(void **state)
{
    (void)state;
    char *p = script("json.sh", "cat >/dev/null\n"
                     "echo '[{\"content\":\"In ds: Decision: use LMDB\",\"kind\":\"decision\",\"confidence\":0.9},'\n"
                     "echo ' {\"content\":\"In ds: ccache must stay enabled\"}]'");
    const char *argv[] = { p, NULL };
    ds_distill_input in = sample_input();
    ds_insight *v = NULL;
    size_t n = 0;
    assert_int_equal(run_cmd(argv, 5000, 0, &in, &v, &n, NULL, 0), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].content, "In ds: Decision: use LMDB");
    assert_string_equal(v[0].kind, "decision");
    assert_true(v[0].confidence > 0.89 && v[0].confidence < 0.91);
    assert_string_equal(v[1].content, "In ds: ccache must stay enabled");
    assert_non_null(strstr(logged, "2 insights"));
    ds_insights_free(v, n);
    free(p);
}

static void test_bullets_and_empty(void **state)
{
    (void)state;
    char *p = script("bullets.sh", "cat >/dev/null\nprintf 'Insights:\\n- first thing\\n* second thing\\n  wrapped\\n'");
    char *e = script("empty.sh", "cat >/dev/null");
    ds_distill_input in = sample_input();
    ds_insight *v = NULL;
    size_t n = 0;
    const char *argv[] = { p, NULL };
    assert_int_equal(run_cmd(argv, 5000, 0, &in, &v, &n, NULL, 0), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].content, "first thing");
    assert_string_equal(v[1].content, "second thing wrapped");
    ds_insights_free(v, n);

    const char *argv2[] = { e, NULL };
    assert_int_equal(run_cmd(argv2, 5000, 0, &in, &v, &n, NULL, 0), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    free(p);
    free(e);
}

static void test_stdin_is_the_chunk(void **state)
{
    (void)state;
    char body[4200];
    snprintf(body, sizeof body, "tee '%s/stdin.txt' | wc -c | tr -d ' '", dir);
    char *p = script("count.sh", body);
    const char *argv[] = { p, NULL };
    ds_distill_input in = sample_input();
    ds_insight *v = NULL;
    size_t n = 0;
    assert_int_equal(run_cmd(argv, 5000, 0, &in, &v, &n, NULL, 0), 0);
    char *expect = ds_distill_format(&in);
    assert_non_null(expect);
    char count[32];
    snprintf(count, sizeof count, "%zu", strlen(expect));
    assert_int_equal(n, 1);
    assert_string_equal(v[0].content, count);
    char path[4200];
    snprintf(path, sizeof path, "%s/stdin.txt", dir);
    size_t len = 0;
    char *got = ds_test_read_file(path, &len);
    assert_non_null(got);
    assert_string_equal(got, expect);
    assert_non_null(strstr(got, "User: Why is the build slow?"));
    assert_non_null(strstr(got, "Tool (Bash): make -j2"));
    free(got);
    free(expect);
    ds_insights_free(v, n);
    free(p);
}

static void test_args_verbatim_no_shell(void **state)
{
    (void)state;
    char *p = script("args.sh", "cat >/dev/null\nprintf -- '- %s|%s\\n' \"$1\" \"$2\"");
    char marker[4200];
    snprintf(marker, sizeof marker, "x; touch %s/pwned $(id)", dir);
    const char *argv[] = { p, marker, "two words", NULL };
    ds_distill_input in = sample_input();
    ds_insight *v = NULL;
    size_t n = 0;
    assert_int_equal(run_cmd(argv, 5000, 0, &in, &v, &n, NULL, 0), 0);
    assert_int_equal(n, 1);
    char expect[8500];
    snprintf(expect, sizeof expect, "%s|two words", marker);
    assert_string_equal(v[0].content, expect);
    char pw[4200];
    snprintf(pw, sizeof pw, "%s/pwned", dir);
    assert_int_equal(access(pw, F_OK), -1);
    ds_insights_free(v, n);
    free(p);
}

static void test_program_ignores_stdin(void **state)
{
    (void)state;
    /* A big chunk that the program never reads: the write fails with EPIPE,
     * which must neither kill us (SIGPIPE) nor fail the call. */
    char *p = script("ignore.sh", "echo '- fine'");
    const char *argv[] = { p, NULL };
    static char big[1 << 20];
    memset(big, 'a', sizeof big - 1);
    ds_turn t;
    memset(&t, 0, sizeof t);
    t.kind = DS_TURN_ASSISTANT;
    t.text = big;
    t.cwd = t.session_id = t.uuid = t.tool_name = (char *)"";
    ds_distill_input in = { &t, 1, "", "" };
    ds_insight *v = NULL;
    size_t n = 0;
    assert_int_equal(run_cmd(argv, 10000, 0, &in, &v, &n, NULL, 0), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].content, "fine");
    ds_insights_free(v, n);
    free(p);
}

static void test_timeout(void **state)
{
    (void)state;
    char *p = script("sleep.sh", "exec sleep 30");
    const char *argv[] = { p, NULL };
    ds_distill_input in = sample_input();
    ds_insight *v = (ds_insight *)1;
    size_t n = 7;
    char err[512];
    time_t t0 = time(NULL);
    assert_int_equal(run_cmd(argv, 200, 0, &in, &v, &n, err, sizeof err), DS_ERR_TIMEOUT);
    assert_true(time(NULL) - t0 < 20);   /* generous: the sleep alone is 30 s */
    assert_null(v);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "timed out"));
    assert_non_null(strstr(logged, "failed"));
    /* The child was reaped: no child of ours is left. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    free(p);
}

static void test_exit_status(void **state)
{
    (void)state;
    char *p = script("exit3.sh", "cat >/dev/null\necho 'model overloaded, try later' >&2\n"
                     "echo 'second line' >&2\necho '- partial'\nexit 3");
    const char *argv[] = { p, NULL };
    ds_distill_input in = sample_input();
    ds_insight *v = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(run_cmd(argv, 5000, 0, &in, &v, &n, err, sizeof err), DS_ERR_IO);
    assert_null(v);
    assert_non_null(strstr(err, "exited with status 3: model overloaded, try later"));
    assert_null(strstr(err, "second line"));
    free(p);

    const char *missing[] = { "/nonexistent/ds-distiller", NULL };
    assert_int_equal(run_cmd(missing, 5000, 0, &in, &v, &n, err, sizeof err), DS_ERR_IO);
    assert_non_null(strstr(err, "cannot run /nonexistent/ds-distiller"));
}

static void test_output_bound_and_garbage(void **state)
{
    (void)state;
    char *p = script("spam.sh", "exec yes -- '- spam'");
    const char *argv[] = { p, NULL };
    ds_distill_input in = sample_input();
    ds_insight *v = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(run_cmd(argv, 5000, 1000, &in, &v, &n, err, sizeof err), DS_ERR_TOOLARGE);
    assert_non_null(strstr(err, "more than 1000 bytes"));
    free(p);

    char *g = script("garbage.sh", "cat >/dev/null\necho '[{\"content\": \"unterminated'");
    const char *argv2[] = { g, NULL };
    assert_int_equal(run_cmd(argv2, 5000, 0, &in, &v, &n, err, sizeof err), DS_ERR_PROTO);
    assert_non_null(strstr(err, "malformed"));
    free(g);
}

static void test_config_errors(void **state)
{
    (void)state;
    ds_distiller *d = NULL;
    const char *none[] = { NULL };
    ds_distill_command_config cfg = { none, 0, 0, NULL, NULL };
    assert_int_equal(ds_distiller_command_new(&cfg, &d), DS_ERR_INVALID);
    assert_int_equal(ds_distiller_command_new(NULL, &d), DS_ERR_INVALID);
    assert_string_equal(ds_distiller_last_error(NULL), "");
}

static int setup(void **state)
{
    (void)state;
    dir = ds_test_tmpdir();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_output),
        cmocka_unit_test(test_bullets_and_empty),
        cmocka_unit_test(test_stdin_is_the_chunk),
        cmocka_unit_test(test_args_verbatim_no_shell),
        cmocka_unit_test(test_program_ignores_stdin),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_output_bound_and_garbage),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
