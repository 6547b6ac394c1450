"""The MuJoCo ALOHA backend: action mapping, stepping, seeded resets, task reward, cameras."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from diffog_ros.robots import aloha_sim as aloha_sim_mod
from diffog_ros.robots.aloha_sim import AlohaSim
from diffog_ros.robots.config import load_robot_config
from diffog_ros.robots.single_arm import SingleArmSim

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def cfg():
    return load_robot_config("aloha_sim.yaml")


@pytest.fixture
def sim(cfg):
    s = AlohaSim(cfg, "transfer_cube", seed=0)
    s.connect()
    yield s
    s.disconnect()


def test_action_maps_to_ctrl_as_gym_aloha_does(sim, cfg):
    """Cross-check against gym_aloha's own conversion (its BimanualViperXTask.before_step)."""
    from gym_aloha.constants import unnormalize_puppet_gripper_position as unnorm

    rng = np.random.default_rng(0)
    m = sim.model
    for _ in range(20):
        q = rng.uniform(cfg.lower, cfg.upper)
        ctrl = np.zeros(m.nu)
        ctrl[sim.ctrl_actuators] = sim.action_to_ctrl(q)
        # gym_aloha's env action: [left arm 6, g, -g, right arm 6, g, -g] in actuator order
        gl, gr = unnorm(q[6]), unnorm(q[13])
        expected = np.concatenate([q[:6], [gl, -gl], q[7:13], [gr, -gr]])
        np.testing.assert_allclose(ctrl, expected, atol=1e-12)


def test_state_reports_arm_qpos_and_normalised_finger_like_gym_aloha(sim, cfg):
    from gym_aloha.constants import normalize_puppet_gripper_position as norm

    state = sim.read_state()
    qpos = sim.data.qpos
    expected = np.concatenate([qpos[:6], [norm(qpos[6])], qpos[8:14], [norm(qpos[14])]])
    np.testing.assert_allclose(state.position, expected, atol=1e-12)
    np.testing.assert_allclose(state.position, cfg.start_pose, atol=1e-9)
    assert state.names == cfg.names


def test_each_command_advances_physics_by_one_control_period(sim, cfg):
    assert sim.substeps == 10 and sim.dt == pytest.approx(0.02)
    t0 = sim.sim_time
    target = cfg.start_pose.copy()
    target[0] += 0.2  # left waist
    target[7] -= 0.2  # right waist
    for _ in range(50):
        sim.send_command(target)
    assert sim.sim_time == pytest.approx(t0 + 50 * 0.02)
    pos = sim.read_state().position
    assert pos[0] == pytest.approx(target[0], abs=0.02)
    assert pos[7] == pytest.approx(target[7], abs=0.02)


def test_seeded_resets_are_reproducible_and_inside_the_configured_boxes(cfg):
    poses = {}
    for task in ("transfer_cube", "insertion"):
        s = AlohaSim(cfg, task, seed=5)
        s.connect()
        first = s.object_state()
        s.send_command(cfg.start_pose)
        s.reset(5)
        again = s.object_state()
        s.reset(6)
        other = s.object_state()
        spec = {o.name: o for o in s.spec.objects}
        assert set(first) == set(spec)
        for name, pose in first.items():
            np.testing.assert_array_equal(pose, again[name])
            assert not np.allclose(pose[:3], other[name][:3])
            assert np.all(pose[:3] >= spec[name].low) and np.all(pose[:3] <= spec[name].high)
        assert s.sim_time == 0.0
        poses[task] = s.env_state()
        s.disconnect()
    assert poses["transfer_cube"].shape == (7,) and poses["insertion"].shape == (14,)


