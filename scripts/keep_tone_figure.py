"""The README's keep-tone figure: input | default restore | restore --keep-tone, side by side, labelled.

The shipped example (examples/old-mountain.jpg) is a sepia-toned print, so it is used as it is (no toning is
added). Both restorations run the full default pipeline (scratches, global, faces) on CPU in fp32, as
``oldphoto restore`` does with and without ``--keep-tone``; the figure is written as one JPEG (4:4:4 chroma, so the
tone in the figure is the tone in the pixels) and the mean chroma of each panel is printed, so the figure's claim can
be checked in numbers as well as by eye.

Usage: python scripts/keep_tone_figure.py [--photo examples/old-mountain.jpg] [--out docs/keep-tone.jpg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from oldphoto.imageio import is_black_and_white, load_rgb, to_luminance
from oldphoto.restore.pipeline import RestoreOptions, Restorer
from oldphoto.runtime import make_runtime

GAP = 6
"""White pixels between panels."""
LABEL_HEIGHT = 28
LABELS = ("input", "restore (default)", "restore --keep-tone")
QUALITY = 90


def labelled(panel: np.ndarray, text: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB with a white strip on top carrying ``text``."""
    strip = np.full((LABEL_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (8, LABEL_HEIGHT - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def mean_chroma(pixels: np.ndarray) -> np.ndarray:
    """Mean (R - Y, G - Y, B - Y) of an (H, W, 3) photo in [0, 1]."""
    return (pixels - to_luminance(pixels)).reshape(-1, 3).mean(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photo", type=Path, default=Path("examples/old-mountain.jpg"))
    parser.add_argument("--out", type=Path, default=Path("docs/keep-tone.jpg"))
    args = parser.parse_args()
    photo = load_rgb(args.photo)
    if is_black_and_white(photo):
        raise SystemExit(f"{args.photo} is black and white: it has no tone to keep; pick a toned photo")
    runtime = make_runtime("cpu", precision="fp32")
    default = Restorer(runtime, RestoreOptions()).restore(photo).pixels
    kept = Restorer(runtime, RestoreOptions(keep_tone=True)).restore(photo).pixels
    for label, pixels in zip(LABELS, (photo, default, kept)):
        r, g, b = mean_chroma(pixels)
        print(f"{label:>22}: mean luminance {to_luminance(pixels).mean():.3f}, mean R-Y {r:+.4f} G-Y {g:+.4f} B-Y {b:+.4f}")
    panels = [labelled((np.clip(p, 0, 1) * 255 + 0.5).astype(np.uint8), text) for p, text in zip((photo, default, kept), LABELS)]
    gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
    figure = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(figure).save(args.out, quality=QUALITY, subsampling=0, optimize=True)
    print(f"wrote {args.out} ({figure.shape[1]}x{figure.shape[0]}, {args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
