"""MuNG's parameter count as a share of its host, from configs only (meta device, no weights).

`python -m pini_core mung-params` prints the table for LLaVA-1.5-7B and Qwen2.5-VL-3B,
whose configs are rebuilt here from the values published with the checkpoints
(llava-hf/llava-1.5-7b-hf, Qwen/Qwen2.5-VL-3B-Instruct config.json).
"""
from __future__ import annotations

import json

import torch
from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                          Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration)

from .config import MuNGConfig
from .generator import MuNGGenerator


def llava15_7b_config() -> LlavaConfig:
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768)
    text = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096,
                       tie_word_embeddings=False)
    return LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_id=32000,
                       vision_feature_layer=-2, vision_feature_select_strategy="default",
                       projector_hidden_act="gelu")


def qwen25vl_3b_config() -> Qwen2_5_VLConfig:
    return Qwen2_5_VLConfig(
        text_config=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                         max_position_embeddings=128000,
                         rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31], in_channels=3),
        tie_word_embeddings=True, image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653)


def count(model_cls, cfg) -> int:
    with torch.device("meta"):
        model = model_cls(cfg)
    return sum(p.numel() for p in model.parameters())     # shared (tied) tensors counted once


def share_table(num_heads: int = 8) -> list[dict]:
    rows = []
    for name, cls, cfg, published in (
            ("LLaVA-1.5-7B", LlavaForConditionalGeneration, llava15_7b_config(), 7.06e9),
            ("Qwen2.5-VL-3B", Qwen2_5_VLForConditionalGeneration, qwen25vl_3b_config(), 3.75e9)):
        d = cfg.text_config.hidden_size
        with torch.device("meta"):
            g = MuNGGenerator(MuNGConfig(visual_dim=d, text_dim=d, num_heads=num_heads)).num_parameters()
        host = count(cls, cfg)
        rows.append({"host": name, "hidden": d, "mung_parameters": g, "host_parameters_meta_count": host,
                     "share_of_meta_count_%": round(100 * g / host, 3), "host_parameters_published": published,
                     "share_of_published_%": round(100 * g / published, 3)})
    return rows


def add_arguments(parser) -> None:
    parser.description = ("MuNG's parameter count as a share of LLaVA-1.5-7B and Qwen2.5-VL-3B, counted from their "
                          "published configs on the meta device (no weights are downloaded).")
    parser.add_argument("--heads", type=int, default=8, help="attention heads of the generator")


def run(args) -> int:
    from ..errors import ConfigError

    if args.heads < 1:
        raise ConfigError(f"--heads must be >= 1, got {args.heads}")
    print(json.dumps(share_table(num_heads=args.heads), indent=2))
    return 0
