"""Unit tests of the safety layer (pure numpy, no ROS, no simulator)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffog_ros.robots.config import load_robot_config
from diffog_ros.robots.safety import (
    Counters,
    EStop,
    SafetyLayer,
    TwistLimiter,
    Watchdog,
    WorkspaceBox,
)

DT = 0.02


@pytest.fixture(scope="module")
def cfg():
    return load_robot_config("aloha_sim.yaml")


@pytest.fixture
def layer(cfg):
    return SafetyLayer.from_config(cfg, DT)


def test_step_cap_is_velocity_limit_times_dt(cfg, layer):
    np.testing.assert_allclose(layer.step_cap, np.array([j.max_velocity for j in cfg.joints]) * DT)
    # the vx300s velocity limit pi rad/s at 50 Hz
    rad = [i for i, j in enumerate(cfg.joints) if j.unit == "rad"]
    np.testing.assert_allclose(layer.step_cap[rad], math.pi * DT, rtol=1e-6)


def test_max_joint_step_tightens_only_rad_joints_and_only_when_tighter(cfg, layer):
    rad = np.array([j.unit == "rad" for j in cfg.joints])
    layer.configure(max_joint_step=0.01)
    np.testing.assert_allclose(layer.step_cap[rad], 0.01)
    np.testing.assert_allclose(layer.step_cap[~rad], cfg.max_velocity[~rad] * DT)
    layer.configure(max_joint_step=10.0)  # looser than the velocity limit: no effect
    np.testing.assert_allclose(layer.step_cap, cfg.max_velocity * DT)
    layer.configure(max_joint_step=0.0)
    np.testing.assert_allclose(layer.step_cap, cfg.max_velocity * DT)
    with pytest.raises(ValueError, match="max_joint_step"):
        layer.configure(max_joint_step=float("nan"))


def test_non_finite_target_is_rejected_and_the_robot_holds(cfg, layer):
    prev = cfg.start_pose.copy()
    for bad in (np.nan, np.inf, -np.inf):
        target = prev + 0.01
        target[4] = bad
        r = layer.filter(target, prev)
        assert r.rejected == "non_finite"
        np.testing.assert_array_equal(r.command, prev)
        assert r.clamped_joints == (cfg.names[4],)


def test_targets_beyond_limits_are_clamped_and_steps_capped(cfg, layer):
    prev = cfg.start_pose.copy()
    target = np.full(cfg.dof, 1e6)
    r = layer.filter(target, prev)
    assert r.rejected is None
    assert set(r.clamped) == {"position_limit", "step_limit"}
    np.testing.assert_allclose(r.command - prev, layer.step_cap)
    # a target within one step and within limits passes unchanged
    small = prev + 0.5 * layer.step_cap
    r2 = layer.filter(small, prev)
    assert r2.clamped == () and r2.rejected is None
    np.testing.assert_array_equal(r2.command, small)


def test_thousands_of_random_and_adversarial_targets_never_break_a_limit(cfg, layer):
    rng = np.random.default_rng(7)
    prev = cfg.start_pose.copy()
    cap = layer.step_cap
    for i in range(20000):
        kind = i % 4
        if kind == 0:
            target = rng.uniform(cfg.lower - 3, cfg.upper + 3)
        elif kind == 1:
            target = rng.choice([-1e9, 1e9, -1e-300, 0.0], size=cfg.dof)
        elif kind == 2:
            target = prev + rng.normal(0, 5, cfg.dof)
            target[rng.integers(cfg.dof)] = rng.choice([np.nan, np.inf])
        else:
            target = np.where(rng.random(cfg.dof) < 0.5, cfg.lower, cfg.upper)
        r = layer.filter(target, prev)
        c = r.command
        assert np.all(np.isfinite(c))
        assert np.all(c >= cfg.lower) and np.all(c <= cfg.upper)
        assert np.all(np.abs(c - prev) <= cap * (1 + 1e-12))
        prev = c


def test_anchor_outside_limits_still_yields_commands_inside(cfg, layer):
    prev = cfg.upper + 0.5  # e.g. a measured start pose outside the configured limits
    r = layer.filter(cfg.start_pose, prev)
    assert np.all(r.command <= cfg.upper) and np.all(r.command >= cfg.lower)


def test_safety_layer_rejects_bad_construction(cfg):
    with pytest.raises(ValueError, match="lower"):
        SafetyLayer(["a"], [1.0], [0.0], [1.0], ["rad"], DT)
    with pytest.raises(ValueError, match="max_velocity"):
        SafetyLayer(["a"], [0.0], [1.0], [0.0], ["rad"], DT)
    with pytest.raises(ValueError, match="dt"):
        SafetyLayer.from_config(cfg, 0.0)


def test_workspace_box_clamps_and_reports():
    box = WorkspaceBox([0.1, -0.2, 0.0], [0.5, 0.2, 0.4])
    p, hit = box.clamp(np.array([0.3, 0.0, 0.2]))
    assert not hit and np.allclose(p, [0.3, 0.0, 0.2])
    p, hit = box.clamp(np.array([1.0, -1.0, 0.2]))
    assert hit and np.allclose(p, [0.5, -0.2, 0.2])
    with pytest.raises(ValueError, match="min"):
        WorkspaceBox([0, 0, 0], [0, 1, 1])


def test_twist_limiter_scales_without_changing_direction():
    lim = TwistLimiter(0.25, 1.0)
    v, w, hit = lim.limit(np.array([3.0, 4.0, 0.0]), np.array([0.0, 0.0, 0.5]))
    assert hit
    assert np.linalg.norm(v) == pytest.approx(0.25)
    np.testing.assert_allclose(v / np.linalg.norm(v), [0.6, 0.8, 0.0])
    np.testing.assert_allclose(w, [0.0, 0.0, 0.5])


def test_watchdog_expires_counts_one_trip_and_rearms_on_fresh_command():
    wd = Watchdog(0.1)
    assert not wd.check(0.0)  # nothing fed yet
    wd.feed(1.0)
    assert wd.check(1.05) and wd.check(1.09)
    assert not wd.check(1.11)
    assert not wd.check(1.5)  # stays expired until fed
    assert wd.trips == 1 and wd.tripped
    wd.feed(2.0)
    assert wd.check(2.01) and not wd.tripped


def test_estop_and_counters():
    e = EStop()
    assert e.set(True) and e.active and not e.set(True)
    assert e.set(False) and not e.active
    assert e.engagements == 1
    c = Counters()
    c.add("reject.nan")
    c.add("reject.nan", 2)
    c.add("clamp.step_limit")
    assert c.get("reject.nan") == 3 and c.total("reject.") == 3
    assert c.snapshot() == {"clamp.step_limit": 1, "reject.nan": 3}
