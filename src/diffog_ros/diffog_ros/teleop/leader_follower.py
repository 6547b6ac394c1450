"""ALOHA leader-follower mapping (no rclpy): leader (wx250s) joint states -> follower targets.

Each follower action is ``<prefix><joint>`` (``left_waist`` ... ``right_gripper``, the names of the
robot config). Arm joints are copied joint for joint (wx250s leader and vx300s follower share the
joint layout), with optional per-joint ``sign`` / ``offset`` from config. The gripper action is the
leader gripper joint normalised with that arm's calibration (ALOHA's action convention)::

    g = (q_gripper - joint_close) / (joint_open - joint_close)      (0 = closed, 1 = open)

clipped to [0, 1]. The controller maps g to its own follower gripper range. Following starts only
after the start gesture: both leader grippers closed (g <= gesture_threshold) for
``gesture_hold`` seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LeaderArmSpec:
    """One leader arm: its action-name prefix, Interbotix robot name and gripper calibration."""

    prefix: str
    robot_name: str
    gripper_joint_open: float
    gripper_joint_close: float

    def normalise_gripper(self, q: float) -> float:
        g = (q - self.gripper_joint_close) / (self.gripper_joint_open - self.gripper_joint_close)
        return float(min(1.0, max(0.0, g)))


@dataclass(frozen=True)
class LeaderFollowerConfig:
    arms: tuple[LeaderArmSpec, ...]
    arm_joints: tuple[str, ...]  # driver joint names, in action order (without the gripper)
    gripper_joint: str
    action_names: tuple[str, ...]  # follower action names (robot config order)
    sign: Mapping[str, float]
    offset: Mapping[str, float]
    gesture_threshold: float
    gesture_hold: float

    @staticmethod
    def from_dict(raw: Mapping[str, Any], action_names: Sequence[str]) -> LeaderFollowerConfig:
        """Build from the ``leader_follower`` section of config/teleop_aloha.yaml."""

        def need(key: str) -> Any:
            if key not in raw:
                raise ValueError(f"leader_follower config: missing {key!r}")
            return raw[key]

        arms = []
        for i, a in enumerate(need("arms")):
            try:
                spec = LeaderArmSpec(
                    str(a["prefix"]),
                    str(a["robot_name"]),
                    float(a["gripper_joint_open"]),
                    float(a["gripper_joint_close"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"leader_follower config: arms[{i}]: {exc!r}") from exc
            if not math.isfinite(spec.gripper_joint_open - spec.gripper_joint_close) or (
                spec.gripper_joint_open == spec.gripper_joint_close
            ):
                raise ValueError(
                    f"arms[{i}]: gripper_joint_open must differ from gripper_joint_close"
                )
            arms.append(spec)
        if not arms:
            raise ValueError("leader_follower config: arms must not be empty")
        arm_joints = tuple(str(j) for j in need("arm_joints"))
        gripper = str(need("gripper_joint"))
        names = tuple(action_names)
        wanted = [f"{a.prefix}{j}" for a in arms for j in (*arm_joints, gripper)]
        missing = sorted(set(wanted) - set(names))
        extra = sorted(set(names) - set(wanted))
        if missing or extra:
            raise ValueError(
                f"leader arms {[a.prefix for a in arms]} x joints {[*arm_joints, gripper]} do not "
                f"match the follower actions (missing {missing}, not driven {extra})"
            )
        sign = {str(k): float(v) for k, v in (raw.get("sign") or {}).items()}
        offset = {str(k): float(v) for k, v in (raw.get("offset") or {}).items()}
        for table, label in ((sign, "sign"), (offset, "offset")):
            unknown = sorted(set(table) - set(names))
            if unknown:
                raise ValueError(f"leader_follower config: {label} names unknown actions {unknown}")
        thr = float(raw.get("gesture_threshold", 0.1))
        hold = float(raw.get("gesture_hold", 0.3))
        if not 0.0 <= thr < 1.0:
            raise ValueError(f"gesture_threshold must be in [0, 1), got {thr}")
        if not 0.0 <= hold <= 10.0:
            raise ValueError(f"gesture_hold must be in [0, 10] s, got {hold}")
        return LeaderFollowerConfig(
            tuple(arms), arm_joints, gripper, names, sign, offset, thr, hold
        )


@dataclass(frozen=True)
class LeaderReading:
    """Joint positions of one leader arm by driver joint name, and when they were read (s)."""

    positions: Mapping[str, float]
    stamp: float


class LeaderFollowerMap:
    """Maps leader readings to a follower target vector (in ``action_names`` order)."""

    def __init__(self, config: LeaderFollowerConfig) -> None:
        self.config = config
        self._index = {n: i for i, n in enumerate(config.action_names)}

    def grippers(self, readings: Mapping[str, LeaderReading]) -> dict[str, float]:
        """Normalised gripper of every arm (by prefix)."""
        c = self.config
        return {
            a.prefix: a.normalise_gripper(float(readings[a.robot_name].positions[c.gripper_joint]))
            for a in c.arms
        }

    def targets(self, readings: Mapping[str, LeaderReading]) -> np.ndarray:
        """Follower targets; raises ``ValueError`` naming a missing arm / joint or a NaN."""
        c = self.config
        out = np.full(len(c.action_names), np.nan)
        for arm in c.arms:
            reading = readings.get(arm.robot_name)
            if reading is None:
                raise ValueError(f"no reading from leader {arm.robot_name}")
            for j in c.arm_joints:
                if j not in reading.positions:
                    raise ValueError(f"leader {arm.robot_name} reports no joint {j!r}")
                name = arm.prefix + j
                q = float(reading.positions[j])
                out[self._index[name]] = c.sign.get(name, 1.0) * q + c.offset.get(name, 0.0)
            if c.gripper_joint not in reading.positions:
                raise ValueError(f"leader {arm.robot_name} reports no joint {c.gripper_joint!r}")
            out[self._index[arm.prefix + c.gripper_joint]] = arm.normalise_gripper(
                float(reading.positions[c.gripper_joint])
            )
        if not np.all(np.isfinite(out)):
            raise ValueError("leader reading has NaN/Inf")
        return out


class StartGesture:
    """Becomes (and stays) engaged once every gripper is closed for ``hold`` seconds."""

    def __init__(self, threshold: float, hold: float) -> None:
        self.threshold = float(threshold)
        self.hold = float(hold)
        self._since: float | None = None
        self.engaged = False

    def closed(self, grippers: Mapping[str, float]) -> bool:
        return bool(grippers) and all(g <= self.threshold for g in grippers.values())

    def update(self, grippers: Mapping[str, float], now: float) -> bool:
        """Feed the normalised grippers; returns True from the moment following may start."""
        if self.engaged:
            return True
        if self.closed(grippers):
            if self._since is None:
                self._since = now
            if now - self._since >= self.hold:
                self.engaged = True
        else:
            self._since = None
        return self.engaged
