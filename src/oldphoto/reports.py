"""The ``restore --report`` JSON file: building it, totals, and merging the reports of several shards."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from oldphoto.atomic import atomic_write_bytes, nearest_existing
from oldphoto.errors import ConfigError, DataError

log = logging.getLogger(__name__)

STATUS_RANK = {"restored": 3, "skipped": 2, "failed": 1, "refused": 0}
"""When two reports record the same photo (a shard re-run after a crash), the better outcome wins, then the later."""


def run_totals(images: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Run totals over the report's image records: photos restored, their megapixels and seconds, s/MP, and the
    count of each status."""
    images = list(images)
    restored = [record for record in images if record["status"] == "restored"]
    megapixels = sum(record["megapixels"] for record in restored)
    seconds = sum(record["seconds"] for record in restored)
    statuses: dict[str, int] = {}
    for record in images:
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
    return {
        "images": len(restored),
        "megapixels": round(megapixels, 6),
        "seconds": round(seconds, 3),
        "seconds_per_megapixel": round(seconds / megapixels, 3) if megapixels else None,
        "statuses": dict(sorted(statuses.items())),
    }


def build_report(images: list[dict[str, Any]], runtime: str, precision: str, stages: list[str], **extra: Any) -> dict[str, Any]:
    """The report's payload: the run's runtime and stages, the folder relative paths start from
    (``working_directory``), one record per photo and the totals (``extra`` adds top-level fields, e.g. the shard and
    the engine)."""
    return {
        "runtime": runtime,
        "precision": precision,
        "stages": stages,
        "working_directory": os.getcwd(),
        **extra,
        "images": images,
        "totals": run_totals(images),
    }


def _from_working_directory(record: dict[str, Any], folder: str | None) -> dict[str, Any]:
    """``record`` with its relative input and output paths made absolute from ``folder`` (None: left as they are,
    a report written before reports said where their run ran)."""
    if not folder:
        return record
    return {**record, **{key: os.path.join(folder, record[key]) for key in ("input", "output") if record.get(key) and not os.path.isabs(record[key])}}


