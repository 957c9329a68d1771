"""Scratch-detection U-Net.

Works at the photo's native resolution: the grayscale input is folded space-to-depth by
``space_to_depth`` (a 2x2 pixel block becomes 4 channels, so no pixel is thrown away, unlike the
reference implementation's resize to a 256-pixel short side), processed by a small U-Net with
anti-aliased (blur-pool) downsampling, and unfolded back to one logit per input pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.archs.blocks import BlurPool, ConvBlock, pad_to_multiple


@dataclass(frozen=True)
class ScratchUNetConfig:
    channels: tuple[int, ...] = (16, 32, 48, 64)
    """Feature channels per U-Net level, finest first; each further level halves the resolution."""
    space_to_depth: int = 2


class ScratchUNet(nn.Module):
    """(N, 1, H, W) grayscale in [0, 1] -> (N, 1, H, W) scratch logits (apply a sigmoid for probabilities).

    Any H, W: the input is reflect-padded to :attr:`size_multiple` and the output cropped back.
    """

    def __init__(self, config: ScratchUNetConfig = ScratchUNetConfig()) -> None:
        super().__init__()
        self.config = config
        fold = config.space_to_depth
        channels = config.channels
        self.stem = ConvBlock(fold * fold, channels[0])
        self.down = nn.ModuleList(BlurPool(c) for c in channels[:-1])
        self.encoders = nn.ModuleList(ConvBlock(channels[i], channels[i + 1]) for i in range(len(channels) - 1))
        self.decoders = nn.ModuleList(
            ConvBlock(channels[i + 1] + channels[i], channels[i]) for i in range(len(channels) - 1)
        )
        self.head = nn.Conv2d(channels[0], fold * fold, 1)

    @property
    def size_multiple(self) -> int:
        return self.config.space_to_depth * 2 ** (len(self.config.channels) - 1)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        x, (height, width) = pad_to_multiple(gray, self.size_multiple)
        x = F.pixel_unshuffle(x - 0.5, self.config.space_to_depth)
        x = self.stem(x)
        skips = []
        for down, encoder in zip(self.down, self.encoders):
            skips.append(x)
            x = encoder(down(x))
        for decoder, skip in zip(reversed(self.decoders), reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        logits = F.pixel_shuffle(self.head(x), self.config.space_to_depth)
        return logits[:, :, :height, :width]
