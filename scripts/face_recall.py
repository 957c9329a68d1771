"""Face detection recall and false hits on real old photos labelled by hand (``benchmarks/real_old_faces.json``).

Runs :func:`oldphoto.restore.face_detect.detect_faces` on each labelled photo (EXIF-oriented, as
``oldphoto.imageio.read_photo`` reads it; gray photos as three equal channels) with the settings ``restore`` uses
(the default ``DetectorSettings()``), or with others given by ``--min-face``, ``--max-side``, ``--smallest-face``,
``--thresholds``, ``--tilted-*`` (``--tilted-angles`` with no value: the upright search alone) and ``--rescue-*``
(``--rescue-refine-score -1``: no rescue of R-Net's rejects). ``restore``
detects on the globally restored photo; this script detects on the photo as scanned, so that the figures depend on
the detector alone.

A detection matches a label when their IoU is at least 0.3, or when the detection's centre lies inside the label's
box and their sizes (larger sides) are within 2x of each other. Matching is one-to-one, greedy by detection score
(best first, each taking the free label it overlaps most). A detection that matches no label is a false hit, unless
its centre lies in one of the photo's ``ignore`` regions or its larger side is under ``--min-label`` pixels (faces
that small were not labelled).

Prints recall overall, for small faces (larger side under 40 px), for covered faces (partly hidden or strongly
turned), for faces of at least 24 px (larger side), false hits in total and per photo, and the detection time in
seconds per megapixel. ``--misses`` also lists each missed label; ``--json PATH`` writes every detection and match.

Usage:
    OMP_NUM_THREADS=1 python scripts/face_recall.py [--labels benchmarks/real_old_faces.json]
        [--root ../shared/data/real_old] [--min-face 20] [--max-side 1600] [--smallest-face 24]
        [--thresholds 0.6 0.7 0.8] [--tilted-angles -30 30] [--tilted-min-face 40] [--tilted-threshold 0.95]
        [--tilted-pyramid-factor 0.6] [--rescue-refine-score 0.3 (-1: none)] [--rescue-threshold 0.95] [--threads N] [--misses] [--json /tmp/face_recall.json] [--canvas 3000] [--weights FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from oldphoto.imageio import read_photo, to_rgb
from oldphoto.registry import FACE_DETECTOR_MODEL, get_spec
from oldphoto.restore.face_detect import DetectorSettings, Face, detect_faces
from oldphoto.weights import load_network_from

ROOT = Path(__file__).resolve().parents[1]
MATCH_IOU = 0.3
SIZE_RATIO = 2.0
SMALL = 40
"""A label is small when its box's larger side is under this many pixels (as the labels' ``small`` flag)."""
LARGE_ENOUGH = 24


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def corners(box: list[float]) -> tuple[float, float, float, float]:
    """[x, y, w, h] -> (x1, y1, x2, y2)."""
    x, y, w, h = box
    return (x, y, x + w, y + h)


def centre_inside(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def side(box: tuple[float, float, float, float]) -> float:
    return max(box[2] - box[0], box[3] - box[1])


def matches(detection: tuple[float, float, float, float], label: tuple[float, float, float, float]) -> bool:
    """IoU >= 0.3, or the detection's centre inside the label with the sizes within 2x."""
    if iou(detection, label) >= MATCH_IOU:
        return True
    centre = ((detection[0] + detection[2]) / 2, (detection[1] + detection[3]) / 2)
    ratio = side(detection) / max(side(label), 1e-6)
    return centre_inside(centre, label) and 1 / SIZE_RATIO <= ratio <= SIZE_RATIO


def match(faces: list[Face], labels: list[tuple[float, float, float, float]]) -> list[int | None]:
    """For each detection, the index of the label it matches (or None): one-to-one, greedy by score."""
    taken: set[int] = set()
    result: list[int | None] = [None] * len(faces)
    for i in sorted(range(len(faces)), key=lambda k: -faces[k].score):
        free = [j for j in range(len(labels)) if j not in taken and matches(faces[i].box, labels[j])]
        if free:
            best = max(free, key=lambda j: iou(faces[i].box, labels[j]))
            taken.add(best)
            result[i] = best
    return result


def ratio(hit: int, total: int) -> str:
    return f"{hit}/{total} = {hit / total:.1%}" if total else f"{hit}/0"


