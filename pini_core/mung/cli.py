"""`python -m pini_core mung {train,answer,eval}`: MuNG on the toy MLLM (or a compatible host folder).

Examples
  # 1) train the embedded toy MLLM itself from scratch (the frozen "pretrained host"; ~10 min CPU)
  python -m pini_core mung train --stage host --out checkpoints/mung/host
  # 2) train a MuNG generator on the frozen host, on the shifted question set
  python -m pini_core mung train --stage generator --host checkpoints/mung/host --data toy-shifted \\
      --out checkpoints/mung/generator
  # 3) answer a question with and without the noise
  python -m pini_core mung answer --image cat.png --question "what colour is the star ?"
  # 4) accuracy without / with MuNG on held-out toy questions
  python -m pini_core mung eval --data toy-shifted
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from .checkpoint import load_generator, save_generator
from .config import MuNGConfig, mung_recipe
from .generator import MuNGGenerator
from .injector import MuNGInjector
from .hf_host import load_host
from .hosts import inspect_host
from .toy_mllm import DEFAULT_DIR, new_toy_mllm, save_toy_mllm
from .vqa_data import QUESTION_SETS, VQAItem, make_vqa

DEFAULT_GENERATOR = DEFAULT_DIR.parent / "generator"
TEST_SEED = 10_000          # held-out items use seeds far from the training seeds


def load_items(spec: str, n: int, seed: int) -> list[VQAItem]:
    """"toy-source" / "toy-shifted" (generated), or a JSONL file of {"image", "question", "answer"}."""
    if spec.startswith("toy-"):
        qset = spec[4:]
        if qset not in QUESTION_SETS:
            raise SystemExit(f"unknown toy question set {spec!r}; use toy-source or toy-shifted")
        return make_vqa(n, qset, seed=seed)
    path = Path(spec)
    if not path.is_file():
        raise SystemExit(f"--data {spec}: no such file (give toy-source, toy-shifted or a .jsonl file)")
    from PIL import Image
    items = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            img = Image.open(path.parent / d["image"]).convert("RGB")
            items.append(VQAItem(img, d["question"], d["answer"], d.get("kind", "jsonl")))
        except (KeyError, json.JSONDecodeError, OSError) as e:
            raise SystemExit(f"{path}:{i + 1}: bad line ({e}); expected "
                             '{"image": "relative/path.png", "question": "...", "answer": "..."}')
    if not items:
        raise SystemExit(f"{path} holds no items")
    return items[:n] if n else items


def correct(pred: str, answer: str) -> bool:
    """The first word of the generated answer (punctuation stripped) is the expected word."""
    words = pred.lower().replace(".", " ").replace(",", " ").split()
    return bool(words) and words[0] == answer.lower()


def accuracy(bundle, items, injector=None, seed=0) -> float:
    imgs, qs = [x.image for x in items], [x.question for x in items]
    if injector is None:
        preds = bundle.answer(imgs, qs)
    else:
        with injector.settings(seed=seed):
            preds = bundle.answer(imgs, qs, injector=injector)
    return sum(correct(p, x.answer) for p, x in zip(preds, items)) / len(items)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mung_command", required=True, metavar="{train,answer,eval,convert}")
    t = sub.add_parser("train", help="train the toy host (--stage host) or a MuNG generator (--stage generator)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--stage", choices=["host", "generator"], default="generator",
                   help="host: train the whole toy MLLM from scratch; generator: train MuNG on a frozen host")
    t.add_argument("--host", default=str(DEFAULT_DIR),
                   help="stage generator: the toy MLLM folder, or a local Hugging Face LLaVA / Qwen2-VL / "
                        "Qwen2.5-VL folder with its processor")
    t.add_argument("--data", default=None, help="toy-source | toy-shifted | file.jsonl "
                   "(default: toy-source for the host, toy-shifted for the generator)")
    t.add_argument("--train-items", type=int, default=None, help="number of training items (toy data)")
    t.add_argument("--eval-items", type=int, default=400, help="held-out toy items for the accuracy report")
    t.add_argument("--steps", type=int, default=None,
                   help="optimisation steps (default: 600 end-to-end host steps / 500 generator steps)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-3 for both stages on the toy; the paper used "
                   "5e-4 (Qwen) / 2e-4 (LLaVA) on 3B-7B hosts)")
    t.add_argument("--vision-steps", type=int, default=1200,
                   help="stage host: first train the vision tower alone for this many steps with auxiliary "
                        "shape/colour/count classifiers (training scaffolding, not shipped)")
    t.add_argument("--vision-lr", type=float, default=3e-3, help="stage host: learning rate of --vision-steps")
    t.add_argument("--aux-weight", type=float, default=0.5,
                   help="stage host: keep the auxiliary scene loss with this weight during end-to-end training")
    t.add_argument("--heads", type=int, default=8, help="generator attention heads")
    t.add_argument("--sigma", choices=["abs", "exp"], default="abs", help="sigma = |Linear(o)| or exp(Linear(o))")
    t.add_argument("--attn-scale", choices=["head", "model", "none"], default="head",
                   help="1/sqrt(d_head) (standard), 1/sqrt(d_model) (authors' code) or none")
    t.add_argument("--init", choices=["small", "default"], default="small",
                   help="small: zero mean / tiny std at start; default: PyTorch Linear init (authors' code)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--cpu", action="store_true", help="train on CPU even when a GPU is present")
    t.add_argument("--out", default=None, help="output: host folder, or generator checkpoint folder")

    a = sub.add_parser("answer", help="answer a question about an image, with and without MuNG noise",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("--image", required=True, help="image file (RGB; resized to the host's input size)")
    a.add_argument("--question", required=True)
    a.add_argument("--host", default=str(DEFAULT_DIR))
    a.add_argument("--generator", default=str(DEFAULT_GENERATOR), help="generator checkpoint folder")
    a.add_argument("--mode", choices=["sample", "mean"], default="sample",
                   help="sample: draw eps (as at training); mean: eps = 0")
    a.add_argument("--seed", type=int, default=0, help="seed of the noise draw")

    e = sub.add_parser("eval", help="accuracy of the host without / with MuNG on held-out toy questions",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("--data", default="toy-shifted", help="toy-source | toy-shifted | file.jsonl")
    e.add_argument("--items", type=int, default=400)
    e.add_argument("--host", default=str(DEFAULT_DIR))
    e.add_argument("--generator", default=str(DEFAULT_GENERATOR))
    e.add_argument("--seed", type=int, default=0)

    c = sub.add_parser("convert", help="rewrite a generator saved as a file pair (NAME.safetensors + NAME.json, "
                                       "before mung-generator/1) as a checkpoint folder; weights unchanged",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--old", required=True, help="the old generator path (without suffix)")
    c.add_argument("--out", required=True, help="the checkpoint folder to write")


def _run_train(args) -> int:
    from .train import NonFiniteLoss, make_accelerator, train_generator, train_host
    if args.threads:
        torch.set_num_threads(args.threads)
    argv = getattr(args, "argv", None) or sys.argv[1:]
    command = "python -m pini_core mung " + " ".join(shlex.quote(x) for x in argv[argv.index("train"):]) \
        if "train" in argv else None
    acc = make_accelerator(cpu=args.cpu)
    if args.stage == "host":
        data = args.data or "toy-source"
        n, steps, lr = args.train_items or 6000, args.steps or 600, args.lr or 2e-3
        out = Path(args.out or DEFAULT_DIR)
        items = load_items(data, n, args.seed)
        bundle = new_toy_mllm(seed=args.seed)
        try:
            res = train_host(bundle, items, steps=steps, batch_size=args.batch_size, lr=lr, seed=args.seed,
                             accelerator=acc, vision_steps=args.vision_steps, vision_lr=args.vision_lr,
                             aux_weight=args.aux_weight)
        except NonFiniteLoss as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        test = load_items(data, args.eval_items, TEST_SEED) if data.startswith("toy-") else []
        metrics = {"train_seconds": round(res.seconds, 1), "steps": res.steps,
                   "vision_steps": getattr(res, "vision_steps", 0),
                   "final_loss": res.losses[-1] if res.losses else None}
        if test:
            metrics[f"accuracy_{data}"] = accuracy(bundle, test)
            if data == "toy-source":
                metrics["accuracy_toy-shifted"] = accuracy(bundle, load_items("toy-shifted", args.eval_items, TEST_SEED))
        meta = {"command": command, "data": data, "train_items": n, "lr": lr, "batch_size": args.batch_size,
                "seed": args.seed, "interrupted": res.interrupted, "metrics": metrics,
                "num_parameters": sum(p.numel() for p in bundle.model.parameters())}
        save_toy_mllm(bundle, out, meta)
        print(json.dumps(meta, indent=2))
        return 130 if res.interrupted else 0

    data = args.data or "toy-shifted"
    n = args.train_items or 3000
    # the recipe (MUNG_RECIPES["project"]: lr 2e-3, 500 steps) with the flags given on top
    recipe = mung_recipe("project", **{k: v for k, v in dict(max_steps=args.steps, lr=args.lr,
                                                              batch_size=args.batch_size).items() if v})
    out = Path(args.out or DEFAULT_GENERATOR)
    bundle = load_host(args.host, device=acc.device)
    spec = inspect_host(bundle.model)
    cfg = MuNGConfig(visual_dim=spec.hidden_size, text_dim=spec.text_dim, num_heads=args.heads,
                     sigma=args.sigma, attn_scale=args.attn_scale, init=args.init, host_family=spec.family)
    torch.manual_seed(args.seed)
    gen = MuNGGenerator(cfg)
    items = load_items(data, n, args.seed)
    try:
        res = train_generator(bundle, gen, items, seed=args.seed, accelerator=acc, recipe=recipe)
    except NonFiniteLoss as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    metrics = {"train_seconds": round(res.seconds, 1), "steps": res.steps, "final_loss": res.losses[-1]}
    if data.startswith("toy-"):
        test = load_items(data, args.eval_items, TEST_SEED)
        gen.to(bundle.device)
        metrics[f"accuracy_{data}_without_mung"] = accuracy(bundle, test)
        inj = MuNGInjector(bundle.model, gen).attach()
        metrics[f"accuracy_{data}_with_mung"] = accuracy(bundle, test, inj, seed=args.seed)
        with inj.settings(mode="mean"):
            metrics[f"accuracy_{data}_with_mung_eps0"] = accuracy(bundle, test, inj)
        inj.detach()
    meta = {"command": command, "host": str(args.host), "data": data, "train_items": n, "lr": recipe.lr,
            "batch_size": recipe.batch_size, "seed": args.seed, "interrupted": res.interrupted, "metrics": metrics,
            "recipe": recipe.to_dict()}
    save_generator(gen, out, meta)
    print(json.dumps({**meta, "num_parameters": gen.num_parameters()}, indent=2))
    return 130 if res.interrupted else 0


def run(args) -> int:
    if args.mung_command == "train":
        return _run_train(args)
    if args.mung_command == "answer":
        from PIL import Image, UnidentifiedImageError
        try:
            img = Image.open(args.image).convert("RGB")
        except (FileNotFoundError, UnidentifiedImageError) as e:
            print(f"error: cannot read image {args.image}: {e}", file=sys.stderr)
            return 2
        bundle = load_host(args.host)
        gen = load_generator(args.generator, host=bundle.model)
        plain = bundle.answer([img], [args.question])[0]
        inj = MuNGInjector(bundle.model, gen, mode=args.mode).attach()
        with inj.settings(seed=args.seed):
            noisy = bundle.answer([img], [args.question], injector=inj)[0]
        inj.detach()
        print(json.dumps({"question": args.question, "answer_without_mung": plain, "answer_with_mung": noisy}))
        return 0
    if args.mung_command == "convert":
        from .checkpoint import convert_legacy, read_generator

        out = convert_legacy(args.old, args.out)
        doc, _ = read_generator(out)
        print(json.dumps({"converted": str(args.old), "to": str(out), "format": doc["format"],
                          "weights_sha256": doc["weights_sha256"], "config_sha256": doc["config_sha256"]}))
        return 0
    if args.mung_command == "eval":
        bundle = load_host(args.host)
        gen = load_generator(args.generator, host=bundle.model)
        items = load_items(args.data, args.items, TEST_SEED)
        inj = MuNGInjector(bundle.model, gen)
        res = {"data": args.data, "items": len(items), "without_mung": accuracy(bundle, items)}
        inj.attach()
        res["with_mung"] = accuracy(bundle, items, inj, seed=args.seed)
        with inj.settings(mode="mean"):
            res["with_mung_eps0"] = accuracy(bundle, items, inj)
        inj.detach()
        print(json.dumps(res))
        return 0
    raise SystemExit(f"unknown mung command {args.mung_command!r}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pini_core mung", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run(args)
