/*
 * distill_http.c - the HTTP distiller: sends a chunk to an LLM API (the
 * Anthropic Messages API or an OpenAI-compatible chat completions
 * endpoint) through libcurl and turns the model's answer into insights
 * with ds_distill_parse_output.  The request is built with jansson; the
 * API key is read from a configured environment variable at each call,
 * sent only in its header and wiped from our buffers afterwards, never
 * logged.  429, 5xx and connection failures are retried with exponential
 * backoff (Retry-After honoured, capped); other 4xx are not.  One log line
 * per call reports tokens used and, with prices configured, the cost.
 */
#include "io/distill_io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ds/error.h"
#include "core/util.h"

#define DEFAULT_ANTHROPIC_URL "https://api.anthropic.com/v1/messages"
#define DEFAULT_OPENAI_URL "https://api.openai.com/v1/chat/completions"
#define ANTHROPIC_VERSION "2023-06-01"
#define MAX_REPLY (4u << 20)
#define MAX_RETRIES_CAP 10

enum { P_ANTHROPIC, P_OPENAI };

static const char SYSTEM_PROMPT[] =
    "You distill a chunk of a Claude Code session (a user working with an AI coding "
    "assistant) into durable knowledge for a searchable long-term memory.\n"
    "Keep only what is worth remembering weeks later: decisions and their reasons, "
    "causes of bugs and how they were fixed, conclusions, non-obvious facts about the "
    "code, tools or environment, and questions with their answers. Skip routine "
    "chatter, progress updates, tool output and anything that only mattered in the "
    "moment.\n"
    "Every insight must be self-contained: name the project, file, command or "
    "component it is about, and never rely on pronouns or on other insights. Keep "
    "each under 600 characters. Never include secrets, keys, tokens or passwords.\n"
    "Answer with only a JSON array, no prose and no code fence. Each element is "
    "{\"content\": string, \"kind\": \"decision\" | \"fix\" | \"conclusion\" | \"qa\" | "
    "\"fact\", \"confidence\": number from 0 to 1}. Answer [] when nothing is worth "
    "keeping.";

typedef struct http_distiller {
    ds_distill_io_base base;     /* first member */
    int provider;
    char *url, *model, *key_env;
    long connect_timeout_ms, timeout_ms, backoff_base_ms, backoff_max_ms;
    int max_retries, max_tokens;
    double price_in, price_out;
    ds_distill_log_fn log;
    void *log_ud;
} http_distiller;

typedef struct reply {
    ds_buf body;
    int overflow;
} reply;

