/*
 * config.c - loading HOME/config.json (see config.h) with jansson.  The
 * file is checked strictly: unknown keys, wrong types, out-of-range
 * numbers and settings of another distiller type are errors, and every
 * message names the file, the key (as a dotted path) and what is
 * expected, so that a typo never silently falls back to a default.
 */
#include "daemon/config.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/peers.h"
#include "io/quic.h"
#include "ds/error.h"

#define DEFAULT_WATCH "~/.claude/projects"
#define MAX_TIMEOUT_MS 3600000u /* one hour */

typedef struct loader {
    const char *file;
    const char *user_home;
    char *err;
    size_t errlen;
} loader;

static int fail(loader *l, int rc, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(loader *l, int rc, const char *key, const char *fmt, ...)
{
    if (l->err && l->errlen) {
        int n = snprintf(l->err, l->errlen, "%s: key '%s': ", l->file, key);
        if (n >= 0 && (size_t)n < l->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

/* "~" or "~/x" expanded against the user's home; other paths must be
 * absolute.  *out is malloc'd. */
static int expand(loader *l, const char *key, const char *p, char **out)
{
    *out = NULL;
    if (p[0] == '~' && (p[1] == '\0' || p[1] == '/')) {
        if (!l->user_home || !l->user_home[0])
            return fail(l, DS_ERR_INVALID, key,
                        "cannot expand '~' in \"%s\": HOME is not set; use an absolute path", p);
        size_t hl = strlen(l->user_home), pl = strlen(p + 1);
        while (hl > 1 && l->user_home[hl - 1] == '/')
            hl--;
        char *s = malloc(hl + pl + 1);
        if (!s)
            return DS_ERR_NOMEM;
        memcpy(s, l->user_home, hl);
        memcpy(s + hl, p + 1, pl + 1);
        *out = s;
    } else if (p[0] == '/') {
        *out = strdup(p);
        if (!*out)
            return DS_ERR_NOMEM;
    } else {
        return fail(l, DS_ERR_INVALID, key,
                    "expected an absolute path or one starting with '~/', got \"%s\"", p);
    }
    size_t n = strlen(*out);
    while (n > 1 && (*out)[n - 1] == '/')
        (*out)[--n] = '\0';
    return 0;
}

int ds_config_defaults(ds_config *cfg, const char *user_home)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->idle_seconds = 180;
    cfg->distiller.kind = DS_DISTILL_EXTRACTIVE;
    cfg->distiller.timeout_ms = 120000;
    cfg->distiller.connect_timeout_ms = 10000;
    cfg->distiller.max_retries = 4;
    cfg->log_max_bytes = 1048576;
    cfg->log_keep = 3;
    cfg->log_level = DS_LOG_INFO;
    cfg->queue_max_attempts = 5;
    cfg->queue_backoff_base_ms = 5000;
    cfg->sync_max_concurrent = 4;
    cfg->sync_connect_timeout_ms = 10000;
    if (user_home && user_home[0]) {
        loader l = { .file = "(defaults)", .user_home = user_home };
        int rc = expand(&l, "watch", DEFAULT_WATCH, &cfg->watch[0]);
        if (rc)
            return DS_ERR_NOMEM;
        cfg->nwatch = 1;
    }
    return 0;
}

void ds_config_free(ds_config *cfg)
{
    for (size_t i = 0; i < cfg->nwatch && i < DS_CONFIG_MAX_ROOTS; i++)
        free(cfg->watch[i]);
    if (cfg->distiller.argv) {
        for (char **a = cfg->distiller.argv; *a; a++)
            free(*a);
        free(cfg->distiller.argv);
    }
    free(cfg->distiller.provider);
    free(cfg->distiller.model);
    free(cfg->distiller.url);
    free(cfg->distiller.api_key_env);
    free(cfg->sync_listen);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- Typed getters -------------------------------------------------------- */

/* fail() with ", got VALUE" (|v| as compact JSON, cut short) after |what|. */
static int fail_got(loader *l, const char *key, json_t *v, const char *what)
{
    char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    size_t n = txt ? strlen(txt) : 0;
    int rc = fail(l, DS_ERR_INVALID, key, "%s, got %.60s%s", what, txt ? txt : "?",
                  n > 60 ? "..." : "");
    free(txt);
    return rc;
}

/* A whole number in [min, max] into *out. */
static int get_uint(loader *l, const char *key, json_t *v, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    if (!json_is_integer(v))
        return fail(l, DS_ERR_INVALID, key, "expected a whole number from %llu to %llu",
                    (unsigned long long)min, (unsigned long long)max);
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
        return fail(l, DS_ERR_INVALID, key, "expected a whole number from %llu to %llu, got %lld",
                    (unsigned long long)min, (unsigned long long)max, (long long)i);
    *out = (uint64_t)i;
    return 0;
}

static int get_u32(loader *l, const char *key, json_t *v, uint32_t min, uint32_t max,
                   uint32_t *out)
{
    uint64_t u = 0;
    int rc = get_uint(l, key, v, min, max, &u);
    if (!rc)
        *out = (uint32_t)u;
    return rc;
}

/* A non-empty string without control characters, malloc'd into *out
 * (replacing what was there). */
static int get_str(loader *l, const char *key, json_t *v, char **out)
{
    if (!json_is_string(v))
        return fail(l, DS_ERR_INVALID, key, "expected a string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0)
        return fail(l, DS_ERR_INVALID, key, "expected a non-empty string");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return fail(l, DS_ERR_INVALID, key, "expected a string without control characters");
    char *d = strdup(s);
    if (!d)
        return DS_ERR_NOMEM;
    free(*out);
    *out = d;
    return 0;
}

static int unknown_key(loader *l, const char *prefix, const char *k, const char *allowed)
{
    char key[300];
    snprintf(key, sizeof key, "%s%s", prefix, k);
    return fail(l, DS_ERR_INVALID, key, "unknown key (expected one of: %s)", allowed);
}

static int expect_object(loader *l, const char *key, json_t *v)
{
    if (!json_is_object(v))
        return fail(l, DS_ERR_INVALID, key, "expected an object ({...})");
    return 0;
}

/* ---- Sections ------------------------------------------------------------- */

static int load_watch(loader *l, ds_config *cfg, json_t *v)
{
    if (!json_is_array(v) || json_array_size(v) == 0 ||
        json_array_size(v) > DS_CONFIG_MAX_ROOTS)
        return fail(l, DS_ERR_INVALID, "watch",
                    "expected an array of 1 to %d directory paths", DS_CONFIG_MAX_ROOTS);
    for (size_t i = 0; i < cfg->nwatch; i++) {
        free(cfg->watch[i]);
        cfg->watch[i] = NULL;
    }
    cfg->nwatch = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char key[32];
        snprintf(key, sizeof key, "watch[%zu]", i);
        char *s = NULL;
        int rc = get_str(l, key, e, &s);
        if (rc)
            return rc;
        char *abs;
        rc = expand(l, key, s, &abs);
        free(s);
        if (rc)
            return rc;
        cfg->watch[cfg->nwatch++] = abs;
    }
    return 0;
}

static int load_argv(loader *l, ds_config *cfg, json_t *v)
{
    const char *key = "distiller.argv";
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 256)
        return fail(l, DS_ERR_INVALID, key,
                    "expected a non-empty array of strings: the program and its arguments");
    size_t n = json_array_size(v);
    char **argv = calloc(n + 1, sizeof *argv);
    if (!argv)
        return DS_ERR_NOMEM;
    cfg->distiller.argv = argv;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || (i == 0 && json_string_length(e) == 0) ||
            strlen(json_string_value(e)) != json_string_length(e))
            return fail(l, DS_ERR_INVALID, key,
                        "expected an array of strings (element %zu is not a string, or the "
                        "program name is empty)", i);
        argv[i] = strdup(json_string_value(e));
        if (!argv[i])
            return DS_ERR_NOMEM;
    }
    return 0;
}

static int load_distiller(loader *l, ds_config *cfg, json_t *v)
{
    int rc = expect_object(l, "distiller", v);
    if (rc)
        return rc;
    json_t *t = json_object_get(v, "type");
    if (!t)
        return fail(l, DS_ERR_INVALID, "distiller.type",
                    "missing: expected \"extractive\", \"command\" or \"http\"");
    const char *type = json_is_string(t) ? json_string_value(t) : "";
    if (strcmp(type, "extractive") == 0)
        cfg->distiller.kind = DS_DISTILL_EXTRACTIVE;
    else if (strcmp(type, "command") == 0)
        cfg->distiller.kind = DS_DISTILL_COMMAND;
    else if (strcmp(type, "http") == 0)
        cfg->distiller.kind = DS_DISTILL_HTTP;
    else
        return fail(l, DS_ERR_INVALID, "distiller.type",
                    "expected \"extractive\", \"command\" or \"http\"");
    ds_distill_kind kind = cfg->distiller.kind;
    static const char *allowed[] = {
        "type",
        "type, argv, timeout_ms",
        "type, provider, model, url, api_key_env, connect_timeout_ms, timeout_ms, max_retries",
    };
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) {
        char key[300];
        snprintf(key, sizeof key, "distiller.%s", k);
        if (strcmp(k, "type") == 0)
            continue;
        if (kind == DS_DISTILL_COMMAND && strcmp(k, "argv") == 0)
            rc = load_argv(l, cfg, e);
        else if (kind != DS_DISTILL_EXTRACTIVE && strcmp(k, "timeout_ms") == 0)
            rc = get_u32(l, key, e, 1, MAX_TIMEOUT_MS, &cfg->distiller.timeout_ms);
        else if (kind == DS_DISTILL_HTTP && strcmp(k, "provider") == 0) {
            rc = get_str(l, key, e, &cfg->distiller.provider);
            if (!rc && strcmp(cfg->distiller.provider, "anthropic") != 0 &&
                strcmp(cfg->distiller.provider, "openai") != 0)
                rc = fail(l, DS_ERR_INVALID, key, "expected \"anthropic\" or \"openai\"");
        } else if (kind == DS_DISTILL_HTTP && strcmp(k, "model") == 0)
            rc = get_str(l, key, e, &cfg->distiller.model);
        else if (kind == DS_DISTILL_HTTP && strcmp(k, "url") == 0) {
            rc = get_str(l, key, e, &cfg->distiller.url);
            if (!rc && strncmp(cfg->distiller.url, "http://", 7) != 0 &&
                strncmp(cfg->distiller.url, "https://", 8) != 0)
                rc = fail(l, DS_ERR_INVALID, key, "expected an http:// or https:// URL");
        } else if (kind == DS_DISTILL_HTTP && strcmp(k, "api_key_env") == 0)
            rc = get_str(l, key, e, &cfg->distiller.api_key_env);
        else if (kind == DS_DISTILL_HTTP && strcmp(k, "connect_timeout_ms") == 0)
            rc = get_u32(l, key, e, 1, MAX_TIMEOUT_MS, &cfg->distiller.connect_timeout_ms);
        else if (kind == DS_DISTILL_HTTP && strcmp(k, "max_retries") == 0) {
            uint64_t u = 0;
            rc = get_uint(l, key, e, 0, 100, &u);
            if (!rc)
                cfg->distiller.max_retries = (uint32_t)u;
        } else
            rc = fail(l, DS_ERR_INVALID, key,
                      "unknown key for distiller type \"%s\" (expected one of: %s)", type,
                      allowed[kind]);
        if (rc)
            return rc;
    }
    if (kind == DS_DISTILL_COMMAND && !cfg->distiller.argv)
        return fail(l, DS_ERR_INVALID, "distiller.argv",
                    "missing: a command distiller needs \"argv\": [\"program\", \"arg\", ...]");
    if (kind == DS_DISTILL_HTTP) {
        if (!cfg->distiller.provider)
            return fail(l, DS_ERR_INVALID, "distiller.provider",
                        "missing: an http distiller needs \"provider\": \"anthropic\" or \"openai\"");
        if (!cfg->distiller.model)
            return fail(l, DS_ERR_INVALID, "distiller.model",
                        "missing: an http distiller needs \"model\" (the model name)");
        if (!cfg->distiller.api_key_env) {
            cfg->distiller.api_key_env = strdup(strcmp(cfg->distiller.provider, "openai") == 0
                                                    ? "OPENAI_API_KEY"
                                                    : "ANTHROPIC_API_KEY");
            if (!cfg->distiller.api_key_env)
                return DS_ERR_NOMEM;
        }
    }
    return 0;
}

