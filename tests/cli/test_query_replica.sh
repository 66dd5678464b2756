#!/usr/bin/env bash
# test_query_replica.sh - a damaged peer replica is left out of searches
# with a warning, never fails them.
#
# Usage: bash tests/cli/test_query_replica.sh /path/to/ds
#
# bob imports alice's export, then alice's replica is damaged: data.mdb
# cut short while bob's daemon has it open (LMDB would read past the end
# of the file and the daemon die of SIGBUS), data.mdb truncated, or cut
# to nothing (LMDB would start a new store in it), a segment header of an
# unknown format (opens, fails to be read), db replaced by a plain file.
# Checks: ds query (text, --json, in process and through the daemon),
# ds related and the MCP search tool still answer from the local store,
# exit 0, with a warning naming the peer and the replica's path plus a
# hint; --peer alice is an error naming both; ds peer list and ds stats
# show the count as unknown; the replica is never modified; moving it
# away and importing again repairs it (through the daemon too); the
# daemon stays up throughout.
set -u
. "$(dirname "$0")/lib.sh"
lib_init ds-qrep-test "$@"
unset DS_HOME
A="$T/alice"
B="$T/bob"
STOP_HOMES=("$B")
RUN_TAKES_HOME=1   # run HOME ARGS...
SUMMARY_PREFIX="test_query_replica: "

# ---- two homes: bob holds a replica of alice's shared project -------------
P="$T/proj"
mkdir -p "$P"
run "$A" peer init
AID=$(sed -n 's/^Generated NodeId: //p' "$T/out")
run "$B" peer init
run "$A" peer share "$P"
run "$A" note -p "$P" "zebrafish from alice shared project"
run "$B" note -p "$T" "zebrafish local note of bob"
check "bob: local note" rc_is 0
run "$A" peer export --full "$T/alice.dsx"
check "alice: export" rc_is 0
run "$B" peer import --add --name alice "$T/alice.dsx"
check "bob: import" rc_is 0
R="$B/peers/$AID/db"
check "replica exists" [ -f "$R/data.mdb" ]
cp -a "$R" "$T/good-db"

run "$B" query zebrafish
check "healthy: alice hit" out_has "[alice]"
check "healthy: local hit" out_has "[local]"
check "healthy: no warning" err_lacks "warning"

