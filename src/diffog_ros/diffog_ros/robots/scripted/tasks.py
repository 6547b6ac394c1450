"""Scripted TransferCube and Insertion for the simulated ALOHA (task geometry of gym_aloha).

Both scripts use the two arms named by the action-name prefixes ``left_`` / ``right_`` and the
objects of the sim config (``box``; ``peg`` and ``socket``). Every length, angle and duration is a
field of :class:`TransferCubeScript` / :class:`InsertionScript` (world frame, m / rad / control
ticks at 50 Hz) and can be overridden from YAML (``diffog-ros demos --script FILE``).

Tool orientations are *aimed* (:meth:`~.arms.ArmHandle.aimed`): the arm's home tool orientation
(all joints at zero: gripper level) turned about the base towards the tool position, then
``Ry(pitch) Rx(roll)``; a positive pitch tilts the fingers down towards the table for either arm,
a roll turns them about the tool axis. "Outward" for an arm is the horizontal direction from the
meeting point towards that arm's base. Every correction is planned from the object poses and the
hands' measured poses, relative to where the hands were *commanded*
(:meth:`~.policy.PlanContext.in_commanded_hand`), so tracking errors and teleoperation jitter are
not "corrected" into an overshoot.

TransferCube (right arm picks, hands over to the left arm)::

    approach   right above the cube (pitched down), left to its stand-off near the meeting point,
               both grippers open
    descend    right down to the cube                  grasp      right closes
    carry      right brings the cube to the meeting point
    reach      left moves onto the cube where it is now (fingers rolled to close vertically)
    receive    left closes                             release    right opens
    retreat    both move outward; the left keeps the cube in the air

Insertion (left arm holds the socket, right arm the peg, both grasped straight down)::

    approach   both above their object, fingers across it, grippers open
    descend    both down to their object               grasp      both close
    lift       both straight up
    align      socket to its spot beside the meeting point, the peg's end on the socket axis
               outside the mouth; both objects levelled (a light object turns in the grasp)
    enter      the same from a fresh measurement, the peg's end just outside the mouth
    insert     peg end pushed in past the pin's end (the pin stops it)
    press x N  re-measure and push again, keeping the peg against the pin to the end
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from diffog_ros.robots.kinematics import axis_angle_to_mat, quat_to_mat
from diffog_ros.robots.scripted.arms import ArmHandle
from diffog_ros.robots.scripted.policy import ArmGoal, Phase, PlanContext, ToolCommand

#: Arm key -> action-name prefix (the shared ALOHA naming contract).
ARM_PREFIXES = {"left": "left_", "right": "right_"}


def _vec3(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    return arr


@dataclass(frozen=True)
class _ScriptBase:
    """Fields shared by both scripts."""

    #: Tool centre point in the gripper link frame (m): between the finger tips. gym_aloha's
    #: end-effector models weld their mocap target to this point.
    tcp_offset: tuple[float, float, float] = (0.1347, 0.0, -0.00205)
    pick_pitch: float = 1.0472  # rad (60 deg): fingers tilted down when grasping from the table
    hover: float = 0.08  # m above the grasp point before descending
    episode_steps: int = 400  # ticks recorded per episode (the script holds after its phases)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            if kind == "int":
                low = 1 if f.name.endswith("_steps") else 0
                if isinstance(value, bool) or not isinstance(value, int) or value < low:
                    raise ValueError(f"script {f.name} must be an int >= {low}, got {value!r}")
            elif kind == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"script {f.name} must be a number, got {value!r}")
                if not np.isfinite(value):
                    raise ValueError(f"script {f.name} must be finite, got {value!r}")
                object.__setattr__(self, f.name, float(value))
            elif kind == "str":
                if not isinstance(value, str) or not value:
                    raise ValueError(f"script {f.name} must be a non-empty string, got {value!r}")
            else:  # a 3-vector
                if isinstance(value, (str, bytes)):
                    raise ValueError(f"script {f.name} must be 3 numbers, got {value!r}")
                try:
                    vec = _vec3(value, f"script {f.name}")
                except (TypeError, ValueError) as exc:
                    raise ValueError(
                        f"script {f.name} must be 3 finite numbers, got {value!r}"
                    ) from exc
                object.__setattr__(self, f.name, tuple(vec.tolist()))

    def with_overrides(self, overrides: Mapping[str, Any]):
        """A copy with some fields replaced (unknown names raise ``ValueError``)."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"unknown script parameters {unknown}; known: {sorted(known)}")
        return replace(self, **dict(overrides))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _outward(arm: ArmHandle, meet: np.ndarray) -> np.ndarray:
    """Unit horizontal vector (along x) from the meeting point towards the arm's base."""
    dx = float(arm.kin.root_in_world[0, 3] - meet[0])
    if dx == 0.0:
        raise ValueError(f"arm {arm.prefix!r} base lies on the meeting plane x = {meet[0]}")
    return np.array([np.sign(dx), 0.0, 0.0])


