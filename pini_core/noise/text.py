"""Text noise generators f_t(P) -> (mu_t, sigma_t) (paper Sec. 3.4, Table 1).

The text generator cannot see the image (image-instanced prompts would be too costly,
paper Sec. 3.4), so it is a function of the prompts only: learnable embeddings (LE,
a constant function) or an MLP on the text features.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn

from .config import NoiseConfig
from .sampling import positive_sigma
from .visual import MuSigmaHeads

MuSigma = Tuple[torch.Tensor, torch.Tensor]


class LearnableEmbeddings(nn.Module):
    """LE: mu_t and sigma_t are free parameters of the noise's shape, init N(0, init_std).

    At the prompt: shape [n_prefix, W], one row per template token (the "x" placeholders
    and the template words before the class name), shared by all classes (code).
    At the text feature: shape [C, D], one row per class prompt.
    """

    def __init__(self, rows: int, dim: int, cfg: NoiseConfig):
        super().__init__()
        self.mu = nn.Parameter(torch.randn(rows, dim) * cfg.init_std)
        self.sigma_raw = nn.Parameter(torch.randn(rows, dim) * cfg.init_std)
        self.sigma_mode = cfg.text_sigma_mode  # authors' code: "none", sigma_t used raw as a std

    def forward(self, text: torch.Tensor = None) -> MuSigma:
        return self.mu, positive_sigma(self.sigma_raw, self.sigma_mode)


class TextFeatureMLP(nn.Module):
    """Text feature + MLP: (mu_t, sigma_t) = f(T(P)) for each class prompt's feature."""

    def __init__(self, dim: int, cfg: NoiseConfig):
        super().__init__()
        hidden = cfg.hidden_dim or dim
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.heads = MuSigmaHeads(hidden, dim, cfg.text_sigma_mode)

    def forward(self, text: torch.Tensor) -> MuSigma:
        return self.heads(self.body(text))


def build_text_generator(cfg: NoiseConfig, embed_dim: int, token_dim: int, n_prefix: int, n_classes: int):
    if cfg.text_location == "none":
        return None
    if cfg.text_location == "prompt":
        return LearnableEmbeddings(n_prefix, token_dim, cfg)
    if cfg.text_generator == "le":
        return LearnableEmbeddings(n_classes, embed_dim, cfg)
    return TextFeatureMLP(embed_dim, cfg)
