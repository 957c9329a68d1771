"""Run restoration methods over paired (degraded, clean[, mask]) images and score them.

A method maps a (H, W, 3) float32 RGB image in [0, 1] to ``(restored, predicted_mask_or_None)``.
Methods: ``identity`` (the damaged input as-is), ``classical`` (OpenCV only: non-local means,
top-hat/black-hat scratch mask, Telea inpainting), ``tophat`` (the classical scratch mask alone, filled by
Telea), ``restore`` (the full pipeline), ``global`` (``restore --no-faces``), ``scratch-unet`` (the
detector's mask, its marks judged by the verifier, filled by Telea) and ``restore-unet`` (the ablation in place of the triplet global stage).
Pipeline methods can also be given the pair's true mask (:class:`PipelineMethod`, ``evaluate --true-masks``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from oldphoto.errors import ConfigError, DataError
from oldphoto.evaluation.metrics import MaskCounts, RegionCounts, psnr, ssim
from oldphoto.imageio import is_image_path, load_rgb, read_photo
from oldphoto.registry import SCRATCH_MODEL
from oldphoto.restore.classical import (
    classical_restore,
    inpaint_telea,
    tophat_scratch_mask,
)
from oldphoto.restore.global_stage import DEFAULT_GLOBAL_BACKEND, GLOBAL_BACKENDS
from oldphoto.restore.pipeline import RestoreOptions, Restorer, mask_from_photo
from oldphoto.runtime import Runtime

log = logging.getLogger(__name__)

Method = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


MASK_SCORING_IGNORE = "scored: change >= 41/255 levels after the scan; 20-41 levels don't-care (ignore/ masks, left out of the counts)"
MASK_SCORING_WHOLE = "no ignore/ masks (a set made before them): every mask pixel scored, faint damage within the noise included"


@dataclass(frozen=True)
class Pair:
    """One test image: its degraded photo and, where the set has them, the clean target and the masks
    (``mask``: the damage; ``ignore``: its faint don't-care band; ``distractor``: scene content that looks like
    damage)."""

    stem: str
    degraded: Path
    clean: Path | None
    mask: Path | None
    ignore: Path | None = None
    distractor: Path | None = None


def mask_scoring(pairs: list[Pair]) -> str | None:
    """How the pairs' masks are scored, in words (for reports); None when no pair has a mask."""
    with_masks = [p for p in pairs if p.mask is not None]
    if not with_masks:
        return None
    if all(p.ignore is not None for p in with_masks):
        return MASK_SCORING_IGNORE
    if any(p.ignore is not None for p in with_masks):
        return "mixed: " + MASK_SCORING_IGNORE + " where an ignore/ mask exists, every mask pixel elsewhere"
    return MASK_SCORING_WHOLE


