#!/usr/bin/env bash
# test_peer.sh - integration test of "ds peer" and the fan-out search with
# two homes: alice shares a project and exports, bob imports.
#
# Usage: bash tests/cli/test_peer.sh /path/to/ds
#
# Checks: identity (0600, no overwrite without --force, NodeId format; a
# readable identity.key set back to 0600 with a warning, on stderr or in
# the daemon's log); -f json as --json;
# share canonicalization (symlink -> target, trailing slash), errors for
# missing / unshared paths (exit status and hint); unshare of a path
# still shared through a parent says so (error, or warning and --json
# warning); share / warns in --json too; missing or non-regular import
# files and unwritable export paths (exit 1, hint); canary notes in an unshared project, in the
# sibling /a/proj-x and behind a symlink into an unshared project never
# appear in an export; export -> import reproduces exactly the shared
# set; a tampered file and an unknown signer are refused and change
# nothing; --add; fan-out ranking and [local]/[alice] labels; related and
# show on a replica; --local /
# --peer; stats per peer; peer remove deletes peers/<id>/; malformed
# share.json / peers.json messages; the lock's bounded wait; ds peer list
# aligns its columns for long names (NAME width = longest name, cut at
# 40); ds peer sync of every peer skips (and says so) a peer without an
# address, and fails only when no subscribed peer has one; IPv4-mapped
# IPv6 addresses and zone ids are refused (--addr, tickets, --listen)
# saying what to write instead, and a bad --addr says the expected form
# once; ds peer add --help states the address rules; ds peer ticket gives
# the daemon's listen addresses and why it does not accept syncs (no
# daemon, no peer with publish, a bind failure), and fails on a broken
# config.json; ds peer init / add --publish while the daemon cannot bind
# its listen address save the change and warn (a held UDP port).
set -u
. "$(dirname "$0")/lib.sh"
lib_init ds-peer-test "$@"
unset DS_HOME
RUN_TAKES_HOME=1   # run HOME ARGS...
A="$T/alice"
B="$T/bob"
C="$T/carol"

# ---- projects ------------------------------------------------------------
P="$T/a/proj"
mkdir -p "$P/sub" "$T/a/proj-x" "$T/private" "$T/links"
ln -s "$P" "$T/links/to-proj"              # a symlink to the shared project
ln -s "$T/private" "$P/secret-link"         # a symlink inside it, into an unshared one

# ---- identity ------------------------------------------------------------
run "$A" peer init
check "init: ok" rc_is 0
check "init: prints NodeId" out_has "Generated NodeId: "
AID=$(sed -n 's/^Generated NodeId: //p' "$T/out")
check "init: NodeId is 64 lowercase hex" [ "$(printf %s "$AID" | grep -cE '^[0-9a-f]{64}$')" -eq 1 ]
check "init: identity.key is 0600" [ "$(stat -c %a "$A/identity.key")" = 600 ]
run "$A" peer init
check "init again: refused" rc_is 1
check "init again: says so" err_has "already has an identity"
check "init again: --force hint" err_has "--force"
run "$A" peer id
check "id: same NodeId" [ "$(cat "$T/out")" = "$AID" ]
run "$A" peer id --json
check "id --json" jq_ "d['node_id'] == '$AID'"
# -f json is --json, for every subcommand (and before the subcommand)
run "$A" peer id -f json
check "id -f json" jq_ "d['node_id'] == '$AID'"
run "$A" peer -f json list
check "peer -f json list" jq_ "d['node_id'] == '$AID' and d['peers'] == []"
run "$A" peer shared --format json
check "shared --format json" jq_ "d['shared_projects'] == []"
run "$A" peer id -f xml
check "id -f xml: usage error" rc_is 2
check "id -f xml: says which formats" err_has "use text or json"
# an identity.key others may read is set back to 0600, with a warning
chmod 644 "$A/identity.key"
run "$A" peer id
check "readable identity.key: still used" out_has "$AID"
check "readable identity.key: warns" err_has "ds: warning: $A/identity.key was readable by other users (mode 0644); ds set it to 0600."
check "readable identity.key: says what to do" err_has "make a new identity: ds peer init --force"
check "readable identity.key: now 0600" [ "$(stat -c %a "$A/identity.key")" = 600 ]
run "$A" peer id
check "repaired identity.key: no second warning" err_lacks "warning"
run "$B" peer init
BID=$(sed -n 's/^Generated NodeId: //p' "$T/out")
run "$C" peer init
CID=$(sed -n 's/^Generated NodeId: //p' "$T/out")
run "$T/nobody" peer id
check "id without init: fails" rc_is 1
check "id without init: hint" err_has "ds peer init"

