"""The training loop every recipe shares: schedule, validation, best-weights export, checkpoints, resume.

A recipe (one per model) owns its networks, optimisers, data and losses; :func:`run` owns the rest.
The checkpoint holds the step, every network and optimiser, the recipe's numpy generator and torch's
generator, so an interrupted run continues exactly where it stopped (``resume=True``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import save
from torch import nn

from oldphoto.atomic import atomic_write_bytes
from oldphoto.errors import ConfigError, DataError, OldPhotoError
from oldphoto.registry import ModelSpec
from oldphoto.reports import check_writable, json_object_with
from oldphoto.runtime import autocast, resolve_precision, select_device
from oldphoto.weights import grow_network_from

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRuntime:
    """Where and how long a recipe trains; the same fields for every recipe that honours them."""

    device: str = "cpu"
    precision: str = "fp32"
    """auto, fp32, or bf16 / fp16 autocast (see :class:`Accelerator`)."""
    workers: int = 0
    """Background processes drawing the damage (0: in the training process, exactly resumable)."""
    time_budget: float | None = None
    """Seconds of training at most (see :class:`Schedule`)."""

    @property
    def default(self) -> bool:
        """CPU, fp32, in-process data, no time limit: what every recipe can do."""
        return self.device == "cpu" and self.precision == "fp32" and self.workers == 0


@dataclass(frozen=True)
class Accelerator:
    """Where a recipe trains and in which precision: ``fp32``, or ``bf16`` / ``fp16`` autocast (the forward pass
    and loss run in half precision where PyTorch deems it safe; weights, gradients and optimiser stay fp32)."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"

    @classmethod
    def of(cls, device: str, precision: str) -> Accelerator:
        """The accelerator for a device name and ``auto|fp32|bf16|fp16``, resolved and checked as ``restore`` does
        (:func:`oldphoto.runtime.resolve_precision`: a clear error for a precision the device cannot do well)."""
        resolved = select_device(device)
        return cls(resolved, resolve_precision(precision, resolved))

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def put(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The tensors on this device (float32 kept: autocast decides what runs in half precision)."""
        return tuple(t.to(self.device, non_blocking=True) for t in tensors)


@dataclass(frozen=True)
class Schedule:
    steps: int
    learning_rate: float
    validate_every: int
    checkpoint: str
    out: str
    """Where the best network (by validation score) is exported as safetensors, with a JSON sidecar."""
    time_budget: float | None = None
    """Seconds of training (counted over resumes): the run ends when the steps or this run out, whichever comes
    first, and the learning rate decays over whichever is further along (for a borrowed GPU's fixed minutes)."""
    overwrite: bool = False
    """A run that does not resume may replace an existing checkpoint and weights file (else it refuses to start)."""

    def progress(self, step: int, seconds: float) -> float:
        """How far along the run is, 0..1: by steps, or by time when a budget is set and time runs out first."""
        done = step / self.steps
        if self.time_budget:
            done = max(done, seconds / self.time_budget)
        return min(1.0, done)


VALIDATION_SEED_OFFSET = 10_000
"""A recipe's validation data is drawn with the seed ``VALIDATION_SEED_OFFSET + seed``: apart from the training draws
(seeded with ``seed``), and the same for every run with that seed."""


def validation_rng(seed: int, part: int = 0) -> np.random.Generator:
    """The generator of a recipe's fixed validation data for the training seed ``seed``; ``part`` numbers further
    validation sets of one recipe (1: vae-old's real photos), each with a seed of its own."""
    return np.random.default_rng(VALIDATION_SEED_OFFSET * (1 + part) + seed)


@dataclass(frozen=True)
class TrainSetup:
    """What every recipe's config shares, meaning the same in each: data, outputs, schedule, seed, start, runtime."""

    data: tuple[str, ...]
    """Folders of training photos (clean photos; for the face recipes, photos with one clearly visible face each)."""
    out: str
    """Where the best network (by validation score) is exported as safetensors, with a JSON sidecar."""
    checkpoint: str
    """The checkpoint, written at each validation and continued from with ``resume``."""
    steps: int
    batch_size: int
    learning_rate: float
    """The peak learning rate (see :func:`learning_rate_at`)."""
    damage_dirs: tuple[str, ...] = ()
    """Folders of RGBA damage stamps; empty: the stamps bundled with the package (given folders replace them)."""
    seed: int = 0
    """Seeds the training data, the damage and the initialisation; the validation data's seed derives from it
    (:meth:`validation_rng`)."""
    validate_every: int = 250
    init: str | None = None
    """Start the trained network from these weights (safetensors) instead of a random initialisation: fine-tuning,
    or growing a network by layers the file lacks."""
    runtime: TrainRuntime = TrainRuntime()
    """Device, precision, data workers and time budget (each recipe says which it honours)."""
    overwrite: bool = False
    """A run that does not resume may replace an existing ``checkpoint`` and ``out`` (else it refuses to start)."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "validate_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)} must be 1 or more")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"--learning-rate {self.learning_rate} must be a finite number more than 0")
        if self.runtime.time_budget is not None and not self.runtime.time_budget > 0:
            raise ConfigError("--time-budget must be more than 0 minutes")

    def schedule(self) -> Schedule:
        return Schedule(
            self.steps, self.learning_rate, self.validate_every, self.checkpoint, self.out, self.runtime.time_budget, self.overwrite
        )

    def validation_rng(self, part: int = 0) -> np.random.Generator:
        """The generator of the recipe's fixed validation data (see :func:`validation_rng`)."""
        return validation_rng(self.seed, part)


@dataclass
class TrainState:
    step: int = 0
    best: dict | None = None
    history: list[dict] = field(default_factory=list)
    out: str | None = None
    """The --out of the run a resumed state comes from, as its checkpoint names it (None: a new run, or an older
    checkpoint that does not say)."""
    run_checkpoint: str | None = None
    """That run's --checkpoint, as its checkpoint names it."""


class Recipe(Protocol):
    name: str
    rng: np.random.Generator
    """The recipe's only numpy randomness (data and damage); checkpointed."""

    def modules(self) -> dict[str, nn.Module]:
        """Everything trained, by name (checkpointed)."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser, by name (checkpointed; the schedule sets their learning rate)."""

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns its losses by name."""

    def validate(self) -> dict[str, float]:
        """Figures on the fixed validation set; must include ``score`` (higher is better)."""

    def exported(self) -> nn.Module:
        """The network whose weights ship."""

    def metadata(self) -> dict[str, Any]:
        """Recipe config and architecture, stored beside the exported weights."""


class SingleNetworkRecipe:
    """What a recipe training one network with one optimiser has in common (checkpoint key ``network``)."""

    network: nn.Module
    optimizer: torch.optim.Optimizer

    def modules(self) -> dict[str, nn.Module]:
        return {"network": self.network}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"network": self.optimizer}

    def exported(self) -> nn.Module:
        return self.network


def check_loss_weights(**weights: float) -> None:
    """Refuse a loss weight (``ssim_weight=0.2`` is ``--ssim-weight``) that is not a finite number of 0 or more, before
    the run: a NaN or negative SSIM weight dropped its term without a word, a negative weight of another term turned
    it around, NaN elsewhere stopped the run as "diverged ... lower --learning-rate", and NaN made the weights card
    invalid JSON.

    Raises:
        ConfigError: the option and what it needs.
    """
    for name, value in weights.items():
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"--{name.replace('_', '-')} {value} must be a finite number, 0 or more")


def warn_unused_options(needs: Sequence[tuple[bool, str, str]]) -> None:
    """A warning for each option set that does nothing in this run: ``needs`` holds (set away from its default,
    the option, what it needs) for each. Such a value would otherwise be accepted in silence and written into the
    weights card as if it had been used (``train scratch --real-fraction 0.9`` without ``--real``)."""
    for given, option, needed in needs:
        if given:
            log.warning("%s does nothing without %s", option, needed)


def initial_network(spec: ModelSpec, init: str | None) -> nn.Module:
    """A fresh network of ``spec``, or one started from the weights file ``init`` (``--init``: fine-tuning, or
    growing a network by layers those weights lack)."""
    return spec.build() if init is None else grow_network_from(spec, init)


def in_batches(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor, size: int = 4) -> torch.Tensor:
    """``fn`` applied to aligned slices of ``size`` samples of ``tensors``, concatenated (bounded memory)."""
    return torch.cat([fn(*(t[i : i + size] for t in tensors)) for i in range(0, len(tensors[0]), size)])


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None = None) -> None:
    """One gradient step on ``loss``; with ``max_grad_norm``, the gradient norm is clipped to it first."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()


def learning_rate_at(step: int, schedule: Schedule, seconds: float = 0.0) -> float:
    """Linear warm-up over 2% of the steps, then cosine decay to 2% of the peak over the run's progress (a pure
    function of the step and, with a time budget, the seconds trained, so a resumed run follows the same
    schedule)."""
    warmup = max(1, schedule.steps // 50)
    if step < warmup:
        return schedule.learning_rate * (step + 1) / warmup
    warm = warmup / schedule.steps
    progress = max(0.0, (schedule.progress(step, seconds) - warm) / max(1e-9, 1.0 - warm))
    return schedule.learning_rate * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * progress)))


