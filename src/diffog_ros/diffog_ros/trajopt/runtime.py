"""Run-time pieces of the trajectory-optimisation node that need no ROS (no rclpy).

* :class:`TrajOptConfig` - the node's parameters as one validated, immutable object. Building one
  is how a parameter change is validated atomically: if the constructor raises ``ValueError`` the
  change is refused with that message and the old object stays in force.
* :func:`continuity_anchor` - picks the continuity anchor (DiffOG Sec. V-D, LeTO eq. 11) from the
  newest executed action, or says why there is none.
* :class:`ChunkOptimiser` - runs one method on one chunk under a deadline, checks the bounds just
  before returning and falls back to greedy clipping (DiffOG Sec. VI-A) when the method fails, is
  late, or breaks a bound. What it returns always meets the bounds it was given (to
  :data:`~diffog_ros.trajopt.guard.FEASIBILITY_TOL`); otherwise it raises ``Rejected``.

Units: bounds in the chunk's units per step (rad or m per step), times in seconds.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from diffog_ros.trajopt.baselines import clip_chunk, penalty_chunk
from diffog_ros.trajopt.guard import (
    CHUNK_REJECT_REASONS,
    EXECUTED_REJECT_REASONS,
    FEASIBILITY_TOL,
    ChunkLimits,
    ExecutedAction,
    ReasonCounter,
    Rejected,
    active_bound_count,
    bound_violation,
)
from diffog_ros.trajopt.model_io import TrajOptModel
from diffog_ros.trajopt.spec import TrajOptSpec

__all__ = [
    "BACKENDS",
    "CONTINUITY_SKIP_REASONS",
    "FALLBACK_REASONS",
    "METHODS",
    "MODEL_METHODS",
    "ChunkOptimiser",
    "OptimiserStats",
    "Outcome",
    "TrajOptConfig",
    "continuity_anchor",
    "default_constrained",
    "prev_vector",
]

METHODS = ("static", "diffog", "leto", "clip", "penalty", "passthrough")
MODEL_METHODS = ("diffog", "leto")
BACKENDS = ("fast", "qpth")
# Why a chunk was solved without the continuity row (counted, with a warning).
CONTINUITY_SKIP_REASONS = ("no_prev", "stale_prev", "prev_missing_joints")
# Why the published chunk came from greedy clipping instead of the method.
FALLBACK_REASONS = ("solver_error", "deadline", "solver_busy", "bound_check")


def default_constrained(joint_names: Sequence[str]) -> tuple[str, ...]:
    """The default continuous dims S: every action name without "gripper"."""
    return tuple(n for n in joint_names if "gripper" not in n)


def _floats(value: Any, name: str) -> tuple[float, ...]:
    if value is None:
        return ()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers, got {value!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite, got {list(out)}")
    return out


def _names(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings, got {value!r}")
    out = tuple(value)
    if any(not v.strip() for v in out):
        raise ValueError(f"{name} must not contain empty names, got {list(out)}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a name, got {list(out)}")
    return out


def _positive(values: Mapping[str, Any], name: str) -> float:
    raw = values.get(name)
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be > 0, got {raw!r}")
    return v


def _choice(values: Mapping[str, Any], name: str, options: Sequence[str]) -> str:
    v = values.get(name)
    if v not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {v!r}")
    return str(v)


@dataclass(frozen=True)
class TrajOptConfig:
    """The trajectory-optimisation node's parameters, validated (see docs/interfaces.md).

    Build with :meth:`from_values`; every field is immutable so a config can be swapped atomically
    between solves. ``min_delta`` is resolved (``-max_delta`` when not given) and both bound tuples
    have one value per constrained joint.
    """

    method: str
    joint_names: tuple[str, ...]
    constrained_joints: tuple[str, ...]
    max_delta: tuple[float, ...]
    min_delta: tuple[float, ...]
    smooth_weight: float
    dt: float
    use_continuity: bool
    max_chunk_age: float
    max_prev_age: float
    model_path: str
    backend: str
    solve_deadline: float
    max_horizon: int

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> TrajOptConfig:
        """Validate parameter values (a mapping by parameter name).

        Raises:
            ValueError: naming the parameter and the offending value.
        """
        method = _choice(values, "method", METHODS)
        joints = _names(values.get("joint_names"), "joint_names")
        if not joints:
            raise ValueError(
                "joint_names must list the action names (set it from the robot config)"
            )
        constrained = _names(values.get("constrained_joints"), "constrained_joints")
        if not constrained:
            constrained = default_constrained(joints)
        unknown = [n for n in constrained if n not in joints]
        if unknown:
            raise ValueError(f"constrained_joints {unknown} are not in joint_names {list(joints)}")
        if not constrained:
            raise ValueError("constrained_joints is empty: no joint would be bounded")
        c = len(constrained)
        hi = _floats(values.get("max_delta"), "max_delta")
        lo = _floats(values.get("min_delta"), "min_delta")
        for name, arr in (("max_delta", hi), ("min_delta", lo)):
            if arr and len(arr) not in (1, c):
                raise ValueError(
                    f"{name} must have 1 value or one per constrained joint ({c}), got {len(arr)}"
                )
        if not hi:
            raise ValueError("max_delta must be given (per-step bound, rad or m per step)")
        hi = hi * c if len(hi) == 1 else hi
        if any(v <= 0.0 for v in hi):
            raise ValueError(f"max_delta must be > 0 for every constrained joint, got {list(hi)}")
        lo = tuple(-v for v in hi) if not lo else (lo * c if len(lo) == 1 else lo)
        if any(v >= 0.0 for v in lo):
            raise ValueError(
                f"min_delta must be < 0 for every constrained joint (holding still must stay "
                f"feasible), got {list(lo)}"
            )
        try:
            smooth = float(values.get("smooth_weight", 0.0))
        except (TypeError, ValueError):
            smooth = math.nan
        if not math.isfinite(smooth) or smooth < 0.0:
            raise ValueError(f"smooth_weight must be >= 0, got {values.get('smooth_weight')!r}")
        use_cont = values.get("use_continuity", True)
        if not isinstance(use_cont, bool):
            raise ValueError(f"use_continuity must be a bool, got {use_cont!r}")
        model_path = str(values.get("model_path") or "")
        if method in MODEL_METHODS and not model_path.strip():
            raise ValueError(f"method {method!r} needs model_path (a {method} checkpoint)")
        max_horizon = values.get("max_horizon", 256)
        if isinstance(max_horizon, bool) or not isinstance(max_horizon, int) or max_horizon < 1:
            raise ValueError(f"max_horizon must be an int >= 1, got {max_horizon!r}")
        config = cls(
            method=method,
            joint_names=joints,
            constrained_joints=constrained,
            max_delta=hi,
            min_delta=lo,
            smooth_weight=smooth,
            dt=_positive(values, "dt"),
            use_continuity=use_cont,
            max_chunk_age=_positive(values, "max_chunk_age"),
            max_prev_age=_positive(values, "max_prev_age"),
            model_path=model_path,
            backend=_choice(values, "backend", BACKENDS),
            solve_deadline=_positive(values, "solve_deadline"),
            max_horizon=max_horizon,
        )
        config.spec_for(2)  # TrajOptSpec validates the bounds again (DiffOG Prop. 1)
        return config

    @property
    def continuous_dims(self) -> tuple[int, ...]:
        """Indices of the constrained joints in the action vector (the rows of S)."""
        index = {n: i for i, n in enumerate(self.joint_names)}
        return tuple(index[n] for n in self.constrained_joints)

    @property
    def limits(self) -> ChunkLimits:
        return _limits(self)

    def spec_for(self, horizon: int) -> TrajOptSpec:
        """The QP spec for a chunk of ``horizon`` steps under this config (cached)."""
        return _spec(self, horizon)

    def changes(self, other: TrajOptConfig) -> dict[str, tuple[Any, Any]]:
        """``{field: (self value, other value)}`` for the fields that differ."""
        out = {}
        for name in self.__dataclass_fields__:
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out[name] = (a, b)
        return out


@lru_cache(maxsize=64)
def _spec(config: TrajOptConfig, horizon: int) -> TrajOptSpec:
    # DiffOG eq. (6)-(7): bounds on S(y_{k+1} - y_k), smoothing weight alpha.
    dims = config.continuous_dims
    order = sorted(range(len(dims)), key=lambda i: dims[i])  # TrajOptSpec sorts its dims
    return TrajOptSpec(
        horizon=horizon,
        action_dim=len(config.joint_names),
        continuous_dims=dims,
        max_delta=tuple(config.max_delta[i] for i in order),
        min_delta=tuple(config.min_delta[i] for i in order),
        smooth_weight=config.smooth_weight,
    )


@lru_cache(maxsize=64)
def _limits(config: TrajOptConfig) -> ChunkLimits:
    return ChunkLimits(
        joint_names=config.joint_names,
        dt=config.dt,
        max_chunk_age=config.max_chunk_age,
        max_horizon=config.max_horizon,
    )


def continuity_anchor(
    executed: ExecutedAction | None, now: float, config: TrajOptConfig
) -> tuple[np.ndarray | None, str | None]:
    """The continuity anchor S prev from the newest executed action, or why there is none.

    Returns ``(values, None)`` with ``values`` for ``config.constrained_joints`` (in that order),
    ``(None, reason)`` with a reason from :data:`CONTINUITY_SKIP_REASONS`, or ``(None, None)`` when
    continuity is switched off. Never uses the last planned chunk (DiffOG Sec. V-D's
    c_{t-1} is what was actually executed).
    """
    if not config.use_continuity:
        return None, None
    if executed is None:
        return None, "no_prev"
    if now - executed.stamp > config.max_prev_age:
        return None, "stale_prev"
    values = executed.select(config.constrained_joints)
    if values is None:
        return None, "prev_missing_joints"
    return values, None


def prev_vector(a0: np.ndarray, values: np.ndarray, config: TrajOptConfig) -> np.ndarray:
    """A full ``[D]`` prev for the solvers: anchor values on S, the chunk's own a_0 elsewhere.

    Only the continuous dims of prev enter the QP (the continuity row is on S y_0 only).
    """
    prev = np.array(a0, dtype=np.float64, copy=True)
    prev[list(config.continuous_dims)] = values
    return prev


@dataclass(frozen=True)
class Outcome:
    """One optimised chunk and how it was obtained."""

    y: np.ndarray  # [T, D] float64, meets the bounds
    method: str  # the configured method
    fallback: str | None  # None, or a reason from FALLBACK_REASONS (y then comes from clipping)
    detail: str  # why the fallback happened ("" without fallback)
    solve_time: float  # wall time of the method [s] (up to the deadline)
    active_bounds: int  # bounds met with equality (continuity row included)
    continuity: bool  # whether the continuity row was in force


# --------------------------------------------------------------------------- methods
@lru_cache(maxsize=8)
def _identity(n: int):
    import torch

    return torch.eye(n, dtype=torch.float64)


def _static(a: np.ndarray, prev: np.ndarray | None, spec: TrajOptSpec, config, model):
    """DiffOG eq. (6) with Q = I and q = -a: the closest chunk (with smoothing) meeting eq. (7)."""
    import torch

    from diffog_ros.trajopt.qp import solve_qp

    q = -torch.from_numpy(a.reshape(1, spec.n))
    p = None if prev is None else torch.from_numpy(prev.reshape(1, spec.action_dim))
    y = solve_qp(_identity(spec.n), q, spec, prev=p, backend=config.backend)
    return y.detach().cpu().numpy().reshape(spec.horizon, spec.action_dim)


def _clip(a, prev, spec, config, model):
    return clip_chunk(a[None], spec, None if prev is None else prev[None])[0]


def _penalty(a, prev, spec, config, model):
    # DiffOG Sec. VI-B with Table VIII's 'Real ALOHA' defaults (the core's defaults).
    return penalty_chunk(a[None], spec, None if prev is None else prev[None])[0]


def _passthrough(a, prev, spec, config, model):
    return a.copy()


def _learned(a, prev, spec, config, model: TrajOptModel):
    y = model.optimise(a[None], None if prev is None else prev[None], spec)
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    return np.asarray(y, dtype=np.float64).reshape(spec.horizon, spec.action_dim)


_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "static": _static,
    "clip": _clip,
    "penalty": _penalty,
    "passthrough": _passthrough,
    "diffog": _learned,
    "leto": _learned,
}
_INLINE = ("clip", "passthrough")  # cheap and bounded: no worker thread, no deadline


class ChunkOptimiser:
    """Runs the configured method on one chunk at a time with a deadline and a clipping fallback.

    The method runs on one worker thread; the caller waits at most ``config.solve_deadline``.
    A late solve is abandoned (its result discarded) and, while it is still running, further
    chunks go straight to the fallback (``solver_busy``).
    """

    def __init__(self) -> None:
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="trajopt-solve")
        self._pending: cf.Future | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def warm_up(self, config: TrajOptConfig) -> None:
        """Run the QP once on a resting chunk so the first real chunk does not pay for imports."""
        a = np.zeros((2, len(config.joint_names)))
        spec = config.spec_for(2)
        for fn in (_static, _clip):
            self._pool.submit(fn, a, None, spec, config, None).result()

    def _run_method(self, fn, args, deadline: float) -> tuple[np.ndarray | None, str | None, str]:
        if self._pending is not None and not self._pending.done():
            return None, "solver_busy", "the previous solve is still running past its deadline"
        fut = self._pool.submit(fn, *args)
        try:
            return fut.result(timeout=deadline), None, ""
        except cf.TimeoutError:
            self._pending = fut
            return None, "deadline", f"the solve took longer than solve_deadline {deadline} s"
        except (ValueError, RuntimeError, ArithmeticError, AttributeError, TypeError) as exc:
            return None, "solver_error", f"{type(exc).__name__}: {exc}"

    def optimise(
        self,
        a: np.ndarray,
        anchor: np.ndarray | None,
        config: TrajOptConfig,
        model: TrajOptModel | None = None,
    ) -> Outcome:
        """Optimise one chunk ``a`` ``[T, D]`` (validated, finite) under ``config``.

        Args:
            a: the raw chunk (DiffOG) or LeTO's linear term, in the action layout.
            anchor: continuity values for ``config.constrained_joints`` or None (no continuity).
            config: the parameters in force for this chunk (never changes mid-solve).
            model: the loaded layer for ``diffog`` / ``leto``.

        Raises:
            Rejected: ``model_dims`` (chunk does not fit the model) or ``unsafe_output`` (nothing
                that meets the bounds could be produced; nothing must be published).
        """
        t_len, d = a.shape
        if config.method in MODEL_METHODS:
            if model is None:
                raise Rejected("model_dims", f"method {config.method!r} has no model loaded")
            if (t_len, d) != (model.horizon, model.action_dim):
                raise Rejected(
                    "model_dims",
                    f"chunk is {t_len}x{d}, the model expects {model.horizon}x{model.action_dim}",
                )
        spec = config.spec_for(t_len)
        prev = None if anchor is None else prev_vector(a[0], anchor, config)
        fn = _METHODS[config.method]
        args = (a, prev, spec, config, model)
        start = time.perf_counter()
        if config.method in _INLINE:
            y, fallback, detail = fn(*args), None, ""
        else:
            y, fallback, detail = self._run_method(fn, args, config.solve_deadline)
        solve_time = time.perf_counter() - start
        if y is not None:
            violation = bound_violation(y, spec, prev)
            if violation > FEASIBILITY_TOL:
                fallback = "bound_check"
                detail = f"{config.method} broke a bound by {violation:.3g}"
        if fallback is not None:
            # Greedy clipping (DiffOG Sec. VI-A) of the method's output when it is usable,
            # of the raw chunk otherwise.
            base = y if (y is not None and np.all(np.isfinite(y))) else a
            y = clip_chunk(base[None], spec, None if prev is None else prev[None])[0]
        violation = bound_violation(y, spec, prev)
        if violation > FEASIBILITY_TOL:
            raise Rejected(
                "unsafe_output", f"clipped chunk still breaks a bound by {violation:.3g}"
            )
        return Outcome(
            y=y,
            method=config.method,
            fallback=fallback,
            detail=detail,
            solve_time=solve_time,
            active_bounds=active_bound_count(y, spec, prev),
            continuity=prev is not None,
        )


class OptimiserStats:
    """Counters behind the node's diagnostics (thread-safe; see docs/interfaces.md for the keys).

    Invariant once the node is idle: ``chunks_received == chunks_published + rejects_total``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rejects = ReasonCounter(CHUNK_REJECT_REASONS)
        self.fallbacks = ReasonCounter(FALLBACK_REASONS)
        self.continuity_skipped = ReasonCounter(CONTINUITY_SKIP_REASONS)
        self.executed_rejects = ReasonCounter(EXECUTED_REJECT_REASONS)
        self._n = dict.fromkeys(
            ("chunks_received", "chunks_published", "continuity_used", "executed_received"), 0
        )
        self._last_solve = math.nan
        self._max_solve = 0.0
        self._last_active = 0
        self._last_fallback = ""
        self._seen_problems = 0

    def count(self, key: str) -> None:
        with self._lock:
            self._n[key] += 1

    def record(self, outcome: Outcome) -> None:
        """Account for one published chunk."""
        with self._lock:
            self._n["chunks_published"] += 1
            self._n["continuity_used"] += int(outcome.continuity)
            self._last_solve = outcome.solve_time
            self._max_solve = max(self._max_solve, outcome.solve_time)
            self._last_active = outcome.active_bounds
            if outcome.fallback is not None:
                self._last_fallback = f"{outcome.fallback}: {outcome.detail}"
        if outcome.fallback is not None:
            self.fallbacks.add(outcome.fallback)

    def report(self, config: TrajOptConfig) -> tuple[int, str, list[tuple[str, str]]]:
        """(level 0 OK / 1 WARN, summary, key/value pairs) for a diagnostics status.

        WARN when rejects, fallbacks or continuity skips happened since the previous report.
        Resets the per-period maximum solve time.
        """
        rejects, fallbacks = self.rejects.snapshot(), self.fallbacks.snapshot()
        skipped, ex_rejects = self.continuity_skipped.snapshot(), self.executed_rejects.snapshot()
        with self._lock:
            n = dict(self._n)
            last, peak, active = self._last_solve, self._max_solve, self._last_active
            last_fallback = self._last_fallback
            self._max_solve = 0.0
            problems = sum(rejects.values()) + sum(fallbacks.values()) + sum(skipped.values())
            new_problems, self._seen_problems = problems - self._seen_problems, problems
        values: list[tuple[str, str]] = [
            ("method", config.method),
            ("backend", config.backend),
            ("model_path", config.model_path),
            ("use_continuity", str(config.use_continuity).lower()),
            *((k, str(v)) for k, v in n.items()),
            ("solve_time_ms_last", f"{last * 1e3:.3f}"),
            ("solve_time_ms_max_period", f"{peak * 1e3:.3f}"),
            ("active_bounds_last", str(active)),
            ("rejects_total", str(sum(rejects.values()))),
            *((f"reject.{k}", str(v)) for k, v in sorted(rejects.items())),
            ("fallbacks_total", str(sum(fallbacks.values()))),
            *((f"fallback.{k}", str(v)) for k, v in sorted(fallbacks.items())),
            ("fallback_last", last_fallback),
            ("continuity_skipped_total", str(sum(skipped.values()))),
            *((f"continuity_skipped.{k}", str(v)) for k, v in sorted(skipped.items())),
            ("executed_rejects_total", str(sum(ex_rejects.values()))),
            *((f"executed_reject.{k}", str(v)) for k, v in sorted(ex_rejects.items())),
        ]
        if new_problems:
            summary = f"{new_problems} rejects/fallbacks/continuity skips since the last report"
            return 1, summary, values
        return 0, f"{config.method}: ok", values
