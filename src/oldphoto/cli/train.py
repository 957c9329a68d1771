"""`oldphoto train MODEL`: one sub-command per trainable model."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from oldphoto.cli.common import console, library_errors, progress_bar

app = typer.Typer(help="Train the networks (resumable, seeded, with checkpoints).", no_args_is_help=True)

class FaceCondition(str, Enum):
    original = "original"
    input = "input"


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
Seed = Annotated[int, typer.Option(help="Random seed (data, damage and initialisation).", rich_help_panel=SCHEDULE)]
ValidateEvery = Annotated[int, typer.Option(help="Validate and checkpoint every N steps.", rich_help_panel=SCHEDULE)]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint.", rich_help_panel=SCHEDULE)]
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


def _train_runtime(device: str, precision: str, workers: int, minutes: float | None):
    from oldphoto.training.loop import TrainRuntime

    return TrainRuntime(device, precision, workers, None if minutes is None else 60.0 * minutes)


Init = Annotated[
    Path | None,
    typer.Option(
        help="Start from these weights instead of random ones (fine-tuning; layers the file lacks keep their initialisation).",
        rich_help_panel=SCHEDULE,
    ),
]


def _train_with_progress(name: str, steps: int, train: Callable) -> None:
    """Run ``train(on_step=...)`` under a progress bar; print each validation; then the best figures."""
    with library_errors(), progress_bar() as progress:
        task = progress.add_task(f"training {name}", total=steps)
        running: dict[str, float] = {}

        def on_step(step: int, total: int, figures: dict[str, float]) -> None:
            running.update(figures)
            text = f"loss {running['loss']:.4f}" + (f" val {running['score']:.3f}" if "score" in running else "")
            progress.update(task, completed=step, description=f"{name} {text}")
            if figures.get("validated"):
                shown = {k: round(v, 4) for k, v in figures.items() if k != "validated"}
                progress.console.print(f"{name} step {step}: {shown}", highlight=False)

        state = train(on_step=on_step)
    console.print(f"best validation of {name}: {state.best}", highlight=False)


@app.command("scratch")
def scratch(
    data: Data,
    val: Val,
    damage_dir: DamageDirs = None,
    steps: Annotated[int, typer.Option(help="Total optimisation steps.", rich_help_panel=SCHEDULE)] = 20000,
    batch_size: Annotated[int, typer.Option(help="Crops per step.", rich_help_panel=SCHEDULE)] = 8,
    crop: Annotated[int, typer.Option(help="Crop size in pixels.", rich_help_panel=SCHEDULE)] = 192,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.", rich_help_panel=SCHEDULE)] = 2e-3,
    seed: Seed = 0,
    preset: Annotated[
        list[str] | None,
        typer.Option("--preset", help="Degradation presets, one drawn per crop (repeatable; default: default).", rich_help_panel=DATA),
    ] = None,
    validate_every: ValidateEvery = 250,
    out: Annotated[Path, typer.Option(help="Where the best weights are exported.")] = Path("weights/scratch-unet.safetensors"),
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint file for --resume.")] = Path("runs/scratch/checkpoint.pt"),
    resume: Resume = False,
    init: Init = None,
    real: Annotated[
        list[Path] | None,
        typer.Option("--real", help="Folders of real old photos, used as backgrounds too (their test part is left out).", rich_help_panel=DATA),
    ] = None,
    real_labels: Annotated[
        Path | None,
        typer.Option(help="The labelled real-photo test (JSON); the photos it names are never trained on.", rich_help_panel=DATA),
    ] = None,
    real_fraction: Annotated[float, typer.Option(help="Share of crops cut from the --real photos.", rich_help_panel=DATA)] = 0.3,
    undamaged_fraction: Annotated[
        float, typer.Option(help="Share of crops drawn without structured damage.", rich_help_panel=DATA)
    ] = 0.1,
    positive_weight: Annotated[float, typer.Option(help="BCE weight of damaged pixels.", rich_help_panel=LOSSES)] = 5.0,
    device: Device = "cpu",
    precision: TrainPrecision = "fp32",
    workers: Workers = 0,
    time_budget: TimeBudget = None,
) -> None:
    """Train the scratch-detection U-Net with damage drawn on the fly."""
    from oldphoto.training.scratch import ScratchTrainConfig, train_scratch

    _check_runtime(precision, workers)
    config = ScratchTrainConfig(
        data=tuple(map(str, data)),
        val=tuple(map(str, val)),
        out=str(out),
        checkpoint=str(checkpoint),
        damage_dirs=tuple(map(str, damage_dir or ())),
        presets=tuple(preset or ("default",)),
        steps=steps,
        batch_size=batch_size,
        crop=crop,
        learning_rate=learning_rate,
        seed=seed,
        validate_every=validate_every,
        init=None if init is None else str(init),
        real=tuple(map(str, real or ())),
        real_labels=None if real_labels is None else str(real_labels),
        real_fraction=real_fraction,
        undamaged_fraction=undamaged_fraction,
        positive_weight=positive_weight,
        runtime=_train_runtime(device, precision, workers, time_budget),
    )
    _train_with_progress("scratch-unet", steps, lambda on_step: train_scratch(config, resume=resume, on_step=on_step))


def _global_command(model: str, summary: str, default_steps: int) -> None:
    def command(
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
        steps: Annotated[int, typer.Option(help="Total optimisation steps.", rich_help_panel=SCHEDULE)] = default_steps,
        batch_size: Annotated[int, typer.Option(help="Crops per step.", rich_help_panel=SCHEDULE)] = 8,
        crop: Annotated[int, typer.Option(help="Crop size in pixels (multiple of 4).", rich_help_panel=SCHEDULE)] = 128,
        learning_rate: Annotated[float, typer.Option(help="Peak learning rate.", rich_help_panel=SCHEDULE)] = 1e-3,
        seed: Seed = 0,
        validate_every: ValidateEvery = 250,
        val_samples: Annotated[int, typer.Option(help="Validation pairs (fixed, 256 px crops).", rich_help_panel=SCHEDULE)] = 16,
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
                "detector's mask, as restore gives it).",
                rich_help_panel=DATA,
            ),
        ] = "synthetic",
        scratch_weights: Annotated[
            Path | None,
            typer.Option(help="Scratch-detector weights for --mask-source detector (default: the installed ones).", rich_help_panel=DATA),
        ] = None,
        out: Annotated[Path, typer.Option(help="Where the best weights are exported.")] = Path(f"weights/{model}.safetensors"),
        checkpoint: Annotated[Path, typer.Option(help="Checkpoint file for --resume.")] = Path(f"runs/{model}/checkpoint.pt"),
        resume: Resume = False,
        init: Init = None,
        mapping: Annotated[
            Path | None, typer.Option(help="Mapping weights for detail-fusion (default: the installed mapping).", rich_help_panel=DATA)
        ] = None,
        clean_fraction: Annotated[
            float,
            typer.Option(help="detail-fusion: share of crops left undamaged, the crop itself the target.", rich_help_panel=DATA),
        ] = 0.25,
        light_fraction: Annotated[
            float,
            typer.Option(help="detail-fusion: share of crops with structured damage only (a good print with scratches).", rich_help_panel=DATA),
        ] = 0.0,
        device: Device = "cpu",
        precision: TrainPrecision = "fp32",
        workers: Workers = 0,
        time_budget: TimeBudget = None,
    ) -> None:
        from oldphoto.training.restoration import GlobalTrainConfig, train_global

        _check_runtime(precision, workers)
        config = GlobalTrainConfig(
            model=model,
            data=tuple(map(str, data)),
            val=tuple(map(str, val)),
            out=str(out),
            checkpoint=str(checkpoint),
            real=tuple(map(str, real or ())),
            damage_dirs=tuple(map(str, damage_dir or ())),
            presets=tuple(preset or ("default", "bopbtl")),
            steps=steps,
            batch_size=batch_size,
            crop=crop,
            learning_rate=learning_rate,
            seed=seed,
            validate_every=validate_every,
            val_samples=val_samples,
            kl_weight=kl_weight,
            ssim_weight=ssim_weight,
            adversarial_weight=adversarial_weight,
            latent_weight=latent_weight,
            vae_old=None if vae_old is None else str(vae_old),
            vae_clean=None if vae_clean is None else str(vae_clean),
            init=None if init is None else str(init),
            mask_source=mask_source,
            scratch_weights=None if scratch_weights is None else str(scratch_weights),
            mapping=None if mapping is None else str(mapping),
            clean_fraction=clean_fraction,
            light_fraction=light_fraction,
            runtime=_train_runtime(device, precision, workers, time_budget),
        )
        _train_with_progress(model, steps, lambda on_step: train_global(config, resume=resume, on_step=on_step))

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
    data: Data,
    damage_dir: DamageDirs = None,
    preset: Annotated[str, typer.Option(help="Degradation preset for the face crops.", rich_help_panel=DATA)] = "bopbtl",
    structured: Annotated[
        bool, typer.Option("--structured/--no-structured", help="Also draw scratches and spots on the faces.", rich_help_panel=DATA)
    ] = False,
    steps: Annotated[int, typer.Option(help="Total optimisation steps.", rich_help_panel=SCHEDULE)] = 3000,
    batch_size: Annotated[int, typer.Option(help="Faces per step.", rich_help_panel=SCHEDULE)] = 4,
    crop: Annotated[int, typer.Option(help="Training crop of the 256 px aligned face (multiple of 8).", rich_help_panel=SCHEDULE)] = 256,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.", rich_help_panel=SCHEDULE)] = 1e-3,
    seed: Seed = 0,
    validate_every: ValidateEvery = 250,
    val_samples: Annotated[int, typer.Option(help="Held-out faces used for validation.", rich_help_panel=SCHEDULE)] = 16,
    ssim_weight: Annotated[float, typer.Option(help="Weight of 1 - SSIM beside L1.", rich_help_panel=LOSSES)] = 0.2,
    after_global: Annotated[
        bool,
        typer.Option(
            "--after-global/--raw-damage",
            help="Feed the refiner damaged faces passed through the installed global stage (as restore does), or the raw damaged faces.",
            rich_help_panel=DATA,
        ),
    ] = True,
    condition: Annotated[
        FaceCondition,
        typer.Option(
            help="What the SPADE blocks modulate with: 'original' (the damaged face before the global stage) or 'input' (the refiner's own input).",
            rich_help_panel=DATA,
        ),
    ] = FaceCondition.original,
    init: Init = None,
    out: Annotated[Path, typer.Option(help="Where the best weights are exported.")] = Path("weights/face-refine.safetensors"),
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint file for --resume.")] = Path("runs/face/checkpoint.pt"),
    resume: Resume = False,
) -> None:
    """Train the face refiner on aligned faces (found and aligned as `restore` does) with damage drawn on the fly."""
    from oldphoto.training.faces import FaceTrainConfig, train_face

    config = FaceTrainConfig(
        data=tuple(map(str, data)),
        out=str(out),
        checkpoint=str(checkpoint),
        damage_dirs=tuple(map(str, damage_dir or ())),
        preset=preset,
        structured=structured,
        steps=steps,
        batch_size=batch_size,
        crop=crop,
        learning_rate=learning_rate,
        seed=seed,
        validate_every=validate_every,
        val_samples=val_samples,
        ssim_weight=ssim_weight,
        after_global=after_global,
        condition=condition.value,
        init=None if init is None else str(init),
    )
    _train_with_progress("face-refine", steps, lambda on_step: train_face(config, resume=resume, on_step=on_step))


@app.command("face-gate")
def face_gate(
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
    steps: Annotated[int, typer.Option(help="Total optimisation steps.", rich_help_panel=SCHEDULE)] = 2000,
    batch_size: Annotated[int, typer.Option(help="Faces per step.", rich_help_panel=SCHEDULE)] = 16,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.", rich_help_panel=SCHEDULE)] = 1e-3,
    seed: Seed = 0,
    validate_every: ValidateEvery = 250,
    precision: TrainPrecision = "fp32",
    init: Init = None,
    out: Annotated[Path, typer.Option(help="Where the best weights are exported.")] = Path("weights/face-gate.safetensors"),
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint file for --resume.")] = Path("runs/face-gate/checkpoint.pt"),
    resume: Resume = False,
) -> None:
    """Train the face gate: how much of the refiner's correction each face takes (0 keeps a sharp face as it is)."""
    from oldphoto.training.face_gate import FaceGateTrainConfig, train_face_gate

    _check_runtime(precision, 0)
    config = FaceGateTrainConfig(
        data=tuple(map(str, data)),
        out=str(out),
        checkpoint=str(checkpoint),
        damage_dirs=tuple(map(str, damage_dir or ())),
        presets=tuple(preset) if preset else FaceGateTrainConfig.presets,
        clean_fraction=clean_fraction,
        pool=pool,
        val_samples=val_samples,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        validate_every=validate_every,
        init=None if init is None else str(init),
        runtime=_train_runtime("cpu", precision, 0, None),
    )
    _train_with_progress("face-gate", steps, lambda on_step: train_face_gate(config, resume=resume, on_step=on_step))
