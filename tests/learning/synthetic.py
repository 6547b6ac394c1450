"""Tiny synthetic episodes in the recorder's ALOHA HDF5 layout (written with h5py)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

NAMES = ["j0", "j1", "grip"]


def trajectory(length: int, phase: float, dim: int = 3) -> np.ndarray:
    """A smooth joint trajectory [length + 1, dim]; the last dim is a 0/1 gripper."""
    t = np.arange(length + 1) / length
    cols = [np.sin(2 * np.pi * (t + phase + 0.3 * j)) * (0.5 + 0.2 * j) for j in range(dim - 1)]
    cols.append((np.sin(2 * np.pi * (t + phase)) > 0).astype(np.float64))
    return np.stack(cols, axis=1)


def write_episode(
    path: Path,
    length: int = 24,
    phase: float = 0.0,
    names: list[str] | None = None,
    cameras: dict[str, tuple[int, int]] | None = None,
    fps: float = 50.0,
) -> Path:
    names = list(names or NAMES)
    q = trajectory(length, phase, len(names))
    qpos, action = q[:-1], q[1:]  # the action is the next position
    with h5py.File(path, "w") as f:
        f.create_dataset("observations/qpos", data=qpos.astype(np.float64))
        f.create_dataset("action", data=action.astype(np.float64))
        f.create_dataset("timestamps", data=1.0e9 + np.arange(length) / fps)
        for cam, (h, w) in (cameras or {}).items():
            img = np.zeros((length, h, w, 3), np.uint8)
            # a bright square whose position encodes the first joint
            cols = ((qpos[:, 0] + 1) / 2 * (w - 3)).astype(int)
            for k, c in enumerate(cols):
                img[k, h // 3 : h // 3 + 3, c : c + 3] = 255
            f.create_dataset(f"observations/images/{cam}", data=img)
        f.attrs["format"] = "diffog_ros.episode"
        f.attrs["format_version"] = 1
        f.attrs["joint_names"] = json.dumps(names)
        f.attrs["camera_names"] = json.dumps(list(cameras or {}))
        f.attrs["compress"] = False
        f.attrs["fps"] = fps
        f.attrs["sim"] = True
    return path


def write_dataset(directory: Path, episodes: int = 3, length: int = 24, **kwargs) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(episodes):
        write_episode(directory / f"episode_{i}.hdf5", length, phase=0.17 * i, **kwargs)
    return directory
