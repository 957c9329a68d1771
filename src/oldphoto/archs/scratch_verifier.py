"""Scratch verifier: is a component of the detector's mask damage, or scene content the detector took for it?

The detector's U-Net decides pixel by pixel, and on real photos it still marks compact bright or dark scene content
(white flowers, a hair ornament, a blown-out sky against foliage) that the later stages then paint over. Whether a
mark is damage is easier to judge from the whole mark and its surroundings: its shape and size, how it sits in the
scene, whether the scene's grain and blur run through it. This small CNN sees one connected component of the mask
at a time, cropped with context and resized to a fixed size, plus a few numbers about it (size, shape, brightness
against its surroundings), and says how likely it is to be damage (``oldphoto train scratch-verifier``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

COMPONENT_CHANNELS = 3
"""The crop's channels: photo luma, detector probability, this component's own pixels (all in [0, 1])."""
COMPONENT_SCALARS = 10
"""Numbers per component (see :func:`oldphoto.restore.scratches.component_features`)."""


@dataclass(frozen=True)
class ScratchVerifierConfig:
    crop: int = 64
    """Side of the square crop (pixels) each component is resized into."""
    channels: tuple[int, ...] = (16, 24, 32, 48, 64)
    """Feature channels: a stride-1 stem, then stride-2 stages (64 -> 4 px for the last four)."""
    hidden: int = 64
    """Width of the head that joins the pooled crop features and the scalars."""
    native_patch: bool = False
    """Also see a ``crop``-pixel square at the photo's own resolution around the component's most probable pixel
    (three more channels): the context crop shrinks a long line until its edges and grain are gone."""


class ScratchVerifier(nn.Module):
    """(crops (N, 3 or 6, S, S) in [0, 1], scalars (N, 10)) -> (N,) logits; sigmoid = probability of damage.

    ``S`` is ``config.crop``; the crops and scalars come from
    :func:`oldphoto.restore.scratches.component_features`.
    """

    size_multiple = 1

    def __init__(self, config: ScratchVerifierConfig = ScratchVerifierConfig()) -> None:
        super().__init__()
        self.config = config
        inputs = 2 * COMPONENT_CHANNELS if config.native_patch else COMPONENT_CHANNELS
        layers: list[nn.Module] = [nn.Conv2d(inputs, config.channels[0], 3, padding=1), nn.LeakyReLU(0.1)]
        previous = config.channels[0]
        for width in config.channels[1:]:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.scalars = nn.Sequential(nn.Linear(COMPONENT_SCALARS, 32), nn.LeakyReLU(0.1))
        # Mean and max over the crop: the component's overall look, and its most telling spot.
        self.head = nn.Sequential(nn.Linear(2 * previous + 32, config.hidden), nn.LeakyReLU(0.1), nn.Linear(config.hidden, 1))

    def forward(self, crops: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        features = self.features(crops * 2 - 1).float()
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3)), self.scalars(scalars.float())], dim=1)
        return self.head(pooled)[:, 0]
