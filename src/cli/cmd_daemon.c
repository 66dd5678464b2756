/*
 * cmd_daemon.c - "ds start" (detach or run in the foreground), "ds stop"
 * and "ds status".  Start and stop act on processes and files directly
 * (daemon/daemon.h); status is the "status" request, answered by the
 * daemon when it runs and in process otherwise.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/home.h"
#include "daemon/netsync.h"
#include "daemon/peers.h"
#include "io/quic.h"

/* 1 when HOME/config.json sets sync.listen (the daemon then always
 * listens, as with --listen).  ds start has just checked the file. */
static int config_listens(const char *home)
{
    char *path = ds_path_join(home, DS_CONFIG_FILE);
    if (!path)
        return 0;
    ds_config cfg;
    char err[256];
    int listens = ds_config_load(&cfg, path, ds_user_home(), err, sizeof err) == 0 &&
                  cfg.sync_listen != NULL;
    ds_config_free(&cfg);
    free(path);
    return listens;
}

int cmd_start(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    enum { OPT_LISTEN = 0x100, OPT_SYNC, OPT_SYNC_INTERVAL };
    static const struct option lo[] = {
        { "foreground", no_argument, NULL, 'F' },
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "sync", no_argument, NULL, OPT_SYNC },
        { "sync-interval", required_argument, NULL, OPT_SYNC_INTERVAL },
        CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    int opt, fg = 0;
    char canon[DS_NETSYNC_MAX_LISTEN][DS_ADDR_MAX];     /* --listen, one spelling each */
    ds_netsync_start_flags fl;
    memset(&fl, 0, sizeof fl);
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":fh", lo, NULL)) != -1) {
        if (opt == 'f' || opt == 'F') {
            fg = 1;
            continue;
        }
        if (opt == OPT_LISTEN) {
            char host[DS_ADDR_MAX];
            uint16_t port;
            const char *why;
            if (fl.nlisten >= DS_NETSYNC_MAX_LISTEN)
                return cli_usage_error(cmd, "at most %d --listen addresses",
                                       DS_NETSYNC_MAX_LISTEN);
            if (ds_listen_addr_parse(optarg, DS_QUIC_DEFAULT_PORT, host, &port, &why) != 0)
                return cli_usage_error(cmd, "--listen '%s' %s (a listen address must be an IP "
                                            "address, e.g. 127.0.0.1:%u, [::1]:%u, 0.0.0.0:%u)",
                                       optarg, why, (unsigned)DS_QUIC_DEFAULT_PORT,
                                       (unsigned)DS_QUIC_DEFAULT_PORT,
                                       (unsigned)DS_QUIC_DEFAULT_PORT);
            ds_addr_format(host, port, canon[fl.nlisten]);
            for (size_t i = 0; i < fl.nlisten; i++)
                if (strcmp(canon[i], canon[fl.nlisten]) == 0)
                    return cli_usage_error(cmd, "--listen '%s' is a duplicate of --listen "
                                                "'%s' (both are %s)",
                                           optarg, fl.listen[i], canon[i]);
            fl.listen[fl.nlisten++] = optarg;
            continue;
        }
        if (opt == OPT_SYNC) {
            fl.sync_at_start = 1;
            continue;
        }
        if (opt == OPT_SYNC_INTERVAL) {
            const char *why;
            if (ds_duration_parse(optarg, &fl.interval_s, &why) != 0)
                return cli_usage_error(cmd, "--sync-interval '%s' %s; expected seconds or a "
                                            "duration such as 90s, 30m, 1h30m (1 s to 30 days)",
                                       optarg, why);
            continue;
        }
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    if (argc - optind > 0)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    const char *home;
    int rc = cli_home(c, &home);
    if (rc)
        return rc;
    pid_t pid = 0;
    char err[1400];
    rc = ds_daemon_start_ex(home, fg, &fl, &pid, err, sizeof err);
    if (rc == 0) {
        if (fg) {
            fprintf(stderr, "Daemon stopped.\n");
            return CLI_OK;
        }
        printf("Daemon started (pid %ld). Log: %s/%s\n", (long)pid, home, DS_DAEMON_LOG_FILE);
        /* The spec's "Accepting peer connections." when the sync service listens. */
        cli_reply rep;
        int trc = cli_call_ex(c, "peer_ticket", NULL, &rep, 1);
        if (trc != CLI_OK && (fl.nlisten > 0 || config_listens(home))) {
            /* A listen address was asked for (--listen, or sync.listen in
             * config.json), but there is no key to listen with (no
             * identity yet, or identity.key unreadable): say so rather
             * than start silently deaf.  The daemon listens as soon as
             * `ds peer init` has made one. */
            const msgpack_object *e = cli_get(rep.root, "error");
            size_t ml, hl;
            const char *msg = cli_str(cli_get(e, "message"), &ml);
            const char *hint = cli_str(cli_get(e, "hint"), &hl);
            fprintf(stderr, "ds: warning: not accepting peer connections yet: %.*s.\n",
                    (int)ml, ml ? msg : "no identity");
            if (hl)
                fprintf(stderr, "%.*s\n", (int)hl, hint);
            fprintf(stderr, "The daemon starts listening once ds peer init has made a valid "
                            "identity.\n");
        } else if (trc == CLI_OK && cli_bool(cli_get(rep.root, "listening"))) {
            const msgpack_object *a = cli_get(rep.root, "addrs");
            printf("Accepting peer connections");
            for (uint32_t i = 0; i < cli_len(a); i++) {
                size_t l;
                const char *s = cli_str(cli_at(a, i), &l);
                printf("%s%.*s", i ? ", " : " on ", (int)l, s);
            }
            printf(".\n");
        }
        cli_reply_free(&rep);
        return CLI_OK;
    }
    if (rc == DS_ERR_EXISTS) {
        if (pid)
            fprintf(stderr, "ds: the Datasphere daemon is already running (pid %ld, home %s).\n",
                    (long)pid, home);
        else
            fprintf(stderr, "ds: the Datasphere daemon is already running (home %s).\n", home);
        fprintf(stderr, "Stop it with: ds stop\n");
        return CLI_FAIL;
    }
    return cli_fail("cannot start the daemon: %s", err);
}