# ---- share control -------------------------------------------------------
run "$A" peer share "$T/links/to-proj/"
check "share symlink: canonical target" out_has "Added to shared projects: $P"
check "share: share.json lists target" grep -qF "\"$P\"" "$A/share.json"
run "$A" peer share "$P"
check "share again: already" out_has "Already shared: $P"
run "$A" peer share "$T/does-not-exist"
check "share missing path: runtime failure (exit 1)" rc_is 1
check "share missing path: names it" err_has "$T/does-not-exist"
check "share missing path: hint" err_has "Give the directory of an existing project."
run "$A" peer share ""
check "share empty path: usage error" rc_is 2
check "share empty path: hint" err_has "Give the project directory to share"
run "$A" peer unshare "$T/a/proj-x"
check "unshare unshared: error" rc_is 1
check "unshare unshared: message" err_has "is not shared"
check "unshare of a sibling: not called inside" err_lacks "inside the shared project"
run "$A" peer shared --json
check "shared --json" jq_ "d['shared_projects'] == ['$P']"
run "$A" peer share "$P"
check "share: no warning for a project" err_lacks "warning"
run "$A" peer share /
check "share /: ok" rc_is 0
check "share /: warns that every project is shared" err_has "warning: / covers every project on this machine"
check "share /: says how to undo" err_has "ds peer unshare /"
run "$A" peer unshare /
check "unshare /: ok" rc_is 0
run "$A" peer shared --json
check "unshare /: back to one root" jq_ "d['shared_projects'] == ['$P']"
run "$A" peer share --json /
check "share / --json: warning field" jq_ "d['warning'].startswith('/ covers every project on this machine')"
check "share / --json: warning on stderr too" err_has "ds: warning: / covers every project"
run "$A" peer unshare /
run "$A" peer share --json "$P"
check "share --json of a project: warning null" jq_ "d['warning'] is None"
# a directory inside a shared project is shared through it: unshare says so
run "$A" peer unshare "$P/sub"
check "unshare inside a shared project: error" rc_is 1
check "unshare inside a shared project: says its nodes are shared" err_has "$P/sub is not shared by itself, but it is inside the shared project $P: its nodes are shared"
check "unshare inside a shared project: what to do" err_has "To stop sharing it, unshare $P (and share the parts you want)."
run "$A" peer share "$P/sub"
run "$A" peer unshare "$P/sub"
check "unshare of a listed subdirectory: removed" out_has "Removed from shared projects: $P/sub"
check "unshare of a listed subdirectory: warns it is still shared" err_has "ds: warning: $P/sub is still shared: it is inside the shared project $P."
run "$A" peer share "$P/sub"
run "$A" peer unshare --json "$P/sub"
check "unshare --json, still shared: warning field" jq_ "d['path'] == '$P/sub' and d['warning'].startswith('$P/sub is still shared')"
run "$A" peer shared --json
check "unshare inside: only the parent listed" jq_ "d['shared_projects'] == ['$P']"

# ---- content -------------------------------------------------------------
note "$A" "$P" "SHARED zebra lmdb transactions are serializable writers"
note "$A" "$P/sub" "SHARED zebra quokka quokka quokka page cursor design"
note "$A" "$T/a/proj-x" "CANARYSIBLING zebra quokka sibling project secret"
note "$A" "$T/private" "CANARYPRIVATE zebra quokka private project secret"
note "$A" "$P/secret-link" "CANARYLINK zebra quokka note through a symlink"
note "$B" "$T" "bob local note mentions quokka once among many other words here"

# ---- export --------------------------------------------------------------
OLD_UMASK=$(umask)
umask 022                     # a usual umask: the file is 0600 all the same
run "$A" peer export "$T/alice1.dsx"
umask "$OLD_UMASK"
check "export: ok" rc_is 0
check "export: 2 nodes" out_has "Exported 2 nodes"
for c in CANARYSIBLING CANARYPRIVATE CANARYLINK; do
    check "export: no $c" [ "$(grep -c "$c" "$T/alice1.dsx")" -eq 0 ]
done
check "export: has shared" [ "$(grep -c zebra "$T/alice1.dsx")" -ge 1 ]
check "export: the file is 0600 (umask 022), as when the daemon writes it" \
    [ "$(stat -c %a "$T/alice1.dsx")" = 600 ]
run "$A" peer export --json "$T/alice2.dsx"
check "export again: incremental, 0 nodes" jq_ "d['nodes'] == 0 and d['full'] is False"
run "$A" peer export --full --json "$T/alice3.dsx"
check "export --full: 2 nodes" jq_ "d['nodes'] == 2 and d['full'] is True"

# ---- import: unknown signer, tampering -----------------------------------
run "$B" peer import "$T/missing.dsx"
check "import missing file: runtime failure (exit 1)" rc_is 1
check "import missing file: hint" err_has "Give the path of a file written by ds peer export."
run "$B" peer import "$T"
check "import a directory: exit 1" rc_is 1
check "import a directory: says so" err_has "$T is not a regular file"
check "import a directory: hint" err_has "Give the path of a file written by ds peer export."
run "$A" peer export "$T/no-dir/x.dsx"
check "export into a missing directory: exit 1" rc_is 1
check "export into a missing directory: hint" err_has "Give a FILE in a directory that exists"
run "$B" peer import "$T/alice1.dsx"
check "import unknown signer: refused" rc_is 1
check "import unknown signer: message" err_has "unknown node $AID"
check "import unknown signer: no replica" [ ! -e "$B/peers/$AID" ]
cp "$T/alice1.dsx" "$T/tampered.dsx"
SIZE=$(stat -c %s "$T/tampered.dsx")
python3 - "$T/tampered.dsx" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
i = b.find(b'zebra')
b[i + 2] ^= 0x01
open(p, 'wb').write(b)
PY
run "$B" peer add "$AID" --name alice
check "add alice" out_has "Added peer 'alice'"
run "$B" peer import "$T/tampered.dsx"
check "import tampered: refused" rc_is 1
check "import tampered: signature message" err_has "signature does not match"
check "import tampered: no replica" [ ! -e "$B/peers/$AID/db" ]
head -c $((SIZE / 2)) "$T/alice1.dsx" >"$T/cut.dsx"
run "$B" peer import "$T/cut.dsx"
check "import truncated: refused" rc_is 1
check "import truncated: message" err_has "ends early"
printf 'not an export' >"$T/junk.dsx"
run "$B" peer import "$T/junk.dsx"
check "import junk: refused" rc_is 1
check "import junk: names file" err_has "$T/junk.dsx"

