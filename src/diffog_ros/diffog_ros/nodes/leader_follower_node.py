"""``leader_follower_node``: ALOHA leader arms (wx250s, torque off) -> ``teleop/joint_command``.

Thin rclpy wrapper over :mod:`diffog_ros.teleop.leader_follower` (mapping, start gesture) and a
leader reader:

* ``reader:=interbotix`` (default): :class:`diffog_ros.teleop.devices.InterbotixLeaderArms`, the
  Interbotix Python API as the ALOHA stack uses it; its set-up calls put the arms in 'pwm' mode
  with torque off (``leader_setup``).
* ``reader:=topic``: subscribe ``/<leader_robot_name>/<joint_states_topic>`` published by the
  leaders' xs_sdk drivers (start those with a torque-off mode config).

Every ``1 / rate_hz`` s the leaders are read; until the start gesture (both leader grippers closed
for ``gesture_hold`` s) nothing is commanded, afterwards ``teleop/joint_command``
(sensor_msgs/JointState, reliable; names = the follower robot config's actions, arm joints in rad,
grippers normalised) goes to controller_node, whose safety layer clamps and rate-limits it.
``joy`` (sensor_msgs/Joy) carries one button: 1 while both leader grippers are closed -- the
recorder's ``start_button: 0`` turns the gesture into "start recording". Stale (older than
``max_leader_age``) or invalid leader readings are not forwarded; they are counted by reason.

Threads: one mutually exclusive group for the follow timer (reads, maps, publishes), another for the
leader subscriptions (topic reader) and diagnostics, on a ``CooperativeMultiThreadedExecutor``
(nodes/spin.py). With no arguments the node loads ``config/teleop_aloha.yaml``.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState, Joy

from diffog_ros.nodes.default_params import with_default_params_file
from diffog_ros.nodes.diagnostics import publish_status
from diffog_ros.nodes.params import DIAGNOSTICS_PERIOD, ParamDecl, ValidatedParameters
from diffog_ros.nodes.spin import CooperativeMultiThreadedExecutor, spin_node
from diffog_ros.robots.config import RobotConfigError, load_robot_config
from diffog_ros.teleop.devices import DeviceError, InterbotixLeaderArms, parse_setup_calls
from diffog_ros.teleop.leader_follower import (
    LeaderFollowerConfig,
    LeaderFollowerMap,
    LeaderReading,
    StartGesture,
)

NODE_NAME = "leader_follower"
DEFAULT_PARAMS_FILE = "teleop_aloha.yaml"
READERS = ("interbotix", "topic")
_T = Parameter.Type

PARAMS = (
    ParamDecl(
        "robot_config",
        _T.STRING,
        "follower robot config: action names",
        "aloha.yaml",
        read_only=True,
    ),
    ParamDecl(
        "reader",
        _T.STRING,
        "how leaders are read",
        "interbotix",
        constraints=f"one of {list(READERS)}",
        read_only=True,
    ),
    ParamDecl(
        "leader_model", _T.STRING, "Interbotix model of the leaders", "wx250s", read_only=True
    ),
    ParamDecl(
        "interbotix_node_name",
        _T.STRING,
        "name of the Interbotix global node",
        "diffog_aloha_leaders",
        read_only=True,
    ),
    ParamDecl(
        "leader_prefixes",
        _T.STRING_ARRAY,
        "action-name prefix of each leader arm",
        [],
        read_only=True,
    ),
    ParamDecl(
        "leader_robot_names",
        _T.STRING_ARRAY,
        "Interbotix robot_name of each leader arm",
        [],
        read_only=True,
    ),
    ParamDecl(
        "arm_joints",
        _T.STRING_ARRAY,
        "leader driver joints in action order (without the gripper)",
        [],
        read_only=True,
    ),
    ParamDecl("gripper_joint", _T.STRING, "leader gripper joint name", "gripper", read_only=True),
    ParamDecl(
        "gripper_joint_open",
        _T.DOUBLE_ARRAY,
        "leader gripper joint when open, per arm [rad]",
        [],
        read_only=True,
    ),
    ParamDecl(
        "gripper_joint_close",
        _T.DOUBLE_ARRAY,
        "leader gripper joint when closed, per arm [rad]",
        [],
        read_only=True,
    ),
    ParamDecl(
        "leader_setup",
        _T.STRING_ARRAY,
        "Interbotix core calls made on each leader after start-up ('method arg ...')",
        [],
        read_only=True,
    ),
    ParamDecl("joint_sign", _T.DOUBLE_ARRAY, "per-action sign (empty = all 1)", [], read_only=True),
    ParamDecl(
        "joint_offset",
        _T.DOUBLE_ARRAY,
        "per-action offset added after the sign (empty = 0)",
        [],
        read_only=True,
    ),
    ParamDecl(
        "joint_states_topic",
        _T.STRING,
        "leader joint-state topic under /<robot_name>/ (reader=topic)",
        "joint_states",
        read_only=True,
    ),
    ParamDecl(
        "gesture_threshold",
        _T.DOUBLE,
        "a normalised leader gripper at or below this is closed",
        0.1,
        (0.0, 0.99),
    ),
    ParamDecl(
        "gesture_hold",
        _T.DOUBLE,
        "both grippers closed this long starts following [s]",
        0.3,
        (0.0, 10.0),
    ),
    ParamDecl(
        "rate_hz",
        _T.DOUBLE,
        "follow rate [Hz] (the control rate)",
        50.0,
        (1.0, 1000.0),
        read_only=True,
    ),
    ParamDecl(
        "max_leader_age",
        _T.DOUBLE,
        "older leader readings are not forwarded [s]",
        0.2,
        (0.001, 10.0),
    ),
    DIAGNOSTICS_PERIOD,
)


@dataclass(frozen=True)
class LeaderParams:
    values: Mapping[str, Any]
    config: LeaderFollowerConfig

    @staticmethod
    def build(values: Mapping[str, Any]) -> LeaderParams:
        v = dict(values)
        for name in (
            "leader_prefixes",
            "leader_robot_names",
            "arm_joints",
            "gripper_joint_open",
            "gripper_joint_close",
            "leader_setup",
            "joint_sign",
            "joint_offset",
        ):
            v[name] = list(v[name] or [])
        if v["reader"] not in READERS:
            raise ValueError(f"reader must be one of {list(READERS)}, got {v['reader']!r}")
        try:
            names = load_robot_config(v["robot_config"]).names
        except RobotConfigError as exc:
            raise ValueError(f"robot_config: {exc}") from exc
        n_arms = len(v["leader_prefixes"])
        for key in ("leader_robot_names", "gripper_joint_open", "gripper_joint_close"):
            if len(v[key]) != n_arms:
                raise ValueError(
                    f"{key} needs one value per leader arm ({n_arms}), got {len(v[key])}"
                )
        for key in ("joint_sign", "joint_offset"):
            if v[key] and len(v[key]) != len(names):
                raise ValueError(f"{key} needs {len(names)} values (one per action) or none")
        parse_setup_calls(v["leader_setup"])  # validates
        raw = {
            "arms": [
                {"prefix": p, "robot_name": r, "gripper_joint_open": o, "gripper_joint_close": c}
                for p, r, o, c in zip(
                    v["leader_prefixes"],
                    v["leader_robot_names"],
                    v["gripper_joint_open"],
                    v["gripper_joint_close"],
                    strict=True,
                )
            ],
            "arm_joints": v["arm_joints"],
            "gripper_joint": v["gripper_joint"],
            "sign": dict(zip(names, v["joint_sign"], strict=False)),
            "offset": dict(zip(names, v["joint_offset"], strict=False)),
            "gesture_threshold": v["gesture_threshold"],
            "gesture_hold": v["gesture_hold"],
        }
        return LeaderParams(v, LeaderFollowerConfig.from_dict(raw, names))


class LeaderFollowerNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self._params = ValidatedParameters(self, PARAMS, build=LeaderParams.build)
        p = self._params.current
        v = p.values
        self._map = LeaderFollowerMap(p.config)
        self._gesture = StartGesture(p.config.gesture_threshold, p.config.gesture_hold)
        self._follow_group = MutuallyExclusiveCallbackGroup()
        self._io_group = MutuallyExclusiveCallbackGroup()
        self.counts: Counter = Counter()
        self.last_error = ""
        self._lock = threading.Lock()
        self._topic_readings: dict[str, LeaderReading] = {}
        reliable = QoSProfile(
            depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        self._cmd_pub = self.create_publisher(JointState, "teleop/joint_command", reliable)
        self._joy_pub = self.create_publisher(Joy, "joy", reliable)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._leaders: InterbotixLeaderArms | None = None
        if v["reader"] == "interbotix":
            self._leaders = InterbotixLeaderArms(
                p.config.arms,
                v["leader_model"],
                v["interbotix_node_name"],
                parse_setup_calls(v["leader_setup"]),
                clock=self._now,
            )
            self._leaders.connect()  # DeviceError: a clear start-up failure
        else:
            for arm in p.config.arms:
                topic = f"/{arm.robot_name}/{v['joint_states_topic']}"
                self.create_subscription(
                    JointState,
                    topic,
                    lambda msg, name=arm.robot_name: self._on_leader(name, msg),
                    qos_profile_sensor_data,
                    callback_group=self._io_group,
                )
        self._closed_last: bool | None = None
        self.create_timer(1.0 / v["rate_hz"], self._on_tick, callback_group=self._follow_group)
        self.create_timer(
            v["diagnostics_period"], self._on_diagnostics, callback_group=self._io_group
        )
        self.get_logger().info(
            f"leader-follower ready ({v['reader']} reader, leaders {v['leader_robot_names']}); "
            "close both leader grippers to start following"
        )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_leader(self, robot_name: str, msg: JointState) -> None:
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        positions = {str(n): float(q) for n, q in zip(msg.name, msg.position, strict=False)}
        with self._lock:
            self._topic_readings[robot_name] = LeaderReading(positions, stamp or self._now())

    def _read(self) -> dict[str, LeaderReading]:
        if self._leaders is not None:
            return self._leaders.read()
        with self._lock:
            return dict(self._topic_readings)

    def _skip(self, reason: str, detail: str) -> None:
        self.counts[f"skipped.{reason}"] += 1
        if detail != self.last_error:
            self.get_logger().warning(f"not forwarding the leaders: {detail}")
        self.last_error = detail

    def _on_tick(self) -> None:
        p = self._params.current
        now = self._now()
        try:
            readings = self._read()
        except DeviceError as exc:
            self._skip("read_error", str(exc))
            return
        missing = [a.robot_name for a in p.config.arms if a.robot_name not in readings]
        if missing:
            self._skip("no_reading", f"no reading from leaders {missing}")
            return
        ages = {n: now - r.stamp for n, r in readings.items()}
        stale = {n: round(a, 3) for n, a in ages.items() if a > p.values["max_leader_age"]}
        if stale:
            self._skip("stale", f"leader readings too old (s): {stale}")
            return
        try:
            grippers = self._map.grippers(readings)
            targets = self._map.targets(readings)
        except (ValueError, KeyError) as exc:
            self._skip("invalid", f"invalid leader reading: {exc}")
            return
        self._gesture.threshold = p.config.gesture_threshold
        self._gesture.hold = p.config.gesture_hold
        closed = self._gesture.closed(grippers)
        if closed != self._closed_last:
            joy = Joy(buttons=[int(closed)])
            joy.header.stamp = self.get_clock().now().to_msg()
            self._joy_pub.publish(joy)
            self._closed_last = closed
        was = self._gesture.engaged
        if not self._gesture.update(grippers, now):
            self.counts["waiting_for_gesture"] += 1
            return
        if not was:
            self.get_logger().info("start gesture seen: the followers now follow the leaders")
        msg = JointState(name=list(p.config.action_names), position=[float(x) for x in targets])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._cmd_pub.publish(msg)
        self.counts["commands"] += 1
        self.last_error = ""

    def _on_diagnostics(self) -> None:
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if not self.last_error else DiagnosticStatus.WARN,
            name=f"{self.get_name()}: leader_follower",
            message=("following" if self._gesture.engaged else "waiting for the start gesture")
            if not self.last_error
            else self.last_error,
            hardware_id="aloha_leaders",
            values=[KeyValue(key=k, value=str(c)) for k, c in sorted(self.counts.items())]
            + [KeyValue(key="following", value=str(self._gesture.engaged).lower())],
        )
        publish_status(self, self._diag_pub, status)

    def close(self) -> None:
        if self._leaders is not None:
            try:
                self._leaders.disconnect()
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                self.get_logger().error(f"leader disconnect failed: {exc}")


def main(args: list[str] | None = None) -> int:
    code = spin_node(
        LeaderFollowerNode,
        lambda: CooperativeMultiThreadedExecutor(num_threads=2),
        NODE_NAME,
        with_default_params_file(args, DEFAULT_PARAMS_FILE),
        startup_errors=(ValueError, DeviceError),
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
