"""The restore pipeline: detect scratches -> global restoration (with the mask) -> face refinement -> (optionally)
the photo's own tone back.

Everything stays in memory; stages are pure functions of arrays. Stages whose trained weights are not
available refuse to run up front (see :meth:`Restorer.__init__`) instead of passing the input through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from oldphoto.errors import ConfigError, DataError, StageUnavailableError, WeightsIntegrityError, WeightsNotFoundError
from oldphoto.imageio import Photo, is_black_and_white, to_luminance, to_rgb
from oldphoto.registry import (
    FACE_DETECTOR_MODEL,
    FACE_GATE_MODEL,
    FACE_MODEL,
    MIN_TILE,
    SCRATCH_MODEL,
    SCRATCH_VERIFIER_MODEL,
    get_spec,
)
from oldphoto.restore.classical import inpaint_telea
from oldphoto.restore.faces import RefinedFace, refine_faces
from oldphoto.restore.global_stage import DEFAULT_GLOBAL_BACKEND, GLOBAL_BACKENDS, REPAIR_REACH, temper_restoration
from oldphoto.restore.grain import FADE, FILL_REACH, match_grain
from oldphoto.restore.scratches import ScratchDetection, check_detection_overrides, detection_settings
from oldphoto.restore.tone import keep_tone
from oldphoto.runtime import Runtime
from oldphoto.weights import LoadedModel, file_sha256, load_model, load_network_from, verify_weights

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class RestoreOptions:
    scratches: bool = True
    """Detect structured damage and repair it."""
    global_restoration: bool = True
    """Run the triplet-domain global restoration network."""
    faces: bool = True
    """Refine faces after global restoration."""
    face_strength: float = 1.0
    """0 keeps the global result, 1 blends the refined faces in fully (the opposite direction to CodeFormer's -w)."""
    min_face_size: int = 0
    """Refine only faces whose box's larger side is at least this many pixels of the photo; 0 = every face found."""
    only_center_face: bool = False
    """Refine only the face whose box centre is nearest the photo's centre."""
    face_gate: bool = True
    """Let the face gate decide how much of the refiner's correction each face takes (a sharp face none); off, every
    face takes it at ``face_strength`` (for measurements: what the gate saves sharp faces)."""
    global_strength: float = 1.0
    """Share of the global stage's change kept where it repaired no marked damage: 1 the whole restoration (grain,
    blur and fading treated over the whole photo), 0 the scan as it was except for the repaired damage, which is
    always repaired in full (:func:`~oldphoto.restore.global_stage.temper_restoration`)."""
    global_model: str = DEFAULT_GLOBAL_BACKEND
    """A name in :data:`~oldphoto.restore.global_stage.GLOBAL_BACKENDS`: "triplet" (VAE_A -> mapping -> VAE_B, the method)
    or the ablation's "restore-unet"."""
    scratch_threshold: float | None = None
    """Probability above which the detector marks a pixel damaged; None = the registry's (chosen on validation
    data). Higher marks less (fewer false hits), lower marks more (fainter damage)."""
    mask_dilation: int | None = None
    """Pixels the detected mask is grown by before repair; None = the registry's. Given masks are used as they are."""
    verify_scratches: bool = True
    """Let the scratch verifier drop the detector's marks that look like scene content (bright flowers, a hair
    ornament, a blown-out sky); off, every mark above the threshold is repaired."""
    keep_tone: bool = False
    """Give the result the input's own colour (sepia, cyanotype, toning) at low resolution, on the restored luminance
    (:func:`oldphoto.restore.tone.keep_tone`); off, the networks neutralise the tone. Black-and-white stays so."""
    match_grain: bool = True
    """Give the repaired damage the grain of the restored photo around it (:func:`oldphoto.restore.grain.match_grain`):
    without it a fill is smooth, a clean streak or a waxy patch on a grainy scan."""
    given_masks: bool = False
    """Photos may come with the user's own damage masks (``restore --masks``): with every stage off those are still
    filled (classical inpainting), so such a run is not refused as doing nothing."""
    weights: tuple[tuple[str, str], ...] = ()
    """(model name, weights file) pairs: weights to use instead of the installed ones (e.g. from ``oldphoto train``).
    They must fit the registered architecture exactly; they are not sha256-checked, since they are the caller's."""

    def __post_init__(self) -> None:
        if self.global_model not in GLOBAL_BACKENDS:
            raise ConfigError(f"unknown global model {self.global_model!r}; use one of {', '.join(GLOBAL_BACKENDS)}")
        check_detection_overrides(self.scratch_threshold, self.mask_dilation)
        if not 0.0 <= self.global_strength <= 1.0:
            raise ConfigError(f"global strength {self.global_strength} must be between 0 and 1")
        if self.min_face_size < 0:
            raise ConfigError(f"minimum face size {self.min_face_size} must be 0 or more pixels (0 refines every face)")
        for name, _ in self.weights:
            get_spec(name)  # an unknown name lists the registered ones
        names = [name for name, _ in self.weights]
        if len(set(names)) < len(names):
            raise ConfigError(f"--weights names {max(names, key=names.count)!r} twice; give one file per model")

    def weights_file(self, name: str) -> str | None:
        """The caller's weights file for model ``name``, or None for the installed one."""
        return dict(self.weights).get(name)

    def detection_settings(self) -> tuple[float, int]:
        """(threshold, dilation) of the detection these options run (:func:`oldphoto.restore.scratches.detection_settings`)."""
        return detection_settings(get_spec(SCRATCH_MODEL), self.scratch_threshold, self.mask_dilation)


@dataclass
class RestoreResult:
    """Output of :meth:`Restorer.restore`.

    Attributes:
        pixels: (H, W, C) float32 in [0, 1], same size and channel count as the input.
        mask: (H, W) float32 0/1 scratch mask (detected or given), or None when scratch detection was off and no
            mask was given.
    """

    pixels: np.ndarray
    mask: np.ndarray | None
    mask_from_user: bool = False
    """True when the mask was the caller's (``restore(mask=...)``) rather than the detector's."""
    dropped_coverage: float | None = None
    """Share of pixels, 0..1, in the detector's marks that the scratch verifier dropped as scene content (None: no
    verifier ran)."""
    tiles: int = 0
    faces_found: int | None = None
    faces: list[RefinedFace] | None = None
    """Every face found, largest first, with whether it was refined and (if so) its aligned and refined crops;
    None when the face stage was off."""
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def scratch_coverage(self) -> float | None:
        return None if self.mask is None else float(self.mask.mean())


def required_models(options: RestoreOptions) -> dict[str, tuple[str, ...]]:
    """Stage name -> the registered models it needs, for the stages ``options`` turns on."""
    stages: dict[str, tuple[str, ...]] = {}
    if options.scratches:
        stages["scratches"] = (SCRATCH_MODEL, SCRATCH_VERIFIER_MODEL) if options.verify_scratches else (SCRATCH_MODEL,)
    if options.global_restoration:
        stages["global"] = GLOBAL_BACKENDS[options.global_model].models
    if options.faces:
        stages["faces"] = (FACE_DETECTOR_MODEL, FACE_MODEL, FACE_GATE_MODEL) if options.face_gate else (FACE_DETECTOR_MODEL, FACE_MODEL)
    return stages


STAGE_FLAGS = {"scratches": "--no-scratch", "global": "--no-global", "faces": "--no-faces"}


def require_stages(options: RestoreOptions) -> None:
    """Raise :class:`StageUnavailableError` naming every requested stage whose weights are not shipped."""
    missing, lost = [], []
    for stage, names in required_models(options).items():
        unshipped = [name for name in names if not get_spec(name).shipped]
        if unshipped:
            missing.append(f"{stage} (needs {', '.join(unshipped)}; skip it with {STAGE_FLAGS[stage]})")
        for name in names:
            given = options.weights_file(name)
            if given is not None and not Path(given).is_file():  # found here, not after the first photo's stages
                what = "a folder: give the .safetensors file in it" if Path(given).is_dir() else "no such file"
                lost.append(f"--weights {name}={given}: {what}")
            if get_spec(name).shipped and given is None:
                try:
                    # Verified here (hashed once a run: cached), so that every damaged file is named at once, not
                    # one per run as each network was loaded.
                    verify_weights(get_spec(name))
                except (WeightsNotFoundError, WeightsIntegrityError) as error:
                    lost.append(f"the {stage} stage: {error}; skip the stage with {STAGE_FLAGS[stage]}")
    if not (options.scratches or options.global_restoration or options.faces or options.given_masks):
        raise StageUnavailableError("nothing to restore: every stage is off; enable at least one")
    if missing:
        raise StageUnavailableError(
            "these restoration stages have no trained weights in this release: "
            + "; ".join(missing)
            + ". Run 'oldphoto models list' to see what is installed."
        )
    if lost:
        raise StageUnavailableError("; ".join(lost))


MASK_MOSTLY_DAMAGED = 0.5
"""A mask marking more than this share of a photo as damage is more likely inverted than right: warned about."""


def mask_from_photo(photo: Photo) -> np.ndarray:
    """A mask file as read (white = damaged) -> (H, W) float32 in [0, 1]: where the file has an alpha channel (strokes
    painted on a transparent layer), the transparent pixels are undamaged whatever their colour."""
    luma = to_luminance(photo.pixels)[:, :, 0]
    if photo.alpha is None:
        return luma
    opaque = photo.alpha.astype(np.float32) / np.iinfo(photo.alpha.dtype).max > 0.5
    return np.where(opaque, luma, 0.0).astype(np.float32)


def user_mask(mask: np.ndarray, size: tuple[int, int], name: str = "the damage mask") -> np.ndarray:
    """A caller's damage mask as the pipeline uses it: (H, W) float32 of 0/1 (values above 0.5 = damaged). Logs a
    warning when the mask looks wrong: most of the photo marked (inverted?), or grey strokes below half brightness,
    which do not count."""
    if mask.shape[:2] != tuple(size):
        raise DataError(
            f"{name} is {mask.shape[1]}x{mask.shape[0]} but the photo is {size[1]}x{size[0]}; "
            "give a mask of the photo's size (as --save-mask writes it)"
        )
    luma = mask if mask.ndim == 2 else to_luminance(mask)[:, :, 0]
    damaged = luma > 0.5
    marked = int(np.count_nonzero(damaged))
    faint = int(np.count_nonzero((luma > 0.1) & ~damaged))
    if marked > MASK_MOSTLY_DAMAGED * damaged.size:
        log.warning("%s marks %.0f%% of the photo as damaged: white marks damage, black leaves a pixel alone (inverted?)", name, 100 * marked / damaged.size)
    if faint > marked and faint >= 16:
        log.warning("%s has %d grey pixels below half brightness, which do not count as damage (%d pixels do): paint damage white", name, faint, marked)
    return damaged.astype(np.float32)


def first_clause(text: str) -> str:
    """``text`` up to its first parenthesis, comma, colon or semicolon: the gist of a long caveat."""
    cuts = [index for index in (text.find(mark) for mark in (" (", ",", ":", ";")) if index > 0]
    return text[: min(cuts)].strip() if cuts else text.strip()


def tile_floor(options: RestoreOptions) -> tuple[int, str]:
    """(the smallest tile in pixels the stages of ``options`` accept, the model that sets it); the face stage runs on
    whole aligned crops, not tiles."""
    tiled = [get_spec(name) for stage, names in required_models(options).items() if stage != "faces" for name in names]
    if not tiled:
        return MIN_TILE, "no stage"
    spec = max(tiled, key=lambda spec: spec.contract.min_tile)
    return spec.contract.min_tile, spec.name


def require_tile(tile: int, options: RestoreOptions) -> None:
    """Refuse a tile smaller than the stages of ``options`` accept (see :func:`tile_floor`).

    Raises:
        ConfigError: which model sets the floor, and the tile to give.
    """
    floor, name = tile_floor(options)
    if tile < floor:
        raise ConfigError(
            f"--tile {tile} is below {floor}, the smallest tile {name} runs on (4x its {floor // 4} px minimum overlap); "
            f"use --tile {floor} or more"
        )


def check_stage_weights(options: RestoreOptions) -> None:
    """Load every network the stages use, as a run loads them, and drop them: for ``--dry-run``, which otherwise
    predicted success for installed weights that fail their sha256 and ``--weights`` files of another architecture.

    Raises:
        WeightsNotFoundError, WeightsIntegrityError: as the run would.
    """
    for names in required_models(options).values():
        for name in names:
            load_network_from(get_spec(name), options.weights_file(name))


def stage_caveats(options: RestoreOptions, brief: bool = False) -> list[str]:
    """Warnings about the models ``options`` uses that are not yet fit for general use, one per model:
    ``name: caveat``, or with ``brief`` only the caveat's first clause (``scratch-unet: preliminary weights``)."""
    # Not for weights the caller gave (--weights): the caveats describe the installed ones.
    specs = [get_spec(name) for names in required_models(options).values() for name in names if options.weights_file(name) is None]
    return [f"{spec.name}: {first_clause(spec.caveat) if brief else spec.caveat}" for spec in specs if spec.caveat]


def plan_stages(options: RestoreOptions, masks: Path | None = None) -> list[str]:
    """The stages ``options`` runs, in order, one human-readable line each (the dry run and the report show them);
    loads nothing. ``masks``: the folder of the user's own masks (``--masks``), used instead of detection where a
    photo has one."""
    steps = []
    if masks is not None:
        others = "scratches detected in the others" if options.scratches else "no scratch detection for the others"
        steps.append(f"damage masks from {masks} for the photos that have one; {others}")
    if options.scratches:
        threshold, dilation = options.detection_settings()
        verified = f"marks judged by {SCRATCH_VERIFIER_MODEL}" if options.verify_scratches else "every mark kept"
        steps.append(f"detect scratches ({SCRATCH_MODEL}; threshold {threshold:g}, dilation {dilation} px; {verified})")
    if options.global_restoration:
        strength = "" if options.global_strength == 1.0 else f"; strength {options.global_strength:g} away from the repaired damage"
        steps.append(f"global restoration ({', '.join(required_models(options)['global'])}{strength})")
    elif options.scratches or masks is not None:
        steps.append("fill scratches by classical inpainting (Telea); no global restoration")
    if options.faces:
        selection = "".join(
            (
                f"; faces of {options.min_face_size} px or more" if options.min_face_size else "",
                "; only the centre face" if options.only_center_face else "",
            )
        )
        if options.face_gate:
            blend = "; the coarse and fine parts of each face's correction as the gate's need asks, times"
            models = f"{FACE_DETECTOR_MODEL}, {FACE_MODEL}, {FACE_GATE_MODEL}"
        else:
            blend, models = "; no gate: every face's correction at", f"{FACE_DETECTOR_MODEL}, {FACE_MODEL}"
        steps.append(f"refine faces ({models}{blend} strength {options.face_strength:g}{selection})")
    if options.match_grain and (options.scratches or masks is not None):
        steps.append("give the repaired damage the grain of the photo around it")
    if options.keep_tone:
        steps.append("keep the photo's own tone (its colour at low resolution on the restored luminance)")
    return steps


def grain_reach(options: RestoreOptions) -> tuple[int, int]:
    """(reach, fade) of the repair that grain matching follows: how far beyond the marks the repair replaced the photo,
    and over how many pixels it fades out. The global stage repaints 2 px around each mark (the detail fusion keeps the
    photo out of them); below strength 1 the tempering repairs 5 px in full and fades over 5 more
    (:func:`~oldphoto.restore.global_stage.temper_restoration`), a smooth band the grain must cover too; the classical
    inpainting fills the marks alone."""
    if not options.global_restoration:
        return 0, FADE
    if options.global_strength < 1.0:
        return REPAIR_REACH, REPAIR_REACH
    return FILL_REACH, FADE


def _gray_crops(record: RefinedFace) -> RefinedFace:
    if record.cropped is None or record.restored is None:
        return record
    gray = [np.repeat(to_luminance(crop), 3, axis=2) for crop in (record.cropped, record.restored)]
    return replace(record, cropped=gray[0], restored=gray[1])


class Restorer:
    """Loads the networks for the requested stages once, then restores photos one by one."""

    def __init__(self, runtime: Runtime, options: RestoreOptions = RestoreOptions()) -> None:
        require_stages(options)
        require_tile(runtime.tile, options)
        self.runtime = runtime
        self.options = options
        # Each network is loaded, verified and placed on the run's device once; stages read its contract from here.
        self.models: dict[str, LoadedModel] = {
            name: load_model(get_spec(name), runtime, options.weights_file(name))
            for names in required_models(options).values()
            for name in names
        }

    def plan(self) -> list[str]:
        return plan_stages(self.options)

    def scratch_detection(self) -> ScratchDetection:
        """The loaded detector and verifier at the options' settings."""
        threshold, dilation = self.options.detection_settings()
        return ScratchDetection.of(self.models[SCRATCH_MODEL], self.models.get(SCRATCH_VERIFIER_MODEL), threshold, dilation)

    def model_records(self, mask_given: bool = False) -> list[dict[str, str]]:
        """Each model used: its name and the sha256 of its weights (the registry's, or the given file's own, with the
        file's path); with ``mask_given`` (the photo came with its own mask) without the scratch models, not run."""
        records = []
        for model in self.models.values():
            if mask_given and model.spec.task == "scratch":
                continue
            given = self.options.weights_file(model.name)
            if given is None:
                records.append({"name": model.name, "sha256": model.spec.sha256 or ""})
            else:
                records.append({"name": model.name, "sha256": file_sha256(Path(given)), "weights": str(given)})
        return records

    def restore(
        self,
        pixels: np.ndarray,
        on_tile: Callable[[int, int], None] | None = None,
        mask: np.ndarray | None = None,
        mask_name: str = "the damage mask",
    ) -> RestoreResult:
        """Restore one photo: (H, W, 1|3) float32 in [0, 1] -> :class:`RestoreResult` of the same shape.

        ``mask``, (H, W) or (H, W, 1|3) in [0, 1] with values above 0.5 marking damage, replaces scratch
        detection for this photo (a mask the user drew or corrected); the later stages use it as they would the
        detector's. ``mask_name`` names it in messages (its file).
        """
        grayscale = pixels.shape[2] == 1
        rgb = original = to_rgb(pixels)
        result = RestoreResult(pixels=rgb, mask=None)
        if mask is not None:
            result.mask, result.mask_from_user = user_mask(mask, pixels.shape[:2], mask_name), True
        tiles = 0

        def count_tiles(done: int, total: int) -> None:
            nonlocal tiles
            tiles += 1
            if on_tile is not None:
                on_tile(done, total)

        if self.options.scratches and not result.mask_from_user:
            started = time.perf_counter()
            result.mask, dropped = self.scratch_detection().masks(rgb, self.runtime, on_tile=count_tiles)
            result.dropped_coverage = None if dropped is None else float(dropped.mean())
            result.stage_seconds["scratches"] = time.perf_counter() - started
        black_and_white = grayscale or is_black_and_white(rgb)
        nothing_marked = result.mask is None or not np.any(result.mask > 0.5)
        if self.options.global_restoration and self.options.global_strength == 0.0 and nothing_marked:
            log.debug("global strength 0 and no damage marked: the global stage would return the photo as it is")
        elif self.options.global_restoration:
            started = time.perf_counter()
            backend = GLOBAL_BACKENDS[self.options.global_model]
            restored = backend.run(rgb, result.mask, self.models, self.runtime, count_tiles)
            rgb = temper_restoration(original, restored, result.mask, self.options.global_strength)
            result.stage_seconds["global"] = time.perf_counter() - started
        elif result.mask is not None:
            started = time.perf_counter()
            rgb = inpaint_telea(rgb, result.mask)
            result.stage_seconds["inpaint"] = time.perf_counter() - started
        if self.options.match_grain and not nothing_marked:  # a mark was repaired, by the global stage or the inpainting
            started = time.perf_counter()
            rgb = match_grain(rgb, result.mask, *grain_reach(self.options))
            result.stage_seconds["grain"] = time.perf_counter() - started
        if self.options.faces:
            started = time.perf_counter()
            faces = refine_faces(
                rgb,
                self.models[FACE_DETECTOR_MODEL].network,
                self.models[FACE_MODEL],
                self.runtime,
                self.options.face_strength,
                original=original,
                min_size=self.options.min_face_size,
                only_center=self.options.only_center_face,
                gate=self.models[FACE_GATE_MODEL] if self.options.face_gate else None,
            )
            rgb, result.faces_found, result.faces = faces.pixels, len(faces.faces), list(faces.records)
            if grayscale or black_and_white:  # the crops as the photo comes out: black-and-white
                result.faces = [_gray_crops(record) for record in result.faces]
            result.stage_seconds["faces"] = time.perf_counter() - started
        if self.options.keep_tone and not black_and_white:
            # Last, so the refined faces take the photo's tone too; the source is the photo as given (its colour is
            # smoothed there, and the scratch mask keeps damaged pixels out of it).
            started = time.perf_counter()
            rgb = keep_tone(original, rgb, damage=result.mask)
            result.stage_seconds["tone"] = time.perf_counter() - started
        elif self.options.keep_tone:
            log.debug("keep tone: the photo is black and white, so it has no tone to keep")
        if grayscale:
            result.pixels = to_luminance(rgb)
        elif black_and_white:
            result.pixels = np.repeat(to_luminance(rgb), 3, axis=2)
        else:
            result.pixels = rgb
        result.tiles = tiles
        return result
