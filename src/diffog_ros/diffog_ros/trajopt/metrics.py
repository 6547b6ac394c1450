"""Trajectory-quality metrics of one rollout (no rclpy, no torch needed).

* :func:`trajectory_metrics` - DiffOG Appendix VIII-B: per action dim, the maximum over time and the
  standard deviation over time of the velocity (first difference / dt) and of the acceleration
  (second difference / dt^2), each then averaged over the action dims.
* :func:`leto_metrics` - LeTO Table II: per dim, mean of |diff|, max of |diff| and std of diff of
  consecutive actions (for LeTO's velocity actions, the difference is its 'acceleration'), averaged
  over the linear and over the rotational dims separately.

Inputs are ``[N, D]`` executed actions over time (numpy arrays, nested sequences or CPU torch
tensors). Standard deviations are population standard deviations (ddof = 0); neither paper states
the estimator. Averaging over environments / checkpoints / seeds is left to the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["leto_metrics", "trajectory_metrics"]


def _as_rollout(actions: Any, min_steps: int) -> np.ndarray:
    """Validated float64 ``[N, D]`` array with N >= ``min_steps``."""
    try:
        if hasattr(actions, "detach") and hasattr(actions, "cpu"):  # a torch tensor (not imported)
            actions = actions.detach().cpu().double().numpy()
        arr = np.asarray(actions, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"actions must be a numeric [N, D] array: {exc}") from exc
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"actions must have shape [N, D] with D >= 1, got {list(arr.shape)}")
    if arr.shape[0] < min_steps:
        raise ValueError(f"actions must hold at least {min_steps} time steps, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("actions must be finite (found NaN or Inf)")
    return arr


def _dim_list(dims: Any, action_dim: int, name: str) -> list[int]:
    """Validated, non-empty list of distinct dim indices in [0, action_dim)."""
    if isinstance(dims, (str, bytes)) or not isinstance(dims, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a sequence of dim indices, got {dims!r}")
    out: list[int] = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise ValueError(f"{name} must hold integer dim indices, got {list(dims)!r}")
        if not 0 <= int(d) < action_dim:
            raise ValueError(f"{name} must be indices in [0, {action_dim}), got {list(dims)!r}")
        out.append(int(d))
    if not out:
        raise ValueError(f"{name} must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat an index, got {out}")
    return out


def trajectory_metrics(
    actions: Any, dt: float, dims: Sequence[int] | None = None
) -> dict[str, float]:
    """DiffOG Appendix VIII-B trajectory metrics of one rollout.

    With x_k the selected action dims at time step k (k = 0..N-1)::

        v_k = (x_{k+1} - x_k) / dt                   velocity,     k = 0..N-2
        a_k = (x_{k+2} - 2 x_{k+1} + x_k) / dt^2     acceleration, k = 0..N-3
        vel_max = mean over dims of max_k |v_k|,   vel_std = mean over dims of std_k v_k
        acc_max = mean over dims of max_k |a_k|,   acc_std = mean over dims of std_k a_k

    (std: population standard deviation over time.) The paper reports velocity for position control,
    acceleration for velocity control and both for joint-angle control; all four are returned.

    Args:
        actions: ``[N, D]`` executed actions over time, N >= 3.
        dt: control period in seconds, > 0.
        dims: action dims to include (default: all D).

    Returns:
        ``{'vel_max', 'vel_std', 'acc_max', 'acc_std'}`` as python floats.

    Raises:
        ValueError: naming ``actions``, ``dt`` or ``dims`` for bad input.
    """
    arr = _as_rollout(actions, min_steps=3)
    try:
        step = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"dt must be a float, got {dt!r}") from None
    if not (math.isfinite(step) and step > 0.0):
        raise ValueError(f"dt must be finite and > 0, got {dt!r}")
    sel = list(range(arr.shape[1])) if dims is None else _dim_list(dims, arr.shape[1], "dims")
    x = arr[:, sel]
    vel = np.diff(x, n=1, axis=0) / step
    acc = np.diff(x, n=2, axis=0) / step**2
    return {
        "vel_max": float(np.abs(vel).max(axis=0).mean()),
        "vel_std": float(vel.std(axis=0).mean()),
        "acc_max": float(np.abs(acc).max(axis=0).mean()),
        "acc_std": float(acc.std(axis=0).mean()),
    }


def leto_metrics(
    actions: Any, lin_dims: Sequence[int], rot_dims: Sequence[int]
) -> dict[str, float]:
    """LeTO Table II trajectory metrics of one rollout (one environment).

    With x_k the actions at time step k and Delta_k = x_{k+1} - x_k (LeTO: the difference of the
    normalised velocity actions, proportional to acceleration), per dim j::

        mean_j = mean_k |Delta_k,j|,   max_j = max_k |Delta_k,j|,   std_j = std_k Delta_k,j

    then e.g. ``avg_max_lin`` = mean of max_j over ``lin_dims`` (LeTO: (a_x,max + a_y,max + a_z,max)/3;
    the further average over environments is the caller's).

    Args:
        actions: ``[N, D]`` executed actions over time, N >= 2.
        lin_dims: the linear-motion dims (non-empty).
        rot_dims: the rotational-motion dims (non-empty, disjoint from ``lin_dims``).

    Returns:
        ``{'avg_mean_lin', 'avg_max_lin', 'avg_std_lin', 'avg_mean_rot', 'avg_max_rot', 'avg_std_rot'}``
        as python floats.

    Raises:
        ValueError: naming ``actions``, ``lin_dims`` or ``rot_dims`` for bad input.
    """
    arr = _as_rollout(actions, min_steps=2)
    lin = _dim_list(lin_dims, arr.shape[1], "lin_dims")
    rot = _dim_list(rot_dims, arr.shape[1], "rot_dims")
    if set(lin) & set(rot):
        raise ValueError(
            f"lin_dims and rot_dims must be disjoint, both hold {sorted(set(lin) & set(rot))}"
        )
    diff = np.diff(arr, n=1, axis=0)
    out: dict[str, float] = {}
    for group, sel in (("lin", lin), ("rot", rot)):
        d = diff[:, sel]
        out[f"avg_mean_{group}"] = float(np.abs(d).mean(axis=0).mean())
        out[f"avg_max_{group}"] = float(np.abs(d).max(axis=0).mean())
        out[f"avg_std_{group}"] = float(d.std(axis=0).mean())
    return out
