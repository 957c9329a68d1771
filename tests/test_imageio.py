from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from oldphoto.errors import ImageReadError, ImageTooLargeError, ImageWriteError
from oldphoto.imageio import apply_orientation, read_photo, write_photo

from .conftest import smooth_image

# Built once: a new profile carries its creation time, so two calls a second apart differ.
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def srgb_icc() -> bytes:
    return SRGB_ICC


def opened(path: Path) -> Image.Image:
    """Open, fully load and close an image file (Pillow keeps the handle open otherwise)."""
    with Image.open(path) as image:
        image.load()
        image.getexif()
        return image


def save_pil(path: Path, array: np.ndarray, **options) -> Path:
    Image.fromarray(array).save(path, **options)
    return path


def test_rgb_png_round_trip_is_exact(tmp_path):
    array = (smooth_image(40, 50) * 255).round().astype(np.uint8)
    source = save_pil(tmp_path / "in.png", array)
    photo = read_photo(source)
    assert photo.pixels.shape == (40, 50, 3) and photo.bit_depth == 8 and not photo.is_grayscale
    write_photo(tmp_path / "out.png", photo)
    assert np.array_equal(np.asarray(opened(tmp_path / "out.png")), array)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_stays_16bit(tmp_path, suffix):
    array = (smooth_image(30, 20) * 65535).round().astype(np.uint16)
    source = tmp_path / f"in{suffix}"
    cv2.imwrite(str(source), array[:, :, ::-1])
    photo = read_photo(source)
    assert photo.bit_depth == 16
    assert np.allclose(photo.pixels, array / 65535.0, atol=1e-6)
    write_photo(tmp_path / f"out{suffix}", photo)
    back = cv2.imread(str(tmp_path / f"out{suffix}"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    assert np.array_equal(back[:, :, ::-1], array)


def test_writing_a_16bit_photo_as_8_bits_says_so(tmp_path, caplog):
    cv2.imwrite(str(tmp_path / "in.png"), (smooth_image(8, 8) * 65535).astype(np.uint16))
    photo = read_photo(tmp_path / "in.png")
    with caplog.at_level("WARNING"):
        write_photo(tmp_path / "out.png", photo)
    assert not caplog.records
    with caplog.at_level("WARNING"):
        write_photo(tmp_path / "out.jpg", photo)
    assert "out.jpg: JPEG holds 8 bits per channel" in caplog.text


def test_16bit_grayscale_png(tmp_path):
    array = (smooth_image(16, 24, channels=1)[:, :, 0] * 65535).astype(np.uint16)
    source = tmp_path / "gray16.png"
    cv2.imwrite(str(source), array)
    photo = read_photo(source)
    assert photo.is_grayscale and photo.bit_depth == 16
    write_photo(tmp_path / "out.png", photo)
    back = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.ndim == 2 and np.array_equal(back, array)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp", ".tif"])
def test_grayscale_in_grayscale_out(tmp_path, suffix):
    array = (smooth_image(32, 32, channels=1)[:, :, 0] * 255).astype(np.uint8)
    source = save_pil(tmp_path / f"in{suffix}", array)
    photo = read_photo(source)
    assert photo.is_grayscale
    write_photo(tmp_path / f"out{suffix}", photo)
    out = np.asarray(opened(tmp_path / f"out{suffix}"))
    # WebP has no gray mode: a gray image is stored as equal channels (lossy chroma: within one level).
    assert out.ndim == 2 or int((out.max(axis=2).astype(int) - out.min(axis=2)).max()) <= 1


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_alpha_passes_through_untouched(tmp_path, suffix):
    rgb = (smooth_image(20, 30) * 255).astype(np.uint8)
    alpha = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    source = save_pil(tmp_path / f"in{suffix}", np.dstack([rgb, alpha]), **({"lossless": True} if suffix == ".webp" else {}))
    photo = read_photo(source)
    assert photo.alpha is not None and np.array_equal(photo.alpha, alpha)
    write_photo(tmp_path / f"out{suffix}", photo.with_pixels(1 - photo.pixels))
    out = opened(tmp_path / f"out{suffix}")
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[:, :, 3], alpha)


def test_a_multi_page_tiff_says_only_its_first_page_is_restored(tmp_path, caplog):
    pages = [Image.fromarray(np.full((12, 16, 3), level, np.uint8)) for level in (40, 120, 200)]
    pages[0].save(tmp_path / "scans.tif", save_all=True, append_images=pages[1:])
    with caplog.at_level("WARNING", logger="oldphoto.imageio"):
        photo = read_photo(tmp_path / "scans.tif")
    assert np.allclose(photo.pixels, 40 / 255)
    assert "scans.tif holds 3 images" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="oldphoto.imageio"):
        read_photo(save_pil(tmp_path / "one.tif", np.asarray(pages[1])))
    assert caplog.text == ""


def test_a_dropped_alpha_channel_names_the_file(tmp_path, caplog):
    rgba = np.dstack([(smooth_image(8, 8) * 255).astype(np.uint8), np.full((8, 8), 128, np.uint8)])
    photo = read_photo(save_pil(tmp_path / "in.png", rgba))
    with caplog.at_level("WARNING", logger="oldphoto.imageio"):
        write_photo(tmp_path / "out.jpg", photo)
    assert "out.jpg: JPEG cannot store transparency" in caplog.text


