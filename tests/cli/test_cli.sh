#!/usr/bin/env bash
# shellcheck disable=SC2317  # predicates are only called through check (lib.sh)
# test_cli.sh - integration test of the ds command line (foundation
# commands: add, note, query, show, related, stats, reset, help).
#
# Usage: bash tests/cli/test_cli.sh /path/to/ds
#
# Runs the real binary against a throw-away home (DS_HOME inside a
# mktemp -d directory, removed at exit), checks exit statuses, stdout,
# stderr and --json output (validated with python3), and prints
# "N passed, M failed" as its last line; exits non-zero on any failure.
set -u
. "$(dirname "$0")/lib.sh"
lib_init ds-cli-test "$@"
export DS_HOME="$T/home"
PY_ERR="$T/pyerr"

# A hint: a second line after the message, or an embedded "run ds ...".
has_hint() { [ "$(wc -l <"$T/err")" -ge 2 ] || grep -q "run ds " "$T/err"; }
# expect_usage DESC PATTERN ARGS...: exit 2, PATTERN on stderr, a hint, no stdout.
expect_usage() {
    local desc=$1 pat=$2
    shift 2
    run "$@"
    check "$desc: exit 2" rc_is 2
    check "$desc: message '$pat'" err_has "$pat"
    check "$desc: hint" has_hint
    check "$desc: nothing on stdout" out_empty
}
nodes_total() { run stats --json && jval 'd["nodes"]'; }

# ---------------------------------------------------------------- usage
run
check "no arguments: exit 2" rc_is 2
check "no arguments: short usage on stderr" err_has "Usage: ds"
check "no arguments: points to --help" err_has "ds --help"

run --version
check "--version: exit 0" rc_is 0
check "--version: prints version" grep -qE '^ds [0-9]+\.[0-9]+\.[0-9]+$' "$T/out"

run --help
check "--help: exit 0" rc_is 0
for c in add note query show related stats reset help; do
    check "--help lists $c" grep -qE "^  $c( |$)" "$T/out"
done
check "--help mentions --home" out_has "--home DIR"

# The man page and docs/cli.md document every command --help lists, and
# every peer subcommand (so a new command cannot ship undocumented).
DOCS=$HERE/../../docs
cmds=$(awk '/^Commands:/ {on = 1; next} on && /^$/ {exit} on {print $1}' "$T/out")
check "--help lists commands" test -n "$cmds"
for c in $cmds; do
    check "man page documents ds $c" grep -qE "^\.SS \"ds $c( |\")" "$DOCS/ds.1"
    check "docs/cli.md documents ds $c" grep -qE "^## .*ds $c( |$|,)" "$DOCS/cli.md"
done
run peer --help
subs=$(awk '/^Subcommands:/ {on = 1; next} on && /^$/ {exit} on && /^  [a-z]/ {print $1}' "$T/out")
check "peer --help lists subcommands" test -n "$subs"
for c in $subs; do
    check "man page documents ds peer $c" grep -qE "^\.SS \"ds peer (.* )?$c( |\")" "$DOCS/ds.1"
    check "docs/cli.md documents ds peer $c" grep -qE "ds peer $c( |\`|$)" "$DOCS/cli.md"
done

for c in add note query show related stats reset; do
    run "$c" --help
    check "$c --help: exit 0" rc_is 0
    check "$c --help: usage line" out_has "Usage: ds $c"
    run help "$c"
    check "help $c: same text" out_has "Usage: ds $c"
done
run query --help
check "query --help documents --limit" out_has "--limit N"
check "query --help documents --json" out_has "--json"

expect_usage "unknown command" "unknown command 'frobnicate'" frobnicate
check "unknown command: hint names ds --help" err_has "Run 'ds --help'"
expect_usage "help for unknown command" "unknown command 'nope'" help nope
# ds help peer SUB is ds peer SUB --help
run help peer sync
check "help peer sync: exit 0" rc_is 0
check "help peer sync: the subcommand's help" out_has "Usage: ds peer sync [NODE_ID|NAME] [--full]"
expect_usage "help for an unknown peer subcommand" "unknown subcommand 'nope'" help peer nope
expect_usage "help with a subcommand of a command without any" "ds query has no subcommands" help query x
expect_usage "unknown global option" "unknown option '--bogus'" --bogus stats
expect_usage "unknown command option" "unknown option '--bogus'" query --bogus foo
check "unknown command option: hint names the command" err_has "ds query --help"
expect_usage "unknown short option" "unknown option '-Z'" show -Z
expect_usage "option value missing" "needs a value" query foo --limit
expect_usage "flag given a value" "takes no value" stats --json=yes
expect_usage "add without files" "missing FILE" add
expect_usage "note without text" "missing TEXT" note
expect_usage "query without text" "missing TEXT" query
expect_usage "related without id" "missing ID" related
expect_usage "show with a stray argument" "unexpected argument 'extra'" show extra
expect_usage "bad --format" "unknown output format" query --format yaml foo

