"""Test support helpers (process launching, ROS graph helpers)."""
