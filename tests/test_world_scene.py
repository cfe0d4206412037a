"""The procedural world: determinism, API errors, and captions that match the pixels."""
import random
import re

import numpy as np
import pytest
from PIL import Image
from skimage import measure

from pini_core.world import captions as cap
from pini_core.world.render import object_masks, render, shape_mask
from pini_core.world.scene import (BACKGROUNDS, COLOUR_RGB, COLOURS, COUNT_WORDS, DOMAINS, SHAPES, SIZES,
                                   TEXTURES, Obj, Scene, sample_scene)


def test_constants_are_rich_enough():
    assert len(SHAPES) >= 6 and len(set(SHAPES)) == len(SHAPES)
    assert len(COLOURS) >= 6 and len(TEXTURES) >= 3 and len(BACKGROUNDS) >= 4 and len(SIZES) == 3
    for t in (SHAPES, COLOURS, SIZES, TEXTURES, BACKGROUNDS):
        assert isinstance(t, tuple) and all(isinstance(s, str) for s in t)


@pytest.mark.parametrize("domain", DOMAINS)
def test_same_seed_same_scene_pixels_and_caption(domain):
    def draw(seed):
        r = random.Random(seed)
        s = sample_scene(r, domain)
        return s, np.asarray(render(s)), cap.caption(s, r)

    s1, im1, c1 = draw(7)
    s2, im2, c2 = draw(7)
    s3, im3, _ = draw(8)
    assert s1 == s2 and c1 == c2 and np.array_equal(im1, im2)
    assert not np.array_equal(im1, im3)
    assert im1.shape == (64, 64, 3) and im1.dtype == np.uint8


def test_numpy_generator_is_accepted_and_deterministic():
    a = sample_scene(np.random.default_rng(3))
    b = sample_scene(np.random.default_rng(3))
    assert a == b


def test_render_size_and_mode():
    s = sample_scene(random.Random(0))
    im = render(s, size=32)
    assert isinstance(im, Image.Image) and im.mode == "RGB" and im.size == (32, 32)
    with pytest.raises(ValueError, match="size must be an integer >= 16"):
        render(s, size=8)


def test_overrides_fix_attributes():
    r = random.Random(1)
    for _ in range(20):
        s = sample_scene(r, shape="star", colour="blue", count=3, texture="dotted", background="striped")
        assert s.count == 3 and {o.shape for o in s.objects} == {"star"}
        assert {o.colour for o in s.objects} == {"blue"} and {o.texture for o in s.objects} == {"dotted"}
        assert s.background == "striped" and s.objects[0].size == "small"


def test_bad_inputs_have_helpful_errors():
    r = random.Random(0)
    with pytest.raises(ValueError, match="unknown shape 'blob'; choose one of circle"):
        sample_scene(r, shape="blob")
    with pytest.raises(ValueError, match="unknown domain"):
        sample_scene(r, "mars")
    with pytest.raises(ValueError, match="count must be an integer in 1..4"):
        sample_scene(r, count=9)
    with pytest.raises(ValueError, match="do not fit"):
        sample_scene(r, count=4, size="large")
    with pytest.raises(TypeError, match="unknown override"):
        sample_scene(r, hue="red")
    with pytest.raises(TypeError, match="random.Random"):
        sample_scene(42)


def test_objects_do_not_overlap_and_stay_inside():
    r = random.Random(2)
    for _ in range(200):
        s = sample_scene(r)
        for o in s.objects:
            assert o.radius <= o.x <= 1 - o.radius and o.radius <= o.y <= 1 - o.radius
        ms = object_masks(s)
        total = np.sum(ms, axis=0)
        assert total.max() <= 1, "subject objects overlap"
        assert all(m.sum() > 10 for m in ms)


# --- captions describe the scene -------------------------------------------------------

def test_caption_words_agree_with_scene():
    r = random.Random(3)
    colour_words = set(COLOURS)
    seen_templates = set()
    for _ in range(400):
        s = sample_scene(r)
        c = cap.caption(s, r)
        seen_templates.add(re.sub(r"\W", "", c.split(" ")[0]))
        words = set(re.findall(r"[a-z]+", c))
        shape_words = {w for w in words if w in SHAPES or w in {cap.plural(x) for x in SHAPES}}
        assert shape_words == {s.shape if s.count == 1 else cap.plural(s.shape)}, c
        assert words & colour_words <= {s.colour}, c
        assert words & set(SIZES) <= {s.objects[0].size}, c
        if s.count > 1:
            assert COUNT_WORDS[s.count] in words, c
        else:
            assert not words & {"two", "three", "four"}, c
    assert len(seen_templates) >= 5  # phrasings vary


def test_rare_names_replace_the_shape_word():
    r = random.Random(4)
    s = sample_scene(r, shape="star", count=1)
    texts = [cap.caption(s, r, rare_rate=1.0) for _ in range(30)]
    assert all("pentagram" in t and "star" not in t for t in texts)
    assert len(set(cap.RARE_NAMES.values())) == len(SHAPES)


def test_no_colour_words_where_pixels_do_not_show_colour():
    r = random.Random(5)
    for domain in ("sketch", "colourcast"):
        for _ in range(100):
            s = sample_scene(r, domain)
            assert not set(re.findall(r"[a-z]+", cap.caption(s, r))) & set(COLOURS)


# --- captions match pixels: read colour, shape, count, size back from the image ---------

