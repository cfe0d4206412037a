"""`python -m pini_core prompt-sensitivity` (issue 14): the ratio of the training loss's gradient
at PiNI's "x" placeholders to that at CoOp's random-init context, on a fixed batch. Fast:
a tiny random-init tower."""
import json
import math

import pytest
import torch

from pini_core.backbone import load_backbone
from pini_core.commands import sensitivity
from pini_core.errors import PiniError

TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8},
        "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1}}


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return load_backbone("tiny-sensitivity-tower", None, device="cpu", model_cfg=TINY)


def test_ratio_is_finite_positive_and_reproducible(tiny):
    feats, labels, classnames, template = sensitivity.fixed_batch(tiny, "toy-clutter", shots=1, seed=1)
    assert feats.shape == (10, 16) and len(set(labels.tolist())) == 10
    a = sensitivity.prompt_sensitivity(tiny, feats, labels, classnames, template, seed=3)
    b = sensitivity.prompt_sensitivity(tiny, feats, labels, classnames, template, seed=3)
    assert a == b  # same batch, same seed: bit-identical
    for key in ("pini", "pini_template", "coop", "ratio"):
        assert math.isfinite(a[key]) and a[key] > 0, (key, a)
    assert a["ratio"] == pytest.approx(a["pini"] / a["coop"])
    c = sensitivity.prompt_sensitivity(tiny, feats, labels, classnames, template, seed=4)
    assert c["coop"] != a["coop"]  # the seed drives CoOp's random context init


def test_the_gradient_is_the_prompt_embeddings_gradient(tiny):
    """d loss / d mu_t equals the gradient w.r.t. the prompt embeddings at the placeholders
    summed over the class prompts (additive fusion, one draw shared by all classes)."""
    from pini_core.model import PiNIModel
    from pini_core.noise import NoiseConfig

    feats, labels, classnames, template = sensitivity.fixed_batch(tiny, "toy-clutter", shots=1, seed=1)
    cfg = NoiseConfig(visual_location="none")
    torch.manual_seed(0)
    m = PiNIModel(tiny, classnames, template, cfg)
    m.shared_prefix = False
    noise = m.text_gen.mu.detach().unsqueeze(0)  # eps-free noise = mu
    emb = m.noisy_prompt_embeddings(noise)[0].clone().requires_grad_(True)  # [C, L, W]
    text = tiny.encode_text_embeddings(emb, m.token_ids)
    logits = m._logits(feats.unsqueeze(0), text.unsqueeze(0))
    from pini_core.objective import pi_noise_bound

    g_emb, = torch.autograd.grad(pi_noise_bound(logits, labels), [emb])
    mu = m.text_gen.mu
    text2 = m.text_features(1, mode="mean")
    g_mu, = torch.autograd.grad(pi_noise_bound(m._logits(feats.unsqueeze(0), text2), labels), [mu])
    assert torch.allclose(g_mu, g_emb[:, m.prompt_span()].sum(0), atol=1e-6, rtol=1e-4)


def test_command_runs_and_refuses_bad_input(tiny, capsys, monkeypatch):
    monkeypatch.setattr(sensitivity, "measure", lambda *a, **k: {
        "model": "x", "batch": 1, "pini": 0.1, "pini_template": 0.2, "coop": 0.4, "ratio": 0.25})
    from pini_core.cli import main

    assert main(["prompt-sensitivity", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ratio"] == 0.25
    assert main(["prompt-sensitivity", "--shots", "0"]) == 2
    with pytest.raises(PiniError, match="not a model folder"):
        sensitivity._model_dir("ViT-B-16")
