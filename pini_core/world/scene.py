"""Scene descriptions of the procedural world: what is in a picture, not how it looks.

A `Scene` is plain data (dataclasses of strings and numbers). `render.render(scene)`
turns it into pixels and `captions.caption(scene, rng)` into words, so the picture and
its caption always agree. `sample_scene(rng, domain=...)` draws a random scene; the
same seed always gives the same scene.

Domains (the "where the images come from" of a task):

- ``source``     filled, textured shapes on patterned backgrounds ("photos"); the only
                 domain the embedded toy CLIP is pretrained on;
- ``sketch``     the same shapes as hand-drawn pen or pencil outlines on paper, wobbly and
                 with gaps (a style never seen in pretraining);
- ``colourcast`` source photos seen through a strong colour cast, low contrast and
                 sensor noise;
- ``clutter``    one large subject among many small distractor shapes and scribbles.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "heart",
                           "cross", "hexagon", "diamond", "crescent", "arrow")
# Name -> RGB. Names are common English colour words (all single BPE words).
COLOUR_RGB = {
    "red": (215, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (245, 220, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "purple": (130, 50, 180),
    "pink": (245, 130, 190),
    "brown": (120, 75, 35),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
}
COLOURS: Tuple[str, ...] = tuple(COLOUR_RGB)
# Object radius as a fraction of the image side.
SIZE_RADIUS = {"small": 0.13, "medium": 0.20, "large": 0.30}
SIZES: Tuple[str, ...] = tuple(SIZE_RADIUS)
TEXTURES: Tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
BACKGROUNDS: Tuple[str, ...] = ("plain", "gradient", "striped", "checkered", "dotted", "noisy")
STYLES: Tuple[str, ...] = ("photo", "sketch")
DOMAINS: Tuple[str, ...] = ("source", "sketch", "colourcast", "clutter")
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
MAX_COUNT = 4
DISTRACTOR_SCALE = 0.6

# Muted background tones; render picks one that contrasts with the object colour.
BACKGROUND_TONES: Tuple[Tuple[int, int, int], ...] = (
    (205, 205, 200), (225, 215, 190), (170, 185, 195), (120, 120, 120),
    (70, 75, 90), (95, 85, 70), (185, 200, 175), (50, 50, 55),
)
# Colour casts of the `colourcast` domain (warm sepia, cold blue, green, magenta).
CAST_TONES: Tuple[Tuple[int, int, int], ...] = (
    (200, 140, 60), (60, 110, 210), (90, 190, 90), (200, 70, 170))

RGB = Tuple[int, int, int]


@dataclass
class Obj:
    """One shape in the picture. x, y: centre in [0, 1] (y grows downwards)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    texture: str = "plain"
    rotation: float = 0.0  # degrees, small

    @property
    def radius(self) -> float:
        """Radius as a fraction of the image side."""
        return SIZE_RADIUS[self.size] * (DISTRACTOR_SCALE if self.is_distractor_size else 1.0)

    # distractors are drawn at DISTRACTOR_SCALE x the small size; set through Scene.distractors only
    is_distractor_size: bool = False


@dataclass
class Scene:
    """Everything needed to render one picture and to caption it.

    objects:      the subject(s): `count` copies of one shape/colour/size/texture;
    distractors:  other, small shapes (clutter domain) that captions do not mention;
    background:   one of BACKGROUNDS, drawn with `background_tones` (two RGB tones);
    style:        "photo" (filled shapes) or "sketch" (pen outlines on paper);
    cast:         (RGB, strength in [0, 1]) colour cast over the whole picture, or None;
    noise:        std of pixel noise (0..255 scale) added last;
    scribbles:    number of random pen strokes (clutter);
    render_seed:  seeds every random detail of the rendering (noise, wobble, dots).
    """

    objects: List[Obj]
    background: str = "plain"
    style: str = "photo"
    domain: str = "source"
    background_tones: Tuple[RGB, RGB] = ((205, 205, 200), (170, 170, 165))
    cast: Optional[Tuple[RGB, float]] = None
    contrast: float = 1.0
    noise: float = 0.0
    distractors: List[Obj] = field(default_factory=list)
    scribbles: int = 0
    render_seed: int = 0

    @property
    def shape(self) -> str:
        return self.objects[0].shape

    @property
    def colour(self) -> str:
        return self.objects[0].colour

    @property
    def count(self) -> int:
        return len(self.objects)

    def to_dict(self) -> dict:
        return asdict(self)


def _as_random(rng: Union[random.Random, np.random.Generator]) -> random.Random:
    """Accept either RNG kind; a numpy Generator seeds a private random.Random."""
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, np.random.Generator):
        return random.Random(int(rng.integers(0, 2**63 - 1)))
    raise TypeError(f"rng must be random.Random or numpy.random.Generator, got {type(rng).__name__}; "
                    "create one with random.Random(seed).")


