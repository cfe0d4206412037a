"""Baselines: each formula checked against a direct computation, each method trains
through the shared trainer (or its reference procedure) and only its own parameters move."""
import math

import pytest
import torch
import torch.nn.functional as F

from pini_core.baselines import (CLIPAdapter, CoOp, LinearProbe, TipAdapter, TipHyper, ZeroShotCLIP,
                                 fit_tip_adapter_f, search_c, search_grid, text_classifier)
from pini_core.baselines.coop import PLACEHOLDER
from pini_core.bench.testing import colour_dataset, tiny_backbone
from pini_core.experiment import Recipe
from pini_core.trainer import evaluate, fit

torch.set_num_threads(1)
NAMES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def bb():
    return tiny_backbone()


@pytest.fixture(scope="module")
def ds():
    return colour_dataset("colours")


def backbone_state(bb):
    return {k: v.clone() for k, v in bb.model.state_dict().items()}


def test_zero_shot_matches_clip_formula_and_ensemble(bb):
    f = torch.randn(4, bb.embed_dim)
    zs = ZeroShotCLIP(bb, NAMES, "a photo of a {}.")
    t = F.normalize(bb.encode_text([f"a photo of a {c}." for c in NAMES]), dim=-1)
    expected = bb.logit_scale * F.normalize(f, dim=-1) @ t.t()
    assert torch.allclose(zs.predict({"features": f}), expected, atol=1e-5)
    # ensemble: mean of per-template normalised features, renormalised
    w = text_classifier(bb, ["a_b"], ["a photo of a {}.", "art of the {}."])
    t1, t2 = (F.normalize(bb.encode_text([p]), dim=-1) for p in ("a photo of a a b.", "art of the a b."))
    assert torch.allclose(w, F.normalize(t1 + t2, dim=-1), atol=1e-5)
    with pytest.raises(RuntimeError, match="no trainable parameters"):
        zs.compute_loss({"features": f}, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"exactly one '\{\}'"):
        ZeroShotCLIP(bb, NAMES, "a photo of a class.")


def test_coop_prompt_reproduces_text_encoder_when_context_is_the_placeholder(bb):
    coop = CoOp(bb, NAMES, n_ctx=4)
    x_id = bb.text_token_ids(PLACEHOLDER)[0]
    with torch.no_grad():
        coop.ctx.copy_(bb.token_embedding[x_id].expand(4, -1))
    expected = bb.encode_text([f"{' '.join([PLACEHOLDER] * 4)} {c}." for c in NAMES])
    assert torch.allclose(coop.text_features(), expected, atol=1e-5)
    assert coop.prompt_embeddings().shape[:2] == coop.token_ids.shape
    assert [n for n, p in coop.named_parameters() if p.requires_grad] == ["ctx"]
    fresh = CoOp(bb, NAMES)  # default: 16 shared vectors ~ N(0, 0.02)
    assert fresh.ctx.shape == (16, bb.token_dim) and 0.01 < float(fresh.ctx.detach().std()) < 0.03
    with pytest.raises(ValueError, match="longer than the text encoder's context"):
        CoOp(bb, ["word " * 70], n_ctx=16)


def test_coop_trains_only_its_context_with_the_shared_trainer(bb, ds):
    torch.manual_seed(0)
    coop = CoOp(bb, ds.classnames)
    ctx0, bb0 = coop.ctx.detach().clone(), backbone_state(bb)
    res = fit(coop, bb, ds.train, Recipe(epochs=4, lr=0.05, warmup_epochs=0, aug_views=1, augment=False),
              progress=False)
    assert len(res.history) == 4 and res.cached
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert not torch.equal(coop.ctx.detach(), ctx0)
    assert all(torch.equal(v, bb0[k]) for k, v in bb.model.state_dict().items())
    assert 0.0 <= evaluate(coop, bb, ds.test)["accuracy"] <= 100.0


