"""diffog_ros: constrained visuomotor policy deployment on ROS 2.

Core sub-packages (``trajopt``, ``learning``, ``robots``, ``data``) import without rclpy;
``nodes`` holds thin rclpy wrappers, one node per module.
"""

__version__ = "0.1.0"
