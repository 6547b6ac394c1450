"""TrajOptConfig validation, the continuity anchor and ChunkOptimiser's fallbacks (no ROS)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from diffog_ros.trajopt import TrajOptSpec, clip_chunk, runtime, solve_qp
from diffog_ros.trajopt.guard import ExecutedAction, Rejected
from diffog_ros.trajopt.runtime import (
    ChunkOptimiser,
    OptimiserStats,
    TrajOptConfig,
    continuity_anchor,
    prev_vector,
)

NAMES = ["l_waist", "l_elbow", "l_gripper", "r_waist", "r_elbow", "r_gripper"]
VALUES = {
    "method": "static",
    "joint_names": NAMES,
    "constrained_joints": [],
    "max_delta": [0.05],
    "min_delta": [],
    "smooth_weight": 1.0,
    "dt": 0.02,
    "use_continuity": True,
    "max_chunk_age": 0.5,
    "max_prev_age": 0.1,
    "model_path": "",
    "backend": "fast",
    "solve_deadline": 5.0,
    "max_horizon": 64,
}


def config(**changes) -> TrajOptConfig:
    return TrajOptConfig.from_values({**VALUES, **changes})


def test_defaults_resolve_to_per_joint_bounds_without_grippers():
    c = config()
    assert c.constrained_joints == ("l_waist", "l_elbow", "r_waist", "r_elbow")
    assert c.continuous_dims == (0, 1, 3, 4)
    assert c.max_delta == (0.05,) * 4 and c.min_delta == (-0.05,) * 4
    spec = c.spec_for(16)
    assert spec.horizon == 16 and spec.action_dim == 6 and spec.continuous_dims == (0, 1, 3, 4)


def test_per_joint_bounds_follow_constrained_joints_order():
    # constrained joints given out of action order: bounds must follow the names, not the order.
    c = config(
        constrained_joints=["r_elbow", "l_waist"], max_delta=[0.3, 0.1], min_delta=[-0.2, -0.05]
    )
    spec = c.spec_for(4)
    assert spec.continuous_dims == (0, 4)
    np.testing.assert_array_equal(spec.hi_delta, [0.1, 0.3])  # l_waist, r_elbow
    np.testing.assert_array_equal(spec.lo_delta, [-0.05, -0.2])


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"max_delta": [-0.1]}, "max_delta"),
        ({"max_delta": [0.0]}, "max_delta"),
        ({"max_delta": []}, "max_delta"),
        ({"max_delta": [0.1, 0.1]}, "max_delta"),
        ({"max_delta": [float("nan")]}, "max_delta"),
        ({"min_delta": [0.1]}, "min_delta"),
        ({"min_delta": [0.05]}, "min_delta"),
        ({"min_delta": [-0.1, -0.1, -0.1]}, "min_delta"),
        ({"method": "magic"}, "method"),
        ({"method": "diffog"}, "model_path"),
        ({"backend": "cuda"}, "backend"),
        ({"dt": 0.0}, "dt"),
        ({"dt": -1.0}, "dt"),
        ({"dt": None}, "dt"),
        ({"max_chunk_age": 0.0}, "max_chunk_age"),
        ({"max_prev_age": -1.0}, "max_prev_age"),
        ({"solve_deadline": 0.0}, "solve_deadline"),
        ({"smooth_weight": -0.5}, "smooth_weight"),
        ({"joint_names": []}, "joint_names"),
        ({"joint_names": ["a", "a"]}, "joint_names"),
        ({"joint_names": ["gripper"]}, "constrained_joints"),
        ({"constrained_joints": ["nope"]}, "constrained_joints"),
        ({"use_continuity": "yes"}, "use_continuity"),
        ({"max_horizon": 0}, "max_horizon"),
    ],
)
def test_invalid_values_raise_naming_the_parameter(changes, word):
    with pytest.raises(ValueError, match=word):
        config(**changes)


def test_continuity_anchor_uses_the_executed_action_by_name():
    c = config()
    ex = ExecutedAction(
        ("r_elbow", "l_waist", "r_waist", "l_elbow"), np.array([4.0, 1.0, 3.0, 2.0]), 10.0
    )
    values, skip = continuity_anchor(ex, 10.05, c)
    assert skip is None
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0, 4.0])
    assert continuity_anchor(ex, 10.2, c) == (None, "stale_prev")
    assert continuity_anchor(None, 10.0, c) == (None, "no_prev")
    partial = ExecutedAction(("l_waist",), np.array([1.0]), 10.0)
    assert continuity_anchor(partial, 10.0, c) == (None, "prev_missing_joints")
    assert continuity_anchor(ex, 10.0, config(use_continuity=False)) == (None, None)


def _chunk(seed: int, t_len: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(0, 0.1, (t_len, len(NAMES))), axis=0)


def test_static_method_is_solve_qp_with_identity_cost():
    c = config()
    a = _chunk(0)
    anchor = a[0, list(c.continuous_dims)] + 0.2
    opt = ChunkOptimiser()
    try:
        out = opt.optimise(a, anchor, c)
    finally:
        opt.close()
    spec = c.spec_for(8)
    prev = prev_vector(a[0], anchor, c)
    ref = solve_qp(
        torch.eye(spec.n, dtype=torch.float64),
        -torch.from_numpy(a.reshape(1, -1)),
        spec,
        prev=torch.from_numpy(prev[None]),
    )
    np.testing.assert_allclose(out.y, ref.numpy().reshape(8, 6), rtol=0, atol=1e-12)
    assert out.fallback is None and out.continuity and out.active_bounds > 0


class _Model:
    """A stand-in learned layer (the interface the node uses), with scripted misbehaviour."""

    names = tuple(NAMES)
    horizon = 8
    action_dim = 6

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.release = threading.Event()

    def optimise(self, a, prev, spec):
        if self.mode == "raise":
            raise RuntimeError("layer exploded")
        if self.mode == "nan":
            return np.full_like(a, np.nan)
        if self.mode == "slow":
            self.release.wait(10)
        return a * 1.0  # unconstrained output: breaks the bounds


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("raise", "solver_error"), ("nan", "bound_check"), ("loose", "bound_check")],
)
def test_failing_methods_fall_back_to_clipping(mode, reason):
    c = config(method="diffog", model_path="/x")
    a = _chunk(1)
    anchor = a[0, list(c.continuous_dims)] - 0.3
    opt = ChunkOptimiser()
    try:
        out = opt.optimise(a, anchor, c, _Model(mode))
    finally:
        opt.close()
    spec = c.spec_for(8)
    prev = prev_vector(a[0], anchor, c)
    assert out.fallback == reason and out.detail
    np.testing.assert_array_equal(out.y, clip_chunk(a[None], spec, prev[None])[0])


def test_late_solves_fall_back_and_block_until_done():
    c = config(method="diffog", model_path="/x", solve_deadline=0.05)
    model = _Model("slow")
    a = _chunk(2)
    opt = ChunkOptimiser()
    try:
        first = opt.optimise(a, None, c, model)
        second = opt.optimise(a, None, c, model)  # the first solve is still running
        model.release.set()
    finally:
        opt.close()
    assert (first.fallback, second.fallback) == ("deadline", "solver_busy")
    expected = clip_chunk(a[None], c.spec_for(8))[0]
    np.testing.assert_array_equal(first.y, expected)
    np.testing.assert_array_equal(second.y, expected)


def test_model_dims_are_rejected():
    c = config(method="diffog", model_path="/x")
    opt = ChunkOptimiser()
    try:
        with pytest.raises(Rejected) as info:
            opt.optimise(_chunk(3, t_len=5), None, c, _Model("loose"))
        assert info.value.reason == "model_dims"
        with pytest.raises(Rejected) as info:
            opt.optimise(_chunk(3), None, c, None)
        assert info.value.reason == "model_dims"
    finally:
        opt.close()


def test_output_that_breaks_a_bound_after_the_fallback_is_never_returned(monkeypatch):
    # A broken fallback (clipping that does nothing) must end in a reject, not in a publish.
    monkeypatch.setattr(runtime, "clip_chunk", lambda a, spec, prev=None: a)
    opt = ChunkOptimiser()
    try:
        with pytest.raises(Rejected) as info:
            opt.optimise(_chunk(4) * 10, None, config(method="passthrough"))
        assert info.value.reason == "unsafe_output"
    finally:
        opt.close()


def test_huge_values_still_give_a_feasible_clipped_chunk():
    huge = np.full((8, 6), 1e300)
    huge[1::2] *= -1
    opt = ChunkOptimiser()
    try:
        out = opt.optimise(huge, None, config(method="passthrough"))
    finally:
        opt.close()
    assert out.fallback == "bound_check" and np.all(np.isfinite(out.y))


def test_stats_report_counts_and_warns_once():
    stats = OptimiserStats()
    c = config()
    level, _, values = stats.report(c)
    assert level == 0 and dict(values)["rejects_total"] == "0"
    stats.rejects.add("stale")
    stats.count("chunks_received")
    level, summary, values = stats.report(c)
    kv = dict(values)
    assert level == 1 and "1" in summary
    assert kv["reject.stale"] == "1" and kv["rejects_total"] == "1" and kv["reject.empty"] == "0"
    assert stats.report(c)[0] == 0  # nothing new since the last report


def test_spec_from_config_matches_hand_built_spec():
    c = config(smooth_weight=2.5)
    ref = TrajOptSpec(
        horizon=4, action_dim=6, continuous_dims=[0, 1, 3, 4], max_delta=0.05, smooth_weight=2.5
    )
    spec = c.spec_for(4)
    np.testing.assert_array_equal(spec.hi_delta, ref.hi_delta)
    np.testing.assert_array_equal(spec.lo_delta, ref.lo_delta)
    assert spec.smooth_weight == ref.smooth_weight
