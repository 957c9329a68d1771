"""Structured damage, drawn together with its exact mask.

Each op paints onto a :class:`Canvas` (the image plus a per-pixel damage opacity) with the signature
``op(canvas, rng, stamps, **ranges) -> params``. Damage is alpha-blended: ``image = image * (1 - a) +
colour * a``. The canvas keeps the image as it was before any damage, and the damage mask is where the
damage *visibly* changed a pixel (see :func:`Canvas.mask`): a white scratch over white sky or a brown
stain on brown earth is drawn but not marked, because no detector could see it and nothing there needs
repair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from oldphoto.degrade.unstructured import Params, _uniform
from oldphoto.errors import ConfigError


@dataclass
class Canvas:
    """image: (H, W, 3) float32 in [0, 1]; opacity: (H, W) float32 in [0, 1], 0 = undamaged;
    base: (H, W, 3) float32, the image before any damage was drawn."""

    image: np.ndarray
    opacity: np.ndarray
    base: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray) -> Canvas:
        base = image.astype(np.float32, copy=True)
        return cls(base.copy(), np.zeros(image.shape[:2], np.float32), base)

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def blend(self, y0: int, x0: int, alpha: np.ndarray, color: np.ndarray | float, marked: bool = True) -> None:
        """Blend ``color`` with opacity ``alpha`` (h, w) at (y0, x0); parts outside the image are cut off.

        ``marked=False`` is for translucent discolouration (stains) that the global stage should correct
        rather than inpaint: it is painted into ``base`` too, so it never enters the mask.
        """
        h, w = alpha.shape
        ya, xa = max(0, y0), max(0, x0)
        yb, xb = min(self.height, y0 + h), min(self.width, x0 + w)
        if ya >= yb or xa >= xb:
            return
        a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0]
        if isinstance(color, np.ndarray) and color.ndim == 3:
            color = color[ya - y0 : yb - y0, xa - x0 : xb - x0]
        targets = (self.image, self.base) if not marked else (self.image,)
        for target in targets:
            region = target[ya:yb, xa:xb]
            region += (np.asarray(color, np.float32) - region) * a[:, :, None]
        if marked:
            np.maximum(self.opacity[ya:yb, xa:xb], a, out=self.opacity[ya:yb, xa:xb])

    def change(self) -> np.ndarray:
        """(H, W) float32: how far drawn damage moved each pixel (largest change over the channels; 0 where no
        damage was drawn, also where stains discoloured it, as they are painted into ``base`` too)."""
        moved = np.abs(self.image - self.base).max(axis=2)
        return np.where(self.opacity > 0, moved, 0.0).astype(np.float32)

    def mask(self, threshold: float) -> np.ndarray:
        """(H, W) float32 of 0/1: where damage changed the pixel by more than ``threshold`` (0-1 intensity)."""
        return (self.change() > threshold).astype(np.float32)


class DamageStamps:
    """Real damage stamps: RGBA images whose alpha is the shape of a scratch, speck, hair, stain...

    Sub-folder names are the categories (``scratches``, ``dust`` ...). Images are loaded on demand.
    Use :func:`load_stamps` for "the given folders, else the bundled set".
    """

    def __init__(self, folders: Sequence[str | Path], *, bundled: bool = False) -> None:
        self.folders = tuple(Path(folder) for folder in folders)
        self.bundled = bundled  # the subset shipped inside the package (:meth:`bundled_set`), for manifests
        self.files: dict[str, list[Path]] = {}
        for folder in self.folders:
            for path in sorted(folder.rglob("*.png")):
                self.files.setdefault(path.parent.name, []).append(path)
        self.categories = sorted(self.files)

    @classmethod
    def bundled_set(cls) -> DamageStamps:
        """The stamps shipped inside the package (see :func:`bundled_stamps_dir`)."""
        return cls([bundled_stamps_dir()], bundled=True)

    def __len__(self) -> int:
        return sum(len(v) for v in self.files.values())

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of which set this is, for manifests: ``{"set": "bundled", "count": n}`` or
        ``{"set": "folders", "folders": [...as given...], "count": n}``."""
        if self.bundled:
            return {"set": "bundled", "count": len(self)}
        return {"set": "folders", "folders": [str(folder) for folder in self.folders], "count": len(self)}

    def sample(self, rng: np.random.Generator, categories: Sequence[str] | None = None) -> tuple[np.ndarray, str]:
        """A random stamp's alpha (h, w) float32 in [0, 1] and its file name."""
        pool = [c for c in (categories or self.categories) if c in self.files]
        if not pool:
            # A misspelt category ("scratch") fell back to every stamp, and the manifest recorded the misspelling.
            raise ValueError(f"no damage stamps of the categories {list(categories or ())}; the stamps have: {', '.join(self.categories)}")
        category = pool[int(rng.integers(len(pool)))]
        path = self.files[category][int(rng.integers(len(self.files[category])))]
        return _load_alpha(path), f"{category}/{path.name}"


