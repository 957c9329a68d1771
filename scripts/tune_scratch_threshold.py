"""Choose the scratch-detector threshold on the validation crops (the same fixed crops training validates on).

Usage: python scripts/tune_scratch_threshold.py WEIGHTS --val ../shared/data/val/kodak24 --damage-dir ../shared/data/damage
Prints precision/recall/F1 per threshold; the best goes into the registry entry's ``settings``.
"""

from __future__ import annotations

import argparse

import numpy as np
from safetensors.torch import load_file

from oldphoto.degrade import DamageStamps
from oldphoto.evaluation.metrics import MaskCounts
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.training.scratch import (
    ScratchTrainConfig,
    make_validation_set,
    scratch_probabilities,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("--val", nargs="+", required=True)
    parser.add_argument("--damage-dir", nargs="*", default=[])
    args = parser.parse_args()
    network = get_spec(SCRATCH_MODEL).build()
    network.load_state_dict(load_file(args.weights), strict=True)
    network.eval()
    config = ScratchTrainConfig(data=(), val=tuple(args.val), damage_dirs=tuple(args.damage_dir))
    gray, truth = make_validation_set(config, DamageStamps(args.damage_dir) if args.damage_dir else None)
    probability = scratch_probabilities(network, gray)
    best = None
    for threshold in np.round(np.arange(0.05, 0.99, 0.025), 3):
        counts = MaskCounts.of(probability > threshold, truth)
        print(f"threshold {threshold:.3f}: precision {counts.precision:.3f} recall {counts.recall:.3f} F1 {counts.f1:.3f}")
        if best is None or counts.f1 > best[1]:
            best = (threshold, counts.f1)
    print(f"best: threshold {best[0]:.3f}, F1 {best[1]:.3f}")


if __name__ == "__main__":
    main()
