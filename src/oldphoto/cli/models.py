"""`oldphoto models list|verify`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from oldphoto.cli.common import (
    EXIT_FAILURES,
    console,
    error_console,
    library_errors,
    note,
    print_table,
)
from oldphoto.errors import OldPhotoError, WeightsIntegrityError
from oldphoto.registry import all_specs, get_spec
from oldphoto.weights import (
    WEIGHTS_ENV,
    locate_weights,
    parameter_count,
    verify_weights,
)

app = typer.Typer(help="List and verify the registered models.", no_args_is_help=True)


def _note_missing_weights_folder() -> None:
    """A note when $OLDPHOTO_WEIGHTS_DIR names no folder: the weights listed then come from the next folder searched,
    which a user who set it would not expect to read (a typo in the variable went unseen)."""
    folder = os.environ.get(WEIGHTS_ENV)
    if folder and not Path(folder).expanduser().is_dir():
        note(f"${WEIGHTS_ENV} is {folder}, which is not a folder: the weights below come from the other folders searched")


def _status(spec) -> tuple[str, str]:
    if not spec.shipped:
        return "missing", "not trained yet"
    try:
        path = locate_weights(spec)
    except OldPhotoError:
        return "missing", "file not found"
    size = f"{path.stat().st_size / 1e6:.1f} MB"
    try:
        verify_weights(spec)  # a truncated or empty file is not "present" (sha256, cached per file once checked)
    except WeightsIntegrityError:
        return "damaged", size
    return "present", size


def _status_text(status: str, caveat: str | None) -> str:
    if status == "damaged":
        return "[red]damaged: oldphoto models verify[/]"
    if status != "present":
        return f"[yellow]{status}[/]"
    return "[yellow]present (preliminary)[/]" if caveat else "[green]present[/]"


@app.command("list")
def list_models() -> None:
    """Show every registered model: task, parameters, file size, sha256 and whether its weights are present."""
    _note_missing_weights_folder()
    table = Table(title="oldphoto models")
    for column in ("name", "task", "parameters", "size", "sha256", "status"):
        table.add_column(column)
    for spec in all_specs():
        status, size = _status(spec)
        params = parameter_count(spec)
        table.add_row(
            spec.name,
            spec.task,
            f"{params:,}" if params is not None else "-",
            size,
            (spec.sha256 or "-")[:16],
            _status_text(status, spec.caveat),
        )
    print_table(table, console)
    for spec in all_specs():
        if spec.caveat and spec.shipped:
            console.print(f"[yellow]note:[/] {spec.name}: {escape(spec.caveat)}", highlight=False)


@app.command("verify")
def verify(
    names: Annotated[list[str] | None, typer.Argument(metavar="NAME", help="Models to verify (default: every shipped model).")] = None,
) -> None:
    """Check the sha256 of shipped weights and that they load with strict=True."""
    from oldphoto.weights import load_network

    _note_missing_weights_folder()

    with library_errors():
        specs = [get_spec(name) for name in names] if names else [s for s in all_specs() if s.shipped]
    failures = 0
    for spec in specs:
        try:
            path = verify_weights(spec)
            load_network(spec)
            console.print(f"[green]ok[/]      {spec.name}  {escape(str(path))}")
        except OldPhotoError as error:
            failures += 1
            error_console.print(f"[red]FAILED[/]  {spec.name}: {escape(str(error))}", highlight=False)
    if not specs:
        console.print("no shipped models to verify")
    if failures:
        raise typer.Exit(EXIT_FAILURES)
