/*
 * cmd_peer.c - "ds peer SUBCOMMAND": identity (init, id, ticket), share
 * control (share, unshare, shared), peers (add, remove, list), network
 * sync (sync) and offline exchange (export, import).  Each subcommand is one request to the
 * peer_* handlers (src/daemon/ops_peer.c) printed as text or --json; the
 * texts follow the P2P spec's example session.
 */
#include "cli/cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/netsync.h"
#include "daemon/peers.h"

int cmd_peer(cli *c, const cli_cmd *cmd, int argc, char **argv);

typedef struct sub {
    const char *name;
    int (*run)(cli *c, const struct sub *s, int argc, char **argv);
    const char *summary;
    const char *help;
} sub;

/* ---- option parsing shared by the subcommands --------------------------- */

enum {
    O_FORCE = 0x100, O_NAME, O_PUBLISH, O_NO_PUBLISH, O_SUBSCRIBE, O_NO_SUBSCRIBE, O_FULL,
    O_ADD, O_ADDR
};

typedef struct popts {
    int force, full, add;
    int publish, subscribe;     /* -1: not given */
    const char *name;
    char *addrs[DS_PEER_MAX_ADDRS];  /* --addr, as given */
    size_t naddrs;
} popts;

static const cli_cmd *as_cmd(const sub *s, cli_cmd *tmp)
{
    /* Usage errors and --help name "peer SUB" and print the sub's help. */
    static char name[32];
    snprintf(name, sizeof name, "peer %s", s->name);
    memset(tmp, 0, sizeof *tmp);
    tmp->name = name;
    tmp->help = s->help;
    return tmp;
}

/* Parses |argv| (argv[0] = the subcommand) with the options in |allowed|
 * (a string of O_* letters is awkward: a bit mask instead).  Returns
 * CLI_CONTINUE with optind at the first operand, or an exit status. */
#define A_FORCE 1
#define A_NAME 2
#define A_FLAGS 4
#define A_FULL 8
#define A_ADD 16
#define A_ADDR 32
static int parse(cli *c, const sub *s, int argc, char **argv, int allowed, popts *o,
                 int min_args, int max_args, const char *args_desc)
{
    static const struct option lo[] = {
        { "force", no_argument, NULL, O_FORCE },
        { "name", required_argument, NULL, O_NAME },
        { "publish", no_argument, NULL, O_PUBLISH },
        { "no-publish", no_argument, NULL, O_NO_PUBLISH },
        { "subscribe", no_argument, NULL, O_SUBSCRIBE },
        { "no-subscribe", no_argument, NULL, O_NO_SUBSCRIBE },
        { "full", no_argument, NULL, O_FULL },
        { "add", no_argument, NULL, O_ADD },
        { "addr", required_argument, NULL, O_ADDR },
        CLI_OPT_JSON, CLI_OPT_FORMAT, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    cli_cmd tmp;
    const cli_cmd *cc = as_cmd(s, &tmp);
    memset(o, 0, sizeof *o);
    o->publish = o->subscribe = -1;
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":jf:h", lo, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case O_FORCE: bad = !(allowed & A_FORCE); o->force = 1; break;
        case O_NAME:
            bad = !(allowed & A_NAME);
            if (!bad && !optarg[0])
                return cli_usage_error(cc, "--name needs a name");
            o->name = optarg;
            break;
        case O_PUBLISH: bad = !(allowed & A_FLAGS); o->publish = 1; break;
        case O_NO_PUBLISH: bad = !(allowed & A_FLAGS); o->publish = 0; break;
        case O_SUBSCRIBE: bad = !(allowed & A_FLAGS); o->subscribe = 1; break;
        case O_NO_SUBSCRIBE: bad = !(allowed & A_FLAGS); o->subscribe = 0; break;
        case O_FULL: bad = !(allowed & A_FULL); o->full = 1; break;
        case O_ADD: bad = !(allowed & A_ADD); o->add = 1; break;
        case O_ADDR: {
            bad = !(allowed & A_ADDR);
            if (bad)
                break;
            char host[DS_ADDR_MAX];
            uint16_t port;
            const char *why;
            if (o->naddrs >= DS_PEER_MAX_ADDRS)
                return cli_usage_error(cc, "at most %d --addr options", DS_PEER_MAX_ADDRS);
            if (ds_addr_parse(optarg, 0, host, &port, &why) != 0)
                return cli_usage_error(cc, "--addr '%s' %s%s", optarg, why, ds_addr_expect(why));
            o->addrs[o->naddrs++] = optarg;
            break;
        }
        default: {
            int r = cli_common_opt(c, cc, opt, argv, lo);
            if (r != CLI_CONTINUE)
                return r;
        }
        }
        if (bad)
            return cli_usage_error(cc, "unknown option '%s'", argv[optind - 1]);
    }
    int n = argc - optind;
    if (n < min_args)
        return cli_usage_error(cc, "missing %s", args_desc);
    if (n > max_args)
        return cli_usage_error(cc, "unexpected argument '%s'", argv[optind + max_args]);
    return CLI_CONTINUE;
}

static int json_reply(const msgpack_object *root);

/* Sends request |op| with |ps| (NULL for none) and prints the reply: as
 * JSON with --json, else through |text|.  A "warning" in the reply (the
 * request succeeded, but something needs the user: peer_init, peer_add,
 * peer_share, peer_unshare)
 * goes to stderr as "ds: warning: ..." either way.  Returns the exit
 * status. */
static int call_print(cli *c, const char *op, cli_params *ps, void (*text)(const msgpack_object *R))
{
    cli_reply rep;
    int rc = cli_call(c, op, ps, &rep);
    if (rc == CLI_OK) {
        if (c->json)
            rc = json_reply(rep.root);
        else
            text(rep.root);
        size_t wl;
        const char *w = cli_str(cli_get(rep.root, "warning"), &wl);
        if (wl)
            fprintf(stderr, "ds: warning: %.*s\n", (int)wl, w);
    }
    cli_reply_free(&rep);
    return rc;
}

