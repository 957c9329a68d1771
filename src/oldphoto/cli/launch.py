"""The ``oldphoto`` console script's entry point, kept free of heavy imports.

Loading the CLI imports PyTorch and OpenCV, which takes seconds; a Ctrl-C in that time showed a Python traceback
through their import machinery. Here it ends the program as a Ctrl-C later does: one line, exit status 130.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130
"""128 + SIGINT, the shell's status for a program stopped by Ctrl-C (the commands exit with it too)."""


def main() -> None:
    try:
        from oldphoto.cli.app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting; nothing was done\n")
        raise SystemExit(INTERRUPTED) from None
    run()