def bundled_stamps_dir() -> Path:
    """The folder of damage stamps shipped as package data: a few of each category of FilmDamageSimulator's
    stamps, byte copies made by scripts/bundle_damage_stamps.py (MIT: its LICENSE, and a NOTICE naming the source,
    the subset rule and each file's sha256, are in the folder)."""
    # oldphoto.degrade is a regular package installed as files (wheel or editable), so its resources are a real
    # folder that rglob and cv2.imread can read directly.
    return Path(str(resources.files("oldphoto.degrade").joinpath("stamps")))


def load_stamps(folders: Sequence[str | Path] | None = None) -> DamageStamps:
    """The damage stamps in ``folders`` (only those: they *replace* the bundled set, so sets made from given
    folders stay reproducible whatever ships), or the bundled set when no folder is given.

    Raises:
        ConfigError: folders were given but hold no ``*.png``; or the bundled set is missing (a broken install).
    """
    if folders:
        for folder in map(Path, folders):
            if not folder.is_dir():
                raise ConfigError(f"damage stamp folder {folder}: {'not a folder' if folder.exists() else 'no such folder'}")
        stamps = DamageStamps(folders)
        if len(stamps) == 0:
            raise ConfigError(f"no RGBA damage stamps (*.png) under {', '.join(map(str, folders))}")
        # Checked now, from their headers (0.1 s for a thousand): a bad stamp otherwise surfaces only when a pair
        # first draws it, as a traceback halfway through a set.
        for path in (path for paths in stamps.files.values() for path in paths):
            try:
                with Image.open(path) as image:
                    mode = image.mode
            except (OSError, ValueError):
                mode = None
            if mode != "RGBA":
                raise ConfigError(f"{path}: a damage stamp must be an RGBA PNG (its alpha is the damage's shape); this is {mode or 'not a readable PNG'}")
        return stamps
    stamps = DamageStamps.bundled_set()
    if len(stamps) == 0:
        raise ConfigError(f"the bundled damage stamps are missing from {bundled_stamps_dir()}; reinstall oldphoto or pass --damage-dir")
    return stamps


