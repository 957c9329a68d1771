"""`oldphoto evaluate` (filled in by its own issue)."""

from __future__ import annotations

from typing import Annotated

from oldphoto.cli.common import fail


def evaluate(args: Annotated[list[str] | None, __import__("typer").Argument(help="Not available yet.")] = None) -> None:
    """Not available in this build yet."""
    raise fail("'oldphoto evaluate' is not available in this build yet")
