"""The controller's core: one tick = read state, pick a target, apply safety, send (no rclpy).

:class:`ControlLoop` owns the robot, the :class:`~.safety.SafetyLayer`, the chunk queue
(:class:`~.scheduler.ChunkScheduler`), the teleop inputs, the watchdogs and the e-stop. Inputs
arrive from any thread (``submit_*``, ``set_estop``, ``apply_settings``); ``tick`` runs on the
control thread once per period and returns exactly what was sent.

Phases: ``idle`` -> ``start()`` -> ``starting`` (synchronised move to the start pose) ->
``running`` -> ``request_stop()`` -> ``stopping`` (move to the sleep pose) -> ``stopped``.

Per tick in ``running`` (e-stop first, then by mode):

* e-stop engaged: hold (repeat the last command); every input is refused (``reject.estop``);
* ``policy``: the scheduler's due step (late steps skipped, ``steps.skipped_late``); the queue is
  dropped when no chunk arrived for ``watchdog_timeout`` (``watchdog.trips``); nothing due -> hold;
* ``teleop``: joint targets (``teleop/joint_command``) and end-effector twist / pose targets while
  fresh, plus a persistent gripper target (joy buttons); stale -> hold;
* ``hold``: hold.

Every target then passes the safety layer (non-finite refused, position clamp, step cap); every
clamp and refusal is counted by reason and logged (throttled). Settings changes are staged and
applied at the start of the next tick, never mid-tick.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from diffog_ros.robots.interface import Robot, RobotState
from diffog_ros.robots.kinematics import quat_to_mat
from diffog_ros.robots.motion import SafeMove
from diffog_ros.robots.safety import (
    NON_FINITE,
    Counters,
    EStop,
    SafetyLayer,
    ThrottledLog,
    Watchdog,
)
from diffog_ros.robots.scheduler import ChunkError, ChunkScheduler, check_names, make_chunk

_log = logging.getLogger(__name__)

MODES = ("policy", "teleop", "hold")

# Reject reasons beyond the scheduler's (names, non_finite, shape, timing).
NOT_READY = "not_ready"
ESTOP = "estop"
MODE = "mode"
UNSUPPORTED = "unsupported"
FRAME = "frame"


@dataclass(frozen=True)
class LoopSettings:
    """Run-time tunables (validated by :meth:`validate`)."""

    mode: str = "policy"
    n_action_steps: int = 8
    watchdog_timeout: float = 0.5  # s
    max_joint_step: float = 0.0  # rad per tick; 0 = only the velocity limit

    def validate(self, dt: float) -> None:
        """Raise ``ValueError`` naming the offending setting."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if isinstance(self.n_action_steps, bool) or not isinstance(self.n_action_steps, int):
            raise ValueError(f"n_action_steps must be an int, got {self.n_action_steps!r}")
        if self.n_action_steps < 1:
            raise ValueError(f"n_action_steps must be >= 1, got {self.n_action_steps}")
        w = self.watchdog_timeout
        if not (math.isfinite(w) and w >= 2 * dt):
            raise ValueError(
                f"watchdog_timeout must be >= two control periods ({2 * dt:.4f} s), got {w!r}"
            )
        s = self.max_joint_step
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"max_joint_step must be >= 0 (0 disables it), got {s!r}")


@dataclass(frozen=True)
class TickResult:
    stamp: float  # the ``now`` the tick ran at (s)
    state: RobotState  # measured at the start of the tick
    command: np.ndarray  # exactly what was sent
    source: str  # start | stop | policy | teleop | hold | estop
    phase: str
    ee_position: np.ndarray | None = None  # measured end-effector pose (single arm)
    ee_rotation: np.ndarray | None = None