@dataclass
class _Listing:
    """What reading the folders of a set found besides their files: said once for all folders, not once each."""

    recursive: bool
    exclude: frozenset[Path] = frozenset()
    """Files never read as pairs (resolved): the results an earlier ``evaluate --save`` wrote there."""
    left_out: list[Path] = field(default_factory=list)
    """Images in sub-folders, left out without ``recursive``."""
    links: list[Path] = field(default_factory=list)
    """Links to folders, not followed with ``recursive``."""
    excluded: int = 0

    def by_stem(self, folder: Path) -> dict[str, Path]:
        """The images of ``folder`` by name without extension; with ``recursive``, also those of its sub-folders, by
        their path below it (``1910/a`` for ``1910/a.png``), so that pairs are matched folder by folder. Hidden files
        and folders are left out, as ``restore`` leaves them out."""
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder" if not folder.exists() else f"{folder} is a file, not a folder of images")
        # One walk of the tree gives the pairs and what is said of the rest (the sub-folders' images, links to folders).
        # "**" does not descend into linked folders (Python 3.10 to 3.13 alike), so no image below a link is listed.
        entries = [path for path in folder.glob("**/*") if not _hidden(folder, path)]
        images = sorted(path for path in entries if path.is_file() and is_image_path(path))
        in_folder = [path for path in images if len(path.relative_to(folder).parts) == 1]
        below = [path for path in images if len(path.relative_to(folder).parts) > 1]
        candidates = images if self.recursive else in_folder
        read = self._not_excluded(candidates)
        self.excluded += len(candidates) - len(read)  # counted as an earlier run's results
        files: dict[str, Path] = {}
        for path in read:
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in files:  # a.jpg and a.png: one is scored, said, rather than one dropped unseen
                log.warning("%s and %s share a name in %s: only %s is used; rename one to use both", files[key].name, path.name, path.parent, files[key].name)
                continue
            files[key] = path
        if not self.recursive:
            # Pairs kept in sub-folders were left out without a word (and a folder of sub-folders alone "matched nothing").
            self.left_out += self._not_excluded(below)
        else:
            # As restore -r: a link to a folder is not followed (it may lead back up the tree), and that is said.
            self.links += sorted(path for path in entries if path.is_symlink() and path.is_dir())
        return files

    def _not_excluded(self, paths: list[Path]) -> list[Path]:
        return [path for path in paths if path.resolve() not in self.exclude] if self.exclude else paths

    def say(self) -> None:
        if self.left_out:
            log.warning(
                "%d image(s) in sub-folders are left out (e.g. %s): add --recursive to pair them by their path below each folder",
                len(self.left_out),
                self.left_out[0],
            )
        if self.links:
            log.warning("did not follow %d link(s) to folders (e.g. %s): give the folders they lead to instead", len(self.links), self.links[0])
        if self.excluded:
            log.warning("left out %d image(s) that an earlier evaluate --save wrote there (its own results)", self.excluded)


def _images_below(folder: Path, pattern: str) -> list[Path]:
    """The image files of ``folder`` matching ``pattern`` (``*``, or ``**/*`` with sub-folders), sorted, none hidden or
    in a hidden folder (.thumbnails, .git)."""
    return sorted(path for path in folder.glob(pattern) if not _hidden(folder, path) and path.is_file() and is_image_path(path))


def _nesting_hint(degraded: Path, clean: Path, recursive: bool) -> str:
    """Why no stems match when the folders are laid out differently, if that is why."""
    if recursive:
        return ": with --recursive, pairs are matched by their path below each folder (d/1910/a.png with c/1910/a.png)"
    nested = [bool(_images_below(folder, "*/**/*")) for folder in (degraded, clean)]
    if all(nested):
        return ": their images are in sub-folders; add --recursive to pair them there"
    return ""


