"""python -m pini_core models: what backbones can be loaded."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--filter", default="", help="only names containing this text")


def run(args) -> int:
    import open_clip

    from ..backbone import embedded_dir

    print(f"embedded  (offline toy CLIP at {embedded_dir()}; exists: {(embedded_dir() / 'open_clip_config.json').exists()})")
    for name, tag in open_clip.list_pretrained():
        if args.filter.lower() in name.lower():
            print(f"{name:40s} --pretrained {tag}")
    print("\nAlso: --model local-dir:/path (open_clip_config.json + weights) or --model NAME --pretrained /path/to/file")
    return 0
