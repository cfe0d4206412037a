"""python -m pini_core train: few-shot training of PiNI (or any registered method) on a frozen CLIP.

The command only translates its arguments into an `ExperimentConfig` and calls
`pini_core.run`. Settings not given come from the preset (`--preset`; default `toy` for
the embedded model, `paper` otherwise) or from a saved config (`--config run.json`).

Example (offline, the embedded toy CLIP; the toy preset is lr 0.001, 100 epochs, no augmentation):
  python -m pini_core train --dataset toy-clutter --shots 16 --out runs/clutter
Real CLIP on a CoOp-layout dataset, the authors' code's behaviour:
  python -m pini_core train --model ViT-B-16 --pretrained openai --dataset oxford_pets --root /data \\
      --preset authors --shots 16 --out runs/pets16
Several GPUs:  accelerate launch -m pini_core train ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_backbone_args, add_data_args

# Recipe / eval fields that have a command-line flag: (dest, recipe or eval field).
_RECIPE_FLAGS = {"epochs": "epochs", "lr": "lr", "batch_size": "batch_size", "train_precision": "precision",
                 "aug_views": "aug_views", "optimizer": "optimizer", "weight_decay": "weight_decay",
                 "warmup_epochs": "warmup_epochs"}
_NOISE_FLAGS = {"visual_location": "visual_location", "visual_generator": "visual_generator",
                "text_location": "text_location", "text_generator": "text_generator", "fusion": "fusion",
                "sigma": "sigma", "text_sigma": "text_sigma", "draws": "train_draws", "n_ctx": "n_ctx"}


def add_noise_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("noise (paper Table 1; unset = the preset's: visual feature + CA, prompt + LE)")
    g.add_argument("--visual-location", default=None, choices=["none", "image", "feature"])
    g.add_argument("--visual-generator", default=None, choices=["mlp", "cnn", "ca", "cnn_authors"],
                   help="image: mlp|cnn|ca|cnn_authors (the authors' BatchNorm ResNet, fixed noise energy); "
                        "feature: mlp|ca")
    g.add_argument("--text-location", default=None, choices=["none", "prompt", "feature"])
    g.add_argument("--text-generator", default=None, choices=["le", "mlp"], help="prompt: le ; feature: le|mlp")
    g.add_argument("--fusion", default=None, choices=["add", "mul"])
    g.add_argument("--sigma", default=None, choices=["abs", "exp", "softplus", "none"],
                   help="how sigma is kept positive (code: abs on the CA)")
    g.add_argument("--text-sigma", default=None, choices=["same", "abs", "exp", "softplus", "none"],
                   help="the text side's sigma (same: as --sigma; the authors' code: none, sigma_t used raw)")
    g.add_argument("--ca-scale", default=None, action=argparse.BooleanOptionalAction,
                   help="cross-attention with the paper's 1/sqrt(d) (--no-ca-scale: the authors' code)")
    g.add_argument("--draws", type=int, default=None, help="m: noise draws per image in Eq. 13")
    g.add_argument("--n-ctx", type=int, default=None, help="number of 'x' placeholders before the template")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..experiment import PRESET_DOCS
    from ..methods import list_methods

    add_backbone_args(p)
    add_data_args(p)
    g = p.add_argument_group("experiment")
    g.add_argument("--preset", default=None, choices=list(PRESET_DOCS),
                   help="named defaults: " + "; ".join(f"{k}: {v}" for k, v in PRESET_DOCS.items())
                        + ". Default: toy for --model embedded, paper otherwise")
    g.add_argument("--config", default=None,
                   help="an experiment config JSON: a run's result.json, a checkpoint's pini_config.json, or the config "
                        "itself; "
                        "flags given on the command line override it")
    g.add_argument("--method", default=None, choices=list_methods(), help="the method to train (default pini)")
    g.add_argument("--shots", type=int, default=None, help="k images per class (1, 2, 4, 8, 16; default 16)")
    g.add_argument("--seed", type=int, default=None, help="seed of the few-shot subset and of training (default 1)")
    g.add_argument("--data-seed", type=int, default=None,
                   help="seed that renders a toy task / carves an ImageFolder's val and test (default 1; the same "
                        "for every --seed, so all seeds are tested on the same images)")
    add_noise_args(p)
    t = p.add_argument_group("training recipe (unset = the preset's)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--optimizer", default=None, choices=["sgd", "adamw"])
    t.add_argument("--weight-decay", type=float, default=None)
    t.add_argument("--warmup-epochs", type=int, default=None)
    t.add_argument("--train-precision", default=None, choices=["fp32", "amp"])
    t.add_argument("--aug-views", type=int, default=None,
                   help="augmented views cached per image (feature caching); 0 = a fresh view every epoch")
    t.add_argument("--augment", default=None, action=argparse.BooleanOptionalAction,
                   help="CoOp's random resized crop + flip (--no-augment: the test transform only)")
    t.add_argument("--eval-mode", default=None, choices=["mean", "single", "average"],
                   help="test time: mean (eps = 0), single (one random draw, the authors' code), average")
    t.add_argument("--no-shared-prefix", action="store_true",
                   help="encode every class prompt in full (slower; results are the same)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/pini", help="output folder: checkpoint/, metrics.jsonl, result.json")
    o.add_argument("--checkpoint-out", default=None, help="write the checkpoint here instead of OUT/checkpoint")


def config_from_args(args):
    """The ExperimentConfig the arguments describe (preset or --config, then flags).

    Raises ConfigError naming the bad setting; nothing is loaded."""
    import dataclasses

    from ..errors import ConfigError
    from ..experiment import DataSpec, ExperimentConfig, default_preset, preset_config

    if args.config:
        try:
            text = Path(args.config).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read --config {args.config}: {e.strerror or e}") from None
        loaded = json.loads(text) if text.strip().startswith("{") else None
        if isinstance(loaded, dict) and "config" in loaded and "metrics" in loaded:  # a result.json
            loaded = loaded["config"]
        elif isinstance(loaded, dict) and "experiment" in loaded and "classnames" in loaded:  # a checkpoint config
            loaded = loaded["experiment"]
        cfg = ExperimentConfig.from_dict(loaded) if loaded is not None else ExperimentConfig.from_json(text)
    else:
        preset = args.preset or default_preset(args.model)
        cfg = preset_config(preset, method=args.method or "pini", shots=args.shots or 16, dataset=args.dataset)
    changes = {"backbone": args.model, "pretrained": args.pretrained, "device": args.device,
               "precision": args.precision, "data": DataSpec(args.dataset, args.root, args.on_broken_image,
                                                          cfg.data.seed if args.data_seed is None else args.data_seed)}
    if args.method is not None:
        changes["method"] = args.method
    if args.shots is not None:
        changes["shots"] = args.shots
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.no_shared_prefix:
        changes["shared_prefix"] = False
    recipe = {f: getattr(args, d) for d, f in _RECIPE_FLAGS.items() if getattr(args, d) is not None}
    if args.augment is not None:
        recipe["augment"] = args.augment
    noise = {f: getattr(args, d) for d, f in _NOISE_FLAGS.items() if getattr(args, d) is not None}
    if args.ca_scale is not None:
        noise["ca_scale"] = args.ca_scale
    try:
        changes["recipe"] = dataclasses.replace(cfg.recipe, **recipe)
        changes["noise"] = dataclasses.replace(cfg.noise, **noise)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    if args.eval_mode is not None:
        changes["eval"] = dataclasses.replace(cfg.eval, mode=args.eval_mode)
    from ..methods import check_config

    return check_config(cfg.replace(**changes))


def _check_out(args) -> None:
    from ..errors import ConfigError

    for flag, value in (("--out", args.out), ("--checkpoint-out", args.checkpoint_out)):
        if value and Path(value).exists() and not Path(value).is_dir():
            raise ConfigError(f"{flag} {value} is an existing file; give a folder name")


def run(args) -> int:
    from ..runner import run as run_experiment

    cfg = config_from_args(args)
    _check_out(args)
    command = "python -m pini_core " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("__main__.py") else ""
    res = run_experiment(cfg, out_dir=args.out, checkpoint_dir=args.checkpoint_out,
                         provenance={"command": command}, on_ready=lambda line: print(line, flush=True))
    if res.reason:
        print(f"note: {res.reason}", file=sys.stderr)
    print(json.dumps(res.metrics, indent=2))
    if res.checkpoint:
        print(f"checkpoint: {res.checkpoint}")
    if res.stopped and "Ctrl-C" in res.reason:
        print("interrupted (Ctrl-C): the last finished epoch was saved and evaluated", file=sys.stderr)
        return 130  # a shell `train && eval` must not carry on as if the run had finished
    return 0
