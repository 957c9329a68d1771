"""The only module that reads or writes pixel files.

A :class:`Photo` carries float pixels for the networks plus everything needed to write the result
back faithfully: bit depth, grayscale-ness, the untouched alpha channel, ICC profile and EXIF.

Rules (see the tests in ``tests/test_imageio.py``):

* EXIF orientation is applied on load; on save EXIF is kept with orientation reset to 1.
* 16-bit PNG/TIFF in -> 16-bit out; grayscale in -> grayscale out; alpha passes through untouched.
* Writes are atomic (temporary file in the destination folder, then ``os.replace``).
* A JPEG remembers its own quality and chroma subsampling (:class:`JpegSettings`); by default
  (``jpeg_quality="auto"``) a JPEG is written back with them, so the output is about the input's size.
* Unreadable, empty, truncated or non-image files raise :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin, UnidentifiedImageError

from oldphoto.atomic import atomic_write_bytes
from oldphoto.errors import ConfigError, ImageReadError, ImageTooLargeError, ImageWriteError

log = logging.getLogger(__name__)

# We enforce our own, configurable decompression-bomb guard (see ``read_photo``); Pillow's global
# limit would otherwise reject large archival scans with a message that names no option.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 250_000_000
"""Default decompression-bomb guard: 250 megapixels (a 1200-dpi scan of a 10x12-inch print is ~170)."""

EXTENSION_FORMATS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
LOSSLESS_FORMATS = frozenset({"PNG", "TIFF", "BMP", "GIF"})
"""Sources whose pixels are stored exactly: written as WebP, they are written lossless unless a quality is given."""
ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})
MULTI_IMAGE_FORMATS = frozenset({"TIFF", "WEBP", "PNG", "GIF"})
"""Formats whose files can hold several images (multi-page TIFF, animated WebP and PNG), of which only the first is
read. Not JPEG: Pillow opens camera JPEGs with a preview or depth image as MPO with two frames."""
EXIF_ORIENTATION_TAG = 0x0112
TIFF_DESCRIPTIVE_TAGS = (0x010D, 0x010E, 0x010F, 0x0110, 0x0112, 0x011D, 0x0131, 0x0132, 0x013B, 0x013C, 0x8298)
"""Tags of a TIFF's first directory that describe the photo (document name, description, make, model, orientation,
page name, software, date, artist, host computer, copyright) and may be carried over (its XMP packet, tag 0x02BC,
travels as :attr:`Photo.xmp`; IPTC, which Pillow reads only in part, is left out). The rest of that directory lays out the file's own pixels (size, bits
per sample, photometric, strips): written back over the restored pixels, it would corrupt the output."""
EXIF_SUB_IFDS = (0x8769, 0x8825)
"""The EXIF and GPS directories, carried over whole."""
TIFF_X_RESOLUTION = 0x011A
TIFF_SOFTWARE_TAG = 0x0131
TIFF_PLANAR_TAG = 0x011C
TIFF_WIDTH_TAG = 0x0100
TIFF_LENGTH_TAG = 0x0101
TIFF_PHOTOMETRIC_TAG = 0x0106
TIFF_MIN_IS_WHITE = 0
TIFF_SEPARATED = 5
TIFF_EXTRA_SAMPLES_TAG = 0x0152
TIFF_ASSOCIATED_ALPHA = 1
TIFF_BITS_TAG = 0x0102
TIFF_SAMPLE_FORMAT_TAG = 0x0153
TIFF_XMP_TAG = 0x02BC
MAX_JPEG_SEGMENT = 65_000
"""A JPEG's EXIF or XMP segment holds at most 64 KB: larger ones (an editor's long history) are left out, said."""
PNG_XMP_KEY = "XML:com.adobe.xmp"
"""The iTXt keyword under which PNG files carry their XMP packet."""
JPEG_COMMENT_KEY = "Comment"
"""A JPEG's comment (COM segment) in :attr:`Photo.text`: the PNG keyword for the same thing."""
TIFF_DESCRIPTION_TAG = 0x010E
"""A TIFF's ImageDescription: where a TIFF output keeps a PNG's or JPEG's captions."""
MAX_DPI = 100_000.0

JpegQuality = int | Literal["auto"]
"""A JPEG quality option: a whole number 1..100, or ``"auto"`` (the input's own settings)."""

DEFAULT_JPEG_QUALITY = 95
"""Quality for JPEGs whose source quality is unknown (a PNG input written as JPEG), with 4:4:4 chroma."""

SUBSAMPLING_444, SUBSAMPLING_422, SUBSAMPLING_420 = 0, 1, 2
"""Pillow's ``subsampling`` codes (as returned by ``JpegImagePlugin.get_sampling``)."""

# The example tables of the JPEG standard (ITU-T T.81 Annex K), in natural (row-major) order, which
# libjpeg scales by quality; Pillow's ``quantization`` dict is in the same order.
_IJG_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_IJG_CHROMINANCE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip


@dataclass(frozen=True)
class JpegSettings:
    """How a JPEG file was compressed, as far as it can be read back from the file.

    Attributes:
        quality: estimated libjpeg quality, 1 (worst) .. 100 (best).
        subsampling: chroma subsampling as Pillow's code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0;
            None when unknown or not applicable (grayscale or CMYK JPEG, other layouts such as 4:1:1).
    """

    quality: int
    subsampling: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality {self.quality} is outside 1..100")
        if self.subsampling not in (None, SUBSAMPLING_444, SUBSAMPLING_422, SUBSAMPLING_420):
            raise ValueError(f"unknown JPEG subsampling code {self.subsampling}")


DEFAULT_JPEG_SETTINGS = JpegSettings(DEFAULT_JPEG_QUALITY, SUBSAMPLING_444)
"""What ``jpeg_quality="auto"`` uses when the photo carries no :class:`JpegSettings`."""