# --limit validation happens before anything is read.
for bad_limit in abc 0 -3 1001 99999999999999999999999 1.5 "" 5x; do
    expect_usage "--limit '$bad_limit'" "limit" query --limit "$bad_limit" foo
done
expect_usage "show --limit 0" "limit" show --limit 0
expect_usage "related --limit abc" "limit" related --limit abc abcd

# ---------------------------------------------------------------- no store yet
expect_usage "empty query" "empty query: give some words to search for" query ""
expect_usage "blank query" "empty query" query "   "
expect_usage "punctuation-only query" "no searchable words" query '?!... ---'

for c in "query foo" "show" "related abcd1234" "stats"; do
    # shellcheck disable=SC2086
    run $c
    check "$c without a store: exit 1" rc_is 1
    check "$c without a store: message" err_has "No knowledge store at $DS_HOME yet"
    check "$c without a store: hint" err_has 'ds note "..." or ds add FILE'
done
check "read commands do not create the home" test ! -e "$DS_HOME"

run reset --yes
check "reset --yes without a store: exit 0" rc_is 0
check "reset --yes without a store: says so" out_has "Nothing to reset"
check "reset does not create the home" test ! -e "$DS_HOME"

expect_usage "empty note" "empty note" note "   "
check "empty note does not create the home" test ! -e "$DS_HOME"

# ---------------------------------------------------------------- add
mkdir -p "$T/files/sub" "$T/projA" "$T/projA-x" "$T/projB"
printf 'Snapshot isolation in LMDB\n\nReaders never block writers in LMDB.\n' >"$T/files/lmdb.txt"
printf 'abc\0def\n' >"$T/files/bin.dat"
printf 'caf\xc3 broken utf8 \xff\xfe\n' >"$T/files/latin.txt"
ln -s "$T/files/gone.txt" "$T/files/dangling.txt"

run add "$T/files/lmdb.txt" "$T/files/bin.dat"
check "add text + binary: exit 1 (one failed)" rc_is 1
check "add text + binary: text file added" out_has "added $T/files/lmdb.txt (1 node)"
check "add text + binary: binary refused" \
    err_has "$T/files/bin.dat: not a text file (binary content); ds add takes text files"
check "home created on first write" test -d "$DS_HOME/db"
check "home is mode 0700" test "$(stat -c %a "$DS_HOME")" = 700
check "store holds only the text file" test "$(nodes_total)" = 1

run add "$T/files/latin.txt"
check "invalid UTF-8 refused: exit 1" rc_is 1
check "invalid UTF-8 refused: message" err_has "latin.txt: not a text file (binary content)"

run add "$T/files/missing.txt"
check "missing file: exit 1" rc_is 1
check "missing file: message" err_has "$T/files/missing.txt: No such file or directory"
run add "$T/files/dangling.txt"
check "dangling symlink: exit 1" rc_is 1
check "dangling symlink: message" err_has "dangling.txt: No such file or directory"
if [ "$(id -u)" != 0 ]; then
    # (root reads anything, so this case only runs for ordinary users)
    printf 'secret\n' >"$T/files/noread.txt"
    chmod 000 "$T/files/noread.txt"
    run add "$T/files/noread.txt"
    check "unreadable file: exit 1" rc_is 1
    check "unreadable file: message" err_has "noread.txt: Permission denied"
fi
run add "$T/files/sub"
check "directory: exit 1" rc_is 1
check "directory: message" err_has "sub: Is a directory"
check "failed adds wrote nothing" test "$(nodes_total)" = 1

run add "$T/files/lmdb.txt"
check "re-add unchanged: exit 0" rc_is 0
check "re-add unchanged: skipped" out_has "$T/files/lmdb.txt: unchanged, skipped"
check "re-add unchanged: no new node" test "$(nodes_total)" = 1

