"""Choose the scratch-detector threshold on the validation crops (the same fixed crops training validates on).

Usage: python scripts/tune_scratch_threshold.py WEIGHTS --val ../shared/data/val/kodak24 --damage-dir ../shared/data/damage
Prints precision/recall/F1 per threshold; the best goes into the registry entry's ``settings``.
"""

from __future__ import annotations

import argparse

import numpy as np

from oldphoto.degrade import DamageStamps
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.training.scratch import (
    ScratchTrainConfig,
    best_threshold,
    make_validation_set,
    scores_by_threshold,
    scratch_probabilities,
)
from oldphoto.weights import load_network_from


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("--val", nargs="+", required=True)
    parser.add_argument("--damage-dir", nargs="*", default=[])
    parser.add_argument("--preset", nargs="+", default=["default"], help="the presets the weights were trained with")
    args = parser.parse_args()
    network = load_network_from(get_spec(SCRATCH_MODEL), args.weights)
    config = ScratchTrainConfig(data=(), val=tuple(args.val), damage_dirs=tuple(args.damage_dir), presets=tuple(args.preset))
    gray, truth = make_validation_set(config, DamageStamps(args.damage_dir) if args.damage_dir else None)
    # A finer grid than training validates with.
    results = scores_by_threshold(scratch_probabilities(network, gray), truth, np.round(np.arange(0.05, 0.99, 0.025), 3))
    for result in results:
        print(f"threshold {result.threshold:.3f}: precision {result.precision:.3f} recall {result.recall:.3f} F1 {result.f1:.3f}")
    best = best_threshold(results)
    print(f"best: threshold {best.threshold:.3f}, F1 {best.f1:.3f}")


if __name__ == "__main__":
    main()
