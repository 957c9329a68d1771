"""Stage 3: face refinement - detect (MTCNN), align to the template, refine, match tone, blend back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from oldphoto.errors import ConfigError
from oldphoto.registry import ModelSpec, settings_group
from oldphoto.restore.face_align import AlignedFace, align_face, match_tone, paste_face
from oldphoto.restore.face_detect import DetectorSettings, Face, detect_faces
from oldphoto.runtime import Runtime
from oldphoto.weights import LoadedModel

CONDITION_ORIGINAL = "original"
"""Registry setting ``condition`` of a refiner trained to be conditioned on the photo before global restoration
(``oldphoto train face --condition original``); any other value (or none): conditioned on its own input."""


def conditions_on_original(spec: ModelSpec) -> bool:
    """Whether this refiner is conditioned on the face as it was before global restoration (registry ``condition``;
    :func:`refine_faces` reads it), else on its own input."""
    return spec.settings.get("condition") == CONDITION_ORIGINAL


def averages_mirror(spec: ModelSpec) -> bool:
    """Whether this refiner's registry settings ask for its output to be averaged with its output on the mirrored
    face (``mirror_average``; see :func:`refiner_output`)."""
    return bool(spec.settings.get("mirror_average", False))


def refiner_output(refiner: nn.Module, crops: torch.Tensor, condition: torch.Tensor | None, mirror_average: bool = False) -> torch.Tensor:
    """The refiner's (N, 3, S, S) output in [0, 1] for aligned faces ``crops`` (N, 3, S, S) in [0, 1] (and their
    condition, the same faces before global restoration, or None).

    With ``mirror_average``, the mean of its output on the faces and, mirrored back, on their mirror images. A
    refiner trained with random horizontal flips sees both as faces; the two outputs differ in the detail each
    invents, and their mean keeps what they agree on (measured on held-out faces: more PSNR, nothing sharp lost).
    Runs in the caller's precision and autocast; costs a second pass of the refiner."""
    if not mirror_average:
        return refiner(crops, condition).clamp(0.0, 1.0)
    # One batch of the faces and their mirror images (the refiner normalises each face on its own, so batching
    # does not mix them).
    both = refiner(
        torch.cat([crops, crops.flip(-1)]), None if condition is None else torch.cat([condition, condition.flip(-1)])
    ).clamp(0.0, 1.0)
    direct, mirrored = both.chunk(2)
    return 0.5 * (direct + mirrored.flip(-1))


@dataclass(frozen=True)
class RefinedFace:
    """One detected face and what the face stage did with it."""

    face: Face
    refined: bool
    """Whether the refiner ran on it: False when the selection (``min_size``, ``only_center``) left it out or
    ``--face-strength`` is 0. A refined face may still be left as it was: the gate's strengths are then 0."""
    cropped: np.ndarray | None = None
    """(S, S, 3) float32 in [0, 1]: the aligned crop given to the refiner; None when not refined."""
    restored: np.ndarray | None = None
    """(S, S, 3) float32 in [0, 1]: the crop as pasted into the photo: the refiner's correction (tone matched) at the
    applied strengths, so a face the gate leaves alone shows as it was; None when not refined."""
    degradation: float | None = None
    """0..1, the gate's estimate of how much of the refiner's correction this face needs (0: a sharp, clean face that
    stays as the global stage left it); None when not refined or without a gate."""
    strength: float | None = None
    """The blend strength applied to the coarse part of the refiner's correction: ``--face-strength`` times what the
    gate's ``degradation`` asks for (:class:`GateBlend`; ``--face-strength`` alone without a gate); None when not
    refined."""
    fine_strength: float | None = None
    """The same for the correction's fine part (pores, lashes, grain), which the gate gives only to faces that clearly
    need it; equal to ``strength`` without a gate; None when not refined."""


@dataclass(frozen=True)
class FaceResult:
    pixels: np.ndarray
    """(H, W, 3) float32 in [0, 1]."""
    faces: list[Face]
    """Every face found, largest first (refined or not)."""
    records: tuple[RefinedFace, ...] = ()
    """One per entry of ``faces``, in the same order."""


def select_faces(faces: list[Face], shape: tuple[int, ...], min_size: float = 0.0, only_center: bool = False) -> list[bool]:
    """Which of ``faces`` to refine in an image of ``shape`` (H, W, ...): those whose box's larger side is at least
    ``min_size`` pixels, and with ``only_center`` of those only the one whose box centre is nearest the image's."""
    chosen = [face.size >= min_size for face in faces]
    if only_center and any(chosen):
        centre = np.array([shape[1] / 2.0, shape[0] / 2.0])

        def distance(index: int) -> float:
            x1, y1, x2, y2 = faces[index].box
            return float(np.hypot(*(np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0]) - centre)))

        nearest = min((index for index, keep in enumerate(chosen) if keep), key=distance)
        chosen = [index == nearest for index in range(len(faces))]
    return chosen


