"""The visual CA's attention entropy (issue 14 item 7), against hand computation on a tiny model."""
from __future__ import annotations

import math

import pytest
import torch

from engine_fixtures import colour_data, make_model, shared_backbone

from pini_core.analysis.attention import attention_entropy, attention_entropy_of
from pini_core.analysis.meter import pi_noise_meter
from pini_core.features import encode_images

CLASSES = ("red", "blue", "green")


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


@pytest.fixture(scope="module")
def data():
    return colour_data(per_class=3, classes=CLASSES, seed=1)


def _h(row):
    return -sum(p * math.log(p) for p in row if p > 0)


def test_entropy_of_given_weights():
    rows = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [1.0, 0.0, 0.0]]
    res = attention_entropy_of(torch.tensor(rows), list(CLASSES))
    mean = sum(_h(r) for r in rows) / 4
    assert res["mean_entropy"] == pytest.approx(mean, rel=1e-6)
    assert res["max_entropy"] == pytest.approx(math.log(3))
    assert res["relative_entropy"] == pytest.approx(mean / math.log(3), rel=1e-6)
    assert (res["top_class"], res["top_class_share"], res["n"]) == ("red", 0.75, 4)
    assert res["top_class_counts"] == {"red": 3, "blue": 1}
    # raw-image CA [B, N, C]: mean of the patches' entropies; top class of the mean row
    patches = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.9, 0.1]]])
    res = attention_entropy_of(patches, list(CLASSES))
    assert res["mean_entropy"] == pytest.approx((_h([0.5, 0.5]) + _h([0.9, 0.1])) / 2, rel=1e-6)
    assert res["top_class"] == "blue"
    with pytest.raises(ValueError):
        attention_entropy_of(torch.ones(2, 4) / 4, list(CLASSES))


def test_entropy_of_a_tiny_model_by_hand(bb, data):
    model = make_model(bb, classnames=CLASSES, seed=2, n_ctx=4, ca_scale=False)
    res = attention_entropy(model, data)
    # by hand: query = the image feature, keys = the class text features at eps_t = 0
    ca = model.visual_gen.attn
    with torch.no_grad():
        f = encode_images(bb, data, progress=False)
        text = model.text_features(1, mode="mean")[0]
        attn = torch.softmax(ca.q(f) @ ca.k(text).T, dim=-1).tolist()
    ent = [_h(r) for r in attn]
    tops = [max(range(3), key=r.__getitem__) for r in attn]
    top = max(set(tops), key=tops.count)
    assert res["mean_entropy"] == pytest.approx(sum(ent) / len(ent), rel=1e-5)
    assert res["relative_entropy"] == pytest.approx(sum(ent) / len(ent) / math.log(3), rel=1e-5)
    assert res["top_class_share"] == pytest.approx(tops.count(top) / len(tops))
    assert res["n"] == len(data) and res["mode"] == "mean"


def test_a_saturated_attention_reads_zero_entropy_and_one_top_class(bb, data):
    model = make_model(bb, classnames=CLASSES, seed=2, n_ctx=4, ca_scale=False)
    with torch.no_grad():  # queries constant and huge along one class's key: one-hot attention
        ca = model.visual_gen.attn
        ca.q.weight.zero_()
        ca.q.bias.copy_(1e4 * ca.k(model.text_features(1, mode="mean")[0])[1])
    res = attention_entropy(model, data)
    assert res["mean_entropy"] < 1e-3 and res["relative_entropy"] < 1e-3
    assert (res["top_class"], res["top_class_share"]) == ("blue", 1.0)


def test_the_meter_reports_attention(bb, data):
    model = make_model(bb, classnames=CLASSES, seed=2, n_ctx=4)
    res = pi_noise_meter(model, data, draws=2, seed=0)
    assert res["attention"]["n"] == len(data)
    assert res["attention"]["mean_entropy"] == pytest.approx(attention_entropy(model, data)["mean_entropy"])
    mlp = make_model(bb, classnames=CLASSES, seed=2, visual_generator="mlp", text_location="none")
    assert pi_noise_meter(mlp, data, draws=2, seed=0)["attention"] is None


def test_the_meter_command_prints_the_attention_line(bb, data, monkeypatch, capsys):
    import argparse
    import json

    import pini_core.commands.meter as meter_cmd

    model = make_model(bb, classnames=CLASSES, seed=2, n_ctx=4)
    monkeypatch.setattr(meter_cmd, "checkpoint_and_split", lambda args: (bb, model, None, data, None))
    args = argparse.Namespace(draws=2, noise_seed=0, plot=None)
    assert meter_cmd.run(args) == 0
    out = capsys.readouterr().out
    assert "visual CA attention over 3 classes" in out and "nats" in out
    res = json.loads(out.strip().splitlines()[-1])
    assert set(res["attention"]) >= {"mean_entropy", "relative_entropy", "top_class", "top_class_share"}
