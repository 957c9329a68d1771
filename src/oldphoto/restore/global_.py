"""Stage 2: triplet-domain global restoration (Wan et al.): encode with VAE_A, map the latent with the
partial non-local mapping (using the scratch mask), decode with VAE_B; then the detail fusion takes back the
photo's own detail where the photo is good (a learned, mask-gated path; :mod:`oldphoto.archs.detail_fusion`).

Tiled like every stage, with at least the overlap the registry's input contract asks for (the mapping's
receptive field and its squeeze-and-excitation gates reach further than the default overlap).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from oldphoto.archs.blocks import pad_to_multiple
from oldphoto.archs.mapping import latent_damage
from oldphoto.registry import MIN_TILE
from oldphoto.runtime import Runtime
from oldphoto.tiling import tile_apply

LATENT_SCALE = 4


def triplet_restore(
    rgb_and_mask: torch.Tensor, vae_old: nn.Module, mapping: nn.Module, vae_clean: nn.Module
) -> torch.Tensor:
    """(N, 4, H, W) RGB in [0, 1] + damage mask (1 = damaged) -> (N, 3, H, W) restored RGB in [0, 1]."""
    x, (height, width) = pad_to_multiple(rgb_and_mask, triplet_size_multiple(mapping))
    rgb, mask = x[:, :3], x[:, 3:]
    latent = mapping(vae_old.encode(rgb)[0], latent_damage(mask, LATENT_SCALE))
    return vae_clean.decode(latent)[:, :, :height, :width].clamp(0.0, 1.0)


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
    restored = tile_apply(
        fn,
        image,
        tile=runtime.tile,
        overlap=max(runtime.tile_overlap, min_overlap),
        # The out-of-memory retry halves tiles down to the stage's floor, never into tiles that are mostly seam.
        min_tile=max(MIN_TILE, 4 * min_overlap),
        device=runtime.device,
        dtype=runtime.dtype,
        precision=runtime.precision,
        multiple_of=multiple_of,
        out_channels=3,
        on_tile=on_tile,
    )
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
    # Channels-last convolutions are ~20% faster on CPU here, with the same results to 1e-6.
    networks = [
        n.to(device=runtime.device, dtype=runtime.dtype, memory_format=torch.channels_last) for n in (vae_old, mapping, vae_clean)
    ]
    fusion = None if detail is None else detail.to(device=runtime.device, dtype=runtime.dtype, memory_format=torch.channels_last)
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
    network = network.to(device=runtime.device, dtype=runtime.dtype)

    def run(tile: torch.Tensor) -> torch.Tensor:
        return network(tile[:, :3], tile[:, 3:]).clamp(0.0, 1.0)

    return _tiled_with_mask(run, rgb, mask, runtime, network.size_multiple, min_overlap, on_tile)


def is_black_and_white(rgb: np.ndarray, tolerance: float = 3 / 255) -> bool:
    """True when an RGB photo is a black-and-white print stored as colour (99% of pixels have channels
    within ``tolerance``); its restoration must stay black-and-white."""
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return bool(np.quantile(spread, 0.99) <= tolerance)
