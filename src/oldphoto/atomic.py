"""Atomic file writes: a path holds either its old content or the complete new one, never a partial file.

Every file oldphoto writes goes through here (photos, masks, sheets, reports, manifests, galleries, weights).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


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


TEMPORARY_SUFFIX = ".part"
MAX_NAME_BYTES = 255
"""The longest file name, in bytes, that ext4 and most Linux file systems hold (APFS and NTFS count characters,
of which a name has no more than bytes)."""


def temporary_prefix(name: str) -> str:
    """``.<name>.``, with ``name`` cut so that the temporary file's whole name (plus mkstemp's 8 random characters
    and :data:`TEMPORARY_SUFFIX`) stays within :data:`MAX_NAME_BYTES`: a photo named with 241-255 bytes was restored
    and then could not be written ("File name too long"), although its output's own name fits."""
    room = MAX_NAME_BYTES - 2 - 8 - len(TEMPORARY_SUFFIX)
    while len(os.fsencode(name)) > room:
        name = name[:-1]  # whole characters: a cut through one made a name that is not valid UTF-8
    return f".{name}."


def temporary_name_prefix(entry: str) -> str | None:
    """The ``.<name>.`` prefix of a temporary file name :func:`atomic_write_bytes` makes (compare it with
    :func:`temporary_prefix` of the target's name), or None when ``entry`` is not one: mkstemp adds 8 random
    characters, then :data:`TEMPORARY_SUFFIX`."""
    tail = 8 + len(TEMPORARY_SUFFIX)
    return entry[:-tail] if entry.startswith(".") and entry.endswith(TEMPORARY_SUFFIX) and len(entry) > tail + 2 else None


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` when the block ends without an error; until then, and
    if it fails, ``path`` keeps its old content (or stays absent). For data too large to hold twice in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:  # includes KeyboardInterrupt: never leave a partial file behind
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent/old or complete, never partial."""
    with atomic_writer(path) as handle:
        handle.write(data)


LOCK_NAME = ".oldphoto.lock"
"""The empty file in a folder whose lock :func:`folder_lock` takes; left there (removing it would let two processes
hold locks on two different files)."""


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` while a file in it is read, changed and written back by one of several
    processes at once (shards of one run adding their photos to one gallery page: without it, the last to write
    dropped the photos of the others). A POSIX record lock on :data:`LOCK_NAME` in the folder: unlike ``flock`` on
    the folder itself, it holds across the machines of a cluster sharing the folder over NFS. Where no lock can be
    had (Windows, a folder that is not there or not writable) it only runs the block."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    try:
        handle = os.open(Path(folder) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    with contextlib.suppress(OSError):  # writable by all, whatever the umask: shards may run as different users
        os.fchmod(handle, 0o666)
    try:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(handle)  # releases the lock
