/*
 * test_mcp.c - tests of the MCP server (src/cli/mcp.c).  Each test feeds
 * a whole session of newline-delimited JSON-RPC messages to
 * ds_mcp_serve() through a temporary file and reads the replies from a
 * memory stream, against a real store in a temporary home: the
 * lifecycle, the three tools, every JSON-RPC error, notifications,
 * over-long lines, invalid UTF-8 and end of input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/mcp.h"
#include "testutil.h"

#define MAX_REPLIES 64
#define INIT_LINE                                                                          \
    "{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\",\"params\":{"          \
    "\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"                              \
    "\"clientInfo\":{\"name\":\"test_mcp\",\"version\":\"1\"}}}\n"                         \
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n"

static int64_t fake_ms = 1714557600000; /* 2024-05-01T10:00:00Z */

static int64_t fake_now(void)
{
    return fake_ms += 1000;
}

static void fake_random(void *buf, size_t len)
{
    ds_test_random(buf, len);
}

typedef struct session {
    int rc;
    size_t n;
    json_t *r[MAX_REPLIES];
} session;

static void session_free(session *s)
{
    for (size_t i = 0; i < s->n; i++)
        json_decref(s->r[i]);
    memset(s, 0, sizeof *s);
}

/* Runs one server session over |input| (|len| bytes) with home |home|
 * and working directory |cwd|; every output line must be one JSON
 * object. */
static void run_n(const char *home, const char *cwd, const char *input, size_t len, session *s)
{
    memset(s, 0, sizeof *s);
    ds_ctx ctx;
    assert_int_equal(ds_ctx_init(&ctx, home, fake_now, fake_random), 0);
    FILE *in = tmpfile();
    assert_non_null(in);
    assert_int_equal(fwrite(input, 1, len, in), len);
    rewind(in);
    char *buf = NULL;
    size_t blen = 0;
    FILE *out = open_memstream(&buf, &blen);
    assert_non_null(out);
    s->rc = ds_mcp_serve(&ctx, cwd, in, out);
    assert_int_equal(fclose(out), 0);
    fclose(in);
    ds_ctx_free(&ctx);
    assert_true(blen == 0 || buf[blen - 1] == '\n');
    char *line = buf;
    for (char *nl; blen && (nl = memchr(line, '\n', blen - (size_t)(line - buf))) != NULL;
         line = nl + 1) {
        json_error_t e;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &e);
        if (!j)
            fail_msg("reply is not JSON: %s: %.*s", e.text, (int)(nl - line), line);
        assert_true(json_is_object(j));
        assert_string_equal(json_string_value(json_object_get(j, "jsonrpc")), "2.0");
        assert_true(s->n < MAX_REPLIES);
        s->r[s->n++] = j;
        if ((size_t)(nl + 1 - buf) >= blen)
            break;
    }
    free(buf);
}

static void run(const char *home, const char *input, session *s)
{
    run_n(home, NULL, input, strlen(input), s);
}

/* Reply |i| is an error with |code|; its id is the integer |id|, or
 * null when |id| is -1. */
static void assert_error(const session *s, size_t i, int code, long long id)
{
    assert_true(i < s->n);
    json_t *err = json_object_get(s->r[i], "error");
    if (!err)
        fail_msg("reply %zu is not an error: %s", i, json_dumps(s->r[i], JSON_COMPACT));
    assert_int_equal(json_integer_value(json_object_get(err, "code")), code);
    assert_true(json_is_string(json_object_get(err, "message")));
    assert_null(json_object_get(s->r[i], "result"));
    json_t *rid = json_object_get(s->r[i], "id");
    if (id == -1)
        assert_true(json_is_null(rid));
    else
        assert_int_equal(json_integer_value(rid), id);
}

static json_t *result_of(const session *s, size_t i)
{
    assert_true(i < s->n);
    json_t *res = json_object_get(s->r[i], "result");
    if (!res)
        fail_msg("reply %zu is not a result: %s", i, json_dumps(s->r[i], JSON_COMPACT));
    return res;
}

