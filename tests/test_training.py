"""`oldphoto train scratch`: a few steps on tiny generated data; resuming gives the same result."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from oldphoto.archs.scratch_unet import ScratchUNetConfig
from oldphoto.errors import DataError
from oldphoto.imageio import save_rgb
from oldphoto.registry import get_spec
from oldphoto.training.loop import TrainSetup
from oldphoto.training.restoration import GlobalTrainConfig, train_global
from oldphoto.training.scratch import ScratchTrainConfig, train_scratch
from oldphoto.weights import load_network_from

from .conftest import smooth_image


@pytest.fixture
def started(monkeypatch):
    """What each recipe started from, by model name: ``weights`` (its trained network's parameters as initialised)
    and ``validation`` (its validation figures before the first step)."""
    from oldphoto.training import faces, loop, restoration, scratch

    record: dict[str, dict] = {"weights": {}, "validation": {}}

    def initial_network(spec, init):
        network = loop.initial_network(spec, init)
        record["weights"][spec.name] = {name: value.detach().clone() for name, value in network.named_parameters()}
        return network

    def run(recipe, schedule, **kwargs):
        for module in recipe.modules().values():
            module.eval()
        with torch.inference_mode():
            record["validation"][recipe.name] = recipe.validate()
        return loop.run(recipe, schedule, **kwargs)

    for module in (faces, restoration, scratch):
        monkeypatch.setattr(module, "initial_network", initial_network)
        monkeypatch.setattr(module, "run", run)
    return record


def assert_trained(started: dict, name: str, exported) -> None:
    """Every parameter of the exported weights of ``name`` moved away from its initial value."""
    weights = load_file(str(exported))
    initial = started["weights"][name]
    assert initial and set(initial) <= set(weights)
    unmoved = [key for key, value in initial.items() if torch.equal(value, weights[key])]
    assert not unmoved, f"{name}: {len(unmoved)} of {len(initial)} parameters never moved, e.g. {unmoved[:3]}"


def changed(config, **changes):
    """``config`` (a recipe's) with ``changes``, those of the shared fields made to its ``setup``."""
    shared = {field.name for field in dataclasses.fields(TrainSetup)}
    setup = dataclasses.replace(config.setup, **{k: v for k, v in changes.items() if k in shared})
    return dataclasses.replace(config, setup=setup, **{k: v for k, v in changes.items() if k not in shared})


def tiny_setup(data, run, steps: int, learning_rate: float, **changes) -> TrainSetup:
    """Two samples a step, validated every second step; weights and checkpoint in the folder ``run``."""
    return TrainSetup(
        data=(str(data),),
        out=str(run / "weights.safetensors"),
        checkpoint=str(run / "checkpoint.pt"),
        steps=steps,
        batch_size=2,
        learning_rate=learning_rate,
        validate_every=2,
        **changes,
    )


def tiny_config(tmp_path, name: str, steps: int) -> ScratchTrainConfig:
    for i in range(3):
        save_rgb(tmp_path / "data" / f"{i}.png", smooth_image(48, 64, seed=i))
    save_rgb(tmp_path / "val" / "v.png", smooth_image(64, 64, seed=9))
    return ScratchTrainConfig(
        setup=tiny_setup(tmp_path / "data", tmp_path / name, steps, learning_rate=2e-3),
        val=(str(tmp_path / "val"),),
        crop=32,
        val_samples=2,
        val_crop=32,
    )


def test_a_run_never_quietly_replaces_weights_or_starts_over(tmp_path):
    from oldphoto.errors import ConfigError, DataError

    config = tiny_config(tmp_path, "run", steps=2)
    with pytest.raises(DataError, match="no checkpoint"):  # --resume with nothing to resume: refused, not step 0
        train_scratch(config, resume=True)
    train_scratch(config)
    trained = Path(config.setup.out).read_bytes()
    for existing in (config.setup.out, config.setup.checkpoint):  # an earlier run's (or the shipped) file
        elsewhere = changed(config, out=str(tmp_path / "other.safetensors"), checkpoint=str(tmp_path / "other.pt"))
        with pytest.raises(DataError, match="--overwrite"):
            train_scratch(changed(elsewhere, **{"out" if existing == config.setup.out else "checkpoint": existing}))
    assert Path(config.setup.out).read_bytes() == trained
    train_scratch(changed(config, overwrite=True))
    for bad in ({"steps": 0}, {"batch_size": 0}, {"validate_every": 0}, {"learning_rate": -1.0}):
        with pytest.raises(ConfigError):
            changed(config, **bad)


def test_optimise_clips_the_gradient_norm_only_when_asked():
    from oldphoto.training.loop import optimise

    for max_grad_norm, expected_step in ((None, 1000.0), (1.0, 1.0)):
        weight = torch.nn.Parameter(torch.zeros(1))
        optimise(torch.optim.SGD([weight], lr=1.0), 1000.0 * weight.sum(), max_grad_norm)
        assert weight.item() == pytest.approx(-expected_step)


def test_resumed_run_equals_uninterrupted_run(tmp_path, started):
    straight = tiny_config(tmp_path, "straight", steps=4)
    state = train_scratch(straight)
    assert state.step == 4 and len(state.history) == 2
    assert all(np.isfinite(h["loss"]) for h in state.history)
    assert_trained(started, "scratch-unet", straight.setup.out)  # the best (exported) weights are trained ones

    interrupted = tiny_config(tmp_path, "resumed", steps=4)
    train_scratch(changed(interrupted, steps=2))
    # Same schedule length as the straight run: resume the 2-step checkpoint towards 4 steps.
    steps_run: list[int] = []
    resumed = train_scratch(interrupted, resume=True, on_step=lambda step, total, figures: steps_run.append(step))
    assert resumed.step == 4 and steps_run == [3, 4]  # only the two steps the checkpoint lacked
    a = torch.load(straight.setup.checkpoint, weights_only=False)["modules"]["network"]
    b = torch.load(interrupted.setup.checkpoint, weights_only=False)["modules"]["network"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert load_file(straight.setup.out)  # best weights exported

    # Resumed towards 6 steps with another --out: nothing was written there when the resumed steps did not beat the
    # checkpoint's best, while the run reported that best. Its own best is exported there now.
    moved = changed(interrupted, steps=6, out=str(tmp_path / "moved" / "w.safetensors"))
    assert train_scratch(moved, resume=True).best["step"] == 6 and load_file(moved.setup.out)


def test_resume_on_other_data_is_told(tmp_path, caplog, monkeypatch):
    """--resume with another --val (or --data, --seed, crop...) went on silently, comparing the new validation scores
    with a best scored on the old data. It is said now; a longer schedule or another --out is not."""
    config = tiny_config(tmp_path, "run", steps=2)
    train_scratch(config)
    with caplog.at_level("WARNING", logger="oldphoto.training.loop"):
        train_scratch(changed(config, steps=4, out=str(tmp_path / "elsewhere.safetensors")), resume=True)
    assert "other data" not in caplog.text
    # The same folders named relatively are the same data.
    monkeypatch.chdir(tmp_path)
    relative = changed(config, steps=5, data=("data",), val=("val",))
    with caplog.at_level("WARNING", logger="oldphoto.training.loop"):
        train_scratch(relative, resume=True)
    assert "other data" not in caplog.text
    save_rgb(tmp_path / "val2" / "v.png", smooth_image(64, 64, seed=3))
    with caplog.at_level("WARNING", logger="oldphoto.training.loop"):
        train_scratch(changed(config, steps=7, val=(str(tmp_path / "val2"),), crop=48), resume=True)
    assert "other data" in caplog.text and "val: " in caplog.text and "crop: 32 -> 48" in caplog.text


def test_out_and_checkpoint_must_be_two_files(tmp_path):
    from oldphoto.errors import DataError

    config = tiny_config(tmp_path, "same", steps=1)
    with pytest.raises(DataError, match="the same file"):
        train_scratch(changed(config, checkpoint=config.setup.out))
    # The card written beside the weights (<out>.json) would replace a checkpoint of that name at each export.
    with pytest.raises(DataError, match="the weights' card"):
        train_scratch(changed(config, checkpoint=str(Path(config.setup.out).with_suffix(".json"))))
    # --out w.json: the card replaced the weights, and the run ended "best validation ..." with no weights left.
    with pytest.raises(DataError, match="give --out a .safetensors name"):
        train_scratch(changed(config, out=str(tmp_path / "w.json")))
    # A training photo given as --out (or --checkpoint) was turned into weights with --overwrite.
    photo = next((tmp_path / "data").iterdir())
    before = photo.read_bytes()
    for where in ({"out": str(photo)}, {"checkpoint": str(photo)}, {"out": str(photo.with_suffix(".safetensors"))}):
        if "safetensors" in where.get("out", ""):
            photo.with_suffix(".json").write_text("[1, 2]")  # the card's path holds a JSON file that is no card
        with pytest.raises(DataError, match="the run would write it over"):
            train_scratch(changed(config, overwrite=True, **where))
    assert photo.read_bytes() == before


def test_scratch_training_starts_from_init_weights(tmp_path):
    from oldphoto.training.scratch import ScratchRecipe

    config = tiny_config(tmp_path, "init", steps=1)
    fresh = ScratchRecipe(config)
    # Weights no seeded initialisation would produce.
    shifted = {k: (v + 0.125).contiguous() for k, v in fresh.network.state_dict().items()}
    save_file(shifted, str(tmp_path / "init.safetensors"))
    started = ScratchRecipe(changed(config, init=str(tmp_path / "init.safetensors")))
    for name, value in started.network.state_dict().items():
        torch.testing.assert_close(value, shifted[name])


def test_resuming_a_checkpoint_of_another_architecture_says_what_to_do(tmp_path, monkeypatch):
    from oldphoto import registry

    config = tiny_config(tmp_path, "other", steps=1)
    train_scratch(config)
    spec = dataclasses.replace(get_spec(registry.SCRATCH_MODEL), config=ScratchUNetConfig(channels=(4, 8, 8)))
    monkeypatch.setattr(registry, "REGISTRY", {**registry.REGISTRY, registry.SCRATCH_MODEL: spec})
    with pytest.raises(DataError, match="does not fit the scratch-unet architecture.*without --resume"):
        train_scratch(changed(config, steps=2), resume=True)


def test_resuming_another_models_checkpoint_names_that_model(tmp_path):
    """A scratch-unet checkpoint given to `train vae-clean --resume` "does not fit the vae-clean architecture ...
    resume with the code that wrote it": the same code wrote it, for another model."""
    scratch = tiny_config(tmp_path, "scratch", steps=1)
    train_scratch(scratch)
    config = global_config(tmp_path, "vae-clean", steps=2)
    with pytest.raises(DataError, match="is a checkpoint of scratch-unet, not of vae-clean"):
        train_global(changed(config, checkpoint=scratch.setup.checkpoint, overwrite=True), resume=True)


def test_scratch_validation_draws_from_every_preset(tmp_path):
    from oldphoto.training.scratch import make_validation_set

    config = tiny_config(tmp_path, "presets", steps=1)

    def truth(presets):
        return make_validation_set(config.val, presets, None, config.val_samples, config.val_crop).truth

    default_only, bopbtl_only, mixed = truth(["default"]), truth(["bopbtl"]), truth(["default", "bopbtl"])
    assert not np.array_equal(default_only, bopbtl_only)
    assert not np.array_equal(mixed, default_only) and not np.array_equal(mixed, bopbtl_only)


def global_config(tmp_path, model: str, steps: int, name: str | None = None, **changes) -> GlobalTrainConfig:
    for folder, count in (("data", 3), ("val", 1), ("real", 3)):
        for i in range(count):
            path = tmp_path / folder / f"{i}.png"
            if not path.exists():
                save_rgb(path, smooth_image(48, 64, seed=10 * len(folder) + i))
    config = GlobalTrainConfig(
        model=model,
        setup=tiny_setup(tmp_path / "data", tmp_path / (name or model), steps, learning_rate=1e-3),
        val=(str(tmp_path / "val"),),
        real=(str(tmp_path / "real"),),
        crop=32,
        val_samples=2,
        val_crop=32,
    )
    return changed(config, **changes)


def test_global_recipes_train_in_order_and_export_loadable_weights(tmp_path, started):
    for model in ("vae-clean", "vae-old", "restore-unet"):
        state = train_global(global_config(tmp_path, model, steps=2))
        assert state.step == 2 and np.isfinite(state.best["score"])
        spec = get_spec(model)
        load_network_from(spec, tmp_path / model / "weights.safetensors")
        assert_trained(started, model, tmp_path / model / "weights.safetensors")
        # Two steps already help on the validation pairs (measured: +0.3 to +0.6 dB).
        assert state.best["score"] > started["validation"][model]["score"] + 0.1, model
    mapping = global_config(
        tmp_path,
        "mapping",
        steps=2,
        vae_old=str(tmp_path / "vae-old" / "weights.safetensors"),
        vae_clean=str(tmp_path / "vae-clean" / "weights.safetensors"),
    )
    state = train_global(mapping)
    assert state.step == 2 and {"psnr", "ssim"} <= set(state.best)
    load_network_from(get_spec("mapping"), mapping.setup.out)
    assert_trained(started, "mapping", mapping.setup.out)


def test_detector_mask_source_gives_the_mask_restore_gives(tmp_path):
    """--mask-source detector: the installed detector's marks that the verifier keeps, as restore gives them, not
    the detector's thresholded map alone. A verifier that rejects every mark it judges leaves only the thin lines."""
    from safetensors.torch import save_file

    from oldphoto.restore.scratches import load_scratch_detection
    from oldphoto.runtime import make_runtime
    from oldphoto.training.restoration import AblationRecipe
    from oldphoto.training.scratch import luma, scratch_probabilities
    from oldphoto.weights import load_network

    rejecting = {name: tensor.clone() for name, tensor in load_network(get_spec("scratch-verifier")).state_dict().items()}
    rejecting["head.2.weight"].zero_()
    rejecting["head.2.bias"].fill_(-30.0)  # every judged mark scores ~0: scene content
    save_file(rejecting, tmp_path / "rejecting.safetensors")
    config = dataclasses.replace(global_config(tmp_path, "restore-unet", steps=1, mask_source="detector"), val_crop=64)
    installed = AblationRecipe(config)
    runtime = make_runtime("cpu", precision="auto", threads=torch.get_num_threads())
    assert torch.equal(installed.val_mask, load_scratch_detection(runtime).batch_masks(installed.val_degraded, runtime))
    spec = get_spec("scratch-unet")
    unverified = scratch_probabilities(load_network(spec), luma(installed.val_degraded)) > spec.settings["threshold"]
    rejected = AblationRecipe(dataclasses.replace(config, verifier_weights=str(tmp_path / "rejecting.safetensors")))
    torch.testing.assert_close(rejected.val_degraded, installed.val_degraded)
    assert rejected.val_mask.sum() < installed.val_mask.sum() <= unverified.sum()
    synthetic = AblationRecipe(dataclasses.replace(config, mask_source="synthetic"))
    torch.testing.assert_close(synthetic.val_degraded, installed.val_degraded)
    assert not torch.equal(synthetic.val_mask, installed.val_mask)
    with pytest.raises(DataError, match="unknown mask source 'oracle'; valid: synthetic, detector"):
        AblationRecipe(dataclasses.replace(config, mask_source="oracle"))


def test_vae_old_resumes_exactly(tmp_path):
    straight = global_config(tmp_path, "vae-old", steps=4, name="straight")
    train_global(straight)
    interrupted = global_config(tmp_path, "vae-old", steps=4, name="resumed")
    train_global(changed(interrupted, steps=2))
    steps_run: list[int] = []
    resumed = train_global(interrupted, resume=True, on_step=lambda step, total, figures: steps_run.append(step))
    assert resumed.step == 4 and steps_run == [3, 4]  # resumed at step 2, not trained afresh
    a = torch.load(straight.setup.checkpoint, weights_only=False)["modules"]
    b = torch.load(interrupted.setup.checkpoint, weights_only=False)["modules"]
    for module in ("vae", "discriminator"):
        assert all(torch.allclose(a[module][k], b[module][k], atol=1e-6) for k in a[module]), module


def test_vae_old_needs_real_photos(tmp_path, monkeypatch):
    """Said before any data is loaded, without the developers' ../shared/data/real_old as the folder to pass."""
    import oldphoto.training.restoration as restoration

    def no_stamps(*args, **kwargs):
        raise AssertionError("data loaded before the missing --real was said")

    monkeypatch.setattr(restoration, "load_stamps", no_stamps)
    with pytest.raises(DataError, match=r"pass --real DIR \(a folder of real old photos") as raised:
        train_global(dataclasses.replace(global_config(tmp_path, "vae-old", steps=1), real=()))
    assert "shared/data" not in str(raised.value)


def test_train_command_runs_and_reports(tmp_path):
    from typer.testing import CliRunner

    from oldphoto.cli.app import app

    config = global_config(tmp_path, "restore-unet", steps=2)
    result = CliRunner().invoke(
        app,
        ["train", "restore-unet", "--data", config.setup.data[0], "--val", config.val[0], "--steps", "2", "--batch-size", "2",
         "--crop", "32", "--validate-every", "1", "--val-samples", "2", "--out", config.setup.out, "--checkpoint", config.setup.checkpoint],
    )
    assert result.exit_code == 0, result.output
    assert "restore-unet step 2" in result.output and "best validation of restore-unet" in result.output
    same = ["train", "restore-unet", "--data", config.setup.data[0], "--val", config.val[0], "--steps", "2", "--batch-size", "2",
            "--crop", "32", "--validate-every", "1", "--val-samples", "2", "--out", config.setup.out]
    resumed = CliRunner().invoke(app, [*same, "--checkpoint", config.setup.checkpoint, "--resume", "--init", config.setup.out])
    assert resumed.exit_code == 0 and "--init does nothing with --resume" in " ".join(resumed.output.split()), resumed.output
    # The weights file is there but no checkpoint at the new path: --resume cannot help, so it is not offered.
    fresh = CliRunner().invoke(app, [*same, "--checkpoint", str(tmp_path / "new" / "c.pt")])
    shown = " ".join(fresh.output.split())
    assert fresh.exit_code == 2 and "--overwrite to replace it" in shown and "--resume" not in shown
    bad = CliRunner().invoke(app, ["train", "vae-clean", "--data", config.setup.data[0], "--val", config.val[0], "--crop", "30"])
    assert bad.exit_code == 2 and "multiples of 4" in bad.output
    # A helper's sweep: these crashed with tracebacks, or trained on less than asked without a word.
    base = ["--val", config.val[0], "--steps", "1", "--out", str(tmp_path / "x" / "w.safetensors"), "--checkpoint", str(tmp_path / "x" / "c.pt")]
    one = tmp_path / "one"
    one.mkdir()
    (one / "only.png").write_bytes(next(Path(config.setup.data[0]).glob("*.png")).read_bytes())
    for args, says in (
        (["vae-clean", "--data", config.setup.data[0], "--crop", "0"], "--crop"),
        (["vae-clean", "--data", config.setup.data[0], "--val-samples", "0"], "--val-samples"),
        (["scratch", "--data", config.setup.data[0], "--crop", "0"], "--crop"),
        (["vae-clean", "--data", config.setup.data[0], "--crop", "4096"], "--crop"),  # was killed for memory, unsaid
        (["vae-clean", "--data", config.setup.data[0], "--data", str(tmp_path / "misspelt")], "no such folder"),
        (["vae-old", "--data", config.setup.data[0], "--real", config.setup.data[0], "--batch-size", "1"], "--batch-size 2 or more"),
        (["vae-old", "--data", config.setup.data[0], "--real", str(one)], "only photo there"),
    ):
        result = CliRunner().invoke(app, ["train", *args, *base])
        assert result.exit_code == 2 and says in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output


def _face_folder(folder):
    """Three shifted copies of the shipped face fixture and one landscape without a face."""
    from pathlib import Path

    from oldphoto.imageio import load_rgb

    fixture = load_rgb(Path(__file__).parent / "fixtures" / "face-1870.jpg")
    for i in range(3):
        save_rgb(folder / f"{i}.png", np.roll(fixture, i, axis=1))
    save_rgb(folder / "3-landscape.png", smooth_image(96, 96))


def test_face_recipe_aligns_trains_and_holds_out(tmp_path, started):
    from oldphoto.training.data import split_held_out
    from oldphoto.training.faces import FaceTrainConfig, train_face

    _face_folder(tmp_path / "faces")
    train, held_out = split_held_out(sorted((tmp_path / "faces").iterdir()))
    assert held_out == [tmp_path / "faces" / "0.png"] and len(train) == 3
    config = FaceTrainConfig(setup=tiny_setup(tmp_path / "faces", tmp_path / "run", steps=2, learning_rate=1e-3), crop=64, val_samples=1)
    state = train_face(config)
    assert state.step == 2 and np.isfinite(state.best["psnr"])
    assert_trained(started, "face-refine", config.setup.out)
    assert state.best["psnr"] > started["validation"]["face-refine"]["psnr"] + 0.5  # measured: 11.5 -> 14.1 dB
    # Two training faces aligned (the landscape has none) and cached for the next run.
    assert load_file(config.setup.out) and len(list((tmp_path / "run").glob("aligned-*.npy"))) == 2


@pytest.mark.parametrize("retrained", ["face-refine", "detail-fusion"])
def test_face_gate_pool_is_drawn_again_once_the_refiner_or_global_stage_is_retrained(tmp_path, monkeypatch, weights_dir, retrained):
    """The gate learns from the installed refiner's and global stage's outputs, so a pool cached before either
    changed is stale."""
    from oldphoto.training.face_gate import FaceGateTrainConfig, FacePool, pool_of

    from .conftest import TINY_DETAIL_CONFIG, TINY_FACE_CONFIG, install_random_model

    tiny = {"face-refine": TINY_FACE_CONFIG, "detail-fusion": TINY_DETAIL_CONFIG}[retrained]

    config = FaceGateTrainConfig(setup=tiny_setup(tmp_path / "faces", tmp_path / "run", steps=1, learning_rate=1e-3))
    draws = []

    def draw():
        draws.append(1)
        face = torch.full((1, 3, 4, 4), float(len(draws)))
        return FacePool(original=face, restored=face, refined=face, clean=face, damaged=np.array([True]))

    cache = tmp_path / "run" / "aligned"
    install_random_model(monkeypatch, weights_dir, retrained, tiny, seed=4)
    assert pool_of(cache, "train", draw, config, []).clean.max() == 1
    assert pool_of(cache, "train", draw, config, []).clean.max() == 1 and len(draws) == 1  # cached
    install_random_model(monkeypatch, weights_dir, retrained, tiny, seed=5)  # retrained
    assert pool_of(cache, "train", draw, config, []).clean.max() == 2 and len(draws) == 2


def test_face_recipe_feeds_the_refiner_what_restore_feeds_it(tmp_path):
    """--after-global: the refiner's inputs are the damaged faces passed through the installed global stage;
    --init: training starts from the given weights exactly."""
    from oldphoto.training.faces import (
        FaceRecipe,
        FaceTrainConfig,
        global_stage_on_faces,
    )

    _face_folder(tmp_path / "faces")
    setup = tiny_setup(tmp_path / "faces", tmp_path / "run", steps=1, learning_rate=1e-3)
    base = {"setup": setup, "crop": 64, "val_samples": 1}
    raw = FaceRecipe(FaceTrainConfig(**base, after_global=False))
    after = FaceRecipe(FaceTrainConfig(**base, after_global=True))
    torch.testing.assert_close(raw.val_degraded, after.val_degraded)  # same seed, same damage
    no_damage = torch.zeros_like(raw.val_degraded[:, :1])
    torch.testing.assert_close(after.val_input, global_stage_on_faces()(raw.val_degraded, no_damage))
    torch.testing.assert_close(raw.val_input, raw.val_degraded)
    assert (after.val_input - raw.val_input).abs().mean() > 0.005
    # The refiner is conditioned on the face before the global stage unless told otherwise.
    assert after.condition(after.val_input, after.val_degraded) is after.val_degraded
    own = FaceRecipe(FaceTrainConfig(**base, condition="input"))
    assert own.condition(own.val_input, own.val_degraded) is own.val_input

    # Weights no seeded initialisation would produce.
    shifted = {k: (v + 0.125).contiguous() for k, v in after.network.state_dict().items()}
    save_file(shifted, str(tmp_path / "init.safetensors"))
    started = FaceRecipe(changed(FaceTrainConfig(**base), init=str(tmp_path / "init.safetensors")))
    for name, value in started.network.state_dict().items():
        torch.testing.assert_close(value, shifted[name])


def test_face_damage_draws_one_of_several_presets_per_face():
    """With several presets each face gets one of them; with one, every face gets it."""
    from oldphoto.degrade import get_preset, override
    from oldphoto.training.faces import damaged_faces

    faces = (np.stack([smooth_image(256, 256, seed=k) for k in range(12)]) * 255).astype(np.uint8)
    untouched = override(get_preset("bopbtl"), structured=False, unstructured=False, distractors=False, grayscale_probability=0.0)
    damaged = override(get_preset("bopbtl"), grayscale_probability=0.0)

    def changed_faces(presets) -> np.ndarray:
        clean, degraded, _ = damaged_faces(faces, range(len(faces)), presets, (), np.random.default_rng(0), 64)
        return (degraded - clean).abs().flatten(1).max(dim=1).values.numpy() > 0.02

    assert not changed_faces([untouched]).any() and changed_faces([damaged]).all()
    mixed = changed_faces([untouched, damaged])
    assert 0 < mixed.sum() < len(faces)


def test_face_damage_can_shrink_faces_target_included():
    """--small-faces: a face shrunk to 32 px and scaled back holds a 32 px face's detail, in the target as well as in
    the damaged face (the refiner must not learn to invent detail a small face does not have)."""
    from oldphoto.degrade import get_preset, override
    from oldphoto.training.faces import damaged_faces

    textured = np.random.default_rng(0).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    untouched = override(get_preset("bopbtl"), structured=False, unstructured=False, distractors=False, grayscale_probability=0.0)

    def detail(small_faces: float) -> tuple[float, float]:
        clean, degraded, _ = damaged_faces(textured, range(4), [untouched], (), np.random.default_rng(0), 256, small_faces, (32, 32))
        return float((clean[..., 1:] - clean[..., :-1]).abs().mean()), float((degraded - clean).abs().max())

    full, small = detail(0.0), detail(1.0)
    assert full[0] > 0.3 and small[0] < 0.1 * full[0]  # neighbouring pixels of noise differ by a third; shrunk, hardly
    assert full[1] == small[1] == 0.0  # no damage in either: the shrink is applied to the target too


def test_small_faces_can_be_damaged_at_their_own_size():
    """--small-damage native: a small face is damaged at its size and scaled to the template with its damage, so its
    grain is as coarse, magnified, as a small face's in a damaged scan; by default (template) the grain is drawn at the
    template's pixels. Measured as how much neighbouring pixels of the damage differ for the damage's size."""
    from oldphoto.degrade import get_preset, override
    from oldphoto.training.faces import damaged_faces

    flat = np.full((8, 256, 256, 3), 128, np.uint8)
    preset = override(get_preset("bopbtl"), structured=False, distractors=False, grayscale_probability=0.0)

    def roughness(where: str) -> float:
        clean, degraded, mask = damaged_faces(flat, range(8), [preset], (), np.random.default_rng(0), 256, 1.0, (32, 32), small_damage=where)
        assert clean.shape == degraded.shape == (8, 3, 256, 256) and mask.shape == (8, 1, 256, 256)
        damage = degraded - clean
        return float((damage[..., 1:] - damage[..., :-1]).abs().mean() / damage.abs().mean())

    template, native = roughness("template"), roughness("native")
    assert native < 0.3 * template, (native, template)


def test_face_damage_can_leave_a_share_of_faces_undamaged():
    """--undamaged-faces: those faces come back as they went in, with an empty mask, so the refiner learns to return a
    sharp face as it was; without the option every face is damaged."""
    from oldphoto.degrade import get_preset, override
    from oldphoto.training.faces import damaged_faces

    faces = np.random.default_rng(0).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    preset = override(get_preset("bopbtl"), structured=True)

    def batch(share: float):
        return damaged_faces(faces, range(4), [preset], (), np.random.default_rng(0), 256, undamaged_faces=share)

    clean, degraded, mask = batch(1.0)
    assert torch.equal(clean, degraded) and mask.sum() == 0
    flipped = [torch.equal(clean[k], torch.from_numpy(faces[k][:, ::-1].astype(np.float32) / 255).permute(2, 0, 1)) for k in range(4)]
    unflipped = [torch.equal(clean[k], torch.from_numpy(faces[k].astype(np.float32) / 255).permute(2, 0, 1)) for k in range(4)]
    assert all(a or b for a, b in zip(flipped, unflipped, strict=True))  # the face itself, mirrored or not
    clean, degraded, _ = batch(0.0)
    assert (degraded - clean).abs().amax(dim=(1, 2, 3)).min() > 0.05  # every face damaged


def test_face_recipe_can_feed_the_global_stage_the_detected_mask(tmp_path, caplog):
    """--mask-source detector: the global stage in front of the refiner gets the installed detector and verifier's mask
    of each damaged face, as restore gives it, instead of the drawn damage's own."""
    from oldphoto.restore.scratches import load_scratch_detection
    from oldphoto.runtime import make_runtime
    from oldphoto.training.faces import FaceRecipe, FaceTrainConfig, global_stage_on_faces

    _face_folder(tmp_path / "faces")
    setup = tiny_setup(tmp_path / "faces", tmp_path / "run", steps=1, learning_rate=1e-3)
    base = {"setup": setup, "crop": 64, "val_samples": 1, "structured": True}
    truth = FaceRecipe(FaceTrainConfig(**base))
    detected = FaceRecipe(FaceTrainConfig(**base, mask_source="detector"))
    torch.testing.assert_close(truth.val_degraded, detected.val_degraded)  # same seed, same damage
    runtime = make_runtime("cpu", precision="fp32")
    found = load_scratch_detection(runtime).batch_masks(detected.val_degraded, runtime)
    assert found.shape == (1, 1, 256, 256) and set(found.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(detected.val_input, global_stage_on_faces()(detected.val_degraded, found))
    assert (detected.val_input - truth.val_input).abs().max() > 0.02  # the masks differ (measured: 0.07)
    with pytest.raises(DataError, match="unknown mask source"):
        FaceRecipe(FaceTrainConfig(**base, mask_source="guessed"))
    with pytest.raises(DataError, match="--small-faces must be a share"):
        FaceRecipe(FaceTrainConfig(**base, small_faces=1.5))
    with pytest.raises(DataError, match="--undamaged-faces must be a share"):
        FaceRecipe(FaceTrainConfig(**base, undamaged_faces=-0.1))
    with pytest.raises(DataError, match="--small-damage must be"):
        FaceRecipe(FaceTrainConfig(**base, small_damage="somewhere"))
    # Options that need another were accepted in silence and written into the card as if used.
    with caplog.at_level("WARNING", logger="oldphoto.training"):
        FaceRecipe(FaceTrainConfig(**base, after_global=False, mask_source="detector", small_damage="native"))
    assert "--mask-source does nothing without --after-global" in caplog.text
    assert "--small-damage does nothing without --small-faces" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="oldphoto.training"):
        FaceRecipe(FaceTrainConfig(**base, small_faces=0.5, small_damage="native"))
    assert "does nothing" not in caplog.text
    # --grayscale-prob 1: every face a black-and-white print, target included (the preset's own chance is 10%).
    gray = FaceRecipe(FaceTrainConfig(**base, grayscale_prob=1.0))
    assert torch.equal(gray.val_clean[:, 0], gray.val_clean[:, 1]) and torch.equal(gray.val_clean[:, 1], gray.val_clean[:, 2])
    assert not torch.equal(truth.val_clean[:, 0], truth.val_clean[:, 2])


def test_detail_fusion_trains_behind_the_frozen_triplet(tmp_path, random_global_models, started):
    config = global_config(tmp_path, "detail-fusion", steps=2, clean_fraction=0.5, light_fraction=0.5)
    state = train_global(config)
    assert state.step == 2
    assert_trained(started, "detail-fusion", config.setup.out)
    assert {"psnr", "ssim", "psnr_undamaged", "ssim_undamaged"} <= set(state.best)
    load_network_from(get_spec("detail-fusion"), config.setup.out)
    with pytest.raises(DataError, match="multiples of"):  # the triplet's grid: 16 px shipped, less for tiny mappings
        train_global(dataclasses.replace(config, crop=37))


def test_only_accelerated_recipes_take_a_device_or_precision(tmp_path):
    from oldphoto.training.loop import TrainRuntime

    for change in ({"device": "cuda"}, {"precision": "bf16"}, {"workers": 2}):
        with pytest.raises(DataError, match="CPU in fp32 only"):
            train_global(global_config(tmp_path, "vae-clean", steps=1, runtime=TrainRuntime(**change)))


@pytest.mark.parametrize("recipe", ["vae-clean", "mapping"])
def test_global_recipes_help_says_the_runtime_options_are_for_detail_fusion(recipe):
    """`train mapping --help` listed --device, --precision and --workers as for any recipe, and the run refused them."""
    from typer.testing import CliRunner

    from oldphoto.cli.app import app

    result = CliRunner().invoke(app, ["train", recipe, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for option in ("--device", "--precision", "--workers"):
        line = next(line for line in result.output.splitlines() if f" {option} " in line)
        assert "detail-fusion only" in line, line


def test_time_budget_ends_the_run_and_decays_the_learning_rate(tmp_path, monkeypatch):
    from pathlib import Path

    from oldphoto.training import loop
    from oldphoto.training.loop import Schedule, learning_rate_at

    schedule = Schedule(steps=1000, learning_rate=1.0, validate_every=10, checkpoint="c", out="o", time_budget=100.0)
    assert schedule.progress(100, 10.0) == pytest.approx(0.1)
    assert schedule.progress(100, 50.0) == pytest.approx(0.5)  # time runs out first
    assert learning_rate_at(500, schedule, 99.0) < 0.05 < learning_rate_at(500, schedule, 1.0)
    # On a clock that advances one second per reading, a 6-second budget ends a 1000-step run after a few steps,
    # with a last validation and export.
    clock = iter(range(10**6))
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    config = changed(tiny_config(tmp_path, "budget", steps=1000), runtime=loop.TrainRuntime(time_budget=6.0), validate_every=100)
    state = train_scratch(config)
    assert 1 <= state.step < 5 and state.history[-1]["step"] == state.step
    assert Path(config.setup.out).is_file()


def test_real_photo_split_keeps_the_labelled_test_out(tmp_path):
    import json
    from pathlib import Path

    from oldphoto.training.data import split_real_photos

    files = [Path(f"/photos/p{i:02d}.jpg") for i in range(25)]
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"components": [{"photo": "p03.png", "box": [0, 0, 1, 1]}, {"photo": "p07.jpg", "box": [0, 0, 1, 1]}]}))
    train, test = split_real_photos(files, labels)
    # Named photos match by stem (a re-encoded copy splits the same way); then every 10th of the other 23.
    assert {f.stem for f in test} == {"p03", "p07", "p00", "p12", "p22"}
    assert not set(train) & set(test) and len(train) + len(test) == 25
    with pytest.raises(DataError, match="real-photo label file"):
        split_real_photos(files, tmp_path / "missing.json")


def test_batch_stream_in_workers_is_seeded_and_new_after_a_resume():
    from oldphoto.training.data import BatchStream

    def make(rng):
        return (torch.from_numpy(rng.random(3)),)

    first = BatchStream(make, np.random.default_rng(0), workers=1, seed=5)
    again = BatchStream(make, np.random.default_rng(0), workers=1, seed=5)
    resumed = BatchStream(make, np.random.default_rng(0), workers=1, seed=5)
    a, b, c = first.next(0)[0], again.next(0)[0], resumed.next(100)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    inline = BatchStream(make, np.random.default_rng(0))
    assert torch.equal(inline.next(0)[0], torch.from_numpy(np.random.default_rng(0).random(3)))


def test_train_precision_is_resolved_and_checked_as_restore_does(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from oldphoto import runtime
    from oldphoto.cli.app import app
    from oldphoto.training.loop import Accelerator

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert Accelerator.of("cpu", "auto").precision == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert Accelerator.of("cpu", "auto").precision == "bf16"
    config = tiny_config(tmp_path, "fp16", steps=1)
    result = CliRunner().invoke(
        app, ["train", "scratch", "--data", config.setup.data[0], "--val", config.val[0], "--precision", "fp16", "--steps", "1"]
    )
    assert result.exit_code != 0 and "CUDA" in result.output
    bad = CliRunner().invoke(app, ["train", "scratch", "--data", config.setup.data[0], "--val", config.val[0], "--precision", "fp8"])
    assert bad.exit_code == 2 and "fp8" in bad.output


def marked_photos(tmp_path, count: int = 3):
    """Dark photos of 48 x 64 with one white 6 x 6 square each, at (x 50, y 8): its centre lies at 53 / 64 of the
    width and 11 / 48 of the height."""
    paths = []
    for i in range(count):
        image = np.full((48, 64, 3), 0.1 + 0.02 * i, np.float32)
        image[8:14, 50:56] = 1.0
        paths.append(tmp_path / "marked" / f"{i}.png")
        save_rgb(paths[-1], image)
    return paths


def holds_the_square(plane: np.ndarray) -> bool:
    """Whether an (H, W) crop of :func:`marked_photos` (aged or not) shows its square: a patch of about 36 pixels
    clearly brighter than the rest."""
    background, peak = float(np.median(plane)), float(plane.max())
    bright = int((plane > (background + peak) / 2).sum())
    return peak - background > 0.2 and 20 <= bright <= 60


def test_hard_negative_crops_are_centred_on_the_marks(tmp_path):
    from oldphoto.training.data import CropPool, HardNegative, HardNegativeCrops

    paths = marked_photos(tmp_path)
    pool = CropPool(paths, crop=32)
    elsewhere = HardNegative(str(tmp_path / "not-in-the-pool.png"), 0.5, 0.5, 100.0)
    marks = [HardNegative(str(path), 53 / 64, 11 / 48, 36.0) for path in paths[:2]] + [elsewhere]
    crops = HardNegativeCrops(marks, [pool])
    assert len(crops) == 2  # the mark on a photo the pool does not hold is left out
    rng = np.random.default_rng(0)
    assert all(holds_the_square(crops.sample(rng).max(axis=-1)) for _ in range(40))
    # Random crops of the same photos often miss it, so the check above can fail.
    assert not all(holds_the_square(pool.sample(rng).max(axis=-1)) for _ in range(40))
    with pytest.raises(DataError, match="none of the hard negatives"):
        HardNegativeCrops([elsewhere], [pool])


def test_hard_negative_file_is_read_and_checked(tmp_path):
    import json

    from oldphoto.training.data import HardNegative, load_hard_negatives

    good = tmp_path / "hard.json"
    good.write_text(json.dumps({"marks": [{"photo": "a.png", "x": 0.5, "y": 0.25, "area": 40}]}))
    assert load_hard_negatives(good) == [HardNegative("a.png", 0.5, 0.25, 40.0)]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"components": []}))
    with pytest.raises(DataError, match="not a hard-negative file"):
        load_hard_negatives(bad)
    bad.write_text(json.dumps({"marks": [{"photo": "a.png", "x": 1.5, "y": 0.25, "area": 40}]}))
    with pytest.raises(DataError, match="between 0 and 1"):
        load_hard_negatives(bad)