class RateMonitor:
    """Achieved loop rate over a sliding window, overruns and late ticks."""

    def __init__(self, dt: float, window: int = 100) -> None:
        self.dt = dt
        self._starts: deque[float] = deque(maxlen=window + 1)
        self.ticks = 0
        self.overruns = 0  # tick took longer than one period
        self.late = 0  # tick started more than 1.5 periods after the previous one
        self.max_duration = 0.0
        self._first: float | None = None

    def record(self, start: float, end: float) -> None:
        if self._starts and start - self._starts[-1] > 1.5 * self.dt:
            self.late += 1
        self._starts.append(start)
        self.ticks += 1
        if self._first is None:
            self._first = start
        duration = end - start
        self.max_duration = max(self.max_duration, duration)
        if duration > self.dt:
            self.overruns += 1

    def rate(self) -> float:
        """Ticks per second over the window (0 before two ticks)."""
        if len(self._starts) < 2:
            return 0.0
        span = self._starts[-1] - self._starts[0]
        return (len(self._starts) - 1) / span if span > 0 else 0.0

    def mean_rate(self) -> float:
        if self._first is None or self.ticks < 2:
            return 0.0
        span = self._starts[-1] - self._first
        return (self.ticks - 1) / span if span > 0 else 0.0


class ControlLoop:
    """See module docstring. ``dt`` is the control period (s)."""

    def __init__(
        self,
        robot: Robot,
        dt: float,
        settings: LoopSettings | None = None,
        *,
        logger: logging.Logger | None = None,
    ) -> None:
        settings = settings or LoopSettings()
        settings.validate(dt)
        self.robot = robot
        self.config = robot.config
        self.dt = float(dt)
        self.names = robot.names
        self.safety = SafetyLayer.from_config(robot.config, dt, settings.max_joint_step or None)
        self.counters = Counters()
        self.estop = EStop()
        self.scheduler = ChunkScheduler()
        self._settings = settings
        self._pending: LoopSettings | None = None
        self._policy_wd = Watchdog(settings.watchdog_timeout)
        self._joint_wd = Watchdog(settings.watchdog_timeout)
        self._ee_wd = Watchdog(settings.watchdog_timeout)
        self._logger = logger or _log
        self._throttled = ThrottledLog(self._logger)
        self._lock = threading.RLock()
        self._phase = "idle"
        self._move: SafeMove | None = None
        self._previous: np.ndarray | None = None
        self._joint_target: np.ndarray | None = None  # NaN = not commanded
        self._gripper_target: float | None = None
        self._move_started = 0.0
        ee = getattr(robot, "end_effector", None)
        self.end_effector = ee
        if ee is not None:
            from diffog_ros.robots.single_arm import EndEffectorTeleop

            self.ee_teleop: EndEffectorTeleop | None = EndEffectorTeleop(ee)
        else:
            self.ee_teleop = None

    # ------------------------------------------------------------------ state
    @property
    def phase(self) -> str:
        with self._lock:
            return self._phase

    @property
    def settings(self) -> LoopSettings:
        with self._lock:
            return self._pending or self._settings

    @property
    def previous_command(self) -> np.ndarray | None:
        with self._lock:
            return None if self._previous is None else self._previous.copy()

    def _reject(self, reason: str, what: str, detail: str) -> str:
        self.counters.add(f"reject.{reason}")
        level = logging.DEBUG if reason in (MODE, NOT_READY) else logging.WARNING
        self._throttled(level, f"reject.{what}.{reason}", f"rejected {what} ({reason}): {detail}")
        return reason

    def _clear_inputs(self) -> None:
        dropped = self.scheduler.clear()
        if dropped:
            self.counters.add("steps.dropped", dropped)
        self._joint_target = None
        self._gripper_target = None
        if self.ee_teleop is not None:
            self.ee_teleop.clear()
        self._policy_wd.clear()
        self._joint_wd.clear()
        self._ee_wd.clear()

    def _gate(self, what: str, mode: str) -> str | None:
        """Common checks for every input; returns a reject reason or None."""
        if self._phase != "running":
            return self._reject(NOT_READY, what, f"controller is {self._phase}")
        if self.estop.active:
            return self._reject(ESTOP, what, "e-stop engaged")
        active_mode = self._settings.mode
        if active_mode != mode:
            return self._reject(MODE, what, f"mode is {active_mode!r}, needs {mode!r}")
        return None

    # ------------------------------------------------------------------ inputs
    def submit_chunk(
        self,
        names: Sequence[str],
        stamp: float,
        offsets: Sequence[float],
        positions: Sequence[Sequence[float]],
        now: float,
    ) -> str | None:
        """Queue an action chunk; returns None if accepted, else the reject reason."""
        with self._lock:
            self.counters.add("chunks.received")
            reason = self._gate("chunk", "policy")
            if reason:
                return reason
            try:
                chunk = make_chunk(names, self.names, stamp, offsets, positions)
            except ChunkError as exc:
                # a malformed chunk means the producer is broken: stop following its plan
                self._clear_inputs()
                return self._reject(exc.reason, "chunk", str(exc))
            dropped = self.scheduler.load(chunk, self._settings.n_action_steps, now, self.dt)
            if dropped:
                self.counters.add("steps.replaced", dropped)
            self._policy_wd.feed(now)
            self.counters.add("chunks.accepted")
            return None

    def submit_joint_command(
        self, names: Sequence[str], positions: Sequence[float], now: float
    ) -> str | None:
        """Teleop joint targets (any subset of the joint names)."""
        with self._lock:
            self.counters.add("teleop.joint_commands")
            reason = self._gate("joint_command", "teleop")
            if reason:
                return reason
            try:
                idx = check_names(names, self.names, allow_subset=True)
            except ChunkError as exc:
                self._joint_target = None
                return self._reject(exc.reason, "joint_command", str(exc))
            if len(positions) != len(idx):
                self._joint_target = None
                return self._reject(
                    "shape", "joint_command", f"{len(names)} names but {len(positions)} positions"
                )
            q = np.asarray(positions, dtype=np.float64)
            if not np.all(np.isfinite(q)):
                self._joint_target = None
                return self._reject(NON_FINITE, "joint_command", "non-finite position")
            target = np.full(len(self.names), np.nan)
            target[idx] = q
            self._joint_target = target
            self._joint_wd.feed(now)
            return None

    def submit_twist(
        self, frame_id: str, linear: Sequence[float], angular: Sequence[float], now: float
    ) -> str | None:
        """End-effector twist (m/s, rad/s) in the robot's base frame."""
        with self._lock:
            self.counters.add("teleop.twists")
            if self.ee_teleop is None:
                return self._reject(UNSUPPORTED, "twist", "this backend has no end effector")
            reason = self._gate("twist", "teleop")
            if reason:
                return reason
            if frame_id not in ("", self.end_effector.frame_id):
                return self._reject(
                    FRAME, "twist", f"frame {frame_id!r}, expected {self.end_effector.frame_id!r}"
                )
            v = np.asarray(linear, dtype=np.float64)
            w = np.asarray(angular, dtype=np.float64)
            if not (np.all(np.isfinite(v)) and np.all(np.isfinite(w))):
                self.ee_teleop.clear()
                return self._reject(NON_FINITE, "twist", "non-finite twist")
            if self.ee_teleop.set_twist(v, w):
                self.counters.add("clamp.twist_limit")
            self._ee_wd.feed(now)
            return None

    def submit_pose(
        self, frame_id: str, position: Sequence[float], quat_wxyz: Sequence[float], now: float
    ) -> str | None:
        """End-effector pose target in the robot's base frame."""
        with self._lock:
            self.counters.add("teleop.poses")
            if self.ee_teleop is None:
                return self._reject(UNSUPPORTED, "pose", "this backend has no end effector")
            reason = self._gate("pose", "teleop")
            if reason:
                return reason
            if frame_id not in ("", self.end_effector.frame_id):
                return self._reject(
                    FRAME, "pose", f"frame {frame_id!r}, expected {self.end_effector.frame_id!r}"
                )
            p = np.asarray(position, dtype=np.float64)
            q = np.asarray(quat_wxyz, dtype=np.float64)
            if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
                self.ee_teleop.clear()
                return self._reject(NON_FINITE, "pose", "non-finite pose")
            if np.linalg.norm(q) < 1e-6:
                return self._reject("shape", "pose", "zero quaternion")
            self.ee_teleop.set_pose(p, quat_to_mat(q))
            self._ee_wd.feed(now)
            return None

    def submit_gripper(self, value: float, now: float) -> str | None:
        """A persistent gripper target (normalised), e.g. from joy buttons (single gripper only)."""
        with self._lock:
            self.counters.add("teleop.gripper")
            ee = self.end_effector
            if ee is None or ee.gripper_idx is None:
                return self._reject(UNSUPPORTED, "gripper", "no single gripper on this backend")
            reason = self._gate("gripper", "teleop")
            if reason:
                return reason
            if not math.isfinite(value):
                return self._reject(NON_FINITE, "gripper", "non-finite gripper target")
            self._gripper_target = float(value)
            return None

    def set_estop(self, active: bool) -> bool:
        """Engage / release the e-stop; returns whether the state changed."""
        with self._lock:
            changed = self.estop.set(active)
            if changed and active:
                self._clear_inputs()
                self._logger.warning("e-stop ENGAGED: holding, every command is ignored")
            elif changed:
                self._logger.warning("e-stop released: motion resumes on the next fresh command")
            return changed

    def apply_settings(self, settings: LoopSettings) -> None:
        """Stage validated settings; they take effect at the start of the next tick."""
        settings.validate(self.dt)
        with self._lock:
            self._pending = settings

    def _apply_pending(self) -> None:
        new, old = self._pending, self._settings
        if new is None:
            return
        self._pending = None
        if new == old:
            return
        if new.mode != old.mode:
            self._clear_inputs()
        for wd in (self._policy_wd, self._joint_wd, self._ee_wd):
            wd.set_timeout(new.watchdog_timeout)
        self.safety.configure(max_joint_step=new.max_joint_step or None)
        self._settings = new
        self._logger.info(f"settings applied: {old} -> {new}")

    # ------------------------------------------------------------------ lifecycle
    def start(self, now: float) -> None:
        """Anchor on the measured state and begin the move to the start pose."""
        with self._lock:
            state = self.robot.read_state()
            pos = np.asarray(state.position, dtype=np.float64)
            if not np.all(np.isfinite(pos)):
                raise RuntimeError(f"measured state is not finite: {pos.tolist()}")
            anchor = self.safety.clip(pos)
            outside = [self.names[i] for i in np.flatnonzero(anchor != pos)]
            if outside:
                self._logger.warning(f"measured position outside the limits at {outside}; clamped")
            self._previous = anchor
            self._move = self._plan(anchor, self.config.start_pose)
            self._phase = "starting"
            self._move_started = now

    def _plan(self, start: np.ndarray, goal: np.ndarray) -> SafeMove:
        speeds = self.config.safe_motion.velocity_fraction * self.config.max_velocity
        move = SafeMove(start, goal, speeds, self.dt)
        if move.duration > self.config.safe_motion.timeout:
            self._logger.warning(
                f"safe move takes {move.duration:.1f} s (> safe_motion.timeout "
                f"{self.config.safe_motion.timeout} s)"
            )
        return move

    def request_stop(self) -> None:
        """Begin the safe shutdown move (a second request stops holding where it is)."""
        with self._lock:
            if self._phase in ("starting", "running"):
                self._clear_inputs()
                self._move = self._plan(self._previous, self.config.sleep_pose)
                self._phase = "stopping"
                self._logger.info(
                    f"safe shutdown: moving to the sleep pose ({self._move.duration:.1f} s)"
                )
            elif self._phase == "stopping":
                self._phase = "stopped"
                self._logger.warning("second stop request: holding where the arm is")
            elif self._phase == "idle":
                self._phase = "stopped"

    def reset(self, seed: int | None) -> None:
        """Reset a simulated robot (objects from ``seed``) and re-anchor; inputs are dropped."""
        reset = getattr(self.robot, "reset", None)
        if reset is None:
            raise RuntimeError("this backend cannot be reset")
        with self._lock:
            self._clear_inputs()
            reset(seed)
            self._previous = self.safety.clip(self.robot.last_command)

    # ------------------------------------------------------------------ the tick
    def _teleop_target(self, now: float) -> np.ndarray | None:
        target = self._previous.copy()
        active = False
        if self._joint_target is not None:
            trips = self._joint_wd.trips
            if self._joint_wd.check(now):
                mask = ~np.isnan(self._joint_target)
                target[mask] = self._joint_target[mask]
                active = True
            else:
                self._joint_target = None
                self._note_trip(self._joint_wd, trips, "teleop/joint_command")
        if self.ee_teleop is not None and self.ee_teleop.active:
            trips = self._ee_wd.trips
            if self._ee_wd.check(now):
                ee_target, reasons = self.ee_teleop.target(self._previous, self.dt)
                idx = list(self.end_effector.arm_idx)
                target[idx] = ee_target[idx]
                for r in reasons:
                    self.counters.add(f"clamp.{r}")
                active = True
            else:
                self.ee_teleop.clear()
                self._note_trip(self._ee_wd, trips, "teleop twist/pose")
        if self._gripper_target is not None:
            target[self.end_effector.gripper_idx] = self._gripper_target
            active = True
        return target if active else None

    def _note_trip(self, wd: Watchdog, before: int, what: str) -> None:
        if wd.trips > before:
            self.counters.add("watchdog.trips")
            self._throttled(
                logging.WARNING,
                f"watchdog.{what}",
                f"watchdog: no fresh {what} for {wd.timeout:.3f} s -> holding",
            )

    def _choose(self, now: float) -> tuple[np.ndarray | None, str]:
        if self._phase in ("starting", "stopping"):
            target = self._move.next()
            source = "start" if self._phase == "starting" else "stop"
            if self._move.done:
                self._phase = "running" if self._phase == "starting" else "stopped"
                self._logger.info(f"safe {source} move complete")
            return target, source
        if self._phase != "running":
            return None, "hold"
        if self.estop.active:
            return None, "estop"
        mode = self._settings.mode
        if mode == "policy":
            trips = self._policy_wd.trips
            if not self._policy_wd.check(now) and len(self.scheduler):
                self.counters.add("steps.dropped", self.scheduler.clear())
            self._note_trip(self._policy_wd, trips, "action_chunk")
            action, skipped = self.scheduler.pop(now, self.dt)
            if skipped:
                self.counters.add("steps.skipped_late", skipped)
                self._throttled(
                    logging.INFO, "late", f"skipped {skipped} chunk step(s) whose time had passed"
                )
            if action is None:
                return None, "hold"
            self.counters.add("steps.executed")
            return action, "policy"
        if mode == "teleop":
            target = self._teleop_target(now)
            return (target, "teleop") if target is not None else (None, "hold")
        return None, "hold"

    def tick(self, now: float) -> TickResult:
        """Run one control period at time ``now`` (s); returns what was sent."""
        with self._lock:
            if self._previous is None:
                raise RuntimeError("ControlLoop.start() must be called before tick()")
            self._apply_pending()
            state = self.robot.read_state()
            target, source = self._choose(now)
            if target is None:
                command = self._previous
                self.counters.add("ticks.hold")
            else:
                result = self.safety.filter(target, self._previous)
                if result.rejected:
                    self.counters.add(f"reject.{result.rejected}")
                    self._throttled(
                        logging.WARNING,
                        "safety.reject",
                        f"safety: refused a {result.rejected} target at {list(result.clamped_joints)}",
                    )
                for r in result.clamped:
                    self.counters.add(f"clamp.{r}")
                if result.clamped:
                    self._throttled(
                        logging.INFO,
                        "safety.clamp." + "+".join(result.clamped),
                        f"safety: {'+'.join(result.clamped)} clamped {list(result.clamped_joints)}",
                    )
                command = result.command
            sent = self.robot.send_command(command)
            self._previous = sent
            self.counters.add("ticks.total")
            ee_p = ee_r = None
            if self.end_effector is not None:
                arm = np.asarray(state.position)[list(self.end_effector.arm_idx)]
                ee_p, ee_r = self.end_effector.kinematics.fk(arm)
            return TickResult(now, state, sent.copy(), source, self._phase, ee_p, ee_r)

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> dict[str, object]:
        with self._lock:
            out: dict[str, object] = {
                "phase": self._phase,
                "mode": self._settings.mode,
                "estop": self.estop.active,
                "queue_length": len(self.scheduler),
                "n_action_steps": self._settings.n_action_steps,
                "watchdog_timeout": self._settings.watchdog_timeout,
                "max_joint_step": self._settings.max_joint_step,
                "step_cap_max": float(np.max(self.safety.step_cap)),
            }
        out.update(self.counters.snapshot())
        return out
