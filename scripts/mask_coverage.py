"""Share of each photo the scratch detection marks, per folder: mean and max, as ``restore --no-global --no-faces
--report`` reports ``scratch_coverage``, but for any weights and settings (``detection_args.py``).

On undamaged photos every mark is a false hit (goal of issue 16: cbsd68 mean <= 0.05%, max <= 0.3%; each of the
eight ``real_damaged/bopbtl_old`` scans <= 0.3%).

Usage: python scripts/mask_coverage.py ../shared/data/val/cbsd68 ../shared/data/val/kodak24 \
    ../shared/data/real_damaged/bopbtl_old [--verifier-weights runs/scratch-verifier/scratch-verifier.safetensors] \
    [--json coverage.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from detection_args import add_detection_arguments, describe, detection_from_args

from oldphoto.imageio import read_photo, to_rgb
from oldphoto.training.data import list_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="folders of photos (each reported on its own)")
    parser.add_argument("--json", help="write every photo's coverage and the summaries here")
    parser.add_argument("--list", action="store_true", help="print every photo's coverage")
    add_detection_arguments(parser)
    args = parser.parse_args()
    detection, runtime = detection_from_args(parser, args)
    print(describe(detection, args, runtime))
    record: dict[str, dict] = {}
    for folder in args.folders:
        coverage = {}
        for path in list_images([folder]):
            with torch.inference_mode():
                coverage[path.name] = float(detection.mask(to_rgb(read_photo(path).pixels), runtime).mean())
            if args.list:
                print(f"  {path.name:40} {coverage[path.name]:8.3%}")
        values = np.array(list(coverage.values()))
        worst = max(coverage, key=coverage.get)
        print(f"{folder}: {len(values)} photos, mean {values.mean():.3%}, max {values.max():.3%} ({worst}), over 0.3%: {(values > 0.003).sum()}")
        record[folder] = {"photos": coverage, "mean": float(values.mean()), "max": float(values.max())}
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": describe(detection, args, runtime), "folders": record}, indent=1))


if __name__ == "__main__":
    main()
