"""`pini_core.run(config) -> Result`: the one path from an experiment description to artefacts.

    data -> few-shot split -> backbone -> method -> fit -> checkpoint -> evaluate -> result

The CLI (`python -m pini_core train`), the app's Train tab and every benchmark cell build
an `ExperimentConfig` and call `run`; the same config and seed give bit-identical weights
whichever of them runs it. Callers that already hold a loaded backbone or dataset (the app,
the benchmark) pass them in so nothing is loaded twice; `features` is the run's feature
cache, owned by the caller (a benchmark shares one across its cells).

Protocol (CoOp): k-shot train and min(k, 4)-shot val per seed; the LAST epoch's model is
evaluated on the full test set, never selected on test; searches (linear probe's C,
Tip-Adapter's alpha/beta) use the few-shot val split. Where a dataset's val IS its test set
(ImageNet in CoOp), the search split is drawn from training images outside the k shots.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from .data.imagefolder import check_split_images
from .errors import ConfigError, DataError
from .experiment import ExperimentConfig
from .methods import MethodContext, build_method, check_config, get_method_spec


@dataclass
class Result:
    """What a run produced. `metrics` holds test / target accuracies (%), `history` one row
    per finished epoch, `checkpoint` the saved folder (PiNI only), `info` method facts
    (val searches, skipped images)."""

    config: ExperimentConfig
    method: torch.nn.Module
    history: List[Dict] = field(default_factory=list)
    metrics: Dict[str, Any] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)
    checkpoint: Optional[Path] = None
    stopped: bool = False
    reason: str = ""
    train_seconds: float = 0.0

    def to_record(self) -> Dict[str, Any]:
        """A JSON-serialisable row: the config itself plus what it measured."""
        return {"config": self.config.to_dict(), "metrics": self.metrics, "info": self.info,
                "epochs_done": len(self.history), "stopped": self.stopped, "reason": self.reason,
                "train_seconds": round(self.train_seconds, 3),
                "checkpoint": str(self.checkpoint) if self.checkpoint else None}


def open_dataset(config: ExperimentConfig):
    """The full dataset (`DatasetSplits`) the config names, rendered / split with its seed.

    Raises DataError for an unknown name or a layout that cannot be read."""
    from .data.registry import get_dataset

    spec = config.data
    kwargs: Dict[str, Any] = {"seed": spec.seed}
    if spec.on_broken_image != "raise":
        kwargs["on_error"] = spec.on_broken_image
    try:
        return get_dataset(spec.dataset, root=spec.root, **kwargs)
    except KeyError as e:
        raise DataError(e.args[0] if e.args else str(e)) from None


def fewshot(splits, shots: int, seed: int):
    """CoOp's k-shot train and min(k, 4)-shot val (see module docstring for ImageNet)."""
    from .data.fewshot import MAX_VAL_SHOTS, fewshot_splits, sample_few_shot

    data = fewshot_splits(splits, shots, seed)
    if splits.meta.get("val_is_test"):
        key = lambda item: (item[0] if isinstance(item[0], str) else id(item[0]), int(item[1]))  # noqa: E731
        chosen = {key(x) for x in data.train}
        rest = [x for x in splits.train if key(x) not in chosen]
        val = sample_few_shot(rest, min(shots, MAX_VAL_SHOTS), seed) if rest else []
        if not val:
            raise DataError(f"{splits.name}: its val split is its test set and no training image is left outside "
                            f"the {shots} shots to search hyper-parameters on")
        meta = dict(data.meta, val_source="train images outside the shots (dataset val is its test set)")
        data = dataclasses.replace(data, val=val, meta=meta)
    return data


class _Restricted(torch.nn.Module):
    """Scores a method on a subset of its classes by masking the other logits to -1e9.

    Exact for methods whose classes do not interact (zero-shot, linear probe, CoOp's
    per-class prompts, adapters). Methods whose classes interact (PiNI: the cross-attention
    keys and the shared prompt noise span all classes) implement `restrict_to(class_idx)`
    and are rebuilt over the subset instead, as the reference evaluates ImageNet-A/-R."""

    def __init__(self, method, class_idx: Sequence[int]):
        super().__init__()
        self.inner = method
        self.needs_pixels = getattr(method, "needs_pixels", False)
        self.class_idx = list(class_idx)

    def predict(self, inputs, *, mode: str = "mean", draws: int = 8, generator=None):
        logits = self.inner.predict(inputs, mode=mode, draws=draws, generator=generator)
        mask = torch.full_like(logits, -1e9)
        mask[:, self.class_idx] = 0.0
        return logits + mask


def restrict_method(method, class_idx: Sequence[int]):
    """`method` evaluated on a subset of its classes: rebuilt over the subset when its
    classes interact (`restrict_to`), masked otherwise. Returned logits are over all the
    method's classes when masked and over the subset when rebuilt; labels must match."""
    if hasattr(method, "restrict_to"):
        return _Remapped(method.restrict_to(class_idx), class_idx, method)
    return _Restricted(method, class_idx)


