"""Check the ``restore --gallery`` page in a real headless Chromium (Debian's ``chromium`` package).

    python scripts/check_gallery.py [--out /tmp/gal] [--gallery /tmp/gal/index.html] [--chromium /usr/bin/chromium]

Without ``--gallery`` it first restores a small album with the shipped models (``examples/old-mountain.jpg``, the
face fixture and a corrupt file) into ``--out`` with ``--gallery``. Then it

1. checks the page statically: every image it references is a relative path that exists, and nothing is fetched
   from the web;
2. takes a screenshot of the page opened from disk (``file://``), as a person would open it;
3. opens a copy of the page with a small harness appended that, once everything has loaded, drags the first photo's
   divider, then clicks at 25 % of the photo's width (on the element the browser finds at that point, so an overlay
   that swallowed clicks would fail the check) and ticks the mask toggle; it writes what followed (divider position,
   the after image's clip, the mask's display, which images loaded) into the page, which ``--dump-dom`` returns;
4. takes a screenshot of that copy, which shows the moved divider and the red mask, and one of the whole page in a
   tall window (faces, the other photos, the photos not restored).

No browser automation library: Chromium's own ``--screenshot`` and ``--dump-dom`` are enough, and nothing is
downloaded. Exits 1 when a check fails. ``tests/test_gallery.py`` uses :func:`browser_check` too.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
WINDOW = "1280,900"
WHOLE_HEIGHT = 2400
CLICK_AT = 0.25
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Virtual time runs the page until it is idle (images loaded, load handlers run) before the dump or the shot.
    "--virtual-time-budget=10000",
]
RESULT_ID = "gallery-check"

# Appended to a copy of the page. Runs on "load" (every image loaded or failed), does what a person would do, and
# writes what it saw as JSON into <pre id="gallery-check">.
HARNESS = """
<script>
window.addEventListener("load", function () {
  "use strict";
  var query = new URLSearchParams(location.hash.slice(1));
  var at = Number(query.get("click") || "0.25");
  var result = {images: [], errors: []};
  document.querySelectorAll("img").forEach(function (img) {
    result.images.push({src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0});
  });
  var frame = document.querySelector(".ba");
  if (!frame) { result.errors.push("no before/after frame"); }
  else {
    var box = frame.getBoundingClientRect();
    // Click in the middle of the photo's visible part. No scrolling: headless Chromium's --screenshot of a page
    // scrolled by a script came out blank at the top, and the first photo is on screen anyway.
    var y = (Math.max(box.top, 0) + Math.min(box.bottom, innerHeight)) / 2;
    if (y <= box.top || y >= box.bottom) { result.errors.push("the first photo is not on screen"); }
    function fire(type, fraction) {
      var x = box.left + fraction * box.width;
      var target = document.elementFromPoint(x, y);
      var init = {bubbles: true, cancelable: true, composed: true, clientX: x, clientY: y, button: 0, buttons: 1,
                  pointerId: 1, pointerType: "mouse", isPrimary: true, view: window};
      target.dispatchEvent(type === "click" ? new MouseEvent(type, init) : new PointerEvent(type, init));
      return target;
    }
    result.start = frame.dataset.pos || getComputedStyle(frame).getPropertyValue("--pos").trim();
    fire("pointerdown", 0.5); fire("pointermove", 0.75); fire("pointerup", 0.75);
    result.after_drag = Number(frame.dataset.pos);
    var target = fire("pointerdown", at); fire("pointerup", at); fire("click", at);
    result.target = target.tagName.toLowerCase() + "." + target.className;
    result.after_click = Number(frame.dataset.pos);
    var range = frame.parentElement.querySelector("input.slider");
    result.range = range ? Number(range.value) : null;
    result.clip = getComputedStyle(frame.querySelector("img.after")).clipPath;
    var divider = frame.querySelector(".divider").getBoundingClientRect();
    result.divider_at = (divider.left + divider.width / 2 - box.left) / box.width;
  }
  var toggle = document.querySelector("input.mask-toggle");
  var mask = frame && frame.querySelector("img.mask");
  if (toggle && mask) {
    result.mask_before = getComputedStyle(mask).display;
    if (query.get("mask") !== "0") { toggle.click(); }
    result.mask_after = getComputedStyle(mask).display;
  }
  result.face_crops = document.querySelectorAll(".faces .crop").length;
  result.not_restored = Array.from(document.querySelectorAll(".not-restored tbody tr")).map(function (row) {
    return row.textContent;
  });
  var pre = document.createElement("pre");
  pre.id = "%s";
  pre.textContent = JSON.stringify(result);
  pre.hidden = true;  // for --dump-dom only: the screenshot shows the page as a person sees it
  document.body.appendChild(pre);
  document.title = "checked";
});
</script>
""" % RESULT_ID


class _References(HTMLParser):
    """Every URL the page references: img src, link/script src and href, and CSS url() in style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("src", "href") or (name == "content" and "://" in value):
                self.urls.append(value)
            if name == "style":
                self.urls.extend(re.findall(r'url\("?([^")]+)"?\)', value))


