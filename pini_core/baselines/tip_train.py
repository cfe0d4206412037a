"""Tip-Adapter-F's fine-tuning of the cache keys, as its reference trains them: AdamW
(lr 1e-3, eps 1e-4), cosine annealing per step over all epochs, batch 256, cross-entropy
on the Tip-Adapter logits at the initial alpha/beta.

A thin convenience over the one training loop (`pini_core.trainer.fit`) with the
Tip-Adapter-F recipe (`pini_core.experiment.reference_recipe("tip_adapter_f", ...)`),
for callers that already hold the augmented view features. Epoch e uses cached view
e mod V of V augmented views (V = 10, the passes that built the cache). Last epoch kept
(the reference keeps the best TEST epoch, which the protocol forbids).
"""
from __future__ import annotations

from typing import Dict, List

import torch

from .tip_adapter import TipAdapter


def fit_tip_adapter_f(method: TipAdapter, view_features: torch.Tensor, labels: torch.Tensor, *,
                      epochs: int = 20, lr: float = 1e-3, eps: float = 1e-4, batch_size: int = 256,
                      seed: int = 1, stop_event=None) -> List[Dict]:
    """Train the learnable keys on view_features [V, N, D] (or [N, D]) with labels [N];
    returns the per-epoch history. Raises ValueError for a training-free TipAdapter."""
    import dataclasses

    from pini_core.experiment import reference_recipe
    from pini_core.trainer import fit

    if not method.learnable_keys:
        raise ValueError("fit_tip_adapter_f needs TipAdapter(..., learnable_keys=True) (Tip-Adapter-F)")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    feats = view_features if view_features.dim() == 3 else view_features.unsqueeze(0)
    if feats.shape[1] != labels.shape[0]:
        raise ValueError(f"{feats.shape[1]} features but {labels.shape[0]} labels")
    recipe = dataclasses.replace(reference_recipe("tip_adapter_f", 1), epochs=epochs, lr=lr, adam_eps=eps,
                                 batch_size=batch_size, eval_every=0)
    data = [(None, int(y)) for y in labels]
    res = fit(method, method.backbone, data, recipe, seed=seed, features=feats, stop_event=stop_event,
              progress=False)
    method.eval()
    return res.history