/* A successful tool result's structuredContent, checked against its text. */
static json_t *tool_ok(const session *s, size_t i)
{
    json_t *res = result_of(s, i);
    if (json_is_true(json_object_get(res, "isError")))
        fail_msg("tool failed: %s", json_dumps(res, JSON_COMPACT));
    json_t *sc = json_object_get(res, "structuredContent");
    assert_true(json_is_object(sc));
    json_t *c0 = json_array_get(json_object_get(res, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "type")), "text");
    json_t *parsed = json_loads(json_string_value(json_object_get(c0, "text")), 0, NULL);
    assert_non_null(parsed);
    assert_true(json_equal(parsed, sc));
    json_decref(parsed);
    return sc;
}

/* A tool result with isError; returns its text. */
static const char *tool_err(const session *s, size_t i)
{
    json_t *res = result_of(s, i);
    assert_true(json_is_true(json_object_get(res, "isError")));
    assert_null(json_object_get(res, "structuredContent"));
    json_t *c0 = json_array_get(json_object_get(res, "content"), 0);
    const char *text = json_string_value(json_object_get(c0, "text"));
    assert_non_null(text);
    return text;
}

static char *call_line(int id, const char *tool, const char *args_json)
{
    char *s = NULL;
    assert_true(asprintf(&s,
                         "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{"
                         "\"name\":\"%s\",\"arguments\":%s}}\n",
                         id, tool, args_json) > 0);
    return s;
}

/* Runs INIT_LINE followed by one tool call; the call's reply is r[1]. */
static void run_call(const char *home, const char *cwd, const char *tool, const char *args,
                     session *s)
{
    char *call = call_line(1, tool, args);
    char *in = NULL;
    assert_true(asprintf(&in, "%s%s", INIT_LINE, call) > 0);
    run_n(home, cwd, in, strlen(in), s);
    free(call);
    free(in);
    assert_int_equal(s->rc, 0);
    assert_int_equal(s->n, 2);
}

static char *canonical(const char *p)
{
    char *r = realpath(p, NULL);
    assert_non_null(r);
    return r;
}

/* ---- Lifecycle ------------------------------------------------------------ */

static void test_initialize(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    static const struct {
        const char *asked, *answered;
    } cases[] = {
        { "2025-06-18", "2025-06-18" }, { "2025-03-26", "2025-03-26" },
        { "2024-11-05", "2024-11-05" }, { "2099-01-01", DS_MCP_LATEST_VERSION },
        { "", DS_MCP_LATEST_VERSION },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *in = NULL;
        assert_true(asprintf(&in,
                             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
                             "{\"protocolVersion\":\"%s\",\"capabilities\":{}}}\n",
                             cases[i].asked) > 0);
        session s;
        run(home, in, &s);
        free(in);
        assert_int_equal(s.rc, 0);
        assert_int_equal(s.n, 1);
        assert_int_equal(json_integer_value(json_object_get(s.r[0], "id")), 1);
        json_t *res = result_of(&s, 0);
        assert_string_equal(json_string_value(json_object_get(res, "protocolVersion")),
                            cases[i].answered);
        json_t *caps = json_object_get(res, "capabilities");
        assert_true(json_is_object(json_object_get(caps, "tools")));
        json_t *info = json_object_get(res, "serverInfo");
        assert_string_equal(json_string_value(json_object_get(info, "name")), "datasphere");
        assert_true(json_is_string(json_object_get(info, "version")));
        session_free(&s);
    }

    /* A second initialize is refused; bad params are -32602 and leave the
     * session uninitialized. */
    session s;
    run(home,
        INIT_LINE "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\",\"params\":"
                  "{\"protocolVersion\":\"2025-06-18\"}}\n",
        &s);
    assert_int_equal(s.n, 2);
    assert_error(&s, 1, -32600, 2);
    session_free(&s);
    run(home,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\"}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\",\"params\":"
        "{\"protocolVersion\":20250618}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}\n",
        &s);
    assert_int_equal(s.n, 3);
    assert_error(&s, 0, -32602, 1);
    assert_error(&s, 1, -32602, 2);
    assert_error(&s, 2, -32002, 3);
    session_free(&s);
}

