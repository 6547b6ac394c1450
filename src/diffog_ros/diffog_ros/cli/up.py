"""``diffog-ros up BRINGUP [name:=value ...]``: bring a node graph up without ``ros2 launch``.

Reads the same definitions as ``launch/*.launch.py`` (:mod:`diffog_ros.bringup.graphs`), starts each
node in its own process, prefixes every output line with the node's name, and shuts all of them down
cleanly (SIGINT, then SIGTERM, then SIGKILL) on Ctrl-C / SIGTERM or as soon as one of them exits.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from diffog_ros.bringup.graphs import BRINGUPS
from diffog_ros.bringup.spec import parse_overrides, resolve, ros_args
from diffog_ros.paths import share_dir

GRACE_S = 8.0


def _executable(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def _describe() -> str:
    lines = ["bringups:"]
    for b in BRINGUPS.values():
        lines.append(f"  {b.name:<28} {b.description}")
        for a in b.args:
            lines.append(f"      {a.name}:={a.default!r:<16} {a.description}")
    return "\n".join(lines)


def _stop_all(procs: dict[str, subprocess.Popen]) -> None:
    for sig, wait in ((signal.SIGINT, GRACE_S), (signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        alive = [p for p in procs.values() if p.poll() is None]
        if not alive:
            return
        for p in alive:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(p.poll() is None for p in alive):
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="diffog-ros up",
        description=__doc__.splitlines()[0],
        epilog=_describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bringup", choices=sorted(BRINGUPS))
    parser.add_argument("overrides", nargs="*", metavar="name:=value")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_intermixed_args(argv)
    bringup = BRINGUPS[args.bringup]
    try:
        values = parse_overrides(bringup, args.overrides)
        nodes = resolve(bringup, values)
    except ValueError as exc:
        print(f"diffog-ros up: {exc}", file=sys.stderr)
        return 2
    config_dir = str(share_dir() / "config")
    commands = {n.name: [_executable(n.executable), *ros_args(n, config_dir)] for n in nodes}
    if args.dry_run:
        for name, cmd in commands.items():
            print(f"[{name}] {' '.join(cmd)}")
        return 0

    procs: dict[str, subprocess.Popen] = {}
    sel = selectors.DefaultSelector()
    stop = {"why": None}

    def on_signal(signum, _frame):
        stop["why"] = signal.Signals(signum).name

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    width = max(len(n) for n in commands)
    for name, cmd in commands.items():
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            bufsize=0,
        )
        procs[name] = proc
        sel.register(proc.stdout, selectors.EVENT_READ, name)
        print(f"[up] started {name} (pid {proc.pid})", flush=True)

    buffers = {name: b"" for name in procs}
    exit_code = 0

    def pump(timeout: float) -> None:
        for key, _ in sel.select(timeout):
            name = key.data
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            buffers[name] += chunk
            *lines, buffers[name] = buffers[name].split(b"\n")
            for line in lines:
                sys.stdout.write(f"[{name:<{width}}] {line.decode(errors='replace')}\n")
            sys.stdout.flush()

    try:
        while stop["why"] is None:
            pump(0.1)
            dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
            if dead:
                name, code = next(iter(dead.items()))
                stop["why"] = f"{name} exited with code {code}"
                exit_code = 1 if code != 0 else 0
        print(f"[up] shutting down: {stop['why']}", flush=True)
    finally:
        _stop_all(procs)
        end = time.monotonic() + 1.0
        while time.monotonic() < end and sel.get_map():
            pump(0.05)
        for name, p in procs.items():
            print(f"[up] {name} exited with code {p.returncode}", flush=True)
    return exit_code