def _ijg_tables(quality: int) -> np.ndarray:
    """The (2, 64) luminance and chrominance tables libjpeg writes for ``quality`` 1..100 (baseline)."""
    # libjpeg's jpeg_quality_scaling, then jpeg_add_quant_table with force_baseline (Pillow's setting).
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    base = np.array([_IJG_LUMINANCE, _IJG_CHROMINANCE], dtype=np.int64)
    return np.clip((base * scale + 50) // 100, 1, 255)


_IJG_TABLES = np.stack([_ijg_tables(quality) for quality in range(1, 101)])  # (100, 2, 64), index = quality - 1


def estimate_jpeg_quality(quantization: Mapping[int, Sequence[int]]) -> int | None:
    """Estimate the libjpeg quality (1..100) that produced a JPEG's quantization tables.

    Args:
        quantization: Pillow's ``image.quantization``: table id -> 64 values in natural order. Table 0 is
            compared with the standard luminance table, table 1 (if present) with the chrominance table.

    Returns:
        The quality whose scaled standard tables are closest (least total absolute difference; the higher
        quality on a tie, so as not to lose detail), or None when there is no table 0. Files from encoders
        with their own tables (some cameras, Photoshop) get the nearest libjpeg equivalent.
    """
    tables = [quantization.get(index) for index in (0, 1)]
    if tables[0] is None or len(tables[0]) != 64:
        return None
    error = np.zeros(len(_IJG_TABLES), dtype=np.int64)
    for index, table in enumerate(tables):
        if table is not None and len(table) == 64:
            error += np.abs(_IJG_TABLES[:, index] - np.asarray(table, dtype=np.int64)).sum(axis=1)
    best = len(error) - 1 - int(np.argmin(error[::-1]))  # argmin on the reversed array: highest quality wins ties
    if error[best]:
        log.debug("JPEG tables are not libjpeg's standard ones; nearest quality %d (difference %d)", best + 1, error[best])
    return best + 1


def _jpeg_settings(pil: Image.Image) -> JpegSettings | None:
    """The source JPEG's quality and subsampling, or None for non-JPEG images (MPO counts as JPEG)."""
    if not isinstance(pil, JpegImagePlugin.JpegImageFile):
        return None
    quality = estimate_jpeg_quality(getattr(pil, "quantization", None) or {})
    if quality is None:
        return None
    sampling = JpegImagePlugin.get_sampling(pil)
    return JpegSettings(quality, sampling if sampling in (SUBSAMPLING_444, SUBSAMPLING_422, SUBSAMPLING_420) else None)


def parse_jpeg_quality(value: object) -> JpegQuality:
    """Validate a JPEG quality option: ``"auto"`` (any case), or a whole number 1..100 (int or digit string).

    Raises:
        ConfigError: anything else, with a message that says which values are allowed.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if text.isdigit():
            value = int(text)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 1 <= value <= 100:
        return int(value)
    raise ConfigError(
        f"JPEG quality {value!r} is not allowed: use a whole number from 1 (smallest file) to 100 (best), "
        "or 'auto' to keep each input's own quality (95 for non-JPEG inputs)"
    )


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
        jpeg: the source JPEG's estimated quality and chroma subsampling, or None for other formats.
        dpi: the scan's resolution (horizontal, vertical dots per inch) as the file states it, or None.
        xmp: the XMP packet (captions, keywords, rights an archive wrote), or None.
        text: a PNG's text chunks (keyword -> text: a caption, a description); a JPEG's comment (its COM segment,
            where scanners and editors put captions) as ``"Comment"``, which PNG readers know by that keyword and
            which a JPEG output gets back as its comment; empty for other formats.
        webp_lossless: the source is a lossless WebP (written back lossless, as a PNG is).
        png_colour: a PNG's colour-space chunks (``gAMA``, ``cHRM``, ``sRGB``) as (type, body) pairs, in file order:
            how the file's levels are to be shown when it has no ICC profile (a gamma-1.8 scan looks lighter or darker
            without them); written back into a PNG output, said when another format cannot hold them.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    format: str = "PNG"
    icc_profile: bytes | None = None
    exif: bytes | None = None
    jpeg: JpegSettings | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    text: Mapping[str, str] = field(default_factory=dict)
    webp_lossless: bool = False
    png_colour: tuple[tuple[bytes, bytes], ...] = ()

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


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The image's (width, height) as stored (before any EXIF turn), from its header alone (no pixels decoded);
    None when the header cannot be read (the job that reads the file then says why)."""
    return header_sizes(path)[0]


def header_sizes(path: str | os.PathLike[str]) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """The image's (width, height) as stored, and once turned upright by its EXIF orientation (as
    :func:`read_photo` returns it), from one read of its header; each None when it cannot be read (the second also
    when only the orientation cannot)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.format == "TIFF":
                # Pillow reports a TIFF's size already turned by its orientation (and turns the pixels on load): the
                # stored size is in its tags. Turned twice, a scan's own mask was predicted to be the wrong size.
                width, height = image.tag_v2.get(TIFF_WIDTH_TAG, width), image.tag_v2.get(TIFF_LENGTH_TAG, height)
            try:
                orientation = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
            except Exception:  # noqa: BLE001 - an orientation of the wrong type, a broken EXIF block
                return (width, height), None
    except Exception:  # noqa: BLE001 - any unreadable file
        return None, None
    return (width, height), ((height, width) if orientation in (5, 6, 7, 8) else (width, height))


def upright_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The image's (width, height) once turned upright by its EXIF orientation (:func:`header_sizes`)."""
    return header_sizes(path)[1]


def image_megapixels(path: str | os.PathLike[str]) -> float:
    """The photo's size in megapixels from its header alone, for progress by work done; 0 when the header cannot be
    read (the restore itself then reports the problem)."""
    size = image_size(path)
    return 0.0 if size is None else size[0] * size[1] / 1e6


def png_text(path: str | os.PathLike[str]) -> Mapping[str, str]:
    """A PNG's text chunks (keyword -> text) from its header alone; empty for another format or an unreadable file."""
    try:
        with Image.open(path) as image:
            return dict(image.text) if image.format == "PNG" else {}
    except Exception:  # noqa: BLE001 - any unreadable file
        return {}


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


def _decode_16bit(data: bytes, path: Path, planar: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a 16-bit PNG/TIFF with OpenCV (Pillow cannot hold 16-bit RGB), or a TIFF that stores each colour in a
    plane of its own (``planar``) with tifffile: OpenCV decodes those into scrambled pixels without an error.
    Returns (color, alpha)."""
    if planar:
        return _decode_planar_tiff(data, path)
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        if error.code == cv2.Error.StsNoMem:  # OpenCV's own out of memory: the file is fine
            raise ImageTooLargeError(f"{path}: not enough memory to decode this 16-bit image; free memory, or downscale it first") from None
        if "CV_IO_MAX_IMAGE_PIXELS" in str(error):
            # OpenCV's own cap (2^30 pixels unless set), read once when it loads; --max-pixels cannot lift it.
            raise ImageTooLargeError(
                f"{path}: this 16-bit image is over OpenCV's decoding limit; start oldphoto with the environment "
                "variable OPENCV_IO_MAX_IMAGE_PIXELS set above its pixel count, or downscale it first"
            ) from None
        raise
    if array is None:
        raise ImageReadError(f"{path}: could not decode the 16-bit image data (file damaged?)")
    if array.ndim == 2:
        return array[:, :, None], None
    if array.shape[2] == 4:
        rgb, alpha = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)[:, :, :3], array[:, :, 3].copy()
        # OpenCV expands a grey+alpha PNG to four channels: equal colour channels are the grey they were.
        if (rgb[:, :, :1] == rgb).all():
            return rgb[:, :, :1].copy(), alpha
        return rgb, alpha
    if array.shape[2] == 2:  # gray + alpha
        return array[:, :, :1], array[:, :, 1].copy()
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB), None


def _cut_short(path: Path, error: Exception) -> str:
    """What to say of a file whose data ends early."""
    return f"{path}: the file is cut short ({error}): copy it again from its source, or, if a viewer shows it whole, open it there and save it again"


def _tiff_conventions(pil: Image.Image, color: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit TIFF's samples as a photo means them (Pillow applies both conventions to the 8-bit ones itself; the
    16-bit decoders keep the raw samples): a grey scan stored min-is-white (0 = white, photometric 0) comes back
    as the positive it is, not as its negative, and colour stored premultiplied by its alpha (associated alpha,
    extra sample 1) comes back divided by it, as the straight alpha every output is written with."""
    if pil.tag_v2.get(TIFF_PHOTOMETRIC_TAG) == TIFF_MIN_IS_WHITE and color.shape[2] == 1:
        color = np.iinfo(np.uint16).max - color
    extra = pil.tag_v2.get(TIFF_EXTRA_SAMPLES_TAG, ())
    extra = (extra,) if isinstance(extra, int) else tuple(extra)
    if alpha is not None and extra[:1] == (TIFF_ASSOCIATED_ALPHA,):
        opacity = alpha.astype(np.float32)[:, :, None]
        straight = np.where(opacity > 0, color.astype(np.float32) * np.float32(65535) / np.maximum(opacity, 1), 0)
        color = np.clip(np.rint(straight), 0, 65535).astype(np.uint16)
    return color, alpha


def _decode_planar_tiff(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit TIFF with one plane per channel, as (H, W, 1|3) uint16 and the alpha plane, if any."""
    import tifffile  # here, not at the top: 0.1 s of every command's start, for a rare file

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages[0]
            planes = page.asarray()
            extra = len(page.extrasamples)
    except Exception as error:  # noqa: BLE001 - tifffile raises several types, e.g. for compressions it cannot decode
        if "failed to read" in str(error):  # tifffile's short read: the file is cut short, not in a layout it refuses
            raise ImageReadError(_cut_short(path, error)) from None
        raise ImageReadError(
            f"{path}: a 16-bit TIFF with its colours in separate planes that cannot be decoded ({error}); "
            "save it again with the colours interleaved (\"contiguous\"/\"chunky\") or uncompressed"
        ) from None
    array = np.moveaxis(planes, 0, 2) if planes.ndim == 3 else planes[:, :, None]
    colours = array.shape[2] - extra
    alpha = array[:, :, colours].copy() if extra else None
    return np.ascontiguousarray(array[:, :, :colours] if colours in (1, 3) else array[:, :, :1]), alpha


def _decode_8bit(pil: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode any 8-bit Pillow mode to (H, W, 1|3) uint8 plus the alpha channel, if any. Equal R, G and B come back
    as grey, unless the file has an RGB colour profile: that profile describes the grey too (a gamma-1.8 scan shows
    level 128 as 146), and written as grey the photo could not carry it."""
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
    rgb_profile = (pil.info.get("icc_profile") or b"")[16:20] == b"RGB "
    if color.size and int(spread.max()) <= 1 and not rgb_profile:
        return np.asarray(pil.convert("L"))[:, :, None], alpha
    return color, alpha


def _megapixels(pixels: int) -> str:
    """A pixel count in megapixels, with as many decimals as it takes not to read 0 (0.058, 2.5, 178)."""
    value = pixels / 1e6
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _unreadable_tiff(data: bytes) -> str:
    """Why a TIFF cannot be read, naming its layout as its first page's tags state it (read by tifffile), and what to
    save it as instead."""
    import tifffile  # here, not at the top: 0.1 s of every command's start, for a rare file

    what = "a TIFF in a layout oldphoto cannot read"
    instead = "save it as an 8- or 16-bit unsigned integer grey or RGB(A) TIFF, or as a 16-bit PNG"
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages.first
            kind = {1: "unsigned integer", 2: "signed integer", 3: "floating-point"}.get(int(page.sampleformat), "other")
            what = (
                f"a TIFF of {page.bitspersample}-bit {kind} samples, {page.samplesperpixel} per pixel "
                f"({page.photometric.name.lower()}), which oldphoto cannot read"
            )
            # The general advice named the very layout of two files it refused: say what differs.
            if page.photometric.name == "SEPARATED":
                instead = "it is CMYK: convert it to RGB (8-bit CMYK files are read, as RGB)"
            elif page.photometric.name in ("MINISBLACK", "MINISWHITE") and page.samplesperpixel == 2 and page.bitspersample == 16:
                instead = "16-bit grey with an alpha channel is read from PNG, not TIFF: save it as a 16-bit PNG, or as an RGBA TIFF"
            elif int(page.planarconfig) == 2:
                instead = "save it again with its colours interleaved (contiguous, as most programs write them)"
            elif int(page.sampleformat) == 1 and page.bitspersample in (8, 16) and page.samplesperpixel in (1, 3, 4):
                # The layout is one oldphoto reads; the image library cannot open this variant of it.
                order = "big-endian, " if tiff.byteorder == ">" else ""
                instead = (
                    f"the image library opens this layout but not this variant of it ({order}{page.photometric.name.lower()}): "
                    "save it again, e.g. little-endian, min-is-black grey or RGB"
                )
    except Exception:  # noqa: BLE001 - a damaged header: the general message
        pass
    return f"{what}; {instead}"


def read_photo(
    path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS, too_large_hint: str = "downscale it first"
) -> Photo:
    """Read an image file into a :class:`Photo`.

    Pillow's warnings about the file (corrupt EXIF data, a palette's transparency) are logged as this module's
    warnings, naming the file: printed by Python's warning machinery, they reached the terminal even with
    ``--quiet`` and did not say which photo of a batch they were about.

    Args:
        path: JPEG, PNG, TIFF, WebP or BMP file.
        max_pixels: decompression-bomb guard; ``None`` or 0 disables it.
        too_large_hint: what the error over ``max_pixels`` advises (a command with a limit option names it).

    Raises:
        ImageReadError: missing, empty, truncated or non-image file.
        ImageTooLargeError: more pixels than ``max_pixels``.
    """
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        photo = _read_photo(path, max_pixels, too_large_hint)
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        log.warning("%s: %s", path, message)
    return photo


def _read_photo(path: Path, max_pixels: int | None, too_large_hint: str) -> Photo:
    """:func:`read_photo`, Pillow's warnings left to the caller."""
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
        if data[:4] in (b"II*\x00", b"MM\x00*"):  # a TIFF, in a layout Pillow cannot open (floating-point colour, ...)
            raise ImageReadError(f"{path}: {_unreadable_tiff(data)}") from None
        raise ImageReadError(f"{path}: not an image, or a format oldphoto cannot read") from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for corrupt headers
        raise ImageReadError(f"{path}: cannot decode image header ({error})") from None
    if pil.format == "TIFF" and pil.tag_v2.get(TIFF_PHOTOMETRIC_TAG) == TIFF_SEPARATED and _source_bit_depth(pil, data) == 16:
        # OpenCV cannot decode 16-bit CMYK: it printed its own errors and the file was called damaged.
        raise ImageReadError(f"{path}: {_unreadable_tiff(data)}")
    if pil.format == "TIFF" and pil.mode != "F":
        # Pillow opens signed and 32-bit integer TIFFs, but the decoders below assume unsigned 8- or 16-bit samples:
        # such a file came out nearly white, "restored", without an error.
        formats, bits = pil.tag_v2.get(TIFF_SAMPLE_FORMAT_TAG, 1), pil.tag_v2.get(TIFF_BITS_TAG, 8)
        formats, bits = (formats if isinstance(formats, tuple) else (formats,)), (bits if isinstance(bits, tuple) else (bits,))
        if any(value == 2 for value in formats) or any(value > 16 for value in bits):
            raise ImageReadError(f"{path}: {_unreadable_tiff(data)}")
    width, height = pil.size
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{path}: {width}x{height} = {_megapixels(width * height)} megapixels exceeds the "
            f"{_megapixels(max_pixels)}-megapixel safety limit (decompression-bomb guard); {too_large_hint}"
        )
    try:
        bit_depth = _source_bit_depth(pil, data)
        planar = pil.format == "TIFF" and pil.tag_v2.get(TIFF_PLANAR_TAG, 1) == 2
        if not (planar and bit_depth == 16):  # decoded by tifffile below; Pillow cannot load some (premultiplied colour)
            pil.load()
        exif = pil.getexif()
        orientation = int(exif.get(EXIF_ORIENTATION_TAG, 1) or 1)
        jpeg = _jpeg_settings(pil)
        if pil.mode == "F":
            color, alpha, scale = _decode_float(pil, path), None, 1.0
            bit_depth = 16  # written back at 16 bits, the nearest the output formats hold
        elif bit_depth == 16 and pil.format in SIXTEEN_BIT_FORMATS:
            color, alpha = _decode_16bit(data, path, planar=planar)
            scale = 65535.0
            if color.dtype != np.uint16:  # OpenCV disagreed with the header: trust the decoded data
                bit_depth, scale = 8, 255.0
            elif pil.format == "TIFF":
                color, alpha = _tiff_conventions(pil, color, alpha)
        else:
            bit_depth = 8
            color, alpha = _decode_8bit(pil)
            scale = 255.0
    except ImageReadError:
        raise
    except MemoryError:
        # Not a damaged file: saying so would send the user after a scan that is fine.
        raise ImageTooLargeError(
            f"{path}: not enough memory to decode {width}x{height} = {_megapixels(width * height)} megapixels; "
            "free memory, or downscale it first"
        ) from None
    except Exception as error:  # noqa: BLE001 - truncated data surfaces as OSError, SyntaxError, ...
        if "truncated" in str(error):
            # A viewer shows what is there (even a JPEG missing only its end marker): say what to do, not just "damaged".
            raise ImageReadError(_cut_short(path, error)) from None
        if pil.format == "TIFF" and "unknown raw mode" in str(error):  # a layout Pillow opens but cannot decode
            raise ImageReadError(f"{path}: {_unreadable_tiff(data)}") from None
        raise ImageReadError(f"{path}: image data is damaged or truncated ({error})") from None

    pages = int(getattr(pil, "n_frames", 1) or 1)
    if pages > 1 and pil.format in MULTI_IMAGE_FORMATS:
        # Nothing lost unseen: the restored file will hold the first image only.
        log.warning(
            "%s holds %d images (pages or frames); only the first is read (and a restored output holds only that "
            "one): split the file into one image per file to use the others",
            path,
            pages,
        )
    if pil.format == "PNG" and pil.mode not in ("P", "PA", "LA", "RGBA") and "transparency" in pil.info:
        # A colour key (tRNS: "this grey or colour is transparent") cannot survive restoration, which changes levels.
        log.warning("%s marks one colour as transparent (a PNG colour key): it is read as opaque, and so is an output", path)
    if pil.mode == "CMYK":
        # Said, not done unseen: a print shop's CMYK file comes back as RGB, and its CMYK profile cannot describe that.
        log.warning("%s is CMYK: it is read as RGB (a restored output is written as RGB, without the CMYK colour profile)", path)
    color = apply_orientation(color, orientation)
    if alpha is not None:
        alpha = np.ascontiguousarray(apply_orientation(alpha, orientation))
    pixels = np.ascontiguousarray(color, dtype=np.float32) / np.float32(scale)
    if pil.format == "TIFF":
        exif = _descriptive_tiff_tags(exif)
    exif_bytes = None
    if len(exif):
        exif[EXIF_ORIENTATION_TAG] = 1
        exif_bytes = exif.tobytes()
    # Pillow reports 1 x 1 dpi for a TIFF that states no resolution at all: only a stated one is kept.
    dpi = pil.info.get("dpi") if pil.format != "TIFF" or TIFF_X_RESOLUTION in getattr(pil, "tag_v2", {}) else None
    return Photo(
        pixels=pixels,
        alpha=alpha,
        bit_depth=bit_depth,
        format=pil.format or "PNG",
        # A CMYK profile would mislabel the RGB pixels we write back, so it is not carried over.
        icc_profile=(pil.info.get("icc_profile") or None) if pil.mode != "CMYK" else None,
        exif=exif_bytes,
        jpeg=jpeg,
        dpi=_usable_dpi(dpi),
        xmp=_xmp_of(pil, orientation),
        text=_text_of(pil),
        webp_lossless=pil.format == "WEBP" and _webp_is_lossless(data),
        png_colour=_png_colour_chunks(data) if pil.format == "PNG" else (),
    )


def _text_of(pil: Image.Image) -> dict[str, str]:
    """The captions :attr:`Photo.text` keeps: a PNG's text chunks (its XMP packet apart), a JPEG's comment."""
    if pil.format == "PNG":
        return {key: value for key, value in getattr(pil, "text", {}).items() if key != PNG_XMP_KEY}
    # A phone's or camera's JPEG with a preview or depth image opens as MPO: its comment is a JPEG's comment all the same.
    comment = pil.info.get("comment") if pil.format in ("JPEG", "MPO") else None
    if comment:
        text = comment.decode("utf-8", errors="replace") if isinstance(comment, bytes) else str(comment)
        return {JPEG_COMMENT_KEY: text.rstrip("\x00")}
    return {}


PNG_COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"sRGB")
# gAMA of 1/2.2 (45455 in units of 1e-5) is how many encoders label ordinary sRGB-like files: nothing to warn about.
PNG_PLAIN_GAMMA = range(45000, 46000)


def _png_colour_chunks(data: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The ``gAMA``, ``cHRM`` and ``sRGB`` chunks of PNG ``data`` (they come before the image data), CRC-checked."""
    found, offset = [], 8
    while offset + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if kind in (b"IDAT", b"IEND") or len(body) < length:
            break
        # The chunk as stored equals the chunk made again from its type and body only when its CRC is right.
        if kind in PNG_COLOUR_CHUNKS and data[offset : offset + 12 + length] == _png_chunk(kind, body):
            found.append((kind, body))
        offset += 12 + length
    return tuple(found)


SRGB_CHROMATICITIES = (31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
"""sRGB's white point and primaries as a cHRM chunk states them (units of 1e-5), which many encoders write beside a
gamma of 1/2.2: they say nothing a viewer would not assume."""


def _colour_chunks_matter(photo: Photo, profile_kept: bool) -> bool:
    """Whether the photo's PNG colour chunks say something an output without them loses: a gamma other than about
    1/2.2 or primaries other than sRGB's, where the output keeps no ICC profile (which viewers prefer) and no ``sRGB``
    chunk says it all."""
    if profile_kept or not photo.png_colour or any(kind == b"sRGB" for kind, _ in photo.png_colour):
        return False
    for kind, body in photo.png_colour:
        if kind == b"gAMA" and len(body) == 4 and struct.unpack(">I", body)[0] not in PNG_PLAIN_GAMMA:
            return True
        if kind == b"cHRM" and len(body) == 32 and any(abs(a - b) > 100 for a, b in zip(struct.unpack(">8I", body), SRGB_CHROMATICITIES)):
            return True
    return False


def _webp_is_lossless(data: bytes) -> bool:
    """Whether a WebP file's image is coded lossless (a ``VP8L`` chunk) rather than lossy (``VP8 ``): its RIFF chunks
    are walked up to the first image chunk (an extended file puts ICC, EXIF or animation chunks first)."""
    offset = 12
    while offset + 8 <= len(data):
        fourcc, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        if fourcc in (b"VP8L", b"VP8 "):
            return fourcc == b"VP8L"
        if fourcc == b"ANMF":  # an animation frame holds its image chunk after a 16-byte header
            offset += 8 + 16
            continue
        offset += 8 + size + (size & 1)
    return False


def _xmp_of(pil: Image.Image, orientation: int) -> bytes | None:
    """The XMP packet of a JPEG, WebP, PNG or TIFF as bytes, its orientation set to 1 when the pixels were turned
    upright by ``orientation`` (else readers that trust XMP would turn them again)."""
    if pil.format == "TIFF":
        packet = getattr(pil, "tag_v2", {}).get(TIFF_XMP_TAG)
    elif pil.format == "PNG":
        packet = pil.info.get("xmp") or getattr(pil, "text", {}).get(PNG_XMP_KEY)
        if isinstance(packet, str) and not isinstance(packet, PngImagePlugin.iTXt):
            packet = packet.encode("latin-1", errors="replace")  # a tEXt/zTXt chunk: Latin-1 by the PNG standard
    else:
        packet = pil.info.get("xmp")
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    if not isinstance(packet, bytes) or not packet:
        return None
    if orientation != 1:
        packet = re.sub(rb'(tiff:Orientation\s*=\s*["\'])\d(["\'])', rb"\g<1>1\g<2>", packet)
        packet = re.sub(rb"(<tiff:Orientation>)\d(</tiff:Orientation>)", rb"\g<1>1\g<2>", packet)
    return packet


def _usable_dpi(dpi: object) -> tuple[float, float] | None:
    """The file's (x, y) resolution when it states a plausible one; None for none, for the 1 x 1 of a header that
    gives only the pixels' aspect (JFIF's default), and for values no scan has (over 100,000 dpi)."""
    try:
        x, y = (float(value) for value in dpi)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (x, y) if 1 < x <= MAX_DPI and 1 < y <= MAX_DPI else None


def _descriptive_tiff_tags(tags: Image.Exif) -> Image.Exif:
    """Of a TIFF's first directory, the tags that describe the photo, with its EXIF and GPS directories (see
    ``TIFF_DESCRIPTIVE_TAGS``)."""
    kept = Image.Exif()
    for tag in TIFF_DESCRIPTIVE_TAGS:
        if tag in tags:
            kept[tag] = tags[tag]
    for tag in EXIF_SUB_IFDS:
        directory = tags.get_ifd(tag)
        if directory:
            kept[tag] = dict(directory)
    return kept


def _decode_float(pil: Image.Image, path: Path) -> np.ndarray:
    """A floating-point (mode F) grayscale image as (H, W, 1) float32 in [0, 1].

    Raises:
        ImageReadError: values outside 0..1 (no scale to read them by).
    """
    values = np.asarray(pil, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.all() or (values.size and (values.min() < -1e-3 or values.max() > 1.0 + 1e-3)):
        low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
        raise ImageReadError(
            f"{path}: floating-point pixels from {low:g} to {high:g}{'' if finite.all() else ' (with NaN or infinity)'}; "
            "oldphoto reads floating-point images with values from 0 to 1 only: convert it to 8 or 16 bits"
        )
    return np.clip(values, 0.0, 1.0)[:, :, None]


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


def _png_text_items(photo: Photo) -> dict[str, str]:
    """The photo's PNG text chunks, with its XMP packet under the keyword PNG readers look for."""
    items = dict(photo.text)
    if photo.xmp:
        items[PNG_XMP_KEY] = photo.xmp.decode("utf-8", errors="replace")
    return items


