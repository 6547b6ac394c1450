"""Per-dimension min-max normaliser to [-1, 1] (Diffusion Policy convention, DiffOG Sec. VIII-A).

For each dim d with data range [min_d, max_d]::

    x_norm = (x - center_d) * scale_d,   center_d = (max_d + min_d) / 2,   scale_d = 2 / (max_d - min_d)
    x      = x_norm / scale_d + center_d

so min_d maps to -1 and max_d to +1.  A dim whose range is below ``range_eps`` (a constant
dim, e.g. an unused gripper) gets ``scale_d = 1`` and maps its value to 0.

DiffOG applies its trajectory constraints on the normalised scale (Table VII).  A bound ``b`` on
the *change* of dim d between steps is scale-only (the offset cancels)::

    b_norm = b_phys * scale_d = b_phys * 2 / (max_d - min_d)

while a bound on the *value* of dim d is affine: ``v_norm = (v_phys - center_d) * scale_d``.
:meth:`MinMaxNormalizer.spec_to_normalized` / :meth:`spec_to_physical` convert a whole
:class:`~diffog_ros.trajopt.TrajOptSpec` explicitly, per continuous dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from diffog_ros.trajopt.spec import TrajOptSpec

DEFAULT_RANGE_EPS = 1e-4


class MinMaxNormalizer:
    """Per-dim affine map of a feature vector to [-1, 1]; works on numpy arrays and torch tensors.

    Args:
        minimum: [D] per-dim minimum of the data.
        maximum: [D] per-dim maximum of the data.
        names: optional [D] dim names (stored with checkpoints, checked on load).
        range_eps: ranges below this are treated as constant dims (scale 1).
    """

    def __init__(
        self,
        minimum: Sequence[float] | np.ndarray,
        maximum: Sequence[float] | np.ndarray,
        names: Sequence[str] | None = None,
        range_eps: float = DEFAULT_RANGE_EPS,
    ) -> None:
        lo = np.asarray(minimum, dtype=np.float64).reshape(-1)
        hi = np.asarray(maximum, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape or lo.size == 0:
            raise ValueError(
                f"minimum and maximum must be non-empty [D] arrays of equal length, "
                f"got {lo.shape} and {hi.shape}"
            )
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("minimum and maximum must be finite")
        if np.any(hi < lo):
            raise ValueError(
                f"maximum must be >= minimum per dim, got {lo.tolist()} / {hi.tolist()}"
            )
        if names is not None and len(names) != lo.size:
            raise ValueError(f"names has {len(names)} entries for {lo.size} dims")
        if not range_eps > 0:
            raise ValueError(f"range_eps must be > 0, got {range_eps}")
        self.minimum = lo
        self.maximum = hi
        self.names = list(names) if names is not None else None
        self.range_eps = float(range_eps)
        span = hi - lo
        constant = span < self.range_eps
        self.scale = np.where(constant, 1.0, 2.0 / np.where(constant, 1.0, span))
        self.center = (hi + lo) / 2.0

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(
        cls,
        data: np.ndarray | Sequence[np.ndarray],
        names: Sequence[str] | None = None,
        range_eps: float = DEFAULT_RANGE_EPS,
    ) -> MinMaxNormalizer:
        """Fit to data of shape [..., D] (or a list of such arrays, e.g. one per episode)."""
        arrays = [data] if isinstance(data, np.ndarray) else list(data)
        if not arrays:
            raise ValueError("cannot fit a normaliser to no data")
        dim = arrays[0].shape[-1]
        flat = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1, dim) for a in arrays])
        if flat.shape[0] == 0:
            raise ValueError("cannot fit a normaliser to empty arrays")
        if not np.all(np.isfinite(flat)):
            raise ValueError("cannot fit a normaliser to non-finite data")
        return cls(flat.min(axis=0), flat.max(axis=0), names=names, range_eps=range_eps)

    @property
    def dim(self) -> int:
        return int(self.minimum.size)

    # ------------------------------------------------------------------ value maps
    def _params(self, x: Any) -> tuple[Any, Any]:
        if isinstance(x, torch.Tensor):
            return (
                torch.as_tensor(self.scale, dtype=x.dtype, device=x.device),
                torch.as_tensor(self.center, dtype=x.dtype, device=x.device),
            )
        return self.scale, self.center

    def _check(self, x: Any) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected last dim {self.dim}, got shape {tuple(x.shape)}")

    def normalize(self, x: Any) -> Any:
        """Physical -> normalised, [..., D] (numpy or torch, dtype kept)."""
        self._check(x)
        scale, center = self._params(x)
        return (x - center) * scale

    def unnormalize(self, x: Any) -> Any:
        """Normalised -> physical, [..., D] (numpy or torch, dtype kept)."""
        self._check(x)
        scale, center = self._params(x)
        return x / scale + center

    # ------------------------------------------------------------------ bound maps
    def delta_to_normalized(self, bound: Any, dims: Sequence[int]) -> np.ndarray:
        """A per-step change bound on ``dims`` (scalar or one per dim), physical -> normalised."""
        dims = list(dims)
        b = np.broadcast_to(np.asarray(bound, dtype=np.float64), (len(dims),))
        return b * self.scale[dims]

    def delta_to_physical(self, bound: Any, dims: Sequence[int]) -> np.ndarray:
        """A per-step change bound on ``dims`` (scalar or one per dim), normalised -> physical."""
        dims = list(dims)
        b = np.broadcast_to(np.asarray(bound, dtype=np.float64), (len(dims),))
        return b / self.scale[dims]

    def value_to_normalized(self, value: Any, dims: Sequence[int]) -> np.ndarray:
        dims = list(dims)
        v = np.broadcast_to(np.asarray(value, dtype=np.float64), (len(dims),))
        return (v - self.center[dims]) * self.scale[dims]

    def value_to_physical(self, value: Any, dims: Sequence[int]) -> np.ndarray:
        dims = list(dims)
        v = np.broadcast_to(np.asarray(value, dtype=np.float64), (len(dims),))
        return v / self.scale[dims] + self.center[dims]

    def spec_to_normalized(self, spec: TrajOptSpec) -> TrajOptSpec:
        """The same QP constraints expressed on the normalised scale (per continuous dim).

        The smoothing weight alpha is kept as it is (it weighs the normalised differences).
        Raises ``ValueError`` for LeTO position bounds, whose integrated form is not a per-dim map.
        """
        return self._convert_spec(spec, self.delta_to_normalized, self.value_to_normalized)

    def spec_to_physical(self, spec: TrajOptSpec) -> TrajOptSpec:
        """Inverse of :meth:`spec_to_normalized`."""
        return self._convert_spec(spec, self.delta_to_physical, self.value_to_physical)

    def _convert_spec(self, spec: TrajOptSpec, delta_map: Any, value_map: Any) -> TrajOptSpec:
        if spec.action_dim != self.dim:
            raise ValueError(
                f"spec.action_dim={spec.action_dim} but the normaliser has {self.dim} dims"
            )
        if spec.has_position_bounds:
            raise ValueError(
                "position bounds (LeTO eq. 6) cannot be converted between scales per dim; "
                "apply them to physical actions"
            )
        dims = spec.continuous_dims
        changes: dict[str, Any] = {
            "max_delta": tuple(delta_map(spec.hi_delta, dims).tolist()),
            "min_delta": tuple(delta_map(spec.lo_delta, dims).tolist()),
        }
        if spec.has_value_bounds:
            changes["min_value"] = _open_side(value_map, spec.lo_value, dims)
            changes["max_value"] = _open_side(value_map, spec.hi_value, dims)
        return spec.replace(**changes)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "minmax",
            "min": self.minimum.tolist(),
            "max": self.maximum.tolist(),
            "names": self.names,
            "range_eps": self.range_eps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MinMaxNormalizer:
        if not isinstance(data, dict) or data.get("type") != "minmax":
            raise ValueError(f"not a min-max normaliser record: {data!r:.200}")
        try:
            return cls(data["min"], data["max"], data.get("names"), data.get("range_eps", 1e-4))
        except KeyError as exc:
            raise ValueError(f"normaliser record is missing {exc}") from exc


def _open_side(value_map: Any, arr: np.ndarray, dims: Sequence[int]) -> tuple[float, ...] | None:
    """Map a value bound that may be open (+-inf) on some dims; None when open on all."""
    if np.all(np.isinf(arr)):
        return None
    return tuple(np.where(np.isinf(arr), arr, value_map(arr, dims)).tolist())
