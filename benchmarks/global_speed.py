"""Global restoration stage (VAE_A -> mapping -> VAE_B -> detail fusion): seconds per megapixel and peak memory, tiled.

Usage: python benchmarks/global_speed.py [--sizes 1 6 24] [--tile 1024] [--threads 2] [--damage 0.02]
           [--precision auto|fp32|bf16] [--no-detail]
Speed does not depend on the weight values, so random weights are used when none are shipped. A random
scratch mask covering ``--damage`` of the pixels exercises the partial non-local branch.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from oldphoto.errors import OldPhotoError
from oldphoto.evaluation.runner import PeakMemory
from oldphoto.registry import DETAIL_MODEL, MAPPING_MODEL, VAE_CLEAN_MODEL, VAE_OLD_MODEL, get_spec
from oldphoto.restore.global_stage import restore_global
from oldphoto.runtime import DEFAULT_TILE, make_runtime
from oldphoto.weights import load_network

CPU = make_runtime("cpu")
"""Only for placing networks as ``restore`` does (device, layout); the runs use their own runtimes."""


def network(name: str):
    spec = get_spec(name)
    try:
        return CPU.place(load_network(spec), spec.contract), "shipped"
    except OldPhotoError:
        return CPU.place(spec.build().eval(), spec.contract), "random"


def scratch_lines(height: int, width: int, coverage: float, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    while mask.mean() < coverage:
        x0, x1 = rng.integers(0, width, 2)
        cv2.line(mask, (int(x0), 0), (int(x1), height - 1), 1, 3)
    return mask.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 6, 24], help="megapixels")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size (default: restore's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--damage", type=float, default=0.02, help="fraction of pixels in the scratch mask")
    parser.add_argument("--precision", default="auto", help="auto (restore's default), fp32 or bf16")
    parser.add_argument("--no-detail", action="store_true", help="the triplet alone, without the detail fusion")
    args = parser.parse_args()
    runtime = make_runtime("cpu", precision=args.precision, tile=args.tile, threads=args.threads)
    names = (VAE_OLD_MODEL, MAPPING_MODEL, VAE_CLEAN_MODEL) + (() if args.no_detail else (DETAIL_MODEL,))
    loaded = {name: network(name) for name in names}
    overlap = max(get_spec(name).contract.min_tile_overlap for name in names)
    for name, (module, origin) in loaded.items():
        print(f"{name}: {sum(p.numel() for p in module.parameters()):,} parameters ({origin} weights)")
    print(runtime.describe())
    rng = np.random.default_rng(0)
    for megapixels in args.sizes:
        width = int(round(np.sqrt(megapixels * 1e6 * 4 / 3)))
        height = int(round(megapixels * 1e6 / width))
        image = rng.random((height, width, 3), dtype=np.float32)
        mask = scratch_lines(height, width, args.damage, rng)
        with PeakMemory() as memory:
            started = time.perf_counter()
            restore_global(
                image,
                mask,
                loaded[VAE_OLD_MODEL][0],
                loaded[MAPPING_MODEL][0],
                loaded[VAE_CLEAN_MODEL][0],
                runtime,
                min_overlap=overlap,
                detail=None if args.no_detail else loaded[DETAIL_MODEL][0],
            )
            seconds = time.perf_counter() - started
        mp = height * width / 1e6
        print(f"{width}x{height} ({mp:.1f} MP): {seconds:.2f} s = {seconds / mp:.3f} s/MP, peak +{memory.peak_bytes / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