static void test_before_initialize(void **state)
{
    (void)state;
    session s;
    run(ds_test_tmpdir(),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
        "\"datasphere_query\",\"arguments\":{\"query\":\"x\"}}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"resources/list\"}\n",
        &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.n, 4);
    assert_error(&s, 0, -32002, 1);
    assert_error(&s, 1, -32002, 2);
    json_t *pong = result_of(&s, 2);
    assert_true(json_is_object(pong));
    assert_int_equal(json_object_size(pong), 0);
    assert_error(&s, 3, -32601, 4);
    session_free(&s);
}

static void test_tools_list(void **state)
{
    (void)state;
    session s;
    run(ds_test_tmpdir(),
        INIT_LINE "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n"
                  "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":"
                  "{\"cursor\":5}}\n",
        &s);
    assert_int_equal(s.n, 3);
    json_t *tools = json_object_get(result_of(&s, 1), "tools");
    assert_int_equal(json_array_size(tools), 3);
    static const struct {
        const char *name, *required;
    } want[] = {
        { "datasphere_query", "query" },
        { "datasphere_related", "node_id" },
        { "datasphere_add", "content" },
    };
    for (size_t i = 0; i < 3; i++) {
        json_t *t = json_array_get(tools, i);
        assert_string_equal(json_string_value(json_object_get(t, "name")), want[i].name);
        assert_true(strlen(json_string_value(json_object_get(t, "description"))) > 20);
        json_t *schema = json_object_get(t, "inputSchema");
        assert_string_equal(json_string_value(json_object_get(schema, "type")), "object");
        assert_true(json_is_object(json_object_get(schema, "properties")));
        json_t *req = json_object_get(schema, "required");
        assert_string_equal(json_string_value(json_array_get(req, 0)), want[i].required);
        assert_true(json_is_object(json_object_get(t, "outputSchema")));
    }
    json_t *qprops = json_object_get(json_object_get(json_array_get(tools, 0), "inputSchema"),
                                     "properties");
    assert_non_null(json_object_get(qprops, "limit"));
    assert_non_null(json_object_get(qprops, "namespace"));
    assert_non_null(json_object_get(qprops, "peer"));
    json_t *aprops = json_object_get(json_object_get(json_array_get(tools, 2), "inputSchema"),
                                     "properties");
    assert_non_null(json_object_get(aprops, "source"));
    assert_non_null(json_object_get(aprops, "namespace"));
    assert_non_null(json_object_get(aprops, "project"));
    assert_error(&s, 2, -32602, 2);
    session_free(&s);
}

/* ---- Tools -------------------------------------------------------------- */

