"""`oldphoto evaluate` on tiny sets."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from oldphoto.cli.app import app
from oldphoto.evaluation.metrics import MaskCounts, psnr
from oldphoto.evaluation.runner import MASK_SCORING_WHOLE, find_pairs, score_image, summarize
from oldphoto.imageio import load_rgb, save_rgb
from oldphoto.restore.classical import classical_restore

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
    # The classical baseline's figures are those of its own restoration and top-hat mask, pooled over the pairs.
    restored = {i: classical_restore(load_rgb(tiny_set / "degraded" / f"p{i}.png")) for i in range(2)}
    counts = [MaskCounts.of(restored[i][1], load_rgb(tiny_set / "mask" / f"p{i}.png")[:, :, 0]) for i in range(2)]
    assert summary["classical"]["f1"] == pytest.approx((counts[0] + counts[1]).f1)
    assert summary["classical"]["psnr"] == pytest.approx(np.mean([psnr(load_rgb(tiny_set / "clean" / f"p{i}.png"), restored[i][0]) for i in range(2)]))
    with per_image.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    by_method = {(row["method"], row["stem"]): row for row in rows}
    assert [int(by_method["classical", f"p{i}"]["tp"]) for i in range(2)] == [c.tp for c in counts]
    # The sheet: the degraded photo, then each method's output (and mask), side by side (within JPEG error).
    sheet = load_rgb(tmp_path / "saved" / "sheets" / "p0.jpg")
    degraded = load_rgb(tiny_set / "degraded" / "p0.png")
    panels = [degraded, degraded, load_rgb(tmp_path / "saved" / "classical" / "p0.png"), load_rgb(tmp_path / "saved" / "classical" / "masks" / "p0.png")]
    assert sheet.shape == (40, 4 * 56, 3)
    for k, panel in enumerate(panels):
        assert np.abs(sheet[:, 56 * k : 56 * (k + 1)] - panel).mean() < 6 / 255, k
    assert np.array_equal(load_rgb(tmp_path / "saved" / "classical" / "p0.png"), np.clip(np.rint(restored[0][0] * 255), 0, 255) / np.float32(255))



def test_a_scores_file_where_save_makes_a_folder_is_refused_before_the_work(tiny_set, tmp_path):
    """`evaluate SET --save sv --json sv/identity` scored every pair, then could not write the scores: sv/identity
    had become the folder of the saved outputs."""
    saved = tmp_path / "sv"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--save", str(saved), "--json", str(saved / "identity")])
    assert result.exit_code == 2 and "is a folder this run writes its outputs into" in " ".join(result.output.split()), result.output
    assert not saved.exists()
    # --true-masks on pairs without masks: every pair failed in turn after the warm-up (exit 1); refused now.
    unmasked = tmp_path / "unmasked"
    for part in ("degraded", "clean"):
        shutil.copytree(tiny_set / part, unmasked / part)
    result = CliRunner().invoke(app, ["evaluate", "--degraded", str(unmasked / "degraded"), "--clean", str(unmasked / "clean"), "-m", "global", "--true-masks"])
    assert result.exit_code == 2 and "--true-masks needs the true damage mask of every pair" in " ".join(result.output.split()), result.output
    for option in ("--json", "--csv"):
        result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", option, f"{tmp_path / 'scores'}/"])
        assert result.exit_code == 2 and "names a folder" in " ".join(result.output.split()), result.output
        assert not (tmp_path / "scores").exists()

def pipeline_on_pairs(root: Path, options) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(restored, mask) of ``restore`` with ``options`` on each degraded photo of a tiny set, in stem order."""
    from oldphoto.restore.pipeline import Restorer
    from oldphoto.runtime import make_runtime

    restorer = Restorer(make_runtime("cpu", precision="fp32"), options)
    results = [restorer.restore(load_rgb(path)) for path in sorted((root / "degraded").iterdir())]
    return [(result.pixels, result.mask) for result in results]


