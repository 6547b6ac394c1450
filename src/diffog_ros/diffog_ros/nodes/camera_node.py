"""``camera_node``: publishes one camera as ``<camera>/image_raw`` + ``<camera>/camera_info``.

Thin rclpy wrapper over :mod:`diffog_ros.sensors.camera`:

* ``source:=device``: an OpenCV / V4L2 device (``device:=0`` or ``device:=/dev/video2``) opened with
  the requested ``width``, ``height``, ``fps`` and ``fourcc`` (MJPG by default);
  ``source:=file``: a video file (``video_path``), looped, played at its own rate or ``fps``.
* Images are sensor_msgs/Image ``rgb8`` with sensor-data QoS, stamped with the capture time;
  ``output_width`` / ``output_height`` downscale them (for the policy) and camera_info is scaled
  to match. A lost device or file is reopened with exponential backoff; dropped frames, failed
  reads and reconnects are counted in ``/diagnostics``. A camera fault never stops the node.
* The simulated ALOHA cameras are rendered by ``controller_node`` (it owns the physics: its
  ``publish_cameras`` parameter); camera_node is not needed for the simulator.

Threads: frames are read and published by a dedicated capture thread (a device read blocks until
the next frame); the executor (single-threaded: only the diagnostics timer and parameter services
run on it) never waits for the camera.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from diffog_ros.nodes.diagnostics import publish_status
from diffog_ros.nodes.params import DIAGNOSTICS_PERIOD, ParamDecl, ValidatedParameters
from diffog_ros.nodes.spin import spin_node
from diffog_ros.sensors.camera import (
    CameraStream,
    OpenCVDevice,
    VideoFile,
    parse_device,
    resize_for_output,
    scaled_intrinsics,
)

NODE_NAME = "camera"
SOURCES = ("device", "file")
_T = Parameter.Type

PARAMS = (
    ParamDecl(
        "camera_name",
        _T.STRING,
        "topics are <camera_name>/image_raw and /camera_info",
        "cam_high",
        read_only=True,
    ),
    ParamDecl("frame_id", _T.STRING, "header frame_id ('' = camera_name)", "", read_only=True),
    ParamDecl(
        "source",
        _T.STRING,
        "frame source",
        "device",
        constraints=f"one of {list(SOURCES)}",
        read_only=True,
    ),
    ParamDecl(
        "device", _T.STRING, "device index ('0') or path ('/dev/video0')", "0", read_only=True
    ),
    ParamDecl("video_path", _T.STRING, "video file for source=file", "", read_only=True),
    ParamDecl(
        "loop", _T.BOOL, "replay the video file from the start at its end", True, read_only=True
    ),
    ParamDecl(
        "width",
        _T.INTEGER,
        "requested device width [px] (0 = device default)",
        0,
        (0, 8192),
        read_only=True,
    ),
    ParamDecl(
        "height",
        _T.INTEGER,
        "requested device height [px] (0 = device default)",
        0,
        (0, 8192),
        read_only=True,
    ),
    ParamDecl(
        "fps",
        _T.DOUBLE,
        "requested device rate / file playback rate [Hz] (0 = native)",
        0.0,
        (0.0, 240.0),
        read_only=True,
    ),
    ParamDecl(
        "fourcc",
        _T.STRING,
        "device pixel format (e.g. MJPG, YUYV; '' = default)",
        "MJPG",
        read_only=True,
    ),
    ParamDecl("output_width", _T.INTEGER, "published width [px] (0 = keep / aspect)", 0, (0, 8192)),
    ParamDecl(
        "output_height", _T.INTEGER, "published height [px] (0 = keep / aspect)", 0, (0, 8192)
    ),
    ParamDecl(
        "camera_matrix",
        _T.DOUBLE_ARRAY,
        "intrinsics K (9 values, row-major, capture resolution); empty = unknown",
        [],
    ),
    ParamDecl("distortion", _T.DOUBLE_ARRAY, "plumb_bob distortion coefficients", []),
    ParamDecl("reconnect_initial", _T.DOUBLE, "first reconnect delay [s]", 0.5, (0.01, 60.0)),
    ParamDecl("reconnect_max", _T.DOUBLE, "longest reconnect delay [s]", 5.0, (0.01, 600.0)),
    DIAGNOSTICS_PERIOD,
)


@dataclass(frozen=True)
class CameraParams:
    values: Mapping[str, Any]

    @staticmethod
    def build(values: Mapping[str, Any]) -> CameraParams:
        v = dict(values)
        for name in ("camera_matrix", "distortion"):
            v[name] = list(v[name] or [])
        problems = []
        if v["source"] not in SOURCES:
            problems.append(f"source must be one of {list(SOURCES)}, got {v['source']!r}")
        if v["source"] == "file" and not v["video_path"]:
            problems.append("source=file needs video_path")
        if v["source"] == "device":
            try:
                parse_device(v["device"])
            except ValueError as exc:
                problems.append(str(exc))
        if v["fourcc"] and len(v["fourcc"]) != 4:
            problems.append(f"fourcc must have 4 characters, got {v['fourcc']!r}")
        if v["camera_matrix"] and len(v["camera_matrix"]) != 9:
            problems.append(f"camera_matrix needs 9 values, got {len(v['camera_matrix'])}")
        if v["reconnect_initial"] > v["reconnect_max"]:
            problems.append("reconnect_initial must be <= reconnect_max")
        if not v["camera_name"] or "/" in v["camera_name"].strip("/"):
            problems.append(f"camera_name must be a plain name, got {v['camera_name']!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return CameraParams(v)


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self._params = ValidatedParameters(self, PARAMS, build=CameraParams.build)
        v = self._params.current.values
        self.camera = v["camera_name"].strip("/")
        self.frame_id = v["frame_id"] or self.camera
        if v["source"] == "file":
            source = VideoFile(v["video_path"], loop=v["loop"], fps=v["fps"])
        else:
            source = OpenCVDevice(
                parse_device(v["device"]), v["width"], v["height"], v["fps"], v["fourcc"]
            )
        self.stream = CameraStream(
            source,
            reconnect_initial=v["reconnect_initial"],
            reconnect_max=v["reconnect_max"],
            clock=lambda: self.get_clock().now().nanoseconds * 1e-9,
        )
        self._image_pub = self.create_publisher(
            Image, f"{self.camera}/image_raw", qos_profile_sensor_data
        )
        self._info_pub = self.create_publisher(
            CameraInfo, f"{self.camera}/camera_info", qos_profile_sensor_data
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._stop = threading.Event()
        self._published = 0
        self._thread = threading.Thread(
            target=self._capture_loop, name="camera-capture", daemon=True
        )
        self.create_timer(v["diagnostics_period"], self._on_diagnostics)
        self._thread.start()
        self.get_logger().info(
            f"camera {self.camera}: {source.name} -> {self._image_pub.topic_name} (rgb8, sensor-data QoS)"
        )

    def _capture_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.stream.next_frame()
                if frame is not None:
                    self._publish(frame.image, frame.stamp)
            except Exception as exc:  # noqa: BLE001 - never die of a camera fault
                self.get_logger().error(f"capture loop error (continuing): {exc!r}")
                self._stop.wait(0.5)

    def _publish(self, image: Any, stamp: float) -> None:
        v = self._params.current.values  # applied between frames
        h0, w0 = image.shape[:2]
        out = resize_for_output(image, v["output_width"], v["output_height"])
        h, w = out.shape[:2]
        msg = Image()
        sec = int(stamp)
        msg.header.stamp.sec, msg.header.stamp.nanosec = (
            sec,
            int(round((stamp - sec) * 1e9)) % 1_000_000_000,
        )
        msg.header.frame_id = self.frame_id
        msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = h, w, "rgb8", 0, w * 3
        msg.data = out.tobytes()
        info = CameraInfo(header=msg.header, height=h, width=w)
        if v["camera_matrix"]:
            k = scaled_intrinsics(list(v["camera_matrix"]), w / w0, h / h0)
            info.k = k
            info.p = [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            info.distortion_model = "plumb_bob"
            info.d = [float(x) for x in v["distortion"]] or [0.0] * 5
        if not self.context.ok():
            return
        self._image_pub.publish(msg)
        self._info_pub.publish(info)
        self._published += 1

    def _on_diagnostics(self) -> None:
        s = self.stream.stats
        level = DiagnosticStatus.OK if s.connected else DiagnosticStatus.ERROR
        if s.connected and s.dropped:
            level = DiagnosticStatus.WARN
        values = {
            "connected": str(s.connected).lower(),
            "published": str(self._published),
            "frames": str(s.frames),
            "dropped": str(s.dropped),
            "read_failures": str(s.read_failures),
            "open_failures": str(s.open_failures),
            "reconnects": str(s.reconnects),
            "last_error": s.last_error,
            "source": self.stream.source.name,
        }
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: {self.camera}",
            message="streaming" if s.connected else f"disconnected: {s.last_error}",
            hardware_id=self.stream.source.name,
            values=[KeyValue(key=k, value=val) for k, val in values.items()],
        )
        publish_status(self, self._diag_pub, status)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.stream.close()


def main(args: list[str] | None = None) -> int:
    code = spin_node(CameraNode, lambda: SingleThreadedExecutor(), NODE_NAME, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
