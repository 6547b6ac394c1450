"""Test double of interbotix_common_modules.common_robot.robot (see ../../README.md)."""

from __future__ import annotations

from dataclasses import dataclass

from _fakehw import record


@dataclass
class FakeNode:
    name: str


def create_interbotix_global_node(
    node_name: str = "interbotix_robot_manipulation", *args, **kwargs
):
    record("global", "create_interbotix_global_node", node_name, *args, **kwargs)
    return FakeNode(node_name)


def robot_startup(node=None, *args, **kwargs) -> None:
    record("global", "robot_startup", getattr(node, "name", node), *args, **kwargs)


def robot_shutdown(node=None) -> None:
    record("global", "robot_shutdown", getattr(node, "name", node))
