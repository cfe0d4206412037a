"""CLIP-Adapter (Gao et al., IJCV'24), as the authors' `clip_adapter.py` runs it:

    A(f) = ReLU(W2 ReLU(W1 f)),  W1: D -> D/4, W2: D/4 -> D, no biases
    f'   = r * A(f) + (1 - r) * f,  r = 0.2          (residual blend)
    logits = s * cos(f', t_c)                           (fixed hand-crafted prompts)
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import FeatureMethod, Templates, text_classifier


class Adapter(nn.Module):
    def __init__(self, dim: int, reduction: int = 4):
        super().__init__()
        if dim // reduction < 1:
            raise ValueError(f"adapter bottleneck would be empty: dim {dim} // reduction {reduction}")
        self.fc = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(),
                                nn.Linear(dim // reduction, dim, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class CLIPAdapter(FeatureMethod):
    def __init__(self, backbone, classnames: Sequence[str], templates: Templates,
                 ratio: float = 0.2, reduction: int = 4):
        super().__init__(backbone)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio (residual blend) must be in [0, 1], got {ratio}")
        self.ratio = ratio
        self.classnames = list(classnames)
        self.register_buffer("text_weights", text_classifier(backbone, classnames, templates), persistent=False)
        self.adapter = Adapter(backbone.embed_dim, reduction).to(backbone.device)

    def adapted_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.ratio * self.adapter(f) + (1.0 - self.ratio) * f  # residual blend

    def predict(self, inputs: Dict[str, torch.Tensor], *, mode: str = "mean", draws: int = 8,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        f = F.normalize(self.adapted_features(self.image_features(inputs)), dim=-1)
        return self.backbone.logit_scale * f @ self.text_weights.t()
