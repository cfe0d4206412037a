"""Image features of a dataset through the frozen image encoder, computed once.

When no noise enters the image encoder, training only needs V(x): the trainer caches the
features of every training image (a fixed number of augmented views, `views`) and of the
evaluation sets, which makes an epoch cost a few matrix products instead of a forward
pass of the image tower. The cache lives in memory, keyed by backbone weights + data +
transform settings, so the benchmark's methods share it.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Sequence

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .backbone import Backbone
from .data.transforms import ImageDataset, clip_test_transform, clip_train_transform, collate_images

_CACHE: "OrderedDict[str, torch.Tensor]" = OrderedDict()
_CACHE_MAX = 32


def test_transform(bb: Backbone):
    return clip_test_transform(bb.image_size, bb.mean, bb.std)


def train_transform(bb: Backbone):
    return clip_train_transform(bb.image_size, bb.mean, bb.std)


def _data_key(data: Sequence) -> str:
    h = hashlib.sha1()
    for src, label in data:
        h.update((src if isinstance(src, str) else f"pil:{id(src)}").encode())
        h.update(str(int(label)).encode())
    return h.hexdigest()


def cache_key(bb: Backbone, data: Sequence, augment: bool, views: int, seed: int) -> str:
    return f"{bb.identity.get('fingerprint')}|{bb.image_size}|{_data_key(data)}|{augment}|{views}|{seed}"


def clear_cache() -> None:
    _CACHE.clear()


@torch.no_grad()
def encode_images(bb: Backbone, data: Sequence, *, batch_size: int = 64, augment: bool = False, views: int = 1,
                  seed: int = 0, progress: bool = True, desc: str = "encoding images",
                  use_cache: bool = True) -> torch.Tensor:
    """Un-normalised image features: [N, D] when views == 1, else [views, N, D].

    augment=False uses the CLIP test transform (views are then identical, so 1 is used);
    augment=True draws `views` random augmentations per image (seeded)."""
    views = max(1, views if augment else 1)
    key = cache_key(bb, data, augment, views, seed)
    if use_cache and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    ds = ImageDataset(data, train_transform(bb) if augment else test_transform(bb))
    out = torch.empty(views, len(data), bb.embed_dim)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # augmentations draw from torch's global RNG
    try:
        bar = tqdm(total=views * len(data), desc=desc, disable=not progress, leave=False)
        for v in range(views):
            loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_images)
            for pixels, _, idx in loader:
                out[v, idx] = bb.encode_image(pixels).cpu()
                bar.update(len(idx))
        bar.close()
    finally:
        torch.random.set_rng_state(gen_state)
    result = out[0] if views == 1 else out
    if use_cache:
        _CACHE[key] = result
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return result


def labels_of(data: Sequence) -> torch.Tensor:
    return torch.tensor([int(y) for _, y in data], dtype=torch.long)
