"""Recipe: train the face gate, the strength with which each face takes the refiner's correction.

The data is a fixed pool of aligned training faces (every 20th face held out, as the refiner's recipe does), each
either left clean (``clean_fraction``) or damaged by one of ``presets`` (with structured damage and stamps), then
passed through the installed global stage (triplet and detail fusion, with the true damage mask) and the installed
refiner (conditioned on the damaged face and tone matched, exactly as ``restore`` does). The pool is drawn once, with
the recipe's seed (and cached beside the checkpoint), so a resumed run sees the same pool.

Each face has a best strength in closed form, ``a* = <r - x, c - x> / |r - x|^2`` clipped to [0, 1] (the blend's
error is quadratic in ``a``), 0 for a clean face the refiner would only soften. The gate learns it with a binary
cross-entropy on its logit, every face weighing the same, so that a sharp face counts as much as a damaged one; a
loss on the blend's PSNR itself drove the sigmoid into saturation at 0 within 250 steps (clean faces lose 20 dB to
the refiner, damaged ones gain 0.4), where its gradient vanishes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from oldphoto.degrade import degrade_image, get_preset, load_stamps
from oldphoto.errors import DataError
from oldphoto.registry import (
    FACE_GATE_MODEL,
    FACE_MODEL,
    get_spec,
)
from oldphoto.restore.face_align import match_tone
from oldphoto.restore.faces import averages_mirror, refiner_output
from oldphoto.restore.global_stage import TRIPLET_MODELS
from oldphoto.training.data import cached_pool, list_images, split_held_out, to_batch
from oldphoto.training.faces import aligned_faces, global_stage_on_faces
from oldphoto.training.loop import (
    Accelerator,
    SingleNetworkRecipe,
    TrainSetup,
    TrainState,
    initial_network,
    optimise,
    run,
)
from oldphoto.weights import load_network

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceGateTrainConfig:
    setup: TrainSetup
    """Face photos (e.g. UTKFace crops, one clearly visible face each), outputs, schedule, seed and start weights; of the
    runtime, the precision is used for drawing the pools (the global stage and the refiner, on the CPU), and the time
    budget."""
    presets: tuple[str, ...] = ("bopbtl-v1", "default-v1")
    clean_fraction: float = 0.35
    """Share of the pool left undamaged: sharp faces that must come back as the global stage left them."""
    pool: int = 1600
    val_samples: int = 96


@dataclass(frozen=True)
class FacePool:
    """Aligned faces as ``restore`` hands them to the gate: (N, 3, S, S) float32 in [0, 1] each."""

    original: torch.Tensor
    restored: torch.Tensor
    refined: torch.Tensor
    clean: torch.Tensor
    damaged: np.ndarray
    """(N,) bool: whether the face was damaged (False: the clean face itself)."""


def draw_pool(faces: np.ndarray, count: int, config: FaceGateTrainConfig, rng: np.random.Generator, batch: int = 8) -> FacePool:
    """``count`` faces from the uint8 aligned crops ``faces``, each damaged or not, through the installed global stage
    and refiner (frozen; in the precision of ``config.setup.runtime``)."""
    stamps = load_stamps(config.setup.damage_dirs)
    presets = [get_preset(name) for name in config.presets]
    global_stage = global_stage_on_faces(config.setup.runtime.precision)
    refiner_spec = get_spec(FACE_MODEL)
    refiner, mirror_average = load_network(refiner_spec).eval(), averages_mirror(refiner_spec)
    accelerator = Accelerator.of("cpu", config.setup.runtime.precision)
    parts: dict[str, list[torch.Tensor]] = {"original": [], "restored": [], "refined": [], "clean": []}
    damaged_flags = []
    for start in range(0, count, batch):
        clean, original, masks = [], [], []
        for _ in range(min(batch, count - start)):
            face = faces[int(rng.integers(len(faces)))].astype(np.float32) / 255.0
            if rng.random() < 0.5:
                face = np.ascontiguousarray(face[:, ::-1])
            damaged = rng.random() >= config.clean_fraction
            if damaged:
                sample = degrade_image(face, presets[int(rng.integers(len(presets)))], rng, stamps)
                original.append(sample.degraded)
                masks.append(sample.mask[:, :, None])
                clean.append(sample.clean)
            else:
                original.append(face)
                masks.append(np.zeros(face.shape[:2] + (1,), np.float32))
                clean.append(face)
            damaged_flags.append(damaged)
        clean_t, original_t, mask_t = to_batch(clean), to_batch(original), to_batch(masks)
        restored = global_stage(original_t, mask_t)
        with torch.no_grad(), accelerator.autocast():
            refined = refiner_output(refiner, restored, original_t, mirror_average).float()
        # As restore does: the refiner's output is tone matched to its input.
        matched = [match_tone(r.permute(1, 2, 0).numpy(), x.permute(1, 2, 0).numpy()) for r, x in zip(refined, restored, strict=True)]
        for key, value in (("original", original_t), ("restored", restored), ("refined", to_batch(matched)), ("clean", clean_t)):
            parts[key].append(value.half())  # half the memory of a pool of 256 px faces; the gate trains in float32
    return FacePool(**{key: torch.cat(value) for key, value in parts.items()}, damaged=np.array(damaged_flags))


def pool_of(cache: Path, part: str, draw, config: FaceGateTrainConfig, files: list[Path]) -> FacePool:
    """The pool ``draw()`` makes, cached beside the checkpoint (:func:`~oldphoto.training.data.cached_pool`), keyed
    by everything it depends on: the installed refiner's and global stage's weights (and the refiner's mirror
    averaging) among them, so that a gate trained after either is retrained is drawn from their new outputs, not
    from a stale cache."""
    setup = config.setup
    installed = (*(get_spec(name).sha256 for name in (FACE_MODEL, *TRIPLET_MODELS)), averages_mirror(get_spec(FACE_MODEL)))
    depends_on = (part, setup.seed, config.pool, config.val_samples, config.presets, config.clean_fraction, setup.damage_dirs, setup.runtime.precision, installed)
    return cached_pool(cache, part, depends_on, files, FacePool, draw)


def best_strength(restored: torch.Tensor, refined: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """(N,) the strength in [0, 1] that brings ``restored + a * (refined - restored)`` closest to ``clean``."""
    change, wanted = refined - restored, clean - restored
    return ((change * wanted).sum(dim=(1, 2, 3)) / ((change**2).sum(dim=(1, 2, 3)) + 1e-8)).clamp(0.0, 1.0)


def blend_psnr(strength: torch.Tensor, restored: torch.Tensor, refined: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """(N,) PSNR in dB of ``restored + strength * (refined - restored)`` against ``clean`` ((N, 3, S, S) in [0, 1])."""
    blended = restored + strength[:, None, None, None] * (refined - restored)
    mse = ((blended - clean) ** 2).mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse + 1e-10)


class FaceGateRecipe(SingleNetworkRecipe):
    name = FACE_GATE_MODEL

    def __init__(self, config: FaceGateTrainConfig) -> None:
        if not 0.0 <= config.clean_fraction <= 1.0:
            raise DataError("--clean-fraction must be between 0 and 1")
        self.config = config
        setup = config.setup
        torch.manual_seed(setup.seed)
        train_files, held_out = split_held_out(list_images(setup.data))
        cache = Path(setup.checkpoint).with_name("aligned")
        # The pool has its own generator, so that a resumed run draws the same pool before restoring self.rng.
        self.pool = pool_of(cache, "train", lambda: draw_pool(aligned_faces(train_files, cache), config.pool, config, np.random.default_rng(setup.seed)), config, train_files)
        self.val = pool_of(
            cache, "val", lambda: draw_pool(aligned_faces(held_out, cache), config.val_samples, config, setup.validation_rng()), config, held_out
        )
        log.info("face-gate pools: %d training faces (%d damaged), %d validation", config.pool, self.pool.damaged.sum(), config.val_samples)
        self.rng = np.random.default_rng(setup.seed + 1)
        self.network = initial_network(get_spec(FACE_GATE_MODEL), setup.init)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=setup.learning_rate, weight_decay=1e-4)

    def metadata(self) -> dict:
        return {"config": asdict(self.config), "architecture": asdict(get_spec(FACE_GATE_MODEL).config)}

    def _scores(self, pool: FacePool, indices) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [getattr(pool, key)[indices].float() for key in ("original", "restored", "refined", "clean")]
        strength = self.network(*parts[:3])
        return strength, blend_psnr(strength, *parts[1:])

    def train_step(self, step: int) -> dict[str, float]:
        indices = torch.from_numpy(self.rng.integers(0, self.config.pool, self.config.setup.batch_size))
        original, restored, refined, clean = (getattr(self.pool, key)[indices].float() for key in ("original", "restored", "refined", "clean"))
        logits = self.network.logits(original, restored, refined)
        loss = F.binary_cross_entropy_with_logits(logits, best_strength(restored, refined, clean))
        optimise(self.optimizer, loss)
        return {"loss": loss.item(), "strength": torch.sigmoid(logits).mean().item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        everything = torch.arange(len(self.val.clean))
        strength, psnr = self._scores(self.val, everything)
        restored, refined, clean = (getattr(self.val, key).float() for key in ("restored", "refined", "clean"))
        damaged = torch.from_numpy(self.val.damaged)
        full = blend_psnr(torch.ones(len(clean)), restored, refined, clean)
        none = blend_psnr(torch.zeros(len(clean)), restored, refined, clean)
        return {
            "score": psnr.mean().item(),
            "psnr_gated": psnr.mean().item(),
            "psnr_full": full.mean().item(),
            "psnr_none": none.mean().item(),
            "gated_damaged": psnr[damaged].mean().item(),
            "full_damaged": full[damaged].mean().item(),
            "gated_clean": psnr[~damaged].mean().item(),
            "none_clean": none[~damaged].mean().item(),
            "strength_damaged": strength[damaged].mean().item(),
            "best_damaged": best_strength(restored, refined, clean)[damaged].mean().item(),
            "strength_clean": strength[~damaged].mean().item(),
        }


def train_face_gate(config: FaceGateTrainConfig, resume: bool = False, on_step=None) -> TrainState:
    return run(FaceGateRecipe(config), config.setup.schedule(), resume=resume, on_step=on_step)
