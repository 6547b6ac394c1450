"""``trajopt_node``: optimises action chunks (DiffOG / LeTO / baselines) before they reach a controller.

Thin rclpy wrapper over :mod:`diffog_ros.trajopt.guard` and :mod:`diffog_ros.trajopt.runtime`:

* ``action_chunk/raw`` (trajectory_msgs/JointTrajectory, reliable) -> validate -> optimise with the
  continuity row anchored to the newest ``executed_action`` -> bound check -> ``action_chunk``.
* ``executed_action`` (sensor_msgs/JointState, sensor-data QoS): what the controller sent.
* ``/diagnostics`` (diagnostic_msgs/DiagnosticArray) every ``diagnostics_period`` seconds.

Threads: a ``CooperativeMultiThreadedExecutor`` (nodes/spin.py) with one mutually exclusive callback
group each for chunks, executed actions and diagnostics; the parameter services (validation and
checkpoint loading) stay in the node's default group, so a slow load never blocks a solve.
Parameters are swapped as one immutable object between chunks. See docs/interfaces.md for the full
interface.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, replace

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffog_ros.nodes.params import DIAGNOSTICS_PERIOD, ParamDecl, ValidatedParameters
from diffog_ros.nodes.spin import CooperativeMultiThreadedExecutor, spin_node
from diffog_ros.runtime import limit_threads
from diffog_ros.trajopt.guard import LogThrottle, Rejected, parse_chunk, parse_executed
from diffog_ros.trajopt.model_io import ModelCache, TrajOptModel
from diffog_ros.trajopt.runtime import (
    BACKENDS,
    METHODS,
    MODEL_METHODS,
    ChunkOptimiser,
    OptimiserStats,
    TrajOptConfig,
    continuity_anchor,
)

NODE_NAME = "trajopt"
_T = Parameter.Type

PARAMS = (
    ParamDecl(
        "method", _T.STRING, "optimisation method", "static", constraints=f"one of {list(METHODS)}"
    ),
    ParamDecl("joint_names", _T.STRING_ARRAY, "expected action names, in order (required)"),
    ParamDecl(
        "constrained_joints",
        _T.STRING_ARRAY,
        "joints whose per-step change is bounded (the continuous dims S)",
        [],
        constraints="subset of joint_names; empty = every name without 'gripper'",
    ),
    ParamDecl(
        "max_delta",
        _T.DOUBLE_ARRAY,
        "upper bound on the change per step of each constrained joint [rad or m per step] "
        "(d_max*dt of DiffOG eq. 7; required)",
        constraints="each > 0; 1 value (applies to all) or one per constrained joint",
    ),
    ParamDecl(
        "min_delta",
        _T.DOUBLE_ARRAY,
        "lower bound on the change per step [rad or m per step]",
        [],
        constraints="each < 0; 1 value or one per constrained joint; empty = -max_delta",
    ),
    ParamDecl(
        "smooth_weight", _T.DOUBLE, "smoothing weight alpha of DiffOG eq. 6", 0.0, (0.0, 1e6)
    ),
    ParamDecl("dt", _T.DOUBLE, "time step between chunk points [s] (required)", range=(1e-4, 10.0)),
    ParamDecl("use_continuity", _T.BOOL, "bound the first step against the executed action", True),
    ParamDecl(
        "max_chunk_age", _T.DOUBLE, "chunks stamped longer ago are stale [s]", 0.5, (1e-3, 3600.0)
    ),
    ParamDecl(
        "max_prev_age",
        _T.DOUBLE,
        "an executed action older than this is not used for continuity [s]",
        0.1,
        (1e-3, 3600.0),
    ),
    ParamDecl("model_path", _T.STRING, "checkpoint for diffog / leto (dir or .json)", ""),
    ParamDecl(
        "backend",
        _T.STRING,
        "QP backend of solve_qp",
        "fast",
        constraints=f"one of {list(BACKENDS)}",
    ),
    ParamDecl(
        "solve_deadline",
        _T.DOUBLE,
        "a solve taking longer is abandoned and the chunk clipped instead [s]",
        0.05,
        (1e-4, 60.0),
    ),
    ParamDecl("max_horizon", _T.INTEGER, "most points accepted in one chunk", 256, (1, 10000)),
    ParamDecl(
        "queue_depth",
        _T.INTEGER,
        "subscription depth of action_chunk/raw",
        10,
        (1, 1000),
        read_only=True,
    ),
    replace(DIAGNOSTICS_PERIOD, range=(0.01, 60.0), read_only=True),
)


@dataclass(frozen=True)
class Setup:
    """Everything in force for one chunk: the validated parameters and the loaded model."""

    config: TrajOptConfig
    model: TrajOptModel | None


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _describe(old: Setup, new: Setup) -> str:
    changed = old.config.changes(new.config)
    loaded = new.model is not None and new.model is not old.model
    return f"in force from the next chunk: {sorted(changed)}" + (
        " (model loaded)" if loaded else ""
    )


class TrajOptNode(Node):
    """Validates, optimises and republishes action chunks; never publishes a chunk that breaks a bound."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._models = ModelCache()
        self._params = ValidatedParameters(self, PARAMS, build=self._build, describe=_describe)
        self._optimiser = ChunkOptimiser()
        self._stats = OptimiserStats()
        self._throttle = LogThrottle(period=1.0)
        self._executed = None  # newest ExecutedAction (one reference, swapped atomically)

        depth = self.get_parameter("queue_depth").value
        period = self.get_parameter("diagnostics_period").value
        chunk_qos = QoSProfile(
            depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        out_qos = QoSProfile(
            depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        self._pub = self.create_publisher(JointTrajectory, "action_chunk", out_qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)
        self.create_subscription(
            JointTrajectory,
            "action_chunk/raw",
            self._on_chunk,
            chunk_qos,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.create_subscription(
            JointState,
            "executed_action",
            self._on_executed,
            qos_profile_sensor_data,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.create_timer(period, self._publish_diagnostics, MutuallyExclusiveCallbackGroup())
        cfg = self._params.current.config
        self._optimiser.warm_up(cfg)
        self.get_logger().info(
            f"ready: method={cfg.method} backend={cfg.backend} joints={len(cfg.joint_names)} "
            f"constrained={list(cfg.constrained_joints)} max_delta={list(cfg.max_delta)}"
        )

    def close(self) -> None:
        self._optimiser.close()

    # ------------------------------------------------------------------ parameters
    def _build(self, values) -> Setup:
        """Validate a candidate parameter set; load the checkpoint if the method needs one."""
        config = TrajOptConfig.from_values(values)
        model = None
        if config.method in MODEL_METHODS:
            model = self._models.get(config.model_path, config.method, config.joint_names)
        return Setup(config, model)

    # ------------------------------------------------------------------ callbacks
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _warn(self, key: str, text: str) -> None:
        ok, suppressed = self._throttle.allow(key, self._now())
        if ok:
            more = f" (+{suppressed} more since the last message)" if suppressed else ""
            self.get_logger().warning(text + more)

    def _on_executed(self, msg: JointState) -> None:
        self._stats.count("executed_received")
        stamp = _seconds(msg.header.stamp) or self._now()
        try:
            self._executed = parse_executed(msg.name, msg.position, stamp)
        except Rejected as exc:
            self._stats.executed_rejects.add(exc.reason)
            self._warn(f"executed/{exc.reason}", f"executed_action ignored: {exc}")
        except Exception:  # never let one message take the node down
            self._stats.executed_rejects.add("internal_error")
            self.get_logger().error(f"executed_action failed:\n{traceback.format_exc()}")

    def _on_chunk(self, msg: JointTrajectory) -> None:
        setup = self._params.current  # read once: the parameters in force for this chunk
        config = setup.config
        self._stats.count("chunks_received")
        now = self._now()
        try:
            a = parse_chunk(
                msg.joint_names,
                [p.positions for p in msg.points],
                [_seconds(p.time_from_start) for p in msg.points],
                _seconds(msg.header.stamp),
                now,
                config.limits,
            )
            anchor, skipped = continuity_anchor(self._executed, now, config)
            if skipped is not None:
                self._stats.continuity_skipped.add(skipped)
                self._warn(f"continuity/{skipped}", f"chunk solved without continuity: {skipped}")
            outcome = self._optimiser.optimise(a, anchor, config, setup.model)
        except Rejected as exc:
            self._stats.rejects.add(exc.reason)
            self._warn(f"reject/{exc.reason}", f"chunk rejected: {exc}")
            return
        except Exception:  # never let one message take the node down; publish nothing
            self._stats.rejects.add("internal_error")
            self.get_logger().error(
                f"chunk dropped after an internal error:\n{traceback.format_exc()}"
            )
            return
        if outcome.fallback is not None:
            self._warn(
                f"fallback/{outcome.fallback}", f"published the clipped chunk: {outcome.detail}"
            )
        out = JointTrajectory(header=msg.header, joint_names=msg.joint_names)
        out.points = [
            JointTrajectoryPoint(positions=row, time_from_start=p.time_from_start)
            for row, p in zip(outcome.y.tolist(), msg.points, strict=True)
        ]
        self._pub.publish(out)
        self._stats.record(outcome)

    def _publish_diagnostics(self) -> None:
        level, summary, values = self._stats.report(self._params.current.config)
        fqn = self.get_fully_qualified_name()
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if level == 0 else DiagnosticStatus.WARN,
            name=f"{fqn.lstrip('/')}: optimiser",
            message=summary,
            hardware_id=fqn,
            values=[KeyValue(key=k, value=v) for k, v in values],
        )
        stamp = Time()
        stamp.sec, stamp.nanosec = divmod(self.get_clock().now().nanoseconds, 10**9)
        self._diag_pub.publish(DiagnosticArray(header=Header(stamp=stamp), status=[status]))


def main(args: list[str] | None = None) -> int:
    limit_threads(1)  # small QPs are fastest on one thread; pool threads only add latency
    code = spin_node(
        TrajOptNode, lambda: CooperativeMultiThreadedExecutor(num_threads=4), NODE_NAME, args
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
