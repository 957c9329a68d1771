"""Console, logging and error handling shared by the commands.

The library raises typed :class:`~oldphoto.errors.OldPhotoError`; only here do they become output
and exit codes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from oldphoto.cli.launch import INTERRUPTED
from oldphoto.errors import ConfigError, OldPhotoError
from oldphoto.imageio import EXTENSION_FORMATS
from oldphoto.inputs import Discovered, discover_inputs

# No emoji codes: a file named "album:ok:1.png" was printed as "album🆗1.png" in every message, table and bar.
console = Console(emoji=False)
error_console = Console(stderr=True, emoji=False)

EXIT_FAILURES = 1
"""Some inputs failed (the rest were processed)."""
EXIT_USAGE = 2
"""The command could not start: bad options, unavailable stage, missing weights."""
EXIT_INTERRUPTED = INTERRUPTED
"""Stopped by Ctrl-C or SIGTERM (what was finished is kept)."""

_quiet = False


def set_quiet(quiet: bool) -> None:
    """``--quiet``: from now on :func:`note` prints nothing (progress and errors are always shown)."""
    global _quiet
    _quiet = quiet


def note(message: str) -> None:
    """A yellow ``note:`` line on stderr, unless ``--quiet``: caveats and hints, never errors."""
    if not _quiet:
        # soft_wrap: one line per note however narrow the terminal (Rich would otherwise wrap and indent nothing).
        error_console.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def print_table(table: Table, target: Console | None = None) -> None:
    """Print a table with every cell whole. Rich fits a table to the console by cutting cells ("0.74…",
    "scratch-un…"), and a file or a pipe (a log, CI) counts as 80 columns: a cut figure, name or error is lost.
    Out of a terminal a table wider than that goes out as wide as it needs (nothing wraps a log's lines); in a
    terminal too narrow for it, long cells wrap onto more lines instead."""
    target = console if target is None else target
    needed = target.measure(table, options=target.options.update_width(100_000)).maximum
    if needed <= target.width:
        target.print(table)
    elif not target.is_terminal:
        width = target.width
        target.width = needed
        try:
            target.print(table)
        finally:
            target.width = width
    else:
        for column in table.columns:
            column.overflow = "fold"
        target.print(table)


def quiet_option() -> typer.models.OptionInfo:
    """The ``--quiet`` flag, for ``Annotated[bool, quiet_option()] = False``."""
    return typer.Option("--quiet", "-q", help="Hide caveats and notes (progress and errors are still shown).")


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
        error_console.print(f"[red]error:[/] {escape(problem)}", highlight=False)
    if discovered.ignored:
        names = ", ".join(path.name for path in discovered.ignored[:3])
        more = f" and {len(discovered.ignored) - 3} more" if len(discovered.ignored) > 3 else ""
        readable = " ".join(sorted(EXTENSION_FORMATS))
        note(f"left out {len(discovered.ignored)} file(s) that are not photos oldphoto reads ({readable}), or links to nothing: {names}{more}")
    if discovered.same_files:
        dropped, kept = discovered.same_files[0]
        note(
            f"{len(discovered.same_files)} input(s) are another name (a link) of a photo already listed, restored "
            f"once, under the first name: e.g. {dropped} is {kept}"
        )
    if discovered.linked_folders:
        first = discovered.linked_folders[0]
        note(
            f"did not follow {len(discovered.linked_folders)} link(s) to folders (e.g. {first}): give such a folder "
            "as an input of its own to include its photos"
        )


def discovered_inputs(arguments: list[str], recursive: bool) -> Discovered:
    """:func:`~oldphoto.inputs.discover_inputs` for a command: the arguments that matched nothing are printed as
    errors and the folder files left out as a note (:func:`report_discovery`); no photo at all stops the command."""
    discovered = discover_inputs(arguments, recursive=recursive)
    report_discovery(discovered)
    if not discovered.files:
        # Each argument that matched nothing already said why, above; a summary line would only repeat it.
        raise typer.Exit(EXIT_USAGE) if discovered.problems else fail("no input images found")
    return discovered


def file_path(value: str) -> Path:
    """Parser of an option that names a file to write (``--report``, ``--json``, ``--csv``): a name ending in a folder
    separator is refused, since ``Path`` drops the separator (``--report out/`` wrote a file named ``out``)."""
    if value.endswith(("/", os.sep)):
        raise typer.BadParameter(f"{value!r} names a folder; give a file name such as {value}report.json")
    return Path(value)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn a library error that stops the whole command into one red line and exit code 2."""
    try:
        yield
    except OldPhotoError as error:
        raise fail(str(error)) from None


class _TextColumn(TextColumn):
    """rich's TextColumn without emoji codes (it reads ":smile:" in a file name as an emoji whatever the console)."""

    def render(self, task: Task) -> Text:
        text = Text.from_markup(self.text_format.format(task=task), style=self.style, justify=self.justify, emoji=False)
        if self.highlighter:
            self.highlighter.highlight(text)
        return text


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        _TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=error_console,
        transient=transient,
    )


