"""Pack the training data into a small folder that can travel to a borrowed GPU machine (at most ~40 MB).

The device machine sees only the repository (64 MiB in all, weights included), not ../shared. This writes
``devdata/`` (git-ignored): clean photos and real old photos with their long side capped (training crops come
from images capped at 1024 px anyway) as high-quality JPEG, the validation photos as they are, the damage
stamps as alpha-only RGBA PNGs (the degradation library reads only their alpha), and the real-photo labels
(so the real-photo test photos stay out of training there too).

    python scripts/pack_device_data.py --shared ../shared/data --out devdata
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from oldphoto.imageio import is_image_path


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))


def pack_photos(source: Path, target: Path, max_side: int, quality: int) -> int:
    written = 0
    for path in _images(source):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        scale = max_side / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out = target / path.relative_to(source).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        written += 1
    return written


def pack_stamps(source: Path, target: Path, every: int) -> int:
    written = 0
    for path in sorted(source.rglob("*.png"))[::every]:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None or image.ndim != 3 or image.shape[2] != 4:
            continue
        alpha_only = np.zeros_like(image)
        alpha_only[:, :, 3] = image[:, :, 3]
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), alpha_only, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("devdata"))
    parser.add_argument("--max-side", type=int, default=768)
    parser.add_argument("--real-max-side", type=int, default=512)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--stamp-every", type=int, default=2, help="Keep every N-th damage stamp.")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    counts = {
        "clean": pack_photos(args.shared / "clean", args.out / "clean", args.max_side, args.quality),
        "real_old": pack_photos(args.shared / "real_old", args.out / "real_old", args.real_max_side, args.quality),
        "damage": pack_stamps(args.shared / "damage", args.out / "damage", args.stamp_every),
        "val": pack_photos(args.shared / "val" / "kodak24", args.out / "val" / "kodak24", 1024, 95),
    }
    shutil.copytree(args.shared / "real_labels", args.out / "real_labels")
    for name, count in counts.items():
        size = sum(p.stat().st_size for p in (args.out / name).rglob("*") if p.is_file())
        print(f"{name}: {count} files, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
