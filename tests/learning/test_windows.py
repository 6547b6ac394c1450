"""Episodes -> windows with Diffusion-Policy padding, and LeTO sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffog_ros.learning.episodes import Episode, data_hash, load_episodes
from diffog_ros.learning.normalizer import MinMaxNormalizer
from diffog_ros.learning.windows import ChunkWindows, SequenceWindows, window_starts


def test_window_starts():
    assert window_starts(5, 3, 0, 0) == [0, 1, 2]
    assert window_starts(5, 3, 1, 2) == [-1, 0, 1, 2, 3, 4]
    assert window_starts(2, 6, 0, 0) == [0]  # a short episode still gives one (padded) window
    with pytest.raises(ValueError):
        window_starts(0, 3, 0, 0)


def _episode(length: int) -> Episode:
    t = np.arange(length, dtype=np.float32)
    arrays = {"action": np.stack([t, -t], 1), "qpos": np.stack([10 + t, t], 1)}
    return Episode(Path(f"ep{length}.hdf5"), arrays)


def _identity_norms() -> dict:
    # min -1, max 1 -> the identity map
    return {
        "action": MinMaxNormalizer([-1, -1], [1, 1]),
        "qpos": MinMaxNormalizer([-1, -1], [1, 1]),
    }


def test_chunk_windows_pad_with_first_and_last_step():
    ds = ChunkWindows(
        [_episode(5)], n_obs=2, horizon=4, obs_keys=["qpos"], normalizers=_identity_norms()
    )
    # starts -1..3: every step 0..4 is the "current" step (index n_obs-1) once
    assert len(ds) == 5
    first, last = ds[0], ds[len(ds) - 1]
    np.testing.assert_array_equal(
        first["obs"]["qpos"][:, 0].numpy(), [10, 10]
    )  # step -1 repeats step 0
    np.testing.assert_array_equal(first["action"][:, 0].numpy(), [0, 0, 1, 2])
    np.testing.assert_array_equal(last["obs"]["qpos"][:, 0].numpy(), [13, 14])
    np.testing.assert_array_equal(
        last["action"][:, 0].numpy(), [3, 4, 4, 4]
    )  # past the end repeats step 4


def test_chunk_windows_normalise_actions():
    norms = {"action": MinMaxNormalizer([0, -4], [4, 0])}
    ds = ChunkWindows([_episode(5)], n_obs=1, horizon=5, obs_keys=[], normalizers=norms)
    np.testing.assert_allclose(ds[0]["action"][:, 0].numpy(), [-1, -0.5, 0, 0.5, 1])


def test_sequence_windows_stride_and_chunks():
    ds = SequenceWindows(
        [_episode(7)],
        seq_len=3,
        horizon=2,
        obs_keys=["qpos"],
        normalizers=_identity_norms(),
        stride=2,
    )
    assert len(ds) == 3  # starts 0, 1, 2 keep all 3 observations (0, 2, 4 .. 2, 4, 6) inside
    item = ds[2]
    np.testing.assert_array_equal(item["obs"]["qpos"][:, 1].numpy(), [2, 4, 6])
    np.testing.assert_array_equal(item["action"][:, :, 0].numpy(), [[2, 3], [4, 5], [6, 6]])


def test_load_episodes_from_hdf5(image_dataset):
    eps = load_episodes(image_dataset, cameras=["cam"], image_size=(8, 12))
    assert len(eps) == 3
    assert eps[0].arrays["images/cam"].shape == (12, 8, 12, 3)
    assert eps[0].arrays["action"].shape == (12, 3)
    assert eps[0].attrs["joint_names"] == ["j0", "j1", "grip"]
    h = data_hash(eps)
    assert h.startswith("sha256:") and h == data_hash(list(reversed(eps)))
    eps[0].arrays["action"][0, 0] += 1.0
    assert data_hash(eps) != h


def test_missing_directory_and_camera(tmp_path, dataset):
    with pytest.raises(FileNotFoundError):
        load_episodes(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        load_episodes(tmp_path)  # exists but holds no episodes
    with pytest.raises(KeyError):
        load_episodes(dataset, cameras=["cam"])
