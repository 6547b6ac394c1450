"""The QP's inequality rows in the original variables y: lo <= C y <= hi.

Row blocks, in this order (c = number of continuous dims, S = the selection):

1. first differences  S(y_{k+1} - y_k), k = 0..T-2, bounds [min_delta, max_delta]   (DiffOG eq. 7, LeTO eq. 8)
2. continuity         S y_0,  bounds [prev + min_delta, prev + max_delta] (with prev) (DiffOG Sec. V-D, LeTO eq. 11)
3. values             S y_k, k = 0..T-1, bounds [min_value, max_value]               (LeTO eq. 7)
4. positions          dt * sum_{i<k} S y_i, k = 1..T-1, bounds [p_min - p0, p_max - p0] (LeTO eq. 3, 6)

Rows of blocks 1-2 map one-to-one onto the coordinates of the difference variables used by the
fast solver (see :mod:`diffog_ros.trajopt.box`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from diffog_ros.trajopt.spec import TrajOptSpec


@dataclass(frozen=True)
class RowLayout:
    """Where each block of rows starts and how many rows it has."""

    n_diff: int
    n_cont: int
    n_value: int
    n_pos: int

    @property
    def m(self) -> int:
        return self.n_diff + self.n_cont + self.n_value + self.n_pos


def _index(spec: TrajOptSpec, k: int, j: int) -> int:
    return k * spec.action_dim + j


@lru_cache(maxsize=64)
def constraint_matrix(spec: TrajOptSpec, with_prev: bool) -> tuple[np.ndarray, RowLayout]:
    """C (m x n, float64, read-only) and its row layout for ``spec``."""
    t_len, dims = spec.horizon, spec.continuous_dims
    rows: list[np.ndarray] = []

    def row() -> np.ndarray:
        r = np.zeros(spec.n)
        rows.append(r)
        return r

    for k in range(t_len - 1):  # block 1: first differences
        for j in dims:
            r = row()
            r[_index(spec, k + 1, j)] = 1.0
            r[_index(spec, k, j)] = -1.0
    n_diff = len(rows)
    if with_prev:  # block 2: continuity
        for j in dims:
            row()[_index(spec, 0, j)] = 1.0
    n_cont = len(rows) - n_diff
    if spec.has_value_bounds:  # block 3: values
        for k in range(t_len):
            for j in dims:
                row()[_index(spec, k, j)] = 1.0
    n_value = len(rows) - n_diff - n_cont
    if spec.has_position_bounds:  # block 4: integrated positions
        for k in range(1, t_len):
            for j in dims:
                r = row()
                for i in range(k):
                    r[_index(spec, i, j)] = spec.position_dt
    n_pos = len(rows) - n_diff - n_cont - n_value
    mat = np.array(rows, dtype=np.float64).reshape(len(rows), spec.n)
    mat.setflags(write=False)
    return mat, RowLayout(n_diff, n_cont, n_value, n_pos)


def row_bounds(
    spec: TrajOptSpec,
    prev_s: torch.Tensor | None,
    position_start: torch.Tensor | None,
    batch: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds [B, m] (float64) of the rows of :func:`constraint_matrix`.

    ``prev_s`` [B, c] is the previous executed action on the continuous dims; ``position_start`` [B, c]
    is p_0 of LeTO eq. (3). Both keep their autograd graph (the continuity bounds depend on prev).
    """
    f64 = dict(dtype=torch.float64)
    lo_d = torch.tensor(spec.lo_delta, **f64)
    hi_d = torch.tensor(spec.hi_delta, **f64)
    lo_parts = [lo_d.repeat(spec.horizon - 1).expand(batch, -1)]
    hi_parts = [hi_d.repeat(spec.horizon - 1).expand(batch, -1)]
    if prev_s is not None:
        lo_parts.append(prev_s + lo_d)
        hi_parts.append(prev_s + hi_d)
    if spec.has_value_bounds:
        lo_parts.append(torch.tensor(spec.lo_value, **f64).repeat(spec.horizon).expand(batch, -1))
        hi_parts.append(torch.tensor(spec.hi_value, **f64).repeat(spec.horizon).expand(batch, -1))
    if spec.has_position_bounds:
        p0 = position_start
        lo_p = torch.tensor(spec.lo_position, **f64) - p0
        hi_p = torch.tensor(spec.hi_position, **f64) - p0
        lo_parts.append(lo_p.repeat(1, spec.horizon - 1))
        hi_parts.append(hi_p.repeat(1, spec.horizon - 1))
    return torch.cat(lo_parts, dim=1), torch.cat(hi_parts, dim=1)


def max_violation(
    y: torch.Tensor, cmat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
) -> torch.Tensor:
    """Largest bound violation per batch element (0 when feasible). y [B, n] -> [B]."""
    if cmat.shape[0] == 0:
        return torch.zeros(y.shape[0], dtype=y.dtype)
    cy = y @ cmat.T
    viol = torch.maximum(cy - hi, lo - cy).clamp_min(0.0)
    return viol.max(dim=1).values


def smoothing_hessian(spec: TrajOptSpec) -> np.ndarray:
    """alpha * S^T A_diff^T A_diff S (n x n): the smoothing term of DiffOG eq. (6) / LeTO eq. (4)."""
    h = np.zeros((spec.n, spec.n))
    if spec.smooth_weight == 0.0:
        return h
    for k in range(spec.horizon - 1):
        for j in spec.continuous_dims:
            a, b = _index(spec, k, j), _index(spec, k + 1, j)
            h[a, a] += 1.0
            h[b, b] += 1.0
            h[a, b] -= 1.0
            h[b, a] -= 1.0
    return spec.smooth_weight * h
