"""Scratch-detection stage: seconds per megapixel and peak memory at full resolution (tiled).

Usage: python benchmarks/scratch_speed.py [--sizes 1 6 24] [--tile 1024] [--threads 2] [--precision auto|fp32|bf16]
Speed does not depend on the weight values, so random weights are used when none are shipped.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from oldphoto.errors import OldPhotoError
from oldphoto.evaluation.runner import PeakMemory
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.restore.scratches import detect_scratches
from oldphoto.runtime import DEFAULT_TILE, make_runtime
from oldphoto.weights import LoadedModel, load_network


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 6, 24], help="megapixels")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size (default: restore's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto", help="auto (restore's default), fp32 or bf16")
    args = parser.parse_args()
    runtime = make_runtime("cpu", precision=args.precision, tile=args.tile, threads=args.threads)
    spec = get_spec(SCRATCH_MODEL)
    try:
        network = load_network(spec)
    except OldPhotoError:
        network = spec.build().eval()
    print(f"{spec.name}: {sum(p.numel() for p in network.parameters()):,} parameters, {runtime.describe()}")
    for megapixels in args.sizes:
        width = int(round(np.sqrt(megapixels * 1e6 * 4 / 3)))
        height = int(round(megapixels * 1e6 / width))
        image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
        with PeakMemory() as memory:
            started = time.perf_counter()
            detect_scratches(image, LoadedModel(spec, runtime.place(network, spec.contract)), runtime, threshold=0.5)
            seconds = time.perf_counter() - started
        mp = height * width / 1e6
        print(f"{width}x{height} ({mp:.1f} MP): {seconds:.2f} s = {seconds / mp:.3f} s/MP, peak +{memory.peak_bytes / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
