"""``solve_qp``: the differentiable trajectory QP of DiffOG (eq. 6-7, Sec. V-D) and LeTO (eq. 4-8, 11).

For each batch element::

    minimise   1/2 y^T Q y + q^T y + alpha/2 * sum_k ||S(y_{k+1} - y_k)||^2
    subject to the rows of :mod:`diffog_ros.trajopt.constraints` (differences, continuity, values, positions)

Backends:

* ``"fast"`` — our solver. Difference/continuity-only problems (DiffOG, and LeTO without value or
  position bounds) become a box QP in difference variables solved by a primal-dual active-set method
  (:mod:`~diffog_ros.trajopt.box`); anything it cannot certify, and every problem with value/position
  bounds, goes to the exact dual active-set method (:mod:`~diffog_ros.trajopt.exact`). The answer is
  always the exact optimum on a certified active set: every bound holds to 1e-9, never an approximation.
* ``"qpth"`` — qpth's interior-point ``QPFunction`` on the same problem (the seeds' solver; reference).

Gradients w.r.t. Q, q and prev come from the KKT system at the solution (DiffOG Remark 2).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from diffog_ros.trajopt import box, exact
from diffog_ros.trajopt.constraints import (
    constraint_matrix,
    max_violation,
    row_bounds,
    smoothing_hessian,
)
from diffog_ros.trajopt.spec import TrajOptSpec

LOG = logging.getLogger(__name__)

FEASIBILITY_TOL = 1e-9  # every bound holds to this (absolute), see the contract
BACKENDS = ("fast", "qpth")


class SolverError(RuntimeError):
    """The solver could not certify an exact answer (never raised for valid, feasible input)."""


def solve_qp(
    Q: torch.Tensor,  # noqa: N803 - the papers' notation
    q: torch.Tensor,
    spec: TrajOptSpec,
    prev: torch.Tensor | None = None,
    backend: str = "fast",
    position_start: torch.Tensor | None = None,
    q_is_spd: bool = False,
) -> torch.Tensor:
    """Solve the trajectory QP for a batch.

    Args:
        Q: [B, n, n] (or [n, n], shared) symmetric positive definite, n = T*D.
        q: [B, n] linear term (DiffOG passes q = -a; LeTO passes e_t).
        spec: shapes, selection and bounds.
        prev: [B, D] the action executed last, or None for no continuity constraint.
        backend: "fast" or "qpth".
        position_start: [B, c] p_0 of LeTO eq. (3); required iff the spec has position bounds.
        q_is_spd: the caller guarantees Q is SPD by construction (DiffOG Algorithm 1, LeTO's
            L L^T + eps I, Q = I): skip the Cholesky that proves it (symmetry and finiteness are
            still checked; a factorisation failure later still raises ValueError).

    Returns:
        y: [B, n] in q's dtype (float32 or float64); computed in float64.

    Raises:
        ValueError: naming the argument, for bad shapes/dtypes, non-finite values, a Q that is not
            symmetric positive definite, or bounds that admit no solution.
    """
    if not isinstance(spec, TrajOptSpec):
        raise ValueError(f"spec must be a TrajOptSpec, got {type(spec).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    q_mat, q_vec, prev64, pos64, out_dtype = _validated(Q, q, spec, prev, position_start, q_is_spd)
    try:
        if backend == "qpth":
            y = _solve_qpth(q_mat, q_vec, spec, prev64, pos64)
        elif spec.is_box_structured:
            y = _solve_box(q_mat, q_vec, spec, prev64)
        else:
            y = _solve_general(q_mat, q_vec, spec, prev64, pos64)
    except FloatingPointError as exc:  # only reachable with q_is_spd=True and a Q that is not
        raise ValueError(f"Q must be symmetric positive definite ({exc})") from exc
    return y.to(out_dtype)


# ---------------------------------------------------------------------------------------- validation
def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def _validated(Q, q, spec, prev, position_start, q_is_spd=False):  # noqa: N803
    n = spec.n
    q = _as_tensor(q, "q")
    if q.ndim != 2 or q.shape[1] != n or q.shape[0] < 1:
        raise ValueError(
            f"q must be [B, n={n}] (T*D = {spec.horizon}*{spec.action_dim}), got {tuple(q.shape)}"
        )
    batch = q.shape[0]
    Q = _as_tensor(Q, "Q")  # noqa: N806
    if Q.ndim == 2:
        Q = Q.unsqueeze(0)  # noqa: N806
    if Q.ndim != 3 or Q.shape[1:] != (n, n) or Q.shape[0] not in (1, batch):
        raise ValueError(f"Q must be [B={batch}, {n}, {n}] or [{n}, {n}], got {tuple(Q.shape)}")
    q_mat = Q.to(torch.float64)
    q_vec = q.to(torch.float64)

    with torch.no_grad():
        scale = q_mat.abs().amax(dim=(1, 2)).clamp_min(1.0)
        asym = (q_mat - q_mat.transpose(1, 2)).abs().amax(dim=(1, 2)) / scale
        tol = 1e-6 if Q.dtype == torch.float32 else 1e-9
        if bool((asym > tol).any()):
            raise ValueError(
                f"Q must be symmetric (relative asymmetry {float(asym.max()):.3g} > {tol})"
            )
        if not q_is_spd:
            _, info = torch.linalg.cholesky_ex(q_mat)
            if bool((info != 0).any()):
                bad = torch.nonzero(info).flatten().tolist()
                raise ValueError(
                    f"Q must be symmetric positive definite (batch elements {bad} are not)"
                )
    q_mat = 0.5 * (q_mat + q_mat.transpose(1, 2))

    prev64 = None
    if prev is not None:
        prev = _as_tensor(prev, "prev")
        if prev.ndim != 2 or prev.shape != (batch, spec.action_dim):
            raise ValueError(
                f"prev must be [B={batch}, D={spec.action_dim}], got {tuple(prev.shape)}"
            )
        prev64 = prev.to(torch.float64)

    pos64 = None
    if spec.has_position_bounds:
        if position_start is None:
            raise ValueError("position_start is required when the spec has position bounds")
        position_start = _as_tensor(position_start, "position_start")
        if position_start.shape != (batch, spec.n_continuous):
            raise ValueError(
                f"position_start must be [B={batch}, c={spec.n_continuous}], got {tuple(position_start.shape)}"
            )
        pos64 = position_start.to(torch.float64)
    elif position_start is not None:
        raise ValueError("position_start given but the spec has no position bounds")

    if spec.has_value_bounds and not spec.has_position_bounds:
        _check_value_feasibility(spec, prev64)
    return q_mat, q_vec, prev64, pos64, q.dtype


def _check_value_feasibility(spec: TrajOptSpec, prev: torch.Tensor | None) -> None:
    """Exact feasibility of value + difference (+ continuity) bounds by interval propagation.

    Per continuous dim the constraints form a chain, so the set of reachable y_k is an interval:
    I_0 = [vmin, vmax] (intersected with [prev + dmin, prev + dmax]); I_k = (I_{k-1} + [dmin, dmax]) & [vmin, vmax].
    """
    vmin, vmax = spec.lo_value, spec.hi_value
    dmin, dmax = spec.lo_delta, spec.hi_delta
    batch = 1 if prev is None else prev.shape[0]
    low = np.broadcast_to(vmin, (batch, vmin.size)).copy()
    high = np.broadcast_to(vmax, (batch, vmax.size)).copy()
    if prev is not None:
        p = prev.detach().numpy()[:, list(spec.continuous_dims)]
        low = np.maximum(low, p + dmin)
        high = np.minimum(high, p + dmax)
    for k in range(spec.horizon):
        if k > 0:
            low = np.maximum(low + dmin, vmin)
            high = np.minimum(high + dmax, vmax)
        if np.any(low > high):
            b, j = np.argwhere(low > high)[0]
            what = (
                "prev with min_value/max_value and min_delta/max_delta"
                if prev is not None
                else ("min_value/max_value with min_delta/max_delta")
            )
            raise ValueError(
                f"infeasible bounds: {what} leave no value for step {k} of continuous dim "
                f"{spec.continuous_dims[j]} (batch element {b})"
            )


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# ------------------------------------------------------------------------------------------ fast
def _solve_box(q_mat, q_vec, spec, prev):
    if q_vec.shape[0] == 1 and not _needs_grad(q_mat, q_vec, prev):
        y = _solve_box_single(q_mat, q_vec, spec, prev)
        if y is not None:
            return y

    def solver(q_mat_, q_vec_, prev_):
        prob = box.build(spec, q_mat_, q_vec_, prev_)
        sol = box.pdas(prob)
        fallback = ~sol.converged
        if bool(fallback.any()):
            sol = _with_exact_active_sets(spec, prob, sol, fallback, q_mat_, q_vec_, prev_)
        _certify_box(prob, sol)
        return prob, sol

    y = box.BoxQPFunction.apply(q_mat, q_vec, prev, solver)
    _final_check(y, spec, prev, None)
    return y


def _solve_box_single(q_mat, q_vec, spec, prev):
    """Batch of one without gradients: the numpy/LAPACK path. None if it did not settle."""
    sol = box.solve_single(
        spec, q_mat[0].numpy(), q_vec[0].numpy(), None if prev is None else prev[0].numpy()
    )
    if not sol.converged:
        return None
    mu = -(sol.h @ sol.z + sol.g)
    scale = 1.0 + np.abs(sol.g).max() + np.abs(sol.h).max() * np.abs(sol.z).max()
    if np.any(sol.at_upper & (mu < -1e-9 * scale)) or np.any(sol.at_lower & (mu > 1e-9 * scale)):
        return None
    y = torch.from_numpy(sol.y).unsqueeze(0)
    _final_check(y, spec, prev, None)
    return y


def _with_exact_active_sets(spec, prob, sol, fallback, q_mat, q_vec, prev):
    """Replace the active sets of unsettled elements by the exact method's, and re-solve them."""
    idx = torch.nonzero(fallback).flatten()
    LOG.debug("fast path: %d of %d elements to the exact method", idx.numel(), fallback.numel())
    up_rows, lo_rows = _exact_active_rows(spec, q_mat, q_vec, prev, None, idx)
    coords = box.z_coordinate_of_rows(spec, prev is not None)
    n = prob.g.shape[1]
    at_upper = torch.zeros(idx.numel(), n, dtype=torch.bool)
    at_lower = torch.zeros(idx.numel(), n, dtype=torch.bool)
    at_upper[:, coords] = up_rows
    at_lower[:, coords] = lo_rows
    h, g = prob.h.detach()[idx], prob.g.detach()[idx]
    lower, upper = prob.lower.expand(idx.numel(), n), prob.upper.expand(idx.numel(), n)
    z, chol = box.factor_solve(h, g, at_upper, at_lower, lower, upper)
    sol.z[idx], sol.chol[idx] = z, chol
    sol.at_upper[idx], sol.at_lower[idx] = at_upper, at_lower
    sol.converged[idx] = True
    return sol


