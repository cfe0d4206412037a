"""python -m pini_core train: few-shot PiNI on a frozen CLIP.

Example (offline, the embedded toy CLIP):
  python -m pini_core train --dataset toy-clutter --shots 16 --epochs 100 --lr 0.02 --no-augment --out runs/clutter
Real CLIP on a CoOp-layout dataset:
  python -m pini_core train --model ViT-B-16 --pretrained openai --dataset oxford_pets --root /data \
      --shots 16 --epochs 200 --lr 2e-3 --out runs/pets16
Several GPUs:  accelerate launch -m pini_core train ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_backbone_args, add_data_args, backbone_from_args, dataset_from_args


def add_noise_args(p: argparse.ArgumentParser) -> None:
    from ..noise import NoiseConfig

    d = NoiseConfig()
    g = p.add_argument_group("noise (paper Table 1; defaults = the paper's headline setting)")
    g.add_argument("--visual-location", default=d.visual_location, choices=["none", "image", "feature"])
    g.add_argument("--visual-generator", default=d.visual_generator, choices=["mlp", "cnn", "ca"],
                   help="image: mlp|cnn|ca ; feature: mlp|ca")
    g.add_argument("--text-location", default=d.text_location, choices=["none", "prompt", "feature"])
    g.add_argument("--text-generator", default=d.text_generator, choices=["le", "mlp"],
                   help="prompt: le ; feature: le|mlp")
    g.add_argument("--fusion", default=d.fusion, choices=["add", "mul"])
    g.add_argument("--sigma", default=d.sigma, choices=["abs", "exp", "softplus", "none"],
                   help="how sigma is kept positive (code: abs)")
    g.add_argument("--no-ca-scale", action="store_true",
                   help="authors' code: cross-attention without the 1/sqrt(d) scaling of the paper")
    g.add_argument("--draws", type=int, default=d.train_draws, help="m: noise draws per image in Eq. 13")
    g.add_argument("--n-ctx", type=int, default=d.n_ctx, help="number of 'x' placeholders before the template")


def noise_from_args(args):
    from ..noise import NoiseConfig, NoiseConfigError

    try:
        return NoiseConfig(visual_location=args.visual_location, visual_generator=args.visual_generator,
                           text_location=args.text_location, text_generator=args.text_generator,
                           fusion=args.fusion, sigma=args.sigma, ca_scale=not args.no_ca_scale,
                           train_draws=args.draws, n_ctx=args.n_ctx)
    except NoiseConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_backbone_args(p)
    add_data_args(p)
    add_noise_args(p)
    g = p.add_argument_group("training (CoOp protocol)")
    g.add_argument("--shots", type=int, default=16, help="k images per class (1, 2, 4, 8, 16)")
    g.add_argument("--seed", type=int, default=1, help="seed of the few-shot subset and of training")
    g.add_argument("--epochs", type=int, default=50)
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--train-precision", default="fp32", choices=["fp32", "amp"])
    g.add_argument("--aug-views", type=int, default=4, help="augmented views cached per image (feature caching)")
    g.add_argument("--no-augment", action="store_true", help="train on the test transform only")
    g.add_argument("--eval-mode", default="mean", choices=["mean", "single", "average"])
    g.add_argument("--out", default="runs/pini", help="output folder: checkpoint/, metrics.jsonl, result.json")
    g.add_argument("--checkpoint-out", default=None, help="write the checkpoint here instead of OUT/checkpoint")


def run(args) -> int:
    import torch

    from ..checkpoint import save_pini
    from ..data.fewshot import fewshot_splits
    from ..model import PiNIModel
    from ..trainer import TrainConfig, evaluate, fit

    noise = noise_from_args(args)
    bb = backbone_from_args(args)
    splits = fewshot_splits(dataset_from_args(args, seed=args.seed), args.shots, args.seed)
    torch.manual_seed(args.seed)  # the generators' initial weights follow --seed too
    model = PiNIModel(bb, splits.classnames, splits.template, noise)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, precision=args.train_precision,
                      aug_views=args.aug_views, augment=not args.no_augment, seed=args.seed,
                      eval_mode=args.eval_mode)
    out = Path(args.out)
    print(f"PiNI on {splits.name}: {len(splits.classnames)} classes, {args.shots} shots, "
          f"{len(splits.train)} training images; noise {noise.describe()}; backbone {bb.identity['name']}")
    res = fit(model, bb, splits.train, cfg, val_data=splits.val, out_dir=str(out))
    if res.reason:
        print(f"note: {res.reason}", file=sys.stderr)
    metrics = {"epochs_done": len(res.history), "train_seconds": round(res.seconds, 2), "stopped": res.stopped,
               "shots": args.shots, "seed": args.seed, "dataset": splits.name}
    if res.history:
        metrics["last_loss"] = res.history[-1]["loss"]
    test = evaluate(model, bb, splits.test, mode=args.eval_mode)
    metrics["test_accuracy"] = test["accuracy"]
    metrics["test_mode"] = args.eval_mode
    for name, data in splits.targets.items():
        metrics[f"target_accuracy/{name}"] = evaluate(model, bb, data, mode=args.eval_mode)["accuracy"]
    ckpt = Path(args.checkpoint_out) if args.checkpoint_out else out / "checkpoint"
    command = "python -m pini_core " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("__main__.py") else ""
    save_pini(model, ckpt, metrics, extra={"train_config": cfg.to_dict(), "command": command,
                                           "data": {"dataset": splits.name, "root": args.root, "seed": args.seed,
                                                    "shots": args.shots}})
    (out / "result.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    print(f"checkpoint: {ckpt}")
    return 0