def test_16bit_grey_with_alpha_stays_grey_with_alpha(tmp_path):
    grey = (smooth_image(12, 10)[:, :, 0] * 65535).astype(np.uint16)
    alpha = np.linspace(0, 65535, 120).reshape(12, 10).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "in.png"), np.dstack([grey, grey, grey, alpha]))  # what OpenCV reads back
    photo = read_photo(tmp_path / "in.png")
    assert photo.is_grayscale and photo.bit_depth == 16
    write_photo(tmp_path / "out.png", photo)
    data = (tmp_path / "out.png").read_bytes()
    assert (data[24], data[25]) == (16, 4)  # 16 bits, PNG colour type 4: grey with alpha
    back = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(back[:, :, 0], grey) and np.array_equal(back[:, :, 3], alpha)


def test_16bit_alpha_round_trip(tmp_path):
    array = (np.random.default_rng(2).random((10, 12, 4)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "in.png"), array)
    photo = read_photo(tmp_path / "in.png")
    write_photo(tmp_path / "out.png", photo)
    assert np.array_equal(cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED), array)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    array = (smooth_image(20, 36) * 255).astype(np.uint8)
    array[:4, :6] = [255, 0, 0]  # a marker that shows any flip or rotation
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    source = tmp_path / "oriented.png"
    image.save(source, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(opened(source)).convert("RGB"))
    photo = read_photo(source)
    assert np.array_equal((photo.pixels * 255).round().astype(np.uint8), expected)
    write_photo(tmp_path / "out.jpg", photo)
    assert opened(tmp_path / "out.jpg").getexif().get(0x0112) == 1


def test_apply_orientation_on_extra_axes():
    array = np.arange(6).reshape(2, 3)
    assert apply_orientation(array, 6).shape == (3, 2)
    assert np.array_equal(apply_orientation(array, 1), array)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_icc_and_exif_preserved(tmp_path, suffix):
    array = (smooth_image(24, 24) * 255).astype(np.uint8)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x010F] = "Kodak"  # Make
    source = tmp_path / f"in{suffix}"
    image.save(source, icc_profile=srgb_icc(), exif=exif.tobytes())
    write_photo(tmp_path / f"out{suffix}", read_photo(source))
    out = opened(tmp_path / f"out{suffix}")
    assert out.info.get("icc_profile") == srgb_icc()
    assert out.getexif().get(0x010F) == "Kodak"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "CMYK", "LAB"])
def test_a_tiff_comes_back_readable_whatever_its_layout(tmp_path, mode, caplog):
    """A TIFF's own layout tags (bits per sample, photometric, samples) must not be written over the restored pixels:
    a black-and-white print scanned as RGB comes back as a grayscale TIFF, a CMYK or Lab one as RGB, all readable."""
    grey = np.full((20, 30, 3), 90, np.uint8)
    colour = (smooth_image(20, 30) * 255).astype(np.uint8)
    source = Image.fromarray(grey if mode in ("RGB", "RGBA") else colour).convert(mode)
    exif = source.getexif()
    exif[0x013B] = "A. Photographer"  # Artist: a describing tag, carried over
    source.save(tmp_path / "in.tif", exif=exif, dpi=(600, 600))
    with caplog.at_level("WARNING"):
        photo = read_photo(tmp_path / "in.tif")
    assert ("is CMYK: it is read as RGB" in caplog.text) == (mode == "CMYK")
    write_photo(tmp_path / "out.tif", photo)
    out = opened(tmp_path / "out.tif")
    assert out.size == (30, 20) and out.mode == {"RGB": "L", "RGBA": "LA"}.get(mode, "RGB")
    assert np.abs(np.asarray(out.convert("RGB"), np.int16) - np.asarray(source.convert("RGB"), np.int16)).max() <= 1
    assert out.getexif().get(0x013B) == "A. Photographer" and out.info.get("dpi") == (600, 600)


def test_a_tiff_stating_no_resolution_does_not_become_1_dpi(tmp_path):
    # Pillow reports (1, 1) dpi for such a TIFF; written on, that would size a 3000 px scan at 3000 inches.
    save_pil(tmp_path / "in.tif", (smooth_image(16, 16) * 255).astype(np.uint8))
    photo = read_photo(tmp_path / "in.tif")
    assert photo.dpi is None
    write_photo(tmp_path / "out.jpg", photo)
    assert opened(tmp_path / "out.jpg").info.get("dpi") in (None, (0, 0), (72, 72), (96, 96))


def test_a_camera_photos_exif_directories_survive_a_tiff_output(tmp_path):
    """libtiff cannot write EXIF/GPS directories into a compressed TIFF ("Error setting from dictionary"): such a photo
    is written uncompressed, keeping its date and exposure; a TIFF's XMP packet is kept too."""
    image = Image.fromarray((smooth_image(16, 16) * 255).astype(np.uint8))
    exif = image.getexif()
    exif[0x010F] = "Kodak"
    exif[0x8769] = {0x9003: "1931:07:04 12:00:00"}  # DateTimeOriginal
    image.save(tmp_path / "camera.jpg", exif=exif.tobytes())
    write_photo(tmp_path / "out.tif", read_photo(tmp_path / "camera.jpg"))
    with Image.open(tmp_path / "out.tif") as out:  # the EXIF directory is read from the open file
        assert out.getexif().get_ifd(0x8769).get(0x9003) == "1931:07:04 12:00:00"
    scan = Image.fromarray((smooth_image(16, 16) * 255).astype(np.uint8))
    tagged = scan.getexif()
    tagged[0x02BC] = b"<x:xmpmeta>grandmother, 1931</x:xmpmeta>"
    scan.save(tmp_path / "xmp.tif", exif=tagged)
    write_photo(tmp_path / "xmp-out.tif", read_photo(tmp_path / "xmp.tif"))
    assert b"grandmother" in bytes(opened(tmp_path / "xmp-out.tif").tag_v2.get(0x02BC, b""))


