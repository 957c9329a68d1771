"""The only module that reads or writes pixel files.

A :class:`Photo` carries float pixels for the networks plus everything needed to write the result
back faithfully: bit depth, grayscale-ness, the untouched alpha channel, ICC profile and EXIF.

Rules (see the tests in ``tests/test_imageio.py``):

* EXIF orientation is applied on load; on save EXIF is kept with orientation reset to 1.
* 16-bit PNG/TIFF in -> 16-bit out; grayscale in -> grayscale out; alpha passes through untouched.
* Writes are atomic (temporary file in the destination folder, then ``os.replace``).
* Unreadable, empty, truncated or non-image files raise :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from oldphoto.errors import ImageReadError, ImageTooLargeError, ImageWriteError

log = logging.getLogger(__name__)

# We enforce our own, configurable decompression-bomb guard (see ``read_photo``); Pillow's global
# limit would otherwise reject large archival scans with a message that names no option.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 250_000_000
"""Default decompression-bomb guard: 250 megapixels (a 1200-dpi scan of a 10x12-inch print is ~170)."""

EXTENSION_FORMATS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})
EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Photo:
    """A decoded photograph.

    Attributes:
        pixels: float32 array (H, W, C), C = 1 (grayscale) or 3 (RGB), values in [0, 1],
            already turned upright by the EXIF orientation.
        alpha: the original alpha channel (H, W) in its file dtype (uint8/uint16), or None.
        bit_depth: 8 or 16, bits per channel of the source file.
        format: Pillow format name of the source ("JPEG", "PNG", ...).
        icc_profile: raw ICC profile bytes, or None.
        exif: EXIF block with orientation reset to 1, or None.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    format: str = "PNG"
    icc_profile: bytes | None = None
    exif: bytes | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def is_grayscale(self) -> bool:
        return self.pixels.shape[2] == 1

    def with_pixels(self, pixels: np.ndarray) -> Photo:
        """Same metadata, new pixels (must keep the pixel size; channels may be 1 or 3)."""
        if pixels.shape[:2] != self.pixels.shape[:2]:
            raise ValueError(f"pixel size changed from {self.pixels.shape[:2]} to {pixels.shape[:2]}")
        return replace(self, pixels=np.ascontiguousarray(pixels, dtype=np.float32))


def format_for_path(path: Path) -> str:
    """Pillow format name for an output path, from its extension."""
    try:
        return EXTENSION_FORMATS[path.suffix.lower()]
    except KeyError:
        valid = ", ".join(sorted(EXTENSION_FORMATS))
        raise ImageWriteError(f"{path}: unsupported output extension {path.suffix!r}; use one of {valid}") from None


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in EXTENSION_FORMATS


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W, ...) array upright according to an EXIF orientation value (1-8)."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _png_bit_depth(data: bytes) -> int:
    # IHDR is always the first chunk: 8-byte signature, 4 length, 4 type, 4 width, 4 height, 1 depth.
    return data[24] if len(data) > 24 else 8


def _source_bit_depth(pil: Image.Image, data: bytes) -> int:
    if pil.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return 16
    if pil.format == "PNG":
        return 16 if _png_bit_depth(data) == 16 else 8
    if pil.format == "TIFF":
        bits = pil.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return 16 if max(bits) == 16 else 8
    return 8


def _decode_16bit(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a 16-bit PNG/TIFF with OpenCV (Pillow cannot hold 16-bit RGB). Returns (color, alpha)."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ImageReadError(f"{path}: could not decode the 16-bit image data (file damaged?)")
    if array.ndim == 2:
        return array[:, :, None], None
    if array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)[:, :, :3], array[:, :, 3].copy()
    if array.shape[2] == 2:  # gray + alpha
        return array[:, :, :1], array[:, :, 1].copy()
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB), None