int cmd_stop(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    static const struct option lo[] = { CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END };
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    if (argc - optind > 0)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    const char *home;
    int rc = cli_home(c, &home);
    if (rc)
        return rc;
    ds_daemon_stop_result res;
    char err[1200];
    rc = ds_daemon_stop(home, DS_DAEMON_STOP_TIMEOUT_MS, &res, err, sizeof err);
    if (rc == 0) {
        if (res.killed)
            printf("Daemon killed (pid %ld): it did not exit within %d s of SIGTERM.\n",
                   (long)res.pid, DS_DAEMON_STOP_TIMEOUT_MS / 1000);
        else
            printf("Daemon stopped (pid %ld).\n", (long)res.pid);
        return CLI_OK;
    }
    if (rc == DS_ERR_NOTFOUND) {
        printf("Datasphere daemon is not running (home %s).\n", home);
        if (res.cleaned)
            printf("Removed the stale %s and %s files of a daemon that was killed.\n",
                   DS_DAEMON_PID_FILE, "daemon.sock");
        return CLI_OK;
    }
    return cli_fail("cannot stop the daemon: %s", err);
}

/* ---- ds status -------------------------------------------------------------- */

static void uptime_text(int64_t s, char out[48])
{
    if (s < 0)
        s = 0;
    long long d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60, sec = s % 60;
    if (d)
        snprintf(out, 48, "%lldd %lldh %02lldm", d, h, m);
    else if (h)
        snprintf(out, 48, "%lldh %02lldm %02llds", h, m, sec);
    else if (m)
        snprintf(out, 48, "%lldm %02llds", m, sec);
    else
        snprintf(out, 48, "%llds", sec);
}

/* A duration as ds start --sync-interval takes it: 1h30m, 45s. */
static void interval_text(int64_t s, char out[48])
{
    static const struct { int64_t n; char u; } units[] = {
        { 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' },
    };
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < 4 && s > 0 && o < 40; i++) {
        if (s >= units[i].n) {
            o += (size_t)snprintf(out + o, 48 - o, "%lld%c", (long long)(s / units[i].n),
                                  units[i].u);
            s %= units[i].n;
        }
    }
}