def test_scratch_stage_by_model_name(tiny_set, random_scratch_model, tmp_path):
    from oldphoto.restore.pipeline import RestoreOptions

    # Threshold 0.5: the random detector's probabilities are 0.31-0.51, so it marks about a tenth of each photo.
    args = ["evaluate", str(tiny_set), "-m", "scratch-unet", "--scratch-threshold", "0.5", "--precision", "fp32"]
    result = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    method = json.loads((tmp_path / "s.json").read_text())["methods"][0]
    assert method["method"] == "scratch-unet"
    # The scores are those of `restore --no-global --no-faces`: its detected masks and Telea's fill.
    runs = pipeline_on_pairs(tiny_set, RestoreOptions(global_restoration=False, faces=False, scratch_threshold=0.5))
    truths = [load_rgb(tiny_set / "mask" / f"p{i}.png")[:, :, 0] for i in range(2)]
    counts = MaskCounts.of(runs[0][1], truths[0]) + MaskCounts.of(runs[1][1], truths[1])
    assert counts.tp + counts.fp > 100  # a mask to score
    assert (method["iou"], method["f1"]) == pytest.approx((counts.iou, counts.f1))
    assert method["psnr"] == pytest.approx(np.mean([psnr(load_rgb(tiny_set / "clean" / f"p{i}.png"), runs[i][0]) for i in range(2)]))


def test_a_pair_of_two_sizes_is_named_in_width_x_height(tmp_path):
    """It said "clean (90, 100) and degraded (90, 120) sizes differ": (H, W) tuples, the second the restored image's."""
    save_rgb(tmp_path / "d" / "a.png", smooth_image(90, 120, seed=1))
    save_rgb(tmp_path / "c" / "a.png", smooth_image(90, 100, seed=1))
    result = CliRunner().invoke(app, ["evaluate", "--degraded", str(tmp_path / "d"), "--clean", str(tmp_path / "c"), "-m", "identity"])
    shown = " ".join(result.output.split())
    assert result.exit_code == 1 and "the clean photo is 100x90 and the degraded 120x90" in shown, result.output


def test_a_scratch_threshold_out_of_range_is_refused_whatever_the_methods(tiny_set, tmp_path):
    """With -m identity, --scratch-threshold 1.5 was accepted and written to the JSON as the run's setting."""
    out = tmp_path / "t.json"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--scratch-threshold", "1.5", "--json", str(out)])
    assert result.exit_code == 2 and "between 0 and 1" in result.output and not out.exists(), result.output
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--scratch-threshold", "0.5"])
    assert result.exit_code == 0 and "does nothing here" in " ".join(result.output.split()), result.output


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


