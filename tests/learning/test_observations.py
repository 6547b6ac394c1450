"""Timestamped observation history: windows, staleness, start-up padding."""

from __future__ import annotations

import numpy as np
import pytest

from diffog_ros.learning.observations import ObservationHistory, ObservationRejected


def test_window_aligns_steps_dt_apart_at_the_newest_common_time():
    h = ObservationHistory(["qpos", "images/cam"])
    for k in range(10):
        h.add("qpos", 0.1 * k, np.array([float(k)]))
    for k in range(0, 10, 2):  # camera at half the rate
        h.add("images/cam", 0.1 * k + 0.01, np.full((2, 2, 3), k, np.uint8))
    obs, t = h.window(3, 0.2, now=1.0, max_age=0.5)
    assert t == pytest.approx(0.81)  # newest camera frame; qpos has newer samples
    np.testing.assert_array_equal(obs["qpos"][:, 0], [4, 6, 8])  # at or before 0.41, 0.61, 0.81
    np.testing.assert_array_equal(obs["images/cam"][:, 0, 0, 0], [4, 6, 8])


def test_startup_repeats_the_oldest_sample():
    h = ObservationHistory(["qpos"])
    h.add("qpos", 5.0, np.array([1.0]))
    obs, t = h.window(3, 0.1, now=5.05, max_age=0.2)
    np.testing.assert_array_equal(obs["qpos"][:, 0], [1.0, 1.0, 1.0])
    assert t == 5.0


def test_stale_and_missing_observations_are_refused():
    h = ObservationHistory(["qpos", "images/cam"])
    with pytest.raises(ObservationRejected) as exc:
        h.window(1, 0.1, now=0.0, max_age=1.0)
    assert exc.value.reason == "missing"
    h.add("qpos", 1.0, np.zeros(1))
    h.add("images/cam", 1.0, np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ObservationRejected) as exc:
        h.window(1, 0.1, now=1.5, max_age=0.25)
    assert exc.value.reason == "stale"


def test_out_of_order_samples_are_kept_sorted():
    h = ObservationHistory(["qpos"], capacity=3)
    for t in (1.0, 3.0, 2.0, 4.0):
        h.add("qpos", t, np.array([t]))
    obs, _ = h.window(3, 1.0, now=4.0, max_age=1.0)
    np.testing.assert_array_equal(obs["qpos"][:, 0], [2.0, 3.0, 4.0])
