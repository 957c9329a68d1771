"""Recipe: train the scratch-detection U-Net on clean photos with damage drawn on the fly.

What it learns from, for precision on real photos (issue 16):

- backgrounds: clean photos, and (``real``) real old photos with their faces, hats, white dresses and skies
  through foliage, which must come out unmarked (their few real defects are unmarked too: a small cost,
  measured in the model card); the photos of the real-photo test are never used;
- the presets' scene distractors (emblems, collars, wires, lettering, glints, snow, hatching) drawn into the
  scene before ageing and scanning, never in the mask;
- a share of crops with no structured damage at all (``undamaged_fraction``);
- (``hard_negatives``) a share of crops centred on hard negatives: places in the training photos where a detector
  marks scene content (``scripts/mine_hard_negatives.py``), with damage drawn on them as on any crop;
- the scored mask: damage that moved a pixel by at least 41 of 255 levels after the scan; pixels moved by
  20-41 levels (within the photo's own noise) are don't-care, left out of the loss and of F1.

Resumable: the checkpoint holds the step, network, optimiser and both random generators, so an
interrupted run continues exactly where it stopped (with ``workers == 0``). The best network on the validation
set (by F1 at its best threshold) is exported as safetensors with a JSON sidecar of the threshold and figures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from oldphoto.archs.scratch_unet import ScratchUNet
from oldphoto.degrade import DamageStamps, DegradedSample, Preset, get_preset, load_stamps, op, override
from oldphoto.evaluation.metrics import MaskCounts
from oldphoto.imageio import LUMA_WEIGHTS
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.training.data import (
    BatchStream,
    CropPool,
    HardNegativeCrops,
    damaged_samples,
    list_images,
    load_hard_negatives,
    split_real_photos,
    to_batch,
)
from oldphoto.training.loop import (
    Accelerator,
    SingleNetworkRecipe,
    TrainSetup,
    TrainState,
    check_loss_weights,
    in_batches,
    initial_network,
    optimise,
    run,
    validation_rng,
    warn_unused_options,
)

log = logging.getLogger(__name__)

THRESHOLDS = np.round(np.arange(0.1, 0.96, 0.05), 2)


@dataclass(frozen=True)
class ScratchTrainConfig:
    setup: TrainSetup
    """Data, outputs, schedule, seed, start weights and runtime (device, precision, workers and time budget)."""
    val: tuple[str, ...]
    """Folders of held-out clean photos (the validation crops are cut from them with a fixed seed)."""
    presets: tuple[str, ...] = ("default",)
    """Degradation presets, one drawn per sample (training and validation crops alike)."""
    crop: int = 192
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm to this (None: no clipping): wider networks otherwise diverge now and then."""
    val_samples: int = 32
    val_crop: int = 384
    real: tuple[str, ...] = ()
    """Folders of real old photos used as backgrounds too (their real-photo test part is left out)."""
    real_labels: str | None = None
    """The labelled real-photo test (JSON): the photos it names are never trained on."""
    real_fraction: float = 0.3
    """Share of training crops cut from the real old photos (when ``real`` is given)."""
    undamaged_fraction: float = 0.1
    """Share of training crops with no structured damage drawn (scene distractors and ageing still apply)."""
    positive_weight: float = 5.0
    """BCE weight of damaged pixels (lower favours precision)."""
    hard_negatives: str | None = None
    """Hard-negative file (``scripts/mine_hard_negatives.py``): places in the training photos where a detector marks
    scene content."""
    hard_fraction: float = 0.25
    """Share of training crops centred on a hard negative (when ``hard_negatives`` is given); damage is drawn on
    them as on any crop."""
    extra_damage: tuple[tuple[str, float], ...] = ()
    """(structured op, probability) pairs added to every training preset's damage (not to the validation crops,
    whose figures stay comparable), e.g. ``(("flaking", 0.15),)``: damage the presets do not draw."""


@dataclass
class ValidationResult:
    f1: float
    precision: float
    recall: float
    iou: float
    threshold: float
    distractor_marked: float = 0.0
    """Share of scene-distractor pixels marked at this threshold."""