def test_a_16bit_tiff_says_it_leaves_the_camera_exif_out(tmp_path, caplog):
    """tifffile writes no EXIF directory: a 16-bit photo with camera data written as TIFF keeps the make and model
    (descriptive tags) and says that the EXIF data is left out."""
    from dataclasses import replace

    cv2.imwrite(str(tmp_path / "in.png"), (smooth_image(8, 8) * 65535).astype(np.uint16))
    exif = Image.Exif()
    exif[0x010F] = "Kodak"
    exif[0x8769] = {0x9003: "1931:07:04 12:00:00"}
    photo = replace(read_photo(tmp_path / "in.png"), exif=exif.tobytes())
    with caplog.at_level("WARNING"):
        write_photo(tmp_path / "out.tif", photo)
    assert "camera's EXIF/GPS data" in caplog.text
    assert opened(tmp_path / "out.tif").tag_v2.get(0x010F) == "Kodak"


def test_the_scan_resolution_is_kept(tmp_path):
    array = (smooth_image(16, 16) * 255).astype(np.uint8)
    for name in ("in.jpg", "in.png"):
        save_pil(tmp_path / name, array, dpi=(600, 600))
        write_photo(tmp_path / f"out-{name}", read_photo(tmp_path / name))
        assert tuple(round(v) for v in opened(tmp_path / f"out-{name}").info["dpi"]) == (600, 600)
    cv2.imwrite(str(tmp_path / "in16.png"), (smooth_image(16, 16) * 65535).astype(np.uint16))
    from dataclasses import replace

    write_photo(tmp_path / "out16.png", replace(read_photo(tmp_path / "in16.png"), dpi=(300.0, 300.0)))
    assert tuple(round(v) for v in opened(tmp_path / "out16.png").info["dpi"]) == (300, 300)


def test_an_rgb_profile_is_not_put_on_grayscale_pixels(tmp_path):
    # An RGB profile on grayscale pixels makes colour-managed readers refuse the file: a grey photo with one is kept
    # RGB (test below), and a profile that does not fit the pixels written is left out.
    from oldphoto.imageio import Photo

    photo = Photo(pixels=np.full((8, 8, 1), 0.5, np.float32), icc_profile=srgb_icc())
    write_photo(tmp_path / "out.png", photo)
    assert opened(tmp_path / "out.png").info.get("icc_profile") is None


def test_floating_point_pixels_are_read_from_0_to_1_and_others_refused(tmp_path):
    ramp = np.linspace(0.0, 1.0, 20 * 30, dtype=np.float32).reshape(20, 30)
    Image.fromarray(ramp, mode="F").save(tmp_path / "ramp.tif")
    photo = read_photo(tmp_path / "ramp.tif")
    assert photo.is_grayscale and photo.bit_depth == 16
    np.testing.assert_allclose(photo.pixels[:, :, 0], ramp, atol=1e-6)
    Image.fromarray(ramp * 255, mode="F").save(tmp_path / "levels.tif")
    with pytest.raises(ImageReadError, match="from 0 to 255"):
        read_photo(tmp_path / "levels.tif")


@pytest.mark.parametrize("bits", [8, 16])
def test_captions_and_xmp_are_kept(tmp_path, bits):
    """An archive's captions: a PNG's text chunks and XMP packet, a JPEG's XMP packet."""
    from PIL import PngImagePlugin

    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:description>Grand-mère, 1931</dc:description></x:xmpmeta>'
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Description", "Grand-mère à Cork, 1931")
    info.add_itxt("XML:com.adobe.xmp", xmp)
    if bits == 8:
        save_pil(tmp_path / "in.png", (smooth_image(8, 8) * 255).astype(np.uint8), pnginfo=info)
    else:
        cv2.imwrite(str(tmp_path / "plain.png"), (smooth_image(8, 8) * 65535).astype(np.uint16))
        from dataclasses import replace

        photo = replace(read_photo(tmp_path / "plain.png"), text={"Description": "Grand-mère à Cork, 1931"}, xmp=xmp.encode())
        write_photo(tmp_path / "in.png", photo)
    photo = read_photo(tmp_path / "in.png")
    assert photo.text == {"Description": "Grand-mère à Cork, 1931"} and b"Grand-m" in photo.xmp
    for name in ("out.png", "out.jpg"):
        write_photo(tmp_path / name, photo)
        back = read_photo(tmp_path / name)
        assert back.xmp is not None and "Grand-mère, 1931" in back.xmp.decode("utf-8")
    assert read_photo(tmp_path / "out.png").text == {"Description": "Grand-mère à Cork, 1931"}