def _png_text(photo: Photo) -> PngImagePlugin.PngInfo:
    """:func:`_png_text_items` as Pillow writes them (international text: any language)."""
    info = PngImagePlugin.PngInfo()
    for key, value in _png_text_items(photo).items():
        info.add_itxt(key, value)
    return info


def _grey_alpha_png_16(grey: np.ndarray, alpha: np.ndarray) -> bytes:
    """A PNG (colour type 4, 16 bits) of two (H, W) uint16 planes: every row unfiltered, big-endian samples."""
    height, width = grey.shape
    samples = np.stack([grey, alpha], axis=2).astype(">u2").view(np.uint8).reshape(height, width * 4)
    rows = np.concatenate([np.zeros((height, 1), np.uint8), samples], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + _png_chunk(b"IEND", b"")
    )


def _add_png_metadata(
    png: bytes,
    icc_profile: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None = None,
    text: Mapping[str, str] | None = None,
    colour: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """Insert gAMA/cHRM/sRGB, iTXt, pHYs, iCCP and eXIf chunks right after IHDR (OpenCV's PNG encoder writes none of
    them, Pillow's no gAMA, cHRM or sRGB)."""
    extra = b"".join(_png_chunk(kind, body) for kind, body in colour)
    for key, value in (text or {}).items():
        # iTXt: keyword, no compression, no language tag or translated keyword, then UTF-8 text.
        extra += _png_chunk(b"iTXt", key.encode("latin-1", errors="replace")[:79] + b"\x00\x00\x00\x00\x00" + value.encode("utf-8"))
    if dpi:
        per_metre = [round(value / 0.0254) for value in dpi]
        extra += _png_chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1))
    if icc_profile:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        extra += _png_chunk(b"eXIf", body)
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png[:ihdr_end] + extra + png[ihdr_end:]


