"""Clean-photo crops with synthetic damage made on the fly by :mod:`oldphoto.degrade`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch

from oldphoto.atomic import atomic_writer
from oldphoto.degrade import DamageStamps, DegradedSample, Preset, degrade_image
from oldphoto.errors import DataError, OldPhotoError
from oldphoto.imageio import is_image_path, load_rgb, to_uint8

log = logging.getLogger(__name__)


HELD_OUT_EVERY = 20
"""Every 20th file (sorted by path) of a training folder is held out: for validation and final evaluation."""


def split_held_out(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(training, held-out): every HELD_OUT_EVERY-th file, starting with the first, is held out.

    Raises:
        DataError: a single photo: it would be held out and nothing left to train on.
    """
    if len(files) == 1:
        raise DataError(f"{files[0]} is the only photo there: one of every {HELD_OUT_EVERY} is held out for validation, so give 2 or more")
    return [f for i, f in enumerate(files) if i % HELD_OUT_EVERY], [f for i, f in enumerate(files) if i % HELD_OUT_EVERY == 0]


REAL_TEST_EVERY = 10
"""Of the real old photos not named in the labelled real-photo test, every 10th (sorted by name) is held out too."""


def split_real_photos(files: Sequence[Path], labels: str | Path | None = None) -> tuple[list[Path], list[Path]]:
    """(training, test) split of real old photos: the test holds every photo named in the ``labels`` JSON
    (``../shared/data/real_labels/real_old_mask_components.json``: {"components": [{"photo": name, ...}]}) plus
    every REAL_TEST_EVERY-th of the rest, sorted by file name, starting with the first. Photos are matched by
    stem, so a re-encoded copy (``scripts/pack_device_data.py``) splits the same way."""
    named: set[str] = set()
    if labels is not None:
        try:
            named = {Path(entry["photo"]).stem for entry in json.loads(Path(labels).read_text())["components"]}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"{labels}: not a real-photo label file with a 'components' list of photos ({error})") from None
    rest = sorted((f for f in files if f.stem not in named), key=lambda f: f.stem)
    test = [f for f in files if f.stem in named] + rest[::REAL_TEST_EVERY]
    held = set(test)
    return [f for f in rest if f not in held], sorted(test, key=lambda f: f.stem)


