"""``restore --gallery`` and ``oldphoto report gallery``: one static HTML page to look at a run's photos.

The page is a single self-contained file (inline CSS and JavaScript, no fonts or scripts from the web, no server)
so that it works when opened from disk. Images are referenced by URL-quoted paths relative to the page's folder:
the outputs below it and the inputs wherever they are. Each restored photo gets a before/after slider, a damage-mask
toggle (when the mask was saved), a before/after crop pair per face found, and its figures from the report; photos
that were not restored are listed with their error.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from oldphoto.atomic import atomic_write_bytes
from oldphoto.errors import ConfigError
from oldphoto.inputs import Job
from oldphoto.reports import merge_reports

log = logging.getLogger(__name__)

GALLERY_NAME = "index.html"
FACE_CROP_HEIGHT = 96
"""Display height of each face crop, in CSS pixels."""
FACE_MARGIN = 0.15
"""Share of the face box added on each side of a crop, so the crop shows a little of the head around the face."""
BROWSER_UNSHOWN = frozenset({".tif", ".tiff"})
"""Output formats web browsers do not display."""
SHOWN_STATUSES = ("restored", "skipped")
"""Records whose output is on disk (restored now, or by an earlier run): these get a slider."""


GENERATOR_TAG = b'<meta name="generator" content="oldphoto">'
"""In every page this module writes: a file without it is not ours to replace."""


def check_gallery_target(index: Path, overwrite: bool | None = False, protected: Iterable[Path] = ()) -> None:
    """Refuse to write a gallery over a folder, over one of the ``protected`` files (the report it shows, the photos
    and outputs the report lists: never, whatever ``overwrite``), or over an existing file that is not a gallery page
    of ours (unless ``overwrite``; None: the command has no such option, and its --overwrite means other files): an
    earlier gallery is replaced, as a re-run expects.

    Raises:
        ConfigError: what is in the way.
    """
    if index.is_dir():
        raise ConfigError(f"{index} is a folder; give the gallery page a file name such as {index / GALLERY_NAME}")
    target = index.resolve()
    if any(target == Path(path).resolve() for path in protected):
        raise ConfigError(f"{index} is the report or one of the photos it lists; give the gallery page a file name of its own")
    if index.exists() and not overwrite:
        try:
            ours = GENERATOR_TAG in index.read_bytes()[:4096]
        except OSError:
            ours = False
        if not ours:
            hint = "give another name or pass --overwrite" if overwrite is not None else "move it or choose another -o folder"
            raise ConfigError(f"{index} exists and is not an oldphoto gallery page; {hint}")


def write_gallery(index: Path, payload: dict[str, Any], root: Path | None = None) -> Path:
    """Write the gallery page of a report ``payload`` (as ``restore --report`` or ``report merge`` writes it) to
    ``index``, atomically, and return ``index``.

    Args:
        index: the HTML file to write; image references are relative to its folder.
        payload: the report: ``images`` (one record per photo), and optionally ``totals``, ``stages``,
            ``runtime``, ``precision``, ``engine``, ``shard``, ``merged_from``.
        root: the folder relative input and output paths of the report are relative to (the working directory of
            the run that wrote it); default the current directory.
    """
    index = Path(index)
    # A file name that is not valid UTF-8 shows with a replacement mark in the page's text (its link works).
    atomic_write_bytes(index, render_gallery(index, payload, root).encode("utf-8", errors="replace"))
    log.info("gallery of %d photo(s) written to %s", len(payload.get("images", [])), index)
    return index


def render_gallery(index: Path, payload: dict[str, Any], root: Path | None = None) -> str:
    """The HTML text of :func:`write_gallery` (for a page that will be written to ``index``)."""
    base = Path(os.path.abspath(Path(index).parent))
    locate = _Locator(base, Path(os.path.abspath(root or Path.cwd())))
    images = list(payload.get("images", []))
    shown = [record for record in images if record.get("status") in SHOWN_STATUSES]
    not_restored = [record for record in images if record.get("status") not in SHOWN_STATUSES]
    photos = "\n".join(_photo_section(number, record, locate) for number, record in enumerate(shown))
    # The photos first, the ones not restored after them: a long list of failures must not push the photos away.
    body = [_header(payload, images, len(not_restored)), photos or '<p class="empty">No restored photos in this report.</p>']
    if not_restored:
        body.append(_not_restored_section(not_restored))
    # The report itself, so that a later run into the same folder can keep the photos it skips or does not hold.
    # No "<", ">" or "&" in it as such: a file named "</script><script>..." must stay data.
    data = json.dumps(payload, ensure_ascii=True).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    body.append(f'<script type="application/json" id="{_REPORT_ID}">{data}</script>')
    return _PAGE.format(title="oldphoto gallery", css=_CSS, svg=_SVG, body="\n".join(body), js=_JS)


_REPORT_ID = "oldphoto-report"


def earlier_report(index: Path) -> dict[str, Any] | None:
    """The report embedded in a gallery page this module wrote earlier at ``index``, or None (no page, another
    file, a page from before pages embedded their report, or one that cannot be read)."""
    try:
        text = Path(index).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    start = text.find(f'<script type="application/json" id="{_REPORT_ID}">')
    if GENERATOR_TAG.decode() not in text[:4096] or start < 0:
        return None
    start = text.index(">", start) + 1
    try:
        payload = json.loads(text[start : text.index("</script>", start)])
    except ValueError:
        return None
    return payload if isinstance(payload, dict) and isinstance(payload.get("images"), list) else None


def with_absolute_paths(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with each photo's input and output path made absolute (from the current folder): a gallery
    keeps its report inside, and a later run from another folder read the earlier runs' relative paths from its own
    folder (their photos shown as missing, one of them twice)."""
    images = [
        {**record, **{key: os.path.abspath(record[key]) for key in ("input", "output") if record.get(key)}}
        for record in payload.get("images", [])
    ]
    return {**payload, "images": images}


