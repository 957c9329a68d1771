"""Face gate: how much of the face refiner's correction an aligned face should get.

A sharp, clean face must come back as the global stage left it, while a blurred, noisy one should take the refiner's
correction in full. Hand-made measures of blur or noise do not separate the two (blur lowers a noise estimate; the
refiner removes fine detail from sharp and damaged faces alike), so this small CNN learns the blend from pairs: it
sees the face before the global stage, after it, and as the refiner made it, and predicts the strength ``a`` in
[0, 1] that brings ``x + a * (r - x)`` closest to the clean face (``oldphoto train face-gate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FaceGateConfig:
    channels: tuple[int, ...] = (16, 24, 32, 48, 64)
    """Feature channels of the stride-2 stages (256 -> 8 px for five stages)."""
    initial_strength: float = 0.5
    """The strength an untrained gate gives every face (its output bias)."""


class FaceGate(nn.Module):
    """(original, restored, refined), each (N, 3, S, S) in [0, 1] -> (N,) strength in [0, 1].

    ``original`` is the aligned face cut from the photo before global restoration, ``restored`` the same face after
    it (the refiner's input), ``refined`` the refiner's output for it.
    """

    size_multiple = 1
    """Any crop size works: the features are pooled over the whole face."""

    def __init__(self, config: FaceGateConfig = FaceGateConfig()) -> None:
        super().__init__()
        self.config = config
        # The inputs and the two differences that carry what the global stage and the refiner changed.
        layers: list[nn.Module] = [nn.Conv2d(15, config.channels[0], 3, padding=1), nn.LeakyReLU(0.1)]
        previous = config.channels[0]
        for width in config.channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            previous = width
        self.features = nn.Sequential(*layers)
        # Mean and standard deviation over the face: how much, and how unevenly, it is degraded.
        self.head = nn.Linear(2 * previous, 1)
        nn.init.zeros_(self.head.weight)
        strength = min(max(config.initial_strength, 1e-3), 1 - 1e-3)
        nn.init.constant_(self.head.bias, float(torch.logit(torch.tensor(strength))))

    def forward(self, original: torch.Tensor, restored: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(original, restored, refined))

    def logits(self, original: torch.Tensor, restored: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
        """(N,) the strength before the sigmoid (training takes its loss here, where the gradient never vanishes)."""
        images = torch.cat([original, restored, refined], dim=1) * 2 - 1
        # The differences are small (a few levels on a clean face): scaled up so they weigh like the images.
        changes = torch.cat([restored - original, refined - restored], dim=1) * 4
        features = self.features(torch.cat([images, changes], dim=1)).float()
        pooled = torch.cat([features.mean(dim=(2, 3)), features.std(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]
