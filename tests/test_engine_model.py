"""Engine model: the CoOp-style text encoder, cached vs uncached paths, inference modes,
the pi-noise meter and noise maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine_fixtures import TEMPLATE, colour_data, colour_image, make_model, pixels_of, shared_backbone
from pini_core.analysis.maps import noise_maps
from pini_core.analysis.meter import pi_noise_meter
from pini_core.features import clear_cache, encode_images
from pini_core.model import PromptError
from pini_core.experiment import Recipe
from pini_core.trainer import fit


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


@pytest.fixture(scope="module")
def data():
    return colour_data(per_class=8, classes=("red", "blue"), seed=0)


@pytest.fixture(scope="module")
def px(bb, data):
    return pixels_of(bb, data)


# ----------------------------------------------------------------- CoOp-style text encoder
TEXTS = ["a photo of a red.", "x x x x a photo of a blue square.", "green", ""]


def test_text_encoder_from_embeddings_equals_encode_text(bb):
    ids = bb.tokenize(TEXTS)
    ref = bb.encode_text(TEXTS)
    full = bb.encode_text_embeddings(bb.embed_tokens(ids), ids, truncate=False)
    assert full.shape == (len(TEXTS), bb.embed_dim)
    assert torch.equal(full, ref)
    short = bb.encode_text_embeddings(bb.embed_tokens(ids), ids, truncate=True)
    torch.testing.assert_close(short, ref, atol=1e-5, rtol=1e-5)


def test_text_encoder_depends_on_the_embeddings(bb):
    """Editing the word embeddings (what prompt noise does) changes the text feature."""
    ids = bb.tokenize(TEXTS[:1])
    emb = bb.embed_tokens(ids)
    moved = emb.clone()
    moved[:, 2] += 0.5
    assert not torch.allclose(bb.encode_text_embeddings(moved, ids), bb.encode_text_embeddings(emb, ids))


def test_model_base_text_features_are_zero_shot_prompts(bb):
    model = make_model(bb, classnames=("red", "blue"), visual_location="none", text_location="none")
    torch.testing.assert_close(model.base_text_features, bb.encode_text([TEMPLATE.format(c) for c in ("red", "blue")]),
                               atol=1e-5, rtol=1e-5)
    # prompt-level noise uses the authors' layout: n_ctx placeholders + template, class last
    m2 = make_model(bb, classnames=("red", "blue"), n_ctx=4)
    assert m2.prompt_format == "x x x x a photo of a {}."
    assert m2.n_prefix == 8 and m2.text_gen.mu.shape == (8, bb.token_dim)


def test_too_long_prompt_is_refused_with_a_clear_message(bb):
    with pytest.raises(PromptError, match="longer than the text encoder's context"):
        make_model(bb, classnames=("red", "blue"), n_ctx=39)


# ----------------------------------------------------------------- cached vs uncached
@pytest.mark.parametrize("noise", [dict(), dict(text_location="feature", text_generator="mlp"),
                                   dict(visual_generator="mlp", text_location="none")],
                         ids=["default", "feature-mlp-text", "feature-mlp-visual"])
def test_cached_and_uncached_predictions_agree(bb, px, noise):
    model = make_model(bb, seed=3, **noise)
    with torch.no_grad():
        cached = model.predict({"features": bb.encode_image(px)}, mode="mean")
        uncached = model.predict({"pixels": px}, mode="mean")
    assert cached.shape == (px.shape[0], 2)
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=1e-5)


def test_fit_with_and_without_feature_cache_gives_the_same_history(bb, data):
    cfg = dict(epochs=4, lr=0.3, batch_size=8, augment=False)
    histories = {}
    for cache in ("on", "off"):
        clear_cache()
        model = make_model(bb, seed=2)
        res = fit(model, bb, data, Recipe(cache=cache, **cfg), seed=5, progress=False)
        assert res.cached == (cache == "on")
        histories[cache] = ([r["loss"] for r in res.history], model.state_dict())
    np.testing.assert_allclose(histories["on"][0], histories["off"][0], rtol=1e-4, atol=1e-5)
    for k, v in histories["on"][1].items():
        torch.testing.assert_close(v, histories["off"][1][k], atol=1e-4, rtol=1e-4)


def test_feature_cache_is_reused_and_keyed_by_settings(bb, data):
    clear_cache()
    a = encode_images(bb, data, progress=False)
    assert encode_images(bb, data, progress=False) is a  # served from the cache
    aug = encode_images(bb, data, augment=True, views=3, seed=0, progress=False)
    assert aug.shape == (3, len(data), bb.embed_dim)
    assert not torch.allclose(aug[0], aug[1])  # different random crops per view
    torch.testing.assert_close(encode_images(bb, data, augment=True, views=3, seed=0, progress=False,
                                             use_cache=False), aug)  # seeded


# ----------------------------------------------------------------- inference modes
@pytest.fixture(scope="module")
def noisy_model(bb):
    """Default generators with clearly non-zero sigma on both sides."""
    model = make_model(bb, seed=4, n_ctx=4)
    with torch.no_grad():
        model.text_gen.sigma_raw.fill_(0.5)
    model.eval()
    return model


def test_modes_give_distributions_and_mean_is_deterministic(noisy_model, bb, px):
    feats = {"features": bb.encode_image(px)}
    with torch.no_grad():
        for mode in ("single", "mean", "average"):
            p = noisy_model.predict_proba(feats, mode=mode, draws=4, generator=torch.Generator().manual_seed(0))
            assert p.shape == (px.shape[0], 2)
            assert (p >= 0).all()
            torch.testing.assert_close(p.sum(-1), torch.ones(px.shape[0]))
        assert torch.equal(noisy_model.predict(feats, mode="mean"), noisy_model.predict(feats, mode="mean"))
    with pytest.raises(ValueError, match="mode must be one of"):
        noisy_model.predict(feats, mode="median")


def test_single_mode_is_reproducible_with_a_seeded_generator_and_differs_from_mean(noisy_model, bb, px):
    feats = {"features": bb.encode_image(px)}
    with torch.no_grad():
        a = noisy_model.predict(feats, mode="single", generator=torch.Generator().manual_seed(7))
        b = noisy_model.predict(feats, mode="single", generator=torch.Generator().manual_seed(7))
        c = noisy_model.predict(feats, mode="single", generator=torch.Generator().manual_seed(8))
        mean = noisy_model.predict(feats, mode="mean")
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, mean, atol=1e-3)


def test_average_mode_is_the_mean_of_the_softmaxes(noisy_model, bb, px):
    feats = {"features": bb.encode_image(px)}
    with torch.no_grad():
        avg = noisy_model.predict_proba(feats, mode="average", draws=6, generator=torch.Generator().manual_seed(3))
        logits = noisy_model.run(feats, draws=6, mode="sample", generator=torch.Generator().manual_seed(3)).logits
    assert logits.shape == (6, px.shape[0], 2)
    by_hand = torch.stack([torch.softmax(logits[j], -1) for j in range(6)]).mean(0)
    torch.testing.assert_close(avg, by_hand, atol=1e-6, rtol=1e-5)
    # and it is not just one draw
    assert not torch.allclose(avg, torch.softmax(logits[0], -1), atol=1e-4)


def test_mean_mode_logits_are_eq2_with_mu_only(bb, px):
    """mean mode: logits = s * cos(V(x) + mu_v, T(p) + mu_t) for feature-level noise."""
    model = make_model(bb, seed=6, visual_generator="mlp", text_location="feature", text_generator="le")
    f = bb.encode_image(px)
    with torch.no_grad():
        got = model.predict({"features": f}, mode="mean")
        mu_v, _ = model.visual_gen(f)
        mu_t, _ = model.text_gen(model.base_text_features)
        img = F.normalize(f + mu_v, dim=-1)
        txt = F.normalize(model.base_text_features + mu_t, dim=-1)
        expect = bb.logit_scale * img @ txt.T
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------- pi-noise meter
def test_meter_entropies_and_information(bb, data):
    model = make_model(bb, seed=1, n_ctx=4)
    res = pi_noise_meter(model, data, draws=4, seed=0)
    # H(T): CLIP cross-entropy without noise (Eq. 3), by hand, with the prompts PiNI itself uses:
    # the n_ctx "x" placeholders + template, not the bare template (issue 11)
    feats = encode_images(bb, data, progress=False)
    y = torch.tensor([label for _, label in data])
    assert model.prompt_format.startswith("x x x x ")
    with torch.no_grad():
        zs = {}
        for fmt in (model.prompt_format, TEMPLATE):
            text = bb.encode_text([fmt.format(c) for c in ("red", "blue")])
            zs[fmt] = float(F.cross_entropy(bb.logit_scale * F.normalize(feats, dim=-1) @ F.normalize(text, dim=-1).T, y))
    assert res["H_T"] == pytest.approx(zs[model.prompt_format], rel=1e-5)
    assert res["H_T"] != pytest.approx(zs[TEMPLATE], rel=1e-3)  # the bare template is another classifier
    for name in ("learned", "random", "none"):
        r = res[name]
        assert np.isfinite(r["H_T_given_eps"]) and r["H_T_given_eps"] >= 0
        assert r["I"] == pytest.approx(res["H_T"] - r["H_T_given_eps"], abs=1e-9)
        assert 0.0 <= r["accuracy"] <= 100.0
    assert res["none"]["I"] == 0.0 and res["none"]["H_T_given_eps"] == res["H_T"]
    assert res["learned"]["H_T_given_eps"] != res["H_T"]
    assert res["scale"]["visual"] > 0 and res["scale"]["text"] > 0
    assert res["draws"] == 4 and res["n"] == len(data)


def test_meter_learned_noise_is_pi_noise_after_training(bb, data):
    """After training, the learned noise lowers the task entropy: I(T, eps) > 0, and more
    than random noise of the same scale."""
    model = make_model(bb, seed=0, visual_generator="mlp", text_location="none")
    fit(model, bb, data, Recipe(epochs=10, lr=0.3, batch_size=16, augment=False), progress=False)
    res = pi_noise_meter(model, data, draws=4, seed=0)
    assert res["learned"]["I"] > 0.2
    assert res["learned"]["I"] > res["random"]["I"]
    assert res["learned"]["accuracy"] == 100.0


# ----------------------------------------------------------------- noise maps
def test_raw_image_noise_maps_have_image_size_and_depend_on_the_image(bb):
    model = make_model(bb, seed=0, visual_location="image", visual_generator="mlp", text_location="none")
    rng = np.random.default_rng(0)
    red, blue = colour_image((210, 50, 50), rng), colour_image((50, 70, 210), rng)
    a, b = noise_maps(model, red, seed=0), noise_maps(model, blue, seed=0)
    assert a["kind"] == "image"
    s = bb.image_size
    for key in ("mu_map", "sigma_map"):
        assert a[key].shape == (s, s)
        assert not np.allclose(a[key], b[key])
    assert a["mu"].shape == (3, s, s) and a["noise"].shape == (3, s, s)
    assert (a["sigma"] >= 0).all()
    assert a["noisy_image"].size == (s, s) and a["clean_image"].size == (s, s)
    np.testing.assert_allclose(a["probs"].sum(), 1.0, rtol=1e-5)
    # seeded: the same seed draws the same noise
    np.testing.assert_array_equal(noise_maps(model, red, seed=0)["noise"], a["noise"])


def test_feature_noise_maps_are_vectors_of_embed_dim(bb):
    model = make_model(bb, seed=0, text_location="none")  # feature + CA
    img = colour_image((210, 50, 50), np.random.default_rng(1))
    res = noise_maps(model, img, seed=0)
    assert res["kind"] == "feature"
    for key in ("mu", "sigma", "noise", "clean_feature", "noisy_feature"):
        assert res[key].shape == (bb.embed_dim,)
    np.testing.assert_allclose(res["noisy_feature"] - res["clean_feature"], res["noise"], atol=1e-5)
    assert res["shift_norm"] == pytest.approx(float(np.linalg.norm(res["noise"])), rel=1e-5)
    assert res["class_attention"].shape == (2,)
    np.testing.assert_allclose(res["class_attention"].sum(), 1.0, rtol=1e-5)


# ----------------------------------------------------------------- plots (Agg, headless)
def test_plots_of_meter_maps_and_history(bb, data, tmp_path):
    import matplotlib

    from pini_core.analysis.plots import plot_history, plot_meter, plot_noise_maps

    assert matplotlib.get_backend().lower() == "agg"
    res = {"H_T": 0.7, "learned": {"H_T_given_eps": 0.2, "I": 0.5}, "random": {"H_T_given_eps": 0.9, "I": -0.2},
           "none": {"H_T_given_eps": 0.7, "I": 0.0}}
    fig = plot_meter(res)
    h_ax, i_ax = fig.axes
    assert [round(b.get_height(), 6) for b in h_ax.patches] == [0.2, 0.9, 0.7]
    assert [round(b.get_height(), 6) for b in i_ax.patches] == [0.5, -0.2, 0.0]
    assert h_ax.lines[0].get_ydata()[0] == pytest.approx(0.7)  # the H(T) line
    fig.savefig(tmp_path / "meter.png")
    assert (tmp_path / "meter.png").read_bytes()[:4] == b"\x89PNG"

    img = colour_image((210, 50, 50), np.random.default_rng(2))
    image_model = make_model(bb, visual_location="image", visual_generator="cnn", text_location="none", cnn_layers=4)
    fig = plot_noise_maps(noise_maps(image_model, img))
    assert [a.get_title() for a in fig.axes[:4]] == ["raw image", "noise-injected", "μ (mean over RGB)",
                                                    "σ (mean over RGB)"]
    assert len(fig.axes) == 6  # + two colour bars
    fig = plot_noise_maps(noise_maps(make_model(bb, visual_generator="mlp"), img))
    assert len(fig.axes) == 3 and fig.axes[2].get_title().startswith("embedding shift: cos = ")
    fig = plot_noise_maps(noise_maps(make_model(bb, visual_location="none"), img))
    assert fig.axes[0].get_title() == "no visual noise in this model"

    fig = plot_history([{"epoch": 1, "loss": 0.9, "val_accuracy": 50.0}, {"epoch": 2, "loss": 0.5}])
    assert list(fig.axes[0].lines[0].get_ydata()) == [0.9, 0.5]
    assert list(fig.axes[1].lines[0].get_ydata()) == [50.0]
    import matplotlib.pyplot as plt

    plt.close("all")