class _Remapped(torch.nn.Module):
    """A rebuilt subset model whose logits are placed back at the parent's class positions
    (other classes at -1e9), so labels in the parent's numbering score unchanged."""

    def __init__(self, sub, class_idx: Sequence[int], parent):
        super().__init__()
        self.inner, self.class_idx = sub, list(class_idx)
        self.num_parent = len(parent.classnames)
        self.needs_pixels = getattr(sub, "needs_pixels", False)

    def predict(self, inputs, *, mode: str = "mean", draws: int = 8, generator=None):
        logits = self.inner.predict(inputs, mode=mode, draws=draws, generator=generator)
        out = torch.full((logits.shape[0], self.num_parent), -1e9, dtype=logits.dtype, device=logits.device)
        out[:, self.class_idx] = logits
        return out


def _encoder(backbone, cache) -> Callable[..., torch.Tensor]:
    from .features import encode_images

    def encode(data, **kw):
        kw.setdefault("progress", False)
        if cache is not None:
            kw["cache"] = cache
        return encode_images(backbone, data, **kw)
    return encode


def evaluate_result(method, backbone, splits, config: ExperimentConfig, encode, *,
                    test_limit: Optional[int] = None) -> Dict[str, Any]:
    """Test accuracy (and each domain-generalisation target's) of a trained method, in the
    config's eval mode (PiNI) or plain logits (baselines)."""
    from .trainer import evaluate

    mode = config.eval.mode if config.method == "pini" else "mean"
    test = list(splits.test)[:test_limit] if test_limit else list(splits.test)
    if not test:
        raise DataError(f"dataset {splits.name!r} has no test images to evaluate on")
    feats = None if getattr(method, "needs_pixels", False) else encode(test)
    res = evaluate(method, backbone, test, mode=mode, draws=config.eval.draws, features=feats, seed=config.seed)
    metrics: Dict[str, Any] = {"test_accuracy": res["accuracy"], "test_nll": res["nll"], "test_mode": mode,
                               "n_test": len(test)}
    for name, data in (splits.targets or {}).items():
        restrict = (splits.meta.get("target_classes") or {}).get(name)
        m = restrict_method(method, restrict) if restrict is not None else method
        tf = None if getattr(method, "needs_pixels", False) else encode(data)
        metrics[f"target_accuracy/{name}"] = evaluate(m, backbone, data, mode=mode, draws=config.eval.draws,
                                                      features=tf, seed=config.seed)["accuracy"]
    return metrics


def describe(config: ExperimentConfig, data, backbone) -> str:
    """'PiNI on toy-clutter: 10 classes, 16 shots, 160 training images; ...' (one line)."""
    spec = get_method_spec(config.method)
    r = config.recipe
    text = f"{spec.display} on {data.name}: {len(data.classnames)} classes"
    if spec.training != "none":
        text += f", {config.shots} shots, {len(data.train)} training images"
    if config.method == "pini":
        text += f"; noise {config.noise.describe()}"
    if spec.training == "gradient":
        text += (f"; recipe '{config.preset}': {r.optimizer} lr {r.lr:g}, {r.epochs} epochs, batch {r.batch_size}, "
                 f"augmentation {'on' if r.augment else 'off'}")
    name = (getattr(backbone, "identity", {}) or {}).get("name", config.backbone)
    return text + f"; backbone {name}"


