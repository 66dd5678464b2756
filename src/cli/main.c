/*
 * main.c - entry point of the ds command: global options (--home, --json,
 * --help, --version), then dispatch to the command named on the command
 * line.  Everything else lives in src/cli (one file per command group)
 * and the request handlers in src/daemon/ops*.c.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/mem.h"

#ifndef DS_VERSION
#define DS_VERSION "0.0.0"
#endif

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        CLI_OPT_HELP, CLI_OPT_HOME, CLI_OPT_JSON,
        { "version", no_argument, NULL, 'V' },
        CLI_OPT_END,
    };
    cli c;
    memset(&c, 0, sizeof c);
    ds_mem_tune();

    if (argc < 2) {
        cli_print_usage(stderr, 0);
        return CLI_USAGE;
    }
    int opt;
    cli_getopt_reset();
    /* '+': stop at the command name; its own options are parsed later. */
    while ((opt = getopt_long(argc, argv, "+:hjV", lo, NULL)) != -1) {
        if (opt == 'V') {
            printf("ds %s\n", DS_VERSION);
            return CLI_OK;
        }
        int r = cli_common_opt(&c, NULL, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    if (optind >= argc) {
        cli_print_usage(stderr, 0);
        return CLI_USAGE;
    }
    const cli_cmd *cmd = cli_find_cmd(argv[optind]);
    if (!cmd)
        return cli_usage_error(NULL, "unknown command '%s'", argv[optind]);
    int rc = cmd->run(&c, cmd, argc - optind, argv + optind);
    if (fflush(stdout) != 0 && rc == CLI_OK)
        rc = cli_fail("cannot write the output");
    if (c.ctx_ready)
        ds_ctx_free(&c.ctx);
    free(c.cwd);
    return rc;
}