# ----------------------------------------------------------------------------- TransferCube


@dataclass(frozen=True)
class TransferCubeScript(_ScriptBase):
    """TransferCube geometry and timing (see the module docstring)."""

    object: str = "box"
    grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.005)  # TCP - cube centre (m)
    meet: tuple[float, float, float] = (0.0, 0.5, 0.25)  # cube centre at the hand-over (m)
    receive_roll: float = 1.5708  # rad: left fingers close vertically on the cube
    standoff: float = 0.1  # m outward from the cube for the left arm's approach
    receive_offset: tuple[float, float, float] = (-0.01, 0.0, 0.0)  # left TCP - cube centre (m)
    retreat: float = 0.1  # m outward at the end
    approach_steps: int = 90
    descend_steps: int = 40
    grasp_steps: int = 30
    carry_steps: int = 60
    reach_steps: int = 40
    receive_steps: int = 30
    release_steps: int = 30
    retreat_steps: int = 50


def transfer_cube_phases(script: TransferCubeScript) -> list[Phase]:
    s = script
    meet = np.asarray(s.meet)
    grasp = np.asarray(s.grasp_offset)
    receive = np.asarray(s.receive_offset)
    up = np.array([0.0, 0.0, s.hover])

    def right_at(position: np.ndarray, gripper: float | None = None) -> ArmGoal:
        return ArmGoal(position, s.pick_pitch, 0.0, gripper)

    def left_at(position: np.ndarray, gripper: float | None = None) -> ArmGoal:
        return ArmGoal(position, 0.0, s.receive_roll, gripper)

    def approach(ctx: PlanContext) -> dict[str, ArmGoal]:
        left, right = ctx.arms["left"], ctx.arms["right"]
        cube = ctx.position(s.object)
        stand = meet + receive + _outward(left, meet) * s.standoff
        return {
            "right": right_at(cube + grasp + up, right.gripper_open),
            "left": left_at(stand, left.gripper_open),
        }

    def descend(ctx: PlanContext) -> dict[str, ArmGoal]:
        return {"right": right_at(ctx.position(s.object) + grasp)}

    def grasp_(ctx: PlanContext) -> dict[str, ArmGoal]:
        return {"right": ArmGoal(gripper=ctx.arms["right"].gripper_closed)}

    def carry(ctx: PlanContext) -> dict[str, ArmGoal]:
        delta = meet - ctx.in_commanded_hand("right", ctx.position(s.object))
        return {"right": right_at(ctx.commanded["right"].position + delta)}

    def reach(ctx: PlanContext) -> dict[str, ArmGoal]:
        return {"left": left_at(ctx.position(s.object) + receive)}

    def receive_(ctx: PlanContext) -> dict[str, ArmGoal]:
        return {"left": ArmGoal(gripper=ctx.arms["left"].gripper_closed)}

    def release(ctx: PlanContext) -> dict[str, ArmGoal]:
        return {"right": ArmGoal(gripper=ctx.arms["right"].gripper_open)}

    def retreat(ctx: PlanContext) -> dict[str, ArmGoal]:
        out = {}
        for k, at in (("left", left_at), ("right", right_at)):
            away = _outward(ctx.arms[k], meet) * s.retreat
            out[k] = at(ctx.commanded[k].position + away)
        return out

    return [
        Phase("approach", s.approach_steps, approach),
        Phase("descend", s.descend_steps, descend, precise=True),
        Phase("grasp", s.grasp_steps, grasp_, precise=True),
        Phase("carry", s.carry_steps, carry),
        Phase("reach", s.reach_steps, reach, precise=True),
        Phase("receive", s.receive_steps, receive_, precise=True),
        Phase("release", s.release_steps, release, precise=True),
        Phase("retreat", s.retreat_steps, retreat),
    ]


# ----------------------------------------------------------------------------- Insertion


