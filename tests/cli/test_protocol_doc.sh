#!/usr/bin/env bash
# test_protocol_doc.sh - docs/protocol.md is precise enough for another
# implementation: tests/cli/ds_wire.py, written from the doc alone (not
# from the C code), talks to ds's real sync state machines, driven by
# tests/tools/sync_wire over byte streams in files.
#
# Usage: bash tests/cli/test_protocol_doc.sh /path/to/ds
# (the sync_wire binary: $DS_SYNC_WIRE, set by ctest, else
# tests/sync_wire next to ds in the build tree)
#
# Publisher side (ds_wire.py requests, ds answers): a full sync decodes
# under every rule of the doc, with the shared nodes only (a sub-directory
# of a shared root yes; /proj-x, a private project, no), correct hashes,
# the record key order the doc gives and pages within the size asked; the
# cursor has the documented length and layout version and no sequence
# number in the clear; an incremental sync with it sends nothing (under
# a new cursor), then only a new node; an altered cursor starts over; a
# project shared later arrives (old node included); every ERROR the doc
# lists for a request gets exactly the documented code and message.
# Subscriber side (ds_wire.py builds the publisher's stream, ds applies
# it): pages are applied, `ds query` shows the [alice] hits, the request
# is the documented one and carries back the last cursor, nothing is
# duplicated, --full sends a nil cursor, a wrong hash is recomputed, and
# the documented failures (ERROR, FIN before the last page, data after
# it) end the sync with the documented text, earlier pages kept.
set -u
. "$(dirname "$0")/lib.sh"
lib_init ds-protodoc-test "$@"
unset DS_HOME
RUN_TAKES_HOME=1
SUMMARY_PREFIX="test_protocol_doc: "
SW=${DS_SYNC_WIRE:-$(dirname "$DS")/tests/sync_wire}
[ -x "$SW" ] || abort "sync_wire not found at $SW (build the sync_wire target)"
WIRE=(python3 "$HERE/ds_wire.py")

# wire ARGS... : ds_wire.py with stdin from $T/in; stdout to $T/out, RC.
wire() { "${WIRE[@]}" "$@" <"$T/in" >"$T/out" 2>"$T/err"; RC=$?; }
# serve ARGS... : alice's publisher answers $T/req; its stream in $T/stream.
serve() { "$SW" serve "$A" "$@" <"$T/req" >"$T/stream" 2>"$T/serve.err"; SRC=$?; }
# decode ARGS... : ds_wire.py decodes $T/stream (JSON in $T/out).
decode() { cp "$T/stream" "$T/in"; wire decode "$@"; }
# request ARGS... : ds_wire.py writes a request into $T/req.
request() { : >"$T/in"; "${WIRE[@]}" request "$@" <"$T/in" >"$T/req" 2>"$T/err"; }
# jx PY-EXPR [ARGS...] : jq_ with arguments (sys.argv[3:]).
jx() {
    _py 'import json, re, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$T/out" "$@"
}
# expect_error CODE MESSAGE : the stream is exactly one documented ERROR.
expect_error() {
    decode
    check "ERROR $1 decodes (ok)" jx 'd["ok"] and not d["done"] and not d["nodes"]'
    check "ERROR $1: code" jx "d['error'] and d['error']['code'] == '$1'"
    check "ERROR $1: the documented message ($2)" jx "d['error']['message'] == sys.argv[3]" "$2"
}

# ---- the oracle's own checks -----------------------------------------------------
: >"$T/in"
wire selftest
check "ds_wire.py selftest passes" rc_is 0
check "ds_wire.py selftest says how many checks" out_has "checks passed"

# ---- alice, the publisher ----------------------------------------------------------
A="$T/alice"
P="$T/proj"
mkdir -p "$P/sub" "$T/proj-x" "$T/priv" "$T/later"
run "$A" peer init
check "alice: peer init" rc_is 0
AID=$(DS_HOME="$A" "$DS" peer id)
run "$A" peer share "$P"
for i in 1 2 3 4 5; do note "$A" "$P" "numbat shared note $i"; done
note "$A" "$P/sub" "numbat in a sub-directory of the shared root"
note "$A" "$T/proj-x" "numbat next door: proj-x is not beneath proj"
note "$A" "$T/priv" "private canary never leaves"
note "$A" "$T/later" "quokka written before its project was shared"
printf '# Heading\n\nA file chunk about numbats, with metadata.\n' >"$P/file.md"
run "$A" add "$P/file.md"
check "alice: ds add a shared file" rc_is 0
NSHARED=7

