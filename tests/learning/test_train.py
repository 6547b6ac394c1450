"""Training: each model type overfits a tiny dataset; resume, TensorBoard, config errors, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import default_collate

from diffog_ros.cli import train as train_cli
from diffog_ros.learning.checkpoint import CheckpointError, load_checkpoint
from diffog_ros.learning.config import ConfigError
from diffog_ros.learning.diffog import DiffOGConfig, DiffOGLayer
from diffog_ros.learning.episodes import load_episodes
from diffog_ros.learning.models import load_model
from diffog_ros.learning.policies import DiffusionRunner
from diffog_ros.learning.train import StepBatchSampler, train
from diffog_ros.learning.windows import ChunkWindows, SequenceWindows

from .conftest import diffog_cfg, diffusion_cfg, leto_cfg


def _all(ds) -> dict:
    return default_collate([ds[i] for i in range(len(ds))])


def _chunk_error(ckpt, dataset) -> float:
    """Mean |sampled chunk - demonstrated chunk| over every step of every episode (physical units)."""
    runner = DiffusionRunner(ckpt, seed=0)
    errors = []
    for ep in load_episodes(dataset):
        q, a = ep.arrays["qpos"], ep.arrays["action"]
        for t in range(len(q)):
            chunk = runner.predict({"qpos": q[t : t + 1]}, 0.0)
            target = a[np.clip(np.arange(t, t + runner.chunk_length), 0, len(a) - 1)]
            errors.append(np.abs(chunk - target).mean())
    return float(np.mean(errors))


@pytest.fixture(scope="module")
def base_policy(dataset, tmp_path_factory):
    """A diffusion policy overfitted to the tiny dataset (also the refine-mode base)."""
    return train(
        "diffusion",
        dataset,
        tmp_path_factory.mktemp("dp"),
        diffusion_cfg(),
        max_steps=300,
        progress=False,
    )


def test_diffusion_overfits(base_policy, dataset, tmp_path):
    untrained = train(
        "diffusion", dataset, tmp_path, diffusion_cfg(lr=1e-9), max_steps=1, progress=False
    )
    trained_err, untrained_err = (
        _chunk_error(base_policy, dataset),
        _chunk_error(untrained, dataset),
    )
    assert trained_err < 0.35 * untrained_err, (trained_err, untrained_err)


def _static_and_trained_loss(ckpt, a_in, target):
    layer, _, _ = load_model(ckpt)
    static = DiffOGLayer(
        DiffOGConfig(layer.cfg.horizon, layer.cfg.action_dim, variant="static"), layer.spec
    )
    with torch.no_grad():
        return F.mse_loss(static(a_in), target).item(), F.mse_loss(layer(a_in), target).item()


def test_diffog_dataset_training_beats_the_static_q(dataset, tmp_path):
    ckpt = train("diffog", dataset, tmp_path, diffog_cfg(), max_steps=100, progress=False)
    _, _, norms = load_model(ckpt)
    a = _all(ChunkWindows(load_episodes(dataset, with_qpos=False), 1, 4, [], norms))["action"]
    static_loss, trained_loss = _static_and_trained_loss(ckpt, a, a)
    assert trained_loss < 0.2 * static_loss, (trained_loss, static_loss)


def test_diffog_refine_training_on_base_chunks(base_policy, dataset, tmp_path):
    ckpt = train(
        "diffog",
        dataset,
        tmp_path,
        diffog_cfg(mode="refine"),
        base=base_policy,
        max_steps=100,
        progress=False,
    )
    meta, _ = load_checkpoint(ckpt)
    assert meta["training"]["mode"] == "refine"
    assert (
        meta["training"]["base"]["weights_sha256"]
        == load_checkpoint(base_policy)[0]["weights_sha256"]
    )
    base, _, norms = load_model(base_policy)
    batch = _all(ChunkWindows(load_episodes(dataset), 1, 4, ["qpos"], norms))
    torch.manual_seed(0)
    a_in = base.chunk(base.sample(batch["obs"]))
    static_loss, trained_loss = _static_and_trained_loss(ckpt, a_in, batch["action"])
    # the base chunk differs from the target (model error), so part of the loss cannot be removed;
    # an untrained layer (Q ~ I) scores like the static one (ratio ~1)
    assert trained_loss < 0.85 * static_loss, (trained_loss, static_loss)


def test_leto_overfits(dataset, tmp_path):
    ckpt = train("leto", dataset, tmp_path, leto_cfg(), max_steps=300, progress=False)
    policy, _, norms = load_model(ckpt)
    batch = _all(SequenceWindows(load_episodes(dataset), 4, 4, ["qpos"], norms))
    with torch.no_grad():
        loss, y = policy.compute_loss(batch)
    baseline = batch["action"].pow(2).mean().item()  # predicting zeros (the normalised centre)
    assert loss.item() < 0.15 * baseline, (loss.item(), baseline)
    assert (y[..., 1:, :2] - y[..., :-1, :2]).abs().max() <= 0.5 + 1e-6  # bounds held in training


def test_image_policies_train(image_dataset, tmp_path):
    img = {"cameras": ["cam"], "image_size": [16, 24], "lowdim": ["qpos"]}
    enc = {"resnet_width": 8, "resnet_blocks": [1, 1], "num_keypoints": 4, "image_feature_dim": 8}
    for kind, cfg in (
        ("diffusion", diffusion_cfg(data=img, encoder=enc)),
        ("leto", leto_cfg(data=img, encoder=enc)),
    ):
        meta, weights = load_checkpoint(
            train(kind, image_dataset, tmp_path / kind, cfg, max_steps=2, progress=False)
        )
        assert meta["model"]["encoder"]["cameras"] == ["cam"]
        assert any(k.startswith("encoder.images.cam.") for k in weights)


def test_resume_continues_exactly(dataset, tmp_path):
    cfg = diffog_cfg(
        checkpoint_every=3,
        model={"d_model": 16, "n_heads": 2, "dim_feedforward": 16, "n_layers": 1, "dropout": 0.1},
    )
    straight = train("diffog", dataset, tmp_path / "a", cfg, max_steps=6, progress=False)
    train("diffog", dataset, tmp_path / "b", cfg, max_steps=3, progress=False)
    resumed = train(
        "diffog", dataset, tmp_path / "b", cfg, max_steps=6, resume=True, progress=False
    )
    _, wa = load_checkpoint(straight.parent / "last")
    _, wb = load_checkpoint(resumed.parent / "last")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert (
        json.loads((resumed.parent / "last" / "config.json").read_text())["training"]["step"] == 6
    )


def test_resume_refuses_changed_data(dataset, tmp_path, image_dataset):
    train("diffog", dataset, tmp_path, diffog_cfg(), max_steps=2, progress=False)
    with pytest.raises(CheckpointError, match="data changed"):
        train(
            "diffog",
            image_dataset,
            tmp_path,
            diffog_cfg(),
            max_steps=4,
            resume=True,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(
            "diffog",
            dataset,
            tmp_path / "fresh",
            diffog_cfg(),
            max_steps=4,
            resume=True,
            progress=False,
        )


def test_tensorboard_scalars(dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(
        "diffog",
        dataset,
        tmp_path,
        diffog_cfg(log_every=2, val_fraction=0.5),
        max_steps=4,
        progress=False,
    )
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {
        "train/loss",
        "train/lr",
        "qp/solve_ms",
        "qp/bound_activity",
        "val/loss",
        "time/step_ms",
    } <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]


def test_static_variant_writes_a_checkpoint_without_training(dataset, tmp_path):
    cfg = diffog_cfg(model={"variant": "static"})
    meta, weights = load_checkpoint(
        train("diffog", dataset, tmp_path, cfg, max_steps=5, progress=False)
    )
    assert (
        weights == {} and meta["model"]["variant"] == "static" and meta["metrics"]["train_loss"] > 0
    )


def test_config_errors(dataset, tmp_path, base_policy):
    with pytest.raises(ConfigError, match="unknown training config key 'modle'"):
        train("diffog", dataset, tmp_path, {"modle": {}}, progress=False)
    with pytest.raises(ConfigError, match="unknown training config key 'model.d_modle'"):
        train("diffog", dataset, tmp_path, {"model": {"d_modle": 3}}, progress=False)
    with pytest.raises(ConfigError, match="needs --base"):
        train("diffog", dataset, tmp_path, diffog_cfg(mode="refine"), progress=False)
    with pytest.raises(ConfigError, match="n_action_steps"):
        train(
            "diffog",
            dataset,
            tmp_path,
            diffog_cfg(mode="refine", horizon=3),
            base=base_policy,
            progress=False,
        )
    with pytest.raises(ConfigError, match="not action names"):
        train(
            "diffog",
            dataset,
            tmp_path,
            diffog_cfg(bounds={"exclude_names": ["gripper"]}),
            progress=False,
        )
    with pytest.raises(ConfigError, match="action names for 3"):
        train("leto", dataset, tmp_path, leto_cfg(action_names=["a", "b"]), progress=False)


def test_step_sampler_is_a_function_of_seed_and_step():
    a = StepBatchSampler(10, 4, seed=1)
    b = StepBatchSampler(10, 4, seed=1, start_step=2)
    first = [a.indices(s) for s in range(5)]
    assert next(iter(b)) == first[2]
    flat = [i for s in first[:5] for i in s]  # 20 draws = two full epochs
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    r0, r1 = StepBatchSampler(10, 2, 1, 0, 2), StepBatchSampler(10, 2, 1, 1, 2)
    assert r0.indices(0) + r1.indices(0) == a.indices(0)  # ranks split the global batch


def test_cli(dataset, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "device: cpu\nnum_threads: 1\nbatch_size: 8\nhorizon: 4\nbounds: {exclude_names: [grip]}\n"
        "model: {d_model: 16, n_heads: 2, n_layers: 1, dim_feedforward: 16}\n"
    )
    rc = train_cli.main(
        [
            "diffog",
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "o"),
            "--config",
            str(cfg),
            "--max-steps",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert "best checkpoint:" in capsys.readouterr().out
    assert (tmp_path / "o" / "checkpoints" / "best" / "model.safetensors").is_file()
    rc = train_cli.main(
        [
            "diffog",
            "--data",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "p"),
            "--config",
            str(cfg),
        ]
    )
    assert rc == 1
    assert "not found" in capsys.readouterr().err


def test_training_survives_a_failed_checkpoint_write(dataset, tmp_path, monkeypatch, caplog):
    from diffog_ros.learning import train as train_mod

    real, calls = train_mod.save_checkpoint, []

    def flaky(directory, *args, **kwargs):
        calls.append(directory.name)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(directory, *args, **kwargs)

    monkeypatch.setattr(train_mod, "save_checkpoint", flaky)
    ckpt = train(
        "diffog", dataset, tmp_path, diffog_cfg(checkpoint_every=2), max_steps=4, progress=False
    )
    assert "checkpoints not written" in caplog.text
    meta, _ = load_checkpoint(ckpt.parent / "last")
    assert meta["training"]["step"] == 4
