/*
 * config.h - the daemon's configuration file, HOME/config.json.
 *
 * Optional: a missing file means the offline defaults (extractive
 * distiller, ~/.claude/projects watched, 180 s idle).  A present file is
 * parsed with jansson; unknown keys are errors (a typo must not silently
 * fall back to a default), and every error names the file, the key and
 * what is expected.  Reloaded on SIGHUP, except the "sync" section: the
 * daemon keeps the sync settings it started with (and logs the ones a
 * reload changed) until the next `ds start`.
 *
 * Example:
 *   {
 *     "watch": ["~/.claude/projects"],
 *     "idle_seconds": 180,
 *     "distiller": { "type": "extractive" },
 *     "log": { "max_bytes": 1048576, "keep": 3, "level": "info" },
 *     "queue": { "max_attempts": 5, "backoff_base_ms": 5000 },
 *     "sync": { "listen": "0.0.0.0:7979", "interval": "30m", "at_start": false,
 *               "max_concurrent": 4, "connect_timeout_ms": 10000 }
 *   }
 * distiller alternatives:
 *   { "type": "command", "argv": ["llm", "-m", "local"], "timeout_ms": 120000 }
 *   { "type": "http", "provider": "anthropic" | "openai", "model": "...",
 *     "url": "...", "api_key_env": "ANTHROPIC_API_KEY",
 *     "connect_timeout_ms": 10000, "timeout_ms": 120000, "max_retries": 4 }
 *
 * Rules: every number is a whole number >= 1 (max_retries may be 0):
 * idle_seconds <= 604800, timeouts <= 3600000 ms, max_retries <= 100,
 * log.keep <= 100, queue.max_attempts <= 1000, backoff_base_ms <= 1 day;
 * "watch" holds 1..32 paths, absolute or starting with "~"; a command
 * distiller needs "argv", an http one "provider" and "model"; keys of
 * another distiller type are errors.  api_key_env defaults to
 * ANTHROPIC_API_KEY or OPENAI_API_KEY by provider.  Services that keep
 * settings copy them: a ds_config may be freed after start/reload.
 */
#ifndef DS_CONFIG_H
#define DS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define DS_CONFIG_FILE "config.json"
#define DS_CONFIG_MAX_ROOTS 32

typedef enum { DS_DISTILL_EXTRACTIVE = 0, DS_DISTILL_COMMAND, DS_DISTILL_HTTP } ds_distill_kind;

typedef struct ds_config {
    char *watch[DS_CONFIG_MAX_ROOTS];   /* absolute paths ("~" expanded) */
    size_t nwatch;
    uint32_t idle_seconds;              /* session idle time before distilling */
    struct {
        ds_distill_kind kind;
        char **argv;                    /* command: NULL-terminated */
        uint32_t timeout_ms;
        char *provider;                 /* http: "anthropic" | "openai" */
        char *model, *url, *api_key_env;
        uint32_t connect_timeout_ms;
        uint32_t max_retries;
    } distiller;
    uint64_t log_max_bytes;             /* rotate the log past this size */
    uint32_t log_keep;                  /* rotated files kept: daemon.log.1..N */
    int log_level;                      /* ds_log_level (daemon/log.h) */
    uint32_t queue_max_attempts;        /* a job fails for good after this */
    uint32_t queue_backoff_base_ms;     /* retry delay: base * 2^(attempt-1) */
    /* Network sync (daemon/netsync.h); `ds start` flags override these. */
    char *sync_listen;                  /* "HOST:PORT"; NULL: all addresses, default port */
    uint32_t sync_interval_s;           /* periodic sync; 0 = none */
    int sync_at_start;                  /* sync every subscribed peer at start */
    uint32_t sync_max_concurrent;       /* incoming syncs per peer at once */
    uint32_t sync_connect_timeout_ms;   /* bound on dialing all of a peer's addresses */
} ds_config;

/* Fills |cfg| with the defaults (|user_home| expands "~"; NULL leaves
 * the default watch list empty).  0 or DS_ERR_NOMEM. */
int ds_config_defaults(ds_config *cfg, const char *user_home);
/* Loads |path| over the defaults.  A missing file is not an error.  On
 * error returns DS_ERR_MALFORMED / DS_ERR_INVALID / DS_ERR_IO and writes a
 * message naming the file, key and expectation into |err| (|errlen|
 * bytes); |cfg| then holds the defaults. */
int ds_config_load(ds_config *cfg, const char *path, const char *user_home,
                   char *err, size_t errlen);
/* Parses a duration: a whole number of seconds ("90"), or numbers with
 * units d, h, m, s, each at most once and largest first ("30m", "1h30m",
 * "1d12h"; not "1m1m" or "5s5m").  Between 1 s and 30 days.  Returns 0,
 * or DS_ERR_INVALID with *why (optional) set to a static phrase to put
 * after the quoted value ("has an unknown unit ...", "repeats a unit ..."). */
int ds_duration_parse(const char *s, uint32_t *seconds, const char **why);
/* Frees what |cfg| holds (safe on a zeroed or defaulted config). */
void ds_config_free(ds_config *cfg);

#endif
