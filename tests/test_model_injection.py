"""The model owns its noise injection (issue 11, item 6): the prompt-noise methods that
`text_features` itself uses, the noise override the meter's random-noise control goes
through, the no-noise logits with PiNI's own prompts, and CA attention returned by the
forward pass (no state left behind on the generator)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine_fixtures import colour_data, colour_image, make_model, pixels_of, shared_backbone
from pini_core.analysis.decode import decode_prompt_noise
from pini_core.analysis.maps import noise_maps


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


@pytest.fixture(scope="module")
def data():
    return colour_data(per_class=3, classes=("red", "blue"), seed=0)


def _reference_prompt_features(model, noise):
    """Eq. 12 by hand: noise added to the n_prefix tokens after SOS, all classes alike."""
    emb = model.prompt_embeds.unsqueeze(0).repeat(noise.shape[0], 1, 1, 1).clone()
    emb[:, :, 1:1 + model.n_prefix] = emb[:, :, 1:1 + model.n_prefix] + noise.unsqueeze(1)
    m, c, length, w = emb.shape
    bb = model.backbone
    return bb.encode_text_embeddings(emb.reshape(m * c, length, w), model.token_ids.repeat(m, 1)).reshape(m, c, -1)


def test_text_features_are_built_from_prompt_noise(bb):
    model = make_model(bb, seed=3, n_ctx=4, visual_location="none")
    with torch.no_grad():
        model.text_gen.sigma_raw.fill_(0.3)
        pn = model.prompt_noise(3, "sample", torch.Generator().manual_seed(5))
        assert pn["noise"].shape == (3, model.n_prefix, bb.token_dim)
        assert pn["embeds"].shape == (3, 2, *model.prompt_embeds.shape[1:])
        torch.testing.assert_close(pn["noise"], pn["mu"] + pn["sigma"] * pn["eps"])
        # outside the prefix span the prompt is untouched; inside it is prompt + noise
        span = model.prompt_span()
        assert span == slice(1, 1 + model.n_prefix)
        assert torch.equal(pn["embeds"][:, :, :1], model.prompt_embeds[None, :, :1].expand(3, -1, -1, -1))
        assert torch.equal(pn["embeds"][:, :, span.stop:], model.prompt_embeds[None, :, span.stop:].expand(3, -1, -1, -1))
        torch.testing.assert_close(pn["embeds"][:, 1, span], model.prompt_embeds[1, span] + pn["noise"])
        extras = {}
        feats = model.text_features(3, "sample", torch.Generator().manual_seed(5), extras)
        assert torch.equal(extras["text_noise"], pn["noise"])  # same draws, same code path
        torch.testing.assert_close(feats, _reference_prompt_features(model, pn["noise"]), atol=1e-5, rtol=1e-5)
        # only class 0's prompt when asked (Table 8 decoding needs no more)
        one = model.prompt_noise(3, "sample", torch.Generator().manual_seed(5), classes=[0])["embeds"]
        assert one.shape[1] == 1 and torch.equal(one[:, 0], pn["embeds"][:, 0])


def test_prompt_noise_is_refused_without_prompt_level_text_noise(bb):
    model = make_model(bb, text_location="feature", text_generator="le")
    with pytest.raises(ValueError, match="not in the prompt"):
        model.prompt_noise(1)
    prompt_model = make_model(bb, n_ctx=2)
    with pytest.raises(ValueError, match=r"prompt noise must be \[m, "):
        prompt_model.noisy_prompt_embeddings(torch.zeros(1, prompt_model.n_prefix + 1, bb.token_dim))


def test_zero_noise_override_gives_the_no_noise_logits(bb, data):
    """run(noise=0) injects at the model's own points; with additive fusion that is the frozen
    CLIP with PiNI's own ("x"-placeholder) prompts, which `logits_without_noise` returns."""
    model = make_model(bb, seed=1, n_ctx=4)  # feature CA + prompt LE
    f = bb.encode_image(pixels_of(bb, data))
    with torch.no_grad():
        zero = {"text": torch.zeros(1, model.n_prefix, bb.token_dim), "visual": torch.zeros(1, *f.shape)}
        got = model.run({"features": f}, draws=1, noise=zero).logits[0]
        clean = model.logits_without_noise({"features": f})
        text = bb.encode_text([model.prompt_format.format(c) for c in model.classnames])
        by_hand = bb.logit_scale * F.normalize(f, dim=-1) @ F.normalize(text, dim=-1).T
    torch.testing.assert_close(got, clean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(clean, by_hand, atol=1e-5, rtol=1e-5)
    assert model.prompt_format.startswith("x x x x ")
    # a non-zero override changes the logits, and the generator is not run for it
    with torch.no_grad():
        moved = model.run({"features": f}, draws=1, keep_extras=True,
                          noise={"visual": torch.full((1, *f.shape), 0.5)})
    assert not torch.allclose(moved.logits[0], clean)
    assert "visual_mu" not in moved.extras and "text_mu" in moved.extras


def test_feature_ca_attention_is_in_the_outputs_not_left_on_the_generator(bb, data):
    model = make_model(bb, seed=2, text_location="none")  # feature + CA
    f = bb.encode_image(pixels_of(bb, data))
    with torch.no_grad():
        out = model.run({"features": f}, draws=3, generator=torch.Generator().manual_seed(0), keep_extras=True)
        plain = model.run({"features": f}, draws=3, generator=torch.Generator().manual_seed(0))
    attn = out.extras["visual_attention"]
    assert attn.shape == (3, f.shape[0], 2)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, f.shape[0]))
    assert not hasattr(model.visual_gen, "last_attention")
    assert plain.extras == {}  # nothing kept unless asked
    # the attention is the generator's own for that image and draw's text features
    mu, sigma, a0 = model.visual_noise(f, out.text_features[0])
    torch.testing.assert_close(a0, attn[0])
    torch.testing.assert_close(mu, out.extras["visual_mu"][0])


def test_image_ca_returns_patch_attention(bb):
    model = make_model(bb, seed=0, visual_location="image", visual_generator="ca", text_location="none")
    px = pixels_of(bb, colour_data(per_class=1, classes=("red",), seed=1))
    with torch.no_grad():
        out = model.run({"pixels": px}, draws=2, generator=torch.Generator().manual_seed(0), keep_extras=True)
    n_tokens = (bb.image_size // 8) ** 2  # tiny ViT: patch 8
    assert out.extras["visual_attention"].shape == (2, 1, n_tokens, model.num_classes)
    assert not hasattr(model.visual_gen, "last_attention")


def test_noise_maps_read_class_attention_from_the_forward_pass(bb):
    model = make_model(bb, seed=0, text_location="none")
    img = colour_image((210, 50, 50), np.random.default_rng(1))
    res = noise_maps(model, img, seed=0)
    assert res["class_attention"].shape == (2,)
    np.testing.assert_allclose(res["class_attention"].sum(), 1.0, rtol=1e-5)
    mlp = noise_maps(make_model(bb, seed=0, visual_generator="mlp", text_location="none"), img, seed=0)
    assert "class_attention" not in mlp


def test_decode_reads_the_models_noisy_prompts(bb):
    """Table 8 with mode="mean" decodes mu added to the template words, by hand."""
    from pini_core.analysis.decode import nearest_tokens

    model = make_model(bb, seed=4, n_ctx=2, visual_location="none")
    rows = decode_prompt_noise(model, n_draws=2, k=1, mode="mean", include_placeholders=True)
    with torch.no_grad():
        mu, _ = model.text_gen()
        noisy = model.prompt_embeds[0, 1:1 + model.n_prefix] + mu
        ids = nearest_tokens(noisy, bb.token_embedding.float(), 1,
                             exclude=[i for i in bb.special_token_ids() if i != 0])[:, 0].tolist()
    assert [r["words"][0] for r in rows] == [(bb.decode_token(t), 2) for t in ids]
    assert len(rows) == model.n_prefix and rows[0]["placeholder"] and not rows[-1]["placeholder"]