/* The int or nil |o| as a JSON integer or null. */
static json_t *int_or_null(const msgpack_object *o)
{
    if (!o || (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
               o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
        return json_null();
    return json_integer((json_int_t)cli_i64(o));
}

static json_t *sync_json(const msgpack_object *y)
{
    json_t *o = json_object(), *a = json_array();
    if (!o || !a) {
        json_decref(o);
        json_decref(a);
        return json_null();
    }
    const msgpack_object *addrs = cli_get(y, "addrs");
    for (uint32_t i = 0; i < cli_len(addrs); i++)
        json_array_append_new(a, cli_json_str(cli_at(addrs, i)));
    json_object_set_new(o, "listening", json_boolean(cli_bool(cli_get(y, "listening"))));
    json_object_set_new(o, "addrs", a);
    json_object_set_new(o, "why", cli_json_str(cli_get(y, "why")));
    json_object_set_new(o, "interval_s", json_integer((json_int_t)cli_u64(cli_get(y, "interval_s"))));
    json_object_set_new(o, "next_sync_in_s", int_or_null(cli_get(y, "next_sync_in_s")));
    json_object_set_new(o, "retries", json_integer((json_int_t)cli_u64(cli_get(y, "retries"))));
    json_object_set_new(o, "next_retry_in_s", int_or_null(cli_get(y, "next_retry_in_s")));
    json_object_set_new(o, "jobs_active",
                        json_integer((json_int_t)cli_u64(cli_get(y, "jobs_active"))));
    return o;
}

/* The daemon's network sync: where it accepts syncs (or why not), the
 * periodic schedule, retries waiting and jobs running. */
static void sync_text(const msgpack_object *y)
{
    const char *pre = "Peer sync:      ", *more = "                ";
    if (cli_bool(cli_get(y, "listening"))) {
        const msgpack_object *addrs = cli_get(y, "addrs");
        printf("%saccepting syncs on ", pre);
        for (uint32_t i = 0; i < cli_len(addrs); i++) {
            size_t al;
            const char *a = cli_str(cli_at(addrs, i), &al);
            printf("%s%.*s", i ? ", " : "", (int)al, a);
        }
        printf("\n");
    } else {
        size_t wl;
        const char *why = cli_str(cli_get(y, "why"), &wl);
        printf("%snot accepting syncs: %.*s\n", pre, wl ? (int)wl : 7, wl ? why : "unknown");
    }
    uint64_t iv = cli_u64(cli_get(y, "interval_s"));
    const msgpack_object *next = cli_get(y, "next_sync_in_s");
    char a[48], b[48];
    if (iv) {
        interval_text((int64_t)iv, a);
        if (next && next->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            uptime_text(cli_i64(next), b);
            printf("%ssyncs subscribed peers every %s (next in %s)\n", more, a, b);
        } else {
            printf("%ssyncs subscribed peers every %s\n", more, a);
        }
    } else {
        printf("%sno periodic sync (ds start --sync-interval 30m sets one)\n", more);
    }
    uint64_t nr = cli_u64(cli_get(y, "retries"));
    const msgpack_object *nri = cli_get(y, "next_retry_in_s");
    if (nr && nri && nri->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        uptime_text(cli_i64(nri), b);
        printf("%s%llu failed peer sync%s to retry (next in %s)\n", more,
               (unsigned long long)nr, nr == 1 ? "" : "s", b);
    }
    uint64_t ja = cli_u64(cli_get(y, "jobs_active"));
    if (ja)
        printf("%s%llu sync job%s running (ds peer list shows the results)\n", more,
               (unsigned long long)ja, ja == 1 ? "" : "s");
}

static json_t *by_type_json(const msgpack_object *bt)
{
    json_t *t = json_object();
    for (uint32_t i = 0; t && bt && bt->type == MSGPACK_OBJECT_MAP && i < bt->via.map.size; i++) {
        const msgpack_object_kv *kv = &bt->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR) {
            char k[32];
            snprintf(k, sizeof k, "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
            json_object_set_new(t, k, json_integer((json_int_t)cli_u64(&kv->val)));
        }
    }
    return t;
}

static void print_nodes_line(const msgpack_object *s)
{
    const msgpack_object *bt = cli_get(s, "by_type");
    printf("Nodes:          %llu", (unsigned long long)cli_u64(cli_get(s, "nodes")));
    for (uint32_t i = 0; bt && bt->type == MSGPACK_OBJECT_MAP && i < bt->via.map.size; i++) {
        const msgpack_object_kv *kv = &bt->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR)
            printf("%s%.*s %llu", i == 0 ? " (" : ", ", (int)kv->key.via.str.size,
                   kv->key.via.str.ptr, (unsigned long long)cli_u64(&kv->val));
    }
    printf("%s\n", bt && bt->type == MSGPACK_OBJECT_MAP && bt->via.map.size ? ")" : "");
}

static int status_json(const msgpack_object *s, int running)
{
    json_t *o = json_object();
    if (!o)
        return cli_json_print(NULL);
    const msgpack_object *ing = cli_get(s, "ingest");
    json_object_set_new(o, "running", json_boolean(running));
    if (running) {
        char iso[32];
        json_object_set_new(o, "pid", json_integer((json_int_t)cli_i64(cli_get(s, "pid"))));
        json_object_set_new(o, "uptime_s",
                            json_integer((json_int_t)cli_i64(cli_get(s, "uptime_s"))));
        ds_ops_iso8601(cli_i64(cli_get(s, "started_at")), 0, iso);
        json_object_set_new(o, "started_at", json_string(iso));
    }
    json_object_set_new(o, "version", cli_json_str(cli_get(s, "version")));
    json_object_set_new(o, "protocol", json_integer((json_int_t)cli_i64(cli_get(s, "protocol"))));
    json_object_set_new(o, "home", cli_json_str(cli_get(s, "home")));
    if (running) {
        json_object_set_new(o, "config", cli_json_str(cli_get(s, "config")));
        json_object_set_new(o, "log", cli_json_str(cli_get(s, "log")));
        json_object_set_new(o, "socket", cli_json_str(cli_get(s, "socket")));
        json_t *w = json_array();
        const msgpack_object *wl = cli_get(ing, "watched");
        for (uint32_t i = 0; w && i < cli_len(wl); i++)
            json_array_append_new(w, cli_json_str(cli_at(wl, i)));
        json_object_set_new(o, "watched", w ? w : json_null());
        json_object_set_new(o, "sessions_tracked",
                            json_integer((json_int_t)cli_u64(cli_get(ing, "sessions_tracked"))));
        const msgpack_object *q = cli_get(ing, "queue");
        json_t *qj = json_object();
        static const char *qk[] = { "pending", "processing", "done", "failed" };
        for (size_t i = 0; qj && i < 4; i++)
            json_object_set_new(qj, qk[i], json_integer((json_int_t)cli_u64(cli_get(q, qk[i]))));
        json_object_set_new(o, "queue", qj ? qj : json_null());
        const msgpack_object *li = cli_get(ing, "last_ingest");
        if (li && li->type == MSGPACK_OBJECT_MAP) {
            json_t *l = json_object();
            char iso[32];
            ds_ops_iso8601(cli_i64(cli_get(li, "at")), 0, iso);
            if (l) {
                json_object_set_new(l, "path", cli_json_str(cli_get(li, "path")));
                json_object_set_new(l, "at", json_string(iso));
                json_object_set_new(l, "nodes",
                                    json_integer((json_int_t)cli_u64(cli_get(li, "nodes"))));
            }
            json_object_set_new(o, "last_ingest", l ? l : json_null());
        } else {
            json_object_set_new(o, "last_ingest", json_null());
        }
        json_object_set_new(o, "requests",
                            json_integer((json_int_t)cli_u64(cli_get(s, "requests"))));
        const msgpack_object *y = cli_get(s, "sync");
        json_object_set_new(o, "sync", y && y->type == MSGPACK_OBJECT_MAP ? sync_json(y)
                                                                         : json_null());
    }
    if (cli_get(s, "nodes")) {
        json_object_set_new(o, "nodes", json_integer((json_int_t)cli_u64(cli_get(s, "nodes"))));
        json_object_set_new(o, "nodes_by_type", by_type_json(cli_get(s, "by_type")));
    } else {
        json_object_set_new(o, "nodes", json_null());
    }
    return cli_json_print(o);
}

static void status_text(const msgpack_object *s)
{
    const msgpack_object *ing = cli_get(s, "ingest");
    size_t vl, hl, cl, ll;
    const char *ver = cli_str(cli_get(s, "version"), &vl);
    const char *home = cli_str(cli_get(s, "home"), &hl);
    const char *cfg = cli_str(cli_get(s, "config"), &cl);
    const char *log = cli_str(cli_get(s, "log"), &ll);
    char up[48];
    uptime_text(cli_i64(cli_get(s, "uptime_s")), up);
    printf("Datasphere daemon is running (pid %lld).\n", (long long)cli_i64(cli_get(s, "pid")));
    printf("Uptime:         %s\n", up);
    printf("Version:        ds %.*s (protocol %lld)\n", (int)vl, ver,
           (long long)cli_i64(cli_get(s, "protocol")));
    printf("Home:           %.*s\n", (int)hl, home);
    if (cl)
        printf("Config:         %.*s\n", (int)cl, cfg);
    else
        printf("Config:         none (defaults; create %.*s/config.json to change)\n", (int)hl,
               home);
    printf("Log:            %.*s\n", ll ? (int)ll : 6, ll ? log : "stderr");
    const msgpack_object *wl = cli_get(ing, "watched");
    if (cli_len(wl) == 0)
        printf("Watching:       nothing\n");
    for (uint32_t i = 0; i < cli_len(wl); i++) {
        size_t wn;
        const char *w = cli_str(cli_at(wl, i), &wn);
        printf("%s%.*s\n", i == 0 ? "Watching:       " : "                ", (int)wn, w);
    }
    printf("Sessions:       %llu tracked\n",
           (unsigned long long)cli_u64(cli_get(ing, "sessions_tracked")));
    const msgpack_object *q = cli_get(ing, "queue");
    printf("Queue:          %llu pending, %llu processing, %llu done, %llu failed\n",
           (unsigned long long)cli_u64(cli_get(q, "pending")),
           (unsigned long long)cli_u64(cli_get(q, "processing")),
           (unsigned long long)cli_u64(cli_get(q, "done")),
           (unsigned long long)cli_u64(cli_get(q, "failed")));
    const msgpack_object *li = cli_get(ing, "last_ingest");
    if (li && li->type == MSGPACK_OBJECT_MAP) {
        char when[32];
        size_t pl;
        const char *p = cli_str(cli_get(li, "path"), &pl);
        cli_local_time(cli_i64(cli_get(li, "at")), when);
        printf("Last ingest:    %s  %.*s (%llu nodes)\n", when, (int)pl, p,
               (unsigned long long)cli_u64(cli_get(li, "nodes")));
    } else {
        printf("Last ingest:    none yet\n");
    }
    const msgpack_object *y = cli_get(s, "sync");
    if (y && y->type == MSGPACK_OBJECT_MAP)
        sync_text(y);
    if (cli_get(s, "nodes"))
        print_nodes_line(s);
    printf("Requests:       %llu served\n", (unsigned long long)cli_u64(cli_get(s, "requests")));
}

int cmd_status(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    static const struct option lo[] = {
        CLI_OPT_JSON, CLI_OPT_FORMAT, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":jf:h", lo, NULL)) != -1) {
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    if (argc - optind > 0)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    cli_reply rep;
    int rc = cli_call(c, "status", NULL, &rep);
    if (rc) {
        cli_reply_free(&rep);
        return rc;
    }
    const msgpack_object *s = rep.root;
    int running = c->via_daemon && cli_bool(cli_get(s, "running"));
    if (!running) {
        pid_t pid;
        if (ds_daemon_probe(c->ctx.home, &pid) == 1) {
            cli_reply_free(&rep);
            fprintf(stderr,
                    "ds: a Datasphere daemon (pid %ld) holds the home %s but does not answer on "
                    "its socket.\nCheck %s/%s; 'ds stop' then 'ds start' restarts it.\n",
                    (long)pid, c->ctx.home, c->ctx.home, DS_DAEMON_LOG_FILE);
            return CLI_FAIL;
        }
    }
    if (c->json) {
        rc = status_json(s, running);
    } else if (running) {
        status_text(s);
    } else {
        printf("Datasphere daemon is not running (home %s). Start it with: ds start\n",
               c->ctx.home);
        if (cli_get(s, "nodes"))
            print_nodes_line(s);
        else
            printf("Nodes:          none (no knowledge store yet)\n");
    }
    cli_reply_free(&rep);
    if (rc)
        return rc;
    return running ? CLI_OK : CLI_NOT_RUNNING;
}
