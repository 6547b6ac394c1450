"""``diffog-ros demos``: real MuJoCo episodes written as real HDF5 files, checked from the files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from diffog_ros.cli import main as dispatcher
from diffog_ros.cli.demos import main
from diffog_ros.data.dataset import episode_attrs, list_episodes, load_episode, open_episode
from diffog_ros.data.validate import validate_dataset
from diffog_ros.robots.config import load_robot_config
from diffog_ros.robots.factory import make_robot
from diffog_ros.trajopt import trajectory_metrics

CONFIG = load_robot_config("aloha_sim.yaml")
FLOAT_KEYS = ("observations/qpos", "observations/qvel", "observations/effort", "action")


def run(*args: str) -> int:
    return main(["--quiet", *args])


def data_of(path) -> dict[str, np.ndarray]:
    return load_episode(path)


@pytest.fixture(scope="module")
def two_episodes(tmp_path_factory):
    """``--episodes 2 --cameras none`` for transfer_cube (shared by several tests)."""
    out = tmp_path_factory.mktemp("demos") / "tc"
    assert (
        run("--task", "transfer_cube", "--episodes", "2", "--out", str(out), "--cameras", "none")
        == 0
    )
    return out


def test_state_only_episodes_pass_validation_with_the_aloha_layout(two_episodes):
    files = list_episodes(two_episodes)
    assert [p.name for p in files] == ["episode_0.hdf5", "episode_1.hdf5"]
    reports = validate_dataset(two_episodes)
    assert all(r.ok for r in reports), [r.defects for r in reports]
    for i, path in enumerate(files):
        with h5py.File(path, "r") as f:
            for key in FLOAT_KEYS:
                assert f[key].dtype == np.float64 and f[key].shape == (400, CONFIG.dof)
            assert f["timestamps"].dtype == np.float64 and f["timestamps"].shape == (400,)
            assert "observations/images" not in f
        attrs = episode_attrs(path)
        assert attrs["sim"] is True
        assert attrs["task"] == "transfer_cube"
        assert attrs["fps"] == pytest.approx(CONFIG.control_rate_hz)
        assert attrs["joint_names"] == list(CONFIG.names)
        assert attrs["camera_names"] == []
        assert attrs["seed"] == i  # default --seed 0, one attempt each (both succeed)
        assert attrs["success"] and attrs["final_reward"] == 4
        assert attrs["status"] == "complete" and not attrs["low_rate"]
        ts = load_episode(path, ["timestamps"])["timestamps"]
        np.testing.assert_allclose(np.diff(ts), 1.0 / CONFIG.control_rate_hz, rtol=1e-9)


def test_recorded_actions_are_exactly_what_the_sim_executed(two_episodes):
    """Replaying /action open-loop from the same seed reproduces /observations/qpos exactly."""
    path = list_episodes(two_episodes)[1]
    ep = data_of(path)
    sim = make_robot("aloha_sim", CONFIG, task="transfer_cube", seed=0)
    sim.connect()
    try:
        sim.reset(int(episode_attrs(path)["seed"]))
        qpos = []
        for action in ep["action"]:
            qpos.append(sim.read_state().position)
            sent = sim.send_command(action)
            np.testing.assert_array_equal(sent, action)  # already inside the limits
        assert sim.is_success()
    finally:
        sim.disconnect()
    np.testing.assert_array_equal(np.array(qpos), ep["observations/qpos"])


def test_same_seed_gives_identical_data(two_episodes, tmp_path):
    out = tmp_path / "again"
    assert (
        run("--task", "transfer_cube", "--episodes", "1", "--out", str(out), "--cameras", "none")
        == 0
    )
    a, b = data_of(list_episodes(two_episodes)[0]), data_of(list_episodes(out)[0])
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_noise_raises_jerk_and_actions_respect_the_safety_limits(two_episodes, tmp_path):
    out = tmp_path / "noisy"
    code = run(
        "--task", "transfer_cube", "--episodes", "1", "--out", str(out), "--cameras", "none",
        "--noise", "0.02", "--keep-failures",
    )  # fmt: skip
    assert code == 0
    noisy = data_of(list_episodes(out)[0])["action"]
    clean = data_of(list_episodes(two_episodes)[0])["action"]
    dt = 1.0 / CONFIG.control_rate_hz
    arm = [i for i, j in enumerate(CONFIG.joints) if j.unit == "rad"]
    m_clean = trajectory_metrics(clean, dt, arm)
    m_noisy = trajectory_metrics(noisy, dt, arm)
    assert m_noisy["acc_std"] > 2 * m_clean["acc_std"]
    assert m_noisy["acc_max"] > 2 * m_clean["acc_max"]
    assert m_noisy["vel_std"] > m_clean["vel_std"]
    for actions in (clean, noisy):
        assert np.all(actions >= CONFIG.lower) and np.all(actions <= CONFIG.upper)
        steps = np.abs(np.diff(np.vstack([CONFIG.start_pose, actions]), axis=0))
        assert np.all(steps <= CONFIG.max_velocity * dt + 1e-12)
    assert episode_attrs(list_episodes(out)[0])["noise_amplitude"] == 0.02


@pytest.mark.parametrize("compress", [False, True])
def test_camera_frames_are_recorded(tmp_path, compress):
    out = tmp_path / "cams"
    args = ["--task", "insertion", "--episodes", "1", "--out", str(out), "--steps", "12"]
    args += ["--image-size", "24x32", "--keep-failures", "--seed", "3"]
    assert run(*args, *(["--compress"] if compress else [])) == 0
    path = list_episodes(out)[0]
    assert all(r.ok for r in validate_dataset(out, decode_images="all"))
    attrs = episode_attrs(path)
    assert attrs["camera_names"] == ["cam_high"] and bool(attrs["compress"]) is compress
    assert not attrs["success"]  # 12 ticks cannot insert anything: kept by --keep-failures
    with open_episode(path) as ep:
        frames = ep.frames("cam_high")
    assert frames.shape == (12, 24, 32, 3) and frames.dtype == np.uint8
    assert frames.std() > 5  # a rendered scene, not a blank image


def test_existing_dataset_is_continued_not_overwritten(tmp_path):
    out = tmp_path / "resume"
    common = ["--task", "transfer_cube", "--out", str(out), "--cameras", "none", "--steps", "5"]
    assert run(*common, "--episodes", "1", "--keep-failures") == 0
    first = (out / "episode_0.hdf5").read_bytes()
    assert run(*common, "--episodes", "2", "--keep-failures", "--seed", "10") == 0
    assert run(*common, "--episodes", "1", "--keep-failures") == 0  # resumes after seed 11
    assert [p.name for p in list_episodes(out)] == [f"episode_{i}.hdf5" for i in range(4)]
    assert (out / "episode_0.hdf5").read_bytes() == first
    assert [episode_attrs(p)["seed"] for p in list_episodes(out)] == [0, 10, 11, 12]


def test_failures_are_not_written_by_default(tmp_path, capsys):
    out = tmp_path / "short"
    args = ["--task", "insertion", "--episodes", "1", "--out", str(out), "--cameras", "none"]
    code = main([*args, "--steps", "5", "--max-attempts", "2"])
    assert code == 1
    assert list_episodes(out) == []
    err = capsys.readouterr()
    assert "failed" in err.out and "only 0 of 1" in err.err


def test_script_file_overrides_the_episode_length(tmp_path):
    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump({"episode_steps": 7, "hover": 0.1}))
    out = tmp_path / "scripted"
    args = ["--task", "transfer_cube", "--episodes", "1", "--out", str(out), "--cameras", "none"]
    assert run(*args, "--script", str(script), "--keep-failures") == 0
    path = list_episodes(out)[0]
    assert load_episode(path, ["action"])["action"].shape == (7, CONFIG.dof)
    assert episode_attrs(path)["metadata"]["script"]["hover"] == 0.1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image-size", "96by128"], "HEIGHTxWIDTH"),
        (["--noise", "-0.1"], "must be finite and >= 0"),
        (["--noise", "nan"], "must be finite and >= 0"),
        (["--cameras", "cam_top"], "unknown camera"),
        (["--cameras", "cam_high,cam_high"], "duplicate camera"),
        (["--episodes", "0"], "must be >= 1"),
        (["--success", "sometimes"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path, capsys, extra, message):
    args = ["--task", "insertion", "--episodes", "1", "--out", str(tmp_path / "x")]
    args = [a for a in args if not (extra[0] == "--episodes" and a in ("--episodes", "1"))]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists() or list_episodes(tmp_path / "x") == []


def test_bad_script_file_exits_2(tmp_path, capsys):
    script = tmp_path / "bad.yaml"
    script.write_text(yaml.safe_dump({"grasp_offsett": [0, 0, 0]}))
    args = ["--task", "transfer_cube", "--episodes", "1", "--out", str(tmp_path / "o")]
    assert main([*args, "--script", str(script)]) == 2
    assert "unknown script parameters" in capsys.readouterr().err
    assert main([*args, "--script", str(tmp_path / "missing.yaml")]) == 2


def test_dispatcher_runs_demos(tmp_path, capsys):
    out = tmp_path / "via_main"
    args = ["demos", "--task", "insertion", "--episodes", "1", "--out", str(out)]
    assert dispatcher.main([*args, "--cameras", "none", "--steps", "4", "--keep-failures"]) == 0
    assert len(list_episodes(out)) == 1
    assert "wrote 1/1 episode(s)" in capsys.readouterr().out
