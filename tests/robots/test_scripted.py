"""Scripted demonstrations in the real MuJoCo ALOHA: the scripts succeed, noise behaves, IK holds.

Everything runs the real simulator (gym_aloha's model through AlohaSim), state-only (no
rendering), so each 400-tick episode takes about a second.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from diffog_ros.robots.aloha_sim import assets_dir
from diffog_ros.robots.config import load_robot_config
from diffog_ros.robots.factory import make_robot
from diffog_ros.robots.scripted.arms import ArmHandle
from diffog_ros.robots.scripted.geometry import Pose, min_jerk, rot_x, rot_y
from diffog_ros.robots.scripted.noise import JerkyOperator, NoiseSettings
from diffog_ros.robots.scripted.policy import ArmGoal, Phase, ScriptedPolicy
from diffog_ros.robots.scripted.rollout import DemoGenerator, DemoSettings
from diffog_ros.robots.scripted.tasks import ARM_PREFIXES, InsertionScript, TransferCubeScript

CONFIG = load_robot_config("aloha_sim.yaml")


@pytest.fixture(scope="module")
def sims():
    """One connected sim per task, shared by the module (reset per episode)."""
    out = {}
    for task in ("transfer_cube", "insertion"):
        sim = make_robot("aloha_sim", CONFIG, task=task, seed=0)
        sim.connect()
        out[task] = sim
    yield out
    for sim in out.values():
        sim.disconnect()


def generator(sims, task: str, noise: float = 0.0, **kw) -> DemoGenerator:
    settings = DemoSettings(task=task, cameras=(), noise=NoiseSettings(amplitude=noise), **kw)
    return DemoGenerator(sims[task], settings)


def arm_dims() -> list[int]:
    return [i for i, j in enumerate(CONFIG.joints) if j.unit == "rad"]


def assert_within_safety_limits(actions: np.ndarray, dt: float) -> None:
    """Position limits and the per-tick cap (velocity limit x dt), from the config file."""
    lower, upper = CONFIG.lower, CONFIG.upper
    assert np.all(actions >= lower) and np.all(actions <= upper)
    cap = CONFIG.max_velocity * dt
    steps = np.abs(np.diff(np.vstack([CONFIG.start_pose, actions]), axis=0))
    assert np.all(steps <= cap + 1e-12), f"largest step / cap: {np.max(steps / cap):.3f}"


# ----------------------------------------------------------------------------- the scripts succeed


@pytest.mark.parametrize("task", ["transfer_cube", "insertion"])
def test_clean_script_succeeds_and_needs_no_safety_clamp(sims, task):
    gen = generator(sims, task)
    result = gen.run(seed=7)
    sim = sims[task]
    # success judged by the simulator itself after the episode (the file's attrs say the same)
    assert sim.is_success()
    assert result.success and result.final_reward == sim.max_reward
    assert result.steps == gen.script.episode_steps
    # a clean plan stays inside the limits by itself: the safety layer never had to step in
    assert result.safety_counts == {}
    assert result.ik_failures == 0
    assert_within_safety_limits(result.arrays["action"], sim.dt)


def test_transfer_cube_ends_with_the_cube_in_the_left_hand_in_the_air(sims):
    result = generator(sims, "transfer_cube").run(seed=3)
    sim = sims["transfer_cube"]
    cube = sim.object_state()["box"][:3]
    left_tip = sim.data.xpos[sim.model.body("vx300s_left/gripper_link").id]
    assert result.success
    assert cube[2] > 0.1  # lifted well off the table (it rests at z = 0.02)
    assert cube[0] < 0.0  # on the left arm's side of the table
    assert np.linalg.norm(cube - left_tip) < 0.2


def test_insertion_peg_ends_inside_the_socket(sims):
    from diffog_ros.robots.kinematics import quat_to_mat

    model = sims["insertion"].model
    result = generator(sims, "insertion").run(seed=11)
    sim = sims["insertion"]
    objects = sim.object_state()
    # the peg's end facing the socket, in the socket's frame (model geometry, not the script's)
    peg_r = quat_to_mat(objects["peg"][3:])
    socket_r = quat_to_mat(objects["socket"][3:])
    half = model.geom("red_peg").size[0]
    end = objects["peg"][:3] - peg_r[:, 0] * half * np.sign(peg_r[0, 0])
    local = socket_r.T @ (end - objects["socket"][:3])
    wall = model.geom("socket-3").pos[1]  # side walls at +-y, floor / roof at +-z
    depth = model.geom("socket-1").size[0]
    assert result.success
    assert abs(local[1]) < wall and abs(local[2]) < abs(model.geom("socket-1").pos[2])
    assert -depth < local[0] < depth  # the end is inside the socket tube


def test_episode_is_a_pure_function_of_the_seed(sims):
    gen = generator(sims, "transfer_cube", noise=0.01)
    a, b = gen.run(seed=5), gen.run(seed=5)
    for key in ("qpos", "qvel", "effort", "action"):
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    c = gen.run(seed=6)
    assert not np.array_equal(a.arrays["action"], c.arrays["action"])


@pytest.mark.slow
def test_noise_makes_actions_jerky_but_keeps_them_within_limits(sims):
    from diffog_ros.trajopt import trajectory_metrics

    clean = generator(sims, "transfer_cube").run(seed=2)
    noisy = generator(sims, "transfer_cube", noise=0.02).run(seed=2)
    dt = sims["transfer_cube"].dt
    m0 = trajectory_metrics(clean.arrays["action"], dt, arm_dims())
    m1 = trajectory_metrics(noisy.arrays["action"], dt, arm_dims())
    for key in ("vel_std", "acc_max", "acc_std"):
        assert m1[key] > 2 * m0[key], (key, m0, m1)
    assert_within_safety_limits(noisy.arrays["action"], dt)
    # only the arm joints are jittered: the gripper commands are the clean script's
    grippers = [i for i, j in enumerate(CONFIG.joints) if j.unit == "normalized"]
    np.testing.assert_array_equal(
        clean.arrays["action"][:, grippers], noisy.arrays["action"][:, grippers]
    )


def test_tighter_max_joint_step_is_applied_and_counted(sims):
    gen = generator(sims, "transfer_cube", noise=0.02, max_joint_step=0.01)
    result = gen.run(seed=4)
    steps = np.abs(np.diff(result.arrays["action"][:, arm_dims()], axis=0))
    assert np.max(steps) <= 0.01 + 1e-12
    assert result.safety_counts.get("clamp.step_limit", 0) > 0


def test_success_any_counts_a_reward_reached_before_the_end(sims):
    gen = generator(sims, "transfer_cube", steps=300, success="any")
    result = gen.run(seed=1)
    # at tick 300 the hand-over is done (phases end at 370) so "any" succeeds; a "final" judge
    # would use the reward at the last tick, which the result keeps separately
    assert result.max_reward == sims["transfer_cube"].max_reward
    assert result.success


# ----------------------------------------------------------------------------- script constants


def test_default_tool_point_is_gym_alohas_end_effector_weld():
    """The TCP default equals where gym_aloha's mocap end-effector model welds its target."""
    model = mujoco.MjModel.from_xml_path(
        str(assets_dir("gym_aloha") / "bimanual_viperx_end_effector_transfer_cube.xml")
    )
    eq = next(i for i in range(model.neq) if model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD)
    relpos = model.eq_data[eq, 3:6]  # gripper_link relative to the mocap body (identity frame)
    np.testing.assert_allclose(TransferCubeScript().tcp_offset, -relpos, atol=1e-4)