static int load_log(loader *l, ds_config *cfg, json_t *v)
{
    int rc = expect_object(l, "log", v);
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) {
        if (rc)
            break;
        if (strcmp(k, "max_bytes") == 0)
            rc = get_uint(l, "log.max_bytes", e, 1, UINT64_C(1) << 40, &cfg->log_max_bytes);
        else if (strcmp(k, "keep") == 0) {
            uint64_t u = 0;
            rc = get_uint(l, "log.keep", e, 1, 100, &u);
            if (!rc)
                cfg->log_keep = (uint32_t)u;
        } else if (strcmp(k, "level") == 0) {
            ds_log_level lv;
            if (!json_is_string(e) || ds_log_level_parse(json_string_value(e), &lv) != 0)
                rc = fail(l, DS_ERR_INVALID, "log.level",
                          "expected \"debug\", \"info\", \"warn\" or \"error\"");
            else
                cfg->log_level = (int)lv;
        } else
            rc = unknown_key(l, "log.", k, "max_bytes, keep, level");
    }
    return rc;
}

static int load_queue(loader *l, ds_config *cfg, json_t *v)
{
    int rc = expect_object(l, "queue", v);
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) {
        if (rc)
            break;
        if (strcmp(k, "max_attempts") == 0)
            rc = get_u32(l, "queue.max_attempts", e, 1, 1000, &cfg->queue_max_attempts);
        else if (strcmp(k, "backoff_base_ms") == 0)
            rc = get_u32(l, "queue.backoff_base_ms", e, 1, 86400000,
                         &cfg->queue_backoff_base_ms);
        else
            rc = unknown_key(l, "queue.", k, "max_attempts, backoff_base_ms");
    }
    return rc;
}

