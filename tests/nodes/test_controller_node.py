"""controller_node in its own process over real DDS, driving the MuJoCo ALOHA (and one arm of it).

The test side is an rclpy node in its own context (``Peer``): it publishes chunks / teleop commands,
records every ``executed_action`` and ``joint_states`` message, reads ``/diagnostics``, calls the
``estop`` service and sets parameters through rclpy's parameter client.
"""

from __future__ import annotations

import math
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from robots.fuzz import REJECTED, make_chunk
from sensor_msgs.msg import Image, JointState, Joy
from std_srvs.srv import SetBool
from support.procs import node_command, running, stop
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffog_ros.nodes.spin import BackgroundSpinner
from diffog_ros.robots.config import load_robot_config

pytestmark = [pytest.mark.ros, pytest.mark.sim]

DT = 0.02
ALOHA = load_robot_config("aloha_sim.yaml")
SINGLE = load_robot_config("single_arm.yaml")
CAP = ALOHA.max_velocity * DT  # per-tick step cap (no max_joint_step)
# Simulated-arm tolerances on the *measured* state (docs/controller.md, "Safety"): soft MuJoCo joint
# limits, and position servos without damping that overshoot when a full-speed command reverses.
LIMIT_TOL = 0.02
MEASURED_STEP_FACTOR = 4.0


