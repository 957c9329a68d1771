"""Tier 3: the `oldphoto restore` and `models` commands through typer's CliRunner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli.app import app
from oldphoto.registry import get_spec
from oldphoto.restore.pipeline import Restorer

from .conftest import smooth_image

runner = CliRunner()
STAGES = ["--no-global", "--no-faces"]  # the only stages with (random) weights in these tests


def make_photo(path: Path, size=(48, 64), gray=False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = smooth_image(*size, channels=1 if gray else 3, seed=len(str(path)))
    array = (pixels[:, :, 0] if gray else pixels) * 255
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def album(tmp_path: Path) -> Path:
    folder = tmp_path / "album"
    make_photo(folder / "a.jpg")
    make_photo(folder / "b.png", gray=True)
    make_photo(folder / "sub" / "c.png")
    return folder


def test_folder_and_recursive_keep_relative_paths(album, tmp_path, random_scratch_model):
    out = tmp_path / "out"
    result = invoke("restore", str(album), "-o", str(out), "--recursive", *STAGES)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["a.jpg", "b.png", "sub/c.png"]
    with Image.open(out / "b.png") as image:
        assert image.mode == "L" and image.size == (64, 48)


def test_files_in_a_folder_that_are_not_photos_are_named_not_skipped_unseen(album, tmp_path, random_scratch_model):
    (album / "notes.txt").write_text("taken 1931")
    (album / "scan.heic").write_bytes(b"not readable here")
    (album / ".DS_Store").write_bytes(b"")
    out = tmp_path / "out"
    result = invoke("restore", str(album), "-o", str(out), *STAGES)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.png"]
    note = " ".join(result.output.split())
    assert "left out 2 file(s)" in note and "notes.txt" in note and "scan.heic" in note and ".DS_Store" not in note
    # Photos in hidden folders (a viewer's .thumbnails) are skipped like hidden files, with -r too.
    make_photo(album / ".thumbnails" / "a.jpg")
    result = invoke("restore", str(album), "-r", "-o", str(tmp_path / "out2"), *STAGES)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "out2").as_posix() for p in (tmp_path / "out2").rglob("*.*")) == ["a.jpg", "b.png", "sub/c.png"]
    # A glob matching them ("*", as batch jobs write it) leaves them out alike: they failed the run (exit 1) there.
    result = invoke("restore", str(album / "*"), "-o", str(tmp_path / "out3"), *STAGES)
    assert result.exit_code == 0 and sorted(p.name for p in (tmp_path / "out3").iterdir()) == ["a.jpg", "b.png"], result.output
    assert "left out 2 file(s)" in " ".join(result.output.split())
    result = invoke("restore", str(album / "*.txt"), "-o", str(tmp_path / "out4"), *STAGES)
    assert result.exit_code == 2 and "pattern matches no photos oldphoto reads" in " ".join(result.output.split())
    # Said once: the pattern's own error (and the note naming notes.txt), not again as "no input images found".
    assert result.output.count("error:") == 1 and "no input images found" not in result.output, result.output
    # A GIF given by name is read but cannot be written back as GIF: the PNG it becomes is said.
    with Image.open(album / "b.png") as image:
        image.save(tmp_path / "anim.gif")
    result = invoke("restore", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "out5"), *STAGES)
    assert result.exit_code == 0 and (tmp_path / "out5" / "anim.png").exists(), result.output
    assert ".gif is not an output format; the restored photo is written as PNG" in " ".join(result.output.split())
    result = invoke("restore", str(tmp_path / "*.gif"), "-o", str(tmp_path / "out5b"), *STAGES)  # a pattern naming GIFs takes them
    assert result.exit_code == 0 and (tmp_path / "out5b" / "anim.png").exists(), result.output
    (tmp_path / "notes.txt").write_text("taken 1931")  # not an image at all: its header fails, no word on its output
    result = invoke("restore", str(tmp_path / "notes.txt"), "-o", str(tmp_path / "out6"), "--dry-run", *STAGES)
    assert "not an output format" not in " ".join(result.output.split()), result.output


def test_glob_and_ext_and_suffix(album, tmp_path, random_scratch_model):
    out = tmp_path / "out"
    result = invoke("restore", str(album / "*.png"), "-o", str(out), "--ext", "jpg", "--suffix", "_fixed", *STAGES)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["b_fixed.jpg"]
    # A recursive glob keeps each match's sub-folder below the pattern's fixed prefix, as a folder does (two
    # sub-folders' x.jpg were flattened into one output name, the second refused).
    for sub in ("1910", "1920"):
        make_photo(album / sub / "x.jpg")
    result = invoke("restore", str(album / "**" / "x.jpg"), "-o", str(tmp_path / "out-glob"), *STAGES)
    assert result.exit_code == 0, result.output
    assert files_under(tmp_path / "out-glob") == ["1910/x.jpg", "1920/x.jpg"]
    # A ".." after a wildcard must not lead the output out of -o: such a match keeps only its name.
    make_photo(tmp_path / "top.jpg")
    result = invoke("restore", str(album / "*" / ".." / ".." / "top.jpg"), "-o", str(tmp_path / "out-up"), "--suffix", "_r", *STAGES)
    assert result.exit_code == 0 and files_under(tmp_path / "out-up") == ["top_r.jpg"], result.output
    assert not (tmp_path / "top_r.jpg").exists()


def test_existing_outputs_are_skipped_unless_overwrite(album, tmp_path, random_scratch_model):
    out = tmp_path / "out"
    with Image.open(album / "a.jpg") as photo:
        make_photo(out / "a.jpg", size=(photo.height, photo.width))  # an earlier result: the photo's own size
    before = (out / "a.jpg").read_bytes()
    assert invoke("restore", str(album / "a.jpg"), "-o", str(out), *STAGES).exit_code == 0
    assert (out / "a.jpg").read_bytes() == before
    assert invoke("restore", str(album / "a.jpg"), "-o", str(out), "--overwrite", *STAGES).exit_code == 0
    assert (out / "a.jpg").read_bytes() != before


def test_inputs_are_never_overwritten(album, random_scratch_model):
    before = {p: p.read_bytes() for p in album.iterdir() if p.is_file()}
    result = invoke("restore", str(album), "-o", str(album), "--overwrite", *STAGES)
    assert all(p.read_bytes() == data for p, data in before.items())
    assert "overwrite an input" in " ".join(result.output.split())


def test_bad_file_is_reported_and_batch_goes_on(album, tmp_path, random_scratch_model):
    (album / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    result = invoke("restore", str(album), "-o", str(out), "--report", str(report), *STAGES)
    assert result.exit_code == 1
    assert "broken.jpg" in result.output
    assert not (out / "broken.jpg").exists()
    assert (out / "a.jpg").exists() and (out / "b.png").exists()
    images = {Path(r["input"]).name: r for r in json.loads(report.read_text())["images"]}
    assert images["broken.jpg"]["status"] == "failed"
    good = images["a.jpg"]
    assert good["status"] == "restored" and (good["width"], good["height"]) == (64, 48)
    assert good["tiles"] >= 1 and 0 <= good["scratch_coverage"] <= 1 and good["device"] == "cpu"
    assert good["models"][0]["sha256"] == random_scratch_model.sha256


def test_missing_input_gives_non_zero_exit(tmp_path, random_scratch_model):
    result = invoke("restore", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "out"), *STAGES)
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_save_mask_and_compare(album, tmp_path, random_scratch_model):
    out = tmp_path / "out"
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--save-mask", "--compare", *STAGES)
    assert result.exit_code == 0, result.output
    with Image.open(out / "a_mask.png") as mask:
        assert mask.size == (64, 48) and set(np.unique(np.asarray(mask))) <= {0, 255}
    assert (out / "a_compare.jpg").exists()


def test_compare_sheet_is_the_input_beside_the_output(tmp_path, random_scratch_model):
    """The sheet's left half is the photo as given, the right half the restored photo (within the sheet's own JPEG
    error), with a white gap between them: a white band drawn across the photo and repaired through --masks is
    on the left and gone on the right."""
    from oldphoto.imageio import load_rgb, save_rgb

    pixels = smooth_image(48, 64)
    pixels[20:24] = 1.0  # a white scratch across the photo
    save_rgb(tmp_path / "in" / "p.png", pixels)
    band = np.zeros((48, 64), np.uint8)
    band[19:25] = 255
    (tmp_path / "masks").mkdir()
    Image.fromarray(band).save(tmp_path / "masks" / "p_mask.png")
    out = tmp_path / "out"
    result = invoke("restore", str(tmp_path / "in" / "p.png"), "-o", str(out), "--masks", str(tmp_path / "masks"), "--compare", *STAGES)
    assert result.exit_code == 0, result.output
    before, after, sheet = load_rgb(tmp_path / "in" / "p.png"), load_rgb(out / "p.png"), load_rgb(out / "p_compare.jpg")
    assert sheet.shape == (48, 64 + 4 + 64, 3)
    left, gap, right = sheet[:, :64], sheet[:, 64:68], sheet[:, 68:]
    assert np.abs(after - before)[19:25].mean() > 0.2  # the band was repaired: the two halves must differ there
    # Measured: the sheet's JPEG (quality 95) is 3.1-3.2 levels off on average, 22 at most, on this grainy photo; with
    # the halves swapped, 14 on average and 88 along the band.
    for half, expected in ((left, before), (right, after)):
        error = np.abs(half - expected)
        assert error.mean() < 5 / 255 and error.max() < 40 / 255, (error.mean() * 255, error.max() * 255)
    assert gap.min() > 0.9


def test_detection_settings_reach_the_report(album, tmp_path, random_scratch_model):
    report = tmp_path / "report.json"
    result = invoke(
        "restore", str(album / "a.jpg"), "-o", str(tmp_path / "out"), "--scratch-threshold", "0.9", "--mask-dilation", "1",
        "--report", str(report), *STAGES,
    )
    assert result.exit_code == 0, result.output
    assert any("threshold 0.9, dilation 1 px" in step for step in json.loads(report.read_text())["stages"])
    refused = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out2"), "--scratch-threshold", "1", *STAGES)
    assert refused.exit_code == 2 and "between 0 and 1" in refused.output


def test_given_masks_replace_detection_and_are_reported(album, tmp_path, random_scratch_model):
    masks, out = tmp_path / "masks", tmp_path / "out"
    drawn = np.zeros((48, 64), np.uint8)
    drawn[20:24, 5:60] = 255  # a band to repair
    (masks / "sub").mkdir(parents=True)
    Image.fromarray(drawn).save(masks / "a_mask.png")
    Image.fromarray(255 - drawn).save(masks / "sub" / "c_mask.png")
    report = tmp_path / "report.json"
    result = invoke(
        "restore", str(album), "-o", str(out), "--recursive", "--masks", str(masks), "--save-mask", "--report", str(report), *STAGES
    )
    assert result.exit_code == 0, result.output
    for name, expected in (("a", drawn), ("sub/c", 255 - drawn)):
        with Image.open(out / f"{name}_mask.png") as saved:
            np.testing.assert_array_equal(np.asarray(saved), expected)
    with Image.open(album / "a.jpg") as before, Image.open(out / "a.jpg") as after:
        change = np.abs(np.asarray(after, np.int16) - np.asarray(before, np.int16)).max(axis=2)
    # Telea repaints the band; outside it only JPEG re-encoding differs.
    assert change[20:24, 5:60].mean() > 3 * change[:15].mean()
    sources = {Path(r["input"]).name: r["mask_source"] for r in json.loads(report.read_text())["images"]}
    assert sources == {"a.jpg": str(masks / "a_mask.png"), "b.png": "detected", "c.png": str(masks / "sub" / "c_mask.png")}
    plan = invoke("restore", str(album), "-o", str(tmp_path / "plan"), "--masks", str(masks), "--dry-run", *STAGES)
    assert plan.exit_code == 0 and "restore with mask" in " ".join(plan.output.split())
    # The report names the masks among the stages, and a photo with its own mask ran no scratch model (it listed the
    # detector's and verifier's weights as used).
    payload = json.loads(report.read_text())
    assert any(f"damage masks from {masks}" in step for step in payload["stages"]), payload["stages"]
    models = {Path(r["input"]).name: {m["name"] for m in r["models"]} for r in payload["images"]}
    assert "scratch-unet" in models["b.png"] and "scratch-unet" not in models["a.jpg"] and "scratch-unet" not in models["c.png"]


def test_given_masks_are_filled_with_every_stage_off(album, tmp_path, random_scratch_model):
    """`--no-scratch --no-global --no-faces --masks DIR` was refused as "every stage is off", though the masks given
    are filled (classical inpainting) as with --no-global alone."""
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    drawn = np.zeros((48, 64), np.uint8)
    drawn[20:24, 5:60] = 255
    Image.fromarray(drawn).save(masks / "b_mask.png")
    result = invoke("restore", str(album / "b.png"), "-o", str(out), "--masks", str(masks), "--no-scratch", "--no-global", "--no-faces")
    assert result.exit_code == 0, result.output
    with Image.open(album / "b.png") as before, Image.open(out / "b.png") as after:
        change = np.abs(np.asarray(after, np.int16) - np.asarray(before, np.int16))
    assert change[20:24, 5:60].mean() > 0 and change[:15].max() == 0
    refused = invoke("restore", str(album / "b.png"), "-o", str(tmp_path / "none"), "--no-scratch", "--no-global", "--no-faces")
    assert refused.exit_code == 2 and "every stage is off" in refused.output


def test_options_of_a_stage_that_is_off_are_named(album, tmp_path, random_scratch_model):
    result = invoke(
        "restore", str(album / "a.jpg"), "-o", str(tmp_path / "out"), "--global-model", "restore-unet", "--min-face-size", "40", "--dry-run", *STAGES
    )
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and "--global-model does nothing with --no-global" in shown, result.output
    assert "--min-face-size and --only-center-face do nothing with --no-faces" in shown
    folder = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out"), "--weights", f"scratch-unet={tmp_path}", *STAGES)
    assert folder.exit_code == 2 and "a folder: give the .safetensors file in it" in " ".join(folder.output.split()), folder.output


def test_a_mask_painted_on_a_transparent_layer_marks_only_its_strokes(album, tmp_path, random_scratch_model):
    """An editor's transparent layer is often white (or any colour) under its alpha: only the opaque strokes mark
    damage. Grey strokes below half brightness do not count, and the run says so."""
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    layer = np.full((48, 64, 4), 255, np.uint8)
    layer[..., 3] = 0
    layer[20:23, 5:60, 3] = 255  # one opaque white stroke
    Image.fromarray(layer, "RGBA").save(masks / "a_mask.png")
    grey = np.zeros((48, 64), np.uint8)
    grey[10:14, 5:60] = 100
    Image.fromarray(grey).save(masks / "b_mask.png")
    report = tmp_path / "r.json"
    result = invoke("restore", str(album), "-o", str(out), "--masks", str(masks), "--save-mask", "--report", str(report), *STAGES)
    assert result.exit_code == 0, result.output
    coverage = {Path(r["input"]).name: r["scratch_coverage"] for r in json.loads(report.read_text())["images"]}
    assert coverage["a.jpg"] == pytest.approx(3 * 55 / (48 * 64), abs=1e-5)  # the report rounds
    assert coverage["b.png"] == 0.0
    shown = " ".join(result.output.split())
    assert "grey pixels below half brightness" in shown and "b_mask.png" in shown


def test_a_given_mask_of_the_wrong_size_fails_that_photo_only(album, tmp_path, random_scratch_model):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "a_mask.png")
    result = invoke("restore", str(album), "-o", str(tmp_path / "out"), "--masks", str(masks), *STAGES)
    assert result.exit_code == 1
    assert "10x10 but the photo is 64x48" in " ".join(result.output.split())
    assert (tmp_path / "out" / "b.png").exists() and not (tmp_path / "out" / "a.jpg").exists()


def test_dry_run_writes_nothing(album, tmp_path, random_scratch_model, monkeypatch):
    out = tmp_path / "out"
    result = invoke("restore", str(album), "-o", str(out), "--dry-run", *STAGES)
    assert result.exit_code == 0, result.output
    assert not out.exists()
    assert "a.jpg" in result.output
    # A file the run would fail on, as its header tells, is said so and the plan exits 1, as the run would.
    (album / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    for extra in ([], ["--max-pixels", "1000"]):
        result = invoke("restore", str(album), "-o", str(out), "--dry-run", *extra, *STAGES)
        shown = " ".join(result.output.split())
        assert result.exit_code == 1 and "would fail: its header cannot be read" in shown, result.output
    assert "is over --max-pixels 1000" in shown and not out.exists()
    (album / "broken.jpg").unlink()
    # A size the output format cannot hold is found from the header, and by the run before it restores anything.
    wide = make_photo(tmp_path / "pano" / "wide.png", size=(2, 16_400))
    result = invoke("restore", str(wide), "-o", str(tmp_path / "pano-out"), "--ext", "webp", "--dry-run", *STAGES)
    assert result.exit_code == 1 and "too large for WEBP" in " ".join(result.output.split()), result.output
    with monkeypatch.context() as patch:
        patch.setattr(Restorer, "restore", lambda *args, **kwargs: pytest.fail("restored a photo it cannot write"))
        result = invoke("restore", str(wide), "-o", str(tmp_path / "pano-out"), "--ext", "webp", *STAGES)
    assert result.exit_code == 1 and "too large for WEBP" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "pano-out" / "wide.webp").exists()
    # The run itself names the option that lifts the limit (other commands, which have none, advise downscaling).
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "run"), "--max-pixels", "1000", *STAGES)
    assert result.exit_code == 1 and "raise it with --max-pixels" in " ".join(result.output.split()), result.output
    # An -o below a file, --weights naming no file, a mask of another size: the plan said "restore" and exited 0.
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = invoke("restore", str(album / "a.jpg"), "-o", str(blocker / "out"), "--dry-run", *STAGES)
    assert result.exit_code == 2 and "cannot be made" in " ".join(result.output.split()), result.output
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--weights", f"scratch-unet={tmp_path / 'missing.safetensors'}", "--dry-run", *STAGES)
    assert result.exit_code == 2 and "missing.safetensors: no such file" in " ".join(result.output.split()), result.output
    import torch
    from safetensors.torch import save_file

    save_file({"stray.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))  # weights of another network
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--weights", f"scratch-unet={tmp_path / 'other.safetensors'}", "--dry-run", *STAGES)
    assert result.exit_code == 2 and "have no place in model 'scratch-unet'" in " ".join(result.output.split()), result.output
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.new("L", (50, 50)).save(masks / "a_mask.png")
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--masks", str(masks), "--dry-run", *STAGES)
    assert result.exit_code == 1 and "is 50x50, the photo 64x48" in " ".join(result.output.split()), result.output
    assert not out.exists()
    # A photo whose size reads but whose EXIF orientation does not: said, not a TypeError traceback.
    odd = album.parent / "odd-exif"
    odd.mkdir()
    import struct

    orientation_as_text = struct.pack("<HHI4s", 0x0112, 2, 4, b"abc\x00")  # tag, ASCII, count, value
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + orientation_as_text + struct.pack("<I", 0)
    Image.open(album / "a.jpg").save(odd / "a.jpg", exif=b"Exif\x00\x00" + tiff)
    result = invoke("restore", str(odd / "a.jpg"), "-o", str(tmp_path / "odd-out"), "--masks", str(masks), "--dry-run", *STAGES)
    assert result.exit_code == 1 and "would fail" in result.output, result.output
    # A transposed mask passed the dry run (sides compared unordered) and the run refused it.
    Image.new("L", (48, 64)).save(masks / "a_mask.png")
    for dry in (["--dry-run"], []):
        result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "transposed"), "--masks", str(masks), *dry, *STAGES)
        assert result.exit_code == 1 and "is 48x64" in " ".join(result.output.split()), (dry, result.output)
    # --tile-overlap below a model's need was raised without a word (outputs identical to the default's).
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--tile-overlap", "0", "--dry-run", *STAGES)
    assert result.exit_code == 0 and "--tile-overlap 0 is raised" in " ".join(result.output.split()), result.output


def test_unavailable_stage_is_named(album, tmp_path, random_scratch_model, monkeypatch):
    import dataclasses

    from oldphoto import registry

    entries = dict(registry.REGISTRY)
    entries[registry.MAPPING_MODEL] = dataclasses.replace(entries[registry.MAPPING_MODEL], sha256=None)
    monkeypatch.setattr(registry, "REGISTRY", entries)
    result = invoke("restore", str(album), "-o", str(tmp_path / "out"), "--no-faces")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "global" in text and "--no-global" in text
    assert not (tmp_path / "out").exists()


def test_fp16_on_cpu_is_a_clear_error(album, tmp_path, random_scratch_model):
    for flag in (["--fp16"], ["--precision", "fp16"]):
        result = invoke("restore", str(album), "-o", str(tmp_path / "out"), "--device", "cpu", *flag, *STAGES)
        assert result.exit_code == 2
        assert "--precision fp16 needs a CUDA or MPS device" in " ".join(result.output.split())


def test_models_list_and_verify(random_scratch_model, monkeypatch):
    import dataclasses

    from oldphoto import registry

    entries = dict(registry.REGISTRY)
    entries["restore-unet"] = dataclasses.replace(entries["restore-unet"], weights_file="not-installed.safetensors")
    monkeypatch.setattr(registry, "REGISTRY", entries)
    listing = invoke("models", "list")
    assert listing.exit_code == 0
    assert "scratch-unet" in listing.output and "present" in listing.output and "missing" in listing.output
    verified = invoke("models", "verify", "scratch-unet")
    assert verified.exit_code == 0, verified.output
    assert "not a folder" not in verified.output


def test_models_say_when_the_weights_folder_variable_names_no_folder(tmp_path, monkeypatch):
    """With $OLDPHOTO_WEIGHTS_DIR mistyped, `models verify` printed "ok" for the packaged files without a word."""
    monkeypatch.setenv("OLDPHOTO_WEIGHTS_DIR", str(tmp_path / "no-such-folder"))
    for command in (["models", "verify", "face-gate"], ["models", "list"]):
        result = invoke(*command)
        assert "no-such-folder, which is not a folder" in " ".join(result.output.split()), result.output


def test_models_list_shows_whole_names_in_a_log(monkeypatch):
    """A log or a pipe counts as 80 columns; the table must not cut model names to "scratch-un…"."""
    import io

    from rich.console import Console

    from oldphoto.cli import models as models_command
    from oldphoto.registry import all_specs

    log = Console(width=80, color_system=None, file=io.StringIO())
    monkeypatch.setattr(models_command, "console", log)
    assert invoke("models", "list").exit_code == 0
    printed = log.file.getvalue()
    assert "…" not in printed and all(f" {spec.name} " in printed for spec in all_specs())


def test_version():
    from oldphoto import __version__

    assert invoke("--version").output.strip() == f"oldphoto {__version__}"


def test_caveats_of_models_in_use_are_shown(album, tmp_path, random_scratch_model, monkeypatch):
    import dataclasses

    from oldphoto import registry

    entries = dict(registry.REGISTRY)
    entries["scratch-unet"] = dataclasses.replace(random_scratch_model, caveat="not ready for real scans")
    monkeypatch.setattr(registry, "REGISTRY", entries)
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out"), *STAGES)
    assert result.exit_code == 0
    assert "not ready for real scans" in result.output
    assert "preliminary" in invoke("models", "list").output


def test_global_model_option_runs_the_ablation_network(tmp_path):
    """--global-model restore-unet swaps the shipped triplet for the shipped direct U-Net."""
    from oldphoto.imageio import load_rgb

    photo = make_photo(tmp_path / "in" / "p.png")
    outputs = {}
    for model in ("triplet", "restore-unet"):
        result = CliRunner().invoke(
            app, ["restore", str(photo), "-o", str(tmp_path / model), "--no-scratch", "--no-faces", "--global-model", model]
        )
        assert result.exit_code == 0, result.output
        outputs[model] = load_rgb(tmp_path / model / "p.png")
    assert np.abs(outputs["triplet"] - outputs["restore-unet"]).mean() > 1e-3
    bad = CliRunner().invoke(app, ["restore", str(photo), "-o", str(tmp_path / "x"), "--global-model", "vgg"])
    assert bad.exit_code == 2


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def notes(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("note:")]


def test_restoring_a_folder_into_itself_twice_leaves_its_own_outputs_alone(album, random_scratch_model):
    args = ("restore", str(album), "-o", str(album), "--suffix", "_r", "--save-mask", "--compare", *STAGES)
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    written = files_under(album)
    assert "a_r.jpg" in written and "a_r_mask.png" in written and "a_r_compare.jpg" in written
    again = invoke(*args)
    assert again.exit_code == 0, again.output  # the existing outputs count as done
    assert files_under(album) == written  # no a_r_r.jpg, a_r_mask_r.png, a_r_compare_r.jpg
    left_out = [line for line in notes(again.output) if "own outputs for other inputs" in line]
    assert len(left_out) == 1 and "left out 6 file(s)" in left_out[0] and "a_r" in left_out[0]
    # --quiet hides the note; the report still names each file left out (a cluster job's only record).
    report = album.parent / "again.json"
    assert invoke(*args, "--quiet", "--report", str(report)).exit_code == 0
    entries = json.loads(report.read_text())["left_out"]
    assert len(entries) == 6 and {Path(entry["input"]).name for entry in entries} >= {"a_r.jpg", "a_r_mask.png", "a_r_compare.jpg"}
    assert all(entry["reason"] == "oldphoto's own output for another input" for entry in entries)
    merged = album.parent / "merged.json"
    assert invoke("report", "merge", str(report), "-o", str(merged)).exit_code == 0
    assert len(json.loads(merged.read_text())["left_out"]) == 6


def test_rerunning_on_an_output_folder_leaves_its_masks_and_sheets_out(album, tmp_path, random_scratch_model):
    out, again = tmp_path / "out", tmp_path / "again"
    assert invoke("restore", str(album), "-o", str(out), "--save-mask", "--compare", *STAGES).exit_code == 0
    assert "a_mask.png" in files_under(out) and "b_compare.jpg" in files_under(out)
    result = invoke("restore", str(out), "-o", str(again), *STAGES)
    assert result.exit_code == 0, result.output
    assert files_under(again) == ["a.jpg", "b.png"]
    assert any("left out 4 file(s)" in line for line in notes(result.output))


def test_masks_saved_by_a_suffix_run_are_found_and_the_exact_name_preferred(album, tmp_path, random_scratch_model):
    out = tmp_path / "out"
    assert invoke("restore", str(album), "-o", str(out), "--suffix", "_r", "--save-mask", *STAGES).exit_code == 0
    report = tmp_path / "report.json"
    result = invoke(
        "restore", str(album), "-o", str(tmp_path / "final"), "--suffix", "_r", "--masks", str(out), "--report", str(report), *STAGES
    )
    assert result.exit_code == 0, result.output
    sources = {Path(r["input"]).name: r["mask_source"] for r in json.loads(report.read_text())["images"]}
    assert sources == {"a.jpg": str(out / "a_r_mask.png"), "b.png": str(out / "b_r_mask.png")}
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(out / "a_mask.png")
    result = invoke(
        "restore", str(album / "a.jpg"), "-o", str(tmp_path / "exact"), "--suffix", "_r", "--masks", str(out),
        "--report", str(report), *STAGES,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["images"][0]["mask_source"] == str(out / "a_mask.png")


def test_a_run_that_would_overwrite_its_inputs_exits_1(album, random_scratch_model):
    before = files_under(album)
    result = invoke("restore", str(album), "-o", str(album), *STAGES)
    assert result.exit_code == 1
    assert files_under(album) == before
    assert "overwrite an input" in " ".join(result.output.split())
    assert invoke("restore", str(album), "-o", str(album), "--dry-run", *STAGES).exit_code == 1


def test_caveats_are_one_short_line_per_model_and_quiet_hides_notes_not_errors(album, tmp_path, random_scratch_model):
    (album / "notes.txt").write_text("not a photo")
    result = invoke("restore", str(album), "-o", str(tmp_path / "out"), *STAGES)
    assert result.exit_code == 0, result.output
    caveats = [line for line in notes(result.output) if "scratch-unet" in line]
    assert caveats == ["note: scratch-unet: preliminary weights (the full caveat: oldphoto models list)"]
    assert "held-out" not in result.output
    (album / "broken.jpg").write_bytes(b"not a jpeg")
    quiet = invoke("restore", str(album), "-o", str(tmp_path / "quiet"), "--quiet", *STAGES)
    assert quiet.exit_code == 1
    assert not notes(quiet.output) and "note:" not in quiet.output
    assert "failed:" in quiet.output and "broken.jpg" in quiet.output


def test_report_has_speed_memory_and_run_totals(album, tmp_path, random_scratch_model):
    report = tmp_path / "report.json"
    result = invoke("restore", str(album), "-o", str(tmp_path / "out"), "--report", str(report), *STAGES)
    assert result.exit_code == 0, result.output
    payload = json.loads(report.read_text())
    for image in payload["images"]:
        assert image["megapixels"] == pytest.approx(64 * 48 / 1e6)
        # seconds is rounded to 1 ms, which on 0.003 MP is up to 0.17 s/MP
        assert image["seconds_per_megapixel"] == pytest.approx(image["seconds"] / image["megapixels"], abs=0.2)
        assert image["peak_memory_mb"] > 10  # the whole process, models and Python included
        assert image["scratch_coverage"] is not None and image["tiles"] >= 1  # the existing fields stay
    totals = payload["totals"]
    assert totals["images"] == 2 and totals["megapixels"] == pytest.approx(2 * 64 * 48 / 1e6)
    assert totals["seconds"] == pytest.approx(sum(i["seconds"] for i in payload["images"]), abs=0.002)
    assert totals["seconds_per_megapixel"] == pytest.approx(totals["seconds"] / totals["megapixels"], rel=0.01, abs=0.01)


def test_two_photos_of_one_stem_never_share_a_mask_or_sheet(tmp_path, random_scratch_model):
    # a.jpg and a.png restore to a.jpg and a.png, but --save-mask would write both masks to a_mask.png: the second
    # is refused (exit 1) instead of silently overwriting the first one's mask.
    folder = tmp_path / "scans"
    make_photo(folder / "a.jpg")
    make_photo(folder / "a.png", size=(40, 40))
    out = tmp_path / "out"
    result = invoke("restore", str(folder), "-o", str(out), "--save-mask", *STAGES)
    assert result.exit_code == 1, result.output
    assert "a.jpg's output too" in " ".join(result.output.split())
    with Image.open(out / "a_mask.png") as mask:
        assert mask.size == (64, 48)  # the first photo's mask, intact
    assert invoke("restore", str(folder), "-o", str(tmp_path / "plain"), *STAGES).exit_code == 0


def test_a_photo_whose_mask_cannot_be_written_is_not_left_as_done(tmp_path, random_scratch_model):
    """The restored photo was written before its mask: when the mask could not be written the photo was "failed",
    but the next run skipped it as done and the mask was never made. The photo is written last now, and what was
    written before it is removed on failure."""
    photo = make_photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    (out / "a_mask.png").mkdir(parents=True)  # in the way of the mask
    result = invoke("restore", str(photo), "-o", str(out), "--save-mask", "--compare", "--overwrite", *STAGES)
    assert result.exit_code == 1, result.output
    assert not (out / "a.jpg").exists() and not (out / "a_compare.jpg").exists()
    (out / "a_mask.png").rmdir()
    result = invoke("restore", str(photo), "-o", str(out), "--save-mask", "--compare", *STAGES)
    assert result.exit_code == 0 and "skipped" not in result.output, result.output
    assert (out / "a.jpg").exists() and (out / "a_mask.png").is_file() and (out / "a_compare.jpg").exists()


def test_an_output_folder_inside_the_album_is_not_restored_again(tmp_path, random_scratch_model):
    """restore album -r -o album/restored, run twice, took the first run's results as new photos: they went to
    restored/restored/ and every run exited 1 with "output would overwrite an input file"."""
    album = tmp_path / "album"
    make_photo(album / "a.jpg")
    make_photo(album / "sub" / "b.jpg")
    out = album / "restored"
    for _ in range(3):
        result = invoke("restore", str(album), "-r", "-o", str(out), *STAGES)
        assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == ["a.jpg", "sub/b.jpg"]
    # Restoring in place (the output folder is the input folder) still finds the photos there, and a result given
    # by name to restore into a folder above it is restored, as asked.
    result = invoke("restore", str(album / "sub"), "-o", str(album / "sub"), "--suffix", "_r", *STAGES)
    assert result.exit_code == 0 and (album / "sub" / "b_r.jpg").exists(), result.output
    result = invoke("restore", str(out / "a.jpg"), "-o", str(album), "--suffix", "_again", *STAGES)
    assert result.exit_code == 0 and (album / "a_again.jpg").exists(), result.output


def test_shards_agree_on_which_photo_owns_a_shared_output_name(tmp_path, random_scratch_model):
    """x.jpg and x.png both become x.png with --ext png. A single run refuses the second; sharded, each shard only
    looked at its own photos: x.jpg's shard took x.png's result as its own "existing output" (never restored) or,
    with --overwrite, replaced it."""
    folder = tmp_path / "scans"
    make_photo(folder / "x.jpg", size=(64, 48))
    make_photo(folder / "x.png", size=(40, 40))
    for name in ("b.jpg", "c.jpg", "d.jpg", "e.jpg"):
        make_photo(folder / name)
    out = tmp_path / "out"
    codes = [invoke("restore", str(folder), "-o", str(out), "--ext", "png", "--shard", f"{k}/3", *STAGES).exit_code for k in range(3)]
    assert sorted(codes) == [0, 0, 1]  # the shard holding x.png refuses it, as a single run would
    with Image.open(out / "x.png") as written:
        assert written.size == (48, 64)  # x.jpg's result: the first photo in the run's order owns the name
    for k in range(3):  # re-runs, even with --overwrite, never give the file to the other photo
        invoke("restore", str(folder), "-o", str(out), "--ext", "png", "--shard", f"{k}/3", "--overwrite", *STAGES)
        with Image.open(out / "x.png") as written:
            assert written.size == (48, 64)


FACE_STAGES = ["--no-scratch", "--no-global"]  # the face stage alone (random refiner, shipped MTCNN)
FACE_FIXTURE = Path(__file__).parent / "fixtures" / "face-1870.jpg"


def face_photos(folder: Path) -> Path:
    """folder/solo.png (one ~62 px face) and folder/sub/pair.png (a ~43 px face left, a ~62 px face right)."""
    import cv2

    from oldphoto.imageio import load_rgb, save_rgb

    face = np.pad(load_rgb(FACE_FIXTURE), ((40, 40), (60, 60), (0, 0)), mode="edge")
    small = cv2.resize(face, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    small = np.pad(small, ((0, face.shape[0] - small.shape[0]), (0, 0), (0, 0)), mode="edge")
    save_rgb(folder / "solo.png", face)
    save_rgb(folder / "sub" / "pair.png", np.concatenate([small, face], axis=1))
    return folder


def test_save_faces_writes_each_refined_face_and_the_report_lists_every_face(tmp_path, random_face_model):
    album, out, faces, report = face_photos(tmp_path / "album"), tmp_path / "out", tmp_path / "faces", tmp_path / "r.json"
    args = ("restore", str(album), "-r", "-o", str(out), "--save-faces", str(faces), "--min-face-size", "50", *FACE_STAGES)
    result = invoke(*args, "--report", str(report))
    assert result.exit_code == 0, result.output
    # Only the pair's large face passed --min-face-size 50: one crop each for it and for the solo face.
    assert files_under(faces) == sorted(f"{part}/{name}" for part in ("cmp", "cropped", "restored") for name in ("solo_0.png", "sub/pair_0.png"))
    cropped, restored = (np.asarray(Image.open(faces / part / "sub" / "pair_0.png"), np.float32) for part in ("cropped", "restored"))
    assert cropped.shape == restored.shape == (256, 256, 3) and np.abs(cropped - restored).max() > 1
    with Image.open(faces / "cmp" / "sub" / "pair_0.png") as sheet:
        assert sheet.size == (512, 256) and np.array_equal(np.asarray(sheet), np.concatenate([cropped, restored], axis=1))
    images = {Path(r["input"]).name: r for r in json.loads(report.read_text())["images"]}
    pair = images["pair.png"]
    assert pair["faces_found"] == 2 and [face["refined"] for face in pair["faces"]] == [True, False]
    for face in pair["faces"]:
        assert len(face["box"]) == 4 and np.array(face["landmarks"]).shape == (5, 2) and face["score"] > 0.9
    large, small = pair["faces"]
    assert 50 <= max(large["box"][2:]) and max(small["box"][2:]) < 50 and small["box"][0] < large["box"][0]
    x, y, w, h = large["box"]
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in large["landmarks"])

    # Like the other side outputs: written with the photo, so a skipped photo writes none, --overwrite rewrites them.
    (faces / "cropped" / "solo_0.png").unlink()
    assert invoke(*args).exit_code == 0
    assert not (faces / "cropped" / "solo_0.png").exists()
    assert invoke(*args, "--overwrite").exit_code == 0
    assert (faces / "cropped" / "solo_0.png").exists()

    # Crops are numbered as the report lists the faces, and a re-run that refines fewer faces leaves no stale crop.
    every = ("restore", str(album), "-r", "-o", str(out), "--save-faces", str(faces), *FACE_STAGES, "--overwrite")
    assert invoke(*every, "--min-face-size", "0").exit_code == 0
    assert (faces / "cropped" / "sub" / "pair_1.png").exists()
    assert invoke(*every, "--min-face-size", "50").exit_code == 0
    assert sorted(p.name for p in (faces / "cropped" / "sub").iterdir()) == ["pair_0.png"]

    # Only crops it wrote are removed as stale: another tool's results of the same names (GFPGAN's cmp/<name>_00.png)
    # stay, even for a photo without faces.
    foreign = [faces / "cmp" / "sub" / "pair_07.png", faces / "cropped" / "solo_3.png", faces / "restored" / "sub" / "pair_1.png"]
    for path in foreign:
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(path)
    assert invoke(*every, "--min-face-size", "50").exit_code == 0
    assert all(path.exists() for path in foreign)


def test_save_faces_never_writes_over_a_file_it_did_not_write(tmp_path, random_face_model):
    """A file of another tool at a crop's path (faces/cropped/solo_0.png) was written over without --overwrite, and a
    crop of ours copied to solo_00.png (how other tools number theirs) was removed as a stale crop of ours."""
    album, out, faces = face_photos(tmp_path / "album"), tmp_path / "out", tmp_path / "faces"
    args = ("restore", str(album / "solo.png"), "-o", str(out), "--save-faces", str(faces), *FACE_STAGES)
    (faces / "cropped").mkdir(parents=True)
    theirs = faces / "cropped" / "solo_0.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(theirs)
    before = theirs.read_bytes()
    result = invoke(*args)
    shown = " ".join(result.output.split())
    assert result.exit_code == 1 and "was not written by --save-faces" in shown, result.output
    assert theirs.read_bytes() == before and not (out / "solo.png").exists()
    assert not (faces / "restored" / "solo_0.png").exists() and not (faces / "cmp" / "solo_0.png").exists()

    result = invoke(*args, "--overwrite", "--report", str(faces / "cropped" / "solo_1.png"))
    assert result.exit_code == 2 and "lies where --save-faces writes face crops" in " ".join(result.output.split()), result.output
    assert invoke(*args, "--overwrite").exit_code == 0  # asked for: replaced by the crop
    assert theirs.read_bytes() != before and (out / "solo.png").exists()
    copied = faces / "cropped" / "solo_00.png"
    copied.write_bytes(theirs.read_bytes())
    assert invoke(*args, "--overwrite").exit_code == 0
    assert copied.exists() and theirs.exists()


def test_only_center_face_and_face_option_checks(tmp_path, random_face_model):
    album, report = face_photos(tmp_path / "album"), tmp_path / "r.json"
    photo = album / "sub" / "pair.png"  # 432 px wide: the large face (centre x ~ 335) is the nearer to x = 216
    result = invoke("restore", str(photo), "-o", str(tmp_path / "out"), "--only-center-face", "--report", str(report), *FACE_STAGES)
    assert result.exit_code == 0, result.output
    payload = json.loads(report.read_text())
    assert [face["refined"] for face in payload["images"][0]["faces"]] == [True, False]
    assert any("only the centre face" in step for step in payload["stages"])
    bad = invoke("restore", str(photo), "-o", str(tmp_path / "bad"), "--min-face-size", "-1", *FACE_STAGES)
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()
    help_text = " ".join(runner.invoke(app, ["restore", "--help"], env={"COLUMNS": "400"}).output.split())
    assert "0 keeps the global result, 1 blends the refined face in fully, as far as the face gate says it needs" in help_text
    assert "(the opposite direction to CodeFormer's -w)" in help_text
    assert "--min-face-size" in help_text and "--only-center-face" in help_text and "--save-faces" in help_text


def test_jpeg_outputs_keep_the_inputs_quality_unless_told(tmp_path, random_scratch_model):
    from oldphoto.imageio import read_photo

    source = tmp_path / "in" / "scan.jpg"
    source.parent.mkdir()
    pixels = (smooth_image(96, 128) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(source, quality=72, subsampling=2)
    auto, fixed = tmp_path / "auto", tmp_path / "fixed"
    assert invoke("restore", str(source), "-o", str(auto), *STAGES).exit_code == 0
    assert invoke("restore", str(source), "-o", str(fixed), "--jpeg-quality", "90", *STAGES).exit_code == 0
    assert read_photo(auto / "scan.jpg").jpeg == read_photo(source).jpeg  # quality 72, 4:2:0
    assert (read_photo(fixed / "scan.jpg").jpeg.quality, read_photo(fixed / "scan.jpg").jpeg.subsampling) == (90, 0)
    result = invoke("restore", str(source), "-o", str(tmp_path / "bad"), "--jpeg-quality", "0", *STAGES)
    assert result.exit_code == 2 and "quality" in result.output and not (tmp_path / "bad").exists()


def test_ext_auto_keeps_formats_and_named_formats_convert(album, tmp_path, random_scratch_model):
    out = tmp_path / "out"
    assert invoke("restore", str(album), "-o", str(out), "--ext", "auto", *STAGES).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.png"]
    assert invoke("restore", str(album), "-o", str(tmp_path / "tiff"), "--ext", "tiff", *STAGES).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "tiff").iterdir()) == ["a.tiff", "b.tiff"]


def test_keep_tone_is_planned_and_reported(album, tmp_path, random_scratch_model):
    report = tmp_path / "r.json"
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out"), "--keep-tone", "--report", str(report), *STAGES)
    assert result.exit_code == 0, result.output
    payload = json.loads(report.read_text())
    assert payload["stages"][-1].startswith("keep the photo's own tone")
    assert "tone" in payload["images"][0]["stage_seconds"]


def test_progress_counts_megapixels_not_photos(tmp_path, random_scratch_model):
    make_photo(tmp_path / "in" / "small.png", size=(100, 100))
    make_photo(tmp_path / "in" / "large.png", size=(300, 1000))
    result = invoke("restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *STAGES)
    assert result.exit_code == 0, result.output
    assert "2/2 photos, 0.3/0.3 MP" in result.output


@pytest.mark.parametrize(
    "command",
    [["restore"], ["degrade"], ["evaluate"], ["report", "merge"], ["models", "verify"], ["train", "scratch"], ["train", "detail-fusion"], ["train", "face"]],
)
def test_help_shows_metavars_not_python_types(command):
    import re

    result = invoke(*command, "--help")
    assert result.exit_code == 0
    raw = re.findall(r"<(?:bool|int|float|str|path|dir|file|Path|list\[[^\]]*\]|(?:int|float) range)>", result.output)
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert raw == [] and not re.search(r"\{[a-z_]+\}", usage), (raw, usage)
    if command != ["models", "verify"]:  # it has no option that takes a value
        assert re.search(r"\b(N|0\.\.1|PATH|DIR|FILE|TEXT)\b", result.output)


# --- what a restored file keeps, and what survives a failed write ----------------------------------------------------


def _png_with_chunks(png: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """``png`` with extra chunks (type, body) inserted right after its IHDR chunk."""
    import struct
    import zlib

    extra = b"".join(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks)
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png[:ihdr_end] + extra + png[ihdr_end:]


def _exif_and_icc() -> tuple[Image.Exif, bytes]:
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x013B] = "A. Photographer"  # Artist
    exif.get_ifd(0x8769)[0x9003] = "1931:05:04 12:30:00"  # DateTimeOriginal, in the Exif sub-IFD
    return exif, ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("name", ["scan.jpg", "scan16.png"])
def test_restore_keeps_bit_depth_exif_and_icc(tmp_path, random_scratch_model, name):
    """Through `oldphoto restore`: a 16-bit PNG comes back 16-bit (its pixels not rounded to 8 bits), and the EXIF
    (artist, date taken) and ICC profile of a JPEG or a 16-bit PNG come back in the output."""
    import cv2

    exif, icc = _exif_and_icc()
    source = tmp_path / "in" / name
    source.parent.mkdir()
    if name.endswith(".jpg"):
        Image.fromarray((smooth_image(48, 64) * 255).astype(np.uint8)).save(source, quality=95, exif=exif.tobytes(), icc_profile=icc)
    else:
        pixels = np.rint(smooth_image(48, 64) * 65535).astype(np.uint16)
        pixels[0, 0] = (1, 2, 3)  # not representable in 8 bits
        png = cv2.imencode(".png", pixels[:, :, ::-1])[1].tobytes()
        exif_body = exif.tobytes()
        exif_body = exif_body[6:] if exif_body.startswith(b"Exif\x00\x00") else exif_body
        import zlib

        source.write_bytes(_png_with_chunks(png, [(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc)), (b"eXIf", exif_body)]))
    out = tmp_path / "out"
    result = invoke("restore", str(source), "-o", str(out), "--save-mask", *STAGES)
    assert result.exit_code == 0, result.output
    with Image.open(out / name) as restored:
        restored.load()
        assert restored.info.get("icc_profile") == icc
        assert restored.getexif().get(0x013B) == "A. Photographer"
        assert restored.getexif().get_ifd(0x8769).get(0x9003) == "1931:05:04 12:30:00"
    if name.endswith(".png"):
        written = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert written.dtype == np.uint16 and written.shape == (48, 64, 3)
        with Image.open(out / "scan16_mask.png") as mask:
            untouched = np.asarray(mask) == 0
        assert untouched.mean() > 0.5
        # Where nothing was repaired the 16-bit values come back exactly (an 8-bit round trip would round them).
        assert np.array_equal(written[untouched], cv2.imread(str(source), cv2.IMREAD_UNCHANGED)[untouched])
        assert untouched[0, 0] and tuple(written[0, 0, ::-1]) == (1, 2, 3)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_an_interrupted_overwrite_keeps_the_old_output(album, tmp_path, random_scratch_model, monkeypatch, failure):
    """--overwrite writes the new output beside the old one and swaps it in: stopped at the swap (Ctrl-C, or an error),
    the old output is intact and no temporary .part file is left."""
    import os

    from oldphoto import atomic

    out = tmp_path / "out"
    with Image.open(album / "a.jpg") as photo:
        make_photo(out / "a.jpg", size=(photo.height, photo.width))  # an earlier result: the photo's own size
    before = (out / "a.jpg").read_bytes()
    make_photo(out / "a_mask.png", size=(10, 10))  # the earlier run's mask: removed, the earlier photo lacked it
    mask_before = (out / "a_mask.png").read_bytes()
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if Path(target) == out / "a.jpg":
            raise failure() if failure is KeyboardInterrupt else failure(5, "Input/output error")
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", replace)
    report = tmp_path / "r.json"
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--overwrite", "--save-mask", "--report", str(report), *STAGES)
    assert result.exit_code == (130 if failure is KeyboardInterrupt else 1), result.output
    assert (out / "a.jpg").read_bytes() == before and (out / "a_mask.png").read_bytes() == mask_before
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "a_mask.png"]  # no .a.jpg.*.part left behind
    # The report of a stopped run says so (it read as a complete run that had fewer photos).
    assert json.loads(report.read_text())["stopped"] == ("interrupted" if failure is KeyboardInterrupt else None)
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert invoke("restore", str(album / "a.jpg"), "-o", str(out), "--overwrite", "--report", str(report), *STAGES).exit_code == 0
    assert (out / "a.jpg").read_bytes() != before and json.loads(report.read_text())["stopped"] is None


def test_a_report_that_cannot_be_written_after_the_photos_is_one_error_line(album, tmp_path, random_scratch_model, monkeypatch):
    """A full disk at the report (after every photo) ended the run in a traceback, the summary lost."""
    from oldphoto.cli import restore as restore_command

    def full_disk(path, payload):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(restore_command, "write_report", full_disk)
    out = tmp_path / "out"
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--report", str(tmp_path / "r.json"), *STAGES)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot write the report or gallery (No space left on device)" in " ".join(result.output.split())
    assert (out / "a.jpg").exists()


def _flip_a_byte(path: Path, keep_mtime: bool = False) -> None:
    """Change one byte of ``path`` in place (same size); with ``keep_mtime`` its modification time is put back."""
    import os

    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


def test_tampered_weights_stop_restore_and_fail_verify(album, tmp_path, random_scratch_model, weights_dir):
    _flip_a_byte(weights_dir / random_scratch_model.weights_file)
    result = invoke("restore", str(album), "-o", str(tmp_path / "out"), *STAGES)
    assert result.exit_code == 2  # the run cannot start
    text = " ".join(result.output.split())
    assert "sha256 does not match" in text and "scratch-unet" in text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    verified = invoke("models", "verify", "scratch-unet")
    assert verified.exit_code == 1
    assert "FAILED" in verified.output and "sha256" in verified.output
    listed = " ".join(invoke("models", "list").output.split())  # it showed "present" for a damaged file
    assert "damaged: oldphoto models verify" in listed



def test_every_damaged_weights_file_is_named_at_once(album, tmp_path, random_scratch_model, weights_dir):
    """Two damaged files: restore named the first, and the second only on the next run, once the first was mended."""
    _flip_a_byte(weights_dir / random_scratch_model.weights_file)  # and the verifier the fixture installs beside it
    _flip_a_byte(weights_dir / get_spec("scratch-verifier").weights_file)
    result = invoke("restore", str(album), "-o", str(tmp_path / "out"), *STAGES)
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and text.count("sha256 does not match") == 2, result.output


def test_tampered_weights_are_refused_even_with_their_size_and_mtime_kept(random_scratch_model, weights_dir):
    """The sha256 check is cached per file within a process; a same-size edit whose modification time is put back
    must still be caught (issue 20: a cache keyed on path, size and mtime alone took it for the verified file)."""
    from oldphoto.errors import WeightsIntegrityError
    from oldphoto.weights import verify_weights

    verify_weights(random_scratch_model)  # verified once, as a long-running process (a Ray worker, a notebook) would
    _flip_a_byte(weights_dir / random_scratch_model.weights_file, keep_mtime=True)
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        verify_weights(random_scratch_model)


def test_a_report_path_that_would_destroy_a_photo_or_an_output_is_refused_before_any_work(album, tmp_path, random_scratch_model):
    # `oldphoto restore --report *.jpg -o out` in a folder of photos: the shell makes the first photo the report path.
    photo = album / "a.jpg"
    before = photo.read_bytes()
    out = tmp_path / "out"
    for report in (photo, out / "b.png", tmp_path):
        result = invoke("restore", str(album), "-o", str(out), "--report", str(report), *STAGES)
        assert result.exit_code == 2 and "report" in result.output, result.output
    assert photo.read_bytes() == before and not out.exists()
    # An existing file that is not a report is refused, --overwrite or not (it replaces restored photos, and once
    # replaced a photo named by mistake with JSON); an earlier report is replaced as a re-run expects.
    notes = tmp_path / "notes.txt"
    notes.write_text("grandma's album, 1931")
    settings = tmp_path / "settings.json"  # JSON, but not a report: replaced before
    settings.write_text('{"my": "settings"}')
    for target in (notes, settings):
        for extra in ([], ["--overwrite"]):
            result = invoke("restore", str(photo), "-o", str(out), "--report", str(target), *extra, *STAGES)
            assert result.exit_code == 2 and "--overwrite" not in result.output, result.output
    assert notes.read_text() == "grandma's album, 1931" and settings.read_text() == '{"my": "settings"}'
    result = invoke("restore", str(photo), "-o", str(out), "--report", str(out / "index.html"), "--gallery", *STAGES)
    assert result.exit_code == 2 and "report" in result.output  # the gallery page would have replaced it
    report = tmp_path / "r.json"
    for _ in range(2):
        assert invoke("restore", str(photo), "-o", str(out), "--report", str(report), "--overwrite", *STAGES).exit_code == 0
    assert json.loads(report.read_text())["images"][0]["status"] == "restored"
    # A report that cannot be written (its folder is a file) crashed with a traceback after every photo was restored.
    fresh = tmp_path / "fresh"
    for extra in ([], ["--dry-run"]):
        result = invoke("restore", str(photo), "-o", str(fresh), "--report", str(notes / "r.json"), *extra, *STAGES)
        assert result.exit_code == 2 and "is a file, not a folder" in result.output, result.output
    assert not fresh.exists()


def test_a_mask_or_sheet_already_there_is_not_replaced_without_overwrite(album, tmp_path, random_scratch_model):
    out = tmp_path / "out"
    out.mkdir()
    edited = out / "a_mask.png"
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(edited)
    before = edited.read_bytes()
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--save-mask", *STAGES)
    assert result.exit_code == 1 and "a_mask.png exists" in " ".join(result.output.split())
    assert edited.read_bytes() == before and not (out / "a.jpg").exists()
    # Without --save-mask the mask is not written, so nothing stands in the way.
    assert invoke("restore", str(album / "a.jpg"), "-o", str(out), *STAGES).exit_code == 0
    assert edited.read_bytes() == before
    assert invoke("restore", str(album / "a.jpg"), "-o", str(out), "--save-mask", "--overwrite", *STAGES).exit_code == 0
    assert edited.read_bytes() != before
    # The same file given as the mask (--masks out) is an input: --overwrite rewrote a hand-edited RGBA layer.
    layer = np.zeros((48, 64, 4), np.uint8)
    layer[10:20, 5:40] = (255, 0, 0, 255)
    Image.fromarray(layer, "RGBA").save(edited)
    before = edited.read_bytes()
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--masks", str(out), "--save-mask", "--overwrite", *STAGES)
    assert result.exit_code == 0 and edited.read_bytes() == before, result.output
    # Reached by another path (here a hard link; a bind mount or another letter case alike): still the same file.
    linked = tmp_path / "linked"
    linked.mkdir()
    os.link(edited, linked / "a_mask.png")
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--masks", str(linked), "--save-mask", "--overwrite", *STAGES)
    assert result.exit_code == 0 and edited.read_bytes() == before, result.output


def test_a_page_that_is_not_a_gallery_is_not_replaced(album, tmp_path, random_scratch_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("<html>our family tree</html>")
    for extra in ([], ["--overwrite"]):  # --overwrite is for the photos' outputs: it replaced the page too
        result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--gallery", *extra, *STAGES)
        assert result.exit_code == 2 and "pass --overwrite" not in " ".join(result.output.split()), result.output
        assert (out / "index.html").read_text() == "<html>our family tree</html>" and not (out / "a.jpg").exists()
    (out / "index.html").unlink()
    for _ in range(2):  # an earlier gallery is ours to replace
        assert invoke("restore", str(album / "a.jpg"), "-o", str(out), "--gallery", "--overwrite", *STAGES).exit_code == 0
    assert invoke("report", "gallery", str(out / "missing.json"), "-o", str(album / "a.jpg")).exit_code == 2
    # report gallery --overwrite wrote the page over the report it showed, or over a photo the report lists.
    report = tmp_path / "r.json"
    assert invoke("restore", str(album / "a.jpg"), "-o", str(out), "--overwrite", "--report", str(report), *STAGES).exit_code == 0
    kept = {path: path.read_bytes() for path in (report, album / "a.jpg", out / "a.jpg")}
    for target in kept:
        result = invoke("report", "gallery", str(report), "-o", str(target), "--overwrite")
        assert result.exit_code == 2 and "the report or one of the photos it lists" in " ".join(result.output.split()), result.output
    assert all(path.read_bytes() == data for path, data in kept.items())


def test_a_photo_with_a_name_of_up_to_255_bytes_is_restored_and_its_leftovers_cleaned(tmp_path, random_scratch_model):
    """The temporary file added 15 bytes to the name: a 241-255 byte name was restored, then "File name too long"."""
    from oldphoto.atomic import temporary_prefix

    long_name = "ü" * 60 + "x" * (251 - 120) + ".png"  # 255 bytes in UTF-8
    assert len(os.fsencode(long_name)) == 255
    photo = make_photo(tmp_path / "in" / long_name)
    out = tmp_path / "out"
    result = invoke("restore", str(photo), "-o", str(out), *STAGES)
    assert result.exit_code == 0 and (out / long_name).is_file(), result.output
    # What a killed worker leaves for it (mkstemp's name) is found and removed, as the Ray engine does on a retry.
    from oldphoto.inputs import Job
    from oldphoto.restore.jobs import remove_partial_outputs

    # The cut never splits a character (a name that is not valid UTF-8 is refused by APFS and Windows).
    for name in (long_name, "a" + "é" * 120 + ".png"):
        prefix = temporary_prefix(name)
        assert len(prefix.encode("utf-8")) + 8 + len(".part") <= 255 and name.startswith(prefix[1:-1])
    leftover = out / f"{temporary_prefix(long_name)}abcd1234.part"
    leftover.write_bytes(b"partial")
    assert len(os.fsencode(leftover.name)) <= 255
    assert remove_partial_outputs([Job(photo, out / long_name)]) == 1 and not leftover.exists()


def test_a_suffix_with_a_folder_separator_is_refused(album, tmp_path, random_scratch_model):
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out" / "x"), "--suffix", "/../../escaped", *STAGES)
    assert result.exit_code == 2 and "--suffix" in result.output
    assert not (tmp_path / "escaped.jpg").exists() and not (tmp_path / "out").exists()


def test_merging_reports_does_not_write_over_one_of_them(tmp_path):
    first = tmp_path / "a.json"
    first.write_text(json.dumps({"images": [], "totals": {}}))
    before = first.read_text()
    assert invoke("report", "merge", str(first), "-o", str(first)).exit_code == 2
    assert first.read_text() == before


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["restore", "{photo}", "-o", "{out}", "--threads", "-3"], "--threads"),
        (["restore", "{photo}", "-o", "{out}", "--max-pixels", "-1"], "--max-pixels"),
        # Planned and accepted; each photo then failed on a 40 GB allocation after its detection.
        (["restore", "{photo}", "-o", "{out}", "--mask-dilation", "100000"], "must be 0 to 64 pixels"),
        # The stages' floor, not the runtime's "--tile 128 or more", which the stages then refused too.
        (["restore", "{photo}", "-o", "{out}", "--tile", "100"], "--tile 100 is below 512"),
        (["degrade", "{photo}", "-o", "{out}", "--seed", "-1"], "--seed"),
        (["train", "scratch", "--data", "{out}", "--seed", "-1"], "--seed"),  # a numpy ValueError traceback
        (["train", "scratch", "--data", "{out}", "--real-fraction", "5"], "--real-fraction"),  # trained with, unseen
        (["degrade", "{photo}", "-o", "{out}", "--count", "0"], "--count"),
        (["degrade", "{photo}", "-o", "{out}", "--grayscale-prob", "2"], "--grayscale-prob"),  # named the preset's field
        (["degrade", "{photo}", "-o", "{out}", "--count", "50000000"], "--count"),  # planned in memory, nothing written
        (["evaluate", "{out}", "--limit", "0"], "--limit"),
        (["evaluate", "{out}", "--degraded", "{out}"], "not both"),  # --degraded was ignored
        (["evaluate", "{out}", "-m", "bogus"], "identity, classical"),
    ],
)
def test_bad_values_are_refused_with_a_message_not_a_traceback(album, tmp_path, args, named):
    filled = [arg.format(photo=album / "a.jpg", out=tmp_path / "out") for arg in args]
    if filled[0] == "evaluate":
        assert invoke("degrade", str(album / "a.jpg"), "-o", str(tmp_path / "out")).exit_code == 0
    result = runner.invoke(app, filled)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert named in " ".join(result.output.split())


def test_options_the_chosen_stages_ignore_are_named_and_an_odd_file_name_reaches_the_gallery(album, tmp_path, random_scratch_model):
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out"), "--no-scratch", "--save-mask", "--no-faces", "--save-faces", str(tmp_path / "f"))
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and "--save-mask writes nothing with --no-scratch" in shown and "--save-faces writes nothing" in shown
    masks = tmp_path / "masks"
    masks.mkdir()
    args = ("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out2"), "--masks", str(masks), "--mask-dilation", "3")
    result = invoke(*args, "--face-strength", "0", "--save-faces", str(tmp_path / "f2"), "--no-global")
    shown = " ".join(result.output.split())
    assert "--mask-dilation grows detected masks only" in shown and "--save-faces writes nothing with --face-strength 0" in shown
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out5"), "--global-strength", "0.5", "--dry-run", *STAGES)
    assert result.exit_code == 0 and "--global-strength does nothing with --no-global" in " ".join(result.output.split())
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out6"), "--global-strength", "1.5", *STAGES)
    assert result.exit_code == 2 and "--global-strength" in result.output and not (tmp_path / "out6").exists()
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out7"), "--no-scratch", "--global-strength", "0", "--no-faces", "--dry-run")
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and "the global stage changes nothing (no damage is marked to repair)" in shown, shown
    assert "strength 0 away from the repaired damage" in shown
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out4"), "--workers", "3", "--dry-run", *STAGES)
    assert "are for --engine ray; this run is local" in " ".join(result.output.split())
    # --tile below the stages' floor: the dry run refuses it as the run does (it planned the run and exited 0).
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out3"), "--tile", "511", "--dry-run", *STAGES)
    assert result.exit_code == 2 and "--tile 511 is below 512" in " ".join(result.output.split())
    # A file name that is not valid UTF-8 (an old disk's Latin-1 name): restored, and linked from the gallery.
    odd = Path(os.fsdecode(bytes(tmp_path / "odd") + b"/caf\xe9.jpg"))
    odd.parent.mkdir()
    odd.write_bytes((album / "a.jpg").read_bytes())
    result = invoke("restore", str(odd.parent), "-o", str(tmp_path / "odd-out"), "--gallery", *STAGES)
    assert result.exit_code == 0, result.output
    assert 'src="caf%E9.jpg"' in (tmp_path / "odd-out" / "index.html").read_text()


def test_a_jfif_photo_is_restored_as_jpeg_and_a_broken_link_is_named(album, tmp_path, random_scratch_model):
    (album / "scan.jfif").write_bytes((album / "a.jpg").read_bytes())
    (album / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    out = tmp_path / "out"
    result = invoke("restore", str(album), "-o", str(out), *STAGES)
    assert result.exit_code == 0, result.output
    with Image.open(out / "scan.jfif") as restored:
        assert restored.format == "JPEG"
    shown = " ".join(result.output.split())
    assert "left out 1 file(s)" in shown and "gone.jpg" in shown


def test_a_recursive_search_names_the_linked_folders_it_does_not_follow(album, tmp_path, random_scratch_model):
    elsewhere = tmp_path / "elsewhere"
    make_photo(elsewhere / "e.jpg")
    (album / "linked").symlink_to(elsewhere, target_is_directory=True)
    result = invoke("restore", str(album), "-r", "-o", str(tmp_path / "out"), "--dry-run", *STAGES)
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "did not follow 1 link(s) to folders" in shown and "linked" in shown and "e.jpg" not in shown


def test_a_link_to_a_photo_of_the_run_is_named_where_it_is_read_once(album, tmp_path, random_scratch_model):
    """raw/x.jpg and best/x.jpg -> ../raw/x.jpg: one output, and the other name got none without a word."""
    (album / "best").mkdir()
    (album / "best" / "x.jpg").symlink_to(album / "a.jpg")
    result = invoke("restore", str(album), "-r", "-o", str(tmp_path / "out"), "--dry-run", *STAGES)
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "1 input(s) are another name (a link) of a photo already listed" in shown and "x.jpg" in shown
    # The same path given twice (a folder and a file in it) is no other name: nothing to say.
    result = invoke("restore", str(album), str(album / "a.jpg"), "-o", str(tmp_path / "out"), "--dry-run", *STAGES)
    assert "another name" not in " ".join(result.output.split())


def test_a_jpeg_quality_no_output_uses_and_an_animated_gif_are_mentioned(album, tmp_path, random_scratch_model):
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out"), "--ext", "png", "--jpeg-quality", "50", *STAGES)
    assert result.exit_code == 0 and "--jpeg-quality 50 does nothing here" in " ".join(result.output.split())
    frames = [Image.fromarray(np.full((20, 30, 3), level, np.uint8)) for level in (40, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    result = invoke("restore", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "gif-out"), *STAGES)
    assert result.exit_code == 0 and "holds 2 images" in " ".join(result.output.split()), result.output


def test_a_dry_run_refuses_what_the_run_would_and_degrade_says_when_it_upscales(album, tmp_path, random_scratch_model):
    taken = tmp_path / "notes.txt"
    taken.write_text("not a folder")
    assert invoke("restore", str(album / "a.jpg"), "-o", str(taken), "--dry-run", *STAGES).exit_code == 2
    result = invoke("degrade", str(album / "a.jpg"), "-o", str(tmp_path / "set"), "--size-range", "100", "120")
    assert result.exit_code == 0 and "--size-range crop: it is upscaled" in " ".join(result.output.split())


def test_the_summary_tells_same_named_photos_apart_and_shows_brackets(tmp_path, random_scratch_model):
    for name in ("sub1/a.jpg", "sub2/a.jpg", "[1931] grandma.jpg"):
        make_photo(tmp_path / "album" / name)
    result = invoke("restore", str(tmp_path / "album"), "-o", str(tmp_path / "out"), "--recursive", *STAGES)
    assert result.exit_code == 0, result.output
    shown = result.output
    assert "sub1/a.jpg" in shown and "sub2/a.jpg" in shown and "[1931] grandma.jpg" in " ".join(shown.split())


def test_comparison_sheets_of_strips_and_panoramas_are_written_and_readable():
    from oldphoto.restore.jobs import comparison_sheet

    tall = np.random.default_rng(0).random((66_000, 12, 3)).astype(np.float32)  # over a JPEG's 65,500 px a side
    sheet = comparison_sheet(tall, tall)
    assert max(sheet.shape[:2]) <= 2400 and sheet.shape[1] >= 1
    wide = np.random.default_rng(0).random((60, 3000, 3)).astype(np.float32)
    sheet = comparison_sheet(wide, wide)
    assert sheet.shape[1] == 2400 and sheet.shape[0] >= 2 * 48  # before over after, not a 24 px sliver
    portrait = np.zeros((300, 200, 3), np.float32)
    assert comparison_sheet(portrait, portrait).shape[:2] == (300, 404)  # side by side, as before


def test_a_scan_named_like_an_output_of_another_is_never_written_over(tmp_path, random_scratch_model):
    """page.jpg and page_2.jpg (two scans) restored into their own folder with --suffix _2: page_2.jpg was taken for
    page.jpg's earlier result, so page.jpg was "skipped: output exists", and with --overwrite the scan page_2.jpg was
    replaced. A file whose size is not its presumed source's is no restoration of it as it is now: protected as an
    input, and named (a scan of its own, or the result of a photo cropped since: not restored, as a_r_r.jpg was)."""
    album = tmp_path / "album"
    make_photo(album / "page.jpg", size=(64, 48))
    make_photo(album / "page_2.jpg", size=(80, 60))
    scan = (album / "page_2.jpg").read_bytes()
    for extra in ([], ["--overwrite"]):
        result = invoke("restore", str(album), "-o", str(album), "--suffix", "_2", *extra, *STAGES)
        shown = " ".join(result.output.split())
        assert result.exit_code == 1 and "would overwrite an input file" in shown, result.output
        assert "1 file(s) named like another photo's output are not of its size" in shown and "own outputs" not in shown
        assert (album / "page_2.jpg").read_bytes() == scan and not (album / "page_2_2.jpg").exists()
    # A real earlier result (the photo's own size) is still replaced by --overwrite, as documented.
    (album / "page_2.jpg").unlink()
    assert invoke("restore", str(album), "-o", str(album), "--suffix", "_2", *STAGES).exit_code == 0
    assert invoke("restore", str(album), "-o", str(album), "--suffix", "_2", "--overwrite", *STAGES).exit_code == 0


def test_overwrite_never_replaces_a_file_named_as_an_input(tmp_path, random_scratch_model):
    """`restore page.jpg page_r.jpg -o . --suffix _r --overwrite`, two scans of one size: page_r.jpg was left out as
    page.jpg's earlier result and then replaced by it, though the user had named it and --help says inputs are never
    replaced. Named on the command line, it is protected; given through its folder it is an earlier result still."""
    album = tmp_path / "album"
    make_photo(album / "page.jpg", size=(64, 48))
    scan = make_photo(album / "page_r.jpg", size=(64, 48)).read_bytes()
    result = invoke("restore", str(album / "page.jpg"), str(album / "page_r.jpg"), "-o", str(album), "--suffix", "_r", "--overwrite", *STAGES)
    shown = " ".join(result.output.split())
    assert result.exit_code == 1 and "would overwrite an input file" in shown, result.output
    assert "--overwrite does not replace a file named as an input" in shown
    assert (album / "page_r.jpg").read_bytes() == scan and not (album / "page_r_r.jpg").exists()
    # Without --overwrite nothing is replaced anyway: the earlier result counts as done, as before.
    again = invoke("restore", str(album / "page.jpg"), str(album / "page_r.jpg"), "-o", str(album), "--suffix", "_r", *STAGES)
    assert again.exit_code == 0 and "output exists" in " ".join(again.output.split()), again.output
    assert invoke("restore", str(album), "-o", str(album), "--suffix", "_r", "--overwrite", *STAGES).exit_code == 0
    assert (album / "page_r.jpg").read_bytes() != scan


def test_file_names_are_shown_as_they_are_not_as_markup_or_emoji(tmp_path, random_scratch_model):
    """The dry-run plan read "[draft] grandma.png" as rich markup (shown as " grandma.png"), and every message, table
    and bar showed "album:ok:1.png" as "album\N{SQUARED OK}1.png": the user could not find the file named."""
    album = tmp_path / "album"
    make_photo(album / "[draft] trip :smile: 2.png")
    (album / "album:ok:1.png").write_bytes(b"")
    plan = invoke("restore", str(album), "-o", str(tmp_path / "out"), "--dry-run", *STAGES)
    assert plan.exit_code == 1 and "[draft] trip :smile: 2.png" in plan.output, plan.output  # 1: the empty file would fail
    result = invoke("restore", str(album), "-o", str(tmp_path / "out"), *STAGES)
    assert result.exit_code == 1 and "album:ok:1.png: file is empty" in result.output, result.output
    assert "[draft] trip :smile: 2.png" in result.output and "\N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}" not in result.output


def test_a_report_path_that_the_run_makes_a_folder_is_refused_before_the_work(album, tmp_path, random_scratch_model):
    """`restore a.png -o out --report out` (out/ new) restored every photo and then failed to write the report, a
    cluster job's only record, because out/ had become a folder."""
    out = tmp_path / "out"
    result = invoke("restore", str(album), "-o", str(out), "--report", str(out), *STAGES)
    shown = " ".join(result.output.split())
    assert result.exit_code == 2 and "is a folder this run writes its outputs into" in shown, result.output
    assert not out.exists()
    # `--report new/`: the separator was dropped and a file named "new" written.
    result = invoke("restore", str(album), "-o", str(out), "--report", f"{tmp_path / 'new'}/", *STAGES)
    assert result.exit_code == 2 and "names a folder" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "new").exists() and not out.exists()


