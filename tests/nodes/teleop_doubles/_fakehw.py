"""Shared helpers of the hardware doubles: call log and scripted state files."""

from __future__ import annotations

import json
import os
import threading

_lock = threading.Lock()


def record(target: str, method: str, *args, **kwargs) -> None:
    path = os.environ.get("FAKE_HW_LOG")
    if not path:
        return
    line = json.dumps(
        {"target": target, "method": method, "args": list(args), "kwargs": kwargs}, default=str
    )
    with _lock, open(path, "a") as f:
        f.write(line + "\n")


def state(env: str, default):
    path = os.environ.get(env)
    if not path:
        return default
    for _ in range(5):  # the test may be rewriting the file right now
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
    return default
