"""Action-chunk validation and the latency-compensated execution queue (no rclpy).

A chunk is ``T`` actions over the robot's joint names, computed from an observation taken at
``stamp``; action ``k`` is meant for time ``stamp + offsets[k]`` (``offsets[k] = time_from_start``,
normally ``k * dt``). The controller executes ``n_action_steps`` of them, each at the control tick
nearest its time, counted from the first step that is not yet past when the chunk arrives:

* a step whose time has passed (``t_k < now - dt/2``) is skipped and counted -- inference and
  transport latency is compensated by not replaying the past, and the steps after it are the
  ones executed (diffusion_policy's real-robot practice), so a policy slower than
  ``n_action_steps`` ticks still moves the robot while its chunk lasts;
* the front step is executed once ``t_k <= now + dt/2``;
* a newer chunk replaces the queue; an empty queue means hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Reject reasons for chunks / joint commands (diagnostics "reject.<reason>").
NAMES = "names"
NON_FINITE = "non_finite"
SHAPE = "shape"
TIMING = "timing"


class ChunkError(ValueError):
    """A malformed chunk or command; ``reason`` is one of the module's reject reasons."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Chunk:
    stamp: float  # s, time of the observation the chunk was computed from
    offsets: np.ndarray  # (T,) s, time_from_start of each step
    actions: np.ndarray  # (T, D) in the robot's joint order


def check_names(
    names: Sequence[str], expected: Sequence[str], *, allow_subset: bool = False
) -> list[int]:
    """Indices of ``names`` in ``expected``; raises :class:`ChunkError` (``names``) when wrong.

    Unknown or duplicated names are always refused; missing names only when ``allow_subset`` is
    False. Order may differ from ``expected`` (the result maps it).
    """
    names = list(names)
    expected = list(expected)
    unknown = [n for n in names if n not in expected]
    dupes = sorted({n for n in names if names.count(n) > 1})
    missing = [] if allow_subset else [n for n in expected if n not in names]
    if unknown or dupes or missing or not names:
        raise ChunkError(
            NAMES,
            f"joint names do not match the robot: unknown {unknown}, duplicated {dupes}, "
            f"missing {missing} (expected {expected})",
        )
    return [expected.index(n) for n in names]


def make_chunk(
    names: Sequence[str],
    expected: Sequence[str],
    stamp: float,
    offsets: Sequence[float],
    positions: Sequence[Sequence[float]],
) -> Chunk:
    """Validate a chunk (names, shape, finiteness, increasing times) and reorder to ``expected``."""
    idx = check_names(names, expected)
    d = len(expected)
    if len(positions) == 0:
        raise ChunkError(SHAPE, "chunk has no points")
    if any(len(p) != len(idx) for p in positions):
        lengths = sorted({len(p) for p in positions})
        raise ChunkError(SHAPE, f"every point needs {len(idx)} positions, got lengths {lengths}")
    if len(offsets) != len(positions):
        raise ChunkError(SHAPE, "one time_from_start per point is required")
    raw = np.asarray(positions, dtype=np.float64)
    if not np.all(np.isfinite(raw)):
        bad = sorted({expected[idx[j]] for j in np.argwhere(~np.isfinite(raw))[:, 1]})
        raise ChunkError(NON_FINITE, f"chunk holds non-finite values at {bad}")
    t = np.asarray(offsets, dtype=np.float64)
    if not np.all(np.isfinite(t)) or not np.isfinite(stamp):
        raise ChunkError(TIMING, "stamp and time_from_start must be finite")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise ChunkError(TIMING, "time_from_start must increase strictly from point to point")
    actions = np.empty((raw.shape[0], d))
    actions[:, idx] = raw
    return Chunk(float(stamp), t, actions)


class ChunkScheduler:
    """The queue of the current chunk's remaining steps (see module docstring)."""

    def __init__(self) -> None:
        self._times = np.zeros(0)
        self._actions = np.zeros((0, 0))
        self._i = 0

    def __len__(self) -> int:
        return len(self._times) - self._i

    def load(self, chunk: Chunk, n_steps: int, now: float | None = None, dt: float = 0.0) -> int:
        """Replace the queue with ``n_steps`` steps of ``chunk`` from its first step not yet past at
        ``now`` (from step 0 without ``now``); returns the steps of the old queue dropped. The past
        steps stay at the front, so :meth:`pop` skips and counts them."""
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        dropped = len(self)
        past = 0
        if now is not None:
            past = int(np.count_nonzero(chunk.stamp + chunk.offsets < now - dt / 2.0))
        k = min(past + n_steps, len(chunk.offsets))
        self._times = chunk.stamp + chunk.offsets[:k]
        self._actions = chunk.actions[:k]
        self._i = 0
        return dropped

    def clear(self) -> int:
        dropped = len(self)
        self._i = len(self._times)
        return dropped

    def next_time(self) -> float | None:
        return float(self._times[self._i]) if len(self) else None

    def pop(self, now: float, dt: float) -> tuple[np.ndarray | None, int]:
        """The action due at ``now`` (or None) and how many passed steps were skipped."""
        half = dt / 2.0
        skipped = 0
        while self._i < len(self._times) and self._times[self._i] < now - half:
            self._i += 1
            skipped += 1
        if self._i < len(self._times) and self._times[self._i] <= now + half:
            action = self._actions[self._i].copy()
            self._i += 1
            return action, skipped
        return None, skipped
