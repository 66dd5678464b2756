#!/usr/bin/env bash
# test_netsync.sh - end-to-end test of live network sync: three homes on
# loopback (alice, bob, carol, plus dave for IPv6), all with real daemons
# (ds start --listen 127.0.0.1:PORT), playing the P2P spec's example
# session with authorization before the first sync.
#
# Usage: bash tests/cli/test_netsync.sh /path/to/ds [/path/to/bench_sync]
#
# Checks: tickets and --addr; bob receives alice's shared nodes and
# never her private canary; an incremental sync sends only new nodes; a
# project alice shares later reaches bob on the next incremental sync,
# old nodes included; --full re-fetches without duplicates; carol, not
# authorized, gets the NotAuthorized message and no node; alice syncs
# back from bob; killing alice's daemon mid-sync (bob's sync ends with a
# stateless reset once she is back) and syncing again ends with exactly
# alice's shared set on bob's side; a stalled publisher ends the sync at
# the no-progress timeout, saying what was kept; `ds query` on bob shows
# [alice] hits; ds peer list shows result, address and path; an
# unreachable peer fails within a bounded time naming the addresses
# tried; IPv6 (::1) and a dead first address; the daemon's --sync retry
# with backoff; removing a peer while the daemon is syncing it; ds peer
# init --force while the daemon runs (the new key is used at once, the
# old one stops working); ds start --listen before ds peer init (warns,
# then listens once there is a key); a sync of every peer, in the daemon
# and in process, skips a subscribed peer that has no address and still
# succeeds.
# Only 127.0.0.1 / ::1, every wait bounded, only our daemons are stopped.
set -u
. "$(dirname "$0")/lib.sh"
lib_init --more '[/path/to/bench_sync]' ds-netsync-test "$@"
unset DS_HOME
BENCH=${2:-$(dirname "$DS")/bench/bench_sync}
# bench_sync (built with the tests) loads enough nodes that the kill lands
# mid-sync.
[ -x "$BENCH" ] || abort "bench_sync not found at $BENCH: build it (cmake --build BUILD) or pass its path"
A="$T/alice" B="$T/bob" C="$T/carol" D="$T/dave"
RUN_TAKES_HOME=1   # run HOME ARGS...
CHECK_DETAIL=800
STOP_HOMES=("$A" "$B" "$C" "$D" "$T/fay")   # stopped at exit: only our daemons
export DS_SYNC_CONNECT_TIMEOUT_MS=3000 DS_LOCK_TIMEOUT_MS=10000

# A UDP port free on both 127.0.0.1 and ::1 right now.
free_port() {
    python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 60000)
    try:
        for fam, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.bind((host, p))
            s.close()
        print(p)
        break
    except OSError:
        continue
PY
}
# start_daemon HOME ARGS...: ds start with --listen on a free port (a few
# tries on conflict); sets PORT.  Extra args go to ds start.
start_daemon() {
    local h=$1
    shift
    local i
    for i in 1 2 3 4 5; do
        PORT=$(free_port)
        run "$h" start --listen "127.0.0.1:$PORT" "$@"
        [ "$RC" -eq 0 ] && return 0
        grep -q "cannot listen" "$T/err" || return 1
    done
    return 1
}
start_daemon_port() {  # HOME PORT ARGS...: restart on a known port
    local h=$1 p=$2
    shift 2
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        run "$h" start --listen "127.0.0.1:$p" "$@"
        [ "$RC" -eq 0 ] && return 0
        sleep 0.3
    done
    return 1
}
replica_count() {  # HOME PEER: nodes in the peer's replica (ds peer list --json)
    DS_HOME="$1" "$DS" peer list --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(p["nodes"] for p in d["peers"] if p["label"] == sys.argv[1]))' "$2"
}
# shellcheck disable=SC2317  # called through poll (lib.sh)
replica_is() { [ "$(replica_count "$1" "$2")" = "$3" ]; }   # HOME PEER N

# ---- homes and projects ----------------------------------------------------
PA="$T/work/alice/rust-patterns"
PAPRIV="$T/work/alice/private"
PALATER="$T/work/alice/later"
PB="$T/work/bob/error-handling-guide"
mkdir -p "$PA" "$PAPRIV" "$PALATER" "$PB"

