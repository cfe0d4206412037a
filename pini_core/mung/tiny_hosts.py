"""Tiny random-init hosts built from transformers configs (offline), and batch builders for them.

Used by the tests (LLaVA and Qwen2.5-VL code paths) and by the embedded toy MLLM (LLaVA).
"""
from __future__ import annotations

import torch
from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                          Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLConfig,
                          Qwen2VLForConditionalGeneration)


def tiny_llava_config(*, vocab_size=64, hidden=32, layers=2, heads=4, image_size=32, patch_size=8,
                      vision_hidden=32, vision_layers=2, image_token_id=None, pad_token_id=0,
                      bos_token_id=None, eos_token_id=None) -> LlavaConfig:
    vc = CLIPVisionConfig(hidden_size=vision_hidden, image_size=image_size, patch_size=patch_size,
                          num_hidden_layers=vision_layers, num_attention_heads=heads,
                          intermediate_size=2 * vision_hidden)
    tc = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     num_key_value_heads=heads, intermediate_size=2 * hidden, vocab_size=vocab_size,
                     pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                     max_position_embeddings=512, tie_word_embeddings=False)
    return LlavaConfig(vision_config=vc.to_dict(), text_config=tc.to_dict(),
                       image_token_id=vocab_size - 1 if image_token_id is None else image_token_id,
                       vision_feature_layer=-1, vision_feature_select_strategy="full",
                       projector_hidden_act="gelu")


def tiny_llava(seed: int = 0, **kw) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(tiny_llava_config(**kw)).eval()


def llava_tokens_per_image(cfg: LlavaConfig) -> int:
    v = cfg.vision_config
    n = (v.image_size // v.patch_size) ** 2
    return n + (1 if cfg.vision_feature_select_strategy == "full" else 0)


def tiny_qwen25vl(seed: int = 0, vocab_size=200, hidden=32) -> Qwen2_5_VLForConditionalGeneration:
    torch.manual_seed(seed)
    cfg = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=2 * hidden, vocab_size=vocab_size, bos_token_id=None,
                         eos_token_id=None, pad_token_id=0,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}),
        vision_config=dict(depth=2, hidden_size=32, out_hidden_size=hidden, num_heads=4, intermediate_size=64,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                           fullatt_block_indexes=[1]),
        image_token_id=vocab_size - 4, video_token_id=vocab_size - 3, vision_start_token_id=vocab_size - 2,
        vision_end_token_id=vocab_size - 1)
    return Qwen2_5_VLForConditionalGeneration(cfg).eval()


def tiny_qwen2vl(seed: int = 0, vocab_size=200, hidden=32) -> Qwen2VLForConditionalGeneration:
    torch.manual_seed(seed)
    cfg = Qwen2VLConfig(
        text_config=dict(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=2 * hidden, vocab_size=vocab_size, bos_token_id=None,
                         eos_token_id=None, pad_token_id=0,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=hidden, num_heads=4, mlp_ratio=2, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=vocab_size - 4, video_token_id=vocab_size - 3, vision_start_token_id=vocab_size - 2,
        vision_end_token_id=vocab_size - 1)
    return Qwen2VLForConditionalGeneration(cfg).eval()


def qwen_batch(model, texts: list[list[int]], grids: list[tuple[int, int]], seed: int = 0) -> dict:
    """Left-padded Qwen2.5-VL batch: <vision_start> <image>*n <vision_end> text..., one image per row.

    grids: (h, w) in patches per image (multiples of the merge size). Returns input_ids,
    attention_mask, pixel_values [sum patches, C*T*P*P], image_grid_thw, mm_token_type_ids."""
    cfg = model.config
    vc = cfg.vision_config
    g = torch.Generator().manual_seed(seed)
    rows, types, pix, thw = [], [], [], []
    for text, (h, w) in zip(texts, grids):
        n = h * w // vc.spatial_merge_size ** 2
        ids = [cfg.vision_start_token_id] + [cfg.image_token_id] * n + [cfg.vision_end_token_id] + list(text)
        rows.append(ids)
        types.append([0] + [1] * n + [0] * (1 + len(text)))
        pix.append(torch.randn(h * w, 3 * vc.temporal_patch_size * vc.patch_size ** 2, generator=g))
        thw.append([1, h, w])
    length = max(len(r) for r in rows)
    input_ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    mm = torch.zeros(len(rows), length, dtype=torch.long)
    for i, (r, t) in enumerate(zip(rows, types)):
        input_ids[i, length - len(r):] = torch.tensor(r)
        mask[i, length - len(r):] = 1
        mm[i, length - len(r):] = torch.tensor(t)
    return dict(input_ids=input_ids, attention_mask=mask, pixel_values=torch.cat(pix),
                image_grid_thw=torch.tensor(thw), mm_token_type_ids=mm)


def llava_batch(model, texts: list[list[int]], seed: int = 0, pad_side: str = "right") -> dict:
    """Padded LLaVA batch: <image>*N text..., one image per row; pixel_values random."""
    cfg = model.config
    n = llava_tokens_per_image(cfg)
    g = torch.Generator().manual_seed(seed)
    rows = [[cfg.image_token_id] * n + list(t) for t in texts]
    length = max(len(r) for r in rows)
    pad = cfg.text_config.pad_token_id or 0
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(0, len(r)) if pad_side == "right" else slice(length - len(r), length)
        input_ids[i, sl] = torch.tensor(r)
        mask[i, sl] = 1
    size = cfg.vision_config.image_size
    return dict(input_ids=input_ids, attention_mask=mask,
                pixel_values=torch.randn(len(rows), 3, size, size, generator=g))
