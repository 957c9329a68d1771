"""The options of `oldphoto restore`, as Annotated types grouped by help panel (the command is in restore.py)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from oldphoto.cli.common import PrecisionChoice, file_path, fp16_option, precision_option, quiet_option
from oldphoto.inputs import AUTO_EXTENSION, OUTPUT_EXTENSIONS
from oldphoto.restore.global_stage import GLOBAL_BACKENDS

GlobalModel = Enum("GlobalModel", {name: name for name in GLOBAL_BACKENDS}, type=str)  # type: ignore[misc]
GLOBAL_MODEL_HELP = "Global network: " + "; ".join(f"'{b.name}', {b.help}" for b in GLOBAL_BACKENDS.values()) + "."


OutputExt = Enum("OutputExt", {name: name for name in (AUTO_EXTENSION, *OUTPUT_EXTENSIONS)}, type=str)
"""``--ext``'s choices: ``auto`` and each of :data:`oldphoto.inputs.OUTPUT_EXTENSIONS` (the one list of them)."""


class Engine(str, Enum):
    local = "local"
    ray = "ray"


OUTPUT = "Output"
STAGES = "Stages"
PERFORMANCE = "Performance"
CLUSTER = "Archives and clusters"


InputsOption = Annotated[
        list[str], typer.Argument(metavar="FILE|DIR|GLOB", help="Image files, folders or glob patterns.", show_default=False)
    ]

OutputOption = Annotated[Path, typer.Option("--output", "-o", help="Output folder.", rich_help_panel=OUTPUT)]

RecursiveOption = Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into sub-folders of folder inputs.")
    ]

ExtOption = Annotated[
        OutputExt,
        typer.Option(help="Output format; auto keeps each input's own.", case_sensitive=False, rich_help_panel=OUTPUT),
    ]

JpegQualityOption = Annotated[
        str,
        typer.Option(
            metavar="N|auto",
            help="JPEG quality 1..100 of JPEG (and WebP) outputs; auto keeps the input's own quality and chroma "
            "subsampling where they can be read, else 95 with full-resolution (4:4:4) colour, and writes a lossless "
            "input (PNG, TIFF, lossless WebP) as lossless WebP.",
            rich_help_panel=OUTPUT,
        ),
    ]

SuffixOption = Annotated[str, typer.Option(help="Appended to each output's stem.", rich_help_panel=OUTPUT)]

OverwriteOption = Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs (inputs are never replaced).", rich_help_panel=OUTPUT)
    ]

SaveMaskOption = Annotated[
        bool, typer.Option("--save-mask", help="Also write the scratch mask as <stem>_mask.png.", rich_help_panel=OUTPUT)
    ]

CompareOption = Annotated[
        bool, typer.Option("--compare", help="Also write a before|after sheet <stem>_compare.jpg.", rich_help_panel=OUTPUT)
    ]

ReportOption = Annotated[
        Path | None, typer.Option(help="Write a per-image JSON report to this file.", parser=file_path, metavar="FILE", rich_help_panel=OUTPUT)
    ]

GalleryOption = Annotated[
        bool,
        typer.Option(
            "--gallery",
            help="Also write OUT/index.html: one page to look at the run (before/after slider, damage mask, faces, "
            "figures) that works opened from disk. Implies --save-mask.",
            rich_help_panel=OUTPUT,
        ),
    ]

DryRunOption = Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and write nothing.", rich_help_panel=OUTPUT)
    ]

WithScratchOption = Annotated[
        bool, typer.Option("--with-scratch/--no-scratch", help="Detect and repair scratches.", rich_help_panel=STAGES)
    ]

MasksOption = Annotated[
        Path | None,
        typer.Option(
            help="Folder of your own damage masks (white = damaged), named <stem>_mask.png or <stem><suffix>_mask.png "
            "as --save-mask writes them (sub-folders mirroring the inputs'). A photo with a mask there is repaired where its mask says instead of "
            "where the detector would; photos without one are detected as usual.",
            exists=True,
            file_okay=False,
            rich_help_panel=STAGES,
        ),
    ]

ScratchThresholdOption = Annotated[
        float | None,
        typer.Option(
            metavar="0..1",
            # No min/max here: Typer would show them as [0.0<=x<=1.0], but 0 and 1 are refused (every pixel, none).
            help="Detector sensitivity, strictly between 0 and 1: the probability above which a pixel counts as damaged "
            "(default: the model's, chosen on validation data). Raise it when bright areas are marked, lower it for "
            "faint cracks.",
            rich_help_panel=STAGES,
        ),
    ]

ScratchVerifyOption = Annotated[
        bool,
        typer.Option(
            "--scratch-verify/--no-scratch-verify",
            help="Let the scratch verifier judge each mark the detector makes and keep only those that look like damage "
            "(scene content such as white flowers or a bright sky is left alone). --no-scratch-verify repairs every mark: "
            "more faint damage found, more content painted over.",
            rich_help_panel=STAGES,
        ),
    ]

MaskDilationOption = Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Grow the detected mask by this many pixels before repair, to cover the soft edges of scratches "
            "(default: the model's, 0). Masks given with --masks are used as they are.",
            rich_help_panel=STAGES,
        ),
    ]

GlobalRestorationOption = Annotated[
        bool,
        typer.Option(
            "--global/--no-global",
            help="Global restoration network. With --no-global, detected scratches are filled by classical inpainting.",
            rich_help_panel=STAGES,
        ),
    ]

GlobalModelOption = Annotated[
        GlobalModel,
        typer.Option(
            help=GLOBAL_MODEL_HELP,
            rich_help_panel=STAGES,
        ),
    ]

