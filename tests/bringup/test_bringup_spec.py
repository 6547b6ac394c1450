"""Bringup definitions: argument typing, resolution, argv, and one-to-one launch files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffog_ros.bringup.graphs import BRINGUPS
from diffog_ros.bringup.spec import Arg, Bringup, NodeLaunch, parse_overrides, resolve, ros_args

ROOT = Path(__file__).resolve().parents[2]

TOY = Bringup(
    "toy",
    "a test graph",
    args=(
        Arg("rate", 50.0, "Hz"),
        Arg("record", True, "rec"),
        Arg("names", ["a"], "names"),
        Arg("mode", "x", "m", ("x", "y")),
        Arg("n", 3, "count"),
    ),
    nodes=(
        NodeLaunch(
            "controller_node",
            "ctl",
            params_files=("c.yaml",),
            parameters={"control_rate_hz": "$(arg rate)", "fixed": "lit", "names": "$(arg names)"},
            remaps={"joint_states": "/robot/joint_states"},
            namespace="ns",
        ),
        NodeLaunch("recorder_node", "rec", parameters={"n": "$(arg n)"}, condition="record"),
    ),
)


def test_overrides_are_typed_like_defaults():
    values = parse_overrides(TOY, ["rate:=25", "record:=false", "names:=[p, q]", "mode:=y", "n:=7"])
    assert values == {"rate": 25.0, "record": False, "names": ["p", "q"], "mode": "y", "n": 7}
    assert parse_overrides(TOY, []) == {
        "rate": 50.0,
        "record": True,
        "names": ["a"],
        "mode": "x",
        "n": 3,
    }


@pytest.mark.parametrize(
    "item,match",
    [
        ("rate:=fast", "rate"),
        ("record:=maybe", "record"),
        ("mode:=z", "mode"),
        ("n:=1.5", "n"),
        ("nope:=1", "no argument 'nope'"),
        ("rate=3", "name:=value"),
    ],
)
def test_bad_overrides_are_refused_with_the_argument_name(item, match):
    with pytest.raises(ValueError, match=match):
        parse_overrides(TOY, [item])


def test_resolve_substitutes_and_applies_conditions():
    nodes = resolve(TOY, parse_overrides(TOY, ["rate:=20", "record:=false"]))
    assert [n.name for n in nodes] == ["ctl"]
    assert nodes[0].parameters == {"control_rate_hz": 20.0, "fixed": "lit", "names": ["a"]}
    nodes = resolve(TOY, parse_overrides(TOY, []))
    assert [n.name for n in nodes] == ["ctl", "rec"] and nodes[1].parameters == {"n": 3}


def test_ros_args_form():
    node = resolve(TOY, parse_overrides(TOY, ["names:=p,q"]))[0]
    argv = ros_args(node, "/cfg")
    assert argv == [
        "--ros-args",
        "-r",
        "__node:=ctl",
        "-r",
        "__ns:=ns",
        "-r",
        "joint_states:=/robot/joint_states",
        "--params-file",
        "/cfg/c.yaml",
        "-p",
        "control_rate_hz:=50.0",
        "-p",
        "fixed:=lit",
        "-p",
        "names:=[p,q]",
    ]


def test_every_bringup_has_a_launch_file_and_back():
    launch_files = {
        p.name.removesuffix(".launch.py"): p for p in (ROOT / "launch").glob("*.launch.py")
    }
    assert set(launch_files) == set(BRINGUPS)
    for name, path in launch_files.items():
        tree = ast.parse(path.read_text())
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
            and getattr(n.func, "id", "") == "generate_launch_description_for"
        ]
        assert [c.args[0].value for c in calls] == [name]


def test_bringups_reference_existing_params_files_and_declared_args():
    for bringup in BRINGUPS.values():
        names = {a.name for a in bringup.args}
        for node in bringup.nodes:
            for fname in node.params_files:
                path = ROOT / "config" / fname
                assert path.is_file(), f"{bringup.name}: {fname} missing in config/"
                data = yaml.safe_load(path.read_text())
                assert any("ros__parameters" in v for v in data.values()), (
                    f"{fname} is not a ROS params file"
                )
            if node.condition:
                assert node.condition in names
            for value in [*node.parameters.values(), *node.remaps.values(), node.namespace]:
                if isinstance(value, str) and value.startswith("$(arg "):
                    assert value[6:-1] in names, f"{bringup.name}: {value} is not declared"
        for arg in bringup.args:
            assert arg.description, f"{bringup.name}: argument {arg.name} needs a description"


def test_up_dry_run_prints_one_command_per_node():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffog_ros.cli.main",
            "up",
            "sim_rollout",
            "--dry-run",
            "method:=static",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.strip().splitlines()
    assert len(lines) == len(
        resolve(BRINGUPS["sim_rollout"], parse_overrides(BRINGUPS["sim_rollout"], []))
    )
    assert any("trajopt_node" in ln and "method:=static" in ln for ln in lines)


def test_up_refuses_unknown_argument():
    proc = subprocess.run(
        [sys.executable, "-m", "diffog_ros.cli.main", "up", "sim_rollout", "bogus:=1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "bogus" in proc.stderr
