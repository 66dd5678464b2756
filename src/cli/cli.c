/*
 * cli.c - helpers shared by the ds commands: error messages with hints,
 * getopt handling common to every command, building request parameters,
 * calling the request handlers (through the daemon's socket when it runs,
 * else in process), reading MessagePack replies
 * and formatting them as text or JSON (jansson).
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "daemon/home.h"
#include "daemon/peers.h"
#include "io/ipc.h"

#ifndef DS_VERSION
#define DS_VERSION "0.0.0"
#endif

/* ---- Messages ----------------------------------------------------------- */

int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, cmd ? "ds %s: " : "ds: ", cmd ? cmd->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nRun 'ds %s --help' for usage.\n", cmd->name);
    else
        fprintf(stderr, "\nRun 'ds --help' for the list of commands.\n");
    return CLI_USAGE;
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("ds: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAIL;
}

/* ---- Options ------------------------------------------------------------ */

void cli_getopt_reset(void)
{
    optind = 0; /* glibc: 0 re-initializes the scanner completely */
    opterr = 0; /* we print our own messages */
}

static const char *long_name(const struct option *lo, int val)
{
    for (; lo && lo->name; lo++)
        if (lo->val == val)
            return lo->name;
    return NULL;
}

int cli_common_opt(cli *c, const cli_cmd *cmd, int opt, char **argv, const struct option *lo)
{
    const char *bad = optind > 0 ? argv[optind - 1] : "";
    switch (opt) {
    case 'h':
        cli_print_help(cmd, stdout);
        return CLI_OK;
    case 'H':
        if (!optarg[0])
            return cli_usage_error(cmd, "--home needs a directory");
        c->home_opt = optarg;
        return CLI_CONTINUE;
    case 'j':
        c->json = 1;
        return CLI_CONTINUE;
    case 'f':
        if (strcmp(optarg, "json") == 0)
            c->json = 1;
        else if (strcmp(optarg, "text") == 0)
            c->json = 0;
        else
            return cli_usage_error(cmd, "unknown output format '%s': use text or json", optarg);
        return CLI_CONTINUE;
    case ':': {
        const char *name = long_name(lo, optopt);
        if (bad[0] == '-' && bad[1] == '-')
            return cli_usage_error(cmd, "option '%s' needs a value", bad);
        if (name)
            return cli_usage_error(cmd, "option '-%c' (--%s) needs a value", optopt, name);
        return cli_usage_error(cmd, "option '-%c' needs a value", optopt);
    }
    case '?':
    default:
        if (bad[0] == '-' && bad[1] == '-') {
            const char *eq = strchr(bad, '=');
            int n = eq ? (int)(eq - bad) : (int)strlen(bad);
            if (optopt && eq)
                return cli_usage_error(cmd, "option '%.*s' takes no value", n, bad);
            return cli_usage_error(cmd, "unknown option '%.*s'", n, bad);
        }
        if (optopt)
            return cli_usage_error(cmd, "unknown option '-%c'", optopt);
        return cli_usage_error(cmd, "unknown option '%s'", bad);
    }
}

int cli_parse_limit(const cli_cmd *cmd, const char *arg, uint64_t *out)
{
    const char *p = arg;
    int digits = *p != '\0';
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            digits = 0;
    if (!digits)
        return cli_usage_error(cmd, "invalid --limit '%s': expected a whole number from 1 to %d",
                               arg, DS_OPS_MAX_LIMIT);
    errno = 0;
    unsigned long long v = strtoull(arg, NULL, 10);
    if (errno == ERANGE || v < 1 || v > DS_OPS_MAX_LIMIT)
        return cli_usage_error(cmd, "--limit %s is out of range: give a number from 1 to %d", arg,
                               DS_OPS_MAX_LIMIT);
    *out = v;
    return 0;
}

char *cli_join_args(int n, char **v)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(v[i]);
        if (i > 0)
            *p++ = ' ';
        memcpy(p, v[i], l);
        p += l;
    }
    *p = '\0';
    return s;
}

