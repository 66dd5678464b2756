/*
 * test_config.c - HOME/config.json: defaults, a full valid file, and
 * every kind of invalid file, each of which must fail with a message
 * naming the file, the key and the expectation (and leave the defaults).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "daemon/config.h"
#include "daemon/log.h"
#include "ds/error.h"

#define UHOME "/home/tester"

static char cfg_path[4096];

static void write_cfg(const char *text)
{
    if (!cfg_path[0])
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", ds_test_tmpdir());
    FILE *f = fopen(cfg_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void assert_defaults(const ds_config *c)
{
    assert_int_equal(c->nwatch, 1);
    assert_string_equal(c->watch[0], UHOME "/.claude/projects");
    assert_int_equal(c->idle_seconds, 180);
    assert_int_equal(c->distiller.kind, DS_DISTILL_EXTRACTIVE);
    assert_null(c->distiller.argv);
    assert_int_equal(c->log_max_bytes, 1048576);
    assert_int_equal(c->log_keep, 3);
    assert_int_equal(c->log_level, DS_LOG_INFO);
    assert_int_equal(c->queue_max_attempts, 5);
    assert_int_equal(c->queue_backoff_base_ms, 5000);
}

static void test_defaults(void **state)
{
    ds_config c;
    assert_int_equal(ds_config_defaults(&c, UHOME), 0);
    assert_defaults(&c);
    ds_config_free(&c);

    /* A missing file is the defaults, not an error. */
    char err[512] = "x";
    char path[4096];
    snprintf(path, sizeof path, "%s/none.json", ds_test_tmpdir());
    assert_int_equal(ds_config_load(&c, path, UHOME "/", err, sizeof err), 0);
    assert_defaults(&c);
    assert_string_equal(err, "");
    ds_config_free(&c);

    /* Without a user home nothing is watched by default. */
    assert_int_equal(ds_config_defaults(&c, NULL), 0);
    assert_int_equal(c.nwatch, 0);
    ds_config_free(&c);
}

static void test_full_valid(void **state)
{
    write_cfg("{\n"
              "  \"watch\": [\"~/a\", \"/abs/b/\", \"~\"],\n"
              "  \"idle_seconds\": 30,\n"
              "  \"distiller\": {\"type\": \"command\", \"argv\": [\"llm\", \"-m\", \"x\"],\n"
              "                \"timeout_ms\": 5000},\n"
              "  \"log\": {\"max_bytes\": 200, \"keep\": 2, \"level\": \"debug\"},\n"
              "  \"queue\": {\"max_attempts\": 2, \"backoff_base_ms\": 10}\n"
              "}\n");
    ds_config c;
    char err[512];
    assert_int_equal(ds_config_load(&c, cfg_path, UHOME, err, sizeof err), 0);
    assert_int_equal(c.nwatch, 3);
    assert_string_equal(c.watch[0], UHOME "/a");
    assert_string_equal(c.watch[1], "/abs/b");
    assert_string_equal(c.watch[2], UHOME);
    assert_int_equal(c.idle_seconds, 30);
    assert_int_equal(c.distiller.kind, DS_DISTILL_COMMAND);
    assert_string_equal(c.distiller.argv[0], "llm");
    assert_string_equal(c.distiller.argv[2], "x");
    assert_null(c.distiller.argv[3]);
    assert_int_equal(c.distiller.timeout_ms, 5000);
    assert_int_equal(c.log_max_bytes, 200);
    assert_int_equal(c.log_keep, 2);
    assert_int_equal(c.log_level, DS_LOG_DEBUG);
    assert_int_equal(c.queue_max_attempts, 2);
    assert_int_equal(c.queue_backoff_base_ms, 10);
    ds_config_free(&c);

    write_cfg("{\"distiller\": {\"type\": \"http\", \"provider\": \"openai\", \"model\": \"m\","
              " \"url\": \"http://127.0.0.1:9/v1\", \"connect_timeout_ms\": 1,"
              " \"max_retries\": 0}}");
    assert_int_equal(ds_config_load(&c, cfg_path, UHOME, err, sizeof err), 0);
    assert_int_equal(c.distiller.kind, DS_DISTILL_HTTP);
    assert_string_equal(c.distiller.provider, "openai");
    assert_string_equal(c.distiller.model, "m");
    assert_string_equal(c.distiller.url, "http://127.0.0.1:9/v1");
    assert_string_equal(c.distiller.api_key_env, "OPENAI_API_KEY");
    assert_int_equal(c.distiller.max_retries, 0);
    assert_int_equal(c.distiller.connect_timeout_ms, 1);
    ds_config_free(&c);

    write_cfg("{}");
    assert_int_equal(ds_config_load(&c, cfg_path, UHOME, err, sizeof err), 0);
    assert_defaults(&c);
    ds_config_free(&c);
}

