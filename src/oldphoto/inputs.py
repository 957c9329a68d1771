"""Turn command-line inputs (files, folders, globs) into a plan of (input -> output) jobs.

Shared by `restore` and `degrade`; no pixels are read here.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from oldphoto.atomic import atomic_write_bytes, temporary_name_prefix
from oldphoto.errors import ConfigError
from oldphoto.imageio import EXTENSION_FORMATS, image_size, is_image_path

log = logging.getLogger(__name__)

OUTPUT_EXTENSIONS = {
    "png": ".png",
    "jpg": ".jpg",
    "jpeg": ".jpeg",
    "tif": ".tif",
    "tiff": ".tiff",
    "webp": ".webp",
}
"""``--ext`` value -> output suffix; the user's spelling is kept (``jpeg`` -> ``.jpeg``, not ``.jpg``)."""
AUTO_EXTENSION = "auto"
"""``--ext auto`` (like no ``--ext``): each output keeps its input's own format and suffix."""
GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class InputFile:
    path: Path
    relative: Path
    """Where the output goes below the output folder: sub-folder and name as found under a folder argument."""
    shard_key: str = ""
    """The path relative to its input root (the folder given, a glob's non-wildcard prefix, or a file's own folder),
    in POSIX form: what ``--shard`` hashes, so that adding files to an archive does not move the others."""
    named: bool = False
    """Given as a file argument of its own (not found in a folder or by oldphoto's own pattern matching): such a file
    is never replaced by ``--overwrite``, even when it is named like another input's output (a shell's ``*`` names
    every file too, so it is still left out as an earlier result rather than restored)."""


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path
    skip_reason: str | None = None
    """Why the job will not run (existing output, collision, would overwrite an input), or None."""
    already_done: bool = False
    """Skipped only because its output exists: counts as done, not as a failure."""

    @property
    def mask_path(self) -> Path:
        return self.output.with_name(f"{self.output.stem}{MASK_SUFFIX}{MASK_EXTENSION}")

    @property
    def compare_path(self) -> Path:
        return self.output.with_name(f"{self.output.stem}{COMPARE_SUFFIX}{COMPARE_EXTENSION}")


@dataclass(frozen=True)
class Discovered:
    files: list[InputFile]
    """The input photos in a stable order, without duplicates."""
    problems: list[str]
    """One message per argument that matched nothing."""
    ignored: list[Path]
    """Files inside folder arguments, or matched by glob patterns, that are not photos oldphoto reads (by extension;
    hidden files left out)."""
    linked_folders: list[Path] = field(default_factory=list)
    """Links to folders met by a recursive search, which does not follow them (a link may lead back up the tree)."""
    same_files: list[tuple[Path, Path]] = field(default_factory=list)
    """(left out, kept): two names of one file (a link and its target), read once under the name met first."""


