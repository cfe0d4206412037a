"""`python -m pini_core bench`: the paper's comparison tables, measured.

With no arguments it runs "Table 2 in miniature" (preset `mini`): the embedded toy CLIP
on one toy task, zero-shot CLIP / linear probe / CoOp / CLIP-Adapter / Tip-Adapter-F /
PiNI x shots 1 2 4 8 16 x seeds 1 2 3, with the reference epoch schedules; offline, CPU,
a few minutes.
`--preset paper` is the real thing on CoOp-layout folders (--data-root) with a real
CLIP (--backbones ViT-B-16:openai).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from pini_core.experiment import PRESET_DOCS
from pini_core.methods import get_method_spec, list_methods
from .harness import QUICK_FACTOR, BackboneSpec, Benchmark, BenchConfig, BenchError, environment
from .report import export, write_report
from ..commands.common import SEED_MAX, out_dir_type, positive_int

MINI_DATASET = "toy-clutter"
COOP_DATASETS = ["imagenet", "caltech-101", "oxford_pets", "stanford_cars", "oxford_flowers", "food-101",
                 "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]

PRESETS = {
    "mini": dict(methods=["zeroshot", "linear_probe", "coop", "clip_adapter", "tip_adapter_f", "pini"],
                 datasets=[MINI_DATASET], backbones=["embedded"], shots=[1, 2, 4, 8, 16], seeds=[1, 2, 3],
                 # The reference epoch schedules fit the budget with feature caching (about 1 min of
                 # CPU per seed on the toy CLIP), so the miniature needs no shortened profile.
                 profile="paper",
                 # The toy CLIP's matrices are tiny: one torch thread is fastest (measured 6-10x faster
                 # per training step than 2 threads on 2 shared cores).
                 threads=1,
                 # CoOp's random resized crop (scale 0.08-1) cuts 64-px toy shapes to fragments, for
                 # every method alike; the toy tasks are trained on the test transform.
                 augment=False,
                 # every method as its reference code runs it: PiNI as the authors' code
                 recipe="authors"),
    "paper": dict(methods=["zeroshot", "linear_probe", "coop", "clip_adapter", "pini"],
                  datasets=COOP_DATASETS, backbones=["ViT-B-16:openai"], shots=[1, 2, 4, 8, 16], seeds=[1, 2, 3],
                  profile="paper", recipe="authors"),
}


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> List[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _int_list(lo: int, hi, what: str):
    """argparse type: comma-separated integers, each in [lo, hi] (hi None = unbounded)."""
    from ..commands.common import int_range

    one = int_range(lo, hi, what)

    def parse(text: str) -> List[int]:
        values = [one(t) for t in _csv(text)]
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}s, got {text!r}")
        return values

    return parse


def _floats(text: str) -> List[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _json_dict(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"fusion\": \"mul\"}}', got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  python -m pini_core bench                       # Table 2 in miniature (toy CLIP, offline)\n"
        "  python -m pini_core bench --preset paper --data-root /data/coop \\\n"
        "      --datasets oxford_pets,eurosat --backbones ViT-B-16:openai\n"
        "  python -m pini_core bench --preset paper --data-root /data/coop --datasets imagenet --dg \\\n"
        "      --methods zeroshot,coop,clip_adapter,pini --shots 16   # Table 3 (ImageNet -> variants)\n"
        "  python -m pini_core bench --report-only          # rebuild tables/plots from results.jsonl\n"
        "Rerunning the same command resumes: finished cells (one JSON line each in OUT/results.jsonl)\n"
        "are skipped. Ctrl-C keeps every finished cell.")
    g = parser.add_argument_group("what to run")
    g.add_argument("--preset", choices=sorted(PRESETS), default="mini",
                   help="starting point for every option below (default: mini = Table 2 in miniature)")
    g.add_argument("--methods", type=_csv, default=None,
                   help=f"comma-separated, from: {', '.join(list_methods())}")
    g.add_argument("--datasets", type=_csv, default=None,
                   help="comma-separated registry names (toy-..., oxford_pets, caltech-101, imagenet, ...)")
    g.add_argument("--data-root", default=None,
                   help="folder holding the CoOp-layout dataset folders (ROOT/oxford_pets/, ...)")
    g.add_argument("--backbones", type=_csv, default=None,
                   help="comma-separated [LABEL=]NAME[:PRETRAINED]: 'embedded', 'ViT-B-16:openai', "
                        "'RN50:/w/RN50.pt', 'local-dir:/models/x'. The paper's numbers are shown where the "
                        "label matches, so label a local copy of OpenAI weights, e.g. "
                        "'ViT-B-16:openai=ViT-B-16:/w/ViT-B-16.pt'")
    g.add_argument("--shots", type=_int_list(1, None, "a number of shots"), default=None,
                   help="comma-separated shots per class (1,2,4,8,16)")
    g.add_argument("--seeds", type=_int_list(0, SEED_MAX, "a seed"), default=None,
                   help="comma-separated seeds (1,2,3)")
    g.add_argument("--dg", action="store_true",
                   help="domain generalisation (Table 3) on ImageNet: attach its variants (V2/Sketch/A/R under "
                        "--data-root) as targets and test every cell on them too. Toy tasks always carry their "
                        "other domains as targets")
    t = parser.add_argument_group("how")
    t.add_argument("--profile", choices=["paper", "quick"], default=None,
                   help="epoch schedules: paper (the reference recipes: CoOp/CLIP-Adapter 50/100/100/200/200 "
                        "epochs at 1/2/4/8/16 shots, PiNI 200, Tip-Adapter-F 20) or quick (every schedule x "
                        f"{QUICK_FACTOR:g}, rounded up)")
    t.add_argument("--epochs", type=positive_int, default=None, help="override every trained method's epochs")
    t.add_argument("--no-shared-prefix", action="store_true",
                   help="encode every class prompt in full (slower; the same results within float noise)")
    t.add_argument("--protocol", choices=["reference", "tuned"], default="reference",
                   help="reference: each method's own recipe; tuned: one lr grid (--lr-grid) for every SGD-trained "
                        "method, the lr chosen on the few-shot val split (never on test)")
    t.add_argument("--lr-grid", type=_floats, default=None,
                   help="comma-separated learning rates of the tuned protocol (default 0.001,0.003,0.01,0.03,0.1)")
    t.add_argument("--recipe", choices=list(PRESET_DOCS), default=None,
                   help="PiNI's recipe preset: " + "; ".join(f"{k}: {v}" for k, v in PRESET_DOCS.items())
                        + " (baselines always follow their reference recipes)")
    t.add_argument("--eval-mode", choices=["mean", "single", "average"], default=None,
                   help="PiNI at test time: mean (eps = 0), single (one random draw, the authors' code), average "
                        "(default: the recipe preset's)")
    t.add_argument("--pini-noise", type=_json_dict, default={},
                   help='PiNI noise settings as JSON, over the paper default (visual feature + CA, prompt + LE), '
                        'e.g. \'{"visual_location": "image", "visual_generator": "cnn"}\' for a Table 1 variant')
    t.add_argument("--zeroshot-ensemble", action="store_true",
                   help="zero-shot / Tip-Adapter text classifier: dataset template + CLIP's 7-template ensemble")
    t.add_argument("--aug-views", type=positive_int, default=4,
                   help="augmented views cached per training image for the SGD-trained methods (default 4)")
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="CoOp's train augmentation (random resized crop + flip) for every trained method "
                        "(default: on, off for the mini preset's 64-px toy images)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1")
    t.add_argument("--precision", choices=["fp32", "amp"], default="fp32")
    t.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: 1 for the mini preset, whose model is tiny; torch's choice "
                        "otherwise)")
    o = parser.add_argument_group("output")
    o.add_argument("--out", type=out_dir_type, default=None, help="results folder (default: results/bench/<preset>)")
    o.add_argument("--export", type=out_dir_type, default=None,
                   help="also copy tables.md, figures, results.jsonl and meta.json here (e.g. assets/bench)")
    o.add_argument("--max-cells", type=positive_int, default=None, help="stop after this many newly finished cells")
    o.add_argument("--report-only", action="store_true", help="do not run cells; rebuild tables/plots")
    o.add_argument("--all-records", action="store_true",
                   help="tabulate every record in results.jsonl, not only this command's cells")
    o.add_argument("--list", action="store_true", help="print the planned cells (done / to do) and exit")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args) -> BenchConfig:
    p = PRESETS[args.preset]
    backbones = [BackboneSpec.parse(b) for b in (args.backbones or p["backbones"])]
    return BenchConfig(
        methods=args.methods or p["methods"], datasets=args.datasets or p["datasets"],
        shots=args.shots or p["shots"], seeds=args.seeds or p["seeds"], backbones=backbones,
        out_dir=args.out or str(Path("results") / "bench" / args.preset), data_root=args.data_root,
        profile=args.profile or p["profile"], epochs=args.epochs, device=args.device, precision=args.precision,
        eval_mode=args.eval_mode, recipe=args.recipe or p.get("recipe", "paper"), zeroshot_ensemble=args.zeroshot_ensemble, dg=args.dg, pini_noise=args.pini_noise,
        aug_views=args.aug_views, augment=p.get("augment", True) if args.augment is None else args.augment,
        max_cells=args.max_cells, progress=not args.no_progress, protocol=args.protocol,
        shared_prefix=not args.no_shared_prefix,
        **({"lr_grid": args.lr_grid} if args.lr_grid else {}))


def describe(cfg: BenchConfig, bench: Benchmark) -> str:
    epochs = {}
    for m in cfg.methods:
        for k in cfg.shots:
            r = bench.method_settings(m, k, cfg.datasets[0])["recipe"]
            if get_method_spec(m).training == "gradient":
                epochs.setdefault(m, set()).add(r["epochs"])
    ep = "; ".join(f"{m} {'/'.join(str(e) for e in sorted(v))}" for m, v in epochs.items())
    return (f"Setting: methods {', '.join(cfg.methods)}; datasets {', '.join(cfg.datasets)}; backbones "
            f"{', '.join(b.label for b in cfg.backbones)}; shots {', '.join(map(str, cfg.shots))}; seeds "
            f"{', '.join(map(str, cfg.seeds))}; PiNI recipe {cfg.recipe} ({PRESET_DOCS[cfg.recipe]}); "
            + (f"protocol tuned: lr of every SGD-trained method chosen on the few-shot val split from "
               f"{', '.join(f'{x:g}' for x in cfg.lr_grid)}; " if cfg.protocol == "tuned" else
               "protocol reference: each method's own recipe; ")
            + f"profile {cfg.profile}"
            + (f" (epochs: {ep})" if ep else "")
            + ("; train augmentation off (test transform only)" if not cfg.augment else "")
            + ". Last-epoch models; C (linear probe) and alpha/beta "
            "(Tip-Adapter) searched on the few-shot val split; nothing selected on test.")


def _command_line() -> str:
    argv0 = sys.argv[0].replace("\\", "/")
    if argv0.endswith("pini_core/__main__.py"):
        argv0 = "python -m pini_core"
    return " ".join([argv0] + sys.argv[1:])


def run(args) -> int:
    threads = args.threads or PRESETS[args.preset].get("threads")
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        cfg = config_from_args(args)
        bench = Benchmark(cfg)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    plan_keys = {bench.key_of(c) for c in bench.plan()}
    if args.list:
        done = bench.results.done_keys()
        for c in bench.plan():
            print(("done  " if bench.key_of(c) in done else "to do ") + c.describe())
        return 0
    summary = None
    if not args.report_only:
        todo, n_done = bench.pending()
        print(f"bench: {n_done + len(todo)} cells ({n_done} already done) -> {bench.results.path}")
        try:
            summary = bench.run()
        except BenchError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # a cell failed: say which, keep what finished
            import traceback

            traceback.print_exc()
            print(f"error: a cell failed ({type(e).__name__}: {e}). Every finished cell is kept in "
                  f"{bench.results.path}; fix the cause and rerun the same command to resume.", file=sys.stderr)
            return 1
    records = bench.results.load()
    if not args.all_records:
        from .results import cell_key

        records = [r for r in records if cell_key(r) in plan_keys]
    if not records:
        print(f"no finished cells in {bench.results.path} for this setting yet", file=sys.stderr)
        return 1 if args.report_only else (130 if summary and summary["interrupted"] else 1)
    meta = {"description": describe(cfg, bench), "command": _command_line(),
            "config": {**{k: v for k, v in vars(cfg).items() if k != "backbones"},
                       "backbones": [vars(b) for b in cfg.backbones]},
            "cells_in_plan": len(plan_keys), "cells_finished": len(records),
            "sum_train_time_s": round(sum(r.get("train_time_s", 0) for r in records), 2),
            "sum_eval_time_s": round(sum(r.get("eval_time_s", 0) for r in records), 2),
            "this_run": summary, "environment": environment()}
    files = write_report(records, bench.out_dir, meta)
    print((Path(bench.out_dir) / "tables.md").read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(f) for f in files)}")
    if args.export:
        copied = export(files + [bench.results.path], args.export)
        print(f"copied to {args.export}: {', '.join(p.name for p in copied)}")
    if summary and summary["interrupted"]:
        print(f"stopped by Ctrl-C: {summary['finished']} cells finished in this run and kept; "
              f"{summary['remaining']} to go. Rerun the same command to resume.", file=sys.stderr)
        return 130
    if summary and summary["stopped_at_limit"]:
        print(f"stopped after --max-cells {cfg.max_cells}; {summary['remaining']} cells to go. "
              "Rerun to continue.", file=sys.stderr)
    if summary:
        print(f"wall time {summary['seconds']:.1f} s for {summary['finished']} cells "
              f"(process CPU time {summary['cpu_seconds']:.1f} s)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pini_core bench")
    add_arguments(parser)
    return run(parser.parse_args(argv))
