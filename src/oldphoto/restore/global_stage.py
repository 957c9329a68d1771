"""Stage 2: triplet-domain global restoration (Wan et al.): encode with VAE_A, map the latent with the
partial non-local mapping (using the scratch mask), decode with VAE_B; then the detail fusion takes back the
photo's own detail where the photo is good (a learned, mask-gated path; :mod:`oldphoto.archs.detail_fusion`).

Tiled like every stage, with at least the overlap the registry's input contract asks for (the mapping's
receptive field and its squeeze-and-excitation gates reach further than the default overlap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import cv2
import numpy as np
import torch
from torch import nn

from oldphoto.archs.blocks import pad_to_multiple
from oldphoto.archs.mapping import latent_damage
from oldphoto.archs.vae import VAE
from oldphoto.registry import (
    DETAIL_MODEL,
    MAPPING_MODEL,
    RESTORE_UNET_MODEL,
    VAE_CLEAN_MODEL,
    VAE_OLD_MODEL,
)
from oldphoto.runtime import Runtime
from oldphoto.tiling import tile_stage
from oldphoto.weights import LoadedModel

LATENT_SCALE = VAE.latent_scale


def triplet_forward(rgb: torch.Tensor, mask: torch.Tensor, vae_old: nn.Module, mapping: nn.Module, vae_clean: nn.Module) -> torch.Tensor:
    """The paper's path: VAE_A's latent, mapped to VAE_B's with the damage mask (1 = damaged) pooled onto the latent
    grid, decoded by VAE_B. (N, 3, H, W) in [0, 1] and (N, 1, H, W), H and W on :func:`triplet_size_multiple`'s grid
    -> (N, 3, H, W), not clamped (training needs the gradient everywhere)."""
    return vae_clean.decode(mapping(vae_old.encode(rgb)[0], latent_damage(mask, LATENT_SCALE)))


def triplet_restore(
    rgb_and_mask: torch.Tensor, vae_old: nn.Module, mapping: nn.Module, vae_clean: nn.Module
) -> torch.Tensor:
    """(N, 4, H, W) RGB in [0, 1] + damage mask (1 = damaged), any size -> (N, 3, H, W) restored RGB in [0, 1]."""
    x, (height, width) = pad_to_multiple(rgb_and_mask, triplet_size_multiple(mapping))
    return triplet_forward(x[:, :3], x[:, 3:], vae_old, mapping, vae_clean)[:, :, :height, :width].clamp(0.0, 1.0)


def triplet_size_multiple(mapping: nn.Module) -> int:
    """Image sizes and tile starts on this pixel grid fold onto the latent grid and the mapping's coarser levels
    exactly as the whole image does."""
    return LATENT_SCALE * mapping.size_multiple


def _tiled_with_mask(
    fn: Callable[[torch.Tensor], torch.Tensor],
    rgb: np.ndarray,
    mask: np.ndarray | None,
    runtime: Runtime,
    multiple_of: int,
    min_overlap: int,
    on_tile: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Run ``fn`` ((1, 4, h, w) RGB + mask -> (1, 3, h, w)) over the photo in feathered tiles."""
    damage = np.zeros(rgb.shape[:2], np.float32) if mask is None else mask.astype(np.float32, copy=False)
    # Two views of the caller's arrays, stacked tile by tile: a full-size 4-channel copy would cost 16 bytes a pixel.
    photo = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    image = (photo, torch.from_numpy(np.ascontiguousarray(damage))[None, None])
    restored = tile_stage(fn, image, runtime, min_overlap=min_overlap, multiple_of=multiple_of, out_channels=3, on_tile=on_tile)
    return restored[0].permute(1, 2, 0).numpy()