def test_no_scratch_verify_reaches_the_pipeline_methods(tiny_set, random_scratch_model, monkeypatch, weights_dir, tmp_path):
    from .conftest import install_keep_all_verifier

    install_keep_all_verifier(monkeypatch, weights_dir, logit=-30.0)  # a verifier that drops every mark

    def recall(*flags: str) -> float:
        out = tmp_path / f"v{len(flags)}.json"
        args = ["evaluate", str(tiny_set), "-m", "scratch-unet", "--scratch-threshold", "0.0001", *flags, "--json", str(out)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        payload = json.loads(out.read_text())
        assert payload["scratch_verify"] is not bool(flags)
        return payload["methods"][0]["recall"]

    assert recall() == 0.0
    assert recall("--no-scratch-verify") == 1.0


def test_global_strength_reaches_the_pipeline_methods(tiny_set, random_scratch_model, random_global_models, tmp_path):
    """At strength 0 the global method returns each pair's degraded photo wherever nothing was marked; the JSON
    records the setting, and a run without a global method says it does nothing."""

    def scores(*flags: str) -> dict:
        out = tmp_path / f"g{len(flags)}.json"
        args = ["evaluate", str(tiny_set), "-m", "global", "-m", "identity", "--scratch-threshold", "0.9999", *flags, "--json", str(out)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())

    full, kept = scores(), scores("--global-strength", "0")
    assert full["global_strength"] == 1.0 and kept["global_strength"] == 0.0
    by_name = {name: {m["method"]: m for m in payload["methods"]} for name, payload in (("full", full), ("kept", kept))}
    assert by_name["kept"]["global"]["psnr"] == pytest.approx(by_name["kept"]["identity"]["psnr"], abs=1e-3)
    assert abs(by_name["full"]["global"]["psnr"] - by_name["full"]["identity"]["psnr"]) > 0.1
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--global-strength", "0.5"])
    assert result.exit_code == 0 and "does nothing here" in " ".join(result.output.split()), result.output
    # With the pairs' true masks the band is repaired at every strength: strength 0 keeps the rest of each photo as
    # degraded, and lies between the identity and the full stage.
    repaired = scores("--true-masks", "--global-strength", "0")
    psnr_of = {m["method"]: m["psnr"] for m in repaired["methods"]}
    full_repair = {m["method"]: m["psnr"] for m in scores("--true-masks")["methods"]}
    assert psnr_of["global"] != pytest.approx(psnr_of["identity"], abs=1e-3)
    assert psnr_of["global"] != pytest.approx(full_repair["global"], abs=1e-3)


def test_naming_a_sets_own_masks_scores_it_as_the_set_alone(tmp_path):
    """`evaluate SET --mask SET/mask` dropped the set's ignore/ band: other scores, and a JSON saying the set had none.
    `evaluate SET --clean SET/clean` said the stems do not match (they do: SET was read as a flat folder)."""
    photos = tmp_path / "photos"
    for i in range(2):
        save_rgb(photos / f"p{i}.png", smooth_image(64, 80, seed=i))
    result = CliRunner().invoke(app, ["degrade", str(photos), "-o", str(tmp_path / "set"), "--preset", "bopbtl-v1", "--seed", "1"])
    assert result.exit_code == 0 and (tmp_path / "set" / "ignore").is_dir(), result.output

    def scores(*flags: str, named: tuple[str, ...] = (str(tmp_path / "set"),)) -> dict:
        out = tmp_path / f"s{len(flags)}.json"
        result = CliRunner().invoke(app, ["evaluate", *named, "-m", "tophat", *flags, "--json", str(out)])
        assert result.exit_code == 0, result.output
        payload = json.loads(out.read_text())
        return {"definition": payload["mask_definition"], **{k: payload["methods"][0][k] for k in ("precision", "recall", "faint_share")}}

    assert scores("--mask", str(tmp_path / "set" / "mask")) == scores()
    # ... and so does the set named part by part (its ignore/ band was dropped there too).
    parts = [f"--{part}" if i % 2 == 0 else str(tmp_path / "set" / part) for part in ("degraded", "clean", "mask") for i in range(2)]
    assert scores(named=tuple(parts)) == scores()
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "set"), "--clean", str(tmp_path / "set" / "clean"), "-m", "identity"])
    shown = " ".join(result.output.split())
    assert result.exit_code != 0 and "is a set made by oldphoto degrade" in shown and "--degraded" in shown, result.output


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


def test_a_set_whose_degrade_run_did_not_finish_is_said(tiny_set):
    """A set left by a killed degrade (its pending mark, no manifest) was scored as if whole, without a word."""
    from oldphoto.inputs import PENDING_SET

    (tiny_set / PENDING_SET).write_text('{"stems": ["p0", "p1", "p2"]}\n')
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity"])
    assert result.exit_code == 0 and "did not finish" in " ".join(result.output.split()), result.output
    (tiny_set / PENDING_SET).unlink()
    assert "did not finish" not in CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity"]).output


def test_unknown_method_lists_valid_models(tiny_set):
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "magic"])
    assert result.exit_code == 2
    assert "scratch-unet" in result.output


def test_real_folder_writes_contact_sheets(tiny_set, tmp_path):
    from oldphoto.restore.classical import inpaint_telea, tophat_scratch_mask

    result = CliRunner().invoke(app, ["evaluate", "--real", str(tiny_set / "degraded"), "-m", "tophat", "--save", str(tmp_path / "sheets")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "sheets" / "sheets").iterdir()) == ["p0.jpg", "p1.jpg"]
    # Each sheet: the photo | the top-hat repair | the top-hat mask (within the sheet's JPEG error).
    for i in range(2):
        photo = load_rgb(tiny_set / "degraded" / f"p{i}.png")
        mask = tophat_scratch_mask(photo)
        assert mask.any()
        sheet = load_rgb(tmp_path / "sheets" / "sheets" / f"p{i}.jpg")
        assert sheet.shape == (40, 3 * 56, 3)
        for k, panel in enumerate((photo, inpaint_telea(photo, mask), np.repeat(mask[:, :, None], 3, axis=2))):
            assert np.abs(sheet[:, 56 * k : 56 * (k + 1)] - panel).mean() < 6 / 255, (i, k)


