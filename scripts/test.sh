#!/usr/bin/env bash
# test.sh - the whole test suite, from a fresh machine: set-up (packages,
# QUIC stack), then three builds and their tests:
#   build/        normal build: unit + integration tests
#   build-asan/   clang, AddressSanitizer + UndefinedBehaviorSanitizer, same
#                 tests (clang's UBSan checks more than gcc's, e.g. NULL + 0)
#   build-fuzz/   clang + libFuzzer: every fuzz target runs briefly
# Usage: scripts/test.sh [--quick]   (--quick: normal build only)
# Environment: DS_FUZZ_SECONDS (default 10), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
quick=0
case "${1:-}" in
    "") ;;
    --quick) quick=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
PREFIX=$(bash scripts/setup.sh | tail -n 1)

passed=0; failed=0; failures=()
run_ctest() {   # name builddir [ctest args...]
    local name=$1 dir=$2; shift 2
    local log="$dir/ctest.log" rc=0
    echo "== $name: ctest $*"
    (cd "$dir" && ctest --output-on-failure -j"$JOBS" "$@") 2>&1 | tee "$log" || rc=$?
    local line p f t
    line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
    if [ -n "$line" ]; then
        f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
        t=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
        p=$((t - f))
    else
        p=0; f=1
    fi
    [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=1
    passed=$((passed + p)); failed=$((failed + f))
    [ "$f" -eq 0 ] || failures+=("$name")
}

build() {   # dir cmake-args...   (CC chooses the compiler)
    local dir=$1; shift
    # A build directory configured with another compiler is made anew
    # (CMake would do it too, but noisily and after a failed check).
    if [ -n "${CC:-}" ] && [ -f "$dir/CMakeCache.txt" ] &&
       ! grep -q "^CMAKE_C_COMPILER:[A-Z]*=\(.*/\)\{0,1\}$CC\$" "$dir/CMakeCache.txt"; then
        rm -rf "$dir"
    fi
    cmake -S "$ROOT" -B "$dir" -DDS_DEPS_PREFIX="$PREFIX" "$@" >/dev/null
    cmake --build "$dir" -j"$JOBS" 2>&1 | grep -E 'warning|error|Error' || true
    [ -x "$dir/ds" ] || [ -n "$(ls "$dir"/tests/fuzz/fuzz_* 2>/dev/null)" ] || { echo "build of $dir failed" >&2; exit 1; }
}

echo "== build (RelWithDebInfo)"
build "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
run_ctest "normal" "$ROOT/build"

if [ "$quick" = 0 ]; then
    echo "== build (ASan + UBSan, clang)"
    CC=clang build "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DDS_SANITIZE=ON
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_ctest "sanitizers" "$ROOT/build-asan"

    echo "== build (libFuzzer, clang)"
    CC=clang build "$ROOT/build-fuzz" -DCMAKE_BUILD_TYPE=Debug -DDS_FUZZ=ON \
        -DDS_FUZZ_SECONDS="${DS_FUZZ_SECONDS:-10}"
    run_ctest "fuzz" "$ROOT/build-fuzz" -L fuzz
fi

echo
if [ "$failed" -gt 0 ]; then
    echo "FAILED in: ${failures[*]}"
fi
echo "suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
