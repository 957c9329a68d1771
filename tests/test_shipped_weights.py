"""The shipped weights load, verify, and actually help on a fixed synthetic sample."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from oldphoto.evaluation.metrics import MaskCounts, psnr
from oldphoto.evaluation.runner import classical, tophat
from oldphoto.imageio import load_rgb
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.restore.classical import tophat_scratch_mask
from oldphoto.restore.pipeline import RestoreOptions, Restorer
from oldphoto.restore.scratches import load_scratch_detection, scratch_probability
from oldphoto.runtime import make_runtime
from oldphoto.weights import load_model, load_network

from .conftest import smooth_image, wavy_scratch_mask


def scratched_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean, damaged, mask): a smooth photo-like image with two drawn scratches (one bright, one dark).

    Both bend, as scratches do: the detection takes a ruler-straight slanted line for a scene object (a rail, a rod)
    and keeps it only from a verifier score of 0.8 (:class:`~oldphoto.restore.scratches.StraightLineRule`); the dark
    scratch drawn as two straight segments scored 0.60 and 0.63 and was left."""
    clean = cv2.GaussianBlur(smooth_image(160, 200, seed=5), (0, 0), 1.0)
    mask = np.zeros((160, 200), np.uint8)
    cv2.polylines(mask, [np.array([[10, 20], [60, 70], [120, 95], [190, 150]], np.int32)], False, 255, 2, cv2.LINE_AA)
    dark = np.zeros_like(mask)
    along = np.linspace(0.0, 1.0, 40)[:, None]  # a quadratic Bezier curve from (30, 150) to (170, 10)
    bowed = (1 - along) ** 2 * np.array([30, 150]) + 2 * (1 - along) * along * np.array([100, 115]) + along**2 * np.array([170, 10])
    cv2.polylines(dark, [np.round(bowed).astype(np.int32)], False, 255, 2, cv2.LINE_AA)
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
    _, damaged, truth = scratched_sample()
    runtime = make_runtime("cpu")
    probability = scratch_probability(damaged, load_model(scratch_spec, runtime), runtime)
    on, off = probability[truth > 0].mean(), probability[truth == 0].mean()
    assert on > 4 * off, (on, off)
    counts = MaskCounts.of(probability > scratch_spec.settings["threshold"], truth)
    chance_f1 = 2 * truth.mean() / (1 + truth.mean())  # predicting every pixel as damaged
    assert counts.f1 > 5 * chance_f1, counts
    # Better than the classical detector on the same photo (top-hat/black-hat, the mask of evaluate's `tophat` and
    # `classical` baselines). Measured: shipped F1 0.934 (precision 0.99), top-hat 0.782 (0.78 at its best settings).
    classical = MaskCounts.of(tophat_scratch_mask(damaged), truth)
    assert counts.f1 > classical.f1 + 0.1, (counts.f1, classical.f1)


def test_scratch_repair_improves_the_sample(scratch_spec):
    clean, damaged, _ = scratched_sample()
    restorer = Restorer(make_runtime("cpu"), RestoreOptions(scratches=True, global_restoration=False, faces=False))
    restored = restorer.restore(damaged).pixels
    assert psnr(clean, restored) > psnr(clean, damaged) + 1.0
    # Better than the classical repairs of the same photo, evaluate's baselines: `tophat` (top-hat mask filled by
    # Telea) and `classical` (non-local means, then the same). Measured: input 20.8 dB, shipped 32.0, tophat 25.4,
    # classical 24.8; the audit's blur + Telea stand-in scored 29.3.
    best_classical = max(psnr(clean, method(damaged)[0]) for method in (tophat, classical))
    assert psnr(clean, restored) > best_classical + 5.0, (psnr(clean, restored), best_classical)


def noisy_scratched_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean, noisy, mask): the scratched sample with Gaussian noise (sigma 0.06) on top."""
    clean, damaged, truth = scratched_sample()
    noisy = np.clip(damaged + np.random.default_rng(0).normal(0, 0.06, damaged.shape), 0, 1).astype(np.float32)
    return clean, noisy, truth


def restored_by(model: str, noisy: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The shipped global stage given the true mask: the triplet (VAE_A -> mapping -> VAE_B) or the ablation."""
    from oldphoto.registry import MAPPING_MODEL, RESTORE_UNET_MODEL, VAE_CLEAN_MODEL, VAE_OLD_MODEL
    from oldphoto.restore.global_stage import restore_global, restore_global_direct

    if model == "triplet":
        specs = [get_spec(name) for name in (VAE_OLD_MODEL, MAPPING_MODEL, VAE_CLEAN_MODEL)]
        if not all(spec.shipped for spec in specs):
            pytest.fail("the global restoration models must be shipped")
        networks = (load_network(spec) for spec in specs)
        return restore_global(noisy, truth, *networks, make_runtime("cpu"), min_overlap=specs[1].contract.min_tile_overlap)
    spec = get_spec(RESTORE_UNET_MODEL)
    return restore_global_direct(noisy, truth, load_network(spec), make_runtime("cpu"), min_overlap=spec.contract.min_tile_overlap)


