"""``restore --shard K/N``: a deterministic split of the inputs over the tasks of a Slurm array, a Kubernetes
Indexed Job, or any set of machines.

Each photo goes to the shard given by a stable hash of its path relative to its input root, so adding photos to an
archive never moves the others, and any shard can be re-run after a crash (with skip-existing it does only what is
missing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from oldphoto.errors import ConfigError
from oldphoto.inputs import InputFile


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: need 0 <= K < N and N >= 1 (--shard K/N)")

    @property
    def name(self) -> str:
        """``3-of-16``: what ``{shard}`` becomes in ``--report``."""
        return f"{self.index}-of-{self.count}"

    def holds(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) of an input's shard key: the first 8 bytes of its SHA-256, modulo ``count``.

    SHA-256 rather than Python's ``hash`` (salted per process) so that every machine agrees.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(inputs: Sequence[InputFile], shard: Shard) -> list[InputFile]:
    """The inputs that belong to ``shard``, in their given order."""
    return [item for item in inputs if shard.holds(item.shard_key)]


def _integer(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name)
    if value is None:
        raise KeyError(name)
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--shard auto: ${name} is {value!r}, not an integer") from None


def parse_shard(text: str, environ: Mapping[str, str]) -> Shard:
    """``K/N``, ``auto`` (Slurm array) or ``auto/N`` (Kubernetes Indexed Job) -> :class:`Shard`.

    ``auto``: K = (``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN``) / step, N = ``SLURM_ARRAY_TASK_COUNT``, the step
    being ``SLURM_ARRAY_TASK_STEP`` (1 when unset). ``auto/N``: K = ``JOB_COMPLETION_INDEX`` (Kubernetes gives no count).

    Raises:
        ConfigError: malformed text, or the environment lacks what ``auto`` needs.
    """
    text = text.strip()
    head, slash, tail = text.partition("/")
    if head == "auto" and not slash:
        try:
            task, first, count = (_integer(environ, name) for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"))
        except KeyError as missing:
            raise ConfigError(
                f"--shard auto reads the Slurm array's variables, but ${missing.args[0]} is not set: run it inside "
                "'sbatch --array', or give --shard K/N (or auto/N with $JOB_COMPLETION_INDEX on Kubernetes)"
            ) from None
        step = int(environ.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
        offset = task - first
        if step < 1 or offset % step:
            raise ConfigError(f"--shard auto: task {task} is not on the array's grid (min {first}, step {step})")
        return Shard(offset // step, count)
    try:
        count = int(tail) if slash else None
    except ValueError:
        count = None
    if count is None:
        raise ConfigError(f"--shard {text!r}: expected K/N (e.g. 3/16), auto (Slurm array) or auto/N (Kubernetes)")
    if head == "auto":
        try:
            index = _integer(environ, "JOB_COMPLETION_INDEX")
        except KeyError:
            raise ConfigError(
                "--shard auto/N reads $JOB_COMPLETION_INDEX, which Kubernetes sets in an Indexed Job, but it is not set; "
                "give --shard K/N instead"
            ) from None
        return Shard(index, count)
    try:
        return Shard(int(head), count)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: K must be an integer (K/N, e.g. 3/16)") from None