def test_clip_adapter_residual_blend_and_training(bb, ds):
    ad = CLIPAdapter(bb, ds.classnames, ds.template)
    f = torch.randn(5, bb.embed_dim)
    a = ad.adapter(f)
    assert torch.allclose(ad.adapted_features(f), 0.2 * a + 0.8 * f)
    assert (a >= 0).all()  # the adapter ends with a ReLU
    names = sorted(n for n, p in ad.named_parameters() if p.requires_grad)
    assert names == ["adapter.fc.0.weight", "adapter.fc.2.weight"]
    assert ad.adapter.fc[0].weight.shape == (bb.embed_dim // 4, bb.embed_dim)
    with torch.no_grad():  # a silent adapter gives exactly zero-shot CLIP
        for p in ad.adapter.parameters():
            p.zero_()
    zs = ZeroShotCLIP(bb, ds.classnames, ds.template)
    assert torch.allclose(ad.predict({"features": f}), zs.predict({"features": f}), atol=1e-5)
    torch.manual_seed(0)
    ad = CLIPAdapter(bb, ds.classnames, ds.template)
    w0 = ad.adapter.fc[0].weight.detach().clone()
    res = fit(ad, bb, ds.train, Recipe(epochs=3, lr=0.05, warmup_epochs=0, aug_views=1), progress=False)
    assert len(res.history) == 3 and not torch.equal(ad.adapter.fc[0].weight, w0)


def test_linear_probe_search_and_prediction():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 5
    def sample(n):
        y = torch.arange(n) % 3
        return centers[y] + 0.3 * torch.randn(n, 8, generator=g), y
    x, y = sample(30)
    xv, yv = sample(9)
    xt, yt = sample(30)

    class FakeBB:
        device = torch.device("cpu")
        embed_dim = 8

    lp = LinearProbe(FakeBB(), 3)
    log = lp.fit_features(x, y, xv, yv)
    assert len(log.tried) == 7 + 2 * 8  # coarse grid + 8 bisection steps (2 fits each)
    assert [c for c, _ in log.tried[:7]] == [1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6]
    assert log.best_c in [c for c, _ in log.tried[7:]]
    pred = lp.predict({"features": xt}).argmax(-1)
    assert (pred == yt).float().mean() == 1.0
    # equals scikit-learn's decision function for the chosen C
    clf, _ = search_c(x.numpy(), y.numpy(), xv.numpy(), yv.numpy())
    assert torch.allclose(lp.predict({"features": xt}), torch.tensor(clf.decision_function(xt.numpy()),
                                                                       dtype=torch.float32), atol=1e-3)
    # a class absent from training is never predicted; binary problems work
    lp4 = LinearProbe(FakeBB(), 4)
    lp4.fit_features(x, y, xv, yv)
    assert not (lp4.predict({"features": xt}).argmax(-1) == 3).any()
    mask = y < 2
    lp2 = LinearProbe(FakeBB(), 2)
    lp2.fit_features(x[mask], y[mask], xv[yv < 2], yv[yv < 2])
    assert (lp2.predict({"features": xt[yt < 2]}).argmax(-1) == yt[yt < 2]).all()
    with pytest.raises(ValueError, match="at least 2 classes"):
        lp.fit_features(x[y == 0], y[y == 0], xv, yv)
    with pytest.raises(RuntimeError, match="fit_features"):
        lp.compute_loss({"features": x}, y)


def test_tip_adapter_formula_search_and_fine_tuning(bb):
    g = torch.Generator().manual_seed(1)
    views = torch.randn(10, 6, bb.embed_dim, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    tip = TipAdapter(bb, NAMES, "a photo of a {}.", views, labels, hyper=TipHyper.for_dataset("oxford_pets"))
    assert (tip.alpha, tip.beta) == (1.17, 1.0)  # the reference's oxford_pets.yaml
    assert TipHyper.for_dataset("fgvc_aircraft").search_scale == (30.0, 30.0)
    keys = F.normalize(views.mean(0), dim=-1)
    assert torch.allclose(tip.cache_keys, keys, atol=1e-6)
    f = torch.randn(4, bb.embed_dim, generator=g)
    fn = F.normalize(f, dim=-1)
    w = text_classifier(bb, NAMES, "a photo of a {}.")
    expected = 100 * fn @ w.t() + 1.17 * torch.exp(-1.0 * (1 - fn @ keys.t())) @ F.one_hot(labels, 3).float()
    assert torch.allclose(tip.predict({"features": f}), expected, atol=1e-4)
    grid = search_grid(7.0, 200)
    assert len(grid) == 200 and grid[0] == pytest.approx(0.1) and grid[1] == pytest.approx(0.1 + 6.9 / 200)
    # the search is the reference's loop: beta outer, alpha inner, first strictly better kept
    small = TipAdapter(bb, NAMES, "a photo of a {}.", views, labels,
                       hyper=TipHyper(1.0, 1.0, search_scale=(7.0, 300.0), search_step=(20, 10)))
    xv = torch.randn(12, bb.embed_dim, generator=g)
    yv = torch.arange(12) % 3
    best, best_ab = -1.0, None
    for beta in search_grid(7.0, 20).tolist():
        for alpha in search_grid(300.0, 10).tolist():
            small.alpha, small.beta = alpha, beta
            acc = (small.predict({"features": xv}).argmax(-1) == yv).float().mean().item()
            if acc > best:
                best, best_ab = acc, (alpha, beta)
    found = small.search_hyperparameters(xv, yv)
    assert (found["alpha"], found["beta"]) == pytest.approx(best_ab)
    assert found["val_accuracy"] == pytest.approx(100 * best)
    assert (small.alpha, small.beta) == pytest.approx(best_ab)
    assert not any(p.requires_grad for p in tip.parameters())
    # Tip-Adapter-F: only the keys learn
    tipf = TipAdapter(bb, NAMES, "a photo of a {}.", views, labels, learnable_keys=True)
    k0 = tipf.cache_keys.detach().clone()
    hist = fit_tip_adapter_f(tipf, views, labels, epochs=5, lr=1e-2)
    # cosine per step to zero: the last step (t = 4 of T = 5, one step per epoch) runs at lr/2 (1 + cos(4 pi / 5))
    assert len(hist) == 5 and hist[-1]["lr"] == pytest.approx(0.5e-2 * (1 + math.cos(0.8 * math.pi)), rel=1e-9)
    assert not torch.equal(tipf.cache_keys.detach(), k0)
    with pytest.raises(ValueError, match="learnable_keys=True"):
        fit_tip_adapter_f(tip, views, labels)


def test_recipes_follow_the_reference_schedules():
    from pini_core.errors import ConfigError
    from pini_core.experiment import preset_config, reference_recipe

    assert [reference_recipe("coop", k, "oxford_pets").epochs for k in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]
    assert reference_recipe("coop", 16, "imagenet").epochs == 50
    assert reference_recipe("clip_adapter", 8).lr == 2e-3
    p = reference_recipe("pini", 1, "caltech-101")
    assert (p.epochs, p.lr) == (200, 2e-3) and reference_recipe("pini", 1, "imagenet").epochs == 100
    a = reference_recipe("pini", 16, "oxford_pets", "authors")
    assert (a.epochs, a.lr, a.views(), a.drop_last) == (100, 1e-3, 100, True)  # fresh view every epoch
    r = reference_recipe("tip_adapter_f", 16)
    assert (r.optimizer, r.epochs, r.lr, r.adam_eps, r.batch_size, r.schedule) == (
        "adamw", 20, 1e-3, 1e-4, 256, "cosine_step")
    from pini_core.methods import check_config

    with pytest.raises(ConfigError, match="unknown method 'prograd'; choose from zeroshot, linear_probe"):
        check_config(preset_config("paper", method="prograd"))
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose from paper, authors, toy"):
        reference_recipe("pini", 1, preset="fast")
