"""Tier 2: the global restoration stage and its place in the pipeline (tiny random-weight networks)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from oldphoto.archs.mapping import LatentMapping
from oldphoto.archs.vae import VAE
from oldphoto.registry import MAPPING_MODEL, all_specs, get_spec
from oldphoto.imageio import is_black_and_white
from oldphoto.errors import ConfigError
from oldphoto.restore.global_stage import REPAIR_REACH, restore_global, temper_restoration, triplet_size_multiple
from oldphoto.restore.pipeline import RestoreOptions, Restorer
from oldphoto.runtime import make_runtime

from .conftest import TINY_MAPPING_CONFIG, TINY_VAE_CONFIG, smooth_image

# Tiles overlap as `restore` makes them: by the mapping's input contract.
MAPPING_OVERLAP = get_spec(MAPPING_MODEL).contract.min_tile_overlap


def tiny_triplet(seed: int = 0):
    torch.manual_seed(seed)
    return VAE(TINY_VAE_CONFIG).eval(), LatentMapping(TINY_MAPPING_CONFIG).eval(), VAE(TINY_VAE_CONFIG).eval()


def scratch_mask(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.float32)
    mask[height // 3 : height // 3 + 3, 5:-5] = 1
    return mask


@pytest.mark.parametrize("shape", [(150, 170), (97, 203)])
def test_global_stage_keeps_size_and_is_the_triplet_with_the_mask(shape):
    """In one tile, the stage is exactly the triplet run on the photo stacked with its mask (sizes that are not on the
    stage's grid are padded and cropped back); the mask reaches the mapping."""
    from oldphoto.restore.global_stage import triplet_restore

    rgb, mask = smooth_image(*shape), scratch_mask(*shape)
    networks = tiny_triplet()
    tiles = []
    out = restore_global(rgb, mask, *networks, make_runtime("cpu", tile=512), min_overlap=MAPPING_OVERLAP, on_tile=lambda done, total: tiles.append(total))
    assert tiles == [1]
    assert out.shape == rgb.shape and out.dtype == np.float32
    stacked = torch.from_numpy(np.concatenate([rgb, mask[:, :, None]], axis=2)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        reference = triplet_restore(stacked, *networks)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, reference, atol=1e-5)
    # The photo is repainted, not passed through, and the mask changes the result (the mapping fills the band).
    assert np.abs(out - rgb).mean() > 0.01
    assert np.abs(out - restore_global(rgb, None, *networks, make_runtime("cpu", tile=512), min_overlap=MAPPING_OVERLAP)).max() > 1e-3


def test_global_stage_tiled_equals_untiled():
    rgb = smooth_image(300, 330)
    networks = tiny_triplet()
    whole = restore_global(rgb, None, *networks, make_runtime("cpu", tile=512), min_overlap=MAPPING_OVERLAP)
    tiles = []
    tiled = restore_global(rgb, None, *networks, make_runtime("cpu", tile=256), min_overlap=MAPPING_OVERLAP, on_tile=lambda done, total: tiles.append(total))
    assert tiles[-1] == 4
    # The squeeze-and-excitation gates pool each tile, so tiles may differ slightly from the whole image.
    assert np.abs(whole - tiled).max() < 1e-3


def test_global_stage_with_coarse_context_tiled_equals_untiled():
    """With coarser context levels the tiles start on a 16-pixel grid, so every stride-2 phase matches the
    whole image's; the remaining difference is the gates' per-tile pooling and the wider reach at the seams."""
    rgb = smooth_image(300, 330)
    vae_old, _, vae_clean = tiny_triplet()
    mapping = LatentMapping(dataclasses.replace(TINY_MAPPING_CONFIG, context_levels=2)).eval()
    for projection in mapping.context.up:  # a context that contributes, as a trained one does
        torch.nn.init.normal_(projection.weight, std=0.1)
    assert triplet_size_multiple(mapping) == 16
    whole = restore_global(rgb, scratch_mask(300, 330), vae_old, mapping, vae_clean, make_runtime("cpu", tile=512), min_overlap=MAPPING_OVERLAP)
    tiled = restore_global(rgb, scratch_mask(300, 330), vae_old, mapping, vae_clean, make_runtime("cpu", tile=256), min_overlap=MAPPING_OVERLAP)
    assert whole.shape == tiled.shape == rgb.shape
    assert np.abs(whole - tiled).max() < 2.5e-4  # tile starts on the 4-pixel grid alone give ~7e-4


def test_mask_changes_only_what_the_mapping_fills():
    rgb = smooth_image(96, 96)
    networks = tiny_triplet()
    runtime = make_runtime("cpu")
    without = restore_global(rgb, None, *networks, runtime, min_overlap=MAPPING_OVERLAP)
    with_mask = restore_global(rgb, scratch_mask(96, 96), *networks, runtime, min_overlap=MAPPING_OVERLAP)
    change = np.abs(without - with_mask).mean(axis=2)
    near, far = change[26:42].mean(), change[70:].mean()  # the hole is rows 32-34
    # Far from the hole (beyond the decoder's reach) the output is unchanged except for the gates' pooling, orders
    # of magnitude below the change around it (measured: 4e-7 against 3e-3).
    assert far < 1e-4 and near > 100 * far


def test_black_and_white_detection():
    gray = np.repeat(smooth_image(40, 40, channels=1), 3, axis=2)
    assert is_black_and_white(gray)
    assert not is_black_and_white(smooth_image(40, 40))
    # Scanner chroma noise of a few levels is still black and white ...
    noisy = np.clip(gray + np.random.default_rng(0).integers(-1, 2, gray.shape) / 255, 0, 1)
    assert is_black_and_white(noisy)


def test_a_grey_photo_with_a_small_tinted_area_keeps_its_colour(random_global_models):
    """... but a hand-tinted area or a red stamp on under 1% of a grey photo made it "black and white", and the
    restoration turned the red grey."""
    photo = np.repeat(smooth_image(300, 200, channels=1), 3, axis=2)
    photo[30:50, 30:50] = (0.8, 0.12, 0.12)
    assert not is_black_and_white(photo)
    out = Restorer(make_runtime("cpu"), RestoreOptions(scratches=False, faces=False)).restore(photo).pixels
    assert not np.array_equal(out[:, :, 0], out[:, :, 1])  # colour kept (black and white would be equal channels)


@pytest.mark.parametrize("channels", [1, 3])
def test_pipeline_with_global_stage(random_global_models, random_scratch_model, channels):
    restorer = Restorer(make_runtime("cpu"), RestoreOptions(faces=False))
    pixels = smooth_image(64, 80, channels=channels)
    result = restorer.restore(pixels)
    assert result.pixels.shape == pixels.shape
    assert "global" in result.stage_seconds and "inpaint" not in result.stage_seconds
    assert not np.allclose(result.pixels, pixels)


def test_black_and_white_print_stored_as_rgb_stays_black_and_white(random_global_models):
    restorer = Restorer(make_runtime("cpu"), RestoreOptions(scratches=False, faces=False))
    gray_rgb = np.repeat(smooth_image(64, 80, channels=1), 3, axis=2)
    result = restorer.restore(gray_rgb)
    out = result.pixels
    assert out.shape == gray_rgb.shape
    assert "global" in result.stage_seconds and not np.allclose(out, gray_rgb)  # restored, and still grey
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])