def static_check(index: Path) -> list[str]:
    """Problems with the page's references: web URLs, absolute paths, or files that do not exist."""
    text = index.read_text()
    problems = [f"web URL in the page: {m}" for m in re.findall(r"https?://[^\s\"'<>)]+", text)]
    parser = _References()
    parser.feed(text)
    for url in parser.urls:
        if url.startswith("#") or url.startswith("data:"):
            continue
        if "://" in url or url.startswith("/"):
            problems.append(f"not a relative reference: {url}")
        elif not (index.parent / unquote(url)).is_file():
            problems.append(f"referenced file missing: {url}")
    return problems


def _chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A fresh profile per run: nothing carries over between runs (cache, restored session).
    folder = Path(tempfile.mkdtemp(prefix="profile-", dir=profile))
    command = [chromium, *FLAGS, f"--user-data-dir={folder}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def screenshot(chromium: str, url: str, png: Path, work: Path) -> Path:
    """A screenshot of ``url`` in a 1280 x 900 window."""
    png.parent.mkdir(parents=True, exist_ok=True)
    _chromium(chromium, work, f"--window-size={WINDOW}", f"--screenshot={png}", url)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot to {png}")
    return png


def browser_check(index: Path, shots: Path, chromium: str = CHROMIUM, click_at: float = CLICK_AT) -> dict[str, Any]:
    """Open ``index`` from disk in headless Chromium: a screenshot as it opens, then the harness (drag, click at
    ``click_at`` of the first photo's width, mask toggle) and a screenshot after it. Returns what the harness saw,
    plus ``problems`` (empty when everything held) and the screenshots' paths."""
    index = index.resolve()
    shots.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gallery-check-"))
    # The copy sits beside the page so its relative image paths still hold; eager images so "load" waits for all.
    harnessed = index.with_name(f".{index.stem}.check.html")
    page = index.read_text().replace(' loading="lazy"', "")
    harnessed.write_text(page.replace("</body>", HARNESS + "</body>"))
    try:
        opened = screenshot(chromium, index.as_uri(), shots / "gallery.png", work)
        url = f"{harnessed.as_uri()}#click={click_at}&mask=1"
        dumped = _chromium(chromium, work, f"--window-size={WINDOW}", "--dump-dom", url).stdout
        clicked = screenshot(chromium, url, shots / "gallery-clicked.png", work)
        # The whole page in one tall window: the faces, the other photos and the list of photos not restored.
        whole = shots / "gallery-whole.png"
        _chromium(chromium, work, f"--window-size={WINDOW.split(',')[0]},{WHOLE_HEIGHT}", f"--screenshot={whole}", index.as_uri())
    finally:
        harnessed.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    found = re.search(rf'<pre id="{RESULT_ID}"[^>]*>(.*?)</pre>', dumped, re.S)
    if found is None:
        return {"problems": ["the harness wrote no result (did the page's load event fire?)"], "screenshots": [str(opened), str(clicked), str(whole)]}
    result = json.loads(html.unescape(found.group(1)))
    problems = list(result.get("errors", []))
    problems += [f"image did not load: {image['src']}" for image in result["images"] if not image["loaded"]]
    expected = 100 * click_at
    if abs(result.get("after_drag", 0) - 75) > 1:
        problems.append(f"drag to 75 % left the divider at {result.get('after_drag')} %")
    if abs(result.get("after_click", 0) - expected) > 1:
        problems.append(f"click at {expected:g} % left the divider at {result.get('after_click')} %")
    if result.get("range") is None or abs(result["range"] - expected) > 1:
        problems.append(f"the range input reads {result.get('range')} after the click")
    if abs(100 * result.get("divider_at", 0) - expected) > 1:
        problems.append(f"the divider line is drawn at {100 * result.get('divider_at', 0):.1f} %")
    if f"{expected:.0f}" not in result.get("clip", ""):
        problems.append(f"the after image's clip is {result.get('clip')!r}")
    if "mask_before" in result and not (result["mask_before"] == "none" and result["mask_after"] != "none"):
        problems.append(f"mask toggle: display {result['mask_before']} -> {result['mask_after']}")
    result["problems"] = problems
    result["screenshots"] = [str(opened), str(clicked), str(whole)]
    return result


def make_gallery(out: Path) -> Path:
    """Restore a small album with the shipped models into ``out`` with ``--gallery``; returns the page."""
    album = Path(tempfile.mkdtemp(prefix="gallery-album-"))
    for photo in (REPO / "examples" / "old-mountain.jpg", REPO / "tests" / "fixtures" / "face-1870.jpg"):
        shutil.copy(photo, album / photo.name)
    (album / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")  # a failed photo, to be listed with its error
    command = [sys.executable, "-m", "oldphoto", "restore", str(album), "-o", str(out), "--gallery", "--overwrite", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    print(f"$ {' '.join(command)}  -> exit {done.returncode} (1 expected: torn.png fails)")
    if done.returncode not in (0, 1) or not (out / "index.html").is_file():
        raise SystemExit(f"restore failed:\n{done.stdout}\n{done.stderr}")
    return out / "index.html"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gal", help="where to restore the album")
    parser.add_argument("--gallery", type=Path, help="check this page instead of restoring an album")
    parser.add_argument("--shots", type=Path, help="screenshot folder (default: OUT/../gal-shots)")
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args()
    if not Path(args.chromium).is_file():
        print(f"no Chromium at {args.chromium}: apt-get install chromium")
        return 2
    index = args.gallery or make_gallery(args.out)
    shots = args.shots or index.parent.parent / f"{index.parent.name}-shots"
    problems = static_check(index)
    print(f"static: {index} references only relative paths that exist, no web URLs" if not problems else "\n".join(problems))
    result = browser_check(index, shots, args.chromium)
    loaded = sum(image["loaded"] for image in result.get("images", []))
    print(f"browser: {loaded}/{len(result.get('images', []))} images loaded from file://")
    if "after_click" in result:
        print(f"browser: divider {result['start']} -> drag to {result['after_drag']} % -> click at {100 * CLICK_AT:g} % "
              f"(hit {result['target']}) -> {result['after_click']} %, range {result['range']}, clip {result['clip']}")
    if "mask_before" in result:
        print(f"browser: mask toggle: display {result['mask_before']} -> {result['mask_after']}")
    print(f"browser: {result.get('face_crops', 0)} face crops; not restored: {result.get('not_restored', [])}")
    print("screenshots: " + ", ".join(result["screenshots"]))
    problems += result["problems"]
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
