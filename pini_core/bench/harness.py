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

from pini_core.backbone import BackboneSpec, weights_identity
from pini_core.experiment import PRESETS as RECIPE_PRESETS
from pini_core.experiment import ExperimentConfig, preset_config
from pini_core.methods import get_method_spec, list_methods
from .results import ResultsFile, config_hash

PROTOCOL_VERSION = 1

# The "quick" profile (the miniature benchmark on the embedded toy CLIP, 2 CPU cores):
# every reference schedule with its epochs multiplied by QUICK_FACTOR (rounded up), e.g.
# CoOp 25/50/50/100/100 instead of 50/100/100/200/200, PiNI 100 instead of 200,
# Tip-Adapter-F 10 instead of 20. Everything else in a recipe is unchanged.
QUICK_FACTOR = 0.5

PROFILES = ("paper", "quick")
PROTOCOLS = ("reference", "tuned")
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # the tuned protocol's grid, the same for every SGD-trained method


from pini_core.errors import PiniError  # noqa: E402  (one error hierarchy, issue 12)


class BenchError(PiniError, RuntimeError):
    """A benchmark setting cannot run; the message says what to change."""


class CellInterrupted(KeyboardInterrupt):
    """Training of a cell was interrupted: the cell is not recorded."""


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
    eval_mode: Optional[str] = None  # PiNI at test time: mean (eps = 0) | single | average; None: the recipe's
    recipe: str = "paper"  # PiNI's recipe preset (pini_core.experiment): paper | authors | toy
    zeroshot_ensemble: bool = False
    dg: bool = False  # load domain-generalisation targets (ImageNet variants)
    aug_views: int = 4  # augmented views cached per training image (shared trainer)
    augment: bool = True  # CoOp's train transform; off for 64-px toy tasks (it crops shapes to fragments)
    batch_size: int = 64  # feature extraction
    pini_noise: Dict = field(default_factory=dict)  # NoiseConfig overrides for PiNI (Table 1 variants)
    max_cells: Optional[int] = None  # stop after this many newly finished cells
    progress: bool = True
    # reference: every method's own recipe; tuned: the same lr grid for every SGD-trained method,
    # the lr chosen on the few-shot val split (last-epoch val accuracy), never on test
    shared_prefix: bool = True  # exact shared-prefix text encoding (speed only; results equal within float noise)
    protocol: str = "reference"
    lr_grid: List[float] = field(default_factory=lambda: list(LR_GRID))

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in list_methods()]
        if unknown:
            raise BenchError(f"unknown method(s) {unknown}; choose from {', '.join(list_methods())}")
        if self.protocol not in PROTOCOLS:
            raise BenchError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.protocol == "tuned" and (not self.lr_grid or any(not lr > 0 for lr in self.lr_grid)):
            raise BenchError(f"the tuned protocol needs a grid of positive learning rates, got {self.lr_grid}")
        if self.recipe not in RECIPE_PRESETS:
            raise BenchError(f"recipe must be one of {RECIPE_PRESETS}, got {self.recipe!r}")
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
        if self.eval_mode not in (None, "mean", "single", "average"):
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
        self._features = None  # one feature cache shared by every cell of this run
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
    def experiment(self, method: str, shots: int, dataset: str, seed: int = 1,
                   backbone: Optional["BackboneSpec"] = None) -> ExperimentConfig:
        """The ExperimentConfig one cell runs: the recipe preset's config for `method`, with
        the benchmark's overrides (profile / --epochs, augmentation, views, noise, eval mode)."""
        import dataclasses as dc

        from pini_core.noise import NoiseConfig

        b = backbone or self.cfg.backbones[0]
        zs = method == "zeroshot"
        cfg = preset_config(self.cfg.recipe, method=method, shots=0 if zs else shots, dataset=dataset,
                            seed=0 if zs else seed, backbone=b.name, pretrained=b.pretrained, device=self.cfg.device,
                            precision=self.cfg.precision)
        r = cfg.recipe
        epochs = r.epochs
        if self.cfg.epochs is not None:
            epochs = self.cfg.epochs
        elif self.cfg.profile == "quick":
            epochs = max(1, math.ceil(r.epochs * QUICK_FACTOR))
        views = r.aug_views if method in ("tip_adapter", "tip_adapter_f") or r.aug_views == 0 else self.cfg.aug_views
        changes = {"data": dc.replace(cfg.data, root=self.cfg.data_root)}
        if not self.cfg.shared_prefix:
            changes["shared_prefix"] = False
        # the recipe matters to gradient-trained methods; Tip-Adapter's cache only reads its augmentation
        if get_method_spec(method).training == "gradient":
            changes["recipe"] = dc.replace(r, epochs=epochs, augment=self.cfg.augment and r.augment, aug_views=views,
                                           precision=self.cfg.precision)
        elif method == "tip_adapter":
            changes["recipe"] = dc.replace(r, augment=self.cfg.augment and r.augment)
        if method == "pini" and self.cfg.pini_noise:
            changes["noise"] = NoiseConfig.from_dict({**cfg.noise.to_dict(), **self.cfg.pini_noise})
        if self.cfg.eval_mode is not None and method == "pini":
            changes["eval"] = dc.replace(cfg.eval, mode=self.cfg.eval_mode)
        if method in ("zeroshot", "tip_adapter", "tip_adapter_f") and self.cfg.zeroshot_ensemble:
            changes["options"] = {"ensemble": True}
        return cfg.replace(**changes)

    def method_settings(self, method: str, shots: int, dataset: str, seed: int = 1) -> Dict:
        """Everything that defines how a cell of `method` runs (hashed into the record key):
        its whole experiment config, minus what the key already holds."""
        exp = self.experiment(method, shots, dataset, seed).to_dict()
        for k in ("seed", "backbone", "pretrained", "device"):
            exp.pop(k)
        s = {"method": method, "recipe": exp.pop("recipe"), "experiment": exp, "protocol": PROTOCOL_VERSION,
             "dg": self.cfg.dg}
        if self._tuned(method):
            s["lr_search"] = {"grid": list(self.cfg.lr_grid), "select": "last-epoch val accuracy"}
        return s

    def _tuned(self, method: str) -> bool:
        """Cells whose lr the tuned protocol searches: gradient-trained with SGD."""
        return (self.cfg.protocol == "tuned" and get_method_spec(method).training == "gradient"
                and self.experiment(method, 1, self.cfg.datasets[0]).recipe.optimizer == "sgd")

    def weights_id(self, label: str) -> str:
        """What the backbone's weights are, known without loading them (cached per label)."""
        if label not in self._weights_ids:
            spec = next(b for b in self.cfg.backbones if b.label == label)
            self._weights_ids[label] = weights_identity(spec)
        return self._weights_ids[label]

    def cell_settings(self, cell: Cell) -> Dict:
        """method settings + the identity of the backbone's weights: retrained or replaced
        weights under the same label make new cells, never a silent reuse."""
        return {**self.method_settings(cell.method, cell.shots, cell.dataset, cell.seed),
                "weights": self.weights_id(cell.backbone)}

    def cell_config(self, cell: Cell) -> str:
        return config_hash(self.cell_settings(cell))

    def plan(self) -> List[Cell]:
        cells: List[Cell] = []
        trained = [m for m in sorted(self.cfg.methods, key=list_methods().index) if m != "zeroshot"]
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
    def cell_experiment(self, cell: Cell) -> ExperimentConfig:
        spec = next(b for b in self.cfg.backbones if b.label == cell.backbone)
        return self.experiment(cell.method, cell.shots, cell.dataset, cell.seed, spec)

    def _search_lr(self, config: ExperimentConfig, bb, splits):
        """The tuned protocol: train at every lr of the grid, keep the lr with the best
        last-epoch accuracy on the few-shot VAL split (ties: the smaller lr). Test is not
        looked at; the chosen config is then run (and tested) like any other."""
        import dataclasses as dc

        from pini_core.runner import run

        val = {}
        for lr in self.cfg.lr_grid:
            trial = config.replace(recipe=dc.replace(config.recipe, lr=lr, eval_every=config.recipe.epochs))
            res = run(trial, backbone=bb, dataset=splits, features=self._features, stop_event=self.stop_event,
                      progress=False, evaluate_test=False)
            if res.stopped and res.reason.startswith(("interrupted", "stopped on request")):
                raise CellInterrupted(res.reason)
            val[lr] = res.history[-1].get("val_accuracy", float("nan")) if res.history else float("nan")
        best = max(sorted(val), key=lambda lr: (val[lr] if val[lr] == val[lr] else -1.0, -lr))
        chosen = config.replace(recipe=dc.replace(config.recipe, lr=best))
        return chosen, {"val_accuracy": {str(k): v for k, v in val.items()}, "chosen_lr": best}

    def run_cell(self, cell: Cell) -> Dict:
        """Train (if needed) and evaluate one cell through `pini_core.run`; returns its record."""
        from pini_core.errors import PiniError
        from pini_core.features import FeatureCache
        from pini_core.runner import run

        bb = self.backbone(cell.backbone)
        splits = self.splits(cell.dataset)
        settings = self.cell_settings(cell)
        config = self.cell_experiment(cell)
        if self._features is None:
            self._features = FeatureCache()
        t0 = time.time()
        search = None
        try:
            if self._tuned(cell.method):
                config, search = self._search_lr(config, bb, splits)
            res = run(config, backbone=bb, dataset=splits, features=self._features, stop_event=self.stop_event,
                      progress=False)
        except PiniError as e:
            raise BenchError(str(e)) from None
        info = dict(res.info)
        if search is not None:
            info["lr_search"] = search
        if res.stopped:
            if res.reason.startswith(("interrupted", "stopped on request")):
                raise CellInterrupted(res.reason)
            info["stopped_early"] = res.reason  # NaN guard: last good epoch kept, say so
        m = res.metrics
        targets = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("target_accuracy/")}
        record = {
            "method": cell.method, "dataset": cell.dataset, "shots": cell.shots, "seed": cell.seed,
            "backbone": cell.backbone, "config": config_hash(settings),
            "accuracy": float(m["test_accuracy"]), "train_time_s": round(res.train_seconds, 4),
            "eval_time_s": round(time.time() - t0 - res.train_seconds, 4),
            "n_train": m.get("n_train", 0),
            "n_test": len(splits.test), "num_classes": len(splits.classnames), "settings": settings,
            "eval_mode": m["test_mode"], "recipe_preset": config.preset,
            "backbone_fingerprint": (getattr(bb, "identity", {}) or {}).get("fingerprint"),
            "finished_at": _utc_now(), "model": "last epoch",
        }
        if targets:
            record["targets"] = targets
        if res.history:
            info.setdefault("fit_loop_s", round(res.train_seconds, 4))
        record.update(info)
        return record


def environment() -> Dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}
