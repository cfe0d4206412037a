"""Zero-shot CLIP: logits = s * cos(f, t_c), t_c = the text feature of the class prompt
(one template per dataset, paper Table 6; optionally a prompt ensemble)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from .common import FeatureMethod, Templates, text_classifier


class ZeroShotCLIP(FeatureMethod):
    """Nothing to train: `compute_loss` refuses, `predict` gives CLIP's logits."""

    def __init__(self, backbone, classnames: Sequence[str], templates: Templates):
        super().__init__(backbone)
        self.classnames = list(classnames)
        self.register_buffer("text_weights", text_classifier(backbone, classnames, templates), persistent=False)

    def compute_loss(self, inputs, labels):
        raise RuntimeError("zero-shot CLIP has no trainable parameters; evaluate it directly "
                           "(pini_core.trainer.evaluate) instead of calling fit")

    def predict(self, inputs: Dict[str, torch.Tensor], *, mode: str = "mean", draws: int = 8,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        f = F.normalize(self.image_features(inputs), dim=-1)
        return self.backbone.logit_scale * f @ self.text_weights.t()


# The 7-template ensemble CLIP's authors recommend for ImageNet (also Tip-Adapter's).
# `--zeroshot-ensemble` adds the dataset's own template to these.
ENSEMBLE_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