def export_weights(network: nn.Module, path: Path, metadata: dict) -> None:
    """Write ``network``'s state as safetensors plus ``path.json`` with ``metadata``, atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    atomic_write_bytes(path, save(tensors))
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(metadata, indent=2) + "\n").encode())


def _save_checkpoint(recipe: Recipe, state: TrainState, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "recipe": recipe.name,  # so that a --resume of another recipe's checkpoint can name it
        "step": state.step,
        "modules": {name: module.state_dict() for name, module in recipe.modules().items()},
        "optimizers": {name: opt.state_dict() for name, opt in recipe.optimizers().items()},
        "numpy_rng": recipe.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "best": state.best,
        "history": state.history,
        # What the run trains on, so that a --resume on other data is told (its best so far was scored elsewhere).
        "config": _with_absolute_paths(recipe.metadata().get("config")),
    }
    # Through a unique temporary file beside it: a fixed <stem>.tmp replaced, then removed, a user's file of that name.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load_checkpoint(recipe: Recipe, path: Path) -> TrainState:
    try:
        saved = torch.load(path, weights_only=False, map_location="cpu")
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(
            f"{path}: the checkpoint cannot be read ({first_line}): damaged or cut short; resume from another "
            "--checkpoint, or train without --resume"
        ) from None
    if not isinstance(saved, dict) or "modules" not in saved:
        raise DataError(f"{path} is not a checkpoint oldphoto train wrote; resume from one, or train without --resume")
    theirs = saved.get("recipe")
    if isinstance(theirs, str) and theirs != recipe.name:
        # "resume with the code that wrote it" was wrong advice: the same code wrote it, for another model.
        raise DataError(
            f"{path} is a checkpoint of {theirs}, not of {recipe.name}: resume it with the train command of {theirs}, "
            "or train without --resume into a new --checkpoint"
        )
    for name, module in recipe.modules().items():
        try:
            module.load_state_dict(saved["modules"][name])
        except (KeyError, RuntimeError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise DataError(
                f"{path}: the checkpoint does not fit the {recipe.name} architecture in the registry ({first_line}); "
                "resume with the code that wrote it, or train without --resume into a new --checkpoint"
            ) from None
    for name, optimizer in recipe.optimizers().items():
        optimizer.load_state_dict(saved["optimizers"][name])
    recipe.rng.bit_generator.state = saved["numpy_rng"]
    torch.set_rng_state(saved["torch_rng"])
    changed = changed_data_options(saved.get("config"), recipe.metadata().get("config"))
    if changed:
        log.warning(
            "--resume from %s with other data or settings than its run: %s; the run continues, but its best so far "
            "(step %s) was scored as that run scored, and a later best is kept only if it scores higher now",
            path,
            "; ".join(changed),
            (saved["best"] or {}).get("step"),
        )
    log.info("resumed %s from %s at step %d", recipe.name, path, saved["step"])
    return TrainState(saved["step"], saved["best"], saved["history"], *_run_files_named(saved.get("config")))


SCHEDULE_OPTIONS = frozenset({"steps", "learning_rate", "validate_every", "out", "checkpoint", "runtime", "overwrite", "init"})
"""Setup fields that a resumed run may change freely: they say how long and where it runs, not what it learns from."""


def changed_data_options(saved: dict | None, now: dict | None) -> list[str]:
    """The options (as ``name: before -> now``) in which the recipe config ``now`` differs from the checkpoint's
    ``saved`` one, leaving out the schedule's (:data:`SCHEDULE_OPTIONS`); empty for a checkpoint written before
    configs were stored."""
    if not saved or not now:
        return []
    saved, now = _with_absolute_paths(saved), _with_absolute_paths(now)  # photos/ from one folder, /home/me/photos
    flat_saved = {**{k: v for k, v in saved.items() if k != "setup"}, **saved.get("setup", {})}
    flat_now = {**{k: v for k, v in now.items() if k != "setup"}, **now.get("setup", {})}
    return [
        f"{name.replace('_', '-')}: {flat_saved.get(name)!r} -> {flat_now.get(name)!r}"
        for name in sorted(set(flat_saved) | set(flat_now))
        if name not in SCHEDULE_OPTIONS and flat_saved.get(name) != flat_now.get(name)
    ]


def _with_absolute_paths(value: Any) -> Any:
    """A recipe config (nested dicts, lists, tuples) with every string that names an existing file or folder made
    absolute, so that one folder given as ``photos`` and as ``/home/me/photos`` compares equal."""
    if isinstance(value, dict):
        return {key: _with_absolute_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_with_absolute_paths(item) for item in value]
    if isinstance(value, str) and value and Path(value).exists():
        return str(Path(value).resolve())
    return value


def installed_weights_files() -> dict[Path, str]:
    """Each registered model's installed weights file and its card, where they are found (resolved path -> model
    name): what ``restore`` loads and checks by sha256."""
    from oldphoto.registry import all_specs
    from oldphoto.weights import locate_weights

    found: dict[Path, str] = {}
    for spec in all_specs():
        try:
            path = locate_weights(spec).resolve()
        except OldPhotoError:  # not shipped, or not installed here
            continue
        found[path] = found[path.with_suffix(".json")] = spec.name
    return found


def weights_inputs(config: object, resume: bool = False) -> list[Path]:
    """The weights files a recipe config reads (every value naming an existing ``.safetensors`` file but its --out,
    and its --init when ``resume``, which then reads the checkpoint instead): --init, --vae-old, --mapping,
    --scratch-weights and the like."""
    skipped = ("out", "init") if resume else ("out",)
    found: list[Path] = []

    def walk(value: object, key: str = "") -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, name)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, key)
        elif isinstance(value, (str, Path)) and key not in skipped and str(value).endswith(".safetensors") and Path(value).is_file():
            found.append(Path(value))

    walk(config)
    return found


def _weights_folder_holding(path: Path) -> str | None:
    """The folder restore loads installed weights from (:func:`oldphoto.weights.search_dirs`, or the package's own
    ``oldphoto/weights`` even before it exists) that ``path`` would be written into, described for a message; None
    when it is none of them (restore reads those folders' files only, not their sub-folders)."""
    from oldphoto import weights

    folders = [*weights.search_dirs(), Path(weights.__file__).resolve().parent / "weights"]
    parent = path.resolve().parent
    index = next((index for index, folder in enumerate(folders) if folder.resolve() == parent), None)
    if index is None:
        return None
    from_env = index == 0 and bool(os.environ.get(weights.WEIGHTS_ENV))  # search_dirs() puts that folder first
    return f"{folders[index]} (${weights.WEIGHTS_ENV})" if from_env else str(folders[index])


def check_run_files(checkpoint: Path, out: Path, resume: bool, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse to start a run that would lose work: resuming without a checkpoint (it would quietly start over), a
    new run over an existing checkpoint or weights file (an earlier run's) unless ``overwrite``, and, whatever
    ``overwrite``, one that would write over its own ``inputs`` (the weights it starts from or builds on) or over the
    installed weights that ``restore`` checks by sha256.

    Raises:
        DataError: what is in the way, and the options that get past it.
    """
    card = out.with_suffix(".json")
    installed = installed_weights_files()
    for path, flag in ((out, "--out"), (card, "--out"), (checkpoint, "--checkpoint")):
        if any(path.resolve() == Path(given).resolve() for given in inputs):
            raise DataError(f"{flag} {path} is one of this run's own inputs: the run would replace the weights it reads; give {flag} a path of its own")
        if path.resolve() in installed:
            raise DataError(
                f"{flag} {path} is the installed {installed[path.resolve()]} weights that restore checks by sha256 (replaced, "
                "every restore would stop): train into another path, e.g. runs/, and restore with --weights MODEL=FILE"
            )
        folder = _weights_folder_holding(path)
        if folder is not None:
            # Only the first copy of each file found was protected: a run could write over the packaged weights
            # behind an $OLDPHOTO_WEIGHTS_DIR copy, or create src/oldphoto/weights/, which then hid weights/.
            raise DataError(
                f"{flag} {path} is in {folder}, a folder restore loads its installed weights from: train into a "
                "folder of its own (e.g. runs/) and restore with --weights MODEL=FILE"
            )
    if not out.suffix:
        # "--out newdir/" wrote a file named newdir (and newdir.json), no folder and nothing said.
        raise DataError(f"--out {out} has no file extension: give the weights file's name, e.g. {out / 'model.safetensors'}")
    if checkpoint.resolve() == out.resolve():
        raise DataError(f"--out and --checkpoint are the same file ({out}): each checkpoint would replace the weights; give them different names")
    if card.resolve() == out.resolve():
        raise DataError(f"--out {out}: the weights' card is written beside them as <out>.json, the same file; give --out a .safetensors name")
    if checkpoint.resolve() == card.resolve():
        raise DataError(
            f"--checkpoint {checkpoint} is where the weights' card ({card.name}, written beside --out) goes: "
            "each export would replace the checkpoint; give it another name"
        )
    # A file of another kind where the run writes (a training photo given as --out) is never replaced, not even with
    # --overwrite, which means an earlier run's files.
    for path, flag, kind, holds_it in (
        (out, "--out", "safetensors weights file", _is_safetensors),
        # Our card's keys: any JSON object (a package.json, a set's manifest.json beside --out) was taken for one.
        (card, "--out", "weights card (JSON)", lambda path: json_object_with(path, ("config", "architecture"))),
        (checkpoint, "--checkpoint", "training checkpoint", _is_checkpoint),
    ):
        if path.is_dir() or (path.exists() and not holds_it(path)):
            raise DataError(f"{path} is not a {kind}, and the run would write it over; give {flag} another path")
    for path, flag in ((out, "--out"), (card, "--out"), (checkpoint, "--checkpoint")):
        check_writable(path, flag)  # below a file, say: one line now, not a traceback at the first validation
    if resume:
        if not checkpoint.exists():
            raise DataError(f"--resume: there is no checkpoint at {checkpoint}; train without --resume to start, or give --checkpoint")
        return
    for path, what in ((checkpoint, "checkpoint"), (out, "weights file"), (card, "weights card")):
        if path.exists() and not overwrite:
            # --resume helps only where the checkpoint of that run is there to continue from.
            resume_hint = "--resume to continue that run, " if checkpoint.exists() else ""
            raise DataError(
                f"{what} {path} exists (an earlier run's): {resume_hint}--overwrite to replace it, "
                "or give --out and --checkpoint elsewhere"
            )


def _run_files_named(config: object) -> tuple[str | None, str | None]:
    """(--out, --checkpoint) as a recipe config (a checkpoint's or a weights card's) names them: recipes keep them at
    the top of their config or in its "setup"; None where it does not say."""
    if not isinstance(config, dict):
        return None, None
    setup = config.get("setup") if isinstance(config.get("setup"), dict) else {}
    out, checkpoint = (config.get(key) or setup.get(key) for key in ("out", "checkpoint"))
    return (out if isinstance(out, str) else None, checkpoint if isinstance(checkpoint, str) else None)


def _moved_together(recorded_out: str, recorded_checkpoint: str, out: Path, checkpoint: Path) -> bool:
    """Whether a run's recorded --out and --checkpoint, both gone from their places, lay one beside the other as
    ``out`` and ``checkpoint`` do now: the run's folder was moved."""
    if Path(recorded_out).exists() or Path(recorded_checkpoint).exists():
        return False
    return os.path.relpath(recorded_checkpoint, Path(recorded_out).parent) == os.path.relpath(checkpoint, out.parent)


def _same_run_out(state: TrainState, out: Path, checkpoint: Path) -> bool:
    """Whether the resumed run's recorded --out is ``out``: the same file, or the file lying where it lay beside
    the run's checkpoint after the run's folder was moved."""
    if Path(state.out or "").resolve() == out.resolve():
        return True
    return state.out is not None and state.run_checkpoint is not None and _moved_together(state.out, state.run_checkpoint, out, checkpoint)


def _exported_by(card: Path, checkpoint: Path, out: Path) -> bool:
    """Whether the weights card ``card`` (beside ``out``) says its weights came from the run of ``checkpoint``: it
    names that checkpoint, or, moved with the run's folder, one lying where ``checkpoint`` lies from ``out``."""
    try:
        named_out, named_checkpoint = _run_files_named(json.loads(card.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if named_out is None or named_checkpoint is None:
        return False
    return Path(named_checkpoint).resolve() == checkpoint.resolve() or _moved_together(named_out, named_checkpoint, out, checkpoint)


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts as a safetensors file does: an 8-byte little-endian header length, then a JSON object."""
    with path.open("rb") as file:
        head = file.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") + 8 <= path.stat().st_size


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a file ``torch.save`` writes: a zip archive, or a pickle in the legacy format."""
    with path.open("rb") as file:
        head = file.read(2)
    return head == b"PK" or head[:1] == b"\x80"


def run(
    recipe: Recipe,
    schedule: Schedule,
    resume: bool = False,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainState:
    """Train ``recipe`` up to ``schedule.steps`` (continuing from the checkpoint when ``resume``).

    ``on_step(step, total, figures)`` is called after every step; ``figures`` holds the running losses,
    plus the validation figures (and ``"validated": 1.0``) on validation steps.
    """
    checkpoint = Path(schedule.checkpoint)
    check_run_files(checkpoint, Path(schedule.out), resume, schedule.overwrite, weights_inputs(recipe.metadata().get("config"), resume))
    state = _load_checkpoint(recipe, checkpoint) if resume else TrainState()
    out = Path(schedule.out)
    theirs = state.out and not _same_run_out(state, out, checkpoint) and not _exported_by(out.with_suffix(".json"), checkpoint, out)
    if resume and theirs and out.exists() and not schedule.overwrite:
        # Resumed into another --out, the run replaced weights (and their card) that were not its own, unseen.
        raise DataError(
            f"--out {out} exists, and the run of {checkpoint} wrote to {state.out}: --overwrite to replace {out.name}, "
            "or give --out a path of its own"
        )
    started = time.perf_counter() - (state.history[-1]["seconds"] if state.history else 0.0)
    if state.best is not None and not Path(schedule.out).exists():
        # Resumed with another --out (or its file removed): the best so far was exported elsewhere, and a resumed run
        # that did not beat it wrote nothing to --out while reporting that best. Its own best goes to --out now, if it
        # has steps left to take.
        if schedule.progress(state.step, time.perf_counter() - started) >= 1.0:
            raise DataError(
                f"the checkpoint {checkpoint} already holds the whole run (step {state.step}); its best (step "
                f"{state.best['step']}) was exported to that run's --out, not to {schedule.out}: raise --steps or "
                "--time-budget to train on into it"
            )
        log.warning(
            "--out %s does not exist: the best weights so far (step %d) are where the run wrote them before; this "
            "run exports its own best to --out from its first validation",
            schedule.out,
            state.best["step"],
        )
        state.best = None
    if resume and state.best is not None and schedule.progress(state.step, time.perf_counter() - started) >= 1.0:
        # It exited 0 saying nothing: a --steps at or below the checkpoint's step looked like a run that trained.
        spent = (
            f"--steps {schedule.steps} is not past the checkpoint's step {state.step}; raise --steps to train on"
            if state.step >= schedule.steps
            else f"its --time-budget ({schedule.time_budget / 60:g} minutes, counted over resumes) is spent; raise --time-budget to train on"
        )
        log.warning(
            "nothing to train: %s (the checkpoint %s; its best weights, of step %d, stay in %s)",
            spent,
            checkpoint,
            state.best["step"],
            schedule.out,
        )
    running: dict[str, float] = {}
    for module in recipe.modules().values():
        module.train()
    while schedule.progress(state.step, time.perf_counter() - started) < 1.0:
        rate = learning_rate_at(state.step, schedule, time.perf_counter() - started)
        for optimizer in recipe.optimizers().values():
            for group in optimizer.param_groups:
                group["lr"] = rate * group.get("lr_scale", 1.0)
        losses = recipe.train_step(state.step)
        state.step += 1
        diverged = [key for key, value in losses.items() if not math.isfinite(value)]
        if diverged:  # every later step, validation and export would be NaN: the best "score: nan" shipped black photos
            raise DataError(
                f"training diverged at step {state.step} ({diverged[0]} is {losses[diverged[0]]}): lower --learning-rate; "
                f"the checkpoint {checkpoint} and --out keep the last good validation, if any"
            )
        for key, value in losses.items():
            running[key] = value if key not in running else 0.98 * running[key] + 0.02 * value
        figures = dict(running)
        finishing = schedule.progress(state.step, time.perf_counter() - started) >= 1.0
        if state.step % schedule.validate_every == 0 or finishing:
            for module in recipe.modules().values():
                module.eval()
            with torch.inference_mode():
                result = recipe.validate()
            for module in recipe.modules().values():
                module.train()
            seconds = time.perf_counter() - started
            state.history.append({"step": state.step, **running, **result, "seconds": seconds})
            if math.isnan(result["score"]) or result["score"] == -math.inf:  # +inf: a perfect PSNR, however unlikely
                raise DataError(f"validation at step {state.step} scored {result['score']}: training diverged; lower --learning-rate")
            if state.best is None or result["score"] > state.best["score"]:
                state.best = {"step": state.step, **result}
                export_weights(recipe.exported(), Path(schedule.out), {**recipe.metadata(), "best": state.best})
            _save_checkpoint(recipe, state, checkpoint)
            log.info("%s step %d %s", recipe.name, state.step, json.dumps({k: round(v, 4) for k, v in result.items()}))
            figures.update(result, validated=1.0)
        if on_step is not None:
            on_step(state.step, schedule.steps, figures)
    if state.best is None:  # e.g. a --time-budget spent before the first step: exit 0 with nothing written was a surprise
        raise DataError(
            f"nothing was trained: the run stopped at step {state.step}, before any validation"
            + (" since it was resumed" if resume else "")
            + ", and wrote no weights; give --steps or --time-budget room for at least one more step"
        )
    return state