def test_peg_half_length_matches_the_model():
    model = mujoco.MjModel.from_xml_path(
        str(assets_dir("gym_aloha") / "bimanual_viperx_insertion.xml")
    )
    assert InsertionScript().peg_half_length == pytest.approx(model.geom("red_peg").size[0])


def test_script_overrides_are_validated():
    s = TransferCubeScript().with_overrides({"meet": [0.0, 0.45, 0.3], "grasp_steps": 25})
    assert s.meet == (0.0, 0.45, 0.3) and s.grasp_steps == 25
    with pytest.raises(ValueError, match="unknown script parameters"):
        TransferCubeScript().with_overrides({"nope": 1})
    with pytest.raises(ValueError, match="grasp_steps"):
        TransferCubeScript().with_overrides({"grasp_steps": 0})
    with pytest.raises(ValueError, match="hover"):
        TransferCubeScript().with_overrides({"hover": "high"})
    with pytest.raises(ValueError, match="meet"):
        TransferCubeScript().with_overrides({"meet": [0.0, 0.5]})
    with pytest.raises(ValueError, match="pick_pitch"):
        InsertionScript().with_overrides({"pick_pitch": float("nan")})


def test_demo_settings_are_validated():
    with pytest.raises(ValueError, match="unknown task"):
        DemoSettings(task="stack")
    with pytest.raises(ValueError, match="image size"):
        DemoSettings(task="insertion", image_size=(0, 10))
    with pytest.raises(ValueError, match="success"):
        DemoSettings(task="insertion", success="sometimes")
    with pytest.raises(ValueError, match="unique"):
        DemoSettings(task="insertion", cameras=("cam_high", "cam_high"))


