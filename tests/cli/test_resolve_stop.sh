#!/usr/bin/env bash
# test_resolve_stop.sh - a sync stopped while the peer's host name is
# still being looked up.  libuv runs the look-up on its thread pool, where
# a running look-up cannot be cancelled, and its request lives in the sync
# job: the job may be freed only after the look-up has called back.
#
# Usage: bash tests/cli/test_resolve_stop.sh /path/to/ds
#
# The look-up is made slow by tests/tools/slow_resolve.c, preloaded
# ($DS_SLOW_RESOLVE, set by ctest; else next to ds in the build tree):
# it creates a mark file when the look-up starts and answers "no such
# name" after a while.  Checks, each with the mark seen first:
# - `ds peer sync` in process, SIGINT during the look-up: exits 130 with
#   "interrupted by SIGINT while connecting", no sanitizer report (the old
#   code freed the job and left the event loop unclosed: a leak report
#   under ASan);
# - a daemon stopped (`ds stop`) during its sync's look-up: it stops
#   cleanly (not killed), logs "stopped", and no sanitizer report (the old
#   code freed the job, then the look-up's callback read it: a
#   use-after-free under ASan); the waiting `ds peer sync` says the daemon
#   stopped.
set -u
. "$(dirname "$0")/lib.sh"
lib_init ds-resolve-stop "$@"

SHIM=${DS_SLOW_RESOLVE:-$(dirname "$DS")/tests/slow_resolve.so}
[ -f "$SHIM" ] || { echo "test_resolve_stop: $SHIM not found (build the slow_resolve target)" >&2; exit 2; }

A="$T/alice" B="$T/bob"
RUN_TAKES_HOME=1
run "$A" peer init
run "$A" peer id
AID=$(cat "$T/out")
run "$B" peer init
run "$B" peer add "$AID" --name alice --addr slow.test:4433
check "peer with a host name address" rc_is 0

# Preloading a library ahead of a sanitized ds: ASan must accept it, and
# its reports go to files that the checks look for.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:log_path=$T/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$T/ubsan"
no_sanitizer_report() {
    local f
    for f in "$T"/asan.* "$T"/ubsan.*; do
        [ -e "$f" ] && { echo "sanitizer report: $f" >&2; head -n 20 "$f" >&2; return 1; }
    done
    return 0
}
# slow MARK MS CMD...: CMD as bob, slow.test's look-up taking MS ms.
slow() {
    env DS_TEST_SLOW_HOST=slow.test DS_TEST_SLOW_MARK="$1" DS_TEST_SLOW_MS="$2" \
        LD_PRELOAD="$SHIM" DS_HOME="$B" "${@:3}"
}

# ---- in process: SIGINT during the look-up -----------------------------------
# (env here, not slow: $! must be ds's own PID, not a subshell's)
env DS_TEST_SLOW_HOST=slow.test DS_TEST_SLOW_MARK="$T/mark1" DS_TEST_SLOW_MS=1500 \
    LD_PRELOAD="$SHIM" DS_HOME="$B" "$DS" peer sync >"$T/out" 2>"$T/err" </dev/null &
pid=$!
remember "$pid"
poll "the look-up to start" 10 test -e "$T/mark1"
kill -INT "$pid"
wait "$pid"
RC=$?
check "in process: SIGINT while resolving exits 130" rc_is 130
check "in process: says where it stopped" err_has "interrupted by SIGINT while connecting"
check "in process: no sanitizer report" no_sanitizer_report

# ---- daemon: ds stop during its sync's look-up -------------------------------
slow "$T/mark2" 1500 "$DS" start >"$T/start.out" 2>"$T/start.err" </dev/null
check "daemon starts" [ -f "$B/daemon.pid" ]
STOP_HOMES+=("$B")
DS_HOME=$B "$DS" peer sync >"$T/sync.out" 2>"$T/sync.err" </dev/null &
spid=$!
remember "$spid"
poll "the daemon's look-up to start" 10 test -e "$T/mark2"
run "$B" stop
check "daemon: ds stop ok" rc_is 0
check "daemon: stopped, not killed" out_lacks "Daemon killed"
check "daemon: gone" [ ! -f "$B/daemon.pid" ]
check "daemon: logged a clean stop" grep -q "stopped (served" "$B/daemon.log"
wait "$spid"
src=$?
check "daemon: the waiting sync fails" [ "$src" -ne 0 ]
check "daemon: no sanitizer report" no_sanitizer_report

finish
