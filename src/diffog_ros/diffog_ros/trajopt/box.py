"""Fast exact path: the trajectory QP as a box-constrained QP in difference variables.

When only first-difference and continuity bounds apply (DiffOG eq. 7 and Sec. V-D, LeTO eq. 8 and 11),
the change of variables, per continuous dim j,

    z_{0,j} = y_{0,j} - prev_j  (with prev)   or   z_{0,j} = y_{0,j}  (without),
    z_{k,j} = y_{k,j} - y_{k-1,j},  k >= 1,

i.e. y = P z + b with P a per-dim cumulative sum over time (identity on the other dims) and b = prev on
the continuous dims, turns every constraint row into a simple bound on one coordinate of z:

    minimise 1/2 z^T H_z z + g_z^T z   s.t.  l <= z <= u  (on the bounded coordinates)
    H_z = P^T Q P + alpha * diag(1 on z_{k>=1, j in S})      (the smoothing term is diagonal in z)
    g_z = P^T (Q b + q).

That box QP is solved by a primal-dual active-set method (Hintermueller, Ito & Kunisch 2003): each
iteration solves the equality-constrained system on the guessed active set exactly (a Cholesky solve),
and stops when the active set repeats. At that point the KKT conditions hold exactly: active
coordinates sit on their bounds (so every bound holds to rounding), inactive ones are inside, and the
multipliers have the right signs. Elements that do not settle within the iteration budget are handed to
the exact general method by the caller, never returned approximately.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from diffog_ros.trajopt.spec import TrajOptSpec

MAX_ITERATIONS = 40


@dataclass
class BoxProblem:
    """The z-space problem for a batch (float64)."""

    h: torch.Tensor  # [B, n, n]
    g: torch.Tensor  # [B, n]
    lower: torch.Tensor  # [n] (-inf where free)
    upper: torch.Tensor  # [n] (+inf where free)
    base: torch.Tensor  # [B, n]: b, so that y = P z + b
    t_len: int
    d_len: int
    mask: torch.Tensor  # [D] bool: the continuous dims


def _rev_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """sum_{i >= k} x_i along ``dim`` (total - inclusive prefix + own term; no flips)."""
    return x.sum(dim, keepdim=True) - torch.cumsum(x, dim) + x


def apply_p(z: torch.Tensor, mask: torch.Tensor, t_len: int) -> torch.Tensor:
    """P z for z [B, n]: cumulative sum over time on the continuous dims."""
    zz = z.reshape(z.shape[0], t_len, -1)
    return torch.where(mask, torch.cumsum(zz, dim=1), zz).reshape(z.shape)


def apply_pt(w: torch.Tensor, mask: torch.Tensor, t_len: int) -> torch.Tensor:
    """P^T w for w [B, n]: reverse cumulative sum over time on the continuous dims."""
    ww = w.reshape(w.shape[0], t_len, -1)
    return torch.where(mask, _rev_cumsum(ww, 1), ww).reshape(w.shape)


def congruence(q: torch.Tensor, mask: torch.Tensor, t_len: int) -> torch.Tensor:
    """P^T Q P for Q [B, n, n] in O(n^2) (two reverse cumulative sums)."""
    b, n, _ = q.shape
    d_len = n // t_len
    q5 = q.reshape(b, t_len, d_len, t_len, d_len)
    col = mask.view(1, 1, 1, 1, d_len)
    q5 = torch.where(col, _rev_cumsum(q5, 3), q5)  # Q P
    row = mask.view(1, 1, d_len, 1, 1)
    q5 = torch.where(row, _rev_cumsum(q5, 1), q5)  # P^T (Q P)
    return q5.reshape(b, n, n)


def build(
    spec: TrajOptSpec, q_mat: torch.Tensor, q_vec: torch.Tensor, prev: torch.Tensor | None
) -> BoxProblem:
    """Form H_z, g_z, the bounds and the offset b (keeps the autograd graph of Q, q and prev)."""
    t_len, d_len = spec.horizon, spec.action_dim
    batch = q_vec.shape[0]
    mask = torch.as_tensor(spec.selection_mask())
    if q_mat.shape[0] != batch:
        q_mat = q_mat.expand(batch, -1, -1)
    h = congruence(q_mat, mask, t_len)
    # Smoothing (DiffOG eq. 6 / LeTO eq. 4): alpha/2 * sum_k ||S(y_{k+1}-y_k)||^2 = alpha/2 * sum ||z_{k>=1,S}||^2.
    smooth = torch.zeros(t_len, d_len, dtype=torch.float64)
    smooth[1:, mask] = spec.smooth_weight
    h = h + torch.diag_embed(smooth.reshape(-1).expand(batch, -1))

    if prev is not None:
        base = torch.where(mask, prev.unsqueeze(1), torch.zeros((), dtype=torch.float64))
        base = base.expand(batch, t_len, d_len).reshape(batch, -1)
    else:
        base = torch.zeros(batch, t_len * d_len, dtype=torch.float64)
    g = apply_pt(torch.bmm(q_mat, base.unsqueeze(-1)).squeeze(-1) + q_vec, mask, t_len)

    lower = torch.full((t_len, d_len), -torch.inf, dtype=torch.float64)
    upper = torch.full((t_len, d_len), torch.inf, dtype=torch.float64)
    lo_d = torch.tensor(spec.lo_delta, dtype=torch.float64)
    hi_d = torch.tensor(spec.hi_delta, dtype=torch.float64)
    first = 0 if prev is not None else 1  # z_0 is bounded only by the continuity constraint
    lower[first:, mask] = lo_d
    upper[first:, mask] = hi_d
    return BoxProblem(h, g, lower.reshape(-1), upper.reshape(-1), base, t_len, d_len, mask)


def to_y(prob: BoxProblem, z: torch.Tensor) -> torch.Tensor:
    """y = P z + b."""
    return apply_p(z, prob.mask, prob.t_len) + prob.base


def z_coordinate_of_rows(spec: TrajOptSpec, with_prev: bool) -> torch.Tensor:
    """For constraint rows of blocks 1-2 (see constraints.py), the index of the z coordinate they bound."""
    dims = torch.as_tensor(spec.continuous_dims, dtype=torch.long)
    d_len = spec.action_dim
    diff = [(k + 1) * d_len + dims for k in range(spec.horizon - 1)]
    parts = diff + ([dims] if with_prev else [])
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


@dataclass
class ActiveSetSolution:
    """Result of the active-set iterations for a batch (no autograd graph)."""

    z: torch.Tensor  # [B, n]
    at_upper: torch.Tensor  # [B, n] bool
    at_lower: torch.Tensor  # [B, n] bool
    converged: torch.Tensor  # [B] bool: the active set repeated, so the KKT conditions hold exactly
    chol: torch.Tensor  # [B, n, n] Cholesky factor of the masked matrix M (see factor_solve)


def _fixed_values(at_upper, at_lower, lower, upper) -> torch.Tensor:
    zero = torch.zeros((), dtype=lower.dtype)
    value = torch.where(at_upper, upper, torch.where(at_lower, lower, zero))
    return torch.where(at_upper | at_lower, value, zero)


def factor_solve(h, g, at_upper, at_lower, lower, upper) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve with the active coordinates fixed at their bounds; return (z, factor of M).

    Inactive block: H_II z_I = -g_I - H_IA z_A; active block: z_A = bounds. Written as one batched
    system M z = r with M = [H_II 0; 0 I] (in place, by masks), so elements with different active
    sets share one batched Cholesky. For a batch of one, only H_II is factored and the factor of M
    (which is H_II's factor scattered into the free rows and columns, identity elsewhere) is formed.
    """
    active = at_upper | at_lower
    z_act = _fixed_values(at_upper, at_lower, lower, upper)
    rhs = -g - torch.bmm(h, z_act.unsqueeze(-1)).squeeze(-1)
    if h.shape[0] == 1:
        free = torch.nonzero(~active[0]).flatten()
        chol = torch.eye(h.shape[1], dtype=h.dtype).unsqueeze(0)
        z = z_act.clone()
        if free.numel():
            h_ii = h[0].index_select(0, free).index_select(1, free)
            c_ii, info = torch.linalg.cholesky_ex(h_ii)
            _check(info)
            z[0, free] = torch.cholesky_solve(rhs[0, free].unsqueeze(-1), c_ii).squeeze(-1)
            chol[0, free.unsqueeze(1), free.unsqueeze(0)] = c_ii
        return z, chol
    free = (~active).to(h.dtype)
    m = h * free.unsqueeze(-1) * free.unsqueeze(-2) + torch.diag_embed(active.to(h.dtype))
    chol, info = torch.linalg.cholesky_ex(m)
    _check(info)
    z = torch.cholesky_solve(torch.where(active, z_act, rhs).unsqueeze(-1), chol).squeeze(-1)
    return z, chol


