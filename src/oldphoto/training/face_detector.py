"""Recipe: fine-tune the face detector's R-Net and O-Net so that partly covered, tilted and small faces pass them.

The shipped MTCNN finds nearly every uncovered face of 24 px or more on the labelled real photos, but only 30% of
the faces that a hat brim, a hand, a collar, another head or the frame's edge partly hides, or that lean steeply.
Its P-Net proposes almost all of them; R-Net and O-Net then reject them (``scripts/face_recall.py``). So only those
two stages are trained here, from the shipped weights (``init`` is required: the published training data is not
available offline), and P-Net is left as it is.

The data is a fixed pool of 24² and 48² windows, cut exactly as :mod:`oldphoto.restore.face_detect` cuts them
(square boxes, zero outside the photo, area resampling), cached beside the checkpoint:

- **faces**: every face of the ``data`` folders (aligned single-face photos, e.g. UTKFace) and the confident faces
  the shipped detector finds on the training part of the ``real`` photos (old photos, so the domain is right). Each
  face's box and landmarks are the shipped detector's on the untouched face. Each draw turns the face (tilt), scales
  it to 16-96 px, covers part of it in ``occluded`` of the draws (a patch of another photo or another face over the
  mouth, a side or the eyes, a brim over the top, the frame's edge), ages it (grey or sepia, blur, grain) and cuts a
  jittered window: a *face* when it overlaps the face's box by IoU >= 0.65, a *part* (box and landmark targets only)
  between 0.4 and 0.65.
- **non-faces**: random windows of the ``scenes`` photos and of the training part of the ``real`` photos, and the
  windows P-Net proposes there (hard negatives; three in four), except any window near a face the shipped detector
  finds even at permissive thresholds. Their target is "no face", except for the real old photos' proposals: the
  covered faces this recipe is for are among them, so there each stage is trained towards the shipped stage's own
  probability (which rejects most of them), i.e. it is kept as it was.

Every 20th file is held out for validation. Loss per network: cross-entropy towards the window's target (faces
weigh 1 in total, non-faces ``non_face_weight``), + 0.5 x smooth-L1 of the box offsets (faces and parts), + O-Net
only: 1.0 x smooth-L1 of the landmarks (faces). The validation score is the share of held-out faces (covered ones
counted twice) that pass both stages' thresholds, minus FALSE_HIT_COST x the share of held-out non-faces that pass
both where the shipped stages did not: a false hit is refined as a face.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from oldphoto.errors import DataError
from oldphoto.imageio import load_rgb
from oldphoto.registry import FACE_DETECTOR_MODEL, get_spec
from oldphoto.restore.face_detect import DetectorSettings, _crops, _proposals, _regress, _square, detect_faces
from oldphoto.training.data import cached_pool, list_images, split_held_out, split_real_photos
from oldphoto.training.loop import SingleNetworkRecipe, TrainSetup, TrainState, initial_network, optimise, run, warn_unused_options

log = logging.getLogger(__name__)

FACE, PART, NON_FACE = 0, 1, 2
"""Window kinds in the pool."""
WITHOUT_RESCUE = DetectorSettings(rescue_refine_score=None)
"""``restore``'s search without the rescue of R-Net's rejects: the training faces are found as before it."""
PERMISSIVE = DetectorSettings(min_face=12, thresholds=(0.5, 0.5, 0.5), rescue_refine_score=None)
"""Settings that find nearly every face (and many false hits): windows near any of these are never non-faces (without
the rescue of R-Net's rejects, so that the pools are drawn as before it)."""
REAL_FACE_SCORE = 0.97
"""Faces the shipped detector finds on the training real photos with at least this O-Net score are training faces."""


@dataclass(frozen=True)
class FaceDetectorTrainConfig:
    setup: TrainSetup
    """``data``: folders of photos holding one clear face each (aligned crops such as UTKFace)."""
    scenes: tuple[str, ...] = ()
    """Folders of photos for the non-face windows (their faces, found permissively, are avoided)."""
    real: tuple[str, ...] = ()
    """Folders of real old photos: their training part gives faces and non-faces."""
    real_labels: str | None = None
    """The labelled real-photo test (JSON); the photos it names are never used."""
    draws_per_face: int = 4
    non_faces: int = 60000
    """Non-face windows in the training pool (a quarter random, the rest P-Net's proposals); a tenth of it for validation."""
    non_face_weight: float = 3.0
    """Weight of the non-faces in the classification loss, the faces' being 1: a false hit is refined as a face."""
    occluded: float = 0.6
    """Share of face draws partly covered."""
    max_tilt: float = 35.0
    """Largest tilt drawn, in degrees (a normal draw of sd max_tilt / 2.5, clipped)."""
    max_real_photos: int = 200
    max_scene_photos: int = 300
    scene_side: int = 1024
    """Scene and real photos are searched at this long side at most (as a large scan is searched below 1600 px)."""


@dataclass(frozen=True)
class WindowPool:
    """Windows as the detector's stages see them. N windows:

    Attributes:
        small: (N, 3, 24, 24) uint8 RGB, R-Net's input.
        large: (N, 3, 48, 48) uint8 RGB, O-Net's input.
        kind: (N,) int64: FACE, PART or NON_FACE.
        covered: (N,) bool: a face drawn partly covered or steeply tilted.
        offsets: (N, 4) float32 box offsets (x1, y1, x2, y2 as fractions of the window side), faces and parts.
        points: (N, 10) float32 landmarks (5 x, then 5 y, as fractions of the window), faces and parts.
        target: (N, 2) float32 face probability R-Net and O-Net are trained towards: 1 for faces, 0 for non-faces,
            and on the real old photos' proposals the shipped stages' own probabilities (see the module docstring).
    """

    small: torch.Tensor
    large: torch.Tensor
    kind: torch.Tensor
    covered: torch.Tensor
    offsets: torch.Tensor
    points: torch.Tensor
    target: torch.Tensor


def _normalised(crops: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> the scaling MTCNN's weights expect."""
    return (crops.float() - 127.5) / 128.0


def _as_uint8(crops: torch.Tensor) -> np.ndarray:
    """What ``_crops`` returns (normalised float) -> (N, 3, S, S) uint8."""
    return np.clip(np.rint(crops.numpy() * 128.0 + 127.5), 0, 255).astype(np.uint8)


def _box_iou(window: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with (M, 4) boxes."""
    if len(boxes) == 0:
        return np.zeros(0)
    w = np.clip(np.minimum(window[2], boxes[:, 2]) - np.maximum(window[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(window[3], boxes[:, 3]) - np.maximum(window[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(window) + area(boxes) - inter, 1e-6)


@dataclass(frozen=True)
class SourceFace:
    """A face to draw windows of: its photo region (H, W, 3) float32 in [0, 1], box (4,) and landmarks (5, 2) in it."""

    pixels: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray


def _shrunk(rgb: np.ndarray, side: int) -> np.ndarray:
    scale = side / max(rgb.shape[:2])
    if scale >= 1.0:
        return rgb
    return cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def _region(rgb: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> SourceFace:
    """The face with a margin of its size around it (cut from a large photo so that drawing stays cheap)."""
    side = max(box[2] - box[0], box[3] - box[1])
    x1, y1 = int(max(0, box[0] - side)), int(max(0, box[1] - side))
    x2, y2 = int(min(rgb.shape[1], box[2] + side)), int(min(rgb.shape[0], box[3] + side))
    shift = np.array([x1, y1], np.float32)
    return SourceFace(rgb[y1:y2, x1:x2].copy(), box - np.tile(shift, 2), landmarks - shift)


def find_faces(files: list[Path], network, single: bool, max_side: int) -> list[SourceFace]:
    """The shipped detector's faces of ``files``: the largest one of each aligned crop (``single``), or every
    confident one (O-Net score >= REAL_FACE_SCORE) of a real photo."""
    faces = []
    for path in files:
        try:
            rgb = _shrunk(load_rgb(path), max_side)
        except (OSError, ValueError) as error:
            log.warning("skipping %s: %s", path, error)
            continue
        found = detect_faces(rgb, network, WITHOUT_RESCUE)
        if single:
            found = [f for f in found[:1] if f.score >= 0.9]
        else:
            found = [f for f in found if f.score >= REAL_FACE_SCORE and f.size >= 20]
        faces += [_region(rgb, np.array(f.box, np.float32), f.landmarks) for f in found]
    return faces


def _age(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An old photo's look: grey or sepia, contrast, blur and grain. (H, W, 3) float32 in [0, 1]."""
    out = pixels
    if rng.random() < 0.6:
        luma = out @ np.array([0.299, 0.587, 0.114], np.float32)
        tint = np.array([1.0, 1.0, 1.0], np.float32) if rng.random() < 0.5 else np.array([1.08, 0.98, 0.82], np.float32)
        out = luma[..., None] * tint
    contrast, brightness = rng.uniform(0.6, 1.2), rng.uniform(-0.1, 0.1)
    out = (out - 0.5) * contrast + 0.5 + brightness
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.5))
    if rng.random() < 0.5:
        out = out + rng.normal(0, rng.uniform(0.01, 0.06), out.shape[:2])[..., None].astype(np.float32)
    return np.clip(out, 0, 1).astype(np.float32)


def _cover(pixels: np.ndarray, box: np.ndarray, patches: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``pixels`` with part of the face in ``box`` hidden: by a patch of another photo (a hand, a bottle, a collar,
    another head) over the mouth, a side or the eyes, by a brim over the top, or by the frame's edge (black, as
    the detector's windows are outside the photo)."""
    out = pixels.copy()
    height, width = out.shape[:2]
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    kind = rng.choice(["patch", "patch", "brim", "edge"])
    mask = np.zeros((height, width), np.float32)
    if kind == "edge":
        cut = rng.uniform(0.15, 0.35) * side
        edge = rng.integers(4)
        if edge == 0:
            mask[:, : int(max(0, x1 + cut))] = 1
        elif edge == 1:
            mask[:, int(min(width, x2 - cut)) :] = 1
        elif edge == 2:
            mask[: int(max(0, y1 + cut)), :] = 1
        else:
            mask[int(min(height, y2 - cut)) :, :] = 1
        return out * (1 - mask[..., None])
    if kind == "brim":
        depth = rng.uniform(0.15, 0.35) * side
        droop = rng.uniform(-0.15, 0.15) * side
        pts = np.array([[x1 - side, y1 - side], [x2 + side, y1 - side], [x2 + side, y1 + depth + droop], [x1 - side, y1 + depth - droop]])
        cv2.fillPoly(mask, [np.rint(pts).astype(np.int32)], 1.0)
    else:
        anchor = rng.choice(["bottom", "bottom", "left", "right", "middle"])
        radius = rng.uniform(0.18, 0.35) * side
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        cx += {"left": -0.45, "right": 0.45}.get(anchor, 0.0) * side + rng.uniform(-0.15, 0.15) * side
        cy += {"bottom": 0.45, "middle": 0.1}.get(anchor, 0.0) * side + rng.uniform(-0.15, 0.15) * side
        axes = (radius * rng.uniform(0.6, 1.4), radius * rng.uniform(0.6, 1.4))
        cv2.ellipse(mask, (round(cx), round(cy)), (round(axes[0]), round(axes[1])), rng.uniform(0, 180), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.03 * side))[..., None]
    patch = patches[rng.integers(len(patches))]
    filler = cv2.resize(patch, (width, height), interpolation=cv2.INTER_LINEAR)
    if kind == "brim" and rng.random() < 0.7:
        filler = np.full_like(out, rng.uniform(0.0, 0.35)) + 0.05 * (filler - filler.mean())
    return np.clip(out * (1 - mask) + filler * mask, 0, 1).astype(np.float32)


def _turned(face: SourceFace, degrees: float, scale: float) -> SourceFace:
    """The face region tilted by ``degrees`` about the box centre and scaled by ``scale``."""
    centre = ((face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2)
    matrix = cv2.getRotationMatrix2D(centre, degrees, scale)
    height, width = face.pixels.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    matrix[:, 2] += np.array(centre) * (scale - 1)  # the centre lands where scaling alone puts it
    pixels = cv2.warpAffine(face.pixels, matrix, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    landmarks = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    half = max(face.box[2] - face.box[0], face.box[3] - face.box[1]) * scale / 2
    new_centre = np.array(centre) @ matrix[:, :2].T + matrix[:, 2]
    box = np.array([new_centre[0] - half, new_centre[1] - half, new_centre[0] + half, new_centre[1] + half], np.float32)
    return SourceFace(pixels, box, landmarks.astype(np.float32))


def _face_windows(face: SourceFace, patches: list[np.ndarray], config: FaceDetectorTrainConfig, rng: np.random.Generator):
    """One draw of ``face``: (small, large, kind, covered, offsets, points) of one window, or None."""
    tilt = float(np.clip(rng.normal(0, config.max_tilt / 2.5), -config.max_tilt, config.max_tilt))
    side = max(face.box[2] - face.box[0], face.box[3] - face.box[1])
    target = float(np.exp(rng.uniform(np.log(16), np.log(96))))
    turned = _turned(face, tilt, target / side)
    pixels = turned.pixels
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1].copy()
        width = pixels.shape[1]
        box = np.array([width - turned.box[2], turned.box[1], width - turned.box[0], turned.box[3]], np.float32)
        marks = turned.landmarks.copy()
        marks[:, 0] = width - marks[:, 0]
        marks = marks[[1, 0, 2, 4, 3]]
        turned = SourceFace(pixels, box, marks)
    covered = rng.random() < config.occluded
    if covered:
        pixels = _cover(pixels, turned.box, patches, rng)
    pixels = _age(pixels, rng)
    box = turned.box
    side = box[2] - box[0]
    for _ in range(8):
        size = side * rng.uniform(0.8, 1.25)
        cx = (box[0] + box[2]) / 2 + rng.uniform(-0.2, 0.2) * side
        cy = (box[1] + box[3]) / 2 + rng.uniform(-0.2, 0.2) * side
        window = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)
        overlap = _box_iou(window, box[None])[0]
        if overlap >= 0.4:
            break
    else:
        return None
    window = np.rint(window)
    span = window[2] - window[0] + 1
    offsets = (box - window) / span
    points = np.concatenate([(turned.landmarks[:, 0] + 1 - window[0]) / span, (turned.landmarks[:, 1] + 1 - window[1]) / span])
    small, large = _crops(pixels, window[None], 24), _crops(pixels, window[None], 48)
    kind = FACE if overlap >= 0.65 else PART
    return _as_uint8(small)[0], _as_uint8(large)[0], kind, covered or abs(tilt) > 20, offsets.astype(np.float32), points.astype(np.float32)


def _non_face_windows(rgb: np.ndarray, network, count: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[bool]]:
    """Up to ``count`` square windows (4,) of ``rgb`` away from any face, a quarter random, the rest P-Net's
    proposals; and for each whether it is a proposal."""
    faces = np.array([f.box for f in detect_faces(rgb, network, PERMISSIVE)], np.float32).reshape(-1, 4)
    if len(faces):
        centre, half = (faces[:, :2] + faces[:, 2:]) / 2, (faces[:, 2:] - faces[:, :2]).max(1, keepdims=True) * 0.75
        faces = np.concatenate([centre - half, centre + half], 1)
    height, width = rgb.shape[:2]
    windows = []
    with torch.inference_mode():
        rows = _proposals(rgb, network, DetectorSettings())
        if len(rows):
            boxes = _square(_regress(rows[:, :4], rows[:, 5:9]))
            chosen = rng.permutation(len(boxes))[: count * 3 // 4]
            windows += [np.rint(boxes[i]) for i in chosen]
    proposals = len(windows)
    while len(windows) < count:
        side = float(np.exp(rng.uniform(np.log(12), np.log(max(13, min(height, width) / 2)))))
        x, y = rng.uniform(0, max(1, width - side)), rng.uniform(0, max(1, height - side))
        windows.append(np.rint(np.array([x, y, x + side, y + side], np.float32)))
    kept = [i for i, w in enumerate(windows) if not len(faces) or _box_iou(w, faces).max() < 0.2]
    return [windows[i] for i in kept], [i < proposals for i in kept]


FALSE_HIT_COST = 100.0
"""Validation: a non-face passing both stages costs as much as this many faces found (at the shipped detector's
0.1% of the pool's non-faces passing, a photo already has a false hit every ten or so)."""
EDGE_NON_FACES = 0.15
"""Share of non-face windows given a black strip along one side."""


def _black_strip(crop: np.ndarray, edge: int, share: float) -> None:
    """Zero a strip of ``share`` of the side of a (3, S, S) crop along ``edge`` (0 left, 1 right, 2 top, 3 bottom), in place."""
    cut = max(1, round(crop.shape[-1] * share))
    view = crop if edge < 2 else crop.swapaxes(1, 2)
    if edge % 2 == 0:
        view[:, :, :cut] = 0
    else:
        view[:, :, -cut:] = 0


def draw_pool(
    config: FaceDetectorTrainConfig, face_files: list[Path], real_files: list[Path], scene_files: list[Path], non_faces: int, rng: np.random.Generator
) -> WindowPool:
    """The pool of face and non-face windows (see the module docstring)."""
    network = initial_network(get_spec(FACE_DETECTOR_MODEL), config.setup.init).eval()
    faces = find_faces(face_files, network, single=True, max_side=config.scene_side)
    faces += find_faces(real_files, network, single=False, max_side=config.scene_side)
    if not faces:
        raise DataError("no faces found in the face folders: --data needs photos holding one clear face each")
    log.info("face-detector pool: %d faces", len(faces))
    # Covers: patches of the scene photos and of other faces (hands and other heads are skin-toned).
    patches = [f.pixels for f in faces[:: max(1, len(faces) // 200)]]
    small, large, kind, covered, offsets, points, target = [], [], [], [], [], [], []
    for _ in range(config.draws_per_face):
        for face in faces:
            drawn = _face_windows(face, patches, config, rng)
            if drawn is not None:
                for store, value in zip((small, large, kind, covered, offsets, points), drawn):
                    store.append(value)
                target.append(np.ones(2, np.float32))
    photos = [(path, False) for path in scene_files] + [(path, True) for path in real_files]
    per_photo = max(1, -(-non_faces // max(1, len(photos))))
    for path, real in photos:
        rgb = _shrunk(load_rgb(path), config.scene_side)
        windows, proposed = _non_face_windows(rgb, network, per_photo, rng)
        if not windows:
            continue
        aged = _age(rgb, rng)
        boxes = np.stack(windows)
        cut_small, cut_large = _as_uint8(_crops(aged, boxes, 24)), _as_uint8(_crops(aged, boxes, 48))
        for i in np.nonzero(rng.random(len(boxes)) < EDGE_NON_FACES)[0]:
            # Black strips, as where a window crosses the photo's edge: covered faces show them too, so they must
            # not mean "face".
            edge, share = rng.integers(4), rng.uniform(0.2, 0.45)
            _black_strip(cut_small[i], edge, share)
            _black_strip(cut_large[i], edge, share)
        small += list(cut_small)
        large += list(cut_large)
        goal = np.zeros((len(boxes), 2), np.float32)
        if real:
            # An old photo's proposals away from every face found even permissively are nearly all scene content, but
            # among them are the covered faces this recipe is for: there the stages learn the shipped ones' scores
            # (they reject most such windows) instead of a hard "no face".
            with torch.inference_mode():
                shipped_r = network.rnet(_normalised(torch.from_numpy(cut_small)))[0][:, 1].numpy()
                shipped_o = network.onet(_normalised(torch.from_numpy(cut_large)))[0][:, 1].numpy()
            soft = np.array(proposed)
            goal[soft, 0], goal[soft, 1] = shipped_r[soft], shipped_o[soft]
        target += list(goal)
        kind += [NON_FACE] * len(boxes)
        covered += [False] * len(boxes)
        offsets += [np.zeros(4, np.float32)] * len(boxes)
        points += [np.zeros(10, np.float32)] * len(boxes)
    log.info("face-detector pool: %d windows, %d non-faces", len(kind), kind.count(NON_FACE))
    return WindowPool(
        torch.from_numpy(np.stack(small)),
        torch.from_numpy(np.stack(large)),
        torch.tensor(kind, dtype=torch.int64),
        torch.tensor(covered, dtype=torch.bool),
        torch.from_numpy(np.stack(offsets)),
        torch.from_numpy(np.stack(points)),
        torch.from_numpy(np.stack(target)),
    )


def _limited(files: list[Path], count: int) -> list[Path]:
    """At most ``count`` of ``files``, evenly spread over the sorted list."""
    return files if len(files) <= count else [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]


class FaceDetectorRecipe(SingleNetworkRecipe):
    name = FACE_DETECTOR_MODEL

    def __init__(self, config: FaceDetectorTrainConfig) -> None:
        setup = config.setup
        if setup.init is None:
            raise DataError("train face-detector fine-tunes the shipped detector: pass --init weights/mtcnn.safetensors")
        warn_unused_options([(not config.real and config.real_labels is not None, "--real-labels", "--real")])
        self.config = config
        torch.manual_seed(setup.seed)
        face_train, face_val = split_held_out(list_images(setup.data))
        real_train, real_val = [], []
        if config.real:
            real_train, real_val = split_held_out(split_real_photos(list_images(config.real), config.real_labels)[0])
            real_train, real_val = _limited(real_train, config.max_real_photos), _limited(real_val, config.max_real_photos // 10)
        scene_train, scene_val = [], []
        if config.scenes:
            scene_train, scene_val = split_held_out(list_images(config.scenes))
            scene_train, scene_val = _limited(scene_train, config.max_scene_photos), _limited(scene_val, config.max_scene_photos // 10)
        cache = Path(setup.checkpoint)
        depends_on = (setup.seed, get_spec(FACE_DETECTOR_MODEL).sha256, setup.init, {k: v for k, v in asdict(config).items() if k != "setup"})
        self.pool = cached_pool(
            cache, "train", ("train", *depends_on), face_train + real_train + scene_train, WindowPool,
            lambda: draw_pool(config, face_train, real_train, scene_train, config.non_faces, np.random.default_rng(setup.seed)),
        )
        self.val = cached_pool(
            cache, "val", ("val", *depends_on), face_val + real_val + scene_val, WindowPool,
            lambda: draw_pool(config, face_val, real_val, scene_val, max(config.non_faces // 10, 1), setup.validation_rng()),
        )
        self.rng = np.random.default_rng(setup.seed + 1)
        self.network = initial_network(get_spec(FACE_DETECTOR_MODEL), setup.init)
        self.network.pnet.requires_grad_(False)  # P-Net already proposes the faces this recipe is for
        trained = [p for p in self.network.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trained, lr=setup.learning_rate)
        self.by_kind = {k: torch.nonzero(self.pool.kind == k)[:, 0] for k in (FACE, PART, NON_FACE)}
        if not len(self.by_kind[NON_FACE]):
            raise DataError("no non-face windows in the training pool: give --scenes or --real photos (their training part)")
        self.thresholds = DetectorSettings().thresholds
        log.info("face-detector pools: %s training windows (faces, parts, non-faces), %d validation",
                 [len(v) for v in self.by_kind.values()], len(self.val.kind))

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"network": self.network}

    def metadata(self) -> dict:
        return {"config": asdict(self.config), "architecture": asdict(get_spec(FACE_DETECTOR_MODEL).config)}

    def _sample(self, kind: int, count: int) -> torch.Tensor:
        pool = self.by_kind[kind]
        return pool[torch.from_numpy(self.rng.integers(0, len(pool), count))]

    def train_step(self, step: int) -> dict[str, float]:
        batch = self.config.setup.batch_size
        indices = torch.cat([self._sample(FACE, batch // 4), self._sample(PART, batch // 4), self._sample(NON_FACE, batch // 2)])
        kind, offsets, points, goal = self.pool.kind[indices], self.pool.offsets[indices], self.pool.points[indices], self.pool.target[indices]
        losses = {}
        total = torch.zeros(())
        labelled = kind != PART
        is_face = kind[labelled] == FACE
        # Faces weigh 1 in total, non-faces non_face_weight.
        weights = torch.where(is_face, 1.0 / max(1, int(is_face.sum())), self.config.non_face_weight / max(1, int((~is_face).sum())))
        for column, (stage, crops) in enumerate((("rnet", self.pool.small[indices]), ("onet", self.pool.large[indices]))):
            outputs = getattr(self.network, stage)(_normalised(crops))
            probability, box = outputs[0], outputs[1]
            log_probability = torch.log(probability[labelled].clamp_min(1e-7))
            wanted = goal[labelled, column]
            classification = -((wanted * log_probability[:, 1] + (1 - wanted) * log_probability[:, 0]) * weights).sum()
            boxed = kind != NON_FACE
            regression = F.smooth_l1_loss(box[boxed], offsets[boxed], beta=0.1)
            loss = classification + 0.5 * regression
            if stage == "onet":
                faces = kind == FACE
                landmarks = F.smooth_l1_loss(outputs[2][faces], points[faces], beta=0.1)
                loss = loss + landmarks
                losses["landmarks"] = landmarks.item()
            losses[f"{stage} class"] = classification.item()
            total = total + loss
        optimise(self.optimizer, total)
        return {"loss": total.item(), **losses}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        val = self.val
        r = torch.cat([self.network.rnet(_normalised(val.small[i : i + 1024]))[0][:, 1] for i in range(0, len(val.kind), 1024)])
        o = torch.cat([self.network.onet(_normalised(val.large[i : i + 1024]))[0][:, 1] for i in range(0, len(val.kind), 1024)])
        passed = (r >= self.thresholds[1]) & (o >= self.thresholds[2])
        # A non-face passing both stages is a false hit unless the shipped stages passed it too.
        face, non_face = val.kind == FACE, (val.kind == NON_FACE) & ((val.target[:, 0] < self.thresholds[1]) | (val.target[:, 1] < self.thresholds[2]))
        covered, open_ = face & val.covered, face & ~val.covered
        recall_covered = float(passed[covered].float().mean()) if covered.any() else 0.0
        recall_open = float(passed[open_].float().mean()) if open_.any() else 0.0
        false_rate = float(passed[non_face].float().mean())
        score = (2 * recall_covered + recall_open) / 3 - FALSE_HIT_COST * false_rate
        if not (torch.isfinite(r).all() and torch.isfinite(o).all()):  # NaN passes nothing: a finite score, not a best
            score = float("nan")
        return {"score": score, "covered recall": recall_covered, "open recall": recall_open, "non-faces passed": false_rate}


def train_face_detector(config: FaceDetectorTrainConfig, resume: bool = False, on_step=None) -> TrainState:
    recipe = FaceDetectorRecipe(config)
    return run(recipe, config.setup.schedule(), resume=resume, on_step=on_step)
