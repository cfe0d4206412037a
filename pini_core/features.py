"""Image features of a dataset through the frozen image encoder, computed once.

When no noise enters the image encoder, training only needs V(x): the trainer caches the
features of every training image and of the evaluation sets, which makes an epoch cost a
few matrix products instead of a forward pass of the image tower.

Fresh augmentation at cache speed: `encode_images(..., augment=True, views=V)` returns
[V, N, D] features of V random augmentations (CoOp's random resized crop + flip) of every
image; the trainer uses view `epoch % V` in each epoch, so with V = epochs every epoch sees
new crops, as the reference code's per-epoch re-augmentation does. The views are made
cheaply: every image is decoded once for all its views, all views of a group of images go
through the tower in one batched pass, and the features can be stored in fp16 (`dtype=`;
only when every value fits fp16's range). Randomness comes from a per-image seed inside a
forked RNG, so results are deterministic for a seed, independent of the batch size, and
torch's global RNG is left untouched.

The cache is a `FeatureCache` object that its owner (an experiment, a benchmark run) passes
in (`cache=`), so all methods and seeds of one run share the encoded views. Entries are keyed
by content: the backbone's weight fingerprint and precision, the data (pixel-byte hash of
in-memory images, path + size + mtime of files, the labels), the transform's settings, the
views, the seed and the storage dtype. A module-level default cache serves callers that pass
none (backward compatibility).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from typing import Optional, Sequence

import torch
from tqdm.auto import tqdm

from .backbone import Backbone
from .data.images import load_image
from .data.transforms import clip_test_transform, clip_train_transform
from .errors import ConfigError

log = logging.getLogger(__name__)

FP16_MAX = 65504.0  # largest finite float16
STORAGE_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16}


def test_transform(bb: Backbone):
    """CLIP's evaluation transform for `bb` (resize, centre crop, normalise) -> [3, H, W]."""
    return clip_test_transform(bb.image_size, bb.mean, bb.std)


def train_transform(bb: Backbone):
    """CoOp's training augmentation for `bb` (random resized crop 0.08-1 + flip) -> [3, H, W]."""
    return clip_train_transform(bb.image_size, bb.mean, bb.std)