def _check(info: torch.Tensor) -> None:
    if bool((info != 0).any()):
        raise FloatingPointError("reduced KKT matrix lost positive definiteness")


def pdas(prob: BoxProblem, max_iterations: int = MAX_ITERATIONS) -> ActiveSetSolution:
    """Primal-dual active-set iterations (Hintermueller, Ito & Kunisch 2003), no autograd.

    KKT of the box QP: H z + g + mu = 0, mu >= 0 where z = u, mu <= 0 where z = l, mu = 0 inside.
    Each iteration guesses the active sets from z + mu / diag(H), solves with them fixed, and
    recomputes mu; an element is done when its guess repeats. Only unfinished elements are
    refactored.
    """
    h, g = prob.h.detach(), prob.g.detach()
    batch, n = g.shape
    lower = prob.lower.expand(batch, n)
    upper = prob.upper.expand(batch, n)
    diag = torch.diagonal(h, dim1=-2, dim2=-1)
    at_upper = torch.zeros(batch, n, dtype=torch.bool)
    at_lower = torch.zeros(batch, n, dtype=torch.bool)
    z, chol = factor_solve(h, g, at_upper, at_lower, lower, upper)  # unconstrained minimiser
    mu = torch.zeros_like(z)
    converged = torch.zeros(batch, dtype=torch.bool)
    todo = torch.arange(batch)
    for iteration in range(max_iterations + 1):
        trial = z[todo] + mu[todo] / diag[todo]
        new_upper = trial > upper[todo]
        new_lower = trial < lower[todo]
        same = (new_upper == at_upper[todo]).all(1) & (new_lower == at_lower[todo]).all(1)
        converged[todo[same]] = True
        keep = ~same
        todo, new_upper, new_lower = todo[keep], new_upper[keep], new_lower[keep]
        if todo.numel() == 0 or iteration == max_iterations:
            break
        at_upper[todo], at_lower[todo] = new_upper, new_lower
        h_t, g_t = h[todo], g[todo]
        z_t, chol_t = factor_solve(h_t, g_t, new_upper, new_lower, lower[todo], upper[todo])
        z[todo], chol[todo] = z_t, chol_t
        grad = torch.bmm(h_t, z_t.unsqueeze(-1)).squeeze(-1) + g_t
        mu[todo] = torch.where(new_upper | new_lower, -grad, torch.zeros((), dtype=z.dtype))
    return ActiveSetSolution(z, at_upper, at_lower, converged, chol)


