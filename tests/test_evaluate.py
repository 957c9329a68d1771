"""`oldphoto evaluate` on tiny sets."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from oldphoto.cli.app import app
from oldphoto.evaluation.metrics import MaskCounts
from oldphoto.evaluation.runner import MASK_SCORING_WHOLE, find_pairs, score_image, summarize
from oldphoto.imageio import load_rgb, save_rgb

from .conftest import smooth_image


@pytest.fixture
def tiny_set(tmp_path: Path) -> Path:
    root = tmp_path / "set"
    rng = np.random.default_rng(0)
    for i in range(2):
        clean = smooth_image(40, 56, seed=i)
        damaged = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1)
        mask = np.zeros((40, 56, 1), np.float32)
        mask[10:12, 5:50] = 1
        damaged[10:12, 5:50] = 1.0
        save_rgb(root / "clean" / f"p{i}.png", clean)
        save_rgb(root / "degraded" / f"p{i}.png", damaged)
        save_rgb(root / "mask" / f"p{i}.png", mask)
    return root


def test_clean_output_scores_max(tiny_set):
    pairs = find_pairs(tiny_set)
    perfect = {p.stem: load_rgb(p.clean) for p in pairs}

    def oracle_for(pair):
        return lambda image: (perfect[pair.stem], None)

    scores = [score_image("oracle", oracle_for(p), p)[0] for p in pairs]
    assert all(math.isinf(s.psnr) for s in scores)
    assert all(s.ssim == pytest.approx(1.0) for s in scores)


def test_identity_scores_what_the_metric_library_says(tiny_set, tmp_path):
    out = tmp_path / "summary.json"
    per_image = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "-m", "classical", "--json", str(out), "--csv", str(per_image), "--save", str(tmp_path / "saved")])
    assert result.exit_code == 0, result.output
    summary = {m["method"]: m for m in json.loads(out.read_text())["methods"]}
    expected = np.mean([
        peak_signal_noise_ratio(load_rgb(tiny_set / "clean" / f"p{i}.png"), load_rgb(tiny_set / "degraded" / f"p{i}.png"), data_range=1.0)
        for i in range(2)
    ])
    assert summary["identity"]["psnr"] == pytest.approx(expected, abs=1e-6)
    assert "f1" in summary["classical"] and 0 <= summary["classical"]["f1"] <= 1
    with per_image.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert (tmp_path / "saved" / "sheets" / "p0.jpg").exists()


def test_scratch_stage_by_model_name(tiny_set, random_scratch_model, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "scratch-unet", "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    method = json.loads((tmp_path / "s.json").read_text())["methods"][0]
    assert method["method"] == "scratch-unet" and "iou" in method


def test_scratch_threshold_reaches_the_pipeline_methods(tiny_set, random_scratch_model, tmp_path):
    def mask_scores(threshold: str) -> dict:
        out = tmp_path / f"t{threshold}.json"
        result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "scratch-unet", "--scratch-threshold", threshold, "--json", str(out)])
        assert result.exit_code == 0, result.output
        payload = json.loads(out.read_text())
        assert payload["scratch_threshold"] == float(threshold)
        return payload["methods"][0]

    # Near 0 every pixel is marked, whatever the random detector's probabilities: all damage found, and precision is
    # the damaged fraction (a 2 x 45 band in 40 x 56); near 1 (almost) nothing is.
    everything = mask_scores("0.0001")
    assert everything["recall"] == 1.0 and everything["precision"] == pytest.approx(90 / (40 * 56))
    assert mask_scores("0.9999")["recall"] < 1.0


def test_true_masks_feed_the_pipeline_the_pairs_damage(tiny_set, random_scratch_model, tmp_path):
    out = tmp_path / "true.json"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "-m", "scratch-unet", "--true-masks", "--json", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    summary = {m["method"]: m for m in payload["methods"]}
    assert payload["true_masks"] is True
    # Telea fills exactly the white band the masks mark; the random detector's own mask is neither used nor scored.
    assert summary["scratch-unet"]["psnr"] > summary["identity"]["psnr"] + 3
    assert "f1" not in summary["scratch-unet"]
    real = CliRunner().invoke(app, ["evaluate", "--real", str(tiny_set / "degraded"), "-m", "global", "--true-masks", "--save", str(tmp_path / "s")])
    assert real.exit_code == 2 and "--true-masks" in real.output


def test_unknown_method_lists_valid_models(tiny_set):
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "magic"])
    assert result.exit_code == 2
    assert "scratch-unet" in result.output


def test_real_folder_writes_contact_sheets(tiny_set, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--real", str(tiny_set / "degraded"), "-m", "tophat", "--save", str(tmp_path / "sheets")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "sheets" / "sheets").iterdir()) == ["p0.jpg", "p1.jpg"]


def test_summary_of_nothing():
    assert summarize("identity", []).images == 0


def test_global_and_ablation_methods(tiny_set, random_scratch_model, random_global_models, monkeypatch, weights_dir, tmp_path):
    from oldphoto import registry
    from oldphoto.archs.restore_unet import RestoreUNetConfig

    from .conftest import install_random_model

    install_random_model(monkeypatch, weights_dir, registry.ABLATION_MODEL, RestoreUNetConfig(channels=(4, 8, 16), bottleneck_blocks=1))
    out = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "global", "-m", "restore-unet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    methods = {m["method"]: m for m in json.loads(out.read_text())["methods"]}
    assert set(methods) == {"global", "restore-unet"}
    assert all(np.isfinite(m["psnr"]) and "f1" in m for m in methods.values())


def test_ignored_pixels_count_nowhere():
    truth = np.zeros((4, 10), np.float32)
    truth[:, :6] = 1  # columns 0-3 strong damage, 4-5 faint (don't-care)
    ignore = np.zeros_like(truth)
    ignore[:, 4:6] = 1
    predicted = np.zeros_like(truth)
    predicted[:, :4] = 1  # finds the strong damage only
    predicted[0, 8] = 1  # and one false hit
    plain = MaskCounts.of(predicted, truth)
    scored = MaskCounts.of(predicted, truth, ignore)
    assert (plain.tp, plain.fp, plain.fn) == (16, 1, 8)
    assert (scored.tp, scored.fp, scored.fn) == (16, 1, 0)
    assert scored.f1 == pytest.approx(32 / 33) and plain.f1 < 0.8
    # Marking the faint band is not a false hit either.
    assert MaskCounts.of(truth, truth, ignore) == MaskCounts(16, 0, 0)


@pytest.fixture(scope="module")
def degraded_set(tmp_path_factory) -> Path:
    """A set made by `oldphoto degrade` with the default preset (distractors, ignore/)."""
    root = tmp_path_factory.mktemp("made")
    for i in range(2):
        save_rgb(root / "src" / f"p{i}.png", smooth_image(72, 96, seed=i))
    result = CliRunner().invoke(app, ["degrade", str(root / "src"), "-o", str(root / "set"), "--count", "4", "--seed", "1"])
    assert result.exit_code == 0, result.output
    return root / "set"


def test_find_pairs_picks_up_ignore_and_distractor_masks(degraded_set, tiny_set):
    pairs = find_pairs(degraded_set)
    assert len(pairs) == 4 and all(p.ignore is not None and p.distractor is not None for p in pairs)
    assert all(p.ignore.parent.name == "ignore" and p.distractor.parent.name == "distractor" for p in pairs)
    # Masks given from elsewhere do not get the set's don't-care band.
    assert all(p.ignore is None for p in find_pairs(degraded_set, mask=degraded_set / "mask"))
    assert all(p.ignore is None and p.distractor is None for p in find_pairs(tiny_set))


def test_pooled_distractor_and_faint_scores(degraded_set):
    pairs = find_pairs(degraded_set)
    masks = {p.stem: load_rgb(p.mask)[:, :, 0] for p in pairs}
    distractors = {p.stem: load_rgb(p.distractor)[:, :, 0] for p in pairs}
    assert sum(d.sum() for d in distractors.values()) > 0

    def predicting(masks_by_stem, pair):
        return lambda image: (image, masks_by_stem[pair.stem])

    truth = summarize("truth", [score_image("truth", predicting(masks, p), p)[0] for p in pairs])
    assert truth.mask.f1 == 1.0 and truth.faint_recall == 1.0 and truth.distractor_marked == 0.0
    faint = sum(load_rgb(p.ignore)[:, :, 0].sum() for p in pairs) / sum(m.sum() for m in masks.values())
    assert truth.faint_share == pytest.approx(faint)
    fooled = summarize("fooled", [score_image("fooled", predicting(distractors, p), p)[0] for p in pairs])
    assert fooled.distractor_marked == 1.0


def test_evaluate_reports_distractors_and_the_mask_definition(degraded_set, tiny_set, tmp_path):
    out = tmp_path / "made.json"
    result = CliRunner().invoke(app, ["evaluate", str(degraded_set), "-m", "identity", "-m", "tophat", "--json", str(out), "--csv", str(tmp_path / "s.csv")])
    assert result.exit_code == 0, result.output
    assert "distractors marked" in result.output and "41/255" in result.output
    payload = json.loads(out.read_text())
    assert payload["mask_definition"].startswith("scored: change >= 41/255 levels after the scan; 20-41 levels don't-care")
    methods = {m["method"]: m for m in payload["methods"]}
    assert 0.0 <= methods["tophat"]["distractor_marked"] <= 1.0 and methods["tophat"]["distractor_pixels"] > 0
    assert 0.0 < methods["tophat"]["faint_share"] < 1.0 and 0.0 <= methods["tophat"]["faint_recall"] <= 1.0
    assert "distractor_marked" not in methods["identity"]  # no mask predicted, nothing to mark
    # An older set without ignore/ is scored as before, and says so; no distractor column without distractors.
    old = tmp_path / "old.json"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "tophat", "--json", str(old)])
    assert result.exit_code == 0, result.output
    assert "distractors marked" not in result.output
    payload = json.loads(old.read_text())
    assert payload["mask_definition"] == MASK_SCORING_WHOLE and "faint_share" not in payload["methods"][0]


def test_quiet_hides_the_scoring_note_not_the_scores(tiny_set):
    loud = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "classical"])
    assert loud.exit_code == 0, loud.output
    assert "note: mask scoring" in loud.output
    quiet = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "classical", "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert "note:" not in quiet.output and "classical" in quiet.output
