"""Robot configs: the shipped files load, and mistakes are refused with the file and key named."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from diffog_ros.paths import config_path
from diffog_ros.robots.config import RobotConfigError, load_robot_config, robot_config_from_dict
from diffog_ros.robots.factory import load_backend_config

# vx300s URDF limits (hardware-facts.md), per arm joint, in degrees where the facts give degrees
URDF_DEG = {"shoulder": (-106, 72), "elbow": (-101, 92), "wrist_angle": (-107, 128)}
URDF_PI = ("waist", "forearm_roll", "wrist_rotate")


@pytest.mark.parametrize("name", ["aloha_sim.yaml", "aloha.yaml", "single_arm.yaml"])
def test_shipped_configs_hold_the_vx300s_urdf_limits(name):
    cfg = load_robot_config(name)
    for j in cfg.joints:
        base = j.name.split("_", 1)[1] if j.name.startswith(("left_", "right_")) else j.name
        if base in URDF_DEG:
            lo, hi = URDF_DEG[base]
            assert j.lower == pytest.approx(math.radians(lo), abs=1e-7)
            assert j.upper == pytest.approx(math.radians(hi), abs=1e-7)
        elif base in URDF_PI:
            assert j.lower == pytest.approx(-(math.pi - 1e-5), abs=1e-7)
            assert j.upper == pytest.approx(math.pi - 1e-5, abs=1e-7)
        else:
            assert base == "gripper" and (j.lower, j.upper) == (0.0, 1.0)
        if j.unit == "rad":
            assert j.max_velocity == pytest.approx(math.pi, abs=1e-7)
    sleep = np.array([0, -1.85, 1.55, 0, 0.8, 0])
    arm = [i for i, j in enumerate(cfg.joints) if j.unit == "rad"]
    np.testing.assert_allclose(
        cfg.sleep_pose[arm].reshape(-1, 6), np.tile(sleep, (len(arm) // 6, 1))
    )


def test_aloha_configs_use_the_shared_action_names():
    names = [
        f"{side}_{j}"
        for side in ("left", "right")
        for j in (
            "waist",
            "shoulder",
            "elbow",
            "forearm_roll",
            "wrist_angle",
            "wrist_rotate",
            "gripper",
        )
    ]
    assert list(load_robot_config("aloha_sim.yaml").names) == names
    assert list(load_robot_config("aloha.yaml").names) == names


def _raw(name="aloha_sim.yaml") -> dict:
    return yaml.safe_load(config_path(name).read_text())


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r: r.pop("joints"), "joints"),
        (lambda r: r["joints"][2].update(lower=2.0), r"joints\[2\]"),
        (lambda r: r["joints"][3].update(max_velocity=-1.0), "max_velocity"),
        (lambda r: r["joints"][0].update(unit="deg"), "unit"),
        (lambda r: r["joints"].append(dict(r["joints"][0])), "duplicate"),
        (lambda r: r.update(start_pose=r["start_pose"][:-1]), "start_pose"),
        (lambda r: r["sleep_pose"].__setitem__(1, 5.0), "sleep_pose"),
        (lambda r: r["start_pose"].__setitem__(0, float("nan")), "finite"),
        (lambda r: r.update(kind="hexapod"), "kind"),
        (lambda r: r.update(control_rate_hz=0), "control_rate_hz"),
        (lambda r: r.update(safe_motion={"velocity_fraction": 2.0}), "velocity_fraction"),
    ],
)
def test_invalid_configs_are_refused_naming_the_key(mutate, match):
    raw = _raw()
    mutate(raw)
    with pytest.raises(RobotConfigError, match=match) as err:
        robot_config_from_dict(raw, source="broken.yaml")
    assert "broken.yaml" in str(err.value)


def test_missing_file_and_wrong_kind_for_backend(tmp_path):
    with pytest.raises(RobotConfigError, match="not found"):
        load_robot_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(RobotConfigError, match="invalid YAML"):
        load_robot_config(bad)
    with pytest.raises(RobotConfigError, match="kind"):
        load_backend_config("aloha_sim", "single_arm.yaml")