class BoxQPFunction(torch.autograd.Function):
    """y(Q, q, prev) for the box-structured QP, with the implicit-differentiation backward.

    Forward runs ``solver(Q, q, prev) -> (BoxProblem, ActiveSetSolution)`` without a graph. Backward
    differentiates the KKT system on the optimal active set (OptNet; DiffOG Remark 2), reusing the
    forward factor of M = [H_II 0; 0 I]. With y = P z + b, H_z = P^T Q P (+ diag), g_z = P^T (Q b + q):

        w = M^{-1} (P^T dL/dy restricted to I),   w_y = P w,
        dL/dq = -w_y,   dL/dQ = -sym(w_y y^T),   dL/dprev_S = sum_k (dL/dy_k - (Q w_y)_k)_S.
    """

    @staticmethod
    def forward(ctx, q_mat, q_vec, prev, solver):  # noqa: D102
        prob, sol = solver(q_mat, q_vec, prev)
        y = to_y(prob, sol.z)
        free = (~(sol.at_upper | sol.at_lower)).to(y.dtype)
        ctx.save_for_backward(q_mat, y, sol.chol, free)
        ctx.mask, ctx.t_len = prob.mask, prob.t_len
        ctx.has_prev = prev is not None
        return y

    @staticmethod
    def backward(ctx, grad_y):  # noqa: D102
        q_mat, y, chol, free = ctx.saved_tensors
        mask, t_len = ctx.mask, ctx.t_len
        grad_z = apply_pt(grad_y, mask, t_len) * free
        w = torch.cholesky_solve(grad_z.unsqueeze(-1), chol).squeeze(-1) * free
        w_y = apply_p(w, mask, t_len)
        grad_q_mat = grad_q_vec = grad_prev = None
        if ctx.needs_input_grad[0]:
            outer = w_y.unsqueeze(-1) * y.unsqueeze(-2)
            grad_q_mat = -0.5 * (outer + outer.transpose(-1, -2))
            if q_mat.shape[0] != y.shape[0]:
                grad_q_mat = grad_q_mat.sum(0, keepdim=True)
        if ctx.needs_input_grad[1]:
            grad_q_vec = -w_y
        if ctx.has_prev and ctx.needs_input_grad[2]:
            q_w = torch.bmm(q_mat.expand(y.shape[0], -1, -1), w_y.unsqueeze(-1)).squeeze(-1)
            per_step = (grad_y - q_w).reshape(y.shape[0], t_len, -1).sum(1)
            grad_prev = torch.where(mask, per_step, torch.zeros((), dtype=y.dtype))
        return grad_q_mat, grad_q_vec, grad_prev, None


