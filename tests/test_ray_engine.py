"""`restore --engine ray` on a local 2-CPU Ray (tier 3; the shipped weights, since Ray workers are other processes).

Skipped when the `ray` extra is not installed; README's test command installs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import smooth_image, wavy_scratch_mask
from .test_cli_restore import invoke

pytest.importorskip("ray.data")

from oldphoto.ray_engine import FAULT_ENV, MAX_RETRIES  # noqa: E402

STAGES = ["--no-faces", "--precision", "fp32"]  # scratches + global: the shipped networks, exact arithmetic


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("album")
    for index in range(3):
        pixels = smooth_image(96, 128, seed=index)
        pixels[wavy_scratch_mask()] = 0.97  # a scratch for the detector and the global stage to work on
        Image.fromarray((pixels * 255).astype(np.uint8)).save(folder / f"photo{index}.png")
    return folder


@pytest.fixture(scope="module")
def local_outputs(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    result = invoke("restore", str(photos), "-o", str(out), "--threads", "1", *STAGES)
    assert result.exit_code == 0, result.output
    return out


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).astype(np.int16)


def assert_same_as_local(out: Path, local: Path, names: list[str]) -> None:
    """PNG outputs at most 1 level apart from the local engine's."""
    for name in names:
        difference = np.abs(pixels(out / name) - pixels(local / name))
        assert difference.max() <= 1, (name, int(difference.max()))


def test_the_local_outputs_are_restorations_not_copies(photos, local_outputs):
    for path in photos.iterdir():
        assert np.abs(pixels(local_outputs / path.name) - pixels(path))[wavy_scratch_mask()].mean() > 20  # the scratch was filled


def leftovers(folder: Path) -> list[str]:
    return [path.name for path in folder.rglob("*") if path.name.endswith(".part")]


def test_ray_gives_the_local_engines_outputs_and_report(photos, local_outputs, tmp_path):
    out, report = tmp_path / "ray", tmp_path / "report.json"
    result = invoke(
        "restore", str(photos), "-o", str(out), "--engine", "ray", "--workers", "2", "--cpus-per-worker", "1",
        "--report", str(report), *STAGES,
    )
    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in photos.iterdir())
    assert sorted(path.name for path in out.iterdir()) == names
    assert_same_as_local(out, local_outputs, names)
    payload = json.loads(report.read_text())
    assert payload["engine"] == "ray" and payload["totals"]["statuses"] == {"restored": 3}
    assert all(record["seconds_per_megapixel"] > 0 and record["scratch_coverage"] > 0 for record in payload["images"])


def test_a_worker_killed_mid_file_loses_nothing_and_leaves_no_partial_file(photos, local_outputs, tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    # Each file's first worker dies after writing the photo's temporary file, before renaming it into place.
    monkeypatch.setenv(FAULT_ENV, f"kill-once:{markers}")
    out = tmp_path / "ray"
    result = invoke("restore", str(photos), "-o", str(out), "--engine", "ray", "--workers", "2", *STAGES)
    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in photos.iterdir())
    assert sorted(path.name for path in markers.iterdir()) == [f"{name}.killed" for name in names]  # each died once
    assert sorted(path.name for path in out.iterdir()) == names and not leftovers(out)
    assert_same_as_local(out, local_outputs, names)


def test_a_file_that_kills_every_worker_is_failed_after_two_retries(photos, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "kill-always:photo1.png")
    out, report = tmp_path / "ray", tmp_path / "report.json"
    result = invoke("restore", str(photos), "-o", str(out), "--engine", "ray", "--workers", "2", "--report", str(report), *STAGES)
    assert result.exit_code == 1, result.output
    statuses = {Path(r["input"]).name: r["status"] for r in json.loads(report.read_text())["images"]}
    assert statuses == {"photo0.png": "restored", "photo1.png": "failed", "photo2.png": "restored"}
    assert f"died on this file {MAX_RETRIES + 1} times" in " ".join(result.output.split())
    assert sorted(path.name for path in out.iterdir()) == ["photo0.png", "photo2.png"] and not leftovers(out)


def test_a_workers_warnings_are_said_as_the_local_engine_says_them(tmp_path):
    """Ray does not forward a worker's log: an alpha channel dropped by a JPEG output (and every other data-loss
    warning) was said by the local engine and by nothing on Ray."""
    folder = tmp_path / "album"
    folder.mkdir()
    pixels = (smooth_image(64, 80, seed=3) * 255).astype(np.uint8)
    Image.fromarray(np.dstack([pixels, np.full(pixels.shape[:2], 128, np.uint8)])).save(folder / "cutout.png")
    args = [str(folder), "--ext", "jpg", "--no-global", "--no-faces"]
    local = invoke("restore", *args, "-o", str(tmp_path / "local"))
    on_ray = invoke("restore", *args, "-o", str(tmp_path / "ray"), "--engine", "ray", "--workers", "1")
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    for result in (local, on_ray):
        assert "cannot store transparency; the alpha channel is dropped" in " ".join(result.output.split()), result.output
