"""The DiffOG layer: gradients through the QP, variants, bounds, continuity."""

from __future__ import annotations

import pytest
import torch

from diffog_ros.learning.diffog import DiffOGConfig, DiffOGLayer, bound_activity, tril_from_vector
from diffog_ros.trajopt import TrajOptSpec


def small_layer(variant="transformer", dtype=torch.float32, **kw) -> DiffOGLayer:
    torch.manual_seed(0)
    spec = TrajOptSpec(
        horizon=4, action_dim=3, continuous_dims=[0, 1], max_delta=0.15, smooth_weight=1.0
    )
    cfg = DiffOGConfig(
        horizon=4,
        action_dim=3,
        variant=variant,
        d_model=16,
        n_heads=2,
        n_layers=1,
        dim_feedforward=16,
        dropout=0.0,
        head_init_std=0.05,
        **kw,
    )
    return DiffOGLayer(cfg, spec).to(dtype)


def chunks(b=6, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.cumsum(0.2 * torch.randn(b, 4, 3, generator=g), dim=1).to(dtype)


def test_gradients_reach_the_transformer_through_the_qp():
    layer = small_layer()
    a = chunks()
    loss, y = layer.loss(a, a)
    assert 0 < bound_activity(y, layer.spec) < 1  # some bounds active: the QP is not a no-op
    loss.backward()
    for name, p in layer.encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reached {name}"


def test_transformer_gradient_matches_finite_differences():
    layer = small_layer(dtype=torch.float64)
    a = chunks(dtype=torch.float64)
    params = [
        layer.encoder.proj.weight,
        layer.encoder.encoder.layers[0].linear1.weight,
        layer.encoder.head.weight,
    ]
    loss, _ = layer.loss(a, a)
    grads = torch.autograd.grad(loss, params)
    g = torch.Generator().manual_seed(2)
    h = 1e-6
    for p, grad in zip(params, grads, strict=True):
        for _ in range(3):  # directional derivatives along random directions
            v = torch.randn(p.shape, generator=g, dtype=torch.float64)
            with torch.no_grad():
                p.add_(h * v)
                up = layer.loss(a, a)[0].item()
                p.sub_(2 * h * v)
                down = layer.loss(a, a)[0].item()
                p.add_(h * v)
            fd = (up - down) / (2 * h)
            assert (grad * v).sum().item() == pytest.approx(fd, rel=1e-5, abs=1e-10)


def test_forward_meets_bounds_and_optimise_adds_continuity():
    layer = small_layer().eval()
    a = chunks()
    y = layer(a)
    d = y[:, 1:, :2] - y[:, :-1, :2]
    assert d.abs().max() <= 0.15 + 1e-6
    prev = a[:, 0] - 0.5  # far from the chunk's start
    y2 = layer.optimise(a, prev)
    assert y2.dtype == torch.float64
    assert ((y2[:, 0, :2] - prev[:, :2].double()).abs() <= 0.15 + 1e-9).all()
    # a tighter spec at inference (time-varying constraints)
    tight = layer.spec.replace(max_delta=0.05, min_delta=None)
    y3 = layer.optimise(a, None, tight)
    assert (y3[:, 1:, :2] - y3[:, :-1, :2]).abs().max() <= 0.05 + 1e-9


def test_static_variant_is_the_projection_and_has_no_parameters():
    layer = small_layer("static")
    assert not list(layer.parameters())
    a = chunks()
    q = layer.q_matrix(a)
    torch.testing.assert_close(q, torch.eye(12))
    loose = layer.spec.replace(max_delta=10.0, min_delta=None, smooth_weight=0.0)
    torch.testing.assert_close(layer.optimise(a, None, loose).float(), a, atol=1e-6, rtol=0)


def test_direct_variant_learns_one_shared_q():
    layer = small_layer("direct")
    assert [n for n, _ in layer.named_parameters()] == ["l_raw"]
    loss, _ = layer.loss(chunks(), chunks())
    loss.backward()
    assert layer.l_raw.grad.abs().sum() > 0


def test_tril_from_vector_and_shape_errors():
    v = torch.arange(1.0, 7.0).unsqueeze(0)
    torch.testing.assert_close(
        tril_from_vector(v, 3)[0], torch.tensor([[1.0, 0, 0], [2, 3, 0], [4, 5, 6]])
    )
    with pytest.raises(ValueError, match="must be"):
        small_layer()(torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="variant"):
        DiffOGConfig(horizon=4, action_dim=3, variant="nope")
