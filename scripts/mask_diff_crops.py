"""Crops of every place where two `restore --save-mask` runs repaired different pixels, for a side-by-side review.

For each photo restored in both output folders ``A`` and ``B`` (same names, each with its ``<stem>_mask.png``), the
pixels marked in one mask and not in the other are grown by ``--grow`` pixels and split into connected regions; each
region is cut, with some context, from the input photo, from A's output and from B's output, and written as one PNG
``OUT/<stem>_<k>_<x0>_<y0>.png`` (input | A | B, enlarged up to 4x towards a 300 px short side; x0, y0 = the crop's
origin in the photo). The folders' top level only (not `restore --recursive`'s sub-folders). Then look at them, or
hand them to a reviewer: a change of detection settings is judged where it changes something, not on whole photos
where most pixels are identical.

Usage: python scripts/mask_diff_crops.py --inputs runs/realset --a restored-old/ --b restored-new/ --out /tmp/diffs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from oldphoto.imageio import is_image_path

GAP = 6
"""White pixels between the three crops."""
MIN_SIDE = 96
MAX_SCALE = 4
TARGET = 300


def region_crops(changed: np.ndarray, grow: int) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) square-ish crops around each connected region of ``changed`` ((H, W) bool) grown by ``grow``."""
    height, width = changed.shape
    grown = cv2.dilate(changed.astype(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(grown)
    crops = []
    for x, y, w, h, _ in stats[1:count]:
        half = max(w, h, MIN_SIDE) // 2 + 8
        cx, cy = x + w // 2, y + h // 2
        crops.append((max(cx - half, 0), max(cy - half, 0), min(cx + half, width), min(cy + half, height)))
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", required=True, help="folder of the input photos")
    parser.add_argument("--a", required=True, help="first restore output folder (with --save-mask)")
    parser.add_argument("--b", required=True, help="second restore output folder (with --save-mask)")
    parser.add_argument("--out", required=True, help="folder for the crops")
    parser.add_argument("--grow", type=int, default=20, help="pixels the changed mask is grown by before it is split")
    args = parser.parse_args()
    photos = [path for path in Path(args.inputs).iterdir() if is_image_path(path)]
    restored_a = [path for path in Path(args.a).iterdir() if is_image_path(path) and not path.name.endswith("_mask.png")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for mask_a in sorted(Path(args.a).glob("*_mask.png")):
        stem = mask_a.name[: -len("_mask.png")]
        mask_b = Path(args.b) / mask_a.name
        outputs = [path for path in restored_a if path.stem == stem]
        # The input of the same name as the output, else the only one of its stem.
        same_name = [photo for photo in photos if len(outputs) == 1 and photo.name == outputs[0].name]
        matches = same_name or [photo for photo in photos if photo.stem == stem]
        if not mask_b.exists() or len(matches) != 1 or len(outputs) != 1 or not (Path(args.b) / outputs[0].name).exists():
            print(f"skipped {stem}: not in both folders, or no single input photo of that name")
            continue
        masks = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in (mask_a, mask_b)]
        images = [cv2.imread(str(path)) for path in (matches[0], outputs[0], Path(args.b) / outputs[0].name)]
        if any(image is None for image in masks + images) or masks[0].shape != masks[1].shape or images[1].shape != images[2].shape:
            print(f"skipped {stem}: an image could not be read, or the two runs' sizes differ")
            continue
        first, second = masks[0] > 127, masks[1] > 127
        if images[0].shape != images[1].shape:
            images[0] = cv2.resize(images[0], (images[1].shape[1], images[1].shape[0]), interpolation=cv2.INTER_AREA)
        for index, (x0, y0, x1, y1) in enumerate(region_crops(first != second, args.grow), start=1):
            parts = [image[y0:y1, x0:x1] for image in images]
            scale = max(1, min(MAX_SCALE, -(-TARGET // max(1, min(parts[0].shape[:2])))))
            parts = [cv2.resize(part, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for part in parts]
            gap = np.full((parts[0].shape[0], GAP, 3), 255, np.uint8)
            cv2.imwrite(str(out / f"{stem}_{index}_{x0}_{y0}.png"), np.hstack([parts[0], gap, parts[1], gap, parts[2]]))
            written += 1
    print(f"{written} crops -> {out}")


if __name__ == "__main__":
    main()
