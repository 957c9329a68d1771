"""`oldphoto restore INPUT... -o OUT`: options, progress and exit codes; the work is in the library."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from oldphoto.atomic import folder_lock
from oldphoto.cli import restore_options as opt
from oldphoto.cli.common import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    PrecisionChoice,
    chosen_precision,
    console,
    discovered_inputs,
    error_console,
    fail,
    library_errors,
    megapixel_progress,
    note,
    print_table,
    set_quiet,
)
from oldphoto.cli.restore_options import Engine, GlobalModel, OutputExt
from oldphoto.errors import ConfigError, DiskFullError, OldPhotoError
from oldphoto.gallery import (
    GALLERY_NAME,
    check_gallery_target,
    with_absolute_paths,
    with_earlier_photos,
    write_gallery,
)
from oldphoto.imageio import (
    DEFAULT_MAX_PIXELS,
    format_for_path,
    format_size_problem,
    header_sizes,
    image_megapixels,
    parse_jpeg_quality,
    upright_size,
)
from oldphoto.inputs import (
    Job,
    MaskListings,
    mask_candidates,
    plan_jobs,
    scans_among_outputs,
    split_output_folder,
    split_own_outputs,
    unused_masks,
)
from oldphoto.registry import get_spec
from oldphoto.reports import (
    build_report,
    check_report_target,
    continuing,
    report_path,
    write_report,
)
from oldphoto.restore.global_stage import DEFAULT_GLOBAL_BACKEND
from oldphoto.restore.jobs import (
    FACE_FOLDERS,
    JobOutputs,
    JobRecord,
    check_output_folder,
    check_output_folder_path,
    not_run_record,
    restore_job,
)
from oldphoto.restore.pipeline import (
    RestoreOptions,
    Restorer,
    check_stage_weights,
    plan_stages,
    require_stages,
    require_tile,
    required_models,
    stage_caveats,
)
from oldphoto.runtime import DEFAULT_TILE, DEFAULT_TILE_OVERLAP, make_runtime
from oldphoto.shards import parse_shard, select_shard

log = logging.getLogger(__name__)


def restore(
    inputs: opt.InputsOption,
    output: opt.OutputOption,
    recursive: opt.RecursiveOption = False,
    ext: opt.ExtOption = OutputExt.auto,
    jpeg_quality: opt.JpegQualityOption = "auto",
    suffix: opt.SuffixOption = "",
    overwrite: opt.OverwriteOption = False,
    save_mask: opt.SaveMaskOption = False,
    compare: opt.CompareOption = False,
    report: opt.ReportOption = None,
    gallery: opt.GalleryOption = False,
    dry_run: opt.DryRunOption = False,
    with_scratch: opt.WithScratchOption = True,
    masks: opt.MasksOption = None,
    scratch_threshold: opt.ScratchThresholdOption = None,
    scratch_verify: opt.ScratchVerifyOption = True,
    mask_dilation: opt.MaskDilationOption = None,
    global_restoration: opt.GlobalRestorationOption = True,
    global_model: opt.GlobalModelOption = GlobalModel(DEFAULT_GLOBAL_BACKEND),
    global_strength: opt.GlobalStrengthOption = 1.0,
    keep_tone: opt.KeepToneOption = False,
    grain: opt.GrainOption = True,
    weights: opt.WeightsOption = None,
    faces: opt.FacesOption = True,
    face_strength: opt.FaceStrengthOption = 1.0,
    min_face_size: opt.MinFaceSizeOption = 0,
    only_center_face: opt.OnlyCenterFaceOption = False,
    save_faces_dir: opt.SaveFacesDirOption = None,
    device: opt.DeviceOption = "auto",
    precision: opt.PrecisionOption = PrecisionChoice.auto,
    fp16: opt.Fp16Option = False,
    tile: opt.TileOption = DEFAULT_TILE,
    tile_overlap: opt.TileOverlapOption = DEFAULT_TILE_OVERLAP,
    threads: opt.ThreadsOption = None,
    max_pixels: opt.MaxPixelsOption = DEFAULT_MAX_PIXELS,
    shard: opt.ShardOption = None,
    engine: opt.EngineOption = Engine.local,
    workers: opt.WorkersOption = 1,
    cpus_per_worker: opt.CpusPerWorkerOption = 1.0,
    gpus_per_worker: opt.GpusPerWorkerOption = 0.0,
    ray_address: opt.RayAddressOption = None,
    quiet: opt.QuietOption = False,
) -> None:
    """Restore old photos: detect scratches, restore globally, refine faces."""
    set_quiet(quiet)
    with library_errors():
        options = RestoreOptions(
            scratch_threshold=scratch_threshold,
            verify_scratches=scratch_verify,
            mask_dilation=mask_dilation,
            scratches=with_scratch,
            global_restoration=global_restoration,
            faces=faces,
            face_strength=face_strength,
            min_face_size=min_face_size,
            only_center_face=only_center_face,
            global_model=global_model.value,
            global_strength=global_strength,
            keep_tone=keep_tone,
            match_grain=grain,
            given_masks=masks is not None,
            weights=parse_weights(weights or []),
        )
        save_mask = save_mask or gallery  # the gallery's mask toggle shows the saved masks
        chosen_shard = None if shard is None else parse_shard(shard, os.environ)
        report = None if report is None else report_path(report, None if chosen_shard is None else chosen_shard.name)
        outputs = JobOutputs(output, save_mask, compare, save_faces_dir, max_pixels, parse_jpeg_quality(jpeg_quality), overwrite)
        runtime_args = (device, chosen_precision(precision, fp16), tile, tile_overlap, threads)
    for ignored in _ignored_options(options, masks is not None, save_mask and not gallery, save_faces_dir is not None):
        note(ignored)
    if tile_overlap != DEFAULT_TILE_OVERLAP:
        # Said, not done unseen: --tile-overlap 0 gave outputs identical to the default's, and the report's runtime
        # line showed the 0.
        floors = {name: get_spec(name).contract.min_tile_overlap for names in required_models(options).values() for name in names}
        raised = {name: floor for name, floor in floors.items() if floor > tile_overlap}
        if raised:
            shown = ", ".join(f"{name} {floor} px" for name, floor in raised.items())
            note(f"--tile-overlap {tile_overlap} is raised to what these stages' models need: {shown}")
    if engine is Engine.local and (workers != 1 or cpus_per_worker != 1.0 or gpus_per_worker != 0.0 or ray_address):
        note("--workers, --cpus-per-worker, --gpus-per-worker and --ray-address are for --engine ray; this run is local")
    discovered = discovered_inputs(inputs, recursive)
    found, problems = discovered.files, discovered.problems
    found, own_outputs = split_own_outputs(found, suffix)
    # Named like another photo's output but not of its size: a scan of its own (page.jpg, page_2.jpg with --suffix
    # _2), or a restoration of a photo cropped since. Never written over; not restored either, as the headers cannot
    # tell which (restored, an earlier result came back as a_r_r.jpg).
    odd_sized = [item.path for item in scans_among_outputs(found, own_outputs, suffix)]
    if odd_sized:
        note(
            f"{len(odd_sized)} file(s) named like another photo's output are not of its size (e.g. {odd_sized[0]}): a "
            "scan of its own, or a result of a photo edited since? Left as they are; pass one on its own to restore it"
        )
        own_outputs = [item for item in own_outputs if item.path not in odd_sized]
    if own_outputs:
        note(
            f"left out {len(own_outputs)} file(s) that are oldphoto's own outputs for other inputs "
            f"(e.g. {own_outputs[0].path}); pass one on its own to restore it"
        )
    # A file named on the command line is never replaced, even when named like an earlier result: `restore page.jpg
    # page_r.jpg -o . --suffix _r --overwrite` replaced the scan page_r.jpg (of the same size) with page.jpg's result.
    named_outputs = [item.path for item in own_outputs if item.named] if overwrite else []
    if named_outputs:
        note(
            f"{len(named_outputs)} file(s) named as inputs are named like other inputs' outputs (e.g. {named_outputs[0]}): "
            "--overwrite does not replace a file named as an input, so the photo whose output it would be is not restored "
            "(to replace earlier results, give their folder or a quoted pattern: a shell's * names every file)"
        )
    # The --masks folder too: `restore album -r -o album/out --save-mask`, then `restore album -r -o album/final --masks
    # album/out` restored the first run's results once more, into album/final/out/.
    written_or_masks = [folder for folder in (save_faces_dir, masks) if folder is not None]
    found, earlier_results = split_output_folder(found, output, *written_or_masks)
    # Also in the report: the notes above are hidden by --quiet, and a cluster job's only record is its report.
    left_out = [
        {"input": str(path), "reason": reason}
        for paths, reason in (
            (odd_sized, "named like another photo's output, but not of its size"),
            ([item.path for item in own_outputs], "oldphoto's own output for another input"),
            ([item.path for item in earlier_results], "inside the output (or --save-faces or --masks) folder: an earlier result"),
        )
        for path in paths
    ]
    if earlier_results:
        note(
            f"left out {len(earlier_results)} file(s) inside the output folder {output} (or the --save-faces or --masks folder), "
            f"below the folder given as input (e.g. {earlier_results[0].path}): results of an earlier run, not "
            "photos to restore"
        )
    if not found:
        raise fail("no input images found: only oldphoto's own outputs")
    with library_errors():
        # Planned over every photo, then cut to the shard: two photos that would write the same file (a.jpg and
        # a.png with --ext png) may fall in different shards, and each shard must see which one owns it.
        jobs = plan_jobs(
            found,
            output,
            ext=None if ext is OutputExt.auto else ext.value,
            suffix=suffix,
            overwrite=overwrite,
            # --save-faces names crops by the output's stem: a.jpg and a.png would share them as they would a mask.
            side_files=save_mask or compare or save_faces_dir is not None,
            written_side_files=(("mask_path",) if save_mask else ()) + (("compare_path",) if compare else ()),
            protected=odd_sized + named_outputs,
        )
        if jpeg_quality != "auto" and not any(format_for_path(job.output) in ("JPEG", "WEBP") for job in jobs):
            note(f"--jpeg-quality {jpeg_quality} does nothing here: no output is a JPEG or WebP file")
        if chosen_shard is not None:
            mine = {item.path for item in select_shard(found, chosen_shard)}
            note(f"shard {chosen_shard.index}/{chosen_shard.count}: {len(mine)} of {len(found)} photos")
            jobs = [job for job in jobs if job.source in mine]
        if report is not None:
            side_outputs = [path for job in jobs for path in (job.output, job.mask_path, job.compare_path)]
            side_outputs += [output / GALLERY_NAME] if gallery else []  # the page would replace the report
            check_report_target(report, [item.path for item in found], side_outputs, None)
            crop_folders = [] if save_faces_dir is None else [(save_faces_dir / part).resolve() for part in FACE_FOLDERS]
            if any(folder == report.resolve() or folder in report.resolve().parents for folder in crop_folders):
                raise ConfigError(f"--report {report} lies where --save-faces writes face crops; choose another path for the report")
        if gallery:
            check_gallery_target(output / GALLERY_NAME, None)  # --overwrite means the photos' outputs, not a page of another's
    listings: MaskListings = {}
    candidates = [[] if masks is None else mask_candidates(job, output, masks, suffix, listings) for job in jobs]
    masked = [(job, found[0] if found else None) for job, found in zip(jobs, candidates, strict=True)]
    seconds = [(found[0], other) for found in candidates for other in found[1:]]
    if seconds:
        mask, other = seconds[0]
        note(f"{len(seconds)} photo(s) have a second mask file, not used (e.g. {other}: {mask} is used); remove the one you do not mean")
    if masks is not None and masks.is_dir() and chosen_shard is None and any(mask is None for _, mask in masked):
        # A photo without its mask while mask files go unused: most likely a mask saved under another --suffix (a
        # shard leaves the other shards' masks unused, so shards are not told).
        unmatched = unused_masks(masks, [mask for _, mask in masked] + [other for _, other in seconds])
        if unmatched:
            note(
                f"{len(unmatched)} mask file(s) in {masks} match no photo of this run (e.g. {unmatched[0]}): a mask is "
                "used when it is named <photo name>_mask or <photo name><--suffix>_mask, in the photo's sub-folder"
            )

    if dry_run:
        with library_errors():
            require_stages(options)
            check_stage_weights(options)
            # The stages' floor first: the runtime's own check of a small --tile advised a tile still under it.
            require_tile(tile, options)
            runtime = make_runtime(*runtime_args)
            if any(job.skip_reason is None for job, _ in masked):  # as the run, which checks only with work to do
                check_output_folder_path(output)  # what the run would refuse, found without writing anything
                if save_faces_dir is not None and options.faces:
                    check_output_folder_path(save_faces_dir, "--save-faces")
        # What the run would fail on that a header tells (a file that is no image, one over --max-pixels, a mask of
        # another size): the plan called them "restore" and exited 0, and the run then failed them.
        given_masks = {job.source: mask for job, mask in masked}
        doomed = {
            job.source: why for job in jobs if job.skip_reason is None and (why := _header_problem(job.source, max_pixels, job.output, given_masks.get(job.source)))
        }
        _print_plan(jobs, options, runtime.describe(), masks, given_masks if masks else {}, doomed)
        if save_faces_dir is not None:
            console.print(f"face crops: {escape(str(save_faces_dir))}/{{{','.join(FACE_FOLDERS)}}}/<stem>_<k>.png")
        raise typer.Exit(EXIT_FAILURES if problems or doomed or any(_refused(job) for job in jobs) else 0)

    to_run = [(job, mask) for job, mask in masked if job.skip_reason is None]
    with library_errors():
        require_stages(options)
        require_tile(tile, options)  # before the runtime's check, whose advice knows no stage (and before Ray starts)
        if engine is Engine.local:
            runtime = make_runtime(*runtime_args)
            restorer = Restorer(runtime, options)
            described, used_precision = runtime.describe(), runtime.precision
        else:
            from oldphoto.ray_engine import RaySettings, require_ray

            require_ray()
            settings = RaySettings(workers, cpus_per_worker, gpus_per_worker, ray_address)
            described = f"Ray: {workers} worker(s) x {cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU"
            used_precision = chosen_precision(precision, fp16)
        if to_run:  # after the engine's own checks: a run that cannot start leaves no folder behind
            faces_dir = save_faces_dir if save_faces_dir is not None and options.faces else None
            if faces_dir is not None:  # before -o is made: found now, not as each face's failure after its work
                check_output_folder_path(faces_dir, "--save-faces")
            check_output_folder(output)
            if faces_dir is not None:
                check_output_folder(faces_dir, "--save-faces")
    for caveat in stage_caveats(options, brief=True):
        note(f"{caveat} (the full caveat: oldphoto models list)")

    records: list[JobRecord] = [not_run_record(job) for job in jobs if job.skip_reason is not None]
    for record in records:
        if record.counts_as_failure:
            error_console.print(f"[red]not restored:[/] {escape(record.input)}: {escape(record.error or '')}", highlight=False)
    failures = len(problems)
    stopped: str | None = None
    summary_error: str | None = None
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
                stream = _run_local(to_run, restorer, outputs, on_tile, lambda job: progress.update(photos, description=f"[cyan]{escape(job.source.name)}"))
            else:
                from oldphoto.ray_engine import RuntimeSettings, run_with_ray

                ray_runtime = RuntimeSettings(device, used_precision, tile, tile_overlap, threads)
                stream = run_with_ray(to_run, options, ray_runtime, outputs, settings)
            for record in stream:
                records.append(record)
                if record.counts_as_failure:
                    error_console.print(f"[red]failed:[/] {escape(record.error or '')}", highlight=False)
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
            # "stopped": why the run ended early (null when it ran through), so that a report of an interrupted run,
            # missing the photos not reached, does not read as a complete one.
            extra = {"engine": engine.value, "stopped": stopped, "left_out": left_out} | ({"shard": chosen_shard.name} if chosen_shard else {})
            payload = build_report(images, described, used_precision, plan_stages(options, masks), **extra)
            try:
                if report is not None:
                    write_report(report, continuing(report, payload))
                if gallery:
                    with folder_lock(output):  # other shards may add their photos to the same page at this moment
                        shown = with_earlier_photos(output / GALLERY_NAME, with_absolute_paths(payload))
                        index = write_gallery(output / GALLERY_NAME, shown)
                    console.print(f"gallery: {escape(str(index))}", highlight=False)
            except OSError as error:  # a full disk after the last photo: said in one line, the photos stay
                summary_error = f"cannot write the report or gallery ({error.strerror or error}); the restored photos are complete"

    failures += sum(record.counts_as_failure for record in records)
    _print_summary(records)
    if summary_error is not None:
        error_console.print(f"[bold red]error:[/] {escape(summary_error)}", highlight=False)
    if stopped == "interrupted":
        error_console.print("[yellow]interrupted[/]: finished files are complete; no partial file was left behind")
        raise typer.Exit(EXIT_INTERRUPTED)
    if stopped is not None:
        error_console.print(f"[bold red]stopped:[/] {escape(stopped)}", highlight=False)
        raise typer.Exit(EXIT_FAILURES)
    if failures or summary_error is not None:
        raise typer.Exit(EXIT_FAILURES)


def parse_weights(values: list[str]) -> tuple[tuple[str, str], ...]:
    """``--weights MODEL=FILE`` values as (model, file) pairs.

    Raises:
        ConfigError: a value without ``=``, or with an empty side.
    """
    pairs = []
    for value in values:
        name, separator, path = value.partition("=")
        if not separator or not name.strip() or not path.strip():
            raise ConfigError(f"--weights {value!r}: give MODEL=FILE, e.g. mapping=runs/mapping/mapping.safetensors")
        pairs.append((name.strip(), path.strip()))
    return tuple(pairs)


def _ignored_options(options: RestoreOptions, masks_given: bool, save_mask: bool, save_faces: bool) -> list[str]:
    """Notes on options the chosen stages make do nothing, so that no request goes quietly unanswered."""
    used = {name for names in required_models(options).values() for name in names}
    notes = [
        f"--weights {name}: {name} is not used by the chosen stages" if name not in used else f"using your own weights for {name}: {path}"
        for name, path in options.weights
    ]
    if not options.scratches and not masks_given:
        if save_mask:
            notes.append("--save-mask writes nothing with --no-scratch (no mask is made)")
        if options.scratch_threshold is not None or options.mask_dilation is not None:
            notes.append("--scratch-threshold and --mask-dilation do nothing with --no-scratch")
    if masks_given and options.mask_dilation:
        notes.append("--mask-dilation grows detected masks only: a mask from --masks is used as it is")
    if options.global_strength != 1.0 and not options.global_restoration:
        notes.append("--global-strength does nothing with --no-global (there is no global restoration to temper)")
    elif options.global_strength == 0.0 and not options.scratches and not masks_given:
        notes.append("--global-strength 0 with --no-scratch: the global stage changes nothing (no damage is marked to repair)")
    if not options.global_restoration and options.global_model != DEFAULT_GLOBAL_BACKEND:
        notes.append("--global-model does nothing with --no-global")
    if not options.faces and (options.face_strength != 1.0 or options.min_face_size or options.only_center_face):
        notes.append("--face-strength, --min-face-size and --only-center-face do nothing with --no-faces")
    if not options.match_grain and not options.scratches and not masks_given:
        notes.append("--no-grain does nothing with --no-scratch (no damage is repaired)")
    if save_faces and not options.faces:
        notes.append("--save-faces writes nothing with --no-faces")
    elif save_faces and options.face_strength <= 0:
        notes.append("--save-faces writes nothing with --face-strength 0 (no face is refined)")
    return notes


def _run_local(to_run, restorer: Restorer, outputs: JobOutputs, on_tile, on_start) -> Iterator[JobRecord]:
    """The local engine: the jobs one after another in this process."""
    for job, mask in to_run:
        on_start(job)
        yield restore_job(job, restorer, outputs, mask, on_tile)


def _refused(job: Job) -> bool:
    """Not restored for a reason other than an existing output (which counts as done)."""
    return job.skip_reason is not None and not job.already_done


def _header_problem(path: Path, max_pixels: int, output: Path, mask: Path | None = None) -> str | None:
    """Why restoring ``path`` into ``output`` (with the user's ``mask``) would fail, as far as the headers tell (None:
    they read; the pixels may still not)."""
    size, photo_size = header_sizes(path)  # one read of the header
    if size is None:
        return "would fail: its header cannot be read (not an image, or a damaged file)"
    if max_pixels and size[0] * size[1] > max_pixels:
        return f"would fail: {size[0]}x{size[1]} is over --max-pixels {max_pixels}"
    too_large = format_size_problem(format_for_path(output), *size)
    if too_large is not None:
        return f"would fail: {too_large}"
    if mask is None:
        return None
    mask_size = upright_size(mask)
    if photo_size is None:  # the size reads, its EXIF orientation does not
        return "would fail: its EXIF orientation cannot be read"
    if mask_size is None:
        return f"would fail: the mask {mask} cannot be read"
    if mask_size != photo_size:  # both as the run reads them, upright: a transposed mask is refused there too
        return f"would fail: the mask {mask} is {mask_size[0]}x{mask_size[1]}, the photo {photo_size[0]}x{photo_size[1]} (upright)"
    return None


def _print_plan(
    jobs: list[Job],
    options: RestoreOptions,
    runtime: str,
    masks: Path | None,
    given_masks: dict[Path, Path | None],
    doomed: dict[Path, str],
) -> None:
    console.print(f"[bold]Plan[/] ({runtime}); nothing will be written")
    for step in plan_stages(options, masks):
        console.print(f"- {step}")
    table = Table()
    table.add_column("input", overflow="fold")
    table.add_column("output", overflow="fold")
    table.add_column("action", overflow="fold")
    for job in jobs:
        mask = given_masks.get(job.source)
        action = job.skip_reason or doomed.get(job.source) or ("restore" if mask is None else f"restore with mask {mask}")
        table.add_row(escape(str(job.source)), escape(str(job.output)), escape(action))
    print_table(table, console)


def _print_summary(records: list[JobRecord]) -> None:
    table = Table(title="restore summary")
    for column in ("input", "status", "size", "seconds", "scratch %", "note"):
        table.add_column(column)
    styles = {"restored": "[green]restored[/]", "failed": "[red]failed[/]", "refused": "[red]refused[/]"}
    names = [Path(record.input).name for record in records]
    if len(set(names)) < len(names):  # sub1/a.jpg and sub2/a.jpg: show where each is, below their common folder
        common = os.path.commonpath([os.path.abspath(record.input) for record in records])
        names = [os.path.relpath(os.path.abspath(record.input), common) for record in records]
    for record, name in zip(records, names):
        table.add_row(
            escape(name),  # a file named "[1931] grandma.jpg" is text, not markup
            styles.get(record.status, record.status),
            f"{record.width}x{record.height}" if record.width else "",
            f"{record.seconds:.2f}" if record.seconds is not None else "",
            f"{100 * record.scratch_coverage:.2f}" if record.scratch_coverage is not None else "",
            escape(record.error or ""),
        )
    print_table(table, console)
