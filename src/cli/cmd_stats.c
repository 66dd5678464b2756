/*
 * cmd_stats.c - "ds stats" (what the store holds) and "ds reset" (delete
 * it all, after confirmation on a terminal or with --yes).
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cmd_stats(cli *c, const cli_cmd *cmd, int argc, char **argv)
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
    int rc = cli_call(c, "stats", NULL, &rep);
    if (rc) {
        cli_reply_free(&rep);
        return rc;
    }
    const msgpack_object *s = rep.root, *bt = cli_get(s, "by_type");
    uint64_t nodes = cli_u64(cli_get(s, "nodes"));
    uint64_t bytes = cli_u64(cli_get(s, "file_bytes"));
    /* false: a home with peers' replicas but nothing stored locally yet
     * (a daemon older than the key always had a local store to report) */
    const msgpack_object *ls = cli_get(s, "local_store");
    int local = !ls || cli_bool(ls);
    if (c->json) {
        json_t *o = json_object(), *t = json_object();
        if (o && t) {
            json_object_set_new(o, "home", cli_json_str(cli_get(s, "home")));
            json_object_set_new(o, "local_store", json_boolean(local));
            json_object_set_new(o, "data_bytes", json_integer((json_int_t)bytes));
            json_object_set_new(o, "nodes", json_integer((json_int_t)nodes));
            for (uint32_t i = 0; bt && bt->type == MSGPACK_OBJECT_MAP && i < bt->via.map.size;
                 i++) {
                const msgpack_object_kv *kv = &bt->via.map.ptr[i];
                if (kv->key.type == MSGPACK_OBJECT_STR) {
                    char k[32];
                    snprintf(k, sizeof k, "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
                    json_object_set_new(t, k, json_integer((json_int_t)cli_u64(&kv->val)));
                }
            }
            json_object_set(o, "nodes_by_type", t);
            json_object_set_new(o, "index_terms",
                                json_integer((json_int_t)cli_u64(cli_get(s, "term_count"))));
            json_object_set_new(o, "last_seq",
                                json_integer((json_int_t)cli_u64(cli_get(s, "last_seq"))));
            json_object_set_new(o, "epoch", cli_json_str(cli_get(s, "epoch")));
            json_object_set_new(o, "files",
                                json_integer((json_int_t)cli_u64(cli_get(s, "files"))));
            json_object_set_new(o, "schema",
                                local ? json_integer((json_int_t)cli_u64(cli_get(s, "schema")))
                                      : json_null());
            json_t *pa = json_array();
            const msgpack_object *peers = cli_get(s, "peers");
            for (uint32_t i = 0; pa && i < cli_len(peers); i++) {
                const msgpack_object *p = cli_at(peers, i);
                const msgpack_object *err = cli_get(p, "replica_error");
                size_t xl;
                cli_str(err, &xl);
                /* nodes is null when the replica cannot be read (replica_error says why). */
                json_t *pn = xl ? json_null()
                                : json_integer((json_int_t)cli_u64(cli_get(p, "nodes")));
                json_array_append_new(
                    pa, json_pack("{s:o, s:o, s:o, s:o, s:o}", "node_id",
                                  cli_json_str(cli_get(p, "node_id")), "name",
                                  cli_json_str(cli_get(p, "label")), "nodes", pn, "last_sync",
                                  cli_json_str(cli_get(p, "last_sync")), "replica_error",
                                  cli_json_str(err)));
            }
            if (pa)
                json_object_set_new(o, "peers", pa);
        } else {
            json_decref(o);
            o = NULL;
        }
        json_decref(t);
        cli_reply_free(&rep);
        return cli_json_print(o);
    }
    size_t hl, el;
    const char *home = cli_str(cli_get(s, "home"), &hl);
    const char *epoch = cli_str(cli_get(s, "epoch"), &el);
    char size[32];
    cli_human_size(bytes, size);
    printf("Home:           %.*s\n", (int)hl, home);
    if (!local) {
        printf("Local store:    none yet (ds note or ds add creates it)\n");
        goto peers;
    }
    printf("Data size:      %s\n", size);
    printf("Nodes:          %llu\n", (unsigned long long)nodes);
    for (uint32_t i = 0; bt && bt->type == MSGPACK_OBJECT_MAP && i < bt->via.map.size; i++) {
        const msgpack_object_kv *kv = &bt->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR)
            printf("  %-13.*s %llu\n", (int)kv->key.via.str.size, kv->key.via.str.ptr,
                   (unsigned long long)cli_u64(&kv->val));
    }
    printf("Added files:    %llu\n", (unsigned long long)cli_u64(cli_get(s, "files")));
    printf("Index terms:    %llu\n", (unsigned long long)cli_u64(cli_get(s, "term_count")));
    printf("Last sequence:  %llu\n", (unsigned long long)cli_u64(cli_get(s, "last_seq")));
    printf("Store epoch:    %.*s\n", (int)el, epoch);