def test_a_jpeg_comment_is_kept(tmp_path):
    """A scanner's or editor's caption in a JPEG's comment segment was dropped from the restored photo."""
    save_pil(tmp_path / "in.jpg", (smooth_image(8, 8) * 255).astype(np.uint8), comment="Grand-mère à Cork, 1931".encode())
    photo = read_photo(tmp_path / "in.jpg")
    assert photo.text == {"Comment": "Grand-mère à Cork, 1931"}
    for name in ("out.jpg", "out.png"):  # a JPEG's comment again, a PNG's "Comment" text chunk
        write_photo(tmp_path / name, photo)
        assert read_photo(tmp_path / name).text == {"Comment": "Grand-mère à Cork, 1931"}
    write_photo(tmp_path / "again.jpg", read_photo(tmp_path / "out.png"))  # and back
    with Image.open(tmp_path / "again.jpg") as image:
        assert image.info["comment"] == "Grand-mère à Cork, 1931".encode()


def test_xmp_is_turned_upright_with_the_pixels_and_an_oversized_one_left_out_of_a_jpeg(tmp_path, caplog):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    image = Image.fromarray((smooth_image(8, 12) * 255).astype(np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "turned.jpg", exif=exif.tobytes(), xmp=xmp)
    photo = read_photo(tmp_path / "turned.jpg")
    assert photo.pixels.shape[:2] == (12, 8) and b'tiff:Orientation="1"' in photo.xmp
    from dataclasses import replace

    huge = replace(photo, xmp=b"<x:xmpmeta>" + b"history " * 10_000 + b"</x:xmpmeta>")
    with caplog.at_level("WARNING"):
        write_photo(tmp_path / "out.jpg", huge)  # Pillow refuses a JPEG XMP segment over 64 KB
    assert "too large for a JPEG" in caplog.text and read_photo(tmp_path / "out.jpg").xmp is None
    write_photo(tmp_path / "out.tif", huge)  # a TIFF keeps it
    assert b"history" in read_photo(tmp_path / "out.tif").xmp


def test_icc_preserved_in_16bit_png(tmp_path):
    array = (smooth_image(8, 8) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "in.png"), array)
    photo = read_photo(tmp_path / "in.png")
    from dataclasses import replace

    write_photo(tmp_path / "out.png", replace(photo, icc_profile=srgb_icc()))
    assert opened(tmp_path / "out.png").info.get("icc_profile") == srgb_icc()
    assert cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


@pytest.mark.parametrize("layout", ["rgb", "gray", "rgba"])
def test_a_16bit_tiff_scan_keeps_its_profile_resolution_and_captions(tmp_path, layout, caplog):
    """An archival 16-bit TIFF scan came back with its pixels but without its ICC profile (its colours then read as
    sRGB), its dpi (the print's size) and its captions: all kept now, with the bit depth and the pixels exact."""
    import tifffile

    channels = {"rgb": 3, "gray": 1, "rgba": 4}[layout]
    array = (np.random.default_rng(0).random((12, 16, channels)) * 65535).astype(np.uint16)
    profile = srgb_icc() if layout != "gray" else ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description dc:title="Grandmother, 1931"/></x:xmpmeta>'
    tifffile.imwrite(
        tmp_path / "scan.tif",
        array[:, :, 0] if channels == 1 else array,
        photometric="minisblack" if channels == 1 else "rgb",
        extrasamples=("unassalpha",) if channels == 4 else None,
        metadata=None,
        software="ScanSoft 2",
        iccprofile=profile,
        resolution=(1200, 1200),
        resolutionunit="INCH",
        extratags=[(0x010E, "s", 0, b"Grandmother and her sisters", True), (0x02BC, "B", len(xmp), xmp, True)],
    )
    photo = read_photo(tmp_path / "scan.tif")
    assert photo.bit_depth == 16 and photo.is_grayscale == (layout == "gray")
    with caplog.at_level("WARNING"):
        write_photo(tmp_path / "out.tif", photo)
    assert not caplog.records
    back = read_photo(tmp_path / "out.tif")
    assert back.bit_depth == 16 and np.array_equal(back.pixels, photo.pixels)
    assert back.alpha is None if layout != "rgba" else np.array_equal(back.alpha, array[:, :, 3])
    assert back.dpi == (1200, 1200) and b"Grandmother, 1931" in back.xmp
    # A Lab profile does not fit grayscale pixels and is left out, as for 8-bit outputs.
    assert back.icc_profile == (srgb_icc() if layout != "gray" else None)
    with tifffile.TiffFile(tmp_path / "out.tif") as written:
        tags = written.pages[0].tags
        assert tags["ImageDescription"].value == "Grandmother and her sisters" and tags["Software"].value == "ScanSoft 2"
        assert tags["BitsPerSample"].value == (16,) * channels or tags["BitsPerSample"].value == 16


@pytest.mark.parametrize("channels", [3, 4])
def test_a_16bit_tiff_with_its_colours_in_separate_planes_is_read_right(tmp_path, channels, monkeypatch):
    """OpenCV decoded a planar 16-bit TIFF (some scanners write them) into scrambled pixels without an error, and the
    photo was restored from noise."""
    import tifffile

    planes = (np.random.default_rng(1).random((channels, 10, 14)) * 65535).astype(np.uint16)
    extra = ("unassalpha",) if channels == 4 else None
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate", compression="zlib", extrasamples=extra)
    photo = read_photo(tmp_path / "planar.tif")
    assert photo.bit_depth == 16 and np.array_equal(np.rint(photo.pixels * 65535).astype(np.uint16), np.moveaxis(planes[:3], 0, 2))
    assert (photo.alpha is None) == (channels == 3) and (channels == 3 or np.array_equal(photo.alpha, planes[3]))
    # One tifffile cannot decode (LZW needs a codec package it does without) is refused with a message that says
    # what to do, never read as noise.
    def cannot(*args, **kwargs):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", cannot)
    with pytest.raises(ImageReadError, match="separate planes.*LZW.*interleaved"):
        read_photo(tmp_path / "planar.tif")


