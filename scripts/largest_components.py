"""The scratch detector's largest mask components on the held-out real old photos, as one contact sheet.

Runs the detector as ``oldphoto restore --no-global --no-faces`` does (EXIF-oriented photo, the registry's
threshold and dilation, the same tiles and precision) on the test half of the real old photos (those named in
the labels file plus every 10th of the rest: ``oldphoto.training.data.split_real_photos``; ``--split train`` the
other half, ``--split all`` every photo under ``--real``, for a folder of damaged scans), finds the
8-connected components of each mask, takes the ``--count`` largest across all photos and writes one JPEG: per
component a crop around its box (padded by 16 px, at least 96x96, long side scaled down to 256 px) as
input | input with the mask in red, labelled with its index, photo and area. ``--json`` lists the components
(index, photo, box, area). Look at the sheet to judge which are damage and which are scene content.

Usage: python scripts/largest_components.py --out /tmp/components_baseline.jpg --json /tmp/components_baseline.json \
    [--weights runs/scratch/best.safetensors] [--threshold 0.7] [--count 40]
"""

from __future__ import annotations

import argparse
import heapq
from collections import Counter
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from detection_args import add_detection_arguments, colour_rule_record, describe, detection_from_args, line_rule_record
from detection_args import sparse_rule_record

from oldphoto.imageio import read_photo, to_rgb
from oldphoto.restore.scratches import mask_components
from oldphoto.training.data import list_images, split_real_photos

PAD = 16
MIN_CROP = 96
MAX_SIDE = 256
COLUMNS = 4
GAP = 4
"""Pixels between the two halves of a cell."""
MARGIN = 8
"""Pixels around each cell."""
TEXT_HEIGHT = 34
RED_ALPHA = 0.55
BACKGROUND = (40, 40, 40)


def crop_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the component's box padded by PAD, grown about its centre to at least MIN_CROP, in the photo."""
    x, y, w, h = box
    x0, y0, x1, y1 = x - PAD, y - PAD, x + w + PAD, y + h + PAD
    for low, high, limit in ((0, 2, width), (1, 3, height)):
        edges = [x0, y0, x1, y1]
        short = MIN_CROP - (edges[high] - edges[low])
        if short > 0:
            edges[low] -= short // 2
            edges[high] += short - short // 2
        # Shift back inside the photo, then clip (a photo smaller than MIN_CROP keeps its own size).
        if edges[low] < 0:
            edges[high] -= edges[low]
            edges[low] = 0
        if edges[high] > limit:
            edges[low] -= edges[high] - limit
            edges[high] = limit
        edges[low] = max(edges[low], 0)
        x0, y0, x1, y1 = edges
    return x0, y0, x1, y1


