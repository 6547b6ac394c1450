"""Symmetric positive definite Q from an unconstrained matrix (DiffOG Algorithm 1, LeTO Sec. III-C)."""

from __future__ import annotations

import torch

DEFAULT_EPS = 1e-4  # DiffOG Algorithm 1: epsilon = 1e-4
DEFAULT_CLAMP = 10.0  # DiffOG Algorithm 1: clamp to [-10, 10]


def spd_from_unconstrained(
    l_raw: torch.Tensor, eps: float = DEFAULT_EPS, clamp: float = DEFAULT_CLAMP
) -> torch.Tensor:
    """Build an SPD matrix Q from an unconstrained square matrix (DiffOG Algorithm 1, steps 2-7).

    Args:
        l_raw: [..., n, n] unconstrained values (the reshaped encoder output e_t, step 2).
        eps: the small constant epsilon of steps 3 and 6.
        clamp: the clamp range of step 4 ([-clamp, clamp]).

    Returns:
        Q: [..., n, n], symmetric positive definite (smallest eigenvalue >= eps).
    """
    if l_raw.ndim < 2 or l_raw.shape[-1] != l_raw.shape[-2]:
        raise ValueError(f"l_raw must be [..., n, n], got shape {tuple(l_raw.shape)}")
    if eps <= 0 or clamp <= 0:
        raise ValueError(f"eps and clamp must be > 0, got eps={eps}, clamp={clamp}")
    diag = torch.diagonal(l_raw, dim1=-2, dim2=-1)
    # step 3: L_ii <- exp(L_ii) + eps
    lower = l_raw - torch.diag_embed(diag) + torch.diag_embed(torch.exp(diag) + eps)
    lower = lower.clamp(-clamp, clamp)  # step 4: prevent numerical explosion
    lower = torch.tril(lower)  # step 5: zero the strictly upper triangle
    eye = torch.eye(l_raw.shape[-1], dtype=l_raw.dtype, device=l_raw.device)
    q = lower @ lower.transpose(-1, -2) + eps * eye  # step 6: Q = L L^T + eps I
    return 0.5 * (q + q.transpose(-1, -2))  # step 7: enforce symmetry
