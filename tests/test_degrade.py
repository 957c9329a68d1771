"""The degradation library and `oldphoto degrade`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli.app import app
from oldphoto.degrade import (
    DISTRACTOR_OPS,
    PRESETS,
    SCORED_CHANGE,
    DamageStamps,
    DegradedSample,
    degrade_image,
    get_preset,
    load_preset_file,
    override,
)
from oldphoto.degrade.presets import Preset, op, preset_summary
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
    # Applied, the op visibly changes the photo (salt and pepper, the sparsest, moves 1-2% of the pixels fully) ...
    change = np.abs(out - image)
    assert change.max() > 0.05 and change.mean() > 0.002, f"{name} left the photo (almost) as it was"
    # ... and what it draws is the seed's: the same seed again gives the same image, another seed another one.
    again, _ = UNSTRUCTURED_OPS[name](image.copy(), np.random.default_rng(0))
    other, _ = UNSTRUCTURED_OPS[name](image.copy(), np.random.default_rng(1))
    assert np.array_equal(out, again)
    if name != "grayscale":  # the one op without a random draw
        assert not np.array_equal(out, other)


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
    # Applied, the op visibly changes the photo (dust, the smallest, moves 13 pixels here).
    assert (drawn > threshold).sum() >= 10, f"{name} drew (almost) nothing"
    if name == "stains":
        # Translucent discolouration: drawn, but left to the global stage rather than masked for inpainting.
        assert drawn.max() > threshold and not mask.any()
        return
    # The mask is exactly the pixels that damage visibly moved.
    assert drawn[~mask].max(initial=0) <= threshold + 1e-5
    assert drawn[mask].min(initial=1) > threshold
    # Every pixel the damage left untouched is outside the mask.
    assert not np.any(mask & (canvas.opacity == 0))
    assert mask.sum() >= 10, f"{name} marked (almost) nothing"  # dust, the smallest, marks 13 pixels here


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_same_seed_same_output(stamps, name):
    clean = smooth_image(64, 80)
    preset = PRESETS[name]
    first = degrade_image(clean, preset, np.random.default_rng(7), stamps)
    second = degrade_image(clean, preset, np.random.default_rng(7), stamps)
    assert np.array_equal(first.degraded, second.degraded)
    assert np.array_equal(first.mask, second.mask)
    assert first.ops == second.ops
    # The same preset with another seed draws other damage: the seed, not the preset, is what varies here.
    other = degrade_image(clean, preset, np.random.default_rng(8), stamps)
    assert not np.array_equal(other.degraded, first.degraded)
    assert other.ops != first.ops


def test_mask_is_exactly_the_structured_damage():
    clean = smooth_image(64, 64)
    structured_only = override(get_preset("default"), unstructured=False, grayscale_probability=0.0)
    sample = degrade_image(clean, structured_only, np.random.default_rng(1))
    # Against the clean target, which has the distractors drawn in: they are scene, not damage.
    changed = np.abs(sample.degraded - sample.clean).max(axis=2) > structured_only.mask_threshold + 1e-5
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
    blurred_clean, _ = UNSTRUCTURED_OPS["gaussian_blur"](sample.clean.copy(), np.random.default_rng(0), kernel_sizes=(7,), sigma=(2.0, 2.0))
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
    # Contents of the wrong type, a folder, a file that is not UTF-8: each was a Python traceback.
    bad = {
        'grayscale_probability = "0.5"': "grayscale_probability must be float",
        "structured = 5": "structured must be a list of op tables",
        '[[structured]]\nname = "scratches"\nprobability = "high"': "probability must be a number",
        '[[structured]]\nname = "scratches"\nparams = 3': "params must be a table",
        '[[structured]]\nname = ["scratches"]': "needs a name",
        "shuffle_scan = 1": "shuffle_scan must be bool",
        "min_structured = 1.5": "min_structured must be int",
    }
    for text, message in bad.items():
        path.write_text(text + "\n")
        with pytest.raises(ConfigError, match=message):
            load_preset_file(path)
    path.write_bytes(b"\xff\xfebad")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_preset_file(path)
    with pytest.raises(ConfigError, match="is a folder"):
        load_preset_file(tmp_path)
    path.write_text("grayscale_probability = 1\nmin_structured = 2\n")  # an integer where a float is due is fine
    assert load_preset_file(path).grayscale_probability == 1


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


# The presets as they were before distractors, op for op: `default-v1` and `bopbtl-v1` must stay exactly these.
TODAYS_DEFAULT = Preset(
    name="default-v1",
    aging=(
        op("fade", 0.5),
        op("yellowing", 0.35),
        op("color_cast", 0.3),
        op("uneven_exposure", 0.3),
        op("vignetting", 0.25),
        op("paper_texture", 0.3),
        op("halftone", 0.05),
    ),
    structured=(
        op("scratches", 0.6),
        op("stamps", 0.5),
        op("dust", 0.5),
        op("cracks", 0.15),
        op("hairs", 0.2),
        op("creases", 0.1),
        op("torn_edges", 0.08),
        op("stains", 0.12),
    ),
    scan=(
        op("gaussian_blur", 0.25, kernel_sizes=(3, 5), sigma=(0.5, 2.0)),
        op("defocus_blur", 0.1, radius=(1.0, 2.5)),
        op("motion_blur", 0.05, length=(3.0, 8.0)),
        op("gaussian_noise", 0.3, sigma=(3 / 255, 30 / 255)),
        op("poisson_noise", 0.1),
        op("speckle_noise", 0.05, sigma=(3 / 255, 25 / 255)),
        op("salt_and_pepper", 0.03, amount=(0.0005, 0.005)),
        op("film_grain", 0.35),
        op("downscale", 0.35, scale=(0.4, 1.0)),
        op("jpeg", 0.5, quality=(40, 95)),
    ),
    grayscale_probability=0.3,
    min_structured=1,
)
TODAYS_BOPBTL = Preset(
    name="bopbtl-v1",
    scan=(
        op("gaussian_blur", 0.7, kernel_sizes=(3, 5, 7), sigma=(1.0, 5.0)),
        op("noise", 0.7, kinds=("gaussian", "speckle", "salt_and_pepper"), sigma=(5 / 255, 50 / 255)),
        op("downscale", 0.7, scale=(0.5, 1.0), up=("nearest", "bilinear")),
        op("jpeg", 0.7, quality=(40, 100)),
    ),
    structured=(op("scratches", 1.0, count=(1, 4), width=(1.0, 4.0), opacity=(0.9, 1.0), bright_probability=1.0, bright=(0.95, 1.0)),),
    structured_after_scan=True,
    grayscale_probability=0.1,
)


def only_distractors(**changes) -> Preset:
    """Every distractor op, always; no damage, no ageing, no scan."""
    settings = {"aging": (), "structured": (), "scan": (), "min_structured": 0, "grayscale_probability": 0.0, **changes}
    return dataclasses.replace(get_preset("default"), distractors=tuple(op(name, 1.0) for name in DISTRACTOR_OPS), **settings)


def test_v1_presets_are_the_presets_from_before_distractors():
    assert get_preset("default-v1") == TODAYS_DEFAULT and get_preset("bopbtl-v1") == TODAYS_BOPBTL
    # The new presets are exactly v1 plus the distractors group.
    for name in ("default", "bopbtl"):
        new, old = get_preset(name), get_preset(f"{name}-v1")
        assert new.distractors and not old.distractors
        assert dataclasses.replace(new, name=old.name, distractors=()) == old


def test_distractors_leave_every_damage_draw_as_it_was(stamps):
    """Distractors draw from a stream of their own: the damage, ageing and scan draw the same numbers as in v1."""
    clean = smooth_image(64, 80)
    fired = 0
    for name in ("default", "bopbtl"):
        for seed in range(6):
            new = degrade_image(clean, get_preset(name), np.random.default_rng(seed), stamps)
            old = degrade_image(clean, get_preset(f"{name}-v1"), np.random.default_rng(seed), stamps)
            assert [o for o in new.ops if o["group"] != "distractors"] == old.ops
            fired += any(o["group"] == "distractors" for o in new.ops)
            assert not old.distractor.any()
            # The generator is left where v1 leaves it, so the next image of a set draws the same too.
            rng_new, rng_old = np.random.default_rng(seed), np.random.default_rng(seed)
            degrade_image(clean, get_preset(name), rng_new, stamps)
            degrade_image(clean, get_preset(f"{name}-v1"), rng_old, stamps)
            assert rng_new.random() == rng_old.random()
    assert fired >= 6


@pytest.mark.parametrize("name", sorted(DISTRACTOR_OPS))
def test_distractor_ops_are_seeded_and_draw_something(name):
    clean = smooth_image(96, 128)

    def draw(seed: int) -> tuple[np.ndarray, dict]:
        canvas = Canvas.of(clean)
        params = DISTRACTOR_OPS[name](canvas, np.random.default_rng(seed))
        return canvas.image, params

    first, params = draw(5)
    again, params_again = draw(5)
    other, _ = draw(6)
    assert first.shape == clean.shape and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert np.array_equal(first, again) and params == params_again
    assert not np.array_equal(first, other)
    assert np.abs(first - clean).max() > 0.08, f"{name} drew nothing visible"
    json.dumps(params)


def test_distractors_are_in_the_clean_photo_never_in_the_mask():
    clean = smooth_image(96, 128)
    preset = only_distractors()
    sample = degrade_image(clean, preset, np.random.default_rng(2))
    assert len([o for o in sample.ops if o["group"] == "distractors"]) == len(DISTRACTOR_OPS)
    assert not sample.mask.any() and not sample.change.any()
    assert sample.distractor.any()
    # Nothing but the distractors ran: the target has them, and the photo is that target.
    assert np.array_equal(sample.degraded, sample.clean)
    drawn = np.abs(sample.clean - clean).max(axis=2) > preset.mask_threshold
    assert np.array_equal(sample.distractor > 0, drawn)
    # With damage on top, the mask is still only the damage: where a distractor alone was drawn it stays clear.
    damaged = dataclasses.replace(preset, structured=(op("scratches", 1.0, count=(2, 2)),))
    with_damage = degrade_image(clean, damaged, np.random.default_rng(2))
    assert with_damage.mask.any()
    assert np.array_equal(with_damage.clean, sample.clean)
    assert np.array_equal(with_damage.mask > 0, np.abs(with_damage.degraded - with_damage.clean).max(axis=2) > preset.mask_threshold + 1e-5)


def test_distractors_are_seeded_in_the_pipeline_and_go_gray_with_the_print():
    clean = smooth_image(64, 64)
    first = degrade_image(clean, get_preset("default"), np.random.default_rng(11))
    again = degrade_image(clean, get_preset("default"), np.random.default_rng(11))
    assert np.array_equal(first.clean, again.clean) and np.array_equal(first.distractor, again.distractor)
    others = [degrade_image(clean, only_distractors(), np.random.default_rng(seed)).distractor for seed in (1, 2)]
    assert not np.array_equal(*others)
    gray = degrade_image(clean, only_distractors(grayscale_probability=1.0), np.random.default_rng(1))
    assert gray.distractor.any() and np.allclose(gray.clean[:, :, 0], gray.clean[:, :, 2])


def test_scored_mask_and_dont_care_band():
    assert SCORED_CHANGE == pytest.approx(41 / 255, abs=0.001)
    change = np.array([[0.0, 0.05, 0.1, 0.15], [0.16, 0.3, 0.9, 0.0]], np.float32)
    mask = (change > 0.08).astype(np.float32)
    sample = DegradedSample(np.zeros((2, 4, 3), np.float32), np.zeros((2, 4, 3), np.float32), mask, [], change)
    assert not sample.distractor.any() and sample.distractor.shape == (2, 4)
    assert sample.scored_mask.tolist() == [[0, 0, 0, 0], [1, 1, 1, 0]]
    assert sample.dont_care.tolist() == [[0, 0, 1, 1], [0, 0, 0, 0]]
    assert np.array_equal(sample.scored_mask + sample.dont_care, mask)


def test_distractor_group_in_toml_overrides_and_summary(tmp_path):
    path = tmp_path / "signs.toml"
    path.write_text('[[distractors]]\nname = "lettering"\nprobability = 0.5\nparams = { height = [0.05, 0.1] }\n')
    preset = load_preset_file(path)
    assert preset.distractors == (op("lettering", 0.5, height=[0.05, 0.1]),)
    assert preset_summary(preset)["distractors"] == [{"name": "lettering", "probability": 0.5, "params": {"height": (0.05, 0.1)}}]
    path.write_text('[[distractors]]\nname = "scratches"\n')
    with pytest.raises(ConfigError, match="unknown distractors op 'scratches'"):
        load_preset_file(path)
    # Distractors are scene content: switching the damage off keeps them; they have a switch of their own.
    assert override(get_preset("default"), structured=False).distractors == get_preset("default").distractors
    assert override(get_preset("default"), distractors=False).distractors == ()


def test_degrade_cli_writes_ignore_and_distractor_masks(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        Image.fromarray((smooth_image(64, 80, seed=i) * 255).astype(np.uint8)).save(src / f"p{i}.png")
    out = tmp_path / "set"
    args = ["degrade", str(src / "*"), "-o", str(out), "--count", "4", "--seed", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert "41/255" in manifest["mask_definition"] and manifest["preset"]["distractors"]
    stems = sorted(r["stem"] for r in manifest["images"])
    for folder in ("clean", "degraded", "mask", "ignore", "distractor"):
        assert sorted(p.stem for p in (out / folder).iterdir()) == stems
    for stem in stems:
        mask = np.asarray(Image.open(out / "mask" / f"{stem}.png")) > 127
        ignore = np.asarray(Image.open(out / "ignore" / f"{stem}.png")) > 127
        assert not np.any(ignore & ~mask)  # the don't-care band is part of the mask
    # clean/ has the distractors in it: with damage, ageing and scan off, the clean photo is the source plus them.
    scene = tmp_path / "scene"
    result = CliRunner().invoke(app, [*args[:3], str(scene), *args[4:], "--no-structured", "--no-unstructured", "--grayscale-prob", "0"])
    assert result.exit_code == 0, result.output
    marked = 0
    for record in json.loads((scene / "manifest.json").read_text())["images"]:
        stem = record["stem"]
        source = np.asarray(Image.open(record["source"]).convert("RGB")).astype(int)
        clean = np.asarray(Image.open(scene / "clean" / f"{stem}.png").convert("RGB")).astype(int)
        distractor = np.asarray(Image.open(scene / "distractor" / f"{stem}.png")) > 127
        assert not (np.asarray(Image.open(scene / "mask" / f"{stem}.png")) > 127).any()
        assert np.all(np.abs(clean - source).max(axis=2)[distractor] > 0.08 * 255 - 1)
        marked += int(distractor.sum())
    assert marked > 0
    v1 = tmp_path / "v1"
    result = CliRunner().invoke(app, [*args[:3], str(v1), *args[4:], "--preset", "default-v1"])
    assert result.exit_code == 0, result.output
    assert (v1 / "ignore").is_dir() and not (v1 / "distractor").exists()


def test_degrade_refuses_a_non_empty_folder_and_overwrite_replaces_only_the_set(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        Image.fromarray((smooth_image(32, 40, seed=i) * 255).astype(np.uint8)).save(src / f"p{i}.png")
    out = tmp_path / "set"
    args = ["degrade", str(src), "-o", str(out), "--seed", "1"]
    assert CliRunner().invoke(app, [*args, "--count", "3"]).exit_code == 0
    stale = sorted(p.name for p in (out / "clean").iterdir())
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "keep.png").write_bytes(b"x")
    refused = CliRunner().invoke(app, [*args, "--count", "2"])
    assert refused.exit_code == 2
    text = " ".join(refused.output.split())
    assert "not empty" in text and "--overwrite" in text and "empty folder" in text
    assert sorted(p.name for p in (out / "clean").iterdir()) == stale
    result = CliRunner().invoke(app, [*args, "--count", "2", "--overwrite"])
    assert result.exit_code == 0, result.output
    stems = sorted(r["stem"] for r in json.loads((out / "manifest.json").read_text())["images"])
    assert len(stems) == 2
    for folder in ("clean", "degraded", "mask", "ignore", "distractor"):
        assert sorted(p.stem for p in (out / folder).iterdir()) == stems
    assert (out / "notes.txt").read_text() == "mine" and (out / "mine" / "keep.png").exists()
    # A file of the user's inside a part (a scan copied into clean/, notes in degraded/): the part's whole folder
    # was deleted with it. Refused now, naming it, and nothing is removed.
    (out / "clean" / ".draft.part").write_bytes(b"my hidden draft")  # hidden: not in the way, and kept
    (out / "clean" / "my_original_scan.jpg").write_bytes(b"mine")
    (out / "degraded" / "notes").mkdir()
    kept = sorted(p.name for p in (out / "mask").iterdir())
    refused = CliRunner().invoke(app, [*args, "--count", "2", "--overwrite"])
    assert refused.exit_code == 2 and "which is not a pair of the set" in " ".join(refused.output.split()), refused.output
    assert (out / "clean" / "my_original_scan.jpg").read_bytes() == b"mine" and (out / "degraded" / "notes").is_dir()
    assert sorted(p.name for p in (out / "mask").iterdir()) == kept
    (out / "clean" / "my_original_scan.jpg").unlink()
    (out / "degraded" / "notes").rmdir()
    assert CliRunner().invoke(app, [*args, "--count", "2", "--overwrite"]).exit_code == 0
    assert (out / "clean" / ".draft.part").read_bytes() == b"my hidden draft"
    # Sources inside a part of the set are never deleted.
    nested = tmp_path / "nested"
    (nested / "clean").mkdir(parents=True)
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(nested / "clean" / "q.png")
    refused = CliRunner().invoke(app, ["degrade", str(nested / "clean"), "-o", str(nested), "--overwrite"])
    assert refused.exit_code == 2 and (nested / "clean" / "q.png").exists()


def test_degrade_overwrite_removes_only_a_set_it_made(tmp_path):
    """--overwrite deleted clean/ and mask/ of any folder, a set or not: a folder of one's own photos and masks that
    merely uses those names is refused now. A set stopped before its manifest (same PNG names in clean/ and
    degraded/) is still replaced."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")
    mine = tmp_path / "mine"
    (mine / "clean").mkdir(parents=True)
    (mine / "mask").mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(mine / "clean" / "grandma.jpg")
    (mine / "mask" / "my_mask.png").write_bytes(b"x")
    refused = CliRunner().invoke(app, ["degrade", str(src), "-o", str(mine), "--overwrite"])
    assert refused.exit_code == 2 and "no set made by oldphoto degrade" in " ".join(refused.output.split())
    assert (mine / "clean" / "grandma.jpg").exists() and (mine / "mask" / "my_mask.png").exists()
    # One's own pairs in the layout evaluate reads (clean/ and degraded/ of the same PNG names) were taken for a set
    # stopped before its manifest, and --overwrite deleted them.
    pairs = tmp_path / "pairs"
    for part in ("clean", "degraded"):
        (pairs / part).mkdir(parents=True)
        Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(pairs / part / "s.png")
    refused = CliRunner().invoke(app, ["degrade", str(src), "-o", str(pairs), "--overwrite"])
    assert refused.exit_code == 2 and "no set made by oldphoto degrade" in " ".join(refused.output.split())
    assert (pairs / "clean" / "s.png").exists() and (pairs / "degraded" / "s.png").exists()
    # A run killed before its manifest (here: writing it fails unexpectedly) is still known as a set, and replaced.
    killed = tmp_path / "killed"
    with mock.patch("oldphoto.cli.degrade.write_manifest", side_effect=RuntimeError("killed")):
        CliRunner().invoke(app, ["degrade", str(src), "-o", str(killed)])
    assert (killed / "clean" / "p.png").exists() and not (killed / "manifest.json").exists()
    assert CliRunner().invoke(app, ["degrade", str(src), "-o", str(killed), "--overwrite"]).exit_code == 0
    assert (killed / "manifest.json").exists() and not (killed / ".oldphoto-degrade-pending.json").exists()


