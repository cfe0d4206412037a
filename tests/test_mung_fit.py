"""MuNG's generator trains through the one training loop (`trainer.fit`, issue 11 item 4) with
the one recipe type (`experiment.Recipe`): the step budget, gradient clipping, custom batches,
backbone=None and transformers' cosine-with-warm-up schedule that this needed."""
import dataclasses
import json

import pytest
import torch
from torch import nn

from pini_core.errors import ConfigError
from pini_core.experiment import Recipe
from pini_core.trainer import TrainingError, fit, lr_at, warmup_steps_of


# ---------------------------------------------------------------------- schedule
@pytest.mark.parametrize("total,warm", [(100, dict(warmup_ratio=0.05)), (37, dict(warmup_ratio=0.03)),
                                        (50, dict(warmup_steps=7)), (10, dict(warmup_ratio=0.01)),
                                        (9, dict(warmup_steps=0))])
def test_hf_cosine_warmup_is_transformers_schedule(total, warm):
    from transformers import get_cosine_schedule_with_warmup

    r = Recipe(optimizer="adamw", lr=5e-4, schedule="hf_cosine_warmup", max_steps=total, warmup_epochs=0, **warm)
    r.validate()
    w = warmup_steps_of(r)
    assert w == (warm.get("warmup_steps") or -(-total * warm.get("warmup_ratio", 0) // 1))  # ceil, HF Trainer's rule
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=r.lr)
    sched = get_cosine_schedule_with_warmup(opt, w, total)
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [lr_at(r, 0, t) for t in range(total)] == expected  # value for value, not approximately
    spe = 4  # the same steps seen as epochs of 4 steps (what fit passes)
    assert [lr_at(r, t // spe, t % spe, spe) for t in range(total)] == expected


def test_warmup_cosine_step_differs_from_hf_only_in_the_warm_up():
    ours = Recipe(schedule="warmup_cosine_step", lr=1.0, max_steps=40, warmup_steps=4)
    hf = dataclasses.replace(ours, schedule="hf_cosine_warmup")
    assert [lr_at(ours, 0, t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]  # (t + 1) / W
    assert [lr_at(hf, 0, t) for t in range(4)] == [0.0, 0.25, 0.5, 0.75]  # t / W
    for t in range(4, 40):
        assert lr_at(ours, 0, t) == pytest.approx(lr_at(hf, 0, t), rel=1e-12, abs=1e-15)  # rounding only
    # existing configs: no ratio / steps -> warm-up over warmup_epochs epochs, as before
    old = Recipe(schedule="warmup_cosine_step", lr=1.0, epochs=10, warmup_epochs=2)
    assert warmup_steps_of(old, 5) == 10 and lr_at(old, 0, 0, 5) == 0.1


# ---------------------------------------------------------------------- recipe fields
def test_new_recipe_fields_default_off_and_round_trip():
    r = Recipe()
    assert (r.max_steps, r.max_grad_norm, r.warmup_steps, r.warmup_ratio) == (0, 0.0, 0, 0.0)
    m = Recipe(optimizer="adamw", schedule="hf_cosine_warmup", max_steps=500, max_grad_norm=1.0, warmup_ratio=0.05,
               adam_betas=(0.9, 0.95))
    back = Recipe.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m and back.betas == (0.9, 0.95) and "betas" not in m.to_dict()
    with pytest.raises(ConfigError, match="unknown key"):
        Recipe.from_dict({**m.to_dict(), "betas": [0.9, 0.95]})
    for bad, match in [(dict(max_steps=10), "per-step schedule"), (dict(max_grad_norm=-1.0), "max_grad_norm"),
                       (dict(warmup_ratio=1.5), "fraction"), (dict(max_steps=-1, schedule="constant"), "max_steps"),
                       (dict(warmup_steps=3, warmup_ratio=0.1), "not both"),
                       (dict(max_grad_norm=float("nan")), "max_grad_norm")]:
        with pytest.raises(ConfigError, match=match):
            Recipe(**bad).validate()


def test_mung_recipes_are_recipes():
    from pini_core.mung.config import MUNG_RECIPES, mung_recipe
    from pini_core.mung.train import warmup_steps

    for name, r in MUNG_RECIPES.items():
        assert type(r) is Recipe, name
        r.validate()
        assert (r.optimizer, r.schedule, r.max_grad_norm, r.drop_last) == ("adamw", "hf_cosine_warmup", 1.0, True)
    assert warmup_steps(MUNG_RECIPES["project"], 1500) == 1500 // 20  # the shipped generator's 75 warm-up steps
    qwen = MUNG_RECIPES["qwen_code"]  # the released codes: one epoch, HF Trainer's warm-up ceil(ratio * steps)
    assert (qwen.max_steps, qwen.epochs, warmup_steps_of(qwen, 250)) == (0, 1, 3)
    r = mung_recipe("qwen_code", lr=1e-4, max_steps=20)
    assert (r.lr, r.max_steps, r.weight_decay, r.adam_betas) == (1e-4, 20, 0.1, (0.9, 0.95))
    assert MUNG_RECIPES["qwen_code"].lr == 5e-4  # a copy
    with pytest.raises(ValueError, match="unknown MuNG recipe"):
        mung_recipe("nope")


# ---------------------------------------------------------------------- fit: custom batches, budget, clipping
class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))

    def compute_loss(self, inputs, labels):
        return ((inputs["x"] @ self.w - labels) ** 2).mean()


def _data(n=10):
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(n, 3, generator=g)
    return [(x, float(x.sum()) * 100) for x in xs]


def _fit(method, recipe, **kw):
    return fit(method, None, _data(), recipe, device="cpu", progress=False,
               to_inputs=lambda b: ({"x": b[0]}, b[1].float()), **kw)


def test_fit_step_budget_cycles_epochs_with_custom_batches():
    r = Recipe(optimizer="adamw", lr=0.1, batch_size=4, schedule="hf_cosine_warmup", max_steps=7, warmup_steps=2)
    res = _fit(_Linear(), r)  # 10 items, batch 4 -> 3 steps per epoch: epochs of 3, 3, 1 steps
    assert res.steps == 7 and len(res.losses) == 7 and not res.stopped and res.cause == ""
    assert [row["step"] for row in res.history] == [3, 6, 7] and [row["epoch"] for row in res.history] == [1, 2, 3]
    assert res.history[-1]["lr"] == lr_at(r, 2, 0, 3)
    # the same run twice: same weights (seeded order)
    again = _fit(_Linear(), r)
    assert torch.equal(res.method.w, again.method.w)


def test_fit_clips_the_gradient_norm():
    base = Recipe(optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=1.0, batch_size=10, schedule="constant",
                  max_steps=1)
    free = _fit(_Linear(), base).method.w.detach()
    clipped = _fit(_Linear(), dataclasses.replace(base, max_grad_norm=0.5)).method.w.detach()
    assert free.norm() > 10 and clipped.norm() == pytest.approx(0.5, rel=1e-5)  # one SGD step of lr 1
    assert torch.allclose(clipped / clipped.norm(), free / free.norm(), atol=1e-6)


def test_fit_without_backbone_checks_its_inputs():
    r = Recipe(batch_size=4, schedule="constant", max_steps=2)
    with pytest.raises(TrainingError, match="needs a CLIP backbone"):
        fit(_Linear(), None, _data(), r, device="cpu", progress=False)
    with pytest.raises(TrainingError, match="val_data"):
        _fit(_Linear(), r, val_data=_data())
    m = _Linear()
    object.__setattr__(m, "frozen_model", nn.Linear(2, 2))  # trainable: refused as an unfrozen backbone is
    with pytest.raises(TrainingError, match="frozen model parameters must be frozen"):
        _fit(m, r)
    m.frozen_model.requires_grad_(False)
    assert _fit(m, r).steps == 2


def test_ctrl_c_in_a_budget_keeps_the_last_finished_epoch():
    r = Recipe(optimizer="adamw", lr=0.1, batch_size=4, schedule="constant", max_steps=9)
    m = _Linear()
    seen = {"n": 0, "after_epoch_1": None}
    inner = m.compute_loss

    def loss(inputs, labels):
        seen["n"] += 1
        if seen["n"] == 4:
            seen["after_epoch_1"] = m.w.detach().clone()
        if seen["n"] == 5:
            raise KeyboardInterrupt
        return inner(inputs, labels)

    m.compute_loss = loss
    res = _fit(m, r)
    assert res.cause == "interrupt" and res.steps == 4 and len(res.history) == 1
    assert torch.equal(m.w, seen["after_epoch_1"])  # epoch 1 = 3 steps; step 4's update dropped


# ---------------------------------------------------------------------- MuNG through fit
def test_train_generator_goes_through_fit(monkeypatch):
    from pini_core.mung import train as mtrain
    from pini_core.mung.config import MuNGConfig, mung_recipe
    from pini_core.mung.generator import MuNGGenerator
    from pini_core.mung.toy_mllm import new_toy_mllm
    from pini_core.mung.vqa_data import make_vqa

    torch.manual_seed(0)
    bundle = new_toy_mllm(seed=0, hidden=32, layers=1, vision_hidden=32, vision_layers=1, patch_size=16)
    d = bundle.model.config.text_config.hidden_size
    gen = MuNGGenerator(MuNGConfig(visual_dim=d, text_dim=d, num_heads=8, init="default"))
    calls = []
    real_fit = mtrain.fit

    def spy(method, backbone, data, recipe, **kw):
        calls.append((method, backbone, recipe))
        return real_fit(method, backbone, data, recipe, **kw)

    monkeypatch.setattr(mtrain, "fit", spy)
    items = make_vqa(12, "shifted", seed=0)
    res = mtrain.train_generator(bundle, gen, items, steps=5, batch_size=4,
                                 recipe=mung_recipe("qwen_code", lr=1e-3))
    (method, backbone, recipe), = calls
    assert backbone is None and method.generator is gen and method.frozen_model is bundle.model
    assert list(method.state_dict()) == [f"generator.{k}" for k in gen.state_dict()]  # the host is not copied
    assert (recipe.max_steps, recipe.batch_size, recipe.lr, recipe.weight_decay) == (5, 4, 1e-3, 0.1)
    assert res.steps == 5 and len(res.losses) == 5 and not res.interrupted
    assert not gen.training and not any(p.requires_grad for p in bundle.model.parameters())
