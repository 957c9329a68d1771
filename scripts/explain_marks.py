"""Why the scratch detection keeps or drops each mark of one photo: area, thickness, rules and verifier score.

Runs the detector on the photo as ``oldphoto restore --no-global --no-faces`` does (EXIF-oriented, the registry's
threshold, tiles and precision), takes the connected components of its mask, and prints for each one that overlaps
``--box`` (default: the whole photo), largest first: its pixel count (in the box and in all), its bounding box, its
mean thickness (area over the longer box side), whether the straight-line rule takes it (it then needs the rule's
score) or it is a thin line kept unjudged, the verifier's score and the decision. A labelled damage box that a
change of weights "loses" may hold one border strip near the threshold and a crack dropped by both; this shows which.

Usage: python scripts/explain_marks.py ../shared/data/real_old/.../GreatGrandparentsIrelandEarly1900s.png \
           --box 26 0 447 446 [--weights W] [--verifier-weights V] [--min-score S] [--count 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from detection_args import add_detection_arguments, describe, detection_from_args

from oldphoto.errors import ImageReadError
from oldphoto.imageio import read_photo, to_rgb
from oldphoto.restore.scratches import damage_scores, judge_marks, mask_components, scratch_probability


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--box", type=int, nargs=4, metavar=("X", "Y", "W", "H"), help="only marks overlapping this box")
    parser.add_argument("--count", type=int, default=20, help="print at most this many marks, largest in the box first")
    add_detection_arguments(parser)
    args = parser.parse_args()
    detection, runtime = detection_from_args(parser, args)
    if detection.verifier is None:
        parser.error("--no-verify: every mark is kept, there is nothing to explain")
    print(describe(detection, args, runtime))

    try:
        pixels = to_rgb(read_photo(args.photo).pixels)
    except ImageReadError as error:
        parser.error(str(error))
    with torch.inference_mode():
        probability = scratch_probability(pixels, detection.detector, runtime)
        components = mask_components(probability > detection.threshold)
        verdicts = judge_marks(pixels, probability, components, detection.verifier, detection.rules)
        # Thin lines are kept unjudged (unless the sparse-damage rule judged them); their score is shown all the same,
        # to see what judging them would do.
        scores = verdicts.scores.copy()
        unscored = np.flatnonzero(np.isnan(scores))
        scores[unscored] = damage_scores(pixels, probability, components, detection.verifier, unscored)
    lines, kept = verdicts.lines, verdicts.kept

    x, y, w, h = args.box if args.box else (0, 0, pixels.shape[1], pixels.shape[0])
    inside = np.bincount(components.labels[max(y, 0) : y + h, max(x, 0) : x + w].ravel(), minlength=len(components) + 1)[1:]
    order = [k for k in np.argsort(-inside, kind="stable") if inside[k] > 0]
    if verdicts.sparse:
        rule = detection.rules.sparse
        print(f"the photo shows little damage: marks need {rule.min_score:g}, thin lines {rule.line_score:g} (sparse-damage rule)")
    print(f"{len(order)} marks overlap the box; kept {int(inside[kept].sum())} of {int(inside.sum())} marked px there")
    print(f"{'px in box':>9} {'px':>6} {'box x,y,w,h':>18} {'thick':>5} {'rule':>10} {'score':>6} {'needs':>5}  decision")
    for k in order[: args.count]:
        why = "line rule" if lines[k] else ("thin line" if verdicts.thin[k] else "")
        box = ",".join(str(int(v)) for v in components.boxes[k])
        thickness = components.areas[k] / max(int(components.boxes[k, 2:].max()), 1)
        need = "–" if verdicts.thin[k] and not verdicts.sparse else f"{verdicts.needed[k]:.3f}"
        print(
            f"{inside[k]:9d} {components.areas[k]:6d} {box:>18} {thickness:5.2f} {why:>10} {scores[k]:6.3f} {need:>5}  "
            f"{'kept' if kept[k] else 'dropped'}{' (colourful)' if verdicts.colourful[k] else ''}"
        )


if __name__ == "__main__":
    main()
