"""SpaceMouse mapping (no rclpy): device axes and buttons -> a twist and logical Joy buttons.

Axes come from pyspacemouse 2.x in the ``HID_Z_UP`` convention (right-handed, z up; each axis in
[-1, 1]; the legacy convention swaps roll / pitch and flips yaw and is never used here). For each
axis ``a`` with deadzone ``d``, per-axis scale ``s`` (sign and gain) and maximum speed ``v_max``
(m/s for x y z, rad/s for roll pitch yaw)::

    u = sign(a) * (|a| - d) / (1 - d)   if |a| > d, else 0    (continuous at the deadzone edge)
    v = clip(s * u, -1, 1) * v_max

Buttons: every device button has an action (``device_buttons`` in config/spacemouse.yaml); the
published sensor_msgs/Joy carries *logical* buttons in the order of ``joy_buttons``, so the
controller (gripper open / close) and the recorder (start / stop / toggle / discard) are configured
by logical index, whatever the device model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

AXES = ("x", "y", "z", "roll", "pitch", "yaw")
ACTIONS = (
    "none",
    "gripper_close",
    "gripper_open",
    "gripper_toggle",
    "record_start",
    "record_stop",
    "record_toggle",
    "record_discard",
)
LOGICAL = tuple(a for a in ACTIONS if a not in ("none", "gripper_toggle"))


@dataclass(frozen=True)
class SpaceMouseMapping:
    """Deadzone, per-axis scale and speed limits (validated on construction)."""

    deadzone: float
    scale: tuple[float, ...]
    max_linear_speed: float
    max_angular_speed: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.deadzone) and 0.0 <= self.deadzone < 1.0):
            raise ValueError(f"deadzone must be in [0, 1), got {self.deadzone!r}")
        scale = tuple(float(s) for s in self.scale)
        if len(scale) != 6 or not all(math.isfinite(s) for s in scale):
            raise ValueError(
                f"scale needs 6 finite values (x y z roll pitch yaw), got {self.scale!r}"
            )
        object.__setattr__(self, "scale", scale)
        for name in ("max_linear_speed", "max_angular_speed"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")

    def twist(self, axes: Sequence[float]) -> np.ndarray:
        """[vx, vy, vz, wx, wy, wz] for the six device axes; non-finite input gives zeros."""
        a = np.asarray(axes, dtype=np.float64)
        if a.shape != (6,):
            raise ValueError(f"expected 6 axes, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            return np.zeros(6)
        a = np.clip(a, -1.0, 1.0)
        mag = np.abs(a)
        u = np.where(
            mag > self.deadzone, np.sign(a) * (mag - self.deadzone) / (1.0 - self.deadzone), 0.0
        )
        v = np.clip(np.asarray(self.scale) * u, -1.0, 1.0)
        v[:3] *= self.max_linear_speed
        v[3:] *= self.max_angular_speed
        return v


class ButtonMapper:
    """Device buttons -> logical Joy buttons (see the module docstring).

    ``gripper_toggle`` alternates: its first press holds ``gripper_close``, the next
    ``gripper_open``, and so on (the gripper is assumed open at start).
    """

    def __init__(self, device_actions: Sequence[str], joy_layout: Sequence[str]) -> None:
        bad = [a for a in device_actions if a not in ACTIONS]
        if bad:
            raise ValueError(f"unknown device button actions {bad}; choose from {list(ACTIONS)}")
        bad = [a for a in joy_layout if a not in LOGICAL]
        if bad:
            raise ValueError(f"unknown joy buttons {bad}; choose from {list(LOGICAL)}")
        if len(set(joy_layout)) != len(joy_layout):
            raise ValueError(f"joy buttons must not repeat, got {list(joy_layout)}")
        missing = {
            "gripper_close" if a == "gripper_toggle" else a for a in device_actions if a != "none"
        } - set(joy_layout)
        if "gripper_toggle" in device_actions:
            missing |= {"gripper_open"} - set(joy_layout)
        if missing:
            raise ValueError(f"device actions {sorted(missing)} have no joy button in joy_buttons")
        self.device_actions = tuple(device_actions)
        self.joy_layout = tuple(joy_layout)
        self._last = [0] * len(self.device_actions)
        self._gripper_closed = False
        self._toggle_output: dict[int, str] = {}

    def update(self, device_buttons: Sequence[int]) -> list[int]:
        """Logical button states (0 / 1) for the current device button states."""
        active: set[str] = set()
        for i, action in enumerate(self.device_actions):
            pressed = i < len(device_buttons) and bool(device_buttons[i])
            was = bool(self._last[i])
            self._last[i] = int(pressed)
            if not pressed or action == "none":
                continue
            if action == "gripper_toggle":
                if not was:  # a new press: flip
                    self._gripper_closed = not self._gripper_closed
                    self._toggle_output[i] = (
                        "gripper_close" if self._gripper_closed else "gripper_open"
                    )
                active.add(self._toggle_output.get(i, "gripper_close"))
            else:
                active.add(action)
                if action == "gripper_close":
                    self._gripper_closed = True
                elif action == "gripper_open":
                    self._gripper_closed = False
        return [1 if name in active else 0 for name in self.joy_layout]
