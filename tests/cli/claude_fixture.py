#!/usr/bin/env python3
"""Writes fake Claude Code transcripts for the integration tests.

  claude_fixture.py write  FILE --cwd DIR --session ID --kind KIND [--aws K --ght T]
  claude_fixture.py append FILE --cwd DIR --session ID --kind KIND [...]

Kinds: main (question, tool_use/tool_result, a root-cause fix, a
sidechain entry, a system reminder, planted secrets, a summary), second
(a decision), sub, other, followup (for appends).  One JSON object per
line, as Claude Code writes them."""
import argparse
import json
import os

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["write", "append"])
ap.add_argument("file")
ap.add_argument("--cwd", required=True)
ap.add_argument("--session", required=True)
ap.add_argument("--kind", required=True)
ap.add_argument("--aws", default="AKIAIOSFODNN7EXAMPLE")
ap.add_argument("--ght", default="ghp_16C7e42F292c6912E7710c838347Ae178B4a")
a = ap.parse_args()

start = 0
if a.mode == "append" and os.path.exists(a.file):
    with open(a.file) as f:
        start = sum(1 for _ in f)
lines = []


def e(type_, content, **kw):
    n = start + len(lines)
    d = {"type": type_, "cwd": a.cwd, "sessionId": a.session, "uuid": "u%d" % n,
         "parentUuid": "u%d" % (n - 1) if n else None,
         "timestamp": "2025-03-01T10:%02d:%02d.000Z" % (n // 60 % 60, n % 60),
         "message": {"role": type_, "content": content}}
    d.update(kw)
    return d


if a.kind == "main":
    lines.append(e("user", "<system-reminder>Reminder: secret plan zeta</system-reminder>"
                   "Why does the nightly import job crash on large CSV files?"))
    lines.append(e("assistant", [{"type": "thinking", "thinking": "hmm"},
                                 {"type": "text", "text": "Let me look at the importer."},
                                 {"type": "tool_use", "id": "t1", "name": "Read",
                                  "input": {"file_path": "/src/importer.py"}}]))
    lines.append(e("user", [{"type": "tool_result", "tool_use_id": "t1",
                             "content": "def load(): rows = list(reader)"}]))
    lines.append(e("assistant", "The root cause was the importer reading the whole CSV "
                   "into memory, fixed by streaming rows through csv.reader in batches of 1000."))
    lines.append(e("assistant", "Sidechain: the culprit was gamma rays in the importer.",
                   isSidechain=True))
    lines.append(e("user", "meta note", isMeta=True))
    lines.append(e("user", "use this key for the bucket: AWS_ACCESS_KEY_ID=%s and %s" % (a.aws, a.ght)))
    lines.append(e("assistant", "The fix was to configure the bucket credentials "
                   "AWS_ACCESS_KEY_ID=%s through the environment, token %s, instead of "
                   "hardcoding them in settings.py." % (a.aws, a.ght)))
    lines.append({"type": "summary", "summary": "Importer memory fix"})
    lines.append({"type": "file-history-snapshot", "snapshot": {}})
elif a.kind == "second":
    lines.append(e("user", "Should we keep SQLite for the cache?"))
    lines.append(e("assistant", "We decided to use LMDB for the cache instead of SQLite "
                   "because readers never block the single writer."))
elif a.kind == "followup":
    lines.append(e("user", "How should the daemon frame its socket messages?"))
    lines.append(e("assistant", "We decided to use a msgpack wire format with 4-byte "
                   "length-prefixed frames because the sync protocol uses the same frames."))
elif a.kind == "sub":
    lines.append(e("assistant", "The problem was the date parser in parse_dates.py "
                   "ignoring time zones, resolved by normalizing to UTC first."))
else:
    lines.append(e("assistant", "The root cause was a flaky network test in "
                   "test_http.py, fixed by retrying the connection."))

os.makedirs(os.path.dirname(a.file), exist_ok=True)
with open(a.file, "a" if a.mode == "append" else "w") as f:
    for line in lines:
        f.write(json.dumps(line) + "\n")