def error_inside(image: np.ndarray, clean: np.ndarray, truth: np.ndarray) -> float:
    return float(np.abs(image - clean)[truth > 0].mean())


# Measured on this sample (PSNR dB / SSIM / mean error inside the scratches): noisy input 19.32 / 0.376 / 0.383;
# evaluate's `classical` baseline (non-local means, top-hat mask, Telea) 25.75 / 0.841 / 0.146; the triplet
# 25.82 / 0.883 / 0.060; the ablation 29.17 / 0.902 / 0.060.
BEATS_CLASSICAL = {"triplet": {"psnr": 0.0, "ssim": 0.02}, "restore-unet": {"psnr": 2.0, "ssim": 0.03}}


@pytest.mark.parametrize("model", sorted(BEATS_CLASSICAL))
def test_shipped_global_models_restore_a_noisy_scratched_sample(model):
    from oldphoto.evaluation.metrics import ssim

    clean, noisy, truth = noisy_scratched_sample()
    restored = restored_by(model, noisy, truth)
    assert psnr(clean, restored) > psnr(clean, noisy) + 2.0
    assert ssim(clean, restored) > ssim(clean, noisy) + 0.2
    # The scratches themselves are filled: inside the mask the error drops by more than half.
    assert error_inside(restored, clean, truth) < 0.5 * error_inside(noisy, clean, truth)
    # And better than the classical restoration of the same photo. The triplet's PSNR lead is thin (0.07 dB), so
    # its margin is on SSIM and on the scratches.
    baseline, _ = classical(noisy)
    margin = BEATS_CLASSICAL[model]
    assert psnr(clean, restored) > psnr(clean, baseline) + margin["psnr"], (psnr(clean, restored), psnr(clean, baseline))
    assert ssim(clean, restored) > ssim(clean, baseline) + margin["ssim"], (ssim(clean, restored), ssim(clean, baseline))
    assert error_inside(restored, clean, truth) < 0.5 * error_inside(baseline, clean, truth)


@pytest.mark.xfail(
    strict=True,
    reason="issue 20: given the same (true) mask, the classical repair (non-local means, then Telea on the mask) "
    "restores this sample better than the shipped global models: 31.27 dB and 0.032 mean error inside the scratches, "
    "against the triplet's 25.82 dB / 0.060 and the ablation's 29.17 dB / 0.060 (their SSIM is higher: 0.883 and "
    "0.902 against 0.872)",
)
@pytest.mark.parametrize("model", sorted(BEATS_CLASSICAL))
def test_shipped_global_models_beat_the_classical_repair_given_the_same_mask(model):
    from oldphoto.restore.classical import denoise_nlm, inpaint_telea

    clean, noisy, truth = noisy_scratched_sample()
    restored = restored_by(model, noisy, truth)
    baseline = inpaint_telea(denoise_nlm(noisy), truth)
    assert psnr(clean, restored) > psnr(clean, baseline), (psnr(clean, restored), psnr(clean, baseline))
    assert error_inside(restored, clean, truth) < error_inside(baseline, clean, truth)


def test_shipped_global_stage_leaves_an_undamaged_texture_alone():
    """A sharp, undamaged, textured photo crop (tests/fixtures/texture-lichen.jpg: thin bright strands, the kind of
    content the detector can mistake for scratches) comes back essentially unchanged from `restore --no-faces`."""
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
    runtime = make_runtime("cpu")
    probability = scratch_probability(photo, load_model(scratch_spec, runtime), runtime)
    marked = probability > scratch_spec.settings["threshold"]
    assert marked[badges].mean() < 0.05
    assert marked[scratch].mean() > 0.6


FACE_FIXTURE = Path(__file__).parent / "fixtures" / "face-1870.jpg"
PORTRAIT_FIXTURE = Path(__file__).parent / "fixtures" / "face-portrait.jpg"