/* ---- identity ----------------------------------------------------------- */

static void print_init(const msgpack_object *R)
{
    size_t il;
    const char *id = cli_str(cli_get(R, "node_id"), &il);
    printf("Generated NodeId: %.*s\n", (int)il, id);
    if (cli_bool(cli_get(R, "replaced")))
        printf("The previous identity was replaced.\n");
}

static int sub_init(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, A_FORCE, &o, 0, 0, "");
    if (r != CLI_CONTINUE)
        return r;
    cli_params ps = { .n = 0 };
    if (o.force)
        cli_param_uint(&ps, "force", 1);
    return call_print(c, "peer_init", &ps, print_init);
}

static void print_id(const msgpack_object *R)
{
    size_t il;
    const char *id = cli_str(cli_get(R, "node_id"), &il);
    printf("%.*s\n", (int)il, id);
}

static int sub_id(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, 0, &o, 0, 0, "");
    if (r != CLI_CONTINUE)
        return r;
    return call_print(c, "peer_id", NULL, print_id);
}

/* ---- share control ------------------------------------------------------ */

static void print_share(const msgpack_object *R)
{
    size_t pl;
    const char *p = cli_str(cli_get(R, "path"), &pl);
    if (cli_bool(cli_get(R, "added")))
        printf("Added to shared projects: %.*s\n", (int)pl, p);
    else
        printf("Already shared: %.*s\n", (int)pl, p);
}

static int sub_share(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, 0, &o, 1, 1, "PATH: give the project directory to share");
    if (r != CLI_CONTINUE)
        return r;
    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "path", argv[optind]);
    return call_print(c, "peer_share", &ps, print_share);
}

static void print_unshare(const msgpack_object *R)
{
    size_t pl;
    const char *p = cli_str(cli_get(R, "path"), &pl);
    printf("Removed from shared projects: %.*s\n", (int)pl, p);
}

static int sub_unshare(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, 0, &o, 1, 1, "PATH: give a shared project directory");
    if (r != CLI_CONTINUE)
        return r;
    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "path", argv[optind]);
    return call_print(c, "peer_unshare", &ps, print_unshare);
}

static int sub_shared(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, 0, &o, 0, 0, "");
    if (r != CLI_CONTINUE)
        return r;
    cli_reply rep;
    int rc = cli_call(c, "peer_shared", NULL, &rep);
    if (rc == CLI_OK) {
        const msgpack_object *arr = cli_get(rep.root, "projects");
        if (c->json) {
            json_t *a = json_array();
            for (uint32_t i = 0; a && i < cli_len(arr); i++)
                json_array_append_new(a, cli_json_str(cli_at(arr, i)));
            rc = cli_json_print(a ? json_pack("{s:o}", "shared_projects", a) : NULL);
        } else if (cli_len(arr) == 0) {
            printf("No shared projects: everything is private.\n"
                   "Share one with: ds peer share PATH\n");
        } else {
            for (uint32_t i = 0; i < cli_len(arr); i++) {
                size_t pl;
                const char *p = cli_str(cli_at(arr, i), &pl);
                printf("%.*s\n", (int)pl, p);
            }
        }
    }
    cli_reply_free(&rep);
    return rc;
}

/* ---- peers -------------------------------------------------------------- */

static void print_add(const msgpack_object *R)
{
    size_t ll, ol;
    const char *label = cli_str(cli_get(R, "label"), &ll);
    const char *old = cli_str(cli_get(R, "old_name"), &ol);
    int pub = cli_bool(cli_get(R, "publish")), subs = cli_bool(cli_get(R, "subscribe"));
    const msgpack_object *av = cli_get(R, "addrs");
    const msgpack_object *dv = cli_get(R, "dropped_addrs");
    if (cli_len(dv)) {
        fprintf(stderr, "ds: warning: a peer keeps at most %d addresses; dropped the oldest:",
                DS_PEER_MAX_ADDRS);
        for (uint32_t i = 0; i < cli_len(dv); i++) {
            size_t dl;
            const char *d = cli_str(cli_at(dv, i), &dl);
            fprintf(stderr, "%s%.*s", i ? ", " : " ", (int)dl, d);
        }
        fputc('\n', stderr);
    }
    if (cli_bool(cli_get(R, "created"))) {
        printf("Added peer '%.*s'\n", (int)ll, label);
        for (uint32_t i = 0; i < cli_len(av); i++) {
            size_t al;
            const char *a = cli_str(cli_at(av, i), &al);
            printf("%s%.*s", i ? ", " : "Addresses: ", (int)al, a);
        }
        if (cli_len(av))
            putchar('\n');
        if (pub)
            printf("%.*s can pull from us\n", (int)ll, label);
        if (!subs)
            printf("Not subscribed: we do not pull from %.*s\n", (int)ll, label);
    } else {
        const msgpack_object *ch = cli_get(R, "changed");
        for (uint32_t i = 0; i < cli_len(ch); i++) {
            size_t kl;
            const char *k = cli_str(cli_at(ch, i), &kl);
            if (kl == 4 && memcmp(k, "name", 4) == 0) {
                if (ol)
                    printf("Updated: renamed '%.*s' to '%.*s'\n", (int)ol, old,
                           (int)ll, label);
                else
                    printf("Updated: named the peer '%.*s'\n", (int)ll, label);
            } else if (kl == 5 && memcmp(k, "addrs", 5) == 0) {
                printf("Updated: addresses of %.*s:", (int)ll, label);
                for (uint32_t j = 0; j < cli_len(av); j++) {
                    size_t al;
                    const char *a = cli_str(cli_at(av, j), &al);
                    printf("%s%.*s", j ? ", " : " ", (int)al, a);
                }
                putchar('\n');
            } else if (kl == 7 && memcmp(k, "publish", 7) == 0) {
                printf("Updated: %.*s can %s pull from us\n", (int)ll, label,
                       pub ? "now" : "no longer");
            } else {
                printf("Updated: we %s pull from %.*s\n", subs ? "now" : "no longer",
                       (int)ll, label);
            }
        }
        if (cli_len(ch) == 0)
            printf("No change: '%.*s' is already a peer (subscribe: %s, publish: %s)\n",
                   (int)ll, label, subs ? "yes" : "no", pub ? "yes" : "no");
    }
}