# ---- a full sync, pages of at most 2 nodes ------------------------------------------
request --max-nodes 2
check "request encodes" [ -s "$T/req" ]
serve
check "publisher serves a full sync" [ "$SRC" = 0 ]
decode --shared "$P"
check "full sync: every documented rule holds" rc_is 0
check "full sync: done (last page, then FIN)" jx 'd["ok"] and d["done"] and d["error"] is None'
check "full sync: exactly the shared nodes" jx "len(d['nodes']) == $NSHARED"
check "full sync: the sub-directory's node is shared" \
    jx 'any(n["project"] == sys.argv[3] for n in d["nodes"])' "$P/sub"
check "full sync: no node of proj-x, priv or later" \
    jx 'not any(("next door" in n["content"]) or ("canary" in n["content"]) or ("quokka" in n["content"]) for n in d["nodes"])'
check "full sync: every hash given and right" jx 'all(n["hash_ok"] is True for n in d["nodes"])'
check "full sync: pages hold at most the 2 nodes asked" jx 'all(p["nodes"] <= 2 for p in d["pages"])'
check "full sync: has_more false on the last page only" \
    jx 'all(p["has_more"] for p in d["pages"][:-1]) and not d["pages"][-1]["has_more"]'
# docs/protocol.md, Node map: records carry 10 keys, or 11 with metadata,
# in the table's order.
ORDER='["id","content","source","source_type","project","namespace","timestamp","confidence","chunk_index","hash"]'
check "full sync: record keys in the documented order" \
    jx "all([k for k in n['keys'] if k != 'metadata'] == $ORDER and len(n['keys']) in (10, 11) for n in d['nodes'])"
check "full sync: the file chunk is source_type file" \
    jx 'any(n["source_type"] == "file" and n["source"] == sys.argv[3] for n in d["nodes"])' "$P/file.md"
LAST=$(jval 'd["last_cursor"]')
NPAGES=$(jval 'len(d["pages"])')

# ---- the cursor ---------------------------------------------------------------------
wire cursor "$LAST"
check "cursor: 41 bytes, layout 2 (sealed)" jx 'd["layout"] == 2 and d["length"] == 41'
# Sealed: no sequence number (they count every node written, shared or
# not) stands in it in the clear.
check "cursor: no sequence number in the clear" python3 -c '
import sys
c = bytes.fromhex(sys.argv[1])
sys.exit(any(c[i:i + 8] == n.to_bytes(8, "big") for n in range(1, 1000) for i in range(34)))' "$LAST"
check "pages: one per 2 shared nodes, at least" [ "$NPAGES" -ge $(((NSHARED + 1) / 2)) ]

# ---- incremental syncs ------------------------------------------------------------------
request --cursor "$LAST"
serve
decode --shared "$P"
check "incremental: nothing new, nothing sent" jx 'd["ok"] and d["done"] and d["nodes"] == []'
check "incremental: the same state gets another cursor (a fresh nonce)" \
    jx 'd["last_cursor"] != sys.argv[3]' "$LAST"
# An altered cursor does not open: the publisher starts over, no error.
BAD=$(python3 -c 'import sys; c = bytearray.fromhex(sys.argv[1]); c[20] ^= 1; print(c.hex())' "$LAST")
request --cursor "$BAD"
serve
decode --shared "$P"
check "an altered cursor: started over (all $NSHARED shared nodes)" \
    jx "d['ok'] and d['done'] and len(d['nodes']) == $NSHARED"
note "$A" "$P" "numbat written after the first sync"
request --cursor "$LAST"
serve
decode --shared "$P"
check "incremental: only the new node" \
    jx 'd["done"] and [n["content"] for n in d["nodes"]] == ["numbat written after the first sync"]'
LAST=$(jval 'd["last_cursor"]')

# A project shared later: the digest changes, the publisher starts over,
# and the old node of that project comes too.
run "$A" peer share "$T/later"
request --cursor "$LAST"
serve
decode --shared "$P" --shared "$T/later"
check "shared later: its old node arrives" jx 'any("quokka" in n["content"] for n in d["nodes"])'
check "shared later: started over (all $((NSHARED + 2)) shared nodes)" \
    jx "d['done'] and len(d['nodes']) == $((NSHARED + 2))"
LAST=$(jval 'd["last_cursor"]')
: >"$T/in"
wire share-digest "$T/later" "$P"
DIGEST2=$(cat "$T/out")
request --cursor "$LAST"
serve
decode --shared "$P" --shared "$T/later"
check "shared later: the new cursor continues (nothing more)" jx 'd["ok"] and d["done"] and d["nodes"] == []'
: >"$T/in"
wire share-digest "$P" "$T/later" "$P"
check "share digest: sorted and deduplicated roots" out_has "$DIGEST2"

