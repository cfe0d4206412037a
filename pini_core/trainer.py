"""Few-shot training of a *method* (PiNI or a baseline) on a frozen CLIP.

A method is an nn.Module holding the frozen backbone by reference, with
    needs_pixels: bool                       noise enters the raw image -> no feature cache
    compute_loss(inputs, labels) -> loss     inputs = {"features": [B, D]} or {"pixels": [...]}
    predict(inputs, mode=...) -> logits [B, C]
Only parameters with requires_grad train; the backbone's are frozen.

One code path runs on CPU, one GPU, or several (`accelerate launch -m pini_core train ...`)
through Hugging Face Accelerate. The recipe (METHOD.md): SGD momentum 0.9, weight decay
5e-4, one constant warm-up epoch at 1e-5, cosine decay, batch 32, last-epoch model.
"""
from __future__ import annotations

import copy
import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .backbone import Backbone
from .data.transforms import ImageDataset, collate_images
from .features import encode_images, labels_of, test_transform, train_transform


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainConfig:
    epochs: int = 50
    lr: float = 2e-3  # paper: 1e-3 (ImageNet) .. 3e-3
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    precision: str = "fp32"  # fp32 | amp (mixed precision on GPU: fp16 autocast + scaler; bf16 if asked)
    augment: bool = True  # CoOp's random resized crop + flip
    aug_views: int = 4  # cached augmented views per image when features are cached
    cache: str = "auto"  # auto: cache image features whenever no noise enters the image encoder
    seed: int = 1
    eval_every: int = 1  # evaluate on val every N epochs (when val data is given); 0 = never
    eval_mode: str = "mean"
    num_workers: int = 0
    log_every: int = 0  # also log every N steps to the JSONL (0 = per epoch only)

    def to_dict(self) -> Dict:
        return asdict(self)


@dataclass
class TrainResult:
    method: nn.Module
    history: List[Dict] = field(default_factory=list)
    stopped: bool = False
    reason: str = ""  # why training ended early ("" when it ran all epochs)
    seconds: float = 0.0
    cached: bool = False


class _LossModule(nn.Module):
    """Wraps a method so that its loss is computed in forward() (what DDP syncs on)."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, inputs: Dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return self.method.compute_loss(inputs, labels)


class _CachedViews(Dataset):
    """Index dataset over cached features [V, N, D]: each visit picks one augmented view."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, seed: int):
        self.feats = feats if feats.dim() == 3 else feats.unsqueeze(0)
        self.labels = labels
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int):
        v = int(torch.randint(self.feats.shape[0], (1,), generator=self.gen))
        return self.feats[v, i], self.labels[i]