def to_time(t: float) -> Time:
    ns = int(round(t * 1e9))
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def to_duration(t: float) -> Duration:
    ns = int(round(t * 1e9))
    return Duration(sec=ns // 10**9, nanosec=ns % 10**9)


def chunk_msg(names: Sequence[str], stamp: float, offsets, positions) -> JointTrajectory:
    msg = JointTrajectory()
    msg.header.stamp = to_time(stamp)
    msg.joint_names = list(names)
    msg.points = [
        JointTrajectoryPoint(positions=[float(v) for v in p], time_from_start=to_duration(o))
        for p, o in zip(positions, offsets, strict=True)
    ]
    return msg


class Peer:
    """The test's side of the graph (own rclpy context, executor on a daemon thread)."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.ctx = Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("controller_test_peer", namespace=ns, context=self.ctx)
        reliable = QoSProfile(
            depth=1000, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        n = self.node
        self.chunks = n.create_publisher(JointTrajectory, "action_chunk", reliable)
        self.joint_cmd = n.create_publisher(JointState, "teleop/joint_command", 10)
        self.twist = n.create_publisher(TwistStamped, "teleop/twist", 10)
        self.joy = n.create_publisher(Joy, "joy", 10)
        self.lock = threading.Lock()
        self.executed: list[tuple[float, np.ndarray]] = []
        self.states: list[tuple[float, np.ndarray]] = []
        self.ee: list[tuple[float, np.ndarray]] = []
        self.images: dict[str, list[Image]] = {}
        self.diag: dict[str, str] = {}
        self.diag_count = 0
        n.create_subscription(JointState, "executed_action", self._on_executed, reliable)
        n.create_subscription(JointState, "joint_states", self._on_state, qos_profile_sensor_data)
        n.create_subscription(PoseStamped, "ee_pose", self._on_ee, qos_profile_sensor_data)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.estop = n.create_client(SetBool, "estop")
        self.params = AsyncParameterClient(n, f"{ns}/controller")
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(n)
        self.spinner = BackgroundSpinner(self.executor)

    # -------------------------------------------------------------- subscriptions
    @staticmethod
    def _t(msg: Any) -> float:
        return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9

    def _on_executed(self, msg: JointState) -> None:
        with self.lock:
            self.executed.append((self._t(msg), np.array(msg.position)))

    def _on_state(self, msg: JointState) -> None:
        with self.lock:
            self.states.append((self._t(msg), np.array(msg.position)))

    def _on_ee(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        with self.lock:
            self.ee.append((self._t(msg), np.array([p.x, p.y, p.z])))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self.ns}/controller:"):
                with self.lock:
                    self.diag = {kv.key: kv.value for kv in status.values}
                    self.diag_count += 1

    def subscribe_images(self, camera: str) -> None:
        self.images[camera] = []

        def cb(msg: Image, cam: str = camera) -> None:
            with self.lock:
                self.images[cam].append(msg)

        self.node.create_subscription(Image, f"{camera}/image_raw", cb, qos_profile_sensor_data)

    # -------------------------------------------------------------- helpers
    def now(self) -> float:
        return time.time()

    def close(self) -> None:
        self.spinner.stop()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    def fresh_diag(self, timeout: float = 5.0) -> dict[str, str]:
        with self.lock:
            seen = self.diag_count
        self.wait_for(lambda: self.diag_count > seen, timeout, "diagnostics")
        with self.lock:
            return dict(self.diag)

    def counter(self, key: str, diag: dict[str, str] | None = None) -> int:
        d = diag if diag is not None else self.fresh_diag()
        return int(d.get(key, "0"))

    def last_executed(self) -> tuple[float, np.ndarray]:
        self.wait_for(lambda: bool(self.executed), what="executed_action")
        with self.lock:
            return self.executed[-1]

    def executed_since(self, t: float) -> list[tuple[float, np.ndarray]]:
        with self.lock:
            return [(s, p) for s, p in self.executed if s >= t]

    def set_params(self, **values: Any) -> list[Any]:
        assert self.params.wait_for_services(timeout_sec=10.0)
        params = [Parameter(k, value=v) for k, v in values.items()]
        fut = self.params.set_parameters(params)
        deadline = time.monotonic() + 10.0
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fut.done(), "set_parameters timed out"
        return list(fut.result().results)

    def call_estop(self, value: bool) -> str:
        assert self.estop.wait_for_service(timeout_sec=10.0)
        fut = self.estop.call_async(SetBool.Request(data=value))
        deadline = time.monotonic() + 10.0
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        res = fut.result()
        assert res.success
        return res.message


def start_node(tmp_path_factory, ns: str, **params: Any):
    tmp = tmp_path_factory.mktemp(ns.strip("/"))
    log = tmp / "node.log"
    cmd = node_command("controller_node", params, namespace=ns)
    return cmd, log


@pytest.fixture(scope="module")
def aloha(tmp_path_factory):
    """aloha_sim in policy mode under namespace /ctl_a."""
    ns = "/ctl_a"
    cmd, log = start_node(
        tmp_path_factory, ns, backend="aloha_sim", n_action_steps=8, watchdog_timeout=1.0
    )
    with running(cmd, log=log) as proc:
        peer = Peer(ns)
        try:
            peer.wait_for(lambda: len(peer.executed) > 5, 60.0, "the controller to start")
            peer.proc = proc
            yield peer
        finally:
            peer.close()
            code = stop(proc)
    assert code == 0, f"controller_node exited with {code}; log:\n{log.read_text()[-3000:]}"


@pytest.fixture
def policy(aloha):
    assert aloha.proc.poll() is None, "controller_node died"
    res = aloha.set_params(
        mode="policy", n_action_steps=8, watchdog_timeout=1.0, max_joint_step=0.0
    )
    assert all(r.successful for r in res), res
    time.sleep(3 * DT)
    return aloha


def ramp_chunk(base: np.ndarray, n: int, step: float = 0.004) -> list[list[float]]:
    """Steps that move left_waist by ``step`` each (well inside the per-tick cap) -- step k is
    recognisable from the executed value."""
    rows = []
    for k in range(n):
        row = base.copy()
        row[0] += step * (k + 1)
        rows.append(row.tolist())
    return rows


def step_index(value: float, base: float, step: float = 0.004) -> int:
    return int(round((value - base) / step)) - 1


# ----------------------------------------------------------------------------- policy mode
def test_chunks_execute_on_schedule_then_hold(policy):
    _, base = policy.last_executed()
    stamp = policy.now() + 0.3
    rows = ramp_chunk(base, 16)
    policy.chunks.publish(chunk_msg(ALOHA.names, stamp, [k * DT for k in range(16)], rows))
    policy.wait_for(
        lambda: any(s > stamp + 12 * DT for s, _ in policy.executed), 5.0, "the chunk to play"
    )
    seen = {}
    for s, p in policy.executed_since(stamp - 5 * DT):
        k = step_index(p[0], base[0])
        if k >= 0:
            seen.setdefault(k, []).append(s)
            np.testing.assert_allclose(p, rows[k], atol=1e-12)
    # only the first n_action_steps = 8 steps, each sent once at its own tick (+-dt/2), then hold
    assert sorted(seen) == list(range(8))
    first = {k: v[0] for k, v in seen.items()}
    for k, s in first.items():
        assert abs(s - (stamp + k * DT)) <= DT / 2 + 1e-6, (k, s - stamp)
    after = [p for s, p in policy.executed_since(first[7] + DT / 2)]
    assert after and all(np.array_equal(p, rows[7]) for p in after)


def test_a_late_chunk_skips_the_steps_whose_time_has_passed(policy):
    _, base = policy.last_executed()
    skipped_before = policy.counter("steps.skipped_late")
    now = policy.now()
    stamp = now - 0.1  # observation 5 periods ago: steps 0..4 are already due or past
    rows = ramp_chunk(base, 16)
    policy.chunks.publish(chunk_msg(ALOHA.names, stamp, [k * DT for k in range(16)], rows))
    policy.wait_for(lambda: any(s > now + 8 * DT for s, _ in policy.executed), 5.0, "ticks")
    ks = [step_index(p[0], base[0]) for s, p in policy.executed_since(now - DT)]
    ks = [k for k in ks if k >= 0]
    assert ks, "the late chunk was not executed at all"
    assert min(ks) >= 5
    assert 0 not in ks and 4 not in ks
    assert policy.counter("steps.skipped_late") - skipped_before >= 5


def test_fuzzed_chunks_never_break_limits_or_caps_on_executed_action_and_joint_states(policy):
    rng = np.random.default_rng(2024)
    diag0 = policy.fresh_diag()
    t_start = policy.now()
    sent: dict[str, int] = {}
    n = 2000
    for _ in range(n):
        ch = make_chunk(rng, ALOHA.names, ALOHA.start_pose, ALOHA.lower, ALOHA.upper, DT)
        now = policy.now()
        policy.chunks.publish(chunk_msg(ch.names, now + ch.stamp_offset, ch.offsets, ch.positions))
        reason = REJECTED.get(ch.kind)
        if reason:
            sent[reason] = sent.get(reason, 0) + 1
        time.sleep(0.006)  # ~150 chunks/s: faster than any policy, within what the node can take
    # let the chunks still in flight arrive: until the received count stops growing (1 Hz diagnostics)
    diag = policy.fresh_diag()
    for _ in range(15):
        later = policy.fresh_diag()
        settled = later.get("chunks.received") == diag.get("chunks.received")
        diag = later
        if settled:
            break
    assert policy.proc.poll() is None, "controller_node died under fuzzing"
    with policy.lock:
        ex = [(s, p) for s, p in policy.executed if s >= t_start - 1.0]
        js = [(s, p) for s, p in policy.states if s >= t_start]
    c = np.array([p for _, p in ex])
    m = np.array([p for _, p in js])
    assert len(c) > 100 and len(m) > 100
    assert np.all(np.isfinite(c)) and np.all(c >= ALOHA.lower) and np.all(c <= ALOHA.upper)
    # consecutive ticks (stamps one period apart) never change a command by more than the cap
    stamps = np.array([s for s, _ in ex])
    consecutive = np.diff(stamps) < 1.5 * DT
    assert consecutive.sum() > 100
    assert np.all(np.abs(np.diff(c, axis=0))[consecutive] <= CAP * (1 + 1e-9))
    # measured: inside the limits (soft-constraint tolerance), no jumps beyond the servo overshoot
    assert np.all(np.isfinite(m))
    assert np.all(m >= ALOHA.lower - LIMIT_TOL) and np.all(m <= ALOHA.upper + LIMIT_TOL)
    js_stamps = np.array([s for s, _ in js])
    cons_js = np.diff(js_stamps) < 1.5 * DT
    assert np.all(np.abs(np.diff(m, axis=0))[cons_js] <= MEASURED_STEP_FACTOR * CAP)

    # every chunk that arrived was either accepted or refused and counted by its reason
    def delta(key: str) -> int:
        return int(diag.get(key, "0")) - int(diag0.get(key, "0"))

    received = delta("chunks.received")
    # A newer chunk supersedes a queued one (bounded reliable queue; on this loaded 2-core machine
    # 20-50 % arrive): what matters is that every arrival is accounted for, checked below.
    assert n // 10 <= received <= n, f"only {received} of {n} chunks reached the controller"
    reject_keys = {k for k in (*diag, *diag0) if k.startswith("reject.")}
    assert received == delta("chunks.accepted") + sum(delta(k) for k in reject_keys)
    for reason, count in sent.items():
        assert 0 < delta(f"reject.{reason}") <= count, (reason, delta(f"reject.{reason}"), count)
    assert sum(delta(k) for k in reject_keys) == sum(delta(f"reject.{r}") for r in sent)
    assert int(diag["clamp.position_limit"]) > int(diag0.get("clamp.position_limit", "0"))
    assert int(diag["clamp.step_limit"]) > int(diag0.get("clamp.step_limit", "0"))


def test_estop_freezes_ignores_commands_and_releases(policy):
    _, base = policy.last_executed()
    stamp = policy.now() + 0.1
    rows = ramp_chunk(base, 100, step=0.002)
    policy.set_params(n_action_steps=100, watchdog_timeout=5.0)
    time.sleep(3 * DT)
    policy.chunks.publish(chunk_msg(ALOHA.names, stamp, [k * DT for k in range(100)], rows))
    policy.wait_for(lambda: any(s > stamp + 10 * DT for s, _ in policy.executed), 5.0, "motion")
    assert "engaged" in policy.call_estop(True)
    t_engaged = policy.now()
    rejected_before = policy.counter("reject.estop")
    time.sleep(0.1)
    policy.chunks.publish(chunk_msg(ALOHA.names, policy.now(), [0.0], [rows[-1]]))
    time.sleep(0.5)
    frozen = policy.executed_since(t_engaged + 2 * DT)
    assert len(frozen) > 10
    assert all(np.array_equal(p, frozen[0][1]) for _, p in frozen)
    diag = policy.fresh_diag()
    assert diag["estop"] == "True"
    assert policy.counter("reject.estop", diag) == rejected_before + 1
    assert "released" in policy.call_estop(False)
    t_released = policy.now()
    time.sleep(0.3)
    after = policy.executed_since(t_released + 2 * DT)
    assert all(np.array_equal(p, frozen[0][1]) for _, p in after), "moved without a fresh command"
    _, held = policy.last_executed()
    target = held.copy()
    target[0] += 0.01
    offsets = [k * DT for k in range(10)]
    policy.chunks.publish(chunk_msg(ALOHA.names, policy.now(), offsets, [target.tolist()] * 10))
    policy.wait_for(
        lambda: np.allclose(policy.executed[-1][1], target), 3.0, "motion after release"
    )


def test_parameters_are_validated_and_refusals_change_nothing(policy):
    res = policy.set_params(mode="dance")
    assert not res[0].successful and "mode" in res[0].reason
    res = policy.set_params(watchdog_timeout=0.01)  # shorter than two control periods
    assert not res[0].successful and "watchdog_timeout" in res[0].reason
    res = policy.set_params(n_action_steps=0)
    assert not res[0].successful
    res = policy.set_params(backend="aloha")  # read-only
    assert not res[0].successful
    diag = policy.fresh_diag()
    assert diag["mode"] == "policy" and diag["watchdog_timeout"] == "1.0"
    res = policy.set_params(mode="hold", max_joint_step=0.01)
    assert all(r.successful for r in res)
    diag = policy.fresh_diag()
    assert diag["mode"] == "hold" and diag["max_joint_step"] == "0.01"
    _, base = policy.last_executed()
    policy.chunks.publish(chunk_msg(ALOHA.names, policy.now(), [0.0], [(base + 0.5).tolist()]))
    time.sleep(0.2)
    assert np.array_equal(policy.last_executed()[1], base)  # hold mode ignores chunks
    assert policy.counter("reject.mode") >= 1


def test_teleop_watchdog_holds_within_two_periods(policy):
    res = policy.set_params(mode="teleop", watchdog_timeout=0.2)
    assert all(r.successful for r in res)
    time.sleep(3 * DT)
    _, base = policy.last_executed()
    target = base.copy()
    target[0] += 1.5  # far away: the arm moves at the cap for as long as the command is fresh
    msg = JointState(name=list(ALOHA.names), position=target.tolist())
    for _ in range(3):
        msg.header.stamp = to_time(policy.now())
        policy.joint_cmd.publish(msg)
        time.sleep(0.01)
    t_last = policy.now()
    time.sleep(0.6)
    moving = policy.executed_since(t_last - 0.05)
    values = [p[0] for _, p in moving]
    assert max(values) - min(values) > 5 * CAP[0], "teleop command did not move the arm"
    held = policy.executed_since(t_last + 0.2 + 2 * DT)
    assert len(held) > 10
    assert all(np.array_equal(p, held[0][1]) for _, p in held)
    assert policy.counter("watchdog.trips") >= 1


def test_loop_rate_without_cameras_reaches_95_percent_of_50_hz(policy):
    time.sleep(2.5)  # a full diagnostics window of undisturbed ticks
    diag = policy.fresh_diag()
    assert float(diag["target_rate_hz"]) == 50.0
    # achieved over the last 100 ticks (the mean since start includes the fuzzing stress above)
    assert float(diag["loop_rate_hz"]) >= 0.95 * 50.0, diag
    assert int(diag["ticks"]) > 200


# ----------------------------------------------------------------------------- shutdown
def test_sigint_moves_to_the_sleep_pose_then_exits_cleanly(tmp_path_factory):
    ns = "/ctl_c"
    cmd, log = start_node(tmp_path_factory, ns, backend="aloha_sim")
    with running(cmd, log=log) as proc:
        peer = Peer(ns)
        try:
            peer.wait_for(lambda: len(peer.executed) > 5, 60.0, "the controller to start")
            t_sig = peer.now()
            code = stop(proc, timeout=20.0)
            time.sleep(0.2)
            moves = peer.executed_since(t_sig)
        finally:
            peer.close()
    assert code == 0, log.read_text()[-3000:]
    assert len(moves) > 5
    c = np.array([p for _, p in moves])
    np.testing.assert_allclose(
        c[-1], ALOHA.sleep_pose, atol=1e-9, err_msg=f"{len(c)} commands after SIGINT"
    )
    assert np.all(np.abs(np.diff(c, axis=0)) <= CAP * (1 + 1e-9))


# ----------------------------------------------------------------------------- single arm
@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    ns = "/ctl_b"
    cmd, log = start_node(
        tmp_path_factory,
        ns,
        backend="single_arm_sim",
        mode="teleop",
        watchdog_timeout=0.2,
        publish_cameras=["cam_high", "cam_left_wrist"],
        camera_rate_hz=5.0,
        camera_width=64,
        camera_height=48,
    )
    with running(cmd, log=log) as proc:
        peer = Peer(ns)
        peer.subscribe_images("cam_high")
        peer.subscribe_images("cam_left_wrist")
        try:
            peer.wait_for(lambda: len(peer.ee) > 5, 60.0, "the single-arm controller to start")

            def settled() -> bool:  # the safe start (interpolation to the start pose) is over
                recent = [p for _, p in peer.ee[-25:]]
                return len(recent) == 25 and np.ptp(np.array(recent), axis=0).max() < 1e-5

            peer.wait_for(settled, 60.0, "the safe start to finish")
            # DDS discovery: commands published before the controller matched them are lost
            peer.wait_for(
                lambda: (
                    peer.twist.get_subscription_count() > 0
                    and peer.joy.get_subscription_count() > 0
                ),
                30.0,
                "the controller to subscribe the teleop topics",
            )
            peer.proc = proc
            yield peer
        finally:
            peer.close()
            code = stop(proc, timeout=20.0)
    assert code == 0, f"controller_node exited with {code}; log:\n{log.read_text()[-3000:]}"


def twist_for(peer: Peer, v: Sequence[float], seconds: float) -> None:
    msg = TwistStamped()
    msg.header.frame_id = SINGLE.frame_id
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(x) for x in v)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        msg.header.stamp = to_time(peer.now())
        peer.twist.publish(msg)
        time.sleep(DT)


def test_single_arm_twist_moves_the_end_effector_along_the_command(arm):
    box_min = np.array(SINGLE.section("end_effector")["workspace"]["min"])
    box_max = np.array(SINGLE.section("end_effector")["workspace"]["max"])
    t0 = arm.now()
    direction = np.array([1.0, -1.0, 0.5]) / np.linalg.norm([1.0, -1.0, 0.5])
    twist_for(arm, 0.08 * direction, 0.5)  # get the motion going (IK away from the start pose)
    _, p0 = arm.ee[-1]
    twist_for(arm, 0.08 * direction, 1.0)
    time.sleep(0.4)  # the watchdog stops the motion; let the arm settle
    _, p1 = arm.ee[-1]
    disp = p1 - p0
    # commanded 0.08 m in 1 s; the simulated servos and per-tick IK follow slower, and how much
    # slower varies with timing on this machine: only the direction is checked tightly
    assert np.linalg.norm(disp) > 0.01
    assert np.dot(disp, direction) / np.linalg.norm(disp) > 0.9
    # push down, far past the box floor: the end effector goes down and never leaves the box
    z_before = arm.ee[-1][1][2]
    twist_for(arm, [0.0, 0.0, -0.25], 3.5)
    time.sleep(0.3)
    with arm.lock:
        poses = np.array([p for s, p in arm.ee if s >= t0])
    assert np.all(poses >= box_min - 0.01) and np.all(poses <= box_max + 0.01)
    assert poses[-1][2] < z_before - 0.02


def test_single_arm_joy_buttons_drive_the_gripper(arm):
    teleop = SINGLE.section("teleop")
    g = SINGLE.index("gripper")
    for button in (teleop["joy_gripper_open_button"], teleop["joy_gripper_close_button"]):
        buttons = [0, 0, 0, 0]
        buttons[button] = 1
        arm.joy.publish(Joy(buttons=buttons))
        time.sleep(0.1)
        arm.joy.publish(Joy(buttons=[0, 0, 0, 0]))
        want = 1.0 if button == teleop["joy_gripper_open_button"] else 0.0
        arm.wait_for(lambda w=want: arm.executed[-1][1][g] == w, 3.0, f"gripper at {want}")


def test_simulated_cameras_publish_rgb_images_off_the_control_path(arm):
    arm.wait_for(
        lambda: all(len(v) >= 2 for v in arm.images.values()), 20.0, "simulated camera images"
    )
    for cam, msgs in arm.images.items():
        img = msgs[-1]
        assert (img.width, img.height, img.encoding) == (64, 48, "rgb8")
        assert img.header.frame_id == cam
        pixels = np.frombuffer(bytes(img.data), dtype=np.uint8).reshape(48, 64, 3)
        assert pixels.std() > 1.0
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs]
        assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    diag = arm.fresh_diag()
    assert int(diag["camera_frames"]) >= 4
    assert math.isfinite(float(diag["camera_render_ms"]))


# ----------------------------------------------------------------------------- start-up refusals
@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"backend": "hexapod"}, "backend"),
        ({"backend": "aloha"}, "Interbotix ROS 2"),
        ({"backend": "aloha_sim", "robot_config": "/nonexistent/robot.yaml"}, "not found"),
        ({"backend": "aloha_sim", "robot_config": "single_arm.yaml"}, "kind"),
        ({"backend": "aloha_sim", "watchdog_timeout": 0.01}, "watchdog_timeout"),
        ({"backend": "aloha_sim", "n_action_steps": 0}, "n_action_steps"),
        ({"backend": "aloha_sim", "publish_cameras": ["cam_nope"]}, "cam_nope"),
    ],
)
def test_refuses_to_start_with_a_clear_error(params, needle):
    proc = subprocess.run(
        node_command("controller_node", params, namespace="/ctl_bad"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert needle in out, out
