"""Two machines on one: trajopt_node in one network namespace, its peer in another, over DDS.

The namespaces are joined by a veth pair (addresses only inside namespaces this test creates) with a
multicast route each, so Fast DDS discovery crosses them exactly as between a GPU host and a robot
PC on a LAN (docs/two_hosts.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from support.procs import node_command

from diffog_ros.paths import config_path

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to create network namespaces",
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def two_hosts():
    tag = uuid.uuid4().hex[:6]
    hosts = (f"dgpu{tag}", f"drob{tag}")
    veth = (f"vg{tag}", f"vr{tag}")
    addrs = ("10.231.7.1/24", "10.231.7.2/24")
    try:
        for h in hosts:
            _ip("netns", "add", h)
        _ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for h, v, a in zip(hosts, veth, addrs, strict=True):
            _ip("link", "set", v, "netns", h)
            _ip("-n", h, "addr", "add", a, "dev", v)
            _ip("-n", h, "link", "set", v, "up", "multicast", "on")
            _ip("-n", h, "link", "set", "lo", "up")
            _ip("-n", h, "route", "add", "224.0.0.0/4", "dev", v)
        yield hosts
    finally:
        for h in hosts:
            subprocess.run(["ip", "netns", "del", h], capture_output=True)


def test_trajopt_node_and_its_peer_on_two_hosts(two_hosts, tmp_path):
    gpu, robot = two_hosts
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET")
    env.pop("ROS_LOCALHOST_ONLY", None)
    cmd = [
        *node_command("trajopt_node", name="trajopt"),
        "--params-file",
        str(config_path("trajopt_aloha")),
    ]
    log = open(tmp_path / "trajopt.log", "wb")  # noqa: SIM115
    node = subprocess.Popen(
        ["ip", "netns", "exec", gpu, *cmd], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        peer = subprocess.run(
            ["ip", "netns", "exec", robot, sys.executable, str(HERE / "two_host_peer.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        node.terminate()
        node.wait(timeout=20)
        log.close()
    assert peer.returncode == 0, peer.stdout + peer.stderr + (tmp_path / "trajopt.log").read_text()
    data = json.loads(peer.stdout.strip().splitlines()[-1])
    out = np.array(data["optimised"])
    steps = np.abs(np.diff(out, axis=0))
    joints = [i for i in range(out.shape[1]) if i % 7 != 6]
    assert steps[:, joints].max() <= 0.0628 + 1e-9  # the bounds held across the hosts
    assert not np.allclose(out, np.array(data["raw"]))  # it was optimised, not echoed
