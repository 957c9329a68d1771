"""Photos per minute: the local engine against Ray with 1 and 2 workers, and what per-worker model loading costs.

    python benchmarks/engine_throughput.py [--count 20] [--source ../shared/data/real_old/deoldify]

Runs `oldphoto restore` as a user would (default stages and precision) on the first COUNT photos of SOURCE sorted by
name, into fresh folders, and prints wall time, photos per minute and seconds per megapixel per engine; then times
loading the models (what each Ray worker pays once) and extrapolates to an archive from the per-core rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def run(label: str, photos: list[Path], extra: list[str], work: Path) -> dict:
    inputs, out, report = work / "inputs", work / f"out-{label}", work / f"report-{label}.json"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "oldphoto", "restore", str(inputs), "-o", str(out), "--quiet", "--report", str(report), *extra],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    totals = json.loads(report.read_text())["totals"]
    return {
        "engine": label,
        "wall_s": round(wall, 1),
        "photos_per_minute": round(60 * len(photos) / wall, 2),
        "photo_seconds_sum": totals["seconds"],
        "s_per_mp_wall": round(wall / totals["megapixels"], 3),
    }


def model_loading_seconds() -> float:
    code = (
        "import time; t=time.perf_counter();"
        "from oldphoto.restore.pipeline import Restorer, RestoreOptions; from oldphoto.runtime import make_runtime;"
        "Restorer(make_runtime('cpu', 'auto'), RestoreOptions()); print(time.perf_counter()-t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=Path("../shared/data/real_old/deoldify"))
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    photos = sorted(p for p in args.source.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[: args.count]
    megapixels = sum(w * h for w, h in (Image.open(p).size for p in photos)) / 1e6
    print(f"{len(photos)} photos, {megapixels:.2f} MP, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "inputs").mkdir()
        for photo in photos:
            shutil.copy(photo, work / "inputs" / photo.name)
        rows = [
            run("local (2 threads)", photos, ["--threads", "2"], work),
            run("ray 1 worker x 2 CPU", photos, ["--engine", "ray", "--workers", "1", "--cpus-per-worker", "2"], work),
            run("ray 2 workers x 1 CPU", photos, ["--engine", "ray", "--workers", "2", "--cpus-per-worker", "1"], work),
        ]
    print(f"{'engine':<24} {'wall s':>8} {'photos/min':>11} {'s/MP (wall)':>12}")
    for row in rows:
        print(f"{row['engine']:<24} {row['wall_s']:>8} {row['photos_per_minute']:>11} {row['s_per_mp_wall']:>12}")
    loading = model_loading_seconds()
    print(f"model loading (imports + all stages' weights, once per worker or run): {loading:.1f} s")
    best = min(rows, key=lambda row: row["s_per_mp_wall"])
    core_seconds_per_mp = best["s_per_mp_wall"] * (os.cpu_count() or 2)
    archive_mp, cores = 1e5 * 6, 16 * 16
    hours = archive_mp * core_seconds_per_mp / cores / 3600
    print(
        f"per-core rate {core_seconds_per_mp:.2f} core-s/MP (best: {best['engine']}); 10^5 photos of 6 MP on 16 nodes x "
        f"16 cores: {hours:.1f} h, if throughput scales with cores (plus {loading:.0f} s of loading per worker)"
    )


if __name__ == "__main__":
    main()
