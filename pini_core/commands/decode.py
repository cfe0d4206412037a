"""python -m pini_core decode: the paper's Table 8 for a trained prompt-noise generator.

  python -m pini_core decode --checkpoint checkpoints/pini/toy-clutter -n 100 -k 5
"""
from __future__ import annotations

import argparse

from .common import add_backbone_args, checkpoint_backbone, positive_int, seed_type


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder with prompt-level (LE) text noise")
    add_backbone_args(p, default_model=None)
    p.add_argument("-n", "--draws", type=positive_int, default=100,
                   help="noise draws added to the template (paper: 100)")
    p.add_argument("-k", "--top-k", type=positive_int, default=5, help="nearest words recorded per position (paper: 5)")
    p.add_argument("--seed", type=seed_type, default=0)
    p.add_argument("--metric", default="l2", choices=["l2", "cosine"], help="distance to vocabulary embeddings")
    p.add_argument("--include-placeholders", action="store_true", help="also decode the 'x' placeholder positions")
    p.add_argument("--mean", action="store_true", help="decode mu only (eps = 0)")


def run(args) -> int:
    from ..analysis.decode import decode_prompt_noise, format_table8
    from ..checkpoint import load_pini

    # CheckpointError / DecodeError / BackboneError are PiniErrors: the CLI prints them (exit 2)
    model = load_pini(args.checkpoint, checkpoint_backbone(args, args.checkpoint))
    rows = decode_prompt_noise(model, args.draws, args.top_k, args.seed, args.metric, args.include_placeholders,
                               mode="mean" if args.mean else "sample")
    print(f"Template: {model.template!r}  ({args.draws} draws, {args.top_k} nearest words, {args.metric})")
    print(format_table8(rows))
    return 0
