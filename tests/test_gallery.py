"""``restore --gallery`` and ``report gallery``: one static page that works from disk, checked by parsing it, plus a
slow check in a real headless Chromium (skipped where Debian's chromium is not installed)."""

from __future__ import annotations

import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from oldphoto.gallery import write_gallery

from .test_cli_restore import STAGES, invoke, make_photo

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


class Page(HTMLParser):
    """The parts of the gallery a test looks at: each photo section's images, controls, face crops and title, the
    rows of the not-restored table, and every URL the page references."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.photos: list[dict] = []
        self.not_restored: list[str] = []
        self.urls: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self._row: list[str] | None = None
        self._heading = self._in_photo = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append((tag, attributes))
        classes = attributes.get("class", "").split()
        for name in ("src", "href"):
            if name in attributes:
                self.urls.append(attributes[name])
        self.urls.extend(re.findall(r'url\("([^"]+)"\)', attributes.get("style", "")))
        if tag == "section":
            self._in_photo = "photo" in classes
            if self._in_photo:
                self.photos.append({"images": {}, "controls": [], "crops": [], "name": ""})
        elif not self._in_photo:
            if tag == "tr":
                self._row = []
        elif tag == "img":
            self.photos[-1]["images"][classes[0]] = attributes["src"]
        elif tag == "input":
            self.photos[-1]["controls"].append(classes[0])
        elif "crop" in classes:
            self.photos[-1]["crops"].append(attributes["style"])
        elif tag == "h2":
            self._heading = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._in_photo = False
        if tag == "h2":
            self._heading = False
        if tag == "tr" and self._row is not None:
            self.not_restored.append(" ".join(self._row))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._heading and self.photos:
            self.photos[-1]["name"] += data
        if self._row is not None:
            self._row.append(data)


def local_file(index: Path, url: str) -> Path:
    """The file a page reference points at, after checking it is relative (works from disk, anywhere)."""
    assert "://" not in url and not url.startswith("/"), url
    assert " " not in url and "#" not in url, f"not URL-quoted: {url}"
    return (index.parent / unquote(url)).resolve()


def test_restore_gallery_references_every_photo_relatively_and_lists_the_failed(tmp_path, random_scratch_model):
    album, out = tmp_path / "album", tmp_path / "out"
    make_photo(album / "a.jpg")
    make_photo(album / "old photo #2.png", gray=True)  # a space and a "#": must be URL-quoted to load from disk
    (album / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    result = invoke("restore", str(album), "-o", str(out), "--gallery", *STAGES)
    assert result.exit_code == 1, result.output  # torn.png failed; the gallery is written all the same
    index = out / "index.html"
    assert f"gallery: {index}" in " ".join(result.output.split())
    text = index.read_text()
    assert "http://" not in text and "https://" not in text
    page = Page(text)
    assert not [tag for tag, attrs in page.tags if tag == "link" or (tag == "script" and "src" in attrs)]
    assert sorted(photo["name"] for photo in page.photos) == ["a.jpg", "old photo #2.png"]
    for photo in page.photos:
        name = photo["name"]
        images = {kind: local_file(index, url) for kind, url in photo["images"].items()}
        assert images == {
            "before": (album / name).resolve(),
            "after": (out / name).resolve(),
            "mask": (out / f"{Path(name).stem}_mask.png").resolve(),  # --gallery implies --save-mask
        }
        assert all(path.is_file() for path in images.values())
        assert photo["images"]["before"].startswith("../album/")  # the input, outside the page's folder
        assert photo["controls"] == ["slider", "mask-toggle"]
    assert all(local_file(index, url).is_file() for url in page.urls if not url.startswith("#"))
    [failed] = page.not_restored[1:]  # after the header row
    assert failed.startswith("torn.png failed") and "cannot decode" in failed


def test_a_rerun_or_another_shard_keeps_the_photos_the_gallery_already_shows(tmp_path, random_scratch_model):
    """The gallery was written from the current run only: a re-run (every photo skipped as done) left a page of
    "output exists" notes without figures, and each shard's page replaced the other shards' photos."""
    album, out = tmp_path / "album", tmp_path / "out"
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        make_photo(album / name)
    assert invoke("restore", str(album), "-o", str(out), "--gallery", *STAGES).exit_code == 0
    first = Page((out / "index.html").read_text())
    assert invoke("restore", str(album), "-o", str(out), "--gallery", *STAGES).exit_code == 0
    again = Page((out / "index.html").read_text())
    assert sorted(photo["name"] for photo in again.photos) == sorted(photo["name"] for photo in first.photos) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert "output exists" not in (out / "index.html").read_text()
    sharded = tmp_path / "sharded"
    for k in range(2):
        assert invoke("restore", str(album), "-o", str(sharded), "--gallery", "--shard", f"{k}/2", *STAGES).exit_code == 0
    assert sorted(photo["name"] for photo in Page((sharded / "index.html").read_text()).photos) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def test_shards_finishing_at_once_add_to_the_gallery_one_at_a_time(tmp_path, monkeypatch, random_scratch_model):
    """Each shard reads the page, adds its photos and writes it back: two doing so at once, the later write dropped
    the other's photos. The read and the write happen under a POSIX record lock (one that holds over NFS, unlike
    flock on a folder) that another process cannot take meanwhile."""
    import subprocess
    import sys

    import oldphoto.cli.restore as restore_cli
    from oldphoto.atomic import LOCK_NAME

    out = tmp_path / "out"
    held: list[bool] = []
    real = restore_cli.with_earlier_photos
    probe = (
        "import fcntl, os, sys\n"
        "handle = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n"
    )

    def checking(index, payload):
        # Another process, as another shard would be: record locks do not conflict within one process.
        held.append(subprocess.run([sys.executable, "-c", probe, str(out / LOCK_NAME)], check=False).returncode == 3)
        return real(index, payload)

    monkeypatch.setattr(restore_cli, "with_earlier_photos", checking)
    make_photo(tmp_path / "album" / "a.jpg")
    assert invoke("restore", str(tmp_path / "album"), "-o", str(out), "--gallery", *STAGES).exit_code == 0
    assert held == [True]


def test_a_gallery_added_to_from_another_folder_still_finds_the_earlier_photos(tmp_path, monkeypatch, random_scratch_model):
    """Run 1 from one folder with relative paths, run 2 from another: the page showed run 1's photo as "not found"
    (its relative paths read from run 2's folder), and listed it twice when run 2 held it too."""
    album = tmp_path / "album"
    for name in ("a.jpg", "b.jpg"):
        make_photo(album / name)
    monkeypatch.chdir(tmp_path)
    assert invoke("restore", "album/a.jpg", "-o", "out", "--gallery", *STAGES).exit_code == 0
    monkeypatch.chdir(album)
    assert invoke("restore", "a.jpg", str(album / "b.jpg"), "-o", str(tmp_path / "out"), "--gallery", *STAGES).exit_code == 0
    text = (tmp_path / "out" / "index.html").read_text()
    page = Page(text)
    assert sorted(photo["name"] for photo in page.photos) == ["a.jpg", "b.jpg"] and "not found" not in text


def test_a_mask_left_by_an_earlier_run_is_not_shown_over_a_photo_restored_without_one(tmp_path, random_scratch_model):
    album, out = tmp_path / "album", tmp_path / "out"
    make_photo(album / "a.jpg")
    assert invoke("restore", str(album), "-o", str(out), "--gallery", *STAGES).exit_code == 0
    assert "mask" in Page((out / "index.html").read_text()).photos[0]["images"]
    result = invoke("restore", str(album), "-o", str(out), "--gallery", "--overwrite", "--no-scratch", "--no-faces")
    assert result.exit_code == 0, result.output
    assert (out / "a_mask.png").exists() and "mask" not in Page((out / "index.html").read_text()).photos[0]["images"]
    # Nor a mask an earlier run saved under other settings over a re-run that detected its own but saved none.
    report = tmp_path / "r2.json"
    result = invoke("restore", str(album), "-o", str(out), "--overwrite", "--report", str(report), *STAGES)
    assert result.exit_code == 0 and json.loads(report.read_text())["images"][0]["mask_saved"] is False, result.output
    assert invoke("report", "gallery", str(report), "-o", str(out / "page.html")).exit_code == 0
    assert (out / "a_mask.png").exists() and "mask" not in Page((out / "page.html").read_text()).photos[0]["images"]


def test_a_tiff_output_is_linked_with_a_note_not_shown_as_a_blank_slider(tmp_path, random_scratch_model):
    album, out = tmp_path / "album", tmp_path / "out"
    make_photo(album / "a.jpg")
    Image.open(album / "a.jpg").save(album / "scan.tif")
    (album / "a.jpg").unlink()
    assert invoke("restore", str(album), "-o", str(out), "--gallery", *STAGES).exit_code == 0
    text = (out / "index.html").read_text()
    assert "cannot be shown by a browser" in text and 'href="scan.tif"' in text
    assert not [url for url in Page(text).urls if url.endswith(".tif") and f'src="{url}"' in text]


def test_gallery_shows_faces_figures_and_escapes_text(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    for path in (photos / "family.png", out / "family.png", out / "plain.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((80, 100, 3), 128, np.uint8)).save(path)
    Image.fromarray(np.zeros((80, 100), np.uint8)).save(out / "family_mask.png")
    face = {"box": [40, 20, 20, 20], "landmarks": [[45, 25]] * 5, "score": 0.99, "refined": True}
    payload = {
        "runtime": "cpu fp32",
        "precision": "fp32",
        "stages": ["scratch detection", "face refinement"],
        "images": [
            {"input": str(photos / "family.png"), "output": str(out / "family.png"), "status": "restored", "width": 100,
             "height": 80, "megapixels": 0.008, "seconds": 0.5, "seconds_per_megapixel": 62.5, "scratch_coverage": 0.015,
             "faces_found": 2, "faces": [face, {**face, "box": [0, 60, 30, 20], "refined": False}]},
            {"input": str(photos / "plain.png"), "output": str(out / "plain.png"), "status": "restored", "width": 100,
             "height": 80, "faces": []},
            {"input": str(photos / "x.png"), "output": str(out / "x.png"), "status": "failed", "error": "<script>alert(1)</script> & co"},
        ],
        "totals": {"images": 2, "megapixels": 0.016, "seconds": 0.5, "seconds_per_megapixel": 31.25, "statuses": {"failed": 1, "restored": 2}},
    }
    index = write_gallery(out / "index.html", payload)
    text = index.read_text()
    page = Page(text)
    family, plain = page.photos
    # Face 0: the box grown by 15 % a side is x 37..63, y 17..43 (26 px square) of the 100 x 80 photo.
    assert len(family["crops"]) == 4 and not plain["crops"]
    assert "background-size: 384.615% 307.692%" in family["crops"][0]
    assert "background-position: 50.000% 31.481%" in family["crops"][0]  # 37 / (100 - 26), 17 / (80 - 26)
    before, after = (re.search(r'url\("([^"]+)"\)', style).group(1) for style in family["crops"][:2])
    assert local_file(index, before) == (photos / "family.png").resolve()
    assert local_file(index, after) == (out / "family.png").resolve()
    assert "face 1, score 0.99, not refined" in text
    assert "1.50 %" in text and "62.50" in text and "1 not restored: see the list" in text
    # The mask toggle only where a mask file exists; the input of "plain" is gone, so no slider either.
    assert family["controls"] == ["slider", "mask-toggle"] and plain["controls"] == []
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in text
    assert "stopped early" not in text
    # A stopped run says so at the top (it read as complete), a face the gate left alone is not called refined, and
    # a run that restored nothing has no "None s/MP".
    payload["stopped"] = "interrupted"
    payload["images"][0]["faces"][0] = {**face, "strength": 0.0, "fine_strength": 0.0}
    payload["totals"]["seconds_per_megapixel"] = None
    text = write_gallery(out / "index.html", payload).read_text()
    assert "<dt>stopped early</dt><dd>interrupted</dd>" in text and "face 0, score 0.99, left as it was" in text
    assert "None s/MP" not in text and "(None" not in text


def test_report_gallery_shows_a_merged_report_of_two_shards(tmp_path, monkeypatch, random_scratch_model):
    monkeypatch.chdir(tmp_path)  # relative paths in the reports, as a cluster job would write them
    for name in ("a.jpg", "b.jpg", "c.png", "d.png", "e.png"):
        make_photo(Path("album") / name)
    for shard in ("0/2", "1/2"):
        result = invoke("restore", "album", "-o", "out", "--shard", shard, "--save-mask", "--report", "r-{shard}.json", *STAGES)
        assert result.exit_code == 0, result.output
    shards = [json.loads(Path(f"r-{k}-of-2.json").read_text())["images"] for k in (0, 1)]
    assert all(shards), "each shard should restore at least one photo"
    assert invoke("report", "merge", "r-0-of-2.json", "r-1-of-2.json", "-o", "all.json").exit_code == 0

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    index = tmp_path / "site" / "index.html"
    # A mistyped --paths-from wrote a page of broken links and exited 0.
    typo = invoke("report", "gallery", str(tmp_path / "all.json"), "-o", str(index), "--paths-from", str(tmp_path / "nosuch"))
    assert typo.exit_code == 2 and not index.exists(), typo.output
    result = invoke("report", "gallery", str(tmp_path / "all.json"), "-o", str(index), "--paths-from", str(tmp_path))
    assert result.exit_code == 0, result.output
    page = Page(index.read_text())
    names = sorted(photo["name"] for photo in page.photos)
    assert names == sorted(Path(record["input"]).name for part in shards for record in part) == ["a.jpg", "b.jpg", "c.png", "d.png", "e.png"]
    for photo in page.photos:
        assert local_file(index, photo["images"]["after"]) == (tmp_path / "out" / photo["name"]).resolve()
        assert local_file(index, photo["images"]["mask"]).is_file()
    assert "r-0-of-2.json, r-1-of-2.json" in index.read_text()
    assert "is found from" not in result.output
    # Shards of one job ran in one folder: the merge keeps their relative paths and that folder as its
    # working_directory, from which the page finds them when nothing is found from here (a login node).
    assert json.loads((tmp_path / "all.json").read_text())["working_directory"] == str(tmp_path)
    result = invoke("report", "gallery", str(tmp_path / "all.json"), "-o", str(index))
    assert result.exit_code == 0 and "is found from" not in result.output and len(Page(index.read_text()).photos) == 5
    # Moved where neither folder finds them: said, not a page of "not found" passed over.
    (tmp_path / "out").rename(tmp_path / "out-moved")
    result = invoke("report", "gallery", str(tmp_path / "all.json"), "-o", str(index))
    assert result.exit_code == 0 and "none of the report's 5 restored photos is found" in " ".join(result.output.split())


def _check_script():
    spec = importlib.util.spec_from_file_location("check_gallery", REPO / "scripts" / "check_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium (apt-get install chromium)")
@pytest.mark.skipif(not (REPO / "scripts" / "check_gallery.py").is_file(), reason="scripts/ is not in this tree")
def test_gallery_in_headless_chromium_loads_from_disk_and_the_slider_follows_a_click(tmp_path, random_scratch_model):
    album, out = tmp_path / "album", tmp_path / "out"
    make_photo(album / "a.jpg", size=(240, 320))
    make_photo(album / "b c.png", size=(200, 200), gray=True)
    (album / "torn.png").write_bytes(b"not a png")
    assert invoke("restore", str(album), "-o", str(out), "--gallery", *STAGES).exit_code == 1
    check = _check_script()
    assert check.static_check(out / "index.html") == []
    seen = check.browser_check(out / "index.html", tmp_path / "shots", str(CHROMIUM), click_at=0.25)
    assert seen["problems"] == [], seen
    assert len(seen["images"]) == 6 and all(image["loaded"] for image in seen["images"])
    assert seen["after_drag"] == pytest.approx(75, abs=1) and seen["after_click"] == pytest.approx(25, abs=1)
    assert seen["range"] == pytest.approx(25, abs=1) and seen["mask_after"] != "none"
    assert any(row.startswith("torn.png") for row in seen["not_restored"])
    opened, clicked, whole = (Path(path) for path in seen["screenshots"])
    with Image.open(opened) as first, Image.open(clicked) as second:
        assert first.size == second.size == (1280, 900)
        assert np.abs(np.asarray(first, np.int16) - np.asarray(second, np.int16)).max() > 0  # the divider moved
    assert whole.stat().st_size > 0


def test_report_gallery_help_shows_metavars():
    result = invoke("report", "gallery", "--help")
    assert result.exit_code == 0
    assert re.search(r"--output\s+-o\s+FILE", result.output) and re.search(r"--paths-from\s+DIR", result.output)


def test_report_gallery_from_another_folder_never_replaces_a_listed_photo(tmp_path, monkeypatch, random_scratch_model):
    """Run from elsewhere, the listed photos' relative paths were read from there: `-o <a scan> --overwrite` replaced
    the scan with the page. A page below a file was a FileExistsError traceback."""
    make_photo(tmp_path / "job" / "photos" / "p0.png")
    monkeypatch.chdir(tmp_path / "job")
    assert invoke("restore", "photos", "-o", "out", "--report", "r.json", *STAGES).exit_code == 0
    monkeypatch.chdir(tmp_path)
    scan = tmp_path / "job" / "photos" / "p0.png"
    before = scan.read_bytes()
    for target in (scan, tmp_path / "job" / "out" / "p0.png"):
        result = invoke("report", "gallery", "job/r.json", "-o", str(target), "--overwrite")
        assert result.exit_code == 2 and "one of the photos it lists" in " ".join(result.output.split()), result.output
    assert scan.read_bytes() == before
    result = invoke("report", "gallery", "job/r.json", "-o", str(scan / "g.html"))
    assert result.exit_code == 2 and "is a file, not a folder" in " ".join(result.output.split()), result.output


def test_report_gallery_names_photos_whose_inputs_are_gone(tmp_path, monkeypatch, random_scratch_model):
    """An album moved after the run: the page showed results without their before side, and nothing was said."""
    make_photo(tmp_path / "photos" / "p0.png")
    monkeypatch.chdir(tmp_path)
    assert invoke("restore", "photos", "-o", "out", "--report", "r.json", *STAGES).exit_code == 0
    assert "inputs are not found" not in invoke("report", "gallery", "r.json", "-o", "out/g.html").output
    (tmp_path / "photos").rename(tmp_path / "moved")
    result = invoke("report", "gallery", "r.json", "-o", "out/g.html")
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and "1 of the report's 1 restored photos' inputs are not found" in shown, result.output
