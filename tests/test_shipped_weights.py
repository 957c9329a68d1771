"""The shipped weights load, verify, and actually help on a fixed synthetic sample."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from oldphoto.evaluation.metrics import MaskCounts, psnr
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.restore.pipeline import RestoreOptions, Restorer
from oldphoto.restore.scratches import scratch_probability
from oldphoto.runtime import make_runtime
from oldphoto.weights import load_network

from .conftest import smooth_image


def scratched_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean, damaged, mask): a smooth photo-like image with two drawn scratches (one bright, one dark)."""
    clean = cv2.GaussianBlur(smooth_image(160, 200, seed=5), (0, 0), 1.0)
    mask = np.zeros((160, 200), np.uint8)
    cv2.polylines(mask, [np.array([[10, 20], [60, 70], [120, 95], [190, 150]], np.int32)], False, 255, 2, cv2.LINE_AA)
    dark = np.zeros_like(mask)
    cv2.polylines(dark, [np.array([[30, 150], [90, 100], [170, 10]], np.int32)], False, 255, 2, cv2.LINE_AA)
    alpha_bright = (mask / 255.0)[:, :, None]
    alpha_dark = (dark / 255.0)[:, :, None]
    damaged = clean * (1 - alpha_bright) + 0.97 * alpha_bright
    damaged = damaged * (1 - alpha_dark) + 0.05 * alpha_dark
    truth = ((mask > 76) | (dark > 76)).astype(np.float32)
    return clean.astype(np.float32), damaged.astype(np.float32), truth


@pytest.fixture(scope="module")
def scratch_spec():
    spec = get_spec(SCRATCH_MODEL)
    if not spec.shipped:
        pytest.fail("scratch-unet has no sha256 in the registry: its weights should be shipped")
    return spec


def test_scratch_weights_find_a_drawn_scratch(scratch_spec):
    network = load_network(scratch_spec)
    _, damaged, truth = scratched_sample()
    runtime = make_runtime("cpu")
    contract = scratch_spec.contract
    probability = scratch_probability(
        damaged, network, runtime, size_multiple=contract.size_multiple, min_overlap=contract.min_tile_overlap
    )
    on, off = probability[truth > 0].mean(), probability[truth == 0].mean()
    assert on > 4 * off, (on, off)
    counts = MaskCounts.of(probability > scratch_spec.settings["threshold"], truth)
    chance_f1 = 2 * truth.mean() / (1 + truth.mean())  # predicting every pixel as damaged
    assert counts.f1 > 5 * chance_f1, counts


def test_scratch_repair_improves_the_sample(scratch_spec):
    clean, damaged, _ = scratched_sample()
    restorer = Restorer(make_runtime("cpu"), RestoreOptions(scratches=True, global_restoration=False, faces=False))
    restored = restorer.restore(damaged).pixels
    assert psnr(clean, restored) > psnr(clean, damaged) + 1.0


def test_shipped_global_models_restore_a_noisy_scratched_sample():
    from oldphoto.evaluation.metrics import ssim
    from oldphoto.registry import MAPPING_MODEL, VAE_CLEAN_MODEL, VAE_OLD_MODEL
    from oldphoto.restore.global_ import restore_global

    specs = [get_spec(name) for name in (VAE_OLD_MODEL, MAPPING_MODEL, VAE_CLEAN_MODEL)]
    if not all(spec.shipped for spec in specs):
        pytest.fail("the global restoration models must be shipped")
    clean, damaged, truth = scratched_sample()
    noisy = np.clip(damaged + np.random.default_rng(0).normal(0, 0.06, damaged.shape), 0, 1).astype(np.float32)
    networks = (load_network(spec) for spec in specs)
    restored = restore_global(noisy, truth, *networks, make_runtime("cpu"), min_overlap=specs[1].contract.min_tile_overlap)
    assert psnr(clean, restored) > psnr(clean, noisy) + 2.0
    assert ssim(clean, restored) > ssim(clean, noisy) + 0.2
    # The scratches themselves are filled: inside the mask the error drops by more than half.
    inside = truth > 0
    assert np.abs(restored - clean)[inside].mean() < 0.5 * np.abs(noisy - clean)[inside].mean()


