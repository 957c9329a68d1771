"""Stage 1: find structured damage (scratches, cracks, dust, hairs, tears)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from oldphoto.archs.scratch_verifier import COMPONENT_SCALARS
from oldphoto.errors import ConfigError
from oldphoto.imageio import is_black_and_white, luma_plane
from oldphoto.registry import SCRATCH_MODEL, SCRATCH_VERIFIER_MODEL, ModelSpec, get_spec, settings_group
from oldphoto.runtime import Runtime
from oldphoto.tiling import tile_stage
from oldphoto.weights import LoadedModel, load_model


MAX_MASK_DILATION = 64
"""The most --mask-dilation grows a mark (pixels each side): a scratch mask grown further repaints whole regions, and
a value such as 100,000 failed each photo on a 40 GB allocation after its detection (300 px took 10 s a
megapixel)."""


def check_detection_overrides(threshold: float | None, dilation: int | None) -> None:
    """Refuse a ``--scratch-threshold`` outside (0, 1) or a ``--mask-dilation`` outside 0..:data:`MAX_MASK_DILATION`
    (None: the registry's).

    Raises:
        ConfigError: with what the value must be.
    """
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ConfigError(f"scratch threshold {threshold} must be between 0 and 1 (exclusive)")
    if dilation is not None and not 0 <= dilation <= MAX_MASK_DILATION:
        raise ConfigError(f"mask dilation {dilation} must be 0 to {MAX_MASK_DILATION} pixels")


def detection_settings(spec: ModelSpec, threshold: float | None = None, dilation: int | None = None) -> tuple[float, int]:
    """(threshold, dilation) of a detection run: the given values where set (``--scratch-threshold``,
    ``--mask-dilation``), else the detector's registry settings (chosen on validation data). The one place where
    these are resolved.

    Raises:
        ConfigError: a given value is out of range (:func:`check_detection_overrides`).
    """
    check_detection_overrides(threshold, dilation)
    chosen_threshold = float(spec.settings["threshold"]) if threshold is None else threshold
    chosen_dilation = int(spec.settings.get("dilation", 0)) if dilation is None else dilation
    return chosen_threshold, chosen_dilation


def scratch_probability(
    pixels: np.ndarray,
    model: LoadedModel,
    runtime: Runtime,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Per-pixel damage probability: (H, W, 1|3) float32 in [0, 1] -> (H, W) float32 in [0, 1].

    ``model`` is the detector placed for ``runtime`` (:func:`~oldphoto.weights.load_model`): its network maps
    (1, 1, h, w) luma in [0, 1] to logits; its contract gives the tile grid and the least tile overlap.
    """
    luma = torch.from_numpy(luma_plane(pixels))[None, None]
    network = model.network
    probability = tile_stage(
        # Logits to float32 first: under bf16 autocast the sigmoid would otherwise round probabilities to 3 digits.
        lambda tile: torch.sigmoid(network(tile).float()),
        luma,
        runtime,
        min_overlap=model.contract.min_tile_overlap,
        multiple_of=model.contract.size_multiple,
        on_tile=on_tile,
    )
    return probability[0, 0].numpy()


def dilate_mask(mask: np.ndarray, dilation: int) -> np.ndarray:
    """(H, W) mask of 0/1 grown by ``dilation`` pixels (a disc), as float32."""
    mask = (mask > 0).astype(np.uint8)
    if dilation > 0:
        size = 2 * dilation + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return mask.astype(np.float32)


def threshold_mask(probability: np.ndarray, threshold: float, dilation: int = 0) -> np.ndarray:
    """Binary (H, W) float32 mask of 0/1: probability above ``threshold``, grown by ``dilation`` pixels."""
    return dilate_mask(probability > threshold, dilation)


@dataclass(frozen=True)
class MaskComponents:
    """The 8-connected components of a binary mask.

    Attributes:
        labels: (H, W) int32, 0 outside the mask, k + 1 on component k.
        boxes: (K, 4) int64 x, y, width, height of each component's bounding box, in pixels.
        areas: (K,) int64 pixel count of each component.
    """

    labels: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray

    def __len__(self) -> int:
        return len(self.areas)

    def mask_of(self, keep: np.ndarray) -> np.ndarray:
        """(H, W) float32 mask of 0/1 of the components where ``keep`` ((K,) bool) is true."""
        return np.concatenate([[False], keep])[self.labels].astype(np.float32)


def mask_components(mask: np.ndarray) -> MaskComponents:
    """The 8-connected components of ``mask`` ((H, W), nonzero = marked)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(mask > 0, dtype=np.uint8), connectivity=8)
    return MaskComponents(labels=labels, boxes=stats[1:, :4].astype(np.int64), areas=stats[1:, 4].astype(np.int64))


RING = 3
"""Width (pixels) of the ring around a component whose luma the verifier compares with the component's own."""


def touches_border(box: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether a component's box ``(x, y, w, h)`` reaches the edge of an image of ``shape`` (H, W, ...)."""
    x, y, w, h = (int(v) for v in box)
    return x == 0 or y == 0 or x + w == shape[1] or y + h == shape[0]


def _square_crop(image: np.ndarray, x0: int, y0: int, side: int, fill: float | None) -> np.ndarray:
    """``image[y0 : y0 + side, x0 : x0 + side]`` where it lies outside ``image`` padded with its edge (``fill``
    None) or with ``fill``."""
    height, width = image.shape
    top, left = max(y0, 0), max(x0, 0)
    part = image[top : min(y0 + side, height), left : min(x0 + side, width)]
    before_y, before_x = top - y0, left - x0
    padding = ((before_y, side - before_y - part.shape[0]), (before_x, side - before_x - part.shape[1]))
    if fill is None:
        return np.pad(part, padding, mode="edge")
    return np.pad(part, padding, mode="constant", constant_values=fill)


def component_features(
    luma: np.ndarray, probability: np.ndarray, components: MaskComponents, crop: int, which=None, native: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """What the scratch verifier sees of each component: (crops, scalars).

    ``luma`` and ``probability`` are (H, W) float32 in [0, 1] (the photo's luma and the detector's output). Each
    component is cropped with context (a square of twice its longer side plus 24 px, centred on its box) and
    resized to ``crop`` pixels: crops is (K, 3, crop, crop) float32 in [0, 1] (luma, probability, the component's
    own pixels). scalars is (K, 10) float32: log2 of the area, of the longer and of the shorter box side (scaled to
    about [0, 1]), the share of its box it fills, its mean and max probability, whether it touches the photo's
    edge, its mean luma, and the mean and standard deviation of the luma in a 3 px ring around it. ``which``: only
    the components of these numbers (a range or an index array; K = its length; default all). With ``native``,
    three more channels: the same at the photo's own resolution, a ``crop``-pixel square centred on the component's
    most probable pixel (where a scratch's sharp edge, or a scene line's grain and blur, can be seen).
    """
    height, width = luma.shape
    which = range(len(components)) if which is None else which
    crops = np.empty((len(which), 6 if native else 3, crop, crop), np.float32)
    scalars = np.empty((len(which), COMPONENT_SCALARS), np.float32)
    ring_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * RING + 1, 2 * RING + 1))
    for row, k in enumerate(which):
        (x, y, w, h), area = components.boxes[k], components.areas[k]
        side = 2 * int(max(w, h)) + 24
        x0, y0 = int(x) + int(w) // 2 - side // 2, int(y) + int(h) // 2 - side // 2
        own = (_square_crop(components.labels, x0, y0, side, 0) == k + 1).astype(np.float32)
        interpolation = cv2.INTER_AREA if side > crop else cv2.INTER_LINEAR
        for channel, image in enumerate((_square_crop(luma, x0, y0, side, None), _square_crop(probability, x0, y0, side, None), own)):
            crops[row, channel] = cv2.resize(image, (crop, crop), interpolation=interpolation)
        if native:
            region = components.labels[y : y + h, x : x + w] == k + 1
            peak = np.argmax(np.where(region, probability[y : y + h, x : x + w], -1.0))
            cy, cx = int(y) + peak // int(w), int(x) + peak % int(w)
            nx0, ny0 = cx - crop // 2, cy - crop // 2
            crops[row, 3] = _square_crop(luma, nx0, ny0, crop, None)
            crops[row, 4] = _square_crop(probability, nx0, ny0, crop, None)
            crops[row, 5] = _square_crop(components.labels, nx0, ny0, crop, 0) == k + 1
        # The component and its ring, measured in its box grown by the ring's width.
        bx0, by0 = max(int(x) - RING, 0), max(int(y) - RING, 0)
        bx1, by1 = min(int(x + w) + RING, width), min(int(y + h) + RING, height)
        inside = components.labels[by0:by1, bx0:bx1] == k + 1
        ring = (cv2.dilate(inside.astype(np.uint8), ring_kernel) > 0) & (components.labels[by0:by1, bx0:bx1] == 0)
        box_luma, box_probability = luma[by0:by1, bx0:bx1], probability[by0:by1, bx0:bx1]
        ring_luma = box_luma[ring] if ring.any() else box_luma[inside]
        scalars[row] = (
            np.log2(area) / 16,
            np.log2(max(w, h)) / 12,
            np.log2(min(w, h)) / 12,
            area / (w * h),
            box_probability[inside].mean(),
            box_probability[inside].max(),
            float(touches_border(components.boxes[k], luma.shape)),
            box_luma[inside].mean(),
            ring_luma.mean(),
            ring_luma.std(),
        )
    return crops, scalars


VERIFIER_BATCH = 256
"""Components the verifier scores at once: bounds its memory (3 MB per batch) on photos with thousands of specks."""


@torch.inference_mode()
def damage_scores(
    pixels: np.ndarray, probability: np.ndarray, components: MaskComponents, verifier: LoadedModel, which: np.ndarray | None = None
) -> np.ndarray:
    """(K,) float32 probability in [0, 1] that each of ``components`` (of a mask of ``probability``, (H, W) in
    [0, 1]) is damage, or of those numbered ``which``; ``pixels`` is the (H, W, 1|3) photo in [0, 1]."""
    luma = luma_plane(pixels)
    network = verifier.network
    chosen = np.arange(len(components)) if which is None else which
    scores = [np.zeros(0, np.float32)]
    for start in range(0, len(chosen), VERIFIER_BATCH):
        batch = chosen[start : start + VERIFIER_BATCH]
        crops, scalars = component_features(luma, probability, components, network.config.crop, batch, network.config.native_patch)
        scores.append(torch.sigmoid(network(torch.from_numpy(crops), torch.from_numpy(scalars))).numpy())
    return np.concatenate(scores)


def thin_components(components: MaskComponents, width: float) -> np.ndarray:
    """(K,) bool: the components at most ``width`` pixels thick on average (area over the longer box side): lines,
    which the verifier does not judge."""
    return components.areas <= width * components.boxes[:, 2:].max(axis=1)


@dataclass(frozen=True)
class StraightLineRule:
    """Which marks are straight lines shaped like man-made scene objects, and the verifier score they need: lines
    lying level or plumb inside the photo and straight, and lines at any other angle that are ruler-straight.

    Photographers hold the camera level, so rails, rods, shelves, window frames, poles and hems run level or plumb;
    seen in perspective, rails, rods and shafts still run ruler-straight. Scratches and cracks run at any angle and
    rarely dead straight: they bow or wander a little. The verifier, trained mostly on synthetic damage and scene
    lines drawn at any angle, lets many such scene lines through at scores of 0.47-0.8, and the global stage then
    erases them. Exempt are the lines that may be the print's own edge or a fold (:func:`print_edge_or_fold`): a
    level or plumb line touching the border it runs along, and any line running from border to border. A rail or a
    frame that runs into a border across it, and a slanted line touching any border, are judged.
    """

    min_length: float
    """Length (pixels, along the mark's main axis, estimated from its second moment: a bar of L pixels measures
    sqrt(L^2 - 1)) from which a straight mark counts as a line."""
    max_tilt: float
    """Largest angle (degrees) between a level or plumb line and the photo's rows or columns."""
    max_spread: float
    """Largest spread across a level or plumb line (pixels, from the second moment) as a multiple of its mean
    thickness: 1 for a straight bar, far more for a curved or branching crack."""
    min_elongation: float
    """Smallest length over mean thickness: a line, not a straight-edged stain or emulsion loss."""
    min_score: float
    """The verifier score such a line needs to be kept as damage (at least the verifier's usual one); thin ones are
    judged too."""
    max_slanted_spread: float
    """The same for a line at any other angle, stricter: ruler-straight (a bar drawn at 30 degrees measures 1.0, the
    same bar bowed by 3 px over 100 px 1.25)."""

    def matches(self, components: MaskComponents) -> np.ndarray:
        """(K,) bool: the components that are such lines."""
        found = np.zeros(len(components), bool)
        # A line of length L spans at least L cos(45 degrees) of its box's longer side.
        candidates = components.boxes[:, 2:].max(axis=1) >= self.min_length * np.cos(np.radians(45.0))
        for k in np.flatnonzero(candidates):
            x, y, w, h = (int(v) for v in components.boxes[k])
            ys, xs = np.nonzero(components.labels[y : y + h, x : x + w] == k + 1)
            points = np.stack([xs, ys], axis=1).astype(np.float64)
            points -= points.mean(axis=0)
            variances, axes = np.linalg.eigh(points.T @ points / len(points))
            # A uniform bar of length L has variance L^2 / 12 along it; its spread across is its thickness.
            length, spread = np.sqrt(12.0 * variances[1]), np.sqrt(12.0 * max(float(variances[0]), 0.0))
            thickness = len(points) / max(length, 1.0)
            direction = float(np.degrees(np.arctan2(axes[1, 1], axes[0, 1]))) % 180.0  # of the main axis
            from_level = min(direction, 180.0 - direction)  # 0..90: 0 level, 90 plumb
            tilt = min(from_level, 90.0 - from_level)
            # Only a level or plumb line can lie along a border; any line may run edge to edge.
            if print_edge_or_fold(components.boxes[k], from_level <= 45.0, components.labels.shape, along=tilt <= self.max_tilt):
                continue
            max_spread = self.max_spread if tilt <= self.max_tilt else self.max_slanted_spread
            found[k] = length >= max(self.min_length, self.min_elongation * thickness) and spread <= max_spread * thickness
        return found

    @classmethod
    def of(cls, settings: Mapping[str, float | str]) -> StraightLineRule | None:
        """The rule of a verifier's registry settings (``line_<field>`` for each field), or None when they have none.

        Raises:
            ConfigError: some of the rule's settings are there, not all.
        """
        names = [field.name for field in fields(cls)]
        values = settings_group(settings, [f"line_{name}" for name in names], "verifier's straight-line rule")
        return None if values is None else cls(**{name: float(values[f"line_{name}"]) for name in names})


@dataclass(frozen=True)
class ColourRule:
    """Which marks on a colour photo are more colourful than the photo around them: scene content, not damage.

    Damage shows what lies under or on the image: bare paper (white, or cream and yellowed: bright and warm), dirt and
    dust (grey, black), the image's own silver or dyes broken up. It does not bring a colour of its own, so a mark at
    least about as saturated as the ring around it is a coloured object of the scene (a sign, a flower, a stripe of a
    fish, a painted rail), and one far less saturated may be damage. Bright, warm marks (red >= green >= blue) are
    exempt, as bare yellowed paper looks like that. Saturation is HSV's, (max - min) / max (with ``dark`` added to the
    max so that the noise of black areas does not count), so a print's tint that scales with its brightness (sepia, a
    cast) reads the same inside a bright crack and in the dark image around it. Black-and-white photos are left alone.
    A known miss: a scratch on a colour print that took off one dye layer shows the others' colour; precision first.
    """

    ratio: float
    """A mark whose mean saturation is at least this times its ring's is colourful."""
    ring: int = 6
    """Width (pixels) of the ring around a mark whose saturation it is compared with."""
    dark: float = 0.05
    """Added to each pixel's max before dividing: near-black pixels count as unsaturated."""
    paper_level: float = 0.5
    """Marks whose mean colour is warm (red >= green >= blue) and brighter than this (max channel) are bare paper."""

    def matches(self, pixels: np.ndarray, components: MaskComponents, which: np.ndarray) -> np.ndarray:
        """(K,) bool: the components numbered ``which`` that are colourful (others False). ``pixels``: the (H, W,
        1|3) photo in [0, 1]; always False for a grey or black-and-white photo."""
        found = np.zeros(len(components), bool)
        # Every 4th pixel each way tells a black-and-white photo as well, at 1/16 of the cost on a large scan.
        if pixels.ndim != 3 or pixels.shape[2] != 3 or not len(which) or is_black_and_white(pixels[::4, ::4]):
            return found
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.ring + 1, 2 * self.ring + 1))
        height, width = components.labels.shape
        for k in which:
            x, y, w, h = (int(v) for v in components.boxes[k])
            x0, y0 = max(x - self.ring, 0), max(y - self.ring, 0)
            x1, y1 = min(x + w + self.ring, width), min(y + h + self.ring, height)
            labels = components.labels[y0:y1, x0:x1]
            inside = labels == k + 1
            ring = (cv2.dilate(inside.astype(np.uint8), kernel) > 0) & (labels == 0)
            if not ring.any():
                continue
            box = pixels[y0:y1, x0:x1]
            brightest = box.max(axis=2)
            saturation = (brightest - box.min(axis=2)) / (brightest + self.dark)
            red, green, blue = box[inside].mean(axis=0)
            if red >= green >= blue and red > self.paper_level:
                continue
            found[k] = saturation[inside].mean() >= self.ratio * saturation[ring].mean()
        return found

    @classmethod
    def of(cls, settings: Mapping[str, float | str]) -> ColourRule | None:
        """The rule of a verifier's registry settings (``colour_ratio``), or None when they have none."""
        return None if "colour_ratio" not in settings else cls(ratio=float(settings["colour_ratio"]))


