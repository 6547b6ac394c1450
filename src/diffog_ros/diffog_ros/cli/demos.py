"""``diffog-ros demos``: scripted demonstrations in the simulated ALOHA, saved as episode files.

    diffog-ros demos --task transfer_cube|insertion --episodes N --out DIR [--noise X] [--seed S]
                     [--cameras cam_high[,cam_low...] | none] [--image-size HxW] [--compress]
                     [--steps T] [--success final|any] [--keep-failures] [--max-attempts M]
                     [--max-joint-step R]
                     [--script FILE.yaml] [--robot-config FILE] [--quiet] [-v]

Attempt ``k`` resets the simulator with seed ``S + k``; without ``--seed``, S is 0, or one past the
highest seed stored in the episodes already in DIR (a resumed dataset gets new seeds). Only successful episodes are written
unless ``--keep-failures`` is given (``--success final``, the default: the task's maximum stage
reward at the last tick; ``any``: reached at some tick, as ACT and LeRobot count it); attempts stop after N episodes are written or after
``--max-attempts`` (default 2 N + 10). Files go to ``DIR/episode_<i>.hdf5`` through the crash-safe
episode writer, continuing after the highest index already there (nothing is overwritten).

``--noise X`` adds jerky-teleoperator noise to the arm joint actions: X is the standard deviation
(rad) of a low-pass filtered jitter, plus occasional twitches (see
:mod:`diffog_ros.robots.scripted.noise`). The recorded ``/action`` is exactly what was sent to the
simulator after the controller's safety layer.

Exit codes: 0 all N episodes written; 1 fewer were written (the attempts ran out) or writing
failed; 2 usage error; 130 interrupted (finished episodes are kept).
"""

from __future__ import annotations

import argparse
import logging
import math
import numbers
import os
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_SHORT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
TASKS = ("transfer_cube", "insertion")


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # no sys.exit inside main()
        raise _Usage(f"{self.format_usage()}{self.prog}: error: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be finite and >= 0, got {text!r}")
    return value


def _image_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH like 96x128, got {text!r}"
        ) from None
    if h < 1 or w < 1 or h > 4096 or w > 4096:
        raise argparse.ArgumentTypeError(f"image size must be within 1..4096 pixels, got {text!r}")
    return h, w