class FeatureCache:
    """In-memory LRU cache of encoded image features, keyed by content (see `cache_key`).

    max_entries / max_bytes (None = unbounded) bound it; the least recently used entries go
    first. Thread-safe. Owned by whoever runs the experiments and passed to `encode_images`.
    """

    def __init__(self, max_entries: Optional[int] = 32, max_bytes: Optional[int] = None):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str) -> Optional[torch.Tensor]:
        with self._lock:
            t = self._items.get(key)
            if t is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return t

    def put(self, key: str, value: torch.Tensor) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while self._items and ((self.max_entries is not None and len(self._items) > self.max_entries)
                                   or (self.max_bytes is not None and self.nbytes > self.max_bytes
                                       and len(self._items) > 1)):
                self._items.popitem(last=False)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        return sum(t.numel() * t.element_size() for t in self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items


DEFAULT_CACHE = FeatureCache()


def clear_cache() -> None:
    """Empty the module-level default cache."""
    DEFAULT_CACHE.clear()


def _source_key(src) -> Optional[str]:
    """Content identity of one image source, or None if it cannot be identified cheaply."""
    from PIL import Image

    if isinstance(src, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(src))
        try:
            st = os.stat(path)
            return f"path:{path}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return f"path:{path}:missing"
    if isinstance(src, Image.Image):
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{src.mode}:{src.size}".encode())
        h.update(src.tobytes())
        return "pil:" + h.hexdigest()
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "bytes:" + hashlib.blake2b(bytes(src), digest_size=16).hexdigest()
    if hasattr(src, "getbuffer"):  # io.BytesIO
        return "bytes:" + hashlib.blake2b(bytes(src.getbuffer()), digest_size=16).hexdigest()
    return None


def data_fingerprint(data: Sequence) -> Optional[str]:
    """Content hash of [(source, label)]: pixel bytes of in-memory images, path + size +
    mtime of files, bytes of encoded images, and the labels. None if a source cannot be
    identified (an arbitrary file object): such data is not cached."""
    h = hashlib.sha1()
    for src, label in data:
        k = _source_key(src)
        if k is None:
            return None
        h.update(k.encode())
        h.update(f"|{int(label)};".encode())
    return h.hexdigest()


def cache_key(bb: Backbone, data: Sequence, augment: bool, views: int, seed: int,
              dtype: torch.dtype = torch.float32, transform=None) -> Optional[str]:
    """Content key of an `encode_images` result (None = data not identifiable, not cached)."""
    dk = data_fingerprint(data)
    if dk is None:
        return None
    tf = transform if transform is not None else (train_transform(bb) if augment else test_transform(bb))
    tk = hashlib.sha1(repr(tf).encode()).hexdigest()[:16]
    return (f"{bb.identity.get('fingerprint')}|{bb.precision}|{bb.image_size}|{dk}|{tk}|"
            f"aug={bool(augment)}|views={views}|seed={seed if augment else 0}|{dtype}")


def _storage_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in STORAGE_DTYPES:
            raise ConfigError(f"feature storage dtype must be one of fp32, fp16; got {dtype!r}")
        return STORAGE_DTYPES[dtype]
    if dtype not in (torch.float32, torch.float16):
        raise ConfigError(f"feature storage dtype must be torch.float32 or torch.float16; got {dtype}")
    return dtype


def _image_seed(seed: int, index: int) -> int:
    return (int(seed) * 1_000_003 + int(index)) % (2 ** 63 - 1)


@torch.no_grad()
def encode_images(bb: Backbone, data: Sequence, *, batch_size: int = 64, augment: bool = False, views: int = 1,
                  seed: int = 0, progress: bool = True, desc: str = "encoding images",
                  use_cache: bool = True, cache: Optional[FeatureCache] = None,
                  dtype=None) -> torch.Tensor:
    """Un-normalised image features V(x) of `data` [(source, label)] (CLIP image tower).

    Returns [N, D] when views == 1, else [views, N, D]. augment=False uses the CLIP test
    transform (views are then identical, so 1 is used); augment=True draws `views` random
    augmentations per image (CoOp's RandomResizedCrop(scale 0.08-1) + flip), seeded per
    image by (seed, index): deterministic, independent of batch_size, global RNG untouched.
    batch_size: images per pass through the tower (all views of ceil(batch_size / views)
    images go through together; each image is decoded once for all its views).
    dtype: storage dtype, torch.float32 (default) or torch.float16 / "fp16" (halves the
    memory; kept fp32 with a log message if any value exceeds fp16's range, |x| >= 65504).
    cache: the FeatureCache to use (default: the module-level one); use_cache=False skips it.
    Raises ConfigError on a bad dtype / views / batch_size; image loading errors as load_image.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if augment and views < 1:
        raise ConfigError(f"views must be >= 1, got {views}")
    views = views if augment else 1
    store = _storage_dtype(dtype)
    tf = train_transform(bb) if augment else test_transform(bb)
    cache = DEFAULT_CACHE if cache is None else cache
    key = cache_key(bb, data, augment, views, seed, store, tf) if use_cache else None
    if key is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    n = len(data)
    out = torch.empty(views, n, bb.embed_dim, dtype=store)
    per_pass = max(1, batch_size // views)  # images whose views share one tower pass
    bar = tqdm(total=views * n, desc=desc, disable=not progress, leave=False)
    with torch.random.fork_rng(devices=[]):  # augmentation draws from torch's RNG: keep the caller's
        for start in range(0, n, per_pass):
            idx = list(range(start, min(n, start + per_pass)))
            pixels = []
            for i in idx:
                image = load_image(data[i][0])
                if augment:
                    torch.manual_seed(_image_seed(seed, i))
                pixels.append(torch.stack([tf(image) for _ in range(views)]))  # [V, 3, H, W]
            px = torch.stack(pixels, dim=1).flatten(0, 1)  # view-major [V * b, 3, H, W]
            feats = torch.cat([bb.encode_image(px[j:j + batch_size]).cpu()
                               for j in range(0, px.shape[0], batch_size)])
            feats = feats.view(views, len(idx), -1)
            if out.dtype == torch.float16 and float(feats.abs().max()) >= FP16_MAX:
                log.warning("image features exceed the float16 range (max |x| = %.4g); storing them in fp32",
                            float(feats.abs().max()))
                out = out.float()
            out[:, start:start + len(idx)] = feats.to(out.dtype)
            bar.update(views * len(idx))
    bar.close()
    result = out[0] if views == 1 else out
    if key is not None:
        cache.put(key, result)
    return result


def labels_of(data: Sequence) -> torch.Tensor:
    """[N] int64 labels of [(source, label)]."""
    return torch.tensor([int(y) for _, y in data], dtype=torch.long)