def dice_bce_loss(
    logits: torch.Tensor, target: torch.Tensor, care: torch.Tensor | None = None, positive_weight: float = 5.0
) -> torch.Tensor:
    """BCE (up-weighting the rare damaged pixels) plus soft Dice, which cares about thin structures.

    logits, target: (N, 1, H, W), target 0/1. ``care`` (N, 1, H, W) of 0/1: pixels that count (0 = don't-care,
    e.g. damage too faint to see in the photo's own noise); None = all.
    """
    care = torch.ones_like(target) if care is None else care
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(
        logits, target, weight=care, pos_weight=torch.tensor(positive_weight, device=logits.device), reduction="sum"
    ) / care.sum().clamp_min(1.0)
    probability = torch.sigmoid(logits) * care
    intersection = (probability * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * intersection + 1) / (probability.sum(dim=(1, 2, 3)) + (target * care).sum(dim=(1, 2, 3)) + 1)
    return bce + dice.mean()


def scored_targets(samples: list[DegradedSample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gray, target, care) of damaged samples: (N, 1, H, W) luma, the scored mask, and 1 - the don't-care band."""
    gray = luma(to_batch([s.degraded for s in samples]))
    target = to_batch([s.scored_mask[:, :, None] for s in samples])
    care = 1.0 - to_batch([s.dont_care[:, :, None] for s in samples])
    return gray, target, care


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) Rec. 601 luma, as the restore stage feeds the network."""
    return (rgb * torch.from_numpy(LUMA_WEIGHTS)[None, :, None, None]).sum(1, keepdim=True)


@dataclass
class ValidationSet:
    """Fixed held-out damaged crops: gray (N, 1, H, W); truth (scored mask), ignore (don't-care band) and
    distractor (scene content that must stay unmarked), each (N, H, W) bool."""

    gray: torch.Tensor
    truth: np.ndarray
    ignore: np.ndarray
    distractor: np.ndarray


def make_validation_set(
    folders: Sequence[str], presets: Sequence[str], stamps: DamageStamps | None, count: int, crop: int, seed: int = 0
) -> ValidationSet:
    """``count`` validation crops of ``crop`` pixels cut from the photos in ``folders``, each damaged by one of
    ``presets``: those a training run with the seed ``seed`` validates on (:func:`validation_rng`)."""
    pool = CropPool(list_images(folders), crop=crop)
    samples = damaged_samples(pool, [get_preset(name) for name in presets], stamps, validation_rng(seed), count)
    return ValidationSet(
        gray=luma(to_batch([s.degraded for s in samples])),
        truth=np.stack([s.scored_mask > 0.5 for s in samples]),
        ignore=np.stack([s.dont_care > 0.5 for s in samples]),
        distractor=np.stack([s.distractor > 0.5 for s in samples]),
    )


@torch.inference_mode()
def scratch_probabilities(network: ScratchUNet, gray: torch.Tensor, accelerator: Accelerator = Accelerator()) -> np.ndarray:
    """(N, 1, H, W) luma -> (N, H, W) damage probabilities, four crops at a time."""

    def probabilities(batch: torch.Tensor) -> torch.Tensor:
        with accelerator.autocast():
            return torch.sigmoid(network(batch.to(accelerator.device)).float()).cpu()

    return in_batches(probabilities, gray)[:, 0].numpy()


def scores_by_threshold(
    probability: np.ndarray,
    truth: np.ndarray,
    thresholds=THRESHOLDS,
    ignore: np.ndarray | None = None,
    distractor: np.ndarray | None = None,
) -> list[ValidationResult]:
    """Mask figures of ``probability > t`` against ``truth`` (all (N, H, W)) for each threshold t; ``ignore``
    pixels are left out of the counts, ``distractor`` pixels give the share of scene content marked."""
    results = []
    for threshold in thresholds:
        predicted = probability > threshold
        counts = MaskCounts.of(predicted, truth, ignore=ignore)
        marked = float(predicted[distractor].mean()) if distractor is not None and distractor.any() else 0.0
        results.append(ValidationResult(counts.f1, counts.precision, counts.recall, counts.iou, float(threshold), marked))
    return results


def best_threshold(results: list[ValidationResult], min_precision: float | None = None) -> ValidationResult:
    """The result with the highest F1 (the lowest threshold among ties); with ``min_precision``, among those at
    least that precise (the most precise one when none is)."""
    if min_precision is not None:
        precise = [r for r in results if r.precision >= min_precision]
        if not precise:
            return max(results, key=lambda result: (result.precision, result.f1))
        results = precise
    return max(results, key=lambda result: (result.f1, -result.threshold))


@torch.inference_mode()
def validate(network: ScratchUNet, data: ValidationSet, accelerator: Accelerator = Accelerator()) -> ValidationResult | None:
    """The best-threshold figures on ``data``; None when the network's probabilities are not all finite (a diverged
    run: NaN marks nothing, which scored a finite F1 of 0 and was exported as a best)."""
    probability = scratch_probabilities(network, data.gray, accelerator)
    if not np.isfinite(probability).all():
        return None
    return best_threshold(scores_by_threshold(probability, data.truth, ignore=data.ignore, distractor=data.distractor))


def with_extra_damage(preset: Preset, extra: Sequence[tuple[str, float]]) -> Preset:
    """``preset`` with the structured ops ``extra`` ((name, probability) pairs) added to its damage.

    Raises:
        ConfigError: an unknown op or a probability outside [0, 1].
    """
    if not extra:
        return preset
    return replace(preset, structured=preset.structured + tuple(op(name, probability) for name, probability in extra)).validate()


class ScratchRecipe(SingleNetworkRecipe):
    """Training recipe of the scratch-detection U-Net (see :mod:`oldphoto.training.loop`)."""

    name = SCRATCH_MODEL

    def __init__(self, config: ScratchTrainConfig) -> None:
        check_loss_weights(positive_weight=config.positive_weight)
        defaults = ScratchTrainConfig
        warn_unused_options(
            [
                (not config.real and config.real_fraction != defaults.real_fraction, "--real-fraction", "--real"),
                (not config.real and config.real_labels is not None, "--real-labels", "--real"),
                (not config.hard_negatives and config.hard_fraction != defaults.hard_fraction, "--hard-fraction", "--hard-negatives"),
            ]
        )
        self.config = config
        setup = config.setup
        self.spec = get_spec(SCRATCH_MODEL)
        self.accelerator = Accelerator.of(setup.runtime.device, setup.runtime.precision)
        torch.manual_seed(setup.seed)
        self.network = initial_network(self.spec, setup.init).to(self.accelerator.device)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=setup.learning_rate, weight_decay=1e-4)
        self.rng = np.random.default_rng(setup.seed)
        self.stamps = load_stamps(setup.damage_dirs)
        self.pool = CropPool(list_images(setup.data), crop=config.crop)
        self.real_pool = None
        if config.real:
            train_real, _ = split_real_photos(list_images(config.real), config.real_labels)
            self.real_pool = CropPool(train_real, crop=config.crop)
        self.hard = None
        if config.hard_negatives:
            pools = [self.pool] if self.real_pool is None else [self.pool, self.real_pool]
            self.hard = HardNegativeCrops(load_hard_negatives(config.hard_negatives), pools)
        self.presets = [with_extra_damage(get_preset(name), config.extra_damage) for name in config.presets]
        self.undamaged = [override(preset, structured=False) for preset in self.presets]
        self.validation = make_validation_set(config.val, config.presets, self.stamps, config.val_samples, config.val_crop, setup.seed)
        self.batches = BatchStream(
            self.make_batch,
            self.rng,
            workers=setup.runtime.workers,
            seed=setup.seed,
            pin_memory=self.accelerator.device.type == "cuda",
        )

    def make_batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gray, target, care) of one training batch (see :func:`scored_targets`)."""
        samples = []
        for _ in range(self.config.setup.batch_size):
            # Draws nothing for a source that is off, so that runs without it keep their random streams.
            hard = self.hard is not None and rng.random() < self.config.hard_fraction
            real = not hard and self.real_pool is not None and rng.random() < self.config.real_fraction
            presets = self.undamaged if rng.random() < self.config.undamaged_fraction else self.presets
            source = self.hard if hard else self.real_pool if real else self.pool
            samples += damaged_samples(source, presets, self.stamps, rng, 1)
        return scored_targets(samples)

    def train_step(self, step: int) -> dict[str, float]:
        gray, target, care = self.accelerator.put(*self.batches.next(step))
        with self.accelerator.autocast():
            logits = self.network(gray)
        loss = dice_bce_loss(logits, target, care, self.config.positive_weight)
        optimise(self.optimizer, loss, self.config.max_grad_norm)
        return {"loss": loss.item()}

    def validate(self) -> dict[str, float]:
        result = validate(self.network, self.validation, self.accelerator)
        return {"score": float("nan")} if result is None else {"score": result.f1, **asdict(result)}

    def metadata(self) -> dict:
        return {"config": asdict(self.config), "architecture": asdict(self.spec.config)}


def train_scratch(
    config: ScratchTrainConfig,
    resume: bool = False,
    on_step: Callable[[int, int, dict], None] | None = None,
) -> TrainState:
    """Run (or continue) training up to ``config.setup.steps``. Returns the final state."""
    return run(ScratchRecipe(config), config.setup.schedule(), resume=resume, on_step=on_step)