# relative path, resolved against the current directory, and --json
( cd "$T/files" && "$DS" add --json lmdb.txt >"$T/out" 2>"$T/err" </dev/null )
RC=$?
check "relative re-add --json: exit 0" rc_is 0
check "add --json: array with canonical source" \
    jq_ "d[0]['status'] == 'unchanged' and d[0]['source'] == '$T/files/lmdb.txt' and d[0]['path'] == 'lmdb.txt'"

printf 'Copy-on-write B+tree pages\n\nLMDB writes new pages and never overwrites live ones.\n' >"$T/files/lmdb.txt"
run add "$T/files/lmdb.txt"
check "changed file: exit 0" rc_is 0
check "changed file: replaces" out_has "updated $T/files/lmdb.txt (1 node, replaced 1)"
check "changed file: node count does not grow" test "$(nodes_total)" = 1
run query --json "snapshot isolation readers"
check "changed file: old content gone" jq_ "len(d) == 0"
run query --json "copy-on-write pages"
check "changed file: new content found" jq_ "len(d) == 1 and d[0]['source'] == '$T/files/lmdb.txt'"

# A large Markdown file is chunked into several nodes.
python3 - "$T/files/big.md" <<'EOF'
import sys
words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
         "mike november oscar papa quebec romeo sierra tango uniform victor").split()
with open(sys.argv[1], "w") as f:
    f.write("# Big design document\n\n")
    for s in range(30):
        f.write("## Section %d\n\n" % s)
        for p in range(3):
            f.write(" ".join(words[(s + p + i) % len(words)] for i in range(60)) + "\n\n")
    f.write("## Closing\n\nThe zeppelin quokka appears only here.\n")
EOF
run add --json "$T/files/big.md"
check "large file: exit 0" rc_is 0
BIGN=$(jval 'd[0]["nodes"]')
check "large file: chunked into several nodes" test "${BIGN:-0}" -ge 5
check "large file: status added" jq_ "d[0]['status'] == 'added'"
run stats --json
check "large file: stats counts its chunks" jq_ "d['nodes_by_type']['file'] == 1 + $BIGN and d['nodes'] == 1 + $BIGN"
check "stats counts added files" jq_ "d['files'] == 2"
run query --json "zeppelin quokka"
check "large file: chunk found by its unique words" \
    jq_ "len(d) == 1 and 'zeppelin quokka' in d[0]['content']"
printf '\n## Appendix\n\nA brand new appendix about the wombat.\n' >>"$T/files/big.md"
run add "$T/files/big.md"
check "large file changed: updated" out_has "updated $T/files/big.md"
run add --json "$T/files/big.md"
BIGN2=$(jval 'd[0]["nodes"]')
check "large file changed: total = old file + new chunks, no duplicates" \
    test "$(nodes_total)" = $((1 + BIGN2))

# several files: summary line
printf 'first small file about rust traits\n' >"$T/files/one.txt"
printf 'second small file about go interfaces\n' >"$T/files/two.txt"
run add "$T/files/one.txt" "$T/files/two.txt" "$T/files/lmdb.txt"
check "several files: exit 0" rc_is 0
check "several files: summary" out_has "3 files: 2 added, 0 updated, 1 unchanged, 0 failed"

# ---------------------------------------------------------------- note
run note --tag lmdb --tag storage "The LMDB map size must be set before the environment is opened"
check "note: exit 0" rc_is 0
LMDB_ID=$(tail -n1 "$T/out")
check "note: id (UUID) on the last line" \
    grep -qE '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' <<<"$LMDB_ID"
run note "Deploy with blue green rollout behind the load balancer"
DEPLOY_ID=$(tail -n1 "$T/out")
run note --json --namespace work --project "$T/projA" "kubernetes pod eviction thresholds"
check "note --json: exit 0" rc_is 0
check "note --json: fields" \
    jq_ "d['namespace'] == 'work' and d['project'] == '$T/projA' and re.match(r'note:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$', d['source']) and len(d['id']) == 36"
KUBE_ID=$(jval 'd["id"]')
( cd "$T/projB" && "$DS" note --json "postgres vacuum tuning for projB" >"$T/out" 2>"$T/err" </dev/null )
RC=$?
check "note: project defaults to the current directory" jq_ "d['project'] == '$T/projB'"
run note --project "$T/projA" "postgres vacuum tuning for projA"
run note --project "$T/projA-x" "postgres vacuum tuning for projA-x"
run note --tag "ci" "several words" joined "into one note"
check "note: several words are joined" test "$RC" -eq 0
run note --project "$T/nonexistent" "text"
check "note --project missing dir: exit 2" rc_is 2
check "note --project missing dir: message" err_has "$T/nonexistent"
run note --namespace "" "text"
check "note --namespace empty: exit 2" rc_is 2