def restorations_of_a_scanned_face(face: np.ndarray):
    """(clean, degraded, global only, refined) of a face photo ((H, W, 3) in [0, 1], made black and white) after a
    scan-like degradation: blur (sigma 1), noise (sigma 0.04), JPEG quality 50. The shipped global stage in fp32, then
    the shipped refiner at full strength on its face (as `restore` runs it: conditioned on the photo before the
    global stage and mirror averaged as the registry says; no face gate, so this is the refiner's own work)."""
    from oldphoto.imageio import to_luminance
    from oldphoto.registry import FACE_DETECTOR_MODEL, FACE_MODEL
    from oldphoto.restore.faces import conditions_on_original, refine_faces

    clean = np.repeat(to_luminance(face), 3, axis=2)
    noisy = cv2.GaussianBlur(clean, (0, 0), 1.0) + np.random.default_rng(0).normal(0, 0.04, clean.shape)
    encoded = cv2.imencode(".jpg", np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])[1]
    degraded = cv2.imdecode(encoded, cv2.IMREAD_COLOR).astype(np.float32) / 255.0
    runtime = make_runtime("cpu", precision="fp32")
    global_only = Restorer(runtime, RestoreOptions(scratches=False, faces=False)).restore(degraded).pixels
    refiner_spec = get_spec(FACE_MODEL)
    assert conditions_on_original(refiner_spec)
    refined = refine_faces(global_only, load_network(get_spec(FACE_DETECTOR_MODEL)), load_model(refiner_spec), runtime, original=degraded)
    return clean, degraded, global_only, refined


@pytest.fixture(scope="module")
def degraded_face_restorations():
    """:func:`restorations_of_a_scanned_face` of the small fixture face (48 px, padded to 216 x 176)."""
    from oldphoto.imageio import load_rgb

    return restorations_of_a_scanned_face(np.pad(load_rgb(FACE_FIXTURE), ((40, 40), (60, 60), (0, 0)), mode="edge"))


def face_box(result) -> tuple[slice, slice]:
    x1, y1, x2, y2 = (int(round(v)) for v in result.faces[0].box)
    return slice(max(0, y1), y2), slice(max(0, x1), x2)


def test_shipped_face_refiner_refines_the_degraded_face(degraded_face_restorations):
    _, _, global_only, refined = degraded_face_restorations
    assert len(refined.faces) == 1 and refined.records[0].refined
    change = np.abs(refined.pixels - global_only).max(axis=2)
    assert change[face_box(refined)].mean() > 0.5 / 255  # the refiner's correction is pasted in (measured: 1 level)
    assert not change[:20].any()  # and nothing far from the face


@pytest.mark.xfail(
    strict=True,
    reason="issue 18, small faces: on the 48 px fixture face the shipped refiner does not improve on the global stage: "
    "in the face box 30.95 dB / SSIM 0.884 after the global stage, 30.89 / 0.876 refined (luma; 6 noise seeds: 30.82 "
    "against 30.79; the degraded input 31.63 / 0.842), while it gains 1.1 dB on the 206 px portrait above. Before the "
    "correction was low-passed for small faces: 30.79; the previous refiner: 30.76. Of session 11's fine-tunes, all but one lowered it further (28.7-30.5 dB); one trained "
    "with shrunk faces reached 30.86, one with undamaged faces (session 14) 31.02, still short of +0.1 dB (see "
    "weights/README.md)",
)
def test_shipped_face_refiner_improves_a_degraded_face(degraded_face_restorations):
    clean, _, global_only, refined = degraded_face_restorations
    psnr_before, psnr_after, ssim_before, ssim_after = luma_scores_in_the_face_box(clean, global_only, refined)
    assert psnr_after > psnr_before + 0.1, (psnr_after, psnr_before)
    assert ssim_after > ssim_before, (ssim_after, ssim_before)


def luma_scores_in_the_face_box(clean, global_only, refined) -> tuple[float, float, float, float]:
    """(PSNR global, PSNR refined, SSIM global, SSIM refined) of the luminance inside the detected face box."""
    from oldphoto.evaluation.metrics import ssim
    from oldphoto.imageio import to_luminance

    box = face_box(refined)
    reference = to_luminance(clean)[box]
    before, after = to_luminance(global_only)[box], to_luminance(refined.pixels)[box]
    return psnr(reference, before), psnr(reference, after), ssim(reference, before), ssim(reference, after)


