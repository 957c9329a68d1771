"""Face detection with five landmarks: the MTCNN cascade's procedure (Zhang et al. 2016).

P-Net scans an image pyramid for 12x12 face windows, R-Net re-scores the candidates at 24x24, O-Net
at 48x48 adds the five landmarks (eyes, nose tip, mouth corners). Between stages boxes are refined by
the predicted offsets, squared, and thinned by non-maximum suppression.

Large photos are searched on a copy whose long side is at most ``max_side``, but never shrunk so far that a face of
``smallest_face`` pixels in the photo falls below the cascade's ``min_face`` there (small faces in group photos and
street scenes of large scans); boxes and landmarks are scaled back.

MTCNN was trained on upright faces and misses faces tilted by more than about 30 degrees (a head leaning on a
shoulder, children in a heap). Two more passes search the photo turned by -30 and +30 degrees for faces of at least
40 px, keep only the ones O-Net is very sure of, and turn their boxes and landmarks back
(``DetectorSettings.tilted_*``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from oldphoto.archs.mtcnn import MTCNN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Face:
    """A detected face in image pixel coordinates.

    Attributes:
        box: (x1, y1, x2, y2).
        score: O-Net face probability in [0, 1].
        landmarks: (5, 2) float32 (x, y) of left eye, right eye, nose tip, left and right mouth corner
            (left/right as seen in the image).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


@dataclass(frozen=True)
class DetectorSettings:
    min_face: int = 20
    """Smallest face side searched for, in pixels of the (possibly downscaled) search image."""
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)
    """Face-probability thresholds of P-Net, R-Net and O-Net."""
    pyramid_factor: float = 0.709
    max_side: int = 1600
    """Long side of the copy large photos are searched on (bounds the time), unless ``smallest_face`` needs more."""
    smallest_face: int = 24
    """Smallest face side to find, in the photo's own pixels: the search copy is never shrunk below
    ``min_face / smallest_face``, so such a face keeps ``min_face`` pixels there."""

    tilted_angles: tuple[float, ...] = (-30.0, 30.0)
    """In-plane rotations (degrees, counter-clockwise) of the extra passes that find tilted faces; () for none."""
    tilted_min_face: int = 40
    """Smallest face side the tilted passes search for, in the photo's pixels: small tilted faces are few, and each
    pass costs a fraction of the upright one from 40 px instead of 20."""
    tilted_pyramid_factor: float = 0.6
    """Scale step of the tilted passes' image pyramid (the upright search's is ``pyramid_factor``): coarser, so that
    both passes cost about as much as the upright one (at 6 and 24 MP 0.23–0.25 s/MP in all, against 0.28–0.29 at
    0.709), with the same faces found on the labelled real photos."""
    tilted_threshold: float = 0.95
    """O-Net probability a face found only by a tilted pass needs (the upright pass needs ``thresholds[2]``): chosen on
    the labelled real photos, where 0.9 found as many of their faces with more false hits."""
    rescue_refine_score: float | None = 0.5
    """R-Net probability from which a candidate under R-Net's threshold still goes on to O-Net in the upright search,
    where it then needs ``rescue_threshold``; None: R-Net's threshold decides alone. R-Net, judging 24-px crops, turns
    down faces that O-Net, on 48-px crops, is sure of: a face in a hat's shadow, one half hidden, a blurred one."""
    rescue_threshold: float = 0.95
    """O-Net probability a candidate R-Net turned down needs (see ``rescue_refine_score``)."""

    def search_scale(self, height: int, width: int) -> float:
        """The scale of the copy a (height, width) photo is searched on, at most 1."""
        return min(1.0, max(self.max_side / max(height, width), self.min_face / self.smallest_face))


_NMS_BLOCK = 64
_REFINE_CHUNK = 128
"""Crops R-Net judges per call: on 2 cores R-Net takes 30 us a crop in batches of 128 but 80 us in one batch of 3,000
(a crowded photo's candidates), whose activations no longer fit in the caches."""
_OUTPUT_CHUNK = 64
"""Crops O-Net judges per call, for the same reason (180 against 450 us a crop for 844 crops at once)."""