def write_report(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


def check_report_target(path: Path, inputs: Iterable[Path], outputs: Iterable[Path], overwrite: bool | None) -> None:
    """Refuse a report path that would destroy something: a folder, one of the run's inputs or outputs,
    or an existing file that is not a JSON report (unless ``overwrite``; None: no flag allows that, as for `restore`,
    whose --overwrite replaces restored photos, not whatever file --report names), or one that cannot be written. An
    earlier report is replaced, as a re-run expects.

    Raises:
        ConfigError: what is wrong, and what to give instead.
    """
    check_file_target(path, "report", inputs, outputs, overwrite, looks_like_report)


def check_file_target(
    path: Path,
    what: str,
    inputs: Iterable[Path] = (),
    outputs: Iterable[Path] = (),
    overwrite: bool | None = None,
    ours: Callable[[Path], bool] = lambda path: False,
    suffix: str = ".json",
) -> None:
    """Refuse, before any work, a path a command would write a summary file to (a report, scores) when that would
    destroy something or fail only after all the work: a folder, one of the run's inputs or outputs, an existing
    file that ``ours`` does not recognise as one written before (unless ``overwrite``; None: the command has no
    --overwrite), or a place that cannot be written (a file where a folder should be, no permission). Nothing is
    left behind.

    Raises:
        ConfigError: what is wrong, and what to give instead.
    """
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name such as {path / ('report' + suffix)}")
    target = path.resolve()
    outputs = [Path(other).resolve() for other in outputs]
    for kind, paths in (("input", inputs), ("output", outputs)):
        if any(target == Path(other).resolve() for other in paths):
            raise ConfigError(f"{what} {path} is one of this run's {kind}s; give the {what} a {suffix} file name of its own")
    # A folder the run will make: `restore a.png -o out --report out` restored every photo, then could not write the
    # report (a cluster job's only record) because out/ had become a folder.
    if any(target in other.parents for other in outputs):
        raise ConfigError(f"{what} {path} is a folder this run writes its outputs into; give a file name such as {path / ('report' + suffix)}")
    if path.exists() and not overwrite and not ours(path):
        hint = " or pass --overwrite" if overwrite is not None else ""
        raise ConfigError(f"{what} {path} exists and is not one oldphoto wrote; give another name{hint}")
    check_writable(path, what)


def check_writable(path: Path, what: str) -> None:
    """Refuse a file path whose folder is a file or cannot be written, found by creating (and at once deleting) a
    temporary file in the nearest folder that exists: permission bits do not tell that for root or an immutable
    folder.

    Raises:
        ConfigError: where it fails.
    """
    folder = nearest_existing(path.resolve().parent)
    if not folder.is_dir():
        raise ConfigError(f"cannot write {what} {path}: {folder} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(prefix=".oldphoto-write-check.", dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"cannot write {what} {path}: {folder} is not writable ({error.strerror})") from None


def json_object_with(path: Path, keys: Iterable[str]) -> bool:
    """Whether an existing file is empty or a JSON object holding every one of ``keys``: a summary oldphoto wrote
    there before (a report has "images" and "totals", evaluate's scores "pairs" and "methods"). Any other file, JSON
    or not (a settings file, a degraded set's manifest), is not one to replace."""
    try:
        if path.stat().st_size == 0:
            return True
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(payload, dict) and all(key in payload for key in keys)


def looks_like_report(path: Path) -> bool:
    """Whether an existing file is empty or a report written by ``restore --report`` or ``report merge``."""
    return json_object_with(path, ("images", "totals"))


def continuing(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """This run's report ``payload`` to be written at ``path``: when the report there ended early (``stopped``:
    interrupted, a full disk) and this run finishes it, each photo this run skipped because the stopped run had
    restored it keeps that run's record (re-run, a crashed shard replaced its report, and those photos were only
    "output exists", without their figures). Nothing else of the earlier report is taken: a photo this run failed
    stays failed, and photos this run did not hold are not added."""
    if not path.is_file() or not looks_like_report(path):
        return payload
    try:
        earlier = read_report(path)
    except DataError:
        return payload
    if not earlier.get("stopped"):
        return payload
    folder, here = earlier.get("working_directory"), payload.get("working_directory")
    restored = {}
    for record in earlier["images"]:
        if record["status"] == "restored":
            absolute = _from_working_directory(record, folder)
            restored[_photo_key(absolute)] = record if folder == here else absolute  # its paths as this report reads
    images = [
        restored.get(_photo_key(_from_working_directory(record, here)), record) if record["status"] == "skipped" else record
        for record in payload["images"]
    ]
    return {**payload, "images": images, "totals": run_totals(images)}


def _photo_key(record: dict[str, Any]) -> str:
    """The key that makes one photo of two records naming it by other paths (relative in one, absolute in another)."""
    return str(Path(record["input"]).resolve()) if record["input"] else record["input"]


def report_path(template: Path, shard: str | None) -> Path:
    """``--report`` with ``{shard}`` replaced by the shard's name (``3-of-16``).

    Raises:
        ConfigError: the name has ``{shard}`` but the run is not sharded.
    """
    text = str(template)
    if "{shard}" not in text:
        _check_not_another_shards(template, shard)
        return template
    if shard is None:
        raise ConfigError(f"--report {template} contains {{shard}} but no --shard was given")
    return Path(text.replace("{shard}", shard))


def _check_not_another_shards(path: Path, shard: str | None) -> None:
    """Refuse a report path that holds the report of another shard (or of an unsharded run, for a shard): shards
    sharing one name replaced each other's reports, and a merge then saw only the last."""
    if not looks_like_report(path):
        return
    try:
        earlier = json.loads(path.read_text()).get("shard")
    except (OSError, ValueError):
        return
    if earlier == shard or (earlier is None and shard is None):
        return
    if shard is None:  # this run is not sharded: the advice about {shard} is not for it
        raise ConfigError(f"--report {path} holds the report of shard {earlier}; give this run's report another name, or move that one")
    whose = f"shard {earlier}" if earlier is not None else "an unsharded run (or a merge)"
    raise ConfigError(
        f"--report {path} holds the report of {whose}; with --shard, name each shard's report with {{shard}} "
        "(e.g. report-{shard}.json) and combine them with oldphoto report merge"
    )


def listed_files(payload: dict[str, Any], starts: Iterable[Path] = ()) -> list[Path]:
    """Every photo and output a report lists, relative ones read from each folder they may start from: ``starts``,
    the current folder and the report's ``working_directory``. For commands that write beside them (never over one)."""
    folders = {*starts, Path.cwd(), *([Path(payload["working_directory"])] if payload.get("working_directory") else [])}
    return [folder / record[key] for record in payload["images"] for key in ("input", "output") if record.get(key) for folder in folders]


def is_merged_report(path: Path) -> bool:
    """Whether ``path`` is a report written by :func:`merge_reports` (it names the reports it merged)."""
    try:
        return isinstance(json.loads(path.read_text()).get("merged_from"), list)
    except (OSError, ValueError, AttributeError):
        return False


def read_report(path: Path) -> dict[str, Any]:
    """Read a report written by ``restore --report`` (or by :func:`merge_reports`).

    Raises:
        DataError: the file is missing, is not JSON, or is not such a report.
    """
    try:
        payload = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such report") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable JSON report ({error})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("images"), list):
        raise DataError(f"{path}: not an oldphoto restore report (no 'images' list); pass files written by restore --report")
    if not isinstance(payload.get("working_directory"), (str, type(None))):
        raise DataError(f"{path}: its 'working_directory' is not text; pass reports written by restore --report or report merge")
    stages = payload.get("stages")
    if stages is not None and not (isinstance(stages, list) and all(isinstance(stage, str) for stage in stages)):
        raise DataError(f"{path}: its 'stages' are not a list of text; pass reports written by restore --report or report merge")
    for number, record in enumerate(payload["images"], 1):
        problem = _record_problem(record)
        if problem is not None:
            # Found here, not as a KeyError halfway through a merge or a gallery.
            raise DataError(f"{path}: photo record {number} {problem}; pass reports written by restore --report or report merge")
    return payload


def _record_problem(record: object) -> str | None:
    """What a report's photo record lacks that merging, totalling or showing it reads (None: nothing)."""
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not an object"
    for key in ("input", "output", "status"):
        if not isinstance(record.get(key), str):
            return f"has no {key!r} text"
    if record["status"] == "restored":
        for key in ("megapixels", "seconds"):
            if not _is_number(record.get(key)):
                return f"is restored but has no {key!r} number (written by an older oldphoto? restore again with --report)"
    # The other fields the gallery and the totals read, when there: a hand-edited "width": "wide" was a traceback.
    for key in OPTIONAL_NUMBERS:
        if record.get(key) is not None and not _is_number(record[key]):
            return f"has a {key!r} that is not a number"
    for key in OPTIONAL_TEXTS:
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"has a {key!r} that is not text"
    faces = record.get("faces")
    if faces is not None and not (isinstance(faces, list) and all(isinstance(face, dict) for face in faces)):
        return "has 'faces' that are not a list of objects"
    for number, face in enumerate(faces or [], 1):
        box = face.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(_is_number(value) for value in box)):
            return f"has face {number} whose 'box' is not [x, y, width, height]"
        for key in ("score", "strength", "fine_strength"):
            if face.get(key) is not None and not _is_number(face[key]):
                return f"has face {number} whose {key!r} is not a number"
    return None


OPTIONAL_NUMBERS = ("width", "height", "megapixels", "seconds", "seconds_per_megapixel", "scratch_coverage", "scratch_dropped_coverage", "peak_memory_mb", "faces_found")
"""A photo record's fields that are numbers (or null) when present."""
OPTIONAL_TEXTS = ("error", "mask_source")
"""A photo record's fields that are text (or null) when present."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def merge_reports(payloads: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """One report from the reports of several shards or runs (``names`` says where each came from).

    Photos are keyed by input path. A photo recorded twice (a shard re-run after a crash) keeps its best outcome
    (restored > skipped > failed > refused), and of equal ones the later report's. Photos keep the order in which
    they first appear. Totals are recomputed; the runtimes, stages and ``stopped`` of the parts are kept per part, and
    the merged ``stopped`` names each part that ended early (null when all ran through), so that a merge holding an
    interrupted shard does not read as a complete run (unless a later part of that shard ran through: re-run).
    """
    if not payloads:
        raise ConfigError("nothing to merge: give at least one report")
    # Relative paths start where each run ran: resolved from where the merge runs, two runs' "scan.png" of two
    # folders were one photo, and one of them was dropped. Runs that all ran in one folder (shards of one job) keep
    # their relative paths, so that the merged report still works moved elsewhere with `report gallery --paths-from`;
    # only runs from different folders have them made absolute.
    folders = {payload.get("working_directory") for payload in payloads}
    one_folder = len(folders) == 1
    if None in folders and not one_folder:
        log.warning(
            "some reports do not say where their run ran (written before reports did): their relative photo paths are "
            "kept as they are, and the merged report's working_directory is null"
        )

    def placed(entry: dict[str, Any], payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(the key of the photo ``entry`` names, the entry as the merged report keeps it)."""
        absolute = _from_working_directory(entry, payload.get("working_directory"))
        return _photo_key(absolute), entry if one_folder else absolute

    chosen: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        for record in payload["images"]:
            # The same photo named by another path (relative in one run, absolute in another) is one photo.
            key, record = placed(record, payload)
            earlier = chosen.get(key)
            if earlier is None or STATUS_RANK.get(record["status"], -1) >= STATUS_RANK.get(earlier["status"], -1):
                chosen[key] = record
    parts = [
        {"report": name, **{key: payload[key] for key in ("runtime", "precision", "stages", "shard", "engine", "stopped") if key in payload}}
        for name, payload in zip(names, payloads, strict=True)
    ]
    # A shard that ended early no longer counts once a later part of the same shard ran through (the shard re-run);
    # of unsharded runs, nothing tells which photos a later one covered.
    def rerun(k: int, part: dict[str, Any]) -> bool:
        return part.get("shard") is not None and any(not later.get("stopped") and later.get("shard") == part["shard"] for later in parts[k + 1 :])

    stops = [f"{part['report']}: {part['stopped']}" for k, part in enumerate(parts) if part.get("stopped") and not rerun(k, part)]
    # The files each run left out (oldphoto's own outputs among the inputs), once each; a photo one part left out
    # and another restored is not left out.
    left_out: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        for entry in payload.get("left_out") or []:
            if isinstance(entry, dict) and isinstance(entry.get("input"), str):
                key, entry = placed(entry, payload)
                left_out.setdefault(key, entry)
    first = payloads[0]
    images = list(chosen.values())
    return build_report(
        images,
        first.get("runtime", ""),
        first.get("precision", ""),
        first.get("stages", []),
        stopped="; ".join(stops) or None,
        left_out=[entry for key, entry in left_out.items() if key not in chosen],
        # Paths kept relative start where those runs ran; unknown for reports that do not say (null, not here: merged
        # with a report of another folder, such a report's relative paths were read from where the merge ran).
        working_directory=next(iter(folders)) if one_folder else None if None in folders else os.getcwd(),
        merged_from=parts,
    )
