"""Locate -> verify sha256 -> load safetensors -> strict ``load_state_dict``.

Lookup order: ``$OLDPHOTO_WEIGHTS_DIR``, the ``weights/`` folder shipped with the package, then the
user data folder (``platformdirs.user_data_dir("oldphoto")/weights``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import platformdirs
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from oldphoto.errors import WeightsIntegrityError, WeightsNotFoundError
from oldphoto.registry import InputContract, ModelSpec
from oldphoto.runtime import Runtime

log = logging.getLogger(__name__)

WEIGHTS_ENV = "OLDPHOTO_WEIGHTS_DIR"


def packaged_weights_dir() -> Path:
    """``oldphoto/weights`` inside an installed wheel, or ``weights/`` at the root of a source checkout."""
    installed = Path(__file__).resolve().parent / "weights"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "weights"


def user_weights_dir() -> Path:
    return Path(platformdirs.user_data_dir("oldphoto")) / "weights"


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(WEIGHTS_ENV):
        dirs.append(Path(os.environ[WEIGHTS_ENV]).expanduser())
    dirs += [packaged_weights_dir(), user_weights_dir()]
    return dirs


def locate_weights(spec: ModelSpec) -> Path:
    """The first existing copy of the spec's weights file, in lookup order."""
    if not spec.shipped:
        raise WeightsNotFoundError(
            f"model {spec.name!r} has no trained weights in this release ({spec.weights_file} is not shipped yet)"
        )
    dirs = search_dirs()
    for folder in dirs:
        candidate = folder / spec.weights_file
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(d) for d in dirs)
    raise WeightsNotFoundError(
        f"weights file {spec.weights_file} for model {spec.name!r} not found (searched: {searched}); "
        f"reinstall oldphoto or put the file in ${WEIGHTS_ENV}"
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=32)
def _verified(path: Path, identity: tuple[int, ...], expected: str) -> bool:
    """Whether ``path`` hashes to ``expected``; cached per file identity, so a run hashes each file once."""
    return file_sha256(path) == expected


def _identity(stat) -> tuple[int, ...]:
    """What changes whenever a file's bytes can have changed: its inode, size, mtime and ctime. The ctime matters:
    an edit that keeps the size and puts the mtime back (os.utime) still moves the ctime, which no user call sets."""
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def verify_weights(spec: ModelSpec) -> Path:
    """Locate the spec's weights and check their sha256. Returns the verified path."""
    path = locate_weights(spec)
    stat = path.stat()
    if not _verified(path, _identity(stat), spec.sha256):
        raise WeightsIntegrityError(
            f"{path}: sha256 does not match the registry entry of {spec.name!r} (file damaged or replaced); "
            "reinstall oldphoto or remove the file so the next location is used. Weights you trained yourself are "
            f"used with restore --weights {spec.name}=FILE"
        )
    return path


