"""SIGTERM, as `timeout`, Slurm or systemd send it, stops a command the way Ctrl-C does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from .conftest import smooth_image


def test_sigterm_stops_degrade_cleanly_with_its_manifest(tmp_path):
    """Killed by SIGTERM, degrade left a clean/ file without the rest of its pair and no manifest, and a re-run with
    --overwrite refused the folder. Now it stops as on Ctrl-C: exit 130, only whole pairs, the manifest listing them."""
    sources = tmp_path / "photos"
    sources.mkdir()
    for k in range(150):
        pixels = (smooth_image(160, 160, seed=k) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(sources / f"p{k:03d}.png")
    out = tmp_path / "set"
    command = [sys.executable, "-m", "oldphoto", "degrade", str(sources), "-o", str(out), "--preset", "default-v1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    # ignore/ is the last part a v1 pair writes: with two there, the first pair is whole and listed (with one, the signal
    # could land before make_pair returned, and the first pair was rightly removed, leaving nothing to check).
    while len(list((out / "ignore").glob("*.png"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "degrade finished before it could be stopped: give it more photos"
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    made = json.loads((out / "manifest.json").read_text())["images"]
    stems = {pair["stem"] for pair in made}
    assert 0 < len(stems) < 150
    for part in ("clean", "degraded", "mask"):
        assert {path.stem for path in (out / part).glob("*.png")} == stems, part


def test_ctrl_c_while_the_cli_loads_is_one_line_and_status_130(monkeypatch, capsys):
    """The CLI's imports (PyTorch, OpenCV) take seconds; a Ctrl-C then printed a traceback through them."""
    import importlib.abc
    import sys

    from oldphoto.cli import launch

    class Interrupting(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "oldphoto.cli.app":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "oldphoto.cli.app", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as stopped:
        launch.main()
    assert stopped.value.code == 130 and "interrupted while starting" in capsys.readouterr().err