@dataclass(frozen=True)
class InsertionScript(_ScriptBase):
    """Insertion geometry and timing (see the module docstring)."""

    #: Grasps straight down: the 2 cm peg is too low for tilted fingers (their 6 cm tall plates
    #: reach the table before they reach round the peg).
    pick_pitch: float = 1.5708  # rad (90 deg)
    peg: str = "peg"
    socket: str = "socket"
    peg_grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.012)  # right TCP - peg centre
    socket_grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.012)  # left TCP - socket c.
    peg_half_length: float = 0.06  # m, centre to end of the peg along its long (x) axis
    max_level: float = 0.3  # rad, largest pitch correction levelling a tilted object per phase
    lift: float = 0.1  # m straight up after grasping
    meet: tuple[float, float, float] = (0.0, 0.5, 0.15)  # point between the two objects (m)
    socket_distance: float = 0.05  # m from the meeting point to the socket centre (left side)
    # Peg end (the one facing the socket) from the socket centre along the socket axis (m): the
    # socket is 0.06 deep from its centre, the pin reaches to 0.04.
    align_end: float = 0.1  # aligned on one line, the peg end outside the socket mouth
    enter_end: float = 0.07  # just outside the mouth, re-aimed from a fresh measurement
    insert_end: float = 0.035  # pushed in against the pin
    approach_steps: int = 100
    descend_steps: int = 40
    grasp_steps: int = 30
    lift_steps: int = 30
    align_steps: int = 70
    enter_steps: int = 30
    insert_steps: int = 40
    press_steps: int = 15  # each press re-measures and pushes the peg end back to insert_end
    press_repeats: int = 3


def _yaw(quat: np.ndarray) -> float:
    """Heading (rad) of an object's x axis from its quaternion ``[w, x, y, z]``."""
    r = quat_to_mat(quat)
    return math.atan2(r[1, 0], r[0, 0])


