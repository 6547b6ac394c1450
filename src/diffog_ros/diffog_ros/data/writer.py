"""Crash-safe incremental episode writer.

How an episode survives a crash:

* It is written to ``episode_<i>.hdf5.tmp`` in HDF5 SWMR mode (single writer, multiple readers):
  the library orders its metadata writes so that the file on disk is readable at any moment, even
  after a SIGKILL. Every dataset is chunked and resizable, created before SWMR starts.
* Rows are buffered in memory and written by :meth:`EpisodeWriter.flush` (the caller calls it at
  least once a second). After each flush ``/committed_rows`` is updated, so a reader of an
  interrupted file knows exactly which rows are complete (see :mod:`diffog_ros.data.repair`).
* :meth:`EpisodeWriter.close` writes the final attributes and publishes the file as
  ``episode_<i>.hdf5`` with a hard link (never replacing an existing file), then removes the
  temporary name. Finished episodes are never opened for writing again.
* Before every flush the free space is checked against the bytes about to be written plus a
  reserve: a full disk raises :class:`DiskFullError` *before* HDF5 sees ENOSPC, and the rows
  already written can still be closed into a valid episode. (An HDF5 write that does fail with
  ENOSPC leaves the library unable to close the file; the writer then stops touching it and
  the temporary file is left for ``diffog-ros data repair``.)
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from diffog_ros import __version__
from diffog_ros.data.episode import (
    COMMITTED_ROWS,
    COMPRESS_LEN,
    STATUS_COMPLETE,
    STATUS_RECORDING,
    TIMESTAMPS,
    EpisodeLayout,
    Sample,
    episode_name,
    final_attrs,
    float_dataset,
    image_dataset,
    parse_episode_name,
    to_attr,
    valid_dataset,
)
from diffog_ros.data.images import encode_jpeg

log = logging.getLogger(__name__)

#: Root attributes a caller did not give (see episode.REQUIRED_ATTRS).
DEFAULT_ATTRS: dict[str, Any] = {
    "sim": False,
    "robot": "",
    "task": "",
    "trajopt_params": "{}",
    "silent_topics": "[]",
    "metadata": "{}",
}

TMP_SUFFIX = ".tmp"
ROW_CHUNK = 64
JPEG_CHUNK_BYTES = 8192
METADATA_MARGIN = 256 * 1024

# h5py objects whose file hit an I/O error: HDF5 cannot close them cleanly any more, and letting
# Python deallocate them crashes the interpreter. They are kept here, untouched, for the process
# lifetime (see :func:`writer_poisoned`).
_POISONED: list[Any] = []


class WriterError(RuntimeError):
    """The episode file could not be written."""


class DiskFullError(WriterError, OSError):
    """Not enough free space to write the next rows: recording must stop."""

    def __init__(self, message: str) -> None:
        WriterError.__init__(self, message)
        self.errno = errno.ENOSPC
        self.strerror = message


def writer_poisoned() -> bool:
    """True once an HDF5 write failed at the OS level in this process.

    The HDF5 library then holds file state it can neither flush nor close; a process in that
    state should leave with ``os._exit`` after its own clean-up (Python's teardown would crash).
    """
    return bool(_POISONED)


def next_episode_index(directory: Path) -> int:
    """1 + the highest index of any ``episode_<i>.hdf5[.tmp|.repairing]`` in ``directory``."""
    highest = -1
    for p in Path(directory).iterdir():
        parsed = parse_episode_name(p.name)
        if parsed is not None:
            highest = max(highest, parsed[0])
    return highest + 1


def free_bytes(directory: Path) -> int:
    return int(shutil.disk_usage(directory).free)


def _is_enospc(exc: BaseException) -> bool:
    text = str(exc)
    return (
        getattr(exc, "errno", None) == errno.ENOSPC
        or "errno = 28" in text
        or ("No space left" in text)
    )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class EpisodeWriter:
    """Writes one episode incrementally; see the module docstring for the guarantees.

    Thread safety: :meth:`append` may be called from one thread while another calls
    :meth:`flush`, :meth:`close` or :meth:`discard` (those three are serialised).
    """

    def __init__(
        self,
        directory: Path,
        layout: EpisodeLayout,
        attrs: Mapping[str, Any],
        fps: float,
        min_free_bytes: int = 0,
        fsync: bool = False,
    ) -> None:
        if not math.isfinite(float(fps)) or float(fps) <= 0:
            raise ValueError(f"fps must be finite and > 0, got {fps!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.layout = layout
        self.fps = float(fps)
        self.min_free_bytes = max(0, int(min_free_bytes))
        self.fsync = bool(fsync)
        self._lock = threading.Lock()  # guards _pending
        self._io = threading.RLock()  # serialises flush / close / discard
        self._pending: list[Sample] = []
        self._rows = 0
        self._jpeg_len = 0
        self._closed = False
        self._failed: str | None = None
        self.index, self.tmp_path = self._reserve()
        self.final_path: Path | None = None
        try:
            self._file = self._create(attrs)
        except BaseException:
            self._remove_tmp()
            raise

    # ------------------------------------------------------------------ creation
    def _reserve(self) -> tuple[int, Path]:
        index = next_episode_index(self.directory)
        for _ in range(1000):
            tmp = self.directory / (episode_name(index) + TMP_SUFFIX)
            if not (self.directory / episode_name(index)).exists():
                try:
                    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    index += 1
                    continue
                os.close(fd)
                return index, tmp
            index += 1
        raise WriterError(f"could not reserve an episode index in {self.directory}")

    def _create(self, attrs: Mapping[str, Any]) -> h5py.File:
        lay = self.layout
        f = h5py.File(self.tmp_path, "w", libver="latest")
        try:
            f.create_dataset(
                TIMESTAMPS, shape=(0,), maxshape=(None,), chunks=(ROW_CHUNK * 4,), dtype="f8"
            )
            for stream in lay.float_streams:
                w = lay.float_width(stream)
                f.create_dataset(
                    float_dataset(stream),
                    shape=(0, w),
                    maxshape=(None, w),
                    chunks=(ROW_CHUNK, w),
                    dtype="f8",
                    fillvalue=np.nan,
                )
            for cam, (h, w) in lay.cameras.items():
                if lay.compress:
                    ds = f.create_dataset(
                        image_dataset(cam),
                        shape=(0, 0),
                        maxshape=(None, None),
                        chunks=(1, JPEG_CHUNK_BYTES),
                        dtype="u1",
                    )
                else:
                    ds = f.create_dataset(
                        image_dataset(cam),
                        shape=(0, h, w, 3),
                        maxshape=(None, h, w, 3),
                        chunks=(1, h, w, 3),
                        dtype="u1",
                    )
                ds.attrs["height"] = h
                ds.attrs["width"] = w
            if lay.compress and lay.cameras:
                n = len(lay.cameras)
                f.create_dataset(
                    COMPRESS_LEN,
                    shape=(n, 0),
                    maxshape=(n, None),
                    chunks=(n, ROW_CHUNK * 4),
                    dtype="i8",
                )
            for stream in lay.stream_names:
                f.create_dataset(
                    valid_dataset(stream),
                    shape=(0,),
                    maxshape=(None,),
                    chunks=(ROW_CHUNK * 4,),
                    dtype="bool",
                )
            f.create_dataset(COMMITTED_ROWS, data=np.zeros(1, dtype=np.int64))
            base = dict(DEFAULT_ATTRS)
            base["software_version"] = __version__
            base.update(attrs)
            base.update(lay.identity_attrs())
            base.setdefault("fps", self.fps)
            base["status"] = STATUS_RECORDING
            base.setdefault("start_time", time.time())
            for key, value in base.items():
                f.attrs[key] = to_attr(value)
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        return f

    def _remove_tmp(self) -> None:
        try:
            self.tmp_path.unlink()
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ state
    @property
    def rows_written(self) -> int:
        return self._rows

    @property
    def rows_pending(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failed(self) -> str | None:
        """Why the writer stopped accepting rows, or ``None``."""
        return self._failed

    # ------------------------------------------------------------------ rows
    def append(self, sample: Sample) -> None:
        """Queue one row. Raises ``ValueError`` on a value of the wrong shape or dtype."""
        if self._closed or self._failed:
            raise WriterError(
                f"episode {self.index} is not accepting rows ({self._failed or 'closed'})"
            )
        ts = float(sample.timestamp)
        if not math.isfinite(ts):
            raise ValueError(f"sample timestamp must be finite, got {sample.timestamp!r}")
        lay = self.layout
        clean: dict[str, np.ndarray | None] = {}
        for stream in lay.float_streams:
            value = sample.values.get(stream)
            if value is not None:
                arr = np.asarray(value, dtype=np.float64).reshape(-1)
                if arr.shape != (lay.float_width(stream),):
                    raise ValueError(
                        f"{stream}: expected {lay.float_width(stream)} values, got {arr.shape}"
                    )
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{stream}: non-finite values must be passed as None")
                value = arr
            clean[stream] = value
        for cam, (h, w) in lay.cameras.items():
            value = sample.values.get(cam)
            if value is not None:
                arr = np.asarray(value)
                if arr.dtype != np.uint8 or arr.shape != (h, w, 3):
                    raise ValueError(
                        f"camera {cam}: expected ({h}, {w}, 3) uint8, got {arr.shape} {arr.dtype}"
                    )
                value = arr
            clean[cam] = value
        with self._lock:
            self._pending.append(Sample(ts, clean))

    def _space_needed(self, rows: int) -> int:
        lay = self.layout
        n0, n1 = self._rows, self._rows + rows
        chunks = _ceil_div(n1, ROW_CHUNK) - _ceil_div(n0, ROW_CHUNK) + 1
        need = chunks * ROW_CHUNK * 8 * sum(lay.float_width(s) for s in lay.float_streams)
        need += chunks * ROW_CHUNK * 8 * (1 + len(lay.stream_names))  # timestamps + masks
        for h, w in lay.cameras.values():
            need += rows * (h * w * 3 if not lay.compress else max(self._jpeg_len, h * w))
        return need + METADATA_MARGIN

    def flush(self) -> int:
        """Write the queued rows; returns how many. Raises :class:`DiskFullError` or
        :class:`WriterError` (then the writer accepts no more rows; :meth:`close` keeps what
        was flushed before)."""
        with self._io:
            return self._flush()

    def _flush(self) -> int:
        if self._closed:
            return 0
        if self._failed:
            raise WriterError(self._failed)
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        free = free_bytes(self.directory)
        fits = len(rows)
        while fits > 0 and free - self._space_needed(fits) < self.min_free_bytes:
            fits -= 1  # write as many rows as the disk takes, then stop
        try:
            if fits:
                self._write(rows[:fits])
        except Exception as exc:
            if _is_enospc(exc):
                self._failed = (
                    f"disk full (no space left on device) in {self.directory}: recording stopped "
                    f"after {self._rows} rows; run `diffog-ros data repair {self.tmp_path}` "
                    "after freeing space"
                )
                self._poison()
                raise DiskFullError(self._failed) from exc
            self._failed = f"HDF5 write failed for {self.tmp_path}: {exc}"
            self._poison()
            raise WriterError(self._failed) from exc
        if fits < len(rows):
            self._failed = (
                f"disk full: {free / 1e6:.2f} MB were free in {self.directory} and "
                f"{self.min_free_bytes / 1e6:.2f} MB are kept in reserve; recording stopped "
                f"after {self._rows} rows ({len(rows) - fits} newer rows dropped)"
            )
            raise DiskFullError(self._failed)
        return len(rows)

    def _write(self, rows: list[Sample]) -> None:
        lay = self.layout
        f = self._file
        n0 = self._rows
        k = len(rows)
        n1 = n0 + k
        ts = np.array([r.timestamp for r in rows], dtype=np.float64)
        for stream in lay.float_streams:
            w = lay.float_width(stream)
            block = np.full((k, w), np.nan, dtype=np.float64)
            mask = np.zeros(k, dtype=bool)
            for i, r in enumerate(rows):
                v = r.values.get(stream)
                if v is not None:
                    block[i] = v
                    mask[i] = True
            ds = f[float_dataset(stream)]
            ds.resize(n1, axis=0)
            ds[n0:n1] = block
            self._write_mask(stream, n0, n1, mask)
        lens = []
        for cam, (h, w) in lay.cameras.items():
            mask = np.array([r.values.get(cam) is not None for r in rows], dtype=bool)
            ds = f[image_dataset(cam)]
            if lay.compress:
                encoded = [
                    encode_jpeg(r.values[cam], lay.jpeg_quality) if m else np.zeros(0, np.uint8)
                    for r, m in zip(rows, mask, strict=True)
                ]
                longest = max(e.size for e in encoded)
                if longest > ds.shape[1]:
                    ds.resize(longest, axis=1)
                    self._jpeg_len = longest
                block = np.zeros((k, ds.shape[1]), dtype=np.uint8)
                for i, e in enumerate(encoded):
                    block[i, : e.size] = e
                lens.append([e.size for e in encoded])
            else:
                block = np.zeros((k, h, w, 3), dtype=np.uint8)
                for i, r in enumerate(rows):
                    if mask[i]:
                        block[i] = r.values[cam]
            ds.resize(n1, axis=0)
            ds[n0:n1] = block
            self._write_mask(cam, n0, n1, mask)
        if lay.compress and lay.cameras:
            cl = f[COMPRESS_LEN]
            cl.resize(n1, axis=1)
            cl[:, n0:n1] = np.asarray(lens, dtype=np.int64)
        tds = f[TIMESTAMPS]
        tds.resize(n1, axis=0)
        tds[n0:n1] = ts
        f.flush()
        # Only now are rows [0, n1) complete on disk: record that (see repair.py).
        f[COMMITTED_ROWS][0] = n1
        f.flush()
        if self.fsync:
            os.fsync(f.id.get_vfd_handle())
        self._rows = n1

    def _write_mask(self, stream: str, n0: int, n1: int, mask: np.ndarray) -> None:
        ds = self._file[valid_dataset(stream)]
        ds.resize(n1, axis=0)
        ds[n0:n1] = mask

    def _poison(self) -> None:
        _POISONED.append(self._file)
        self._file = None

    # ------------------------------------------------------------------ finish
    def close(self, extra_attrs: Mapping[str, Any] | None = None) -> Path | None:
        """Flush, write final attributes and publish ``episode_<i>.hdf5``.

        Returns the final path, or ``None`` when the episode has no rows (the temporary file is
        removed then). After a disk-full stop the rows flushed so far are kept. If the file
        cannot be finished (an HDF5 I/O error), :class:`WriterError` names the temporary file
        to repair.
        """
        with self._io:
            return self._close(extra_attrs)

    def _close(self, extra_attrs: Mapping[str, Any] | None) -> Path | None:
        if self._closed:
            return self.final_path
        if not self._failed:
            try:
                self._flush()
            except DiskFullError as exc:
                log.error("%s", exc)
        self._closed = True
        if self._file is None:
            raise WriterError(
                f"{self._failed}; the rows flushed before are in {self.tmp_path} "
                "(run `diffog-ros data repair` on it)"
            )
        try:
            self._file.close()
        except Exception as exc:  # pragma: no cover - depends on the OS failing
            self._poison()
            raise WriterError(f"closing {self.tmp_path} failed: {exc}") from exc
        self._file = None
        if self._rows == 0:
            self._remove_tmp()
            return None
        extra = dict(extra_attrs or {})
        if self._failed:
            extra.setdefault("stop_reason", self._failed)
        f = h5py.File(self.tmp_path, "r+", libver="latest")
        try:
            ts = f[TIMESTAMPS][...]
            fps = float(f.attrs.get("fps", self.fps))
            for key, value in final_attrs(ts, fps, STATUS_COMPLETE, extra).items():
                f.attrs[key] = to_attr(value)
            f.close()
        except Exception as exc:
            _POISONED.append(f)
            raise WriterError(
                f"writing the final attributes of {self.tmp_path} failed ({exc}); its "
                f"{self._rows} rows are kept: run `diffog-ros data repair {self.tmp_path}`"
            ) from exc
        self.final_path = publish(self.tmp_path, self.directory)
        return self.final_path

    def discard(self) -> None:
        """Drop the episode: close and delete the temporary file."""
        with self._io:
            if self._closed:
                return
            self._closed = True
            with self._lock:
                self._pending = []
            self._discard_file()

    def _discard_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception as exc:  # pragma: no cover
                self._poison()
                log.error("closing %s failed: %s", self.tmp_path, exc)
            self._file = None
        self._remove_tmp()


def publish(tmp: Path, directory: Path) -> Path:
    """Give a finished temporary file its final ``episode_<i>.hdf5`` name without ever
    replacing an existing file (the next free index is taken if the name is in use)."""
    parsed = parse_episode_name(tmp.name)
    index = parsed[0] if parsed else next_episode_index(directory)
    for _ in range(1000):
        final = Path(directory) / episode_name(index)
        try:
            os.link(tmp, final)
        except FileExistsError:
            index = max(index + 1, next_episode_index(directory))
            continue
        except OSError as exc:  # file systems without hard links
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                raise
            if final.exists():
                index = max(index + 1, next_episode_index(directory))
                continue
            os.rename(tmp, final)
            return final
        os.unlink(tmp)
        return final
    raise WriterError(f"no free episode name in {directory} for {tmp}")


def write_episode(
    directory: Path,
    layout: EpisodeLayout,
    arrays: Mapping[str, np.ndarray],
    timestamps: np.ndarray,
    attrs: Mapping[str, Any],
    fps: float,
    valid: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a whole episode from arrays in one go (scripted demos, conversions).

    ``arrays`` maps stream / camera names (as in ``layout``) to (T, ...) arrays; rows where
    ``valid[name]`` is False (or float rows with non-finite values) are stored as missing.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    missing = [s for s in layout.stream_names if s not in arrays]
    if missing:
        raise ValueError(f"arrays missing for streams {missing}")
    for name, arr in arrays.items():
        if len(arr) != ts.size:
            raise ValueError(f"{name}: {len(arr)} rows but {ts.size} timestamps")
    writer = EpisodeWriter(directory, layout, attrs, fps)
    try:
        for t in range(ts.size):
            values: dict[str, np.ndarray | None] = {}
            for name in layout.stream_names:
                v = arrays[name][t]
                ok = True if valid is None or name not in valid else bool(valid[name][t])
                if ok and name in layout.float_streams:
                    ok = bool(np.all(np.isfinite(v)))
                values[name] = v if ok else None
            writer.append(Sample(float(ts[t]), values))
            if (t + 1) % 256 == 0:
                writer.flush()
        path = writer.close()
    except BaseException:
        if not writer.closed:
            writer.discard()
        raise
    if path is None:
        raise ValueError("cannot write an episode with no rows")
    return path


def dumps_params(params: Mapping[str, Any]) -> str:
    """JSON text of a parameter mapping (numpy values converted)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.dumps(dict(params), default=default, sort_keys=True)