def with_earlier_photos(index: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """The report of this run for its gallery at ``index``, with the photos of the gallery already there: a photo this
    run skipped because its output exists keeps its earlier record (figures, faces), and photos this run did not hold
    (another shard's, or an album restored a part at a time) stay on the page. Each photo keeps its best outcome, as
    ``report merge`` decides (:func:`oldphoto.reports.merge_reports`); the header is this run's."""
    earlier = earlier_report(index)
    if earlier is None:
        return payload
    merged = merge_reports([earlier, payload], [str(index), "this run"])
    return {**payload, "images": merged["images"], "totals": merged["totals"]}


class _Locator:
    """Turns the report's paths into relative URLs from the page's folder, and says whether the files exist."""

    def __init__(self, base: Path, root: Path) -> None:
        self.base, self.root = base, root

    def path(self, name: str | os.PathLike[str]) -> Path:
        return Path(os.path.abspath(self.root / name))

    def url(self, path: Path) -> str:
        try:
            relative = os.path.relpath(path, self.base)
        except ValueError:  # another drive on Windows: no relative path exists
            return path.as_uri()
        # quote() keeps "/" and percent-encodes spaces, quotes, "#", "?" and non-ASCII, so the URL works under file://;
        # quoting the name's bytes keeps a file name that is not valid UTF-8 reachable.
        return quote(os.fsencode(Path(relative).as_posix()))


def _header(payload: dict[str, Any], images: list[dict[str, Any]], not_restored: int) -> str:
    totals = payload.get("totals") or {}
    statuses = totals.get("statuses") or {}
    status_text = ", ".join(f"{count} {status}" for status, count in statuses.items()) or f"{len(images)} photos"
    per_megapixel = _number(totals.get("seconds_per_megapixel"), 2)
    figures = [
        # A run that ended early says so first: "5 restored" alone read as a whole run (the rest never reached).
        ("stopped early", payload.get("stopped")),
        ("photos", status_text),
        ("restored", f"{totals.get('images', 0)} photos, {_number(totals.get('megapixels'), 2) or 0} MP"),
        ("time", f"{_number(totals.get('seconds'), 1) or 0} s" + (f" ({per_megapixel} s/MP)" if per_megapixel else "")),
        ("runtime", payload.get("runtime")),
        ("precision", payload.get("precision")),
        ("engine", payload.get("engine")),
        ("shard", payload.get("shard")),
    ]
    parts = payload.get("merged_from") or []
    if parts:
        figures.append(("merged from", ", ".join(str(part.get("report", "?")) for part in parts)))
    link = f'\n<p class="jump"><a href="#not-restored">{not_restored} not restored: see the list</a></p>' if not_restored else ""
    stages = "".join(f"<li>{escape(str(stage))}</li>" for stage in payload.get("stages") or [])
    return (
        '<header>\n<h1>oldphoto gallery</h1>\n'
        + _definition_list(figures, "totals")
        + link
        + (f'\n<details class="stages"><summary>stages</summary><ol>{stages}</ol></details>' if stages else "")
        + "\n</header>"
    )


def _not_restored_section(records: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr class="status-{escape(str(record.get("status", "")))}"><td>{escape(Path(str(record.get("input", ""))).name)}</td>'
        f'<td>{escape(str(record.get("status", "")))}</td><td>{escape(str(record.get("error") or ""))}</td></tr>'
        for record in records
    )
    return (
        '<section class="not-restored" id="not-restored">\n<h2>Not restored</h2>\n'
        f"<table><thead><tr><th>photo</th><th>status</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>\n"
        "</section>"
    )


def _photo_section(number: int, record: dict[str, Any], locate: _Locator) -> str:
    input_path, output_path = locate.path(record["input"]), locate.path(record["output"])
    mask_path = locate.path(Job(Path(record["input"]), Path(record["output"])).mask_path)
    width, height = record.get("width"), record.get("height")
    before = locate.url(input_path) if input_path.is_file() and input_path.suffix.lower() not in BROWSER_UNSHOWN else None
    after = locate.url(output_path) if output_path.is_file() else None
    # Only a mask the recorded run made: one left by an earlier run (re-run with --no-scratch and --overwrite) showed
    # damage marks over a photo restored without scratch repair. A skipped photo's record has no mask_source key.
    made_mask = record.get("mask_source") is not None or "mask_source" not in record
    # And only one it saved there: a mask an earlier run left (with other settings) showed over a later result.
    made_mask = made_mask and record.get("mask_saved", True) is not False
    mask = locate.url(mask_path) if mask_path.is_file() and made_mask else None
    name = escape(Path(str(record["input"])).name)
    frame_id = f"photo-{number}"
    if after is None:
        # The report names an output that is no longer there (moved, deleted): say so rather than a broken image.
        picture = f'<p class="missing">output {escape(str(record["output"]))} not found</p>'
    elif output_path.suffix.lower() in BROWSER_UNSHOWN:
        # Browsers show no TIFF: a blank frame would look like a failed restoration.
        picture = (
            f'<p class="missing">{escape(output_path.suffix)} files cannot be shown by a browser: open '
            f'<a href="{escape(after)}">the restored file</a> in an image viewer (or restore with --ext png for this page)</p>'
        )
        before = after = None  # no slider or face crops from an image the browser cannot draw
    else:
        picture = _slider(frame_id, before, after, mask, width, height)
    controls = []
    if after is not None and before is not None:
        controls.append(
            f'<label>before | after <input type="range" class="slider" min="0" max="100" step="0.1" value="50" '
            f'aria-controls="{frame_id}-frame" aria-label="before/after divider of {name}"></label>'
        )
    if after is not None and mask is not None:
        controls.append('<label><input type="checkbox" class="mask-toggle"> damage mask</label>')
    return (
        f'<section class="photo status-{escape(str(record.get("status", "")))}" id="{frame_id}">\n'
        f'<h2 title="{escape(str(record["input"]))}">{name}</h2>\n'
        f"{picture}\n"
        + (f'<div class="controls">{"".join(controls)}</div>\n' if controls else "")
        + _definition_list(_photo_figures(record), "figures")
        + "\n"
        + _faces(record, before, after)
        + "\n</section>"
    )


def _slider(frame_id: str, before: str | None, after: str, mask: str | None, width: Any, height: Any) -> str:
    """The before/after frame: the before image under the after image, which is clipped left of the divider."""
    size = f' width="{int(width)}" height="{int(height)}"' if width and height else ""
    # Known size: reserve the frame's box before the images load (no jumping page), keep tall photos on screen, and
    # show small photos at least 480 px wide but large ones no larger than they are.
    style = (
        f' style="aspect-ratio: {int(width)} / {int(height)}; '
        f'width: min(100%, calc(78vh * {int(width) / int(height):.4f}), max({int(width)}px, 480px))"'
        if width and height
        else ""
    )
    layers = []
    if before is not None:
        layers.append(f'<img class="before" src="{escape(before)}" alt="before"{size} loading="lazy" draggable="false">')
        layers.append(f'<img class="after" src="{escape(after)}" alt="after"{size} loading="lazy" draggable="false">')
        layers.append('<div class="divider" aria-hidden="true"></div><span class="tag tag-before">before</span><span class="tag tag-after">after</span>')
    else:
        layers.append(f'<img class="only" src="{escape(after)}" alt="after (no input the browser can show beside it)"{size} loading="lazy">')
    if mask is not None:
        layers.append(f'<img class="mask" src="{escape(mask)}" alt="damage mask"{size} loading="lazy" hidden draggable="false">')
    kind = "ba" if before is not None else "single"
    return f'<div class="{kind}" id="{frame_id}-frame"{style}>{"".join(layers)}</div>'


def _photo_figures(record: dict[str, Any]) -> list[tuple[str, Any]]:
    width, height = record.get("width"), record.get("height")
    coverage = record.get("scratch_coverage")
    faces = record.get("faces")
    faces_found = record.get("faces_found")
    if faces_found is None and faces is not None:
        faces_found = len(faces)
    return [
        ("status", record.get("status")),
        ("size", f"{width} × {height}" if width and height else None),
        ("megapixels", _number(record.get("megapixels"), 2)),
        ("seconds", _number(record.get("seconds"), 2)),
        ("s/MP", _number(record.get("seconds_per_megapixel"), 2)),
        ("scratch coverage", None if coverage is None else f"{100 * coverage:.2f} %"),
        ("mask", record.get("mask_source")),
        ("faces found", faces_found),
        ("peak memory", None if record.get("peak_memory_mb") is None else f"{record['peak_memory_mb']:.0f} MB"),
        ("device", " ".join(str(v) for v in (record.get("device"), record.get("precision")) if v) or None),
        ("note", record.get("error")),
    ]


def _faces(record: dict[str, Any], before: str | None, after: str | None) -> str:
    """A before/after crop pair per face of the report, cut from the two full images with CSS backgrounds (no
    canvas: canvas pixels of file:// images are off limits to scripts, and no extra files are needed)."""
    faces = record.get("faces") or []
    width, height = record.get("width"), record.get("height")
    if not faces or not width or not height or after is None:
        return ""
    items = []
    for number, face in enumerate(faces):
        box = _crop_box(face.get("box") or [0, 0, 0, 0], width, height)
        if box is None:
            continue
        crops = "".join(
            f'<figure class="face-crop"><div class="crop" role="img" aria-label="{label} face {number}" '
            f'style="{_crop_style(url, box, width, height)}"></div><figcaption>{label}</figcaption></figure>'
            for label, url in (("before", before), ("after", after))
            if url is not None
        )
        score = face.get("score")
        caption = f"face {number}" + (f", score {score:.2f}" if isinstance(score, (int, float)) else "")
        # A face the gate gave no correction (both strengths 0) is left as it was: "refined" said otherwise.
        left_alone = face.get("strength") is not None and not any((face.get(key) or 0) > 0 for key in ("strength", "fine_strength"))
        caption += ", not refined" if not face.get("refined") else ", left as it was" if left_alone else ", refined"
        items.append(f'<li class="face"><div class="pair">{crops}</div><span>{escape(caption)}</span></li>')
    if not items:
        return ""
    return f'<div class="faces"><h3>faces</h3><ul>{"".join(items)}</ul></div>'


def _crop_box(box: list[float], width: int, height: int) -> tuple[float, float, float, float] | None:
    """The face box [x, y, w, h] grown by :data:`FACE_MARGIN` and clipped to the photo, or None when empty."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0.0, x - FACE_MARGIN * w), max(0.0, y - FACE_MARGIN * h)
    x1, y1 = min(float(width), x + w + FACE_MARGIN * w), min(float(height), y + h + FACE_MARGIN * h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return x0, y0, x1 - x0, y1 - y0


def _crop_style(url: str, box: tuple[float, float, float, float], width: int, height: int) -> str:
    """CSS that shows ``box`` of the image at ``url`` in an element with the box's aspect ratio: the background is
    scaled so the box fills the element, and placed with percentages (p % puts the image's p % point at the
    element's p % point, hence offset / (image size - box size))."""
    x, y, w, h = box
    size_x, size_y = 100 * width / w, 100 * height / h
    position_x = 0.0 if width - w < 1e-6 else 100 * x / (width - w)
    position_y = 0.0 if height - h < 1e-6 else 100 * y / (height - h)
    return escape(
        f'background-image: url("{url}"); background-size: {size_x:.3f}% {size_y:.3f}%; '
        f"background-position: {position_x:.3f}% {position_y:.3f}%; "
        f"height: {FACE_CROP_HEIGHT}px; width: {FACE_CROP_HEIGHT * w / h:.1f}px"
    )


def _definition_list(figures: list[tuple[str, Any]], css_class: str) -> str:
    items = "".join(
        f"<div><dt>{escape(label)}</dt><dd>{escape(str(value))}</dd></div>" for label, value in figures if value not in (None, "")
    )
    return f'<dl class="{css_class}">{items}</dl>'


def _number(value: Any, digits: int) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="oldphoto">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{svg}
{body}
<script>{js}</script>
</body>
</html>
"""

# The mask is white on black; this filter keeps its brightness in red only, and the mask layer is then screened
# onto the photo: damaged pixels turn red, the rest stays as it is.
_SVG = (
    '<svg width="0" height="0" style="position:absolute" aria-hidden="true"><filter id="mask-red" '
    'color-interpolation-filters="sRGB"><feColorMatrix type="matrix" '
    'values="1 0 0 0 0  0 0 0 0 0  0 0 0 0 0  0 0 0 1 0"/></filter></svg>'
)

_CSS = """
:root { color-scheme: light dark; --accent: #d33; }
[hidden] { display: none !important; } /* the images' display: block must not undo the mask's hidden */
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 1rem 1.5rem 4rem; max-width: 1200px; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.15rem; margin: 0 0 .5rem; overflow-wrap: anywhere; }
h3 { font-size: 1rem; margin: .75rem 0 .25rem; }
header { border-bottom: 1px solid #8884; padding-bottom: .75rem; margin-bottom: 1rem; }
dl { display: flex; flex-wrap: wrap; gap: .25rem 1.25rem; margin: .5rem 0; }
dl div { display: flex; gap: .4rem; }
dt { color: #888; }
dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.stages ol { margin: .25rem 0; }
.jump { margin: .25rem 0; }
.jump a { color: var(--accent); }
section.not-restored { margin: 2rem 0; }
section.photo { margin: 0 0 2.5rem; }
.ba, .single { position: relative; max-width: 100%; user-select: none; touch-action: none; background: #8882; line-height: 0; }
.ba { cursor: ew-resize; --pos: 50%; }
.ba img, .single img { display: block; width: 100%; height: 100%; }
.ba img.after, .ba img.mask, .single img.mask { position: absolute; inset: 0; }
.ba img.after { clip-path: inset(0 0 0 var(--pos)); }
img.mask { mix-blend-mode: screen; filter: url(#mask-red); pointer-events: none; }
.divider { position: absolute; top: 0; bottom: 0; left: var(--pos); width: 2px; margin-left: -1px; background: #fff; box-shadow: 0 0 3px #000; pointer-events: none; }
.tag { position: absolute; top: .4rem; font: 12px/1.6 system-ui, sans-serif; padding: 0 .4rem; background: #000a; color: #fff; border-radius: 3px; pointer-events: none; }
.tag-before { left: .4rem; }
.tag-after { right: .4rem; }
.controls { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center; margin: .4rem 0; }
.controls input[type=range] { width: min(360px, 60vw); vertical-align: middle; }
.faces ul { list-style: none; display: flex; flex-wrap: wrap; gap: 1rem; padding: 0; margin: 0; }
.face { font-size: 13px; color: #888; }
.pair { display: flex; gap: 4px; }
.face-crop { margin: 0; text-align: center; }
.crop { background-repeat: no-repeat; background-color: #8882; }
figcaption { font-size: 12px; }
table { border-collapse: collapse; }
td, th { text-align: left; padding: .2rem .75rem .2rem 0; vertical-align: top; }
.not-restored td:last-child { overflow-wrap: anywhere; }
.status-failed td:nth-child(2), .status-refused td:nth-child(2) { color: var(--accent); font-weight: 600; }
.missing { color: var(--accent); }
"""

# Dragging or clicking anywhere on the photo moves the divider; the range input under it does the same for the
# keyboard. Both set --pos on the frame, which clips the after image and places the divider line.
_JS = """
(function () {
  "use strict";
  function setPosition(frame, fraction, range) {
    var percent = Math.max(0, Math.min(100, fraction * 100));
    frame.style.setProperty("--pos", percent.toFixed(2) + "%");
    frame.dataset.pos = percent.toFixed(2);
    if (range) { range.value = percent.toFixed(1); }
  }
  document.querySelectorAll("section.photo").forEach(function (section) {
    var frame = section.querySelector(".ba");
    var range = section.querySelector("input.slider");
    var toggle = section.querySelector("input.mask-toggle");
    var mask = section.querySelector("img.mask");
    if (frame) {
      var fromPointer = function (event) {
        var box = frame.getBoundingClientRect();
        if (box.width > 0) { setPosition(frame, (event.clientX - box.left) / box.width, range); }
      };
      frame.addEventListener("pointerdown", function (event) {
        if (event.button !== 0) { return; }
        if (frame.setPointerCapture && event.pointerId !== undefined) {
          try { frame.setPointerCapture(event.pointerId); } catch (error) { /* synthetic pointer: no capture */ }
        }
        frame.dataset.dragging = "1";
        fromPointer(event);
      });
      frame.addEventListener("pointermove", function (event) { if (frame.dataset.dragging) { fromPointer(event); } });
      ["pointerup", "pointercancel"].forEach(function (type) {
        frame.addEventListener(type, function () { delete frame.dataset.dragging; });
      });
      if (range) {
        range.addEventListener("input", function () { setPosition(frame, Number(range.value) / 100, null); });
      }
    }
    if (toggle && mask) {
      toggle.addEventListener("change", function () { mask.hidden = !toggle.checked; });
    }
  });
})();
"""
