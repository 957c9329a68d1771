from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from oldphoto.evaluation.metrics import MaskCounts, psnr, ssim

from .conftest import smooth_image


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_and_ssim_match_scikit_image(channels):
    clean = smooth_image(70, 90, channels=channels)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.08, clean.shape), 0, 1).astype(np.float32)
    expected_psnr = peak_signal_noise_ratio(clean, noisy, data_range=1.0)
    expected_ssim = structural_similarity(
        clean, noisy, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=2
    )
    assert psnr(clean, noisy) == pytest.approx(expected_psnr, abs=1e-6)
    assert ssim(clean, noisy) == pytest.approx(expected_ssim, abs=1e-4)


def test_perfect_output_scores_max():
    clean = smooth_image(32, 32)
    assert math.isinf(psnr(clean, clean))
    assert ssim(clean, clean) == pytest.approx(1.0)


def test_mask_counts():
    truth = np.zeros((4, 4))
    truth[0] = 1
    predicted = np.zeros((4, 4))
    predicted[0, :2] = 1
    predicted[1, 0] = 1
    counts = MaskCounts.of(predicted, truth)
    assert (counts.tp, counts.fp, counts.fn) == (2, 1, 2)
    assert counts.precision == pytest.approx(2 / 3) and counts.recall == pytest.approx(0.5)
    assert counts.iou == pytest.approx(2 / 5)
    assert (counts + counts).f1 == pytest.approx(counts.f1)
