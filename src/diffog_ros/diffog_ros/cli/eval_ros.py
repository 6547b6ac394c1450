"""``diffog-ros eval --through-ros``: each episode of each method as a rollout of the real graph.

Every (method, seed) brings up ``sim_rollout`` (controller on the simulated ALOHA, policy, trajopt,
recorder; ``diffog-ros up``, one process per node, DDS in between), sets the evaluation bound on the
trajopt node live through its parameter service, records the rollout and takes the graph down. The
executed actions are the controller's ``executed_action`` messages (every tick as sent); success is
the controller's task reward on ``/diagnostics``. Slower than in-process (real time plus start-up,
about 20 s per episode) but it measures what a deployed robot would do, including late chunks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from diffog_ros.evaluation import EpisodeOutcome

LOG = logging.getLogger(__name__)

# evaluation method -> (trajopt_node method, checkpoint key of the trajopt layer or None)
ROS_METHOD = {
    "base": ("passthrough", None),
    "clip": ("clip", None),
    "penalty": ("penalty", None),
    "static": ("static", None),
    "diffog_dataset": ("diffog", "diffog_dataset"),
    "diffog_refine": ("diffog", "diffog_refine"),
    "leto": ("leto", "leto"),
}


def _node_bound(method: str, bound: float, dims: list[int]) -> float:
    """The trajopt node's max_delta for ``method``: the evaluation bound, except for ``base``.

    The node never publishes a chunk that breaks its own bound (``passthrough`` is clipped to it),
    so ``base`` runs with the robot's per-tick cap (velocity limit x dt, what the controller
    enforces anyway): the raw chunks reach the controller unchanged.
    """
    if method != "base":
        return float(bound)
    from diffog_ros.robots.factory import load_backend_config

    cfg = load_backend_config("aloha_sim")
    return float(min(cfg.joints[d].max_velocity for d in dims)) / float(cfg.control_rate_hz)


def episode_through_ros(
    method: str,
    seed: int,
    *,
    task: str,
    models: dict[str, Path],
    base_policy: Path | None,
    noise: float,
    duration: float,
    bound: float,
    dims: list[int],
    out: Path,
    timeout: float = 180.0,
) -> EpisodeOutcome | None:
    """One rollout of ``method`` on the seeded sim through the graph; None if the graph failed."""
    from diffog_ros.cli.demo import run_graph, source_episode

    run_dir = (out / "ros" / f"{method}_seed{seed}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if method == "leto":
        policy_type, checkpoint = "leto", models["leto"]
    elif base_policy is not None:
        policy_type, checkpoint = "diffusion", base_policy
    else:
        policy_type, checkpoint = (
            "replay",
            source_episode(run_dir, task, seed, noise, keep_failures=True),
        )
    trajopt_method, model_key = ROS_METHOD[method]
    overrides = [
        f"task:={task}",
        f"seed:={seed}",
        f"policy_type:={policy_type}",
        f"policy_checkpoint:={checkpoint}",
        "policy_enabled:=false",
        f"method:={trajopt_method}",
        f"trajopt_model:={models[model_key] if model_key else ''}",
        f"output_dir:={run_dir / 'episodes'}",
        f"cameras:=[{'cam_high' if policy_type != 'replay' else ''}]",
    ]

    def say(text: str) -> None:
        LOG.info("[%s seed %d] %s", method, seed, text.strip())

    state = run_graph(
        overrides,
        run_dir / "graph.log",
        duration,
        timeout,
        say,
        trajopt_params={"max_delta": [_node_bound(method, bound, dims)]},
    )
    if state is None or not state["executed"]:
        LOG.error("%s seed %d: the graph did not complete; see %s", method, seed, run_dir)
        return None
    executed = np.array([p for _, p in sorted(state["executed"], key=lambda x: x[0])])
    worst = 0.0
    for _, pts in state["opt"]:  # the method's own chunks: steps inside each published chunk
        if len(pts) > 1:
            worst = max(worst, float(np.abs(np.diff(pts[:, dims], axis=0)).max() - bound))
    return EpisodeOutcome(
        seed=int(seed),
        success=bool(state["success"]),
        max_reward=int(state["max_reward"]),
        executed=executed,
        method_violation=max(worst, 0.0),
        solve_ms=float("nan"),  # measured by the trajopt node (on /diagnostics), not here
        success_final=bool(state["success_now"]),  # at the last diagnostics before the stop
    )
