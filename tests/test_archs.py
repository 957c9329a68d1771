"""Tier 1: tiny random-weight networks — shapes, gradients, no NaNs."""

from __future__ import annotations

import pytest
import torch

from oldphoto.archs.scratch_unet import ScratchUNet, ScratchUNetConfig


@pytest.mark.parametrize("shape", [(64, 64), (37, 91), (5, 7)])
def test_scratch_unet_keeps_any_size(shape):
    network = ScratchUNet(ScratchUNetConfig(channels=(4, 8, 8)))
    out = network(torch.rand(2, 1, *shape))
    assert out.shape == (2, 1, *shape)
    assert torch.isfinite(out).all()


def test_scratch_unet_gradients_reach_every_parameter():
    network = ScratchUNet(ScratchUNetConfig(channels=(4, 8, 8)))
    loss = network(torch.rand(1, 1, 48, 48)).square().mean()
    loss.backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
