/*
 * cli.h - what the ds command-line programs share: the invocation state,
 * option parsing helpers, the request call (over the daemon's socket
 * when a daemon runs for the home, else ds_ops_call in process: the same
 * handlers either way), access to MessagePack replies, and the text and JSON output
 * helpers.  Each command (cmd_*.c) is a thin program over one or two
 * requests: parse arguments, build the parameter map, call, print.
 */
#ifndef DS_CLI_H
#define DS_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon/ops.h"

/* Exit statuses.  CLI_NOT_RUNNING: "ds status" found no daemon. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_NOT_RUNNING = 3 };

/* Waits of a request sent to the daemon (connect; each read or write). */
#define CLI_CONNECT_TIMEOUT_MS 2000
#define CLI_IO_TIMEOUT_MS 600000  /* long scans run inside the daemon */
/* cli_common_opt() result meaning "option handled, keep parsing". */
#define CLI_CONTINUE (-1)

typedef struct cli {
    const char *home_opt;   /* --home value, or NULL */
    int json;               /* --json (global or per command) */
    char *cwd;              /* current directory, sent with requests */
    ds_ctx ctx;
    int ctx_ready;
    int via_daemon;         /* the last request was answered by the daemon */
} cli;

typedef struct cli_cmd {
    const char *name;
    int (*run)(cli *c, const struct cli_cmd *cmd, int argc, char **argv);
    const char *args;       /* "FILE...", for the command list */
    const char *summary;    /* one line */
    const char *help;       /* full help text (usage, options, examples) */
} cli_cmd;

/* The commands (main.c defines the table; help prints from it). */
const cli_cmd *cli_find_cmd(const char *name);

/* ---- Messages ----------------------------------------------------------- */

/* "ds CMD: problem" + "Run 'ds CMD --help' for usage." on stderr; returns
 * CLI_USAGE.  |cmd| may be NULL for global errors. */
int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "ds: problem" on stderr; returns CLI_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The command's full help, or the general help when |cmd| is NULL. */
void cli_print_help(const cli_cmd *cmd, FILE *f);
/* The general usage: one line and a pointer to --help, or (|full|) the
 * list of commands and global options. */
void cli_print_usage(FILE *f, int full);

/* ---- Options ------------------------------------------------------------ */

/* Common long options every command takes. */
#define CLI_OPT_HELP { "help", no_argument, NULL, 'h' }
#define CLI_OPT_HOME { "home", required_argument, NULL, 'H' }
#define CLI_OPT_JSON { "json", no_argument, NULL, 'j' }
#define CLI_OPT_FORMAT { "format", required_argument, NULL, 'f' }
#define CLI_OPT_END { NULL, 0, NULL, 0 }

/* Resets getopt for parsing |argv| of a command (argv[0] = its name). */
void cli_getopt_reset(void);
/* Handles the options every command shares (-h, --home, --json,
 * --format) and getopt's error returns ('?', ':').  Returns CLI_CONTINUE
 * when parsing should go on, else the exit status (0 after --help). */
int cli_common_opt(cli *c, const cli_cmd *cmd, int opt, char **argv,
                   const struct option *longopts);
/* Parses a --limit value: a whole number from 1 to DS_OPS_MAX_LIMIT.
 * Returns 0 or CLI_USAGE (message printed). */
int cli_parse_limit(const cli_cmd *cmd, const char *arg, uint64_t *out);

/* The |n| words of |v| joined with single spaces (malloc'd, NULL when
 * out of memory): "ds note a b" is "ds note 'a b'". */
char *cli_join_args(int n, char **v);

/* ---- Requests ----------------------------------------------------------- */

/* The home directory of this invocation (resolved once; lives as long as
 * |c|).  Returns 0 or an exit status (message printed). */
int cli_home(cli *c, const char **home);

#define CLI_MAX_PARAMS 16

typedef struct cli_param {
    const char *key;
    enum { CLI_P_STR, CLI_P_UINT, CLI_P_STRV } type;
    const char *s;
    uint64_t u;
    char *const *v;
    size_t nv;
} cli_param;

