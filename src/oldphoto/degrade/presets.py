"""Degradation presets: frozen recipes of which damage ops run, how likely, and with what ranges.

A preset has up to four groups, applied in this order (unless ``structured_after_scan``):

0. ``distractors``: scene content that looks like damage but is not (badges, white clothing, wires, lettering,
   glints, snow, hatching), drawn into the clean photo itself, so the clean target has it and the mask never does;
1. ``aging``: what time does to a print (fading, yellowing, colour casts, uneven exposure, texture);
2. ``structured``: physical damage drawn with its mask (scratches, cracks, dust, hairs, creases, tears,
   stains, real damage stamps);
3. ``scan``: what copying and scanning add (blur, noise, grain, low resolution, JPEG), in random order
   when ``shuffle_scan``.

Presets load from TOML (``--config``): ``base = "default"`` plus any top-level field, and a
``[[distractors]]``/``[[aging]]``/``[[structured]]``/``[[scan]]`` array replaces that whole group.

Versions: ``default-v1`` and ``bopbtl-v1`` are the presets as they were before distractors (same ops, same random
draws, byte-identical output); ``default`` and ``bopbtl`` are those plus the ``distractors`` group. Test sets
made with a ``-v1`` preset stay reproducible, so scores on them remain comparable.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from oldphoto.degrade.distractors import DISTRACTOR_OPS
from oldphoto.degrade.structured import STRUCTURED_OPS
from oldphoto.degrade.unstructured import UNSTRUCTURED_OPS
from oldphoto.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpSpec:
    """One damage op: its name, the chance it is applied, and its parameter ranges."""

    name: str
    probability: float = 1.0
    params: tuple[tuple[str, Any], ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return {key: tuple(value) if isinstance(value, list) else value for key, value in self.params}


def op(name: str, probability: float = 1.0, **params: Any) -> OpSpec:
    return OpSpec(name, probability, tuple(sorted(params.items())))


PRESET_GROUPS = ("distractors", "aging", "structured", "scan")
"""A preset's op groups, in the order :func:`~oldphoto.degrade.pipeline.degrade_image` applies them (scan and
structured may swap)."""


@dataclass(frozen=True)
class Preset:
    name: str
    aging: tuple[OpSpec, ...] = ()
    structured: tuple[OpSpec, ...] = ()
    scan: tuple[OpSpec, ...] = ()
    shuffle_scan: bool = True
    structured_after_scan: bool = False
    grayscale_probability: float = 0.0
    """Chance that the photo is a black-and-white print; the clean target becomes grayscale too."""
    min_structured: int = 0
    """At least this many structured ops are applied (drawn at random if too few fired)."""
    mask_threshold: float = 0.08
    """A pixel is masked where structured damage changed it by more than this (0-1 intensity, ~20 of 255 levels):
    the mask marks damage one can see, not damage drawn in the colour already there."""
    distractors: tuple[OpSpec, ...] = ()
    """Scene content that looks like damage, drawn into the clean photo before anything else, from a random
    stream of its own (so the other groups draw exactly what they would without it); never in the mask."""

    def validate(self) -> Preset:
        registries = {"distractors": DISTRACTOR_OPS, "aging": UNSTRUCTURED_OPS, "structured": STRUCTURED_OPS, "scan": UNSTRUCTURED_OPS}
        for group, registry in ((group, registries[group]) for group in PRESET_GROUPS):
            for spec in getattr(self, group):
                if spec.name not in registry:
                    valid = ", ".join(sorted(registry))
                    raise ConfigError(f"preset {self.name!r}: unknown {group} op {spec.name!r}; valid: {valid}")
                if not 0.0 <= spec.probability <= 1.0:
                    raise ConfigError(f"preset {self.name!r}: probability of {spec.name} must be in [0, 1]")
        if not 0.0 <= self.grayscale_probability <= 1.0:
            raise ConfigError(f"preset {self.name!r}: grayscale_probability must be in [0, 1]")
        # A mask_threshold of -1 masked every pixel; a min_structured above the ops there are cannot be met.
        if not 0.0 < self.mask_threshold < 1.0:
            raise ConfigError(f"preset {self.name!r}: mask_threshold must be between 0 and 1 (it is a change in 0-1 intensity)")
        if not 0 <= self.min_structured <= len(self.structured):
            raise ConfigError(f"preset {self.name!r}: min_structured must be between 0 and its {len(self.structured)} structured ops")
        for group in PRESET_GROUPS:
            for spec in getattr(self, group):
                for name, value in spec.params:
                    bounds = PARAMETER_BOUNDS.get((spec.name, name))
                    values = value if isinstance(value, (tuple, list)) else (value,)
                    if bounds is not None and not all(isinstance(v, (int, float)) and bounds[0] <= v <= bounds[1] for v in values):
                        raise ConfigError(f"preset {self.name!r}: {spec.name} {name} must be within [{bounds[0]}, {bounds[1]}]; got {value!r}")
        return self


PARAMETER_BOUNDS: dict[tuple[str, str], tuple[float, float]] = {("jpeg", "quality"): (1, 100)}
"""Ranges an op's parameters must keep, where the library under it would clamp a value silently (OpenCV takes JPEG
quality 300 as 100) and the manifest would then record what was not done."""


BOPBTL_V1 = Preset(
    name="bopbtl-v1",
    # Wan et al. 2020, Sec. 3.1 / the reference data loader: each op with p = 0.7, in random order.
    scan=(
        op("gaussian_blur", 0.7, kernel_sizes=(3, 5, 7), sigma=(1.0, 5.0)),
        op("noise", 0.7, kinds=("gaussian", "speckle", "salt_and_pepper"), sigma=(5 / 255, 50 / 255)),
        op("downscale", 0.7, scale=(0.5, 1.0), up=("nearest", "bilinear")),
        op("jpeg", 0.7, quality=(40, 100)),
    ),
    # The scratch mask is painted in after the unstructured degradation, as holes of paper white.
    structured=(op("scratches", 1.0, count=(1, 4), width=(1.0, 4.0), opacity=(0.9, 1.0), bright_probability=1.0, bright=(0.95, 1.0)),),
    structured_after_scan=True,
    grayscale_probability=0.1,
)

DEFAULT_V1 = Preset(
    name="default-v1",
    aging=(
        op("fade", 0.5),
        op("yellowing", 0.35),
        op("color_cast", 0.3),
        op("uneven_exposure", 0.3),
        op("vignetting", 0.25),
        op("paper_texture", 0.3),
        op("halftone", 0.05),
    ),
    structured=(
        op("scratches", 0.6),
        op("stamps", 0.5),
        op("dust", 0.5),
        op("cracks", 0.15),
        op("hairs", 0.2),
        op("creases", 0.1),
        op("torn_edges", 0.08),
        op("stains", 0.12),
    ),
    scan=(
        op("gaussian_blur", 0.25, kernel_sizes=(3, 5), sigma=(0.5, 2.0)),
        op("defocus_blur", 0.1, radius=(1.0, 2.5)),
        op("motion_blur", 0.05, length=(3.0, 8.0)),
        op("gaussian_noise", 0.3, sigma=(3 / 255, 30 / 255)),
        op("poisson_noise", 0.1),
        op("speckle_noise", 0.05, sigma=(3 / 255, 25 / 255)),
        op("salt_and_pepper", 0.03, amount=(0.0005, 0.005)),
        op("film_grain", 0.35),
        op("downscale", 0.35, scale=(0.4, 1.0)),
        op("jpeg", 0.5, quality=(40, 95)),
    ),
    grayscale_probability=0.3,
    min_structured=1,
)

DISTRACTORS: tuple[OpSpec, ...] = (
    # About two per photo on average (one in ten gets none): enough that a detector meets white shirts, wires and
    # glints as often as it meets scratches, while most of each photo stays the photo.
    op("emblems", 0.35),
    op("clothing", 0.35),
    op("scene_lines", 0.4),
    op("lettering", 0.2),
    op("highlights", 0.3),
    op("specks", 0.15),
    op("hatching", 0.15),
)

DEFAULT = replace(DEFAULT_V1, name="default", distractors=DISTRACTORS)
BOPBTL = replace(BOPBTL_V1, name="bopbtl", distractors=DISTRACTORS)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (DEFAULT, BOPBTL, DEFAULT_V1, BOPBTL_V1)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}") from None


def _ops_from_toml(entries: Any, source: Path, group: str) -> tuple[OpSpec, ...]:
    """The op tables of one group (``[[structured]]`` ...), their shapes checked: a wrong type was a traceback."""
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ConfigError(f"{source}: {group} must be a list of op tables ([[{group}]] with name = ...), not {entries!r}")
    specs = []
    for entry in entries:
        name, probability, params = entry.get("name"), entry.get("probability", 1.0), entry.get("params", {})
        if not isinstance(name, str):
            raise ConfigError(f"{source}: every {group} op table needs a name (a string), got {name!r}")
        if isinstance(probability, bool) or not isinstance(probability, (int, float)):
            raise ConfigError(f"{source}: {group} op {name}: probability must be a number in [0, 1], not {probability!r}")
        if not isinstance(params, dict):
            raise ConfigError(f"{source}: {group} op {name}: params must be a table (params = {{ key = value }}), not {params!r}")
        unknown = set(entry) - {"name", "probability", "params"}
        if unknown:
            raise ConfigError(f"{source}: {group} op {name}: unknown key(s) {', '.join(sorted(unknown))}; use name, probability, params")
        specs.append(op(name, float(probability), **params))
    return tuple(specs)


def _checked_field(key: str, value: Any, default: Any, source: Path) -> Any:
    """A preset field from TOML, of the type its default has (``structured = 5`` was a traceback)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (isinstance(value, int) or not isinstance(default, int))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{source}: {key} must be {type(default).__name__}, like {default!r}; got {value!r}")
    return value


