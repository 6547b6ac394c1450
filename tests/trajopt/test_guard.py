"""Chunk / executed-action validation, the final bound check and the reject counters (no ROS)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from diffog_ros.trajopt.guard import (
    CHUNK_REJECT_REASONS,
    ChunkLimits,
    LogThrottle,
    ReasonCounter,
    Rejected,
    active_bound_count,
    bound_violation,
    parse_chunk,
    parse_executed,
)
from diffog_ros.trajopt.spec import TrajOptSpec

NAMES = ("a", "b", "grip")
LIMITS = ChunkLimits(joint_names=NAMES, dt=0.02, max_chunk_age=0.5, max_horizon=8)
NOW = 1000.0


def _times(t_len: int, dt: float = 0.02) -> list[float]:
    return [k * dt for k in range(t_len)]


def _rows(t_len: int = 4) -> list[list[float]]:
    return [[0.1 * k, -0.1 * k, 0.5] for k in range(t_len)]


def _reason(**kw) -> str:
    args = {"names": NAMES, "positions": _rows(), "times": _times(4), "stamp": NOW, "now": NOW}
    args.update(kw)
    with pytest.raises(Rejected) as info:
        parse_chunk(limits=LIMITS, **args)
    assert info.value.detail  # every reject says why
    return info.value.reason


def test_valid_chunk_is_returned_as_float64_array():
    rows = _rows()
    out = parse_chunk(NAMES, rows, _times(4), NOW - 0.1, NOW, LIMITS)
    assert out.dtype == np.float64 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, np.array(rows))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"positions": [], "times": []}, "empty"),
        ({"positions": [[], [], [], []]}, "empty"),
        ({"positions": _rows(9), "times": _times(9)}, "too_long"),
        ({"names": ("a", "a", "grip")}, "duplicate_names"),
        ({"names": ("b", "a", "grip")}, "wrong_names"),
        ({"names": ("a", "b")}, "wrong_names"),
        ({"names": ("a", "b", "grip", "x")}, "wrong_names"),
        ({"positions": [*_rows(3), [0.0, 0.0]]}, "ragged"),
        ({"positions": [*_rows(3), [0.0, 0.0, 0.0, 0.0]]}, "ragged"),
        ({"times": _times(3)}, "ragged"),
        ({"positions": [*_rows(3), [0.0, math.nan, 0.0]]}, "non_finite"),
        ({"positions": [*_rows(3), [math.inf, 0.0, 0.0]]}, "non_finite"),
        ({"times": [0.0, 0.02, 0.02, 0.04]}, "time_not_increasing"),
        ({"times": [0.0, 0.02, 0.01, 0.04]}, "time_not_increasing"),
        ({"times": _times(4, dt=0.03)}, "time_step_mismatch"),
        ({"stamp": NOW - 0.6}, "stale"),
        ({"stamp": 0.0}, "stale"),
        ({"stamp": NOW + 0.6}, "future_stamp"),
    ],
)
def test_each_defect_is_rejected_with_its_reason(kwargs, reason):
    assert reason in CHUNK_REJECT_REASONS
    assert _reason(**kwargs) == reason


def test_time_steps_within_one_percent_of_dt_are_accepted():
    times = [0.0, 0.0201, 0.04, 0.0601]  # steps within 0.5 % of dt
    parse_chunk(NAMES, _rows(), times, NOW, NOW, LIMITS)


def test_executed_action_selects_joints_by_name():
    ex = parse_executed(["grip", "b", "a"], [0.5, 2.0, 1.0], 3.0)
    np.testing.assert_array_equal(ex.select(["a", "b"]), [1.0, 2.0])
    assert ex.select(["a", "zzz"]) is None
    assert ex.stamp == 3.0


@pytest.mark.parametrize(
    ("names", "values", "reason"),
    [
        ([], [], "empty"),
        (["a", "a"], [1.0, 2.0], "duplicate_names"),
        (["a", "b"], [1.0], "ragged"),
        (["a", "b"], [1.0, math.nan], "non_finite"),
    ],
)
def test_bad_executed_actions_are_rejected(names, values, reason):
    with pytest.raises(Rejected) as info:
        parse_executed(names, values, 0.0)
    assert info.value.reason == reason


SPEC = TrajOptSpec(
    horizon=3, action_dim=3, continuous_dims=[0, 1], max_delta=[0.1, 0.2], min_delta=[-0.05, -0.2]
)


def test_bound_violation_by_hand():
    # a: steps +0.1 (at its max), -0.05 (at its min); b: +0.2 (max), then +0.25 breaks it by 0.05.
    y = np.array([[0.0, 0.0, 9.0], [0.1, 0.2, -9.0], [0.05, 0.45, 0.0]])
    assert bound_violation(y, SPEC) == pytest.approx(0.05, abs=1e-15)
    y[2, 1] = 0.4
    assert bound_violation(y, SPEC) == 0.0
    assert active_bound_count(y, SPEC) == 4  # all four differences sit on a bound
    # continuity row: prev a = 0.2 -> y_0 a = 0.0 is a step of -0.2 < -0.05
    prev = np.array([0.2, 0.0, 0.0])
    assert bound_violation(y, SPEC, prev) == pytest.approx(0.15, abs=1e-15)
    prev[0] = 0.03
    assert bound_violation(y, SPEC, prev) == 0.0


def test_bound_violation_of_non_finite_or_misshaped_output_is_inf():
    y = np.zeros((3, 3))
    y[1, 2] = math.nan  # even on an unconstrained dim
    assert bound_violation(y, SPEC) == math.inf
    assert bound_violation(np.zeros((2, 3)), SPEC) == math.inf


def test_reason_counter_is_thread_safe_and_lists_known_reasons():
    c = ReasonCounter(["x", "y"])
    assert c.snapshot() == {"x": 0, "y": 0}
    threads = [threading.Thread(target=lambda: [c.add("x") for _ in range(1000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.add("new", 2)
    assert c.snapshot() == {"x": 4000, "y": 0, "new": 2}
    assert c.total() == 4002


def test_log_throttle_counts_what_it_suppressed():
    th = LogThrottle(period=1.0)
    assert th.allow("r", 0.0) == (True, 0)
    assert th.allow("r", 0.5) == (False, 0)
    assert th.allow("r", 0.9) == (False, 0)
    assert th.allow("other", 0.9) == (True, 0)
    assert th.allow("r", 1.2) == (True, 2)
