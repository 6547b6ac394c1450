"""One arm of the simulated ALOHA seen by a scripted operator: action indices, tool point, IK.

The tool centre point (TCP) is a point fixed in the arm's last link (``gripper_link``) at
``tcp_offset`` (m, link frame): with the default offset it sits between the finger tips, where the
object is held (2 cm short of the tips). Targets are world-frame :class:`~.geometry.Pose` s;
:meth:`ArmHandle.solve` maps them into the arm's root frame and runs a damped least-squares IK with
a null-space posture pull on the forward kinematics and Jacobian of
:mod:`diffog_ros.robots.kinematics`, from a seed (the previous solution, so consecutive targets
give a continuous joint path). :meth:`ArmHandle.aimed` builds the tool orientations the scripts
use: pointed from the base (the waist does the yaw), then pitched and rolled - a 6-joint arm asked
for a yaw its waist does not give has to twist its wrist, and near the wrist singularity that
means flipping the forearm roll by pi.

Which action dims belong to the arm comes from the robot config: the joints whose name starts with
the arm's prefix, ``rad`` joints being the arm and the single ``normalized`` one its gripper.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from diffog_ros.robots.kinematics import ArmKinematics, IKResult, mat_to_axis_angle
from diffog_ros.robots.scripted.geometry import Pose, rot_x, rot_y

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IKSettings:
    """Settings of :meth:`ArmHandle.solve`."""

    damping: float = 0.01  # lambda (constant)
    rotation_weight: float = 0.3  # m per rad in the error norm
    posture_gain: float = 0.05  # k: fraction of the posture error pulled back per iteration
    max_step: float = 0.2  # rad, largest joint change per iteration
    max_iterations: int = 50
    position_tolerance: float = 1e-4  # m
    rotation_tolerance: float = 1e-3  # rad


class ArmHandle:
    """Action indices, kinematics and IK of one arm (``prefix`` like ``"left_"``)."""

    def __init__(
        self,
        prefix: str,
        arm_index: Sequence[int],
        gripper_index: int,
        kinematics: ArmKinematics,
        gripper_closed: float,
        gripper_open: float,
        ik: IKSettings | None = None,
    ) -> None:
        self.prefix = prefix
        self.arm_index = np.asarray(arm_index, dtype=int)
        self.gripper_index = int(gripper_index)
        self.kin = kinematics
        self.gripper_closed = float(gripper_closed)
        self.gripper_open = float(gripper_open)
        self.ik_settings = ik or IKSettings()
        if self.arm_index.shape != (self.kin.n,):
            raise ValueError(
                f"arm {prefix!r}: {self.arm_index.size} action dims but a {self.kin.n}-joint chain"
            )
        w = self.kin.root_in_world
        self._root_rot = w[:3, :3].copy()
        self._root_pos = w[:3, 3].copy()
        #: World orientation of the tool at all-zero joints (the arm stretched out, gripper level).
        self.home_rotation = self.pose(np.zeros(self.kin.n)).rotation
        #: Joint values the IK's null-space term pulls towards (set from the start command).
        self.posture = np.zeros(self.kin.n)
        self.ik_failures = 0

    @classmethod
    def from_sim(
        cls,
        sim,
        prefix: str,
        tcp_offset: Sequence[float],
        ik: IKSettings | None = None,
    ) -> ArmHandle:
        """The arm of an :class:`~diffog_ros.robots.aloha_sim.AlohaSim` whose names start with
        ``prefix``; limits and units from its robot config."""
        config = sim.config
        names = [n for n in config.names if n.startswith(prefix)]
        arm = [config.index(n) for n in names if config.joints[config.index(n)].unit == "rad"]
        grippers = [
            config.index(n) for n in names if config.joints[config.index(n)].unit == "normalized"
        ]
        if not arm or len(grippers) != 1:
            raise ValueError(
                f"{config.source}: the joints with prefix {prefix!r} must be rad arm joints plus "
                f"exactly one normalized gripper, got {names}"
            )
        g = grippers[0]
        kin = sim.arm_kinematics(prefix, tuple(float(v) for v in tcp_offset))
        return cls(prefix, arm, g, kin, config.lower[g], config.upper[g], ik)

    # ------------------------------------------------------------------ kinematics
    def arm_joints(self, q_full: np.ndarray) -> np.ndarray:
        """This arm's joint values out of a full action / state vector."""
        return np.asarray(q_full, dtype=np.float64)[self.arm_index]

    def pose(self, q_arm: np.ndarray) -> Pose:
        """World pose of the TCP at arm joints ``q_arm``."""
        p, r = self.kin.fk_world(q_arm)
        return Pose(p, r)

    def aim_yaw(self, position: np.ndarray) -> float:
        """Bearing (rad) of ``position`` (world) seen from the base, about the base's z axis."""
        local = self._root_rot.T @ (np.asarray(position, dtype=np.float64) - self._root_pos)
        return math.atan2(local[1], local[0])

    def aim_rotation(self, position: np.ndarray) -> np.ndarray:
        """:attr:`home_rotation` turned about the base's vertical axis towards ``position``
        (world): the tool orientation of a stretched-out arm pointing at it."""
        yaw = self.aim_yaw(position)
        c, s = math.cos(yaw), math.sin(yaw)
        rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return self._root_rot @ rz @ self._root_rot.T @ self.home_rotation

    def aimed(self, position: np.ndarray, pitch: float, roll: float = 0.0) -> Pose:
        """The tool pose at ``position`` (world) aimed from the base, then pitched and rolled::

            R = Rz(yaw) R_home Ry(pitch) Rx(roll)     (:meth:`aim_rotation` gives Rz(yaw) R_home)

        ``pitch`` > 0 tilts the fingers down, ``roll`` turns them about the tool axis. Because the
        waist alone points the arm at ``position``, the wrist never twists to cancel a yaw (near
        the wrist singularity that would need large forearm-roll motions)."""
        return Pose(position, self.aim_rotation(position) @ rot_y(pitch) @ rot_x(roll))

    def aim_angles(self, pose: Pose) -> tuple[float, float]:
        """``(pitch, roll)`` of ``pose`` relative to :meth:`aim_rotation` at its position (a
        residual yaw, zero for poses made by :meth:`aimed`, is ignored)."""
        m = self.aim_rotation(pose.position).T @ pose.rotation  # = Ry(pitch) Rx(roll)
        return math.atan2(-m[2, 0], m[0, 0]), math.atan2(-m[1, 2], m[1, 1])

    def solve(self, target: Pose, seed: np.ndarray) -> IKResult:
        """IK of ``target`` (world) from ``seed`` with a posture bias (see the class docstring).

        Damped least squares with constant damping ``lambda`` (Wampler 1986) plus a null-space
        pull towards :attr:`posture` (Liegeois 1977)::

            e   = [p* - p(q);  w_rot log(R* R(q)^T)],        J_w = W J(q)
            J+  = J_w^T (J_w J_w^T + lambda^2 I)^-1
            dq  = J+ W e + (I - J+ J_w) k (q_posture - q)
            q  <- clip(q + dq, lower, upper)                 repeated until |e| is small

        Without the posture term the wrist's redundant pair (forearm roll and wrist rotate, whose
        axes align when the wrist angle crosses zero) drifts, and consecutive solutions jump.
        Failures to converge are counted and logged at debug level.
        """
        s = self.ik_settings
        kin = self.kin
        p_target = self._root_rot.T @ (target.position - self._root_pos)
        r_target = self._root_rot.T @ target.rotation
        weights = np.array([1.0, 1.0, 1.0] + [s.rotation_weight] * 3)
        lam2 = s.damping * s.damping
        eye6, eye_n = np.eye(6), np.eye(kin.n)
        q = np.clip(np.asarray(seed, dtype=np.float64).copy(), kin.lower, kin.upper)
        pos_err = rot_err = float("inf")
        it = 0
        for it in range(s.max_iterations + 1):
            p, r = kin.fk(q)
            e = np.concatenate([p_target - p, mat_to_axis_angle(r_target @ r.T)])
            pos_err = float(np.linalg.norm(e[:3]))
            rot_err = float(np.linalg.norm(e[3:]))
            if pos_err <= s.position_tolerance and rot_err <= s.rotation_tolerance:
                break
            if it == s.max_iterations:
                break
            jw = kin.jacobian(q) * weights[:, None]
            pinv = jw.T @ np.linalg.inv(jw @ jw.T + lam2 * eye6)
            dq = pinv @ (weights * e)
            dq += (eye_n - pinv @ jw) @ (s.posture_gain * (self.posture - q))
            biggest = float(np.max(np.abs(dq)))
            if biggest > s.max_step:
                dq *= s.max_step / biggest
            q = np.clip(q + dq, kin.lower, kin.upper)
        ok = pos_err <= s.position_tolerance and rot_err <= s.rotation_tolerance
        if not ok:
            self.ik_failures += 1
            _log.debug(
                "%sarm IK did not converge: %.4f m, %.4f rad after %d iterations",
                self.prefix,
                pos_err,
                rot_err,
                it,
            )
        return IKResult(q, ok, pos_err, rot_err, it)
