"""Grain matching: repaired damage takes the grain of the photo around it, nothing else changes."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli.app import app
from oldphoto.restore.grain import FADE, FILL_REACH, match_grain


def grain_level(pixels: np.ndarray, rows: slice, cols: slice) -> float:
    """Robust sigma of the high-pass luma, the measure the stage matches."""
    luma = pixels.mean(axis=2)
    residual = (luma - cv2.GaussianBlur(luma, (0, 0), 1.2))[rows, cols]
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def grainy(height: int, width: int, sigma: float = 0.03, seed: int = 0) -> np.ndarray:
    """A mid-grey print with film-like grain (correlated over about a pixel), (H, W, 3) float32."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 0.7)
    noise *= sigma / noise.std()
    ramp = np.linspace(0.35, 0.65, width, dtype=np.float32)[None, :]
    return np.repeat(np.clip(ramp + noise, 0, 1)[:, :, None], 3, axis=2)


def scratch_mask(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.float32)
    mask[100:106, 40:360] = 1.0
    return mask


def test_a_smooth_fill_gets_the_grain_around_it_and_nothing_else_changes():
    photo = grainy(240, 400)
    around = grain_level(photo, slice(40, 80), slice(40, 360))
    filled = photo.copy()
    filled[98:108, 40:360] = filled[98:108, 40:360].mean(axis=(0, 1))  # a smooth repair, as the networks give
    out = match_grain(filled, scratch_mask(240, 400))
    assert grain_level(filled, slice(101, 105), slice(60, 340)) < 0.1 * around
    assert 0.7 * around < grain_level(out, slice(101, 105), slice(60, 340)) < 1.2 * around
    # The tone of the fill is kept (grain has no mean), and pixels beyond the fade are bit for bit the input's.
    assert abs(float(out[100:106, 60:340].mean() - filled[100:106, 60:340].mean())) < 0.003
    distance = cv2.distanceTransform((scratch_mask(240, 400) <= 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    assert np.array_equal(out[distance >= FILL_REACH + FADE], filled[distance >= FILL_REACH + FADE])
    assert np.array_equal(match_grain(filled, scratch_mask(240, 400)), out)  # the same photo, the same grain


def test_no_grain_is_added_where_there_is_none_around_or_the_fill_has_it_already():
    smooth = np.repeat(np.linspace(0.2, 0.8, 400, dtype=np.float32)[None, :, None], 240, axis=0).repeat(3, axis=2)
    # A photo the global stage left smooth (grain removed) gets a smooth repair: nothing is added.
    assert np.abs(match_grain(smooth, scratch_mask(240, 400)) - smooth).max() < 0.5 / 255
    # A fill that already has the photo's grain is not given more.
    photo = grainy(240, 400)
    out = match_grain(photo, scratch_mask(240, 400))
    assert grain_level(out, slice(101, 105), slice(60, 340)) < 1.15 * grain_level(photo, slice(101, 105), slice(60, 340))
    assert np.array_equal(match_grain(photo, np.zeros((240, 400), np.float32)), photo)


def test_restore_gives_repaired_damage_the_grain_unless_no_grain(tmp_path, random_scratch_model):
    """A scratch on a grainy scan, filled by the classical inpainting (--no-global), came back as a smooth streak."""
    photo = grainy(120, 200, sigma=0.04)
    photo[60:63, 20:180] = 1.0  # a white scratch
    (tmp_path / "in").mkdir()
    Image.fromarray((photo * 255).round().astype(np.uint8)).save(tmp_path / "in" / "p.png")
    (tmp_path / "masks").mkdir()
    mask = np.zeros((120, 200), np.uint8)
    mask[59:64, 20:180] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "p_mask.png")
    levels = {}
    for flag in ("--grain", "--no-grain"):
        out = tmp_path / flag
        result = CliRunner().invoke(
            app, ["restore", str(tmp_path / "in"), "-o", str(out), "--masks", str(tmp_path / "masks"), "--no-global", "--no-faces", flag]
        )
        assert result.exit_code == 0, result.output
        with Image.open(out / "p.png") as image:
            restored = np.asarray(image.convert("RGB"), np.float32) / 255  # a grey photo comes back grey
        levels[flag] = grain_level(restored, slice(60, 63), slice(30, 170))
        assert restored[60:63, 30:170].mean() < 0.8  # the scratch is repaired either way
    around = grain_level(photo, slice(20, 50), slice(30, 170))
    assert levels["--no-grain"] < 0.5 * around < levels["--grain"], (levels, around)


def test_a_colour_photograph_gets_no_grain():
    """Luminance grain read as grey speckle on the blue water and green trees around a repair (a colour scan)."""
    photo = grainy(240, 400)
    photo[:, :200] *= np.asarray([0.3, 0.5, 1.0], np.float32)  # blue water beside green foliage
    photo[:, 200:] *= np.asarray([0.3, 1.0, 0.4], np.float32)
    filled = photo.copy()
    filled[98:108, 40:360] = filled[98:108, 40:360].mean(axis=(0, 1))
    assert np.array_equal(match_grain(filled, scratch_mask(240, 400)), filled)
    # The same scene toned sepia (one hue, lighter or darker) is a print whose grain is matched.
    sepia = np.repeat(filled.mean(axis=2, keepdims=True), 3, axis=2) * np.asarray([1.0, 0.85, 0.65], np.float32)
    assert not np.array_equal(match_grain(sepia, scratch_mask(240, 400)), sepia)


def test_below_full_global_strength_the_whole_tempered_repair_takes_grain():
    """At --global-strength below 1 the repair reaches 5 px and fades over 5 more: the grain covered only 4 px and was
    measured half inside that smooth band, so the fill took half the grain and a smooth band stayed beside it."""
    from oldphoto.restore.global_stage import temper_restoration
    from oldphoto.restore.pipeline import RestoreOptions, grain_reach

    photo = grainy(240, 400, sigma=0.03)
    mask = scratch_mask(240, 400)
    network = np.repeat(cv2.GaussianBlur(photo[:, :, 0], (0, 0), 4.0)[:, :, None], 3, axis=2)  # grain removed
    for strength in (0.0, 0.5):
        tempered = temper_restoration(photo, network.copy(), mask, strength)
        around = grain_level(tempered, slice(30, 70), slice(60, 340))  # the grain the tempered photo keeps
        out = match_grain(tempered, mask, *grain_reach(RestoreOptions(global_strength=strength)))
        assert grain_level(out, slice(101, 105), slice(60, 340)) > 0.6 * around, strength  # the fill
        for rows in (slice(92, 97), slice(109, 114)):  # the tempered repair's bands 3-8 px from the marks
            assert grain_level(tempered, rows, slice(60, 340)) < 0.5 * around
            assert grain_level(out, rows, slice(60, 340)) > 0.55 * around, (strength, rows)
    assert grain_reach(RestoreOptions()) == (FILL_REACH, FADE) and grain_reach(RestoreOptions(global_restoration=False))[0] == 0