# ------------------------------------------------------------------------------- batch of one
@dataclass
class SingleSolution:
    """Batch-of-one solution from :func:`solve_single` (numpy, float64)."""

    y: np.ndarray  # [n]
    z: np.ndarray  # [n]
    at_upper: np.ndarray  # [n] bool
    at_lower: np.ndarray  # [n] bool
    converged: bool
    h: np.ndarray  # [n, n] H_z
    g: np.ndarray  # [n]
    lower: np.ndarray  # [n]
    upper: np.ndarray  # [n]


@lru_cache(maxsize=64)
def _single_constants(spec: TrajOptSpec, with_prev: bool):
    """Per-spec constants for the batch-of-one path: mask, smoothing diagonal, z bounds."""
    mask = spec.selection_mask()
    smooth = np.zeros((spec.horizon, spec.action_dim))
    smooth[1:, mask] = spec.smooth_weight
    lower = np.full((spec.horizon, spec.action_dim), -np.inf)
    upper = np.full((spec.horizon, spec.action_dim), np.inf)
    first = 0 if with_prev else 1
    lower[first:, mask] = spec.lo_delta
    upper[first:, mask] = spec.hi_delta
    return mask, smooth.reshape(-1), lower.reshape(-1), upper.reshape(-1)


def _np_rev_cumsum(x: np.ndarray, axis: int) -> np.ndarray:
    return x.sum(axis=axis, keepdims=True) - np.cumsum(x, axis=axis) + x


def _chol_solve(mat: torch.Tensor, rhs: np.ndarray) -> np.ndarray:
    """Solve an SPD system with torch's LAPACK (numpy's may be pinned to a slow generic kernel)."""
    chol, info = torch.linalg.cholesky_ex(mat)
    _check(info)
    return torch.cholesky_solve(torch.from_numpy(rhs).unsqueeze(-1), chol).squeeze(-1).numpy()


def solve_single(
    spec: TrajOptSpec,
    q_mat: np.ndarray,
    q_vec: np.ndarray,
    prev: np.ndarray | None,
    max_iterations: int = MAX_ITERATIONS,
) -> SingleSolution:
    """The box QP for one element without autograd (the low-latency inference path).

    Same mathematics as :func:`build` + :func:`pdas`; each iteration factors only H_II.
    """
    t_len, d_len, n = spec.horizon, spec.action_dim, spec.n
    mask, smooth, lower, upper = _single_constants(spec, prev is not None)
    q5 = q_mat.reshape(t_len, d_len, t_len, d_len)
    q5 = np.where(mask[None, None, None, :], _np_rev_cumsum(q5, 2), q5)  # Q P
    q5 = np.where(mask[None, :, None, None], _np_rev_cumsum(q5, 0), q5)  # P^T Q P
    h = q5.reshape(n, n).copy()
    h[np.diag_indices(n)] += smooth
    if prev is not None:
        base = np.where(mask[None, :], prev[None, :], 0.0).repeat(t_len, 0).reshape(-1)
    else:
        base = np.zeros(n)
    w = (q_mat @ base + q_vec).reshape(t_len, d_len)
    g = np.where(mask[None, :], _np_rev_cumsum(w, 0), w).reshape(-1)

    diag = h.diagonal().copy()
    at_upper = np.zeros(n, dtype=bool)
    at_lower = np.zeros(n, dtype=bool)
    h_t = torch.from_numpy(h)
    z = _chol_solve(h_t, -g)
    mu = np.zeros(n)
    converged = False
    for _ in range(max_iterations + 1):
        trial = z + mu / diag
        new_upper = trial > upper
        new_lower = trial < lower
        if np.array_equal(new_upper, at_upper) and np.array_equal(new_lower, at_lower):
            converged = True
            break
        at_upper, at_lower = new_upper, new_lower
        active = at_upper | at_lower
        z = np.where(at_upper, upper, np.where(at_lower, lower, 0.0))
        z[~active] = 0.0
        free = np.flatnonzero(~active)
        if free.size:
            free_t = torch.from_numpy(free)
            h_rows = h_t.index_select(0, free_t)
            rhs = -g[free] - torch.mv(h_rows, torch.from_numpy(z)).numpy()
            z[free] = _chol_solve(h_rows.index_select(1, free_t), rhs)
        mu = np.where(active, -(torch.mv(h_t, torch.from_numpy(z)).numpy() + g), 0.0)
    zz = z.reshape(t_len, d_len)
    y = np.where(mask[None, :], np.cumsum(zz, 0), zz).reshape(-1) + base
    return SingleSolution(y, z, at_upper, at_lower, converged, h, g, lower, upper)
