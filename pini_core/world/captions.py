"""CLIP-style captions of scenes ("a photo of a small red star on a striped background").

A caption only states what the scene holds (shape, count, and optionally size, colour,
texture, background, position), so it always matches the rendered pixels. Phrasings and
which details are mentioned vary at random, like web alt-texts.

`extra_text` adds what long web alt-texts also carry: more true details of the scene in a
second sentence, or content-free boilerplate ("stock photo", "image 3 of 12"), before or
after the description. Pretraining uses it so that every text position up to the context
length is trained on natural words. No caption ever holds a prompt-learning method's
scaffolding: no placeholder words (PiNI's 16 "x", CoOp's "X" context), no repeated filler
tokens. Dataset-template phrasings such as "a photo of a {}." are natural language a real
CLIP saw on the web, so they stay, but only as one phrasing among many (`BARE_TEMPLATES`
for bare labels, `PHOTO_TEMPLATES` for descriptions), never as the one fixed format.

`RARE_NAMES` gives every shape a rare synonym. Pretraining uses it in a small fraction of
captions (`rare_rate`), so the embedded CLIP knows these words only weakly: the
`toy-rarewords` task then names its classes with them.
"""
from __future__ import annotations

import random
from typing import Optional

from .scene import COUNT_WORDS, Obj, Scene

PLURALS = {"cross": "crosses"}
RARE_NAMES = {
    "circle": "roundel", "square": "quadrate", "triangle": "trigon", "star": "pentagram",
    "heart": "cordate", "cross": "cruciform", "hexagon": "sexangle", "diamond": "lozenge",
    "crescent": "lune", "arrow": "dart",
}
BACKGROUND_WORDS = {
    "plain": ("plain", "simple", "uniform"), "gradient": ("gradient", "shaded"),
    "striped": ("striped",), "checkered": ("checkered", "chequered"),
    "dotted": ("dotted", "spotted"), "noisy": ("noisy", "mottled"),
}
TEXTURE_WORDS = {"plain": ("plain", "solid"), "striped": ("striped",), "dotted": ("dotted", "spotted"),
                 "checkered": ("checkered",)}
PHOTO_TEMPLATES = (
    "a photo of {np}.", "a photo of {np}{bg}.", "{np}.", "{np}{bg}.", "a picture of {np}.",
    "an image of {np}{bg}.", "a close-up photo of {np}.", "this is a photo of {np}.",
    "a rendering of {np}{bg}.", "a photo of {np}{pos}.", "there is {np}{pos}.",
    "a cropped photo of {np}.", "a good photo of {np}.", "a bright photo of {np}{bg}.",
)
# Bare label-like captions (alt-texts that only name the object): several phrasings, so the
# toy tasks' template "a photo of a {}." is one natural phrasing among others, not the format.
BARE_TEMPLATES = ("a photo of {np}.", "a picture of {np}.", "an image of {np}.", "{np}.", "{np}",
                  "photo of {np}", "{np} photo.")
# Content-free web boilerplate (file names, gallery and stock-site words). No style,
# colour, shape or count words, so it never contradicts the picture.
BOILERPLATE = (
    "stock photo", "royalty free image", "free download", "high resolution", "hd wallpaper",
    "click to enlarge", "image 3 of 12", "photo 7 of 20", "from our gallery", "uploaded by a user",
    "my collection", "new listing", "best seller", "see more", "view full size", "item number 4021",
    "posted on monday", "copyright reserved", "shared with friends", "next page",
)
SKETCH_TEMPLATES = ("a sketch of {np}.", "a pen drawing of {np}.", "a doodle of {np}.",
                    "an outline sketch of {np}.")


def plural(noun: str) -> str:
    return PLURALS.get(noun, noun + "s")


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def position_phrase(obj: Obj) -> str:
    """' in the top left', ' on the right', ' in the centre', ..."""
    h = "left" if obj.x < 0.38 else "right" if obj.x > 0.62 else ""
    v = "top" if obj.y < 0.38 else "bottom" if obj.y > 0.62 else ""
    if h and v:
        return f" in the {v} {h}"
    if h:
        return f" on the {h}"
    if v:
        return f" at the {v}"
    return " in the centre"


