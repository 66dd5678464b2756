#!/usr/bin/env bash
# shellcheck disable=SC2317  # predicates are only called through check (lib.sh)
# test_daemon_ingest.sh - end-to-end session ingestion by a real daemon.
#
# Usage: bash tests/cli/test_daemon_ingest.sh /path/to/ds
#
# Builds a fake ~/.claude/projects tree (projects whose paths hold dots,
# underscores and spaces; several sessions; sidechains, tool_use and
# tool_result, system reminders, planted secrets), runs `ds start` on it
# and checks:
#   1. the expected insights are found by `ds query`, with the right project;
#   2. appending to a session while the daemon runs yields only new nodes,
#      after the idle time;
#   3. kill -9 of the daemon in the middle of ingestion, then a restart,
#      ends with exactly the nodes of an uninterrupted run (nothing lost,
#      nothing duplicated);
#   4. no secret reaches the store (not in any node, not in the data file).
# Every wait is a bounded poll; only daemons this test started are killed.
set -u
. "$(dirname "$0")/lib.sh"
lib_init ds-e2e "$@"
export HOME="$T/user"
mkdir -p "$HOME"

status_json() { DS_HOME=$1 "$DS" status --json 2>/dev/null; }
# queue_settled HOME MIN_DONE: nothing pending or processing, at least MIN_DONE done.
queue_settled() {
    status_json "$1" | python3 -c '
import json, sys
s = json.load(sys.stdin); q = s["queue"]
sys.exit(0 if q["pending"] == 0 and q["processing"] == 0 and q["done"] >= int(sys.argv[1]) else 1)' "$2"
}
node_count() { DS_HOME=$1 "$DS" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"])'; }
# nodes_dump HOME: sorted "id<TAB>content" lines of every node.
nodes_dump() {
    DS_HOME=$1 "$DS" show --json --limit 1000 | python3 -c '
import json, sys
for n in sorted(json.load(sys.stdin), key=lambda n: n["id"]):
    print(n["id"] + "\t" + n["content"].replace("\n", " "))'
}
start_daemon() {   # HOME -> sets DPID
    DS_HOME=$1 "$DS" start >"$T/start.out" 2>&1 || { cat "$T/start.out" >&2; return 1; }
    DPID=$(cat "$1/daemon.pid")
    remember "$DPID"
}

PROJECTS="$HOME/.claude/projects"
P1="$T/work/my.app_v2 final"        # dots, underscore, space
P2="$T/work/other_proj.d"
mkdir -p "$P1/sub dir" "$P2"

# ---------------------------------------------------------------- 1. ingest
H1="$T/home1"
mkdir -p "$H1"
printf '{ "watch": ["%s"], "idle_seconds": 2 }\n' "$PROJECTS" > "$H1/config.json"
S1="$PROJECTS/$(enc "$P1")/aaaaaaaa-0000-4000-8000-000000000001.jsonl"
S2="$PROJECTS/$(enc "$P1")/aaaaaaaa-0000-4000-8000-000000000002.jsonl"
S3="$PROJECTS/$(enc "$P1/sub dir")/aaaaaaaa-0000-4000-8000-000000000003.jsonl"
S4="$PROJECTS/$(enc "$P2")/bbbbbbbb-0000-4000-8000-000000000004.jsonl"
fixture write "$S1" --cwd "$P1" --session sess-main --kind main
fixture write "$S2" --cwd "$P1" --session sess-second --kind second
fixture write "$S3" --cwd "$P1/sub dir" --session sess-sub --kind sub
start_daemon "$H1" || abort "daemon started in $H1"
check "first sessions ingested" poll "3 jobs done" 60 queue_settled "$H1" 3
# A project folder created while the daemon runs is picked up too.
mkdir -p "$PROJECTS/$(enc "$P2")"
fixture write "$S4" --cwd "$P2" --session sess-other --kind other
check "new project folder ingested" poll "4 jobs done" 60 queue_settled "$H1" 4

q_project() {   # HOME QUERY PROJECT: the top hit's project
    DS_HOME=$1 "$DS" query "$2" --json --limit 1 | python3 -c '
import json, sys
r = json.load(sys.stdin)
sys.exit(0 if r and r[0]["project"] == sys.argv[1] and r[0]["store"] == "local" else 1)' "$3"
}
check "importer fix found in P1" q_project "$H1" "importer CSV memory streaming" "$P1"
check "LMDB decision found in P1" q_project "$H1" "LMDB cache readers writer" "$P1"
check "date parser fix found in P1/sub dir" q_project "$H1" "date parser time zones UTC" "$P1/sub dir"
check "network test fix found in P2" q_project "$H1" "flaky network test retrying" "$P2"
no_sidechain() { ! DS_HOME=$H1 "$DS" show --json --limit 1000 | grep -q "gamma rays"; }
check "sidechain entries are not ingested" no_sidechain
no_reminder() { ! DS_HOME=$H1 "$DS" show --json --limit 1000 | grep -q "secret plan zeta"; }
check "system reminders are stripped" no_reminder

# ---------------------------------------------------------------- 2. append
before=$(node_count "$H1")
nodes_dump "$H1" > "$T/before.txt"
fixture append "$S2" --cwd "$P1" --session sess-second --kind followup
grown() { [ "$(node_count "$H1")" -gt "$before" ]; }
check "appended content ingested after the idle time" poll "node count to grow" 60 grown
check "append settled" poll "queue settled" 60 queue_settled "$H1" 5
nodes_dump "$H1" > "$T/after.txt"
only_new() { [ -z "$(comm -23 "$T/before.txt" "$T/after.txt")" ]; }
check "old nodes unchanged by the append" only_new
new_is_followup() { comm -13 "$T/before.txt" "$T/after.txt" | grep -q "msgpack"; }
check "new nodes come from the appended lines" new_is_followup
no_dup_ids() { [ -z "$(cut -f1 "$T/after.txt" | sort | uniq -d)" ]; }
check "no duplicate ids" no_dup_ids
check "query finds the appended insight" q_project "$H1" "msgpack wire format frames" "$P1"

# ---------------------------------------------------------------- 4. secrets
no_secret_nodes() { ! DS_HOME=$H1 "$DS" show --json --limit 1000 | grep -qE "$AWS|$GHT"; }
check "no secret in any node" no_secret_nodes
has_marker() { DS_HOME=$H1 "$DS" show --json --limit 1000 | grep -q "REDACTED"; }
check "secrets were replaced by markers" has_marker
no_secret_file() { ! grep -qaE "$AWS|$GHT" "$H1/db/data.mdb"; }
check "no secret bytes in the data file" no_secret_file
stop_daemon "$H1"

# ---------------------------------------------------------------- 3. kill -9
# A slow, deterministic command distiller keeps jobs in flight long enough
# to kill the daemon among them.  Reference: the same tree, uninterrupted.
K="$T/kill"
KP="$K/projects"
for i in $(seq 1 12); do
    d="$KP/$(enc "$T/kp/proj$i")"
    mkdir -p "$d" "$T/kp/proj$i"
    fixture write "$d/cccccccc-0000-4000-8000-0000000000$(printf %02d "$i").jsonl" \
        --cwd "$T/kp/proj$i" --session "kill-$i" --kind main
done
conf() {
    printf '{ "watch": ["%s"], "idle_seconds": 1, "queue": { "backoff_base_ms": 200 },\n' "$KP"
    printf '  "distiller": { "type": "command", "argv": ["python3", "%s", "0.3"], "timeout_ms": 30000 } }\n' "$HERE/slow_distiller.py"
}
HR="$K/ref"; HK="$K/killed"
mkdir -p "$HR" "$HK"
conf > "$HR/config.json"; conf > "$HK/config.json"
start_daemon "$HR" || abort "daemon started in $HR"
check "reference run completes" poll "reference jobs" 120 queue_settled "$HR" 12
stop_daemon "$HR"
nodes_dump "$HR" > "$T/ref.txt"

start_daemon "$HK" || abort "daemon started in $HK"
some_done() {
    status_json "$HK" | python3 -c '
import json, sys
q = json.load(sys.stdin)["queue"]; sys.exit(0 if q["done"] >= 3 else 1)'
}
poll "some jobs done" 60 some_done
done_at_kill=$(status_json "$HK" | python3 -c 'import json,sys; print(json.load(sys.stdin)["queue"]["done"])')
kill -9 "$DPID"
echo "killed daemon $DPID with $done_at_kill of 12 jobs done" >&2
mid_way() { [ "$done_at_kill" -lt 12 ]; }
check "the kill happened mid-ingest" mid_way
poll "killed daemon gone" 10 dead "$DPID"
start_daemon "$HK" || bad "restart after kill -9"
check "restarted daemon completes" poll "killed-home jobs" 120 queue_settled "$HK" 12
stop_daemon "$HK"
nodes_dump "$HK" > "$T/killed.txt"
same_set() { diff -q "$T/ref.txt" "$T/killed.txt" >/dev/null; }
check "after kill -9 + restart: exactly the uninterrupted run's nodes" same_set
nonempty() { [ "$(wc -l < "$T/ref.txt")" -ge 12 ]; }
check "the reference run produced nodes" nonempty

finish
