/*
 * distill_io.h - the distillers that reach outside the process: the
 * command distiller (pipes the formatted chunk to a configured program,
 * never through a shell) and the HTTP distiller (Anthropic Messages API or
 * an OpenAI-compatible chat completions endpoint, through libcurl).  Both
 * implement the ds_distiller ops table of core/distill.h and parse what
 * they get back with ds_distill_parse_output.
 */
#ifndef DS_DISTILL_IO_H
#define DS_DISTILL_IO_H

#include <stddef.h>
#include "core/distill.h"


/* Log sink for a distiller: one line per call, no trailing newline. */
typedef void (*ds_distill_log_fn)(void *ud, const char *line);

/* Last error message of an io distiller ("command exited with status 3:
 * <first line of stderr>", "environment variable X is not set", ...), or
 * "" when the last call succeeded or |d| is not an io distiller.  Valid
 * until the next call on |d|. */
const char *ds_distiller_last_error(const ds_distiller *d);

/* ---- command distiller --------------------------------------------------- */

typedef struct ds_distill_command_config {
    /* Program and arguments, NULL-terminated; argv[0] is looked up in PATH
     * when it has no '/'.  Executed directly, never through a shell. */
    const char *const *argv;
    int timeout_ms;              /* whole run; <= 0: 120000 */
    size_t max_output;           /* stdout bound in bytes; 0: 4 MiB */
    ds_distill_log_fn log;       /* optional */
    void *log_ud;
} ds_distill_command_config;

/* Creates a command distiller; the configuration is copied.  Each distill
 * call runs the program once with ds_distill_format(input) on its stdin
 * and parses its stdout.  distill returns DS_ERR_TIMEOUT (the program was
 * killed with SIGKILL and reaped), DS_ERR_IO (could not be started, exited
 * non-zero or died of a signal: see ds_distiller_last_error), DS_ERR_TOOLARGE
 * (stdout over the bound, program killed) or the parser's errors.
 * Returns 0, DS_ERR_INVALID (no argv[0]) or DS_ERR_NOMEM. */
int ds_distiller_command_new(const ds_distill_command_config *cfg, ds_distiller **out);

/* ---- HTTP distiller ------------------------------------------------------ */

typedef struct ds_distill_http_config {
    const char *provider;        /* "anthropic" (default when NULL) | "openai" */
    /* Endpoint; NULL: https://api.anthropic.com/v1/messages or
     * https://api.openai.com/v1/chat/completions.  Plain http:// is only
     * accepted for loopback hosts unless |allow_insecure_http|. */
    const char *url;
    const char *model;           /* required */
    /* Name of the environment variable holding the API key; NULL:
     * ANTHROPIC_API_KEY or OPENAI_API_KEY.  Read at each call, never logged. */
    const char *api_key_env;
    int allow_insecure_http;
    long connect_timeout_ms;     /* <= 0: 10000 */
    long timeout_ms;             /* per attempt; <= 0: 120000 */
    int max_retries;             /* retries after the first attempt; < 0: 0 */
    long backoff_base_ms;        /* first retry delay, doubled each time; <= 0: 1000 */
    long backoff_max_ms;         /* cap of a retry delay (also of Retry-After); <= 0: 60000 */
    int max_tokens;              /* reply bound; <= 0: 2048 */
    /* USD per million tokens; both 0: no cost in the log line. */
    double price_input_per_mtok;
    double price_output_per_mtok;
    ds_distill_log_fn log;       /* optional */
    void *log_ud;
} ds_distill_http_config;

/* Creates an HTTP distiller; the configuration is copied.  Each distill
 * call POSTs one request (system prompt asking for a JSON array of
 * self-contained insights, the formatted chunk as the user message),
 * retrying with exponential backoff on 429, 5xx and connection failures
 * (Retry-After seconds honoured, capped), never on other 4xx.  distill
 * returns DS_ERR_INVALID (the key variable is not set: the message names
 * it), DS_ERR_UNAUTHORIZED (401/403), DS_ERR_BUSY (still 429 after the
 * retries), DS_ERR_IO (5xx or connection failure after the retries, other
 * 4xx), DS_ERR_TIMEOUT, DS_ERR_TOOLARGE (reply over 4 MiB), DS_ERR_PROTO
 * (reply not of the provider's shape) or the parser's errors; details in
 * ds_distiller_last_error.  Returns 0, DS_ERR_INVALID (unknown provider,
 * missing model, bad or insecure URL) or DS_ERR_NOMEM. */
int ds_distiller_http_new(const ds_distill_http_config *cfg, ds_distiller **out);

/* Internal: the common head of the io distillers (for last_error). */
#define DS_DISTILL_ERRLEN 512
typedef struct ds_distill_io_base {
    ds_distiller ops;            /* first member */
    char last_error[DS_DISTILL_ERRLEN];
} ds_distill_io_base;

#endif
