"""``recorder_node``: records demonstrations and rollouts as ALOHA-layout HDF5 episodes.

Thin rclpy wrapper over :mod:`diffog_ros.data.recorder` and :mod:`diffog_ros.data.writer`:

* Subscribes (relative names, each can be disabled with an empty string): ``joint_states``
  (-> ``/observations/qpos``, ``qvel``, ``effort``), ``executed_action`` (-> ``/action``),
  ``action_chunk/raw`` and ``action_chunk`` (-> ``/action_raw``, ``/action_optimized``),
  ``teleop/joint_command``, ``teleop/twist``, ``<camera>/image_raw`` for every ``camera_names``
  entry, and ``joy`` (buttons start / stop / discard / toggle recording).
* Services (std_srvs/Trigger): ``~/start``, ``~/stop`` (save) and ``~/discard``.
* Publishes ``~/status`` (std_msgs/String, JSON, transient-local depth 1) on every state change and
  ``/diagnostics`` periodically.

Only topics that are live when an episode starts are recorded; silent ones are warned about and
listed in the file's ``silent_topics`` attribute. Rows are sampled at ``record_rate_hz`` (0 = the
robot config's control rate) and flushed every ``flush_period`` (<= 1 s) to a crash-safe
temporary file that becomes ``episode_<i>.hdf5`` on stop. Parameter changes apply from the next
episode. With no arguments the node loads ``config/recorder_aloha.yaml``.

Threads: a ``CooperativeMultiThreadedExecutor`` (nodes/spin.py); subscriptions in a reentrant group,
the flush / diagnostics timers and the services + joy each in their own mutually exclusive group.
Rows are sampled by a dedicated thread on an absolute schedule
(:class:`~diffog_ros.data.recorder.PeriodicSampler`), not by an executor timer: a busy executor
would make a timer skip periods and lower the rate. Writing to disk therefore never delays sampling,
and a sampling thread woken late (busy machine, GIL) makes up the rows it owes, each from what had
been received by its due time (up to ``max_catchup`` seconds back; older ticks are skipped and
counted).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from diffog_ros.data.episode import EpisodeLayout
from diffog_ros.data.mcap_log import McapRawLog
from diffog_ros.data.recorder import (
    KIND_CHUNK_OPT,
    KIND_CHUNK_RAW,
    KIND_EXECUTED,
    KIND_IMAGE,
    KIND_JOINT_STATE,
    KIND_TELEOP_JOINT,
    KIND_TELEOP_TWIST,
    LatestSamples,
    MessageRejected,
    PeriodicSampler,
    RecorderConfig,
    RecorderSession,
    image_to_rgb,
    make_chunk,
    select_joints,
    validate_settings,
)
from diffog_ros.data.writer import WriterError, dumps_params, writer_poisoned
from diffog_ros.nodes.default_params import with_default_params_file
from diffog_ros.nodes.diagnostics import publish_status
from diffog_ros.nodes.params import DIAGNOSTICS_PERIOD, ParamDecl, ValidatedParameters
from diffog_ros.nodes.spin import CooperativeMultiThreadedExecutor, spin_node
from diffog_ros.robots.config import RobotConfigError, load_robot_config
from diffog_ros.teleop.joy import ButtonEdges, check_button_index

NODE_NAME = "recorder"
DEFAULT_PARAMS_FILE = "recorder_aloha.yaml"
_T = Parameter.Type

_TOPIC_PARAMS = {
    "joint_states_topic": (KIND_JOINT_STATE, "joint_states"),
    "executed_action_topic": (KIND_EXECUTED, "executed_action"),
    "action_raw_topic": (KIND_CHUNK_RAW, "action_chunk/raw"),
    "action_optimized_topic": (KIND_CHUNK_OPT, "action_chunk"),
    "teleop_joint_topic": (KIND_TELEOP_JOINT, "teleop/joint_command"),
    "teleop_twist_topic": (KIND_TELEOP_TWIST, "teleop/twist"),
}
_MSG_TYPES = {
    KIND_JOINT_STATE: "sensor_msgs/msg/JointState",
    KIND_EXECUTED: "sensor_msgs/msg/JointState",
    KIND_CHUNK_RAW: "trajectory_msgs/msg/JointTrajectory",
    KIND_CHUNK_OPT: "trajectory_msgs/msg/JointTrajectory",
    KIND_TELEOP_JOINT: "sensor_msgs/msg/JointState",
    KIND_TELEOP_TWIST: "geometry_msgs/msg/TwistStamped",
    KIND_IMAGE: "sensor_msgs/msg/Image",
}
_STREAM_OF = {
    KIND_EXECUTED: "action",
    KIND_CHUNK_RAW: "action_raw",
    KIND_CHUNK_OPT: "action_optimized",
    KIND_TELEOP_JOINT: "teleop_joint_command",
    KIND_TELEOP_TWIST: "teleop_twist",
}

PARAMS = (
    ParamDecl(
        "robot_config",
        _T.STRING,
        "robot config (file in config/ or a path): joint names and control rate",
        "aloha.yaml",
        read_only=True,
    ),
    ParamDecl(
        "joint_names",
        _T.STRING_ARRAY,
        "joints recorded, in order (D columns of qpos / action)",
        [],
        constraints="empty = the robot config's joint names",
        read_only=True,
    ),
    ParamDecl(
        "camera_names",
        _T.STRING_ARRAY,
        "cameras recorded from <camera>/<image_topic_suffix>",
        [],
        read_only=True,
    ),
    ParamDecl(
        "image_topic_suffix", _T.STRING, "camera image topic suffix", "image_raw", read_only=True
    ),
    *(
        ParamDecl(
            name,
            _T.STRING,
            f"topic recorded as {kind} ('' = not recorded)",
            default,
            read_only=True,
        )
        for name, (kind, default) in _TOPIC_PARAMS.items()
    ),
    ParamDecl(
        "joy_topic",
        _T.STRING,
        "sensor_msgs/Joy topic driving start/stop ('' = none)",
        "joy",
        read_only=True,
    ),
    ParamDecl(
        "output_dir", _T.STRING, "dataset directory (created; resumed if it exists)", "episodes"
    ),
    ParamDecl(
        "record_rate_hz",
        _T.DOUBLE,
        "sampling rate [Hz]; 0 = the robot config's control rate",
        0.0,
        (0.0, 1000.0),
    ),
    ParamDecl(
        "max_age",
        _T.DOUBLE,
        "a sample older than this at a tick is missing (NaN, valid=False) [s]",
        0.2,
        (0.001, 10.0),
    ),
    ParamDecl(
        "max_catchup",
        _T.DOUBLE,
        "a sampling thread woken late writes the rows it owes up to this far back; older ticks "
        "are skipped and counted as sampler_overruns [s]",
        0.5,
        (0.0, 5.0),
        read_only=True,
    ),
    ParamDecl(
        "flush_period", _T.DOUBLE, "write buffered rows to disk this often [s]", 0.5, (0.02, 1.0)
    ),
    ParamDecl(
        "live_wait",
        _T.DOUBLE,
        "at start, wait this long for topics not heard yet [s]",
        1.0,
        (0.0, 30.0),
    ),
    ParamDecl(
        "live_timeout",
        _T.DOUBLE,
        "a topic heard within this time before start counts as live [s]",
        2.0,
        (0.01, 60.0),
    ),
    ParamDecl("task", _T.STRING, "task name stored in the episode attrs", ""),
    ParamDecl("metadata", _T.STRING, "free text (or JSON) stored in the 'metadata' attr", ""),
    ParamDecl("robot", _T.STRING, "robot name attr ('' = the robot config's name)", ""),
    ParamDecl("sim", _T.BOOL, "episodes come from a simulator (the 'sim' attr)", False),
    ParamDecl("compress_images", _T.BOOL, "store frames as padded JPEG the ALOHA way", False),
    ParamDecl("jpeg_quality", _T.INTEGER, "JPEG quality when compressing", 50, (1, 100)),
    ParamDecl(
        "min_free_mb",
        _T.DOUBLE,
        "recording stops before free space drops below this; starting needs this plus room "
        "for one second of data [MB]",
        100.0,
        (0.0, 1e7),
    ),
    ParamDecl("fsync", _T.BOOL, "fsync after every flush (power-loss safety; slower)", False),
    ParamDecl("mcap_log", _T.BOOL, "also log the raw messages to episode_<i>.mcap", False),
    ParamDecl(
        "max_episode_s",
        _T.DOUBLE,
        "stop and save after this long; 0 = unlimited [s]",
        0.0,
        (0.0, 86400.0),
    ),
    ParamDecl(
        "trajopt_node",
        _T.STRING,
        "node whose parameters are stored as trajopt_params ('' = none)",
        "trajopt",
    ),
    ParamDecl(
        "start_button", _T.INTEGER, "joy button starting an episode (-1 = none)", -1, (-1, 63)
    ),
    ParamDecl("stop_button", _T.INTEGER, "joy button saving the episode (-1 = none)", -1, (-1, 63)),
    ParamDecl(
        "discard_button", _T.INTEGER, "joy button discarding the episode (-1 = none)", -1, (-1, 63)
    ),
    ParamDecl(
        "toggle_button", _T.INTEGER, "joy button starting / saving (-1 = none)", -1, (-1, 63)
    ),
    DIAGNOSTICS_PERIOD,
)


@dataclass(frozen=True)
class RecorderParams:
    """Validated parameter values (immutable; swapped as a whole)."""

    values: Mapping[str, Any]
    robot_name: str
    joint_names: tuple[str, ...]
    control_rate_hz: float

    @property
    def record_rate_hz(self) -> float:
        rate = float(self.values["record_rate_hz"])
        return rate if rate > 0 else self.control_rate_hz

    @staticmethod
    def build(values: Mapping[str, Any]) -> RecorderParams:
        try:
            robot = load_robot_config(values["robot_config"])
        except RobotConfigError as exc:
            raise ValueError(f"robot_config: {exc}") from exc
        values = dict(values)
        for name in ("joint_names", "camera_names"):  # an empty YAML list arrives untyped
            values[name] = list(values[name] or [])
        joints = tuple(values["joint_names"]) or robot.names
        problems = validate_settings({**values, "joint_names": list(joints)})
        for name in ("start_button", "stop_button", "discard_button", "toggle_button"):
            reason = check_button_index(values[name], name)
            if reason:
                problems.append(reason)
        cams = list(values["camera_names"])
        if len(set(cams)) != len(cams) or any(not c or "/" in c for c in cams):
            problems.append(f"camera_names must be unique names without '/', got {cams}")
        if not str(values["output_dir"]).strip():
            problems.append("output_dir must not be empty")
        if problems:
            raise ValueError("; ".join(problems))
        return RecorderParams(
            dict(values), values["robot"] or robot.name, joints, robot.control_rate_hz
        )


class LogThrottle:
    """At most one log line per key every ``period`` seconds."""

    def __init__(self, period: float = 5.0) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def ready(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -math.inf) >= self.period:
                self._last[key] = now
                return True
        return False


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self._params = ValidatedParameters(self, PARAMS, build=RecorderParams.build)
        p = self._params.current
        self._joints = p.joint_names  # read-only: fixed for the node's lifetime
        # History covers the sampler's catch-up window (plus a margin for the thread's wake-up).
        self._samples = LatestSamples(keep_s=float(p.values["max_catchup"]) + 0.1)
        self._session = RecorderSession()
        self._rejects: Counter = Counter()
        self._throttle = LogThrottle()
        self._edges = ButtonEdges()
        self._image_sizes: dict[str, tuple[int, int]] = {}
        self._has_velocity = False
        self._has_effort = False
        self._trajopt_params: dict[str, Any] | None = None
        self._mcap: McapRawLog | None = None
        self._mcap_lock = threading.Lock()
        self._last_saved: str | None = None
        self._state_lock = threading.Lock()
        self._topics: dict[str, str] = {}  # resolved topic -> kind

        self._subs_group = ReentrantCallbackGroup()
        self._sampler: PeriodicSampler | None = None
        self._clock_anchor = (0.0, 0.0)  # (node clock, time.monotonic()) when sampling started
        self._io_group = MutuallyExclusiveCallbackGroup()
        self._ctl_group = MutuallyExclusiveCallbackGroup()

        sensor_qos = qos_profile_sensor_data
        reliable = QoSProfile(
            depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        v = p.values
        self._subscribe(v["joint_states_topic"], JointState, KIND_JOINT_STATE, sensor_qos)
        self._subscribe(v["executed_action_topic"], JointState, KIND_EXECUTED, sensor_qos)
        self._subscribe(v["action_raw_topic"], JointTrajectory, KIND_CHUNK_RAW, reliable)
        self._subscribe(v["action_optimized_topic"], JointTrajectory, KIND_CHUNK_OPT, reliable)
        # Teleop streams: best effort matches both reliable and best-effort publishers.
        self._subscribe(v["teleop_joint_topic"], JointState, KIND_TELEOP_JOINT, sensor_qos)
        self._subscribe(v["teleop_twist_topic"], TwistStamped, KIND_TELEOP_TWIST, sensor_qos)
        for cam in v["camera_names"]:
            topic = f"{cam}/{v['image_topic_suffix']}"
            self._subscribe(topic, Image, KIND_IMAGE, sensor_qos, camera=cam)
        if v["joy_topic"]:
            self.create_subscription(
                Joy, v["joy_topic"], self._on_joy, reliable, callback_group=self._ctl_group
            )

        latched = QoSProfile(
            depth=1,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self._status_pub = self.create_publisher(String, "~/status", latched)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/start", self._srv_start, callback_group=self._ctl_group)
        self.create_service(Trigger, "~/stop", self._srv_stop, callback_group=self._ctl_group)
        self.create_service(Trigger, "~/discard", self._srv_discard, callback_group=self._ctl_group)

        self._flush_timer = self.create_timer(
            float(v["flush_period"]), self._on_flush, callback_group=self._io_group
        )
        self._diag_timer = self.create_timer(
            float(v["diagnostics_period"]), self._on_diagnostics, callback_group=self._io_group
        )
        self._param_client = None
        if v["trajopt_node"]:
            self._param_client = AsyncParameterClient(
                self, v["trajopt_node"], callback_group=self._io_group
            )
            self._refresh_trajopt_params()
        out = Path(str(v["output_dir"])).expanduser()
        self._report_existing(out)
        self._publish_status("idle")
        self.get_logger().info(
            f"ready: {len(self._joints)} joints, cameras {list(v['camera_names'])}, "
            f"{p.record_rate_hz:g} Hz, output {out}; topics {sorted(self._topics)}"
        )

    # ------------------------------------------------------------------ subscriptions
    def _subscribe(
        self, topic: str, msg_type: type, kind: str, qos: QoSProfile, camera: str = ""
    ) -> None:
        if not topic:
            return
        handler = self._make_handler(kind, camera)
        sub = self.create_subscription(
            msg_type, topic, handler, qos, callback_group=self._subs_group
        )
        self._topics[sub.topic_name] = kind if not camera else f"{kind}:{camera}"

    def _make_handler(self, kind: str, camera: str) -> Callable[[Any], None]:
        def handler(msg: Any) -> None:
            now = self._now()
            topic_key = camera or kind
            self._samples.heard(topic_key, now)
            try:
                self._ingest(kind, camera, msg, now)
            except MessageRejected as exc:
                self._reject(topic_key, exc)
                return
            self._log_raw(kind, camera, msg, now)

        return handler

    def _stamp(self, header: Any, now: float) -> float:
        t = header.stamp.sec + 1e-9 * header.stamp.nanosec
        return t if t > 0 else now

    def _ingest(self, kind: str, camera: str, msg: Any, now: float) -> None:
        joints = self._joints
        if kind == KIND_JOINT_STATE:
            stamp = self._stamp(msg.header, now)
            qpos = select_joints(msg.name, msg.position, joints, "position")
            self._samples.put("qpos", qpos, stamp, now)
            if len(msg.velocity):
                self._samples.put(
                    "qvel", select_joints(msg.name, msg.velocity, joints, "velocity"), stamp, now
                )
                self._has_velocity = True
            if len(msg.effort):
                self._samples.put(
                    "effort", select_joints(msg.name, msg.effort, joints, "effort"), stamp, now
                )
                self._has_effort = True
        elif kind in (KIND_EXECUTED, KIND_TELEOP_JOINT):
            value = select_joints(msg.name, msg.position, joints, "position")
            self._samples.put(_STREAM_OF[kind], value, self._stamp(msg.header, now), now)
        elif kind in (KIND_CHUNK_RAW, KIND_CHUNK_OPT):
            offsets = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points]
            chunk = make_chunk(
                self._stamp(msg.header, now),
                msg.joint_names,
                offsets,
                [list(p.positions) for p in msg.points],
                joints,
            )
            self._samples.put(_STREAM_OF[kind], chunk, chunk.stamp, now)
        elif kind == KIND_TELEOP_TWIST:
            t = msg.twist
            value = [t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]
            if not all(math.isfinite(x) for x in value):
                raise MessageRejected("non_finite", "twist has NaN/Inf")
            self._samples.put("teleop_twist", value, self._stamp(msg.header, now), now)
        elif kind == KIND_IMAGE:
            img = image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, bytes(msg.data))
            size = img.shape[:2]
            known = self._image_sizes.setdefault(camera, size)
            if known != size:
                if not self._session.recording:
                    self._image_sizes[camera] = size  # takes effect from the next episode
                else:
                    raise MessageRejected(
                        "size_changed", f"{camera}: {size} while recording at {known}"
                    )
            self._samples.put(camera, img, self._stamp(msg.header, now), now)

    def _reject(self, topic_key: str, exc: MessageRejected) -> None:
        key = f"{topic_key}/{exc.reason}"
        self._rejects[key] += 1
        self._session.count_reject(key)
        if self._throttle.ready(key):
            self.get_logger().warning(
                f"rejected a message on {topic_key}: {exc} ({self._rejects[key]} so far)"
            )

    def _log_raw(self, kind: str, camera: str, msg: Any, now: float) -> None:
        if self._mcap is None:
            return
        with self._mcap_lock:
            log = self._mcap
            if log is None:
                return
            topic = self._topic_name(kind, camera)
            try:
                log.write(
                    topic, serialize_message(msg), int(now * 1e9), int(self._stamp_ns(msg, now))
                )
            except (OSError, KeyError) as exc:
                self.get_logger().error(f"MCAP log stopped: {exc}")
                self._mcap = None

    def _stamp_ns(self, msg: Any, now: float) -> int:
        header = getattr(msg, "header", None)
        return int((self._stamp(header, now) if header is not None else now) * 1e9)

    def _topic_name(self, kind: str, camera: str) -> str:
        want = f"{kind}:{camera}" if camera else kind
        for topic, k in self._topics.items():
            if k == want:
                return topic
        raise KeyError(want)

    def _on_joy(self, msg: Joy) -> None:
        pressed = self._edges.update(msg.buttons)
        if not pressed:
            return
        v = self._params.current.values
        if v["toggle_button"] in pressed:
            (self._stop if self._session.recording else self._start)("joy")
        elif v["start_button"] in pressed:
            self._start("joy")
        elif v["stop_button"] in pressed:
            self._stop("joy")
        elif v["discard_button"] in pressed:
            self._discard("joy")

    # ------------------------------------------------------------------ services
    def _srv_start(self, _req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        res.success, res.message = self._start("service")
        return res

    def _srv_stop(self, _req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        res.success, res.message = self._stop("service")
        return res

    def _srv_discard(self, _req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        res.success, res.message = self._discard("service")
        return res

    # ------------------------------------------------------------------ episode control
    def _live_topics(self, p: RecorderParams, since: float) -> tuple[list[str], list[str]]:
        live, silent = [], []
        for topic, kind in self._topics.items():
            key = kind.split(":", 1)[1] if ":" in kind else kind
            heard = self._samples.last_heard(key)
            (live if heard is not None and heard >= since else silent).append(topic)
        return live, silent

    def _start(self, source: str) -> tuple[bool, str]:
        with self._state_lock:
            if self._session.recording:
                msg = f"already recording episode {self._session.writer.index}"
                self.get_logger().warning(f"start ({source}) refused: {msg}")
                return False, msg
            p = self._params.current
            since = self._now() - float(p.values["live_timeout"])
            live, silent = self._live_topics(p, since)
            deadline = time.monotonic() + float(p.values["live_wait"])
            while silent and time.monotonic() < deadline:
                time.sleep(0.05)
                live, silent = self._live_topics(p, since)
            layout, silent = self._layout(live, silent)
            if layout is None:
                msg = f"no configured topic is live (silent: {silent}); nothing to record"
                self.get_logger().error(f"start ({source}) refused: {msg}")
                return False, msg
            if silent:
                self.get_logger().warning(
                    f"recording without silent topics {silent} (listed in the file's silent_topics)"
                )
            config = RecorderConfig(
                output_dir=Path(str(p.values["output_dir"])).expanduser(),
                record_rate_hz=p.record_rate_hz,
                max_age=float(p.values["max_age"]),
                joint_names=p.joint_names,
                compress=bool(p.values["compress_images"]),
                jpeg_quality=int(p.values["jpeg_quality"]),
                min_free_mb=float(p.values["min_free_mb"]),
                fsync=bool(p.values["fsync"]),
                max_episode_s=float(p.values["max_episode_s"]),
            )
            attrs = {
                "sim": bool(p.values["sim"]),
                "robot": p.robot_name,
                "task": str(p.values["task"]),
                "metadata": _metadata(str(p.values["metadata"])),
                "trajopt_params": dumps_params(self._trajopt_params or {}),
                "trajopt_node": str(p.values["trajopt_node"]),
                "silent_topics": sorted(silent),
                "recorded_topics": sorted(live),
                "recorder_params": dumps_params(p.values),
            }
            try:
                writer = self._session.start(config, layout, attrs, self._now())
            except (OSError, ValueError, WriterError) as exc:
                msg = f"cannot start: {exc}"
                self.get_logger().error(msg)
                self._publish_status("idle", error=msg)
                return False, msg
            # Row times: the sampler's ideal monotonic schedule on the node's clock, read once.
            self._clock_anchor = (self._now(), time.monotonic())
            self._sampler = PeriodicSampler(
                p.record_rate_hz,
                self._on_tick,
                "recorder-sampler",
                max_catchup=float(p.values["max_catchup"]),
            )
            self._sampler.start()
            if p.values["mcap_log"]:
                self._open_mcap(writer.tmp_path, live)
            self._refresh_trajopt_params()
            msg = (
                f"recording episode {writer.index} to {writer.tmp_path} at {p.record_rate_hz:g} Hz"
            )
            self.get_logger().info(
                f"{msg} (started by {source}); streams {list(layout.stream_names)}"
            )
            self._publish_status("recording")
            return True, msg

    def _layout(self, live: list[str], silent: list[str]) -> tuple[EpisodeLayout | None, list[str]]:
        kinds = {self._topics[t] for t in live}
        streams: list[str] = []
        if KIND_JOINT_STATE in kinds:
            streams.append("qpos")
            if self._has_velocity:
                streams.append("qvel")
            if self._has_effort:
                streams.append("effort")
        for kind in (
            KIND_EXECUTED,
            KIND_CHUNK_RAW,
            KIND_CHUNK_OPT,
            KIND_TELEOP_JOINT,
            KIND_TELEOP_TWIST,
        ):
            if kind in kinds:
                streams.append(_STREAM_OF[kind])
        cams = {}
        silent = list(silent)
        for topic in live:
            kind = self._topics[topic]
            if kind.startswith(KIND_IMAGE + ":"):
                cam = kind.split(":", 1)[1]
                if cam in self._image_sizes:
                    cams[cam] = self._image_sizes[cam]
                else:  # heard, but every message was rejected
                    silent.append(topic)
        order = list(self._params.current.values["camera_names"])
        cams = {c: cams[c] for c in order if c in cams}
        if not streams and not cams:
            return None, silent
        return (
            EpisodeLayout(
                self._joints,
                streams,
                cams,
                compress=bool(self._params.current.values["compress_images"]),
                jpeg_quality=int(self._params.current.values["jpeg_quality"]),
            ),
            silent,
        )

    def _stop(self, source: str, extra: Mapping[str, Any] | None = None) -> tuple[bool, str]:
        with self._state_lock:
            if not self._session.recording:
                return False, "not recording"
            extra = dict(extra or {})
            if self._trajopt_params is not None:
                extra["trajopt_params"] = dumps_params(self._trajopt_params)
            extra.setdefault("stop_reason", f"stopped by {source}")
            extra.update(self._stop_sampler())
            rows = self._session.stats.rows
            try:
                path = self._session.stop(extra)
            except WriterError as exc:
                msg = f"episode could not be finished: {exc}"
                self.get_logger().error(msg)
                self._close_mcap(keep=True)
                self._publish_status("idle", error=msg)
                return False, msg
            self._close_mcap(keep=path is not None)
            if path is None:
                msg = "episode had no rows: nothing saved"
                self.get_logger().warning(msg)
                self._publish_status("idle", error=msg)
                return False, msg
            self._last_saved = str(path)
            from diffog_ros.data.dataset import episode_attrs

            a = episode_attrs(path)
            msg = (
                f"saved {path} ({a['num_samples']} rows of {rows} sampled, "
                f"{a['achieved_rate_hz']:.1f} Hz of {a['fps']:g} Hz)"
            )
            if a.get("low_rate"):
                self.get_logger().warning(
                    f"{msg}: LOW RATE, below 90 % of record_rate_hz (flagged low_rate in the file)"
                )
            else:
                self.get_logger().info(f"{msg} (stopped by {source})")
            self._publish_status("idle", error=extra.get("error"))
            return True, msg

    def _discard(self, source: str) -> tuple[bool, str]:
        with self._state_lock:
            if not self._session.recording:
                return False, "not recording"
            self._stop_sampler()
            index = self._session.discard()
            self._close_mcap(keep=False)
            msg = f"discarded episode {index} ({source})"
            self.get_logger().info(msg)
            self._publish_status("idle")
            return True, msg

    # ------------------------------------------------------------------ timers
    def _on_tick(self, due: float) -> None:
        """The row of the tick due at monotonic time ``due`` (what had been received by then).

        Its time is ``due`` on the node's clock through the anchor read at start, never "now minus
        the lag": two clock readings around a preempted thread could put a row before the last.
        """
        if self._session.recording:
            ros0, mono0 = self._clock_anchor
            self._session.tick(ros0 + (due - mono0), self._samples)

    def _stop_sampler(self) -> dict[str, Any]:
        sampler, self._sampler = self._sampler, None
        if sampler is None:
            return {}
        sampler.stop()
        if sampler.overruns:
            self.get_logger().warning(
                f"sampler skipped {sampler.overruns} tick(s) more than max_catchup late "
                "(machine too busy)"
            )
        if sampler.late:
            self.get_logger().info(
                f"sampler made up {sampler.late} of {sampler.ticks} tick(s) late, from the "
                "samples received by their due time"
            )
        return {"sampler_overruns": sampler.overruns, "sampler_late_ticks": sampler.late}

    def _on_flush(self) -> None:
        if not self._session.recording:
            return
        try:
            self._session.flush()
        except WriterError as exc:
            msg = f"recording stopped: {exc}"
            self.get_logger().error(msg)
            self._stop("error", {"error": msg, "stop_reason": str(exc)})
            return
        if self._session.due_to_stop(self._now()):
            self._stop("max_episode_s")
        else:
            self._publish_status("recording")

    def _on_diagnostics(self) -> None:
        s = self._session
        level = DiagnosticStatus.OK if not s.last_error else DiagnosticStatus.ERROR
        values = {
            "state": "recording" if s.recording else "idle",
            "episode": str(s.writer.index) if s.writer else "",
            "rows": str(s.stats.rows),
            "last_saved": self._last_saved or "",
            "last_error": s.last_error or "",
            "stale": json.dumps(dict(s.stats.stale)),
            "rejected": json.dumps(dict(self._rejects)),
        }
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: recorder",
            message=values["state"] if level == DiagnosticStatus.OK else values["last_error"],
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=val) for k, val in values.items()],
        )
        publish_status(self, self._diag_pub, status)

    # ------------------------------------------------------------------ helpers
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _publish_status(self, state: str, error: str | None = None) -> None:
        s = self._session
        status = {
            "state": state,
            "episode": s.writer.index if s.writer else None,
            "file": str(s.writer.tmp_path) if s.writer else None,
            "rows": s.stats.rows,
            "last_saved": self._last_saved,
            "error": error or s.last_error,
            "output_dir": str(Path(str(self._params.current.values["output_dir"])).expanduser()),
        }
        if self.context.ok():  # not after a signal shut the context down
            self._status_pub.publish(String(data=json.dumps(status)))

    def _report_existing(self, out: Path) -> None:
        if not out.is_dir():
            return
        from diffog_ros.data.episode import iter_episode_files

        done = iter_episode_files(out, ("",))
        tmp = iter_episode_files(out, (".tmp",))
        if done or tmp:
            self.get_logger().info(
                f"resuming dataset {out}: {len(done)} episode(s); new ones are numbered after them"
            )
        for _i, path in tmp:
            self.get_logger().warning(
                f"interrupted recording {path}: run `diffog-ros data repair {path}`"
            )

    def _refresh_trajopt_params(self) -> None:
        client = self._param_client
        if client is None or not client.services_are_ready():
            return

        def got_names(fut: Any) -> None:
            res = fut.result()
            if res is None:
                return
            names = list(res.result.names)
            client.get_parameters(names, lambda f: got_values(names, f))

        def got_values(names: list[str], fut: Any) -> None:
            res = fut.result()
            if res is None:
                return
            self._trajopt_params = {
                n: parameter_value_to_python(v) for n, v in zip(names, res.values, strict=False)
            }

        client.list_parameters(callback=got_names)

    def _open_mcap(self, tmp_path: Path, live: list[str]) -> None:
        path = tmp_path.with_name(tmp_path.name.replace(".hdf5.tmp", ".mcap"))
        try:
            log = McapRawLog(path)
            for topic in live:
                kind = self._topics[topic].split(":", 1)[0]
                log.add_channel(topic, _MSG_TYPES[kind])
        except (OSError, FileNotFoundError) as exc:
            self.get_logger().error(f"MCAP log not started: {exc}")
            return
        with self._mcap_lock:
            self._mcap = log

    def _close_mcap(self, keep: bool) -> None:
        with self._mcap_lock:
            log, self._mcap = self._mcap, None
        if log is None:
            return
        try:
            if keep:
                self.get_logger().info(f"raw log saved: {log.close()} ({log.messages} messages)")
            else:
                log.abandon()
        except OSError as exc:
            self.get_logger().error(f"MCAP log could not be finished: {exc}")

    def close(self) -> None:
        """Save a running episode (clean shutdown keeps it)."""
        if self._session.recording:
            self._stop("shutdown")


def _metadata(text: str) -> str:
    """The metadata attr: JSON text as given, or free text wrapped as {"text": ...}."""
    if not text:
        return "{}"
    try:
        json.loads(text)
        return text
    except json.JSONDecodeError:
        return json.dumps({"text": text})


def main(args: list[str] | None = None) -> int:
    # The sampling thread must get the GIL back quickly from the executor threads (default 5 ms).
    sys.setswitchinterval(0.001)
    code = spin_node(
        RecorderNode,
        lambda: CooperativeMultiThreadedExecutor(num_threads=4),
        NODE_NAME,
        with_default_params_file(args, DEFAULT_PARAMS_FILE),
    )
    if writer_poisoned():
        # HDF5 holds a file it can neither flush nor close (an OS write error): skip Python's
        # teardown, which would crash inside the library. Everything we own is closed already.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 1)
    return code


if __name__ == "__main__":
    sys.exit(main())