for h in "$A" "$B" "$C" "$D"; do
    run "$h" peer init
    check "peer init $(basename "$h")" rc_is 0
done
AID=$(DS_HOME="$A" "$DS" peer id)
BID=$(DS_HOME="$B" "$DS" peer id)
CID=$(DS_HOME="$C" "$DS" peer id)
DID=$(DS_HOME="$D" "$DS" peer id)

note "$A" "$PA" "SHARED1 Using derive Error with thiserror for library errors"
note "$A" "$PA" "SHARED2 thiserror derive and anyhow context in applications"
note "$A" "$PA" "SHARED3 error handling patterns in async Rust"
note "$A" "$PAPRIV" "CANARYPRIVATE thiserror derive secret private notes"
note "$A" "$PALATER" "LATERPROJ thiserror derive an old note of a project shared later"
note "$B" "$PB" "BOBGUIDE my notes on error handling guide"

# ---- alice: share, start ---------------------------------------------------
run "$A" peer share "$PA"
check "alice shares rust-patterns" out_has "Added to shared projects: $PA"
start_daemon "$A"
check "alice's daemon starts" rc_is 0
check "alice: Accepting peer connections" out_has "Accepting peer connections on 127.0.0.1:$PORT"
APORT=$PORT
run "$A" peer ticket
check "ticket: one line with NodeId and address" \
    [ "$(cat "$T/out")" = "ds1:$AID@127.0.0.1:$APORT" ]
ATICKET=$(cat "$T/out")

# ---- bob: add alice by ticket, authorize both ways --------------------------
run "$B" peer add "$ATICKET" --name alice
check "bob adds alice by ticket" out_has "Added peer 'alice'"
check "ticket address stored" out_has "Addresses: 127.0.0.1:$APORT"
run "$B" peer add "$AID" --publish
check "bob lets alice pull" out_has "Updated: alice can now pull from us"
run "$B" peer share "$PB"
check "bob shares back" out_has "Added to shared projects: $PB"
# Authorization before the first sync (alice's daemon applies it).
run "$A" peer add "$BID" --name bob --publish
check "alice authorizes bob" out_has "bob can pull from us"
start_daemon "$B"
check "bob's daemon starts" rc_is 0
BPORT=$PORT

# ---- first sync -------------------------------------------------------------
# Bob also subscribes to carol for ds peer import only (no address): a sync
# of every peer (in bob's daemon) skips her, says so, and still succeeds.
run "$B" peer add "$CID" --name carolfile
check "bob adds carol without an address" rc_is 0
run "$B" peer sync
check "sync: ok" rc_is 0
check "sync: spec's summary line" out_has "Syncing with alice... 3 nodes received."
check "sync (daemon): the addressless peer is skipped, saying so" \
    err_has "Skipping carolfile: no address known (add one with ds peer add carolfile --addr HOST:PORT)"
check "sync (daemon): carol's last result untouched" python3 -c "
import json,sys; p=json.load(open('$B/peers.json'))['peers']['$CID']
sys.exit(0 if 'last_result' not in p and 'last_attempt' not in p else 1)"
run "$B" peer sync --json
check "sync (daemon) --json: ok" rc_is 0
check "sync (daemon) --json: skipped with a reason, alice done" \
    jq_ "sorted((p['label'], p['state'], p['reason'] is None) for p in d['peers']) == [('alice', 'done', True), ('carolfile', 'skipped', False)]"
run "$B" peer remove carolfile
check "bob removes carolfile" rc_is 0
run "$B" query "thiserror derive"
check "query on bob shows [alice] hits" out_has "[alice]"
run "$B" query --peer alice --json --limit 50 "thiserror derive private secret old"
check "no private canary, no unshared project" \
    jq_ "not any(w in h['content'] for h in d for w in ('CANARYPRIVATE', 'LATERPROJ'))"
check "bob's replica: exactly the shared set" \
    python3 -c "import sys; sys.exit(0 if '$(replica_count "$B" alice)' == '3' else 1)"
check "replica meta.json has a cursor" python3 -c "
import json,sys; m=json.load(open('$B/peers/$AID/meta.json'))
sys.exit(0 if m['node_count']==3 and m['sync_cursor'] and m['last_sync'] else 1)"
run "$B" peer list
check "peer list: result, address, direct" out_has ": ok (via 127.0.0.1:$APORT, direct)"

