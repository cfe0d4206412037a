"""Turn a `Scene` into pixels with plain PIL + numpy.

Recipe (read top to bottom): draw at SUPERSAMPLE x the target size, paint the background
pattern, paint each shape (a polygon mask filled with its colour and texture, or for
sketches only the mask's outline in pen ink), then distractors and scribbles, shrink to
the target size (this anti-aliases edges), and finally apply the whole-picture effects
of the domain: contrast, colour cast, sensor noise. Every random detail comes from
`scene.render_seed`, so one scene always renders to the same pixels.
"""
from __future__ import annotations

import math
import random
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scene import COLOUR_RGB, Obj, Scene

SUPERSAMPLE = 2
INK = (30, 35, 60)  # pen colour of sketches
# How rough a sketch is: displacement of the hand (fraction of the picture), fraction of the
# line where the pen is lifted (about), chance of going over the outline a second time.
SKETCH = {"wobble": 0.03, "gaps": 0.15, "second_stroke": 0.5}

Poly = List[Tuple[float, float]]


def _circle(n: int = 48, r: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> Poly:
    return [(cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n)) for i in range(n)]


def _regular(n: int, r: float, start_deg: float) -> Poly:
    return [(r * math.cos(math.radians(start_deg + 360 * i / n)),
             r * math.sin(math.radians(start_deg + 360 * i / n))) for i in range(n)]


def _star() -> Poly:
    pts = []
    for i in range(10):
        rad = 1.0 if i % 2 == 0 else 0.42
        a = math.radians(-90 + 36 * i)
        pts.append((rad * math.cos(a), rad * math.sin(a) + 0.08))
    return pts


def _heart() -> Poly:
    pts = []
    for i in range(60):
        t = 2 * math.pi * i / 60
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 16.5, -y / 16.5 - 0.1))
    return pts


# Each shape is a list of (polygon in unit coordinates, paint value): 255 adds, 0 cuts out.
SHAPE_POLYGONS: Dict[str, List[Tuple[Poly, int]]] = {
    "circle": [(_circle(r=0.95), 255)],
    "square": [([(-0.78, -0.78), (0.78, -0.78), (0.78, 0.78), (-0.78, 0.78)], 255)],
    "triangle": [([(0.0, -1.0), (0.95, 0.68), (-0.95, 0.68)], 255)],
    "star": [(_star(), 255)],
    "heart": [(_heart(), 255)],
    "cross": [([(-0.3, -0.95), (0.3, -0.95), (0.3, -0.3), (0.95, -0.3), (0.95, 0.3), (0.3, 0.3),
                (0.3, 0.95), (-0.3, 0.95), (-0.3, 0.3), (-0.95, 0.3), (-0.95, -0.3), (-0.3, -0.3)], 255)],
    "hexagon": [(_regular(6, 0.95, 0), 255)],
    "diamond": [([(0.0, -1.0), (0.6, 0.0), (0.0, 1.0), (-0.6, 0.0)], 255)],
    "crescent": [(_circle(r=0.95), 255), (_circle(r=0.8, cx=0.42, cy=-0.12), 0)],
    "arrow": [([(-0.95, -0.24), (0.12, -0.24), (0.12, -0.7), (0.97, 0.0), (0.12, 0.7), (0.12, 0.24),
                (-0.95, 0.24)], 255)],
}


def _transform(poly: Poly, obj: Obj, side: int) -> Poly:
    """Unit polygon -> pixel coordinates on a canvas of `side` pixels."""
    a = math.radians(obj.rotation)
    ca, sa = math.cos(a), math.sin(a)
    rad = obj.radius * side
    cx, cy = obj.x * side, obj.y * side
    return [(cx + rad * (ca * x - sa * y), cy + rad * (sa * x + ca * y)) for x, y in poly]


def shape_mask(obj: Obj, side: int) -> np.ndarray:
    """Boolean [side, side] mask of one object."""
    m = Image.new("L", (side, side), 0)
    d = ImageDraw.Draw(m)
    for poly, value in SHAPE_POLYGONS[obj.shape]:
        d.polygon(_transform(poly, obj, side), fill=value)
    return np.asarray(m) > 127


