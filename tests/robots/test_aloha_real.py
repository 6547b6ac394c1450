"""The Interbotix backends against the test double of interbotix_xs_modules: exact calls."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from diffog_ros.paths import config_path
from diffog_ros.robots.aloha_real import AlohaReal, InterbotixNotInstalledError
from diffog_ros.robots.config import load_robot_config
from diffog_ros.robots.control_loop import ControlLoop, LoopSettings
from diffog_ros.robots.single_arm import SingleArmReal

from .fakes import interbotix as fake_ib

ARM = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]


def _yaml(name: str) -> dict:
    return yaml.safe_load(config_path(name).read_text())


def _startup_calls(robot_name: str) -> list[tuple]:
    """The ALOHA follower set-up (hardware-facts.md): reboot gripper, modes, current limit, torque."""
    return [
        (robot_name, "core.robot_reboot_motors", ("single", "gripper", True), {}),
        (robot_name, "core.robot_set_operating_modes", ("group", "arm", "position"), {}),
        (
            robot_name,
            "core.robot_set_operating_modes",
            ("single", "gripper", "current_based_position"),
            {},
        ),
        (
            robot_name,
            "core.robot_set_motor_registers",
            ("single", "gripper", "current_limit", 300),
            {},
        ),
        (robot_name, "core.robot_torque_enable", ("group", "arm", True), {}),
        (robot_name, "core.robot_torque_enable", ("single", "gripper", True), {}),
    ]


def _manipulator(robot_name: str, node: str) -> tuple:
    kwargs = {
        "robot_model": "vx300s",
        "group_name": "arm",
        "gripper_name": "gripper",
        "robot_name": robot_name,
        "node": node,
        "iterative_update_fk": False,
    }
    return (robot_name, "InterbotixManipulatorXS", (), kwargs)


def _command_calls(q: np.ndarray, ib: dict) -> list[tuple]:
    """Per arm: a non-blocking joint group command, then one gripper JointSingleCommand."""
    out = []
    for robot_name, offset in (("follower_left", 0), ("follower_right", 7)):
        arm = [float(v) for v in q[offset : offset + 6]]
        g = float(q[offset + 6])
        joint = ib["gripper_joint_close"] + g * (
            ib["gripper_joint_open"] - ib["gripper_joint_close"]
        )
        out.append((robot_name, "arm.set_joint_positions", (arm,), {"blocking": False}))
        out.append(
            (
                robot_name,
                "gripper.core.pub_single.publish",
                (("JointSingleCommand", "gripper", pytest.approx(joint, abs=1e-12)),),
                {},
            )
        )
    return out


def test_aloha_startup_command_hold_and_shutdown_make_the_exact_calls(monkeypatch):
    fake = fake_ib.install(monkeypatch)
    ib = _yaml("aloha.yaml")["interbotix"]
    robot = AlohaReal(load_robot_config("aloha.yaml"))

    robot.connect()
    node = ib["node_name"]
    expected = [
        ("global", "create_interbotix_global_node", (node,), {}),
        _manipulator("follower_left", node),
        _manipulator("follower_right", node),
        ("global", "robot_startup", (node,), {}),
        *_startup_calls("follower_left"),
        *_startup_calls("follower_right"),
    ]
    assert fake.take() == expected

    q = np.array(
        [0.1, -0.9, 1.1, 0.05, -0.25, 0.02, 0.6, -0.1, -0.95, 1.15, -0.05, -0.3, -0.02, 0.3]
    )
    sent = robot.send_command(q)
    np.testing.assert_array_equal(sent, q)
    assert fake.take() == _command_calls(q, ib)

    held = robot.hold()
    np.testing.assert_array_equal(held, q)
    assert fake.take() == _command_calls(q, ib)

    robot.disconnect()
    assert fake.take() == [("global", "robot_shutdown", (node,), {})]
    robot.disconnect()  # idempotent
    assert fake.take() == []


def test_real_backend_clips_to_limits_and_refuses_nan_without_calling_the_driver(monkeypatch):
    fake = fake_ib.install(monkeypatch)
    cfg = load_robot_config("aloha.yaml")
    robot = AlohaReal(cfg)
    robot.connect()
    fake.take()
    q = np.array(cfg.start_pose, dtype=float)
    q[1] = 50.0  # far beyond the shoulder limit
    sent = robot.send_command(q)
    assert sent[1] == cfg.joints[1].upper
    calls = fake.take()
    assert calls[0][2][0][1] == cfg.joints[1].upper
    bad = q.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        robot.send_command(bad)
    assert fake.take() == []


def test_read_state_maps_driver_joints_and_normalises_the_finger(monkeypatch):
    ib = _yaml("aloha.yaml")["interbotix"]
    finger_mid = (ib["gripper_position_open"] + ib["gripper_position_close"]) / 2
    left = [0.1, -0.5, 0.7, 0.0, 0.3, -0.2, 1.0, finger_mid, -finger_mid]
    right = [-0.1, -0.6, 0.8, 0.1, 0.2, 0.2, 1.0, ib["gripper_position_open"], 0.0]
    fake_ib.install(monkeypatch, {"follower_left": left, "follower_right": right})
    robot = AlohaReal(load_robot_config("aloha.yaml"))
    robot.connect()
    state = robot.read_state()
    np.testing.assert_allclose(state.position[:6], left[:6])
    np.testing.assert_allclose(state.position[7:13], right[:6])
    assert state.position[6] == pytest.approx(0.5)
    assert state.position[13] == pytest.approx(1.0)


def test_controller_on_real_backend_holds_by_resending_the_last_command(monkeypatch):
    """A control tick with nothing to do re-sends exactly the last command (no drift, no jump)."""
    fake = fake_ib.install(monkeypatch)
    cfg = load_robot_config("aloha.yaml")
    robot = AlohaReal(cfg)
    robot.connect()
    loop = ControlLoop(robot, 0.02, LoopSettings(mode="hold"))
    loop.start(0.0)
    t = 0.0
    while loop.phase == "starting":
        t += 0.02
        loop.tick(t)
    fake.take()
    first = loop.tick(t + 0.02).command
    second = loop.tick(t + 0.04).command
    np.testing.assert_array_equal(first, second)
    calls = fake.take()
    assert calls[: len(calls) // 2] == calls[len(calls) // 2 :]


def test_single_arm_real_uses_one_follower(monkeypatch):
    fake = fake_ib.install(monkeypatch)
    ib = _yaml("single_arm.yaml")["interbotix"]
    robot = SingleArmReal(load_robot_config("single_arm.yaml"))
    robot.connect()
    calls = fake.take()
    assert calls[1] == _manipulator("vx300s", ib["node_name"])
    assert calls[3:] == _startup_calls("vx300s")
    q = np.array([0.0, -0.9, 1.0, 0.0, -0.2, 0.0, 1.0])
    robot.send_command(q)
    calls = fake.take()
    assert calls[0] == (
        "vx300s",
        "arm.set_joint_positions",
        ([float(v) for v in q[:6]],),
        {"blocking": False},
    )
    assert calls[1][2][0][2] == pytest.approx(ib["gripper_joint_open"])
    robot.disconnect()


def test_missing_interbotix_gives_a_clear_error(monkeypatch):
    fake_ib.block(monkeypatch)
    robot = AlohaReal(load_robot_config("aloha.yaml"))
    with pytest.raises(InterbotixNotInstalledError) as err:
        robot.connect()
    text = str(err.value)
    assert "Interbotix ROS 2" in text and "interbotix_xs_modules" in text
    assert not robot.connected