peers:;
    const msgpack_object *peers = cli_get(s, "peers");
    if (cli_len(peers))
        printf("Peers:\n");
    for (uint32_t i = 0; i < cli_len(peers); i++) {
        const msgpack_object *p = cli_at(peers, i);
        size_t ll, wl;
        const char *label = cli_str(cli_get(p, "label"), &ll);
        const char *when = cli_str(cli_get(p, "last_sync"), &wl);
        size_t xl;
        const char *why = cli_str(cli_get(p, "replica_error"), &xl);
        uint64_t pn = cli_u64(cli_get(p, "nodes"));
        if (xl)   /* damaged: the count is unknown */
            printf("  %-13.*s ? nodes (replica unreadable: %.*s), last sync %.*s\n", (int)ll,
                   label, (int)xl, why, wl ? (int)wl : 5, wl ? when : "never");
        else
            printf("  %-13.*s %llu node%s, last sync %.*s\n", (int)ll, label,
                   (unsigned long long)pn, pn == 1 ? "" : "s", wl ? (int)wl : 5,
                   wl ? when : "never");
    }
    cli_reply_free(&rep);
    return CLI_OK;
}

/* Asks on the terminal; 1 when the answer is yes. */
static int confirm(uint64_t nodes, const char *home)
{
    fprintf(stderr, "Delete all %llu node%s in %s? [y/N] ", (unsigned long long)nodes,
            nodes == 1 ? "" : "s", home);
    fflush(stderr);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return 0;
    char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    return (p[0] == 'y' || p[0] == 'Y') &&
           (p[1] == '\n' || p[1] == '\0' || strncmp(p + 1, "es", 2) == 0 ||
            strncmp(p + 1, "ES", 2) == 0);
}

int cmd_reset(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    static const struct option lo[] = {
        { "yes", no_argument, NULL, 'y' },
        CLI_OPT_JSON, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    int opt, yes = 0;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":yjh", lo, NULL)) != -1) {
        if (opt == 'y') {
            yes = 1;
            continue;
        }
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    if (argc - optind > 0)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    cli_reply rep;
    int rc;
    if (!yes) {
        if (!isatty(STDIN_FILENO)) {
            fprintf(stderr, "ds reset: refusing to reset without confirmation: run ds reset --yes\n");
            return CLI_USAGE;
        }
        rc = cli_call_ex(c, "stats", NULL, &rep, 1);
        if (rc) {
            size_t cl;
            const char *code = cli_str(cli_get(cli_get(rep.root, "error"), "code"), &cl);
            if (cl == strlen(DS_OPS_E_NO_STORE) && memcmp(code, DS_OPS_E_NO_STORE, cl) == 0) {
                cli_reply_free(&rep);
                printf("Nothing to reset: no knowledge store at %s.\n", c->ctx.home);
                return CLI_OK;
            }
            cli_print_reply_error(&rep);
            cli_reply_free(&rep);
            return rc;
        }
        char *home = cli_strdup(cli_get(rep.root, "home"));
        uint64_t nodes = cli_u64(cli_get(rep.root, "nodes"));
        cli_reply_free(&rep);
        int ok = nodes == 0 || confirm(nodes, home ? home : "the store");
        free(home);
        if (!ok) {
            fprintf(stderr, "Nothing deleted.\n");
            return CLI_FAIL;
        }
    }
    rc = cli_call(c, "reset", NULL, &rep);
    if (rc) {
        cli_reply_free(&rep);
        return rc;
    }
    int existed = cli_bool(cli_get(rep.root, "existed"));
    uint64_t removed = cli_u64(cli_get(rep.root, "removed"));
    size_t hl;
    const char *home = cli_str(cli_get(rep.root, "home"), &hl);
    if (c->json) {
        json_t *o = json_pack("{s:b, s:I, s:o}", "existed", existed, "removed",
                              (json_int_t)removed, "epoch",
                              cli_json_str(cli_get(rep.root, "epoch")));
        cli_reply_free(&rep);
        return cli_json_print(o);
    }
    if (!existed)
        printf("Nothing to reset: no knowledge store at %.*s.\n", (int)hl, home);
    else
        printf("Deleted %llu node%s from %.*s.\n", (unsigned long long)removed,
               removed == 1 ? "" : "s", (int)hl, home);
    cli_reply_free(&rep);
    return CLI_OK;
}
