"""python -m pini_core meter: is the learned noise pi-noise? I(T, eps) = H(T) - H(T|eps).

  python -m pini_core meter --checkpoint runs/clutter/checkpoint --dataset toy-clutter --plot meter.png
"""
from __future__ import annotations

import argparse
import json

from .common import add_backbone_args, add_data_args, checkpoint_and_split, out_file_type, positive_int, seed_type


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    add_backbone_args(p, default_model=None)
    add_data_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--draws", type=positive_int, default=8, help="noise draws per image for the Monte Carlo estimate")
    p.add_argument("--seed", type=seed_type, default=None,
                   help="dataset split/render seed (default: the one the checkpoint was trained with)")
    p.add_argument("--noise-seed", type=seed_type, default=0, help="seed of the noise draws")
    p.add_argument("--plot", type=out_file_type, default=None, help="write a bar chart (PNG) here")


def run(args) -> int:
    from ..analysis.meter import pi_noise_meter
    from ..analysis.plots import plot_meter

    bb, model, splits, data, _ = checkpoint_and_split(args)
    res = pi_noise_meter(model, data, draws=args.draws, seed=args.noise_seed)
    print(f"H(T) = {res['H_T']:.4f} nats (CLIP with the model's own prompts, no noise; Eq. 3)")
    print(f"{'noise':8s} {'H(T|eps)':>10s} {'I(T,eps)':>10s} {'acc %':>7s}")
    for name in ("learned", "random", "none"):
        r = res[name]
        print(f"{name:8s} {r['H_T_given_eps']:10.4f} {r['I']:10.4f} {r['accuracy']:7.2f}")
    att = res.get("attention")
    if att:
        print(f"visual CA attention over {att['num_classes']} classes (eps = 0): mean entropy "
              f"{att['mean_entropy']:.4f} nats = {att['relative_entropy']:.3f} x ln C; top class "
              f"{att['top_class']!r} for {100 * att['top_class_share']:.1f} % of {att['n']} images")
    if args.plot:
        plot_meter(res).savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"plot: {args.plot}")
    print(json.dumps(res))
    return 0