GlobalStrengthOption = Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="How much of the global restoration to keep away from the repaired damage: 1 treats grain, blur and "
            "fading over the whole photo; lower keeps more of the scan's own grain, fine texture and tone; 0 keeps "
            "the global stage's change on the repaired damage only (faces are still refined). Marked damage is "
            "always repaired in full, in the tone kept around it.",
            rich_help_panel=STAGES,
        ),
    ]

GrainOption = Annotated[
    bool,
    typer.Option(
        "--grain/--no-grain",
        help="Give repaired damage the grain of the restored photo around it (a smooth fill shows as a clean streak or a "
        "waxy patch on a grainy scan); only repaired pixels change.",
        rich_help_panel=STAGES,
    ),
]

KeepToneOption = Annotated[
        bool,
        typer.Option(
            "--keep-tone",
            help="Keep the photo's own colour (sepia, cyanotype, toning): the restored luminance with the input's "
            "smoothed colour. By default toning casts are neutralised.",
            rich_help_panel=STAGES,
        ),
    ]

WeightsOption = Annotated[
        list[str] | None,
        typer.Option(
            "--weights",
            metavar="MODEL=FILE",
            help="Use these weights for a model instead of the installed ones, e.g. mapping=runs/mapping/mapping.safetensors "
            "from oldphoto train (repeatable; names as in oldphoto models list). They must fit the model's architecture; "
            "they are not sha256-checked like the shipped ones.",
            rich_help_panel=STAGES,
        ),
    ]

FacesOption = Annotated[bool, typer.Option("--faces/--no-faces", help="Refine faces.", rich_help_panel=STAGES)]

FaceStrengthOption = Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Blend of refined faces: 0 keeps the global result, 1 blends the refined face in fully, as far as the "
            "face gate says it needs (a sharp face not at all) (the opposite direction to CodeFormer's -w).",
            rich_help_panel=STAGES,
        ),
    ]

MinFaceSizeOption = Annotated[
        int,
        typer.Option(
            min=0,
            help="Refine only faces whose box (its larger side) is at least this many pixels of the photo; smaller "
            "faces are left as the global stage made them (default 0: every face found).",
            rich_help_panel=STAGES,
        ),
    ]

OnlyCenterFaceOption = Annotated[
        bool,
        typer.Option(
            "--only-center-face", help="Refine only the face nearest the photo's centre.", rich_help_panel=STAGES
        ),
    ]

SaveFacesDirOption = Annotated[
        Path | None,
        typer.Option(
            "--save-faces",
            help="Also write each refined face to DIR/cropped/<stem>_<k>.png (the aligned crop given to the refiner), "
            "DIR/restored/<stem>_<k>.png (the crop as pasted back, at the strength applied) and DIR/cmp/<stem>_<k>.png "
            "(the two side by side), in the input's sub-folder under each; k is the face's number in the report "
            "(largest first, every face found). A re-run replaces a photo's earlier crops.",
            file_okay=False,
            rich_help_panel=OUTPUT,
        ),
    ]

DeviceOption = Annotated[
        str, typer.Option(help="auto, cpu, cuda, cuda:N or mps (auto = CUDA, then MPS, then CPU).", rich_help_panel=PERFORMANCE)
    ]

PrecisionOption = Annotated[PrecisionChoice, precision_option(PERFORMANCE)]

Fp16Option = Annotated[bool, fp16_option(PERFORMANCE)]

TileOption = Annotated[int, typer.Option(help="Tile size in pixels (smaller tiles use less memory).", rich_help_panel=PERFORMANCE)]

TileOverlapOption = Annotated[
        int, typer.Option(help="Overlap between tiles in pixels (a stage whose model needs more uses its own minimum).", rich_help_panel=PERFORMANCE)
    ]

ThreadsOption = Annotated[
        int | None, typer.Option(min=1, help="CPU threads (default: all cores).", rich_help_panel=PERFORMANCE)
    ]

MaxPixelsOption = Annotated[
        int,
        typer.Option(min=0, help="Refuse images larger than this many pixels (0 = no limit).", rich_help_panel=PERFORMANCE),
    ]

ShardOption = Annotated[
        str | None,
        typer.Option(
            metavar="K/N|auto|auto/N",
            help="Restore only shard K of N (0 <= K < N): each photo's shard is a stable hash of its path below its "
            "input root, so shards are disjoint, cover everything, and stay put when photos are added. auto: K and N "
            "from a Slurm array ($SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT); auto/N: K from $JOB_COMPLETION_INDEX "
            "(Kubernetes Indexed Job). --report may contain {shard}.",
            rich_help_panel=CLUSTER,
        ),
    ]

EngineOption = Annotated[
        Engine,
        typer.Option(
            help="local: this process, photo by photo. ray: Ray Data workers that each load the models once "
            "(pip install 'oldphoto\\[ray]').",
            case_sensitive=False,
            rich_help_panel=CLUSTER,
        ),
    ]

WorkersOption = Annotated[
        int, typer.Option(min=1, metavar="N", help="Ray workers (--engine ray).", rich_help_panel=CLUSTER)
    ]

CpusPerWorkerOption = Annotated[
        float, typer.Option(min=0.01, metavar="N", help="CPUs per Ray worker; also its threads unless --threads.", rich_help_panel=CLUSTER)
    ]

GpusPerWorkerOption = Annotated[
        float, typer.Option(min=0.0, metavar="N", help="GPUs per Ray worker (e.g. 1, or 0.5 to share one).", rich_help_panel=CLUSTER)
    ]

RayAddressOption = Annotated[
        str | None,
        typer.Option(metavar="ADDRESS", help="Ray cluster to join, e.g. auto or ray://head:10001 (default: start a local Ray).", rich_help_panel=CLUSTER),
    ]

QuietOption = Annotated[bool, quiet_option()]
