"""Episode file schema: the ALOHA HDF5 layout plus the fields a deployment stack needs.

One HDF5 file per episode, ``episode_<i>.hdf5``. Every dataset has an explicit dtype (upstream
ALOHA creates float datasets without one, so they come out float32 while its docs say float64).
T is the number of samples, D the number of joints (``joint_names``), H x W a camera image::

    /timestamps                        (T,)       float64  sample time, seconds since the epoch
    /observations/qpos                 (T, D)     float64  measured joint positions
    /observations/qvel                 (T, D)     float64  measured joint velocities (when published)
    /observations/effort               (T, D)     float64  measured efforts (when published)
    /observations/images/<cam>         (T, H, W, 3) uint8  RGB, or when ``compress``:
                                       (T, L)     uint8    JPEG bytes zero-padded to a common L
    /compress_len                      (n_cams, T) int64   JPEG byte count per frame (``compress`` only;
                                                           cameras in ``camera_names`` order)
    /action                            (T, D)     float64  executed action (after the safety layer)
    /action_raw                        (T, D)     float64  raw chunk's action scheduled for the sample time
    /action_optimized                  (T, D)     float64  optimised chunk's action scheduled for the sample
    /teleop/joint_command              (T, D)     float64  teleop joint targets
    /teleop/twist                      (T, 6)     float64  teleop twist (vx vy vz wx wy wz)
    /valid/<stream>                    (T,)       bool     False where the stream had no sample newer than
                                                           ``max_age`` (floats are NaN, images zero there)
    /committed_rows                    (1,)       int64    rows known durable (crash recovery)

Only the streams that were live when the episode started are present; the silent ones are listed in
the ``silent_topics`` attribute. Root attributes: see :data:`REQUIRED_ATTRS` and :func:`final_attrs`.
Lists and dicts are stored as JSON strings (:data:`JSON_ATTRS`).

JPEG compression follows ALOHA: each RGB frame is passed to ``cv2.imencode('.jpg', frame)`` as is
(OpenCV treats it as BGR, and ``cv2.imdecode`` gives the same channel order back), and the encoded
bytes of all frames are zero-padded to one length.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_NAME = "diffog_ros.episode"
FORMAT_VERSION = 1

TIMESTAMPS = "timestamps"
IMAGES_GROUP = "observations/images"
COMPRESS_LEN = "compress_len"
VALID_GROUP = "valid"
COMMITTED_ROWS = "committed_rows"

# Float streams: stream name -> (dataset path, width kind). "joints" means D = len(joint_names).
FLOAT_STREAMS: dict[str, tuple[str, str | int]] = {
    "qpos": ("observations/qpos", "joints"),
    "qvel": ("observations/qvel", "joints"),
    "effort": ("observations/effort", "joints"),
    "action": ("action", "joints"),
    "action_raw": ("action_raw", "joints"),
    "action_optimized": ("action_optimized", "joints"),
    "teleop_joint_command": ("teleop/joint_command", "joints"),
    "teleop_twist": ("teleop/twist", 6),
}

STATUS_RECORDING = "recording"
STATUS_COMPLETE = "complete"
STATUS_REPAIRED = "repaired"
FINAL_STATUSES = (STATUS_COMPLETE, STATUS_REPAIRED)

#: Attributes every finished episode carries.
REQUIRED_ATTRS = (
    "format",
    "format_version",
    "sim",
    "compress",
    "fps",
    "robot",
    "task",
    "trajopt_params",
    "software_version",
    "silent_topics",
    "joint_names",
    "camera_names",
    "streams",
    "num_samples",
    "achieved_rate_hz",
    "low_rate",
    "status",
)

#: Attributes holding JSON text (decoded by :func:`decode_attrs`).
JSON_ATTRS = (
    "trajopt_params",
    "silent_topics",
    "joint_names",
    "camera_names",
    "streams",
    "metadata",
    "stale_counts",
    "rejected_counts",
    "recorder_params",
)

#: A recording whose achieved rate falls below this fraction of ``fps`` is flagged ``low_rate``.
LOW_RATE_FRACTION = 0.9

_EPISODE_RE = re.compile(r"^episode_(\d+)\.hdf5((?:\.tmp|\.repairing)?)$")


class EpisodeFormatError(ValueError):
    """An episode layout or file does not match the schema."""


def float_dataset(stream: str) -> str:
    """Dataset path of a float stream (``"qpos"`` -> ``"observations/qpos"``)."""
    return FLOAT_STREAMS[stream][0]


def image_dataset(camera: str) -> str:
    return f"{IMAGES_GROUP}/{camera}"


def valid_dataset(stream: str) -> str:
    return f"{VALID_GROUP}/{stream}"


def episode_name(index: int) -> str:
    return f"episode_{int(index)}.hdf5"


def parse_episode_name(name: str) -> tuple[int, str] | None:
    """``"episode_3.hdf5.tmp"`` -> ``(3, ".tmp")``; ``None`` for other names."""
    m = _EPISODE_RE.match(name)
    if m is None:
        return None
    return int(m.group(1)), m.group(2)


def _check_name(kind: str, name: str) -> None:
    if not name or "/" in name or name.strip() != name:
        raise EpisodeFormatError(f"invalid {kind} name {name!r}")


@dataclass(frozen=True)
class EpisodeLayout:
    """Which datasets an episode has, and their shapes (validated on construction).

    ``float_streams`` are names from :data:`FLOAT_STREAMS`; ``cameras`` maps a camera name to its
    image (height, width). ``compress`` stores camera frames as padded JPEG bytes.
    """

    joint_names: Sequence[str]
    float_streams: Sequence[str] = ("qpos", "action")
    cameras: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    compress: bool = False
    jpeg_quality: int = 50

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.joint_names)
        if not names:
            raise EpisodeFormatError("joint_names must not be empty")
        if len(set(names)) != len(names):
            raise EpisodeFormatError(f"joint_names must be unique, got {list(names)}")
        object.__setattr__(self, "joint_names", names)
        streams = tuple(str(s) for s in self.float_streams)
        unknown = [s for s in streams if s not in FLOAT_STREAMS]
        if unknown:
            raise EpisodeFormatError(
                f"unknown float streams {unknown}; known: {sorted(FLOAT_STREAMS)}"
            )
        if len(set(streams)) != len(streams):
            raise EpisodeFormatError(f"float_streams must be unique, got {list(streams)}")
        object.__setattr__(self, "float_streams", streams)
        cams: dict[str, tuple[int, int]] = {}
        for cam, hw in dict(self.cameras).items():
            _check_name("camera", cam)
            if cam in FLOAT_STREAMS:
                raise EpisodeFormatError(f"camera name {cam!r} collides with a stream name")
            h, w = (int(v) for v in hw)
            if h < 1 or w < 1:
                raise EpisodeFormatError(f"camera {cam!r} needs a positive image size, got {hw}")
            cams[cam] = (h, w)
        object.__setattr__(self, "cameras", cams)
        if not streams and not cams:
            raise EpisodeFormatError("an episode needs at least one stream or camera")
        q = int(self.jpeg_quality)
        if not 1 <= q <= 100:
            raise EpisodeFormatError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        object.__setattr__(self, "jpeg_quality", q)
        object.__setattr__(self, "compress", bool(self.compress))

    @property
    def dim(self) -> int:
        return len(self.joint_names)

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self.cameras)

    @property
    def stream_names(self) -> tuple[str, ...]:
        """Every stream with a validity mask: float streams, then cameras."""
        return (*self.float_streams, *self.cameras)

    def float_width(self, stream: str) -> int:
        width = FLOAT_STREAMS[stream][1]
        return self.dim if width == "joints" else int(width)

    def row_bytes(self) -> int:
        """Approximate bytes one row takes on disk (JPEG frames estimated at 1/10 of raw)."""
        n = 8 * (1 + sum(self.float_width(s) for s in self.float_streams)) + len(self.stream_names)
        for h, w in self.cameras.values():
            n += h * w * 3 // (10 if self.compress else 1)
        return n

    def identity_attrs(self) -> dict[str, Any]:
        """The attributes that describe the layout (written at creation)."""
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "compress": self.compress,
            "joint_names": json.dumps(list(self.joint_names)),
            "camera_names": json.dumps(list(self.camera_names)),
            "streams": json.dumps(list(self.stream_names)),
        }


@dataclass
class Sample:
    """One row: the sample time and, per stream, a value or ``None`` (no fresh sample)."""

    timestamp: float
    values: dict[str, np.ndarray | None] = field(default_factory=dict)


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values from HDF5 attributes; JSON attributes decoded."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        if key in JSON_ATTRS and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # left as text; validate() reports it
        out[key] = value
    return out


def achieved_rate(timestamps: np.ndarray) -> float:
    """Samples per second over an episode: (T - 1) / (t_last - t_first); 0 when undefined."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size < 2:
        return 0.0
    span = float(ts[-1] - ts[0])
    return float((ts.size - 1) / span) if span > 0 else 0.0


