"""How spread out the visual cross-attention is: a saturated CA generator attends to one
class for every image, so its mu is the same for every image (a constant shift, not an
image-conditioned noise). Issue 14 item 7.

For each image the CA's attention over the C class prompts is a distribution a(x) (feature
CA: one row [C]; raw-image CA: one row per patch, averaged over the patches' entropies and,
for the top class, over the patches' rows). Reported over a data set:

    entropy   H(a(x)) = -sum_c a_c(x) ln a_c(x)   (nats; Shannon entropy, not a paper equation)
    relative  mean_x H(a(x)) / ln C               (1 = uniform over classes, 0 = one class)
    top share the fraction of images whose most-attended class is the most common one
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Dict, Optional, Sequence

import torch

from ..model import PiNIModel


def has_visual_attention(model: PiNIModel) -> bool:
    """True when the model's visual generator is a cross-attention (it reports attention)."""
    return model.noise_cfg.has_visual and model.noise_cfg.visual_generator == "ca"


def attention_entropy_of(attn: torch.Tensor, classnames: Sequence[str]) -> Dict[str, Any]:
    """The summary above from attention weights [B, C] (feature CA) or [B, N, C] (raw-image
    CA, N patches); rows sum to 1. Returns {"mean_entropy" (nats), "max_entropy" (ln C),
    "relative_entropy", "top_class", "top_class_share" (0..1), "top_class_counts"
    {class: images}, "n", "num_classes"}."""
    if attn.dim() not in (2, 3) or attn.shape[-1] != len(classnames):
        raise ValueError(f"attention must be [B, C] or [B, N, C] with C = {len(classnames)}, got {list(attn.shape)}")
    a = attn.detach().double()
    ent = -(a * a.clamp_min(1e-300).log()).sum(-1)  # H per row; 0 * log 0 = 0
    if a.dim() == 3:  # one row per patch: mean entropy per image, top class of the mean row
        ent, a = ent.mean(-1), a.mean(-2)
    top = a.argmax(-1).tolist()
    counts = Counter(classnames[i] for i in top)
    top_class, top_n = counts.most_common(1)[0] if counts else ("", 0)
    c = len(classnames)
    h_max = math.log(c)
    mean_h = float(ent.mean()) if ent.numel() else float("nan")
    return {"mean_entropy": mean_h, "max_entropy": h_max,
            "relative_entropy": mean_h / h_max if c > 1 else float("nan"),
            "top_class": top_class, "top_class_share": top_n / len(top) if top else float("nan"),
            "top_class_counts": dict(counts.most_common()), "n": len(top), "num_classes": c}


@torch.no_grad()
def attention_entropy(model: PiNIModel, data: Sequence, *, features: Optional[torch.Tensor] = None,
                      batch_size: int = 64, mode: str = "mean", seed: int = 0) -> Optional[Dict[str, Any]]:
    """`attention_entropy_of` the model's visual CA attention over `data` [(image, label)].

    mode "mean": the keys are the text features at eps_t = 0 (deterministic); "sample": one
    seeded noise draw per batch, as at training. `features`: cached [N, D] image features of
    `data` (feature-level CA; else encoded). Returns None when the visual generator is not a
    cross-attention (MLP / CNN generators have no attention)."""
    if not has_visual_attention(model):
        return None
    from ..features import encode_images

    bb = model.backbone
    model.eval()
    gen = torch.Generator(device=bb.device).manual_seed(int(seed))
    rows = []
    if model.needs_pixels:
        from torch.utils.data import DataLoader

        from ..data.transforms import ImageDataset, collate_images
        from ..features import test_transform

        loader = DataLoader(ImageDataset(data, test_transform(bb)), batch_size=batch_size, collate_fn=collate_images)
        batches = ({"pixels": px} for px, _, _ in loader)
    else:
        feats = features if features is not None else encode_images(bb, data, progress=False)
        batches = ({"features": feats[i:i + batch_size]} for i in range(0, len(feats), batch_size))
    for inputs in batches:
        out = model.run(inputs, draws=1, mode=mode, generator=gen, keep_extras=True)
        rows.append(out.extras["visual_attention"][0].cpu())  # [B, C] or [B, N, C]
    attn = torch.cat(rows) if rows else torch.zeros(0, model.num_classes)
    res = attention_entropy_of(attn, model.classnames)
    res["mode"] = mode
    return res
