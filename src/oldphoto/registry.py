"""The reviewed model registry: model name -> :class:`ModelSpec`.

Each entry carries its data contract (what the network expects) and the exact weights file with
its sha256, in the manner of timm's pretrained configs. Entries with ``sha256=None`` are planned
models whose trained weights have not shipped yet: ``oldphoto models list`` shows them as missing
and the restore stage that needs them refuses to run.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from oldphoto.archs.detail_fusion import DetailFusionConfig
from oldphoto.archs.face_gate import FaceGateConfig
from oldphoto.archs.face_refine import FaceRefineConfig
from oldphoto.archs.mapping import MappingConfig
from oldphoto.archs.mtcnn import MTCNNConfig
from oldphoto.archs.restore_unet import RestoreUNetConfig
from oldphoto.archs.scratch_unet import ScratchUNetConfig
from oldphoto.archs.scratch_verifier import ScratchVerifierConfig
from oldphoto.archs.vae import VAEConfig
from oldphoto.errors import ConfigError, UnknownModelError

MIN_TILE = 64
"""The smallest tile any stage is run on, in pixels."""


def min_tile_for(min_overlap: int) -> int:
    """The smallest tile (pixels) a stage whose networks need ``min_overlap`` runs on: 4x it, so that a tile is
    never mostly seam, and at least :data:`MIN_TILE` (the one home of this rule: the up-front tile check and the
    out-of-memory retry's floor read it)."""
    return max(MIN_TILE, 4 * min_overlap)


@dataclass(frozen=True)
class InputContract:
    """What a network expects of its input tensor."""

    channels: int
    """1 = grayscale (luma), 3 = RGB; latent networks: the latent channels."""
    size_multiple: int = 1
    """Networks pad internally to this; tiling aligns tile offsets to it."""
    min_tile_overlap: int = 0
    """Image pixels neighbouring tiles overlap by at least (more if ``--tile-overlap`` asks): the reach of the
    network's context, so that a tile's output near its seam agrees with the whole image's."""
    cpu_only: bool = False
    """Runs on the CPU in float32 whatever the run's device and precision: networks that work on many tiny crops
    (MTCNN) or decide one number per face, where a device round trip costs more than it saves and reduced precision
    moved the results."""
    channels_last: bool = False
    """Placed in channels-last memory format (about 20% faster convolutions on the CPU here, same results to 1e-6)."""

    @property
    def min_tile(self) -> int:
        """The smallest tile (pixels) this network is run on: 4x its minimum overlap, so that a tile is never mostly
        seam (a quarter of the overlap at each edge carries no weight in the blend), and at least 64."""
        return min_tile_for(self.min_tile_overlap)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    """Which stage uses it: scratch, vae-old, vae-clean, mapping, face."""
    arch: str | None
    """``module:Class`` of the network under ``oldphoto.archs``; None while the architecture is planned."""
    config: Any
    """The frozen config dataclass the network is built from."""
    weights_file: str
    sha256: str | None
    """sha256 of the shipped safetensors file; None = not trained/shipped yet."""
    contract: InputContract
    settings: Mapping[str, float | str] = field(default_factory=dict)
    """Inference settings chosen on validation data (e.g. the scratch threshold), or fixed by how the weights
    were trained (e.g. what the face refiner is conditioned on)."""
    caveat: str | None = None
    """Why shipped weights are not yet fit for general use (shown by `models list` and `restore`), or None."""

    @property
    def shipped(self) -> bool:
        return self.sha256 is not None

    def build(self) -> nn.Module:
        """A randomly initialised network of this spec's architecture and config."""
        if self.arch is None:
            raise UnknownModelError(f"model {self.name!r} has no architecture in this release yet")
        module_name, class_name = self.arch.split(":")
        network_class = getattr(importlib.import_module(f"oldphoto.archs.{module_name}"), class_name)
        return network_class(self.config)


def settings_group(settings: Mapping[str, Any], keys: Sequence[str], what: str) -> dict[str, Any] | None:
    """The values of ``keys`` in a registry entry's ``settings`` when it has them all, None when it has none of them
    (the feature they configure is off).

    Raises:
        ConfigError: some of them are there, not all (naming the missing ones and ``what`` they configure).
    """
    missing = [key for key in keys if key not in settings]
    if len(missing) == len(keys):
        return None
    if missing:
        raise ConfigError(f"the {what} settings are incomplete: add {', '.join(missing)} to its registry entry")
    return {key: settings[key] for key in keys}


def _entries(*specs: ModelSpec) -> Mapping[str, ModelSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


SCRATCH_MODEL = "scratch-unet"
SCRATCH_VERIFIER_MODEL = "scratch-verifier"
VAE_OLD_MODEL = "vae-old"
VAE_CLEAN_MODEL = "vae-clean"
MAPPING_MODEL = "mapping"
FACE_MODEL = "face-refine"
FACE_DETECTOR_MODEL = "face-detect"
FACE_GATE_MODEL = "face-gate"
RESTORE_UNET_MODEL = "restore-unet"
DETAIL_MODEL = "detail-fusion"

REGISTRY: Mapping[str, ModelSpec] = _entries(
    ModelSpec(
        name=SCRATCH_MODEL,
        task="scratch",
        arch="scratch_unet:ScratchUNet",
        config=ScratchUNetConfig(channels=(16, 24, 32, 48, 64), space_to_depth=2, context_dilations=(1, 2, 4)),
        weights_file="scratch-unet.safetensors",
        sha256="00f835861f8bf94f271743001dfd3238bdc3ec68ce441fe1ced1cb4e08c4b8a0",
        # The dilated context reaches about 450 px at the coarsest level: on a 1280 x 972 scan in 1024 px tiles, the
        # thresholded mask matches the whole-image mask with IoU 0.961 at a 32 px overlap and 0.974 at 128 px, for
        # about 10% more time.
        contract=InputContract(channels=1, size_multiple=32, min_tile_overlap=128),
        # Threshold chosen for precision on validation data (kodak24: damaged crops of both presets, and the photos as
        # they are): precision 0.735 and 0.27% of undamaged pixels marked at 0.75, against 0.61% at the best-F1 0.175.
        # No dilation (the global stage max-pools the mask onto its 4x4 latent cells anyway).
        settings={"threshold": 0.75, "dilation": 0},
        caveat=(
            "preliminary weights (held-out F1 0.85 on the paper's scratches, 0.30 at precision 0.90 on the default "
            "preset's damage; target 0.65 at 0.85): on real photos, after the verifier, they still mark some thin scene "
            "lines (ropes, rims, rods, lit frame edges; about 0.02% of an undamaged photo, up to 0.4%), and miss faint "
            "damage; check "
            "with --save-mask, then raise --scratch-threshold (e.g. 0.9) or correct the mask and pass it with --masks"
        ),
    ),
    ModelSpec(
        name=SCRATCH_VERIFIER_MODEL,
        task="scratch",
        arch="scratch_verifier:ScratchVerifier",
        config=ScratchVerifierConfig(),
        weights_file="scratch-verifier.safetensors",
        sha256="8f0dfaad19e386efe21c07012a4bbc3303827ed901ba064f64e84d367e7128ea",
        # One decision per mask component on small crops: as the face gate, cheaper on the CPU in float32 than a
        # round trip to a device.
        contract=InputContract(channels=3, cpu_only=True),
        # min_score: the score that keeps 80% of the damage pixels of its validation pool (synthetic damage on held-out
        # clean and real photos), removing 60% of the content pixels there; precision first: at the 85% rule (0.41) it
        # kept a cigar, a flower, a bedpost and a pole of the real test photos as damage, while the real damage marks
        # of the first two labelled sets it judges score 0.51 or more (but for a 36 px piece; a third set, labelled
        # afterwards, lost a worn emulsion chip scoring 0.43). keep_width: lines at most 2 px thick are kept unjudged
        # (hairline scratches, which its crops cannot resolve); thicker lines are judged since the real test photos
        # showed unjudged ones erased telegraph poles, flagpoles and frames, and the second labelled set that they hold
        # little real damage (4 px until then). line_*: straight marks of 40 px or more (and 8x their thickness) lying
        # within 10 degrees of level or plumb need a score of 0.8 (restore.scratches.StraightLineRule), unless they lie
        # along the border they touch or run edge to edge (a print's edge, a fold): the real test photos showed such
        # marks scoring 0.47-0.73 were bed rails, rods, hems, a fishing rod and lit furniture edges; none of the
        # labelled real damage kept at 0.465 is such a line. line_max_slanted_spread: so do ruler-straight lines at
        # any other angle (tram rails, a pipe stem, a brace, a wire in perspective, scoring 0.56-0.78), while
        # drawn scratches mostly bow a little more (the bopbtl set's slanted damage marks 1.09-1.27x; a bound of 1.25
        # cost bopbtl F1 0.880 -> 0.854, 1.15 -> 0.879). colour_ratio: on colour photos, marks at least 0.9x as
        # saturated as the 6 px ring around them are dropped unless bright and warm like bare paper
        # (restore.scratches.ColourRule): cbsd68 0.132 -> 0.112% marked, kodak24 0.156 -> 0.104%, the second
        # labelled set's content boxes over 5% 38 -> 31 of 59 at the same real damage (-1 px), `default` precision
        # 0.785 -> 0.839 at recall 0.226 -> 0.219; 0.8 cost more recall, and without the paper exemption the cream
        # cracks of toned prints were dropped. sparse_*: on a photo whose kept marks cover less than 0.75% of it (it shows
        # little damage), each judged mark needs 0.7 (restore.scratches.SparseDamageRule): the undamaged and real test
        # photos' kept marks cover at most 0.73% (cbsd68), 0.51% (bopbtl_old), while the labelled real damage lies on
        # photos covered 1.06-1.16%; a helper's review of 20 real photos found most harm in marks scoring 0.47-0.7 on
        # such photos (poles, rails, ropes, branches, a sky gap). cbsd68 0.112 -> 0.066% marked, kodak24 0.104 ->
        # 0.067%, labelled content boxes over 5% 3 -> 1 of 56 (second set 30 -> 21 of 59, third 24 -> 11 of 114) at
        # the same labelled damage but one chipped corner; bopbtl F1 0.880 -> 0.861 (0.8 instead of 0.7: 0.848). There
        # the lines up to 2 px are judged too and need 0.5 (the rods, pipes, window bars and spokes they kept scored
        # 0.2-0.5, hairline scratches 0.5-0.75): second set 21 -> 12 of 59, cbsd68 0.066 -> 0.054%, bopbtl F1 the same.
        # Since session 23 those lines need 0.7 too, one score for every mark on such a photo: the thin marks it then
        # drops on the 20 real test photos (grass blades, palm fronds, stems, poles, rims, window bars; 1,858 of their
        # 8,601 kept pixels) were scene content, and on 300 training pairs (seed 7) the thin marks on sparse photos
        # kept at 0.5 were 1,126 damage px against 11,791 content px on the undamaged and held-out real photos, at
        # 0.7 495 against 2,624. cbsd68 0.054 -> 0.042% (max 0.41%, a road marking scoring 0.94), bopbtl_old max
        # 0.342 -> 0.296%, real_damaged content boxes over 5% 12 -> 9 of 59 at the same damage (2,947 -> 2,943 px),
        # bopbtl F1 0.861 -> 0.860, global stage on every set within 0.01 dB. Since session 27 such a photo's marks
        # need 0.8 (was 0.7): the marks scoring 0.7-0.8 there were mostly thin scene content (a streetcar rail, a
        # branch, grass blades, a roof's gable edge, rigging, a glasses rim, a knob's highlight: a helper's review of
        # the 13 real test photos it changes found 7 better, 4 the same, 2 worse), and the labelled real sets' content
        # boxes over 5% fell 1 -> 1 of 56, 9 -> 4 of 59 and 12 -> 6 of 114 while their damage kept 5,763, 2,809 of
        # 2,941 and 4,849 px. The cost: real scratches scoring 0.7-0.8 on such photos are left (a bright crack on
        # bopbtl_old_w_scratch a, 0.73; the right scratch of the shipped example, 0.74), bopbtl F1 0.860 -> 0.845,
        # the global stage on bopbtl 26.03 -> 26.00 dB and on default-v1 19.31 -> 19.30 (weights/README.md).
        settings={
            "min_score": 0.465,
            "keep_width": 2.0,
            "line_min_length": 40.0,
            "line_max_tilt": 10.0,
            "line_max_spread": 1.5,
            "line_min_score": 0.8,
            "line_min_elongation": 8.0,
            "line_max_slanted_spread": 1.15,
            "colour_ratio": 0.9,
            "sparse_coverage": 0.0075,
            "sparse_min_score": 0.8,
            "sparse_line_score": 0.8,
        },
        caveat=(
            "preliminary weights: on real photos they drop most of the detector's false hits on bright content (skies, "
            "streets, flowers, white dresses, poles, frames), but they also drop some large stains and blotches, "
            "smooth straight lines 3-4 px thick and, on photos that show little damage, scratches they are unsure of "
            "(see weights/README.md); use --no-scratch-verify to repair every mark the detector makes"
        ),
    ),
    ModelSpec(
        name=VAE_OLD_MODEL,
        task="vae-old",
        arch="vae:VAE",
        config=VAEConfig(),
        weights_file="vae-old.safetensors",
        sha256="2f1d0491932e9753c5249ed7c3a1cb94fcd7dedb7a4ce39042385111ebdc0660",
        contract=InputContract(channels=3, size_multiple=4, channels_last=True),
    ),
    ModelSpec(
        name=VAE_CLEAN_MODEL,
        task="vae-clean",
        arch="vae:VAE",
        config=VAEConfig(),
        weights_file="vae-clean.safetensors",
        sha256="07eae1adf6d6494949821ac8fe6331ccf710ef9bc2817efd0bc47e74c440da5d",
        contract=InputContract(channels=3, size_multiple=4, channels_last=True),
    ),
    ModelSpec(
        name=MAPPING_MODEL,
        task="mapping",
        arch="mapping:LatentMapping",
        config=MappingConfig(context_levels=2, context_blocks=2),
        weights_file="mapping.safetensors",
        sha256="09365af5f0f263d19c5500b6bc839b86534e142f6801343e39585b4470f5b7e7",
        # Works on VAE_A latents (a quarter of the image resolution), plus the damage mask on the same grid;
        # its two coarser context levels want latent sizes that are multiples of 4 (16 image pixels).
        # The mapping's receptive field (and its squeeze-and-excitation gates) reach further than the VAEs', so the
        # triplet's tiles overlap by 64 image pixels at least.
        contract=InputContract(
            channels=MappingConfig().latent_channels,
            size_multiple=4,
            min_tile_overlap=64,
            channels_last=True,
        ),
        caveat=(
            "preliminary weights (held-out synthetic pairs, with the detail fusion: +1.8 dB PSNR over the input on the "
            "default preset, +2.5 dB on bopbtl): noise, scratches and casts are improved and undamaged detail is kept, but "
            "strong fading is only partly undone and what fills detected damage is softer than the photo around it"
        ),
    ),
    ModelSpec(
        name=DETAIL_MODEL,
        task="detail",
        arch="detail_fusion:DetailFusion",
        config=DetailFusionConfig(channels=(48, 64, 96, 128)),
        weights_file="detail-fusion.safetensors",
        sha256="db280fa35d0aebf14d6bbe1318ad206f8fa6835d3ea66afa565172fc024c4f5d",
        # Works on the photo, the triplet's result and the mask at half resolution, three levels down: a 16 px grid.
        contract=InputContract(channels=3, size_multiple=16, min_tile_overlap=64, channels_last=True),
    ),
    ModelSpec(
        name=RESTORE_UNET_MODEL,
        task="ablation",
        arch="restore_unet:RestoreUNet",
        config=RestoreUNetConfig(),
        weights_file="restore-unet.safetensors",
        sha256="51446560f9835f030079b55d836fcf157d8e23649e730f54caed96c283c94114",
        contract=InputContract(channels=3, size_multiple=8, min_tile_overlap=64),
    ),
    ModelSpec(
        name=FACE_DETECTOR_MODEL,
        task="face-detect",
        arch="mtcnn:MTCNN",
        config=MTCNNConfig(),
        weights_file="mtcnn.safetensors",
        # MTCNN (Zhang et al. 2016) weights from facenet-pytorch 2.6.0 (MIT), converted by
        # scripts/convert_mtcnn_weights.py; not trained by this project.
        sha256="45209c89a01a216d7ae9baf3fa8e506dfb0e8ff1269007ce26e28338a9148cd3",
        contract=InputContract(channels=3, cpu_only=True),
    ),
    ModelSpec(
        name=FACE_MODEL,
        task="face",
        arch="face_refine:FaceRefiner",
        config=FaceRefineConfig(),
        weights_file="face-refine.safetensors",
        sha256="6bfa88b686e8e9bf20d7990e183c52fde123921b92b2be8da67604c4fc9e4cad",
        # Trained with --condition original: the SPADE blocks see the face before global restoration. Trained with
        # random horizontal flips, so its output on the mirrored face is as good; averaging the two gained +0.004 /
        # +0.007 dB on two damage draws of the 208 held-out faces (bopbtl-v1), at twice the refiner's time.
        settings={"condition": "original", "mirror_average": True},
        contract=InputContract(channels=3, size_multiple=8),
        caveat=(
            "preliminary weights, trained on UTKFace (non-commercial licence): they help damaged faces a little (+0.2 dB on "
            "held-out faces); the face gate leaves sharp faces as they are (they keep over 0.9 of their fine detail), and "
            "small faces stay softer than in the scan"
        ),
    ),
    ModelSpec(
        name=FACE_GATE_MODEL,
        task="face",
        arch="face_gate:FaceGate",
        config=FaceGateConfig(),
        weights_file="face-gate.safetensors",
        sha256="b7752073ec6c0f441fd15a71ab021b5017e903d1c8a4c938a4eeea1e2bd97be1",
        contract=InputContract(channels=3, cpu_only=True),
        # The gate's estimate becomes two strengths (restore/faces.py GateBlend): the refiner's correction is split at
        # 1 template px into a coarse part, given from need 0.15 (none below: sharp, clean faces) to 0.4 (full), and a
        # fine part, given from 0.3 to 0.8. On the held-out face sets the fine part cost sharp faces about five times
        # the detail per dB it gave damaged ones that the coarse part did (issue 18; the gate's model card has the
        # figures and how the ramps were chosen: on those sets, checked on a fresh damage draw).
        settings={"coarse_ramp": (0.15, 0.4), "fine_ramp": (0.3, 0.8), "fine_sigma": 1.0},
    ),
)


def all_specs() -> list[ModelSpec]:
    return list(REGISTRY.values())


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; an unknown name lists the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(REGISTRY))
        raise UnknownModelError(f"unknown model {name!r}; registered models: {valid}") from None