def test_scratch_recipe_centres_its_share_of_crops_on_hard_negatives(tmp_path):
    import json

    from oldphoto.training.scratch import ScratchRecipe

    paths = marked_photos(tmp_path, count=3)
    hard = tmp_path / "hard.json"
    hard.write_text(json.dumps({"marks": [{"photo": str(p), "x": 53 / 64, "y": 11 / 48, "area": 36} for p in paths]}))
    config = changed(
        tiny_config(tmp_path, "hard", steps=1),
        data=(str(tmp_path / "marked"),),
        presets=("default-v1",),  # no scene distractors, so the square is the brightest thing in a crop
        undamaged_fraction=1.0,
        batch_size=8,
    )

    def crops_with_the_square(**changes) -> int:
        gray, _, _ = ScratchRecipe(changed(config, **changes)).make_batch(np.random.default_rng(1))
        return sum(holds_the_square(crop[0].numpy()) for crop in gray)

    assert crops_with_the_square(hard_negatives=str(hard), hard_fraction=1.0) == 8
    assert crops_with_the_square() < 8


def test_extra_damage_joins_the_training_presets_not_the_validation_crops(tmp_path):
    from oldphoto.errors import ConfigError
    from oldphoto.training.scratch import ScratchRecipe, with_extra_damage

    config = tiny_config(tmp_path, "extra", steps=1)
    plain, extra = ScratchRecipe(config), ScratchRecipe(changed(config, extra_damage=(("flaking", 1.0),)))
    assert [s.name for s in extra.presets[0].structured] == [s.name for s in plain.presets[0].structured] + ["flaking"]
    np.testing.assert_array_equal(extra.validation.truth, plain.validation.truth)
    with pytest.raises(ConfigError, match="unknown structured op 'flakes'"):
        with_extra_damage(plain.presets[0], [("flakes", 0.1)])