def _decode_8bit(pil: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode any 8-bit Pillow mode to (H, W, 1|3) uint8 plus the alpha channel, if any."""
    has_alpha = pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info)
    if pil.mode in ("L", "LA", "1"):
        color = np.asarray(pil.convert("L"))[:, :, None]
        alpha = np.asarray(pil.convert("LA").getchannel("A")).copy() if has_alpha else None
        return color, alpha
    color = np.asarray(pil.convert("RGB"))
    alpha = np.asarray(pil.convert("RGBA").getchannel("A")).copy() if has_alpha else None
    # Formats without a gray mode (WebP) store a black-and-white print as equal R, G, B; lossy
    # chroma coding leaves differences of at most one level.
    spread = color.max(axis=2).astype(np.int16) - color.min(axis=2)
    if color.size and int(spread.max()) <= 1:
        return np.asarray(pil.convert("L"))[:, :, None], alpha
    return color, alpha


def read_photo(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Photo:
    """Read an image file into a :class:`Photo`.

    Args:
        path: JPEG, PNG, TIFF, WebP or BMP file.
        max_pixels: decompression-bomb guard; ``None`` or 0 disables it.

    Raises:
        ImageReadError: missing, empty, truncated or non-image file.
        ImageTooLargeError: more pixels than ``max_pixels``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image") from None
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read file ({error.strerror})") from None
    if not data:
        raise ImageReadError(f"{path}: file is empty")
    try:
        pil = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image, or a format oldphoto cannot read") from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for corrupt headers
        raise ImageReadError(f"{path}: cannot decode image header ({error})") from None
    width, height = pil.size
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{path}: {width}x{height} = {width * height / 1e6:.0f} megapixels exceeds the "
            f"{max_pixels / 1e6:.0f}-megapixel safety limit (decompression-bomb guard); "
            "raise it with --max-pixels if you trust this file"
        )
    try:
        pil.load()
        exif = pil.getexif()
        orientation = int(exif.get(EXIF_ORIENTATION_TAG, 1) or 1)
        bit_depth = _source_bit_depth(pil, data)
        if bit_depth == 16 and pil.format in SIXTEEN_BIT_FORMATS:
            color, alpha = _decode_16bit(data, path)
            scale = 65535.0
            if color.dtype != np.uint16:  # OpenCV disagreed with the header: trust the decoded data
                bit_depth, scale = 8, 255.0
        else:
            bit_depth = 8
            color, alpha = _decode_8bit(pil)
            scale = 255.0
    except ImageReadError:
        raise
    except Exception as error:  # noqa: BLE001 - truncated data surfaces as OSError, SyntaxError, ...
        raise ImageReadError(f"{path}: image data is damaged or truncated ({error})") from None

    color = apply_orientation(color, orientation)
    if alpha is not None:
        alpha = np.ascontiguousarray(apply_orientation(alpha, orientation))
    pixels = np.ascontiguousarray(color, dtype=np.float32) / np.float32(scale)
    exif_bytes = None
    if len(exif):
        exif[EXIF_ORIENTATION_TAG] = 1
        exif_bytes = exif.tobytes()
    return Photo(
        pixels=pixels,
        alpha=alpha,
        bit_depth=bit_depth,
        format=pil.format or "PNG",
        # A CMYK profile would mislabel the RGB pixels we write back, so it is not carried over.
        icc_profile=(pil.info.get("icc_profile") or None) if pil.mode != "CMYK" else None,
        exif=exif_bytes,
    )


