"""Few-shot training of a *method* (PiNI or a baseline) on a frozen CLIP: the one training loop.

A method implements `pini_core.methods.Method`: `needs_pixels`, `compute_loss(inputs,
labels)`, `predict(inputs, *, mode, draws, generator)`. Only parameters with
requires_grad train; the backbone's are frozen. The optimiser (SGD or AdamW) and the
learning-rate schedule come from the `Recipe` (`pini_core.experiment`); `lr_at` is the one
schedule function, shared with the toy CLIP's pretraining and the MuNG host's.

Methods that do not classify (image, label) pairs - MuNG's generator on a frozen multimodal
LLM - train through the same loop: they pass their own batches (`collate=` and `to_inputs=`),
no CLIP backbone (`backbone=None`, their frozen model as `method.frozen_model`), and usually a
step budget (`Recipe.max_steps`) with gradient clipping (`Recipe.max_grad_norm`).

One code path runs on CPU, one GPU, or several (`accelerate launch -m pini_core train ...`)
through Hugging Face Accelerate: each process takes its share of every batch and DDP
averages the gradients, so the weights match a one-process run of the same global batch.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .backbone import Backbone
from .data.transforms import ImageDataset, collate_images
from .errors import TrainingStopped
from .experiment import Recipe
from .features import encode_images, labels_of, test_transform, train_transform


class TrainingError(TrainingStopped):
    pass


@dataclass
class TrainResult:
    method: nn.Module
    history: List[Dict] = field(default_factory=list)
    stopped: bool = False
    reason: str = ""  # why training ended early ("" when it ran all epochs)
    seconds: float = 0.0
    cached: bool = False
    processes: int = 1  # accelerate processes that trained together
    rank_checksums: List[float] = field(default_factory=list)  # one weight checksum per process (all equal)
    steps: int = 0  # optimizer steps taken (those of an epoch cut short are dropped from the weights)
    losses: List[float] = field(default_factory=list)  # the loss of every step (global batch)
    cause: str = ""  # why it stopped early: "" | "stop" (request) | "interrupt" (Ctrl-C) | "nonfinite"


class _LossModule(nn.Module):
    """Wraps a method so that its loss is computed in forward() (what DDP syncs on)."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, inputs: Dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return self.method.compute_loss(inputs, labels)