def test_summary_of_nothing():
    summary = summarize("identity", [])
    # A speed of 0 s/MP and 0 MB read as a method infinitely fast: nothing was measured, as PSNR says.
    assert summary.images == 0 and summary.as_dict()["seconds_per_mp"] is None and summary.as_dict()["peak_mb"] is None


def test_evaluate_says_what_is_wrong_with_its_folder_and_its_options(tiny_set, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nonexist")])
    assert result.exit_code == 2 and "nonexist: no such folder" in " ".join(result.output.split()), result.output
    # --true-masks with methods that detect nothing did nothing without a word, and the JSON recorded it as used.
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "classical", "--true-masks"])
    assert result.exit_code == 0 and "--true-masks does nothing here" in " ".join(result.output.split()), result.output
    # --help names --fp16 as an alias of --precision fp16: it was "No such option".
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--fp16", "--precision", "bf16"])
    assert result.exit_code == 2 and "--fp16 means --precision fp16 and conflicts with --precision bf16" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--fp16", "--device", "cpu"])
    words = " ".join(result.output.split())
    # Taken as --precision fp16 (which a CPU refuses, as for restore), not as an unknown option.
    assert result.exit_code == 2 and "--fp16 is deprecated" in words and "--precision fp16 needs a CUDA or MPS device" in words, result.output


def test_global_and_ablation_methods(tiny_set, random_scratch_model, random_global_models, monkeypatch, weights_dir, tmp_path):
    from oldphoto import registry
    from oldphoto.archs.restore_unet import RestoreUNetConfig

    from .conftest import install_random_model

    install_random_model(monkeypatch, weights_dir, registry.RESTORE_UNET_MODEL, RestoreUNetConfig(channels=(4, 8, 16), bottleneck_blocks=1))
    out = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "global", "-m", "restore-unet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    methods = {m["method"]: m for m in json.loads(out.read_text())["methods"]}
    assert set(methods) == {"global", "restore-unet"}
    assert all(np.isfinite(m["psnr"]) and "f1" in m for m in methods.values())
    # Each is scored on what `restore` makes with that global model (and no face stage).
    from oldphoto.restore.pipeline import RestoreOptions

    clean = [load_rgb(tiny_set / "clean" / f"p{i}.png") for i in range(2)]
    for name, options in (("global", RestoreOptions(faces=False)), ("restore-unet", RestoreOptions(faces=False, global_model="restore-unet"))):
        runs = pipeline_on_pairs(tiny_set, options)
        assert methods[name]["psnr"] == pytest.approx(np.mean([psnr(clean[i], runs[i][0]) for i in range(2)]), abs=1e-4), name
    assert abs(methods["global"]["psnr"] - methods["restore-unet"]["psnr"]) > 1e-3  # two different networks


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


def test_find_pairs_picks_up_ignore_and_distractor_masks(degraded_set, tiny_set, tmp_path):
    import shutil

    pairs = find_pairs(degraded_set)
    assert len(pairs) == 4 and all(p.ignore is not None and p.distractor is not None for p in pairs)
    assert all(p.ignore.parent.name == "ignore" and p.distractor.parent.name == "distractor" for p in pairs)
    # Masks given from elsewhere do not get the set's don't-care band; the set's own mask/ named is not elsewhere.
    elsewhere = shutil.copytree(degraded_set / "mask", tmp_path / "my-masks")
    assert all(p.ignore is None for p in find_pairs(degraded_set, mask=elsewhere))
    assert all(p.ignore is not None for p in find_pairs(degraded_set, mask=degraded_set / "mask"))
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


