"""Device, precision, tiling and thread settings, chosen once per run and passed to every stage."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import torch

from oldphoto.errors import DeviceError

if TYPE_CHECKING:
    from oldphoto.registry import InputContract

log = logging.getLogger(__name__)

DEFAULT_TILE = 1024
"""Large enough that overlaps cost little (the global stage overlaps tiles by 64 px); memory stays bounded by it."""
DEFAULT_TILE_OVERLAP = 32

Precision = Literal["fp32", "bf16", "fp16"]
"""A resolved precision: what the networks compute in (weights and tile tensors stay float32 either way)."""
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
"""What a caller may ask for; ``auto`` resolves per device (see :func:`resolve_precision`)."""
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}

_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""/proc/cpuinfo flags of native bfloat16 arithmetic: x86 AVX512-BF16 and AMX-BF16, ARM (Graviton3+) BF16."""


@dataclass(frozen=True)
class Runtime:
    """Where and how networks run. Networks themselves never choose any of this.

    Reduced precision is autocast, never cast weights: networks and the tiles handed to them stay float32
    (:attr:`dtype`), and inside :meth:`autocast` PyTorch runs convolutions and matrix products in the
    :attr:`precision`'s dtype. Tiled stages get it from :func:`oldphoto.tiling.tile_apply`
    (``precision=runtime.precision``); code that calls a network directly wraps the call in
    ``with runtime.autocast():``.
    """

    device: torch.device
    precision: Precision = "fp32"
    tile: int = DEFAULT_TILE
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    threads: int = 1

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise DeviceError(f"precision {self.precision!r} is not resolved; use fp32, bf16 or fp16 (see make_runtime)")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the networks' weights and of the tiles moved to and from the device: always float32
        (outputs are blended in float32 on the CPU). The arithmetic's precision is :attr:`precision`."""
        return torch.float32

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype convolutions and matrix products run in under :meth:`autocast`."""
        return AUTOCAST_DTYPES.get(self.precision, torch.float32)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Context manager that runs the networks called inside it at this runtime's precision."""
        return autocast(self.device, self.precision)

    def describe(self) -> str:
        return f"{self.device} {self.precision}, tile {self.tile}/{self.tile_overlap}, {self.threads} threads"

    def place(self, network: torch.nn.Module, contract: InputContract) -> torch.nn.Module:
        """Move ``network`` where its contract says it runs in this run (once, when it is loaded): this runtime's
        device in float32, or the CPU for ``cpu_only`` networks; channels-last where the contract asks for it."""
        device = torch.device("cpu") if contract.cpu_only else self.device
        if contract.channels_last:
            return network.to(device=device, dtype=torch.float32, memory_format=torch.channels_last)
        return network.to(device=device, dtype=torch.float32)


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` on ``device``'s type at ``precision`` (``bf16``/``fp16``); a no-op context for ``fp32``."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware, so that bf16 autocast is faster than fp32.

    On Linux the answer is in the CPU flags of ``/proc/cpuinfo`` (``avx512_bf16``, ``amx_bf16``; ``bf16``
    on ARM). Elsewhere, oneDNN's own check when this PyTorch build has one; it also says yes for AVX-512
    CPUs that only emulate bf16, which is why the flags come first. Tests monkeypatch this function.
    """
    cpuinfo = Path("/proc/cpuinfo")
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    if flags:
        return bool(flags & _NATIVE_BF16_FLAGS)
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check is not None and torch.backends.mkldnn.is_available() and check())
    except (RuntimeError, AttributeError):
        return False


def resolve_precision(name: str, device: torch.device) -> Precision:
    """Resolve ``auto|fp32|bf16|fp16`` for ``device``, refusing what the device cannot do well.

    ``auto`` is fp16 on CUDA and MPS, bf16 on CPUs with native bfloat16 (:func:`cpu_has_native_bf16`),
    fp32 otherwise.
    """
    name = name.strip().lower()
    if name not in PRECISIONS:
        raise DeviceError(f"--precision {name!r} is not understood; use {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type in ("cuda", "mps"):
            return "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if device.type == "cpu":
        if name == "fp16":
            raise DeviceError(
                "--precision fp16 needs a CUDA or MPS device; half precision is slower and less exact on CPU "
                "(use --precision bf16 on a CPU with native bfloat16, or fp32)"
            )
        if name == "bf16" and not cpu_has_native_bf16():
            raise DeviceError(
                "--precision bf16: this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), so it would be "
                "emulated and slower than fp32; use --precision fp32 (or auto)"
            )
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp16")
    return cast(Precision, name)


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
        if not re.fullmatch(r"cuda(:\d+)?", name):
            # torch.device("cuda:x") raises a bare RuntimeError (a traceback), and only where CUDA is present.
            raise DeviceError(f"--device {name!r} is not understood; use cuda or cuda:N with N a GPU's number (0, 1, ...)")
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
    precision: str = "fp32",
    tile: int = DEFAULT_TILE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    threads: int | None = None,
) -> Runtime:
    """Build the run's :class:`Runtime` and apply the thread count to PyTorch.

    ``precision`` is ``auto|fp32|bf16|fp16`` (see :func:`resolve_precision`); the library's default is fp32,
    exact on every machine, while the commands default to ``auto``.
    """
    resolved = select_device(device)
    chosen = resolve_precision(precision, resolved)
    if tile < 64:
        raise DeviceError(f"--tile {tile} is too small; use at least 64 pixels")
    if not 0 <= tile_overlap <= tile // 4:
        # The tiler blends over the overlap: more than a quarter of the tile would make tiles mostly seam.
        advice = "" if tile_overlap < 0 else f": use --tile {4 * tile_overlap} or more, or a smaller --tile-overlap"
        raise DeviceError(f"--tile-overlap {tile_overlap} must be between 0 and a quarter of --tile {tile} ({tile // 4}){advice}")
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    return Runtime(
        device=resolved,
        precision=chosen,
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
