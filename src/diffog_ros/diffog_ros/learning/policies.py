"""Inference-side policies for the policy node (no rclpy): one small interface, several kinds.

Every policy exposes::

    action_names: list[str]           names of the D action dims, in chunk order
    dt: float | None                  action period the policy was trained for (None: unknown)
    n_obs_steps: int                  observation steps it needs (spaced dt apart)
    lowdim: dict[str, int]            low-dim observation keys and sizes, e.g. {"qpos": 14}
    cameras: list[str]                camera names it reads
    chunk_length: int                 steps per published chunk
    reset() / warmup()
    predict(obs, obs_time) -> np.ndarray [chunk_length, D]

``obs`` maps 'qpos' (and other low-dim keys) to [n_obs, dim] physical values and
'images/<cam>' to [n_obs, H, W, 3] uint8 RGB frames; ``obs_time`` is the observation time in s.

Kinds: ``diffusion`` (a Diffusion Policy checkpoint), ``leto`` (a LeTO checkpoint; ``predict``
returns e_t, the linear term of the DTO layer, for the trajopt node's ``leto`` method), ``replay``
(a recorded episode's actions: drives the whole graph without a model) and any factory registered
in the entry-point group ``diffog_ros.policies`` (called as ``factory(checkpoint=..., **options)``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from diffog_ros.learning.checkpoint import validate_names
from diffog_ros.learning.episodes import episode_dt, read_arrays, resize_images
from diffog_ros.learning.leto import LetoRollout
from diffog_ros.learning.models import load_model

LOG = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "diffog_ros.policies"
BUILTIN = ("diffusion", "leto", "replay")


@runtime_checkable
class Policy(Protocol):
    action_names: list[str]
    dt: float | None
    n_obs_steps: int
    lowdim: dict[str, int]
    cameras: list[str]
    chunk_length: int

    def reset(self) -> None: ...

    def warmup(self) -> None: ...

    def predict(self, obs: Mapping[str, np.ndarray], obs_time: float) -> np.ndarray: ...


class _CheckpointPolicy:
    """Observation conversion shared by the diffusion and LeTO runners."""

    def __init__(self, model, meta: dict[str, Any], norms, device: str) -> None:
        self.model, self.meta, self.norms, self.device = model, meta, norms, torch.device(device)
        enc = model.cfg.encoder
        self.action_names = list(meta["action_names"])
        self.dt = meta.get("dt")
        self.lowdim = {k: int(v) for k, v in enc.lowdim.items()}
        self.cameras = list(enc.cameras)
        self.image_size = tuple(enc.image_size) if enc.image_size else None

    def _tensors(self, obs: Mapping[str, np.ndarray], steps: int) -> dict[str, torch.Tensor]:
        out = {}
        for key, dim in self.lowdim.items():
            x = np.asarray(obs[key], dtype=np.float64)
            if x.shape != (steps, dim):
                raise ValueError(f"observation {key!r} must be [{steps}, {dim}], got {x.shape}")
            if not np.all(np.isfinite(x)):
                raise ValueError(f"observation {key!r} holds NaN/Inf")
            norm = self.norms.get(key)
            x = norm.normalize(x) if norm is not None else x
            out[key] = torch.as_tensor(x, dtype=torch.float32, device=self.device)[None]
        for cam in self.cameras:
            img = np.asarray(obs[f"images/{cam}"])
            if (
                img.ndim != 4
                or img.shape[0] != steps
                or img.shape[-1] != 3
                or img.dtype != np.uint8
            ):
                raise ValueError(
                    f"camera {cam!r} must be [{steps}, H, W, 3] uint8, got {img.shape} {img.dtype}"
                )
            img = resize_images(img, self.image_size)
            t = torch.as_tensor(np.ascontiguousarray(img), device=self.device).movedim(-1, -3)
            out[f"images/{cam}"] = (t.float() / 255.0)[None]
        return out

    def _dummy_obs(self) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        for key, dim in self.lowdim.items():
            norm = self.norms.get(key)
            center = norm.center if norm is not None else np.zeros(dim)
            obs[key] = np.repeat(center[None], self.n_obs_steps, axis=0)
        for cam in self.cameras:
            h, w = self.image_size or (96, 96)
            obs[f"images/{cam}"] = np.zeros((self.n_obs_steps, h, w, 3), np.uint8)
        return obs


class DiffusionRunner(_CheckpointPolicy):
    """Diffusion Policy inference: DDIM sampling, chunk = actions[n_obs-1 : n_obs-1+n_action_steps]."""

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "cpu",
        ddim_steps: int | None = None,
        seed: int = 0,
    ):
        model, meta, norms = load_model(checkpoint, kind="diffusion", device=device)
        super().__init__(model, meta, norms, device)
        self.n_obs_steps = model.cfg.n_obs_steps
        self.chunk_length = model.cfg.n_action_steps
        self.ddim_steps = ddim_steps or model.cfg.ddim_steps
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def reset(self) -> None:
        pass

    def warmup(self) -> None:
        self.predict(self._dummy_obs(), 0.0)

    @torch.no_grad()
    def predict(self, obs: Mapping[str, np.ndarray], obs_time: float) -> np.ndarray:
        x = self.model.sample(self._tensors(obs, self.n_obs_steps), self.ddim_steps, self.generator)
        chunk = self.model.chunk(x)[0].double().cpu().numpy()
        return self.norms["action"].unnormalize(chunk)


class LetoRunner(_CheckpointPolicy):
    """LeTO encoder rollout: one LSTM step per call (refreshed every seq_len calls) -> e_t [T, D]."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        model, meta, norms = load_model(checkpoint, kind="leto", device=device)
        super().__init__(model, meta, norms, device)
        self.n_obs_steps = 1
        self.chunk_length = model.cfg.horizon
        self.rollout = LetoRollout(model)

    def reset(self) -> None:
        self.rollout.reset()

    def warmup(self) -> None:
        self.predict(self._dummy_obs(), 0.0)
        self.reset()

    @torch.no_grad()
    def predict(self, obs: Mapping[str, np.ndarray], obs_time: float) -> np.ndarray:
        e = self.rollout.embed(self._tensors(obs, 1))
        return e[0].double().cpu().numpy()


