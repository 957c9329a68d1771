"""The damage stamps bundled with the package (issue 19): used when no --damage-dir is given, replaced by one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli.app import app
from oldphoto.degrade import bundled_stamps_dir, degrade_image, get_preset, load_stamps
from oldphoto.degrade.presets import op
from oldphoto.errors import ConfigError

from .conftest import smooth_image

CATEGORIES = {"dirt", "dots", "hair", "hair-short", "lint", "scratches", "smut", "spots"}
"""At least these categories of the source set must be in the bundled subset."""

STAMPS_ONLY = '[[structured]]\nname = "stamps"\nprobability = 1.0\n'
"""A preset file whose only damage is the stamps op, so that any masked pixel is a stamp."""


def _photos(folder: Path, count: int = 2, height: int = 96, width: int = 128) -> Path:
    folder.mkdir()
    for i in range(count):
        Image.fromarray((smooth_image(height, width, seed=i) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def _stamp_ops(manifest: dict) -> list[tuple[str, dict]]:
    return [(record["stem"], o) for record in manifest["images"] for o in record["ops"] if o["op"] == "stamps"]


def test_bundled_stamps_and_their_licence_are_package_data():
    folder = resources.files("oldphoto.degrade").joinpath("stamps")
    licence = folder.joinpath("LICENSE").read_text()
    assert "MIT License" in licence and "Copyright (c) 2022 Daniela Ivanova" in licence
    notice = folder.joinpath("NOTICE").read_text()
    assert "FilmDamageSimulator" in notice and "LICENSE" in notice
    assert bundled_stamps_dir() == Path(str(folder))
    stamps = load_stamps()
    assert stamps.bundled and CATEGORIES <= set(stamps.categories)
    files = [path for paths in stamps.files.values() for path in paths]
    assert all(len(paths) >= 5 for paths in stamps.files.values())
    assert sum(path.stat().st_size for path in files) <= 3_200_000  # a few MB at most
    for path in files:
        # Listed with its hash in the NOTICE (a byte copy of the source), and a real RGBA stamp.
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"{digest}  {path.parent.name}/{path.name}" in notice
        with Image.open(path) as image:
            assert image.mode == "RGBA" and image.getchannel("A").getextrema()[1] > 0


def test_load_stamps_uses_only_the_given_folders(tmp_path):
    (tmp_path / "mine").mkdir()
    Image.fromarray(np.full((20, 20, 4), 255, np.uint8)).save(tmp_path / "mine" / "only.png")
    stamps = load_stamps([tmp_path])
    assert not stamps.bundled and stamps.categories == ["mine"] and len(stamps) == 1
    assert stamps.describe() == {"set": "folders", "folders": [str(tmp_path)], "count": 1}
    assert load_stamps().describe() == {"set": "bundled", "count": len(load_stamps())}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no RGBA damage stamps"):
        load_stamps([tmp_path / "empty"])


def test_a_16_bit_stamp_draws_as_its_8_bit_twin(tmp_path):
    """Pillow opens a 16-bit RGBA PNG as RGBA, so it passes the check; its alpha must still read in 0..1."""
    import cv2

    from oldphoto.degrade.structured import _load_alpha

    alpha = np.zeros((24, 24), np.float64)
    alpha[8:16, 4:20] = 1.0
    alpha[6:8, 4:20] = 0.5
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        top = 2**bits - 1
        (tmp_path / f"s{bits}").mkdir()
        bgra = np.zeros((24, 24, 4), dtype)
        bgra[..., :3] = top
        bgra[..., 3] = np.round(alpha * top).astype(dtype)
        cv2.imwrite(str(tmp_path / f"s{bits}" / "stamp.png"), bgra)
    load_stamps([tmp_path / "s16"])  # accepted, as before
    eight, sixteen = (_load_alpha(tmp_path / f"s{bits}" / "stamp.png") for bits in (8, 16))
    assert sixteen.max() == pytest.approx(1.0) and np.abs(sixteen - eight).max() < 1 / 255


def test_bundled_stamps_draw_real_damage():
    preset = dataclasses.replace(get_preset("default"), aging=(), scan=(), distractors=(), structured=(op("stamps", 1.0),))
    sample = degrade_image(smooth_image(96, 128), preset, np.random.default_rng(0), load_stamps())
    (record,) = [o for o in sample.ops if o["op"] == "stamps"]
    assert "skipped" not in record and len(record["stamps"]) == record["count"] >= 1
    assert sample.mask.any()


def test_degrade_default_preset_without_damage_dir_uses_the_bundled_stamps(tmp_path):
    src = _photos(tmp_path / "src")
    out = tmp_path / "set"
    result = CliRunner().invoke(app, ["degrade", str(src), "-o", str(out), "--count", "6", "--seed", "0"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preset"]["name"] == "default"
    assert manifest["damage_stamps"] == {"set": "bundled", "count": len(load_stamps())}
    drawn = _stamp_ops(manifest)
    assert drawn, "the default preset drew no stamps op for this seed"
    for stem, record in drawn:
        assert "skipped" not in record and len(record["stamps"]) == record["count"] >= 1
        assert {name.split("/")[0] for name in record["stamps"]} <= set(load_stamps().categories)
        assert (np.asarray(Image.open(out / "mask" / f"{stem}.png")) > 127).any()
    # With the stamps as the only damage, every masked pixel is a stamp's.
    config = tmp_path / "stamps.toml"
    config.write_text(STAMPS_ONLY)
    only = tmp_path / "only"
    args = ["degrade", str(src), "-o", str(only), "--seed", "0", "--config", str(config), "--no-unstructured", "--no-distractors"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((only / "manifest.json").read_text())
    assert len(_stamp_ops(manifest)) == len(manifest["images"]) == 2
    for record in manifest["images"]:
        stem = record["stem"]
        mask = np.asarray(Image.open(only / "mask" / f"{stem}.png")) > 127
        clean, degraded = (np.asarray(Image.open(only / part / f"{stem}.png"), np.int16) for part in ("clean", "degraded"))
        change = np.abs(degraded - clean).max(axis=2)  # levels of 255; nothing but the stamps changed the photo
        assert mask.any() and mask.mean() < 0.5
        assert change[mask].min() >= 18  # masked: moved by the preset's 0.08 (20 levels, less a little for rounding)
        assert mask[change > 45].all()  # and every pixel a stamp moved that far is masked


def test_degrade_damage_dir_replaces_the_bundled_stamps(tmp_path):
    src = _photos(tmp_path / "src")
    damage = tmp_path / "damage"
    (damage / "mine").mkdir(parents=True)
    ring = np.zeros((64, 64, 4), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    ring[(np.hypot(yy - 32, xx - 32) > 20) & (np.hypot(yy - 32, xx - 32) < 28), 3] = 255
    Image.fromarray(ring).save(damage / "mine" / "ring.png")
    config = tmp_path / "stamps.toml"
    config.write_text(STAMPS_ONLY)
    out = tmp_path / "set"
    args = ["degrade", str(src), "-o", str(out), "--count", "4", "--seed", "2", "--config", str(config), "--damage-dir", str(damage)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["damage_stamps"] == {"set": "folders", "folders": [str(damage)], "count": 1}
    names = {name for _, record in _stamp_ops(manifest) for name in record["stamps"]}
    assert names == {"mine/ring.png"}
    (tmp_path / "empty").mkdir()
    refused = CliRunner().invoke(app, ["degrade", str(src), "-o", str(tmp_path / "x"), "--damage-dir", str(tmp_path / "empty")])
    assert refused.exit_code == 2 and "no RGBA damage stamps" in refused.output
