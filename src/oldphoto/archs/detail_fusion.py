"""Detail fusion: the triplet's learned, mask-gated way back to the photo's own detail.

The triplet (VAE_A -> mapping -> VAE_B) repaints the whole photo through a latent bottleneck at a quarter of
its resolution, which removes noise and fills damage but also smooths texture that was never damaged. This
network sees the photo ``x``, the triplet's result ``t`` and the damage mask ``m``, and predicts per pixel

- a gate ``g`` in [0, 1]: how much of the photo's own pixel to take back (1 = keep the photo, 0 = keep the
  triplet's repaint), forced to 0 on (slightly grown) detected damage, so that damage is never passed through;
- a residual ``r``: a correction on top (detail the triplet lost where the photo is too noisy to copy).

``out = t + g * (x - t) + r``. Both are learned from the training pairs, which include undamaged crops whose
target is the photo itself: a sharp clean scan is left nearly alone, a grainy or blurred one is still restored.
A hand-made gate from a global noise estimate would gate the wrong way (a blurred photo measures as clean).

It starts as today's triplet: the residual head is zero and the gate's bias gives g = sigmoid(-5) ~ 0.007.
Like the scratch detector it works at half resolution after a space-to-depth fold (cheap on a CPU, no pixel
thrown away), with blur-pooled levels and squeeze-and-excitation gates at the coarsest one for global tone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.archs.blocks import BlurPool, ConvBlock, pad_to_multiple, unet_pass
from oldphoto.archs.mapping import ResidualBlock


@dataclass(frozen=True)
class DetailFusionConfig:
    channels: tuple[int, ...] = (32, 48, 64)
    """Feature channels per level after the 2x2 fold (half resolution first); each further level halves again."""
    bottleneck_blocks: int = 2
    """Residual blocks with pooled (squeeze-and-excitation) gates at the coarsest level."""
    gate_bias: float = -5.0
    """Initial gate logit: sigmoid(-5) ~ 0.007, so a fresh network returns (almost exactly) the triplet's result."""
    mask_growth: int = 2
    """The gate is forced to 0 within this many pixels of detected damage (its soft edges)."""


class DetailFusion(nn.Module):
    """``forward(photo, triplet, damage)``: (N, 3, H, W) photo in [0, 1], (N, 3, H, W) triplet result in [0, 1],
    (N, 1, H, W) damage mask of 0/1 (1 = damaged) -> (N, 3, H, W) restored RGB (unclamped).

    Any H, W: inputs are reflect-padded to :attr:`size_multiple` and the output cropped back.
    """

    def __init__(self, config: DetailFusionConfig = DetailFusionConfig()) -> None:
        super().__init__()
        self.config = config
        channels = config.channels
        # photo, triplet, photo - triplet and mask, folded 2x2: 10 * 4 channels.
        self.stem = nn.Conv2d(10 * 4, channels[0], 3, padding=1)
        self.down = nn.ModuleList(BlurPool(c) for c in channels[:-1])
        self.encoders = nn.ModuleList(ConvBlock(channels[i], channels[i + 1]) for i in range(len(channels) - 1))
        self.bottleneck = nn.Sequential(*(ResidualBlock(channels[-1]) for _ in range(config.bottleneck_blocks)))
        self.decoders = nn.ModuleList(ConvBlock(channels[i + 1] + channels[i], channels[i]) for i in range(len(channels) - 1))
        # Per output pixel (unfolded): 1 gate logit + 3 residual channels.
        self.head = nn.Conv2d(channels[0], 4 * 4, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            bias = torch.zeros(4, 4)
            bias[0] = config.gate_bias
            self.head.bias.copy_(bias.flatten())  # pixel_shuffle groups channel c*4 + k: gate = channels 0..3
        self.act = nn.LeakyReLU(0.2, inplace=True)

    @property
    def size_multiple(self) -> int:
        return 2 * 2 ** (len(self.config.channels) - 1)

    def gate_and_residual(self, photo: torch.Tensor, triplet: torch.Tensor, damage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gate (N, 1, H, W) in [0, 1] (0 on grown damage) and residual (N, 3, H, W) for padded inputs."""
        x = torch.cat([photo - 0.5, triplet - 0.5, photo - triplet, damage], dim=1)
        x = self.act(self.stem(F.pixel_unshuffle(x, 2)))
        x = unet_pass(x, self.down, self.encoders, self.bottleneck, self.decoders)
        out = F.pixel_shuffle(self.head(x), 2)
        growth = self.config.mask_growth
        grown = F.max_pool2d(damage, 2 * growth + 1, stride=1, padding=growth) if growth > 0 else damage
        gate = torch.sigmoid(out[:, :1]) * (1.0 - grown)
        return gate, out[:, 1:]

    def forward(self, photo: torch.Tensor, triplet: torch.Tensor, damage: torch.Tensor) -> torch.Tensor:
        x, (height, width) = pad_to_multiple(torch.cat([photo, triplet, damage], dim=1), self.size_multiple)
        photo_p, triplet_p, damage_p = x[:, :3], x[:, 3:6], x[:, 6:]
        gate, residual = self.gate_and_residual(photo_p, triplet_p, damage_p)
        out = triplet_p + gate * (photo_p - triplet_p) + residual
        return out[:, :, :height, :width]
