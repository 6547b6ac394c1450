"""ament_python package definition for diffog_ros.

Builds with ``colcon build`` (robot PCs with ROS 2 from apt, and ``ros2_ws/`` here)
and with ``pip install`` into the project venv (``make setup``).
"""

import os

from setuptools import find_packages, setup

PACKAGE = "diffog_ros"
HERE = os.path.dirname(os.path.abspath(__file__))


def _tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing ``folder`` (a symlink to the top level) under share/."""
    entries = []
    for root, _dirs, files in os.walk(os.path.join(HERE, folder), followlinks=True):
        rel = os.path.relpath(root, HERE)
        keep = [os.path.join(rel, f) for f in files if not f.startswith(".")]
        if keep:
            entries.append((os.path.join("share", PACKAGE, rel), keep))
    return entries


NODES = [
    "trajopt_node",
    "controller_node",
    "camera_node",
    "spacemouse_node",
    "leader_follower_node",
    "recorder_node",
    "policy_node",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        *_tree("launch"),
        *_tree("config"),
        *_tree("models"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="diffog_ros developers",
    maintainer_email="dev@diffog-ros.local",
    description="Constrained visuomotor policy deployment on ROS 2 (DiffOG / LeTO).",
    license="MIT",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            *[f"{n} = {PACKAGE}.nodes.{n}:main" for n in NODES],
            f"diffog-ros = {PACKAGE}.cli.main:main",
        ],
    },
)
