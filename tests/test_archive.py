"""Archives on many machines: --shard, report merge, batch robustness (tier 2 and 3)."""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto.errors import ConfigError
from oldphoto.inputs import discover_inputs
from oldphoto.reports import merge_reports
from oldphoto.shards import Shard, parse_shard, select_shard

from .test_cli_restore import STAGES, app, invoke, make_photo, runner


def archive(folder: Path, count: int, start: int = 0) -> list[Path]:
    return [make_photo(folder / f"box{i % 3}" / f"scan{i:03d}.png", size=(16, 16)) for i in range(start, start + count)]


def keys(files) -> set[str]:
    return {item.shard_key for item in files}


def test_shards_are_disjoint_cover_everything_and_stay_put_when_photos_are_added(tmp_path):
    folder = tmp_path / "archive"
    archive(folder, 60)
    found = discover_inputs([str(folder)], recursive=True).files
    shards = [keys(select_shard(found, Shard(k, 4))) for k in range(4)]
    assert set().union(*shards) == keys(found) and sum(map(len, shards)) == len(found) == 60
    assert all(5 <= len(shard) <= 25 for shard in shards)  # a hash split, not everything in one shard

    archive(folder, 30, start=60)
    grown = discover_inputs([str(folder)], recursive=True).files
    for k in range(4):
        assert keys(select_shard(grown, Shard(k, 4))) >= shards[k]  # nobody moved; new photos joined


def test_the_shard_key_is_relative_to_the_input_root_so_every_machine_agrees(tmp_path):
    for mount in ("mnt-a", "mnt-b"):
        archive(tmp_path / mount / "archive", 12)
    by_folder = [keys(select_shard(discover_inputs([str(tmp_path / m / "archive")], recursive=True).files, Shard(1, 3))) for m in ("mnt-a", "mnt-b")]
    assert by_folder[0] == by_folder[1] and by_folder[0]
    by_glob = discover_inputs([str(tmp_path / "mnt-a" / "archive" / "box*" / "*.png")]).files
    assert keys(by_glob) == keys(discover_inputs([str(tmp_path / "mnt-a" / "archive")], recursive=True).files)


def test_shard_auto_reads_slurm_and_kubernetes_and_refuses_clearly():
    slurm = {"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_STEP": "2"}
    assert parse_shard("auto", slurm) == Shard(2, 8)
    assert parse_shard("auto", {**slurm, "SLURM_ARRAY_TASK_STEP": "1", "SLURM_ARRAY_TASK_ID": "17"}) == Shard(7, 8)
    assert parse_shard("auto/16", {"JOB_COMPLETION_INDEX": "5"}) == Shard(5, 16)
    assert parse_shard("3/4", {}) == Shard(3, 4)
    with pytest.raises(ConfigError, match="SLURM_ARRAY_TASK_ID"):
        parse_shard("auto", {})
    with pytest.raises(ConfigError, match="JOB_COMPLETION_INDEX"):
        parse_shard("auto/4", {})
    for bad in ("4/4", "-1/4", "1/0", "x/4", "3", "1/x"):
        with pytest.raises(ConfigError):
            parse_shard(bad, {})