# ---- import ---------------------------------------------------------------
run "$B" peer import "$T/alice1.dsx"
check "import: ok" rc_is 0
check "import: summary" out_has "Imported from alice: 2 nodes, 2 new"
check "import: replica dir" [ -d "$B/peers/$AID/db" ]
check "import: meta.json" python3 -c "
import json,sys; m=json.load(open('$B/peers/$AID/meta.json'))
sys.exit(0 if m['node_id']=='$AID' and m['name']=='alice' and m['node_count']==2 and len(m['sync_cursor'])==82 and m['last_sync'] else 1)"
run "$B" peer import "$T/alice1.dsx"
check "import again: nothing new" out_has "2 nodes, 0 new"
run "$B" query --peer alice --json --limit 50 zebra
check "replica = exactly the shared set" jq_ "sorted(h['content'].split()[0] for h in d) == ['SHARED', 'SHARED']"
check "replica hits labelled alice, with project" jq_ "all(h['store'] == 'alice' and h['project'].startswith('$P') for h in d)"

# A home holding only a peer's replica: stats reports it (no local store)
# and creates nothing; a home with neither still says there is no store.
R="$T/replica-only"
run "$R" peer init
run "$R" peer add "$AID" --name alice
run "$R" peer import "$T/alice1.dsx"
check "replica-only: import ok" rc_is 0
run "$R" stats
check "replica-only stats: ok" rc_is 0
check "replica-only stats: no local store" out_has "Local store:    none yet"
check "replica-only stats: peer line" out_has "alice         2 nodes, last sync"
run "$R" stats --json
check "replica-only stats --json" jq_ "d['local_store'] is False and d['nodes'] == 0 and d['epoch'] is None and d['schema'] is None and d['peers'][0]['nodes'] == 2"
check "replica-only stats: no store created" [ ! -e "$R/db" ]
run "$T/nothing" stats
check "empty home stats: still an error" rc_is 1
check "empty home stats: message" err_has "No knowledge store at"
run "$B" stats --json
check "stats --json: local_store true" jq_ "d['local_store'] is True and d['schema'] >= 1"

# ---- fan-out ---------------------------------------------------------------
run "$B" query quokka
check "fan-out: ok" rc_is 0
check "fan-out: alice first" [ "$(grep -m1 -oE '^1\. \[[a-z]+\]' "$T/out")" = "1. [alice]" ]
check "fan-out: local labelled" out_has "[local]"
run "$B" query --json quokka
check "fan-out json: peer hit outranks local" jq_ "d[0]['store'] == 'alice' and d[-1]['store'] == 'local' and d[0]['score'] > d[-1]['score']"
run "$B" query --local --json quokka
check "--local: local only" jq_ "len(d) == 1 and d[0]['store'] == 'local'"
run "$B" query --peer alice --json quokka
check "--peer: alice only" jq_ "len(d) >= 1 and all(h['store'] == 'alice' for h in d)"
run "$B" query --peer nobody quokka
check "--peer unknown: error" err_has "no peer 'nobody'"
# related and show over a replica: the id of an [alice] hit works
run "$B" query --peer alice --json "page cursor"
AN=$(jval "d[0]['id']")
run "$B" related "${AN:0:8}"
check "related on a peer's hit: ok" rc_is 0
check "related on a peer's hit: names the replica" out_has "Related to $AN (note:"
check "related on a peer's hit: from alice" out_has "from alice's replica"
run "$B" related --json "${AN:0:8}"
check "related on a peer's hit: other stores searched" jq_ "any(h['store'] == 'local' for h in d) and all(h['id'] != '$AN' for h in d)"
run "$B" show --peer alice --json
check "show --peer: the replica's nodes" jq_ "len(d) == 2 and all(h['store'] == 'alice' for h in d) and any(h['id'] == '$AN' for h in d)"
run "$B" show --peer alice
check "show --peer: labelled" out_has "[alice] "
run "$B" show --json
check "show: local by default" jq_ "len(d) == 1 and d[0]['store'] == 'local'"
run "$B" show --local --peer alice
check "show --local --peer: usage error" rc_is 2
run "$R" show
check "replica-only show: error" rc_is 1
check "replica-only show: points to --peer" err_has "ds show --peer NAME"
run "$R" show --peer alice --json
check "replica-only show --peer" jq_ "len(d) == 2"
run "$B" stats --json
check "stats: per-peer count and last sync" jq_ "d['peers'][0]['name'] == 'alice' and d['peers'][0]['nodes'] == 2 and d['peers'][0]['last_sync']"
run "$B" stats
check "stats text: peer line" out_has "alice"

# ---- peers.json / add semantics -------------------------------------------
run "$B" peer add "$AID" --publish
check "add --publish: update text" out_has "Updated: alice can now pull from us"
check "peers.json: publish true" python3 -c "
import json,sys; d=json.load(open('$B/peers.json'))
p=d['peers']['$AID']; sys.exit(0 if d['node_id']=='$BID' and p['publish'] is True and p['subscribe'] is True and p['name']=='alice' else 1)"
run "$B" peer add "$CID" --name alice
check "duplicate name: refused" err_has "already used"
run "$B" peer add "../../etc/passwd"
check "bad NodeId: refused" rc_is 2
check "bad NodeId: message" err_has "is not a NodeId"
run "$B" peer add nobody --name X
check "add an unknown name: exit 1, as remove" rc_is 1
check "add an unknown name: no peer by that name" err_has "no peer named 'nobody'; give its NodeId"
check "add an unknown name: not called a bad NodeId" err_lacks "is not a NodeId"
run "$B" peer add "ds2:$AID@127.0.0.1:1"
check "ds2: ticket: refused" rc_is 2
check "ds2: ticket: unknown version" err_has "unknown version 'ds2:': this ds reads only ds1: tickets"
run "$B" peer add "$BID"
check "own NodeId: refused" err_has "own NodeId"
run "$B" peer list --json
check "list json" jq_ "d['peers'][0]['label'] == 'alice' and d['peers'][0]['nodes'] == 2"

