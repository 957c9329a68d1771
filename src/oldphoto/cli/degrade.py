"""`oldphoto degrade SRC... -o OUT`: make paired synthetic test sets (the work is in :mod:`oldphoto.degrade.sets`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape

from oldphoto.cli.common import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    console,
    discovered_inputs,
    error_console,
    fail,
    library_errors,
    note,
    progress_bar,
    quiet_option,
    set_quiet,
)
from oldphoto.degrade import check_preset_runs, get_preset, load_preset_file, load_stamps, override
from oldphoto.degrade.pipeline import PRESET_ERRORS
from oldphoto.degrade.presets import PRESET_GROUPS
from oldphoto.degrade.sets import (
    PairRecord,
    make_pair,
    plan_pairs,
    remove_pair,
    write_manifest,
)
from oldphoto.errors import ImageWriteError, OldPhotoError
from oldphoto.imageio import load_rgb
from oldphoto.inputs import (
    SET_PARTS,
    clear_pending_set,
    prepare_set_folder,
    split_set_parts,
    write_pending_set,
)
from oldphoto.restore.jobs import check_output_folder

MAX_PAIRS = 1_000_000
"""The most pairs one set holds (--count); a larger set is made as several, with different seeds."""


def degrade(
    sources: Annotated[list[str], typer.Argument(metavar="FILE|DIR|GLOB", help="Clean photos: files, folders or globs.", show_default=False)],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output folder (clean/, degraded/, mask/, ignore/, \\[distractor/], manifest.json).")
    ],
    count: Annotated[
        int | None,
        # Planned before the first pair: 50 million held 700 MB for minutes and wrote nothing.
        typer.Option(min=1, max=MAX_PAIRS, help=f"Pairs to make, at most {MAX_PAIRS:,} (cycles over the sources; default one each)."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Random seed: same seed, same output.")] = 0,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Preset: default or bopbtl (with distractors), default-v1 or bopbtl-v1 (as before distractors). \\[default: default]",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Preset TOML file: its fields and op groups over its base = \"...\" preset, or over --preset.")
    ] = None,
    size_range: Annotated[
        tuple[int, int] | None, typer.Option(metavar="MIN MAX", help="Random square crops with a side in [MIN, MAX] (default: whole image).")
    ] = None,
    damage_dir: Annotated[
        list[Path] | None, typer.Option(help="Folders of RGBA damage stamps (repeatable); replace the stamps bundled with oldphoto (the default).")
    ] = None,
    structured: Annotated[
        bool, typer.Option("--structured/--no-structured", help="Scratches, dust, tears ... (distractors stay: they are not damage).")
    ] = True,
    unstructured: Annotated[bool, typer.Option("--unstructured/--no-unstructured", help="Noise, blur, fading ...")] = True,
    distractors: Annotated[
        bool, typer.Option("--distractors/--no-distractors", help="Scene content that looks like damage (badges, wires, white shirts ...).")
    ] = True,
    grayscale_prob: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Override the preset's chance of a B&W print.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty folder, first removing an earlier set there (its parts only).")
    ] = False,
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Damage clean photos with the degradation library into pairs (mask/: damage; ignore/: its faint part; distractor/)."""
    set_quiet(quiet)
    if not (structured or unstructured or distractors):
        raise fail("nothing to degrade: with --no-structured, --no-unstructured and --no-distractors every pair would be its clean photo")
    with library_errors():
        recipe = load_preset_file(config, preset) if config else get_preset(preset or "default")
        recipe = override(recipe, structured=structured, unstructured=unstructured, grayscale_probability=grayscale_prob, distractors=distractors)
    if not any(getattr(recipe, group) for group in PRESET_GROUPS):
        # The -v1 presets have no distractors: --no-structured --no-unstructured left them nothing, and "wrote 3
        # pairs" made pairs whose degraded photo was the clean one.
        raise fail(f"nothing to degrade: with these flags the preset {recipe.name} has no ops left, so every pair would be its clean photo")
    discovered = discovered_inputs(sources, recursive)
    photos, in_sets = split_set_parts(discovered.files, [Path(source) for source in sources])
    if in_sets:
        note(
            f"left out {len(in_sets)} file(s) found inside sets made by oldphoto degrade (e.g. {in_sets[0].path}): a "
            "set's damaged photos and masks are not clean photos, and its clean/ repeats photos already given; give "
            "a set's clean/ folder itself to degrade it"
        )
        if not photos:
            raise fail("no photos to degrade: every file found is part of a set made by oldphoto degrade")
    with library_errors():
        stamps = load_stamps(damage_dir)  # the bundled stamps unless --damage-dir
        if config:
            # A preset file's op that cannot run (a halftone cell of 0, a NaN range) stopped the run after the
            # earlier set was removed, with a traceback: tried on a test image first, the op named.
            check_preset_runs(recipe, stamps)
        # Planned (and its options checked) before an earlier set is removed: a refused --size-range after
        # --overwrite had already deleted the set it was to replace.
        pairs = plan_pairs(photos, count, size_range)
        made_output = not output.exists()
        if overwrite and not made_output and not _one_readable(pair.source for pair in pairs):
            # An earlier set was removed, and the folder left empty, for photos none of which could be read.
            raise OldPhotoError(f"none of the photos to degrade can be read (e.g. {pairs[0].source}); the set in {output} is left as it was")
        prepare_set_folder(output, [source.path for source in photos], overwrite)
        check_output_folder(output)  # a folder that cannot be written is one error now, not one per pair
        write_pending_set(output, [pair.stem for pair in pairs])
    rng = np.random.default_rng(seed)
    records: list[PairRecord] = []
    failures = len(discovered.problems)
    stopped: str | None = None
    with progress_bar() as progress:
        task = progress.add_task("degrading", total=len(pairs))
        for pair in pairs:
            try:
                records.append(make_pair(pair, output, recipe, rng, stamps, size_range))
            except ImageWriteError as error:  # the disk, not the photo: every later pair would fail too
                remove_pair(output, pair.stem)
                stopped = str(error)
                break
            except OldPhotoError as error:  # one photo failed: report it, make the rest
                failures += 1
                error_console.print(f"[red]skipped:[/] {escape(str(error))}", highlight=False)
            except KeyboardInterrupt:
                remove_pair(output, pair.stem)
                stopped = "interrupted"
                break
            # A preset's parameters that do not work (--config): a range given as one number, a string for a number.
            except PRESET_ERRORS as error:
                remove_pair(output, pair.stem)
                source = f"the preset file {config}" if config else f"the preset {recipe.name}"
                stopped = f"{source} does not work on {pair.source} ({type(error).__name__}: {error}); check its op parameters"
                break
            progress.advance(task)
    if not records and stopped != "interrupted":
        # Every photo failed, or the first pair stopped the run: a manifest of no pairs made a "set" that evaluate
        # then refused.
        clear_pending_set(output)
        if made_output:  # nothing left behind: the empty folders this run made would only be a stray set's shell
            for folder in [*(output / part for part in SET_PARTS), output]:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        why = f"stopped: {escape(stopped)}" if stopped else "every photo failed (see above)"
        error_console.print(f"[bold red]error:[/] no pair was made: {why}", highlight=False)
        raise typer.Exit(EXIT_FAILURES)
    with library_errors():
        # Also after a stop: the manifest lists the pairs made, so the set that is there is a consistent one.
        write_manifest(output, seed, recipe, records, stamps, size_range, len(pairs))
    clear_pending_set(output)  # the manifest lists the pairs now
    if stopped == "interrupted":
        error_console.print(
            f"[yellow]interrupted[/]: {len(records)} of {len(pairs)} pairs written (manifest.json lists them); run the "
            "command again with --overwrite to make the whole set",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if stopped is not None:
        error_console.print(f"[bold red]stopped:[/] {escape(stopped)}; {len(records)} pairs written before it", highlight=False)
        raise typer.Exit(EXIT_FAILURES)
    console.print(f"wrote {len(records)} pair{'' if len(records) == 1 else 's'} to {escape(str(output))}")
    if failures:
        raise typer.Exit(EXIT_FAILURES)


def _one_readable(sources) -> bool:
    """Whether one of ``sources`` decodes (stopping at the first that does): a header alone let a truncated file
    through, and the earlier set was removed for photos none of which could be made into a pair."""
    for source in dict.fromkeys(sources):
        try:
            load_rgb(source)
            return True
        except OldPhotoError:
            continue
    return False
