"""Random and adversarial action chunks for the controller's safety tests.

Chunks stay around the start pose (so the simulated arms do not crash into the table) but carry
every kind of abuse: NaN / Inf entries, targets far beyond the limits, huge jumps between steps,
wrong or missing names, ragged points, non-increasing times, stale and future stamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("random", "far", "jump", "nan", "names", "ragged", "timing", "late", "future")
# kinds the controller must refuse, with the reject reason it must count
REJECTED = {"nan": "non_finite", "names": "names", "ragged": "shape", "timing": "timing"}


@dataclass
class FuzzChunk:
    kind: str
    names: list[str]
    stamp_offset: float  # s, relative to "now" at publication
    offsets: list[float]
    positions: list[list[float]]


def make_chunk(rng: np.random.Generator, names, start, lower, upper, dt, horizon=16) -> FuzzChunk:
    kind = KINDS[rng.integers(len(KINDS))]
    d = len(names)
    span = np.minimum(upper - lower, 0.8)
    base = start + rng.uniform(-0.5, 0.5, d) * span
    steps = base + np.cumsum(rng.normal(0.0, 0.05, (horizon, d)), axis=0)
    offsets = [k * dt for k in range(horizon)]
    names = list(names)
    stamp = 0.0
    if kind == "far":
        mask = rng.random((horizon, d)) < 0.3
        steps[mask] = rng.choice([-1e6, -50.0, 50.0, 1e6], size=int(mask.sum()))
    elif kind == "jump":
        amp = rng.uniform(1.0, 6.0)
        steps = start + amp * np.where(np.arange(horizon)[:, None] % 2 == 0, 1.0, -1.0) * np.ones(d)
    elif kind == "nan":
        k = rng.integers(horizon)
        steps[k, rng.integers(d)] = rng.choice([np.nan, np.inf, -np.inf])
    elif kind == "names":
        choice = rng.integers(3)
        if choice == 0:
            names = names[:-1]
            steps = steps[:, :-1]
        elif choice == 1:
            names = [names[0]] + names[:-1]  # duplicate
        else:
            names = [n + "_x" if i == 0 else n for i, n in enumerate(names)]
    elif kind == "ragged":
        positions = [list(map(float, p)) for p in steps]
        positions[rng.integers(horizon)].append(0.0)
        return FuzzChunk(kind, names, stamp, offsets, positions)
    elif kind == "timing":
        k = int(rng.integers(1, horizon))
        offsets[k] = offsets[k - 1]
    elif kind == "late":
        stamp = -rng.uniform(0.0, 0.5)
    elif kind == "future":
        stamp = rng.uniform(0.0, 0.2)
    return FuzzChunk(kind, names, stamp, offsets, [list(map(float, p)) for p in steps])
