#!/usr/bin/env bash
# run.sh - set up the machine if needed, build ds, and run it.
#   scripts/run.sh            the daemon in the foreground on the offline
#                             defaults (ds start --foreground): it watches
#                             ~/.claude/projects and turns sessions into
#                             knowledge; Ctrl-C stops it
#   scripts/run.sh demo       a short demo in a throw-away home: notes, a
#                             file, a search, the store's stats
#   scripts/run.sh ARGS...    runs `ds ARGS...` on your real home
#                             (~/.datasphere, or DS_HOME)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PREFIX=$(bash scripts/setup.sh | tail -n 1)
cmake -S "$ROOT" -B "$ROOT/build" -DDS_DEPS_PREFIX="$PREFIX" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build" -j"$(nproc 2>/dev/null || echo 2)" --target ds >/dev/null
DS="$ROOT/build/ds"

if [ $# -eq 0 ]; then
    echo "Starting the Datasphere daemon in the foreground (Ctrl-C stops it)."
    echo "In another terminal: $DS status | $DS query \"...\" | $DS --help"
    exec "$DS" start --foreground
fi
if [ "$1" != demo ]; then
    exec "$DS" "$@"
fi

demo_home=$(mktemp -d "${TMPDIR:-/tmp}/ds-demo.XXXXXX")
trap 'rm -rf "$demo_home"' EXIT
export DS_HOME="$demo_home"
say() { printf '\n$ %s\n' "$*"; }
say ds note "Decision: use LMDB for the store because readers never block writers" --tag db
"$DS" note "Decision: use LMDB for the store because readers never block writers" --tag db
say ds note "The flaky integration test was caused by a shared temp dir; fixed with mkdtemp per test"
"$DS" note "The flaky integration test was caused by a shared temp dir; fixed with mkdtemp per test"
say ds add README.md docs/search.md
"$DS" add README.md docs/search.md
say ds query "why lmdb readers"
"$DS" query "why lmdb readers" --limit 3
say ds query "flaky tests" --json
"$DS" query "flaky tests" --json --limit 1
say ds stats
"$DS" stats
printf '\n(demo home %s is removed on exit; scripts/run.sh starts the daemon on your own home)\n' "$demo_home"
