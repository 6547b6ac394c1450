"""Teleop core without ROS: SpaceMouse mapping and buttons, leader-follower mapping, gesture,
and the device readers against doubles of their libraries (exact calls)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from diffog_ros.robots.config import load_robot_config
from diffog_ros.teleop.devices import (
    HIDAPI_FIX,
    DeviceError,
    SpaceMouseReader,
    explain_spacemouse_error,
    parse_setup_calls,
)
from diffog_ros.teleop.joy import ButtonEdges
from diffog_ros.teleop.leader_follower import (
    LeaderFollowerConfig,
    LeaderFollowerMap,
    LeaderReading,
    StartGesture,
)
from diffog_ros.teleop.spacemouse import ButtonMapper, SpaceMouseMapping


def test_twist_applies_deadzone_scale_and_speed_limits():
    m = SpaceMouseMapping(0.2, (1.0, -1.0, 2.0, 1.0, 1.0, 0.5), 0.1, 0.5)
    axes = [0.6, 0.6, 0.6, 0.1, -1.0, 1.0]
    out = m.twist(axes)
    u = (0.6 - 0.2) / 0.8  # past the deadzone, rescaled to reach 1 at full deflection
    np.testing.assert_allclose(out, [u * 0.1, -u * 0.1, min(2 * u, 1.0) * 0.1, 0.0, -0.5, 0.25])
    assert m.twist([0.2, -0.19, 0, 0, 0, 0]).tolist() == [0.0] * 6  # inside the deadzone
    assert np.allclose(m.twist([0.2000001, 0, 0, 0, 0, 0])[0], 0.0, atol=1e-6)  # continuous edge
    assert m.twist([np.nan, 1, 1, 1, 1, 1]).tolist() == [0.0] * 6  # never moves on garbage
    with pytest.raises(ValueError, match="6 axes"):
        m.twist([0.0] * 5)
    with pytest.raises(ValueError, match="deadzone"):
        SpaceMouseMapping(1.0, (1,) * 6, 0.1, 0.1)
    with pytest.raises(ValueError, match="scale"):
        SpaceMouseMapping(0.1, (1,) * 5, 0.1, 0.1)


def test_buttons_map_to_logical_joy_buttons_with_a_gripper_toggle():
    b = ButtonMapper(
        ["gripper_toggle", "record_toggle"], ["gripper_close", "gripper_open", "record_toggle"]
    )
    assert b.update([0, 0]) == [0, 0, 0]
    assert b.update([1, 0]) == [1, 0, 0]  # first press closes
    assert b.update([1, 0]) == [1, 0, 0]  # held
    assert b.update([0, 1]) == [0, 0, 1]
    assert b.update([1, 0]) == [0, 1, 0]  # second press opens
    with pytest.raises(ValueError, match="no joy button"):
        ButtonMapper(["record_start"], ["gripper_close"])
    with pytest.raises(ValueError, match="unknown device button"):
        ButtonMapper(["fly"], ["gripper_close"])
    edges = ButtonEdges()
    assert edges.update([1, 0]) == set()  # held at start: not a press
    assert edges.update([1, 1]) == {1}


NAMES = load_robot_config("aloha.yaml").names
ARM = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]


def lf_config(**extra):
    raw = {
        "arms": [
            {
                "prefix": "left_",
                "robot_name": "leader_left",
                "gripper_joint_open": 0.8,
                "gripper_joint_close": -0.1,
            },
            {
                "prefix": "right_",
                "robot_name": "leader_right",
                "gripper_joint_open": 0.6,
                "gripper_joint_close": 0.0,
            },
        ],
        "arm_joints": ARM,
        "gripper_joint": "gripper",
        **extra,
    }
    return LeaderFollowerConfig.from_dict(raw, NAMES)


def reading(base: float, gripper: float, stamp: float = 0.0) -> LeaderReading:
    pos = {j: base + 0.01 * i for i, j in enumerate(ARM)}
    pos.update(gripper=gripper, left_finger=0.02, right_finger=-0.02)
    return LeaderReading(pos, stamp)


def test_leader_follower_targets_in_follower_order():
    m = LeaderFollowerMap(lf_config(sign={"right_waist": -1.0}, offset={"left_elbow": 0.5}))
    out = m.targets({"leader_left": reading(0.1, 0.35), "leader_right": reading(-0.2, 0.6)})
    expect = dict(zip(NAMES, out, strict=True))
    assert expect["left_waist"] == pytest.approx(0.1)
    assert expect["left_elbow"] == pytest.approx(0.12 + 0.5)
    assert expect["right_waist"] == pytest.approx(0.2)  # sign -1
    assert expect["right_wrist_rotate"] == pytest.approx(-0.2 + 0.05)
    assert expect["left_gripper"] == pytest.approx((0.35 + 0.1) / 0.9)
    assert expect["right_gripper"] == 1.0
    below = m.grippers({"leader_left": reading(0, -0.5), "leader_right": reading(0, 0.9)})
    assert below == {"left_": 0.0, "right_": 1.0}  # clipped to [0, 1]
    with pytest.raises(ValueError, match="leader_right"):
        m.targets({"leader_left": reading(0.1, 0.3)})
    with pytest.raises(ValueError, match="NaN"):
        m.targets({"leader_left": reading(np.nan, 0.3), "leader_right": reading(0, 0.3)})


def test_leader_config_must_cover_the_follower_actions():
    raw = {
        "arms": [
            {
                "prefix": "left_",
                "robot_name": "l",
                "gripper_joint_open": 1,
                "gripper_joint_close": 0,
            }
        ],
        "arm_joints": ARM,
        "gripper_joint": "gripper",
    }
    with pytest.raises(ValueError, match="not driven"):
        LeaderFollowerConfig.from_dict(raw, NAMES)
    same = {**raw, "arms": [{**raw["arms"][0], "gripper_joint_close": 1}]}
    with pytest.raises(ValueError, match="differ"):
        LeaderFollowerConfig.from_dict(same, NAMES[:7])


def test_start_gesture_needs_both_grippers_closed_for_the_hold_time():
    g = StartGesture(threshold=0.1, hold=0.3)
    assert not g.update({"left_": 0.05, "right_": 0.5}, 0.0)
    assert not g.update({"left_": 0.05, "right_": 0.05}, 1.0)
    assert not g.update({"left_": 0.05, "right_": 0.2}, 1.2)  # released: the hold restarts
    assert not g.update({"left_": 0.0, "right_": 0.0}, 2.0)
    assert g.update({"left_": 0.0, "right_": 0.0}, 2.31)
    assert g.update({"left_": 1.0, "right_": 1.0}, 3.0)  # stays engaged


class FakeSpaceMouseLib:
    """Stands in for the pyspacemouse module: records calls."""

    AxisConvention = SimpleNamespace(HID_Z_UP="HID_Z_UP", LEGACY="LEGACY")

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list = []
        self.error = error

    def open(self, **kwargs):
        self.calls.append(("open", kwargs))
        if self.error:
            raise self.error
        lib = self

        class Dev:
            def read(self):
                lib.calls.append(("read",))
                return SimpleNamespace(
                    x=0.1, y=0.2, z=0.3, roll=0.4, pitch=0.5, yaw=0.6, buttons=[1, 0]
                )

            def close(self):
                lib.calls.append(("close",))

        return Dev()


def test_spacemouse_reader_opens_with_hid_z_up_and_reads():
    lib = FakeSpaceMouseLib()
    r = SpaceMouseReader(importer=lambda name: lib)
    r.open()
    assert r.read() == ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [1, 0])
    r.close()
    assert lib.calls == [
        (
            "open",
            {"device": None, "device_index": 0, "nonblocking": True, "axis_convention": "HID_Z_UP"},
        ),
        ("read",),
        ("close",),
    ]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            RuntimeError(
                "HID API is probably not installed. See https://spacemouse.kubaandrysek.cz"
            ),
            "libhidapi-hidraw0",
        ),
        (RuntimeError("No connected or supported devices found."), "udev rule"),
        (ImportError("No module named 'pyspacemouse'"), "pip install pyspacemouse==2.1.0"),
    ],
)
def test_spacemouse_errors_name_the_fix(error, expected):
    if isinstance(error, ImportError):

        def importer(name):
            raise error

        r = SpaceMouseReader(importer=importer)
    else:
        r = SpaceMouseReader(importer=lambda name: FakeSpaceMouseLib(error))
    with pytest.raises(DeviceError, match=expected.replace(".", r"\.")):
        r.open()
    assert HIDAPI_FIX in explain_spacemouse_error(AttributeError("undefined symbol: hid_enumerate"))


def test_leader_setup_calls_parse_and_are_restricted():
    assert parse_setup_calls(
        [
            "robot_torque_enable group arm false",
            "robot_set_motor_registers single gripper current_limit 300",
        ]
    ) == [
        ("robot_torque_enable", ["group", "arm", False]),
        ("robot_set_motor_registers", ["single", "gripper", "current_limit", 300]),
    ]
    with pytest.raises(ValueError, match="not allowed"):
        parse_setup_calls(["robot_write_commands arm 1"])
