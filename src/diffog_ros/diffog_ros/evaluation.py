"""In-process evaluation of trajectory-optimisation methods on the simulated ALOHA (no rclpy).

Each episode: a base action stream for a seeded object reset, executed receding-horizon — every
``n_exec`` ticks the next ``T``-step chunk of the stream is optimised by the method, anchored to the
command executed last (DiffOG Sec. V-D), and its first ``n_exec`` steps go through the controller's
safety layer to the simulator. Success is the task's full stage reward reached at some tick (the ACT / LeRobot convention; the
rate of still holding it at the last tick is reported too); the trajectory metrics
are DiffOG App. VIII-B on the executed arm-joint commands.

The base stream is either a trained Diffusion Policy run closed loop on the sim's observations
(:class:`PolicySource`), or the jerky scripted demonstration of the seed (``diffog-ros demos
--noise``) replayed open loop (:class:`ReplaySource`). LeTO is its own policy: its encoder gives
e_t and its QP head is the method's optimiser.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffog_ros.trajopt import TrajOptSpec, clip_chunk, penalty_chunk, solve_qp, trajectory_metrics

LOG = logging.getLogger(__name__)

Optimiser = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (chunk [T,D], prev [D]) -> [T,D]
METHODS = ("base", "clip", "penalty", "static", "diffog_dataset", "diffog_refine", "leto")


def make_optimiser(method: str, spec: TrajOptSpec, model_dir: Path | None = None) -> Optimiser:
    """The chunk optimiser of ``method`` (a ValueError names what is missing)."""
    if method == "base":
        return lambda chunk, prev: chunk
    if method == "clip":  # DiffOG Sec. VI-A
        return lambda chunk, prev: clip_chunk(chunk[None], spec, prev[None])[0]
    if method == "penalty":  # DiffOG Sec. VI-B, Table VIII ALOHA defaults
        return lambda chunk, prev: penalty_chunk(chunk[None], spec, prev[None])[0]
    if method == "static":  # Q = I, q = -a (DiffOG eq. 6, Table V)
        import torch

        eye = torch.eye(spec.n, dtype=torch.float64)

        def static(chunk, prev):
            y = solve_qp(
                eye,
                torch.from_numpy(-chunk.reshape(1, -1)),
                spec,
                torch.from_numpy(prev[None]),
                q_is_spd=True,
            )
            return y.numpy().reshape(chunk.shape)

        return static
    if method in ("diffog_dataset", "diffog_refine", "leto"):
        if model_dir is None or not (model_dir / "config.json").is_file():
            raise ValueError(f"{method}: no checkpoint at {model_dir}")
        import torch

        from diffog_ros.learning import load_trajopt_model

        model = load_trajopt_model(model_dir)

        def learned(chunk, prev):
            with torch.no_grad():
                return np.asarray(model.optimise(chunk[None], prev[None], spec))[0]

        return learned
    raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")


@dataclass
class EpisodeOutcome:
    seed: int
    success: bool  # the full stage reward was reached at some tick (the ACT / LeRobot convention)
    max_reward: int
    executed: np.ndarray  # [steps, D]
    method_violation: float  # largest bound excess of the method's own chunks (before safety)
    solve_ms: float  # mean optimiser time per chunk
    safety_counts: dict[str, int] = field(default_factory=dict)
    success_final: bool = False  # still at the full stage reward at the last tick


def base_policy_dir(choice: str, task: str, root: Path) -> Path | None:
    """The Diffusion Policy checkpoint of the base stream, or None for the scripted replay.

    ``choice``: ``"replay"``, ``"auto"`` (``root/diffusion_<task>`` when it holds a checkpoint,
    else replay) or a checkpoint directory (ValueError when it holds none).
    """
    if choice == "replay":
        return None
    if choice == "auto":
        bundled = root / f"diffusion_{task}"
        return bundled.resolve() if (bundled / "config.json").is_file() else None
    path = Path(choice)
    if not (path / "config.json").is_file():
        raise ValueError(f"{choice}: no policy checkpoint (config.json) there")
    return path.resolve()


class ReplaySource:
    """Open loop: the chunk at tick t is ``actions[t : t+T]`` (the tail padded with the last row)."""

    def __init__(self, actions: np.ndarray, horizon: int) -> None:
        self.actions = np.asarray(actions, dtype=np.float64)
        self.horizon = int(horizon)
        self.steps = int(self.actions.shape[0])

    def reset(self, sim, seed: int) -> None:
        pass

    def observe(self, t: int, sim) -> None:
        pass

    def chunk(self, t: int) -> np.ndarray:
        return _fit(self.actions[t : t + self.horizon], self.horizon)


class PolicySource:
    """Closed loop: a learned policy (:mod:`diffog_ros.learning.policies`) observing the sim.

    The observation of tick t is what the recorder stores in row t (the state before action t);
    the policy sees its ``n_obs_steps`` latest ones, spaced one tick apart (repeated at the start),
    and cameras are rendered only at the ticks a chunk needs.  For Diffusion Policy the chunk is
    the raw action chunk; for LeTO it is e_t (its method's optimiser is the LeTO QP head).
    """

    def __init__(self, policy, horizon: int, n_exec: int, steps: int) -> None:
        self.policy, self.horizon, self.n_exec, self.steps = policy, int(horizon), n_exec, steps
        self.n_obs = int(policy.n_obs_steps)
        h, w = getattr(policy, "image_size", None) or (96, 128)
        self.size = (int(h), int(w))
        self._qpos: dict[int, np.ndarray] = {}
        self._images: dict[int, dict[str, np.ndarray]] = {}
        self._dt: float | None = None  # the sim's control period, set by reset()
        unsupported = sorted(set(policy.lowdim) - {"qpos"})
        if unsupported:
            raise ValueError(f"the simulator supplies only 'qpos', not {unsupported}")

    def reset(self, sim, seed: int) -> None:
        self._qpos.clear()
        self._images.clear()
        self._dt = float(sim.dt)
        self.policy.reset()
        gen = getattr(self.policy, "generator", None)
        if gen is not None:  # DDIM noise: a pure function of the episode seed
            gen.manual_seed(int(seed))

    def observe(self, t: int, sim) -> None:
        self._qpos[t] = np.asarray(sim.read_state().position, dtype=np.float64)
        if self.policy.cameras and (-t) % self.n_exec < self.n_obs:
            h, w = self.size
            self._images[t] = {c: sim.render(c, w, h) for c in self.policy.cameras}

    def chunk(self, t: int) -> np.ndarray:
        ticks = [max(k, 0) for k in range(t - self.n_obs + 1, t + 1)]
        obs: dict[str, np.ndarray] = {"qpos": np.stack([self._qpos[k] for k in ticks])}
        for cam in self.policy.cameras:
            obs[f"images/{cam}"] = np.stack([self._images[k][cam] for k in ticks])
        raw = np.asarray(self.policy.predict(obs, t * self._dt), dtype=np.float64)
        for k in [k for k in self._qpos if k < t - self.n_obs]:  # keep memory flat
            self._qpos.pop(k)
            self._images.pop(k, None)
        return _fit(raw, self.horizon)


def _fit(chunk: np.ndarray, horizon: int) -> np.ndarray:
    """The first ``horizon`` rows of ``chunk``, padded with its last row when shorter."""
    chunk = chunk[:horizon]
    if chunk.shape[0] < horizon:
        chunk = np.vstack([chunk, np.repeat(chunk[-1:], horizon - chunk.shape[0], 0)])
    return chunk


def run_episode(
    sim,
    source,
    seed: int,
    optimise: Optimiser,
    spec: TrajOptSpec,
    n_exec: int,
    safety,
    steps: int | None = None,
) -> EpisodeOutcome:
    """Execute ``source`` receding-horizon through ``optimise`` on the seeded sim.

    ``source`` is a :class:`ReplaySource` / :class:`PolicySource`, or an array of base actions
    (replayed open loop). Every ``n_exec`` ticks its chunk is optimised, anchored to the command
    executed last (DiffOG Sec. V-D), and the next ``n_exec`` steps pass the safety layer.
    """
    if isinstance(source, np.ndarray):
        source = ReplaySource(source, spec.horizon)
    steps = int(steps if steps is not None else source.steps)
    sim.reset(int(seed))
    source.reset(sim, int(seed))
    prev = np.asarray(sim.last_command, dtype=np.float64)
    dims = list(spec.continuous_dims)
    executed, worst, solve_time, chunks, counts, best = [], 0.0, 0.0, 0, {}, 0
    out = None
    for t in range(steps):
        source.observe(t, sim)
        if t % n_exec == 0:
            chunk = source.chunk(t)
            t0 = time.perf_counter()
            out = np.asarray(optimise(chunk, prev), dtype=np.float64)
            solve_time += time.perf_counter() - t0
            chunks += 1
            steps_out = np.diff(np.vstack([prev[None], out])[:, dims], axis=0)
            excess = np.maximum(steps_out - spec.hi_delta, spec.lo_delta - steps_out).max()
            worst = max(worst, float(excess))
        result = safety.filter(out[t % n_exec], prev)
        for reason in result.clamped:
            counts[reason] = counts.get(reason, 0) + 1
        prev = np.asarray(sim.send_command(result.command), dtype=np.float64)
        executed.append(prev)
        best = max(best, int(sim.reward()))
    final = int(sim.reward())
    return EpisodeOutcome(
        int(seed),
        best == sim.max_reward,
        best,
        np.array(executed),
        max(worst, 0.0),
        1e3 * solve_time / max(chunks, 1),
        counts,
        final == sim.max_reward,
    )


def summarise(outcomes: list[EpisodeOutcome], dt: float, dims: list[int]) -> dict:
    """Success rate and mean trajectory metrics over episodes."""
    metrics = [trajectory_metrics(o.executed, dt, dims=dims) for o in outcomes]
    out = {
        "episodes": len(outcomes),
        "success_rate": float(np.mean([o.success for o in outcomes])),
        "success_final": float(np.mean([o.success_final for o in outcomes])),
        # task progress: the highest stage reward reached (TransferCube / Insertion: 0..4)
        "max_reward": float(np.mean([o.max_reward for o in outcomes])),
    }
    for key in ("vel_max", "vel_std", "acc_max", "acc_std"):
        out[key] = float(np.mean([m[key] for m in metrics]))
    out["max_method_violation"] = float(max(o.method_violation for o in outcomes))
    out["solve_ms"] = float(np.mean([o.solve_ms for o in outcomes]))
    return out
