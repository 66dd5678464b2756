#!/usr/bin/env bash
# bench-search.sh - runs the search/ingest benchmark of ds against SQLite
# FTS5 (bench/bench_search.c) at one or more corpus sizes.
#
# Runs scripts/setup.sh (idempotent), configures a Release build in
# build-bench/ at the top of the clone (apart from the normal build
# directory), builds only the bench_search target, then runs it once per
# size and prints its machine-readable lines (corpus, ingest, search per
# query class, verdict).  The benchmark's exit status is 0 whether or not
# the targets are met; this script fails only on errors.
#
# Usage: scripts/bench-search.sh [SIZE ...]     (default: 100000 1000000)
# Environment:
#   BENCH_SEARCH_ARGS  extra options for bench_search, e.g. "--seed 7 --queries 10"
#   DS_SKIP_APT=1      passed to setup.sh: do not touch apt
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/bench-search.sh [SIZE ...]
  SIZE   corpus size in nodes, a positive integer (default: 100000 1000000)
Environment: BENCH_SEARCH_ARGS (extra bench_search options), DS_SKIP_APT=1.
EOF
}

for a in "$@"; do
    case "$a" in
        -h|--help) usage; exit 0 ;;
        ''|*[!0-9]*|0) echo "bench-search: not a corpus size: '$a'" >&2; usage >&2; exit 2 ;;
    esac
done
if [ $# -gt 0 ]; then sizes=("$@"); else sizes=(100000 1000000); fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-bench"

prefix=$("$root/scripts/setup.sh" | tail -n 1)
[ -n "$prefix" ] || { echo "bench-search: setup.sh printed no prefix" >&2; exit 1; }

mkdir -p "$build"
log="$build/bench-build.log"
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDS_DEPS_PREFIX="$prefix" \
       && cmake --build "$build" --target bench_search -j2; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "bench-search: build failed (full log: $log)" >&2
    exit 1
fi

bin="$build/bench/bench_search"
[ -x "$bin" ] || { echo "bench-search: $bin was not built" >&2; exit 1; }

# shellcheck disable=SC2086  # BENCH_SEARCH_ARGS is a list of words on purpose
for n in "${sizes[@]}"; do
    "$bin" --nodes "$n" ${BENCH_SEARCH_ARGS:-}
done
