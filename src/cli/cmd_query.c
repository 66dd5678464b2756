/*
 * cmd_query.c - the reading commands over nodes: "ds query TEXT",
 * "ds show" and "ds related ID".  Each builds one request and prints the
 * returned nodes as text or as a JSON array.
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

typedef struct read_opts {
    uint64_t limit;         /* 0 = the request's default */
    const char *ns, *project;
    int local;              /* --local: the local store only (query, show) */
    const char *peer;       /* --peer NAME: that peer's replica only (query, show) */
} read_opts;

/* Parses the options of the reading commands; |filters| allows
 * --namespace and --project, and (2, for query and show) --local and
 * --peer.
 * Returns CLI_CONTINUE or an exit status. */
static int parse_read_opts(cli *c, const cli_cmd *cmd, int argc, char **argv, int filters,
                           read_opts *o)
{
    static const struct option lo_filters[] = {
        { "limit", required_argument, NULL, 'l' },
        { "namespace", required_argument, NULL, 'n' },
        { "project", required_argument, NULL, 'p' },
        CLI_OPT_JSON, CLI_OPT_FORMAT, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    static const struct option lo_plain[] = {
        { "limit", required_argument, NULL, 'l' },
        CLI_OPT_JSON, CLI_OPT_FORMAT, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    static const struct option lo_query[] = {
        { "limit", required_argument, NULL, 'l' },
        { "namespace", required_argument, NULL, 'n' },
        { "project", required_argument, NULL, 'p' },
        { "local", no_argument, NULL, 'L' },
        { "peer", required_argument, NULL, 'P' },
        CLI_OPT_JSON, CLI_OPT_FORMAT, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    const struct option *lo = filters == 2 ? lo_query : filters ? lo_filters : lo_plain;
    const char *so = filters ? ":l:n:p:jf:h" : ":l:jf:h";
    int opt;
    memset(o, 0, sizeof *o);
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, so, lo, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (cli_parse_limit(cmd, optarg, &o->limit))
                return CLI_USAGE;
            break;
        case 'n':
            if (!optarg[0])
                return cli_usage_error(cmd, "empty namespace: --namespace needs a name");
            o->ns = optarg;
            break;
        case 'p':
            if (!optarg[0])
                return cli_usage_error(cmd, "empty project: --project needs a directory");
            o->project = optarg;
            break;
        case 'L':
            o->local = 1;
            break;
        case 'P':
            if (!optarg[0])
                return cli_usage_error(cmd, "empty peer: --peer needs a peer's name or NodeId");
            o->peer = optarg;
            break;
        default: {
            int r = cli_common_opt(c, cmd, opt, argv, lo);
            if (r != CLI_CONTINUE)
                return r;
        }
        }
    }
    if (o->local && o->peer)
        return cli_usage_error(cmd, "--local and --peer exclude each other");
    return CLI_CONTINUE;
}

static void add_read_params(cli_params *ps, const read_opts *o)
{
    if (o->limit)
        cli_param_uint(ps, "limit", o->limit);
    cli_param_str(ps, "namespace", o->ns);
    cli_param_str(ps, "project", o->project);
    if (o->local)
        cli_param_uint(ps, "local", 1);
    cli_param_str(ps, "peer", o->peer);
}

/* Prints the reply's warnings (stores left out of the search) to stderr,
 * as "ds: warning: MESSAGE" and the hint: with --json too, like other
 * warnings, so that stdout stays the documented array. */
static void print_warnings(const msgpack_object *root)
{
    const msgpack_object *ws = cli_get(root, "warnings");
    for (uint32_t i = 0; i < cli_len(ws); i++) {
        size_t ml, hl;
        const char *m = cli_str(cli_get(cli_at(ws, i), "message"), &ml);
        const char *h = cli_str(cli_get(cli_at(ws, i), "hint"), &hl);
        fprintf(stderr, "ds: warning: %.*s\n", (int)ml, m);
        if (hl)
            fprintf(stderr, "%.*s\n", (int)hl, h);
    }
}

static int print_json_nodes(const msgpack_object *arr)
{
    json_t *out = json_array();
    for (uint32_t i = 0; out && i < cli_len(arr); i++) {
        json_t *o = cli_node_json(cli_at(arr, i));
        if (!o || json_array_append_new(out, o) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    return cli_json_print(out);
}

int cmd_query(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    read_opts o;
    int r = parse_read_opts(c, cmd, argc, argv, 2, &o);
    if (r != CLI_CONTINUE)
        return r;
    if (argc - optind == 0)
        return cli_usage_error(cmd, "missing TEXT: give some words to search for");
    char *text = cli_join_args(argc - optind, argv + optind);
    if (!text)
        return cli_fail("out of memory");
    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "text", text);
    add_read_params(&ps, &o);
    cli_reply rep;
    int rc = cli_call(c, "query", &ps, &rep);
    free(text);
    if (rc == CLI_OK) {
        const msgpack_object *res = cli_get(rep.root, "results");
        print_warnings(rep.root);
        if (c->json)
            rc = print_json_nodes(res);
        else if (cli_print_nodes(res, 1) == 0)
            printf("No relevant results found.\n");
    }
    cli_reply_free(&rep);
    return rc;
}

int cmd_show(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    read_opts o;
    int r = parse_read_opts(c, cmd, argc, argv, 2, &o);
    if (r != CLI_CONTINUE)
        return r;
    if (argc - optind > 0)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    cli_params ps = { .n = 0 };
    add_read_params(&ps, &o);
    cli_reply rep;
    int rc = cli_call(c, "show", &ps, &rep);
    if (rc == CLI_OK) {
        const msgpack_object *res = cli_get(rep.root, "results");
        if (c->json)
            rc = print_json_nodes(res);
        else if (cli_print_nodes(res, 0) == 0)
            printf("No nodes%s.\n", o.ns || o.project ? " match these filters" : " yet");
    }
    cli_reply_free(&rep);
    return rc;
}

int cmd_related(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    read_opts o;
    int r = parse_read_opts(c, cmd, argc, argv, 0, &o);
    if (r != CLI_CONTINUE)
        return r;
    if (argc - optind == 0)
        return cli_usage_error(cmd, "missing ID: give a node id or a unique prefix of it");
    if (argc - optind > 1)
        return cli_usage_error(cmd, "give one node id (got %d arguments)", argc - optind);
    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "id", argv[optind]);
    add_read_params(&ps, &o);
    cli_reply rep;
    int rc = cli_call(c, "related", &ps, &rep);
    if (rc == CLI_OK) {
        const msgpack_object *res = cli_get(rep.root, "results");
        print_warnings(rep.root);
        if (c->json) {
            rc = print_json_nodes(res);
        } else {
            const msgpack_object *origin = cli_get(rep.root, "origin");
            size_t il, sl;
            const char *id = cli_str(cli_get(origin, "id"), &il);
            const char *src = cli_str(cli_get(origin, "source"), &sl);
            size_t tl = 0;
            const char *store = cli_str(cli_get(origin, "store"), &tl);
            if (store && tl && !(tl == 5 && memcmp(store, "local", 5) == 0))
                printf("Related to %.*s (%.*s, from %.*s's replica):\n\n", (int)il, id, (int)sl,
                       src, (int)tl, store);
            else
                printf("Related to %.*s (%.*s):\n\n", (int)il, id, (int)sl, src);
            if (cli_print_nodes(res, 1) == 0)
                printf("No related nodes found.\n");
        }
    }
    cli_reply_free(&rep);
    return rc;
}
