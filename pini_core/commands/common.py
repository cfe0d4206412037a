"""Arguments shared by several commands: which backbone, which dataset, which checkpoint,
and argparse types that check ranges while parsing (so a bad value stops the command
before any model is built or image is read).

Errors are raised as :class:`pini_core.errors.PiniError` subclasses; ``pini_core.cli.main``
prints them as ``error: <message>`` and exits with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional

from ..backbone import load_backbone
from ..errors import DataError

# torch.manual_seed, numpy and random all accept seeds in [0, 2**32 - 1]; larger ones overflow
# ("Overflow when unpacking long long") in some of them after minutes of work.
SEED_MAX = 2**32 - 1


# ----------------------------------------------------------------------------- argparse types

def int_range(lo: Optional[int] = None, hi: Optional[int] = None, what: str = "a whole number") -> Callable[[str], int]:
    """An argparse ``type=`` that accepts integers in [lo, hi] (None = unbounded) and
    refuses anything else with a message naming the range (argparse prints it and exits 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if hi is None:
                rng = f">= {lo}"
            elif lo is None:
                rng = f"<= {hi}"
            else:
                rng = f"between {lo} and {hi}"
            shown = text if len(text) <= 24 else text[:20] + "..."
            raise argparse.ArgumentTypeError(f"{what} must be {rng}, got {shown}")
        return value

    parse.__name__ = "int"  # argparse names the type in some messages
    return parse


seed_type = int_range(0, SEED_MAX, "a seed")
positive_int = int_range(1, None, "a whole number")


def out_file_type(text: str) -> str:
    """An argparse ``type=`` for a file the command will write: not an existing folder,
    and its folder must exist (or be creatable: a missing parent is created later)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got an empty string")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is an existing folder; give a file name (e.g. {text}/plot.png)")
    parent = os.path.dirname(os.path.abspath(text))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {parent} is a file, not a folder")
    return text


def out_dir_type(text: str) -> str:
    """An argparse ``type=`` for a folder the command will write into: not an existing file
    (nor a path below one)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder name, got an empty string")
    probe = os.path.abspath(text)
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
        raise argparse.ArgumentTypeError(
            f"{text} names an existing file ({probe}), not a folder; choose another output folder")
    return text


# ----------------------------------------------------------------------------- shared arguments

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
                   help="stop with an error naming the broken image files, or skip them and count them")


def backbone_from_args(args, model: Optional[str] = None, pretrained: Optional[str] = None):
    """The frozen CLIP named by --model/--pretrained (or by `model`/`pretrained` when given).
    Raises :class:`pini_core.backbone.BackboneError` (a PiniError)."""
    return load_backbone(model or args.model, pretrained if model else args.pretrained, device=args.device,
                         precision=args.precision, cache_dir=args.cache_dir)


def dataset_from_args(args, seed: int = 1):
    """The registered dataset --dataset/--root, split with `seed`. Unknown names and bad
    folders raise :class:`pini_core.errors.DataError` (a PiniError) naming what to do."""
    from ..data.registry import get_dataset
    from ..errors import PiniError

    kwargs = {"seed": seed}
    if args.on_broken_image != "raise":
        kwargs["on_error"] = args.on_broken_image
    try:
        try:
            return get_dataset(args.dataset, root=args.root, **kwargs)
        except TypeError:  # loaders that take no such option (procedural toy tasks)
            if "on_error" not in kwargs:
                raise
            kwargs.pop("on_error")
            return get_dataset(args.dataset, root=args.root, **kwargs)
    except PiniError:
        raise
    except (KeyError, FileNotFoundError, ValueError) as e:
        raise DataError(str(e.args[0]) if e.args else str(e)) from e


def checkpoint_backbone(args, ckpt: str):
    """The backbone a checkpoint was trained on, unless --model/--pretrained override it.

    A checkpoint's config never makes this open a path or a hub repository the user did
    not pass (issue 12): see :func:`pini_core.checkpoint.backbone_spec_for`, which raises
    :class:`pini_core.errors.UnsafePathError` for such entries."""
    from ..checkpoint import backbone_spec_for, read_config

    name, pretrained = backbone_spec_for(read_config(ckpt), args.model, args.pretrained)
    return backbone_from_args(args, name, pretrained)


def checkpoint_data_seed(args, ckpt: str) -> int:
    """The seed a checkpoint's dataset was split/rendered with (so eval never sees its
    training images), unless --seed overrides it."""
    from ..checkpoint import CheckpointError, read_config

    if getattr(args, "seed", None) is not None:
        return args.seed
    data = read_config(ckpt).get("data", {})
    seed = data.get("seed", 1) if isinstance(data, dict) else 1
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise CheckpointError(f"{ckpt}: its data seed {seed!r} is not a seed (0..{SEED_MAX}); pass --seed.")
    return seed


def pick_split(splits, name: str):
    """A split by name (train/val/test or a domain-generalisation target). Raises
    :class:`pini_core.errors.DataError` naming the choices when there is no such split."""
    if name in ("train", "val", "test"):
        return getattr(splits, name)
    if name in splits.targets:
        return splits.targets[name]
    raise DataError(f"no split {name!r}; choose train, val, test or a target: {sorted(splits.targets) or '(none)'}")


def checkpoint_and_split(args):
    """(backbone, model, splits, data, seed) for commands that evaluate a checkpoint on
    --dataset/--split. With ``--on-broken-image skip`` broken images of the split are found
    first, left out and counted on stderr (with "raise" the first one stops it). Raises a
    PiniError when that cannot be done."""
    from ..checkpoint import backbone_spec_for, load_pini, read_config
    from ..data.imagefolder import check_images

    # Everything cheap first (config, backbone choice, dataset, split), the backbone last.
    name, pretrained = backbone_spec_for(read_config(args.checkpoint), args.model, args.pretrained)
    seed = checkpoint_data_seed(args, args.checkpoint)
    splits = dataset_from_args(args, seed=seed)
    data = pick_split(splits, args.split)
    if not data:
        raise DataError(f"the {args.split} split of {splits.name} holds no images; nothing to evaluate "
                        "(`python -m pini_core data-check` shows the split sizes).")
    bb = backbone_from_args(args, name, pretrained)
    model = load_pini(args.checkpoint, bb, splits.classnames)
    broken = []
    if args.on_broken_image == "skip":  # with "raise" the evaluation itself names the first broken file
        data, broken = check_images(data, "skip")
    if broken:
        print(f"note: skipped {len(broken)} broken image(s) of {len(data) + len(broken)} in the {args.split} split "
              f"(first: {broken[0][1]})", file=sys.stderr)
    return bb, model, splits, data, seed