/* Loads |text|, expects |rc| and a message containing the file name and
 * each of the |n| fragments; the config must then hold the defaults. */
static void expect_error(const char *text, int rc, size_t n, const char *const *frags)
{
    write_cfg(text);
    ds_config c;
    char err[1024];
    int got = ds_config_load(&c, cfg_path, UHOME, err, sizeof err);
    if (got != rc)
        fail_msg("config %s: expected %d, got %d (%s)", text, rc, got, err);
    if (!strstr(err, cfg_path))
        fail_msg("message does not name the file: %s", err);
    for (size_t i = 0; i < n; i++)
        if (!strstr(err, frags[i]))
            fail_msg("message for %s lacks '%s': %s", text, frags[i], err);
    assert_defaults(&c);
    ds_config_free(&c);
}

#define EXPECT(text, rc, ...)                                                                  \
    do {                                                                                       \
        const char *const f_[] = { __VA_ARGS__ };                                              \
        expect_error(text, rc, sizeof f_ / sizeof f_[0], f_);                                  \
    } while (0)

static void test_bad_json(void **state)
{
    EXPECT("{\n  \"idle_seconds\": 5,\n  oops\n}\n", DS_ERR_MALFORMED, ":3:", "invalid JSON");
    EXPECT("", DS_ERR_MALFORMED, "invalid JSON");
    EXPECT("{\"idle_seconds\": 1, \"idle_seconds\": 2}", DS_ERR_MALFORMED, "invalid JSON");
    EXPECT("[1, 2]", DS_ERR_INVALID, "JSON object");
}

static void test_unknown_keys(void **state)
{
    EXPECT("{\"idle_second\": 5}", DS_ERR_INVALID, "'idle_second'", "unknown key");
    EXPECT("{\"log\": {\"max_byte\": 5}}", DS_ERR_INVALID, "'log.max_byte'", "unknown key");
    EXPECT("{\"queue\": {\"retries\": 5}}", DS_ERR_INVALID, "'queue.retries'", "unknown key");
    EXPECT("{\"distiller\": {\"type\": \"extractive\", \"argv\": [\"x\"]}}", DS_ERR_INVALID,
           "'distiller.argv'", "extractive");
    EXPECT("{\"distiller\": {\"type\": \"command\", \"argv\": [\"x\"], \"model\": \"m\"}}",
           DS_ERR_INVALID, "'distiller.model'", "command");
}

static void test_wrong_types(void **state)
{
    EXPECT("{\"idle_seconds\": \"5\"}", DS_ERR_INVALID, "'idle_seconds'", "whole number");
    EXPECT("{\"idle_seconds\": 1.5}", DS_ERR_INVALID, "'idle_seconds'", "whole number");
    EXPECT("{\"watch\": \"~/x\"}", DS_ERR_INVALID, "'watch'", "array");
    EXPECT("{\"watch\": [3]}", DS_ERR_INVALID, "'watch[0]'", "string");
    EXPECT("{\"watch\": [\"relative/dir\"]}", DS_ERR_INVALID, "'watch[0]'", "absolute");
    EXPECT("{\"watch\": []}", DS_ERR_INVALID, "'watch'", "1 to");
    EXPECT("{\"log\": 5}", DS_ERR_INVALID, "'log'", "object");
    EXPECT("{\"log\": {\"level\": \"loud\"}}", DS_ERR_INVALID, "'log.level'", "\"debug\"");
    EXPECT("{\"distiller\": \"extractive\"}", DS_ERR_INVALID, "'distiller'", "object");
    EXPECT("{\"distiller\": {\"type\": \"gpt\"}}", DS_ERR_INVALID, "'distiller.type'", "\"http\"");
    EXPECT("{\"distiller\": {}}", DS_ERR_INVALID, "'distiller.type'", "missing");
    EXPECT("{\"distiller\": {\"type\": \"command\", \"argv\": \"llm -m x\"}}", DS_ERR_INVALID,
           "'distiller.argv'", "array of strings");
    EXPECT("{\"distiller\": {\"type\": \"command\", \"argv\": [\"llm\", 5]}}", DS_ERR_INVALID,
           "'distiller.argv'", "strings");
    EXPECT("{\"distiller\": {\"type\": \"http\", \"provider\": \"acme\", \"model\": \"m\"}}",
           DS_ERR_INVALID, "'distiller.provider'", "\"anthropic\"");
    EXPECT("{\"distiller\": {\"type\": \"http\", \"provider\": \"openai\", \"model\": \"m\","
           " \"url\": \"ftp://x\"}}",
           DS_ERR_INVALID, "'distiller.url'", "http");
}