static int sub_add(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, A_NAME | A_FLAGS | A_ADDR, &o, 1, 1,
                  "NODE_ID or TICKET: give the peer's NodeId (ds peer id on its machine) or "
                  "its ticket (ds peer ticket)");
    if (r != CLI_CONTINUE)
        return r;
    cli_params ps = { .n = 0 };
    const char *idarg = ds_str_trim(argv[optind]);  /* pasted: may end in '\n' */
    char tid[DS_NODE_ID_HEX + 1];
    char tad[DS_PEER_MAX_ADDRS][DS_ADDR_MAX];
    size_t nt = 0;
    if (ds_ticket_version_len(idarg)) {   /* a ticket, of any version */
        const char *why;
        cli_cmd tmp;
        if (ds_ticket_parse(idarg, tid, tad, &nt, &why) != 0)
            return cli_usage_error(as_cmd(s, &tmp), "the ticket %s", why);
        if (o.naddrs + nt > DS_PEER_MAX_ADDRS)
            return cli_usage_error(as_cmd(s, &tmp),
                                   "at most %d addresses (the ticket holds %zu, --addr "
                                   "gives %zu)", DS_PEER_MAX_ADDRS, nt, o.naddrs);
        idarg = tid;
        for (size_t i = 0; i < nt; i++)
            o.addrs[o.naddrs++] = tad[i];
    }
    cli_param_str(&ps, "id", idarg);
    if (o.naddrs)
        cli_param_strv(&ps, "addrs", o.addrs, o.naddrs);
    cli_param_str(&ps, "name", o.name);
    if (o.subscribe >= 0)
        cli_param_uint(&ps, "subscribe", (uint64_t)o.subscribe);
    if (o.publish >= 0)
        cli_param_uint(&ps, "publish", (uint64_t)o.publish);
    return call_print(c, "peer_add", &ps, print_add);
}

static void print_remove(const msgpack_object *R)
{
    size_t ll;
    const char *label = cli_str(cli_get(R, "label"), &ll);
    if (cli_bool(cli_get(R, "replica_deleted")))
        printf("Removed peer '%.*s' and deleted its replica\n", (int)ll, label);
    else
        printf("Removed peer '%.*s'\n", (int)ll, label);
}

static int sub_remove(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, 0, &o, 1, 1, "NODE_ID or NAME of the peer to remove");
    if (r != CLI_CONTINUE)
        return r;
    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "id", argv[optind]);
    return call_print(c, "peer_remove", &ps, print_remove);
}

static void print_when(const msgpack_object *iso)
{
    size_t l;
    const char *s = cli_str(iso, &l);
    if (l)
        printf("%.*s", (int)l, s);
    else
        printf("never");
}

/* The network part of a peer in `ds peer list`: its addresses and the
 * last sync attempt (result, address used, direct or relayed). */
static void print_net(const msgpack_object *p)
{
    const msgpack_object *av = cli_get(p, "addrs");
    size_t rl, al, pl, wl;
    const char *res = cli_str(cli_get(p, "last_result"), &rl);
    const char *addr = cli_str(cli_get(p, "last_addr"), &al);
    const char *path = cli_str(cli_get(p, "last_path"), &pl);
    const char *when = cli_str(cli_get(p, "last_attempt"), &wl);
    if (cli_len(av)) {
        printf("    addresses: ");
        for (uint32_t i = 0; i < cli_len(av); i++) {
            size_t l;
            const char *a = cli_str(cli_at(av, i), &l);
            printf("%s%.*s", i ? ", " : "", (int)l, a);
        }
        putchar('\n');
    }
    if (rl) {
        printf("    last sync attempt %.*s: %.*s", (int)wl, when, (int)rl, res);
        if (al)
            printf(" (via %.*s, %.*s)", (int)al, addr, pl ? (int)pl : 7, pl ? path : "unknown");
        putchar('\n');
        if (pl == 5 && memcmp(path, "relay", 5) == 0)
            printf("    warning: reached only through a relay, not directly\n");
    }
}

/* The NAME column of `ds peer list` is as wide as the longest label shown,
 * at most LIST_NAME_MAX columns; a longer name is cut to LIST_NAME_MAX - 1
 * characters and "…" (--json has it whole).  Names are ASCII (peers.c),
 * so a byte is a column. */
#define LIST_NAME_MAX 40