def jpeg_options(photo: Photo, jpeg_quality: JpegQuality = "auto") -> JpegSettings:
    """The quality and subsampling a JPEG of ``photo`` is written with.

    ``"auto"``: the photo's own :class:`JpegSettings` (unknown subsampling -> 4:4:4), else 95 with 4:4:4.
    A number 1..100: that quality, 4:4:4 from 90 up and 4:2:0 below.

    Raises:
        ConfigError: ``jpeg_quality`` is neither ``"auto"`` nor 1..100.
    """
    quality = parse_jpeg_quality(jpeg_quality)
    if quality == "auto":
        own = photo.jpeg or DEFAULT_JPEG_SETTINGS
        # 4:4:4 when the source layout is unknown: never lose chroma detail we cannot account for.
        return JpegSettings(own.quality, SUBSAMPLING_444 if own.subsampling is None else own.subsampling)
    return JpegSettings(quality, SUBSAMPLING_444 if quality >= 90 else SUBSAMPLING_420)


MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383}
"""The longest side each format can hold (libjpeg's and libwebp's limits); the others hold more than fits memory."""


def format_size_problem(fmt: str, width: int, height: int) -> str | None:
    """Why a ``width`` x ``height`` image cannot be written as ``fmt`` (None: it can), found before any work: the
    encoder would fail only after the photo was restored, and not always with a message that says why."""
    limit = MAX_SIDE.get(fmt)
    if limit is None or max(width, height) <= limit:
        return None
    return f"{width}x{height} is too large for {fmt}, which holds at most {limit:,} pixels a side; write it as PNG or TIFF"


