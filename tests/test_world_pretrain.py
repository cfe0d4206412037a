"""The pretraining command runs end to end in a reduced setting and writes a loadable
open_clip local dir (so the recipe of the shipped checkpoint cannot rot)."""
import argparse
import json
import random

import open_clip
import pytest
import torch

from pini_core.world import pretrain


def _args(tmp_path, *extra):
    p = argparse.ArgumentParser()
    pretrain.add_arguments(p)
    return p.parse_args(["--tiny", "--threads", "1", "--out", str(tmp_path), "--eval-every", "2", *extra])


def test_tiny_pretraining_end_to_end(tmp_path):
    assert pretrain.run(_args(tmp_path)) == 0
    model = open_clip.create_model(f"local-dir:{tmp_path}")
    tok = open_clip.get_tokenizer(f"local-dir:{tmp_path}")
    meta = json.loads((tmp_path / "pini_meta.json").read_text())
    assert meta["steps"] == 3 and meta["seed"] == 0 and len(meta["learning_curve"]) == 2
    assert 0.0 <= meta["zero_shot_source"]["accuracy"] <= 100.0
    with torch.no_grad():
        f = model.encode_text(tok(["x " * 16 + "a photo of a star."]))
    assert f.shape == (1, 16) and torch.isfinite(f).all()


def test_same_seed_same_weights(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    pretrain.run(_args(a, "--eval-samples", "0", "--eval-every", "0"))
    pretrain.run(_args(b, "--eval-samples", "0", "--eval-every", "0"))
    assert (a / "open_clip_model.safetensors").read_bytes() == (b / "open_clip_model.safetensors").read_bytes()


def test_batches_are_reproducible_and_group_hard_negatives():
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=40)
    data = pretrain.CaptionedBatches(seed=1, steps=2, batch_size=16, tokenizer=tok, context_length=40,
                                     prefix_rate=0.5, rare_rate=0.0, image_size=48, group_size=8)
    x1, t1, texts1 = data.batch(0)
    x2, t2, texts2 = data.batch(0)
    assert torch.equal(x1, x2) and torch.equal(t1, t2) and texts1 == texts2
    assert x1.shape == (16, 3, 48, 48) and t1.shape == (16, 40)
    scenes = data.scenes(random.Random(0))
    group = scenes[:8]
    assert len({s.shape for s in group}) == 8 and len({s.colour for s in group}) == 1
    # captions with a CoOp-style prefix still end with EOT inside the context
    assert (t1.argmax(dim=-1) < 40).all() and any(t.startswith("x x") for t in texts1)


def test_prefix_never_pushes_the_caption_out_of_the_context():
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=40)
    data = pretrain.CaptionedBatches(0, 1, 8, tok, 40, prefix_rate=1.0, rare_rate=0.0, image_size=48)
    r = random.Random(0)
    long = "a close-up photo of four small purple striped hexagons on a checkered background."
    for _ in range(50):
        text = data.with_prefix(long, r)
        assert text.endswith(long) and len(tok.encode(text)) <= 38


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="--context-length must be >= 30"):
        pretrain.run(_args(tmp_path, "--context-length", "20"))