static void print_list(const msgpack_object *R)
{
    const msgpack_object *arr = cli_get(R, "peers");
    if (cli_len(arr) == 0) {
        printf("No peers yet.  Add one with: ds peer add NODE_ID --name NAME\n");
        return;
    }
    int w = 4;   /* "NAME" */
    for (uint32_t i = 0; i < cli_len(arr); i++) {
        size_t ll;
        cli_str(cli_get(cli_at(arr, i), "label"), &ll);
        if (ll > (size_t)w)
            w = ll > LIST_NAME_MAX ? LIST_NAME_MAX : (int)ll;
    }
    printf("%-*s %-18s %-9s %-7s %8s  %s\n", w, "NAME", "NODE ID", "SUBSCRIBE", "PUBLISH",
           "NODES", "LAST SYNC");
    for (uint32_t i = 0; i < cli_len(arr); i++) {
        const msgpack_object *p = cli_at(arr, i);
        size_t ll, il;
        const char *label = cli_str(cli_get(p, "label"), &ll);
        const char *id = cli_str(cli_get(p, "node_id"), &il);
        size_t xl;   /* a replica that cannot be opened or read: "?" nodes */
        const char *why = cli_str(cli_get(p, "replica_error"), &xl);
        char nodes[24] = "?";
        if (!xl)
            snprintf(nodes, sizeof nodes, "%llu", (unsigned long long)cli_u64(cli_get(p, "nodes")));
        if (ll > (size_t)w)   /* "…" is 3 bytes but 1 column */
            printf("%.*s… ", w - 1, label);
        else
            printf("%-*.*s ", w, (int)ll, label);
        /* The NodeId: 16 hex digits and "…" (17 columns), padded to 18 by hand. */
        printf("%.16s…  %-9s %-7s %8s  ", id,
               cli_bool(cli_get(p, "subscribe")) ? "yes" : "no",
               cli_bool(cli_get(p, "publish")) ? "yes" : "no", nodes);
        print_when(cli_get(p, "last_sync"));
        putchar('\n');
        if (xl)
            printf("    replica unreadable: %.*s\n", (int)xl, why);
        print_net(p);
    }
}

static int sub_list(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, 0, &o, 0, 0, "");
    if (r != CLI_CONTINUE)
        return r;
    return call_print(c, "peer_list", NULL, print_list);
}

/* ---- network ------------------------------------------------------------ */

static void print_ticket(const msgpack_object *R)
{
    size_t tl;
    const char *t = cli_str(cli_get(R, "ticket"), &tl);
    printf("%.*s\n", (int)tl, t);
    if (cli_bool(cli_get(R, "listening")))
        return;
    size_t wl;
    const char *why = cli_str(cli_get(R, "why"), &wl);
    if (wl)
        fprintf(stderr, "note: this node is not accepting syncs now: %.*s.\n", (int)wl, why);
    else   /* an older daemon */
        fprintf(stderr, "note: this node is not accepting syncs now: peers reach it "
                        "while the daemon runs (ds start) and some peer may pull "
                        "(ds peer add ID --publish).\n");
}

static int sub_ticket(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, 0, &o, 0, 0, "");
    if (r != CLI_CONTINUE)
        return r;
    return call_print(c, "peer_ticket", NULL, print_ticket);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t last_progress_ms;

/* One progress line on the terminal (stderr), overwritten in place. */
static void progress_print(const char *label, int len, const char *state, uint64_t nodes,
                           uint64_t bytes, int64_t elapsed_ms)
{
    int64_t now = mono_ms();
    if (now - last_progress_ms < 100)
        return;
    last_progress_ms = now;
    char sz[32], rate[32];
    cli_human_size(bytes, sz);
    cli_human_size(elapsed_ms > 0 ? (uint64_t)((double)bytes * 1000.0 / (double)elapsed_ms) : 0,
                   rate);
    if (strcmp(state, "syncing") == 0)
        fprintf(stderr, "\r\033[KSyncing with %.*s... %llu nodes, %s (%s/s, %.0f nodes/s)",
                len, label, (unsigned long long)nodes, sz, rate,
                elapsed_ms > 0 ? (double)nodes * 1000.0 / (double)elapsed_ms : 0.0);
    else
        fprintf(stderr, "\r\033[KSyncing with %.*s... %s", len, label, state);
    fflush(stderr);
}

static void on_progress(const ds_netsync_peer *p, void *ud)
{
    (void)ud;
    if (p->state == DS_NETSYNC_DIALING || p->state == DS_NETSYNC_SYNCING) {
        int64_t el = mono_ms() - p->started_ms;
        progress_print(p->label, (int)strlen(p->label),
                       p->state == DS_NETSYNC_DIALING ? "connecting" : "syncing",
                       p->nodes_received, p->bytes, el);
    }
}

static void progress_clear(int tty)
{
    if (tty && last_progress_ms) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    last_progress_ms = 0;
}

/* The job's running peer, as a progress line. */
static void progress_from_reply(const msgpack_object *R)
{
    const msgpack_object *arr = cli_get(R, "peers");
    for (uint32_t i = 0; i < cli_len(arr); i++) {
        const msgpack_object *p = cli_at(arr, i);
        size_t sl, ll;
        const char *st = cli_str(cli_get(p, "state"), &sl);
        const char *label = cli_str(cli_get(p, "label"), &ll);
        char state[16];
        snprintf(state, sizeof state, "%.*s", (int)sl, st);
        if (strcmp(state, "syncing") == 0 || strcmp(state, "connecting") == 0) {
            progress_print(label, (int)ll, state, cli_u64(cli_get(p, "nodes_received")),
                           cli_u64(cli_get(p, "bytes")), cli_i64(cli_get(p, "elapsed_ms")));
            return;
        }
    }
}

/* A fingerprint of the job's progress, to notice a daemon that stalls.
 * *waiting is set when no peer of the job is connecting or syncing: the
 * job is queued behind another sync of the same peer, which has its own
 * time limits. */
static uint64_t job_mark(const msgpack_object *R, int *waiting)
{
    uint64_t m = 0;
    *waiting = 1;
    const msgpack_object *arr = cli_get(R, "peers");
    for (uint32_t i = 0; i < cli_len(arr); i++) {
        const msgpack_object *p = cli_at(arr, i);
        size_t sl;
        const char *st = cli_str(cli_get(p, "state"), &sl);
        if ((sl == 7 && memcmp(st, "syncing", 7) == 0) ||
            (sl == 10 && memcmp(st, "connecting", 10) == 0))
            *waiting = 0;
        m = m * 31 + cli_u64(cli_get(p, "bytes")) + sl * 7 + i;
    }
    return m;
}

