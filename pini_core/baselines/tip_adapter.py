"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV'22), as the authors' code runs them.

Cache model built from the few-shot training set:
    K = normalise(mean over 10 augmented passes of the image features)   [NK, D]  (keys)
    V = one-hot labels                                                   [NK, C]  (values)
Logits for a normalised test feature f:
    A      = f K^T                                   (affinity)
    logits = 100 f W^T + alpha * exp(-beta (1 - A)) V      (W: normalised text classifier)
The factor 100 is the reference's constant (CLIP's logit scale). alpha and beta start at
the per-dataset `init_alpha`, `init_beta` and are then searched on the validation split
over the reference grid (search_scale, search_step). Tip-Adapter-F makes K learnable
(AdamW lr 1e-3, eps 1e-4, cosine, 20 epochs, batch 256 in the reference).

Deviation from the reference, on purpose: the reference evaluates Tip-Adapter-F on the
TEST set after every epoch and keeps the best epoch; we keep the last epoch (the CoOp
protocol: never select on test). The alpha/beta search stays on val, as in the reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import FeatureMethod, Templates, text_classifier

CLIP_SCALE = 100.0  # reference: clip_logits = 100. * features @ clip_weights

# Per-dataset settings of the reference configs: (init_alpha, init_beta, search_scale [beta, alpha]).
# search_step is [200, 20] everywhere. Unknown datasets get the default (ImageNet / Pets values).
TIP_DATASET_CONFIG: Dict[str, Tuple[float, float, Tuple[float, float]]] = {
    "caltech101": (3.0, 1.0, (12.0, 5.0)),
    "dtd": (2.0, 1.0, (13.0, 13.0)),
    "eurosat": (2.0, 1.0, (12.0, 10.0)),
    "fgvc_aircraft": (5.0, 1.0, (30.0, 30.0)),
    "food101": (1.17, 1.0, (10.0, 10.0)),
    "imagenet": (1.17, 1.0, (7.0, 3.0)),
    "oxford_flowers": (10.0, 1.0, (50.0, 50.0)),
    "oxford_pets": (1.17, 1.0, (7.0, 3.0)),
    "stanford_cars": (3.0, 1.0, (20.0, 10.0)),
    "sun397": (1.17, 1.0, (12.0, 10.0)),
    "ucf101": (3.0, 1.0, (7.0, 3.0)),
}
DEFAULT_CONFIG = (1.17, 1.0, (7.0, 3.0))
SEARCH_STEP = (200, 20)


@dataclass
class TipHyper:
    init_alpha: float
    init_beta: float
    search_scale: Tuple[float, float]  # (beta, alpha)
    search_step: Tuple[int, int] = SEARCH_STEP

    @classmethod
    def for_dataset(cls, name: Optional[str]) -> "TipHyper":
        from pini_core.data.names import canonical_dataset

        canon = canonical_dataset(name) if name else None
        a, b, scale = TIP_DATASET_CONFIG.get(canon, DEFAULT_CONFIG)
        return cls(init_alpha=a, init_beta=b, search_scale=scale)


def search_grid(scale: float, steps: int) -> torch.Tensor:
    """The reference grid: [i * (scale - 0.1) / steps + 0.1 for i in range(steps)]."""
    return torch.tensor([i * (scale - 0.1) / steps + 0.1 for i in range(steps)], dtype=torch.float64)


class TipAdapter(FeatureMethod):
    """Training-free Tip-Adapter; with `learnable_keys=True` it is Tip-Adapter-F."""

    def __init__(self, backbone, classnames: Sequence[str], templates: Templates,
                 cache_features: torch.Tensor, cache_labels: torch.Tensor, *,
                 hyper: Optional[TipHyper] = None, learnable_keys: bool = False):
        super().__init__(backbone)
        self.classnames = list(classnames)
        c = len(self.classnames)
        if cache_features.dim() == 3:  # [views, N, D]: average the augmented passes (reference: 10)
            cache_features = cache_features.float().mean(0)
        if cache_features.dim() != 2 or cache_features.shape[0] != cache_labels.shape[0]:
            raise ValueError(f"cache features must be [N, D] (or [views, N, D]) matching {cache_labels.shape[0]} "
                             f"labels, got {tuple(cache_features.shape)}")
        if int(cache_labels.max()) >= c or int(cache_labels.min()) < 0:
            raise ValueError(f"cache labels must be in [0, {c})")
        dev = backbone.device
        self.register_buffer("text_weights", text_classifier(backbone, classnames, templates), persistent=False)
        keys = F.normalize(cache_features.float(), dim=-1).to(dev)
        if learnable_keys:
            self.cache_keys = nn.Parameter(keys)
        else:
            self.register_buffer("cache_keys", keys)
        self.register_buffer("cache_values", F.one_hot(cache_labels.long(), c).float().to(dev))
        self.hyper = hyper or TipHyper(*DEFAULT_CONFIG)
        self.alpha = float(self.hyper.init_alpha)
        self.beta = float(self.hyper.init_beta)
        self.learnable_keys = learnable_keys

    def logits_parts(self, f: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(clip_logits, affinity) for normalised features f [B, D]."""
        return CLIP_SCALE * f @ self.text_weights.t(), f @ self.cache_keys.t()

    def combine(self, clip_logits, affinity, alpha: float, beta: float) -> torch.Tensor:
        cache_logits = torch.exp(-beta * (1.0 - affinity)) @ self.cache_values  # exp(-beta(1 - fK^T)) V
        return clip_logits + alpha * cache_logits

    def predict(self, inputs: Dict[str, torch.Tensor], *, mode: str = "mean", draws: int = 8,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        f = F.normalize(self.image_features(inputs), dim=-1)
        clip_logits, affinity = self.logits_parts(f)
        return self.combine(clip_logits, affinity, self.alpha, self.beta)

    @torch.no_grad()
    def search_hyperparameters(self, val_features: torch.Tensor, val_labels: torch.Tensor) -> Dict[str, float]:
        """Grid search of (alpha, beta) on the validation features, the reference's order
        (beta outer, alpha inner, the first best kept). Sets self.alpha / self.beta."""
        if len(val_labels) == 0:
            raise ValueError("Tip-Adapter's alpha/beta search needs a non-empty validation split")
        f = F.normalize(val_features.to(self.backbone.device).float(), dim=-1)
        y = val_labels.to(f.device)
        clip_logits, affinity = self.logits_parts(f)
        betas = search_grid(self.hyper.search_scale[0], self.hyper.search_step[0])
        alphas = search_grid(self.hyper.search_scale[1], self.hyper.search_step[1])
        best = (-1.0, self.beta, self.alpha)
        for beta in betas.tolist():
            cache_logits = torch.exp(-beta * (1.0 - affinity)) @ self.cache_values  # [B, C]
            # all alphas at once: [A, B, C]
            logits = clip_logits.unsqueeze(0) + alphas.to(f).view(-1, 1, 1) * cache_logits.unsqueeze(0)
            accs = (logits.argmax(-1) == y).float().mean(-1)
            i = int(torch.argmax(accs))  # first maximum over alphas
            if float(accs[i]) > best[0]:
                best = (float(accs[i]), beta, float(alphas[i]))
        self.beta, self.alpha = best[1], best[2]
        return {"val_accuracy": 100.0 * best[0], "alpha": self.alpha, "beta": self.beta}
