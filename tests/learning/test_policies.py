"""Inference-side policies: replay and the entry-point group for external policies."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from diffog_ros.learning.policies import (
    ENTRY_POINT_GROUP,
    ReplayPolicy,
    available_policies,
    load_policy,
)

from .synthetic import trajectory, write_episode


def test_replay_plays_the_recorded_actions_by_time(tmp_path):
    path = write_episode(tmp_path / "episode_0.hdf5", length=10)
    actions = trajectory(10, 0.0)[1:]
    p = load_policy("replay", str(path), chunk_length=4)
    assert p.action_names == ["j0", "j1", "grip"] and p.dt == pytest.approx(0.02)
    np.testing.assert_allclose(p.predict({}, 100.0), actions[0:4])  # t0 = first call
    np.testing.assert_allclose(p.predict({}, 100.06), actions[3:7])  # 3 steps later
    np.testing.assert_allclose(p.predict({}, 100.16), actions[[8, 9, 9, 9]])  # padded at the end
    assert p.finished(100.2) and not p.finished(100.1)
    looped = ReplayPolicy(path, chunk_length=3, loop=True)
    looped.predict({}, 0.0)
    np.testing.assert_allclose(looped.predict({}, 0.18), actions[[9, 0, 1]])


def test_replay_checks_names_and_dt(tmp_path):
    path = write_episode(tmp_path / "episode_0.hdf5", length=5)
    with pytest.raises(ValueError, match="differ"):
        ReplayPolicy(path, 4, action_names=["a", "b", "c"])
    assert ReplayPolicy(path, 4, dt=0.1).dt == 0.1


def test_external_policy_from_the_entry_point_group(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    pkg.mkdir()
    (pkg / "my_policy.py").write_text(
        "import numpy as np\n"
        "class Const:\n"
        "    def __init__(self, checkpoint, device, **opts):\n"
        "        self.action_names = ['x', 'y']; self.dt = 0.1; self.n_obs_steps = 1\n"
        "        self.lowdim = {}; self.cameras = []; self.chunk_length = 2; self.checkpoint = checkpoint\n"
        "    def reset(self): pass\n"
        "    def warmup(self): pass\n"
        "    def predict(self, obs, t): return np.ones((2, 2))\n"
    )
    dist = pkg / "my_policy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-policy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nconst = my_policy:Const\n")
    monkeypatch.syspath_prepend(str(pkg))
    assert "const" in available_policies()
    p = load_policy("const", "weights.bin")
    assert p.checkpoint == "weights.bin" and p.predict({}, 0.0).shape == (2, 2)
    with pytest.raises(ValueError, match="unknown policy type 'nope'"):
        load_policy("nope")
    sys.modules.pop("my_policy", None)
