"""What a user with only OpenCV would do: the `classical` baseline of `oldphoto evaluate`, and the
inpainting used by `restore --no-global` to fill detected scratches.

All functions take and return float32 arrays in [0, 1]: images (H, W, 3), masks (H, W).
"""

from __future__ import annotations

import cv2
import numpy as np

from oldphoto.imageio import to_uint8


def tophat_scratch_mask(rgb: np.ndarray, kernel_size: int = 9, threshold: float = 0.12) -> np.ndarray:
    """Thin bright and dark structures: morphological top-hat + black-hat of the luma, thresholded.

    Returns a (H, W) float32 mask of 0/1.
    """
    gray = cv2.cvtColor(to_uint8(rgb), cv2.COLOR_RGB2GRAY) if rgb.shape[2] == 3 else to_uint8(rgb[:, :, 0])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    bright = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, kernel)
    dark = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel)
    response = np.maximum(bright, dark).astype(np.float32) / 255.0
    mask = (response > threshold).astype(np.uint8)
    # Drop isolated pixels (noise) but keep line-like components.
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    return mask.astype(np.float32)


def inpaint_telea(rgb: np.ndarray, mask: np.ndarray, radius: int = 3) -> np.ndarray:
    """Fill masked pixels with Telea's fast-marching inpainting. rgb (H, W, C) and mask (H, W) in [0, 1]."""
    if not mask.any():
        return rgb.copy()
    mask_u8 = (mask > 0.5).astype(np.uint8)
    image = to_uint8(rgb)
    filled = cv2.inpaint(image, mask_u8, radius, cv2.INPAINT_TELEA)
    filled = filled.reshape(rgb.shape).astype(np.float32) / 255.0
    keep = (mask_u8 == 0)[:, :, None]
    return np.where(keep, rgb, filled).astype(np.float32)


def denoise_nlm(rgb: np.ndarray, strength: float = 7.0) -> np.ndarray:
    """OpenCV non-local-means denoising of a (H, W, 3) image."""
    image = to_uint8(rgb)
    if rgb.shape[2] == 3:
        result = cv2.fastNlMeansDenoisingColored(image, None, strength, strength, 7, 21)
    else:
        result = cv2.fastNlMeansDenoising(image[:, :, 0], None, strength, 7, 21)[:, :, None]
    return result.astype(np.float32) / 255.0


def classical_restore(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Denoise, detect scratches with top-hat/black-hat, inpaint them. Returns (image, mask)."""
    mask = tophat_scratch_mask(rgb)
    denoised = denoise_nlm(rgb)
    return inpaint_telea(denoised, mask), mask
