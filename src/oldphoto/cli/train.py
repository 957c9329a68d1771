"""`oldphoto train MODEL`: one sub-command per trainable model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from oldphoto.cli.common import console, library_errors, progress_bar

app = typer.Typer(help="Train the networks (resumable, seeded, with checkpoints).", no_args_is_help=True)


@app.command("scratch")
def scratch(
    data: Annotated[list[Path], typer.Option("--data", help="Folders of clean photos (repeatable).")],
    val: Annotated[list[Path], typer.Option("--val", help="Folders of held-out clean photos for validation.")],
    damage_dir: Annotated[
        list[Path] | None, typer.Option("--damage-dir", help="Folders of RGBA damage stamps (repeatable).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Total optimisation steps.")] = 20000,
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = 8,
    crop: Annotated[int, typer.Option(help="Crop size in pixels.")] = 192,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    seed: Annotated[int, typer.Option(help="Random seed (data, damage and initialisation).")] = 0,
    preset: Annotated[str, typer.Option(help="Degradation preset for the synthetic damage.")] = "default",
    validate_every: Annotated[int, typer.Option(help="Validate and checkpoint every N steps.")] = 250,
    out: Annotated[Path, typer.Option(help="Where the best weights are exported.")] = Path("weights/scratch-unet.safetensors"),
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint file for --resume.")] = Path("runs/scratch/checkpoint.pt"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint.")] = False,
) -> None:
    """Train the scratch-detection U-Net with damage drawn on the fly."""
    from oldphoto.training.scratch import ScratchTrainConfig, train_scratch

    config = ScratchTrainConfig(
        data=tuple(map(str, data)),
        val=tuple(map(str, val)),
        out=str(out),
        checkpoint=str(checkpoint),
        damage_dirs=tuple(map(str, damage_dir or ())),
        preset=preset,
        steps=steps,
        batch_size=batch_size,
        crop=crop,
        learning_rate=learning_rate,
        seed=seed,
        validate_every=validate_every,
    )
    with library_errors(), progress_bar() as progress:
        task = progress.add_task("training scratch-unet", total=steps)
        last: dict = {}

        def on_step(step: int, total: int, figures: dict) -> None:
            last.update(figures)
            text = f"loss {last['loss']:.3f}" + (f" val F1 {last['f1']:.3f}" if "f1" in last else "")
            progress.update(task, completed=step, description=f"scratch-unet {text}")

        state = train_scratch(config, resume=resume, on_step=on_step)
    console.print(f"best validation: {state.best}")