/* Ctrl-C (or SIGTERM, SIGHUP) while the CLI waits for a daemon's sync job:
 * the job is cancelled, as an in-process sync stops on the same signals.
 * SA_RESETHAND: a second one ends the CLI at once. */
static volatile sig_atomic_t sync_signal;

static void on_sync_signal(int signo)
{
    sync_signal = signo;
}

static void sync_signals(int on)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on ? on_sync_signal : SIG_DFL;
    sa.sa_flags = on ? SA_RESETHAND : 0;
    for (size_t i = 0; i < DS_NETSYNC_NSTOP_SIGNALS; i++)
        sigaction(ds_netsync_stop_signals[i], &sa, NULL);
}

/* The exit status of a sync stopped by a signal: 128 + its number, as a
 * shell reports a process that signal ended; 0 when none did. */
static int signal_status(const msgpack_object *job)
{
    size_t l;
    const char *by = cli_str(cli_get(job, "stopped_by"), &l);
    for (size_t i = 0; by && i < DS_NETSYNC_NSTOP_SIGNALS; i++) {
        const char *name = ds_netsync_signal_name(ds_netsync_stop_signals[i]);
        if (l == strlen(name) && memcmp(by, name, l) == 0)
            return 128 + ds_netsync_stop_signals[i];
    }
    return 0;
}

static int sub_sync(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, A_FULL, &o, 0, 1, "");
    if (r != CLI_CONTINUE)
        return r;
    cli_params ps = { .n = 0 };
    if (argc - optind == 1)
        cli_param_str(&ps, "id", argv[optind]);
    if (o.full)
        cli_param_uint(&ps, "full", 1);
    int tty = !c->json && isatty(STDERR_FILENO);
    if (tty)
        ds_netsync_set_progress(on_progress, NULL);   /* in-process runs */
    cli_reply rep;
    int rc = cli_call(c, "peer_sync", &ps, &rep);
    ds_netsync_set_progress(NULL, NULL);
    if (rc != CLI_OK) {
        progress_clear(tty);
        cli_reply_free(&rep);
        return rc;
    }
    /* Through the daemon the job runs there: poll it until it is done.
     * Every step of a job is bounded by its own timeouts; the poll also
     * gives up if nothing moves for DS_SYNC_DEFAULT_TIMEOUT_MS * 8. */
    uint64_t job = cli_u64(cli_get(rep.root, "job"));
    uint64_t instance = cli_u64(cli_get(rep.root, "instance"));
    int waiting;
    uint64_t mark = job_mark(rep.root, &waiting);
    int64_t moved = mono_ms();
    int64_t stall_ms = 8 * 15000;
    const char *env = getenv("DS_SYNC_STALL_MS");   /* tests shorten it */
    if (env && atol(env) > 0)
        stall_ms = atol(env);
    sync_signal = 0;
    if (!cli_bool(cli_get(rep.root, "done")))
        sync_signals(1);
    int cancelled = 0;
    while (!cli_bool(cli_get(rep.root, "done"))) {
        if (tty)
            progress_from_reply(rep.root);
        struct timespec ts = { 0, 200 * 1000000L };
        if (!sync_signal)
            nanosleep(&ts, NULL);     /* a signal cuts it short */
        const char *op = "peer_sync_status";
        cli_params q = { .n = 0 };
        cli_param_uint(&q, "job", job);
        if (instance)   /* a restarted daemon has its own job numbers */
            cli_param_uint(&q, "instance", instance);
        if (sync_signal && !cancelled) {
            op = "peer_sync_cancel";
            cli_param_str(&q, "cause", ds_netsync_signal_name(sync_signal));
            cancelled = sync_signal;
        }
        cli_reply_free(&rep);
        /* A daemon being stopped may drop the request: ask again (in
         * process once it is gone, which says the job was interrupted). */
        rc = cli_call_ex(c, op, &q, &rep, 1);
        for (int i = 0; rc != CLI_OK && !rep.root && i < 10; i++) {
            nanosleep(&ts, NULL);
            cli_reply_free(&rep);
            rc = cli_call_ex(c, op, &q, &rep, 1);
        }
        if (rc != CLI_OK) {
            sync_signals(0);
            progress_clear(tty);
            if (rep.root)
                cli_print_reply_error(&rep);
            else
                rc = cli_fail("the daemon stopped answering about sync job %llu; see %s/%s",
                              (unsigned long long)job, c->ctx.home, "daemon.log");
            cli_reply_free(&rep);
            return rc;
        }
        uint64_t m = job_mark(rep.root, &waiting);
        if (m != mark || waiting) {
            mark = m;
            moved = mono_ms();
        } else if (mono_ms() - moved > stall_ms) {
            sync_signals(0);
            progress_clear(tty);
            cli_reply_free(&rep);
            return cli_fail("the daemon's sync job %llu made no progress for %g s; see "
                            "the daemon log", (unsigned long long)job,
                            (double)stall_ms / 1000.0);
        }
    }
    sync_signals(0);
    progress_clear(tty);
    /* Stopped by a signal (ours, or the in-process sync's): after the
     * results, the status says so. */
    int sigstatus = signal_status(rep.root);
    if (cancelled && !sigstatus)   /* the job had ended before the cancel */
        sigstatus = 128 + cancelled;
    /* A peer skipped by a sync of every peer (it has no address) is not
     * a failure; the request itself fails when no peer has one. */
    const msgpack_object *arr = cli_get(rep.root, "peers");
    int failed = 0;
    for (uint32_t i = 0; i < cli_len(arr); i++) {
        size_t sl;
        const char *st = cli_str(cli_get(cli_at(arr, i), "state"), &sl);
        if (!(sl == 4 && memcmp(st, "done", 4) == 0) &&
            !(sl == 7 && memcmp(st, "skipped", 7) == 0))
            failed++;
    }
    if (c->json) {
        rc = json_reply(rep.root);
        cli_reply_free(&rep);
        if (rc == CLI_OK && sigstatus)
            return sigstatus;
        return rc == CLI_OK && failed ? CLI_FAIL : rc;
    }
    for (uint32_t i = 0; i < cli_len(arr); i++) {
        const msgpack_object *p = cli_at(arr, i);
        size_t sl, ll, pl, el, cl;
        const char *st = cli_str(cli_get(p, "state"), &sl);
        const char *label = cli_str(cli_get(p, "label"), &ll);
        const char *path = cli_str(cli_get(p, "path"), &pl);
        if (sl == 4 && memcmp(st, "done", 4) == 0) {
            uint64_t got = cli_u64(cli_get(p, "nodes_received"));
            uint64_t fresh = cli_u64(cli_get(p, "nodes_new"));
            printf("Syncing with %.*s... %llu node%s received", (int)ll, label,
                   (unsigned long long)got, got == 1 ? "" : "s");
            if (fresh != got)
                printf(" (%llu new)", (unsigned long long)fresh);
            printf(".\n");
            if (pl == 5 && memcmp(path, "relay", 5) == 0)
                printf("Warning: %.*s was reached only through a relay, not directly.\n",
                       (int)ll, label);
        } else if (sl == 7 && memcmp(st, "skipped", 7) == 0) {
            size_t rl;
            const char *why = cli_str(cli_get(p, "reason"), &rl);
            fflush(stdout);
            fprintf(stderr, "Skipping %.*s: %.*s\n", (int)ll, label, (int)rl, why);
        } else {
            const char *e = cli_str(cli_get(p, "error"), &el);
            const char *code = cli_str(cli_get(p, "code"), &cl);
            int stopped = cl == 11 && memcmp(code, "interrupted", 11) == 0;
            printf("Syncing with %.*s... %s.\n", (int)ll, label, stopped ? "interrupted" : "failed");
            fflush(stdout);
            fprintf(stderr, "ds: %.*s: %.*s\n", (int)ll, label, (int)el, e);
            if (cl == 13 && memcmp(code, "NotAuthorized", 13) == 0)
                fprintf(stderr, "%.*s has not allowed this node to pull; the command above is "
                                "for %.*s to run.\n",
                        (int)ll, label, (int)ll, label);
        }
    }
    cli_reply_free(&rep);
    if (sigstatus)
        return sigstatus;
    return failed ? CLI_FAIL : CLI_OK;
}

