"""Checkpoints as safetensors + JSON (never pickle, never ``torch.load``).

A checkpoint is a directory::

    config.json            metadata: kind, action_names, action_dim, horizon, dt, model config,
                           normalisers, spec (normalised scale), training config, data hash, step,
                           sha256 of model.safetensors
    model.safetensors      the weights used for inference (EMA weights when EMA is on)
    train_state.json       (optional, for --resume) optimiser hyper-parameters, step, scheduler
    train_state.safetensors  (optional) raw weights, optimiser moments, RNG state

The layout matches :mod:`diffog_ros.trajopt.model_io` (``config.json`` + ``model.safetensors``),
so the trajectory-optimisation node loads DiffOG / LeTO checkpoints through it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffog_ros.trajopt import TrajOptSpec
from diffog_ros.trajopt.model_io import ModelLoadError

FORMAT = "diffog_ros.checkpoint"
FORMAT_VERSION = 1
META_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_META_FILE = "train_state.json"
STATE_FILE = "train_state.safetensors"
KINDS = ("diffusion", "diffog", "leto")


class CheckpointError(ModelLoadError):
    """A checkpoint that is missing, corrupt or does not match what the caller needs."""


# ---------------------------------------------------------------------------------------- specs
def _floats_or_none(arr: np.ndarray | None) -> list[float | None] | None:
    if arr is None:
        return None
    return [None if math.isinf(v) else float(v) for v in np.asarray(arr, dtype=np.float64)]


def _side(values: list | None, fill: float) -> tuple[float, ...] | None:
    if values is None or all(v is None for v in values):
        return None
    return tuple(fill if v is None else float(v) for v in values)


def spec_to_dict(spec: TrajOptSpec) -> dict[str, Any]:
    """JSON-safe record of a TrajOptSpec (open value/position sides as null)."""
    return {
        "horizon": spec.horizon,
        "action_dim": spec.action_dim,
        "continuous_dims": list(spec.continuous_dims),
        "max_delta": spec.hi_delta.tolist(),
        "min_delta": spec.lo_delta.tolist(),
        "smooth_weight": spec.smooth_weight,
        "min_value": _floats_or_none(spec.lo_value),
        "max_value": _floats_or_none(spec.hi_value),
        "position_min": _floats_or_none(spec.lo_position),
        "position_max": _floats_or_none(spec.hi_position),
        "position_dt": spec.position_dt,
    }


def spec_from_dict(data: Mapping[str, Any]) -> TrajOptSpec:
    """Inverse of :func:`spec_to_dict` (raises ValueError on bad records)."""
    try:
        return TrajOptSpec(
            horizon=int(data["horizon"]),
            action_dim=int(data["action_dim"]),
            continuous_dims=tuple(int(d) for d in data["continuous_dims"]),
            max_delta=tuple(data["max_delta"]),
            min_delta=None if data.get("min_delta") is None else tuple(data["min_delta"]),
            smooth_weight=float(data.get("smooth_weight", 0.0)),
            min_value=_side(data.get("min_value"), -math.inf),
            max_value=_side(data.get("max_value"), math.inf),
            position_min=_side(data.get("position_min"), -math.inf),
            position_max=_side(data.get("position_max"), math.inf),
            position_dt=float(data.get("position_dt", 1.0)),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"invalid spec record ({exc}): {dict(data)!r:.300}") from exc


# ---------------------------------------------------------------------------------------- files
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(
        json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8"
    )


def save_checkpoint(
    directory: str | Path,
    meta: Mapping[str, Any],
    weights: Mapping[str, torch.Tensor],
    train_state: tuple[Mapping[str, Any], Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (a crash leaves the previous one intact).

    Args:
        directory: target directory (replaced if it exists).
        meta: JSON-safe metadata; must hold ``kind``, ``action_names``, ``action_dim``, ``horizon``.
        weights: model tensors for inference.
        train_state: optional (JSON part, tensor part) for resuming training.
    """
    directory = Path(directory)
    for key in ("kind", "action_names", "action_dim", "horizon"):
        if key not in meta:
            raise ValueError(f"checkpoint metadata needs {key!r}")
    if meta["kind"] not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {meta['kind']!r}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file(_tensors(weights), str(tmp / WEIGHTS_FILE))
        full = dict(meta)
        full.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            weights_sha256=_sha256(tmp / WEIGHTS_FILE),
            saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            torch_version=torch.__version__,
        )
        _write_json(tmp / META_FILE, full)
        if train_state is not None:
            state_meta, state_tensors = train_state
            save_file(_tensors(state_tensors), str(tmp / STATE_FILE))
            _write_json(tmp / STATE_META_FILE, dict(state_meta))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; checkpoints are meant to be shared
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old.{os.getpid()}")
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def resolve(path: str | Path) -> Path:
    """The checkpoint directory for a directory, its config.json or its model.safetensors."""
    p = Path(path).expanduser()
    if p.is_file() and p.name in (META_FILE, WEIGHTS_FILE):
        return p.parent
    return p


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read and check ``config.json`` of a checkpoint (CheckpointError with the reason)."""
    if not str(path).strip():
        raise CheckpointError("checkpoint path is empty")
    d = resolve(path)
    if not d.is_dir():
        raise CheckpointError(f"checkpoint not found: {d}")
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"checkpoint metadata missing: {meta_path}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata is corrupt: {meta_path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not a {FORMAT} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: format_version {meta.get('format_version')!r} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )
    if meta.get("kind") not in KINDS:
        raise CheckpointError(f"{meta_path}: unknown kind {meta.get('kind')!r}")
    names = meta.get("action_names")
    if not isinstance(names, list) or len(names) != meta.get("action_dim"):
        raise CheckpointError(f"{meta_path}: action_names must list action_dim names")
    return meta


def load_checkpoint(
    path: str | Path, kind: str | None = None, verify: bool = True
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, weights) of a checkpoint; the weights' sha256 is checked against the metadata.

    Raises:
        CheckpointError: missing files, corrupt JSON or weights, a checksum mismatch, or a
            different ``kind`` than requested.
    """
    meta = read_meta(path)
    d = resolve(path)
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(f"{d} is a {meta['kind']!r} checkpoint, expected {kind!r}")
    wpath = d / WEIGHTS_FILE
    if not wpath.is_file():
        raise CheckpointError(f"checkpoint weights missing: {wpath}")
    if verify and meta.get("weights_sha256") and _sha256(wpath) != meta["weights_sha256"]:
        raise CheckpointError(f"checkpoint weights are corrupt (sha256 mismatch): {wpath}")
    try:
        weights = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint weights are corrupt: {wpath}: {exc}") from exc
    return meta, weights


