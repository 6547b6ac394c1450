"""A scripted operator: phases of tool goals, executed as joint targets through IK.

A task is a list of :class:`Phase` s. When a phase begins, its planner looks at the scene (object
poses, the arms' commanded and measured tool poses) and returns an :class:`ArmGoal` per arm. A
tool goal is a position (world, m) plus a pitch and a roll; the orientation is always *aimed* from
the arm's base (:meth:`~.arms.ArmHandle.aimed`). During the phase the position, pitch, roll and
gripper each follow a minimum-jerk ramp (:func:`~.geometry.min_jerk`) from their commanded values
to the goal, and every tick the tool pose is converted to joint targets by IK seeded with the
previous tick's solution. Planning at each phase start closes the loop the way a human operator
does by looking: a grasp is aimed at where the object lies now, a hand-over at where the held
object actually is.

The output is the joint-space action (rad, normalised grippers) in the robot config's order,
before any noise or safety filtering.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diffog_ros.robots.scripted.arms import ArmHandle
from diffog_ros.robots.scripted.geometry import Pose, min_jerk

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArmGoal:
    """Where one arm should be at the end of a phase (``None``: keep the current command).

    ``position`` in m (world), ``pitch`` / ``roll`` in rad (see :meth:`ArmHandle.aimed`),
    ``gripper`` normalised.
    """

    position: np.ndarray | None = None
    pitch: float | None = None
    roll: float | None = None
    gripper: float | None = None


@dataclass
class ToolCommand:
    """An arm's commanded tool state."""

    position: np.ndarray
    pitch: float
    roll: float
    gripper: float

    def copy(self) -> ToolCommand:
        return ToolCommand(self.position.copy(), self.pitch, self.roll, self.gripper)

    def towards(self, goal: ArmGoal) -> ToolCommand:
        return ToolCommand(
            self.position.copy() if goal.position is None else np.asarray(goal.position, float),
            self.pitch if goal.pitch is None else float(goal.pitch),
            self.roll if goal.roll is None else float(goal.roll),
            self.gripper if goal.gripper is None else float(goal.gripper),
        )

    def blend(self, end: ToolCommand, s: float) -> ToolCommand:
        """``self + s (end - self)`` in every coordinate."""
        return ToolCommand(
            self.position + s * (end.position - self.position),
            self.pitch + s * (end.pitch - self.pitch),
            self.roll + s * (end.roll - self.roll),
            self.gripper + s * (end.gripper - self.gripper),
        )


@dataclass(frozen=True)
class PlanContext:
    """What a planner sees when its phase begins."""

    step: int
    objects: Mapping[str, np.ndarray]  # name -> [x, y, z, qw, qx, qy, qz] (world)
    commanded: Mapping[str, ToolCommand]  # arm -> the tool state commanded last
    measured: Mapping[str, Pose]  # arm -> tool pose of the measured joints
    arms: Mapping[str, ArmHandle]

    def position(self, obj: str) -> np.ndarray:
        try:
            return np.asarray(self.objects[obj][:3], dtype=np.float64).copy()
        except KeyError:
            raise KeyError(
                f"scene has no object {obj!r} (objects: {sorted(self.objects)})"
            ) from None

    def commanded_pose(self, arm: str) -> Pose:
        c = self.commanded[arm]
        return self.arms[arm].aimed(c.position, c.pitch, c.roll)

    def in_commanded_hand(self, arm: str, point: np.ndarray) -> np.ndarray:
        """Where ``point`` (world), held rigidly by ``arm``, would be if the hand were exactly at
        its commanded pose: ``c + R_c R_m^T (point - m)`` with ``(m, R_m)`` the measured tool
        pose. Corrections planned from it ignore the hand's momentary tracking error and
        teleoperation jitter, which would otherwise be "corrected" and then overshoot."""
        m = self.measured[arm]
        c = self.commanded_pose(arm)
        return c.position + c.rotation @ (m.rotation.T @ (np.asarray(point, float) - m.position))


Planner = Callable[[PlanContext], Mapping[str, ArmGoal]]


@dataclass(frozen=True)
class Phase:
    """``steps`` control ticks moving towards the goals ``plan`` returns at the phase start.

    ``precise`` marks fine work near contact (grasping, handing over, inserting), where a human
    operator steadies the hand; the rollout scales its teleoperation noise down there.
    """

    name: str
    steps: int
    plan: Planner
    precise: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"phase {self.name!r}: steps must be an int >= 1, got {self.steps!r}")


