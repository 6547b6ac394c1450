"""A stand-in robot for recorder tests: publishes joint states, executed actions, chunks and
camera frames like controller_node / policy_node / trajopt_node do (run as its own process).

    python recorder_peer.py '{"rate": 50, "cameras": {"cam_high": [48, 64]}, "camera_rate": 25}'

Values are deterministic functions of time so a test can check what was recorded:
qpos[j] = sin(t + j), action[j] = cos(t + j), image pixel (0, 0, 0) = frame counter % 256.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffog_ros.robots.config import load_robot_config

# The joints the recorder (default robot_config aloha.yaml) expects.
NAMES = list(load_robot_config("aloha.yaml").names)


class Peer(Node):
    def __init__(self, cfg: dict) -> None:
        super().__init__("recorder_peer")
        self.cfg = cfg
        self.names = cfg.get("names", NAMES)
        self.js = self.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
        self.ex = self.create_publisher(JointState, "executed_action", 10)
        self.raw = self.create_publisher(JointTrajectory, "action_chunk/raw", 10)
        self.cams = {
            name: self.create_publisher(Image, f"{name}/image_raw", qos_profile_sensor_data)
            for name in cfg.get("cameras", {})
        }
        self.frame = 0
        self.create_timer(1.0 / cfg.get("rate", 50.0), self.tick)
        if self.cams:
            self.create_timer(1.0 / cfg.get("camera_rate", 25.0), self.camera)
        if cfg.get("chunk_rate"):
            self.create_timer(1.0 / cfg["chunk_rate"], self.chunk)

    def now(self):
        return self.get_clock().now()

    def tick(self) -> None:
        stamp = self.now()
        t = stamp.nanoseconds * 1e-9
        n = len(self.names)
        js = JointState(name=self.names)
        js.header.stamp = stamp.to_msg()
        js.position = [math.sin(t + j) for j in range(n)]
        js.velocity = [math.cos(t + j) for j in range(n)]
        js.effort = [0.1 * j for j in range(n)]
        self.js.publish(js)
        ex = JointState(name=self.names)
        ex.header.stamp = stamp.to_msg()
        ex.position = [math.cos(t + j) for j in range(n)]
        self.ex.publish(ex)

    def chunk(self) -> None:
        stamp = self.now()
        t = stamp.nanoseconds * 1e-9
        msg = JointTrajectory(joint_names=self.names)
        msg.header.stamp = stamp.to_msg()
        for k in range(16):
            p = JointTrajectoryPoint(positions=[t + 0.02 * k + j for j in range(len(self.names))])
            ns = int(round(k * 0.02 * 1e9))
            p.time_from_start = Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
            msg.points.append(p)
        self.raw.publish(msg)

    def camera(self) -> None:
        stamp = self.now().to_msg()
        for name, pub in self.cams.items():
            h, w = self.cfg["cameras"][name]
            img = np.zeros((h, w, 3), dtype=np.uint8)
            img[:, :, 0] = np.arange(w, dtype=np.uint8)[None, :]
            img[:, :, 1] = self.frame % 256
            msg = Image(height=h, width=w, encoding="rgb8", step=w * 3)
            msg.header.stamp = stamp
            msg.data = img.tobytes()
            pub.publish(msg)
        self.frame += 1


def main() -> None:
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    rclpy.init()
    node = Peer(cfg)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
