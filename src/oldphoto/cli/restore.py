"""`oldphoto restore INPUT... -o OUT`."""

from __future__ import annotations

import json
import logging
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from oldphoto.batch import Job, discover_inputs, given_mask_path, plan_jobs, split_own_outputs
from oldphoto.cli.common import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    PrecisionChoice,
    chosen_precision,
    console,
    error_console,
    fail,
    fp16_option,
    library_errors,
    note,
    precision_option,
    progress_bar,
    quiet_option,
    report_discovery,
    set_quiet,
)
from oldphoto.errors import OldPhotoError
from oldphoto.evaluation.runner import PeakMemory
from oldphoto.imageio import (
    DEFAULT_MAX_PIXELS,
    atomic_write_bytes,
    read_photo,
    save_rgb,
    write_photo,
)
from oldphoto.registry import ABLATION_MODEL, SCRATCH_MODEL, get_spec
from oldphoto.restore.faces import RefinedFace
from oldphoto.restore.pipeline import (
    RestoreOptions,
    Restorer,
    RestoreResult,
    check_stages,
)
from oldphoto.runtime import DEFAULT_TILE, DEFAULT_TILE_OVERLAP, make_runtime

log = logging.getLogger(__name__)


class GlobalModel(str, Enum):
    triplet = "triplet"
    restore_unet = ABLATION_MODEL


class OutputExt(str, Enum):
    png = "png"
    jpg = "jpg"
    tif = "tif"
    webp = "webp"


OUTPUT = "Output"
STAGES = "Stages"
PERFORMANCE = "Performance"


