"""JPEG helpers for camera frames stored the ALOHA way (see :mod:`diffog_ros.data.episode`)."""

from __future__ import annotations

import cv2
import numpy as np


def encode_jpeg(frame: np.ndarray, quality: int = 50) -> np.ndarray:
    """JPEG bytes (1-D uint8) of an (H, W, 3) uint8 frame, channel order kept as given."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got shape {frame.shape}")
    ok, buf = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return np.asarray(buf, dtype=np.uint8).reshape(-1)


def decode_jpeg(data: np.ndarray, length: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 frame from (padded) JPEG bytes; raises ``ValueError`` if undecodable."""
    buf = np.asarray(data, dtype=np.uint8).reshape(-1)
    if length is not None:
        buf = buf[: int(length)]
    if buf.size == 0:
        raise ValueError("empty JPEG buffer")
    frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError("JPEG decoding failed")
    return frame


def decode_jpeg_rows(rows: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Decode (N, L) padded JPEG rows to (N, H, W, 3) uint8."""
    frames = [
        decode_jpeg(rows[i], None if lengths is None else int(lengths[i]))
        for i in range(rows.shape[0])
    ]
    if not frames:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(frames)
