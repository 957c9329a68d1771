"""Scratch-detector precision on real old photos: how much of each hand-labelled mask component it still marks.

Reads the labelled components (``{"components": [{"photo", "box": [x, y, w, h], "label": "content"|"damage"|
"unsure", "what"}]}``), finds each photo under ``--real`` by file name (or by its path under ``--real``), runs
the detector on the whole photo as ``oldphoto restore --no-global --no-faces`` does (EXIF-oriented, the registry's
threshold and dilation, the same tiles and precision) and prints, per box, the share of its pixels marked and the
marked pixel count; then a summary: how many content boxes are more than 5% marked, their mean marked share, and the damage boxes' marked
counts. With ``--baseline-json`` it also prints the share of a previous run's marked damage pixels this run keeps
(goal: at least half).

Usage: python scripts/real_label_precision.py --json /tmp/real_labels_baseline.json
       python scripts/real_label_precision.py --weights runs/scratch/best.safetensors [--threshold 0.7] \
           --baseline-json /tmp/real_labels_baseline.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from detection_args import add_detection_arguments, colour_rule_record, describe, detection_from_args, line_rule_record
from detection_args import sparse_rule_record

from oldphoto.imageio import read_photo, to_rgb

CONTENT_LIMIT = 0.05
"""A content box counts as a false hit when more than this share of its pixels is marked."""
RETAIN_GOAL = 0.5
"""Share of the baseline's marked damage pixels a new detector should keep."""


def box_key(entry: dict) -> str:
    x, y, w, h = entry["box"]
    return f"{entry['photo']}@{x},{y},{w},{h}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", default="../shared/data/real_labels/real_old_mask_components.json")
    parser.add_argument("--real", default="../shared/data/real_old", help="folder searched (recursively) for the photos")
    add_detection_arguments(parser)
    parser.add_argument("--json", help="write per-box results and the summary here")
    parser.add_argument("--baseline-json", help="a previous run's --json: report the share of its marked damage pixels kept")
    args = parser.parse_args()

    components = json.loads(Path(args.labels).read_text())["components"]
    names = {entry["photo"] for entry in components}
    found: dict[str, Path] = {}
    ambiguous: set[str] = set()
    for path in sorted(Path(args.real).rglob("*")):
        # A label names its photo by file name, or by its path under --real where names repeat across folders.
        for key in (path.name, path.relative_to(args.real).as_posix()):
            if key in names and path.is_file():
                if key in found and found[key] != path:
                    ambiguous.add(key)
                found.setdefault(key, path)
    if ambiguous:
        raise SystemExit(
            f"labelled photos named by a file name that repeats under {args.real}: {', '.join(sorted(ambiguous))}; "
            "name them by their path under it"
        )
    missing = sorted(names - found.keys())
    if missing:
        raise SystemExit(f"{len(missing)} labelled photos not found under {args.real}: {', '.join(missing)}")

    detection, runtime = detection_from_args(parser, args)
    print(describe(detection, args, runtime))

    by_photo: dict[str, list[int]] = defaultdict(list)
    for index, entry in enumerate(components):
        by_photo[entry["photo"]].append(index)
    rows: list[dict] = [{}] * len(components)
    for name in sorted(by_photo):
        photo = read_photo(found[name])
        with torch.inference_mode():
            mask = detection.mask(to_rgb(photo.pixels), runtime) > 0
        for index in by_photo[name]:
            entry = components[index]
            x, y, w, h = entry["box"]
            region = mask[max(y, 0) : y + h, max(x, 0) : x + w]
            marked = int(region.sum())
            rows[index] = {
                "index": index,
                "photo": name,
                "box": [x, y, w, h],
                "label": entry["label"],
                "what": entry.get("what", ""),
                "pixels": int(region.size),
                "marked": marked,
                "fraction": marked / max(region.size, 1),
                "photo_fraction": float(mask.mean()),
            }

    print(f"\n{'#':>3} {'label':7} {'photo':40} {'box':>20} {'marked':>7} {'pixels':>8}  what")
    for row in rows:
        box = ",".join(map(str, row["box"]))
        print(
            f"{row['index']:3d} {row['label']:7} {row['photo'][:40]:40} {box:>20} {row['fraction']:7.1%} "
            f"{row['marked']:8d}  {row['what']}"
        )

    content = [row for row in rows if row["label"] == "content"]
    damage = [row for row in rows if row["label"] == "damage"]
    unsure = [row for row in rows if row["label"] == "unsure"]
    over = sum(row["fraction"] > CONTENT_LIMIT for row in content)
    mean_content = float(np.mean([row["fraction"] for row in content])) if content else 0.0
    summary = {
        "content_boxes": len(content),
        "content_over_5pct": int(over),
        "content_mean_fraction": mean_content,
        "damage_marked": {box_key(row): row["marked"] for row in damage},
        "damage_marked_total": int(sum(row["marked"] for row in damage)),
        "unsure_marked": {box_key(row): row["marked"] for row in unsure},
    }
    print(f"\ncontent boxes over {CONTENT_LIMIT:.0%} marked: {over} of {len(content)}; mean marked share {mean_content:.1%}")
    for row in damage:
        print(f"damage {row['photo']} ({row['what']}): {row['marked']} px marked ({row['fraction']:.1%} of the box)")
    for row in unsure:
        print(f"unsure {row['photo']} ({row['what']}): {row['marked']} px marked ({row['fraction']:.1%} of the box)")

    if args.baseline_json:
        baseline = {box_key(row): row for row in json.loads(Path(args.baseline_json).read_text())["boxes"]}
        before = after = 0
        for row in damage:
            old = baseline.get(box_key(row))
            if old is None:
                print(f"damage {row['photo']}: not in the baseline {args.baseline_json}")
                continue
            before += old["marked"]
            after += row["marked"]
            share = row["marked"] / old["marked"] if old["marked"] else float("nan")
            print(f"damage {row['photo']}: {row['marked']} px now vs {old['marked']} in the baseline ({share:.1%} kept)")
        retained = after / before if before else float("nan")
        verdict = "meets" if retained >= RETAIN_GOAL else "misses"
        print(f"damage retained: {after} of {before} baseline px = {retained:.1%} ({verdict} the goal of {RETAIN_GOAL:.0%})")
        summary["damage_retained"] = retained

    if args.json:
        record = {
            "weights": args.weights or "installed",
            "threshold": detection.threshold,
            "dilation": detection.dilation,
            "verifier": None if detection.verifier is None else (args.verifier_weights or "installed"),
            "min_score": detection.rules.min_score,
            "keep_width": detection.rules.keep_width,
            "straight_lines": line_rule_record(detection),
            "colour_rule": colour_rule_record(detection),
            "sparse_rule": sparse_rule_record(detection),
            "runtime": runtime.describe(),
            "summary": summary,
            "boxes": rows,
        }
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