int ds_duration_parse(const char *s, uint32_t *seconds, const char **why)
{
    static const char *dummy;
    static const struct {
        char unit;
        uint32_t mul;
    } units[] = { { 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 } };
    if (!why)
        why = &dummy;
    *why = NULL;
    if (!s || !*s)
        return *why = "is empty", DS_ERR_INVALID;
    uint64_t total = 0;
    size_t next = 0;                 /* units[next..] may still come */
    const char *p = s;
    while (*p) {
        uint64_t v = 0;
        const char *start = p;
        if (*p == '-')
            return *why = "is negative", DS_ERR_INVALID;
        while (*p >= '0' && *p <= '9' && p - start < 9)
            v = v * 10 + (uint64_t)(*p++ - '0');
        if (*p >= '0' && *p <= '9')
            return *why = "has a number that is too large", DS_ERR_INVALID;
        if (p == start)
            return *why = p == s                 ? "does not start with a number"
                          : strchr("dhms", *p)   ? "has a unit without a number before it"
                                                 : "has a character that is neither a digit "
                                                   "nor a unit (d, h, m, s)",
                   DS_ERR_INVALID;
        if (*p == '\0') {
            if (start != s)   /* "5m30": a bare number only on its own */
                return *why = "ends with a number without a unit (e.g. 5m30s)", DS_ERR_INVALID;
            total = v;
            break;
        }
        size_t u = 0;
        while (u < sizeof units / sizeof units[0] && units[u].unit != *p)
            u++;
        if (u == sizeof units / sizeof units[0])
            return *why = "has an unknown unit (the units are d, h, m and s)", DS_ERR_INVALID;
        if (u < next) {
            int seen = 0;
            for (const char *q = s; q < p; q++)
                seen |= *q == *p;
            return *why = seen ? "repeats a unit (each of d, h, m, s at most once)"
                               : "has its units out of order (largest first: d, h, m, s)",
                   DS_ERR_INVALID;
        }
        next = u + 1;
        p++;
        total += v * units[u].mul;
        if (total > 30u * 86400)
            break;
    }
    if (total > 30u * 86400)
        return *why = "is longer than 30 days", DS_ERR_INVALID;
    if (total < 1)
        return *why = "is zero", DS_ERR_INVALID;
    *seconds = (uint32_t)total;
    return 0;
}

