"""Tier 1: tiny random-weight networks — shapes, gradients, no NaNs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from oldphoto.archs.discriminator import LatentDiscriminator, LatentDiscriminatorConfig
from oldphoto.archs.mapping import LatentMapping, MappingConfig, PartialNonLocal
from oldphoto.archs.restore_unet import RestoreUNet, RestoreUNetConfig
from oldphoto.archs.scratch_unet import ScratchUNet, ScratchUNetConfig
from oldphoto.archs.vae import VAE, VAEConfig, kl_divergence, sample_latent


@pytest.fixture(autouse=True)
def seeded():
    """Random initialisation made repeatable, so gradient checks do not depend on test order."""
    torch.manual_seed(0)


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


def test_scratch_context_starts_as_identity_then_every_parameter_learns():
    """A detector grown by dilated context blocks computes exactly what the smaller one did until it is trained."""
    small = ScratchUNet(ScratchUNetConfig(channels=(4, 8, 8))).eval()
    grown = ScratchUNet(ScratchUNetConfig(channels=(4, 8, 8), context_dilations=(1, 2))).eval()
    result = grown.load_state_dict(small.state_dict(), strict=False)
    assert not result.unexpected_keys and all(key.startswith("context.") for key in result.missing_keys)
    gray = torch.rand(1, 1, 40, 56)
    torch.testing.assert_close(grown(gray), small(gray))
    for block in grown.context.blocks:  # as after some training: the context now contributes
        torch.nn.init.normal_(block[-1].weight, std=0.1)
    out = grown.train()(gray)
    assert not torch.allclose(out, small(gray))
    assert_every_parameter_learns(grown, out.square().mean())


TINY_VAE = VAEConfig(channels=(4, 8), latent_channels=8, blocks=1)
TINY_MAPPING = MappingConfig(latent_channels=8, width=8, local_blocks=1, global_blocks=1, attention_channels=4, key_grid=4, query_chunk=16)


def assert_every_parameter_learns(network: torch.nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("shape", [(32, 48), (37, 91)])
def test_vae_latent_is_a_quarter_and_reconstruction_keeps_size(shape):
    vae = VAE(TINY_VAE)
    mean, log_variance = vae.encode(torch.rand(2, 3, 32, 48))
    assert mean.shape == log_variance.shape == (2, 8, 8, 12)
    out = vae(torch.rand(2, 3, *shape))
    assert out.shape == (2, 3, *shape) and torch.isfinite(out).all()


def test_vae_gradients_reach_every_parameter():
    vae = VAE(TINY_VAE)
    images = torch.rand(2, 3, 32, 32)
    mean, log_variance = vae.encode(images)
    reconstruction = vae.decode(sample_latent(mean, log_variance))
    assert_every_parameter_learns(vae, (reconstruction - images).abs().mean() + kl_divergence(mean, log_variance))


def test_kl_divergence_is_zero_only_for_the_prior():
    zeros = torch.zeros(1, 4, 2, 2)
    assert kl_divergence(zeros, zeros).item() == pytest.approx(0.0)
    assert kl_divergence(zeros + 1, zeros).item() == pytest.approx(0.5)


def test_mapping_shapes_and_gradients_with_damage():
    mapping = LatentMapping(TINY_MAPPING)
    damage = torch.zeros(2, 1, 12, 10)
    damage[:, :, 3:6, :] = 1
    out = mapping(torch.randn(2, 8, 12, 10), damage)
    assert out.shape == (2, 8, 12, 10) and torch.isfinite(out).all()
    assert_every_parameter_learns(mapping, out.square().mean())


def test_mapping_without_damage_is_the_local_branch():
    mapping = LatentMapping(TINY_MAPPING).eval()
    latent = torch.randn(1, 8, 12, 10)
    undamaged = mapping(latent, torch.zeros(1, 1, 12, 10))
    x = mapping.shared(mapping.act(mapping.inp(torch.cat([latent, torch.zeros(1, 1, 12, 10)], 1))))
    assert torch.allclose(undamaged, mapping.out(mapping.local_branch(x)))


def test_mapping_context_starts_as_identity_then_every_parameter_learns():
    """A mapping grown by coarser context levels computes exactly what the smaller one did until it is trained."""
    grown_config = dataclasses.replace(TINY_MAPPING, context_levels=2, context_blocks=1)
    small, grown = LatentMapping(TINY_MAPPING).eval(), LatentMapping(grown_config).eval()
    result = grown.load_state_dict(small.state_dict(), strict=False)
    assert not result.unexpected_keys and all(key.startswith("context.") for key in result.missing_keys)
    assert grown.size_multiple == 4 and small.size_multiple == 1
    # Odd latent sizes, with and without damage.
    latent, damage = torch.randn(1, 8, 13, 11), torch.zeros(1, 1, 13, 11)
    damage[:, :, 2:5] = 1
    for mask in (damage, torch.zeros_like(damage)):
        torch.testing.assert_close(grown(latent, mask), small(latent, mask))
    for projection in grown.context.up:  # as after some training: the coarse levels now contribute
        torch.nn.init.normal_(projection.weight, std=0.1)
    out = grown.train()(latent, damage)
    assert out.shape == latent.shape and not torch.allclose(out, small(latent, damage))
    assert_every_parameter_learns(grown, out.square().mean())


@pytest.mark.parametrize("key_grid", [32, 4])
def test_partial_non_local_never_draws_from_damaged_positions(key_grid):
    block = PartialNonLocal(8, 4, key_grid=key_grid, query_chunk=7).eval()
    features = torch.randn(1, 8, 16, 12)
    damage = torch.zeros(1, 1, 16, 12)
    damage[:, :, 4:9, 2:7] = 1
    changed = features.clone()
    changed[:, :, 4:9, 2:7] += 5 * torch.randn(1, 8, 5, 5)
    before = block(features, damage) - features
    after = block(changed, damage) - changed
    intact = (damage == 0).expand_as(before)
    # Queries at intact positions are unchanged and every key/value they see is intact: same result.
    assert torch.allclose(before[intact], after[intact], atol=1e-5)
    # Inside the hole the queries changed, so the attended values do too: the test is not vacuous.
    assert not torch.allclose(before[~intact], after[~intact], atol=1e-3)


def test_partial_non_local_chunking_and_pooling_bound_memory_not_results():
    features = torch.randn(1, 8, 24, 20)
    damage = (torch.rand(1, 1, 24, 20) > 0.8).float()
    exact = PartialNonLocal(8, 4, key_grid=64, query_chunk=10_000).eval()
    chunked = PartialNonLocal(8, 4, key_grid=64, query_chunk=33).eval()
    chunked.load_state_dict(exact.state_dict())
    assert torch.allclose(exact(features, damage), chunked(features, damage), atol=1e-5)
    pooled = PartialNonLocal(8, 4, key_grid=6, query_chunk=33).eval()
    pooled.load_state_dict(exact.state_dict())
    keys, values, intact = pooled._pooled(features, 1 - damage)
    assert keys.shape == (1, 36, 4) and values.shape == (1, 36, 8) and intact.shape == (1, 36)
    assert torch.isfinite(pooled(features, damage)).all()
    # Pooled keys approximate the exact attention where features vary slowly (as latents do at the pooled scale):
    # measured 1.5% of the block's contribution.
    torch.manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.randn(1, 8, 4, 4), size=(24, 20), mode="bilinear")
    exact_part, pooled_part = exact(smooth, damage) - smooth, pooled(smooth, damage) - smooth
    assert (exact_part - pooled_part).abs().mean() < 0.05 * exact_part.abs().mean()


def test_ablation_unet_keeps_size_and_learns():
    network = RestoreUNet(RestoreUNetConfig(channels=(4, 8, 16), bottleneck_blocks=1))
    out = network(torch.rand(2, 3, 37, 29), torch.zeros(2, 1, 37, 29))
    assert out.shape == (2, 3, 37, 29) and torch.isfinite(out).all()
    assert_every_parameter_learns(network, out.square().mean())


def test_latent_discriminator_scores_patches():
    discriminator = LatentDiscriminator(LatentDiscriminatorConfig(latent_channels=8, width=8))
    scores = discriminator(torch.randn(2, 8, 16, 16))
    assert scores.shape == (2, 1, 4, 4)
    assert_every_parameter_learns(discriminator, scores.mean())


def test_face_refiner_condition_defaults_to_the_face_and_steers_the_output():
    from oldphoto.archs.face_refine import FaceRefineConfig, FaceRefiner

    torch.manual_seed(0)
    refiner = FaceRefiner(FaceRefineConfig(channels=(4, 8, 8), blocks=1, condition_hidden=4)).eval()
    face, other = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(refiner(face), refiner(face, face))
        assert (refiner(face, other) - refiner(face)).abs().max() > 1e-3