def test_the_masks_folder_of_an_earlier_run_inside_the_album_is_not_restored_again(album, random_scratch_model):
    """README's loop: `restore album -r -o album/out --save-mask`, then `restore album -r -o album/final --masks
    album/out`: the second run restored the first run's results too, into album/final/out/."""
    first = invoke("restore", str(album), "-r", "-o", str(album / "out"), "--save-mask", *STAGES)
    assert first.exit_code == 0, first.output
    second = invoke("restore", str(album), "-r", "-o", str(album / "final"), "--masks", str(album / "out"), *STAGES)
    assert second.exit_code == 0, second.output
    assert "inside the output folder" in " ".join(second.output.split())
    assert sorted(p.relative_to(album / "final").as_posix() for p in (album / "final").rglob("*") if p.is_file()) == ["a.jpg", "b.png", "sub/c.png"]


def test_a_rerun_asking_for_masks_and_sheets_an_earlier_run_did_not_write_says_so(album, tmp_path, random_scratch_model):
    """`restore a.jpg -o out`, then `restore a.jpg -o out --save-mask --compare`: the second run wrote no mask and no
    sheet, said only "output exists" and exited 0."""
    out = tmp_path / "out"
    assert invoke("restore", str(album / "a.jpg"), "-o", str(out), *STAGES).exit_code == 0
    again = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--save-mask", "--compare", *STAGES)
    shown = " ".join(again.output.split())
    assert again.exit_code == 1 and "without the mask and comparison sheet asked for" in shown, again.output
    # With them there, a re-run is done, as before.
    assert invoke("restore", str(album / "a.jpg"), "-o", str(out), "--save-mask", "--compare", "--overwrite", *STAGES).exit_code == 0
    assert invoke("restore", str(album / "a.jpg"), "-o", str(out), "--save-mask", "--compare", *STAGES).exit_code == 0


