"""Stage 1: find structured damage (scratches, cracks, dust, hairs, tears)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

from oldphoto.errors import ConfigError
from oldphoto.imageio import to_luminance
from oldphoto.registry import ModelSpec
from oldphoto.runtime import Runtime
from oldphoto.tiling import tile_stage
from oldphoto.weights import LoadedModel


def check_detection_overrides(threshold: float | None, dilation: int | None) -> None:
    """Refuse a ``--scratch-threshold`` outside (0, 1) or a negative ``--mask-dilation`` (None: the registry's).

    Raises:
        ConfigError: with what the value must be.
    """
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ConfigError(f"scratch threshold {threshold} must be between 0 and 1 (exclusive)")
    if dilation is not None and dilation < 0:
        raise ConfigError(f"mask dilation {dilation} must be 0 or more pixels")


def detection_settings(spec: ModelSpec, threshold: float | None = None, dilation: int | None = None) -> tuple[float, int]:
    """(threshold, dilation) of a detection run: the given values where set (``--scratch-threshold``,
    ``--mask-dilation``), else the detector's registry settings (chosen on validation data). The one place where
    these are resolved.

    Raises:
        ConfigError: a given value is out of range (:func:`check_detection_overrides`).
    """
    check_detection_overrides(threshold, dilation)
    chosen_threshold = float(spec.settings["threshold"]) if threshold is None else threshold
    chosen_dilation = int(spec.settings.get("dilation", 0)) if dilation is None else dilation
    return chosen_threshold, chosen_dilation


def scratch_probability(
    pixels: np.ndarray,
    model: LoadedModel,
    runtime: Runtime,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Per-pixel damage probability: (H, W, 1|3) float32 in [0, 1] -> (H, W) float32 in [0, 1].

    ``model`` is the detector placed for ``runtime`` (:func:`~oldphoto.weights.load_model`): its network maps
    (1, 1, h, w) luma in [0, 1] to logits; its contract gives the tile grid and the least tile overlap.
    """
    luma = torch.from_numpy(np.ascontiguousarray(to_luminance(pixels)[:, :, 0]))[None, None]
    network = model.network
    probability = tile_stage(
        # Logits to float32 first: under bf16 autocast the sigmoid would otherwise round probabilities to 3 digits.
        lambda tile: torch.sigmoid(network(tile).float()),
        luma,
        runtime,
        min_overlap=model.contract.min_tile_overlap,
        multiple_of=model.contract.size_multiple,
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
    model: LoadedModel,
    runtime: Runtime,
    *,
    threshold: float,
    dilation: int = 0,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Scratch mask of a photo: (H, W, 1|3) float in [0, 1] -> (H, W) float32 of 0/1 (1 = damaged), at
    ``threshold`` and grown by ``dilation`` pixels (see :func:`detection_settings` for the run's values)."""
    return threshold_mask(scratch_probability(pixels, model, runtime, on_tile), threshold, dilation)
