"""The safety layer between every command source and every robot (pure Python / numpy).

Per control tick, for a joint-space target ``a`` and the previous command ``c`` (what was last sent,
the continuity anchor), :meth:`SafetyLayer.filter` returns the command to send:

1. non-finite ``a`` -> rejected: the robot holds (``c`` is returned), reason ``non_finite``;
2. ``a' = clip(a, lower, upper)``                      (position limits, reason ``position_limit``);
3. ``c' = c + clip(a' - c, -s, s)``                     (per-tick step cap, reason ``step_limit``)
   with ``s_i = max_velocity_i * dt`` (rad or unit per tick), tightened to ``max_joint_step`` for
   the rad joints when that is set;
4. ``clip(c', lower, upper)`` once more, so a command never leaves the limits even when the anchor
   did (e.g. a measured start pose slightly outside them).

End-effector targets are clamped to an axis-aligned workspace box (:class:`WorkspaceBox`, reason
``workspace``) and twists to maximum linear / angular speeds (:class:`TwistLimiter`,
``twist_limit``) before inverse kinematics; the joint targets IK produces then pass through the
same :class:`SafetyLayer`.

:class:`Watchdog` holds the robot when no fresh command arrived for ``timeout`` seconds,
:class:`EStop` freezes it, and :class:`Counters` counts every clamp and reject by reason.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diffog_ros.robots.config import RobotConfig

# Reasons (the diagnostics keys are "clamp.<reason>" and "reject.<reason>").
NON_FINITE = "non_finite"
POSITION_LIMIT = "position_limit"
STEP_LIMIT = "step_limit"
WORKSPACE = "workspace"
TWIST_LIMIT = "twist_limit"


class Counters:
    """Thread-safe event counters keyed by ``<group>.<reason>``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        if n <= 0:
            return
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def get(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def total(self, prefix: str) -> int:
        with self._lock:
            return sum(v for k, v in self._counts.items() if k.startswith(prefix))


class ThrottledLog:
    """Log a message at most once per ``period`` seconds per key (with a suppressed count)."""

    def __init__(self, logger: logging.Logger, period: float = 2.0) -> None:
        self._logger = logger
        self._period = period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, level: int, key: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            skipped = self._suppressed.pop(key, 0)
            self._last[key] = now
        if skipped:
            message = f"{message} (+{skipped} similar suppressed)"
        self._logger.log(level, message)


@dataclass(frozen=True)
class SafetyResult:
    """The command to send and which safety rules changed it."""

    command: np.ndarray
    rejected: str | None  # reason when the target was refused (the command is the hold)
    clamped: tuple[str, ...]  # clamp reasons applied (subset of position_limit, step_limit)
    clamped_joints: tuple[str, ...]  # names of the joints that were changed


class SafetyLayer:
    """Position limits and per-tick step caps for joint-space targets (see module docstring)."""

    def __init__(
        self,
        names: Sequence[str],
        lower: Sequence[float],
        upper: Sequence[float],
        max_velocity: Sequence[float],
        units: Sequence[str],
        dt: float,
        max_joint_step: float | None = None,
    ) -> None:
        self.names = tuple(names)
        n = len(self.names)
        self.lower = np.asarray(lower, dtype=np.float64).copy()
        self.upper = np.asarray(upper, dtype=np.float64).copy()
        self.max_velocity = np.asarray(max_velocity, dtype=np.float64).copy()
        self.units = tuple(units)
        for arr, label in (
            (self.lower, "lower"),
            (self.upper, "upper"),
            (self.max_velocity, "max_velocity"),
        ):
            if arr.shape != (n,):
                raise ValueError(f"{label} must have {n} values (one per joint), got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{label} must be finite")
        if len(self.units) != n:
            raise ValueError(f"units must have {n} values, got {len(self.units)}")
        if np.any(self.lower >= self.upper):
            raise ValueError("lower must be < upper for every joint")
        if np.any(self.max_velocity <= 0):
            raise ValueError("max_velocity must be > 0 for every joint")
        self._rad = np.array([u == "rad" for u in self.units])
        self._dt = 0.0
        self._max_joint_step: float | None = None
        self.configure(dt=dt, max_joint_step=max_joint_step)

    @classmethod
    def from_config(
        cls, config: RobotConfig, dt: float, max_joint_step: float | None = None
    ) -> SafetyLayer:
        return cls(
            config.names,
            config.lower,
            config.upper,
            config.max_velocity,
            config.units,
            dt=dt,
            max_joint_step=max_joint_step,
        )

    # ----------------------------------------------------------------- settings
    def configure(self, dt: float | None = None, max_joint_step: float | None = -1.0) -> None:
        """Change ``dt`` and/or ``max_joint_step`` (``None`` or 0 disables it; -1 keeps it)."""
        if dt is not None:
            if not (math.isfinite(dt) and dt > 0):
                raise ValueError(f"dt must be finite and > 0, got {dt!r}")
            self._dt = float(dt)
        if max_joint_step is None or max_joint_step == 0:
            self._max_joint_step = None
        elif max_joint_step != -1.0:
            if not (math.isfinite(max_joint_step) and max_joint_step > 0):
                raise ValueError(f"max_joint_step must be finite and > 0, got {max_joint_step!r}")
            self._max_joint_step = float(max_joint_step)
        caps = self.max_velocity * self._dt
        if self._max_joint_step is not None:
            caps = np.where(self._rad, np.minimum(caps, self._max_joint_step), caps)
        self._step_cap = caps

    @property
    def dt(self) -> float:
        return self._dt

    @property
    def max_joint_step(self) -> float | None:
        return self._max_joint_step

    @property
    def step_cap(self) -> np.ndarray:
        """Per-joint maximum change per tick (a copy)."""
        return self._step_cap.copy()

    # ----------------------------------------------------------------- filtering
    def within_limits(self, q: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(q)) and np.all(q >= self.lower) and np.all(q <= self.upper))

    def clip(self, q: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)

    def filter(self, target: np.ndarray, previous: np.ndarray) -> SafetyResult:
        """The command to send this tick for ``target`` given the ``previous`` command."""
        prev = np.asarray(previous, dtype=np.float64)
        a = np.asarray(target, dtype=np.float64)
        n = len(self.names)
        if prev.shape != (n,) or not np.all(np.isfinite(prev)):
            raise ValueError(f"previous command must be {n} finite values, got {prev!r}")
        if a.shape != (n,):
            raise ValueError(f"target must have shape ({n},), got {a.shape}")
        hold = self.clip(prev)
        if not np.all(np.isfinite(a)):
            bad = tuple(self.names[i] for i in np.flatnonzero(~np.isfinite(a)))
            return SafetyResult(hold, NON_FINITE, (), bad)
        reasons: list[str] = []
        changed = np.zeros(n, dtype=bool)
        a_clip = np.clip(a, self.lower, self.upper)
        pos_hit = a_clip != a
        if pos_hit.any():
            reasons.append(POSITION_LIMIT)
            changed |= pos_hit
        delta = a_clip - hold
        capped = np.clip(delta, -self._step_cap, self._step_cap)
        step_hit = capped != delta
        if step_hit.any():
            reasons.append(STEP_LIMIT)
            changed |= step_hit
        command = np.clip(hold + capped, self.lower, self.upper)
        joints = tuple(self.names[i] for i in np.flatnonzero(changed))
        return SafetyResult(command, None, tuple(reasons), joints)


