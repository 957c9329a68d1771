"""One photo's restore job, from its file to its written outputs and its report record.

Shared by every engine (the local loop of ``oldphoto restore`` and the Ray engine), so that restore logic lives in
one place; the engines only decide where and in which order jobs run.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oldphoto.atomic import nearest_existing, temporary_name_prefix, temporary_prefix
from oldphoto.errors import DiskFullError, ImageWriteError, OldPhotoError, OutputNotWritableError
from oldphoto.evaluation.runner import PeakMemory
from oldphoto.imageio import (
    DEFAULT_MAX_PIXELS,
    Photo,
    format_for_path,
    format_size_problem,
    png_text,
    read_photo,
    save_rgb,
    to_rgb,
    write_photo,
)
from oldphoto.inputs import Job
from oldphoto.restore.faces import RefinedFace
from oldphoto.restore.pipeline import Restorer, RestoreResult, mask_from_photo

log = logging.getLogger(__name__)

FACE_FOLDERS = ("cropped", "restored", "cmp")
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""A write that failed for one of these will fail for every later photo too: the run stops."""


@dataclass(frozen=True)
class JobOutputs:
    """What a job writes besides the restored photo, and how it reads its inputs.

    ``output_root`` is the ``-o`` folder (the jobs' outputs lie below it); ``faces_dir`` is ``--save-faces``;
    ``max_pixels`` (0 = no limit) guards against decompression bombs.
    """

    output_root: Path
    save_mask: bool = False
    compare: bool = False
    faces_dir: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_quality: int | str = "auto"
    overwrite: bool = False
    """``--overwrite``: a face crop's path held by a file this tool did not write is replaced, not refused."""


@dataclass(frozen=True)
class JobRecord:
    """One photo's line in the report. ``status`` is restored, failed, skipped (output exists: done) or refused
    (not restored for another reason). The measurements are set only for restored photos."""

    input: str
    output: str
    status: str
    error: str | None = None
    seconds: float | None = None
    width: int | None = None
    height: int | None = None
    megapixels: float | None = None
    seconds_per_megapixel: float | None = None
    peak_memory_mb: float | None = None
    """The rise of the process's resident memory over the job (MB)."""
    scratch_coverage: float | None = None
    """Share of pixels marked damaged, 0..1 (None: no scratch stage and no given mask)."""
    scratch_dropped_coverage: float | None = None
    """Share of pixels in the detector's marks that the scratch verifier dropped as scene content, 0..1 (None: no
    verifier ran); ``restore --no-scratch-verify`` would repair them too."""
    mask_source: str | None = None
    mask_saved: bool | None = None
    """Whether the run's mask is at the photo's ``<stem>_mask.png`` (written by --save-mask, or the --masks file
    there): a mask left there by an earlier run is not this photo's (the gallery showed one over a later result)."""
    faces_found: int | None = None
    faces: list[dict[str, Any]] | None = None
    tiles: int | None = None
    stage_seconds: dict[str, float] | None = None
    models: list[dict[str, str]] | None = None
    device: str | None = None
    precision: str | None = None

    @property
    def counts_as_failure(self) -> bool:
        """Failed or refused: the run exits 1. A skip because the output exists counts as done."""
        return self.status in ("failed", "refused")

    def to_json(self) -> dict[str, Any]:
        """The report's dict: every field for a restored photo, only the set ones otherwise."""
        fields = asdict(self)
        if self.status == "restored":
            return fields
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


def check_output_folder(folder: Path, option: str = "-o") -> None:
    """Make sure files can be created in ``folder`` (made if missing) before any photo is restored, so that a
    read-only mount or a permission problem is one clear error, not one failure per photo (``option``: the option
    that names the folder, for the message).

    Raises:
        OutputNotWritableError: the folder cannot be created or written.
    """
    check_output_folder_path(folder, option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".oldphoto-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputNotWritableError(
            f"cannot write into the {_folder_name(option)} {folder} ({error.strerror or error}); choose a writable "
            f"{option} folder or fix its permissions"
        ) from None


