"""The DiffOG layer (Xu et al., DiffOG Sec. II-C/II-D, V-C/V-D, Algorithm 1, Table IX).

Input: a chunk a [B, T, D] on the normalised scale (DiffOG applies its bounds there, Table VII).
Output: y* [B, T, D], the solution of (DiffOG eq. 6-7)::

    y* = argmin_y 1/2 y^T Q y + q^T y + alpha/2 ||A_diff S y||^2,   q = -a
         s.t. min_delta <= S(y_{k+1} - y_k) <= max_delta,  k = 0..T-2
              [inference only] min_delta <= S(y_0 - prev) <= max_delta          (Sec. V-D)

We pass q = -a so that with Q = I the problem tracks the raw chunk (the paper's "Q = -I" ablation,
Sec. VII-C, is this case written with the opposite sign convention).  Training minimises
eq. (10), L = E ||y* - a_target||^2, with a_target = the demonstrated chunk; the input is that same
chunk (dataset training) or the frozen base policy's chunk for the same observation (refine training).

Q variants (Table V ablation):

- ``transformer``: e_t = Encoder(a) (Fig. 3: per-step tokens, transformer encoder, mean pooling,
  LayerNorm, linear head) -> L -> Q by Algorithm 1 (:func:`spd_from_unconstrained`).  The head
  produces only the n(n+1)/2 lower-triangle entries, since step 5 zeroes the rest anyway.
- ``static``: Q = I, nothing is learned.
- ``direct``: one learned unconstrained L (no network), Q = Algorithm 1 (L), shared by all inputs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from diffog_ros.trajopt import TrajOptSpec, solve_qp, spd_from_unconstrained

VARIANTS = ("transformer", "static", "direct")


@dataclass
class DiffOGConfig:
    """DiffOG layer settings (Table IX defaults) stored in checkpoints."""

    horizon: int
    action_dim: int
    variant: str = "transformer"
    d_model: int = 256  # Table IX: embedding dim
    n_heads: int = 4  # Table IX
    n_layers: int = 2  # Table IX
    dim_feedforward: int = 256  # Table IX
    dropout: float = 0.1  # Table IX
    positional_embedding: bool = True
    head_init_std: float = 1e-3  # small head => Q ~ I at initialisation (well-conditioned start)
    eps: float = 1e-4  # Algorithm 1
    clamp: float = 10.0  # Algorithm 1
    backend: str = "fast"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.horizon < 1 or self.action_dim < 1:
            raise ValueError("horizon and action_dim must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def n(self) -> int:
        return self.horizon * self.action_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiffOGConfig:
        return cls(**dict(data))


class ChunkEncoder(nn.Module):
    """Transformer encoder over the chunk (DiffOG Fig. 3): a [B, T, D] -> e [B, n(n+1)/2]."""

    def __init__(self, cfg: DiffOGConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.action_dim, cfg.d_model)
        self.pos = (
            nn.Parameter(torch.zeros(1, cfg.horizon, cfg.d_model))
            if cfg.positional_embedding
            else None
        )
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.n_heads, cfg.dim_feedforward, cfg.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n * (cfg.n + 1) // 2)
        nn.init.normal_(self.head.weight, std=cfg.head_init_std)
        nn.init.zeros_(self.head.bias)
        if self.pos is not None:
            nn.init.normal_(self.pos, std=0.02)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        h = self.proj(a)
        if self.pos is not None:
            h = h + self.pos
        h = self.norm(self.encoder(h).mean(dim=1))  # mean pooling over the T tokens
        return self.head(h)


def tril_from_vector(v: torch.Tensor, n: int) -> torch.Tensor:
    """[B, n(n+1)/2] -> [B, n, n] with the values in the lower triangle (row-major)."""
    rows, cols = torch.tril_indices(n, n, device=v.device)
    out = v.new_zeros(v.shape[0], n, n)
    out[:, rows, cols] = v
    return out


class DiffOGLayer(nn.Module):
    """Learnable trajectory optimisation on normalised chunks (see module docstring).

    Args:
        cfg: layer settings.
        spec: the QP's bounds and alpha on the normalised scale (horizon/action_dim must match cfg).
    """

    def __init__(self, cfg: DiffOGConfig, spec: TrajOptSpec) -> None:
        super().__init__()
        if (spec.horizon, spec.action_dim) != (cfg.horizon, cfg.action_dim):
            raise ValueError(
                f"spec is {spec.horizon}x{spec.action_dim} but the layer is {cfg.horizon}x{cfg.action_dim}"
            )
        self.cfg = cfg
        self.spec = spec
        self.encoder = ChunkEncoder(cfg) if cfg.variant == "transformer" else None
        self.l_raw = nn.Parameter(torch.zeros(cfg.n, cfg.n)) if cfg.variant == "direct" else None
        self.last_solve_time = 0.0  # seconds spent in the last solve_qp call

    def q_matrix(self, a: torch.Tensor) -> torch.Tensor:
        """Q for each chunk: [B, n, n] (transformer) or a shared [n, n] (static, direct)."""
        n = self.cfg.n
        if self.encoder is not None:  # Algorithm 1 steps 1-7
            l_raw = tril_from_vector(self.encoder(a), n)
            return spd_from_unconstrained(l_raw, self.cfg.eps, self.cfg.clamp)
        if self.l_raw is not None:
            return spd_from_unconstrained(self.l_raw, self.cfg.eps, self.cfg.clamp)
        return torch.eye(n, dtype=a.dtype, device=a.device)

    def _solve(self, a: torch.Tensor, prev: torch.Tensor | None, spec: TrajOptSpec) -> torch.Tensor:
        if a.ndim != 3 or a.shape[1:] != (self.cfg.horizon, self.cfg.action_dim):
            raise ValueError(
                f"a must be [B, {self.cfg.horizon}, {self.cfg.action_dim}], got {tuple(a.shape)}"
            )
        q_mat = self.q_matrix(a)
        q = -a.reshape(a.shape[0], -1)  # q = -a (DiffOG eq. 6 with our sign convention)
        t0 = time.perf_counter()
        y = solve_qp(
            q_mat, q.to(q_mat.dtype), spec, prev=prev, backend=self.cfg.backend, q_is_spd=True
        )
        self.last_solve_time = time.perf_counter() - t0
        return y.reshape(a.shape).to(a.dtype)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """Training call (eq. 6-7 without continuity): a [B, T, D] -> y* [B, T, D]."""
        return self._solve(a, None, self.spec)

    def loss(self, a_in: torch.Tensor, a_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (10): mean squared ||y* - a_target||^2; returns (loss, y*)."""
        y = self(a_in)
        return F.mse_loss(y, a_target), y

    @torch.no_grad()
    def optimise(
        self, a: torch.Tensor, prev: torch.Tensor | None = None, spec: TrajOptSpec | None = None
    ) -> torch.Tensor:
        """Inference call (Sec. V-D): with the executed previous action ``prev`` [B, D] as anchor.

        ``spec`` (normalised scale) overrides the trained bounds/alpha, e.g. for time-varying
        constraints; the QP is solved in float64.
        """
        spec = self.spec if spec is None else spec
        if (spec.horizon, spec.action_dim) != (self.cfg.horizon, self.cfg.action_dim):
            raise ValueError(
                f"spec is {spec.horizon}x{spec.action_dim} but the layer is "
                f"{self.cfg.horizon}x{self.cfg.action_dim}"
            )
        a64 = a.to(torch.float64)
        q_mat = self.q_matrix(a.to(torch.float32) if self.encoder is not None else a64).to(
            torch.float64
        )
        t0 = time.perf_counter()
        y = solve_qp(
            q_mat,
            -a64.reshape(a.shape[0], -1),
            spec,
            prev=None if prev is None else prev.to(torch.float64),
            backend=self.cfg.backend,
            q_is_spd=True,
        )
        self.last_solve_time = time.perf_counter() - t0
        return y.reshape(a.shape)


def bound_activity(y: torch.Tensor, spec: TrajOptSpec, rel_tol: float = 1e-6) -> float:
    """Fraction of the first-difference bounds of eq. (7) that are active in y [B, T, D]."""
    if spec.horizon < 2 or spec.n_continuous == 0:
        return 0.0
    dims = list(spec.continuous_dims)
    d = (y[:, 1:, dims] - y[:, :-1, dims]).detach().to(torch.float64)
    hi = torch.as_tensor(spec.hi_delta.copy(), dtype=torch.float64, device=d.device)
    lo = torch.as_tensor(spec.lo_delta.copy(), dtype=torch.float64, device=d.device)
    tol = rel_tol * (hi - lo)
    active = ((hi - d) <= tol) | ((d - lo) <= tol)
    return float(active.double().mean())
