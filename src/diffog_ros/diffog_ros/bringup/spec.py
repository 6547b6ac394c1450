"""Bringup definitions: which nodes a graph runs, with which parameters (no rclpy, no launch).

One source of truth for both ``ros2 launch diffog_ros <graph>.launch.py`` on robot PCs (through
:mod:`diffog_ros.bringup.launch_support`) and ``diffog-ros up <graph>`` where ``launch`` is not
installed (:mod:`diffog_ros.cli.up`).

A parameter value, a remap target or a namespace may reference a bringup argument as ``"$(arg name)"``
(the whole value) — the same spelling as ROS 2 launch substitutions. Argument values are typed
from their default (bool / int / float / str).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_ARG = re.compile(r"^\$\(arg ([A-Za-z_][A-Za-z0-9_]*)\)$")


@dataclass(frozen=True)
class Arg:
    """A bringup argument (a DeclareLaunchArgument on robot PCs)."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()

    def parse(self, text: str) -> Any:
        """Type ``text`` like the default; raise ValueError with the argument's name."""
        kind = type(self.default)
        try:
            if kind is bool:
                low = text.strip().lower()
                if low not in ("true", "false", "1", "0"):
                    raise ValueError("expected true or false")
                value: Any = low in ("true", "1")
            elif kind is int:
                value = int(text)
            elif kind is float:
                value = float(text)
            elif kind in (list, tuple):
                value = [v.strip() for v in text.strip().strip("[]").split(",") if v.strip()]
            else:
                value = text
        except ValueError as exc:
            raise ValueError(f"argument {self.name}:={text!r}: {exc}") from exc
        if self.choices and str(value) not in self.choices:
            raise ValueError(f"argument {self.name}:={text!r}: one of {list(self.choices)}")
        return value


@dataclass(frozen=True)
class NodeLaunch:
    """One node process of a bringup."""

    executable: str
    name: str
    params_files: tuple[str, ...] = ()  # file names in the package config/ (applied in order)
    parameters: Mapping[str, Any] = field(default_factory=dict)  # applied after the files
    remaps: Mapping[str, str] = field(default_factory=dict)
    namespace: str = ""
    condition: str | None = None  # name of a bool argument: run only when it is true
    extra_args: tuple[str, ...] = ()  # argv before --ros-args


@dataclass(frozen=True)
class Bringup:
    name: str
    description: str
    args: tuple[Arg, ...]
    nodes: tuple[NodeLaunch, ...]

    def arg(self, name: str) -> Arg:
        for a in self.args:
            if a.name == name:
                return a
        raise KeyError(name)


@dataclass(frozen=True)
class ResolvedNode:
    """A node with every argument reference replaced by its value."""

    executable: str
    name: str
    params_files: tuple[str, ...]
    parameters: dict[str, Any]
    remaps: dict[str, str]
    namespace: str
    extra_args: tuple[str, ...]


def arg_reference(value: Any) -> str | None:
    """The argument name if ``value`` is exactly ``"$(arg name)"``, else None."""
    if isinstance(value, str):
        m = _ARG.match(value)
        if m:
            return m.group(1)
    return None


def parse_overrides(bringup: Bringup, items: list[str]) -> dict[str, Any]:
    """``name:=value`` strings -> typed argument values (defaults filled in)."""
    values = {a.name: a.default for a in bringup.args}
    for item in items:
        if ":=" not in item:
            raise ValueError(f"expected name:=value, got {item!r}")
        name, text = item.split(":=", 1)
        try:
            arg = bringup.arg(name)
        except KeyError:
            known = ", ".join(a.name for a in bringup.args)
            raise ValueError(
                f"{bringup.name} has no argument {name!r} (arguments: {known})"
            ) from None
        values[name] = arg.parse(text)
    return values


def resolve(bringup: Bringup, values: Mapping[str, Any]) -> list[ResolvedNode]:
    """The nodes to run for these argument values."""

    def sub(value: Any) -> Any:
        ref = arg_reference(value)
        if ref is None:
            return value
        if ref not in values:
            raise ValueError(f"{bringup.name}: unknown argument {ref!r} referenced")
        return values[ref]

    out = []
    for node in bringup.nodes:
        if node.condition is not None and not bool(values[node.condition]):
            continue
        out.append(
            ResolvedNode(
                executable=node.executable,
                name=node.name,
                params_files=node.params_files,
                parameters={k: sub(v) for k, v in node.parameters.items()},
                remaps={k: str(sub(v)) for k, v in node.remaps.items()},
                namespace=str(sub(node.namespace)),
                extra_args=node.extra_args,
            )
        )
    return out


def _param_text(value: Any) -> str:
    """A parameter value in the YAML syntax of ``--ros-args -p name:=value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


def ros_args(node: ResolvedNode, config_dir: str) -> list[str]:
    """The argv after the executable: ``[extra...] --ros-args -r __node:=... --params-file ... -p ...``."""
    argv = [*node.extra_args, "--ros-args", "-r", f"__node:={node.name}"]
    if node.namespace:
        argv += ["-r", f"__ns:={node.namespace}"]
    for src, dst in node.remaps.items():
        argv += ["-r", f"{src}:={dst}"]
    for fname in node.params_files:
        argv += ["--params-file", f"{config_dir}/{fname}"]
    for key, value in node.parameters.items():
        argv += ["-p", f"{key}:={_param_text(value)}"]
    return argv
