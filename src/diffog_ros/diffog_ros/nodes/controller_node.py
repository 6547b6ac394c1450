"""``controller_node``: executes action chunks / teleop commands on a robot behind the safety layer.

A thin rclpy wrapper over :class:`diffog_ros.robots.control_loop.ControlLoop`: it parses and
validates parameters, wires topics, runs the control tick on a timer and publishes what happened.
Topics, QoS, parameters and diagnostics keys are documented in ``docs/controller.md``.

Threads: a ``CooperativeMultiThreadedExecutor`` (nodes/spin.py) runs the control timer (its own
mutually exclusive callback group), the inputs + services + diagnostics (a second group) and
parameter services (the default group). Simulated cameras (``publish_cameras``) render in a
dedicated thread, never on the control path. SIGINT / SIGTERM trigger the safe shutdown (move to the
sleep pose, still publishing), then the robot is disconnected; a second signal stops at once,
holding position.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration as RclpyDuration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image, JointState, Joy
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from diffog_ros.nodes.spin import (
    BackgroundSpinner,
    CooperativeMultiThreadedExecutor,
    dump_stacks_on_sigusr1,
)
from diffog_ros.robots.config import RobotConfigError
from diffog_ros.robots.control_loop import MODES, ControlLoop, LoopSettings, RateMonitor
from diffog_ros.robots.factory import BACKENDS, SIM_BACKENDS, load_backend_config, make_robot
from diffog_ros.robots.kinematics import mat_to_quat

TASKS = ("transfer_cube", "insertion")
DYNAMIC = ("mode", "n_action_steps", "watchdog_timeout", "max_joint_step")
RELIABLE_10 = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
)
# Chunks are commands: reliable, with room for a burst (a newer chunk replaces the queue anyway).
CHUNK_QOS = QoSProfile(
    depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
)
BEST_EFFORT_5 = QoSProfile(
    depth=5, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST
)


class ParameterError(ValueError):
    """A start-up parameter is invalid (the node refuses to start)."""


class RosLogHandler(logging.Handler):
    """Forward ``logging`` records of the core (``diffog_ros.*``) to the node's ROS logger."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        msg = self.format(record)
        if record.levelno >= logging.ERROR:
            self._logger.error(msg)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(msg)
        elif record.levelno >= logging.INFO:
            self._logger.info(msg)
        else:
            self._logger.debug(msg)


