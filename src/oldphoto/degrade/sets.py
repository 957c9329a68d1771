"""Paired synthetic sets as `oldphoto degrade` writes them: plan the pairs, make each, then the manifest.

A set folder holds clean/, degraded/, mask/, ignore/ and, for presets with distractors, distractor/: one PNG per
pair in each, under the same stem. manifest.json records the seed, the preset, the mask definition, the damage
stamps used and every pair's ops with the parameters drawn. The same sources, count, seed, preset, crop range and
stamps give the same files, byte for byte.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from oldphoto.atomic import atomic_write_bytes
from oldphoto.degrade.pipeline import MASK_DEFINITION, degrade_image
from oldphoto.degrade.presets import Preset, preset_summary
from oldphoto.degrade.structured import DamageStamps
from oldphoto.errors import ConfigError, ImageWriteError
from oldphoto.imageio import load_rgb, save_rgb
from oldphoto.inputs import MANIFEST_NAME as MANIFEST
from oldphoto.inputs import InputFile

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class PlannedPair:
    """One pair to make: its file stem in every part of the set, and the clean photo it is made from."""

    stem: str
    source: Path


@dataclass(frozen=True)
class PairRecord:
    """A pair written to the set, as the manifest lists it.

    Attributes:
        stem: file stem in clean/, degraded/, mask/, ignore/ (and distractor/).
        source: the clean photo's path as given.
        size: (width, height) in pixels of the pair (after any crop).
        ops: every op applied, in order, with the parameters drawn (JSON-ready but for numpy scalars/arrays).
    """

    stem: str
    source: str
    size: tuple[int, int]
    ops: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        """The manifest entry: ``{"stem", "source", "size": [w, h], "ops": [...]}``."""
        return {"stem": self.stem, "source": self.source, "size": list(self.size), "ops": list(self.ops)}


MAX_CROP_SIDE = 8192
"""Largest --size-range side: a 60,000 px crop asked for 58 GB and failed as if the preset were broken."""


def plan_pairs(sources: Sequence[InputFile], count: int | None = None, size_range: tuple[int, int] | None = None) -> tuple[PlannedPair, ...]:
    """The pairs of a set: ``count`` of them (default one per source), cycling over ``sources`` in order; with
    ``size_range`` (MIN, MAX) each will be a random square crop with a side in it.

    Raises:
        ConfigError: ``size_range`` is not 16 <= MIN <= MAX <= :data:`MAX_CROP_SIDE`.

    With one pair per source the stem is the source's path below its input folder with "/" as "_" (``kodim01``);
    otherwise a source may give several pairs, so the stem leads with the zero-padded index (``0003_kodim04``). So
    do all stems when two sources would share one (``p.jpg`` and ``p.png``, or ``a/x.jpg`` and ``b/x.jpg`` given as
    files), which would otherwise write one pair over the other. A source's leading dots are left out of an
    unnumbered stem (``.hid.png`` gives ``hid``): a hidden pair would be left out by ``evaluate``.
    """
    if size_range is not None and not 16 <= size_range[0] <= size_range[1] <= MAX_CROP_SIDE:
        raise ConfigError(f"--size-range MIN MAX needs 16 <= MIN <= MAX <= {MAX_CROP_SIDE}")
    total = count if count is not None else len(sources)
    width = max(4, len(str(total - 1)))
    # Without a leading dot: a pair named ".hid" is a hidden file, which evaluate (and restore) leave out unseen.
    named = [_visible(source.relative.with_suffix("").as_posix().replace("/", "_")) for source in sources]
    shared = sorted(stem for stem, times in Counter(named).items() if times > 1)
    if total == len(sources) and shared:
        logger.warning("sources share the name %s (files of one name in different folders, or a .jpg and a .png): every pair's name leads with its number", shared[0])
    numbered = total != len(sources) or bool(shared)
    pairs = []
    for index in range(total):
        source = sources[index % len(sources)]
        stem = f"{index:0{width}d}_{source.path.stem}" if numbered else named[index]
        pairs.append(PlannedPair(stem, source.path))
    return tuple(pairs)


def _visible(stem: str) -> str:
    """``stem`` without leading dots (``.hid`` -> ``hid``; only dots -> ``photo``)."""
    return stem.lstrip(".") or "photo"


def random_crop(image: np.ndarray, rng: np.random.Generator, size_range: tuple[int, int], name: str = "a photo") -> np.ndarray:
    """A random square crop of ``image`` ((H, W, 3) float32 in [0, 1]) with a side drawn from [MIN, MAX].

    A photo smaller than the side is first upscaled (bicubic) so its short side is the side, and a warning names it
    (``name``). Draws the side, then y, then x from ``rng``. Returns (side, side, 3), contiguous.
    """
    side = int(rng.integers(size_range[0], size_range[1] + 1))
    height, width = image.shape[:2]
    if min(height, width) < side:
        logger.warning("%s (%dx%d) is smaller than its %d px --size-range crop: it is upscaled to fit", name, width, height, side)
        scale = side / min(height, width)
        image = cv2.resize(image, (max(side, round(width * scale)), max(side, round(height * scale))), interpolation=cv2.INTER_CUBIC)
        height, width = image.shape[:2]
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(0, width - side + 1))
    return np.ascontiguousarray(image[y : y + side, x : x + side])


def make_pair(
    pair: PlannedPair,
    output: Path,
    preset: Preset,
    rng: np.random.Generator,
    stamps: DamageStamps | None = None,
    size_range: tuple[int, int] | None = None,
) -> PairRecord:
    """Load, crop, damage and write one pair into the set folder ``output``.

    Writes ``<part>/<stem>.png`` for clean/ and degraded/ (RGB, 8-bit) and mask/, ignore/ and, when the preset
    has distractors, distractor/ (one channel, 0 or 255), all the size of the (cropped) photo.
    Draws from ``rng`` the crop (when ``size_range``, see :func:`random_crop`) and then the damage, so that the
    pairs made one after another from a seeded generator are the set that seed gives. A photo that cannot be read
    draws nothing, leaving the generator to the next pair.

    Args:
        stamps: real damage stamps for the preset's ``stamps`` op (:func:`~oldphoto.degrade.load_stamps`).
        size_range: (MIN, MAX) side of a random square crop, 16 <= MIN <= MAX <= :data:`MAX_CROP_SIDE`; None keeps the whole photo.

    Raises:
        ImageReadError: the source cannot be read (nothing is written).
        ImageWriteError: a file of the pair cannot be written (those written before it stay).
    """
    clean = load_rgb(pair.source)
    if size_range is not None:
        clean = random_crop(clean, rng, size_range, name=str(pair.source))
    sample = degrade_image(clean, preset, rng, stamps)
    save_rgb(output / "clean" / f"{pair.stem}.png", sample.clean)
    save_rgb(output / "degraded" / f"{pair.stem}.png", sample.degraded)
    save_rgb(output / "mask" / f"{pair.stem}.png", sample.mask[:, :, None])
    save_rgb(output / "ignore" / f"{pair.stem}.png", sample.dont_care[:, :, None])
    if preset.distractors:
        save_rgb(output / "distractor" / f"{pair.stem}.png", sample.distractor[:, :, None])
    logger.debug("degrade: wrote pair %s from %s", pair.stem, pair.source)
    height, width = sample.clean.shape[:2]
    return PairRecord(pair.stem, str(pair.source), (width, height), tuple(sample.ops))


def remove_pair(output: Path, stem: str) -> None:
    """Delete whatever files of pair ``stem`` exist in ``output`` (a pair cut short by a full disk or Ctrl-C)."""
    for part in ("clean", "degraded", "mask", "ignore", "distractor"):
        (output / part / f"{stem}.png").unlink(missing_ok=True)


def write_manifest(
    output: Path,
    seed: int,
    preset: Preset,
    records: Sequence[PairRecord],
    stamps: DamageStamps | None = None,
    size_range: tuple[int, int] | None = None,
    planned: int | None = None,
) -> Path:
    """Write ``output``/manifest.json (atomically) and return its path.

    Keys: seed, preset (:func:`~oldphoto.degrade.presets.preset_summary`), mask_definition, damage_stamps
    (:meth:`DamageStamps.describe`: the bundled set or the folders given; null without stamps), size_range (the
    crops' [MIN, MAX] side, null for whole photos), planned (the pairs asked for), count (the pairs made), images
    (:meth:`PairRecord.to_json` of each pair, in the order made). With the sources, these regenerate the set.

    Raises:
        ImageWriteError: the file cannot be written (the set's images stay).
    """
    manifest = {
        "seed": seed,
        "preset": preset_summary(preset),
        "mask_definition": MASK_DEFINITION,
        "damage_stamps": stamps.describe() if stamps is not None else None,
        "size_range": list(size_range) if size_range is not None else None,
        "planned": len(records) if planned is None else planned,
        "count": len(records),
        "images": [record.to_json() for record in records],
    }
    path = output / MANIFEST
    try:
        atomic_write_bytes(path, (json.dumps(manifest, indent=1, default=_json_default) + "\n").encode())
    except OSError as error:
        # The error the set's images give when they cannot be written, so the CLI reports both alike.
        raise ImageWriteError(f"{path}: cannot write ({error.strerror or error})") from None
    return path


def _json_default(value: Any) -> Any:
    # Ops record the numbers they drew, some as numpy scalars or small arrays.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")