def test_a_pipe_given_as_input_is_not_called_missing(tmp_path, random_scratch_model):
    fifo = tmp_path / "scan.jpg"
    os.mkfifo(fifo)
    result = invoke("restore", str(fifo), "-o", str(tmp_path / "out"), *STAGES)
    shown = " ".join(result.output.split())
    assert result.exit_code != 0 and "not a regular file" in shown and "no such file" not in shown, result.output


def test_a_folder_where_the_output_goes_is_refused_not_taken_for_a_done_photo(album, tmp_path, random_scratch_model):
    out = tmp_path / "out"
    (out / "a.jpg").mkdir(parents=True)
    result = invoke("restore", str(album / "a.jpg"), "-o", str(out), *STAGES)
    shown = " ".join(result.output.split())
    assert result.exit_code == 1 and "is a folder, where an output would go" in shown and "output exists" not in shown, result.output
    (out / "a.jpg").rmdir()
    (out / "a_mask.png").mkdir()
    for extra in ([], ["--overwrite"]):
        result = invoke("restore", str(album / "a.jpg"), "-o", str(out), "--save-mask", *extra, *STAGES)
        shown = " ".join(result.output.split())
        assert result.exit_code == 1 and "a_mask.png is a folder, where an output would go" in shown and "edited" not in shown, result.output
        assert not (out / "a.jpg").exists()


