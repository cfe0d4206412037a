"""Example images for the app, chosen by one documented rule (not by hand-picking successes).

    python -m pini_core examples            # regenerates assets/examples/ (+ examples.json)

THE RULE (`pick_by_rule`, used for every tab that compares "without" and "with" noise):
walk the held-out items in their fixed order (seeded renders the generator never trained on)
and record each item's outcome without noise (zero-shot CLIP / the MLLM without MuNG) and
with the learned noise (PiNI with eps = 0 / MuNG with the tab's seed-0 draw):

    fix         wrong without noise, right with it
    break       right without noise, wrong with it
    both_right  right both ways
    both_wrong  wrong both ways

Take the first 2 fixes, the first 2 breaks, the first both_right and the first both_wrong
(fewer when the held-out items have fewer), shown in their held-out order. The default example
(what the tab opens on) is the first fix, or, when the noise fixes nothing, the first
both_right. The counts over ALL the held-out items are recorded next to the chosen ones, so a
viewer sees both the few examples and how often each outcome happens.

Files (`write_examples`):
- the default toy task (the task of the shipped feature-level generator): the chosen renders
  `<out>/<task>/<held-out index>_<true class>.png`;
- the other toy tasks (no shipped generator, nothing to compare): the first `per_task` test
  renders, which cover distinct classes, `<out>/<task>/<index>_<true class>.png`;
- MuNG (when checkpoints/mung/ holds the toy MLLM and its generator): the chosen
  (image, question) pairs `<out>/mung/<held-out index>.png`;
- `<out>/examples.json`: the rule, the held-out set, true labels and every outcome.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import atomic
from .scene import SHAPES
from .tasks import TASK_DOMAINS, load_task

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "assets" / "examples"
SHIPPED_PINI = REPO / "checkpoints" / "pini"
SHIPPED_MUNG = REPO / "checkpoints" / "mung"
JSON_NAME = "examples.json"
OUTCOMES = ("fix", "break", "both_right", "both_wrong")
TAKE = {"fix": 2, "break": 2, "both_right": 1, "both_wrong": 1}
HELD_OUT_CLIP = 300  # the whole test split of a toy task (30 per class, seed of the generator)
HELD_OUT_MUNG = 120  # make_vqa(120, "shifted", seed=pini_core.mung.cli.TEST_SEED)
MUNG_SEED = 0  # the seed of eps the MuNG tab opens with

RULE = ("From the held-out items in their fixed order, take the first 2 where the noise fixes the "
        "prediction (wrong without, right with), the first 2 where it breaks it (right without, wrong "
        "with), the first right both ways and the first wrong both ways; the default is the first fix "
        "(the first right both ways when nothing is fixed). Counts over all held-out items are "
        "recorded too.")


def outcome(true, without, with_noise) -> str:
    a, b = without == true, with_noise == true
    return "both_right" if a and b else "fix" if b else "break" if a else "both_wrong"


def pick_by_rule(outcomes: Sequence[str], take: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
    """THE rule (module docstring): `outcomes[i]` is item i's outcome, in held-out order.
    Returns {"chosen": sorted indices, "default": index or None, "counts": over all items,
    "chosen_counts": over the chosen ones}."""
    take = dict(TAKE if take is None else take)
    chosen: List[int] = []
    for kind, n in take.items():
        chosen += [i for i, o in enumerate(outcomes) if o == kind][:n]
    chosen.sort()
    first = {k: next((i for i, o in enumerate(outcomes) if o == k), None) for k in OUTCOMES}
    default = first["fix"] if first["fix"] is not None else first["both_right"]
    if default is None and chosen:
        default = chosen[0]
    count = lambda idx: {k: sum(1 for i in idx if outcomes[i] == k) for k in OUTCOMES}  # noqa: E731
    return {"chosen": chosen, "default": default, "counts": count(range(len(outcomes))),
            "chosen_counts": count(chosen)}


def summary_line(counts: Dict[str, int], n: int, what: str = "PiNI") -> str:
    """'PiNI fixes 2, breaks 2 of these 6' (counts as from `pick_by_rule`)."""
    return f"{what} fixes {counts.get('fix', 0)}, breaks {counts.get('break', 0)} of these {n}"


# ----- CLIP: zero-shot vs PiNI (eps = 0) on a toy task's held-out renders ----------------------
def clip_predictions(backbone, method, images, batch_size: int = 64) -> Dict[str, List[int]]:
    """Class indices predicted by zero-shot CLIP (the task's template) and by `method` in mean
    mode (eps = 0), exactly as the app's Classify tab computes them (pixels through the
    backbone's test transform)."""
    import torch

    from ..baselines.zeroshot import ZeroShotCLIP
    from ..features import test_transform

    zs = ZeroShotCLIP(backbone, list(method.classnames), method.template)
    tf = test_transform(backbone)
    out: Dict[str, List[int]] = {"zero_shot": [], "pini_mean": []}
    method.eval()
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            px = torch.stack([tf(im) for im in images[s:s + batch_size]])
            out["zero_shot"] += zs.predict({"pixels": px}).argmax(-1).cpu().tolist()
            out["pini_mean"] += method.predict({"pixels": px}, mode="mean").argmax(-1).cpu().tolist()
    return out


def default_generator_folder() -> Optional[Path]:
    """The shipped feature-level generator the app's tabs open on (see demo/shipped.py)."""
    if not SHIPPED_PINI.is_dir():
        return None
    found = []
    for p in sorted(SHIPPED_PINI.iterdir()):
        cfg = p / "pini_config.json"
        if cfg.is_file():
            noise = json.loads(cfg.read_text()).get("noise", {})
            if noise.get("visual_location") != "image":
                found.append(p)
    return found[0] if found else None


def curate_clip(backbone, method, task: str, seed: int = 1, n: int = HELD_OUT_CLIP) -> Dict[str, Any]:
    """Apply the rule to the first `n` test renders of `task` (held out from training)."""
    splits = load_task(task, seed=seed)
    items = list(splits.test[:n])
    preds = clip_predictions(backbone, method, [im for im, _ in items])
    names = list(method.classnames)
    outs = [outcome(y, z, p) for (_, y), z, p in zip(items, preds["zero_shot"], preds["pini_mean"])]
    picked = pick_by_rule(outs)
    rows = [{"index": i, "true": names[items[i][1]], "zero_shot": names[preds["zero_shot"][i]],
             "pini_mean": names[preds["pini_mean"][i]], "outcome": outs[i]} for i in picked["chosen"]]
    acc = lambda key: 100.0 * sum(int(p == y) for (_, y), p in zip(items, preds[key])) / len(items)  # noqa: E731
    return {"held_out": {"task": task, "split": "test", "seed": seed, "n": len(items)},
            "population": {"zero_shot_accuracy": acc("zero_shot"), "pini_mean_accuracy": acc("pini_mean"),
                           **picked["counts"]},
            "chosen_counts": picked["chosen_counts"], "default_index": picked["default"], "rows": rows,
            "images": {i: items[i][0] for i in picked["chosen"]}}


# ----- MuNG: the toy MLLM without vs with its generator ----------------------------------------
def mung_outcomes(bundle, injector, items, seed: int = MUNG_SEED) -> List[Dict[str, Any]]:
    """Answer each item without noise and with MuNG noise (eps seeded per item with `seed`,
    one item at a time, as the MuNG tab's Explain does)."""
    from ..mung.cli import correct

    rows = []
    for i, it in enumerate(items):
        with injector.settings(enabled=False):
            before = bundle.answer([it.image], [it.question])[0]
        with injector.settings(seed=seed):
            after = bundle.answer([it.image], [it.question], injector=injector)[0]
        rows.append({"index": i, "question": it.question, "true": it.answer, "kind": it.kind,
                     "without_noise": before, "with_noise": after,
                     "outcome": outcome(True, correct(before, it.answer), correct(after, it.answer))})
    return rows


def load_mung(folder: Path = SHIPPED_MUNG):
    """(bundle, injector) of the shipped toy MLLM + MuNG generator, or None when absent."""
    from ..mung.checkpoint import is_generator, load_generator
    from ..mung.hf_host import load_host
    from ..mung.injector import MuNGInjector

    if not ((folder / "host").is_dir() and is_generator(folder / "generator")):
        return None
    bundle = load_host(folder / "host")
    gen = load_generator(folder / "generator", host=bundle.model)
    return bundle, MuNGInjector(bundle.model, gen).attach()


def curate_mung(bundle, injector, n: int = HELD_OUT_MUNG) -> Dict[str, Any]:
    from ..mung.cli import TEST_SEED
    from ..mung.vqa_data import make_vqa

    items = make_vqa(n, "shifted", seed=TEST_SEED)
    rows = mung_outcomes(bundle, injector, items)
    picked = pick_by_rule([r["outcome"] for r in rows])
    acc = lambda key: 100.0 * sum(r["outcome"] in key for r in rows) / len(rows)  # noqa: E731
    return {"held_out": {"question_set": "shifted", "seed": TEST_SEED, "n": len(rows), "noise_seed": MUNG_SEED},
            "population": {"accuracy_without_noise": acc(("break", "both_right")),
                           "accuracy_with_noise": acc(("fix", "both_right")), **picked["counts"]},
            "chosen_counts": picked["chosen_counts"], "default_index": picked["default"],
            "rows": [rows[i] for i in picked["chosen"]], "images": {i: items[i].image for i in picked["chosen"]}}


# ----- writing the assets ----------------------------------------------------------------------
def _save(img, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _clear_pngs(folder: Path) -> None:
    if folder.is_dir():
        for p in folder.glob("*.png"):
            p.unlink()


def write_examples(out: str | Path = DEFAULT_OUT, per_task: int = 6, seed: int = 1, tasks=None,
                   backbone_loader: Optional[Callable[[], Any]] = None, mung: Optional[bool] = None,
                   log: Callable[[str], None] = lambda s: None) -> Dict[str, List[Path]]:
    """Write the example images and examples.json (see the module docstring; entries of tasks
    not written this time are kept). mung: also the MuNG examples (default: when all tasks are
    written). Returns {task or "mung": the written PNG paths}."""
    if per_task < 1:
        raise ValueError(f"per_task must be >= 1, got {per_task}")
    out = Path(out)
    mung = tasks is None if mung is None else mung
    record: Dict[str, Any] = read_examples(out)
    record.update({"rule": RULE, "command": "python -m pini_core examples"})
    record.setdefault("tasks", {})
    written: Dict[str, List[Path]] = {}
    gen_folder = default_generator_folder()
    default_task = None
    if gen_folder is not None:
        from ..checkpoint import load_pini, read_config

        cfg = read_config(gen_folder)
        default_task = cfg.get("data", {}).get("dataset")
    for task in tasks or TASK_DOMAINS:
        folder = out / task
        if task == default_task and gen_folder is not None:
            if backbone_loader is None:
                from ..backbone import load_backbone

                backbone_loader = lambda: load_backbone("embedded", device="cpu")  # noqa: E731
            bb = backbone_loader()
            gseed = int(cfg.get("data", {}).get("seed", seed))
            model = load_pini(gen_folder, bb)
            res = curate_clip(bb, model, task, seed=gseed)
            _clear_pngs(folder)
            rows = []
            for r in res["rows"]:
                name = f"{r['index']:03d}_{r['true']}"
                _save(res["images"][r["index"]], folder / f"{name}.png")
                rows.append({"name": f"{task}/{name}", "file": f"{task}/{name}.png", **r})
            record["tasks"][task] = {
                "rule": "pick_by_rule", "generator": f"checkpoints/pini/{gen_folder.name}",
                "generator_sha256": cfg.get("weights_sha256"), "backbone_fingerprint": cfg.get("backbone", {}).get(
                    "fingerprint"), "held_out": res["held_out"], "population": res["population"],
                "chosen_counts": res["chosen_counts"],
                "default": next((x["name"] for x in rows if x["index"] == res["default_index"]), None),
                "examples": rows}
            written[task] = [out / r["file"] for r in rows]
            log(f"{task}: {len(rows)} examples by the rule ({summary_line(res['chosen_counts'], len(rows))}; "
                f"on all {res['held_out']['n']} held-out renders: zero-shot "
                f"{res['population']['zero_shot_accuracy']:.1f}%, PiNI {res['population']['pini_mean_accuracy']:.1f}%)")
            continue
        # no generator to compare with: the first test renders (distinct classes first)
        splits = load_task(task, seed=seed, train_per_class=1, val_per_class=1,
                           test_per_class=-(-per_task // len(SHAPES)))
        _clear_pngs(folder)
        rows = []
        for i, (img, label) in enumerate(splits.test[:per_task]):
            name = f"{i:02d}_{splits.classnames[label]}"
            _save(img, folder / f"{name}.png")
            rows.append({"name": f"{task}/{name}", "file": f"{task}/{name}.png", "index": i,
                         "true": splits.classnames[label]})
        record["tasks"][task] = {"rule": f"the first {per_task} test renders (seed {seed})",
                                 "held_out": {"task": task, "split": "test", "seed": seed, "n": per_task},
                                 "default": rows[0]["name"], "examples": rows}
        written[task] = [out / r["file"] for r in rows]
        log(f"{task}: {len(rows)} images in {folder}")
    if mung:
        loaded = load_mung()
        if loaded is not None:
            res = curate_mung(*loaded)
            folder = out / "mung"
            _clear_pngs(folder)
            rows = []
            for r in res["rows"]:
                name = f"{r['index']:03d}"
                _save(res["images"][r["index"]], folder / f"{name}.png")
                rows.append({"name": f"{r['index'] + 1}: {r['question']}", "file": f"mung/{name}.png", **r})
            record["mung"] = {"rule": "pick_by_rule", "host": "checkpoints/mung/host",
                              "generator": "checkpoints/mung/generator", "held_out": res["held_out"],
                              "population": res["population"], "chosen_counts": res["chosen_counts"],
                              "default": next((x["name"] for x in rows if x["index"] == res["default_index"]),
                                              None), "examples": rows}
            written["mung"] = [out / r["file"] for r in rows]
            log(f"mung: {len(rows)} examples by the rule ({summary_line(res['chosen_counts'], len(rows), 'MuNG')}; "
                f"on all {res['held_out']['n']} held-out questions: without noise "
                f"{res['population']['accuracy_without_noise']:.1f}%, with {res['population']['accuracy_with_noise']:.1f}%)")
    out.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out / JSON_NAME) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n")
    return written


def read_examples(out: str | Path = DEFAULT_OUT) -> Dict[str, Any]:
    """examples.json as written by `write_examples` ({} when absent or unreadable)."""
    try:
        return json.loads((Path(out) / JSON_NAME).read_text())
    except (OSError, ValueError):
        return {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Render the app's example images by the documented rule (see "
                          "pini_core/world/examples.py) into a folder, with examples.json.")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder")
    parser.add_argument("--per-task", type=int, default=6, help="images per task without a shipped generator")
    parser.add_argument("--seed", type=int, default=1, help="task seed (as in get_dataset(name, seed=...))")
    parser.add_argument("--tasks", nargs="*", choices=list(TASK_DOMAINS), help="only these tasks")
    parser.add_argument("--no-mung", action="store_true", help="skip the MuNG examples (default: written "
                        "with all tasks)")


def run(args) -> int:
    write_examples(args.out, args.per_task, args.seed, args.tasks, mung=False if args.no_mung else None, log=print)
    return 0