# ---- incremental ------------------------------------------------------------
note "$A" "$PA" "SHARED4 incremental sync sends only new nodes"
note "$A" "$PA" "SHARED5 second new node"
run "$B" peer sync --json
check "incremental: only the 2 new nodes sent" \
    jq_ "d['peers'][0]['nodes_received'] == 2 and d['peers'][0]['nodes_new'] == 2"
run "$B" peer sync --json
check "incremental again: nothing sent" jq_ "d['peers'][0]['nodes_received'] == 0"
# Private writes show nowhere: not as nodes, and not in the cursor, which
# is sealed (in the clear it would count them: sequence numbers count
# every node written).
CUR1=$(python3 -c "import json; print(json.load(open('$B/peers/$AID/meta.json'))['sync_cursor'])")
for i in 1 2 3; do note "$A" "$PAPRIV" "private write $i after the sync"; done
run "$B" peer sync --json
check "private writes: nothing sent" jq_ "d['peers'][0]['nodes_received'] == 0"
check "private writes: the cursor is sealed (layout 2, no sequence in the clear)" python3 -c "
import json,sys; c=bytes.fromhex(json.load(open('$B/peers/$AID/meta.json'))['sync_cursor'])
old=bytes.fromhex('$CUR1')
sys.exit(0 if c[0]==2 and old[0]==2 and len(c)==41 and c!=old and not any(
    c[i:i+8]==n.to_bytes(8,'big') for n in range(1,200) for i in range(34)) else 1)"

# ---- a project shared later --------------------------------------------------
run "$A" peer share "$PALATER"
check "alice shares a second project" rc_is 0
run "$B" peer sync --json
check "later project: its old node arrives" jq_ "d['peers'][0]['nodes_new'] == 1"
run "$B" query --peer alice --json --limit 50 "old note project shared later"
check "later project: LATERPROJ on bob" jq_ "any('LATERPROJ' in h['content'] for h in d)"
check "later project: 6 nodes, no duplicates" [ "$(replica_count "$B" alice)" = 6 ]

# ---- --full -------------------------------------------------------------------
run "$B" peer sync --full --json
check "--full: everything re-sent" \
    jq_ "d['peers'][0]['nodes_received'] == 6 and d['peers'][0]['nodes_new'] == 0 and d['peers'][0]['full']"
check "--full: no duplicates" [ "$(replica_count "$B" alice)" = 6 ]
run "$B" peer sync --full
check "--full text: counts new" out_has "Syncing with alice... 6 nodes received (0 new)."

# ---- carol: not authorized ------------------------------------------------------
run "$C" peer add "$ATICKET" --name alice
check "carol adds alice" rc_is 0
run "$C" peer sync
check "carol: sync fails" rc_is 1
check "carol: the spec's NotAuthorized text" \
    err_has "Peer $CID not authorized. Use: ds peer add $CID --publish"
check "carol: no node" [ "$(replica_count "$C" alice)" = 0 ]
run "$C" peer list
check "carol: list shows the failure" out_has "not authorized"

# ---- alice syncs back from bob ----------------------------------------------------
run "$A" peer add "ds1:$BID@127.0.0.1:$BPORT"
check "alice adds bob's address by ticket" out_has "Updated: addresses of bob"
run "$A" peer sync bob
check "alice syncs back" out_has "Syncing with bob... 1 node received."

# ---- IPv6 and a dead first address ------------------------------------------------
run "$A" stop
check "alice stops" rc_is 0
start_daemon_port "$A" "$APORT" --listen "[::1]:$APORT"
check "alice listens on 127.0.0.1 and ::1" rc_is 0
DEAD=$(free_port)
run "$A" peer add "$DID" --name dave --publish
run "$D" peer add "$AID" --name alice --addr "127.0.0.1:$DEAD" --addr "[::1]:$APORT"
check "dave adds two addresses" rc_is 0
START=$(date +%s)
run "$D" peer sync --json
check "dave: sync over ::1 after a dead address" \
    jq_ "d['peers'][0]['state'] == 'done' and d['peers'][0]['addr'] == '[::1]:$APORT' and d['peers'][0]['nodes_new'] == 6"