def final_attrs(
    timestamps: np.ndarray, fps: float, status: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Attributes written when an episode is closed (or repaired)."""
    rate = achieved_rate(timestamps)
    ts = np.asarray(timestamps, dtype=np.float64)
    attrs: dict[str, Any] = {
        "num_samples": int(ts.size),
        "achieved_rate_hz": rate,
        "low_rate": bool(ts.size >= 2 and rate < LOW_RATE_FRACTION * float(fps)),
        "status": status,
        "end_time": float(ts[-1]) if ts.size else 0.0,
    }
    attrs.update(extra or {})
    return attrs


def to_attr(value: Any) -> Any:
    """A value HDF5 can store as an attribute (lists / dicts become JSON text)."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if value is None:
        return ""
    return value


def iter_episode_files(directory: Path, suffixes: Iterable[str] = ("",)) -> list[tuple[int, Path]]:
    """``(index, path)`` of ``episode_<i>.hdf5<suffix>`` files in ``directory``, sorted by index."""
    wanted = set(suffixes)
    found = []
    for p in Path(directory).iterdir():
        parsed = parse_episode_name(p.name)
        if parsed is not None and parsed[1] in wanted and p.is_file():
            found.append((parsed[0], p))
    found.sort(key=lambda item: (item[0], item[1].name))
    return found