def test_bad_files_raise_one_clear_error(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    good = io.BytesIO()
    Image.fromarray((smooth_image(64, 64) * 255).astype(np.uint8)).save(good, "JPEG")
    (tmp_path / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    for name, words in [("empty.jpg", "empty"), ("text.png", "not an image"), ("truncated.jpg", "truncated"), ("missing.png", "no such file")]:
        with pytest.raises(ImageReadError, match=words) as caught:
            read_photo(tmp_path / name)
        assert name in str(caught.value)


def test_out_of_memory_and_opencv_limit_are_not_called_damage(tmp_path, monkeypatch):
    """A scan that is fine but too large to decode here must not be reported as damaged or truncated."""
    import subprocess
    import sys

    source = save_pil(tmp_path / "fine.png", np.zeros((40, 40), np.uint8))

    def no_memory(self):
        raise MemoryError

    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, "load", no_memory)
        with pytest.raises(ImageTooLargeError, match="not enough memory to decode 40x40") as caught:
            read_photo(source)
    assert "damaged" not in str(caught.value)
    # OpenCV decodes the 16-bit files and has a pixel cap of its own, read when it loads: a child process sets it low.
    sixteen = tmp_path / "deep.png"
    cv2.imwrite(str(sixteen), np.full((40, 40, 3), 40000, np.uint16))
    code = f"from oldphoto.imageio import read_photo\nread_photo({str(sixteen)!r}, max_pixels=None)"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "1000"}, check=False)
    assert "ImageTooLargeError" in child.stderr and "OPENCV_IO_MAX_IMAGE_PIXELS" in child.stderr, child.stderr
    assert "damaged" not in child.stderr


def test_decompression_bomb_guard(tmp_path):
    source = save_pil(tmp_path / "big.png", np.zeros((100, 100), np.uint8))
    # The advice is the caller's: a command without a limit option must not name one (degrade, evaluate, train).
    with pytest.raises(ImageTooLargeError, match="downscale it first") as caught:
        read_photo(source, max_pixels=5000)
    assert "--max-pixels" not in str(caught.value)
    with pytest.raises(ImageTooLargeError, match="raise --limit"):
        read_photo(source, max_pixels=5000, too_large_hint="raise --limit")
    # Small limits read as such, not "0 megapixels exceeds the 0-megapixel safety limit".
    assert "= 0.01 megapixels exceeds the 0.005-megapixel" in str(caught.value)
    assert read_photo(source, max_pixels=None).pixels.shape == (100, 100, 1)