# ---------------------------------------------------------------- query
run query "lmdb map size environment"
check "query: exit 0" rc_is 0
check "query: rank, store label and score" grep -qE '^1\. \[local\] \(0\.[0-9]{2}|1\.00\)' "$T/out"
check "query: shows the source" out_has "lmdb:"
check "query: shows the id prefix" out_has "id ${LMDB_ID:0:8}"
run query --json "lmdb map size environment"
check "query --json: relevant note ranked first" jq_ "d[0]['id'] == '$LMDB_ID'"
check "query --json: fields" jq_ "all(set(['id','content','score','source','project','namespace','timestamp','store']) <= set(h) for h in d)"
check "query --json: scores in 0..1, best first" \
    jq_ "all(0 <= h['score'] <= 1 for h in d) and all(d[i]['score'] >= d[i+1]['score'] for i in range(len(d)-1))"
check "query --json: ISO 8601 timestamps" \
    jq_ "all(re.match(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$', h['timestamp']) for h in d)"
check "query --json: store is local" jq_ "all(h['store'] == 'local' for h in d)"
check "query --json: tags in metadata" jq_ "d[0]['metadata'] == {'tags': ['lmdb', 'storage']}"
run --json query "lmdb map size"
check "global --json works" jq_ "d[0]['id'] == '$LMDB_ID'"
run query -f json "lmdb map size"
check "-f json works" jq_ "d[0]['id'] == '$LMDB_ID'"

run query "xylophone zzyzx"
check "query without hits: exit 0" rc_is 0
check "query without hits: message" out_has "No relevant results found."
run query --json "xylophone zzyzx"
check "query --json without hits: []" jq_ "d == []"

run query --json --limit 1 postgres vacuum
check "query --limit 1" jq_ "len(d) == 1"
run query --json --namespace personal kubernetes eviction
check "query --namespace personal excludes work" jq_ "all(h['id'] != '$KUBE_ID' for h in d)"
run query --json --namespace work kubernetes eviction
check "query --namespace work finds it" jq_ "len(d) == 1 and d[0]['id'] == '$KUBE_ID'"
run query --json --project "$T/projA" postgres vacuum
check "query --project: only that project (not projA-x)" \
    jq_ "len(d) == 1 and d[0]['project'] == '$T/projA' and 'projA' in d[0]['content']"
( cd "$T" && "$DS" query --json --project projB postgres vacuum >"$T/out" 2>"$T/err" </dev/null )
RC=$?
check "query --project relative path" jq_ "len(d) == 1 and d[0]['project'] == '$T/projB'"
run query --json --project "$T/files" copy-on-write
check "query --project of a directory matches files beneath it" jq_ "len(d) == 1"

# ---------------------------------------------------------------- show
run note "the newest note of all"
NEWEST_ID=$(tail -n1 "$T/out")
run show --json --limit 3
check "show --json: exit 0" rc_is 0
check "show --limit 3" jq_ "len(d) == 3"
check "show: newest first" jq_ "d[0]['id'] == '$NEWEST_ID'"
check "show: timestamps non-increasing" jq_ "all(d[i]['timestamp'] >= d[i+1]['timestamp'] for i in range(len(d)-1))"
run show
check "show text: exit 0" rc_is 0
check "show text: newest first" test "$(grep -m1 -oE 'id [0-9a-f]{8}' "$T/out")" = "id ${NEWEST_ID:0:8}"
run show --json --namespace work
check "show --namespace" jq_ "len(d) == 1 and d[0]['id'] == '$KUBE_ID'"