def test_an_edited_mask_under_another_name_is_not_ignored_unseen(tmp_path, random_scratch_model):
    """Masks saved with --suffix _r (a_r_mask.png) and re-used without it, or renamed to _mask.PNG by an editor, were
    ignored and the detector ran instead, with nothing said."""
    photo = make_photo(tmp_path / "in" / "a.jpg")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(masks / "a_r_mask.png")
    result = invoke("restore", str(photo), "-o", str(tmp_path / "out"), "--masks", str(masks), "--report", str(tmp_path / "r.json"), *STAGES)
    assert result.exit_code == 0, result.output
    assert "1 mask file(s) in" in " ".join(result.output.split()) and "a_r_mask.png" in result.output
    (masks / "a_r_mask.png").rename(masks / "a_mask.PNG")
    result = invoke("restore", str(photo), "-o", str(tmp_path / "out2"), "--masks", str(masks), "--report", str(tmp_path / "r2.json"), *STAGES)
    assert result.exit_code == 0 and "match no photo" not in result.output, result.output
    assert json.loads((tmp_path / "r2.json").read_text())["images"][0]["mask_source"].endswith("a_mask.PNG")
    # Two masks of one photo: the PNG is used and the other named as a second mask (it was said to "match no photo").
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(masks / "a_mask.jpg")
    result = invoke("restore", str(photo), "-o", str(tmp_path / "out3"), "--masks", str(masks), "--report", str(tmp_path / "r3.json"), *STAGES)
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and "match no photo" not in shown and "1 photo(s) have a second mask file" in shown, result.output
    assert json.loads((tmp_path / "r3.json").read_text())["images"][0]["mask_source"].endswith("a_mask.PNG")
    # A mask under the --suffix name beside it is a second mask too (it was used by nobody and named by nothing), and
    # of a JPEG and a TIFF, the lossless TIFF is used (the JPEG was).
    (masks / "a_mask.jpg").rename(masks / "a_r_mask.png")
    result = invoke("restore", str(photo), "-o", str(tmp_path / "out4"), "--suffix", "_r", "--masks", str(masks), *STAGES)
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and "have a second mask file" in shown and "a_r_mask.png" in shown, result.output
    (masks / "a_r_mask.png").unlink()
    (masks / "a_mask.PNG").rename(masks / "a_mask.jpg")
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(masks / "a_mask.tif")
    result = invoke("restore", str(photo), "-o", str(tmp_path / "out5"), "--masks", str(masks), "--report", str(tmp_path / "r5.json"), *STAGES)
    assert result.exit_code == 0 and "have a second mask file" in " ".join(result.output.split()), result.output
    assert json.loads((tmp_path / "r5.json").read_text())["images"][0]["mask_source"].endswith("a_mask.tif")
    (masks / "a_mask.jpg").unlink()
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(masks / "a_mask.TIF", format="TIFF")  # another file on Linux
    result = invoke("restore", str(photo), "-o", str(tmp_path / "out6"), "--masks", str(masks), *STAGES)
    assert result.exit_code == 0 and "have a second mask file" in " ".join(result.output.split()), result.output


