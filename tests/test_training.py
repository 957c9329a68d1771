"""`oldphoto train scratch`: a few steps on tiny generated data; resuming gives the same result."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from safetensors.torch import load_file

from oldphoto.imageio import save_rgb
from oldphoto.training.scratch import ScratchTrainConfig, train_scratch

from .conftest import smooth_image


def tiny_config(tmp_path, name: str, steps: int) -> ScratchTrainConfig:
    for i in range(3):
        save_rgb(tmp_path / "data" / f"{i}.png", smooth_image(48, 64, seed=i))
    save_rgb(tmp_path / "val" / "v.png", smooth_image(64, 64, seed=9))
    return ScratchTrainConfig(
        data=(str(tmp_path / "data"),),
        val=(str(tmp_path / "val"),),
        out=str(tmp_path / name / "scratch.safetensors"),
        checkpoint=str(tmp_path / name / "checkpoint.pt"),
        steps=steps,
        batch_size=2,
        crop=32,
        validate_every=2,
        val_samples=2,
        val_crop=32,
    )


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight = tiny_config(tmp_path, "straight", steps=4)
    state = train_scratch(straight)
    assert state.step == 4 and len(state.history) == 2
    assert all(np.isfinite(h["loss"]) for h in state.history)

    interrupted = tiny_config(tmp_path, "resumed", steps=4)
    train_scratch(dataclasses.replace(interrupted, steps=2))
    # Same schedule length as the straight run: resume the 2-step checkpoint towards 4 steps.
    resumed = train_scratch(interrupted, resume=True)
    assert resumed.step == 4
    a = torch.load(straight.checkpoint, weights_only=False)["network"]
    b = torch.load(interrupted.checkpoint, weights_only=False)["network"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert load_file(straight.out)  # best weights exported