def test_the_table_never_cuts_a_figure_or_a_method_name(degraded_set, tmp_path, monkeypatch):
    """Rich fits tables to 80 columns when the output is a file or a pipe (a log, CI), cutting cells to "0.74…"
    (eleven columns with a set's distractors): every figure and method name must come out whole."""
    from oldphoto.cli import evaluate as evaluate_command

    log = Console(width=80, color_system=None, file=io.StringIO())
    monkeypatch.setattr(evaluate_command, "console", log)
    out = tmp_path / "scores.json"
    methods = ["identity", "classical", "tophat"]
    result = CliRunner().invoke(app, ["evaluate", str(degraded_set), *(arg for m in methods for arg in ("-m", m)), "--json", str(out)])
    assert result.exit_code == 0, result.output
    printed = log.file.getvalue()
    assert "…" not in printed and log.width == 80
    for method in json.loads(out.read_text())["methods"]:
        row = next(line for line in printed.splitlines() if f" {method['method']} " in line)
        assert f"{method['psnr']:.2f}" in row and f"{method['ssim']:.4f}" in row
        if "f1" in method:
            assert f"{method['f1']:.3f}" in row and f"{method['precision']:.3f}" in row


def test_a_terminal_too_narrow_for_the_table_wraps_cells_instead_of_cutting_them(tiny_set, monkeypatch):
    from oldphoto.cli import evaluate as evaluate_command

    narrow = Console(width=60, force_terminal=True, color_system=None, file=io.StringIO())
    monkeypatch.setattr(evaluate_command, "console", narrow)
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "classical", "-m", "tophat"])
    assert result.exit_code == 0, result.output
    printed = narrow.file.getvalue()
    assert "┃" in printed and "…" not in printed
    assert max(len(line) for line in printed.splitlines()) <= 60


def test_score_files_that_would_replace_a_photo_or_cannot_be_written_are_refused_before_scoring(tiny_set, tmp_path):
    """--csv / --json replaced any file given (a photo given by mistake became CSV text), and a path that could not
    be written crashed after all the scoring. Both are refused before any work now; earlier score files are replaced."""
    photo = tiny_set / "clean" / "p0.png"
    before = photo.read_bytes()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    # JSON that is not a summary of scores (a settings file; a degraded set's manifest) was replaced too.
    settings = tmp_path / "settings.json"
    settings.write_text('{"my": "settings"}')
    targets = [("--csv", photo), ("--json", photo), ("--csv", notes), ("--json", notes), ("--json", settings)]
    for option, target in [*targets, ("--csv", blocker / "s.csv"), ("--json", tmp_path)]:
        result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", option, str(target)])
        assert result.exit_code == 2 and option in result.output, (option, target, result.output)
        assert "Traceback" not in result.output
    assert photo.read_bytes() == before and notes.read_text() == "my notes" and settings.read_text() == '{"my": "settings"}'
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--save", str(blocker)])
    assert result.exit_code == 2 and "--save" in result.output
    # --save's <method>/ folder is the folder being scored: its photos were replaced by the restorations.
    real = tmp_path / "scans" / "classical"
    real.mkdir(parents=True)
    (real / "p0.png").write_bytes(before)
    result = CliRunner().invoke(app, ["evaluate", "--real", str(real), "-m", "classical", "--save", str(real.parent)])
    assert result.exit_code == 2 and "one of the files being scored" in " ".join(result.output.split()), result.output
    assert (real / "p0.png").read_bytes() == before
    # A file of the user's where --save writes (mine/identity/p0.png) was replaced without a word; a re-run replaces
    # only what evaluate wrote there, and --json / --csv may not name a file --save writes.
    mine = tmp_path / "mine"
    (mine / "identity").mkdir(parents=True)
    (mine / "identity" / "p0.png").write_bytes(before)
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--save", str(mine)])
    assert result.exit_code == 2 and "the folder has no saved-files.json" in " ".join(result.output.split()), result.output
    assert (mine / "identity" / "p0.png").read_bytes() == before
    for _ in range(2):
        result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--save", str(tmp_path / "ours")])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--save", str(tmp_path / "ours"), "--json", str(tmp_path / "ours" / "identity" / "p0.png")])
    assert result.exit_code == 2 and "one of this run's outputs" in " ".join(result.output.split()), result.output
    # Its list may not be named by --json, and a list that is not its own is one error line.
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--save", str(tmp_path / "ours"), "--json", str(tmp_path / "ours" / "saved-files.json")])
    assert result.exit_code == 2 and "one of this run's outputs" in " ".join(result.output.split()), result.output
    for text in ("", '{"files": 5}', '{"files": [1]}', "[]"):
        (tmp_path / "ours" / "saved-files.json").write_text(text)
        result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--save", str(tmp_path / "ours")])
        assert result.exit_code == 2 and "that evaluate did not write" in result.output and "Traceback" not in result.output, (text, result.output)
    scores, summary = tmp_path / "s.csv", tmp_path / "s.json"
    for _ in range(2):  # a re-run replaces its own files
        result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--csv", str(scores), "--json", str(summary)])
        assert result.exit_code == 0, result.output
    assert scores.read_text().startswith("method,stem") and json.loads(summary.read_text())["methods"]


