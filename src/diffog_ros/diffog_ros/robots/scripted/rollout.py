"""Run scripted demonstrations in :class:`~diffog_ros.robots.aloha_sim.AlohaSim` and save them.

Per control tick ``t`` (row ``t`` of the episode file, ALOHA convention: the observation and the
action taken after it)::

    state_t  = sim.read_state()                         -> /observations/qpos, qvel, effort
    image_t  = sim.render(cam, W, H)  for each camera    -> /observations/images/<cam>
    target_t = policy.act(state_t) + noise_t            (noise on the arm joints only, scaled
                                                         down in precise phases)
    a_t      = SafetyLayer.filter(target_t, a_{t-1})    (position limits, per-tick step cap)
    sim.send_command(a_t)                               -> /action (exactly what was sent)

``a_{-1}`` is the command the sim holds after its seeded reset (the config's start pose), the same
anchor the controller uses. Timestamps are simulation seconds since the reset (0, dt, 2 dt, ...),
so an episode is a pure function of (task, script, seed, settings): the same seed gives identical
data. Success (``DemoSettings.success``): ``"final"`` - the task's stage reward is at its maximum
at the last tick (:meth:`AlohaSim.is_success` after the episode); ``"any"`` - it reached the
maximum at some tick, the convention of ACT's and LeRobot's ALOHA evaluations. Both rewards are
saved in the file's attributes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffog_ros.data.episode import EpisodeLayout
from diffog_ros.data.writer import write_episode
from diffog_ros.robots.safety import SafetyLayer
from diffog_ros.robots.scripted.arms import ArmHandle
from diffog_ros.robots.scripted.noise import JerkyOperator, NoiseSettings
from diffog_ros.robots.scripted.policy import ScriptedPolicy
from diffog_ros.robots.scripted.tasks import ARM_PREFIXES, SCRIPTS

_log = logging.getLogger(__name__)

#: Float streams every scripted episode records.
STREAMS = ("qpos", "qvel", "effort", "action")
#: How an episode's success is judged (see the module docstring).
SUCCESS_CRITERIA = ("final", "any")
#: Spawn key separating the noise generator's stream from the sim's object placement.
_NOISE_STREAM = 1


@dataclass(frozen=True)
class DemoSettings:
    """What to record and how (validated on construction)."""

    task: str
    cameras: tuple[str, ...] = ("cam_high",)
    image_size: tuple[int, int] = (96, 128)  # (height, width) in pixels
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    steps: int | None = None  # ticks per episode; None: the script's episode_steps
    max_joint_step: float | None = None  # rad per tick, tighter than the velocity limit
    compress: bool = False  # JPEG frames the way ALOHA stores them
    success: str = "final"  # "final": max reward at the last tick; "any": at some tick

    def __post_init__(self) -> None:
        if self.task not in SCRIPTS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {sorted(SCRIPTS)}")
        object.__setattr__(self, "cameras", tuple(str(c) for c in self.cameras))
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be unique, got {list(self.cameras)}")
        h, w = (int(v) for v in self.image_size)
        if h < 1 or w < 1:
            raise ValueError(f"image size must be positive, got {self.image_size}")
        object.__setattr__(self, "image_size", (h, w))
        if self.success not in SUCCESS_CRITERIA:
            raise ValueError(f"success must be one of {SUCCESS_CRITERIA}, got {self.success!r}")
        if self.steps is not None and (isinstance(self.steps, bool) or int(self.steps) < 3):
            raise ValueError(f"steps must be >= 3, got {self.steps!r}")
        if self.max_joint_step is not None and not (
            np.isfinite(self.max_joint_step) and self.max_joint_step > 0
        ):
            raise ValueError(f"max_joint_step must be > 0, got {self.max_joint_step!r}")


@dataclass
class EpisodeResult:
    """One scripted episode in memory (``arrays``: stream or camera name -> (T, ...) array)."""

    seed: int
    timestamps: np.ndarray
    arrays: dict[str, np.ndarray]
    success: bool
    final_reward: int
    max_reward: int
    ik_failures: int
    safety_counts: dict[str, int]
    noise_jumps: int
    schedule: list[dict[str, Any]]
    wall_time: float
    render_time: float

    @property
    def steps(self) -> int:
        return int(self.timestamps.size)


class DemoGenerator:
    """Scripted episodes of one task on one connected sim (see the module docstring)."""

    def __init__(
        self, sim, settings: DemoSettings, script_overrides: Mapping[str, Any] | None = None
    ):
        if getattr(sim, "task", settings.task) != settings.task:
            raise ValueError(
                f"the sim runs task {sim.task!r}, the settings ask for {settings.task!r}"
            )
        self.sim = sim
        self.settings = settings
        script_cls, self._build_phases = SCRIPTS[settings.task]
        self.script = script_cls().with_overrides(dict(script_overrides or {}))
        self.steps = int(settings.steps or self.script.episode_steps)
        for cam in settings.cameras:
            sim.camera_id(cam)  # raises ValueError naming the known cameras
        self.arms = {
            k: ArmHandle.from_sim(sim, prefix, self.script.tcp_offset)
            for k, prefix in ARM_PREFIXES.items()
        }
        self.dt = float(sim.dt)

    # ------------------------------------------------------------------ layout
    def layout(self) -> EpisodeLayout:
        h, w = self.settings.image_size
        return EpisodeLayout(
            joint_names=self.sim.names,
            float_streams=STREAMS,
            cameras={cam: (h, w) for cam in self.settings.cameras},
            compress=self.settings.compress,
        )

    # ------------------------------------------------------------------ one episode
    def run(self, seed: int) -> EpisodeResult:
        """Reset the sim with ``seed`` and run the script for :attr:`steps` ticks."""
        sim, s = self.sim, self.settings
        t0 = time.perf_counter()
        sim.reset(int(seed))
        policy = ScriptedPolicy(self.arms, self._build_phases(self.script), sim.object_state)
        previous = sim.last_command
        policy.reset(previous)
        safety = SafetyLayer.from_config(sim.config, self.dt, s.max_joint_step)
        rng = np.random.default_rng([int(seed), _NOISE_STREAM])
        groups = [a.arm_index for a in self.arms.values()]
        noise = JerkyOperator(s.noise, groups, sim.dof, self.dt, rng)
        n, d = self.steps, sim.dof
        arrays: dict[str, np.ndarray] = {k: np.zeros((n, d)) for k in STREAMS}
        h, w = s.image_size
        for cam in s.cameras:
            arrays[cam] = np.zeros((n, h, w, 3), dtype=np.uint8)
        stamps = np.zeros(n)
        counts: dict[str, int] = {}
        best = 0
        render_time = 0.0
        for t in range(n):
            state = sim.read_state()
            stamps[t] = state.stamp
            arrays["qpos"][t] = state.position
            arrays["qvel"][t] = state.velocity
            arrays["effort"][t] = state.effort
            r0 = time.perf_counter()
            for cam in s.cameras:
                arrays[cam][t] = sim.render(cam, w, h)
            render_time += time.perf_counter() - r0
            precise = policy.precise_at(t)
            target = policy.act(state.position) + noise.sample(precise)
            result = safety.filter(target, previous)
            if result.rejected:
                counts[f"reject.{result.rejected}"] = counts.get(f"reject.{result.rejected}", 0) + 1
            for reason in result.clamped:
                counts[f"clamp.{reason}"] = counts.get(f"clamp.{reason}", 0) + 1
            previous = sim.send_command(result.command)
            arrays["action"][t] = previous
            best = max(best, sim.reward())
        final = sim.reward()
        return EpisodeResult(
            seed=int(seed),
            timestamps=stamps,
            arrays=arrays,
            success=(final if s.success == "final" else max(best, final)) == sim.max_reward,
            final_reward=int(final),
            max_reward=int(max(best, final)),
            ik_failures=policy.ik_failures,
            safety_counts=dict(sorted(counts.items())),
            noise_jumps=noise.jumps,
            schedule=policy.schedule(),
            wall_time=time.perf_counter() - t0,
            render_time=render_time,
        )

    # ------------------------------------------------------------------ saving
    def attrs(self, result: EpisodeResult) -> dict[str, Any]:
        """Root attributes of a saved episode (the recorder's set plus the demo's provenance)."""
        sim, s = self.sim, self.settings
        return {
            "sim": True,
            "robot": sim.config.name,
            "task": s.task,
            "fps": 1.0 / self.dt,
            "start_time": float(result.timestamps[0]),
            "time_base": "simulation seconds since the reset",
            "source": "scripted",
            "seed": result.seed,
            "success": bool(result.success),
            "success_criterion": s.success,
            "final_reward": result.final_reward,
            "max_reward": result.max_reward,
            "noise_amplitude": float(s.noise.amplitude),
            "metadata": {
                "generator": "diffog-ros demos",
                "script": self.script.as_dict(),
                "noise": asdict(s.noise),
                "schedule": result.schedule,
                "ik_failures": result.ik_failures,
                "safety_counts": result.safety_counts,
                "max_joint_step": s.max_joint_step,
                "robot_config": Path(str(sim.config.source)).name,
            },
        }

    def save(self, result: EpisodeResult, directory: str | Path) -> Path:
        """Write ``result`` as the next ``episode_<i>.hdf5`` in ``directory`` (never
        overwriting; the episode writer's crash-safe temporary-file-and-link protocol)."""
        return write_episode(
            Path(directory),
            self.layout(),
            result.arrays,
            result.timestamps,
            self.attrs(result),
            fps=1.0 / self.dt,
        )
