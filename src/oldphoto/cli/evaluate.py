"""`oldphoto evaluate`: compare methods on paired test sets, or make contact sheets of real photos."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from oldphoto.atomic import atomic_write_bytes
from oldphoto.cli.common import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    PrecisionChoice,
    chosen_precision,
    console,
    error_console,
    fail,
    file_path,
    fp16_option,
    library_errors,
    note,
    precision_option,
    print_table,
    progress_bar,
    quiet_option,
    set_quiet,
)
from oldphoto.errors import ConfigError, ImageWriteError, OldPhotoError
from oldphoto.evaluation.runner import (
    METHOD_NAMES,
    PIPELINE_METHODS,
    Pair,
    build_method,
    find_pairs,
    mask_scoring,
    score_image,
    summarize,
)
from oldphoto.imageio import save_rgb
from oldphoto.inputs import MANIFEST_NAME, PENDING_SET
from oldphoto.reports import check_file_target, check_writable, json_object_with
from oldphoto.restore.jobs import fit_within
from oldphoto.restore.scratches import check_detection_overrides
from oldphoto.runtime import make_runtime

DEFAULT_METHODS = ["identity", "classical"]


def evaluate(
    dataset: Annotated[
        Path | None, typer.Argument(metavar="SET_DIR", help="A `oldphoto degrade` output folder (clean/, degraded/, mask/).")
    ] = None,
    degraded: Annotated[Path | None, typer.Option(help="Folder of degraded images (instead of SET_DIR).")] = None,
    clean: Annotated[Path | None, typer.Option(help="Folder of clean images, matched by stem.")] = None,
    mask: Annotated[Path | None, typer.Option(help="Folder of true damage masks, matched by stem.")] = None,
    real: Annotated[
        Path | None, typer.Option(help="Folder of real photos without ground truth: write contact sheets only.")
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option("--method", "-m", help=f"{', '.join(METHOD_NAMES)} (repeatable; global = restore --no-faces, scratch-unet = restore --no-global --no-faces).",
            metavar="METHOD",),
    ] = None,
    true_masks: Annotated[
        bool,
        typer.Option(
            "--true-masks",
            help="Pipeline methods repair each pair's true damage mask instead of detecting one: how far the later "
            "stages would get with a perfect detector (their masks are then not scored).",
        ),
    ] = False,
    scratch_threshold: Annotated[
        float | None,
        typer.Option(
            metavar="0..1",
            help="Detector threshold for the pipeline methods, strictly between 0 and 1 (default: the model's), as restore --scratch-threshold: "
            "score a sensitivity on your own pairs before using it.",
        ),
    ] = None,
    scratch_verify: Annotated[
        bool,
        typer.Option(
            "--scratch-verify/--no-scratch-verify",
            help="Pipeline methods let the scratch verifier drop marks that look like scene content (the default), or "
            "keep every mark of the detector, as restore --no-scratch-verify.",
        ),
    ] = True,
    global_strength: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="How much of the global restoration the pipeline methods keep away from the repaired damage, as "
            "restore --global-strength (default 1: all of it).",
        ),
    ] = 1.0,
    recursive: Annotated[
        bool,
        typer.Option(
            "--recursive",
            "-r",
            help="Also pair the images in sub-folders, by their path below each folder (degraded/1910/a.png with clean/1910/a.png).",
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N pairs.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Per-image scores as CSV.", parser=file_path, metavar="FILE")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Summary as JSON.", parser=file_path, metavar="FILE")] = None,
    save: Annotated[Path | None, typer.Option(help="Save restored images and comparison sheets here.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    # fp32 by default, unlike restore: scores stay the same on every machine (give auto to measure bf16/fp16).
    precision: Annotated[PrecisionChoice | None, precision_option(default_here="fp32, so that scores are the same on every machine")] = None,
    fp16: Annotated[bool, fp16_option()] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads.")] = None,
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Score restoration methods (PSNR, SSIM, mask precision/recall/F1/IoU, s/MP, peak memory)."""
    set_quiet(quiet)
    methods = list(dict.fromkeys(method or DEFAULT_METHODS))  # a method named twice is scored once
    if real is not None and (dataset is not None or degraded is not None or clean is not None or mask is not None):
        raise fail("--real scores photos without targets: give it alone, not with a SET_DIR, --degraded, --clean or --mask")
    if dataset is not None and degraded is not None:  # --degraded was ignored, the set's own pairs scored
        raise fail("give a SET_DIR or --degraded DIR --clean DIR, not both")
    # `evaluate --real photos -r --save photos/eval` read its own earlier results as photos, one level deeper each run:
    # the files a --save folder's list names are never read as pairs.
    listed = _saved_list(save / SAVED_LIST) if save is not None and (save / SAVED_LIST).is_file() else None
    own_results = frozenset((save / name).resolve() for name in listed or ()) if save is not None else frozenset()
    with library_errors():
        # --fp16 alone means fp16 (as restore's); with an explicit other --precision it is refused.
        chosen = chosen_precision(precision if precision is not None else (PrecisionChoice.auto if fp16 else PrecisionChoice.fp32), fp16)
        runtime = make_runtime(device, chosen, threads=threads)
        if real is not None:
            pairs = find_pairs(real, recursive=recursive, exclude=own_results)
            if save is None:
                raise fail("--real needs --save DIR for the contact sheets")
            if true_masks:
                raise fail("--true-masks needs paired data with true damage masks, not --real photos")
        elif dataset is not None:
            if not dataset.is_dir():  # "not a set made by oldphoto degrade" sent the user looking at a folder not there
                raise fail(f"{dataset}: no such folder" if not dataset.exists() else f"{dataset}: not a folder; give a SET_DIR folder made by oldphoto degrade")
            if clean is None and not (dataset / "degraded").is_dir():
                # Scored against nothing, every figure would be "-": say what the folder lacks instead.
                raise fail(
                    f"{dataset} is not a set made by oldphoto degrade (no degraded/ and clean/ folders): give "
                    "--degraded DIR --clean DIR for your own pairs, or --real DIR for photos without targets"
                )
            _note_unfinished_set(dataset)
            pairs = find_pairs(dataset, clean, mask, recursive=recursive, exclude=own_results)
        elif degraded is not None and clean is not None:
            _note_unfinished_set(degraded.parent)
            pairs = find_pairs(degraded, clean, mask, recursive=recursive, exclude=own_results)
        else:
            raise fail("give a SET_DIR folder (made by oldphoto degrade), --degraded DIR --clean DIR, or --real DIR")
        check_detection_overrides(scratch_threshold, None)  # also when no method detects: the JSON records the value
        if scratch_threshold is not None and not any(name in PIPELINE_METHODS and PIPELINE_METHODS[name].scratches for name in methods):
            note(f"--scratch-threshold {scratch_threshold} does nothing here: no method of this run detects scratches")
        if true_masks and not any(name in PIPELINE_METHODS for name in methods):
            note("--true-masks does nothing here: no method of this run detects damage to replace (only pipeline methods do)")
        if global_strength != 1.0 and not any(name in PIPELINE_METHODS and PIPELINE_METHODS[name].global_restoration for name in methods):
            note(f"--global-strength {global_strength:g} does nothing here: no method of this run restores globally")
        built = {name: build_method(name, runtime, scratch_threshold, scratch_verify, global_strength) for name in methods}
    pairs = pairs[:limit] if limit else pairs
    if not pairs:
        raise fail("no image pairs found")
    unmasked = [pair.stem for pair in pairs if pair.mask is None]
    if true_masks and unmasked and any(name in PIPELINE_METHODS for name in methods):
        # Refused now: each pair failed on it in turn, after the warm-up, with exit code 1.
        where = f"{mask}" if mask is not None else "a mask/ folder of the set, or --mask DIR"
        raise fail(f"--true-masks needs the true damage mask of every pair: {len(unmasked)} of {len(pairs)} have none in {where} (e.g. {unmasked[0]})")
    if unmasked and (mask is not None or len(unmasked) < len(pairs)):  # a set's mask/ missing some pairs' masks too
        where = f" in {mask}" if mask is not None else ""
        note(f"{len(unmasked)} of {len(pairs)} pairs have no mask{where} (e.g. {unmasked[0]}): their masks are not scored")
    with library_errors():
        # Before any scoring: a summary that cannot be written, or that would replace a photo, fails now.
        pair_files = [path for pair in pairs for path in (pair.degraded, pair.clean, pair.mask, pair.ignore, pair.distractor) if path is not None]
        saved = [] if save is None else saved_paths(save, methods, [pair.stem for pair in pairs])
        planned = saved + ([] if save is None else [save / SAVED_LIST])  # every file --save writes, its list too
        if csv_path is not None:
            check_file_target(csv_path, "--csv", pair_files, planned, ours=_looks_like_our_csv, suffix=".csv")
        if json_path is not None:
            summaries_too = planned + ([] if csv_path is None else [csv_path])
            check_file_target(json_path, "--json", pair_files, summaries_too, ours=lambda path: json_object_with(path, ("pairs", "methods")))
        if save is not None:
            check_save_folder(save, saved, pair_files)

    failures = 0
    scores = {name: [] for name in methods}
    stopped: str | None = None
    with progress_bar() as progress:
        task = progress.add_task("evaluating", total=len(pairs) * len(methods))
        # Each method once on the first pair, not scored: otherwise the first method listed pays the warm-up (first
        # calls, allocations) in its s/MP and peak MB, and the columns depend on the order of -m.
        try:
            progress.update(task, description="warming up")
            for name, run in built.items():
                try:
                    score_image(name, run, pairs[0], true_masks)
                except OldPhotoError:
                    pass  # the pair's error is reported when it is scored
            for pair in pairs:
                panels: list[np.ndarray] = []
                for name, run in built.items():
                    progress.update(task, description=escape(f"{name}: {pair.stem}"))
                    try:
                        score, degraded_image, restored, predicted = score_image(name, run, pair, true_masks)
                    except OldPhotoError as error:
                        failures += 1
                        error_console.print(f"[red]failed:[/] {escape(f'{name} on {pair.stem}: {error}')}", highlight=False)
                        progress.advance(task)
                        continue
                    scores[name].append(score)
                    if save is not None:
                        _saving(lambda: _save_outputs(save, name, pair, restored, predicted, panels, degraded_image))
                    progress.advance(task)
                if save is not None and panels:
                    _saving(lambda: save_rgb(save / "sheets" / f"{pair.stem}.jpg", _sheet(panels)))
        except _SaveFailed as failed:  # --save's disk, not a pair: the scores so far are still written
            stopped = f"cannot write --save outputs ({failed}); the scores so far are in the table and files"
        except KeyboardInterrupt:
            stopped = "interrupted"

    counts = {name: len(scores[name]) for name in methods}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{name} {count}" for name, count in counts.items())
        note(f"the methods were scored on different numbers of pairs ({shown}): their figures are not over the same photos")
    summaries = [summarize(name, scores[name]) for name in methods]
    scoring = mask_scoring(pairs) if any(s.mask is not None for s in summaries) else None
    _print_table(summaries, scoring)
    # Stopped before any pair was scored, there is nothing to write: an earlier run's complete scores at --json or
    # --csv were replaced by empty ones.
    scored_any = any(counts.values())
    try:
        if csv_path is not None and (scored_any or stopped is None):
            _write_csv(csv_path, summaries)
        if json_path is not None and (scored_any or stopped is None):
            _write_json(
                json_path, pairs, summaries, scoring, stopped, true_masks, scratch_threshold, scratch_verify, global_strength, runtime.precision
            )
    except OSError as error:
        raise fail(f"cannot write the scores ({error.strerror or error}); they are in the table above", EXIT_FAILURES) from None
    if stopped == "interrupted":
        done = min(counts.values(), default=0)
        where = "are in the table and files" if scored_any else "none, so no score file was written"
        error_console.print(f"[yellow]interrupted[/]: the scores of the pairs done (at least {done} of {len(pairs)}) {where}", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    if stopped is not None:
        error_console.print(f"[bold red]stopped:[/] {escape(stopped)}", highlight=False)
        raise typer.Exit(EXIT_FAILURES)
    if failures:
        raise typer.Exit(EXIT_FAILURES)


class _SaveFailed(Exception):
    """A --save output could not be written: the run stops, keeping the scores so far."""


def _saving(write: Callable[[], None]) -> None:
    try:
        write()
    except (ImageWriteError, OSError) as error:
        raise _SaveFailed(str(error)) from None


def _write_json(
    path: Path, pairs, summaries, scoring, stopped, true_masks, scratch_threshold, scratch_verify, global_strength, precision
) -> None:
    payload = {
        "pairs": len(pairs),
        "stopped": stopped,  # None for a run that scored every pair it could
        "true_masks": true_masks,
        "scratch_threshold": scratch_threshold,
        "scratch_verify": scratch_verify,
        "global_strength": global_strength,
        "precision": precision,
        "mask_definition": scoring,
        "methods": [s.as_dict() for s in summaries],
    }
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


def _note_unfinished_set(folder: Path) -> None:
    """A note when ``folder`` holds a set whose ``degrade`` run stopped before its manifest (killed): the pairs
    there may be only part of the set planned, and were scored as if whole without a word."""
    if (folder / PENDING_SET).exists() and not (folder / MANIFEST_NAME).exists():
        note(
            f"{folder} is a set whose oldphoto degrade run did not finish (no manifest.json): it may lack pairs; run "
            "the degrade command again with --overwrite to complete it"
        )


SHEET_MAX_SIDE = 8192
"""Contact sheets are shrunk to at most this many pixels a side (a JPEG holds at most 65,500)."""


def _sheet(panels: list[np.ndarray]) -> np.ndarray:
    """The panels of one pair side by side, shrunk to at most :data:`SHEET_MAX_SIDE` a side."""
    return fit_within(np.concatenate(panels, axis=1), SHEET_MAX_SIDE)


SAVED_LIST = "saved-files.json"
"""In a --save folder: every file evaluate may write there, so that a later run replaces its own files and never
another's (PNG and JPEG alike, which no tag inside the files could say for both)."""


def saved_paths(save: Path, methods: list[str], stems: list[str]) -> list[Path]:
    """Every file ``evaluate --save`` writes for these methods and pair stems: ``<method>/<stem>.png``,
    ``<method>/masks/<stem>.png`` (in a folder of their own: a pair named ``x_mask`` would be ``x``'s mask) and
    ``sheets/<stem>.jpg``."""
    planned = [save / "sheets" / f"{stem}.jpg" for stem in stems]
    return planned + [save / name / part / f"{stem}.png" for name in methods for stem in stems for part in (".", "masks")]


def check_save_folder(save: Path, planned: list[Path], scored: list[Path]) -> None:
    """Refuse a --save folder where ``planned`` files would replace a file being scored (``evaluate --real global -m
    global --save .``) or a file that no earlier evaluate wrote (not in its :data:`SAVED_LIST`); then record the
    planned files in that list, before any is written (a run killed midway leaves only listed files).

    Raises:
        ConfigError: what is in the way, and what to give instead.
    """
    if save.exists() and not save.is_dir():
        raise ConfigError(f"--save {save} is a file; give a folder for the restored images and sheets")
    check_writable(save / "sheets", "--save")
    scored_set = {path.resolve() for path in scored}
    resolved = [path.resolve() for path in planned]  # once each: thousands of pairs plan thousands of files
    seen: set[Path] = set()
    for path, target in zip(planned, resolved, strict=True):
        # With --recursive a pair below a sub-folder named masks/ or sheets/ would be saved where another's mask goes.
        if target in seen:
            raise ConfigError(f"--save {save} would write {path} twice (two pairs' outputs); rename the sub-folder or evaluate it apart")
        seen.add(target)
    clash = next((path for path, target in zip(planned, resolved, strict=True) if target in scored_set), None)
    if clash is not None:
        raise ConfigError(f"--save {save} would write {clash}, one of the files being scored; give --save another folder")
    listing = save / SAVED_LIST
    ours = _saved_list(listing) if listing.exists() else set()
    if ours is None:
        raise ConfigError(f"--save {save} holds a {SAVED_LIST} that evaluate did not write; give --save another folder")
    names = {path: path.relative_to(save).as_posix() for path in planned}
    foreign = next((path for path, name in names.items() if (path.exists() or path.is_symlink()) and name not in ours), None)
    if foreign is not None:
        why = (
            f"which its {SAVED_LIST} does not list as evaluate's"
            if listing.exists()
            else f"and the folder has no {SAVED_LIST}, the list of evaluate's files there (nor has one saved by an earlier version)"
        )
        raise ConfigError(f"--save {save} would write over {foreign}, {why}: move it or give --save an empty folder")
    try:
        save.mkdir(parents=True, exist_ok=True)
        files = sorted(ours | set(names.values()))
        atomic_write_bytes(listing, (json.dumps({"files": files}, indent=1) + "\n").encode())
    except OSError as error:
        raise ConfigError(f"--save {save}: cannot write into it ({error.strerror or error}); give a writable folder") from None


def _saved_list(listing: Path) -> set[str] | None:
    """The files a --save folder's :data:`SAVED_LIST` names, or None when it is not such a list."""
    try:
        files = json.loads(listing.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return set(files) if isinstance(files, list) and all(isinstance(name, str) for name in files) else None


def _save_outputs(save: Path, name: str, pair: Pair, restored, predicted, panels: list, degraded_image) -> None:
    save_rgb(save / name / f"{pair.stem}.png", restored)
    if predicted is not None:
        save_rgb(save / name / "masks" / f"{pair.stem}.png", predicted[:, :, None])
    if not panels:
        panels.append(degraded_image)
    panels.append(restored)
    if predicted is not None:
        panels.append(np.repeat(predicted[:, :, None], 3, axis=2))


def _print_table(summaries, scoring: str | None = None) -> None:
    table = Table(title="evaluation")
    # Only sets made with distractors have them to mark: no empty column for the others.
    distractors = any(s.distractor is not None for s in summaries)
    columns = ["method", "images", "PSNR dB", "SSIM", "precision", "recall", "F1", "IoU"]
    columns += ["distractors marked"] if distractors else []
    for column in columns + ["s/MP", "peak MB"]:
        table.add_column(column, justify="right" if column != "method" else "left")

    def fmt(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    for s in summaries:
        m = s.mask
        table.add_row(
            escape(s.method),
            str(s.images),
            fmt(s.psnr, 2),
            fmt(s.ssim, 4),
            fmt(m.precision if m else None),
            fmt(m.recall if m else None),
            fmt(m.f1 if m else None),
            fmt(m.iou if m else None),
            *([fmt(s.distractor_marked)] if distractors else []),
            fmt(s.seconds_per_mp, 3),
            fmt(s.peak_mb, 0),
        )
    print_table(table, console)
    if scoring is not None:
        note(f"mask scoring: {scoring}")


CSV_HEADER = ["method", "stem", "megapixels", "seconds", "peak_mb", "psnr", "ssim", "tp", "fp", "fn"]


def _looks_like_our_csv(path: Path) -> bool:
    """An empty file, or per-image scores written by an earlier run (replaced as a re-run expects)."""
    try:
        with path.open("rb") as file:
            start = file.read(64)
    except OSError:
        return False
    return not start.strip() or start.startswith(",".join(CSV_HEADER[:3]).encode())


def _write_csv(path: Path, summaries) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER + ["faint_marked", "faint_pixels", "distractor_marked", "distractor_pixels"])
    for summary in summaries:
        for s in summary.scores:
            counts = (s.mask.tp, s.mask.fp, s.mask.fn) if s.mask else ("", "", "")
            faint = (s.faint.marked, s.faint.total) if s.faint else ("", "")
            distractor = (s.distractor.marked, s.distractor.total) if s.distractor else ("", "")
            writer.writerow([s.method, s.stem, f"{s.megapixels:.4f}", f"{s.seconds:.4f}", f"{s.peak_mb:.1f}", s.psnr, s.ssim, *counts, *faint, *distractor])
    atomic_write_bytes(path, buffer.getvalue().encode())
