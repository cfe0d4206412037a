"""MuNG training: the host stays frozen, loss falls, NaN and Ctrl-C are handled."""
import pytest
import torch

from pini_core.mung.config import MuNGConfig
from pini_core.mung.generator import MuNGGenerator
from pini_core.mung.toy_mllm import new_toy_mllm
from pini_core.mung.train import NonFiniteLoss, train_generator, train_host
from pini_core.mung.vqa_data import make_vqa


def _tiny_bundle(seed=0):
    return new_toy_mllm(seed=seed, hidden=32, layers=1, vision_hidden=32, vision_layers=1, patch_size=16)


def _gen(bundle, seed=0, **kw):
    torch.manual_seed(seed)
    d = bundle.model.config.text_config.hidden_size
    return MuNGGenerator(MuNGConfig(visual_dim=d, text_dim=d, num_heads=8, **kw))


@pytest.fixture(scope="module")
def items():
    return make_vqa(32, "shifted", seed=0)


def test_host_is_bit_identical_and_loss_falls(items):
    torch.manual_seed(0)
    bundle = _tiny_bundle()
    with torch.no_grad():      # learnable toy: a random host whose answer logits react to its inputs
        bundle.model.lm_head.weight.mul_(50)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    gen = _gen(bundle, init="default")
    g0 = {k: v.clone() for k, v in gen.state_dict().items()}
    res = train_generator(bundle, gen, items, steps=60, batch_size=16, lr=2e-2, seed=0)
    after = bundle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in bundle.model.parameters())
    assert any(not torch.equal(g0[k], v) for k, v in gen.state_dict().items())
    first, last = sum(res.losses[:5]) / 5, sum(res.losses[-5:]) / 5
    assert res.steps == 60 and last < 0.7 * first, (first, last)
    assert not bundle.model.multi_modal_projector._forward_hooks if hasattr(bundle.model, "multi_modal_projector") \
        else not bundle.model.model.multi_modal_projector._forward_hooks     # detached afterwards


def test_nan_loss_stops_with_a_message(items):
    bundle = _tiny_bundle()
    gen = _gen(bundle)
    with torch.no_grad():
        gen.mu_head.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="lower the learning rate"):
        train_generator(bundle, gen, items, steps=5, batch_size=16)


def test_ctrl_c_keeps_what_was_trained(items, monkeypatch):
    bundle = _tiny_bundle()
    gen = _gen(bundle, init="default")
    g0 = {k: v.clone() for k, v in gen.state_dict().items()}
    host_forward = bundle.model.forward
    calls = {"n": 0}

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return host_forward(*a, **k)

    monkeypatch.setattr(bundle.model, "forward", interrupting)
    res = train_generator(bundle, gen, items, steps=20, batch_size=16, lr=1e-2)
    assert res.interrupted and res.steps == 3
    assert any(not torch.equal(g0[k], v) for k, v in gen.state_dict().items())


def test_host_pretraining_updates_everything(items):
    bundle = _tiny_bundle()
    before = {k: v.clone() for k, v in bundle.model.named_parameters()}
    n_params = len(bundle.model.state_dict())
    res = train_host(bundle, items, steps=6, batch_size=16, lr=3e-3, vision_steps=2, aux_weight=0.5)
    assert res.vision_steps == 2 and len(res.vision_losses) == 2
    assert len(bundle.model.state_dict()) == n_params        # the auxiliary heads are not part of the host
    changed = [k for k, v in bundle.model.named_parameters() if not torch.equal(before[k], v)]
    unused = {k for k in before if "post_layernorm" in k}     # CLIP's pooled-output norm is not used by LLaVA
    assert res.steps == 6 and set(changed) == set(before) - unused and len(unused) == 2