def test_degrade_recursive_leaves_out_an_earlier_set_below_its_folder(tmp_path):
    """A second `degrade photos -r -o photos/set2` took set1's damaged photos and binary masks for clean photos
    ("wrote 12 pairs" from 2 photos). A set's clean/ given itself is still degraded."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray((smooth_image(32, 40, seed=i) * 255).astype(np.uint8)).save(photos / f"p{i}.png")
    assert CliRunner().invoke(app, ["degrade", str(photos), "-r", "-o", str(photos / "set1")]).exit_code == 0
    result = CliRunner().invoke(app, ["degrade", str(photos), "-r", "-o", str(photos / "set2")])
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and "wrote 2 pairs" in shown and "left out" in shown and "sets made by oldphoto degrade" in shown, shown
    sources = {Path(record["source"]).name for record in json.loads((photos / "set2" / "manifest.json").read_text())["images"]}
    assert sources == {"p0.png", "p1.png"}
    result = CliRunner().invoke(app, ["degrade", str(photos / "set1" / "clean"), "-o", str(tmp_path / "again")])
    assert result.exit_code == 0 and "wrote 2 pairs" in " ".join(result.output.split()), result.output
    # Files a glob names are asked for too, wherever they lie.
    result = CliRunner().invoke(app, ["degrade", str(photos / "*" / "clean" / "*.png"), "-o", str(tmp_path / "globbed")])
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and "wrote 4 pairs" in shown and "left out" not in shown, result.output


def test_a_preset_file_without_a_base_starts_from_the_preset_given(tmp_path, caplog):
    """`--preset bopbtl --config tweak.toml` built the set on `default`, dropping --preset without a word."""
    from oldphoto.degrade import get_preset, load_preset_file

    tweak = tmp_path / "tweak.toml"
    tweak.write_text("grayscale_probability = 0.0\n")
    loaded = load_preset_file(tweak, "bopbtl")
    assert loaded.structured == get_preset("bopbtl").structured and loaded.grayscale_probability == 0.0
    assert load_preset_file(tweak).structured == get_preset("default").structured
    named = tmp_path / "named.toml"
    named.write_text('base = "default-v1"\n')
    with caplog.at_level("WARNING", logger="oldphoto.degrade.presets"):
        assert load_preset_file(named, "bopbtl").structured == get_preset("default-v1").structured
    assert "names its own base preset 'default-v1'" in caplog.text
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "set"), "--preset", "bopbtl", "--config", str(tweak)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "set" / "manifest.json").read_text())["preset"]
    assert summary["structured_after_scan"] == get_preset("bopbtl").structured_after_scan


@pytest.mark.parametrize(
    "text, said",
    [
        ("mask_threshold = -1.0\n", "mask_threshold must be between 0 and 1"),  # every pixel masked, exit 0
        ("min_structured = 50\n", "min_structured must be between 0 and its"),
        ('[[scan]]\nname = "jpeg"\nparams = {quality = [200, 300]}\n', "jpeg quality must be within [1, 100]"),  # clamped, manifest said 292
    ],
)
def test_preset_file_values_out_of_range_are_refused(tmp_path, text, said):
    from oldphoto.degrade import load_preset_file

    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(said)):
        load_preset_file(path)


def test_degrade_keeps_every_pair_when_sources_share_a_name(tmp_path):
    """p.jpg and p.png (or a/x.jpg and b/x.jpg given as files) were both written as pair "p": one overwrote the
    other while "wrote 2 pairs" was printed. Such sets number their pairs, as --count does."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    for path, seed in ((src / "p.jpg", 0), (src / "p.png", 1), (src / "a" / "x.png", 2), (src / "b" / "x.png", 3)):
        Image.fromarray((smooth_image(32, 40, seed=seed) * 255).astype(np.uint8)).save(path)
    for sources, count in (([src / "p.jpg", src / "p.png"], 2), ([src / "a" / "x.png", src / "b" / "x.png"], 2)):
        out = tmp_path / f"set-{count}-{sources[0].stem}"
        result = CliRunner().invoke(app, ["degrade", *map(str, sources), "-o", str(out)])
        assert result.exit_code == 0, result.output
        stems = [record["stem"] for record in json.loads((out / "manifest.json").read_text())["images"]]
        assert len(set(stems)) == count and sorted(p.stem for p in (out / "clean").iterdir()) == sorted(stems)


