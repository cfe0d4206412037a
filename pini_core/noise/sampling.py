"""The Gaussian noise of PiNI: positivity of sigma, reparameterised draws, fusion."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def positive_sigma(raw: torch.Tensor, mode: str) -> torch.Tensor:
    """sigma from an unconstrained head (Eq. 14: sigma = Diag(Sigma) >= 0)."""
    if mode == "abs":
        return raw.abs()  # authors' code
    if mode == "exp":
        return raw.exp()
    if mode == "softplus":
        return F.softplus(raw)
    if mode == "none":
        return raw  # code's LE: used as a std without constraint
    raise ValueError(f"unknown sigma mode {mode!r}")


def draw_eps(shape: Tuple[int, ...], draws: int, *, like: torch.Tensor, mode: str = "sample",
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """eps ~ N(0, I) of shape [draws, *shape]; zeros in `mean` mode."""
    full = (draws, *shape)
    if mode == "mean":
        return torch.zeros(full, device=like.device, dtype=like.dtype)
    if generator is not None:
        return torch.randn(full, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)
    return torch.randn(full, device=like.device, dtype=like.dtype)


def reparameterise(mu: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Eq. 12 / 14: G(eps, x, P) = mu(x, P) + sigma(x, P) * eps, eps ~ N(0, I).

    eps has one extra leading dim (the m draws) that broadcasts over mu and sigma.
    """
    return mu.unsqueeze(0) + sigma.unsqueeze(0) * eps


def fuse(x: torch.Tensor, noise: torch.Tensor, fusion: str) -> torch.Tensor:
    """Inject noise at its location: additive (default) or multiplicative x * (1 + noise),
    so that zero noise leaves x unchanged either way."""
    if fusion == "add":
        return x + noise
    if fusion == "mul":
        return x * (1.0 + noise)
    raise ValueError(f"unknown fusion {fusion!r}")