def load_train_state(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The resume state of a checkpoint (CheckpointError if absent or corrupt)."""
    d = resolve(path)
    jpath, tpath = d / STATE_META_FILE, d / STATE_FILE
    if not jpath.is_file() or not tpath.is_file():
        raise CheckpointError(f"{d} holds no training state to resume from")
    try:
        state_meta = json.loads(jpath.read_text(encoding="utf-8"))
        tensors = load_file(str(tpath))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError, ValueError) as exc:
        raise CheckpointError(f"training state in {d} is corrupt: {exc}") from exc
    return state_meta, tensors


def validate_names(
    meta: Mapping[str, Any], action_names: Sequence[str], source: str = "robot config"
) -> None:
    """Raise CheckpointError unless the checkpoint's action names/dims equal ``action_names``."""
    got = list(meta.get("action_names", []))
    want = list(action_names)
    if len(got) != len(want):
        raise CheckpointError(
            f"checkpoint has {len(got)} action dims but the {source} has {len(want)}: {got} vs {want}"
        )
    if got != want:
        diff = [(i, g, w) for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        raise CheckpointError(
            f"checkpoint action names differ from the {source} at (index, ckpt, expected) {diff}"
        )


# ---------------------------------------------------------------------------------------- optimiser
def flatten_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split ``optimizer.state_dict()`` into a JSON part and a tensor part."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return {"param_groups": state["param_groups"], "scalars": scalars}, tensors


def unflatten_optimizer(
    json_part: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in json_part.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": list(json_part["param_groups"])}