/* ---- exchange ----------------------------------------------------------- */

static int sub_export(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, A_FULL, &o, 1, 1, "FILE to write the export to");
    if (r != CLI_CONTINUE)
        return r;
    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "file", argv[optind]);
    if (o.full)
        cli_param_uint(&ps, "full", 1);
    cli_reply rep;
    int rc = cli_call(c, "peer_export", &ps, &rep);
    if (rc == CLI_OK) {
        const msgpack_object *R = rep.root;
        uint32_t nshared = cli_len(cli_get(R, "shared"));
        if (nshared == 0)
            fprintf(stderr, "ds: warning: nothing is shared, so the export holds no nodes.\n"
                            "Share a project with: ds peer share PATH\n");
        if (c->json) {
            rc = json_reply(R);
        } else {
            size_t fl;
            const char *f = cli_str(cli_get(R, "file"), &fl);
            uint64_t n = cli_u64(cli_get(R, "nodes"));
            char size[32];
            cli_human_size(cli_u64(cli_get(R, "bytes")), size);
            int full = cli_bool(cli_get(R, "full"));
            printf("Exported %llu %snode%s from %u shared project%s to %.*s (%s, signed)\n",
                   (unsigned long long)n, full ? "" : "new ", n == 1 ? "" : "s", nshared,
                   nshared == 1 ? "" : "s", (int)fl, f, size);
            if (!full)
                printf("Only nodes added since the last export; use --full for all of them.\n");
        }
    }
    cli_reply_free(&rep);
    return rc;
}

static void print_import(const msgpack_object *R)
{
    size_t ll;
    const char *label = cli_str(cli_get(R, "label"), &ll);
    if (cli_bool(cli_get(R, "added_peer")))
        printf("Added peer '%.*s'\n", (int)ll, label);
    uint64_t n = cli_u64(cli_get(R, "nodes")), ins = cli_u64(cli_get(R, "inserted"));
    printf("Imported from %.*s: %llu node%s, %llu new (replica holds %llu)\n", (int)ll,
           label, (unsigned long long)n, n == 1 ? "" : "s", (unsigned long long)ins,
           (unsigned long long)cli_u64(cli_get(R, "replica_nodes")));
    if (!cli_bool(cli_get(R, "cursor_advanced")))
        printf("This file continues an export this replica has not seen: its nodes "
               "were kept, but the next sync from %.*s will be a full one.\n",
               (int)ll, label);
}

static int sub_import(cli *c, const sub *s, int argc, char **argv)
{
    popts o;
    int r = parse(c, s, argc, argv, A_ADD | A_NAME, &o, 1, 1, "FILE written by ds peer export");
    if (r != CLI_CONTINUE)
        return r;
    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "file", argv[optind]);
    if (o.add)
        cli_param_uint(&ps, "add", 1);
    cli_param_str(&ps, "name", o.name);
    return call_print(c, "peer_import", &ps, print_import);
}

/* ---- JSON --------------------------------------------------------------- */

static json_t *to_json(const msgpack_object *o)
{
    if (!o)
        return json_null();
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer((json_int_t)cli_i64(o));
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++)
            json_array_append_new(a, to_json(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR)
                continue;
            char *k = strndup(kv->key.via.str.ptr, kv->key.via.str.size);
            if (k)
                json_object_set_new(m, k, to_json(&kv->val));
            free(k);
        }
        return m;
    }
    default: return json_null();
    }
}

