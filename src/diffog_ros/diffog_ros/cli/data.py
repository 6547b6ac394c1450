"""``diffog-ros data info|validate|repair|convert``: inspect and maintain episode datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _episode_files(paths: list[str], include_tmp: bool = False) -> list[Path]:
    from diffog_ros.data.episode import iter_episode_files

    files: list[Path] = []
    suffixes = ("", ".tmp") if include_tmp else ("",)
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(path for _i, path in iter_episode_files(p, suffixes))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or directory: {p}")
    return files


def _summary(path: Path) -> dict[str, Any]:
    from diffog_ros.data.dataset import open_episode

    with open_episode(path) as ep:
        ts = ep["timestamps"][()]
        a = ep.attrs
        streams = {}
        for key in ep.keys():
            if key.startswith("valid/") or key == "timestamps":
                continue
            ds = ep[key]
            streams[key] = {"shape": list(ds.shape), "dtype": str(ds.dtype)}
            valid_key = "valid/" + (key.split("/")[-1] if "images" in key else _stream_of(key))
            if valid_key in ep:
                v = ep[valid_key][()]
                streams[key]["valid_fraction"] = float(np.mean(v)) if v.size else 0.0
        return {
            "path": str(path),
            "samples": int(ts.size),
            "duration_s": float(ts[-1] - ts[0]) if ts.size > 1 else 0.0,
            "fps": a.get("fps"),
            "achieved_rate_hz": a.get("achieved_rate_hz"),
            "low_rate": a.get("low_rate"),
            "status": a.get("status"),
            "robot": a.get("robot"),
            "task": a.get("task"),
            "sim": a.get("sim"),
            "compress": a.get("compress"),
            "silent_topics": a.get("silent_topics"),
            "joint_names": a.get("joint_names"),
            "streams": streams,
        }


def _stream_of(key: str) -> str:
    from diffog_ros.data.episode import FLOAT_STREAMS

    for name, (k, _w) in FLOAT_STREAMS.items():
        if k == key:
            return name
    return key


def cmd_info(args: argparse.Namespace) -> int:
    files = _episode_files(args.paths, include_tmp=False)
    if not files:
        print("no episode files found", file=sys.stderr)
        return 1
    summaries = []
    failed = 0
    for f in files:
        try:
            summaries.append(_summary(f))
        except (OSError, KeyError) as exc:
            failed += 1
            summaries.append({"path": str(f), "error": str(exc)})
    if args.json:
        print(json.dumps(summaries, indent=2, default=str))
        return 1 if failed else 0
    total = 0
    for s in summaries:
        if "error" in s:
            print(f"{s['path']}: ERROR {s['error']}")
            continue
        total += s["samples"]
        flag = "  LOW RATE" if s["low_rate"] else ""
        print(
            f"{s['path']}: {s['samples']} samples, {s['duration_s']:.2f} s, "
            f"{s['achieved_rate_hz']:.1f}/{s['fps']} Hz{flag}, status={s['status']}, "
            f"robot={s['robot']}, task={s['task']!r}, sim={s['sim']}, compress={s['compress']}"
        )
        if s["silent_topics"]:
            print(f"    silent topics: {', '.join(s['silent_topics'])}")
        for key, d in s["streams"].items():
            vf = d.get("valid_fraction")
            extra = f", valid {100 * vf:.0f} %" if vf is not None else ""
            print(f"    /{key}: {tuple(d['shape'])} {d['dtype']}{extra}")
    print(f"{len(files)} episode(s), {total} samples")
    return 1 if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from diffog_ros.data.validate import validate_paths

    for p in args.paths:
        if not Path(p).exists():
            print(f"no such file or directory: {p}", file=sys.stderr)
            return 2
    reports = validate_paths(args.paths, decode_images=args.images)
    bad = [r for r in reports if not r.ok]
    if args.json:
        out = [
            {"path": str(r.path), "ok": r.ok, "defects": r.defects, "warnings": r.warnings}
            for r in reports
        ]
        print(json.dumps(out, indent=2))
    else:
        for r in reports:
            print(f"{'OK  ' if r.ok else 'FAIL'} {r.path}")
            for d in r.defects:
                print(f"    defect: {d}")
            for w in r.warnings:
                print(f"    warning: {w}")
        print(f"{len(reports) - len(bad)} ok, {len(bad)} with defects")
    return 1 if bad else 0


def cmd_repair(args: argparse.Namespace) -> int:
    from diffog_ros.data.repair import RepairError, repair_dataset, repair_episode

    results = []
    for p in map(Path, args.paths):
        if p.is_dir():
            results.extend(repair_dataset(p, args.out, args.keep))
        elif p.is_file():
            try:
                results.append(repair_episode(p, args.out, args.keep))
            except RepairError as exc:
                print(f"FAIL {p}: {exc}", file=sys.stderr)
                return 1
        else:
            print(f"no such file or directory: {p}", file=sys.stderr)
            return 2
    status = 0
    for r in results:
        if r.action == "repaired":
            print(
                f"repaired {r.source} -> {r.output}: kept {r.rows_kept} rows, "
                f"dropped {r.rows_dropped} ({r.message})"
            )
        elif r.action == "unchanged":
            print(f"ok       {r.source}: {r.message}")
        else:
            status = 1
            print(f"FAIL     {r.source}: {r.action}: {r.message}")
    if not results:
        print("nothing to repair")
    return status


def cmd_convert(args: argparse.Namespace) -> int:
    from diffog_ros.data.convert import convert

    try:
        written = convert(args.src, args.out, args.to, args.compress, progress=print)
    except (OSError, ValueError) as exc:
        print(f"convert failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} file(s) to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffog-ros data", description="Inspect and maintain recorded episode datasets."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info", help="summarise episodes (files or dataset directories)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("validate", help="check episodes; exit code 1 on any defect")
    p.add_argument("paths", nargs="+")
    p.add_argument(
        "--images",
        choices=("none", "sample", "all"),
        default="sample",
        help="decode compressed frames: none, first+last per camera (default) or all",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("repair", help="turn interrupted recordings into valid episodes")
    p.add_argument("paths", nargs="+", help="episode files (.hdf5 / .hdf5.tmp) or directories")
    p.add_argument("--out", type=Path, default=None, help="write repaired files here instead")
    p.add_argument("--keep", action="store_true", help="keep the interrupted source file")
    p.set_defaults(func=cmd_repair)
    p = sub.add_parser("convert", help="convert a dataset directory to another format")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path, help="new (or empty) output directory")
    p.add_argument("--to", required=True, choices=("npz", "hdf5", "lerobot"))
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--compress",
        dest="compress",
        action="store_true",
        default=None,
        help="hdf5 output: JPEG-compress images the ALOHA way",
    )
    g.add_argument(
        "--no-compress", dest="compress", action="store_false", help="hdf5 output: raw uint8 images"
    )
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
