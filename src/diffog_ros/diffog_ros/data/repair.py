"""Turn an interrupted (or otherwise damaged) recording into a valid episode.

An interrupted recording is an ``episode_<i>.hdf5.tmp`` left by a killed recorder. The writer
kept it in HDF5 SWMR mode, so it opens as a SWMR reader even though its "open for writing" flag
is still set. The rows to keep are the longest prefix that is

* no longer than ``/committed_rows`` (rows written and flushed before the last commit),
* present in every time-indexed dataset, and
* finite, strictly increasing in ``/timestamps``.

They are copied into ``episode_<i>.hdf5.repairing`` with the original attributes plus the final
ones (``status="repaired"``, ``repair_dropped_rows``, achieved rate, ...), which is then given
its final name. A finished file is replaced in place only when it has defects and only after the
repaired copy is complete; a different existing file is never overwritten.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from diffog_ros.data.episode import (
    COMMITTED_ROWS,
    COMPRESS_LEN,
    STATUS_REPAIRED,
    TIMESTAMPS,
    episode_name,
    final_attrs,
    iter_episode_files,
    parse_episode_name,
    to_attr,
)
from diffog_ros.data.validate import validate_episode

log = logging.getLogger(__name__)


class RepairError(RuntimeError):
    """The file cannot be turned into a valid episode."""


@dataclass
class RepairResult:
    source: Path
    output: Path | None
    rows_kept: int
    rows_dropped: int
    action: str  # "repaired" | "unchanged" | "empty" | "failed"
    message: str = ""


def _open_any(path: Path) -> h5py.File:
    """Open a possibly interrupted file read-only (SWMR first: it ignores the write flag)."""
    errors = []
    for kwargs in ({"swmr": True}, {}):
        try:
            return h5py.File(path, "r", **kwargs)
        except OSError as exc:
            errors.append(str(exc))
    raise RepairError(f"cannot open {path} as HDF5: {errors[-1]}")


def _row_datasets(f: h5py.File) -> list[str]:
    """Datasets indexed by sample along axis 0 (everything but compress_len / committed_rows)."""
    names: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and name not in (COMPRESS_LEN, COMMITTED_ROWS):
            names.append(name)

    f.visititems(visit)
    return names


def recoverable_rows(f: h5py.File) -> tuple[int, int]:
    """``(rows to keep, rows present)`` for an open episode file."""
    if TIMESTAMPS not in f:
        raise RepairError("no /timestamps dataset: not an episode file")
    names = _row_datasets(f)
    present = int(f[TIMESTAMPS].shape[0])
    n = min(int(f[name].shape[0]) for name in names) if names else 0
    if COMMITTED_ROWS in f:
        n = min(n, int(f[COMMITTED_ROWS][0]))
    if COMPRESS_LEN in f:
        n = min(n, int(f[COMPRESS_LEN].shape[1]))
    ts = f[TIMESTAMPS][:n]
    good = np.isfinite(ts)
    if n > 1:
        good[1:] &= np.diff(ts) > 0
    bad = np.flatnonzero(~good)
    if bad.size:
        n = int(bad[0])
    return max(n, 0), present


def _copy(src: h5py.File, dst_path: Path, n: int, dropped: int, reason: str) -> None:
    with h5py.File(dst_path, "w", libver="latest") as dst:
        for name in _row_datasets(src):
            ds = src[name]
            data = ds[:n]  # padded JPEG rows are copied as they are
            out = dst.create_dataset(name, data=data, dtype=ds.dtype)
            for key, value in ds.attrs.items():
                out.attrs[key] = value
        if COMPRESS_LEN in src:
            cl = src[COMPRESS_LEN]
            dst.create_dataset(COMPRESS_LEN, data=cl[:, :n], dtype=cl.dtype)
        dst.create_dataset(COMMITTED_ROWS, data=np.array([n], dtype=np.int64))
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        fps = float(src.attrs.get("fps", 0.0) or 0.0)
        extra = {
            "repaired": True,
            "repair_dropped_rows": int(dropped),
            "repair_reason": reason,
        }
        if "stop_reason" not in src.attrs:
            extra["stop_reason"] = "interrupted (repaired)"
        ts = dst[TIMESTAMPS][()]
        for key, value in final_attrs(ts, fps if fps > 0 else 1.0, STATUS_REPAIRED, extra).items():
            dst.attrs[key] = to_attr(value)


def repair_episode(
    path: str | Path, out_dir: str | Path | None = None, keep_source: bool = False
) -> RepairResult:
    """Repair one file. ``out_dir`` (default: the file's directory) receives ``episode_<i>.hdf5``.

    Finished files without defects are left unchanged. The interrupted source is removed after a
    successful repair unless ``keep_source``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    parsed = parse_episode_name(path.name)
    interrupted = parsed is not None and parsed[1] != ""
    if not interrupted:
        report = validate_episode(path, decode_images="none")
        if report.ok:
            return RepairResult(path, path, _length(path), 0, "unchanged", "no defects")
        reason = "; ".join(report.defects)
    else:
        reason = f"interrupted recording ({parsed[1]})"
    out_dir = Path(out_dir) if out_dir is not None else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    index = parsed[0] if parsed is not None else None
    if index is None:
        final = out_dir / (path.stem + ".repaired.hdf5")
    else:
        final = out_dir / episode_name(index)
    same_file = final.exists() and final.resolve() == path.resolve()
    if final.exists() and not same_file:
        raise RepairError(
            f"{final} already exists: not overwriting it (use --out DIR to write elsewhere)"
        )
    work = final.with_name(final.name + ".repairing")
    src = _open_any(path)
    try:
        n, present = recoverable_rows(src)
        if n == 0:
            return RepairResult(path, None, 0, present, "empty", "no complete row to recover")
        try:
            _copy(src, work, n, present - n, reason)
        except BaseException:
            work.unlink(missing_ok=True)
            raise
    finally:
        src.close()
    check = validate_episode(work, decode_images="sample", check_name=False)
    if not check.ok:
        work.unlink(missing_ok=True)
        raise RepairError(f"repaired copy still has defects: {'; '.join(check.defects)}")
    if same_file:
        os.replace(work, final)
    else:
        try:
            os.link(work, final)
        except FileExistsError as exc:
            work.unlink(missing_ok=True)
            raise RepairError(f"{final} appeared meanwhile: not overwriting it") from exc
        os.unlink(work)
        if interrupted and not keep_source:
            path.unlink()
    log.info("repaired %s -> %s (%d rows kept, %d dropped)", path, final, n, present - n)
    return RepairResult(path, final, n, present - n, "repaired", reason)


def _length(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return int(f[TIMESTAMPS].shape[0])


def repair_dataset(
    directory: str | Path, out_dir: str | Path | None = None, keep_source: bool = False
) -> list[RepairResult]:
    """Repair every interrupted or defective episode in ``directory``."""
    results = []
    for _i, p in iter_episode_files(Path(directory), ("", ".tmp")):
        try:
            results.append(repair_episode(p, out_dir, keep_source))
        except RepairError as exc:
            results.append(RepairResult(p, None, 0, 0, "failed", str(exc)))
    return results
