"""Grain matching: give repaired damage the grain of the photo around it.

The networks and the classical inpainting fill a scratch, crack or stain with smooth content. On a grainy scan a
smooth fill shows at 100% as a clean streak or a waxy patch: right in tone, wrong in texture. This stage measures,
block by block, how much fine-grained variation the restored photo has *around* the repaired pixels and how much the
fill itself has, and adds the difference as synthetic luminance grain inside the fill. Nothing outside the repaired
pixels changes.

The level is measured on the restored photo, not on the scan: where the global stage removed the grain around the
damage there is none to match, and nothing is added.
"""

from __future__ import annotations

import functools
import logging

import cv2
import numpy as np

from oldphoto.imageio import luma_plane

log = logging.getLogger(__name__)

FILL_REACH = 2
"""Pixels within this distance (px) of a marked one are the global stage's repair (the detail fusion keeps the photo
out of 2 px around the mask); the classical inpainting fills the marked pixels alone (reach 0)."""

FADE = 2
"""The grain fades out over this many pixels beyond the repair's reach."""

GRAIN_BLOCK = 32
"""Side (px) of the blocks the grain level is measured in: local enough to follow a sky next to a building, large
enough for a robust estimate from the pixels around a thin scratch."""

SURROUND = 12
"""The grain around a fill is measured on the photo's own pixels up to this far (px) beyond the repaired ones: what
the eye compares the fill with, not the whole block."""

FLAT_GRADIENT = 2.5 / 255.0
"""Only flat pixels of the surround are measured: where the photo's smoothed luma (Gaussian, sigma 2 px) changes by
less than this per pixel. Edges and patterns (a tartan's stripes, a rail, a sail's edge) are not grain; measured with
them, the grain came out too strong and a fill on scene content turned into a glittery patch."""

GRAIN_NEIGHBOURHOOD = 3
"""The grain level of a block is the least of the levels measured within this many blocks (a square): grain is a
property of the film and changes slowly across a photo, while a pattern (a tartan, foliage, gravel) raises the level
of the blocks it fills; the least nearby level is the grain's."""

MAX_CHROMA_SPREAD = 15.0 / 255.0
"""Blocks whose surround varies in colour more than this (standard deviation of R-G and G-B, combined) get no grain:
the grain added is luminance only, which reads as grey speckle on a colourful scene (water, foliage, a sail)."""

MAX_PHOTO_CHROMA = 15.0 / 255.0
"""A photo whose colour varies more than this (the larger standard deviation of its R-G, G-B colour plane) is a
colour photograph: it gets no grain at all. Its film grain is coloured; luminance grain read as grey speckle on
the blue water and green trees around a repair. Black-and-white and toned prints (sepia, cyanotype) vary far less
(up to 14.5 on the real test photos; colour scans 15-34, faded colour prints from 15)."""

MIN_SURROUND_PIXELS = 48
"""A block's surround is measured from at least this many pixels, else it takes its neighbours' level."""

MIN_FILL_PIXELS = 16
"""A block's fill is measured from at least this many fully repaired pixels, else it counts as perfectly smooth."""

HIGH_PASS_SIGMA = 1.2
"""The fine-grained part measured and synthesised: luma minus its Gaussian blur at this sigma (px)."""

GRAIN_SIZES = (0.4, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0)
"""Blurs (sigma, px) of the white noise the grain can be made from. The one used is the one whose high-pass part is
correlated between neighbouring pixels as the photo's own grain is (measured around the repairs): a soft, clumpy
grain made of per-pixel noise read as glitter on a light stripe."""

MAX_GRAIN = 8.0 / 255.0
"""The most grain added (robust standard deviation of its high-pass part): a strongly textured surround (foliage,
gravel, lettering) would otherwise ask for noise that reads as dirt."""

GRAIN_CLIP = 2.5
"""Synthetic grain is clipped at this many standard deviations: Gaussian tails read as specks of dust."""

GRAIN_SEED = 0x6A41
"""The grain is drawn from fixed seeds (one per band of rows): the same photo always comes back the same."""

BAND_ROWS = 16 * GRAIN_BLOCK
"""Rows handled at a time, so that a large scan costs a few bands of temporaries, not photo-sized arrays."""

MARGIN = 8
"""Rows read beyond each band for the high-pass filters (4 sigma of the larger one, rounded up)."""



def _high_pass(plane: np.ndarray) -> np.ndarray:
    return plane - cv2.GaussianBlur(plane, (0, 0), HIGH_PASS_SIGMA)


