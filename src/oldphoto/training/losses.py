"""Differentiable losses that need no pretrained network (no VGG/LPIPS exists offline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oldphoto.evaluation.metrics import K1, K2, SSIM_SIGMA, SSIM_WINDOW


def _gaussian_window(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - (SSIM_WINDOW - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    taps = taps / taps.sum()
    return (taps[:, None] * taps[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of (N, C, H, W) images in [0, 1], the evaluation metric's window and constants
    (borders without a full window are left out, as in the metric). Returns a scalar."""
    channels = x.shape[1]
    window = _gaussian_window(channels, x.device, x.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = K1**2, K2**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return value.mean()


def restoration_loss(output: torch.Tensor, target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """L1 plus ``ssim_weight`` * (1 - SSIM) on (N, 3, H, W) images in [0, 1]."""
    loss = F.l1_loss(output, target)
    if ssim_weight > 0:
        loss = loss + ssim_weight * (1.0 - ssim(output.clamp(0, 1), target))
    return loss


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean PSNR in dB over a batch of (N, C, H, W) images in [0, 1] (each image's PSNR, then the mean)."""
    mse = (x.clamp(0, 1) - y).square().flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(1.0 / mse)).mean()


def image_scores(output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Validation figures of restored (N, 3, H, W) images against targets: PSNR as ``score`` and ``psnr``, and SSIM."""
    output = output.clamp(0, 1)
    value = psnr(output, target).item()
    return {"score": value, "psnr": value, "ssim": ssim(output, target).item()}


def least_squares_gan(prediction: torch.Tensor, target: float) -> torch.Tensor:
    """LSGAN loss (Mao et al.), as Wan et al. use: mean (D(x) - target)^2."""
    return (prediction - target).square().mean()