def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """Constant warm-up (CoOp: 1 epoch at 1e-5), then cosine from lr to 0 over the rest."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr
    span = max(1, cfg.epochs - cfg.warmup_epochs)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))


def _append_jsonl(path: Optional[Path], row: Dict) -> None:
    if path is None:
        return
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _trainable(method: nn.Module) -> List[nn.Parameter]:
    return [p for p in method.parameters() if p.requires_grad]


def fit(method: nn.Module, backbone: Backbone, train_data: Sequence, cfg: TrainConfig, *,
        val_data: Optional[Sequence] = None, out_dir: Optional[str] = None,
        on_epoch: Optional[Callable[[Dict], None]] = None, stop_event: Optional[threading.Event] = None,
        progress: bool = True) -> TrainResult:
    """Train `method` on `train_data` (list of (image, label)); returns the last-epoch model.

    Stops early, keeping what was trained, on a stop request (stop_event), Ctrl-C, or a
    non-finite loss (then the weights of the last good epoch are restored)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if len(train_data) == 0:
        raise TrainingError("no training images")
    mp = "no"
    if cfg.precision == "amp":
        mp = "fp16" if backbone.device.type == "cuda" else "bf16"
    elif cfg.precision != "fp32":
        raise TrainingError(f"precision must be fp32 or amp, got {cfg.precision!r}")
    acc = Accelerator(cpu=backbone.device.type == "cpu", mixed_precision=mp)
    if acc.device != backbone.device:  # one process per GPU under `accelerate launch`
        backbone.model.to(acc.device)
        backbone.device = acc.device
        method.to(acc.device)
    set_seed(cfg.seed)
    params = _trainable(method)
    if not params:
        raise TrainingError("this method has no trainable parameters (e.g. zero-shot CLIP): nothing to fit")
    frozen_grad = [n for n, p in backbone.model.named_parameters() if p.requires_grad]
    if frozen_grad:
        raise TrainingError(f"backbone parameters must be frozen, found trainable: {frozen_grad[:3]}")

    if cfg.cache not in ("auto", "on", "off"):
        raise TrainingError(f"TrainConfig.cache must be auto, on or off, got {cfg.cache!r}")
    cached = cfg.cache == "on" or (cfg.cache == "auto" and not getattr(method, "needs_pixels", False))
    if cached and getattr(method, "needs_pixels", False):
        raise TrainingError("cannot cache image features when noise enters the raw image")
    labels = labels_of(train_data)
    if cached:
        feats = encode_images(backbone, train_data, augment=cfg.augment, views=cfg.aug_views, seed=cfg.seed,
                              progress=progress and acc.is_main_process, desc="caching train features")
        dataset: Dataset = _CachedViews(feats, labels, cfg.seed)
        to_inputs = lambda batch: ({"features": batch[0]}, batch[1])  # noqa: E731
        collate = None
    else:
        tf = train_transform(backbone) if cfg.augment else test_transform(backbone)
        dataset = ImageDataset(train_data, tf)
        to_inputs = lambda batch: ({"pixels": batch[0]}, batch[1])  # noqa: E731
        collate = collate_images
    val_feats = None
    if val_data and cfg.eval_every and cached:
        val_feats = encode_images(backbone, val_data, progress=False)

    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=False,
                        num_workers=cfg.num_workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(cfg.seed))
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    wrapped, opt, loader = acc.prepare(_LossModule(method), opt, loader)

    log = None
    if out_dir and acc.is_main_process:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        log = Path(out_dir) / "metrics.jsonl"
        log.unlink(missing_ok=True)  # one run per log: a re-run into the same folder starts afresh
    result = TrainResult(method=method, cached=cached)
    good_state = copy.deepcopy({k: v.detach().clone() for k, v in method.state_dict().items()})
    t0, step = time.time(), 0
    bar = tqdm(total=cfg.epochs * len(loader), desc="training", disable=not (progress and acc.is_main_process))
    try:
        for epoch in range(cfg.epochs):
            lr = lr_at(epoch, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            wrapped.train()
            total, count = 0.0, 0
            for batch in loader:
                inputs, y = to_inputs(batch)
                with acc.autocast():
                    loss = wrapped(inputs, y)
                if not torch.isfinite(loss):
                    method.load_state_dict(good_state)
                    result.stopped = True
                    result.reason = (f"loss became {loss.item()} at epoch {epoch + 1}, step {step}: training "
                                     f"stopped and the weights of the last good epoch ({epoch}) were kept. "
                                     "Try a lower learning rate (--lr) or fp32 precision.")
                    raise StopIteration
                opt.zero_grad(set_to_none=True)
                acc.backward(loss)
                opt.step()
                total += loss.item() * y.shape[0]
                count += y.shape[0]
                step += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
                if cfg.log_every and step % cfg.log_every == 0:
                    _append_jsonl(log, {"step": step, "epoch": epoch + 1, "loss": loss.item(), "lr": lr})
                if stop_event is not None and stop_event.is_set():
                    break
            row = {"epoch": epoch + 1, "loss": total / max(1, count), "lr": lr, "seconds": time.time() - t0}
            if val_data and cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                row["val_accuracy"] = evaluate(method, backbone, val_data, mode=cfg.eval_mode,
                                               features=val_feats)["accuracy"]
            state = {k: v.detach().clone() for k, v in method.state_dict().items()}
            if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
                method.load_state_dict(good_state)
                result.stopped = True
                result.reason = (f"weights became non-finite (NaN/inf) in epoch {epoch + 1}, so the loss would be too: "
                                 "training stopped and "
                                 f"the weights of the last good epoch ({epoch}) were kept. Try a lower learning "
                                 "rate (--lr) or fp32 precision.")
                break
            good_state = state
            result.history.append(row)
            _append_jsonl(log, row)
            if on_epoch is not None:
                on_epoch(dict(row, epochs=cfg.epochs))
            if stop_event is not None and stop_event.is_set():
                result.stopped, result.reason = True, f"stopped on request after epoch {epoch + 1}"
                break
    except StopIteration:
        pass
    except KeyboardInterrupt:
        result.stopped, result.reason = True, f"interrupted (Ctrl-C) after {len(result.history)} epochs"
    finally:
        bar.close()
    result.seconds = time.time() - t0
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
        kwargs = {"mode": mode}
        if "generator" in method.predict.__code__.co_varnames:
            kwargs.update(draws=draws, generator=gen)
        logits = method.predict(inputs, **kwargs).float().cpu()
        correct += int((logits.argmax(-1) == y).sum())
        nll += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
    return {"accuracy": 100.0 * correct / n, "nll": nll / n, "n": n, "mode": mode}
