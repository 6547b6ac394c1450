"""``spacemouse_node``: a 3Dconnexion SpaceMouse as ``teleop/twist`` + ``joy`` for the single arm.

Thin rclpy wrapper over :mod:`diffog_ros.teleop.spacemouse` (mapping) and
:class:`diffog_ros.teleop.devices.SpaceMouseReader` (pyspacemouse 2.x, ``HID_Z_UP`` axes):

* ``teleop/twist`` (geometry_msgs/TwistStamped, reliable, ``frame_id`` from config) at
  ``publish_rate_hz``: deadzone, per-axis ``scale`` and ``max_linear_speed`` /
  ``max_angular_speed`` applied. A zero twist is published when the device is lost.
* ``joy`` (sensor_msgs/Joy, reliable): ``axes`` = the six mapped axes in [-1, 1], ``buttons`` =
  logical buttons in the order of ``joy_buttons`` (e.g. gripper_close, gripper_open, record_toggle),
  mapped from the device buttons by ``device_buttons``; published on every change and at 10 Hz.
* A missing device or hidapi library is logged as an error naming the fix (Debian package, udev
  rule) and retried every ``reconnect_period``; the node keeps running.

Threads: the device is polled by a dedicated thread at ``poll_rate_hz`` (pyspacemouse reads are
non-blocking but must be frequent); it publishes directly. The single-threaded executor serves the
parameter services and the diagnostics timer. With no arguments the node loads
``config/spacemouse.yaml``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Joy

from diffog_ros.nodes.default_params import with_default_params_file
from diffog_ros.nodes.diagnostics import publish_status
from diffog_ros.nodes.params import DIAGNOSTICS_PERIOD, ParamDecl, ValidatedParameters
from diffog_ros.nodes.spin import spin_node
from diffog_ros.teleop.devices import DeviceError, SpaceMouseReader
from diffog_ros.teleop.spacemouse import ButtonMapper, SpaceMouseMapping

NODE_NAME = "spacemouse"
DEFAULT_PARAMS_FILE = "spacemouse.yaml"
_T = Parameter.Type

PARAMS = (
    ParamDecl(
        "device", _T.STRING, "pyspacemouse device name ('' = first found)", "", read_only=True
    ),
    ParamDecl(
        "device_index", _T.INTEGER, "which of several identical devices", 0, (0, 16), read_only=True
    ),
    ParamDecl(
        "frame_id", _T.STRING, "frame of the twist (the arm's base frame)", "", read_only=True
    ),
    ParamDecl(
        "poll_rate_hz", _T.DOUBLE, "device polling rate [Hz]", 200.0, (1.0, 1000.0), read_only=True
    ),
    ParamDecl(
        "publish_rate_hz",
        _T.DOUBLE,
        "twist publishing rate [Hz]",
        50.0,
        (1.0, 1000.0),
        read_only=True,
    ),
    ParamDecl(
        "deadzone", _T.DOUBLE, "axis deadzone (fraction of full deflection)", 0.1, (0.0, 0.99)
    ),
    ParamDecl(
        "scale",
        _T.DOUBLE_ARRAY,
        "per-axis gain and sign for x y z roll pitch yaw (6 values)",
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    ),
    ParamDecl("max_linear_speed", _T.DOUBLE, "speed at full deflection [m/s]", 0.1, (0.0, 2.0)),
    ParamDecl(
        "max_angular_speed", _T.DOUBLE, "angular speed at full deflection [rad/s]", 0.5, (0.0, 10.0)
    ),
    ParamDecl(
        "device_buttons",
        _T.STRING_ARRAY,
        "action of each device button: none, gripper_close, gripper_open, gripper_toggle, "
        "record_start, record_stop, record_toggle, record_discard",
        ["gripper_toggle", "record_toggle"],
    ),
    ParamDecl(
        "joy_buttons",
        _T.STRING_ARRAY,
        "logical buttons published in joy, in order",
        ["gripper_close", "gripper_open", "record_toggle"],
        read_only=True,
    ),
    ParamDecl(
        "reconnect_period",
        _T.DOUBLE,
        "retry opening a missing device this often [s]",
        2.0,
        (0.1, 60.0),
    ),
    DIAGNOSTICS_PERIOD,
)


@dataclass(frozen=True)
class SpaceMouseParams:
    values: Mapping[str, Any]
    mapping: SpaceMouseMapping

    @staticmethod
    def build(values: Mapping[str, Any]) -> SpaceMouseParams:
        v = dict(values)
        for name in ("scale", "device_buttons", "joy_buttons"):
            v[name] = list(v[name] or [])
        mapping = SpaceMouseMapping(
            float(v["deadzone"]),
            tuple(v["scale"]),
            float(v["max_linear_speed"]),
            float(v["max_angular_speed"]),
        )
        ButtonMapper(v["device_buttons"], v["joy_buttons"])  # validates the button tables
        return SpaceMouseParams(v, mapping)


class SpaceMouseNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self._params = ValidatedParameters(self, PARAMS, build=SpaceMouseParams.build)
        v = self._params.current.values
        self.reader = SpaceMouseReader(v["device"], v["device_index"])
        self._buttons = ButtonMapper(v["device_buttons"], v["joy_buttons"])
        self._buttons_source = tuple(v["device_buttons"])
        reliable = QoSProfile(
            depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        self._twist_pub = self.create_publisher(TwistStamped, "teleop/twist", reliable)
        self._joy_pub = self.create_publisher(Joy, "joy", reliable)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._stop = threading.Event()
        self.counts = {"reads": 0, "twists": 0, "joy": 0, "open_failures": 0, "read_failures": 0}
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="spacemouse-poll", daemon=True)
        self.create_timer(v["diagnostics_period"], self._on_diagnostics)
        self._thread.start()

    # ------------------------------------------------------------------ device loop
    def _open(self) -> bool:
        try:
            self.reader.open()
        except DeviceError as exc:
            self.counts["open_failures"] += 1
            if str(exc) != self.last_error:
                self.get_logger().error(f"SpaceMouse unavailable: {exc}")
            self.last_error = str(exc)
            return False
        self.get_logger().info("SpaceMouse connected (pyspacemouse, HID_Z_UP axes)")
        self.last_error = ""
        return True

    def _run(self) -> None:
        v = self._params.current.values
        poll = 1.0 / v["poll_rate_hz"]
        publish_every = 1.0 / v["publish_rate_hz"]
        next_pub = next_joy = time.monotonic()
        last_logical: list[int] | None = None
        axes = [0.0] * 6
        while not self._stop.is_set():
            if not self.reader.is_open:
                self._publish_twist([0.0] * 6)  # device lost: command no motion
                if not self._open():
                    self._stop.wait(self._params.current.values["reconnect_period"])
                    continue
            try:
                axes, device_buttons = self.reader.read()
                self.counts["reads"] += 1
            except DeviceError as exc:
                self.counts["read_failures"] += 1
                self.last_error = str(exc)
                self.get_logger().error(f"{exc}; reopening")
                continue
            p = self._params.current  # applied between reads
            if tuple(p.values["device_buttons"]) != self._buttons_source:
                self._buttons = ButtonMapper(p.values["device_buttons"], p.values["joy_buttons"])
                self._buttons_source = tuple(p.values["device_buttons"])
            logical = self._buttons.update(device_buttons)
            now = time.monotonic()
            if now >= next_pub:
                self._publish_twist(p.mapping.twist(axes))
                next_pub = max(next_pub + publish_every, now - publish_every)
            if logical != last_logical or now >= next_joy:
                self._publish_joy(p.mapping, axes, logical)
                last_logical = logical
                next_joy = now + 0.1
            self._stop.wait(poll)

    def _publish_twist(self, v: Any) -> None:
        if not self.context.ok():
            return
        msg = TwistStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self._params.current.values["frame_id"]
        t = msg.twist
        t.linear.x, t.linear.y, t.linear.z = float(v[0]), float(v[1]), float(v[2])
        t.angular.x, t.angular.y, t.angular.z = float(v[3]), float(v[4]), float(v[5])
        self._twist_pub.publish(msg)
        self.counts["twists"] += 1

    def _publish_joy(
        self, mapping: SpaceMouseMapping, axes: list[float], logical: list[int]
    ) -> None:
        if not self.context.ok():
            return
        lin, ang = mapping.max_linear_speed or 1.0, mapping.max_angular_speed or 1.0
        twist = mapping.twist(axes)
        msg = Joy()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.axes = [float(x / lin) for x in twist[:3]] + [float(x / ang) for x in twist[3:]]
        msg.buttons = [int(b) for b in logical]
        self._joy_pub.publish(msg)
        self.counts["joy"] += 1

    def _on_diagnostics(self) -> None:
        ok = self.reader.is_open
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if ok else DiagnosticStatus.ERROR,
            name=f"{self.get_name()}: spacemouse",
            message="connected" if ok else self.last_error,
            hardware_id="spacemouse",
            values=[KeyValue(key=k, value=str(c)) for k, c in self.counts.items()]
            + [
                KeyValue(key="connected", value=str(ok).lower()),
                KeyValue(key="last_error", value=self.last_error),
            ],
        )
        publish_status(self, self._diag_pub, status)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.reader.close()


def main(args: list[str] | None = None) -> int:
    code = spin_node(
        SpaceMouseNode,
        lambda: SingleThreadedExecutor(),
        NODE_NAME,
        with_default_params_file(args, DEFAULT_PARAMS_FILE),
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
