"""Teleoperation core (no rclpy): SpaceMouse and ALOHA leader-follower mappings, Joy buttons."""
