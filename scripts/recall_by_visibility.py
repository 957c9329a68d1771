"""Scratch-detector recall by how visible the damage is: how far it moved each masked pixel.

Makes the same pairs as ``oldphoto degrade SOURCES --count N --seed S --preset P --damage-dir D`` (same files,
order and generator), keeps each pair's change map (what the true mask thresholds), runs the detector as
``restore`` does and prints, per band of change, the share of masked pixels and the detector's recall there.

Usage: python scripts/recall_by_visibility.py "../shared/data/val/cbsd68/*" --count 20 --seed 0 --preset default \
    --damage-dir ../shared/data/damage [--weights FILE]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from oldphoto.degrade import degrade_image, get_preset, load_stamps
from oldphoto.imageio import load_rgb
from oldphoto.inputs import discover_inputs
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.restore.scratches import detect_scratches, detection_settings
from oldphoto.runtime import make_runtime
from oldphoto.weights import load_model

BANDS = (0.08, 0.12, 0.16, 0.24, 0.40, 1.0)
"""Edges of the change bands (0-1 intensity; 0.08 is the presets' mask threshold, ~20 of 255 levels)."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--damage-dir", nargs="*", default=[])
    parser.add_argument("--weights", help="scratch-unet weights (default: the installed ones)")
    args = parser.parse_args()
    spec = get_spec(SCRATCH_MODEL)
    threshold, dilation = detection_settings(spec)
    runtime = make_runtime("cpu")
    detector = load_model(spec, runtime, args.weights)  # the installed, verified weights when None
    preset = get_preset(args.preset)
    stamps = load_stamps(args.damage_dir)  # as `degrade` does: the bundled stamps unless --damage-dir
    found = discover_inputs(args.sources).files
    rng = np.random.default_rng(args.seed)
    edges = np.array(BANDS[:-1] + (np.inf,))
    masked = np.zeros(len(BANDS) - 1)
    caught = np.zeros(len(BANDS) - 1)
    for index in range(args.count):
        sample = degrade_image(load_rgb(found[index % len(found)].path), preset, rng, stamps)
        with torch.inference_mode():
            detected = detect_scratches(sample.degraded, detector, runtime, threshold=threshold, dilation=dilation) > 0
        truth = sample.mask > 0
        band = np.digitize(sample.change[truth], edges) - 1
        masked += np.bincount(band, minlength=len(masked))[: len(masked)]
        caught += np.bincount(band[detected[truth]], minlength=len(masked))[: len(masked)]
    print(f"{int(masked.sum())} masked pixels in {args.count} pairs ({args.preset}); recall {caught.sum() / masked.sum():.3f}")
    for low, high, share, hit in zip(BANDS[:-1], BANDS[1:], masked / masked.sum(), caught / np.maximum(masked, 1)):
        print(f"change {low:.2f}-{high:.2f} ({round(low * 255)}-{round(high * 255)} levels): {share:6.1%} of masked pixels, recall {hit:.3f}")


if __name__ == "__main__":
    main()
