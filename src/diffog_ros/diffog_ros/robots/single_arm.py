"""One vx300s driven in end-effector space: ``single_arm_sim`` (MuJoCo) and ``single_arm`` (real).

Both are joint-space :class:`~diffog_ros.robots.interface.Robot` backends (arm joints in rad plus a
normalised gripper, names from ``config/single_arm.yaml``) that also carry an
:class:`EndEffector` description: the arm's kinematics (built from the MuJoCo model's body
frames), the workspace box and the twist limits. :class:`EndEffectorTeleop` turns SpaceMouse-style
inputs into joint targets each tick:

* twist ``(v, w)`` (m/s, rad/s, base frame) -> limited to the max speeds -> target pose
  ``p* = p + v dt`` and ``R* = exp([w] dt) R`` from the pose of the previous command;
* pose target ``(p*, R*)`` (base frame) as given;
* ``p*`` clamped into the workspace box, then damped least-squares IK from the previous command
  -> joint target, which the controller passes through the joint safety layer like any other.

``single_arm_sim`` drives one arm of the bimanual ALOHA model (the other arm holds its initial pose);
``single_arm`` drives one real arm through :class:`~diffog_ros.robots.aloha_real.InterbotixArms`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffog_ros.robots.aloha_real import InterbotixArms
from diffog_ros.robots.aloha_sim import AlohaSim, assets_dir
from diffog_ros.robots.config import RobotConfig, RobotConfigError, load_robot_config
from diffog_ros.robots.interface import Robot, RobotState
from diffog_ros.robots.kinematics import ArmKinematics, axis_angle_to_mat
from diffog_ros.robots.safety import WORKSPACE, TwistLimiter, WorkspaceBox

IK_RESIDUAL = "ik_residual"


@dataclass(frozen=True)
class IKSettings:
    damping: float = 0.01
    singular_threshold: float = 0.01
    rotation_weight: float = 0.3
    max_iterations: int = 20
    position_tolerance: float = 1e-4
    rotation_tolerance: float = 1e-3


@dataclass(frozen=True)
class EndEffector:
    """Everything end-effector control needs about one arm."""

    kinematics: ArmKinematics
    arm_idx: tuple[int, ...]  # joint-vector indices of the chain joints (root to tip)
    gripper_idx: int | None
    workspace: WorkspaceBox
    limiter: TwistLimiter
    ik: IKSettings
    frame_id: str
    gripper_open: float  # normalised gripper value for "open" / "closed" (joy buttons)
    gripper_closed: float


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RobotConfigError(f"{where}: must be a finite number, got {v!r}")
    return float(v)


def load_end_effector(config: RobotConfig) -> EndEffector:
    """Build the :class:`EndEffector` of ``config``'s ``end_effector:`` section."""
    import mujoco

    sec = config.section("end_effector")
    where = f"{config.source}: end_effector"

    def req(key: str) -> Any:
        if key not in sec:
            raise RobotConfigError(f"{where}.{key}: required key is missing")
        return sec[key]

    model_sec = req("model")
    path = assets_dir(str(model_sec.get("assets_package", "gym_aloha"))) / str(model_sec["file"])
    if not path.is_file():
        raise RobotConfigError(f"{where}.model: {path} does not exist")
    model = mujoco.MjModel.from_xml_path(str(path))
    arm_joints = [str(j) for j in req("arm_joints")]
    chain = [str(j) for j in req("chain_joints")]
    if len(arm_joints) != len(chain):
        raise RobotConfigError(f"{where}: arm_joints and chain_joints must have the same length")
    try:
        arm_idx = tuple(config.index(j) for j in arm_joints)
    except KeyError as exc:
        raise RobotConfigError(f"{where}.arm_joints: {exc.args[0]}") from None
    gripper = sec.get("gripper_joint")
    g_idx = config.index(str(gripper)) if gripper else None
    offset = [_num(v, f"{where}.tip_offset") for v in sec.get("tip_offset", [0.0, 0.0, 0.0])]
    try:
        kin = ArmKinematics.from_mujoco(
            model,
            str(req("root_body")),
            str(req("tip_body")),
            chain,
            offset,
            config.lower[list(arm_idx)],
            config.upper[list(arm_idx)],
        )
    except ValueError as exc:
        raise RobotConfigError(f"{where}: {exc}") from exc
    ws = req("workspace")
    try:
        box = WorkspaceBox(ws["min"], ws["max"])
        limiter = TwistLimiter(
            _num(req("max_linear_speed"), f"{where}.max_linear_speed"),
            _num(req("max_angular_speed"), f"{where}.max_angular_speed"),
        )
    except (KeyError, ValueError) as exc:
        raise RobotConfigError(f"{where}: {exc}") from exc
    ik_raw: Mapping[str, Any] = sec.get("ik", {}) or {}
    ik = IKSettings(
        damping=_num(ik_raw.get("damping", IKSettings.damping), f"{where}.ik.damping"),
        singular_threshold=_num(
            ik_raw.get("singular_threshold", IKSettings.singular_threshold),
            f"{where}.ik.singular_threshold",
        ),
        rotation_weight=_num(
            ik_raw.get("rotation_weight", IKSettings.rotation_weight), f"{where}.ik.rotation_weight"
        ),
        max_iterations=int(ik_raw.get("max_iterations", IKSettings.max_iterations)),
        position_tolerance=_num(
            ik_raw.get("position_tolerance", IKSettings.position_tolerance), f"{where}.ik"
        ),
        rotation_tolerance=_num(
            ik_raw.get("rotation_tolerance", IKSettings.rotation_tolerance), f"{where}.ik"
        ),
    )
    return EndEffector(
        kinematics=kin,
        arm_idx=arm_idx,
        gripper_idx=g_idx,
        workspace=box,
        limiter=limiter,
        ik=ik,
        frame_id=config.frame_id,
        gripper_open=_num(sec.get("gripper_open", 1.0), f"{where}.gripper_open"),
        gripper_closed=_num(sec.get("gripper_closed", 0.0), f"{where}.gripper_closed"),
    )