_PALETTE = np.array([COLOUR_RGB[c] for c in COLOURS], np.float32)


def _colour_names(pixels: np.ndarray) -> np.ndarray:
    d = ((pixels[:, None, :].astype(np.float32) - _PALETTE[None]) ** 2).sum(-1)
    return d.argmin(1)


def _inner(mask: np.ndarray) -> np.ndarray:
    """Mask without its 1-pixel rim (anti-aliased edges mix with the background)."""
    m = mask.copy()
    m[1:] &= mask[:-1]
    m[:-1] &= mask[1:]
    m[:, 1:] &= mask[:, :-1]
    m[:, :-1] &= mask[:, 1:]
    return m


def test_colour_named_in_scene_is_the_colour_of_its_pixels():
    r = random.Random(11)
    for i in range(120):
        s = sample_scene(r, colour=COLOURS[i % len(COLOURS)])
        img = np.asarray(render(s)).reshape(-1, 3)
        mask = _inner(np.any(object_masks(s), axis=0)).reshape(-1)
        counts = np.bincount(_colour_names(img[mask]), minlength=len(COLOURS)) / mask.sum()
        share = counts[COLOURS.index(s.colour)]
        if s.objects[0].texture == "checkered":  # two shades, half each
            assert share >= 0.35, (s.colour, dict(zip(COLOURS, counts.round(2))))
        else:
            assert counts.argmax() == COLOURS.index(s.colour), (s.colour, s.objects[0].texture,
                                                                 dict(zip(COLOURS, counts.round(2))))


def _segment(s: Scene) -> np.ndarray:
    """Object pixels of a plain-background render, found from the pixels alone."""
    img = np.asarray(render(s), np.float32)
    bg = np.asarray(s.background_tones[0], np.float32)
    return np.sqrt(((img - bg) ** 2).sum(-1)) > 60


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_read_back_from_pixels(shape):
    """Segment the object from the pixels, then the best-matching shape template at that
    place must be the shape the caption names."""
    r = random.Random(hash(shape) % 1000)
    for _ in range(6):
        s = sample_scene(r, shape=shape, count=1, texture="plain", background="plain",
                         size=r.choice(("medium", "large")))
        seg = _segment(s)
        o = s.objects[0]
        ious = {}
        for cand in SHAPES:
            m = Image.fromarray(shape_mask(Obj(cand, o.colour, o.size, o.x, o.y, rotation=o.rotation), 128)
                                .astype(np.uint8) * 255).resize((64, 64), Image.BOX)
            ious[cand] = _iou(seg, np.asarray(m) > 127)
        assert max(ious, key=ious.get) == shape, ious
        assert ious[shape] > 0.8, ious


def test_shape_geometry_independent_of_the_renderer_templates():
    """Region properties computed from pixels separate convex from non-convex shapes."""
    r = random.Random(12)

    def props(shape):
        s = sample_scene(r, shape=shape, count=1, size="large", texture="plain", background="plain")
        regions = measure.regionprops(measure.label(_segment(s)))
        return max(regions, key=lambda p: p.area)

    for convex in ("circle", "square", "hexagon"):
        assert props(convex).solidity > 0.93
    for concave in ("star", "cross", "crescent", "arrow"):
        assert props(concave).solidity < 0.9
    c = props("circle")
    assert abs(c.eccentricity) < 0.3
    assert props("diamond").eccentricity > 0.6  # taller than wide


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_count_read_back_from_pixels(count):
    r = random.Random(20 + count)
    for _ in range(5):
        s = sample_scene(r, count=count, texture="plain", background="plain",
                         shape=r.choice(("circle", "square", "hexagon", "heart")))
        labels = measure.label(_segment(s))
        big = [p for p in measure.regionprops(labels) if p.area > 20]
        assert len(big) == count


def test_sizes_and_positions_read_back_from_pixels():
    r = random.Random(30)
    areas = {}
    for size in SIZES:
        s = sample_scene(r, shape="circle", count=1, size=size, texture="plain", background="plain")
        seg = _segment(s)
        areas[size] = seg.sum()
        ys, xs = np.nonzero(seg)
        o = s.objects[0]
        assert abs(xs.mean() / 64 - o.x) < 0.03 and abs(ys.mean() / 64 - o.y) < 0.03
        phrase = cap.position_phrase(o)
        if "left" in phrase:
            assert xs.mean() < 32
        if "right" in phrase:
            assert xs.mean() > 32
    assert areas["small"] < areas["medium"] < areas["large"]


def test_sketch_has_no_fill_and_cast_tints_the_picture():
    r = random.Random(40)
    s = sample_scene(r, "sketch", shape="square", size="large", count=1)
    img = np.asarray(render(s), np.float32)
    inside = _inner(_inner(_inner(object_masks(s)[0])))
    assert img[inside].mean() > 200  # paper, not ink, inside the outline
    c = sample_scene(r, "colourcast")
    arr = np.asarray(render(c), np.float32)
    cast_rgb = np.asarray(c.cast[0], np.float32)
    # the mean colour leans towards the cast colour
    mean = arr.reshape(-1, 3).mean(0)
    assert np.corrcoef(mean, cast_rgb)[0, 1] > 0.5
    k = sample_scene(r, "clutter")
    assert len(k.distractors) >= 5 and all(d.shape != k.shape for d in k.distractors)
