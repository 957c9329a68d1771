"""Scratch-detection stage (detector and verifier): seconds per megapixel and peak memory at full resolution (tiled).

Usage: python benchmarks/scratch_speed.py [--sizes 1 6 24] [--tile 1024] [--threads 2] [--precision auto|fp32|bf16]
    [--photo PATH] [--no-verify]

With ``--photo``, that photo is resized to each size (the verifier's time grows with the number of marks, so a real
photo gives a fairer figure than noise); without it, uniform noise. The detector's speed does not depend on its
weight values, so random weights are used when none are shipped.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from oldphoto.errors import OldPhotoError
from oldphoto.evaluation.runner import PeakMemory
from oldphoto.imageio import read_photo, to_rgb
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.restore.scratches import ScratchDetection, load_scratch_detection
from oldphoto.runtime import DEFAULT_TILE, make_runtime
from oldphoto.weights import LoadedModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 6, 24], help="megapixels")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size (default: restore's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto", help="auto (restore's default), fp32 or bf16")
    parser.add_argument("--photo", help="a photo resized to each size (default: uniform noise)")
    parser.add_argument("--no-verify", action="store_true", help="the detector alone (restore --no-scratch-verify)")
    args = parser.parse_args()
    runtime = make_runtime("cpu", precision=args.precision, tile=args.tile, threads=args.threads)
    try:
        detection = load_scratch_detection(runtime, verify=not args.no_verify)
    except OldPhotoError:
        spec = get_spec(SCRATCH_MODEL)
        network = runtime.place(spec.build().eval(), spec.contract)
        detection = ScratchDetection(LoadedModel(spec, network), None, threshold=0.5)
        print("no shipped weights: a random detector, no verifier")
    parameters = sum(p.numel() for p in detection.detector.network.parameters())
    verifier = "no verifier" if detection.verifier is None else f"verifier {sum(p.numel() for p in detection.verifier.network.parameters()):,} parameters"
    print(f"{SCRATCH_MODEL}: {parameters:,} parameters, threshold {detection.threshold:g}; {verifier}; {runtime.describe()}")
    photo = to_rgb(read_photo(args.photo).pixels) if args.photo else None
    for megapixels in args.sizes:
        if photo is None:
            width = int(round(np.sqrt(megapixels * 1e6 * 4 / 3)))
            height = int(round(megapixels * 1e6 / width))
            image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
        else:
            scale = np.sqrt(megapixels * 1e6 / (photo.shape[0] * photo.shape[1]))
            width, height = round(photo.shape[1] * scale), round(photo.shape[0] * scale)
            image = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        with PeakMemory() as memory:
            started = time.perf_counter()
            mask = detection.mask(image, runtime)
            seconds = time.perf_counter() - started
        mp = height * width / 1e6
        print(
            f"{width}x{height} ({mp:.1f} MP): {seconds:.2f} s = {seconds / mp:.3f} s/MP, peak +{memory.peak_bytes / 1e6:.0f} MB, "
            f"{mask.mean():.3%} marked"
        )


if __name__ == "__main__":
    main()
