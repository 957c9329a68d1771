"""Tier 2: the scratch stage's sensitivity and mask growth in the pipeline (tiny random-weight detector)."""

from __future__ import annotations

import numpy as np
import pytest

from oldphoto.errors import ConfigError
from oldphoto.registry import SCRATCH_MODEL
from oldphoto.restore.pipeline import RestoreOptions, Restorer
from oldphoto.restore.scratches import scratch_probability
from oldphoto.runtime import make_runtime

from .conftest import smooth_image

DETECTION_ONLY = dict(global_restoration=False, faces=False)


def detected_mask(runtime, pixels, **settings) -> np.ndarray:
    return Restorer(runtime, RestoreOptions(**DETECTION_ONLY, **settings)).restore(pixels).mask


def test_threshold_and_dilation_override_the_registry(random_scratch_model):
    runtime = make_runtime("cpu")
    pixels = smooth_image(64, 96)
    restorer = Restorer(runtime, RestoreOptions(**DETECTION_ONLY))
    probability = scratch_probability(pixels, restorer.models[SCRATCH_MODEL], runtime)
    low, high = (float(q) for q in np.quantile(probability, [0.3, 0.7]))
    sensitive = detected_mask(runtime, pixels, scratch_threshold=low) > 0
    strict = detected_mask(runtime, pixels, scratch_threshold=high) > 0
    assert strict.sum() < sensitive.sum() and strict.any()
    assert not np.any(strict & ~sensitive)  # a higher threshold only removes pixels
    np.testing.assert_array_equal(strict, probability > high)
    grown = detected_mask(runtime, pixels, scratch_threshold=high, mask_dilation=2) > 0
    assert not np.any(strict & ~grown) and grown.sum() > strict.sum()


def test_the_plan_states_the_detection_settings(random_scratch_model):
    plan = Restorer(make_runtime("cpu"), RestoreOptions(**DETECTION_ONLY, scratch_threshold=0.8, mask_dilation=1)).plan()
    assert any("threshold 0.8, dilation 1 px" in step for step in plan)


@pytest.mark.parametrize("settings", [{"scratch_threshold": 0.0}, {"scratch_threshold": 1.0}, {"mask_dilation": -1}])
def test_settings_out_of_range_are_refused(settings):
    with pytest.raises(ConfigError):
        RestoreOptions(**settings)