def test_unknown_camera_is_refused(sims):
    with pytest.raises(ValueError, match="unknown camera"):
        DemoGenerator(sims["insertion"], DemoSettings(task="insertion", cameras=("cam_top",)))


# ----------------------------------------------------------------------------- arms and IK


def test_ik_reaches_aimed_poses_checked_by_mujoco(sims):
    sim = sims["insertion"]
    tcp = TransferCubeScript().tcp_offset
    model = sim.model
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    for key, prefix in ARM_PREFIXES.items():
        arm = ArmHandle.from_sim(sim, prefix, tcp)
        seed = arm.arm_joints(CONFIG.start_pose)
        arm.posture = seed.copy()
        base = arm.pose(seed).position
        body = model.body(f"vx300s_{key}/gripper_link").id
        for _ in range(8):
            target_pos = base + rng.uniform([-0.1, -0.1, -0.15], [0.1, 0.1, 0.0])
            pitch, roll = rng.uniform(0.0, 1.5), rng.uniform(-0.5, 0.5)
            target = arm.aimed(target_pos, pitch, roll)
            # walk there in small steps of position, pitch and roll, as the policy does,
            # seeding each solve with the last solution
            q = seed
            start = arm.pose(seed)
            p0, r0 = arm.aim_angles(start)
            for s in np.linspace(0.0, 1.0, 40)[1:]:
                pose = arm.aimed(
                    start.position + s * (target_pos - start.position),
                    p0 + s * (pitch - p0),
                    r0 + s * (roll - r0),
                )
                result = arm.solve(pose, q)
                q = result.q
            assert result.success
            # independent check: MuJoCo's own forward kinematics of the solution
            data.qpos[:] = 0.0
            for name, value in zip(
                [n for n in CONFIG.names if n.startswith(prefix)][: len(q)], q, strict=True
            ):
                data.qpos[model.joint(sim.spec.joint_map[name]).qposadr[0]] = value
            mujoco.mj_kinematics(model, data)
            rot = data.xmat[body].reshape(3, 3)
            np.testing.assert_allclose(
                data.xpos[body] + rot @ np.asarray(tcp), target_pos, atol=2e-4
            )
            np.testing.assert_allclose(rot, target.rotation, atol=3e-3)


def test_aim_angles_invert_aimed(sims):
    arm = ArmHandle.from_sim(sims["insertion"], "right_", TransferCubeScript().tcp_offset)
    for pitch, roll in [(0.0, 0.0), (1.0, 0.3), (1.5, -0.7), (-0.2, 1.2)]:
        pose = arm.aimed(np.array([0.1, 0.55, 0.2]), pitch, roll)
        assert arm.aim_angles(pose) == pytest.approx((pitch, roll), abs=1e-9)


def test_arm_handle_finds_arm_and_gripper_dims_from_the_config(sims):
    arm = ArmHandle.from_sim(sims["insertion"], "left_", (0.0, 0.0, 0.0))
    assert [CONFIG.names[i] for i in arm.arm_index] == [
        n for n in CONFIG.names if n.startswith("left_") and n != "left_gripper"
    ]
    assert CONFIG.names[arm.gripper_index] == "left_gripper"
    assert (arm.gripper_closed, arm.gripper_open) == (0.0, 1.0)
    with pytest.raises(ValueError):
        ArmHandle.from_sim(sims["insertion"], "middle_", (0.0, 0.0, 0.0))


# ----------------------------------------------------------------------------- policy machinery


def test_policy_follows_minimum_jerk_and_holds_after_the_last_phase(sims):
    sim = sims["transfer_cube"]
    sim.reset(0)
    arm = ArmHandle.from_sim(sim, "left_", TransferCubeScript().tcp_offset)
    start = sim.last_command
    goal = arm.pose(arm.arm_joints(start)).position + np.array([0.05, 0.0, -0.05])

    def plan(ctx):
        return {"left": ArmGoal(goal, gripper=1.0)}

    policy = ScriptedPolicy({"left": arm}, [Phase("move", 20, plan)], sim.object_state)
    policy.reset(start)
    actions = np.array([policy.act(start) for _ in range(25)])
    g = actions[:, arm.gripper_index]
    expected = start[arm.gripper_index] + np.array([min_jerk((k + 1) / 20) for k in range(25)]) * (
        1.0 - start[arm.gripper_index]
    )
    np.testing.assert_allclose(g, expected, atol=1e-12)
    np.testing.assert_allclose(arm.pose(arm.arm_joints(actions[19])).position, goal, atol=2e-4)
    np.testing.assert_array_equal(actions[19], actions[24])  # holds after the last phase
    others = [i for i in range(CONFIG.dof) if i not in (*arm.arm_index, arm.gripper_index)]
    np.testing.assert_array_equal(actions[:, others], np.tile(start[others], (25, 1)))
    assert policy.phase_at(5) == "move" and policy.phase_at(20) == "hold"


