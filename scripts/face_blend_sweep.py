"""Sweep the face gate's blend ramps: gains on degraded faces against detail kept on sharp ones.

Runs the installed global stage once per photo (faces off), then the installed refiner and gate once per face, and
scores each blend given on the command line by pasting only (see :class:`oldphoto.restore.faces.GateBlend`):

- degraded pair sets (``oldphoto degrade`` folders with ``degraded/`` and ``clean/``): mean PSNR / SSIM gain of
  ``restore`` over the global stage (as ``oldphoto evaluate -m global -m restore`` reports them, at fp32);
- sharp photo folders: the share of the Laplacian variance of each face box's centre half that the face stage keeps
  (as ``scripts/face_fidelity.py`` measures it; target >= 0.9).

A blend is ``COARSE_LOW,COARSE_HIGH,FINE_LOW,FINE_HIGH`` (need ramps of the correction's two parts) or ``LOW,HIGH``
(one ramp for the whole correction, the blend before the split). Each face's crops are made once, by ``refine_faces``
as ``restore`` runs it; a blend then only pastes them into the global stage's output. The registry's ramps
were chosen with it (the face gate's model card), so the sets it is run on are no longer held out for that choice:
check a choice on a fresh damage draw (``oldphoto degrade ... --seed 1``).

Usage: python scripts/face_blend_sweep.py --pairs /tmp/faceset-bopbtl-v1 --pairs /tmp/faceset-default-v1 \\
    --sharp /tmp/faces-val/utk --blend 0.15,0.7 --blend 0.15,0.4,0.3,0.8 [--fine-sigma 1.0]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from face_fidelity import face_regions, laplacian_variance  # scripts/ is on the path when this runs as a script

from oldphoto.evaluation.metrics import psnr, ssim
from oldphoto.imageio import is_image_path, load_rgb, read_photo, to_rgb
from oldphoto.registry import FACE_DETECTOR_MODEL, FACE_GATE_MODEL, FACE_MODEL, get_spec
from oldphoto.restore.face_align import AlignedFace, similarity_to_template
from oldphoto.restore.faces import GateBlend, paste_correction, refine_faces
from oldphoto.restore.pipeline import RestoreOptions, Restorer
from oldphoto.runtime import make_runtime
from oldphoto.weights import load_model, load_network


@dataclass
class FaceCrops:
    box: tuple[float, float, float, float]
    aligned: AlignedFace
    refined: np.ndarray
    need: float


@dataclass
class Photo:
    restored: np.ndarray
    """The global stage's output, (H, W, 3) in [0, 1]."""
    clean: np.ndarray | None
    faces: list[FaceCrops]


def blend_of(numbers: tuple[float, ...], fine_sigma: float) -> GateBlend:
    """The blend ``--blend`` gives; one ramp is the same ramp for both parts (the whole correction at one strength)."""
    coarse = (numbers[0], numbers[1])
    return GateBlend(coarse, coarse if len(numbers) == 2 else (numbers[2], numbers[3]), fine_sigma)


def with_faces(photo: Photo, blend: GateBlend) -> np.ndarray:
    result = photo.restored
    for face in reversed(photo.faces):  # smallest first, as refine_faces pastes them
        coarse, fine = blend.strengths(face.need)
        result = paste_correction(result, face.aligned, face.refined, coarse, fine, blend)
    return result


def load_set(folder: Path, restorer: Restorer, models: dict, runtime) -> list[Photo]:
    """The global stage's output of every photo (or degraded pair) in ``folder`` and each face's crops, refined and
    judged by the gate as ``refine_faces`` does (which also pastes them at the registry's blend, unused here)."""
    if (folder / "degraded").is_dir():
        pairs = [(load_rgb(path), load_rgb(folder / "clean" / path.name)) for path in sorted((folder / "degraded").iterdir())]
    else:
        pairs = [(to_rgb(read_photo(path).pixels), None) for path in sorted(p for p in folder.iterdir() if is_image_path(p))]
    photos = []
    for original, clean in pairs:
        restored = restorer.restore(original).pixels
        records = refine_faces(restored, models["detector"], models["refiner"], runtime, original=original, gate=models["gate"]).records
        faces = [
            FaceCrops(
                record.face.box,
                AlignedFace(record.cropped, similarity_to_template(record.face.landmarks)),
                record.restored,
                record.degradation,
            )
            for record in records
            if record.refined
        ]
        photos.append(Photo(restored, clean, faces))
    return photos


def detail_kept(photo: Photo, result: np.ndarray) -> list[float]:
    """Per face, the share of the Laplacian variance of its box's centre half that ``result`` keeps."""
    kept = []
    for face in photo.faces:
        _, centre = face_regions(face.box)
        kept.append(laplacian_variance(result[centre]) / max(laplacian_variance(photo.restored[centre]), 1e-12))
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", action="append", type=Path, default=[], help="a degraded pair set (repeatable)")
    parser.add_argument("--sharp", action="append", type=Path, default=[], help="a folder of sharp photos (repeatable)")
    parser.add_argument("--blend", action="append", required=True, help="LOW,HIGH or COARSE_LOW,COARSE_HIGH,FINE_LOW,FINE_HIGH")
    registry_blend = GateBlend.of(get_spec(FACE_GATE_MODEL))
    parser.add_argument("--fine-sigma", type=float, default=registry_blend.fine_sigma if registry_blend else 1.0)
    args = parser.parse_args()
    blends = [tuple(float(v) for v in text.split(",")) for text in args.blend]
    if any(len(numbers) not in (2, 4) for numbers in blends):
        parser.error("--blend takes 2 or 4 comma-separated numbers")
    runtime = make_runtime("cpu", "fp32", threads=1)
    restorer = Restorer(runtime, RestoreOptions(faces=False))
    models = {
        "detector": load_network(get_spec(FACE_DETECTOR_MODEL)),
        "refiner": load_model(get_spec(FACE_MODEL), runtime),
        "gate": load_model(get_spec(FACE_GATE_MODEL), runtime),
    }
    sets = {folder: load_set(folder, restorer, models, runtime) for folder in (*args.pairs, *args.sharp)}
    for numbers in blends:
        blend, figures = blend_of(numbers, args.fine_sigma), []
        for folder, photos in sets.items():
            if folder in args.pairs:
                gains = []
                for photo in photos:
                    result = with_faces(photo, blend)
                    gains.append((psnr(photo.clean, result) - psnr(photo.clean, photo.restored), ssim(photo.clean, result) - ssim(photo.clean, photo.restored)))
                mean = np.mean(gains, axis=0)
                figures.append(f"{folder.name} {mean[0]:+.4f} dB / {mean[1]:+.4f}")
            else:
                kept = [value for photo in photos for value in detail_kept(photo, with_faces(photo, blend))]
                figures.append(f"{folder.name} kept {np.mean(kept):.4f}")
        print(f"blend {','.join(f'{v:g}' for v in numbers)}: " + "; ".join(figures), flush=True)


if __name__ == "__main__":
    main()
