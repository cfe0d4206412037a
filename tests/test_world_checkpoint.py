"""The shipped embedded CLIP (checkpoints/toyclip): format, size, and that it reproduces
the zero-shot accuracies recorded in its pini_meta.json."""
import json

import numpy as np
import pytest
import torch

from pini_core.world.scene import SHAPES
from pini_core.backbone import embedded_dir, load_backbone
from pini_core.errors import PiniError
from pini_core.world.zeroshot import load_toyclip, source_shape_set, zero_shot_accuracy

CKPT = embedded_dir()
META = json.loads((CKPT / "pini_meta.json").read_text())


@pytest.fixture(scope="module")
def loaded():
    torch.set_num_threads(1)
    return load_toyclip(CKPT)  # = load_backbone("embedded"): the one embedded-model loader


def test_files_are_safetensors_and_json_and_small():
    names = sorted(p.name for p in CKPT.iterdir())
    assert names == ["open_clip_config.json", "open_clip_model.safetensors", "pini_meta.json"]
    assert (CKPT / "open_clip_model.safetensors").stat().st_size <= 12 * 2**20
    from safetensors import safe_open

    with safe_open(str(CKPT / "open_clip_model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F16"}


def test_config_is_a_standard_openai_style_clip():
    cfg = json.loads((CKPT / "open_clip_config.json").read_text())
    m = cfg["model_cfg"]
    assert m["text_cfg"]["vocab_size"] == 49408 and m["text_cfg"]["context_length"] >= 40
    # open_clip's own towers (ModifiedResNet: a list of stage depths; ViT: patch_size), no timm
    assert isinstance(m["vision_cfg"]["layers"], list) or "patch_size" in m["vision_cfg"]
    assert "timm_model_name" not in m["vision_cfg"]
    assert "hf_model_name" not in m["text_cfg"]
    assert cfg["preprocess_cfg"]["size"] == m["vision_cfg"]["image_size"]


def test_loads_through_open_clip_local_dir(loaded):
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer

    model, tok = loaded.model, loaded.tokenizer
    assert loaded.identity["name"] == "embedded"
    assert isinstance(model, open_clip.CLIP)
    assert model.token_embedding.weight.shape[0] == 49408
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert isinstance(tok, SimpleTokenizer) and tok.context_length == model.positional_embedding.shape[0]
    # real BPE words: the tokenizer decodes its own encoding of a caption
    ids = tok.encode("a photo of a small red star")
    assert tok.decode(ids).strip() == "a photo of a small red star"


def test_meta_records_how_it_was_made():
    for key in ("seed", "steps", "batch_size", "train_seconds", "command", "zero_shot"):
        assert key in META, key
    assert META["command"].startswith("python -m pini_core")
    src = META["zero_shot"]["source"]
    assert src["n"] >= 2000 and src["chance"] < src["accuracy"] <= 100.0


def test_source_zero_shot_reaches_the_90_percent_target():
    assert META["zero_shot"]["source"]["accuracy"] >= 90.0


def test_reproduces_recorded_source_accuracy_on_a_fresh_sample(loaded):
    recorded = META["zero_shot"]["source"]
    seed = recorded["seed"] + 1  # fresh images, not the ones the number was measured on
    data = source_shape_set(2000, seed=seed)
    acc = zero_shot_accuracy(loaded, data, SHAPES, recorded["template"])
    assert abs(acc - recorded["accuracy"]) <= 2.0, (acc, recorded["accuracy"])
    # CoOp-style prompts (16 "x" placeholders before the template) do not throw it off
    acc16 = zero_shot_accuracy(loaded, data, SHAPES, recorded["template"], prefix_tokens=16)
    assert abs(acc16 - recorded["accuracy_with_16x_prefix"]) <= 2.5, (acc16, recorded)
    assert acc16 >= acc - 10.0


def test_toy_tasks_leave_room_to_adapt_and_are_above_chance(loaded):
    """Recomputes each task's zero-shot test accuracy (same seed -> same images) and checks
    it against the record, below the source accuracy and above chance."""
    from pini_core.world.tasks import TASK_DOMAINS, load_task

    rec = META["zero_shot"]["tasks"]
    source = META["zero_shot"]["source"]["accuracy"]
    for task in TASK_DOMAINS:
        s = load_task(task, seed=META["zero_shot"]["tasks_seed"], train_per_class=1, val_per_class=1)
        acc = zero_shot_accuracy(loaded, s.test, s.classnames, s.template)
        assert abs(acc - rec[task]["test"]) <= 1.0, (task, acc, rec[task]["test"])
        if task != "toy-shapes":
            # above chance, and at least 5 points (about 2 standard errors on 300 images) below source
            assert rec[task]["chance"] + 5 < acc < source - 5, (task, acc)


def test_pretrained_without_any_methods_placeholder_captions():
    """Issue 14: the shipped model's recipe put no prompt-learning placeholder ("x" prefix)
    before any caption; long captions come from natural extra text instead."""
    assert META.get("prefix_rate", 0.0) == 0.0
    assert 0.0 < META["extra_rate"] <= 1.0


def test_prompt_sensitivity_is_recorded_and_reproduces(loaded):
    """The sidecar's prompt sensitivity (`python -m pini_core prompt-sensitivity`) is what the
    shipped weights give on the recorded batch, with its random-init reference."""
    from pini_core.commands import sensitivity

    rec = META["prompt_sensitivity"]
    feats, labels, classnames, template = sensitivity.fixed_batch(loaded, rec["dataset"], rec["shots"], rec["seed"])
    res = sensitivity.prompt_sensitivity(loaded, feats, labels, classnames, template, seed=rec["seed"])
    assert res["ratio"] == pytest.approx(rec["ratio"], rel=1e-2)
    assert 0 < rec["random_init_reference"]["ratio"] < 10


def test_text_tower_is_not_blind_at_pinis_placeholders():
    """Issue 14's target: the ratio is no lower than a random-init tower's of the same architecture."""
    rec = META["prompt_sensitivity"]
    assert rec["ratio"] >= rec["random_init_reference"]["ratio"], rec


def test_wrong_directory_gives_a_clear_error(tmp_path):
    with pytest.raises(PiniError, match="run `python -m pini_core pretrain"):
        load_toyclip(tmp_path)


def test_zero_shot_accuracy_is_the_baselines_zero_shot_clip(loaded):
    """One zero-shot path: the world's accuracy is ZeroShotCLIP's, on the engine's transform."""
    from pini_core.baselines import ZeroShotCLIP
    from pini_core.features import test_transform

    data = source_shape_set(40, seed=3)
    px = torch.stack([test_transform(loaded)(img) for img, _ in data])
    with torch.no_grad():
        pred = ZeroShotCLIP(loaded, SHAPES, "x x a photo of a {}.").predict({"pixels": px}).argmax(-1)
    expect = 100.0 * float((pred == torch.tensor([y for _, y in data])).float().mean())
    assert zero_shot_accuracy(loaded, data, SHAPES, "a photo of a {}.", prefix_tokens=2, batch_size=7) == \
        pytest.approx(expect)
    with pytest.raises(PiniError, match="at least one"):
        zero_shot_accuracy(loaded, [], SHAPES, "a photo of a {}.")


def test_local_dir_and_embedded_are_the_same_weights(loaded):
    other = load_backbone(f"local-dir:{CKPT}", device="cpu")
    assert other.identity["fingerprint"] == loaded.identity["fingerprint"]
    img = source_shape_set(4, seed=3)
    with torch.no_grad():
        x = torch.stack([loaded.preprocess(d[0]) for d in img])
        assert torch.equal(other.encode_image(x), loaded.encode_image(x))
    star = loaded.tokenizer.encode("star")
    assert len(star) == 1 and loaded.decode_token(star[0]) == "star"
    assert loaded.context_length == loaded.model.positional_embedding.shape[0]
    assert np.isfinite(loaded.token_embedding.detach().numpy()).all()