def test_train_command_checks_extra_damage(tmp_path):
    from typer.testing import CliRunner

    from oldphoto.cli.app import app

    result = CliRunner().invoke(app, ["train", "scratch", "--data", str(tmp_path), "--val", str(tmp_path), "--extra-damage", "flaking"])
    assert result.exit_code == 2 and "expected OP:P" in result.output


def test_a_validation_folder_inside_the_training_data_is_named(tmp_path):
    """`--val` equal to `--data` (or below it: --data is searched recursively) trained on the validation photos and
    reported their figures as held-out ones, without a word."""
    from typer.testing import CliRunner

    from oldphoto.cli.app import app

    config = tiny_config(tmp_path, "run", steps=1)
    data = config.setup.data[0]
    for val in (data, str(Path(data) / "sub")):
        save_rgb(Path(data) / "sub" / "v.png", smooth_image(64, 64, seed=5))
        out = tmp_path / f"o{len(val)}"
        args = ["train", "scratch", "--data", data, "--val", val, "--steps", "1", "--crop", "32", "--batch-size", "1"]
        result = CliRunner().invoke(app, [*args, "--out", str(out / "w.safetensors"), "--checkpoint", str(out / "c.pt")])
        shown = " ".join(result.output.split())
        assert result.exit_code == 0 and "the validation photos are training photos" in shown, result.output
    result = CliRunner().invoke(app, ["train", "scratch", "--data", data, "--val", config.val[0], "--steps", "1", "--crop", "32",
                                      "--batch-size", "1", "--out", str(tmp_path / "ok" / "w.safetensors"), "--checkpoint", str(tmp_path / "ok" / "c.pt")])
    assert result.exit_code == 0 and "training photos" not in result.output, result.output
    # Options that need another were written into the card as if used, without a word.
    args = ["train", "scratch", "--data", data, "--val", config.val[0], "--steps", "1", "--crop", "32", "--batch-size", "1",
            "--real-fraction", "0.9", "--hard-fraction", "0.5", "--out", str(tmp_path / "u" / "w.safetensors"), "--checkpoint", str(tmp_path / "u" / "c.pt")]
    shown = " ".join(CliRunner().invoke(app, args).output.split())
    assert "--real-fraction does nothing without --real" in shown and "--hard-fraction does nothing without --hard-negatives" in shown
    assert "--real-labels" not in shown  # not given: nothing to say
    labels = Path(data) / "labels.json"
    labels.write_text('{"components": []}')
    args[args.index("--real-fraction") : args.index("--real-fraction") + 2] = ["--real-labels", str(labels)]
    shown = " ".join(CliRunner().invoke(app, [*args[:-4], "--out", str(tmp_path / "u2" / "w.safetensors"), "--checkpoint", str(tmp_path / "u2" / "c.pt")]).output.split())
    assert "--real-labels does nothing without --real" in shown, shown