def encode_photo(photo: Photo, fmt: str, jpeg_quality: JpegQuality = "auto", name: str = "") -> bytes:
    """Encode a photo to bytes in ``fmt``, keeping bit depth, grayscale, alpha and metadata where the format can.

    Args:
        jpeg_quality: for JPEG, see :func:`jpeg_options`. For WebP, a number 1..100 is its quality and
            ``"auto"`` means lossless for a lossless source (PNG, TIFF, BMP, GIF, a lossless WebP) and 95 for others (a
            JPEG's quality does not carry over to WebP's different scale).
        name: the file it is for, named in the warnings about what the format cannot keep.

    Raises:
        ConfigError: ``jpeg_quality`` is neither ``"auto"`` nor 1..100 (checked for every format).
        ImageWriteError: the photo is larger than ``fmt`` can hold (:func:`format_size_problem`).
    """
    jpeg_quality = parse_jpeg_quality(jpeg_quality)
    too_large = format_size_problem(fmt, photo.pixels.shape[1], photo.pixels.shape[0])
    if too_large is not None:
        raise ImageWriteError(f"{name or 'the image'}: {too_large}")
    jpeg = jpeg_options(photo, jpeg_quality)
    named = f"{name}: " if name else ""
    tiff_caption = _tiff_caption(photo, fmt, named)
    bit_depth = 16 if (photo.bit_depth == 16 and fmt in SIXTEEN_BIT_FORMATS) else 8
    values = _quantize(photo.pixels, bit_depth)
    alpha = photo.alpha if fmt in ALPHA_FORMATS else None
    if photo.alpha is not None and alpha is None:
        log.warning("%s%s cannot store transparency; the alpha channel is dropped", named, fmt)
    if photo.bit_depth == 16 and bit_depth == 8:
        log.warning("%s%s holds 8 bits per channel; the 16-bit input's finer levels are rounded (PNG or TIFF keep them)", named, fmt)
    # The profile a JPEG, TIFF or WebP keeps says how to show the levels; BMP keeps none, and a grey photo's RGB
    # profile is dropped.
    profile_kept = fmt != "BMP" and _profile_for(photo.icc_profile, photo.is_grayscale and fmt != "WEBP") is not None
    if fmt != "PNG" and _colour_chunks_matter(photo, profile_kept):
        log.warning(
            "%sthe PNG's gamma / chromaticity chunks (how its levels are to be shown) cannot be written to %s: viewers "
            "that honoured them may show the output lighter or darker than the input (a PNG output keeps them)",
            named,
            fmt,
        )
    if bit_depth == 16 and fmt == "TIFF":
        return _tiff_16bit(values, alpha, photo, named, tiff_caption)
    if bit_depth == 16:
        channels = [values[:, :, 0]] if photo.is_grayscale else [values[:, :, 2], values[:, :, 1], values[:, :, 0]]
        if alpha is not None:
            channels.append(_alpha_as(alpha, 16))
        if len(channels) == 2:
            # OpenCV writes no two-channel PNG: grey + alpha as the PNG format's own 16-bit grey-alpha type.
            encoded = _grey_alpha_png_16(*channels)
        else:
            array = channels[0] if len(channels) == 1 else np.dstack(channels)
            ok, buffer = cv2.imencode(".png", array)
            if not ok:
                raise ImageWriteError("OpenCV could not encode a 16-bit PNG image")
            encoded = buffer.tobytes()
        profile = _profile_for(photo.icc_profile, photo.is_grayscale)
        return _add_png_metadata(encoded, profile, photo.exif, photo.dpi, _png_text_items(photo), photo.png_colour)

    if photo.is_grayscale:
        pil = Image.fromarray(values[:, :, 0], mode="L")
        if alpha is not None:
            pil = Image.merge("LA", (pil, Image.fromarray(_alpha_as(alpha, 8), mode="L")))
    else:
        pil = Image.fromarray(values, mode="RGB")
        if alpha is not None:
            pil = Image.merge("RGBA", (*pil.split(), Image.fromarray(_alpha_as(alpha, 8), mode="L")))
    options: dict[str, object] = {}
    # WebP has no grey mode (Pillow writes grey pixels as RGB), so a grey photo's GRAY profile cannot describe them.
    icc_profile = _profile_for(photo.icc_profile, photo.is_grayscale and fmt != "WEBP")
    if photo.icc_profile and icc_profile is None and photo.is_grayscale and fmt == "WEBP":
        log.warning("%sWebP stores grey as RGB, which the photo's grey colour profile cannot describe: the profile is left out (PNG, JPEG or TIFF keep it)", named)
    if icc_profile and fmt != "BMP":
        options["icc_profile"] = icc_profile
    exif = photo.exif
    if fmt == "TIFF" and photo.xmp:
        exif = _with_tag(exif, TIFF_XMP_TAG, photo.xmp)
    if tiff_caption:
        # As bytes in tiffinfo: Pillow writes a str tag (and any tag of the exif option) as ASCII, every accent a "?";
        # UTF-8, as most software reads TIFF text.
        options["tiffinfo"] = {TIFF_DESCRIPTION_TAG: tiff_caption.encode("utf-8")}
    if exif and fmt == "JPEG" and len(exif) > MAX_JPEG_SEGMENT:
        log.warning("%sthe EXIF block (%d bytes) is too large for a JPEG and is left out (PNG or TIFF keep it)", named, len(exif))
        exif = None
    if exif and fmt != "BMP":
        options["exif"] = exif
    if photo.dpi and fmt in ("JPEG", "PNG", "TIFF", "BMP"):
        options["dpi"] = photo.dpi
    if photo.xmp and fmt == "JPEG" and len(photo.xmp) > MAX_JPEG_SEGMENT:
        log.warning("%sthe XMP packet (%d bytes) is too large for a JPEG and is left out (PNG or TIFF keep it)", named, len(photo.xmp))
    elif photo.xmp and fmt in ("JPEG", "WEBP"):
        options["xmp"] = photo.xmp
    if fmt == "PNG" and (photo.text or photo.xmp):
        options["pnginfo"] = _png_text(photo)
    if fmt == "JPEG":
        options.update(quality=jpeg.quality, subsampling=jpeg.subsampling)
        comment = _one_caption(photo.text).encode("utf-8")
        if len(comment) > MAX_JPEG_SEGMENT:
            log.warning("%sthe comment (%d bytes) is too large for a JPEG and is left out (PNG keeps it)", named, len(comment))
        elif comment:
            options["comment"] = comment
    elif fmt == "WEBP" and jpeg_quality == "auto" and (photo.webp_lossless or photo.format in LOSSLESS_FORMATS):
        # A lossless source (PNG, TIFF, a lossless WebP) stays lossless, as a JPEG keeps its own quality: written at
        # quality 95 a lossless WebP came back changed by up to 7 levels where nothing was restored.
        options.update(lossless=True)
    elif fmt == "WEBP":
        options.update(quality=DEFAULT_JPEG_QUALITY if jpeg_quality == "auto" else jpeg.quality)
    elif fmt == "TIFF" and not _has_sub_ifds(photo.exif):
        # libtiff, which Pillow's compressed TIFFs go through, cannot write EXIF/GPS directories: a photo that has
        # them (a camera JPEG's date, exposure, location) is written uncompressed, keeping them, by Pillow's own writer.
        options.update(compression="tiff_deflate")
    if fmt == "WEBP" and alpha is not None:
        # Without it libwebp throws away the colour under fully transparent pixels, even in a lossless file.
        options.update(exact=True)
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **options)
    if fmt == "PNG" and photo.png_colour:
        return _add_png_metadata(buffer.getvalue(), None, None, colour=photo.png_colour)
    return buffer.getvalue()


