"""Clean-photo crops with synthetic damage made on the fly by :mod:`oldphoto.degrade`."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from oldphoto.degrade import DamageStamps, Preset, degrade_image
from oldphoto.errors import DataError, OldPhotoError
from oldphoto.imageio import is_image_path, load_rgb

log = logging.getLogger(__name__)


HELD_OUT_EVERY = 20
"""Every 20th file (sorted by path) of a training folder is held out: for validation and final evaluation."""


def split_held_out(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(training, held-out): every HELD_OUT_EVERY-th file, starting with the first, is held out."""
    return [f for i, f in enumerate(files) if i % HELD_OUT_EVERY], [f for i, f in enumerate(files) if i % HELD_OUT_EVERY == 0]


def to_batch(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """(B, H, W, C) float32 images (a list or one array) -> a contiguous (B, C, H, W) tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def list_images(folders: Sequence[str | Path]) -> list[Path]:
    files = sorted(p for folder in folders for p in Path(folder).rglob("*") if p.is_file() and is_image_path(p))
    if not files:
        raise DataError(f"no images found under {', '.join(map(str, folders))}")
    return files


def readable_images(files: Sequence[Path]) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, (H, W, 3) float32 RGB) of each file that can be read; unreadable ones are logged and skipped."""
    for path in files:
        try:
            yield path, load_rgb(path)
        except OldPhotoError as error:
            log.warning("skipping %s", error)


class CropPool:
    """Clean photos held in memory (long side capped at ``max_side``) to cut random crops from.

    Images smaller than the crop are upscaled; images are stored as uint8 to keep memory modest.
    """

    def __init__(self, files: Sequence[Path], crop: int, max_side: int = 1024) -> None:
        self.crop = crop
        self.images: list[np.ndarray] = []
        for _, image in readable_images(files):
            height, width = image.shape[:2]
            scale = min(1.0, max_side / max(height, width))
            scale = max(scale, crop / min(height, width))
            if scale != 1.0:
                size = (max(crop, round(width * scale)), max(crop, round(height * scale)))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
            self.images.append(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))
        if not self.images:
            raise DataError("none of the training images could be read")

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A random (crop, crop, 3) float32 RGB crop in [0, 1], randomly flipped."""
        image = self.images[int(rng.integers(len(self.images)))]
        height, width = image.shape[:2]
        y = int(rng.integers(0, height - self.crop + 1))
        x = int(rng.integers(0, width - self.crop + 1))
        crop = image[y : y + self.crop, x : x + self.crop]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return crop.astype(np.float32) / 255.0


def damaged_batch(
    pool: CropPool,
    preset: Preset | Sequence[Preset],
    stamps: DamageStamps | None,
    rng: np.random.Generator,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean, degraded, mask) tensors: (B, 3, H, W), (B, 3, H, W) in [0, 1] and (B, 1, H, W) of 0/1.

    With several presets, each sample's preset is drawn uniformly.
    """
    presets = [preset] if isinstance(preset, Preset) else list(preset)
    clean, degraded, mask = [], [], []
    for _ in range(batch_size):
        chosen = presets[int(rng.integers(len(presets)))] if len(presets) > 1 else presets[0]
        sample = degrade_image(pool.sample(rng), chosen, rng, stamps)
        clean.append(sample.clean)
        degraded.append(sample.degraded)
        mask.append(sample.mask[:, :, None])
    return to_batch(clean), to_batch(degraded), to_batch(mask)


def image_batch(pool: CropPool, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
    """(B, 3, H, W) float32 crops in [0, 1], as they are (no damage added)."""
    return to_batch([pool.sample(rng) for _ in range(batch_size)])
