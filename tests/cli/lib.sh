# lib.sh - helpers shared by the integration tests in tests/cli.
#
# Not a test itself (ctest registers only tests/cli/test_*.sh): each test
# sources it, right after `set -u`, and calls lib_init with its arguments:
#
#     . "$(dirname "$0")/lib.sh"
#     lib_init ds-foo-test "$@"
#     ...checks...
#     finish
#
# The contract with the test runner (tests/CMakeLists.txt, scripts/test.sh
# read only the exit status): the last line on stdout is
# "N passed, M failed" (finish), the exit status is 0 only when no check
# failed, 2 on bad usage.  Every "FAIL: ..." line goes to stderr.
#
# Globals: DS (absolute path of the ds under test), HERE (this directory),
# T (the scratch directory, removed at exit), PASS, FAIL, RC; set by the
# tests: PIDS, STOP_HOMES, RUN_TAKES_HOME, CHECK_DETAIL, PY_ERR,
# SUMMARY_PREFIX.
# shellcheck shell=bash

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

PASS=0
FAIL=0
RC=0
PIDS=()            # processes killed (kill -9) at exit: only ones we started
STOP_HOMES=()      # homes whose daemon gets `ds stop` at exit
RUN_TAKES_HOME=0   # 1: run's first argument is the DS_HOME to use
CHECK_DETAIL=600   # bytes of stdout/stderr a failed check shows
PY_ERR=            # file the JSON helpers' Python stderr is appended to ("": stderr)
SUMMARY_PREFIX=    # put before "N passed, M failed"

