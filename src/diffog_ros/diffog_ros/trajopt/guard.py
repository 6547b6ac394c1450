"""Message-independent guards for the trajectory-optimisation node (no rclpy, numpy only).

What a deployment needs around :func:`diffog_ros.trajopt.solve_qp`:

* :func:`parse_chunk` turns the fields of an incoming action chunk into a ``[T, D]`` float64 array, or
  raises :class:`Rejected` with one reason from :data:`CHUNK_REJECT_REASONS` (NaN/Inf, wrong or
  duplicated names, ragged or empty points, non-increasing or off-grid ``time_from_start``, stale).
* :func:`parse_executed` does the same for the executed action (the continuity anchor of DiffOG
  Sec. V-D / LeTO eq. 11): names, values and stamp of what the controller actually sent.
* :func:`bound_violation` / :func:`active_bound_count` evaluate the bounds of DiffOG eq. (7) plus the
  continuity row on a finished chunk; the node calls them just before publishing.
* :class:`ReasonCounter` and :class:`LogThrottle` count and rate-limit rejects by reason.

Times are in seconds (float), values in the chunk's own units (rad or m).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diffog_ros.trajopt.spec import TrajOptSpec

__all__ = [
    "CHUNK_REJECT_REASONS",
    "EXECUTED_REJECT_REASONS",
    "FEASIBILITY_TOL",
    "ChunkLimits",
    "ExecutedAction",
    "LogThrottle",
    "ReasonCounter",
    "Rejected",
    "active_bound_count",
    "as_mapping",
    "bound_violation",
    "parse_chunk",
    "parse_executed",
]

# Bounds must hold to this absolute tolerance (the solve_qp contract, issue 2).
FEASIBILITY_TOL = 1e-9

# Every reason a chunk can be rejected for (nothing is published for a rejected chunk).
CHUNK_REJECT_REASONS = (
    "empty",  # no points, or points without positions
    "too_long",  # more points than max_horizon
    "duplicate_names",  # a joint name repeated
    "wrong_names",  # names missing, unexpected, or in another order than joint_names
    "ragged",  # a point whose positions do not have one value per name
    "non_finite",  # NaN or Inf in a position
    "time_not_increasing",  # time_from_start not strictly increasing
    "time_step_mismatch",  # time_from_start steps differ from dt
    "stale",  # header.stamp older than max_chunk_age
    "future_stamp",  # header.stamp more than max_chunk_age in the future (clock skew)
    "model_dims",  # horizon / dims do not match the loaded model
    "unsafe_output",  # neither the method nor the clipping fallback met the bounds
    "internal_error",  # an unexpected exception while handling the chunk (logged with traceback)
)

# Every reason an executed action (the continuity anchor) can be rejected for.
EXECUTED_REJECT_REASONS = ("empty", "duplicate_names", "ragged", "non_finite", "internal_error")


class Rejected(ValueError):
    """A message that must not be used; ``reason`` is a short key, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ChunkLimits:
    """What an acceptable chunk looks like (from the node's parameters).

    Attributes:
        joint_names: expected action names, in order.
        dt: expected spacing of ``time_from_start`` [s].
        max_chunk_age: a chunk stamped longer ago than this is stale [s].
        max_horizon: most points accepted in one chunk.
        time_tol: allowed deviation of each time step from ``dt`` [s].
    """

    joint_names: tuple[str, ...]
    dt: float
    max_chunk_age: float
    max_horizon: int
    time_tol: float = 1e-6

    @property
    def step_tol(self) -> float:
        """Tolerance on each time step: ``time_tol`` or 1 % of ``dt``, whichever is larger."""
        return max(self.time_tol, 0.01 * self.dt)


def _check_names(names: Sequence[str], expected: Sequence[str] | None) -> None:
    if len(set(names)) != len(names):
        dup = sorted(n for n, c in Counter(names).items() if c > 1)
        raise Rejected("duplicate_names", f"names repeated: {dup}")
    if expected is not None and tuple(names) != tuple(expected):
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        if missing or extra:
            detail = f"missing {missing}, unexpected {extra}"
        else:
            detail = f"order {list(names)} differs from joint_names {list(expected)}"
        raise Rejected("wrong_names", detail)


