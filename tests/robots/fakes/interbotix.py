"""A test double of the Interbotix ROS 2 Python API (the arms are hardware nobody has here).

:func:`install` puts fake ``interbotix_common_modules.common_robot.robot``,
``interbotix_xs_modules.xs_robot.arm`` and ``interbotix_xs_msgs.msg`` modules into ``sys.modules``
(through pytest's monkeypatch, so they vanish after the test). Every call the backend makes is
appended to ``FakeInterbotix.calls`` as ``(target, method, args, kwargs)`` with plain-Python
arguments, so a test can compare the exact sequence.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

DRIVER_JOINTS = [
    "waist",
    "shoulder",
    "elbow",
    "forearm_roll",
    "wrist_angle",
    "wrist_rotate",
    "gripper",
    "left_finger",
    "right_finger",
]


@dataclass
class JointSingleCommand:
    """Stands in for interbotix_xs_msgs/msg/JointSingleCommand."""

    name: str = ""
    cmd: float = 0.0


@dataclass
class FakeJointStates:
    name: list[str]
    position: list[float]
    velocity: list[float]
    effort: list[float]


@dataclass
class FakeNode:
    name: str


def _plain(value: Any) -> Any:
    if isinstance(value, JointSingleCommand):
        return ("JointSingleCommand", value.name, float(value.cmd))
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return float(value)
    return value


@dataclass
class FakeInterbotix:
    calls: list[tuple[str, str, tuple, dict]] = field(default_factory=list)
    bots: dict[str, Any] = field(default_factory=dict)

    def record(self, target: str, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(
            (
                target,
                method,
                tuple(_plain(a) for a in args),
                {k: _plain(v) for k, v in kwargs.items()},
            )
        )

    def take(self) -> list[tuple[str, str, tuple, dict]]:
        out, self.calls = self.calls, []
        return out


def install(monkeypatch, positions: dict[str, list[float]] | None = None) -> FakeInterbotix:
    """Install the fake API; ``positions[robot_name]`` seeds each arm's joint states."""
    fake = FakeInterbotix()
    positions = positions or {}

    class Core:
        def __init__(self, robot_name: str) -> None:
            self._n = robot_name
            pos = positions.get(robot_name, [0.0] * len(DRIVER_JOINTS))
            self.joint_states = FakeJointStates(
                list(DRIVER_JOINTS), list(pos), [0.0] * len(pos), [0.0] * len(pos)
            )
            self.js_index_map = {n: i for i, n in enumerate(DRIVER_JOINTS)}

        def robot_reboot_motors(self, *args: Any) -> None:
            fake.record(self._n, "core.robot_reboot_motors", *args)

        def robot_set_operating_modes(self, *args: Any) -> None:
            fake.record(self._n, "core.robot_set_operating_modes", *args)

        def robot_set_motor_registers(self, *args: Any) -> None:
            fake.record(self._n, "core.robot_set_motor_registers", *args)

        def robot_torque_enable(self, *args: Any) -> None:
            fake.record(self._n, "core.robot_torque_enable", *args)

    class Publisher:
        def __init__(self, robot_name: str) -> None:
            self._n = robot_name

        def publish(self, msg: Any) -> None:
            fake.record(self._n, "gripper.core.pub_single.publish", msg)

    class Arm:
        def __init__(self, robot_name: str) -> None:
            self._n = robot_name

        def set_joint_positions(self, joint_positions: Any, *args: Any, **kwargs: Any) -> bool:
            fake.record(self._n, "arm.set_joint_positions", list(joint_positions), *args, **kwargs)
            return True

    class Manipulator:
        def __init__(self, **kwargs: Any) -> None:
            name = kwargs["robot_name"]
            node = kwargs.get("node")
            rec = dict(kwargs)
            rec["node"] = node.name if isinstance(node, FakeNode) else node
            fake.record(name, "InterbotixManipulatorXS", **rec)
            self.core = Core(name)
            self.arm = Arm(name)
            self.gripper = types.SimpleNamespace(
                core=types.SimpleNamespace(pub_single=Publisher(name))
            )
            fake.bots[name] = self

    def create_interbotix_global_node(node_name: str = "interbotix_robot_manipulation", *a, **k):
        fake.record("global", "create_interbotix_global_node", node_name, *a, **k)
        return FakeNode(node_name)

    def robot_startup(node: Any = None, *a: Any, **k: Any) -> None:
        fake.record("global", "robot_startup", node.name if isinstance(node, FakeNode) else node)

    def robot_shutdown(node: Any = None) -> None:
        fake.record("global", "robot_shutdown", node.name if isinstance(node, FakeNode) else node)

    mods = {
        "interbotix_common_modules": types.ModuleType("interbotix_common_modules"),
        "interbotix_common_modules.common_robot": types.ModuleType(
            "interbotix_common_modules.common_robot"
        ),
        "interbotix_common_modules.common_robot.robot": types.ModuleType(
            "interbotix_common_modules.common_robot.robot"
        ),
        "interbotix_xs_modules": types.ModuleType("interbotix_xs_modules"),
        "interbotix_xs_modules.xs_robot": types.ModuleType("interbotix_xs_modules.xs_robot"),
        "interbotix_xs_modules.xs_robot.arm": types.ModuleType(
            "interbotix_xs_modules.xs_robot.arm"
        ),
        "interbotix_xs_msgs": types.ModuleType("interbotix_xs_msgs"),
        "interbotix_xs_msgs.msg": types.ModuleType("interbotix_xs_msgs.msg"),
    }
    robot = mods["interbotix_common_modules.common_robot.robot"]
    robot.create_interbotix_global_node = create_interbotix_global_node
    robot.robot_startup = robot_startup
    robot.robot_shutdown = robot_shutdown
    mods["interbotix_xs_modules.xs_robot.arm"].InterbotixManipulatorXS = Manipulator
    mods["interbotix_xs_msgs.msg"].JointSingleCommand = JointSingleCommand
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return fake


def block(monkeypatch) -> None:
    """Make every Interbotix module unimportable (as on a machine without the install)."""
    for name in (
        "interbotix_common_modules",
        "interbotix_common_modules.common_robot",
        "interbotix_common_modules.common_robot.robot",
        "interbotix_xs_modules",
        "interbotix_xs_modules.xs_robot",
        "interbotix_xs_modules.xs_robot.arm",
        "interbotix_xs_msgs",
        "interbotix_xs_msgs.msg",
    ):
        monkeypatch.setitem(sys.modules, name, None)
