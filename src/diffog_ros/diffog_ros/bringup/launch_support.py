"""Turn a bringup definition into a ``launch`` description (robot PCs with ROS 2 from apt).

Imported only by ``launch/*.launch.py``; ``launch`` and ``launch_ros`` are not installable in the
project venv, where ``diffog-ros up`` reads the same definitions instead.
"""

from __future__ import annotations

import os

from diffog_ros.bringup.graphs import BRINGUPS
from diffog_ros.bringup.spec import arg_reference


def generate_launch_description_for(name: str):
    """A LaunchDescription with one DeclareLaunchArgument per bringup argument and one Node each."""
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    bringup = BRINGUPS[name]
    config_dir = os.path.join(get_package_share_directory("diffog_ros"), "config")
    actions = []
    for arg in bringup.args:
        default = str(arg.default).lower() if isinstance(arg.default, bool) else str(arg.default)
        kwargs = {"choices": list(arg.choices)} if arg.choices else {}
        actions.append(
            DeclareLaunchArgument(
                arg.name, default_value=default, description=arg.description, **kwargs
            )
        )

    def sub(value):
        ref = arg_reference(value)
        if ref is None:
            return value
        return ParameterValue(LaunchConfiguration(ref), value_type=type(bringup.arg(ref).default))

    for node in bringup.nodes:
        params = [os.path.join(config_dir, f) for f in node.params_files]
        if node.parameters:
            params.append({k: sub(v) for k, v in node.parameters.items()})
        remaps = [
            (src, LaunchConfiguration(arg_reference(dst)) if arg_reference(dst) else dst)
            for src, dst in node.remaps.items()
        ]
        ns = (
            LaunchConfiguration(arg_reference(node.namespace))
            if arg_reference(node.namespace)
            else node.namespace
        )
        actions.append(
            Node(
                package="diffog_ros",
                executable=node.executable,
                name=node.name,
                namespace=ns,
                parameters=params,
                remappings=remaps,
                arguments=list(node.extra_args),
                output="screen",
                emulate_tty=True,
                condition=IfCondition(LaunchConfiguration(node.condition))
                if node.condition
                else None,
            )
        )
    return LaunchDescription(actions)
