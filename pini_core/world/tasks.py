"""Few-shot toy tasks with dataset bias, rendered by the world and registered with the
dataset registry, so that `get_dataset("toy-sketch", seed=1)` works like any dataset.

Each task is shape classification (10 classes) whose images or class names differ from
what the embedded CLIP saw in pretraining (source-domain photos named by common words):

- ``toy-shapes``     the source domain itself (reference point, no bias);
- ``toy-sketch``     pen-outline sketches on paper: a drawing style unseen in pretraining;
- ``toy-colourcast`` photos under a strong colour cast, low contrast and sensor noise;
- ``toy-clutter``    the subject among many small distractor shapes and scribbles;
- ``toy-rarewords``  source photos, but the classes are named by rare synonyms
                     ("pentagram", "lozenge", ...) seen in ~0.05 % of pretraining captions.

Splits per seed: train 32 per class (enough for 16 shots), val 8 per class, test 30 per
class (300), and `targets` (300 each): the same classes in every other image domain, for
domain generalisation (train on one domain, test on the others). Rendering is fast and
cached in memory per (task, seed, size).
"""
from __future__ import annotations

import random
from functools import lru_cache
from typing import List, Tuple

from ..data.base import DatasetSplits, register_dataset
from .captions import RARE_NAMES
from .render import render
from .scene import DOMAINS, SHAPES, sample_scene

TEMPLATE = "a photo of a {}."
TRAIN_PER_CLASS, VAL_PER_CLASS, TEST_PER_CLASS = 32, 8, 30
TASK_DOMAINS = {"toy-shapes": "source", "toy-sketch": "sketch", "toy-colourcast": "colourcast",
                "toy-clutter": "clutter", "toy-rarewords": "source"}
DESCRIPTIONS = {
    "toy-shapes": "Toy world: 10 shapes in the pretraining (source) domain; the no-bias reference.",
    "toy-sketch": "Toy world: 10 shapes drawn as pen-outline sketches, a style unseen in pretraining.",
    "toy-colourcast": "Toy world: 10 shapes under a strong colour cast, low contrast and noise.",
    "toy-clutter": "Toy world: 10 shapes among many small distractor shapes and scribbles.",
    "toy-rarewords": "Toy world: 10 shapes named by rare synonyms seen in ~0.05% of pretraining captions.",
}
# Each (task, split) draws its images from its own stream, so sizes can change per split
# without changing the others.
_SPLIT_SALT = {"train": 1, "val": 2, "test": 3}


def classnames_of(task: str) -> List[str]:
    if task == "toy-rarewords":
        return [RARE_NAMES[s] for s in SHAPES]
    return list(SHAPES)


def render_split(domain: str, per_class: int, seed: int, salt: str, size: int = 64) -> List[Tuple[object, int]]:
    """per_class images of each shape in `domain`, interleaved by class, deterministic."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    r = random.Random(f"{domain}:{seed}:{salt}")
    out = []
    for _ in range(per_class):
        for k, shape in enumerate(SHAPES):
            out.append((render(sample_scene(r, domain, shape=shape), size), k))
    return out


@lru_cache(maxsize=32)
def _build(task: str, seed: int, size: int, train_per_class: int, val_per_class: int,
           test_per_class: int) -> DatasetSplits:
    domain = TASK_DOMAINS[task]
    # The task name is part of the stream, so toy-rarewords and toy-shapes differ in images too.
    train = render_split(domain, train_per_class, seed, f"{task}:train", size)
    val = render_split(domain, val_per_class, seed, f"{task}:val", size)
    test = render_split(domain, test_per_class, seed, f"{task}:test", size)
    targets = {d: render_split(d, test_per_class, seed, f"{task}:target", size) for d in DOMAINS if d != domain}
    return DatasetSplits(
        name=task, classnames=classnames_of(task), template=TEMPLATE, train=train, val=val, test=test,
        targets=targets,
        meta={"domain": domain, "seed": seed, "image_size": size, "generator": "pini_core.world",
              "description": DESCRIPTIONS[task]})


def load_task(task: str, seed: int = 1, size: int = 64, train_per_class: int = TRAIN_PER_CLASS,
              val_per_class: int = VAL_PER_CLASS, test_per_class: int = TEST_PER_CLASS) -> DatasetSplits:
    """Render (or fetch from the in-memory cache) the splits of a toy task.

    The returned lists are shared with the cache: copy them before changing them."""
    if task not in TASK_DOMAINS:
        raise KeyError(f"unknown toy task {task!r}; choose one of {', '.join(TASK_DOMAINS)}")
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    for name, v in (("train_per_class", train_per_class), ("val_per_class", val_per_class),
                    ("test_per_class", test_per_class)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return _build(task, seed, size, train_per_class, val_per_class, test_per_class)


def _make_loader(task: str):
    def loader(root=None, seed: int = 1, **kwargs) -> DatasetSplits:
        if root is not None:
            raise ValueError(f"{task} is generated procedurally and takes no root folder; "
                             "call get_dataset(name, seed=...) without root.")
        return load_task(task, seed=seed, **kwargs)

    loader.__doc__ = DESCRIPTIONS[task]
    loader.__name__ = "load_" + task.replace("-", "_")
    return loader


for _task in TASK_DOMAINS:
    register_dataset(_task, DESCRIPTIONS[_task])(_make_loader(_task))