def _in_chunks(stage: torch.nn.Module, crops: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    """``stage``'s outputs for (N, 3, S, S) ``crops`` (N >= 1, as the stages need), run ``chunk`` crops at a time
    and joined along N."""
    parts = [stage(crops[start : start + chunk]) for start in range(0, len(crops), chunk)]
    return [torch.cat(outputs) for outputs in zip(*parts)]


def _normalise(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) or (N, H, W, 3) float in [0, 1] -> (N, 3, H, W) scaled as MTCNN's weights expect."""
    batch = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))
    if batch.dim() == 3:
        batch = batch[None]
    # In place after the first product: the same arithmetic as (x * 255 - 127.5) / 128 without two full temporaries.
    return (batch.permute(0, 3, 1, 2) * 255.0).sub_(127.5).div_(128.0)


def non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_minimum: bool = False) -> np.ndarray:
    """Indices of the boxes kept, best first: greedy, each box kept unless it overlaps a better kept box by more
    than ``threshold``. ``boxes`` (N, 4) x1, y1, x2, y2. Overlap is intersection over union, or over the smaller box
    when ``by_minimum`` (drops boxes nested in a better one)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[order].T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    count = len(order)
    suppressed = np.zeros(count, bool)
    keep = []
    # The overlaps of a block of rows with every later box still standing, at once: a crowded photo gives P-Net
    # thousands of windows, and one vectorised block costs far less than a numpy call per kept box over the survivors.
    for start in range(0, count, _NMS_BLOCK):
        rows = np.arange(start, min(count, start + _NMS_BLOCK))
        rows = rows[~suppressed[rows]]
        if len(rows) == 0:
            continue
        later = rows[0] + np.flatnonzero(~suppressed[rows[0] :])
        w = np.maximum(0.0, np.minimum(x2[rows, None], x2[None, later]) - np.maximum(x1[rows, None], x1[None, later]) + 1)
        h = np.maximum(0.0, np.minimum(y2[rows, None], y2[None, later]) - np.maximum(y1[rows, None], y1[None, later]) + 1)
        intersection = w * h
        if by_minimum:
            denominator = np.minimum(area[rows, None], area[None, later])
        else:
            denominator = area[rows, None] + area[None, later] - intersection
        # Each row suppresses only boxes after it (never itself or a better one).
        overlapping = ~(intersection / denominator <= threshold) & (later[None, :] > rows[:, None])
        for row, i in enumerate(rows):
            if not suppressed[i]:
                keep.append(order[i])
                suppressed[later[overlapping[row]]] = True
    return np.asarray(keep, np.int64)


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply predicted offsets (fractions of the box size) to (N, 4) boxes."""
    size = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1] * 2, axis=1)
    return boxes + offsets * size


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow (N, 4) boxes to squares around the same centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + (w - side) / 2
    y1 = boxes[:, 1] + (h - side) / 2
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> torch.Tensor:
    """Cut (N, 4) boxes out of (H, W, 3) ``image`` (zero outside it), resized to size x size: (N, 3, size, size)."""
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.rint(boxes).astype(int)):
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        if x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height:
            patch = image[y1:y2, x1:x2]
        else:
            patch = np.zeros((y2 - y1, x2 - x1, 3), np.float32)
            sx1, sy1, sx2, sy2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
            if sx1 < sx2 and sy1 < sy2:
                patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return _normalise(out)


