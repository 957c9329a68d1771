"""Layers shared by several networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (N, C, H, W) on the bottom/right up to a multiple; returns the padded tensor and (H, W)."""
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h or pad_w:
        # Reflection needs the pad to be smaller than the side; fall back to replicate for tiny inputs.
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling (Zhang, "Making Convolutional Networks Shift-Invariant Again"):
    a fixed depthwise binomial [1, 2, 1] blur, then subsampling. Shapes (N, C, H, W) -> (N, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :]) / 16.0
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).contiguous(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(x, self.kernel, stride=2, groups=self.channels)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with LeakyReLU and a residual path. (N, C_in, H, W) -> (N, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        y = self.conv2(y)
        return self.act(y + self.skip(x))


def unet_pass(
    x: torch.Tensor, down: nn.ModuleList, encoders: nn.ModuleList, middle: nn.Module, decoders: nn.ModuleList
) -> torch.Tensor:
    """The U-Net body the scratch detector, the detail fusion and the ablation share: each level saves a skip, then
    downsamples and encodes; ``middle`` runs at the coarsest level; each decoder takes the bilinearly upsampled
    features beside the skip of its level. (N, C, H, W) -> (N, C', H, W)."""
    skips = []
    for downsample, encoder in zip(down, encoders):
        skips.append(x)
        x = encoder(downsample(x))
    x = middle(x)
    for decoder, skip in zip(reversed(decoders), reversed(skips)):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = decoder(torch.cat([x, skip], dim=1))
    return x
