"""Image-feature cache (pini_core.features): content keys, owned FeatureCache objects,
batched augmented views (one decode per image, views batched through the tower),
fp16 storage only when safe, seeded augmentation that leaves torch's global RNG alone."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from engine_fixtures import colour_data, shared_backbone
from PIL import Image

from pini_core import features
from pini_core.errors import ConfigError, PiniError
from pini_core.features import FeatureCache, encode_images


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


@pytest.fixture(scope="module")
def data():
    return colour_data(per_class=3)  # 6 PIL images, 2 classes


def _copy(data):
    return [(img.copy(), y) for img, y in data]


def test_cache_is_keyed_by_pixel_content_not_object_identity(bb, data):
    cache = FeatureCache()
    a = encode_images(bb, data, progress=False, cache=cache)
    assert a.shape == (len(data), bb.embed_dim) and a.dtype == torch.float32
    assert encode_images(bb, _copy(data), progress=False, cache=cache) is a  # new objects, same pixels
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
    changed = _copy(data)
    changed[0][0].putpixel((0, 0), (0, 0, 0))  # one pixel differs
    b = encode_images(bb, changed, progress=False, cache=cache)
    assert b is not a and len(cache) == 2
    relabelled = [(img, 1 - y) for img, y in data]
    assert encode_images(bb, relabelled, progress=False, cache=cache) is not a  # labels are part of the key
    # a different owner's cache does not see these entries
    other = FeatureCache()
    c = encode_images(bb, data, progress=False, cache=other)
    assert c is not a and other.misses == 1
    torch.testing.assert_close(c, a)


def test_cache_is_keyed_by_file_size_and_mtime(bb, data, tmp_path):
    paths = []
    for i, (img, y) in enumerate(data[:3]):
        p = tmp_path / f"{i}.png"
        img.save(p)
        paths.append((str(p), y))
    cache = FeatureCache()
    a = encode_images(bb, paths, progress=False, cache=cache)
    assert encode_images(bb, paths, progress=False, cache=cache) is a
    Image.new("RGB", (32, 32), (255, 255, 0)).save(paths[1][0])  # the file is replaced
    st = os.stat(paths[1][0])
    os.utime(paths[1][0], ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    b = encode_images(bb, paths, progress=False, cache=cache)
    assert b is not a
    assert not torch.allclose(a[1], b[1]) and torch.allclose(a[0], b[0])


def test_augmented_views_batched_seeded_and_global_rng_untouched(bb, data, monkeypatch):
    loads, passes = [], []
    real_load, real_encode = features.load_image, type(bb).encode_image
    monkeypatch.setattr(features, "load_image", lambda src, **k: loads.append(1) or real_load(src, **k))
    monkeypatch.setattr(bb, "encode_image", lambda px: passes.append(px.shape[0]) or real_encode(bb, px),
                        raising=False)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    v = encode_images(bb, data, augment=True, views=4, seed=1, batch_size=8, progress=False, use_cache=False)
    assert torch.equal(torch.random.get_rng_state(), before)  # caller's RNG stream unchanged
    assert v.shape == (4, len(data), bb.embed_dim)
    assert len(loads) == len(data)  # each image decoded once for its 4 views
    assert passes == [8, 8, 8]  # 2 images x 4 views per tower pass
    assert not torch.allclose(v[0], v[1])  # different crops per view
    monkeypatch.undo()
    again = encode_images(bb, data, augment=True, views=4, seed=1, batch_size=3, progress=False, use_cache=False)
    torch.testing.assert_close(again, v, rtol=1e-5, atol=1e-5)  # same seed, other batching: same views
    other = encode_images(bb, data, augment=True, views=4, seed=2, batch_size=8, progress=False, use_cache=False)
    assert not torch.allclose(other, v)
    # views of a prefix of the data are the same crops (per-image seeds)
    head = encode_images(bb, data[:2], augment=True, views=4, seed=1, progress=False, use_cache=False)
    torch.testing.assert_close(head, v[:, :2], rtol=1e-5, atol=1e-5)


def test_fp16_storage_and_its_range_check(bb, data, monkeypatch, caplog):
    cache = FeatureCache()
    full = encode_images(bb, data, augment=True, views=2, seed=0, progress=False, cache=cache)
    half = encode_images(bb, data, augment=True, views=2, seed=0, progress=False, cache=cache, dtype="fp16")
    assert half.dtype == torch.float16 and full.dtype == torch.float32 and len(cache) == 2
    assert half.element_size() * half.numel() * 2 == full.element_size() * full.numel()
    torch.testing.assert_close(half.float(), full, rtol=1e-3, atol=1e-3)
    real = type(bb).encode_image
    monkeypatch.setattr(bb, "encode_image", lambda px: real(bb, px) * 1e6, raising=False)
    with caplog.at_level(logging.WARNING, logger="pini_core.features"):
        big = encode_images(bb, data, progress=False, use_cache=False, dtype=torch.float16)
    assert big.dtype == torch.float32 and torch.isfinite(big).all()
    assert "exceed the float16 range" in caplog.text
    with pytest.raises(ConfigError, match="storage dtype must be one of fp32, fp16"):
        encode_images(bb, data, dtype="int8", progress=False)
    with pytest.raises(ConfigError, match="views must be >= 1"):
        encode_images(bb, data, augment=True, views=0, progress=False)
    assert issubclass(ConfigError, PiniError)


def test_feature_cache_bounds_and_default_cache(bb, data):
    t = torch.zeros(10)
    c = FeatureCache(max_entries=2)
    for k in "abc":
        c.put(k, t.clone())
    assert "a" not in c and "b" in c and "c" in c and len(c) == 2
    c.get("b")
    c.put("d", t.clone())
    assert "c" not in c and "b" in c  # least recently used goes first
    c = FeatureCache(max_entries=None, max_bytes=100)
    for k in "abc":
        c.put(k, t.clone())  # 40 bytes each
    assert len(c) == 2 and c.nbytes == 80
    features.clear_cache()
    a = encode_images(bb, data, progress=False)
    assert encode_images(bb, _copy(data), progress=False) is a  # module default, backward compatible
    features.clear_cache()
    assert len(features.DEFAULT_CACHE) == 0
    # unidentifiable sources (arbitrary file objects) are encoded but not cached
    assert features.data_fingerprint([(object(), 0)]) is None
    assert features.data_fingerprint(data) == features.data_fingerprint(_copy(data))
    arr = np.zeros((4, 4, 3), np.uint8)
    assert features.data_fingerprint([(Image.fromarray(arr), 0)]) != features.data_fingerprint(
        [(Image.fromarray(arr + 1), 0)])
