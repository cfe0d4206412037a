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

from .. import atomic
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


# --- CLI: measure and record the embedded model's zero-shot accuracies ------------------

def measure(path: str | Path = DEFAULT_DIR, samples: int = 4000, seed: int = 12345,
            task_seed: int = 1) -> dict:
    """Source-domain shape accuracy on `samples` fresh images (plain template and with
    the 16-x CoOp prefix) and every toy task's zero-shot accuracy."""
    from .tasks import zero_shot_table

    model, tok = load_embedded(path)
    data = source_shape_set(samples, seed)
    template = "a photo of a {}."
    return {
        "source": {"n": samples, "seed": seed, "template": template, "chance": 100.0 / len(SHAPES),
                   "accuracy": round(zero_shot_accuracy(model, tok, data, SHAPES, template), 2),
                   "accuracy_with_16x_prefix": round(zero_shot_accuracy(model, tok, data, SHAPES, template, 16), 2)},
        "tasks_seed": task_seed,
        "tasks": zero_shot_table(path, seed=task_seed),
        "tasks_with_16x_prefix": zero_shot_table(path, seed=task_seed, prefix_tokens=16),
    }


def add_arguments(parser) -> None:
    parser.description = ("Measure the embedded toy CLIP's zero-shot accuracy on fresh source-domain images "
                          "and on every toy task; optionally record it in pini_meta.json.")
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="open_clip local dir of the model")
    parser.add_argument("--samples", type=int, default=4000, help="fresh source images")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the fresh source images")
    parser.add_argument("--task-seed", type=int, default=1, help="seed of the toy tasks' splits")
    parser.add_argument("--update-meta", action="store_true", help="write the numbers into <dir>/pini_meta.json")


def run(args) -> int:
    import json
    import os
    import sys

    if args.samples < 10:
        raise SystemExit("--samples must be >= 10")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    res = measure(args.dir, args.samples, args.seed, args.task_seed)
    print(f"source: {res['source']['accuracy']:.2f}% (16-x prefix {res['source']['accuracy_with_16x_prefix']:.2f}%)"
          f" on {args.samples} images")
    for task, row in res["tasks"].items():
        print(f"{task:15s} " + "  ".join(f"{k}={v:.1f}" for k, v in row.items()))
    if args.update_meta:
        meta_path = Path(args.dir) / "pini_meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        meta["zero_shot"] = res
        meta["zero_shot_command"] = " ".join(["python -m pini_core.world.zeroshot"] + sys.argv[1:])
        atomic.write_json(meta_path, meta)
        print(f"recorded in {meta_path}")
    return 0


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(prog="python -m pini_core.world.zeroshot")
    add_arguments(p)
    raise SystemExit(run(p.parse_args()))
