"""Exact general method: Goldfarb-Idnani dual active set (quadprog) plus an exact KKT re-solve.

Used for problems with value or position bounds (LeTO eq. 6-7) and as the fallback of the fast path.
quadprog finds the optimal active set; the solution is then recomputed from the equality-constrained
KKT system on that set,

    [ H        C_A^T ] [ y      ]   [ -q  ]
    [ C_A      0     ] [ lambda ] = [ b_A ],

written with masks so a batch with different active sets shares one batched solve. That re-solve is
what carries gradients: differentiating the KKT conditions at the solution (OptNet's implicit
differentiation, DiffOG Remark 2) is exactly differentiating this linear system with the active set held.
"""

from __future__ import annotations

import numpy as np
import quadprog
import torch


class InfeasibleError(ValueError):
    """The constraints admit no solution."""


def active_rows(
    h_y: np.ndarray, q: np.ndarray, cmat: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve each batch element with quadprog; return (y, at_upper [B,m], at_lower [B,m]).

    h_y [B,n,n], q [B,n], cmat [m,n], lo/hi [B,m] (numpy float64; +-inf for open sides).
    """
    batch, m = lo.shape
    ys = np.empty_like(q)
    at_upper = np.zeros((batch, m), dtype=bool)
    at_lower = np.zeros((batch, m), dtype=bool)
    for b in range(batch):
        up_rows = np.flatnonzero(np.isfinite(hi[b]))
        lo_rows = np.flatnonzero(np.isfinite(lo[b]))
        # quadprog form: C^T x >= b. Upper sides as -C_r y >= -hi_r, lower sides as C_r y >= lo_r.
        c_all = np.concatenate([-cmat[up_rows], cmat[lo_rows]], axis=0)
        b_all = np.concatenate([-hi[b, up_rows], lo[b, lo_rows]])
        try:
            if c_all.shape[0]:
                sol = quadprog.solve_qp(h_y[b], -q[b], np.ascontiguousarray(c_all.T), b_all, 0)
            else:
                sol = quadprog.solve_qp(h_y[b], -q[b])
        except ValueError as exc:
            if "inconsistent" in str(exc):
                raise InfeasibleError(
                    f"the bounds admit no feasible chunk (batch element {b}): {exc}"
                ) from exc
            raise
        ys[b] = sol[0]
        iact = np.asarray(sol[5], dtype=np.int64)
        iact = iact[iact > 0] - 1  # 1-based, zero padded
        n_up = up_rows.size
        at_upper[b, up_rows[iact[iact < n_up]]] = True
        at_lower[b, lo_rows[iact[iact >= n_up] - n_up]] = True
    return ys, at_upper, at_lower


def kkt_solve(
    h_y: torch.Tensor,
    q: torch.Tensor,
    cmat: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    at_upper: torch.Tensor,
    at_lower: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solution y [B,n] and row multipliers lambda [B,m] on a fixed active set (differentiable)."""
    batch, n = q.shape
    m = cmat.shape[0]
    active = at_upper | at_lower
    act = active.to(h_y.dtype)
    bound = torch.where(at_upper, hi, torch.where(at_lower, lo, torch.zeros((), dtype=h_y.dtype)))
    bound = torch.where(active, bound, torch.zeros((), dtype=h_y.dtype))
    c_b = cmat.expand(batch, m, n)
    top = torch.cat([h_y.expand(batch, n, n), c_b.transpose(1, 2) * act.unsqueeze(1)], dim=2)
    bottom = torch.cat([c_b * act.unsqueeze(2), torch.diag_embed(1.0 - act)], dim=2)
    kkt = torch.cat([top, bottom], dim=1)
    rhs = torch.cat([-q, bound], dim=1)
    sol = torch.linalg.solve(kkt, rhs)
    return sol[:, :n], sol[:, n:]
