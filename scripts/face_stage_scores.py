"""Where the face detector loses the labelled faces: each label's best P-Net, R-Net and O-Net score.

Runs the cascade of :mod:`oldphoto.restore.face_detect` on each photo of ``benchmarks/real_old_faces.json`` with
every stage's threshold near zero (P-Net 0.05), and for each labelled face takes the candidates that match it (the
matching rule of ``face_recall.py``): the best P-Net score among the proposals, the best R-Net score among them, and
the best O-Net score among the candidates whose final box matches. Prints the covered/turned faces (or all with
``--all``) and how many fail each stage's threshold. Photos must be searched at full size (at most 1,600 px).

Usage: OMP_NUM_THREADS=1 python scripts/face_stage_scores.py [--weights FILE] [--all]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from face_recall import ROOT, corners, matches

from oldphoto.imageio import read_photo, to_rgb
from oldphoto.registry import FACE_DETECTOR_MODEL, get_spec
from oldphoto.restore.face_detect import DetectorSettings, _crops, _proposals, _regress, _square
from oldphoto.weights import load_network_from


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, default=ROOT / "benchmarks" / "real_old_faces.json")
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "real_old")
    parser.add_argument("--weights", type=Path, default=None, help="detector weights (default: the shipped ones)")
    parser.add_argument("--all", action="store_true", help="print every label, not only the covered or turned ones")
    args = parser.parse_args()
    network = load_network_from(get_spec(FACE_DETECTOR_MODEL), args.weights)
    thresholds = DetectorSettings().thresholds
    search = DetectorSettings(thresholds=(0.05, 0.0, 0.0))
    rows = []
    with torch.inference_mode():
        for entry in json.loads(args.labels.read_text())["photos"]:
            rgb = np.ascontiguousarray(to_rgb(read_photo(args.root / entry["photo"]).pixels), dtype=np.float32)
            if search.search_scale(*rgb.shape[:2]) != 1.0:
                raise SystemExit(f"{entry['photo']} is searched on a reduced copy; this script needs full-size photos")
            found = _proposals(rgb, network, search)
            proposed = _square(_regress(found[:, :4], found[:, 5:9]))
            refine, offsets = network.rnet(_crops(rgb, proposed, 24))
            refined = _square(_regress(proposed, offsets.numpy()))
            output, offsets, _ = network.onet(_crops(rgb, refined, 48))
            final = _regress(refined, offsets.numpy())
            for face in entry["faces"]:
                label = corners(face["box"])
                near = [i for i in range(len(proposed)) if matches(tuple(proposed[i]), label)]
                near_final = [i for i in range(len(final)) if matches(tuple(final[i]), label)]
                scores = (
                    max((found[i, 4] for i in near), default=0.0),
                    max((float(refine[i, 1]) for i in near), default=0.0),
                    max((float(output[i, 1]) for i in near_final), default=0.0),
                )
                rows.append((entry["photo"], face, scores))
    shown = [row for row in rows if args.all or row[1]["covered"]]
    for photo, face, (p, r, o) in shown:
        flags = " ".join(name for name in ("small", "covered") if face[name])
        print(f"{photo:50s} {str(face['box']):22s} P {p:.2f} R {r:.2f} O {o:.2f}  {flags}")
    for stage, column, threshold in zip(("P-Net", "R-Net", "O-Net"), range(3), thresholds):
        failing = sum(scores[column] < threshold for _, _, scores in shown)
        print(f"{stage}: best score under its threshold {threshold} for {failing} of {len(shown)} faces")


if __name__ == "__main__":
    main()
