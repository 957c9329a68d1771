"""restore --keep-tone: the restored luminance in the photo's own colour (issue 19).

The unit tests use synthetic toned prints whose true tone is known; the pipeline tests run the shipped weights on
CPU with small tiles and compare against the default restore of the same photo.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from oldphoto.errors import DataError
from oldphoto.restore.pipeline import RestoreOptions, Restorer
from oldphoto.restore.tone import keep_tone
from oldphoto.runtime import make_runtime

from .conftest import smooth_image

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
SEPIA = np.array([1.12, 0.98, 0.80], np.float32) / np.float32(np.array([1.12, 0.98, 0.80]) @ LUMA)
"""A multiplicative sepia tint with unit luminance: a grey level g toned is g * SEPIA (its luminance stays g)."""
PRUSSIAN_BLUE = np.array([0.05, 0.20, 0.45], np.float32)


def luma(pixels: np.ndarray) -> np.ndarray:
    return pixels @ LUMA


def chroma(pixels: np.ndarray) -> np.ndarray:
    """(R - Y, G - Y, B - Y): what the tone is, with the luminance taken out."""
    return pixels - luma(pixels)[:, :, None]


def grey_print(height: int = 144, width: int = 176, seed: int = 3) -> np.ndarray:
    """(H, W) float32 grey levels in [0.05, 0.85]: smooth shapes plus grain (below 0.89 so sepia does not clip)."""
    grain = np.random.default_rng(seed).uniform(-0.08, 0.08, (height, width)).astype(np.float32)
    return np.clip(smooth_image(height, width, channels=1, seed=seed)[:, :, 0] * 0.7 + 0.15 + grain, 0.05, 0.85)


def sepia(grey: np.ndarray) -> np.ndarray:
    return (grey[:, :, None] * SEPIA).astype(np.float32)


def cyanotype(grey: np.ndarray) -> np.ndarray:
    """Prussian blue in the shadows to paper white in the highlights: a tone that is not a multiple of the grey."""
    return (PRUSSIAN_BLUE + (1 - PRUSSIAN_BLUE) * grey[:, :, None]).astype(np.float32)


def neutral(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2).astype(np.float32)


def fine_chroma_error(pixels: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared chroma error finer than ~3 px (what noise, stains and scratches in the colour are)."""
    error = chroma(pixels) - chroma(truth)
    return float(((error - cv2.GaussianBlur(error, (0, 0), 3.0)) ** 2).mean())


# --- keep_tone itself -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 80), (64, 80, 1)])
def test_black_and_white_source_passes_the_restoration_through(shape):
    source = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    restored = sepia(grey_print(64, 80))
    assert keep_tone(source, restored) is restored


def test_a_toned_print_gets_its_tone_back_on_the_restored_luminance():
    grey = grey_print()
    restored_grey = np.clip(grey * 0.85 + 0.02, 0, 1)  # the restoration changed the brightness a little
    for tone in (sepia, cyanotype):
        ideal = tone(restored_grey)  # the print as it would be toned at the restored grey levels
        out = keep_tone(tone(grey), neutral(luma(ideal)))
        assert out.shape == (*grey.shape, 3) and out.dtype == np.float32
        np.testing.assert_allclose(luma(out), luma(ideal), atol=1e-5)
        error = np.abs(chroma(out) - chroma(ideal)).mean()
        assert error < 0.1 * np.abs(chroma(ideal)).mean(), (tone.__name__, error)


def test_neutral_source_gives_the_restored_luminance_in_grey():
    grey = grey_print()
    restored = sepia(np.clip(grey * 0.9, 0, 1))  # a restoration that made up a colour cast
    out = keep_tone(neutral(grey), restored)
    np.testing.assert_allclose(luma(out), luma(restored), atol=1e-5)
    assert np.abs(chroma(out)).max() < 1e-4


def test_noise_and_scratches_in_the_source_colour_do_not_come_back():
    grey = grey_print()
    clean = sepia(grey)
    rng = np.random.default_rng(1)
    damaged = clean + rng.normal(0, 0.05, clean.shape).astype(np.float32)  # colour noise, each channel its own
    lines = np.zeros(grey.shape, np.uint8)
    cv2.polylines(lines, [np.array([[5, 10], [90, 70], [170, 130]], np.int32)], False, 255, 2)
    cv2.polylines(lines, [np.array([[20, 140], [120, 5]], np.int32)], False, 255, 2)
    damaged[lines > 0] = (0.9, 0.2, 0.7)  # magenta scratches
    damaged = np.clip(damaged, 0, 1).astype(np.float32)
    # A full-resolution copy of the source's chroma would bring back all of it (ratio 1); the grain of the print
    # itself is in the chroma too (sepia is a multiple of the grey), which is why the error, not the chroma, is measured.
    for damage in (None, (lines > 0).astype(np.float32)):  # with and without the scratch mask
        out = keep_tone(damaged, neutral(grey), damage=damage)
        assert fine_chroma_error(out, clean) < 0.03 * fine_chroma_error(damaged, clean)
    # ... and with the scratches masked (as the pipeline does), the tone itself is the print's.
    np.testing.assert_allclose(chroma(out).mean(axis=(0, 1)), chroma(clean).mean(axis=(0, 1)), atol=0.004)


