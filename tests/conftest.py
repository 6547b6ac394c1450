"""Shared pytest set-up.

Every test session gets its own DDS domain (unless ROS_DOMAIN_ID is set) and keeps discovery on
this host, so parallel sessions and other ROS graphs on the machine never cross-talk.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture
def ros():
    """An initialised rclpy default context for the test's own nodes (shut down afterwards)."""
    import rclpy  # imported here: the core tests must run without rclpy loaded

    rclpy.init()
    try:
        yield
    finally:
        rclpy.try_shutdown()
