"""Checkpoints: safetensors + JSON round trip, clear errors, name validation, trajopt loading."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from diffog_ros.learning import load_trajopt_model
from diffog_ros.learning.checkpoint import (
    CheckpointError,
    load_checkpoint,
    spec_from_dict,
    spec_to_dict,
    validate_names,
)
from diffog_ros.learning.models import load_model
from diffog_ros.learning.policies import DiffusionRunner, LetoRunner
from diffog_ros.learning.train import train
from diffog_ros.trajopt import TrajOptSpec, model_io

from .conftest import diffog_cfg, diffusion_cfg, leto_cfg


@pytest.fixture(scope="module")
def ckpts(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    return {
        kind: train(kind, dataset, out / kind, cfg, max_steps=3, progress=False)
        for kind, cfg in (
            ("diffusion", diffusion_cfg()),
            ("diffog", diffog_cfg()),
            ("leto", leto_cfg()),
        )
    }


def test_files_are_safetensors_and_json(ckpts):
    for path in ckpts.values():
        assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
        meta = json.loads((path / "config.json").read_text())
        assert meta["action_names"] == ["j0", "j1", "grip"] and meta["dt"] == pytest.approx(0.02)
        assert meta["training"]["data_hash"].startswith("sha256:")
        assert "normalizers" in meta and "model" in meta


def test_round_trip_reproduces_outputs_exactly(ckpts, dataset):
    obs = {"qpos": np.array([[0.1, -0.2, 1.0]])}
    a = DiffusionRunner(ckpts["diffusion"], seed=3).predict(obs, 0.0)
    b = DiffusionRunner(ckpts["diffusion"], seed=3).predict(obs, 0.0)
    np.testing.assert_array_equal(a, b)

    # the trained module in memory vs the reloaded one
    model, meta, _ = load_model(ckpts["diffog"])
    _, weights = load_checkpoint(ckpts["diffog"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k])
    chunk = np.cumsum(np.full((4, 3), 0.3), axis=0)
    y1 = load_trajopt_model(ckpts["diffog"]).optimise(chunk, chunk[0] - 0.1, None)
    y2 = load_trajopt_model(ckpts["diffog"]).optimise(chunk, chunk[0] - 0.1, None)
    np.testing.assert_array_equal(y1, y2)

    e1 = LetoRunner(ckpts["leto"]).predict(obs, 0.0)
    e2 = LetoRunner(ckpts["leto"]).predict(obs, 0.0)
    np.testing.assert_array_equal(e1, e2)


def test_trajopt_node_loader_interface(ckpts):
    for kind in ("diffog", "leto"):
        model = model_io.load_trajopt_model(ckpts[kind], kind)
        assert model.names == ("j0", "j1", "grip") and (model.horizon, model.action_dim) == (4, 3)
        assert isinstance(model, model_io.TrajOptModel)
        spec = TrajOptSpec(
            horizon=4, action_dim=3, continuous_dims=[0, 1], max_delta=0.05, smooth_weight=1.0
        )
        a = np.cumsum(np.full((2, 4, 3), 0.2), axis=1)
        prev = a[:, 0] - 0.3
        y = model.optimise(a, prev, spec)
        assert y.shape == (2, 4, 3) and y.dtype == a.dtype
        assert np.abs(np.diff(y[:, :, :2], axis=1)).max() <= 0.05 + 1e-9  # physical bounds hold
        assert np.abs(y[:, 0, :2] - prev[:, :2]).max() <= 0.05 + 1e-9  # continuity
    with pytest.raises(model_io.ModelLoadError, match="diffusion"):
        model_io.load_trajopt_model(ckpts["diffusion"], "diffog")


def test_missing_and_corrupt_checkpoints_fail_clearly(ckpts, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    bad = tmp_path / "bad"
    shutil.copytree(ckpts["diffog"], bad)
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:-7])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad, verify=False)  # safetensors itself refuses the truncated file
    shutil.rmtree(bad)
    shutil.copytree(ckpts["diffog"], bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="metadata is corrupt"):
        load_checkpoint(bad)
    (bad / "config.json").unlink()
    with pytest.raises(CheckpointError, match="metadata missing"):
        load_checkpoint(bad)
    shutil.rmtree(bad)
    shutil.copytree(ckpts["diffog"], bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights missing"):
        load_checkpoint(bad)


def test_weights_of_the_wrong_architecture_are_refused(ckpts, tmp_path):
    bad = tmp_path / "arch"
    shutil.copytree(ckpts["diffog"], bad)
    meta = json.loads((bad / "config.json").read_text())
    meta["model"]["d_model"] = 64
    (bad / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(bad)


def test_names_are_validated_against_the_robot(ckpts):
    with pytest.raises(CheckpointError, match="3 action dims"):
        load_trajopt_model(ckpts["diffog"], action_names=["j0", "j1"])
    with pytest.raises(CheckpointError, match="differ"):
        load_trajopt_model(ckpts["diffog"], action_names=["j0", "jX", "grip"])
    validate_names({"action_names": ["a", "b"]}, ["a", "b"])  # equal: no error


def test_spec_records_round_trip():
    spec = TrajOptSpec(
        horizon=3,
        action_dim=4,
        continuous_dims=[0, 2],
        max_delta=(0.1, 0.2),
        min_delta=(-0.3, -0.1),
        smooth_weight=2.5,
        max_value=(1.0, 2.0),
    )
    back = spec_from_dict(json.loads(json.dumps(spec_to_dict(spec))))
    for attr in ("hi_delta", "lo_delta", "lo_value", "hi_value"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(spec, attr))
    assert back.continuous_dims == (0, 2) and back.smooth_weight == 2.5 and back.lo_position is None
    with pytest.raises(ValueError, match="invalid spec"):
        spec_from_dict({"horizon": 3})


def test_a_failed_write_keeps_the_previous_checkpoint(ckpts, tmp_path, monkeypatch):
    from diffog_ros.learning import checkpoint as ck

    target = tmp_path / "ck"
    shutil.copytree(ckpts["diffog"], target)
    before = (target / "model.safetensors").read_bytes()
    meta, weights = load_checkpoint(target)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "save_file", full_disk)
    with pytest.raises(OSError, match="No space"):
        ck.save_checkpoint(target, meta, {k: v + 1 for k, v in weights.items()})
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary directories left
