"""Serial-arm kinematics for the vx300s: forward kinematics, geometric Jacobian, damped least-squares IK.

The chain is read from the MuJoCo model's body frames (:meth:`ArmKinematics.from_mujoco`), so no
link length or axis is duplicated in code. Poses are expressed in the arm's root body frame (the
Interbotix ``base_link``); :attr:`ArmKinematics.root_in_world` places that frame in the model's world.

Conventions: positions in m, angles in rad, quaternions ``[w, x, y, z]``, rotation matrices map
child-frame vectors to parent-frame vectors. For joint i with unit axis ``a_i`` (root frame) through
point ``o_i`` the geometric Jacobian columns are ``[a_i x (p - o_i); a_i]`` (revolute) and
``[a_i; 0]`` (prismatic), with ``p`` the tip position.

IK (damped least squares, Wampler 1986 / Nakamura 1986)::

    e  = [p* - p(q);  w_rot * log(R* R(q)^T)]          (6,)
    dq = J_w^T (J_w J_w^T + lambda^2 I)^-1 W e          J_w = W J,  W = diag(1,1,1,w_rot,w_rot,w_rot)
    lambda^2 = (1 - (s_min / s_0)^2) damping^2 if s_min < s_0 else 0   (s_min: J_w's smallest
                                                                          singular value)
    q <- clip(q + dq, lower, upper)                     repeated until |e| is small
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------- rotations


def quat_to_mat(q: Sequence[float]) -> np.ndarray:
    """Rotation matrix of a unit quaternion ``[w, x, y, z]`` (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def mat_to_quat(r: np.ndarray) -> np.ndarray:
    """Unit quaternion ``[w, x, y, z]`` (w >= 0) of a rotation matrix (Shepperd's method)."""
    m = np.asarray(r, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    out = np.asarray(q)
    out /= np.linalg.norm(out)
    return -out if out[0] < 0 else out


def skew(v: np.ndarray) -> np.ndarray:
    x, y, z = v
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def axis_angle_to_mat(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues: ``exp([r]x)`` for a rotation vector ``r`` (axis * angle, rad)."""
    r = np.asarray(rotvec, dtype=np.float64)
    theta = float(np.linalg.norm(r))
    if theta < 1e-12:
        return np.eye(3) + skew(r)
    k = skew(r / theta)
    return np.eye(3) + math.sin(theta) * k + (1 - math.cos(theta)) * (k @ k)


def mat_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """``log(R)`` as a rotation vector (rad), robust near 0 and pi."""
    m = np.asarray(r, dtype=np.float64)
    cos = max(-1.0, min(1.0, (np.trace(m) - 1.0) / 2.0))
    theta = math.acos(cos)
    vee = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]])
    if theta < 1e-9:
        return 0.5 * vee
    if math.pi - theta < 1e-6:
        # axis from the diagonal of (R + I) / 2 = k k^T
        b = (m + np.eye(3)) / 2.0
        i = int(np.argmax(np.diag(b)))
        axis = b[:, i] / math.sqrt(max(b[i, i], 1e-300))
        return axis * theta
    return vee * (theta / (2.0 * math.sin(theta)))


def transform(rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = pos
    return t


# ----------------------------------------------------------------------------- chain


@dataclass(frozen=True)
class ChainJoint:
    """One actuated joint: fixed transform from the parent body frame, then the joint motion.

    ``offset`` (4x4) places this body's frame in its parent's at q = 0; the joint moves about /
    along ``axis`` (unit, this body's frame) through ``anchor`` (this body's frame).
    """

    name: str
    offset: np.ndarray
    axis: np.ndarray
    anchor: np.ndarray
    revolute: bool


@dataclass(frozen=True)
class IKResult:
    q: np.ndarray
    success: bool
    position_error: float  # m
    rotation_error: float  # rad
    iterations: int


class ArmKinematics:
    """FK / Jacobian / IK of one serial chain (root frame = the arm's base)."""

    def __init__(
        self,
        joints: Sequence[ChainJoint],
        tip: np.ndarray,
        lower: Sequence[float],
        upper: Sequence[float],
        root_in_world: np.ndarray | None = None,
    ) -> None:
        self.joints = tuple(joints)
        n = len(self.joints)
        if n == 0:
            raise ValueError("a kinematic chain needs at least one joint")
        self.tip = np.asarray(tip, dtype=np.float64)
        if self.tip.shape != (4, 4):
            raise ValueError("tip must be a 4x4 transform (last joint body -> end effector)")
        self.lower = np.asarray(lower, dtype=np.float64).copy()
        self.upper = np.asarray(upper, dtype=np.float64).copy()
        if self.lower.shape != (n,) or self.upper.shape != (n,):
            raise ValueError(f"lower / upper must have {n} values")
        self.root_in_world = (
            np.eye(4) if root_in_world is None else np.asarray(root_in_world, float)
        )

    @property
    def n(self) -> int:
        return len(self.joints)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mujoco(
        cls,
        model,
        root_body: str,
        tip_body: str,
        joint_names: Sequence[str],
        tip_offset: Sequence[float] = (0.0, 0.0, 0.0),
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
    ) -> ArmKinematics:
        """Build the chain ``root_body -> ... -> tip_body`` of a compiled ``mujoco.MjModel``.

        ``joint_names`` are the model joints along the chain, root to tip (each body on the path may
        hold at most one of them; bodies without joints contribute fixed transforms). The end
        effector sits at ``tip_offset`` (m) in the tip body's frame. Limits default to the model's
        joint ranges.
        """
        import mujoco  # local: only this constructor needs it

        def body_id(name: str) -> int:
            i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
            if i < 0:
                raise ValueError(f"body {name!r} not found in the MuJoCo model")
            return i

        root, tip = body_id(root_body), body_id(tip_body)
        path = []
        b = tip
        while b != root:
            if b == 0:
                raise ValueError(f"body {tip_body!r} is not a descendant of {root_body!r}")
            path.append(b)
            b = int(model.body_parentid[b])
        path.reverse()

        wanted = list(joint_names)
        jids = []
        for name in wanted:
            j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if j < 0:
                raise ValueError(f"joint {name!r} not found in the MuJoCo model")
            jids.append(j)

        joints: list[ChainJoint] = []
        pending = np.eye(4)  # fixed transforms of joint-less bodies accumulated so far
        used = []
        for body in path:
            offset = pending @ transform(quat_to_mat(model.body_quat[body]), model.body_pos[body])
            body_joints = [
                j
                for j in range(
                    model.body_jntadr[body], model.body_jntadr[body] + model.body_jntnum[body]
                )
                if j >= 0
            ]
            chain_joints = [j for j in body_joints if j in jids]
            others = [model.joint(j).name for j in body_joints if j not in jids]
            if others:
                raise ValueError(
                    f"joints {others} on the path {root_body!r} -> {tip_body!r} are not in the "
                    f"chain; expected exactly {wanted}"
                )
            if len(chain_joints) > 1:
                raise ValueError(f"body {model.body(body).name!r} holds more than one chain joint")
            if not chain_joints:
                pending = offset
                continue
            j = chain_joints[0]
            jtype = int(model.jnt_type[j])
            if jtype not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                raise ValueError(f"joint {model.joint(j).name!r} is neither hinge nor slide")
            axis = np.array(model.jnt_axis[j], dtype=np.float64)
            joints.append(
                ChainJoint(
                    name=model.joint(j).name,
                    offset=offset,
                    axis=axis / np.linalg.norm(axis),
                    anchor=np.array(model.jnt_pos[j], dtype=np.float64),
                    revolute=jtype == int(mujoco.mjtJoint.mjJNT_HINGE),
                )
            )
            used.append(j)
            pending = np.eye(4)
        if used != jids:
            order = [model.joint(j).name for j in used]
            raise ValueError(
                f"joints along {root_body!r} -> {tip_body!r} are {order}, expected {wanted} in order"
            )
        tip_tf = pending @ transform(np.eye(3), np.asarray(tip_offset, dtype=np.float64))
        lo = model.jnt_range[jids, 0] if lower is None else lower
        hi = model.jnt_range[jids, 1] if upper is None else upper

        # Root frame in world at the model's reference configuration: chain of parent bodies.
        root_world = np.eye(4)
        b = root
        while b != 0:
            root_world = transform(quat_to_mat(model.body_quat[b]), model.body_pos[b]) @ root_world
            b = int(model.body_parentid[b])
        return cls(joints, tip_tf, lo, hi, root_in_world=root_world)

    # ------------------------------------------------------------------ kinematics
    def _frames(self, q: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Per joint: its body frame at q (root frame), and the tip transform."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.n,):
            raise ValueError(f"q must have shape ({self.n},), got {q.shape}")
        t = np.eye(4)
        frames = []
        for j, qi in zip(self.joints, q, strict=True):
            t = t @ j.offset
            frames.append(t.copy())
            if j.revolute:
                motion = transform(axis_angle_to_mat(j.axis * qi), np.zeros(3))
                # rotate about the anchor: T(anchor) R T(-anchor)
                motion[:3, 3] = j.anchor - motion[:3, :3] @ j.anchor
            else:
                motion = transform(np.eye(3), j.axis * qi)
            t = t @ motion
        return frames, t @ self.tip

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector position (3,) and rotation (3, 3) in the root frame."""
        _, tip = self._frames(q)
        return tip[:3, 3].copy(), tip[:3, :3].copy()

    def fk_world(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, r = self.fk(q)
        w = self.root_in_world
        return w[:3, :3] @ p + w[:3, 3], w[:3, :3] @ r

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """Geometric Jacobian (6, n): rows [linear velocity; angular velocity] in the root frame."""
        frames, tip = self._frames(q)
        p = tip[:3, 3]
        jac = np.zeros((6, self.n))
        for i, (j, f) in enumerate(zip(self.joints, frames, strict=True)):
            axis = f[:3, :3] @ j.axis
            if j.revolute:
                origin = f[:3, :3] @ j.anchor + f[:3, 3]
                jac[:3, i] = np.cross(axis, p - origin)
                jac[3:, i] = axis
            else:
                jac[:3, i] = axis
        return jac

    def ik(
        self,
        position: np.ndarray,
        rotation: np.ndarray | None,
        q_seed: np.ndarray,
        *,
        damping: float = 0.01,
        rotation_weight: float = 0.3,
        max_iterations: int = 50,
        position_tolerance: float = 1e-4,
        rotation_tolerance: float = 1e-3,
        max_step: float = 0.2,
        singular_threshold: float = 0.01,
    ) -> IKResult:
        """Damped least-squares IK towards ``(position, rotation)`` (root frame) from ``q_seed``.

        ``rotation=None`` solves for position only. Joint limits are enforced by clipping each
        iterate; ``max_step`` (rad) bounds each iteration's largest joint change. The damping
        ``lambda^2 = (1 - (sigma_min / singular_threshold)^2) damping^2`` is applied only when the
        weighted Jacobian's smallest singular value falls below ``singular_threshold``.
        """
        p_target = np.asarray(position, dtype=np.float64)
        if p_target.shape != (3,) or not np.all(np.isfinite(p_target)):
            raise ValueError(f"position must be 3 finite values, got {position!r}")
        if rotation is not None:
            r_target = np.asarray(rotation, dtype=np.float64)
            if r_target.shape != (3, 3) or not np.all(np.isfinite(r_target)):
                raise ValueError("rotation must be a finite 3x3 matrix")
        q = np.clip(np.asarray(q_seed, dtype=np.float64).copy(), self.lower, self.upper)
        rows = 3 if rotation is None else 6
        weights = np.array([1.0, 1.0, 1.0] + [rotation_weight] * 3)[:rows]
        pos_err = rot_err = float("inf")
        it = 0
        for it in range(1, max_iterations + 1):
            p, r = self.fk(q)
            e = np.zeros(rows)
            e[:3] = p_target - p
            pos_err = float(np.linalg.norm(e[:3]))
            if rotation is not None:
                e[3:] = mat_to_axis_angle(r_target @ r.T)
                rot_err = float(np.linalg.norm(e[3:]))
            else:
                rot_err = 0.0
            if pos_err <= position_tolerance and rot_err <= rotation_tolerance:
                return IKResult(q, True, pos_err, rot_err, it - 1)
            jw = self.jacobian(q)[:rows] * weights[:, None]
            # damping only near singularities (Nakamura & Hanafusa 1986): lambda^2 grows as the
            # smallest singular value drops below singular_threshold
            sigma_min = float(np.linalg.svd(jw, compute_uv=False)[-1])
            ratio = sigma_min / singular_threshold
            lam2 = 0.0 if ratio >= 1.0 else (1.0 - ratio * ratio) * damping * damping
            dq = jw.T @ np.linalg.solve(jw @ jw.T + (lam2 + 1e-12) * np.eye(rows), weights * e)
            biggest = float(np.max(np.abs(dq)))
            if biggest > max_step:
                dq *= max_step / biggest
            q = np.clip(q + dq, self.lower, self.upper)
        p, r = self.fk(q)
        pos_err = float(np.linalg.norm(p_target - p))
        rot_err = (
            0.0 if rotation is None else float(np.linalg.norm(mat_to_axis_angle(r_target @ r.T)))
        )
        ok = pos_err <= position_tolerance and rot_err <= rotation_tolerance
        return IKResult(q, ok, pos_err, rot_err, it)
