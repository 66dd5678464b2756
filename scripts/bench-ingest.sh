#!/usr/bin/env bash
# bench-ingest.sh - session ingestion throughput and daemon idle cost.
#
# Usage: scripts/bench-ingest.sh [SESSIONS] [MB_PER_SESSION] [IDLE_SECONDS]
#        (defaults: 200 sessions of 2 MB, 60 s idle measurement)
#
# 1. generates a Claude Code transcript set with a fixed seed (user
#    questions, assistant prose with decisions and fixes, tool calls with
#    long outputs, sidechains, system reminders) in 10 project folders;
# 2. ingests it with `ds scan` (in process, extractive distiller) and
#    prints MB/s and nodes/s;
# 3. starts the daemon on the ingested tree, lets it settle, and prints
#    its resident memory and the CPU seconds it used over IDLE_SECONDS.
# A benchmark, not a test: it prints figures, it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SESSIONS=${1:-200}; MB=${2:-2}; IDLE=${3:-60}
for v in "$SESSIONS" "$MB" "$IDLE"; do
    [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] || { echo "usage: $0 [SESSIONS] [MB_PER_SESSION] [IDLE_SECONDS] (positive integers)" >&2; exit 2; }
done
PREFIX=$(bash scripts/setup.sh | tail -n 1)
cmake -S "$ROOT" -B "$ROOT/build-bench" -DDS_DEPS_PREFIX="$PREFIX" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$ROOT/build-bench" -j"$(nproc)" --target ds >/dev/null
DS="$ROOT/build-bench/ds"

W=$(mktemp -d "${TMPDIR:-/tmp}/ds-bench-ingest.XXXXXX")
DPID=""
cleanup() { [ -n "$DPID" ] && kill "$DPID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
export HOME="$W/user" DS_HOME="$W/dshome" TZ=UTC
mkdir -p "$HOME/.claude/projects" "$DS_HOME"

python3 - "$HOME/.claude/projects" "$W/work" "$SESSIONS" "$MB" <<'PY'
import json, os, random, re, sys
root, work, n, mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(20261121)
words = ("cache index writer reader commit page cursor socket daemon queue frame buffer token "
         "parser session project config thread timer signal handler schema record batch chunk "
         "stream import export replica cursor epoch digest peer relay packet stream window").split()
def sent(k):
    return " ".join(rnd.choice(words) for _ in range(k)).capitalize() + "."
cues = ["We decided to use {a} instead of {b} because {c}.",
        "The root cause was {a} in the {b} code path, fixed by {c}.",
        "It turns out the {a} was never flushed, so the {b} saw stale data.",
        "How do we keep the {a} bounded when the {b} grows?"]
for s in range(n):
    proj = os.path.join(work, "proj.%d_x" % (s % 10))
    d = os.path.join(root, re.sub(r"[^A-Za-z0-9]", "-", proj))
    os.makedirs(d, exist_ok=True)
    sid = "%08x-0000-4000-8000-%012x" % (s, s)
    size, i = 0, 0
    with open(os.path.join(d, sid + ".jsonl"), "w") as f:
        while size < mb * 1024 * 1024:
            k = i % 6
            base = {"cwd": proj, "sessionId": sid, "uuid": "u%d" % i,
                    "timestamp": "2025-05-01T10:%02d:%02d.000Z" % (i // 60 % 60, i % 60)}
            if k == 0:
                e = dict(base, type="user", message={"role": "user", "content":
                         "<system-reminder>ctx</system-reminder>" + sent(14) + " Why does the " + rnd.choice(words) + " fail?"})
            elif k == 1:
                txt = " ".join([sent(12), rnd.choice(cues).format(a=rnd.choice(words), b=rnd.choice(words), c=sent(6).lower()), sent(10)])
                e = dict(base, type="assistant", message={"role": "assistant", "content": [
                    {"type": "text", "text": txt},
                    {"type": "tool_use", "id": "t%d" % i, "name": "Bash", "input": {"command": "make test-" + rnd.choice(words)}}]})
            elif k == 2:
                e = dict(base, type="user", message={"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t%d" % (i - 1), "content": "\n".join(sent(10) for _ in range(12))}]})
            elif k == 3:
                e = dict(base, type="assistant", isSidechain=True, message={"role": "assistant", "content": sent(20)})
            else:
                e = dict(base, type="assistant", message={"role": "assistant", "content": sent(18) + " " + sent(14)})
            line = json.dumps(e) + "\n"
            f.write(line); size += len(line); i += 1
PY
bytes=$(du -sb "$HOME/.claude/projects" | cut -f1)
printf '{ "watch": ["%s"], "idle_seconds": 1 }\n' "$HOME/.claude/projects" > "$DS_HOME/config.json"

t0=$(date +%s.%N)
for i in $(seq 0 9); do
    p="$W/work/proj.${i}_x"
    [ -d "$p" ] || mkdir -p "$p"
    "$DS" scan --project "$p" >/dev/null 2>&1 || true
done
t1=$(date +%s.%N)
nodes=$("$DS" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"])')
python3 - "$t0" "$t1" "$bytes" "$nodes" "$SESSIONS" <<'PY'
import sys
t0, t1, b, n, s = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
el = t1 - t0
print("ingest sessions=%d bytes=%d seconds=%.2f mb_per_s=%.1f nodes=%d nodes_per_s=%.0f" % (s, b, el, b / el / 1e6, n, n / el))
PY

"$DS" start >/dev/null
DPID=$(cat "$DS_HOME/daemon.pid")
for _ in $(seq 1 100); do
    if "$DS" status --json | python3 -c 'import json,sys; q=json.load(sys.stdin)["queue"]; sys.exit(0 if q["pending"]==0 and q["processing"]==0 else 1)'; then break; fi
    sleep 0.2
done
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$DPID/stat"; }
hz=$(getconf CLK_TCK)
c0=$(ticks)
sleep "$IDLE"
c1=$(ticks)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$DPID/status")
# RssFile is the memory-mapped store (page cache, reclaimable); RssAnon
# is the daemon's own memory.
rss_anon=$(awk '/RssAnon/ {print $2}' "/proc/$DPID/status")
rss_file=$(awk '/RssFile/ {print $2}' "/proc/$DPID/status")
python3 -c 'import sys; c0,c1,hz,idle,rss,ra,rf=map(float,sys.argv[1:]); print("idle seconds=%d cpu_seconds=%.3f cpu_percent=%.3f rss_kb=%d rss_anon_kb=%d rss_file_kb=%d" % (idle, (c1-c0)/hz, 100*(c1-c0)/hz/idle, rss, ra, rf))' "$c0" "$c1" "$hz" "$IDLE" "$rss" "${rss_anon:-0}" "${rss_file:-0}"
"$DS" stop >/dev/null
DPID=""
