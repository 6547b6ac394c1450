"""Recorder core (no rclpy): message checks, sample alignment and the episode session.

The node converts ROS messages to plain arrays with the helpers here, keeps a short history of
every stream in a :class:`LatestSamples`, and calls :meth:`RecorderSession.tick` at
``record_rate_hz``. A tick builds the row of time t: for every stream of the episode the newest
sample *received by t* whose capture stamp is within ``max_age`` of t, otherwise "missing" (NaN /
zeros with ``valid`` False). Because the row is defined by t and not by when the sampling thread
happened to run, a thread woken late (a busy machine, the GIL) still writes the rows it owes on the
ideal timeline (:class:`PeriodicSampler` catch-up). Chunk streams (``action_raw``, ``action_optimized``) contribute the action the
newest chunk schedules for the tick time: point k with stamp + time_from_start[k] nearest to the
tick, within half a chunk step.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffog_ros import __version__
from diffog_ros.data.episode import EpisodeLayout, Sample
from diffog_ros.data.writer import (
    METADATA_MARGIN,
    DiskFullError,
    EpisodeWriter,
    WriterError,
    free_bytes,
)

log = logging.getLogger(__name__)

# Topic kinds and the streams they feed.
KIND_JOINT_STATE = "joint_state"  # -> qpos, qvel, effort
KIND_EXECUTED = "executed_action"  # -> action
KIND_CHUNK_RAW = "chunk_raw"  # -> action_raw
KIND_CHUNK_OPT = "chunk_optimized"  # -> action_optimized
KIND_TELEOP_JOINT = "teleop_joint"  # -> teleop_joint_command
KIND_TELEOP_TWIST = "teleop_twist"  # -> teleop_twist
KIND_IMAGE = "image"  # -> <camera>

CHUNK_STREAMS = ("action_raw", "action_optimized")


class MessageRejected(ValueError):
    """A message failed a check; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------- message checks
