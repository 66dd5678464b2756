/*
 * cmd_note.c - "ds note TEXT": save a note and print its id on the last
 * line, so that scripts can take it with tail -n1.
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

#define MAX_TAGS 64

int cmd_note(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    static const struct option lo[] = {
        { "tag", required_argument, NULL, 't' },
        { "namespace", required_argument, NULL, 'n' },
        { "project", required_argument, NULL, 'p' },
        CLI_OPT_JSON, CLI_OPT_HOME, CLI_OPT_HELP, CLI_OPT_END,
    };
    const char *ns = NULL, *project = NULL;
    char *tags[MAX_TAGS];
    size_t ntags = 0;
    int opt;
    cli_getopt_reset();
    /* -s is the original tool's spelling of --tag. */
    while ((opt = getopt_long(argc, argv, ":t:s:n:p:jh", lo, NULL)) != -1) {
        switch (opt) {
        case 't':
        case 's':
            if (ntags == MAX_TAGS)
                return cli_usage_error(cmd, "too many tags (at most %d)", MAX_TAGS);
            if (!optarg[0])
                return cli_usage_error(cmd, "empty tag: --tag needs a word");
            tags[ntags++] = optarg;
            break;
        case 'n':
            ns = optarg;
            break;
        case 'p':
            if (!optarg[0])
                return cli_usage_error(cmd, "empty project: --project needs a directory");
            project = optarg;
            break;
        default: {
            int r = cli_common_opt(c, cmd, opt, argv, lo);
            if (r != CLI_CONTINUE)
                return r;
        }
        }
    }
    if (argc - optind == 0)
        return cli_usage_error(cmd, "missing TEXT: give the note to remember");
    char *text = cli_join_args(argc - optind, argv + optind);
    if (!text)
        return cli_fail("out of memory");

    cli_params ps = { .n = 0 };
    cli_param_str(&ps, "text", text);
    cli_param_str(&ps, "namespace", ns);
    cli_param_str(&ps, "project", project);
    if (ntags)
        cli_param_strv(&ps, "tags", tags, ntags);
    cli_reply r;
    int rc = cli_call(c, "note", &ps, &r);
    free(text);
    if (rc) {
        cli_reply_free(&r);
        return rc;
    }
    if (c->json) {
        json_t *o = json_object();
        if (o) {
            char iso[32];
            ds_ops_iso8601(cli_i64(cli_get(r.root, "timestamp")), 1, iso);
            json_object_set_new(o, "id", cli_json_str(cli_get(r.root, "id")));
            json_object_set_new(o, "source", cli_json_str(cli_get(r.root, "source")));
            json_object_set_new(o, "project", cli_json_str(cli_get(r.root, "project")));
            json_object_set_new(o, "namespace", cli_json_str(cli_get(r.root, "namespace")));
            json_object_set_new(o, "timestamp", json_string(iso));
        }
        cli_reply_free(&r);
        return cli_json_print(o);
    }
    size_t il, nl, pl;
    const char *id = cli_str(cli_get(r.root, "id"), &il);
    const char *nsr = cli_str(cli_get(r.root, "namespace"), &nl);
    const char *proj = cli_str(cli_get(r.root, "project"), &pl);
    printf("Saved note in namespace %.*s, project %.*s\n", (int)nl, nsr, (int)pl,
           pl ? proj : "(none)");
    printf("%.*s\n", (int)il, id);
    cli_reply_free(&r);
    return CLI_OK;
}
