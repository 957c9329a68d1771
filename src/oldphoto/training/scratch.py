"""Recipe: train the scratch-detection U-Net on clean photos with damage drawn on the fly.

Resumable: the checkpoint holds the step, network, optimiser and both random generators, so an
interrupted run continues exactly where it stopped. The best network on the validation set (by F1 at
its best threshold) is exported as safetensors with a JSON sidecar of the threshold and figures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from oldphoto.archs.scratch_unet import ScratchUNet
from oldphoto.degrade import DamageStamps, get_preset
from oldphoto.evaluation.metrics import MaskCounts
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.training.data import CropPool, damaged_batch, list_images
from oldphoto.training.loop import (
    Schedule,
    SingleNetworkRecipe,
    TrainState,
    in_batches,
    initial_network,
    optimise,
    run,
)

log = logging.getLogger(__name__)

THRESHOLDS = np.round(np.arange(0.1, 0.96, 0.05), 2)


@dataclass(frozen=True)
class ScratchTrainConfig:
    data: tuple[str, ...]
    val: tuple[str, ...]
    out: str = "weights/scratch-unet.safetensors"
    checkpoint: str = "runs/scratch/checkpoint.pt"
    damage_dirs: tuple[str, ...] = ()
    presets: tuple[str, ...] = ("default",)
    """Degradation presets, one drawn per sample (training and validation crops alike)."""
    steps: int = 20000
    batch_size: int = 8
    crop: int = 192
    learning_rate: float = 2e-3
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm to this (None: no clipping): wider networks otherwise diverge now and then."""
    seed: int = 0
    validate_every: int = 250
    val_samples: int = 32
    val_crop: int = 384
    init: str | None = None
    """Start from these weights (safetensors) instead of a random initialisation."""


@dataclass
class ValidationResult:
    f1: float
    precision: float
    recall: float
    iou: float
    threshold: float


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, positive_weight: float = 5.0) -> torch.Tensor:
    """BCE (up-weighting the rare damaged pixels) plus soft Dice, which cares about thin structures."""
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(positive_weight))
    probability = torch.sigmoid(logits)
    intersection = (probability * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * intersection + 1) / (probability.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return bce + dice.mean()


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) Rec. 601 luma, as the restore stage feeds the network."""
    return (rgb * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)


def make_validation_set(config: ScratchTrainConfig, stamps: DamageStamps | None) -> tuple[torch.Tensor, np.ndarray]:
    """Fixed held-out damaged crops (seeded independently of training): gray (N, 1, H, W), masks (N, H, W) bool."""
    pool = CropPool(list_images(config.val), crop=config.val_crop)
    rng = np.random.default_rng(10_000 + config.seed)
    presets = [get_preset(name) for name in config.presets]
    _, degraded, mask = damaged_batch(pool, presets, stamps, rng, config.val_samples)
    return luma(degraded), mask[:, 0].numpy() > 0.5


@torch.inference_mode()
def scratch_probabilities(network: ScratchUNet, gray: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) luma -> (N, H, W) damage probabilities, four crops at a time."""
    return in_batches(lambda batch: torch.sigmoid(network(batch)), gray)[:, 0].numpy()


def scores_by_threshold(probability: np.ndarray, truth: np.ndarray, thresholds=THRESHOLDS) -> list[ValidationResult]:
    """Mask figures of ``probability > t`` against ``truth`` (both (N, H, W)) for each threshold t."""
    results = []
    for threshold in thresholds:
        counts = MaskCounts.of(probability > threshold, truth)
        results.append(ValidationResult(counts.f1, counts.precision, counts.recall, counts.iou, float(threshold)))
    return results


def best_threshold(results: list[ValidationResult]) -> ValidationResult:
    """The result with the highest F1 (the lowest threshold among ties)."""
    return max(results, key=lambda result: (result.f1, -result.threshold))


@torch.inference_mode()
def validate(network: ScratchUNet, gray: torch.Tensor, truth: np.ndarray) -> ValidationResult:
    return best_threshold(scores_by_threshold(scratch_probabilities(network, gray), truth))


class ScratchRecipe(SingleNetworkRecipe):
    """Training recipe of the scratch-detection U-Net (see :mod:`oldphoto.training.loop`)."""

    name = SCRATCH_MODEL

    def __init__(self, config: ScratchTrainConfig) -> None:
        self.config = config
        self.spec = get_spec(SCRATCH_MODEL)
        torch.manual_seed(config.seed)
        self.network = initial_network(self.spec, config.init)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=config.learning_rate, weight_decay=1e-4)
        self.rng = np.random.default_rng(config.seed)
        self.stamps = DamageStamps(config.damage_dirs) if config.damage_dirs else None
        self.pool = CropPool(list_images(config.data), crop=config.crop)
        self.presets = [get_preset(name) for name in config.presets]
        self.val_gray, self.val_truth = make_validation_set(config, self.stamps)

    def train_step(self, step: int) -> dict[str, float]:
        _, degraded, mask = damaged_batch(self.pool, self.presets, self.stamps, self.rng, self.config.batch_size)
        loss = dice_bce_loss(self.network(luma(degraded)), mask)
        optimise(self.optimizer, loss, self.config.max_grad_norm)
        return {"loss": loss.item()}

    def validate(self) -> dict[str, float]:
        result = validate(self.network, self.val_gray, self.val_truth)
        return {"score": result.f1, **asdict(result)}

    def metadata(self) -> dict:
        return {"config": asdict(self.config), "architecture": asdict(self.spec.config)}


def train_scratch(
    config: ScratchTrainConfig,
    resume: bool = False,
    on_step: Callable[[int, int, dict], None] | None = None,
) -> TrainState:
    """Run (or continue) training up to ``config.steps``. Returns the final state."""
    schedule = Schedule(config.steps, config.learning_rate, config.validate_every, config.checkpoint, config.out)
    return run(ScratchRecipe(config), schedule, resume=resume, on_step=on_step)
