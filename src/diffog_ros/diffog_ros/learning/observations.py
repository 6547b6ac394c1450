"""Timestamped observation history for policy inference (no rclpy; used by the policy node).

Each stream (e.g. 'qpos', 'images/cam_high') keeps its newest samples with their stamps.  A
policy needs ``n_obs`` steps spaced ``dt`` apart ending at the observation time

    t_obs = min over streams of (newest stamp of the stream)

i.e. the newest instant for which every stream has a sample.  Step k (k = 0..n_obs-1) takes, per
stream, the sample nearest to t_obs - (n_obs-1-k) dt (never one after t_obs); when the history
does not reach that far back (start-up) the oldest sample is repeated, as the training windows
repeat an episode's first step.  Observations older than ``max_age`` are
refused (:class:`ObservationRejected` with reason 'stale'); a stream without samples gives
reason 'missing'.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Sequence

import numpy as np


class ObservationRejected(Exception):
    """No usable observation window; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ObservationHistory:
    """Thread-safe per-stream ring buffers of (stamp [s], value)."""

    def __init__(self, keys: Sequence[str], capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.keys = list(keys)
        self._lock = threading.Lock()
        self._buf: dict[str, deque[tuple[float, np.ndarray]]] = {
            k: deque(maxlen=capacity) for k in self.keys
        }

    def add(self, key: str, stamp: float, value: np.ndarray) -> None:
        """Append a sample; out-of-order samples (older than the newest) are inserted in order."""
        buf = self._buf[key]
        with self._lock:
            if buf and stamp < buf[-1][0]:
                items = list(buf)
                pos = bisect.bisect_right([s for s, _ in items], stamp)
                items.insert(pos, (stamp, value))
                buf.clear()
                buf.extend(items[-buf.maxlen :] if buf.maxlen else items)
            else:
                buf.append((stamp, value))

    def newest_stamp(self, key: str) -> float | None:
        with self._lock:
            buf = self._buf[key]
            return buf[-1][0] if buf else None

    def window(
        self, n_obs: int, dt: float, now: float, max_age: float
    ) -> tuple[dict[str, np.ndarray], float]:
        """({key: [n_obs, ...] stacked samples}, t_obs) or ObservationRejected."""
        with self._lock:
            snap = {k: list(b) for k, b in self._buf.items()}
        if not self.keys:
            return {}, now
        missing = [k for k, b in snap.items() if not b]
        if missing:
            raise ObservationRejected("missing", f"no samples yet from {missing}")
        t_obs = min(b[-1][0] for b in snap.values())
        age = now - t_obs
        if age > max_age:
            raise ObservationRejected(
                "stale", f"observation is {age:.3f} s old (max_obs_age {max_age:.3f} s)"
            )
        out = {}
        for key, buf in snap.items():
            stamps = [s for s, _ in buf]
            rows = []
            last = bisect.bisect_right(stamps, t_obs) - 1  # never use a sample after t_obs
            for k in range(n_obs):
                target = t_obs - (n_obs - 1 - k) * dt
                i = bisect.bisect_right(stamps, target) - 1
                if i < 0:  # before the history starts: repeat the oldest sample
                    i = 0
                elif i < last and stamps[i + 1] - target < target - stamps[i]:
                    i += 1  # the next sample is nearer to the target time
                rows.append(buf[i][1])
            out[key] = np.stack(rows)
        return out, t_obs
