"""Synthetic episodes for data tests (written through the real writer)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from diffog_ros.data.episode import EpisodeLayout
from diffog_ros.data.writer import write_episode

JOINTS = [f"{s}_{j}" for s in ("left", "right") for j in ("waist", "shoulder", "gripper")]
ATTRS = {
    "sim": True,
    "robot": "test_robot",
    "task": "unit_test",
    "trajopt_params": {"method": "static", "max_delta": [0.05]},
    "silent_topics": [],
}


def layout(
    cams: dict[str, tuple[int, int]] | None = None,
    compress: bool = False,
    streams: tuple[str, ...] = ("qpos", "qvel", "action"),
) -> EpisodeLayout:
    return EpisodeLayout(
        JOINTS, streams, {"cam_high": (24, 32)} if cams is None else cams, compress
    )


def arrays(lay: EpisodeLayout, T: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Smooth, textured data: JPEG keeps it close, every row distinct."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for s in lay.float_streams:
        w = lay.float_width(s)
        out[s] = np.cumsum(rng.normal(0, 0.01, (T, w)), axis=0)
    for cam, (h, w) in lay.cameras.items():
        yy, xx = np.mgrid[0:h, 0:w]
        frames = np.empty((T, h, w, 3), dtype=np.uint8)
        for t in range(T):
            frames[t, :, :, 0] = (xx * 255 // max(w - 1, 1)).astype(np.uint8)
            frames[t, :, :, 1] = (yy * 255 // max(h - 1, 1)).astype(np.uint8)
            frames[t, :, :, 2] = (8 * t) % 256
        out[cam] = frames
    ts = 1.7e9 + np.arange(T) / 50.0
    return out, ts


def write(directory: Path, T: int = 30, seed: int = 0, **kw) -> Path:
    lay = layout(**kw)
    data, ts = arrays(lay, T, seed)
    return write_episode(directory, lay, data, ts, ATTRS, fps=50.0)


@contextmanager
def tiny_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (needs root); skips the test when mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs for the full-disk test: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