class EndEffectorTeleop:
    """Twist / pose inputs -> arm joint targets (see module docstring). Not thread-safe."""

    def __init__(self, ee: EndEffector) -> None:
        self.ee = ee
        self._twist: tuple[np.ndarray, np.ndarray] | None = None
        self._pose: tuple[np.ndarray, np.ndarray] | None = None

    def set_twist(self, linear: np.ndarray, angular: np.ndarray) -> bool:
        """Store a twist (base frame); returns True if it had to be limited."""
        v, w, hit = self.ee.limiter.limit(linear, angular)
        self._twist, self._pose = (v, w), None
        return hit

    def set_pose(self, position: np.ndarray, rotation: np.ndarray) -> None:
        self._pose, self._twist = (np.asarray(position, float), np.asarray(rotation, float)), None

    def clear(self) -> None:
        self._twist = self._pose = None

    @property
    def active(self) -> bool:
        return self._twist is not None or self._pose is not None

    def target(self, q_prev: np.ndarray, dt: float) -> tuple[np.ndarray | None, list[str]]:
        """Joint target (full vector, arm entries replaced) for this tick and clamp reasons."""
        if not self.active:
            return None, []
        ee = self.ee
        idx = list(ee.arm_idx)
        q_arm = np.asarray(q_prev, dtype=np.float64)[idx]
        reasons: list[str] = []
        if self._twist is not None:
            v, w = self._twist
            p, r = ee.kinematics.fk(q_arm)
            p_t = p + v * dt
            r_t = axis_angle_to_mat(w * dt) @ r
        else:
            p_t, r_t = self._pose
        p_c, hit = ee.workspace.clamp(p_t)
        if hit:
            reasons.append(WORKSPACE)
        res = ee.kinematics.ik(
            p_c,
            r_t,
            q_arm,
            damping=ee.ik.damping,
            singular_threshold=ee.ik.singular_threshold,
            rotation_weight=ee.ik.rotation_weight,
            max_iterations=ee.ik.max_iterations,
            position_tolerance=ee.ik.position_tolerance,
            rotation_tolerance=ee.ik.rotation_tolerance,
        )
        if not res.success:
            reasons.append(IK_RESIDUAL)
        out = np.asarray(q_prev, dtype=np.float64).copy()
        out[idx] = res.q
        return out, reasons


class SingleArmSim(Robot):
    """One arm of the bimanual ALOHA MuJoCo model (``sim.aloha_config`` + ``sim.prefix``)."""

    def __init__(
        self,
        config: RobotConfig,
        task: str = "transfer_cube",
        seed: int | None = 0,
        control_rate_hz: float | None = None,
    ) -> None:
        super().__init__(config)
        sec = config.section("sim")
        where = f"{config.source}: sim"
        if "aloha_config" not in sec:
            raise RobotConfigError(f"{where}.aloha_config: required key is missing")
        self.aloha_config = load_robot_config(str(sec["aloha_config"]))
        self.prefix = str(sec.get("prefix", "left_"))
        full = [self.prefix + n for n in config.names]
        try:
            self._idx = np.array([self.aloha_config.index(n) for n in full])
        except KeyError as exc:
            raise RobotConfigError(f"{where}: {exc.args[0]}") from None
        lo, hi = self.aloha_config.lower[self._idx], self.aloha_config.upper[self._idx]
        if np.any(config.lower < lo) or np.any(config.upper > hi):
            raise RobotConfigError(
                f"{where}: the single-arm limits must lie within {self.aloha_config.source}'s"
            )
        self.sim = AlohaSim(
            self.aloha_config, task, seed, control_rate_hz or config.control_rate_hz
        )
        self.end_effector = load_end_effector(config)

    @property
    def dt(self) -> float:
        return self.sim.dt

    def connect(self) -> None:
        self.sim.connect()
        self._connected = True
        self._last_command = self.check_command(self.sim.last_command[self._idx])

    def disconnect(self) -> None:
        self.sim.disconnect()
        self._connected = False

    def reset(self, seed: int | None = None) -> RobotState:
        self.sim.reset(seed)
        self._last_command = self.check_command(self.sim.last_command[self._idx])
        return self.read_state()

    def read_state(self) -> RobotState:
        s = self.sim.read_state()
        i = self._idx
        return RobotState(self.names, s.position[i], s.velocity[i], s.effort[i], s.stamp)

    def _send(self, command: np.ndarray) -> None:
        full = self.sim.last_command
        full[self._idx] = command
        self.sim.send_command(full)


class SingleArmReal(InterbotixArms):
    """One real vx300s through interbotix_xs_modules, with end-effector kinematics."""

    def __init__(self, config: RobotConfig) -> None:
        super().__init__(config)
        self.end_effector = load_end_effector(config)