def _cameras(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    names = tuple(c.strip() for c in text.split(","))
    if any(not c for c in names):
        raise argparse.ArgumentTypeError(f"empty camera name in {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"duplicate camera in {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="diffog-ros demos", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=TASKS, help="simulated ALOHA task")
    p.add_argument("--episodes", required=True, type=_positive_int, help="episodes to write")
    p.add_argument("--out", required=True, help="dataset directory (created; resumed if present)")
    p.add_argument(
        "--noise",
        type=_non_negative_float,
        default=0.0,
        help="jerky-teleop noise on the arm joint actions, std in rad (e.g. 0.02) [0]",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the first attempt [0, or one past the highest seed already in --out]",
    )
    p.add_argument(
        "--cameras",
        type=_cameras,
        default=("cam_high",),
        help="comma-separated cameras to record, or 'none' for state-only data [cam_high]",
    )
    p.add_argument(
        "--image-size",
        type=_image_size,
        default=(96, 128),
        help="HEIGHTxWIDTH of the recorded frames [96x128, what the training configs use]",
    )
    p.add_argument("--compress", action="store_true", help="store frames as JPEG (ALOHA style)")
    p.add_argument("--steps", type=_positive_int, help="ticks per episode [the script's: 400]")
    p.add_argument(
        "--success",
        choices=("final", "any"),
        default="final",
        help="success = max stage reward at the last tick (final) or at any tick (any) [final]",
    )
    p.add_argument(
        "--keep-failures", action="store_true", help="also write episodes that do not succeed"
    )
    p.add_argument(
        "--max-attempts", type=_positive_int, help="stop after this many attempts [2 N + 10]"
    )
    p.add_argument(
        "--max-joint-step",
        type=_non_negative_float,
        help="per-tick joint change cap (rad) tighter than the velocity limit, as the controller's "
        "max_joint_step [off]",
    )
    p.add_argument("--script", help="YAML mapping overriding fields of the task's script")
    p.add_argument("--robot-config", help="robot config (path or name) [aloha_sim.yaml]")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _load_overrides(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise _Usage(f"diffog-ros demos: cannot read --script {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise _Usage(f"diffog-ros demos: --script {path} is not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _Usage(f"diffog-ros demos: --script {path} must hold a mapping of script fields")
    return raw


def _existing(out: Path) -> int:
    from diffog_ros.data.episode import iter_episode_files

    return len(iter_episode_files(out)) if out.is_dir() else 0


def _next_seed(out: Path) -> int:
    """One past the highest ``seed`` attr of the finished episodes in ``out`` (0 if none)."""
    from diffog_ros.data.dataset import episode_attrs, list_episodes

    if not out.is_dir():
        return 0
    seeds = []
    for path in list_episodes(out):
        try:
            seed = episode_attrs(path).get("seed")
        except (OSError, ValueError, KeyError) as exc:
            logging.getLogger(__name__).warning("cannot read the seed of %s: %s", path, exc)
            continue
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            seeds.append(int(seed))
    return max(seeds) + 1 if seeds else 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        overrides = _load_overrides(args.script)
    except _Usage as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("MUJOCO_GL", "egl")
    from diffog_ros.runtime import limit_threads

    limit_threads(1, include_torch=False)

    from diffog_ros.robots.config import RobotConfigError
    from diffog_ros.robots.factory import load_backend_config, make_robot
    from diffog_ros.robots.scripted.noise import NoiseSettings
    from diffog_ros.robots.scripted.rollout import DemoGenerator, DemoSettings

    out = Path(args.out).expanduser()
    try:
        settings = DemoSettings(
            task=args.task,
            cameras=args.cameras,
            image_size=args.image_size,
            noise=NoiseSettings(amplitude=args.noise),
            steps=args.steps,
            max_joint_step=args.max_joint_step or None,
            compress=args.compress,
            success=args.success,
        )
        config = load_backend_config("aloha_sim", args.robot_config)
        if args.seed is None:
            args.seed = _next_seed(out)
        sim = make_robot("aloha_sim", config, task=args.task, seed=args.seed)
    except (ValueError, RobotConfigError) as exc:
        print(f"diffog-ros demos: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"diffog-ros demos: cannot create {out}: {exc}", file=sys.stderr)
        return EXIT_SHORT

    sim.connect()
    try:
        try:
            gen = DemoGenerator(sim, settings, overrides)
        except (ValueError, RobotConfigError) as exc:
            print(f"diffog-ros demos: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return _record(gen, args, out)
    finally:
        sim.close_renderers()
        sim.disconnect()


def _record(gen, args: argparse.Namespace, out: Path) -> int:
    from diffog_ros.data.writer import WriterError

    wanted = args.episodes
    max_attempts = args.max_attempts or 2 * wanted + 10
    cams = ", ".join(gen.settings.cameras) or "none"
    h, w = gen.settings.image_size
    before = _existing(out)
    if not args.quiet:
        print(
            f"demos: {args.task}, {wanted} episode(s) of {gen.steps} ticks at "
            f"{1.0 / gen.dt:g} Hz, noise {args.noise:g} rad, cameras: {cams}"
            + (f" ({h}x{w})" if gen.settings.cameras else "")
            + f", seeds from {args.seed}, into {out}"
            + (f" (after {before} existing episode(s))" if before else "")
        )
    written: list[Path] = []
    attempts = successes = 0
    times: list[float] = []
    interrupted = False
    started = time.perf_counter()
    try:
        while len(written) < wanted and attempts < max_attempts:
            seed = args.seed + attempts
            attempts += 1
            result = gen.run(seed)
            times.append(result.wall_time)
            successes += int(result.success)
            status = (
                "success"
                if result.success
                else f"failed (final reward {result.final_reward}, best {result.max_reward})"
            )
            path = None
            if result.success or args.keep_failures:
                try:
                    path = gen.save(result, out)
                except (WriterError, OSError) as exc:
                    print(f"diffog-ros demos: writing episode failed: {exc}", file=sys.stderr)
                    return EXIT_SHORT
                written.append(path)
            if not args.quiet:
                extra = []
                if result.safety_counts:
                    extra.append(
                        "safety " + ", ".join(f"{k}={v}" for k, v in result.safety_counts.items())
                    )
                if result.ik_failures:
                    extra.append(f"IK misses {result.ik_failures}")
                print(
                    f"  attempt {attempts} seed {seed}: {status}, {result.wall_time:.1f} s"
                    + (f" ({result.render_time:.1f} s rendering)" if gen.settings.cameras else "")
                    + (f"; {'; '.join(extra)}" if extra else "")
                    + (f" -> {path.name}" if path else " (not written)")
                )
    except KeyboardInterrupt:
        interrupted = True
    elapsed = time.perf_counter() - started
    rate = successes / attempts if attempts else 0.0
    mean = sum(times) / len(times) if times else 0.0
    print(
        f"demos: wrote {len(written)}/{wanted} episode(s) to {out}; success {successes}/"
        f"{attempts} attempts ({100 * rate:.0f} %), {mean:.1f} s per episode, {elapsed:.1f} s total"
    )
    if interrupted:
        print("demos: interrupted; finished episodes are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    if len(written) < wanted:
        print(
            f"diffog-ros demos: only {len(written)} of {wanted} episodes after {attempts} "
            "attempts (raise --max-attempts, or --keep-failures)",
            file=sys.stderr,
        )
        return EXIT_SHORT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