def test_degrade_quiet_hides_notes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")
    (src / "readme.txt").write_text("not a photo")
    loud = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "a")])
    assert loud.exit_code == 0 and "note:" in loud.output
    quiet = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "b"), "--quiet"])
    assert quiet.exit_code == 0 and "note:" not in quiet.output and "wrote 1 pair to" in quiet.output


def test_flaking_is_seeded_mottled_and_can_lie_along_the_border():
    from oldphoto.degrade.structured import flaking

    def drawn(seed: int, **kwargs) -> np.ndarray:
        canvas = Canvas.of(np.full((128, 128, 3), 0.5, np.float32))
        flaking(canvas, np.random.default_rng(seed), None, **kwargs)
        return canvas.image

    assert np.array_equal(drawn(1), drawn(1)) and not np.array_equal(drawn(1), drawn(2))
    for seed in range(6):
        moved = np.abs(drawn(seed, count=(1, 1), edge_probability=1.0) - 0.5).max(axis=2) > 0.2
        assert moved.sum() >= 30
        ys, xs = np.nonzero(moved)
        # Along a border, and flakes with gaps between them rather than one filled blob.
        assert min(ys.min(), xs.min()) == 0 or ys.max() == 127 or xs.max() == 127
        assert moved.sum() < 0.9 * (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
    tones = {flaking(Canvas.of(np.full((64, 64, 3), 0.5, np.float32)), np.random.default_rng(s), None)["tones"][0] for s in range(8)}
    assert tones == {"dark", "light"}


def test_degrade_with_every_op_group_off_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "set"), "--no-structured", "--no-unstructured", "--no-distractors"])
    assert result.exit_code == 2 and "nothing to degrade" in result.output and not (tmp_path / "set").exists()