/* ---- Requests ----------------------------------------------------------- */

static cli_param *param_slot(cli_params *ps, const char *key)
{
    if (ps->n >= CLI_MAX_PARAMS)
        abort(); /* programmer error: raise CLI_MAX_PARAMS */
    cli_param *p = &ps->p[ps->n++];
    memset(p, 0, sizeof *p);
    p->key = key;
    return p;
}

void cli_param_str(cli_params *ps, const char *key, const char *s)
{
    if (!s)
        return;
    cli_param *p = param_slot(ps, key);
    p->type = CLI_P_STR;
    p->s = s;
}

void cli_param_uint(cli_params *ps, const char *key, uint64_t u)
{
    cli_param *p = param_slot(ps, key);
    p->type = CLI_P_UINT;
    p->u = u;
}

void cli_param_strv(cli_params *ps, const char *key, char *const *v, size_t n)
{
    cli_param *p = param_slot(ps, key);
    p->type = CLI_P_STRV;
    p->v = v;
    p->nv = n;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static int64_t real_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void real_random(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

/* Warnings of the peer files read in process (a secret file ds repaired):
 * the daemon logs them, the CLI shows them like the others. */
static void print_warning(const char *msg)
{
    fprintf(stderr, "ds: warning: %s\n", msg);
}

static int ensure_ctx(cli *c)
{
    if (c->ctx_ready)
        return 0;
    if (sodium_init() < 0)
        return cli_fail("cannot initialize libsodium");
    char *home = NULL;
    int rc = ds_home_resolve(c->home_opt, &home);
    if (rc == DS_ERR_INVALID)
        return cli_fail("cannot find the home directory: set HOME or DS_HOME, or use --home DIR");
    if (rc)
        return cli_fail("cannot determine the home directory: %s", ds_strerror(rc));
    rc = ds_ctx_init(&c->ctx, home, real_now_ms, real_random);
    free(home);
    if (rc)
        return cli_fail("%s", ds_strerror(rc));
    c->ctx_ready = 1;
    if (!c->cwd)
        c->cwd = getcwd(NULL, 0); /* NULL is tolerated: paths then stay as given */
    return 0;
}

int cli_home(cli *c, const char **home)
{
    int rc = ensure_ctx(c);
    if (rc)
        return rc;
    *home = c->ctx.home;
    return 0;
}

/* Sends the request to the daemon over |ic| (closed here) and moves the
 * reply into |r|.  Returns 0 or an exit status (message printed). */
static int call_daemon(cli *c, ds_ipc_client *ic, const char *op, const msgpack_sbuffer *params,
                       cli_reply *r, int quiet)
{
    ds_ipc_reply ir;
    ds_ipc_reply_init(&ir);
    int rc = ds_ipc_request(ic, op, params->data, params->size, &ir);
    ds_ipc_client_close(ic);
    if (rc == DS_ERR_VERSION) {
        ds_ipc_reply_free(&ir);
        return cli_fail("ds %s (protocol %d) cannot talk to daemon protocol %lld: run 'ds stop' "
                        "and start the new version",
                        DS_VERSION, DS_IPC_PROTOCOL, (long long)ir.peer_v);
    }
    if (rc && quiet) {   /* r->root stays NULL: no reply at all */
        ds_ipc_reply_free(&ir);
        return CLI_FAIL;
    }
    if (rc) {
        ds_ipc_reply_free(&ir);
        return cli_fail("the daemon did not answer the '%s' request (%s).\n"
                        "Check %s/daemon.log; 'ds stop' then 'ds start' restarts the daemon.",
                        op, rc == DS_ERR_PROTO ? "connection closed or bad reply" : ds_strerror(rc),
                        c->ctx.home);
    }
    /* Move the buffers: the unpacked objects point into the zone and the
     * buffer, not into |ir| itself, except the top-level object. */
    msgpack_sbuffer_destroy(&r->buf);
    msgpack_unpacked_destroy(&r->up);
    r->buf = ir.buf;
    r->up = ir.up;
    r->root = ir.ok ? ir.body : &r->up.data;
    c->via_daemon = 1;
    return 0;
}

int cli_status_for_code(const char *code, size_t len)
{
    static const char *usage_codes[] = { DS_OPS_E_INVALID, DS_OPS_E_EMPTY_QUERY,
                                         DS_OPS_E_UNKNOWN_OP };
    for (size_t i = 0; i < sizeof usage_codes / sizeof usage_codes[0]; i++)
        if (strlen(usage_codes[i]) == len && memcmp(usage_codes[i], code, len) == 0)
            return CLI_USAGE;
    return CLI_FAIL;
}

int cli_call(cli *c, const char *op, const cli_params *ps, cli_reply *r)
{
    return cli_call_ex(c, op, ps, r, 0);
}

int cli_call_ex(cli *c, const char *op, const cli_params *ps, cli_reply *r, int quiet)
{
    msgpack_sbuffer_init(&r->buf);
    msgpack_unpacked_init(&r->up);
    r->root = NULL;
    int rc = ensure_ctx(c);
    if (rc)
        return rc;

    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    int cwd_param = 1;
    for (size_t i = 0; ps && i < ps->n; i++)
        if (strcmp(ps->p[i].key, "cwd") == 0)
            cwd_param = 0;
    if (!c->cwd)
        cwd_param = 0;
    int perr = msgpack_pack_map(&pk, (ps ? ps->n : 0) + (size_t)cwd_param);
    for (size_t i = 0; ps && i < ps->n; i++) {
        const cli_param *p = &ps->p[i];
        pack_cstr(&pk, p->key);
        if (p->type == CLI_P_STR) {
            pack_cstr(&pk, p->s);
        } else if (p->type == CLI_P_UINT) {
            perr |= msgpack_pack_uint64(&pk, p->u);
        } else {
            perr |= msgpack_pack_array(&pk, p->nv);
            for (size_t j = 0; j < p->nv; j++)
                pack_cstr(&pk, p->v[j]);
        }
    }
    if (cwd_param) {
        pack_cstr(&pk, "cwd");
        pack_cstr(&pk, c->cwd);
    }
    if (perr) {
        msgpack_sbuffer_destroy(&req);
        return cli_fail("out of memory");
    }

    c->via_daemon = 0;
    size_t off = 0;
    char *sock = ds_path_join(c->ctx.home, DS_IPC_SOCKET);
    ds_ipc_client ic;
    if (sock && ds_ipc_connect(&ic, sock, CLI_CONNECT_TIMEOUT_MS) == 0) {
        free(sock);
        ic.timeout_ms = CLI_IO_TIMEOUT_MS;
        rc = call_daemon(c, &ic, op, &req, r, quiet);
        msgpack_sbuffer_destroy(&req);
        if (rc)
            return rc;
    } else {
        /* No daemon (or none reachable): run the same handler here. */
        free(sock);
        ds_peers_set_warn(print_warning);
        msgpack_unpacked params;
        msgpack_unpacked_init(&params);
        if (msgpack_unpack_next(&params, req.data, req.size, &off) != MSGPACK_UNPACK_SUCCESS) {
            msgpack_unpacked_destroy(&params);
            msgpack_sbuffer_destroy(&req);
            return cli_fail("out of memory");
        }
        ds_ops_call(&c->ctx, op, &params.data, &r->buf);
        msgpack_unpacked_destroy(&params);
        msgpack_sbuffer_destroy(&req);

        /* Unpacked strings point into r->buf, which lives as long as |r|. */
        off = 0;
        if (r->buf.size == 0 ||
            msgpack_unpack_next(&r->up, r->buf.data, r->buf.size, &off) !=
                MSGPACK_UNPACK_SUCCESS ||
            r->up.data.type != MSGPACK_OBJECT_MAP)
            return cli_fail("internal error: malformed reply to '%s'", op);
        r->root = &r->up.data;
    }

    const msgpack_object *err = cli_get(r->root, "error");
    if (!err)
        return CLI_OK;
    size_t cl;
    const char *code = cli_str(cli_get(err, "code"), &cl);
    if (!quiet)
        cli_print_reply_error(r);
    return cli_status_for_code(code, cl);
}

void cli_print_reply_error(const cli_reply *r)
{
    const msgpack_object *err = cli_get(r->root, "error");
    size_t ml, hl;
    const char *msg = cli_str(cli_get(err, "message"), &ml);
    const char *hint = cli_str(cli_get(err, "hint"), &hl);
    if (!err)
        return;
    fprintf(stderr, "ds: %.*s\n", (int)ml, msg);
    if (hl)
        fprintf(stderr, "%.*s\n", (int)hl, hint);
}

void cli_reply_free(cli_reply *r)
{
    msgpack_unpacked_destroy(&r->up);
    msgpack_sbuffer_destroy(&r->buf);
    r->root = NULL;
}

/* ---- Reply access ------------------------------------------------------- */

const msgpack_object *cli_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

const char *cli_str(const msgpack_object *o, size_t *len)
{
    if (!o || o->type != MSGPACK_OBJECT_STR) {
        *len = 0;
        return "";
    }
    *len = o->via.str.size;
    return o->via.str.ptr;
}

char *cli_strdup(const msgpack_object *o)
{
    size_t n;
    const char *s = cli_str(o, &n);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

uint64_t cli_u64(const msgpack_object *o)
{
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return o->via.u64;
    return 0;
}

int64_t cli_i64(const msgpack_object *o)
{
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return o->via.u64 > INT64_MAX ? INT64_MAX : (int64_t)o->via.u64;
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return o->via.i64;
    return 0;
}

double cli_f64(const msgpack_object *o)
{
    if (!o)
        return 0;
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        return o->via.f64;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return (double)o->via.i64;
    return 0;
}

int cli_bool(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

uint32_t cli_len(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_ARRAY ? o->via.array.size : 0;
}

const msgpack_object *cli_at(const msgpack_object *arr, uint32_t i)
{
    return i < cli_len(arr) ? &arr->via.array.ptr[i] : NULL;
}

/* ---- Output ------------------------------------------------------------- */

json_t *cli_json_str(const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return json_null();
    json_t *j = json_stringn(o->via.str.ptr, o->via.str.size);
    return j ? j : json_null(); /* not UTF-8: should not happen */
}

json_t *cli_node_json(const msgpack_object *node)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    char iso[32];
    ds_ops_iso8601(cli_i64(cli_get(node, "timestamp")), 1, iso);
    json_object_set_new(o, "id", cli_json_str(cli_get(node, "id")));
    json_object_set_new(o, "content", cli_json_str(cli_get(node, "content")));
    const msgpack_object *score = cli_get(node, "score");
    if (score)
        json_object_set_new(o, "score", json_real(cli_f64(score)));
    json_object_set_new(o, "source", cli_json_str(cli_get(node, "source")));
    json_object_set_new(o, "source_type", cli_json_str(cli_get(node, "source_type")));
    json_object_set_new(o, "project", cli_json_str(cli_get(node, "project")));
    json_object_set_new(o, "namespace", cli_json_str(cli_get(node, "namespace")));
    json_object_set_new(o, "timestamp", json_string(iso));
    json_object_set_new(o, "chunk_index", json_integer(cli_i64(cli_get(node, "chunk_index"))));
    size_t ml;
    const char *meta = cli_str(cli_get(node, "metadata"), &ml);
    if (ml) {
        json_t *m = json_loadb(meta, ml, JSON_DECODE_ANY, NULL);
        if (m)
            json_object_set_new(o, "metadata", m);
    }
    json_object_set_new(o, "store", cli_json_str(cli_get(node, "store")));
    return o;
}

int cli_json_print(json_t *root)
{
    if (!root)
        return cli_fail("out of memory");
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(4));
    json_decref(root);
    fputc('\n', stdout);
    return rc == 0 ? CLI_OK : cli_fail("cannot write JSON output");
}

void cli_local_time(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!localtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%d %H:%M", &tm) == 0)
        snprintf(out, 32, "?");
}

void cli_human_size(uint64_t bytes, char out[32])
{
    static const char *units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
    if (bytes < 1024) {
        snprintf(out, 32, "%llu bytes", (unsigned long long)bytes);
        return;
    }
    double v = (double)bytes / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(out, 32, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static int is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

char *cli_snippet(const char *s, size_t len, size_t max)
{
    char *out = malloc((len < max ? len : max) + 8);
    if (!out)
        return NULL;
    size_t o = 0, i = 0;
    int cut = 0;
    while (i < len && is_space((unsigned char)s[i]))
        i++;
    while (i < len) {
        if (is_space((unsigned char)s[i])) {
            while (i < len && is_space((unsigned char)s[i]))
                i++;
            if (i == len)
                break;
            if (o + 1 > max) {
                cut = 1;
                break;
            }
            out[o++] = ' ';
            continue;
        }
        /* Copy one whole UTF-8 character. */
        size_t cl = 1;
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0xF0)
            cl = 4;
        else if (ch >= 0xE0)
            cl = 3;
        else if (ch >= 0xC0)
            cl = 2;
        if (i + cl > len)
            cl = len - i;
        if (o + cl > max) {
            cut = 1;
            break;
        }
        memcpy(out + o, s + i, cl);
        o += cl;
        i += cl;
    }
    if (cut) {
        /* Back up to the last word boundary if it is not too far back. */
        size_t sp = o;
        while (sp > 0 && out[sp - 1] != ' ')
            sp--;
        if (sp > max * 2 / 3)
            o = sp - 1;
        while (o > 0 && out[o - 1] == ' ')
            o--;
        memcpy(out + o, "\xE2\x80\xA6", 3); /* … */
        o += 3;
    }
    out[o] = '\0';
    return out;
}

size_t cli_print_nodes(const msgpack_object *arr, int scored)
{
    uint32_t n = cli_len(arr);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *h = cli_at(arr, i);
        size_t idl, sl, pl, nl, stl, cl;
        const char *id = cli_str(cli_get(h, "id"), &idl);
        const char *src = cli_str(cli_get(h, "source"), &sl);
        const char *proj = cli_str(cli_get(h, "project"), &pl);
        const char *ns = cli_str(cli_get(h, "namespace"), &nl);
        const char *store = cli_str(cli_get(h, "store"), &stl);
        const char *content = cli_str(cli_get(h, "content"), &cl);
        char when[32];
        cli_local_time(cli_i64(cli_get(h, "timestamp")), when);
        if (i > 0)
            fputc('\n', stdout);
        size_t tl;
        const char *type = cli_str(cli_get(h, "source_type"), &tl);
        char part[32] = "";
        if (tl == 4 && memcmp(type, "file", 4) == 0)
            snprintf(part, sizeof part, " (chunk %llu)",
                     (unsigned long long)cli_u64(cli_get(h, "chunk_index")) + 1);
        if (scored)
            printf("%u. [%.*s] (%.2f) %.*s%s\n", i + 1, (int)stl, store,
                   cli_f64(cli_get(h, "score")), (int)sl, src, part);
        else
            printf("[%.*s] %.*s%s\n", (int)stl, store, (int)sl, src, part);
        printf("   %s  id %.*s  %.*s  %.*s\n", when, (int)(idl > 8 ? 8 : idl), id, (int)nl, ns,
               (int)pl, pl ? proj : "(no project)");
        char *snip = cli_snippet(content, cl, 300);
        if (snip)
            printf("   %s\n", snip);
        free(snip);
    }
    return n;
}