def refine_face_crop(
    crop: np.ndarray, refiner: nn.Module, runtime: Runtime, condition: np.ndarray | None = None, mirror_average: bool = False
) -> np.ndarray:
    """(S, S, 3) aligned face in [0, 1] (and optionally the refiner's (S, S, 3) condition, the same face before
    global restoration) -> refined (S, S, 3) in [0, 1], tone matched to ``crop``. ``mirror_average``: see
    :func:`refiner_output`."""

    def tensor(image: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        return batch.to(device=runtime.device, dtype=runtime.dtype)

    with torch.inference_mode(), runtime.autocast():
        out = refiner_output(refiner, tensor(crop), None if condition is None else tensor(condition), mirror_average)
    refined = out[0].to(device="cpu", dtype=torch.float32).permute(1, 2, 0).numpy()
    return match_tone(refined, crop)


def estimate_need(gate: nn.Module, original: np.ndarray, restored: np.ndarray, refined: np.ndarray) -> float:
    """The gate's strength in [0, 1] for one aligned face: (S, S, 3) float32 crops in [0, 1] of the face before the
    global stage, after it, and as the refiner made it. The gate runs where it was placed, in float32 on the CPU
    (its contract is ``cpu_only``: it is tiny, and one number decides the whole face), outside any autocast."""

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]

    with torch.inference_mode():
        return float(gate(tensor(original), tensor(restored), tensor(refined))[0])


@dataclass(frozen=True)
class GateBlend:
    """How the face gate's estimate ``need`` becomes the blend of the refiner's correction (the gate's registry
    settings ``coarse_ramp``, ``fine_ramp`` and ``fine_sigma``).

    The correction (refined minus aligned face, (S, S, 3) at the template's resolution) is split in two: its coarse
    part, a Gaussian low-pass of ``fine_sigma`` template pixels (shading, contours, the repair of blotches and
    scratches), and its fine part, the rest (pores, lashes, grain). Each takes its own strength, 0 up to its ramp's
    first value, 1 from its second, linear between. Why: measured on held-out faces, the fine part took about five
    times as much detail from sharp faces for each dB it gave damaged ones as the coarse part did, so it is given only
    to faces that clearly need it, while the coarse part reaches them sooner (see the face gate's model card).

    Raises:
        ConfigError: a ramp is not two needs 0 <= low < high <= 1, or ``fine_sigma`` is not positive.
    """

    coarse_ramp: tuple[float, float]
    fine_ramp: tuple[float, float]
    fine_sigma: float

    def __post_init__(self) -> None:
        for name, ramp in (("coarse_ramp", self.coarse_ramp), ("fine_ramp", self.fine_ramp)):
            if len(ramp) != 2 or not 0.0 <= ramp[0] < ramp[1] <= 1.0:
                raise ConfigError(f"the face gate's {name} {ramp} must be two needs 0 <= low < high <= 1")
        if not self.fine_sigma > 0.0:
            raise ConfigError(f"the face gate's fine_sigma {self.fine_sigma} must be a positive number of pixels")

    @classmethod
    def of(cls, spec: ModelSpec) -> GateBlend | None:
        """The blend the gate's registry settings describe, or None when they have none (``need`` itself is then the
        strength of the whole correction).

        Raises:
            ConfigError: some of the blend's settings are there, not all, or they are out of range.
        """
        settings = settings_group(spec.settings, ("coarse_ramp", "fine_ramp", "fine_sigma"), "face gate's blend")
        if settings is None:
            return None
        coarse_low, coarse_high = (float(v) for v in settings["coarse_ramp"])
        fine_low, fine_high = (float(v) for v in settings["fine_ramp"])
        return cls((coarse_low, coarse_high), (fine_low, fine_high), float(settings["fine_sigma"]))

    def strengths(self, need: float) -> tuple[float, float]:
        """(coarse, fine) strengths in [0, 1] for the gate's estimate ``need``."""
        return ramp_strength(need, self.coarse_ramp), ramp_strength(need, self.fine_ramp)


def ramp_strength(need: float, ramp: tuple[float, float]) -> float:
    """0 up to ``ramp[0]``, 1 from ``ramp[1]``, linear between."""
    low, high = ramp
    return float(min(1.0, max(0.0, (need - low) / (high - low))))


def blend_strengths(need: float | None, blend: GateBlend | None, strength: float) -> tuple[float, float]:
    """(coarse, fine) strengths of a face's correction: ``strength`` (``--face-strength``) times what the gate's
    ``need`` asks for (:class:`GateBlend`; ``need`` for both parts when the gate has no blend settings), or
    ``strength`` for both without a gate."""
    if need is None:
        return strength, strength
    if blend is None:
        return strength * need, strength * need
    coarse, fine = blend.strengths(need)
    return strength * coarse, strength * fine


def blended_face(aligned: np.ndarray, refined: np.ndarray, coarse: float, fine: float, fine_sigma: float) -> np.ndarray:
    """(S, S, 3) float32: ``aligned`` plus ``coarse`` times the coarse part of the correction ``refined - aligned``
    (Gaussian low-pass of ``fine_sigma`` px) plus ``fine`` times its fine part (the rest); both crops in [0, 1]. The
    sum may leave [0, 1] by a little (the two parts are weighted apart); :func:`paste_correction` clips the photo."""
    correction = (refined - aligned).astype(np.float32)
    coarse_part = cv2.GaussianBlur(correction, (0, 0), fine_sigma, borderType=cv2.BORDER_REFLECT)
    return aligned + coarse * coarse_part + fine * (correction - coarse_part)


