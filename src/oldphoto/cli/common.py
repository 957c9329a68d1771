"""Console, logging and error handling shared by the commands.

The library raises typed :class:`~oldphoto.errors.OldPhotoError`; only here do they become output
and exit codes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from oldphoto.batch import Discovered
from oldphoto.errors import OldPhotoError
from oldphoto.imageio import EXTENSION_FORMATS

console = Console()
error_console = Console(stderr=True)

EXIT_FAILURES = 1
"""Some inputs failed (the rest were processed)."""
EXIT_USAGE = 2
"""The command could not start: bad options, unavailable stage, missing weights."""
EXIT_INTERRUPTED = 130


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=error_console, show_time=False, show_path=False)],
        force=True,
    )
    # Our debug output, not Pillow's chunk-by-chunk decoder trace.
    logging.getLogger("PIL").setLevel(logging.INFO)


def report_discovery(discovered: Discovered) -> None:
    """Print the arguments that matched nothing (errors) and the folder files left out (a note, so that nothing
    is skipped unseen)."""
    for problem in discovered.problems:
        error_console.print(f"[red]error:[/] {problem}", highlight=False)
    if discovered.ignored:
        names = ", ".join(path.name for path in discovered.ignored[:3])
        more = f" and {len(discovered.ignored) - 3} more" if len(discovered.ignored) > 3 else ""
        readable = " ".join(sorted(EXTENSION_FORMATS))
        error_console.print(
            f"[yellow]note:[/] left out {len(discovered.ignored)} file(s) that are not photos oldphoto reads "
            f"({readable}): {names}{more}",
            highlight=False,
        )


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    error_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn a library error that stops the whole command into one red line and exit code 2."""
    try:
        yield
    except OldPhotoError as error:
        raise fail(str(error)) from None


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=error_console,
        transient=transient,
    )
