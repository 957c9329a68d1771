"""fp32 against bf16 (or fp16) autocast, stage by stage: seconds per megapixel, speed-up and agreement.

Usage: python benchmarks/precision.py [--megapixels 1] [--threads 2] [--repeats 2] [--tile 1024]
       [--device cpu] [--precision bf16|fp16] [--images ../shared/data/val/kodak24]   (default: bf16 on the CPU, fp16 on CUDA/MPS)

The photo is four Kodak crops (``../shared/data/val/kodak24``, three with faces) in a 2x2 mosaic, resized to
``--megapixels`` (1 MP is their own size) and damaged with the ``bopbtl`` preset (seed 0), so that there are
scratches to find; without the Kodak set, a smooth synthetic image. Each stage runs with the shipped weights
(random ones where none are shipped: speed does not depend on them, agreement does) at fp32 and at the reduced
precision on the same input. Agreement is PSNR in dB between the two outputs for image stages (for face refinement over
the pixels it changed), and IoU of the two masks (at the registry threshold) for scratch detection. The later
stages get the same fp32 scratch mask at both precisions; face detection is float32 at every precision (see
``detect_faces``), so both runs refine the same faces. bf16 on a CPU without native bfloat16 is emulated: expect
it slower there. On a shared machine, take several --repeats (the best of each is kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from oldphoto.degrade.pipeline import degrade_image
from oldphoto.degrade.presets import get_preset
from oldphoto.errors import DeviceError, OldPhotoError
from oldphoto.evaluation.metrics import psnr
from oldphoto.imageio import load_rgb
from oldphoto.registry import (
    DETAIL_MODEL,
    FACE_DETECTOR_MODEL,
    FACE_MODEL,
    MAPPING_MODEL,
    RESTORE_UNET_MODEL,
    SCRATCH_MODEL,
    VAE_CLEAN_MODEL,
    VAE_OLD_MODEL,
    get_spec,
)
from oldphoto.restore.faces import refine_faces
from oldphoto.restore.global_stage import restore_global, restore_global_direct
from oldphoto.restore.scratches import detect_scratches, detection_settings
from oldphoto.runtime import DEFAULT_TILE, Runtime, cpu_has_native_bf16, make_runtime
from oldphoto.weights import LoadedModel, load_network

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "val" / "kodak24"
MOSAIC = ("kodim04.png", "kodim15.png", "kodim18.png", "kodim05.png")  # three faces, 500x500 crops each


CPU = make_runtime("cpu")
"""Only for placing networks as ``restore`` does (device, layout); the runs use their own runtimes."""


def network(name: str) -> tuple[torch.nn.Module, str]:
    spec = get_spec(name)
    try:
        return CPU.place(load_network(spec), spec.contract), "shipped"
    except OldPhotoError:
        return CPU.place(spec.build().eval(), spec.contract), "random"


def sample(megapixels: float, folder: Path = KODAK) -> tuple[np.ndarray, str]:
    """(H, W, 3) float32 photo of about ``megapixels``, damaged, and where it came from."""
    side = int(round(np.sqrt(megapixels * 1e6)))
    if all((folder / name).exists() for name in MOSAIC):
        tiles = [load_rgb(folder / name) for name in MOSAIC]
        mosaic = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)
        if mosaic.shape[:2] != (side, side):
            mosaic = cv2.resize(mosaic, (side, side), interpolation=cv2.INTER_AREA)
        clean, origin = mosaic, "Kodak 2x2 " + "+".join(MOSAIC)
    else:
        y, x = np.mgrid[0:side, 0:side].astype(np.float32)
        clean = np.stack([0.5 + 0.3 * np.sin(x / (9 + 4 * c)) * np.cos(y / (13 + 3 * c)) for c in range(3)], axis=2)
        origin = "synthetic"
    damaged = degrade_image(np.clip(clean, 0, 1).astype(np.float32), get_preset("bopbtl"), np.random.default_rng(0)).degraded
    return damaged, f"{origin}, bopbtl damage (seed 0)"


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a > 0.5, b > 0.5).sum()
    return 1.0 if union == 0 else float(np.logical_and(a > 0.5, b > 0.5).sum() / union)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megapixels", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="best of N timed runs per stage and precision")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=Path, default=KODAK, help="folder holding the Kodak crops of the mosaic")
    parser.add_argument("--precision", choices=("bf16", "fp16"), default=None, help="the reduced precision compared")
    args = parser.parse_args()

    fp32 = make_runtime(args.device, "fp32", tile=args.tile, threads=args.threads)
    name = args.precision or ("bf16" if fp32.device.type == "cpu" else "fp16")
    try:
        reduced = make_runtime(args.device, name, tile=args.tile, threads=args.threads)
    except DeviceError as error:  # e.g. no native bf16: measure the emulated path anyway
        print(f"note: {error}")
        reduced = dataclasses.replace(fp32, precision=name)
    image, origin = sample(args.megapixels, args.images)
    mp = image.shape[0] * image.shape[1] / 1e6
    names = (SCRATCH_MODEL, VAE_OLD_MODEL, MAPPING_MODEL, VAE_CLEAN_MODEL, DETAIL_MODEL, RESTORE_UNET_MODEL, FACE_DETECTOR_MODEL, FACE_MODEL)
    loaded = {name: network(name) for name in names}
    nets = {name: module for name, (module, _) in loaded.items()}
    print(f"{image.shape[1]}x{image.shape[0]} ({mp:.2f} MP): {origin}")
    print(f"{fp32.device}; native bf16 on this CPU: {cpu_has_native_bf16()}; {torch.get_num_threads()} threads, tile {args.tile}")
    print("weights: " + ", ".join(f"{name} {origin}" for name, (_, origin) in loaded.items()))

    scratch_spec = get_spec(SCRATCH_MODEL)
    threshold, dilation = detection_settings(scratch_spec)
    detector = LoadedModel(scratch_spec, nets[SCRATCH_MODEL])  # CPU runtimes only here: no placement needed
    global_overlap = max(get_spec(name).contract.min_tile_overlap for name in (MAPPING_MODEL, DETAIL_MODEL))
    ablation_overlap = get_spec(RESTORE_UNET_MODEL).contract.min_tile_overlap
    mask = detect_scratches(image, detector, fp32, threshold=threshold, dilation=dilation)  # the later stages get the same (fp32) mask at both precisions, so only their own precision differs
    face_spec = get_spec(FACE_MODEL)

    stages: dict[str, Callable[[Runtime], np.ndarray]] = {
        f"scratch detection ({SCRATCH_MODEL}, threshold {threshold:g})": lambda rt: detect_scratches(image, detector, rt, threshold=threshold, dilation=dilation),
        "global (triplet + detail fusion)": lambda rt: restore_global(
            image, mask, nets[VAE_OLD_MODEL], nets[MAPPING_MODEL], nets[VAE_CLEAN_MODEL], rt, min_overlap=global_overlap,
            detail=nets[DETAIL_MODEL],
        ),
        f"global ({RESTORE_UNET_MODEL})": lambda rt: restore_global_direct(image, mask, nets[RESTORE_UNET_MODEL], rt, min_overlap=ablation_overlap),
        "face refinement (detect + refine)": lambda rt: refine_faces(
            image, nets[FACE_DETECTOR_MODEL], LoadedModel(face_spec, nets[FACE_MODEL]), rt, original=image
        ).pixels,
    }
    rows = []
    for stage, run in stages.items():
        outputs: list[np.ndarray] = [np.zeros(0), np.zeros(0)]
        best = [float("inf"), float("inf")]
        # Warm-up first (oneDNN picks its kernels on the first call of each shape), then the two precisions in
        # turn, best of --repeats each, so that load from other work on the machine hits both alike.
        for attempt in range(args.repeats + 1):
            for index, runtime in enumerate((fp32, reduced)):
                # tile_apply and the face refiner apply the runtime's autocast themselves; this outer context also
                # covers a stage that does not pass precision= to tile_apply yet (and changes nothing for the others).
                started = time.perf_counter()
                with runtime.autocast():
                    outputs[index] = run(runtime)
                if attempt:
                    best[index] = min(best[index], (time.perf_counter() - started) / mp)
        if stage.startswith("scratch"):
            marked = f"{100 * outputs[0].mean():.2f}% / {100 * outputs[1].mean():.2f}% marked"
            agreement = f"mask IoU {mask_iou(*outputs):.4f} ({marked})"
        elif stage.startswith("face"):
            # Refinement changes only the faces: PSNR over the whole photo would mostly count untouched pixels.
            changed = np.any((outputs[0] != image) | (outputs[1] != image), axis=2)
            inside = psnr(outputs[0][changed], outputs[1][changed]) if changed.any() else float("inf")
            agreement = f"PSNR {inside:.1f} dB over the {changed.sum():,} refined pixels"
        else:
            agreement = f"PSNR {psnr(outputs[0], outputs[1]):.1f} dB"
        rows.append((stage, best[0], best[1], best[0] / best[1], agreement))

    print()
    print(f"| stage | s/MP fp32 | s/MP {name} | speed-up | agreement fp32 vs {name} |")
    print("|---|---:|---:|---:|---|")
    for stage, a, b, speedup, agreement in rows:
        print(f"| {stage} | {a:.3f} | {b:.3f} | {speedup:.2f}x | {agreement} |")


if __name__ == "__main__":
    main()