def paste_correction(
    rgb: np.ndarray,
    aligned: AlignedFace,
    refined: np.ndarray,
    coarse: float,
    fine: float,
    blend: GateBlend | None,
    *,
    in_place: bool = False,
) -> np.ndarray:
    """``rgb`` (H, W, 3) in [0, 1] with the refiner's correction ``refined - aligned.pixels`` ((S, S, 3) crops)
    warped back into the face and added, its coarse and fine parts at their strengths (one strength for the whole
    correction when they are equal, or without a gate's ``blend``). Only the correction goes back, so a face larger
    than the 256 px template keeps its own detail; the result is clipped to [0, 1]. A new image, or ``rgb`` itself
    changed when ``in_place``."""
    if blend is None or coarse == fine:
        return paste_face(rgb, refined, aligned.matrix, coarse, base=aligned.pixels, in_place=in_place)
    corrected = blended_face(aligned.pixels, refined, coarse, fine, blend.fine_sigma)
    return paste_face(rgb, corrected, aligned.matrix, 1.0, base=aligned.pixels, in_place=in_place)


def refine_faces(
    rgb: np.ndarray,
    detector: nn.Module,
    refiner: LoadedModel,
    runtime: Runtime,
    strength: float = 1.0,
    settings: DetectorSettings = DetectorSettings(),
    original: np.ndarray | None = None,
    *,
    min_size: float = 0.0,
    only_center: bool = False,
    gate: LoadedModel | None = None,
) -> FaceResult:
    """Refine the faces in a (globally restored) photo: every face found, or those ``min_size``/``only_center``
    select (see :func:`select_faces`); the others are left exactly as they are.

    Args:
        rgb: (H, W, 3) float32 in [0, 1].
        detector: the MTCNN cascade, on the CPU (its work is many tiny crops; always in float32, see
            :func:`detect_faces`).
        refiner: the face refinement model with its registry spec, its network on ``runtime.device`` (it runs at
            ``runtime.precision``). The spec's settings say whether it is conditioned on ``original``
            (``condition``, :func:`conditions_on_original`) and whether its output is averaged with its output on the
            mirrored face (``mirror_average``, :func:`refiner_output`).
        The networks are placed by the caller once (:meth:`oldphoto.runtime.Runtime.place` per their contracts).
        strength: 0 = the input unchanged, 1 = refined faces blended in as far as the gate says (fully without one).
        gate: the face gate (:class:`~oldphoto.archs.face_gate.FaceGate`) with its spec: each face's blend is
            ``strength`` times its estimate of how much the face needs the refiner's correction (mapped by the spec's
            ramps for the correction's coarse and fine parts, see :class:`GateBlend`), so a sharp face stays as it is.
        min_size: refine only faces whose box's larger side is at least this many pixels (0 = every face).
        only_center: refine only the (selected) face whose box centre is nearest the photo's centre.
        original: the same photo before global restoration, (H, W, 3) float32 in [0, 1] (default: ``rgb``). For a
            refiner trained that way, each face cut from it (at the landmarks found in ``rgb``) conditions the
            refiner, so that detail the global stage smoothed away can come back; the gate compares the face in it
            with the global stage's and the refiner's.
    """
    faces = detect_faces(rgb, detector, settings)
    chosen = select_faces(faces, rgb.shape, min_size, only_center)
    if not any(chosen) or strength <= 0.0:
        return FaceResult(rgb, faces, tuple(RefinedFace(face, False) for face in faces))
    result = rgb.copy()  # one copy, each face pasted into it in place
    records: list[RefinedFace] = [RefinedFace(face, False) for face in faces]
    conditioned, mirror_average = conditions_on_original(refiner.spec), averages_mirror(refiner.spec)
    blend = None if gate is None else GateBlend.of(gate.spec)
    # Smallest first, so that where faces overlap the larger (better resolved) one is pasted last.
    for index in reversed(range(len(faces))):
        if not chosen[index]:
            continue
        face = faces[index]
        aligned = align_face(result, face.landmarks)
        # The face before the global stage: the refiner's condition and what the gate compares against.
        before = align_face(rgb if original is None else original, face.landmarks).pixels if conditioned or gate is not None else None
        refined = refine_face_crop(aligned.pixels, refiner.network, runtime, before if conditioned else None, mirror_average)
        need = None
        if gate is not None:
            need = estimate_need(gate.network, before, aligned.pixels, refined)
        coarse, fine = blend_strengths(need, blend, strength)
        paste_correction(result, aligned, refined, coarse, fine, blend, in_place=True)
        applied = blended_face(aligned.pixels, refined, coarse, fine, blend.fine_sigma) if blend is not None else aligned.pixels + coarse * (refined - aligned.pixels)
        records[index] = RefinedFace(face, True, aligned.pixels, np.clip(applied, 0.0, 1.0).astype(np.float32), need, coarse, fine)
    return FaceResult(result, faces, tuple(records))
