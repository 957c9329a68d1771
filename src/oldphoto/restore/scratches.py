"""Stage 1: find structured damage (scratches, cracks, dust, hairs, tears)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import nn

from oldphoto.imageio import to_luminance
from oldphoto.registry import ModelSpec
from oldphoto.runtime import Runtime
from oldphoto.tiling import tile_stage


def scratch_probability(
    pixels: np.ndarray,
    network: nn.Module,
    runtime: Runtime,
    *,
    size_multiple: int,
    min_overlap: int,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Per-pixel damage probability.

    Args:
        pixels: (H, W, 1|3) float32 in [0, 1].
        network: maps (1, 1, h, w) luma in [0, 1] to (1, 1, h, w) logits.
        size_multiple, min_overlap: the network's input contract (tile grid, least tile overlap in pixels).

    Returns:
        (H, W) float32 probabilities in [0, 1].
    """
    luma = torch.from_numpy(np.ascontiguousarray(to_luminance(pixels)[:, :, 0]))[None, None]
    network = network.to(device=runtime.device, dtype=runtime.dtype)
    probability = tile_stage(
        # Logits to float32 first: under bf16 autocast the sigmoid would otherwise round probabilities to 3 digits.
        lambda tile: torch.sigmoid(network(tile).float()),
        luma,
        runtime,
        min_overlap=min_overlap,
        multiple_of=size_multiple,
        on_tile=on_tile,
    )
    return probability[0, 0].numpy()


def threshold_mask(probability: np.ndarray, threshold: float, dilation: int = 0) -> np.ndarray:
    """Binary (H, W) float32 mask of 0/1: probability above ``threshold``, grown by ``dilation`` pixels."""
    mask = (probability > threshold).astype(np.uint8)
    if dilation > 0:
        size = 2 * dilation + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return mask.astype(np.float32)


def detect_scratches(
    pixels: np.ndarray,
    network: nn.Module,
    runtime: Runtime,
    *,
    size_multiple: int,
    min_overlap: int,
    threshold: float,
    dilation: int = 0,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Scratch mask of a photo: (H, W, 1|3) float in [0, 1] -> (H, W) float32 of 0/1 (1 = damaged)."""
    probability = scratch_probability(pixels, network, runtime, size_multiple=size_multiple, min_overlap=min_overlap, on_tile=on_tile)
    return threshold_mask(probability, threshold, dilation)


def detect_with_contract(
    pixels: np.ndarray,
    network: nn.Module,
    spec: ModelSpec,
    runtime: Runtime,
    *,
    threshold: float,
    dilation: int = 0,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """:func:`detect_scratches` with the tile grid and overlap taken from ``spec``'s input contract (the registry
    entry ``network`` was loaded from). (H, W, 1|3) float in [0, 1] -> (H, W) float32 of 0/1."""
    contract = spec.contract
    return detect_scratches(
        pixels,
        network,
        runtime,
        size_multiple=contract.size_multiple,
        min_overlap=contract.min_tile_overlap,
        threshold=threshold,
        dilation=dilation,
        on_tile=on_tile,
    )
