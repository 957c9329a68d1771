"""`oldphoto train face-detector`: the drawn windows' targets match their pixels; a few steps train R-Net and O-Net only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from oldphoto.cli.app import app
from oldphoto.errors import DataError
from oldphoto.imageio import load_rgb, save_rgb
from oldphoto.registry import FACE_DETECTOR_MODEL, get_spec
from oldphoto.training import face_detector
from oldphoto.training.face_detector import (
    FACE,
    NON_FACE,
    PART,
    FaceDetectorTrainConfig,
    SourceFace,
    _black_strip,
    _cover,
    _face_windows,
    _turned,
    train_face_detector,
)
from oldphoto.training.loop import TrainSetup
from oldphoto.weights import locate_weights

from .conftest import smooth_image

LEVELS = (0.3, 0.45, 0.6, 0.75, 0.9)
"""Brightness of the dot at each of the five landmarks (left eye, right eye, nose, left and right mouth corner)."""


def _dotted_face(size: int = 200) -> SourceFace:
    """A dark square photo with a 7x7 dot of its own brightness at each landmark of a face box in the middle."""
    pixels = np.zeros((size, size, 3), np.float32)
    landmarks = np.array([[80, 85], [120, 85], [100, 105], [85, 125], [115, 125]], np.float32)
    for (x, y), level in zip(landmarks.astype(int), LEVELS):
        pixels[y - 3 : y + 4, x - 3 : x + 4] = level
    return SourceFace(pixels, np.array([60, 60, 140, 140], np.float32), landmarks)


@pytest.mark.parametrize("degrees,scale", [(30.0, 1.0), (-20.0, 0.5), (0.0, 2.0)])
def test_a_turned_face_carries_its_landmarks_and_box_along(degrees, scale):
    face = _turned(_dotted_face(), degrees, scale)
    for (x, y), level in zip(face.landmarks, LEVELS):
        # The dot's brightness, resampled, peaks where its landmark went (within a pixel).
        patch = face.pixels[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2, 0]
        assert patch.max() > 0.4 * level, (degrees, scale, level)
    side = face.box[2] - face.box[0]
    assert side == pytest.approx(80 * scale, rel=1e-4)
    # The box keeps its place on the face: turned about its centre, which only scales.
    assert (face.box[:2] + face.box[2:]) / 2 == pytest.approx(np.array([100, 100]) * scale, abs=1e-3)


def test_face_windows_point_at_the_landmarks_they_show(monkeypatch):
    """The O-Net crop of every drawn face window holds landmark k's dot where its target says (flips swap the
    eyes and the mouth corners; tilts and scales move them)."""
    monkeypatch.setattr(face_detector, "_age", lambda pixels, rng: pixels)
    config = FaceDetectorTrainConfig(setup=None, occluded=0.0)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(40):
        drawn = _face_windows(_dotted_face(), [np.zeros((8, 8, 3), np.float32)], config, rng)
        if drawn is None or drawn[2] != FACE:
            continue
        _, large, _, _, _, points = drawn
        side = large.shape[-1]
        xs, ys = points[:5] * side, points[5:] * side
        assert ((xs > 0) & (xs < side) & (ys > 0) & (ys < side)).all()
        # Left and right as seen in the image, whether the draw was mirrored or not.
        assert xs[0] < xs[1] and xs[3] < xs[4]
        # Each target lies on a dot (a target off its dot reads the black background): the dots keep their
        # brightness order, or the mirrored one (the left eye's dot is then the photo's right eye's).
        brightness = [large[0, max(0, int(y) - 2) : int(y) + 3, max(0, int(x) - 2) : int(x) + 3].max() for x, y in zip(xs, ys)]
        assert min(brightness) > 0.3 * min(LEVELS) * 255, brightness
        assert np.argsort(brightness).tolist() in ([0, 1, 2, 3, 4], [1, 0, 2, 4, 3])
        checked += 1
    assert checked >= 10


def test_a_covered_face_is_partly_hidden():
    face = _dotted_face()
    rng = np.random.default_rng(1)
    patches = [np.full((20, 20, 3), 0.5, np.float32)]
    hidden = []
    for _ in range(30):
        covered = _cover(face.pixels + 0.2, face.box, patches, rng)
        inside = np.abs(covered - (face.pixels + 0.2))[60:140, 60:140].max(axis=2) > 0.05
        hidden.append(inside.mean())
    assert 0.05 < np.median(hidden) < 0.7 and min(hidden) > 0.0


def test_black_strip_zeroes_one_side():
    crop = np.full((3, 10, 10), 200, np.uint8)
    _black_strip(crop, 3, 0.3)  # bottom
    assert (crop[:, 7:] == 0).all() and (crop[:, :7] == 200).all()
    crop[:] = 200
    _black_strip(crop, 0, 0.2)  # left
    assert (crop[:, :, :2] == 0).all() and (crop[:, :, 2:] == 200).all()


def _folders(root: Path) -> tuple[Path, Path]:
    """Faces: four shifted copies of the shipped face fixture; scenes: three smooth photos without faces."""
    fixture = load_rgb(Path(__file__).parent / "fixtures" / "face-1870.jpg")
    (root / "faces").mkdir(parents=True)
    (root / "scenes").mkdir()
    for i in range(4):
        save_rgb(root / "faces" / f"{i}.png", np.roll(fixture, 2 * i, axis=1))
        save_rgb(root / "scenes" / f"{i}.png", smooth_image(120, 160, seed=i))
    return root / "faces", root / "scenes"


def _setup(faces: Path, run: Path, init: str | None, steps: int = 2) -> TrainSetup:
    return TrainSetup(data=(str(faces),), out=str(run / "mtcnn.safetensors"), checkpoint=str(run / "checkpoint.pt"),
                      steps=steps, batch_size=16, learning_rate=1e-3, validate_every=2, init=init)


def test_face_detector_recipe_trains_r_net_and_o_net_only(tmp_path):
    faces, scenes = _folders(tmp_path)
    shipped = str(locate_weights(get_spec(FACE_DETECTOR_MODEL)))
    config = FaceDetectorTrainConfig(setup=_setup(faces, tmp_path / "run", shipped), scenes=(str(scenes),), non_faces=60, draws_per_face=8)
    state = train_face_detector(config)
    assert state.step == 2 and np.isfinite(state.best["score"])
    before, after = load_file(shipped), load_file(config.setup.out)
    assert before.keys() == after.keys()
    changed = {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"rnet", "onet"}
    pool = torch.load(next((tmp_path / "run").glob("pool-train-*.pt")), weights_only=False)
    kinds = set(pool["kind"].tolist())
    assert kinds == {FACE, PART, NON_FACE} and pool["small"].shape[1:] == (3, 24, 24) and pool["large"].shape[1:] == (3, 48, 48)


def test_face_detector_recipe_needs_the_detector_and_faces(tmp_path):
    faces, scenes = _folders(tmp_path)
    with pytest.raises(DataError, match="--init"):
        train_face_detector(FaceDetectorTrainConfig(setup=_setup(faces, tmp_path / "run", None), scenes=(str(scenes),)))
    shipped = str(locate_weights(get_spec(FACE_DETECTOR_MODEL)))
    with pytest.raises(DataError, match="no faces found"):
        train_face_detector(FaceDetectorTrainConfig(setup=_setup(scenes, tmp_path / "run", shipped), scenes=(str(scenes),), non_faces=20))


def test_train_face_detector_cli(tmp_path):
    faces, scenes = _folders(tmp_path)
    shipped = str(locate_weights(get_spec(FACE_DETECTOR_MODEL)))
    common = ["train", "face-detector", "--data", str(faces), "--scenes", str(scenes), "--steps", "1", "--batch-size", "8",
              "--non-faces", "30", "--validate-every", "1", "--out", str(tmp_path / "w.safetensors"), "--checkpoint", str(tmp_path / "c.pt")]
    result = CliRunner().invoke(app, [*common, "--init", shipped])
    assert result.exit_code == 0, result.output
    assert "best validation of face-detector" in result.output and (tmp_path / "w.safetensors").exists()
    missing = CliRunner().invoke(app, common)
    assert missing.exit_code == 2 and "--init" in missing.output
