"""`python -m pini_core <command>`: one sub-command per module.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`, so the CLI
stays a table and every command's help lives next to its code.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# (command, module, one-line help)
COMMANDS = [
    ("train", "pini_core.commands.train", "few-shot train PiNI noise generators on a frozen CLIP"),
    ("eval", "pini_core.commands.evaluate", "evaluate a trained checkpoint (mean / single / average modes)"),
    ("decode", "pini_core.commands.decode", "Table 8: nearest vocabulary words of noisy prompt embeddings"),
    ("meter", "pini_core.commands.meter", "pi-noise meter: H(T), H(T|eps), I(T, eps) for learned/random/no noise"),
    ("speed", "pini_core.commands.speed", "benchmark: training-step throughput with vs without feature caching"),
    ("models", "pini_core.commands.models", "list open_clip models, pretrained tags and local weights in the cache"),
    ("datasets", "pini_core.commands.datasets", "list registered datasets (toy tasks, CoOp layouts, imagefolder)"),
    ("data-check", "pini_core.data.check", "check a dataset's files: counts per split, broken images"),
    ("pretrain", "pini_core.world.pretrain", "pretrain the embedded toy CLIP on the procedural world"),
    ("bench", "pini_core.bench.cli", "benchmark harness: baselines vs PiNI, paper tables and figures"),
    ("mung", "pini_core.mung.cli", "MuNG for multimodal LLMs: train / answer"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pini_core",
        description="Beneficial (pi-) noise for vision-language models: PiNI for CLIP, MuNG for multimodal LLMs. "
                    "Run `python -m pini_core <command> --help` for each command.")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                p.set_defaults(_missing=f"command {name!r} is not available in this checkout ({module} missing)")
                continue
            raise
        mod.add_arguments(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(args._missing, file=sys.stderr)
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)