@lru_cache(maxsize=8)
def _grid(side: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel row and column coordinates (cached, read-only)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _pattern(kind: str, side: int, period: float, rnd: random.Random) -> np.ndarray:
    """[side, side] float mask in {0, 1}: where the second tone of a pattern shows."""
    yy, xx = _grid(side)
    ox, oy = rnd.uniform(0, period), rnd.uniform(0, period)
    if kind == "striped":
        ang = rnd.choice((0.0, 45.0, 90.0, 135.0))
        u = (xx + ox) * math.cos(math.radians(ang)) + (yy + oy) * math.sin(math.radians(ang))
        return ((u % period) < period / 3).astype(np.float32)
    if kind == "checkered":
        return ((((xx + ox) // period) + ((yy + oy) // period)) % 2).astype(np.float32)
    if kind == "dotted":
        dx = ((xx + ox) % period) - period / 2
        dy = ((yy + oy) % period) - period / 2
        return ((dx * dx + dy * dy) < (period * 0.22) ** 2).astype(np.float32)
    if kind == "gradient":
        ang = math.radians(rnd.uniform(0, 360))
        u = (xx - side / 2) * math.cos(ang) + (yy - side / 2) * math.sin(ang)
        return (u - u.min()) / max(1e-6, float(u.max() - u.min()))
    if kind == "noisy":
        low = np.asarray([[rnd.random() for _ in range(8)] for _ in range(8)], dtype=np.float32)
        img = Image.fromarray((low * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
        return np.asarray(img, dtype=np.float32) / 255.0
    if kind == "plain":
        return np.zeros((side, side), np.float32)
    raise ValueError(f"unknown pattern {kind!r}")


def _shade(rgb: Sequence[int]) -> np.ndarray:
    """A darker (or, for dark colours, lighter) variant of a colour for textures."""
    c = np.asarray(rgb, np.float32)
    lum = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    return c * 0.65 if lum > 90 else c * 0.6 + 255 * 0.4 * (0.5 if lum > 40 else 1.0)


def _paint_object(canvas: np.ndarray, obj: Obj, rnd: random.Random, style: str) -> None:
    side = canvas.shape[0]
    mask = shape_mask(obj, side)
    if style == "sketch":
        _draw_sketch(canvas, mask, rnd)
        return
    base = np.asarray(COLOUR_RGB[obj.colour], np.float32)
    base = np.clip(base + np.asarray([rnd.uniform(-12, 12) for _ in range(3)], np.float32), 0, 255)
    if obj.texture == "plain":
        canvas[mask] = base
        return
    period = side * obj.radius * rnd.uniform(0.45, 0.6)
    t = _pattern(obj.texture, side, period, rnd)[mask][:, None]
    canvas[mask] = base * (1 - t) + _shade(base) * t


def _smooth_field(side: int, rnd: random.Random, cells: int = 5) -> np.ndarray:
    """[side, side] smooth random field in about [-1, 1] (a coarse grid, bicubic upsampled)."""
    low = np.asarray([[rnd.uniform(-1, 1) for _ in range(cells)] for _ in range(cells)], np.float32)
    return np.asarray(Image.fromarray(low, mode="F").resize((side, side), Image.BICUBIC))


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The rim of `mask`, `width` pixels thick."""
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    inner = np.asarray(im.filter(ImageFilter.MinFilter(2 * width + 1))) > 127
    return mask & ~inner


def _draw_sketch(canvas: np.ndarray, mask: np.ndarray, rnd: random.Random) -> None:
    """A hand-drawn outline of `mask` in pen or pencil: the hand wobbles (the mask is bent by
    a smooth random displacement), lifts the pen now and then (gaps), and often goes over
    the line a second time slightly off the first."""
    side = mask.shape[0]
    yy, xx = _grid(side)
    ink = np.asarray(INK, np.float32)
    pencil = rnd.random() < 0.5
    tone = ink + (np.asarray((120, 120, 125), np.float32) if pencil else 0.0)
    width = max(1, int(round(side / (64 if pencil else 40))))
    for stroke in range(2 if rnd.random() < SKETCH["second_stroke"] else 1):
        amp = SKETCH["wobble"] * side
        ys = np.clip(np.rint(yy + amp * _smooth_field(side, rnd)), 0, side - 1).astype(np.intp)
        xs = np.clip(np.rint(xx + amp * _smooth_field(side, rnd)), 0, side - 1).astype(np.intp)
        line = _outline(mask[ys, xs], width)
        line &= _smooth_field(side, rnd, cells=7) > -1 + 2 * SKETCH["gaps"]  # pen lifted
        canvas[line] = tone


def _scribble(canvas_img: Image.Image, rnd: random.Random) -> None:
    side = canvas_img.size[0]
    d = ImageDraw.Draw(canvas_img)
    x, y = rnd.uniform(0, side), rnd.uniform(0, side)
    pts = [(x, y)]
    for _ in range(rnd.randint(2, 4)):
        x = min(side, max(0, x + rnd.uniform(-side / 3, side / 3)))
        y = min(side, max(0, y + rnd.uniform(-side / 3, side / 3)))
        pts.append((x, y))
    colour = COLOUR_RGB[rnd.choice(list(COLOUR_RGB))]
    d.line(pts, fill=colour, width=max(1, side // 48))


def render(scene: Scene, size: int = 64) -> Image.Image:
    """Render `scene` to an RGB PIL image of `size` x `size` pixels."""
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels, got {size!r}")
    rnd = random.Random(scene.render_seed)
    side = size * SUPERSAMPLE
    t0 = np.asarray(scene.background_tones[0], np.float32)
    t1 = np.asarray(scene.background_tones[1], np.float32)
    w = _pattern(scene.background, side, side / rnd.uniform(5, 9), rnd)[..., None]
    if scene.style == "sketch" and scene.background == "striped":
        w = w * 0.35  # faint ruled lines on paper
    canvas = t0 * (1 - w) + t1 * w

    for obj in scene.distractors:
        _paint_object(canvas, obj, rnd, "photo")
    for obj in scene.objects:
        _paint_object(canvas, obj, rnd, scene.style)

    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    for _ in range(scene.scribbles):
        _scribble(img, rnd)
    img = img.resize((size, size), Image.BOX)

    if scene.contrast == 1.0 and scene.cast is None and scene.noise == 0:
        return img
    arr = np.asarray(img, np.float32)
    if scene.contrast != 1.0:
        arr = arr.mean() + (arr - arr.mean()) * scene.contrast
    if scene.cast is not None:
        rgb, strength = scene.cast
        lum = (0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2])[..., None] / 255.0
        arr = (1 - strength) * arr + strength * lum * np.asarray(rgb, np.float32) * 1.4
    if scene.noise:
        gen = np.random.default_rng(scene.render_seed)
        arr = arr + gen.normal(0.0, scene.noise, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def object_masks(scene: Scene, size: int = 64) -> List[np.ndarray]:
    """Boolean [size, size] mask of each subject object, at the rendered resolution
    (for visual questions and for checking that captions match pixels)."""
    out = []
    for obj in scene.objects:
        m = Image.fromarray(shape_mask(obj, size * SUPERSAMPLE).astype(np.uint8) * 255)
        out.append(np.asarray(m.resize((size, size), Image.BOX)) > 127)
    return out