def _proposals(image: np.ndarray, network: MTCNN, settings: DetectorSettings) -> np.ndarray:
    """P-Net over the pyramid: (N, 9) rows of x1, y1, x2, y2, score, 4 offsets."""
    height, width = image.shape[:2]
    cell = network.config.proposal_cell
    scale = cell / settings.min_face
    found = []
    source = image
    while min(height, width) * scale >= cell:
        size = (max(cell, int(width * scale + 1)), max(cell, int(height * scale + 1)))
        # Each level is shrunk from the smallest halving of the photo still at least twice its size, not from the
        # photo itself: area averaging reads every source pixel, so ten levels cut from a 1.3 MP photo took a third of
        # the upright search. The levels differ only where a pixel straddles a block edge: on the 23 labelled photos
        # the same 148 faces were found (one box moved, IoU 0.76, a borderline P-Net window winning over another).
        while source.shape[1] // 2 >= 2 * size[0] and source.shape[0] // 2 >= 2 * size[1]:
            source = cv2.resize(source, (source.shape[1] // 2, source.shape[0] // 2), interpolation=cv2.INTER_AREA)
        resized = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
        probability, offsets = network.pnet(_normalise(resized))
        face = probability[0, 1].numpy()
        ys, xs = np.nonzero(face >= settings.thresholds[0])
        if len(ys):
            windows = np.stack([xs, ys], axis=1).astype(np.float32)
            top_left = np.floor((2 * windows + 1) / scale)
            bottom_right = np.floor((2 * windows + cell) / scale)
            rows = np.concatenate(
                [top_left, bottom_right, face[ys, xs, None], offsets[0].numpy()[:, ys, xs].T], axis=1
            )
            rows = rows[non_maximum_suppression(rows[:, :4], rows[:, 4], 0.5)]
            found.append(rows)
        scale *= settings.pyramid_factor
    return np.concatenate(found) if found else np.zeros((0, 9), np.float32)


@torch.inference_mode()
def detect_faces(rgb: np.ndarray, network: MTCNN, settings: DetectorSettings = DetectorSettings()) -> list[Face]:
    """Faces in a photo, largest first. Always in float32, whatever the run's precision.

    Args:
        rgb: (H, W, 3) float32 in [0, 1] (black-and-white photos as three equal channels).
        network: the MTCNN cascade, on the CPU.
    """
    # Float32 even inside a bf16 autocast: the cascade's fixed thresholds and landmark regression are sensitive
    # to bf16 rounding. Measured on 24 photos (ffhq-val, bopbtl_old, 5 Kodak crops, the 1870 fixture), bf16 found
    # one face more, moved boxes (IoU down to 0.83) and landmarks (up to 12 px on a 512-px face photo, which
    # misaligns the refiner's crop), and was no faster: MTCNN's work is many tiny crops.
    with torch.autocast("cpu", enabled=False):
        faces = _detect(rgb, network, settings)
        tilted = [face for angle in settings.tilted_angles for face in _detect_tilted(rgb, network, settings, angle)]
    for face in sorted(tilted, key=lambda face: -face.score):
        # A tilted pass finds upright faces too, and the same tilted face in both passes: keep the first of each.
        if not any(_same_face(face, other) for other in faces):
            faces.append(face)
    return sorted(faces, key=lambda face: -face.size)


def _same_face(a: Face, b: Face) -> bool:
    """Whether two detections overlap by more than 30% of the smaller one's square."""
    width = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
    height = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    return max(width, 0.0) * max(height, 0.0) > 0.3 * min(a.size, b.size) ** 2


def _detect_tilted(rgb: np.ndarray, network: MTCNN, settings: DetectorSettings, angle: float) -> list[Face]:
    """Faces of at least ``settings.tilted_min_face`` pixels found in the photo turned by ``angle`` degrees about its
    centre (same size; the corners turned in are mid-grey), as upright boxes around their centres turned back, with
    their landmarks turned back."""
    height, width = rgb.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    turned = cv2.warpAffine(rgb, turn, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0.5, 0.5, 0.5))
    back = cv2.invertAffineTransform(turn)
    # No rescue of R-Net's rejects here: the turned copies' candidates already need O-Net's tilted threshold, and on
    # the labelled real photos rescuing there too found no more faces and one more false hit.
    search = replace(
        settings,
        min_face=settings.tilted_min_face,
        smallest_face=settings.tilted_min_face,
        thresholds=(settings.thresholds[0], settings.thresholds[1], settings.tilted_threshold),
        pyramid_factor=settings.tilted_pyramid_factor,
        rescue_refine_score=None,
    )
    found = []
    for face in _detect(turned, network, search):
        centre = back @ np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2, 1.0])
        if not (0 <= centre[0] < width and 0 <= centre[1] < height):
            continue
        half = face.size / 2
        landmarks = (np.c_[face.landmarks, np.ones(len(face.landmarks))] @ back.T).astype(np.float32)
        box = (float(centre[0] - half), float(centre[1] - half), float(centre[0] + half), float(centre[1] + half))
        found.append(Face(box, face.score, landmarks))
    return found