check "dave: dead address listed as tried" jq_ "'127.0.0.1:$DEAD' in (d['peers'][0]['tried'] or '')"
# In process (dave runs no daemon): a peer without an address is skipped.
run "$D" peer add "$CID" --name carolfile
run "$D" peer sync
check "sync (in process): ok with an addressless peer" rc_is 0
check "sync (in process): alice synced" out_has "Syncing with alice... 0 nodes received."
check "sync (in process): the addressless peer is skipped, saying so" \
    err_has "Skipping carolfile: no address known (add one with ds peer add carolfile --addr HOST:PORT)"
run "$D" peer remove carolfile

# ---- kill alice's daemon mid-sync ----------------------------------------------------
"$BENCH" load "$A" "$PA" 150000 300 BIGLOAD >/dev/null
check "loaded 150000 shared nodes into alice" [ $? -eq 0 ]
EXPECT=150006
run "$A" peer export --full --json "$T/alice-full.dsx"
SHARED=$(jval "d['nodes']")
check "alice's shared set counted" [ "$SHARED" = "$EXPECT" ]
APID=$(cat "$A/daemon.pid")
BEFORE=$(stat -c %s "$B/peers/$AID/db/data.mdb" 2>/dev/null || echo 0)
DS_HOME="$B" "$DS" peer sync alice >"$T/kill.out" 2>"$T/kill.err" </dev/null &
SYNCPID=$!
remember "$SYNCPID"
for i in $(seq 1 400); do   # up to 8 s: kill once bob's replica has grown
    NOW=$(stat -c %s "$B/peers/$AID/db/data.mdb" 2>/dev/null || echo 0)
    [ "$NOW" -gt $((BEFORE + 2000000)) ] && break
    sleep 0.02
done
kill -9 "$APID"
# Alice comes back on the same port while bob's sync still waits on the
# dead connection: bob's keep-alive reaches the new daemon, whose
# stateless reset (its key comes from alice's identity) ends the sync at
# once, not at the 15 s no-progress timeout.
run "$A" stop   # cleans the stale pid/socket of the killed daemon
start_daemon_port "$A" "$APORT"
check "alice restarts" rc_is 0
wait "$SYNCPID"
KRC=$?
MID=$(replica_count "$B" alice)
check "sync interrupted by the kill fails" [ "$KRC" -eq 1 ]
check "interrupted: a message naming alice" grep -qF "the connection to alice" "$T/kill.err"
check "interrupted: alice's restarted daemon reset the connection" \
    grep -qF "the peer no longer knows this connection (stateless reset" "$T/kill.err"
check "interrupted: partial replica kept" [ "$MID" -gt 6 -a "$MID" -lt "$SHARED" ]
echo "  (killed with $MID of $SHARED nodes on bob's side)" >&2
run "$B" peer sync alice --json
check "resumed sync: ok" jq_ "d['peers'][0]['state'] == 'done'"
check "resumed: only the rest was new" jq_ "d['peers'][0]['nodes_new'] == $SHARED - $MID"
check "bob has exactly alice's shared set" [ "$(replica_count "$B" alice)" = "$SHARED" ]
run "$B" query --peer alice --json --limit 100 "CANARYPRIVATE secret private"
check "still no canary after resume" jq_ "not any('CANARYPRIVATE' in h['content'] for h in d)"

# ---- bob's own daemon stops mid-sync ----------------------------------------------------
# The job lived in bob's daemon: ds peer sync must say it was interrupted
# (not "no such job"), and the peer's last result and the log record it.
mtime_ns() { python3 -c 'import os, sys; print(os.stat(sys.argv[1]).st_mtime_ns)' "$1"; }
wait_written() {  # FILE MTIME: up to 8 s, until FILE's mtime is no longer MTIME
    local i
    for i in $(seq 1 400); do
        [ "$(mtime_ns "$1")" != "$2" ] && return 0
        sleep 0.02
    done
    return 1
}
MT0=$(mtime_ns "$B/peers/$AID/db/data.mdb")
DS_HOME="$B" "$DS" peer sync alice --full >"$T/stop.out" 2>"$T/stop.err" </dev/null &
SYNCPID=$!
remember "$SYNCPID"
wait_written "$B/peers/$AID/db/data.mdb" "$MT0"   # stop once bob's replica is being written
run "$B" stop
check "bob's daemon stops during the sync" rc_is 0
wait "$SYNCPID"
SRC=$?
check "stopped mid-sync: ds peer sync fails" [ "$SRC" -eq 1 ]
check "stopped mid-sync: says the daemon stopped" \
    grep -qF "was interrupted: the daemon that ran it has stopped" "$T/stop.err"
