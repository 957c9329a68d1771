"""Distractors: scene content that looks like damage but is not.

A scratch detector trained only on damage learns "thin, bright, high-contrast" and then marks white blouses,
poles, window frames, lettering and glints on real photos. These ops draw such content *into the clean photo*,
before the print is aged and scanned, so it gets the same fading, blur, grain and JPEG as the rest of the scene,
is part of the clean target, and is never in the damage mask: a detector is taught (and scored on) leaving it
alone.

Every op has the signature ``op(canvas, rng, **ranges) -> params``: it alpha-blends onto a
:class:`~oldphoto.degrade.structured.Canvas` holding the (H, W, 3) float32 photo in [0, 1] (``canvas.opacity``
records where it drew, so the pipeline can report a distractor mask) and returns the values it drew, for the
manifest. Sizes are fractions of the photo's shorter side; line widths are in pixels (thin things must stay
thin whatever the resolution, as scratches do). Each op has bright and dark variants (``bright_probability``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from oldphoto.degrade.structured import Canvas, _stroke
from oldphoto.degrade.unstructured import Params, _uniform

DistractorOp = Callable[..., Params]

_SHIFT = 4  # sub-pixel bits for cv2 drawing calls
_ONE = 1 << _SHIFT


def _side(canvas: Canvas) -> int:
    return min(canvas.height, canvas.width)


def _count(rng: np.random.Generator, bounds: Sequence[int]) -> int:
    return int(rng.integers(int(bounds[0]), int(bounds[1]) + 1))


def _place(rng: np.random.Generator, canvas: Canvas, height: int, width: int) -> tuple[int, int]:
    """Top-left (y0, x0) of a (height, width) patch placed at random, at least partly inside the photo."""
    y_low, x_low = -height // 3, -width // 3
    y0 = int(rng.integers(y_low, max(y_low + 1, canvas.height - height // 2)))
    x0 = int(rng.integers(x_low, max(x_low + 1, canvas.width - width // 2)))
    return y0, x0


def _tone(rng: np.random.Generator, bright: bool, bright_range=(0.82, 0.98), dark_range=(0.02, 0.18), tint: float = 0.03) -> np.ndarray:
    """(3,) float32 RGB: a near-white or near-black colour with a slight random tint."""
    level = _uniform(rng, bright_range if bright else dark_range)
    return np.clip(level + rng.uniform(-tint, tint, 3), 0.0, 1.0).astype(np.float32)


def _poly_alpha(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """(h, w) float32 in [0, 1]: an anti-aliased filled polygon; ``points`` (n, 2) of (x, y) in patch pixels."""
    layer = np.zeros(shape, np.uint8)
    cv2.fillPoly(layer, [np.rint(points * _ONE).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    return layer.astype(np.float32) / 255.0


def _outline_alpha(shape: tuple[int, int], points: np.ndarray, thickness: float) -> np.ndarray:
    """(h, w) float32 in [0, 1]: an anti-aliased closed outline; below one pixel thick it is drawn fainter."""
    layer = np.zeros(shape, np.uint8)
    value = int(round(255 * min(1.0, thickness)))
    cv2.polylines(layer, [np.rint(points * _ONE).astype(np.int32)], True, value, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)
    return layer.astype(np.float32) / 255.0


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]], np.float32)


def _emblem_outline(rng: np.random.Generator, shape: str) -> np.ndarray:
    """(n, 2) float32 outline of a unit-radius emblem centred on the origin."""
    if shape == "disc":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles) * rng.uniform(0.85, 1.0)], 1).astype(np.float32)
    if shape == "star":
        points = int(rng.integers(5, 7))
        radii = np.tile([1.0, rng.uniform(0.4, 0.55)], points)
        angles = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False) + rng.uniform(0, np.pi)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1).astype(np.float32)
    # shield: a flat top, straight sides, and two curved flanks meeting in a point at the bottom
    t = np.linspace(0, 1, 10)[:, None]
    right = (1 - t) ** 2 * [0.8, 0.05] + 2 * (1 - t) * t * [0.78, 0.7] + t**2 * [0.0, 1.0]
    outline = np.concatenate([[[-0.8, -0.9], [0.8, -0.9]], right, right[::-1][1:] * [-1, 1]])
    return _rotate(outline.astype(np.float32), rng.uniform(-0.3, 0.3))


def emblems(canvas, rng, count=(1, 4), size=(0.012, 0.05), bright_probability=0.6, shapes=("disc", "star", "shield"), row_probability=0.5):
    """Badges, buttons, medals and pins: shaded discs, stars and shields with a rim, alone or in a row.

    A raised surface is lit from one side (brighter there, darker opposite); domed discs get a specular dot.
    """
    n = _count(rng, count)
    side = _side(canvas)
    shape = str(rng.choice(list(shapes)))
    bright = bool(rng.random() < bright_probability)
    radius = max(1.5, _uniform(rng, size) * side)
    base = _tone(rng, bright, (0.78, 0.97), (0.03, 0.2))
    rim = np.clip(base * rng.uniform(0.45, 0.7) if bright else base + rng.uniform(0.25, 0.5), 0, 1).astype(np.float32)
    gloss = _uniform(rng, (0.08, 0.3))
    light = rng.uniform(0, 2 * np.pi)
    in_row = n > 1 and rng.random() < row_probability
    # Buttons down a coat, medals across a chest: evenly spaced along a line; otherwise scattered.
    start = np.array([rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)])
    heading = rng.uniform(0, 2 * np.pi)
    spacing = radius * rng.uniform(2.5, 4.5)
    pad = 3
    half = int(np.ceil(radius)) + pad
    yy, xx = (np.mgrid[: 2 * half + 1, : 2 * half + 1].astype(np.float32) - half) / radius
    # Linear lighting across the face, in [-1, 1] over the emblem.
    lit = np.clip(xx * np.cos(light) + yy * np.sin(light), -1, 1)
    outline = _emblem_outline(rng, shape) * radius + half
    fill = _poly_alpha(xx.shape, outline)
    border = _outline_alpha(xx.shape, outline, max(0.8, radius * rng.uniform(0.08, 0.18)))
    color = base[None, None, :] + (gloss * lit)[:, :, None]
    if shape == "disc":
        spot = np.exp(-((xx - 0.4 * np.cos(light)) ** 2 + (yy - 0.4 * np.sin(light)) ** 2) / (2 * 0.15**2))
        color = color + (0.5 * gloss * spot)[:, :, None]
    color = np.clip(color, 0, 1).astype(np.float32)
    placed = []
    for i in range(n):
        if in_row:
            centre = start + i * spacing * np.array([np.cos(heading), np.sin(heading)])
        else:
            centre = np.array([rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)])
        y0, x0 = int(round(centre[1])) - half, int(round(centre[0])) - half
        canvas.blend(y0, x0, fill, color)
        canvas.blend(y0, x0, border, rim)
        placed.append([int(round(centre[0])), int(round(centre[1]))])
    return {"count": n, "shape": shape, "bright": bright, "radius": round(radius, 1), "row": in_row, "centres": placed}


def _soft_blob(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width) float32 0/1: an irregular rounded blob filling most of the box."""
    cells = rng.uniform(-1, 1, (5, 5)).astype(np.float32)
    field = cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC)
    y, x = np.mgrid[:height, :width].astype(np.float32)
    r = np.hypot(x / max(1, width - 1) * 2 - 1, y / max(1, height - 1) * 2 - 1)
    return ((1 - r) + 0.3 * field > 0.25).astype(np.float32)