def _quantize(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    scale, dtype = (65535.0, np.uint16) if bit_depth == 16 else (255.0, np.uint8)
    return np.clip(np.rint(pixels * scale), 0, scale).astype(dtype)


def _alpha_as(alpha: np.ndarray, bit_depth: int) -> np.ndarray:
    """The alpha channel at the output bit depth; unchanged when the depth matches."""
    if alpha.dtype == np.uint16 and bit_depth == 8:
        return (alpha.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if alpha.dtype == np.uint8 and bit_depth == 16:
        return alpha.astype(np.uint16) * 257
    return alpha


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _add_png_metadata(png: bytes, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    """Insert iCCP and eXIf chunks right after IHDR (OpenCV's PNG encoder writes neither)."""
    extra = b""
    if icc_profile:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        extra += _png_chunk(b"eXIf", body)
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png[:ihdr_end] + extra + png[ihdr_end:]


def encode_photo(photo: Photo, fmt: str, jpeg_quality: int = 95) -> bytes:
    """Encode a photo to bytes in ``fmt``, keeping bit depth, grayscale, alpha and metadata where the format can."""
    bit_depth = 16 if (photo.bit_depth == 16 and fmt in SIXTEEN_BIT_FORMATS) else 8
    values = _quantize(photo.pixels, bit_depth)
    alpha = photo.alpha if fmt in ALPHA_FORMATS else None
    if photo.alpha is not None and alpha is None:
        log.warning("%s cannot store transparency; the alpha channel is dropped", fmt)
    if bit_depth == 16:
        channels = [values[:, :, 0]] if photo.is_grayscale else [values[:, :, 2], values[:, :, 1], values[:, :, 0]]
        if alpha is not None:
            channels.append(_alpha_as(alpha, 16))
        array = channels[0] if len(channels) == 1 else np.dstack(channels)
        ok, encoded = cv2.imencode(".png" if fmt == "PNG" else ".tif", array)
        if not ok:
            raise ImageWriteError(f"OpenCV could not encode a 16-bit {fmt} image")
        if fmt == "PNG":
            return _add_png_metadata(encoded.tobytes(), photo.icc_profile, photo.exif)
        if photo.icc_profile or photo.exif:
            log.warning("16-bit TIFF output keeps pixels and bit depth but not the ICC profile/EXIF")
        return encoded.tobytes()

    if photo.is_grayscale:
        pil = Image.fromarray(values[:, :, 0], mode="L")
        if alpha is not None:
            pil = Image.merge("LA", (pil, Image.fromarray(_alpha_as(alpha, 8), mode="L")))
    else:
        pil = Image.fromarray(values, mode="RGB")
        if alpha is not None:
            pil = Image.merge("RGBA", (*pil.split(), Image.fromarray(_alpha_as(alpha, 8), mode="L")))
    options: dict[str, object] = {}
    if photo.icc_profile and fmt != "BMP":
        options["icc_profile"] = photo.icc_profile
    if photo.exif and fmt != "BMP":
        options["exif"] = photo.exif
    if fmt == "JPEG":
        options.update(quality=jpeg_quality, subsampling=0 if jpeg_quality >= 90 else 2)
    elif fmt == "WEBP":
        options.update(quality=jpeg_quality)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _file_mode() -> int:
    """Permissions of a new file under the current umask (mkstemp would make it private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent/old or complete, never partial."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:  # includes KeyboardInterrupt: never leave a partial file behind
        Path(temporary).unlink(missing_ok=True)
        raise


def write_photo(path: str | os.PathLike[str], photo: Photo, jpeg_quality: int = 95) -> None:
    """Atomically write ``photo`` to ``path``; the format follows the extension."""
    path = Path(path)
    fmt = format_for_path(path)
    try:
        data = encode_photo(photo, fmt, jpeg_quality=jpeg_quality)
        atomic_write_bytes(path, data)
    except ImageWriteError:
        raise
    except OSError as error:
        raise ImageWriteError(f"{path}: cannot write ({error.strerror or error})") from None


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 1|3) float -> (H, W, 3) float."""
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def to_luminance(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB -> (H, W, 1) Rec. 601 luma, the same weights OpenCV and Pillow use."""
    if pixels.shape[2] == 1:
        return pixels
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (pixels @ weights)[:, :, None].astype(np.float32)


def load_rgb(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convenience for training/evaluation: (H, W, 3) float32 RGB in [0, 1]."""
    return to_rgb(read_photo(path, max_pixels=max_pixels).pixels)


def save_rgb(path: str | os.PathLike[str], pixels: np.ndarray) -> None:
    """Convenience for generated images: write (H, W, 1|3) float in [0, 1] as 8-bit."""
    write_photo(path, Photo(pixels=np.ascontiguousarray(pixels, dtype=np.float32), format=format_for_path(Path(path))))