def _tiff_16bit(values: np.ndarray, alpha: np.ndarray | None, photo: Photo, named: str, caption: str | None = None) -> bytes:
    """A 16-bit TIFF (deflate) of (H, W, 3) uint16 ``values`` (channel 0 alone for a grayscale photo) and the alpha,
    with the photo's ICC profile, dpi, XMP packet and descriptive tags (``caption``: its description, if it has none). Written by tifffile: Pillow holds no 16-bit
    RGB, and OpenCV's TIFFs carry no metadata, so an archival 16-bit scan lost its colour profile and resolution."""
    import tifffile  # here, not at the top: 0.1 s of every command's start

    planes = values[:, :, :1] if photo.is_grayscale else values
    if alpha is not None:
        if photo.is_grayscale:  # OpenCV and Pillow read no 16-bit grey + alpha TIFF: the grey as RGB, the alpha kept
            planes = np.repeat(planes, 3, axis=2)
        planes = np.dstack([planes, _alpha_as(alpha, 16)])
    tags = _exif_tags(photo.exif)
    if any(tags.get_ifd(tag) for tag in EXIF_SUB_IFDS):
        log.warning("%sa 16-bit TIFF keeps the ICC profile, dpi, XMP and descriptive tags but not the camera's EXIF/GPS data (PNG or an 8-bit TIFF keep it)", named)
    text = {tag: tags[tag] for tag in TIFF_DESCRIPTIVE_TAGS if isinstance(tags.get(tag), str)}
    if caption:
        text[TIFF_DESCRIPTION_TAG] = caption
    software = text.pop(TIFF_SOFTWARE_TAG, None)
    # TIFF strings are ASCII by the letter; written as UTF-8, as most software reads them, so that no accent is lost.
    extratags = [(tag, "s", 0, value.encode(), True) for tag, value in text.items()]
    if photo.xmp:
        extratags.append((TIFF_XMP_TAG, "B", len(photo.xmp), photo.xmp, True))
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        planes[:, :, 0] if planes.shape[2] == 1 else planes,
        photometric="minisblack" if planes.shape[2] == 1 else "rgb",
        extrasamples=("unassalpha",) if alpha is not None else None,
        compression="zlib",
        metadata=None,  # no tifffile JSON in the description
        software=software.encode() if software else False,
        iccprofile=_profile_for(photo.icc_profile, photo.is_grayscale),
        resolution=photo.dpi,
        resolutionunit="INCH" if photo.dpi else None,
        extratags=extratags,
    )
    return buffer.getvalue()


