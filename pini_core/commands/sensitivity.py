"""`python -m pini_core prompt-sensitivity`: how much the frozen text tower responds at PiNI's
placeholders, relative to CoOp's random context (issue 14).

On one fixed few-shot batch (default: toy-clutter, 4 shots, seed 1) and with one fixed
torch seed:

* PiNI: a fresh `PiNIModel` (the preset's noise: visual CA + prompt LE, mu_t and sigma_t at
  their N(0, 0.02) init) computes its training loss (Eq. 13, one noise draw). The gradient
  w.r.t. mu_t is the gradient w.r.t. the prompt embeddings at those positions (additive
  fusion, summed over the class prompts that share it). `pini` = the mean over the n_ctx
  "x" placeholder positions of the per-position L2 norm; `pini_template` the same over the
  template words between the placeholders and the class name.
* CoOp: a fresh `CoOp` (16 context vectors, N(0, 0.02) init, CoOp's default) on the same
  batch, the same loss (cross-entropy of its logits = Eq. 13 without noise). `coop` = the
  mean per-position gradient norm at its context vectors.

ratio = pini / coop. A text tower that learned to ignore the "x" placeholders (a stand-in
pretrained with "x"-prefixed captions) gives a small ratio: PiNI's prompt noise then barely
trains at the paper's learning rates. `--random-init` measures a random-init tower of the
same architecture (seeded) as the reference; `--model` any other backbone spec
("embedded", "local-dir:PATH", "ViT-B-16" with `--random-init`, ...).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Dict, Optional

import torch

from ..errors import ConfigError
from .common import seed_type

DEFAULT_DATASET = "toy-clutter"
DEFAULT_SHOTS = 4
DEFAULT_SEED = 1


def fixed_batch(bb, dataset: str = DEFAULT_DATASET, shots: int = DEFAULT_SHOTS, seed: int = DEFAULT_SEED,
                max_images: Optional[int] = None):
    """(features [B, D], labels [B], classnames, template): the k-shot training split of
    `dataset` (CoOp's sampling, `seed`), through the backbone's test transform, no grad."""
    from ..data.fewshot import fewshot_splits
    from ..data.registry import get_dataset
    from ..features import test_transform

    splits = fewshot_splits(get_dataset(dataset, seed=seed), shots, seed=seed)
    items = list(splits.train)[:max_images] if max_images else list(splits.train)
    if not items:
        raise ConfigError(f"{dataset} has no training images at {shots} shots")
    tf = test_transform(bb)
    pixels = torch.stack([tf(img.convert("RGB") if hasattr(img, "convert") else img) for img, _ in items])
    with torch.no_grad():
        feats = bb.encode_image(pixels)
    labels = torch.tensor([int(y) for _, y in items])
    template = splits.meta.get("template") if isinstance(getattr(splits, "meta", None), dict) else None
    return feats, labels, list(splits.classnames), template or "a photo of a {}."


def prompt_sensitivity(bb, feats: torch.Tensor, labels: torch.Tensor, classnames, template: str,
                       seed: int = 0, noise=None) -> Dict[str, float]:
    """Mean per-position gradient norms of the training loss at PiNI's placeholders
    (`pini`), at its template words (`pini_template`) and at CoOp's random-init context
    (`coop`), and `ratio` = pini / coop, on the batch (feats, labels). Deterministic for a
    fixed `seed` (it seeds the generators' init and the noise draw)."""
    from ..baselines.coop import CoOp
    from ..model import PiNIModel
    from ..noise import NoiseConfig
    from ..objective import pi_noise_bound

    cfg = noise or NoiseConfig()
    if cfg.text_location != "prompt":
        raise ConfigError("prompt sensitivity needs PiNI's prompt-level text noise (text_location 'prompt')")
    inputs = {"features": feats}
    torch.manual_seed(seed)
    model = PiNIModel(bb, classnames, template, cfg)
    model.shared_prefix = False  # the plain encoder: nothing cached, the same path as CoOp's below
    loss = model.compute_loss(inputs, labels)
    (g_mu,) = torch.autograd.grad(loss, [model.text_gen.mu])
    per_pos = g_mu.norm(dim=-1)  # [P]
    n_ctx = cfg.n_ctx
    coop = CoOp(bb, classnames, n_ctx=n_ctx, init_std=0.02, generator=torch.Generator().manual_seed(seed))
    coop.shared_prefix = False
    coop_loss = pi_noise_bound(coop.predict(inputs), labels.to(feats.device))
    (g_ctx,) = torch.autograd.grad(coop_loss, [coop.ctx])
    coop_pos = g_ctx.norm(dim=-1)
    pini = float(per_pos[:n_ctx].mean())
    coop_mean = float(coop_pos.mean())
    return {
        "pini": pini,
        "pini_template": float(per_pos[n_ctx:].mean()) if per_pos.numel() > n_ctx else float("nan"),
        "coop": coop_mean,
        "ratio": pini / coop_mean if coop_mean > 0 else float("nan"),
        "pini_loss": float(loss.detach()), "coop_loss": float(coop_loss.detach()),
    }


def random_tower(arch: str, seed: int, device: str = "cpu"):
    """A random-init tower: "embedded" / "local-dir:PATH" = that folder's architecture (its
    open_clip_config.json), else an open_clip model name (e.g. ViT-B-16). Seeded."""
    import open_clip

    from ..backbone import load_backbone

    if arch in ("embedded", "pini-toyclip") or arch.startswith("local-dir:"):
        cfg = json.loads((_model_dir(arch) / "open_clip_config.json").read_text())["model_cfg"]
        name = "pini-random-toyclip"
    else:
        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            raise ConfigError(f"unknown open_clip architecture {arch!r} for --random-init")
        name = f"{arch}-random-init"
    torch.manual_seed(seed)
    return load_backbone(name, None, device=device, model_cfg=cfg)


def measure(model: str = "embedded", random_init: bool = False, dataset: str = DEFAULT_DATASET,
            shots: int = DEFAULT_SHOTS, seed: int = DEFAULT_SEED) -> Dict[str, object]:
    from ..backbone import load_backbone

    bb = random_tower(model, seed) if random_init else load_backbone(model, device="cpu")
    feats, labels, classnames, template = fixed_batch(bb, dataset, shots, seed)
    res = prompt_sensitivity(bb, feats, labels, classnames, template, seed=seed)
    return {"model": model + (" (random init)" if random_init else ""), "dataset": dataset, "shots": shots,
            "seed": seed, "batch": int(labels.numel()), "template": template,
            **{k: round(v, 6) for k, v in res.items()}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("The text tower's prompt sensitivity: mean gradient norm of the training loss at "
                          "PiNI's 'x' placeholders divided by that at CoOp's random-init N(0, 0.02) context, "
                          "on one fixed few-shot batch (issue 14).")
    parser.add_argument("--model", default="embedded", help="backbone spec (embedded, local-dir:PATH, ...); "
                        "with --random-init: 'embedded' (its architecture) or an open_clip name such as ViT-B-16")
    parser.add_argument("--random-init", action="store_true", help="measure a seeded random-init tower of --model's "
                        "architecture (the reference)")
    parser.add_argument("--reference", action="store_true",
                        help="also measure the random-init tower of the same architecture on the same batch")
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--shots", type=int, default=DEFAULT_SHOTS)
    parser.add_argument("--seed", type=seed_type, default=DEFAULT_SEED, help="few-shot sampling and torch seed")
    parser.add_argument("--update-meta", action="store_true",
                        help="record the result in the model folder's pini_meta.json (embedded / local-dir only)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _model_dir(spec: str) -> Path:
    from ..backbone import embedded_dir

    if spec in ("embedded", "pini-toyclip"):
        return embedded_dir()
    if spec.startswith("local-dir:"):
        return Path(spec[len("local-dir:"):])
    raise ConfigError(f"{spec!r} is not a model folder: use --model embedded or local-dir:PATH")


def run(args) -> int:
    import sys

    from .. import atomic

    if args.shots < 1:
        raise ConfigError("--shots must be >= 1")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    res = measure(args.model, args.random_init, args.dataset, args.shots, args.seed)
    out: Dict[str, object] = {**res}
    if args.reference and not args.random_init:
        ref = measure(args.model, True, args.dataset, args.shots, args.seed)
        out["random_init_reference"] = {k: ref[k] for k in ("pini", "pini_template", "coop", "ratio")}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{res['model']}: {args.dataset} {args.shots} shots, seed {args.seed}, batch of {res['batch']}")
        print(f"  grad norm per position: PiNI placeholders {res['pini']:.4g}, PiNI template words "
              f"{res['pini_template']:.4g}, CoOp random context {res['coop']:.4g}")
        print(f"  prompt sensitivity ratio (PiNI placeholders / CoOp context): {res['ratio']:.3f}")
        if "random_init_reference" in out:
            print(f"  random-init tower of the same architecture: {out['random_init_reference']['ratio']:.3f}")
    if args.update_meta:
        if args.random_init:
            raise ConfigError("--update-meta records a trained model's sensitivity; drop --random-init")
        meta_path = _model_dir(args.model) / "pini_meta.json"
        atomic.update_json(meta_path, {"prompt_sensitivity": out, "prompt_sensitivity_command": " ".join(
            ["python -m pini_core prompt-sensitivity"] + sys.argv[2:])})
        print(f"recorded in {meta_path}")
    return 0