# lib_init [--more USAGE-TAIL] TAG ARGS...: checks the test's arguments
# (exactly one, an executable ds; with --more, extra arguments are allowed
# and USAGE-TAIL is appended to the usage line), sets DS to its absolute
# path, makes T (mktemp -d ${TMPDIR:-/tmp}/TAG.XXXXXX, physical path),
# installs the EXIT trap, exports TZ=UTC and unsets DS_DEBUG.
lib_init() {
    local more="" extra=0
    if [ "${1:-}" = --more ]; then
        more=" $2"
        extra=1
        shift 2
    fi
    local tag=$1
    shift
    if [ $# -lt 1 ] || { [ "$extra" = 0 ] && [ $# -ne 1 ]; } || [ ! -x "$1" ]; then
        echo "usage: $0 /path/to/ds$more" >&2
        exit 2
    fi
    DS=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    T=$(mktemp -d "${TMPDIR:-/tmp}/$tag.XXXXXX") || exit 2
    T=$(cd "$T" && pwd -P)
    trap lib_cleanup EXIT
    export TZ=UTC
    unset DS_DEBUG 2>/dev/null || true
}

# lib_cleanup (the EXIT trap): stops the daemons of STOP_HOMES that have a
# pid file, kills PIDS, removes T (even parts made unreadable).
lib_cleanup() {
    local h p
    for h in ${STOP_HOMES[@]+"${STOP_HOMES[@]}"}; do
        [ -f "$h/daemon.pid" ] && stop_daemon "$h"
    done
    for p in ${PIDS[@]+"${PIDS[@]}"}; do
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null   # reaps a child quietly (no "Killed" notice)
    done
    chmod -R u+rwx "$T" 2>/dev/null
    rm -rf "$T"
}

# ---- counting and reporting --------------------------------------------------
ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*" >&2; }

# check DESC CONDITION-COMMAND...: counts a pass or a failure; a failure
# also shows RC and the head of $T/out and $T/err (if run wrote them;
# CHECK_DETAIL=0 turns that off).
check() {
    local desc=$1
    shift
    if "$@"; then ok; else
        bad "$desc"
        if [ "$CHECK_DETAIL" -gt 0 ] && { [ -e "$T/out" ] || [ -e "$T/err" ]; }; then
            echo "  rc=${RC:-} stdout: $(head -c "$CHECK_DETAIL" "$T/out" 2>/dev/null)" >&2
            echo "  stderr: $(head -c "$CHECK_DETAIL" "$T/err" 2>/dev/null)" >&2
        fi
    fi
}

# summary: prints "N passed, M failed" (after SUMMARY_PREFIX).
summary() { echo "$SUMMARY_PREFIX$PASS passed, $FAIL failed"; }
# finish: the last line of a test: summary, exit 1 on any failure.
finish() {
    summary
    [ "$FAIL" -eq 0 ] || exit 1
    exit 0
}
# abort DESC: a failure the rest cannot run without: counted, then finish.
abort() {
    bad "$1"
    finish
}

# ---- running ds --------------------------------------------------------------
# run ARGS... (run HOME ARGS... when RUN_TAKES_HOME=1): runs ds with stdin
# from /dev/null; sets RC, leaves stdout in $T/out and stderr in $T/err.
run() {
    if [ "$RUN_TAKES_HOME" = 1 ]; then
        local h=$1
        shift
        DS_HOME="$h" "$DS" "$@" >"$T/out" 2>"$T/err" </dev/null
    else
        "$DS" "$@" >"$T/out" 2>"$T/err" </dev/null
    fi
    RC=$?
}
rc_is() { [ "$RC" -eq "$1" ]; }
out_has() { grep -qF -- "$1" "$T/out"; }
out_lacks() { ! grep -qF -- "$1" "$T/out"; }
out_empty() { [ ! -s "$T/out" ]; }
err_has() { grep -qF -- "$1" "$T/err"; }
err_lacks() { ! grep -qF -- "$1" "$T/err"; }
# note HOME PROJECT TEXT (with RUN_TAKES_HOME=1): ds note -p PROJECT TEXT
# in HOME, counted as the check "note in PROJECT" (exit status 0).
note() { run "$1" note -p "$2" "$3"; check "note in $2" rc_is 0; }

# _py PROGRAM ARGS...: python3 -c, its stderr to PY_ERR when set.
_py() {
    if [ -n "$PY_ERR" ]; then
        python3 -c "$@" 2>>"$PY_ERR"
    else
        python3 -c "$@"
    fi
}
# jq_ PY-EXPR: true when the Python expression holds for d = JSON of
# stdout ($T/out); json, re and sys are imported.
jq_() {
    _py '
import json, re, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$T/out" "$1"
}
# jval PY-EXPR: prints the value of the expression over d = JSON of stdout.
jval() {
    _py '
import json, re, sys
d = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$T/out" "$1"
}

# ---- processes, daemons, waiting -----------------------------------------------
remember() { PIDS+=("$1"); }   # remember PID: killed at exit
alive() { kill -0 "$1" 2>/dev/null; }
dead() { ! alive "$1"; }
# stop_daemon HOME: ds stop for that home, quietly.
stop_daemon() { DS_HOME=$1 "$DS" stop >/dev/null 2>&1 </dev/null; }

# poll DESC SECONDS CMD...: runs CMD (its output discarded) every 0.1 s
# until it succeeds, at most SECONDS x 10 times; on a timeout says so on
# stderr (unless DESC is empty) and returns 1.
poll() {
    local desc=$1 limit=$2 i
    shift 2
    for ((i = 0; i < limit * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    [ -z "$desc" ] || echo "timed out after ${limit}s waiting for: $desc" >&2
    return 1
}
# wait_until CMD...: poll quietly for up to 10 s.
wait_until() { poll "" 10 "$@"; }
# hold_udp_port SECONDS: a process holds a UDP port on 127.0.0.1 (the
# system picks it) for SECONDS at most; sets BUSY (the port) and BUSYPID
# (kill it to free the port; remembered, so killed at exit anyway).
hold_udp_port() {
    python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True); time.sleep(float(sys.argv[1]))' "$1" >"$T/busy.port" &
    BUSYPID=$!
    remember "$BUSYPID"
    wait_until test -s "$T/busy.port"
    BUSY=$(cat "$T/busy.port")
}

# ---- Claude Code session fixtures (tests/cli/claude_fixture.py) -----------------
# Two planted secrets the transcripts carry and the store must never hold.
AWS=AKIAIOSFODNN7EXAMPLE
GHT=ghp_16C7e42F292c6912E7710c838347Ae178B4a
# enc PATH: the folder name Claude Code gives a project (non-alphanumerics -> '-').
enc() { python3 -c 'import re,sys; print(re.sub(r"[^A-Za-z0-9]", "-", sys.argv[1]))' "$1"; }
# fixture write|append FILE --cwd DIR --session ID --kind KIND: a transcript.
fixture() { python3 "$HERE/claude_fixture.py" "$@" --aws "$AWS" --ght "$GHT"; }
