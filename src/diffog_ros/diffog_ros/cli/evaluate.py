"""``diffog-ros eval``: success rate and trajectory metrics of each method under the same bounds.

    diffog-ros eval --task transfer_cube --methods base,diffog_dataset,diffog_refine,static,clip,penalty,leto \\
        --episodes 10 --seeds 3 [--base-policy auto|replay|DIR] [--out runs/eval]

In-process on the simulated ALOHA (see :mod:`diffog_ros.evaluation`); bounds, alpha and dt come from
``config/trajopt_aloha.yaml``. The base policy is ``models/diffusion_<task>`` run closed loop when
it exists (``auto``), or the seed's jerky scripted demonstration replayed open loop (``replay``).
``leto`` runs ``models/leto_<task>`` (its own encoder + QP head). Writes ``results.md``,
``results.json`` and ``metrics.png``. Methods whose checkpoint is missing are reported as not run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import yaml

from diffog_ros.paths import config_path, models_dir


def _describe_base(base_dir: Path | None, models_root: Path) -> str:
    """The base policy as results.json records it: ``replay``, ``models/<name>`` for a checkpoint
    under the models directory (no machine-specific absolute path), else the path given."""
    if base_dir is None:
        return "replay"
    try:
        return f"models/{base_dir.resolve().relative_to(models_root.resolve()).as_posix()}"
    except ValueError:
        return str(base_dir)


def _spec_from_config(horizon: int, max_delta: float | None = None):
    from diffog_ros.trajopt import TrajOptSpec

    p = yaml.safe_load(config_path("trajopt_aloha.yaml").read_text())["trajopt"]["ros__parameters"]
    names = list(p["joint_names"])
    cont = [names.index(n) for n in p["constrained_joints"]]
    md = [max_delta] if max_delta else list(p["max_delta"])
    spec = TrajOptSpec(
        horizon,
        len(names),
        cont,
        max_delta=md if len(md) > 1 else md[0],
        smooth_weight=float(p["smooth_weight"]),
    )
    return spec, names, float(p["dt"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffog-ros eval", description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="transfer_cube", choices=("transfer_cube", "insertion"))
    parser.add_argument("--methods", default="base,diffog_dataset,static,clip,penalty")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per seed group")
    parser.add_argument("--seeds", type=int, default=3, help="seed groups (mean +- std over them)")
    parser.add_argument(
        "--noise", type=float, default=0.02, help="jerky-teleop noise of the replayed base stream"
    )
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument(
        "--max-delta",
        type=float,
        default=None,
        help="per-step joint bound [rad] for every method (default: config/trajopt_aloha.yaml)",
    )
    parser.add_argument("--n-exec", type=int, default=8, help="steps executed per chunk")
    parser.add_argument(
        "--base-policy",
        default="auto",
        help="'replay' (scripted demo, open loop), a Diffusion Policy checkpoint dir, or 'auto' "
        "(models/diffusion_<task> when present, else replay)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="ticks per episode [the task script's: 400]"
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="folder of the checkpoints diffusion_<task>, diffog_<task>, diffog_refine_<task>, "
        "leto_<task> [the bundled models/]",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/eval"))
    parser.add_argument(
        "--through-ros",
        action="store_true",
        help="run every episode through the ROS 2 graph (sim_rollout, real time, ~20 s each)",
    )
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.seeds < 1:
        print("diffog-ros eval: --episodes and --seeds must be >= 1", file=sys.stderr)
        return 2
    os.environ.setdefault("MUJOCO_GL", "egl")
    logging.basicConfig(level=logging.WARNING)
    from diffog_ros.evaluation import (
        METHODS,
        PolicySource,
        ReplaySource,
        base_policy_dir,
        make_optimiser,
        run_episode,
        summarise,
    )
    from diffog_ros.robots.factory import make_robot
    from diffog_ros.robots.safety import SafetyLayer
    from diffog_ros.robots.scripted.noise import NoiseSettings
    from diffog_ros.robots.scripted.rollout import DemoGenerator, DemoSettings
    from diffog_ros.runtime import limit_threads

    limit_threads(1)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(
            f"diffog-ros eval: unknown methods {unknown}; expected {list(METHODS)}", file=sys.stderr
        )
        return 2
    spec, names, dt = _spec_from_config(args.horizon, args.max_delta)
    root = args.models or models_dir()
    models = {
        "diffog_dataset": root / f"diffog_{args.task}",
        "diffog_refine": root / f"diffog_refine_{args.task}",
        "leto": root / f"leto_{args.task}",
    }
    optimisers, skipped = {}, {}
    for m in methods:
        try:
            optimisers[m] = make_optimiser(m, spec, models.get(m))
        except ValueError as exc:
            skipped[m] = str(exc)
            print(f"[eval] {m}: not run ({exc})", flush=True)
    try:
        base_dir = base_policy_dir(args.base_policy, args.task, root)
        policies = (
            {}
            if args.through_ros
            else _load_policies(base_dir, models["leto"] if "leto" in optimisers else None)
        )
    except (ValueError, OSError) as exc:
        print(f"diffog-ros eval: --base-policy {exc}", file=sys.stderr)
        return 2

    sim = make_robot("aloha_sim", task=args.task, seed=0)
    sim.connect()
    gen = DemoGenerator(
        sim, DemoSettings(task=args.task, cameras=(), noise=NoiseSettings(amplitude=args.noise))
    )
    steps = int(args.steps or gen.steps)
    sources = {k: PolicySource(p, spec.horizon, args.n_exec, steps) for k, p in policies.items()}
    base_name = _describe_base(base_dir, Path(root))
    print(f"[eval] base policy: {base_name}; {steps} ticks per episode", flush=True)
    safety = SafetyLayer.from_config(sim.config, float(sim.dt))
    dims = list(spec.continuous_dims)
    replay: dict[int, ReplaySource] = {}

    def in_process(m: str, seed: int):
        if base_dir is None and seed not in replay:
            replay.clear()
            replay[seed] = ReplaySource(gen.run(seed).arrays["action"][:steps], spec.horizon)
        src = sources["leto"] if m == "leto" else sources.get("base", replay.get(seed))
        return run_episode(sim, src, seed, optimisers[m], spec, args.n_exec, safety, steps)

    def through_ros(m: str, seed: int):
        from diffog_ros.cli.eval_ros import episode_through_ros

        return episode_through_ros(
            m,
            seed,
            task=args.task,
            models=models,
            base_policy=base_dir,
            noise=args.noise,
            duration=steps * dt,
            bound=float(spec.hi_delta.max()),
            dims=dims,
            out=args.out,
        )

    run_one = through_ros if args.through_ros else in_process
    per_group: dict[str, list[dict]] = {m: [] for m in optimisers}
    graph_failures = {m: 0 for m in optimisers}
    try:
        for g in range(args.seeds):
            outcomes: dict[str, list] = {m: [] for m in optimisers}
            for e in range(args.episodes):
                seed = 100_000 * (g + 1) + e
                marks = []
                for m in optimisers:
                    outcome = run_one(m, seed)
                    if outcome is None:  # the graph failed (logged): counted, not scored
                        graph_failures[m] += 1
                        marks.append(f"{m}=FAILED")
                        continue
                    outcomes[m].append(outcome)
                    marks.append(f"{m}={'ok' if outcome.success else '--'}")
                print(
                    f"[eval] seed group {g + 1}/{args.seeds} episode {e + 1}/{args.episodes}: "
                    + " ".join(marks),
                    flush=True,
                )
            for m in optimisers:
                if outcomes[m]:
                    per_group[m].append(summarise(outcomes[m], dt, dims))
    finally:
        sim.disconnect()
    if not any(per_group.values()):
        print("diffog-ros eval: no episode completed", file=sys.stderr)
        return 1

    rows = {}
    for m, groups in per_group.items():
        if not groups:
            skipped[m] = "every episode's graph failed"
            continue
        rows[m] = {
            k: (float(np.mean([g[k] for g in groups])), float(np.std([g[k] for g in groups])))
            for k in groups[0]
            if k != "episodes"
        }
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "task": args.task,
        "episodes_per_group": args.episodes,
        "seed_groups": args.seeds,
        "noise": args.noise,
        "bound_rad_per_step": float(spec.hi_delta.max()),
        "smooth_weight": spec.smooth_weight,
        "horizon": spec.horizon,
        "n_exec": args.n_exec,
        "base_policy": base_name,
        "steps": steps,
        "through_ros": bool(args.through_ros),
        "graph_failures": graph_failures if args.through_ros else {},
        "methods": rows,
        "not_run": skipped,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    md = _markdown(result)
    (args.out / "results.md").write_text(md)
    _plot(rows, args.out / "metrics.png", args.task)
    print(md)
    print(f"[eval] wrote {args.out / 'results.md'}, results.json and metrics.png")
    return 0


def _load_policies(base: Path | None, leto: Path | None) -> dict:
    """The closed-loop policies: 'base' (Diffusion Policy) and 'leto' (its encoder), as needed."""
    from diffog_ros.learning.policies import load_policy

    out = {}
    if base is not None:
        out["base"] = load_policy("diffusion", str(base))
    if leto is not None:
        out["leto"] = load_policy("leto", str(leto))
    return out


def _cell(mean: float, std: float) -> str:
    return "n/a" if not np.isfinite(mean) else f"{mean:.3g} ± {std:.2g}"


def _markdown(result: dict) -> str:
    head = (
        f"Task `{result['task']}`: {result['seed_groups']} seed groups x {result['episodes_per_group']} "
        f"episodes, base noise {result['noise']} rad, bound {result['bound_rad_per_step']:.4f} rad/step, "
        f"alpha {result['smooth_weight']}, T={result['horizon']}, {result['n_exec']} steps executed per chunk, "
        f"{result['steps']} ticks per episode, base policy: {result['base_policy']}, "
        f"{'through the ROS 2 graph' if result['through_ros'] else 'in-process'}.\n\n"
    )
    cols = [
        "success_rate",
        "success_final",
        "max_reward",
        "vel_max",
        "vel_std",
        "acc_max",
        "acc_std",
        "max_method_violation",
        "solve_ms",
    ]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m, r in result["methods"].items():
        lines.append(f"| {m} | " + " | ".join(_cell(*r[c]) for c in cols) + " |")
    for m, why in result["not_run"].items():
        lines.append(f"| {m} | not run: {why} |" + " |" * (len(cols) - 1))
    return head + "\n".join(lines) + "\n"


def _plot(rows: dict, png: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["success_rate", "max_reward", "vel_std", "acc_std", "acc_max"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5))
    for ax, k in zip(axes, keys, strict=True):
        names = list(rows)
        ax.bar(
            names, [rows[m][k][0] for m in names], yerr=[rows[m][k][1] for m in names], capsize=3
        )
        ax.set_title(k)
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(f"diffog-ros eval: {task}")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
