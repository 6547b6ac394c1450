"""Sensor sources (no rclpy): cameras for camera_node."""