@pytest.mark.parametrize("failure", ["disk full", "interrupted"])
def test_degrade_stops_cleanly_on_a_full_disk_or_ctrl_c(tmp_path, monkeypatch, failure):
    """A full disk gave one "skipped: cannot write" per pair and a half-written pair; Ctrl-C left pairs without a
    manifest and said nothing. Both stop now, remove the pair cut short and write the manifest of the pairs made."""
    import oldphoto.degrade.sets as sets
    from oldphoto.errors import ImageWriteError

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")
    real_save, calls = sets.save_rgb, []

    def save_rgb(path, pixels):
        calls.append(path)
        if len(calls) == 7:  # the second pair's second file
            if failure == "disk full":
                raise ImageWriteError(f"{path}: cannot write (No space left on device)")
            raise KeyboardInterrupt
        real_save(path, pixels)

    monkeypatch.setattr(sets, "save_rgb", save_rgb)
    out = tmp_path / "set"
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(out), "--count", "4", "--no-distractors"])
    assert result.exit_code == (1 if failure == "disk full" else 130), result.output
    assert ("stopped:" if failure == "disk full" else "interrupted") in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [record["stem"] for record in manifest["images"]] == ["0000_p"]
    assert sorted(p.name for p in out.rglob("*.png")) == ["0000_p.png"] * 4  # clean, degraded, mask, ignore of the one pair