def discover_inputs(arguments: list[str], recursive: bool = False) -> Discovered:
    """Expand files, folders and glob patterns."""
    found: list[InputFile] = []
    problems: list[str] = []
    ignored: list[Path] = []
    linked_folders: list[Path] = []
    seen: dict[Path, Path] = {}
    same_files: list[tuple[Path, Path]] = []

    def add(path: Path, relative: Path, root: Path, named: bool = False) -> None:
        key = path.resolve()
        if key not in seen:
            seen[key] = path
            found.append(InputFile(path, relative, path.relative_to(root).as_posix(), named))
        elif os.path.abspath(seen[key]) != os.path.abspath(path):  # another name of it, not the same path again
            same_files.append((path, seen[key]))

    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            if not _readable_folder(path):
                problems.append(f"{argument}: cannot read this folder (permission denied)")
                continue
            pattern = "**/*" if recursive else "*"
            # Hidden files and, with -r, everything in hidden folders (.thumbnails, .Trash, .git) are not photos of
            # the album: skipped alike (a file in a hidden folder was restored while a hidden file was not).
            entries = [p for p in path.glob(pattern) if not any(part.startswith(".") for part in p.relative_to(path).parts)]
            if recursive:
                # The search skips a sub-folder it may not read without a word: its photos would go unrestored unseen.
                problems += [f"{p}: cannot read this folder (permission denied)" for p in entries if p.is_dir() and not p.is_symlink() and not _readable_folder(p)]
            files = sorted(p for p in entries if p.is_file())
            images = [p for p in files if is_image_path(p)]
            # A link to nothing is named with the files left out, not skipped unseen.
            ignored += sorted([p for p in files if not is_image_path(p)] + [p for p in entries if p.is_symlink() and not p.exists()])
            if recursive:
                linked_folders += sorted(p for p in entries if p.is_symlink() and p.is_dir())
            if not images:
                hint = "" if recursive else " (use --recursive for sub-folders)"
                if (path / "manifest.json").is_file() and (path / "clean").is_dir():
                    # --recursive then only led to a second refusal: a set's parts are not photos to take as a whole.
                    hint = " (it is a set made by oldphoto degrade: give one of its folders, such as its clean/ or degraded/)"
                problems.append(f"{argument}: folder contains no images{hint}")
            for image in images:
                add(image, image.relative_to(path), path)
        elif path.is_file():
            add(path, Path(path.name), path.parent, named=True)
        elif GLOB_CHARACTERS & set(argument):
            found_files = sorted(Path(m) for m in glob.glob(str(path), recursive=True) if Path(m).is_file())
            # The notes.txt and Thumbs.db a "*" also matches are left out with a note, not failed (a glob-driven batch
            # job exited 1 where the same folder given as such exited 0); a pattern naming GIFs, or any other image
            # format oldphoto reads when named, takes them, as naming them does.
            matches = [m for m in found_files if _image_format_name(m)]
            ignored += [m for m in found_files if not _image_format_name(m)]
            if not found_files:
                problems.append(f"{argument}: pattern matches no files")
            elif not matches:
                problems.append(f"{argument}: pattern matches no photos oldphoto reads")
            root = glob_root(path)
            for match in matches:
                # Below the pattern's fixed prefix, as a folder keeps its sub-folders: "album/**/*.jpg" flattened
                # album/1910/x.jpg and album/1920/x.jpg into one output name, and refused the second.
                relative = match.relative_to(root)
                # A ".." after a wildcard ("album/*/../x.jpg") would lead the output out of -o: such a match keeps
                # only its name, as every glob match did before.
                add(match, Path(match.name) if ".." in relative.parts else relative, root)
        elif path.exists():  # a pipe or a device: there, but nothing a photo can be read from twice
            problems.append(f"{argument}: not a regular file (a pipe or a device); give an image file")
        else:
            problems.append(f"{argument}: no such file or folder")
    return Discovered(found, problems, ignored, linked_folders, same_files)


def _image_format_name(path: Path) -> bool:
    """Whether ``path``'s extension names an image format (one oldphoto collects from folders, or one it reads when
    a file is named: GIF, PPM, TGA...)."""
    return is_image_path(path) or Image.registered_extensions().get(path.suffix.lower()) in Image.OPEN  # not save-only (PDF)


def _readable_folder(folder: Path) -> bool:
    """Whether a folder's entries can be listed (permission bits do not tell that for root)."""
    try:
        with os.scandir(folder):
            return True
    except PermissionError:
        return False


def glob_root(pattern: Path) -> Path:
    """The non-wildcard prefix of a glob pattern: ``album/19*/*.jpg`` -> ``album``."""
    parts: list[str] = []
    for part in pattern.parts:
        if GLOB_CHARACTERS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path()


