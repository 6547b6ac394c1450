"""Real Interbotix followers (ALOHA's two vx300s, or one arm) through interbotix_xs_modules.

The Interbotix Python API is not on the package index: it comes with the Interbotix ROS 2 install
(``interbotix_xs_modules``, ``interbotix_common_modules``, ``interbotix_xs_msgs``). It is imported
only in :meth:`InterbotixArms.connect`, which raises :class:`InterbotixNotInstalledError` naming what
is missing when it is absent, so this module imports anywhere.

What ``connect`` does, in order (the ALOHA stack's follower set-up; every value from the robot
config's ``interbotix:`` section):

1. ``node = create_interbotix_global_node(node_name)`` -- one shared rclpy node;
2. per arm: ``InterbotixManipulatorXS(robot_model=..., group_name=..., gripper_name=...,
   robot_name=..., node=node, iterative_update_fk=False)``;
3. ``robot_startup(node)``;
4. per arm: reboot the gripper motor (optional), ``robot_set_operating_modes('group', 'arm',
   'position')``, ``robot_set_operating_modes('single', 'gripper', 'current_based_position')``,
   ``robot_set_motor_registers('single', 'gripper', 'current_limit', 300)``, torque on.

A command ``q`` (arm joints in rad, gripper normalised) becomes, per arm,
``arm.set_joint_positions(q_arm, blocking=False)`` (a JointGroupCommand) and one
``JointSingleCommand(name='gripper', cmd=close + g (open - close))`` published on the gripper's
``pub_single``. ``disconnect`` calls ``robot_shutdown(node)`` (torque off first only if configured).
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffog_ros.robots.config import RobotConfig, RobotConfigError
from diffog_ros.robots.interface import Robot, RobotNotConnectedError, RobotState

_log = logging.getLogger(__name__)

INTERBOTIX_MODULES = (
    "interbotix_common_modules.common_robot.robot",
    "interbotix_xs_modules.xs_robot.arm",
    "interbotix_xs_msgs.msg",
)


class InterbotixNotInstalledError(ImportError):
    """The Interbotix ROS 2 Python API is missing."""


def import_interbotix() -> tuple[Any, Any, Any]:
    """``(common_robot.robot, xs_robot.arm, interbotix_xs_msgs.msg)`` or a clear error."""
    mods = []
    for name in INTERBOTIX_MODULES:
        try:
            mods.append(importlib.import_module(name))
        except ImportError as exc:
            raise InterbotixNotInstalledError(
                f"the real-robot backends need the Interbotix ROS 2 Python API; importing {name!r} "
                f"failed ({exc}). It is not on the package index: install the Interbotix ROS 2 "
                "packages (interbotix_xs_modules, interbotix_common_modules, interbotix_xs_msgs; "
                "https://docs.trossenrobotics.com/aloha_docs/) and source that workspace "
                "(e.g. `source ~/interbotix_ws/install/setup.bash`) before starting the controller."
            ) from exc
    return mods[0], mods[1], mods[2]


@dataclass(frozen=True)
class ArmSpec:
    prefix: str
    robot_name: str
    arm_idx: tuple[int, ...]  # command indices of the arm joints (driver order)
    gripper_idx: int | None  # command index of the gripper


@dataclass(frozen=True)
class InterbotixSpec:
    node_name: str
    robot_model: str
    group_name: str
    gripper_name: str
    arm_joints: tuple[str, ...]
    gripper_joint: str
    finger_joint: str
    reboot_gripper: bool
    arm_mode: str
    gripper_mode: str
    gripper_current_limit: int | None
    torque_off_on_disconnect: bool
    joint_open: float
    joint_close: float
    position_open: float
    position_close: float
    arms: tuple[ArmSpec, ...]
    moving_time: float | None
    accel_time: float | None


def _req(sec: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in sec:
        raise RobotConfigError(f"{where}.{key}: required key is missing")
    return sec[key]


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RobotConfigError(f"{where}: must be a finite number, got {value!r}")
    return float(value)


def parse_interbotix_spec(config: RobotConfig) -> InterbotixSpec:
    """Validate the ``interbotix:`` section against the config's joints."""
    sec = config.section("interbotix")
    where = f"{config.source}: interbotix"
    arm_joints = tuple(str(j) for j in _req(sec, "arm_joints", where))
    gripper_joint = str(_req(sec, "gripper_joint", where))
    arms = []
    covered: list[int] = []
    for i, a in enumerate(_req(sec, "arms", where)):
        aw = f"{where}.arms[{i}]"
        prefix = str(a.get("prefix", ""))
        robot_name = str(_req(a, "robot_name", aw))
        try:
            arm_idx = tuple(config.index(prefix + j) for j in arm_joints)
        except KeyError as exc:
            raise RobotConfigError(f"{aw}: {exc.args[0]}") from None
        grip = prefix + gripper_joint
        g_idx = config.index(grip) if grip in config.names else None
        arms.append(ArmSpec(prefix, robot_name, arm_idx, g_idx))
        covered += list(arm_idx) + ([g_idx] if g_idx is not None else [])
    if sorted(covered) != list(range(config.dof)):
        raise RobotConfigError(f"{where}.arms: the arms must cover every joint exactly once")
    limit = sec.get("gripper_current_limit")
    spec = InterbotixSpec(
        node_name=str(sec.get("node_name", "diffog_interbotix")),
        robot_model=str(_req(sec, "robot_model", where)),
        group_name=str(sec.get("group_name", "arm")),
        gripper_name=str(sec.get("gripper_name", "gripper")),
        arm_joints=arm_joints,
        gripper_joint=gripper_joint,
        finger_joint=str(_req(sec, "finger_joint", where)),
        reboot_gripper=bool(sec.get("reboot_gripper_on_connect", True)),
        arm_mode=str(_req(sec, "arm_operating_mode", where)),
        gripper_mode=str(_req(sec, "gripper_operating_mode", where)),
        gripper_current_limit=None if limit is None else int(limit),
        torque_off_on_disconnect=bool(sec.get("torque_off_on_disconnect", False)),
        joint_open=_num(_req(sec, "gripper_joint_open", where), f"{where}.gripper_joint_open"),
        joint_close=_num(_req(sec, "gripper_joint_close", where), f"{where}.gripper_joint_close"),
        position_open=_num(
            _req(sec, "gripper_position_open", where), f"{where}.gripper_position_open"
        ),
        position_close=_num(
            _req(sec, "gripper_position_close", where), f"{where}.gripper_position_close"
        ),
        arms=tuple(arms),
        moving_time=None if sec.get("moving_time") is None else _num(sec["moving_time"], where),
        accel_time=None if sec.get("accel_time") is None else _num(sec["accel_time"], where),
    )
    if spec.joint_open == spec.joint_close or spec.position_open == spec.position_close:
        raise RobotConfigError(f"{where}: gripper open and close constants must differ")
    return spec


