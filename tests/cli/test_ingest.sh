#!/usr/bin/env bash
# test_ingest.sh - integration test of session ingestion from the command
# line without a daemon: ds scan, ds queue, and what lands in the store.
#
# Usage: bash tests/cli/test_ingest.sh /path/to/ds
#
# Builds a throw-away HOME with a fake ~/.claude/projects tree (several
# projects whose paths hold dots, underscores and spaces; several
# sessions; sidechains, tool_use/tool_result, system reminders and a
# planted secret), then checks scan, query, show --json, queue and that a
# re-scan adds nothing.  Prints "N passed, M failed" last; exits non-zero
# on any failure.
set -u
. "$(dirname "$0")/lib.sh"
lib_init ds-ingest-test "$@"
export HOME="$T/user"
export DS_HOME="$T/dshome"
mkdir -p "$HOME"
PY_ERR="$T/pyerr"

# ------------------------------------------------------------ fixtures
P1="$T/work/my.app_v2 final"      # dots, underscore, space
P2="$T/work/other-proj"
P3="$T/work/my.app_v2 final-x"    # a sibling whose encoding extends P1's
mkdir -p "$P1/sub dir" "$P2" "$P3"
PROJECTS="$HOME/.claude/projects"
mkdir -p "$PROJECTS/$(enc "$P1")" "$PROJECTS/$(enc "$P2")" "$PROJECTS/$(enc "$P1/sub dir")" \
         "$PROJECTS/$(enc "$P3")"

# session FILE CWD SESSION-ID KIND: writes a transcript (tests/cli/claude_fixture.py).
session() { fixture write "$1" --cwd "$2" --session "$3" --kind "$4"; }
S1="$PROJECTS/$(enc "$P1")/11111111-aaaa-4bbb-8ccc-000000000001.jsonl"
S2="$PROJECTS/$(enc "$P1")/11111111-aaaa-4bbb-8ccc-000000000002.jsonl"
S3="$PROJECTS/$(enc "$P1/sub dir")/11111111-aaaa-4bbb-8ccc-000000000003.jsonl"
S4="$PROJECTS/$(enc "$P2")/22222222-aaaa-4bbb-8ccc-000000000004.jsonl"
S5="$PROJECTS/$(enc "$P3")/33333333-aaaa-4bbb-8ccc-000000000005.jsonl"
session "$S1" "$P1" sess-main main
session "$S2" "$P1" sess-second second
session "$S3" "$P1/sub dir" sess-sub sub
session "$S4" "$P2" sess-other other
session "$S5" "$P3" sess-sibling other

# ------------------------------------------------------------ help
run scan --help
check "scan --help" out_has "Usage: ds scan"
run queue --help
check "queue --help" out_has "Usage: ds queue"
run queue bogus
check "queue bogus: usage error" rc_is 2
run queue retry
check "queue retry without id: usage error" rc_is 2

# ------------------------------------------------------------ queue before anything
run queue status
check "queue status without a store: exit 0" rc_is 0
check "queue status lists pending" out_has "pending"

# ------------------------------------------------------------ scan
run scan --project "$P1" --json
check "scan P1: exit 0" rc_is 0
check "scan P1: three sessions (own folder + subdirectory)" jq_ 'd["sessions"] == 3'
check "scan P1: nodes written" jq_ 'd["nodes"] > 0'
check "scan P1: nothing failed" jq_ 'd["failed"] == 0'
check "scan P1: the sibling project is not included" out_lacks "33333333"
check "scan P1: the other project is not included" out_lacks "22222222"
NODES1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"])' "$T/out")

run query --json --limit 10 "importer CSV memory"
check "query finds the importer fix" jq_ 'any("streaming rows" in h["content"] for h in d)'
check "query: session source type and project" \
    jq_ "any(h['project'] == '$P1' and h['source'] == 'sess-main' for h in d)"

run query --json --limit 10 "LMDB cache SQLite"
check "query finds the decision of the second session" jq_ 'any("LMDB" in h["content"] for h in d)'

run query --json --limit 10 "date parser time zones"
check "subdirectory session keeps its own project" \
    jq_ "any(h['project'] == '$P1/sub dir' for h in d)"

run query --json --limit 10 "gamma rays"
check "sidechain entries are not ingested" jq_ 'not any("gamma" in h["content"] for h in d)'
run query --json --limit 10 "secret plan zeta"
check "system reminders are not ingested" jq_ 'not any("zeta" in h["content"] for h in d)'

run show --json --limit 1000
check "show --json: exit 0" rc_is 0
check "secret AWS key never stored" out_lacks "$AWS"
check "secret GitHub token never stored" out_lacks "$GHT"
check "redaction marker present" out_has "[REDACTED:"
check "show: session nodes carry metadata" out_has "transcript"

run queue status --json
check "queue status --json: done jobs recorded" jq_ 'd["counts"]["done"] == 3'
check "queue status --json: nothing pending" jq_ 'd["counts"]["pending"] == 0'
run queue
check "queue (default status): exit 0" rc_is 0
check "queue text shows done" out_has "done"

# ------------------------------------------------------------ idempotence
run scan --project "$P1" --json
check "re-scan: exit 0" rc_is 0
check "re-scan adds nothing" jq_ 'd["nodes"] == 0'
check "re-scan: all unchanged" jq_ 'd["skipped"] == 3'
run stats --json
check "node count unchanged after re-scan" jq_ "d['nodes'] == $NODES1"

# Appending to a session ingests only the new part.
python3 - "$S2" "$P1" <<'EOF'
import json, sys
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"type": "assistant", "cwd": sys.argv[2], "sessionId": "sess-second",
        "message": {"role": "assistant", "content": "The problem was a missing index on "
        "orders.customer_id, fixed by adding it in migration 0042."}}) + "\n")
EOF
run scan --project "$P1" --json
check "append: new nodes only" jq_ 'd["nodes"] >= 1 and d["skipped"] == 2'
run query --json --limit 10 "orders customer index migration"
check "append: new insight found" jq_ 'sum("0042" in h["content"] for h in d) == 1'

# Scan from the project directory itself (default: current directory).
(cd "$P2" && "$DS" scan --json >"$T/out" 2>"$T/err" </dev/null); RC=$?
check "scan in cwd: exit 0" rc_is 0
check "scan in cwd: one session" jq_ 'd["sessions"] == 1'

run scan --project "$T/work/nothing-here"
check "scan of a project without sessions: exit 0" rc_is 0
check "scan without sessions says so" err_has "no Claude Code sessions"

run queue pending
check "queue pending: exit 0" rc_is 0
run queue failed
check "queue failed: none" out_has "no failed jobs"
run queue retry zzzz
check "queue retry with a non-hex id: error" rc_is 2
run queue retry abcdef
check "queue retry unknown id: error" rc_is 1
check "queue retry unknown id: message" err_has "no job matches"
run queue clear
check "queue clear: exit 0" rc_is 0
run queue status --json
check "queue clear removed done jobs" jq_ 'd["counts"]["done"] == 0'

finish
