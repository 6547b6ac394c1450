"""Check episode files and dataset directories against the schema in :mod:`.episode`.

A *defect* makes a file unfit for training or breaks the layout (``diffog-ros data validate``
exits non-zero); a *warning* is worth knowing but harmless (for example a ``low_rate`` flag).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from diffog_ros.data.episode import (
    COMMITTED_ROWS,
    COMPRESS_LEN,
    FINAL_STATUSES,
    FLOAT_STREAMS,
    FORMAT_NAME,
    IMAGES_GROUP,
    JSON_ATTRS,
    REQUIRED_ATTRS,
    TIMESTAMPS,
    VALID_GROUP,
    decode_attrs,
    iter_episode_files,
    parse_episode_name,
)
from diffog_ros.data.images import decode_jpeg


@dataclass
class Report:
    """Findings for one file (or a whole directory)."""

    path: Path
    defects: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.defects

    def defect(self, text: str) -> None:
        self.defects.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


def _dtype_ok(ds: h5py.Dataset, kind: str) -> bool:
    return np.dtype(ds.dtype) == np.dtype(kind)


def validate_episode(
    path: str | Path, decode_images: str = "sample", check_name: bool = True
) -> Report:
    """Check one ``episode_<i>.hdf5``. ``decode_images``: ``"none"``, ``"sample"`` (first and
    last valid frame per camera) or ``"all"``. ``check_name=False`` checks the content only."""
    path = Path(path)
    rep = Report(path)
    parsed = parse_episode_name(path.name)
    if not check_name:
        pass
    elif parsed is None:
        rep.warn("file name is not episode_<i>.hdf5")
    elif parsed[1]:
        rep.defect(f"interrupted recording ({parsed[1]} file): run `diffog-ros data repair {path}`")
        return rep
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        rep.defect(f"cannot open as HDF5 ({exc}); try `diffog-ros data repair {path}`")
        return rep
    with f:
        _check_file(f, rep, decode_images)
    return rep


def _check_file(f: h5py.File, rep: Report, decode_images: str) -> None:
    raw_attrs = dict(f.attrs)
    for key in REQUIRED_ATTRS:
        if key not in raw_attrs:
            rep.defect(f"missing root attribute {key!r}")
    for key in JSON_ATTRS:
        if key in raw_attrs:
            text = raw_attrs[key]
            text = text.decode() if isinstance(text, bytes) else text
            try:
                json.loads(text)
            except (TypeError, json.JSONDecodeError):
                rep.defect(f"attribute {key!r} is not valid JSON: {text!r:.80}")
    attrs = decode_attrs(raw_attrs)
    if attrs.get("format", FORMAT_NAME) != FORMAT_NAME:
        rep.warn(f"format attribute is {attrs.get('format')!r}, not {FORMAT_NAME!r}")
    status = attrs.get("status")
    if status is not None and status not in FINAL_STATUSES:
        rep.defect(f"status is {status!r}: the episode was not closed (repair it)")
    if "fps" in attrs and not (isinstance(attrs["fps"], (int, float)) and attrs["fps"] > 0):
        rep.defect(f"fps must be a positive number, got {attrs['fps']!r}")
    if attrs.get("low_rate"):
        rep.warn(
            f"low_rate: achieved {attrs.get('achieved_rate_hz', 0):.1f} Hz of "
            f"{attrs.get('fps')} Hz (below 90 %)"
        )
    silent = attrs.get("silent_topics") or []
    if silent:
        rep.warn(f"topics silent during recording: {silent}")

    if TIMESTAMPS not in f:
        rep.defect("missing /timestamps")
        return
    ts_ds = f[TIMESTAMPS]
    if ts_ds.ndim != 1 or not _dtype_ok(ts_ds, "f8"):
        rep.defect(f"/timestamps must be (T,) float64, got {ts_ds.shape} {ts_ds.dtype}")
        return
    ts = ts_ds[()]
    T = int(ts.shape[0])
    if T < 1:
        rep.defect("episode has no samples")
    if not np.all(np.isfinite(ts)):
        rep.defect("timestamps contain non-finite values")
    elif T > 1 and not np.all(np.diff(ts) > 0):
        rep.defect("timestamps are not strictly increasing")
    if "num_samples" in attrs and attrs["num_samples"] != T:
        rep.defect(f"num_samples attribute {attrs['num_samples']} != {T} rows")
    if COMMITTED_ROWS in f and int(f[COMMITTED_ROWS][0]) != T:
        rep.defect(f"/committed_rows {int(f[COMMITTED_ROWS][0])} != {T} rows")

    joints = attrs.get("joint_names")
    D = len(joints) if isinstance(joints, list) else None
    streams = attrs.get("streams")
    streams = list(streams) if isinstance(streams, list) else []
    cams = attrs.get("camera_names")
    cams = list(cams) if isinstance(cams, list) else []

    found_any = False
    for stream, (key, width) in FLOAT_STREAMS.items():
        if key not in f:
            if stream in streams:
                rep.defect(f"stream {stream!r} listed in attrs but /{key} is missing")
            continue
        found_any = True
        ds = f[key]
        want_w = D if width == "joints" else int(width)
        if not _dtype_ok(ds, "f8"):
            rep.defect(f"/{key} must be float64, got {ds.dtype}")
        if ds.ndim != 2 or ds.shape[0] != T or (want_w is not None and ds.shape[1] != want_w):
            rep.defect(f"/{key} has shape {ds.shape}, expected ({T}, {want_w})")
            continue
        data = ds[()]
        valid = _valid_mask(f, stream, T, rep)
        if valid is not None:
            bad = ~np.all(np.isfinite(data), axis=1) & valid
            if np.any(bad):
                rep.defect(f"/{key} has non-finite values in {int(bad.sum())} valid rows")
            if not np.any(valid):
                rep.warn(f"stream {stream!r} has no valid sample")
        elif not np.all(np.isfinite(data)):
            rep.defect(f"/{key} has non-finite values and no /valid/{stream} mask")

    compressed = bool(attrs.get("compress", False))
    img_names = sorted(f[IMAGES_GROUP].keys()) if IMAGES_GROUP in f else []
    if sorted(cams) != img_names:
        rep.defect(f"camera_names attribute {cams} does not match images {img_names}")
    if compressed and img_names:
        if COMPRESS_LEN not in f:
            rep.defect("compress is set but /compress_len is missing")
        else:
            cl = f[COMPRESS_LEN]
            if cl.shape != (len(cams), T):
                rep.defect(f"/compress_len has shape {cl.shape}, expected ({len(cams)}, {T})")
    for cam in img_names:
        found_any = True
        _check_camera(f, cam, cams, T, compressed, rep, decode_images)
    if not found_any:
        rep.defect("episode has no data streams")


def _valid_mask(f: h5py.File, stream: str, T: int, rep: Report) -> np.ndarray | None:
    key = f"{VALID_GROUP}/{stream}"
    if key not in f:
        return None
    ds = f[key]
    if not _dtype_ok(ds, "bool") or ds.shape != (T,):
        rep.defect(f"/{key} must be ({T},) bool, got {ds.shape} {ds.dtype}")
        return None
    return ds[()]


def _check_camera(
    f: h5py.File,
    cam: str,
    cams: list[str],
    T: int,
    compressed: bool,
    rep: Report,
    decode_images: str,
) -> None:
    ds = f[f"{IMAGES_GROUP}/{cam}"]
    if not _dtype_ok(ds, "u1"):
        rep.defect(f"images/{cam} must be uint8, got {ds.dtype}")
        return
    if compressed:
        if ds.ndim != 2 or ds.shape[0] != T:
            rep.defect(f"images/{cam} has shape {ds.shape}, expected ({T}, L) JPEG rows")
            return
    elif ds.ndim != 4 or ds.shape[0] != T or ds.shape[3] != 3:
        rep.defect(f"images/{cam} has shape {ds.shape}, expected ({T}, H, W, 3)")
        return
    valid = _valid_mask(f, cam, T, rep)
    if valid is None:
        valid = np.ones(T, dtype=bool)
    elif not np.any(valid):
        rep.warn(f"camera {cam!r} has no valid frame")
    if not compressed or decode_images == "none":
        return
    lengths = None
    if COMPRESS_LEN in f and cam in cams and f[COMPRESS_LEN].shape == (len(cams), T):
        lengths = f[COMPRESS_LEN][cams.index(cam)]
        if np.any(lengths < 0) or np.any(lengths > ds.shape[1]):
            rep.defect(f"compress_len of {cam} out of range [0, {ds.shape[1]}]")
            return
        if np.any((lengths == 0) & valid):
            rep.defect(f"camera {cam}: valid rows with zero-length JPEG")
    rows = np.flatnonzero(valid)
    if decode_images == "sample" and rows.size > 2:
        rows = rows[[0, -1]]
    h = int(ds.attrs.get("height", -1))
    w = int(ds.attrs.get("width", -1))
    for i in rows:
        try:
            img = decode_jpeg(ds[i], None if lengths is None else int(lengths[i]))
        except ValueError as exc:
            rep.defect(f"camera {cam} frame {int(i)}: {exc}")
            return
        if h > 0 and img.shape[:2] != (h, w):
            rep.defect(f"camera {cam} frame {int(i)} decodes to {img.shape}, expected ({h}, {w})")
            return


def validate_dataset(directory: str | Path, decode_images: str = "sample") -> list[Report]:
    """Validate every episode in a directory; the first report covers the directory itself."""
    directory = Path(directory)
    top = Report(directory)
    reports = [top]
    if not directory.is_dir():
        top.defect("not a directory")
        return reports
    files = iter_episode_files(directory, ("", ".tmp", ".repairing"))
    if not files:
        top.defect("no episode files")
        return reports
    finished = [i for i, p in files if p.name.endswith(".hdf5")]
    if finished:
        gaps = sorted(set(range(min(finished), max(finished) + 1)) - set(finished))
        if gaps:
            top.warn(f"episode indices missing: {gaps[:20]}")
    signatures: dict[str, list[str]] = {}
    for _i, p in files:
        rep = validate_episode(p, decode_images)
        reports.append(rep)
        if rep.ok:
            try:
                with h5py.File(p, "r") as f:
                    a = decode_attrs(f.attrs)
                sig = json.dumps([a.get("joint_names"), a.get("fps"), a.get("robot")])
                signatures.setdefault(sig, []).append(p.name)
            except OSError:  # pragma: no cover - validated just above
                pass
    if len(signatures) > 1:
        top.warn(
            "episodes disagree on joint_names / fps / robot: "
            + "; ".join(f"{v[:3]}{'...' if len(v) > 3 else ''}" for v in signatures.values())
        )
    return reports


def validate_paths(paths: Iterable[str | Path], decode_images: str = "sample") -> list[Report]:
    """Validate files and directories; returns one report per file (and per directory)."""
    out: list[Report] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(validate_dataset(p, decode_images))
        else:
            out.append(validate_episode(p, decode_images))
    return out