class _CachedViews(Dataset):
    """Index dataset over cached features [V, N, D]: epoch e reads view e mod V, so with
    one view per epoch every epoch sees freshly augmented images, as the reference does."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor):
        self.feats = feats if feats.dim() == 3 else feats.unsqueeze(0)
        self.labels = labels
        self.view = 0

    def set_epoch(self, epoch: int) -> None:
        self.view = epoch % self.feats.shape[0]

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int):
        return self.feats[self.view, i].float(), self.labels[i]


def lr_at(recipe: Recipe, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """Learning rate at `step` (0-based, within `epoch`) of the recipe's schedule.

    cosine (CoOp/PiNI): `warmup_epochs` at constant `warmup_lr`, then
        lr/2 (1 + cos(pi (e - w) / (E - w))), set once per epoch;
    cosine_dassl (the authors' Dassl configs): the same with span E: lr/2 (1 + cos(pi (e - w) / E));
    cosine_step (Tip-Adapter-F, torch CosineAnnealingLR): lr/2 (1 + cos(pi t / T)) at
        global step t of T = E * steps_per_epoch (or `max_steps`);
    warmup_cosine_step (the toy CLIP's pretraining, CLIP-style): linear warm-up lr (t + 1) / W
        over the first W = `warmup_steps_of(recipe, ...)` steps, then cosine over the rest;
    hf_cosine_warmup: transformers' get_cosine_schedule_with_warmup, value for value:
        lr t / W during warm-up (so 0 at the first step), then lr/2 (1 + cos(pi (t - W) / (T - W)));
    constant: lr."""
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule in ("cosine_step", "warmup_cosine_step", "hf_cosine_warmup"):
        t, total = epoch * steps_per_epoch + step, total_steps(recipe, steps_per_epoch)
        w = 0 if recipe.schedule == "cosine_step" else warmup_steps_of(recipe, steps_per_epoch)
        if recipe.schedule == "hf_cosine_warmup":  # computed as transformers does (factor, then lr * factor)
            if t < w:
                return recipe.lr * (float(t) / float(max(1, w)))
            progress = float(t - w) / float(max(1, total - w))
            return recipe.lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        if t < w:
            return recipe.lr * (t + 1) / w
        return 0.5 * recipe.lr * (1 + math.cos(math.pi * (t - w) / max(1, total - w)))
    if epoch < recipe.warmup_epochs:
        return recipe.warmup_lr
    # cosine_dassl: Dassl's ConstantWarmupScheduler hands over to CosineAnnealingLR(T_max = E),
    # so the cosine spans all E epochs and ends above zero; cosine spans the E - w after warm-up
    span = recipe.epochs if recipe.schedule == "cosine_dassl" else max(1, recipe.epochs - recipe.warmup_epochs)
    return 0.5 * recipe.lr * (1 + math.cos(math.pi * (epoch - recipe.warmup_epochs) / span))


def total_steps(recipe: Recipe, steps_per_epoch: int = 1) -> int:
    """Optimizer steps of the whole run: the step budget `max_steps`, else epochs * steps_per_epoch."""
    return recipe.max_steps or recipe.epochs * steps_per_epoch


def warmup_steps_of(recipe: Recipe, steps_per_epoch: int = 1) -> int:
    """Warm-up steps of the per-step schedules: `warmup_steps`; else ceil(total * warmup_ratio)
    (the Hugging Face Trainer's rule); else warmup_epochs * steps_per_epoch."""
    if recipe.warmup_steps:
        return recipe.warmup_steps
    if recipe.warmup_ratio:
        return math.ceil(total_steps(recipe, steps_per_epoch) * recipe.warmup_ratio)
    return recipe.warmup_epochs * steps_per_epoch


def _append_jsonl(path: Optional[Path], row: Dict) -> None:
    if path is None:
        return
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _trainable(method: nn.Module) -> List[nn.Parameter]:
    return [p for p in method.parameters() if p.requires_grad]


def make_optimizer(params: List[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay: CoOp / PiNI) or AdamW (betas, eps: Tip-Adapter-F)."""
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, betas=tuple(recipe.adam_betas), eps=recipe.adam_eps,
                                 weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def _snapshot(method: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


def fit(method: nn.Module, backbone: Optional[Backbone], train_data: Sequence, recipe: Recipe, *, seed: int = 1,
        eval_mode: str = "mean", val_data: Optional[Sequence] = None, out_dir: Optional[str] = None,
        on_epoch: Optional[Callable[[Dict], None]] = None, stop_event: Optional[threading.Event] = None,
        progress: bool = True, features: Optional[torch.Tensor] = None,
        encode: Optional[Callable[..., torch.Tensor]] = None,
        to_inputs: Optional[Callable[[Any], Tuple[Any, torch.Tensor]]] = None,
        collate: Optional[Callable[[List[Any]], Any]] = None, device: Optional[Any] = None,
        accelerator: Optional[Any] = None, desc: str = "training") -> TrainResult:
    """Train `method` on `train_data` (list of (image, label)) with `recipe`; returns the
    last-epoch model (never selected on test).

    features: precomputed training features [V, N, D] / [N, D] (skips encoding);
    encode:   `encode(data, augment=..., views=..., desc=...)` for cached features (the
              experiment's feature cache); default `pini_core.features.encode_images`.
    Stops early on a stop request (stop_event), Ctrl-C, or a non-finite loss / weights:
    the weights of the last finished epoch are kept (mid-epoch updates are dropped) and
    `reason` (and `cause`) say why. Raises TrainingError when there is nothing to train.

    Batches that are not (image, label) pairs: give `to_inputs(batch) -> (inputs, labels)`
    (and `collate`, the DataLoader's collate_fn over `train_data`'s items); each step computes
    `method.compute_loss(inputs, labels)` (labels: a tensor whose first dimension is the batch
    size). No transform, feature cache or validation applies (val_data is refused).
    backbone=None (only with to_inputs): a method without a CLIP backbone; its frozen model,
    if any, is `method.frozen_model` and is checked to be frozen as the backbone is; `device`
    (default: CUDA when available) is where it trains.
    accelerator: an `accelerate.Accelerator` to train with (its device and mixed precision
    replace `recipe.precision`'s); default: one made here.
    The step budget `recipe.max_steps`, when > 0, ends training after that many optimizer
    steps, cycling through the data; the last (partial) epoch is then a finished one."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    recipe.validate()
    custom = to_inputs is not None
    if backbone is None and not custom:
        raise TrainingError("fit needs a CLIP backbone unless the method brings its own batches (to_inputs=...)")
    if collate is not None and not custom:
        raise TrainingError("collate= is for the method's own batches: give to_inputs= with it")
    if custom and val_data:
        raise TrainingError("val_data is evaluated on a CLIP backbone; it cannot be used with to_inputs=...")
    if len(train_data) == 0:
        raise TrainingError("no training items" if custom else "no training images")
    dev = backbone.device if backbone is not None else torch.device(
        device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    mp = "no"
    if recipe.precision == "amp":
        mp = "fp16" if dev.type == "cuda" else "bf16"
    acc = accelerator or Accelerator(cpu=dev.type == "cpu", mixed_precision=mp)
    frozen_model = backbone.model if backbone is not None else getattr(method, "frozen_model", None)
    if acc.device != dev:  # one process per GPU under `accelerate launch`
        if frozen_model is not None:
            frozen_model.to(acc.device)
        if backbone is not None:
            backbone.device = acc.device
        method.to(acc.device)
    set_seed(seed)
    params = _trainable(method)
    if not params:
        raise TrainingError("this method has no trainable parameters (e.g. zero-shot CLIP): nothing to fit")
    frozen_grad = [n for n, p in frozen_model.named_parameters() if p.requires_grad] if frozen_model is not None else []
    if frozen_grad:
        what = "backbone" if backbone is not None else "frozen model"
        raise TrainingError(f"{what} parameters must be frozen, found trainable: {frozen_grad[:3]}")

    show = progress and acc.is_main_process
    cached, val_feats = False, None
    if custom:
        dataset = train_data
    else:
        needs_pixels = getattr(method, "needs_pixels", False)
        cached = recipe.cache == "on" or (recipe.cache == "auto" and not needs_pixels)
        if cached and needs_pixels:
            raise TrainingError("cannot cache image features when noise enters the raw image")
        labels = labels_of(train_data)
        encode = encode or (lambda data, **kw: encode_images(backbone, data, **kw))
        if cached:
            if features is None:
                features = encode(train_data, augment=recipe.augment, views=recipe.views(), seed=seed,
                                  progress=show, desc="caching train features")
            dataset = _CachedViews(features, labels)
            to_inputs = lambda batch: ({"features": batch[0]}, batch[1])  # noqa: E731
            collate = None
        else:
            tf = train_transform(backbone) if recipe.augment else test_transform(backbone)
            dataset = ImageDataset(train_data, tf)
            to_inputs = lambda batch: ({"pixels": batch[0]}, batch[1])  # noqa: E731
            collate = collate_images
        if val_data and recipe.eval_every and cached:
            val_feats = encode(val_data, progress=False)

    drop_last = recipe.drop_last and len(dataset) > recipe.batch_size
    loader = DataLoader(dataset, batch_size=recipe.batch_size, shuffle=True, drop_last=drop_last,
                        num_workers=recipe.num_workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))
    opt = make_optimizer(params, recipe)
    wrapped, opt, loader = acc.prepare(_LossModule(method), opt, loader)

    log = None
    if out_dir and acc.is_main_process:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        log = Path(out_dir) / "metrics.jsonl"
        log.unlink(missing_ok=True)  # one run per log: a re-run into the same folder starts afresh
    result = TrainResult(method=method, cached=cached)
    good_state = _snapshot(method)  # weights at the end of the last finished epoch
    t0, step = time.time(), 0
    steps_per_epoch = len(loader)
    if recipe.max_steps and steps_per_epoch == 0:
        raise TrainingError("the training data gives no batch: a step budget cannot be spent")
    # a step budget cycles through the data: the last epoch may be partial
    epochs = math.ceil(recipe.max_steps / steps_per_epoch) if recipe.max_steps else recipe.epochs
    bar = tqdm(total=total_steps(recipe, steps_per_epoch), desc=desc, disable=not show)

    def keep_last_good(reason: str, cause: str) -> None:
        method.load_state_dict(good_state)
        result.stopped, result.reason, result.cause = True, reason, cause

    try:
        for epoch in range(epochs):
            if cached:
                dataset.set_epoch(epoch)
            wrapped.train()
            total, count, lr, cut_short = 0.0, 0, lr_at(recipe, epoch), False
            for i, batch in enumerate(loader):
                lr = lr_at(recipe, epoch, i, steps_per_epoch)
                for g in opt.param_groups:
                    g["lr"] = lr
                inputs, y = to_inputs(batch)
                with acc.autocast():
                    loss = wrapped(inputs, y)
                if not torch.isfinite(loss):
                    keep_last_good(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}: training stopped "
                                   f"and the weights of the last finished epoch ({epoch}) were kept. Try a lower "
                                   "learning rate or fp32 precision.", "nonfinite")
                    break
                opt.zero_grad(set_to_none=True)
                acc.backward(loss)
                if recipe.max_grad_norm > 0:
                    acc.clip_grad_norm_(params, recipe.max_grad_norm)
                opt.step()
                if acc.num_processes > 1:  # log the global batch's loss, not this process's share
                    loss = acc.reduce(loss.detach(), reduction="mean")
                total += loss.item() * y.shape[0]
                count += y.shape[0]
                step += 1
                result.losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
                if recipe.log_every and step % recipe.log_every == 0:
                    _append_jsonl(log, {"step": step, "epoch": epoch + 1, "loss": loss.item(), "lr": lr})
                budget_spent = bool(recipe.max_steps) and step >= recipe.max_steps
                if stop_event is not None and stop_event.is_set():
                    cut_short = i + 1 < steps_per_epoch and not budget_spent
                    break
                if budget_spent:
                    break
            if result.stopped:
                break
            if cut_short:
                keep_last_good(f"stopped on request during epoch {epoch + 1}; the weights of the last finished "
                               f"epoch ({epoch}) were kept", "stop")
                break
            state = _snapshot(method)
            if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
                keep_last_good(f"weights became non-finite (NaN/inf) in epoch {epoch + 1}, so the loss would be too: training "
                               "stopped and "
                               f"the weights of the last finished epoch ({epoch}) were kept. Try a lower learning "
                               "rate or fp32 precision.", "nonfinite")
                break
            row = {"epoch": epoch + 1, "loss": total / max(1, count), "lr": lr, "seconds": time.time() - t0}
            if recipe.max_steps:
                row["step"] = step
            if val_data and recipe.eval_every and ((epoch + 1) % recipe.eval_every == 0 or epoch + 1 == epochs):
                row["val_accuracy"] = evaluate(method, backbone, val_data, mode=eval_mode,
                                               features=val_feats)["accuracy"]
            good_state = state
            result.history.append(row)
            _append_jsonl(log, row)
            if on_epoch is not None:
                on_epoch(dict(row, epochs=epochs))
            if stop_event is not None and stop_event.is_set():
                result.stopped, result.reason = True, f"stopped on request after epoch {epoch + 1}"
                result.cause = "stop"
                break
    except KeyboardInterrupt:
        keep_last_good(f"interrupted (Ctrl-C) after {len(result.history)} finished epochs; their weights were kept",
                       "interrupt")
    finally:
        bar.close()
    result.seconds, result.steps = time.time() - t0, step
    result.processes = acc.num_processes
    if acc.num_processes > 1:  # DDP keeps the replicas equal; check it, do not assume it
        acc.wait_for_everyone()
        total = sum(float(v.double().sum()) + float(v.double().abs().sum())
                    for v in method.state_dict().values() if v.is_floating_point())
        sums = acc.gather(torch.tensor([total], dtype=torch.float64, device=acc.device)).cpu().tolist()
        result.rank_checksums = sums
        if len(set(sums)) != 1:
            raise TrainingError(f"the {acc.num_processes} processes ended with different weights (checksums {sums})")
    if result.reason:
        _append_jsonl(log, {"event": "stopped", "reason": result.reason})
    return result


@torch.no_grad()
def evaluate(method: nn.Module, backbone: Backbone, data: Sequence, *, mode: str = "mean", draws: int = 8,
             batch_size: int = 64, features: Optional[torch.Tensor] = None, seed: int = 0) -> Dict:
    """Accuracy and mean negative log-likelihood of `method` on `data`."""
    method.eval()
    labels = labels_of(data)
    gen = torch.Generator(device=backbone.device).manual_seed(seed)
    correct, nll, n = 0, 0.0, len(data)
    if n == 0:
        raise TrainingError("no evaluation images")
    if not getattr(method, "needs_pixels", False):
        feats = features if features is not None else encode_images(backbone, data, progress=False)
        batches = [({"features": feats[i:i + batch_size]}, labels[i:i + batch_size]) for i in range(0, n, batch_size)]
    else:
        loader = DataLoader(ImageDataset(data, test_transform(backbone)), batch_size=batch_size,
                            collate_fn=collate_images)
        batches = (({"pixels": px}, y) for px, y, _ in loader)
    for inputs, y in batches:
        logits = method.predict(inputs, mode=mode, draws=draws, generator=gen).float().cpu()
        correct += int((logits.argmax(-1) == y).sum())
        nll += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
    return {"accuracy": 100.0 * correct / n, "nll": nll / n, "n": n, "mode": mode}
