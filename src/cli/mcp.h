/*
 * mcp.h - "ds mcp": a Model Context Protocol server over stdio.  An MCP
 * client (Claude Code, an IDE, the official SDKs) starts `ds mcp` and
 * exchanges newline-delimited JSON-RPC 2.0 messages with it over the
 * process's stdin and stdout.  The server offers three tools
 * (datasphere_query, datasphere_related, datasphere_add) that become
 * requests of the shared dispatch table (ds_ops_call): tool input only
 * ever becomes request parameters, never a command line or a shell.
 */
#ifndef DS_CLI_MCP_H
#define DS_CLI_MCP_H

#include <stdio.h>

#include "cli/cli.h"
#include "daemon/ops.h"

/* Longest accepted message line (bytes, without the newline).  A longer
 * line is discarded and answered with a JSON-RPC parse error. */
#define DS_MCP_MAX_LINE (4u * 1024 * 1024)
/* The newest protocol revision this server implements. */
#define DS_MCP_LATEST_VERSION "2025-06-18"
/* Largest "limit" a tool accepts (default 5). */
#define DS_MCP_MAX_LIMIT 100

/* Serves one MCP session: reads newline-delimited JSON-RPC messages from
 * |in| until end of file and writes one reply line per request to |out|
 * (flushed after each).  Nothing else is written to |out|; problems that
 * are not replies go to stderr.  |ctx| is an initialized request context
 * (its store is opened on first use and stays open); |cwd| (may be NULL)
 * is the client's working directory, the default project of notes added
 * through datasphere_add.  Neither |in| nor |out| is closed.
 * Returns 0 at end of input, DS_ERR_IO when reading |in| or writing |out|
 * failed (for example the client went away), DS_ERR_NOMEM when out of
 * memory outside a request. */
int ds_mcp_serve(ds_ctx *ctx, const char *cwd, FILE *in, FILE *out);

/* The "ds mcp" command (see its help in commands.c). */
int cmd_mcp(cli *c, const cli_cmd *cmd, int argc, char **argv);

#endif
