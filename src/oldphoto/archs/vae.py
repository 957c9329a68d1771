"""The variational autoencoder used twice by global restoration: VAE_A (old photos) and VAE_B (clean photos).

Wan et al. encode each domain into a latent map at a quarter of the image resolution; restoration then
happens in latent space (see :mod:`oldphoto.archs.mapping`). Resolution changes are space-to-depth
folds (``pixel_unshuffle``/``pixel_shuffle``), which lose nothing on the way down, so the decoder can
give back fine grain and edges, and no convolution runs at full resolution, which keeps the network
cheap on a CPU. Tiles that start on the 4-pixel grid fold exactly as the whole image does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.archs.blocks import ConvBlock, pad_to_multiple


@dataclass(frozen=True)
class VAEConfig:
    channels: tuple[int, int] = (32, 64)
    """Feature channels at half and quarter resolution."""
    latent_channels: int = 64
    """Channels of the latent map (at a quarter of the image resolution)."""
    blocks: int = 1
    """Residual blocks at quarter resolution, in the encoder and again in the decoder."""


class Encoder(nn.Module):
    """(N, 3, H, W) RGB in [0, 1], H and W multiples of 4 -> mean and log-variance, each (N, L, H/4, W/4)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        half, quarter = config.channels
        self.half_in = nn.Conv2d(3 * 4, half, 3, padding=1)
        self.half_res = ConvBlock(half, half)
        self.quarter_in = nn.Conv2d(half * 4, quarter, 3, padding=1)
        self.quarter_res = nn.Sequential(*(ConvBlock(quarter, quarter) for _ in range(config.blocks)))
        self.to_moments = nn.Conv2d(quarter, 2 * config.latent_channels, 1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.half_res(self.act(self.half_in(F.pixel_unshuffle(rgb - 0.5, 2))))
        x = self.quarter_res(self.act(self.quarter_in(F.pixel_unshuffle(x, 2))))
        mean, log_variance = self.to_moments(x).chunk(2, dim=1)
        return mean, log_variance.clamp(-12.0, 6.0)


class Decoder(nn.Module):
    """(N, L, h, w) latent -> (N, 3, 4h, 4w) RGB, nominally in [0, 1] (not clamped: losses see the raw value)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        half, quarter = config.channels
        self.from_latent = nn.Conv2d(config.latent_channels, quarter, 1)
        self.quarter_res = nn.Sequential(*(ConvBlock(quarter, quarter) for _ in range(config.blocks)))
        self.to_half = nn.Conv2d(quarter, half * 4, 3, padding=1)
        self.half_res = ConvBlock(half, half)
        self.to_rgb = nn.Conv2d(half, 3 * 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.quarter_res(self.act(self.from_latent(latent)))
        x = self.half_res(F.pixel_shuffle(self.to_half(x), 2))
        return F.pixel_shuffle(self.to_rgb(x), 2) + 0.5


class VAE(nn.Module):
    """Encoder + decoder. ``forward`` reconstructs (N, 3, H, W) in [0, 1] at any H, W (padded internally)."""

    latent_scale = 4
    """Image pixels per latent cell along each axis (two space-to-depth folds): the one home of this fact."""
    size_multiple = latent_scale

    def __init__(self, config: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W), H, W multiples of 4 -> (mean, log_variance), each (N, L, H/4, W/4)."""
        return self.encoder(rgb)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x, (height, width) = pad_to_multiple(rgb, self.size_multiple)
        mean, _ = self.encode(x)
        return self.decode(mean)[:, :, :height, :width]


def sample_latent(mean: torch.Tensor, log_variance: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The reparameterisation trick: mean + sigma * noise (noise from ``generator`` for reproducibility)."""
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(0.5 * log_variance) * noise


def kl_divergence(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), averaged over every latent element (a scalar)."""
    return 0.5 * torch.mean(mean.square() + log_variance.exp() - 1.0 - log_variance)
