"""python -m pini_core eval: accuracy of a trained checkpoint.

  python -m pini_core eval --checkpoint runs/colourcast/checkpoint --dataset toy-colourcast --mode average
"""
from __future__ import annotations

import argparse
import json
import sys

from .common import (add_backbone_args, add_data_args, checkpoint_backbone, checkpoint_data_seed,
                     dataset_from_args, pick_split)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder written by `train`")
    add_backbone_args(p, default_model=None)
    add_data_args(p)
    p.add_argument("--split", default="test", help="test, val, train, or a domain-generalisation target name")
    p.add_argument("--mode", default="mean", choices=["mean", "single", "average"],
                   help="mean: eps = 0; single: one noise draw (authors' code); average: mean softmax of K draws")
    p.add_argument("--draws", type=int, default=8, help="K for --mode average")
    p.add_argument("--seed", type=int, default=None,
                   help="dataset split/render seed (default: the one the checkpoint was trained with)")


def run(args) -> int:
    from ..checkpoint import CheckpointError, load_pini
    from ..trainer import evaluate

    try:
        bb = checkpoint_backbone(args, args.checkpoint)
        seed = checkpoint_data_seed(args, args.checkpoint)
        splits = dataset_from_args(args, seed=seed)
        model = load_pini(args.checkpoint, bb, splits.classnames)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = pick_split(splits, args.split)
    if data is None:
        return 2
    res = evaluate(model, bb, data, mode=args.mode, draws=args.draws, seed=seed)
    print(json.dumps(dict(res, dataset=splits.name, split=args.split), indent=2))
    return 0