class ReplayPolicy:
    """Plays a recorded episode's actions: chunk k starts at step round((obs_time - t0) / dt)."""

    def __init__(
        self,
        episode: str | Path,
        chunk_length: int,
        dt: float | None = None,
        action_names: Sequence[str] | None = None,
        loop: bool = False,
    ) -> None:
        arrays, attrs = read_arrays(Path(episode), ["action"])
        self.actions = np.asarray(arrays["action"], dtype=np.float64)
        if self.actions.ndim != 2 or self.actions.shape[0] == 0:
            raise ValueError(f"{episode}: /action must be (T, D) with T > 0")
        if not np.all(np.isfinite(self.actions)):
            raise ValueError(f"{episode}: /action holds NaN/Inf")
        names = attrs.get("joint_names", attrs.get("action_names"))
        if action_names is not None:
            if names is not None:
                validate_names(
                    {"action_names": list(names)}, action_names, source="configured action names"
                )
            names = list(action_names)
        if names is None:
            raise ValueError(f"{episode} has no joint_names attribute; set action_names")
        if len(names) != self.actions.shape[1]:
            raise ValueError(f"{len(names)} action names for {self.actions.shape[1]} action dims")
        self.action_names = [str(n) for n in names]
        self.dt = float(dt) if dt else episode_dt(attrs)
        if self.dt is None or not self.dt > 0:
            raise ValueError(f"{episode} has no fps attribute; set dt")
        if chunk_length < 1:
            raise ValueError(f"chunk_length must be >= 1, got {chunk_length}")
        self.chunk_length = int(chunk_length)
        self.loop = loop
        self.n_obs_steps = 1
        self.lowdim: dict[str, int] = {}
        self.cameras: list[str] = []
        self.t0: float | None = None

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    def reset(self) -> None:
        self.t0 = None

    def warmup(self) -> None:
        pass

    def start_index(self, obs_time: float) -> int:
        if self.t0 is None:
            self.t0 = obs_time
        idx = int(round((obs_time - self.t0) / self.dt))
        return idx % self.length if self.loop else min(max(idx, 0), self.length - 1)

    def finished(self, obs_time: float) -> bool:
        return (
            (not self.loop)
            and self.t0 is not None
            and (obs_time - self.t0) / self.dt >= self.length - 1
        )

    def predict(self, obs: Mapping[str, np.ndarray], obs_time: float) -> np.ndarray:
        start = self.start_index(obs_time)
        idx = start + np.arange(self.chunk_length)
        idx = idx % self.length if self.loop else np.clip(idx, 0, self.length - 1)
        return self.actions[idx].copy()


def available_policies() -> list[str]:
    """Built-in kinds plus the names registered in the ``diffog_ros.policies`` entry-point group."""
    return list(BUILTIN) + sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_policy(kind: str, checkpoint: str = "", **options: Any) -> Policy:
    """Build a policy of ``kind`` (see module docstring); ValueError for unknown kinds."""
    device = options.pop("device", "cpu")
    if kind == "diffusion":
        return DiffusionRunner(
            checkpoint, device=device, ddim_steps=options.get("ddim_steps") or None
        )
    if kind == "leto":
        return LetoRunner(checkpoint, device=device)
    if kind == "replay":
        return ReplayPolicy(
            checkpoint,
            chunk_length=int(options.get("chunk_length", 16)),
            dt=options.get("dt") or None,
            action_names=options.get("action_names") or None,
            loop=bool(options.get("loop", False)),
        )
    eps = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if kind not in eps:
        raise ValueError(f"unknown policy type {kind!r}; available: {available_policies()}")
    policy = eps[kind].load()(checkpoint=checkpoint, device=device, **options)
    missing = [
        a
        for a in ("action_names", "n_obs_steps", "chunk_length", "predict")
        if not hasattr(policy, a)
    ]
    if missing:
        raise ValueError(f"policy {kind!r} from {eps[kind].value} lacks {missing}")
    return policy