def test_global_stage_runs_without_scratch_mask(random_global_models):
    restorer = Restorer(make_runtime("cpu"), RestoreOptions(scratches=False, faces=False))
    photo = smooth_image(48, 48)
    result = restorer.restore(photo)
    assert result.mask is None and result.pixels.shape == (48, 48, 3)
    assert "global" in result.stage_seconds and not np.allclose(result.pixels, photo)


def shipped_tensor_shapes(spec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the spec's shipped safetensors file (read from the header, no data loaded)."""
    from safetensors import safe_open

    from oldphoto.weights import locate_weights

    with safe_open(str(locate_weights(spec)), framework="pt") as handle:
        slices = {name: handle.get_slice(name) for name in handle.keys()}
        assert {piece.get_dtype() for piece in slices.values()} == {"F32"}, f"{spec.name}: not all float32"
        return {name: tuple(piece.get_shape()) for name, piece in slices.items()}


@pytest.mark.parametrize("name", [spec.name for spec in all_specs() if spec.shipped])
def test_registry_specs_build_the_shipped_architectures(name):
    """The network each registry spec builds has exactly the shipped file's tensors: the same names, shapes and
    dtype (the strict load would refuse anything else, so a config that drifted from the weights is caught here)."""
    spec = get_spec(name)
    expected = {key: (tuple(value.shape), value.dtype) for key, value in spec.build().state_dict().items()}
    shipped = shipped_tensor_shapes(spec)
    assert sorted(shipped) == sorted(expected), f"{name}: tensor names differ from the registry's architecture"
    assert shipped == {key: shape for key, (shape, _) in expected.items()}, f"{name}: tensor shapes differ"
    assert {dtype for _, dtype in expected.values()} == {torch.float32}


# --- global strength: how much of the restoration is kept away from the repaired damage ----------------------------


def test_temper_restoration_keeps_the_repair_in_the_tone_around_it():
    """A sepia print with a white crack, whose restoration is neutral grey and crack-free: at any strength the crack
    stays repaired and takes the tone kept around it (at 0.5 a repair in the network's grey showed as a grey ghost
    band on a half-sepia print)."""
    restored = np.repeat(smooth_image(60, 80, channels=1) * 0.5 + 0.25, 3, axis=2).astype(np.float32)
    tone = np.array([0.06, 0.0, -0.06], np.float32)
    original = restored + tone
    mask = np.zeros((60, 80), np.float32)
    mask[28:32, 10:70] = 1
    original[28:32, 10:70] = 1.0  # the crack
    assert temper_restoration(original, restored, mask, 1.0) is restored
    for strength in (0.0, 0.5):
        out = temper_restoration(original, restored.copy(), mask, strength)
        assert out.dtype == np.float32 and out.shape == original.shape
        np.testing.assert_allclose(out, restored + (1.0 - strength) * tone, atol=0.01)
    with pytest.raises(ValueError):
        temper_restoration(original, restored.copy(), mask, 1.5)


def test_temper_restoration_leaves_the_rest_exactly_tempered_and_meets_it_without_a_step():
    rng = np.random.default_rng(0)
    original = rng.uniform(0, 1, (60, 80, 3)).astype(np.float32)
    restored = rng.uniform(0, 1, (60, 80, 3)).astype(np.float32)
    mask = np.zeros((60, 80), np.float32)
    mask[28:32, 10:70] = 1
    far = np.ones((60, 80), bool)
    far[28 - 2 * REPAIR_REACH : 32 + 2 * REPAIR_REACH, 10 - 2 * REPAIR_REACH : 70 + 2 * REPAIR_REACH] = False
    for strength in (0.0, 0.4):
        out = temper_restoration(original, restored.copy(), mask, strength)
        np.testing.assert_allclose(out[far], (original + strength * (restored - original))[far], atol=1e-6)
        # Between the repair and the rest the share of the network's change kept rises step by step.
        column = np.abs(out[:, 40] - original[:, 40]) / np.maximum(np.abs(restored[:, 40] - original[:, 40]), 1e-3)
        share = np.median(column, axis=1)[32 : 32 + 2 * REPAIR_REACH + 1]
        assert share[0] > 0.9 and abs(share[-1] - strength) < 0.05
        assert np.all(np.abs(np.diff(share)) < 0.5)
    # Without damage, strength 0 is the photo itself.
    np.testing.assert_array_equal(temper_restoration(original, restored.copy(), None, 0.0), original)
    # The photo given as its own restoration is not written into (it came back all zeros), and float64 comes back float32.
    kept = original.copy()
    np.testing.assert_allclose(temper_restoration(original, original, mask, 0.5), kept, atol=1e-6)
    np.testing.assert_array_equal(original, kept)
    assert temper_restoration(original.astype(np.float64), restored.astype(np.float64), mask, 0.5).dtype == np.float32


@pytest.mark.parametrize("shape", [(4, 4), (1, 50), (50, 1), (3, 5)])
def test_temper_restoration_on_tiny_photos(shape):
    """A 4 x 4 photo with a mark failed with an OpenCV assertion (its pyramid had no level at the tone's scale)."""
    rng = np.random.default_rng(1)
    original, restored = (rng.uniform(0, 1, (*shape, 3)).astype(np.float32) for _ in range(2))
    mask = np.zeros(shape, np.float32)
    mask[0, 0] = 1
    for marked in (mask, np.ones(shape, np.float32)):
        out = temper_restoration(original, restored.copy(), marked, 0.5)
        assert out.shape == original.shape and np.isfinite(out).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_global_strength_zero_changes_only_the_repaired_damage(random_global_models, channels):
    photo = textured(96, 112, seed=3)
    photo = photo.mean(axis=2, keepdims=True) if channels == 1 else photo
    mask = np.zeros((96, 112), np.float32)
    mask[40:44, 20:90] = 1
    runtime = make_runtime("cpu")
    full = Restorer(runtime, RestoreOptions(scratches=False, faces=False)).restore(photo, mask=mask)
    restorer = Restorer(runtime, RestoreOptions(scratches=False, faces=False, global_strength=0.0))
    kept = restorer.restore(photo, mask=mask)
    far = np.ones((96, 112), bool)
    far[40 - 2 * REPAIR_REACH : 44 + 2 * REPAIR_REACH] = False
    assert not np.allclose(full.pixels[far], photo[far], atol=1e-3)  # the full stage changes the whole photo
    np.testing.assert_allclose(kept.pixels[far], photo[far], atol=1e-6)  # strength 0 leaves it as scanned
    # The marked damage is repaired: as far from the scan as the full stage takes it, the tone kept around it aside.
    repaired, full_repair = (np.abs(result.pixels[40:44, 20:90] - photo[40:44, 20:90]).mean() for result in (kept, full))
    assert repaired > 0.5 * full_repair > 0.01
    assert any("strength 0 away from the repaired damage" in step for step in restorer.plan())
    # With nothing marked there is nothing to repair: the photo comes back as it was, and the networks are not run.
    untouched = restorer.restore(photo, mask=np.zeros((96, 112), np.float32))
    np.testing.assert_allclose(untouched.pixels, photo, atol=1e-6)
    assert "global" not in untouched.stage_seconds and "global" in kept.stage_seconds
    with pytest.raises(ConfigError, match="global strength"):
        RestoreOptions(global_strength=-0.1)


# --- the detail fusion (tiny random networks) ----------------------------------------------------------------------


def textured(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: fine random texture on a smooth photo-like base (what a latent bottleneck smooths)."""
    grain = np.random.default_rng(seed).uniform(-0.2, 0.2, (height, width, 1)).astype(np.float32)
    return np.clip(smooth_image(height, width, seed=seed) * 0.6 + 0.2 + grain, 0, 1).astype(np.float32)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()


def test_detail_fusion_starts_as_the_triplet():
    from oldphoto.archs.detail_fusion import DetailFusion

    from .conftest import TINY_DETAIL_CONFIG

    torch.manual_seed(0)
    fusion = DetailFusion(TINY_DETAIL_CONFIG).eval()
    photo, triplet = _tensor(textured(40, 52, 1)), _tensor(smooth_image(40, 52, seed=2))
    with torch.no_grad():
        out = fusion(photo, triplet, torch.zeros(1, 1, 40, 52))
    # A fresh fusion moves the triplet's result less than 1% of the way back to the photo.
    assert out.shape == photo.shape
    assert torch.allclose(out, triplet + torch.sigmoid(torch.tensor(-5.0)) * (photo - triplet), atol=1e-5)


def test_detail_fusion_never_takes_the_photo_back_on_damage():
    from oldphoto.archs.detail_fusion import DetailFusion

    from .conftest import TINY_DETAIL_CONFIG

    fusion = DetailFusion(TINY_DETAIL_CONFIG).eval()
    with torch.no_grad():  # a gate wide open everywhere, no residual
        fusion.head.bias[:4] = 30.0
    photo, triplet = _tensor(textured(48, 48, 3)), _tensor(smooth_image(48, 48, seed=4))
    damage = torch.zeros(1, 1, 48, 48)
    damage[:, :, 20:23, 5:40] = 1.0
    with torch.no_grad():
        out = fusion(photo, triplet, damage)
    grown = torch.nn.functional.max_pool2d(damage, 5, stride=1, padding=2) > 0
    assert torch.allclose(out[grown.expand_as(out)], triplet[grown.expand_as(out)], atol=1e-6)
    assert torch.allclose(out[~grown.expand_as(out)], photo[~grown.expand_as(out)], atol=1e-5)


def test_detail_path_learns_to_keep_undamaged_texture():
    """Trained a little on undamaged textures (the photo its own target), the triplet plus its detail path keeps a
    new texture far closer to the photo than the same triplet without it."""
    from oldphoto.archs.detail_fusion import DetailFusion
    from oldphoto.evaluation.metrics import psnr
    from oldphoto.restore.global_stage import triplet_restore

    from .conftest import TINY_DETAIL_CONFIG

    vae_old, mapping, vae_clean = tiny_triplet()
    torch.manual_seed(0)
    fusion = DetailFusion(TINY_DETAIL_CONFIG)
    optimizer = torch.optim.Adam(fusion.parameters(), lr=3e-3)
    no_damage = torch.zeros(4, 1, 32, 32)
    for step in range(100):
        photos = torch.cat([_tensor(textured(32, 32, 100 + 4 * step + i)) for i in range(4)])
        with torch.no_grad():
            repainted = triplet_restore(torch.cat([photos, no_damage], 1), vae_old, mapping, vae_clean)
        loss = (fusion(photos, repainted, no_damage) - photos).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    photo = textured(64, 64, 7)
    repainted = restore_global(photo, None, vae_old, mapping, vae_clean, make_runtime("cpu"), min_overlap=MAPPING_OVERLAP)
    kept = restore_global(photo, None, vae_old, mapping, vae_clean, make_runtime("cpu"), min_overlap=MAPPING_OVERLAP, detail=fusion.eval())
    assert psnr(photo, kept) > psnr(photo, repainted) + 4.0
