"""Write aligned 256x256 face crops (found and aligned exactly as `restore` does) for face evaluation sets.

Usage:
    python scripts/export_aligned_faces.py ../shared/data/faces/utkface -o faces-val/utk --held-out
    python scripts/export_aligned_faces.py ../shared/data/faces/ffhq-val -o faces-val/ffhq

``--held-out`` keeps only the faces `oldphoto train face` never trains on (every 20th file). Then make pairs
with `oldphoto degrade faces-val/utk -o set ...` and score `oldphoto evaluate set -m identity -m global -m restore`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from oldphoto.imageio import save_rgb
from oldphoto.training.data import list_images, split_held_out
from oldphoto.training.faces import largest_faces_aligned


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source", nargs="+")
    parser.add_argument("-o", "--out", required=True, type=Path)
    parser.add_argument("--held-out", action="store_true", help="only the files held out of face training")
    args = parser.parse_args()
    files = list_images(args.source)
    if args.held_out:
        files = split_held_out(files)[1]
    written = 0
    for path, crop in largest_faces_aligned(files):
        save_rgb(args.out / f"{path.stem}.png", crop.astype(np.float32) / 255.0)
        written += 1
    print(f"{written} aligned faces of {len(files)} files written to {args.out}")


if __name__ == "__main__":
    main()