def test_sharded_runs_together_restore_each_photo_once_and_merge_into_one_report(tmp_path, random_scratch_model, monkeypatch):
    folder = tmp_path / "archive"
    photos = archive(folder, 9)
    out = tmp_path / "out"
    template = str(tmp_path / "report-{shard}.json")
    for k in range(3):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(k))
        result = invoke("restore", str(folder), "-r", "-o", str(out), "--shard", "auto/3", "--report", template, *STAGES)
        assert result.exit_code == 0, result.output
    reports = [tmp_path / f"report-{k}-of-3.json" for k in range(3)]
    parts = [json.loads(path.read_text()) for path in reports]
    assert [part["shard"] for part in parts] == ["0-of-3", "1-of-3", "2-of-3"]
    inputs = [record["input"] for part in parts for record in part["images"]]
    assert sorted(inputs) == sorted(map(str, photos))  # disjoint and complete
    assert len(list(out.rglob("*.png"))) == 9

    merged_path = tmp_path / "all.json"
    result = invoke("report", "merge", *map(str, reports), "-o", str(merged_path))
    assert result.exit_code == 0, result.output
    merged = json.loads(merged_path.read_text())
    assert sorted(record["input"] for record in merged["images"]) == sorted(map(str, photos))
    assert merged["totals"]["images"] == 9 and merged["totals"]["statuses"] == {"restored": 9}
    assert merged["totals"]["megapixels"] == pytest.approx(sum(p["totals"]["megapixels"] for p in parts))
    assert [part["report"] for part in merged["merged_from"]] == list(map(str, reports))
    # A merge replaces an earlier merge, not unasked a run's own report: merged into shard 2's report, its record was lost.
    assert invoke("report", "merge", *map(str, reports), "-o", str(merged_path)).exit_code == 0
    before = reports[2].read_text()
    result = invoke("report", "merge", *map(str, reports[:2]), "-o", str(reports[2]))
    assert result.exit_code == 2 and "is the report of a run, not a merge" in " ".join(result.output.split()), result.output
    assert reports[2].read_text() == before
    # Never a photo a report lists, even with --overwrite (it turned the scan into JSON).
    listed = Path(parts[0]["images"][0]["input"])
    photo_bytes = listed.read_bytes()
    result = invoke("report", "merge", str(reports[0]), "-o", str(listed), "--overwrite")
    assert result.exit_code == 2 and "a photo or output the reports list" in " ".join(result.output.split()), result.output
    assert listed.read_bytes() == photo_bytes


def test_shards_sharing_one_report_name_are_refused(tmp_path, random_scratch_model):
    """Two shards given --report rep.json on one disk: the second replaced the first's report without a word."""
    folder = tmp_path / "archive"
    archive(folder, 4)
    report = tmp_path / "rep.json"
    args = ("restore", str(folder), "-r", "-o", str(tmp_path / "out"), "--report", str(report), *STAGES)
    assert invoke(*args, "--shard", "0/2").exit_code == 0
    first = report.read_text()
    result = invoke(*args, "--shard", "1/2")
    assert result.exit_code == 2 and "holds the report of shard 0-of-2" in " ".join(result.output.split()), result.output
    assert report.read_text() == first
    assert invoke(*args, "--shard", "0/2").exit_code == 0  # the same shard again replaces its own
    result = invoke(*args)  # unsharded: told to name its report otherwise, not to use {shard}
    shown = " ".join(result.output.split())
    assert result.exit_code == 2 and "give this run's report another name" in shown and "{shard}" not in shown, result.output


def test_merge_keeps_the_best_outcome_of_a_photo_recorded_twice():
    def record(name: str, status: str, megapixels: float = 1.0) -> dict:
        fields = {"megapixels": megapixels, "seconds": 2.0} if status == "restored" else {"error": "x"}
        return {"input": name, "output": f"out/{name}", "status": status, **fields}

    crashed = {"images": [record("a", "restored"), record("b", "failed")]}
    rerun = {"images": [record("a", "skipped"), record("b", "restored", 3.0), record("c", "refused")]}
    merged = merge_reports([crashed, rerun], ["first.json", "rerun.json"])
    assert {r["input"]: r["status"] for r in merged["images"]} == {"a": "restored", "b": "restored", "c": "refused"}
    assert merged["totals"]["megapixels"] == 4.0 and merged["totals"]["seconds_per_megapixel"] == 1.0
    # The same photo named relatively in one run and absolutely in another is one photo, not two.
    absolute = {"images": [record(str(Path("a").resolve()), "skipped")]}
    merged = merge_reports([crashed, absolute], ["first.json", "absolute.json"])
    assert len(merged["images"]) == 2 and merged["totals"]["statuses"] == {"failed": 1, "restored": 1}



