"""Atomic file writes: a path holds either its old content or the complete new one, never a partial file.

Every file oldphoto writes goes through here (photos, masks, sheets, reports, manifests, galleries, weights).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _file_mode() -> int:
    """Permissions of a new file under the current umask (mkstemp would make it private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest ancestor that does (where a write there would be tried): the
    checks before a run ask of it whether it is a folder and can be written."""
    path = Path(path).resolve()
    return next(candidate for candidate in (path, *path.parents) if candidate.exists())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent/old or complete, never partial."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:  # includes KeyboardInterrupt: never leave a partial file behind
        Path(temporary).unlink(missing_ok=True)
        raise