def run(config: ExperimentConfig, *, out_dir: Optional[str] = None, checkpoint_dir: Optional[str] = None,
        backbone=None, dataset=None, features=None, on_epoch: Optional[Callable[[Dict], None]] = None,
        stop_event: Optional[threading.Event] = None, progress: bool = True, evaluate_test: bool = True,
        test_limit: Optional[int] = None, provenance: Optional[Dict[str, Any]] = None,
        on_ready: Optional[Callable[[str], None]] = None) -> Result:
    """Run one experiment end to end and return its `Result`.

    out_dir:        metrics.jsonl, result.json and (PiNI) checkpoint/ go here (None: nothing written)
    checkpoint_dir: write the PiNI checkpoint here instead of OUT/checkpoint
    backbone, dataset: an already loaded `Backbone` / full `DatasetSplits` for this config
    features:       a `pini_core.features.FeatureCache` shared across runs (optional)
    on_epoch, stop_event: live curves and Stop (the app); Ctrl-C keeps the last finished epoch
    evaluate_test:  evaluate on the test split (and targets) after training
    test_limit:     evaluate on the first N test images only (the app's classroom budget)
    provenance:     extra JSON facts saved with the checkpoint (e.g. the command line)
    on_ready:       called with a one-line description once data and backbone are loaded

    The checkpoint is written (atomically) BEFORE evaluation, so a failure there never
    loses the training; it is rewritten with the test metrics afterwards.
    Raises ConfigError / DataError / ModelLoadError before any training for bad input."""
    from .trainer import fit

    check_config(config)
    spec = get_method_spec(config.method)
    if backbone is None:
        from .backbone import load_backbone

        backbone = load_backbone(config.backbone, config.pretrained, device=config.device,
                                 precision=config.precision)
    splits = dataset if dataset is not None else open_dataset(config)
    if spec.training != "none" and not splits.train:
        raise DataError(f"dataset {splits.name!r} has no training images")
    data = fewshot(splits, config.shots, config.seed) if spec.training != "none" else splits
    on_error = config.data.on_broken_image
    if spec.training != "none":  # every image training will read opens, before any training
        data, broken = check_split_images(data, on_error, parts=("train", "val"), targets=False)
        if not data.train:
            raise DataError(f"no readable training image is left in {splits.name!r} after skipping {len(broken)}")
    encode = _encoder(backbone, features)
    ctx = MethodContext(backbone=backbone, data=data, config=config, encode=encode)
    if spec.training != "none" and broken:
        ctx.info["skipped_images"] = {"train/val": len(broken)}
    if data.meta.get("val_source"):
        ctx.info["val_source"] = data.meta["val_source"]

    torch.manual_seed(config.seed)  # the method's initial weights follow the seed
    method = build_method(ctx)
    method.shared_prefix = config.shared_prefix  # exact shared-prefix text encoding (speed only)
    if on_ready is not None:
        on_ready(describe(config, data, backbone))
    result = Result(config=config, method=method, info=ctx.info)
    out = Path(out_dir) if out_dir else None
    t0 = time.time()
    if spec.training == "gradient":
        r = config.recipe
        res = fit(method, backbone, data.train, r, seed=config.seed, eval_mode=config.eval.mode,
                  val_data=data.val if r.eval_every else None, out_dir=str(out) if out else None,
                  on_epoch=on_epoch, stop_event=stop_event, progress=progress, encode=encode)
        result.history, result.stopped, result.reason = res.history, res.stopped, res.reason
        if res.processes > 1:
            ctx.info.update(processes=res.processes, rank_checksums=res.rank_checksums)
        ctx.info["epochs_run"] = len(res.history)
        ctx.info["final_loss"] = res.history[-1]["loss"] if res.history else None
    elif spec.fit is not None:  # closed form: fitted on cached features (the keys of Tip-Adapter need none)
        spec.fit(method, ctx)
    if spec.after_fit is not None and (spec.training != "gradient" or result.history):
        spec.after_fit(method, ctx)
    result.train_seconds = time.time() - t0

    base = {"epochs_done": len(result.history), "train_seconds": round(result.train_seconds, 2),
            "stopped": result.stopped, "shots": config.shots, "seed": config.seed, "dataset": splits.name,
            "n_train": len(data.train) if spec.training != "none" else 0}
    if result.history:
        base["last_loss"] = result.history[-1]["loss"]
    result.metrics = dict(base)
    main = _is_main_process()
    can_save = main and config.method == "pini" and result.history and (out is not None or checkpoint_dir)
    if can_save:
        result.checkpoint = Path(checkpoint_dir) if checkpoint_dir else out / "checkpoint"
        _save(method, result, config, splits, provenance)
    elif main and result.history and out is not None:  # other trained methods: their weights, as safetensors
        from safetensors.torch import save_file

        from . import atomic

        out.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(out / "weights.safetensors") as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in method.state_dict().items()}, tmp,
                      metadata={"experiment": config.to_json()})
    if evaluate_test:
        try:
            test_splits, broken = check_split_images(splits, on_error, parts=("test",), targets=True)
        except DataError as e:
            if result.checkpoint:
                raise DataError(f"{e} The trained checkpoint is saved: {result.checkpoint}") from None
            raise
        if broken:
            ctx.info.setdefault("skipped_images", {})["test"] = len(broken)
        result.metrics.update(evaluate_result(method, backbone, test_splits, config, encode, test_limit=test_limit))
        if can_save:
            _save(method, result, config, splits, provenance)
    if out is not None and main:
        from . import atomic

        out.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out / "result.json", json.dumps(result.to_record(), indent=2))
    return result


def _save(method, result: Result, config: ExperimentConfig, splits, provenance) -> None:
    from .checkpoint import save_pini

    extra = {"experiment": config.to_dict(), "train_config": config.recipe.to_dict(),
             "data": {"dataset": splits.name, "root": config.data.root, "seed": config.data.seed,
                      "shots": config.shots}}
    extra.update(provenance or {})
    save_pini(method, result.checkpoint, result.metrics, extra=extra)


def _is_main_process() -> bool:
    """True except on the non-main processes of an `accelerate launch` (they write nothing)."""
    import os

    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0
