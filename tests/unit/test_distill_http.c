/*
 * test_distill_http.c - the HTTP distiller against a scripted HTTP server
 * that the test runs in a thread on 127.0.0.1 (port 0): retries on 429
 * (Retry-After: 0) and 500 then success with an Anthropic-shaped reply;
 * an OpenAI-shaped reply; 401 not retried; retries exhausted; malformed
 * replies; a missing key variable; configuration checks.  The server
 * records each request (path, headers, body) so the test can check the
 * key header, the API version and the model.  It serves a fixed number of
 * connections, polls accept with a timeout and stops by itself; no test
 * touches the real network.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "core/distill.h"
#include "io/distill_io.h"

#define MAX_SCRIPT 8
#define MAX_REQ (256u << 10)

typedef struct canned {
    int status;
    const char *headers;   /* extra header lines, each ending in \r\n */
    const char *body;
} canned;

typedef struct server {
    int fd;
    int port;
    canned script[MAX_SCRIPT];
    int nscript;
    int served;                     /* requests answered */
    char *req[MAX_SCRIPT];          /* raw requests (headers + body) */
    volatile int stop;
    pthread_t th;
} server;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads one request: headers, then Content-Length bytes.  Bounded in size
 * and time. */
static char *read_request(int fd)
{
    char *buf = calloc(1, MAX_REQ + 1);
    size_t len = 0, need = 0;
    int64_t deadline = mono_ms() + 5000;
    if (!buf) return NULL;
    while (len < MAX_REQ && mono_ms() < deadline) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t r = read(fd, buf + len, MAX_REQ - len);
        if (r <= 0) break;
        len += (size_t)r;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        if (!need) {
            size_t cl = 0;
            for (char *l = buf; l && l < end; l = strstr(l, "\r\n") ? strstr(l, "\r\n") + 2 : NULL)
                if (!strncasecmp(l, "Content-Length:", 15)) cl = strtoul(l + 15, NULL, 10);
            need = (size_t)(end + 4 - buf) + cl;
        }
        if (len >= need) break;
    }
    return buf;
}

static void *serve(void *arg)
{
    server *s = arg;
    int64_t deadline = mono_ms() + 20000;   /* stops by itself */
    while (!s->stop && s->served < s->nscript && mono_ms() < deadline) {
        struct pollfd p = { s->fd, POLLIN, 0 };
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        char *req = read_request(c);
        const canned *k = &s->script[s->served];
        s->req[s->served++] = req;
        char head[512];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 %d Canned\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                          k->status, strlen(k->body), k->headers ? k->headers : "");
        if (write(c, head, (size_t)hl) < 0 || write(c, k->body, strlen(k->body)) < 0) {}
        close(c);
    }
    return NULL;
}

static void server_start(server *s, const canned *script, int n)
{
    memset(s, 0, sizeof *s);
    assert_true(n <= MAX_SCRIPT);
    memcpy(s->script, script, (size_t)n * sizeof *script);
    s->nscript = n;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 8), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

static void server_stop(server *s)
{
    s->stop = 1;
    pthread_join(s->th, NULL);
    close(s->fd);
}

/* Frees the recorded requests (after server_stop). */
static void server_free(server *s)
{
    for (int i = 0; i < s->served; i++) free(s->req[i]);
    s->served = 0;
}

static char logged[2048];
static int nlogged;
static void log_cb(void *ud, const char *line)
{
    (void)ud;
    nlogged++;
    snprintf(logged, sizeof logged, "%s", line);
}

static ds_turn turns[2];
static ds_distill_input sample(void)
{
    memset(turns, 0, sizeof turns);
    turns[0].kind = DS_TURN_USER;
    turns[0].text = (char *)"Why does the sync stall?";
    turns[1].kind = DS_TURN_ASSISTANT;
    turns[1].text = (char *)"The cursor used wall-clock time; it now uses the sequence number.";
    for (int i = 0; i < 2; i++)
        turns[i].cwd = turns[i].session_id = turns[i].uuid = turns[i].tool_name = (char *)"";
    ds_distill_input in = { turns, 2, "/p/ds", "s-1" };
    return in;
}

