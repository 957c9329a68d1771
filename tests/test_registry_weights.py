from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from oldphoto import registry
from oldphoto.errors import (
    UnknownModelError,
    WeightsIntegrityError,
    WeightsNotFoundError,
)
from oldphoto.weights import WEIGHTS_ENV, grow_network_from, load_network, locate_weights, verify_weights


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModelError) as caught:
        registry.get_spec("no-such-model")
    for name in registry.REGISTRY:
        assert name in str(caught.value)


def test_every_entry_carries_a_contract():
    for spec in registry.all_specs():
        assert spec.contract.channels in (1, 3) or spec.task == "mapping"
        assert spec.weights_file.endswith(".safetensors")
        if spec.arch is not None:
            assert spec.build().size_multiple == spec.contract.size_multiple


def test_unshipped_model_says_so():
    import dataclasses

    spec = dataclasses.replace(registry.get_spec(registry.FACE_MODEL), sha256=None)
    with pytest.raises(WeightsNotFoundError, match="no trained weights"):
        locate_weights(spec)


def test_random_model_loads_strictly(random_scratch_model):
    network = load_network(random_scratch_model)
    assert not network.training


def test_missing_file_names_file_and_fix(random_scratch_model, weights_dir, tmp_path, monkeypatch):
    (weights_dir / random_scratch_model.weights_file).unlink()
    # Hide the other lookup locations, which may hold shipped weights of the same name.
    monkeypatch.setattr("oldphoto.weights.packaged_weights_dir", lambda: tmp_path / "no-packaged")
    monkeypatch.setattr("oldphoto.weights.user_weights_dir", lambda: tmp_path / "no-user")
    with pytest.raises(WeightsNotFoundError) as caught:
        locate_weights(random_scratch_model)
    assert random_scratch_model.weights_file in str(caught.value)
    assert WEIGHTS_ENV in str(caught.value)


def test_tampered_file_is_rejected(random_scratch_model, weights_dir):
    path = weights_dir / random_scratch_model.weights_file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        verify_weights(random_scratch_model)


def test_wrong_tensors_fail_strict_load(random_scratch_model, weights_dir, monkeypatch):
    path = weights_dir / random_scratch_model.weights_file
    save_file({"unexpected": torch.zeros(3)}, str(path))
    from oldphoto.weights import file_sha256

    spec = dataclasses.replace(random_scratch_model, sha256=file_sha256(path))
    with pytest.raises(WeightsIntegrityError, match="1 of its 1 tensors have no place"):
        load_network(spec)


def test_growing_from_smaller_weights_keeps_their_tensors_and_refuses_foreign_ones(tmp_path):
    from oldphoto.archs.mapping import LatentMapping

    from .conftest import TINY_MAPPING_CONFIG

    small = LatentMapping(TINY_MAPPING_CONFIG)
    path = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(path))
    spec = dataclasses.replace(registry.get_spec(registry.MAPPING_MODEL), config=dataclasses.replace(TINY_MAPPING_CONFIG, context_levels=1))
    grown = grow_network_from(spec, path)
    assert grown.training
    for name, value in small.state_dict().items():
        torch.testing.assert_close(grown.state_dict()[name], value)
    assert any(name.startswith("context.") for name in grown.state_dict())

    save_file({**small.state_dict(), "stray.weight": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsIntegrityError, match="stray.weight"):
        grow_network_from(spec, path)
    save_file({"inp.weight": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsIntegrityError, match="do not fit"):
        grow_network_from(spec, path)
    with pytest.raises(WeightsNotFoundError, match="missing.safetensors"):
        grow_network_from(spec, tmp_path / "missing.safetensors")
    # --init with no tensors trained from random weights, and a diverged run's NaN weights were loaded (black photos).
    save_file({}, str(path))
    with pytest.raises(WeightsIntegrityError, match="holds no tensors"):
        grow_network_from(spec, path)
    broken = {k: v.contiguous() for k, v in small.state_dict().items()}
    first = next(k for k, v in broken.items() if v.is_floating_point())
    broken[first] = torch.full_like(broken[first], float("nan"))
    save_file(broken, str(path))
    with pytest.raises(WeightsIntegrityError, match="NaN"):
        grow_network_from(spec, path)


def test_env_dir_comes_first(random_scratch_model, weights_dir):
    assert locate_weights(random_scratch_model).parent == weights_dir


def test_the_verifier_sidecar_records_the_registry_score():
    """The shipped verifier's sidecar names the score the registry keeps marks from (one fact, read in two places)."""
    import json
    from pathlib import Path

    sidecar = json.loads((Path(__file__).parents[1] / "weights" / "scratch-verifier.json").read_text())
    assert sidecar["threshold"] == registry.get_spec(registry.SCRATCH_VERIFIER_MODEL).settings["min_score"]


def test_a_checkpoint_given_for_weights_is_named_as_one(random_scratch_model, tmp_path):
    """`train --init run/checkpoint.pt` said only "not a safetensors weights file (header too large)"."""
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"step": 3, "modules": {}}, checkpoint)
    with pytest.raises(WeightsIntegrityError, match="train --resume continues a run"):
        grow_network_from(random_scratch_model, checkpoint)
    other = tmp_path / "notes.safetensors"
    other.write_bytes(b"not weights")
    with pytest.raises(WeightsIntegrityError) as caught:
        grow_network_from(random_scratch_model, other)
    assert "--resume" not in str(caught.value)
    with pytest.raises(WeightsNotFoundError, match="is a folder: give the .safetensors file in it"):
        grow_network_from(random_scratch_model, tmp_path)  # it said "not found"