def _robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of Gaussian grain, little moved by a few edges."""
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _bands(height: int):
    for top in range(0, height, BAND_ROWS):
        yield top, min(height, top + BAND_ROWS)


def _photo_chroma(pixels: np.ndarray) -> float:
    """The standard deviation of the photo's colour (R-G, G-B) along its main direction, from every 4th pixel."""
    sample = pixels[::4, ::4].reshape(-1, 3).astype(np.float64)
    chroma = np.stack([sample[:, 0] - sample[:, 1], sample[:, 1] - sample[:, 2]], axis=1)
    if len(chroma) < 2:
        return 0.0
    return float(np.sqrt(max(np.linalg.eigvalsh(np.cov(chroma.T))[-1], 0.0)))


def _chroma_spread(pixels: np.ndarray) -> float:
    """How much the colour of (N, 3) pixels varies: the standard deviations of R-G and G-B, combined."""
    return float(np.hypot((pixels[:, 0] - pixels[:, 1]).std(), (pixels[:, 1] - pixels[:, 2]).std()))


def _band_residual(restored: np.ndarray, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
    """The high-pass luma of rows top..bottom and where it is flat (:data:`FLAT_GRADIENT`), filtered with MARGIN rows
    of context on each side."""
    first, last = max(0, top - MARGIN), min(restored.shape[0], bottom + MARGIN)
    luma = luma_plane(restored[first:last])
    rows = slice(top - first, top - first + bottom - top)
    smooth = cv2.GaussianBlur(luma, (0, 0), 2.0)
    gradient = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
    return _high_pass(luma)[rows], gradient[rows] < FLAT_GRADIENT


def _fill_unknown(levels: np.ndarray) -> np.ndarray:
    """NaN blocks (nothing of the photo's own around them) take the mean of their measured neighbours, ring by ring;
    the photo's median block level where none is measured nearby; 0 if none is measured at all."""
    known = ~np.isnan(levels)
    if known.all() or not known.any():
        return np.where(known, levels, 0.0).astype(np.float32)
    filled = levels.copy()
    values, counts = np.where(known, levels, 0.0).astype(np.float32), known.astype(np.float32)
    for radius in (1, 2, 4, 8):
        size = 2 * radius + 1
        total = cv2.boxFilter(values, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
        count = cv2.boxFilter(counts, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
        todo = np.isnan(filled) & (count > 0)
        filled[todo] = total[todo] / count[todo]
    filled[np.isnan(filled)] = float(np.median(levels[known]))
    return filled


@functools.lru_cache(maxsize=None)
def _neighbour_correlations() -> tuple[float, ...]:
    """For each of :data:`GRAIN_SIZES`: the correlation between horizontally neighbouring pixels of the high-pass part
    of white noise blurred at that sigma (measured once on a 256x256 draw)."""
    rng = np.random.default_rng(GRAIN_SEED)
    white = rng.standard_normal((256, 256), dtype=np.float32)
    found = []
    for sigma in GRAIN_SIZES:
        part = _high_pass(cv2.GaussianBlur(white, (0, 0), sigma))[8:-8, 8:-8]
        found.append(float((part[:, :-1] * part[:, 1:]).sum() / (part * part).sum()))
    return tuple(found)


def _grain_size(correlation: float) -> float:
    """The blur of :data:`GRAIN_SIZES` whose grain has the neighbour correlation nearest ``correlation``."""
    return GRAIN_SIZES[int(np.argmin([abs(c - correlation) for c in _neighbour_correlations()]))]


def _band_levels(level: np.ndarray, top: int, bottom: int, width: int) -> np.ndarray:
    """(bottom - top, width): the block levels placed at block centres and interpolated between them (bilinear) for
    rows top..bottom. Resized from the block rows of the band and one more on each side, which gives the rows of the
    band the values a resize of the whole grid would (BAND_ROWS is a multiple of GRAIN_BLOCK)."""
    first, last = max(0, top // GRAIN_BLOCK - 1), min(level.shape[0], -(-bottom // GRAIN_BLOCK) + 1)
    part = cv2.resize(level[first:last], (level.shape[1] * GRAIN_BLOCK, (last - first) * GRAIN_BLOCK), interpolation=cv2.INTER_LINEAR)
    start = top - first * GRAIN_BLOCK
    return part[start : start + bottom - top, :width]


def match_grain(restored: np.ndarray, mask: np.ndarray, reach: int = FILL_REACH, fade: int = FADE) -> np.ndarray:
    """Add grain to the repaired pixels of ``restored`` up to the level of the grain around them.

    Args:
        restored: (H, W, 3) float32 in [0, 1], the photo after the repair (not modified).
        mask: (H, W) damage mask, values above 0.5 marking the damage that was repaired.
        reach: how far (px) beyond the marked pixels the repair replaced the photo (:data:`FILL_REACH` for the
            global stage, 0 for the classical inpainting; at ``--global-strength`` below 1 the repair reaches 5 px and
            fades over 5 more, :data:`~oldphoto.restore.global_stage.REPAIR_REACH`).
        fade: over how many pixels beyond ``reach`` the repair (and so the grain) fades out.
    Returns:
        (H, W, 3) float32 in [0, 1]: ``restored`` plus the same luminance grain on every channel (so colours do not
        speckle), weighted 1 on and within ``reach`` px of the marks and fading to 0 over ``fade`` px more,
        at level sqrt(max(around^2 - fill^2, 0)) per block of :data:`GRAIN_BLOCK` px (capped at
        :data:`MAX_GRAIN`, interpolated between block centres). Pixels farther from the marks are returned as they
        are, bit for bit.
    """
    out = np.array(restored, dtype=np.float32, copy=True)
    marked = mask > 0.5
    if not marked.any() or _photo_chroma(out) > MAX_PHOTO_CHROMA:
        return out
    height, width = marked.shape
    distance = cv2.distanceTransform((~marked).astype(np.uint8), cv2.DIST_L2, 5)  # px to the nearest mark
    del marked
    rows, cols = -(-height // GRAIN_BLOCK), -(-width // GRAIN_BLOCK)
    around = np.full((rows, cols), np.nan, np.float32)
    fill = np.zeros((rows, cols), np.float32)
    colourful = np.zeros((rows, cols), bool)
    products, squares = 0.0, 0.0  # over horizontally neighbouring surround pixels: the grain's neighbour correlation
    fade_end = reach + fade
    for top, bottom in _bands(height):
        band_distance = distance[top:bottom]
        if band_distance.min() > fade_end + SURROUND:
            continue
        residual, flat = _band_residual(out, top, bottom)
        for r in range(top // GRAIN_BLOCK, -(-bottom // GRAIN_BLOCK)):
            block_rows = slice(r * GRAIN_BLOCK - top, (r + 1) * GRAIN_BLOCK - top)
            for c in range(cols):
                block_cols = slice(c * GRAIN_BLOCK, (c + 1) * GRAIN_BLOCK)
                d = band_distance[block_rows, block_cols]
                if d.min() > fade_end + SURROUND:
                    continue
                values = residual[block_rows, block_cols]
                surround = (d > fade_end) & (d <= fade_end + SURROUND) & flat[block_rows, block_cols]
                if surround.sum() >= MIN_SURROUND_PIXELS:
                    around[r, c] = _robust_sigma(values[surround])
                    colour = out[top:bottom][block_rows, block_cols][surround]
                    colourful[r, c] = _chroma_spread(colour) > MAX_CHROMA_SPREAD
                    pairs = surround[:, :-1] & surround[:, 1:]
                    products += float((values[:, :-1] * values[:, 1:])[pairs].sum())
                    squares += float((values[:, :-1] ** 2)[pairs].sum())
                repaired = d <= reach
                if repaired.sum() >= MIN_FILL_PIXELS:
                    fill[r, c] = _robust_sigma(values[repaired])
    around = _fill_unknown(around)
    # The least level nearby: grain varies slowly, patterns do not (NaN-free by now).
    around = cv2.erode(around, np.ones((GRAIN_NEIGHBOURHOOD, GRAIN_NEIGHBOURHOOD), np.uint8), borderType=cv2.BORDER_REPLICATE)
    level = np.sqrt(np.clip(around**2 - fill**2, 0.0, None)).astype(np.float32)
    level[cv2.dilate(colourful.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] = 0.0
    np.minimum(level, MAX_GRAIN, out=level)
    if not np.any(level > 0):
        return out
    size = _grain_size(products / squares if squares > 0 else 0.0)
    log.debug("grain: up to %.1f grey levels, grain size %.1f px", 255 * float(level.max()), size)
    for index, (top, bottom) in enumerate(_bands(height)):
        weight = np.clip((fade_end - distance[top:bottom]) / max(fade, 1), 0.0, 1.0)
        if not np.any(weight > 0):
            continue
        first, last = max(0, top - MARGIN), min(height, bottom + MARGIN)
        rng = np.random.default_rng((GRAIN_SEED, index))
        noise = cv2.GaussianBlur(rng.standard_normal((last - first, width), dtype=np.float32), (0, 0), size)
        grain = _high_pass(noise)[top - first : top - first + bottom - top]
        # The grain's own spread set to the level: the measure (a second high-pass) then finds 0.9x the level for fine
        # grain and less for clumpy grain (0.5x at 1.6 px). Kept so on purpose: matched to the measure, clumpy grain
        # came out twice as strong, and the reviewed version, which adds less, made no real photo worse.
        grain /= max(_robust_sigma(grain), 1e-6)
        np.clip(grain, -GRAIN_CLIP, GRAIN_CLIP, out=grain)
        grain *= _band_levels(level, top, bottom, width)
        grain *= weight
        band = out[top:bottom]
        band += grain[:, :, None]
        touched = np.broadcast_to((weight > 0)[:, :, None], band.shape)
        np.clip(band, 0.0, 1.0, out=band, where=touched)  # only where grain went: every other pixel as it was
    return out
