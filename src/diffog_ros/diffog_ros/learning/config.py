"""Training configuration: ``config/train_<kind>.yaml`` defaults with a user YAML merged on top.

Unknown keys in the user file are rejected (typos must not silently fall back to defaults).
:func:`spec_from_bounds` turns the ``bounds`` section into the normalised-scale TrajOptSpec the
DiffOG / LeTO layers are trained with (DiffOG Table VII applies bounds on the normalised scale).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from diffog_ros.learning.normalizer import MinMaxNormalizer
from diffog_ros.paths import config_path
from diffog_ros.trajopt import TrajOptSpec

KINDS = ("diffusion", "diffog", "leto")
# Sections whose contents are free-form (not checked against the defaults' keys).
FREE_FORM = {"action_names", "dt", "bounds.continuous_names", "bounds.continuous_dims"}


class ConfigError(ValueError):
    """An invalid training configuration (the message names the key)."""


def _read(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read training config {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a training config must be a mapping")
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}{key}"
        if key not in base and path not in FREE_FORM:
            raise ConfigError(f"unknown training config key {path!r} (known: {sorted(base)})")
        if (
            isinstance(value, Mapping)
            and isinstance(base.get(key), Mapping)
            and path not in FREE_FORM
        ):
            out[key] = _merge(base[key], value, f"{path}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_train_config(
    kind: str,
    user: str | Path | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults of ``kind`` merged with a user file/mapping and then ``overrides``."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    cfg = _read(config_path(f"train_{kind}.yaml"))
    if user is not None:
        cfg = _merge(cfg, user if isinstance(user, Mapping) else _read(user))
    if overrides:
        cfg = _merge(cfg, overrides)
    _check(cfg)
    return cfg


def _check(cfg: Mapping[str, Any]) -> None:
    def positive_int(key: str) -> None:
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise ConfigError(f"{key} must be an int >= 1, got {cfg.get(key)!r}")

    for key in ("batch_size", "max_steps", "checkpoint_every", "log_every"):
        positive_int(key)
    if not float(cfg["lr"]) > 0:
        raise ConfigError(f"lr must be > 0, got {cfg['lr']!r}")
    if not 0.0 <= float(cfg["val_fraction"]) < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {cfg['val_fraction']!r}")
    if not 0.0 <= float(cfg["ema_decay"]) < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {cfg['ema_decay']!r}")
    if cfg["lr_schedule"] not in ("cosine", "constant"):
        raise ConfigError(f"lr_schedule must be cosine or constant, got {cfg['lr_schedule']!r}")
    if cfg.get("dt") is not None and not float(cfg["dt"]) > 0:
        raise ConfigError(f"dt must be > 0, got {cfg['dt']!r}")


def continuous_dims(bounds: Mapping[str, Any], action_names: Sequence[str]) -> list[int]:
    """S from ``continuous_dims`` (indices), ``continuous_names`` or ``exclude_names`` (default: all)."""
    names = list(action_names)
    if bounds.get("continuous_dims") is not None:
        dims = [int(d) for d in bounds["continuous_dims"]]
    elif bounds.get("continuous_names") is not None:
        unknown = [n for n in bounds["continuous_names"] if n not in names]
        if unknown:
            raise ConfigError(f"bounds.continuous_names {unknown} are not action names {names}")
        dims = [names.index(n) for n in bounds["continuous_names"]]
    else:
        excluded = list(bounds.get("exclude_names") or [])
        unknown = [n for n in excluded if n not in names]
        if unknown:
            raise ConfigError(f"bounds.exclude_names {unknown} are not action names {names}")
        dims = [i for i, n in enumerate(names) if n not in excluded]
    return dims


def spec_from_bounds(
    bounds: Mapping[str, Any],
    horizon: int,
    action_names: Sequence[str],
    normalizer: MinMaxNormalizer,
) -> TrajOptSpec:
    """The normalised-scale TrajOptSpec of a ``bounds`` section.

    ``bounds.scale`` says in which scale max_delta/min_delta/min_value/max_value are given:
    ``normalized`` (DiffOG Table VII "Bound") or ``physical`` (converted per dim, see
    :class:`MinMaxNormalizer`).
    """
    scale = bounds.get("scale", "normalized")
    if scale not in ("normalized", "physical"):
        raise ConfigError(f"bounds.scale must be normalized or physical, got {scale!r}")
    dims = continuous_dims(bounds, action_names)

    def opt(key: str) -> Any:
        v = bounds.get(key)
        return (
            None
            if v is None
            else tuple(np.broadcast_to(np.asarray(v, float), (len(dims),)).tolist())
        )

    try:
        spec = TrajOptSpec(
            horizon=int(horizon),
            action_dim=len(action_names),
            continuous_dims=tuple(dims),
            max_delta=opt("max_delta"),
            min_delta=opt("min_delta"),
            smooth_weight=float(bounds.get("smooth_weight", 0.0)),
            min_value=opt("min_value"),
            max_value=opt("max_value"),
        )
    except ValueError as exc:
        raise ConfigError(f"invalid bounds section: {exc}") from exc
    return normalizer.spec_to_normalized(spec) if scale == "physical" else spec
