"""`oldphoto train MODEL`: one sub-command per trainable model."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train the networks (resumable, seeded, with checkpoints).", no_args_is_help=True)


@app.callback()
def train() -> None:
    """Train the networks (resumable, seeded, with checkpoints)."""
