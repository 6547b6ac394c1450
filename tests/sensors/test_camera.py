"""Camera sources and the fault-tolerant stream (no ROS). The USB camera is a test double that
records every call; video files are real files written with cv2.VideoWriter."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from diffog_ros.sensors.camera import (
    CameraError,
    CameraStream,
    OpenCVDevice,
    VideoFile,
    parse_device,
    resize_for_output,
    scaled_intrinsics,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += max(0.0, dt)


class FakeCapture:
    """Stands in for cv2.VideoCapture on a USB camera: scripted reads, every call recorded."""

    def __init__(self, calls: list, opens: list[bool], reads: list, clock: FakeClock) -> None:
        self.calls, self.opens, self.reads, self.clock = calls, opens, reads, clock

    def factory(self, *args):
        self.calls.append(("VideoCapture", *args))
        self.ok = self.opens.pop(0) if self.opens else True
        return self

    def isOpened(self):  # noqa: N802 - OpenCV's name
        self.calls.append(("isOpened",))
        return self.ok

    def set(self, prop, value):
        self.calls.append(("set", prop, value))
        return True

    def get(self, prop):
        self.calls.append(("get", prop))
        return 0.0

    def read(self):
        self.calls.append(("read",))
        item = self.reads.pop(0) if self.reads else None
        if isinstance(item, tuple):  # (frame, seconds the device takes to deliver it)
            item, dt = item
            self.clock.sleep(dt)
        if item is None:
            return False, None
        return True, item

    def release(self):
        self.calls.append(("release",))


def bgr(value: int) -> np.ndarray:
    img = np.zeros((4, 6, 3), np.uint8)
    img[:, :, 0] = value  # blue channel in OpenCV's order
    return img


def make(opens=(), reads=()):
    clock = FakeClock()
    calls: list = []
    fake = FakeCapture(calls, list(opens), list(reads), clock)
    dev = OpenCVDevice(2, 640, 480, 30.0, "MJPG", capture_factory=fake.factory)
    stream = CameraStream(
        dev,
        0.5,
        4.0,
        max_consecutive_failures=3,
        clock=clock.now,
        monotonic=clock.now,
        sleep=clock.sleep,
    )
    return stream, calls, clock


def test_device_is_opened_with_the_requested_format_exactly():
    stream, calls, _clock = make(reads=[bgr(7)])
    frame = stream.next_frame()
    assert calls == [
        ("VideoCapture", 2, cv2.CAP_V4L2),
        ("isOpened",),
        ("set", cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG")),
        ("set", cv2.CAP_PROP_FRAME_WIDTH, 640),
        ("set", cv2.CAP_PROP_FRAME_HEIGHT, 480),
        ("set", cv2.CAP_PROP_FPS, 30.0),
        ("read",),
    ]
    assert frame.image.shape == (4, 6, 3)
    assert frame.image[0, 0].tolist() == [0, 0, 7]  # BGR from OpenCV -> RGB
    assert frame.stamp == 100.0


def test_device_path_is_passed_as_is_and_failed_open_releases():
    calls: list = []
    fake = FakeCapture(calls, [False], [], FakeClock())
    dev = OpenCVDevice("/dev/video4", capture_factory=fake.factory, fourcc="")
    with pytest.raises(CameraError, match="/dev/video4"):
        dev.open()
    assert calls == [("VideoCapture", "/dev/video4"), ("isOpened",), ("release",)]
    assert parse_device("3") == 3 and parse_device("/dev/video0") == "/dev/video0"


def test_lost_device_reconnects_with_exponential_backoff():
    stream, calls, clock = make(opens=[False, False, False, True], reads=[bgr(1)])
    attempts = []
    for _ in range(200):
        n_open = sum(c[0] == "VideoCapture" for c in calls)
        frame = stream.next_frame()
        if sum(c[0] == "VideoCapture" for c in calls) > n_open:
            attempts.append(clock.t)
        if frame is not None:
            break
    assert frame is not None and frame.image[0, 0, 2] == 1
    # Doubling backoff between open attempts (waited in steps of at most 0.1 s).
    np.testing.assert_allclose(np.diff(attempts), [0.5, 1.0, 2.0], atol=0.1 + 1e-6)
    assert stream.stats.open_failures == 3 and stream.stats.reconnects == 1
    assert stream.stats.connected


def test_failed_reads_drop_the_connection_and_it_comes_back():
    stream, calls, _clock = make(reads=[bgr(1), None, None, None, bgr(2)])
    got = []
    for _ in range(30):
        frame = stream.next_frame()
        if frame is not None:
            got.append(frame.image[0, 0, 2])
            if len(got) == 2:
                break
    assert got == [1, 2]
    assert stream.stats.read_failures == 3
    assert stream.stats.reconnects == 1
    assert calls.count(("release",)) == 1  # the broken capture was released before reopening
    assert sum(c[0] == "VideoCapture" for c in calls) == 2


def test_gaps_in_device_capture_times_count_as_dropped_frames():
    period = 1 / 30
    reads = [(bgr(1), period), (bgr(2), period), (bgr(3), 4 * period), (bgr(4), period)]
    stream, _calls, _clock = make(reads=reads)
    for _ in range(4):
        assert stream.next_frame() is not None
    assert stream.stats.dropped == 3
    assert stream.stats.frames == 4


def _video(path, n=6, fps=20.0, size=(16, 12)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), 40 * i, np.uint8))
    w.release()


def test_video_file_loops_paces_and_survives_vanishing(tmp_path):
    path = tmp_path / "clip.mp4"
    _video(path)
    clock = FakeClock()
    src = VideoFile(path)
    stream = CameraStream(src, 0.5, 1.0, clock=clock.now, monotonic=clock.now, sleep=clock.sleep)
    stamps = [stream.next_frame().stamp for _ in range(9)]
    assert np.allclose(np.diff(stamps), 1 / 20)  # played at the file's rate
    assert src.passes == 2  # looped after 6 frames
    path.rename(tmp_path / "away.mp4")
    frames = [stream.next_frame() for _ in range(6)]  # rest of the pass was already open
    assert any(f is None for f in frames) and not stream.stats.connected
    assert "not found" in stream.stats.last_error
    assert all(stream.next_frame() is None for _ in range(5))
    (tmp_path / "away.mp4").rename(path)
    back = [stream.next_frame() for _ in range(40)]
    assert any(f is not None for f in back) and stream.stats.connected
    assert stream.stats.reconnects == 1


def test_file_playback_that_falls_behind_skips_frames(tmp_path):
    path = tmp_path / "clip.mp4"
    _video(path, n=30)
    clock = FakeClock()
    stream = CameraStream(VideoFile(path), clock=clock.now, monotonic=clock.now, sleep=clock.sleep)
    stream.next_frame()
    clock.t += 0.2  # a 200 ms stall = 4 frames at 20 fps
    stream.next_frame()
    assert stream.stats.dropped == 3


def test_resize_and_intrinsics():
    img = np.zeros((48, 64, 3), np.uint8)
    assert resize_for_output(img, 32, 0).shape == (24, 32, 3)
    assert resize_for_output(img, 0, 0) is img
    k = [100.0, 0.0, 32.0, 0.0, 100.0, 24.0, 0.0, 0.0, 1.0]
    assert scaled_intrinsics(k, 0.5, 0.5) == [50.0, 0.0, 16.0, 0.0, 50.0, 12.0, 0.0, 0.0, 1.0]
