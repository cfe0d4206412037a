"""python -m pini_core meter: is the learned noise pi-noise? I(T, eps) = H(T) - H(T|eps).

Prints the same four rows as the app's meter (no noise / random noise of the same scale /
learned with eps = 0 / learned sampled), what H(T) is, warnings, and the visual
cross-attention's entropy; the last line is the full result as JSON.

  python -m pini_core meter --checkpoint runs/clutter/checkpoint --dataset toy-clutter --plot meter.png
"""
from __future__ import annotations

from pathlib import Path

import argparse
import json

from .common import add_backbone_args, add_data_args, checkpoint_and_split, out_file_type, positive_int, seed_type


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    add_backbone_args(p, default_model=None)
    add_data_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--draws", type=positive_int, default=8, help="noise draws per image for the Monte Carlo estimate")
    p.add_argument("--images", type=positive_int, default=None,
                   help="measure on this many images of the split, taken round-robin over the classes "
                        "(default: all; the app uses 200)")
    p.add_argument("--seed", type=seed_type, default=None,
                   help="dataset split/render seed (default: the one the checkpoint was trained with)")
    p.add_argument("--noise-seed", type=seed_type, default=0, help="seed of the noise draws")
    p.add_argument("--plot", type=out_file_type, default=None, help="write the rows as a chart (PNG) here")


def format_rows(res) -> str:
    """The rows as text: key, H(T|eps), I(T, eps), accuracy, images right, what the row is."""
    lines = [f"{'noise':13s} {'H(T|eps)':>9s} {'I(T,eps)':>9s} {'acc %':>7s} {'right':>8s}  row"]
    for r in res["rows"]:
        lines.append(f"{r['name']:13s} {r['H_T_given_eps']:9.4f} {r['I']:9.4f} {r['accuracy']:7.2f} "
                     f"{r['correct']:8.2f}  {r['label']} [{r['equation']}]")
    return "\n".join(lines)


def run(args) -> int:
    from ..analysis.meter import balanced_subset, meter_notes, pi_noise_meter, plot_meter_rows

    bb, model, splits, data, _ = checkpoint_and_split(args)
    if getattr(args, "images", None):
        data = balanced_subset(data, args.images)
    res = pi_noise_meter(model, data, draws=args.draws, seed=args.noise_seed)
    notes = meter_notes(res)
    print(notes[0])
    print(format_rows(res))
    for line in notes[1:]:
        print(line)
    att = res.get("attention")
    if att:
        print(f"visual CA attention over {att['num_classes']} classes (eps = 0): mean entropy "
              f"{att['mean_entropy']:.4f} nats = {att['relative_entropy']:.3f} x ln C; top class "
              f"{att['top_class']!r} for {100 * att['top_class_share']:.1f} % of {att['n']} images")
    for w in res["warnings"]:
        print(f"warning: {w}")
    if args.plot:
        fig = plot_meter_rows(res, title=f"pi-noise meter: {getattr(splits, 'name', '')}, {args.split} split")
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)  # out_file_type checked it can be created
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"plot: {args.plot}")
    print(json.dumps(res))
    return 0