def test_shipped_face_refiner_improves_a_degraded_portrait():
    """The committed studio portrait (a real 1860s face, 206 px high) scanned badly: the refiner's correction brings
    its face closer to the clean photo than the global stage left it. Measured (luma in the face box): global stage
    33.99 dB / 0.832, refined 35.09 / 0.880 on average over 4 noise seeds (seed 0: 34.01 / 0.833 -> 35.11 / 0.880;
    the previous refiner: 35.03 / 0.878). A refiner that returns its input fails; the small face of the test below
    is where it still falls short."""
    from oldphoto.imageio import load_rgb

    clean, _, global_only, refined = restorations_of_a_scanned_face(load_rgb(PORTRAIT_FIXTURE))
    assert len(refined.faces) == 1
    psnr_before, psnr_after, ssim_before, ssim_after = luma_scores_in_the_face_box(clean, global_only, refined)
    assert psnr_after > psnr_before + 0.5, (psnr_after, psnr_before)
    assert ssim_after > ssim_before + 0.02, (ssim_after, ssim_before)


EXAMPLE = Path(__file__).parents[1] / "examples" / "old-mountain.jpg"


def test_shipped_detector_in_tiles_matches_the_whole_photo(scratch_spec):
    """The example photo (640 x 360) in the smallest tiles `restore` allows the detector (512 px: two tiles) against
    in one tile. The dilated context reaches past a tile, so not exactly; the contract's 128 px overlap keeps the two
    within measured bounds. Measured: mask IoU 0.981, probability max difference 0.44 (mean 1.2e-4); with the default
    32 px overlap instead of the contract's: 0.940, 0.78 (3.8e-4)."""
    from oldphoto.imageio import load_rgb
    from oldphoto.restore.scratches import detect_scratches

    photo = load_rgb(EXAMPLE)
    detector = load_model(scratch_spec)
    threshold = scratch_spec.settings["threshold"]
    outputs = {}
    for tile in (1024, 512):
        runtime = make_runtime("cpu", precision="fp32", tile=tile)  # the default 32 px overlap: the contract raises it
        tiles = []
        mask = detect_scratches(photo, detector, runtime, threshold=threshold, on_tile=lambda done, total: tiles.append(total))
        probability = scratch_probability(photo, detector, runtime)
        outputs[tile] = (mask > 0.5, probability, tiles[-1])
    (whole, whole_p, one), (tiled, tiled_p, two) = outputs[1024], outputs[512]
    assert (one, two) == (1, 2)
    assert whole.sum() > 500  # the example's scratches are found (819 pixels), so the IoU means something
    iou = (whole & tiled).sum() / (whole | tiled).sum()
    difference = np.abs(whole_p - tiled_p)
    assert iou > 0.96 and difference.max() < 0.6 and difference.mean() < 2.5e-4, (iou, difference.max(), difference.mean())


def test_restore_the_example_with_the_shipped_models(tmp_path):
    """`oldphoto restore examples/old-mountain.jpg --no-faces` (a landscape) with the shipped models. Its marks
    cover little of it, so the sparse-damage rule asks each a verifier score of 0.8 (since session 27; 0.7 before),
    which neither scratch reaches (the right one, from the top to y 125, scores 0.74, the left one, y 150 to 285,
    0.54): by default both are left in place and only the global stage changes the photo (a mean luma change of
    0.019, 99th percentile 0.041, 33.2 dB; it also neutralises the sepia cast). `--no-scratch-verify` repairs every
    mark the detector makes: both scratches come out darker (measured: by 0.19 and 0.27 on average)."""
    from typer.testing import CliRunner

    from oldphoto.cli.app import app
    from oldphoto.imageio import load_rgb, to_luminance

    before = load_rgb(EXAMPLE)
    luma_before = to_luminance(before)[:, :, 0]
    left, right = (slice(150, 285), slice(145, 172)), (slice(20, 125), slice(578, 618))
    elsewhere = np.ones(luma_before.shape, bool)
    elsewhere[left] = elsewhere[right] = False
    darkened = {}
    for verify in ("--scratch-verify", "--no-scratch-verify"):
        out = tmp_path / verify
        result = CliRunner().invoke(app, ["restore", str(EXAMPLE), "-o", str(out), "--device", "cpu", "--no-faces", verify])
        assert result.exit_code == 0, result.output
        after = load_rgb(out / EXAMPLE.name)
        assert after.shape == before.shape
        luma_after = to_luminance(after)[:, :, 0]
        for name, box in (("left", left), ("right", right)):
            region = luma_before[box]
            scratch = region > np.median(region) + 0.15  # the bright scratch within its box
            assert scratch.sum() > 200
            darkened[verify, name] = (region - luma_after[box])[scratch].mean()
        change = np.abs(luma_after - luma_before)[elsewhere]
        assert change.mean() < 0.03 and np.quantile(change, 0.99) < 0.055, (change.mean(), np.quantile(change, 0.99))
        assert psnr(before[elsewhere], after[elsewhere]) > 31.5
    assert abs(darkened["--scratch-verify", "left"]) < 0.06 and abs(darkened["--scratch-verify", "right"]) < 0.06, darkened
    assert darkened["--no-scratch-verify", "left"] > 0.15 and darkened["--no-scratch-verify", "right"] > 0.12, darkened


