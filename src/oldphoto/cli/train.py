"""`oldphoto train MODEL`: one sub-command per trainable model."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from oldphoto.cli.common import (
    EXIT_INTERRUPTED,
    console,
    error_console,
    library_errors,
    note,
    progress_bar,
)

if TYPE_CHECKING:
    from oldphoto.training.loop import TrainSetup

app = typer.Typer(help="Train the networks (resumable, seeded, with checkpoints).", no_args_is_help=True)

MAX_CROP = 2048
"""Crops larger than this are refused: 4096 upscaled small photos and was killed for memory, without a message."""


class FaceCondition(str, Enum):
    original = "original"
    input = "input"


class SmallDamage(str, Enum):
    template = "template"
    native = "native"


DATA = "Data"
SCHEDULE = "Schedule"
LOSSES = "Losses"

Data = Annotated[list[Path], typer.Option("--data", help="Folders of clean photos (repeatable).", rich_help_panel=DATA)]
Val = Annotated[
    list[Path], typer.Option("--val", help="Folders of held-out clean photos for validation.", rich_help_panel=DATA)
]
DamageDirs = Annotated[
    list[Path] | None,
    typer.Option(
        "--damage-dir", help="Folders of RGBA damage stamps (repeatable); replace the bundled stamps (the default).", rich_help_panel=DATA
    ),
]
Steps = Annotated[int, typer.Option(help="Total optimisation steps.", rich_help_panel=SCHEDULE)]
CropsPerStep = Annotated[int, typer.Option(help="Crops per step.", rich_help_panel=SCHEDULE)]
FacesPerStep = Annotated[int, typer.Option(help="Faces per step.", rich_help_panel=SCHEDULE)]
LearningRate = Annotated[float, typer.Option(help="Peak learning rate.", rich_help_panel=SCHEDULE)]
Seed = Annotated[int, typer.Option(min=0, help="Random seed (data, damage and initialisation).", rich_help_panel=SCHEDULE)]
ValidateEvery = Annotated[int, typer.Option(help="Validate and checkpoint every N steps.", rich_help_panel=SCHEDULE)]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint.", rich_help_panel=SCHEDULE)]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Start over even if --checkpoint or --out exists (without it the run refuses).", rich_help_panel=SCHEDULE)
]
Out = Annotated[Path, typer.Option(help="Where the best weights are exported (not weights/, whose shipped files restore checks by sha256).")]
Checkpoint = Annotated[Path, typer.Option(help="Checkpoint file for --resume.")]
RUNTIME = "Runtime"
Device = Annotated[str, typer.Option(help="Where to train: cpu, cuda, cuda:N or mps.", rich_help_panel=RUNTIME)]
TrainPrecision = Annotated[
    str,
    typer.Option(
        help="fp32 (the default: exactly reproducible), bf16 / fp16 autocast for the forward pass (weights and optimiser "
        "stay fp32; bf16 is 1.6-1.8x faster on CPUs with native bf16), or auto (bf16 on such CPUs, fp16 on CUDA/MPS, "
        "else fp32), as restore's --precision.",
        rich_help_panel=RUNTIME,
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        help="Background processes drawing the damage (0: in the training process, exactly resumable; a GPU needs several).",
        rich_help_panel=RUNTIME,
    ),
]
FUSION_ONLY = "detail-fusion only (vae-clean, vae-old, mapping and restore-unet train on the CPU in fp32 and refuse it). "
GlobalDevice = Annotated[str, typer.Option("--device", help=FUSION_ONLY + "Where to train: cpu, cuda, cuda:N or mps.", rich_help_panel=RUNTIME)]
GlobalPrecision = Annotated[
    str, typer.Option("--precision", help=FUSION_ONLY + "fp32 (the default), bf16, fp16 or auto, as the other recipes' --precision.", rich_help_panel=RUNTIME)
]
GlobalWorkers = Annotated[int, typer.Option("--workers", help=FUSION_ONLY + "Background processes drawing the damage.", rich_help_panel=RUNTIME)]
TimeBudget = Annotated[
    float | None,
    typer.Option(
        help="Stop after this many minutes of training (over resumes) even if steps remain; the learning rate decays over "
        "whichever runs out first.",
        rich_help_panel=SCHEDULE,
    ),
]
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _check_runtime(precision: str, workers: int) -> None:
    if precision not in TRAIN_PRECISIONS:
        raise typer.BadParameter(f"--precision {precision!r}: use one of {', '.join(TRAIN_PRECISIONS)}")
    if workers < 0:
        raise typer.BadParameter("--workers must be 0 or more")


Init = Annotated[
    Path | None,
    typer.Option(
        help="Start from these weights instead of random ones (fine-tuning; layers the file lacks keep their initialisation).",
        rich_help_panel=SCHEDULE,
    ),
]


def _strings(paths: list[Path] | None) -> tuple[str, ...]:
    return tuple(map(str, paths or ()))


def _string(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _op_chance(entry: str) -> tuple[str, float]:
    """``NAME:P`` -> (NAME, P), P a number in [0, 1]."""
    name, _, chance = entry.partition(":")
    try:
        probability = float(chance)
    except ValueError:
        raise typer.BadParameter(f"{entry!r}: expected OP:P, e.g. flaking:0.15", param_hint="--extra-damage") from None
    if not name or not 0.0 <= probability <= 1.0:
        raise typer.BadParameter(f"{entry!r}: expected OP:P with P between 0 and 1", param_hint="--extra-damage")
    return name, probability


def _setup(ctx: typer.Context) -> TrainSetup:
    """The :class:`~oldphoto.training.loop.TrainSetup` of a command, from the shared options above (--data, --damage-dir,
    --steps, --batch-size, --learning-rate, --seed, --validate-every, --out, --checkpoint, --init and the runtime's);
    the options a command lacks keep their defaults (no damage stamps; the CPU, fp32, in-process data, no time limit)."""
    from oldphoto.training.loop import (
        TrainRuntime,
        TrainSetup,
        check_run_files,
        weights_inputs,
    )

    options = ctx.params
    precision, workers, minutes = options.get("precision", "fp32"), options.get("workers", 0), options.get("time_budget")
    _check_runtime(precision, workers)
    with library_errors():
        # Before the recipe draws its data (minutes for some): a run that would be refused is refused at once.
        check_run_files(
            Path(options["checkpoint"]),
            Path(options["out"]),
            options.get("resume", False),
            options.get("overwrite", False),
            weights_inputs(options, options.get("resume", False)),
        )
        if options.get("resume") and options.get("overwrite"):
            note(
                f"--resume continues the run in {options['checkpoint']}; --overwrite only lets it replace an --out of "
                "another run (to start over, drop --resume)"
            )
        if options.get("resume"):
            if options.get("init"):
                note(f"--init does nothing with --resume: the run continues from its checkpoint {options['checkpoint']}")
        overlap = _overlapping_folders(options.get("val") or [], options["data"] or [])
        if overlap:
            note(
                f"--val {overlap[0]} lies within --data {overlap[1]} (or holds it): the validation photos are training "
                "photos, so its figures and the best step it picks say nothing about photos the model has not seen"
            )
        return TrainSetup(
            data=_strings(options["data"]),
            out=str(options["out"]),
            checkpoint=str(options["checkpoint"]),
            steps=options["steps"],
            batch_size=options["batch_size"],
            learning_rate=options["learning_rate"],
            damage_dirs=_strings(options.get("damage_dir")),
            seed=options["seed"],
            validate_every=options["validate_every"],
            init=_string(options["init"]),
            runtime=TrainRuntime(options.get("device", "cpu"), precision, workers, None if minutes is None else 60.0 * minutes),
            overwrite=options.get("overwrite", False),
        )


def _overlapping_folders(val: list[Path], data: list[Path]) -> tuple[Path, Path] | None:
    """The first (--val, --data) pair of which one folder is, or lies within, the other (--data is searched
    recursively, so a --val below it is trained on), or None."""
    for held_out in val:
        for training in data:
            first, second = Path(held_out).resolve(), Path(training).resolve()
            if first == second or second in first.parents or first in second.parents:
                return held_out, training
    return None


def _train_with_progress(name: str, steps: int, train: Callable, resumed_from: Path | None = None) -> None:
    """Run ``train(on_step=...)`` under a progress bar; print each validation; then the best figures.
    ``resumed_from``: the checkpoint a --resume run continues (what an interruption before its first validation
    leaves to resume from)."""
    with library_errors(), progress_bar() as progress:
        task = progress.add_task(f"training {name}", total=steps)
        running: dict[str, float] = {}

        checkpointed = [0, 0]  # the last step, the last validated (checkpointed) step

        def on_step(step: int, total: int, figures: dict[str, float]) -> None:
            running.update(figures)
            checkpointed[0] = step
            text = f"loss {running['loss']:.4f}" + (f" val {running['score']:.3f}" if "score" in running else "")
            progress.update(task, completed=step, description=f"{name} {text}")
            if figures.get("validated"):
                checkpointed[1] = step
                shown = {k: round(v, 4) for k, v in figures.items() if k != "validated"}
                progress.console.print(f"{name} step {step}: {shown}", highlight=False)

        try:
            state = train(on_step=on_step)
        except KeyboardInterrupt:
            last, saved = checkpointed
            where = (
                f"the checkpoint holds step {saved}: run the same command with --resume to continue from there"
                if saved
                else f"the checkpoint {resumed_from} still holds the run as it was resumed: run the same command to continue"
                if resumed_from is not None
                else "no checkpoint was written yet (one is written at each validation)"
            )
            error_console.print(f"[yellow]interrupted[/] at step {last} of {name}; {where}", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print(f"best validation of {name}: {state.best}", highlight=False)


@app.command("scratch")
def scratch(
    ctx: typer.Context,
    data: Data,
    val: Val,
    damage_dir: DamageDirs = None,
    steps: Steps = 20000,
    batch_size: CropsPerStep = 8,
    crop: Annotated[int, typer.Option(min=32, max=MAX_CROP, help="Crop size in pixels.", rich_help_panel=SCHEDULE)] = 192,
    learning_rate: LearningRate = 2e-3,
    seed: Seed = 0,
    preset: Annotated[
        list[str] | None,
        typer.Option("--preset", help="Degradation presets, one drawn per crop (repeatable; default: default).", rich_help_panel=DATA),
    ] = None,
    validate_every: ValidateEvery = 250,
    out: Out = Path("runs/scratch/scratch-unet.safetensors"),
    checkpoint: Checkpoint = Path("runs/scratch/checkpoint.pt"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    init: Init = None,
    real: Annotated[
        list[Path] | None,
        typer.Option("--real", help="Folders of real old photos, used as backgrounds too (their test part is left out).", rich_help_panel=DATA),
    ] = None,
    real_labels: Annotated[
        Path | None,
        typer.Option(help="The labelled real-photo test (JSON); the photos it names are never trained on.", rich_help_panel=DATA),
    ] = None,
    real_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of crops cut from the --real photos.", rich_help_panel=DATA)] = 0.3,
    undamaged_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of crops drawn without structured damage.", rich_help_panel=DATA)
    ] = 0.1,
    positive_weight: Annotated[float, typer.Option(min=0.0, help="BCE weight of damaged pixels.", rich_help_panel=LOSSES)] = 5.0,
    hard_negatives: Annotated[
        Path | None,
        typer.Option(
            help="Hard-negative file (scripts/mine_hard_negatives.py): places in the training photos where a detector marks scene content.",
            rich_help_panel=DATA,
        ),
    ] = None,
    hard_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of crops centred on a hard negative (with --hard-negatives).", rich_help_panel=DATA)
    ] = 0.25,
    extra_damage: Annotated[
        list[str] | None,
        typer.Option(
            "--extra-damage",
            metavar="OP:P",
            help="A structured damage op added to the training presets with chance P, e.g. flaking:0.15 (repeatable; validation crops unchanged).",
            rich_help_panel=DATA,
        ),
    ] = None,
    device: Device = "cpu",
    precision: TrainPrecision = "fp32",
    workers: Workers = 0,
    time_budget: TimeBudget = None,
) -> None:
    """Train the scratch-detection U-Net with damage drawn on the fly."""
    from oldphoto.training.scratch import ScratchTrainConfig, train_scratch

    config = ScratchTrainConfig(
        setup=_setup(ctx),
        val=_strings(val),
        presets=tuple(preset or ("default",)),
        crop=crop,
        real=_strings(real),
        real_labels=_string(real_labels),
        real_fraction=real_fraction,
        undamaged_fraction=undamaged_fraction,
        positive_weight=positive_weight,
        hard_negatives=_string(hard_negatives),
        hard_fraction=hard_fraction,
        extra_damage=tuple(_op_chance(entry) for entry in extra_damage or ()),
    )
    _train_with_progress("scratch-unet", steps, lambda on_step: train_scratch(config, resume=resume, on_step=on_step), checkpoint if resume else None)


def _global_command(model: str, summary: str, default_steps: int) -> None:
    def command(
        ctx: typer.Context,
        data: Data,
        val: Val,
        damage_dir: DamageDirs = None,
        real: Annotated[
            list[Path] | None,
            typer.Option("--real", help="Folders of real old photos (vae-old: the real-photo domain R).", rich_help_panel=DATA),
        ] = None,
        preset: Annotated[
            list[str] | None,
            typer.Option("--preset", help="Degradation presets, one drawn per sample (default: default and bopbtl).", rich_help_panel=DATA),
        ] = None,
        steps: Steps = default_steps,
        batch_size: CropsPerStep = 8,
        crop: Annotated[int, typer.Option(min=16, max=MAX_CROP, help="Crop size in pixels (multiple of 4).", rich_help_panel=SCHEDULE)] = 128,
        learning_rate: LearningRate = 1e-3,
        seed: Seed = 0,
        validate_every: ValidateEvery = 250,
        val_samples: Annotated[int, typer.Option(min=1, help="Validation pairs (fixed, 256 px crops).", rich_help_panel=SCHEDULE)] = 16,
        kl_weight: Annotated[float, typer.Option(help="Weight of the KL term (VAEs).", rich_help_panel=LOSSES)] = 1e-4,
        ssim_weight: Annotated[float, typer.Option(help="Weight of 1 - SSIM beside L1.", rich_help_panel=LOSSES)] = 0.2,
        adversarial_weight: Annotated[
            float, typer.Option(help="Weight of the latent domain-alignment loss (vae-old).", rich_help_panel=LOSSES)
        ] = 0.02,
        latent_weight: Annotated[float, typer.Option(help="Weight of the latent L1 (mapping).", rich_help_panel=LOSSES)] = 1.0,
        vae_old: Annotated[
            Path | None, typer.Option(help="VAE_A weights for mapping (default: the installed vae-old).", rich_help_panel=DATA)
        ] = None,
        vae_clean: Annotated[
            Path | None, typer.Option(help="VAE_B weights for mapping (default: the installed vae-clean).", rich_help_panel=DATA)
        ] = None,
        mask_source: Annotated[
            str,
            typer.Option(
                help="Damage mask for mapping / restore-unet: 'synthetic' (the damage drawn) or 'detector' (the scratch "
                "detector's marks the verifier keeps, as restore gives them).",
                rich_help_panel=DATA,
            ),
        ] = "synthetic",
        scratch_weights: Annotated[
            Path | None,
            typer.Option(help="Scratch-detector weights for --mask-source detector (default: the installed ones).", rich_help_panel=DATA),
        ] = None,
        verifier_weights: Annotated[
            Path | None,
            typer.Option(help="Scratch-verifier weights for --mask-source detector (default: the installed ones).", rich_help_panel=DATA),
        ] = None,
        out: Out = Path(f"runs/{model}/{model}.safetensors"),
        checkpoint: Checkpoint = Path(f"runs/{model}/checkpoint.pt"),
        resume: Resume = False,
        overwrite: Overwrite = False,
        init: Init = None,
        mapping: Annotated[
            Path | None, typer.Option(help="Mapping weights for detail-fusion (default: the installed mapping).", rich_help_panel=DATA)
        ] = None,
        clean_fraction: Annotated[
            float,
            typer.Option(min=0.0, max=1.0, help="detail-fusion: share of crops left undamaged, the crop itself the target.", rich_help_panel=DATA),
        ] = 0.25,
        light_fraction: Annotated[
            float,
            typer.Option(
                min=0.0, max=1.0, help="detail-fusion: share of crops with structured damage only (a good print with scratches).", rich_help_panel=DATA
            ),
        ] = 0.0,
        device: GlobalDevice = "cpu",
        precision: GlobalPrecision = "fp32",
        workers: GlobalWorkers = 0,
        time_budget: TimeBudget = None,
    ) -> None:
        from oldphoto.training.restoration import GlobalTrainConfig, train_global

        config = GlobalTrainConfig(
            model=model,
            setup=_setup(ctx),
            val=_strings(val),
            real=_strings(real),
            presets=tuple(preset or ("default", "bopbtl")),
            crop=crop,
            val_samples=val_samples,
            kl_weight=kl_weight,
            ssim_weight=ssim_weight,
            adversarial_weight=adversarial_weight,
            latent_weight=latent_weight,
            vae_old=_string(vae_old),
            vae_clean=_string(vae_clean),
            mask_source=mask_source,
            scratch_weights=_string(scratch_weights),
            verifier_weights=_string(verifier_weights),
            mapping=_string(mapping),
            clean_fraction=clean_fraction,
            light_fraction=light_fraction,
        )
        _train_with_progress(model, steps, lambda on_step: train_global(config, resume=resume, on_step=on_step), checkpoint if resume else None)

    command.__doc__ = summary
    app.command(model)(command)


_global_command("vae-clean", "Train VAE_B: the latent space of clean photos.", 4000)
_global_command("vae-old", "Train VAE_A on real old photos (--real) and synthetic degraded ones, latents aligned adversarially.", 4000)
_global_command("mapping", "Train the latent mapping A->B (partial non-local block) with both VAEs frozen.", 6000)
_global_command("restore-unet", "Train the ablation: a direct image-to-image residual U-Net on the same pairs.", 6000)
_global_command(
    "detail-fusion",
    "Train the detail fusion behind the frozen triplet: a learned, mask-gated path back to the photo's own detail.",
    6000,
)


@app.command("face")
def face(
    ctx: typer.Context,
    data: Data,
    damage_dir: DamageDirs = None,
    preset: Annotated[
        list[str] | None,
        typer.Option("--preset", help="Degradation presets of the face crops, one drawn per face when several (repeatable; default: bopbtl).", rich_help_panel=DATA),
    ] = None,
    structured: Annotated[
        bool, typer.Option("--structured/--no-structured", help="Also draw scratches and spots on the faces.", rich_help_panel=DATA)
    ] = False,
    steps: Steps = 3000,
    batch_size: FacesPerStep = 4,
    crop: Annotated[int, typer.Option(min=64, max=256, help="Training crop of the 256 px aligned face (multiple of 8).", rich_help_panel=SCHEDULE)] = 256,
    learning_rate: LearningRate = 1e-3,
    seed: Seed = 0,
    validate_every: ValidateEvery = 250,
    val_samples: Annotated[int, typer.Option(min=1, help="Held-out faces used for validation.", rich_help_panel=SCHEDULE)] = 16,
    ssim_weight: Annotated[float, typer.Option(help="Weight of 1 - SSIM beside L1.", rich_help_panel=LOSSES)] = 0.2,
    after_global: Annotated[
        bool,
        typer.Option(
            "--after-global/--raw-damage",
            help="Feed the refiner damaged faces passed through the installed global stage (as restore does), or the raw damaged faces.",
            rich_help_panel=DATA,
        ),
    ] = True,
    grayscale_prob: Annotated[
        float | None, typer.Option(help="Override the presets' chance of a black-and-white print.", rich_help_panel=DATA)
    ] = None,
    small_faces: Annotated[
        float, typer.Option(help="Share of training faces shrunk to 32-128 px and scaled back, target included (small faces in photos).", rich_help_panel=DATA)
    ] = 0.0,
    small_damage: Annotated[
        SmallDamage,
        typer.Option(
            help="Where --small-faces faces are damaged: 'template' (at 256 px, after scaling back) or 'native' (at their small size, "
            "then scaled back with their damage, as a small face in a damaged scan).",
            rich_help_panel=DATA,
        ),
    ] = SmallDamage.template,
    undamaged_faces: Annotated[
        float,
        typer.Option(
            help="Share of training faces left undamaged and in their own colours, target the face itself (a sharp face must come back as it was).",
            rich_help_panel=DATA,
        ),
    ] = 0.0,
    mask_source: Annotated[
        str,
        typer.Option(
            help="Damage mask for the global stage in front of the refiner: 'synthetic' (the damage drawn) or 'detector' (the "
            "installed detector and verifier's mask, as restore gives it).",
            rich_help_panel=DATA,
        ),
    ] = "synthetic",
    condition: Annotated[
        FaceCondition,
        typer.Option(
            help="What the SPADE blocks modulate with: 'original' (the damaged face before the global stage) or 'input' (the refiner's own input).",
            rich_help_panel=DATA,
        ),
    ] = FaceCondition.original,
    init: Init = None,
    out: Out = Path("runs/face/face-refine.safetensors"),
    checkpoint: Checkpoint = Path("runs/face/checkpoint.pt"),
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Train the face refiner on aligned faces (found and aligned as `restore` does) with damage drawn on the fly."""
    from oldphoto.training.faces import FaceTrainConfig, train_face

    config = FaceTrainConfig(
        setup=_setup(ctx),
        presets=tuple(preset) if preset else FaceTrainConfig.presets,
        structured=structured,
        grayscale_prob=grayscale_prob,
        small_faces=small_faces,
        small_damage=small_damage.value,
        undamaged_faces=undamaged_faces,
        crop=crop,
        val_samples=val_samples,
        ssim_weight=ssim_weight,
        after_global=after_global,
        mask_source=mask_source,
        condition=condition.value,
    )
    _train_with_progress("face-refine", steps, lambda on_step: train_face(config, resume=resume, on_step=on_step), checkpoint if resume else None)


@app.command("face-gate")
def face_gate(
    ctx: typer.Context,
    data: Data,
    damage_dir: DamageDirs = None,
    preset: Annotated[
        list[str] | None,
        typer.Option(help="Degradation presets of the damaged faces, one drawn per face (repeatable; default: bopbtl-v1 and default-v1).", rich_help_panel=DATA),
    ] = None,
    clean_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of faces left undamaged (they must come back as they are).", rich_help_panel=DATA)
    ] = 0.35,
    pool: Annotated[int, typer.Option(min=16, help="Training faces drawn once through the global stage and the refiner.", rich_help_panel=DATA)] = 1600,
    val_samples: Annotated[int, typer.Option(min=8, help="Held-out faces drawn for validation.", rich_help_panel=DATA)] = 96,
    steps: Steps = 2000,
    batch_size: FacesPerStep = 16,
    learning_rate: LearningRate = 1e-3,
    seed: Seed = 0,
    validate_every: ValidateEvery = 250,
    precision: TrainPrecision = "fp32",
    init: Init = None,
    out: Out = Path("runs/face-gate/face-gate.safetensors"),
    checkpoint: Checkpoint = Path("runs/face-gate/checkpoint.pt"),
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Train the face gate: how much of the refiner's correction each face takes (0 keeps a sharp face as it is)."""
    from oldphoto.training.face_gate import FaceGateTrainConfig, train_face_gate

    config = FaceGateTrainConfig(
        setup=_setup(ctx),
        presets=tuple(preset) if preset else FaceGateTrainConfig.presets,
        clean_fraction=clean_fraction,
        pool=pool,
        val_samples=val_samples,
    )
    _train_with_progress("face-gate", steps, lambda on_step: train_face_gate(config, resume=resume, on_step=on_step), checkpoint if resume else None)


@app.command("scratch-verifier")
def scratch_verifier(
    ctx: typer.Context,
    data: Data,
    damage_dir: DamageDirs = None,
    real: Annotated[
        list[Path] | None,
        typer.Option("--real", help="Folders of real old photos: damaged crops of them and the photos as they are (their test part is left out).", rich_help_panel=DATA),
    ] = None,
    real_labels: Annotated[
        Path | None,
        typer.Option(help="The labelled real-photo test (JSON); the photos it names are never used.", rich_help_panel=DATA),
    ] = None,
    preset: Annotated[
        list[str] | None,
        typer.Option("--preset", help="Degradation presets of the damaged crops (repeatable; default: default and bopbtl).", rich_help_panel=DATA),
    ] = None,
    crops: Annotated[int, typer.Option(min=10, help="Damaged crops drawn once into the training pool (a tenth more for validation).", rich_help_panel=DATA)] = 4000,
    crop: Annotated[int, typer.Option(min=64, max=MAX_CROP, help="Side of the damaged crops in pixels (large stamps need room).", rich_help_panel=DATA)] = 512,
    real_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the damaged crops cut from the --real photos.", rich_help_panel=DATA)] = 0.4,
    keep_damage: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Share of validation damage pixels the chosen threshold keeps (it also scores the checkpoints: the content removed there).", rich_help_panel=DATA)
    ] = 0.80,
    average_decay: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Decay of the running average of the weights that is validated and exported (0: the trained weights).", rich_help_panel=SCHEDULE)
    ] = 0.995,
    detector_weights: Annotated[
        Path | None,
        typer.Option(
            help="The detector whose marks the verifier learns (a file `train scratch` wrote; default: the installed one): "
            "a retrained detector needs a verifier trained on its own marks.",
            rich_help_panel=DATA,
        ),
    ] = None,
    steps: Steps = 3000,
    batch_size: Annotated[int, typer.Option(help="Components per step.", rich_help_panel=SCHEDULE)] = 128,
    learning_rate: LearningRate = 1e-3,
    seed: Seed = 0,
    validate_every: ValidateEvery = 250,
    precision: TrainPrecision = "fp32",
    init: Init = None,
    out: Out = Path("runs/scratch-verifier/scratch-verifier.safetensors"),
    checkpoint: Checkpoint = Path("runs/scratch-verifier/checkpoint.pt"),
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Train the scratch verifier: which of the detector's mask components are damage (kept) and which scene content (dropped)."""
    from oldphoto.training.scratch_verifier import (
        ScratchVerifierTrainConfig,
        train_scratch_verifier,
    )

    config = ScratchVerifierTrainConfig(
        setup=_setup(ctx),
        real=_strings(real),
        real_labels=_string(real_labels),
        presets=tuple(preset) if preset else ScratchVerifierTrainConfig.presets,
        crops=crops,
        crop=crop,
        real_fraction=real_fraction,
        keep_damage=keep_damage,
        average_decay=average_decay,
        detector_weights=_string(detector_weights),
    )
    _train_with_progress("scratch-verifier", steps, lambda on_step: train_scratch_verifier(config, resume=resume, on_step=on_step), checkpoint if resume else None)