static void test_bad_values(void **state)
{
    EXPECT("{\"idle_seconds\": 0}", DS_ERR_INVALID, "'idle_seconds'", "from 1");
    EXPECT("{\"idle_seconds\": -3}", DS_ERR_INVALID, "'idle_seconds'", "got -3");
    EXPECT("{\"idle_seconds\": 99999999999}", DS_ERR_INVALID, "'idle_seconds'", "whole number");
    EXPECT("{\"log\": {\"max_bytes\": 0}}", DS_ERR_INVALID, "'log.max_bytes'", "from 1");
    EXPECT("{\"log\": {\"keep\": -1}}", DS_ERR_INVALID, "'log.keep'", "from 1");
    EXPECT("{\"queue\": {\"max_attempts\": 0}}", DS_ERR_INVALID, "'queue.max_attempts'", "from 1");
    EXPECT("{\"queue\": {\"backoff_base_ms\": -10}}", DS_ERR_INVALID, "'queue.backoff_base_ms'",
           "from 1");
    EXPECT("{\"distiller\": {\"type\": \"command\", \"argv\": [\"x\"], \"timeout_ms\": 0}}",
           DS_ERR_INVALID, "'distiller.timeout_ms'", "from 1");
}

static void test_missing_required(void **state)
{
    EXPECT("{\"distiller\": {\"type\": \"command\"}}", DS_ERR_INVALID, "'distiller.argv'",
           "missing");
    EXPECT("{\"distiller\": {\"type\": \"command\", \"argv\": []}}", DS_ERR_INVALID,
           "'distiller.argv'", "non-empty");
    EXPECT("{\"distiller\": {\"type\": \"command\", \"argv\": [\"\"]}}", DS_ERR_INVALID,
           "'distiller.argv'", "empty");
    EXPECT("{\"distiller\": {\"type\": \"http\", \"provider\": \"anthropic\"}}", DS_ERR_INVALID,
           "'distiller.model'", "missing");
    EXPECT("{\"distiller\": {\"type\": \"http\", \"model\": \"m\"}}", DS_ERR_INVALID,
           "'distiller.provider'", "missing");
}

/* sync.listen is bound, never resolved: an IP address literal only, one
 * string (several addresses: ds start --listen, repeated). */
static void test_sync_listen(void **state)
{
    static const char *const good[][2] = {
        { "127.0.0.1:4000", "127.0.0.1:4000" }, { "0.0.0.0", "0.0.0.0" },
        { "[::1]:7979", "[::1]:7979" },         { "[::]", "[::]" },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char text[128], err[512];
        ds_config c;
        snprintf(text, sizeof text, "{\"sync\": {\"listen\": \"%s\"}}", good[i][0]);
        write_cfg(text);
        if (ds_config_load(&c, cfg_path, UHOME, err, sizeof err) != 0)
            fail_msg("%s: %s", text, err);
        assert_string_equal(c.sync_listen, good[i][1]);
        ds_config_free(&c);
    }
    EXPECT("{\"sync\": {\"listen\": \"localhost:4000\"}}", DS_ERR_INVALID, "'sync.listen'",
           "must be an IP address", "\"localhost:4000\" is not an IP address", "[::1]:7979");
    EXPECT("{\"sync\": {\"listen\": \"256.1.1.1:4000\"}}", DS_ERR_INVALID, "'sync.listen'",
           "is not an IP address");
    EXPECT("{\"sync\": {\"listen\": \"example.org\"}}", DS_ERR_INVALID, "'sync.listen'",
           "is not an IP address");
    EXPECT("{\"sync\": {\"listen\": [\"0.0.0.0:1\"]}}", DS_ERR_INVALID, "'sync.listen'",
           "expected a string");
}

/* Durations (sync.interval, ds start --sync-interval): units largest
 * first, each once; every refusal says why. */
static void test_duration(void **state)
{
    static const struct {
        const char *s;
        uint32_t v;
    } good[] = { { "90", 90 },        { "90s", 90 },       { "30m", 1800 },  { "1h30m", 5400 },
                 { "1d12h", 129600 }, { "1h0m5s", 3605 },  { "30d", 2592000 },
                 { "2592000", 2592000 }, { "0h1s", 1 } };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint32_t v = 0;
        const char *why = "unset";
        if (ds_duration_parse(good[i].s, &v, &why) != 0)
            fail_msg("duration '%s' refused: %s", good[i].s, why);
        assert_int_equal(v, good[i].v);
    }
    static const struct {
        const char *s, *why;
    } bad[] = {
        { "1m1m", "repeats a unit" },        { "1h30m1h", "repeats a unit" },
        { "5s5m", "out of order" },          { "30m1h", "out of order" },
        { "30x", "unknown unit" },           { "1e9h", "unknown unit" },
        { "1h 30m", "neither a digit nor a unit" },        { "-5m", "negative" },
        { "0", "zero" },                     { "0s", "zero" },
        { "", "empty" },                     { "5m30", "without a unit" },
        { "31d", "longer than 30 days" },    { "2592001", "longer than 30 days" },
        { "m", "does not start with a number" }, { "1hm", "a unit without a number" },
        { "9999999999s", "too large" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t v = 7;
        const char *why = NULL;
        if (ds_duration_parse(bad[i].s, &v, &why) != DS_ERR_INVALID)
            fail_msg("duration '%s' accepted (%u s)", bad[i].s, v);
        if (!why || !strstr(why, bad[i].why))
            fail_msg("duration '%s': expected '%s', got '%s'", bad[i].s, bad[i].why,
                     why ? why : "(null)");
        assert_int_equal(v, 7);
    }
    uint32_t v;
    assert_int_equal(ds_duration_parse(NULL, &v, NULL), DS_ERR_INVALID);
    assert_int_equal(ds_duration_parse("1h", &v, NULL), 0);
}

