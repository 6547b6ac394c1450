"""Training-free trajectory-processing baselines of DiffOG Sec. VI (no rclpy, no torch needed).

Both act only on the first-difference bounds of DiffOG eq. (7) (``spec.lo_delta`` / ``spec.hi_delta``,
i.e. d_min*dt and d_max*dt, one value per continuous dim) and on the continuity anchor ``prev``
(DiffOG Sec. V-D). Non-continuous dims (grippers) are copied from the input unchanged.

Shapes: ``a`` is ``[B, n]`` (n = T*D, flattened time-major) or ``[B, T, D]``; ``prev`` is ``[B, D]``
(the executed previous action) or ``None``. Results have the shape, array type, dtype and (for torch)
device of ``a``. numpy arrays and torch tensors are accepted; work is done in float64 numpy, so the
baselines are not differentiable (they are post-hoc processing, as in the paper).

Specs with value bounds (LeTO eq. 7) or position bounds (LeTO eq. 6) are rejected with ``ValueError``:
the paper's baselines do not define how to honour them, and silently ignoring a configured limit is
not acceptable.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import numpy as np

from diffog_ros.trajopt.spec import TrajOptSpec

__all__ = ["clip_chunk", "penalty_chunk", "penalty_chunk_info"]

_LOG = logging.getLogger(__name__)

# Largest step size accepted by the penalty method: the penalty gradient D^T(v_max - v_min) is
# Lipschitz with constant ||D||^2 < 4 (D = first-difference operator), so eta <= 2/4 keeps every
# gradient step non-increasing in the penalty 1/2*(||v_max||^2 + ||v_min||^2).
MAX_PENALTY_STEP = 0.5


# ---------------------------------------------------------------------------------------- helpers
def _torch_tensor_type() -> Any | None:
    """torch.Tensor if torch is already imported (a tensor cannot exist otherwise), else None."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None) if torch is not None else None


