"""Synchronised straight-line joint moves for safe start and safe shutdown (no rclpy).

From ``start`` to ``goal`` with per-joint speed limits ``v_i`` (unit/s), all joints arrive together:
duration ``T = max_i |goal_i - start_i| / v_i`` and ``q(t) = start + min(t / T, 1) (goal - start)``,
sampled once per control tick. No joint ever exceeds its speed limit, so the step cap of the
safety layer is never the binding constraint for these moves.
"""

from __future__ import annotations

import math

import numpy as np


class SafeMove:
    """Waypoints of one synchronised move, one per ``next()`` call (tick of length ``dt``)."""

    def __init__(self, start: np.ndarray, goal: np.ndarray, speeds: np.ndarray, dt: float) -> None:
        self.start = np.asarray(start, dtype=np.float64).copy()
        self.goal = np.asarray(goal, dtype=np.float64).copy()
        v = np.asarray(speeds, dtype=np.float64)
        if self.start.shape != self.goal.shape or v.shape != self.start.shape:
            raise ValueError("start, goal and speeds must have the same shape")
        if not (np.all(np.isfinite(self.start)) and np.all(np.isfinite(self.goal))):
            raise ValueError("start and goal must be finite")
        if np.any(v <= 0) or not (math.isfinite(dt) and dt > 0):
            raise ValueError("speeds and dt must be > 0")
        self.duration = float(np.max(np.abs(self.goal - self.start) / v)) if v.size else 0.0
        self.steps = max(1, math.ceil(self.duration / dt - 1e-9))
        self._k = 0

    @property
    def done(self) -> bool:
        return self._k >= self.steps

    @property
    def remaining(self) -> int:
        return max(0, self.steps - self._k)

    def next(self) -> np.ndarray:
        """The next waypoint (the goal once the move is complete)."""
        self._k = min(self._k + 1, self.steps)
        s = self._k / self.steps
        return self.start + s * (self.goal - self.start)