def restore_global(
    rgb: np.ndarray,
    mask: np.ndarray | None,
    vae_old: nn.Module,
    mapping: nn.Module,
    vae_clean: nn.Module,
    runtime: Runtime,
    *,
    min_overlap: int,
    detail: nn.Module | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Restore unstructured damage everywhere and fill the masked structured damage.

    Args:
        rgb: (H, W, 3) float32 in [0, 1].
        mask: (H, W) float32 0/1 scratch mask (1 = damaged), or None when scratch detection was off.
        min_overlap: least tile overlap in pixels (the input contracts of the mapping and the detail fusion).
        detail: the detail fusion ((photo, triplet result, mask) -> restored), or None for the triplet alone.

    Returns:
        (H, W, 3) float32 in [0, 1], the same size as the input.
    """
    # The networks are placed once when loaded (Runtime.place), channels-last as their contracts ask: ~20% faster
    # convolutions on the CPU here, with the same results to 1e-6; tiles follow that layout.
    networks = (vae_old, mapping, vae_clean)
    fusion = detail
    multiple = triplet_size_multiple(mapping)
    if fusion is not None:
        multiple = math.lcm(multiple, fusion.size_multiple)

    def run(tile: torch.Tensor) -> torch.Tensor:
        tile = tile.contiguous(memory_format=torch.channels_last)
        restored = triplet_restore(tile, *networks)
        if fusion is None:
            return restored
        return fusion(tile[:, :3], restored, tile[:, 3:]).clamp(0.0, 1.0)

    return _tiled_with_mask(run, rgb, mask, runtime, multiple, min_overlap, on_tile)


def restore_global_direct(
    rgb: np.ndarray,
    mask: np.ndarray | None,
    network: nn.Module,
    runtime: Runtime,
    *,
    min_overlap: int,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The ablation's global stage: a direct image-to-image network instead of the triplet (same contract
    as :func:`restore_global`; used by ``evaluate -m restore-unet``)."""
    def run(tile: torch.Tensor) -> torch.Tensor:
        return network(tile[:, :3], tile[:, 3:]).clamp(0.0, 1.0)

    return _tiled_with_mask(run, rgb, mask, runtime, network.size_multiple, min_overlap, on_tile)


@dataclass(frozen=True)
class GlobalBackend:
    """One global restoration network: what ``restore --global-model``, ``evaluate -m`` and the stage table read."""

    name: str
    models: tuple[str, ...]
    """The registered models it needs, in the order its ``run`` takes them."""
    help: str
    """One line for ``--help``."""
    run: Callable[..., np.ndarray]
    """``run(rgb, mask, models, runtime, on_tile)`` -> (H, W, 3) float32 in [0, 1] (``models``: the loaded, placed
    :class:`~oldphoto.weights.LoadedModel` by name)."""


def _run_triplet(rgb, mask, models: Mapping[str, LoadedModel], runtime, on_tile) -> np.ndarray:
    vae_old, mapping, vae_clean, detail = (models[name].network for name in TRIPLET_MODELS)
    min_overlap = max(models[name].contract.min_tile_overlap for name in TRIPLET_MODELS)
    return restore_global(rgb, mask, vae_old, mapping, vae_clean, runtime, min_overlap=min_overlap, detail=detail, on_tile=on_tile)


def _run_direct(rgb, mask, models: Mapping[str, LoadedModel], runtime, on_tile) -> np.ndarray:
    model = models[RESTORE_UNET_MODEL]
    return restore_global_direct(rgb, mask, model.network, runtime, min_overlap=model.contract.min_tile_overlap, on_tile=on_tile)


REPAIR_REACH = 5
"""Pixels around a marked damage that :func:`temper_restoration` repairs in full (then fading out over as many pixels
again): a scratch's soft edge and halo lie just outside its mask, and cut off at the mask itself a tempered repair
keeps a rim of the scratch. Wider, the grain-free repair shows as a band on a grainy scan."""

TONE_CELL = 8
"""Side (pixels, a power of 2) of the cells over which :func:`temper_restoration` measures the change in tone and
brightness that a repaired area takes: larger than a scratch is thick, far smaller than a toned print's colour
varies."""


CORRECTION_ROWS = 512
"""Rows of the photo :func:`temper_restoration` corrects at a time: bounds its temporary memory."""

CELL_ROWS = 64
"""Rows of cells summed at a time by :func:`_cell_means`: bounds its temporary memory (a 24 MP scan: ~30 MB, not a
second copy of the photo)."""


def _cell_means(values: np.ndarray, weight: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """(the mean of ``values * weight``, the mean of ``weight``) over each ``cell`` x ``cell`` block, blocks past the
    edge padded with weight 0: (ceil(H / cell), ceil(W / cell), C) and (ceil(H / cell), ceil(W / cell)) float32."""
    height, width = weight.shape
    rows, cols = -(-height // cell), -(-width // cell)
    channels = values.shape[2]
    sums = np.zeros((rows, cols, channels), np.float32)
    totals = np.zeros((rows, cols), np.float32)
    for first in range(0, rows, CELL_ROWS):
        last = min(rows, first + CELL_ROWS)
        top, bottom = first * cell, min(height, last * cell)
        block_weight = np.zeros(((last - first) * cell, cols * cell), np.float32)
        block_weight[: bottom - top, :width] = weight[top:bottom]
        block = np.zeros(((last - first) * cell, cols * cell, channels), np.float32)
        np.multiply(values[top:bottom], block_weight[: bottom - top, :width, None], out=block[: bottom - top, :width])
        sums[first:last] = block.reshape(last - first, cell, cols, cell, channels).mean(axis=(1, 3))
        totals[first:last] = block_weight.reshape(last - first, cell, cols, cell).mean(axis=(1, 3))
    return sums, totals


def _coarse_undamaged_mean(values: np.ndarray, damaged: np.ndarray, cell: int) -> np.ndarray:
    """``values``' mean over the undamaged pixels of each ``cell`` x ``cell`` block, (ceil(H / cell), ceil(W / cell),
    C) float32: blocks with none take their neighbours' (pull-push: the means of undamaged pixels over ever coarser
    blocks fill the holes, so a torn corner gets its surroundings' value)."""
    weight = np.clip(1.0 - damaged.astype(np.float32), 0.0, 1.0)
    levels = [_cell_means(values, weight, cell)]
    while max(levels[-1][1].shape) > 1:
        summed, total = levels[-1]
        size = (max(1, (total.shape[1] + 1) // 2), max(1, (total.shape[0] + 1) // 2))
        shrunk = cv2.resize(summed, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        levels.append((shrunk, cv2.resize(total, size, interpolation=cv2.INTER_AREA)))
    estimate = None
    for summed, total in reversed(levels):
        mean = summed / np.maximum(total, 1e-6)[:, :, None]
        if estimate is not None:
            coarser = cv2.resize(estimate, (total.shape[1], total.shape[0]), interpolation=cv2.INTER_LINEAR).reshape(mean.shape)
            # A block with half its pixels undamaged (or more) trusts its own mean.
            trust = np.clip(2.0 * total, 0.0, 1.0)[:, :, None]
            mean = trust * mean + (1.0 - trust) * coarser
        estimate = mean
    return estimate


def _upsampled(coarse: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The part ``box`` = (top, bottom, left, right) of ``coarse`` resized bilinearly to ``size`` = (H, W), without
    making the whole: (bottom - top, right - left, C) float32, as ``cv2.resize`` to (W, H) would give it there."""
    top, bottom, left, right = box
    scale_y, scale_x = coarse.shape[0] / size[0], coarse.shape[1] / size[1]
    map_x = np.broadcast_to(((np.arange(left, right, dtype=np.float32) + 0.5) * scale_x - 0.5)[None, :], (bottom - top, right - left))
    map_y = np.broadcast_to(((np.arange(top, bottom, dtype=np.float32) + 0.5) * scale_y - 0.5)[:, None], (bottom - top, right - left))
    part = cv2.remap(coarse, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return part.reshape(bottom - top, right - left, -1)


def temper_restoration(original: np.ndarray, restored: np.ndarray, mask: np.ndarray | None, strength: float) -> np.ndarray:
    """The global stage's result with only ``strength`` of its change kept away from the damage it repaired.

    ``original`` and ``restored``: (H, W, 3) float in [0, 1], the photo before and after the global stage
    (``restored`` is the stage's own array and is overwritten when it is float32 and not ``original`` itself);
    ``mask``: (H, W) 0/1 damage mask (1 = damaged) or None; ``strength`` in [0, 1]. Returns (H, W, 3) float32 in
    [0, 1]:

    - away from the damage, ``original + strength * (restored - original)``: ``strength`` of every change, grain,
      blur, fading and colour cast alike;
    - on each marked pixel and within :data:`REPAIR_REACH` of it (fading out over as many pixels again), the repair
      in full, shifted by the same share of the change in tone and brightness the photo around it keeps (the
      change's mean over undamaged pixels, :func:`_coarse_undamaged_mean`): a repaired crack on a sepia print at half
      strength takes the half-kept sepia around it instead of the network's neutral grey.

    Strength 1 returns ``restored``; 0 leaves the scan as it was wherever nothing was repaired. The repair of marked
    damage is never weakened (a half-erased scratch helps no one).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength {strength} must be between 0 and 1")
    if strength == 1.0:
        return restored
    if restored.dtype != np.float32 or np.shares_memory(original, restored):
        restored = restored.astype(np.float32)  # a copy: never write into the photo itself
    # out = original - strength * change + (1 - strength) * repaired * (smooth change - change), where change =
    # original - restored: away from the damage the first two terms, on it the repair plus (1 - strength) of the
    # change's smooth part. Computed in the stage's own array, band by band: on a 6 MP scan scratched all over about
    # 1.3x the photo's array in temporaries (the distance map, the weights), not three more copies.
    change = np.subtract(original, restored, out=restored)
    repaired, coarse, rows, left, right = None, None, (0, 0), 0, 0
    if mask is not None and np.any(mask > 0.5):
        # Distance to the nearest marked pixel: 1 up to the repair's reach, then down to 0 over as many pixels again.
        repaired = cv2.distanceTransform((mask <= 0.5).astype(np.uint8), cv2.DIST_L2, 5)
        repaired *= -1.0 / REPAIR_REACH
        repaired += 2.0
        np.clip(repaired, 0.0, 1.0, out=repaired)
        coarse = _coarse_undamaged_mean(change, repaired, TONE_CELL)
        marked_rows, marked_cols = np.flatnonzero(repaired.any(axis=1)), np.flatnonzero(repaired.any(axis=0))
        rows, left, right = (int(marked_rows[0]), int(marked_rows[-1]) + 1), int(marked_cols[0]), int(marked_cols[-1]) + 1
    # Band by band, so that the correction of a scan scratched all over is not one more photo-sized array.
    for top in range(0, change.shape[0], CORRECTION_ROWS):
        bottom = min(change.shape[0], top + CORRECTION_ROWS)
        first, last = max(top, rows[0]), min(bottom, rows[1])
        correction = None
        if coarse is not None and first < last:
            correction = _upsampled(coarse, repaired.shape, (first, last, left, right))
            correction -= change[first:last, left:right]
            correction *= repaired[first:last, left:right, None]
            correction *= 1.0 - strength
        band = change[top:bottom]
        band *= -strength
        band += original[top:bottom]
        if correction is not None:
            band[first - top : last - top, left:right] += correction
    return np.clip(change, 0.0, 1.0, out=change)


TRIPLET_MODELS = (VAE_OLD_MODEL, MAPPING_MODEL, VAE_CLEAN_MODEL, DETAIL_MODEL)
DEFAULT_GLOBAL_BACKEND = "triplet"
GLOBAL_BACKENDS: Mapping[str, GlobalBackend] = MappingProxyType(
    {
        backend.name: backend
        for backend in (
            GlobalBackend(
                DEFAULT_GLOBAL_BACKEND,
                TRIPLET_MODELS,
                "the paper's VAE_A -> mapping -> VAE_B, with the learned detail fusion (the default)",
                _run_triplet,
            ),
            GlobalBackend(
                RESTORE_UNET_MODEL,
                (RESTORE_UNET_MODEL,),
                "the direct residual U-Net of the ablation: keeps more fine detail, leaves warm casts warmer",
                _run_direct,
            ),
        )
    }
)
"""Every global restoration network by name: adding one means an architecture, a registry entry, a recipe and a row
here."""
