"""policy_node as a real process over real DDS: replayed episodes and a diffusion checkpoint.

The test process runs its own rclpy node that publishes joint states and collects
``action_chunk/raw`` and ``/diagnostics``; expected chunks come from the episode file itself.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from learning.synthetic import trajectory, write_dataset, write_episode
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from support.procs import node_command, running, stop
from trajectory_msgs.msg import JointTrajectory

from diffog_ros.nodes.spin import BackgroundSpinner
from diffog_ros.robots.config import load_robot_config

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NAMES = list(load_robot_config("aloha").names)  # the 14 ALOHA actions, from config/aloha.yaml
FPS = 50.0
DT = 1.0 / FPS


class Listener:
    """Collects chunks and diagnostics; publishes joint states (spun in a background thread)."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("policy_node_test")
        self.chunks: list[tuple[float, JointTrajectory]] = []
        self.diag: list[DiagnosticArray] = []
        self.lock = threading.Lock()
        reliable = QoSProfile(
            depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        self.node.create_subscription(JointTrajectory, "action_chunk/raw", self._on_chunk, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable)
        self.joints = self.node.create_publisher(
            JointState, "joint_states", qos_profile_sensor_data
        )
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    def _on_chunk(self, msg: JointTrajectory) -> None:
        with self.lock:
            self.chunks.append((time.time(), msg))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diag.append(msg)

    def wait_chunks(self, n: int, timeout: float = 60.0) -> list[JointTrajectory]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.chunks) >= n:
                    return [m for _, m in self.chunks]
            time.sleep(0.05)
        raise AssertionError(f"only {len(self.chunks)} chunks within {timeout} s")

    def counts(self) -> dict[str, int]:
        with self.lock:
            msgs = list(self.diag)
        for msg in reversed(msgs):
            for status in msg.status:
                if status.name.endswith(": policy"):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def wait_count(self, key: str, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = int(self.counts().get(key, 0))
            if value > 0:
                return value
            time.sleep(0.05)
        raise AssertionError(f"diagnostics never reported {key}: {self.counts()}")

    def publish_state(self, q: np.ndarray, stamp: float, names=NAMES) -> None:
        msg = JointState(name=list(names), position=[float(v) for v in q])
        ns = int(stamp * 1e9)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 10**9)
        self.joints.publish(msg)

    def close(self) -> None:
        self.spinner.stop()
        self.node.destroy_node()


@pytest.fixture
def listener():
    rclpy.init()
    lst = Listener()
    try:
        yield lst
    finally:
        lst.close()
        rclpy.try_shutdown()


def _stamp(msg: JointTrajectory) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _check_format(msg: JointTrajectory, length: int) -> np.ndarray:
    assert list(msg.joint_names) == NAMES
    assert len(msg.points) == length
    for k, p in enumerate(msg.points):
        t = p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
        assert t == pytest.approx(k * DT, abs=1e-9)
        assert len(p.positions) == len(NAMES)
    return np.array([p.positions for p in msg.points])


def test_replay_publishes_well_formed_chunks_of_the_episode(listener, tmp_path):
    episode = write_episode(tmp_path / "episode_0.hdf5", length=150, names=NAMES, fps=FPS)
    actions = trajectory(150, 0.0, len(NAMES))[1:]
    params = {
        "policy_type": "replay",
        "checkpoint": str(episode),
        "chunk_length": 16,
        "trigger": "rate",
        "rate_hz": 10.0,
        "replay_loop": True,
        "diagnostics_period": 0.2,
    }
    start = time.time()
    with running(node_command("policy_node", params), log=tmp_path / "node.log") as proc:
        msgs = listener.wait_chunks(6)
        code = stop(proc)
    assert code == 0, (tmp_path / "node.log").read_text()
    starts = []
    for msg in msgs:
        rows = _check_format(msg, 16)
        matches = [i for i in range(len(actions)) if np.allclose(rows[0], actions[i], atol=1e-12)]
        assert len(matches) == 1, "the first point is not a step of the episode"
        idx = (matches[0] + np.arange(16)) % len(actions)  # replay_loop wraps around
        np.testing.assert_allclose(rows, actions[idx], atol=1e-12)
        assert start <= _stamp(msg) <= time.time()
        starts.append(matches[0])
    # consecutive chunks start where their stamps say: step index = (stamp - first stamp) / dt
    t0 = _stamp(msgs[0])
    for msg, s in zip(msgs, starts, strict=True):
        assert s == (starts[0] + round((_stamp(msg) - t0) / DT)) % len(actions)
    assert len(set(starts)) == len(starts)


def test_diffusion_policy_refuses_stale_observations(listener, tmp_path):
    from diffog_ros.learning.train import train

    data = write_dataset(tmp_path / "data", episodes=1, length=16, names=NAMES, fps=FPS)
    cfg = {
        "device": "cpu",
        "num_threads": 1,
        "batch_size": 4,
        "val_fraction": 0.0,
        "checkpoint_every": 1000,
        "data": {"cameras": [], "lowdim": ["qpos"]},
        "model": {
            "horizon": 8,
            "n_obs_steps": 2,
            "n_action_steps": 6,
            "down_dims": [16, 32],
            "step_embed_dim": 16,
            "num_train_steps": 10,
            "ddim_steps": 2,
        },
    }
    ckpt = train("diffusion", data, tmp_path / "run", cfg, max_steps=1, progress=False)
    params = {
        "policy_type": "diffusion",
        "checkpoint": str(ckpt),
        "trigger": "rate",
        "rate_hz": 20.0,
        "max_obs_age": 0.5,
        "diagnostics_period": 0.1,
        "num_threads": 1,
    }
    q = trajectory(16, 0.0, len(NAMES))[0]
    with running(node_command("policy_node", params), log=tmp_path / "node.log") as proc:
        listener.wait_count("rejected/missing")  # up and running, nothing observed yet
        for _ in range(40):  # states stamped 5 s in the past
            listener.publish_state(q, time.time() - 5.0)
            time.sleep(0.02)
        listener.wait_count("rejected/stale")
        assert not listener.chunks, "a chunk was computed from a stale observation"
        sent = []
        deadline = time.monotonic() + 60.0
        while not listener.chunks and time.monotonic() < deadline:
            stamp = time.time()
            listener.publish_state(q[::-1], stamp, names=NAMES[::-1])  # any name order is accepted
            sent.append(stamp)
            time.sleep(DT)
        msgs = listener.wait_chunks(1)
        code = stop(proc)
    assert code == 0, (tmp_path / "node.log").read_text()
    rows = _check_format(msgs[0], 6)
    assert np.all(np.isfinite(rows))
    # stamped with the observation time: exactly the stamp of a joint state we sent
    assert min(abs(_stamp(msgs[0]) - s) for s in sent) < 1e-6