def test_an_interrupted_training_says_where_to_resume_from(tmp_path, monkeypatch):
    """Ctrl-C during `oldphoto train` exited 130 without a word on the checkpoint."""
    from typer.testing import CliRunner

    import oldphoto.training.restoration as restoration
    from oldphoto.cli.app import app

    def interrupted(config, resume=False, on_step=None):
        on_step(250, 1000, {"loss": 0.5, "score": 30.0, "validated": 1.0})
        on_step(260, 1000, {"loss": 0.4})
        raise KeyboardInterrupt

    monkeypatch.setattr(restoration, "train_global", interrupted)
    config = global_config(tmp_path, "vae-clean", steps=2)
    result = CliRunner().invoke(app, ["train", "vae-clean", "--data", config.setup.data[0], "--val", config.val[0], "--out", config.setup.out, "--checkpoint", config.setup.checkpoint])
    assert result.exit_code == 130, result.output
    assert "interrupted at step 260" in result.output and "step 250" in result.output and "--resume" in result.output


def test_a_resumed_training_interrupted_before_its_first_validation_points_to_its_checkpoint(tmp_path, monkeypatch):
    """It said "no checkpoint was written yet" while the checkpoint it resumed from was still there."""
    from typer.testing import CliRunner

    import oldphoto.training.restoration as restoration
    from oldphoto.cli.app import app

    def interrupted(config, resume=False, on_step=None):
        on_step(251, 1000, {"loss": 0.4})
        raise KeyboardInterrupt

    monkeypatch.setattr(restoration, "train_global", interrupted)
    config = global_config(tmp_path, "vae-clean", steps=2)
    Path(config.setup.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 250}, config.setup.checkpoint)  # an earlier run's
    args = ["train", "vae-clean", "--data", config.setup.data[0], "--val", config.val[0], "--out", config.setup.out, "--checkpoint", config.setup.checkpoint, "--resume"]
    result = CliRunner().invoke(app, args)
    shown = " ".join(result.output.split())
    assert result.exit_code == 130 and "still holds the run as it was resumed" in shown and "no checkpoint" not in shown, result.output


