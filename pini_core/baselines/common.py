"""What every baseline shares: the frozen backbone held by reference, image features
from cached features or pixels, and the hand-crafted text classifier of CLIP.

A baseline is a *method* in the trainer's sense: an nn.Module with
``needs_pixels``, ``compute_loss(inputs, labels)`` and ``predict(inputs, ...)``, where
``inputs`` is ``{"features": [B, D]}`` (cached, un-normalised image features) or
``{"pixels": [B, 3, H, W]}``. Trainable parameters are those with requires_grad.
"""
from __future__ import annotations

import abc
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.templates import check_prompt_lengths

Templates = Union[str, Sequence[str]]


def _as_list(templates: Templates) -> list:
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if not templates:
        raise ValueError("at least one prompt template is needed, e.g. 'a photo of a {}.'")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"a prompt template must contain exactly one '{{}}' for the class name, got {t!r}")
    return templates


@torch.no_grad()
def text_classifier(backbone, classnames: Sequence[str], templates: Templates) -> torch.Tensor:
    """[C, D] L2-normalised class text features (CLIP's zero-shot classifier).

    One template per dataset (the paper, Table 6), or several: the prompt ensemble of
    CLIP / Tip-Adapter (normalise per template, average, renormalise). Underscores in
    class names become spaces, as in CoOp and Tip-Adapter."""
    if not classnames:
        raise ValueError("no class names given")
    names = [c.replace("_", " ") for c in classnames]
    check_prompt_lengths(backbone, names, _as_list(templates))  # refuse, never truncate (issue 12)
    per_template = []
    for t in _as_list(templates):
        feats = backbone.encode_text([t.format(c) for c in names])
        per_template.append(F.normalize(feats.float(), dim=-1))
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


class FeatureMethod(nn.Module, abc.ABC):
    """Base class: a method on top of the frozen image encoder's output feature."""

    needs_pixels = False

    def __init__(self, backbone):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # by reference: never a submodule

    def image_features(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, D] un-normalised image features (cached ones when given)."""
        if "features" in inputs:
            return inputs["features"].to(self.backbone.device).float()
        if "pixels" in inputs:
            with torch.no_grad():
                return self.backbone.encode_image(inputs["pixels"]).float()
        raise KeyError(f"inputs need 'features' or 'pixels', got keys {sorted(inputs)}")

    def compute_loss(self, inputs: Dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        logits = self.predict(inputs)
        return F.cross_entropy(logits, labels.to(logits.device))

    def forward(self, inputs: Dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        return self.predict(inputs, **kwargs)

    @abc.abstractmethod
    def predict(self, inputs: Dict[str, torch.Tensor], *, mode: str = "mean", draws: int = 8,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Logits [B, C]. `mode`, `draws` and `generator` are the method protocol's
        (`pini_core.methods.Method`); baselines without noise ignore them."""