static int load_sync(loader *l, ds_config *cfg, json_t *v)
{
    int rc = expect_object(l, "sync", v);
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) {
        if (rc)
            break;
        if (strcmp(k, "listen") == 0) {
            rc = get_str(l, "sync.listen", e, &cfg->sync_listen);
            char host[DS_ADDR_MAX];
            uint16_t port;
            const char *why;
            if (!rc && ds_listen_addr_parse(cfg->sync_listen, DS_QUIC_DEFAULT_PORT, host, &port,
                                            &why) != 0)
                rc = fail(l, DS_ERR_INVALID, "sync.listen",
                          "a listen address must be an IP address, e.g. \"127.0.0.1:%u\", "
                          "\"[::1]:%u\", \"0.0.0.0:%u\": \"%s\" %s",
                          (unsigned)DS_QUIC_DEFAULT_PORT, (unsigned)DS_QUIC_DEFAULT_PORT,
                          (unsigned)DS_QUIC_DEFAULT_PORT, cfg->sync_listen, why);
        } else if (strcmp(k, "interval") == 0) {
            const char *why;
            if (json_is_integer(e))
                rc = get_u32(l, "sync.interval", e, 1, 30 * 86400, &cfg->sync_interval_s);
            else if (!json_is_string(e))
                rc = fail_got(l, "sync.interval", e,
                              "expected seconds or a duration such as \"30m\" or \"1h30m\" "
                              "(1 s to 30 days)");
            else if (ds_duration_parse(json_string_value(e), &cfg->sync_interval_s, &why) != 0)
                rc = fail(l, DS_ERR_INVALID, "sync.interval",
                          "\"%.100s\" %s; expected seconds or a duration such as \"30m\" or "
                          "\"1h30m\" (1 s to 30 days)",
                          json_string_value(e), why);
        } else if (strcmp(k, "at_start") == 0) {
            if (!json_is_boolean(e))
                rc = fail(l, DS_ERR_INVALID, "sync.at_start", "expected true or false");
            else
                cfg->sync_at_start = json_is_true(e);
        } else if (strcmp(k, "max_concurrent") == 0)
            rc = get_u32(l, "sync.max_concurrent", e, 1, 64, &cfg->sync_max_concurrent);
        else if (strcmp(k, "connect_timeout_ms") == 0)
            rc = get_u32(l, "sync.connect_timeout_ms", e, 100, 600000,
                         &cfg->sync_connect_timeout_ms);
        else
            rc = unknown_key(l, "sync.", k,
                             "listen, interval, at_start, max_concurrent, connect_timeout_ms");
    }
    return rc;
}