def test_training_photos_skip_hidden_files_and_folders(tmp_path):
    """A copy of an album from a Mac (._a.jpg resource forks, .thumbnails/) fed its hidden files to training."""
    from oldphoto.training.data import list_images

    save_rgb(tmp_path / "album" / "a.png", smooth_image(16, 16, seed=0))
    save_rgb(tmp_path / "album" / ".thumbnails" / "a.png", smooth_image(16, 16, seed=1))
    (tmp_path / "album" / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert list_images([tmp_path / "album"]) == [tmp_path / "album" / "a.png"]


def test_training_photos_under_two_of_the_folders_given_are_used_once(tmp_path):
    """`--data faces --data faces/` (or a folder and its sub-folder) listed each photo twice: the held-out split then
    trained on one copy of a validation photo."""
    from oldphoto.training.data import list_images, split_held_out

    for i in range(12):
        save_rgb(tmp_path / "album" / "sub" / f"{i:02d}.png", smooth_image(16, 16, seed=i))
    once = list_images([tmp_path / "album"])
    assert list_images([tmp_path / "album", tmp_path / "album" / "sub", tmp_path / "album/"]) == once and len(once) == 12
    train, held_out = split_held_out(list_images([tmp_path / "album", tmp_path / "album" / "sub"]))
    assert held_out and not set(train) & set(held_out)


def test_a_damaged_pool_cache_is_drawn_again_and_a_save_is_atomic(tmp_path, monkeypatch):
    """A pool cache cut short (a kill or a full disk while saving) failed every later run with a traceback that blamed
    the checkpoint, even with --overwrite."""
    import dataclasses

    import torch

    from oldphoto.training.data import cached_pool

    @dataclasses.dataclass
    class Pool:
        values: torch.Tensor

    drawn = []

    def draw():
        drawn.append(1)
        return Pool(torch.arange(100_000, dtype=torch.float32))

    cache = tmp_path / "run" / "checkpoint.pt"
    first = cached_pool(cache, "train", ("x",), [], Pool, draw)
    (saved,) = (tmp_path / "run").glob("pool-train-*.pt")
    saved.write_bytes(saved.read_bytes()[:3000])
    again = cached_pool(cache, "train", ("x",), [], Pool, draw)
    assert len(drawn) == 2 and torch.equal(again.values, first.values)
    assert torch.equal(cached_pool(cache, "train", ("x",), [], Pool, draw).values, first.values) and len(drawn) == 2

    def interrupted_save(obj, handle):
        handle.write(b"PK partial")
        raise KeyboardInterrupt

    saved.unlink()
    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        cached_pool(cache, "train", ("x",), [], Pool, draw)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []  # no half-written cache, no temporary file


def test_training_that_diverges_or_trains_nothing_stops_with_an_error(tmp_path, monkeypatch):
    """A learning rate of 1e30 exported "best score: nan" weights (restore then wrote black photos as "restored"); a
    time budget spent before the first step exited 0 with nothing written; inf passed the rate check."""
    from oldphoto.errors import ConfigError, DataError
    from oldphoto.training.scratch import ScratchRecipe

    config = tiny_config(tmp_path, "run", steps=2)
    with pytest.raises(ConfigError, match="finite"):
        changed(config, learning_rate=float("inf"))
    with pytest.raises(DataError, match="nothing was trained"):
        train_scratch(changed(config, runtime=dataclasses.replace(config.setup.runtime, time_budget=1e-9)))
    assert not Path(config.setup.out).exists()
    original = ScratchRecipe.train_step
    monkeypatch.setattr(ScratchRecipe, "train_step", lambda self, step: {**original(self, step), "loss": float("nan")})
    with pytest.raises(DataError, match="training diverged at step 1"):
        train_scratch(changed(config, overwrite=True))
    assert not Path(config.setup.out).exists()
    # A detector whose outputs are NaN with finite losses (weights up to 1e30) scored "F1 0" and was exported.
    monkeypatch.setattr(ScratchRecipe, "train_step", original)
    monkeypatch.setattr("oldphoto.training.scratch.scratch_probabilities", lambda network, gray, accelerator: np.full(gray.shape, np.nan, np.float32))
    with pytest.raises(DataError, match="validation at step 2 scored nan"):
        train_scratch(changed(config, overwrite=True))
    assert not Path(config.setup.out).exists()


def test_a_resume_with_nothing_left_into_a_new_out_says_where_the_weights_are(tmp_path):
    """It said "nothing was trained ... before any validation" (or, before, exited 0 with "best: None")."""
    from oldphoto.errors import DataError

    config = tiny_config(tmp_path, "run", steps=2)
    train_scratch(config)
    with pytest.raises(DataError, match="already holds the whole run"):
        train_scratch(changed(config, out=str(tmp_path / "moved.safetensors")), resume=True)


def test_a_resume_with_nothing_left_says_so(tmp_path, caplog):
    """--resume with --steps at or below the checkpoint's step exited 0 without a word, as if it had trained."""
    config = tiny_config(tmp_path, "run", steps=4)
    train_scratch(config)
    weights = Path(config.setup.out).read_bytes()
    with caplog.at_level("WARNING", logger="oldphoto.training.loop"):
        state = train_scratch(changed(config, steps=2), resume=True)
    assert state.step == 4 and Path(config.setup.out).read_bytes() == weights
    assert "nothing to train: --steps 2 is not past the checkpoint's step 4; raise --steps" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="oldphoto.training.loop"):
        budget = dataclasses.replace(config.setup.runtime, time_budget=1e-6)
        train_scratch(changed(config, steps=100, runtime=budget), resume=True)
    assert "nothing to train: its --time-budget" in caplog.text and "raise --time-budget" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="oldphoto.training.loop"):
        train_scratch(changed(config, steps=5), resume=True)
    assert "nothing to train" not in caplog.text