def comparison_sheet(before: np.ndarray, after: np.ndarray, max_width: int = 2400) -> np.ndarray:
    """Side-by-side before | after, (H, 2W + gap, 3) float32, shrunk to at most ``max_width`` wide."""
    import cv2

    from oldphoto.imageio import to_rgb

    gap = np.ones((before.shape[0], max(4, before.shape[1] // 100), 3), np.float32)
    sheet = np.concatenate([to_rgb(before), gap, to_rgb(after)], axis=1)
    if sheet.shape[1] > max_width:
        scale = max_width / sheet.shape[1]
        size = (max_width, max(1, round(sheet.shape[0] * scale)))
        sheet = cv2.resize(sheet, size, interpolation=cv2.INTER_AREA)
    return sheet


FACE_FOLDERS = ("cropped", "restored", "cmp")


def face_paths(job: Job, output: Path, faces_dir: Path, index: int) -> dict[str, Path]:
    """Where ``--save-faces`` writes face ``index`` of ``job``: ``faces_dir/<part>/<sub-folder>/<stem>_<index>.png``
    for each part (cropped, restored, cmp), the sub-folder being the input's (as its output's below ``output``)."""
    sub = job.output.parent.relative_to(output)
    return {part: faces_dir / part / sub / f"{job.output.stem}_{index}.png" for part in FACE_FOLDERS}


def save_faces(job: Job, output: Path, faces_dir: Path, faces: list[RefinedFace]) -> int:
    """Write the aligned and refined crops of each refined face (largest first) and the two side by side."""
    refined = [face for face in faces if face.refined and face.cropped is not None and face.restored is not None]
    for index, face in enumerate(refined):
        paths = face_paths(job, output, faces_dir, index)
        save_rgb(paths["cropped"], face.cropped)
        save_rgb(paths["restored"], face.restored)
        save_rgb(paths["cmp"], np.concatenate([face.cropped, face.restored], axis=1))
    return len(refined)


def face_record(face: RefinedFace) -> dict[str, Any]:
    """A face for the report: box [x, y, w, h] and landmarks [[x, y] x 5] in photo pixels, score, refined."""
    x1, y1, x2, y2 = face.face.box
    return {
        "box": [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)],
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.face.landmarks],
        "score": round(float(face.face.score), 4),
        "refined": face.refined,
    }


def restore(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.", rich_help_panel=OUTPUT)],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into sub-folders of folder inputs.")
    ] = False,
    ext: Annotated[
        OutputExt | None,
        typer.Option(help="Output format (default: same as each input).", rich_help_panel=OUTPUT),
    ] = None,
    suffix: Annotated[str, typer.Option(help="Appended to each output's stem.", rich_help_panel=OUTPUT)] = "",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs (inputs are never replaced).", rich_help_panel=OUTPUT)
    ] = False,
    save_mask: Annotated[
        bool, typer.Option("--save-mask", help="Also write the scratch mask as <stem>_mask.png.", rich_help_panel=OUTPUT)
    ] = False,
    compare: Annotated[
        bool, typer.Option("--compare", help="Also write a before|after sheet <stem>_compare.jpg.", rich_help_panel=OUTPUT)
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="Write a per-image JSON report to this file.", rich_help_panel=OUTPUT)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and write nothing.", rich_help_panel=OUTPUT)
    ] = False,
    with_scratch: Annotated[
        bool, typer.Option("--with-scratch/--no-scratch", help="Detect and repair scratches.", rich_help_panel=STAGES)
    ] = True,
    masks: Annotated[
        Path | None,
        typer.Option(
            help="Folder of your own damage masks (white = damaged), named <stem>_mask.png or <stem><suffix>_mask.png "
            "as --save-mask writes them (sub-folders mirroring the inputs'). A photo with a mask there is repaired where its mask says instead of "
            "where the detector would; photos without one are detected as usual.",
            exists=True,
            file_okay=False,
            rich_help_panel=STAGES,
        ),
    ] = None,
    scratch_threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Detector sensitivity: the probability above which a pixel counts as damaged (default: the model's, "
            "chosen on validation data). Raise it when bright areas are marked, lower it for faint cracks.",
            rich_help_panel=STAGES,
        ),
    ] = None,
    mask_dilation: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Grow the detected mask by this many pixels before repair, to cover the soft edges of scratches "
            "(default: the model's, 0). Masks given with --masks are used as they are.",
            rich_help_panel=STAGES,
        ),
    ] = None,
    global_restoration: Annotated[
        bool,
        typer.Option(
            "--global/--no-global",
            help="Global restoration network. With --no-global, detected scratches are filled by classical inpainting.",
            rich_help_panel=STAGES,
        ),
    ] = True,
    global_model: Annotated[
        GlobalModel,
        typer.Option(
            help="Global network: 'triplet' (the paper's VAE_A -> mapping -> VAE_B) or 'restore-unet' (the direct "
            "residual U-Net of the ablation: keeps more fine detail, leaves warm casts warmer).",
            rich_help_panel=STAGES,
        ),
    ] = GlobalModel.triplet,
    faces: Annotated[bool, typer.Option("--faces/--no-faces", help="Refine faces.", rich_help_panel=STAGES)] = True,
    face_strength: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Blend of refined faces: 0 keeps the global result, 1 blends the refined face in fully "
            "(the opposite direction to CodeFormer's -w).",
            rich_help_panel=STAGES,
        ),
    ] = 1.0,
    min_face_size: Annotated[
        int,
        typer.Option(
            min=0,
            help="Refine only faces whose box (its larger side) is at least this many pixels of the photo; smaller "
            "faces are left as the global stage made them (default 0: every face found).",
            rich_help_panel=STAGES,
        ),
    ] = 0,
    only_center_face: Annotated[
        bool,
        typer.Option(
            "--only-center-face", help="Refine only the face nearest the photo's centre.", rich_help_panel=STAGES
        ),
    ] = False,
    save_faces_dir: Annotated[
        Path | None,
        typer.Option(
            "--save-faces",
            help="Also write each refined face (largest first, k = 0, 1, ...) to DIR/cropped/<stem>_<k>.png (the "
            "aligned crop given to the refiner), DIR/restored/<stem>_<k>.png (the refined crop) and "
            "DIR/cmp/<stem>_<k>.png (the two side by side), in the input's sub-folder under each.",
            file_okay=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda, cuda:N or mps (auto = CUDA, then MPS, then CPU).", rich_help_panel=PERFORMANCE)
    ] = "auto",
    precision: Annotated[PrecisionChoice, precision_option(PERFORMANCE)] = PrecisionChoice.auto,
    fp16: Annotated[bool, fp16_option(PERFORMANCE)] = False,
    tile: Annotated[int, typer.Option(help="Tile size in pixels (smaller tiles use less memory).", rich_help_panel=PERFORMANCE)] = DEFAULT_TILE,
    tile_overlap: Annotated[
        int, typer.Option(help="Overlap between tiles in pixels.", rich_help_panel=PERFORMANCE)
    ] = DEFAULT_TILE_OVERLAP,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (default: all cores).", rich_help_panel=PERFORMANCE)
    ] = None,
    max_pixels: Annotated[
        int,
        typer.Option(help="Refuse images larger than this many pixels (0 = no limit).", rich_help_panel=PERFORMANCE),
    ] = DEFAULT_MAX_PIXELS,
    quiet: Annotated[bool, quiet_option()] = False,
) -> None:
    """Restore old photos: detect scratches, restore globally, refine faces."""
    set_quiet(quiet)
    with library_errors():
        options = RestoreOptions(
            scratch_threshold=scratch_threshold,
            mask_dilation=mask_dilation,
            scratches=with_scratch,
            global_restoration=global_restoration,
            faces=faces,
            face_strength=face_strength,
            min_face_size=min_face_size,
            only_center_face=only_center_face,
            global_model=global_model.value,
        )
    discovered = discover_inputs(inputs, recursive=recursive)
    report_discovery(discovered)
    found, problems = discovered.files, discovered.problems
    found, own_outputs = split_own_outputs(found, suffix)
    if own_outputs:
        note(
            f"left out {len(own_outputs)} file(s) that are oldphoto's own outputs for other inputs "
            f"(e.g. {own_outputs[0].path}); pass one on its own to restore it"
        )
    if not found:
        raise fail("no input images found")
    jobs = plan_jobs(
        found,
        output,
        ext=ext.value if ext else None,
        suffix=suffix,
        overwrite=overwrite,
        # --save-faces names crops by the output's stem: a.jpg and a.png would share them as they would a mask.
        side_files=save_mask or compare or save_faces_dir is not None,
    )

    if dry_run:
        with library_errors():
            check_stages(options)
            runtime = make_runtime(device, chosen_precision(precision, fp16), tile, tile_overlap, threads)
        given = {job.source: given_mask_path(job, output, masks, suffix) for job in jobs} if masks is not None else {}
        _print_plan(jobs, options, runtime.describe(), given)
        if save_faces_dir is not None:
            console.print(f"face crops: {save_faces_dir}/{{{','.join(FACE_FOLDERS)}}}/<stem>_<k>.png")
        raise typer.Exit(EXIT_FAILURES if problems or any(_refused(job) for job in jobs) else 0)

    with library_errors():
        runtime = make_runtime(device, chosen_precision(precision, fp16), tile, tile_overlap, threads)
        restorer = Restorer(runtime, options)
    for caveat in restorer.caveats(brief=True):
        note(f"{caveat} (the full caveat: oldphoto models list)")

    records: list[dict[str, Any]] = []
    failures = len(problems)
    interrupted = False
    try:
        with progress_bar() as progress:
            files_task = progress.add_task("photos", total=len(jobs))
            tiles_task = progress.add_task("tiles", total=None, visible=False)
            for job in jobs:
                progress.update(files_task, description=f"[cyan]{job.source.name}")
                if job.skip_reason:
                    records.append(_record(job, "refused" if _refused(job) else "skipped", error=job.skip_reason))
                    if _refused(job):
                        failures += 1
                        error_console.print(f"[red]not restored:[/] {job.source}: {job.skip_reason}", highlight=False)
                    progress.advance(files_task)
                    continue

                def on_tile(done: int, total: int) -> None:
                    progress.update(tiles_task, completed=done, total=total, visible=total > 1)

                mask_file = None if masks is None else given_mask_path(job, output, masks, suffix)
                faces_to = None if save_faces_dir is None else (output, save_faces_dir)
                record = _restore_one(job, restorer, on_tile, save_mask, compare, max_pixels, mask_file, faces_to)
                record["device"] = str(runtime.device)
                record["precision"] = runtime.precision
                records.append(record)
                if record["status"] == "failed":
                    failures += 1
                    error_console.print(f"[red]failed:[/] {record['error']}", highlight=False)
                progress.update(tiles_task, visible=False)
                progress.advance(files_task)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if report is not None:
            _write_report(report, records, restorer)

    _print_summary(records)
    if interrupted:
        error_console.print("[yellow]interrupted[/]: finished files are complete; no partial file was left behind")
        raise typer.Exit(EXIT_INTERRUPTED)
    if failures:
        raise typer.Exit(EXIT_FAILURES)


