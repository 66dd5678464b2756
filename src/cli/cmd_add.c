/*
 * cmd_add.c - "ds add FILE...": one "add" request per file, so results
 * appear as they happen and a progress line can be shown on a terminal;
 * the request itself accepts a list, for clients that prefer one call.
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void progress(int on, size_t i, size_t n, const char *path)
{
    if (!on)
        return;
    if (path)
        fprintf(stderr, "\r\033[K[%zu/%zu] %s", i + 1, n, path);
    else
        fputs("\r\033[K", stderr);
    fflush(stderr);
}

int cmd_add(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    static const struct option lo[] = {
        { "namespace", required_argument, NULL, 'n' },
        CLI_OPT_JSON, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    const char *ns = NULL;
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":n:jh", lo, NULL)) != -1) {
        if (opt == 'n') {
            ns = optarg;
            continue;
        }
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    size_t nfiles = (size_t)(argc - optind);
    if (nfiles == 0)
        return cli_usage_error(cmd, "missing FILE: give one or more text files to add");
    char **files = argv + optind;

    int show_progress = nfiles > 1 && isatty(STDERR_FILENO);
    json_t *out = c->json ? json_array() : NULL;
    if (c->json && !out)
        return cli_fail("out of memory");
    size_t added = 0, updated = 0, unchanged = 0, failed = 0, empty = 0;
    int status = CLI_OK;
    for (size_t i = 0; i < nfiles; i++) {
        progress(show_progress, i, nfiles, files[i]);
        cli_params ps = { .n = 0 };
        cli_param_strv(&ps, "files", &files[i], 1);
        cli_param_str(&ps, "namespace", ns);
        cli_reply r;
        int rc = cli_call(c, "add", &ps, &r);
        if (rc) {
            /* The whole request failed (bad namespace, store unusable):
             * the same would happen to every other file. */
            progress(show_progress, 0, 0, NULL);
            cli_reply_free(&r);
            json_decref(out);
            return rc;
        }
        const msgpack_object *fr = cli_at(cli_get(r.root, "files"), 0);
        size_t stl, pl;
        const char *st = cli_str(cli_get(fr, "status"), &stl);
        const char *path = cli_str(cli_get(fr, "path"), &pl);
        unsigned long long nodes = cli_u64(cli_get(fr, "nodes"));
        unsigned long long replaced = cli_u64(cli_get(fr, "replaced"));
        progress(show_progress, 0, 0, NULL);
        if (stl == 5 && memcmp(st, "error", 5) == 0) {
            const msgpack_object *err = cli_get(fr, "error");
            size_t ml, hl;
            const char *msg = cli_str(cli_get(err, "message"), &ml);
            const char *hint = cli_str(cli_get(err, "hint"), &hl);
            fprintf(stderr, "ds: %.*s\n", (int)ml, msg);
            if (hl)
                fprintf(stderr, "%.*s\n", (int)hl, hint);
            failed++;
            status = CLI_FAIL;
        } else if (!c->json) {
            if (stl == 5 && memcmp(st, "added", 5) == 0)
                printf("added %.*s (%llu node%s)\n", (int)pl, path, nodes, nodes == 1 ? "" : "s");
            else if (stl == 7 && memcmp(st, "updated", 7) == 0)
                printf("updated %.*s (%llu node%s, replaced %llu)\n", (int)pl, path, nodes,
                       nodes == 1 ? "" : "s", replaced);
            else if (stl == 9 && memcmp(st, "unchanged", 9) == 0)
                printf("%.*s: unchanged, skipped\n", (int)pl, path);
            else
                printf("%.*s: empty, nothing to add\n", (int)pl, path);
        }
        if (stl == 5 && memcmp(st, "added", 5) == 0)
            added++;
        else if (stl == 7 && memcmp(st, "updated", 7) == 0)
            updated++;
        else if (stl == 9 && memcmp(st, "unchanged", 9) == 0)
            unchanged++;
        else if (stl == 5 && memcmp(st, "empty", 5) == 0)
            empty++;
        if (out) {
            json_t *o = json_object();
            if (o) {
                json_object_set_new(o, "path", cli_json_str(cli_get(fr, "path")));
                json_object_set_new(o, "source", cli_json_str(cli_get(fr, "source")));
                json_object_set_new(o, "status", cli_json_str(cli_get(fr, "status")));
                json_object_set_new(o, "nodes", json_integer((json_int_t)nodes));
                json_object_set_new(o, "replaced", json_integer((json_int_t)replaced));
                const msgpack_object *err = cli_get(fr, "error");
                if (err)
                    json_object_set_new(o, "error", cli_json_str(cli_get(err, "message")));
            }
            if (!o || json_array_append_new(out, o) != 0) {
                cli_reply_free(&r);
                json_decref(out);
                return cli_fail("out of memory");
            }
        }
        cli_reply_free(&r);
    }
    if (out) {
        int rc = cli_json_print(out);
        return status ? status : rc;
    }
    if (nfiles > 1) {
        printf("%zu files: %zu added, %zu updated, %zu unchanged", nfiles, added, updated,
               unchanged);
        if (empty)
            printf(", %zu empty", empty);
        printf(", %zu failed\n", failed);
    }
    return status;
}
