"""The benchmark harness: methods x datasets x shots x seeds x backbones, one cell at
a time, each finished cell appended to a JSON-lines file (see `results.py`).

Resumable: cells already in the file (same method, dataset, shots, seed, backbone and
settings hash) are skipped, so a crashed or stopped run continues where it stopped.
Protocol (CoOp): k-shot train and min(k, 4)-shot val sampled per seed
(`fewshot_splits`), the model of the LAST epoch is evaluated on the full test set
(never selected on test), hyper-parameters that the reference code searches (linear
probe's C, Tip-Adapter's alpha/beta) are searched on the few-shot val split.
Domain generalisation (paper Table 3): when a dataset has `splits.targets`, every
trained cell is also evaluated on each target; the record keeps them under "targets".
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from tqdm.auto import tqdm

from pini_core.baselines import recipes
from .results import ResultsFile, config_hash

PROTOCOL_VERSION = 1

# The "quick" profile (the miniature benchmark on the embedded toy CLIP, 2 CPU cores):
# every reference schedule with its epochs multiplied by QUICK_FACTOR (rounded up), e.g.
# CoOp 25/50/50/100/100 instead of 50/100/100/200/200, PiNI 100 instead of 200,
# Tip-Adapter-F 10 instead of 20. Everything else in a recipe is unchanged.
QUICK_FACTOR = 0.5

PROFILES = ("paper", "quick")


class BenchError(RuntimeError):
    """A benchmark setting cannot run; the message says what to change."""


class CellInterrupted(KeyboardInterrupt):
    """Training of a cell was interrupted: the cell is not recorded."""


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone as the CLI names it: ``[LABEL=]NAME[:PRETRAINED]``.

    ``ViT-B-16:openai``; ``RN50:/w/rn50.pt``; ``embedded``; ``local-dir:/models/x``.
    LABEL is what results and tables call it; the paper's numbers are matched on labels
    such as ``ViT-B-16:openai``, so give a local copy of OpenAI's weights that label:
    ``ViT-B-16:openai=ViT-B-16:/w/ViT-B-16.pt``."""

    label: str
    name: str
    pretrained: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> "BackboneSpec":
        text = text.strip()
        if not text:
            raise BenchError("empty backbone name; e.g. --backbones ViT-B-16:openai or embedded")
        label, sep, rest = text.partition("=")
        if not sep:
            label, rest = text, text
        if not label or not rest:
            raise BenchError(f"cannot read backbone {text!r}; use LABEL=NAME:PRETRAINED or NAME:PRETRAINED")
        if rest.startswith(("local-dir:", "hf-hub:")) or ":" not in rest:
            return cls(label=label, name=rest, pretrained=None)
        name, _, pretrained = rest.partition(":")
        return cls(label=label, name=name, pretrained=pretrained or None)


@dataclass
class BenchConfig:
    methods: List[str]
    datasets: List[str]
    shots: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: List[int] = field(default_factory=lambda: [1, 2, 3])
    backbones: List[BackboneSpec] = field(default_factory=lambda: [BackboneSpec("embedded", "embedded")])
    out_dir: str = "results/bench"
    data_root: Optional[str] = None
    profile: str = "paper"
    epochs: Optional[int] = None  # override every trained method's epochs
    device: str = "auto"
    precision: str = "fp32"
    eval_mode: str = "mean"  # PiNI at test time: mean (eps = 0) | single | average
    zeroshot_ensemble: bool = False
    dg: bool = False  # load domain-generalisation targets (ImageNet variants)
    aug_views: int = 4  # augmented views cached per training image (shared trainer)
    augment: bool = True  # CoOp's train transform; off for 64-px toy tasks (it crops shapes to fragments)
    batch_size: int = 64  # feature extraction
    pini_noise: Dict = field(default_factory=dict)  # NoiseConfig overrides for PiNI (Table 1 variants)
    max_cells: Optional[int] = None  # stop after this many newly finished cells
    progress: bool = True

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in recipes.ALL_METHODS]
        if unknown:
            raise BenchError(f"unknown method(s) {unknown}; choose from {', '.join(recipes.ALL_METHODS)}")
        if not self.methods or not self.datasets or not self.backbones:
            raise BenchError("need at least one method, one dataset and one backbone")
        bad = [k for k in self.shots if not isinstance(k, int) or k < 1]
        if bad:
            raise BenchError(f"shots must be integers >= 1 (the CoOp protocol uses 1 2 4 8 16), got {bad}")
        if any(m != "zeroshot" for m in self.methods) and (not self.shots or not self.seeds):
            raise BenchError("trained methods need at least one shot count and one seed")
        if self.profile not in PROFILES:
            raise BenchError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if self.epochs is not None and self.epochs < 1:
            raise BenchError(f"--epochs must be >= 1, got {self.epochs}")
        if self.eval_mode not in ("mean", "single", "average"):
            raise BenchError(f"eval mode must be mean, single or average, got {self.eval_mode!r}")
        if self.pini_noise:
            from pini_core.noise import NoiseConfig, NoiseConfigError

            try:
                NoiseConfig.from_dict({**NoiseConfig().to_dict(), **self.pini_noise})
            except (NoiseConfigError, TypeError) as e:
                raise BenchError(f"--pini-noise: {e}") from None
        labels = [b.label for b in self.backbones]
        if len(set(labels)) != len(labels):
            raise BenchError(f"backbone labels must be unique, got {labels}")


