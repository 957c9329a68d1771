"""The only source of synthetic damage: ops, presets and :func:`degrade_image`."""

from oldphoto.degrade.distractors import DISTRACTOR_OPS
from oldphoto.degrade.pipeline import MASK_DEFINITION, SCORED_CHANGE, DegradedSample, check_preset_runs, degrade_image
from oldphoto.degrade.presets import (
    PRESETS,
    Preset,
    get_preset,
    load_preset_file,
    op,
    override,
)
from oldphoto.degrade.structured import DamageStamps, bundled_stamps_dir, load_stamps

__all__ = [
    "DISTRACTOR_OPS",
    "MASK_DEFINITION",
    "PRESETS",
    "SCORED_CHANGE",
    "DamageStamps",
    "DegradedSample",
    "Preset",
    "bundled_stamps_dir",
    "check_preset_runs",
    "degrade_image",
    "get_preset",
    "load_preset_file",
    "load_stamps",
    "op",
    "override",
]
