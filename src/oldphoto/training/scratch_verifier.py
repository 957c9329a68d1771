"""Recipe: train the scratch verifier, which keeps the detector's mask components that are damage and drops the
ones that are scene content.

The data is a fixed pool of mask components of the installed detector (cached beside the checkpoint, so a resumed
run sees the same pool), found at one of ``thresholds`` on:

- damaged crops (``presets``, with their scene distractors) of clean photos and, with ``real_fraction``, of the
  real old photos outside the real-photo test; a component is damage when at least half of its pixels lie in the
  damage mask (don't-care band included), content when at most ``content_overlap`` of them do, and left out in
  between (a scratch merged with a white collar is neither);
- whole photos as they are, with no damage drawn: the real old photos outside the real-photo test (their few real
  defects are counted as content too: a cost the model card measures on the labelled real damage) and clean
  photos aged by the presets without structured damage. Every component there is content: the false hits that
  erase insignia, flowers and skies.

Every 20th training file is held out for the validation pool (the real-photo test photos are never used). The loss
is a binary cross-entropy in which each class weighs the same in total, and each component by the square root of
its area (capped), since the harm of a false hit grows with what it paints over. The validation score is the share
of content pixels removed while at least ``keep_damage`` of the damage pixels stay (the verifier's threshold is
chosen the same way and written to the sidecar).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from oldphoto.degrade import degrade_image, get_preset, load_stamps, override
from oldphoto.errors import DataError
from oldphoto.imageio import luma_plane
from oldphoto.registry import SCRATCH_MODEL, SCRATCH_VERIFIER_MODEL, get_spec
from oldphoto.restore.scratches import (
    component_features,
    mask_components,
    scratch_probability,
)
from oldphoto.runtime import make_runtime
from oldphoto.training.data import (
    CropPool,
    cached_pool,
    damaged_samples,
    list_images,
    readable_images,
    split_held_out,
    split_real_photos,
)
from oldphoto.training.loop import (
    SingleNetworkRecipe,
    TrainSetup,
    TrainState,
    initial_network,
    optimise,
    run,
    warn_unused_options,
)
from oldphoto.weights import file_sha256, load_model, load_network_from

log = logging.getLogger(__name__)

SOURCES = ("damaged crop", "damaged real crop", "real photo", "aged clean photo")
"""Where a pool component comes from (``ComponentPool.source`` indexes this)."""
AREA_WEIGHT_CAP = 16384

"""Components weigh by the square root of their area up to this many pixels."""


@dataclass(frozen=True)
class ScratchVerifierTrainConfig:
    setup: TrainSetup
    """Clean photos (``data``), stamps, outputs, schedule, seed and start weights; of the runtime, the precision is
    used for the detector while drawing the pools (on the CPU)."""
    real: tuple[str, ...] = ()
    """Folders of real old photos: damaged crops of them, and the photos as they are (the real-photo test is left out)."""
    real_labels: str | None = None
    """The labelled real-photo test (JSON): the photos it names are never used."""
    presets: tuple[str, ...] = ("default", "bopbtl")
    thresholds: tuple[float, ...] = (0.5, 0.75)
    """Detector thresholds the components are found at, one drawn per image (the verifier then works at any of them)."""
    crops: int = 4000
    """Damaged crops in the training pool (the validation pool has a tenth)."""
    crop: int = 512
    """Side of the damaged crops: room for the large stamps (stains, emulsion loss) whose judging matters most."""
    real_fraction: float = 0.4
    """Share of the damaged crops cut from the real old photos."""
    content_overlap: float = 0.15
    """A component of a damaged crop is content when at most this share of it is damage."""
    max_side: int = 1280
    """Whole photos are scaled down to this long side (as the real old photos are)."""
    scales: tuple[float, ...] = (1.0, 0.7)
    """Each whole photo is searched at these scales (of its capped size) and at every one of ``thresholds``: large
    false hits (a sky through foliage, a white dress) are rare, and the verifier must learn them at every size."""
    keep_damage: float = 0.80
    """Share of the damage pixels the chosen verifier threshold must keep on the validation pool."""
    average_decay: float = 0.995
    """Decay per step of the running average of the weights that is validated and exported (0: the trained network
    itself, as the shipped weights were taken)."""
    detector_weights: str | None = None
    """The detector whose marks the verifier learns to judge (a file ``oldphoto train scratch`` wrote); None: the
    installed one. A verifier goes with the detector it was trained on (session 18: one drawn from another detector's
    marks judged the new detector's poorly), so a retrained detector needs its verifier trained on its marks."""


@dataclass(frozen=True)
class ComponentPool:
    """Mask components as the verifier sees them: crops (N, 3 or 6, S, S) uint8 (value x 255), scalars (N, 10) float32,
    overlap (N,) float32 (share of the component in the damage mask), area (N,) int64, source (N,) int64."""

    crops: torch.Tensor
    scalars: torch.Tensor
    overlap: torch.Tensor
    area: torch.Tensor
    source: torch.Tensor


class _PoolBuilder:
    def __init__(self, crop: int, native: bool = False) -> None:
        self.crop = crop
        self.native = native
        self.parts: dict[str, list[np.ndarray]] = {field.name: [] for field in fields(ComponentPool)}

    def add(self, pixels: np.ndarray, probability: np.ndarray, threshold: float, damage: np.ndarray | None, source: int) -> None:
        components = mask_components(probability > threshold)
        if not len(components):
            return
        luma = luma_plane(pixels)
        crops, scalars = component_features(luma, probability, components, self.crop, native=self.native)
        if damage is None:
            overlap = np.zeros(len(components), np.float32)
        else:
            hits = np.bincount(components.labels.ravel(), weights=(damage > 0).ravel(), minlength=len(components) + 1)[1:]
            overlap = (hits / components.areas).astype(np.float32)
        self.parts["crops"].append(np.clip(np.rint(crops * 255), 0, 255).astype(np.uint8))
        self.parts["scalars"].append(scalars)
        self.parts["overlap"].append(overlap)
        self.parts["area"].append(components.areas)
        self.parts["source"].append(np.full(len(components), source, np.int64))

    @property
    def count(self) -> int:
        return sum(len(part) for part in self.parts["area"])

    def build(self) -> ComponentPool:
        if not self.count:  # np.concatenate of nothing: a ValueError traceback
            raise DataError("the detector marked nothing on the pool's photos and crops: no components to learn from (check --detector-weights and the data)")
        return ComponentPool(**{key: torch.from_numpy(np.concatenate(value)) for key, value in self.parts.items()})


def draw_pool(
    config: ScratchVerifierTrainConfig, clean: list[Path], real: list[Path], crops: int, rng: np.random.Generator
) -> ComponentPool:
    """Components of ``crops`` damaged crops (of ``clean`` and ``real`` photos) and of the whole photos as they
    are (real ones untouched, clean ones aged without structured damage)."""
    setup = config.setup
    runtime = make_runtime("cpu", setup.runtime.precision)
    detector = load_model(get_spec(SCRATCH_MODEL), runtime, config.detector_weights)
    stamps = load_stamps(setup.damage_dirs)
    presets = [get_preset(name) for name in config.presets]
    undamaged = [override(preset, structured=False) for preset in presets]
    verifier_config = get_spec(SCRATCH_VERIFIER_MODEL).config
    builder = _PoolBuilder(verifier_config.crop, verifier_config.native_patch)
    clean_pool = CropPool(clean, crop=config.crop)
    real_pool = CropPool(real, crop=config.crop) if real else None

    def add(pixels: np.ndarray, damage: np.ndarray | None, source: int, thresholds: tuple[float, ...]) -> None:
        with torch.inference_mode():
            probability = scratch_probability(pixels, detector, runtime)
        for threshold in thresholds:
            builder.add(pixels, probability, threshold, damage, source)

    for index in range(crops):
        from_real = real_pool is not None and rng.random() < config.real_fraction
        sample = damaged_samples(real_pool if from_real else clean_pool, presets, stamps, rng, 1)[0]
        threshold = float(rng.choice(config.thresholds))
        add(sample.degraded, sample.mask, SOURCES.index("damaged real crop" if from_real else "damaged crop"), (threshold,))
        if index % 250 == 0:
            log.info("verifier pool: %d of %d damaged crops, %d components", index, crops, builder.count)
    for source, files in (("real photo", real), ("aged clean photo", clean)):
        for _, photo in readable_images(files):
            for relative in config.scales:
                scale = min(1.0, config.max_side / max(photo.shape[:2])) * relative
                image = photo
                if scale < 1.0:
                    size = (max(round(photo.shape[1] * scale), 32), max(round(photo.shape[0] * scale), 32))
                    image = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
                if source == "aged clean photo":
                    image = degrade_image(image, undamaged[int(rng.integers(len(undamaged)))], rng, stamps).degraded
                add(image, None, SOURCES.index(source), config.thresholds)
        log.info("verifier pool: %d %ss, %d components", len(files), source, builder.count)
    return builder.build()


def pool_of(cache: Path, part: str, draw, config: ScratchVerifierTrainConfig, files: list[Path]) -> ComponentPool:
    """The pool ``draw()`` makes, cached beside the checkpoint (:func:`~oldphoto.training.data.cached_pool`), keyed
    by everything it depends on (the detector's weights and the verifier's input among them)."""
    setup = config.setup
    depends_on = (
        part,
        setup.seed,
        setup.damage_dirs,
        setup.runtime.precision,
        get_spec(SCRATCH_MODEL).sha256 if config.detector_weights is None else file_sha256(Path(config.detector_weights)),
        asdict(get_spec(SCRATCH_VERIFIER_MODEL).config),
        {key: value for key, value in asdict(config).items() if key not in ("setup", "keep_damage", "average_decay")},
    )
    return cached_pool(cache, part, depends_on, files, ComponentPool, draw)


@dataclass(frozen=True)
class Separation:
    """How a verifier threshold splits a pool: the share of damage pixels kept and of content pixels removed."""

    threshold: float
    damage_kept: float
    content_removed: float


SIZE_BINS = (16, 64, 256, 1024, 4096)
"""Component areas (pixels) that bound the size classes in which damage and content are balanced."""


def labels_and_weights(pool: ComponentPool, content_overlap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) targets (1 = damage, 0 = content) and loss weights: 0 for the ambiguous components; each component by the
    square root of its capped area (a false hit's harm grows with what it paints over); within each size class,
    damage and content weighing the same in total, so that size alone decides nothing (large damage stamps are
    common in the pool, large content false hits rare, and on real photos the reverse)."""
    damage = pool.overlap >= 0.5
    content = pool.overlap <= content_overlap
    weight = pool.area.clamp(max=AREA_WEIGHT_CAP).float().sqrt()
    weight = torch.where(damage | content, weight, torch.zeros_like(weight))
    size_class = torch.bucketize(pool.area, torch.tensor(SIZE_BINS))
    balanced = weight.clone()
    for size in size_class.unique():
        members = size_class == size
        total = weight[members].sum()
        for chosen in (damage & members, content & members):
            if chosen.any() and (members & ~chosen & (damage | content)).any():
                balanced[chosen] = weight[chosen] * (total / 2) / weight[chosen].sum()
    return damage.float(), balanced * len(balanced) / balanced.sum().clamp_min(1e-6)


def separation(scores: torch.Tensor, pool: ComponentPool, keep_damage: float) -> Separation:
    """The highest threshold that keeps at least ``keep_damage`` of the pool's damage pixels, and the share of
    content pixels (those outside the damage mask, of every component) it removes."""
    damage_pixels = pool.overlap * pool.area
    content_pixels = (1 - pool.overlap) * pool.area
    order = torch.argsort(scores, descending=True)
    kept_damage = torch.cumsum(damage_pixels[order], 0) / damage_pixels.sum().clamp_min(1e-6)
    enough = int(torch.searchsorted(kept_damage, torch.tensor([keep_damage]))[0].clamp(max=len(order) - 1))
    threshold = float(scores[order[enough]])
    kept = scores >= threshold
    return Separation(
        threshold=threshold,
        damage_kept=float(damage_pixels[kept].sum() / damage_pixels.sum().clamp_min(1e-6)),
        content_removed=float(content_pixels[~kept].sum() / content_pixels.sum().clamp_min(1e-6)),
    )


class ScratchVerifierRecipe(SingleNetworkRecipe):
    name = SCRATCH_VERIFIER_MODEL

    def __init__(self, config: ScratchVerifierTrainConfig) -> None:
        if not 0.0 <= config.real_fraction <= 1.0:
            raise DataError("--real-fraction must be between 0 and 1")
        defaults = ScratchVerifierTrainConfig
        warn_unused_options(
            [
                (not config.real and config.real_fraction != defaults.real_fraction, "--real-fraction", "--real"),
                (not config.real and config.real_labels is not None, "--real-labels", "--real"),
            ]
        )
        if config.detector_weights is not None:
            # Refused now, not after the data is listed and the pool is half drawn.
            load_network_from(get_spec(SCRATCH_MODEL), config.detector_weights)
        self.config = config
        setup = config.setup
        torch.manual_seed(setup.seed)
        clean_train, clean_val = split_held_out(list_images(setup.data))
        real_train, real_val = [], []
        if config.real:
            real_train, real_val = split_held_out(split_real_photos(list_images(config.real), config.real_labels)[0])
        cache = Path(setup.checkpoint)
        self.pool = pool_of(
            cache, "train", lambda: draw_pool(config, clean_train, real_train, config.crops, np.random.default_rng(setup.seed)), config, clean_train + real_train
        )
        self.val = pool_of(
            cache, "val", lambda: draw_pool(config, clean_val, real_val, max(config.crops // 10, 1), setup.validation_rng()), config, clean_val + real_val
        )
        self.targets, self.weights = labels_and_weights(self.pool, config.content_overlap)
        # The training components with a weight, drawn from at each step (the ambiguous, partly damaged ones never are).
        self.usable = torch.nonzero(self.weights > 0)[:, 0]
        log.info("scratch-verifier pools: %d training components (%d damage), %d validation", len(self.targets), int(self.targets.sum()), len(self.val.area))
        self.rng = np.random.default_rng(setup.seed + 1)
        self.network = initial_network(get_spec(SCRATCH_VERIFIER_MODEL), setup.init)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=setup.learning_rate, weight_decay=1e-4)
        # The validated and exported network is a running average of the trained one: the scores of the rare real
        # damage and large content false hits swung by +-0.3 from one checkpoint to the next without it.
        self.average = copy.deepcopy(self.network).requires_grad_(False)
        self.threshold = 0.5

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"network": self.network, "average": self.average}

    def exported(self) -> torch.nn.Module:
        return self.average

    def metadata(self) -> dict:
        return {"config": asdict(self.config), "architecture": asdict(get_spec(SCRATCH_VERIFIER_MODEL).config), "threshold": self.threshold}

    def _logits(self, pool: ComponentPool, indices: torch.Tensor, network: torch.nn.Module | None = None) -> torch.Tensor:
        crops = pool.crops[indices].float() / 255.0
        if network is None and self.rng.random() < 0.5:
            crops = crops.flip(3)  # training: mirrored crops are as likely
        return (network or self.network)(crops, pool.scalars[indices])

    def train_step(self, step: int) -> dict[str, float]:
        indices = self.usable[torch.from_numpy(self.rng.integers(0, len(self.usable), self.config.setup.batch_size))]
        logits = self._logits(self.pool, indices)
        loss = F.binary_cross_entropy_with_logits(logits, self.targets[indices], weight=self.weights[indices])
        optimise(self.optimizer, loss)
        with torch.no_grad():
            for average, current in zip(self.average.parameters(), self.network.parameters(), strict=True):
                average.lerp_(current, 1 - self.config.average_decay)
        return {"loss": loss.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        count = len(self.val.area)
        batches = [torch.arange(start, min(start + 512, count)) for start in range(0, count, 512)]
        scores = torch.cat([torch.sigmoid(self._logits(self.val, batch, self.average)) for batch in batches])
        split = separation(scores, self.val, self.config.keep_damage)
        self.threshold = split.threshold
        figures = {"score": split.content_removed, **asdict(split)}
        for index, source in enumerate(SOURCES):
            chosen = self.val.source == index
            if chosen.any():
                content = (1 - self.val.overlap[chosen]) * self.val.area[chosen]
                figures[f"removed {source}"] = float(content[scores[chosen] < split.threshold].sum() / content.sum().clamp_min(1e-6))
        return figures


def train_scratch_verifier(config: ScratchVerifierTrainConfig, resume: bool = False, on_step=None) -> TrainState:
    return run(ScratchVerifierRecipe(config), config.setup.schedule(), resume=resume, on_step=on_step)
