"""The robot interface every backend implements (no rclpy).

A backend moves one robot in joint space: ``connect`` / ``read_state`` / ``send_command`` /
``hold`` / ``disconnect``. Names, limits and units come from its :class:`RobotConfig`; the command
and state vectors follow ``config.joints`` order.

``send_command`` is the last line of defence, not the safety layer: it refuses a wrong shape or a
non-finite value (``ValueError``, nothing is sent) and clips to the configured position limits, and
it returns exactly what was sent. Per-tick step caps, watchdog and e-stop live in
:mod:`diffog_ros.robots.safety` and :mod:`diffog_ros.robots.control_loop`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from diffog_ros.robots.config import RobotConfig


@dataclass(frozen=True)
class RobotState:
    """Measured state in ``names`` order; units as in the robot config (rad, m, normalised).

    ``stamp`` is the backend's clock in seconds (simulation time for the simulator, wall time for
    real robots); nodes stamp messages with their own ROS clock.
    """

    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    stamp: float


class RobotNotConnectedError(RuntimeError):
    """A command or read was attempted before ``connect()`` or after ``disconnect()``."""


class Robot(ABC):
    """Joint-space robot backend."""

    def __init__(self, config: RobotConfig) -> None:
        self.config = config
        self._lower = config.lower
        self._upper = config.upper
        self._last_command: np.ndarray | None = None
        self._connected = False

    # -------------------------------------------------------------- description
    @property
    def names(self) -> tuple[str, ...]:
        return self.config.names

    @property
    def dof(self) -> int:
        return self.config.dof

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def last_command(self) -> np.ndarray | None:
        """The last command sent (a copy), or None before the first one."""
        return None if self._last_command is None else self._last_command.copy()

    # -------------------------------------------------------------- lifecycle
    @abstractmethod
    def connect(self) -> None:
        """Open the connection / load the model; the robot holds where it is."""

    @abstractmethod
    def disconnect(self) -> None:
        """Release the robot (idempotent)."""

    @abstractmethod
    def read_state(self) -> RobotState:
        """The latest measured state."""

    @abstractmethod
    def _send(self, command: np.ndarray) -> None:
        """Transmit a validated, clipped command (backend specific)."""

    # -------------------------------------------------------------- commands
    def check_command(self, command: np.ndarray) -> np.ndarray:
        """Validate shape and finiteness, then clip to position limits (returns a new array)."""
        q = np.asarray(command, dtype=np.float64)
        if q.shape != (self.dof,):
            raise ValueError(
                f"command must have shape ({self.dof},) for {self.names}, got {q.shape}"
            )
        if not np.all(np.isfinite(q)):
            bad = [self.names[i] for i in np.flatnonzero(~np.isfinite(q))]
            raise ValueError(f"refusing a non-finite command at {bad}")
        return np.clip(q, self._lower, self._upper)

    def send_command(self, command: np.ndarray) -> np.ndarray:
        """Send a joint-space command; returns exactly what was sent (after the final clip)."""
        if not self._connected:
            raise RobotNotConnectedError(f"{type(self).__name__} is not connected")
        q = self.check_command(command)
        self._send(q)
        self._last_command = q
        return q.copy()

    def hold(self) -> np.ndarray:
        """Keep the last command (re-sent, so a simulator also advances); returns it.

        Before any command, holds the measured position (clipped to the limits).
        """
        if self._last_command is None:
            return self.send_command(self.read_state().position)
        return self.send_command(self._last_command)
