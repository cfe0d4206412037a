"""Visual questions about the procedural toy world (pini_core.world).

Two question sets, so that MuNG has a shift to adapt to:

* ``source`` (host pretraining): photos of the ``source`` domain, four question types with
  fixed phrasings - colour ("what colour is the star ?"), shape ("what shape is in the
  picture ?"), count ("how many star are there ?"), existence ("is there a red star ?").
* ``shifted`` (MuNG training / evaluation): ``clutter`` scenes - one medium/large subject among
  5-8 small distractor shapes and scribbles the questions never mention - asked with NEW
  phrasings ("which colour has the star ?", "which shape is the biggest ?", "do you see a red
  star ?"). The host never saw clutter nor these phrasings; the generator must learn to steer
  the visual tokens towards the subject the question is about.

Every answer is one word. Splits are disjoint by seed (train / test use different seeds).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image

from pini_core.world.render import render
from pini_core.world.scene import COLOURS, COUNT_WORDS, SHAPES, sample_scene

QUESTION_SETS = ("source", "shifted")

TEMPLATES = {
    "source": {
        "colour": ["what colour is the {shape} ?"],
        "shape": ["what shape is in the picture ?"],
        "count": ["how many {shape} are there ?"],
        "exists": ["is there a {colour} {shape} ?"],
    },
    "shifted": {
        "colour": ["which colour has the {shape} ?", "the {shape} is painted in which colour ?"],
        "shape": ["which shape is the biggest ?", "name the large shape in the middle of the clutter ?"],
        "exists": ["do you see a {colour} {shape} ?", "can you find a {colour} {shape} here ?"],
    },
}
ANSWERS = sorted(set(COLOURS) | set(SHAPES) | set(COUNT_WORDS.values()) | {"yes", "no"})


@dataclass
class VQAItem:
    image: Image.Image
    question: str
    answer: str
    kind: str
    scene_labels: tuple | None = None    # (shape index, colour index, count - 1) of the subject, if known


def _question(r: random.Random, scene, qset: str, kind: str) -> tuple[str, str]:
    tpl = r.choice(TEMPLATES[qset][kind])
    if kind == "colour":
        return tpl.format(shape=scene.shape), scene.colour
    if kind == "shape":
        return tpl, scene.shape
    if kind == "count":
        return tpl.format(shape=scene.shape), COUNT_WORDS[scene.count]
    # existence: half positive; negatives change the colour or ask for a shape absent from the picture
    if r.random() < 0.5:
        return tpl.format(colour=scene.colour, shape=scene.shape), "yes"
    present = {(o.colour, o.shape) for o in scene.objects + scene.distractors}
    while True:
        if r.random() < 0.5:
            c, s = r.choice([c for c in COLOURS if c != scene.colour]), scene.shape
        else:
            c, s = r.choice(COLOURS), r.choice([s for s in SHAPES if s != scene.shape])
        if (c, s) not in present:
            return tpl.format(colour=c, shape=s), "no"


def make_vqa(n: int, qset: str = "source", seed: int = 0, size: int = 64) -> list[VQAItem]:
    """n (image, question, answer) items of question set `qset` ("source" | "shifted")."""
    if qset not in QUESTION_SETS:
        raise ValueError(f"unknown question set {qset!r}; choose one of {QUESTION_SETS}")
    r = random.Random(f"mung-vqa-{qset}-{seed}")
    domain = "source" if qset == "source" else "clutter"
    kinds = list(TEMPLATES[qset])
    items = []
    for i in range(n):
        scene = sample_scene(r, domain=domain)
        kind = kinds[i % len(kinds)]
        q, a = _question(r, scene, qset, kind)
        labels = (SHAPES.index(scene.shape), COLOURS.index(scene.colour), scene.count - 1)
        items.append(VQAItem(render(scene, size=size), q, a, kind, labels))
    return items


def vocabulary() -> list[str]:
    """Every word the toy questions and answers can use (for the word-level tokenizer)."""
    words = set(ANSWERS)
    for qset in TEMPLATES.values():
        for tpls in qset.values():
            for t in tpls:
                words.update(w for w in t.split() if not w.startswith("{"))
    return sorted(words)
