"""The multimodal noise generator of MuNG (paper Fig. 1b).

Queries are the projected visual tokens of one image, keys/values are the word embeddings of
that sample's own text tokens. The attention output o gives the mean and std of a Gaussian and
the reparameterised noise is added to the visual tokens before they enter the LLM decoder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import MuNGConfig

NOISE_MODES = ("sample", "mean", "off")


@dataclass
class MuNGOutput:
    tokens: torch.Tensor      # [B, N, dv] visual tokens after noise injection
    noise: torch.Tensor       # [B, N, dv] the injected noise  z = mu + sigma * eps
    mu: torch.Tensor          # [B, N, dv]
    sigma: torch.Tensor       # [B, N, dv]
    eps: torch.Tensor         # [B, N, dv] the standard normal draw used (zeros in "mean" mode)
    attn: torch.Tensor        # [B, H, N, T] cross-attention weights (0 on padding / other samples)


class MultiHeadCrossAttention(nn.Module):
    """Visual tokens (queries) attend to the sample's own text embeddings (keys/values)."""

    def __init__(self, cfg: MuNGConfig):
        super().__init__()
        d, h = cfg.visual_dim, cfg.num_heads
        self.num_heads, self.head_dim = h, d // h
        self.q_proj = nn.Linear(cfg.visual_dim, d)
        self.k_proj = nn.Linear(cfg.text_dim, d)
        self.v_proj = nn.Linear(cfg.text_dim, d)
        self.out_proj = nn.Linear(d, d)
        self.scale = {"head": 1 / math.sqrt(self.head_dim), "model": 1 / math.sqrt(d), "none": 1.0}[cfg.attn_scale]

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor):
        b, n, _ = visual.shape
        t = text.shape[1]
        q = self.q_proj(visual).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)   # [B,H,N,dh]
        k = self.k_proj(text).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)     # [B,H,T,dh]
        v = self.v_proj(text).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale                         # [B,H,N,T]
        keep = text_mask[:, None, None, :].to(torch.bool)
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        # softmax over the sample's own, non-padding text tokens; a sample without text gets 0 rows
        attn = torch.softmax(scores.float(), dim=-1).to(scores.dtype) * keep
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, -1)
        return self.out_proj(out), attn


class MuNGGenerator(nn.Module):
    """G(eps, v, t) = mu(v, t) + sigma(v, t) * eps, added to the visual tokens v."""

    def __init__(self, cfg: MuNGConfig):
        super().__init__()
        self.config = cfg
        self.cross_attn = MultiHeadCrossAttention(cfg)
        self.mu_head = nn.Linear(cfg.visual_dim, cfg.visual_dim)
        self.sigma_head = nn.Linear(cfg.visual_dim, cfg.visual_dim)
        if cfg.init == "xavier":  # the authors' Qwen code: Xavier-uniform weights, default biases
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
        if cfg.init == "small":
            nn.init.zeros_(self.mu_head.weight)
            nn.init.zeros_(self.mu_head.bias)
            nn.init.normal_(self.sigma_head.weight, std=1e-3)
            b0 = math.log(cfg.sigma_init) if cfg.sigma == "exp" else cfg.sigma_init
            nn.init.constant_(self.sigma_head.bias, b0)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def distribution(self, visual, text, text_mask):
        """Return (mu, sigma, attn) for visual [B,N,dv], text [B,T,dt], text_mask [B,T]."""
        o, attn = self.cross_attn(visual, text, text_mask)
        mu = self.mu_head(o)                                   # mean of the noise (MuNG Fig. 1b)
        s = self.sigma_head(o)
        sigma = s.abs() if self.config.sigma == "abs" else s.exp()   # code: |.| (LLaVA) / exp (Qwen)
        return mu, sigma, attn

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None,
                *, eps: torch.Tensor | None = None, generator: torch.Generator | None = None,
                mode: str = "sample") -> MuNGOutput:
        if visual.dim() != 3 or text.dim() != 3:
            raise ValueError(f"expected visual [B,N,d] and text [B,T,d], got {tuple(visual.shape)} and {tuple(text.shape)}")
        if visual.shape[0] != text.shape[0]:
            raise ValueError(f"batch mismatch: {visual.shape[0]} images vs {text.shape[0]} texts")
        if visual.shape[-1] != self.config.visual_dim or text.shape[-1] != self.config.text_dim:
            raise ValueError(
                f"MuNG generator expects visual dim {self.config.visual_dim} and text dim {self.config.text_dim}, "
                f"got {visual.shape[-1]} and {text.shape[-1]}: the generator was built for another host")
        if mode not in NOISE_MODES:
            raise ValueError(f"mode must be one of {NOISE_MODES}, got {mode!r}")
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        dtype = self.mu_head.weight.dtype
        mu, sigma, attn = self.distribution(visual.to(dtype), text.to(dtype), text_mask)
        if mode == "off":
            eps = torch.zeros_like(mu)
            noise = torch.zeros_like(mu)
        else:
            if mode == "mean":
                eps = torch.zeros_like(mu)
            elif eps is None:
                eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype,
                                  device=generator.device if generator is not None else mu.device).to(mu.device)
            elif eps.shape != mu.shape and not (eps.dim() == 3 and eps.shape[0] == 1 and eps.shape[1:] == mu.shape[1:]):
                raise ValueError(f"eps override has shape {tuple(eps.shape)}, expected {tuple(mu.shape)}")
            eps = eps.to(mu.device, mu.dtype).expand_as(mu)     # a [1, N, d] eps is shared by the batch
            noise = mu + sigma * eps                           # reparameterisation (PiNI Eq. 12/14)
        tokens = visual + noise.to(visual.dtype)
        return MuNGOutput(tokens=tokens, noise=noise, mu=mu, sigma=sigma, eps=eps, attn=attn)
