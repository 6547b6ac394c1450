"""Noise schedule, DDIM sampler, U-Net and encoders of the Diffusion Policy."""

from __future__ import annotations

import math

import pytest
import torch

from diffog_ros.learning.diffusion import (
    DiffusionConfig,
    DiffusionPolicy,
    NoiseScheduler,
    make_betas,
)
from diffog_ros.learning.encoders import EncoderConfig, ObservationEncoder, ResNetGN, SpatialSoftmax
from diffog_ros.learning.unet import ConditionalUnet1D


def test_cosine_schedule_matches_its_closed_form():
    betas = make_betas(10, "squaredcos_cap_v2")
    abar = torch.cumprod(1 - betas, 0)

    def f(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    for k in (0, 4, 8):  # abar_k = f((k+1)/K) / f(0) while no beta is capped
        assert abar[k].item() == pytest.approx(f((k + 1) / 10) / f(0), rel=1e-9)
    assert betas.max() <= 0.999


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
@pytest.mark.parametrize("steps", [50, 7, 1])
def test_ddim_with_an_oracle_model_recovers_the_sample(prediction, steps):
    """If the network predicted the true noise (or x0), deterministic DDIM returns x0 exactly."""
    sched = NoiseScheduler(50, "squaredcos_cap_v2", prediction, clip_sample=False)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 8, 2, generator=g, dtype=torch.float64) * 2 - 1
    x = torch.randn(3, 8, 2, generator=g, dtype=torch.float64)
    ks = sched.ddim_timesteps(steps)
    assert ks == sorted(ks, reverse=True) and ks[-1] == 0
    for i, k in enumerate(ks):
        a = sched.alphas_cumprod[k].item()
        eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)  # the noise that explains x around x0
        out = eps if prediction == "epsilon" else x0
        x = sched.ddim_step(out, k, ks[i + 1] if i + 1 < len(ks) else -1, x)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-9)


def test_add_noise_is_the_forward_process():
    sched = NoiseScheduler(20)
    x0, noise = torch.ones(2, 4, 1), torch.full((2, 4, 1), 2.0)
    k = torch.tensor([0, 19])
    xk = sched.add_noise(x0, noise, k)
    a = sched.alphas_cumprod[k].float()
    torch.testing.assert_close(xk[:, 0, 0], a.sqrt() + 2 * (1 - a).sqrt())


def test_unet_shapes_and_horizon_check():
    net = ConditionalUnet1D(3, 5, step_embed_dim=16, down_dims=(16, 32), n_groups=8)
    x = torch.randn(2, 8, 3)
    assert net(x, torch.tensor([1, 2]), torch.randn(2, 5)).shape == (2, 8, 3)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(2, 7, 3), torch.tensor([1, 2]), torch.randn(2, 5))


def test_spatial_softmax_finds_the_peak():
    ss = SpatialSoftmax(1, 1)
    with torch.no_grad():
        ss.proj.weight.fill_(50.0)
        ss.proj.bias.zero_()
    img = torch.zeros(1, 1, 5, 9)
    img[0, 0, 4, 0] = 1.0  # bottom-left corner: x = -1, y = +1
    torch.testing.assert_close(ss(img), torch.tensor([[-1.0, 1.0]]), atol=1e-3, rtol=0)


def test_resnet_uses_groupnorm_and_gives_features():
    net = ResNetGN(width=8, blocks=(1, 1), num_keypoints=4, out_dim=6)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
    assert net(torch.rand(3, 3, 32, 40)).shape == (3, 6)


def test_observation_encoder_and_policy_shapes():
    enc = EncoderConfig(
        lowdim={"qpos": 3},
        cameras=["cam"],
        image_size=[16, 24],
        resnet_width=8,
        resnet_blocks=[1],
        num_keypoints=2,
        image_feature_dim=4,
    )
    obs = {"qpos": torch.randn(2, 2, 3), "images/cam": torch.rand(2, 2, 3, 16, 24)}
    assert ObservationEncoder(enc)(obs).shape == (2, 2, 7)
    cfg = DiffusionConfig(
        action_dim=3,
        encoder=enc,
        horizon=8,
        n_obs_steps=2,
        n_action_steps=4,
        down_dims=[16, 32],
        step_embed_dim=16,
        num_train_steps=10,
        ddim_steps=3,
    )
    policy = DiffusionPolicy(cfg)
    loss = policy.compute_loss({"obs": obs, "action": torch.randn(2, 8, 3)})
    assert loss.ndim == 0 and torch.isfinite(loss)
    x = policy.sample(obs)
    assert x.shape == (2, 8, 3) and policy.chunk(x).shape == (2, 4, 3)
    with pytest.raises(ValueError, match="n_action_steps"):
        DiffusionConfig(action_dim=3, encoder=enc, horizon=8, n_obs_steps=2, n_action_steps=8)
    with pytest.raises(ValueError, match="image_size"):
        EncoderConfig(cameras=["cam"])