@dataclass(frozen=True)
class SparseDamageRule:
    """On a photo that shows little damage, a mark needs a clear score to be kept.

    Scene content is in every photo, damage only on damaged prints. When the marks the verifier keeps cover less than
    ``coverage`` of the photo, the photo shows little damage, and a mark the verifier is unsure of is then more often a
    thin scene object (a pole, a rope, a rail, a branch, a lit edge) than damage, which the global stage would paint
    over: each judged mark needs at least ``min_score``, and the lines thin enough to be kept unjudged elsewhere are
    judged too and need ``line_score``. The verifier's crops resolve a 1-2 px line poorly (real hairline scratches
    score 0.5-0.75 there, rods, pipes, window bars and spokes 0.2-0.5, but grass blades, fronds, stems and rims of
    real photos 0.5-0.7 as well), so the registry asks the lines as much as the other marks. A scratched print, whose
    marks cover more, keeps the verifier's usual rules.
    """

    coverage: float
    """Share of the photo (0..1) that the kept marks must cover for the photo to count as damaged."""
    min_score: float
    """The verifier score each judged mark needs on a photo that shows less damage than that."""
    line_score: float
    """The score the thin lines (kept unjudged on other photos) need there."""

    def applies(self, components: MaskComponents, kept: np.ndarray) -> bool:
        """Whether the ``kept`` components ((K,) bool) cover less than ``coverage`` of the photo."""
        return float(components.areas[kept].sum()) < self.coverage * components.labels.size

    @classmethod
    def of(cls, settings: Mapping[str, float | str]) -> SparseDamageRule | None:
        """The rule of a verifier's registry settings (``sparse_<field>`` for each field), or None when they have
        none.

        Raises:
            ConfigError: some of the rule's settings are there, not all.
        """
        names = [field.name for field in fields(cls)]
        values = settings_group(settings, [f"sparse_{name}" for name in names], "verifier's sparse-damage rule")
        return None if values is None else cls(**{name: float(values[f"sparse_{name}"]) for name in names})


