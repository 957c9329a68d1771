"""Face-stage fidelity on sharp, undamaged faces: `restore` against `restore --no-faces`, inside each face.

For every photo under the given folders, restores it with and without the face stage (the installed models; the gate
from ``--gate`` if given, none with ``--no-gate``), and for each refined face reports, inside its detected box:
PSNR of the face stage's result against the ``--no-faces`` result, the share of the Laplacian variance of the box's
centre half that the face stage keeps (targets: >= 32 dB and >= 0.9), the full pipeline's PSNR against the input, and
the gate's estimated degradation. Prints per-folder means.

Usage: python scripts/face_fidelity.py ../shared/data/faces/ffhq-val /tmp/faces-val/utk [--gate FILE | --no-gate]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from oldphoto.imageio import is_image_path, read_photo, to_luminance, to_rgb
from oldphoto.registry import FACE_GATE_MODEL, get_spec
from oldphoto.restore.pipeline import RestoreOptions, Restorer
from oldphoto.runtime import make_runtime
from oldphoto.weights import load_model


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def laplacian_variance(rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(to_luminance(rgb)[:, :, 0].astype(np.float32), cv2.CV_32F).var())


def face_regions(box: tuple[float, float, float, float]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(the box, its centre half) as slices of the photo, for a detected face box (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(x1, 0), max(y1, 0)
    h, w = y2 - y1, x2 - x1
    return (slice(y1, y2), slice(x1, x2)), (slice(y1 + h // 4, y2 - h // 4), slice(x1 + w // 4, x2 - w // 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    gates = parser.add_mutually_exclusive_group()
    gates.add_argument("--gate", help="face-gate safetensors to use instead of the installed one")
    gates.add_argument("--no-gate", action="store_true", help="blend every face at full strength (no gate)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    runtime = make_runtime("cpu", args.precision, threads=args.threads)
    with_faces = Restorer(runtime, RestoreOptions(face_gate=not args.no_gate))
    if args.gate:
        with_faces.models[FACE_GATE_MODEL] = load_model(get_spec(FACE_GATE_MODEL), runtime, args.gate)
    without = Restorer(runtime, RestoreOptions(faces=False))
    for folder in args.folders:
        rows = []
        for path in sorted(p for p in folder.iterdir() if is_image_path(p)):
            photo = to_rgb(read_photo(path).pixels)
            full, plain = with_faces.restore(photo), without.restore(photo).pixels
            for face in full.faces or []:
                if not face.refined:
                    continue
                box, centre = face_regions(face.face.box)
                rows.append(
                    (
                        psnr(full.pixels[box], plain[box]),
                        laplacian_variance(full.pixels[centre]) / max(laplacian_variance(plain[centre]), 1e-12),
                        psnr(full.pixels[box], photo[box]),
                        face.degradation if face.degradation is not None else float("nan"),
                    )
                )
        if not rows:
            print(f"{folder}: no refined face")
            continue
        table = np.array(rows)
        print(
            f"{folder}: {len(rows)} faces; face stage vs --no-faces {table[:, 0].mean():.2f} dB (min {table[:, 0].min():.2f}, "
            f"median {np.median(table[:, 0]):.2f}), Laplacian kept "
            f"{table[:, 1].mean():.3f} (min {table[:, 1].min():.3f}); full pipeline vs input {table[:, 2].mean():.2f} dB; "
            f"gate degradation mean {np.nanmean(table[:, 3]):.3f} (max {np.nanmax(table[:, 3]) if not np.all(np.isnan(table[:, 3])) else float('nan'):.3f})"
        )


if __name__ == "__main__":
    main()