def to_batch(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """(B, H, W, C) float32 images (a list or one array) -> a contiguous (B, C, H, W) tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def list_images(folders: Sequence[str | Path]) -> list[Path]:
    """The photos under ``folders`` (searched recursively, hidden files and folders left out), sorted.

    Raises:
        DataError: a folder does not exist (a misspelt --data would otherwise be skipped unseen), or none holds a photo.
    """
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DataError(f"{folder}: {'a file, not a folder of photos' if folder.exists() else 'no such folder'}")
    # Hidden files and folders (macOS's ._name.jpg, .thumbnails) are skipped as restore skips them.
    files = sorted(
        p
        for folder in folders
        for p in Path(folder).rglob("*")
        if p.is_file() and is_image_path(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DataError(f"no images found under {', '.join(map(str, folders))}")
    # A folder given twice, or with a sub-folder of it, listed its photos twice: the held-out split then trained on
    # one copy of a validation photo. Each file is used once, in sorted order.
    first: dict[Path, Path] = {}
    for path in files:
        first.setdefault(path.resolve(), path)
    unique = list(first.values())
    if len(unique) < len(files):
        log.warning("%d photos are under more than one of the folders %s; each is used once", len(files) - len(unique), ", ".join(map(str, folders)))
    return unique


def readable_images(files: Sequence[Path]) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, (H, W, 3) float32 RGB) of each file that can be read; unreadable ones are logged and skipped."""
    for path in files:
        try:
            yield path, load_rgb(path)
        except OldPhotoError as error:
            log.warning("skipping %s", error)


class CropPool:
    """Clean photos held in memory (long side capped at ``max_side``) to cut random crops from.

    Images smaller than the crop are upscaled; images are stored as uint8 to keep memory modest.
    """

    def __init__(self, files: Sequence[Path], crop: int, max_side: int = 1024) -> None:
        self.crop = crop
        self.images: list[np.ndarray] = []
        self.files: list[Path] = []  # the file of each image, in the same order (hard negatives name them)
        for path, image in readable_images(files):
            height, width = image.shape[:2]
            scale = min(1.0, max_side / max(height, width))
            scale = max(scale, crop / min(height, width))
            if scale != 1.0:
                size = (max(crop, round(width * scale)), max(crop, round(height * scale)))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
            self.images.append(to_uint8(image))
            self.files.append(path)
        if not self.images:
            # The pool holds validation photos too: name the files' folder, not "training".
            where = ", ".join(sorted({str(path.parent) for path in files})[:3])
            raise DataError(f"none of the {len(files)} images under {where} could be read")

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A random (crop, crop, 3) float32 RGB crop in [0, 1], randomly flipped."""
        image = self.images[int(rng.integers(len(self.images)))]
        height, width = image.shape[:2]
        y = int(rng.integers(0, height - self.crop + 1))
        x = int(rng.integers(0, width - self.crop + 1))
        return self._cut(image, x, y, rng)

    def sample_around(self, index: int, x: float, y: float, rng: np.random.Generator) -> np.ndarray:
        """A (crop, crop, 3) float32 RGB crop in [0, 1] of image ``index`` holding the point (``x``, ``y``), given as
        fractions of the image's width and height, anywhere in the crop's central half where the image allows (a crop
        never leaves the image, so a point near its border lies nearer the crop's edge); randomly flipped."""
        image = self.images[index]
        height, width = image.shape[:2]
        left = x * width - self.crop * rng.uniform(0.25, 0.75)
        top = y * height - self.crop * rng.uniform(0.25, 0.75)
        left = int(np.clip(round(left), 0, width - self.crop))
        top = int(np.clip(round(top), 0, height - self.crop))
        return self._cut(image, left, top, rng)

    def _cut(self, image: np.ndarray, x: int, y: int, rng: np.random.Generator) -> np.ndarray:
        crop = image[y : y + self.crop, x : x + self.crop]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return crop.astype(np.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class HardNegative:
    """A place where a detector marks scene content in an undamaged training photo (hard-negative mining)."""

    photo: str
    """The photo's path, as listed from the training folders."""
    x: float
    """Centre of the mark, as a fraction of the photo's width."""
    y: float
    """Centre of the mark, as a fraction of the photo's height."""
    area: float
    """The mark's area in pixels, at the resolution it was found at (``mine_hard_negatives.py``: the crop pool's)."""


def load_hard_negatives(path: str | Path) -> list[HardNegative]:
    """The marks of a hard-negative file (``scripts/mine_hard_negatives.py``): {"marks": [{"photo", "x", "y", "area"}]}.

    Raises:
        DataError: the file cannot be read or is not such a file.
    """
    try:
        marks = [HardNegative(str(m["photo"]), float(m["x"]), float(m["y"]), float(m["area"])) for m in json.loads(Path(path).read_text())["marks"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a hard-negative file with a 'marks' list of photo, x, y and area ({error})") from None
    for mark in marks:
        if not (0.0 <= mark.x <= 1.0 and 0.0 <= mark.y <= 1.0 and mark.area > 0 and np.isfinite(mark.area)):
            raise DataError(f"{path}: mark {mark} needs x and y between 0 and 1 and a positive area")
    return marks


def photo_key(path: str | Path) -> tuple[str, str]:
    """A photo's folder name and stem: the same for a re-encoded copy (``scripts/pack_device_data.py``), so that
    hard negatives mined on the shared data find their photos in a packed copy too."""
    path = Path(path)
    return path.parent.name, path.stem


class HardNegativeCrops:
    """Crops centred (within their central half) on hard negatives: places where a detector marks scene content.

    Each mark is drawn with probability proportional to the square root of its area, so that large false hits weigh
    more than specks without drowning them. Marks find their photos by folder name and stem (:func:`photo_key`);
    marks on photos that none of the ``pools`` holds are ignored (the photos a pool could not read, or a held-out
    photo).

    Raises:
        DataError: no mark falls on a photo of the pools.
    """

    def __init__(self, marks: Sequence[HardNegative], pools: Sequence[CropPool]) -> None:
        where = {photo_key(path): (pool, index) for pool in pools for index, path in enumerate(pool.files)}
        found = [m for m in marks if photo_key(m.photo) in where]
        self.marks = [(where[photo_key(m.photo)], m.x, m.y) for m in found]
        if not self.marks:
            raise DataError("none of the hard negatives lies on a training photo; mine them from the same folders")
        weights = np.sqrt(np.array([m.area for m in found], np.float64))
        self.chances = weights / weights.sum()
        log.info("hard negatives: %d of %d marks on training photos", len(self.marks), len(marks))

    def __len__(self) -> int:
        return len(self.marks)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A (crop, crop, 3) float32 RGB crop in [0, 1] around a randomly drawn mark."""
        (pool, index), x, y = self.marks[int(rng.choice(len(self.marks), p=self.chances))]
        return pool.sample_around(index, x, y, rng)


def damaged_samples(
    pool: CropPool | HardNegativeCrops,
    preset: Preset | Sequence[Preset],
    stamps: DamageStamps | None,
    rng: np.random.Generator,
    batch_size: int,
) -> list[DegradedSample]:
    """``batch_size`` crops of ``pool`` (random ones, or around hard negatives) damaged by the degradation library; with
    several presets, each sample's preset is drawn uniformly."""
    presets = [preset] if isinstance(preset, Preset) else list(preset)
    samples = []
    for _ in range(batch_size):
        chosen = presets[int(rng.integers(len(presets)))] if len(presets) > 1 else presets[0]
        samples.append(degrade_image(pool.sample(rng), chosen, rng, stamps))
    return samples


def damaged_batch(
    pool: CropPool,
    preset: Preset | Sequence[Preset],
    stamps: DamageStamps | None,
    rng: np.random.Generator,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean, degraded, mask) tensors: (B, 3, H, W), (B, 3, H, W) in [0, 1] and (B, 1, H, W) of 0/1.

    With several presets, each sample's preset is drawn uniformly.
    """
    samples = damaged_samples(pool, preset, stamps, rng, batch_size)
    return (
        to_batch([s.clean for s in samples]),
        to_batch([s.degraded for s in samples]),
        to_batch([s.mask[:, :, None] for s in samples]),
    )


def image_batch(pool: CropPool, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
    """(B, 3, H, W) float32 crops in [0, 1], as they are (no damage added)."""
    return to_batch([pool.sample(rng) for _ in range(batch_size)])


Batch = tuple[torch.Tensor, ...]


class _WorkerBatches(torch.utils.data.IterableDataset):
    """Endless batches made by ``make(rng)`` in a DataLoader worker, each worker with its own generator."""

    def __init__(self, make: Callable[[np.random.Generator], Batch], seed: int, salt: int) -> None:
        super().__init__()
        self.make, self.seed, self.salt = make, seed, salt

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        rng = np.random.default_rng([self.seed, worker, self.salt])
        while True:
            yield self.make(rng)


class BatchStream:
    """Training batches from ``make(rng) -> tuple of tensors``.

    ``workers == 0``: each batch is made when asked, from ``rng`` (the recipe's checkpointed generator), so a
    resumed run sees exactly the batches an uninterrupted one would. ``workers > 0``: batches are made ahead
    in that many background processes (for a GPU, whose steps outrun one CPU core's damage drawing), each
    seeded from ``(seed, worker, first step)``, so a resumed run draws new batches rather than replaying the
    first ones (it is then not bit-for-bit the uninterrupted run).
    """

    def __init__(
        self,
        make: Callable[[np.random.Generator], Batch],
        rng: np.random.Generator,
        *,
        workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.make, self.rng = make, rng
        self.workers, self.seed, self.pin_memory = workers, seed, pin_memory
        self._iterator: Iterator[Batch] | None = None

    def next(self, step: int) -> Batch:
        """The batch for training step ``step``."""
        if self.workers == 0:
            return self.make(self.rng)
        if self._iterator is None:
            # One OpenCV thread per process, set before the workers fork (PyTorch sets its own to one in each
            # worker): many workers each with a thread pool per core would oversubscribe the CPU. Setting it in a
            # forked worker instead can deadlock on the pool inherited from the parent.
            cv2.setNumThreads(1)
            loader = torch.utils.data.DataLoader(
                _WorkerBatches(self.make, self.seed, step),
                batch_size=None,
                num_workers=self.workers,
                prefetch_factor=4,
                persistent_workers=True,
                pin_memory=self.pin_memory,
            )
            self._iterator = iter(loader)
        return next(self._iterator)


Pool = TypeVar("Pool")


def files_key(files: Sequence[Path]) -> str:
    """A cache key part for these files: their paths, sizes and modification times (keyed by the paths alone, a
    cache kept what photos replaced under the same names had held, even with --overwrite)."""
    return "\n".join(f"{path}\t{(stat := Path(path).stat()).st_size}\t{stat.st_mtime_ns}" for path in files)


def cached_pool(cache: Path, part: str, depends_on: tuple, files: Sequence[Path], pool_type: type[Pool], draw: Callable[[], Pool]) -> Pool:
    """The ``pool_type`` dataclass of tensors ``draw()`` makes (a recipe's fixed training or validation pool), saved
    beside the checkpoint ``cache`` as ``pool-<part>-<key>.pt``, where the key hashes ``depends_on`` (everything the
    pool depends on) and ``files`` (:func:`files_key`); a later run with the same key loads it instead of drawing it again (drawing one
    takes minutes: every sample goes through installed networks)."""
    key = hashlib.sha256(repr((depends_on, files_key(files))).encode()).hexdigest()[:16]
    path = cache.with_name(f"pool-{part}-{key}.pt")
    if path.exists():
        try:
            return pool_type(**torch.load(path, weights_only=False))
        except Exception as error:  # noqa: BLE001 - a cut-short zip or pickle raises many types
            # One damaged cache (a kill or a full disk while saving, before saves were atomic) failed every later
            # run, and torch's message blamed the checkpoint: drawn again instead.
            log.warning("%s cannot be loaded (%s: %s); drawing the pool again", path, type(error).__name__, str(error).splitlines()[0] if str(error) else "")
    pool = draw()
    with atomic_writer(path) as handle:  # a run stopped while saving leaves no half-written cache behind
        torch.save({field.name: getattr(pool, field.name) for field in dataclasses.fields(pool)}, handle)  # no deep copy
    return pool


MASK_SOURCES = ("synthetic", "detector")
"""Where a recipe's damage masks come from: the damage that was drawn, or the installed scratch detector's mask of the
damaged image as ``restore`` gives it (the detector's marks that the verifier keeps; misses and false hits
included)."""


def check_mask_source(source: str) -> None:
    """Raises DataError unless ``source`` is one of :data:`MASK_SOURCES`."""
    if source not in MASK_SOURCES:
        raise DataError(f"unknown mask source {source!r}; valid: {', '.join(MASK_SOURCES)}")