def test_a_run_never_writes_over_its_own_inputs_or_the_installed_weights(tmp_path, monkeypatch):
    """`train mapping --vae-old my.safetensors --out my.safetensors --overwrite` replaced the user's VAE_A with mapping
    weights; `--out <installed weights> --overwrite` replaced the shipped file and card, and every restore then
    stopped on the sha256; `--out newdir/` wrote a file named newdir."""
    import shutil

    from typer.testing import CliRunner

    from oldphoto.cli.app import app

    config = global_config(tmp_path, "restore-unet", steps=1)
    args = ["train", "restore-unet", "--data", config.setup.data[0], "--val", config.val[0], "--steps", "1", "--batch-size", "2",
            "--crop", "32", "--val-samples", "1"]
    mine = tmp_path / "mine.safetensors"
    assert CliRunner().invoke(app, [*args, "--out", str(mine), "--checkpoint", str(tmp_path / "c0.pt")]).exit_code == 0
    before = mine.read_bytes()
    result = CliRunner().invoke(app, [*args, "--init", str(mine), "--out", str(mine), "--checkpoint", str(tmp_path / "c1.pt"), "--overwrite"])
    assert result.exit_code == 2 and "is one of this run's own inputs" in " ".join(result.output.split()), result.output
    assert mine.read_bytes() == before
    installed = tmp_path / "installed"
    installed.mkdir()
    for name in ("restore-unet.safetensors", "restore-unet.json"):
        shutil.copy(Path(__file__).parents[1] / "weights" / name, installed / name)
    monkeypatch.setenv("OLDPHOTO_WEIGHTS_DIR", str(installed))
    shipped = (installed / "restore-unet.safetensors").read_bytes()
    result = CliRunner().invoke(app, [*args, "--out", str(installed / "restore-unet.safetensors"), "--checkpoint", str(tmp_path / "c2.pt"), "--overwrite"])
    assert result.exit_code == 2 and "is the installed restore-unet weights" in " ".join(result.output.split()), result.output
    assert (installed / "restore-unet.safetensors").read_bytes() == shipped
    # Any file inside a folder restore loads weights from: only the installed files' own names were refused.
    result = CliRunner().invoke(app, [*args, "--out", str(installed / "new.safetensors"), "--checkpoint", str(tmp_path / "c4.pt")])
    assert result.exit_code == 2 and "OLDPHOTO_WEIGHTS_DIR), a folder restore loads its installed weights from" in " ".join(result.output.split()), result.output
    assert not (installed / "new.safetensors").exists()
    # A loss weight that is NaN or negative dropped its term without a word (and NaN made the card invalid JSON).
    for weight in ("nan", "-1"):
        result = CliRunner().invoke(app, [*args, "--ssim-weight", weight, "--out", str(tmp_path / "w.safetensors"), "--checkpoint", str(tmp_path / "c5.pt")])
        assert result.exit_code == 2 and "must be a finite number, 0 or more" in " ".join(result.output.split()), result.output
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "newdir") + "/", "--checkpoint", str(tmp_path / "c3.pt")])
    assert result.exit_code == 2 and "has no file extension" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "newdir").exists()
    result = CliRunner().invoke(app, [*args, "--steps", "2", "--out", str(mine), "--checkpoint", str(tmp_path / "c0.pt"), "--resume", "--overwrite"])
    assert result.exit_code == 0 and "--overwrite only lets it replace an --out of another run" in " ".join(result.output.split()), result.output