static void set_err(http_distiller *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->base.last_error, sizeof h->base.last_error, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    size_t len = size * n;
    if (r->body.len + len > MAX_REPLY) {
        r->overflow = 1;
        return 0;   /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return ds_buf_append(&r->body, p, len) == 0 ? len : 0;
}

/* The request body, malloc'd JSON text, or NULL. */
static char *build_request(const http_distiller *h, const char *chunk)
{
    json_t *root = json_object();
    json_t *msgs = json_array();
    json_t *user = json_object();
    char *out = NULL;
    if (!root || !msgs || !user) goto done;
    if (json_object_set_new(user, "role", json_string("user")) ||
        json_object_set_new(user, "content", json_string(chunk)))
        goto done;
    if (h->provider == P_OPENAI) {
        json_t *sys = json_object();
        if (!sys || json_object_set_new(sys, "role", json_string("system")) ||
            json_object_set_new(sys, "content", json_string(SYSTEM_PROMPT))) {
            json_decref(sys);
            goto done;
        }
        if (json_array_append_new(msgs, sys)) goto done;   /* consumed even on failure */
    } else if (json_object_set_new(root, "system", json_string(SYSTEM_PROMPT))) {
        goto done;
    }
    if (json_array_append(msgs, user) ||
        json_object_set_new(root, "model", json_string(h->model)) ||
        json_object_set_new(root, "max_tokens", json_integer(h->max_tokens)) ||
        json_object_set(root, "messages", msgs))
        goto done;
    out = json_dumps(root, JSON_COMPACT);
done:
    json_decref(user);
    json_decref(msgs);
    json_decref(root);
    return out;
}

/* The provider's error message in an error reply body, or "". */
static void error_message(const reply *r, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *root = json_loadb(r->body.data ? (const char *)r->body.data : "", r->body.len, 0, NULL);
    json_t *e = root ? json_object_get(root, "error") : NULL;
    json_t *m = json_is_object(e) ? json_object_get(e, "message") : NULL;
    if (json_is_string(m)) snprintf(out, outlen, "%s", json_string_value(m));
    else if (json_is_string(e)) snprintf(out, outlen, "%s", json_string_value(e));
    json_decref(root);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
}

/* Extracts the model's text and token usage from a 2xx reply.  *text is
 * malloc'd.  Returns 0, DS_ERR_PROTO or DS_ERR_NOMEM. */
static int parse_reply(http_distiller *h, const reply *r, char **text, long *in_tok, long *out_tok)
{
    json_error_t jerr;
    json_t *root = json_loadb(r->body.data ? (const char *)r->body.data : "", r->body.len, 0, &jerr);
    const char *t = NULL;
    int rc = 0;
    *text = NULL;
    *in_tok = *out_tok = -1;
    if (!root) {
        set_err(h, "reply is not JSON: %s", jerr.text);
        return DS_ERR_PROTO;
    }
    json_t *usage = json_object_get(root, "usage");
    const char *ik = h->provider == P_OPENAI ? "prompt_tokens" : "input_tokens";
    const char *ok = h->provider == P_OPENAI ? "completion_tokens" : "output_tokens";
    if (json_is_integer(json_object_get(usage, ik))) *in_tok = (long)json_integer_value(json_object_get(usage, ik));
    if (json_is_integer(json_object_get(usage, ok))) *out_tok = (long)json_integer_value(json_object_get(usage, ok));

    if (h->provider == P_OPENAI) {
        json_t *ch = json_array_get(json_object_get(root, "choices"), 0);
        json_t *c = json_object_get(json_object_get(ch, "message"), "content");
        if (json_is_string(c)) t = json_string_value(c);
        else if (json_is_null(c)) t = "";
        if (!t) set_err(h, "reply has no choices[0].message.content");
    } else {
        json_t *content = json_object_get(root, "content");
        size_t i;
        json_t *blk;
        json_array_foreach(content, i, blk) {
            json_t *bt = json_object_get(blk, "text");
            const char *type = json_string_value(json_object_get(blk, "type"));
            if (json_is_string(bt) && (!type || !strcmp(type, "text"))) {
                t = json_string_value(bt);
                break;
            }
        }
        if (!t && json_is_array(content) && json_array_size(content) == 0) t = "";
        if (!t) set_err(h, "reply has no content[0].text");
    }
    if (!t) rc = DS_ERR_PROTO;
    else if (!(*text = strdup(t))) rc = DS_ERR_NOMEM;
    json_decref(root);
    return rc;
}

/* Frees a header list after wiping its strings (one holds the key). */
static void free_headers(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        if (p->data) explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

static struct curl_slist *make_headers(const http_distiller *h, const char *key)
{
    struct curl_slist *l = NULL, *n;
    size_t kl = strlen(key);
    char *auth = malloc(kl + 32);
    if (!auth) return NULL;
    if (h->provider == P_OPENAI) snprintf(auth, kl + 32, "Authorization: Bearer %s", key);
    else snprintf(auth, kl + 32, "x-api-key: %s", key);
    const char *fixed[] = {
        "Content-Type: application/json",
        "Accept: application/json",
        h->provider == P_ANTHROPIC ? "anthropic-version: " ANTHROPIC_VERSION : NULL,
        "Expect:",   /* no 100-continue round trip */
        auth,
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (!fixed[i]) continue;
        n = curl_slist_append(l, fixed[i]);
        if (!n) {
            free_headers(l);
            l = NULL;
            break;
        }
        l = n;
    }
    explicit_bzero(auth, kl + 32);
    free(auth);
    return l;
}

static const char *provider_name(const http_distiller *h)
{
    return h->provider == P_OPENAI ? "openai" : "anthropic";
}

static int http_distill(ds_distiller *d, const ds_distill_input *in, ds_insight **out, size_t *count)
{
    http_distiller *h = (http_distiller *)d;
    int rc = 0, attempts = 0;
    long status = 0, in_tok = -1, out_tok = -1;
    char *chunk = NULL, *body = NULL, *text = NULL;
    struct curl_slist *hdrs = NULL;
    CURL *curl = NULL;
    reply r;
    char cerr[CURL_ERROR_SIZE];
    int64_t t0 = now_ms();

    memset(&r, 0, sizeof r);
    if (!in || !out || !count) return DS_ERR_INVALID;
    *out = NULL;
    *count = 0;
    h->base.last_error[0] = '\0';

    const char *key = getenv(h->key_env);
    if (!key || !*key) {
        set_err(h, "environment variable %s is not set (API key for the %s distiller)",
                h->key_env, provider_name(h));
        rc = DS_ERR_INVALID;
        goto done;
    }
    if (strpbrk(key, "\r\n")) {
        set_err(h, "environment variable %s holds a line break", h->key_env);
        rc = DS_ERR_INVALID;
        goto done;
    }
    if (!(chunk = ds_distill_format(in)) || !(body = build_request(h, chunk)) ||
        !(hdrs = make_headers(h, key)) || !(curl = curl_easy_init())) {
        set_err(h, "out of memory");
        rc = DS_ERR_NOMEM;
        goto done;
    }
    curl_easy_setopt(curl, CURLOPT_URL, h->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "datasphere");
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);

    for (;;) {
        int retry = 0;
        curl_off_t retry_after = 0;
        r.body.len = 0;
        r.overflow = 0;
        cerr[0] = '\0';
        attempts++;
        CURLcode cc = curl_easy_perform(curl);
        status = 0;
        if (cc == CURLE_OK) {
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry_after);
            if (status >= 200 && status < 300) {
                rc = 0;
                h->base.last_error[0] = '\0';   /* earlier attempts' errors are moot */
            } else {
                char msg[300];
                error_message(&r, msg, sizeof msg);
                set_err(h, "HTTP %ld from %s%s%s", status, h->url, msg[0] ? ": " : "", msg);
                if (status == 429) { rc = DS_ERR_BUSY; retry = 1; }
                else if (status >= 500) { rc = DS_ERR_IO; retry = 1; }
                else if (status == 401 || status == 403) rc = DS_ERR_UNAUTHORIZED;
                else rc = DS_ERR_IO;
            }
        } else if (r.overflow) {
            set_err(h, "reply from %s is larger than %u bytes", h->url, MAX_REPLY);
            rc = DS_ERR_TOOLARGE;
        } else {
            set_err(h, "%s: %s", h->url, cerr[0] ? cerr : curl_easy_strerror(cc));
            switch (cc) {
            case CURLE_OPERATION_TIMEDOUT:
                rc = DS_ERR_TIMEOUT; retry = 1; break;
            case CURLE_COULDNT_CONNECT: case CURLE_COULDNT_RESOLVE_HOST:
            case CURLE_SEND_ERROR: case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING:
            case CURLE_PARTIAL_FILE:
                rc = DS_ERR_IO; retry = 1; break;
            case CURLE_OUT_OF_MEMORY:
                rc = DS_ERR_NOMEM; break;
            default:
                rc = DS_ERR_IO; break;
            }
        }
        if (!retry || attempts > h->max_retries) break;
        long delay = h->backoff_base_ms;
        for (int i = 1; i < attempts && delay < h->backoff_max_ms; i++) delay *= 2;
        if (retry_after > 0 && retry_after * 1000 > delay)
            delay = retry_after > h->backoff_max_ms / 1000 ? h->backoff_max_ms : (long)retry_after * 1000;
        if (delay > h->backoff_max_ms) delay = h->backoff_max_ms;
        sleep_ms(delay);
    }
    if (rc == 0) rc = parse_reply(h, &r, &text, &in_tok, &out_tok);
    if (rc == 0) {
        rc = ds_distill_parse_output(text, strlen(text), out, count);
        if (rc == DS_ERR_PROTO) set_err(h, "model answer is malformed JSON or not UTF-8 text");
        else if (rc) set_err(h, "%s", ds_strerror(rc));
    }

done:
    if (h->log) {
        char line[DS_DISTILL_ERRLEN + 256], tok[128] = "", cost[64] = "";
        if (in_tok >= 0 || out_tok >= 0)
            snprintf(tok, sizeof tok, " input_tokens=%ld output_tokens=%ld",
                     in_tok < 0 ? 0 : in_tok, out_tok < 0 ? 0 : out_tok);
        if (tok[0] && (h->price_in > 0 || h->price_out > 0))
            snprintf(cost, sizeof cost, " cost=$%.6f",
                     ((in_tok < 0 ? 0 : in_tok) * h->price_in + (out_tok < 0 ? 0 : out_tok) * h->price_out) / 1e6);
        if (rc == 0)
            snprintf(line, sizeof line, "distill http %s model=%s status=%ld attempts=%d%s%s insights=%zu ms=%lld",
                     provider_name(h), h->model, status, attempts, tok, cost, *count,
                     (long long)(now_ms() - t0));
        else
            snprintf(line, sizeof line, "distill http %s model=%s attempts=%d%s%s failed: %s",
                     provider_name(h), h->model, attempts, tok, cost, h->base.last_error);
        h->log(h->log_ud, line);
    }
    if (curl) curl_easy_cleanup(curl);
    free_headers(hdrs);
    free(chunk);
    free(body);
    free(text);
    ds_buf_free(&r.body);
    return rc;
}