static ds_distiller *make(const char *provider, int port, const char *path, int retries)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    ds_distill_http_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.provider = provider;
    cfg.url = url;
    cfg.model = "model-under-test";
    cfg.api_key_env = "DS_TEST_DISTILL_KEY";
    cfg.connect_timeout_ms = 2000;
    cfg.timeout_ms = 5000;
    cfg.max_retries = retries;
    cfg.backoff_base_ms = 1;
    cfg.backoff_max_ms = 20;
    cfg.price_input_per_mtok = 3.0;
    cfg.price_output_per_mtok = 15.0;
    cfg.log = log_cb;
    ds_distiller *d = NULL;
    assert_int_equal(ds_distiller_http_new(&cfg, &d), 0);
    assert_string_equal(d->name, "http");
    return d;
}

static const char *header(const char *req, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *end = strstr(req, "\r\n\r\n");
    for (const char *l = req; l && l < end; l = strstr(l, "\r\n") ? strstr(l, "\r\n") + 2 : NULL) {
        if (!strncasecmp(l, name, nl) && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ') v++;
            size_t n = strcspn(v, "\r");
            snprintf(out, outlen, "%.*s", (int)n, v);
            return out;
        }
    }
    return NULL;
}

static json_t *req_body(const char *req)
{
    const char *b = strstr(req, "\r\n\r\n");
    assert_non_null(b);
    json_t *j = json_loads(b + 4, 0, NULL);
    assert_non_null(j);
    return j;
}

static const char ANTHROPIC_OK[] =
    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
    "\"text\":\"[{\\\"content\\\":\\\"In ds: Fix: the sync cursor must use the store sequence, "
    "not wall-clock time\\\",\\\"kind\\\":\\\"fix\\\",\\\"confidence\\\":0.85}]\"}],"
    "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":1200,\"output_tokens\":80}}";

static void test_anthropic_retries_then_ok(void **state)
{
    (void)state;
    canned script[] = {
        { 429, "Retry-After: 0\r\n", "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}" },
        { 500, NULL, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"oops\"}}" },
        { 200, NULL, ANTHROPIC_OK },
    };
    server s;
    server_start(&s, script, 3);
    setenv("DS_TEST_DISTILL_KEY", "sk-test-key-123", 1);
    ds_distiller *d = make("anthropic", s.port, "/v1/messages", 3);
    ds_distill_input in = sample();
    ds_insight *v = NULL;
    size_t n = 0;
    nlogged = 0;
    assert_int_equal(d->distill(d, &in, &v, &n), 0);
    server_stop(&s);

    assert_int_equal(s.served, 3);   /* two retries */
    assert_int_equal(n, 1);
    assert_string_equal(v[0].kind, "fix");
    assert_non_null(strstr(v[0].content, "sync cursor must use the store sequence"));
    assert_true(v[0].confidence > 0.84 && v[0].confidence < 0.86);

    for (int i = 0; i < 3; i++) {
        char h[256];
        assert_true(strncmp(s.req[i], "POST /v1/messages HTTP/1.1\r\n", 28) == 0);
        assert_non_null(header(s.req[i], "x-api-key", h, sizeof h));
        assert_string_equal(h, "sk-test-key-123");
        assert_non_null(header(s.req[i], "anthropic-version", h, sizeof h));
        assert_string_equal(h, "2023-06-01");
        assert_null(header(s.req[i], "Authorization", h, sizeof h));
    }
    json_t *b = req_body(s.req[2]);
    assert_string_equal(json_string_value(json_object_get(b, "model")), "model-under-test");
    assert_true(json_integer_value(json_object_get(b, "max_tokens")) > 0);
    assert_non_null(strstr(json_string_value(json_object_get(b, "system")), "JSON array"));
    json_t *m0 = json_array_get(json_object_get(b, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(m0, "role")), "user");
    assert_non_null(strstr(json_string_value(json_object_get(m0, "content")), "User: Why does the sync stall?"));
    json_decref(b);

    assert_int_equal(nlogged, 1);
    assert_non_null(strstr(logged, "attempts=3"));
    assert_non_null(strstr(logged, "input_tokens=1200 output_tokens=80"));
    assert_non_null(strstr(logged, "cost=$0.004800"));   /* 1200*3/1e6 + 80*15/1e6 */
    assert_null(strstr(logged, "sk-test-key-123"));
    assert_string_equal(ds_distiller_last_error(d), "");
    ds_insights_free(v, n);
    d->destroy(d);
    server_free(&s);
}