def test_policy_rejects_goals_for_unknown_arms(sims):
    sim = sims["transfer_cube"]
    sim.reset(0)
    arm = ArmHandle.from_sim(sim, "left_", (0.0, 0.0, 0.0))
    policy = ScriptedPolicy(
        {"left": arm}, [Phase("bad", 5, lambda ctx: {"third": ArmGoal()})], sim.object_state
    )
    policy.reset(sim.last_command)
    with pytest.raises(KeyError, match="third"):
        policy.act(sim.last_command)
    with pytest.raises(ValueError):
        Phase("empty", 0, lambda ctx: {})


# ----------------------------------------------------------------------------- geometry and noise


def test_min_jerk_profile():
    assert min_jerk(0.0) == 0.0 and min_jerk(1.0) == 1.0 and min_jerk(0.5) == pytest.approx(0.5)
    s = np.array([min_jerk(t) for t in np.linspace(0, 1, 101)])
    assert np.all(np.diff(s) >= 0)
    # zero slope at both ends, peak slope 15/8 in the middle
    assert (min_jerk(1e-4) - min_jerk(0.0)) / 1e-4 < 1e-6
    assert (min_jerk(0.5 + 1e-6) - min_jerk(0.5 - 1e-6)) / 2e-6 == pytest.approx(15 / 8, rel=1e-6)


def test_rotations_and_pose():
    np.testing.assert_allclose(rot_y(0.3) @ rot_y(-0.3), np.eye(3), atol=1e-15)
    np.testing.assert_allclose(rot_x(math.pi / 2) @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(rot_y(math.pi / 2) @ [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], atol=1e-15)
    with pytest.raises(ValueError):
        Pose([0.0, float("nan"), 0.0], np.eye(3))


def test_noise_statistics_match_the_settings():
    dt, tau, x = 0.02, 0.1, 0.02
    settings = NoiseSettings(amplitude=x, time_constant=tau, jump_rate=0.0)
    noise = JerkyOperator(settings, [[0, 1, 2], [4, 5]], 7, dt, np.random.default_rng(0))
    samples = np.array([noise.sample() for _ in range(40000)])
    assert np.all(samples[:, [3, 6]] == 0.0)  # dims outside the groups untouched
    used = samples[:, [0, 1, 2, 4, 5]]
    assert np.std(used, axis=0) == pytest.approx(np.full(5, x), rel=0.1)
    lag1 = np.mean([np.corrcoef(used[:-1, i], used[1:, i])[0, 1] for i in range(used.shape[1])])
    assert lag1 == pytest.approx(math.exp(-dt / tau), abs=0.02)


def test_noise_jumps_and_precision_scaling():
    dt = 0.02
    jumpy = JerkyOperator(
        NoiseSettings(amplitude=0.01, jump_rate=5.0),
        [[0, 1], [2, 3]],
        4,
        dt,
        np.random.default_rng(1),
    )
    for _ in range(1000):
        jumpy.sample()
    # 2 arms x 5 / s x 20 s = 200 expected twitches
    assert 150 < jumpy.jumps < 250
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    settings = NoiseSettings(amplitude=0.01, precision_scale=0.25)
    free = JerkyOperator(settings, [[0, 1]], 2, dt, rng_a)
    steady = JerkyOperator(settings, [[0, 1]], 2, dt, rng_b)
    a = np.array([free.sample(False) for _ in range(500)])
    b = np.array([steady.sample(True) for _ in range(500)])
    np.testing.assert_allclose(b, 0.25 * a, rtol=1e-12, atol=1e-15)


def test_zero_noise_is_exactly_zero_and_draws_nothing():
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    noise = JerkyOperator(NoiseSettings(amplitude=0.0), [[0, 1]], 3, 0.02, rng)
    assert all(np.all(noise.sample() == 0.0) for _ in range(10))
    assert rng.bit_generator.state == state


@pytest.mark.parametrize(
    "kw",
    [
        {"amplitude": -0.1},
        {"amplitude": float("nan")},
        {"time_constant": 0.0},
        {"jump_decay": 0.0},
        {"precision_scale": 1.5},
        {"jump_rate": True},
    ],
)
def test_noise_settings_are_validated(kw):
    with pytest.raises(ValueError):
        NoiseSettings(**kw)
