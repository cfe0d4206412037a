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
                                     extra_rate=0.5, rare_rate=0.0, image_size=48, group_size=8)
    x1, t1, texts1 = data.batch(0)
    x2, t2, texts2 = data.batch(0)
    assert torch.equal(x1, x2) and torch.equal(t1, t2) and texts1 == texts2
    assert x1.shape == (16, 3, 48, 48) and t1.shape == (16, 40)
    scenes = data.scenes(random.Random(0))
    group = scenes[:8]
    assert len({s.shape for s in group}) == 8 and len({s.colour for s in group}) == 1
    # every caption ends with EOT inside the context
    assert (t1.argmax(dim=-1) < 40).all()


def test_no_caption_holds_a_methods_placeholder_or_scaffolding():
    """Issue 14: the stand-in CLIP must not be fitted to any method's prompt format: no
    PiNI "x" / CoOp "X" placeholder token in any pretraining caption, over a whole run's
    worth of caption draws (curriculum included), and long captions do occur."""
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=40)
    steps = 8000
    data = pretrain.CaptionedBatches(0, steps, 32, tok, 40, extra_rate=0.3, rare_rate=0.0005, image_size=48,
                                     group_size=8, label_warmup=0.4)
    placeholder_ids = set(tok.encode("x")) | set(tok.encode("X"))
    from pini_core.world.captions import caption

    longest, templates_seen = 0, set()
    for step in range(0, steps, 40):
        r = random.Random(f"0:{step}")
        for s in data.scenes(r):
            text = data.with_extra(caption(s, r, rare_rate=0.0005, bare_rate=data.bare_rate(step)), s, r)
            ids = tok.encode(text)
            assert not placeholder_ids & set(ids), text
            assert len(ids) <= 38, text
            longest = max(longest, len(ids))
            templates_seen.add(text.startswith("a photo of a "))
    assert longest >= 30  # long natural captions train the positions PiNI's prompts use
    assert templates_seen == {True, False}  # the dataset template is one phrasing among many


def test_long_captions_never_push_the_caption_out_of_the_context():
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=40)
    data = pretrain.CaptionedBatches(0, 1, 8, tok, 40, extra_rate=1.0, rare_rate=0.0, image_size=48)
    r = random.Random(0)
    long = "a close-up photo of four small purple striped hexagons on a checkered background."
    scene = data.scenes(random.Random(1))[0]
    for _ in range(50):
        text = data.with_extra(long, scene, r)
        assert long in text and len(tok.encode(text)) <= 38


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="--context-length must be >= 30"):
        pretrain.run(_args(tmp_path, "--context-length", "20"))