def _refused(job: Job) -> bool:
    """Not restored for a reason other than an existing output (which counts as done)."""
    return job.skip_reason is not None and not job.already_done


def _record(job: Job, status: str, **fields: Any) -> dict[str, Any]:
    return {"input": str(job.source), "output": str(job.output), "status": status, **fields}


def _restore_one(
    job: Job,
    restorer: Restorer,
    on_tile,
    save_mask: bool,
    compare: bool,
    max_pixels: int,
    mask_file: Path | None = None,
    faces_to: tuple[Path, Path] | None = None,
) -> dict[str, Any]:
    """Restore one photo and write its outputs; ``faces_to`` (the output folder, the --save-faces folder) also
    writes its refined faces."""
    started = time.perf_counter()
    try:
        with PeakMemory() as memory:
            photo = read_photo(job.source, max_pixels=max_pixels or None)
            given = None if mask_file is None else read_photo(mask_file, max_pixels=max_pixels or None).pixels
            result: RestoreResult = restorer.restore(photo.pixels, on_tile=on_tile, mask=given)
            write_photo(job.output, photo.with_pixels(result.pixels))
            if save_mask and result.mask is not None:
                save_rgb(job.mask_path, result.mask[:, :, None])
            if compare:
                save_rgb(job.compare_path, comparison_sheet(photo.pixels, result.pixels))
            if faces_to is not None and result.faces:
                save_faces(job, *faces_to, result.faces)
    except OldPhotoError as error:
        return _record(job, "failed", error=str(error), seconds=round(time.perf_counter() - started, 3))
    except Exception as error:
        log.debug("unexpected error on %s", job.source, exc_info=True)
        message = f"{job.source}: unexpected {type(error).__name__}: {error} (run with -v for the traceback)"
        return _record(job, "failed", error=message, seconds=round(time.perf_counter() - started, 3))
    seconds = time.perf_counter() - started
    megapixels = photo.width * photo.height / 1e6
    return _record(
        job,
        "restored",
        width=photo.width,
        height=photo.height,
        megapixels=round(megapixels, 6),
        seconds=round(seconds, 3),
        seconds_per_megapixel=round(seconds / megapixels, 3) if megapixels else None,
        # PeakMemory measures the rise above the level at the start; the report gives the process's own peak.
        peak_memory_mb=round(memory.peak_resident_bytes / 1e6, 1),
        scratch_coverage=None if result.scratch_coverage is None else round(result.scratch_coverage, 6),
        mask_source=None if result.mask is None else (str(mask_file) if result.mask_given else "detected"),
        faces_found=result.faces_found,
        faces=None if result.faces is None else [face_record(face) for face in result.faces],
        tiles=result.tiles,
        stage_seconds={k: round(v, 3) for k, v in result.stage_seconds.items()},
        models=restorer.model_records(),
    )


