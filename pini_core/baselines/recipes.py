"""Training recipes: how each method's reference code trains it, per number of shots.

These are the *paper* schedules; the benchmark's "quick" profile (and `--epochs`)
override the epoch counts only, never the rest of a recipe.

- CoOp (CoOp's configs): SGD lr 2e-3, momentum 0.9, wd 5e-4, batch 32, cosine, one
  warm-up epoch at constant 1e-5; 50 epochs at 1 shot, 100 at 2/4, 200 at 8/16
  (ImageNet: 50 at every shot count).
- CLIP-Adapter: its released trainer runs under CoOp's Dassl configs, so the same
  optimiser and schedule as CoOp.
- PiNI (paper A.3 / authors' code): SGD lr 1e-3, batch 32, cosine, one warm-up epoch at
  1e-5; 200 epochs (100 on ImageNet) at every shot count. The paper allows lr
  1e-3 .. 3e-3 on the small datasets; the code's 1e-3 is used.
- Tip-Adapter-F (its configs): AdamW lr 1e-3, eps 1e-4, cosine per step, batch 256,
  20 epochs, cache keys from 10 augmented passes.
- Zero-shot CLIP, linear probe, Tip-Adapter: no gradient training.
"""
from __future__ import annotations

from typing import Dict, Optional

from pini_core.bench.paper import canonical_dataset

TRAINED = ("coop", "clip_adapter", "pini", "tip_adapter_f")
ALL_METHODS = ("zeroshot", "linear_probe", "coop", "clip_adapter", "tip_adapter", "tip_adapter_f", "pini")


def coop_epochs(shots: int, dataset: Optional[str] = None) -> int:
    if canonical_dataset(dataset or "") == "imagenet":
        return 50
    if shots <= 1:
        return 50
    if shots <= 4:
        return 100
    return 200


def recipe(method: str, shots: int, dataset: Optional[str] = None) -> Dict:
    """The reference training settings of `method` at `shots` shots on `dataset`."""
    if method not in ALL_METHODS:
        raise KeyError(f"unknown method {method!r}; choose from {', '.join(ALL_METHODS)}")
    if method in ("coop", "clip_adapter"):
        return {"optimizer": "sgd", "epochs": coop_epochs(shots, dataset), "lr": 2e-3, "batch_size": 32,
                "momentum": 0.9, "weight_decay": 5e-4, "warmup_epochs": 1, "warmup_lr": 1e-5}
    if method == "pini":
        epochs = 100 if canonical_dataset(dataset or "") == "imagenet" else 200
        return {"optimizer": "sgd", "epochs": epochs, "lr": 1e-3, "batch_size": 32, "momentum": 0.9,
                "weight_decay": 5e-4, "warmup_epochs": 1, "warmup_lr": 1e-5}
    if method == "tip_adapter_f":
        return {"optimizer": "adamw", "epochs": 20, "lr": 1e-3, "eps": 1e-4, "batch_size": 256,
                "augment_views": 10}
    if method == "tip_adapter":
        return {"augment_views": 10}
    if method == "linear_probe":
        return {"c_grid": [1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6], "refine_steps": 8, "max_iter": 1000}
    return {}