/* The reply map as JSON, as is (the handlers' replies are the format). */
static int json_reply(const msgpack_object *root)
{
    return cli_json_print(to_json(root));
}

/* ---- dispatch ----------------------------------------------------------- */

static const sub subs[] = {
    { "init", sub_init, "create this node's identity (identity.key)",
      "Usage: ds peer init [--force]\n"
      "\n"
      "Generate this node's Ed25519 identity in identity.key (mode 0600) and\n"
      "print its NodeId, the 64-hex-digit public key peers use to know you.\n"
      "An existing identity is kept unless --force is given.  When the daemon\n"
      "runs and should now accept syncs but cannot (its listen address is\n"
      "taken), the identity is still saved and a warning on stderr says why\n"
      "(exit status 0).\n"
      "\n"
      "Options:\n"
      "      --force          replace an existing identity (peers must re-add you)\n"
      "  -j, --json           print {node_id, path, replaced, warning}\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n" },
    { "id", sub_id, "print this node's NodeId",
      "Usage: ds peer id\n"
      "\n"
      "Print this node's NodeId (64 lowercase hex digits), to give to peers.\n"
      "\n"
      "Options:\n"
      "  -j, --json           print {node_id}\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n" },
    { "ticket", sub_ticket, "print this node's NodeId and addresses on one line",
      "Usage: ds peer ticket\n"
      "\n"
      "Print a ticket: one line holding this node's NodeId and the addresses\n"
      "its daemon accepts syncs on, ds1:<NodeId>@<host:port>,<host:port>.\n"
      "Give it to a peer, who adds you with: ds peer add TICKET --name NAME.\n"
      "A daemon listening on all addresses (0.0.0.0 or [::]) is listed with\n"
      "this machine's interface addresses.  When nothing accepts syncs now,\n"
      "the ticket holds the addresses the daemon would listen on (its\n"
      "--listen addresses, sync.listen in config.json, or 0.0.0.0:7979) and a\n"
      "note on stderr says why: the daemon is not running, no peer has\n"
      "publish on, or the address cannot be bound (tried again now).  A\n"
      "config.json that cannot be read is an error.\n"
      "\n"
      "Options:\n"
      "  -j, --json           print {node_id, ticket, addrs, listening, why}\n"
      "                       (why: null while listening)\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n" },
    { "share", sub_share, "publish a project's nodes to peers",
      "Usage: ds peer share PATH\n"
      "\n"
      "Add the project directory PATH to share.json.  The path is made\n"
      "canonical (absolute, symlinks resolved): sharing a symlink shares its\n"
      "target.  Nodes whose project is PATH or lies beneath it are published;\n"
      "a sibling such as PATH-x is not.  Everything else stays private.\n"
      "Sharing / (every project) warns on stderr (--json: warning, null when\n"
      "there is none).  A PATH that does not exist is an error (exit status 1).\n"
      "\n"
      "Options:\n"
      "  -j, --json           print {path, added, warning}\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Example:\n"
      "  ds peer share ~/oss/rust-patterns\n" },
    { "unshare", sub_unshare, "stop publishing a project",
      "Usage: ds peer unshare PATH\n"
      "\n"
      "Remove PATH from share.json.  It is an error if it is not listed\n"
      "there; when PATH lies inside a shared project, the error says so (its\n"
      "nodes are shared through that project).  When PATH is removed but still\n"
      "lies inside another shared project, a warning on stderr says so (exit\n"
      "status 0; --json: warning, null when there is none).\n"
      "Nodes peers already synced or imported stay in their replicas.\n"
      "\n"
      "Options:\n"
      "  -j, --json           print {path, warning}\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n" },
    { "shared", sub_shared, "list shared projects",
      "Usage: ds peer shared\n"
      "\n"
      "List the shared project directories, one per line.\n"
      "\n"
      "Options:\n"
      "  -j, --json           print {shared_projects: [path]}\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n" },
    { "add", sub_add, "add a peer, or change its flags",
      "Usage: ds peer add NODE_ID|TICKET [--name NAME] [--addr HOST:PORT]... [--publish]\n"
      "                   [--no-subscribe]\n"
      "\n"
      "Add a peer to peers.json.  A new peer is subscribed (we keep a replica\n"
      "of what it shares) and not published to (it may not pull from us).\n"
      "Adding a known peer changes only the flags given.  Names are unique;\n"
      "queries label the peer's hits with its name.  A known peer may be given\n"
      "by name, NodeId, or a unique NodeId prefix of 8 or more hex digits (the\n"
      "label ds peer list shows for an unnamed peer).  When the daemon runs\n"
      "and --publish makes it listen but the address cannot be bound, the\n"
      "change is still saved and a warning on stderr says why (exit status 0;\n"
      "--json: warning, null when there is none).\n"
      "\n"
      "Options:\n"
      "      --name NAME      name the peer (letters, digits, - _ .; not starting\n"
      "                       with '-', not . or .., not local)\n"
      "      --publish        let the peer pull our shared projects\n"
      "      --no-publish     stop letting it pull from us\n"
      "      --subscribe      search (and sync) the peer's nodes (default)\n"
      "      --no-subscribe   leave its replica out of searches and syncs\n"
      "      --addr HOST:PORT an address the peer accepts syncs on (repeatable,\n"
      "                       one address each); a TICKET carries them.  A\n"
      "                       peer keeps 8: adding more drops the oldest, with\n"
      "                       a warning (--json: dropped_addrs)\n"
      "  -j, --json           print the peer as JSON\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Addresses (--addr, and a TICKET's):\n"
      "  HOST:PORT     HOST is an IPv4 address (192.0.2.7) or a host name\n"
      "                (letters, digits, - . _), looked up at each sync\n"
      "  [IPv6]:PORT   an IPv6 address in brackets ([2001:db8::7]:7979)\n"
      "  PORT is required, 1 to 65535.  Refused: an IPv6 address without\n"
      "  brackets; an IPv4-mapped IPv6 address ([::ffff:192.0.2.7]:7979: write\n"
      "  192.0.2.7:7979); a zone id ([fe80::1%eth0]:7979); a ','; more than\n"
      "  299 characters.\n"
      "\n"
      "Examples:\n"
      "  ds peer add 5f0c…e1 --name alice\n"
      "  ds peer add alice --publish\n"
      "  ds peer add ds1:5f0c…e1@192.0.2.7:7979 --name alice\n" },
    { "remove", sub_remove, "forget a peer and delete its replica",
      "Usage: ds peer remove NODE_ID|NAME\n"
      "\n"
      "Remove the peer from peers.json and delete its replica (peers/<id>/).\n"
      "The peer is given by name, NodeId or a unique prefix of 8+ hex digits.\n"
      "\n"
      "Options:\n"
      "  -j, --json           print {node_id, name, label, replica_deleted}\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n" },
    { "list", sub_list, "show peers with their flags and sync status",
      "Usage: ds peer list\n"
      "\n"
      "Show every peer: name, NodeId, subscribe and publish flags, the nodes\n"
      "in its replica and the time of the last sync or import.  The name\n"
      "column is as wide as the longest name, up to 40 columns; a longer name\n"
      "is cut to 39 characters and \"…\" (--json has every name whole).\n"
      "\n"
      "Options:\n"
      "  -j, --json           print {node_id, peers: [peer]}\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n" },
    { "sync", sub_sync, "pull new shared nodes from peers over the network",
      "Usage: ds peer sync [NODE_ID|NAME] [--full]\n"
      "\n"
      "Pull the nodes our peers share into their replicas (peers/<id>/), over\n"
      "QUIC: every subscribed peer in turn, or only the one given.  Only nodes\n"
      "added since the last sync are sent; --full asks for everything again\n"
      "(nodes already here are kept, never duplicated).  Each page of nodes is\n"
      "written together with the new cursor, so an interrupted sync resumes\n"
      "where it stopped.  The peer's addresses come from ds peer add --addr or\n"
      "its ticket; each is tried in turn, within sync.connect_timeout_ms\n"
      "(10 s) for all of them.  Without NODE_ID|NAME, a subscribed peer that\n"
      "has no address (one added only for ds peer import) is skipped, with a\n"
      "line on stderr (--json: state \"skipped\" and a reason); it is an error\n"
      "only when no subscribed peer has an address.  When the daemon runs the\n"
      "sync runs there (this command follows it; if the daemon stops, it says\n"
      "the sync was interrupted, and the next one continues from there; a sync\n"
      "of a peer another sync is busy with waits for it); otherwise it runs in\n"
      "this process.  On a terminal a progress line shows nodes, bytes and rate.\n"
      "Ctrl-C (SIGINT, also SIGTERM or SIGHUP) stops the sync, in the daemon\n"
      "too: the batch being written goes in, the peer is told, and the command\n"
      "says \"interrupted\" and how many nodes were kept; the next sync continues\n"
      "from there.  A second Ctrl-C ends the command at once.\n"
      "\n"
      "Options:\n"
      "      --full           re-fetch everything (reset the cursor)\n"
      "  -j, --json           print {job, instance, done, stopped_by, peers: [...]}\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Exit status: 0 when every peer with an address synced, 1 when one\n"
      "failed or none has an address, 128 + the signal's number when a signal\n"
      "stopped it (130 for Ctrl-C).\n"
      "\n"
      "Example:\n"
      "  $ ds peer sync\n"
      "  Syncing with alice... 847 nodes received.\n"
      "  Skipping bob: no address known (add one with ds peer add bob --addr HOST:PORT)\n" },
    { "export", sub_export, "write shared nodes to a signed file",
      "Usage: ds peer export [--full] FILE\n"
      "\n"
      "Write the nodes of shared projects (only those) to FILE in the sync\n"
      "wire format, signed with this node's identity, for a peer to bring in\n"
      "with ds peer import.  Without --full only nodes added since the last\n"
      "export are written; a change of the shared projects makes it full.\n"
      "\n"
      "Options:\n"
      "      --full           every shared node, not only the new ones\n"
      "  -j, --json           print the export's summary as JSON\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Example:\n"
      "  ds peer export --full /media/usb/alice.dsx\n" },
    { "import", sub_import, "bring a peer's export file into its replica",
      "Usage: ds peer import [--add [--name NAME]] FILE\n"
      "\n"
      "Verify FILE completely (structure and signature) and, if it is intact\n"
      "and signed by a known peer, add its nodes to that peer's replica.  A\n"
      "node already there is kept as it is.  Nothing is written when the\n"
      "file is damaged, modified or from an unknown node.\n"
      "\n"
      "Options:\n"
      "      --add            trust an unknown signer: add it as a peer\n"
      "      --name NAME      the name to give it (with --add)\n"
      "  -j, --json           print the import's summary as JSON\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n" },
};
#define NSUBS (sizeof subs / sizeof subs[0])

int cmd_peer(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    /* Options before the subcommand: only the common ones. */
    static const struct option lo[] = { CLI_OPT_JSON, CLI_OPT_FORMAT, CLI_OPT_HOME, CLI_OPT_HELP,
                                        CLI_OPT_END };
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "+:jf:h", lo, NULL)) != -1) {
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    if (optind >= argc)
        return cli_usage_error(cmd, "missing subcommand (init, id, ticket, share, unshare, shared, "
                                    "add, remove, list, sync, export, import)");
    const char *name = argv[optind];
    for (size_t i = 0; i < NSUBS; i++)
        if (strcmp(subs[i].name, name) == 0)
            return subs[i].run(c, &subs[i], argc - optind, argv + optind);
    return cli_usage_error(cmd, "unknown subcommand '%s'", name);
}
