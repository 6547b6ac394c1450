"""Per-dim min-max normaliser and the explicit bound conversion between scales (DiffOG Table VII)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffog_ros.learning.normalizer import MinMaxNormalizer
from diffog_ros.trajopt import TrajOptSpec, solve_qp


def norm() -> MinMaxNormalizer:
    # dims: range 4 (scale 0.5), range 2 (scale 1), constant (scale 1, maps to 0)
    return MinMaxNormalizer([0.0, -1.0, 3.0], [4.0, 1.0, 3.0], names=["a", "b", "g"])


def test_extremes_map_to_plus_minus_one_and_round_trip():
    n = norm()
    x = np.array([[0.0, -1.0, 3.0], [4.0, 1.0, 3.0], [1.0, 0.5, 3.0]])
    y = n.normalize(x)
    np.testing.assert_allclose(y[0], [-1.0, -1.0, 0.0])
    np.testing.assert_allclose(y[1], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(y[2], [-0.5, 0.5, 0.0])
    np.testing.assert_allclose(n.unnormalize(y), x)
    t = torch.tensor(x, dtype=torch.float32)
    assert n.normalize(t).dtype == torch.float32
    torch.testing.assert_close(n.unnormalize(n.normalize(t)), t)


def test_fit_uses_per_dim_min_max_over_all_arrays():
    n = MinMaxNormalizer.fit([np.array([[0.0, 5.0], [2.0, 5.0]]), np.array([[-2.0, 5.0]])])
    np.testing.assert_allclose(n.minimum, [-2.0, 5.0])
    np.testing.assert_allclose(n.maximum, [2.0, 5.0])
    with pytest.raises(ValueError, match="non-finite"):
        MinMaxNormalizer.fit(np.array([[np.nan, 1.0]]))


def test_delta_bounds_scale_by_two_over_range_per_dim():
    n = norm()
    # physical bound 0.2 on dims a (range 4) and b (range 2): 0.2 * 2/4 = 0.1 and 0.2 * 2/2 = 0.2
    np.testing.assert_allclose(n.delta_to_normalized(0.2, [0, 1]), [0.1, 0.2])
    np.testing.assert_allclose(n.delta_to_physical([0.1, 0.2], [0, 1]), [0.2, 0.2])
    # value bounds are affine: 3.0 on dim a -> (3 - 2) * 0.5 = 0.5
    np.testing.assert_allclose(n.value_to_normalized(3.0, [0]), [0.5])
    np.testing.assert_allclose(n.value_to_physical([0.5], [0]), [3.0])


def test_spec_round_trip_between_scales():
    n = norm()
    spec = TrajOptSpec(
        horizon=5,
        action_dim=3,
        continuous_dims=[0, 1],
        max_delta=(0.2, 0.3),
        min_delta=(-0.1, -0.3),
        smooth_weight=2.0,
        min_value=(0.5, -0.8),
        max_value=(3.5, 0.9),
    )
    ns = n.spec_to_normalized(spec)
    np.testing.assert_allclose(ns.hi_delta, [0.1, 0.3])
    np.testing.assert_allclose(ns.lo_delta, [-0.05, -0.3])
    np.testing.assert_allclose(ns.lo_value, [-0.75, -0.8])
    np.testing.assert_allclose(ns.hi_value, [0.75, 0.9])
    assert ns.smooth_weight == 2.0
    back = n.spec_to_physical(ns)
    for attr in ("hi_delta", "lo_delta", "lo_value", "hi_value"):
        np.testing.assert_allclose(getattr(back, attr), getattr(spec, attr))


def test_open_value_side_stays_open():
    spec = TrajOptSpec(
        horizon=3, action_dim=3, continuous_dims=[0, 1], max_delta=0.2, max_value=(3.0, 0.5)
    )
    ns = norm().spec_to_normalized(spec)
    assert np.all(np.isinf(ns.lo_value)) and np.all(ns.lo_value < 0)
    np.testing.assert_allclose(ns.hi_value, [0.5, 0.5])


def test_position_bounds_are_refused():
    spec = TrajOptSpec(
        horizon=3, action_dim=3, continuous_dims=[0], max_delta=0.1, position_max=1.0
    )
    with pytest.raises(ValueError, match="position bounds"):
        norm().spec_to_normalized(spec)


def test_qp_on_normalised_scale_meets_physical_bounds():
    """Solving with converted bounds and un-normalising gives a chunk within the physical bounds."""
    n = norm()
    phys = TrajOptSpec(
        horizon=6, action_dim=3, continuous_dims=[0, 1], max_delta=(0.2, 0.3), smooth_weight=1.0
    )
    rng = np.random.default_rng(0)
    a = np.cumsum(rng.normal(0, 0.6, (4, 6, 3)), axis=1)
    a_n = torch.as_tensor(n.normalize(a)).reshape(4, -1)
    y_n = solve_qp(torch.eye(18, dtype=torch.float64), -a_n, n.spec_to_normalized(phys))
    y = n.unnormalize(y_n.reshape(4, 6, 3).numpy())
    d = np.diff(y[:, :, :2], axis=1)
    assert np.all(np.abs(d) <= np.array([0.2, 0.3]) + 1e-9)
    assert np.isclose(np.abs(d).max(axis=(0, 1)), [0.2, 0.3], atol=1e-9).all()  # bounds active


def test_dict_round_trip_and_bad_records():
    n = norm()
    m = MinMaxNormalizer.from_dict(n.to_dict())
    np.testing.assert_array_equal(m.scale, n.scale)
    np.testing.assert_array_equal(m.center, n.center)
    assert m.names == ["a", "b", "g"]
    with pytest.raises(ValueError):
        MinMaxNormalizer.from_dict({"type": "zscore"})
    with pytest.raises(ValueError, match="missing"):
        MinMaxNormalizer.from_dict({"type": "minmax", "min": [0.0]})
    with pytest.raises(ValueError, match=">= minimum"):
        MinMaxNormalizer([1.0], [0.0])
    with pytest.raises(ValueError, match="last dim"):
        n.normalize(np.zeros((2, 4)))