# ---- --add, and a second peer ---------------------------------------------
note "$C" "$T/a" "carol quokka quokka"
run "$C" peer share "$T/a"
run "$C" peer export "$T/carol.dsx"
run "$B" peer import --add --name carol "$T/carol.dsx"
check "import --add: adds the peer" out_has "Added peer 'carol'"
run "$B" query --json quokka
check "fan-out over three stores" jq_ "set(h['store'] for h in d) == {'alice', 'carol', 'local'}"

# ---- remove ----------------------------------------------------------------
run "$B" peer remove alice
check "remove: ok" out_has "Removed peer 'alice' and deleted its replica"
check "remove: replica gone" [ ! -e "$B/peers/$AID" ]
check "remove: peers.json" [ "$(grep -c "$AID" "$B/peers.json")" -eq 0 ]
run "$B" query --json quokka
check "after remove: no alice hits" jq_ "all(h['store'] != 'alice' for h in d)"
run "$B" peer remove alice
check "remove unknown: error" err_has "no peer 'alice'"

# ---- names, labels, pasted ids, addresses, listen addresses ----------------
D="$T/dave"
A8=${AID:0:8}
run "$D" peer init
note "$D" "$T" "dave local note"
run "$D" peer add "$AID" --name -dash
check "name starting with '-': refused" rc_is 2
check "name starting with '-': says so" err_has "starts with '-'"
run "$D" peer add "$AID" --name LOCAL
check "name LOCAL: reserved" err_has "is reserved"
run "$D" peer add "$AID" --name ..
check "name '..': refused" rc_is 2
check "refused names: no peer added" [ "$(cat "$D/peers.json" 2>/dev/null | grep -c "$AID")" -eq 0 ]
run "$D" peer add 0000000000000000000000000000000000000000000000000000000000000000
check "all-zero NodeId: refused" rc_is 2
check "all-zero NodeId: not a key" err_has "not a valid Ed25519 public key"
run "$D" peer add "ds1:$AID@"
check "ticket with '@' and no address: refused" rc_is 2
check "ticket with '@' and no address: says so" err_has "no address after '@'"
run "$D" peer add "$AID" --addr 127.0.0.1
check "--addr without port: refused" rc_is 2
check "--addr without port: the hint once" [ "$(grep -o 'expected HOST:PORT' "$T/err" | wc -l)" -eq 1 ]
# the expected form is said once: not appended to a reason that says it already
run "$D" peer add "$AID" --addr bad
check "--addr bad: refused" rc_is 2
check "--addr bad: the expected form, once" [ "$(grep -o 'expected HOST:PORT or \[IPv6\]:PORT' "$T/err" | wc -l)" -eq 1 ]
run "$D" peer add "$AID" --addr '[::1]x'
check "--addr text after ']': refused" rc_is 2
check "--addr text after ']': one expectation" [ "$(grep -o 'expected' "$T/err" | wc -l)" -eq 1 ]
check "--addr text after ']': says :PORT" err_has "has text after ']' (expected :PORT)"
run "$D" peer add "ds1:$AID@[::1]x"
check "ticket, text after ']': refused" rc_is 2
check "ticket, text after ']': one expectation" [ "$(grep -o 'expected' "$T/err" | wc -l)" -eq 1 ]
run "$D" peer add "ds1:$AID@bad"
check "ticket, address without port: the expected form, once" [ "$(grep -o 'expected HOST:PORT or \[IPv6\]:PORT' "$T/err" | wc -l)" -eq 1 ]
run "$D" peer add "$AID" --addr 'a:b:c'
check "--addr unbracketed IPv6: says what to write, once" [ "$(grep -cE 'write \[ADDR\]:PORT|expected' "$T/err")" -eq 1 ]
check "--addr unbracketed IPv6: no second form" err_lacks "expected HOST:PORT"
run "$D" peer add "$AID" --addr 1.2.3.4:80:80
check "--addr with two ports: not HOST:PORT" err_has "'1.2.3.4:80:80' has more than one ':', so it is not HOST:PORT"
check "--addr with two ports: not called IPv6" err_lacks "is an IPv6 address"
run "$D" peer add "ds1:$AID@10.0.0.1:1,10.0.0.2:1,10.0.0.3:1,10.0.0.4:1,10.0.0.5:1,10.0.0.6:1,10.0.0.7:1,10.0.0.8:1,10.0.0.9:1"
check "ticket with 9 addresses: refused" rc_is 2
check "ticket with 9 addresses: says the limit" err_has "more than 8 addresses"
run "$D" peer add "$AID" --addr '[::ffff:127.0.0.1]:4000'
check "--addr IPv4-mapped: only what to write" err_lacks "expected HOST:PORT"
run "$D" peer add "$AID" --addr 127.0.0.1:5,127.0.0.1:6
check "--addr with a comma: refused" rc_is 2
check "--addr with a comma: says so" err_has "holds a ',' (one address at a time)"
check "--addr with a comma: not called IPv6" err_lacks "IPv6 address without brackets"
# addresses that can never work: IPv4-mapped IPv6 (IPv6 sockets are
# V6ONLY) and zone ids, refused saying what to write instead; tickets too
run "$D" peer add "$AID" --addr '[::ffff:127.0.0.1]:4000'
check "--addr IPv4-mapped: refused" rc_is 2
check "--addr IPv4-mapped: says what to write" err_has "is an IPv4-mapped IPv6 address: write 127.0.0.1:4000 instead"
run "$D" peer add "ds1:$AID@[::ffff:127.0.0.1]:4000"
check "ticket with an IPv4-mapped address: refused" rc_is 2
check "ticket with an IPv4-mapped address: names it and says what to write" err_has "'[::ffff:127.0.0.1]:4000', which is an IPv4-mapped IPv6 address: write 127.0.0.1:4000 instead"
run "$D" peer add "$AID" --addr '[fe80::1%lo]:4000'
check "--addr with a zone id: refused" rc_is 2
check "--addr with a zone id: says zone ids are not supported" err_has "zone ids (%lo) are not supported"
check "--addr with a zone id: not called a non-IPv6 address" err_lacks "is not an IPv6 address in brackets"
check "refused addresses: no peer added" [ "$(cat "$D/peers.json" 2>/dev/null | grep -c "$AID")" -eq 0 ]
run "$D" peer add "$(printf ' \t%s\n' "$AID")"
check "pasted NodeId (whitespace around): added" out_has "Added peer '$A8'"
run "$D" peer add "$(printf ' ds1:%s@127.0.0.1:1\n' "$AID")"
check "pasted ticket (whitespace around): address added" out_has "Updated: addresses of $A8: 127.0.0.1:1"
for i in 2 3 4 5 6 7 8; do run "$D" peer add "$AID" --addr "127.0.0.1:$i"; done
check "8 addresses: no warning" err_lacks "warning"
run "$D" peer add "$AID" --addr 127.0.0.1:9
check "9th address: warns and names the dropped one" err_has "dropped the oldest: 127.0.0.1:1"
run "$D" peer add --json "$AID" --addr 127.0.0.1:10
check "9th address --json: dropped_addrs" jq_ "d['dropped_addrs'] == ['127.0.0.1:2'] and len(d['addrs']) == 8"
# the 8-hex label of an unnamed peer names it
run "$D" query --peer "$A8" dave
check "query --peer LABEL: finds the peer" err_has "no data from peer '$A8' yet"
check "query --peer LABEL: hint names ds peer sync" err_has "ds peer sync $A8"
run "$D" peer add "$A8" --no-subscribe
check "add LABEL: changes the peer" out_has "Updated: we no longer pull from $A8"
run "$D" peer sync "$A8"
check "sync LABEL: finds the peer" err_has "we do not subscribe to '$A8'"
run "$D" peer list
check "list: data columns under the header's" python3 -c '
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
col = lines[0].index("SUBSCRIBE")
row = lines[1]
sys.exit(0 if row[col:col + 3] == "no " and row[col - 2:col] == "  " and lines[0].index("NODES") + 5 == row.index(" 0 ") + 2 else 1)' "$T/out"
# the NAME column is as wide as the longest name (at most 40 columns; a
# longer name is cut to 39 characters and "…"), so the columns line up
N30=a-name-of-exactly-thirty-chars
N50=a-peer-name-of-fifty-characters-which-is-too-long-
run "$D" peer add "$BID" --name "$N30"
run "$D" peer add "$CID" --name "$N50"
run "$D" peer list
check "list: long names keep the columns aligned" python3 - "$T/out" "$N50" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
head, rows = lines[0], [l for l in lines[1:] if not l.startswith("    ")]
cols = [head.index(w) for w in ("NODE ID", "SUBSCRIBE", "PUBLISH", "LAST SYNC")]
ok = len(rows) == 3 and cols[0] == 41
for r in rows:   # each row: a 16-hex NodeId prefix and "…" under NODE ID, yes/no under the flags
    ok = ok and r[cols[0] - 1] == " " and r[cols[0] + 16] == "…"
    ok = ok and r[cols[1]:cols[1] + 2] in ("ye", "no") and r[cols[2]:cols[2] + 2] in ("ye", "no")
    ok = ok and (r[cols[3]:].startswith("never") or r[cols[3]:cols[3] + 1].isdigit())
