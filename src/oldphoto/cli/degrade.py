"""`oldphoto degrade SRC... -o OUT`: make paired synthetic test sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
import typer

from oldphoto.batch import discover_inputs, prepare_set_folder
from oldphoto.cli.common import (
    EXIT_FAILURES,
    console,
    error_console,
    fail,
    library_errors,
    progress_bar,
    quiet_option,
    report_discovery,
    set_quiet,
)
from oldphoto.degrade import (
    MASK_DEFINITION,
    DamageStamps,
    degrade_image,
    get_preset,
    load_preset_file,
    override,
)
from oldphoto.degrade.presets import preset_summary
from oldphoto.errors import OldPhotoError
from oldphoto.imageio import atomic_write_bytes, load_rgb, save_rgb


def degrade(
    sources: Annotated[list[str], typer.Argument(help="Clean photos: files, folders or globs.", show_default=False)],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output folder (clean/, degraded/, mask/, ignore/, [distractor/], manifest.json).")
    ],
    count: Annotated[int | None, typer.Option(help="Pairs to make (cycles over the sources; default one each).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same output.")] = 0,
    preset: Annotated[
        str,
        typer.Option(help="Preset: default or bopbtl (with distractors), default-v1 or bopbtl-v1 (as before distractors)."),
    ] = "default",
    config: Annotated[Path | None, typer.Option(help="Preset TOML file (overrides --preset).")] = None,
    size_range: Annotated[
        tuple[int, int] | None, typer.Option(help="Random square crops with a side in [MIN, MAX] (default: whole image).")
    ] = None,
    damage_dir: Annotated[list[Path] | None, typer.Option(help="Folders of RGBA damage stamps (repeatable).")] = None,
    structured: Annotated[
        bool, typer.Option("--structured/--no-structured", help="Scratches, dust, tears ... (distractors stay: they are not damage).")
    ] = True,
    unstructured: Annotated[bool, typer.Option("--unstructured/--no-unstructured", help="Noise, blur, fading ...")] = True,
    distractors: Annotated[
        bool, typer.Option("--distractors/--no-distractors", help="Scene content that looks like damage (badges, wires, white shirts ...).")
    ] = True,
    grayscale_prob: Annotated[float | None, typer.Option(help="Override the preset's chance of a B&W print.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Write into a non-empty folder, first removing an earlier set there (clean/, degraded/, mask/, ignore/, "
            "distractor/, manifest.json; nothing else).",
        ),
    ] = False,
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Damage clean photos with the degradation library, writing pairs and their masks.

    mask/ is the visible damage, ignore/ the faint part of it that scoring leaves out (don't-care), distractor/
    (presets with distractors) the scene content drawn to look like damage, which the mask never includes.
    """
    set_quiet(quiet)
    with library_errors():
        recipe = load_preset_file(config) if config else get_preset(preset)
        recipe = override(
            recipe, structured=structured, unstructured=unstructured, grayscale_probability=grayscale_prob, distractors=distractors
        )
    discovered = discover_inputs(sources, recursive=recursive)
    report_discovery(discovered)
    found, problems = discovered.files, discovered.problems
    if not found:
        raise fail("no source images found")
    if size_range is not None and not 16 <= size_range[0] <= size_range[1]:
        raise fail("--size-range MIN MAX needs 16 <= MIN <= MAX")
    stamps = DamageStamps(damage_dir) if damage_dir else None
    if stamps is not None and len(stamps) == 0:
        raise fail(f"no RGBA damage stamps (*.png) under {', '.join(map(str, damage_dir))}")
    with library_errors():
        prepare_set_folder(output, [source.path for source in found], overwrite)
    total = count if count is not None else len(found)
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    failures = len(problems)
    width = max(4, len(str(total - 1)))
    with progress_bar() as progress:
        task = progress.add_task("degrading", total=total)
        for index in range(total):
            source = found[index % len(found)]
            stem = f"{index:0{width}d}_{source.path.stem}" if total != len(found) else source.relative.with_suffix("").as_posix().replace("/", "_")
            try:
                clean = load_rgb(source.path)
                if size_range is not None:
                    clean = _random_crop(clean, rng, size_range)
                sample = degrade_image(clean, recipe, rng, stamps)
                save_rgb(output / "clean" / f"{stem}.png", sample.clean)
                save_rgb(output / "degraded" / f"{stem}.png", sample.degraded)
                save_rgb(output / "mask" / f"{stem}.png", sample.mask[:, :, None])
                save_rgb(output / "ignore" / f"{stem}.png", sample.dont_care[:, :, None])
                if recipe.distractors:
                    save_rgb(output / "distractor" / f"{stem}.png", sample.distractor[:, :, None])
                records.append({"stem": stem, "source": str(source.path), "size": list(sample.clean.shape[1::-1]), "ops": sample.ops})
            except OldPhotoError as error:
                failures += 1
                error_console.print(f"[red]skipped:[/] {error}", highlight=False)
            progress.advance(task)
    manifest = {
        "seed": seed,
        "preset": preset_summary(recipe),
        "mask_definition": MASK_DEFINITION,
        "count": len(records),
        "images": records,
    }
    atomic_write_bytes(output / "manifest.json", (json.dumps(manifest, indent=1, default=_json_default) + "\n").encode())
    console.print(f"wrote {len(records)} pairs to {output}")
    if failures:
        raise typer.Exit(EXIT_FAILURES)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _random_crop(image: np.ndarray, rng: np.random.Generator, size_range: tuple[int, int]) -> np.ndarray:
    side = int(rng.integers(size_range[0], size_range[1] + 1))
    height, width = image.shape[:2]
    if min(height, width) < side:
        scale = side / min(height, width)
        image = cv2.resize(image, (max(side, round(width * scale)), max(side, round(height * scale))), interpolation=cv2.INTER_CUBIC)
        height, width = image.shape[:2]
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(0, width - side + 1))
    return np.ascontiguousarray(image[y : y + side, x : x + side])
