"""Robot configuration: load and validate ``config/<robot>.yaml``.

Joint names, limits, units, poses and every calibration constant of a robot live in its YAML file;
code never hard-codes them. :func:`load_robot_config` returns a validated, immutable
:class:`RobotConfig`; anything wrong raises :class:`RobotConfigError` naming the file and the key.

Common schema (see ``config/aloha_sim.yaml`` for a commented example)::

    name: str                      # robot name (diagnostics, file attrs)
    kind: aloha | single_arm
    frame_id: str                  # frame of end-effector poses / the robot base
    control_rate_hz: float > 0     # default control rate
    joints: [{name, lower, upper, max_velocity, unit}, ...]   # action / state order
    start_pose: [float] * n        # safe start target
    sleep_pose: [float] * n        # safe shutdown target
    safe_motion: {velocity_fraction: (0, 1], tolerance: > 0, timeout: > 0}

Backend sections (``sim``, ``interbotix``, ``end_effector``, ``teleop``) are kept as plain mappings
here and validated by the backend that reads them (each with its own clear errors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

KINDS = ("aloha", "single_arm")
UNITS = ("rad", "m", "normalized")

#: Backend name -> default robot config file in the package's ``config/``.
DEFAULT_CONFIGS = {
    "aloha_sim": "aloha_sim.yaml",
    "aloha": "aloha.yaml",
    "single_arm_sim": "single_arm.yaml",
    "single_arm": "single_arm.yaml",
}


class RobotConfigError(ValueError):
    """A robot config file is missing, unreadable or invalid (the message names file and key)."""


@dataclass(frozen=True)
class JointSpec:
    """One commanded dimension: position limits ``[lower, upper]`` and a speed limit (unit/s)."""

    name: str
    lower: float
    upper: float
    max_velocity: float
    unit: str


@dataclass(frozen=True)
class SafeMotion:
    """Interpolated moves to the start / sleep pose: speed = fraction x max_velocity per joint."""

    velocity_fraction: float = 0.5
    tolerance: float = 1e-3
    timeout: float = 15.0


@dataclass(frozen=True)
class RobotConfig:
    """A validated robot description (read-only arrays, float64)."""

    name: str
    kind: str
    frame_id: str
    control_rate_hz: float
    joints: tuple[JointSpec, ...]
    start_pose: np.ndarray
    sleep_pose: np.ndarray
    safe_motion: SafeMotion = SafeMotion()
    sections: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def dof(self) -> int:
        return len(self.joints)

    @property
    def lower(self) -> np.ndarray:
        return _frozen([j.lower for j in self.joints])

    @property
    def upper(self) -> np.ndarray:
        return _frozen([j.upper for j in self.joints])

    @property
    def max_velocity(self) -> np.ndarray:
        return _frozen([j.max_velocity for j in self.joints])

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(j.unit for j in self.joints)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"{self.source}: no joint named {name!r} (joints: {self.names})"
            ) from None

    def section(self, key: str) -> Mapping[str, Any]:
        """A backend section (``sim``, ``interbotix``, ...); raises naming the file if absent."""
        value = self.sections.get(key)
        if not isinstance(value, Mapping):
            raise RobotConfigError(f"{self.source}: section {key!r} is missing or not a mapping")
        return value

    def has_section(self, key: str) -> bool:
        return isinstance(self.sections.get(key), Mapping)


def _frozen(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def _fail(source: str, key: str, why: str) -> RobotConfigError:
    return RobotConfigError(f"{source}: {key}: {why}")


def _number(source: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(source, key, f"must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise _fail(source, key, f"must be finite, got {value!r}")
    return x


def _vector(source: str, key: str, value: Any, n: int) -> np.ndarray:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise _fail(source, key, f"must be a list of {n} numbers, got {value!r}")
    return _frozen([_number(source, f"{key}[{i}]", v) for i, v in enumerate(value)])


def _joint(source: str, i: int, raw: Any) -> JointSpec:
    key = f"joints[{i}]"
    if not isinstance(raw, Mapping):
        raise _fail(source, key, f"must be a mapping, got {raw!r}")
    missing = [k for k in ("name", "lower", "upper", "max_velocity", "unit") if k not in raw]
    if missing:
        raise _fail(source, key, f"missing keys {missing}")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise _fail(source, f"{key}.name", f"must be a non-empty string, got {name!r}")
    lower = _number(source, f"{key}.lower", raw["lower"])
    upper = _number(source, f"{key}.upper", raw["upper"])
    if not lower < upper:
        raise _fail(source, key, f"lower ({lower}) must be < upper ({upper}) for {name!r}")
    vmax = _number(source, f"{key}.max_velocity", raw["max_velocity"])
    if vmax <= 0:
        raise _fail(source, f"{key}.max_velocity", f"must be > 0, got {vmax}")
    unit = raw["unit"]
    if unit not in UNITS:
        raise _fail(source, f"{key}.unit", f"must be one of {UNITS}, got {unit!r}")
    return JointSpec(name=name, lower=lower, upper=upper, max_velocity=vmax, unit=unit)


def robot_config_from_dict(raw: Mapping[str, Any], source: str = "<memory>") -> RobotConfig:
    """Validate a parsed YAML mapping (see the module docstring for the schema)."""
    if not isinstance(raw, Mapping):
        raise RobotConfigError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
    for key in ("name", "kind", "joints", "start_pose", "sleep_pose", "control_rate_hz"):
        if key not in raw:
            raise _fail(source, key, "required key is missing")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise _fail(source, "name", f"must be a non-empty string, got {name!r}")
    kind = raw["kind"]
    if kind not in KINDS:
        raise _fail(source, "kind", f"must be one of {KINDS}, got {kind!r}")
    frame_id = raw.get("frame_id", "world")
    if not isinstance(frame_id, str) or not frame_id:
        raise _fail(source, "frame_id", f"must be a non-empty string, got {frame_id!r}")
    rate = _number(source, "control_rate_hz", raw["control_rate_hz"])
    if rate <= 0:
        raise _fail(source, "control_rate_hz", f"must be > 0, got {rate}")
    joints_raw = raw["joints"]
    if not isinstance(joints_raw, list) or not joints_raw:
        raise _fail(source, "joints", "must be a non-empty list")
    joints = tuple(_joint(source, i, j) for i, j in enumerate(joints_raw))
    names = [j.name for j in joints]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _fail(source, "joints", f"duplicate joint names {dupes}")
    n = len(joints)
    lower = np.array([j.lower for j in joints])
    upper = np.array([j.upper for j in joints])
    poses = {}
    for key in ("start_pose", "sleep_pose"):
        pose = _vector(source, key, raw[key], n)
        outside = [names[i] for i in range(n) if not lower[i] <= pose[i] <= upper[i]]
        if outside:
            raise _fail(source, key, f"outside the joint limits at {outside}")
        poses[key] = pose
    sm_raw = raw.get("safe_motion", {}) or {}
    if not isinstance(sm_raw, Mapping):
        raise _fail(source, "safe_motion", "must be a mapping")
    defaults = SafeMotion()
    frac = _number(
        source,
        "safe_motion.velocity_fraction",
        sm_raw.get("velocity_fraction", defaults.velocity_fraction),
    )
    if not 0 < frac <= 1:
        raise _fail(source, "safe_motion.velocity_fraction", f"must be in (0, 1], got {frac}")
    tol = _number(source, "safe_motion.tolerance", sm_raw.get("tolerance", defaults.tolerance))
    timeout = _number(source, "safe_motion.timeout", sm_raw.get("timeout", defaults.timeout))
    if tol <= 0 or timeout <= 0:
        raise _fail(source, "safe_motion", "tolerance and timeout must be > 0")
    known = {
        "name",
        "kind",
        "frame_id",
        "control_rate_hz",
        "joints",
        "start_pose",
        "sleep_pose",
        "safe_motion",
    }
    sections = {k: v for k, v in raw.items() if k not in known}
    return RobotConfig(
        name=name,
        kind=kind,
        frame_id=frame_id,
        control_rate_hz=rate,
        joints=joints,
        start_pose=poses["start_pose"],
        sleep_pose=poses["sleep_pose"],
        safe_motion=SafeMotion(velocity_fraction=frac, tolerance=tol, timeout=timeout),
        sections=sections,
        source=source,
    )


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file with ``yaml.safe_load``; errors name the file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise RobotConfigError(f"{p}: cannot read robot config: {exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RobotConfigError(f"{p}: invalid YAML: {exc}") from exc


def resolve_config_path(path_or_name: str | Path) -> Path:
    """An existing file path, or a name looked up in the package's ``config/`` directory."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    from diffog_ros.paths import config_path

    try:
        return config_path(str(path_or_name))
    except FileNotFoundError as exc:
        raise RobotConfigError(f"robot config {str(path_or_name)!r} not found: {exc}") from exc


def load_robot_config(path_or_name: str | Path) -> RobotConfig:
    """Load and validate a robot config (a path, or a file name in the package's config/)."""
    path = resolve_config_path(path_or_name)
    return robot_config_from_dict(read_yaml(path), source=str(path))


def default_config_for(backend: str) -> str:
    """The config file name a backend uses when no ``robot_config`` is given."""
    try:
        return DEFAULT_CONFIGS[backend]
    except KeyError:
        raise ValueError(
            f"unknown backend {backend!r}; expected one of {sorted(DEFAULT_CONFIGS)}"
        ) from None