ok = ok and any(r.startswith(sys.argv[2][:39] + "… ") for r in rows)
sys.exit(0 if ok else 1)
PY
run "$D" peer remove "$N50"
run "$D" peer list
check "list: the NAME column shrinks to the longest name shown" python3 - "$T/out" "$A8" "$N30" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
col = lines[0].index("NODE ID")
rows = {l.split(" ")[0]: l for l in lines[1:] if not l.startswith("    ")}
ok = col == 31 and sorted(rows) == sorted(sys.argv[2:])
ok = ok and all(r[col - 1] == " " and r[col + 16] == "…" for r in rows.values())
sys.exit(0 if ok else 1)
PY
run "$D" peer list --json
check "list --json: names whole" jq_ "sorted(p['label'] for p in d['peers']) == sorted(['$A8', '$N30'])"
run "$D" peer remove "$N30"
run "$D" peer remove "$A8"
check "remove LABEL: removed" out_has "Removed peer '$A8'"
# an ambiguous prefix, and names an older version accepted, from peers.json
cat >"$D/peers.json" <<'JSON'
{"peers": {
  "abcdef0011111111111111111111111111111111111111111111111111111111": {"name": "LOCAL"},
  "abcdef0022222222222222222222222222222222222222222222222222222222": {"name": "-dash"}}}
