"""Observation encoders (torch.nn only; torchvision is not available).

- :class:`ResNetGN`: ResNet-18 layout (4 stages x 2 basic blocks) with GroupNorm instead of
  BatchNorm and a spatial-softmax keypoint head, as in Diffusion Policy's image encoder.
- :class:`LowDimEncoder`: an MLP for proprioception (or identity when no hidden sizes are given).
- :class:`ObservationEncoder`: per camera one image encoder (optionally shared) plus the low-dim
  state, concatenated per time step: obs dict of [B, S, ...] -> features [B, S, F].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


def _groups(channels: int) -> int:
    """GroupNorm groups: channels // 16 (Diffusion Policy's rule), at least 1 and a divisor."""
    g = max(1, channels // 16)
    while channels % g:
        g -= 1
    return g


class BasicBlock(nn.Module):
    """conv3x3-GN-ReLU-conv3x3-GN plus a (projected) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.gn1 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.gn2 = nn.GroupNorm(_groups(c_out), c_out)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.GroupNorm(_groups(c_out), c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.gn1(self.conv1(x)))
        y = self.gn2(self.conv2(y))
        return torch.relu(y + self.short(x))


class SpatialSoftmax(nn.Module):
    """Keypoints from a feature map: 1x1 conv to K maps, softmax over pixels, expected (x, y).

    [B, C, H, W] -> [B, 2K], coordinates in [-1, 1].
    """

    def __init__(self, channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        maps = self.proj(x).flatten(2)  # [B, K, H*W]
        attn = torch.softmax(maps, dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        ex = (attn * grid_x.reshape(1, 1, -1)).sum(-1)
        ey = (attn * grid_y.reshape(1, 1, -1)).sum(-1)
        return torch.stack([ex, ey], dim=-1).reshape(b, -1)


class ResNetGN(nn.Module):
    """ResNet-18-style image encoder with GroupNorm and spatial softmax.

    Args:
        width: channels of the first stage (64 for ResNet-18); stages use width x (1, 2, 4, 8).
        blocks: basic blocks per stage (ResNet-18: (2, 2, 2, 2)).
        num_keypoints: spatial-softmax keypoints K.
        out_dim: output feature size (linear map of the 2K keypoint coordinates).
    """

    def __init__(
        self,
        width: int = 64,
        blocks: Sequence[int] = (2, 2, 2, 2),
        num_keypoints: int = 32,
        out_dim: int = 64,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False),
            nn.GroupNorm(_groups(width), width),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * (2**i)
            for j in range(n):
                stages.append(BasicBlock(c_in, c_out, 2 if (j == 0 and i > 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.keypoints = SpatialSoftmax(c_in, num_keypoints)
        self.out = nn.Linear(2 * num_keypoints, out_dim)
        self.out_dim = out_dim

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> [B, out_dim]."""
        x = self.stages(self.stem(img * 2.0 - 1.0))
        return self.out(self.keypoints(x))


class LowDimEncoder(nn.Module):
    """MLP for low-dim state [.., D] -> [.., out]; identity when ``hidden`` is empty."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = ()) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.Mish()]
            d = h
        self.net = nn.Sequential(*layers) if layers else nn.Identity()
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class EncoderConfig:
    """Which observations a policy reads and how they are encoded (stored in checkpoints)."""

    lowdim: dict[str, int] = field(default_factory=dict)  # key -> dim, e.g. {"qpos": 14}
    cameras: list[str] = field(default_factory=list)
    image_size: list[int] | None = None  # [H, W] images are resized to
    resnet_width: int = 64
    resnet_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    num_keypoints: int = 32
    image_feature_dim: int = 64
    share_image_encoder: bool = False
    lowdim_hidden: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.lowdim and not self.cameras:
            raise ValueError("an observation encoder needs at least one low-dim key or camera")
        if self.cameras and (self.image_size is None or len(self.image_size) != 2):
            raise ValueError("image_size [H, W] is required when cameras are used")
        for k, d in self.lowdim.items():
            if int(d) < 1:
                raise ValueError(f"low-dim key {k!r} needs a positive dim, got {d}")

    @property
    def obs_keys(self) -> list[str]:
        return list(self.lowdim) + [f"images/{c}" for c in self.cameras]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderConfig:
        return cls(**dict(data))


class ObservationEncoder(nn.Module):
    """obs dict ({key: [B, S, ...]}) -> per-step features [B, S, feature_dim]."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lowdim_keys = list(cfg.lowdim)
        lowdim_in = sum(int(d) for d in cfg.lowdim.values())
        self.lowdim = LowDimEncoder(lowdim_in, cfg.lowdim_hidden) if self.lowdim_keys else None

        def make() -> ResNetGN:
            return ResNetGN(
                cfg.resnet_width, cfg.resnet_blocks, cfg.num_keypoints, cfg.image_feature_dim
            )

        self.images = nn.ModuleDict()
        if cfg.cameras:
            shared = make() if cfg.share_image_encoder else None
            for cam in cfg.cameras:
                self.images[cam] = shared if shared is not None else make()
        self.feature_dim = (self.lowdim.out_dim if self.lowdim is not None else 0) + len(
            cfg.cameras
        ) * cfg.image_feature_dim

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [k for k in self.cfg.obs_keys if k not in obs]
        if missing:
            raise KeyError(f"observation is missing {missing}")
        feats = []
        ref = obs[self.cfg.obs_keys[0]]
        b, s = ref.shape[:2]
        if self.lowdim is not None:
            x = torch.cat([obs[k] for k in self.lowdim_keys], dim=-1)
            feats.append(self.lowdim(x))
        for cam, net in self.images.items():
            img = obs[f"images/{cam}"]
            feats.append(net(img.reshape(b * s, *img.shape[2:])).reshape(b, s, -1))
        return torch.cat(feats, dim=-1)
