"""Latent mapping T: VAE_A latents (old photo) -> VAE_B latents (clean photo), with a partial non-local block.

As in Wan et al. (Sec. 3.3): a *local* branch of residual blocks restores unstructured damage (noise,
blur, fading), a *global* branch with a partial non-local block fills structured damage by attending
only to undamaged positions, and the two are fused by the damage mask (local outside, global inside).

Memory bound. The reference block forms an N x N attention matrix over all N latent positions (about
124 GiB for a 2-megapixel photo). Here the keys and values are masked-average-pooled onto a grid of at
most ``key_grid`` x ``key_grid`` cells, each cell weighted by the fraction of undamaged pixels in it,
and the queries are processed in chunks of ``query_chunk``. The attention matrix therefore never holds
more than ``query_chunk * key_grid**2`` scores (4096 x 1024 floats = 16 MiB with the defaults),
whatever the size of the image; the rest of the network is convolutional.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MappingConfig:
    latent_channels: int = 64
    """Channels of the VAE latents (both VAEs use the same count)."""
    width: int = 64
    """Feature channels inside the mapping."""
    shared_blocks: int = 1
    """Residual blocks before the split into branches."""
    local_blocks: int = 3
    global_blocks: int = 1
    attention_channels: int = 16
    key_grid: int = 32
    """Keys and values are pooled onto at most key_grid x key_grid cells."""
    query_chunk: int = 4096
    """Queries attended at once; with key_grid this bounds the attention memory."""
    context_levels: int = 0
    """Coarser levels after the local blocks (a small U-Net in latent space, each level half the resolution and
    twice the width): context for blur, fading and casts wider than the local blocks' window. 0 = none."""
    context_blocks: int = 1
    """Residual blocks on each coarser level."""


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a squeeze-and-excitation gate, whose pooled statistics let the block
    correct global tone and colour (fading, casts) that a 3x3 window cannot see. (N, C, h, w) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        hidden = max(4, channels // 4)
        self.gate = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        scale = torch.sigmoid(self.gate(y.mean(dim=(2, 3))))[:, :, None, None]
        return x + y * scale


class PartialNonLocal(nn.Module):
    """Attention in which every position draws only from undamaged positions.

    ``features`` (N, C, h, w); ``damage`` (N, 1, h, w) in [0, 1], 1 = damaged. Returns (N, C, h, w):
    the input plus the attended values.
    """

    def __init__(self, channels: int, attention_channels: int, key_grid: int, query_chunk: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, attention_channels, 1)
        self.key = nn.Conv2d(channels, attention_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.key_grid = key_grid
        self.query_chunk = query_chunk
        self.scale = 1.0 / math.sqrt(attention_channels)

    def _pooled(self, features: torch.Tensor, intact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys (N, K, a), values (N, K, C) and the intact fraction (N, K) of each key cell."""
        keys, values = self.key(features), self.value(features)
        height, width = features.shape[-2:]
        grid = (min(height, self.key_grid), min(width, self.key_grid))
        # Masked average: damaged positions contribute nothing to a cell (at full resolution, when the grid
        # is the latent itself, this zeroes their keys and values).
        weight = F.adaptive_avg_pool2d(intact, grid)
        keys = F.adaptive_avg_pool2d(keys * intact, grid) / weight.clamp_min(1e-6)
        values = F.adaptive_avg_pool2d(values * intact, grid) / weight.clamp_min(1e-6)
        return keys.flatten(2).transpose(1, 2), values.flatten(2).transpose(1, 2), weight.flatten(1)

    def forward(self, features: torch.Tensor, damage: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        keys, values, intact = self._pooled(features, 1.0 - damage)
        # log(intact fraction): partly damaged cells count less, fully damaged ones get exactly zero weight
        # (a finite -1e4 rather than -inf, so a fully damaged tile gives zeros instead of NaNs).
        key_bias = torch.where(intact > 0, torch.log(intact.clamp_min(1e-6)), torch.full_like(intact, -1e4))[:, None, :]
        # The scale goes on the small query tensor and the bias is added inside the matrix product, so the
        # (chunk x K) score matrix is written once rather than three times (a third of the block's time on CPU).
        queries = (self.query(features) * self.scale).flatten(2).transpose(1, 2)
        keys_t = keys.transpose(1, 2)
        attended = []
        for start in range(0, height * width, self.query_chunk):
            scores = torch.baddbmm(key_bias, queries[:, start : start + self.query_chunk], keys_t)
            attended.append(torch.bmm(torch.softmax(scores, dim=-1), values))
        result = torch.cat(attended, dim=1).transpose(1, 2).reshape(batch, channels, height, width)
        return features + self.out(result)


class CoarseContext(nn.Module):
    """A small U-Net over latent features: ``levels`` stride-2 steps down (channels doubled each time), residual
    blocks on each coarser level, and back up by bilinear upsampling added to the finer level.

    (N, C, h, w) -> (N, C, h, w). The projections back up start at zero, so a freshly added context is the
    identity and a network grown from weights without it starts exactly where those weights were.
    """

    def __init__(self, channels: int, levels: int, blocks: int) -> None:
        super().__init__()
        widths = [channels * 2**level for level in range(levels + 1)]
        self.down = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(levels))
        self.stages = nn.ModuleList(
            nn.Sequential(*(ResidualBlock(widths[i + 1]) for _ in range(blocks))) for i in range(levels)
        )
        self.up = nn.ModuleList(nn.Conv2d(widths[i + 1], widths[i], 1) for i in range(levels))
        for projection in self.up:
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        finer = []
        for down, stage in zip(self.down, self.stages):
            finer.append(x)
            x = stage(self.act(down(x)))
        for up, skip in zip(reversed(self.up), reversed(finer)):
            # A 1x1 projection commutes with bilinear upsampling (whose weights sum to one), so it runs first, at
            # the coarse resolution, and the upsampling moves half the channels.
            x = skip + F.interpolate(up(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return x


class LatentMapping(nn.Module):
    """(N, L, h, w) VAE_A latent and (N, 1, h, w) damage mask at latent resolution -> (N, L, h, w) VAE_B latent.

    The mask is 1 where the photo has structured damage (scratch detector output, max-pooled to the
    latent grid); pass zeros when no mask is known, and the output is the local branch alone.
    """

    def __init__(self, config: MappingConfig = MappingConfig()) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.inp = nn.Conv2d(config.latent_channels + 1, width, 3, padding=1)
        self.shared = nn.Sequential(*(ResidualBlock(width) for _ in range(config.shared_blocks)))
        self.local_branch = nn.Sequential(*(ResidualBlock(width) for _ in range(config.local_blocks)))
        self.context = CoarseContext(width, config.context_levels, config.context_blocks)
        self.non_local = PartialNonLocal(width, config.attention_channels, config.key_grid, config.query_chunk)
        self.global_branch = nn.Sequential(*(ResidualBlock(width) for _ in range(config.global_blocks)))
        self.out = nn.Conv2d(width, config.latent_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    @property
    def size_multiple(self) -> int:
        """Latent sizes (and tile starts) on this grid keep every stride-2 phase aligned with the whole image's."""
        return 2**self.config.context_levels

    def forward(self, latent: torch.Tensor, damage: torch.Tensor) -> torch.Tensor:
        x = self.shared(self.act(self.inp(torch.cat([latent, damage], dim=1))))
        local = self.context(self.local_branch(x))
        if not bool(damage.any()):
            return self.out(local)
        global_ = self.global_branch(self.non_local(x, damage))
        return self.out(local * (1.0 - damage) + global_ * damage)


def latent_damage(mask: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, 1, H, W) pixel mask in [0, 1] -> (N, 1, H/scale, W/scale): a latent cell is damaged if any pixel is."""
    return F.max_pool2d(mask, scale, scale)
