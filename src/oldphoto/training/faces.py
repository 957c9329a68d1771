"""Recipe: train the face refiner on aligned face crops damaged on the fly.

Faces are found and aligned exactly as ``restore`` does it (the shipped MTCNN, then the template warp),
so the network trains on the crops it will see. Alignment runs once; the aligned crops are cached as
uint8 beside the checkpoint. Every 20th face (sorted by path) is held out of training:
the first ``val_samples`` of them validate during training, and all of them serve the final evaluation.

Damage: by default the ``bopbtl`` preset (or several, one drawn per face) without structured damage - blur, noise,
low resolution and JPEG, i.e. what the global stage leaves behind or cannot undo on a small face (scratches are the
global stage's job). With ``after_global`` (the default) the damaged face is first passed through the
installed global stage, because that is what ``restore`` hands the refiner: a refiner trained on raw
damaged faces learns to undo damage the global stage has already removed, and adds little after it.
Losses: L1 + SSIM; no adversarial term (see ``weights/README.md``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from oldphoto.degrade import degrade_image, get_preset, load_stamps, override
from oldphoto.errors import DataError
from oldphoto.imageio import to_uint8
from oldphoto.registry import (
    FACE_DETECTOR_MODEL,
    FACE_MODEL,
    get_spec,
)
from oldphoto.restore.face_align import FACE_SIZE, align_face
from oldphoto.restore.face_detect import DetectorSettings, detect_faces
from oldphoto.restore.faces import CONDITION_ORIGINAL
from oldphoto.restore.global_stage import TRIPLET_MODELS, triplet_restore
from oldphoto.restore.scratches import load_scratch_detection
from oldphoto.runtime import make_runtime
from oldphoto.training.data import (
    check_mask_source,
    files_key,
    list_images,
    readable_images,
    split_held_out,
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
    warn_unused_options,
)
from oldphoto.training.losses import image_scores, psnr, restoration_loss
from oldphoto.weights import load_network

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceTrainConfig:
    setup: TrainSetup
    """Face photos (e.g. UTKFace crops, one clearly visible face each), outputs, schedule, seed and start weights
    (the refiner trains on the CPU in fp32, within the runtime's time budget if it has one)."""
    presets: tuple[str, ...] = ("bopbtl",)
    """Degradation presets, one drawn per face when there are several (one preset draws nothing, so a single-preset
    run keeps the random stream of the releases trained before presets could be mixed)."""
    structured: bool = False
    small_faces: float = 0.0
    """Share of faces shrunk to ``small_sizes`` pixels and scaled back to the template before damage, target included:
    a small face in a photo holds no more detail than that, so the refiner learns to repair it without inventing any."""
    small_sizes: tuple[int, int] = (32, 128)
    small_damage: str = "template"
    """Where a small face is damaged: ``"template"``, after scaling it back to the 256 px template (grain, blur and JPEG
    blocks at the template's pixels), or ``"native"``, at its small size before scaling both back (grain, blur and
    JPEG blocks at the photo's pixels, magnified, as ``restore`` aligns a small face of a damaged scan)."""
    undamaged_faces: float = 0.0
    """Share of training faces left undamaged (target: the face itself, through the global stage as ``restore`` runs
    it): the refiner learns to give a sharp face back as it was instead of inventing or smoothing its detail. They
    stay as the face photos are (colour faces stay colour: the presets' black-and-white chance is not drawn)."""
    grayscale_prob: float | None = None
    """The presets' chance of a black-and-white print, overridden (None: each preset's own; most old photos are)."""
    crop: int = 256
    val_samples: int = 16
    ssim_weight: float = 0.2
    after_global: bool = True
    """Train on damaged faces passed through the installed global stage (what ``restore`` feeds the refiner)."""
    mask_source: str = "synthetic"
    """The damage mask the global stage in front of the refiner gets (with ``after_global``): ``"synthetic"``, the
    drawn damage's own, or ``"detector"``, the installed scratch detector and verifier's on the damaged face, as
    ``restore`` gives it: damage they miss then reaches the refiner, as it does in ``restore``."""
    condition: str = CONDITION_ORIGINAL
    """What the SPADE blocks modulate with: ``"original"``, the damaged face as it was before the global stage
    (as ``restore`` does for a model with this registry setting ``condition``), or ``"input"``, the refiner's own
    input. Copy it into the registry entry of the weights this run ships."""


def largest_faces_aligned(files: Sequence[Path]) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, (FACE_SIZE, FACE_SIZE, 3) uint8 aligned crop of its largest face) for each readable file with a
    face, found and aligned as ``restore`` does, but by the upright search alone; the detector is loaded once."""
    detector = load_network(get_spec(FACE_DETECTOR_MODEL))
    # Upright only and without the rescue of R-Net's rejects: the held-out face sets and training crops stay the ones
    # every earlier figure was measured on (the tilted passes add a face in 1 of the 200 held-out UTKFace files, and no
    # aligned crop changes otherwise).
    upright = DetectorSettings(tilted_angles=(), rescue_refine_score=None)
    for path, image in readable_images(files):
        faces = detect_faces(image, detector, upright)
        if faces:
            crop = align_face(image, faces[0].landmarks).pixels
            yield path, to_uint8(crop)


def aligned_faces(files: list[Path], cache: Path | None = None) -> np.ndarray:
    """(N, FACE_SIZE, FACE_SIZE, 3) uint8 aligned crops of the largest face in each file; files without a
    detectable face are skipped (and counted in the log). Cached in ``cache`` keyed by the files: their paths, sizes
    and modification times (keyed by the paths alone, photos replaced under the same names kept their old faces)."""
    key = hashlib.sha256(files_key(files).encode()).hexdigest()[:16]
    if cache is not None and cache.with_name(f"{cache.stem}-{key}.npy").exists():
        return np.load(cache.with_name(f"{cache.stem}-{key}.npy"))
    crops = [crop for _, crop in largest_faces_aligned(files)]
    log.info("aligned %d faces from %d files (the rest unreadable or without a face)", len(crops), len(files))
    if not crops:
        raise DataError("no faces found in the training images")
    array = np.stack(crops)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache.with_name(f"{cache.stem}-{key}.npy"), array)
    return array


def damaged_faces(
    faces: np.ndarray,
    indices,
    presets: Sequence,
    stamps,
    rng: np.random.Generator,
    crop: int,
    small_faces: float = 0.0,
    small_sizes: tuple[int, int] = FaceTrainConfig.small_sizes,
    undamaged_faces: float = 0.0,
    small_damage: str = FaceTrainConfig.small_damage,
):
    """(clean, degraded, mask): (B, 3, crop, crop), (B, 3, crop, crop) and (B, 1, crop, crop) 0/1 structured
    damage tensors from the aligned uint8 crops at ``indices``, each damaged by one of ``presets`` (drawn from
    ``rng`` only when there are several); a ``small_faces`` share of them first shrunk to ``small_sizes`` pixels (drawn
    from ``rng`` only when the share is above 0) and scaled back up, so that target and damaged face both hold only the
    detail of a face that small (damaged at that size with ``small_damage="native"``, see
    :class:`FaceTrainConfig`); an ``undamaged_faces`` share (drawn from ``rng`` only when above 0) left as they are,
    with an empty mask."""
    clean, degraded, mask = [], [], []

    def to_template(image: np.ndarray, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
        return np.clip(cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=interpolation), 0.0, 1.0)

    for index in indices:
        face = faces[int(index)].astype(np.float32) / 255.0
        small = None
        if small_faces > 0 and rng.random() < small_faces:
            side = int(rng.integers(small_sizes[0], small_sizes[1] + 1))
            small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
            face = to_template(small)
        if small is not None and small_damage == "native":
            # Damaged at its own size, then scaled to the template with its damage (crop and flip as below).
            if undamaged_faces > 0 and rng.random() < undamaged_faces:
                parts = [face, face, np.zeros((FACE_SIZE, FACE_SIZE, 1), np.float32)]
            else:
                preset = presets[int(rng.integers(len(presets)))] if len(presets) > 1 else presets[0]
                sample = degrade_image(np.ascontiguousarray(small), preset, rng, stamps)
                parts = [to_template(sample.clean), to_template(sample.degraded), to_template(sample.mask, cv2.INTER_NEAREST)[:, :, None]]
            if crop < FACE_SIZE:
                y, x = rng.integers(0, FACE_SIZE - crop + 1, 2)
                parts = [part[y : y + crop, x : x + crop] for part in parts]
            if rng.random() < 0.5:
                parts = [part[:, ::-1] for part in parts]
            for part, out in zip(parts, (clean, degraded, mask), strict=True):
                out.append(np.ascontiguousarray(part))
            continue
        if crop < FACE_SIZE:
            y, x = rng.integers(0, FACE_SIZE - crop + 1, 2)
            face = face[y : y + crop, x : x + crop]
        if rng.random() < 0.5:
            face = face[:, ::-1]
        if undamaged_faces > 0 and rng.random() < undamaged_faces:
            face = np.ascontiguousarray(face)
            clean.append(face)
            degraded.append(face)
            mask.append(np.zeros((*face.shape[:2], 1), np.float32))
            continue
        preset = presets[int(rng.integers(len(presets)))] if len(presets) > 1 else presets[0]
        sample = degrade_image(np.ascontiguousarray(face), preset, rng, stamps)
        clean.append(sample.clean)
        degraded.append(sample.degraded)
        mask.append(sample.mask[:, :, None])
    return to_batch(clean), to_batch(degraded), to_batch(mask)


def global_stage_on_faces(precision: str = "fp32"):
    """The installed default global stage (the triplet, then the detail fusion, as ``restore`` runs it) as a function
    of a (B, 3, S, S) batch in [0, 1] and its (B, 1, S, S) 0/1 damage mask -> (B, 3, S, S) float32 in [0, 1]
    (networks frozen, in eval mode; ``precision`` as ``restore --precision``, on the CPU)."""
    vae_old, mapping, vae_clean, fusion = (load_network(get_spec(name)).eval() for name in TRIPLET_MODELS)
    accelerator = Accelerator.of("cpu", precision)

    # no_grad, not inference_mode: the results are training inputs, which autograd may have to save.
    @torch.no_grad()
    def restore(batch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with accelerator.autocast():
            triplet = triplet_restore(torch.cat([batch, mask], dim=1), vae_old, mapping, vae_clean)
            return fusion(batch, triplet, mask).clamp(0.0, 1.0).float()

    return restore


class FaceRecipe(SingleNetworkRecipe):
    name = FACE_MODEL

    def __init__(self, config: FaceTrainConfig) -> None:
        setup = config.setup
        check_loss_weights(ssim_weight=config.ssim_weight)
        if config.crop % 8 or not 64 <= config.crop <= FACE_SIZE:
            raise DataError(f"--crop must be a multiple of 8 between 64 and {FACE_SIZE}")
        if not 0.0 <= config.small_faces <= 1.0 or not 8 <= config.small_sizes[0] <= config.small_sizes[1] <= FACE_SIZE:
            raise DataError(f"--small-faces must be a share between 0 and 1, of sizes between 8 and {FACE_SIZE} px")
        if not 0.0 <= config.undamaged_faces <= 1.0:
            raise DataError("--undamaged-faces must be a share between 0 and 1")
        if config.small_damage not in ("template", "native"):
            raise DataError("--small-damage must be 'template' or 'native'")
        if not setup.runtime.default:
            raise DataError(f"{FACE_MODEL} trains on the CPU in fp32 only")
        check_mask_source(config.mask_source)  # an unknown source is refused before any word on its use
        defaults = FaceTrainConfig
        warn_unused_options(
            [
                (not config.after_global and config.mask_source != defaults.mask_source, "--mask-source", "--after-global (this run has --raw-damage)"),
                (not config.small_faces and config.small_damage != defaults.small_damage, "--small-damage", "--small-faces"),
            ]
        )
        self.config = config
        torch.manual_seed(setup.seed)
        self.rng = np.random.default_rng(setup.seed)
        train_files, held_out = split_held_out(list_images(setup.data))
        cache = Path(setup.checkpoint).with_name("aligned")
        self.faces = aligned_faces(train_files, cache)
        self.stamps = load_stamps(setup.damage_dirs)
        if not config.presets:
            raise DataError("give at least one degradation preset")
        self.presets = [override(get_preset(name), structured=config.structured, grayscale_probability=config.grayscale_prob) for name in config.presets]
        self.before_refiner = self.global_stage(config) if config.after_global else (lambda batch, mask: batch)
        val_faces = aligned_faces(held_out[: config.val_samples], cache)
        self.val_clean, self.val_degraded, val_mask = damaged_faces(
            val_faces, range(len(val_faces)), self.presets, self.stamps, setup.validation_rng(), FACE_SIZE
        )
        self.val_input = in_batches(self.before_refiner, self.val_degraded, val_mask)
        spec = get_spec(FACE_MODEL)
        self.network = initial_network(spec, setup.init)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=setup.learning_rate, betas=(0.9, 0.99), weight_decay=1e-4)

    @staticmethod
    def global_stage(config: FaceTrainConfig):
        """The global stage in front of the refiner, a function of (batch, drawn damage mask) as
        :func:`global_stage_on_faces`, given the mask ``config.mask_source`` says."""
        restore = global_stage_on_faces()
        if config.mask_source == "synthetic":
            return restore
        runtime = make_runtime("cpu", precision="fp32")
        detection = load_scratch_detection(runtime)
        return lambda batch, mask: restore(batch, detection.batch_masks(batch, runtime))

    def metadata(self) -> dict:
        return {"config": asdict(self.config), "architecture": asdict(get_spec(FACE_MODEL).config), "faces": len(self.faces)}

    def train_step(self, step: int) -> dict[str, float]:
        indices = self.rng.integers(0, len(self.faces), self.config.setup.batch_size)
        clean, degraded, mask = damaged_faces(
            self.faces,
            indices,
            self.presets,
            self.stamps,
            self.rng,
            self.config.crop,
            self.config.small_faces,
            self.config.small_sizes,
            self.config.undamaged_faces,
            self.config.small_damage,
        )
        inputs = self.before_refiner(degraded, mask)
        loss = restoration_loss(self.network(inputs, self.condition(inputs, degraded)), clean, self.config.ssim_weight)
        optimise(self.optimizer, loss)
        return {"loss": loss.item()}

    def condition(self, inputs: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        return degraded if self.config.condition == CONDITION_ORIGINAL else inputs

    def validate(self) -> dict[str, float]:
        refined = in_batches(self.network, self.val_input, self.condition(self.val_input, self.val_degraded))
        return {**image_scores(refined, self.val_clean), "psnr_input": psnr(self.val_input, self.val_clean).item()}


def train_face(config: FaceTrainConfig, resume: bool = False, on_step=None) -> TrainState:
    return run(FaceRecipe(config), config.setup.schedule(), resume=resume, on_step=on_step)
