"""Ablation baseline: a direct image-to-image residual U-Net for global restoration.

``restore --global-model restore-unet`` and ``evaluate -m restore-unet`` run it in place of the triplet; it exists
to test the triplet-domain design honestly (Wan et al. compare against such networks). It sees the same inputs as the triplet model (the photo and the damage mask),
is trained on the same synthetic pairs, and is sized to a similar cost per megapixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from oldphoto.archs.blocks import BlurPool, ConvBlock, pad_to_multiple, unet_pass
from oldphoto.archs.mapping import ResidualBlock


@dataclass(frozen=True)
class RestoreUNetConfig:
    channels: tuple[int, ...] = (16, 32, 64, 96)
    """Feature channels per level, full resolution first."""
    bottleneck_blocks: int = 3
    """Residual blocks (with global pooling gates) at the coarsest level."""


class RestoreUNet(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] and (N, 1, H, W) damage mask -> (N, 3, H, W) restored RGB (unclamped)."""

    def __init__(self, config: RestoreUNetConfig = RestoreUNetConfig()) -> None:
        super().__init__()
        self.config = config
        channels = config.channels
        self.stem = nn.Conv2d(4, channels[0], 3, padding=1)
        self.down = nn.ModuleList(BlurPool(c) for c in channels[:-1])
        self.encoders = nn.ModuleList(ConvBlock(channels[i], channels[i + 1]) for i in range(len(channels) - 1))
        self.bottleneck = nn.Sequential(*(ResidualBlock(channels[-1]) for _ in range(config.bottleneck_blocks)))
        self.decoders = nn.ModuleList(
            ConvBlock(channels[i + 1] + channels[i], channels[i]) for i in range(len(channels) - 1)
        )
        self.head = nn.Conv2d(channels[0], 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    def forward(self, rgb: torch.Tensor, damage: torch.Tensor) -> torch.Tensor:
        x, (height, width) = pad_to_multiple(torch.cat([rgb, damage], dim=1), self.size_multiple)
        x = self.act(self.stem(x - 0.5))
        x = unet_pass(x, self.down, self.encoders, self.bottleneck, self.decoders)
        return rgb + self.head(x)[:, :, :height, :width]