def _axis(quat: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """The object's x axis (world), signed to point along ``towards``."""
    a = quat_to_mat(quat)[:, 0]
    return a if float(a @ towards) >= 0 else -a


def _wrap_half_pi(angle: float) -> float:
    """``angle`` modulo pi, in (-pi/2, pi/2]: a two-finger grasp is symmetric under pi turns."""
    return angle - math.pi * math.ceil(angle / math.pi - 0.5)


def insertion_phases(script: InsertionScript) -> list[Phase]:
    """Phases of the insertion script.

    Grasps straight down, rolled so that the fingers close across the object's long axis:
    for a downward tool the roll turns the fingers about the vertical, and with
    ``roll = aim_yaw - object_yaw`` (mod pi) the object ends up held along the aiming direction;
    when the arm is later aimed at the meeting point with zero roll, both objects lie along the
    line joining the arms. The align / enter / insert / press phases move the peg's leading end
    (its centre + ``peg_half_length`` along its axis, from the measured pose) onto the socket's
    axis (from the socket's measured pose), each from a fresh measurement; align and enter also
    level both objects (:func:`_levelling`).
    """
    s = script
    meet = np.asarray(s.meet)
    up = np.array([0.0, 0.0, s.hover])
    lift = np.array([0.0, 0.0, s.lift])
    holds = {
        "left": (s.socket, np.asarray(s.socket_grasp_offset)),
        "right": (s.peg, np.asarray(s.peg_grasp_offset)),
    }

    def at(position: np.ndarray, roll: float = 0.0, gripper: float | None = None) -> ArmGoal:
        return ArmGoal(position, s.pick_pitch, roll, gripper)

    def grasp_roll(ctx: PlanContext, arm: str, obj: str, position: np.ndarray) -> float:
        aim = ctx.arms[arm].aim_yaw(position) + _root_yaw(ctx.arms[arm])
        return _wrap_half_pi(aim - _yaw(ctx.objects[obj][3:7]))

    def approach(ctx: PlanContext) -> dict[str, ArmGoal]:
        out = {}
        for k, (obj, offset) in holds.items():
            target = ctx.position(obj) + offset + up
            roll = grasp_roll(ctx, k, obj, target)
            out[k] = at(target, roll, ctx.arms[k].gripper_open)
        return out

    def descend(ctx: PlanContext) -> dict[str, ArmGoal]:
        out = {}
        for k, (obj, offset) in holds.items():
            target = ctx.position(obj) + offset
            out[k] = at(target, grasp_roll(ctx, k, obj, target))
        return out

    def grasp(ctx: PlanContext) -> dict[str, ArmGoal]:
        return {k: ArmGoal(gripper=ctx.arms[k].gripper_closed) for k in holds}

    def lift_(ctx: PlanContext) -> dict[str, ArmGoal]:
        return {k: ArmGoal(ctx.commanded[k].position + lift) for k in holds}

    def place(end_distance: float, level: bool):
        """Socket centre to its spot; the peg end ``end_distance`` out along the socket axis,
        from the measured poses. ``level``: first level both objects (:func:`_levelling`) - only
        while the peg is still outside the socket (turning a hand with the peg inside would
        lever the two apart)."""

        def plan(ctx: PlanContext) -> dict[str, ArmGoal]:
            out_left = _outward(ctx.arms["left"], meet)
            out_right = _outward(ctx.arms["right"], meet)
            quat = {k: ctx.objects[obj][3:7] for k, (obj, _o) in holds.items()}
            limit = s.max_level if level else 0.0
            tilt = {k: _levelling(ctx.arms[k], ctx.commanded[k], quat[k], limit) for k in holds}
            # where the socket centre / the peg end are relative to the commanded hands, and
            # where they will be once levelled about the (commanded) tool point
            socket = ctx.in_commanded_hand("left", ctx.position(s.socket))
            socket = tilt["left"].moved(ctx.commanded["left"].position, socket)
            peg_axis = _axis(quat["right"], out_left)
            peg_end = ctx.in_commanded_hand(
                "right", ctx.position(s.peg) + peg_axis * s.peg_half_length
            )
            peg_end = tilt["right"].moved(ctx.commanded["right"].position, peg_end)
            axis = tilt["left"].rotation @ _axis(quat["left"], out_right)
            socket_want = meet + out_left * s.socket_distance
            peg_end_want = socket_want + axis * end_distance
            left, right = ctx.commanded["left"], ctx.commanded["right"]
            return {
                "left": ArmGoal(
                    left.position + socket_want - socket, left.pitch + tilt["left"].pitch, 0.0
                ),
                "right": ArmGoal(
                    right.position + peg_end_want - peg_end, right.pitch + tilt["right"].pitch, 0.0
                ),
            }

        return plan

    return [
        Phase("approach", s.approach_steps, approach),
        Phase("descend", s.descend_steps, descend, precise=True),
        Phase("grasp", s.grasp_steps, grasp, precise=True),
        Phase("lift", s.lift_steps, lift_),
        Phase("align", s.align_steps, place(s.align_end, True)),
        Phase("enter", s.enter_steps, place(s.enter_end, True), precise=True),
        Phase("insert", s.insert_steps, place(s.insert_end, False), precise=True),
    ] + [
        Phase("press", s.press_steps, place(s.insert_end, False), precise=True)
        for _ in range(int(s.press_repeats))
    ]


@dataclass(frozen=True)
class _Level:
    """A pitch change of the tool and the world rotation it applies about the tool point."""

    pitch: float
    rotation: np.ndarray

    def moved(self, pivot: np.ndarray, point: np.ndarray) -> np.ndarray:
        """Where ``point`` (held in the hand) goes when the hand turns about ``pivot``."""
        return pivot + self.rotation @ (point - pivot)


def _levelling(arm: ArmHandle, command: ToolCommand, quat: np.ndarray, limit: float) -> _Level:
    """The tool pitch change that brings a held object's long (x) axis back to horizontal.

    A light object slips and turns in a two-finger grasp about the fingers' closing axis, which is
    the tool's y axis ``u``; a pitch change ``delta`` turns the tool (and the object) about ``u``
    (roll is zero here: ``R Ry(delta) = Rot(u, delta) R``). The axis ``a`` changes its height at
    the rate ``(u x a)_z`` per radian, so ``delta = -asin(a_z) / (u x a)_z`` (linearised, clipped
    to ``limit``; the next phase measures again).
    """
    r = arm.aimed(command.position, command.pitch, command.roll).rotation
    u = r[:, 1]
    a = quat_to_mat(quat)[:, 0]
    rate = float(np.cross(u, a)[2])
    if limit <= 0 or abs(rate) < 0.5:  # off, or the axis is not across u: pitch cannot level it
        return _Level(0.0, np.eye(3))
    delta = float(np.clip(-math.asin(max(-1.0, min(1.0, a[2]))) / rate, -limit, limit))
    return _Level(delta, axis_angle_to_mat(u * delta))


def _root_yaw(arm: ArmHandle) -> float:
    """Heading (rad) of the arm base's x axis in the world."""
    w = arm.kin.root_in_world
    return math.atan2(w[1, 0], w[0, 0])


#: Task name -> (script class, phase builder).
SCRIPTS: dict[str, tuple[type[_ScriptBase], Any]] = {
    "transfer_cube": (TransferCubeScript, transfer_cube_phases),
    "insertion": (InsertionScript, insertion_phases),
}
