#!/usr/bin/env bash
# Source ROS 2 and the diffog_ros workspace, then run the command (default: diffog-ros --help).
set -e
# shellcheck disable=SC1091
source /opt/ros/jazzy/setup.bash
# shellcheck disable=SC1091
source /opt/diffog_ros/ros2_ws/install/setup.bash
# The package's executables (nodes and diffog-ros) on PATH; `ros2 run diffog_ros <node>` works too.
export PATH="/opt/diffog_ros/ros2_ws/install/diffog_ros/lib/diffog_ros:${PATH}"
exec "$@"