def test_a_merge_with_a_report_that_does_not_say_where_it_ran_claims_no_folder(tmp_path, caplog):
    """A report written before reports said where their run ran, merged with one of another folder: the merged
    report said working_directory = where the merge ran, from which the old report's relative paths lead nowhere."""
    old = {"images": [{"input": "photos/a.png", "output": "o/a.png", "status": "refused", "error": "x"}]}
    new = {"working_directory": str(tmp_path / "w2"), "images": [{"input": "p2/a.png", "output": "o/a.png", "status": "refused", "error": "x"}]}
    with caplog.at_level("WARNING", logger="oldphoto.reports"):
        merged = merge_reports([old, new], ["old.json", "new.json"])
    assert merged["working_directory"] is None and "do not say where their run ran" in caplog.text
    assert {r["input"] for r in merged["images"]} == {"photos/a.png", str(tmp_path / "w2" / "p2" / "a.png")}
    assert merge_reports([new, new], ["a.json", "b.json"])["working_directory"] == str(tmp_path / "w2")


def test_merge_reads_relative_paths_from_where_each_run_ran(tmp_path, random_scratch_model, monkeypatch):
    """Two runs in two folders each record "scan.png": resolved from where the merge ran, they were one photo and
    box1's was dropped ("1 photos")."""
    for box in ("box1", "box2"):
        make_photo(tmp_path / box / "scan.png", size=(16, 16 + len(box)))
        monkeypatch.chdir(tmp_path / box)
        assert invoke("restore", "scan.png", "-o", f"../out-{box}", "--report", f"../{box}.json", *STAGES).exit_code == 0
    monkeypatch.chdir(tmp_path)
    result = invoke("report", "merge", "box1.json", "box2.json", "-o", "all.json")
    assert result.exit_code == 0, result.output
    merged = json.loads((tmp_path / "all.json").read_text())
    assert sorted(record["input"] for record in merged["images"]) == [str(tmp_path / "box1" / "scan.png"), str(tmp_path / "box2" / "scan.png")]
    assert merged["totals"]["images"] == 2


def test_merge_says_which_part_ended_early():
    """report merge dropped "stopped": a merge holding an interrupted shard read as a complete run."""
    done = {"images": [{"input": "a", "output": "out/a", "status": "restored", "megapixels": 1.0, "seconds": 1.0}], "stopped": None}
    cut = {"images": [{"input": "b", "output": "out/b", "status": "failed", "error": "x"}], "stopped": "interrupted"}
    merged = merge_reports([done, cut], ["s0.json", "s1.json"])
    assert merged["stopped"] == "s1.json: interrupted"
    assert [part["stopped"] for part in merged["merged_from"]] == [None, "interrupted"]
    assert merge_reports([done, done], ["s0.json", "again.json"])["stopped"] is None
    assert merge_reports([cut, done], ["crashed.json", "other.json"])["stopped"] == "crashed.json: interrupted"
    crashed, rerun = {**cut, "shard": "1-of-2"}, {**done, "shard": "1-of-2"}
    assert merge_reports([crashed, rerun], ["crashed.json", "rerun.json"])["stopped"] is None  # the shard re-run


def test_merge_refuses_a_file_that_is_not_a_report(tmp_path):
    bogus = tmp_path / "notes.json"
    bogus.write_text('{"hello": 1}')
    result = invoke("report", "merge", str(bogus), "-o", str(tmp_path / "all.json"))
    assert result.exit_code == 2 and "not an oldphoto restore report" in result.output
    assert not (tmp_path / "all.json").exists()
    # Records it cannot merge, total or show: a KeyError or AttributeError traceback halfway through before.
    for images, said in (
        ([{"input": "a.jpg", "output": "o/a.jpg"}], "photo record 1 has no 'status' text"),
        (["a.jpg"], "photo record 1 is a str, not an object"),
        ([{"input": "a.jpg", "output": "o/a.jpg", "status": "restored", "seconds": 1.0}], "has no 'megapixels' number"),
        # Hand-edited fields the gallery reads: tracebacks (ValueError, AttributeError, TypeError) before.
        ([{"input": "a.jpg", "output": "o/a.jpg", "status": "skipped", "width": "wide"}], "has a 'width' that is not a number"),
        ([{"input": "a.jpg", "output": "o/a.jpg", "status": "skipped", "scratch_coverage": "high"}], "'scratch_coverage' that is not a number"),
        ([{"input": "a.jpg", "output": "o/a.jpg", "status": "skipped", "faces": "x"}], "has 'faces' that are not a list of objects"),
        ([{"input": "a.jpg", "output": "o/a.jpg", "status": "skipped", "faces": [{"box": "x"}]}], "face 1 whose 'box' is not"),
    ):
        bogus.write_text(json.dumps({"images": images, "totals": {}}))
        for command in (["merge", str(bogus), "-o", str(tmp_path / "all.json")], ["gallery", str(bogus), "-o", str(tmp_path / "g.html")]):
            result = runner.invoke(app, ["report", *command])
            assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output
            assert result.exception is None or isinstance(result.exception, SystemExit)
    bogus.write_text(json.dumps({"images": [], "totals": {}, "stages": 5}))
    result = runner.invoke(app, ["report", "gallery", str(bogus), "-o", str(tmp_path / "g.html")])
    assert result.exit_code == 2 and "'stages' are not a list of text" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "all.json").exists() and not (tmp_path / "g.html").exists()