static void test_tool_calls(void **state)
{
    (void)state;
    ds_test_seed(7);
    const char *home = ds_test_tmpdir();
    const char *cwd = ds_test_tmpdir();
    const char *proj = ds_test_tmpdir();
    char *ccwd = canonical(cwd), *cproj = canonical(proj);
    session s;
    char args[1024];

    /* add with every argument */
    snprintf(args, sizeof args,
             "{\"content\":\"raise the lmdb map size with mdb_env_set_mapsize\","
             "\"source\":\"claude\",\"namespace\":\"work\",\"project\":\"%s\"}",
             proj);
    run_call(home, cwd, "datasphere_add", args, &s);
    json_t *sc = tool_ok(&s, 1);
    char id1[64];
    snprintf(id1, sizeof id1, "%s", json_string_value(json_object_get(sc, "id")));
    assert_int_equal(strlen(id1), 36);
    assert_memory_equal(json_string_value(json_object_get(sc, "source")), "claude:", 7);
    assert_string_equal(json_string_value(json_object_get(sc, "project")), cproj);
    assert_string_equal(json_string_value(json_object_get(sc, "namespace")), "work");
    assert_string_equal(json_string_value(json_object_get(sc, "store")), "local");
    assert_true(json_is_string(json_object_get(sc, "timestamp")));
    session_free(&s);

    /* add with defaults: source "note", namespace personal, project = cwd */
    run_call(home, cwd, "datasphere_add",
             "{\"content\":\"lmdb map size: mdb_env_set_mapsize before opening\","
             "\"namespace\":null}",
             &s);
    sc = tool_ok(&s, 1);
    char id2[64];
    snprintf(id2, sizeof id2, "%s", json_string_value(json_object_get(sc, "id")));
    assert_memory_equal(json_string_value(json_object_get(sc, "source")), "note:", 5);
    assert_string_equal(json_string_value(json_object_get(sc, "project")), ccwd);
    assert_string_equal(json_string_value(json_object_get(sc, "namespace")), "personal");
    session_free(&s);

    /* query finds the first note with store, project and a score */
    run_call(home, cwd, "datasphere_query",
             "{\"query\":\"mdb_env_set_mapsize lmdb\",\"limit\":5,\"namespace\":\"work\"}", &s);
    sc = tool_ok(&s, 1);
    json_t *res = json_object_get(sc, "results");
    assert_int_equal(json_array_size(res), 1);
    json_t *hit = json_array_get(res, 0);
    assert_string_equal(json_string_value(json_object_get(hit, "id")), id1);
    assert_string_equal(json_string_value(json_object_get(hit, "store")), "local");
    assert_string_equal(json_string_value(json_object_get(hit, "project")), cproj);
    assert_string_equal(json_string_value(json_object_get(hit, "namespace")), "work");
    assert_true(json_real_value(json_object_get(hit, "score")) > 0);
    assert_non_null(strstr(json_string_value(json_object_get(hit, "content")), "lmdb map"));
    assert_true(json_is_string(json_object_get(hit, "source")));
    assert_true(json_is_string(json_object_get(hit, "timestamp")));
    session_free(&s);

    /* without the namespace filter both match; limit 1 (as a whole real) */
    run_call(home, cwd, "datasphere_query", "{\"query\":\"lmdb map size\",\"limit\":1.0}", &s);
    assert_int_equal(json_array_size(json_object_get(tool_ok(&s, 1), "results")), 1);
    session_free(&s);
    run_call(home, cwd, "datasphere_query", "{\"query\":\"lmdb map size\"}", &s);
    assert_int_equal(json_array_size(json_object_get(tool_ok(&s, 1), "results")), 2);
    session_free(&s);

    /* related: the origin and the other note */
    snprintf(args, sizeof args, "{\"node_id\":\"%s\",\"limit\":3}", id1);
    run_call(home, cwd, "datasphere_related", args, &s);
    sc = tool_ok(&s, 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(sc, "origin"), "id")),
                        id1);
    res = json_object_get(sc, "results");
    assert_int_equal(json_array_size(res), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "id")), id2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(res, 0), "store")), "local");
    session_free(&s);

    /* a unique prefix is enough */
    char prefix[9];
    memcpy(prefix, id2, 8);
    prefix[8] = '\0';
    snprintf(args, sizeof args, "{\"node_id\":\"%s\"}", prefix);
    run_call(home, cwd, "datasphere_related", args, &s);
    sc = tool_ok(&s, 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(sc, "origin"), "id")),
                        id2);
    session_free(&s);

    /* shell metacharacters are plain text: stored and found verbatim */
    run_call(home, cwd, "datasphere_add",
             "{\"content\":\"zqxj $(touch /tmp/pwned) `id`; rm -rf / && echo zqxj\"}", &s);
    tool_ok(&s, 1);
    session_free(&s);
    run_call(home, cwd, "datasphere_query", "{\"query\":\"zqxj\"}", &s);
    res = json_object_get(tool_ok(&s, 1), "results");
    assert_int_equal(json_array_size(res), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "content")),
                        "zqxj $(touch /tmp/pwned) `id`; rm -rf / && echo zqxj");
    session_free(&s);

    free(ccwd);
    free(cproj);
}