def test_a_mask_of_the_wrong_size_fails_its_pair_with_one_line(tiny_set, tmp_path):
    save_rgb(tiny_set / "mask" / "p1.png", np.zeros((10, 10, 1), np.float32))
    out = tmp_path / "s.csv"
    for extra in ([], ["--true-masks"]):
        result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "tophat", "-m", "classical", *extra, "--csv", str(out)])
        assert result.exit_code == 1, result.output
        assert "p1.png: the mask is 10x10 but its photo 56x40" in " ".join(result.output.split())
        assert "Traceback" not in result.output and out.exists()


def test_a_plain_folder_is_not_taken_for_a_set_and_the_threshold_help_says_what_is_refused(tmp_path):
    """A folder of photos given as DATASET was scored against nothing: every figure "-", exit 0."""
    save_rgb(tmp_path / "photos" / "a.png", smooth_image(20, 20))
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "photos"), "-m", "identity"])
    assert result.exit_code == 2 and "not a set made by oldphoto degrade" in " ".join(result.output.split())
    # --scratch-threshold refuses 0 and 1, so its help must not show them as allowed.
    for command in ("restore", "evaluate"):
        shown = CliRunner().invoke(app, [command, "--help"], terminal_width=240).output
        line = next(line for line in shown.splitlines() if "--scratch-threshold" in line)
        assert "0.0<=x<=1.0" not in line and "strictly between 0 and 1" in " ".join(shown.split())


def test_masks_given_for_only_some_pairs_are_said(tiny_set, tmp_path):
    masks = tmp_path / "masks"
    save_rgb(masks / "p0.png", np.zeros((40, 56, 1), np.float32))
    result = CliRunner().invoke(app, ["evaluate", "--degraded", str(tiny_set / "degraded"), "--clean", str(tiny_set / "clean"), "--mask", str(masks), "-m", "tophat"])
    assert result.exit_code == 0, result.output
    assert "1 of 2 pairs have no mask" in " ".join(result.output.split())


def test_evaluate_keeps_the_scores_when_stopped_and_refuses_missing_folders(tiny_set, tmp_path, monkeypatch):
    """Ctrl-C, or --save on a full disk, threw away every score (no CSV, no JSON); a missing clean/ folder gave a
    traceback; a wide pair's contact sheet could not be written (over a JPEG's 65,500 px)."""
    import oldphoto.cli.evaluate as evaluate_command

    real_score, calls = evaluate_command.score_image, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # after the warm-up and the first pair
            raise KeyboardInterrupt
        return real_score(*args, **kwargs)

    monkeypatch.setattr(evaluate_command, "score_image", interrupted)
    out = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--json", str(out)])
    assert result.exit_code == 130 and "interrupted" in result.output, result.output
    payload = json.loads(out.read_text())
    assert payload["stopped"] == "interrupted" and payload["methods"][0]["images"] == 1
    # Stopped before any pair was scored: an earlier run's complete scores there were replaced by empty ones.
    complete = out.read_text()
    calls.clear()
    calls.append(1)  # the next call (the warm-up) is interrupted
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--json", str(out)])
    assert result.exit_code == 130 and out.read_text() == complete, result.output
    monkeypatch.setattr(evaluate_command, "score_image", real_score)

    import shutil

    broken = tmp_path / "noclean"
    shutil.copytree(tiny_set, broken)
    shutil.rmtree(broken / "clean")
    result = CliRunner().invoke(app, ["evaluate", str(broken), "-m", "identity"])
    assert result.exit_code == 2 and "clean: no such folder" in result.output and "Traceback" not in result.output

    wide = np.stack([evaluate_command._sheet([np.zeros((24, 11_000, 3), np.float32)] * 4)])[0]
    assert max(wide.shape[:2]) <= evaluate_command.SHEET_MAX_SIDE


