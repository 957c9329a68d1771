"""Overlapped tiling with feathered blending for fully-convolutional stages.

Only the current tile is moved to the accelerator; the full-size output accumulates on the CPU in
float32, so memory on the device is bounded by the tile size, not the image size. On an out-of-memory
error the failing tile is processed again as smaller tiles (half the size each time).

This is also the one place where reduced precision is applied to the tiled stages: the tile function runs
under the run's autocast (``precision``), and its output is cast back to float32 before blending.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from oldphoto.errors import DeviceError
from oldphoto.registry import min_tile_for
from oldphoto.runtime import Runtime, autocast

log = logging.getLogger(__name__)

TileFn = Callable[[torch.Tensor], torch.Tensor]


def is_out_of_memory(error: BaseException) -> bool:
    """True for the out-of-memory errors of CUDA, MPS and the CPU allocator."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def tile_spans(length: int, tile: int, overlap: int, multiple_of: int = 1) -> list[tuple[int, int]]:
    """(start, end) of each tile along one axis: as few tiles as the stride allows, spread evenly.

    Neighbours overlap by exactly ``overlap``; tiles are no longer than ``tile`` (the last one may be up to
    ``multiple_of - 1`` longer). Starts are multiples of ``multiple_of``, so that every tile's downsampling grid
    lines up with the whole image's. Spreading the tiles evenly, rather than padding the last one back over
    its neighbour, keeps the work near the image's own area: a 2,121-pixel side in 1,024-pixel tiles costs
    three tiles of about 750 instead of three of 1,024.
    """
    if length <= tile:
        return [(0, length)]
    stride = max(multiple_of, (tile - overlap) // multiple_of * multiple_of)
    count = -(-(length - overlap) // stride)
    # Snapping to the grid can merge two starts when the tile is barely larger than overlap + multiple_of.
    starts = sorted({i * (length - overlap) // count // multiple_of * multiple_of for i in range(count)})
    ends = [start + overlap for start in starts[1:]] + [length]
    return list(zip(starts, ends))


def _ramp(start: int, end: int, length: int, overlap: int) -> torch.Tensor:
    """1-D feather weights of one tile.

    At an inner edge the outer quarter of the overlap gets (almost) no weight, since a network's
    padding corrupts the pixels nearest a tile edge; the weight then rises linearly over the middle
    half of the overlap, where the neighbouring tile is fading out. Image borders keep weight 1.
    """
    size = end - start
    weights = torch.ones(size)
    if overlap <= 0:
        return weights
    distance = torch.arange(size, dtype=torch.float32) + 0.5
    ramp = ((distance - overlap / 4) / (overlap / 2)).clamp(1e-6, 1.0)
    if start > 0:
        weights = torch.minimum(weights, ramp)
    if end < length:
        weights = torch.minimum(weights, ramp.flip(0))
    return weights


def tile_apply(
    fn: TileFn,
    image: torch.Tensor | Sequence[torch.Tensor],
    *,
    tile: int,
    overlap: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    precision: str = "fp32",
    multiple_of: int = 1,
    out_channels: int | None = None,
    min_tile: int = 64,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Apply a same-size image-to-image function tile by tile.

    Args:
        fn: maps (1, C, h, w) on ``device``/``dtype`` to (1, C_out, h, w).
        image: (1, C, H, W) float32 on the CPU, or several (1, C_i, H, W) parts concatenated along channels tile by
            tile (so that e.g. a photo and its mask need no full-size stacked copy).
        tile: tile edge in pixels (rounded down to ``multiple_of``).
        overlap: overlap between neighbouring tiles, blended with linear feathering.
        dtype: dtype of the tile handed to ``fn`` (the networks' weight dtype: float32, see ``Runtime.dtype``).
        precision: ``fp32``, or ``bf16``/``fp16`` to run ``fn`` under ``torch.autocast`` on ``device``
            (``Runtime.precision``); the output is float32 either way.
        multiple_of: tile starts and sizes are aligned to this (the network's downsampling factor).
        out_channels: C_out if it differs from C.
        min_tile: smallest tile tried after repeated out-of-memory errors.
        on_tile: called as ``on_tile(done, total)`` after each tile.

    Returns:
        (1, C_out, H, W) float32 on the CPU.
    """
    parts = [image] if isinstance(image, torch.Tensor) else list(image)
    if any(part.dim() != 4 or part.shape[0] != 1 or part.shape[-2:] != parts[0].shape[-2:] for part in parts):
        raise ValueError(f"tile_apply expects (1, C, H, W) tensors of one size, got {[tuple(p.shape) for p in parts]}")
    channels = sum(part.shape[1] for part in parts)
    height, width = parts[0].shape[-2:]
    tile = max(multiple_of, tile // multiple_of * multiple_of)
    # Only the out-of-memory retry's halved tiles can meet this: never below a stage's minimum overlap, since they
    # stop at 4x it (restore refuses smaller tiles and larger overlaps up front).
    overlap = min(overlap, tile // 4)
    rows = tile_spans(height, tile, overlap, multiple_of)
    columns = tile_spans(width, tile, overlap, multiple_of)
    total = len(rows) * len(columns)
    output = torch.zeros(1, out_channels or channels, height, width)
    weight_sum = torch.zeros(1, 1, height, width)
    done = 0
    for y0, y1 in rows:
        wy = _ramp(y0, y1, height, overlap)
        for x0, x1 in columns:
            crop = parts[0][:, :, y0:y1, x0:x1] if len(parts) == 1 else torch.cat([p[:, :, y0:y1, x0:x1] for p in parts], 1)
            result = _run_tile(fn, crop, tile, overlap, device, dtype, precision, multiple_of, out_channels, min_tile)
            weight = wy[:, None] * _ramp(x0, x1, width, overlap)[None, :]
            output[:, :, y0:y1, x0:x1] += result * weight
            weight_sum[:, :, y0:y1, x0:x1] += weight
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return output.div_(weight_sum)  # in place: no second full-size buffer


def _run_tile(
    fn: TileFn,
    crop: torch.Tensor,
    tile: int,
    overlap: int,
    device: torch.device | str,
    dtype: torch.dtype,
    precision: str,
    multiple_of: int,
    out_channels: int | None,
    min_tile: int,
) -> torch.Tensor:
    try:
        with torch.inference_mode(), autocast(device, precision):
            result = fn(crop.to(device=device, dtype=dtype))
        if result.shape[-2:] != crop.shape[-2:]:
            raise ValueError(f"tile function changed the size {tuple(crop.shape[-2:])} -> {tuple(result.shape[-2:])}")
        return result.to(device="cpu", dtype=torch.float32)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
        if not is_out_of_memory(error):
            raise
        # A crop smaller than the tile ran whole: halve until the retry really cuts it (a photo no bigger than half
        # the tile was given up on with the raw error, never retried in smaller tiles).
        tried = min(tile, max(crop.shape[-2:]))
        smaller = tile // 2
        while smaller >= tried:
            smaller //= 2
        if smaller < min_tile:
            raise DeviceError(
                f"out of memory on {device} even with {tried}px tiles, and this stage needs tiles of at least "
                f"{min_tile}px (4x its minimum overlap); free memory, or run on another device (--device cpu)"
            ) from None
        log.warning("out of memory on a %dpx tile; retrying it as %dpx tiles", tried, smaller)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return tile_apply(
            fn,
            crop,
            tile=smaller,
            overlap=overlap,
            device=device,
            dtype=dtype,
            precision=precision,
            multiple_of=multiple_of,
            out_channels=out_channels,
            min_tile=min_tile,
        )


def tile_stage(
    fn: TileFn,
    image: torch.Tensor | Sequence[torch.Tensor],
    runtime: Runtime,
    *,
    min_overlap: int,
    multiple_of: int = 1,
    out_channels: int | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """:func:`tile_apply` as a restore stage runs it: the run's tile, overlap (at least the network's
    ``min_overlap``), device, dtype and precision, and the out-of-memory retry stopping at the stage's floor (4x its
    minimum overlap: tiles that are mostly seam would change the result)."""
    return tile_apply(
        fn,
        image,
        tile=runtime.tile,
        overlap=max(runtime.tile_overlap, min_overlap),
        min_tile=min_tile_for(min_overlap),
        device=runtime.device,
        dtype=runtime.dtype,
        precision=runtime.precision,
        multiple_of=multiple_of,
        out_channels=out_channels,
        on_tile=on_tile,
    )