def _hidden(folder: Path, path: Path) -> bool:
    """Whether ``path`` is hidden, or in a hidden folder, below ``folder``."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def find_pairs(
    degraded: Path,
    clean: Path | None = None,
    mask: Path | None = None,
    ignore: Path | None = None,
    distractor: Path | None = None,
    recursive: bool = False,
    exclude: frozenset[Path] = frozenset(),
) -> list[Pair]:
    """Match files by stem (with ``recursive``, by their path below each folder without extension, e.g. ``1910/a``).
    ``degraded`` may be a `oldphoto degrade` output folder (with clean/, degraded/, mask/, and from sets made since
    they exist ignore/ and distractor/, picked up when present)."""
    if clean is None and (degraded / "degraded").is_dir():
        root = degraded
        degraded, clean = root / "degraded", root / "clean"
        # The set's don't-care band belongs to the set's own masks, not to masks given from elsewhere (naming the
        # set's own mask/ is not elsewhere: its scores changed and the JSON said the set had no ignore/).
        own_masks = mask is None or mask.resolve() == (root / "mask").resolve()
        if own_masks and ignore is None and (root / "ignore").is_dir():
            ignore = root / "ignore"
        mask = mask or (root / "mask" if (root / "mask").is_dir() else None)
        distractor = distractor or (root / "distractor" if (root / "distractor").is_dir() else None)
    elif mask is not None and ignore is None and distractor is None and _parts_of_one_set(degraded, clean, mask):
        # `--degraded SET/degraded --clean SET/clean --mask SET/mask` is the set named part by part: its don't-care band
        # and distractors belong to those masks too (they were left out, and the JSON said the set had no ignore/).
        root = degraded.parent
        ignore = root / "ignore" if (root / "ignore").is_dir() else None
        distractor = root / "distractor" if (root / "distractor").is_dir() else None
    if not degraded.is_dir():
        # Also the --real folder's check (it has no clean photos), where "degraded images" misled.
        kind = "degraded images" if clean is not None else "photos"
        raise DataError(f"{degraded}: {'no such folder' if not degraded.exists() else f'not a folder of {kind}'}")
    listing = _Listing(recursive, exclude)
    degraded_files = listing.by_stem(degraded)
    clean_files = listing.by_stem(clean) if clean else {}
    mask_files = listing.by_stem(mask) if mask else {}
    ignore_files = listing.by_stem(ignore) if ignore else {}
    distractor_files = listing.by_stem(distractor) if distractor else {}
    listing.say()
    if clean and not set(degraded_files) & set(clean_files):
        hint = (
            f": {degraded} is a set made by oldphoto degrade, read here as a folder of degraded photos since --clean was "
            f"given; give the set alone, or --degraded {degraded / 'degraded'} --clean {clean}"
            if (degraded / "degraded").is_dir()
            else _nesting_hint(degraded, clean, recursive)
        )
        raise DataError(f"no file stems in {degraded} match any in {clean}{hint}")
    if clean:
        unmatched = sorted(set(degraded_files) ^ set(clean_files))
        if unmatched:
            log.warning(
                "%d file(s) without a partner of the same stem in %s and %s are left out (e.g. %s)",
                len(unmatched),
                degraded,
                clean,
                unmatched[0],
            )
    return [
        Pair(stem, path, clean_files.get(stem), mask_files.get(stem), ignore_files.get(stem), distractor_files.get(stem))
        for stem, path in degraded_files.items()
        if not clean or stem in clean_files
    ]


def _parts_of_one_set(degraded: Path, clean: Path | None, mask: Path) -> bool:
    """Whether ``degraded``, ``clean`` and ``mask`` are the degraded/, clean/ and mask/ folders of one set."""
    root = degraded.resolve().parent
    return (
        clean is not None
        and [path.resolve() for path in (degraded, clean, mask)] == [root / name for name in ("degraded", "clean", "mask")]
    )


def identity(image: np.ndarray) -> tuple[np.ndarray, None]:
    return image, None


def classical(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return classical_restore(image)


def tophat(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = tophat_scratch_mask(image)
    return inpaint_telea(image, mask), mask


PIPELINE_METHODS: dict[str, RestoreOptions] = {
    # Everything `restore` does by default.
    "restore": RestoreOptions(),
    # `restore --no-faces`: scratch detection, then the triplet global stage.
    "global": RestoreOptions(faces=False),
    # `restore --no-global --no-faces`: the detector's mask, filled by Telea.
    SCRATCH_MODEL: RestoreOptions(global_restoration=False, faces=False),
    # Every other global network in place of the default one, after the same scratch detection (e.g. the ablation).
    **{name: RestoreOptions(faces=False, global_model=name) for name in GLOBAL_BACKENDS if name != DEFAULT_GLOBAL_BACKEND},
}


class PipelineMethod:
    """A restore pipeline as a method; it can also be given the damage mask instead of detecting it."""

    def __init__(self, restorer: Restorer) -> None:
        self.restorer = restorer

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        result = self.restorer.restore(image, mask=mask)
        return result.pixels, result.mask


CLASSICAL_METHODS = ("identity", "classical", "tophat")
METHOD_NAMES = (*CLASSICAL_METHODS, *PIPELINE_METHODS)
"""Every name ``evaluate -m`` accepts."""


def build_method(
    name: str, runtime: Runtime, scratch_threshold: float | None = None, verify_scratches: bool = True, global_strength: float = 1.0
) -> Method:
    """A method by name; loading a model happens once, here. ``scratch_threshold`` replaces the detector's
    registry threshold in the pipeline methods (as ``restore --scratch-threshold`` does); ``verify_scratches``
    False keeps every mark of the detector (``restore --no-scratch-verify``); ``global_strength`` tempers their
    global stage (``restore --global-strength``)."""
    if name == "identity":
        return identity
    if name == "classical":
        return classical
    if name == "tophat":
        return tophat
    if name in PIPELINE_METHODS:
        # Stage models are scored through the same pipeline `restore` runs, with only their stages on.
        options = replace(
            PIPELINE_METHODS[name], scratch_threshold=scratch_threshold, verify_scratches=verify_scratches, global_strength=global_strength
        )
        return PipelineMethod(Restorer(runtime, options))
    raise ConfigError(f"unknown method {name!r}; use one of {', '.join(METHOD_NAMES)}")


class PeakMemory:
    """Peak resident memory above the starting level while the block runs (sampled every 5 ms)."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux
            return 0

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_bytes = max(self.peak_bytes, self._rss() - self._base)

    def __enter__(self) -> PeakMemory:
        self._base = self._rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._rss() - self._base)

    @property
    def peak_resident_bytes(self) -> int:
        """The process's whole peak resident memory while the block ran (the starting level plus the peak rise)."""
        return self._base + self.peak_bytes