def _stamp_to_sec(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def _descriptor(
    description: str,
    ptype: int,
    *,
    read_only: bool = False,
    fmin: float | None = None,
    fmax: float | None = None,
    imin: int | None = None,
    imax: int | None = None,
    constraints: str = "",
) -> ParameterDescriptor:
    d = ParameterDescriptor(
        description=description,
        type=ptype,
        read_only=read_only,
        additional_constraints=constraints,
    )
    if fmin is not None:
        d.floating_point_range = [FloatingPointRange(from_value=fmin, to_value=fmax, step=0.0)]
    if imin is not None:
        d.integer_range = [IntegerRange(from_value=imin, to_value=imax, step=1)]
    return d


class CameraThread:
    """Renders simulated cameras at a fixed rate in its own thread and publishes them."""

    def __init__(
        self, node: ControllerNode, sim: Any, cameras: list[str], rate: float, w: int, h: int
    ):
        self._node, self._sim = node, sim
        self._cameras, self._period, self._w, self._h = cameras, 1.0 / rate, w, h
        self._stop = threading.Event()
        self._pubs = {
            c: (
                node.create_publisher(Image, f"{c}/image_raw", qos_profile_sensor_data),
                node.create_publisher(CameraInfo, f"{c}/camera_info", qos_profile_sensor_data),
            )
            for c in cameras
        }
        self.frames = 0
        self.render_ms = 0.0
        self._thread = threading.Thread(target=self._run, name="sim_cameras", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _info(self, cam: str, header: Any) -> CameraInfo:
        fovy = math.radians(self._sim.camera_fovy(cam))
        f = (self._h / 2.0) / math.tan(fovy / 2.0)
        info = CameraInfo()
        info.header = header
        info.width, info.height = self._w, self._h
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [f, 0.0, self._w / 2.0, 0.0, f, self._h / 2.0, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [f, 0.0, self._w / 2.0, 0.0, 0.0, f, self._h / 2.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def _run(self) -> None:
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                for cam in self._cameras:
                    stamp = self._node.get_clock().now().to_msg()
                    t0 = time.perf_counter()
                    img = self._sim.render(cam, self._w, self._h)
                    self.render_ms = (time.perf_counter() - t0) * 1e3
                    msg = Image()
                    msg.header.stamp = stamp
                    msg.header.frame_id = cam
                    msg.height, msg.width = img.shape[0], img.shape[1]
                    msg.encoding = "rgb8"
                    msg.is_bigendian = 0
                    msg.step = img.shape[1] * 3
                    msg.data = img.tobytes()
                    image_pub, info_pub = self._pubs[cam]
                    image_pub.publish(msg)
                    info_pub.publish(self._info(cam, msg.header))
                    self.frames += 1
                next_t += self._period
                delay = next_t - time.monotonic()
                if delay < 0:
                    next_t = time.monotonic()  # fell behind: do not try to catch up
                self._stop.wait(max(0.0, delay))
        except Exception as exc:  # noqa: BLE001 - a camera fault must not take the controller down
            self._node.get_logger().error(f"simulated camera thread stopped: {exc!r}")
        finally:
            self._sim.close_renderers()


class ControllerNode(Node):
    """See module docstring and docs/controller.md."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("controller", **kwargs)
        self._declare_parameters()
        p = self._startup_parameters()
        self.backend = p["backend"]
        self.dt = 1.0 / p["control_rate_hz"]
        try:
            config = load_backend_config(self.backend, p["robot_config"] or None)
        except (RobotConfigError, ValueError) as exc:
            raise ParameterError(f"robot_config: {exc}") from exc
        self.config = config
        self.robot = make_robot(
            self.backend,
            config,
            task=p["task"],
            seed=p["seed"],
            control_rate_hz=p["control_rate_hz"],
        )
        settings = self._settings_from_parameters()
        self._camera_source = self._check_cameras(p["publish_cameras"])
        self.robot.connect()  # nothing after this may refuse to start without disconnecting
        self.loop = ControlLoop(self.robot, self.dt, settings)
        self.rate = RateMonitor(self.dt)
        self.ee = self.loop.end_effector
        self._shutdown_requested = threading.Event()
        self.finished = threading.Event()
        self._last_tick_ms = 0.0

        self._cb_control = MutuallyExclusiveCallbackGroup()
        self._cb_inputs = MutuallyExclusiveCallbackGroup()
        self._pub_joint_states = self.create_publisher(
            JointState, "joint_states", qos_profile_sensor_data
        )
        self._pub_executed = self.create_publisher(JointState, "executed_action", RELIABLE_10)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_10)
        self._pub_ee = (
            self.create_publisher(PoseStamped, "ee_pose", qos_profile_sensor_data)
            if self.ee
            else None
        )
        self.create_subscription(
            JointTrajectory,
            "action_chunk",
            self._on_chunk,
            CHUNK_QOS,
            callback_group=self._cb_inputs,
        )
        self.create_subscription(
            JointState,
            "teleop/joint_command",
            self._on_joint_command,
            BEST_EFFORT_5,
            callback_group=self._cb_inputs,
        )
        if self.ee is not None:
            self.create_subscription(
                TwistStamped,
                "teleop/twist",
                self._on_twist,
                BEST_EFFORT_5,
                callback_group=self._cb_inputs,
            )
            self.create_subscription(
                PoseStamped,
                "teleop/pose",
                self._on_pose,
                BEST_EFFORT_5,
                callback_group=self._cb_inputs,
            )
            teleop = config.sections.get("teleop") or {}
            self._joy_close = teleop.get("joy_gripper_close_button")
            self._joy_open = teleop.get("joy_gripper_open_button")
            self._joy_prev: tuple[int, ...] = ()
            self.create_subscription(
                Joy, "joy", self._on_joy, RELIABLE_10, callback_group=self._cb_inputs
            )
        self.create_service(SetBool, "estop", self._on_estop, callback_group=self._cb_inputs)
        if self.backend in SIM_BACKENDS:
            self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._cb_inputs)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.loop.start(self._now())
        self._timer = self.create_timer(self.dt, self._on_tick, callback_group=self._cb_control)
        self._diag_timer = self.create_timer(
            1.0, self._publish_diagnostics, callback_group=self._cb_inputs
        )

        self.cameras: CameraThread | None = None
        if p["publish_cameras"]:
            self.cameras = CameraThread(
                self,
                self._camera_source,
                p["publish_cameras"],
                p["camera_rate_hz"],
                p["camera_width"],
                p["camera_height"],
            )
            self.cameras.start()
        self.get_logger().info(
            f"controller up: backend={self.backend} robot={config.name} ({config.source}) "
            f"rate={p['control_rate_hz']} Hz mode={self.loop.settings.mode} "
            f"cameras={p['publish_cameras'] or 'none'}"
        )

    def _check_cameras(self, cameras: list[str]) -> Any:
        """The simulator that renders ``cameras`` (validated before the robot connects)."""
        if not cameras:
            return None
        sim = getattr(self.robot, "sim", self.robot)
        if not hasattr(sim, "render"):
            raise ParameterError(
                f"publish_cameras: backend {self.backend!r} has no simulated cameras"
            )
        unknown = [c for c in cameras if c not in sim.camera_names]
        if unknown:
            raise ParameterError(
                f"publish_cameras: unknown cameras {unknown}; available {list(sim.camera_names)}"
            )
        return sim

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        S, D, INT, SA = (
            ParameterType.PARAMETER_STRING,
            ParameterType.PARAMETER_DOUBLE,
            ParameterType.PARAMETER_INTEGER,
            ParameterType.PARAMETER_STRING_ARRAY,
        )
        decl = self.declare_parameter
        decl(
            "backend",
            "aloha_sim",
            _descriptor("robot backend", S, read_only=True, constraints=f"one of {list(BACKENDS)}"),
        )
        decl(
            "task",
            "transfer_cube",
            _descriptor(
                "simulated task (sim backends)",
                S,
                read_only=True,
                constraints=f"one of {list(TASKS)}",
            ),
        )
        decl(
            "seed",
            0,
            _descriptor(
                "seed of the simulated object reset (used at start and by ~/reset)",
                INT,
                imin=0,
                imax=2**31 - 1,
            ),
        )
        decl(
            "robot_config",
            "",
            _descriptor(
                "robot YAML: a path or a file name in the package config/; '' = the backend's default",
                S,
                read_only=True,
            ),
        )
        decl(
            "control_rate_hz",
            50.0,
            _descriptor("control loop rate (Hz)", D, read_only=True, fmin=1.0, fmax=500.0),
        )
        decl(
            "n_action_steps",
            8,
            _descriptor(
                "number of leading steps of each action chunk that are executed",
                INT,
                imin=1,
                imax=1000,
            ),
        )
        decl(
            "watchdog_timeout",
            0.5,
            _descriptor(
                "hold when no fresh command arrived for this long (s); >= two control periods",
                D,
                fmin=0.005,
                fmax=10.0,
            ),
        )
        decl(
            "mode",
            "policy",
            _descriptor(
                "command source: policy (action_chunk) | teleop (teleop/*) | hold",
                S,
                constraints=f"one of {list(MODES)}",
            ),
        )
        decl(
            "max_joint_step",
            0.0,
            _descriptor(
                "optional tighter per-tick cap on rad joints (rad per tick); 0 = velocity limit only",
                D,
                fmin=0.0,
                fmax=math.pi,
            ),
        )
        decl(
            "publish_cameras",
            Parameter.Type.STRING_ARRAY,
            _descriptor(
                "simulated cameras to render and publish as <camera>/image_raw (sim backends)",
                SA,
                read_only=True,
            ),
        )
        decl(
            "camera_rate_hz",
            10.0,
            _descriptor(
                "rate of the simulated cameras (Hz)", D, read_only=True, fmin=0.1, fmax=60.0
            ),
        )
        decl(
            "camera_width",
            640,
            _descriptor(
                "simulated camera image width (px)", INT, read_only=True, imin=16, imax=4096
            ),
        )
        decl(
            "camera_height",
            480,
            _descriptor(
                "simulated camera image height (px)", INT, read_only=True, imin=16, imax=4096
            ),
        )

    def _startup_parameters(self) -> dict[str, Any]:
        g = self.get_parameter
        p: dict[str, Any] = {
            k: g(k).value
            for k in (
                "backend",
                "task",
                "seed",
                "robot_config",
                "control_rate_hz",
                "camera_rate_hz",
                "camera_width",
                "camera_height",
            )
        }
        try:
            p["publish_cameras"] = list(g("publish_cameras").value or [])
        except rclpy.exceptions.ParameterUninitializedException:
            p["publish_cameras"] = []
        if p["backend"] not in BACKENDS:
            raise ParameterError(f"backend must be one of {list(BACKENDS)}, got {p['backend']!r}")
        if p["task"] not in TASKS:
            raise ParameterError(f"task must be one of {list(TASKS)}, got {p['task']!r}")
        if p["publish_cameras"] and p["backend"] not in SIM_BACKENDS:
            raise ParameterError("publish_cameras needs a simulated backend")
        return p

    def _settings_from_parameters(self, overrides: dict[str, Any] | None = None) -> LoopSettings:
        values = {k: self.get_parameter(k).value for k in DYNAMIC}
        values.update(overrides or {})
        settings = LoopSettings(
            mode=values["mode"],
            n_action_steps=values["n_action_steps"],
            watchdog_timeout=float(values["watchdog_timeout"]),
            max_joint_step=float(values["max_joint_step"]),
        )
        try:
            settings.validate(self.dt)
        except ValueError as exc:
            raise ParameterError(str(exc)) from exc
        return settings

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        mine = {p.name: p.value for p in params if p.name in DYNAMIC}
        if not mine:
            return SetParametersResult(successful=True)
        try:
            settings = self._settings_from_parameters(mine)
        except (ParameterError, TypeError) as exc:
            self.get_logger().warning(f"refused parameter change {mine}: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        old = self.loop.settings
        self.loop.apply_settings(settings)
        changes = ", ".join(f"{k}: {getattr(old, k)!r} -> {v!r}" for k, v in mine.items())
        self.get_logger().info(f"parameters accepted (applied at the next tick): {changes}")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_chunk(self, msg: JointTrajectory) -> None:
        offsets = [_stamp_to_sec(p.time_from_start) for p in msg.points]
        positions = [list(p.positions) for p in msg.points]
        self.loop.submit_chunk(
            list(msg.joint_names), _stamp_to_sec(msg.header.stamp), offsets, positions, self._now()
        )

    def _on_joint_command(self, msg: JointState) -> None:
        self.loop.submit_joint_command(list(msg.name), list(msg.position), self._now())

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        self.loop.submit_twist(
            msg.header.frame_id,
            [t.linear.x, t.linear.y, t.linear.z],
            [t.angular.x, t.angular.y, t.angular.z],
            self._now(),
        )

    def _on_pose(self, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        self.loop.submit_pose(
            msg.header.frame_id, [p.x, p.y, p.z], [o.w, o.x, o.y, o.z], self._now()
        )

    def _on_joy(self, msg: Joy) -> None:
        buttons = tuple(msg.buttons)
        pressed = [
            i
            for i, b in enumerate(buttons)
            if b and (i >= len(self._joy_prev) or not self._joy_prev[i])
        ]
        self._joy_prev = buttons
        if self._joy_close in pressed:
            self.loop.submit_gripper(self.ee.gripper_closed, self._now())
        elif self._joy_open in pressed:
            self.loop.submit_gripper(self.ee.gripper_open, self._now())

    def _on_estop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        changed = self.loop.set_estop(bool(request.data))
        state = "engaged" if request.data else "released"
        response.success = True
        response.message = f"e-stop {state}" + ("" if changed else " (unchanged)")
        return response

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        seed = int(self.get_parameter("seed").value)
        try:
            self.loop.reset(seed)
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            response.success, response.message = False, f"reset failed: {exc}"
            return response
        response.success, response.message = True, f"reset with seed {seed}"
        return response

    # ------------------------------------------------------------------ control tick
    def request_shutdown(self) -> None:
        if self._shutdown_requested.is_set():
            self.loop.request_stop()  # second request: stop where we are
            return
        self._shutdown_requested.set()
        self.loop.request_stop()

    def _on_tick(self) -> None:
        if self.finished.is_set():
            return
        t0 = time.monotonic()
        now_msg = self.get_clock().now()
        try:
            result = self.loop.tick(now_msg.nanoseconds * 1e-9)
        except Exception as exc:  # noqa: BLE001 - a robot fault must not kill the loop
            self.loop.counters.add("errors.tick")
            self.get_logger().error(f"control tick failed: {exc!r}", throttle_duration_sec=2.0)
            return
        stamp = now_msg.to_msg()
        names = list(self.robot.names)
        js = JointState()
        js.header.stamp = stamp
        js.name = names
        js.position = result.state.position.tolist()
        js.velocity = result.state.velocity.tolist()
        js.effort = result.state.effort.tolist()
        self._pub_joint_states.publish(js)
        ex = JointState()
        ex.header.stamp = stamp
        ex.name = names
        ex.position = result.command.tolist()
        self._pub_executed.publish(ex)
        if self._pub_ee is not None and result.ee_position is not None:
            pose = PoseStamped()
            pose.header.stamp = stamp
            pose.header.frame_id = self.ee.frame_id
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (
                float(v) for v in result.ee_position
            )
            w, x, y, z = (float(v) for v in mat_to_quat(result.ee_rotation))
            o = pose.pose.orientation
            o.w, o.x, o.y, o.z = w, x, y, z
            self._pub_ee.publish(pose)
        t1 = time.monotonic()
        self.rate.record(t0, t1)
        self._last_tick_ms = (t1 - t0) * 1e3
        if result.phase == "stopped" and self._shutdown_requested.is_set():
            self.finished.set()

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        diag = self.loop.diagnostics()
        target = 1.0 / self.dt
        rate = self.rate.rate()
        values: dict[str, Any] = {
            "backend": self.backend,
            "robot": self.config.name,
            "loop_rate_hz": round(rate, 3),
            "loop_rate_mean_hz": round(self.rate.mean_rate(), 3),
            "target_rate_hz": target,
            "ticks": self.rate.ticks,
            "overruns": self.rate.overruns,
            "late_ticks": self.rate.late,
            "max_tick_ms": round(self.rate.max_duration * 1e3, 3),
            "last_tick_ms": round(self._last_tick_ms, 3),
        }
        values.update(diag)
        sim = getattr(self.robot, "sim", self.robot)
        if hasattr(sim, "reward"):
            try:
                reward = sim.reward()
                values["task_reward"] = reward
                values["task_success"] = reward == sim.max_reward
            except Exception:  # noqa: BLE001 - diagnostics must not fail the node
                pass
        if self.cameras is not None:
            values["camera_frames"] = self.cameras.frames
            values["camera_render_ms"] = round(self.cameras.render_ms, 2)
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: control loop"
        status.hardware_id = self.config.name
        problems = []
        if self.rate.ticks > 10 and rate < 0.95 * target:
            problems.append(f"loop rate {rate:.1f} Hz < 95% of {target:.0f} Hz")
        if diag["estop"]:
            problems.append("e-stop engaged")
        if diag["phase"] != "running":
            problems.append(f"phase {diag['phase']}")
        status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        status.message = "; ".join(problems) or "ok"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self._pub_diag.publish(arr)

    # ------------------------------------------------------------------ teardown
    def flush(self, timeout: float = 1.0) -> None:
        """Wait (bounded) until subscribers acknowledged the last executed actions."""
        try:
            self._pub_executed.wait_for_all_acked(RclpyDuration(seconds=timeout))
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass

    def stop_cameras(self) -> None:
        if self.cameras is not None:
            self.cameras.stop()

    def disconnect_robot(self) -> None:
        """Release the robot (after the node is destroyed: Interbotix shuts rclpy down)."""
        try:
            self.robot.disconnect()
        except Exception as exc:  # noqa: BLE001 - log and keep shutting down
            logging.getLogger("controller_node").error("robot disconnect failed: %r", exc)


def main(args: list[str] | None = None) -> int:
    dump_stacks_on_sigusr1()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    core_log = logging.getLogger("diffog_ros")
    core_log.setLevel(logging.INFO)
    try:
        node = ControllerNode()
    except (
        ParameterError,
        RobotConfigError,
        ValueError,
        ImportError,
        rclpy.exceptions.ParameterException,
    ) as exc:
        sys.stderr.write(f"controller_node: refusing to start: {exc}\n")
        rclpy.try_shutdown()
        return 2
    handler = RosLogHandler(node)
    core_log.addHandler(handler)
    core_log.propagate = False

    signals = {"count": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        signals["count"] += 1
        node.get_logger().info(f"signal {signum}: safe shutdown requested")
        node.request_shutdown()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    executor = CooperativeMultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    spin = BackgroundSpinner(executor)
    rc = 0
    try:
        while not node.finished.wait(0.1):
            if not spin.is_alive():
                node.get_logger().error("executor stopped unexpectedly")
                rc = 1
                break
        # wait for the shutdown move to complete (bounded by the config's timeout)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if not node.finished.is_set() and spin.is_alive():
            node.request_shutdown()
            node.finished.wait(node.config.safe_motion.timeout)
        node.stop_cameras()
        if not spin.stop(timeout=2.0):
            node.get_logger().error("executor thread did not stop within 2 s")
            rc = rc or 1
        node.flush()
        core_log.removeHandler(handler)
        core_log.propagate = True
        node.destroy_node()
        node.disconnect_robot()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