typedef struct cli_params {
    cli_param p[CLI_MAX_PARAMS];
    size_t n;
} cli_params;

/* Adders; a NULL string is skipped (the parameter is absent). */
void cli_param_str(cli_params *ps, const char *key, const char *s);
void cli_param_uint(cli_params *ps, const char *key, uint64_t u);
void cli_param_strv(cli_params *ps, const char *key, char *const *v, size_t n);

typedef struct cli_reply {
    msgpack_sbuffer buf;         /* the packed reply: strings point into it */
    msgpack_unpacked up;
    const msgpack_object *root;  /* the reply map */
} cli_reply;

/* Sends request |op| with |ps| and unpacks the reply into |r| (free with
 * cli_reply_free, also after failure).  The request goes to the daemon
 * when one listens on HOME/daemon.sock (c->via_daemon is then set), else
 * it runs in process.  A daemon of another protocol version, or one that
 * fails mid-request, is an error (the request is not re-run in process).  On an error reply the message and
 * hint are printed to stderr and the exit status is returned (CLI_USAGE
 * for bad input, CLI_FAIL otherwise); 0 on success. */
int cli_call(cli *c, const char *op, const cli_params *ps, cli_reply *r);
/* Like cli_call, printing nothing when |quiet|; the error map stays in
 * r->root for the caller to inspect (cli_get(r->root, "error")).  A
 * daemon that fails mid-request leaves r->root NULL (quiet only). */
int cli_call_ex(cli *c, const char *op, const cli_params *ps, cli_reply *r, int quiet);
void cli_reply_free(cli_reply *r);
/* Prints the error of reply |r| (message, then hint) to stderr. */
void cli_print_reply_error(const cli_reply *r);
/* Exit status for an error code of a reply. */
int cli_status_for_code(const char *code, size_t len);

/* ---- Reply access (NULL-safe) ------------------------------------------- */

const msgpack_object *cli_get(const msgpack_object *map, const char *key);
/* String value as pointer + length ("" and 0 when absent or not a string). */
const char *cli_str(const msgpack_object *o, size_t *len);
/* malloc'd NUL-terminated copy of a string value (never NULL unless out
 * of memory; "" when absent). */
char *cli_strdup(const msgpack_object *o);
uint64_t cli_u64(const msgpack_object *o);
int64_t cli_i64(const msgpack_object *o);
double cli_f64(const msgpack_object *o);
int cli_bool(const msgpack_object *o);
/* Number of elements of an array value (0 when not an array). */
uint32_t cli_len(const msgpack_object *o);
const msgpack_object *cli_at(const msgpack_object *arr, uint32_t i);

/* ---- Output ------------------------------------------------------------- */

/* A string value as a JSON string (json_null when absent). */
json_t *cli_json_str(const msgpack_object *o);
/* A node (or hit) as the JSON object of the documented --json formats. */
json_t *cli_node_json(const msgpack_object *node);
/* Prints |root| as indented JSON plus a newline to stdout and releases
 * it.  Returns CLI_OK, or CLI_FAIL when |root| is NULL (out of memory). */
int cli_json_print(json_t *root);

/* Local time "YYYY-MM-DD HH:MM" of |ms| since the epoch. */
void cli_local_time(int64_t ms, char out[32]);
/* "1.5 MiB" style size. */
void cli_human_size(uint64_t bytes, char out[32]);
/* Collapses whitespace runs to one space, trims, and cuts to at most
 * about |max| bytes at a word boundary (UTF-8 safe) adding "…".  Returns
 * a malloc'd string or NULL. */
char *cli_snippet(const char *s, size_t len, size_t max);
/* Prints nodes of a reply array as text; with |scored|, hits with rank
 * and score.  Returns the number printed. */
size_t cli_print_nodes(const msgpack_object *arr, int scored);

/* ---- Commands ----------------------------------------------------------- */

int cmd_add(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_note(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_query(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_show(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_related(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_stats(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_reset(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_help(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_scan(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_queue(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_start(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_stop(cli *c, const cli_cmd *cmd, int argc, char **argv);
int cmd_status(cli *c, const cli_cmd *cmd, int argc, char **argv);

#endif
