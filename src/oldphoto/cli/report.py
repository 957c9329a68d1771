"""`oldphoto report merge A.json B.json ... -o all.json` and `oldphoto report gallery REPORT.json -o index.html`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from oldphoto.cli.common import console, file_path, library_errors, note
from oldphoto.gallery import check_gallery_target, write_gallery
from oldphoto.errors import ConfigError
from oldphoto.reports import (
    check_report_target,
    check_writable,
    is_merged_report,
    listed_files,
    looks_like_report,
    merge_reports,
    read_report,
    write_report,
)

app = typer.Typer(help="Work with restore --report files.", no_args_is_help=True)


@app.command("merge", no_args_is_help=True)
def merge(
    reports: Annotated[
        list[Path], typer.Argument(metavar="REPORT.json", help="Reports written by restore --report (e.g. one per shard).", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="The merged report to write.", parser=file_path)],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE even if it is not a JSON report.")] = False,
) -> None:
    """Combine the reports of several shards or runs into one: a photo recorded twice keeps its best outcome
    (restored > skipped > failed > refused); totals are recomputed."""
    with library_errors():
        payloads = [read_report(path) for path in reports]
        # Never a photo or output a report lists, whatever --overwrite (it turned a listed scan into JSON) ...
        listed = [path.resolve() for payload in payloads for path in listed_files(payload)]
        if output.resolve() in listed:
            raise ConfigError(f"-o {output} is a photo or output the reports list; give the merged report a file name of its own")
        check_report_target(output, reports, [], overwrite)
        existing_run = output.is_file() and output.stat().st_size > 0 and looks_like_report(output) and not is_merged_report(output)
        if existing_run and not overwrite:
            # ... nor, unasked, a run's own report (another shard's was replaced, its record lost): a merge replaces
            # an earlier merge.
            raise ConfigError(
                f"-o {output} is the report of a run, not a merge: replacing it would lose that run's record; give it "
                "as a REPORT to merge it too, choose another -o, or pass --overwrite"
            )
        merged = merge_reports(payloads, [str(path) for path in reports])
        write_report(output, merged)
    totals = merged["totals"]
    statuses = ", ".join(f"{count} {status}" for status, count in totals["statuses"].items()) or "none recorded"
    console.print(f"merged {len(reports)} report(s): {len(merged['images'])} photos ({statuses}) -> {escape(str(output))}", highlight=False)


@app.command("gallery", no_args_is_help=True)
def gallery(
    report: Annotated[
        Path, typer.Argument(metavar="REPORT.json", help="A report written by restore --report or report merge.", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="The HTML page to write.")],
    paths_from: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder the report's relative photo paths start from: where restore ran (default: the current folder).",
            file_okay=False,
            exists=True,  # a mistyped folder wrote a page of broken links and exited 0
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE even if it is not an oldphoto gallery page.")] = False,
) -> None:
    """Write one static page to look at a (merged) report's photos: before/after slider, damage mask (where
    --save-mask wrote it), faces and figures. It references the photos by relative paths and works opened from disk."""
    with library_errors():
        payload = read_report(report)
        root = paths_from or _paths_start(payload)
        # Even with --overwrite (an unknown page): never the report itself, nor a photo or output it lists.
        # Relative paths read from every folder they may start from: run elsewhere, the page replaced a listed scan.
        check_gallery_target(output, overwrite, protected=[report, *listed_files(payload, [root])])
        check_writable(output, "gallery page")  # a place below a file: one line now, not a traceback after the page
        write_gallery(output, payload, root=root)
    outputs = [Path(record["output"]) for record in payload["images"] if record.get("status") == "restored" and record.get("output")]
    if outputs and not any((root / path).exists() for path in outputs):
        note(
            f"none of the report's {len(outputs)} restored photos is found from {root}: relative paths start where "
            "restore ran; run this there, or give that folder with --paths-from"
        )
    else:
        # The page shows such a photo's result alone, with no before side and nothing said (an album moved since).
        inputs = [Path(record["input"]) for record in payload["images"] if record.get("status") == "restored"]
        lost = [path for path in inputs if not (root / path).exists()]
        if lost:
            note(f"{len(lost)} of the report's {len(inputs)} restored photos' inputs are not found (e.g. {lost[0]}): the page shows their results without a before side")
    console.print(f"gallery of {len(payload['images'])} photos -> {escape(str(output))}", highlight=False)


def _paths_start(payload: dict) -> Path:
    """Where the report's relative photo paths start when --paths-from is not given: the current folder, or, when
    none of its restored photos is found from there, the folder its run ran in (``working_directory``) if they are
    found from that one (a merged report of shards, opened from a login node)."""
    here = Path.cwd()
    outputs = [Path(record["output"]) for record in payload["images"] if record.get("status") == "restored" and record.get("output")]
    recorded = payload.get("working_directory")
    if recorded and outputs and not any((here / path).exists() for path in outputs) and any((Path(recorded) / path).exists() for path in outputs):
        return Path(recorded)
    return here
