"""``policy_node``: runs a visuomotor policy and publishes raw action chunks.

Thin rclpy wrapper over :mod:`diffog_ros.learning.policies` and
:mod:`diffog_ros.learning.observations`:

* subscribes ``joint_states`` (sensor_msgs/JointState) and ``<camera>/image_raw``
  (sensor_msgs/Image, rgb8 / bgr8) for the cameras the policy reads, all with sensor-data QoS, into
  a timestamped observation history;
* infers when the controller's queue runs low (``trigger: queue``: fewer than ``queue_low`` points
  of the last chunk are still ahead of now, counted from its stamp and dt) or at a fixed rate
  (``trigger: rate``); refuses observations older than ``max_obs_age``;
* publishes ``action_chunk/raw`` (trajectory_msgs/JointTrajectory, reliable): header.stamp = the
  observation time, points[k].positions = action k, time_from_start = k * dt;
* ``/diagnostics`` with counts of published chunks and of rejects by reason.

Policy types: ``diffusion``, ``leto`` (publishes e_t for trajopt_node's ``leto`` method),
``replay`` (a recorded episode's actions; ``checkpoint`` is the episode file) and factories in the
``diffog_ros.policies`` entry-point group.

Threads: a ``CooperativeMultiThreadedExecutor`` (nodes/spin.py); inference runs in its own mutually
exclusive callback group, the joint-state and camera callbacks in another (reentrant) group,
diagnostics in a third, so sensor callbacks are never blocked by inference. The model is warmed up
before the node starts spinning.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffog_ros.nodes.params import DIAGNOSTICS_PERIOD, ParamDecl, ValidatedParameters
from diffog_ros.nodes.spin import CooperativeMultiThreadedExecutor, spin_node
from diffog_ros.trajopt.guard import LogThrottle

NODE_NAME = "policy"
TRIGGERS = ("queue", "rate")
_T = Parameter.Type

PARAMS = (
    ParamDecl(
        "policy_type",
        _T.STRING,
        "policy kind: diffusion | leto | replay | a name from the diffog_ros.policies entry points",
        "replay",
        read_only=True,
    ),
    ParamDecl(
        "checkpoint",
        _T.STRING,
        "checkpoint directory (diffusion / leto / external) or episode file (replay); required",
        read_only=True,
    ),
    ParamDecl(
        "action_names",
        _T.STRING_ARRAY,
        "expected action names in order (checked against the policy); empty = the policy's",
        [],
        read_only=True,
    ),
    ParamDecl(
        "state_names",
        _T.STRING_ARRAY,
        "joint_states names forming the qpos observation, in order; empty = the action names",
        [],
        read_only=True,
    ),
    ParamDecl("device", _T.STRING, "torch device for inference", "cpu", read_only=True),
    ParamDecl(
        "num_threads",
        _T.INTEGER,
        "torch CPU threads (0 = torch default)",
        0,
        (0, 1024),
        read_only=True,
    ),
    ParamDecl(
        "dt",
        _T.DOUBLE,
        "time between chunk points [s]; 0 = the policy's (checkpoint / episode fps)",
        0.0,
        (0.0, 10.0),
        read_only=True,
    ),
    ParamDecl(
        "ddim_steps",
        _T.INTEGER,
        "diffusion: DDIM steps (0 = checkpoint's)",
        0,
        (0, 10000),
        read_only=True,
    ),
    ParamDecl(
        "chunk_length", _T.INTEGER, "replay: points per chunk", 16, (1, 10000), read_only=True
    ),
    ParamDecl(
        "replay_loop", _T.BOOL, "replay: start over at the episode end", False, read_only=True
    ),
    ParamDecl(
        "warmup_iterations",
        _T.INTEGER,
        "inferences on a dummy observation at start",
        2,
        (0, 100),
        read_only=True,
    ),
    ParamDecl(
        "history",
        _T.INTEGER,
        "samples kept per observation stream",
        64,
        (1, 100000),
        read_only=True,
    ),
    ParamDecl(
        "trigger", _T.STRING, "when to infer", "queue", constraints=f"one of {list(TRIGGERS)}"
    ),
    ParamDecl(
        "rate_hz", _T.DOUBLE, "trigger=rate: inferences per second [Hz]", 2.0, (0.01, 1000.0)
    ),
    ParamDecl(
        "queue_low",
        _T.INTEGER,
        "trigger=queue: infer when fewer points than this of the last chunk are still ahead",
        4,
        (0, 100000),
    ),
    ParamDecl(
        "max_obs_age", _T.DOUBLE, "refuse observations older than this [s]", 0.25, (1e-3, 3600.0)
    ),
    ParamDecl("enabled", _T.BOOL, "publish chunks (false: keep observing, publish nothing)", True),
    replace(DIAGNOSTICS_PERIOD, range=(0.01, 60.0), read_only=True),
)


@dataclass(frozen=True)
class Tuning:
    """The parameters that may change at run time (applied between inferences)."""

    trigger: str
    rate_hz: float
    queue_low: int
    max_obs_age: float
    enabled: bool

    @classmethod
    def from_values(cls, values) -> Tuning:
        if values["trigger"] not in TRIGGERS:
            raise ValueError(f"trigger must be one of {list(TRIGGERS)}, got {values['trigger']!r}")
        if not str(values.get("checkpoint") or "").strip():
            raise ValueError(
                "checkpoint is required (a checkpoint directory or, for replay, an episode)"
            )
        return cls(
            values["trigger"],
            float(values["rate_hz"]),
            int(values["queue_low"]),
            float(values["max_obs_age"]),
            bool(values["enabled"]),
        )


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _time_msg(t: float) -> Time:
    ns = int(round(t * 1e9))
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def _duration(t: float) -> Duration:
    ns = int(round(t * 1e9))
    return Duration(sec=ns // 10**9, nanosec=ns % 10**9)


def image_to_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8 / bgr8) -> [H, W, 3] uint8 RGB; ValueError otherwise."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"encoding {msg.encoding!r} is not rgb8/bgr8")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h < 1 or w < 1 or step < 3 * w or len(msg.data) < h * step:
        raise ValueError(
            f"{h}x{w} image with step {step} and {len(msg.data)} bytes is inconsistent"
        )
    arr = np.frombuffer(bytes(msg.data), np.uint8, count=h * step).reshape(h, step)[:, : 3 * w]
    arr = arr.reshape(h, w, 3)
    return np.ascontiguousarray(arr[..., ::-1] if msg.encoding == "bgr8" else arr)


class Counters:
    """Thread-safe counts by key (published chunks, rejects by reason)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def add(self, key: str) -> None:
        with self._lock:
            self._values[key] = self._values.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class PolicyNode(Node):
    """Observation history -> policy -> ``action_chunk/raw``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._params = ValidatedParameters(self, PARAMS, build=Tuning.from_values)
        from diffog_ros.learning.observations import ObservationHistory
        from diffog_ros.learning.policies import load_policy

        values = self._params.values()  # start-up values (read-only ones never change)

        def get(name: str):
            return values[name]

        if get("num_threads"):
            import torch

            torch.set_num_threads(get("num_threads"))
        kind = get("policy_type")
        names = list(get("action_names") or [])
        self.policy = load_policy(
            kind,
            get("checkpoint"),
            device=get("device"),
            ddim_steps=get("ddim_steps"),
            chunk_length=get("chunk_length"),
            dt=get("dt"),
            action_names=names or None,
            loop=get("replay_loop"),
        )
        if names and list(self.policy.action_names) != names:
            raise ValueError(
                f"the policy's action names {self.policy.action_names} differ from action_names {names}"
            )
        self.action_names = list(self.policy.action_names)
        dt = get("dt") or self.policy.dt
        if not dt or dt <= 0:
            raise ValueError("dt is unknown: the policy does not say; set the dt parameter")
        self.dt = float(dt)
        self.state_names = list(get("state_names") or []) or self.action_names
        if "qpos" in self.policy.lowdim and self.policy.lowdim["qpos"] != len(self.state_names):
            raise ValueError(
                f"the policy reads {self.policy.lowdim['qpos']} qpos values, state_names has {len(self.state_names)}"
            )
        unsupported = [k for k in self.policy.lowdim if k != "qpos"]
        if unsupported:
            raise ValueError(
                f"low-dim observations {unsupported} have no topic mapping in this node"
            )
        keys = list(self.policy.lowdim) + [f"images/{c}" for c in self.policy.cameras]
        self.history = ObservationHistory(keys, get("history"))
        self.counters = Counters()
        self._throttle = LogThrottle(period=1.0)
        self._last_chunk_stamp: float | None = None
        self._last_chunk_len = 0
        self._last_infer = -float("inf")
        self._infer_ms: list[float] = []
        self._replay_done_logged = False

        self._warm_up(get("warmup_iterations"))

        sensors = ReentrantCallbackGroup()
        if "qpos" in self.policy.lowdim:
            self.create_subscription(
                JointState,
                "joint_states",
                self._on_joint_state,
                qos_profile_sensor_data,
                callback_group=sensors,
            )
        for cam in self.policy.cameras:
            self.create_subscription(
                Image,
                f"{cam}/image_raw",
                lambda msg, cam=cam: self._on_image(cam, msg),
                qos_profile_sensor_data,
                callback_group=sensors,
            )
        qos = QoSProfile(
            depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        self._pub = self.create_publisher(JointTrajectory, "action_chunk/raw", qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos)
        self.create_timer(self.dt, self._tick, MutuallyExclusiveCallbackGroup())
        self.create_timer(
            get("diagnostics_period"), self._publish_diagnostics, MutuallyExclusiveCallbackGroup()
        )
        self.get_logger().info(
            f"ready: policy={kind} dims={len(self.action_names)} chunk={self.policy.chunk_length} "
            f"dt={self.dt:.4f}s n_obs={self.policy.n_obs_steps} cameras={self.policy.cameras}"
        )

    # ------------------------------------------------------------------ helpers
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reject(self, reason: str, text: str) -> None:
        self.counters.add(f"rejected/{reason}")
        ok, suppressed = self._throttle.allow(reason, self._now())
        if ok:
            more = f" (+{suppressed} more since the last message)" if suppressed else ""
            self.get_logger().warning(text + more)

    def _warm_up(self, iterations: int) -> None:
        for i in range(iterations):
            t0 = time.perf_counter()
            self.policy.warmup()
            self.get_logger().info(
                f"warm-up {i + 1}/{iterations}: {1e3 * (time.perf_counter() - t0):.1f} ms"
            )
        self.policy.reset()

    # ------------------------------------------------------------------ sensor callbacks
    def _on_joint_state(self, msg: JointState) -> None:
        index = {n: i for i, n in enumerate(msg.name)}
        missing = [n for n in self.state_names if n not in index]
        if missing or len(msg.position) != len(msg.name):
            self._reject(
                "bad_state", f"joint_states ignored: missing {missing} or ragged positions"
            )
            return
        q = np.array([msg.position[index[n]] for n in self.state_names], dtype=np.float64)
        if not np.all(np.isfinite(q)):
            self._reject("non_finite_state", "joint_states ignored: NaN/Inf position")
            return
        self.history.add("qpos", _seconds(msg.header.stamp) or self._now(), q)

    def _on_image(self, cam: str, msg: Image) -> None:
        try:
            img = image_to_array(msg)
        except ValueError as exc:
            self._reject("bad_image", f"{cam}/image_raw ignored: {exc}")
            return
        size = getattr(self.policy, "image_size", None)
        if size is not None and tuple(img.shape[:2]) != tuple(size):
            from diffog_ros.learning.episodes import resize_images

            img = resize_images(img[None], size)[0]
        self.history.add(f"images/{cam}", _seconds(msg.header.stamp) or self._now(), img)

    # ------------------------------------------------------------------ inference
    def _due(self, tuning: Tuning, now: float) -> bool:
        if tuning.trigger == "rate":
            return now - self._last_infer >= 1.0 / tuning.rate_hz - 1e-6
        if self._last_chunk_stamp is None:
            return True
        executed = int(np.floor((now - self._last_chunk_stamp) / self.dt)) + 1
        return self._last_chunk_len - executed < tuning.queue_low

    def _tick(self) -> None:
        tuning = self._params.current  # read once per cycle
        now = self._now()
        if not tuning.enabled or not self._due(tuning, now):
            return
        from diffog_ros.learning.observations import ObservationRejected

        try:
            obs, t_obs = self.history.window(
                self.policy.n_obs_steps, self.dt, now, tuning.max_obs_age
            )
        except ObservationRejected as exc:
            self._last_infer = now
            self._reject(exc.reason, f"no inference: {exc}")
            return
        finished = getattr(self.policy, "finished", None)
        if finished is not None and finished(t_obs):
            if not self._replay_done_logged:
                self.get_logger().info("replay finished: the episode's last action was published")
                self._replay_done_logged = True
            return
        self._last_infer = now
        t0 = time.perf_counter()
        try:
            chunk = np.asarray(self.policy.predict(obs, t_obs), dtype=np.float64)
        except (ValueError, RuntimeError) as exc:
            self._reject("inference_error", f"inference failed: {exc}")
            return
        self._infer_ms = (self._infer_ms + [1e3 * (time.perf_counter() - t0)])[-100:]
        if (
            chunk.ndim != 2
            or chunk.shape[1] != len(self.action_names)
            or not np.all(np.isfinite(chunk))
        ):
            self._reject(
                "bad_output",
                f"policy output {chunk.shape} is not a finite [T, {len(self.action_names)}] chunk",
            )
            return
        self._publish(chunk, t_obs)

    def _publish(self, chunk: np.ndarray, t_obs: float) -> None:
        msg = JointTrajectory(header=Header(stamp=_time_msg(t_obs)), joint_names=self.action_names)
        msg.points = [
            JointTrajectoryPoint(positions=row, time_from_start=_duration(k * self.dt))
            for k, row in enumerate(chunk.tolist())
        ]
        self._pub.publish(msg)
        self._last_chunk_stamp, self._last_chunk_len = t_obs, chunk.shape[0]
        self.counters.add("chunks_published")

    def _publish_diagnostics(self) -> None:
        counts = self.counters.snapshot()
        rejects = sum(v for k, v in counts.items() if k.startswith("rejected/"))
        ms = self._infer_ms
        values = [KeyValue(key=k, value=str(v)) for k, v in sorted(counts.items())]
        if ms:
            values.append(KeyValue(key="inference_ms_mean", value=f"{np.mean(ms):.2f}"))
            values.append(KeyValue(key="inference_ms_max", value=f"{np.max(ms):.2f}"))
        fqn = self.get_fully_qualified_name()
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if rejects == 0 else DiagnosticStatus.WARN,
            name=f"{fqn.lstrip('/')}: policy",
            message=f"{counts.get('chunks_published', 0)} chunks published, {rejects} inferences refused",
            hardware_id=fqn,
            values=values,
        )
        self._diag_pub.publish(
            DiagnosticArray(header=Header(stamp=_time_msg(self._now())), status=[status])
        )


def main(args: list[str] | None = None) -> int:
    return spin_node(
        PolicyNode,
        lambda: CooperativeMultiThreadedExecutor(num_threads=4),
        NODE_NAME,
        args,
        startup_errors=(ValueError, FileNotFoundError, OSError),  # parameters or checkpoint
    )


if __name__ == "__main__":
    sys.exit(main())