def test_face_crops_saved_inside_the_album_are_not_restored_again(tmp_path, random_face_model):
    """restore inplace -r -o inplace --suffix _r --save-faces inplace/faces, run twice, planned the first run's face
    crops as new photos."""
    album = tmp_path / "album"
    album.mkdir()
    Image.open(FACE_FIXTURE).save(album / "portrait.png")
    args = ("restore", str(album), "-r", "-o", str(album), "--suffix", "_r", "--save-faces", str(album / "faces"), *FACE_STAGES)
    assert invoke(*args).exit_code == 0
    crops = sorted((album / "faces").rglob("*.png"))
    assert crops
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert sorted((album / "faces").rglob("*.png")) == crops and not list(album.rglob("*_r_0_r.png"))


def test_weights_you_trained_are_used_with_weights_model_file(album, tmp_path, random_scratch_model):
    """A model trained with `oldphoto train` could not be used by restore (the registry's sha256 called it damaged).
    --weights MODEL=FILE loads it, strictly, names it in a note and records its file and sha256 in the report."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(123)
    state = random_scratch_model.build().state_dict()
    last_bias = [name for name in state if name.endswith("bias")][-1]
    state[last_bias] = torch.full_like(state[last_bias], 20.0)  # "trained" to mark every pixel: easy to tell apart
    trained = tmp_path / "runs" / "scratch-unet.safetensors"
    trained.parent.mkdir()
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(trained))
    photo = str(album / "a.jpg")

    def mask_of(out, *extra):
        result = invoke("restore", photo, "-o", str(out), "--save-mask", "--report", str(out) + ".json", *extra, *STAGES)
        assert result.exit_code == 0, result.output
        return result, np.asarray(Image.open(out / "a_mask.png")), json.loads(Path(str(out) + ".json").read_text())

    _, installed, _ = mask_of(tmp_path / "installed")
    result, own, report = mask_of(tmp_path / "own", "--weights", f"scratch-unet={trained}")
    assert f"using your own weights for scratch-unet: {trained}" in " ".join(result.output.split())
    assert not np.array_equal(own, installed)
    [record] = [m for m in report["images"][0]["models"] if m["name"] == "scratch-unet"]
    assert record["weights"] == str(trained) and record["sha256"] != random_scratch_model.sha256
    for bad in ("scratch-unet", "nosuchmodel=x.safetensors", f"scratch-unet={tmp_path / 'missing.safetensors'}"):
        result = invoke("restore", photo, "-o", str(tmp_path / "bad"), "--weights", bad, *STAGES)
        assert result.exit_code == 2 and "Traceback" not in result.output, (bad, result.output)


def test_a_missing_weights_file_names_its_stage_and_the_flag_that_skips_it(album, tmp_path, random_scratch_model, monkeypatch):
    import dataclasses

    from oldphoto import registry

    entries = dict(registry.REGISTRY)
    entries["scratch-unet"] = dataclasses.replace(entries["scratch-unet"], weights_file="not-installed.safetensors")
    monkeypatch.setattr(registry, "REGISTRY", entries)
    result = invoke("restore", str(album / "a.jpg"), "-o", str(tmp_path / "out"), *STAGES)
    shown = " ".join(result.output.split())
    assert result.exit_code == 2 and "the scratches stage" in shown and "skip the stage with --no-scratch" in shown, shown
