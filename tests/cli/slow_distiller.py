#!/usr/bin/env python3
"""A deterministic, deliberately slow command distiller for tests.

Reads the formatted chunk on stdin, waits a little (so a test can kill
the daemon while jobs are in flight), and prints a JSON array with one
insight per user or assistant line.  Same input, same output."""
import json
import sys
import time

text = sys.stdin.read()
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0.3)
out = []
for line in text.splitlines():
    if line.startswith("User: ") or line.startswith("Assistant: "):
        out.append({"content": "Insight: " + line.split(": ", 1)[1], "kind": "conclusion",
                    "confidence": 0.7})
print(json.dumps(out))
