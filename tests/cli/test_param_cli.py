"""``diffog-ros param list|get|set`` against a real trajopt_node process: output and exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import rclpy
from nodes.trajopt_peer import Peer, write_params
from support.procs import BIN, node_command, running

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "diffog-ros"), "param", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def trajopt(tmp_path_factory):
    """A trajopt_node in namespace /cli (from the shipped ALOHA params file) and a Peer of it."""
    tmp = tmp_path_factory.mktemp("param_cli")
    params = write_params(tmp / "params.yaml", node_name="/cli/trajopt")
    cmd = node_command("trajopt_node", namespace="/cli") + ["--params-file", str(params)]
    rclpy.init()
    with running(cmd, log=tmp / "node.log") as proc:
        peer = Peer(target="/cli/trajopt", name="param_cli_peer")
        try:
            peer.params.wait_for_services(timeout_sec=30)
            peer.proc = proc
            yield peer
        finally:
            peer.close()
            rclpy.try_shutdown()
            # SIGTERM (what a process manager sends) must also shut the node down cleanly.
            os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            code = proc.poll()
    assert code == 0, f"trajopt_node exited with {code} on SIGTERM"


def test_list_prints_the_declared_parameters(trajopt):
    r = cli("list", "/cli/trajopt")
    assert r.returncode == 0, r.stderr
    names = r.stdout.split()
    for n in ("method", "joint_names", "max_delta", "min_delta", "dt", "backend", "model_path"):
        assert n in names
    assert names == sorted(names)


def test_get_prints_yaml_values(trajopt):
    r = cli("get", "/cli/trajopt", "max_delta")
    assert (r.returncode, r.stdout.strip()) == (0, "[0.0628]"), r.stderr
    r = cli("get", "/cli/trajopt", "method")
    assert (r.returncode, r.stdout.strip()) == (0, "static")
    r = cli("get", "/cli/trajopt", "use_continuity")
    assert (r.returncode, r.stdout.strip()) == (0, "true")


def test_set_accepted_is_exit_0_and_visible(trajopt):
    r = cli("set", "/cli/trajopt", "max_delta", "0.05")  # scalar -> one-element double array
    assert r.returncode == 0, r.stderr
    assert trajopt.get_params("max_delta") == {"max_delta": [0.05]}
    r = cli("set", "/cli/trajopt", "dt", "1")  # int -> double
    assert r.returncode == 0, r.stderr
    assert trajopt.get_params("dt") == {"dt": 1.0}
    assert cli("get", "/cli/trajopt", "dt").stdout.strip() == "1.0"


@pytest.mark.parametrize(
    ("name", "value", "word"),
    [
        ("max_delta", "[-0.1]", "max_delta must be > 0"),
        ("max_delta", "[0.1, 0.2]", "one per constrained joint"),
        ("method", "magic", "method must be one of"),
        ("queue_depth", "3", "read-only"),
        ("smooth_weight", "high", "type"),
    ],
)
def test_refused_set_is_exit_1_with_the_reason(trajopt, name, value, word):
    before = trajopt.get_params(name)  # read through the test's own parameter client
    r = cli("set", "/cli/trajopt", name, value)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert word in r.stderr
    assert trajopt.get_params(name) == before


def test_several_pairs_are_set_atomically(trajopt):
    # Fewer constrained joints with one bound each: only valid together.
    joints = "[left_waist, right_waist]"
    r = cli("set", "/cli/trajopt", "max_delta", "[0.01, 0.02]")
    assert r.returncode == 1  # alone it does not fit the 12 constrained joints
    r = cli(
        "set",
        "/cli/trajopt",
        "constrained_joints",
        joints,
        "max_delta",
        "[0.01, 0.02]",
        "smooth_weight",
        "-1.0",
    )
    assert r.returncode == 1 and "smooth_weight" in r.stderr  # one bad value: nothing changes
    assert trajopt.get_params("constrained_joints")["constrained_joints"] != [
        "left_waist",
        "right_waist",
    ]
    r = cli("set", "/cli/trajopt", "constrained_joints", joints, "max_delta", "[0.01, 0.02]")
    assert r.returncode == 0, r.stderr
    assert trajopt.get_params("constrained_joints", "max_delta") == {
        "constrained_joints": ["left_waist", "right_waist"],
        "max_delta": [0.01, 0.02],
    }


def test_unknown_parameter_is_exit_1(trajopt):
    r = cli("get", "/cli/trajopt", "no_such_parameter")
    assert r.returncode == 1 and "not declared" in r.stderr


def test_missing_node_is_exit_3():
    r = cli("--timeout", "1", "get", "/nobody/here", "x")
    assert r.returncode == 3 and "not found" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("frobnicate", "x"),
        ("get", "/cli/trajopt"),
        ("set", "/cli/trajopt", "dt"),
        ("--timeout", "0", "list", "x"),
    ],
)
def test_usage_errors_are_exit_2(args):
    r = cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert (
        "usage" in r.stderr.lower()
        or "expected NODE NAME VALUE" in r.stderr
        or "--timeout" in r.stderr
    )
