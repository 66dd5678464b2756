#!/usr/bin/env bash
# shellcheck disable=SC2317  # predicates are only called through check (lib.sh)
# test_daemon.sh - integration test of the ds daemon: start/stop/status,
# one daemon per home, the socket (mode 0600) carrying real requests,
# SIGHUP reload (good and broken configuration; "sync" settings are not
# applied and the log says so), kill -9 recovery, a bad configuration
# refused before detaching (sync.interval and --sync-interval name the
# value), sync.listen without an identity (warned by ds start and in the
# log) or on a port in use (the message names the source), log rotation,
# --foreground.
#
# Usage: bash tests/cli/test_daemon.sh /path/to/ds
#
# Everything lives in a mktemp -d directory: DS_HOME, and HOME (so that
# ~/.claude is a fake empty directory).  Every wait is a bounded poll.
# Only daemons this script started are killed (by the PIDs it read), also
# on failure.  The last line is "N passed, M failed"; exit non-zero on
# any failure.
set -u
. "$(dirname "$0")/lib.sh"
lib_init ds-daemon-test "$@"
export DS_HOME="$T/home"
export HOME="$T/user"
mkdir -p "$HOME/.claude/projects" "$T/watch" "$T/watch2" "$DS_HOME"
CFG="$DS_HOME/config.json"
LOG="$DS_HOME/daemon.log"
PY_ERR=/dev/null

log_has() { grep -qF -- "$1" "$LOG" 2>/dev/null; }
log_count() { grep -cF -- "$1" "$LOG" 2>/dev/null || true; }
log_grew() { [ "$(log_count "$1")" -gt "$2" ]; }
pidfile() { cat "$DS_HOME/daemon.pid" 2>/dev/null; }
requests() {
    "$DS" status --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'
}

write_cfg() { # write_cfg WATCHDIR [extra JSON members]
    printf '{"watch": ["%s"], "idle_seconds": 60%s}\n' "$1" "${2:+, $2}" >"$CFG"
}
write_cfg "$T/watch"

# ---- help ------------------------------------------------------------------
run --help
check "ds --help lists start/stop/status" sh -c "grep -q '^  start' '$T/out' && grep -q '^  stop' '$T/out' && grep -q '^  status' '$T/out'"
check "ds --help mentions the config file" out_has "config.json"
run start --help
check "start --help documents the config keys" sh -c "grep -q idle_seconds '$T/out' && grep -q max_bytes '$T/out' && grep -q -- --foreground '$T/out'"
check "start --help: SIGHUP does not apply sync settings" out_has 'apply "sync" settings: changed ones are logged'

# ---- no daemon yet ------------------------------------------------------------
run status
check "status without daemon: exit 3" rc_is 3
check "status without daemon: message" out_has "Datasphere daemon is not running (home $DS_HOME). Start it with: ds start"
run status --json
check "status --json without daemon" jq_ 'd["running"] is False and d["home"] == "'"$DS_HOME"'"'
run stop
check "stop without daemon: exit 0" rc_is 0
check "stop without daemon: says so" out_has "not running"

# ---- start --------------------------------------------------------------------
run start
check "start: exit 0" rc_is 0
P1=$(pidfile)
[ -n "$P1" ] && remember "$P1"
check "start: prints pid and log" out_has "Daemon started (pid $P1). Log: $DS_HOME/daemon.log"
check "daemon process alive" alive "${P1:-0}"
check "pid file is 0644" test "$(stat -c %a "$DS_HOME/daemon.pid" 2>/dev/null)" = 644
check "socket exists" test -S "$DS_HOME/daemon.sock"
check "socket mode 0600" test "$(stat -c %a "$DS_HOME/daemon.sock" 2>/dev/null)" = 600
check "daemon detached (own session)" test "$(ps -o sid= -p "${P1:-0}" | tr -d ' ')" != "$(ps -o sid= -p $$ | tr -d ' ')"

run start
check "second start refused: exit 1" rc_is 1
check "second start names the pid" err_has "already running (pid $P1"

run status
check "status running: exit 0" rc_is 0
check "status shows running and pid" out_has "Datasphere daemon is running (pid $P1)."
check "status shows watched dir" out_has "$T/watch"
check "status shows uptime" out_has "Uptime:"
check "status shows queue" out_has "Queue:"
run status --json
check "status --json fields" jq_ 'd["running"] is True and d["pid"] == '"${P1:-0}"' and d["protocol"] == 1 and d["watched"] == ["'"$T/watch"'"] and set(d["queue"]) >= {"pending","processing","done","failed"} and "uptime_s" in d and d["nodes"] == 0 and "last_ingest" in d'

