"""Diffusion Policy (Chi et al., RSS 2023): DDPM training, DDIM inference, our own schedulers.

Noise schedule (Ho et al. 2020), with abar_k = prod_{i<=k} (1 - beta_i)::

    x_k = sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps,   eps ~ N(0, I)            (forward process)
    loss = || eps_theta(x_k, k, c) - eps ||^2       (prediction_type='epsilon')
         = || x0_theta(x_k, k, c) - x_0 ||^2        (prediction_type='sample')

DDIM (Song et al. 2021, eq. 12 with eta = 0) over a sub-sequence k_1 > k_2 > ... of train steps::

    x0_hat = (x_k - sqrt(1 - abar_k) eps_hat) / sqrt(abar_k)
    x_{k'} = sqrt(abar_{k'}) x0_hat + sqrt(1 - abar_{k'}) eps_hat       (abar_{-1} = 1)

Shapes: obs dict of [B, n_obs, ...] (normalised low-dim, images in [0, 1]); actions [B, H, D]
normalised to [-1, 1].  The chunk handed to the controller is ``action[n_obs-1 : n_obs-1+n_action_steps]``
(the first predicted step is the current one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from diffog_ros.learning.encoders import EncoderConfig, ObservationEncoder
from diffog_ros.learning.unet import ConditionalUnet1D

BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")
PREDICTION_TYPES = ("epsilon", "sample")


def make_betas(num_steps: int, schedule: str) -> torch.Tensor:
    """beta_1..beta_K (float64)."""
    if schedule == "linear":
        return torch.linspace(1e-4, 2e-2, num_steps, dtype=torch.float64)
    if schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021, cosine abar, beta capped at 0.999

        def abar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [
            min(1 - abar((i + 1) / num_steps) / abar(i / num_steps), 0.999)
            for i in range(num_steps)
        ]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {schedule!r}")


class NoiseScheduler:
    """DDPM forward process and deterministic DDIM sampling steps."""

    def __init__(
        self,
        num_train_steps: int = 100,
        beta_schedule: str = "squaredcos_cap_v2",
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
    ) -> None:
        if num_train_steps < 1:
            raise ValueError(f"num_train_steps must be >= 1, got {num_train_steps}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
            )
        self.num_train_steps = num_train_steps
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        self.alphas_cumprod = torch.cumprod(1.0 - make_betas(num_train_steps, beta_schedule), 0)

    def _abar(self, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(like.device)[k].to(like.dtype)
        return a.reshape(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) noise (k: [B] long)."""
        a = self._abar(k, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise if self.prediction_type == "epsilon" else x0

    def ddim_timesteps(self, num_steps: int) -> list[int]:
        """Evenly spaced train steps, descending (``num_steps`` <= ``num_train_steps``)."""
        if not 1 <= num_steps <= self.num_train_steps:
            raise ValueError(f"DDIM steps must be in [1, {self.num_train_steps}], got {num_steps}")
        ratio = self.num_train_steps // num_steps
        return [i * ratio for i in reversed(range(num_steps))]

    def ddim_step(self, out: torch.Tensor, k: int, k_prev: int, x: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM update x_k -> x_{k_prev} (k_prev = -1 means the clean sample)."""
        a = self.alphas_cumprod[k].item()
        a_prev = self.alphas_cumprod[k_prev].item() if k_prev >= 0 else 1.0
        if self.prediction_type == "epsilon":
            eps = out
            x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        else:
            x0 = out
            eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
        if self.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
        return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps


@dataclass
class DiffusionConfig:
    """Architecture and sampling settings of a Diffusion Policy (stored in checkpoints)."""

    action_dim: int
    encoder: EncoderConfig
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    down_dims: list[int] = field(default_factory=lambda: [256, 512, 1024])
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 128
    num_train_steps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    ddim_steps: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = EncoderConfig.from_dict(self.encoder)
        if self.n_obs_steps < 1 or self.n_action_steps < 1:
            raise ValueError("n_obs_steps and n_action_steps must be >= 1")
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(
                f"n_obs_steps - 1 + n_action_steps must be <= horizon, got "
                f"{self.n_obs_steps} - 1 + {self.n_action_steps} > {self.horizon}"
            )
        if self.horizon % (2 ** (len(self.down_dims) - 1)):
            raise ValueError(
                f"horizon {self.horizon} must be divisible by 2**(len(down_dims)-1) = "
                f"{2 ** (len(self.down_dims) - 1)}"
            )
        if not 1 <= self.ddim_steps <= self.num_train_steps:
            raise ValueError(f"ddim_steps must be in [1, num_train_steps={self.num_train_steps}]")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder"] = self.encoder.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiffusionConfig:
        return cls(**dict(data))


class DiffusionPolicy(nn.Module):
    """Observation encoder + conditional U-Net + noise scheduler (normalised tensors in and out)."""

    def __init__(self, cfg: DiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ObservationEncoder(cfg.encoder)
        self.unet = ConditionalUnet1D(
            cfg.action_dim,
            cfg.n_obs_steps * self.encoder.feature_dim,
            cfg.step_embed_dim,
            cfg.down_dims,
            cfg.kernel_size,
            cfg.n_groups,
        )
        self.scheduler = NoiseScheduler(
            cfg.num_train_steps, cfg.beta_schedule, cfg.prediction_type, cfg.clip_sample
        )

    def condition(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """obs [B, n_obs, ...] -> global condition [B, n_obs * F]."""
        return self.encoder(obs).flatten(1)

    def compute_loss(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """DDPM loss on a batch {'obs': {...}, 'action': [B, H, D]} (normalised)."""
        x0 = batch["action"]
        cond = self.condition(batch["obs"])
        noise = torch.randn_like(x0)
        k = torch.randint(0, self.scheduler.num_train_steps, (x0.shape[0],), device=x0.device)
        pred = self.unet(self.scheduler.add_noise(x0, noise, k), k, cond)
        return F.mse_loss(pred, self.scheduler.target(x0, noise))

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.compute_loss(batch)

    @torch.no_grad()
    def sample(
        self,
        obs: Mapping[str, torch.Tensor],
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DDIM sampling: obs [B, n_obs, ...] -> normalised actions [B, H, D]."""
        cond = self.condition(obs)
        b = cond.shape[0]
        x = torch.randn(
            (b, self.cfg.horizon, self.cfg.action_dim),
            generator=generator,
            device=cond.device,
            dtype=cond.dtype,
        )
        ks = self.scheduler.ddim_timesteps(steps or self.cfg.ddim_steps)
        for i, k in enumerate(ks):
            kt = torch.full((b,), k, device=cond.device, dtype=torch.long)
            out = self.unet(x, kt, cond)
            x = self.scheduler.ddim_step(out, k, ks[i + 1] if i + 1 < len(ks) else -1, x)
        return x

    def chunk(self, actions: torch.Tensor) -> torch.Tensor:
        """The executable part [B, n_action_steps, D] of a predicted window [B, H, D]."""
        start = self.cfg.n_obs_steps - 1
        return actions[:, start : start + self.cfg.n_action_steps]
