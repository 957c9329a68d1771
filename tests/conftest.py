"""Shared fixtures: small synthetic images and random-weight models registered as if shipped."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from oldphoto import registry
from oldphoto.archs.detail_fusion import DetailFusionConfig
from oldphoto.archs.face_gate import FaceGateConfig
from oldphoto.archs.face_refine import FaceRefineConfig
from oldphoto.archs.mapping import MappingConfig
from oldphoto.archs.scratch_unet import ScratchUNetConfig
from oldphoto.archs.scratch_verifier import ScratchVerifierConfig
from oldphoto.archs.vae import VAEConfig
from oldphoto.weights import WEIGHTS_ENV, file_sha256

# Rich wraps console output at the terminal width; make CliRunner output one line per message.
os.environ["COLUMNS"] = "240"

TINY_SCRATCH_CONFIG = ScratchUNetConfig(channels=(4, 8, 8), space_to_depth=2)


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A photo-like (H, W, C) float32 image in [0, 1]: smooth gradients plus mild texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = [
        0.5 + 0.3 * np.sin(x / (7 + 3 * c) + c) * np.cos(y / (11 + 2 * c))
        for c in range(channels)
    ]
    image = np.stack(base, axis=2) + 0.03 * rng.standard_normal((height, width, channels)).astype(np.float32)
    return np.clip(image, 0, 1).astype(np.float32)


def wavy_scratch_mask(height: int = 96, width: int = 128) -> np.ndarray:
    """(height, width) bool: a wavy 3 px line across the middle (amplitude 5 px, period 57 px), a scratch's shape; a
    smooth straight bar of that width reads as a scene line (a wire, a pole) to the scratch verifier, which leaves
    it alone."""
    mask = np.zeros((height, width), np.uint8)
    points = np.array([[x, height // 2 - 6 + 5 * np.sin(x / 9.0)] for x in range(10, width - 8)], np.int32)
    cv2.polylines(mask, [points], False, 1, 3)
    return mask > 0


def install_random_model(
    monkeypatch: pytest.MonkeyPatch, weights_dir: Path, name: str, config, seed: int = 0, adjust=None, drop_settings=()
):
    """Save random weights for ``name`` (with ``config``) into ``weights_dir`` and register them as shipped;
    ``adjust(network)`` may set some of them first; ``drop_settings``: registry settings the entry goes without."""
    spec = registry.get_spec(name)
    settings = {key: value for key, value in spec.settings.items() if key not in drop_settings}
    spec = dataclasses.replace(spec, config=config, sha256="0" * 64, settings=settings)
    torch.manual_seed(seed)
    network = spec.build()
    if adjust is not None:
        with torch.no_grad():
            adjust(network)
    path = weights_dir / spec.weights_file
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    spec = dataclasses.replace(spec, sha256=file_sha256(path))
    entries = dict(registry.REGISTRY)
    entries[name] = spec
    monkeypatch.setattr(registry, "REGISTRY", entries)
    monkeypatch.setenv(WEIGHTS_ENV, str(weights_dir))
    return spec


@pytest.fixture
def weights_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    return folder


@pytest.fixture
def random_scratch_model(monkeypatch: pytest.MonkeyPatch, weights_dir: Path):
    """A tiny random detector registered as shipped, with a verifier that keeps every mark (so that the mask is the
    detector's, as these tests expect; the verifier's own tests are in test_scratch_verifier.py)."""
    install_keep_all_verifier(monkeypatch, weights_dir)
    return install_random_model(monkeypatch, weights_dir, registry.SCRATCH_MODEL, TINY_SCRATCH_CONFIG)


TINY_VERIFIER_CONFIG = ScratchVerifierConfig(crop=32, channels=(4, 8), hidden=8)


def install_keep_all_verifier(monkeypatch: pytest.MonkeyPatch, weights_dir: Path, logit: float = 30.0):
    """A tiny scratch verifier registered as shipped whose score is sigmoid(``logit``) for every component (without
    the registry's colour rule, which would drop colourful marks whatever their score, and its sparse-damage rule, which
    would ask more than the registry's score of the marks on a photo that shows little damage)."""

    def constant(network) -> None:
        network.head[-1].weight.zero_()
        network.head[-1].bias.fill_(logit)

    return install_random_model(
        monkeypatch, weights_dir, registry.SCRATCH_VERIFIER_MODEL, TINY_VERIFIER_CONFIG, seed=7, adjust=constant, drop_settings=("colour_ratio", "sparse_coverage", "sparse_min_score", "sparse_line_score")
    )


TINY_VAE_CONFIG = VAEConfig(channels=(4, 8), latent_channels=8, blocks=1)
TINY_MAPPING_CONFIG = MappingConfig(latent_channels=8, width=8, local_blocks=1, global_blocks=1, attention_channels=4, key_grid=4, query_chunk=16)
TINY_DETAIL_CONFIG = DetailFusionConfig(channels=(4, 8), bottleneck_blocks=1)


@pytest.fixture
def random_global_models(monkeypatch: pytest.MonkeyPatch, weights_dir: Path):
    """Tiny random VAE_A, VAE_B, mapping and detail fusion registered as shipped."""
    return [
        install_random_model(monkeypatch, weights_dir, registry.VAE_OLD_MODEL, TINY_VAE_CONFIG, seed=1),
        install_random_model(monkeypatch, weights_dir, registry.VAE_CLEAN_MODEL, TINY_VAE_CONFIG, seed=2),
        install_random_model(monkeypatch, weights_dir, registry.MAPPING_MODEL, TINY_MAPPING_CONFIG, seed=3),
        install_random_model(monkeypatch, weights_dir, registry.DETAIL_MODEL, TINY_DETAIL_CONFIG, seed=5),
    ]


TINY_FACE_CONFIG = FaceRefineConfig(channels=(4, 8, 8), blocks=1, condition_hidden=4)


@pytest.fixture
def random_face_model(monkeypatch: pytest.MonkeyPatch, weights_dir: Path):
    """A tiny random face refiner registered as shipped, with a random face gate that gives every face strength 0.9
    (the detector is the shipped MTCNN)."""
    install_random_model(monkeypatch, weights_dir, registry.FACE_GATE_MODEL, FaceGateConfig(channels=(4, 4), initial_strength=0.9), seed=5)
    return install_random_model(monkeypatch, weights_dir, registry.FACE_MODEL, TINY_FACE_CONFIG, seed=4)
