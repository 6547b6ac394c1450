"""Recorder core without ROS: message checks, sample alignment, chunk scheduling, the session."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from data.episodes import JOINTS
from diffog_ros.data.dataset import episode_attrs, load_episode
from diffog_ros.data.episode import EpisodeLayout
from diffog_ros.data.recorder import (
    LatestSamples,
    MessageRejected,
    PeriodicSampler,
    RecorderConfig,
    RecorderSession,
    image_to_rgb,
    make_chunk,
    select_joints,
    validate_settings,
)
from diffog_ros.data.writer import DiskFullError


def test_select_joints_reorders_by_name_and_rejects_bad_messages():
    names = ["b", "extra", "a"]
    np.testing.assert_array_equal(
        select_joints(names, [2.0, 9.0, 1.0], ["a", "b"], "p"), [1.0, 2.0]
    )
    cases = [
        ((["a", "b"], [1.0], ["a"]), "length_mismatch"),
        ((["a", "a"], [1.0, 2.0], ["a"]), "duplicate_names"),
        ((["a"], [1.0], ["a", "b"]), "missing_names"),
        ((["a", "b"], [np.nan, 1.0], ["a", "b"]), "non_finite"),
    ]
    for args, reason in cases:
        with pytest.raises(MessageRejected) as info:
            select_joints(*args, "position")
        assert info.value.reason == reason


def test_image_conversion_handles_encodings_and_padding():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    step = 3 * 3 + 2  # padded rows
    padded = np.zeros((2, step), np.uint8)
    padded[:, :9] = rgb.reshape(2, 9)
    np.testing.assert_array_equal(image_to_rgb(2, 3, "rgb8", step, padded.tobytes()), rgb)
    bgr = rgb[:, :, ::-1].copy()
    np.testing.assert_array_equal(image_to_rgb(2, 3, "bgr8", 9, bgr.tobytes()), rgb)
    mono = image_to_rgb(2, 3, "mono8", 3, bytes(range(6)))
    assert mono.shape == (2, 3, 3) and mono[1, 2].tolist() == [5, 5, 5]
    with pytest.raises(MessageRejected, match="encoding"):
        image_to_rgb(2, 3, "16UC1", 6, bytes(12))
    with pytest.raises(MessageRejected, match="do not fit"):
        image_to_rgb(2, 3, "rgb8", 9, bytes(10))


def test_chunk_scheduling_picks_the_point_for_the_sample_time():
    pos = np.arange(4 * 2, dtype=float).reshape(4, 2)
    chunk = make_chunk(10.0, ["b", "a"], [0.0, 0.02, 0.04, 0.06], pos.tolist(), ["a", "b"])
    np.testing.assert_array_equal(chunk.scheduled(10.041, 0.01), [5.0, 4.0])
    np.testing.assert_array_equal(chunk.scheduled(10.0, 0.01), [1.0, 0.0])
    assert chunk.scheduled(10.0 + 0.06 + 0.011, 0.01) is None  # past the chunk
    assert chunk.scheduled(9.95, 0.01) is None  # before it
    with pytest.raises(MessageRejected, match="time_from_start"):
        make_chunk(0.0, ["a"], [0.0, 0.0], [[1.0], [2.0]], ["a"])
    with pytest.raises(MessageRejected, match="ragged"):
        make_chunk(0.0, ["a", "b"], [0.0, 0.1], [[1.0, 2.0], [2.0]], ["a"])
    with pytest.raises(MessageRejected, match="no points"):
        make_chunk(0.0, ["a"], [], [], ["a"])


def test_settings_validation_names_each_problem():
    problems = validate_settings(
        {
            "record_rate_hz": -1.0,
            "max_age": 0.0,
            "jpeg_quality": 0,
            "flush_period": 2.0,
            "joint_names": ["a", "a"],
        }
    )
    text = " ".join(problems)
    for word in ("record_rate_hz", "max_age", "jpeg_quality", "flush_period", "joint_names"):
        assert word in text
    assert validate_settings({"record_rate_hz": 0.0, "max_age": 0.1}) == []


def _config(tmp_path, **kw):
    args = dict(
        output_dir=tmp_path, record_rate_hz=50.0, max_age=0.05, joint_names=JOINTS, min_free_mb=0.0
    )
    args.update(kw)
    return RecorderConfig(**args)


def test_session_aligns_samples_with_max_age(tmp_path):
    lay = EpisodeLayout(JOINTS, ("qpos", "action", "action_raw"), {})
    session = RecorderSession()
    session.start(_config(tmp_path), lay, {"task": "t"}, now=100.0)
    samples = LatestSamples()
    q = np.arange(6.0)
    samples.put("qpos", q, stamp=100.0, received=100.0)
    chunk = make_chunk(100.0, JOINTS, [0.0, 0.02, 0.04], [[1.0] * 6, [2.0] * 6, [3.0] * 6], JOINTS)
    samples.put("action_raw", chunk, 100.0, 100.0)
    assert session.tick(100.02, samples)  # fresh qpos, chunk point 1
    assert session.tick(100.04, samples)  # qpos 40 ms old: still fresh; chunk point 2
    assert session.tick(100.2, samples)  # qpos too old, chunk over
    path = session.stop()
    ep = load_episode(path)
    assert ep["valid/qpos"].tolist() == [True, True, False]
    assert ep["valid/action"].tolist() == [False, False, False]
    assert ep["action_raw"][:2, 0].tolist() == [2.0, 3.0]
    assert np.isnan(ep["action_raw"][2]).all()
    attrs = episode_attrs(path)
    assert attrs["stale_counts"] == {"qpos": 1, "action": 3, "action_raw": 1}
    assert attrs["task"] == "t" and attrs["fps"] == 50.0
    with pytest.raises(RuntimeError, match="not recording"):
        session.stop()


def test_session_refuses_to_start_without_free_space(tmp_path):
    session = RecorderSession()
    lay = EpisodeLayout(JOINTS, ("qpos",), {})
    with pytest.raises(DiskFullError, match="min_free_mb"):
        session.start(_config(tmp_path, min_free_mb=1e12), lay, {}, now=0.0)
    assert not session.recording and list(tmp_path.iterdir()) == []


def test_periodic_sampler_calls_and_stops():
    calls = []
    done = threading.Event()

    def fn(due):
        calls.append(due)
        if len(calls) >= 5:
            done.set()

    sampler = PeriodicSampler(200.0, fn)
    sampler.start()
    assert done.wait(10.0)
    sampler.stop()
    n = len(calls)
    assert sampler.ticks >= 5 and sampler.error is None
    # Due times are the ideal schedule: evenly spaced at the period, whenever the calls ran.
    assert np.allclose(np.diff(calls), 1 / 200.0, rtol=0, atol=1e-9)
    assert len(calls) == n  # no call after stop() returned
    with pytest.raises(ValueError):
        PeriodicSampler(0.0, fn)
    with pytest.raises(ValueError):
        PeriodicSampler(50.0, fn, max_catchup=-1.0)


def test_periodic_sampler_makes_up_ticks_it_woke_late_for():
    """A callback that blocks for 5 periods: the ticks it delayed are made up with their lags
    (the ideal timeline is kept); a block longer than max_catchup skips and counts ticks."""
    period = 0.02
    lags = []
    first = threading.Event()
    release = threading.Event()

    def fn(due):
        lags.append(time.monotonic() - due)
        if len(lags) == 1:
            first.set()
            release.wait(5.0)  # the sampling thread is held: ticks 2.. fall due meanwhile

    sampler = PeriodicSampler(1 / period, fn, max_catchup=1.0)
    sampler.start()
    assert first.wait(5.0)
    time.sleep(5 * period)
    release.set()
    deadline = time.monotonic() + 5.0
    while len(lags) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert sampler.overruns == 0 and sampler.late >= 3
    # Ticks k due k periods after the first: made up ones carry lag ~ (release - due time).
    # Made-up ticks come oldest first, each due one period after the last (margins of whole
    # periods, so a preempted test thread cannot flip them).
    assert lags[1] > 3 * period and lags[1] > lags[3] + period
    assert min(lags[8:20]) < period  # caught up

    lags.clear()
    held = threading.Event()

    def slow(due):
        lags.append(time.monotonic() - due)
        if len(lags) == 1:
            held.wait(10 * period)

    skipper = PeriodicSampler(1 / period, slow, max_catchup=2 * period)
    skipper.start()
    deadline = time.monotonic() + 5.0
    while len(lags) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    skipper.stop()
    assert skipper.overruns >= 6  # ~10 periods held, at most 2 made up
    assert max(lags[1:]) <= 3 * period + 0.05


def test_latest_samples_answer_what_had_been_received_by_a_time():
    samples = LatestSamples(keep_s=0.09)
    for k in range(10):
        samples.put("qpos", np.full(2, float(k)), stamp=1.0 + 0.02 * k, received=1.005 + 0.02 * k)
    newest = samples.get("qpos")
    assert newest is not None and newest.value[0] == 9.0
    at = samples.get("qpos", at=1.15)  # received 1.145 (k=7) is the newest by then
    assert at is not None and at.value[0] == 7.0
    assert samples.get("qpos", at=1.0) is None  # nothing had arrived (and history is pruned)
    # Kept: what arrived in the last keep_s (after 1.095) and the newest before that (1.085).
    assert samples.get("qpos", at=1.09).value[0] == 4.0
    assert samples.get("qpos", at=1.08) is None
    assert samples.get("other") is None
    with pytest.raises(ValueError):
        LatestSamples(keep_s=float("nan"))
