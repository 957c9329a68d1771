"""The only source of synthetic damage: ops, presets and :func:`degrade_image`."""

from oldphoto.degrade.pipeline import DegradedSample, degrade_image
from oldphoto.degrade.presets import (
    PRESETS,
    Preset,
    get_preset,
    load_preset_file,
    override,
)
from oldphoto.degrade.structured import DamageStamps

__all__ = ["PRESETS", "DamageStamps", "DegradedSample", "Preset", "degrade_image", "get_preset", "load_preset_file", "override"]