def _certify_box(prob: box.BoxProblem, sol: box.ActiveSetSolution) -> None:
    """Check the KKT conditions of the box QP; snap rounding-level excursions onto the bound.

    Active coordinates sit exactly on their bounds by construction; the multipliers of active
    coordinates must have the right sign and inactive coordinates must be inside their bounds.
    """
    z = sol.z
    mu = -(torch.bmm(prob.h.detach(), z.unsqueeze(-1)).squeeze(-1) + prob.g.detach())
    scale = (
        1.0
        + prob.g.detach().abs().amax(1, keepdim=True)
        + (prob.h.detach().abs().amax((1, 2)).unsqueeze(1) * z.abs().amax(1, keepdim=True))
    )
    bad_sign = ((sol.at_upper & (mu < -1e-9 * scale)) | (sol.at_lower & (mu > 1e-9 * scale))).any(1)
    excess = torch.maximum(z - prob.upper, prob.lower - z).clamp_min(0.0)
    bad_feas = (excess > 1e-9 * (1.0 + z.abs())).any(1)
    if bool((bad_sign | bad_feas).any()):
        raise SolverError("could not certify the optimal active set of the trajectory QP")
    torch.maximum(torch.minimum(z, prob.upper), prob.lower, out=z)


def _exact_active_rows(spec, q_mat, q_vec, prev, pos, idx):
    """quadprog on the y-space problem for the batch elements ``idx``; returns their active rows."""
    cmat, _ = constraint_matrix(spec, prev is not None)
    with torch.no_grad():
        h_y = (
            q_mat.expand(q_vec.shape[0], -1, -1)[idx] + torch.from_numpy(smoothing_hessian(spec))
        ).numpy()
        lo, hi = row_bounds(
            spec,
            None if prev is None else prev[idx][:, list(spec.continuous_dims)],
            None if pos is None else pos[idx],
            idx.numel(),
        )
        try:
            _, up, low = exact.active_rows(h_y, q_vec[idx].numpy(), cmat, lo.numpy(), hi.numpy())
        except exact.InfeasibleError as exc:
            raise ValueError(str(exc)) from exc
    return torch.from_numpy(up), torch.from_numpy(low)


