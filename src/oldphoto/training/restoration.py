"""Recipes of global restoration: VAE_B (clean), VAE_A (old), the latent mapping, and the ablation U-Net.

Order (Wan et al. Sec. 3): the two VAEs first, independently; then the mapping with both VAEs frozen.

- ``vae-clean`` (VAE_B): reconstruct clean crops Y; L1 + SSIM + KL.
- ``vae-old`` (VAE_A): reconstruct synthetic degraded crops X *and* real old crops R; L1 + SSIM + KL,
  plus a latent adversarial loss: a patch discriminator learns to tell R latents from X latents and
  the encoder is trained to make them indistinguishable, so that what the mapping learns on X
  transfers to real old photos.
- ``mapping``: latent L1 to VAE_B's encoding of the clean target, plus L1 + SSIM of the image decoded
  through the frozen VAE_B decoder.
- ``restore-unet``: the direct image-to-image ablation, on the same (X, Y, mask) pairs.
- ``detail-fusion``: with the triplet frozen, the learned mask-gated path back to the photo's own detail
  (:mod:`oldphoto.archs.detail_fusion`), on the same pairs plus a share of undamaged crops whose target is the
  crop itself (``clean_fraction``), so that it learns to leave a good photo alone.

Adversarial image losses and feature matching (used by the paper on GPUs) are left out: on two CPU
cores each discriminator roughly doubles the cost of a step, and the budget buys more by training
the generator longer.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from oldphoto.archs.discriminator import LatentDiscriminator, LatentDiscriminatorConfig
from oldphoto.archs.mapping import latent_damage
from oldphoto.archs.vae import VAE, kl_divergence, sample_latent
from oldphoto.degrade import get_preset, load_stamps, override
from oldphoto.errors import DataError
from oldphoto.registry import (
    DETAIL_MODEL,
    MAPPING_MODEL,
    RESTORE_UNET_MODEL,
    VAE_CLEAN_MODEL,
    VAE_OLD_MODEL,
    get_spec,
)
from oldphoto.restore.global_stage import LATENT_SCALE, triplet_forward, triplet_restore, triplet_size_multiple
from oldphoto.restore.scratches import ScratchDetection, load_scratch_detection
from oldphoto.runtime import make_runtime
from oldphoto.training.data import (
    BatchStream,
    CropPool,
    check_mask_source,
    damaged_batch,
    image_batch,
    list_images,
    split_held_out,
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
    warn_unused_options,
)
from oldphoto.training.losses import (
    image_scores,
    least_squares_gan,
    psnr,
    restoration_loss,
)
from oldphoto.weights import load_network_from

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlobalTrainConfig:
    model: str
    """vae-clean, vae-old, mapping, restore-unet or detail-fusion."""
    setup: TrainSetup
    """Clean photos, outputs, schedule, seed, start weights (of the trained network: fine-tuning, or growing it by
    new layers) and runtime (detail-fusion only; the others train on the CPU in fp32)."""
    val: tuple[str, ...]
    """Folders of held-out clean photos (validation pairs are made from them with a fixed seed)."""
    real: tuple[str, ...] = ()
    """Folders of real old photos (vae-old only)."""
    presets: tuple[str, ...] = ("default", "bopbtl")
    crop: int = 128
    val_samples: int = 16
    val_crop: int = 256
    kl_weight: float = 1e-4
    ssim_weight: float = 0.2
    adversarial_weight: float = 0.02
    latent_weight: float = 1.0
    vae_old: str | None = None
    """Weights of the trained VAE_A for ``mapping`` (default: the installed vae-old)."""
    vae_clean: str | None = None
    """Weights of the trained VAE_B for ``mapping`` (default: the installed vae-clean)."""
    mask_source: str = "synthetic"
    """The damage mask given to mapping / restore-unet: "synthetic" (the damage that was drawn) or "detector"
    (the scratch detector's marks of the degraded crop that the verifier keeps, as ``restore`` gives them: misses and
    false hits included)."""
    scratch_weights: str | None = None
    """Scratch-detector weights for ``mask_source="detector"`` (default: the installed scratch-unet)."""
    verifier_weights: str | None = None
    """Scratch-verifier weights for ``mask_source="detector"`` (default: the installed scratch-verifier)."""
    mapping: str | None = None
    """Weights of the trained mapping for ``detail-fusion`` (default: the installed mapping)."""
    clean_fraction: float = 0.25
    """``detail-fusion``: share of training crops left undamaged, with the crop itself as the target."""
    light_fraction: float = 0.0
    """``detail-fusion``: share of training crops with structured damage only (no noise, blur or fading)."""


class _Base:
    """What every global-restoration recipe shares: seeded data, stamps, presets, fixed validation pairs."""

    name: str
    accelerated = False
    """Whether the recipe honours ``device``, ``precision`` and ``workers`` (the others train on the CPU in fp32)."""

    def __init__(self, config: GlobalTrainConfig) -> None:
        setup = config.setup
        check_loss_weights(
            kl_weight=config.kl_weight, ssim_weight=config.ssim_weight, adversarial_weight=config.adversarial_weight, latent_weight=config.latent_weight
        )
        if not self.accelerated and not setup.runtime.default:
            raise DataError(f"{self.name} trains on the CPU in fp32 only; --device, --precision and --workers are for detail-fusion")
        if config.crop % 4 or config.val_crop % 4:
            raise DataError("--crop and the validation crop must be multiples of 4 (the latent grid)")
        if self.name == VAE_OLD_MODEL:
            if not config.real:
                # Checked before any data is loaded; the path it suggested (../shared/data/real_old) was the developers'.
                raise DataError("vae-old needs real old photos: pass --real DIR (a folder of real old photos; repeatable)")
            if setup.batch_size < 2:
                raise DataError("vae-old with --real needs --batch-size 2 or more: half of each step's crops are real photos")
        frozen = (MAPPING_MODEL, DETAIL_MODEL)
        masked = (MAPPING_MODEL, RESTORE_UNET_MODEL, DETAIL_MODEL)  # the recipes whose networks take a damage mask
        defaults = GlobalTrainConfig
        # Each option given that this recipe ignores is said (they were accepted in silence and written into the
        # weights card as if used: `train mapping --clean-fraction 0.9 --kl-weight 3`).
        for given, option, used_by in (
            (config.real, "--real", (VAE_OLD_MODEL,)),
            (config.vae_old, "--vae-old", frozen),
            (config.vae_clean, "--vae-clean", frozen),
            (config.mapping, "--mapping", (DETAIL_MODEL,)),
            (config.kl_weight != defaults.kl_weight, "--kl-weight", (VAE_CLEAN_MODEL, VAE_OLD_MODEL)),
            (config.adversarial_weight != defaults.adversarial_weight, "--adversarial-weight", (VAE_OLD_MODEL,)),
            (config.mask_source != defaults.mask_source, "--mask-source", masked),
            (config.clean_fraction != defaults.clean_fraction, "--clean-fraction", (DETAIL_MODEL,)),
            (config.light_fraction != defaults.light_fraction, "--light-fraction", (DETAIL_MODEL,)),
        ):
            if given and self.name not in used_by:
                log.warning("%s is used by %s only; %s ignores it", option, " and ".join(used_by), self.name)
        warn_unused_options(
            [
                (config.scratch_weights is not None and config.mask_source != "detector", "--scratch-weights", "--mask-source detector"),
                (config.verifier_weights is not None and config.mask_source != "detector", "--verifier-weights", "--mask-source detector"),
            ]
        )
        check_mask_source(config.mask_source)
        self.config = config
        torch.manual_seed(setup.seed)
        self.rng = np.random.default_rng(setup.seed)
        self.stamps = load_stamps(setup.damage_dirs)
        self.presets = [get_preset(name) for name in config.presets]
        self.pool = CropPool(list_images(setup.data), crop=config.crop)
        val_pool = CropPool(list_images(config.val), crop=config.val_crop)
        self.detection: ScratchDetection | None = None
        if config.mask_source == "detector" and self.name in masked:  # vae-clean loaded and ran the detector for nothing
            # The precision restore uses by default here (bf16 autocast where the CPU has it): the masks are the ones
            # a user's run would hand the stage.
            self.detection_runtime = make_runtime("cpu", precision="auto", threads=torch.get_num_threads())
            self.detection = load_scratch_detection(
                self.detection_runtime, detector_weights=config.scratch_weights, verifier_weights=config.verifier_weights
            )
        self.val_clean, self.val_degraded, self.val_mask = self.damaged_pairs(val_pool, setup.validation_rng(), config.val_samples)

    def damaged_pairs(
        self, pool: CropPool, rng: np.random.Generator, count: int, presets: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(clean, degraded, mask) as :func:`damaged_batch` (``presets``: the config's by default), the mask taken
        from ``config.mask_source``."""
        clean, degraded, mask = damaged_batch(pool, presets or self.presets, self.stamps, rng, count)
        if self.detection is not None:
            mask = self.detected_masks(degraded)
        return clean, degraded, mask

    def detected_masks(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) 0/1 masks of (N, 3, H, W) images in [0, 1], detected exactly as ``restore`` does by default:
        the detector's marks at its threshold, judged by the verifier."""
        return self.detection.batch_masks(images, self.detection_runtime)

    def make_optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(module.parameters(), lr=self.config.setup.learning_rate, betas=(0.9, 0.99), weight_decay=1e-4)

    def metadata(self) -> dict:
        return {"config": asdict(self.config), "architecture": asdict(get_spec(self.name).config)}