# ---- requests over the socket ----------------------------------------------------
R0=$(requests)
mkdir -p "$T/proj"
(cd "$T/proj" && "$DS" note "the daemon stores notes over its socket" >"$T/out" 2>"$T/err")
RC=$?
check "note via daemon: exit 0" rc_is 0
R1=$(requests)
check "note went over the socket (request counter grew by 2)" test "${R1:-0}" -eq $(( ${R0:-0} + 2 ))
run query "notes over socket"
check "query via daemon finds the note" out_has "the daemon stores notes over its socket"
R2=$(requests)
check "query went over the socket" test "${R2:-0}" -eq $(( ${R1:-0} + 2 ))
run query --json socket
check "query --json via daemon" jq_ 'len(d) == 1 and d[0]["content"].startswith("the daemon stores")'
run status
check "status counts the note" out_has "note 1"

# ---- SIGHUP --------------------------------------------------------------------
N=$(log_count "configuration reloaded")
write_cfg "$T/watch2"
kill -HUP "$P1"
check "SIGHUP with a good config: reloaded (log)" wait_until log_grew "configuration reloaded" "$N"
run status --json
check "reload applied the new watch dir" jq_ 'd["watched"] == ["'"$T/watch2"'"]'

N=$(log_count "configuration reload failed")
echo '{"watch": ["'"$T/watch"'"], "idle_secs": 5}' >"$CFG"
kill -HUP "$P1"
check "SIGHUP with a broken config: error logged" wait_until log_grew "configuration reload failed" "$N"
check "broken-config error names the key" log_has "idle_secs"
check "daemon still alive after a bad reload" alive "$P1"
run status --json
check "bad reload keeps the old config" jq_ 'd["running"] is True and d["watched"] == ["'"$T/watch2"'"]'

# SIGHUP does not apply the "sync" section (bound sockets, set timers):
# the log says which settings wait for the next ds start, at every
# SIGHUP until they match the running ones again.
N=$(log_count "configuration reloaded")
write_cfg "$T/watch2" '"sync": {"interval": "5m", "max_concurrent": 2}'
kill -HUP "$P1"
check "SIGHUP with new sync settings: reloaded" wait_until log_grew "configuration reloaded" "$N"
check "SIGHUP with new sync settings: warns which wait for the next start" wait_until log_has "sync settings (sync.interval, sync.max_concurrent) changed in $CFG take effect at the next ds start"
W=$(log_count "take effect at the next ds start")
N=$(log_count "configuration reloaded")
kill -HUP "$P1"
check "second SIGHUP: still not applied, warned again" wait_until log_grew "take effect at the next ds start" "$W"
W=$(log_count "take effect at the next ds start")
write_cfg "$T/watch2"
kill -HUP "$P1"
check "sync settings back to the running ones: reloaded" wait_until log_grew "configuration reloaded" "$((N + 1))"
check "sync settings back to the running ones: no warning" test "$(log_count "take effect at the next ds start")" -eq "$W"

# ---- stop --------------------------------------------------------------------
write_cfg "$T/watch"
run stop
check "stop: exit 0" rc_is 0
check "stop: message" out_has "Daemon stopped (pid $P1)."
check "daemon gone after stop" wait_until dead "$P1"
check "pid file removed" test ! -e "$DS_HOME/daemon.pid"
check "socket removed" test ! -e "$DS_HOME/daemon.sock"
check "log says stopped" log_has "SIGTERM: shutting down"
run status
check "status after stop: exit 3" rc_is 3
check "status after stop: not running" out_has "is not running"
check "status after stop: node counts" out_has "Nodes:          1"
run query "notes over socket"
check "in-process query still works" out_has "the daemon stores notes over its socket"

# ---- kill -9 leaves stale files; a new start still works -------------------------------
run start
P2=$(pidfile)
[ -n "$P2" ] && remember "$P2"
check "restart: exit 0" rc_is 0
kill -9 "$P2" 2>/dev/null
check "killed daemon is gone" wait_until dead "$P2"
check "stale pid file left behind" test -e "$DS_HOME/daemon.pid"
check "stale socket left behind" test -S "$DS_HOME/daemon.sock"
run status
check "status with stale files: exit 3" rc_is 3
run start
P3=$(pidfile)
[ -n "$P3" ] && remember "$P3"
check "start over stale files: exit 0" rc_is 0
check "new daemon has a new pid" test -n "$P3" -a "$P3" != "$P2"
run status
check "new daemon answers" out_has "is running (pid $P3)"
check "stale socket removal logged" log_has "removed a stale socket"
run stop
check "stop new daemon" rc_is 0
check "new daemon gone" wait_until dead "${P3:-0}"

# ---- bad config at start: refused before detaching -------------------------------------
echo '{"watch": ["'"$T/watch"'"], "distiller": {"type": "command"}}' >"$CFG"
run start
check "start with bad config: exit 1" rc_is 1
check "bad config message names file and key" sh -c "grep -qF '$CFG' '$T/err' && grep -qF 'distiller.argv' '$T/err'"
check "no daemon after bad config" test ! -e "$DS_HOME/daemon.pid"
run status
check "status after refused start: exit 3" rc_is 3
printf '{\n"watch": [\n' >"$CFG"
run start
check "start with invalid JSON: exit 1" rc_is 1
check "invalid JSON message has a line number" err_has "$CFG:"

