"""``diffog-ros`` entry point: dispatches to one module per sub-command.

Each sub-command lives in ``diffog_ros.cli.<name>`` and exposes ``main(argv) -> int``;
modules are imported lazily so that, e.g., ``diffog-ros data info`` never imports torch.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "param": ("param", "list / get / set parameters of a running node (like `ros2 param`)"),
    "data": ("data", "info / validate / repair / convert recorded episode datasets"),
    "train": ("train", "train diffusion | diffog | leto models"),
    "demos": ("demos", "record scripted demonstrations in the simulated ALOHA"),
    "eval": ("evaluate", "evaluate methods on the simulated ALOHA"),
    "up": ("up", "bring up a node graph without `ros2 launch`"),
    "demo": ("demo", "the main job: optimise sample chunks / full simulated rollout"),
}


def _usage() -> str:
    lines = ["usage: diffog-ros <command> [args...]", "", "commands:"]
    lines += [f"  {name:<7} {help_}" for name, (_mod, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage() + "\n")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"diffog-ros: unknown command {name!r}\n{_usage()}\n")
        return 2
    try:
        module = importlib.import_module(f"diffog_ros.cli.{COMMANDS[name][0]}")
    except ModuleNotFoundError as exc:
        if exc.name == f"diffog_ros.cli.{COMMANDS[name][0]}":
            sys.stderr.write(f"diffog-ros: command {name!r} is not available in this build\n")
            return 2
        raise
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
