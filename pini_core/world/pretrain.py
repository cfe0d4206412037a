"""Pretrain the embedded toy CLIP on the procedural world (source domain only).

A small open_clip `CLIP` with OpenAI-style towers and the real CLIP BPE tokenizer (vocab
49408), trained from scratch with open_clip's contrastive `ClipLoss` on freshly rendered
image-caption pairs. Every batch is rendered from (seed, step), so a run is reproducible
from its seed.

Image tower choice: the default is open_clip's ModifiedResNet (the CLIP RN50 family:
conv stages + attention pooling; spatial tokens = its last feature map). A VisionTransformer
(`--vision-arch vit`) is supported too, but from scratch on a CPU budget it learns colour
and not shape: with 500 contrastive steps a 4-layer ViT stayed at chance on shape (7.5 %),
and even supervised shape training reached only 36 % after 300 steps, against 55 % after
150 steps for the ResNet. The text tower is always the standard causal transformer
(token embedding + positional embedding + EOT pooling), so CoOp-style prompt learning
and every text injection point work unchanged.

Text-length choice: PiNI's prompts are CoOp-style, 16 "x" placeholder words before the
template ("x x ... x a photo of a star."), so positions up to ~30 must be trained. The
context length is 40 and a fraction (`--extra-rate`) of pretraining captions are long
web-style alt-texts (`captions.extra_text`): more true details of the scene after the
description, or content-free boilerplate ("stock photo", "image 3 of 12") before or after
it, capped to the context. So every position is trained on natural words, and the subject
appears at many positions.

No caption holds a prompt-learning method's scaffolding. Earlier checkpoints put 16 "x"
placeholders (PiNI's prompt layout) before 30 % of the captions; the text tower then
learned to ignore exactly PiNI's placeholders, and the gradient at them was ~50x smaller
than at CoOp's random context (issue 14; `python -m pini_core prompt-sensitivity`). A real
CLIP never saw that format, so neither does this stand-in: "x"/"X" never occur in captions
(the "x" token stays at its random init, shrunk by weight decay, like any unseen word).
Dataset-template phrasings ("a photo of a {}.") are natural web text and stay, as one
phrasing among several (`captions.BARE_TEMPLATES`, `captions.PHOTO_TEMPLATES`).

Batches: groups of `--group-size` scenes share colour, texture, background, size and count
and differ in shape (in-batch hard negatives). With independent scenes, a short CPU run
learns colour, count and background but stays at chance on shape; grouping makes shape the
cue the contrastive loss must use.

Caption curriculum (`--label-warmup`): the run starts with bare-label captions only ("a
photo of a star.") and moves linearly to the world's usual mix (15 % bare labels) over the
first 40 % of the steps. Both towers start from random init; labels first give both a
simple, shape-centred target while they find each other. (Observed, not ablated at equal
length: runs without it, 500-700 steps, ended at 7-12 % shape accuracy; a 1500-step run
with it went from 14 % at step 200 to 41 % at step 1200.)

Output (open_clip "local-dir" format; pini_core loads it with `load_backbone("embedded")`, or
`load_backbone("local-dir:PATH")` for another folder):
  open_clip_config.json        {"model_cfg": ..., "preprocess_cfg": ...}
  open_clip_model.safetensors  weights stored in fp16 (open_clip casts them to fp32 on load)
  pini_meta.json               seed, steps, time, command, zero-shot accuracies
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from .. import atomic
from .captions import caption, extra_text
from .render import render
from .scene import SHAPES, sample_scene
from ..backbone import CLIP_MEAN, CLIP_STD, EMBEDDED_DIR, Backbone
from ..data.transforms import clip_test_transform
from .zeroshot import SOURCE_TEMPLATE, load_toyclip, source_accuracy, source_shape_set, zero_shot_accuracy, \
    zero_shot_table


def model_config(args) -> Dict:
    """open_clip model config. Vision tower: open_clip's ModifiedResNet (the CLIP RN50
    family, attention-pooled) or its VisionTransformer; text tower: the standard causal
    transformer with the CLIP BPE vocabulary."""
    if args.vision_arch == "resnet":
        vision = {"image_size": args.image_size, "layers": [args.vision_layers] * 4, "width": args.vision_width}
    else:
        vision = {"image_size": args.image_size, "layers": args.vision_layers, "width": args.vision_width,
                  "head_width": 32, "patch_size": args.patch_size, "mlp_ratio": 4.0}
    return {
        "embed_dim": args.embed_dim,
        "vision_cfg": vision,
        "text_cfg": {"context_length": args.context_length, "vocab_size": 49408, "width": args.text_width,
                     "heads": max(1, args.text_width // 32), "layers": args.text_layers},
    }


def preprocess_config(image_size: int) -> Dict:
    return {"size": image_size, "mode": "RGB", "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
            "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Pretrain the small embedded CLIP (checkpoints/toyclip) on the procedural "
                          "world with the contrastive loss (the recipe of issue 14: no placeholder captions; about 20 "
                          "CPU-minutes, main process + renderer). The shipped checkpoint's own recipe and command are "
                          "in checkpoints/toyclip/pini_meta.json.")
    parser.add_argument("--out", default=str(EMBEDDED_DIR), help="output folder (open_clip local-dir format)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the model init and every rendered batch")
    parser.add_argument("--steps", type=int, default=8000, help="optimisation steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (cosine decay)")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (rendering runs in a second process). 1 by default: on 2 cores "
                             "shared with other jobs, 2 threads ran 10x slower per step (threads waiting on each "
                             "other), 1 thread about 0.13 CPU-s per step")
    parser.add_argument("--extra-rate", type=float, default=0.3,
                        help="fraction of captions made long with natural extra text (details or web "
                             "boilerplate), so every text position is trained; never placeholder words")
    parser.add_argument("--rare-rate", type=float, default=0.0005,
                        help="fraction of captions naming the shape by its rare synonym (toy-rarewords)")
    parser.add_argument("--group-size", type=int, default=8,
                        help="scenes per batch group sharing all attributes but shape (1: independent scenes)")
    parser.add_argument("--label-warmup", type=float, default=0.4,
                        help="fraction of the run over which captions go from bare labels to the usual mix")
    parser.add_argument("--vision-arch", choices=("resnet", "vit"), default="resnet",
                        help="image tower: open_clip ModifiedResNet (CLIP RN family) or VisionTransformer")
    parser.add_argument("--image-size", type=int, default=64, help="model input size (resnet: multiple of 32)")
    parser.add_argument("--patch-size", type=int, default=8, help="ViT patch size")
    parser.add_argument("--vision-width", type=int, default=None,
                        help="resnet stem width (default 16) or ViT width (default 64)")
    parser.add_argument("--vision-layers", type=int, default=None,
                        help="resnet blocks per stage (default 1) or ViT layers (default 4)")
    parser.add_argument("--text-width", type=int, default=64)
    parser.add_argument("--text-layers", type=int, default=3)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--context-length", type=int, default=40)
    parser.add_argument("--eval-samples", type=int, default=1000,
                        help="fresh source images for the final zero-shot check (0: skip)")
    parser.add_argument("--eval-every", type=int, default=100,
                        help="log zero-shot source accuracy on 300 held-out images every N steps (0: never)")
    parser.add_argument("--eval-tasks", action="store_true",
                        help="also measure zero-shot accuracy on every toy task and record it")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny model and few steps, to check the pipeline end to end (tests)")


class CaptionedBatches(torch.utils.data.IterableDataset):
    """Batch `step` is rendered from random.Random((seed, step)): independent of workers."""

    def __init__(self, seed, steps, batch_size, tokenizer, context_length, extra_rate, rare_rate, image_size,
                 group_size=1, label_warmup=0.0):
        self.seed, self.steps, self.batch_size, self.group_size = seed, steps, batch_size, group_size
        self.label_warmup = label_warmup
        self.tokenizer, self.context_length = tokenizer, context_length
        self.extra_rate, self.rare_rate, self.image_size = extra_rate, rare_rate, image_size

    def bare_rate(self, step: int) -> float:
        """Caption curriculum: bare labels ("a photo of a star.") only at first, then
        linearly down to the world's usual 15 % over the first `label_warmup` of the run."""
        ramp = self.label_warmup * self.steps
        if ramp <= 0:
            return 0.15
        return max(0.15, 1.0 - step / ramp)

    def with_extra(self, text: str, scene, r: random.Random) -> str:
        """With probability `extra_rate`, `text` made longer with natural extra text
        (`captions.extra_text`), dropping extra pieces until it fits the context."""
        if r.random() >= self.extra_rate:
            return text
        before, after = extra_text(scene, r)
        while True:
            full = ", ".join(before + [text]) if before else text
            if after:
                full = full + " " + " ".join(after) if full.endswith(".") else ", ".join([full] + after)
            if len(self.tokenizer.encode(full)) <= self.context_length - 2 or not (before or after):
                return full
            if before:
                before = before[1:]
            else:
                after = after[:-1]

    def scenes(self, r: random.Random):
        """Groups of `group_size` scenes that share colour, texture, background, size and
        count but show different shapes: in-batch hard negatives, so that the contrastive
        loss cannot be solved by colour alone and shape is learned early."""
        out = []
        while len(out) < self.batch_size:
            base = sample_scene(r, "source")
            o = base.objects[0]
            for shape in r.sample(SHAPES, min(self.group_size, len(SHAPES))):
                out.append(sample_scene(r, "source", shape=shape, colour=o.colour, texture=o.texture,
                                        background=base.background, size=o.size, count=base.count))
        return out[:self.batch_size]

    def batch(self, step: int):
        r = random.Random(f"{self.seed}:{step}")
        scenes = self.scenes(r)
        bare = self.bare_rate(step)
        texts = [self.with_extra(caption(s, r, rare_rate=self.rare_rate, bare_rate=bare), s, r) for s in scenes]
        # the world renders at 64 px; resizing to the model's size matches its preprocess
        tf = clip_test_transform(self.image_size)  # the engine's test transform, CLIP mean/std
        images = torch.stack([tf(render(s, 64)) for s in scenes])
        return images, self.tokenizer(texts), texts

    def __iter__(self):
        for step in range(self.steps):
            images, tokens, _ = self.batch(step)
            yield images, tokens


