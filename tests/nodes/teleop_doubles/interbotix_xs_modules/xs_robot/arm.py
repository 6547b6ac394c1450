"""Test double of interbotix_xs_modules.xs_robot.arm (see ../../README.md)."""

from __future__ import annotations

from types import SimpleNamespace

from _fakehw import record, state


class _Core:
    def __init__(self, robot_name: str) -> None:
        self._name = robot_name

    @property
    def joint_states(self):
        positions = state("FAKE_LEADER_STATE", {}).get(self._name)
        if positions is None:
            return None
        return SimpleNamespace(
            name=list(positions), position=[float(v) for v in positions.values()]
        )

    def robot_set_operating_modes(self, *args) -> None:
        record(self._name, "core.robot_set_operating_modes", *args)

    def robot_torque_enable(self, *args) -> None:
        record(self._name, "core.robot_torque_enable", *args)

    def robot_set_motor_registers(self, *args) -> None:
        record(self._name, "core.robot_set_motor_registers", *args)

    def robot_reboot_motors(self, *args) -> None:
        record(self._name, "core.robot_reboot_motors", *args)


class InterbotixManipulatorXS:
    def __init__(self, **kwargs) -> None:
        logged = dict(kwargs)
        logged["node"] = getattr(kwargs.get("node"), "name", kwargs.get("node"))
        record(kwargs["robot_name"], "InterbotixManipulatorXS", **logged)
        self.core = _Core(kwargs["robot_name"])
        self.arm = SimpleNamespace()
        self.gripper = SimpleNamespace()