JSON
run "$D" peer remove abcdef00
check "ambiguous prefix: refused" rc_is 1
check "ambiguous prefix: lists the matches" err_has "LOCAL abcdef0011111111"
check "ambiguous prefix: lists the matches (2)" err_has "-dash abcdef0022222222"
run "$D" peer remove -- -dash
check "legacy name still usable" out_has "Removed peer '-dash'"
# ds start --listen: IP addresses only, each once, refused before starting
for bad in localhost:4000 256.1.1.1:4000; do
    run "$D" start --listen "$bad"
    check "start --listen $bad: usage error" rc_is 2
    check "start --listen $bad: must be an IP address" err_has "must be an IP address"
done
run "$D" start --listen '[::ffff:127.0.0.1]:47979'
check "start --listen IPv4-mapped: usage error" rc_is 2
check "start --listen IPv4-mapped: says what to write" err_has "write 127.0.0.1:47979 instead"
run "$D" start --listen '[fe80::1%lo]:47979'
check "start --listen with a zone id: usage error" rc_is 2
check "start --listen with a zone id: says so" err_has "zone ids (%lo) are not supported"
check "refused --listen: nothing started" [ ! -e "$D/daemon.pid" ]
run "$D" start --listen 127.0.0.1:47979 --listen 127.0.0.1:47979
check "start --listen twice: usage error" rc_is 2
check "start --listen twice: duplicate" err_has "duplicate"
run "$D" stop
run "$D" start --help
check "start --help: exit status 2" out_has "2 bad option or value"
check "start --help: the sync config object" out_has '"sync": {"listen": "0.0.0.0:7979", "interval": "30m", "at_start": false,'
check "start --help: at most 4 --listen" out_has "up to 4 times"
run "$D" peer unshare --help
check "unshare --help: nothing retracted" out_has "Nodes peers already synced or imported stay"

# ---- ds peer sync of every peer: a peer without an address is skipped ------
# No daemon: the sync runs in this process.  "importonly" was added for
# ds peer import only (no address); "far" has an address where nothing
# listens, so it fails at once (ICMP) or within the 1 s dial bound.
G="$T/gina"
run "$G" peer init
run "$G" peer add "$AID" --name importonly
run "$G" peer sync
check "sync all, no peer has an address: fails" rc_is 1
check "sync all, no peer has an address: says so" err_has "the only subscribed peer, importonly, has no address to sync with"
check "sync all, no peer has an address: what to do" err_has "ds peer add importonly --addr HOST:PORT"
check "sync all, no peer has an address: nothing recorded" python3 -c "
import json,sys; p=json.load(open('$G/peers.json'))['peers']['$AID']
sys.exit(0 if 'last_result' not in p and 'last_attempt' not in p else 1)"
run "$G" peer add "$BID" --name far --addr 127.0.0.1:9
DS_SYNC_CONNECT_TIMEOUT_MS=1000 run "$G" peer sync
check "sync all: exit 1 when a peer with an address failed" rc_is 1
check "sync all: the addressless peer is skipped, saying so" \
    err_has "Skipping importonly: no address known (add one with ds peer add importonly --addr HOST:PORT)"
check "sync all: the skip is no failure" err_lacks "ds: importonly:"
check "sync all: the other peer was tried" out_has "Syncing with far... failed."
DS_SYNC_CONNECT_TIMEOUT_MS=1000 run "$G" peer sync --json
check "sync all --json: skipped, with the reason" \
    jq_ "{p['label']: (p['state'], p['reason'], p['error']) for p in d['peers']}['importonly'] == ('skipped', 'no address known (add one with ds peer add importonly --addr HOST:PORT)', None)"
check "sync all --json: the failed peer has no reason" \
    jq_ "[(p['state'], p['reason']) for p in d['peers'] if p['label'] == 'far'] == [('failed', None)]"
check "sync all: the skipped peer's last result untouched" python3 -c "
import json,sys; ps=json.load(open('$G/peers.json'))['peers']
sys.exit(0 if 'last_result' not in ps['$AID'] and ps['$BID']['last_result'].startswith('cannot reach far') else 1)"
run "$G" peer list
check "list: no sync attempt shown for the skipped peer" python3 - "$T/out" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
i = [n for n, l in enumerate(lines) if l.startswith("importonly ")]
sys.exit(0 if len(i) == 1 and lines[i[0]].endswith("never") and not (i[0] + 1 < len(lines) and lines[i[0] + 1].startswith("    ")) else 1)
PY
run "$G" peer sync importonly
check "sync of one named peer without an address: still an error" rc_is 1
check "sync of one named peer without an address: what to do" err_has "no address known for importonly: add one with ds peer add importonly --addr HOST:PORT"
run "$G" peer sync --help
check "sync --help: addressless peers are skipped" out_has "is skipped"

# ---- ds peer add / ticket --help: the address rules, tickets' reason -------
run "$D" peer add --help
check "add --help: HOST:PORT with a host name" out_has "HOST is an IPv4 address (192.0.2.7) or a host name"
check "add --help: [IPv6]:PORT" out_has "[IPv6]:PORT   an IPv6 address in brackets"
check "add --help: port required and its range" out_has "PORT is required, 1 to 65535"
check "add --help: IPv4-mapped refused" out_has "an IPv4-mapped IPv6 address ([::ffff:192.0.2.7]:7979: write"
check "add --help: zone ids refused" out_has "a zone id ([fe80::1%eth0]:7979)"
check "add --help: a failed listen is a warning" out_has "change is still saved and a warning on stderr says why"
run "$D" peer ticket --help
check "ticket --help: why in --json" out_has "print {node_id, ticket, addrs, listening, why}"

