"""The pi-noise objective and the task entropies it bounds.

    H(T)     = E_{x,y}[ -log p(y | x, P) ]                     (Eq. 3)
    H(T|eps) = E_{x,y,eps}[ -log p(y | x, eps, P) ]            (Eq. 5)
    I(T, eps) = H(T) - H(T|eps)                                (Eq. 1: eps is pi-noise when > 0)
    L ~= 1/(n m) sum_i sum_j -log q(y_i | x_i, G(eps_j, x_i, P), P)   (Eq. 13, upper-bounds Eq. 6)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pi_noise_bound(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 13: Monte Carlo estimate over n images x m noise draws of the variational
    bound L >= H(T|eps) (Eq. 6). logits [m, B, C] (or [B, C] for m = 1), labels [B].
    Plain cross-entropy (no KL/prior term), as in the authors' code."""
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    m, b, c = logits.shape
    return F.cross_entropy(logits.reshape(m * b, c), labels.repeat(m))


def conditional_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Monte Carlo estimate of H(T|eps) (Eq. 5) or, with noise-free logits, H(T) (Eq. 3):
    the mean of -log p(y | x, ...) over images (and draws). logits [m, B, C] or [B, C]."""
    return pi_noise_bound(logits, labels)


def mutual_information(h_t: float, h_t_given_eps: float) -> float:
    """Eq. 1: I(T, eps) = H(T) - H(T|eps)."""
    return h_t - h_t_given_eps