def test_a_report_name_with_shard_needs_a_shard(tmp_path, random_scratch_model):
    photo = make_photo(tmp_path / "a.png")
    result = invoke("restore", str(photo), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "r-{shard}.json"), *STAGES)
    assert result.exit_code == 2 and "{shard}" in result.output


def test_an_output_folder_that_cannot_be_written_is_one_error_at_the_start(tmp_path, random_scratch_model):
    photos = [make_photo(tmp_path / "in" / f"{i}.png") for i in range(3)]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("restore", str(tmp_path / "in"), "-o", str(blocker / "out"), *STAGES)
    assert result.exit_code == 2, result.output
    assert f"{blocker} is a file; give -o a folder" in " ".join(result.output.split())  # not "(File exists)"
    assert result.output.count("failed") == 0  # one error, not one per photo
    assert blocker.read_text() == "not a folder" and sorted(p.name for p in photos[0].parent.iterdir()) == ["0.png", "1.png", "2.png"]


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        folder = tmp_path / name
        if not _mount_tmpfs(folder, options):
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_read_only_output_mount_is_one_error_at_the_start(tmp_path, tmpfs, random_scratch_model):
    make_photo(tmp_path / "in" / "a.png")
    read_only = tmpfs("ro", "ro,size=1m")
    result = invoke("restore", str(tmp_path / "in"), "-o", str(read_only), *STAGES)
    assert result.exit_code == 2 and "cannot write into the output folder" in result.output
    # The dry run planned "restore" and exited 0; --save-faces on it failed each photo with a face, after its work.
    result = invoke("restore", str(tmp_path / "in"), "-o", str(read_only), "--dry-run", *STAGES)
    assert result.exit_code == 2 and "cannot write into the output folder" in " ".join(result.output.split()), result.output
    for dry in ([], ["--dry-run"]):
        faces = ("--save-faces", str(read_only / "faces"), "--no-global", "--no-scratch")
        result = invoke("restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *faces, *dry)
        assert result.exit_code == 2 and "cannot write into the --save-faces folder" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out").exists()
    # A finished archive on read-only media: the run skips every photo as done and exits 0, and so must the plan.
    done = tmpfs("done", "size=1m")
    assert invoke("restore", str(tmp_path / "in"), "-o", str(done), *STAGES).exit_code == 0
    assert subprocess.run(["mount", "-o", "remount,ro", str(done)], capture_output=True, check=False).returncode == 0
    assert invoke("restore", str(tmp_path / "in"), "-o", str(done), *STAGES).exit_code == 0
    result = invoke("restore", str(tmp_path / "in"), "-o", str(done), "--dry-run", *STAGES)
    assert result.exit_code == 0, result.output


def test_a_full_disk_stops_the_batch_with_one_line_and_no_partial_file(tmp_path, tmpfs, random_scratch_model):
    for i in range(6):
        make_photo(tmp_path / "in" / f"{i}.png", size=(160, 200))  # ~90 KB as PNG: a 200 KB disk holds two
    small = tmpfs("small", "size=200k")
    result = invoke("restore", str(tmp_path / "in"), "-o", str(small), "--report", str(tmp_path / "r.json"), *STAGES)
    assert result.exit_code == 1, result.output
    assert result.output.count("stopped:") == 1 and "no space left" in result.output
    assert "failed:" not in result.output  # not one failure per remaining photo
    written = sorted(p.name for p in small.iterdir())
    assert 1 <= len(written) < 6 and not [name for name in written if name.endswith(".part")]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["totals"]["images"] == len(written)


def test_a_full_disk_is_detected_whatever_the_file_system(tmp_path, random_scratch_model, monkeypatch):
    """The same stop without a tmpfs: the second write fails with ENOSPC."""
    import oldphoto.atomic as atomic

    for i in range(4):
        make_photo(tmp_path / "in" / f"{i}.png")
    real_replace, calls = atomic.os.replace, []

    def replace(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace)
    out = tmp_path / "out"
    result = invoke("restore", str(tmp_path / "in"), "-o", str(out), *STAGES)
    assert result.exit_code == 1 and "stopped:" in result.output and "no space left" in result.output
    assert len(calls) == 2 and sorted(p.name for p in out.iterdir()) == ["0.png"]


def test_engine_ray_without_the_extra_is_one_clear_error_before_anything_runs(tmp_path, random_scratch_model, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if `oldphoto[ray]` were not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    photo = make_photo(tmp_path / "a.png")
    result = invoke("restore", str(photo), "-o", str(tmp_path / "out"), "--engine", "ray", *STAGES)
    assert result.exit_code == 2
    assert "pip install 'oldphoto[ray]'" in result.output  # the extra's brackets survive Rich's markup
    assert "photos" not in result.output and not (tmp_path / "out").exists()


def test_a_folder_it_may_not_read_is_an_error_not_skipped_unseen(tmp_path, monkeypatch):
    """A sub-folder without read permission was skipped by -r without a word (exit 0), and one given as an input was
    called a folder that "contains no images". (Simulated: as root every folder is readable.)"""
    import os

    from oldphoto import inputs

    album = tmp_path / "album"
    (album / "locked").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(album / "ok.png")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(inputs.os, "scandir", scandir)
    found = discover_inputs([str(album)], recursive=True)
    assert [item.path.name for item in found.files] == ["ok.png"]
    assert found.problems == [f"{album / 'locked'}: cannot read this folder (permission denied)"]
    assert discover_inputs([str(album / "locked")]).problems == [f"{album / 'locked'}: cannot read this folder (permission denied)"]


def test_a_shard_rerun_after_a_stop_keeps_the_photos_restored_before_it(tmp_path, random_scratch_model, monkeypatch):
    """The re-run replaced the stopped shard's report: the photos it had restored were only "skipped, output exists"
    there, without figures, and a merge left them out of the totals."""
    photos = [make_photo(tmp_path / "in" / f"p{i}.png") for i in range(2)]
    report = tmp_path / "r-0-of-1.json"
    args = ("restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "r-{shard}.json"), "--shard", "0/1", *STAGES)
    assert invoke(*args).exit_code == 0
    stopped = json.loads(report.read_text())  # as a run stopped after its first photo leaves it
    stopped["images"] = [record for record in stopped["images"] if record["input"].endswith("p0.png")]
    # A photo this run does not hold is not taken into its report.
    stopped["images"].append({**stopped["images"][0], "input": str(tmp_path / "other" / "x.png")})
    stopped["stopped"] = "interrupted"
    report.write_text(json.dumps(stopped))
    (tmp_path / "out" / "p1.png").unlink()
    assert invoke(*args).exit_code == 0
    finished = json.loads(report.read_text())
    statuses = {Path(record["input"]).name: record["status"] for record in finished["images"]}
    assert statuses == {"p0.png": "restored", "p1.png": "restored"} and finished["stopped"] is None
    assert finished["totals"]["images"] == 2 and len(photos) == 2
    # A report of a run that ran through is replaced, as a re-run expects.
    assert invoke(*args).exit_code == 0
    assert {record["status"] for record in json.loads(report.read_text())["images"]} == {"skipped"}