class ScriptedPolicy:
    """Runs :class:`Phase` s tick by tick (see the module docstring).

    ``scene`` returns the current object poses. Call :meth:`reset` with the command the robot
    starts from, then :meth:`act` once per tick with the measured joint positions.
    """

    def __init__(
        self,
        arms: Mapping[str, ArmHandle],
        phases: Sequence[Phase],
        scene: Callable[[], Mapping[str, np.ndarray]],
    ) -> None:
        if not phases:
            raise ValueError("a scripted policy needs at least one phase")
        self.arms = dict(arms)
        self.phases = tuple(phases)
        self._scene = scene
        self._starts = np.cumsum([0] + [p.steps for p in self.phases])
        self._command: np.ndarray | None = None

    @property
    def plan_steps(self) -> int:
        """Ticks until the last phase ends (the policy holds afterwards)."""
        return int(self._starts[-1])

    def schedule(self) -> list[dict[str, object]]:
        """``[{name, start, steps, precise}]`` of the phases (start in ticks)."""
        return [
            {"name": p.name, "start": int(s), "steps": int(p.steps), "precise": p.precise}
            for p, s in zip(self.phases, self._starts, strict=False)
        ]

    def phase_at(self, step: int) -> str:
        """Name of the phase active at ``step`` (``"hold"`` after the last one)."""
        i = int(np.searchsorted(self._starts, step, side="right")) - 1
        return self.phases[i].name if 0 <= i < len(self.phases) else "hold"

    def precise_at(self, step: int) -> bool:
        """Whether ``step`` falls in a ``precise`` phase (the final hold counts as precise)."""
        i = int(np.searchsorted(self._starts, step, side="right")) - 1
        return self.phases[i].precise if 0 <= i < len(self.phases) else True

    @property
    def ik_failures(self) -> int:
        return sum(a.ik_failures for a in self.arms.values())

    def reset(self, command: np.ndarray) -> None:
        """Start from ``command`` (the full action vector the robot holds)."""
        self._command = np.asarray(command, dtype=np.float64).copy()
        self._q: dict[str, np.ndarray] = {}
        self._tool: dict[str, ToolCommand] = {}
        for k, arm in self.arms.items():
            q = arm.arm_joints(self._command)
            pose = arm.pose(q)
            pitch, roll = arm.aim_angles(pose)
            self._q[k] = q
            self._tool[k] = ToolCommand(
                pose.position, pitch, roll, self._command[arm.gripper_index]
            )
            arm.ik_failures = 0
            arm.posture = q.copy()  # the IK's null-space pull: the start posture
        self._segment: dict[str, tuple[ToolCommand, ToolCommand]] = {}
        self._step = 0

    def _begin(self, phase: Phase, measured: np.ndarray) -> None:
        ctx = PlanContext(
            step=self._step,
            objects=self._scene(),
            commanded={k: t.copy() for k, t in self._tool.items()},
            measured={k: a.pose(a.arm_joints(measured)) for k, a in self.arms.items()},
            arms=self.arms,
        )
        goals = phase.plan(ctx)
        unknown = sorted(set(goals) - set(self.arms))
        if unknown:
            raise KeyError(f"phase {phase.name!r} plans for unknown arms {unknown}")
        self._segment = {
            k: (self._tool[k], self._tool[k].towards(goals.get(k, ArmGoal()))) for k in self.arms
        }
        _log.debug("step %d: phase %s", self._step, phase.name)

    def act(self, measured: np.ndarray) -> np.ndarray:
        """The joint-space target for this tick (then advances one tick)."""
        if self._command is None:
            raise RuntimeError("ScriptedPolicy.reset() has not been called")
        i = int(np.searchsorted(self._starts, self._step, side="right")) - 1
        if i < len(self.phases):
            phase = self.phases[i]
            local = self._step - int(self._starts[i])
            if local == 0:
                self._begin(phase, np.asarray(measured, dtype=np.float64))
            s = min_jerk((local + 1) / phase.steps)
            for k, arm in self.arms.items():
                start, end = self._segment[k]
                tool = start.blend(end, s)
                result = arm.solve(arm.aimed(tool.position, tool.pitch, tool.roll), self._q[k])
                self._q[k] = result.q
                self._tool[k] = tool
                self._command[arm.arm_index] = result.q
                self._command[arm.gripper_index] = tool.gripper
        self._step += 1
        return self._command.copy()
