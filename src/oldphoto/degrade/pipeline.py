"""Apply a preset to one clean photo: the single entry point used by `degrade`, training and `evaluate`."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from oldphoto.degrade.distractors import DISTRACTOR_OPS
from oldphoto.degrade.presets import PRESET_GROUPS, OpSpec, Preset
from oldphoto.degrade.structured import STRUCTURED_OPS, Canvas, DamageStamps
from oldphoto.degrade.unstructured import UNSTRUCTURED_OPS, grayscale
from oldphoto.errors import ConfigError

SCORED_CHANGE = 0.16
"""Damage that moved a pixel of the scanned photo by at least this much (0-1 intensity, 41 of 255 levels) is
*scored*: a detector is expected to find it. Masked damage below it (``mask_threshold`` < change < 0.16, i.e.
20-41 levels) is a don't-care band: it lies within the photo's own grain and noise after the scan, so neither
finding nor missing it counts. Scored mask = ``change >= SCORED_CHANGE``; don't-care = ``mask & (change <
SCORED_CHANGE)``."""

MASK_DEFINITION = (
    "mask: structured damage that changed the scanned photo by more than the preset's mask_threshold "
    "(0.08, about 20/255 levels, in the shipped presets); scored: change >= 41/255 levels after the scan; 20-41 levels don't-care "
    "(ignore/); distractors (scene content that looks like damage, distractor/) are never in the mask"
)


@dataclass
class DegradedSample:
    """A synthetic training/evaluation pair.

    Attributes:
        clean: (H, W, 3) float32 in [0, 1], the target (grayscale if the print was made black-and-white).
        degraded: (H, W, 3) float32 in [0, 1], the damaged photo.
        mask: (H, W) float32 of 0/1, the structured damage: ``change`` above the preset's ``mask_threshold``.
        ops: every op applied, in order, with the parameters drawn.
        change: (H, W) float32 in [0, 1], how far structured damage moved each pixel of the degraded photo
            (largest change over the channels; 0 where no damage was drawn): how visible the damage is.
        distractor: (H, W) float32 of 0/1, where distractors (scene content that looks like damage) visibly
            changed the print (by more than ``mask_threshold``); part of ``clean``, never of ``mask``. All zeros
            when the preset has none (None given is replaced by zeros).
    """

    clean: np.ndarray
    degraded: np.ndarray
    mask: np.ndarray
    ops: list[dict[str, Any]]
    change: np.ndarray
    distractor: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.distractor is None:
            self.distractor = np.zeros(self.mask.shape, np.float32)

    @property
    def scored_mask(self) -> np.ndarray:
        """(H, W) float32 of 0/1: the damage a detector is scored on, ``mask`` where change >= SCORED_CHANGE."""
        return ((self.mask > 0) & (self.change >= SCORED_CHANGE)).astype(np.float32)

    @property
    def dont_care(self) -> np.ndarray:
        """(H, W) float32 of 0/1: masked damage fainter than SCORED_CHANGE, excluded from mask scores."""
        return ((self.mask > 0) & (self.change < SCORED_CHANGE)).astype(np.float32)


def _apply_unstructured(image: np.ndarray, specs: list[OpSpec], group: str, rng: np.random.Generator, log: list) -> np.ndarray:
    for spec in specs:
        if rng.random() < spec.probability:
            image, params = UNSTRUCTURED_OPS[spec.name](image, rng, **spec.kwargs())
            log.append({"group": group, "op": spec.name, **params})
    return image


def side_stream(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator derived from ``rng``'s current state without drawing from it.

    The distractors use it, so that adding them leaves every number the other ops draw, and so the damage and
    the scan, exactly as they were. ``jumped()`` advances a copy of the state by a huge stride (2^127 draws for
    PCG64): a stream that cannot overlap the main one in practice, and different for every image.
    """
    bit_generator = copy.deepcopy(rng.bit_generator)
    if hasattr(bit_generator, "jumped"):
        return np.random.Generator(bit_generator.jumped())
    # Bit generators without jumps (SFC64): seed a fresh stream from a number drawn by the copy.
    return np.random.default_rng([int(np.random.Generator(bit_generator).integers(2**63)), 0x5EED])


def _apply_distractors(canvas: Canvas, specs: tuple[OpSpec, ...], rng: np.random.Generator, log: list) -> None:
    for spec in specs:
        if rng.random() < spec.probability:
            params = DISTRACTOR_OPS[spec.name](canvas, rng, **spec.kwargs())
            log.append({"group": "distractors", "op": spec.name, **params})


def _apply_structured(canvas: Canvas, preset: Preset, rng: np.random.Generator, stamps: DamageStamps | None, log: list) -> None:
    # Without stamps the stamp op could not draw anything, so it must not count towards min_structured.
    available = [spec for spec in preset.structured if spec.name != "stamps" or (stamps is not None and len(stamps))]
    chosen = [spec for spec in available if rng.random() < spec.probability]
    missing = preset.min_structured - len(chosen)
    # Drawn among those not chosen yet: drawn among all, a repeat was dropped and a third of the pairs of a preset
    # asking for 2 had 1. With nothing chosen (the only case min_structured = 1 reaches) the draw is as it was.
    remaining = [spec for spec in available if spec not in chosen]
    if missing > 0 and remaining:
        extra = rng.choice(len(remaining), size=min(missing, len(remaining)), replace=False)
        chosen += [remaining[int(i)] for i in extra]
    for spec in chosen:
        params = STRUCTURED_OPS[spec.name](canvas, rng, stamps, **spec.kwargs())
        log.append({"group": "structured", "op": spec.name, **params})