# ---- data.mdb cut short while the daemon has the replica open -------------
# LMDB reads through a memory map: a read past the new end of the file
# would kill the daemon with SIGBUS.  Cut to half, then to the two meta
# pages only (LMDB still opens that); each time the daemon must stay up
# and answer as for any damaged replica, without touching the file.
run "$B" start
check "open: daemon started" rc_is 0
DPID=$(cat "$B/daemon.pid" 2>/dev/null)
# The daemon started here answers requests (a crashed one may linger as a
# zombie, which kill -0 still finds).
daemon_up() {
    DS_HOME="$B" "$DS" status --json </dev/null 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d["running"] and str(d.get("pid")) == sys.argv[1] else 1)' "$DPID"
}
run "$B" query zebrafish
check "open: alice hit before the cut" out_has "[alice]"
ID=$(DS_HOME="$B" "$DS" query --local --json zebrafish | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
WHOLE=$(stat -c %s "$R/data.mdb")
for cut in $((WHOLE / 2)) 8192; do
    k="cut to $cut"
    truncate -s "$cut" "$R/data.mdb"
    run "$B" query zebrafish
    check "$k: query exit 0" rc_is 0
    check "$k: daemon still running" daemon_up
    check "$k: local hit kept" out_has "zebrafish local note of bob"
    check "$k: no alice hit" out_lacks "[alice]"
    check "$k: warning names peer and path" \
        err_has "ds: warning: peer 'alice' was not searched: its replica $R cannot be read"
    check "$k: warning says why" err_has "its data file is $cut bytes, shorter than"
    check "$k: hint" err_has "ds peer remove alice"
    run "$B" query --json zebrafish
    check "$k: --json local hit only" jq_ "len(d) == 1 and d[0]['store'] == 'local'"
    run "$B" query --peer alice zebrafish
    check "$k: --peer alice fails naming it" \
        err_has "peer 'alice' was not searched: its replica $R cannot be read"
    check "$k: --peer alice exit 1" rc_is 1
    run "$B" related "$ID"
    check "$k: related exit 0" rc_is 0
    check "$k: related warning" err_has "peer 'alice' was not searched"
    run "$B" peer list
    check "$k: peer list exit 0" rc_is 0
    check "$k: peer list nodes unknown" grep -qE '^alice .* \? ' "$T/out"
    check "$k: peer list says why" out_has "replica unreadable: its data file is $cut bytes"
    run "$B" stats
    check "$k: stats ? nodes" out_has "? nodes (replica unreadable"
    check "$k: daemon still running after all" daemon_up
    check "$k: replica left as it was" [ "$(stat -c %s "$R/data.mdb")" -eq "$cut" ]
done
# The repair the hint gives, with the daemon still holding the old file.
mv "$R" "$T/cut-db"
run "$B" peer import "$T/alice.dsx"
check "open: repair import" rc_is 0
run "$B" query zebrafish
check "open: repaired, alice hit again" out_has "[alice]"
check "open: repaired, no warning" err_lacks "warning"
run "$B" peer list
check "open: repaired, peer list counts nodes" grep -qE '^alice .* no +[0-9]+ ' "$T/out"
check "open: same daemon throughout" daemon_up
run "$B" stop
check "open: daemon stopped" rc_is 0
rm -rf "$T/cut-db"

# The checks shared by every kind of damage; $1 says how it shows.
damaged_checks() {
    local how=$1 kind=$2
    run "$B" query zebrafish
    check "$kind: query exit 0" rc_is 0
    check "$kind: local hit kept" out_has "zebrafish local note of bob"
    check "$kind: no alice hit" out_lacks "[alice]"
    check "$kind: warning names the peer" err_has "ds: warning: peer 'alice' was not searched"
    check "$kind: warning names the path" err_has "$R"
    check "$kind: warning says why" err_has "$how"
    check "$kind: hint" err_has "ds peer remove alice"

    run "$B" query --json zebrafish
    check "$kind: --json exit 0" rc_is 0
    check "$kind: --json valid, local hit" \
        jq_ "len(d) == 1 and d[0]['store'] == 'local' and 'zebrafish' in d[0]['content']"
    check "$kind: --json warning on stderr" err_has "peer 'alice' was not searched"

    run "$B" query --json nothingmatchesthis
    check "$kind: no hits: exit 0, []" jq_ "d == []"

    run "$B" query --peer alice zebrafish
    check "$kind: --peer alice fails" rc_is 1
    check "$kind: --peer names peer and path" err_has "peer 'alice' was not searched: its replica $R"

    run "$B" query --local zebrafish
    check "$kind: --local: no warning" err_lacks "warning"
    check "$kind: --local: hit" out_has "[local]"
}

# ---- data.mdb truncated: the replica cannot be opened ----------------------
truncate -s 4096 "$R/data.mdb"
damaged_checks "cannot be opened" truncated

ID=$(DS_HOME="$B" "$DS" query --local --json zebrafish | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
run "$B" related "$ID"
check "related: exit 0" rc_is 0
check "related: warning" err_has "peer 'alice' was not searched"

run "$B" peer list
check "peer list: exit 0" rc_is 0
check "peer list: nodes unknown" grep -qE '^alice .* \? ' "$T/out"
check "peer list: says unreadable" out_has "replica unreadable"
run "$B" peer list --json
check "peer list --json: nodes null, replica_error" \
    jq_ "d['peers'][0]['nodes'] is None and d['peers'][0]['replica_error']"
run "$B" stats
check "stats: ? nodes" out_has "? nodes (replica unreadable"
run "$B" stats --json
check "stats --json: nodes null" jq_ "d['peers'][0]['nodes'] is None"

# The MCP search tool: the warning is part of the result.
printf '%s\n' \
    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}' \
    '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
    '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"datasphere_query","arguments":{"query":"zebrafish"}}}' |
    DS_HOME="$B" "$DS" mcp 2>/dev/null | tail -n 1 >"$T/out"
RC=0
check "mcp: results and a warning naming alice" \
    jq_ "not d['result'].get('isError') and len(d['result']['structuredContent']['results']) == 1 and d['result']['structuredContent']['warnings'][0]['peer'] == 'alice' and d['result']['structuredContent']['warnings'][0]['path'] == '$R'"

# Through the daemon: the same answer.
run "$B" start
check "daemon: started" rc_is 0
run "$B" query zebrafish
check "daemon: query exit 0" rc_is 0
check "daemon: local hit" out_has "zebrafish local note of bob"
check "daemon: warning" err_has "peer 'alice' was not searched"
run "$B" stop
check "daemon: stopped" rc_is 0

# An import into it is refused, saying why and how to repair.
run "$B" peer import "$T/alice.dsx"
check "truncated: import refused" rc_is 1
check "truncated: import names the replica and why" \
    err_has "the replica $R of peer 'alice' cannot be opened: its data file is shorter than its database"
check "truncated: import says how to repair" err_has "Move $R away"
run "$B" peer list
check "truncated: peer list says why" out_has "replica unreadable: its data file is shorter than its database"

check "truncated: replica left as it was" [ "$(stat -c %s "$R/data.mdb")" -eq 4096 ]

# ---- data.mdb cut to nothing: LMDB would make it a new, empty replica ------
truncate -s 0 "$R/data.mdb"
damaged_checks "cannot be opened" empty
run "$B" peer list
check "empty: peer list nodes unknown" grep -qE '^alice .* \? ' "$T/out"
check "empty: not made a new store" [ "$(stat -c %s "$R/data.mdb")" -eq 0 ]

# ---- a segment of an unknown format: opens, cannot be read ---------------
if command -v mdb_dump >/dev/null && command -v mdb_load >/dev/null; then
    rm -rf "$R"
    cp -a "$T/good-db" "$R"
    mdb_dump -s segs "$R" | sed 's/^ 02000000/ 07000000/' >"$T/segs.dump" &&
        mdb_load -s segs -f "$T/segs.dump" "$R" 2>/dev/null
    damaged_checks "cannot be read" unreadable
else
    echo "note: mdb_dump/mdb_load not found; the unreadable-segment case is skipped" >&2
fi

# ---- db is a plain file ---------------------------------------------------
rm -rf "$R"
echo "not a database" >"$R"
damaged_checks "not a directory" "plain file"
check "plain file: left as it was" [ "$(cat "$R")" = "not a database" ]

# ---- the repair the hint gives: move it away, import again ----------------
mv "$R" "$T/broken-db"
run "$B" peer import "$T/alice.dsx"
check "repair: import" rc_is 0
run "$B" query zebrafish
check "repair: alice hit again" out_has "[alice]"
check "repair: no warning" err_lacks "warning"

finish