def parse_chunk(
    names: Sequence[str],
    positions: Sequence[Sequence[float]],
    times: Sequence[float],
    stamp: float,
    now: float,
    limits: ChunkLimits,
) -> np.ndarray:
    """Validate one action chunk and return it as a ``[T, D]`` float64 array.

    Args:
        names: joint names of the chunk (``JointTrajectory.joint_names``).
        positions: ``positions`` of each point, T sequences of D values.
        times: ``time_from_start`` of each point [s].
        stamp: ``header.stamp`` [s], the time of the observation the chunk was computed from.
        now: the current time [s] on the same clock.
        limits: what is acceptable.

    Raises:
        Rejected: with the first failing reason, checked in the order of
            :data:`CHUNK_REJECT_REASONS` (structure first, then values, then timing, then age).
    """
    t_len = len(positions)
    if t_len == 0:
        raise Rejected("empty", "the chunk has no points")
    if t_len > limits.max_horizon:
        raise Rejected("too_long", f"{t_len} points > max_horizon {limits.max_horizon}")
    _check_names(names, limits.joint_names)
    d = len(names)
    lengths = [len(p) for p in positions]
    if d == 0 or any(n == 0 for n in lengths):
        raise Rejected("empty", "points without positions")
    if any(n != d for n in lengths):
        bad = next(k for k, n in enumerate(lengths) if n != d)
        raise Rejected("ragged", f"point {bad} has {lengths[bad]} positions, expected {d}")
    if len(times) != t_len:
        raise Rejected("ragged", f"{len(times)} times for {t_len} points")
    chunk = np.array(positions, dtype=np.float64)  # [T, D]
    if not np.all(np.isfinite(chunk)):
        k, j = np.argwhere(~np.isfinite(chunk))[0]
        raise Rejected("non_finite", f"point {k}, joint {names[j]!r} is {chunk[k, j]}")
    t = np.asarray(times, dtype=np.float64)
    steps = np.diff(t)
    if not np.all(np.isfinite(t)) or np.any(steps <= 0.0):
        raise Rejected("time_not_increasing", f"time_from_start {t.tolist()} [s]")
    off = np.abs(steps - limits.dt)
    if np.any(off > limits.step_tol):
        k = int(np.argmax(off))
        raise Rejected(
            "time_step_mismatch",
            f"step {k}->{k + 1} is {steps[k]:.6f} s, expected dt = {limits.dt:.6f} s",
        )
    age = now - stamp
    if not math.isfinite(age) or age > limits.max_chunk_age:
        raise Rejected(
            "stale", f"chunk is {age:.3f} s old > max_chunk_age {limits.max_chunk_age} s"
        )
    if age < -limits.max_chunk_age:
        raise Rejected("future_stamp", f"chunk is stamped {-age:.3f} s in the future")
    return chunk


@dataclass(frozen=True)
class ExecutedAction:
    """The newest action the controller sent: values by name and when it was sent [s]."""

    names: tuple[str, ...]
    values: np.ndarray  # [len(names)] float64, read-only
    stamp: float

    def select(self, wanted: Sequence[str]) -> np.ndarray | None:
        """Values of ``wanted`` joints in that order, or None if any of them is missing."""
        index = {n: i for i, n in enumerate(self.names)}
        try:
            return self.values[[index[n] for n in wanted]]
        except KeyError:
            return None


def parse_executed(names: Sequence[str], values: Sequence[float], stamp: float) -> ExecutedAction:
    """Validate an executed action (``sensor_msgs/JointState``: name, position, header.stamp).

    Any joint may be listed, in any order; the node picks the constrained joints by name.

    Raises:
        Rejected: reasons from :data:`EXECUTED_REJECT_REASONS`.
    """
    if len(names) == 0:
        raise Rejected("empty", "no joint names")
    _check_names(names, None)
    if len(values) != len(names):
        raise Rejected("ragged", f"{len(values)} positions for {len(names)} names")
    arr = np.array(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise Rejected("non_finite", f"joint {names[bad]!r} is {arr[bad]}")
    arr.setflags(write=False)
    return ExecutedAction(tuple(names), arr, float(stamp))


def _differences(
    y: np.ndarray, spec: TrajOptSpec, prev: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """S(y_{k+1} - y_k) for k = 0..T-2 and, with prev, S(y_0 - prev) first: ``[K, C]`` each side."""
    dims = list(spec.continuous_dims)
    c = np.asarray(y, dtype=np.float64).reshape(spec.horizon, spec.action_dim)[:, dims]
    if prev is not None:
        anchor = np.asarray(prev, dtype=np.float64).reshape(spec.action_dim)[dims]
        c = np.concatenate([anchor[None], c], axis=0)
    return np.diff(c, axis=0), c


def bound_violation(y: np.ndarray, spec: TrajOptSpec, prev: np.ndarray | None = None) -> float:
    """Largest violation of the bounds in force, 0.0 when all hold; inf if y is not finite.

    Checks min_delta <= S(y_{k+1} - y_k) <= max_delta (DiffOG eq. 7) and, when ``prev`` is given,
    min_delta <= S(y_0 - prev) <= max_delta (DiffOG Sec. V-D). ``y`` is ``[T, D]`` or ``[T*D]``.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.size != spec.n or not np.all(np.isfinite(y)):
        return math.inf
    diffs, _ = _differences(y, spec, prev)
    if diffs.size == 0:
        return 0.0
    over = diffs - spec.hi_delta
    under = spec.lo_delta - diffs
    return float(max(0.0, over.max(), under.max()))


def active_bound_count(
    y: np.ndarray, spec: TrajOptSpec, prev: np.ndarray | None = None, tol: float = 1e-7
) -> int:
    """How many difference bounds (continuity row included) ``y`` meets with equality (within tol)."""
    diffs, _ = _differences(y, spec, prev)
    if diffs.size == 0:
        return 0
    at_hi = np.abs(diffs - spec.hi_delta) <= tol
    at_lo = np.abs(diffs - spec.lo_delta) <= tol
    return int(np.count_nonzero(at_hi | at_lo))


class ReasonCounter:
    """Thread-safe counts by reason; ``known`` reasons are always reported (as 0 when unseen)."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(known, 0)

    def add(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class LogThrottle:
    """Allow one log line per key every ``period`` seconds; counts what was suppressed."""

    def __init__(self, period: float = 1.0) -> None:
        self._period = float(period)
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str, now: float) -> tuple[bool, int]:
        """(whether to log now, how many lines for ``key`` were suppressed since the last one)."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False, 0
            self._last[key] = now
            return True, self._suppressed.pop(key, 0)


def as_mapping(counter: ReasonCounter, prefix: str) -> Mapping[str, int]:
    """``{prefix + reason: count}``, sorted by reason (for diagnostics key/value lists)."""
    snap = counter.snapshot()
    return {f"{prefix}{k}": snap[k] for k in sorted(snap)}
