"""Device, precision, tiling and thread settings, chosen once per run and passed to every stage."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from oldphoto.errors import DeviceError

log = logging.getLogger(__name__)

DEFAULT_TILE = 1024
"""Large enough that overlaps cost little (the global stage overlaps tiles by 64 px); memory stays bounded by it."""
DEFAULT_TILE_OVERLAP = 32


@dataclass(frozen=True)
class Runtime:
    """Where and how networks run. Networks themselves never choose any of this."""

    device: torch.device
    dtype: torch.dtype = torch.float32
    tile: int = DEFAULT_TILE
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    threads: int = 1

    def describe(self) -> str:
        precision = "fp16" if self.dtype == torch.float16 else "fp32"
        return f"{self.device} {precision}, tile {self.tile}/{self.tile_overlap}, {self.threads} threads"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def select_device(name: str = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda|cuda:N|mps`` to an available device (auto = CUDA, then MPS, then CPU)."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise DeviceError("--device mps: Apple Metal (MPS) is not available on this machine; use --device cpu")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA GPU is available to this PyTorch build; use --device cpu")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present (cuda:0 .. "
                f"cuda:{torch.cuda.device_count() - 1})"
            )
        return device
    raise DeviceError(f"--device {name!r} is not understood; use auto, cpu, cuda, cuda:N or mps")


def make_runtime(
    device: str = "auto",
    fp16: bool = False,
    tile: int = DEFAULT_TILE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    threads: int | None = None,
) -> Runtime:
    """Build the run's :class:`Runtime` and apply the thread count to PyTorch."""
    resolved = select_device(device)
    if fp16 and resolved.type == "cpu":
        raise DeviceError("--fp16 needs a CUDA or MPS device; half precision is slower and less exact on CPU")
    if tile < 64:
        raise DeviceError(f"--tile {tile} is too small; use at least 64 pixels")
    if not 0 <= tile_overlap < tile // 2:
        raise DeviceError(f"--tile-overlap {tile_overlap} must be between 0 and half the tile size ({tile // 2})")
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    return Runtime(
        device=resolved,
        dtype=torch.float16 if fp16 else torch.float32,
        tile=tile,
        tile_overlap=tile_overlap,
        threads=threads,
    )


def default_threads() -> int:
    """The cores this process may use (respects CPU affinity, e.g. in containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
