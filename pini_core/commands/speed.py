"""python -m pini_core speed: training-step throughput of PiNI's three execution paths.

In one run, for each class count C and one architecture (paper-default noise: visual
feature + CA, prompt + LE; batch 32; SGD step = forward + backward + update):

  default  cached image features, the full text encoder over all C prompts (truncated at
           the longest EOT) -- the project's path without shared-prefix encoding;
  shared   cached image features, shared-prefix text encoding (pini_core.text_prefix:
           the prefix once per noise draw, then only the class suffixes);
  authors  the authors' code's style: images re-encoded every step, every prompt run over
           the full context (77 tokens for OpenAI CLIPs), no prefix sharing.

Reports the median seconds per step over --steps timed steps (after --warmup), steps/s,
the ratios to `default`, and the text-tower token counts per step. A (path, C) whose
estimated activation memory exceeds --mem-limit-gb is not run: its time is extrapolated
linearly in text tokens from the measured class counts of the same path, and marked so.

  python -m pini_core speed --classes 10,100,1000                # random-init ViT-B-16
  python -m pini_core speed --model embedded --classes 10,100,1000 --json speed.json
  python -m pini_core speed --features --model embedded     # cost of V augmented views per image
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Dict, List

PATHS = ("default", "shared", "authors")
# Activation memory kept for the backward pass, bytes per (text token x layer x width) in
# fp32: 52-57 measured on CPU for ViT-B-16's full text encoder (peak RSS), 72 for the\n# shared-prefix one; see docs/speed.md.
BYTES_PER_TOKEN_LAYER_WIDTH = 72
WORDS = ("tabby cat dog fox shark whale eagle owl hen goose snail crab lobster spider beetle ant bee moth "
         "frog newt turtle lizard snake cobra python boa viper otter seal koala llama camel zebra horse "
         "pony bison ox goat sheep pig boar hippo rhino tiger lion leopard cheetah lynx jaguar puma bear "
         "panda monkey gorilla lemur sloth bat mole shrew hare rabbit squirrel beaver marmot porcupine "
         "hedgehog robin finch wren jay magpie crow heron stork crane swan duck pelican parrot macaw "
         "toucan hornbill peacock quail grouse pheasant ostrich emu kiwi penguin albatross gull tern "
         "sandpiper plover ibis flamingo spoonbill egret bittern rail coot bustard kite hawk falcon "
         "vulture condor harrier buzzard osprey great white grey red green blue black golden silver "
         "spotted striped common giant little lesser american european african indian tree sea snow "
         "river mountain desert garden house water field wood rock sand wild pygmy electric toy").split()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--arch", dest="model", default="ViT-B-16",
                   help="open_clip architecture built with random weights (speed does not depend on them), "
                        "or 'embedded' for the shipped toy CLIP")
    p.add_argument("--classes", default="10,100,1000", help="comma-separated class counts C")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed steps per (path, C); the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {', '.join(PATHS)}")
    p.add_argument("--classnames", default=None,
                   help="file of class names (one per line, or CoOp's ImageNet 'n01440764 tench' lines); "
                        "default: synthetic names of 1-3 words (+ one 11-token name when C >= 100, like ImageNet)")
    p.add_argument("--mem-limit-gb", type=float, default=6.0,
                   help="skip (and extrapolate) a (path, C) whose estimated text activations exceed this")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="also write the rows as JSON to PATH ('-' or no value: print them as the last line)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--features", action="store_true",
                   help="instead: cost of encoding augmented views (fresh augmentation at cache speed) on "
                        "synthetic ImageNet-sized JPEGs, extrapolated to --target-images x --target-views")
    p.add_argument("--images", type=int, default=8, help="--features: images timed")
    p.add_argument("--views", type=int, default=4, help="--features: augmented views per image timed")
    p.add_argument("--target-images", type=int, default=16000, help="--features: e.g. 16-shot ImageNet")
    p.add_argument("--target-views", type=int, default=100, help="--features: views = epochs")


def _parse_list(text: str, what: str, kind=int) -> list:
    from ..errors import ConfigError

    try:
        out = [kind(x.strip()) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{what} must be a comma-separated list, got {text!r}") from None
    if not out:
        raise ConfigError(f"--{what} is empty")
    return out


def synthetic_classnames(n: int, seed: int = 0) -> List[str]:
    """n distinct class names of 1-3 common words (mean suffix -- name + "." + EOT -- about
    4.2 tokens, as ImageNet's ~4 200 suffix tokens at C = 1000 in issue 13), plus, when
    n >= 100, one 11-token name (the longest prompt is then 34 tokens, as ImageNet's with
    PiNI's 21-token prefix). Deterministic for a seed."""
    import random

    rng = random.Random(seed)
    names, seen = [], set()
    while len(names) < n:
        k = rng.choice((1, 1, 1, 1, 2, 2, 2, 3))
        name = " ".join(rng.choice(WORDS) for _ in range(k))
        if name not in seen:
            seen.add(name)
            names.append(name)
    if n >= 100:
        names[n // 2] = "great white spotted american desert mountain river snow tree sea house"
    return names


def read_classnames(path: str) -> List[str]:
    from ..errors import DataError

    try:
        lines = [ln.strip() for ln in open(path, encoding="utf-8") if ln.strip()]
    except OSError as e:
        raise DataError(f"cannot read class names from {path}: {e.strerror or e}") from None
    out = []
    for ln in lines:
        head, _, rest = ln.partition(" ")
        out.append(rest.strip() if head[:1] == "n" and head[1:].isdigit() and rest else ln)
    return out


def _load(args):
    import open_clip

    from ..backbone import EMBEDDED_NAMES, load_backbone
    from ..errors import ModelLoadError

    if args.model in EMBEDDED_NAMES:
        return load_backbone("embedded", device=args.device), "embedded (toy CLIP)"
    cfg = open_clip.get_model_config(args.model)
    if cfg is None:
        import difflib

        close = difflib.get_close_matches(args.model, open_clip.list_models(), n=5, cutoff=0.5)
        raise ModelLoadError(f"unknown open_clip architecture {args.model!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else
                                "; see `python -m pini_core models`, or use --model embedded"))
    # = open_clip.create_model(args.model, pretrained=None): random init, registered under a new name
    return load_backbone(f"{args.model}-random-init", model_cfg=cfg, device=args.device), f"{args.model} random init"


class _AuthorsText:
    """Within the block: the backbone runs every prompt over its full context (no EOT truncation)."""

    def __init__(self, bb):
        self.bb = bb

    def __enter__(self):
        import functools

        self.bb.encode_text_embeddings = functools.partial(type(self.bb).encode_text_embeddings, self.bb,
                                                           truncate=False)

    def __exit__(self, *exc):
        del self.bb.encode_text_embeddings


class _Stepper:
    """One path's training step (SGD, forward + backward + update) and its timings."""

    def __init__(self, model, path: str, inputs, labels):
        import contextlib

        import torch

        self.model, self.path, self.inputs, self.labels = model, path, inputs, labels
        self.opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=1e-3, momentum=0.9)
        self.ctx = (lambda: _AuthorsText(model.backbone)) if path == "authors" else contextlib.nullcontext
        self.times: List[float] = []
        self.cpu_times: List[float] = []

    def step(self, timed: bool) -> None:
        import torch

        cuda = self.model.backbone.device.type == "cuda"
        self.model.shared_prefix = self.path == "shared"
        if cuda:
            torch.cuda.synchronize()
        t, c = time.perf_counter(), time.process_time()
        with self.ctx():
            loss = self.model.compute_loss(self.inputs, self.labels)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        if cuda:
            torch.cuda.synchronize()
        if timed:
            self.times.append(time.perf_counter() - t)
            self.cpu_times.append(time.process_time() - c)


def _estimate_gb(tokens: int, bb) -> float:
    m = bb.model
    return tokens * len(m.transformer.resblocks) * m.transformer.width * BYTES_PER_TOKEN_LAYER_WIDTH / 1e9


def _extrapolate(rows: List[Dict]) -> None:
    """Fill skipped rows: s/step linear in text tokens through the two largest measured class
    counts of the path (proportional to tokens from the largest one if only one was measured
    or timing noise made the slope non-positive)."""
    for path in PATHS:
        done = [r for r in rows if r["path"] == path and not r["extrapolated"]]
        for r in (r for r in rows if r["path"] == path and r["extrapolated"]):
            if not done:
                continue
            for key in ("s_per_step", "cpu_s_per_step"):
                slope = 0.0
                if len(done) >= 2:
                    a, b = done[-2], done[-1]
                    slope = (b[key] - a[key]) / max(1, b["text_tokens"] - a["text_tokens"])
                if slope > 0:
                    r[key] = b[key] + slope * (r["text_tokens"] - b["text_tokens"])
                    r["extrapolated_from"] = [a["classes"], b["classes"]]
                else:
                    r[key] = done[-1][key] * r["text_tokens"] / done[-1]["text_tokens"]
                    r["extrapolated_from"] = [done[-1]["classes"]]
            r["steps_per_s"] = 1.0 / r["s_per_step"]


def _jpeg_bytes(rng, w: int = 500, h: int = 375) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def run_features(args, bb, label: str) -> int:
    """Cost of V augmented views per image (pini_core.features.encode_images) and its
    extrapolation to target_images x target_views (time on this machine, fp16 storage)."""
    import numpy as np
    import torch

    from ..data.images import load_image
    from ..features import encode_images, train_transform

    rng = np.random.default_rng(0)
    data = [(_jpeg_bytes(rng), i) for i in range(args.images)]
    V, N = args.views, args.images
    t = time.perf_counter()
    encode_images(bb, data, augment=True, views=V, seed=0, progress=False, use_cache=False, dtype="fp16",
                  batch_size=args.batch_size)
    batched = (time.perf_counter() - t) / (V * N)
    t = time.perf_counter()
    for v in range(V):  # the previous loop: one view per pass, the image decoded again for each view
        encode_images(bb, data, augment=True, views=1, seed=v, progress=False, use_cache=False,
                      batch_size=args.batch_size)
    per_view_decode = (time.perf_counter() - t) / (V * N)
    t = time.perf_counter()
    images = [load_image(src) for src, _ in data]
    decode = (time.perf_counter() - t) / N
    tf = train_transform(bb)
    t = time.perf_counter()
    px = torch.stack([tf(im) for im in images for _ in range(V)])
    augment = (time.perf_counter() - t) / px.shape[0]
    with torch.no_grad():
        bb.encode_image(px[:2])
        times = []
        for _ in range(3):
            t = time.perf_counter()
            bb.encode_image(px[:args.batch_size])
            times.append((time.perf_counter() - t) / min(args.batch_size, px.shape[0]))
    tower = statistics.median(times)
    n, v = args.target_images, args.target_views
    res = {"model": label, "threads": torch.get_num_threads(), "device": str(bb.device),
           "s_per_view_batched": batched, "s_per_view_decode_every_view": per_view_decode,
           "s_decode_per_image": decode, "s_augment_per_view": augment, "s_tower_per_image": tower,
           "target_images": n, "target_views": v, "embed_dim": bb.embed_dim,
           "storage_gb_fp16": n * v * bb.embed_dim * 2 / 1e9, "storage_gb_fp32": n * v * bb.embed_dim * 4 / 1e9,
           "hours_on_this_machine": (n * v * (tower + augment) + n * decode) / 3600}
    print(f"{label}: augmented views of {N} ImageNet-sized JPEGs x {V} views, {res['threads']} threads")
    print(f"  end to end, batched, decode once: {batched * 1e3:8.1f} ms/view "
          f"(decode again per view: {per_view_decode * 1e3:.1f} ms/view)")
    print(f"  decode {decode * 1e3:.1f} ms/image, augment {augment * 1e3:.1f} ms/view, "
          f"tower {tower * 1e3:.1f} ms/image")
    print(f"  {n} images x {v} views: {res['storage_gb_fp16']:.2f} GB fp16 ({res['storage_gb_fp32']:.2f} GB fp32), "
          f"~{res['hours_on_this_machine']:.1f} h on this machine")
    _emit_json(args, res)
    return 0


def _emit_json(args, obj) -> None:
    """--json PATH writes `obj` there (atomically); --json alone (-) prints it as the last line."""
    if args.json and args.json != "-":
        from ..atomic import write_json

        write_json(args.json, obj, indent=1)
        print(f"wrote {args.json}")
    elif args.json == "-":
        print(json.dumps(obj))


def run(args) -> int:
    import torch
    from tqdm.auto import tqdm

    from .. import text_prefix
    from ..errors import ConfigError
    from ..model import PiNIModel
    from ..noise import NoiseConfig

    counts = _parse_list(args.classes, "classes")
    paths = _parse_list(args.paths, "paths", str)
    bad = [p for p in paths if p not in PATHS]
    if bad or any(c < 2 for c in counts) or args.steps < 1 or args.batch_size < 1:
        raise ConfigError(f"speed: paths must be among {PATHS} (got {bad}), classes >= 2, steps >= 1, "
                          f"batch size >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    bb, label = _load(args)
    if args.features:
        if min(args.images, args.views, args.target_images, args.target_views) < 1:
            raise ConfigError("speed --features: --images, --views, --target-images, --target-views must be >= 1")
        return run_features(args, bb, label)
    pool = read_classnames(args.classnames) if args.classnames else None
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.batch_size, 3, bb.image_size, bb.image_size, generator=g).to(bb.device)
    with torch.no_grad():
        feats = bb.encode_image(pixels)
    print(f"{label}, batch {args.batch_size}, {','.join(map(str, counts))} classes, "
          f"{torch.get_num_threads()} threads, device {bb.device}, median of {args.steps} steps")
    rows: List[Dict] = []
    bar = tqdm(total=len(counts) * len(paths) * (args.steps + args.warmup), desc="speed",
               disable=args.no_progress, file=sys.stderr)
    for C in counts:
        names = (pool * (C // len(pool) + 1))[:C] if pool else synthetic_classnames(C)
        if pool and C > len(pool):
            names = [f"{n} {i // len(pool)}" if i >= len(pool) else n for i, n in enumerate(names)]
        labels = torch.randint(C, (args.batch_size,), generator=g).to(bb.device)
        torch.manual_seed(0)
        model = PiNIModel(bb, names, "a photo of a {}.", NoiseConfig())
        P = model.prompt_span().stop
        tokens = text_prefix.token_counts(model.token_ids, P, bb.model, model.noise_cfg.train_draws)
        steppers = []
        for path in paths:
            n_tok = {"default": tokens["full"], "shared": tokens["shared_prefix"],
                     "authors": tokens["full_context"]}[path]
            row = {"model": label, "classes": C, "path": path, "text_tokens": n_tok, "prefix_tokens": P,
                   "batch_size": args.batch_size, "threads": torch.get_num_threads(), "device": str(bb.device),
                   "image_tower_per_step": path == "authors", "extrapolated": False}
            rows.append(row)
            est = _estimate_gb(n_tok, bb)
            if est > args.mem_limit_gb:
                row.update(extrapolated=True, reason=f"estimated {est:.2f} GB of text activations > "
                                                     f"--mem-limit-gb {args.mem_limit_gb:g}")
                bar.update(args.steps + args.warmup)
                continue
            why = text_prefix.prefix_unsupported_reason(bb, model.token_ids, P) if path == "shared" else None
            if why:
                row["note"] = "fell back to the full encoder: " + why
            steppers.append((row, _Stepper(model, path, {"pixels": pixels} if path == "authors"
                                           else {"features": feats}, labels)))
        # Interleaved: each round times one step of every path, so load changes on a shared
        # machine hit all paths alike (the ratios stay fair).
        for i in range(args.warmup + args.steps):
            for row, st in steppers:
                peak = i == 0 and bb.device.type == "cuda"
                if peak:
                    torch.cuda.reset_peak_memory_stats()
                st.step(timed=i >= args.warmup)
                if peak:
                    row["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
                bar.update(1)
        for row, st in steppers:
            med = statistics.median(st.times)
            row.update(s_per_step=med, steps_per_s=1.0 / med, s_per_step_all=st.times,
                       cpu_s_per_step=statistics.median(st.cpu_times), cpu_s_per_step_all=st.cpu_times)
        del model
    bar.close()
    _extrapolate(rows)
    for C in counts:
        base = next((r for r in rows if r["classes"] == C and r["path"] == "default" and "s_per_step" in r), None)
        for r in (r for r in rows if r["classes"] == C and "s_per_step" in r):
            r["x_vs_default"] = base["s_per_step"] / r["s_per_step"] if base else None
            r["cpu_x_vs_default"] = base["cpu_s_per_step"] / r["cpu_s_per_step"] if base else None
    print("wall = elapsed seconds; cpu = this process's CPU seconds (all threads), robust to other load")
    print(f"{'C':>5} {'path':8} {'text tokens':>11} {'s/step':>9} {'steps/s':>9} {'x default':>9} "
          f"{'cpu s/step':>10} {'x (cpu)':>8}")
    for r in rows:
        if "s_per_step" not in r:
            print(f"{r['classes']:>5} {r['path']:8} {r['text_tokens']:>11} {'-':>9} {'-':>9} {'-':>9} "
                  f"{'-':>10} {'-':>8}  (skipped: {r.get('reason')})")
            continue
        x = f"{r['x_vs_default']:.2f}" if r.get("x_vs_default") else "-"
        xc = f"{r['cpu_x_vs_default']:.2f}" if r.get("cpu_x_vs_default") else "-"
        flag = f"  (extrapolated from C={r['extrapolated_from']}: {r['reason']})" if r["extrapolated"] else ""
        note = f"  ({r['note']})" if r.get("note") else ""
        print(f"{r['classes']:>5} {r['path']:8} {r['text_tokens']:>11} {r['s_per_step']:>9.3f} "
              f"{r['steps_per_s']:>9.3f} {x:>9} {r['cpu_s_per_step']:>10.3f} {xc:>8}{flag}{note}")
    _emit_json(args, rows)
    return 0