@dataclass(frozen=True)
class Cell:
    backbone: str  # label
    dataset: str
    shots: int  # 0 for zero-shot
    seed: int  # 0 for zero-shot (no sampling, no training)
    method: str

    def describe(self) -> str:
        if self.method == "zeroshot":
            return f"{self.method} | {self.dataset} | {self.backbone}"
        return f"{self.method} | {self.dataset} | {self.shots}-shot | seed {self.seed} | {self.backbone}"


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Restricted(torch.nn.Module):
    """Evaluate a method on a subset of its classes (ImageNet-A/-R: 200 of ImageNet's 1000,
    as CoOp does): logits outside the subset are pushed to -1e9."""

    def __init__(self, method, class_idx: Sequence[int]):
        super().__init__()
        self.inner = method
        self.needs_pixels = getattr(method, "needs_pixels", False)
        self.class_idx = list(class_idx)

    def predict(self, inputs, mode: str = "mean", draws: int = 8, generator=None):
        kwargs = {"mode": mode}
        if "generator" in self.inner.predict.__code__.co_varnames:
            kwargs.update(draws=draws, generator=generator)
        logits = self.inner.predict(inputs, **kwargs)
        mask = torch.full_like(logits, -1e9)
        mask[:, self.class_idx] = 0.0
        return logits + mask


