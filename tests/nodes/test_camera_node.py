"""camera_node as a real process: streams a real video file at its rate (downscaled, with a scaled
camera_info) and survives the file vanishing and coming back."""

from __future__ import annotations

import subprocess
import threading
import time

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from support.procs import node_command, running

from diffog_ros.nodes.spin import BackgroundSpinner

pytestmark = [pytest.mark.ros, pytest.mark.slow]

FPS = 20.0
K = [80.0, 0.0, 32.0, 0.0, 80.0, 24.0, 0.0, 0.0, 1.0]


def write_video(path, n: int = 10) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    assert w.isOpened()
    for i in range(n):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :, 2] = 200  # red in OpenCV's BGR order
        frame[:, :, 1] = 20 * i
        w.write(frame)
    w.release()


class Watcher:
    def __init__(self, camera: str) -> None:
        self.node = rclpy.create_node("camera_test_watcher")
        self.images: list[tuple[float, float, Image]] = []  # (received, stamp, msg)
        self.infos: list[CameraInfo] = []
        self.diag: dict[str, str] = {}
        self.lock = threading.Lock()
        self.node.create_subscription(
            Image, f"/{camera}/image_raw", self._on_image, qos_profile_sensor_data
        )
        self.node.create_subscription(
            CameraInfo, f"/{camera}/camera_info", self.infos.append, qos_profile_sensor_data
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    def _on_image(self, msg: Image) -> None:
        with self.lock:
            self.images.append(
                (time.monotonic(), msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec, msg)
            )

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if "camera" in st.name:
                self.diag = {kv.key: kv.value for kv in st.values}

    def count(self) -> int:
        with self.lock:
            return len(self.images)

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        self.spinner.stop()
        self.node.destroy_node()


def test_camera_node_streams_a_video_file_and_survives_it_vanishing(tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video)
    cmd = node_command(
        "camera_node",
        {
            "source": "file",
            "video_path": str(video),
            "camera_name": "cam_test",
            "output_width": 32,
            "camera_matrix": K,
            "reconnect_initial": 0.2,
            "reconnect_max": 0.5,
            "diagnostics_period": 0.2,
        },
    )
    rclpy.init()
    watcher = Watcher("cam_test")
    try:
        with running(cmd, log=tmp_path / "camera.log") as proc:
            watcher.wait(lambda: watcher.count() >= 50, 60, "50 frames")
            with watcher.lock:
                frames = list(watcher.images)
            msg = frames[-1][2]
            assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 32, 24, 96)
            img = np.frombuffer(bytes(msg.data), np.uint8).reshape(24, 32, 3)
            assert img[..., 0].mean() > 150 and img[..., 2].mean() < 50  # red stays red (RGB)
            stamps = np.array([s for _r, s, _m in frames])
            assert np.all(np.diff(stamps) > 0)
            rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
            assert abs(rate - FPS) < 0.15 * FPS, f"{rate:.1f} Hz"
            greens = {
                int(np.frombuffer(bytes(m.data), np.uint8).reshape(24, 32, 3)[..., 1].mean() + 10)
                // 20
                for _r, _s, m in frames
            }
            assert len(greens) >= 8  # the clip's frames, looped
            info = watcher.infos[-1]
            assert (info.width, info.height) == (32, 24)
            np.testing.assert_allclose(info.k, [40.0, 0.0, 16.0, 0.0, 40.0, 12.0, 0.0, 0.0, 1.0])

            # The file vanishes: the stream stops (after the pass already open), the node lives.
            video.rename(tmp_path / "gone.mp4")

            def quiet_for(seconds: float) -> bool:
                with watcher.lock:
                    last = watcher.images[-1][0]
                return time.monotonic() - last > seconds

            watcher.wait(lambda: quiet_for(1.0), 10, "the stream to stop")
            watcher.wait(
                lambda: watcher.diag.get("connected") == "false", 10, "disconnected diagnostics"
            )
            assert "not found" in watcher.diag["last_error"]
            assert proc.poll() is None

            # ... and comes back: streaming resumes.
            before = watcher.count()
            (tmp_path / "gone.mp4").rename(video)
            watcher.wait(
                lambda: watcher.count() >= before + 20, 20, "frames after the file came back"
            )
            watcher.wait(lambda: int(watcher.diag.get("reconnects", 0)) >= 1, 10, "reconnect count")
            assert proc.poll() is None
    finally:
        watcher.close()
        rclpy.try_shutdown()
    assert proc.returncode == 0, (tmp_path / "camera.log").read_text()


def test_invalid_start_parameters_are_refused_with_a_reason(tmp_path):
    cmd = node_command("camera_node", {"source": "file"})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "needs video_path" in proc.stdout + proc.stderr
