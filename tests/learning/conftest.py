"""Shared fixtures for the learning tests: one thread, tiny synthetic datasets and configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .synthetic import write_dataset

torch.set_num_threads(1)

COMMON = {
    "device": "cpu",
    "num_threads": 1,
    "batch_size": 16,
    "checkpoint_every": 1000,
    "log_every": 1000,
    "val_fraction": 0.0,
    "warmup_steps": 0,
    "lr": 3e-3,
    "lr_schedule": "constant",
    "keep_periodic": 0,
    "ema_decay": 0.0,
}


def diffusion_cfg(**extra) -> dict:
    cfg = dict(
        COMMON,
        data={"cameras": [], "lowdim": ["qpos"]},
        model={
            "horizon": 8,
            "n_obs_steps": 1,
            "n_action_steps": 4,
            "down_dims": [32, 64],
            "n_groups": 8,
            "step_embed_dim": 16,
            "ddim_steps": 10,
            "num_train_steps": 50,
        },
    )
    cfg.update(extra)
    return cfg


def diffog_cfg(**extra) -> dict:
    cfg = dict(
        COMMON,
        horizon=4,
        bounds={"exclude_names": ["grip"], "max_delta": 0.5, "smooth_weight": 4.0},
        model={"d_model": 32, "n_heads": 2, "dim_feedforward": 32, "n_layers": 1, "dropout": 0.0},
    )
    cfg.update(extra)
    return cfg


def leto_cfg(**extra) -> dict:
    cfg = dict(
        COMMON,
        data={"cameras": [], "lowdim": ["qpos"]},
        bounds={"exclude_names": ["grip"], "max_delta": 0.5, "smooth_weight": 1.0},
        model={"horizon": 4, "seq_len": 4, "lstm_hidden": 32, "lstm_layers": 1},
    )
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """Two 16-step low-dim episodes (names j0, j1, grip; 50 fps)."""
    return write_dataset(tmp_path_factory.mktemp("data"), episodes=2, length=16)


@pytest.fixture(scope="session")
def image_dataset(tmp_path_factory) -> Path:
    """Three 12-step episodes with one 16x24 camera 'cam'."""
    return write_dataset(
        tmp_path_factory.mktemp("img"), episodes=3, length=12, cameras={"cam": (16, 24)}
    )