static int load_root(loader *l, ds_config *cfg, json_t *root)
{
    if (!json_is_object(root)) {
        snprintf(l->err, l->errlen, "%s: expected a JSON object ({...}) at the top level", l->file);
        return DS_ERR_INVALID;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        int rc;
        if (strcmp(k, "watch") == 0)
            rc = load_watch(l, cfg, v);
        else if (strcmp(k, "idle_seconds") == 0)
            rc = get_u32(l, "idle_seconds", v, 1, 7 * 86400, &cfg->idle_seconds);
        else if (strcmp(k, "distiller") == 0)
            rc = load_distiller(l, cfg, v);
        else if (strcmp(k, "log") == 0)
            rc = load_log(l, cfg, v);
        else if (strcmp(k, "queue") == 0)
            rc = load_queue(l, cfg, v);
        else if (strcmp(k, "sync") == 0)
            rc = load_sync(l, cfg, v);
        else
            rc = unknown_key(l, "", k, "watch, idle_seconds, distiller, log, queue, sync");
        if (rc)
            return rc;
    }
    return 0;
}

int ds_config_load(ds_config *cfg, const char *path, const char *user_home, char *err,
                   size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    int rc = ds_config_defaults(cfg, user_home);
    if (rc) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return DS_ERR_IO;
    }
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root) {
        snprintf(err, errlen, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
        rc = DS_ERR_MALFORMED;
    } else {
        loader l = { .file = path, .user_home = user_home, .err = err, .errlen = errlen };
        rc = load_root(&l, cfg, root);
        json_decref(root);
        if (rc == DS_ERR_NOMEM)
            snprintf(err, errlen, "%s: out of memory", path);
    }
    if (rc) {
        ds_config_free(cfg);
        if (ds_config_defaults(cfg, user_home) != 0)
            memset(cfg, 0, sizeof *cfg);
    }
    return rc;
}