def check_output_folder_path(folder: Path, option: str = "-o") -> None:
    """The part of :func:`check_output_folder` that writes nothing (for ``--dry-run``): the folder, or the nearest
    existing folder above it, is a folder the process may write in (a read-only mount says so too).

    Raises:
        OutputNotWritableError: ``folder`` or a folder above it is a file, or cannot be written.
    """
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise OutputNotWritableError(f"the {_folder_name(option)} {folder} cannot be made: {existing} is a file; give {option} a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        # The dry run planned "restore" for a read-only -o, which the run then refused.
        raise OutputNotWritableError(
            f"cannot write into the {_folder_name(option)} {folder} ({existing} is not writable); choose a writable "
            f"{option} folder or fix its permissions"
        )


def _same_file(path: Path, other: Path) -> bool:
    """Whether two paths name one file, however reached (a bind mount, another letter case on a case-insensitive
    disk: a comparison of resolved paths misses both)."""
    try:
        return os.path.samefile(path, other)
    except OSError:  # one of them is not there
        return False


def _folder_name(option: str) -> str:
    return "output folder" if option == "-o" else f"{option} folder"


def not_run_record(job: Job) -> JobRecord:
    """The record of a job that was planned not to run (``job.skip_reason`` is set)."""
    return JobRecord(str(job.source), str(job.output), "skipped" if job.already_done else "refused", error=job.skip_reason)


def comparison_sheet(before: np.ndarray, after: np.ndarray, max_side: int = 2400) -> np.ndarray:
    """Before | after side by side, or before over after for a photo more than twice as wide as tall (a panorama
    would shrink to a sliver), as (H', W', 3) float32 in [0, 1], shrunk so that neither side exceeds ``max_side``
    (a JPEG holds at most 65,500 px a side: a 66,000 px strip would fail to write)."""
    height, width = before.shape[:2]
    if width > 2 * height:
        gap = np.ones((max(4, height // 100), width, 3), np.float32)
        sheet = np.concatenate([to_rgb(before), gap, to_rgb(after)], axis=0)
    else:
        gap = np.ones((height, max(4, width // 100), 3), np.float32)
        sheet = np.concatenate([to_rgb(before), gap, to_rgb(after)], axis=1)
    return fit_within(sheet, max_side)


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, C) float32 ``image`` area-shrunk so that neither side exceeds ``max_side`` (as it is when it fits): the
    contact sheets of ``restore --compare`` and ``evaluate --save``, which a JPEG caps at 65,500 px a side."""
    import cv2

    scale = min(1.0, max_side / image.shape[0], max_side / image.shape[1])
    if scale >= 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)


def face_paths(job: Job, outputs: JobOutputs, index: int) -> dict[str, Path]:
    """Where ``--save-faces`` writes face ``index`` of ``job``: ``faces_dir/<part>/<sub-folder>/<stem>_<index>.png``
    for each part (cropped, restored, cmp), the sub-folder being the input's (as its output's below the root)."""
    assert outputs.faces_dir is not None
    sub = job.output.parent.relative_to(outputs.output_root)
    return {part: outputs.faces_dir / part / sub / f"{job.output.stem}_{index}.png" for part in FACE_FOLDERS}


FACE_CROP_TAG = ("Software", "oldphoto restore --save-faces")
"""PNG text chunk written into every face crop: a re-run removes only the stale crops that carry it, never a file of
the same name that something else wrote there (another tool's results folder uses the same ``<name>_<n>.png``)."""


def _is_face_crop(path: Path) -> bool:
    """Whether ``path`` is a PNG that ``--save-faces`` wrote (it carries :data:`FACE_CROP_TAG`); reads its header only."""
    return png_text(path).get(FACE_CROP_TAG[0]) == FACE_CROP_TAG[1]


def save_faces(
    job: Job,
    outputs: JobOutputs,
    faces: list[RefinedFace],
    written: list[Path] | None = None,
    retire: Callable[[Path], None] = Path.unlink,
) -> int:
    """Write the aligned and the restored crop (as pasted) of each refined face and the two side by side, numbered as
    the report lists the faces (largest first, every face found), after removing (``retire``) the crops an earlier
    run wrote for this photo (a re-run refining fewer faces would leave stale ones; only files carrying
    :data:`FACE_CROP_TAG`); each file written is added to ``written``.

    Raises:
        ImageWriteError: a crop's path holds a file that ``--save-faces`` did not write (without ``outputs.overwrite``),
            before any crop is written (the faces are known only after the restoration; the job then fails and its
            mask and sheet are removed): another tool's results are never written over unasked.
    """
    # Only the names this function writes (<stem>_0, _1, ...: no leading zeros), so that a tagged crop copied to
    # <stem>_00.png, as other tools number theirs, is not taken for a stale one of ours.
    stale = re.compile(rf"{re.escape(job.output.stem)}_(0|[1-9][0-9]*)\.png")
    for folder in {path.parent for path in face_paths(job, outputs, 0).values()}:
        if folder.is_dir():
            for path in folder.iterdir():
                if stale.fullmatch(path.name) and path.is_file() and _is_face_crop(path):
                    retire(path)
    wanted = [index for index, face in enumerate(faces) if face.refined and face.cropped is not None and face.restored is not None]
    foreign = [path for index in wanted for path in face_paths(job, outputs, index).values() if path.exists() or path.is_symlink()]
    if foreign and not outputs.overwrite:
        raise ImageWriteError(
            f"{foreign[0]} exists and was not written by --save-faces; move it, choose another --save-faces folder, "
            "or pass --overwrite to replace it"
        )
    for path in foreign:
        retire(path)
    count = 0
    for index in wanted:
        face = faces[index]
        paths = face_paths(job, outputs, index)
        for part, pixels in (("cropped", face.cropped), ("restored", face.restored), ("cmp", np.concatenate([face.cropped, face.restored], axis=1))):
            crop = Photo(pixels=np.ascontiguousarray(pixels, dtype=np.float32), format="PNG", text=dict([FACE_CROP_TAG]))
            write_photo(paths[part], crop)
            if written is not None:
                written.append(paths[part])
        count += 1
    return count


def face_record(face: RefinedFace) -> dict[str, Any]:
    """A face for the report: box [x, y, w, h] and landmarks [[x, y] x 5] in photo pixels, score, refined, the gate's
    estimated degradation (0..1: how much of the refiner's correction it needs) and the strengths applied to the
    correction's coarse and fine parts."""
    x1, y1, x2, y2 = face.face.box
    return {
        "box": [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)],
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.face.landmarks],
        "score": round(float(face.face.score), 4),
        "refined": face.refined,
        "degradation": None if face.degradation is None else round(face.degradation, 4),
        "strength": None if face.strength is None else round(face.strength, 4),
        "fine_strength": None if face.fine_strength is None else round(face.fine_strength, 4),
    }


def remove_partial_outputs(jobs: Iterable[Job]) -> int:
    """Delete the temporary files that atomic writes of these jobs' outputs left behind when their process was killed
    mid-write (``.<name>.<random>.part`` beside each output, mask and sheet); returns how many. The outputs themselves
    are never partial: they appear only when complete. Each output folder is listed once, however many jobs it holds.
    """
    prefixes: dict[Path, set[str]] = {}
    for job in jobs:
        for target in (job.output, job.mask_path, job.compare_path):
            prefixes.setdefault(target.parent, set()).add(temporary_prefix(target.name))
    removed = 0
    for folder, wanted in prefixes.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if temporary_name_prefix(entry.name) in wanted:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


def _out_of_space(error: BaseException) -> OSError | None:
    """The no-space OSError behind ``error`` (itself or its cause), if that is what stopped the write."""
    for candidate in (error, error.__cause__, error.__context__):
        if isinstance(candidate, OSError) and candidate.errno in NO_SPACE_ERRNOS:
            return candidate
    return None


def restore_job(
    job: Job,
    restorer: Restorer,
    outputs: JobOutputs,
    mask_file: Path | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> JobRecord:
    """Read ``job.source``, restore it (with the user's mask ``mask_file`` when given) and write its outputs.

    Every output is written atomically, so a job that fails or is killed leaves no partial file. A photo that cannot
    be read or restored gives a ``failed`` record; the batch goes on.

    Raises:
        DiskFullError: the output's file system is full (or over quota): every later photo would fail too.
    """
    started = time.perf_counter()

    def failed(message: str) -> JobRecord:
        return JobRecord(str(job.source), str(job.output), "failed", error=message, seconds=round(time.perf_counter() - started, 3))

    # The restored photo is written last, and the side files written before it are removed if anything fails: a
    # photo whose output exists counts as done and is skipped by the next run, which must then not lack its mask,
    # sheet or face crops. An --overwrite run's earlier side files are set aside first and put back then: removed,
    # the earlier photo, which stays, lost its mask (and later runs skip it).
    written: list[Path] = []
    set_aside: list[tuple[Path, Path]] = []

    def retire(path: Path) -> None:
        if path.is_file():
            earlier = path.with_name(f".{path.name}.{os.getpid()}.earlier")
            os.replace(path, earlier)
            set_aside.append((earlier, path))

    try:
        try:
            with PeakMemory() as memory:
                limit = {"max_pixels": outputs.max_pixels or None, "too_large_hint": "raise it with --max-pixels if you trust this file"}
                photo = read_photo(job.source, **limit)
                # A size the output's format cannot hold fails now, not after the restoration.
                too_large = format_size_problem(format_for_path(job.output), photo.pixels.shape[1], photo.pixels.shape[0])
                if too_large is not None:
                    raise ImageWriteError(f"{job.output}: {too_large}")
                given = None if mask_file is None else mask_from_photo(read_photo(mask_file, **limit))
                result: RestoreResult = restorer.restore(photo.pixels, on_tile=on_tile, mask=given, mask_name=str(mask_file))
                # The mask the user gave (--masks) is an input, never replaced: --save-mask --overwrite into the
                # folder it came from rewrote a hand-edited layer as a binarised copy.
                given_here = mask_file is not None and _same_file(job.mask_path, Path(mask_file))
                if outputs.save_mask and result.mask is not None and not given_here:
                    retire(job.mask_path)
                    save_rgb(job.mask_path, result.mask[:, :, None])
                    written.append(job.mask_path)
                if outputs.compare:
                    retire(job.compare_path)
                    save_rgb(job.compare_path, comparison_sheet(photo.pixels, result.pixels))
                    written.append(job.compare_path)
                if outputs.faces_dir is not None:
                    save_faces(job, outputs, result.faces or [], written, retire)
                write_photo(job.output, photo.with_pixels(result.pixels), jpeg_quality=outputs.jpeg_quality)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            for earlier, path in set_aside:
                os.replace(earlier, path)
            raise
        for earlier, _ in set_aside:
            earlier.unlink(missing_ok=True)
    except (OldPhotoError, OSError) as error:
        no_space = _out_of_space(error)
        if no_space is not None:
            raise DiskFullError(
                f"no space left to write {job.output} ({no_space.strerror or no_space}); free space or choose "
                "another -o folder, then run again: finished photos are kept and skipped"
            ) from None
        if isinstance(error, OldPhotoError):
            return failed(str(error))
        return failed(f"{job.source}: {error.strerror or error}")
    except Exception as error:
        log.debug("unexpected error on %s", job.source, exc_info=True)
        return failed(f"{job.source}: unexpected {type(error).__name__}: {error} (run with -v for the traceback)")
    seconds = time.perf_counter() - started
    megapixels = photo.width * photo.height / 1e6
    return JobRecord(
        str(job.source),
        str(job.output),
        "restored",
        width=photo.width,
        height=photo.height,
        megapixels=round(megapixels, 6),
        seconds=round(seconds, 3),
        seconds_per_megapixel=round(seconds / megapixels, 3) if megapixels else None,
        peak_memory_mb=round(memory.peak_resident_bytes / 1e6, 1),
        scratch_coverage=None if result.scratch_coverage is None else round(result.scratch_coverage, 6),
        scratch_dropped_coverage=None if result.dropped_coverage is None else round(result.dropped_coverage, 6),
        mask_source=None if result.mask is None else (str(mask_file) if result.mask_from_user else "detected"),
        mask_saved=job.mask_path in written or given_here,
        faces_found=result.faces_found,
        faces=None if result.faces is None else [face_record(face) for face in result.faces],
        tiles=result.tiles,
        stage_seconds={k: round(v, 3) for k, v in result.stage_seconds.items()},
        models=restorer.model_records(mask_given=result.mask_from_user),
        device=str(restorer.runtime.device),
        precision=restorer.runtime.precision,
    )
