"""python -m pini_core speed: training-step throughput with vs without feature caching.

When no noise enters the image encoder, the trainer caches V(x) once, so a step no
longer runs the image tower. This measures that on the same model (default: ViT-B-32
size, random init — the speed does not depend on the weights), batch 32:

  python -m pini_core speed --arch ViT-B-32 --batch-size 32 --steps 5
"""
from __future__ import annotations

import argparse
import json
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random init)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=5, help="timed steps per setting (after 1 warm-up step)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--device", default="auto")


def _time_steps(model, inputs, labels, steps: int) -> float:
    import torch

    opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=1e-3, momentum=0.9)

    def step():
        loss = model.compute_loss(inputs, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)


def run(args) -> int:
    import open_clip
    import torch

    from ..backbone import load_backbone
    from ..model import PiNIModel
    from ..noise import NoiseConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = open_clip.get_model_config(args.arch)
    if cfg is None:
        import difflib
        import sys

        close = difflib.get_close_matches(args.arch, open_clip.list_models(), n=5, cutoff=0.5)
        print(f"error: unknown open_clip architecture {args.arch!r}"
              + (f"; did you mean {', '.join(close)}?" if close else "; see `python -m pini_core models`"),
              file=sys.stderr)
        return 2
    bb = load_backbone(f"{args.arch}-random-init", model_cfg=cfg, device=args.device)
    classes = [f"class {i}" for i in range(args.classes)]
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.batch_size, 3, bb.image_size, bb.image_size, generator=g).to(bb.device)
    labels = torch.randint(args.classes, (args.batch_size,), generator=g).to(bb.device)
    with torch.no_grad():
        feats = bb.encode_image(pixels)
    rows = []
    settings = {
        "feature CA + prompt LE (paper default)": NoiseConfig(),
        "feature CA + text-feature LE": NoiseConfig(text_location="feature", text_generator="le"),
    }
    print(f"{args.arch} random init, batch {args.batch_size}, {args.classes} classes, "
          f"{torch.get_num_threads()} threads, device {bb.device}")
    for name, noise in settings.items():
        model = PiNIModel(bb, classes, "a photo of a {}.", noise)
        uncached = _time_steps(model, {"pixels": pixels}, labels, args.steps)
        cached = _time_steps(model, {"features": feats}, labels, args.steps)
        rows.append({"setting": name, "uncached_steps_per_s": uncached, "cached_steps_per_s": cached,
                     "speedup": cached / uncached})
        print(f"{name:42s} uncached {uncached:8.3f} steps/s | cached {cached:8.3f} steps/s | x{cached / uncached:.1f}")
    print(json.dumps(rows))
    return 0
