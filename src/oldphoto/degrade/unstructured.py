"""Unstructured damage: noise, grain, blur, low resolution, compression, halftone, fading, colour casts.

Every op has the signature ``op(image, rng, **ranges) -> (image, params)``:

* ``image``: (H, W, 3) float32 in [0, 1]; the result has the same shape, dtype and range.
* ``rng``: the only source of randomness (``numpy.random.Generator``).
* ``ranges``: the preset's parameter ranges (``(low, high)`` tuples or lists of choices).
* ``params``: the values actually drawn, for the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from oldphoto.imageio import LUMA_WEIGHTS, to_uint8

Params = dict[str, Any]
Op = Callable[..., tuple[np.ndarray, Params]]

LUMA = LUMA_WEIGHTS


def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    low, high = bounds
    return float(rng.uniform(low, high))


def _clip(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0.0, 1.0, out=image).astype(np.float32, copy=False)


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) Rec. 601 luma."""
    return image @ LUMA


def gaussian_blur(image, rng, kernel_sizes=(3, 5, 7), sigma=(1.0, 5.0)):
    kernel = int(rng.choice(kernel_sizes))
    s = _uniform(rng, sigma)
    return cv2.GaussianBlur(image, (kernel, kernel), s, borderType=cv2.BORDER_REFLECT), {"kernel": kernel, "sigma": s}


def defocus_blur(image, rng, radius=(1.0, 4.0)):
    r = _uniform(rng, radius)
    size = 2 * int(np.ceil(r)) + 1
    y, x = np.mgrid[:size, :size] - size // 2
    kernel = np.clip(r + 0.5 - np.hypot(x, y), 0, 1).astype(np.float32)
    kernel /= kernel.sum()
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT), {"radius": r}


def motion_blur(image, rng, length=(3.0, 15.0), angle=(0.0, 180.0)):
    n = _uniform(rng, length)
    theta = _uniform(rng, angle)
    size = 2 * int(np.ceil(n / 2)) + 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = np.cos(np.radians(theta)) * n / 2, np.sin(np.radians(theta)) * n / 2
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    kernel /= kernel.sum()
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT), {"length": n, "angle": theta}


def gaussian_noise(image, rng, sigma=(5 / 255, 50 / 255), mono_probability=0.5):
    s = _uniform(rng, sigma)
    mono = bool(rng.random() < mono_probability)
    shape = image.shape[:2] + ((1,) if mono else (3,))
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(s)
    return _clip(image + noise), {"sigma": s, "mono": mono}


def poisson_noise(image, rng, peak=(20.0, 300.0)):
    """Shot noise for a photon count of ``peak`` at white: the normal approximation, variance ``image / peak``.

    Not ``rng.poisson``: its number of draws depends on the pixel values, while every op here draws the same
    numbers whatever the image, so the scan can be replayed on the undamaged print to find visible damage.
    """
    p = _uniform(rng, peak)
    shot = rng.standard_normal(image.shape, dtype=np.float32)
    return _clip(image + shot * np.sqrt(np.maximum(image, 0.0) / np.float32(p))), {"peak": p}


def speckle_noise(image, rng, sigma=(5 / 255, 50 / 255)):
    s = _uniform(rng, sigma)
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(s)
    return _clip(image + image * noise), {"sigma": s}


def salt_and_pepper(image, rng, amount=(0.001, 0.02)):
    a = _uniform(rng, amount)
    draw = rng.random(image.shape[:2], dtype=np.float32)
    out = image.copy()
    out[draw < a / 2] = 0.0
    out[draw > 1 - a / 2] = 1.0
    return out, {"amount": a}


def noise(image, rng, kinds=("gaussian", "speckle", "salt_and_pepper"), sigma=(5 / 255, 50 / 255), amount=(0.001, 0.02)):
    """The paper's noise step: one of Gaussian, speckle or salt-and-pepper noise."""
    unknown = sorted(set(map(str, kinds)) - {"gaussian", "speckle", "salt_and_pepper"})
    if unknown or not len(kinds):
        raise ValueError(f"noise kinds must be some of gaussian, speckle, salt_and_pepper; got {list(kinds)}")
    kind = str(rng.choice(kinds))
    if kind == "gaussian":
        out, params = gaussian_noise(image, rng, sigma=sigma, mono_probability=0.0)
    elif kind == "speckle":
        out, params = speckle_noise(image, rng, sigma=sigma)
    else:
        out, params = salt_and_pepper(image, rng, amount=amount)
    return out, {"kind": kind, **params}


def film_grain(image, rng, strength=(0.02, 0.07), size=(0.5, 1.5)):
    """Monochrome grain, strongest in the mid-tones, with clumps of ``size`` pixels."""
    s = _uniform(rng, strength)
    g = _uniform(rng, size)
    grain = rng.standard_normal(image.shape[:2], dtype=np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), g)
    grain /= grain.std() + 1e-6
    luma = luminance(image)
    weight = 4.0 * luma * (1.0 - luma) + 0.2
    return _clip(image + (s * grain * weight)[:, :, None]), {"strength": s, "size": g}


