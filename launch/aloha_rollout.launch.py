"""ros2 launch diffog_ros aloha_rollout.launch.py [name:=value ...]

The graph is defined once in diffog_ros.bringup.graphs ('aloha_rollout'); `diffog-ros up aloha_rollout` runs the same
graph where ros2 launch is not installed. `ros2 launch -s` lists the arguments with descriptions.
"""

from diffog_ros.bringup.launch_support import generate_launch_description_for


def generate_launch_description():
    return generate_launch_description_for("aloha_rollout")
