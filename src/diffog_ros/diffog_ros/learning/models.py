"""Build models from checkpoint metadata + weights (the inverse of what training saves)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from diffog_ros.learning.checkpoint import CheckpointError, load_checkpoint, spec_from_dict
from diffog_ros.learning.diffog import DiffOGConfig, DiffOGLayer
from diffog_ros.learning.diffusion import DiffusionConfig, DiffusionPolicy
from diffog_ros.learning.leto import LetoConfig, LetoPolicy
from diffog_ros.learning.normalizer import MinMaxNormalizer


def build_model(meta: Mapping[str, Any]) -> nn.Module:
    """An untrained model with the architecture described by ``meta`` (CheckpointError if invalid)."""
    kind = meta.get("kind")
    try:
        if kind == "diffusion":
            return DiffusionPolicy(DiffusionConfig.from_dict(meta["model"]))
        if kind == "diffog":
            return DiffOGLayer(DiffOGConfig.from_dict(meta["model"]), spec_from_dict(meta["spec"]))
        if kind == "leto":
            return LetoPolicy(LetoConfig.from_dict(meta["model"]), spec_from_dict(meta["spec"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"invalid {kind} model description in checkpoint metadata: {exc}"
        ) from exc
    raise CheckpointError(f"unknown model kind {kind!r}")


def load_weights(model: nn.Module, weights: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict load; missing/unexpected/mis-shaped tensors raise CheckpointError."""
    try:
        model.load_state_dict(dict(weights), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: weights do not match the model: {exc}") from exc


def normalizers_from(meta: Mapping[str, Any]) -> dict[str, MinMaxNormalizer]:
    try:
        return {k: MinMaxNormalizer.from_dict(v) for k, v in meta["normalizers"].items()}
    except (KeyError, AttributeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint normalisers are invalid: {exc}") from exc


def load_model(
    path: Any, kind: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any], dict[str, MinMaxNormalizer]]:
    """(model in eval mode, metadata, normalisers) of a checkpoint."""
    meta, weights = load_checkpoint(path, kind=kind)
    model = build_model(meta)
    load_weights(model, weights, str(path))
    model.to(device).eval()
    norms = normalizers_from(meta)
    if "action" not in norms or norms["action"].dim != int(meta["action_dim"]):
        raise CheckpointError(f"{path}: the action normaliser does not have action_dim dims")
    return model, meta, norms