@lru_cache(maxsize=256)
def _load_alpha(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4:
        raise ValueError(f"{path}: a damage stamp must be an RGBA PNG")
    # A 16-bit PNG passes the RGBA check above (Pillow opens it as RGBA) but reads here as uint16: scale by its
    # own range, or its alpha would reach 257 and every stamp would print as a hard, saturated block.
    alpha = image[:, :, 3].astype(np.float32) / float(np.iinfo(image.dtype).max)
    alpha.setflags(write=False)
    return alpha


def _pick_color(rng: np.random.Generator, bright_probability: float, bright=(0.8, 1.0), dark=(0.0, 0.25)) -> tuple[bool, float]:
    is_bright = bool(rng.random() < bright_probability)
    return is_bright, _uniform(rng, bright if is_bright else dark)


def _random_walk(rng, start, angle, steps, step_length, turn):
    """Points of a smooth random curve: (steps + 1, 2) float32 of (x, y)."""
    points = [np.asarray(start, np.float32)]
    heading = angle
    curvature = 0.0
    for _ in range(steps):
        curvature = 0.8 * curvature + rng.normal(0, turn)
        heading += curvature
        points.append(points[-1] + step_length * np.array([np.cos(heading), np.sin(heading)], np.float32))
    return np.stack(points)


def _stroke(points: np.ndarray, widths: np.ndarray, opacities: np.ndarray, pad: int = 4) -> tuple[int, int, np.ndarray]:
    """Rasterise a polyline with per-segment width and opacity (anti-aliased) into a local alpha patch.

    Returns (y0, x0, alpha) with alpha (h, w) float32 in [0, 1]. Widths below one pixel are drawn one
    pixel wide at proportionally lower opacity.
    """
    x0 = int(np.floor(points[:, 0].min())) - pad - int(widths.max())
    y0 = int(np.floor(points[:, 1].min())) - pad - int(widths.max())
    x1 = int(np.ceil(points[:, 0].max())) + pad + int(widths.max())
    y1 = int(np.ceil(points[:, 1].max())) + pad + int(widths.max())
    canvas = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    shift = 4  # sub-pixel precision of cv2.line
    local = np.rint((points - [x0, y0]) * (1 << shift)).astype(np.int32)
    for i in range(len(points) - 1):
        width = float(widths[i])
        value = opacities[i] * min(1.0, width)
        thickness = max(1, int(round(width)))
        cv2.line(canvas, tuple(local[i]), tuple(local[i + 1]), int(round(255 * value)), thickness, cv2.LINE_AA, shift)
    return y0, x0, canvas.astype(np.float32) / 255.0


def scratches(canvas, rng, stamps, count=(1, 6), width=(0.6, 3.0), opacity=(0.5, 1.0), length=(0.15, 0.9), bright_probability=0.7, bright=(0.8, 1.0), dark=(0.0, 0.25)):
    """Thin curved scratches, tapering at both ends, bright (emulsion gone) or dark."""
    n = int(rng.integers(count[0], count[1] + 1))
    diagonal = float(np.hypot(canvas.height, canvas.width))
    drawn = []
    for _ in range(n):
        total = _uniform(rng, length) * diagonal
        steps = max(4, int(total / 8))
        start = (rng.uniform(0, canvas.width), rng.uniform(0, canvas.height))
        points = _random_walk(rng, start, rng.uniform(0, 2 * np.pi), steps, total / steps, turn=0.03)
        t = np.linspace(0, 1, steps)
        w_max = _uniform(rng, width)
        taper = np.clip(np.sin(np.pi * t) ** 0.5 * 1.2, 0.3, 1.0)
        widths = w_max * taper * rng.uniform(0.8, 1.2, steps)
        o = _uniform(rng, opacity)
        opacities = np.clip(o * (0.75 + 0.25 * np.sin(t * rng.uniform(2, 8) + rng.uniform(0, 6))), 0, 1)
        is_bright, color = _pick_color(rng, bright_probability, bright, dark)
        y0, x0, alpha = _stroke(points, widths, opacities)
        canvas.blend(y0, x0, alpha, color)
        drawn.append({"length": round(total, 1), "width": round(w_max, 2), "opacity": round(o, 2), "bright": is_bright})
    return {"count": n, "scratches": drawn}


def cracks(canvas, rng, stamps, count=(1, 3), segments=(20, 60), width=(0.6, 1.5), opacity=(0.5, 0.9), branch_probability=0.15):
    """Branching cracks / craquelure: jagged dark lines that split as they go."""
    n = int(rng.integers(count[0], count[1] + 1))
    step = max(3.0, min(canvas.height, canvas.width) / 60)
    for _ in range(n):
        w = _uniform(rng, width)
        o = _uniform(rng, opacity)
        color = _uniform(rng, (0.05, 0.3))
        fronts = [(np.array([rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)]), rng.uniform(0, 2 * np.pi))]
        budget = int(rng.integers(segments[0], segments[1] + 1))
        while fronts and budget > 0:
            start, heading = fronts.pop()
            steps = int(rng.integers(3, 10))
            points = _random_walk(rng, start, heading, steps, step, turn=0.12)
            budget -= steps
            y0, x0, alpha = _stroke(points, np.full(steps, w), np.full(steps, o))
            canvas.blend(y0, x0, alpha, color)
            fronts.append((points[-1], heading + rng.normal(0, 0.4)))
            if rng.random() < branch_probability * steps:
                fronts.append((points[-1], heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.3)))
    return {"count": n}


