"""Face alignment and paste-back: similarity warp of five landmarks to a template, and its inverse.

The template places the eyes, nose tip and mouth corners so that a face fills the 256x256 crop from
forehead to chin (eyes 82 px apart): tighter than the FFHQ layout, so that the refiner spends its
pixels on the face rather than on hair and background, and close to the framing of the UTKFace
crops it is trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FACE_SIZE = 256
FACE_TEMPLATE = np.array(
    [[87.0, 117.6], [169.0, 117.7], [128.4, 165.7], [92.4, 203.0], [165.0, 202.9]], np.float32
)
"""(5, 2) landmark positions (x, y) in a 256x256 crop: left eye, right eye, nose tip, mouth corners."""


@dataclass(frozen=True)
class AlignedFace:
    """A face warped to the template.

    Attributes:
        pixels: (FACE_SIZE, FACE_SIZE, C) float32 in [0, 1].
        matrix: (2, 3) similarity transform from image to crop coordinates.
    """

    pixels: np.ndarray
    matrix: np.ndarray


def similarity_to_template(landmarks: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """(2, 3) least-squares similarity (rotation, uniform scale, translation) taking (5, 2) landmarks to the template."""
    template = FACE_TEMPLATE * (size / FACE_SIZE)
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), template, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks (all on one point): fall back to plain least squares
        matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), template, method=0)
    return matrix.astype(np.float64)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = FACE_SIZE) -> AlignedFace:
    """Warp the face with these landmarks to a size x size crop. ``image`` (H, W, C) float32 in [0, 1]."""
    matrix = similarity_to_template(landmarks, size)
    pixels = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return AlignedFace(np.clip(pixels, 0.0, 1.0).astype(np.float32), matrix)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def face_blend_mask(size: int = FACE_SIZE) -> np.ndarray:
    """(size, size) float32 weight in crop space: 1 over the face, fading to exactly 0 well inside the crop's
    border, so that the warped-back crop never shows its edge."""
    mask = np.zeros((size, size), np.float32)
    margin = size // 8
    cv2.ellipse(mask, (size // 2, int(size * 0.54)), (size // 2 - margin, int(size * 0.5) - margin), 0, 0, 360, 1.0, -1)
    feather = size / 16
    mask = cv2.GaussianBlur(mask, (0, 0), feather)
    mask[mask < 0.01] = 0.0
    return mask


def match_tone(refined: np.ndarray, reference: np.ndarray, sigma: float = 8.0) -> np.ndarray:
    """Give ``refined`` the low frequencies (tone, colour, shading) of ``reference`` and keep its own detail.
    Both (S, S, C) float32 in [0, 1]."""

    def low(image: np.ndarray) -> np.ndarray:
        blurred = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        return blurred.reshape(image.shape)

    return np.clip(refined + low(reference) - low(refined), 0.0, 1.0).astype(np.float32)


def paste_face(
    image: np.ndarray,
    face: np.ndarray,
    matrix: np.ndarray,
    strength: float = 1.0,
    base: np.ndarray | None = None,
    *,
    in_place: bool = False,
) -> np.ndarray:
    """Warp an aligned face crop back into ``image`` and blend it in with a feathered mask (low-passed first where the
    face is smaller in the photo than in the crop, so that the crop's fine detail does not alias).

    Args:
        image: (H, W, C) float32 in [0, 1]; not modified unless ``in_place``.
        face: (S, S, C) float32 crop in template space.
        matrix: the (2, 3) image->crop transform the crop was made with.
        strength: 0 = leave the image as it is, 1 = the face replaces the image inside the mask.
        base: the (S, S, C) crop ``face`` was made from. When given, only the correction ``face - base`` is warped
            back and added: a face larger than the template keeps the detail that the down/up round trip through
            the template's resolution would otherwise take away (the crop itself is never pasted).
        in_place: paste into ``image`` itself and return it: a photo with many faces is then copied once by the
            caller, not once per face (a 24 MP photo's copy costs 0.1 s and 288 MB).

    Returns:
        The (H, W, C) image in [0, 1], new unless ``in_place``; pixels where the warped mask is zero are exactly the
        input's.
    """
    result = image if in_place else image.copy()
    if strength <= 0.0:
        return result
    size = face.shape[0]
    height, width = image.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    # Only the bounding box of the warped crop is touched, so memory does not grow with the photo.
    corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64), inverse)
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x0 >= x1 or y0 >= y1:
        return result
    shifted = inverse.copy()
    shifted[:, 2] -= (x0, y0)
    region = (x1 - x0, y1 - y0)
    source = face if base is None else (face - base).astype(np.float32)
    # A face smaller than the template is a downscale of the crop: low-pass it first, or the crop's fine detail
    # aliases into the photo's pixels as speckle (the Gaussian of skimage's anti-aliasing, sigma = (factor - 1) / 2).
    factor = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # template pixels per photo pixel
    if factor > 1.0:
        source = cv2.GaussianBlur(source.astype(np.float32), (0, 0), (factor - 1.0) / 2.0, borderType=cv2.BORDER_REFLECT)
    warped = cv2.warpAffine(source, shifted, region, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(face_blend_mask(size), shifted, region, flags=cv2.INTER_LINEAR, borderValue=0.0)
    if warped.ndim == 2:
        warped = warped[:, :, None]
    alpha = (np.clip(alpha, 0.0, 1.0) * min(strength, 1.0))[:, :, None]
    patch = result[y0:y1, x0:x1]
    if base is None:
        result[y0:y1, x0:x1] = np.where(alpha > 0, patch + (warped - patch) * alpha, patch)
    else:
        result[y0:y1, x0:x1] = np.where(alpha > 0, np.clip(patch + warped * alpha, 0.0, 1.0), patch)
    return result
