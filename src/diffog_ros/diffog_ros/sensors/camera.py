"""Camera frame sources and a stream that survives camera faults (no rclpy).

Sources return RGB uint8 frames:

* :class:`OpenCVDevice` -- a V4L2 / USB camera through ``cv2.VideoCapture`` (device index or
  ``/dev/videoN`` path; requested width, height, fps and FOURCC such as MJPG).
* :class:`VideoFile` -- a video file played at its own rate (or a given one), looping; used for
  replay and tests. The file is reopened by path at every loop, so a file that vanished is noticed
  and one that comes back is picked up again.

:class:`CameraStream` wraps a source: it paces file playback, stamps each frame with its capture
time, counts dropped frames (gaps in device capture times, frames skipped when playback fell
behind), and turns every fault -- failed open, failed read, an exception in the backend -- into a
reconnect with exponential backoff instead of an error. The simulated ALOHA cameras are not a
source here: ``controller_node`` owns the physics and publishes them itself (``publish_cameras``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

log = logging.getLogger(__name__)


class CameraError(RuntimeError):
    """A camera could not be opened or read."""


class FrameSource(Protocol):
    """What :class:`CameraStream` needs from a camera."""

    name: str
    paced: bool  # True: read() blocks until the device delivers (a device); False: a file

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    def nominal_fps(self) -> float: ...

    def close(self) -> None: ...


def _bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def parse_device(device: str) -> int | str:
    """``"0"`` -> 0 (an index); ``"/dev/video2"`` stays a path."""
    text = str(device).strip()
    if not text:
        raise ValueError("device must be an index or a /dev path")
    return int(text) if text.isdigit() else text


class OpenCVDevice:
    """A camera device through OpenCV. ``capture_factory`` is ``cv2.VideoCapture`` (tests pass a
    double recording the calls)."""

    paced = True

    def __init__(
        self,
        device: int | str,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        fourcc: str = "MJPG",
        capture_factory: Callable[..., Any] = cv2.VideoCapture,
    ) -> None:
        if fourcc and len(fourcc) != 4:
            raise ValueError(f"fourcc must have 4 characters, got {fourcc!r}")
        self.device = device
        self.width, self.height, self.fps, self.fourcc = int(width), int(height), float(fps), fourcc
        self.name = f"device {device}"
        self._factory = capture_factory
        self._cap: Any = None

    def open(self) -> None:
        cap = (
            self._factory(self.device, cv2.CAP_V4L2)
            if isinstance(self.device, int)
            else (self._factory(self.device))
        )
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open camera {self.device}")
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        if self.width > 0:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height > 0:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps > 0:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise CameraError(f"{self.name} is not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        return _bgr_to_rgb(frame)

    def nominal_fps(self) -> float:
        if self.fps > 0:
            return self.fps
        got = float(self._cap.get(cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0
        return got if got > 0 else 30.0

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFile:
    """A video file played in a loop (reopened by path at the end of every pass)."""

    paced = False

    def __init__(self, path: str | Path, loop: bool = True, fps: float = 0.0) -> None:
        self.path = Path(path)
        self.loop = bool(loop)
        self.fps = float(fps)
        self.name = f"file {self.path}"
        self._cap: Any = None
        self._file_fps = 0.0
        self.passes = 0

    def open(self) -> None:
        if not self.path.is_file():
            raise CameraError(f"video file not found: {self.path}")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open video file {self.path}")
        self._file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._cap = cap
        self.passes += 1

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise CameraError(f"{self.name} is not open")
        ok, frame = self._cap.read()
        if ok and frame is not None:
            return _bgr_to_rgb(frame)
        # End of the file: start the next pass (from the path, so a vanished file is noticed).
        self.close()
        if not self.loop:
            raise CameraError(f"end of {self.path}")
        self.open()
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise CameraError(f"{self.path} has no readable frame")
        return _bgr_to_rgb(frame)

    def skip(self) -> None:
        """Drop one frame without decoding it (playback fell behind)."""
        if self._cap is not None:
            self._cap.grab()

    def nominal_fps(self) -> float:
        if self.fps > 0:
            return self.fps
        return self._file_fps if self._file_fps > 0 else 30.0

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    stamp: float  # capture time (the stream's clock, seconds)
    index: int


@dataclass
class StreamStats:
    frames: int = 0
    dropped: int = 0
    read_failures: int = 0
    open_failures: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class CameraStream:
    """Pulls frames from a source; never raises on a camera fault (see the module docstring).

    ``clock`` gives the capture stamps (e.g. the ROS clock in seconds); ``monotonic`` and
    ``sleep`` drive pacing and backoff (tests pass fakes).
    """

    def __init__(
        self,
        source: FrameSource,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 5.0,
        max_consecutive_failures: int = 5,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < reconnect_initial <= reconnect_max:
            raise ValueError("need 0 < reconnect_initial <= reconnect_max")
        self.source = source
        self.reconnect_initial = float(reconnect_initial)
        self.reconnect_max = float(reconnect_max)
        self.max_failures = int(max_consecutive_failures)
        self.stats = StreamStats()
        self._clock, self._mono, self._sleep = clock, monotonic, sleep
        self._backoff = self.reconnect_initial
        self._retry_at = -math.inf
        self._failures = 0
        self._next_due: float | None = None
        self._last_capture: float | None = None
        self._index = 0

    # ------------------------------------------------------------------ connection
    def _connect(self) -> bool:
        now = self._mono()
        if now < self._retry_at:
            return False
        try:
            self.source.open()
        except Exception as exc:  # noqa: BLE001 - any backend error is a camera fault
            self.stats.open_failures += 1
            self._fault(f"open failed: {exc}")
            return False
        if self.stats.frames or self.stats.open_failures or self.stats.read_failures:
            self.stats.reconnects += 1
            log.info("%s: connected again", self.source.name)
        self.stats.connected = True
        self._backoff = self.reconnect_initial
        self._failures = 0
        self._next_due = None
        self._last_capture = None
        return True

    def _fault(self, why: str) -> None:
        if why != self.stats.last_error:
            log.warning("%s: %s; retrying in %.1f s", self.source.name, why, self._backoff)
        self.stats.last_error = why
        if self.stats.connected:
            try:
                self.source.close()
            except Exception:  # noqa: BLE001
                pass
        self.stats.connected = False
        self._retry_at = self._mono() + self._backoff
        self._backoff = min(self._backoff * 2.0, self.reconnect_max)

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            self.stats.connected = False

    # ------------------------------------------------------------------ frames
    def period(self) -> float:
        return 1.0 / self.source.nominal_fps()

    def next_frame(self) -> Frame | None:
        """Block until the next frame is due and return it, or ``None`` after a fault (the
        caller simply calls again; reconnects happen here, with backoff)."""
        if not self.stats.connected and not self._connect():
            wait = max(0.0, self._retry_at - self._mono())
            self._sleep(min(wait, 0.1))
            return None
        period = self.period()
        if not self.source.paced:
            now = self._mono()
            if self._next_due is None:
                self._next_due = now
            late = now - self._next_due
            if late < 0:
                self._sleep(-late)
            elif late >= period:  # fell behind: skip the frames whose time has passed
                missed = int(late / period)
                for _ in range(missed):
                    self.source.skip()  # type: ignore[attr-defined]
                self.stats.dropped += missed
                self._next_due += missed * period
            self._next_due += period
        try:
            image = self.source.read()
        except Exception as exc:  # noqa: BLE001
            self.stats.read_failures += 1
            self._fault(f"read failed: {exc}")
            return None
        if image is None:
            self.stats.read_failures += 1
            self._failures += 1
            if self._failures >= self.max_failures:
                self._fault(f"{self._failures} reads in a row failed")
            return None
        self._failures = 0
        stamp = self._clock()
        if self.source.paced and self._last_capture is not None:
            gap = stamp - self._last_capture
            if gap > 1.5 * period:
                self.stats.dropped += int(round(gap / period)) - 1
        self._last_capture = stamp
        self.stats.frames += 1
        self._index += 1
        return Frame(image, stamp, self._index)


def resize_for_output(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Downscale (or resize) to ``width`` x ``height``; 0 keeps that side's aspect ratio."""
    h, w = image.shape[:2]
    if width <= 0 and height <= 0:
        return image
    if width <= 0:
        width = max(1, round(w * height / h))
    if height <= 0:
        height = max(1, round(h * width / w))
    if (width, height) == (w, h):
        return image
    interp = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    return cv2.resize(image, (int(width), int(height)), interpolation=interp)


def scaled_intrinsics(k: list[float], sx: float, sy: float) -> list[float]:
    """A 3x3 row-major camera matrix [fx s cx; 0 fy cy; 0 0 1] scaled for an image resized by
    (sx, sy)."""
    if len(k) != 9:
        raise ValueError(f"camera matrix needs 9 values, got {len(k)}")
    return [k[0] * sx, k[1] * sx, k[2] * sx, 0.0, k[4] * sy, k[5] * sy, 0.0, 0.0, 1.0]
