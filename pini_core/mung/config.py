"""MuNG generator configuration (JSON-serialisable)."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..experiment import Recipe

SIGMA_MODES = ("abs", "exp")
ATTN_SCALES = ("head", "model", "none")
INITS = ("small", "default", "xavier")
# Which of the sample's tokens are the generator's keys/values (see MuNGConfig.keys).
KEY_RULES = ("prompt", "after_image", "non_image")


@dataclass
class MuNGConfig:
    """Dimensions and options of the multimodal noise generator.

    visual_dim: width of the projected visual tokens (= the LLM hidden size for LLaVA / Qwen-VL).
    text_dim: width of the LLM word embeddings (keys/values of the cross-attention).
    num_heads: attention heads (paper: 8).
    sigma: "abs" -> sigma = |Linear(o)| (authors' LLaVA code), "exp" -> exp(Linear(o)) (Qwen code).
    attn_scale: "head" -> 1/sqrt(d_head) (standard multi-head attention, default; the authors'
        Qwen code), "model" -> 1/sqrt(d_model) (the authors' LLaVA code), "none" -> no scaling.
    init: "small" (default) -> mu head zero-initialised and sigma head starting at the constant
        sigma_init, so the frozen host behaves as before at step 0; "default" -> PyTorch's default
        Linear init for every layer (the authors' LLaVA code); "xavier" -> Xavier-uniform weights
        for every Linear, biases left at PyTorch's default (the authors' Qwen code).
    sigma_init: the initial noise std for init="small".
    keys: which of the sample's tokens the visual tokens attend to (word embeddings):
        "prompt" (default) -> its text tokens that are not visual placeholders, padding, special
        ids (BOS, pad, vision start/end) or the answer (labels != -100): the noise never sees
        the answer, at training as at inference;
        "after_image" -> the authors' LLaVA code: the non-padding tokens after the sample's
        (last) image, the answer included when it is in input_ids (training); the system
        prompt and "USER:" before the image are excluded;
        "non_image" -> the authors' Qwen code: every token that is not a visual placeholder
        (system prompt, vision start/end, padding, answer).
    The named configurations `MUNG_PRESETS` ("project", "llava_code", "qwen_code") set these
    together; `MUNG_RECIPES` hold the matching training recipes (`pini_core.experiment.Recipe`).
    """

    visual_dim: int
    text_dim: int
    num_heads: int = 8
    sigma: str = "abs"
    attn_scale: str = "head"
    init: str = "small"
    sigma_init: float = 0.01
    host_family: str = ""
    keys: str = "prompt"
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
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.keys not in KEY_RULES:
            raise ValueError(f"keys must be one of {KEY_RULES}, got {self.keys!r}")
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


# ---------------------------------------------------------------------- named settings
# What each released MuNG code does (zhuruishu0848/MuNG, METHOD.md "More facts"), and the
# project's own default. "project" = the MuNGConfig defaults.
MUNG_PRESETS = {
    "project": dict(sigma="abs", attn_scale="head", init="small", keys="prompt"),
    "llava_code": dict(sigma="abs", attn_scale="model", init="default", keys="after_image"),
    "qwen_code": dict(sigma="exp", attn_scale="head", init="xavier", keys="non_image"),
}


# Generator training recipes: the one recipe type, `pini_core.experiment.Recipe`, run by
# `pini_core.trainer.fit` (`train.train_generator`). Common to all: AdamW (eps 1e-8), exactly
# transformers' cosine-with-warm-up per step (`hf_cosine_warmup`, as the released codes' HF
# Trainer), gradient norm clipped to 1.0, last partial batch dropped (as the earlier MuNG loop). The warm-up is
# ceil(total steps * warmup_ratio) steps. The toy's recipe has a step budget (`max_steps`,
# cycling through the data); the released codes' train one epoch (docs/deviations.md, row 17).
def _mung_recipe(**kw) -> Recipe:
    return Recipe(**{**dict(optimizer="adamw", schedule="hf_cosine_warmup", max_steps=500, max_grad_norm=1.0,
                            batch_size=32, drop_last=True, weight_decay=0.0, adam_betas=(0.9, 0.999),
                            warmup_epochs=0, augment=False, cache="off", eval_every=0), **kw})


MUNG_RECIPES = {
    # the toy host's recipe (`python -m pini_core mung train` defaults: lr 2e-3, 500 steps, batch 32);
    # warm-up 5 %: the earlier max(1, steps // 20) for every multiple of 20 steps (the shipped 1500)
    "project": _mung_recipe(lr=2e-3, warmup_ratio=0.05),
    # LLaVA script: lr 2e-4, weight decay 0, warm-up 3 % (beta2 not set there: the Trainer's 0.999).
    # Its script also trains LoRA (r 32) on the LLM and the projector; here only the generator trains.
    "llava_code": _mung_recipe(lr=2e-4, weight_decay=0.0, adam_betas=(0.9, 0.999), warmup_ratio=0.03,
                               max_steps=0, epochs=1),
    # Qwen script: generator only, lr 5e-4, weight decay 0.1, beta2 0.95, warm-up 1 %.
    "qwen_code": _mung_recipe(lr=5e-4, weight_decay=0.1, adam_betas=(0.9, 0.95), warmup_ratio=0.01,
                              max_steps=0, epochs=1),
}


def mung_recipe(name: str = "project", **overrides) -> Recipe:
    """A copy of `MUNG_RECIPES[name]` ("project", "llava_code", "qwen_code") with `overrides`
    (Recipe fields, e.g. lr=, max_steps=, batch_size=) replaced."""
    if name not in MUNG_RECIPES:
        raise ValueError(f"unknown MuNG recipe {name!r}; choose from {sorted(MUNG_RECIPES)}")
    return dataclasses.replace(MUNG_RECIPES[name], **overrides)


def code_preset_name(host_family: str) -> str:
    """The released code's preset for a host family: "llava_code" or "qwen_code"."""
    if host_family == "llava":
        return "llava_code"
    if host_family in ("qwen2_vl", "qwen2_5_vl"):
        return "qwen_code"
    raise ValueError(f"no released MuNG code for host family {host_family!r}; use llava or qwen2(_5)_vl")


def mung_preset(name: str, visual_dim: int, text_dim: int, **overrides) -> MuNGConfig:
    """A MuNGConfig from a named preset ("project", "llava_code", "qwen_code", or "authors":
    the released code of `overrides["host_family"]`); `overrides` replace fields."""
    if name == "authors":
        name = code_preset_name(overrides.get("host_family", ""))
    if name not in MUNG_PRESETS:
        raise ValueError(f"unknown MuNG preset {name!r}; choose from {sorted(MUNG_PRESETS)} or 'authors'")
    return MuNGConfig(visual_dim=visual_dim, text_dim=text_dim, **{**MUNG_PRESETS[name], **overrides})
