from __future__ import annotations

import pytest
import torch

from oldphoto.archs.scratch_unet import ScratchUNet, ScratchUNetConfig
from oldphoto.tiling import tile_apply, tile_starts


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


def test_out_of_memory_halves_the_tile():
    calls: list[int] = []

    def picky(tile: torch.Tensor) -> torch.Tensor:
        calls.append(max(tile.shape[-2:]))
        if max(tile.shape[-2:]) > 100:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return tile * 2

    image = torch.rand(1, 3, 150, 260)
    result = tile_apply(picky, image, tile=256, overlap=16)
    assert torch.allclose(result, image * 2, atol=1e-6)
    assert min(calls) <= 100


def test_other_errors_are_not_swallowed():
    def broken(tile: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        tile_apply(broken, torch.rand(1, 1, 80, 80), tile=64, overlap=8)


def test_tile_starts_cover_and_align():
    starts = tile_starts(1000, 256, 32, multiple_of=32)
    assert starts[0] == 0 and all(s % 32 == 0 for s in starts)
    assert starts[-1] + 256 >= 1000 - 31
    assert all(b - a <= 256 - 32 for a, b in zip(starts, starts[1:]))