@dataclass
class ImageScore:
    method: str
    stem: str
    megapixels: float
    seconds: float
    peak_mb: float
    psnr: float | None = None
    ssim: float | None = None
    mask: MaskCounts | None = None
    mask_pixels: int | None = None
    """All true mask pixels, the don't-care band included."""
    faint: RegionCounts | None = None
    """The don't-care band (ignore/) and how much of it the predicted mask marks."""
    distractor: RegionCounts | None = None
    """Distractor pixels not also damaged, and how many of them the predicted mask marks (false hits)."""


@dataclass
class MethodSummary:
    method: str
    images: int = 0
    psnr: float | None = None
    ssim: float | None = None
    seconds_per_mp: float | None = None
    """None when no image was scored (a speed of 0 read as infinitely fast), as PSNR and SSIM."""
    peak_mb: float | None = None
    mask: MaskCounts | None = None
    scores: list[ImageScore] = field(default_factory=list)
    faint: RegionCounts | None = None
    distractor: RegionCounts | None = None

    @property
    def distractor_marked(self) -> float | None:
        """Fraction of distractor pixels the predicted masks mark, pooled over images (lower is better)."""
        return self.distractor.fraction if self.distractor is not None else None

    @property
    def faint_share(self) -> float | None:
        """Don't-care pixels over all true mask pixels, pooled over the images that have an ignore mask: how much
        of the mask is faint."""
        mask_pixels = sum(s.mask_pixels or 0 for s in self.scores if s.faint is not None)
        return self.faint.total / mask_pixels if self.faint is not None and mask_pixels else None

    @property
    def faint_recall(self) -> float | None:
        """Fraction of don't-care (faint) damage pixels the predicted masks mark, pooled."""
        return self.faint.fraction if self.faint is not None else None

    def as_dict(self) -> dict:
        out = {
            "method": self.method,
            "images": self.images,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "seconds_per_mp": self.seconds_per_mp,
            "peak_mb": self.peak_mb,
        }
        if self.mask is not None:
            out.update(precision=self.mask.precision, recall=self.mask.recall, f1=self.mask.f1, iou=self.mask.iou)
            if self.faint is not None:
                out.update(faint_share=self.faint_share, faint_recall=self.faint_recall)
        if self.distractor is not None:
            out.update(distractor_marked=self.distractor_marked, distractor_pixels=self.distractor.total)
        return out


