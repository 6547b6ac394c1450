"""Raw message log in MCAP (the rosbag2 storage format; Foxglove reads it too). No rclpy.

Messages arrive already serialised (CDR bytes, e.g. from ``rclpy.serialization.serialize_message``)
and are written with the ``ros2`` profile, ``ros2msg`` schemas (the full message definition with
its dependencies, the way rosbag2 stores it) and ``cdr`` message encoding.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer

log = logging.getLogger(__name__)

_PRIMITIVES = {
    "bool",
    "byte",
    "char",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "string",
    "wstring",
}
_SEPARATOR = "=" * 80
_FIELD_TYPE = re.compile(r"^\s*([A-Za-z0-9_/]+)(?:<=\d+)?(?:\[[^\]]*\])?\s+\w+")


def _share_dirs() -> list[Path]:
    dirs: list[Path] = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share")
    dirs.append(Path(sys.prefix) / "share")
    return dirs


def _find_msg(pkg: str, name: str, share_dirs: Iterable[Path]) -> Path:
    for share in share_dirs:
        p = share / pkg / "msg" / f"{name}.msg"
        if p.is_file():
            return p
    raise FileNotFoundError(f"message definition {pkg}/msg/{name}.msg not found")


def message_definition(type_name: str, share_dirs: Iterable[Path] | None = None) -> str:
    """Full ``ros2msg`` text of ``pkg/msg/Type`` (or ``pkg/Type``) with nested definitions."""
    dirs = list(share_dirs) if share_dirs is not None else _share_dirs()
    parts = type_name.split("/")
    if len(parts) == 3:
        parts = [parts[0], parts[2]]
    if len(parts) != 2:
        raise ValueError(f"message type must look like pkg/msg/Type, got {type_name!r}")
    root_pkg, root_name = parts
    out: list[str] = []
    seen: set[str] = set()
    queue = [(root_pkg, root_name)]
    first = True
    while queue:
        pkg, name = queue.pop(0)
        key = f"{pkg}/{name}"
        if key in seen:
            continue
        seen.add(key)
        text = _find_msg(pkg, name, dirs).read_text()
        if first:
            out.append(text.rstrip("\n"))
            first = False
        else:
            out.append(f"{_SEPARATOR}\nMSG: {key}\n{text.rstrip(chr(10))}")
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            tokens = line.split()
            if len(tokens) < 2 or "=" in tokens[1]:
                continue  # blank line or a constant
            m = _FIELD_TYPE.match(line)
            if not m:
                continue
            ftype = m.group(1)
            if ftype in _PRIMITIVES:
                continue
            if "/" in ftype:
                dep_pkg, dep_name = ftype.split("/")[0], ftype.split("/")[-1]
            elif ftype == "Header":
                dep_pkg, dep_name = "std_msgs", "Header"
            else:
                dep_pkg, dep_name = pkg, ftype
            queue.append((dep_pkg, dep_name))
    return "\n".join(out) + "\n"


class McapRawLog:
    """Append serialised ROS 2 messages to an MCAP file (one per episode).

    Written as ``<path>.tmp`` and renamed to ``<path>`` by :meth:`close`; an interrupted log
    stays readable by streaming MCAP readers up to its last complete chunk.
    """

    def __init__(self, path: str | Path, chunk_size: int = 1024 * 1024) -> None:
        self.path = Path(path)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists: not overwriting it")
        self._stream = open(self.tmp_path, "xb")  # noqa: SIM115 - closed in close()
        self._writer = Writer(self._stream, chunk_size=chunk_size, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="diffog_ros")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._closed = False
        self.messages = 0

    def add_channel(self, topic: str, type_name: str, definition: str | None = None) -> None:
        """Register ``topic`` (absolute name) with message type ``pkg/msg/Type``."""
        if topic in self._channels:
            return
        if type_name not in self._schemas:
            text = definition if definition is not None else message_definition(type_name)
            self._schemas[type_name] = self._writer.register_schema(
                name=type_name, encoding=SchemaEncoding.ROS2, data=text.encode()
            )
        self._channels[topic] = self._writer.register_channel(
            topic=topic, message_encoding=MessageEncoding.CDR, schema_id=self._schemas[type_name]
        )

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int) -> None:
        if self._closed:
            return
        self._writer.add_message(
            channel_id=self._channels[topic],
            log_time=int(log_time_ns),
            publish_time=int(publish_time_ns),
            data=bytes(data),
            sequence=self.messages,
        )
        self.messages += 1

    def close(self) -> Path:
        if not self._closed:
            self._closed = True
            try:
                self._writer.finish()
            finally:
                self._stream.close()
            os.replace(self.tmp_path, self.path)
        return self.path

    def abandon(self) -> None:
        """Stop logging and delete the file (the episode was discarded)."""
        if not self._closed:
            self._closed = True
            try:
                self._stream.close()
            finally:
                self.tmp_path.unlink(missing_ok=True)
