"""Jerky-teleoperator noise for the arm joint actions of scripted demonstrations (no rclpy).

A human driving the arms (leader arms, SpaceMouse) does not follow a smooth path: the hand
trembles and wanders slowly around the intended motion, and now and then it twitches - a sudden
offset that is corrected over a few hundred milliseconds. Per control tick (``dt``) the offset
added to each arm joint target is ``x_k = X n_k + j_k`` with

* a first-order low-pass filtered Gaussian (Ornstein-Uhlenbeck process, exact discretisation)
  of unit stationary standard deviation::

      n_k = a n_{k-1} + sqrt(1 - a^2) eps_k,   a = exp(-dt / time_constant),   eps_k ~ N(0, I)

* jumps: each arm twitches with probability ``1 - exp(-jump_rate dt)`` per tick; a twitch adds
  ``X jump_scale N(0, I)`` to that arm's joints, and the jump offsets fade with
  ``j_k = b j_{k-1}``, ``b = exp(-dt / jump_decay)``.

``X`` (``amplitude``, rad) is the standard deviation of the smooth part; ``X = 0`` gives exactly
zero and draws no random numbers. Near contact (phases marked ``precise``) a human steadies the
hand: there the offset is multiplied by ``precision_scale``; the factor itself follows the same
first-order low-pass (``c_k = a c_{k-1} + (1 - a) c*``) so that switching never steps the
action. The offsets are added *before* the safety layer, so what is
executed (and recorded) still respects the position limits and the per-tick cap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class NoiseSettings:
    """Parameters of :class:`JerkyOperator` (see the module docstring)."""

    amplitude: float = 0.0  # X, rad: standard deviation of the smooth jitter
    time_constant: float = 0.1  # s, low-pass time constant of the jitter
    jump_rate: float = 0.5  # 1/s, expected twitches per second per arm
    jump_scale: float = 3.0  # twitch size per joint, in units of X (standard deviation)
    jump_decay: float = 0.3  # s, time constant with which a twitch fades
    precision_scale: float = 0.25  # offset factor in precise phases (grasps, hand-over, insertion)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"noise {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"noise {name} must be finite and >= 0, got {value!r}")
        if self.time_constant <= 0 or self.jump_decay <= 0:
            raise ValueError("noise time_constant and jump_decay must be > 0")
        if self.precision_scale > 1:
            raise ValueError(f"noise precision_scale must be in [0, 1], got {self.precision_scale}")

    @property
    def enabled(self) -> bool:
        return self.amplitude > 0


class JerkyOperator:
    """Generates the per-tick offsets for ``groups`` of action dims (one group per arm)."""

    def __init__(
        self,
        settings: NoiseSettings,
        groups: Sequence[Sequence[int]],
        dim: int,
        dt: float,
        rng: np.random.Generator,
    ) -> None:
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be > 0, got {dt!r}")
        self.settings = settings
        self.groups = [np.asarray(g, dtype=int) for g in groups]
        self.dim = int(dim)
        for g in self.groups:
            if g.size == 0 or np.any(g < 0) or np.any(g >= self.dim):
                raise ValueError(f"noise groups must be non-empty indices in [0, {dim}), got {g}")
        self.dims = np.unique(np.concatenate(self.groups)) if self.groups else np.zeros(0, int)
        self.rng = rng
        self._a = math.exp(-dt / settings.time_constant)
        self._b = math.exp(-dt / settings.jump_decay)
        self._p_jump = 1.0 - math.exp(-settings.jump_rate * dt)
        self._n = np.zeros(self.dim)
        self._j = np.zeros(self.dim)
        self._scale = 1.0
        self._started = False
        self.jumps = 0

    def sample(self, precise: bool = False) -> np.ndarray:
        """The offset (``dim``,) to add to this tick's action (zero outside the groups);
        ``precise``: the tick belongs to fine work near contact (see the module docstring)."""
        out = np.zeros(self.dim)
        s = self.settings
        if not s.enabled or self.dims.size == 0:
            return out
        d = self.dims
        eps = self.rng.standard_normal(d.size)
        goal = s.precision_scale if precise else 1.0
        if not self._started:  # start in the stationary distribution
            self._n[d] = eps
            self._scale = goal
            self._started = True
        else:
            self._n[d] = self._a * self._n[d] + math.sqrt(1.0 - self._a**2) * eps
            self._scale = self._a * self._scale + (1.0 - self._a) * goal
        self._j[d] *= self._b
        for g in self.groups:
            if self.rng.random() < self._p_jump:
                self._j[g] += s.amplitude * s.jump_scale * self.rng.standard_normal(g.size)
                self.jumps += 1
        out[d] = self._scale * (s.amplitude * self._n[d] + self._j[d])
        return out