def _solve_general(q_mat, q_vec, spec, prev, pos):
    batch = q_vec.shape[0]
    idx = torch.arange(batch)
    up, low = _exact_active_rows(spec, q_mat, q_vec, prev, pos, idx)
    cmat_np, _ = constraint_matrix(spec, prev is not None)
    cmat = torch.from_numpy(np.array(cmat_np))
    h_y = q_mat + torch.from_numpy(smoothing_hessian(spec))
    prev_s = None if prev is None else prev[:, list(spec.continuous_dims)]
    lo, hi = row_bounds(spec, prev_s, pos, batch)
    y, lam = exact.kkt_solve(h_y.expand(batch, -1, -1), q_vec, cmat, lo, hi, up, low)
    with torch.no_grad():
        scale = 1.0 + q_vec.abs().amax(1, keepdim=True)
        bad = ((up & (lam < -1e-7 * scale)) | (low & (lam > 1e-7 * scale))).any(1)
        if bool(bad.any()):
            raise SolverError("exact method returned multipliers of the wrong sign")
    _final_check(y, spec, prev, pos)
    return y


def _final_check(y, spec, prev, pos):
    """The contract: every bound holds to FEASIBILITY_TOL. Never return anything else."""
    cmat_np, _ = constraint_matrix(spec, prev is not None)
    prev_s = None if prev is None else prev[:, list(spec.continuous_dims)]
    with torch.no_grad():
        lo, hi = row_bounds(spec, None if prev_s is None else prev_s.detach(), pos, y.shape[0])
        viol = max_violation(y.detach(), torch.from_numpy(np.array(cmat_np)), lo, hi)
    worst = float(viol.max()) if viol.numel() else 0.0
    if worst > FEASIBILITY_TOL:
        raise SolverError(f"solution violates a bound by {worst:.3g} (> {FEASIBILITY_TOL})")