check "stopped mid-sync: says how to go on" grep -qF "Run ds peer sync again" "$T/stop.err"
check "stopped mid-sync: not 'no daemon sync job'" bash -c "! grep -qF 'no daemon sync job' '$T/stop.err'"
run "$B" peer list --json
check "stopped mid-sync: the last result says so" \
    jq_ "[p for p in d['peers'] if p['label'] == 'alice'][0]['last_result'].startswith('interrupted: the daemon stopped during the sync')"
check "stopped mid-sync: logged" grep -qF "sync: alice failed: interrupted: the daemon stopped" "$B/daemon.log"
check "stopped mid-sync: nothing lost" [ "$(replica_count "$B" alice)" = "$SHARED" ]
start_daemon_port "$B" "$BPORT"
check "bob's daemon restarts" rc_is 0
# A second sync of the same peer queues behind the first: waiting is not
# a stall (the stall limit is cut to 1 s here; the first sync often takes
# longer than that).
MT0=$(mtime_ns "$B/peers/$AID/db/data.mdb")
DS_HOME="$B" "$DS" peer sync alice --full >"$T/q1.out" 2>"$T/q1.err" </dev/null &
Q1=$!
remember "$Q1"
wait_written "$B/peers/$AID/db/data.mdb" "$MT0"
DS_SYNC_STALL_MS=1000 DS_HOME="$B" "$DS" peer sync alice --full >"$T/q2.out" 2>"$T/q2.err" </dev/null
Q2RC=$?
wait "$Q1"
Q1RC=$?
check "two syncs of one peer: the first ends" [ "$Q1RC" -eq 0 ]
check "two syncs of one peer: the queued one waits, then ends" [ "$Q2RC" -eq 0 ]
check "two syncs of one peer: no stall reported" bash -c "! grep -qF 'made no progress' '$T/q2.err'"

# ---- Ctrl-C stops a sync cleanly -----------------------------------------------------------
# SIGINT mid-sync, through bob's daemon (the CLI cancels the job) and in
# process (the sync stops itself): the batch being written is finished,
# alice gets a CONNECTION_CLOSE, the result says what was kept, and the
# exit status is 130 as for a process that SIGINT ended.  alice's daemon
# is paused (SIGSTOP) once bob's replica is being written, so the signal
# surely lands mid-sync; she is resumed before anything else is checked.
sigint_sync() {  # NAME ARGS...: ds peer sync alice --full ARGS, SIGINT mid-sync; sets IRC
    local name=$1 mt pid apid
    shift
    apid=$(cat "$A/daemon.pid")
    mt=$(mtime_ns "$B/peers/$AID/db/data.mdb")
    DS_HOME="$B" "$DS" peer sync alice --full "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null &
    pid=$!
    remember "$pid"
    wait_written "$B/peers/$AID/db/data.mdb" "$mt"
    kill -STOP "$apid"
    kill -INT "$pid"
    wait "$pid"   # bounded: the sync would time out on its own
    IRC=$?
    kill -CONT "$apid"
}
sigint_sync int-daemon
check "Ctrl-C (daemon): exit status 130" [ "$IRC" -eq 130 ]
check "Ctrl-C (daemon): says interrupted" grep -qF "Syncing with alice... interrupted." "$T/int-daemon.out"
check "Ctrl-C (daemon): says what was kept" \
    grep -qE "ds: alice: interrupted by SIGINT: the [0-9]+ nodes received \([0-9]+ new\) were kept, the next sync continues from there" "$T/int-daemon.err"
check "Ctrl-C (daemon): logged" grep -qF "sync: alice failed: interrupted by SIGINT" "$B/daemon.log"
run "$B" peer list --json
check "Ctrl-C (daemon): the last result says so" \
    jq_ "[p for p in d['peers'] if p['label'] == 'alice'][0]['last_result'].startswith('interrupted by SIGINT')"