def print_edge_or_fold(box: np.ndarray, level: bool, shape: tuple[int, ...], along: bool = True) -> bool:
    """Whether a line with box ``(x, y, w, h)`` in an image of ``shape`` (H, W, ...), running nearer level than
    plumb when ``level`` (else nearer plumb), may be a print's own edge or a fold: it touches a border it runs along
    (a torn or chipped edge, or the crack along it; only when ``along``, for a line lying level or plumb), or it runs
    from one border to the opposite one (a fold or crease crosses the whole print)."""
    x, y, w, h = (int(v) for v in box)
    height, width = shape[:2]
    if level:
        return (along and (y == 0 or y + h == height)) or (x == 0 and x + w == width)
    return (along and (x == 0 or x + w == width)) or (y == 0 and y + h == height)


@dataclass(frozen=True)
class VerifierRules:
    """How the verifier's scores decide which marks are kept (:func:`judge_marks`): the registry's settings of the
    verifier, read once (:meth:`of`)."""

    min_score: float = 0.5
    """The verifier's score (probability of damage) a component needs to be kept."""
    keep_width: float = 0.0
    """Lines at most this thick (pixels, on average) are kept without being judged (:func:`thin_components`)."""
    straight_lines: StraightLineRule | None = None
    """Straight lines shaped like scene objects need a higher score (the verifier's registry ``line_*`` settings)."""
    colour: ColourRule | None = None
    """Marks more colourful than their surroundings are dropped (the verifier's registry ``colour_ratio``)."""
    sparse: SparseDamageRule | None = None
    """On a photo that shows little damage, marks need a clear score (the verifier's registry ``sparse_*``)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"verifier score {self.min_score} must be between 0 and 1")
        if self.keep_width < 0:
            raise ConfigError(f"kept line width {self.keep_width} must be 0 or more")

    @classmethod
    def of(
        cls,
        settings: Mapping[str, float | str],
        min_score: float | None = None,
        keep_width: float | None = None,
        straight_lines: bool = True,
        colour: bool = True,
        sparse: bool = True,
    ) -> VerifierRules:
        """The rules of a verifier's registry ``settings`` (``min_score``: another score to keep a mark;
        ``keep_width``: another thickness up to which lines are kept unjudged; ``straight_lines`` / ``colour`` /
        ``sparse`` False: without the registry's :class:`StraightLineRule` / :class:`ColourRule` /
        :class:`SparseDamageRule`, for comparisons).

        Raises:
            ConfigError: a given setting is out of range, or a rule's settings are incomplete.
        """
        return cls(
            min_score=float(settings["min_score"]) if min_score is None else min_score,
            keep_width=float(settings.get("keep_width", 0.0)) if keep_width is None else keep_width,
            straight_lines=StraightLineRule.of(settings) if straight_lines else None,
            colour=ColourRule.of(settings) if colour else None,
            sparse=SparseDamageRule.of(settings) if sparse else None,
        )


@dataclass(frozen=True)
class MarkVerdicts:
    """Why each component of a detector's mask is kept or dropped (all arrays (K,), one entry per component)."""

    lines: np.ndarray
    """bool: taken by the straight-line rule (it then needs ``needed``, the rule's score, and is judged even if thin)."""
    thin: np.ndarray
    """bool: a line at most ``keep_width`` thick, kept without being judged (unless ``sparse``)."""
    needed: np.ndarray
    """float: the verifier score the component needs to be kept (unused for the thin ones, unless ``sparse``)."""
    scores: np.ndarray
    """float: the verifier's score in [0, 1]; NaN for the thin ones, which are not judged (unless ``sparse``)."""
    colourful: np.ndarray
    """bool: more colourful than the photo around it (:class:`ColourRule`), so dropped whatever its score."""
    sparse: bool = False
    """The photo showed little damage (:class:`SparseDamageRule`): ``needed`` is that rule's, and thin lines are judged."""

    @property
    def passed(self) -> np.ndarray:
        """bool: the components the verifier's score (or thinness) keeps, before the colour rule."""
        unjudged = np.zeros_like(self.thin) if self.sparse else self.thin
        return unjudged | (self.scores >= self.needed)

    @property
    def kept(self) -> np.ndarray:
        """bool: the components kept as damage."""
        return self.passed & ~self.colourful


