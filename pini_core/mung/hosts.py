"""Where the visual tokens live in each supported host (transformers >= 5 and older layouts).

LLaVA: the output of the vision-language projector `model.model.multi_modal_projector`
([B_img, N_vis, d]); checkpoints converted with transformers < 4.52 expose it at the top level
(`model.multi_modal_projector`).
Qwen2-VL / Qwen2.5-VL: the output of the vision tower `model.model.visual` (older:
`model.visual`). In transformers 5.x the tower returns a BaseModelOutputWithPooling whose
`pooler_output` [sum_i N_i, d] is the merger output ALREADY put back into raster order
(`merged[argsort(window_index)]`, modeling_qwen2_5_vl.py); older versions return that tensor
directly. The merger submodule itself (`visual.merger`) emits window order for 2.5 and must not
be hooked. Qwen2-VL has no window attention, so its tower output is raster order too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

SUPPORTED = {
    "llava": ("model.multi_modal_projector", "multi_modal_projector"),
    "qwen2_vl": ("model.visual", "visual"),
    "qwen2_5_vl": ("model.visual", "visual"),
}


@dataclass
class HostSpec:
    family: str                     # "llava" | "qwen2_vl" | "qwen2_5_vl"
    visual_path: str                # dotted path of the hooked module
    visual_module: nn.Module
    hidden_size: int                # width of the visual tokens fed to the LLM
    text_dim: int                   # width of the word embeddings
    image_token_id: int
    video_token_id: int | None = None
    exclude_token_ids: set = field(default_factory=set)   # never used as generator keys
    merge_size: int = 1             # Qwen spatial merge (patch grid -> token grid)


def _get(model: nn.Module, dotted: str):
    obj = model
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    return obj if isinstance(obj, nn.Module) else None


def _cfg_get(cfg, name, default=None):
    return getattr(cfg, name, default) if cfg is not None else default


def inspect_host(model: nn.Module) -> HostSpec:
    """Identify the host family and the module whose output are the LLM-ready visual tokens."""
    cfg = getattr(model, "config", None)
    family = _cfg_get(cfg, "model_type")
    if family not in SUPPORTED:
        raise ValueError(
            f"MuNG supports LLaVA, Qwen2-VL and Qwen2.5-VL hosts (config.model_type in {sorted(SUPPORTED)}), "
            f"got model_type={family!r} ({type(model).__name__})")
    for path in SUPPORTED[family]:
        module = _get(model, path)
        if module is not None:
            break
    else:
        raise ValueError(f"could not find {' or '.join(SUPPORTED[family])} in {type(model).__name__}; "
                         "is this a conditional-generation model of that family?")
    text_cfg = _cfg_get(cfg, "text_config", cfg)
    hidden = _cfg_get(text_cfg, "hidden_size")
    emb = model.get_input_embeddings()
    image_token_id = _cfg_get(cfg, "image_token_id", _cfg_get(cfg, "image_token_index"))
    if image_token_id is None:
        raise ValueError("host config has no image_token_id / image_token_index")
    exclude = {int(image_token_id)}
    video_token_id = _cfg_get(cfg, "video_token_id")
    for name in ("video_token_id", "vision_start_token_id", "vision_end_token_id", "pad_token_id", "bos_token_id"):
        v = _cfg_get(cfg, name, _cfg_get(text_cfg, name))
        if v is not None:
            exclude.add(int(v))
    merge = 1
    if family != "llava":
        merge = int(_cfg_get(cfg.vision_config, "spatial_merge_size", 2))
    return HostSpec(family=family, visual_path=path, visual_module=module, hidden_size=int(hidden),
                    text_dim=int(emb.embedding_dim), image_token_id=int(image_token_id),
                    video_token_id=None if video_token_id is None else int(video_token_id),
                    exclude_token_ids=exclude, merge_size=merge)


def image_token_grid(spec: HostSpec, model: nn.Module, n_tokens: int, grid_thw=None) -> tuple[int, int, int]:
    """(rows, cols, offset) of the visual-token grid of one image, raster order; `offset` leading
    tokens (LLaVA's CLS with vision_feature_select_strategy="full") are not patches."""
    if spec.family == "llava":
        for offset in (0, 1):
            side = int(round((n_tokens - offset) ** 0.5))
            if side * side == n_tokens - offset:
                return side, side, offset
        raise ValueError(f"{n_tokens} visual tokens do not form a square patch grid")
    if grid_thw is None:
        raise ValueError("Qwen-VL visual tokens need image_grid_thw to know their grid")
    t, h, w = (int(x) for x in grid_thw)
    return h // spec.merge_size * t, w // spec.merge_size, 0