def megapixel_progress() -> Progress:
    """A progress bar over megapixels, so that the time left follows the work left, not the photo count (one large
    scan takes as long as many small ones). Each task carries a ``text`` field, shown after its bar."""
    return Progress(
        _TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        _TextColumn("{task.fields[text]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=error_console,
    )


class PrecisionChoice(str, Enum):
    """``--precision`` values (resolved per device by :func:`oldphoto.runtime.resolve_precision`)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


PRECISION_HELP = (
    "Arithmetic precision (autocast; weights stay fp32): auto = bf16 on CPUs with native bfloat16 (AVX512-BF16/AMX), "
    "fp16 on CUDA/MPS, else fp32. fp32 is exact everywhere. --fp16 is a deprecated alias of --precision fp16."
)


def precision_option(panel: str | None = None, default_here: str | None = None) -> typer.models.OptionInfo:
    """The ``--precision`` option, for ``Annotated[PrecisionChoice, precision_option(...)] = PrecisionChoice.auto``.
    ``default_here``: a command whose default is None (so that ``--fp16`` alone can be told from it) says its real
    default in words."""
    help_text = PRECISION_HELP + (f" Default here: {default_here}." if default_here else "")
    return typer.Option(help=help_text, rich_help_panel=panel, case_sensitive=False, show_default=default_here is None)


def fp16_option(panel: str | None = None) -> typer.models.OptionInfo:
    """The deprecated, hidden ``--fp16`` flag, for ``Annotated[bool, fp16_option(...)] = False``."""
    return typer.Option("--fp16", help="Deprecated: use --precision fp16.", hidden=True, rich_help_panel=panel)


def chosen_precision(precision: PrecisionChoice | str, fp16: bool) -> str:
    """The precision to pass to :func:`~oldphoto.runtime.make_runtime`: ``--precision``, or fp16 for ``--fp16``.

    Raises:
        ConfigError: ``--fp16`` together with another explicit ``--precision``.
    """
    name = PrecisionChoice(precision).value
    if not fp16:
        return name
    if name not in ("auto", "fp16"):
        raise ConfigError(f"--fp16 means --precision fp16 and conflicts with --precision {name}; give only --precision")
    note("--fp16 is deprecated; use --precision fp16")
    return "fp16"


TYPE_METAVARS = {"int": "N", "float": "N", "str": "TEXT", "path": "PATH", "file": "FILE", "dir": "DIR", "Path": "PATH"}


def help_metavar(param: Any, ctx: Any) -> str | None:
    """What ``--help`` shows after an option or argument: its own metavar, else ``N``, ``0..1``, ``FILE``, ``DIR``,
    ``PATH``, ``TEXT`` or the choices, with ``...`` when it repeats; nothing for a flag. Built on Typer's own type
    label (``<int>``, ``<list[Path]>``, ``<float range>``, ``<a|b>``), which names Python types."""
    if param.metavar is not None:
        # An argument's metavar is already its name in the first column.
        return None if getattr(param, "param_type_name", "") == "argument" else param.metavar
    label = param.display_type(ctx).strip("<>")
    repeats = label.startswith("list[") and label.endswith("]")
    if repeats:
        label = label[5:-1]
    if label == "bool":
        return None
    if label.endswith(" range"):
        info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
        unit = info is not None and info.min == 0 and info.max == 1
        label = "0..1" if unit else "N"
    else:
        label = TYPE_METAVARS.get(label, label)
    return f"{label}..." if repeats or getattr(param, "nargs", 1) != 1 else label


def install_help_metavars() -> None:
    """Make Typer's rich help show :func:`help_metavar` instead of raw Python types (``<bool>``, ``<list[str]>``);
    a no-op with Typer versions that render click's metavars themselves."""
    import typer.core

    for cls in (typer.core.TyperOption, typer.core.TyperArgument):
        if hasattr(cls, "display_type_rich"):
            cls.display_type_rich = help_metavar  # type: ignore[method-assign]