def test_a_method_named_twice_is_scored_once_and_real_is_given_alone(tiny_set, tmp_path):
    out = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "-m", "identity", "--json", str(out)])
    assert result.exit_code == 0 and [m["method"] for m in json.loads(out.read_text())["methods"]] == ["identity"]
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "--real", str(tiny_set / "degraded"), "--save", str(tmp_path / "s")])
    assert result.exit_code == 2 and "--real scores photos without targets" in " ".join(result.output.split())


def test_a_save_folder_that_fills_up_stops_the_run_and_keeps_the_scores(tiny_set, tmp_path, monkeypatch):
    import oldphoto.cli.evaluate as evaluate_command
    from oldphoto.errors import ImageWriteError

    def full(path, pixels):
        raise ImageWriteError(f"{path}: cannot write (No space left on device)")

    monkeypatch.setattr(evaluate_command, "save_rgb", full)
    out = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity", "--save", str(tmp_path / "saved"), "--json", str(out)])
    assert result.exit_code == 1 and "cannot write --save outputs" in " ".join(result.output.split()), result.output
    payload = json.loads(out.read_text())
    assert payload["stopped"].startswith("cannot write --save outputs") and payload["methods"][0]["images"] == 1


def test_photos_it_cannot_score_as_the_others_are_named(tiny_set, tmp_path):
    """Two photos of one name (scan.jpg, scan.png) were scored as one without a word, and a set whose mask/ lacked
    one pair's mask scored the masks over fewer photos than the table's "images" column showed."""
    real = tmp_path / "real"
    for name in ("scan.jpg", "scan.png"):
        save_rgb(real / name, smooth_image(24, 32, seed=1))
    result = CliRunner().invoke(app, ["evaluate", "--real", str(real), "-m", "identity", "--save", str(tmp_path / "saved")])
    assert result.exit_code == 0, result.output
    assert "scan.jpg and scan.png share a name" in " ".join(result.output.split())
    # A photo named like another's predicted mask (carnival, carnival_mask) overwrote it: masks have a folder of their own.
    names = tmp_path / "names"
    for name in ("carnival.png", "carnival_mask.png"):
        save_rgb(names / name, smooth_image(24, 32, seed=len(name)))
    result = CliRunner().invoke(app, ["evaluate", "--real", str(names), "-m", "classical", "--save", str(tmp_path / "saved2")])
    assert result.exit_code == 0, result.output
    saved = tmp_path / "saved2" / "classical"
    assert sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*.png")) == ["carnival.png", "carnival_mask.png", "masks/carnival.png", "masks/carnival_mask.png"]
    (tiny_set / "mask" / "p1.png").unlink()
    result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "identity"])
    assert result.exit_code == 0 and "1 of 2 pairs have no mask (e.g. p1)" in " ".join(result.output.split()), result.output


def test_a_true_mask_on_a_transparent_layer_scores_as_restore_reads_it(tiny_set, tmp_path):
    """White strokes on a layer whose hidden pixels are white too: evaluate dropped the alpha and scored the whole
    photo as damage (F1 0.09 against 1.0 for the same mask as a grey image); restore --masks read it right."""
    import json

    from PIL import Image

    scores = []
    for name, layered in (("grey", False), ("layer", True)):
        if layered:
            for i in range(2):
                rgba = np.full((40, 56, 4), 255, np.uint8)
                rgba[..., 3] = 0
                rgba[10:12, 5:50, 3] = 255
                Image.fromarray(rgba, "RGBA").save(tiny_set / "mask" / f"p{i}.png")
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(app, ["evaluate", str(tiny_set), "-m", "tophat", "--json", str(out)])
        assert result.exit_code == 0, result.output
        (method,) = json.loads(out.read_text())["methods"]
        scores.append((method["precision"], method["recall"], method["f1"]))
    assert scores[0] == scores[1]