static void test_tool_failures(void **state)
{
    (void)state;
    const char *empty_home = ds_test_tmpdir();
    char *missing = NULL;
    assert_true(asprintf(&missing, "%s/none", empty_home) > 0);
    session s;

    /* nothing stored yet: an error result, and nothing is created */
    run_call(missing, NULL, "datasphere_query", "{\"query\":\"anything\"}", &s);
    assert_non_null(strstr(tool_err(&s, 1), "no_store"));
    session_free(&s);
    struct stat sb;
    assert_int_not_equal(stat(missing, &sb), 0);

    const char *home = ds_test_tmpdir();
    run_call(home, NULL, "datasphere_add", "{\"content\":\"a first note about gcc flags\"}", &s);
    tool_ok(&s, 1);
    session_free(&s);

    static const struct {
        const char *tool, *args, *needle;
    } cases[] = {
        { "datasphere_query", "{\"query\":\"   \"}", "empty_query" },
        { "datasphere_query", "{\"query\":\"!!! ???\"}", "empty_query" },
        { "datasphere_query", "{\"query\":\"gcc\",\"namespace\":\"\"}", "namespace" },
        { "datasphere_related", "{\"node_id\":\"ffffffff\"}", "not_found" },
        { "datasphere_related", "{\"node_id\":\"not-an-id\"}", "invalid_argument" },
        { "datasphere_related", "{\"node_id\":\"\"}", "missing node id" },
        { "datasphere_add", "{\"content\":\"\"}", "empty note" },
        { "datasphere_add", "{\"content\":\"x\",\"project\":\"/nonexistent/dir/zz\"}",
          "project" },
        { "datasphere_add", "{\"content\":\"x\",\"source\":\"a\\nb\"}", "control character" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_call(home, NULL, cases[i].tool, cases[i].args, &s);
        const char *text = tool_err(&s, 1);
        if (!strstr(text, cases[i].needle))
            fail_msg("case %zu: '%s' not in '%s'", i, cases[i].needle, text);
        session_free(&s);
    }
    free(missing);
}

static void test_invalid_params(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    static const struct {
        const char *params;
    } cases[] = {
        { "{\"name\":\"no_such_tool\",\"arguments\":{}}" },
        { "{\"arguments\":{\"query\":\"x\"}}" },
        { "{\"name\":42,\"arguments\":{}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":[\"x\"]}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":\"x\"}" },
        { "{\"name\":\"datasphere_query\"}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":null}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":42}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":\"x\",\"limit\":0}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":\"x\",\"limit\":101}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":\"x\",\"limit\":-1}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":\"x\",\"limit\":2.5}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":\"x\",\"limit\":1e300}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":\"x\",\"limit\":\"5\"}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":\"x\",\"namespace\":1}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":\"x\",\"peer\":true}}" },
        { "{\"name\":\"datasphere_query\",\"arguments\":{\"query\":\"x\",\"lmit\":5}}" },
        { "{\"name\":\"datasphere_related\",\"arguments\":{\"limit\":5}}" },
        { "{\"name\":\"datasphere_related\",\"arguments\":{\"node_id\":[]}}" },
        { "{\"name\":\"datasphere_add\",\"arguments\":{\"source\":\"note\"}}" },
        { "{\"name\":\"datasphere_add\",\"arguments\":{\"content\":\"x\",\"source\":{}}}" },
        { "{\"name\":\"datasphere_add\",\"arguments\":{\"content\":\"x\",\"tags\":[\"a\"]}}" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *in = NULL;
        assert_true(asprintf(&in,
                             INIT_LINE "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"tools/call\","
                                       "\"params\":%s}\n",
                             i + 10, cases[i].params) > 0);
        session s;
        run(home, in, &s);
        free(in);
        assert_int_equal(s.n, 2);
        assert_error(&s, 1, -32602, (long long)(i + 10));
        session_free(&s);
    }
    /* params that are an array */
    session s;
    run(home,
        INIT_LINE "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":"
                  "[\"datasphere_query\"]}\n",
        &s);
    assert_error(&s, 1, -32602, 5);
    session_free(&s);
    /* nothing was added by any of the calls above */
    run_call(home, NULL, "datasphere_query", "{\"query\":\"x\"}", &s);
    assert_non_null(strstr(tool_err(&s, 1), "no_store"));
    session_free(&s);
}

/* ---- JSON-RPC framing and errors --------------------------------------- */

static void test_protocol_errors(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int code;
        long long id; /* -1: null */
    } cases[] = {
        { "{", -32700, -1 },
        { "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} x", -32700, -1 },
        { "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}", -32700, -1 },
        { "[]", -32600, -1 },
        { "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", -32600, -1 },
        { "42", -32600, -1 },
        { "\"ping\"", -32600, -1 },
        { "null", -32600, -1 },
        { "{}", -32600, -1 },
        { "{\"jsonrpc\":\"1.0\",\"id\":7,\"method\":\"ping\"}", -32600, 7 },
        { "{\"id\":8,\"method\":\"ping\"}", -32600, 8 },
        { "{\"jsonrpc\":2.0,\"id\":9,\"method\":\"ping\"}", -32600, 9 },
        { "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}", -32600, -1 },
        { "{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}", -32600, -1 },
        { "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", -32600, -1 },
        { "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}", -32600, -1 },
        { "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}", -32600, -1 },
        { "{\"jsonrpc\":\"2.0\",\"id\":10}", -32600, 10 },
        { "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":5}", -32600, 11 },
        { "{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"ping\",\"params\":\"x\"}", -32600, 12 },
        { "{\"jsonrpc\":\"2.0\",\"id\":13,\"method\":\"no/such/method\"}", -32601, 13 },
        { "{\"jsonrpc\":\"2.0\",\"id\":14,\"method\":\"prompts/list\"}", -32601, 14 },
        { "{\"jsonrpc\":\"2.0\",\"id\":15,\"method\":\"tools/list\",\"params\":[]}", -32602, 15 },
    };
    const char *home = ds_test_tmpdir();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *in = NULL;
        assert_true(asprintf(&in, INIT_LINE "%s\n{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":"
                                            "\"ping\"}\n",
                             cases[i].line) > 0);
        session s;
        run(home, in, &s);
        free(in);
        if (s.n != 3)
            fail_msg("case %zu (%s): %zu replies", i, cases[i].line, s.n);
        assert_error(&s, 1, cases[i].code, cases[i].id);
        /* the server goes on after the error */
        result_of(&s, 2);
        assert_int_equal(s.rc, 0);
        session_free(&s);
    }
}

