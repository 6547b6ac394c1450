"""Load recorded episodes (ALOHA HDF5 layout) into memory for training.

Layout (one file per episode)::

    /observations/qpos            (T, D_q) float
    /observations/images/<cam>    (T, H, W, 3) uint8
    /action                       (T, D) float
    root attrs                    joint_names (the action names), fps, camera_names, compress, ...

Reading goes through :mod:`diffog_ros.data.dataset` when it is available, else straight
through h5py.  Images are resized once on load (``image_size``) so that a dataset of full-size
camera frames fits in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffog_ros.data.episode import decode_attrs
from diffog_ros.data.images import decode_jpeg_rows

LOG = logging.getLogger(__name__)

ACTION_KEY = "action"
QPOS_KEY = "observations/qpos"
IMAGE_PREFIX = "observations/images/"


@dataclass
class Episode:
    """One episode in memory: ``arrays`` maps keys ('action', 'qpos', 'images/<cam>') to arrays."""

    path: Path
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.arrays[ACTION_KEY].shape[0])


def list_episode_files(data_dir: str | Path) -> list[Path]:
    """Episode files in ``data_dir`` (sorted); raises FileNotFoundError when there are none."""
    try:
        from diffog_ros.data.dataset import list_episodes  # type: ignore[attr-defined]

        files = [Path(p) for p in list_episodes(data_dir)]
    except ImportError:
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"episode directory not found: {root}") from None
        files = sorted(p for p in root.iterdir() if p.suffix in (".hdf5", ".h5") and p.is_file())
    if not files:
        raise FileNotFoundError(f"no episode files (*.hdf5) in {data_dir}")
    return sorted(files)


def read_arrays(path: Path, keys: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The datasets ``keys`` (e.g. 'action', 'observations/images/top') and the decoded root attrs.

    JPEG-compressed camera frames (``compress`` attribute, see :mod:`diffog_ros.data.episode`) are
    decoded to (T, H, W, 3) uint8.
    """
    try:
        from diffog_ros.data.dataset import (  # type: ignore[attr-defined]
            episode_attrs,
            load_episode,
        )
    except ImportError:
        load_episode = None
    if load_episode is not None:
        arrays = load_episode(path, keys=list(keys))
        attrs = dict(episode_attrs(path))
        return {k.strip("/"): np.asarray(v) for k, v in arrays.items()}, attrs
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = decode_attrs(f.attrs)
            cams = list(attrs.get("camera_names") or [])
            out = {}
            for key in keys:
                if key not in f:
                    raise KeyError(f"episode {path} has no dataset '/{key}'")
                data = np.asarray(f[key][()])
                if key.startswith(IMAGE_PREFIX) and data.ndim == 2 and attrs.get("compress"):
                    cam = key[len(IMAGE_PREFIX) :]
                    lengths = None
                    if "compress_len" in f and cam in cams:
                        lengths = np.asarray(f["compress_len"][cams.index(cam)])
                    data = decode_jpeg_rows(data, lengths)
                out[key] = data
    except OSError as exc:
        raise OSError(f"cannot read episode {path}: {exc}") from exc
    return out, attrs


def episode_dt(attrs: Mapping[str, Any]) -> float | None:
    """Sample period from the attributes ('dt', 'control_dt' or 1 / 'fps'); None if absent."""
    for key in ("dt", "control_dt"):
        if attrs.get(key):
            return float(attrs[key])
    fps = attrs.get("fps")
    return 1.0 / float(fps) if fps else None


def resize_images(frames: np.ndarray, size: Sequence[int] | None) -> np.ndarray:
    """[T, H, W, 3] uint8 -> [T, h, w, 3] with ``size = (h, w)`` (area interpolation)."""
    if size is None or tuple(frames.shape[1:3]) == tuple(size):
        return frames
    import cv2

    h, w = int(size[0]), int(size[1])
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def load_episodes(
    data_dir: str | Path,
    cameras: Sequence[str] = (),
    image_size: Sequence[int] | None = None,
    with_qpos: bool = True,
) -> list[Episode]:
    """Load every episode in ``data_dir`` with its actions, qpos and the given cameras."""
    episodes = []
    for path in list_episode_files(data_dir):
        keys = [ACTION_KEY] + ([QPOS_KEY] if with_qpos else [])
        keys += [IMAGE_PREFIX + c for c in cameras]
        raw, attrs = read_arrays(path, keys)
        arrays: dict[str, np.ndarray] = {ACTION_KEY: np.asarray(raw[ACTION_KEY], np.float32)}
        if arrays[ACTION_KEY].ndim != 2 or arrays[ACTION_KEY].shape[0] == 0:
            raise ValueError(
                f"{path}: /action must be (T, D) with T > 0, got {raw[ACTION_KEY].shape}"
            )
        if with_qpos:
            arrays["qpos"] = np.asarray(raw[QPOS_KEY], np.float32)
        for cam in cameras:
            frames = np.asarray(raw[IMAGE_PREFIX + cam])
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise ValueError(
                    f"{path}: camera {cam!r} must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
                )
            arrays[f"images/{cam}"] = resize_images(frames, image_size)
        lengths = {k: v.shape[0] for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{path}: arrays have different lengths {lengths}")
        for k, v in arrays.items():
            if v.dtype != np.uint8 and not np.all(np.isfinite(v)):
                raise ValueError(f"{path}: {k} holds NaN/Inf")
        episodes.append(Episode(path=path, arrays=arrays, attrs=attrs))
    LOG.info("loaded %d episodes from %s", len(episodes), data_dir)
    return episodes


def action_names_from(episodes: Sequence[Episode]) -> list[str] | None:
    """The action names ('joint_names' or 'action_names' root attribute), equal in every episode."""
    names = [ep.attrs.get("joint_names", ep.attrs.get("action_names")) for ep in episodes]
    if not names or names[0] is None:
        return None
    first = [str(n) for n in names[0]]
    for ep, n in zip(episodes, names, strict=True):
        if n is None or [str(x) for x in n] != first:
            raise ValueError(f"{ep.path}: joint_names differ from {episodes[0].path}")
    return first


def data_hash(episodes: Sequence[Episode]) -> str:
    """sha256 over the episode file names and their action / qpos arrays (identifies the data)."""
    h = hashlib.sha256()
    for ep in sorted(episodes, key=lambda e: e.path.name):
        h.update(ep.path.name.encode())
        for key in (ACTION_KEY, "qpos"):
            if key in ep.arrays:
                arr = np.ascontiguousarray(ep.arrays[key], dtype=np.float32)
                h.update(json.dumps([key, list(arr.shape)]).encode())
                h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()
