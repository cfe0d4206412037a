"""Engine backbone loading: offline failures are fast and say what to do; local weights
files, local open_clip directories and the embedded model load the same weights."""
from __future__ import annotations

import time

import pytest
import torch

import open_clip
from engine_fixtures import OTHER_CFG, TINY_CFG, TINY_NAME, save_local_open_clip_dir, shared_backbone, tiny_backbone
from pini_core.backbone import BackboneError, load_backbone

ALTERNATIVES = ("local weights file", "local-dir:", "--model embedded")


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


@pytest.fixture(scope="module")
def local_dir(bb, tmp_path_factory):
    return save_local_open_clip_dir(bb, tmp_path_factory.mktemp("tiny_clip"))


def test_uncached_pretrained_tag_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t0 = time.monotonic()
    with pytest.raises(BackboneError) as e:
        load_backbone("ViT-B-32", "openai", cache_dir=str(tmp_path), device="cpu")
    elapsed = time.monotonic() - t0
    assert elapsed < 30, f"an offline failure must not hang ({elapsed:.1f} s)"  # correctness bound
    msg = str(e.value)
    assert str(tmp_path) in msg and "not in the cache" in msg
    for alt in ALTERNATIVES:
        assert alt in msg


def test_hf_hub_offline_is_respected(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match="HF_HUB_OFFLINE is set") as e:
        load_backbone("ViT-B-32", "openai", cache_dir=str(tmp_path), device="cpu")
    assert str(tmp_path) in str(e.value) and "--model embedded" in str(e.value)


def test_a_download_that_hangs_times_out(tmp_path, monkeypatch):
    """Reachable hub but no answer: the worker-thread timeout gives up with the same advice."""
    import pini_core.backbone as backbone_mod

    monkeypatch.setattr(backbone_mod, "_probe_hub", lambda *a, **k: None)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", lambda *a, **k: time.sleep(5))
    t0 = time.monotonic()
    with pytest.raises(BackboneError, match=r"Timed out after 1 s") as e:
        load_backbone("ViT-B-32", "openai", cache_dir=str(tmp_path), device="cpu", timeout=1.0)
    assert time.monotonic() - t0 < 4
    assert str(tmp_path) in str(e.value) and "local-dir:" in str(e.value)


def test_a_failing_download_is_reported_with_its_cause(tmp_path, monkeypatch):
    import pini_core.backbone as backbone_mod

    def refuse(*a, **k):
        raise OSError("403 Forbidden from the hub")

    monkeypatch.setattr(backbone_mod, "_probe_hub", lambda *a, **k: None)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", refuse)
    with pytest.raises(BackboneError, match="Could not load pretrained weights for ViT-B-32 .*403 Forbidden"):
        load_backbone("ViT-B-32", "openai", cache_dir=str(tmp_path), device="cpu", timeout=5.0)


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(BackboneError, match="Unknown open_clip model name 'ViT-B-3'") as e:
        load_backbone("ViT-B-3", "openai", device="cpu")
    assert "Did you mean" in str(e.value) and "ViT-B-32" in str(e.value)
    assert "python -m pini_core models" in str(e.value)


def test_unknown_tag_lists_the_known_tags():
    with pytest.raises(BackboneError, match="Unknown pretrained tag 'not-a-tag' for ViT-B-32") as e:
        load_backbone("ViT-B-32", "not-a-tag", device="cpu")
    for tag in open_clip.list_pretrained_tags_by_model("ViT-B-32"):
        assert tag in str(e.value)
    assert "openai" in str(e.value)


def test_random_init_is_never_silent():
    with pytest.raises(BackboneError, match="random init is never used silently") as e:
        load_backbone("ViT-B-32", device="cpu")
    assert "--pretrained" in str(e.value)


def test_bad_precision_and_missing_files(tmp_path):
    with pytest.raises(BackboneError, match="precision must be one of"):
        load_backbone(TINY_NAME, model_cfg=TINY_CFG, device="cpu", precision="fp8")
    with pytest.raises(BackboneError, match="fp16 weights are not supported on CPU"):
        load_backbone(TINY_NAME, model_cfg=TINY_CFG, device="cpu", precision="fp16")
    with pytest.raises(BackboneError, match="Weights file not found"):
        load_backbone(TINY_NAME, str(tmp_path / "w.safetensors"), model_cfg=TINY_CFG, device="cpu")
    with pytest.raises(BackboneError, match="not an open_clip model directory: open_clip_config.json is missing"):
        load_backbone(f"local-dir:{tmp_path}", device="cpu")


def test_local_weights_file_loads_the_same_weights(bb, local_dir):
    weights = str(local_dir / "open_clip_model.safetensors")
    again = load_backbone(TINY_NAME, weights, model_cfg=TINY_CFG, device="cpu")
    assert again.identity["fingerprint"] == bb.identity["fingerprint"]
    assert again.identity["pretrained"] == weights
    for k, v in bb.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v)
    # a weights file of another architecture is refused, naming the file
    with pytest.raises(BackboneError, match="Could not load weights file .* into pini-test-other"):
        load_backbone("pini-test-other", weights, model_cfg=OTHER_CFG, device="cpu")


def test_local_dir_and_embedded_load_the_same_frozen_model(bb, local_dir, monkeypatch):
    loaded = load_backbone(f"local-dir:{local_dir}", device="cpu")
    assert loaded.identity["fingerprint"] == bb.identity["fingerprint"]
    assert loaded.identity["name"] == f"local-dir:{local_dir}"
    assert (loaded.embed_dim, loaded.image_size, loaded.context_length, loaded.token_dim) == (32, 32, 40, 32)
    assert not any(p.requires_grad for p in loaded.model.parameters()) and not loaded.model.training
    texts = ["a photo of a red.", "blue"]
    torch.testing.assert_close(loaded.encode_text(texts), bb.encode_text(texts))
    monkeypatch.setenv("PINI_EMBEDDED_DIR", str(local_dir))
    emb = load_backbone("embedded", device="cpu")
    assert emb.identity["name"] == "embedded" and emb.identity["fingerprint"] == bb.identity["fingerprint"]
    monkeypatch.setenv("PINI_EMBEDDED_DIR", str(local_dir / "missing"))
    with pytest.raises(BackboneError, match="embedded model is missing"):
        load_backbone("embedded", device="cpu")


def test_same_config_and_seed_give_the_same_fingerprint(bb):
    assert tiny_backbone(seed=0).identity["fingerprint"] == bb.identity["fingerprint"]


def test_vocabulary_helpers(bb):
    ids = bb.text_token_ids("a photo of")
    assert [bb.decode_token(i) for i in ids] == ["a", "photo", "of"]
    special = bb.special_token_ids()
    assert 49406 in special and 49407 in special  # <start_of_text>, <end_of_text>


# regression: the fingerprint once hashed only sums, so permuted weights matched
def test_fingerprint_changes_when_the_weights_change(bb):
    import copy

    from pini_core.backbone import _fingerprint

    other = copy.deepcopy(bb.model)
    red, blue = bb.text_token_ids("red")[0], bb.text_token_ids("blue")[0]
    with torch.no_grad():
        w = other.token_embedding.weight
        w[[red, blue]] = w[[blue, red]]  # swap two word embeddings
    texts = ["a photo of a red."]
    assert not torch.allclose(other.encode_text(bb.tokenize(texts)), bb.encode_text(texts))
    assert _fingerprint(other) != _fingerprint(bb.model)