# ---- ds peer ticket: where this node accepts syncs, and why it does not ----
# Without a daemon: config.json's sync.listen (or the default), read with
# the user's home; a config.json that cannot be loaded is an error, not a
# silent 0.0.0.0:7979.
K="$T/kim"
STOP_HOMES+=("$K" "$T/lou" "$T/mia")   # stopped at exit: only our daemons
run "$K" peer init
run "$K" peer ticket --json
check "ticket, no daemon: not listening" jq_ "d['listening'] is False and d['ticket'].startswith('ds1:')"
check "ticket, no daemon: the default port" jq_ "len(d['addrs']) >= 1 and all(a.endswith(':7979') for a in d['addrs'])"
check "ticket, no daemon: why says the daemon is not running" jq_ "d['why'].startswith('the daemon is not running (start it with ds start)')"
check "ticket, no daemon: why says no peer may pull" jq_ "'no peer may pull from us yet' in d['why']"
run "$K" peer ticket
check "ticket text: the ticket on stdout" out_has "ds1:"
check "ticket text: the note says why" err_has "note: this node is not accepting syncs now: the daemon is not running"
printf '{"sync": {"listen": "127.0.0.1:4000",}}\n' >"$K/config.json"
run "$K" peer ticket
check "ticket, broken config.json: fails" rc_is 1
check "ticket, broken config.json: names the file and the problem" err_has "$K/config.json:1:"
check "ticket, broken config.json: says to fix it" err_has "Fix config.json"
check "ticket, broken config.json: no ticket" out_empty
printf '{"sync": {"listen": "localhost:4000"}}\n' >"$K/config.json"
run "$K" peer ticket
check "ticket, bad sync.listen: fails, naming the key" err_has "sync.listen"
check "ticket, bad sync.listen: no ticket" out_empty
# "~" in config.json is the user's home: with $HOME empty, the password entry's
printf '{"watch": ["~/notes"], "sync": {"listen": "127.0.0.1:4000"}}\n' >"$K/config.json"
HOME='' run "$K" peer ticket --json
check "ticket, no daemon: sync.listen of config.json (~ expanded without \$HOME)" jq_ "d['addrs'] == ['127.0.0.1:4000']"
check "ticket, no daemon, sync.listen set: why is only that the daemon is not running" \
    jq_ "d['why'] == 'the daemon is not running (start it with ds start)'"
rm -f "$K/config.json"
# In the daemon a readable identity.key is set back to 0600 too; the
# warning goes to its log.
run "$K" start
check "daemon for the identity.key mode: starts" rc_is 0
[ -s "$K/daemon.pid" ] && remember "$(cat "$K/daemon.pid")"
chmod 644 "$K/identity.key"
run "$K" peer id
check "readable identity.key, daemon: still used" rc_is 0
check "readable identity.key, daemon: now 0600" [ "$(stat -c %a "$K/identity.key")" = 600 ]
check "readable identity.key, daemon: the warning in its log" grep -qF "$K/identity.key was readable by other users (mode 0644); ds set it to 0600" "$K/daemon.log"
run "$K" stop

# A daemon that starts fine (no identity yet, so nothing to listen with)
# but whose --listen address is taken when ds peer init, then ds peer add
# --publish, make it listen: the change is saved, the reply warns.
hold_udp_port 60
L="$T/lou"
run "$L" start --listen "127.0.0.1:$BUSY"
check "busy --listen, no identity: the daemon starts" rc_is 0
[ -s "$L/daemon.pid" ] && remember "$(cat "$L/daemon.pid")"
run "$L" peer init
check "init, daemon cannot listen: exit 0 (saved)" rc_is 0
check "init, daemon cannot listen: the NodeId" out_has "Generated NodeId: "
check "init, daemon cannot listen: identity saved" test -s "$L/identity.key"
check "init, daemon cannot listen: warning on stderr" \
    err_has "ds: warning: saved, but the daemon cannot accept syncs: cannot listen on 127.0.0.1:$BUSY"
run "$L" peer ticket --json
check "ticket in the daemon: its --listen address, not the default" jq_ "d['addrs'] == ['127.0.0.1:$BUSY'] and d['listening'] is False"
check "ticket in the daemon: why names the bind failure" jq_ "d['why'].startswith('cannot listen on 127.0.0.1:$BUSY')"
run "$L" peer add "$AID" --name alice --publish --json
check "add --publish, daemon cannot listen: exit 0" rc_is 0
check "add --publish, daemon cannot listen: --json warning" \
    jq_ "d['warning'].startswith('saved, but the daemon cannot accept syncs: cannot listen on 127.0.0.1:$BUSY')"
check "add --publish, daemon cannot listen: warning on stderr too" err_has "ds: warning: saved, but the daemon cannot accept syncs"
check "add --publish, daemon cannot listen: saved" python3 -c "
import json,sys; p=json.load(open('$L/peers.json'))['peers']['$AID']; sys.exit(0 if p['publish'] is True else 1)"
kill "$BUSYPID" 2>/dev/null
wait "$BUSYPID" 2>/dev/null
run "$L" peer add "$BID" --name bob --publish --json
check "add --publish, address free: no warning" jq_ "d['warning'] is None"
check "add --publish, address free: nothing on stderr" err_lacks "warning"
run "$L" peer ticket --json
check "ticket in the daemon: listening on --listen, no why" jq_ "d['listening'] is True and d['addrs'] == ['127.0.0.1:$BUSY'] and d['why'] is None"
run "$L" stop
check "lou's daemon stops" rc_is 0

# The default address (0.0.0.0:7979), bound only once some peer has
# publish on: ds peer add --publish is what makes the daemon listen.  The
# port is held on 127.0.0.1 (or something else holds it: just as taken).
python3 -c 'import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.bind(("127.0.0.1", 7979))
except OSError:
    pass