# ---- the publisher's ERRORs, as documented ----------------------------------------------
request --v 2
serve
expect_error UnsupportedVersion "Unsupported sync protocol version 2; this publisher speaks version 1"
request
PEER=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
serve --unauthorized --peer "$PEER"
expect_error NotAuthorized "Peer $PEER not authorized. Use: ds peer add $PEER --publish"
serve --rate-limited
expect_error RateLimited "Too many concurrent syncs; try again later"
# A valid message of another type (an ERROR) in place of the request; a
# request map merely renamed sync_response is no valid message at all
# (its cursor is nil, and a response's must be 41 bytes).
: >"$T/in"
"${WIRE[@]}" error --code Internal --message "not a request" <"$T/in" >"$T/req"
serve
expect_error BadRequest "Expected sync_request, got error"
request --type sync_response
serve
expect_error BadRequest "Malformed sync request (malformed data)"
request --type no_such_type
serve
expect_error BadRequest "Malformed sync request (malformed data)"
request --cursor 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677
serve
expect_error BadRequest "Malformed sync request (malformed data)"
: >"$T/in"
"${WIRE[@]}" frame --payload-hex 81 --length 70000 <"$T/in" >"$T/req"
serve
expect_error BadRequest "Subscriber sent a frame of 70000 bytes, above the limit of 65536 bytes"
"${WIRE[@]}" frame --payload-hex "" <"$T/in" >"$T/req"
serve
expect_error BadRequest "Subscriber sent a malformed frame (zero length)"
: >"$T/req"
serve
expect_error BadRequest "Stream ended before a request"
request
head -c 10 "$T/req" >"$T/req.cut" && mv "$T/req.cut" "$T/req"
serve
expect_error BadRequest "Stream ended inside a frame"
request
cat "$T/req" "$T/req" >"$T/req2" && mv "$T/req2" "$T/req"
serve
decode
check "two requests: the documented ERROR, last" \
    jx 'd["ok"] and d["error"] and d["error"]["code"] == "BadRequest" and d["error"]["message"] == "Unexpected data after the request"'

# ---- bob, the subscriber, fed by the doc's publisher ---------------------------------------
B="$T/bob"
run "$B" peer init
run "$B" peer add "$AID" --name alice
check "bob: peer add alice" rc_is 0
cat >"$T/nodes.json" <<'EOF'
[
 {"content": "wombat burrows are cube shaped", "source": "note:2026-01-01T00:00:00Z",
  "source_type": "note", "project": "/srv/alice/zoo", "timestamp": 1767225600000},
 {"content": "wombat diet: grasses and roots \u00e9t\u00e9 \u2713", "source": "/srv/alice/zoo/diet.md",
  "source_type": "file", "project": "/srv/alice/zoo", "namespace": "team", "chunk_index": 3,
  "confidence": 0.75, "metadata": "{\"lang\": \"en\"}", "timestamp": 1767225601000},
 {"content": "wombat session insight", "source": "9f0c2b7e-1111-4222-8333-444455556666",
  "source_type": "session", "project": "/srv/alice/zoo", "timestamp": 1767225602000}
]
EOF
# apply ARGS... : bob's subscriber applies $T/stream; its request in $T/sreq.
apply() { "$SW" apply "$B" "$AID" --request-out "$T/sreq" "$@" <"$T/stream" >"$T/out" 2>"$T/err"; RC=$?; }
# sreq PY-EXPR : holds for d = ds_wire.py's reading of bob's request.
sreq() { cp "$T/sreq" "$T/in"; "${WIRE[@]}" decode-request <"$T/in" >"$T/rq" 2>>"$T/err"
         _py 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
             "$T/rq" "$1" "${@:2}"; }

: >"$T/in"
"${WIRE[@]}" response --nodes-json "$T/nodes.json" --page-nodes 2 <"$T/in" >"$T/stream"
apply
check "subscriber: the doc's stream is applied (DONE)" rc_is 0
check "subscriber: 2 pages, 3 new nodes" jx 'd["state"] == "done" and d["pages"] == 2 and d["nodes_new"] == 3'
check "subscriber: its request is the documented one (nil cursor, page size 0 = the publisher's)" \
    sreq 'd["ok"] and d["v"] == 1 and d["type"] == "sync_request" and d["cursor"] is None and d["max_nodes"] == 0 and d["max_bytes"] == 0'
