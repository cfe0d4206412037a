"""Tip-Adapter-F's fine-tuning of the cache keys, as its reference trains them: AdamW
(lr 1e-3, eps 1e-4), cosine annealing per step over all epochs, batch 256,
cross-entropy on the Tip-Adapter logits at the initial alpha/beta.

Its own loop because the shared trainer (`pini_core.trainer.fit`) implements the
CoOp recipe (SGD + warm-up); everything else is shared: the features come from the
engine's cache (`encode_images`, augmented views) and evaluation is the trainer's
`evaluate`. The reference re-augments every epoch; here epoch e uses cached view
e mod V of V augmented views (V = 10, the same passes that built the cache).
Last epoch kept (the reference keeps the best TEST epoch, which the protocol forbids).
"""
from __future__ import annotations

import math
import time
from typing import Dict, List

import torch
import torch.nn.functional as F

from .tip_adapter import TipAdapter


def fit_tip_adapter_f(method: TipAdapter, view_features: torch.Tensor, labels: torch.Tensor, *,
                      epochs: int = 20, lr: float = 1e-3, eps: float = 1e-4, batch_size: int = 256,
                      seed: int = 1, stop_event=None) -> List[Dict]:
    """Train the learnable keys. view_features: [V, N, D] augmented views (or [N, D])."""
    if not method.learnable_keys:
        raise ValueError("fit_tip_adapter_f needs TipAdapter(..., learnable_keys=True) (Tip-Adapter-F)")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    feats = view_features if view_features.dim() == 3 else view_features.unsqueeze(0)
    n = feats.shape[1]
    if n != labels.shape[0]:
        raise ValueError(f"{n} features but {labels.shape[0]} labels")
    dev = method.backbone.device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([method.cache_keys], lr=lr, eps=eps)
    steps_per_epoch = math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    history: List[Dict] = []
    t0 = time.time()
    for epoch in range(epochs):
        method.train()
        view = feats[epoch % feats.shape[0]]
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            f = F.normalize(view[idx].to(dev).float(), dim=-1)
            clip_logits, affinity = method.logits_parts(f)
            logits = method.combine(clip_logits, affinity, method.alpha, method.beta)
            loss = F.cross_entropy(logits, labels[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        history.append({"epoch": epoch + 1, "loss": total / n, "lr": sched.get_last_lr()[0],
                        "seconds": time.time() - t0})
        if stop_event is not None and stop_event.is_set():
            break
    method.eval()
    return history