def noun_phrase(scene: Scene, r: random.Random, shape_word: Optional[str] = None,
                detail: float = 1.0) -> str:
    """'a small red striped star', 'three blue hearts', ... Details are dropped at random;
    `detail` scales how often they are kept."""
    o = scene.objects[0]
    word = shape_word or o.shape
    words = []
    if r.random() < 0.45 * detail:
        words.append(o.size)
    # colour words only where the pixels show the colour (no sketch, no colour cast)
    if scene.style == "photo" and scene.cast is None and r.random() < 0.7 * detail:
        words.append(o.colour)
    if scene.style == "photo" and o.texture != "plain" and r.random() < 0.4 * detail:
        words.append(r.choice(TEXTURE_WORDS[o.texture]))
    n = scene.count
    if n == 1:
        words.append(word)
        return article(words[0]) + " " + " ".join(words)
    words.append(plural(word))
    return COUNT_WORDS[n] + " " + " ".join(words)


def caption(scene: Scene, rng: random.Random, rare_rate: float = 0.0, bare_rate: float = 0.15) -> str:
    """A natural-language caption of `scene`. With probability `rare_rate` the shape is
    named by its rare synonym (RARE_NAMES) instead of its common name; with probability
    `bare_rate` the caption is a bare label ("a photo of a star.")."""
    r = rng if isinstance(rng, random.Random) else random.Random(int(rng.integers(0, 2**63 - 1)))
    o = scene.objects[0]
    word = RARE_NAMES[o.shape] if r.random() < rare_rate else o.shape
    if r.random() < bare_rate:  # bare label-like captions, as many alt-texts are
        n = scene.count
        np_ = f"{article(word)} {word}" if n == 1 else f"{COUNT_WORDS[n]} {plural(word)}"
        return r.choice(BARE_TEMPLATES).format(np=np_)
    templates = SKETCH_TEMPLATES if scene.style == "sketch" else PHOTO_TEMPLATES
    t = r.choice(templates)
    bg = ""
    if "{bg}" in t and scene.style == "photo":
        bg = f" on {article(w := r.choice(BACKGROUND_WORDS[scene.background]))} {w} background"
    pos = position_phrase(o) if "{pos}" in t and scene.count == 1 else ""
    text = t.format(np=noun_phrase(scene, r, word), bg=bg, pos=pos)
    return text.replace("there is ", "there are ", 1) if scene.count > 1 else text


def detail_sentences(scene: Scene, r: random.Random) -> list:
    """True extra statements about `scene` ("the background is striped.", "it is in the
    top left.", ...), shuffled; the caller keeps as many as fit."""
    o = scene.objects[0]
    n = scene.count
    it, is_ = ("it", "is") if n == 1 else ("they", "are")
    out = [f"{it} {is_} {o.size}."]
    if scene.style == "photo":
        out.append(f"the background is {r.choice(BACKGROUND_WORDS[scene.background])}.")
        if scene.cast is None:
            out.append(f"{it} {is_} {o.colour}.")
        if o.texture != "plain":
            out.append(f"the pattern is {r.choice(TEXTURE_WORDS[o.texture])}.")
    if n == 1:
        out.append(f"{it} {is_}{position_phrase(o)}.")
    else:
        out.append(f"there are {COUNT_WORDS[n]} of them.")
    r.shuffle(out)
    return out


def extra_text(scene: Scene, r: random.Random) -> tuple:
    """(before, after): natural extra text for a long caption, as web alt-texts carry.
    Either more true details of the scene (after the description) or content-free
    boilerplate (before or after). Never placeholder or prompt scaffolding."""
    if r.random() < 0.5:
        return [], detail_sentences(scene, r)[:r.randint(1, 4)]
    words = r.sample(BOILERPLATE, r.randint(1, 4))
    return (words, []) if r.random() < 0.5 else ([], words)
