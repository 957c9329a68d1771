"""Recipe: train the scratch-detection U-Net on clean photos with damage drawn on the fly.

Resumable: the checkpoint holds the step, network, optimiser and both random generators, so an
interrupted run continues exactly where it stopped. The best network on the validation set (by F1 at
its best threshold) is exported as safetensors with a JSON sidecar of the threshold and figures.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save

from oldphoto.archs.scratch_unet import ScratchUNet
from oldphoto.degrade import DamageStamps, get_preset
from oldphoto.evaluation.metrics import MaskCounts
from oldphoto.imageio import atomic_write_bytes
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.training.data import CropPool, damaged_batch, list_images

log = logging.getLogger(__name__)

THRESHOLDS = np.round(np.arange(0.2, 0.85, 0.05), 2)


@dataclass(frozen=True)
class ScratchTrainConfig:
    data: tuple[str, ...]
    val: tuple[str, ...]
    out: str = "weights/scratch-unet.safetensors"
    checkpoint: str = "runs/scratch/checkpoint.pt"
    damage_dirs: tuple[str, ...] = ()
    preset: str = "default"
    steps: int = 20000
    batch_size: int = 8
    crop: int = 192
    learning_rate: float = 2e-3
    seed: int = 0
    validate_every: int = 250
    val_samples: int = 32
    val_crop: int = 384


@dataclass
class ValidationResult:
    f1: float
    precision: float
    recall: float
    iou: float
    threshold: float


@dataclass
class TrainState:
    step: int = 0
    best: dict | None = None
    history: list[dict] = field(default_factory=list)


def learning_rate_at(step: int, config: ScratchTrainConfig) -> float:
    """Linear warm-up over 2% of the steps, then cosine decay to 2% of the peak (a pure function of the step,
    so a resumed run follows the same schedule)."""
    warmup = max(1, config.steps // 50)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.learning_rate * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * progress)))


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
    _, degraded, mask = damaged_batch(pool, get_preset(config.preset), stamps, rng, config.val_samples)
    return luma(degraded), mask[:, 0].numpy() > 0.5


@torch.inference_mode()
def validate(network: ScratchUNet, gray: torch.Tensor, truth: np.ndarray) -> ValidationResult:
    network.eval()
    probability = torch.cat([torch.sigmoid(network(gray[i : i + 4])) for i in range(0, len(gray), 4)])[:, 0].numpy()
    network.train()
    best = None
    for threshold in THRESHOLDS:
        counts = MaskCounts.of(probability > threshold, truth)
        if best is None or counts.f1 > best.f1:
            best = ValidationResult(counts.f1, counts.precision, counts.recall, counts.iou, float(threshold))
    return best


def export_weights(network: ScratchUNet, path: Path, metadata: dict) -> None:
    tensors = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
    atomic_write_bytes(path, save(tensors))
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(metadata, indent=2) + "\n").encode())


def train_scratch(
    config: ScratchTrainConfig,
    resume: bool = False,
    on_step: Callable[[int, int, dict], None] | None = None,
) -> TrainState:
    """Run (or continue) training up to ``config.steps``. Returns the final state."""
    spec = get_spec(SCRATCH_MODEL)
    torch.manual_seed(config.seed)
    network = ScratchUNet(spec.config)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    rng = np.random.default_rng(config.seed)
    state = TrainState()
    checkpoint_path = Path(config.checkpoint)
    if resume and checkpoint_path.exists():
        saved = torch.load(checkpoint_path, weights_only=False)
        network.load_state_dict(saved["network"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        state = TrainState(saved["step"], saved["best"], saved["history"])
        log.info("resumed from %s at step %d", checkpoint_path, state.step)
    stamps = DamageStamps(config.damage_dirs) if config.damage_dirs else None
    pool = CropPool(list_images(config.data), crop=config.crop)
    val_gray, val_truth = make_validation_set(config, stamps)
    preset = get_preset(config.preset)
    started = time.perf_counter()
    running = 0.0
    network.train()
    while state.step < config.steps:
        _, degraded, mask = damaged_batch(pool, preset, stamps, rng, config.batch_size)
        loss = dice_bce_loss(network(luma(degraded)), mask)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(state.step, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state.step += 1
        running = 0.98 * running + 0.02 * loss.item() if state.step > 1 else loss.item()
        figures = {"loss": running}
        if state.step % config.validate_every == 0 or state.step == config.steps:
            result = validate(network, val_gray, val_truth)
            figures.update(asdict(result))
            state.history.append({"step": state.step, "loss": running, **asdict(result), "seconds": time.perf_counter() - started})
            if state.best is None or result.f1 > state.best["f1"]:
                state.best = {"step": state.step, **asdict(result)}
                export_weights(network, Path(config.out), {"config": asdict(config), "best": state.best, "architecture": asdict(spec.config)})
            checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "step": state.step,
                    "network": network.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "best": state.best,
                    "history": state.history,
                },
                checkpoint_path.with_suffix(".tmp"),
            )
            checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)
            log.info("step %d loss %.4f val F1 %.3f (thr %.2f)", state.step, running, result.f1, result.threshold)
        if on_step is not None:
            on_step(state.step, config.steps, figures)
    return state
