"""``diffog-ros demo``: the main job — a full rollout on the simulated ALOHA through the ROS 2 graph.

    sim camera -> policy_node -> trajopt_node (DiffOG) -> controller_node (aloha_sim) -> recorder_node

Steps: (1) the base policy: the bundled Diffusion Policy ``models/diffusion_<task>`` run closed loop
on the simulated ``cam_high`` camera and the joint state (``--policy auto``, when bundled), or a jerky
scripted demonstration replayed (``--policy replay``, ``diffog-ros demos --noise``); (2) the graph of
``launch/sim_rollout.launch.py`` is brought up with ``diffog-ros up``, with the bundled DiffOG layer
as the trajectory optimiser; (3) the recorder records the rollout while progress is printed; (4)
success, the trajectory metrics (DiffOG App. VIII-B) of the raw and the executed actions, the recorded
episode and a PNG comparing raw and optimised chunks with the bounds drawn are reported.

``diffog-ros demo --offline`` runs the earlier offline comparison of the training-free methods.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from diffog_ros.paths import models_dir

DEFAULT_MODEL = "diffog_transfer_cube"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def source_episode(
    out: Path, task: str, seed: int, noise: float, keep_failures: bool = False
) -> Path:
    """A jerky scripted demonstration (the replayed base stream). Without ``keep_failures`` the
    first successful seed from ``seed`` on is used (its seed is in the file's attributes)."""
    src = out / "source"
    cmd = [
        _bin("diffog-ros"),
        "demos",
        "--task",
        task,
        "--episodes",
        "1",
        "--cameras",
        "none",
        "--noise",
        str(noise),
        "--seed",
        str(seed),
        "--out",
        str(src),
        "-q",
        *(["--keep-failures"] if keep_failures else []),
    ]
    subprocess.run(cmd, check=True)
    return sorted(src.glob("episode_*.hdf5"))[0]


def run_graph(
    overrides: list[str],
    log_path: Path,
    duration: float,
    timeout: float,
    say=_say,
    trajopt_params: dict | None = None,
) -> dict | None:
    """Bring up ``sim_rollout`` with ``overrides``, record ``duration`` s of the policy's rollout
    (:func:`demo_monitor.run`), take the graph down; the monitor's state, or None on failure."""
    from diffog_ros.cli import demo_monitor

    with open(log_path, "wb") as log:
        graph = subprocess.Popen(
            [_bin("diffog-ros"), "up", "sim_rollout", *overrides],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ),
        )
        try:
            return demo_monitor.run(
                duration=duration,
                timeout=timeout,
                say=say,
                graph_alive=lambda: graph.poll() is None,
                trajopt_params=trajopt_params,
            )
        finally:
            if graph.poll() is None:
                os.killpg(graph.pid, signal.SIGINT)
                try:
                    graph.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(graph.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    if argv and "--offline" in argv:
        from diffog_ros.cli import demo_offline

        return demo_offline.main([a for a in argv if a != "--offline"])
    parser = argparse.ArgumentParser(prog="diffog-ros demo", description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="offline comparison of the methods")
    parser.add_argument("--task", default="transfer_cube", choices=("transfer_cube", "insertion"))
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the demonstration / object reset"
    )
    parser.add_argument(
        "--noise", type=float, default=0.02, help="jerky-teleop noise of the base stream [rad]"
    )
    parser.add_argument("--method", default="diffog", help="trajectory optimisation method")
    parser.add_argument("--model", default="", help=f"DiffOG checkpoint [models/{DEFAULT_MODEL}]")
    parser.add_argument(
        "--policy",
        default="auto",
        help="base policy: a Diffusion Policy checkpoint dir, 'replay' (a jerky scripted "
        "demonstration), or 'auto' (models/diffusion_<task> when bundled, else replay)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output root")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after this long [s]")
    args = parser.parse_args(argv)

    from diffog_ros.runtime import limit_threads

    limit_threads(1)
    out = (args.out / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else models_dir() / DEFAULT_MODEL
    if args.method in ("diffog", "leto") and not (model / "config.json").is_file():
        _say(f"no checkpoint at {model}: falling back to method 'static' (Q = I)")
        args.method = "static"

    from diffog_ros.cli import demo_monitor
    from diffog_ros.evaluation import base_policy_dir
    from diffog_ros.robots.scripted.tasks import SCRIPTS

    try:
        policy = base_policy_dir(args.policy, args.task, models_dir())
    except ValueError as exc:
        print(f"diffog-ros demo: --policy {exc}", file=sys.stderr)
        return 2
    episodes = out / "episodes"
    fps = 1.0 / float(demo_monitor.config_dt())
    if policy is None:
        _say(
            f"1/4 generating a jerky scripted {args.task} demonstration (noise {args.noise} rad) ..."
        )
        source = source_episode(out, args.task, args.seed, args.noise)
        from diffog_ros.data.dataset import episode_attrs, load_episode

        src_attrs = episode_attrs(source)
        seed = int(src_attrs.get("seed", args.seed))
        raw_actions = load_episode(source, keys=["action"])["action"]
        fps = float(src_attrs.get("fps", fps))
        duration = raw_actions.shape[0] / fps
        _say(
            f"    base action stream: {source} ({raw_actions.shape[0]} steps at {fps:g} Hz, seed {seed})"
        )
        policy_args = ["policy_type:=replay", f"policy_checkpoint:={source}"]
    else:
        seed, raw_actions = args.seed, None
        duration = SCRIPTS[args.task][0]().episode_steps / fps
        _say(
            f"1/4 base policy: Diffusion Policy {policy} (closed loop on cam_high + qpos), seed {seed}"
        )
        policy_args = ["policy_type:=diffusion", f"policy_checkpoint:={policy}"]
    overrides = [
        f"task:={args.task}",
        f"seed:={seed}",
        *policy_args,
        "policy_enabled:=false",
        f"method:={args.method}",
        f"trajopt_model:={model if args.method in ('diffog', 'leto') else ''}",
        f"output_dir:={episodes}",
        "cameras:=[cam_high]",
    ]
    _say(f"2/4 bringing up the graph: diffog-ros up sim_rollout {' '.join(overrides)}")
    log_path = out / "graph.log"
    result = run_graph(overrides, log_path, duration, args.timeout, _say)
    if result is None:
        _say(f"FAILED: the graph did not complete the rollout; see {log_path}")
        return 1

    _say("4/4 analysing the recorded episode ...")
    files = sorted(episodes.glob("episode_*.hdf5"))
    if not files:
        _say(f"FAILED: no episode was recorded; see {log_path}")
        return 1
    if raw_actions is None:  # the policy's raw chunks, each up to the next one's start
        raw_actions = demo_monitor.stitch(result["raw"], 1.0 / fps)
    summary = demo_monitor.report(
        files[-1], raw_actions, fps, result, out, model_name=args.method, say=_say
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _say(f"summary: {out / 'summary.json'}")
    return 0 if summary["graph_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