class WorkspaceBox:
    """Axis-aligned box (m) that end-effector position targets are clamped into."""

    def __init__(self, minimum: Sequence[float], maximum: Sequence[float]) -> None:
        self.min = np.asarray(minimum, dtype=np.float64).copy()
        self.max = np.asarray(maximum, dtype=np.float64).copy()
        if self.min.shape != (3,) or self.max.shape != (3,):
            raise ValueError("workspace min and max must be 3 values each (x, y, z in m)")
        if not (np.all(np.isfinite(self.min)) and np.all(np.isfinite(self.max))):
            raise ValueError("workspace bounds must be finite")
        if np.any(self.min >= self.max):
            raise ValueError(f"workspace min {self.min.tolist()} must be < max {self.max.tolist()}")

    def contains(self, p: np.ndarray, tol: float = 0.0) -> bool:
        p = np.asarray(p, dtype=np.float64)
        return bool(np.all(p >= self.min - tol) and np.all(p <= self.max + tol))

    def clamp(self, p: np.ndarray) -> tuple[np.ndarray, bool]:
        """The clamped position and whether clamping changed it."""
        p = np.asarray(p, dtype=np.float64)
        q = np.clip(p, self.min, self.max)
        return q, bool(np.any(q != p))


class TwistLimiter:
    """Scale a twist so that ``|v| <= max_linear`` (m/s) and ``|w| <= max_angular`` (rad/s)."""

    def __init__(self, max_linear: float, max_angular: float) -> None:
        if not (math.isfinite(max_linear) and max_linear > 0):
            raise ValueError(f"max_linear_speed must be > 0, got {max_linear!r}")
        if not (math.isfinite(max_angular) and max_angular > 0):
            raise ValueError(f"max_angular_speed must be > 0, got {max_angular!r}")
        self.max_linear = float(max_linear)
        self.max_angular = float(max_angular)

    def limit(self, linear: np.ndarray, angular: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        v = np.asarray(linear, dtype=np.float64)
        w = np.asarray(angular, dtype=np.float64)
        hit = False
        nv, nw = float(np.linalg.norm(v)), float(np.linalg.norm(w))
        if nv > self.max_linear:
            v, hit = v * (self.max_linear / nv), True
        if nw > self.max_angular:
            w, hit = w * (self.max_angular / nw), True
        return v, w, hit


class Watchdog:
    """Expires when no fresh command was fed for ``timeout`` seconds.

    ``check(now)`` returns True while the last command is fresh; the first check after it expires
    counts one trip. Feeding again re-arms it.
    """

    def __init__(self, timeout: float) -> None:
        self.set_timeout(timeout)
        self._last: float | None = None
        self._tripped = False
        self.trips = 0

    def set_timeout(self, timeout: float) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"watchdog timeout must be finite and > 0, got {timeout!r}")
        self.timeout = float(timeout)

    def feed(self, now: float) -> None:
        self._last = now
        self._tripped = False

    def clear(self) -> None:
        """Forget the last command (nothing is fresh until the next feed)."""
        self._last = None
        self._tripped = False

    @property
    def armed(self) -> bool:
        return self._last is not None

    @property
    def tripped(self) -> bool:
        return self._tripped

    def check(self, now: float) -> bool:
        """True if a command was fed less than ``timeout`` ago."""
        if self._last is None:
            return False
        if now - self._last <= self.timeout:
            return True
        if not self._tripped:
            self._tripped = True
            self.trips += 1
        self._last = None
        return False


class EStop:
    """Software e-stop state (thread-safe). While engaged the robot holds and inputs are ignored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = False
        self.engagements = 0

    @property
    def active(self) -> bool:
        with self._lock:
            return self._active

    def set(self, active: bool) -> bool:
        """Engage (True) or release (False); returns whether the state changed."""
        with self._lock:
            changed = self._active != bool(active)
            self._active = bool(active)
            if changed and self._active:
                self.engagements += 1
            return changed


def count_reasons(counters: Counters, group: str, reasons: Iterable[str]) -> None:
    for r in reasons:
        counters.add(f"{group}.{r}")


def format_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"