def test_global_recipes_name_the_options_they_ignore(tmp_path, caplog):
    """`train mapping --clean-fraction 0.9 --kl-weight 3 --scratch-weights x` trained exactly as without them, said
    nothing and wrote them into the card; `vae-clean --mask-source detector` also loaded and ran the detector."""
    from oldphoto.training.restoration import VaeCleanRecipe

    config = global_config(tmp_path, "mapping", steps=1, clean_fraction=0.9, kl_weight=3.0, scratch_weights="x.safetensors")
    with caplog.at_level("WARNING", logger="oldphoto.training"):
        train_global(config)
    for said in ("--clean-fraction is used by detail-fusion only", "--kl-weight is used by vae-clean and vae-old only",
                 "--scratch-weights does nothing without --mask-source detector"):
        assert said in caplog.text, caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="oldphoto.training.restoration"):
        recipe = VaeCleanRecipe(global_config(tmp_path, "vae-clean", steps=1, mask_source="detector"))
    assert "--mask-source is used by mapping and restore-unet and detail-fusion only" in caplog.text
    assert recipe.detection is None and "--kl-weight" not in caplog.text


def test_checkpoints_are_written_without_touching_a_file_of_a_fixed_temporary_name(tmp_path):
    """The checkpoint went through <stem>.tmp beside it: a user's notes.tmp beside notes.pt was replaced, then gone."""
    from oldphoto.errors import DataError

    config = tiny_config(tmp_path, "run", steps=2)
    notes = Path(config.setup.checkpoint).with_suffix(".tmp")
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text("my notes")
    train_scratch(config)
    assert notes.read_text() == "my notes"
    # A checkpoint cut short is one error, not a traceback from the zip reader.
    cut = Path(config.setup.checkpoint).with_name("cut.pt")
    cut.write_bytes(Path(config.setup.checkpoint).read_bytes()[:5000])
    with pytest.raises(DataError, match="cannot be read"):
        train_scratch(changed(config, steps=4, checkpoint=str(cut)), resume=True)


