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
    ("zeroshot", "pini_core.world.zeroshot", "the embedded CLIP's zero-shot accuracies (and record them in pini_meta.json)"),
    ("prompt-sensitivity", "pini_core.commands.sensitivity",
     "the text tower's gradient at PiNI's placeholders / at CoOp's random context (issue 14)"),
    ("examples", "pini_core.world.examples", "render example images of every toy task (the app's galleries)"),
    ("bench", "pini_core.bench.cli", "benchmark harness: baselines vs PiNI, paper tables and figures"),
    ("mung", "pini_core.mung.cli", "MuNG for multimodal LLMs: train / answer / eval"),
    ("mung-params", "pini_core.mung.param_count", "MuNG's parameter count as a share of LLaVA-1.5-7B / Qwen2.5-VL-3B"),
    ("mung-visualize", "pini_core.mung.visualize", "time (and save) MuNG's attention / relevance figures"),
    ("app-bench", "demo.bench_app", "benchmark the app: cold start and each tab's response time"),
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
    """Run one command; returns its exit status.

    Every user-facing error derives from :class:`pini_core.errors.PiniError`: it is printed
    as one line ``error: <message>`` on stderr and the exit status is 2 (no traceback).
    Ctrl-C prints ``interrupted`` and gives 130 (128 + SIGINT, the shell convention).
    Anything else that escapes is a bug and keeps its traceback."""
    from .errors import PiniError

    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "_module", None):
            parser.print_help()
            return 2
        if getattr(args, "_missing", None):
            print(args._missing, file=sys.stderr)
            return 2
        return int(importlib.import_module(args._module).run(args) or 0)
    except PiniError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    """The message of `e` on one line (a multi-line message keeps its words, joined by ' | ')."""
    text = str(e).strip() or type(e).__name__
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())