def score_image(
    method_name: str, method: Method, pair: Pair, true_masks: bool = False
) -> tuple[ImageScore, np.ndarray, np.ndarray, np.ndarray | None]:
    """Run one method on one pair. Returns the score, the input, the output and the predicted mask.

    With ``true_masks``, pipeline methods repair the pair's true damage mask instead of detecting one (what the
    later stages would reach with a perfect detector); their mask is then not scored.
    """
    degraded = load_rgb(pair.degraded)
    clean = None if pair.clean is None else load_rgb(pair.clean)
    if clean is not None and clean.shape[:2] != degraded.shape[:2]:  # found before the method runs, in W x H
        raise DataError(
            f"{pair.stem}: the clean photo is {clean.shape[1]}x{clean.shape[0]} and the degraded "
            f"{degraded.shape[1]}x{degraded.shape[0]}; a pair must match pixel for pixel"
        )
    given = None
    if true_masks and isinstance(method, PipelineMethod):
        if pair.mask is None:
            raise DataError(f"{pair.stem}: --true-masks needs the true damage mask of every pair (a mask/ folder)")
        given = mask_from_photo(read_photo(pair.mask))
        _check_mask_size(pair.mask, given.shape, degraded.shape)
    with PeakMemory() as memory:
        started = time.perf_counter()
        restored, predicted = method(degraded) if given is None else method(degraded, given)
        seconds = time.perf_counter() - started
    if given is not None:
        predicted = None
    restored = np.repeat(restored, 3, axis=2) if restored.shape[2] == 1 else restored
    score = ImageScore(method_name, pair.stem, degraded.shape[0] * degraded.shape[1] / 1e6, seconds, memory.peak_bytes / 1e6)
    if clean is not None:
        if clean.shape != restored.shape:
            raise DataError(f"{pair.stem}: {method_name} returned {restored.shape[1]}x{restored.shape[0]}, not the photo's size")
        score.psnr = psnr(clean, restored)
        score.ssim = ssim(clean, restored)
    truth = None
    if pair.mask is not None and predicted is not None:
        truth = _load_mask(pair.mask, degraded.shape)
        ignore = _load_mask(pair.ignore, degraded.shape) if pair.ignore is not None else None
        score.mask = MaskCounts.of(predicted, truth, ignore)
        score.mask_pixels = int(np.sum(truth > 0.5))
        if ignore is not None:
            score.faint = RegionCounts.of(predicted, (ignore > 0.5) & (truth > 0.5))
    if pair.distractor is not None and predicted is not None:
        region = _load_mask(pair.distractor, degraded.shape) > 0.5
        # Where damage was drawn over a distractor, marking it is right: only the undamaged part counts.
        score.distractor = RegionCounts.of(predicted, region & ~(truth > 0.5) if truth is not None else region)
    return score, degraded, restored, predicted


def _load_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) float32 in [0, 1] from a mask image (white = set) for a photo of ``shape`` (H, W, ...).

    Raises:
        DataError: the mask's size is not the photo's (the pair fails alone, with this message).
    """
    # Read as restore --masks reads one: strokes on a transparent layer count where opaque (their hidden pixels
    # may be white: scored as damage, the same drawn mask got F1 0.09 as a grey image and 1.0 as RGBA).
    mask = mask_from_photo(read_photo(path))
    _check_mask_size(path, mask.shape, shape)
    return mask


def _check_mask_size(path: Path, mask_shape: tuple[int, ...], shape: tuple[int, ...]) -> None:
    if tuple(mask_shape[:2]) != tuple(shape[:2]):
        raise DataError(
            f"{path}: the mask is {mask_shape[1]}x{mask_shape[0]} but its photo {shape[1]}x{shape[0]}; "
            "a mask must have its photo's size"
        )


def summarize(method: str, scores: list[ImageScore]) -> MethodSummary:
    summary = MethodSummary(method, images=len(scores), scores=scores)
    if not scores:
        return summary
    psnrs = [s.psnr for s in scores if s.psnr is not None]
    if psnrs:
        # Mean over images; an exact reconstruction (inf dB) is capped at 100 dB so one image cannot dominate.
        summary.psnr = float(np.mean([min(p, 100.0) for p in psnrs]))
        summary.ssim = float(np.mean([s.ssim for s in scores if s.ssim is not None]))
    summary.seconds_per_mp = sum(s.seconds for s in scores) / max(1e-9, sum(s.megapixels for s in scores))
    summary.peak_mb = max(s.peak_mb for s in scores)
    masks = [s.mask for s in scores if s.mask is not None]
    if masks:
        total = masks[0]
        for counts in masks[1:]:
            total = total + counts
        summary.mask = total
    summary.faint = _pooled([s.faint for s in scores])
    summary.distractor = _pooled([s.distractor for s in scores])
    return summary


def _pooled(counts: list[RegionCounts | None]) -> RegionCounts | None:
    present = [c for c in counts if c is not None]
    return sum(present[1:], present[0]) if present else None
