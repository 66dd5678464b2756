/*
 * commands.c - the table of ds commands and their help texts, the
 * general usage text and the "help" command.  Keeping every text in one
 * place keeps them consistent with each other and with docs/cli.md.
 */
#include "cli/cli.h"

#include <string.h>

static const cli_cmd commands[] = {
    { "add", cmd_add, "FILE...", "add text files (chunked; unchanged files are skipped)",
      "Usage: ds add [OPTIONS] FILE...\n"
      "\n"
      "Add text files to the knowledge store.  Each file is split into chunks\n"
      "at headings and paragraphs; each chunk becomes a node whose source and\n"
      "project are the file's canonical path.  Re-adding an unchanged file does\n"
      "nothing; a changed file replaces the nodes it had before.  Binary files\n"
      "(NUL bytes or invalid UTF-8) are refused; the other files still proceed.\n"
      "\n"
      "Options:\n"
      "  -n, --namespace NS   namespace of the new nodes (default: personal)\n"
      "  -j, --json           print the per-file results as JSON\n"
      "      --home DIR       data directory (default: $DS_HOME or ~/.datasphere)\n"
      "  -h, --help           show this help\n"
      "\n"
      "Exit status: 0 when every file was added or skipped, 1 when any failed.\n"
      "\n"
      "Examples:\n"
      "  ds add README.md docs/*.md\n"
      "  ds add --namespace work notes/design.txt\n" },
    { "note", cmd_note, "TEXT", "remember a note; prints its id",
      "Usage: ds note [OPTIONS] TEXT\n"
      "\n"
      "Save TEXT as a note (several words are joined with spaces).  Its project\n"
      "is the current directory unless --project is given; its source is\n"
      "\"<tag or note>:<UTC time>\".  The new node's id is printed on the last\n"
      "line.\n"
      "\n"
      "Options:\n"
      "  -t, --tag TAG        tag the note (repeatable); the first tag names the source\n"
      "  -n, --namespace NS   namespace (default: personal)\n"
      "  -p, --project DIR    project directory (must exist; default: current directory)\n"
      "  -j, --json           print the new node as JSON\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Examples:\n"
      "  ds note \"build with -j2: the CI box has two cores\"\n"
      "  ds note --tag decision --project ~/src/app \"use LMDB, not SQLite\"\n" },
    { "query", cmd_query, "TEXT", "search the knowledge store",
      "Usage: ds query [OPTIONS] TEXT\n"
      "\n"
      "Search every store (local, and later peers' replicas) for TEXT (several\n"
      "words are joined) and print the best hits first: rank, store, score\n"
      "(0..1), source, time, id prefix, namespace, project and the start of\n"
      "the content.\n"
      "\n"
      "Options:\n"
      "  -l, --limit N        number of hits, 1 to 1000 (default: 5)\n"
      "  -n, --namespace NS   only nodes of this namespace\n"
      "  -p, --project DIR    only nodes of this project (and paths beneath it)\n"
      "  -j, --json           print a JSON array of hits\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Examples:\n"
      "  ds query \"lmdb map size\"\n"
      "  ds query --limit 10 --project . \"error handling\"\n"
      "  ds query --json retry backoff | jq '.[0].content'\n" },
    { "show", cmd_show, "", "list the newest nodes",
      "Usage: ds show [OPTIONS]\n"
      "\n"
      "List the most recently stored nodes, newest first.\n"
      "\n"
      "Options:\n"
      "  -l, --limit N        number of nodes, 1 to 1000 (default: 10)\n"
      "  -n, --namespace NS   only nodes of this namespace\n"
      "  -p, --project DIR    only nodes of this project (and paths beneath it)\n"
      "  -j, --json           print a JSON array of nodes\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Examples:\n"
      "  ds show\n"
      "  ds show --limit 3 --json\n" },
    { "related", cmd_related, "ID", "nodes related to node ID (a unique id prefix is enough)",
      "Usage: ds related [OPTIONS] ID\n"
      "\n"
      "Find nodes similar to node ID.  ID may be a unique prefix of at least 4\n"
      "hexadecimal digits, as printed by ds query, ds show and ds note.\n"
      "\n"
      "Options:\n"
      "  -l, --limit N        number of hits, 1 to 1000 (default: 5)\n"
      "  -j, --json           print a JSON array of hits\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Examples:\n"
      "  ds related 3f2a9c1e\n"
      "  ds related --limit 10 3f2a9c1e-0d4b-4c55-9a1e-5b7e2f0c1d2e\n" },
    { "stats", cmd_stats, "", "show what the knowledge store holds",
      "Usage: ds stats [OPTIONS]\n"
      "\n"
      "Show the home directory, the data size, node counts by type, the number\n"
      "of index terms, the last sequence number and the store epoch.\n"
      "\n"
      "Options:\n"
      "  -j, --json           print the statistics as a JSON object\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Example:\n"
      "  ds stats --json\n" },
    { "reset", cmd_reset, "", "delete every node (asks first)",
      "Usage: ds reset [OPTIONS]\n"
      "\n"
      "Delete every node, index entry and added-file record, and start a new\n"
      "store epoch (so that peers re-read everything).  On a terminal ds asks\n"
      "for confirmation; otherwise --yes is required.\n"
      "\n"
      "Options:\n"
      "  -y, --yes            do not ask\n"
      "  -j, --json           print the result as JSON\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Example:\n"
      "  ds reset --yes\n" },
    { "help", cmd_help, "[COMMAND]", "show help for a command",
      "Usage: ds help [COMMAND]\n"
      "\n"
      "Show the list of commands, or the help of COMMAND.\n" },
};

const cli_cmd *cli_find_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

void cli_print_usage(FILE *f, int full)
{
    fputs("Usage: ds [--home DIR] COMMAND [ARGS...]\n", f);
    if (!full) {
        fputs("Run 'ds --help' for the list of commands.\n", f);
        return;
    }
    fputs("\nDatasphere: long-term memory for AI coding sessions.\n\nCommands:\n", f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char left[32];
        snprintf(left, sizeof left, "%s %s", commands[i].name, commands[i].args);
        fprintf(f, "  %-17s %s\n", left, commands[i].summary);
    }
    fputs("\nGlobal options (before the command):\n"
          "  --home DIR        data directory (default: $DS_HOME, else ~/.datasphere)\n"
          "  -j, --json        JSON output for every command\n"
          "  -h, --help        show this help\n"
          "  -V, --version     show the version\n"
          "\n"
          "Run 'ds COMMAND --help' or 'ds help COMMAND' for a command's options.\n",
          f);
}

void cli_print_help(const cli_cmd *cmd, FILE *f)
{
    if (cmd)
        fputs(cmd->help, f);
    else
        cli_print_usage(f, 1);
}

int cmd_help(cli *c, const cli_cmd *cmd, int argc, char **argv)
{
    static const struct option lo[] = { CLI_OPT_HELP, CLI_OPT_END };
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        int r = cli_common_opt(c, cmd, opt, argv, lo);
        if (r != CLI_CONTINUE)
            return r;
    }
    if (argc - optind > 1)
        return cli_usage_error(cmd, "give at most one command name");
    if (argc - optind == 0) {
        cli_print_usage(stdout, 1);
        return CLI_OK;
    }
    const cli_cmd *target = cli_find_cmd(argv[optind]);
    if (!target)
        return cli_usage_error(NULL, "unknown command '%s'", argv[optind]);
    cli_print_help(target, stdout);
    return CLI_OK;
}