def plan_jobs(
    inputs: list[InputFile],
    out_dir: Path,
    *,
    ext: str | None = None,
    suffix: str = "",
    overwrite: bool = False,
    side_files: bool = False,
    written_side_files: Sequence[str] = (),
    protected: Sequence[Path] = (),
) -> list[Job]:
    """Decide each input's output path and whether it may be written (``protected``: more files never to write, as
    inputs are: :func:`scans_among_outputs`).

    An input is never overwritten, even when ``out_dir`` is its own folder; two inputs never write the
    same file (the output, or with ``side_files`` its mask and comparison sheet, which ``a.jpg`` and ``a.png`` would
    share); an existing output is skipped unless ``overwrite``, and so is a job whose output is new but one of whose
    ``written_side_files`` (``"mask_path"``, ``"compare_path"``: the ones this run writes) exists, such as a mask
    edited by hand.

    Args:
        ext: a key of :data:`OUTPUT_EXTENSIONS` (any case), or None / ``"auto"`` for each input's own format.

    Raises:
        ConfigError: ``ext`` is not a known output format, or ``suffix`` holds a path separator.
    """
    if any(separator in suffix for separator in ("/", "\\", os.sep)) or suffix in (".", ".."):
        raise ConfigError(f"--suffix {suffix!r} must be part of a file name, without a folder separator")
    choice = AUTO_EXTENSION if ext is None else ext.lower()
    if choice != AUTO_EXTENSION and choice not in OUTPUT_EXTENSIONS:
        valid = ", ".join([AUTO_EXTENSION, *OUTPUT_EXTENSIONS])
        raise ConfigError(f"unknown output format {ext!r}; use one of {valid}")
    wanted = OUTPUT_EXTENSIONS.get(choice)  # None for auto: keep each input's own suffix
    input_paths = {item.path.resolve() for item in inputs} | {path.resolve() for path in protected}
    claimed: dict[Path, Path] = {}
    jobs = []
    for item in inputs:
        extension = wanted or item.path.suffix
        if extension.lower() not in EXTENSION_FORMATS:
            # A photo given by name in a format oldphoto reads but does not write (a GIF): said, not done unseen (a
            # file of no image format fails on its header, so it needs no word on its output).
            if _image_format_name(item.path):
                log.warning("%s: %s is not an output format; the restored photo is written as PNG (--ext chooses another)", item.path, extension)
            extension = ".png"
        output = out_dir / item.relative.parent / f"{item.relative.stem}{suffix}{extension}"
        job = Job(item.path, output)
        targets = [output]
        if side_files:
            targets += [job.mask_path, job.compare_path]
        resolved = [t.resolve() for t in targets]
        reason, done = None, False
        existing = [path for path in (getattr(job, side) for side in written_side_files) if path.exists()]
        if any(t in input_paths for t in resolved):
            reason = "output would overwrite an input file; choose another -o folder or a --suffix"
        elif folders := [t for t in (output, *(getattr(job, side) for side in written_side_files)) if t.is_dir()]:
            # An output there counted as existing ("skipped", never restored); a mask or sheet there was called "a mask
            # you edited?" and, with --overwrite, failed to write after the photo was restored.
            reason = f"{folders[0]} is a folder, where an output would go; move it or choose another -o folder or a --suffix"
        elif any(t in claimed for t in resolved):
            taken = next(t for t in resolved if t in claimed)
            reason = f"output {taken} is {_claimed_by(claimed[taken], item.path)}"
        else:
            # The first photo to name a file owns it, written now or by an earlier run (or another shard): the
            # existing file is its result, never another photo's.
            claimed.update({t: item.path for t in resolved})
            missing = [side for side in written_side_files if not getattr(job, side).exists()]
            if output.exists() and not overwrite and missing:
                # Not done: what this run asks for besides the photo (a re-run with --save-mask --compare) was never
                # written, and was skipped as done without a word.
                wanted = " and ".join(SIDE_FILE_NAMES[side] for side in missing)
                reason = f"output exists, without the {wanted} asked for: use --overwrite to restore it again with them"
            elif output.exists() and not overwrite:
                reason, done = "output exists (use --overwrite to replace it)", True
            elif existing and not overwrite:
                reason = f"{existing[0]} exists and would be replaced (a mask you edited?); use --overwrite or another -o folder"
        jobs.append(Job(item.path, output, reason, already_done=done))
    return jobs


SIDE_FILE_NAMES = {"mask_path": "mask", "compare_path": "comparison sheet"}
"""What :func:`plan_jobs`' ``written_side_files`` are called in its messages."""


def _claimed_by(owner: Path, source: Path) -> str:
    """Why a photo cannot have the output file another photo of the run owns, and what to do."""
    if owner.parent.resolve() == source.parent.resolve():  # a.jpg and a.png side by side: only the name can differ
        return f"{owner.name}'s output too (two photos of one name in a folder): rename one, or restore it on its own into another -o folder"
    return (
        f"{owner}'s output too: run such inputs into separate -o folders, or restore their parent folder with "
        "--recursive, which keeps sub-folders apart"
    )


MASK_SUFFIX = "_mask"
MASK_EXTENSION = ".png"
COMPARE_SUFFIX = "_compare"
COMPARE_EXTENSION = ".jpg"


