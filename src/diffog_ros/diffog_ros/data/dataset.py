"""Reading recorded episodes back (the learning code's entry point; no rclpy).

Small API::

    from diffog_ros.data.dataset import list_episodes, load_episode, episode_attrs, open_episode

    paths = list_episodes("data/transfer_cube")               # finished episode_<i>.hdf5, by index
    ep = load_episode(paths[0], keys=["observations/qpos", "action"])   # dict of numpy arrays
    ep = load_episode(paths[0])                               # every time-indexed dataset
    attrs = episode_attrs(paths[0])                           # fps, joint_names, task, ... (JSON decoded)
    with open_episode(paths[0]) as ep:                        # lazy: nothing read until sliced
        window = ep["action"][10:26]                          # (16, D) float64
        frames = ep.frames("cam_high", 10, 12)                # (2, H, W, 3) uint8, JPEG decoded

Keys are dataset paths without the leading slash (``"observations/qpos"``, ``"action"``,
``"observations/images/cam_high"``, ``"valid/qpos"``, ``"timestamps"``); short aliases
``"qpos"``, ``"qvel"``, ``"effort"`` and ``"images/<cam>"`` are accepted too. Images are always
returned decoded, (T, H, W, 3) uint8 RGB, whether stored raw or JPEG-compressed. Rows where a
stream had no fresh sample hold NaN (images: zeros) and ``valid/<stream>`` is False there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from diffog_ros.data.episode import (
    COMMITTED_ROWS,
    COMPRESS_LEN,
    FLOAT_STREAMS,
    IMAGES_GROUP,
    TIMESTAMPS,
    decode_attrs,
    iter_episode_files,
)
from diffog_ros.data.images import decode_jpeg

_ALIASES = {
    "qpos": "observations/qpos",
    "qvel": "observations/qvel",
    "effort": "observations/effort",
}


def list_episodes(directory: str | Path, include_incomplete: bool = False) -> list[Path]:
    """Finished episode files ``episode_<i>.hdf5`` in ``directory``, sorted by index.

    With ``include_incomplete``, interrupted ``episode_<i>.hdf5.tmp`` files are listed too
    (repair them with ``diffog-ros data repair`` before training on them).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {directory}")
    suffixes = ("", ".tmp") if include_incomplete else ("",)
    return [p for _i, p in iter_episode_files(directory, suffixes)]


def _canonical(key: str) -> str:
    key = key.lstrip("/")
    if key in _ALIASES:
        return _ALIASES[key]
    if key.startswith("images/"):
        return "observations/" + key
    return key


def _time_keys(f: h5py.File) -> list[str]:
    keys: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and name not in (COMMITTED_ROWS, COMPRESS_LEN):
            keys.append(name)

    f.visititems(visit)
    return sorted(keys)


class EpisodeReader:
    """Lazy, read-only view of one episode file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"episode not found: {self.path}")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise OSError(
                f"cannot open {self.path} ({exc}); if the recording was interrupted, "
                f"run `diffog-ros data repair {self.path}`"
            ) from exc
        self.attrs = decode_attrs(self._f.attrs)
        self.camera_names: list[str] = list(self.attrs.get("camera_names") or [])
        if not self.camera_names and IMAGES_GROUP in self._f:
            self.camera_names = sorted(self._f[IMAGES_GROUP].keys())
        self.compressed = bool(self.attrs.get("compress", False))

    # -------------------------------------------------------------- context management
    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> EpisodeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- structure
    def __len__(self) -> int:
        return int(self._f[TIMESTAMPS].shape[0])

    def keys(self) -> list[str]:
        """Time-indexed dataset keys present in this file."""
        return _time_keys(self._f)

    def __contains__(self, key: str) -> bool:
        return _canonical(key) in self._f

    def __getitem__(self, key: str) -> h5py.Dataset:
        """The raw h5py dataset (lazy; slice it to read). Images may be JPEG rows."""
        name = _canonical(key)
        if name not in self._f:
            raise KeyError(f"{key!r} not in {self.path.name}; available: {self.keys()}")
        return self._f[name]

    # -------------------------------------------------------------- images
    def _image_size(self, camera: str) -> tuple[int, int]:
        ds = self._f[f"{IMAGES_GROUP}/{camera}"]
        if "height" in ds.attrs and "width" in ds.attrs:
            return int(ds.attrs["height"]), int(ds.attrs["width"])
        if ds.ndim == 4:
            return int(ds.shape[1]), int(ds.shape[2])
        raise KeyError(f"image size of {camera} unknown")

    def frames(self, camera: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Decoded frames ``[start, stop)`` of ``camera``: (N, H, W, 3) uint8."""
        name = f"{IMAGES_GROUP}/{camera}"
        if name not in self._f:
            raise KeyError(f"camera {camera!r} not in {self.path.name}")
        ds = self._f[name]
        stop = ds.shape[0] if stop is None else stop
        if ds.ndim == 4:
            return np.asarray(ds[start:stop], dtype=np.uint8)
        h, w = self._image_size(camera)
        rows = ds[start:stop]
        lengths = None
        if COMPRESS_LEN in self._f and camera in self.camera_names:
            lengths = self._f[COMPRESS_LEN][self.camera_names.index(camera), start:stop]
        out = np.zeros((rows.shape[0], h, w, 3), dtype=np.uint8)
        for i in range(rows.shape[0]):
            n = None if lengths is None else int(lengths[i])
            if n == 0:
                continue  # no frame for this sample (valid/<cam> is False)
            out[i] = decode_jpeg(rows[i], n)
        return out

    # -------------------------------------------------------------- whole arrays
    def load(self, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        wanted = self.keys() if keys is None else [_canonical(k) for k in keys]
        out: dict[str, np.ndarray] = {}
        for name in wanted:
            if name not in self._f:
                raise KeyError(f"{name!r} not in {self.path.name}; available: {self.keys()}")
            if name.startswith(IMAGES_GROUP + "/"):
                out[name] = self.frames(name[len(IMAGES_GROUP) + 1 :])
            else:
                out[name] = self._f[name][()]
        return out


@contextmanager
def open_episode(path: str | Path) -> Iterator[EpisodeReader]:
    """Context manager yielding an :class:`EpisodeReader`."""
    reader = EpisodeReader(path)
    try:
        yield reader
    finally:
        reader.close()


def load_episode(path: str | Path, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays of one episode: ``keys`` (default: every time-indexed dataset) -> numpy array."""
    with open_episode(path) as ep:
        return ep.load(keys)


def episode_attrs(path: str | Path) -> dict[str, Any]:
    """Root attributes of an episode (JSON attributes decoded to lists / dicts)."""
    with open_episode(path) as ep:
        return dict(ep.attrs)


def episode_length(path: str | Path) -> int:
    with open_episode(path) as ep:
        return len(ep)


def float_stream_keys() -> dict[str, str]:
    """Stream name -> dataset key for every float stream the format defines."""
    return {name: spec[0] for name, spec in FLOAT_STREAMS.items()}
