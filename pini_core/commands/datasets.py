"""python -m pini_core datasets: the registered dataset names."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args) -> int:
    from ..data.registry import list_datasets

    for name, desc in list_datasets().items():
        print(f"{name:24s} {desc}")
    return 0