def split_own_outputs(inputs: list[InputFile], suffix: str = "") -> tuple[list[InputFile], list[InputFile]]:
    """Separate the inputs that are this tool's own outputs for another input of the same run.

    In the folder of an input ``<stem>.<ext>``, those are ``<stem><suffix>.<any ext>`` (only with a non-empty
    ``suffix``: with none, ``a.jpg`` next to ``a.png`` is two photos), ``<stem><suffix>_mask.png`` and
    ``<stem><suffix>_compare.jpg``, and, whatever the suffix, ``<stem>_mask.png`` and ``<stem>_compare.jpg``
    (what a run without ``--suffix`` wrote). Restoring a folder into itself, or re-running on an output folder,
    then never takes earlier results as new photos (``a_r_r.jpg``, ``a_mask_mask.png``).

    Returns:
        (the inputs to restore, the inputs left out), each in the given order.
    """
    stems: dict[Path, set[str]] = {}
    for item in inputs:
        stems.setdefault(item.path.parent, set()).add(item.path.stem)

    def own_output(path: Path) -> bool:
        folder_stems = stems[path.parent]
        name, extension = path.stem, path.suffix.lower()
        for ending, wanted in ((MASK_SUFFIX, MASK_EXTENSION), (COMPARE_SUFFIX, COMPARE_EXTENSION)):
            if extension == wanted and name.endswith(ending):
                base = name[: -len(ending)]
                if base in folder_stems or (suffix and base.endswith(suffix) and base[: -len(suffix)] in folder_stems):
                    return True
        return bool(suffix) and name.endswith(suffix) and name[: -len(suffix)] in folder_stems

    kept, left_out = [], []
    for item in inputs:
        (left_out if own_output(item.path) else kept).append(item)
    return kept, left_out


def scans_among_outputs(kept: list[InputFile], left_out: list[InputFile], suffix: str) -> list[InputFile]:
    """The left-out photos (:func:`split_own_outputs`) named ``<stem><suffix>.<ext>`` beside an input ``<stem>.*``
    that cannot be that input's restoration as it is now: their pixel size differs from it (a restoration keeps its
    photo's size, turned upright). Such a file is a scan of its own (``page.jpg`` and ``page_2.jpg`` restored with
    ``--suffix _2``) or an earlier restoration of a photo cropped since; the headers cannot tell which, so it is
    neither restored nor written over (protected as an input) and the user is told. Sizes are read from the headers."""
    if not suffix:
        return []
    by_stem = {(item.path.parent, item.path.stem): item.path for item in kept}
    scans = []
    for item in left_out:
        source = by_stem.get((item.path.parent, item.path.stem[: -len(suffix)])) if item.path.stem.endswith(suffix) else None
        if source is not None and not could_be_restoration_of(item.path, source):
            scans.append(item)
    return scans


def could_be_restoration_of(path: Path, source: Path) -> bool:
    """False only when both headers read and the pixel sizes differ, orientation aside (a photo turned upright keeps
    its sides)."""
    sides, source_sides = _sides(path), _sides(source)
    return sides is None or source_sides is None or sides == source_sides


def _sides(path: Path) -> tuple[int, ...] | None:
    """An image's (short side, long side), orientation aside; None when its header cannot be read."""
    size = image_size(path)
    return None if size is None else tuple(sorted(size))


def split_output_folder(inputs: list[InputFile], output: Path, *others: Path) -> tuple[list[InputFile], list[InputFile]]:
    """Separate the inputs that lie inside the output folder (or one of the ``others``: the ``--save-faces`` folder
    this run writes to, the ``--masks`` folder an earlier run wrote with its results) below the folder they were found in (``restore album -r -o album/restored``, run
    again): earlier results, which would otherwise be restored once more into ``restored/restored/``. An output
    folder that is the input folder itself (restoring in place with a ``--suffix``) leaves its photos in.

    Returns:
        (the inputs to restore, the inputs left out), each in the given order.
    """
    targets = [folder.resolve() for folder in (output, *others)]
    kept, left_out = [], []
    for item in inputs:
        path = item.path.resolve()
        # The folder the photo was found in: the folder given, a glob's fixed prefix (``album/**/*.jpg``), or its own.
        below = Path(item.shard_key) if item.shard_key else item.relative
        root = item.path.parents[len(below.parts) - 1].resolve()
        # Only an output folder strictly below that folder: a photo given from elsewhere (restore out/a.jpg -o .)
        # is what was asked for.
        inside = any(target in path.parents and root in target.parents for target in targets)
        (left_out if inside else kept).append(item)
    return kept, left_out


MaskListings = dict[Path, dict[str, list[Path]]]
"""Mask folders listed once per run: folder -> file stem -> the files of that stem (any extension), sorted."""


MASK_EXTENSION_PREFERENCE = (".png", ".tif", ".tiff", ".bmp", ".webp", ".jpg", ".jpeg", ".jfif")
"""Of two masks of one photo, the one used: PNG first (what ``--save-mask`` writes), then the other lossless formats,
JPEG last (its ringing turns a hard mask edge into a grey band)."""


