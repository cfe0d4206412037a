"""Class subsets done right (ImageNet-A/-R: 200 of ImageNet's 1000 classes). A target with
its own class list is scored by rebuilding the prompts over its classes for methods whose
classes interact (PiNI: the CA keys and the shared prompt noise span all classes), and by
masking the other logits for methods whose classes do not (zero-shot): for zero-shot the
two agree exactly, for PiNI they differ."""
import pytest
import torch

from pini_core.runner import _Restricted, restrict_method

NAMES = ["red", "green", "blue", "yellow", "purple"]
SUBSET = [0, 2, 3]


@pytest.fixture(scope="module")
def bb():
    from pini_core.bench.testing import tiny_backbone

    torch.set_num_threads(1)
    return tiny_backbone()


def _probs_on_subset(method, feats):
    logits = method.predict({"features": feats}, mode="mean")
    return torch.softmax(logits[:, SUBSET], dim=-1)


def test_zero_shot_masked_equals_rebuilt(bb):
    from pini_core.baselines import ZeroShotCLIP

    feats = torch.randn(6, bb.embed_dim, generator=torch.Generator().manual_seed(0))
    full = ZeroShotCLIP(bb, NAMES, "a photo of a {}.")
    rebuilt = ZeroShotCLIP(bb, [NAMES[i] for i in SUBSET], "a photo of a {}.")
    masked = _probs_on_subset(restrict_method(full, SUBSET), feats)
    assert isinstance(restrict_method(full, SUBSET), _Restricted)  # independent classes: masking is exact
    torch.testing.assert_close(masked, torch.softmax(rebuilt.predict({"features": feats}), -1), atol=1e-6, rtol=0)


def test_pini_is_rebuilt_over_the_subset_and_masking_would_differ(bb):
    from pini_core.model import PiNIModel
    from pini_core.noise import NoiseConfig

    torch.manual_seed(0)
    model = PiNIModel(bb, NAMES, "a photo of a {}.", NoiseConfig(n_ctx=4))
    with torch.no_grad():  # a trained-looking generator: CA weights and prompt noise away from init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    feats = torch.randn(6, bb.embed_dim, generator=torch.Generator().manual_seed(1))
    masked = _probs_on_subset(_Restricted(model, SUBSET), feats)
    rebuilt_model = model.restrict_to(SUBSET)
    assert rebuilt_model.classnames == ["red", "blue", "yellow"]
    for k, v in model.state_dict().items():  # the same generators, only the class prompts change
        assert torch.equal(rebuilt_model.state_dict()[k], v), k
    direct = torch.softmax(rebuilt_model.predict({"features": feats}, mode="mean"), -1)
    via_runner = _probs_on_subset(restrict_method(model, SUBSET), feats)
    torch.testing.assert_close(via_runner, direct, atol=1e-6, rtol=0)
    assert (masked - direct).abs().max() > 1e-3, "CA keys over 5 vs 3 classes must change the noise"
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 5\)"):
        model.restrict_to([7])


def test_text_feature_le_keeps_the_subsets_rows(bb):
    from pini_core.model import PiNIModel
    from pini_core.noise import NoiseConfig

    torch.manual_seed(0)
    model = PiNIModel(bb, NAMES, "a photo of a {}.", NoiseConfig(visual_location="none", text_location="feature",
                                                                 text_generator="le"))
    sub = model.restrict_to(SUBSET)
    torch.testing.assert_close(sub.text_gen.mu, model.text_gen.mu[SUBSET])
    feats = torch.randn(4, bb.embed_dim, generator=torch.Generator().manual_seed(2))
    # per-class noise, no interaction: rebuilt equals masked
    torch.testing.assert_close(torch.softmax(sub.predict({"features": feats}, mode="mean"), -1),
                               _probs_on_subset(_Restricted(model, SUBSET), feats), atol=1e-5, rtol=0)
