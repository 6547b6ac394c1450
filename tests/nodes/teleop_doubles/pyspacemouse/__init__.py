"""Test double of pyspacemouse 2.x (see ../README.md)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from _fakehw import record, state


class AxisConvention(enum.Enum):
    LEGACY = "legacy"
    HID = "hid"
    HID_Z_UP = "hid_z_up"
    ROS = "ros"
    UNITY = "unity"


@dataclass
class SpaceMouseState:
    t: float = -1.0
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    buttons: list = field(default_factory=list)


class SpaceMouseDevice:
    def read(self) -> SpaceMouseState:
        s = state("FAKE_SPACEMOUSE_STATE", {})
        return SpaceMouseState(
            t=0.0,
            **{k: float(s.get(k, 0.0)) for k in ("x", "y", "z", "roll", "pitch", "yaw")},
            buttons=list(s.get("buttons", [0, 0])),
        )

    def close(self) -> None:
        record("device", "close")


def open(**kwargs) -> SpaceMouseDevice:  # noqa: A001 - the library's name
    conv = kwargs.get("axis_convention")
    logged = dict(kwargs)
    if isinstance(conv, AxisConvention):
        logged["axis_convention"] = f"AxisConvention.{conv.name}"
    record("pyspacemouse", "open", **logged)
    fail = state("FAKE_SPACEMOUSE_STATE", {}).get("fail", "")
    if fail == "hidapi":  # what pyspacemouse 2.1.0 raises without the C library
        raise RuntimeError(
            "HID API is probably not installed. See https://spacemouse.kubaandrysek.cz for details."
        )
    if fail == "nodevice":
        raise RuntimeError("No connected or supported devices found.")
    return SpaceMouseDevice()
