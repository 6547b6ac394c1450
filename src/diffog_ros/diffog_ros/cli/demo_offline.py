"""``diffog-ros demo``: optimise sample ALOHA-shaped chunks with every training-free method.

Until the full simulated rollout lands, the main job takes jerky sample chunks (a smooth random
reach plus teleoperation-like jitter, in the ALOHA 14-dim joint layout from ``config/trajopt_aloha.yaml``),
runs each method of the trajectory-optimisation core on a receding-horizon rollout anchored to the
executed action, and prints the trajectory metrics (DiffOG App. VIII-B) per method.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml

from diffog_ros.paths import config_path
from diffog_ros.runtime import limit_threads
from diffog_ros.trajopt import TrajOptSpec, clip_chunk, penalty_chunk, solve_qp, trajectory_metrics

METHODS = ("passthrough", "clip", "penalty", "static")


def _trajopt_params(name: str) -> dict:
    data = yaml.safe_load(config_path(name).read_text())
    # ROS params files nest under <node>: ros__parameters:
    for value in data.values():
        if isinstance(value, dict) and "ros__parameters" in value:
            return value["ros__parameters"]
    raise ValueError(f"{name}: no ros__parameters section")


def sample_rollout(names: list[str], steps: int, dt: float, seed: int) -> np.ndarray:
    """A raw action stream [steps, D]: smooth reach + jitter like a jerky policy / teleoperator."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) * dt
    d = len(names)
    amp = rng.uniform(0.2, 0.6, d)
    freq = rng.uniform(0.1, 0.4, d)
    phase = rng.uniform(0, 2 * np.pi, d)
    smooth = amp * np.sin(2 * np.pi * freq * t[:, None] + phase)
    jitter = rng.normal(0.0, 0.03, (steps, d))
    grip = np.array(["gripper" in n for n in names])
    smooth[:, grip] = (np.sin(0.5 * t)[:, None] > 0).astype(float)  # open/close commands
    return smooth + np.where(grip, 0.0, jitter)


def run_method(
    method: str, raw: np.ndarray, spec: TrajOptSpec, n_exec: int
) -> tuple[np.ndarray, float]:
    """Receding horizon: optimise a T-step chunk, execute n_exec steps, anchor on the last executed."""
    t_len, d_len = spec.horizon, spec.action_dim
    executed: list[np.ndarray] = []
    prev = raw[0].copy()
    solve_time = 0.0
    for start in range(0, raw.shape[0] - t_len, n_exec):
        chunk = raw[start : start + t_len][None]
        t0 = time.perf_counter()
        if method == "passthrough":
            out = chunk
        elif method == "clip":
            out = clip_chunk(chunk, spec, prev[None])
        elif method == "penalty":
            out = penalty_chunk(chunk, spec, prev[None])
        else:  # static: Q = I, q = -a (DiffOG eq. 6)
            y = solve_qp(
                torch.eye(spec.n, dtype=torch.float64),
                torch.from_numpy(-chunk.reshape(1, -1)),
                spec,
                torch.from_numpy(prev[None]),
            )
            out = y.numpy().reshape(1, t_len, d_len)
        solve_time += time.perf_counter() - t0
        executed.extend(out[0, :n_exec])
        prev = out[0, n_exec - 1].copy()
    return np.array(executed), solve_time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffog-ros demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default="trajopt_aloha.yaml", help="trajopt params file in config/"
    )
    parser.add_argument("--steps", type=int, default=400, help="rollout length in control steps")
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--n-exec", type=int, default=8, help="steps executed per chunk")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    limit_threads(1)

    params = _trajopt_params(args.config)
    names = list(params["joint_names"])
    constrained = list(params.get("constrained_joints") or [n for n in names if "gripper" not in n])
    max_delta = list(params["max_delta"])
    dt = float(params.get("dt", 0.02))
    spec = TrajOptSpec(
        horizon=args.horizon,
        action_dim=len(names),
        continuous_dims=[names.index(n) for n in constrained],
        max_delta=max_delta if len(max_delta) > 1 else max_delta[0],
        min_delta=list(params["min_delta"]) if params.get("min_delta") else None,
        smooth_weight=float(params.get("smooth_weight", 0.0)),
    )
    raw = sample_rollout(names, args.steps, dt, args.seed)
    dims = list(spec.continuous_dims)
    print(
        f"diffog_ros demo: {len(names)}-dim ALOHA actions, T={spec.horizon}, dt={dt} s, "
        f"bounds {spec.hi_delta.max():.4f} rad/step, alpha={spec.smooth_weight}"
    )
    print(
        f"{'method':<12} {'vel max':>8} {'vel std':>8} {'acc max':>9} {'acc std':>9} "
        f"{'max step':>9} {'bound ok':>8} {'rms to raw':>10} {'solve ms':>9}"
    )
    for method in METHODS:
        executed, solve_time = run_method(method, raw, spec, args.n_exec)
        metrics = trajectory_metrics(executed, dt, dims=dims)
        steps = np.abs(np.diff(executed[:, dims], axis=0))
        ok = bool(np.all(steps <= spec.hi_delta + 1e-9))
        rms = float(np.sqrt(np.mean((executed - raw[: len(executed)]) ** 2)))
        n_chunks = max(1, (args.steps - spec.horizon) // args.n_exec)
        print(
            f"{method:<12} {metrics['vel_max']:>8.3f} {metrics['vel_std']:>8.3f} "
            f"{metrics['acc_max']:>9.2f} {metrics['acc_std']:>9.2f} {steps.max():>9.4f} "
            f"{'yes' if ok else 'NO':>8} {rms:>10.4f} {1e3 * solve_time / n_chunks:>9.2f}"
        )
    print(
        "velocities in rad/s, accelerations in rad/s^2 (joint dims only); "
        "'bound ok' = every executed step within max_delta"
    )
    return 0