def test_reward_stages_follow_the_task_definitions(sim, monkeypatch):
    r = sim.spec.reward
    box, table, lf, rf = r["object"], r["table"], r["left_finger"], r["right_finger"]

    def with_contacts(*pairs):
        monkeypatch.setattr(sim, "contact_pairs", lambda: {frozenset(p) for p in pairs})
        return sim.reward()

    assert with_contacts((box, table)) == 0
    assert with_contacts((box, table), (box, rf)) == 1
    assert with_contacts((box, rf)) == 2
    assert with_contacts((box, rf), (box, lf), (box, table)) == 3
    assert with_contacts((box, lf)) == 4
    monkeypatch.undo()
    # physically: after settling, the box rests on the table and nothing holds it
    for _ in range(25):
        sim.send_command(sim.last_command)
    assert frozenset((box, table)) in sim.contact_pairs()
    assert sim.reward() == 0 and not sim.is_success()


def test_insertion_reward(cfg, monkeypatch):
    s = AlohaSim(cfg, "insertion", seed=1)
    s.connect()
    r = s.spec.reward
    peg, sock, pin, lf, rf = r["peg"], r["socket"][0], r["pin"], r["left_finger"], r["right_finger"]
    monkeypatch.setattr(s, "contact_pairs", lambda: {frozenset((sock, lf)), frozenset((peg, rf))})
    assert s.reward() == 2
    monkeypatch.setattr(s, "contact_pairs", lambda: {frozenset((peg, sock))})
    assert s.reward() == 3
    monkeypatch.setattr(s, "contact_pairs", lambda: {frozenset((peg, pin))})
    assert s.reward() == 4 and s.is_success()
    s.disconnect()


def test_cameras_render_on_demand_from_another_thread_without_touching_physics(sim):
    assert set(sim.camera_names) == {"cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"}
    qpos = sim.data.qpos.copy()
    t = sim.sim_time
    images = {}

    def render_all():
        for cam in sim.camera_names:
            images[cam] = sim.render(cam, 64, 48)
        images["big"] = sim.render("cam_high", 800, 600)  # beyond the model's default buffer
        sim.close_renderers()

    th = threading.Thread(target=render_all)
    th.start()
    th.join(60)
    for cam in sim.camera_names:
        img = images[cam]
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8
        assert img.std() > 1.0, f"{cam} rendered a flat image"
    assert images["big"].shape == (600, 800, 3)
    assert not np.array_equal(images["cam_high"], images["cam_left_wrist"])
    np.testing.assert_array_equal(sim.data.qpos, qpos)
    assert sim.sim_time == t
    with pytest.raises(ValueError, match="unknown camera"):
        sim.render("cam_nope", 32, 32)


def test_active_sim_is_the_connected_instance(cfg):
    s = AlohaSim(cfg, "transfer_cube", seed=0)
    assert aloha_sim_mod.active_sim() is not s
    s.connect()
    assert aloha_sim_mod.active_sim() is s
    s.disconnect()
    assert aloha_sim_mod.active_sim() is None


def test_send_refuses_nan_and_clips_to_limits(sim, cfg):
    bad = cfg.start_pose.copy()
    bad[2] = np.nan
    t = sim.sim_time
    with pytest.raises(ValueError, match="non-finite"):
        sim.send_command(bad)
    assert sim.sim_time == t  # nothing was stepped
    far = cfg.start_pose.copy()
    far[1] = -100.0
    assert sim.send_command(far)[1] == cfg.lower[1]


def test_single_arm_sim_drives_one_arm_and_holds_the_other():
    cfg = load_robot_config("single_arm.yaml")
    s = SingleArmSim(cfg, "transfer_cube", seed=0)
    s.connect()
    np.testing.assert_allclose(s.read_state().position, cfg.start_pose, atol=1e-9)
    right_before = s.sim.read_state().position[7:].copy()
    target = cfg.start_pose.copy()
    target[0] += 0.3
    for _ in range(50):
        s.send_command(target)
    assert s.read_state().position[0] == pytest.approx(target[0], abs=0.02)
    np.testing.assert_allclose(s.sim.read_state().position[7:], right_before, atol=0.02)
    s.disconnect()
