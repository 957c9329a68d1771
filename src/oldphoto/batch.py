"""Turn command-line inputs (files, folders, globs) into a plan of (input -> output) jobs.

Shared by `restore` and `degrade`; no pixels are read here.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from oldphoto.imageio import EXTENSION_FORMATS, is_image_path

OUTPUT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "tif": ".tif", "webp": ".webp"}
GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class InputFile:
    path: Path
    relative: Path
    """Where the output goes below the output folder: sub-folder and name as found under a folder argument."""


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path
    skip_reason: str | None = None
    """Why the job will not run (existing output, collision, would overwrite an input), or None."""

    @property
    def mask_path(self) -> Path:
        return self.output.with_name(f"{self.output.stem}_mask.png")

    @property
    def compare_path(self) -> Path:
        return self.output.with_name(f"{self.output.stem}_compare.jpg")


@dataclass(frozen=True)
class Discovered:
    files: list[InputFile]
    """The input photos in a stable order, without duplicates."""
    problems: list[str]
    """One message per argument that matched nothing."""
    ignored: list[Path]
    """Files inside folder arguments that are not photos oldphoto reads (by extension; hidden files left out)."""


def discover_inputs(arguments: list[str], recursive: bool = False) -> Discovered:
    """Expand files, folders and glob patterns."""
    found: list[InputFile] = []
    problems: list[str] = []
    ignored: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(InputFile(path, relative))

    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and not p.name.startswith("."))
            images = [p for p in files if is_image_path(p)]
            ignored += [p for p in files if not is_image_path(p)]
            if not images:
                hint = "" if recursive else " (use --recursive for sub-folders)"
                problems.append(f"{argument}: folder contains no images{hint}")
            for image in images:
                add(image, image.relative_to(path))
        elif path.is_file():
            add(path, Path(path.name))
        elif GLOB_CHARACTERS & set(argument):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True) if Path(m).is_file())
            if not matches:
                problems.append(f"{argument}: pattern matches no files")
            for match in matches:
                add(match, Path(match.name))
        else:
            problems.append(f"{argument}: no such file or folder")
    return Discovered(found, problems, ignored)


def plan_jobs(
    inputs: list[InputFile],
    out_dir: Path,
    *,
    ext: str | None = None,
    suffix: str = "",
    overwrite: bool = False,
    side_files: bool = False,
) -> list[Job]:
    """Decide each input's output path and whether it may be written.

    An input is never overwritten, even when ``out_dir`` is its own folder; two inputs never write the
    same output; an existing output is skipped unless ``overwrite``.
    """
    input_paths = {item.path.resolve() for item in inputs}
    claimed: dict[Path, Path] = {}
    jobs = []
    for item in inputs:
        extension = OUTPUT_EXTENSIONS[ext] if ext else item.path.suffix
        if extension.lower() not in EXTENSION_FORMATS:
            extension = ".png"
        output = out_dir / item.relative.parent / f"{item.relative.stem}{suffix}{extension}"
        job = Job(item.path, output)
        targets = [output]
        if side_files:
            targets += [job.mask_path, job.compare_path]
        resolved = [t.resolve() for t in targets]
        reason = None
        if any(t in input_paths for t in resolved):
            reason = "output would overwrite an input file; choose another -o folder or a --suffix"
        elif output.resolve() in claimed:
            reason = f"output {output} is already written for {claimed[output.resolve()]}; use --suffix or --ext"
        elif output.exists() and not overwrite:
            reason = "output exists (use --overwrite to replace it)"
        if reason is None:
            claimed[output.resolve()] = item.path
        jobs.append(Job(item.path, output, reason))
    return jobs


def given_mask_path(job: Job, output: Path, masks: Path) -> Path | None:
    """The user's damage mask for ``job`` in the folder ``masks``, or None: ``<stem>_mask.<ext>`` of the input's
    stem, in the same sub-folder as the job's output below ``output`` (the layout ``--save-mask`` writes)."""
    folder = masks / job.output.parent.relative_to(output)
    for extension in EXTENSION_FORMATS:
        candidate = folder / f"{job.source.stem}_mask{extension}"
        if candidate.is_file():
            return candidate
    return None
