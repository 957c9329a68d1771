"""The `oldphoto` command."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Annotated

import typer

from oldphoto import __version__
from oldphoto.cli import degrade, evaluate, models, report, restore, train
from oldphoto.cli.common import install_help_metavars, setup_logging
from oldphoto.runtime import default_threads

install_help_metavars()

app = typer.Typer(
    name="oldphoto",
    help="Bring damaged old photographs back to life.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"oldphoto {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Bring damaged old photographs back to life."""
    # A file name that is not valid UTF-8 (an old disk's Latin-1 name) must not stop a run when it is printed.
    for stream in (sys.stdout, sys.stderr):
        if callable(getattr(stream, "reconfigure", None)):
            stream.reconfigure(errors="backslashreplace")
    setup_logging(verbose)
    import torch

    torch.set_num_threads(default_threads())


app.command("restore", no_args_is_help=True)(restore.restore)
app.command("degrade", no_args_is_help=True)(degrade.degrade)
app.command("evaluate", no_args_is_help=True)(evaluate.evaluate)
app.add_typer(models.app, name="models")
app.add_typer(train.app, name="train")
app.add_typer(report.app, name="report")


def _stop_on_sigterm() -> None:
    """Take SIGTERM (what `timeout`, Slurm, Kubernetes and systemd send to stop a job) as Ctrl-C: the commands then
    stop as they do on Ctrl-C (the photo in progress removed with its side files, the manifest, report and scores
    written so far, a resume hint). Left at its default, SIGTERM killed the process mid-photo: a mask without its
    photo, which a re-run then refused, a pair without a manifest, no report."""

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main() -> None:
    _stop_on_sigterm()
    app()
