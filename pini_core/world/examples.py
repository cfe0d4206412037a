"""Write a handful of example PNGs per toy task (for the app's example galleries).

    python -m pini_core examples --out assets/examples --per-task 6

Files: <out>/<task>/<index>_<classname>.png, rendered from the task's test split, so the
class in the file name is the true label.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List

from .. import atomic
from .scene import SHAPES
from .tasks import TASK_DOMAINS, load_task

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "assets" / "examples"


def write_examples(out: str | Path = DEFAULT_OUT, per_task: int = 6, seed: int = 1,
                   tasks=None) -> Dict[str, List[Path]]:
    """Save `per_task` test images of each task (distinct classes first); returns the paths."""
    if per_task < 1:
        raise ValueError(f"per_task must be >= 1, got {per_task}")
    out = Path(out)
    written: Dict[str, List[Path]] = {}
    for task in tasks or TASK_DOMAINS:
        # the first test images do not depend on the split sizes, so render only what is needed
        splits = load_task(task, seed=seed, train_per_class=1, val_per_class=1,
                           test_per_class=-(-per_task // len(SHAPES)))
        folder = out / task
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        # the test split is interleaved by class, so its first items cover distinct classes
        for i, (img, label) in enumerate(splits.test[:per_task]):
            path = folder / f"{i:02d}_{splits.classnames[label]}.png"
            with atomic.atomic_path(path) as tmp:
                img.save(tmp, format="PNG")
            paths.append(path)
        written[task] = paths
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Render example images of every toy task into a folder (one sub-folder per task)."
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder")
    parser.add_argument("--per-task", type=int, default=6, help="images per task")
    parser.add_argument("--seed", type=int, default=1, help="task seed (as in get_dataset(name, seed=...))")
    parser.add_argument("--tasks", nargs="*", choices=list(TASK_DOMAINS), help="only these tasks")


def run(args) -> int:
    written = write_examples(args.out, args.per_task, args.seed, args.tasks)
    for task, paths in written.items():
        print(f"{task}: {len(paths)} images in {paths[0].parent}")
    return 0