def mask_candidates(job: Job, output: Path, masks: Path, suffix: str = "", listings: MaskListings | None = None) -> list[Path]:
    """Every file in the folder ``masks`` that is a damage mask of ``job``, the one to use first: ``<stem>_mask.<ext>``
    of the input's stem, then ``<stem><suffix>_mask.<ext>`` (what ``--save-mask --suffix`` writes), in the same
    sub-folder as the job's output below ``output`` (the layout ``--save-mask`` writes), each in the order of
    :data:`MASK_EXTENSION_PREFERENCE`. The extension's case does not matter (``_mask.PNG`` from an editor on another
    system). More than one is a second mask the user should be told of. ``listings`` caches each folder's files
    across the photos of a run (a folder of thousands of masks is listed once, not once per photo)."""
    folder = masks / job.output.parent.relative_to(output)
    listings = {} if listings is None else listings
    if folder not in listings:
        by_stem: dict[str, list[Path]] = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.is_file():
                by_stem.setdefault(path.stem, []).append(path)
        listings[folder] = by_stem
    files = listings[folder]
    stems = [job.source.stem] + ([job.source.stem + suffix] if suffix else [])
    found = []
    for stem in stems:
        # Every file: x_mask.png and x_mask.PNG, two files on most systems, are two masks.
        candidates = files.get(f"{stem}{MASK_SUFFIX}", [])
        found += [path for extension in MASK_EXTENSION_PREFERENCE for path in candidates if path.suffix.lower() == extension]
    return found


def unused_masks(masks: Path, used: Sequence[Path | None]) -> list[Path]:
    """The mask files (``*_mask.<image ext>``, in sub-folders too) in the ``--masks`` folder that no photo of the run
    takes: a mask saved with another ``--suffix``, or for a renamed photo, would otherwise be ignored unseen."""
    taken = {path.resolve() for path in used if path is not None}
    candidates = (
        path
        for path in masks.rglob(f"*{MASK_SUFFIX}.*")
        if path.is_file() and path.suffix.lower() in EXTENSION_FORMATS and path.stem.endswith(MASK_SUFFIX)
    )
    return sorted(path for path in candidates if path.resolve() not in taken)


MANIFEST_NAME = "manifest.json"
SET_PARTS = ("clean", "degraded", "mask", "ignore", "distractor", MANIFEST_NAME)
"""What `degrade` writes into its output folder: these and nothing else are removed by ``--overwrite``."""


PENDING_SET = ".oldphoto-degrade-pending.json"
"""Written by ``degrade`` into its -o folder before the first pair, listing the pairs it plans (``{"stems": [...]}``),
and removed once manifest.json lists the pairs made: a run killed before its manifest leaves a folder whose pairs are
still known to be its own."""


def _listed_stems(path: Path, key: str) -> set[str] | None:
    """The stems a manifest (``images``: records with a ``stem``) or a pending-set file (``stems``) lists; None when
    ``path`` is not such a file."""
    try:
        listed = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(listed, list):
        return None
    if key == "images":
        listed = [record.get("stem") for record in listed if isinstance(record, dict)]
    return {stem for stem in listed if isinstance(stem, str)}


def _set_stems(folder: Path) -> set[str] | None:
    """The stems of the pairs of the set ``oldphoto degrade`` made in ``folder``: those its manifest lists and those a
    run killed before its manifest planned (:data:`PENDING_SET`); None when it holds neither file (no set)."""
    listed = [_listed_stems(folder / MANIFEST_NAME, "images"), _listed_stems(folder / PENDING_SET, "stems")]
    found = [stems for stems in listed if stems is not None]
    return set().union(*found) if found else None


def holds_a_set(folder: Path) -> bool:
    """Whether ``folder`` holds a set ``oldphoto degrade`` made: its manifest.json (a JSON object with the set's
    ``images``), or, for a run killed before it wrote the manifest, its :data:`PENDING_SET` file. A folder of one's own
    photos or pairs that merely uses the parts' names is not one (clean/ and degraded/ of the same PNG names were taken
    for a stopped set, and --overwrite deleted a user's own pairs)."""
    return _set_stems(folder) is not None


def write_pending_set(folder: Path, stems: Sequence[str]) -> None:
    """Mark ``folder`` (created if need be) as holding a set being made of the pairs ``stems`` (:data:`PENDING_SET`)."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / PENDING_SET, (json.dumps({"stems": list(stems)}) + "\n").encode())


def clear_pending_set(folder: Path) -> None:
    """Remove ``folder``'s :data:`PENDING_SET` mark: the manifest lists the pairs made now, or none was made."""
    (folder / PENDING_SET).unlink(missing_ok=True)


