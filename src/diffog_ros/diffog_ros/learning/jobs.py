"""What to train for each kind: data, model, loss and checkpoint metadata (used by train.py).

Each job holds ``net`` (the module whose weights go into the checkpoint), ``loss_module``
(``forward(batch) -> (loss, stats)``; what DDP wraps), train / validation datasets and ``meta``
(the checkpoint metadata without the training-progress fields).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from diffog_ros.learning.checkpoint import CheckpointError, spec_to_dict
from diffog_ros.learning.config import ConfigError, spec_from_bounds
from diffog_ros.learning.diffog import DiffOGConfig, DiffOGLayer, bound_activity
from diffog_ros.learning.diffusion import DiffusionConfig, DiffusionPolicy
from diffog_ros.learning.encoders import EncoderConfig
from diffog_ros.learning.episodes import (
    Episode,
    action_names_from,
    data_hash,
    episode_dt,
    load_episodes,
)
from diffog_ros.learning.leto import LetoConfig, LetoPolicy
from diffog_ros.learning.models import load_model
from diffog_ros.learning.normalizer import MinMaxNormalizer
from diffog_ros.learning.windows import ChunkWindows, SequenceWindows

LOG = logging.getLogger(__name__)


@dataclass
class Job:
    kind: str
    net: nn.Module
    loss_module: nn.Module
    train_set: Dataset
    val_set: Dataset | None
    meta: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ loss modules
class DiffusionLoss(nn.Module):
    def __init__(self, policy: DiffusionPolicy) -> None:
        super().__init__()
        self.net = policy

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.net.compute_loss(batch), {}


class _BaseChunker:
    """Frozen base policy (not an nn.Module attribute, so it is neither saved nor DDP-wrapped)."""

    def __init__(self, base: DiffusionPolicy, steps: int | None) -> None:
        self.base, self.steps = base, steps

    @torch.no_grad()
    def __call__(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.base.chunk(self.base.sample(obs, self.steps))


class DiffOGLoss(nn.Module):
    """Eq. (10). Dataset mode: input = target chunk. Refine mode: input = the base policy's chunk."""

    def __init__(self, layer: DiffOGLayer, base: _BaseChunker | None, n_obs: int) -> None:
        super().__init__()
        self.net = layer
        self.base = base
        self.n_obs = n_obs

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        target = batch["action"][:, self.n_obs - 1 :]  # chunk starting at the current step
        a_in = target if self.base is None else self.base(batch["obs"]).to(target.dtype)
        loss, y = self.net.loss(a_in, target)
        stats = {
            "qp/solve_ms": 1e3 * self.net.last_solve_time,
            "qp/bound_activity": bound_activity(y, self.net.spec),
        }
        return loss, stats


class LetoLoss(nn.Module):
    def __init__(self, policy: LetoPolicy) -> None:
        super().__init__()
        self.net = policy

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        loss, y = self.net.compute_loss(batch)
        flat = y.reshape(-1, *y.shape[2:])
        stats = {
            "qp/solve_ms": 1e3 * self.net.dto.last_solve_time,
            "qp/bound_activity": bound_activity(flat, self.net.spec),
        }
        return loss, stats