def judge_marks(
    pixels: np.ndarray, probability: np.ndarray, components: MaskComponents, verifier: LoadedModel, rules: VerifierRules
) -> MarkVerdicts:
    """The verdict on each of ``components`` (of the detector's mask of ``probability``, (H, W) in [0, 1]): kept are
    those the verifier scores at least ``rules.min_score`` as damage (the straight-line rule's score for the lines it
    matches) and every other line at most ``rules.keep_width`` pixels thick (:func:`thin_components`), unless the
    colour rule finds them more colourful than their surroundings; then, if those cover less of the photo than the
    sparse-damage rule asks, the judged ones need at least its score and the thin lines are judged against its line
    score. ``pixels`` is the (H, W, 1|3) photo in [0, 1]."""
    straight_lines, colour, sparse = rules.straight_lines, rules.colour, rules.sparse
    lines = np.zeros(len(components), bool) if straight_lines is None else straight_lines.matches(components)
    thin = thin_components(components, rules.keep_width) & ~lines
    judged = np.flatnonzero(~thin)
    line_score = rules.min_score if straight_lines is None else max(rules.min_score, straight_lines.min_score)
    needed = np.where(lines, line_score, rules.min_score)
    scores = np.full(len(components), np.nan)
    scores[judged] = damage_scores(pixels, probability, components, verifier, judged)
    verdicts = MarkVerdicts(lines=lines, thin=thin, needed=needed, scores=scores, colourful=np.zeros(len(components), bool))
    if colour is not None:
        verdicts = replace(verdicts, colourful=colour.matches(pixels, components, np.flatnonzero(verdicts.passed)))
    if sparse is not None and sparse.applies(components, verdicts.kept):
        thin_ones = np.flatnonzero(thin)
        scores = scores.copy()
        scores[thin_ones] = damage_scores(pixels, probability, components, verifier, thin_ones)
        needed = np.where(thin, sparse.line_score, np.maximum(needed, sparse.min_score))
        verdicts = replace(verdicts, scores=scores, needed=needed, sparse=True)
    return verdicts