def degrade_image(
    clean: np.ndarray,
    preset: Preset,
    rng: np.random.Generator,
    stamps: DamageStamps | None = None,
) -> DegradedSample:
    """Damage a clean photo. Same inputs and generator state -> same output.

    Args:
        clean: (H, W, 3) float32 RGB in [0, 1].
        preset: the recipe.
        rng: the only source of randomness (distractors draw from :func:`side_stream` of it, which leaves it
            untouched, so a preset without distractors draws exactly what it did before they existed).
        stamps: real damage stamps for the ``stamps`` op (skipped and logged when None; :func:`load_stamps` gives
            the given folders or the bundled set, as `degrade` and `train` use).
    """
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"degrade_image expects (H, W, 3) RGB, got {clean.shape}")
    ops: list[dict[str, Any]] = []
    target = np.ascontiguousarray(clean, dtype=np.float32)
    scene: Canvas | None = None
    if preset.distractors:
        # Scene content, so drawn first: the print (and its black-and-white conversion) and everything after it
        # treat it like the rest of the photo, and the clean target includes it.
        scene = Canvas.of(target)
        _apply_distractors(scene, preset.distractors, side_stream(rng), ops)
        target = np.clip(scene.image, 0.0, 1.0)
    untouched = scene.base if scene is not None else None
    if rng.random() < preset.grayscale_probability:
        target, _ = grayscale(target, rng)
        if untouched is not None:
            untouched, _ = grayscale(untouched, rng)
        ops.append({"group": "print", "op": "grayscale"})
    distractor = None
    if scene is not None:
        # Judged on the print (after any black-and-white conversion), where it is drawn, like the damage mask.
        visible = visible_change(target, untouched) > preset.mask_threshold
        distractor = (visible & (scene.opacity > 0)).astype(np.float32)
    image = _apply_unstructured(target.copy(), list(preset.aging), "aging", rng, ops)

    scan = list(preset.scan)
    if preset.shuffle_scan:
        scan = [scan[int(i)] for i in rng.permutation(len(scan))]

    if preset.structured_after_scan:
        image = _apply_unstructured(image, scan, "scan", rng, ops)
        canvas = Canvas.of(image)
        _apply_structured(canvas, preset, rng, stamps, ops)
        image = canvas.image
        change = canvas.change()
    else:
        canvas = Canvas.of(image)
        _apply_structured(canvas, preset, rng, stamps, ops)
        # Blur, downscaling and JPEG after the damage can hide it (a hair-thin scratch blurred away) or spread it
        # beyond its drawn footprint, so visibility is judged on the scanned result: the same scan, with the same
        # random draws, is applied to the undamaged print and the two are compared. The replay uses a copy of the
        # generator, so the degraded image is exactly what it would be without it.
        replay = copy.deepcopy(rng)
        image = _apply_unstructured(canvas.image, scan, "scan", rng, ops)
        undamaged = _apply_unstructured(canvas.base, scan, "scan", replay, [])
        change = visible_change(image, undamaged)
    mask = (change > preset.mask_threshold).astype(np.float32)
    degraded = np.clip(image, 0.0, 1.0).astype(np.float32)
    return DegradedSample(clean=target, degraded=degraded, mask=mask, ops=ops, change=change, distractor=distractor)


def visible_change(damaged: np.ndarray, undamaged: np.ndarray) -> np.ndarray:
    """(H, W) float32: how far two (H, W, 3) renderings in [0, 1] differ at each pixel (largest over channels)."""
    return np.abs(np.clip(damaged, 0.0, 1.0) - np.clip(undamaged, 0.0, 1.0)).max(axis=2).astype(np.float32)


PRESET_ERRORS = (TypeError, ValueError, IndexError, KeyError, ArithmeticError, cv2.error)
"""What an op raises when a preset file's parameters do not work with it (a range given as one number, a string for a
number, a blur kernel of even size, a cell of 0): the check below and the run of `degrade` catch the same ones."""


def check_preset_runs(preset: Preset, stamps: DamageStamps | None = None, tries: int = 24) -> None:
    """Run each op of ``preset`` alone, at probability 1, on a small test image, ``tries`` times from fixed seeds.

    A preset file's parameters can be well-formed and still not work (a halftone cell of 0, a range of NaN, an empty
    list of blur kernels, an even kernel size among the choices): this finds that before a set is written (or an
    earlier one removed), and names the op. A value that fails on half the draws (one bad choice of two) passes 24
    tries once in 16 million; rarer failures can still stop a run, which then keeps the pairs it made. Draws only
    from its own generators.

    Raises:
        ConfigError: an op failed (its group, name and the error).
    """
    ramp = np.linspace(0.1, 0.9, 64, dtype=np.float32)
    test = np.ascontiguousarray(np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (64, 1)), np.tile(ramp[:, None], (1, 64))], axis=2))
    empty = {group: () for group in PRESET_GROUPS}
    for group in PRESET_GROUPS:
        for spec in getattr(preset, group):
            alone = replace(preset, **{**empty, group: (replace(spec, probability=1.0),)}, min_structured=0, grayscale_probability=0.0)
            for seed in range(tries):
                try:
                    degrade_image(test, alone, np.random.default_rng(seed), stamps)
                except PRESET_ERRORS as error:
                    raise ConfigError(
                        f"preset {preset.name!r}: the {group} op {spec.name!r} does not work with its parameters "
                        f"{dict(spec.params) or '(defaults)'} ({type(error).__name__}: {error}); check them"
                    ) from None