# sync.interval: the offending value in the message; --sync-interval the
# same parser (units largest first, each once)
write_cfg "$T/watch" '"sync": {"interval": "30x"}'
run start
check "sync.interval \"30x\": exit 1" rc_is 1
check "sync.interval \"30x\": the value and why" err_has '"30x" has an unknown unit'
write_cfg "$T/watch" '"sync": {"interval": "1m1m"}'
run start
check "sync.interval \"1m1m\": refused, repeats a unit" err_has '"1m1m" repeats a unit'
write_cfg "$T/watch" '"sync": {"interval": null}'
run start
check "sync.interval null: the value" err_has "got null"
write_cfg "$T/watch"
run start --sync-interval 1m1m
check "--sync-interval 1m1m: usage error" rc_is 2
check "--sync-interval 1m1m: repeats a unit" err_has "'1m1m' repeats a unit"
run start --sync-interval 5s5m
check "--sync-interval 5s5m: units out of order" err_has "'5s5m' has its units out of order"
check "refused intervals: nothing started" test ! -e "$DS_HOME/daemon.pid"

# ---- sync.listen: no identity yet, address in use --------------------------------
# A UDP port free on 127.0.0.1 right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
write_cfg "$T/watch" "\"sync\": {\"listen\": \"127.0.0.1:$PORT\"}"
run start
P5=$(pidfile)
[ -n "$P5" ] && remember "$P5"
check "sync.listen without an identity: starts" rc_is 0
check "sync.listen without an identity: ds start warns, as for --listen" err_has "not accepting peer connections yet: this node has no identity yet"
check "sync.listen without an identity: ds start says what to run" err_has "ds peer init"
check "sync.listen without an identity: logged" log_has "sync: not accepting peer connections on 127.0.0.1:$PORT yet: this node has no identity yet"
run stop
check "daemon gone" wait_until dead "${P5:-0}"
# a port something else holds: where the address came from, what to do
# (binding needs the node's key)
run peer init
check "peer init" rc_is 0
hold_udp_port 120
write_cfg "$T/watch" "\"sync\": {\"listen\": \"127.0.0.1:$BUSY\"}"
N=$(log_count "startup failed")
run start
check "sync.listen in use: exit 1" rc_is 1
check "sync.listen in use: cannot listen" err_has "cannot listen on 127.0.0.1:$BUSY"
check "sync.listen in use: names sync.listen in config.json" err_has "comes from sync.listen in $CFG"
check "sync.listen in use: says what to do" err_has "pick another port"
check "failed start: the daemon cleans up and exits (no crash)" wait_until log_grew "startup failed" "$N"
write_cfg "$T/watch"
run start --listen "127.0.0.1:$BUSY"
check "--listen in use: exit 1" rc_is 1
check "--listen in use: names --listen" err_has "comes from --listen"
check "--listen in use: not 'already running'" err_lacks "already running"
check "failed starts: no daemon" test ! -e "$DS_HOME/daemon.pid"
# 'ds start' reports the failure only once the daemon let go of the home
run status
check "failed start: no daemon left holding the home" out_has "is not running"
kill "$BUSYPID" 2>/dev/null
wait "$BUSYPID" 2>/dev/null

# ---- log rotation --------------------------------------------------------------
write_cfg "$T/watch" '"log": {"max_bytes": 400, "keep": 2, "level": "debug"}'
run start
P4=$(pidfile)
[ -n "$P4" ] && remember "$P4"
check "start with tiny log limit" rc_is 0
for i in 1 2 3 4 5 6 7 8 9 10; do "$DS" stats >/dev/null 2>&1; done
check "log rotated to daemon.log.1" test -e "$LOG.1"
check "at most keep=2 old logs" test ! -e "$LOG.3"
check "current log stays small" test "$(stat -c %s "$LOG")" -lt 1200
run stop
check "stop after rotation" rc_is 0
check "daemon gone" wait_until dead "${P4:-0}"

# ---- --foreground ---------------------------------------------------------------
write_cfg "$T/watch"
"$DS" start --foreground >"$T/fg.out" 2>"$T/fg.err" </dev/null &
FG=$!
remember "$FG"
check "foreground daemon ready" wait_until test -S "$DS_HOME/daemon.sock"
run status
check "foreground daemon answers with its pid" out_has "is running (pid $FG)"
check "foreground logs to stderr" wait_until grep -q "ready: listening" "$T/fg.err"
kill -TERM "$FG"
FGRC=124
if wait_until dead "$FG"; then wait "$FG"; FGRC=$?; fi
check "foreground daemon exits 0 on SIGTERM" test "$FGRC" -eq 0
check "foreground says stopped" grep -q "Daemon stopped." "$T/fg.err"

finish