def main() -> None:
    defaults = DetectorSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, default=ROOT / "benchmarks" / "real_old_faces.json")
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "real_old",
                        help="folder the labels' photo names are relative to")
    parser.add_argument("--min-face", type=int, default=defaults.min_face)
    parser.add_argument("--max-side", type=int, default=defaults.max_side)
    parser.add_argument("--smallest-face", type=int, default=defaults.smallest_face)
    parser.add_argument("--thresholds", type=float, nargs=3, default=defaults.thresholds, metavar=("PNET", "RNET", "ONET"))
    parser.add_argument("--tilted-angles", type=float, nargs="*", default=defaults.tilted_angles, metavar="DEGREES",
                        help="rotations of the tilted-face passes (none given: the upright search alone)")
    parser.add_argument("--tilted-min-face", type=int, default=defaults.tilted_min_face)
    parser.add_argument("--tilted-threshold", type=float, default=defaults.tilted_threshold)
    parser.add_argument("--tilted-pyramid-factor", type=float, default=defaults.tilted_pyramid_factor)
    parser.add_argument("--rescue-refine-score", type=float, default=defaults.rescue_refine_score,
                        help="R-Net score from which candidates under its threshold go on to O-Net (negative: none)")
    parser.add_argument("--rescue-threshold", type=float, default=defaults.rescue_threshold,
                        help="O-Net score such a candidate needs")
    parser.add_argument("--min-label", type=float, default=16.0,
                        help="unmatched detections whose larger side is under this are not false hits (not labelled)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--misses", action="store_true", help="list every missed label")
    parser.add_argument("--canvas", type=int, default=None, metavar="PIXELS",
                        help="place each photo at the top left of a grey PIXELS x PIXELS canvas: its faces keep their "
                        "size in pixels while the photo becomes a large scan (the search copy's scale then matters)")
    parser.add_argument("--json", type=Path, default=None, help="write detections and matches here")
    parser.add_argument("--weights", type=Path, default=None, help="detector weights to judge (default: the shipped ones)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = dataclasses.replace(
        defaults, min_face=args.min_face, max_side=args.max_side, smallest_face=args.smallest_face,
        thresholds=tuple(args.thresholds), tilted_angles=tuple(args.tilted_angles), tilted_min_face=args.tilted_min_face,
        tilted_threshold=args.tilted_threshold, tilted_pyramid_factor=args.tilted_pyramid_factor,
        rescue_refine_score=None if args.rescue_refine_score is None or args.rescue_refine_score < 0 else args.rescue_refine_score,
        rescue_threshold=args.rescue_threshold,
    )
    print(f"settings: {settings}")
    detector = load_network_from(get_spec(FACE_DETECTOR_MODEL), args.weights)
    data = json.loads(args.labels.read_text())

    labels_all: list[dict] = []
    found_all: list[bool] = []
    false_per_photo: list[tuple[str, int]] = []
    seconds = megapixels = 0.0
    records = []
    for entry in data["photos"]:
        rgb = np.ascontiguousarray(to_rgb(read_photo(args.root / entry["photo"]).pixels), dtype=np.float32)
        height, width = rgb.shape[:2]
        if (width, height) != (entry["width"], entry["height"]):
            raise SystemExit(f"{entry['photo']}: {width}x{height}, but labelled as {entry['width']}x{entry['height']}")
        if args.canvas and args.canvas > max(height, width):
            canvas = np.full((args.canvas, args.canvas, 3), 0.5, np.float32)
            canvas[:height, :width] = rgb
            rgb, (height, width) = canvas, canvas.shape[:2]
        started = time.perf_counter()
        faces = detect_faces(rgb, detector, settings)
        seconds += time.perf_counter() - started
        megapixels += width * height / 1e6

        labels = [corners(face["box"]) for face in entry["faces"]]
        ignore = [corners(box) for box in entry.get("ignore", [])]
        matched = match(faces, labels)
        hit = {j for j in matched if j is not None}
        false = []
        for face, j in zip(faces, matched):
            if j is not None:
                continue
            centre = ((face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2)
            if side(face.box) < args.min_label or any(centre_inside(centre, box) for box in ignore):
                continue
            false.append(face)
        labels_all += entry["faces"]
        found_all += [j in hit for j in range(len(labels))]
        false_per_photo.append((entry["photo"], len(false)))
        if args.misses:
            for j, face in enumerate(entry["faces"]):
                if j not in hit:
                    flags = [name for name in ("small", "covered") if face[name]]
                    print(f"  missed {entry['photo']} {face['box']} {' '.join(flags)}")
            for face in false:
                box = [round(v) for v in (face.box[0], face.box[1], face.box[2] - face.box[0], face.box[3] - face.box[1])]
                print(f"  false hit {entry['photo']} {box} score {face.score:.3f}")
        records.append({
            "photo": entry["photo"],
            "detections": [{"box": [round(v, 1) for v in face.box], "score": round(face.score, 4), "label": j}
                           for face, j in zip(faces, matched)],
            "missed": [j for j in range(len(labels)) if j not in hit],
            "false_hits": len(false),
        })

    def recall(select) -> str:
        chosen = [found for label, found in zip(labels_all, found_all) if select(label)]
        return ratio(sum(chosen), len(chosen))

    print(f"{len(data['photos'])} photos, {len(labels_all)} labelled faces")
    print(f"recall, all faces:          {recall(lambda label: True)}")
    print(f"recall, small (< {SMALL} px):     {recall(lambda label: label['small'])}")
    print(f"recall, covered/turned:     {recall(lambda label: label['covered'])}")
    print(f"recall, faces >= {LARGE_ENOUGH} px:     {recall(lambda label: max(label['box'][2:]) >= LARGE_ENOUGH)}")
    print(f"recall, >= {LARGE_ENOUGH} px, not covered: "
          f"{recall(lambda label: max(label['box'][2:]) >= LARGE_ENOUGH and not label['covered'])}")
    total_false = sum(count for _, count in false_per_photo)
    print(f"false hits: {total_false} ({total_false / len(false_per_photo):.2f} per photo)")
    for photo, count in false_per_photo:
        if count:
            print(f"  {photo}: {count}")
    print(f"detection: {seconds:.1f} s for {megapixels:.1f} MP = {seconds / megapixels:.2f} s per megapixel "
          f"({torch.get_num_threads()} threads)")
    if args.json:
        args.json.write_text(json.dumps({"settings": dataclasses.asdict(settings), "photos": records}, indent=1))


if __name__ == "__main__":
    main()
