"""diffog-ros eval: real MuJoCo episodes, real solvers, the same safety layer as the controller."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffog_ros.cli.evaluate import _describe_base, _spec_from_config
from diffog_ros.evaluation import make_optimiser, run_episode
from diffog_ros.robots.factory import make_robot
from diffog_ros.robots.safety import SafetyLayer
from diffog_ros.robots.scripted.noise import NoiseSettings
from diffog_ros.robots.scripted.rollout import DemoGenerator, DemoSettings


@pytest.fixture(scope="module")
def sim_and_base():
    sim = make_robot("aloha_sim", task="transfer_cube", seed=0)
    sim.connect()
    gen = DemoGenerator(
        sim, DemoSettings(task="transfer_cube", cameras=(), noise=NoiseSettings(amplitude=0.02))
    )
    result = gen.run(3)
    yield sim, result
    sim.disconnect()


def test_base_method_replays_the_scripted_stream_exactly(sim_and_base):
    sim, result = sim_and_base
    spec, _, _ = _spec_from_config(16)
    safety = SafetyLayer.from_config(sim.config, float(sim.dt))
    out = run_episode(
        sim, result.arrays["action"], 3, make_optimiser("base", spec), spec, 8, safety
    )
    np.testing.assert_array_equal(out.executed, result.arrays["action"])
    assert out.max_reward == result.max_reward


@pytest.mark.parametrize("method", ["static", "clip"])
def test_bounded_methods_keep_every_executed_step_within_the_bound(sim_and_base, method):
    sim, result = sim_and_base
    spec, _, _ = _spec_from_config(16, max_delta=0.01)
    safety = SafetyLayer.from_config(sim.config, float(sim.dt))
    out = run_episode(
        sim, result.arrays["action"], 3, make_optimiser(method, spec), spec, 8, safety
    )
    dims = list(spec.continuous_dims)
    steps = np.abs(np.diff(out.executed[:, dims], axis=0))
    raw_steps = np.abs(np.diff(result.arrays["action"][:, dims], axis=0))
    assert raw_steps.max() > 0.01  # the base stream does break this bound
    assert steps.max() <= 0.01 + 1e-9 and out.method_violation <= 1e-9


def test_unknown_method_and_missing_checkpoint_are_reported():
    spec, _, _ = _spec_from_config(16)
    with pytest.raises(ValueError, match="unknown method"):
        make_optimiser("magic", spec)
    with pytest.raises(ValueError, match="no checkpoint"):
        make_optimiser("leto", spec, None)


def test_results_name_a_bundled_base_policy_without_the_machine_path(tmp_path):
    root = tmp_path / "models"
    (root / "diffusion_transfer_cube").mkdir(parents=True)
    assert (
        _describe_base(root / "diffusion_transfer_cube", root) == "models/diffusion_transfer_cube"
    )
    elsewhere = tmp_path / "mine"
    assert _describe_base(elsewhere, root) == str(elsewhere)
    assert _describe_base(None, root) == "replay"


def test_eval_cli_writes_a_table_for_each_method(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "diffog_ros.cli.main",
        "eval",
        "--episodes",
        "1",
        "--seeds",
        "1",
        "--methods",
        "base,static,clip,leto",
        "--models",
        str(tmp_path / "no_models"),  # the learned methods have no checkpoint: reported, not run
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert set(result["methods"]) == {"base", "static", "clip"} and "leto" in result["not_run"]
    assert result["base_policy"] == "replay"
    assert (tmp_path / "metrics.png").stat().st_size > 0
    assert "| static |" in (tmp_path / "results.md").read_text()
    bad = subprocess.run(
        [*cmd[:3], "eval", "--methods", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "nope" in bad.stderr


# ----------------------------------------------------------------------------- learned base policy
TINY_DIFFUSION = """
device: cpu
num_threads: 1
batch_size: 8
val_fraction: 0.0
warmup_steps: 0
checkpoint_every: 1000
log_every: 1000
keep_periodic: 0
ema_decay: 0.0
data: {cameras: [cam_high], image_size: [24, 32], lowdim: [qpos]}
encoder: {resnet_width: 8, resnet_blocks: [1, 1], num_keypoints: 4, image_feature_dim: 8}
model: {horizon: 8, n_obs_steps: 2, n_action_steps: 6, down_dims: [16, 32], n_groups: 4,
        step_embed_dim: 8, num_train_steps: 20, ddim_steps: 3}
