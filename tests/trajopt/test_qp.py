"""solve_qp: exact, feasible, differentiable — checked against ProxSuite, qpth and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffog_ros.trajopt import TrajOptSpec, solve_qp, spd_from_unconstrained

from .reference import diffog_problem, objective, proxsuite_solve, violation

FEAS = 1e-9


def _check_against_reference(spec, q_mat, q_vec, prev=None, pos=None, tol=1e-6):
    y = solve_qp(q_mat, q_vec, spec, prev, position_start=pos).numpy()
    ref = proxsuite_solve(spec, q_mat, q_vec, prev, pos)
    assert (
        violation(
            spec, y, None if prev is None else prev.numpy(), None if pos is None else pos.numpy()
        )
        <= FEAS
    )
    f_ours = objective(spec, q_mat.numpy(), q_vec.numpy(), y)
    f_ref = objective(spec, q_mat.numpy(), q_vec.numpy(), ref)
    # optimal: never worse than the reference optimum by more than 1e-7 relative
    assert np.all(f_ours <= f_ref + 1e-7 * np.maximum(1.0, np.abs(f_ref)))
    np.testing.assert_allclose(y, ref, atol=tol, rtol=0)
    return y


@pytest.mark.parametrize(
    "t_len,d_len,batch,with_prev",
    [(4, 3, 3, False), (16, 7, 4, True), (16, 7, 2, False), (16, 14, 2, True), (50, 14, 1, True)],
)
def test_random_problems_match_proxsuite(t_len, d_len, batch, with_prev):
    spec, q_mat, q_vec, prev = diffog_problem(
        t_len, d_len, batch, seed=t_len * 100 + d_len, with_prev=with_prev
    )
    y = _check_against_reference(spec, q_mat, q_vec, prev)
    # the problems are non-trivial: some bounds are active
    diffs = np.diff(y.reshape(batch, t_len, d_len)[:, :, list(spec.continuous_dims)], axis=1)
    assert np.isclose(np.abs(diffs), 0.05, atol=1e-9).any()


def test_matches_qpth_on_random_batch():
    spec, q_mat, q_vec, prev = diffog_problem(8, 7, 4, seed=7)
    fast = solve_qp(q_mat, q_vec, spec, prev)
    ref = solve_qp(q_mat, q_vec, spec, prev, backend="qpth")
    assert violation(spec, fast.numpy(), prev.numpy()) <= FEAS
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=0)


def test_all_bounds_active():
    # a chunk that jumps by 1.0 per step with bound 0.01: every difference sits on its bound
    spec = TrajOptSpec(10, 3, [0, 1], max_delta=0.01, smooth_weight=1.0)
    a = torch.arange(10, dtype=torch.float64).repeat_interleave(3).reshape(1, 30)
    q_mat = torch.eye(30, dtype=torch.float64)
    y = _check_against_reference(spec, q_mat, -a, torch.zeros(1, 3, dtype=torch.float64))
    d = np.diff(y.reshape(10, 3)[:, :2], axis=0)
    np.testing.assert_allclose(d, 0.01, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(bound=1e-6),  # very tight bounds
        dict(alpha=1e4),  # large smoothing weight
        dict(bound=0.02, step=0.5),  # most bounds active
    ],
)
def test_adversarial_parameters(kwargs):
    spec, q_mat, q_vec, prev = diffog_problem(16, 7, 3, seed=11, **kwargs)
    _check_against_reference(spec, q_mat, q_vec, prev)


def test_prev_far_from_first_action():
    spec, q_mat, q_vec, prev = diffog_problem(16, 7, 2, seed=3)
    prev = prev + 10.0
    y = _check_against_reference(spec, q_mat, q_vec, prev)
    first = y.reshape(2, 16, 7)[:, 0, list(spec.continuous_dims)]
    # y_0 can move at most one bound away from prev
    assert np.all(np.abs(first - prev.numpy()[:, list(spec.continuous_dims)]) <= 0.05 + FEAS)


@pytest.mark.parametrize("lo,hi", [(0.01, 0.05), (-0.2, -0.01), (-0.03, 0.08)])
def test_asymmetric_bounds(lo, hi):
    spec, q_mat, q_vec, prev = diffog_problem(12, 7, 3, seed=5)
    spec = spec.replace(min_delta=lo, max_delta=hi)
    _check_against_reference(spec, q_mat, q_vec, prev)


def _ill_conditioned(n, cond, seed):
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    eig = torch.logspace(0, np.log10(cond), n, dtype=torch.float64)
    q_mat = (u * eig) @ u.T
    return 0.5 * (q_mat + q_mat.T)


def test_ill_conditioned_q_and_qpth_feasibility():
    spec, _, q_vec, prev = diffog_problem(8, 7, 2, seed=21)
    q_mat = torch.stack([_ill_conditioned(56, 1e8, s) for s in (1, 2)])
    assert float(torch.linalg.cond(q_mat).max()) > 1e7
    y = solve_qp(q_mat, q_vec, spec, prev).numpy()
    ref = proxsuite_solve(spec, q_mat, q_vec, prev)
    assert violation(spec, y, prev.numpy()) <= FEAS
    f_ours = objective(spec, q_mat.numpy(), q_vec.numpy(), y)
    f_ref = objective(spec, q_mat.numpy(), q_vec.numpy(), ref)
    assert np.all(f_ours <= f_ref + 1e-7 * np.maximum(1.0, np.abs(f_ref)))
    np.testing.assert_allclose(y, ref, atol=1e-6, rtol=0)
    # qpth on the same problem: report its answer quality; ours must be at least as feasible
    y_qpth = solve_qp(q_mat, q_vec, spec, prev, backend="qpth").numpy()
    assert violation(spec, y, prev.numpy()) <= max(violation(spec, y_qpth, prev.numpy()), FEAS)


def test_value_bounds_with_and_without_prev():
    spec, q_mat, q_vec, prev = diffog_problem(10, 7, 3, seed=8)
    spec = spec.replace(min_value=-0.1, max_value=0.12)
    prev = prev.clamp(-0.1, 0.12)
    _check_against_reference(spec, q_mat, q_vec, prev)
    _check_against_reference(spec, q_mat, q_vec, None)


def test_position_bounds_leto_eq6():
    spec, q_mat, q_vec, prev = diffog_problem(8, 4, 2, seed=9, step=0.3)
    spec = TrajOptSpec(
        8,
        4,
        [0, 1, 2],
        max_delta=0.1,
        smooth_weight=1.0,
        min_value=-1.0,
        max_value=1.0,
        position_min=-0.05,
        position_max=0.05,
        position_dt=0.1,
    )
    pos = torch.zeros(2, 3, dtype=torch.float64)
    y = _check_against_reference(spec, q_mat, q_vec, None, pos)
    positions = 0.1 * np.cumsum(y.reshape(2, 8, 4)[:, :-1, :3], axis=1)
    assert np.all(np.abs(positions) <= 0.05 + FEAS)


def test_float32_in_float32_out():
    spec, q_mat, q_vec, prev = diffog_problem(16, 7, 2, seed=4, dtype=torch.float32)
    y = solve_qp(q_mat, q_vec, spec, prev)
    assert y.dtype == torch.float32 and y.shape == (2, 112)
    y64 = solve_qp(q_mat.double(), q_vec.double(), spec, prev.double())
    torch.testing.assert_close(y.double(), y64, atol=1e-5, rtol=0)


def test_shared_q_broadcasts_over_batch():
    spec, q_mat, q_vec, prev = diffog_problem(6, 7, 3, seed=2)
    shared = solve_qp(q_mat[0], q_vec, spec, prev)
    each = solve_qp(q_mat[0].expand(3, -1, -1).clone(), q_vec, spec, prev)
    torch.testing.assert_close(shared, each, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------ gradients
def _small_case(seed, with_prev=True):
    gen = torch.Generator().manual_seed(seed)
    spec = TrajOptSpec(5, 3, [0, 1], max_delta=0.05, smooth_weight=2.0)
    l_raw = 0.3 * torch.randn(1, 15, 15, generator=gen, dtype=torch.float64)
    a = torch.cumsum(0.06 * torch.randn(1, 5, 3, generator=gen, dtype=torch.float64), 1).reshape(
        1, 15
    )
    prev = a.reshape(1, 5, 3)[:, 0] + 0.07 if with_prev else None
    return spec, l_raw, a, prev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_finite_differences(seed):
    spec, l_raw, a, prev = _small_case(seed)
    y0 = solve_qp(spd_from_unconstrained(l_raw), -a, spec, prev)
    d = torch.diff(y0.reshape(5, 3)[:, :2], dim=0)
    assert bool((d.abs() >= 0.05 - 1e-9).any()), "case must have active bounds"

    def f(l_raw_, a_, prev_):
        return solve_qp(spd_from_unconstrained(l_raw_), -a_, spec, prev_)

    inputs = tuple(x.clone().requires_grad_(True) for x in (l_raw, a, prev))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-5, rtol=1e-4)


def test_gradients_match_qpth():
    spec, l_raw, a, prev = _small_case(5)
    w = torch.randn(1, 15, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = {}
    for backend in ("fast", "qpth"):
        l_var = l_raw.clone().requires_grad_(True)
        a_var = a.clone().requires_grad_(True)
        p_var = prev.clone().requires_grad_(True)
        y = solve_qp(spd_from_unconstrained(l_var), -a_var, spec, p_var, backend=backend)
        (y * w).sum().backward()
        grads[backend] = (l_var.grad, a_var.grad, p_var.grad)
    for g_fast, g_qpth in zip(grads["fast"], grads["qpth"], strict=True):
        torch.testing.assert_close(g_fast, g_qpth, atol=1e-5, rtol=1e-4)


def test_gradients_with_value_bounds_match_finite_differences():
    spec, l_raw, a, prev = _small_case(3)
    spec = spec.replace(min_value=-0.06, max_value=0.08)

    def f(l_raw_, a_):
        return solve_qp(spd_from_unconstrained(l_raw_), -a_, spec, None)

    inputs = tuple(x.clone().requires_grad_(True) for x in (l_raw, a))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------- bad input
def _ok():
    spec = TrajOptSpec(4, 3, [0, 1], max_delta=0.1, smooth_weight=1.0)
    return (
        spec,
        torch.eye(12, dtype=torch.float64).expand(2, 12, 12).clone(),
        torch.zeros(2, 12, dtype=torch.float64),
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(min_delta=0.1, max_delta=0.1), "min_delta"),
        (dict(min_delta=0.2, max_delta=0.1), "min_delta"),
        (dict(max_delta=[0.1, 0.2, 0.3]), "max_delta"),
        (dict(max_delta=float("nan")), "max_delta"),
        (dict(smooth_weight=-1.0), "smooth_weight"),
        (dict(continuous_dims=[0, 3]), "continuous_dims"),
        (dict(continuous_dims=[1, 1]), "continuous_dims"),
        (dict(horizon=0), "horizon"),
        (dict(min_value=0.5, max_value=0.1), "min_value"),
    ],
)
def test_bad_spec_raises_naming_argument(kwargs, match):
    args = dict(horizon=4, action_dim=3, continuous_dims=[0, 1], max_delta=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TrajOptSpec(**args)


def test_bad_inputs_raise_naming_argument():
    spec, q_mat, q_vec = _ok()
    prev = torch.zeros(2, 3, dtype=torch.float64)
    cases = []
    asym = q_mat.clone()
    asym[:, 0, 1] = 0.5
    cases.append((dict(Q=asym), "symmetric"))
    indef = q_mat.clone()
    indef[:, 3, 3] = -1.0
    cases.append((dict(Q=indef), "positive definite"))
    nan_q = q_vec.clone()
    nan_q[0, 2] = float("nan")
    cases.append((dict(q=nan_q), "q contains NaN"))
    inf_q_mat = q_mat.clone()
    inf_q_mat[1, 2, 2] = float("inf")
    cases.append((dict(Q=inf_q_mat), "Q contains NaN or Inf"))
    bad_prev = prev.clone()
    bad_prev[0, 0] = float("nan")
    cases.append((dict(prev=bad_prev), "prev contains"))
    cases.append((dict(q=torch.zeros(2, 11, dtype=torch.float64)), "q must be"))
    cases.append((dict(Q=torch.eye(11, dtype=torch.float64)), "Q must be"))
    cases.append((dict(Q=q_mat[:, :, :, None]), "Q must be"))
    cases.append((dict(prev=torch.zeros(2, 4, dtype=torch.float64)), "prev must be"))
    cases.append((dict(prev=torch.zeros(3, 3, dtype=torch.float64)), "prev must be"))
    cases.append((dict(q=q_vec.to(torch.int64)), "q must be float"))
    cases.append((dict(backend="cvx"), "backend"))
    for change, match in cases:
        args = dict(Q=q_mat, q=q_vec, spec=spec, prev=prev)
        args.update(change)
        with pytest.raises(ValueError, match=match):
            solve_qp(**args)


def test_infeasible_continuity_with_value_bounds_raises():
    spec = TrajOptSpec(4, 3, [0, 1], max_delta=0.1, min_value=-1.0, max_value=1.0)
    q_mat = torch.eye(12, dtype=torch.float64)
    q_vec = torch.zeros(1, 12, dtype=torch.float64)
    prev = torch.tensor(
        [[2.0, 0.0, 0.0]], dtype=torch.float64
    )  # 1.0 outside the box, one step is 0.1
    with pytest.raises(ValueError, match="infeasible"):
        solve_qp(q_mat, q_vec, spec, prev)
    # the same prev is fine when it is within one step of the box
    solve_qp(q_mat, q_vec, spec, torch.tensor([[1.05, 0.0, 0.0]], dtype=torch.float64))


def test_infeasible_monotone_bounds_in_a_box_raise():
    spec = TrajOptSpec(20, 1, [0], min_delta=0.1, max_delta=0.2, min_value=0.0, max_value=1.0)
    with pytest.raises(ValueError, match="infeasible"):
        solve_qp(torch.eye(20, dtype=torch.float64), torch.zeros(1, 20, dtype=torch.float64), spec)


def test_position_start_required_exactly_when_position_bounds():
    spec = TrajOptSpec(4, 2, [0], max_delta=0.1, position_min=-1.0, position_max=1.0)
    with pytest.raises(ValueError, match="position_start"):
        solve_qp(torch.eye(8, dtype=torch.float64), torch.zeros(1, 8, dtype=torch.float64), spec)
    spec2, q_mat, q_vec = _ok()
    with pytest.raises(ValueError, match="position_start"):
        solve_qp(q_mat, q_vec, spec2, position_start=torch.zeros(2, 2, dtype=torch.float64))


# --------------------------------------------------------------------------------- Algorithm 1
def test_spd_from_unconstrained_follows_algorithm_1():
    gen = torch.Generator().manual_seed(0)
    l_raw = 5.0 * torch.randn(4, 20, 20, generator=gen, dtype=torch.float64)
    q_mat = spd_from_unconstrained(l_raw)
    torch.testing.assert_close(q_mat, q_mat.transpose(1, 2), atol=0, rtol=0)
    assert float(torch.linalg.eigvalsh(q_mat).min()) >= 1e-4 * (1 - 1e-6)
    # by hand for a 2x2: diag -> exp + eps then clamp; upper entry dropped
    raw = torch.tensor([[0.0, 7.0], [20.0, 5.0]], dtype=torch.float64)
    lower = torch.tensor(
        [[1.0 + 1e-4, 0.0], [10.0, 10.0]], dtype=torch.float64
    )  # exp(5)+eps clamps to 10
    expected = lower @ lower.T + 1e-4 * torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(spd_from_unconstrained(raw), expected)


def test_q_is_spd_skips_the_proof_but_still_refuses_a_q_that_is_not():
    spec, q_mat, q_vec = _ok()
    spec = spec.replace(smooth_weight=0.0)
    indef = q_mat.clone()
    indef[:, 3, 3] = -1.0
    with pytest.raises(ValueError, match="positive definite"):
        solve_qp(indef, q_vec, spec, q_is_spd=True)
    good = solve_qp(q_mat, q_vec + 1.0, spec, q_is_spd=True)
    torch.testing.assert_close(good, solve_qp(q_mat, q_vec + 1.0, spec))