def load_preset_file(path: str | Path, base_name: str | None = None) -> Preset:
    """A preset from TOML: its ``base`` (a preset name; without one, ``base_name``, else "default") with fields and
    op groups overridden. A ``base_name`` other than the file's own base is not used, and a warning says so."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: preset file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; give --config a preset file (TOML)") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the preset file ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file in UTF-8, as TOML must be") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    named = data.pop("base", None)
    if named is not None and base_name is not None and str(named) != base_name:
        log.warning("%s names its own base preset %r: the preset %r given besides is not used", path, str(named), base_name)
    base = get_preset(str(named if named is not None else base_name or "default"))
    changes: dict[str, Any] = {"name": str(data.pop("name", path.stem))}
    names = {f.name for f in fields(Preset)}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{path}: unknown preset field {key!r}; valid: {', '.join(sorted(names))}")
        if key in ("distractors", "aging", "structured", "scan"):
            changes[key] = _ops_from_toml(value, path, key)
        else:
            changes[key] = _checked_field(key, value, getattr(base, key), path)
    return replace(base, **changes).validate()


def override(
    preset: Preset,
    *,
    structured: bool = True,
    unstructured: bool = True,
    grayscale_probability: float | None = None,
    distractors: bool = True,
) -> Preset:
    """The command-line overrides: switch whole groups off, set the grayscale chance.

    ``structured=False`` turns off the damage only: distractors are scene content, not damage, and stay unless
    ``distractors=False`` (a damage-free set with distractors is how a detector's false hits are measured).
    """
    changes: dict[str, Any] = {}
    if not structured:
        changes.update(structured=(), min_structured=0)
    if not unstructured:
        changes.update(aging=(), scan=())
    if not distractors:
        changes.update(distractors=())
    if grayscale_probability is not None:
        changes["grayscale_probability"] = grayscale_probability
    return replace(preset, **changes).validate() if changes else preset


def preset_summary(preset: Preset) -> dict[str, Any]:
    """JSON-ready description for manifests."""

    def group(specs: tuple[OpSpec, ...]) -> list[dict[str, Any]]:
        return [{"name": s.name, "probability": s.probability, "params": s.kwargs()} for s in specs]

    return {
        "name": preset.name,
        "distractors": group(preset.distractors),
        "aging": group(preset.aging),
        "structured": group(preset.structured),
        "scan": group(preset.scan),
        "shuffle_scan": preset.shuffle_scan,
        "structured_after_scan": preset.structured_after_scan,
        "grayscale_probability": preset.grayscale_probability,
        "min_structured": preset.min_structured,
        "mask_threshold": preset.mask_threshold,
    }


__all__ = ["BOPBTL", "BOPBTL_V1", "DEFAULT", "DEFAULT_V1", "DISTRACTORS", "PRESETS", "OpSpec", "Preset", "get_preset", "load_preset_file", "op", "override", "preset_summary"]