def _one_caption(text: Mapping[str, str]) -> str:
    """A photo's captions (:attr:`Photo.text`) as one text, for formats that hold one (a JPEG's comment, a TIFF's
    description): a JPEG comment alone as it is, else one ``keyword: text`` line each, so that no caption is lost
    when a PNG's Title and Description are written as JPEG or TIFF."""
    if set(text) <= {JPEG_COMMENT_KEY}:
        return text.get(JPEG_COMMENT_KEY, "")
    return "\n".join(value if key == JPEG_COMMENT_KEY else f"{key}: {value}" for key, value in text.items())


def _tiff_caption(photo: Photo, fmt: str, named: str) -> str | None:
    """The captions to write as a ``fmt`` output's TIFF ImageDescription (None: none, or not a TIFF). PNG keeps each
    text chunk and JPEG writes them as its comment (:func:`encode_photo`); a TIFF gets them as its description unless
    its EXIF data already has one; WebP and BMP hold no captions. What cannot be kept is said, not lost unseen."""
    if not photo.text or fmt in ("PNG", "JPEG"):
        return None
    keys = ", ".join(photo.text)
    if fmt == "TIFF":
        if TIFF_DESCRIPTION_TAG not in _exif_tags(photo.exif):
            return _one_caption(photo.text)
        log.warning("%sthe captions (%s) are left out: the TIFF's description tag holds the photo's own EXIF description (PNG keeps both)", named, keys)
        return None
    log.warning("%s%s holds no captions: the photo's (%s) are left out (PNG, JPEG or TIFF keep them)", named, fmt, keys)
    return None