def cell_image(rgb: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], lines: list[str]) -> np.ndarray:
    """One sheet cell (BGR uint8): label text above input | input with the mask in red."""
    height, width = mask.shape
    x0, y0, x1, y1 = crop_box(box, width, height)
    crop = rgb[y0:y1, x0:x1]
    marked = mask[y0:y1, x0:x1].astype(bool)
    overlay = crop.copy()
    overlay[marked] = (1 - RED_ALPHA) * overlay[marked] + RED_ALPHA * np.array([1.0, 0.0, 0.0], np.float32)
    # The component's own box, so that it stands out from other marks in the crop.
    bx, by, bw, bh = box
    pair = [np.clip(np.rint(part * 255), 0, 255).astype(np.uint8)[:, :, ::-1] for part in (crop, overlay)]
    pair[1] = np.ascontiguousarray(pair[1])
    cv2.rectangle(pair[1], (bx - x0, by - y0), (bx - x0 + bw - 1, by - y0 + bh - 1), (0, 255, 255), 1)
    scale = min(1.0, MAX_SIDE / max(crop.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        pair = [cv2.resize(part, size, interpolation=cv2.INTER_AREA) for part in pair]
    ch, cw = pair[0].shape[:2]
    cell = np.full((TEXT_HEIGHT + MAX_SIDE + 2 * MARGIN, 2 * MAX_SIDE + GAP + 2 * MARGIN, 3), BACKGROUND, np.uint8)
    top = MARGIN + TEXT_HEIGHT
    cell[top : top + ch, MARGIN : MARGIN + cw] = pair[0]
    cell[top : top + ch, MARGIN + cw + GAP : MARGIN + 2 * cw + GAP] = pair[1]
    for row, line in enumerate(lines):
        cv2.putText(cell, line, (MARGIN, MARGIN + 12 + 16 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", default="../shared/data/real_old", help="folder of real old photos (searched recursively)")
    parser.add_argument("--labels", default="../shared/data/real_labels/real_old_mask_components.json")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument(
        "--dropped", action="store_true", help="list the marks the verifier drops from the detector's mask instead (is any real damage?)"
    )
    parser.add_argument(
        "--split",
        choices=("test", "train", "all"),
        default="test",
        help="the held-out photos (default), the training ones (to find real damage there), or all (a folder of damaged scans)",
    )
    parser.add_argument("--out", default="sheet.jpg", help="contact sheet (JPEG)")
    parser.add_argument("--json", help="write the listed components here")
    add_detection_arguments(parser)
    args = parser.parse_args()

    detection, runtime = detection_from_args(parser, args)
    if args.dropped and detection.verifier is None:
        parser.error("--dropped lists what the verifier drops: it cannot go with --no-verify")
    photos = list_images([args.real])
    if args.split != "all":
        photos = split_real_photos(photos, args.labels)[0 if args.split == "train" else 1]
    kind = dict(test="held-out ", train="training ", all="")[args.split]
    print(f"{len(photos)} {kind}photos; {describe(detection, args, runtime)}")

    masks: dict[Path, np.ndarray] = {}
    fractions: dict[Path, float] = {}
    largest: list[tuple[int, str, tuple[int, int, int, int]]] = []  # min-heap of (area, path, box)
    total = 0
    for path in photos:
        photo = read_photo(path)
        with torch.inference_mode():
            kept, dropped = detection.masks(to_rgb(photo.pixels), runtime)
        mask = (dropped if args.dropped else kept).astype(np.uint8)
        fractions[path] = float(mask.mean())
        components = mask_components(mask)
        total += len(components)
        for (x, y, w, h), area in zip(components.boxes, components.areas, strict=True):
            item = (int(area), str(path), (int(x), int(y), int(w), int(h)))
            if len(largest) < args.count:
                heapq.heappush(largest, item)
            elif item > largest[0]:
                heapq.heapreplace(largest, item)
        if len(components):
            masks[path] = mask

    # A photo is named by its file name, or by its path under --real where file names repeat (as the labels name them).
    repeated = {name for name, count in Counter(path.name for path in photos).items() if count > 1}

    def label(path: Path) -> str:
        return path.relative_to(args.real).as_posix() if path.name in repeated else path.name

    chosen = sorted(largest, reverse=True)
    listing = []
    cells = []
    pixels_of: dict[str, np.ndarray] = {}
    for index, (area, name, box) in enumerate(chosen, start=1):
        path = Path(name)
        if name not in pixels_of:
            pixels_of[name] = to_rgb(read_photo(path).pixels)
        listing.append({"index": index, "photo": label(path), "box": list(box), "area": area})
        lines = [f"#{index}  area {area} px  box {box[0]},{box[1]},{box[2]}x{box[3]}", label(path)]
        cells.append(cell_image(pixels_of[name], masks[path], box, lines))
    if cells:
        blank = np.full_like(cells[0], BACKGROUND)
        cells += [blank] * (-len(cells) % COLUMNS)
        sheet = np.vstack([np.hstack(cells[row : row + COLUMNS]) for row in range(0, len(cells), COLUMNS)])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        # The JPEG quality applies to .jpg sheets only; OpenCV warns about it for other formats.
        options = [cv2.IMWRITE_JPEG_QUALITY, 90] if Path(args.out).suffix.lower() in (".jpg", ".jpeg") else []
        if not cv2.imwrite(args.out, sheet, options):
            raise SystemExit(f"could not write {args.out}")
    if args.json:
        record = {
            "weights": args.weights or "installed",
            "threshold": detection.threshold,
            "dilation": detection.dilation,
            "verifier": None if detection.verifier is None else (args.verifier_weights or "installed"),
            "min_score": detection.rules.min_score,
            "keep_width": detection.rules.keep_width,
            "straight_lines": line_rule_record(detection),
            "colour_rule": colour_rule_record(detection),
            "sparse_rule": sparse_rule_record(detection),
            "photos": len(photos),
            "components_total": total,
            "marked_fraction": {label(path): value for path, value in fractions.items()},
            "components": listing,
        }
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    values = np.array(list(fractions.values()))
    worst = max(fractions, key=fractions.get)
    print(
        f"{total} components over {len(photos)} photos ({len(masks)} with any mark); marked fraction per photo "
        f"mean {values.mean():.2%}, max {values.max():.2%} ({worst.name}); sheet of {len(chosen)} -> {args.out}"
        + (f", list -> {args.json}" if args.json else "")
    )


if __name__ == "__main__":
    main()
