"""Mine hard negatives for the scratch detector: the places where it marks scene content in undamaged photos.

Every mark the detector makes on an undamaged photo is a false hit. This script runs the detector (alone, no
verifier) on training photos as the training crop pool holds them (long side capped at 1,024 px, photos smaller than ``--crop`` scaled up to it), takes the
connected components of its mask at ``--threshold`` of at least ``--min-area`` pixels, and writes each one's photo,
centre (fractions of the photo's width and height) and area as JSON for ``oldphoto train scratch
--hard-negatives``, which centres a share of its crops on them.

Only undamaged photos belong here. The clean photos are undamaged by construction; real old photos carry a few real
defects, which would be mined as content too (``--real`` takes their training part only, as the training command
does, and the model card must weigh that).

Usage: python scripts/mine_hard_negatives.py ../shared/data/clean [--real ../shared/data/real_old \
    --real-labels ../shared/data/real_labels/real_old_mask_components.json] [--threshold 0.5] [--min-area 16] \
    [--min-elongation 4] -o runs/hard-negatives.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from oldphoto.registry import SCRATCH_MODEL, get_spec
from oldphoto.restore.scratches import mask_components, scratch_probability
from oldphoto.runtime import make_runtime
from oldphoto.training.data import CropPool, list_images, split_real_photos
from oldphoto.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", help="folders of undamaged training photos (as given to --data)")
    parser.add_argument("--real", nargs="*", default=[], help="folders of real old photos (their training part is mined)")
    parser.add_argument("--real-labels", help="the labelled real-photo test (JSON), as given to train scratch")
    parser.add_argument("--threshold", type=float, default=0.5, help="detector probability that counts as a mark")
    parser.add_argument("--min-area", type=int, default=16, help="smallest mark kept, in pixels")
    parser.add_argument(
        "--min-elongation",
        type=float,
        default=0.0,
        help="keep only marks at least this elongated: longer box side over mean thickness (area / longer side); "
        "e.g. 4 keeps lines and drops blobs and textured patches",
    )
    parser.add_argument("--weights", help="other detector weights than the installed ones")
    parser.add_argument("--crop", type=int, default=256, help="the training crop (photos smaller than it are scaled up to it, as training does)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args()
    if not args.folders and not args.real:
        parser.error("give folders of photos, --real folders, or both")
    runtime = make_runtime("cpu", args.precision)
    detector = load_model(get_spec(SCRATCH_MODEL), runtime, args.weights)
    files = list_images(args.folders) if args.folders else []
    if args.real:
        files += split_real_photos(list_images(args.real), args.real_labels)[0]
    # The pool's own resizing, so that marks are found at the scale training sees the photos.
    pool = CropPool(files, crop=args.crop)
    marks = []
    pixels = 0
    for path, image in zip(pool.files, pool.images):
        height, width = image.shape[:2]
        with torch.inference_mode():
            probability = scratch_probability(image.astype(np.float32) / 255.0, detector, runtime)
        components = mask_components(probability > args.threshold)
        pixels += height * width
        for (x, y, w, h), area in zip(components.boxes, components.areas):
            elongation = max(w, h) ** 2 / area
            if area >= args.min_area and elongation >= args.min_elongation:
                marks.append({"photo": str(path), "x": (x + w / 2) / width, "y": (y + h / 2) / height, "area": int(area)})
    area = sum(m["area"] for m in marks)
    print(f"{len(pool.files)} photos, {len(marks)} marks of >= {args.min_area} px at {args.threshold}, {area / pixels:.3%} of the pixels")
    description = (
        f"Hard negatives: marks of the scratch detector (threshold {args.threshold}, >= {args.min_area} px, elongation >= "
        f"{args.min_elongation:g}) on undamaged "
        f"training photos as a crop pool of {args.crop} px holds them; "
        f"x, y: centre as fractions of width and height. Made by "
        f"scripts/mine_hard_negatives.py {' '.join(args.folders)}" + (f" --real {' '.join(args.real)}" if args.real else "")
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"description": description, "marks": marks}, indent=0))


if __name__ == "__main__":
    main()