def test_pairs_in_sub_folders_are_said_left_out_and_paired_by_path_with_recursive(tmp_path):
    """Pairs kept by year (degraded/1910/a.png, clean/1910/a.png) were left out without a word, and a folder of
    sub-folders alone failed with "no file stems match". With --recursive they pair by their path below each folder,
    the same name in two sub-folders stays two pairs, and --save keeps the sub-folders."""
    rng = np.random.default_rng(0)
    for year in ("1910", "1920"):
        clean = smooth_image(24, 32, seed=int(year))
        save_rgb(tmp_path / "clean" / year / "a.png", clean)
        save_rgb(tmp_path / "degraded" / year / "a.png", np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1))
    save_rgb(tmp_path / "degraded" / ".thumbnails" / "a.png", smooth_image(24, 32, seed=0))  # never a pair
    args = ["evaluate", "--degraded", str(tmp_path / "degraded"), "--clean", str(tmp_path / "clean"), "-m", "identity"]
    result = CliRunner().invoke(app, args)
    shown = " ".join(result.output.split())
    assert result.exit_code == 2 and "4 image(s) in sub-folders" in shown and "add --recursive" in shown, result.output
    assert shown.count("in sub-folders are left out") == 1  # one warning for both folders
    result = CliRunner().invoke(app, [*args, "-r", "--json", str(tmp_path / "s.json"), "--save", str(tmp_path / "saved")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text())["pairs"] == 2
    saved = tmp_path / "saved" / "identity"
    assert sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*.png")) == ["1910/a.png", "1920/a.png"]
    assert [pair.stem for pair in find_pairs(tmp_path / "degraded", tmp_path / "clean", recursive=True)] == ["1910/a", "1920/a"]
    # A sub-folder named like --save's own masks/ folder would have its pair saved over another's mask: refused.
    for part in ("clean", "degraded"):
        save_rgb(tmp_path / part / "a.png", smooth_image(24, 32, seed=1))
        save_rgb(tmp_path / part / "masks" / "a.png", smooth_image(24, 32, seed=2))
    result = CliRunner().invoke(app, [*args, "-m", "classical", "-r", "--save", str(tmp_path / "saved2")])
    assert result.exit_code == 2 and "twice" in " ".join(result.output.split()), result.output
    # A linked folder is not followed by -r (as restore -r), and said; without -r it is not counted as left out.
    elsewhere = tmp_path / "elsewhere"
    save_rgb(elsewhere / "b.png", smooth_image(24, 32, seed=4))
    (tmp_path / "real").mkdir()
    save_rgb(tmp_path / "real" / "a.png", smooth_image(24, 32, seed=5))
    (tmp_path / "real" / "link").symlink_to(elsewhere, target_is_directory=True)
    result = CliRunner().invoke(app, ["evaluate", "--real", str(tmp_path / "real"), "-m", "identity", "--save", str(tmp_path / "real" / "eval")])
    assert result.exit_code == 0 and "sub-folders" not in " ".join(result.output.split()), result.output
    # ... and -r leaves out what an earlier run saved below the photos (it was read as photos, one level deeper each run).
    result = CliRunner().invoke(app, ["evaluate", "--real", str(tmp_path / "real"), "-r", "-m", "identity", "--save", str(tmp_path / "real" / "eval")])
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and "did not follow 1 link(s)" in shown and "left out 2 image(s) that an earlier evaluate --save wrote" in shown, result.output
    # --save the photos' own folder: the photos are scored each time (all were left out as "results"), the results not.
    save_rgb(tmp_path / "own" / "a.png", smooth_image(24, 32, seed=6))
    for run in range(2):
        out = tmp_path / f"own{run}.json"
        result = CliRunner().invoke(app, ["evaluate", "--real", str(tmp_path / "own"), "-r", "-m", "identity", "--save", str(tmp_path / "own"), "--json", str(out)])
        assert result.exit_code == 0 and json.loads(out.read_text())["pairs"] == 1, result.output
    assert "left out 2 image(s) that an earlier evaluate --save wrote" in " ".join(result.output.split())
    assert sorted(p.relative_to(tmp_path / "real" / "eval").as_posix() for p in (tmp_path / "real" / "eval").rglob("*.*")) == ["identity/a.png", "saved-files.json", "sheets/a.jpg"]
