"""The controller core with the real MuJoCo robot, in-process (no ROS): ticks at simulated times."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from diffog_ros.paths import config_path
from diffog_ros.robots.config import robot_config_from_dict
from diffog_ros.robots.control_loop import ControlLoop, LoopSettings, RateMonitor
from diffog_ros.robots.factory import make_robot

from .fuzz import REJECTED, make_chunk

pytestmark = pytest.mark.sim
DT = 0.02
# Measured-state tolerances of the simulated arms (see docs/controller.md, "Safety"): MuJoCo joint
# limits are soft constraints, and the model's position servos (stiffness only, no damping)
# overshoot when the command reverses at full speed.
LIMIT_TOL = 0.02
MEASURED_STEP_FACTOR = 4.0


def started(backend: str, mode: str = "policy", **kw) -> tuple[ControlLoop, float]:
    robot = make_robot(backend, seed=0)
    robot.connect()
    loop = ControlLoop(robot, DT, LoopSettings(mode=mode, **kw))
    t = 100.0
    loop.start(t)
    while loop.phase == "starting":
        t += DT
        loop.tick(t)
    return loop, t


def test_fuzzed_chunks_never_break_limits_or_caps_and_rejects_add_up():
    loop, t = started("aloha_sim", n_action_steps=8)
    cfg = loop.config
    cap = loop.safety.step_cap
    rng = np.random.default_rng(11)
    expected_rejects: dict[str, int] = {}
    commands, measured = [loop.previous_command], []
    for i in range(5000):
        t += DT
        if i % 2 == 0:
            ch = make_chunk(rng, cfg.names, cfg.start_pose, cfg.lower, cfg.upper, DT)
            reason = loop.submit_chunk(ch.names, t + ch.stamp_offset, ch.offsets, ch.positions, t)
            assert reason == REJECTED.get(ch.kind), ch.kind
            if reason:
                expected_rejects[reason] = expected_rejects.get(reason, 0) + 1
        r = loop.tick(t)
        commands.append(r.command)
        measured.append(r.state.position)
    c, m = np.array(commands), np.array(measured)
    assert np.all(np.isfinite(c)) and np.all(c >= cfg.lower) and np.all(c <= cfg.upper)
    assert np.all(np.abs(np.diff(c, axis=0)) <= cap * (1 + 1e-9))
    assert np.all(m >= cfg.lower - LIMIT_TOL) and np.all(m <= cfg.upper + LIMIT_TOL)
    assert np.all(np.abs(np.diff(m, axis=0)) <= MEASURED_STEP_FACTOR * cap)
    counts = loop.counters.snapshot()
    for reason, n in expected_rejects.items():
        assert counts[f"reject.{reason}"] == n
    assert counts["clamp.position_limit"] > 0 and counts["clamp.step_limit"] > 0
    assert counts["steps.skipped_late"] > 0 and counts["steps.executed"] > 0


def test_without_the_safety_layer_the_same_fuzz_breaks_the_checks():
    """Guards the test above: it can fail. Raw chunks (no step cap) make the arms jump."""
    loop, t = started("aloha_sim", n_action_steps=8)
    loop.safety._step_cap[:] = np.inf  # sabotage
    cfg = loop.config
    rng = np.random.default_rng(11)
    commands = [loop.previous_command]
    for i in range(400):
        t += DT
        if i % 2 == 0:
            ch = make_chunk(rng, cfg.names, cfg.start_pose, cfg.lower, cfg.upper, DT)
            loop.submit_chunk(ch.names, t + ch.stamp_offset, ch.offsets, ch.positions, t)
        commands.append(loop.tick(t).command)
    assert np.any(np.abs(np.diff(np.array(commands), axis=0)) > loop.safety.dt * np.pi * 1.5)


def test_chunk_steps_are_sent_at_their_times_and_then_the_robot_holds():
    loop, t = started("aloha_sim", n_action_steps=5)
    cfg = loop.config
    base = loop.previous_command
    steps = np.array([base + 0.01 * (k + 1) for k in range(10)])
    stamp = t + 3 * DT
    assert (
        loop.submit_chunk(cfg.names, stamp, [k * DT for k in range(10)], steps.tolist(), t) is None
    )
    sent = []
    for k in range(1, 10):
        r = loop.tick(t + k * DT)
        sent.append((round((r.stamp - stamp) / DT), r.command, r.source))
    for ticks_after_stamp, command, source in sent:
        if 0 <= ticks_after_stamp < 5:
            np.testing.assert_allclose(command, steps[ticks_after_stamp])
            assert source == "policy"
        else:
            assert source == "hold"
    held = [c for n, c, _ in sent if n >= 5]
    for c in held:
        np.testing.assert_allclose(c, steps[4])


def test_teleop_watchdog_holds_within_two_periods_and_needs_a_fresh_command():
    loop, t = started("aloha_sim", mode="teleop", watchdog_timeout=0.1)
    cfg = loop.config
    far = cfg.start_pose.copy()
    far[0] += 2.0  # far: the arm keeps moving at the step cap while the command is fresh
    assert loop.submit_joint_command(cfg.names, far.tolist(), t) is None
    last_cmd_time = t
    prev = loop.previous_command
    moving_until = None
    for k in range(1, 30):
        now = t + k * DT
        c = loop.tick(now).command
        if not np.allclose(c, prev):
            moving_until = now
        prev = c
    assert moving_until is not None
    assert moving_until <= last_cmd_time + 0.1 + 2 * DT
    assert loop.counters.get("watchdog.trips") == 1
    # holding continues; a fresh command resumes motion
    now = t + 30 * DT
    assert loop.submit_joint_command(cfg.names, far.tolist(), now) is None
    assert not np.allclose(loop.tick(now + DT).command, prev)


def test_estop_freezes_ignores_everything_and_release_needs_a_fresh_command():
    loop, t = started("aloha_sim", n_action_steps=50)
    cfg = loop.config
    base = loop.previous_command
    steps = [(base + 0.002 * (k + 1)).tolist() for k in range(50)]
    loop.submit_chunk(cfg.names, t + DT, [k * DT for k in range(50)], steps, t)
    t += DT
    moving = loop.tick(t).command
    assert not np.allclose(moving, base)
    assert loop.set_estop(True)
    frozen = loop.tick(t + DT).command
    np.testing.assert_array_equal(frozen, moving)
    assert loop.submit_chunk(cfg.names, t, [0.0], [steps[0]], t) == "estop"
    for k in range(2, 10):
        np.testing.assert_array_equal(loop.tick(t + k * DT).command, frozen)
    assert loop.set_estop(False)
    t += 10 * DT
    np.testing.assert_array_equal(loop.tick(t).command, frozen)  # the old chunk is gone
    assert loop.counters.get("reject.estop") == 1
    assert loop.submit_chunk(cfg.names, t + DT, [0.0], [steps[-1]], t) is None
    assert not np.allclose(loop.tick(t + DT).command, frozen)


def test_settings_are_validated_and_applied_between_ticks():
    loop, t = started("aloha_sim")
    with pytest.raises(ValueError, match="watchdog_timeout"):
        loop.apply_settings(LoopSettings(watchdog_timeout=DT))
    with pytest.raises(ValueError, match="mode"):
        loop.apply_settings(LoopSettings(mode="dance"))
    with pytest.raises(ValueError, match="n_action_steps"):
        loop.apply_settings(LoopSettings(n_action_steps=0))
    loop.apply_settings(LoopSettings(mode="policy", max_joint_step=0.005))
    assert loop.safety.max_joint_step is None  # staged, not applied yet
    loop.tick(t + DT)
    assert loop.safety.max_joint_step == 0.005
    cfg = loop.config
    far = (loop.previous_command + 1.0).tolist()
    loop.submit_chunk(cfg.names, t + 2 * DT, [0.0], [far], t + 2 * DT)
    before = loop.previous_command
    after = loop.tick(t + 2 * DT).command
    rad = np.array([u == "rad" for u in cfg.units])
    assert np.max(np.abs(after - before)[rad]) == pytest.approx(0.005)
    loop.apply_settings(LoopSettings(mode="teleop"))
    loop.tick(t + 3 * DT)
    assert loop.submit_chunk(cfg.names, t, [0.0], [far], t) == "mode"


def test_safe_start_and_shutdown_moves_respect_the_speed_fraction():
    data = yaml.safe_load(config_path("aloha_sim.yaml").read_text())
    data["sim"]["initial_pose"] = "sleep"
    cfg = robot_config_from_dict(data, source="sleep_start.yaml")
    robot = make_robot("aloha_sim", cfg, seed=0)
    robot.connect()
    loop = ControlLoop(robot, DT, LoopSettings())
    t = 0.0
    loop.start(t)
    vmax = cfg.safe_motion.velocity_fraction * cfg.max_velocity * DT
    prev = loop.previous_command
    # anchored on the measured pose (the sim was reset to the sleep pose)
    np.testing.assert_allclose(prev, np.clip(robot.read_state().position, cfg.lower, cfg.upper))
    rad = np.array([u == "rad" for u in cfg.units])
    np.testing.assert_allclose(prev[rad], cfg.sleep_pose[rad], atol=1e-9)
    n = 0
    while loop.phase == "starting":
        t += DT
        c = loop.tick(t).command
        assert np.all(np.abs(c - prev) <= vmax + 1e-12)
        prev, n = c, n + 1
    np.testing.assert_allclose(prev, cfg.start_pose)
    assert n > 1
    loop.request_stop()
    while loop.phase == "stopping":
        t += DT
        c = loop.tick(t).command
        assert np.all(np.abs(c - prev) <= vmax + 1e-12)
        prev = c
    assert loop.phase == "stopped"
    np.testing.assert_allclose(prev, cfg.sleep_pose)


def test_single_arm_twist_moves_the_end_effector_along_the_command_inside_the_box():
    loop, t = started("single_arm_sim", mode="teleop", watchdog_timeout=0.2)
    ee = loop.end_effector
    idx = list(ee.arm_idx)
    q0 = loop.previous_command
    p0, r0 = ee.kinematics.fk(q0[idx])
    direction = np.array([1.0, 1.0, -0.5]) / np.linalg.norm([1.0, 1.0, -0.5])
    positions = []
    for _ in range(40):
        t += DT
        assert loop.submit_twist("", (0.1 * direction).tolist(), [0, 0, 0], t) is None
        positions.append(ee.kinematics.fk(loop.tick(t).command[idx])[0])
    disp = positions[-1] - p0
    assert np.dot(disp, direction) / np.linalg.norm(disp) > 0.99
    assert np.linalg.norm(disp) == pytest.approx(0.1 * 40 * DT, rel=0.1)
    _, r1 = ee.kinematics.fk(loop.previous_command[idx])
    assert np.linalg.norm(r1 - r0) < 0.02  # orientation held
    # push far outside the box: the commanded end effector stops at the box
    for _ in range(200):
        t += DT
        loop.submit_twist("", [0.0, 0.0, -0.25], [0, 0, 0], t)
        p = ee.kinematics.fk(loop.tick(t).command[idx])[0]
        assert ee.workspace.contains(p, tol=1e-3)
    assert p[2] == pytest.approx(ee.workspace.min[2], abs=2e-3)
    assert loop.counters.get("clamp.workspace") > 0
    assert loop.submit_twist("world", [0, 0, 0], [0, 0, 0], t) == "frame"
    assert loop.submit_twist("", [np.nan, 0, 0], [0, 0, 0], t) == "non_finite"


def test_rate_monitor():
    m = RateMonitor(0.02, window=10)
    for k in range(20):
        m.record(k * 0.02, k * 0.02 + (0.03 if k == 5 else 0.001))
    assert m.rate() == pytest.approx(50.0)
    assert m.overruns == 1 and m.late == 0
    m.record(20 * 0.02 + 0.05, 20 * 0.02 + 0.051)
    assert m.late == 1