static void http_destroy(ds_distiller *d)
{
    http_distiller *h = (http_distiller *)d;
    if (!h) return;
    free(h->url);
    free(h->model);
    free(h->key_env);
    free(h);
    curl_global_cleanup();
}

/* Plain http is for loopback only (a key must not cross a network in
 * clear) unless explicitly allowed. */
static int url_ok(const char *url, int allow_insecure)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int ok = 0;
    if (!u) return 0;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        if (!strcmp(scheme, "https")) ok = 1;
        else if (!strcmp(scheme, "http"))
            ok = allow_insecure || !strcmp(host, "localhost") || !strncmp(host, "127.", 4) ||
                 !strcmp(host, "[::1]");
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

int ds_distiller_http_new(const ds_distill_http_config *cfg, ds_distiller **out)
{
    if (!cfg || !out) return DS_ERR_INVALID;
    *out = NULL;
    int provider;
    if (!cfg->provider || !strcmp(cfg->provider, "anthropic")) provider = P_ANTHROPIC;
    else if (!strcmp(cfg->provider, "openai")) provider = P_OPENAI;
    else return DS_ERR_INVALID;
    if (!cfg->model || !*cfg->model) return DS_ERR_INVALID;
    const char *url = cfg->url && *cfg->url ? cfg->url
                      : provider == P_OPENAI ? DEFAULT_OPENAI_URL : DEFAULT_ANTHROPIC_URL;
    const char *key_env = cfg->api_key_env && *cfg->api_key_env ? cfg->api_key_env
                          : provider == P_OPENAI ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY";
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return DS_ERR_NOMEM;
    if (!url_ok(url, cfg->allow_insecure_http)) {
        curl_global_cleanup();
        return DS_ERR_INVALID;
    }
    http_distiller *h = calloc(1, sizeof *h);
    if (!h) {
        curl_global_cleanup();
        return DS_ERR_NOMEM;
    }
    h->base.ops.name = "http";
    h->base.ops.distill = http_distill;
    h->base.ops.destroy = http_destroy;
    h->provider = provider;
    h->url = strdup(url);
    h->model = strdup(cfg->model);
    h->key_env = strdup(key_env);
    if (!h->url || !h->model || !h->key_env) {
        http_destroy(&h->base.ops);
        return DS_ERR_NOMEM;
    }
    h->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
    h->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 120000;
    h->max_retries = cfg->max_retries < 0 ? 0
                     : cfg->max_retries > MAX_RETRIES_CAP ? MAX_RETRIES_CAP : cfg->max_retries;
    h->backoff_base_ms = cfg->backoff_base_ms > 0 ? cfg->backoff_base_ms : 1000;
    h->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 60000;
    h->max_tokens = cfg->max_tokens > 0 ? cfg->max_tokens : 2048;
    h->price_in = cfg->price_input_per_mtok > 0 ? cfg->price_input_per_mtok : 0;
    h->price_out = cfg->price_output_per_mtok > 0 ? cfg->price_output_per_mtok : 0;
    h->log = cfg->log;
    h->log_ud = cfg->log_ud;
    *out = &h->base.ops;
    return 0;
}
