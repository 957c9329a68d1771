from __future__ import annotations

import pytest
import torch

from oldphoto.archs.scratch_unet import ScratchUNet, ScratchUNetConfig
from oldphoto.errors import ConfigError, DeviceError
from oldphoto.tiling import tile_apply, tile_spans


@pytest.mark.parametrize("channels", [(4, 8, 8), (16, 24, 32, 48, 64)])
@pytest.mark.parametrize("shape", [(300, 420), (97, 515)])
def test_tiled_equals_untiled_with_random_unet(channels, shape):
    torch.manual_seed(0)
    network = ScratchUNet(ScratchUNetConfig(channels=channels)).eval()
    image = torch.rand(1, 1, *shape)
    with torch.inference_mode():
        whole = torch.sigmoid(network(image))
    tiled = tile_apply(
        lambda t: torch.sigmoid(network(t)), image, tile=128, overlap=32, multiple_of=network.size_multiple
    )
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < 1e-3


def test_local_filter_is_exact_across_seams():
    conv = torch.nn.Conv2d(3, 2, 5, padding=2)
    image = torch.rand(1, 3, 200, 333)
    with torch.inference_mode():
        whole = conv(image)
    tiled = tile_apply(conv, image, tile=64, overlap=16, out_channels=2)
    assert torch.allclose(tiled, whole, atol=1e-5)


def out_of_memory_above(side: int, calls: list[int]):
    """A tile function that doubles its tile, and runs out of memory on tiles whose longer side exceeds ``side``;
    it records each tile's longer side in ``calls``."""

    def picky(tile: torch.Tensor) -> torch.Tensor:
        calls.append(max(tile.shape[-2:]))
        if max(tile.shape[-2:]) > side:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return tile * 2

    return picky


def test_out_of_memory_halves_the_tile():
    calls: list[int] = []
    image = torch.rand(1, 3, 150, 260)
    result = tile_apply(out_of_memory_above(100, calls), image, tile=256, overlap=16)
    assert torch.allclose(result, image * 2, atol=1e-6)
    assert min(calls) <= 100


def test_out_of_memory_on_a_photo_smaller_than_half_the_tile_is_retried_too():
    """It ran as one tile; the retry at half the tile was skipped as "no smaller", and the raw torch error escaped."""
    calls: list[int] = []
    picky = out_of_memory_above(200, calls)
    image = torch.rand(1, 3, 400, 300)
    result = tile_apply(picky, image, tile=1024, overlap=16, min_tile=128)
    assert torch.allclose(result, image * 2, atol=1e-6)
    assert calls[0] == 400 and min(calls) <= 200
    with pytest.raises(DeviceError, match=r"even with \d+px tiles, and this stage needs tiles of at least 256px"):
        tile_apply(picky, image, tile=1024, overlap=16, min_tile=256)


def test_the_out_of_memory_retry_stops_at_the_stages_floor_and_says_so():
    calls = []

    def hungry(tile: torch.Tensor) -> torch.Tensor:
        calls.append(max(tile.shape[-2:]))
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(DeviceError, match="at least 512px"):
        tile_apply(hungry, torch.rand(1, 1, 1500, 1500), tile=1024, overlap=128, min_tile=512)
    assert 256 < min(calls) <= 512  # halved once, from 1024, and not into tiles that would be mostly seam


def test_restore_refuses_a_tile_below_the_detectors_floor(tmp_path):
    from oldphoto.restore.pipeline import RestoreOptions, Restorer, tile_floor
    from oldphoto.runtime import make_runtime

    options = RestoreOptions(global_restoration=False, faces=False)
    assert tile_floor(options) == (512, "scratch-unet")  # 4x its 128 px minimum overlap
    with pytest.raises(ConfigError, match="--tile 256 is below 512.*use --tile 512 or more"):
        Restorer(make_runtime("cpu", tile=256), options)


def test_other_errors_are_not_swallowed():
    def broken(tile: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        tile_apply(broken, torch.rand(1, 1, 80, 80), tile=64, overlap=8)


@pytest.mark.parametrize(("length", "tile", "overlap", "multiple"), [(1000, 256, 32, 32), (2121, 1024, 64, 16), (5657, 768, 64, 16), (300, 128, 32, 32), (257, 256, 8, 1)])
def test_tile_spans_cover_align_and_stay_small(length, tile, overlap, multiple):
    spans = tile_spans(length, tile, overlap, multiple_of=multiple)
    starts = [start for start, _ in spans]
    assert starts[0] == 0 and spans[-1][1] == length and all(s % multiple == 0 for s in starts)
    assert all(end - start <= tile + multiple - 1 for start, end in spans)
    # Every neighbour pair overlaps by exactly the requested overlap, so seams are feathered everywhere.
    assert all(previous_end - start == overlap for (_, previous_end), (start, _) in zip(spans, spans[1:]))
    # As few tiles as the stride allows, and so no more work than the whole side plus the overlaps.
    stride = (tile - overlap) // multiple * multiple
    assert len(spans) == -(-(length - overlap) // stride)
    assert sum(end - start for start, end in spans) == length + (len(spans) - 1) * overlap


def test_a_side_no_longer_than_the_tile_is_one_tile():
    assert tile_spans(512, 512, 64, multiple_of=16) == [(0, 512)]


def test_tiles_barely_larger_than_the_grid_still_cover_once_each():
    spans = tile_spans(108, 32, 8, multiple_of=32)
    starts = [start for start, _ in spans]
    assert starts == sorted(set(starts)) and spans[0][0] == 0 and spans[-1][1] == 108
    assert all(previous_end > start for (_, previous_end), (start, _) in zip(spans, spans[1:]))
