"""A second rclpy node that talks to a running ``trajopt_node`` over real DDS (test helper).

Publishes raw chunks and executed actions, collects optimised chunks by stamp and the node's
diagnostics, and sets parameters through rclpy's AsyncParameterClient. Used by the node tests and
the parameter-CLI tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import yaml
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffog_ros.paths import config_path

StampKey = tuple[int, int]


def aloha_params() -> dict[str, Any]:
    """The shipped ALOHA parameters of trajopt_node (config/trajopt_aloha.yaml)."""
    data = yaml.safe_load(Path(config_path("trajopt_aloha")).read_text())
    return dict(data["trajopt"]["ros__parameters"])


def to_time(ns: int) -> Time:
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 10**9, nanosec=ns % 10**9)


def chunk_msg(
    rows: Sequence[Sequence[float]],
    names: Sequence[str],
    stamp_ns: int,
    dt: float = 0.02,
    times: Sequence[float] | None = None,
) -> JointTrajectory:
    msg = JointTrajectory()
    msg.header.stamp = to_time(stamp_ns)
    msg.joint_names = list(names)
    times = [k * dt for k in range(len(rows))] if times is None else times
    msg.points = [
        JointTrajectoryPoint(positions=[float(v) for v in row], time_from_start=duration(t))
        for row, t in zip(rows, times, strict=True)
    ]
    return msg


class Peer:
    """The test side of the graph. Spins its own executor on a daemon thread."""

    def __init__(self, target: str = "/trajopt", name: str = "trajopt_test_peer") -> None:
        self.node = rclpy.create_node(name)
        reliable = QoSProfile(
            depth=1000, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        self.raw = self.node.create_publisher(JointTrajectory, "action_chunk/raw", reliable)
        self.executed = self.node.create_publisher(JointState, "executed_action", reliable)
        self._cond = threading.Condition()
        self.outputs: dict[StampKey, JointTrajectory] = {}
        self.output_count = 0
        self._diag: dict[str, str] | None = None
        self._diag_seq = 0
        self._target = target
        self.node.create_subscription(JointTrajectory, "action_chunk", self._on_out, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable)
        self.params = AsyncParameterClient(self.node, target)
        self._last_ns = 0
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()

    def _spin(self) -> None:
        while self._running:
            self._executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._executor.shutdown()
        self.node.destroy_node()

    # ------------------------------------------------------------------ subscriptions
    def _on_out(self, msg: JointTrajectory) -> None:
        with self._cond:
            self.outputs[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
            self.output_count += 1
            self._cond.notify_all()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id == self._target:
                with self._cond:
                    self._diag = {kv.key: kv.value for kv in status.values}
                    self._diag["__level__"] = str(int.from_bytes(status.level, "little"))
                    self._diag_seq += 1
                    self._cond.notify_all()

    # ------------------------------------------------------------------ waiting
    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Block until ``predicate()`` (evaluated under the lock) holds, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
                self._cond.wait(min(left, 0.1))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the node's parameter services, chunk subscription and diagnostics are up."""
        if not self.params.wait_for_services(timeout_sec=timeout):
            raise TimeoutError(f"{self._target} parameter services did not appear")
        deadline = time.monotonic() + timeout
        while self.raw.get_subscription_count() == 0 or self.executed.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("trajopt_node did not subscribe")
            time.sleep(0.05)
        self.diagnostics(timeout=timeout)

    def diagnostics(self, timeout: float = 10.0) -> dict[str, str]:
        """A diagnostics status published after this call."""
        with self._cond:
            seq = self._diag_seq
        self.wait_for(lambda: self._diag_seq > seq, timeout, "a fresh /diagnostics message")
        with self._cond:
            return dict(self._diag)

    def counters(self, timeout: float = 10.0) -> dict[str, int]:
        """The integer-valued diagnostics keys, fresh."""
        out = {}
        for k, v in self.diagnostics(timeout).items():
            try:
                out[k] = int(v)
            except ValueError:
                pass
        return out

    def wait_received(self, total: int, timeout: float = 30.0) -> dict[str, int]:
        """Until the node has handled ``total`` chunks (received = published + rejected)."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.counters()
            if c["chunks_received"] >= total and c["chunks_received"] == (
                c["chunks_published"] + c["rejects_total"]
            ):
                return c
            if time.monotonic() > deadline:
                raise TimeoutError(f"node handled {c['chunks_received']} of {total} chunks")

    # ------------------------------------------------------------------ publishing
    def fresh_stamp(self) -> int:
        ns = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = ns
        return ns

    def send_executed(
        self, names: Sequence[str], values: Sequence[float], stamp_ns: int | None = None
    ):
        msg = JointState()
        msg.header.stamp = to_time(self.fresh_stamp() if stamp_ns is None else stamp_ns)
        msg.name = list(names)
        msg.position = [float(v) for v in values]
        self.executed.publish(msg)

    def send_executed_and_wait(self, names, values, timeout: float = 20.0) -> None:
        """Publish an executed action until the node has counted one more (sensor-data QoS)."""
        before = self.counters()["executed_received"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send_executed(names, values)
            if self.counters()["executed_received"] > before:
                return
        raise TimeoutError("the node never received the executed action")

    def send_chunk(self, msg: JointTrajectory) -> StampKey:
        self.raw.publish(msg)
        return (msg.header.stamp.sec, msg.header.stamp.nanosec)

    def wait_output(self, key: StampKey, timeout: float = 20.0) -> np.ndarray:
        self.wait_for(lambda: key in self.outputs, timeout, f"the optimised chunk {key}")
        with self._cond:
            msg = self.outputs[key]
        return np.array([p.positions for p in msg.points], dtype=np.float64)

    # ------------------------------------------------------------------ parameters
    def _wait_future(self, future, timeout: float = 30.0):
        self.wait_for(future.done, timeout, "a parameter service response")
        return future.result()

    def set_params(self, **values: Any) -> list:
        """Set parameters one request; returns the SetParametersResult list."""
        params = [Parameter(k, value=v) for k, v in values.items()]
        return self._wait_future(self.params.set_parameters(params)).results

    def set_atomically(self, **values: Any):
        """Set parameters in one atomic request; returns the single SetParametersResult."""
        params = [Parameter(k, value=v) for k, v in values.items()]
        return self._wait_future(self.params.set_parameters_atomically(params)).result

    def set_ok(self, **values: Any) -> None:
        result = self.set_atomically(**values)
        assert result.successful, f"setting {sorted(values)} was refused: {result.reason}"

    def get_params(self, *names: str) -> dict[str, Any]:
        from rclpy.parameter import parameter_value_to_python

        resp = self._wait_future(self.params.get_parameters(list(names)))
        return {n: parameter_value_to_python(v) for n, v in zip(names, resp.values, strict=True)}


def write_params(path: Path, node_name: str = "trajopt", **overrides: Any) -> Path:
    """A --params-file for trajopt_node: the shipped ALOHA file with ``overrides`` applied."""
    params = aloha_params()
    params.update(overrides)
    path.write_text(yaml.safe_dump({node_name: {"ros__parameters": params}}))
    return path
