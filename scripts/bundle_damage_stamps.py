"""Copy the subset of real damage stamps that ships inside the package (src/oldphoto/degrade/stamps/).

Rule: from every category (sub-folder) of SOURCE, the PER_CATEGORY stamps at evenly spaced positions of its
file list sorted by name (position ``i * n // PER_CATEGORY``: the first, then every n/PER_CATEGORY-th), so the
subset spans each category's whole numbered range. Files are copied byte for byte: the bundled stamps are
exactly the originals (400 x 400 RGBA), so a set made with the bundled stamps is the set that ``--damage-dir``
on a folder of those same files would make. The source's LICENSE (MIT, copyright notice) is copied beside them,
and a NOTICE names the source and this rule.

Rerunning it replaces the bundled folder. Usage: python scripts/bundle_damage_stamps.py [SOURCE] [--per-category N]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

PER_CATEGORY = 10
"""Stamps kept per category: 10 of each of the 10 categories is about 2.5 MB."""

MAX_BYTES = 3_000_000
"""The bundle must stay small (issue 19: a few MB at most); the script refuses to write more."""

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "damage"
TARGET = REPO / "src" / "oldphoto" / "degrade" / "stamps"

NOTICE = """\
Damage stamps bundled with oldphoto
===================================

A subset of the RGBA damage stamps of the public repository daniela997/FilmDamageSimulator (folder
synthetic/), Copyright (c) 2022 Daniela Ivanova, distributed under the MIT licence: see LICENSE beside this
file, which must stay with these stamps.

Subset: {per_category} stamps from each of the {categories} categories ({count} stamps, {size:.2f} MB), the
stamps at evenly spaced positions of each category's file list sorted by name (position i * n // {per_category}).
Files are byte-for-byte copies of the originals (400 x 400 RGBA PNG). Made by scripts/bundle_damage_stamps.py;
rerun it to remake this folder.

`oldphoto degrade` and `oldphoto train ...` use these stamps when no --damage-dir is given; --damage-dir
replaces them with the given folders.

sha256 of each file:
{hashes}
"""


def select(files: list[Path], per_category: int) -> list[Path]:
    """``per_category`` files of ``files`` (sorted by name) at evenly spaced positions; all if there are fewer."""
    files = sorted(files, key=lambda path: path.name)
    if len(files) <= per_category:
        return files
    return [files[i * len(files) // per_category] for i in range(per_category)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="the full stamp set (with LICENSE)")
    parser.add_argument("--per-category", type=int, default=PER_CATEGORY)
    args = parser.parse_args()
    source: Path = args.source
    if not (source / "LICENSE").is_file():
        raise SystemExit(f"{source}: no LICENSE; the stamps may only be redistributed with their licence")
    categories = sorted(path for path in source.iterdir() if path.is_dir() and any(path.glob("*.png")))
    chosen = {category.name: select(list(category.glob("*.png")), args.per_category) for category in categories}
    size = sum(path.stat().st_size for files in chosen.values() for path in files)
    if size > MAX_BYTES:
        raise SystemExit(f"{size / 1e6:.2f} MB of stamps is over the {MAX_BYTES / 1e6:.1f} MB budget: lower --per-category")

    if TARGET.exists():
        shutil.rmtree(TARGET)
    hashes = []
    for name, files in chosen.items():
        (TARGET / name).mkdir(parents=True)
        for path in files:
            shutil.copyfile(path, TARGET / name / path.name)
            hashes.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}/{path.name}")
    shutil.copyfile(source / "LICENSE", TARGET / "LICENSE")
    count = sum(len(files) for files in chosen.values())
    notice = NOTICE.format(per_category=args.per_category, categories=len(chosen), count=count, size=size / 1e6, hashes="\n".join(hashes))
    (TARGET / "NOTICE").write_text(notice)
    print(f"bundled {count} stamps ({size / 1e6:.2f} MB) from {len(chosen)} categories into {TARGET}")


if __name__ == "__main__":
    main()
