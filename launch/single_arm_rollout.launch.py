"""ros2 launch diffog_ros single_arm_rollout.launch.py [name:=value ...]

The graph is defined once in diffog_ros.bringup.graphs ('single_arm_rollout'); `diffog-ros up single_arm_rollout` runs the same
graph where ros2 launch is not installed. `ros2 launch -s` lists the arguments with descriptions.
"""

from diffog_ros.bringup.launch_support import generate_launch_description_for


def generate_launch_description():
    return generate_launch_description_for("single_arm_rollout")
