"""Trajectory metrics: DiffOG Appendix VIII-B and LeTO Table II, against hand-computed rollouts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffog_ros.trajopt.metrics import leto_metrics, trajectory_metrics


# ------------------------------------------------------------------------------ DiffOG VIII-B
def test_trajectory_metrics_hand_computed_three_steps():
    # N = 3, dt = 0.5. dim 0: 0, 1, 3; dim 1: 0, -2, -2.
    actions = np.array([[0.0, 0.0], [1.0, -2.0], [3.0, -2.0]])
    m = trajectory_metrics(actions, dt=0.5)
    # velocity dim 0: (1-0)/0.5 = 2, (3-1)/0.5 = 4     -> max |v| 4, std of [2, 4] = 1
    # velocity dim 1: (-2-0)/0.5 = -4, (-2+2)/0.5 = 0  -> max |v| 4, std of [-4, 0] = 2
    # acceleration dim 0: (3 - 2*1 + 0)/0.25 = 4        -> max 4, std 0 (one value)
    # acceleration dim 1: (-2 - 2*(-2) + 0)/0.25 = 8    -> max 8, std 0
    assert m == {
        "vel_max": (4 + 4) / 2,
        "vel_std": (1 + 2) / 2,
        "acc_max": (4 + 8) / 2,
        "acc_std": 0.0,
    }
    assert all(type(v) is float for v in m.values())


def test_trajectory_metrics_hand_computed_four_steps_with_dim_selection():
    # N = 4, dt = 0.5; dim 1 (a gripper, wild) is excluded with dims=[0, 2].
    actions = np.array(
        [
            [0.0, 10.0, 0.0],
            [1.0, -50.0, 0.0],
            [3.0, 70.0, 0.0],
            [3.0, 0.0, 1.0],
        ]
    )
    m = trajectory_metrics(actions, dt=0.5, dims=[0, 2])
    # dim 0: diffs 1, 2, 0 -> v = 2, 4, 0: max 4; mean 2, var (0 + 4 + 4)/3 = 8/3
    #        second diffs 1, -2 -> a = 4, -8: max 8; std |4 - (-8)|/2 = 6
    # dim 2: diffs 0, 0, 1 -> v = 0, 0, 2: max 2; mean 2/3, var (4/9 + 4/9 + 16/9)/3 = 8/9
    #        second diffs 0, 1 -> a = 0, 4: max 4; std 2
    assert m["vel_max"] == pytest.approx((4 + 2) / 2, rel=1e-15)
    assert m["vel_std"] == pytest.approx((math.sqrt(8 / 3) + math.sqrt(8 / 9)) / 2, rel=1e-14)
    assert m["acc_max"] == pytest.approx((8 + 4) / 2, rel=1e-15)
    assert m["acc_std"] == pytest.approx((6 + 2) / 2, rel=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_trajectory_metrics_scale_with_dt(seed):
    rng = np.random.default_rng(seed)
    actions = np.cumsum(rng.normal(size=(40, 6)), axis=0)
    m1 = trajectory_metrics(actions, dt=1.0)
    for dt in (0.02, 0.25, 4.0):
        m = trajectory_metrics(actions, dt=dt)
        for key in ("vel_max", "vel_std"):
            assert m[key] == pytest.approx(m1[key] / dt, rel=1e-12)
        for key in ("acc_max", "acc_std"):
            assert m[key] == pytest.approx(m1[key] / dt**2, rel=1e-12)
    # metrics of a constant-velocity ramp: velocity std and acceleration are zero
    ramp = np.outer(np.arange(10.0), [1.0, -2.0])
    r = trajectory_metrics(ramp, dt=0.5)
    assert r["vel_max"] == pytest.approx((2 + 4) / 2)
    assert r["vel_std"] == pytest.approx(0.0, abs=1e-12)
    assert r["acc_max"] == pytest.approx(0.0, abs=1e-12)


def test_trajectory_metrics_accept_torch_and_sequences():
    torch = pytest.importorskip("torch")
    rows = [[0.0, 0.0], [1.0, -2.0], [3.0, -2.0]]
    want = trajectory_metrics(np.array(rows), 0.5)
    assert trajectory_metrics(rows, 0.5) == want
    assert trajectory_metrics(torch.tensor(rows, dtype=torch.float32), 0.5) == want


# ------------------------------------------------------------------------------ LeTO Table II
def test_leto_metrics_hand_computed():
    # N = 3; lin dims 0, 1; rot dims 2, 3; dim 4 (gripper) excluded.
    actions = np.array(
        [
            [0.0, 0.0, 1.0, 0.0, 0.0],
            [1.0, -2.0, 1.5, -0.5, 100.0],
            [4.0, -2.0, 1.5, 0.5, -100.0],
        ]
    )
    m = leto_metrics(actions, lin_dims=[0, 1], rot_dims=[2, 3])
    # dim 0: diffs 1, 3       -> mean|.| 2,    max 3,   std |1 - 3|/2 = 1
    # dim 1: diffs -2, 0      -> mean|.| 1,    max 2,   std 1
    # dim 2: diffs 0.5, 0     -> mean|.| 0.25, max 0.5, std 0.25
    # dim 3: diffs -0.5, 1.0  -> mean|.| 0.75, max 1,   std 0.75
    assert m == {
        "avg_mean_lin": (2 + 1) / 2,
        "avg_max_lin": (3 + 2) / 2,
        "avg_std_lin": (1 + 1) / 2,
        "avg_mean_rot": (0.25 + 0.75) / 2,
        "avg_max_rot": (0.5 + 1) / 2,
        "avg_std_rot": (0.25 + 0.75) / 2,
    }
    assert all(type(v) is float for v in m.values())


def test_leto_metrics_std_is_of_the_signed_difference():
    # alternating +-1 differences: mean |diff| = 1, max 1, but std of the signed diff is 1 (not 0)
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.0])
    actions = np.stack([x, 2 * x], axis=1)
    m = leto_metrics(actions, lin_dims=[0], rot_dims=[1])
    assert (m["avg_mean_lin"], m["avg_max_lin"], m["avg_std_lin"]) == (1.0, 1.0, 1.0)
    assert (m["avg_mean_rot"], m["avg_max_rot"], m["avg_std_rot"]) == (2.0, 2.0, 2.0)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"actions": np.zeros((2, 3)), "dt": 0.1}, "actions must hold at least 3"),
        ({"actions": np.zeros(5), "dt": 0.1}, "actions must have shape"),
        ({"actions": np.zeros((5, 0)), "dt": 0.1}, "actions must have shape"),
        ({"actions": np.array([[0.0], [np.nan], [1.0]]), "dt": 0.1}, "actions must be finite"),
        ({"actions": [["a"], ["b"], ["c"]], "dt": 0.1}, "actions must be"),
        ({"actions": np.zeros((5, 2)), "dt": 0.0}, "dt must be"),
        ({"actions": np.zeros((5, 2)), "dt": -1.0}, "dt must be"),
        ({"actions": np.zeros((5, 2)), "dt": float("inf")}, "dt must be"),
        ({"actions": np.zeros((5, 2)), "dt": "x"}, "dt must be"),
        ({"actions": np.zeros((5, 2)), "dt": 0.1, "dims": [2]}, "dims must be indices"),
        ({"actions": np.zeros((5, 2)), "dt": 0.1, "dims": []}, "dims must not be empty"),
        ({"actions": np.zeros((5, 2)), "dt": 0.1, "dims": [0, 0]}, "dims must not repeat"),
        ({"actions": np.zeros((5, 2)), "dt": 0.1, "dims": [0.5]}, "dims must hold integer"),
        ({"actions": np.zeros((5, 2)), "dt": 0.1, "dims": 1}, "dims must be a sequence"),
    ],
)
def test_trajectory_metrics_bad_input(kwargs, word):
    with pytest.raises(ValueError, match=word):
        trajectory_metrics(**kwargs)


@pytest.mark.parametrize(
    ("actions", "lin", "rot", "word"),
    [
        (np.zeros((1, 4)), [0], [1], "actions must hold at least 2"),
        (np.full((3, 4), np.inf), [0], [1], "actions must be finite"),
        (np.zeros((3, 4)), [], [1], "lin_dims must not be empty"),
        (np.zeros((3, 4)), [0], [4], "rot_dims must be indices"),
        (np.zeros((3, 4)), [0, 1], [1, 2], "must be disjoint"),
    ],
)
def test_leto_metrics_bad_input(actions, lin, rot, word):
    with pytest.raises(ValueError, match=word):
        leto_metrics(actions, lin, rot)
