"""LeTO (Xu & She, T-ASE 2024, Sec. III): CNN / low-dim + LSTM encoder and a DTO layer.

Encoder (Sec. III-B): e_t, h_{t+1} = E_theta(o_t, h_t) with e_t in R^{T*D} (T = predicted steps).
DTO layer (Sec. III-C, eq. 4-8), on the normalised action scale::

    y*_t = argmin_y 1/2 y^T Q y + e_t^T y + alpha/2 ||A_diff S y||^2
           s.t. min_delta <= S(y_{k+1} - y_k) <= max_delta            (eq. 8)
                min_value <= S y_k <= max_value  (optional)            (eq. 7)
                [deployment] min_delta <= S(y_0 - prev) <= max_delta   (Sec. III-D)

with Q = L L^T + eps I from one directly learned L (we build it with DiffOG Algorithm 1, which
gives the same family with a positive diagonal).  Training: sequences of ``seq_len`` steps from a
zero LSTM state, MSE between y*_t and the demonstrated chunk.  Deployment (Sec. III-D): the LSTM
is unrolled one step per policy step and its state is refreshed every ``seq_len`` steps.

For joint-position actions (ALOHA) the "velocity" of the paper is the per-step change of the
chunk, i.e. the same first-difference bounds DiffOG uses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from diffog_ros.learning.encoders import EncoderConfig, ObservationEncoder
from diffog_ros.trajopt import TrajOptSpec, solve_qp, spd_from_unconstrained


@dataclass
class LetoConfig:
    """LeTO architecture (stored in checkpoints)."""

    action_dim: int
    encoder: EncoderConfig
    horizon: int = 16  # T_p
    seq_len: int = 10  # T_s: training sequence length and deployment refresh period
    stride: int = 1  # env steps between consecutive LSTM steps
    lstm_hidden: int = 256
    lstm_layers: int = 2
    eps: float = 1e-4
    clamp: float = 10.0
    backend: str = "fast"

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = EncoderConfig.from_dict(self.encoder)
        for name in ("action_dim", "horizon", "seq_len", "stride", "lstm_hidden", "lstm_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def n(self) -> int:
        return self.horizon * self.action_dim

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder"] = self.encoder.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LetoConfig:
        return cls(**dict(data))


class DTOLayer(nn.Module):
    """LeTO's differentiable trajectory optimisation layer with one learned Q (eq. 4-8)."""

    def __init__(
        self, n: int, eps: float = 1e-4, clamp: float = 10.0, backend: str = "fast"
    ) -> None:
        super().__init__()
        self.l_raw = nn.Parameter(torch.zeros(n, n))  # Q ~ I at initialisation
        self.eps, self.clamp, self.backend = eps, clamp, backend
        self.last_solve_time = 0.0

    def q_matrix(self) -> torch.Tensor:
        """Q = L L^T + eps I (LeTO Sec. III-C), [n, n]."""
        return spd_from_unconstrained(self.l_raw, self.eps, self.clamp)

    def forward(
        self, e: torch.Tensor, spec: TrajOptSpec, prev: torch.Tensor | None = None
    ) -> torch.Tensor:
        """e [B, n] -> y* [B, n] (float64 QP, returned in e's dtype)."""
        q_mat = self.q_matrix().to(torch.float64)
        t0 = time.perf_counter()
        y = solve_qp(
            q_mat,
            e.to(torch.float64),
            spec,
            prev=None if prev is None else prev.to(torch.float64),
            backend=self.backend,
            q_is_spd=True,
        )
        self.last_solve_time = time.perf_counter() - t0
        return y.to(e.dtype)


class LetoPolicy(nn.Module):
    """CNN/low-dim + LSTM encoder -> e_t -> DTO layer (normalised tensors in and out)."""

    def __init__(self, cfg: LetoConfig, spec: TrajOptSpec) -> None:
        super().__init__()
        if (spec.horizon, spec.action_dim) != (cfg.horizon, cfg.action_dim):
            raise ValueError(
                f"spec is {spec.horizon}x{spec.action_dim} but LeTO predicts {cfg.horizon}x{cfg.action_dim}"
            )
        self.cfg = cfg
        self.spec = spec
        self.encoder = ObservationEncoder(cfg.encoder)
        self.lstm = nn.LSTM(
            self.encoder.feature_dim, cfg.lstm_hidden, cfg.lstm_layers, batch_first=True
        )
        self.head = nn.Linear(cfg.lstm_hidden, cfg.n)
        self.dto = DTOLayer(cfg.n, cfg.eps, cfg.clamp, cfg.backend)

    def embed(
        self,
        obs: Mapping[str, torch.Tensor],
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """obs [B, S, ...] -> (e [B, S, n], LSTM state) (Sec. III-B)."""
        h, state = self.lstm(self.encoder(obs), state)
        return self.head(h), state

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """MSE between y*_t and the demonstrated chunks; batch action [B, S, T, D]; returns (loss, y)."""
        target = batch["action"]
        b, s = target.shape[:2]
        e, _ = self.embed(batch["obs"])
        y = self.dto(e.reshape(b * s, -1), self.spec).reshape(target.shape)
        return F.mse_loss(y, target), y

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.compute_loss(batch)[0]


class LetoRollout:
    """Deployment state (Sec. III-D): one LSTM step per call, refreshed every ``seq_len`` calls."""

    def __init__(self, policy: LetoPolicy) -> None:
        self.policy = policy
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.steps = 0

    def reset(self) -> None:
        self.state, self.steps = None, 0

    @torch.no_grad()
    def embed(self, obs_step: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """obs [B, 1, ...] (normalised) -> e_t [B, T, D]; keeps and refreshes the LSTM state."""
        if self.steps % self.policy.cfg.seq_len == 0:
            self.state = None  # refresh the hidden state every T_s steps
        e, self.state = self.policy.embed(obs_step, self.state)
        self.steps += 1
        return e[:, -1].reshape(-1, self.policy.cfg.horizon, self.policy.cfg.action_dim)

    @torch.no_grad()
    def act(
        self,
        obs_step: Mapping[str, torch.Tensor],
        prev: torch.Tensor | None,
        spec: TrajOptSpec | None = None,
    ) -> torch.Tensor:
        """Full LeTO step with the continuity constraint: normalised y* [B, T, D]."""
        e = self.embed(obs_step)
        y = self.policy.dto(e.reshape(e.shape[0], -1), spec or self.policy.spec, prev)
        return y.reshape(e.shape)