@app.command("face-detector")
def face_detector(
    ctx: typer.Context,
    data: Annotated[
        list[Path], typer.Option("--data", help="Folders of photos holding one clear face each, e.g. aligned face crops (repeatable).", rich_help_panel=DATA)
    ],
    init: Annotated[Path, typer.Option(help="The detector to fine-tune (required: only R-Net and O-Net are trained).", rich_help_panel=SCHEDULE)],
    scenes: Annotated[
        list[Path] | None,
        typer.Option("--scenes", help="Folders of photos for non-face windows (faces found there are avoided).", rich_help_panel=DATA),
    ] = None,
    real: Annotated[
        list[Path] | None,
        typer.Option("--real", help="Folders of real old photos: faces and non-faces of their training part.", rich_help_panel=DATA),
    ] = None,
    real_labels: Annotated[
        Path | None,
        typer.Option(help="The labelled real-photo test (JSON); the photos it names are never used.", rich_help_panel=DATA),
    ] = None,
    draws_per_face: Annotated[int, typer.Option(min=1, help="Windows drawn per face into the pool.", rich_help_panel=DATA)] = 4,
    non_faces: Annotated[int, typer.Option(min=10, help="Non-face windows in the pool (a tenth more for validation).", rich_help_panel=DATA)] = 60000,
    non_face_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the non-faces in the loss, the faces' being 1.", rich_help_panel=LOSSES)] = 3.0,
    occluded: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of face windows drawn partly covered.", rich_help_panel=DATA)] = 0.6,
    max_tilt: Annotated[float, typer.Option(min=0.0, max=90.0, help="Largest tilt of a drawn face, in degrees.", rich_help_panel=DATA)] = 35.0,
    steps: Steps = 3000,
    batch_size: Annotated[int, typer.Option(min=8, help="Windows per step (a quarter faces, a quarter parts, half non-faces).", rich_help_panel=SCHEDULE)] = 256,
    learning_rate: LearningRate = 1e-4,
    seed: Seed = 0,
    validate_every: ValidateEvery = 250,
    out: Out = Path("runs/face-detector/mtcnn.safetensors"),
    checkpoint: Checkpoint = Path("runs/face-detector/checkpoint.pt"),
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Fine-tune the face detector's R-Net and O-Net on partly covered, tilted and small faces (P-Net is kept)."""
    from oldphoto.training.face_detector import (
        FaceDetectorTrainConfig,
        train_face_detector,
    )

    config = FaceDetectorTrainConfig(
        setup=_setup(ctx),
        scenes=_strings(scenes),
        real=_strings(real),
        real_labels=_string(real_labels),
        draws_per_face=draws_per_face,
        non_faces=non_faces,
        non_face_weight=non_face_weight,
        occluded=occluded,
        max_tilt=max_tilt,
    )
    _train_with_progress("face-detector", steps, lambda on_step: train_face_detector(config, resume=resume, on_step=on_step), checkpoint if resume else None)