run "$B" stop
check "bob's daemon stops (in-process sync next)" rc_is 0
sigint_sync int-inproc --json
check "Ctrl-C (in process): exit status 130" [ "$IRC" -eq 130 ]
check "Ctrl-C (in process): --json says stopped_by SIGINT" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); p=d["peers"][0]; sys.exit(not (d["done"] and d["stopped_by"] == "SIGINT" and p["state"] == "failed" and p["code"] == "interrupted" and p["error"].startswith("interrupted by SIGINT: the ")))' "$T/int-inproc.out"
# A publisher that stalls mid-sync (paused, so no reset either): the sync
# ends at the 15 s no-progress timeout, saying what was kept.
APID=$(cat "$A/daemon.pid")
MT=$(mtime_ns "$B/peers/$AID/db/data.mdb")
DS_HOME="$B" "$DS" peer sync alice --full >"$T/stall.out" 2>"$T/stall.err" </dev/null &
SYNCPID=$!
remember "$SYNCPID"
wait_written "$B/peers/$AID/db/data.mdb" "$MT"
kill -STOP "$APID"
wait "$SYNCPID"   # bounded by the no-progress timeout
SRC=$?
kill -CONT "$APID"
check "stalled publisher: the sync fails" [ "$SRC" -eq 1 ]
check "stalled publisher: says why and what was kept" \
    grep -qE "ds: alice: no progress from the publisher for 15000 ms; the [0-9]+ nodes received \([0-9]+ new\) were kept, the next sync continues from there" "$T/stall.err"
start_daemon_port "$B" "$BPORT"
check "bob's daemon restarts" rc_is 0
run "$B" peer sync alice --json
check "after Ctrl-C: the next sync is done" jq_ "d['peers'][0]['state'] == 'done' and d['stopped_by'] is None"
check "after Ctrl-C: exactly alice's shared set" [ "$(replica_count "$B" alice)" = "$SHARED" ]

# ---- unreachable peer: bounded failure -----------------------------------------------
run "$A" stop
START=$(date +%s%N)
run "$B" peer sync alice
END=$(date +%s%N)
check "unreachable: fails" rc_is 1
check "unreachable: names the address tried" err_has "127.0.0.1:$APORT"
check "unreachable: says why (ICMP port unreachable)" err_has "nothing listens on that port"
check "unreachable: within the bound (< 8 s)" [ $(((END - START) / 1000000)) -lt 8000 ]
run "$B" peer list
check "list: failure recorded" out_has "cannot reach alice"

# ---- daemon: --sync at start, retry with backoff ---------------------------------------
run "$B" stop
export DS_SYNC_RETRY_BASE_MS=300
start_daemon_port "$B" "$BPORT" --sync --sync-interval 1h
check "bob restarts with --sync --sync-interval 1h" rc_is 0
unset DS_SYNC_RETRY_BASE_MS
note "$A" "$PA" "RETRYNODE arrives through the daemon's retry"
# Alice stays down until bob's first sync has failed (its dial ends on
# the ICMP port unreachable, or after DS_SYNC_CONNECT_TIMEOUT_MS) and a
# retry is scheduled; starting her earlier would let that dial succeed.
check "daemon log: retries" poll "" 20 grep -q "will retry" "$B/daemon.log"
# ds status tells where bob accepts syncs, his schedule and the retry
# waiting (between two attempts; the backoff makes that most of the time).
run "$B" status
check "status: accepting syncs on the --listen address" out_has "Peer sync:      accepting syncs on 127.0.0.1:$BPORT"
check "status: the periodic schedule" out_has "syncs subscribed peers every 1h (next in"
check "status: a retry waits" poll "" 10 bash -c "DS_HOME='$B' '$DS' status | grep -q 'failed peer sync to retry (next in'"
run "$B" status --json
check "status --json: sync" jq_ "d['sync']['listening'] is True and d['sync']['addrs'] == ['127.0.0.1:$BPORT'] and d['sync']['why'] is None and d['sync']['interval_s'] == 3600 and 0 < d['sync']['next_sync_in_s'] <= 3600 and d['sync']['retries'] + d['sync']['jobs_active'] >= 1"
start_daemon_port "$A" "$APORT"
check "alice back" rc_is 0
check "retry with backoff brings the new node" poll "" 20 replica_is "$B" alice $((SHARED + 1))