def _exif_tags(exif: bytes | None) -> Image.Exif:
    """The tags of an EXIF block (none for None)."""
    tags = Image.Exif()
    if exif:
        tags.load(exif)
    return tags


def _with_tag(exif: bytes | None, tag: int, value: bytes) -> bytes:
    """The EXIF block with one more tag of its first directory."""
    tags = _exif_tags(exif)
    tags[tag] = value
    return tags.tobytes()


def _has_sub_ifds(exif: bytes | None) -> bool:
    if not exif:
        return False
    tags = _exif_tags(exif)
    return any(tag in tags for tag in EXIF_SUB_IFDS)


def _profile_for(icc_profile: bytes | None, grayscale: bool) -> bytes | None:
    """The ICC profile if its colour space fits the pixels written (a black-and-white photo scanned as RGB is written
    as grayscale, and an RGB profile on grayscale pixels makes colour-managed readers refuse the file), else None."""
    if not icc_profile or len(icc_profile) < 20:
        return icc_profile or None
    space = icc_profile[16:20]
    if space == (b"GRAY" if grayscale else b"RGB "):
        return icc_profile
    return None


def write_photo(path: str | os.PathLike[str], photo: Photo, jpeg_quality: JpegQuality = "auto") -> None:
    """Atomically write ``photo`` to ``path``; the format follows the extension.

    Args:
        jpeg_quality: ``"auto"`` (the photo's own JPEG settings, else 95 with 4:4:4) or 1..100;
            see :func:`encode_photo`.

    Raises:
        ConfigError: invalid ``jpeg_quality``.
        ImageWriteError: unsupported extension, or the file cannot be written.
    """
    path = Path(path)
    fmt = format_for_path(path)
    try:
        data = encode_photo(photo, fmt, jpeg_quality=jpeg_quality, name=str(path))
        atomic_write_bytes(path, data)
    except ImageWriteError:
        raise
    except OSError as error:
        raise ImageWriteError(f"{path}: cannot write ({error.strerror or error})") from None
    except ValueError as error:  # an encoder's refusal (Pillow raises ValueError for some)
        raise ImageWriteError(f"{path}: cannot encode it as {fmt} ({error})") from None


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 1|3) float -> (H, W, 3) float."""
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""Rec. 601 luma weights of R, G, B, the ones OpenCV and Pillow use: the one home of this fact."""


def to_luminance(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB -> (H, W, 1) Rec. 601 luma, the same weights OpenCV and Pillow use."""
    if pixels.shape[2] == 1:
        return pixels
    return (pixels @ LUMA_WEIGHTS)[:, :, None].astype(np.float32)


COLOURED_AREA = 64
"""Pixels of clear colour (see :func:`is_black_and_white`) that make a grey photo a colour one: a hand-tinted mouth
or a red stamp is colour to keep, even on 1% of the photo."""


def is_black_and_white(rgb: np.ndarray, tolerance: float = 3 / 255, colour: float = 16 / 255) -> bool:
    """True when an RGB photo is a black-and-white print stored as colour: 99% of its pixels have channels within
    ``tolerance``, and no area holds clear colour (fewer than :data:`COLOURED_AREA` pixels whose channel spread,
    averaged over 5x5, exceeds ``colour``: a scanner's chroma noise does not, a tinted cheek does). Its
    restoration then stays black-and-white."""
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    if np.quantile(spread, 0.99) > tolerance:
        return False
    averaged = cv2.blur(np.ascontiguousarray(spread, dtype=np.float32), (5, 5))
    return int(np.count_nonzero(averaged > colour)) < COLOURED_AREA


def luma_plane(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 1|3) float pixels -> (H, W) contiguous float32 Rec. 601 luma (what the scratch stage's networks see)."""
    return np.ascontiguousarray(to_luminance(pixels)[:, :, 0], dtype=np.float32)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] (any shape) -> uint8, rounded to the nearest level and clipped."""
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


def load_rgb(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convenience for training/evaluation: (H, W, 3) float32 RGB in [0, 1]."""
    return to_rgb(read_photo(path, max_pixels=max_pixels).pixels)


def save_rgb(path: str | os.PathLike[str], pixels: np.ndarray) -> None:
    """Convenience for generated images: write (H, W, 1|3) float in [0, 1] as 8-bit."""
    write_photo(path, Photo(pixels=np.ascontiguousarray(pixels, dtype=np.float32), format=format_for_path(Path(path))))
