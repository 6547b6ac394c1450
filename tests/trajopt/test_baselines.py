"""DiffOG Sec. VI baselines: greedy clipping and penalty-based trajectory optimisation.

Hand-computed cases use binary-exact numbers (halves, quarters, eighths) so the expected values are
written out with their arithmetic and compared exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffog_ros.trajopt.baselines import clip_chunk, penalty_chunk, penalty_chunk_info
from diffog_ros.trajopt.spec import TrajOptSpec


# ------------------------------------------------------------------------------ independent checks
def _all_diffs(out: np.ndarray, prev: np.ndarray | None, dims: list[int]) -> np.ndarray:
    """[B, T or T-1, C] differences of the continuous dims, including prev -> step 0 if given."""
    c = out[:, :, dims]
    if prev is not None:
        c = np.concatenate([prev[:, None, dims], c], axis=1)
    return np.diff(c, axis=1)


def _penalty_value(out: np.ndarray, prev: np.ndarray | None, spec: TrajOptSpec) -> float:
    """1/2 * (||v_max||^2 + ||v_min||^2) summed over the batch."""
    d = _all_diffs(out, prev, list(spec.continuous_dims))
    v_max = np.maximum(0.0, d - spec.hi_delta)
    v_min = np.maximum(0.0, spec.lo_delta - d)
    return 0.5 * float((v_max**2).sum() + (v_min**2).sum())


def _random_case(seed: int, positive_lo: bool = False):
    """A random spec (asymmetric per-dim bounds), chunk with big jumps, prev far from a_0."""
    rng = np.random.default_rng(seed)
    T = int(rng.integers(2, 17))
    D = int(rng.integers(2, 8))
    n_cont = int(rng.integers(1, D + 1))
    dims = sorted(rng.choice(D, size=n_cont, replace=False).tolist())
    if positive_lo:  # both bounds positive: every step must move up by at least lo
        lo = rng.uniform(0.01, 0.2, n_cont)
        hi = lo + rng.uniform(0.01, 0.3, n_cont)
    else:
        lo = -rng.uniform(0.005, 0.5, n_cont)
        hi = rng.uniform(0.005, 0.5, n_cont)
    spec = TrajOptSpec(horizon=T, action_dim=D, continuous_dims=dims, max_delta=hi, min_delta=lo)
    B = int(rng.integers(1, 6))
    scale = 10.0 ** rng.uniform(-1, 2)  # values from ~0.1 to ~100: exercises float rounding
    steps = rng.normal(0.0, 0.4, (B, T, D)) + rng.choice(
        [0.0, 3.0, -3.0], (B, T, D), p=[0.7, 0.15, 0.15]
    )
    a = scale * rng.uniform(-1, 1, (B, 1, D)) + np.cumsum(steps, axis=1)
    prev = a[:, 0] + rng.normal(0.0, 2.0, (B, D))
    return spec, a, prev


# ------------------------------------------------------------------------------ clipping: by hand
def test_clip_hand_computed_with_prev_and_asymmetric_bounds():
    # D = 2: dim 0 continuous with d_min*dt = -0.25, d_max*dt = 0.5; dim 1 is a gripper.
    spec = TrajOptSpec(horizon=4, action_dim=2, continuous_dims=[0], max_delta=0.5, min_delta=-0.25)
    a = np.array([[[1.0, 0.3], [1.0, 0.7], [-1.0, 0.1], [-1.0, 0.9]]])
    prev = np.array([[0.0, 9.0]])
    out = clip_chunk(a, spec, prev)
    # k=0: delta = 1.0 - 0.0   =  1.0  -> clip  0.5  -> 0.0 + 0.5    = 0.5
    # k=1: delta = 1.0 - 0.5   =  0.5  -> inside     -> 1.0 (kept)
    # k=2: delta = -1.0 - 1.0  = -2.0  -> clip -0.25 -> 1.0 - 0.25   = 0.75
    # k=3: delta = -1.0 - 0.75 = -1.75 -> clip -0.25 -> 0.75 - 0.25  = 0.5
    np.testing.assert_array_equal(out[0, :, 0], [0.5, 1.0, 0.75, 0.5])
    np.testing.assert_array_equal(out[0, :, 1], [0.3, 0.7, 0.1, 0.9])  # gripper untouched
    assert out.shape == a.shape and out.dtype == a.dtype


def test_clip_hand_computed_without_prev_keeps_first_step():
    spec = TrajOptSpec(horizon=4, action_dim=1, continuous_dims=[0], max_delta=0.5)
    a = np.array([[2.0, 0.0, 0.25, 3.0]])  # [B, n] form, n = T*D = 4
    out = clip_chunk(a, spec)
    # k=0: kept as is                      = 2.0
    # k=1: delta = 0.0 - 2.0  = -2.0  -> -0.5 -> 1.5
    # k=2: delta = 0.25 - 1.5 = -1.25 -> -0.5 -> 1.0
    # k=3: delta = 3.0 - 1.0  =  2.0  ->  0.5 -> 1.5
    np.testing.assert_array_equal(out, [[2.0, 1.5, 1.0, 1.5]])


def test_clip_hand_computed_per_dim_bounds_and_flat_layout():
    # D = 3, continuous dims 0 and 2 with bounds +-0.5 and +-1.0; dim 1 free. Flat time-major [B, 6].
    spec = TrajOptSpec(horizon=2, action_dim=3, continuous_dims=[2, 0], max_delta=[0.5, 1.0])
    a = np.array([[4.0, 5.0, -4.0, 4.0, -5.0, 4.0]])  # a_0 = (4, 5, -4), a_1 = (4, -5, 4)
    prev = np.array([[3.0, 0.0, -3.5]])
    out = clip_chunk(a, spec, prev)
    # dim 0: k=0 4 - 3 = 1 -> 0.5 -> 3.5;         k=1 4 - 3.5 = 0.5 -> inside -> 4.0
    # dim 2: k=0 -4 - (-3.5) = -0.5 -> inside -> -4.0;  k=1 4 - (-4) = 8 -> 1.0 -> -3.0
    # dim 1: free -> 5, -5
    np.testing.assert_array_equal(out, [[3.5, 5.0, -4.0, 4.0, -5.0, -3.0]])


# ------------------------------------------------------------------------------ clipping: properties
@pytest.mark.parametrize("seed", range(60))
def test_clip_satisfies_every_bound_exactly_and_is_greedy(seed):
    spec, a, prev = _random_case(seed, positive_lo=seed % 5 == 4)
    dims = list(spec.continuous_dims)
    lo, hi = spec.lo_delta, spec.hi_delta
    for anchor in (prev, None):
        out = clip_chunk(a, spec, anchor)
        d = _all_diffs(out, anchor, dims)
        assert np.all(d <= hi) and np.all(d >= lo)  # exact in float64, no tolerance
        free = [j for j in range(spec.action_dim) if j not in dims]
        np.testing.assert_array_equal(out[:, :, free], a[:, :, free])  # grippers pass through
        if anchor is None:
            np.testing.assert_array_equal(out[:, 0], a[:, 0])
        # Greedy characterisation (Sec. VI-A): each step is the point of
        # [out_{k-1} + lo, out_{k-1} + hi] nearest to the raw step.
        c = a[:, :, dims]
        full = (
            out[:, :, dims]
            if anchor is None
            else np.concatenate([prev[:, None, dims], out[:, :, dims]], 1)
        )
        raw = c[:, 1:] if anchor is None else c
        base = full[:, :-1]
        want = np.minimum(np.maximum(raw, base + lo), base + hi)
        np.testing.assert_allclose(full[:, 1:], want, rtol=0, atol=1e-12 * (1 + np.abs(want).max()))


@pytest.mark.parametrize("seed", range(20))
def test_clip_is_identity_on_feasible_chunks(seed):
    rng = np.random.default_rng(1000 + seed)
    T, D = 8, 4
    spec = TrajOptSpec(
        horizon=T,
        action_dim=D,
        continuous_dims=[0, 1, 3],
        max_delta=[0.2, 0.3, 0.1],
        min_delta=[-0.1, -0.3, -0.05],
    )
    lo, hi = spec.lo_delta, spec.hi_delta
    B = 3
    steps = np.zeros((B, T, D))
    steps[:, :, [0, 1, 3]] = rng.uniform(lo * 0.99, hi * 0.99, (B, T, 3))
    steps[:, :, 2] = rng.normal(0.0, 5.0, (B, T))  # the gripper may jump
    prev = rng.uniform(-2, 2, (B, D))
    a = prev[:, None, :] + np.cumsum(steps, axis=1)
    d = _all_diffs(a, prev, [0, 1, 3])
    assert np.all(d <= hi) and np.all(d >= lo)  # the chunk really is feasible
    np.testing.assert_array_equal(clip_chunk(a, spec, prev), a)
    np.testing.assert_array_equal(clip_chunk(a.reshape(B, T * D), spec, prev), a.reshape(B, T * D))
    out, iterations, violation = penalty_chunk_info(a, spec, prev)
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(iterations, 0)
    np.testing.assert_array_equal(violation, 0.0)


def test_clip_flat_and_3d_layouts_agree():
    spec, a, prev = _random_case(7)
    B, T, D = a.shape
    out3 = clip_chunk(a, spec, prev)
    out2 = clip_chunk(a.reshape(B, T * D), spec, prev)
    assert out2.shape == (B, T * D)
    np.testing.assert_array_equal(out2.reshape(B, T, D), out3)


def test_clip_keeps_float32_dtype_and_bounds_up_to_rounding():
    spec, a, prev = _random_case(11)
    a32, prev32 = a.astype(np.float32), prev.astype(np.float32)
    out = clip_chunk(a32, spec, prev32)
    assert out.dtype == np.float32 and out.shape == a.shape
    d = _all_diffs(out.astype(np.float64), prev32.astype(np.float64), list(spec.continuous_dims))
    tol = 4 * np.finfo(np.float32).eps * (1 + np.abs(out).max())
    assert np.all(d <= spec.hi_delta + tol) and np.all(d >= spec.lo_delta - tol)


def test_clip_and_penalty_accept_torch_and_return_same_type_dtype():
    torch = pytest.importorskip("torch")
    spec, a, prev = _random_case(3)
    for dtype in (torch.float32, torch.float64):
        at, pt = torch.tensor(a, dtype=dtype), torch.tensor(prev, dtype=dtype)
        for fn in (clip_chunk, penalty_chunk):
            out = fn(at, spec, pt)
            assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == at.shape
            ref = fn(at.double().numpy(), spec, pt.double().numpy())
            np.testing.assert_allclose(out.double().numpy(), ref, rtol=1e-6, atol=1e-5)
        flat = clip_chunk(at.reshape(a.shape[0], -1), spec, pt)
        assert flat.shape == (a.shape[0], spec.n) and flat.dtype == dtype


# ------------------------------------------------------------------------------ penalty: by hand
def test_penalty_hand_computed_converges_with_iteration_count():
    # T = 1, prev = 0, bound +-1, a_0 = 3, eta = 0.5, tol = 0.3. Only difference: d = x - 0.
    spec = TrajOptSpec(horizon=1, action_dim=2, continuous_dims=[0], max_delta=1.0)
    a = np.array([[[3.0, 0.7]]])
    prev = np.array([[0.0, 0.2]])
    out, iterations, violation = penalty_chunk_info(a, spec, prev, step_size=0.5, tol=0.3)
    # x = 3:    v_max = 3 - 1    = 2    (>= 0.3) -> x = 3 - 0.5*2      = 2
    # x = 2:    v_max = 2 - 1    = 1    (>= 0.3) -> x = 2 - 0.5*1      = 1.5
    # x = 1.5:  v_max = 1.5 - 1  = 0.5  (>= 0.3) -> x = 1.5 - 0.5*0.5  = 1.25
    # x = 1.25: v_max = 0.25 < 0.3 -> stop after 3 updates
    np.testing.assert_array_equal(out, [[[1.25, 0.7]]])
    np.testing.assert_array_equal(iterations, [3])
    np.testing.assert_array_equal(violation, [0.25])
    # Not feasible (penalty does not guarantee feasibility): 1.25 - 0 > 1.
    assert out[0, 0, 0] - prev[0, 0] > spec.hi_delta[0]


def test_penalty_hand_computed_gradient_acts_on_both_ends_of_a_difference():
    # No prev, T = 3, bound +-1, a = [0, 3, 0.5], eta = 0.25, one update.
    spec = TrajOptSpec(horizon=3, action_dim=1, continuous_dims=[0], max_delta=1.0)
    a = np.array([[0.0, 3.0, 0.5]])
    out, iterations, violation = penalty_chunk_info(a, spec, step_size=0.25, max_iter=1)
    # differences: d_1 = 3 - 0 = 3, d_2 = 0.5 - 3 = -2.5
    # v_max = [_, 2, 0], v_min = [_, 0, 1.5], nabla = v_max - v_min = [_, 2, -1.5]
    # gradient: g_0 = -nabla_1 = -2; g_1 = nabla_1 - nabla_2 = 2 + 1.5 = 3.5; g_2 = nabla_2 = -1.5
    # x = [0 + 0.25*2, 3 - 0.25*3.5, 0.5 + 0.25*1.5] = [0.5, 2.125, 0.875]
    np.testing.assert_array_equal(out, [[0.5, 2.125, 0.875]])
    np.testing.assert_array_equal(iterations, [1])
    # new differences: 2.125 - 0.5 = 1.625 -> v_max 0.625; 0.875 - 2.125 = -1.25 -> v_min 0.25
    np.testing.assert_array_equal(violation, [0.625 + 0.25])


def test_penalty_hand_computed_anchor_is_not_a_decision_variable():
    # prev = 0, T = 2, bound +-1, a = [3, 3], eta = 0.25, one update.
    spec = TrajOptSpec(horizon=2, action_dim=1, continuous_dims=[0], max_delta=1.0)
    out, iterations, violation = penalty_chunk_info(
        np.array([[[3.0], [3.0]]]), spec, np.array([[0.0]]), step_size=0.25, max_iter=1
    )
    # d_0 = 3 - 0 = 3 -> v_max 2; d_1 = 0. nabla = [2, 0]; g_0 = 2 - 0 = 2, g_1 = 0
    # x = [3 - 0.25*2, 3] = [2.5, 3]; prev stays 0.
    np.testing.assert_array_equal(out[0, :, 0], [2.5, 3.0])
    np.testing.assert_array_equal(iterations, [1])
    np.testing.assert_array_equal(violation, [2.5 - 1.0])  # d_0 = 2.5 -> 1.5, d_1 = 0.5 -> 0


def test_penalty_without_prev_has_no_difference_before_step_zero():
    # Both bounds positive (every step must rise by 0.25 .. 0.5). Without prev there is no
    # difference k = 0, so a chunk rising by 0.5 per step is feasible whatever its start value.
    spec = TrajOptSpec(horizon=3, action_dim=1, continuous_dims=[0], max_delta=0.5, min_delta=0.25)
    a = np.array([[5.0, 5.5, 6.0]])
    out, iterations, violation = penalty_chunk_info(a, spec)
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(iterations, [0])
    np.testing.assert_array_equal(violation, [0.0])
    # With prev = 5.0 the difference k = 0 is 5.0 - 5.0 = 0 < 0.25: v_min = 0.25 -> iterate.
    _, iterations, _ = penalty_chunk_info(a, spec, np.array([[5.0]]), tol=0.1)
    assert iterations[0] > 0


def test_penalty_stopping_rule_uses_sum_of_two_norms():
    # T = 1, prev = 0, two continuous dims with bound +-1, a_0 = (1.75, 2.0, -2.25):
    # v_max = (0.75, 1.0, 0), v_min = (0, 0, 1.25): ||v_max|| = sqrt(0.5625 + 1) = 1.25,
    # ||v_min|| = 1.25 -> 2.5 (a max-norm would give 2.25, a 1-norm 3.0).
    spec = TrajOptSpec(horizon=1, action_dim=3, continuous_dims=[0, 1, 2], max_delta=1.0)
    a = np.array([[[1.75, 2.0, -2.25]]])
    prev = np.zeros((1, 3))
    _, it, viol = penalty_chunk_info(a, spec, prev, max_iter=0)
    np.testing.assert_array_equal(it, [0])
    np.testing.assert_array_equal(viol, [2.5])
    _, it, _ = penalty_chunk_info(a, spec, prev, tol=2.5 + 1e-9)  # 2.5 < tol: no update
    np.testing.assert_array_equal(it, [0])
    _, it, _ = penalty_chunk_info(a, spec, prev, tol=2.5)  # 2.5 is not < 2.5: iterate
    assert it[0] > 0


# ------------------------------------------------------------------------------ penalty: properties
@pytest.mark.parametrize("seed", range(25))
def test_penalty_never_increases_the_penalty_and_reduces_violation(seed):
    spec, a, prev = _random_case(500 + seed, positive_lo=seed % 5 == 4)
    for anchor in (prev, None):
        values = [_penalty_value(a, anchor, spec)]
        for k in (1, 2, 5, 20, 100):
            out = penalty_chunk(a, spec, anchor, max_iter=k, tol=0.0)
            values.append(_penalty_value(out, anchor, spec))
        assert all(
            v1 <= v0 * (1 + 1e-12) + 1e-15 for v0, v1 in zip(values[:-1], values[1:], strict=True)
        )
        if values[0] > 0:
            assert values[-1] < values[0]


@pytest.mark.parametrize("seed", range(10))
def test_penalty_converges_on_mildly_infeasible_chunks(seed):
    rng = np.random.default_rng(2000 + seed)
    T, D = 10, 3
    spec = TrajOptSpec(
        horizon=T,
        action_dim=D,
        continuous_dims=[0, 1],
        max_delta=[0.1, 0.2],
        min_delta=[-0.2, -0.1],
    )
    B = 4
    a = np.cumsum(rng.uniform(-0.25, 0.25, (B, T, D)), axis=1)
    a[:, :, 2] = rng.integers(0, 2, (B, T))  # gripper open/close
    prev = a[:, 0] + rng.uniform(-0.3, 0.3, (B, D))
    out, iterations, violation = penalty_chunk_info(a, spec, prev)  # Table VIII ALOHA defaults
    assert np.all(violation < 0.01) and np.all(iterations < 1000)
    assert np.all(iterations > 0)  # the chunks were infeasible to start with
    d = _all_diffs(out, prev, [0, 1])
    assert np.all(d <= spec.hi_delta + 0.01) and np.all(d >= spec.lo_delta - 0.01)
    np.testing.assert_array_equal(out[:, :, 2], a[:, :, 2])  # gripper passes through
    # the reported violation is the one of the returned chunk
    v_max = np.maximum(0.0, d - spec.hi_delta)
    v_min = np.maximum(0.0, spec.lo_delta - d)
    want = np.sqrt((v_max**2).sum(axis=(1, 2))) + np.sqrt((v_min**2).sum(axis=(1, 2)))
    np.testing.assert_allclose(violation, want, rtol=1e-12, atol=1e-15)


def test_penalty_batch_elements_stop_independently():
    spec = TrajOptSpec(horizon=1, action_dim=1, continuous_dims=[0], max_delta=1.0)
    a = np.array([[[3.0]], [[0.5]], [[1.5]]])
    prev = np.zeros((3, 1))
    out, iterations, _ = penalty_chunk_info(a, spec, prev, step_size=0.5, tol=0.3)
    # element 0: as in the 3-update hand case; element 1 feasible: 0 updates;
    # element 2: v = 0.5 -> x = 1.25, v = 0.25 -> stop after 1 update.
    np.testing.assert_array_equal(iterations, [3, 0, 1])
    np.testing.assert_array_equal(out[:, 0, 0], [1.25, 0.5, 1.25])


# ------------------------------------------------------------------------------ bad input
SPEC = TrajOptSpec(horizon=3, action_dim=2, continuous_dims=[0], max_delta=0.5)
GOOD = np.zeros((2, 3, 2))


@pytest.mark.parametrize("fn", [clip_chunk, penalty_chunk])
@pytest.mark.parametrize(
    ("a", "spec", "prev", "word"),
    [
        (np.zeros((2, 5)), SPEC, None, "a must have shape"),
        (np.zeros((2, 3, 3)), SPEC, None, "a must have shape"),
        (np.zeros(6), SPEC, None, "a must have shape"),
        (
            np.where(np.arange(12).reshape(2, 3, 2) == 4, np.nan, 0.0),
            SPEC,
            None,
            "a must be finite",
        ),
        (np.full((2, 6), np.inf), SPEC, None, "a must be finite"),
        (GOOD, SPEC, np.zeros((1, 2)), "prev must have shape"),
        (GOOD, SPEC, np.zeros(2), "prev must have shape"),
        (GOOD, SPEC, np.array([[0.0, np.nan], [0.0, 0.0]]), "prev must be finite"),
        ([["x"]], SPEC, None, "a must be"),
        (GOOD, "spec", None, "spec must be a TrajOptSpec"),
        (GOOD, SPEC.replace(min_value=-1.0, max_value=1.0), None, "spec has value/position bounds"),
        (GOOD, SPEC.replace(position_max=1.0), None, "spec has value/position bounds"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(fn, a, spec, prev, word):
    with pytest.raises(ValueError, match=word):
        fn(a, spec, prev)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": 0.6}, "step_size"),
        ({"step_size": float("nan")}, "step_size"),
        ({"tol": -1.0}, "tol"),
        ({"tol": float("inf")}, "tol"),
        ({"max_iter": -1}, "max_iter"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"max_iter": True}, "max_iter"),
    ],
)
def test_bad_penalty_parameters_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        penalty_chunk(GOOD, SPEC, None, **kwargs)


def test_inputs_are_not_modified():
    spec, a, prev = _random_case(5)
    a0, p0 = a.copy(), prev.copy()
    clip_chunk(a, spec, prev)
    penalty_chunk(a, spec, prev)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(prev, p0)
