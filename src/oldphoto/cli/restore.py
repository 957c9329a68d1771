"""`oldphoto restore INPUT... -o OUT`: options, progress and exit codes; the work is in the library."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

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
    megapixel_progress,
    note,
    precision_option,
    quiet_option,
    report_discovery,
    set_quiet,
)
from oldphoto.errors import DiskFullError, OldPhotoError
from oldphoto.gallery import GALLERY_NAME, write_gallery
from oldphoto.imageio import DEFAULT_MAX_PIXELS, image_megapixels, parse_jpeg_quality
from oldphoto.inputs import Job, discover_inputs, plan_jobs, split_own_outputs, user_mask_path
from oldphoto.reports import build_report, report_path, write_report
from oldphoto.restore.global_stage import DEFAULT_GLOBAL_BACKEND, GLOBAL_BACKENDS
from oldphoto.restore.jobs import FACE_FOLDERS, JobOutputs, JobRecord, check_output_folder, not_run_record, restore_job
from oldphoto.restore.pipeline import RestoreOptions, Restorer, plan_stages, require_stages, stage_caveats
from oldphoto.runtime import DEFAULT_TILE, DEFAULT_TILE_OVERLAP, make_runtime
from oldphoto.shards import parse_shard, select_shard

log = logging.getLogger(__name__)


GlobalModel = Enum("GlobalModel", {name: name for name in GLOBAL_BACKENDS}, type=str)  # type: ignore[misc]
GLOBAL_MODEL_HELP = "Global network: " + "; ".join(f"'{b.name}', {b.help}" for b in GLOBAL_BACKENDS.values()) + "."


class OutputExt(str, Enum):
    auto = "auto"
    png = "png"
    jpg = "jpg"
    jpeg = "jpeg"
    tif = "tif"
    tiff = "tiff"
    webp = "webp"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


OUTPUT = "Output"
STAGES = "Stages"
PERFORMANCE = "Performance"
CLUSTER = "Archives and clusters"


def restore(
    inputs: Annotated[
        list[str], typer.Argument(metavar="FILE|DIR|GLOB", help="Image files, folders or glob patterns.", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.", rich_help_panel=OUTPUT)],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into sub-folders of folder inputs.")
    ] = False,
    ext: Annotated[
        OutputExt,
        typer.Option(help="Output format; auto keeps each input's own.", case_sensitive=False, rich_help_panel=OUTPUT),
    ] = OutputExt.auto,
    jpeg_quality: Annotated[
        str,
        typer.Option(
            metavar="N|auto",
            help="JPEG quality 1..100 of JPEG outputs; auto keeps the input's own quality and chroma subsampling "
            "where they can be read, else 95 with full-resolution (4:4:4) colour.",
            rich_help_panel=OUTPUT,
        ),
    ] = "auto",
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
    gallery: Annotated[
        bool,
        typer.Option(
            "--gallery",
            help="Also write OUT/index.html: one page to look at the run (before/after slider, damage mask, faces, "
            "figures) that works opened from disk. Implies --save-mask.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
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
            help=GLOBAL_MODEL_HELP,
            rich_help_panel=STAGES,
        ),
    ] = GlobalModel(DEFAULT_GLOBAL_BACKEND),
    keep_tone: Annotated[
        bool,
        typer.Option(
            "--keep-tone",
            help="Keep the photo's own colour (sepia, cyanotype, toning): the restored luminance with the input's "
            "smoothed colour. By default toning casts are neutralised.",
            rich_help_panel=STAGES,
        ),
    ] = False,
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
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="K/N|auto|auto/N",
            help="Restore only shard K of N (0 <= K < N): each photo's shard is a stable hash of its path below its "
            "input root, so shards are disjoint, cover everything, and stay put when photos are added. auto: K and N "
            "from a Slurm array ($SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT); auto/N: K from $JOB_COMPLETION_INDEX "
            "(Kubernetes Indexed Job). --report may contain {shard}.",
            rich_help_panel=CLUSTER,
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            help="local: this process, photo by photo. ray: Ray Data workers that each load the models once "
            "(pip install 'oldphoto[ray]').",
            case_sensitive=False,
            rich_help_panel=CLUSTER,
        ),
    ] = Engine.local,
    workers: Annotated[
        int, typer.Option(min=1, metavar="N", help="Ray workers (--engine ray).", rich_help_panel=CLUSTER)
    ] = 1,
    cpus_per_worker: Annotated[
        float, typer.Option(min=0.01, metavar="N", help="CPUs per Ray worker; also its threads unless --threads.", rich_help_panel=CLUSTER)
    ] = 1.0,
    gpus_per_worker: Annotated[
        float, typer.Option(min=0.0, metavar="N", help="GPUs per Ray worker (e.g. 1, or 0.5 to share one).", rich_help_panel=CLUSTER)
    ] = 0.0,
    ray_address: Annotated[
        str | None,
        typer.Option(metavar="ADDRESS", help="Ray cluster to join, e.g. auto or ray://head:10001 (default: start a local Ray).", rich_help_panel=CLUSTER),
    ] = None,
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
            keep_tone=keep_tone,
        )
        save_mask = save_mask or gallery  # the gallery's mask toggle shows the saved masks
        chosen_shard = None if shard is None else parse_shard(shard, os.environ)
        report = None if report is None else report_path(report, None if chosen_shard is None else chosen_shard.name)
        outputs = JobOutputs(output, save_mask, compare, save_faces_dir, max_pixels, parse_jpeg_quality(jpeg_quality))
        runtime_args = (device, chosen_precision(precision, fp16), tile, tile_overlap, threads)
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
    if chosen_shard is not None:
        total = len(found)
        found = select_shard(found, chosen_shard)
        note(f"shard {chosen_shard.index}/{chosen_shard.count}: {len(found)} of {total} photos")
    jobs = plan_jobs(
        found,
        output,
        ext=None if ext is OutputExt.auto else ext.value,
        suffix=suffix,
        overwrite=overwrite,
        # --save-faces names crops by the output's stem: a.jpg and a.png would share them as they would a mask.
        side_files=save_mask or compare or save_faces_dir is not None,
    )
    masked = [(job, None if masks is None else user_mask_path(job, output, masks, suffix)) for job in jobs]

    if dry_run:
        with library_errors():
            require_stages(options)
            runtime = make_runtime(*runtime_args)
        _print_plan(jobs, options, runtime.describe(), dict((job.source, mask) for job, mask in masked) if masks else {})
        if save_faces_dir is not None:
            console.print(f"face crops: {save_faces_dir}/{{{','.join(FACE_FOLDERS)}}}/<stem>_<k>.png")
        raise typer.Exit(EXIT_FAILURES if problems or any(_refused(job) for job in jobs) else 0)

    to_run = [(job, mask) for job, mask in masked if job.skip_reason is None]
    with library_errors():
        require_stages(options)
        if to_run:
            check_output_folder(output)
        if engine is Engine.local:
            runtime = make_runtime(*runtime_args)
            restorer = Restorer(runtime, options)
            described, used_precision = runtime.describe(), runtime.precision
        else:
            from oldphoto.ray_engine import RaySettings

            settings = RaySettings(workers, cpus_per_worker, gpus_per_worker, ray_address)
            described = f"Ray: {workers} worker(s) x {cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU"
            used_precision = chosen_precision(precision, fp16)
    for caveat in stage_caveats(options, brief=True):
        note(f"{caveat} (the full caveat: oldphoto models list)")

    records: list[JobRecord] = [not_run_record(job) for job in jobs if job.skip_reason is not None]
    for record in records:
        if record.counts_as_failure:
            error_console.print(f"[red]not restored:[/] {record.input}: {record.error}", highlight=False)
    failures = len(problems)
    stopped: str | None = None
    try:
        with megapixel_progress() as progress:
            sizes = {job.source: image_megapixels(job.source) for job, _ in to_run}
            megapixels, finished, megapixels_done = sum(sizes.values()), 0, 0.0

            def photos_text() -> str:
                return f"{finished}/{len(to_run)} photos, {megapixels_done:.1f}/{megapixels:.1f} MP"

            photos = progress.add_task("photos", total=megapixels or None, text=photos_text())
            tiles = progress.add_task("tiles", total=None, visible=False, text="")

            def on_tile(done: int, total: int) -> None:
                progress.update(tiles, completed=done, total=total, visible=total > 1, text=f"{done}/{total} tiles")

            if engine is Engine.local:
                stream = _run_local(to_run, restorer, outputs, on_tile, lambda job: progress.update(photos, description=f"[cyan]{job.source.name}"))
            else:
                from oldphoto.ray_engine import RuntimeSettings, run_with_ray

                ray_runtime = RuntimeSettings(device, used_precision, tile, tile_overlap, threads)
                stream = run_with_ray(to_run, options, ray_runtime, outputs, settings)
            for record in stream:
                records.append(record)
                if record.counts_as_failure:
                    error_console.print(f"[red]failed:[/] {record.error}", highlight=False)
                finished += 1
                megapixels_done += sizes.get(Path(record.input), 0.0)
                progress.update(tiles, visible=False)
                progress.update(photos, completed=megapixels_done, text=photos_text())
    except DiskFullError as error:
        stopped = str(error)
    except OldPhotoError as error:  # the engine could not start (e.g. Ray missing or unreachable)
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        if report is not None or gallery:
            images = [record.to_json() for record in records]
            extra = {"engine": engine.value} | ({"shard": chosen_shard.name} if chosen_shard else {})
            payload = build_report(images, described, used_precision, plan_stages(options), **extra)
            if report is not None:
                write_report(report, payload)
            if gallery:
                index = write_gallery(output / GALLERY_NAME, payload)
                console.print(f"gallery: {index}", highlight=False)

    failures += sum(record.counts_as_failure for record in records)
    _print_summary(records)
    if stopped == "interrupted":
        error_console.print("[yellow]interrupted[/]: finished files are complete; no partial file was left behind")
        raise typer.Exit(EXIT_INTERRUPTED)
    if stopped is not None:
        error_console.print(f"[bold red]stopped:[/] {stopped}", highlight=False)
        raise typer.Exit(EXIT_FAILURES)
    if failures:
        raise typer.Exit(EXIT_FAILURES)


def _run_local(to_run, restorer: Restorer, outputs: JobOutputs, on_tile, on_start) -> Iterator[JobRecord]:
    """The local engine: the jobs one after another in this process."""
    for job, mask in to_run:
        on_start(job)
        yield restore_job(job, restorer, outputs, mask, on_tile)


def _refused(job: Job) -> bool:
    """Not restored for a reason other than an existing output (which counts as done)."""
    return job.skip_reason is not None and not job.already_done


def _print_plan(jobs: list[Job], options: RestoreOptions, runtime: str, given_masks: dict[Path, Path | None]) -> None:
    console.print(f"[bold]Plan[/] ({runtime}); nothing will be written")
    for step in plan_stages(options):
        console.print(f"- {step}")
    table = Table()
    table.add_column("input", overflow="fold")
    table.add_column("output", overflow="fold")
    table.add_column("action", overflow="fold")
    for job in jobs:
        mask = given_masks.get(job.source)
        table.add_row(str(job.source), str(job.output), job.skip_reason or ("restore" if mask is None else f"restore with mask {mask}"))
    console.print(table)


def _print_summary(records: list[JobRecord]) -> None:
    table = Table(title="restore summary")
    for column in ("input", "status", "size", "seconds", "scratch %", "note"):
        table.add_column(column)
    styles = {"restored": "[green]restored[/]", "failed": "[red]failed[/]", "refused": "[red]refused[/]"}
    for record in records:
        table.add_row(
            Path(record.input).name,
            styles.get(record.status, record.status),
            f"{record.width}x{record.height}" if record.width else "",
            f"{record.seconds:.2f}" if record.seconds is not None else "",
            f"{100 * record.scratch_coverage:.2f}" if record.scratch_coverage is not None else "",
            record.error or "",
        )
    console.print(table)
