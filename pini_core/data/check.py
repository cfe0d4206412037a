"""`python -m pini_core data-check`: is my dataset laid out right? (CLI command module)

Loads a registered dataset (a CoOp folder, an ImageFolder tree, a toy task), prints
its classes, split sizes, prompt template and PiNI prompt, and optionally opens every
image (``--verify``, with a progress bar) and previews a k-shot subset.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from pini_core.commands.common import int_range, seed_type


def missing_files(splits) -> List[str]:
    """Listed image files (path sources of every split and target) that do not exist; a
    stat per file, no image is opened."""
    seen, out = set(), []
    parts = [splits.train, splits.val, splits.test, *splits.targets.values()]
    for data in parts:
        for src, _ in data:
            if isinstance(src, str) and src not in seen:
                seen.add(src)
                if not os.path.isfile(src):
                    out.append(src)
    return out


def split_problems(splits) -> List[str]:
    """What makes ``splits`` unusable for training/evaluation: empty train (unless the
    dataset is test-only) or test split, listed files that do not exist."""
    problems = []
    needed = ("test",) if splits.meta.get("test_only") else ("train", "test")
    for part in needed:
        if not getattr(splits, part):
            problems.append(f"the {part} split is empty: nothing to {'train on' if part == 'train' else 'test on'}; "
                            "check the dataset layout (see the how-to in `python -m pini_core data-check --list` "
                            "and CoOp's DATASETS.md)")
    gone = missing_files(splits)
    if gone:
        problems.append(f"{len(gone)} listed image file(s) do not exist, e.g. {', '.join(gone[:5])}: the split "
                        "file does not match the images on disk (wrong --root, or an incomplete download)")
    return problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check that a dataset loads: prints classes, split sizes and the prompt template, "
        "and with --verify opens every image to find broken files. Examples:\n"
        "  python -m pini_core data-check --list\n"
        "  python -m pini_core data-check oxford_pets --root /data --verify\n"
        "  python -m pini_core data-check imagefolder --root ./my_photos --shots 4 --seed 1\n"
        "  python -m pini_core data-check imagenet --root /data --targets all")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("dataset", nargs="?", help="registered dataset name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the registered datasets and exit")
    parser.add_argument("--root", help="data folder: the one that CONTAINS the CoOp dataset folder "
                                       "(CoOp's $DATA), or the ImageFolder tree itself")
    parser.add_argument("--seed", type=seed_type, default=1, help="seed for splits / few-shot sampling (default 1)")
    parser.add_argument("--verify", action="store_true", help="open every image now and report broken ones")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="skip",
                        help="with --verify: stop at the first broken image (raise) or list them all (skip, default)")
    parser.add_argument("--shots", type=int_range(0, None, "a number of shots"), default=0,
                        help="also draw a k-shot subset (CoOp sampling) and show its size (0: none)")
    parser.add_argument("--targets", default="",
                        help="imagenet only: comma-separated ImageNet variants to attach, or 'all'")


def run(args: argparse.Namespace) -> int:
    """Print the dataset's summary. Exit status: 0 when it is usable, 1 when the dataset
    has a problem (it does not load, a needed split is empty, listed files do not exist),
    2 for bad arguments (argparse)."""
    from pini_core.data.fewshot import fewshot_splits
    from pini_core.data.imagefolder import verify_splits
    from pini_core.data.registry import get_dataset, list_datasets
    from pini_core.data.templates import pini_prompt_prefix

    if args.list or not args.dataset:
        for name, desc in list_datasets().items():
            print(f"{name:22s} {desc}")
        return 0 if args.list else 2
    kwargs = {}
    if args.targets:
        kwargs["targets"] = True if args.targets == "all" else [t.strip() for t in args.targets.split(",") if t.strip()]
    try:
        splits = get_dataset(args.dataset, root=args.root, seed=args.seed, **kwargs)
        problems = split_problems(splits)  # before --verify drops missing files as broken ones
        if args.verify:
            splits = verify_splits(splits, args.on_error, progress=True)
        few = fewshot_splits(splits, args.shots, args.seed) if args.shots and splits.train else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    lines: List[str] = [
        f"dataset   {splits.name} ({splits.meta.get('layout', 'registered loader')})",
        f"classes   {splits.num_classes}: {', '.join(splits.classnames[:8])}"
        + (", ..." if splits.num_classes > 8 else ""),
        f"sizes     train {len(splits.train)}, val {len(splits.val)}, test {len(splits.test)}",
        f"template  {splits.template!r}",
    ]
    try:
        lines.append(f"PiNI      {pini_prompt_prefix(splits.template).format(splits.classnames[0])!r}")
    except ValueError as e:
        lines.append(f"PiNI      (template unusable: {e})")
    for name, data in splits.targets.items():
        n_cls = len(splits.meta.get("target_classes", {}).get(name, []))
        lines.append(f"target    {name}: {len(data)} images over {n_cls} classes")
    if "skipped" in splits.meta:
        lines.append(f"broken    {splits.meta['skipped']}")
        for f, why in splits.meta.get("skipped_files", [])[:20]:
            lines.append(f"          {why}")
    if few is not None:
        lines.append(f"{args.shots}-shot    train {len(few.train)}, val {len(few.val)} (seed {args.seed})")
    links = splits.meta.get("skipped_links") or []
    if links:
        lines.append(f"links     {len(links)} symbolic link(s) not followed (links are never followed inside a "
                     f"dataset tree), e.g. {links[0]}")
    if not splits.val and not splits.meta.get("test_only"):
        lines.append("note      the val split is empty")
    print("\n".join(lines))
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pini_core data-check")
    add_arguments(parser)
    return run(parser.parse_args(argv))
