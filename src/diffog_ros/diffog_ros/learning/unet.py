"""Conditional 1-D temporal U-Net with FiLM conditioning (Diffusion Policy's noise-prediction network).

Shapes: sample x [B, T, D] (T = horizon, D = action dim), diffusion step k [B], global condition
c [B, G] (the flattened observation features).  The step embedding and c are concatenated and
turned, in every residual block, into a per-channel scale and bias (FiLM)::

    h = GN-Mish(Conv(x));  h = scale(c, k) * h + bias(c, k);  h = GN-Mish(Conv(h));  out = h + res(x)

The temporal axis is halved ``len(down_dims) - 1`` times, so T must be divisible by
``2 ** (len(down_dims) - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class SinusoidalPosEmb(nn.Module):
    """Diffusion step k [B] -> [B, dim] sinusoidal embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.dim = dim

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freq = torch.exp(
            torch.arange(half, device=k.device, dtype=torch.float32)
            * (-math.log(10000.0) / (half - 1))
        )
        arg = k.float()[:, None] * freq[None, :]
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish on [B, C, T]."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2),
            nn.GroupNorm(groups, c_out),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CondResBlock1d(nn.Module):
    """Residual block with FiLM: the condition sets a per-channel scale and bias."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel, groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.res = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.c_out = c_out

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)  # [B, C, 1] each
        h = self.block2(scale * h + bias)
        return h + self.res(x)


class ConditionalUnet1D(nn.Module):
    """Noise-prediction U-Net: (x [B, T, D], k [B], c [B, G]) -> [B, T, D]."""

    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        step_embed_dim: int = 256,
        down_dims: Sequence[int] = (256, 512, 1024),
        kernel_size: int = 5,
        n_groups: int = 8,
    ) -> None:
        super().__init__()
        if not down_dims:
            raise ValueError("down_dims must not be empty")
        for c in down_dims:
            if c % n_groups:
                raise ValueError(
                    f"every down_dim must be divisible by n_groups={n_groups}, got {c}"
                )
        self.action_dim = action_dim
        self.n_levels = len(down_dims)
        self.step_encoder = nn.Sequential(
            SinusoidalPosEmb(step_embed_dim),
            nn.Linear(step_embed_dim, 4 * step_embed_dim),
            nn.Mish(),
            nn.Linear(4 * step_embed_dim, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim
        chans = [action_dim, *down_dims]
        pairs = list(zip(chans[:-1], chans[1:], strict=True))

        def res(a: int, b: int) -> CondResBlock1d:
            return CondResBlock1d(a, b, cond_dim, kernel_size, n_groups)

        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(pairs):
            last = i == len(pairs) - 1
            sample = nn.Identity() if last else nn.Conv1d(b, b, 3, 2, 1)
            self.down.append(nn.ModuleList([res(a, b), res(b, b), sample]))
        mid = down_dims[-1]
        self.mid = nn.ModuleList([res(mid, mid), res(mid, mid)])
        self.up = nn.ModuleList()
        for a, b in reversed(pairs[1:]):  # every up level undoes one down-sampling
            self.up.append(
                nn.ModuleList([res(2 * b, a), res(a, a), nn.ConvTranspose1d(a, a, 4, 2, 1)])
            )
        self.final = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
            nn.Conv1d(down_dims[0], action_dim, 1),
        )

    def forward(self, x: torch.Tensor, k: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t_len = x.shape[1]
        if t_len % (2 ** (self.n_levels - 1)):
            raise ValueError(
                f"horizon {t_len} must be divisible by {2 ** (self.n_levels - 1)} "
                f"({self.n_levels} U-Net levels)"
            )
        if k.ndim == 0:
            k = k.expand(x.shape[0])
        c = torch.cat([self.step_encoder(k), cond], dim=-1)
        h = x.transpose(1, 2)  # [B, D, T]
        skips = []
        for r1, r2, down in self.down:
            h = r2(r1(h, c), c)
            skips.append(h)
            h = down(h)
        for r in self.mid:
            h = r(h, c)
        for r1, r2, up in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(r2(r1(h, c), c))
        return self.final(h).transpose(1, 2)
