/*
 * commands.c - the table of ds commands and their help texts, the
 * general usage text and the "help" command.  Keeping every text in one
 * place keeps them consistent with each other and with docs/cli.md.
 */
#include "cli/cli.h"
#include "cli/mcp.h"

#include <string.h>

/* cmd_ingest.c (to move into cli.h) */

/* cmd_peer.c */
int cmd_peer(cli *c, const cli_cmd *cmd, int argc, char **argv);

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
      "Search every store (local, and each subscribed peer's replica) for TEXT\n"
      "(several words are joined) and print the best hits first: rank, store\n"
      "([local] or [peer name]), score (0..1, comparable across stores),\n"
      "source, time, id prefix, namespace, project and the start of the content.\n"
      "\n"
      "Options:\n"
      "  -l, --limit N        number of hits, 1 to 1000 (default: 5)\n"
      "  -n, --namespace NS   only nodes of this namespace\n"
      "  -p, --project DIR    only nodes of this project (and paths beneath it)\n"
      "      --local          search the local store only\n"
      "      --peer NAME      search that peer's replica only (name or NodeId)\n"
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
      "List the most recently stored nodes of the local store, newest first;\n"
      "with --peer, those of that peer's replica (in the order received).\n"
      "\n"
      "Options:\n"
      "  -l, --limit N        number of nodes, 1 to 1000 (default: 10)\n"
      "  -n, --namespace NS   only nodes of this namespace\n"
      "  -p, --project DIR    only nodes of this project (and paths beneath it)\n"
      "      --local          the local store (the default)\n"
      "      --peer NAME      that peer's replica instead (name or NodeId)\n"
      "  -j, --json           print a JSON array of nodes\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Examples:\n"
      "  ds show\n"
      "  ds show --limit 3 --json\n"
      "  ds show --peer alice\n" },
    { "related", cmd_related, "ID", "nodes related to node ID (a unique id prefix is enough)",
      "Usage: ds related [OPTIONS] ID\n"
      "\n"
      "Find nodes similar to node ID in every store (local, and each peer's\n"
      "replica).  ID may be a unique prefix of at least 4 hexadecimal digits,\n"
      "as printed by ds query, ds show and ds note, of a node in any store.\n"
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
      "of added files and index terms, the last sequence number, the store\n"
      "epoch, and each peer's replica: its node count and last sync.  A home\n"
      "holding only peers' replicas shows them, with no local store yet.\n"
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
    { "start", cmd_start, "", "start the background daemon (session ingestion, fast requests)",
      "Usage: ds start [OPTIONS]\n"
      "\n"
      "Start the Datasphere daemon for the home directory.  It watches the\n"
      "configured directories (Claude Code's ~/.claude/projects by default),\n"
      "turns idle sessions into nodes, and answers the other commands over the\n"
      "socket HOME/daemon.sock.  Without a daemon every command still works, in\n"
      "process.  One daemon runs per home: a second start says so and gives its PID.\n"
      "\n"
      "The configuration HOME/config.json is checked first; an error in it is\n"
      "reported here and nothing starts.  ds start returns once the daemon\n"
      "accepts requests (or has failed, with the reason).  It logs to\n"
      "HOME/daemon.log, rotated by size.  SIGHUP reopens the log and reloads the\n"
      "configuration (a bad one is logged and the old one kept); SIGHUP does not\n"
      "apply \"sync\" settings: changed ones are logged and take effect at the\n"
      "next ds start.  SIGTERM or SIGINT stop it cleanly.\n"
      "\n"
      "Options:\n"
      "  -f, --foreground     stay in the terminal and log to stderr (Ctrl-C stops)\n"
      "      --listen IP:PORT  accept peer syncs there (QUIC; default port 7979;\n"
      "                       an IP address, [::]:PORT for IPv6; up to 4 times;\n"
      "                       not [::ffff:IPv4] (write the IPv4) or a zone id)\n"
      "      --sync           sync every subscribed peer at start\n"
      "      --sync-interval D  sync periodically (D: seconds, or 90s, 30m, 1h30m,\n"
      "                       1d: units d, h, m, s largest first, each once),\n"
      "                       retrying failures with backoff\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Exit status: 0 started (or, with --foreground, stopped cleanly); 1 already\n"
      "running, bad configuration or startup failure; 2 bad option or value.\n"
      "\n"
      "Config file (HOME/config.json, optional; unknown keys are errors):\n"
      "  {\n"
      "    \"watch\": [\"~/.claude/projects\"],      directories of session transcripts\n"
      "    \"idle_seconds\": 180,                   wait this long after a session's last change\n"
      "    \"distiller\": {\"type\": \"extractive\"},  or command (argv) or http (provider, model)\n"
      "    \"log\": {\"max_bytes\": 1048576, \"keep\": 3, \"level\": \"info\"},\n"
      "    \"queue\": {\"max_attempts\": 5, \"backoff_base_ms\": 5000},\n"
      "    \"sync\": {\"listen\": \"0.0.0.0:7979\", \"interval\": \"30m\", \"at_start\": false,\n"
      "             \"max_concurrent\": 4, \"connect_timeout_ms\": 10000}\n"
      "  }\n"
      "sync (all optional; flags override): listen, one IP:PORT string (not a\n"
      "list; unset: 0.0.0.0:7979, only while some peer may pull); interval,\n"
      "seconds or \"30m\" (unset: no periodic sync); at_start, like --sync;\n"
      "max_concurrent (1-64) syncs per peer at once; connect_timeout_ms\n"
      "(100-600000) to reach all of a peer's addresses.  A listen address\n"
      "(--listen or sync.listen) is used once this node has an identity (ds peer\n"
      "init); until then ds start warns and the daemon logs it.\n"
      "\n"
      "Distillers (how a session chunk becomes nodes):\n"
      "  extractive   built in, the default: offline and deterministic; keeps\n"
      "               decisions and reasons, fixes and causes, conclusions,\n"
      "               questions with answers, each readable on its own\n"
      "  command      {\"type\": \"command\", \"argv\": [\"llm\", \"-m\", \"local\"],\n"
      "               \"timeout_ms\": 120000}: pipes the chunk to the program's\n"
      "               stdin (never through a shell); reads a JSON array of\n"
      "               {content, kind, confidence} or one insight per paragraph\n"
      "  http         {\"type\": \"http\", \"provider\": \"anthropic\"|\"openai\",\n"
      "               \"model\": \"...\", \"url\": \"...\", \"api_key_env\": \"...\"}:\n"
      "               Anthropic Messages API or an OpenAI-compatible endpoint;\n"
      "               timeouts, backoff on 429/5xx, a tokens line in the log\n"
      "Secrets are redacted before any distiller sees a session.\n"
      "See docs/daemon.md and docs/ingest.md for every key.\n"
      "\n"
      "Examples:\n"
      "  ds start\n"
      "  ds start --foreground\n"
      "  kill -HUP $(cat ~/.datasphere/daemon.pid)    # reload config.json\n" },
    { "stop", cmd_stop, "", "stop the daemon",
      "Usage: ds stop [OPTIONS]\n"
      "\n"
      "Stop the daemon of the home directory: SIGTERM, then wait up to 10 s for\n"
      "it to finish what it is writing and exit; if it has not, SIGKILL.  Stale\n"
      "daemon.pid and daemon.sock files (left by a killed daemon) are removed.\n"
      "\n"
      "Options:\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Exit status: 0 stopped, or was not running (says so); 1 could not stop it.\n" },
    { "status", cmd_status, "", "is the daemon running? uptime, watched dirs, queue, nodes",
      "Usage: ds status [OPTIONS]\n"
      "\n"
      "Show whether the daemon runs and, if so, its PID, uptime, version and\n"
      "protocol, configuration and log files, watched directories, ingestion\n"
      "queue counts, last ingest, the network sync (where it accepts syncs or\n"
      "why not, the periodic schedule, retries waiting, jobs running), node\n"
      "counts by type and requests served.\n"
      "Without a daemon it says so and still shows the node counts.\n"
      "\n"
      "Options:\n"
      "  -j, --json           print the status as a JSON object\n"
      "  -f, --format FMT     text or json\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Exit status: 0 running; 3 not running; 1 a daemon holds the home but does\n"
      "not answer, or another error.\n"
      "\n"
      "Example:\n"
      "  ds status --json\n" },
    { "mcp", cmd_mcp, "", "MCP server on stdio (for Claude Code and other MCP clients)",
      "Usage: ds mcp [OPTIONS]\n"
      "\n"
      "Serve the Model Context Protocol over stdin/stdout (JSON-RPC 2.0, one\n"
      "message per line), for Claude Code and other MCP clients.  An MCP client\n"
      "starts this command itself; it is not meant to be run by hand.  Tools:\n"
      "  datasphere_query   {query, limit?, namespace?, project?, peer?}\n"
      "  datasphere_related {node_id, limit?}\n"
      "  datasphere_add     {content, source?, namespace?, project?}\n"
      "Hits carry id, content, score, store (local or the peer), project,\n"
      "namespace, source and timestamp.  Tool input only becomes request\n"
      "parameters: no shell is involved.  Notes added without a project belong\n"
      "to the directory the server was started in.  Logs go to stderr; the\n"
      "server ends at end of input with status 0.\n"
      "\n"
      "Options:\n"
      "      --home DIR       data directory (default: $DS_HOME or ~/.datasphere)\n"
      "  -h, --help           show this help\n"
      "\n"
      "Register with Claude Code:\n"
      "  claude mcp add datasphere -- ds mcp\n"
      "See docs/mcp.md for the JSON configuration form and the protocol details.\n" },
    { "scan", cmd_scan, "", "ingest a project's Claude Code sessions now",
      "Usage: ds scan [OPTIONS]\n"
      "\n"
      "Ingest the Claude Code sessions of a project at once, without waiting\n"
      "for the daemon's idle time.  Sessions are found in the watched roots\n"
      "(config.json \"watch\", default ~/.claude/projects): folders named after\n"
      "the project the way Claude Code names them, and folders of directories\n"
      "beneath it whose entries' cwd lies in the project.  Only what is new\n"
      "since the last ingest is distilled; secrets are redacted first.  Works\n"
      "with or without a running daemon.  Progress is shown on a terminal.\n"
      "\n"
      "Options:\n"
      "  -p, --project DIR    project directory (default: current directory)\n"
      "  -j, --json           print the per-session results as JSON\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Exit status: 0 when every session was ingested or unchanged (also when\n"
      "none was found), 1 when any failed.\n"
      "\n"
      "Examples:\n"
      "  ds scan\n"
      "  ds scan --project ~/src/app --json\n" },
    { "queue", cmd_queue, "[ACTION]", "ingestion jobs: status, pending, failed, retry, clear",
      "Usage: ds queue [OPTIONS] [status | pending | failed | retry ID | retry --all | clear]\n"
      "\n"
      "Show or change the session-ingestion job queue.  Jobs are pending,\n"
      "processing, done or failed (after the configured number of attempts).\n"
      "  status        counts by state (the default)\n"
      "  pending       pending and processing jobs: id, path, attempts, next try\n"
      "  failed        failed jobs with their last error\n"
      "  retry ID      put failed job ID back to pending (a unique id prefix is enough)\n"
      "  retry --all   put every failed job back to pending\n"
      "  clear         remove done and failed jobs (does not ask)\n"
      "\n"
      "Options:\n"
      "  -a, --all            with retry: every failed job\n"
      "  -j, --json           print counts and jobs as JSON\n"
      "      --home DIR       data directory\n"
      "  -h, --help           show this help\n"
      "\n"
      "Examples:\n"
      "  ds queue\n"
      "  ds queue failed\n"
      "  ds queue retry 3f2a\n" },
    { "peer", cmd_peer, "SUBCOMMAND", "identity, shared projects, peers, sync, export/import",
      "Usage: ds peer SUBCOMMAND [ARGS...]\n"
      "\n"
      "Share chosen projects' nodes with other ds users.  Everything is private\n"
      "until shared; each peer's nodes live in their own replica (peers/<id>/)\n"
      "and ds query labels their hits with the peer's name.\n"
      "\n"
      "Subcommands:\n"
      "  init [--force]           create this node's identity; prints the NodeId\n"
      "  id                       print this node's NodeId\n"
      "  ticket                   print NodeId + this daemon's addresses (one line)\n"
      "  share PATH               publish a project (path made canonical)\n"
      "  unshare PATH             stop publishing a project (nodes peers already\n"
      "                           have stay with them)\n"
      "  shared                   list shared projects\n"
      "  add ID|TICKET [--name N] [--addr HOST:PORT] [--publish] [--no-subscribe]\n"
      "                           add a peer, or change a known peer's flags\n"
      "  remove ID|NAME           forget a peer and delete its replica\n"
      "  list                     peers with flags, node counts and last sync\n"
      "  sync [ID] [--full]       pull new shared nodes from peers over QUIC\n"
      "  export [--full] FILE     write shared nodes to a signed file\n"
      "  import [--add] FILE      verify a peer's file and add it to its replica\n"
      "\n"
      "Every subcommand takes --json (or -f json), --home DIR and --help\n"
      "(ds help peer SUBCOMMAND shows a subcommand's help).  A known peer (ID)\n"
      "is its name, NodeId, or a unique NodeId prefix of 8+ hex digits.\n"
      "\n"
      "Example (sneakernet):\n"
      "  alice$ ds peer init && ds peer share ~/oss/rust-patterns\n"
      "  alice$ ds peer export /media/usb/alice.dsx\n"
      "  bob$   ds peer add ALICE_NODE_ID --name alice\n"
      "  bob$   ds peer import /media/usb/alice.dsx\n"
      "  bob$   ds query \"thiserror derive\"\n" },
    { "help", cmd_help, "[COMMAND]", "show help for a command",
      "Usage: ds help [COMMAND [SUBCOMMAND]]\n"
      "\n"
      "Show the list of commands, or the help of COMMAND (the same as\n"
      "ds COMMAND --help).  ds help peer SUBCOMMAND shows that subcommand's\n"
      "help, as ds peer SUBCOMMAND --help does.\n" },
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
          "Run 'ds COMMAND --help' or 'ds help COMMAND' for a command's options.\n"
          "\n"
          "Daemon: 'ds start' runs a background process per home that ingests Claude\n"
          "Code sessions and answers requests over HOME/daemon.sock; without it every\n"
          "command runs in process.  Its settings are in HOME/config.json (optional;\n"
          "see 'ds start --help').  Files: HOME/daemon.log, daemon.pid, daemon.sock.\n",
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
    if (argc - optind > 2)
        return cli_usage_error(cmd, "give a command name, and for ds peer a subcommand name");
    if (argc - optind == 0) {
        cli_print_usage(stdout, 1);
        return CLI_OK;
    }
    const cli_cmd *target = cli_find_cmd(argv[optind]);
    if (!target)
        return cli_usage_error(NULL, "unknown command '%s'", argv[optind]);
    if (argc - optind == 2) {
        /* "ds help peer sync" is "ds peer sync --help": the command
         * finds the subcommand (or says it has none by that name). */
        if (target->run != cmd_peer)
            return cli_usage_error(cmd, "ds %s has no subcommands: run 'ds help %s'",
                                   target->name, target->name);
        char *sub[] = { argv[optind], argv[optind + 1], "--help", NULL };
        return target->run(c, target, 3, sub);
    }
    cli_print_help(target, stdout);
    return CLI_OK;
}
