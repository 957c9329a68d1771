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

from oldphoto.archs.blocks import BlurPool, ConvBlock, pad_to_multiple, unet_pass


@dataclass(frozen=True)
class ScratchUNetConfig:
    channels: tuple[int, ...] = (16, 32, 48, 64)
    """Feature channels per U-Net level, finest first; each further level halves the resolution."""
    space_to_depth: int = 2
    context_dilations: tuple[int, ...] = ()
    """Dilated residual blocks at the coarsest level, one per dilation: a receptive field of several hundred
    pixels for large blotches and long faint cracks, at almost no cost (that level has 1/1024 of the pixels)."""


class DilatedContext(nn.Module):
    """Residual 3x3 convolutions with growing dilation. (N, C, h, w) -> (N, C, h, w).

    Each block's second convolution starts at zero, so a network grown from weights without the context
    starts exactly where those weights were.
    """

    def __init__(self, channels: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=d, dilation=d),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(channels, channels, 3, padding=d, dilation=d),
            )
            for d in dilations
        )
        for block in self.blocks:
            nn.init.zeros_(block[-1].weight)
            nn.init.zeros_(block[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return x


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
        self.context = DilatedContext(channels[-1], config.context_dilations)
        self.head = nn.Conv2d(channels[0], fold * fold, 1)

    @property
    def size_multiple(self) -> int:
        return self.config.space_to_depth * 2 ** (len(self.config.channels) - 1)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        x, (height, width) = pad_to_multiple(gray, self.size_multiple)
        x = F.pixel_unshuffle(x - 0.5, self.config.space_to_depth)
        x = self.stem(x)
        x = unet_pass(x, self.down, self.encoders, self.context, self.decoders)
        logits = F.pixel_shuffle(self.head(x), self.config.space_to_depth)
        return logits[:, :, :height, :width]
