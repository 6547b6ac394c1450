"""Episodes -> training windows (Diffusion Policy sampling, LeTO sequence sampling).

``ChunkWindows`` (Diffusion Policy, DiffOG): a window covers ``horizon`` consecutive steps
starting at ``s``; the first ``n_obs`` steps are the observation history and all ``horizon`` steps
are the action targets.  Like Diffusion Policy, windows may start ``n_obs - 1`` steps before an
episode and end ``pad_after`` steps after it; out-of-episode steps repeat the first / last step
(edge padding), so every step of every episode appears as the "current" step (index ``n_obs-1``).

``SequenceWindows`` (LeTO Sec. III-A): ``seq_len`` observations o_{t0}, o_{t0+s}, ... (stride s) and
for each of them the chunk y_t = [y_t; ...; y_{t+T-1}] (edge padded at the episode end).

Items are dicts of float32 tensors: ``obs`` (a dict, low-dim keys normalised to [-1, 1], images
in [0, 1] as [.., 3, H, W]) and ``action`` (normalised).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from diffog_ros.learning.episodes import ACTION_KEY, Episode
from diffog_ros.learning.normalizer import MinMaxNormalizer


def window_starts(length: int, span: int, pad_before: int, pad_after: int) -> list[int]:
    """Start indices of windows of ``span`` steps over an episode of ``length`` steps.

    A window [s, s + span) may reach ``pad_before`` steps before the episode and ``pad_after``
    steps after it.  At least one window (starting at ``-pad_before``) is always returned.
    """
    if length < 1 or span < 1 or pad_before < 0 or pad_after < 0:
        raise ValueError(
            f"need length, span >= 1 and pads >= 0, got {length}, {span}, {pad_before}, {pad_after}"
        )
    first, last = -pad_before, length - span + pad_after
    return list(range(first, max(first, last) + 1))


def gather(arr: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``arr[index]`` with indices clipped to the episode (edge padding)."""
    return arr[np.clip(index, 0, arr.shape[0] - 1)]


def _obs_tensor(
    key: str, value: np.ndarray, normalizers: Mapping[str, MinMaxNormalizer]
) -> torch.Tensor:
    if key.startswith("images/"):
        # [.., H, W, 3] uint8 -> [.., 3, H, W] float in [0, 1]
        return torch.from_numpy(np.ascontiguousarray(value)).movedim(-1, -3).float().div_(255.0)
    norm = normalizers.get(key)
    out = norm.normalize(value.astype(np.float64)) if norm is not None else value
    return torch.from_numpy(np.asarray(out, dtype=np.float32))


class ChunkWindows(Dataset):
    """Windows of ``n_obs`` observation steps and ``horizon`` action steps.

    Args:
        episodes: loaded episodes.
        n_obs: observation steps per window (the last one is the "current" step).
        horizon: action steps per window (starting at the first observation step).
        obs_keys: observation keys to return ('qpos', 'images/<cam>'); may be empty.
        normalizers: per-key normalisers ('action' required; low-dim obs keys optional).
        pad_after: steps a window may reach past the episode end (default ``horizon - n_obs``,
            i.e. the last step of an episode is still a valid "current" step).
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        n_obs: int,
        horizon: int,
        obs_keys: Sequence[str],
        normalizers: Mapping[str, MinMaxNormalizer],
        pad_after: int | None = None,
    ) -> None:
        if n_obs < 1 or horizon < n_obs:
            raise ValueError(f"need 1 <= n_obs <= horizon, got n_obs={n_obs}, horizon={horizon}")
        if ACTION_KEY not in normalizers:
            raise ValueError("normalizers must contain 'action'")
        self.episodes = list(episodes)
        self.n_obs, self.horizon = int(n_obs), int(horizon)
        self.obs_keys = list(obs_keys)
        self.normalizers = dict(normalizers)
        pad_after = horizon - n_obs if pad_after is None else int(pad_after)
        self.index = [
            (e, s)
            for e, ep in enumerate(self.episodes)
            for s in window_starts(ep.length, horizon, n_obs - 1, pad_after)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        e, start = self.index[i]
        ep = self.episodes[e]
        steps = np.arange(start, start + self.horizon)
        obs = {
            k: _obs_tensor(k, gather(ep.arrays[k], steps[: self.n_obs]), self.normalizers)
            for k in self.obs_keys
        }
        action = self.normalizers[ACTION_KEY].normalize(
            gather(ep.arrays[ACTION_KEY], steps).astype(np.float64)
        )
        return {"obs": obs, "action": torch.from_numpy(action.astype(np.float32))}


class SequenceWindows(Dataset):
    """LeTO training sequences: ``seq_len`` observations (stride ``stride``) and their chunks.

    Item: ``obs[k]`` is [seq_len, ...]; ``action`` is [seq_len, horizon, D] (normalised).
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        seq_len: int,
        horizon: int,
        obs_keys: Sequence[str],
        normalizers: Mapping[str, MinMaxNormalizer],
        stride: int = 1,
    ) -> None:
        if seq_len < 1 or horizon < 1 or stride < 1:
            raise ValueError(
                f"need seq_len, horizon, stride >= 1, got {seq_len}, {horizon}, {stride}"
            )
        if ACTION_KEY not in normalizers:
            raise ValueError("normalizers must contain 'action'")
        self.episodes = list(episodes)
        self.seq_len, self.horizon, self.stride = int(seq_len), int(horizon), int(stride)
        self.obs_keys = list(obs_keys)
        self.normalizers = dict(normalizers)
        span = (seq_len - 1) * stride + 1
        self.index = [
            (e, s)
            for e, ep in enumerate(self.episodes)
            for s in window_starts(ep.length, span, 0, 0)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        e, start = self.index[i]
        ep = self.episodes[e]
        times = start + self.stride * np.arange(self.seq_len)  # [seq_len]
        obs = {
            k: _obs_tensor(k, gather(ep.arrays[k], times), self.normalizers) for k in self.obs_keys
        }
        steps = times[:, None] + np.arange(self.horizon)[None, :]  # [seq_len, horizon]
        chunks = gather(ep.arrays[ACTION_KEY], steps).astype(np.float64)
        action = self.normalizers[ACTION_KEY].normalize(chunks)
        return {"obs": obs, "action": torch.from_numpy(action.astype(np.float32))}
