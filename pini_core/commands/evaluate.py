"""python -m pini_core eval: accuracy of a trained checkpoint.

  python -m pini_core eval --checkpoint runs/clutter/checkpoint --dataset toy-clutter --mode average
"""
from __future__ import annotations

import argparse
import json

from .common import add_backbone_args, add_data_args, checkpoint_and_split, positive_int, seed_type


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder written by `train`")
    add_backbone_args(p, default_model=None)
    add_data_args(p)
    p.add_argument("--split", default="test", help="test, val, train, or a domain-generalisation target name")
    p.add_argument("--mode", default="mean", choices=["mean", "single", "average"],
                   help="mean: eps = 0; single: one noise draw (authors' code); average: mean softmax of K draws")
    p.add_argument("--draws", type=positive_int, default=8, help="K for --mode average")
    p.add_argument("--seed", type=seed_type, default=None,
                   help="dataset split/render seed (default: the one the checkpoint was trained with)")


def run(args) -> int:
    from ..trainer import evaluate

    bb, model, splits, data, seed = checkpoint_and_split(args)
    res = evaluate(model, bb, data, mode=args.mode, draws=args.draws, seed=seed)
    print(json.dumps(dict(res, dataset=splits.name, split=args.split), indent=2))
    return 0