def _collar(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width) float32 in [0, 1]: a collar, a band in a V (chevron) pointing down, its two sides a little
    unequal as cloth lies."""
    band = rng.uniform(0.22, 0.4)
    tip = rng.uniform(0.4, 0.6)
    outline = np.array([[0.0, 0.0], [band, 0.0], [tip, 1.0 - 1.6 * band], [1.0 - band * rng.uniform(0.8, 1.2), 0.0], [1.0, 0.0], [tip, 1.0]], np.float32)
    return _poly_alpha((height, width), outline * [width - 1, height - 1])


def clothing(canvas, rng, count=(1, 2), size=(0.12, 0.45), bright_probability=0.6, collar_probability=0.35, fold_depth=(0.08, 0.3), softness=(0.004, 0.02)):
    """White and black clothing: blouses, shirt fronts and collars, dark coats: large soft-edged areas with folds.

    Folds are shading bands across the cloth (darker creases on white, a sheen on black), wavy and uneven.
    """
    n = _count(rng, count)
    side = _side(canvas)
    drawn = []
    for _ in range(n):
        extent = max(8.0, _uniform(rng, size) * side)
        aspect = rng.uniform(0.6, 1.6)
        height, width = max(8, int(extent * aspect)), max(8, int(extent / aspect))
        collar = bool(rng.random() < collar_probability)
        shape = _collar(rng, height, width) if collar else _soft_blob(rng, height, width)
        soft = max(0.7, _uniform(rng, softness) * side)
        # Room for the soft edge, which would otherwise be cut off straight at the patch border.
        margin = int(np.ceil(3 * soft)) + 1
        shape = np.pad(shape, margin)
        height, width = shape.shape
        alpha = cv2.GaussianBlur(shape, (0, 0), soft)
        bright = bool(rng.random() < bright_probability)
        base = _tone(rng, bright, (0.8, 0.97), (0.03, 0.16))
        # Folds: a few narrow bands of shading along a random direction, bent by a smooth field.
        theta = rng.uniform(0, np.pi)
        y, x = np.mgrid[:height, :width].astype(np.float32)
        u = (x * np.cos(theta) + y * np.sin(theta)) / extent
        cells = rng.uniform(-1, 1, (4, 4)).astype(np.float32)
        bend = cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC)
        folds = (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1.0, 3.5) * u + 1.5 * bend + rng.uniform(0, 2 * np.pi))) ** 3
        depth = _uniform(rng, fold_depth)
        sign = -1.0 if bright else 0.6
        color = np.clip(base[None, None, :] + (sign * depth * folds)[:, :, None], 0, 1).astype(np.float32)
        y0, x0 = _place(rng, canvas, height, width)
        canvas.blend(y0, x0, alpha, color)
        drawn.append({"kind": "collar" if collar else "patch", "bright": bright, "size": [width, height], "fold_depth": round(depth, 2)})
    return {"count": n, "items": drawn}


def _line_points(start: np.ndarray, direction: np.ndarray, length: float, sag: float) -> np.ndarray:
    """(k, 2) float32 points of a straight line, or one sagging by ``sag`` pixels in the middle (a hanging wire)."""
    k = max(8, int(length / 6))
    t = np.linspace(0, 1, k)[:, None]
    normal = np.array([-direction[1], direction[0]])
    return (start + t * length * direction + 4 * sag * t * (1 - t) * normal).astype(np.float32)


def _draw_line(canvas: Canvas, rng: np.random.Generator, points: np.ndarray, width: float, opacity: float, color: np.ndarray) -> None:
    steps = len(points) - 1
    t = np.linspace(0, 1, steps)
    # Lighting and distance make a real wire or frame uneven along its length.
    opacities = np.clip(opacity * (0.85 + 0.15 * np.sin(t * rng.uniform(2, 8) + rng.uniform(0, 6))), 0, 1)
    y0, x0, alpha = _stroke(points, np.full(steps, width, np.float32), opacities)
    canvas.blend(y0, x0, alpha, color)


def scene_lines(canvas, rng, count=(1, 2), kinds=("wires", "parallel", "grid", "pole"), width=(0.6, 2.5), opacity=(0.6, 1.0), bright_probability=0.5):
    """Thin straight or gently curved lines in the scene: wires, poles, rails, window frames, racket strings.

    ``wires``: one to three long sagging lines side by side; ``parallel``: a set of straight rails or blinds;
    ``grid``: two crossing sets in a rectangle (window panes, racket strings, a fence), maybe framed; ``pole``:
    one long, wider, nearly vertical line shaded across its width.
    """
    n = _count(rng, count)
    side = _side(canvas)
    diagonal = float(np.hypot(canvas.height, canvas.width))
    drawn = []
    for _ in range(n):
        kind = str(rng.choice(list(kinds)))
        bright = bool(rng.random() < bright_probability)
        color = _tone(rng, bright, (0.8, 1.0), (0.0, 0.2))
        w = _uniform(rng, width)
        o = _uniform(rng, opacity)
        centre = np.array([rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)])
        angle = rng.uniform(0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        record: dict = {"kind": kind, "bright": bright, "width": round(w, 2)}
        if kind in ("wires", "parallel"):
            lines = _count(rng, (1, 3) if kind == "wires" else (3, 8))
            length = rng.uniform(0.4, 1.2) * diagonal if kind == "wires" else rng.uniform(0.15, 0.6) * side
            spacing = rng.uniform(0.01, 0.05) * side
            sag = rng.uniform(0.0, 0.05) * length if kind == "wires" else 0.0
            for i in range(lines):
                start = centre - direction * length / 2 + normal * spacing * (i - (lines - 1) / 2)
                _draw_line(canvas, rng, _line_points(start, direction, length, sag), w, o, color)
            record.update(lines=lines, length=round(length, 1), spacing=round(spacing, 1), sag=round(sag, 1))
        elif kind == "grid":
            half = rng.uniform(0.05, 0.25, 2) * side
            # Racket strings and mesh are dense and fine; window panes and fences sparse.
            dense = bool(rng.random() < 0.4)
            spacing = rng.uniform(0.008, 0.02) * side if dense else rng.uniform(0.04, 0.12) * side
            spacing = max(spacing, w + 2.0)
            axes = (direction, normal)
            lines = 0
            for a in range(2):
                along, across = axes[a], axes[1 - a]
                extent_along, extent_across = half[a], half[1 - a]
                for offset in np.arange(-extent_across, extent_across + 1e-6, spacing):
                    start = centre - along * extent_along + across * offset
                    _draw_line(canvas, rng, _line_points(start, along, 2 * extent_along, 0.0), w, o, color)
                    lines += 1
            framed = bool(rng.random() < 0.5)
            if framed:
                signs = ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))
                corners = [centre + sx * half[0] * direction + sy * half[1] * normal for sx, sy in signs]
                edges = []
                for a_corner, b_corner in zip(corners[:-1], corners[1:]):
                    span = float(np.linalg.norm(b_corner - a_corner))
                    edges.append(_line_points(a_corner, (b_corner - a_corner) / max(span, 1e-6), span, 0.0))
                frame = np.concatenate(edges)
                _draw_line(canvas, rng, frame, w * rng.uniform(1.5, 3.0), o, color)
            record.update(lines=lines, spacing=round(float(spacing), 1), dense=dense, framed=framed, size=[round(float(2 * h), 1) for h in half])
        else:  # pole
            w = max(w, rng.uniform(0.006, 0.02) * side)
            angle = np.pi / 2 + rng.uniform(-0.1, 0.1)
            direction = np.array([np.cos(angle), np.sin(angle)])
            length = rng.uniform(0.5, 1.2) * canvas.height
            start = np.array([centre[0], rng.uniform(-0.2, 0.5) * canvas.height])
            points = _line_points(start, direction, length, 0.0)
            _draw_line(canvas, rng, points, w, o, color)
            # A round pole is lit on one side: a narrower stripe of brighter (or darker) tone along one edge.
            shade = np.clip(color + (0.15 if not bright else -0.2), 0, 1).astype(np.float32)
            offset = np.array([-direction[1], direction[0]]) * w * rng.choice([-0.25, 0.25])
            _draw_line(canvas, rng, (points + offset).astype(np.float32), w * 0.35, o, shade)
            record.update(width=round(float(w), 2), length=round(float(length), 1))
        drawn.append(record)
    return {"count": n, "sets": drawn}


_LETTERS = "ABCDEFGHIJKLMNOPRSTUVWYZ0123456789"
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN)


def lettering(canvas, rng, count=(1, 2), height=(0.025, 0.08), length=(2, 10), box_probability=0.6, bright_probability=0.5, angle=(-12.0, 12.0)):
    """Lettering and signs: a word in a shaded box (shop sign, number plate, banner) or painted straight on.

    Bright variant: light letters (on a dark box when boxed); dark variant: dark letters (on a light box).
    """
    n = _count(rng, count)
    side = _side(canvas)
    drawn = []
    for _ in range(n):
        text = "".join(rng.choice(list(_LETTERS), size=_count(rng, length)))
        font = int(_FONTS[int(rng.integers(len(_FONTS)))])
        target = max(5.0, _uniform(rng, height) * side)
        thickness = max(1, int(round(target / 10 * rng.uniform(0.7, 1.4))))
        (tw, th), baseline = cv2.getTextSize(text, font, 1.0, thickness)
        scale = target / max(1, th)
        (tw, th), baseline = cv2.getTextSize(text, font, scale, thickness)
        margin = int(np.ceil(0.35 * th)) + 2
        h, w = th + baseline + 2 * margin, tw + 2 * margin
        letters = np.zeros((h, w), np.uint8)
        cv2.putText(letters, text, (margin, margin + th), font, scale, 255, thickness, cv2.LINE_AA)
        boxed = bool(rng.random() < box_probability)
        box = np.zeros((h, w), np.float32)
        if boxed:
            box[1:-1, 1:-1] = 1.0
        # Tilt the sign (both layers alike), with room so the corners are not cut off.
        tilt = _uniform(rng, angle)
        size = int(np.ceil(np.hypot(h, w))) + 2
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), tilt, 1.0)
        matrix[:, 2] += [(size - w) / 2, (size - h) / 2]
        letters_alpha = cv2.warpAffine(letters.astype(np.float32) / 255.0, matrix, (size, size), flags=cv2.INTER_LINEAR)
        box_alpha = cv2.warpAffine(box, matrix, (size, size), flags=cv2.INTER_LINEAR)
        bright = bool(rng.random() < bright_probability)
        ink = _tone(rng, bright, (0.82, 1.0), (0.0, 0.18))
        y0, x0 = _place(rng, canvas, size, size)
        if boxed:
            board = _tone(rng, not bright, (0.75, 0.95), (0.05, 0.3))
            # A painted board is lit unevenly: a gentle gradient across it.
            ramp = np.linspace(-1, 1, size, dtype=np.float32)
            gradient = _uniform(rng, (0.0, 0.08)) * (ramp[None, :] if rng.random() < 0.5 else ramp[:, None])
            color = np.clip(board[None, None, :] + np.broadcast_to(gradient, (size, size))[:, :, None], 0, 1).astype(np.float32)
            canvas.blend(y0, x0, np.clip(box_alpha, 0, 1), color)
        canvas.blend(y0, x0, np.clip(letters_alpha, 0, 1), ink)
        drawn.append({"text": text, "height": round(target, 1), "boxed": boxed, "bright": bright, "angle": round(tilt, 1)})
    return {"count": n, "signs": drawn}


def highlights(canvas, rng, count=(1, 8), radius=(0.002, 0.01), elongation=(1.0, 3.0), spread=(0.02, 0.2), bright_probability=0.85, streak_probability=0.3):
    """Specular highlights: small gaussian glints on water, metal, glass and eyes, clustered; some with a star
    of streaks. The dark variant is small soft dark spots (holes, pupils, rivets)."""
    n = _count(rng, count)
    side = _side(canvas)
    bright = bool(rng.random() < bright_probability)
    color = _tone(rng, bright, (0.93, 1.0), (0.0, 0.1), tint=0.02)
    centre = np.array([rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)])
    scatter = _uniform(rng, spread) * side
    sigmas = []
    for _ in range(n):
        sigma = max(0.6, _uniform(rng, radius) * side)
        stretch = _uniform(rng, elongation)
        theta = rng.uniform(0, np.pi)
        peak = rng.uniform(0.7, 1.0)
        half = int(np.ceil(4 * sigma * stretch)) + 2
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        alpha = peak * np.exp(-(u**2 / (2 * (sigma * stretch) ** 2) + v**2 / (2 * sigma**2)))
        if bright and rng.random() < streak_probability:
            # A star filter / lens streaks: two thin fading lines crossing at the glint.
            fall = np.exp(-np.maximum(np.abs(u), np.abs(v)) / (2.0 * sigma * stretch))
            streaks = np.maximum(np.exp(-(v**2) / 0.5), np.exp(-(u**2) / 0.5)) * fall * 0.6 * peak
            alpha = np.maximum(alpha, streaks)
        position = centre + rng.normal(0, scatter, 2)
        canvas.blend(int(round(position[1])) - half, int(round(position[0])) - half, alpha.astype(np.float32), color)
        sigmas.append(round(sigma, 2))
    return {"count": n, "bright": bright, "sigma": sigmas, "spread": round(scatter, 1)}


def specks(canvas, rng, clusters=(1, 3), count=(20, 150), radius=(0.6, 2.5), spread=(0.05, 0.3), opacity=(0.5, 1.0), bright_probability=0.85, blossom_probability=0.3):
    """Snow, blossom, seeds, sparks: many small soft dots in clusters (``count`` per cluster at 512 px).

    Bright (snow, white or pink blossom) or dark (seeds, gravel, distant birds); each dot with its own opacity.
    """
    side = _side(canvas)
    scale = side / 512
    k = _count(rng, clusters)
    bright = bool(rng.random() < bright_probability)
    blossom = bright and bool(rng.random() < blossom_probability)
    made = []
    for _ in range(k):
        n = max(5, int(_count(rng, count) * scale))
        color = _tone(rng, bright, (0.88, 1.0), (0.02, 0.2), tint=0.02)
        if blossom:
            color = np.clip(color * [1.0, rng.uniform(0.82, 0.95), rng.uniform(0.88, 0.97)], 0, 1).astype(np.float32)
        centre = np.array([rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)])
        sigma = _uniform(rng, spread) * side
        positions = centre + rng.normal(0, sigma, (n, 2))
        radii = np.maximum(0.5, rng.uniform(radius[0], radius[1], n) * max(1.0, scale) * (1.5 if blossom else 1.0))
        values = rng.uniform(opacity[0], opacity[1], n)
        layer = np.zeros((canvas.height, canvas.width), np.uint8)
        for (x, y), r, value in zip(positions, radii, values):
            cv2.circle(layer, (int(round(x * _ONE)), int(round(y * _ONE))), max(1, int(round(r * _ONE))), int(round(255 * value)), -1, cv2.LINE_AA, _SHIFT)
        # Out-of-focus flakes are soft-edged and brightest in the middle.
        alpha = cv2.GaussianBlur(layer.astype(np.float32) / 255.0, (0, 0), 0.6)
        canvas.blend(0, 0, alpha, color)
        made.append(n)
    return {"clusters": k, "counts": made, "bright": bright, "blossom": blossom}


def hatching(canvas, rng, count=(1, 2), size=(0.1, 0.35), spacing=(2.5, 5.0), width=(0.5, 1.3), opacity=(0.5, 0.9), cross_probability=0.4, bright_probability=0.2):
    """Engraving-style hatching: patches of parallel thin lines (crossed in the darker ones), as in printed
    engravings, etchings and shaded drawings; lines are wider where the tone is darker, and may ripple.

    ``spacing`` is in pixels at 512 px (scaled up with the photo, never below the line width plus 1.5 px).
    """
    n = _count(rng, count)
    side = _side(canvas)
    drawn = []
    for _ in range(n):
        extent = max(10.0, _uniform(rng, size) * side)
        aspect = rng.uniform(0.5, 2.0)
        height, width_px = max(10, int(extent * aspect)), max(10, int(extent / aspect))
        w = _uniform(rng, width)
        sp = max(w + 1.5, _uniform(rng, spacing) * max(1.0, side / 512))
        soft = max(1.0, extent / 30)
        margin = int(np.ceil(3 * soft)) + 1
        region = cv2.GaussianBlur(np.pad(_soft_blob(rng, height, width_px), margin), (0, 0), soft)
        height, width_px = region.shape
        cells = rng.uniform(0, 1, (4, 4)).astype(np.float32)
        tone = cv2.resize(cells, (width_px, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        y, x = np.mgrid[:height, :width_px].astype(np.float32)
        theta = rng.uniform(0, np.pi)
        ripple = rng.uniform(0, 0.6) * sp
        crossed = bool(rng.random() < cross_probability)
        lines = np.zeros((height, width_px), np.float32)
        for t in (theta, theta + rng.uniform(np.pi / 3, np.pi / 2)) if crossed else (theta,):
            u = x * np.cos(t) + y * np.sin(t)
            v = -x * np.sin(t) + y * np.cos(t)
            u = u + ripple * np.sin(v / max(4.0, extent / 6))
            distance = np.abs(u / sp - np.round(u / sp)) * sp
            local = w * (0.6 + 0.8 * tone)
            # Analytic anti-aliasing: coverage of a pixel by a line of width ``local`` at that distance.
            lines = np.maximum(lines, np.clip(local / 2 + 0.5 - distance, 0, 1))
        o = _uniform(rng, opacity)
        bright = bool(rng.random() < bright_probability)
        color = _tone(rng, bright, (0.8, 0.97), (0.02, 0.2))
        y0, x0 = _place(rng, canvas, height, width_px)
        canvas.blend(y0, x0, (lines * region * o).astype(np.float32), color)
        drawn.append({"size": [width_px, height], "spacing": round(sp, 2), "width": round(w, 2), "crossed": crossed, "bright": bright})
    return {"count": n, "patches": drawn}


DISTRACTOR_OPS: dict[str, DistractorOp] = {
    "emblems": emblems,
    "clothing": clothing,
    "scene_lines": scene_lines,
    "lettering": lettering,
    "highlights": highlights,
    "specks": specks,
    "hatching": hatching,
}

__all__ = ["DISTRACTOR_OPS", "clothing", "emblems", "hatching", "highlights", "lettering", "scene_lines", "specks"]