def test_cached_pools_follow_their_files_not_only_their_names(tmp_path):
    """train face kept the faces aligned from photos since replaced under the same names, even with --overwrite."""
    import os

    from oldphoto.training.data import files_key

    photo = tmp_path / "a.png"
    save_rgb(photo, smooth_image(16, 16, seed=0))
    before = files_key([photo])
    save_rgb(photo, smooth_image(16, 24, seed=1))
    os.utime(photo, ns=(1, 1))  # even a file put back with an old time: its size differs
    assert files_key([photo]) != before


def test_a_run_never_replaces_weights_or_a_json_that_are_not_its_own(tmp_path):
    """A resume into another --out replaced weights (and their card) of another run without a word; any JSON object
    at <out>.json (a package.json) was taken for a card and replaced; --out below a file failed with a traceback
    only at the first validation."""
    from oldphoto.errors import DataError

    config = tiny_config(tmp_path, "run", steps=2)
    train_scratch(config)  # step 2 of 4 below
    mine = tmp_path / "mine" / "scratch-unet.safetensors"
    mine.parent.mkdir()
    mine.write_bytes(Path(config.setup.out).read_bytes())
    mine.with_suffix(".json").write_text('{"config": {"checkpoint": "elsewhere.pt"}, "architecture": "x", "best": 1}')
    before = mine.read_bytes()
    with pytest.raises(DataError, match="exists, and the run of .* wrote to"):
        train_scratch(changed(config, steps=4, out=str(mine)), resume=True)
    assert mine.read_bytes() == before
    # The run's own folder moved elsewhere: its files moved together, so it still resumes into its weights.
    moved = tmp_path / "moved"
    Path(config.setup.out).parent.rename(moved)
    out, checkpoint = moved / Path(config.setup.out).name, moved / Path(config.setup.checkpoint).name
    assert train_scratch(changed(config, steps=4, out=str(out), checkpoint=str(checkpoint)), resume=True).step == 4
    package = tmp_path / "proj" / "package.json"
    package.parent.mkdir()
    package.write_text('{"name": "my-app", "version": "1.0.0"}')
    fresh = changed(config, out=str(package.with_suffix(".safetensors")), checkpoint=str(tmp_path / "proj" / "ck.pt"))
    with pytest.raises(DataError, match="is not a weights card"):
        train_scratch(fresh)
    assert json.loads(package.read_text())["name"] == "my-app"
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"x")
    from oldphoto.errors import ConfigError

    with pytest.raises(ConfigError, match="is a file, not a folder"):
        train_scratch(changed(config, out=str(photo / "w.safetensors"), checkpoint=str(tmp_path / "ck2.pt")))


def test_the_verifier_pool_is_drawn_with_the_detector_given(tmp_path, random_scratch_model):
    """`train scratch-verifier --detector-weights FILE`: the pool holds the marks of that detector, not the installed
    one's (a retrained detector needs a verifier trained on its own marks; before, only the installed one could be
    used), and a file that is not a detector of the registry's architecture is refused before any pool is drawn."""
    from oldphoto.registry import SCRATCH_MODEL
    from oldphoto.training.scratch_verifier import (
        ScratchVerifierRecipe,
        ScratchVerifierTrainConfig,
        draw_pool,
    )

    data = tmp_path / "clean"
    for i in range(3):
        save_rgb(data / f"p{i}.png", smooth_image(96, 96, seed=i))
    photos = sorted(data.iterdir())

    def detector(bias: float) -> str:
        network = get_spec(SCRATCH_MODEL).build()
        with torch.no_grad():
            network.head.bias.fill_(bias)
            network.head.weight.zero_()
        path = tmp_path / f"detector{bias:+g}.safetensors"
        save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
        return str(path)

    setup = tiny_setup(data, tmp_path / "run", steps=1, learning_rate=1e-3)
    marks_all = ScratchVerifierTrainConfig(setup=setup, crops=4, crop=64, scales=(1.0,), detector_weights=detector(30.0))
    assert len(draw_pool(marks_all, photos, [], 4, np.random.default_rng(0)).area) > 0
    # Its marks, not the installed detector's: one that marks nothing leaves nothing to learn from, said in words (an
    # empty pool was a ValueError traceback).
    marks_none = dataclasses.replace(marks_all, detector_weights=detector(-30.0))
    with pytest.raises(DataError, match="marked nothing"):
        draw_pool(marks_none, photos, [], 4, np.random.default_rng(0))
    from oldphoto.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="missing.safetensors"):
        ScratchVerifierRecipe(ScratchVerifierTrainConfig(setup=setup, detector_weights=str(tmp_path / "missing.safetensors")))


def test_the_verifier_recipe_names_options_that_need_real_photos(tmp_path, caplog):
    """`train scratch-verifier --real-fraction 0.9 --real-labels L` without `--real` drew its pool exactly as without
    them, said nothing and wrote them into the card."""
    from oldphoto.training.scratch_verifier import (
        ScratchVerifierRecipe,
        ScratchVerifierTrainConfig,
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    config = ScratchVerifierTrainConfig(setup=tiny_setup(empty, tmp_path / "run", steps=1, learning_rate=1e-3), real_fraction=0.9, real_labels="labels.json")
    with caplog.at_level("WARNING", logger="oldphoto.training"), pytest.raises(DataError):
        ScratchVerifierRecipe(config)  # stops at the empty data folder, after the options were checked
    assert "--real-fraction does nothing without --real" in caplog.text and "--real-labels does nothing without --real" in caplog.text
