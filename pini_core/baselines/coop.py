"""CoOp (Zhou et al., IJCV'22): learnable context vectors replace the prompt's words.

    prompt_c = [SOS] [v_1] ... [v_M] [class c tokens] [.] [EOS]    (class token at the end)
    t_c      = TextEncoder(prompt_c)  (CoOp-style: run the frozen text tower from embeddings)
    logits   = s * cos(f, t_c)

M = 16 context vectors shared by all classes (unified context), initialised
N(0, 0.02) (CoOp's default random init); only they train.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.templates import check_prompt_lengths
from .common import FeatureMethod

PLACEHOLDER = "X"  # CoOp's placeholder word for the context slots


class CoOp(FeatureMethod):
    def __init__(self, backbone, classnames: Sequence[str], n_ctx: int = 16, init_std: float = 0.02,
                 generator: Optional[torch.Generator] = None):
        super().__init__(backbone)
        if n_ctx < 1:
            raise ValueError(f"n_ctx (context vectors) must be >= 1, got {n_ctx}")
        if not classnames:
            raise ValueError("no class names given")
        self.classnames = list(classnames)
        self.n_ctx = n_ctx
        check_prompt_lengths(backbone, [c.replace("_", " ") for c in self.classnames], "{}.", n_ctx, PLACEHOLDER)
        prompts = [" ".join([PLACEHOLDER] * n_ctx) + " " + c.replace("_", " ") + "." for c in self.classnames]
        token_ids = backbone.tokenize(prompts)
        if (token_ids[:, -1] != 0).any():
            raise ValueError(f"a CoOp prompt ({n_ctx} context tokens + class name) is longer than the text "
                             f"encoder's context of {token_ids.shape[1]} tokens; use fewer context vectors")
        with torch.no_grad():
            embeds = backbone.embed_tokens(token_ids).float()  # [C, L, W]
        # Fixed pieces around the learnable context: SOS before, class + '.' + EOS after.
        self.register_buffer("token_ids", token_ids, persistent=False)
        self.register_buffer("token_prefix", embeds[:, :1], persistent=False)
        self.register_buffer("token_suffix", embeds[:, 1 + n_ctx:], persistent=False)
        ctx = torch.empty(n_ctx, embeds.shape[-1])
        nn.init.normal_(ctx, std=init_std) if generator is None else ctx.normal_(0.0, init_std, generator=generator)
        self.ctx = nn.Parameter(ctx.to(backbone.device))

    def prompt_embeddings(self) -> torch.Tensor:
        """[C, L, W]: SOS + shared context + class tokens (class token at the end)."""
        c = self.token_prefix.shape[0]
        return torch.cat([self.token_prefix, self.ctx.unsqueeze(0).expand(c, -1, -1), self.token_suffix], dim=1)

    def text_features(self) -> torch.Tensor:
        """[C, D] un-normalised text features of the C prompts (CoOp's TextEncoder).

        SOS + the shared context is the same prefix for every class, so it is encoded once
        (pini_core.text_prefix, exact); towers it does not cover, or `self.shared_prefix =
        False`, use the full encoder `Backbone.encode_text_embeddings`."""
        from ..text_prefix import encode_prompts

        prefix = torch.cat([self.token_prefix[0], self.ctx.to(self.token_prefix.dtype)], dim=0)  # [1 + M, W]
        return encode_prompts(self.backbone, prefix, self.token_suffix, self.token_ids,
                              enabled=getattr(self, "shared_prefix", None))

    def predict(self, inputs: Dict[str, torch.Tensor], *, mode: str = "mean", draws: int = 8,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        f = F.normalize(self.image_features(inputs), dim=-1)
        t = F.normalize(self.text_features(), dim=-1)
        return self.backbone.logit_scale * f @ t.t()
