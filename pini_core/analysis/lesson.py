"""The numbers of the app's guided lesson on pi-noise, computed (never typed in) from a
generator and its task's held-out images, each with the equation it comes from:

1. zero-shot CLIP fails under dataset bias: accuracy and H(T) (Eq. 3) of CLIP with the
   task's hand-written prompt on the task's test images and on every other domain;
2. random noise of the same size does not help, 3. the learned noise helps, 4. mu versus
   sigma*eps: the four rows of the pi-noise meter (Eq. 1, 3, 5; `meter.pi_noise_meter`);
5. where the noise lands: the injection points, the shift's size and the visual
   cross-attention's entropy (`attention.attention_entropy`);
6. which words the noisy prompt means: the nearest vocabulary word per template position
   over N noise draws (Table 8; `decode.decode_prompt_noise`).

`pi_noise_lesson` returns plain data; the app writes the text around it.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

import torch

from ..model import PiNIModel
from .meter import balanced_subset, pi_noise_meter, task_splits


@torch.no_grad()
def pi_noise_lesson(model: PiNIModel, splits=None, *, n_images: int = 200, draws: int = 8, seed: int = 0,
                    decode_draws: int = 100) -> Dict[str, Any]:
    """All the lesson's numbers for `model` on `splits` (its task's `DatasetSplits`; default:
    rebuilt from the checkpoint's record, `meter.task_splits`, which raises DataError when it
    cannot be).

    Returns {"task", "task_description", "n" (test images used), "classes",
    "zero_shot": {"template", "test": {"accuracy" (%), "H_T" (nats, Eq. 3)},
                  "targets": {domain: {"accuracy", "H_T", "n"}}},
    "meter": `pi_noise_meter`'s result on the same test images,
    "noise": {"describe", "visual_location", "visual_generator", "text_location", "text_generator",
              "n_ctx" (placeholder words before the template; 0 without prompt noise), "prompt_format"},
    "recipe": {"preset", "lr", "epochs", "shots", "last_loss" (the Eq. 13 bound at the last
               epoch), "test_accuracy" (%), "test_mode"} as far as the checkpoint records them,
    "decode": [{"position", "token", "word", "count", "draws"}] (None without prompt noise),
    "seconds": wall time}. The test images are a class-balanced subset of the test split
    (`meter.balanced_subset`), the same for every number."""
    from ..baselines.zeroshot import ZeroShotCLIP
    from ..features import encode_images
    from ..trainer import evaluate

    t0 = time.time()
    if splits is None:
        splits = task_splits(model)
    bb = model.backbone
    test = balanced_subset(list(splits.test), n_images)
    feats = encode_images(bb, test, progress=False)
    zs = ZeroShotCLIP(bb, model.classnames, splits.template)
    r = evaluate(zs, bb, test, features=feats)
    zero_shot: Dict[str, Any] = {"template": splits.template,
                                 "test": {"accuracy": r["accuracy"], "H_T": r["nll"], "n": r["n"]}, "targets": {}}
    for name, data in sorted((splits.targets or {}).items()):
        sub = balanced_subset(list(data), n_images)
        if sub:
            t = evaluate(zs, bb, sub)
            zero_shot["targets"][name] = {"accuracy": t["accuracy"], "H_T": t["nll"], "n": t["n"]}
    meter = pi_noise_meter(model, test, draws=draws, seed=seed, features=feats)
    cfg = model.noise_cfg
    noise = {"describe": cfg.describe(), "visual_location": cfg.visual_location,
             "visual_generator": cfg.visual_generator, "text_location": cfg.text_location,
             "text_generator": cfg.text_generator, "n_ctx": cfg.n_ctx if cfg.text_location == "prompt" else 0,
             "prompt_format": model.prompt_format}
    decode = None
    if cfg.text_location == "prompt":
        from .decode import decode_prompt_noise

        decode = [{"position": row["position"], "token": row["token"], "word": row["words"][0][0],
                   "count": row["words"][0][1], "draws": decode_draws}
                  for row in decode_prompt_noise(model, n_draws=decode_draws, k=1, seed=seed)]
    return {"task": splits.name, "task_description": (splits.meta or {}).get("description", ""),
            "classes": list(model.classnames), "n": len(test), "zero_shot": zero_shot, "meter": meter,
            "noise": noise, "recipe": recipe_of(model), "decode": decode, "seconds": time.time() - t0}


def recipe_of(model: PiNIModel) -> Dict[str, Optional[Any]]:
    """What a loaded checkpoint records about how it was trained (None where it does not)."""
    cfg = getattr(model, "checkpoint_config", None) or {}
    exp = cfg.get("experiment") if isinstance(cfg.get("experiment"), dict) else {}
    train = cfg.get("train_config") if isinstance(cfg.get("train_config"), dict) else {}
    metrics = getattr(model, "metrics", None) or cfg.get("metrics") or {}
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    recipe = exp.get("recipe") if isinstance(exp.get("recipe"), dict) else {}
    return {"preset": exp.get("preset"), "lr": recipe.get("lr", train.get("lr")),
            "epochs": recipe.get("epochs", train.get("epochs")), "epochs_done": metrics.get("epochs_done"),
            "shots": exp.get("shots", data.get("shots")), "augment": recipe.get("augment", train.get("augment")),
            "last_loss": metrics.get("last_loss"), "test_accuracy": metrics.get("test_accuracy"),
            "test_mode": metrics.get("test_mode"), "command": cfg.get("command")}