run "$B" query wombat
check "bob: ds query finds the doc-made nodes" rc_is 0
check "bob: ... labelled [alice]" out_has "[alice]"
check "bob: ... all three" [ "$(grep -c '^[0-9]*\. \[alice\]' "$T/out")" = 3 ]
cp "$T/stream" "$T/in"
"${WIRE[@]}" decode <"$T/in" >"$T/out"
SENT=$(jval 'd["last_cursor"]')
apply
check "again: nothing duplicated" jx 'd["state"] == "done" and d["nodes_received"] == 3 and d["nodes_new"] == 0'
check "again: the request carries back the last cursor unchanged" sreq 'd["cursor"] == sys.argv[3]' "$SENT"
apply --full --page-nodes 100 --page-bytes 2097152
check "--full: the request's cursor is nil" sreq 'd["cursor"] is None'
check "the page size asked (ds peer sync's 100 nodes, 2 MiB) is in the request" \
    sreq 'd["max_nodes"] == 100 and d["max_bytes"] == 2097152'

# A wrong hash is not trusted: the node is kept, its hash recomputed.
cat >"$T/bad.json" <<'EOF'
[{"content": "echidna with a forged hash", "source": "note:2026-01-02T00:00:00Z",
  "source_type": "note", "project": "/srv/alice/zoo", "timestamp": 1767312000000}]
EOF
"${WIRE[@]}" response --nodes-json "$T/bad.json" --bad-hash <"$T/in" >"$T/stream"
apply
check "wrong hash: the node is applied" jx 'd["state"] == "done" and d["nodes_new"] == 1'
run "$B" query echidna
check "wrong hash: the node is searchable" out_has "[alice]"

# ---- the subscriber's documented failures ------------------------------------------------
: >"$T/in"
"${WIRE[@]}" error --code NotAuthorized --message "Peer x not authorized. Use: ds peer add x --publish" \
    <"$T/in" >"$T/stream"
apply
check "ERROR: the sync fails" rc_is 1
check "ERROR: the peer's code and message" \
    jx 'd["state"] == "failed" and d["code"] == "NotAuthorized" and "not authorized" in d["message"]'
"${WIRE[@]}" error --code RateLimited --message "" <"$T/in" >"$T/stream"
apply
check "ERROR without a message: the documented text for its code" \
    jx 'd["code"] == "RateLimited" and d["message"] == "Too many concurrent syncs; try again later"'
"${WIRE[@]}" error --code Teapot --message "" <"$T/in" >"$T/err.frame"
cat "$T/err.frame" "$T/err.frame" >"$T/stream"
apply
check "ERROR of an unknown code without a message, then more bytes: the documented text" \
    jx 'd["state"] == "failed" and d["code"] == "Teapot" and d["message"] == "the publisher reported an error without a message"'
cat >"$T/more.json" <<'EOF'
[{"content": "platypus page one", "source": "note:a", "source_type": "note", "project": "/srv/z", "timestamp": 1},
 {"content": "platypus page two", "source": "note:b", "source_type": "note", "project": "/srv/z", "timestamp": 2}]
EOF
"${WIRE[@]}" response --nodes-json "$T/more.json" --page-nodes 1 <"$T/in" >"$T/full.stream"
# The first frame only (its length prefix says where it ends).
python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); n = int.from_bytes(b[:4], "big"); sys.stdout.buffer.write(b[:4 + n])' \
    "$T/full.stream" >"$T/stream"
apply
check "FIN before the last page: fails" rc_is 1
check "FIN before the last page: the documented text" jx '"stream ended before the last page" in d["message"]'
check "FIN before the last page: the page before stays applied" jx 'd["nodes_new"] == 1'
"${WIRE[@]}" error --code Internal --message late <"$T/in" >"$T/err.frame"
cat "$T/full.stream" "$T/err.frame" >"$T/stream"
apply
check "data after the last page: fails" rc_is 1
check "data after the last page: the documented text" jx '"publisher sent data after the last page" in d["message"]'
"${WIRE[@]}" frame --payload-hex "" <"$T/in" >"$T/stream"
apply
check "zero-length frame: the documented text" \
    jx 'd["state"] == "failed" and "publisher sent a malformed frame (zero length)" in d["message"]'
"${WIRE[@]}" frame --payload-hex 81 --length 16777217 <"$T/in" >"$T/stream"
apply
check "frame above 16 MiB: the documented text" \
    jx '"publisher sent a frame of 16777217 bytes, above the limit of 16777216 bytes" in d["message"]'
finish