def save_checkpoint(model, cfg: Dict, image_size: int, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    with atomic.atomic_path(out / "open_clip_model.safetensors") as tmp:
        save_file(state, tmp)
    atomic.write_json(out / "open_clip_config.json",
                      {"model_cfg": cfg, "preprocess_cfg": preprocess_config(image_size)})


def training_backbone(model, tokenizer, image_size: int) -> Backbone:
    """The model being pretrained, seen as a `Backbone` (for the zero-shot monitor only)."""
    return Backbone(model=model, tokenizer=tokenizer, preprocess=clip_test_transform(image_size),
                    train_preprocess=None, device=torch.device("cpu"), precision="fp32",
                    identity={"name": "pretraining", "pretrained": None})


def evaluate_source(path: Path, n: int, seed: int) -> Dict[str, float]:
    """Zero-shot shape accuracy on n fresh source images, plain and with the 16-x prefix."""
    return source_accuracy(load_toyclip(path), n, seed, SOURCE_TEMPLATE)


def run(args) -> int:
    import open_clip
    from open_clip.loss import ClipLoss
    from open_clip.model import CLIP
    from tqdm import tqdm

    if args.vision_width is None:
        args.vision_width = 16 if args.vision_arch == "resnet" else 64
    if args.vision_layers is None:
        args.vision_layers = 1 if args.vision_arch == "resnet" else 4
    if args.tiny:
        args.steps = min(args.steps, 3)
        args.batch_size = min(args.batch_size, 8)
        args.vision_width, args.vision_layers, args.patch_size = (8 if args.vision_arch == "resnet" else 32), 1, 16
        args.image_size = 32
        args.text_width, args.text_layers, args.embed_dim = 32, 1, 16
        args.warmup = 1
        args.eval_samples = min(args.eval_samples, 20)
    for name in ("steps", "batch_size", "threads", "context_length"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.vision_arch == "resnet" and args.image_size % 32:
        raise SystemExit(f"--image-size must be a multiple of 32 for the resnet tower, got {args.image_size}")
    if args.context_length < 30:
        raise SystemExit("--context-length must be >= 30: CoOp-style prompts need 16 prefix words + template")
    if not 0.0 <= args.extra_rate <= 1.0:
        raise SystemExit(f"--extra-rate must be in [0, 1], got {args.extra_rate}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    out = Path(args.out)
    cfg = model_config(args)
    model = CLIP(**cfg)  # the class open_clip.create_model builds for this config
    model.train()
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=args.context_length)  # CLIP BPE

    exclude = lambda n, p: p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    decay = [p for n, p in model.named_parameters() if not exclude(n, p)]
    no_decay = [p for n, p in model.named_parameters() if exclude(n, p)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)

    from pini_core.experiment import Recipe
    from pini_core.trainer import lr_at as schedule_lr

    # the trainer's schedule code: linear warm-up, then cosine per step (one "epoch" = one step)
    schedule = Recipe(schedule="warmup_cosine_step", epochs=args.steps, lr=args.lr, warmup_epochs=args.warmup)
    lr_at = lambda step: schedule_lr(schedule, step)  # noqa: E731

    data = CaptionedBatches(args.seed, args.steps, args.batch_size, tokenizer, args.context_length,
                            args.extra_rate, args.rare_rate, args.image_size, args.group_size,
                            args.label_warmup)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=0 if args.tiny else 1,
                                         prefetch_factor=None if args.tiny else 4)
    loss_fn = ClipLoss()
    monitor = source_shape_set(300, seed=args.seed + 20_000) if args.eval_every else []
    curve: List[Dict[str, float]] = []
    t0 = time.time()
    cpu0 = time.process_time()
    losses: List[float] = []
    bar = tqdm(loader, total=args.steps, desc="pretrain toy CLIP", unit="step")
    for step, (images, tokens) in enumerate(bar):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        img_f, txt_f, scale = model(images, tokens)
        loss = loss_fn(img_f, txt_f, scale)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {step}; lower --lr and rerun.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", lr=f"{lr_at(step):.1e}")
        if args.eval_every and ((step + 1) % args.eval_every == 0 or step + 1 == args.steps):
            model.eval()
            acc = zero_shot_accuracy(training_backbone(model, tokenizer, args.image_size), monitor, SHAPES,
                                     SOURCE_TEMPLATE)
            model.train()
            curve.append({"step": step + 1, "loss": round(float(np.mean(losses[-10:])), 4),
                          "source_acc_300": round(acc, 2), "seconds": round(time.time() - t0, 1)})
            bar.write(f"step {step + 1}: loss {curve[-1]['loss']:.3f}, zero-shot source shape acc {acc:.1f}% "
                      f"(300 held-out images), {curve[-1]['seconds']:.0f}s")
    train_seconds = time.time() - t0
    cpu_seconds = time.process_time() - cpu0  # this process only (the renderer is a second one)

    save_checkpoint(model, cfg, args.image_size, out)
    meta = {
        "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size,
        "images_seen": args.steps * args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
        "warmup": args.warmup, "group_size": args.group_size, "label_warmup": args.label_warmup, "extra_rate": args.extra_rate, "rare_rate": args.rare_rate,
        "context_length": args.context_length, "threads": args.threads,
        "train_seconds": round(train_seconds, 1), "cpu_seconds_main_process": round(cpu_seconds, 1),
        "final_loss_mean_last_50": round(float(np.mean(losses[-50:])), 4),
        "learning_curve": curve,
        "model_cfg": cfg,
        "command": _command_line(),
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__,
                     "python": platform.python_version()},
        "tokenizer": "open_clip SimpleTokenizer (CLIP BPE, vocab 49408)",
        "weights_dtype_on_disk": "float16",
    }
    if args.eval_samples:
        meta["zero_shot_source"] = evaluate_source(out, args.eval_samples, seed=args.seed + 10_000)
        print(f"zero-shot source shape accuracy: {meta['zero_shot_source']['accuracy']:.1f}% "
              f"(with 16-x prefix {meta['zero_shot_source']['accuracy_with_16x_prefix']:.1f}%)")
    if args.eval_tasks:
        meta["zero_shot_tasks"] = zero_shot_table(load_toyclip(out))
    atomic.write_json(out / "pini_meta.json", meta)
    size_mb = (out / "open_clip_model.safetensors").stat().st_size / 2**20
    print(f"saved {out} ({size_mb:.2f} MiB weights) in {train_seconds / 60:.1f} min of training")
    return 0


def _command_line() -> str:
    """The command that was run, as a user would type it (`python -m pini_core pretrain ...`)."""
    prog = sys.argv[0].replace(os.sep, "/")
    if prog.endswith("pini_core/__main__.py"):
        return " ".join(["python -m pini_core"] + sys.argv[1:])
    return " ".join(["python"] + sys.argv)
