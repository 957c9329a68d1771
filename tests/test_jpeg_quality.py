"""``--jpeg-quality auto|N`` and ``--ext`` on the library side: a JPEG is written back with its own quality
and chroma subsampling instead of a fixed 95 / 4:4:4 (about twice the input's size)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from oldphoto.errors import ConfigError
from oldphoto.imageio import (
    JpegSettings,
    estimate_jpeg_quality,
    parse_jpeg_quality,
    read_photo,
    write_photo,
)
from oldphoto.inputs import InputFile, plan_jobs

from .conftest import smooth_image


def photo_array(height: int = 96, width: int = 128, channels: int = 3) -> np.ndarray:
    array = (smooth_image(height, width, channels=channels) * 255).round().astype(np.uint8)
    return array[:, :, 0] if channels == 1 else array


def save_jpeg(path: Path, quality: int, subsampling: int, channels: int = 3) -> Path:
    Image.fromarray(photo_array(channels=channels)).save(path, "JPEG", quality=quality, subsampling=subsampling)
    return path


def file_settings(path: Path) -> tuple[int | None, int]:
    """(estimated quality, Pillow subsampling code) of a JPEG file, read independently of read_photo."""
    with Image.open(path) as image:
        image.load()
        return estimate_jpeg_quality(image.quantization), JpegImagePlugin.get_sampling(image)


@pytest.mark.parametrize("quality", [1, 5, 10, 25, 49, 50, 51, 70, 75, 85, 90, 95, 99, 100])
def test_estimate_matches_libjpeg_quality_exactly(tmp_path, quality):
    source = save_jpeg(tmp_path / "in.jpg", quality, 2)
    assert file_settings(source)[0] == quality


def test_estimate_needs_a_luminance_table():
    assert estimate_jpeg_quality({}) is None


@pytest.mark.parametrize(("quality", "subsampling"), [(70, 2), (90, 0), (50, 1)])
def test_jpeg_is_written_back_with_its_own_settings(tmp_path, quality, subsampling):
    source = save_jpeg(tmp_path / "in.jpg", quality, subsampling)
    photo = read_photo(source)
    assert photo.jpeg is not None
    assert abs(photo.jpeg.quality - quality) <= 2
    assert photo.jpeg.subsampling == subsampling
    # Restoration replaces the pixels; the settings must survive that.
    photo = photo.with_pixels(photo.pixels)
    assert photo.jpeg == read_photo(source).jpeg

    write_photo(tmp_path / "out.jpg", photo)  # default: auto
    assert file_settings(tmp_path / "out.jpg") == (photo.jpeg.quality, subsampling)
    in_size, out_size = source.stat().st_size, (tmp_path / "out.jpg").stat().st_size
    assert abs(out_size - in_size) <= 0.25 * in_size, (in_size, out_size)


def test_explicit_auto_equals_default(tmp_path):
    photo = read_photo(save_jpeg(tmp_path / "in.jpg", 70, 2))
    write_photo(tmp_path / "default.jpg", photo)
    write_photo(tmp_path / "auto.jpg", photo, jpeg_quality="auto")
    assert (tmp_path / "default.jpg").read_bytes() == (tmp_path / "auto.jpg").read_bytes()


def test_grayscale_jpeg_has_quality_but_no_subsampling(tmp_path):
    photo = read_photo(save_jpeg(tmp_path / "in.jpg", 60, 2, channels=1))
    assert photo.is_grayscale and photo.jpeg == JpegSettings(60, None)
    write_photo(tmp_path / "out.jpg", photo)
    assert file_settings(tmp_path / "out.jpg")[0] == 60


def test_png_written_as_jpeg_gets_95_and_444(tmp_path):
    source = tmp_path / "in.png"
    Image.fromarray(photo_array()).save(source)
    photo = read_photo(source)
    assert photo.jpeg is None
    write_photo(tmp_path / "out.jpg", photo)
    assert file_settings(tmp_path / "out.jpg") == (95, 0)


@pytest.mark.parametrize(("quality", "subsampling"), [(80, 2), (92, 0)])
def test_explicit_quality_overrides_the_source(tmp_path, quality, subsampling):
    photo = read_photo(save_jpeg(tmp_path / "in.jpg", 60, 1))
    write_photo(tmp_path / "out.jpg", photo, jpeg_quality=quality)
    assert file_settings(tmp_path / "out.jpg") == (quality, subsampling)


@pytest.mark.parametrize("bad", [0, 101, -5, "high", "", 95.5, True, None])
def test_invalid_quality_raises_config_error_and_writes_nothing(tmp_path, bad):
    photo = read_photo(save_jpeg(tmp_path / "in.jpg", 70, 2))
    with pytest.raises(ConfigError, match="1 .*100.*auto"):
        write_photo(tmp_path / "out.jpg", photo, jpeg_quality=bad)
    assert not (tmp_path / "out.jpg").exists()


def test_parse_jpeg_quality_accepts_cli_text():
    assert parse_jpeg_quality("auto") == "auto"
    assert parse_jpeg_quality(" AUTO ") == "auto"
    assert parse_jpeg_quality("80") == 80
    assert parse_jpeg_quality(np.int64(100)) == 100
    with pytest.raises(ConfigError):
        parse_jpeg_quality("0")


@pytest.mark.parametrize("suffix", [".jpeg", ".tiff"])
def test_long_suffixes_are_written(tmp_path, suffix):
    source = tmp_path / "in.png"
    Image.fromarray(photo_array()).save(source)
    write_photo(tmp_path / f"out{suffix}", read_photo(source))
    assert read_photo(tmp_path / f"out{suffix}").format == ("JPEG" if suffix == ".jpeg" else "TIFF")


def inputs(*names: str) -> list[InputFile]:
    return [InputFile(Path("in") / name, Path(name)) for name in names]


@pytest.mark.parametrize(
    ("ext", "expected"),
    [
        (None, ["a.jpg", "b.png", "c.TIF"]),
        ("auto", ["a.jpg", "b.png", "c.TIF"]),
        ("AUTO", ["a.jpg", "b.png", "c.TIF"]),
        ("jpeg", ["a.jpeg", "b.jpeg", "c.jpeg"]),
        ("tiff", ["a.tiff", "b.tiff", "c.tiff"]),
        ("jpg", ["a.jpg", "b.jpg", "c.jpg"]),
        ("WEBP", ["a.webp", "b.webp", "c.webp"]),
    ],
)
def test_plan_jobs_ext(tmp_path, ext, expected):
    jobs = plan_jobs(inputs("a.jpg", "b.png", "c.TIF"), tmp_path / "out", ext=ext)
    assert [job.output.name for job in jobs] == expected
    assert all(job.skip_reason is None for job in jobs)


def test_plan_jobs_unknown_ext(tmp_path):
    with pytest.raises(ConfigError, match="auto, png, jpg, jpeg"):
        plan_jobs(inputs("a.jpg"), tmp_path / "out", ext="gif")