def _check(name: str, value, allowed: Sequence) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, allowed))}")


def _luminance(rgb: RGB) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def pick_background_tones(r: random.Random, colour: str) -> Tuple[RGB, RGB]:
    """Two background tones that contrast (luminance gap >= 55) with the object colour."""
    obj_l = _luminance(COLOUR_RGB[colour])
    ok = [t for t in BACKGROUND_TONES if abs(_luminance(t) - obj_l) >= 55]
    base = r.choice(ok)
    shift = r.choice((-35, 35))
    second = tuple(int(min(255, max(0, c + shift))) for c in base)
    return base, second  # type: ignore[return-value]


def _place(r: random.Random, radii: Sequence[float], taken: List[Tuple[float, float, float]],
           tries: int = 200) -> List[Tuple[float, float]]:
    """Non-overlapping centres for circles of the given radii inside the unit square."""
    out = []
    for rad in radii:
        for _ in range(tries):
            x = r.uniform(rad, 1 - rad)
            y = r.uniform(rad, 1 - rad)
            if all((x - tx) ** 2 + (y - ty) ** 2 >= (rad + tr + 0.02) ** 2 for tx, ty, tr in taken):
                break
        else:  # crowded: accept the last try (rare; only with many distractors)
            pass
        taken.append((x, y, rad))
        out.append((x, y))
    return out


def sample_scene(rng: Union[random.Random, np.random.Generator], domain: str = "source",
                 **overrides) -> Scene:
    """Draw a random scene of `domain` (see module docstring).

    Overrides fix attributes instead of drawing them: shape=, colour=, size=, texture=,
    count= (1..4), background=, rotation=. Example:
    `sample_scene(random.Random(0), shape="star", count=2)`.
    """
    r = _as_random(rng)
    _check("domain", domain, DOMAINS)
    allowed = {"shape", "colour", "size", "texture", "count", "background", "rotation"}
    unknown = set(overrides) - allowed
    if unknown:
        raise TypeError(f"unknown override(s) {sorted(unknown)}; allowed: {sorted(allowed)}")

    shape = overrides.get("shape") or r.choice(SHAPES)
    _check("shape", shape, SHAPES)
    colour = overrides.get("colour") or r.choice(COLOURS)
    _check("colour", colour, COLOURS)
    texture = overrides.get("texture") or r.choice(TEXTURES)
    _check("texture", texture, TEXTURES)
    background = overrides.get("background") or r.choice(BACKGROUNDS)
    _check("background", background, BACKGROUNDS)

    if domain == "clutter":
        count = overrides.get("count", 1)
    else:
        count = overrides.get("count") or (1 if r.random() < 0.6 else r.randint(2, MAX_COUNT))
    if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be an integer in 1..{MAX_COUNT}, got {count!r}")

    if "size" in overrides:
        size = overrides["size"]
        _check("size", size, SIZES)
    elif domain == "clutter":
        size = r.choice(("medium", "large"))
    else:
        size = r.choice(SIZES if count == 1 else SIZES[:2] if count == 2 else SIZES[:1])
    if count > 1 and SIZE_RADIUS[size] * count > 0.55:
        raise ValueError(f"{count} {size} objects do not fit in one picture; use size='small'.")

    base_rot = overrides.get("rotation")
    seed = r.getrandbits(31)
    taken: List[Tuple[float, float, float]] = []
    centres = _place(r, [SIZE_RADIUS[size]] * count, taken)
    objects = [Obj(shape, colour, size, round(x, 4), round(y, 4), texture,
                   float(base_rot) if base_rot is not None else round(r.uniform(-12, 12), 2))
               for x, y in centres]

    scene = Scene(objects=objects, background=background, domain=domain,
                  background_tones=pick_background_tones(r, colour), render_seed=seed)

    if domain == "sketch":
        scene.style = "sketch"
        scene.background = r.choice(("plain", "striped"))  # paper, or ruled paper
        scene.background_tones = ((245, 242, 232), (190, 200, 225))
        scene.noise = 4.0
    elif domain == "colourcast":
        scene.cast = (r.choice(CAST_TONES), round(r.uniform(0.55, 0.7), 3))
        scene.contrast = round(r.uniform(0.5, 0.7), 3)
        scene.noise = 12.0
    elif domain == "clutter":
        n = r.randint(5, 8)
        others = [s for s in SHAPES if s != shape]
        dcentres = _place(r, [SIZE_RADIUS["small"] * DISTRACTOR_SCALE] * n, taken)
        scene.distractors = [
            Obj(r.choice(others), r.choice(COLOURS), "small", round(x, 4), round(y, 4),
                r.choice(TEXTURES), round(r.uniform(-30, 30), 2), is_distractor_size=True)
            for x, y in dcentres]
        scene.scribbles = r.randint(3, 6)
    return scene
