"""``diffog-ros train diffusion|diffog|leto --data DIR --out DIR [--config YAML] [--base CKPT]
[--max-steps N] [--resume]``.

Defaults come from ``config/train_<kind>.yaml``; ``--config`` is merged on top of them.
Multi-GPU / multi-process: ``torchrun --nproc_per_node=N -m diffog_ros.cli.train ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys

KINDS = ("diffusion", "diffog", "leto")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffog-ros train", description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=KINDS, help="what to train")
    p.add_argument("--data", required=True, help="directory of recorded episodes (episode_*.hdf5)")
    p.add_argument("--out", required=True, help="output directory (checkpoints/, tb/)")
    p.add_argument("--config", help="YAML merged over config/train_<kind>.yaml")
    p.add_argument("--base", help="diffog refine mode: the frozen base policy's checkpoint")
    p.add_argument("--max-steps", type=int, help="override max_steps")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last")
    p.add_argument("--device", help="override device (auto | cpu | cuda | cuda:N)")
    p.add_argument("--seed", type=int, help="override seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides = {}
    if args.device:
        overrides["device"] = args.device
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.max_steps is not None and args.max_steps < 1:
        print("diffog-ros train: --max-steps must be >= 1", file=sys.stderr)
        return 2
    from diffog_ros.learning.checkpoint import CheckpointError
    from diffog_ros.learning.config import ConfigError
    from diffog_ros.learning.train import train

    try:
        best = train(
            args.kind,
            args.data,
            args.out,
            config=args.config,
            base=args.base,
            max_steps=args.max_steps,
            resume=args.resume,
            overrides=overrides,
            progress=not args.no_progress,
        )
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"diffog-ros train: {exc}", file=sys.stderr)
        return 1
    print(f"best checkpoint: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