def _to_float64(x: Any, name: str) -> np.ndarray:
    """A float64 numpy copy of a numpy array, torch tensor or nested sequence."""
    tensor_type = _torch_tensor_type()
    try:
        if tensor_type is not None and isinstance(x, tensor_type):
            return x.detach().to(device="cpu").double().numpy().copy()
        return np.array(x, dtype=np.float64, copy=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a numeric array or tensor: {exc}") from exc


def _restore(out: np.ndarray, like: Any) -> Any:
    """Return ``out`` (float64, already in the shape of ``like``) as the array type/dtype of ``like``."""
    tensor_type = _torch_tensor_type()
    if tensor_type is not None and isinstance(like, tensor_type):
        import torch  # lazy: only reached for torch input

        dtype = like.dtype if like.is_floating_point() else torch.float64
        return torch.from_numpy(out).to(dtype=dtype, device=like.device)
    dtype = like.dtype if isinstance(like, np.ndarray) and like.dtype.kind == "f" else np.float64
    return out.astype(dtype, copy=False)


def _check_spec(spec: Any) -> TrajOptSpec:
    if not isinstance(spec, TrajOptSpec):
        raise ValueError(f"spec must be a TrajOptSpec, got {type(spec).__name__}")
    if spec.has_value_bounds or spec.has_position_bounds:
        raise ValueError(
            "spec has value/position bounds (min_value/max_value/position_min/position_max); the "
            "DiffOG Sec. VI baselines only enforce first-difference bounds: use solve_qp instead"
        )
    return spec


def _prepare(a: Any, spec: Any, prev: Any) -> tuple[TrajOptSpec, np.ndarray, np.ndarray | None]:
    """Validate inputs; return (spec, chunk [B, T, D] float64, prev [B, D] float64 or None)."""
    spec = _check_spec(spec)
    arr = _to_float64(a, "a")
    T, D = spec.horizon, spec.action_dim
    if arr.ndim == 2 and arr.shape[1] == spec.n:
        chunk = arr.reshape(arr.shape[0], T, D)
    elif arr.ndim == 3 and arr.shape[1:] == (T, D):
        chunk = arr
    else:
        raise ValueError(
            f"a must have shape [B, {spec.n}] or [B, {T}, {D}] (T={T}, D={D}), got {tuple(arr.shape)}"
        )
    if not np.all(np.isfinite(chunk)):
        raise ValueError("a must be finite (found NaN or Inf)")
    if prev is None:
        return spec, chunk, None
    prev_arr = _to_float64(prev, "prev")
    if prev_arr.shape != (chunk.shape[0], D):
        raise ValueError(
            f"prev must have shape [B, D] = {[chunk.shape[0], D]}, got {list(prev_arr.shape)}"
        )
    if not np.all(np.isfinite(prev_arr)):
        raise ValueError("prev must be finite (found NaN or Inf)")
    return spec, chunk, prev_arr


def _finish(chunk: np.ndarray, cont: np.ndarray, spec: TrajOptSpec, like: Any) -> Any:
    """Write the continuous dims back into a copy of the chunk and restore the input's form."""
    out = chunk.copy()
    out[:, :, list(spec.continuous_dims)] = cont
    shape = tuple(like.shape)
    return _restore(out.reshape(shape), like)


def _clip_step(
    target: np.ndarray, anchor: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """One greedy step: the point of [anchor + lo, anchor + hi] nearest to ``target`` (per element).

    Where ``target - anchor`` already lies in [lo, hi] the target is returned bit-for-bit (so clipping
    is the identity on feasible chunks). Elsewhere the result anchor + clip(delta) is nudged by one ulp
    at a time until the float64 difference ``result - anchor`` honours the bound exactly.
    """
    delta = target - anchor
    inside = (delta >= lo) & (delta <= hi)
    step = anchor + np.clip(delta, lo, hi)
    for _ in range(4):  # rounding of anchor + bound is at most half an ulp: one nudge suffices
        diff = step - anchor
        over, under = diff > hi, diff < lo
        if not (over.any() or under.any()):
            break
        step = np.where(over, np.nextafter(step, -np.inf), step)
        step = np.where(under, np.nextafter(step, np.inf), step)
    return np.where(inside, target, step)


# ---------------------------------------------------------------------------------------- clipping
def clip_chunk(a: Any, spec: TrajOptSpec, prev: Any = None) -> Any:
    """Greedy constraint clipping, DiffOG Sec. VI-A.

    With c the continuous dims of the chunk (c = S a, DiffOG Sec. VI) and c*_{-1} = S prev::

        delta_k   = c_k - c*_{k-1}
        delta_k'  = clip(delta_k, d_min*dt, d_max*dt)                 (Sec. VI-A, element-wise)
        c*_k      = c*_{k-1} + delta_k'                                k = 0 .. T-1

    If ``prev`` is None there is no anchor: the first step is kept as is (c*_0 = c_0) and clipping
    starts at k = 1. The result satisfies every first-difference bound (and the continuity bound when
    ``prev`` is given) exactly in float64; float32 outputs are exact up to the final rounding.
    Steps whose difference is already inside the bounds are returned unchanged, so clipping is the
    identity on feasible chunks. Gripper (non-continuous) dims pass through unchanged.

    Args:
        a: ``[B, n]`` (n = T*D, time-major) or ``[B, T, D]`` raw chunk, numpy or torch.
        spec: the problem spec; only ``lo_delta`` / ``hi_delta`` / ``continuous_dims`` are used.
        prev: ``[B, D]`` executed previous action, or None.

    Returns:
        The clipped chunk, same shape / type / dtype (/ device) as ``a``.

    Raises:
        ValueError: wrong shapes, non-finite values, or a spec with value/position bounds.
    """
    spec, chunk, prev_arr = _prepare(a, spec, prev)
    dims = list(spec.continuous_dims)
    c = chunk[:, :, dims]  # [B, T, C] (a copy)
    lo, hi = spec.lo_delta, spec.hi_delta
    out = c.copy()
    if prev_arr is None:
        start, anchor = 1, out[:, 0]
    else:
        start, anchor = 0, prev_arr[:, dims]
    for k in range(start, spec.horizon):  # inherently sequential over time, vectorised over B and C
        out[:, k] = _clip_step(c[:, k], anchor, lo, hi)
        anchor = out[:, k]
    return _finish(chunk, out, spec, a)


# ---------------------------------------------------------------------------------------- penalty
def _check_penalty_params(step_size: Any, tol: Any, max_iter: Any) -> tuple[float, float, int]:
    try:
        eta = float(step_size)
    except (TypeError, ValueError):
        raise ValueError(f"step_size must be a float, got {step_size!r}") from None
    if not (math.isfinite(eta) and 0.0 < eta <= MAX_PENALTY_STEP):
        raise ValueError(
            f"step_size must be in (0, {MAX_PENALTY_STEP}] (larger steps can diverge), got {step_size!r}"
        )
    try:
        eps = float(tol)
    except (TypeError, ValueError):
        raise ValueError(f"tol must be a float, got {tol!r}") from None
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"tol must be finite and >= 0, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}")
    return eta, eps, int(max_iter)


def _violations(x: np.ndarray, anchor: np.ndarray | None, lo: np.ndarray, hi: np.ndarray):
    """(v_max, v_min), each [B, T, C], of Delta c = c - c_{-1} (DiffOG Sec. VI-B).

    c_{-1} = [anchor; c_0; ...; c_{T-2}]. Without an anchor the difference k = 0 does not exist and
    its violations are 0.
    """
    d = np.empty_like(x)
    d[:, 1:] = x[:, 1:] - x[:, :-1]
    d[:, 0] = 0.0 if anchor is None else x[:, 0] - anchor
    v_max = np.maximum(0.0, d - hi)  # v_max = max(0, Delta c - d_max*dt)
    v_min = np.maximum(0.0, lo - d)  # v_min = max(0, d_min*dt - Delta c)
    if anchor is None:
        v_max[:, 0] = 0.0
        v_min[:, 0] = 0.0
    return v_max, v_min


def _penalty(
    c: np.ndarray,
    anchor: np.ndarray | None,
    lo: np.ndarray,
    hi: np.ndarray,
    eta: float,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The penalty iteration on the continuous dims c [B, T, C]; see :func:`penalty_chunk`."""
    x = c.copy()  # warm start c_hat = c
    batch = x.shape[0]
    active = np.ones(batch, dtype=bool)
    iterations = np.zeros(batch, dtype=np.int64)
    violation = np.zeros(batch, dtype=np.float64)
    for it in range(max_iter + 1):
        v_max, v_min = _violations(x, anchor, lo, hi)
        norm = np.sqrt((v_max**2).sum(axis=(1, 2))) + np.sqrt((v_min**2).sum(axis=(1, 2)))
        violation = np.where(active, norm, violation)
        active &= ~(norm < tol)  # stop when ||v_max|| + ||v_min|| < eps^V
        if it == max_iter or not active.any():
            break
        nabla = v_max - v_min  # nabla = v_max - v_min, one entry per difference
        # Gradient D^T nabla: difference k acts on c_hat_k with + and on c_hat_{k-1} with -.
        grad = nabla.copy()
        grad[:, :-1] -= nabla[:, 1:]
        x[active] -= eta * grad[active]  # c_hat <- c_hat - eta * nabla (applied through D^T)
        iterations[active] += 1
    return x, iterations, violation


def penalty_chunk_info(
    a: Any,
    spec: TrajOptSpec,
    prev: Any = None,
    step_size: float = 0.05,
    tol: float = 0.01,
    max_iter: int = 1000,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """:func:`penalty_chunk` plus its diagnostics.

    Returns:
        ``(result, iterations, final_violation)``: ``result`` as from :func:`penalty_chunk`;
        ``iterations`` int64 numpy ``[B]``, the number of updates applied to each batch element;
        ``final_violation`` float64 numpy ``[B]``, ||v_max|| + ||v_min|| at the returned point
        (in the chunk's units). A value >= ``tol`` means the iteration hit ``max_iter`` without
        converging and the result may break the bounds.
    """
    eta, eps, n_iter = _check_penalty_params(step_size, tol, max_iter)
    spec, chunk, prev_arr = _prepare(a, spec, prev)
    dims = list(spec.continuous_dims)
    anchor = None if prev_arr is None else prev_arr[:, dims]
    cont, iterations, violation = _penalty(
        chunk[:, :, dims], anchor, spec.lo_delta, spec.hi_delta, eta, eps, n_iter
    )
    unconverged = int(np.count_nonzero(violation >= eps))
    if unconverged:
        _LOG.debug(
            "penalty optimisation: %d of %d chunks not converged after %d iterations "
            "(max violation %.3g >= tol %.3g)",
            unconverged,
            violation.shape[0],
            n_iter,
            float(violation.max()),
            eps,
        )
    return _finish(chunk, cont, spec, a), iterations, violation


def penalty_chunk(
    a: Any,
    spec: TrajOptSpec,
    prev: Any = None,
    step_size: float = 0.05,
    tol: float = 0.01,
    max_iter: int = 1000,
) -> Any:
    """Penalty-based trajectory optimisation, DiffOG Sec. VI-B.

    Defaults are DiffOG Table VIII, 'Real ALOHA tasks' (eta = 0.05, eps^V = 0.01, 1000 iterations).
    With c_hat the continuous dims of the current iterate (warm start c_hat = c = S a)::

        c_{-1}   = [c_hat_{-1} = S prev; c_hat_0; ...; c_hat_{T-2}]                    (Sec. VI-B)
        Delta c  = c_hat - c_{-1}
        v_max    = max(0, Delta c - d_max*dt),   v_min = max(0, d_min*dt - Delta c)
        nabla    = v_max - v_min
        c_hat   <- c_hat - eta * D^T nabla
        stop when ||v_max|| + ||v_min|| < eps^V (2-norms over all T*D_c entries) or after max_iter

    How the update is read: the paper writes ``c_hat <- c_hat - eta * nabla`` with nabla indexed by
    difference. We apply it as the gradient of the penalty 1/2*(||v_max||^2 + ||v_min||^2) with
    respect to c_hat, i.e. D^T nabla with D the first-difference operator: the violation nabla_k of
    difference k (c_hat_k - c_hat_{k-1}) is added to the gradient of c_hat_k (+nabla_k) and, where
    c_hat_{k-1} is a decision variable (k >= 1; the anchor ``prev`` is fixed), subtracted from the
    gradient of c_hat_{k-1} (-nabla_k). So grad_k = nabla_k - nabla_{k+1} (nabla_T = 0). The
    differences are recomputed from the current iterate at every iteration (the paper's c_{t-1}
    built from the iterate, otherwise the violation would never change).

    Without ``prev`` there is no difference k = 0: only k = 1..T-1 are penalised and c_hat_0 is a
    free decision variable (unlike :func:`clip_chunk`, which keeps step 0 as is).

    Each batch element stops on its own (converged elements are frozen). The penalty method does
    NOT guarantee feasibility: on exit the bounds may be broken by up to the tolerance, or by more
    if ``max_iter`` was reached; use :func:`penalty_chunk_info` to read the iterations and the
    final violation. Gripper (non-continuous) dims pass through unchanged.

    Args:
        a: ``[B, n]`` (n = T*D, time-major) or ``[B, T, D]`` raw chunk, numpy or torch.
        spec: the problem spec; only ``lo_delta`` / ``hi_delta`` / ``continuous_dims`` are used.
        prev: ``[B, D]`` executed previous action, or None.
        step_size: eta, in (0, 0.5] (the penalty gradient is 4-Lipschitz at most).
        tol: eps^V >= 0, in the chunk's units.
        max_iter: maximum number of updates, >= 0.

    Returns:
        The optimised chunk, same shape / type / dtype (/ device) as ``a``.

    Raises:
        ValueError: wrong shapes, non-finite values, bad step_size/tol/max_iter, or a spec with
        value/position bounds.
    """
    result, _, _ = penalty_chunk_info(a, spec, prev, step_size, tol, max_iter)
    return result
