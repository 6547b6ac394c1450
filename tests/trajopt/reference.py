"""Independent reference for the trajectory QP: the dense problem built from the issue's formulas
(not from diffog_ros.trajopt.constraints) and solved by ProxSuite at tight tolerance."""

from __future__ import annotations

import numpy as np
import proxsuite
import torch

from diffog_ros.trajopt import TrajOptSpec, spd_from_unconstrained


def dense_problem(spec: TrajOptSpec, q_mat, q_vec, prev=None, position_start=None):
    """(H, g, C, lo, hi) of one batch element, straight from the formulation."""
    t_len, d_len, n = spec.horizon, spec.action_dim, spec.n
    dims = list(spec.continuous_dims)
    c = len(dims)
    sel = np.zeros((t_len * c, n))  # bold S = blkdiag(S, ..., S)
    for k in range(t_len):
        for i, j in enumerate(dims):
            sel[k * c + i, k * d_len + j] = 1.0
    a_diff = np.kron(np.eye(t_len - 1, t_len, 1) - np.eye(t_len - 1, t_len), np.eye(c))
    h = np.asarray(q_mat, dtype=np.float64) + spec.smooth_weight * sel.T @ a_diff.T @ a_diff @ sel
    rows, lo, hi = (
        [a_diff @ sel],
        [np.tile(spec.lo_delta, t_len - 1)],
        [np.tile(spec.hi_delta, t_len - 1)],
    )
    if prev is not None:
        p = np.asarray(prev, dtype=np.float64)[dims]
        rows.append(sel[:c])
        lo.append(p + spec.lo_delta)
        hi.append(p + spec.hi_delta)
    if spec.has_value_bounds:
        rows.append(sel)
        lo.append(np.tile(spec.lo_value, t_len))
        hi.append(np.tile(spec.hi_value, t_len))
    if spec.has_position_bounds:
        integ = np.kron(np.tril(np.ones((t_len - 1, t_len)), 0), np.eye(c)) * spec.position_dt
        p0 = np.asarray(position_start, dtype=np.float64)
        rows.append(integ @ sel)
        lo.append(np.tile(spec.lo_position - p0, t_len - 1))
        hi.append(np.tile(spec.hi_position - p0, t_len - 1))
    return (
        h,
        np.asarray(q_vec, dtype=np.float64),
        np.vstack(rows),
        np.concatenate(lo),
        np.concatenate(hi),
    )


def _proxsuite_one(h, g, c, lo, hi) -> np.ndarray:
    """ProxSuite at the tightest tolerance it reaches (ill-conditioned problems stall below ~1e-10)."""
    for eps in (1e-12, 1e-11, 1e-10, 1e-9):
        qp = proxsuite.proxqp.dense.QP(h.shape[0], 0, c.shape[0])
        qp.settings.eps_abs = eps
        qp.settings.eps_rel = 0.0
        qp.settings.max_iter = 20000
        qp.settings.verbose = False
        qp.init(h, g, None, None, c, lo, hi)
        qp.solve()
        if qp.results.info.status == proxsuite.proxqp.QPSolverOutput.PROXQP_SOLVED:
            return np.array(qp.results.x)
    raise AssertionError("ProxSuite did not solve the reference problem")


def proxsuite_solve(spec, q_mat, q_vec, prev=None, position_start=None) -> np.ndarray:
    """Batched reference solution [B, n] (float64)."""
    q_mat = torch.as_tensor(q_mat, dtype=torch.float64)
    q_vec = torch.as_tensor(q_vec, dtype=torch.float64)
    out = []
    for b in range(q_vec.shape[0]):
        qm = q_mat[b] if q_mat.ndim == 3 else q_mat
        h, g, c, lo, hi = dense_problem(
            spec,
            qm.numpy(),
            q_vec[b].numpy(),
            None if prev is None else torch.as_tensor(prev)[b].numpy(),
            None if position_start is None else torch.as_tensor(position_start)[b].numpy(),
        )
        out.append(_proxsuite_one(h, g, c, lo, hi))
    return np.stack(out)


def objective(spec, q_mat, q_vec, y) -> np.ndarray:
    out = []
    for b in range(y.shape[0]):
        qm = q_mat[b] if q_mat.ndim == 3 else q_mat
        hb, gb, *_ = dense_problem(spec, np.asarray(qm, dtype=np.float64), np.asarray(q_vec[b]))
        yb = np.asarray(y[b], dtype=np.float64)
        out.append(0.5 * yb @ hb @ yb + gb @ yb)
    return np.array(out)


def violation(spec, y, prev=None, position_start=None) -> float:
    """Largest bound violation of y [B, n] under the reference formulation."""
    worst = 0.0
    for b in range(y.shape[0]):
        _, _, c, lo, hi = dense_problem(
            spec,
            np.eye(spec.n),
            np.zeros(spec.n),
            None if prev is None else np.asarray(prev[b]),
            None if position_start is None else np.asarray(position_start[b]),
        )
        cy = c @ np.asarray(y[b], dtype=np.float64)
        worst = max(worst, float(np.max(np.maximum(cy - hi, lo - cy), initial=0.0)))
    return worst


def diffog_problem(
    t_len, d_len, batch, seed, bound=0.05, alpha=4.0, with_prev=True, step=0.08, dtype=torch.float64
):
    """A DiffOG-shaped random problem: Q from Algorithm 1, random-walk chunk a, q = -a."""
    gen = torch.Generator().manual_seed(seed)
    n = t_len * d_len
    dims = [d for d in range(d_len) if d % 7 != 6]  # grippers (every 7th dim) unconstrained
    spec = TrajOptSpec(t_len, d_len, dims, max_delta=bound, smooth_weight=alpha)
    q_mat = spd_from_unconstrained(
        0.3 * torch.randn(batch, n, n, generator=gen, dtype=torch.float64)
    )
    a = torch.cumsum(step * torch.randn(batch, t_len, d_len, generator=gen, dtype=torch.float64), 1)
    prev = (
        a[:, 0] + 0.05 * torch.randn(batch, d_len, generator=gen, dtype=torch.float64)
        if with_prev
        else None
    )
    return (
        spec,
        q_mat.to(dtype),
        (-a.reshape(batch, n)).to(dtype),
        None if prev is None else prev.to(dtype),
    )
