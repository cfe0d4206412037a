"""Arguments shared by several commands: which backbone, which dataset, which checkpoint."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from ..backbone import BackboneError, load_backbone


def add_backbone_args(p: argparse.ArgumentParser, default_model: Optional[str] = "embedded") -> None:
    g = p.add_argument_group("backbone (frozen CLIP)")
    g.add_argument("--model", default=default_model,
                   help="open_clip model name (ViT-B-16, RN50, ...), 'local-dir:/path', or 'embedded' (offline toy CLIP)")
    g.add_argument("--pretrained", default=None,
                   help="pretrained tag (e.g. openai) or a local weights file for --model")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    g.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "amp"])
    g.add_argument("--cache-dir", default=None, help="where pretrained weights are cached/downloaded")


def add_data_args(p: argparse.ArgumentParser, default: str = "toy-clutter") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=default,
                   help="registered dataset name (`python -m pini_core datasets`), or 'imagefolder' with --root")
    g.add_argument("--root", default=None, help="data root (CoOp layout folder parent, or an ImageFolder tree)")
    g.add_argument("--on-broken-image", default="raise", choices=["raise", "skip"],
                   help="stop with an error naming a broken image file, or skip it and count it")


def backbone_from_args(args, model: Optional[str] = None, pretrained: Optional[str] = None):
    try:
        return load_backbone(model or args.model, pretrained if model else args.pretrained, device=args.device,
                             precision=args.precision, cache_dir=args.cache_dir)
    except BackboneError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def dataset_from_args(args, seed: int = 1):
    from ..data.registry import get_dataset

    kwargs = {"seed": seed}
    if args.on_broken_image != "raise":
        kwargs["on_error"] = args.on_broken_image
    try:
        return get_dataset(args.dataset, root=args.root, **kwargs)
    except TypeError:  # loaders that take no such option
        kwargs.pop("on_error", None)
        return get_dataset(args.dataset, root=args.root, **kwargs)
    except (KeyError, FileNotFoundError, ValueError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        raise SystemExit(2)


def checkpoint_backbone(args, ckpt: str):
    """The backbone a checkpoint was trained on, unless --model overrides it."""
    from ..checkpoint import read_config

    cfg = read_config(ckpt)
    if args.model:
        return backbone_from_args(args)
    return backbone_from_args(args, cfg["backbone"]["name"], cfg["backbone"].get("pretrained"))


def checkpoint_data_seed(args, ckpt: str) -> int:
    """The seed a checkpoint's dataset was split/rendered with (so eval never sees its
    training images), unless --seed overrides it."""
    from ..checkpoint import read_config

    if getattr(args, "seed", None) is not None:
        return args.seed
    return int(read_config(ckpt).get("data", {}).get("seed", 1))


def pick_split(splits, name: str):
    """A split by name (train/val/test or a domain-generalisation target); None (after
    printing why) when there is no such split."""
    if name in ("train", "val", "test"):
        return getattr(splits, name)
    if name in splits.targets:
        return splits.targets[name]
    print(f"error: no split {name!r}; choose train, val, test or a target: {sorted(splits.targets) or '(none)'}",
          file=sys.stderr)
    return None


def checkpoint_and_split(args):
    """(backbone, model, splits, data, seed) for commands that evaluate a checkpoint on
    --dataset/--split; None (after printing why) when that cannot be done."""
    from ..checkpoint import CheckpointError, load_pini

    try:
        bb = checkpoint_backbone(args, args.checkpoint)
        seed = checkpoint_data_seed(args, args.checkpoint)
        splits = dataset_from_args(args, seed=seed)
        model = load_pini(args.checkpoint, bb, splits.classnames)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    data = pick_split(splits, args.split)
    return None if data is None else (bb, model, splits, data, seed)