def test_the_scratch_mask_keeps_a_white_scratch_out_of_the_tone_around_it():
    grey = grey_print()
    source = sepia(grey)
    scratch = np.zeros(grey.shape, np.float32)
    scratch[:, 80:92] = 1
    source[scratch > 0] = 0.97  # a wide neutral white scratch, filled in by the restoration
    target = chroma(sepia(grey))[:, 80:92]
    errors = [np.abs(chroma(keep_tone(source, neutral(grey), damage=mask))[:, 80:92] - target).mean() for mask in (None, scratch)]
    assert errors[1] < 0.5 * errors[0] and errors[1] < 0.1 * np.abs(target).mean(), errors


def test_a_sharp_edge_between_two_tones_does_not_bleed():
    """Deep Prussian blue against paper white: a blurred chroma would tint the white blue and wash out the blue
    for several pixels either side; the tone follows the restored luminance's edge instead."""
    grey = np.full((96, 128), 0.9, np.float32)
    grey[:, :64] = 0.1
    truth = cyanotype(grey)
    noisy = np.clip(truth + np.random.default_rng(2).normal(0, 0.03, truth.shape), 0, 1).astype(np.float32)
    out = keep_tone(noisy, neutral(luma(truth)))
    near_edge = slice(58, 70)
    error = np.abs(chroma(out) - chroma(truth))[:, near_edge].max(axis=2).mean(axis=0)
    assert error.max() < 0.03, error  # the blue is ~0.1 of chroma from grey


def test_saturated_tone_at_black_and_white_keeps_luminance_and_hue():
    grey = np.tile(np.linspace(0, 1, 101, dtype=np.float32), (20, 1))
    source = np.clip(PRUSSIAN_BLUE * 0.3 + neutral(np.full_like(grey, 0.5)) * 0.7, 0, 1)  # one strong blue tone
    out = keep_tone(source.astype(np.float32), neutral(grey))
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_allclose(luma(out), grey, atol=1e-5)
    kept = chroma(out)
    strong = np.linalg.norm(kept, axis=2) > 1e-3
    direction = chroma(source)[0, 0] / np.linalg.norm(chroma(source)[0, 0])
    cosine = (kept[strong] @ direction) / np.linalg.norm(kept[strong], axis=1)
    assert strong[:, 20:80].all() and cosine.min() > 0.999  # scaled down at the ends, never turned


def test_mismatched_sizes_are_refused():
    with pytest.raises(DataError):
        keep_tone(sepia(grey_print(64, 80)), neutral(grey_print(64, 81)))


# --- in the pipeline (shipped weights, CPU, one 512-px tile) ---------------------------------------------------------


@pytest.fixture(scope="module")
def sepia_restorations():
    photo = sepia(grey_print())
    runtime = make_runtime("cpu", tile=512)
    default = Restorer(runtime, RestoreOptions()).restore(photo)
    restorer = Restorer(runtime, RestoreOptions(keep_tone=True))
    return photo, default, restorer.restore(photo), restorer.plan()


def test_keep_tone_keeps_the_sepia_the_default_restore_neutralises(sepia_restorations):
    photo, default, kept, _ = sepia_restorations

    def tint(pixels: np.ndarray) -> np.ndarray:
        """Mean chroma per unit of mean luminance: the tone's hue and strength, whatever the brightness."""
        return chroma(pixels).mean(axis=(0, 1)) / luma(pixels).mean()

    assert np.linalg.norm(tint(default.pixels)) < 0.8 * np.linalg.norm(tint(photo))  # the default neutralises it
    np.testing.assert_allclose(tint(kept.pixels), tint(photo), atol=0.05 * np.linalg.norm(tint(photo)))
    # Pixel by pixel: the print's own sepia at the default restore's grey levels.
    ideal = sepia(luma(default.pixels))
    assert np.abs(chroma(kept.pixels) - chroma(ideal)).mean() < 0.15 * np.abs(chroma(ideal)).mean()
    assert np.abs(chroma(default.pixels) - chroma(ideal)).mean() > 0.3 * np.abs(chroma(ideal)).mean()


def test_keep_tone_changes_only_the_colour(sepia_restorations):
    _, default, kept, plan = sepia_restorations
    np.testing.assert_allclose(luma(kept.pixels), luma(default.pixels), atol=1e-4)
    np.testing.assert_array_equal(kept.mask, default.mask)
    assert "tone" in kept.stage_seconds and "tone" not in default.stage_seconds
    assert list(kept.stage_seconds)[-1] == "tone"  # the last stage, after the faces
    assert any("tone" in step for step in plan)


@pytest.mark.parametrize("channels", [1, 3])
def test_keep_tone_leaves_a_black_and_white_photo_as_the_default_restores_it(channels):
    grey = grey_print(96, 112)
    photo = grey[:, :, None] if channels == 1 else neutral(grey)
    runtime = make_runtime("cpu", tile=512)
    options = RestoreOptions(faces=False)
    default = Restorer(runtime, options).restore(photo)
    kept = Restorer(runtime, RestoreOptions(faces=False, keep_tone=True)).restore(photo)
    assert kept.pixels.shape == photo.shape
    np.testing.assert_array_equal(kept.pixels, default.pixels)
    assert "tone" not in kept.stage_seconds
