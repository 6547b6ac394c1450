"""Dataset conversion: ALOHA HDF5 <-> a plain NumPy layout, HDF5 re-encoding, LeRobot-like export.

Formats (``diffog-ros data convert SRC OUT --to FORMAT``):

``npz``
    ``OUT/episode_<i>.npz`` (``np.savez_compressed``; keys are the HDF5 dataset paths, images
    decoded to (T, H, W, 3) uint8) and ``OUT/meta.json`` (format, joint names, fps, cameras and the
    root attributes of every episode). Loads with ``np.load(path)`` (``allow_pickle`` stays off).
``hdf5``
    ALOHA-layout episode files. From an ``npz`` directory this is the inverse of the export; from
    an HDF5 directory it re-encodes the images (``compress=True`` -> padded JPEG, ``False`` -> raw).
``lerobot``
    A LeRobot v3-like tree: ``meta/info.json`` (features, fps, path templates), ``meta/stats.json``,
    ``meta/episodes.json``, ``meta/tasks.json``, ``data/chunk-000/file-000.npz`` (all frames of all
    episodes, columns as in LeRobot: ``observation.state``, ``action``, ``timestamp``,
    ``frame_index``, ``episode_index``, ``index``, ``task_index``) and one MP4 per camera in
    ``videos/observation.images.<cam>/chunk-000/file-000.mp4``. LeRobot itself stores the tables as
    parquet; pyarrow is not a dependency of this project, so the tables are ``.npz`` / JSON here and
    ``info.json`` says so (``"table_format": "npz"``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from diffog_ros import __version__
from diffog_ros.data.dataset import list_episodes, open_episode
from diffog_ros.data.episode import (
    FLOAT_STREAMS,
    IMAGES_GROUP,
    TIMESTAMPS,
    VALID_GROUP,
    EpisodeLayout,
    iter_episode_files,
)
from diffog_ros.data.writer import write_episode

log = logging.getLogger(__name__)

NPZ_FORMAT = "diffog_ros.npz"
FORMATS = ("npz", "hdf5", "lerobot")
# Attributes recomputed by the writer, not copied through conversions.
_DERIVED_ATTRS = {
    "format",
    "format_version",
    "compress",
    "joint_names",
    "camera_names",
    "streams",
    "status",
    "num_samples",
    "achieved_rate_hz",
    "low_rate",
    "end_time",
}

Progress = Callable[[str], None]


def _nothing(_msg: str) -> None:
    pass


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _ensure_empty_dir(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output directory {out} is not empty: refusing to overwrite")
    out.mkdir(parents=True, exist_ok=True)


def _layout_from_arrays(
    attrs: dict[str, Any], keys: set[str], shapes: dict[str, tuple], compress: bool
) -> EpisodeLayout:
    joints = attrs.get("joint_names")
    if not isinstance(joints, list) or not joints:
        raise ValueError("source episode has no joint_names attribute")
    streams = tuple(s for s, (key, _w) in FLOAT_STREAMS.items() if key in keys)
    cams = {}
    for cam in attrs.get("camera_names") or []:
        shape = shapes[f"{IMAGES_GROUP}/{cam}"]
        cams[cam] = (int(shape[1]), int(shape[2]))
    return EpisodeLayout(joints, streams, cams, compress=compress)


def _arrays_for_writer(
    data: dict[str, np.ndarray], layout: EpisodeLayout
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    for stream in layout.float_streams:
        arrays[stream] = data[FLOAT_STREAMS[stream][0]]
    for cam in layout.cameras:
        arrays[cam] = data[f"{IMAGES_GROUP}/{cam}"]
    for name in layout.stream_names:
        key = f"{VALID_GROUP}/{name}"
        if key in data:
            valid[name] = data[key].astype(bool)
    return arrays, valid


# ---------------------------------------------------------------------------- npz
def hdf5_to_npz(src: Path, out: Path, progress: Progress = _nothing) -> list[Path]:
    episodes = list_episodes(src)
    if not episodes:
        raise FileNotFoundError(f"no episode_<i>.hdf5 files in {src}")
    _ensure_empty_dir(out)
    meta: dict[str, Any] = {"format": NPZ_FORMAT, "software_version": __version__, "episodes": []}
    written = []
    for path in episodes:
        with open_episode(path) as ep:
            data = ep.load()
            attrs = ep.attrs
        target = out / (path.stem + ".npz")
        np.savez_compressed(target, **data)
        meta["episodes"].append(
            {"file": target.name, "length": len(data[TIMESTAMPS]), "attrs": attrs}
        )
        for key in ("joint_names", "fps", "camera_names", "robot"):
            meta.setdefault(key, attrs.get(key))
        written.append(target)
        progress(f"{path.name} -> {target.name}")
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=_json_default))
    return written


def npz_to_hdf5(src: Path, out: Path, compress: bool, progress: Progress = _nothing) -> list[Path]:
    meta_path = src / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} missing: not an npz export")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != NPZ_FORMAT:
        raise ValueError(f"{meta_path}: format is {meta.get('format')!r}, expected {NPZ_FORMAT!r}")
    _ensure_empty_dir(out)
    written = []
    for entry in meta["episodes"]:
        with np.load(src / entry["file"], allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        attrs = dict(entry["attrs"])
        layout = _layout_from_arrays(
            attrs, set(data), {k: v.shape for k, v in data.items()}, compress
        )
        written.append(_write_converted(out, layout, data, attrs))
        progress(f"{entry['file']} -> {written[-1].name}")
    return written


def _write_converted(
    out: Path, layout: EpisodeLayout, data: dict[str, np.ndarray], attrs: dict[str, Any]
) -> Path:
    arrays, valid = _arrays_for_writer(data, layout)
    keep = {k: v for k, v in attrs.items() if k not in _DERIVED_ATTRS}
    keep["converted_from"] = json.dumps(
        {"status": attrs.get("status"), "compress": attrs.get("compress")}
    )
    fps = float(attrs.get("fps") or 50.0)
    return write_episode(out, layout, arrays, data[TIMESTAMPS], keep, fps, valid)


def hdf5_to_hdf5(src: Path, out: Path, compress: bool, progress: Progress = _nothing) -> list[Path]:
    episodes = list_episodes(src)
    if not episodes:
        raise FileNotFoundError(f"no episode_<i>.hdf5 files in {src}")
    _ensure_empty_dir(out)
    written = []
    for path in episodes:
        with open_episode(path) as ep:
            data = ep.load()
            attrs = dict(ep.attrs)
        shapes = {k: v.shape for k, v in data.items()}
        layout = _layout_from_arrays(attrs, set(data), shapes, compress)
        written.append(_write_converted(out, layout, data, attrs))
        progress(f"{path.name} -> {written[-1].name}")
    return written


# ---------------------------------------------------------------------------- lerobot
_LEROBOT_FLOATS = {
    "qpos": "observation.state",
    "qvel": "observation.velocity",
    "effort": "observation.effort",
    "action": "action",
    "action_raw": "action_raw",
    "action_optimized": "action_optimized",
}


def _stats(values: np.ndarray) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    finite = v[np.all(np.isfinite(v), axis=1)]
    if finite.size == 0:
        return {"count": [0]}
    return {
        "min": finite.min(axis=0).tolist(),
        "max": finite.max(axis=0).tolist(),
        "mean": finite.mean(axis=0).tolist(),
        "std": finite.std(axis=0).tolist(),
        "count": [int(finite.shape[0])],
    }


def hdf5_to_lerobot(src: Path, out: Path, progress: Progress = _nothing) -> list[Path]:
    episodes = list_episodes(src)
    if not episodes:
        raise FileNotFoundError(f"no episode_<i>.hdf5 files in {src}")
    _ensure_empty_dir(out)
    columns: dict[str, list[np.ndarray]] = {}
    ep_meta: list[dict[str, Any]] = []
    tasks: dict[str, int] = {}
    writers: dict[str, cv2.VideoWriter] = {}
    image_stats: dict[str, list[np.ndarray]] = {}
    info_feats: dict[str, Any] = {}
    first_attrs: dict[str, Any] = {}
    fps = None
    total = 0
    try:
        for ep_index, path in enumerate(episodes):
            with open_episode(path) as ep:
                attrs = ep.attrs
                first_attrs = first_attrs or attrs
                ep_fps = float(attrs.get("fps") or 0)
                if fps is None:
                    fps = ep_fps
                elif abs(ep_fps - fps) > 1e-9:
                    raise ValueError(f"{path.name}: fps {ep_fps} differs from {fps}")
                ts = ep[TIMESTAMPS][()]
                n = int(ts.size)
                task = str(attrs.get("task", ""))
                task_index = tasks.setdefault(task, len(tasks))
                cols = {
                    "timestamp": (ts - ts[0]).astype(np.float32),
                    "frame_index": np.arange(n, dtype=np.int64),
                    "episode_index": np.full(n, ep_index, dtype=np.int64),
                    "index": np.arange(total, total + n, dtype=np.int64),
                    "task_index": np.full(n, task_index, dtype=np.int64),
                }
                joints = list(attrs.get("joint_names") or [])
                for stream, feat in _LEROBOT_FLOATS.items():
                    key = FLOAT_STREAMS[stream][0]
                    if key in ep:
                        cols[feat] = ep[key][()].astype(np.float32)
                        info_feats.setdefault(
                            feat, {"dtype": "float32", "shape": [len(joints)], "names": joints}
                        )
                entry: dict[str, Any] = {
                    "episode_index": ep_index,
                    "source_file": path.name,
                    "tasks": [task],
                    "length": n,
                    "dataset_from_index": total,
                    "dataset_to_index": total + n,
                    "data/chunk_index": 0,
                    "data/file_index": 0,
                }
                for cam in ep.camera_names:
                    feat = f"observation.images.{cam}"
                    frames = ep.frames(cam)
                    h, w = frames.shape[1:3]
                    if feat not in writers:
                        vdir = out / "videos" / feat / "chunk-000"
                        vdir.mkdir(parents=True, exist_ok=True)
                        vw = cv2.VideoWriter(
                            str(vdir / "file-000.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)
                        )
                        if not vw.isOpened():
                            raise RuntimeError(f"cannot open an MP4 writer for {feat}")
                        writers[feat] = vw
                        info_feats[feat] = {
                            "dtype": "video",
                            "shape": [int(h), int(w), 3],
                            "names": ["height", "width", "channels"],
                            "info": {"video.fps": fps, "video.codec": "mp4v"},
                        }
                    elif info_feats[feat]["shape"][:2] != [h, w]:
                        raise ValueError(f"{path.name}: {cam} frame size changed")
                    for frame in frames:
                        writers[feat].write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                    image_stats.setdefault(feat, []).append(
                        frames.reshape(n, -1, 3).mean(axis=1) / 255.0
                    )
                    entry[f"videos/{feat}/chunk_index"] = 0
                    entry[f"videos/{feat}/file_index"] = 0
                    entry[f"videos/{feat}/from_timestamp"] = total / fps
                    entry[f"videos/{feat}/to_timestamp"] = (total + n) / fps
            for key, value in cols.items():
                columns.setdefault(key, []).append(value)
            ep_meta.append(entry)
            total += n
            progress(f"{path.name}: {n} frames")
    finally:
        for vw in writers.values():
            vw.release()
    data = {k: np.concatenate(v) for k, v in columns.items()}
    ddir = out / "data" / "chunk-000"
    ddir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(ddir / "file-000.npz", **data)
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        info_feats[key] = {"dtype": str(data[key].dtype), "shape": [1], "names": None}
    stats = {k: _stats(v) for k, v in data.items() if k in info_feats}
    for feat, per_ep in image_stats.items():
        stats[feat] = _stats(np.concatenate(per_ep))
    meta = out / "meta"
    meta.mkdir()
    info = {
        "codebase_version": "v3.0",
        "exported_by": f"diffog_ros {__version__}",
        "table_format": "npz",
        "robot_type": first_attrs.get("robot", ""),
        "total_episodes": len(ep_meta),
        "total_frames": total,
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(ep_meta)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.npz",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": info_feats,
    }
    (meta / "info.json").write_text(json.dumps(info, indent=2, default=_json_default))
    (meta / "stats.json").write_text(json.dumps(stats, indent=2, default=_json_default))
    (meta / "episodes.json").write_text(json.dumps(ep_meta, indent=2, default=_json_default))
    (meta / "tasks.json").write_text(
        json.dumps([{"task_index": i, "task": t} for t, i in tasks.items()], indent=2)
    )
    return [ddir / "file-000.npz", *(out / "videos").glob("*/chunk-000/file-000.mp4")]


def detect_format(src: Path) -> str:
    if (src / "meta.json").is_file():
        return "npz"
    if iter_episode_files(src, ("",)):
        return "hdf5"
    raise ValueError(f"{src}: neither episode_<i>.hdf5 files nor an npz export (meta.json)")


def convert(
    src: str | Path,
    out: str | Path,
    to: str,
    compress: bool | None = None,
    progress: Progress = _nothing,
) -> list[Path]:
    """Convert the dataset in ``src`` to format ``to`` in the new directory ``out``."""
    src, out = Path(src), Path(out)
    if to not in FORMATS:
        raise ValueError(f"unknown format {to!r}; choose one of {FORMATS}")
    if not src.is_dir():
        raise FileNotFoundError(f"source directory not found: {src}")
    if src.resolve() == out.resolve():
        raise ValueError("source and output directories must differ")
    kind = detect_format(src)
    if to == "npz":
        if kind != "hdf5":
            raise ValueError("npz export needs an HDF5 episode directory")
        return hdf5_to_npz(src, out, progress)
    if to == "lerobot":
        if kind != "hdf5":
            raise ValueError("lerobot export needs an HDF5 episode directory")
        return hdf5_to_lerobot(src, out, progress)
    if kind == "npz":
        return npz_to_hdf5(src, out, bool(compress), progress)
    if compress is None:
        raise ValueError("HDF5 -> HDF5 re-encoding needs --compress or --no-compress")
    return hdf5_to_hdf5(src, out, compress, progress)