static void test_ids_echoed(void **state)
{
    (void)state;
    session s;
    run(ds_test_tmpdir(),
        "{\"jsonrpc\":\"2.0\",\"id\":\"a \\\"quoted\\\" id\",\"method\":\"ping\"}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":-5,\"method\":\"ping\"}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":9007199254740993,\"method\":\"ping\"}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":\"\",\"method\":\"ping\"}\n",
        &s);
    assert_int_equal(s.n, 4);
    assert_string_equal(json_string_value(json_object_get(s.r[0], "id")), "a \"quoted\" id");
    assert_int_equal(json_integer_value(json_object_get(s.r[1], "id")), -5);
    assert_true(json_integer_value(json_object_get(s.r[2], "id")) == 9007199254740993LL);
    assert_string_equal(json_string_value(json_object_get(s.r[3], "id")), "");
    session_free(&s);
}

static void test_notifications_get_no_reply(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    session s;
    /* Before and after initialize: known, unknown and request-like
     * notifications are all silent, and a tools/call without an id does
     * nothing.  A response from the client is ignored too. */
    run(home,
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n"
        "{\"jsonrpc\":\"2.0\",\"method\":\"tools/list\"}\n" INIT_LINE
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
        "{\"requestId\":1}}\n"
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/unknown\"}\n"
        "{\"jsonrpc\":\"2.0\",\"method\":\"no/such/method\",\"params\":{}}\n"
        "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"datasphere_add\","
        "\"arguments\":{\"content\":\"should not be stored\"}}}\n"
        "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":77,\"result\":{}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":78,\"error\":{\"code\":-1,\"message\":\"x\"}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}\n",
        &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.n, 2); /* initialize and ping */
    assert_string_equal(json_string_value(json_object_get(s.r[0], "id")), "init");
    assert_int_equal(json_integer_value(json_object_get(s.r[1], "id")), 5);
    session_free(&s);
    /* the notification tools/call did not add anything */
    run_call(home, NULL, "datasphere_query", "{\"query\":\"stored\"}", &s);
    assert_non_null(strstr(tool_err(&s, 1), "no_store"));
    session_free(&s);
}

/* A ping padded to exactly |len| bytes. */
static char *padded_ping(size_t len, int id)
{
    char head[64];
    int hl = snprintf(head, sizeof head,
                      "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\",\"params\":{\"p\":\"", id);
    const char *tail = "\"}}";
    size_t tl = strlen(tail);
    assert_true(len > (size_t)hl + tl);
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, head, (size_t)hl);
    memset(s + hl, 'x', len - (size_t)hl - tl);
    memcpy(s + len - tl, tail, tl);
    s[len] = '\0';
    return s;
}

