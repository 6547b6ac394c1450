"""recorder_node as a real process over real DDS, writing real HDF5 files.

* Three episodes of the simulated ALOHA (controller_node, backend aloha_sim, one rendered camera)
  recorded through the graph: they pass ``diffog-ros data validate``, have the specified layout,
  dtypes and attrs, increasing timestamps and a rate within 10 % of the target; what was
  recorded is what the controller published; silent topics are reported, not waited for.
* SIGKILL mid-episode: earlier episodes byte-identical, the interrupted one repairable with all
  but (at most) the last second; the dataset is resumed by the next recorder.
* A full disk (2 MB tmpfs): recording stops with a clear error and the rows written are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from data.episodes import tiny_tmpfs
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String
from std_srvs.srv import Trigger
from support.procs import BIN, node_command, running
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

import diffog_ros
from diffog_ros.data.dataset import episode_attrs, list_episodes, load_episode
from diffog_ros.nodes.spin import BackgroundSpinner
from diffog_ros.robots.config import load_robot_config

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PEER = Path(__file__).with_name("recorder_peer.py")
SIM_JOINTS = list(load_robot_config("aloha_sim.yaml").names)
RATE = 50.0


class Client:
    """The test's own ROS node: services, joy, status, parameters and a joint_states log."""

    def __init__(self, recorder: str = "/recorder") -> None:
        self.node = rclpy.create_node(f"recorder_test_{os.getpid()}")
        n = self.node
        self.calls = {
            name: n.create_client(Trigger, f"{recorder}/{name}")
            for name in ("start", "stop", "discard")
        }
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.status: dict = {}
        self.statuses: list[dict] = []
        n.create_subscription(String, f"{recorder}/status", self._on_status, latched)
        self.joint_states: list[tuple[float, tuple[float, ...]]] = []
        n.create_subscription(JointState, "/joint_states", self._on_js, qos_profile_sensor_data)
        self.joy = n.create_publisher(Joy, "/joy", 10)
        self.raw = n.create_publisher(JointTrajectory, "/action_chunk/raw", 10)
        self.opt = n.create_publisher(JointTrajectory, "/action_chunk", 10)
        self.params = AsyncParameterClient(n, recorder)
        self.lock = threading.Lock()
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        self.spinner = BackgroundSpinner(self.executor)

    def _on_status(self, msg: String) -> None:
        with self.lock:
            self.status = json.loads(msg.data)
            self.statuses.append(self.status)

    def _on_js(self, msg: JointState) -> None:
        with self.lock:
            self.joint_states.append(
                (msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec, tuple(msg.position))
            )

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def call(self, name: str, timeout: float = 30.0) -> Trigger.Response:
        client = self.calls[name]
        assert client.wait_for_service(timeout_sec=timeout), f"{name} service not available"
        future = client.call_async(Trigger.Request())
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(timeout), f"{name} call timed out"
        return future.result()

    def set_params(self, **values) -> list:
        params = [Parameter(k, value=v) for k, v in values.items()]
        future = self.params.set_parameters(params)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(20.0)
        return list(future.result().results)

    def press(self, button: int) -> None:
        for pressed in (0, 1, 0):
            buttons = [0] * 4
            buttons[button] = pressed
            self.joy.publish(Joy(buttons=buttons))
            time.sleep(0.1)

    def publish_chunks(self, names: list[str], stop_event: threading.Event) -> None:
        """Hold-position chunks (raw = optimised) from the newest joint state, at 5 Hz."""
        while not stop_event.is_set():
            with self.lock:
                last = self.joint_states[-1][1] if self.joint_states else None
            if last is not None:
                msg = JointTrajectory(joint_names=names)
                msg.header.stamp = self.node.get_clock().now().to_msg()
                for k in range(10):
                    p = JointTrajectoryPoint(positions=[float(v) for v in last])
                    p.time_from_start.nanosec = int(k * 20_000_000)
                    msg.points.append(p)
                self.raw.publish(msg)
                self.opt.publish(msg)
            stop_event.wait(0.2)

    def close(self) -> None:
        self.spinner.stop()
        self.node.destroy_node()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def validate_cli(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "diffog-ros"), "data", "validate", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def recorder_cmd(out: Path, **params) -> list[str]:
    base = {"output_dir": str(out), "min_free_mb": 1.0, "trajopt_node": ""}
    base.update(params)
    return node_command("recorder_node", base)


def peer_cmd(**cfg) -> list[str]:
    return [sys.executable, str(PEER), json.dumps(cfg)]