def test_the_face_stage_leaves_a_sharp_face_alone_and_refines_a_blurred_one():
    """The shipped gate: a sharp studio portrait comes back as the global stage made it; the same face blurred and
    noisy takes part of the refiner's correction. Measured: sharp need 0.143 -> strength 0 (change 0.00 levels);
    blurred (sigma 1.5, noise 0.03) need 0.29 -> strength 0.56 for the correction's coarse part, 0 for its fine part
    (0.24 levels). A stage without a gate (every face at full strength) changes the sharp face by 0.81 levels; one
    that does nothing changes neither."""
    from oldphoto.imageio import load_rgb

    runtime = make_runtime("cpu", precision="fp32")
    with_faces = Restorer(runtime, RestoreOptions(scratches=False))
    without = Restorer(runtime, RestoreOptions(scratches=False, faces=False))
    sharp = load_rgb(PORTRAIT_FIXTURE)
    noise = np.random.default_rng(0).normal(0, 0.03, sharp.shape)
    blurred = np.clip(cv2.GaussianBlur(sharp, (0, 0), 1.5) + noise, 0, 1).astype(np.float32)
    changes, strengths = [], []
    for photo in (sharp, blurred):
        result = with_faces.restore(photo)
        assert result.faces_found == 1 and result.faces[0].refined
        x1, y1, x2, y2 = (int(round(v)) for v in result.faces[0].face.box)
        box = (slice(max(y1, 0), y2), slice(max(x1, 0), x2))
        changes.append(float(np.abs(result.pixels - without.restore(photo).pixels)[box].mean() * 255))
        strengths.append(result.faces[0].strength)
    assert strengths[0] < 0.05 and changes[0] < 0.05, (strengths, changes)
    assert strengths[1] > 0.15 and changes[1] > changes[0] + 0.1, (strengths, changes)


def test_shipped_verifier_drops_a_bright_street_and_keeps_real_emulsion_loss():
    """On a sunlit street the detector alone marks a large blob (painted grey by the global stage before the
    verifier); on a portrait's edge it marks real black emulsion loss. The verified mask keeps the damage and drops
    the street: a verifier that keeps everything fails the first, one that drops everything the second."""
    runtime = make_runtime("cpu", "fp32", threads=1)
    verified, unverified = load_scratch_detection(runtime), load_scratch_detection(runtime, verify=False)
    street = load_rgb(Path(__file__).parent / "fixtures" / "street-1900s.jpg")
    damage = load_rgb(Path(__file__).parent / "fixtures" / "emulsion-loss-1895.jpg")
    with torch.inference_mode():
        assert unverified.mask(street, runtime).mean() > 0.05
        assert verified.mask(street, runtime).mean() < 0.01
        marked = unverified.mask(damage, runtime)
        assert marked.mean() > 0.05
        assert verified.mask(damage, runtime)[marked > 0].mean() > 0.9


def test_shipped_verifier_judges_lines_over_2_px_a_straight_bar_is_dropped_a_wavy_scratch_kept():
    """Lines more than 2 px thick are judged (keep_width 2): the detector marks a smooth, straight, bright 4 px bar
    across a plain photo, and the verifier drops it as a scene line (a pole, a wire, a frame edge, which the
    registry's earlier keep_width 4 kept unjudged and the global stage erased); a wavy bright scratch drawn 3 px wide
    (5.2 px thick as marked: judged under either rule) stays marked. Measured: the bar scores 0.25-0.26, the wavy
    scratch 0.51 (the registry's min_score is 0.465) and is 99-100% kept."""
    runtime = make_runtime("cpu", "fp32", threads=1)
    detection = load_scratch_detection(runtime)
    assert detection.rules.keep_width < 4
    for seed in range(2):
        for line, is_scratch in ((np.s_[40:44, 10:120], False), (wavy_scratch_mask(), True)):
            photo = smooth_image(96, 128, seed=seed)
            photo[line] = 0.97
            with torch.inference_mode():
                kept, dropped = detection.masks(photo, runtime)
            assert (kept + dropped)[line].mean() > 0.9, seed  # the detector marks both
            share = float(kept[line].mean())
            assert share > 0.9 if is_scratch else share < 0.05, (seed, is_scratch, share)