def test_degrade_refuses_a_bad_damage_stamp_before_making_any_pair(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")
    stamps = tmp_path / "stamps" / "dirt"
    stamps.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(stamps / "good.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(stamps / "flat.png")
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "set"), "--damage-dir", str(tmp_path / "stamps")])
    assert result.exit_code == 2 and "flat.png: a damage stamp must be an RGBA PNG" in " ".join(result.output.split())
    assert not (tmp_path / "set").exists()
    # A folder that is not there was "no RGBA damage stamps (*.png) under it".
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "set"), "--damage-dir", str(tmp_path / "typo")])
    assert result.exit_code == 2 and "typo: no such folder" in " ".join(result.output.split()), result.output
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "set"), "--damage-dir", str(src / "p.png")])
    assert result.exit_code == 2 and "p.png: not a folder" in " ".join(result.output.split()), result.output


def test_degrade_of_only_unreadable_photos_writes_no_manifest(tmp_path):
    """It wrote "0 pairs" and a manifest.json of none, which evaluate then refused as a set."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"not a jpeg")
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "set")])
    assert result.exit_code == 1 and "no pair was made" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "set").exists()  # nor the empty folders it made (they were left behind)
    # A folder that was there before (empty) stays.
    (tmp_path / "mine").mkdir()
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "mine")])
    assert result.exit_code == 1 and (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


@pytest.mark.parametrize(
    ("preset_text", "named"),
    [
        ('base = "bopbtl"\n[[scan]]\nname = "jpeg"\nprobability = 1.0\nparams = { quality = 3 }\n', "scan op 'jpeg'"),  # not a range
        ('min_structured = 1\n[[structured]]\nname = "scratches"\nparams = { count = [3] }\n', "structured op 'scratches'"),  # IndexError
        ('[[scan]]\nname = "halftone"\nparams = { cell = [0, 0] }\n', "scan op 'halftone'"),  # ZeroDivisionError: was a traceback
        ('[[aging]]\nname = "uneven_exposure"\nprobability = 0.3\nparams = { amplitude = [nan, nan] }\n', "aging op 'uneven_exposure'"),  # OverflowError
        ('[[structured]]\nname = "flaking"\nparams = { flake = [0.0, 0.0] }\n', "structured op 'flaking'"),
        ('[[scan]]\nname = "gaussian_blur"\nparams = { kernel_sizes = [] }\n', "scan op 'gaussian_blur'"),
        # Misspelt values fell back to others, and the manifest recorded the misspelling.
        ('[[structured]]\nname = "stamps"\nparams = { categories = ["scratch"] }\n', "the stamps have: "),
        ('[[scan]]\nname = "downscale"\nparams = { up = ["bicubic"] }\n', "downscale's up must be some of nearest, bilinear"),
        ('[[scan]]\nname = "noise"\nparams = { kinds = ["bogus"] }\n', "noise kinds must be some of"),
        # One bad choice of two fails on half the draws only: three tries let it through, and --overwrite then removed
        # the earlier set before the run stopped.
        ('[[scan]]\nname = "gaussian_blur"\nparams = { kernel_sizes = [3, 4] }\n', "scan op 'gaussian_blur'"),
    ],
)
def test_a_preset_file_with_parameters_that_do_not_work_is_refused_before_anything_is_written(tmp_path, preset_text, named):
    """A preset file whose op parameters do not work crashed at its first pair with a traceback (a division by zero,
    an overflow), or stopped after --overwrite had removed the earlier set, leaving a manifest of no pairs. Each op is
    now tried on a test image first: the op is named and the earlier set stays as it was."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")
    out = tmp_path / "set"
    assert CliRunner().invoke(app, ["degrade", str(src), "-o", str(out), "--preset", "bopbtl-v1"]).exit_code == 0
    before = sorted(path.relative_to(out) for path in out.rglob("*"))
    preset = tmp_path / "mine.toml"
    preset.write_text(preset_text)
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(out), "--config", str(preset), "--overwrite"], catch_exceptions=False)
    words = " ".join(result.output.split())
    assert result.exit_code == 2 and named in words and "check them" in words, result.output
    assert sorted(path.relative_to(out) for path in out.rglob("*")) == before