def dust(canvas, rng, stamps, density=(20, 200), radius=(0.5, 2.5), opacity=(0.5, 1.0), bright_probability=0.5):
    """Specks of dust and dirt: small round or elongated dots, ``density`` per megapixel."""
    n = int(_uniform(rng, density) * canvas.height * canvas.width / 1e6) + 1
    for _ in range(n):
        r = _uniform(rng, radius)
        size = int(np.ceil(r * 2)) + 4
        patch = np.zeros((2 * size + 1, 2 * size + 1), np.uint8)
        axes = (max(1, int(round(r * rng.uniform(1, 2.5)))), max(1, int(round(r))))
        cv2.ellipse(patch, (size, size), axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
        alpha = patch.astype(np.float32) / 255.0 * _uniform(rng, opacity)
        _, color = _pick_color(rng, bright_probability)
        canvas.blend(int(rng.integers(canvas.height)) - size, int(rng.integers(canvas.width)) - size, alpha, color)
    return {"count": n}


def hairs(canvas, rng, stamps, count=(1, 3), length=(30.0, 250.0), width=(0.7, 1.8), opacity=(0.6, 1.0), bright_probability=0.3):
    """Hairs and lint fibres: thin, curly, uniform-width curves."""
    n = int(rng.integers(count[0], count[1] + 1))
    for _ in range(n):
        total = _uniform(rng, length) * min(canvas.height, canvas.width) / 512
        steps = max(6, int(total / 3))
        start = (rng.uniform(0, canvas.width), rng.uniform(0, canvas.height))
        points = _random_walk(rng, start, rng.uniform(0, 2 * np.pi), steps, total / steps, turn=0.15)
        y0, x0, alpha = _stroke(points, np.full(steps, _uniform(rng, width)), np.full(steps, _uniform(rng, opacity)))
        _, color = _pick_color(rng, bright_probability)
        canvas.blend(y0, x0, alpha, color)
    return {"count": n}


def creases(canvas, rng, stamps, count=(1, 2), width=(1.5, 5.0), opacity=(0.4, 0.9)):
    """Fold creases: a long, nearly straight bright line across the print with a soft shadow beside it."""
    n = int(rng.integers(count[0], count[1] + 1))
    for _ in range(n):
        horizontal = rng.random() < 0.5
        span = canvas.width if horizontal else canvas.height
        across = canvas.height if horizontal else canvas.width
        position = rng.uniform(0.15, 0.85) * across
        tilt = rng.uniform(-0.08, 0.08) * across
        steps = 24
        t = np.linspace(0, span, steps + 1)
        offset = position + tilt * t / span + np.cumsum(rng.normal(0, 0.6, steps + 1))
        points = np.stack([t, offset], 1) if horizontal else np.stack([offset, t], 1)
        w = _uniform(rng, width)
        o = _uniform(rng, opacity)
        shadow = points + ([0, w] if horizontal else [w, 0])
        y0, x0, alpha = _stroke(shadow.astype(np.float32), np.full(steps, w * 1.5), np.full(steps, o * 0.35))
        canvas.blend(y0, x0, alpha, 0.1)
        y0, x0, alpha = _stroke(points.astype(np.float32), np.full(steps, w), np.full(steps, o))
        canvas.blend(y0, x0, alpha, _uniform(rng, (0.8, 1.0)))
    return {"count": n}


def _torn_corner(rng, height, width, extent):
    corner = int(rng.integers(4))
    cx = 0 if corner in (0, 3) else width - 1
    cy = 0 if corner in (0, 1) else height - 1
    sx = 1 if cx == 0 else -1
    sy = 1 if cy == 0 else -1
    angles = np.linspace(0, np.pi / 2, 12)
    radii = extent * rng.uniform(0.5, 1.3, 12)
    return [(cx, cy)] + [(cx + sx * r * np.cos(a), cy + sy * r * np.sin(a)) for a, r in zip(angles, radii)]


def _torn_edge(rng, height, width, extent):
    """A bite out of one side: a jagged outline from the edge inwards and back."""
    side = int(rng.integers(4))
    length = height if side in (1, 3) else width
    start = rng.uniform(0, length * 0.8)
    span = rng.uniform(1.0, 3.0) * extent
    t = np.linspace(0, 1, 14)
    along = start + span * t
    depth = extent * np.sin(np.pi * t) * rng.uniform(0.4, 1.0, 14)
    if side == 0:
        return [(a, d) for a, d in zip(along, depth)]
    if side == 2:
        return [(a, height - 1 - d) for a, d in zip(along, depth)]
    if side == 3:
        return [(d, a) for a, d in zip(along, depth)]
    return [(width - 1 - d, a) for a, d in zip(along, depth)]


def torn_edges(canvas, rng, stamps, count=(1, 2), size=(0.05, 0.2), paper_probability=0.6, corner_probability=0.6):
    """Torn-off corners and missing pieces of the edge, showing paper (light) or background (dark)."""
    n = int(rng.integers(count[0], count[1] + 1))
    height, width = canvas.height, canvas.width
    kinds = []
    for _ in range(n):
        extent = _uniform(rng, size) * min(height, width)
        corner = bool(rng.random() < corner_probability)
        outline = (_torn_corner if corner else _torn_edge)(rng, height, width, extent)
        patch = np.zeros((height, width), np.uint8)
        cv2.fillPoly(patch, [np.rint(np.array(outline) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        color = _uniform(rng, (0.85, 1.0)) if rng.random() < paper_probability else _uniform(rng, (0.0, 0.15))
        canvas.blend(0, 0, patch.astype(np.float32) / 255.0, color)
        kinds.append("corner" if corner else "edge")
    return {"count": n, "kinds": kinds}


def stains(canvas, rng, stamps, count=(1, 2), size=(0.1, 0.4), opacity=(0.15, 0.5)):
    """Water stains and blotches: irregular tinted blobs with a darker tide-line rim.

    Stains are translucent discolouration, so they are left out of the mask (restored by the global stage).
    """
    n = int(rng.integers(count[0], count[1] + 1))
    height, width = canvas.height, canvas.width
    for _ in range(n):
        extent = max(8, int(_uniform(rng, size) * min(height, width)))
        cells = rng.uniform(-1, 1, (6, 6)).astype(np.float32)
        field = cv2.resize(cells, (extent, extent), interpolation=cv2.INTER_CUBIC)
        y, x = np.mgrid[:extent, :extent] / (extent - 1) * 2 - 1
        blob = ((1 - np.hypot(x, y)) + 0.35 * field > 0.3).astype(np.float32)
        blob = cv2.GaussianBlur(blob, (0, 0), max(1.0, extent / 40))
        rim = np.clip(1 - np.abs(blob - 0.5) * 4, 0, 1)
        o = _uniform(rng, opacity)
        alpha = np.clip(blob * o * 0.6 + rim * o, 0, 1).astype(np.float32)
        tint = np.array([_uniform(rng, (0.45, 0.7)), _uniform(rng, (0.35, 0.55)), _uniform(rng, (0.2, 0.4))], np.float32)
        y0, x0 = int(rng.integers(-extent // 2, height)), int(rng.integers(-extent // 2, width))
        canvas.blend(y0, x0, alpha, tint, marked=False)
    return {"count": n, "opacity": round(o, 2)}


def flaking(canvas, rng, stamps, count=(1, 2), size=(0.2, 0.6), flake=(3.0, 10.0), density=(0.4, 0.75), dark_probability=0.6, edge_probability=0.6):
    """Flaking emulsion, as on deteriorating glass plates and old prints: a ragged region, often along the edge, where
    the emulsion has come off in many small flakes, printed dark (bare glass) or light (paper), denser towards the
    region's core and often mottled with flakes of the other tone."""
    n = int(rng.integers(count[0], count[1] + 1))
    height, width = canvas.height, canvas.width
    tones = []
    for _ in range(n):
        extent = max(16, int(_uniform(rng, size) * min(height, width)))
        coarse = cv2.resize(rng.uniform(-1, 1, (5, 5)).astype(np.float32), (extent, extent), interpolation=cv2.INTER_CUBIC)
        y, x = np.mgrid[:extent, :extent] / (extent - 1) * 2 - 1
        region = (1 - np.hypot(x, y)) + 0.35 * coarse
        dark = bool(rng.random() < dark_probability)
        layers = [(dark, _uniform(rng, density))]
        if rng.random() < 0.5:
            layers.append((not dark, 0.5 * _uniform(rng, density)))
        if rng.random() < edge_probability:  # centred on a random border, so that half of it lies off the photo
            side = int(rng.integers(4))
            along = int(rng.integers(0, width if side < 2 else height))
            y0, x0 = [
                (-extent // 2, along - extent // 2),
                (height - extent // 2, along - extent // 2),
                (along - extent // 2, -extent // 2),
                (along - extent // 2, width - extent // 2),
            ][side]
        else:
            y0, x0 = int(rng.integers(-extent // 2, height - extent // 2)), int(rng.integers(-extent // 2, width - extent // 2))
        for layer_dark, layer_density in layers:
            cells = max(2, int(extent / _uniform(rng, flake)))
            fine = cv2.resize(rng.uniform(0, 1, (cells, cells)).astype(np.float32), (extent, extent), interpolation=cv2.INTER_LINEAR)
            flakes = (fine < layer_density * np.clip(2 * region, 0, 1.5)) & (region > 0.1)
            alpha = cv2.GaussianBlur(flakes.astype(np.float32), (0, 0), 0.7)
            tone = _uniform(rng, (0.0, 0.12)) if layer_dark else _uniform(rng, (0.85, 1.0))
            canvas.blend(y0, x0, alpha, tone)
        tones.append("dark" if dark else "light")
    return {"count": n, "tones": tones}


def damage_stamps(canvas, rng, stamps, count=(1, 4), scale=(0.3, 1.5), opacity=(0.6, 1.0), categories=(), bright_probability=0.6):
    """Real damage stamps (scratches, dirt, hairs, lint, stains ...) scaled, rotated, flipped and tinted."""
    if stamps is None or len(stamps) == 0:
        return {"skipped": "no damage stamps available (pass --damage-dir)"}
    n = int(rng.integers(count[0], count[1] + 1))
    used = []
    for _ in range(n):
        alpha, name = stamps.sample(rng, list(categories) or None)
        s = _uniform(rng, scale) * min(canvas.height, canvas.width) / 400
        size = max(8, int(round(400 * s)))
        alpha = cv2.resize(alpha, (size, size), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        rotation = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(0, 360), 1.0)
        alpha = cv2.warpAffine(alpha, rotation, (size, size))
        if rng.random() < 0.5:
            alpha = alpha[:, ::-1]
        _, color = _pick_color(rng, bright_probability)
        alpha = np.ascontiguousarray(alpha * _uniform(rng, opacity), dtype=np.float32)
        canvas.blend(int(rng.integers(-size // 2, canvas.height)), int(rng.integers(-size // 2, canvas.width)), alpha, color)
        used.append(name)
    return {"count": n, "stamps": used}


StructuredOp = Callable[..., Params]

STRUCTURED_OPS: dict[str, StructuredOp] = {
    "scratches": scratches,
    "cracks": cracks,
    "dust": dust,
    "hairs": hairs,
    "creases": creases,
    "torn_edges": torn_edges,
    "stains": stains,
    "stamps": damage_stamps,
    "flaking": flaking,
}