def verified_masks(
    pixels: np.ndarray, probability: np.ndarray, threshold: float, verifier: LoadedModel, rules: VerifierRules
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, dropped), two (H, W) float32 masks of 0/1 that split the components of ``probability > threshold`` by
    :func:`judge_marks`. ``pixels`` is the (H, W, 1|3) photo in [0, 1]."""
    components = mask_components(probability > threshold)
    keep = judge_marks(pixels, probability, components, verifier, rules).kept
    return components.mask_of(keep), components.mask_of(~keep)


@dataclass(frozen=True)
class ScratchDetection:
    """What a detection run needs: the detector, the verifier (None: every mark is kept) and the settings."""

    detector: LoadedModel
    verifier: LoadedModel | None
    threshold: float
    dilation: int = 0
    rules: VerifierRules = VerifierRules()
    """How the verifier's scores decide (unused without a verifier)."""

    @classmethod
    def of(
        cls,
        detector: LoadedModel,
        verifier: LoadedModel | None,
        threshold: float,
        dilation: int,
        min_score: float | None = None,
        keep_width: float | None = None,
        straight_lines: bool = True,
        colour: bool = True,
        sparse: bool = True,
    ) -> ScratchDetection:
        """A detection at the verifier's registry settings, but for those given (see :meth:`VerifierRules.of`).

        Raises:
            ConfigError: a given setting is out of range.
        """
        if verifier is None:
            # Every mark is kept; given settings are still checked, so that a bad value is refused either way.
            unused = VerifierRules(0.0 if min_score is None else min_score, 0.0 if keep_width is None else keep_width)
            return cls(detector, None, threshold, dilation, unused)
        rules = VerifierRules.of(verifier.spec.settings, min_score, keep_width, straight_lines, colour, sparse)
        return cls(detector, verifier, threshold, dilation, rules)

    def mask(self, pixels: np.ndarray, runtime: Runtime, on_tile: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Scratch mask of a photo: (H, W, 1|3) float in [0, 1] -> (H, W) float32 of 0/1 (1 = damaged)."""
        return self.masks(pixels, runtime, on_tile)[0]

    def masks(
        self, pixels: np.ndarray, runtime: Runtime, on_tile: Callable[[int, int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(mask, dropped): the scratch mask as :meth:`mask`, and the (H, W) float32 0/1 mask of the detector's marks
        the verifier dropped as scene content (None without a verifier)."""
        probability = scratch_probability(pixels, self.detector, runtime, on_tile)
        if self.verifier is None:
            return threshold_mask(probability, self.threshold, self.dilation), None
        kept, dropped = verified_masks(pixels, probability, self.threshold, self.verifier, self.rules)
        return dilate_mask(kept, self.dilation), dropped

    def batch_masks(self, batch: torch.Tensor, runtime: Runtime) -> torch.Tensor:
        """(B, 1, H, W) float32 0/1 scratch masks of a (B, 3, H, W) batch of photos in [0, 1], each detected as
        :meth:`mask` (for training recipes that feed a stage the mask ``restore`` would give it)."""
        masks = [self.mask(photo.permute(1, 2, 0).numpy(), runtime) for photo in batch]
        return torch.from_numpy(np.stack(masks))[:, None]


def load_scratch_detection(
    runtime: Runtime,
    *,
    verify: bool = True,
    threshold: float | None = None,
    dilation: int | None = None,
    min_score: float | None = None,
    keep_width: float | None = None,
    straight_lines: bool = True,
    colour: bool = True,
    sparse: bool = True,
    detector_weights: str | Path | None = None,
    verifier_weights: str | Path | None = None,
) -> ScratchDetection:
    """The registry's detector (and, with ``verify``, verifier) loaded for ``runtime``, at the registry's settings
    unless given (``*_weights``: other files than the installed, verified ones, for the scripts' comparisons).

    Raises:
        ConfigError: a given setting is out of range.
    """
    detector_spec = get_spec(SCRATCH_MODEL)
    verifier_spec = get_spec(SCRATCH_VERIFIER_MODEL) if verify else None
    chosen_threshold, chosen_dilation = detection_settings(detector_spec, threshold, dilation)
    detector = load_model(detector_spec, runtime, detector_weights)
    verifier = load_model(verifier_spec, runtime, verifier_weights) if verifier_spec else None
    return ScratchDetection.of(
        detector, verifier, chosen_threshold, chosen_dilation, min_score, keep_width, straight_lines, colour, sparse
    )


def detect_scratches(
    pixels: np.ndarray,
    model: LoadedModel,
    runtime: Runtime,
    *,
    threshold: float,
    dilation: int = 0,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Scratch mask of a photo by the detector alone: (H, W, 1|3) float in [0, 1] -> (H, W) float32 of 0/1 (1 =
    damaged), at ``threshold``, grown by ``dilation`` pixels (see :func:`detection_settings` for the run's values;
    :class:`ScratchDetection` adds the verifier)."""
    return ScratchDetection(model, None, threshold, dilation).mask(pixels, runtime, on_tile)
