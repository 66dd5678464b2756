#!/usr/bin/env bash
# test_mcp_sdk.sh - integration test of `ds mcp` with the official MCP
# client SDK from npm (@modelcontextprotocol/sdk): the SDK's Client and
# StdioClientTransport start the real binary and go through initialize,
# tools/list and a call of each tool (tests/cli/mcp_client.mjs).
#
# Usage: bash tests/cli/test_mcp_sdk.sh /path/to/ds
#
# Needs Node.js (18 or later) and, the first time, the npm registry: the
# SDK is installed into ${DS_NPM_CACHE:-/opt/datasphere-deps/npm}, outside
# the clone, and reused from there.  Without Node.js or when the SDK
# cannot be installed it prints "SKIPPED: ..." and exits 0.  Otherwise the
# last line is "N passed, M failed"; the exit status is non-zero on any
# failure.
set -u
. "$(dirname "$0")/lib.sh"
lib_init ds-mcp-test "$@"

if ! command -v node >/dev/null 2>&1; then
    echo "SKIPPED: Node.js not found"
    exit 0
fi
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "${NODE_MAJOR:-0}" -lt 18 ]; then
    echo "SKIPPED: Node.js 18 or later needed (found $(node --version 2>/dev/null))"
    exit 0
fi

SDK_SPEC='@modelcontextprotocol/sdk@^1'
CACHE=${DS_NPM_CACHE:-/opt/datasphere-deps/npm}
SDK="$CACHE/node_modules/@modelcontextprotocol/sdk"
if [ ! -f "$SDK/dist/esm/client/stdio.js" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "SKIPPED: could not install @modelcontextprotocol/sdk (npm not found)"
        exit 0
    fi
    echo "installing $SDK_SPEC into $CACHE" >&2
    if ! mkdir -p "$CACHE" 2>/dev/null ||
        ! timeout 600 npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error \
            "$SDK_SPEC" >&2 ||
        [ ! -f "$SDK/dist/esm/client/stdio.js" ]; then
        echo "SKIPPED: could not install @modelcontextprotocol/sdk"
        exit 0
    fi
fi

export DS_HOME="$T/home"
mkdir -p "$T/project"

# Pre-fill the store through the CLI: a note the query and related calls
# must find next to the one added over MCP.
if ! (cd "$T/project" && "$DS" note --tag prefill \
        "quokka retries: exponential backoff with jitter keeps the service up") \
        >"$T/note.out" 2>"$T/note.err" </dev/null; then
    abort "ds note (pre-fill): $(cat "$T/note.err")"
fi
ID=$(tail -n 1 "$T/note.out")

# The client's own timeouts end it on a hung server; this bounds the rest.
timeout 300 node "$HERE/mcp_client.mjs" "$SDK" "$DS" "$DS_HOME" "$T/project" "$ID"
rc=$?
if [ $rc -eq 124 ]; then
    bad "the MCP client timed out"
    summary
fi
exit $rc
