"""The set-making library behind `oldphoto degrade` (issue 20): plan, make each pair, write the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto.degrade import MASK_DEFINITION, get_preset, load_stamps
from oldphoto.degrade.sets import PairRecord, PlannedPair, make_pair, plan_pairs, random_crop, write_manifest
from oldphoto.errors import ImageReadError
from oldphoto.inputs import InputFile

from .conftest import smooth_image


def _inputs(tmp_path: Path, names: list[str]) -> list[InputFile]:
    files = []
    for name in names:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((smooth_image(48, 64) * 255).astype(np.uint8)).save(path)
        files.append(InputFile(path, Path(name)))
    return files


def test_plan_pairs_names_one_each_by_path_and_cycles_with_an_index(tmp_path):
    sources = _inputs(tmp_path, ["a.png", "sub/b.png"])
    assert plan_pairs(sources) == (PlannedPair("a", sources[0].path), PlannedPair("sub_b", sources[1].path))
    assert [pair.stem for pair in plan_pairs(sources, 3)] == ["0000_a", "0001_b", "0002_a"]
    assert [pair.stem for pair in plan_pairs(sources, 10_001)][-1] == "10000_a"


def test_random_crop_is_square_in_range_and_upscales_small_photos():
    rng = np.random.default_rng(0)
    for _ in range(5):
        crop = random_crop(smooth_image(48, 64), rng, (16, 40))
        assert crop.shape[0] == crop.shape[1] and 16 <= crop.shape[0] <= 40 and crop.flags.c_contiguous
    assert random_crop(smooth_image(20, 30), rng, (50, 50)).shape == (50, 50, 3)


def test_make_pair_writes_every_part_and_write_manifest_records_them(tmp_path):
    (source,) = _inputs(tmp_path, ["a.png"])
    out = tmp_path / "set"
    preset, stamps = get_preset("default"), load_stamps()
    record = make_pair(PlannedPair("x", source.path), out, preset, np.random.default_rng(1), stamps, (32, 32))
    assert isinstance(record, PairRecord) and record.size == (32, 32) and record.source == str(source.path)
    for part in ("clean", "degraded", "mask", "ignore", "distractor"):
        with Image.open(out / part / "x.png") as image:
            assert image.size == (32, 32)
    # The crop range and the pairs asked for are recorded: without them the set could not be made again from it.
    path = write_manifest(out, 1, preset, [record], stamps, (32, 32), 3)
    manifest = json.loads(path.read_text())
    assert list(manifest) == ["seed", "preset", "mask_definition", "damage_stamps", "size_range", "planned", "count", "images"]
    assert manifest["size_range"] == [32, 32] and manifest["planned"] == 3 and manifest["count"] == 1
    assert manifest["mask_definition"] == MASK_DEFINITION and manifest["damage_stamps"]["set"] == "bundled"
    assert manifest["images"] == [json.loads(json.dumps(record.to_json(), default=lambda v: v.tolist()))]


def test_make_pair_raises_on_an_unreadable_photo_and_draws_nothing(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    rng, untouched = np.random.default_rng(5), np.random.default_rng(5)
    with pytest.raises(ImageReadError):
        make_pair(PlannedPair("bad", bad), tmp_path / "set", get_preset("default"), rng, None, (32, 64))
    assert rng.random() == untouched.random()
    assert not (tmp_path / "set").exists()
