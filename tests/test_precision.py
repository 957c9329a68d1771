"""One precision setting for the whole runtime: resolution, autocast in tile_apply, the CLI's --precision/--fp16."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from oldphoto import runtime as runtime_module
from oldphoto.archs.scratch_unet import ScratchUNet, ScratchUNetConfig
from oldphoto.cli.app import app
from oldphoto.cli.common import chosen_precision
from oldphoto.errors import ConfigError, DeviceError
from oldphoto.runtime import Runtime, make_runtime, resolve_precision
from oldphoto.tiling import tile_apply

from .test_cli_restore import STAGES, make_photo

CPU = torch.device("cpu")


@pytest.fixture
def album(tmp_path: Path) -> Path:
    folder = tmp_path / "album"
    make_photo(folder / "a.png")
    make_photo(folder / "b.jpg", gray=True)
    return folder


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: True)


@pytest.fixture
def no_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: False)


def test_auto_is_bf16_on_a_cpu_with_native_bf16(native_bf16):
    assert resolve_precision("auto", CPU) == "bf16"
    runtime = make_runtime("cpu", "auto")
    assert runtime.precision == "bf16" and runtime.compute_dtype == torch.bfloat16
    assert runtime.dtype == torch.float32  # weights and tiles stay float32: reduced precision is autocast
    assert "cpu bf16" in runtime.describe()


def test_auto_is_fp32_on_a_cpu_without_it(no_native_bf16):
    assert resolve_precision("auto", CPU) == "fp32"
    assert make_runtime("cpu", "auto").precision == "fp32"


def test_the_library_default_is_fp32_everywhere(native_bf16):
    assert make_runtime("cpu").precision == "fp32"


def test_fp16_on_cpu_is_refused():
    with pytest.raises(DeviceError, match="CUDA or MPS"):
        make_runtime("cpu", "fp16")


def test_bf16_on_a_cpu_without_native_bf16_is_refused_as_slow(no_native_bf16):
    with pytest.raises(DeviceError, match="slower than fp32"):
        make_runtime("cpu", "bf16")


def test_unknown_precision_is_refused():
    with pytest.raises(DeviceError, match="not understood"):
        make_runtime("cpu", "int8")


@pytest.mark.parametrize("name", ["cuda:x", "cuda:", "cuda:-1", "cuda:0:0"])
def test_a_malformed_cuda_device_is_refused_in_words_where_cuda_is_present(monkeypatch, name):
    """torch.device("cuda:x") raises a bare RuntimeError: on a CUDA machine `restore --device cuda:x` ended in a
    traceback (the CLI turns only the library's typed errors into one line)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match="not understood"):
        runtime_module.select_device(name)


def test_runtime_autocast_runs_networks_in_the_precision():
    conv = torch.nn.Conv2d(1, 2, 3)
    image = torch.rand(1, 1, 8, 8)
    with Runtime(CPU, "bf16").autocast():
        assert conv(image).dtype == torch.bfloat16
    with Runtime(CPU, "fp32").autocast():
        assert conv(image).dtype == torch.float32
    with pytest.raises(DeviceError):
        Runtime(CPU, "auto")  # type: ignore[arg-type]


def test_tile_apply_under_bf16_is_float32_and_close_to_fp32():
    torch.manual_seed(0)
    network = ScratchUNet(ScratchUNetConfig(channels=(4, 8, 8))).eval()
    image = torch.rand(1, 1, 150, 200)

    def run(precision: str) -> torch.Tensor:
        return tile_apply(
            lambda t: torch.sigmoid(network(t)), image, tile=96, overlap=16, multiple_of=network.size_multiple, precision=precision
        )

    exact, reduced = run("fp32"), run("bf16")
    assert reduced.dtype == torch.float32 and reduced.shape == exact.shape
    difference = (reduced - exact).abs()
    assert 0 < difference.max().item() < 1e-2  # bf16 keeps 8 bits of mantissa: ~0.4% per operation
    assert difference.mean().item() < 2e-3
    assert next(network.parameters()).dtype == torch.float32  # autocast, not cast weights


def test_face_detection_stays_fp32_inside_a_bf16_autocast():
    from oldphoto.imageio import load_rgb
    from oldphoto.registry import FACE_DETECTOR_MODEL, get_spec
    from oldphoto.restore.face_detect import detect_faces
    from oldphoto.weights import load_network

    photo = load_rgb(Path(__file__).parent / "fixtures" / "face-1870.jpg")
    detector = load_network(get_spec(FACE_DETECTOR_MODEL))
    exact = detect_faces(photo, detector)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = detect_faces(photo, detector)
    assert [face.box for face in inside] == [face.box for face in exact]


def test_fp16_flag_is_an_alias_of_precision_fp16():
    assert chosen_precision("auto", fp16=True) == "fp16"
    assert chosen_precision("fp16", fp16=True) == "fp16"
    assert chosen_precision("bf16", fp16=False) == "bf16"
    with pytest.raises(ConfigError, match="conflicts"):
        chosen_precision("bf16", fp16=True)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_cli_fp16_reaches_the_runtime_as_fp16(album, tmp_path, random_scratch_model, monkeypatch):
    from oldphoto.cli import restore as restore_command

    asked: list[str] = []

    def fake_runtime(device, precision, *args):
        asked.append(precision)
        return Runtime(CPU, "fp16")

    monkeypatch.setattr(restore_command, "make_runtime", fake_runtime)
    result = invoke("restore", str(album), "-o", str(tmp_path / "out"), "--fp16", "--dry-run", *STAGES)
    assert result.exit_code == 0, result.output
    assert asked == ["fp16"]
    assert "deprecated" in result.output  # (the plan's "cpu fp16" is this fake runtime's own; asked is the check)
    conflict = invoke("restore", str(album), "-o", str(tmp_path / "out"), "--fp16", "--precision", "bf16", *STAGES)
    assert conflict.exit_code == 2 and "conflicts" in conflict.output


def test_dry_run_shows_the_resolved_precision(album, tmp_path, random_scratch_model, native_bf16):
    result = invoke("restore", str(album), "-o", str(tmp_path / "out"), "--device", "cpu", "--dry-run", *STAGES)
    assert result.exit_code == 0, result.output
    assert "cpu bf16" in result.output


def test_report_records_the_precision(album, tmp_path, random_scratch_model, native_bf16):
    for precision, expected in (("auto", "bf16"), ("fp32", "fp32")):
        report = tmp_path / f"{precision}.json"
        out = tmp_path / precision
        result = invoke(
            "restore", str(album), "-o", str(out), "--device", "cpu", "--precision", precision, "--report", str(report), *STAGES
        )
        assert result.exit_code == 0, result.output
        payload = json.loads(report.read_text())
        assert payload["precision"] == expected and f"cpu {expected}" in payload["runtime"]
        assert {image["precision"] for image in payload["images"]} == {expected}


def test_evaluate_records_the_precision(tmp_path, native_bf16):
    from oldphoto.imageio import save_rgb

    from .conftest import smooth_image

    for folder in ("clean", "degraded"):
        save_rgb(tmp_path / "set" / folder / "p.png", smooth_image(32, 40))
    summary = tmp_path / "summary.json"
    result = invoke("evaluate", str(tmp_path / "set"), "-m", "identity", "--device", "cpu", "--precision", "auto", "--json", str(summary))
    assert result.exit_code == 0, result.output
    assert json.loads(summary.read_text())["precision"] == "bf16"


def test_the_cpu_flags_decide_native_bf16(monkeypatch, tmp_path):
    def with_cpuinfo(text: str) -> bool:
        original = Path.read_text
        monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: text if str(self) == "/proc/cpuinfo" else original(self, *a, **k))
        try:
            return runtime_module.cpu_has_native_bf16.__wrapped__()
        finally:
            monkeypatch.setattr(Path, "read_text", original)

    assert with_cpuinfo("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert with_cpuinfo("flags\t\t: fpu amx_tile amx_bf16\n")
    assert not with_cpuinfo("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n")