# ---- removing a peer while the daemon syncs it ----------------------------------------
# eve's address answers nothing (a UDP socket of ours that only notes the
# first datagram), so bob's daemon is still dialing her when she is
# removed.  The removal holds the peers lock; the cancelled sync must not
# wait for that lock (it used to, stalling the daemon for 5 s).
E="$T/eve"
run "$E" peer init
check "eve: init" rc_is 0
EID=$(DS_HOME="$E" "$DS" peer id)
EPORT=$(free_port)
python3 - "$EPORT" "$T/eve.got" "$T/eve.bound" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', int(sys.argv[1])))
open(sys.argv[3], 'w').close()
s.settimeout(30)
try:
    s.recvfrom(65536)
    open(sys.argv[2], 'w').close()
    time.sleep(30)
except socket.timeout:
    pass
PY
remember "$!"
poll "" 20 test -f "$T/eve.bound"
check "eve's silent socket is bound" [ -f "$T/eve.bound" ]
run "$B" stop
DS_SYNC_CONNECT_TIMEOUT_MS=30000 start_daemon_port "$B" "$BPORT"
check "bob restarts with a long dial timeout" rc_is 0
run "$B" peer add "$EID" --name eve --addr "127.0.0.1:$EPORT"
check "bob adds eve" rc_is 0
DS_HOME="$B" "$DS" peer sync eve >"$T/eve.out" 2>"$T/eve.err" </dev/null &
EVESYNC=$!
remember "$EVESYNC"
poll "" 20 test -f "$T/eve.got"
check "bob's daemon is dialing eve" [ -f "$T/eve.got" ]
run "$B" peer remove eve
check "remove during the sync: ok" rc_is 0
poll "" 20 dead "$EVESYNC"
check "the sync of eve ends" bash -c "! kill -0 $EVESYNC 2>/dev/null"
check "the sync says eve was removed" grep -qF "the sync with eve stopped: the peer was removed" "$T/eve.err" "$T/eve.out"
check "the daemon did not wait for its own lock" bash -c "! grep -q 'held by another ds process' '$B/daemon.log'"
run "$B" peer list --json
check "eve is gone" jq_ "not any(p['label'] == 'eve' for p in d['peers'])"

# ---- a new identity while the daemon runs ---------------------------------------------
# ds peer init --force goes through alice's running daemon: from then on
# she must present the new key, and the old NodeId must stop working.
run "$A" peer init --force
check "alice: init --force while her daemon runs" rc_is 0
NEWTICKET=$(DS_HOME="$A" "$DS" peer ticket 2>/dev/null)
run "$B" peer add "$NEWTICKET" --name alice2
check "bob adds alice's new NodeId" rc_is 0
run "$B" peer sync alice2 --json
check "sync with the new NodeId: done" jq_ "d['peers'][0]['state'] == 'done'"
check "sync with the new NodeId: all shared nodes" [ "$(replica_count "$B" alice2)" = $((SHARED + 1)) ]
run "$B" peer sync alice
check "the old NodeId no longer answers" rc_is 1
check "the old NodeId: key mismatch" err_has "key mismatch"
check "alice's log: identity changed" grep -qF "the identity changed" "$A/daemon.log"

# ---- --listen before there is an identity ---------------------------------------------
# The daemon cannot listen without a key: ds start says so (it used to
# start silently deaf) and listens once ds peer init has made one.
F="$T/fay"
start_daemon "$F"
check "fay: ds start --listen without an identity still starts" rc_is 0
check "fay: warned that nothing listens yet" err_has "not accepting peer connections yet: this node has no identity yet"
run "$F" status
check "fay: status says why no sync is accepted" out_has "not accepting syncs: this node has no identity yet (run ds peer init)"
check "fay: status: no periodic sync" out_has "no periodic sync (ds start --sync-interval 30m sets one)"
run "$F" peer init
check "fay: init through her daemon" rc_is 0
run "$F" peer ticket --json
check "fay: listening once the identity exists" jq_ "d['listening'] and d['addrs'] == ['127.0.0.1:$PORT']"
run "$F" stop

finish