def _load_into(spec: ModelSpec, path: Path, allow_missing: bool = False) -> nn.Module:
    """Build the spec's network and load ``path`` into it. Every tensor in the file must fit; with
    ``allow_missing`` the network may also have tensors the file lacks, which keep their initialisation."""
    network = spec.build()
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        # A PyTorch file (a run's checkpoint, another project's .pth) given for weights is the likely mistake.
        hint = (
            "; a PyTorch file, such as a training checkpoint, is not safetensors weights: give a run's --out file "
            "(train --resume continues a run from its checkpoint)"
            if path.suffix.lower() in (".pt", ".pth", ".ckpt")
            else ""
        )
        raise WeightsIntegrityError(f"{path}: not a safetensors weights file ({error}){hint}") from None
    # Checked here, in one line each: torch's own message lists every tensor (59 lines for weights of another model).
    expected = network.state_dict()
    unexpected = [name for name in tensors if name not in expected]
    if unexpected:
        raise WeightsIntegrityError(
            f"{path}: {len(unexpected)} of its {len(tensors)} tensors have no place in model {spec.name!r} (e.g. "
            f"{unexpected[0]}): weights of another model or architecture; pass weights of {spec.name}"
        )
    misshapen = [name for name, tensor in tensors.items() if tuple(tensor.shape) != tuple(expected[name].shape)]
    if misshapen:
        name = misshapen[0]
        raise WeightsIntegrityError(
            f"{path}: {len(misshapen)} tensors do not fit model {spec.name!r} (e.g. {name}: {tuple(tensors[name].shape)}, "
            f"the model's {tuple(expected[name].shape)}); the file belongs to another version or configuration"
        )
    if not tensors:
        raise WeightsIntegrityError(f"{path}: holds no tensors at all; pass weights of {spec.name}")
    broken = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:  # a diverged training's weights: restore wrote all-black photos from them as "restored"
        raise WeightsIntegrityError(f"{path}: {len(broken)} tensors hold NaN or infinite values (e.g. {broken[0]}): a run that diverged")
    try:
        # Not strict here: torch's load hooks (which fill in or rename tensors of older files) run first, and what is
        # still missing is said in one line below.
        result = network.load_state_dict(tensors, strict=False)
    except (RuntimeError, ValueError) as error:
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise WeightsIntegrityError(f"{path}: tensors do not fit model {spec.name!r} ({first_line}); the file belongs to another version") from None
    if result.missing_keys and not allow_missing:
        raise WeightsIntegrityError(
            f"{path}: lacks {len(result.missing_keys)} of model {spec.name}'s tensors (e.g. {result.missing_keys[0]}); pass complete weights"
        )
    if result.missing_keys:
        log.info("%s: %d tensors not in %s keep their initialisation: %s", spec.name, len(result.missing_keys), path, ", ".join(result.missing_keys))
    log.debug("loaded %s from %s", spec.name, path)
    return network.eval()


def _existing(path: str | Path, spec: ModelSpec, what: str) -> Path:
    path = Path(path)
    if path.is_dir():  # it was "not found", though it is there
        raise WeightsNotFoundError(f"{what} {path} for model {spec.name!r} is a folder: give the .safetensors file in it")
    if not path.is_file():
        raise WeightsNotFoundError(f"{what} {path} for model {spec.name!r} not found")
    return path


def load_network(spec: ModelSpec) -> nn.Module:
    """Build the spec's network and load its verified weights (``strict=True``). Returns it in eval mode on CPU."""
    return _load_into(spec, verify_weights(spec))


@dataclass(frozen=True)
class LoadedModel:
    """A verified network with the registry spec it was built from, as spandrel's model descriptors carry their
    network's contract: stages read the size multiple, tile overlap and settings from here, never from loose
    integers. Built by :func:`load_model`, placed on the run's device once."""

    spec: ModelSpec
    network: nn.Module

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def contract(self) -> InputContract:
        return self.spec.contract


def load_model(spec: ModelSpec, runtime: Runtime | None = None, path: str | Path | None = None) -> LoadedModel:
    """The spec's verified network (or the one in ``path``, see :func:`load_network_from`) as a
    :class:`LoadedModel`, placed for ``runtime`` when given (:meth:`Runtime.place`)."""
    network = load_network_from(spec, path)
    return LoadedModel(spec, network if runtime is None else runtime.place(network, spec.contract))


def load_network_from(spec: ModelSpec, path: str | Path | None) -> nn.Module:
    """Like :func:`load_network`, but from an explicit file when ``path`` is given (a freshly trained model
    that has no registry hash yet; it must still fit the architecture exactly)."""
    if path is None:
        return load_network(spec)
    return _load_into(spec, _existing(path, spec, "weights file"))


def grow_network_from(spec: ModelSpec, path: str | Path) -> nn.Module:
    """The spec's network started from an explicit weights file for fine-tuning, in training mode.

    Every tensor in the file must fit the network exactly; the network may have tensors the file lacks (layers
    added since those weights were trained), which keep their initialisation and are logged. Shipped weights
    are never loaded this way: :func:`load_network` stays strict.
    """
    return _load_into(spec, _existing(path, spec, "initial weights"), allow_missing=True).train()


def parameter_count(spec: ModelSpec) -> int | None:
    if spec.arch is None:
        return None
    return sum(p.numel() for p in spec.build().parameters())
