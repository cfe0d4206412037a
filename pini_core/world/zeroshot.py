"""Zero-shot accuracy of the embedded toy CLIP on world images, and the record of it in
checkpoints/toyclip/pini_meta.json (`python -m pini_core zeroshot`).

There is one zero-shot classifier in pini_core, `pini_core.baselines.ZeroShotCLIP` (CLIP's
hand-crafted text classifier); this module only feeds it world images. The model is
loaded by `pini_core.backbone.load_backbone` ("embedded", or "local-dir:PATH" for another
folder), and images go through the backbone's own test transform.

`prefix_tokens=16` prepends 16 "x" placeholder words to every prompt, the way PiNI's
CoOp-style text prompts look before any noise is learned.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .. import atomic
from ..backbone import Backbone, embedded_dir, load_backbone
from ..baselines.zeroshot import ZeroShotCLIP
from ..data.transforms import clip_test_transform
from ..errors import DataError, ModelLoadError
from .render import render
from .scene import SHAPES, sample_scene
from .tasks import TASK_DOMAINS, load_task

SOURCE_TEMPLATE = "a photo of a {}."


def load_toyclip(path: Optional[str | Path] = None, device: str = "cpu") -> Backbone:
    """The embedded toy CLIP (`load_backbone("embedded")`), or the open_clip folder `path`
    (`load_backbone("local-dir:PATH")`, e.g. a freshly pretrained one).

    Raises ModelLoadError (a PiniError) naming the pretrain command if `path` holds no model."""
    if path is None or Path(path).resolve() == embedded_dir().resolve():
        name = "embedded"
    else:
        name = f"local-dir:{Path(path)}"
    folder = embedded_dir() if name == "embedded" else Path(path)
    if not (folder / "open_clip_config.json").is_file():
        raise ModelLoadError(f"no open_clip_config.json in {folder}; run `python -m pini_core pretrain "
                             f"--out {folder}` to create the embedded CLIP there.")
    return load_backbone(name, device=device)


def prompt_template(template: str, prefix_tokens: int = 0) -> str:
    """`template` with `prefix_tokens` "x" placeholder words in front (PiNI's prompt layout
    before any noise is learned, cf. `pini_core.data.templates.pini_prompt_prefix`)."""
    return "x " * prefix_tokens + template


@torch.no_grad()
def zero_shot_accuracy(bb: Backbone, data: Sequence[Tuple[object, int]], classnames: Sequence[str],
                       template: str, prefix_tokens: int = 0, batch_size: int = 256) -> float:
    """Top-1 accuracy (in %) of `pini_core.baselines.ZeroShotCLIP` (one prompt per class,
    CLIP Eq. 2 without noise) on `data` [(PIL image, label)].

    Images go through CLIP's test transform at the backbone's size / mean / std.
    Raises DataError if `data` is empty."""
    if not data:
        raise DataError("zero_shot_accuracy needs at least one (image, label) pair")
    method = ZeroShotCLIP(bb, classnames, prompt_template(template, prefix_tokens))
    tf = clip_test_transform(bb.image_size, bb.mean, bb.std)
    correct = 0
    for i in range(0, len(data), batch_size):
        chunk = data[i:i + batch_size]
        pixels = torch.stack([tf(img.convert("RGB")) for img, _ in chunk])
        pred = method.predict({"pixels": pixels}).argmax(dim=-1).cpu()
        correct += int((pred == torch.tensor([label for _, label in chunk])).sum())
    return 100.0 * correct / len(data)


def source_shape_set(n: int, seed: int, size: int = 64, domain: str = "source") -> List[Tuple[object, int]]:
    """n fresh (image, shape index) pairs of `domain`, classes balanced in turn."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        k = i % len(SHAPES)
        out.append((render(sample_scene(r, domain, shape=SHAPES[k]), size), k))
    return out


def source_accuracy(bb: Backbone, n: int, seed: int, template: str = SOURCE_TEMPLATE) -> Dict[str, float]:
    """Zero-shot shape accuracy on n fresh source images, plain and with the 16-x prefix."""
    data = source_shape_set(n, seed)
    return {"n": n, "seed": seed, "template": template, "chance": 100.0 / len(SHAPES),
            "accuracy": zero_shot_accuracy(bb, data, SHAPES, template),
            "accuracy_with_16x_prefix": zero_shot_accuracy(bb, data, SHAPES, template, 16)}


def zero_shot_table(bb: Backbone, seed: int = 1, prefix_tokens: int = 0) -> Dict[str, Dict[str, float]]:
    """Zero-shot accuracy (%) of `bb` on every toy task's test split and targets, with
    each task's own template and class names."""
    table: Dict[str, Dict[str, float]] = {}
    for task in TASK_DOMAINS:
        s = load_task(task, seed=seed)
        row = {"test": zero_shot_accuracy(bb, s.test, s.classnames, s.template, prefix_tokens)}
        for name, data in s.targets.items():
            row[f"target:{name}"] = zero_shot_accuracy(bb, data, s.classnames, s.template, prefix_tokens)
        row["chance"] = 100.0 / len(s.classnames)
        table[task] = {k: round(v, 2) for k, v in row.items()}
    return table


# --- command: measure and record the embedded model's zero-shot accuracies --------------

def measure(path: Optional[str | Path] = None, samples: int = 4000, seed: int = 12345, task_seed: int = 1) -> dict:
    """Source-domain shape accuracy on `samples` fresh images (plain template and with
    the 16-x CoOp prefix) and every toy task's zero-shot accuracy."""
    bb = load_toyclip(path)
    src = source_accuracy(bb, samples, seed)
    src = {**src, "accuracy": round(src["accuracy"], 2),
           "accuracy_with_16x_prefix": round(src["accuracy_with_16x_prefix"], 2)}
    return {
        "source": src,
        "tasks_seed": task_seed,
        "tasks": zero_shot_table(bb, seed=task_seed),
        "tasks_with_16x_prefix": zero_shot_table(bb, seed=task_seed, prefix_tokens=16),
    }


def add_arguments(parser) -> None:
    parser.description = ("Measure the embedded toy CLIP's zero-shot accuracy on fresh source-domain images "
                          "and on every toy task; optionally record it in pini_meta.json.")
    parser.add_argument("--dir", default=str(embedded_dir()), help="open_clip local dir of the model")
    parser.add_argument("--samples", type=int, default=4000, help="fresh source images")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the fresh source images")
    parser.add_argument("--task-seed", type=int, default=1, help="seed of the toy tasks' splits")
    parser.add_argument("--update-meta", action="store_true", help="write the numbers into <dir>/pini_meta.json")


def run(args) -> int:
    import os
    import sys

    from ..errors import ConfigError

    if args.samples < 10:
        raise ConfigError("--samples must be >= 10")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    res = measure(args.dir, args.samples, args.seed, args.task_seed)
    print(f"source: {res['source']['accuracy']:.2f}% (16-x prefix {res['source']['accuracy_with_16x_prefix']:.2f}%)"
          f" on {args.samples} images")
    for task, row in res["tasks"].items():
        print(f"{task:15s} " + "  ".join(f"{k}={v:.1f}" for k, v in row.items()))
    if args.update_meta:
        meta_path = Path(args.dir) / "pini_meta.json"
        atomic.update_json(meta_path, {"zero_shot": res, "zero_shot_command": " ".join(
            ["python -m pini_core zeroshot"] + sys.argv[2:])})
        print(f"recorded in {meta_path}")
    return 0
