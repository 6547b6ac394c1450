"""Problem specification shared by DiffOG and LeTO (no rclpy, no torch needed to build one).

A chunk holds T steps x D action dims, flattened time-major (y = [a_0; ...; a_{T-1}], n = T*D).
``continuous_dims`` is the selection S (DiffOG eq. 2-3, LeTO eq. 1): the dims whose per-step change is
bounded; grippers are usually left out.

The QP solved for each batch element (see :func:`diffog_ros.trajopt.solve_qp`)::

    minimise   1/2 y^T Q y + q^T y + alpha/2 * sum_{k=0}^{T-2} ||S(y_{k+1} - y_k)||^2     (DiffOG eq. 6, LeTO eq. 4)
    subject to min_delta <= S(y_{k+1} - y_k) <= max_delta,  k = 0..T-2                  (DiffOG eq. 7, LeTO eq. 8)
               min_value <= S y_k <= max_value,             k = 0..T-1  (optional)        (LeTO eq. 7)
               position_min <= p_k <= position_max,          k = 1..T-1  (optional)        (LeTO eq. 6)
                   with p_k = p_start + position_dt * sum_{i<k} S y_i (A_pos = I)         (LeTO eq. 3)
               min_delta <= S(y_0 - prev) <= max_delta      (when prev is given)          (DiffOG Sec. V-D, LeTO eq. 11)

``max_delta`` is d_max * dt of DiffOG eq. (7): a bound on the change per step, in the chunk's own units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

FloatOrSeq = float | Sequence[float] | np.ndarray | None


def _per_dim(value: FloatOrSeq, count: int, name: str) -> np.ndarray | None:
    """Broadcast a scalar or a per-continuous-dim sequence to a float64 array of ``count`` values."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(count, float(arr))
    elif arr.ndim != 1 or arr.shape[0] not in (1, count):
        raise ValueError(
            f"{name} must be a float or have one value per continuous dim ({count}), got shape {arr.shape}"
        )
    elif arr.shape[0] == 1:
        arr = np.full(count, float(arr[0]))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class TrajOptSpec:
    """Shape, selection and bounds of the trajectory QP (validated on construction).

    Raises ``ValueError`` naming the argument for anything an outside caller can get wrong,
    including DiffOG Proposition 1's precondition ``min_delta < max_delta``.
    """

    horizon: int
    action_dim: int
    continuous_dims: Sequence[int]
    max_delta: FloatOrSeq = 0.1
    min_delta: FloatOrSeq = None
    smooth_weight: float = 0.0
    min_value: FloatOrSeq = None
    max_value: FloatOrSeq = None
    position_min: FloatOrSeq = None
    position_max: FloatOrSeq = None
    position_dt: float = 1.0

    # Derived, validated arrays (float64, one value per continuous dim).
    lo_delta: np.ndarray = field(init=False, repr=False, compare=False)
    hi_delta: np.ndarray = field(init=False, repr=False, compare=False)
    lo_value: np.ndarray | None = field(init=False, repr=False, compare=False)
    hi_value: np.ndarray | None = field(init=False, repr=False, compare=False)
    lo_position: np.ndarray | None = field(init=False, repr=False, compare=False)
    hi_position: np.ndarray | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.horizon, (int, np.integer)) or self.horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {self.horizon!r}")
        if not isinstance(self.action_dim, (int, np.integer)) or self.action_dim < 1:
            raise ValueError(f"action_dim must be an int >= 1, got {self.action_dim!r}")
        dims = tuple(int(d) for d in self.continuous_dims)
        if any(d < 0 or d >= self.action_dim for d in dims):
            raise ValueError(
                f"continuous_dims must be indices in [0, {self.action_dim}), got {list(dims)}"
            )
        if len(set(dims)) != len(dims):
            raise ValueError(f"continuous_dims must not repeat an index, got {list(dims)}")
        object.__setattr__(self, "continuous_dims", tuple(sorted(dims)))
        c = len(dims)

        if self.max_delta is None:
            raise ValueError("max_delta is required")
        hi = _per_dim(self.max_delta, c, "max_delta")
        lo = -hi if self.min_delta is None else _per_dim(self.min_delta, c, "min_delta")
        if np.any(lo >= hi):
            raise ValueError(
                f"min_delta must be < max_delta for every continuous dim (DiffOG Prop. 1), "
                f"got min_delta={lo.tolist()} max_delta={hi.tolist()}"
            )
        object.__setattr__(self, "lo_delta", lo)
        object.__setattr__(self, "hi_delta", hi)

        alpha = float(self.smooth_weight)
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"smooth_weight must be finite and >= 0, got {self.smooth_weight!r}")
        object.__setattr__(self, "smooth_weight", alpha)

        for lo_name, hi_name, lo_attr, hi_attr in (
            ("min_value", "max_value", "lo_value", "hi_value"),
            ("position_min", "position_max", "lo_position", "hi_position"),
        ):
            lo_v = _per_dim(getattr(self, lo_name), c, lo_name)
            hi_v = _per_dim(getattr(self, hi_name), c, hi_name)
            if (lo_v is not None or hi_v is not None) and c == 0:
                raise ValueError(f"{lo_name}/{hi_name} need at least one continuous dim")
            if lo_v is not None and hi_v is None:
                hi_v = np.full(c, np.inf)
            if hi_v is not None and lo_v is None:
                lo_v = np.full(c, -np.inf)
            if lo_v is not None and np.any(lo_v >= hi_v):
                raise ValueError(
                    f"{lo_name} must be < {hi_name}, got {lo_v.tolist()} and {hi_v.tolist()}"
                )
            object.__setattr__(self, lo_attr, lo_v)
            object.__setattr__(self, hi_attr, hi_v)

        pdt = float(self.position_dt)
        if not math.isfinite(pdt) or pdt <= 0:
            raise ValueError(f"position_dt must be finite and > 0, got {self.position_dt!r}")
        object.__setattr__(self, "position_dt", pdt)

    # ------------------------------------------------------------------ identity
    def key(self) -> tuple:
        """A hashable canonical form: two specs with equal keys define the same QP."""

        def arr(a: np.ndarray | None) -> tuple | None:
            return None if a is None else tuple(float(v) for v in a)

        return (
            self.horizon,
            self.action_dim,
            tuple(self.continuous_dims),
            arr(self.lo_delta),
            arr(self.hi_delta),
            self.smooth_weight,
            arr(self.lo_value),
            arr(self.hi_value),
            arr(self.lo_position),
            arr(self.hi_position),
            self.position_dt,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrajOptSpec) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    # ------------------------------------------------------------------ derived sizes
    @property
    def n(self) -> int:
        """Number of QP variables, T * D."""
        return self.horizon * self.action_dim

    @property
    def n_continuous(self) -> int:
        return len(self.continuous_dims)

    @property
    def has_value_bounds(self) -> bool:
        return self.lo_value is not None

    @property
    def has_position_bounds(self) -> bool:
        return self.lo_position is not None

    @property
    def is_box_structured(self) -> bool:
        """True when only first-difference (and continuity) bounds apply: the fast path's case."""
        return not (self.has_value_bounds or self.has_position_bounds)

    def selection_mask(self) -> np.ndarray:
        """Boolean [D] mask of the continuous dims (the rows of S)."""
        mask = np.zeros(self.action_dim, dtype=bool)
        mask[list(self.continuous_dims)] = True
        return mask

    def replace(self, **changes) -> TrajOptSpec:
        """A copy with some constructor arguments changed (validated again)."""
        args = {
            "horizon": self.horizon,
            "action_dim": self.action_dim,
            "continuous_dims": self.continuous_dims,
            "max_delta": self.hi_delta,
            "min_delta": self.lo_delta,
            "smooth_weight": self.smooth_weight,
            "min_value": self.lo_value,
            "max_value": self.hi_value,
            "position_min": self.lo_position,
            "position_max": self.hi_position,
            "position_dt": self.position_dt,
        }
        for key in ("min_value", "max_value", "position_min", "position_max"):
            arr = args[key]
            if arr is not None and np.all(np.isinf(arr)):
                args[key] = None  # the side was left open; keep it open
        args.update(changes)
        return TrajOptSpec(**args)