static void test_openai_shape(void **state)
{
    (void)state;
    canned script[] = {
        { 200, NULL,
          "{\"id\":\"c1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
          "{\"role\":\"assistant\",\"content\":\"```json\\n{\\\"insights\\\":[{\\\"content\\\":"
          "\\\"In ds: Decision: LMDB over SQLite because readers never block\\\",\\\"kind\\\":"
          "\\\"decision\\\"},{\\\"content\\\":\\\"In ds: second\\\"}]}\\n```\"},\"finish_reason\":\"stop\"}],"
          "\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":20,\"total_tokens\":70}}" },
    };
    server s;
    server_start(&s, script, 1);
    setenv("DS_TEST_DISTILL_KEY", "sk-openai-456", 1);
    ds_distiller *d = make("openai", s.port, "/v1/chat/completions", 2);
    ds_distill_input in = sample();
    ds_insight *v = NULL;
    size_t n = 0;
    assert_int_equal(d->distill(d, &in, &v, &n), 0);
    server_stop(&s);
    assert_int_equal(s.served, 1);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].kind, "decision");
    assert_string_equal(v[1].content, "In ds: second");

    char h[256];
    assert_true(strncmp(s.req[0], "POST /v1/chat/completions HTTP/1.1\r\n", 36) == 0);
    assert_non_null(header(s.req[0], "Authorization", h, sizeof h));
    assert_string_equal(h, "Bearer sk-openai-456");
    assert_null(header(s.req[0], "x-api-key", h, sizeof h));
    json_t *b = req_body(s.req[0]);
    assert_string_equal(json_string_value(json_object_get(b, "model")), "model-under-test");
    json_t *msgs = json_object_get(b, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")), "system");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "role")), "user");
    json_decref(b);
    assert_non_null(strstr(logged, "input_tokens=50 output_tokens=20"));
    ds_insights_free(v, n);
    d->destroy(d);
    server_free(&s);
}

static void test_401_not_retried(void **state)
{
    (void)state;
    canned script[] = {
        { 401, NULL, "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"}}" },
        { 200, NULL, ANTHROPIC_OK },
    };
    server s;
    server_start(&s, script, 2);
    setenv("DS_TEST_DISTILL_KEY", "sk-wrong", 1);
    ds_distiller *d = make("anthropic", s.port, "/v1/messages", 3);
    ds_distill_input in = sample();
    ds_insight *v = NULL;
    size_t n = 0;
    assert_int_equal(d->distill(d, &in, &v, &n), DS_ERR_UNAUTHORIZED);
    server_stop(&s);
    assert_int_equal(s.served, 1);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_non_null(strstr(ds_distiller_last_error(d), "HTTP 401"));
    assert_non_null(strstr(ds_distiller_last_error(d), "invalid x-api-key"));
    assert_null(strstr(logged, "sk-wrong"));
    d->destroy(d);
    server_free(&s);

    /* Another 4xx is not retried either. */
    canned bad[] = { { 400, NULL, "{\"error\":{\"message\":\"bad model\"}}" }, { 200, NULL, ANTHROPIC_OK } };
    server_start(&s, bad, 2);
    d = make("anthropic", s.port, "/v1/messages", 3);
    assert_int_equal(d->distill(d, &in, &v, &n), DS_ERR_IO);
    server_stop(&s);
    assert_int_equal(s.served, 1);
    d->destroy(d);
    server_free(&s);
}