# ------------------------------------------------------------------------------------ helpers
def split_episodes(episodes: Sequence[Episode], fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation) episodes; validation gets round(fraction * N) episodes, none if N < 2."""
    n = len(episodes)
    n_val = int(round(fraction * n)) if n >= 2 else 0
    n_val = min(n_val, n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val = sorted(order[:n_val].tolist())
    return [episodes[i] for i in range(n) if i not in val], [episodes[i] for i in val]


def _names_and_dt(
    cfg: Mapping[str, Any], episodes: Sequence[Episode]
) -> tuple[list[str], float | None]:
    names = cfg.get("action_names") or action_names_from(episodes)
    dim = episodes[0].arrays["action"].shape[1]
    if names is None:
        raise ConfigError(
            "the episodes have no joint_names attribute; set action_names in the config"
        )
    if len(names) != dim:
        raise ConfigError(f"{len(names)} action names for {dim} action dims")
    for ep in episodes:
        if ep.arrays["action"].shape[1] != dim:
            raise ConfigError(f"{ep.path}: action dim {ep.arrays['action'].shape[1]} != {dim}")
    dt = cfg.get("dt") or episode_dt(episodes[0].attrs)
    return [str(n) for n in names], (float(dt) if dt else None)


def _lowdim_normalizers(
    keys: Sequence[str], episodes: Sequence[Episode]
) -> dict[str, MinMaxNormalizer]:
    return {k: MinMaxNormalizer.fit([ep.arrays[k] for ep in episodes]) for k in keys}


def _encoder_config(cfg: Mapping[str, Any], episodes: Sequence[Episode]) -> EncoderConfig:
    data = cfg["data"]
    lowdim = {k: int(episodes[0].arrays[k].shape[1]) for k in data.get("lowdim") or []}
    return EncoderConfig(
        lowdim=lowdim,
        cameras=list(data.get("cameras") or []),
        image_size=list(data["image_size"]) if data.get("image_size") else None,
        **dict(cfg["encoder"]),
    )


def _load(data_dir: str | Path, cfg: Mapping[str, Any], cameras=None, lowdim=None) -> list[Episode]:
    data = cfg.get("data", {})
    cameras = list(data.get("cameras") or []) if cameras is None else list(cameras)
    lowdim = list(data.get("lowdim") or []) if lowdim is None else list(lowdim)
    unsupported = [k for k in lowdim if k != "qpos"]
    if unsupported:
        raise ConfigError(f"data.lowdim supports 'qpos' only, got {unsupported}")
    return load_episodes(data_dir, cameras, data.get("image_size"), with_qpos=bool(lowdim))


def _common_meta(kind, names, dt, horizon, norms, cfg, episodes) -> dict[str, Any]:
    return {
        "kind": kind,
        "action_names": names,
        "action_dim": len(names),
        "horizon": int(horizon),
        "dt": dt,
        "normalizers": {k: v.to_dict() for k, v in norms.items()},
        "training": {
            "config": dict(cfg),
            "data_hash": data_hash(episodes),
            "episodes": len(episodes),
        },
    }


# ------------------------------------------------------------------------------------ jobs
def _observation_policy_data(cfg: Mapping[str, Any], data_dir: str | Path, base: Any):
    """Episodes, names, dt, train/val split, normalisers and encoder config of an observation policy."""
    if base:
        raise ConfigError("--base is only used by `train diffog` (refine mode)")
    episodes = _load(data_dir, cfg)
    names, dt = _names_and_dt(cfg, episodes)
    train_eps, val_eps = split_episodes(episodes, cfg["val_fraction"], cfg["seed"])
    norms = {"action": MinMaxNormalizer.fit([e.arrays["action"] for e in train_eps], names)}
    norms.update(_lowdim_normalizers(cfg["data"].get("lowdim") or [], train_eps))
    enc = _encoder_config(cfg, episodes)
    return episodes, names, dt, train_eps, val_eps, norms, enc


def diffusion_job(cfg: Mapping[str, Any], data_dir: str | Path, base: Any = None) -> Job:
    episodes, names, dt, train_eps, val_eps, norms, enc = _observation_policy_data(
        cfg, data_dir, base
    )
    try:
        mcfg = DiffusionConfig(action_dim=len(names), encoder=enc, **dict(cfg["model"]))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid model section: {exc}") from exc
    policy = DiffusionPolicy(mcfg)

    def windows(eps):
        return (
            ChunkWindows(eps, mcfg.n_obs_steps, mcfg.horizon, enc.obs_keys, norms) if eps else None
        )

    meta = _common_meta("diffusion", names, dt, mcfg.horizon, norms, cfg, episodes)
    meta.update(
        model=mcfg.to_dict(), chunk_length=mcfg.n_action_steps, n_obs_steps=mcfg.n_obs_steps
    )
    return Job(
        "diffusion", policy, DiffusionLoss(policy), windows(train_eps), windows(val_eps), meta
    )


def diffog_job(cfg: Mapping[str, Any], data_dir: str | Path, base: Any = None) -> Job:
    mode = cfg["mode"]
    if mode not in ("dataset", "refine"):
        raise ConfigError(f"mode must be dataset or refine, got {mode!r}")
    horizon = int(cfg["horizon"])
    base_meta = None
    if mode == "refine":
        if not base:
            raise ConfigError("refine mode needs --base CKPT (a diffusion checkpoint)")
        base_policy, base_meta, base_norms = load_model(base, kind="diffusion")
        base_policy.requires_grad_(False)
        bcfg = base_policy.cfg
        if bcfg.n_action_steps != horizon:
            raise ConfigError(
                f"horizon {horizon} must equal the base policy's n_action_steps {bcfg.n_action_steps}"
            )
        enc = bcfg.encoder
        episodes = _load(
            data_dir, {"data": {"image_size": enc.image_size}}, enc.cameras, list(enc.lowdim)
        )
        names, dt = _names_and_dt(cfg, episodes)
        if names != list(base_meta["action_names"]):
            raise CheckpointError(
                f"base checkpoint action names {base_meta['action_names']} != data {names}"
            )
        norms = base_norms  # the base policy's scale: its chunks and the targets must agree
        n_obs, obs_keys = bcfg.n_obs_steps, enc.obs_keys
        chunker = _BaseChunker(base_policy, cfg.get("base_ddim_steps"))
    else:
        if base:
            raise ConfigError("--base is only used in refine mode (set mode: refine)")
        episodes = _load(data_dir, {"data": {}}, [], [])
        names, dt = _names_and_dt(cfg, episodes)
        n_obs, obs_keys, chunker = 1, [], None
    train_eps, val_eps = split_episodes(episodes, cfg["val_fraction"], cfg["seed"])
    if mode == "dataset":
        norms = {"action": MinMaxNormalizer.fit([e.arrays["action"] for e in train_eps], names)}
    spec = spec_from_bounds(cfg["bounds"], horizon, names, norms["action"])
    try:
        lcfg = DiffOGConfig(horizon=horizon, action_dim=len(names), **dict(cfg["model"]))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid model section: {exc}") from exc
    layer = DiffOGLayer(lcfg, spec)

    def windows(eps):
        return ChunkWindows(eps, n_obs, n_obs - 1 + horizon, obs_keys, norms) if eps else None

    meta = _common_meta("diffog", names, dt, horizon, norms, cfg, episodes)
    meta.update(
        model=lcfg.to_dict(),
        spec=spec_to_dict(spec),
        spec_scale="normalized",
        spec_physical=spec_to_dict(norms["action"].spec_to_physical(spec)),
        chunk_length=horizon,
    )
    meta["training"]["mode"] = mode
    if base_meta is not None:
        meta["training"]["base"] = {
            "path": str(base),
            "weights_sha256": base_meta.get("weights_sha256"),
        }
    return Job(
        "diffog",
        layer,
        DiffOGLoss(layer, chunker, n_obs),
        windows(train_eps),
        windows(val_eps),
        meta,
    )


def leto_job(cfg: Mapping[str, Any], data_dir: str | Path, base: Any = None) -> Job:
    episodes, names, dt, train_eps, val_eps, norms, enc = _observation_policy_data(
        cfg, data_dir, base
    )
    try:
        mcfg = LetoConfig(action_dim=len(names), encoder=enc, **dict(cfg["model"]))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid model section: {exc}") from exc
    spec = spec_from_bounds(cfg["bounds"], mcfg.horizon, names, norms["action"])
    policy = LetoPolicy(mcfg, spec)

    def windows(eps):
        if not eps:
            return None
        return SequenceWindows(eps, mcfg.seq_len, mcfg.horizon, enc.obs_keys, norms, mcfg.stride)

    meta = _common_meta("leto", names, dt, mcfg.horizon, norms, cfg, episodes)
    meta.update(
        model=mcfg.to_dict(),
        spec=spec_to_dict(spec),
        spec_scale="normalized",
        spec_physical=spec_to_dict(norms["action"].spec_to_physical(spec)),
        chunk_length=mcfg.horizon,
    )
    return Job("leto", policy, LetoLoss(policy), windows(train_eps), windows(val_eps), meta)


JOBS = {"diffusion": diffusion_job, "diffog": diffog_job, "leto": leto_job}
