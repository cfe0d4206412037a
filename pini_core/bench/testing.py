"""Small generated inputs for the benchmark's tests and smoke runs: a tiny random-init
open_clip CLIP (built from a config, no weights) and a colour-patch dataset whose
images the code draws (no files, no network)."""
from __future__ import annotations

import random
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40),
           "purple": (150, 50, 190), "cyan": (40, 210, 210)}


def tiny_backbone(name: str = "pini-bench-tiny", seed: int = 0):
    """A random-init tiny CLIP through the engine's loader (CPU, fp32)."""
    import torch

    from pini_core.backbone import load_backbone

    torch.manual_seed(seed)
    return load_backbone(name, model_cfg=TINY_CLIP_CFG, device="cpu")


def _image(rgb, rng: random.Random, size: int = 32, shift: float = 0.0) -> Image.Image:
    base = np.array(rgb, dtype=np.float32) * (1.0 - shift)
    nprng = np.random.default_rng(rng.randrange(2 ** 31))
    arr = base + nprng.normal(0, 18, size=(size, size, 3))
    # a random darker square: the "object", so that crops see different content
    x0, y0 = rng.randrange(0, size // 2), rng.randrange(0, size // 2)
    arr[y0:y0 + size // 3, x0:x0 + size // 3] *= 0.6
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def colour_dataset(name: str = "colours", num_classes: int = 3, per_class: Dict[str, int] = None,
                   seed: int = 0, targets: Optional[Sequence[str]] = None, size: int = 32):
    """DatasetSplits of flat colour images with a darker square; class = colour.
    `targets` adds test-only shifted domains (darker images) for domain generalisation."""
    from pini_core.data.registry import DatasetSplits

    per_class = per_class or {"train": 6, "val": 3, "test": 4}
    names = list(COLOURS)[:num_classes]
    if len(names) < num_classes:
        raise ValueError(f"at most {len(COLOURS)} colour classes")
    rng = random.Random(seed)

    def split(n: int, shift: float = 0.0) -> List:
        return [(_image(COLOURS[c], rng, size, shift), y) for y, c in enumerate(names) for _ in range(n)]

    tg = {t: split(per_class["test"], shift=0.25 + 0.2 * i) for i, t in enumerate(targets or [])}
    return DatasetSplits(name=name, classnames=names, template="a photo of a {} square.",
                         train=split(per_class["train"]), val=split(per_class["val"]),
                         test=split(per_class["test"]), targets=tg)
