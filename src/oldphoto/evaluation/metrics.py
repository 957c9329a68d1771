"""Image-quality and mask metrics.

PSNR and SSIM follow scikit-image's definitions (data_range 1; SSIM as in Wang et al. 2004 with an
11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, population covariances, mean over channels,
borders cropped) and are cross-checked against scikit-image in ``tests/test_metrics.py``. OpenCV's
separable Gaussian filtering makes them fast enough for full-resolution photos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # skimage: 2 * int(3.5 * sigma + 0.5) + 1
K1, K2 = 0.01, 0.03


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of two float images in [0, 1] of the same shape; ``inf`` when identical."""
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _filter(image: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(image, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM of two (H, W) or (H, W, C) float images in [0, 1] (data_range 1)."""
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    x = reference.astype(np.float64)
    y = test.astype(np.float64)
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    c1, c2 = K1**2, K2**2
    pad = (SSIM_WINDOW - 1) // 2
    values = []
    for channel in range(x.shape[2]):
        a, b = x[:, :, channel], y[:, :, channel]
        mu_a, mu_b = _filter(a), _filter(b)
        var_a = _filter(a * a) - mu_a * mu_a
        var_b = _filter(b * b) - mu_b * mu_b
        cov = _filter(a * b) - mu_a * mu_b
        numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        denominator = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        ssim_map = numerator / denominator
        values.append(ssim_map[pad:-pad, pad:-pad].mean() if min(a.shape) > 2 * pad else ssim_map.mean())
    return float(np.mean(values))


@dataclass(frozen=True)
class MaskCounts:
    """Pixel counts of a predicted vs. true mask; add them up over a data set before taking ratios."""

    tp: int
    fp: int
    fn: int

    @classmethod
    def of(cls, predicted: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None) -> MaskCounts:
        """Counts of (H, W) masks (> 0.5 is set). Pixels set in ``ignore`` (H, W) count nowhere: neither marking
        nor missing them changes precision, recall, F1 or IoU (the don't-care band of faint damage)."""
        p, t = predicted > 0.5, truth > 0.5
        if ignore is not None:
            keep = ~(ignore > 0.5)
            p, t = p & keep, t & keep
        return cls(int(np.sum(p & t)), int(np.sum(p & ~t)), int(np.sum(~p & t)))

    def __add__(self, other: MaskCounts) -> MaskCounts:
        return MaskCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float(self.fn == 0)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def iou(self) -> float:
        union = self.tp + self.fp + self.fn
        return self.tp / union if union else 1.0


@dataclass(frozen=True)
class RegionCounts:
    """How many pixels of a region a predicted mask marks; add them up over a data set before taking the ratio."""

    marked: int
    total: int

    @classmethod
    def of(cls, predicted: np.ndarray, region: np.ndarray) -> RegionCounts:
        """``predicted`` and ``region``: (H, W) masks, > 0.5 is set."""
        r = region > 0.5
        return cls(int(np.sum((predicted > 0.5) & r)), int(np.sum(r)))

    def __add__(self, other: RegionCounts) -> RegionCounts:
        return RegionCounts(self.marked + other.marked, self.total + other.total)

    @property
    def fraction(self) -> float | None:
        """Marked share of the region; None for an empty region."""
        return self.marked / self.total if self.total else None