class InterbotixArms(Robot):
    """One or more Interbotix followers behind one joint vector (see module docstring)."""

    def __init__(self, config: RobotConfig) -> None:
        super().__init__(config)
        self.spec = parse_interbotix_spec(config)
        self._node: Any = None
        self._bots: list[Any] = []
        self._robot_mod: Any = None
        self._msg_mod: Any = None

    # ------------------------------------------------------------------ conversions
    def gripper_to_joint(self, g: float) -> float:
        """Normalised gripper action -> follower gripper motor joint (rad)."""
        s = self.spec
        return s.joint_close + float(g) * (s.joint_open - s.joint_close)

    def finger_to_normalized(self, x: float) -> float:
        """Finger position (m) -> normalised gripper observation."""
        s = self.spec
        return (float(x) - s.position_close) / (s.position_open - s.position_close)

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        if self._connected:
            return
        robot_mod, arm_mod, msg_mod = import_interbotix()
        s = self.spec
        node = robot_mod.create_interbotix_global_node(s.node_name)
        bots = []
        for arm in s.arms:
            kwargs: dict[str, Any] = {
                "robot_model": s.robot_model,
                "group_name": s.group_name,
                "gripper_name": s.gripper_name,
                "robot_name": arm.robot_name,
                "node": node,
                "iterative_update_fk": False,
            }
            if s.moving_time is not None:
                kwargs["moving_time"] = s.moving_time
            if s.accel_time is not None:
                kwargs["accel_time"] = s.accel_time
            bots.append(arm_mod.InterbotixManipulatorXS(**kwargs))
        robot_mod.robot_startup(node)
        for bot in bots:
            core = bot.core
            if s.reboot_gripper:
                core.robot_reboot_motors("single", s.gripper_name, True)
            core.robot_set_operating_modes("group", s.group_name, s.arm_mode)
            core.robot_set_operating_modes("single", s.gripper_name, s.gripper_mode)
            if s.gripper_current_limit is not None:
                core.robot_set_motor_registers(
                    "single", s.gripper_name, "current_limit", s.gripper_current_limit
                )
            core.robot_torque_enable("group", s.group_name, True)
            core.robot_torque_enable("single", s.gripper_name, True)
        self._node, self._bots = node, bots
        self._robot_mod, self._msg_mod = robot_mod, msg_mod
        self._connected = True
        _log.info("interbotix: %d arm(s) up: %s", len(bots), [a.robot_name for a in s.arms])

    def disconnect(self) -> None:
        if not self._connected:
            return
        s = self.spec
        if s.torque_off_on_disconnect:
            for bot in self._bots:
                bot.core.robot_torque_enable("group", s.group_name, False)
                bot.core.robot_torque_enable("single", s.gripper_name, False)
        self._connected = False
        self._robot_mod.robot_shutdown(self._node)
        self._bots = []

    # ------------------------------------------------------------------ state / commands
    def read_state(self) -> RobotState:
        if not self._connected:
            raise RobotNotConnectedError("InterbotixArms.connect() has not been called")
        n = self.dof
        pos, vel, eff = np.zeros(n), np.zeros(n), np.zeros(n)
        s = self.spec
        span = s.position_open - s.position_close
        for arm, bot in zip(s.arms, self._bots, strict=True):
            js = bot.core.joint_states
            if js is None:
                raise RobotNotConnectedError(f"no joint states from {arm.robot_name} yet")
            index = bot.core.js_index_map
            for i, j in zip(arm.arm_idx, s.arm_joints, strict=True):
                k = index[j]
                pos[i] = js.position[k]
                vel[i] = js.velocity[k] if len(js.velocity) > k else 0.0
                eff[i] = js.effort[k] if len(js.effort) > k else 0.0
            if arm.gripper_idx is not None:
                kf = index[s.finger_joint]
                kg = index[s.gripper_joint]
                pos[arm.gripper_idx] = self.finger_to_normalized(js.position[kf])
                vel[arm.gripper_idx] = (js.velocity[kf] / span) if len(js.velocity) > kf else 0.0
                eff[arm.gripper_idx] = js.effort[kg] if len(js.effort) > kg else 0.0
        return RobotState(self.names, pos, vel, eff, time.time())

    def _send(self, command: np.ndarray) -> None:
        s = self.spec
        for arm, bot in zip(s.arms, self._bots, strict=True):
            bot.arm.set_joint_positions([float(command[i]) for i in arm.arm_idx], blocking=False)
            if arm.gripper_idx is not None:
                msg = self._msg_mod.JointSingleCommand(name=s.gripper_name)
                msg.cmd = self.gripper_to_joint(command[arm.gripper_idx])
                bot.gripper.core.pub_single.publish(msg)


class AlohaReal(InterbotixArms):
    """The real ALOHA followers (``config/aloha.yaml``)."""