"""


@pytest.fixture(scope="module")
def tiny_diffusion(tmp_path_factory) -> Path:
    """A real (barely trained) camera + qpos Diffusion Policy on two short scripted episodes."""
    tmp = tmp_path_factory.mktemp("tiny_diffusion")
    cli = [sys.executable, "-m", "diffog_ros.cli.main"]
    demos = [*cli, "demos", "--task", "transfer_cube", "--episodes", "2", "--steps", "30"]
    demos += ["--cameras", "cam_high", "--image-size", "24x32", "--keep-failures", "-q"]
    subprocess.run([*demos, "--out", str(tmp / "data")], check=True, timeout=300)
    (tmp / "cfg.yaml").write_text(TINY_DIFFUSION)
    train = [*cli, "train", "diffusion", "--data", str(tmp / "data"), "--out", str(tmp / "run")]
    train += ["--config", str(tmp / "cfg.yaml"), "--max-steps", "2", "--no-progress"]
    subprocess.run(train, check=True, timeout=300, capture_output=True)
    return tmp / "run" / "checkpoints" / "last"


def test_a_diffusion_base_runs_closed_loop_and_is_reproducible_per_seed(tiny_diffusion):
    from diffog_ros.evaluation import PolicySource
    from diffog_ros.learning.policies import load_policy

    sim = make_robot("aloha_sim", task="transfer_cube", seed=0)
    sim.connect()
    try:
        spec, _, _ = _spec_from_config(16, max_delta=0.01)
        safety = SafetyLayer.from_config(sim.config, float(sim.dt))
        src = PolicySource(load_policy("diffusion", str(tiny_diffusion)), 16, 4, steps=20)
        runs = [
            run_episode(sim, src, seed, make_optimiser("static", spec), spec, 4, safety)
            for seed in (5, 5, 6)
        ]
    finally:
        sim.disconnect()
    a, b, c = (r.executed for r in runs)
    assert a.shape == (20, 14) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)  # the DDIM noise is reseeded from the episode seed
    assert not np.array_equal(a, c)
    dims = list(spec.continuous_dims)
    assert np.abs(np.diff(a[:, dims], axis=0)).max() <= 0.01 + 1e-9


def test_eval_cli_uses_the_given_base_policy(tiny_diffusion, tmp_path):
    cmd = [sys.executable, "-m", "diffog_ros.cli.main", "eval", "--episodes", "1", "--seeds", "1"]
    cmd += ["--methods", "base,clip", "--steps", "16", "--models", str(tmp_path / "none")]
    cmd += ["--base-policy", str(tiny_diffusion), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["base_policy"] == str(tiny_diffusion) and result["steps"] == 16
    assert set(result["methods"]) == {"base", "clip"}
    missing = subprocess.run(
        [*cmd[:-4], "--base-policy", str(tmp_path / "nowhere"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_eval_through_ros_runs_each_episode_in_the_graph_with_the_bound_set_live(tmp_path):
    """Real graph (controller on the sim, policy, trajopt, recorder) per method and episode."""
    cmd = [sys.executable, "-m", "diffog_ros.cli.main", "eval", "--through-ros"]
    cmd += ["--methods", "base,static", "--episodes", "1", "--seeds", "1", "--steps", "100"]
    cmd += ["--noise", "0.05", "--max-delta", "0.02", "--base-policy", "replay"]
    cmd += ["--models", str(tmp_path / "none"), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["through_ros"] and result["graph_failures"] == {"base": 0, "static": 0}
    base, static = result["methods"]["base"], result["methods"]["static"]
    # passthrough publishes the raw chunks, which break 0.02 rad/step; the static QP, given the
    # bound through the trajopt node's parameter service, never does
    assert base["max_method_violation"][0] > 0.0
    assert static["max_method_violation"][0] <= 1e-9
    for m in ("base", "static"):
        episodes = list((tmp_path / "ros").glob(f"{m}_seed*/episodes/episode_*.hdf5"))
        assert len(episodes) == 1, m
