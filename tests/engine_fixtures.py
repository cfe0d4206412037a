"""Shared helpers for the engine's tests (tests/test_engine_*.py): a tiny random-init
open_clip CLIP built from a config (no weights, no network) and a learnable toy task
whose images the code draws (two or three colour classes with pixel noise).

Imported as `from engine_fixtures import ...` (pytest puts tests/ on sys.path in its
default "prepend" import mode, since tests/ has no __init__.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
# Another architecture (different embed_dim): for "mismatched backbone" checks.
OTHER_CFG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_NAME = "pini-test-tiny"

COLOURS = {"red": (210, 50, 50), "blue": (50, 70, 210), "green": (50, 190, 70)}
TEMPLATE = "a photo of a {}."


def tiny_backbone(seed: int = 0, name: str = TINY_NAME, cfg=None):
    """A frozen random-init tiny CLIP (CPU, fp32); same seed -> same weights."""
    from pini_core.backbone import load_backbone

    torch.manual_seed(seed)
    return load_backbone(name, model_cfg=dict(cfg or TINY_CFG), device="cpu")


_SHARED = {}


def shared_backbone():
    """One tiny backbone per test process (it is frozen; tests that train check that it
    stays bit-identical), so the modules do not each pay for building it."""
    if "bb" not in _SHARED:
        torch.set_num_threads(1)
        _SHARED["bb"] = tiny_backbone(seed=0)
    return _SHARED["bb"]


def make_model(bb, classnames=("red", "blue"), seed: int = 0, **noise):
    """A PiNIModel on `bb` with seeded generator init; `noise` = NoiseConfig fields."""
    from pini_core.model import PiNIModel
    from pini_core.noise import NoiseConfig

    torch.manual_seed(seed)
    return PiNIModel(bb, list(classnames), TEMPLATE, NoiseConfig(**noise))


def colour_image(rgb: Sequence[int], rng: np.random.Generator, size: int = 32, noise: float = 25.0) -> Image.Image:
    arr = np.asarray(rgb, dtype=np.float32) + rng.normal(0.0, noise, size=(size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def colour_data(per_class: int = 8, classes: Sequence[str] = ("red", "blue"), seed: int = 0,
                size: int = 32) -> List[Tuple[Image.Image, int]]:
    """[(PIL image, label)]: class = colour, every pixel jittered with Gaussian noise."""
    rng = np.random.default_rng(seed)
    return [(colour_image(COLOURS[c], rng, size), y) for y, c in enumerate(classes) for _ in range(per_class)]


def pixels_of(bb, data) -> torch.Tensor:
    """Normalised [N, 3, H, W] pixels of `data` through the backbone's test transform."""
    from pini_core.features import test_transform

    tf = test_transform(bb)
    return torch.stack([tf(img) for img, _ in data])


def state_snapshot(module: torch.nn.Module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(a, b) -> None:
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, f"tensors changed: {changed[:5]}"


def save_local_open_clip_dir(bb, folder: Path, cfg=None) -> Path:
    """Write `bb.model` as an open_clip local model directory (what `local-dir:` reads)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    pre = {"size": bb.image_size, "mean": list(bb.mean), "std": list(bb.std),
           "interpolation": "bicubic", "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg or TINY_CFG, "preprocess_cfg": pre}))
    state = {k: v.detach().contiguous().clone() for k, v in bb.model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


def write_imagefolder(root: Path, per_class: int = 8, classes: Sequence[str] = ("red", "blue", "green"),
                      seed: int = 0) -> Path:
    """ROOT/<class>/<i>.png of generated colour images."""
    rng = np.random.default_rng(seed)
    for c in classes:
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour_image(COLOURS[c], rng).save(d / f"{i}.png")
    return root
