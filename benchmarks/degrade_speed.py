"""Throughput of the degradation library: megapixels per second on one core, per preset.

Usage: python benchmarks/degrade_speed.py [--size 1024] [--repeats 30] [--damage-dir DIR]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from oldphoto.degrade import PRESETS, DamageStamps, degrade_image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--damage-dir", default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    stamps = DamageStamps([args.damage_dir]) if args.damage_dir else None
    rng = np.random.default_rng(0)
    clean = cv2.GaussianBlur(rng.random((args.size, args.size, 3), dtype=np.float32), (0, 0), 3)
    megapixels = args.size * args.size / 1e6
    for name, preset in PRESETS.items():
        degrade_image(clean, preset, np.random.default_rng(0), stamps)  # warm-up
        started = time.perf_counter()
        for seed in range(args.repeats):
            degrade_image(clean, preset, np.random.default_rng(seed), stamps)
        seconds = (time.perf_counter() - started) / args.repeats
        print(f"{name:8s} {args.size}x{args.size}: {seconds * 1000:7.1f} ms/image  {megapixels / seconds:6.1f} MP/s on one core")


if __name__ == "__main__":
    main()
