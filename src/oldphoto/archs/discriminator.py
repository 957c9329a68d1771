"""Patch discriminator on VAE latents: the adversary that aligns real-old and synthetic-old latents.

Training-only (Wan et al. Sec. 3.2: a latent-space adversarial loss closes the domain gap between real
old photos R and synthetic degraded photos X inside VAE_A).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LatentDiscriminatorConfig:
    latent_channels: int = 64
    width: int = 64
    layers: int = 3


class LatentDiscriminator(nn.Module):
    """(N, L, h, w) latent -> (N, 1, h', w') realness scores (unbounded; used with a least-squares loss)."""

    def __init__(self, config: LatentDiscriminatorConfig = LatentDiscriminatorConfig()) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = config.latent_channels
        for i in range(config.layers):
            layers += [nn.Conv2d(channels, config.width, 3, stride=2 if i < 2 else 1, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            channels = config.width
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)