# ---------------------------------------------------------------- related
run note "LMDB environment map size and readers table tuning"
run related "${LMDB_ID:0:8}"
check "related <prefix>: exit 0" rc_is 0
check "related: names the origin" out_has "Related to $LMDB_ID"
run related --json "${LMDB_ID:0:8}"
check "related --json: excludes the node itself" jq_ "all(h['id'] != '$LMDB_ID' for h in d)"
check "related --json: finds the similar note" jq_ "len(d) >= 1 and 'readers table' in d[0]['content']"
run related --json "$LMDB_ID"
check "related accepts the full id" rc_is 0
run related --json "${LMDB_ID^^}"
check "related accepts an upper-case id" rc_is 0
run related --limit 1 --json "${DEPLOY_ID:0:6}"
check "related --limit 1" jq_ "len(d) <= 1"
run show --json --limit 1000
UNKNOWN=$(python3 -c '
import json, sys
ids = [h["id"] for h in json.load(open(sys.argv[1]))]
for p in ("ffffffff", "00000000", "12345678", "abcdef01"):
    if not any(i.startswith(p) for i in ids):
        print(p); break' "$T/out")
run related "$UNKNOWN"
check "related unknown prefix: exit 1" rc_is 1
check "related unknown prefix: message" err_has "no node with an id starting with '$UNKNOWN'"
expect_usage "related invalid id" "is not a node id" related "zz-top"
expect_usage "related too short prefix" "is not a node id" related "ab"

# An ambiguous prefix: a file of 1000 chunks gives ids sharing 4 hex
# digits with near certainty (birthday bound: a miss has probability
# 5e-4, so up to three fresh attempts); kept in a second home, which also
# tests --home over DS_HOME.
python3 - "$T/files/many.md" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(1000):
        f.write("paragraph %d " % i + "lorem ipsum dolor sit amet " * 40 + "\n\n")
EOF
AMBIG=""
for attempt in 1 2 3; do
    run --home "$T/home2" reset --yes
    run --home "$T/home2" add --json "$T/files/many.md"
    check "--home: add to a second home" rc_is 0
    check "many.md: one node per paragraph" jq_ "d[0]['nodes'] == 1000"
    run --home "$T/home2" show --json --limit 1000
    AMBIG=$(python3 -c '
import collections, json, sys
c = collections.Counter(h["id"][:4] for h in json.load(open(sys.argv[1])))
print(next((p for p, n in c.items() if n > 1), ""))' "$T/out")
    [ -n "$AMBIG" ] && break
done
check "--home wins over DS_HOME" test -d "$T/home2/db"
if [ -n "$AMBIG" ]; then
    run related --home "$T/home2" "$AMBIG"
    check "related ambiguous prefix: exit 1" rc_is 1
    check "related ambiguous prefix: message" err_has "id prefix '$AMBIG' matches more than one node"
    check "related ambiguous prefix: hint" err_has "more characters"
else
    bad "no two of 3 x 1000 random ids share 4 hex digits (random source broken?)"
fi
run --home "$T/home2" reset --yes
check "--home reset" out_has "from $T/home2"

# ---------------------------------------------------------------- default home
mkdir -p "$T/fakehome"
env -u DS_HOME HOME="$T/fakehome" "$DS" note "default home note" >"$T/out" 2>"$T/err" </dev/null
RC=$?
check "default home is \$HOME/.datasphere" test -d "$T/fakehome/.datasphere/db"

# ---------------------------------------------------------------- stats
run stats
check "stats: exit 0" rc_is 0
for field in "Home:" "Data size:" "Nodes:" "note" "file" "session" "Index terms:" "Last sequence:" "Store epoch:"; do
    check "stats shows '$field'" out_has "$field"
done
check "stats shows the home path" out_has "$DS_HOME"
run stats --json
check "stats --json: fields" \
    jq_ "d['home'] == '$DS_HOME' and d['data_bytes'] > 0 and d['index_terms'] > 0 and d['last_seq'] >= d['nodes'] and re.match(r'[0-9a-f]{32}$', d['epoch']) and sum(d['nodes_by_type'].values()) == d['nodes'] and d['nodes_by_type']['note'] >= 9"
EPOCH1=$(jval 'd["epoch"]')
TOTAL=$(jval 'd["nodes"]')

# ---------------------------------------------------------------- reset
expect_usage "reset without --yes off a terminal" \
    "refusing to reset without confirmation: run ds reset --yes" reset
check "refused reset deleted nothing" test "$(nodes_total)" = "$TOTAL"
run reset --yes
check "reset --yes: exit 0" rc_is 0
check "reset --yes: reports the count" out_has "Deleted $TOTAL nodes from $DS_HOME"
run stats --json
check "reset: store empty" jq_ "d['nodes'] == 0 and d['index_terms'] == 0 and d['files'] == 0"
check "reset: new epoch" jq_ "d['epoch'] != '$EPOCH1'"
run query "lmdb map size"
check "reset: query finds nothing" out_has "No relevant results found."
run show
check "reset: show says no nodes" out_has "No nodes yet."
run add "$T/files/lmdb.txt"
check "reset: a file can be added again" out_has "added $T/files/lmdb.txt (1 node)"

# ---------------------------------------------------------------- streams
run query ""
check "errors go to stderr only" out_empty
run stats --json
check "results go to stdout only" test ! -s "$T/err"

finish
