"""Zero-shot evaluation of a CLIP on world images: load the embedded checkpoint, turn
PIL images into normalised tensors, classify with one prompt per class.

`prefix_tokens=16` prepends 16 "x" placeholder words to every prompt, the way PiNI's
CoOp-style text prompts look before any noise is learned.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from .render import render
from .scene import SHAPES, sample_scene

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "toyclip"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def load_embedded(path: str | Path = DEFAULT_DIR):
    """(model in eval mode, tokenizer, preprocess_cfg) of an open_clip local dir."""
    import open_clip

    path = Path(path)
    if not (path / "open_clip_config.json").is_file():
        raise FileNotFoundError(f"no open_clip_config.json in {path}; run `python -m pini_core pretrain "
                                f"--out {path}` to create the embedded CLIP there.")
    model = open_clip.create_model(f"local-dir:{path}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{path}")
    return model, tokenizer


def to_tensor(images: Sequence, size: int, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    """List of PIL images -> [B, 3, size, size] float tensor, CLIP-normalised."""
    from PIL import Image

    arrs = []
    for im in images:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        arrs.append(np.asarray(im, dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def prompts(classnames: Sequence[str], template: str, prefix_tokens: int = 0) -> List[str]:
    pre = "x " * prefix_tokens
    return [pre + template.format(c) for c in classnames]


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, data: Sequence[Tuple[object, int]], classnames: Sequence[str],
                       template: str, prefix_tokens: int = 0, batch_size: int = 256) -> float:
    """Top-1 accuracy (in %) of classifying `data` [(PIL, label)] with one prompt per class."""
    if not data:
        raise ValueError("zero_shot_accuracy needs at least one (image, label) pair")
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    t = model.encode_text(tokenizer(prompts(classnames, template, prefix_tokens)))
    t = t / t.norm(dim=-1, keepdim=True)
    correct = 0
    for i in range(0, len(data), batch_size):
        chunk = data[i:i + batch_size]
        f = model.encode_image(to_tensor([d[0] for d in chunk], size))
        f = f / f.norm(dim=-1, keepdim=True)
        pred = (f @ t.T).argmax(dim=-1)
        correct += int((pred == torch.tensor([d[1] for d in chunk])).sum())
    return 100.0 * correct / len(data)


def source_shape_set(n: int, seed: int, size: int = 64, domain: str = "source") -> List[Tuple[object, int]]:
    """n fresh (image, shape index) pairs of `domain`, classes balanced in turn."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        k = i % len(SHAPES)
        out.append((render(sample_scene(r, domain, shape=SHAPES[k]), size), k))
    return out