/* A bad sync.interval names the value, as integer errors do. */
static void test_sync_interval(void **state)
{
    ds_config c;
    char err[512];
    write_cfg("{\"sync\": {\"interval\": \"1h30m\"}}");
    assert_int_equal(ds_config_load(&c, cfg_path, UHOME, err, sizeof err), 0);
    assert_int_equal(c.sync_interval_s, 5400);
    ds_config_free(&c);
    write_cfg("{\"sync\": {\"interval\": 90}}");
    assert_int_equal(ds_config_load(&c, cfg_path, UHOME, err, sizeof err), 0);
    assert_int_equal(c.sync_interval_s, 90);
    ds_config_free(&c);
    EXPECT("{\"sync\": {\"interval\": \"30x\"}}", DS_ERR_INVALID, "'sync.interval'",
           "\"30x\" has an unknown unit", "\"30m\"");
    EXPECT("{\"sync\": {\"interval\": \"-5m\"}}", DS_ERR_INVALID, "\"-5m\" is negative");
    EXPECT("{\"sync\": {\"interval\": \"1e9h\"}}", DS_ERR_INVALID, "\"1e9h\"");
    EXPECT("{\"sync\": {\"interval\": \"0\"}}", DS_ERR_INVALID, "\"0\" is zero");
    EXPECT("{\"sync\": {\"interval\": \"1m1m\"}}", DS_ERR_INVALID, "\"1m1m\" repeats a unit");
    EXPECT("{\"sync\": {\"interval\": \"5s5m\"}}", DS_ERR_INVALID,
           "\"5s5m\" has its units out of order");
    EXPECT("{\"sync\": {\"interval\": null}}", DS_ERR_INVALID, "'sync.interval'", "got null");
    EXPECT("{\"sync\": {\"interval\": 1.5}}", DS_ERR_INVALID, "got 1.5");
    EXPECT("{\"sync\": {\"interval\": [\"30m\"]}}", DS_ERR_INVALID, "got [\"30m\"]");
    EXPECT("{\"sync\": {\"interval\": 0}}", DS_ERR_INVALID, "'sync.interval'", "got 0");
}

static void test_tilde(void **state)
{
    ds_config c;
    char err[512];
    write_cfg("{\"watch\": [\"~/x/\", \"~\"]}");
    assert_int_equal(ds_config_load(&c, cfg_path, "/u/", err, sizeof err), 0);
    assert_string_equal(c.watch[0], "/u/x");
    assert_string_equal(c.watch[1], "/u");
    ds_config_free(&c);
    /* "~user" is not expanded: it is a relative path. */
    EXPECT("{\"watch\": [\"~bob/x\"]}", DS_ERR_INVALID, "'watch[0]'", "absolute");
    /* No home to expand against. */
    write_cfg("{\"watch\": [\"~/x\"]}");
    assert_int_equal(ds_config_load(&c, cfg_path, NULL, err, sizeof err), DS_ERR_INVALID);
    assert_non_null(strstr(err, "'watch[0]'"));
    assert_non_null(strstr(err, "HOME"));
    ds_config_free(&c);
}

static void test_unreadable(void **state)
{
    /* A directory where the file should be. */
    ds_config c;
    char err[512];
    const char *dir = ds_test_tmpdir();
    int rc = ds_config_load(&c, dir, UHOME, err, sizeof err);
    assert_true(rc == DS_ERR_IO || rc == DS_ERR_MALFORMED);
    assert_non_null(strstr(err, dir));
    ds_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_full_valid),
        cmocka_unit_test(test_bad_json),       cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),    cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_missing_required), cmocka_unit_test(test_tilde),
        cmocka_unit_test(test_unreadable),     cmocka_unit_test(test_sync_listen),
        cmocka_unit_test(test_duration),       cmocka_unit_test(test_sync_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
