"""MuNG generator configuration (JSON-serialisable)."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic

SIGMA_MODES = ("abs", "exp")
ATTN_SCALES = ("head", "model", "none")


@dataclass
class MuNGConfig:
    """Dimensions and options of the multimodal noise generator.

    visual_dim: width of the projected visual tokens (= the LLM hidden size for LLaVA / Qwen-VL).
    text_dim: width of the LLM word embeddings (keys/values of the cross-attention).
    num_heads: attention heads (paper: 8).
    sigma: "abs" -> sigma = |Linear(o)| (authors' LLaVA code), "exp" -> exp(Linear(o)) (Qwen code).
    attn_scale: "head" -> 1/sqrt(d_head) (standard multi-head attention, default),
        "model" -> 1/sqrt(d_model) (the authors' code), "none" -> no scaling.
    init: "small" (default) -> mu head zero-initialised and sigma head starting at the constant
        sigma_init, so the frozen host behaves as before at step 0; "default" -> PyTorch's default
        Linear init for every layer (as in the authors' code).
    sigma_init: the initial noise std for init="small".
    """

    visual_dim: int
    text_dim: int
    num_heads: int = 8
    sigma: str = "abs"
    attn_scale: str = "head"
    init: str = "small"
    sigma_init: float = 0.01
    host_family: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.visual_dim <= 0 or self.text_dim <= 0:
            raise ValueError(f"visual_dim and text_dim must be positive, got {self.visual_dim}, {self.text_dim}")
        if self.num_heads <= 0 or self.visual_dim % self.num_heads:
            raise ValueError(
                f"visual_dim ({self.visual_dim}) must be divisible by num_heads ({self.num_heads}); "
                "choose a head count that divides the host's hidden size")
        if self.sigma not in SIGMA_MODES:
            raise ValueError(f"sigma must be one of {SIGMA_MODES}, got {self.sigma!r}")
        if self.init not in ("small", "default"):
            raise ValueError(f"init must be 'small' or 'default', got {self.init!r}")
        if not self.sigma_init > 0:
            raise ValueError(f"sigma_init must be > 0, got {self.sigma_init}")
        if self.attn_scale not in ATTN_SCALES:
            raise ValueError(f"attn_scale must be one of {ATTN_SCALES}, got {self.attn_scale!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MuNGConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown MuNG config keys {sorted(unknown)}; was this file written by a newer version?")
        return cls(**d)

    def save(self, path: str | os.PathLike) -> None:
        atomic.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MuNGConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MuNG config not found: {path}")
        return cls.from_dict(json.loads(path.read_text()))
