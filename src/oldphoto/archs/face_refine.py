"""Face refinement network: an encoder-decoder whose decoder is modulated by the degraded face (SPADE).

Wan et al. refine faces with a SPADE-style generator that takes the degraded face as its spatial
condition: every decoder block normalises its features and re-scales/shifts them per pixel with maps
predicted from the degraded face at that block's resolution, so the face's layout steers the result
at every scale. Here the encoder folds the 256x256 aligned crop space-to-depth three times (to 32x32),
and the decoder unfolds it with SPADE residual blocks and encoder skips, predicting a residual that is
added to the input. Sized for a CPU: about 0.1 s per face on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.archs.blocks import ConvBlock


@dataclass(frozen=True)
class FaceRefineConfig:
    channels: tuple[int, int, int] = (32, 64, 128)
    """Feature channels at 1/2, 1/4 and 1/8 of the crop size."""
    blocks: int = 2
    """Residual blocks at 1/8 resolution."""
    condition_hidden: int = 32
    """Hidden channels of the SPADE modulation predictors."""


class SPADE(nn.Module):
    """Parameter-free instance normalisation, then a per-pixel scale and shift predicted from the condition.
    features (N, C, h, w), condition (N, 3, H, W) -> (N, C, h, w)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, features: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        condition = F.interpolate(condition, size=features.shape[-2:], mode="area")
        hidden = self.shared(condition)
        return self.norm(features) * (1 + self.gamma(hidden)) + self.beta(hidden)


class SPADEResBlock(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.spade1 = SPADE(channels, hidden)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.spade2 = SPADE(channels, hidden)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=False)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.act(self.spade1(x, condition)))
        y = self.conv2(self.act(self.spade2(y, condition)))
        return x + y


class FaceRefiner(nn.Module):
    """(N, 3, S, S) aligned face in [0, 1], S a multiple of 8 -> (N, 3, S, S) refined face (unclamped).

    ``condition`` (N, 3, S, S) in [0, 1], default the face itself, is what the SPADE blocks modulate with: in
    ``restore`` the same face cut from the photo *before* global restoration, which still holds the detail
    the global stage smoothed away, while ``face`` is the globally restored crop the residual is added to.
    """

    size_multiple = 8

    def __init__(self, config: FaceRefineConfig = FaceRefineConfig()) -> None:
        super().__init__()
        self.config = config
        c0, c1, c2 = config.channels
        hidden = config.condition_hidden
        self.in0 = nn.Conv2d(3 * 4, c0, 3, padding=1)
        self.enc0 = ConvBlock(c0, c0)
        self.in1 = nn.Conv2d(c0 * 4, c1, 3, padding=1)
        self.enc1 = ConvBlock(c1, c1)
        self.in2 = nn.Conv2d(c1 * 4, c2, 3, padding=1)
        self.bottleneck = nn.Sequential(*(ConvBlock(c2, c2) for _ in range(config.blocks)))
        self.dec2 = SPADEResBlock(c2, hidden)
        self.up1 = nn.Conv2d(c2, c1 * 4, 3, padding=1)
        self.dec1 = SPADEResBlock(c1, hidden)
        self.up0 = nn.Conv2d(c1, c0 * 4, 3, padding=1)
        self.dec0 = SPADEResBlock(c0, hidden)
        self.to_rgb = nn.Conv2d(c0, 3 * 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, face: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        condition = (face if condition is None else condition) - 0.5
        skip0 = self.enc0(self.act(self.in0(F.pixel_unshuffle(face - 0.5, 2))))
        skip1 = self.enc1(self.act(self.in1(F.pixel_unshuffle(skip0, 2))))
        x = self.bottleneck(self.act(self.in2(F.pixel_unshuffle(skip1, 2))))
        x = self.dec2(x, condition)
        x = self.dec1(F.pixel_shuffle(self.up1(x), 2) + skip1, condition)
        x = self.dec0(F.pixel_shuffle(self.up0(x), 2) + skip0, condition)
        return face + F.pixel_shuffle(self.to_rgb(x), 2)
