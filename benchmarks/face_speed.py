"""Face stage: detection time per photo and refinement time per face (align + refine + tone match + paste;
plus aligning the condition crop when the refiner is conditioned on the photo before global restoration, and the
face gate's estimate when it is shipped).

Usage: python benchmarks/face_speed.py PHOTO... [--threads 2]
Speed does not depend on the refiner's weight values, so random weights are used when none are shipped.
"""

from __future__ import annotations

import argparse
import time

from oldphoto.errors import OldPhotoError
from oldphoto.imageio import load_rgb
from oldphoto.registry import FACE_DETECTOR_MODEL, FACE_GATE_MODEL, FACE_MODEL, get_spec
from oldphoto.restore.face_detect import detect_faces
from oldphoto.restore.faces import refine_faces
from oldphoto.runtime import make_runtime
from oldphoto.weights import LoadedModel, load_network


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    runtime = make_runtime("cpu", threads=args.threads)
    detector = load_network(get_spec(FACE_DETECTOR_MODEL))
    spec = get_spec(FACE_MODEL)
    try:
        refiner, origin = load_network(spec), "shipped"
    except OldPhotoError:
        refiner, origin = spec.build().eval(), "random"
    gate_spec = get_spec(FACE_GATE_MODEL)
    gate = load_network(gate_spec) if gate_spec.shipped else None
    print(f"{spec.name}: {sum(p.numel() for p in refiner.parameters()):,} parameters ({origin} weights), {runtime.describe()}")
    print(f"{gate_spec.name}: {'shipped' if gate is not None else 'none (every face at full strength)'}")
    total_faces = total_refine = total_detection = total_megapixels = 0.0
    for path in args.photos:
        image = load_rgb(path)
        started = time.perf_counter()
        faces = detect_faces(image, detector)
        detection = time.perf_counter() - started
        started = time.perf_counter()
        refine_faces(
            image, detector, LoadedModel(spec, refiner), runtime, original=image, gate=None if gate is None else LoadedModel(gate_spec, gate)
        )
        whole = time.perf_counter() - started
        refine = max(0.0, whole - detection)
        total_faces += len(faces)
        total_refine += refine
        per_face = refine / len(faces) if faces else float("nan")
        megapixels = image.shape[0] * image.shape[1] / 1e6
        total_detection += detection
        total_megapixels += megapixels
        print(f"{path}: {image.shape[1]}x{image.shape[0]}, {len(faces)} faces, detection {detection:.2f} s ({detection / megapixels:.3f} s/MP), {per_face:.3f} s per face")
    if total_faces:
        print(f"overall: {total_refine / total_faces:.3f} s per face (align + refine + gate + paste, after detection)")
    print(f"detection: {total_detection / max(total_megapixels, 1e-9):.3f} s/MP over {total_megapixels:.1f} MP")


if __name__ == "__main__":
    main()
