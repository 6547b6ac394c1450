"""Poses, rotations and the minimum-jerk profile of scripted motions (no rclpy).

Between two waypoints the scripted operator moves every coordinate (tool position, pitch, roll,
gripper) along a minimum-jerk profile (Flash & Hogan 1985)::

    s(tau) = 10 tau^3 - 15 tau^4 + 6 tau^5,   tau in [0, 1],   x(tau) = x0 + s (x1 - x0)

so velocity and acceleration are zero at every waypoint; the peak rate ds/dtau is 15/8 (at 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    """A world-frame pose: ``position`` (3,) in m, ``rotation`` (3, 3) tool -> world."""

    position: np.ndarray
    rotation: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.position, dtype=np.float64).reshape(3).copy()
        r = np.asarray(self.rotation, dtype=np.float64).reshape(3, 3).copy()
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(r))):
            raise ValueError("pose must be finite")
        object.__setattr__(self, "position", p)
        object.__setattr__(self, "rotation", r)


def min_jerk(tau: float) -> float:
    """Minimum-jerk phase ``s(tau)`` (``tau`` clipped to [0, 1])."""
    t = min(max(float(tau), 0.0), 1.0)
    return t * t * t * (10.0 + t * (-15.0 + 6.0 * t))


def rot_x(angle: float) -> np.ndarray:
    """Rotation about the x axis by ``angle`` (rad)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    """Rotation about the y axis by ``angle`` (rad)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