print("ready", flush=True); time.sleep(60)' >"$T/hold.7979" &
HOLDPID=$!
remember "$HOLDPID"
wait_until test -s "$T/hold.7979"
M="$T/mia"
run "$M" peer init
run "$M" start
check "default address: the daemon starts (no peer has publish)" rc_is 0
[ -s "$M/daemon.pid" ] && remember "$(cat "$M/daemon.pid")"
run "$M" peer ticket --json
check "ticket in the daemon, no peer has publish: says so" jq_ "d['listening'] is False and d['why'].startswith('no peer may pull from us yet')"
check "ticket in the daemon, no peer has publish: the default port" jq_ "all(a.endswith(':7979') for a in d['addrs'])"
run "$M" peer add "$AID" --publish
check "add --publish, default address taken: exit 0" rc_is 0
check "add --publish, default address taken: added" out_has "can pull from us"
check "add --publish, default address taken: warns" err_has "ds: warning: saved, but the daemon cannot accept syncs: cannot listen on 0.0.0.0:7979"
run "$M" peer ticket
check "ticket text: the note gives the bind failure" err_has "not accepting syncs now: cannot listen on 0.0.0.0:7979"
run "$M" stop
kill "$HOLDPID" 2>/dev/null
wait "$HOLDPID" 2>/dev/null

# ---- malformed files -------------------------------------------------------
cp "$B/share.json" "$T/share.bak" 2>/dev/null || true
printf '{"shared_projects": [\n  "/x",\n  42\n]}\n' >"$B/share.json"
run "$B" peer shared
check "bad share.json: fails" rc_is 1
check "bad share.json: names file" err_has "$B/share.json"
check "bad share.json: says what" err_has "entry 2"
printf '{"shared_projects": [\n  "/x",\n' >"$B/share.json"
run "$B" peer shared
check "truncated share.json: line" err_has "(line "
printf '{"shared_projects": [\n  "/x\\u0000y"\n]}\n' >"$B/share.json"
run "$B" peer shared
check "share.json with a NUL: says so and where" err_has "$B/share.json: the file contains a NUL character (written \u0000), which no path or name may hold (line 2, column"
check "share.json with a NUL: no jansson flag" err_lacks "JSON_ALLOW_NUL"
rm -f "$B/share.json"
cp "$B/peers.json" "$T/peers.bak"
printf '{\n  "peers": {\n    "zz": {"name": "x"}\n  }\n}\n' >"$B/peers.json"
run "$B" peer list
check "bad peers.json: names file" err_has "$B/peers.json"
check "bad peers.json: says what" err_has "is not a NodeId"
run "$B" query quokka
check "bad peers.json: query says so too" err_has "$B/peers.json"
printf '{"peers": {,}}' >"$B/peers.json"
run "$B" peer list
check "syntax error peers.json: line" err_has "(line 1)"
cp "$T/peers.bak" "$B/peers.json"
run "$B" peer list
check "restored peers.json" rc_is 0

# ---- at most 63 subscribed peers: the most ds keeps replicas of -----------
E="$T/erin"
run "$E" peer init
python3 - "$E/peers.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d.setdefault("peers", {})
for i in range(63):
    d["peers"]["%064x" % (i + 1)] = {"name": "s%d" % i, "subscribe": True, "publish": False,
                                     "last_sync": None, "addrs": ["127.0.0.1:9"]}
json.dump(d, open(sys.argv[1], "w"))
PY
run "$E" peer add "$CID" --name c64
check "64th subscribed peer: refused" rc_is 1
check "64th subscribed peer: says the limit" err_has "63 peers are subscribed already"
check "64th subscribed peer: says what to do" err_has "--no-subscribe"
run "$E" peer list --json
check "64th subscribed peer: not saved" jq_ "len(d['peers']) == 63"
run "$E" peer add "$CID" --name c64 --no-subscribe
check "64th peer without subscribe: added" rc_is 0
run "$E" peer add c64 --subscribe
check "subscribing it later: refused too" rc_is 1
run "$E" peer add s0 --publish
check "a subscribed peer's other flags still change" rc_is 0
# ds peer import --add of a new signer would subscribe a 64th peer too
run "$E" peer import --add --name alice "$T/alice1.dsx"
check "import --add at the limit: refused" rc_is 1
check "import --add at the limit: says the limit" err_has "63 peers are subscribed already"
check "import --add at the limit: says what to do" err_has "Unsubscribe a peer first"
check "import --add at the limit: no replica made" [ ! -e "$E/peers/$AID" ]
run "$E" peer list --json
check "import --add at the limit: the peer not saved" jq_ "len(d['peers']) == 64 and not any(p['node_id'] == '$AID' for p in d['peers'])"
# A hand-edited peers.json with more: a sync of every peer says so.
python3 - "$E/peers.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for v in d["peers"].values():
    v["subscribe"] = True
json.dump(d, open(sys.argv[1], "w"))
PY
run "$E" peer sync
check "64 subscribed: sync of every peer refused" rc_is 1
check "64 subscribed: says the limit" err_has "64 peers are subscribed; a sync of every peer takes at most 63"

# ---- lock: bounded wait ----------------------------------------------------
if command -v flock >/dev/null 2>&1; then
    flock "$B/peers/.lock" sleep 5 &
    LP=$!
    sleep 0.5
    DS_LOCK_TIMEOUT_MS=300 run "$B" peer add "$CID" --no-subscribe
    check "lock held: fails after the wait" rc_is 1
    check "lock held: message" err_has "held by another ds process"
    kill "$LP" 2>/dev/null
    wait "$LP" 2>/dev/null
fi

finish