def test_write_is_atomic_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    photo = read_photo(save_pil(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8)))
    target = tmp_path / "out" / "result.png"

    def broken_replace(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("oldphoto.atomic.os.replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        write_photo(target, photo)
    assert list(target.parent.iterdir()) == []


def test_written_files_follow_the_umask(tmp_path):
    import os
    import stat

    photo = read_photo(save_pil(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8)))
    write_photo(tmp_path / "out.png", photo)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o666 & ~umask


def test_unsupported_output_extension(tmp_path):
    photo = read_photo(save_pil(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(ImageWriteError, match="unsupported output extension"):
        write_photo(tmp_path / "out.gif", photo)


@pytest.mark.parametrize(
    ("dtype", "described"),
    [
        (np.int16, "16-bit signed integer samples, 1 per pixel"),
        (np.int32, "32-bit signed integer samples"),
        (np.uint32, "32-bit unsigned integer samples"),
        (np.float16, "16-bit floating-point samples"),
    ],
)
def test_tiff_layouts_it_cannot_read_are_refused_by_name(tmp_path, dtype, described):
    """Signed and 32-bit integer TIFFs were decoded as if unsigned 8-bit: 'restored' nearly white (99.7% of the
    pixels at 255), exit 0. Such files, and others Pillow cannot open, are refused, their layout named."""
    import tifffile

    y, x = np.mgrid[0:12, 0:16]
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, (x * 100 + y * 50).astype(dtype) if dtype != np.float16 else (x / 16).astype(dtype))
    with pytest.raises(ImageReadError, match=described):
        read_photo(path)


def test_a_lossless_source_is_written_as_lossless_webp_unless_a_quality_is_given(tmp_path):
    """A lossless WebP came back lossy (quality 95: up to 7 levels changed where nothing was restored), as did a PNG
    written with --ext webp. "auto" keeps a lossless source lossless, as it keeps a JPEG's own quality."""
    from oldphoto.imageio import encode_photo

    pixels = (smooth_image(40, 56, seed=3) * 255).astype(np.uint8)
    lossless, lossy, png = tmp_path / "a.webp", tmp_path / "b.webp", tmp_path / "c.png"
    Image.fromarray(pixels).save(lossless, lossless=True)
    Image.fromarray(pixels).save(lossy, quality=80)
    Image.fromarray(pixels).save(png)
    for source, exact in ((lossless, True), (png, True), (lossy, False)):
        photo = read_photo(source)
        assert photo.webp_lossless == (source == lossless)
        written = np.asarray(Image.open(io.BytesIO(encode_photo(photo, "WEBP"))).convert("RGB"))
        original = np.asarray(Image.open(source).convert("RGB"))
        assert np.array_equal(written, original) == exact, source.name
    given = np.asarray(Image.open(io.BytesIO(encode_photo(read_photo(png), "WEBP", jpeg_quality=90))).convert("RGB"))
    assert not np.array_equal(given, pixels)  # a quality given: lossy, as asked


def test_webp_keeps_the_colour_under_transparent_pixels_and_bmp_its_dpi(tmp_path):
    """libwebp drops the colour under alpha 0 unless told to keep it (a lossless round trip was not one), and a
    300-dpi BMP came back at 96 dpi (it prints at the wrong size)."""
    rgba = np.dstack([(smooth_image(16, 16, seed=1) * 255).astype(np.uint8), np.full((16, 16), 255, np.uint8)])
    rgba[:4, :, 3] = 0
    source = tmp_path / "cut.png"
    Image.fromarray(rgba, "RGBA").save(source)
    write_photo(tmp_path / "cut.webp", read_photo(source))
    with Image.open(tmp_path / "cut.webp") as written:
        assert np.array_equal(np.asarray(written.convert("RGBA")), rgba)
    Image.fromarray(rgba[:, :, :3]).save(tmp_path / "scan.bmp", dpi=(300, 300))
    write_photo(tmp_path / "out.bmp", read_photo(tmp_path / "scan.bmp"))
    with Image.open(tmp_path / "out.bmp") as written:
        assert written.info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_a_size_the_format_cannot_hold_is_a_write_error_that_says_so(tmp_path):
    """A panorama wider than WebP's 16,383 or JPEG's 65,500 pixels: an untyped ValueError (WebP) or "broken data
    stream" (JPEG) came only after the whole restoration."""
    from oldphoto.imageio import Photo

    for fmt, width in (("webp", 16_384), ("jpg", 65_501)):
        photo = Photo(pixels=np.zeros((2, width, 1), np.float32), format="PNG")
        with pytest.raises(ImageWriteError, match=f"{width}x2 is too large for .*write it as PNG or TIFF"):
            write_photo(tmp_path / f"wide.{fmt}", photo)
        assert not (tmp_path / f"wide.{fmt}").exists()


def test_a_grey_photo_stored_as_rgb_keeps_its_rgb_colour_profile(tmp_path):
    """Equal R, G, B are read as grey, and written grey they lost an RGB profile silently (under a gamma-1.8 profile
    level 128 shows as 146, untagged as 128). With an RGB profile the photo stays RGB and keeps it."""
    from oldphoto.imageio import encode_photo

    grey = np.repeat(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))[:, :, None], 3, axis=2)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged, plain = tmp_path / "tagged.png", tmp_path / "plain.png"
    Image.fromarray(grey).save(tagged, icc_profile=profile)
    Image.fromarray(grey).save(plain)
    assert read_photo(plain).pixels.shape[2] == 1  # untagged: grey, as before
    photo = read_photo(tagged)
    assert photo.pixels.shape[2] == 3
    written = Image.open(io.BytesIO(encode_photo(photo, "PNG")))
    assert written.mode == "RGB" and written.info.get("icc_profile") == profile
    assert np.array_equal(np.asarray(written), grey)


def test_a_png_colour_key_is_said_to_be_dropped(tmp_path, caplog):
    """A PNG whose transparency is one key colour (tRNS) came back opaque without a word."""
    grey = np.tile(np.arange(0, 64, dtype=np.uint8), (8, 1))
    Image.fromarray(grey).save(tmp_path / "key.png", transparency=0)
    with caplog.at_level("WARNING"):
        photo = read_photo(tmp_path / "key.png")
    assert photo.alpha is None and "colour key" in caplog.text


def test_every_image_extension_has_a_place_in_the_mask_preference():
    """A mask in a format missing from the preference would be ignored unseen."""
    from oldphoto.imageio import EXTENSION_FORMATS
    from oldphoto.inputs import MASK_EXTENSION_PREFERENCE

    assert sorted(MASK_EXTENSION_PREFERENCE) == sorted(EXTENSION_FORMATS)