def _vae_step(vae: VAE, images: torch.Tensor, config: GlobalTrainConfig) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Reconstruction + KL of one batch; returns (loss, latent mean, figures)."""
    mean, log_variance = vae.encode(images)
    reconstruction = vae.decode(sample_latent(mean, log_variance))
    kl = kl_divergence(mean, log_variance)
    loss = restoration_loss(reconstruction, images, config.ssim_weight) + config.kl_weight * kl
    return loss, mean, {"kl": kl.item()}


class VaeCleanRecipe(_Base, SingleNetworkRecipe):
    name = VAE_CLEAN_MODEL

    def __init__(self, config: GlobalTrainConfig) -> None:
        super().__init__(config)
        self.network = initial_network(get_spec(self.name), config.setup.init)
        self.optimizer = self.make_optimizer(self.network)

    def train_step(self, step: int) -> dict[str, float]:
        images = image_batch(self.pool, self.rng, self.config.setup.batch_size)
        if self.rng.random() < 0.15:  # black-and-white prints are common: keep them in Y's distribution
            images = images.mean(1, keepdim=True).expand_as(images).contiguous()
        loss, _, figures = _vae_step(self.network, images, self.config)
        optimise(self.optimizer, loss)
        return {"loss": loss.item(), **figures}

    def validate(self) -> dict[str, float]:
        return image_scores(in_batches(self.network, self.val_clean), self.val_clean)


class VaeOldRecipe(_Base):
    name = VAE_OLD_MODEL

    def __init__(self, config: GlobalTrainConfig) -> None:
        super().__init__(config)
        train_real, held_out = split_held_out(list_images(config.real))
        self.real_pool = CropPool(train_real, crop=config.crop)
        self.val_real = image_batch(CropPool(held_out, crop=config.val_crop), config.setup.validation_rng(part=1), config.val_samples)
        self.vae = initial_network(get_spec(self.name), config.setup.init)
        self.discriminator = LatentDiscriminator(LatentDiscriminatorConfig(latent_channels=self.vae.config.latent_channels))
        self.opt = self.make_optimizer(self.vae)
        self.opt_d = self.make_optimizer(self.discriminator)

    def modules(self):
        return {"vae": self.vae, "discriminator": self.discriminator}

    def optimizers(self):
        return {"vae": self.opt, "discriminator": self.opt_d}

    def exported(self):
        return self.vae

    def train_step(self, step: int) -> dict[str, float]:
        half = self.config.setup.batch_size // 2
        _, synthetic, _ = damaged_batch(self.pool, self.presets, self.stamps, self.rng, self.config.setup.batch_size - half)
        real = image_batch(self.real_pool, self.rng, half)
        loss_x, mean_x, figures = _vae_step(self.vae, synthetic, self.config)
        loss_r, mean_r, _ = _vae_step(self.vae, real, self.config)
        # The encoder is rewarded when the discriminator mistakes synthetic latents for real ones and vice versa.
        confusion = least_squares_gan(self.discriminator(mean_x), 1.0) + least_squares_gan(self.discriminator(mean_r), 0.0)
        loss = loss_x + loss_r + self.config.adversarial_weight * confusion
        optimise(self.opt, loss)
        d_loss = least_squares_gan(self.discriminator(mean_r.detach()), 1.0) + least_squares_gan(self.discriminator(mean_x.detach()), 0.0)
        optimise(self.opt_d, d_loss)
        return {"loss": (loss_x + loss_r).item(), "adv": confusion.item(), "d": d_loss.item(), **figures}

    def validate(self) -> dict[str, float]:
        synthetic = in_batches(self.vae, self.val_degraded)
        real = in_batches(self.vae, self.val_real)
        psnr_x = psnr(synthetic, self.val_degraded).item()
        psnr_r = psnr(real, self.val_real).item()
        mean_x = in_batches(lambda t: self.vae.encode(t)[0], self.val_degraded)
        mean_r = in_batches(lambda t: self.vae.encode(t)[0], self.val_real)
        # How well the discriminator still separates the domains (0.5 = aligned).
        score_x = self.discriminator(mean_x).mean((1, 2, 3))
        score_r = self.discriminator(mean_r).mean((1, 2, 3))
        accuracy = 0.5 * ((score_r > 0.5).float().mean() + (score_x <= 0.5).float().mean()).item()
        return {"score": 0.5 * (psnr_x + psnr_r), "psnr_synthetic": psnr_x, "psnr_real": psnr_r, "domain_accuracy": accuracy}


class MappingRecipe(_Base, SingleNetworkRecipe):
    name = MAPPING_MODEL

    def __init__(self, config: GlobalTrainConfig) -> None:
        super().__init__(config)
        self.vae_old = load_network_from(get_spec(VAE_OLD_MODEL), config.vae_old).requires_grad_(False).eval()
        self.vae_clean = load_network_from(get_spec(VAE_CLEAN_MODEL), config.vae_clean).requires_grad_(False).eval()
        self.network = initial_network(get_spec(self.name), config.setup.init)
        self.optimizer = self.make_optimizer(self.network)

    def restore(self, degraded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return triplet_forward(degraded, mask, self.vae_old, self.network, self.vae_clean)

    def train_step(self, step: int) -> dict[str, float]:
        clean, degraded, mask = self.damaged_pairs(self.pool, self.rng, self.config.setup.batch_size)
        with torch.no_grad():
            source = self.vae_old.encode(degraded)[0]
            target = self.vae_clean.encode(clean)[0]
        latent = self.network(source, latent_damage(mask, LATENT_SCALE))
        latent_loss = F.l1_loss(latent, target)
        image_loss = restoration_loss(self.vae_clean.decode(latent), clean, self.config.ssim_weight)
        loss = self.config.latent_weight * latent_loss + image_loss
        optimise(self.optimizer, loss)
        return {"loss": loss.item(), "latent": latent_loss.item()}

    def validate(self) -> dict[str, float]:
        return image_scores(in_batches(self.restore, self.val_degraded, self.val_mask), self.val_clean)


class AblationRecipe(_Base, SingleNetworkRecipe):
    name = RESTORE_UNET_MODEL

    def __init__(self, config: GlobalTrainConfig) -> None:
        super().__init__(config)
        self.network = initial_network(get_spec(self.name), config.setup.init)
        self.optimizer = self.make_optimizer(self.network)

    def train_step(self, step: int) -> dict[str, float]:
        clean, degraded, mask = self.damaged_pairs(self.pool, self.rng, self.config.setup.batch_size)
        loss = restoration_loss(self.network(degraded, mask), clean, self.config.ssim_weight)
        optimise(self.optimizer, loss)
        return {"loss": loss.item()}

    def validate(self) -> dict[str, float]:
        return image_scores(in_batches(self.network, self.val_degraded, self.val_mask), self.val_clean)


class DetailFusionRecipe(_Base, SingleNetworkRecipe):
    """The detail fusion behind the frozen triplet (VAE_A -> mapping -> VAE_B)."""

    name = DETAIL_MODEL
    accelerated = True

    def __init__(self, config: GlobalTrainConfig) -> None:
        super().__init__(config)
        runtime = config.setup.runtime
        self.accelerator = Accelerator.of(runtime.device, runtime.precision)
        device = self.accelerator.device
        self.triplet = [
            load_network_from(get_spec(name), path).requires_grad_(False).eval().to(device)
            for name, path in ((VAE_OLD_MODEL, config.vae_old), (MAPPING_MODEL, config.mapping), (VAE_CLEAN_MODEL, config.vae_clean))
        ]
        multiple = triplet_size_multiple(self.triplet[1])  # the triplet's pixel grid
        if config.crop % multiple or config.val_crop % multiple:
            raise DataError(f"detail-fusion crops must be multiples of {multiple} pixels")
        self.network = initial_network(get_spec(self.name), config.setup.init).to(device)
        self.optimizer = self.make_optimizer(self.network)
        self.light_presets = [override(preset, unstructured=False) for preset in self.presets]
        # Validation: the damaged pairs, and as many undamaged crops again as their own targets (fidelity).
        self.val_photo = torch.cat([self.val_degraded, self.val_clean])
        self.val_target = torch.cat([self.val_clean, self.val_clean])
        undamaged = self.detected_masks(self.val_clean) if self.detection is not None else torch.zeros_like(self.val_mask)
        self.val_damage = torch.cat([self.val_mask, undamaged])
        self.batches = BatchStream(
            self.make_batch, self.rng, workers=runtime.workers, seed=config.setup.seed, pin_memory=device.type == "cuda"
        )

    def make_batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(clean, photo, mask): damaged pairs; a ``clean_fraction`` of them undamaged (photo = clean) and a
        ``light_fraction`` with structured damage only (scratches and dust on an otherwise good print). With
        ``mask_source="detector"`` every photo gets the detector's mask, false hits on good content included, so
        that the network learns to keep detail around a false hit instead of repainting the whole photo."""
        light = int(round(self.config.light_fraction * self.config.setup.batch_size))
        clean, degraded, mask = self.damaged_pairs(self.pool, rng, self.config.setup.batch_size - light)
        if light:
            parts = self.damaged_pairs(self.pool, rng, light, presets=self.light_presets)
            clean, degraded, mask = (torch.cat([a, b]) for a, b in zip((clean, degraded, mask), parts))
        keep = torch.from_numpy(rng.random(len(clean)) < self.config.clean_fraction)
        if keep.any():
            degraded[keep] = clean[keep]
            mask[keep] = self.detected_masks(clean[keep]) if self.detection is not None else 0.0
        return clean, degraded, mask

    @torch.no_grad()
    def _triplet(self, photo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with self.accelerator.autocast():
            return triplet_restore(torch.cat([photo, mask], dim=1), *self.triplet).float()

    def restore(self, photo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        photo, mask = self.accelerator.put(photo, mask)
        with self.accelerator.autocast():
            return self.network(photo, self._triplet(photo, mask), mask).float()

    def train_step(self, step: int) -> dict[str, float]:
        clean, photo, mask = self.accelerator.put(*self.batches.next(step))
        restored = self.restore(photo, mask)
        loss = restoration_loss(restored, clean, self.config.ssim_weight)
        optimise(self.optimizer, loss)
        return {"loss": loss.item()}

    def validate(self) -> dict[str, float]:
        restored = in_batches(lambda p, m: self.restore(p, m).cpu(), self.val_photo, self.val_damage)
        count = len(self.val_degraded)
        damaged = image_scores(restored[:count], self.val_target[:count])
        undamaged = image_scores(restored[count:], self.val_target[count:])
        # The score weighs restoring damaged photos and leaving undamaged ones alone as the training mix does.
        fraction = self.config.clean_fraction
        return {
            "score": (1 - fraction) * damaged["psnr"] + fraction * undamaged["psnr"],
            "psnr": damaged["psnr"],
            "ssim": damaged["ssim"],
            "psnr_undamaged": undamaged["psnr"],
            "ssim_undamaged": undamaged["ssim"],
        }


RECIPES = {
    recipe.name: recipe for recipe in (VaeCleanRecipe, VaeOldRecipe, MappingRecipe, AblationRecipe, DetailFusionRecipe)
}


def train_global(config: GlobalTrainConfig, resume: bool = False, on_step=None) -> TrainState:
    """Run (or continue) one global-restoration recipe up to ``config.setup.steps``."""
    return run(RECIPES[config.model](config), config.setup.schedule(), resume=resume, on_step=on_step)