def test_shipped_ablation_restores_a_noisy_scratched_sample():
    from oldphoto.evaluation.metrics import ssim
    from oldphoto.registry import ABLATION_MODEL
    from oldphoto.restore.global_ import restore_global_direct

    clean, damaged, truth = scratched_sample()
    noisy = np.clip(damaged + np.random.default_rng(0).normal(0, 0.06, damaged.shape), 0, 1).astype(np.float32)
    spec = get_spec(ABLATION_MODEL)
    restored = restore_global_direct(noisy, truth, load_network(spec), make_runtime("cpu"), min_overlap=spec.contract.min_tile_overlap)
    assert psnr(clean, restored) > psnr(clean, noisy) + 2.0
    assert ssim(clean, restored) > ssim(clean, noisy) + 0.2
    inside = truth > 0
    assert np.abs(restored - clean)[inside].mean() < 0.5 * np.abs(noisy - clean)[inside].mean()


def test_shipped_global_stage_leaves_an_undamaged_texture_alone():
    """A sharp, undamaged, textured photo crop (tests/fixtures/texture-lichen.jpg: thin bright strands, the kind of
    content the detector can mistake for scratches) comes back essentially unchanged from `restore --no-faces`."""
    from pathlib import Path

    from oldphoto.evaluation.metrics import ssim
    from oldphoto.imageio import load_rgb

    photo = load_rgb(Path(__file__).parent / "fixtures" / "texture-lichen.jpg")
    assert cv2.Laplacian(photo.mean(axis=2), cv2.CV_32F).var() > 1e-3  # textured, not a smooth image
    restored = Restorer(make_runtime("cpu", precision="fp32"), RestoreOptions(faces=False)).restore(photo).pixels
    assert psnr(photo, restored) >= 30.0
    assert ssim(photo, restored) >= 0.95


def shaded_badges() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo, badges, scratch): a dark coat-like photo with a shaded bright button and a bright five-pointed star
    (radius 8 px, like an insignia on a sleeve) and one thin bright scratch beside them; masks (H, W) bool."""
    photo = cv2.GaussianBlur(smooth_image(160, 200, seed=5), (0, 0), 1.0) * 0.3 + 0.3
    yy, xx = np.mgrid[:160, :200]
    button = np.clip(8.5 - np.hypot(yy - 50, xx - 60), 0, 1)
    star_points = [
        (140 + (8 if k % 2 == 0 else 3.6) * np.cos(-np.pi / 2 + k * np.pi / 5), 110 + (8 if k % 2 == 0 else 3.6) * np.sin(-np.pi / 2 + k * np.pi / 5))
        for k in range(10)
    ]
    star = np.zeros((160, 200), np.uint8)
    cv2.fillPoly(star, [np.round(np.array(star_points) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    for alpha, (cy, cx) in ((button, (50, 60)), (star / 255.0, (110, 140))):
        shade = 0.92 - 0.12 * np.clip(((yy - cy) + (xx - cx)) / 16, -1, 1)
        photo = photo * (1 - alpha[..., None]) + (shade * alpha)[..., None]
    photo = cv2.GaussianBlur(photo.astype(np.float32), (0, 0), 0.7)
    line = np.zeros((160, 200), np.uint8)
    cv2.polylines(line, [np.array([[100, 10], [115, 70], [95, 150]], np.int32)], False, 255, 2, cv2.LINE_AA)
    alpha = (line / 255.0)[..., None]
    photo = photo * (1 - alpha) + 0.97 * alpha
    return photo.astype(np.float32), (button > 0.5) | (star > 127), line > 76


def test_shipped_detector_leaves_a_bright_badge_alone_and_finds_the_scratch_beside_it(scratch_spec):
    # The detector shipped before issue 16 marked both badges entirely (and the scratch).
    photo, badges, scratch = shaded_badges()
    contract = scratch_spec.contract
    probability = scratch_probability(
        photo, load_network(scratch_spec), make_runtime("cpu"), size_multiple=contract.size_multiple, min_overlap=contract.min_tile_overlap
    )
    marked = probability > scratch_spec.settings["threshold"]
    assert marked[badges].mean() < 0.05
    assert marked[scratch].mean() > 0.6