def test_a_run_stopped_at_its_first_pair_writes_no_empty_set(tmp_path, monkeypatch):
    """A preset that failed only at run time (on the first pair) wrote a manifest of no pairs: a "set" evaluate refused."""
    import oldphoto.cli.degrade as cli_degrade

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")

    def make_pair(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(cli_degrade, "make_pair", make_pair)
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "set")], catch_exceptions=False)
    words = " ".join(result.output.split())
    assert result.exit_code == 1 and "no pair was made: stopped:" in words and "ZeroDivisionError" in words, result.output
    assert not (tmp_path / "set").exists()


def test_degrade_refuses_flags_that_leave_a_v1_preset_no_ops(tmp_path):
    """The -v1 presets have no distractors: --no-structured --no-unstructured made "3 pairs" whose degraded photo was
    the clean one."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "set"), "--preset", "default-v1", "--no-structured", "--no-unstructured"])
    assert result.exit_code == 2 and "nothing to degrade" in result.output and not (tmp_path / "set").exists()


def test_degrade_of_unreadable_photos_over_an_earlier_set_keeps_it(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / "p.png")
    out = tmp_path / "set"
    assert CliRunner().invoke(app, ["degrade", str(src), "-o", str(out)]).exit_code == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    # A header that reads but data cut short: the header alone let it through, and the set was removed.
    whole = (src / "p.png").read_bytes()
    (bad / "cut.png").write_bytes(whole[: len(whole) // 2])
    result = CliRunner().invoke(app, ["degrade", str(bad), "-o", str(out), "--overwrite"])
    assert result.exit_code == 2 and "none of the photos to degrade can be read" in " ".join(result.output.split()), result.output
    assert (out / "manifest.json").is_file() and (out / "degraded" / "p.png").is_file()
    # And a set given as a source says to give one of its folders (--recursive then only led to a second refusal).
    result = CliRunner().invoke(app, ["degrade", str(out), "-o", str(tmp_path / "other")])
    assert "give one of its folders, such as its clean/" in " ".join(result.output.split()), result.output


def test_overwrite_keeps_the_earlier_set_when_the_options_are_refused_and_no_pair_is_hidden(tmp_path):
    """`degrade --overwrite --size-range 16 15` deleted the earlier set, then refused the option; a source named
    ``.hid.png`` made pairs named ``.hid.png``, hidden files that evaluate then left out without a word; a
    --size-range of 60,000 px asked for 58 GB and blamed "the preset None"."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", ".hid.png"):
        Image.fromarray((smooth_image(32, 40) * 255).astype(np.uint8)).save(src / name)
    out = tmp_path / "set"
    assert CliRunner().invoke(app, ["degrade", str(src / "a.png"), str(src / ".hid.png"), "-o", str(out)]).exit_code == 0
    assert sorted(path.name for path in (out / "degraded").iterdir()) == ["a.png", "hid.png"]
    for bad in (["16", "15"], ["8193", "8193"]):
        result = CliRunner().invoke(app, ["degrade", str(src / "a.png"), "-o", str(out), "--overwrite", "--size-range", *bad])
        assert result.exit_code == 2 and "--size-range MIN MAX needs 16 <= MIN <= MAX <= 8192" in " ".join(result.output.split()), result.output
        assert sorted(path.name for path in (out / "degraded").iterdir()) == ["a.png", "hid.png"]


def test_min_structured_is_met_when_some_ops_were_drawn_already():
    """Extra ops were drawn among all, the ones already chosen included, and a repeat dropped: with one op always on
    and min_structured = 2, a third of the pairs had one structured op."""
    preset = dataclasses.replace(
        get_preset("bopbtl-v1"),
        aging=(),
        scan=(),
        structured=(op("scratches", 1.0), op("dust", 0.0), op("hairs", 0.0)),
        min_structured=2,
        grayscale_probability=0.0,
    )
    image = smooth_image(48, 64)
    counts = {
        len([o for o in degrade_image(image, preset, np.random.default_rng(seed)).ops if o["group"] == "structured"])
        for seed in range(40)
    }
    assert counts == {2}


def test_degrade_help_shows_the_preset_default():
    """Rich read "[default: default]" in --preset's help as a markup tag and dropped it."""
    result = CliRunner().invoke(app, ["degrade", "--help"], terminal_width=250)
    assert "(as before distractors). [default: default]" in result.output, result.output
