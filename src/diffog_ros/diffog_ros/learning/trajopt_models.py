"""Learned layers for the trajectory-optimisation node's ``diffog`` and ``leto`` methods.

Implements :class:`diffog_ros.trajopt.model_io.TrajOptModel` and registers the builders with
:func:`diffog_ros.trajopt.model_io.register_model_builder` (done on ``import diffog_ros.learning``)::

    model = load_trajopt_model(path)            # kind read from the checkpoint
    model.names / model.action_names            # action names in chunk order
    model.horizon, model.action_dim
    y = model.optimise(a, prev, spec)           # physical units in and out

``a`` is [T, D] or [B, T, D] (numpy or torch).  For DiffOG it is the raw chunk in physical units;
for LeTO it is e_t as published by the policy node (the linear term of eq. 4, which lives on the
normalised scale and is used as is).  ``prev`` is the executed previous action [D] / [B, D]
(physical) or None; ``spec`` is the physical-unit TrajOptSpec (None: the trained bounds).  The
spec's bounds are converted per dim to the normalised scale the layer was trained on
(:meth:`MinMaxNormalizer.spec_to_normalized`); alpha is used as given.  The QP runs in float64;
the result has the type and dtype of ``a``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffog_ros.learning.checkpoint import CheckpointError, validate_names
from diffog_ros.learning.models import load_model
from diffog_ros.learning.normalizer import MinMaxNormalizer
from diffog_ros.trajopt import TrajOptSpec
from diffog_ros.trajopt.model_io import ModelMeta, register_model_builder


class _LearnedTrajOpt:
    """Shared plumbing: shapes, normalisation, spec conversion."""

    kind = ""

    def __init__(
        self, meta: dict[str, Any], norm: MinMaxNormalizer, trained_spec: TrajOptSpec
    ) -> None:
        self.meta = meta
        self.names: tuple[str, ...] = tuple(meta["action_names"])
        self.horizon = int(meta["horizon"])
        self.action_dim = int(meta["action_dim"])
        self.normalizer = norm
        self.trained_spec = trained_spec  # normalised scale
        self.dt = meta.get("dt")

    @property
    def action_names(self) -> list[str]:
        return list(self.names)

    def physical_spec(self) -> TrajOptSpec:
        """The bounds the layer was trained with, in physical units."""
        return self.normalizer.spec_to_physical(self.trained_spec)

    def _prepare(self, a: Any, prev: Any, spec: TrajOptSpec | None):
        as_numpy = isinstance(a, np.ndarray)
        t = torch.as_tensor(a)
        out_dtype = t.dtype if t.is_floating_point() else torch.float64
        batched = t.ndim == 3
        t = t.to(torch.float64)
        if not batched:
            t = t.unsqueeze(0)
        if t.ndim != 3 or t.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(
                f"a must be [T={self.horizon}, D={self.action_dim}] or [B, T, D], got {tuple(np.shape(a))}"
            )
        p = None
        if prev is not None:
            # a copy: prev may be a read-only view (e.g. a robot config's start pose)
            p = prev.to(torch.float64) if torch.is_tensor(prev) else torch.tensor(np.array(prev))
            p = p.to(torch.float64)
            if p.ndim == 1:
                p = p.unsqueeze(0)
            if p.shape != (t.shape[0], self.action_dim):
                raise ValueError(
                    f"prev must be [D] or [B, D] with D={self.action_dim}, got {tuple(p.shape)}"
                )
            p = self.normalizer.normalize(p)
        if spec is None:
            spec_n = self.trained_spec
        else:
            if (spec.horizon, spec.action_dim) != (self.horizon, self.action_dim):
                raise ValueError(
                    f"spec is {spec.horizon}x{spec.action_dim} but the layer is {self.horizon}x{self.action_dim}"
                )
            spec_n = self.normalizer.spec_to_normalized(spec)
        return t, p, spec_n, (as_numpy, out_dtype, batched)

    def _finish(self, y: torch.Tensor, how) -> Any:
        as_numpy, out_dtype, batched = how
        y = self.normalizer.unnormalize(y)
        if not batched:
            y = y[0]
        y = y.to(out_dtype)
        return y.numpy() if as_numpy else y


class DiffOGTrajOpt(_LearnedTrajOpt):
    """DiffOG: y* = layer(normalise(a)) with continuity to prev (Sec. V-D)."""

    kind = "diffog"

    def __init__(self, layer, meta, norm) -> None:
        super().__init__(meta, norm, layer.spec)
        self.layer = layer

    def optimise(self, a: Any, prev: Any = None, spec: TrajOptSpec | None = None) -> Any:
        t, p, spec_n, how = self._prepare(a, prev, spec)
        y = self.layer.optimise(self.normalizer.normalize(t), p, spec_n)
        return self._finish(y, how)


class LetoTrajOpt(_LearnedTrajOpt):
    """LeTO: y* = DTO(e_t) with continuity to prev (LeTO Sec. III-D); ``a`` is e_t."""

    kind = "leto"

    def __init__(self, policy, meta, norm) -> None:
        super().__init__(meta, norm, policy.spec)
        self.policy = policy

    @torch.no_grad()
    def optimise(self, a: Any, prev: Any = None, spec: TrajOptSpec | None = None) -> Any:
        t, p, spec_n, how = self._prepare(a, prev, spec)
        y = self.policy.dto(t.reshape(t.shape[0], -1), spec_n, p).reshape(t.shape)
        return self._finish(y, how)


def load_trajopt_model(
    path: str | Path, kind: str | None = None, action_names: Sequence[str] | None = None
) -> DiffOGTrajOpt | LetoTrajOpt:
    """Load a DiffOG or LeTO checkpoint for trajectory optimisation (CPU, eval mode).

    Args:
        path: checkpoint directory (or its config.json / model.safetensors).
        kind: 'diffog' or 'leto' to insist on one; None accepts either.
        action_names: when given (e.g. from the robot config), must equal the checkpoint's.

    Raises:
        CheckpointError: missing/corrupt files, wrong kind, or mismatching names/dims.
    """
    model, meta, norms = load_model(path, kind=kind)
    if meta["kind"] not in ("diffog", "leto"):
        raise CheckpointError(
            f"{path} is a {meta['kind']!r} checkpoint, not a trajectory-optimisation layer"
        )
    if action_names is not None:
        validate_names(meta, action_names)
    cls = DiffOGTrajOpt if meta["kind"] == "diffog" else LetoTrajOpt
    return cls(model, meta, norms["action"])


def _builder(kind: str):
    def build(meta: ModelMeta, weights: Path):
        return load_trajopt_model(weights.parent, kind=kind)

    return build


def register_builders() -> None:
    """Let :func:`diffog_ros.trajopt.model_io.load_trajopt_model` load our checkpoints."""
    register_model_builder("diffog", _builder("diffog"))
    register_model_builder("leto", _builder("leto"))