static void test_long_lines(void **state)
{
    (void)state;
    char *at_limit = padded_ping(DS_MCP_MAX_LINE, 1);
    char *over = padded_ping(DS_MCP_MAX_LINE + 1, 2);
    char *huge = padded_ping(3 * (size_t)DS_MCP_MAX_LINE, 3);
    size_t cap = 4 * (size_t)DS_MCP_MAX_LINE + 6 * DS_MCP_MAX_LINE / 4 + 256;
    char *in = malloc(cap);
    assert_non_null(in);
    int n = snprintf(in, cap, "%s\n%s\n%s\n{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}\n",
                     at_limit, over, huge);
    assert_true(n > 0 && (size_t)n < cap);
    session s;
    run_n(ds_test_tmpdir(), NULL, in, (size_t)n, &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.n, 4);
    result_of(&s, 0);
    assert_int_equal(json_integer_value(json_object_get(s.r[0], "id")), 1);
    assert_error(&s, 1, -32700, -1);
    assert_error(&s, 2, -32700, -1);
    result_of(&s, 3);
    assert_int_equal(json_integer_value(json_object_get(s.r[3], "id")), 4);
    session_free(&s);
    free(at_limit);
    free(over);
    free(huge);
    free(in);
}

static void test_invalid_utf8_and_nul(void **state)
{
    (void)state;
    static const char in[] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"p\":\"\xff\xfe\"}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\",\"params\":{\"p\":\"\xc3\"}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\",\"params\":{\"p\":\"\xed\xa0\x80\"}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\",\"params\":{\"p\":\"\\ud800\"}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\",\"params\":{\"p\":\"a\\u0000b\"}}\n"
        "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}\0garbage\n"
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\",\"params\":{\"p\":\"caf\xc3\xa9\"}}\n";
    session s;
    run_n(ds_test_tmpdir(), NULL, in, sizeof in - 1, &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.n, 7);
    for (size_t i = 0; i < 6; i++)
        assert_error(&s, i, -32700, -1);
    result_of(&s, 6);
    assert_int_equal(json_integer_value(json_object_get(s.r[6], "id")), 7);
    session_free(&s);
}

static void test_eof_and_framing(void **state)
{
    (void)state;
    const char *home = ds_test_tmpdir();
    session s;
    run(home, "", &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.n, 0);
    session_free(&s);
    /* blank lines are skipped, CRLF accepted, the last line needs no '\n' */
    run(home,
        "\n   \n\r\n"
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n"
        "  {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}  \n"
        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}",
        &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(json_integer_value(json_object_get(s.r[i], "id")), (long long)i + 1);
    session_free(&s);
    /* a request cut off by end of input is a parse error */
    run(home, "{\"jsonrpc\":\"2.0\",\"id\":1,\"met", &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.n, 1);
    assert_error(&s, 0, -32700, -1);
    session_free(&s);
}

static void test_write_failure(void **state)
{
    (void)state;
    FILE *out = fopen("/dev/full", "w");
    if (!out)
        skip();
    FILE *in = tmpfile();
    assert_non_null(in);
    fputs("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"
          "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n",
          in);
    rewind(in);
    ds_ctx ctx;
    assert_int_equal(ds_ctx_init(&ctx, ds_test_tmpdir(), fake_now, fake_random), 0);
    assert_int_equal(ds_mcp_serve(&ctx, NULL, in, out), DS_ERR_IO);
    ds_ctx_free(&ctx);
    fclose(in);
    fclose(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_initialize),
        cmocka_unit_test(test_before_initialize),
        cmocka_unit_test(test_tools_list),
        cmocka_unit_test(test_tool_calls),
        cmocka_unit_test(test_tool_failures),
        cmocka_unit_test(test_invalid_params),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_ids_echoed),
        cmocka_unit_test(test_notifications_get_no_reply),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_invalid_utf8_and_nul),
        cmocka_unit_test(test_eof_and_framing),
        cmocka_unit_test(test_write_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