def _detect(rgb: np.ndarray, network: MTCNN, settings: DetectorSettings) -> list[Face]:
    height, width = rgb.shape[:2]
    shrink = settings.search_scale(height, width)
    image = rgb if shrink == 1.0 else cv2.resize(rgb, (round(width * shrink), round(height * shrink)), interpolation=cv2.INTER_AREA)

    rows = _proposals(image, network, settings)
    if len(rows) == 0:
        return []
    rows = rows[non_maximum_suppression(rows[:, :4], rows[:, 4], 0.7)]
    boxes = _square(_regress(rows[:, :4], rows[:, 5:9]))

    probability, offsets = _in_chunks(network.rnet, _crops(image, boxes, network.config.refine_size), _REFINE_CHUNK)
    refine_threshold = settings.thresholds[1]
    lowest = refine_threshold if settings.rescue_refine_score is None else min(refine_threshold, settings.rescue_refine_score)
    keep = probability[:, 1].numpy() >= lowest
    boxes, scores, offsets = boxes[keep], probability[keep, 1].numpy(), offsets[keep].numpy()
    if len(boxes) == 0:
        return []
    kept = non_maximum_suppression(boxes, scores, 0.7)
    rescued = scores[kept] < refine_threshold
    boxes = _square(_regress(boxes[kept], offsets[kept]))

    faces = _output_stage(image, boxes[~rescued], network, settings.thresholds[2], shrink)
    if rescued.any():
        # O-Net on its own batch, so that the other candidates' scores are exactly as without the rescue, and a rescued
        # face only adds to the faces found: never one of them moved or replaced.
        threshold = max(settings.rescue_threshold, settings.thresholds[2])
        extra = _output_stage(image, boxes[rescued], network, threshold, shrink)
        faces += [face for face in extra if not any(_same_face(face, other) for other in faces)]
    return sorted(faces, key=lambda face: -face.size)


def _output_stage(image: np.ndarray, boxes: np.ndarray, network: MTCNN, threshold: float, shrink: float) -> list[Face]:
    """O-Net on the (N, 4) candidate boxes of the search image: those it scores at least ``threshold``, boxes refined,
    nested ones suppressed, with their landmarks, in the photo's pixels (the search image is ``shrink`` times it)."""
    if len(boxes) == 0:
        return []
    probability, offsets, points = _in_chunks(network.onet, _crops(image, boxes, network.config.output_size), _OUTPUT_CHUNK)
    keep = probability[:, 1].numpy() >= threshold
    boxes, scores = boxes[keep], probability[keep, 1].numpy()
    offsets, points = offsets[keep].numpy(), points[keep].numpy()
    if len(boxes) == 0:
        return []
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    landmarks = np.stack([boxes[:, :1] + w * points[:, :5] - 1, boxes[:, 1:2] + h * points[:, 5:] - 1], axis=2)
    boxes = _regress(boxes, offsets)
    kept = non_maximum_suppression(boxes, scores, 0.7, by_minimum=True)
    return [
        Face(tuple(float(v) / shrink for v in boxes[i]), float(scores[i]), (landmarks[i] / shrink).astype(np.float32))
        for i in kept
    ]
