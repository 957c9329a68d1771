"""Keep the photo's own tone (sepia, cyanotype, gold or selenium toning) through restoration.

The restoration networks were trained on neutral targets, so they pull a toned print towards grey. This step
puts the tone back: the result is the restored photo's luminance with the *source's* chroma. The chroma is taken
at low resolution only, because a toned print's colour varies slowly, while the damage in it (colour noise,
stains, scratches, JPEG chroma blocks) is fine detail that must not come back.

Rather than copy the blurred chroma as an offset, each low-resolution neighbourhood fits the source's chroma as an
affine function of its luminance (chroma = a * Y + b, a guided filter computed at low resolution, He et al. 2013)
and applies that function to the restored luminance. Toning depends on density: sepia is roughly a multiplicative
tint (b = 0), a cyanotype goes from Prussian blue in the shadows to paper white (a and b both non-zero), a split
tone changes hue from shadows to highlights. A fit reproduces all three, and an edge between two tones (dark sky
against a pale mountain) keeps its tone on both sides instead of bleeding an average across it. Where the source
is flat the fit has nothing to go on and falls back to the plain average chroma (``EPSILON``).
"""

from __future__ import annotations

import cv2
import numpy as np

from oldphoto.errors import DataError
from oldphoto.imageio import LUMA_WEIGHTS

LOW_RES_SIDE = 96
"""The chroma model is fitted on the photo shrunk so that its long side is this many pixels ..."""
MIN_SHRINK = 4
"""... and by at least this factor, so that on a small photo the fit still averages over more than its grain."""
LOW_RES_SIGMA = 1.5
"""Gaussian window of the fit, in low-resolution pixels (~1/60 of the long side at full resolution, or ~6 px)."""
EPSILON = 1e-3
"""Regularises the slope: neighbourhoods whose luminance variance is well below this (standard deviation under
~0.03) get the average chroma as an offset rather than a slope fitted to their noise."""
"""Rec. 601, as :func:`oldphoto.imageio.to_luminance`, so the luminance kept is the one black-and-white output uses."""


def keep_tone(source: np.ndarray, restored: np.ndarray, damage: np.ndarray | None = None) -> np.ndarray:
    """The restored photo's luminance in the source photo's own colour (chroma smoothed at low resolution).

    Args:
        source: the photo before restoration, (H, W, 3) float in [0, 1]; (H, W) or (H, W, 1) means black and white.
        restored: the restored photo, (H, W, 3), (H, W, 1) or (H, W) float in [0, 1], the size of ``source``.
        damage: optional (H, W) mask in [0, 1], 1 = damaged (the scratch mask); damaged pixels are left out of the
            chroma fit, so a white scratch or a stain does not pull the tone around it.

    Returns:
        (H, W, 3) float32 in [0, 1] whose Rec. 601 luminance is the restored photo's (to float precision); or
        ``restored`` itself, unchanged, when ``source`` is black and white (it has no tone to keep). A colour
        source whose chroma is neutral gives the restored luminance in neutral grey: the tone kept is the one the
        photo has, and that includes none (the pipeline already keeps black-and-white prints stored as colour grey).
        Where keeping the chroma would leave [0, 1] (a saturated tone on near-black or near-white), the chroma is
        scaled down rather than the channels clipped, so the hue and the luminance stay as they are.
    """
    if source.ndim == 2 or source.shape[2] == 1:
        return restored
    restored_channels = 1 if restored.ndim == 2 else restored.shape[2]
    if source.shape[:2] != restored.shape[:2] or source.shape[2] != 3 or restored_channels not in (1, 3):
        raise DataError(f"cannot keep the tone of a {source.shape} photo on a {restored.shape} restoration")
    height, width = source.shape[:2]
    source = source.astype(np.float32, copy=False)
    source_luma = source @ LUMA_WEIGHTS
    chroma = source - source_luma[:, :, None]  # R-Y, G-Y, B-Y: zero luminance by construction
    weight = np.ones((height, width), np.float32)
    if damage is not None:
        weight -= np.clip(damage.astype(np.float32).reshape(height, width), 0.0, 1.0)

    scale = min(1.0 / MIN_SHRINK, LOW_RES_SIDE / max(height, width))
    low_size = (max(1, round(width * scale)), max(1, round(height * scale)))

    def local_mean(plane: np.ndarray) -> np.ndarray:
        # Area shrink then a small blur: a weighted mean over a window ~1/60 of the photo. Products are shrunk,
        # not shrunk planes multiplied, so the variance and covariance below include detail finer than a low-res pixel.
        low = cv2.resize(plane, low_size, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(low, (0, 0), LOW_RES_SIGMA, borderType=cv2.BORDER_REFLECT)

    total = np.maximum(local_mean(weight), 1e-6)  # a wholly damaged window falls back to neutral (a = b = 0)
    weighted_luma = weight * source_luma
    mean_luma = local_mean(weighted_luma) / total
    variance = np.maximum(local_mean(weighted_luma * source_luma) / total - mean_luma**2, 0.0)
    mean_chroma = local_mean(chroma * weight[:, :, None]) / total[:, :, None]
    covariance = local_mean(chroma * weighted_luma[:, :, None]) / total[:, :, None] - mean_luma[:, :, None] * mean_chroma
    slope = covariance / (variance + EPSILON)[:, :, None]
    offset = mean_chroma - slope * mean_luma[:, :, None]

    luma = restored.reshape(height, width) if restored_channels == 1 else restored @ LUMA_WEIGHTS
    luma = np.clip(luma, 0.0, 1.0).astype(np.float32, copy=False)
    out = np.empty((height, width, 3), np.float32)
    room = np.ones((height, width), np.float32)  # largest chroma scale that keeps every channel in [0, 1]
    for channel in range(3):
        # Bilinear upsampling of the fit's coefficients: smooth, so no low-resolution blocks show.
        up_slope, up_offset = (
            cv2.resize(np.ascontiguousarray(c[:, :, channel]), (width, height), interpolation=cv2.INTER_LINEAR) for c in (slope, offset)
        )
        delta = out[:, :, channel]
        np.multiply(up_slope, luma, out=delta)
        delta += up_offset
        with np.errstate(divide="ignore", invalid="ignore"):
            limit = np.where(delta > 0, (1.0 - luma) / delta, np.where(delta < 0, luma / -delta, np.inf))
        np.minimum(room, limit, out=room)
    # The channels' luma-weighted chroma sums to zero, so scaling it (rather than clipping each channel) keeps the
    # restored luminance exactly and the hue; only the saturation gives way at the ends of the range.
    out *= np.clip(room, 0.0, 1.0)[:, :, None]
    out += luma[:, :, None]
    return np.clip(out, 0.0, 1.0, out=out)
