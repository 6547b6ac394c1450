"""vx300s kinematics from the MuJoCo model: FK against MuJoCo, Jacobian by finite differences, IK."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from diffog_ros.robots.aloha_sim import assets_dir
from diffog_ros.robots.config import load_robot_config
from diffog_ros.robots.kinematics import (
    ArmKinematics,
    axis_angle_to_mat,
    mat_to_axis_angle,
    mat_to_quat,
    quat_to_mat,
)
from diffog_ros.robots.single_arm import load_end_effector

JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]


@pytest.fixture(scope="module")
def model():
    return mujoco.MjModel.from_xml_path(
        str(assets_dir("gym_aloha") / "bimanual_viperx_insertion.xml")
    )


def chain(model, side: str, offset=(0.0, 0.0, 0.0)) -> ArmKinematics:
    return ArmKinematics.from_mujoco(
        model,
        f"vx300s_{side}",
        f"vx300s_{side}/gripper_link",
        [f"vx300s_{side}/{j}" for j in JOINTS],
        offset,
    )


@pytest.mark.parametrize("side", ["left", "right"])
def test_fk_matches_mujoco_world_poses(model, side):
    kin = chain(model, side, (0.1, 0.02, -0.01))
    data = mujoco.MjData(model)
    site_local = np.array([0.1, 0.02, -0.01])
    body = model.body(f"vx300s_{side}/gripper_link").id
    rng = np.random.default_rng(1)
    for _ in range(25):
        q = rng.uniform(kin.lower, kin.upper)
        for name, v in zip(JOINTS, q, strict=True):
            data.qpos[model.joint(f"vx300s_{side}/{name}").qposadr[0]] = v
        mujoco.mj_kinematics(model, data)
        r_body = data.xmat[body].reshape(3, 3)
        p_expected = data.xpos[body] + r_body @ site_local
        p, r = kin.fk_world(q)
        np.testing.assert_allclose(p, p_expected, atol=1e-12)
        np.testing.assert_allclose(r, r_body, atol=1e-12)


def test_jacobian_matches_finite_differences(model):
    kin = chain(model, "left", (0.1072, 0.0, 0.0))
    rng = np.random.default_rng(2)
    h = 1e-6
    for _ in range(10):
        q = rng.uniform(kin.lower + 0.1, kin.upper - 0.1)
        jac = kin.jacobian(q)
        p0, r0 = kin.fk(q)
        for i in range(kin.n):
            dq = np.zeros(kin.n)
            dq[i] = h
            p1, r1 = kin.fk(q + dq)
            np.testing.assert_allclose(jac[:3, i], (p1 - p0) / h, atol=1e-5)
            np.testing.assert_allclose(jac[3:, i], mat_to_axis_angle(r1 @ r0.T) / h, atol=1e-5)


def test_ik_round_trip_recovers_reachable_poses(model):
    kin = chain(model, "left", (0.1072, 0.0, 0.0))
    rng = np.random.default_rng(3)
    start = np.array([0.0, -0.96, 1.16, 0.0, -0.3, 0.0])
    solved = 0
    for _ in range(30):
        q_true = start + rng.uniform(-0.4, 0.4, 6)
        q_true[4] = rng.uniform(-1.0, -0.25)  # away from the wrist singularity (wrist_angle = 0)
        q_true = np.clip(q_true, kin.lower, kin.upper)
        p, r = kin.fk(q_true)
        seed = q_true + rng.uniform(-0.15, 0.15, 6)
        res = kin.ik(p, r, seed, max_iterations=50)
        p_got, r_got = kin.fk(res.q)
        if res.success:
            solved += 1
            assert np.linalg.norm(p_got - p) <= 1e-4
            assert np.linalg.norm(mat_to_axis_angle(r @ r_got.T)) <= 1e-3
        assert np.all(res.q >= kin.lower) and np.all(res.q <= kin.upper)
    assert solved == 30


def test_ik_position_only_and_unreachable_target_stays_in_limits(model):
    kin = chain(model, "left", (0.1072, 0.0, 0.0))
    q0 = np.array([0.0, -0.96, 1.16, 0.0, -0.3, 0.0])
    p, _ = kin.fk(q0)
    res = kin.ik(p + np.array([0.05, 0.03, -0.02]), None, q0)
    assert res.success
    np.testing.assert_allclose(kin.fk(res.q)[0], p + np.array([0.05, 0.03, -0.02]), atol=1e-4)
    far = kin.ik(np.array([3.0, 0.0, 0.0]), None, q0)
    assert not far.success
    assert np.all(far.q >= kin.lower) and np.all(far.q <= kin.upper)


def test_rotation_helpers_round_trip():
    rng = np.random.default_rng(4)
    for _ in range(200):
        rv = rng.normal(size=3)
        rv *= rng.uniform(0, np.pi - 1e-3) / np.linalg.norm(rv)
        r = axis_angle_to_mat(rv)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(mat_to_axis_angle(r), rv, atol=1e-8)
        np.testing.assert_allclose(quat_to_mat(mat_to_quat(r)), r, atol=1e-12)
    r_pi = axis_angle_to_mat(np.array([0.0, np.pi, 0.0]))
    np.testing.assert_allclose(np.abs(mat_to_axis_angle(r_pi)), [0.0, np.pi, 0.0], atol=1e-6)


def test_single_arm_config_builds_a_chain_with_the_config_limits():
    cfg = load_robot_config("single_arm.yaml")
    ee = load_end_effector(cfg)
    idx = list(ee.arm_idx)
    np.testing.assert_array_equal(ee.kinematics.lower, cfg.lower[idx])
    np.testing.assert_array_equal(ee.kinematics.upper, cfg.upper[idx])
    p, _ = ee.kinematics.fk(cfg.start_pose[idx])
    assert ee.workspace.contains(p), "the start pose must lie inside the workspace box"


def test_chain_errors_are_named(model):
    with pytest.raises(ValueError, match="not found"):
        ArmKinematics.from_mujoco(model, "vx300s_left", "nope", ["vx300s_left/waist"])
    with pytest.raises(ValueError, match="expected"):
        ArmKinematics.from_mujoco(
            model, "vx300s_left", "vx300s_left/gripper_link", ["vx300s_left/waist"]
        )