def _set_pair_files(folder: Path) -> set[str]:
    """The file names the set in ``folder`` has in each part: ``<stem>.png`` for each pair of :func:`_set_stems`."""
    return {f"{stem}.png" for stem in _set_stems(folder) or set()}


def split_set_parts(inputs: list[InputFile], folders: Sequence[Path]) -> tuple[list[InputFile], list[InputFile]]:
    """Separate the inputs found, by descending into one of ``folders`` (the folder arguments), inside the parts of a
    set ``oldphoto degrade`` made (:func:`holds_a_set`): a second ``degrade -r`` of a folder took the first set's
    damaged photos and binary masks for clean photos. Files named, matched by a glob, or in a part given itself
    (``set/clean``) are kept: those are asked for.

    Returns:
        (the inputs to degrade, the inputs left out), each in the given order.
    """
    set_parts = set(SET_PARTS) - {MANIFEST_NAME}
    roots = [folder.resolve() for folder in folders if folder.is_dir()]
    verdicts: dict[Path, bool] = {}

    def in_a_set(item: InputFile) -> bool:
        path = item.path.resolve()
        below = [root for root in roots if root in path.parents]
        if not below:
            return False
        root = max(below, key=lambda folder: len(folder.parts))
        folder = path.parent
        while folder != root:  # the folders between the folder given and the file
            if folder.name in set_parts:
                if folder.parent not in verdicts:
                    verdicts[folder.parent] = holds_a_set(folder.parent)
                if verdicts[folder.parent]:
                    return True
            folder = folder.parent
        return False

    kept, left_out = [], []
    for item in inputs:
        (left_out if in_a_set(item) else kept).append(item)
    return kept, left_out


def prepare_set_folder(output: Path, sources: list[Path], overwrite: bool = False) -> None:
    """Make ``output`` ready for a new paired set: an empty or new folder is fine; a non-empty one is refused unless
    ``overwrite``, which removes an earlier set's parts (:data:`SET_PARTS`, nothing else) so that no stale pair remains.

    Raises:
        ConfigError: ``output`` is a file, is not empty (without ``overwrite``), or a part to remove holds a source.
    """
    if not output.exists():
        return
    if not output.is_dir():
        raise ConfigError(f"{output} is a file; give -o a folder for the set")
    if not any(not entry.name.startswith(".") for entry in output.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"{output} is not empty; pass --overwrite to replace the set in it, or choose an empty folder")
    if not holds_a_set(output):
        raise ConfigError(
            f"{output} holds files but no set made by oldphoto degrade (no manifest.json): --overwrite removes only "
            "such a set; choose an empty folder (a set an older oldphoto stopped before its manifest is not known as "
            "one either: delete it by hand)"
        )
    parts = [output / name for name in SET_PARTS if (output / name).exists()]
    for part in parts:
        root = part.resolve()
        inside = [source for source in sources if source.resolve() == root or root in source.resolve().parents]
        if inside:
            raise ConfigError(f"--overwrite would delete {part}, which holds the source {inside[0]}; choose another -o folder")
    # Only the pairs the set lists are removed: a part's whole folder went, with whatever the user had put in it (a
    # scan copied into clean/, notes in degraded/). Anything else there refuses the overwrite, naming it.
    ours = _set_pair_files(output)
    for part in parts:
        if part.is_dir() and not part.is_symlink():
            foreign = sorted(entry for entry in part.iterdir() if not entry.name.startswith(".") and (entry.name not in ours or not entry.is_file()))
            if foreign:
                raise ConfigError(
                    f"--overwrite would delete {foreign[0]}, which is not a pair of the set in {output}; move it, or "
                    "choose an empty folder"
                )
    for part in parts:
        log.info("removing %s of the earlier set", part)
        if not part.is_dir() or part.is_symlink():
            part.unlink()
            continue
        for entry in part.iterdir():
            # The set's pairs, and the temporary files of PNG writes that were cut off (".<name>.png.<random>.part",
            # also of a pair never finished); a user's own hidden file stays.
            cut_off = (temporary_name_prefix(entry.name) or "").endswith(".png.")
            if entry.is_file() and (entry.name in ours or cut_off):
                entry.unlink()
        with contextlib.suppress(OSError):  # a hidden file of the user's keeps the folder
            part.rmdir()