static void test_retries_exhausted_and_bad_replies(void **state)
{
    (void)state;
    canned script[] = { { 503, NULL, "{}" }, { 502, NULL, "{}" }, { 500, NULL, "{}" } };
    server s;
    server_start(&s, script, 3);
    setenv("DS_TEST_DISTILL_KEY", "k", 1);
    ds_distiller *d = make("anthropic", s.port, "/v1/messages", 2);
    ds_distill_input in = sample();
    ds_insight *v = NULL;
    size_t n = 0;
    assert_int_equal(d->distill(d, &in, &v, &n), DS_ERR_IO);
    server_stop(&s);
    assert_int_equal(s.served, 3);   /* first attempt + 2 retries */
    assert_non_null(strstr(ds_distiller_last_error(d), "HTTP 500"));
    d->destroy(d);
    server_free(&s);

    canned bad[] = {
        { 200, NULL, "{\"content\":[]," },                                  /* not JSON */
        { 200, NULL, "{\"choices\":[{\"message\":{\"content\":\"[{\\\"content\\\":\"}}]}" }, /* truncated answer */
        { 200, NULL, "{\"content\":[{\"type\":\"text\",\"text\":\"\"}]}" },  /* empty answer */
    };
    server_start(&s, bad, 3);
    d = make("anthropic", s.port, "/v1/messages", 0);
    assert_int_equal(d->distill(d, &in, &v, &n), DS_ERR_PROTO);
    assert_non_null(strstr(ds_distiller_last_error(d), "not JSON"));
    d->destroy(d);
    d = make("openai", s.port, "/v1/chat/completions", 0);
    assert_int_equal(d->distill(d, &in, &v, &n), DS_ERR_PROTO);
    d->destroy(d);
    d = make("anthropic", s.port, "/v1/messages", 0);
    assert_int_equal(d->distill(d, &in, &v, &n), 0);
    assert_int_equal(n, 0);
    d->destroy(d);
    server_stop(&s);
    assert_int_equal(s.served, 3);
    server_free(&s);
}

static void test_missing_key_and_refused(void **state)
{
    (void)state;
    unsetenv("DS_TEST_DISTILL_KEY");
    ds_distiller *d = make("anthropic", 9, "/v1/messages", 0);
    ds_distill_input in = sample();
    ds_insight *v = NULL;
    size_t n = 0;
    assert_int_equal(d->distill(d, &in, &v, &n), DS_ERR_INVALID);
    assert_non_null(strstr(ds_distiller_last_error(d), "DS_TEST_DISTILL_KEY"));
    d->destroy(d);

    /* A port nobody listens on: connection refused, retried, then DS_ERR_IO. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    setenv("DS_TEST_DISTILL_KEY", "k", 1);
    nlogged = 0;
    d = make("openai", ntohs(a.sin_port), "/v1/chat/completions", 1);
    assert_int_equal(d->distill(d, &in, &v, &n), DS_ERR_IO);
    assert_non_null(strstr(logged, "attempts=2"));
    d->destroy(d);
}

static void test_config(void **state)
{
    (void)state;
    ds_distiller *d = NULL;
    ds_distill_http_config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(ds_distiller_http_new(&cfg, &d), DS_ERR_INVALID);   /* no model */
    cfg.model = "m";
    cfg.provider = "gemini";
    assert_int_equal(ds_distiller_http_new(&cfg, &d), DS_ERR_INVALID);
    cfg.provider = "openai";
    cfg.url = "http://api.example.com/v1/chat/completions";   /* key in clear */
    assert_int_equal(ds_distiller_http_new(&cfg, &d), DS_ERR_INVALID);
    cfg.url = "ftp://127.0.0.1/x";
    assert_int_equal(ds_distiller_http_new(&cfg, &d), DS_ERR_INVALID);
    cfg.url = "http://api.example.com/v1/chat/completions";
    cfg.allow_insecure_http = 1;
    assert_int_equal(ds_distiller_http_new(&cfg, &d), 0);
    d->destroy(d);
    cfg.url = NULL;   /* provider default (https) */
    assert_int_equal(ds_distiller_http_new(&cfg, &d), 0);
    d->destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anthropic_retries_then_ok),
        cmocka_unit_test(test_openai_shape),
        cmocka_unit_test(test_401_not_retried),
        cmocka_unit_test(test_retries_exhausted_and_bad_replies),
        cmocka_unit_test(test_missing_key_and_refused),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
