"""Typed errors. Every message says what went wrong and what to do about it.

Only the CLI turns these into output and exit codes; the library just raises them.
"""

from __future__ import annotations


class OldPhotoError(Exception):
    """Base class of every error the library raises on purpose."""


class ImageReadError(OldPhotoError):
    """A file could not be read as an image (missing, empty, truncated, not an image)."""


class ImageTooLargeError(ImageReadError):
    """An image exceeds the decompression-bomb guard."""


class ImageWriteError(OldPhotoError):
    """An image could not be written."""


class UnknownModelError(OldPhotoError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(OldPhotoError):
    """A model's weights file is in none of the search locations."""


class WeightsIntegrityError(OldPhotoError):
    """A weights file exists but its sha256 or tensors do not match the registry."""


class StageUnavailableError(OldPhotoError):
    """A restoration stage was requested but its trained weights are not available."""


class DeviceError(OldPhotoError):
    """A requested device or precision is not available on this machine."""


class ConfigError(OldPhotoError):
    """Invalid user configuration (preset file, option values, ...)."""


class DataError(OldPhotoError):
    """Training or evaluation data is missing or inconsistent."""


class OutputNotWritableError(OldPhotoError):
    """The output folder cannot be written (read-only mount, permissions): nothing can be restored into it."""


class DiskFullError(ImageWriteError):
    """The output's file system is full or over quota: every later photo would fail too, so the run stops."""


class EngineError(OldPhotoError):
    """An execution engine (e.g. Ray) is not installed or cannot start."""