@pytest.mark.parametrize("planar", [False, True])
def test_16bit_tiffs_stored_min_is_white_or_premultiplied_read_as_the_photo(tmp_path, planar):
    """A 16-bit grey scan stored min-is-white (0 = white) came back as its negative, and 16-bit colour stored
    premultiplied by its alpha came back darkened where it was see-through (Pillow applies both conventions to 8-bit
    TIFFs; the 16-bit decoders kept the raw samples)."""
    import tifffile

    rng = np.random.default_rng(1)
    grey = (rng.random((12, 16)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "white.tif", 65535 - grey, photometric="miniswhite", metadata=None)
    np.testing.assert_allclose(read_photo(tmp_path / "white.tif").pixels[:, :, 0] * 65535, grey, atol=0.5)
    colour = (rng.random((12, 16, 3)) * 65535).astype(np.uint16)
    opacity = np.repeat(np.array([0, 32896, 65535], np.uint16), 64)[: 12 * 16].reshape(12, 16)
    premultiplied = np.rint(colour * (opacity[:, :, None] / 65535.0)).astype(np.uint16)
    stored = np.concatenate([premultiplied, opacity[:, :, None]], axis=2)
    tifffile.imwrite(
        tmp_path / "assoc.tif",
        np.moveaxis(stored, 2, 0) if planar else stored,
        photometric="rgb",
        planarconfig="separate" if planar else "contig",
        extrasamples=("assocalpha",),
        metadata=None,
    )
    photo = read_photo(tmp_path / "assoc.tif")
    assert np.array_equal(photo.alpha, opacity)
    seen = opacity > 0
    np.testing.assert_allclose(photo.pixels[seen] * 65535, colour[seen], atol=3)  # the straight colour, as written back


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_header_sizes_of_a_tiff_match_the_photo_read_in_every_orientation(tmp_path, dtype):
    """Pillow reports a TIFF's size already turned by its orientation: the header read turned it a second time, so
    `restore --dry-run --masks` said a scan's own mask was the wrong size while the real run used it."""
    import tifffile

    from oldphoto.imageio import header_sizes

    stored = (np.random.default_rng(0).random((6, 10, 3)) * np.iinfo(dtype).max).astype(dtype)
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.tif"
        tifffile.imwrite(path, stored, photometric="rgb", extratags=[(0x0112, "H", 1, orientation, True)], metadata=None)
        height, width = read_photo(path).pixels.shape[:2]
        assert header_sizes(path) == ((10, 6), (width, height)), orientation


def test_layouts_it_cannot_read_are_named_with_what_to_do(tmp_path):
    """A 16-bit CMYK TIFF was called damaged (after OpenCV printed its own errors), a 16-bit grey TIFF with alpha was
    told to be saved as the grey TIFF it is, and a JPEG missing its end marker was "damaged" with no way forward."""
    import tifffile

    tifffile.imwrite(tmp_path / "cmyk.tif", np.zeros((8, 8, 4), np.uint16), photometric="separated", metadata=None)
    tifffile.imwrite(tmp_path / "la.tif", np.zeros((8, 8, 2), np.uint16), photometric="minisblack", extrasamples=("unassalpha",), metadata=None)
    buffer = io.BytesIO()
    Image.fromarray((smooth_image(32, 48) * 255).astype(np.uint8)).save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:-2])  # without its end-of-image marker
    planar = io.BytesIO()
    tifffile.imwrite(planar, np.zeros((3, 40, 48), np.uint16), photometric="rgb", planarconfig="separate", metadata=None)
    (tmp_path / "planar.tif").write_bytes(planar.getvalue()[: len(planar.getvalue()) // 2])
    premultiplied = np.full((4, 8, 8), 200, np.uint8)  # Pillow opens an 8-bit planar premultiplied RGBA, but cannot decode it
    tifffile.imwrite(tmp_path / "rgba8.tif", premultiplied, photometric="rgb", planarconfig="separate", extrasamples=("assocalpha",), metadata=None)
    grey = np.zeros((8, 8), np.uint16)  # nor can it open a big-endian min-is-white 16-bit grey TIFF
    tifffile.imwrite(tmp_path / "big.tif", grey, photometric="miniswhite", byteorder=">", metadata=None)
    cases = (
        ("cmyk.tif", "it is CMYK: convert it to RGB"),
        ("la.tif", "save it as a 16-bit PNG"),
        ("cut.jpg", "cut short"),
        ("planar.tif", "cut short"),
        ("rgba8.tif", "colours interleaved"),
        ("big.tif", "not this variant of it"),
    )
    for name, words in cases:
        with pytest.raises(ImageReadError, match=words):
            read_photo(tmp_path / name)


def test_png_captions_are_kept_or_said_when_written_in_another_format(tmp_path, caplog):
    """A PNG's Title and Description were dropped unseen when the output was JPEG, TIFF or WebP (``--ext``)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("Title", "Grand-mère à Cork")
    info.add_itxt("Description", "1931, on the quay")
    photo = read_photo(save_pil(tmp_path / "in.png", (smooth_image(8, 8) * 255).astype(np.uint8), pnginfo=info))
    write_photo(tmp_path / "out.jpg", photo)
    with Image.open(tmp_path / "out.jpg") as image:
        assert image.info["comment"].decode() == "Title: Grand-mère à Cork\nDescription: 1931, on the quay"
    for bits in (8, 16):
        from dataclasses import replace

        write_photo(tmp_path / f"out{bits}.tif", replace(photo, bit_depth=bits))
        with Image.open(tmp_path / f"out{bits}.tif") as image:  # Pillow reads TIFF text as Latin-1; it is UTF-8
            assert image.tag_v2[0x010E].encode("latin-1").decode() == "Title: Grand-mère à Cork\nDescription: 1931, on the quay"
    with caplog.at_level("WARNING", logger="oldphoto.imageio"):
        write_photo(tmp_path / "out.webp", photo)
    assert "out.webp: WEBP holds no captions: the photo's (Title, Description) are left out" in caplog.text


def test_a_phone_jpeg_opened_as_mpo_keeps_its_comment(tmp_path):
    image = Image.fromarray((smooth_image(16, 16) * 255).astype(np.uint8))
    image.save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[image], comment=b"Grandma 1931")
    photo = read_photo(tmp_path / "phone.jpg")
    assert photo.format == "MPO" and photo.text == {"Comment": "Grandma 1931"}
    write_photo(tmp_path / "out.jpg", photo)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.info["comment"] == b"Grandma 1931"


def test_a_grey_photo_written_as_webp_does_not_carry_a_grey_profile_on_rgb_pixels(tmp_path, caplog):
    """WebP has no grey mode: the grey pixels are stored as RGB, and a GRAY ICC profile on them is an invalid file
    for colour-managed readers. (Only the profile's colour-space field decides here, so an sRGB profile relabelled
    GRAY stands in for a scanner's grey profile.)"""
    grey_profile = SRGB_ICC[:16] + b"GRAY" + SRGB_ICC[20:]
    source = save_pil(tmp_path / "in.png", (smooth_image(8, 8)[:, :, 0] * 255).astype(np.uint8), icc_profile=grey_profile)
    photo = read_photo(source)
    assert photo.is_grayscale and photo.icc_profile == grey_profile
    with caplog.at_level("WARNING", logger="oldphoto.imageio"):
        write_photo(tmp_path / "out.webp", photo)
    with Image.open(tmp_path / "out.webp") as image:
        assert image.mode == "RGB" and not image.info.get("icc_profile")
    assert "grey colour profile cannot describe" in caplog.text
    write_photo(tmp_path / "out.png", photo)  # PNG stays grey, and keeps it
    with Image.open(tmp_path / "out.png") as image:
        assert image.mode == "L" and image.info["icc_profile"] == grey_profile


def test_pillow_warnings_are_logged_with_the_file_name_not_printed(tmp_path, caplog):
    """Pillow's own warnings (here: a palette with per-entry transparency) went through Python's warnings to the
    terminal, even with --quiet, without saying which photo of a batch they were about."""
    palette = Image.fromarray((smooth_image(16, 16)[:, :, 0] * 255).astype(np.uint8)).convert("P")
    palette.save(tmp_path / "palette.png", transparency=bytes(range(256)))
    import warnings

    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING", logger="oldphoto.imageio"):
        warnings.simplefilter("always")
        read_photo(tmp_path / "palette.png")
    assert not caught
    assert "palette.png: Palette images with Transparency" in caplog.text


def test_png_gamma_and_chromaticity_are_kept_or_said(tmp_path, caplog):
    """A PNG saying "gamma 1/1.8, these primaries" (an old Mac scan) lost its gAMA and cHRM chunks: viewers then showed
    the restored file darker than the input although its levels were unchanged."""
    import struct

    from dataclasses import replace

    from PIL import PngImagePlugin

    chrm = struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 55556))
    info.add(b"cHRM", chrm)
    photo = read_photo(save_pil(tmp_path / "in.png", (smooth_image(8, 8) * 255).astype(np.uint8), pnginfo=info))
    for bits in (8, 16):
        write_photo(tmp_path / f"out{bits}.png", replace(photo, bit_depth=bits))
        written = opened(tmp_path / f"out{bits}.png")
        assert written.info["gamma"] == pytest.approx(0.55556)
        assert written.info["chromaticity"] == pytest.approx((0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06))
    with caplog.at_level("WARNING", logger="oldphoto.imageio"):
        write_photo(tmp_path / "out.jpg", photo)
    assert "out.jpg: the PNG's gamma / chromaticity chunks" in caplog.text
    caplog.clear()
    # gamma 1/2.2 alone is how encoders label ordinary files: kept in a PNG, nothing to say for a JPEG.
    plain = PngImagePlugin.PngInfo()
    plain.add(b"gAMA", struct.pack(">I", 45455))
    photo = read_photo(save_pil(tmp_path / "plain.png", (smooth_image(8, 8) * 255).astype(np.uint8), pnginfo=plain))
    with caplog.at_level("WARNING", logger="oldphoto.imageio"):
        write_photo(tmp_path / "plain.jpg", photo)
        write_photo(tmp_path / "plain-out.png", photo)
    assert "gamma" not in caplog.text
    assert opened(tmp_path / "plain-out.png").info["gamma"] == pytest.approx(0.45455)
    # Nor for sRGB's own primaries beside it (many encoders write both); but said for a BMP, which keeps no profile.
    plain.add(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000))
    photo = read_photo(save_pil(tmp_path / "plain2.png", (smooth_image(8, 8) * 255).astype(np.uint8), pnginfo=plain))
    with caplog.at_level("WARNING", logger="oldphoto.imageio"):
        write_photo(tmp_path / "plain2.jpg", photo)
    assert "gamma" not in caplog.text
    mac = PngImagePlugin.PngInfo()
    mac.add(b"gAMA", struct.pack(">I", 55556))
    photo = read_photo(save_pil(tmp_path / "mac.png", (smooth_image(8, 8) * 255).astype(np.uint8), pnginfo=mac, icc_profile=srgb_icc()))
    with caplog.at_level("WARNING", logger="oldphoto.imageio"):
        write_photo(tmp_path / "mac.jpg", photo)  # the profile goes with it: nothing to say
        assert "gamma" not in caplog.text
        write_photo(tmp_path / "mac.bmp", photo)
    assert "mac.bmp: the PNG's gamma / chromaticity chunks" in caplog.text
