"""The degradation library and `oldphoto degrade`."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli.app import app
from oldphoto.degrade import (
    PRESETS,
    DamageStamps,
    degrade_image,
    get_preset,
    load_preset_file,
    override,
)
from oldphoto.degrade.presets import op
from oldphoto.degrade.structured import STRUCTURED_OPS, Canvas
from oldphoto.degrade.unstructured import UNSTRUCTURED_OPS
from oldphoto.errors import ConfigError

from .conftest import smooth_image


@pytest.fixture(scope="module")
def stamps(tmp_path_factory) -> DamageStamps:
    """Two tiny synthetic RGBA stamps in a 'scratches' category."""
    folder = tmp_path_factory.mktemp("damage") / "scratches"
    folder.mkdir()
    for i in range(2):
        rgba = np.zeros((40, 40, 4), np.uint8)
        rgba[:, :, :3] = 255
        rgba[5:35, 18 + i : 21 + i, 3] = 255
        Image.fromarray(rgba).save(folder / f"s{i}.png")
    return DamageStamps([folder.parent])


@pytest.mark.parametrize("name", sorted(UNSTRUCTURED_OPS))
def test_unstructured_ops_keep_shape_dtype_range(name):
    image = smooth_image(40, 52)
    out, params = UNSTRUCTURED_OPS[name](image.copy(), np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert isinstance(params, dict)
    json.dumps(params)


@pytest.mark.parametrize("name", sorted(STRUCTURED_OPS))
def test_structured_ops_keep_shape_and_mark_what_they_change(name, stamps):
    clean = smooth_image(96, 128)
    canvas = Canvas.of(clean)
    STRUCTURED_OPS[name](canvas, np.random.default_rng(3), stamps)
    assert canvas.image.shape == clean.shape and canvas.image.dtype == np.float32
    assert 0.0 <= canvas.image.min() and canvas.image.max() <= 1.0
    threshold = 0.08
    mask = canvas.mask(threshold) > 0
    drawn = np.abs(canvas.image - clean).max(axis=2)
    if name == "stains":
        # Translucent discolouration: drawn, but left to the global stage rather than masked for inpainting.
        assert drawn.max() > threshold and not mask.any()
        return
    # The mask is exactly the pixels that damage visibly moved.
    assert drawn[~mask].max(initial=0) <= threshold + 1e-5
    assert drawn[mask].min(initial=1) > threshold
    # Every pixel the damage left untouched is outside the mask.
    assert not np.any(mask & (canvas.opacity == 0))
    assert mask.any(), f"{name} drew nothing"


def test_same_seed_same_output(stamps):
    clean = smooth_image(64, 80)
    for preset in PRESETS.values():
        first = degrade_image(clean, preset, np.random.default_rng(7), stamps)
        second = degrade_image(clean, preset, np.random.default_rng(7), stamps)
        assert np.array_equal(first.degraded, second.degraded)
        assert np.array_equal(first.mask, second.mask)
        assert first.ops == second.ops
    other = degrade_image(clean, get_preset("default"), np.random.default_rng(8), stamps)
    assert not np.array_equal(other.degraded, first.degraded)


def test_mask_is_exactly_the_structured_damage():
    clean = smooth_image(64, 64)
    structured_only = override(get_preset("default"), unstructured=False, grayscale_probability=0.0)
    sample = degrade_image(clean, structured_only, np.random.default_rng(1))
    changed = np.abs(sample.degraded - clean).max(axis=2) > structured_only.mask_threshold + 1e-5
    assert sample.mask.any()
    assert np.array_equal(changed, sample.mask > 0)
    no_damage = override(get_preset("default"), structured=False)
    assert not degrade_image(clean, no_damage, np.random.default_rng(1)).mask.any()


def test_mask_marks_damage_still_visible_after_the_scan():
    """Blur after the damage: the mask is where the blurred damaged print differs from the blurred clean one."""
    clean = smooth_image(96, 96)
    preset = dataclasses.replace(
        get_preset("default"),
        aging=(),
        structured=(op("scratches", 1.0, count=(3, 3), width=(0.5, 3.0), opacity=(0.3, 1.0)),),
        scan=(op("gaussian_blur", 1.0, kernel_sizes=(7,), sigma=(2.0, 2.0)),),
        grayscale_probability=0.0,
        min_structured=0,
    )
    sample = degrade_image(clean, preset, np.random.default_rng(3))
    blurred_clean, _ = UNSTRUCTURED_OPS["gaussian_blur"](clean.copy(), np.random.default_rng(0), kernel_sizes=(7,), sigma=(2.0, 2.0))
    difference = np.abs(sample.degraded - blurred_clean).max(axis=2)
    visible = difference > preset.mask_threshold
    assert sample.mask.any() and np.array_equal(sample.mask > 0, visible)
    # The sample's change map is that difference (what the mask thresholds), up to float rounding.
    np.testing.assert_allclose(sample.change, difference, atol=1e-5)
    assert np.array_equal(sample.mask > 0, sample.change > preset.mask_threshold)


def test_bopbtl_preset_follows_the_paper():
    bopbtl = get_preset("bopbtl")
    assert [s.name for s in bopbtl.scan] == ["gaussian_blur", "noise", "downscale", "jpeg"]
    assert all(s.probability == 0.7 for s in bopbtl.scan)
    assert bopbtl.grayscale_probability == 0.1 and bopbtl.shuffle_scan
    kwargs = {s.name: s.kwargs() for s in bopbtl.scan}
    assert kwargs["gaussian_blur"]["kernel_sizes"] == (3, 5, 7) and kwargs["jpeg"]["quality"] == (40, 100)


def test_grayscale_print_makes_gray_target():
    always_gray = dataclasses.replace(get_preset("bopbtl"), grayscale_probability=1.0)
    sample = degrade_image(smooth_image(32, 32), always_gray, np.random.default_rng(0))
    assert np.allclose(sample.clean[:, :, 0], sample.clean[:, :, 2])


def test_preset_toml(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "bopbtl"\ngrayscale_probability = 0.5\n[[scan]]\nname = "jpeg"\nprobability = 1.0\nparams = { quality = [10, 20] }\n')
    preset = load_preset_file(path)
    assert preset.name == "mine" and preset.grayscale_probability == 0.5
    assert preset.scan == (op("jpeg", 1.0, quality=[10, 20]),)
    path.write_text('[[scan]]\nname = "teleport"\n')
    with pytest.raises(ConfigError, match="unknown scan op 'teleport'"):
        load_preset_file(path)
    with pytest.raises(ConfigError, match="available"):
        get_preset("nope")


def test_degrade_cli_writes_a_consistent_set(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        Image.fromarray((smooth_image(40, 60, seed=i) * 255).astype(np.uint8)).save(src / f"p{i}.png")
    (src / "bad.jpg").write_bytes(b"nope")
    out = tmp_path / "set"
    result = CliRunner().invoke(app, ["degrade", str(src / "*"), "-o", str(out), "--count", "3", "--seed", "4"])
    assert result.exit_code == 1  # bad.jpg reported, the rest written
    assert "bad.jpg" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    stems = sorted(r["stem"] for r in manifest["images"])
    assert manifest["seed"] == 4 and manifest["preset"]["name"] == "default"
    for folder in ("clean", "degraded", "mask"):
        assert sorted(p.stem for p in (out / folder).iterdir()) == stems
    for stem in stems:
        with Image.open(out / "clean" / f"{stem}.png") as c, Image.open(out / "mask" / f"{stem}.png") as m:
            assert c.size == m.size == (60, 40)
    again = tmp_path / "again"
    CliRunner().invoke(app, ["degrade", str(src / "*"), "-o", str(again), "--count", "3", "--seed", "4"])
    assert (again / "degraded" / f"{stems[0]}.png").read_bytes() == (out / "degraded" / f"{stems[0]}.png").read_bytes()
