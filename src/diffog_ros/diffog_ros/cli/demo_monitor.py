"""Helpers of ``diffog-ros demo``: watch the running graph over DDS, then report on the episode."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from diffog_ros.paths import config_path
from diffog_ros.trajopt import trajectory_metrics


def _stamp(msg) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


def run(
    duration: float,
    timeout: float,
    say: Callable[[str], None],
    graph_alive: Callable[[], bool],
    trajopt_params: dict | None = None,
):
    """Start recording, enable the policy, follow the rollout for ``duration`` s, stop recording.

    ``trajopt_params`` (e.g. ``{"max_delta": [0.03]}``) are set on the trajopt node first, live
    through its parameter service; a refused value ends the run (None)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory

    rclpy.init()
    node = rclpy.create_node("demo_monitor")
    state: dict = {
        "raw": [],
        "opt": [],
        "executed": [],
        "recording": False,
        "reward": 0,
        "max_reward": 0,
        "success": False,
        "success_now": False,
        "names": None,
    }

    def on_chunk(kind):
        def cb(msg):
            state["names"] = list(msg.joint_names)
            pts = np.array([p.positions for p in msg.points], dtype=np.float64)
            state[kind].append((_stamp(msg), pts))

        return cb

    def on_diag(msg):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "task_reward" in values:
                state["reward"] = int(float(values["task_reward"]))
                state["max_reward"] = max(state["max_reward"], state["reward"])
                state["success_now"] = values.get("task_success") in ("True", "true", "1")
                state["success"] = state["success"] or state["success_now"]

    node.create_subscription(JointTrajectory, "action_chunk/raw", on_chunk("raw"), 50)
    node.create_subscription(JointTrajectory, "action_chunk", on_chunk("opt"), 50)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos_profile_sensor_data)

    def on_executed(msg):
        if state["recording"]:
            state["executed"].append((_stamp(msg), np.array(msg.position, dtype=np.float64)))

    # every tick's command, as sent (the recorder samples it at its own rate)
    reliable = QoSProfile(
        depth=500, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
    )
    node.create_subscription(JointState, "executed_action", on_executed, reliable)
    start_srv = node.create_client(Trigger, "/recorder/start")
    stop_srv = node.create_client(Trigger, "/recorder/stop")
    policy_params = AsyncParameterClient(node, "policy")
    trajopt_client = AsyncParameterClient(node, "trajopt")
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin_until(pred, limit: float) -> bool:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if pred():
                return True
            if not graph_alive():
                return False
            executor.spin_once(timeout_sec=0.05)
        return pred()

    def call(fut_fn, limit: float = 10.0):
        fut = fut_fn()
        spin_until(fut.done, limit)
        return fut.result() if fut.done() else None

    try:
        say("3/4 waiting for the nodes (controller, policy, trajopt, recorder) ...")
        ready = spin_until(
            lambda: start_srv.service_is_ready() and policy_params.services_are_ready(), timeout
        )
        if not ready:
            return None
        if trajopt_params:
            spin_until(trajopt_client.services_are_ready, timeout)
            res = call(
                lambda: trajopt_client.set_parameters(
                    [Parameter(k, value=v) for k, v in trajopt_params.items()]
                )
            )
            refused = [r.reason for r in getattr(res, "results", [])] if res else ["no answer"]
            if res is None or not all(r.successful for r in res.results):
                say(f"trajopt refused {trajopt_params}: {refused}")
                return None
        spin_until(lambda: False, 2.0)  # let the controller settle at its start pose
        res = call(lambda: start_srv.call_async(Trigger.Request()))
        if res is None or not res.success:
            say(f"recorder refused to start: {getattr(res, 'message', 'no answer')}")
            return None
        say(f"    recording: {res.message}")
        state["recording"] = True
        call(lambda: policy_params.set_parameters([Parameter("enabled", value=True)]))
        t0 = time.monotonic()
        last = 0.0
        while time.monotonic() - t0 < duration + 1.5:
            if not spin_until(lambda: False, 0.5) and not graph_alive():
                say("a node of the graph died")
                return None
            el = time.monotonic() - t0
            if el - last >= 2.0:
                last = el
                say(
                    f"    t={el:5.1f}/{duration:.1f} s  chunks raw/optimised {len(state['raw'])}/"
                    f"{len(state['opt'])}  task reward {state['reward']}  success {state['success']}"
                )
        call(lambda: policy_params.set_parameters([Parameter("enabled", value=False)]))
        state["recording"] = False
        res = call(lambda: stop_srv.call_async(Trigger.Request()), 30.0)
        say(f"    recorder: {getattr(res, 'message', 'no answer')}")
        return state
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()


def config_dt() -> float:
    """The control period of ``config/trajopt_aloha.yaml`` [s]."""
    return _bounds()[1]


def stitch(chunks: list, dt: float) -> np.ndarray:
    """One action stream from timed chunks: each chunk's steps up to the next chunk's start."""
    chunks = sorted(chunks, key=lambda c: c[0])
    rows = []
    for i, (stamp, pts) in enumerate(chunks):
        n = len(pts)
        if i + 1 < len(chunks):
            n = int(np.clip(round((chunks[i + 1][0] - stamp) / dt), 1, len(pts)))
        rows.append(pts[:n])
    return np.vstack(rows) if rows else np.zeros((0, 0))


def _bounds() -> tuple[float, float]:
    data = yaml.safe_load(config_path("trajopt_aloha.yaml").read_text())["trajopt"][
        "ros__parameters"
    ]
    return float(data["max_delta"][0]), float(data["dt"])


