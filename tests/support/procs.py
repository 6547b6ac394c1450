"""Start project executables as real OS processes for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def _param_arg(name: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = "[" + ",".join(_fmt(v) for v in value) + "]"
    else:
        text = _fmt(value)
    return f"{name}:={text}"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return v if v else "''"
    return str(v)


def node_command(
    executable: str,
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
    namespace: str | None = None,
    remaps: Mapping[str, str] | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """The argv for a console-script node with ``--ros-args`` parameters and remaps."""
    cmd = [str(BIN / executable), *(extra or []), "--ros-args"]
    if name:
        cmd += ["-r", f"__node:={name}"]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for src, dst in (remaps or {}).items():
        cmd += ["-r", f"{src}:={dst}"]
    for k, v in (params or {}).items():
        cmd += ["-p", _param_arg(k, v)]
    return cmd


@contextmanager
def running(
    cmd: list[str], env: Mapping[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` for the duration of the block; SIGINT then SIGKILL on exit."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        stop(proc)
        if log:
            out.close()


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            return proc.poll()
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            # a hung node: have it dump every thread's stack into its log (faulthandler), then kill
            os.killpg(proc.pid, signal.SIGUSR1)
            time.sleep(1.0)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode
