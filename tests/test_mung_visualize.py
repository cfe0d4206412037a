"""MuNG figures: generator attention over patches and relevance maps before / after the noise."""
import matplotlib
import numpy as np
import pytest
import torch

from pini_core.mung.config import MuNGConfig
from pini_core.mung.generator import MuNGGenerator
from pini_core.mung.injector import attach
from pini_core.mung.toy_mllm import new_toy_mllm
from pini_core.mung.visualize import (attention_maps, explain, explanation_figure, overlay_figure,
                                      relevance_maps, upsample)
from pini_core.mung.vqa_data import make_vqa


@pytest.fixture(scope="module")
def setup():
    bundle = new_toy_mllm(seed=0, hidden=32, layers=1, vision_hidden=32, vision_layers=1, patch_size=16)
    with torch.no_grad():      # untrained (std 0.02) embeddings / projector make every key and query alike
        bundle.model.get_input_embeddings().weight.mul_(10)
        bundle.model.model.multi_modal_projector.linear_2.weight.mul_(20)
    torch.manual_seed(0)
    gen = MuNGGenerator(MuNGConfig(visual_dim=32, text_dim=32, num_heads=8, init="default"))
    inj = attach(bundle.model, gen)
    item = make_vqa(1, "shifted", seed=2)[0]
    return bundle, inj, item


def _manual_grad_x_act(bundle, inj, batch, tid, noise_on, seed):
    """Reference: d log p(target) / d tokens * tokens, at the tokens the LLM receives."""
    store = {}

    def grab(m, a, o):
        store["t"] = o.detach().requires_grad_()
        return store["t"]
    with inj.settings(enabled=noise_on, seed=seed if noise_on else None):
        h = inj.spec.visual_module.register_forward_hook(grab)     # runs after the MuNG hook
        logp = torch.log_softmax(bundle.model(**batch).logits[0, -1], -1)[tid]
        logp.backward()
        h.remove()
    t = store["t"]
    return (t.grad * t).sum(-1).abs()[0].detach().reshape(4, 4).numpy()


def test_relevance_maps_have_patch_grid_shape_match_reference_and_differ(setup):
    bundle, inj, item = setup
    batch = bundle.encode([item.image], [item.question])
    tid = bundle.tokenizer.token_to_id("red")
    before, after = relevance_maps(inj, batch, torch.tensor([tid]), seed=4)
    assert before.shape == after.shape == (1, 4, 4)          # 64 px / 16 px patches
    np.testing.assert_allclose(before[0], _manual_grad_x_act(bundle, inj, batch, tid, False, 4), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(after[0], _manual_grad_x_act(bundle, inj, batch, tid, True, 4), rtol=1e-4, atol=1e-7)
    assert np.abs(before - after).max() > 1e-3 * before.max()
    again, after2 = relevance_maps(inj, batch, torch.tensor([tid]), seed=4)
    np.testing.assert_array_equal(after, after2)               # same eps -> same map
    ig_b, ig_a = relevance_maps(inj, batch, torch.tensor([tid]), seed=4, method="integrated_gradients", n_steps=4)
    assert ig_b.shape == (1, 4, 4) and not np.allclose(ig_b, ig_a)
    with pytest.raises(ValueError, match="method must be one of"):
        relevance_maps(inj, batch, torch.tensor([tid]), method="lime")


def test_explain_attention_and_figures(setup):
    bundle, inj, item = setup
    ex = explain(bundle, inj, item.image, item.question, seed=1)
    t = len(ex.tokens)
    assert ex.tokens[-1] == "?" or "<ans>" in ex.tokens
    assert "<image>" not in ex.tokens and "<bos>" not in ex.tokens
    assert ex.attention_per_token.shape == (t, 4, 4) and ex.attention_mean.shape == (4, 4)
    # per patch, the weights over the text tokens sum to 1
    np.testing.assert_allclose(ex.attention_per_token.sum(0), np.ones((4, 4)), rtol=1e-5)
    assert ex.image.shape == (64, 64, 3) and ex.image.dtype == np.uint8
    assert ex.relevance_before.shape == (4, 4)
    assert np.abs(ex.relevance_before - ex.relevance_after).max() > 0.05 * ex.relevance_before.max() > 0
    up = ex.upsampled(ex.relevance_after)
    assert up.shape == (64, 64)
    assert np.isclose(up.mean(), ex.relevance_after.mean(), rtol=0.2)
    fig = explanation_figure(ex, max_tokens=3)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 1 + 3 + 3
    matplotlib.pyplot.close(fig)
    fig = overlay_figure(ex.image, {"flat": np.zeros((4, 4))})
    assert len(fig.axes) == 2
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="not a word"):
        explain(bundle, inj, item.image, item.question, target="zebra")


def test_attention_maps_from_record():
    from pini_core.mung.injector import InjectionRecord
    torch.manual_seed(0)
    gen = MuNGGenerator(MuNGConfig(visual_dim=32, text_dim=32, num_heads=8, init="default"))
    vis, text = torch.randn(2, 17, 32), torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = gen(vis, text, mask)
    rec = InjectionRecord(clean=list(vis), noisy=list(out.tokens), output=out, image_to_sample=[0, 1],
                          text_ids=[torch.arange(5), torch.arange(3)], grids=[(4, 4, 1), (4, 4, 1)])
    per0, mean0 = attention_maps(rec, 0)
    per1, _ = attention_maps(rec, 1)
    assert per0.shape == (5, 4, 4) and per1.shape == (3, 4, 4)        # CLS (offset 1) dropped
    head_mean = out.attn[1].mean(0)                                     # [17, 5]
    np.testing.assert_allclose(per1[2], head_mean[1:, 2].reshape(4, 4).numpy(), rtol=1e-6)
    np.testing.assert_allclose(per1.sum(0), np.ones((4, 4)), rtol=1e-5)   # padding keys got nothing
    np.testing.assert_allclose(mean0, (per0 / per0.sum(axis=(1, 2), keepdims=True)).mean(0), rtol=1e-6)
    assert np.isclose(mean0.sum(), 1.0) and mean0.std() > 1e-3 * mean0.mean()      # not the trivial 1/T map
    assert upsample(mean0, (64, 64)).shape == (64, 64)


def test_qwen_relevance_maps_per_image_grid_match_reference():
    """Qwen2.5-VL: the tokens of all images come concatenated in a ModelOutput; the maps are
    split per image on its own merged grid and equal grad x act at the tokens the LLM receives."""
    from pini_core.mung.tiny_hosts import qwen_batch, tiny_qwen25vl

    host = tiny_qwen25vl(seed=0)
    with torch.no_grad():
        host.get_input_embeddings().weight.mul_(10)
    torch.manual_seed(1)
    inj = attach(host, MuNGGenerator(MuNGConfig(visual_dim=32, text_dim=32, num_heads=8, init="default")))
    batch = qwen_batch(host, [[5, 6, 7], [8, 9]], [(8, 8), (4, 8)])
    tids = torch.tensor([11, 12])
    before, after = relevance_maps(inj, batch, tids, seed=3)
    assert isinstance(before, list) and [m.shape for m in before] == [(4, 4), (2, 4)]   # merge 2x2

    def reference(noise_on):
        store = {}

        def grab(m, a, o):
            store["t"] = o.pooler_output.detach().requires_grad_()
            o.pooler_output = store["t"]
            return o
        with inj.settings(enabled=noise_on, seed=3 if noise_on else None):
            h = inj.spec.visual_module.register_forward_hook(grab)
            logp = torch.log_softmax(host(**batch).logits[:, -1].float(), -1)
            logp[torch.arange(2), tids].sum().backward()
            h.remove()
        t = store["t"]
        rel = (t.grad * t).sum(-1).abs().detach()
        return rel[:16].reshape(4, 4).numpy(), rel[16:].reshape(2, 4).numpy()

    for got, want in ((before, reference(False)), (after, reference(True))):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-8)
    assert max(np.abs(b - a).max() for b, a in zip(before, after)) > 1e-3 * before[0].max() > 0
    with pytest.raises(ValueError, match="use method='grad_x_act'"):
        relevance_maps(inj, batch, tids, method="integrated_gradients")
    with pytest.raises(ValueError, match="image_grid_thw"):
        relevance_maps(inj, {k: v for k, v in batch.items() if k != "image_grid_thw"}, tids)
    inj.detach()