def report(
    episode: Path,
    raw_actions: np.ndarray,
    fps: float,
    state: dict,
    out: Path,
    model_name: str,
    say: Callable[[str], None],
) -> dict:
    """Print success and metrics, write the comparison PNG; return the summary."""
    from diffog_ros.data.dataset import episode_attrs, load_episode

    recorded = load_episode(episode, keys=["action"])["action"]
    names = state["names"] or [str(n) for n in episode_attrs(episode).get("joint_names", [])]
    # metrics from every executed tick as sent; the recorded /action rows are sampled at record_rate_hz
    executed = (
        np.array([p for _, p in sorted(state["executed"], key=lambda x: x[0])])
        if state["executed"]
        else recorded
    )
    dims = [i for i, n in enumerate(names) if "gripper" not in n]
    bound, dt = _bounds()
    executed = executed[np.all(np.isfinite(executed), axis=1)]
    m_raw = trajectory_metrics(raw_actions, 1.0 / fps, dims=dims)
    m_exe = trajectory_metrics(executed, 1.0 / fps, dims=dims)
    steps = np.abs(np.diff(executed[:, dims], axis=0)).max(axis=1)
    stamps = np.array(sorted(s for s, _ in state["executed"]))
    if stamps.size == executed.shape[0]:  # only consecutive ticks (a lost message is no step)
        steps = steps[np.diff(stamps) < 1.5 / fps]
    max_step = float(steps.max())
    from diffog_ros.robots.factory import load_backend_config

    joints = load_backend_config("aloha_sim").joints
    # the controller's per-tick cap (velocity limit x dt): what the robot may receive at most
    cap = float(min(joints[d].max_velocity for d in dims)) / fps
    summary = {
        "episode": str(episode),
        "success": bool(state["success"]),
        "max_reward": state["max_reward"],
        "method": model_name,
        "chunks_raw": len(state["raw"]),
        "chunks_optimised": len(state["opt"]),
        "metrics_base_stream": m_raw,
        "metrics_executed": m_exe,
        "bound_rad_per_step": bound,
        "robot_step_cap": cap,
        "max_executed_step": max_step,
        "executed_ticks": int(executed.shape[0]),
        "recorded_rows": int(recorded.shape[0]),
        "graph_ok": len(state["opt"]) > 0 and executed.shape[0] > 0,
    }
    png = out / "chunks.png"
    _plot(state, names, dims, raw_actions, executed, fps, bound, png)
    summary["plot"] = str(png)
    say(
        f"    task success: {'YES' if state['success'] else 'no'} (max reward {state['max_reward']}/4)"
    )
    say(
        f"    {'':<22} {'vel max':>8} {'vel std':>8} {'acc max':>9} {'acc std':>9}   (rad/s, rad/s^2)"
    )
    for label, m in (("base action stream", m_raw), (f"executed ({model_name})", m_exe)):
        say(
            f"    {label:<22} {m['vel_max']:>8.3f} {m['vel_std']:>8.3f} {m['acc_max']:>9.2f} {m['acc_std']:>9.2f}"
        )
    say(
        f"    largest executed joint step {max_step:.5f} rad (chunk bound {bound:.5f} rad/step, "
        f"controller cap {cap:.5f} rad/tick)"
    )
    say(f"    recorded episode: {episode}")
    say(f"    raw vs optimised chunks: {png}")
    return summary


def _plot(state, names, dims, raw_actions, executed, fps, bound, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = dims[:1] + dims[len(dims) // 2 + 1 : len(dims) // 2 + 2] if len(dims) > 1 else dims
    fig, axes = plt.subplots(len(show) + 1, 1, figsize=(11, 3.2 * (len(show) + 1)), sharex=True)
    t0 = min([s for s, _ in state["raw"]] or [0.0])
    dt = 1.0 / fps
    stamps = sorted(s for s, _ in state["executed"])
    exe_t = np.array(stamps) - t0 if len(stamps) == len(executed) else dt * np.arange(len(executed))
    for ax, d in zip(axes, show, strict=False):
        for i, (stamp, pts) in enumerate(state["raw"]):
            t = stamp - t0 + dt * np.arange(len(pts))
            ax.plot(
                t,
                pts[:, d],
                color="tab:red",
                alpha=0.35,
                lw=1,
                label="raw chunks" if i == 0 else None,
            )
        for i, (stamp, pts) in enumerate(state["opt"]):
            t = stamp - t0 + dt * np.arange(len(pts))
            ax.plot(
                t,
                pts[:, d],
                color="tab:blue",
                alpha=0.6,
                lw=1,
                label="optimised chunks" if i == 0 else None,
            )
        ax.plot(exe_t, executed[:, d], color="k", lw=1.2, label="executed")
        ax.set_ylabel(f"{names[d]} [rad]")
        ax.legend(loc="upper right", fontsize=8)
    ax = axes[-1]
    raw_step = np.abs(np.diff(raw_actions[:, dims], axis=0)).max(axis=1)
    exe_step = np.abs(np.diff(executed[:, dims], axis=0)).max(axis=1)
    ax.plot(
        dt * np.arange(1, len(raw_step) + 1), raw_step, color="tab:red", lw=1, label="base stream"
    )
    ax.plot(dt * np.arange(1, len(exe_step) + 1), exe_step, color="k", lw=1, label="executed")
    ax.axhline(bound, color="tab:green", ls="--", label=f"bound {bound:.4f} rad/step")
    ax.set_ylabel("max |joint step| [rad]")
    ax.set_xlabel("time [s]")
    ax.legend(loc="upper right", fontsize=8)
    fig.suptitle("diffog_ros demo: raw vs optimised chunks on the simulated ALOHA")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
