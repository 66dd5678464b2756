#!/usr/bin/env bash
# fuzz.sh - run one or all libFuzzer targets for longer than the test
# suite does.  Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  per target (default 300); TARGET e.g. fuzz_node (default: all)
# New interesting inputs go to build-fuzz/tests/fuzz/corpus-<name>/;
# crashes are written to the current directory by libFuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number, got '$secs'" >&2; exit 2; }
shift || true
PREFIX=$(bash scripts/setup.sh | tail -n 1)
CC=clang cmake -S . -B build-fuzz -DDS_DEPS_PREFIX="$PREFIX" -DCMAKE_BUILD_TYPE=Debug -DDS_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cd build-fuzz/tests/fuzz && ls fuzz_* | grep -v '\.' )
for t in "${targets[@]}"; do
    short=${t#fuzz_}
    [ -x "build-fuzz/tests/fuzz/$t" ] || { echo "fuzz.sh: no target '$t'" >&2; exit 2; }
    mkdir -p "build-fuzz/tests/fuzz/corpus-$short"
    echo "== $t for ${secs}s"
    "build-fuzz/tests/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        "build-fuzz/tests/fuzz/corpus-$short" "tests/fuzz/corpus/$short"
done
