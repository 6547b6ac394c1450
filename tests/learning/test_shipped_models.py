"""Every checkpoint shipped in models/: safetensors + JSON only, under 50 MB, a model card, loadable
(checksum verified), the ALOHA action names, and its outputs keep the configured bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffog_ros.cli.evaluate import _spec_from_config
from diffog_ros.learning import load_trajopt_model
from diffog_ros.learning.checkpoint import read_meta
from diffog_ros.learning.policies import load_policy
from diffog_ros.paths import models_dir
from diffog_ros.robots.factory import load_backend_config

SHIPPED = sorted(p for p in models_dir().iterdir() if p.is_dir())
ALLOWED = {"config.json", "model.safetensors", "MODEL_CARD.md"}


def test_models_are_shipped():
    kinds = {read_meta(p)["kind"] for p in SHIPPED}
    assert {"diffog", "diffusion", "leto"} <= kinds


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_files_and_metadata(model: Path):
    files = {f.name for f in model.iterdir()}
    assert files == ALLOWED, f"{model}: unexpected files {files - ALLOWED}"
    assert (model / "model.safetensors").stat().st_size < 50 * 2**20
    card = (model / "MODEL_CARD.md").read_text()
    assert "diffog-ros train" in card and "Measured" in card
    meta = read_meta(model)
    assert meta["action_names"] == list(load_backend_config("aloha_sim").names)


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_runs_and_keeps_the_bounds(model: Path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    kind = read_meta(model)["kind"]
    names = load_backend_config("aloha_sim").names
    if kind == "diffusion":
        policy = load_policy("diffusion", str(model))
        obs = policy._dummy_obs()
        obs["images/cam_high"] = rng.integers(0, 255, obs["images/cam_high"].shape, np.uint8)
        chunk = policy.predict(obs, 0.0)
        assert chunk.shape == (policy.chunk_length, len(names)) and np.all(np.isfinite(chunk))
        return
    layer = load_trajopt_model(model)
    spec, _, _ = _spec_from_config(layer.horizon, max_delta=0.02)
    prev = np.asarray(load_backend_config("aloha_sim").start_pose, dtype=np.float64)
    a = prev + np.cumsum(rng.normal(0.0, 0.05, (layer.horizon, len(names))), axis=0)
    if kind == "leto":  # the input is e_t on the normalised scale
        a = rng.normal(0.0, 1.0, (layer.horizon, len(names)))
    y = np.asarray(layer.optimise(a, prev, spec))
    steps = np.diff(np.vstack([prev, y])[:, list(spec.continuous_dims)], axis=0)
    assert np.all(np.isfinite(y)) and np.abs(steps).max() <= 0.02 + 1e-7