def downscale(image, rng, scale=(0.5, 1.0), up=("nearest", "bilinear")):
    """Bicubic down to ``scale`` and back up: the low-resolution look of small prints and scans."""
    if not len(up) or not set(map(str, up)) <= {"nearest", "bilinear"}:
        raise ValueError(f"downscale's up must be some of nearest, bilinear; got {list(up)}")
    f = _uniform(rng, scale)
    mode = str(rng.choice(up))
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, round(width * f)), max(1, round(height * f))), interpolation=cv2.INTER_CUBIC)
    flag = cv2.INTER_NEAREST if mode == "nearest" else cv2.INTER_LINEAR
    return _clip(cv2.resize(small, (width, height), interpolation=flag)), {"scale": f, "up": mode}


def jpeg(image, rng, quality=(40, 100)):
    q = int(rng.integers(int(quality[0]), int(quality[1]) + 1))
    encoded = cv2.imencode(".jpg", to_uint8(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, q])[1]
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1]
    return decoded.astype(np.float32) / 255.0, {"quality": q}


def halftone(image, rng, cell=(3.0, 6.0), angle=(0.0, 90.0), strength=(0.3, 0.8)):
    """Printed-photo dot screen: tone rendered as dots of a rotated grid, partially blended in."""
    c = _uniform(rng, cell)
    theta = np.radians(_uniform(rng, angle))
    s = _uniform(rng, strength)
    height, width = image.shape[:2]
    y, x = np.mgrid[:height, :width].astype(np.float32)
    u = (x * np.cos(theta) + y * np.sin(theta)) * (2 * np.pi / c)
    v = (-x * np.sin(theta) + y * np.cos(theta)) * (2 * np.pi / c)
    screen = 0.5 + 0.25 * (np.cos(u) + np.cos(v))
    luma = luminance(image)
    dots = np.clip((luma - screen) * 6.0 + 0.5, 0, 1)
    rendered = image * (dots / np.maximum(luma, 1e-3))[:, :, None]
    return _clip(image * (1 - s) + np.clip(rendered, 0, 1) * s), {"cell": c, "angle": float(np.degrees(theta)), "strength": s}


def fade(image, rng, contrast=(0.45, 0.9), lift=(0.0, 0.25)):
    """Contrast loss towards the mean and a lifted black point: a washed-out print."""
    k = _uniform(rng, contrast)
    l = _uniform(rng, lift)
    mean = image.mean(axis=(0, 1), keepdims=True)
    out = mean + (image - mean) * k
    return _clip(out * (1 - l) + l), {"contrast": k, "lift": l}


SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)


def yellowing(image, rng, strength=(0.2, 0.9)):
    """Sepia toning and yellowed paper."""
    s = _uniform(rng, strength)
    toned = np.clip(image @ SEPIA.T, 0, 1)
    return _clip(image * (1 - s) + toned * s), {"strength": s}


def color_cast(image, rng, gain=(0.8, 1.2)):
    gains = rng.uniform(gain[0], gain[1], size=3).astype(np.float32)
    gains /= gains.mean()
    return _clip(image * gains), {"gains": [float(g) for g in gains]}


def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int = 4) -> np.ndarray:
    """A smooth random field in [-1, 1] of shape (H, W)."""
    grid = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def uneven_exposure(image, rng, amplitude=(0.1, 0.4)):
    a = _uniform(rng, amplitude)
    field = _smooth_field(rng, *image.shape[:2])
    return _clip(image * (1 + a * field)[:, :, None]), {"amplitude": a}


def vignetting(image, rng, strength=(0.2, 0.7)):
    s = _uniform(rng, strength)
    height, width = image.shape[:2]
    y, x = np.ogrid[:height, :width]
    r2 = ((x - width / 2) / (width / 2)) ** 2 + ((y - height / 2) / (height / 2)) ** 2
    falloff = (1 - s * np.clip(r2 / 2, 0, 1)).astype(np.float32)
    return _clip(image * falloff[:, :, None]), {"strength": s}


def paper_texture(image, rng, strength=(0.02, 0.08), fiber=(1.0, 3.0)):
    """Multiplicative paper grain with fibres stretched along a random direction."""
    s = _uniform(rng, strength)
    f = _uniform(rng, fiber)
    texture = rng.standard_normal(image.shape[:2], dtype=np.float32)
    texture = cv2.GaussianBlur(texture, (0, 0), sigmaX=f * 2, sigmaY=max(0.5, f / 2))
    texture /= texture.std() + 1e-6
    return _clip(image * (1 + s * texture)[:, :, None]), {"strength": s, "fiber": f}


def grayscale(image, rng):
    """Black-and-white print: luma copied to all three channels."""
    return np.repeat(luminance(image)[:, :, None], 3, axis=2).astype(np.float32), {}


UNSTRUCTURED_OPS: dict[str, Op] = {
    "gaussian_blur": gaussian_blur,
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur,
    "gaussian_noise": gaussian_noise,
    "poisson_noise": poisson_noise,
    "speckle_noise": speckle_noise,
    "salt_and_pepper": salt_and_pepper,
    "noise": noise,
    "film_grain": film_grain,
    "downscale": downscale,
    "jpeg": jpeg,
    "halftone": halftone,
    "fade": fade,
    "yellowing": yellowing,
    "color_cast": color_cast,
    "uneven_exposure": uneven_exposure,
    "vignetting": vignetting,
    "paper_texture": paper_texture,
    "grayscale": grayscale,
}