class Benchmark:
    """Plans and runs cells; `backbone_loader` / `dataset_loader` are injectable for tests."""

    def __init__(self, cfg: BenchConfig, *, backbone_loader: Optional[Callable] = None,
                 dataset_loader: Optional[Callable] = None):
        cfg.validate()
        self.cfg = cfg
        self.out_dir = Path(cfg.out_dir)
        self.results = ResultsFile(self.out_dir / "results.jsonl")
        self._load_backbone = backbone_loader or self._default_backbone_loader
        self._load_dataset = dataset_loader or self._default_dataset_loader
        self._bb_label: Optional[str] = None
        self._bb = None
        self._splits: Dict[str, object] = {}
        self._weights_ids: Dict[str, str] = {}
        self.stop_event = threading.Event()

    # ------------------------------------------------------------------ loading
    def _default_backbone_loader(self, spec: BackboneSpec):
        from pini_core.backbone import load_backbone

        return load_backbone(spec.name, spec.pretrained, device=self.cfg.device, precision=self.cfg.precision)

    def _default_dataset_loader(self, name: str):
        from pini_core.data.registry import get_dataset

        from .paper import canonical_dataset

        # ImageNet's variants are separate folders, attached on request; toy tasks always
        # carry their other domains as targets.
        kwargs = {"targets": True} if self.cfg.dg and canonical_dataset(name) == "imagenet" else {}
        return get_dataset(name, root=self.cfg.data_root, **kwargs)

    def backbone(self, label: str):
        if self._bb_label != label:
            spec = next(b for b in self.cfg.backbones if b.label == label)
            self._bb = None  # free the previous one first
            self._bb = self._load_backbone(spec)
            self._bb_label = label
        return self._bb

    def splits(self, dataset: str):
        if dataset not in self._splits:
            s = self._load_dataset(dataset)
            if not s.test:
                raise BenchError(f"dataset {dataset!r} has no test split; the benchmark reports test accuracy")
            self._splits[dataset] = s
        return self._splits[dataset]

    # ------------------------------------------------------------------ plan
    def method_settings(self, method: str, shots: int, dataset: str) -> Dict:
        """Everything that defines how a cell of `method` runs (hashed into the record key)."""
        r = dict(recipes.recipe(method, shots, dataset))
        if "epochs" in r:
            if self.cfg.epochs is not None:
                r["epochs"] = self.cfg.epochs
            elif self.cfg.profile == "quick":
                r["epochs"] = max(1, math.ceil(r["epochs"] * QUICK_FACTOR))
        s = {"method": method, "recipe": r, "protocol": PROTOCOL_VERSION, "dg": self.cfg.dg}
        if method in ("coop", "clip_adapter", "pini"):
            s["aug_views"] = self.cfg.aug_views
        if not self.cfg.augment and method not in ("zeroshot", "linear_probe"):
            s["augment"] = False  # only recorded when off, so earlier augmented cells keep their keys
        if method == "pini":
            from pini_core.noise import NoiseConfig

            s["noise"] = NoiseConfig.from_dict({**NoiseConfig().to_dict(), **self.cfg.pini_noise}).to_dict()
            s["eval_mode"] = self.cfg.eval_mode
        if method in ("zeroshot", "tip_adapter", "tip_adapter_f"):
            s["ensemble"] = self.cfg.zeroshot_ensemble
        return s

    def weights_id(self, label: str) -> str:
        """What the backbone's weights are, known without loading them (cached per label)."""
        if label not in self._weights_ids:
            spec = next(b for b in self.cfg.backbones if b.label == label)
            self._weights_ids[label] = weights_identity(spec)
        return self._weights_ids[label]

    def cell_settings(self, cell: Cell) -> Dict:
        """method settings + the identity of the backbone's weights: retrained or replaced
        weights under the same label make new cells, never a silent reuse."""
        return {**self.method_settings(cell.method, cell.shots, cell.dataset), "weights": self.weights_id(cell.backbone)}

    def cell_config(self, cell: Cell) -> str:
        return config_hash(self.cell_settings(cell))

    def plan(self) -> List[Cell]:
        cells: List[Cell] = []
        trained = [m for m in sorted(self.cfg.methods, key=recipes.ALL_METHODS.index) if m != "zeroshot"]
        for b in self.cfg.backbones:
            for d in self.cfg.datasets:
                if "zeroshot" in self.cfg.methods:
                    cells.append(Cell(b.label, d, 0, 0, "zeroshot"))
                for k in self.cfg.shots:
                    for s in self.cfg.seeds:
                        for m in trained:
                            cells.append(Cell(b.label, d, k, s, m))
        return cells

    def key_of(self, cell: Cell) -> tuple:
        return (cell.method, cell.dataset, cell.shots, cell.seed, cell.backbone, self.cell_config(cell))

    def pending(self) -> tuple[List[Cell], int]:
        done = self.results.done_keys()
        plan = self.plan()
        todo = [c for c in plan if self.key_of(c) not in done]
        return todo, len(plan) - len(todo)

    # ------------------------------------------------------------------ run
    def run(self) -> Dict:
        """Run every pending cell. Returns a summary; KeyboardInterrupt stops cleanly
        (finished cells are on disk; rerun the same command to resume)."""
        todo, n_done = self.pending()
        total = n_done + len(todo)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        t0, cpu0 = time.time(), time.process_time()
        finished, interrupted, stopped_at_limit = 0, False, False
        bar = tqdm(total=total, initial=n_done, unit="cell", desc="bench", disable=not self.cfg.progress,
                   dynamic_ncols=True)
        try:
            for cell in todo:
                if self.cfg.max_cells is not None and finished >= self.cfg.max_cells:
                    stopped_at_limit = True
                    break
                bar.set_postfix_str(cell.describe())
                try:
                    record = self.run_cell(cell)
                except Exception as e:
                    e.add_note(f"while running benchmark cell: {cell.describe()}")
                    raise
                self.results.append(record)
                finished += 1
                bar.update(1)
                if self.cfg.progress:
                    bar.write(f"[{n_done + finished}/{total}] {cell.describe()}: {record['accuracy']:.2f}% "
                              f"(train {record['train_time_s']:.1f} s)")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        remaining = total - n_done - finished
        return {"total": total, "done_before": n_done, "finished": finished, "remaining": remaining,
                "interrupted": interrupted, "stopped_at_limit": stopped_at_limit, "seconds": time.time() - t0,
                # CPU time of this process (all threads): what the run costs on dedicated cores,
                # whatever else shares the machine
                "cpu_seconds": time.process_time() - cpu0}

    # ------------------------------------------------------------------ one cell
    def _test_features(self, bb, data):
        from pini_core.features import encode_images

        return encode_images(bb, data, batch_size=self.cfg.batch_size, progress=False)

    def _templates(self, splits) -> List[str]:
        from pini_core.baselines import ENSEMBLE_TEMPLATES

        return [splits.template] + (list(ENSEMBLE_TEMPLATES) if self.cfg.zeroshot_ensemble else [])

    def run_cell(self, cell: Cell) -> Dict:
        """Train (if needed) and evaluate one cell; returns its result record."""
        bb = self.backbone(cell.backbone)
        splits = self.splits(cell.dataset)
        settings = self.cell_settings(cell)
        torch.manual_seed(cell.seed)
        info: Dict = {}
        t_train = time.time()
        if cell.method == "zeroshot":
            data = splits
            method = self._build_zeroshot(bb, splits)
        else:
            data = self._fewshot(splits, cell, info)
            method = self._train(cell, bb, data, settings, info)
        train_time = time.time() - t_train

        t_eval = time.time()
        from pini_core.trainer import evaluate

        mode = self.cfg.eval_mode if cell.method == "pini" else "mean"
        test_feats = None if getattr(method, "needs_pixels", False) else self._test_features(bb, splits.test)
        acc = evaluate(method, bb, splits.test, mode=mode, features=test_feats, seed=cell.seed)["accuracy"]
        targets = {}
        for tname, tdata in (splits.targets or {}).items():
            restrict = (splits.meta.get("target_classes") or {}).get(tname)
            m = _Restricted(method, restrict) if restrict is not None else method
            tf = None if getattr(method, "needs_pixels", False) else self._test_features(bb, tdata)
            targets[tname] = evaluate(m, bb, tdata, mode=mode, features=tf, seed=cell.seed)["accuracy"]
        eval_time = time.time() - t_eval

        record = {
            "method": cell.method, "dataset": cell.dataset, "shots": cell.shots, "seed": cell.seed,
            "backbone": cell.backbone, "config": config_hash(settings),
            "accuracy": float(acc), "train_time_s": round(train_time, 4), "eval_time_s": round(eval_time, 4),
            "n_train": 0 if cell.method == "zeroshot" else len(data.train), "n_test": len(splits.test),
            "num_classes": len(splits.classnames), "settings": settings, "eval_mode": mode,
            "backbone_fingerprint": (getattr(bb, "identity", {}) or {}).get("fingerprint"),
            "finished_at": _utc_now(), "model": "last epoch",
        }
        if targets:
            record["targets"] = targets
        record.update(info)
        return record

    def _fewshot(self, splits, cell: Cell, info: Dict):
        """CoOp's k-shot train / min(k, 4)-shot val. Where the dataset's val IS its test set
        (ImageNet in CoOp, whose linear probe and Tip-Adapter then search on test), the
        search split is drawn instead from training images outside the k shots, so that
        nothing is ever selected on test."""
        import dataclasses as dc

        from pini_core.data.fewshot import MAX_VAL_SHOTS, fewshot_splits, sample_few_shot

        data = fewshot_splits(splits, cell.shots, cell.seed)
        if splits.meta.get("val_is_test"):
            chosen = {(id(x) if not isinstance(x, str) else x, int(y)) for x, y in data.train}
            rest = [(x, y) for x, y in splits.train if (id(x) if not isinstance(x, str) else x, int(y)) not in chosen]
            val = sample_few_shot(rest, min(cell.shots, MAX_VAL_SHOTS), cell.seed) if rest else []
            if not val:
                raise BenchError(f"{cell.dataset}: its val split is its test set and no training image is left "
                                 f"outside the {cell.shots} shots to search hyper-parameters on")
            data = dc.replace(data, val=val)
            info["val_source"] = "train images outside the shots (dataset val is its test set)"
        return data

    def _build_zeroshot(self, bb, splits):
        from pini_core.baselines import ZeroShotCLIP

        return ZeroShotCLIP(bb, splits.classnames, self._templates(splits))

    def _fit(self, method, bb, train, recipe: Dict, seed: int, info: Dict):
        from pini_core.trainer import TrainConfig, fit

        cfg = TrainConfig(epochs=recipe["epochs"], lr=recipe["lr"], batch_size=recipe["batch_size"],
                          momentum=recipe["momentum"], weight_decay=recipe["weight_decay"],
                          warmup_epochs=recipe["warmup_epochs"], warmup_lr=recipe["warmup_lr"],
                          precision=self.cfg.precision, aug_views=self.cfg.aug_views, seed=seed,
                          augment=self.cfg.augment, eval_every=0)
        result = fit(method, bb, train, cfg, stop_event=self.stop_event, progress=False)
        if result.stopped:
            if result.reason.startswith(("interrupted", "stopped on request")):
                raise CellInterrupted(result.reason)
            info["stopped_early"] = result.reason  # NaN guard: last good epoch kept, say so
        info["epochs_run"] = len(result.history)
        info["final_loss"] = result.history[-1]["loss"] if result.history else None
        info["fit_loop_s"] = round(result.seconds, 4)
        return result.method

    def _train(self, cell: Cell, bb, data, settings: Dict, info: Dict):
        from pini_core import baselines as B
        from pini_core.features import encode_images, labels_of

        recipe = settings["recipe"]
        m = cell.method
        if m in ("coop", "clip_adapter", "pini"):
            if m == "coop":
                method = B.CoOp(bb, data.classnames)
            elif m == "clip_adapter":
                method = B.CLIPAdapter(bb, data.classnames, data.template)
            else:
                from pini_core.model import PiNIModel
                from pini_core.noise import NoiseConfig

                method = PiNIModel(bb, data.classnames, data.template, NoiseConfig.from_dict(settings["noise"]))
            return self._fit(method, bb, data.train, recipe, cell.seed, info)
        if m == "linear_probe":
            method = B.LinearProbe(bb, len(data.classnames))
            x = encode_images(bb, data.train, batch_size=self.cfg.batch_size, progress=False)
            xv = encode_images(bb, data.val, batch_size=self.cfg.batch_size, progress=False)
            log = method.fit_features(x, labels_of(data.train), xv, labels_of(data.val),
                                      grid=recipe["c_grid"], refine_steps=recipe["refine_steps"],
                                      max_iter=recipe["max_iter"])
            info["val_search"] = {"C": log.best_c, "tried": len(log.tried)}
            return method
        if m in ("tip_adapter", "tip_adapter_f"):
            views = encode_images(bb, data.train, batch_size=self.cfg.batch_size, augment=self.cfg.augment,
                                  views=recipe["augment_views"], seed=cell.seed, progress=False)
            if views.dim() == 2:
                views = views.unsqueeze(0)
            y = labels_of(data.train)
            method = B.TipAdapter(bb, data.classnames, self._templates(data), views.mean(0), y,
                                  hyper=B.TipHyper.for_dataset(cell.dataset), learnable_keys=(m == "tip_adapter_f"))
            if m == "tip_adapter_f":
                hist = B.fit_tip_adapter_f(method, views, y, epochs=recipe["epochs"], lr=recipe["lr"],
                                           eps=recipe["eps"], batch_size=recipe["batch_size"], seed=cell.seed,
                                           stop_event=self.stop_event)
                info["epochs_run"] = len(hist)
                info["final_loss"] = hist[-1]["loss"]
            xv = encode_images(bb, data.val, batch_size=self.cfg.batch_size, progress=False)
            found = method.search_hyperparameters(xv, labels_of(data.val))
            info["val_search"] = {k: round(v, 4) for k, v in found.items()}
            return method
        raise BenchError(f"no runner for method {m!r}")


def _file_digest(path: Path) -> str:
    """size + sha1 of the first and last MiB: cheap even for GB-sized weights, and any
    retrained or replaced file changes it."""
    h = hashlib.sha1()
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:12]


def weights_identity(spec: BackboneSpec) -> str:
    """Identity of a backbone's weights without loading them: a digest of the local files
    (embedded model, local-dir, weights file) or the name + pretrained tag."""
    def model_files(folder: Path) -> List[Path]:
        # the model itself (config + weights), not side files such as metadata
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("*") if p.is_file() and (
            p.name == "open_clip_config.json" or p.suffix in (".safetensors", ".bin", ".pt", ".pth")))

    files: List[Path] = []
    if spec.name in ("embedded", "pini-toyclip"):
        from pini_core.backbone import embedded_dir

        files = model_files(embedded_dir())
    elif spec.name.startswith("local-dir:"):
        files = model_files(Path(spec.name[len("local-dir:"):]))
    elif spec.pretrained and os.path.isfile(spec.pretrained):
        files = [Path(spec.pretrained)]
    if not files:
        return f"{spec.name}:{spec.pretrained}"
    return "files:" + ",".join(_file_digest(p) for p in files)


def environment() -> Dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}