# ----------------------------------------------------------------------------- aloha_sim
def test_three_sim_episodes_through_the_graph(ros, tmp_path):
    out = tmp_path / "dataset"
    controller = node_command(
        "controller_node",
        {
            "backend": "aloha_sim",
            "publish_cameras": ["cam_high"],
            "camera_rate_hz": 10.0,
            "camera_width": 64,
            "camera_height": 48,
        },
    )
    recorder = recorder_cmd(
        out,
        robot_config="aloha_sim.yaml",
        sim=True,
        task="transfer_cube",
        start_button=0,
        stop_button=1,
        max_age=0.25,
        mcap_log=True,
    )
    client = Client()
    stop_chunks = threading.Event()
    with (
        running(controller, log=tmp_path / "controller.log") as ctl,
        running(recorder, log=tmp_path / "recorder.log") as rec,
    ):
        try:
            client.wait_for(lambda: len(client.joint_states) > 20, 90, "controller joint states")
            client.wait_for(lambda: client.status.get("state") == "idle", 60, "recorder ready")
            chunks = threading.Thread(target=client.publish_chunks, args=(SIM_JOINTS, stop_chunks))
            chunks.start()
            # Refused parameter changes leave the old values; a valid one is used next episode.
            results = client.set_params(max_age=0.0, flush_period=5.0)
            assert not any(r.successful for r in results)
            assert client.set_params(metadata="operator: test")[0].successful
            saved = []
            for episode in range(3):
                if episode < 2:
                    res = client.call("start")
                    assert res.success, res.message
                else:  # the third one through joy buttons (start_button 0, stop_button 1)
                    client.press(0)
                    client.wait_for(
                        lambda: client.status.get("state") == "recording", 20, "joy start"
                    )
                time.sleep(2.0)
                if episode < 2:
                    res = client.call("stop")
                    assert res.success, res.message
                else:
                    client.press(1)
                client.wait_for(
                    lambda: (
                        client.status.get("state") == "idle"
                        and client.status.get("last_saved")
                        and client.status["last_saved"] not in saved
                    ),
                    30,
                    "episode saved",
                )
                saved.append(client.status["last_saved"])
            assert ctl.poll() is None and rec.poll() is None
        finally:
            stop_chunks.set()
            client.close()
    log = (tmp_path / "recorder.log").read_text()
    files = list_episodes(out)
    assert [p.name for p in files] == ["episode_0.hdf5", "episode_1.hdf5", "episode_2.hdf5"]
    assert [str(p) for p in files] == saved
    proc = validate_cli(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    states = {stamp: pos for stamp, pos in client.joint_states}
    for path in files:
        data = load_episode(path)
        attrs = episode_attrs(path)
        T = data["timestamps"].shape[0]
        assert T > 50
        for key in (
            "observations/qpos",
            "observations/qvel",
            "action",
            "action_raw",
            "action_optimized",
        ):
            assert data[key].shape == (T, len(SIM_JOINTS)), key
            assert data[key].dtype == np.float64, key
        img = data["observations/images/cam_high"]
        assert img.shape == (T, 48, 64, 3) and img.dtype == np.uint8
        assert img[data["valid/cam_high"]].max() > 0  # real rendered frames
        ts = data["timestamps"]
        assert ts.dtype == np.float64 and np.all(np.diff(ts) > 0)
        # Rows sit on the sampler's even schedule (gaps only where ticks were skipped).
        steps = np.diff(ts) * RATE
        assert np.allclose(steps, np.round(steps), rtol=0, atol=1e-3), (
            steps
        )  # 20 us; epoch ulp ~0.2 us
        rate = (T - 1) / (ts[-1] - ts[0])
        assert abs(rate - RATE) <= 0.1 * RATE, f"{path.name}: {rate:.1f} Hz"
        # Layout attrs as specified.
        assert attrs["sim"] is True and attrs["compress"] is False
        assert attrs["fps"] == RATE and attrs["robot"] == "aloha_sim"
        assert attrs["task"] == "transfer_cube"
        assert attrs["joint_names"] == SIM_JOINTS
        assert attrs["software_version"] == diffog_ros.__version__
        assert attrs["trajopt_params"] == {}
        assert attrs["metadata"] == {"text": "operator: test"}
        assert attrs["low_rate"] is False
        silent = set(attrs["silent_topics"])
        assert {
            "/cam_low/image_raw",
            "/cam_left_wrist/image_raw",
            "/teleop/joint_command",
        } <= silent
        assert "/joint_states" not in silent
        # Recorded values are the controller's messages (found among what the test received).
        valid = np.flatnonzero(data["valid/qpos"])
        assert valid.size > 0.9 * T
        matches = sum(
            any(np.array_equal(data["observations/qpos"][i], pos) for pos in states.values())
            for i in valid[:: max(1, valid.size // 10)]
        )
        assert matches >= 8
        # The scheduled chunk actions are the held positions they were built from.
        ok = data["valid/action_raw"] & data["valid/action_optimized"]
        assert ok.mean() > 0.5
        np.testing.assert_allclose(data["action_raw"][ok], data["action_optimized"][ok])
    assert "silent topics" in log
    # The optional raw MCAP log of each episode decodes as ROS 2 messages.
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    for path in files:
        with open(path.with_suffix(".mcap"), "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            topics = [ch.topic for _s, ch, _r, _m in reader.iter_decoded_messages()]
        assert topics.count("/joint_states") > 50 and "/cam_high/image_raw" in topics


# ----------------------------------------------------------------------------- SIGKILL
def test_sigkill_mid_episode_then_repair_and_resume(ros, tmp_path):
    out = tmp_path / "dataset"
    cams = {"cam_high": [48, 64]}
    recorder = recorder_cmd(out, live_wait=2.0, camera_names=["cam_high"], flush_period=0.5)
    client = Client()
    try:
        proc = subprocess.Popen(
            recorder,
            stdout=open(tmp_path / "recorder.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            client.wait_for(lambda: client.status.get("state") == "idle", 60, "recorder ready")
            res = client.call("start")  # nothing is publishing yet
            assert not res.success and "no configured topic is live" in res.message
            with running(peer_cmd(cameras=cams, rate=RATE), log=tmp_path / "peer.log"):
                client.wait_for(lambda: len(client.joint_states) > 10, 60, "peer joint states")
                assert client.call("start").success
                time.sleep(1.5)
                assert client.call("stop").success
                first = out / "episode_0.hdf5"
                digest = sha(first)
                res = client.call("start")
                assert res.success, res.message
                started = time.time()
                time.sleep(3.0)
                killed = time.time()
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    finally:
        client.close()
    tmp = out / "episode_1.hdf5.tmp"
    assert tmp.exists() and not (out / "episode_1.hdf5").exists()
    assert validate_cli(out).returncode != 0  # the interrupted file is a defect until repaired
    rep = subprocess.run(
        [str(BIN / "diffog-ros"), "data", "repair", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert sha(first) == digest
    assert validate_cli(out).returncode == 0
    data = load_episode(out / "episode_1.hdf5")
    ts = data["timestamps"]
    assert ts[0] - started < 1.0
    assert killed - ts[-1] <= 1.0 + 0.25, f"lost {killed - ts[-1]:.2f} s"  # at most the last second
    assert episode_attrs(out / "episode_1.hdf5")["status"] == "repaired"
    # A new recorder resumes the dataset: numbering continues, nothing earlier is touched.
    digests = {p.name: sha(p) for p in list_episodes(out)}
    client = Client()
    try:
        with (
            running(peer_cmd(rate=RATE), log=tmp_path / "peer2.log"),
            running(
                recorder_cmd(out, live_wait=2.0, camera_names=["cam_high"]),
                log=tmp_path / "rec2.log",
            ) as rec,
        ):
            client.wait_for(lambda: client.status.get("state") == "idle", 60, "recorder ready")
            client.wait_for(lambda: len(client.joint_states) > 10, 60, "peer joint states")
            assert client.call("start").success
            time.sleep(0.5)
            res = client.call("stop")
            assert res.success and "episode_2.hdf5" in res.message
            assert episode_attrs(out / "episode_2.hdf5")["silent_topics"][0] == "/action_chunk"
            assert "/cam_high/image_raw" in episode_attrs(out / "episode_2.hdf5")["silent_topics"]
            assert rec.poll() is None
    finally:
        client.close()
    for name, d in digests.items():
        assert sha(out / name) == d


# ----------------------------------------------------------------------------- full disk
def test_full_disk_stops_recording_with_a_clear_error(ros, tmp_path):
    with tiny_tmpfs(tmp_path / "disk") as disk:
        recorder = recorder_cmd(disk, camera_names=["cam_high"], min_free_mb=0.3, live_wait=2.0)
        client = Client()
        try:
            with (
                running(
                    peer_cmd(cameras={"cam_high": [48, 64]}, camera_rate=30),
                    log=tmp_path / "peer.log",
                ),
                running(recorder, log=tmp_path / "recorder.log") as rec,
            ):
                client.wait_for(lambda: client.status.get("state") == "idle", 60, "recorder ready")
                client.wait_for(lambda: len(client.joint_states) > 10, 60, "peer joint states")
                res = client.call("start")
                assert res.success, res.message
                client.wait_for(
                    lambda: client.status.get("state") == "idle" and client.status.get("error"),
                    60,
                    "disk-full stop",
                )
                error = client.status["error"]
                assert "disk full" in error
                saved = client.status["last_saved"]
                res = client.call("start")  # refused with the reason while the disk is full
                assert not res.success and "free" in res.message
                assert rec.poll() is None  # the node survives
            code = rec.returncode
        finally:
            client.close()
        assert code == 0, (tmp_path / "recorder.log").read_text()
        assert saved and Path(saved).exists()
        assert validate_cli(saved).returncode == 0
        data = load_episode(saved)
        assert data["timestamps"].shape[0] > 10
        assert "disk full" in episode_attrs(saved)["stop_reason"]
        assert "disk full" in (tmp_path / "recorder.log").read_text()