def _write_report(path: Path, records: list[dict[str, Any]], restorer: Restorer) -> None:
    payload = {
        "runtime": restorer.runtime.describe(),
        "precision": restorer.runtime.precision,
        "stages": restorer.plan(),
        "images": records,
        "totals": _totals(records),
    }
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


def _totals(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Run totals over the restored images."""
    restored = [record for record in records if record["status"] == "restored"]
    megapixels = sum(record["megapixels"] for record in restored)
    seconds = sum(record["seconds"] for record in restored)
    return {
        "images": len(restored),
        "megapixels": round(megapixels, 6),
        "seconds": round(seconds, 3),
        "seconds_per_megapixel": round(seconds / megapixels, 3) if megapixels else None,
    }


def _print_plan(jobs: list[Job], options: RestoreOptions, runtime: str, given_masks: dict[Path, Path | None]) -> None:
    console.print(f"[bold]Plan[/] ({runtime}); nothing will be written")
    stages = [name for name, on in (("scratches", options.scratches), ("global", options.global_restoration), ("faces", options.faces)) if on]
    console.print(f"stages: {', '.join(stages)}")
    if options.scratches:
        threshold, dilation = options.detection_settings(get_spec(SCRATCH_MODEL))
        console.print(f"scratch detection: threshold {threshold:g}, dilation {dilation} px")
    table = Table()
    table.add_column("input", overflow="fold")
    table.add_column("output", overflow="fold")
    table.add_column("action", overflow="fold")
    for job in jobs:
        mask = given_masks.get(job.source)
        table.add_row(str(job.source), str(job.output), job.skip_reason or ("restore" if mask is None else f"restore with mask {mask}"))
    console.print(table)


def _print_summary(records: list[dict[str, Any]]) -> None:
    table = Table(title="restore summary")
    for column in ("input", "status", "size", "seconds", "scratch %", "note"):
        table.add_column(column)
    for record in records:
        size = f"{record['width']}x{record['height']}" if "width" in record else ""
        coverage = record.get("scratch_coverage")
        table.add_row(
            Path(record["input"]).name,
            {"restored": "[green]restored[/]", "failed": "[red]failed[/]", "refused": "[red]refused[/]"}.get(
                record["status"], record["status"]
            ),
            size,
            f"{record['seconds']:.2f}" if "seconds" in record else "",
            f"{100 * coverage:.2f}" if coverage is not None else "",
            record.get("error", ""),
        )
    console.print(table)
