"""Choose the scratch-detector threshold on validation data: the fixed damaged crops training validates on, and
the same validation photos as they are (undamaged: whatever the detector marks there is a false hit).

Usage: python scripts/tune_scratch_threshold.py WEIGHTS --val ../shared/data/val/kodak24 --damage-dir ../shared/data/damage \
           --preset default --preset bopbtl --min-precision 0.85 --max-coverage 0.0005
Prints precision/recall/F1 (scored mask, don't-care band left out), the share of scene distractors marked and the
undamaged photos' mean/max coverage per threshold; then the threshold of best F1 among those at least
``--min-precision`` precise whose mean undamaged coverage is at most ``--max-coverage``. It goes into the registry
entry's ``settings``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from oldphoto.degrade import load_stamps
from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.training.data import list_images, readable_images
from oldphoto.training.scratch import (
    ScratchTrainConfig,
    best_threshold,
    luma,
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
    parser.add_argument("--preset", action="append", help="the presets the weights were trained with (repeatable)")
    parser.add_argument("--samples", type=int, default=64, help="validation crops")
    parser.add_argument("--min-precision", type=float, default=None)
    parser.add_argument("--max-coverage", type=float, default=None, help="mean share of undamaged pixels marked")
    args = parser.parse_args()
    torch.set_num_threads(2)
    network = load_network_from(get_spec(SCRATCH_MODEL), args.weights)
    stamps = load_stamps(args.damage_dir)  # as training does: bundled unless --damage-dir
    data = make_validation_set(args.val, args.preset or ["default"], stamps, args.samples, ScratchTrainConfig.val_crop)
    thresholds = np.round(np.arange(0.05, 0.99, 0.025), 3)
    # A finer grid than training validates with.
    results = scores_by_threshold(
        scratch_probabilities(network, data.gray), data.truth, thresholds, ignore=data.ignore, distractor=data.distractor
    )
    undamaged = [
        scratch_probabilities(network, luma(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()))[0]
        for _, image in readable_images(list_images(args.val))
    ]
    coverage = {t: [float((p > t).mean()) for p in undamaged] for t in thresholds}
    for result in results:
        marked = coverage[result.threshold]
        print(
            f"threshold {result.threshold:.3f}: precision {result.precision:.3f} recall {result.recall:.3f} F1 {result.f1:.3f} "
            f"distractors {result.distractor_marked:.4f} undamaged mean {np.mean(marked):.5f} max {np.max(marked):.5f}"
        )
    allowed = [r for r in results if args.max_coverage is None or np.mean(coverage[r.threshold]) <= args.max_coverage]
    best = best_threshold(allowed or results, args.min_precision)
    print(f"best: threshold {best.threshold:.3f}, precision {best.precision:.3f}, recall {best.recall:.3f}, F1 {best.f1:.3f}")


if __name__ == "__main__":
    main()