def select_joints(
    names: Sequence[str], values: Sequence[float], wanted: Sequence[str], field_name: str
) -> np.ndarray:
    """Values of ``wanted`` joints, picked by name (extra joints are ignored)."""
    names = list(names)
    if len(values) != len(names):
        raise MessageRejected(
            "length_mismatch", f"{field_name} has {len(values)} values for {len(names)} names"
        )
    if len(set(names)) != len(names):
        raise MessageRejected("duplicate_names", f"duplicated joint names in {names}")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise MessageRejected("missing_names", f"joints {missing} not in message")
    arr = np.asarray([values[index[n]] for n in wanted], dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise MessageRejected("non_finite", f"{field_name} has NaN/Inf")
    return arr


def image_to_rgb(height: int, width: int, encoding: str, step: int, data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB from the fields of a sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8,
    mono8)."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding)
    if channels is None:
        raise MessageRejected("encoding", f"unsupported image encoding {encoding!r}")
    if height <= 0 or width <= 0:
        raise MessageRejected("bad_shape", f"image size {height}x{width}")
    if step < width * channels or len(data) < step * height:
        raise MessageRejected(
            "bad_shape", f"step {step} / {len(data)} bytes do not fit {height}x{width}x{channels}"
        )
    buf = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    img = buf[:, : width * channels].reshape(height, width, channels)
    if encoding == "rgb8":
        return img.copy()
    if encoding == "bgr8":
        return img[:, :, ::-1].copy()
    if encoding == "rgba8":
        return img[:, :, :3].copy()
    if encoding == "bgra8":
        return img[:, :, 2::-1].copy()
    return np.repeat(img, 3, axis=2)


@dataclass(frozen=True)
class Chunk:
    """An action chunk: observation stamp (s), per-point offsets (s, increasing), positions."""

    stamp: float
    offsets: np.ndarray  # (H,)
    positions: np.ndarray  # (H, D)

    def scheduled(self, t: float, single_point_tolerance: float) -> np.ndarray | None:
        """The point scheduled nearest to ``t`` (within half a chunk step; a one-point chunk
        within ``single_point_tolerance``), or ``None``."""
        times = self.stamp + self.offsets
        k = int(np.argmin(np.abs(times - t)))
        if self.offsets.size > 1:
            half = 0.5 * float(np.min(np.diff(self.offsets)))
        else:
            half = single_point_tolerance
        if abs(times[k] - t) > half + 1e-9:
            return None
        return self.positions[k]


def make_chunk(
    stamp: float,
    joint_names: Sequence[str],
    offsets: Sequence[float],
    points: Sequence[Sequence[float]],
    wanted: Sequence[str],
) -> Chunk:
    """Validate a JointTrajectory's content and reorder its columns to ``wanted``."""
    if not points:
        raise MessageRejected("empty", "chunk has no points")
    names = list(joint_names)
    if len(set(names)) != len(names):
        raise MessageRejected("duplicate_names", f"duplicated joint names in {names}")
    missing = [n for n in wanted if n not in names]
    if missing:
        raise MessageRejected("missing_names", f"joints {missing} not in chunk")
    if any(len(p) != len(names) for p in points):
        raise MessageRejected("ragged", "a point's positions do not match joint_names")
    pos = np.asarray(points, dtype=np.float64)[:, [names.index(n) for n in wanted]]
    if not np.all(np.isfinite(pos)):
        raise MessageRejected("non_finite", "chunk has NaN/Inf positions")
    off = np.asarray(offsets, dtype=np.float64)
    if not np.all(np.isfinite(off)) or (off.size > 1 and not np.all(np.diff(off) > 0)):
        raise MessageRejected("bad_timing", "time_from_start must increase")
    return Chunk(float(stamp), off, pos)


# ---------------------------------------------------------------------------- sample store
@dataclass
class StreamSample:
    value: Any
    stamp: float  # capture time (header stamp; receive time when the stamp is zero)
    received: float


class LatestSamples:
    """Thread-safe recent samples per stream, plus when each topic was last heard.

    Every stream keeps the samples received within the last ``keep_s`` seconds (and the newest one
    before that), so :meth:`get` can answer "what had been received by time t" for a tick the
    sampling thread runs late.
    """

    def __init__(self, keep_s: float = 1.0) -> None:
        if not math.isfinite(keep_s) or keep_s < 0:
            raise ValueError(f"keep_s must be >= 0, got {keep_s!r}")
        self.keep_s = float(keep_s)
        self._lock = threading.Lock()
        self._samples: dict[str, deque[StreamSample]] = {}
        self._heard: dict[str, float] = {}

    def put(self, stream: str, value: Any, stamp: float, received: float) -> None:
        with self._lock:
            history = self._samples.setdefault(stream, deque())
            history.append(StreamSample(value, stamp, received))
            cutoff = received - self.keep_s
            while len(history) > 1 and history[1].received <= cutoff:
                history.popleft()

    def heard(self, topic: str, when: float) -> None:
        with self._lock:
            self._heard[topic] = when

    def get(self, stream: str, at: float | None = None) -> StreamSample | None:
        """The newest sample of ``stream`` (received at or before ``at`` when given), or None."""
        with self._lock:
            history = self._samples.get(stream)
            if not history:
                return None
            if at is None:
                return history[-1]
            for s in reversed(history):
                if s.received <= at:
                    return s
            return None

    def last_heard(self, topic: str) -> float | None:
        with self._lock:
            return self._heard.get(topic)


# ---------------------------------------------------------------------------- configuration
@dataclass
class RecorderConfig:
    """What an episode records and how (validated by :meth:`validate`)."""

    output_dir: Path
    record_rate_hz: float
    max_age: float
    joint_names: Sequence[str]
    compress: bool = False
    jpeg_quality: int = 50
    min_free_mb: float = 100.0
    fsync: bool = False
    max_episode_s: float = 0.0

    def validate(self) -> None:
        problems = validate_settings(
            {
                "record_rate_hz": self.record_rate_hz,
                "max_age": self.max_age,
                "jpeg_quality": self.jpeg_quality,
                "min_free_mb": self.min_free_mb,
                "max_episode_s": self.max_episode_s,
                "joint_names": list(self.joint_names),
            }
        )
        if not self.record_rate_hz > 0:
            problems.append(f"record_rate_hz must be resolved to > 0, got {self.record_rate_hz}")
        if problems:
            raise ValueError("; ".join(problems))


def validate_settings(values: Mapping[str, Any]) -> list[str]:
    """Reasons the given recorder settings are invalid (empty when all are fine)."""
    out = []

    def num(name: str) -> float | None:
        v = values.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            out.append(f"{name} must be a finite number, got {v!r}")
            return None
        return float(v)

    rate = num("record_rate_hz")
    if rate is not None and not (rate == 0.0 or 0.1 <= rate <= 1000.0):
        out.append(f"record_rate_hz must be 0 (the control rate) or in [0.1, 1000], got {rate}")
    age = num("max_age")
    if age is not None and not 0.0 < age <= 10.0:
        out.append(f"max_age must be in (0, 10] s, got {age}")
    q = values.get("jpeg_quality")
    if q is not None and (isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100):
        out.append(f"jpeg_quality must be an integer in [1, 100], got {q!r}")
    mf = num("min_free_mb")
    if mf is not None and mf < 0:
        out.append(f"min_free_mb must be >= 0, got {mf}")
    me = num("max_episode_s")
    if me is not None and me < 0:
        out.append(f"max_episode_s must be >= 0 (0 = unlimited), got {me}")
    fp = num("flush_period")
    if fp is not None and not 0.02 <= fp <= 1.0:
        out.append(f"flush_period must be in [0.02, 1.0] s (crash safety needs <= 1 s), got {fp}")
    lw = num("live_wait")
    if lw is not None and not 0.0 <= lw <= 30.0:
        out.append(f"live_wait must be in [0, 30] s, got {lw}")
    names = values.get("joint_names")
    if names is not None:
        names = list(names)
        if not names or any(not isinstance(n, str) or not n for n in names):
            out.append(f"joint_names must be a non-empty list of names, got {names!r}")
        elif len(set(names)) != len(names):
            out.append(f"joint_names must be unique, got {names}")
    return out


# ---------------------------------------------------------------------------- session
@dataclass
class EpisodeStats:
    stale: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    rows: int = 0


class RecorderSession:
    """One episode at a time: start, tick, flush, stop or discard. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.writer: EpisodeWriter | None = None
        self.config: RecorderConfig | None = None
        self.streams: tuple[str, ...] = ()
        self.stats = EpisodeStats()
        self.started_at = 0.0
        self.last_error: str | None = None

    @property
    def recording(self) -> bool:
        return self.writer is not None

    def start(
        self,
        config: RecorderConfig,
        layout: EpisodeLayout,
        attrs: Mapping[str, Any],
        now: float,
    ) -> EpisodeWriter:
        config.validate()
        with self._lock:
            if self.writer is not None:
                raise RuntimeError(f"already recording episode {self.writer.index}")
            out = Path(config.output_dir).expanduser()
            out.mkdir(parents=True, exist_ok=True)
            free = free_bytes(out)
            second = layout.row_bytes() * config.record_rate_hz
            if free < config.min_free_mb * 1e6 + second + METADATA_MARGIN:
                raise DiskFullError(
                    f"only {free / 1e6:.2f} MB free in {out}; starting needs min_free_mb "
                    f"({config.min_free_mb:g} MB) plus room for one second of data "
                    f"({(second + METADATA_MARGIN) / 1e6:.2f} MB): free some space first"
                )
            full_attrs = {
                "software_version": __version__,
                "fps": float(config.record_rate_hz),
                "record_rate_hz": float(config.record_rate_hz),
                "max_age": float(config.max_age),
                "start_time": float(now),
            }
            full_attrs.update(attrs)
            self.writer = EpisodeWriter(
                out,
                layout,
                full_attrs,
                fps=config.record_rate_hz,
                min_free_bytes=int(config.min_free_mb * 1e6),
                fsync=config.fsync,
            )
            self.config = config
            self.streams = layout.stream_names
            self.stats = EpisodeStats()
            self.started_at = now
            self.last_error = None
            return self.writer

    def tick(self, now: float, samples: LatestSamples) -> bool:
        """Append the row for time ``now`` from the samples received by then; False when not
        recording (or the writer failed)."""
        writer, config = self.writer, self.config
        if writer is None or config is None or writer.failed:
            return False
        values: dict[str, Any] = {}
        for stream in self.streams:
            s = samples.get(stream, at=now)
            value = None
            if s is not None:
                if stream in CHUNK_STREAMS:
                    value = s.value.scheduled(now, 0.5 / config.record_rate_hz)
                elif abs(now - s.stamp) <= config.max_age:
                    value = s.value
            if value is None:
                self.stats.stale[stream] += 1
            values[stream] = value
        try:
            writer.append(Sample(now, values))
        except WriterError:
            return False
        self.stats.rows += 1
        return True

    def count_reject(self, reason: str) -> None:
        if self.writer is not None:
            self.stats.rejected[reason] += 1

    def due_to_stop(self, now: float) -> bool:
        c = self.config
        return bool(
            self.writer and c and c.max_episode_s > 0 and now - self.started_at >= c.max_episode_s
        )

    def flush(self) -> int:
        """Write queued rows. Raises DiskFullError / WriterError (then call :meth:`stop`)."""
        writer = self.writer
        if writer is None:
            return 0
        try:
            return writer.flush()
        except WriterError as exc:
            self.last_error = str(exc)
            raise

    def stop(self, extra_attrs: Mapping[str, Any] | None = None) -> Path | None:
        """Close and publish the episode; returns its path (``None`` if it had no rows)."""
        with self._lock:
            writer, self.writer = self.writer, None
        if writer is None:
            raise RuntimeError("not recording")
        extra = {
            "stale_counts": dict(self.stats.stale),
            "rejected_counts": dict(self.stats.rejected),
            "stop_time": time.time(),
        }
        extra.update(extra_attrs or {})
        return writer.close(extra)

    def discard(self) -> int | None:
        """Drop the episode; returns its index."""
        with self._lock:
            writer, self.writer = self.writer, None
        if writer is None:
            raise RuntimeError("not recording")
        writer.discard()
        return writer.index


class PeriodicSampler:
    """Calls ``fn(due)`` once per tick of a ``rate_hz`` timeline, from its own thread.

    Sampling is kept off the ROS executor on purpose: executor latency (other callbacks, disk
    writes, a busy machine) delays a callback, and a delayed timer skips its missed periods. Here the
    ticks follow an absolute schedule; ``due`` is the tick's ideal ``time.monotonic()`` time
    (``start + k / rate_hz`` exactly, so rows built from it are evenly spaced however late the
    thread runs). When the thread wakes late it makes up every tick it owes, oldest first, so the
    owner builds the row of each past instant (see :meth:`LatestSamples.get`). Ticks more than
    ``max_catchup`` seconds overdue are skipped and counted in ``overruns``; ``late`` counts ticks
    made up more than one period after they were due.
    """

    def __init__(
        self,
        rate_hz: float,
        fn: Callable[[float], None],
        name: str = "sampler",
        max_catchup: float = 0.5,
    ) -> None:
        if not math.isfinite(rate_hz) or rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
        if not math.isfinite(max_catchup) or max_catchup < 0:
            raise ValueError(f"max_catchup must be >= 0, got {max_catchup!r}")
        self.rate_hz = float(rate_hz)
        self.period = 1.0 / self.rate_hz
        self.max_catchup = float(max_catchup)
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.ticks = 0
        self.late = 0
        self.overruns = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        start = time.monotonic()
        k = 0  # index of the next tick; its due time is start + k / rate (no accumulated error)
        while not self._stop.is_set():
            now = time.monotonic()
            overdue = now - (start + k / self.rate_hz) - self.max_catchup
            if overdue > 0:  # beyond what may be made up: skip, and say so
                missed = int(overdue * self.rate_hz) + 1
                self.overruns += missed
                k += missed
            while start + k / self.rate_hz <= now and not self._stop.is_set():
                due = start + k / self.rate_hz
                lag = time.monotonic() - due
                try:
                    self._fn(due)
                except BaseException as exc:  # reported by the owner; sampling stops
                    self.error = exc
                    log.exception("sampler callback failed")
                    return
                self.ticks += 1
                self.late += lag > self.period
                k += 1
            self._stop.wait(max(0.0, start + k / self.rate_hz - time.monotonic()))