# ------------------------------------------------------------------------------------------ qpth
def _solve_qpth(q_mat, q_vec, spec, prev, pos):
    from qpth.qp import QPFunction

    batch = q_vec.shape[0]
    cmat_np, _ = constraint_matrix(spec, prev is not None)
    cmat = torch.from_numpy(np.array(cmat_np))
    prev_s = None if prev is None else prev[:, list(spec.continuous_dims)]
    lo, hi = row_bounds(spec, prev_s, pos, batch)
    up_rows = torch.isfinite(hi[0])
    lo_rows = torch.isfinite(lo[0])
    g = torch.cat([cmat[up_rows], -cmat[lo_rows]], dim=0)
    h = torch.cat([hi[:, up_rows], -lo[:, lo_rows]], dim=1)
    h_y = (q_mat + torch.from_numpy(smoothing_hessian(spec))).expand(batch, -1, -1)
    empty = torch.empty(0, dtype=torch.float64)
    if g.shape[0] == 0:
        g = torch.zeros(1, spec.n, dtype=torch.float64)
        h = torch.ones(batch, 1, dtype=torch.float64)
    fn = QPFunction(verbose=-1, check_Q_spd=False, eps=1e-12, maxIter=50)
    return fn(h_y, q_vec, g, h, empty, empty)
